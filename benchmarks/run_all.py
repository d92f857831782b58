"""Run the benchmark set with small defaults and print every figure.

Run from the repository root::

    python benchmarks/run_all.py                 # every benchmark, small sizes
    python benchmarks/run_all.py tiles scale     # some of them
    python benchmarks/run_all.py --list          # what each runs

Each benchmark runs in its own process (so one's threads, caches and memory do not
colour the next), one after the other, with the small arguments below: a smoke run of
the whole set in roughly 15-25 minutes on two idle cores. The figures of record in
``benchmarks/README.rst`` come from the individual scripts run with their own
(larger) defaults; run those for numbers to compare. Everything runs offline, against
the loopback servers and the mock sky of `astro_mantis.testing` and
`astro_mantis.simulate`; nothing is downloaded. Benchmarks that need data a session
makes first (a mock data set or the recipe's test split: ``baseline``, ``explain``,
``point_estimates``) are left out here.

The exit status is the number of benchmarks that failed.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _machine import cpu_model

HERE = Path(__file__).resolve().parent

#: name → arguments of ``bench_<name>.py`` for a small run.
SMALL = {
    "cutouts": ["--n", "120", "--n-reference", "20", "--n-ceiling", "40"],
    "tiles": ["--n", "1000", "--n-network", "100", "--n-memory", "300", "--n-galaxies", "200"],
    "scale": ["--n", "120", "--partition-rows", "30", "--skip-rss"],
    "table": ["--n", "300", "--skip-rss"],
    "inference": ["--quick", "--skip-v1", "--compile"],
    "components": ["--rows", "20000", "--baseline-rows", "2000", "--n", "10000"],
    "simulate": ["--n", "60", "--workers", "1", "2", "--project", "50000"],
    "web": ["--clients", "4", "--requests", "10", "--rate-requests", "20",
            "--overload-clients", "8", "--baseline-n", "10"],
    "match": ["--rows", "100000", "--spectra", "200000"],
    "shift_ablation": ["--n", "120", "--variants", "none,psf,all", "--workers", "1"],
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default all: {', '.join(SMALL)})")
    parser.add_argument("--list", action="store_true", help="print the commands and stop")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SMALL]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(SMALL)}")
    names = args.names or list(SMALL)
    commands = {n: [sys.executable, str(HERE / f"bench_{n}.py")] + SMALL[n] for n in names}
    if args.list:
        for n, cmd in commands.items():
            print(f"{n:12s} python benchmarks/bench_{n}.py {' '.join(SMALL[n])}")
        return 0
    print(f"machine: {cpu_model()}; {os.cpu_count()} logical CPUs; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    times, failed = {}, []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                              if p]))
    for n, cmd in commands.items():
        print(f"\n===== bench_{n}.py {' '.join(SMALL[n])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=HERE.parent, env=env)
        times[n] = time.perf_counter() - t0
        if rc:
            failed.append(n)
            print(f"===== bench_{n}.py FAILED (exit status {rc})", flush=True)
    print("\n===== summary")
    for n, t in times.items():
        print(f"  {n:12s} {t:7.0f} s  {'FAILED' if n in failed else 'ok'}")
    return len(failed)


if __name__ == "__main__":
    sys.exit(main())
