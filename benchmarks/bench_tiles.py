"""Cut + fuse throughput from local survey tiles, beside the network path, in one run.

Run from the repository root::

    python benchmarks/bench_tiles.py                 # 4000 positions local, 300 network
    python benchmarks/bench_tiles.py --n 20000 --n-network 500 --latency 0.1

What it does:

1. renders a mock-sky patch (`astro_mantis.simulate.MockSky`) as survey tiles with
   `astro_mantis.simulate.tiles.write_tiles` (Pan-STARRS skycell-like grids of
   ``--ps1-pixels`` pixels, GALEX and unWISE coadd-like tiles) into a temporary
   directory, and indexes them with `astro_mantis.sources.LocalTiles` (timed: the
   first index build, then the reuse of the persisted index);
2. **local**: ``LocalTiles.iter_cutouts`` over ``--n`` random positions in the patch, in
   batches of ``--batch``, each batch fused with
   `astro_mantis.fusion.early_fusion` (the model's 9 x 120 x 120 input): galaxies/s of
   cut alone and of cut + fuse, on one core (``torch.set_num_threads(1)``, one
   fusion thread), per wall second and per CPU second of the process (the per-core
   figure that other processes on a shared machine disturb least);
3. **network**: ``Mantis.get_cutouts(cache=False)`` + the same fusion on ``--n-network``
   of those positions, against `astro_mantis.testing.SurveyServer` on 127.0.0.1 serving
   `~astro_mantis.simulate.tiles.TileSky` over the same tiles (the server runs in this
   process's threads and spends this machine's CPU; ``--latency`` adds seconds per
   request, as a remote host would);
4. **memory**: peak Python-heap allocation (`tracemalloc`) of the local cut + fuse loop
   for ``--n-memory`` and 4 x ``--n-memory`` positions: flat when the loop's memory
   does not grow with the number of positions;
5. **table job** (``--table-rows``, 0 skips): `astro_mantis.add_redshift_columns` on a
   table of that many of the positions from the local tiles, with the bundled model on
   all of torch's threads, with and without the out-of-distribution score ``z_ood``
   (``ood=True`` / ``False``; best of two runs each, alternated): what the score costs.

Every figure is on simulated tiles of the mock sky, on the machine at hand; the CPU
model is printed. Real skycells are larger (6000 x 6000 pixels) and may be
compressed: reading them costs more page faults (uncompressed) or decompression
(fpack'ed HDUs are read by astropy section by section).
"""
import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from _machine import cpu_model  # benchmarks/ is on the path of a script run from it


def make_tiles(root, args):
    from astro_mantis.simulate import ImagingConfig, MockSky, MockSkyConfig
    from astro_mantis.simulate.tiles import write_tiles

    half = args.patch / 2.0
    ra_range, dec_range = (185.0 - half, 185.0 + half), (25.0 - half, 25.0 + half)
    imaging = ImagingConfig(galex_hole_fraction=0.0, ps1_nan_fraction=0.05)
    sky = MockSky(MockSkyConfig(imaging=imaging, n_galaxies=args.n_galaxies,
                                ra_range=ra_range, dec_range=dec_range), seed=11)
    t0 = time.perf_counter()
    table = write_tiles(sky, root, ra_range, dec_range,
                        tile_pixels={"panstarrs": args.ps1_pixels, "galex": 256,
                                     "unwise": 128})
    return table, time.perf_counter() - t0, ra_range, dec_range


def positions(n, ra_range, dec_range, seed=0, margin=0.01):
    rng = np.random.default_rng(seed)
    ra = rng.uniform(ra_range[0] + margin, ra_range[1] - margin, n)
    dec = rng.uniform(dec_range[0] + margin, dec_range[1] - margin, n)
    return SkyCoord(ra, dec, unit="deg")


def local_run(tiles, coords, batch, fuse=True):
    """(galaxies per wall second, galaxies per CPU second) of cut (+ fuse)."""
    from astro_mantis.fusion import early_fusion

    t0, c0 = time.perf_counter(), time.process_time()
    nrows, buf = 0, []
    out = np.empty((batch, 9, 120, 120), np.float32)  # reused, as predict reuses its buffers
    for cut in tiles.iter_cutouts(coords, batch_size=batch, progress=False):
        buf.append(cut)
        if len(buf) == batch:
            if fuse:
                early_fusion(buf, out=out)
            nrows += len(buf)
            buf = []
    if buf:
        if fuse:
            early_fusion(buf, out=out[:len(buf)])
        nrows += len(buf)
    return nrows / (time.perf_counter() - t0), nrows / (time.process_time() - c0)


def network_run(tile_root, coords, latency):
    from astro_mantis import Mantis, conf
    from astro_mantis.fusion import early_fusion
    from astro_mantis.simulate.tiles import TileSky
    from astro_mantis.testing import SurveyServer

    with SurveyServer(sky=TileSky(tile_root), latency=latency) as srv, srv.configure(conf):
        t0, c0 = time.perf_counter(), time.process_time()
        cuts = Mantis.get_cutouts(coords, cache=False, progress=False)
        early_fusion(cuts)
        rate = len(coords) / (time.perf_counter() - t0)
        cpu = len(coords) / (time.process_time() - c0)
        nreq = Mantis.last_request_count
    return (rate, cpu), nreq, cuts


def memory_peak(tiles, coords, batch):
    tracemalloc.start()
    local_run(tiles, coords, batch)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4000, help="positions cut locally")
    parser.add_argument("--n-network", type=int, default=300,
                        help="positions fetched over loopback")
    parser.add_argument("--n-memory", type=int, default=1000,
                        help="positions of the smaller memory run (the larger is 4x)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3,
                        help="local runs per figure; the best is printed")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds the loopback server adds per request")
    parser.add_argument("--patch", type=float, default=0.2, help="patch side (deg)")
    parser.add_argument("--ps1-pixels", type=int, default=1200,
                        help="Pan-STARRS tile side (pixels)")
    parser.add_argument("--n-galaxies", type=int, default=400,
                        help="catalog galaxies rendered in the patch")
    parser.add_argument("--table-rows", type=int, default=2000,
                        help="rows of the table job with and without z_ood (0: skip)")
    args = parser.parse_args(argv)

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    from astro_mantis.sources import LocalTiles

    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores visible; 1 used)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "tiles"
        table, t_write, ra_range, dec_range = make_tiles(root, args)
        sizes = sum(os.path.getsize(p) for p in table["path"])
        counts = {s: int(np.sum(table["survey"] == s)) for s in ("panstarrs", "galex", "unwise")}
        print(f"tiles: {len(table)} files ({counts}), {sizes / 2**20:.0f} MiB, "
              f"written in {t_write:.1f} s; patch {args.patch} deg square (simulated sky)")
        dirs = {s: root / s for s in counts}
        t0 = time.perf_counter()
        tiles = LocalTiles(index_dir=Path(tmp) / "index", **dirs)
        t_index = time.perf_counter() - t0
        t0 = time.perf_counter()
        tiles = LocalTiles(index_dir=Path(tmp) / "index", **dirs)
        t_reuse = time.perf_counter() - t0
        print(f"index: built in {t_index:.2f} s, reused in {t_reuse:.3f} s "
              f"({sum(i.stats['reused'] for i in tiles.indexes.values())} files, no header read)")

        coords = positions(args.n, ra_range, dec_range)
        local_run(tiles, coords[:args.batch], args.batch)  # warm the page cache
        # best of --repeat runs: other processes on a shared machine only slow a run down
        runs = [local_run(tiles, coords, args.batch, fuse=False) for _ in range(args.repeat)]
        cut_rate = (max(r[0] for r in runs), max(r[1] for r in runs))
        runs = [local_run(tiles, coords, args.batch) for _ in range(args.repeat)]
        rate = (max(r[0] for r in runs), max(r[1] for r in runs))

        sub = coords[:args.n_network]
        net_rate, nreq, net_cuts = network_run(root, sub, args.latency)
        mine = tiles.get_cutouts(sub, progress=False)
        same = sum(np.array_equal(a["panstarrs"].data, b["panstarrs"].data, equal_nan=True)
                   for a, b in zip(mine, net_cuts) if "panstarrs" in a and "panstarrs" in b)

        small = memory_peak(tiles, positions(args.n_memory, ra_range, dec_range, 1), args.batch)
        large = memory_peak(tiles, positions(4 * args.n_memory, ra_range, dec_range, 2),
                            args.batch)
        table_rates = None
        if args.table_rows:
            torch.set_num_threads(threads)
            table_rates = table_job(tiles, coords[:args.table_rows])

    rows = Table(rows=[
        ("local tiles: cut", args.n, cut_rate[0], cut_rate[1], ""),
        ("local tiles: cut + fuse", args.n, rate[0], rate[1], "target >= 1000 per core"),
        (f"network (loopback, latency {args.latency:g} s): fetch + fuse", args.n_network,
         net_rate[0], net_rate[1], f"{nreq} HTTP requests; server in-process"),
    ], names=("path", "positions", "galaxies/s (wall)", "galaxies per CPU s", "note"))
    for name in ("galaxies/s (wall)", "galaxies per CPU s"):
        rows[name].format = ".0f"
    print()
    rows.pprint(max_width=-1)
    print(f"\nlocal / network, cut + fuse: {rate[0] / net_rate[0]:.1f}x wall, "
          f"{rate[1] / net_rate[1]:.1f}x per CPU second")
    print(f"Pan-STARRS cutouts identical to the service's: {same} of {len(sub)}")
    print(f"peak traced memory of cut + fuse: {small:.0f} MiB for {args.n_memory} positions, "
          f"{large:.0f} MiB for {4 * args.n_memory} ({large / small:.2f}x for 4x positions)")
    if args.latency:
        print(f"polite limit of the real services at 8 connections: "
              f"{8 / (5 * args.latency):.0f} galaxies/s")
    if table_rates:
        without, with_ood = table_rates
        print(f"\ntable job, {args.table_rows} rows from the local tiles ({threads} threads, "
              f"bundled mantis-mini, precision auto): {without:.0f} rows/s without z_ood, "
              f"{with_ood:.0f} with it ({with_ood / without:.2f}x)")


def table_job(tiles, coords):
    """Rows/s of add_redshift_columns from the tiles without and with z_ood."""
    from astro_mantis import add_redshift_columns

    best = {True: 0.0, False: 0.0}
    for ood in (False, True, False, True):
        t = Table({"ra": coords.ra.deg, "dec": coords.dec.deg})
        t0 = time.perf_counter()
        add_redshift_columns(t, source=tiles, ood=ood, progress=False)
        best[ood] = max(best[ood], len(t) / (time.perf_counter() - t0))
    return best[False], best[True]


if __name__ == "__main__":
    main()
