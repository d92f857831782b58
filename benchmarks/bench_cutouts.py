"""Throughput of the cutout service against loopback survey servers with added latency.

Run from the repository root::

    python benchmarks/bench_cutouts.py            # 500 positions, 100 ms per request
    python benchmarks/bench_cutouts.py --n 100 --latency 0.05

Two `astro_mantis.testing.SurveyServer` instances play the two real hosts: one the
Pan-STARRS image services (``ps1filenames.py``, ``fitscut.cgi``), the other the Legacy
Surveys viewer (``fits-cutout`` for GALEX and unWISE). Each adds ``--latency`` seconds
to every request. By default each server runs in its own process, as a remote host
would, so that serving the synthetic images does not compete with the client for the
Python interpreter lock (``--in-process`` runs them in threads of this process), and
the servers render every image once in an untimed warm-up pass and replay it in the
timed runs (``--live`` renders during the timed runs): a real host renders cutouts
with its own CPU, not the client's.

Printed figures, in objects (positions) per second:

(a) the reference pattern, implemented here with plain ``requests``: per object, in
    sequence, one ``ps1filenames.py`` GET listing that object, then its 7 downloads
    (5 ``fitscut.cgi`` + GALEX and unWISE ``fits-cutout``) through a 10-thread pool,
    waiting for all 7 before the next object. Measured on a subset (``--n-reference``)
    because it is slow; its rate does not depend on the number of objects.
(b) ``Mantis.get_cutouts(coords, cache=True)`` into an empty temporary cache.
(c) the same call again: everything comes from the cache, no request is sent (the
    servers' request counters are printed to show it).
(d) the harness ceiling: c threads with keep-alive sessions fetching only Pan-STARRS
    ``fitscut.cgi`` images and doing nothing with them (``--n-ceiling`` positions).

With c connections per host and latency L, Pan-STARRS needs 5 requests per object, so
no polite client can exceed c / (5 L) objects/s; the fraction of that limit reached by
(b) is printed. The limit takes a request to cost exactly L; (d) shows what the
servers and the HTTP stack allow on the machine at hand.

``--clustered`` measures coalescing on a crowded field instead (issue 14)::

    python benchmarks/bench_cutouts.py --clustered                # 500 galaxies, 10' across
    python benchmarks/bench_cutouts.py --clustered --n 60 --latency 0.02   # a quick try

``--n`` galaxies spread over a disc of ``--radius`` arcmin (default 5: 10' across) in
one loopback skycell (`astro_mantis.testing.cluster_catalog`); the Pan-STARRS server
cuts its answers from whole skycells (`astro_mantis.testing.SkycellSky`, as the real
fitscut.cgi does), the viewer server renders the same catalog. In one run, against the
same two servers, each into its own empty cache:

(p) plain: ``Mantis.get_cutouts(coords)``, every object fetched alone;
(q) coalesced: ``Mantis.get_cutouts(coords, coalesce=--span)`` (arcmin, default 1).

An untimed warm-up at zero latency draws the skycells and renders the viewer images
first (both runs then replay them). Printed per run: seconds, objects/s, requests per
object per host and the Pan-STARRS pixels downloaded per object; the polite limit of
each (c over the requests per object to the busier host, over L); and whether (q)'s
cutouts equal (p)'s pixel for pixel, with the same flags and statuses.
"""
import argparse
import gc
import multiprocessing as mp
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

from _machine import machine_line  # benchmarks/ is on the path of a script run from it
from astro_mantis import Mantis, conf


# --------------------------------------------------------------------------- servers
class ReplaySky:
    """A `SyntheticSky` that renders each image once and then replays it.

    A real survey host spends its own CPU on each cutout; the loopback servers would
    spend the benchmark machine's. Rendering every image once in a warm-up pass and
    replaying it afterwards leaves the servers little more to do than the latency,
    so the timed runs measure the client.
    """

    def __init__(self, seed=0, sky=None):
        import threading

        from astro_mantis.testing import SyntheticSky

        self.sky = SyntheticSky(seed=seed) if sky is None else sky
        self.memo = {}
        self.lock = threading.Lock()

    def render(self, survey, coord, size=None, pixscale=None, band=None, **kwargs):
        """Render as `SyntheticSky.render` does, from the memo when seen before."""
        key = (survey, round(float(coord.ra.deg), 7), round(float(coord.dec.deg), 7), size,
               pixscale, band, tuple(sorted(kwargs.items())))
        with self.lock:
            hit = self.memo.get(key)
        if hit is None:
            hit = self.sky.render(survey, coord, size=size, pixscale=pixscale, band=band,
                                  **kwargs)
            with self.lock:
                self.memo[key] = hit
        return hit


def make_sky(replay, cluster=None):
    """The servers' sky: the default synthetic sky (replayed when ``replay``), or with
    ``cluster = (n, radius, seed)`` a crowded field whose Pan-STARRS images are cut from
    whole skycells and whose viewer images are replayed."""
    if cluster is None:
        return ReplaySky() if replay else None
    from astro_mantis.testing import SkycellSky, cluster_catalog

    n, radius, seed = cluster
    sky = SkycellSky(catalog=cluster_catalog(n, radius=radius, seed=seed), max_blocks=4096)
    return ReplaySky(sky=sky) if replay else sky


def _serve(conn, kwargs, replay, cluster=None):
    """Child process: run one SurveyServer and answer commands sent on a pipe."""
    from astro_mantis.testing import SurveyServer

    with SurveyServer(sky=make_sky(replay, cluster), **kwargs) as server:
        conn.send({"panstarrs_url": server.panstarrs_url,
                   "legacysurvey_url": server.legacysurvey_url})
        while True:
            msg = conn.recv()
            if msg == "counts":
                conn.send(dict(server.counts))
            elif msg == "fitscut_sizes":
                conn.send([int(e.params.get("size", 0)) for e in server.log
                           if e.endpoint == "fitscut"])
            elif msg == "cpu":
                conn.send(time.process_time())
            elif isinstance(msg, tuple) and msg[0] == "latency":
                server.latency = msg[1]
                conn.send(None)
            else:
                break


class ProcessServer:
    """A SurveyServer in a child process (a separate "host" with its own CPU)."""

    def __init__(self, replay=False, cluster=None, **kwargs):
        self.kwargs = kwargs
        self.replay = replay
        self.cluster = cluster

    def __enter__(self):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve,
                                 args=(child, self.kwargs, self.replay, self.cluster),
                                 daemon=True)
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
    def latency(self):
        return self.kwargs.get("latency", 0.0)

    @latency.setter
    def latency(self, value):
        self.kwargs["latency"] = value
        self._conn.send(("latency", value))
        self._conn.recv()

    @property
    def fitscut_sizes(self):
        """The ``size`` of every fitscut.cgi request served so far, in order."""
        self._conn.send("fitscut_sizes")
        return self._conn.recv()

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


class _ThreadServer:
    """A SurveyServer in a thread of this process, with ProcessServer's extras."""

    def __init__(self, replay=False, cluster=None, **kwargs):
        from astro_mantis.testing import SurveyServer

        self.server = SurveyServer(sky=make_sky(replay, cluster), **kwargs)

    def __enter__(self):
        self.server.__enter__()
        return self

    def __exit__(self, *exc):
        return self.server.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.server, name)

    def __setattr__(self, name, value):
        if name == "server":
            object.__setattr__(self, name, value)
        else:
            setattr(self.server, name, value)

    @property
    def fitscut_sizes(self):
        return [int(e.params.get("size", 0)) for e in self.server.log
                if e.endpoint == "fitscut"]


def _thread_server(replay=False, cluster=None, **kwargs):
    return _ThreadServer(replay=replay, cluster=cluster, **kwargs)


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


def harness_ceiling(coords, threads, timeout=60.0):
    """Objects/s of the simplest polite client: ``threads`` keep-alive GETs, nothing else.

    Lists ``coords`` with one ``ps1filenames.py`` POST (untimed), then times fetching
    their ``fitscut.cgi`` images with ``threads`` threads, each with its own keep-alive
    `requests.Session`, reading the bodies and doing nothing with them. The rate in
    objects/s (5 images per object) is what this harness allows a client that spends
    no time of its own on an object; the polite limit c/(5L) ignores the time the
    server and the HTTP stack take per request.
    """
    import threading

    from astro_mantis.surveys import get_survey

    ps1 = get_survey("panstarrs")
    pos = [(float(c.ra.deg), float(c.dec.deg)) for c in coords]
    req = ps1.listing_request(pos)
    files = {k: (name, text) for k, (name, text) in req.files.items()}
    resp = requests.post(req.url, data=req.data, files=files, timeout=timeout)
    resp.raise_for_status()
    listing = ps1.parse_listing(resp.content, pos)
    reqs = [q for (ra, dec), entry in zip(pos, listing) if entry
            for q in ps1.image_requests(ra, dec, listing=entry)]
    local = threading.local()
    sessions = []

    def get(q):
        if not hasattr(local, "session"):
            local.session = requests.Session()
            sessions.append(local.session)
        return len(local.session.get(q.url, params=q.params, timeout=timeout).content)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(get, reqs))
    dt = time.perf_counter() - t0
    for sess in sessions:
        sess.close()
    return len(reqs) / 5 / dt, dt, len(reqs) // 5


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


# --------------------------------------------------------------------------- clustered
def same_cutouts(a, b):
    """Whether two lists of cutouts hold the same pixels, WCS, flags and statuses."""
    for x, y in zip(a, b):
        if x.status != y.status or x.flags != y.flags or list(x.surveys) != list(y.surveys):
            return False
        for name in x.surveys:
            if not (np.array_equal(x[name].data, y[name].data, equal_nan=True)
                    and x[name].header.tostring() == y[name].header.tostring()
                    and x[name].flags == y[name].flags):
                return False
    return len(a) == len(b)


def clustered(args):
    """Coalesced against plain requests on a crowded field, same run, same servers."""
    from astro_mantis.testing import cluster_catalog

    L, n, c = args.latency, args.n, int(conf.max_connections_per_host)
    cluster = (n, args.radius, args.seed)
    catalog = cluster_catalog(n, radius=args.radius, seed=args.seed)
    coords = SkyCoord(catalog["ra"], catalog["dec"], unit="deg")
    make = _thread_server if args.in_process else ProcessServer
    print(f"bench_cutouts --clustered: {n} galaxies within {2 * args.radius:g} arcmin, "
          f"coalescing span {args.span:g} arcmin, latency {1000 * L:.0f} ms per request, "
          f"c = conf.max_connections_per_host = {c}")
    print(f"  {machine_line()}; python {platform.python_version()}; servers "
          f"{'in threads' if args.in_process else 'in separate processes'}; Pan-STARRS cut "
          "from whole loopback skycells (SkycellSky)")
    runs = {}
    with make(latency=L, replay=True, cluster=cluster) as ps1, \
            make(latency=L, replay=True, cluster=cluster) as legacy, \
            conf.set_temp("panstarrs_url", ps1.panstarrs_url), \
            conf.set_temp("legacysurvey_url", legacy.legacysurvey_url):
        ps1.latency = legacy.latency = 0.0
        t0 = time.perf_counter()
        for span in (False, args.span):  # draws the skycells, renders the viewer images
            Mantis.get_cutouts(coords, cache=False, progress=False, coalesce=span)
        print(f"  warm-up: both runs once at zero latency in {time.perf_counter() - t0:.1f} s "
              "(not timed below)")
        ps1.latency = legacy.latency = L
        for name, span in (("(p) plain", False), (f"(q) coalesced, {args.span:g}'", args.span)):
            with tempfile.TemporaryDirectory(prefix="bench_cutouts_") as cache_dir, \
                    conf.set_temp("cache_dir", cache_dir):
                before, sizes0 = ps1.counts + legacy.counts, len(ps1.fitscut_sizes)
                cpu0 = time.process_time()
                t0 = time.perf_counter()
                cuts = Mantis.get_cutouts(coords, cache=True, progress=False, coalesce=span)
                dt = time.perf_counter() - t0
                runs[name] = dict(seconds=dt, cpu=time.process_time() - cpu0, cuts=cuts,
                                  requests=_diff(ps1.counts + legacy.counts, before),
                                  sizes=ps1.fitscut_sizes[sizes0:],
                                  missing=sum(1 for cut in cuts if cut.missing))
    plain, coalesced = runs.values()
    width = max(len(k) for k in runs)
    print()
    print(f"  {'run':<{width}}  {'seconds':>8}  {'objects/s':>10}  {'PS1 req/obj':>11}  "
          f"{'viewer req/obj':>14}  {'PS1 Mpix/obj':>12}  {'polite limit':>12}")
    for name, run in runs.items():
        req = run["requests"]
        ps1_req = (req.get("fitscut", 0) + req.get("ps1filenames", 0)) / n
        viewer_req = req.get("fits-cutout", 0) / n
        mpix = sum(size * size for size in run["sizes"]) / 1e6 / n
        limit = c / (max(ps1_req, viewer_req) * L) if L > 0 else float("inf")
        print(f"  {name:<{width}}  {run['seconds']:8.2f}  {n / run['seconds']:10.1f}  "
              f"{ps1_req:11.2f}  {viewer_req:14.2f}  {mpix:12.3f}  {limit:12.1f}")
    print()
    print(f"  speed-up (q)/(p): {plain['seconds'] / coalesced['seconds']:.2f} x; Pan-STARRS "
          f"requests {plain['requests'].get('fitscut', 0)} -> "
          f"{coalesced['requests'].get('fitscut', 0)} (largest "
          f"{max(coalesced['sizes'] or [0])} px); CPU per object: client "
          f"{1000 * plain['cpu'] / n:.1f} ms (p), {1000 * coalesced['cpu'] / n:.1f} ms (q)")
    print(f"  requests (p): {_fmt_counts(plain['requests'])}; (q): "
          f"{_fmt_counts(coalesced['requests'])}")
    print(f"  (q) equals (p) pixel for pixel, with the same WCS, flags and statuses: "
          f"{same_cutouts(plain['cuts'], coalesced['cuts'])}; objects with a missing survey: "
          f"(p) {plain['missing']}, (q) {coalesced['missing']}")
    return 0


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
    parser.add_argument("--live", action="store_true",
                        help="servers render every image during the timed runs (default: "
                             "images are rendered in an untimed warm-up pass and replayed)")
    parser.add_argument("--skip-reference", action="store_true", help="skip (a)")
    parser.add_argument("--n-ceiling", type=int, default=100,
                        help="positions for the harness ceiling (d)")
    parser.add_argument("--skip-ceiling", action="store_true", help="skip (d)")
    parser.add_argument("--profile", metavar="FILE",
                        help="write a cProfile of (b) and (c) to FILE.b and FILE.c (main "
                             "thread only: profile the worker threads with py-spy)")
    parser.add_argument("--clustered", action="store_true",
                        help="coalesced against plain requests on a crowded field of --n "
                             "galaxies instead of (a)-(d)")
    parser.add_argument("--radius", type=float, default=5.0,
                        help="--clustered: radius of the field in arcmin (default 5)")
    parser.add_argument("--span", type=float, default=1.0,
                        help="--clustered: coalescing span in arcmin (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="--clustered: seed of the field")
    args = parser.parse_args(argv)
    if args.clustered:
        return clustered(args)

    L = args.latency
    c = int(conf.max_connections_per_host)
    limit = c / (5 * L) if L > 0 else float("inf")
    coords = positions(args.n)
    make = _thread_server if args.in_process else ProcessServer
    print(f"bench_cutouts: {args.n} positions, latency {1000 * L:.0f} ms per request, "
          f"c = conf.max_connections_per_host = {c}, chunk = {conf.ps1_chunk_size}")
    print(f"  {machine_line()}; python {platform.python_version()}; "
          f"servers {'in threads' if args.in_process else 'in separate processes'}, "
          f"{'rendering live' if args.live else 'replaying pre-rendered images'}")

    rows = []
    replay = not args.live
    with make(latency=L, replay=replay) as ps1, make(latency=L, replay=replay) as legacy, \
            tempfile.TemporaryDirectory(prefix="bench_cutouts_") as cache_dir, \
            conf.set_temp("panstarrs_url", ps1.panstarrs_url), \
            conf.set_temp("legacysurvey_url", legacy.legacysurvey_url), \
            conf.set_temp("cache_dir", cache_dir):
        # warm up both servers and this process (imports, first connections); with
        # replay, the servers render every image once now, at zero latency
        ps1.latency = legacy.latency = 0.0
        t0 = time.perf_counter()
        Mantis.get_cutouts(coords if replay else positions(2, seed=1), cache=False,
                           progress=False)
        if replay:
            print(f"  warm-up: servers rendered {args.n} positions in "
                  f"{time.perf_counter() - t0:.1f} s (not timed below)")
        ps1.latency = legacy.latency = L

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
        # A rerun normally happens in a new session: drop (b)'s 500 cutouts (~350 MB)
        # so that (c) is not timed while the allocator hands it that much fresh memory.
        del cuts
        gc.collect()

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

        ceil_rate = None
        if not args.skip_ceiling:
            nceil = min(args.n_ceiling, args.n)
            ceil_rate, dt, nobj = harness_ceiling(coords[:nceil], c)
            rows.append((f"(d) harness ceiling, PS1 only ({nobj})", dt, ceil_rate))

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
    if ceil_rate:
        print(f"  (d) harness ceiling:                {ceil_rate:6.1f} objects/s "
              f"= {100 * ceil_rate / limit:.1f} % of c/(5L); (b) reaches "
              f"{100 * rate_b / ceil_rate:.1f} % of it")
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
