#!/usr/bin/env python
# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Benchmark: match a large table against a large spAll-format file.

What it measures
----------------
``match_spectroscopic(table, catalog="sdss-spall", spall=FILE)`` for a table of
``--rows`` positions (default 1,000,000) against a synthetic spAll-lite file of
``--spectra`` spectra (default 2,000,000), in the layout of SDSS's files
(`astro_mantis.testing.write_spall`: PLUG_RA, PLUG_DEC, Z, Z_ERR, ZWARNING, CLASS,
PLATE, MJD, FIBERID, RUN2D, SPECPRIMARY ... 17 columns, about 130 bytes a row):
reading the file (memory-mapped, the needed columns only, the default quality cut
``zWarning == 0 and class == 'GALAXY' and specPrimary == 1``) and the local
nearest-neighbour match with ambiguity check (`SkyCoord.match_to_catalog_sky`, twice
on one k-d tree).

The spectra are spread uniformly over about 10,000 square degrees (RA 100-260 deg,
Dec -5-65 deg; 200 per square degree); 7 % are flagged (zWarning != 0), 5 % are stars,
3 % repeat observations (specPrimary = 0). 70 % of the table's positions lie within
0.3 arcsec (rms) of a spectrum, the rest anywhere in the region.

The files are made first (not timed; kept in ``--workdir`` for reruns). The match runs
in a fresh Python process, so that its peak resident memory (``VmHWM`` of
``/proc/self/status`` on Linux, else ``ru_maxrss`` of `resource.getrusage`) is the
matching's own: the figure printed includes the interpreter, the imports and the
1M-row input table.

How to run
----------
::

    python benchmarks/bench_match.py                       # 1M rows x 2M spectra
    python benchmarks/bench_match.py --rows 100000 --spectra 200000   # a quick look

Needs about 0.3 GB of disk for the default files, and about a minute on 2 cores.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _machine import machine_line  # benchmarks/ is on the path of a script run from it


def make_inputs(workdir, n_rows, n_spectra, seed=1):
    """Write the spAll-format file and the table positions (if not there already)."""
    from astropy.table import Table

    from astro_mantis.spectro import sdss_specobjid
    from astro_mantis.testing import write_spall

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    spall = workdir / f"spAll-lite-bench-{n_spectra}.fits"
    table = workdir / f"table-{n_rows}-{n_spectra}.npz"
    rng = np.random.default_rng(seed)
    # uniform on the sphere inside RA 100-260, Dec -5-65
    ra = rng.uniform(100.0, 260.0, n_spectra)
    s0, s1 = np.sin(np.radians(-5.0)), np.sin(np.radians(65.0))
    dec = np.degrees(np.arcsin(rng.uniform(s0, s1, n_spectra)))
    if not spall.exists():
        t0 = time.perf_counter()
        cls = np.where(rng.random(n_spectra) < 0.05, "STAR", "GALAXY")
        plate = 3586 + np.arange(n_spectra) // 1000
        fiber = 1 + np.arange(n_spectra) % 1000
        mjd = 55000 + (plate - 3586) % 3000
        spec = Table({
            "specObjID": sdss_specobjid(plate, mjd, fiber, np.full(n_spectra, "v5_13_2")),
            "ra": ra, "dec": dec, "z": rng.uniform(0.01, 1.0, n_spectra),
            "zErr": np.full(n_spectra, 1e-4),
            "zWarning": np.where(rng.random(n_spectra) < 0.07, 4, 0),
            "class": cls, "plate": plate, "mjd": mjd, "fiberID": fiber,
            "run2d": np.full(n_spectra, "v5_13_2"),
            "sciencePrimary": (rng.random(n_spectra) >= 0.03).astype(np.int64)})
        tmp = spall.with_suffix(".tmp.fits")
        write_spall(spec, tmp, lite=True, overwrite=True)
        os.replace(tmp, spall)
        del spec
        print(f"made {spall.name}: {spall.stat().st_size / 1e6:.0f} MB in "
              f"{time.perf_counter() - t0:.1f} s")
    if not table.exists():
        near = rng.random(n_rows) < 0.7
        pick = np.zeros(n_rows, dtype=np.int64)  # distinct spectra: few rows share one
        pick[near] = rng.choice(n_spectra, int(near.sum()), replace=False)
        sig = 0.3 / 3600.0
        t_ra = np.where(near, ra[pick] + rng.normal(0, sig, n_rows) / np.cos(np.radians(
            dec[pick])), rng.uniform(100.0, 260.0, n_rows))
        t_dec = np.where(near, dec[pick] + rng.normal(0, sig, n_rows),
                         np.degrees(np.arcsin(rng.uniform(s0, s1, n_rows))))
        np.savez(table, ra=t_ra, dec=t_dec)
    return spall, table


def peak_rss_bytes():
    """Peak resident memory of this process, in bytes.

    ``VmHWM`` of ``/proc/self/status`` where there is one (Linux: it starts afresh at
    exec, unlike ``ru_maxrss``, which a child inherits from its parent's fork), else
    ``resource.getrusage(RUSAGE_SELF).ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, kB elsewhere


def measure(spall, table_path, radius_arcsec):
    """Run in a fresh process: time the match, report peak RSS (JSON on stdout)."""
    from astropy import units as u
    from astropy.table import Table

    from astro_mantis import log
    from astro_mantis.spectro import match_spectroscopic, read_spall

    log.setLevel("WARNING")
    with np.load(table_path) as npz:
        table = Table({"ra": npz["ra"], "dec": npz["dec"]})
    rss0 = peak_rss_bytes()
    t0 = time.perf_counter()
    match_spectroscopic(table, catalog="sdss-spall", spall=spall,
                        radius=radius_arcsec * u.arcsec)
    seconds = time.perf_counter() - t0
    rss1 = peak_rss_bytes()
    t1 = time.perf_counter()
    kept = len(read_spall(spall))
    read_seconds = time.perf_counter() - t1
    summary = table.meta["spec_match"]
    print(json.dumps({
        "seconds": seconds, "read_spall_seconds": read_seconds,
        "peak_rss_mb": rss1 / 1e6, "rss_before_mb": rss0 / 1e6,
        "rows": len(table), "spectra_in_file": summary["rows_in_files"],
        "spectra_kept": kept, "matched": summary["n_matched"],
        "ambiguous": summary["n_ambiguous"], "shared_rows": summary["n_shared_rows"]}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="table rows (default 1e6)")
    p.add_argument("--spectra", type=int, default=2_000_000,
                   help="spectra in the spAll file (default 2e6)")
    p.add_argument("--radius", type=float, default=1.0, help="match radius, arcsec")
    p.add_argument("--workdir", default=None,
                   help="where the input files go (default: a directory in the system's "
                        "temporary directory, kept for reruns)")
    p.add_argument("--measure", nargs=2, metavar=("SPALL", "TABLE"), help=argparse.SUPPRESS)
    p.add_argument("--make", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    workdir = args.workdir or os.path.join(tempfile.gettempdir(), "astro_mantis_bench_match")
    if args.measure:
        measure(args.measure[0], args.measure[1], args.radius)
        return 0
    if args.make:
        print(json.dumps([str(p) for p in make_inputs(workdir, args.rows, args.spectra)]))
        return 0
    print(machine_line(), flush=True)
    # both steps in fresh processes: this one stays small, the measurement is clean
    made = subprocess.run([sys.executable, __file__, "--make", "--rows", str(args.rows),
                           "--spectra", str(args.spectra), "--workdir", workdir],
                          capture_output=True, text=True, check=True)
    print("".join(made.stdout.splitlines(keepends=True)[:-1]), end="")
    spall, table = json.loads(made.stdout.strip().splitlines()[-1])
    out = subprocess.run([sys.executable, __file__, "--measure", str(spall), str(table),
                          "--radius", str(args.radius)], capture_output=True, text=True,
                         check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"match_spectroscopic(catalog='sdss-spall'): {res['rows']:,} rows x "
          f"{res['spectra_in_file']:,} spectra ({res['spectra_kept']:,} pass the quality "
          f"cut), radius {args.radius} arcsec")
    print(f"  time:         {res['seconds']:.1f} s (of which reading the spAll file "
          f"{res['read_spall_seconds']:.1f} s)")
    print(f"  peak RSS:     {res['peak_rss_mb']:.0f} MB (before the call, with the table "
          f"loaded: {res['rss_before_mb']:.0f} MB)")
    print(f"  matched:      {res['matched']:,}; ambiguous {res['ambiguous']:,}; rows sharing "
          f"a spectrum {res['shared_rows']:,}")
    print(f"  CPU cores:    {os.cpu_count()}; inputs in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
