# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""What machine a benchmark ran on (every benchmark prints it: machines here vary)."""
import platform

__all__ = ["cpu_model"]


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
