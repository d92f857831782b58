"""Generation rate of the mock-sky training sets (`astro_mantis.simulate.make_dataset`).

Run from the repository root (needs the ``sim`` extra: GalSim, kcorrect, speclite)::

    python benchmarks/bench_simulate.py                 # 200 galaxies, workers 1 and 2
    python benchmarks/bench_simulate.py --n 500 --workers 1 2 4

For each worker count, `make_dataset` renders ``--n`` galaxies (all three surveys,
float16 Pan-STARRS, ``--shard-size`` galaxies per shard) into a fresh temporary
directory. Printed per run: the setup time (drawing the catalog), the rendering time
and rate (galaxies per second, shards written included), the CPU seconds per galaxy
(this process and its workers), the disk space per galaxy, and the projected time for
``--project`` galaxies (default 50,000) at the measured rate plus the setup.

On a machine shared with other jobs the wall-clock rate depends on their load; the
CPU time per galaxy does not, so the benchmark also prints the rate ``W / (CPU s per
galaxy)`` that W workers reach on W otherwise idle cores, and its projection. The
target of issue 3 is 50,000 galaxies in under 30 minutes on 2 cores. A check that
all runs wrote identical shards is printed too.

``--randomisation`` renders every run a second time with the training domain
randomisation (`astro_mantis.simulate.training_randomisation`, issue 16) and prints
its rate and CPU time per galaxy as ratios to the nominal sky of the same run::

    python benchmarks/bench_simulate.py --n 300 --workers 1 --randomisation

``--keep DIR`` writes the data sets into DIR itself (one subdirectory per sky and worker
count, e.g. ``DIR/nominal_workers2``) and leaves them there. DIR must be empty or not
exist yet: `make_dataset` resumes a data set whose shards are already present, so a run
into an earlier run's subdirectories would time nothing, and the script refuses rather
than overwrite or delete anything.
"""
import argparse
import contextlib
import hashlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from astro_mantis.simulate.dataset import dataset_config, make_dataset

from _machine import cpu_model  # benchmarks/ is on the path of a script run from it


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(Path(root).glob("*/shard_*.npz")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="galaxies per run (default 200)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to measure (default: 1 2)")
    parser.add_argument("--shard-size", type=int, default=25,
                        help="galaxies per shard (default 25: enough shards for the "
                             "workers to share; the per-galaxy cost does not depend on it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--project", type=int, default=50_000,
                        help="galaxies to project the time for (default 50000)")
    parser.add_argument("--keep", metavar="DIR", default=None,
                        help="write the data sets into DIR (which must be empty or not exist) and "
                             "keep them, instead of a temporary directory deleted at the end")
    parser.add_argument("--randomisation", action="store_true",
                        help="also render with the training domain randomisation and print "
                             "the ratios to the nominal sky")
    args = parser.parse_args(argv)
    if args.keep is not None:
        keep = Path(args.keep)
        if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
            parser.error(f"--keep {keep}: must be an empty directory or not exist (a data "
                         "set already there would be resumed, not rendered)")
    skies = [("nominal", None)]
    if args.randomisation:
        from astro_mantis.simulate import training_randomisation

        skies.append(("training randomisation", training_randomisation()))

    print(f"make_dataset benchmark: {args.n} galaxies, shard_size {args.shard_size}, "
          f"seed {args.seed}")
    print(f"machine: {platform.platform()}, {cpu_model()}, Python "
          f"{platform.python_version()}, {os.cpu_count()} CPU(s), load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = []
    digests = {}
    with contextlib.ExitStack() as stack:
        if args.keep is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_simulate_"))
        else:
            tmp = Path(args.keep)
            tmp.mkdir(parents=True, exist_ok=True)
            print(f"writing the data sets into {tmp} (kept)")
        for (sky, randomisation), workers in ((s, w) for s in skies for w in args.workers):
            out = Path(tmp) / f"{sky.split()[0]}_workers{workers}"
            t0 = time.perf_counter()
            manifest = make_dataset(args.n, out, seed=args.seed, shard_size=args.shard_size,
                                    workers=workers, progress=False,
                                    config=dataset_config(args.n, randomisation=randomisation))
            wall = time.perf_counter() - t0
            gen = manifest["generation"]
            rate = gen["galaxies_per_second"]
            projected = args.project / rate + gen["setup_seconds"]
            cpu = gen["cpu_seconds"] / args.n
            idle_rate = workers / cpu
            idle_projected = args.project / idle_rate + gen["setup_seconds"]
            rows.append((workers, gen["setup_seconds"], gen["seconds"], rate,
                         manifest["bytes_per_galaxy"], projected, cpu, idle_rate,
                         idle_projected, sky))
            digests.setdefault(sky, {})[workers] = _digest(out)
            print(f"  {sky}, workers={workers}: setup {gen['setup_seconds']:.1f} s, rendering "
                  f"{gen['seconds']:.1f} s = {rate:.1f} galaxies/s, {cpu * 1e3:.0f} ms CPU "
                  f"per galaxy, {manifest['bytes_per_galaxy'] / 1e3:.0f} kB/galaxy; "
                  f"{args.project} galaxies in {projected / 60:.1f} min (wall {wall:.1f} s; "
                  f"load average now {os.getloadavg()[0]:.2f})")
            sys.stdout.flush()

    print()
    print(f"{'sky':>22}  {'workers':>7}  {'setup s':>7}  {'render s':>8}  {'galaxies/s':>10}  "
          f"{'CPU ms/gal':>10}  {'kB/galaxy':>9}  {f'{args.project}: min':>10}  "
          f"{'idle: gal/s':>11}  {'idle: min':>9}")
    for workers, setup, seconds, rate, per_gal, projected, cpu, idle_rate, idle_proj, sky \
            in rows:
        print(f"{sky:>22}  {workers:>7d}  {setup:>7.1f}  {seconds:>8.1f}  {rate:>10.1f}  "
              f"{cpu * 1e3:>10.0f}  {per_gal / 1e3:>9.0f}  {projected / 60:>10.1f}  "
              f"{idle_rate:>11.1f}  {idle_proj / 60:>9.1f}")
    per_gal = rows[0][4]
    print(f"disk for {args.project} galaxies: {args.project * per_gal / 1e9:.1f} GB")
    best = min(r[5] for r in rows)
    best_idle = min(r[8] for r in rows)
    print(f"target: {args.project} galaxies in < 30 min; best projection at the measured "
          f"rate {best / 60:.1f} min ({'met' if best < 1800 else 'missed'}), on idle "
          f"cores {best_idle / 60:.1f} min ({'met' if best_idle < 1800 else 'missed'})")
    _print_ratios(rows)
    same = all(len(set(d.values())) == 1 for d in digests.values())
    print(f"shards identical across worker counts: {same}")
    return 0 if same else 1


def _print_ratios(rows):
    """Randomised over nominal: rate and CPU time per galaxy, per worker count."""
    nominal = {r[0]: r for r in rows if r[9] == "nominal"}
    for row in rows:
        base = nominal.get(row[0])
        if row[9] == "nominal" or base is None:
            continue
        print(f"{row[9]} / nominal, workers={row[0]}: rate x{row[3] / base[3]:.2f}, "
              f"CPU per galaxy x{row[6] / base[6]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
