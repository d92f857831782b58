# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""What machine a benchmark ran on (every benchmark prints it: machines here vary)."""
import os
import platform

__all__ = ["cpu_model", "machine_line"]


def cpu_model():
    """The CPU model name (Linux ``/proc/cpuinfo``), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line():
    """``machine: <CPU model>; <n> logical CPUs; load average <1, 5, 15 min>``: the line
    a benchmark prints before its figures."""
    try:
        load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    except (AttributeError, OSError):  # not on every platform
        load = "unknown"
    return f"machine: {cpu_model()}; {os.cpu_count()} logical CPUs; load average {load}"
