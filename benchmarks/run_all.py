"""Run the benchmark set with small defaults and print every figure.

Run from the repository root::

    python benchmarks/run_all.py                 # every benchmark, small sizes
    python benchmarks/run_all.py tiles scale     # some of them
    python benchmarks/run_all.py --list          # what each runs, and what is left out

Each benchmark runs in its own process (so one's threads, caches and memory do not
colour the next), one after the other, with the small arguments below: a smoke run of
the whole set in roughly 15-25 minutes on two idle cores. The figures of record in
``benchmarks/README.rst`` come from the individual scripts run with their own
(larger) defaults; run those for numbers to compare. Everything runs offline, against
the loopback servers and the mock sky of `astro_mantis.testing` and
`astro_mantis.simulate`; nothing is downloaded. The scripts that need data made
beforehand (a mock data set, the recipe's splits, evaluations or model card) are left
out; ``LEFT_OUT`` below is the one list of them, with why, and ``--list`` prints it.

The exit status is the number of benchmarks that failed.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _machine import machine_line

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
    "real_population": ["--n", "100", "--randomisation", "none"],
}

#: script → why it is not run here: every ``benchmarks/*.py`` script is in `SMALL` (as
#: ``bench_<name>.py``) or here (the tests check it).
LEFT_OUT = {
    "bench_baseline.py": "needs a make_dataset directory (--data; the recipe's training "
                         "runs for its mock catalog columns)",
    "bench_calibration_set.py": "needs the recipe's validation and test splits (--validation, "
                                "--test) and renders the validation set again",
    "bench_exposure.py": "needs a recipe work directory's data (--data: its training runs "
                         "and test split)",
    "bench_explain.py": "needs a mock data set (--data); without one it first renders a "
                        "fixed 2,400-galaxy set that its size options do not shrink",
    "bench_forced_photometry.py": "needs recipe data sets (--test, --fit)",
    "bench_ood_layers.py": "needs the recipe's data directory (validation/ and test/)",
    "bench_point_estimates.py": "needs a make_dataset directory (--data)",
    "bundled_precision.py": "the bundled model's card figures: needs a validation split "
                            "(--data)",
    "bundled_targets.py": "the bundled model's card figures: needs the recipe's evaluation "
                          "files and the model card (--test, --shifted, --card)",
    "bundled_tta.py": "the bundled model's card figures: needs validation and test splits "
                      "(--validation, --test)",
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
            print(f"{n:15s} python benchmarks/bench_{n}.py {' '.join(SMALL[n])}")
        print("\nleft out (they need data made beforehand):")
        for script, why in LEFT_OUT.items():
            print(f"  {script:27s} {why}")
        return 0
    print(machine_line(), flush=True)
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
        print(f"  {n:15s} {t:7.0f} s  {'FAILED' if n in failed else 'ok'}")
    return len(failed)


if __name__ == "__main__":
    sys.exit(main())
