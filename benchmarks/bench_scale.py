"""Photo-z over a HATS catalog on Dask workers: 1 vs 2 workers, and memory per worker (issue 14).

Run from the repository root::

    python benchmarks/bench_scale.py                        # 240 galaxies, 50 ms per request
    python benchmarks/bench_scale.py --n 120 --latency 0.1  # a quick try
    python benchmarks/bench_scale.py --json out.json

No internet is used. An `astro_mantis.testing.SurveyServer` serving the bundled sample
sky (`astro_mantis.simulate.SampleSky`: mock galaxies, not the real sky) runs in a
process of its own, with ``--latency`` seconds added to every request. The catalog is
the first ``--n`` sample galaxies (at most 300) as an `lsdb.Catalog`
(``lsdb.from_dataframe``, partitions of at most ``--partition-rows`` rows).

(a) End to end, same run, same server, each in an empty cutout cache:

    * baseline: `astro_mantis.add_redshift_columns` on the whole table in this process;
    * `astro_mantis.scale.add_redshift_columns_lsdb` computed on a
      `dask.distributed.LocalCluster` of 1 and then 2 worker processes (one thread
      each). The workers are started and have loaded the model before the clock
      starts (their start-up is printed apart).

    Printed: galaxies/s of each, and the efficiency of 2 workers,
    ``rate(2) / (2 x rate(1))`` (1.0 = perfect scaling). Each worker fetches with its
    own ``conf.max_connections_per_host`` connections per host, so with the network as
    the bound (the real services; ``--latency``) two workers open twice the
    connections: be polite with the real services (see the scaling guide).

(b) Peak memory per worker against rows: for each size in ``--rss-sizes`` a fresh
    2-worker cluster (model loaded, high-water mark reset through Linux
    ``/proc/self/clear_refs``) computes the catalog of that many rows; printed per
    worker: RSS before the run and peak (``VmHWM``) during it. With partitions of a
    fixed size the peak should not grow with the number of rows.
"""
import argparse
import json
import multiprocessing as mp
import os
import platform
import tempfile
import time
import warnings

import numpy as np

from _machine import cpu_model  # benchmarks/ is on the path of a script run from it


def _serve(latency, ready, stop):
    from astro_mantis.simulate import SampleSky
    from astro_mantis.testing import SurveyServer

    with SurveyServer(sky=SampleSky(), latency=latency) as srv:
        ready.put((srv.panstarrs_url, srv.legacysurvey_url))
        stop.wait()


def _frame(n):
    import pandas as pd

    from astro_mantis.simulate import SampleSky

    cat = SampleSky().catalog
    if n > len(cat):
        raise SystemExit(f"--n {n}: the sample sky has {len(cat)} galaxies")
    return pd.DataFrame({"ra": np.array(cat["ra"][:n]), "dec": np.array(cat["dec"][:n]),
                         "ebv_csfd": np.array(cat["ebv_csfd"][:n]),
                         "ebv_planck": np.array(cat["ebv_planck"][:n]),
                         "ident": np.arange(n)})


def _catalog(frame, partition_rows):
    import lsdb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lsdb.from_dataframe(frame, ra_column="ra", dec_column="dec", lowest_order=2,
                                   highest_order=6, partition_rows=partition_rows,
                                   margin_threshold=None)


def _reset_hwm():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _rss():
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) / 1024
    return out


def _warm(model):
    from astro_mantis import scale

    scale._worker_model(model, None, None)
    return os.getpid()


def _cluster(n_workers):
    import distributed

    cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                       processes=True, dashboard_address=None,
                                       silence_logs=40)
    return cluster, distributed.Client(cluster)


def _distributed(catalog, n_workers, cache, kw, rss=False):
    from astro_mantis import scale

    t0 = time.perf_counter()
    cluster, client = _cluster(n_workers)
    try:
        client.run(_warm, kw.get("model", "mantis-mini"))
        startup = time.perf_counter() - t0
        if rss:
            client.run(_reset_hwm)
            before = client.run(_rss)
        t = time.perf_counter()
        out = scale.add_redshift_columns_lsdb(catalog, settings={"cache_dir": cache}, **kw)
        result = out.compute(progress_bar=False)
        wall = time.perf_counter() - t
        mem = client.run(_rss) if rss else None
    finally:
        client.close()
        cluster.close()
    assert len(result) == len(catalog.compute(progress_bar=False))
    return {"wall": wall, "startup": startup, "rate": len(result) / wall,
            "rss": ({w: {"start_MB": before[w]["VmRSS"], "peak_MB": mem[w]["VmHWM"]}
                     for w in mem} if rss else None)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=240, help="galaxies (<= 300)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--partition-rows", type=int, default=30)
    parser.add_argument("--rss-sizes", default="60,240")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)

    import torch

    from astro_mantis import add_redshift_columns, conf
    from astropy.table import Table

    kw = dict(ebv=("ebv_csfd", "ebv_planck"), precision="float32")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"sample sky (mock galaxies, not the real sky); {args.n} galaxies, latency "
          f"{args.latency * 1000:.0f} ms per request, partitions <= {args.partition_rows} "
          f"rows, {conf.max_connections_per_host} connections per host per process")
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(args.latency, ready, stop), daemon=True)
    server.start()
    ps1, legacy = ready.get(timeout=120)
    figures = {"cpu": cpu_model(), "n": args.n, "latency": args.latency,
               "partition_rows": args.partition_rows}
    try:
        with tempfile.TemporaryDirectory() as tmp, conf.set_temp("panstarrs_url", ps1), \
                conf.set_temp("legacysurvey_url", legacy):
            frame = _frame(args.n)
            catalog = _catalog(frame, args.partition_rows)
            print(f"catalog: {catalog.npartitions} partitions")
            table = Table({c: frame[c].to_numpy() for c in frame.columns})
            with conf.set_temp("cache_dir", os.path.join(tmp, "base")):
                add_redshift_columns(table[:2].copy(), progress=False, **kw)  # model loaded
                t = time.perf_counter()
                add_redshift_columns(table, progress=False, **kw)
                base = time.perf_counter() - t
            figures["single_process_rate"] = args.n / base
            print(f"\n(a) end to end ({args.n} galaxies, empty caches)")
            print(f"  single process (add_redshift_columns)   {args.n / base:7.1f} galaxies/s")
            runs = {}
            for k in (1, 2):
                runs[k] = _distributed(catalog, k, os.path.join(tmp, f"w{k}"), kw)
                print(f"  lsdb on {k} worker process(es)           {runs[k]['rate']:7.1f} "
                      f"galaxies/s   (cluster start + model load {runs[k]['startup']:.1f} s, "
                      "not timed)")
            eff = runs[2]["rate"] / (2 * runs[1]["rate"])
            print(f"  speed-up 2 vs 1 worker: {runs[2]['rate'] / runs[1]['rate']:.2f}x, "
                  f"efficiency rate(2)/(2 rate(1)) = {eff:.2f}; 1 worker vs single process: "
                  f"{runs[1]['rate'] / (args.n / base):.2f}")
            figures.update({f"workers_{k}_rate": runs[k]["rate"] for k in runs})
            figures["efficiency_2"] = eff
            if not args.skip_rss:
                print("\n(b) peak memory per worker (2 workers, empty caches)")
                figures["rss"] = {}
                for size in [int(s) for s in args.rss_sizes.split(",")]:
                    cat = _catalog(_frame(size), args.partition_rows)
                    run = _distributed(cat, 2, os.path.join(tmp, f"rss{size}"), kw, rss=True)
                    figures["rss"][size] = list(run["rss"].values())
                    text = ", ".join(f"{v['start_MB']:.0f} -> peak {v['peak_MB']:.0f} MB"
                                     for v in run["rss"].values())
                    print(f"  {size:5d} rows ({cat.npartitions} partitions): {text}")
    finally:
        stop.set()
        server.join(10)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
