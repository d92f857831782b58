"""Throughput of the cutout service against loopback survey servers with added latency.

Run from the repository root::

    python benchmarks/bench_cutouts.py            # 500 positions, 100 ms per request
    python benchmarks/bench_cutouts.py --n 100 --latency 0.05

Two `astro_mantis.testing.SurveyServer` instances play the two real hosts: one the
Pan-STARRS image services (``ps1filenames.py``, ``fitscut.cgi``), the other the Legacy
Surveys viewer (``fits-cutout`` for GALEX and unWISE). Each adds ``--latency`` seconds
to every request. By default each server runs in its own process, as a remote host
would, so that rendering the synthetic images does not compete with the client for
the Python interpreter lock (``--in-process`` runs them in threads of this process).

Printed figures, in objects (positions) per second:

(a) the reference pattern, implemented here with plain ``requests``: per object, in
    sequence, one ``ps1filenames.py`` GET listing that object, then its 7 downloads
    (5 ``fitscut.cgi`` + GALEX and unWISE ``fits-cutout``) through a 10-thread pool,
    waiting for all 7 before the next object. Measured on a subset (``--n-reference``)
    because it is slow; its rate does not depend on the number of objects.
(b) ``Mantis.get_cutouts(coords, cache=True)`` into an empty temporary cache.
(c) the same call again: everything comes from the cache, no request is sent.

With c connections per host and latency L, Pan-STARRS needs 5 requests per object, so
no polite client can exceed c / (5 L) objects/s; the fraction of that limit reached by
(b) is printed.
"""
import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
import requests
from astropy import units as u
from astropy.coordinates import SkyCoord

from astro_mantis import Mantis, conf


# --------------------------------------------------------------------------- servers
def _serve(conn, kwargs):
    """Child process: run one SurveyServer and answer 'counts' / 'stop' on a pipe."""
    from astro_mantis.testing import SurveyServer

    with SurveyServer(**kwargs) as server:
        conn.send({"panstarrs_url": server.panstarrs_url,
                   "legacysurvey_url": server.legacysurvey_url})
        while True:
            msg = conn.recv()
            if msg == "counts":
                conn.send(dict(server.counts))
            elif msg == "cpu":
                conn.send(time.process_time())
            else:
                break


class ProcessServer:
    """A SurveyServer in a child process (a separate "host" with its own CPU)."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def __enter__(self):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self.kwargs), daemon=True)
        self._proc.start()
        if not self._conn.poll(60):
            raise RuntimeError("loopback server process did not start")
        urls = self._conn.recv()
        self.panstarrs_url = urls["panstarrs_url"]
        self.legacysurvey_url = urls["legacysurvey_url"]
        return self

    @property
    def counts(self):
        self._conn.send("counts")
        return Counter(self._conn.recv())

    @property
    def cpu(self):
        """CPU seconds used so far by the server process."""
        self._conn.send("cpu")
        return self._conn.recv()

    def __exit__(self, *exc):
        try:
            self._conn.send("stop")
        finally:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join()
            self._conn.close()


def _thread_server(**kwargs):
    from astro_mantis.testing import SurveyServer

    return SurveyServer(**kwargs)


# --------------------------------------------------------------------------- workload
def positions(n, seed=12345):
    """``n`` reproducible positions inside all three footprints (dec > -25)."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-25.0)), 1.0, n)))
    dec = np.clip(dec, -25.0, 85.0)
    return SkyCoord(ra * u.deg, dec * u.deg)


def reference_pattern(coords, ps1_url, legacy_url, threads=10, timeout=60.0):
    """The reference implementation's access pattern with plain `requests`.

    Per object, in sequence: one ``ps1filenames.py`` GET for that object, then its
    seven image downloads through a ``threads``-thread pool, waiting for all of them.

    Returns
    -------
    nbytes : int
        Bytes downloaded (as a sanity check that images came back).
    """
    def get(url, params):
        resp = requests.get(url, params=params, timeout=timeout)
        resp.raise_for_status()
        return len(resp.content)

    nbytes = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for c in coords:
            ra, dec = float(c.ra.deg), float(c.dec.deg)
            resp = requests.get(f"{ps1_url}/ps1filenames.py",
                                params={"ra": ra, "dec": dec, "filters": "grizy",
                                        "type": "stack"}, timeout=timeout)
            resp.raise_for_status()
            lines = [ln.split() for ln in resp.text.splitlines() if ln.strip()]
            col = {name: i for i, name in enumerate(lines[0])}
            files = [row[col["filename"]] for row in lines[1:]]
            jobs = [pool.submit(get, f"{ps1_url}/fitscut.cgi",
                                {"red": f, "ra": ra, "dec": dec, "size": 170, "format": "fits"})
                    for f in files]
            for layer, scale in (("galex", 1.5), ("unwise-neo7", 2.75)):
                jobs.append(pool.submit(get, f"{legacy_url}/fits-cutout",
                                        {"ra": ra, "dec": dec, "size": 32, "pixscale": scale,
                                         "layer": layer}))
            wait(jobs)
            nbytes += sum(j.result() for j in jobs)
    return nbytes


def _server_cpu(*servers):
    """CPU seconds used by server processes (None for servers in this process)."""
    if not all(hasattr(s, "cpu") for s in servers):
        return None
    return sum(s.cpu for s in servers)


def _diff(after, before):
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)
            if after.get(k, 0) - before.get(k, 0)}


def _fmt_counts(counts):
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


# --------------------------------------------------------------------------- main
def main(argv=None):
    """Run the benchmark and print its figures.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (see ``--help``).

    Returns
    -------
    int
        0.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="positions for (b) and (c)")
    parser.add_argument("--n-reference", type=int, default=60,
                        help="positions for the reference pattern (a)")
    parser.add_argument("--latency", type=float, default=0.1,
                        help="seconds added by the servers to every request")
    parser.add_argument("--in-process", action="store_true",
                        help="run the servers in threads of this process")
    parser.add_argument("--skip-reference", action="store_true", help="skip (a)")
    parser.add_argument("--profile", metavar="FILE",
                        help="write a cProfile of (b) and (c) to FILE(.b/.c)")
    args = parser.parse_args(argv)

    L = args.latency
    c = int(conf.max_connections_per_host)
    limit = c / (5 * L) if L > 0 else float("inf")
    coords = positions(args.n)
    make = _thread_server if args.in_process else ProcessServer
    print(f"bench_cutouts: {args.n} positions, latency {1000 * L:.0f} ms per request, "
          f"c = conf.max_connections_per_host = {c}, chunk = {conf.ps1_chunk_size}")
    print(f"  python {platform.python_version()}, {os.cpu_count()} CPU(s), "
          f"servers {'in threads' if args.in_process else 'in separate processes'}")

    rows = []
    with make(latency=L) as ps1, make(latency=L) as legacy, \
            tempfile.TemporaryDirectory(prefix="bench_cutouts_") as cache_dir, \
            conf.set_temp("panstarrs_url", ps1.panstarrs_url), \
            conf.set_temp("legacysurvey_url", legacy.legacysurvey_url), \
            conf.set_temp("cache_dir", cache_dir):
        # warm up both servers and this process (imports, first connections)
        Mantis.get_cutouts(positions(2, seed=1), cache=False, progress=False)

        ref_rate = None
        if not args.skip_reference:
            nref = min(args.n_reference, args.n)
            t0 = time.perf_counter()
            reference_pattern(coords[:nref], ps1.panstarrs_url, legacy.legacysurvey_url)
            dt = time.perf_counter() - t0
            ref_rate = nref / dt
            rows.append((f"(a) reference pattern ({nref} objects)", dt, ref_rate))

        before = ps1.counts + legacy.counts
        prof = None
        if args.profile:
            import cProfile
            prof = cProfile.Profile()
            prof.enable()
        srv_cpu0 = _server_cpu(ps1, legacy)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        cuts = Mantis.get_cutouts(coords, cache=True, progress=False)
        dt_b = time.perf_counter() - t0
        cpu_b = time.process_time() - cpu0
        srv_cpu_b = None if srv_cpu0 is None else _server_cpu(ps1, legacy) - srv_cpu0
        if prof:
            prof.disable()
            prof.dump_stats(args.profile + ".b")
        fetched = ps1.counts + legacy.counts
        req_b = _diff(fetched, before)
        rate_b = args.n / dt_b
        rows.append((f"(b) Mantis.get_cutouts, empty cache ({args.n})", dt_b, rate_b))
        bad = sum(1 for cut in cuts if cut.missing)
        nreq_client = getattr(Mantis, "last_request_count", None)

        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        cuts2 = Mantis.get_cutouts(coords, cache=True, progress=False)
        dt_c = time.perf_counter() - t0
        cpu_c = time.process_time() - cpu0
        if prof:
            prof.disable()
            prof.dump_stats(args.profile + ".c")
        req_c = _diff(ps1.counts + legacy.counts, fetched)
        rate_c = args.n / dt_c
        rows.append((f"(c) cached rerun ({args.n})", dt_c, rate_c))
        cached_ok = all(set(cut.status.values()) <= {"cached"} for cut in cuts2)

    width = max(len(r[0]) for r in rows)
    print()
    print(f"  {'run':<{width}}  {'seconds':>8}  {'objects/s':>10}")
    print(f"  {'-' * width}  {'-' * 8}  {'-' * 10}")
    for name, dt, rate in rows:
        print(f"  {name:<{width}}  {dt:8.2f}  {rate:10.1f}")
    print()
    if ref_rate:
        print(f"  speed-up (b)/(a):                   {rate_b / ref_rate:6.1f} x")
    if L > 0:
        print(f"  polite limit c/(5L):                {limit:6.1f} objects/s")
        print(f"  (b) fraction of the limit:          {100 * rate_b / limit:6.1f} %  "
              "(target >= 90 %)")
    print(f"  (c) cached rerun:                   {rate_c:6.1f} objects/s  (target >= 500)")
    srv = "" if srv_cpu_b is None else f", servers {1000 * srv_cpu_b / args.n:.1f} ms"
    print(f"  CPU per object in (b): client {1000 * cpu_b / args.n:.1f} ms{srv}; "
          f"in (c): client {1000 * cpu_c / args.n:.2f} ms")
    print(f"  requests in (b): {_fmt_counts(req_b)}"
          + (f" (client counted {nreq_client})" if nreq_client is not None else ""))
    print(f"  requests in (c): {_fmt_counts(req_c)}")
    print(f"  (b) objects with a missing survey: {bad}; (c) all from cache: {cached_ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
