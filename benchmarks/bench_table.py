"""Photo-z on a table: `add_redshift_columns` throughput and peak memory (issue 5).

Run from the repository root::

    python benchmarks/bench_table.py                    # 2,000 rows at 50 ms; RSS at 10k, 100k
    python benchmarks/bench_table.py --n 100 --rss-sizes 2000,5000      # a quick try
    python benchmarks/bench_table.py --skip-rss         # throughput only
    python benchmarks/bench_table.py --skip-throughput --rss-sizes 10000,50000

No internet is used. As in ``bench_cutouts.py`` (whose helpers are imported), two
`astro_mantis.testing.SurveyServer` instances, each in its own process, play the
Pan-STARRS image services and the Legacy Surveys viewer (GALEX and unWISE).

(a) Throughput. ``add_redshift_columns`` (``mantis-mini``, ``chunk_size=--chunk-size``,
    batch 64, ``cache=True`` into an empty temporary ``conf.cache_dir``) on ``--n``
    rows, all distinct positions, with ``--latency`` seconds added to every request.
    The sky is the servers' default mock sky, `astro_mantis.testing.SyntheticSky`
    (one synthetic galaxy at every position); each image is rendered once in an
    untimed warm-up at zero latency and replayed afterwards (``bench_cutouts.ReplaySky``),
    so the servers' rendering is not timed. Printed: galaxies/s; from the call's run
    report (``report=RunStats()``) the time of the fetching thread and of fusion +
    inference as shares of the wall time (they overlap, so the shares may add up to
    more than 100 %); and two baselines measured in the same run, on the same
    positions and in the same chunks as the pipeline:

    (i)  fetch only: ``Mantis.get_cutouts`` per chunk into another empty cache;
    (ii) inference only: on the cutouts of (i) (read back from its cache, untimed),
         ``astro_mantis.models.predict`` plus the PDF summaries the table gets
         (mean, median, mode, std, 68 % interval): the work that the report's
         ``infer_seconds`` counts.

    A perfectly overlapped pipeline takes max((i), (ii)); the ratio of (a)'s wall time
    to it is printed, with (i) + (ii) (no overlap) for comparison.

(b) Peak memory. For each size in ``--rss-sizes`` a fresh client process loads the
    model (running it once, as the first call does), builds the input table of that
    many distinct positions, resets its RSS high-water mark (Linux
    ``/proc/self/clear_refs``), runs ``add_redshift_columns`` with ``cache=False`` at
    zero latency and reports the peak RSS of the call (``VmHWM``) against the RSS at
    its start. A baseline process that only does the set-up is run too, for the record.
    The servers answer from `CheapSky`: ``--templates`` images rendered by
    `SyntheticSky` at start-up, each position getting the pixels of template
    ``hash(position) % K`` under a header (WCS, ``EXPTIME``) built for the requested
    position, so that serving many positions costs no rendering. Every row is still a
    distinct position, listed, fetched, fused and inferred. Printed per size: RSS at the
    start of the call, peak in the call, growth, the bytes of the output columns' data
    (every column the call added to the table, as that run's table holds them: the
    float32 N x 400 PDF, the float64 summaries, ``z_ood`` where the model has a
    reference embedding, the int32 flags; listed with their bytes per row), and
    whether growth <= columns + an allowance for the chunk buffers (``chunk_size`` x
    1.2 MB x 2 chunks, printed); and, between the smallest and the largest size, the
    growth per row, to compare with the columns' bytes per row: the cleanest test of
    "memory grows no more than the PDF columns" (use sizes of many chunks each, so
    that the chunk buffers are at their steady size in both).
"""
import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_cutouts  # noqa: E402

#: Memory of one position's cutouts and fused input, as add_redshift_columns documents.
CHUNK_BYTES_PER_POSITION = 1.2e6
MB = 1e6
_MARKER = "BENCH_TABLE_RESULT "


# --------------------------------------------------------------------------- cheap sky
class CheapSky:
    """Answers every position with one of ``k`` pre-rendered images, under its own WCS.

    At start-up `~astro_mantis.testing.SyntheticSky` renders, at ``k`` template
    positions, the default cutouts the client asks for (PS1 g r i z y 170 x 170 at
    0.25", GALEX 32 x 32 at 1.5", unWISE 32 x 32 at 2.75"). A request at (ra, dec) gets
    the pixels of template ``hash((ra, dec)) % k`` (and, for PS1, that template's
    ``EXPTIME``, which sets the pixels' zero point) with a header built for (ra, dec):
    a PS1 stack WCS whose ``CRVAL`` is the requested position's skycell centre, a viewer
    WCS centred on it. Other geometries are rendered on first use and kept.
    """

    _DEFAULTS = (("panstarrs", ("g", "r", "i", "z", "y"), 170, 0.25),
                 ("galex", (None,), 32, 1.5), ("unwise", (None,), 32, 2.75))

    def __init__(self, k=50, seed=0):
        from astro_mantis.testing import SyntheticSky

        self.sky = SyntheticSky(seed=seed)
        self.k = int(k)
        tpl = bench_cutouts.positions(self.k, seed=seed + 2024)
        self.templates = list(zip(tpl.ra.deg, tpl.dec.deg))
        self.memo = {}
        self.lock = threading.Lock()
        for survey, bands, size, pixscale in self._DEFAULTS:
            for band in bands:
                for i in range(self.k):
                    self._template(survey, band, size, pixscale, i)

    def _template(self, survey, band, size, pixscale, i):
        key = (survey, band, size, float(pixscale), i)
        with self.lock:
            hit = self.memo.get(key)
        if hit is None:
            from astro_mantis.testing import ps1_skycell

            ra, dec = self.templates[i]
            extra = {}
            if survey == "panstarrs":
                extra["skycell_center"] = ps1_skycell(ra, dec)[2:]
            hdu = self.sky.render(survey, (ra, dec), size=size, pixscale=pixscale, band=band,
                                  **extra)[0]
            hit = (np.asarray(hdu.data, dtype=np.float32), hdu.header.get("EXPTIME"))
            with self.lock:
                self.memo[key] = hit
        return hit

    def render(self, survey, coord, size=None, pixscale=None, band=None, *,
               skycell_center=None):
        """An `~astropy.io.fits.HDUList` as `SyntheticSky.render` returns it."""
        from astro_mantis.simulate import service_format as sf

        survey = sf.normalise_survey(survey)
        ra, dec = sf.coord_to_radec(coord)
        size, pixscale = sf.default_geometry(survey, size, pixscale)
        i = hash((round(float(ra), 7), round(float(dec), 7))) % self.k
        data, exptime = self._template(survey, band, size, pixscale, i)
        if survey == "panstarrs":
            band = sf.normalise_band("panstarrs", band)
            crval, crpix, cd = sf.ps1_geometry(ra, dec, size, pixscale, skycell_center)
            return sf.ps1_hdulist(data, band, crval, crpix, cd, exptime)
        crval, crpix, cd = sf.viewer_geometry(ra, dec, size, pixscale)
        return sf.viewer_hdulist(data, survey, sf.band_list(survey, band), crval, crpix, cd)


def _serve_cheap(conn, kwargs, k):
    """Child process: a SurveyServer on a `CheapSky`, answering commands on a pipe."""
    from astro_mantis.testing import SurveyServer

    with SurveyServer(sky=CheapSky(k), **kwargs) as server:
        server.log = deque(maxlen=1000)  # not 700,000 entries for 100,000 positions
        conn.send({"panstarrs_url": server.panstarrs_url,
                   "legacysurvey_url": server.legacysurvey_url})
        while True:
            msg = conn.recv()
            if msg == "counts":
                conn.send(dict(server.counts))
            elif msg == "cpu":
                conn.send(time.process_time())
            elif isinstance(msg, tuple) and msg[0] == "latency":
                server.latency = msg[1]
                conn.send(None)
            else:
                break


class CheapServer(bench_cutouts.ProcessServer):
    """`bench_cutouts.ProcessServer` serving a `CheapSky` of ``k`` templates."""

    def __init__(self, k=50, **kwargs):
        super().__init__(replay=False, **kwargs)
        self.k = k

    def __enter__(self):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_cheap, args=(child, self.kwargs, self.k),
                                 daemon=True)
        self._proc.start()
        if not self._conn.poll(300):
            raise RuntimeError("loopback server process did not start")
        urls = self._conn.recv()
        self.panstarrs_url = urls["panstarrs_url"]
        self.legacysurvey_url = urls["legacysurvey_url"]
        return self


# --------------------------------------------------------------------------- helpers
def input_table(n, seed=12345):
    """``n`` distinct positions (ra, dec in degrees) with a dust column."""
    from astropy.table import Table

    coords = bench_cutouts.positions(n, seed=seed)
    return Table({"ra": coords.ra.deg, "dec": coords.dec.deg,
                  "ebv": np.full(n, 0.02)}), coords


def chunks_of(n, size):
    return [np.arange(s, min(s + size, n)) for s in range(0, n, size)]


def machine_line(threads):
    import torch

    from _machine import machine_line

    return (f"  {machine_line()}; python {platform.python_version()}, torch "
            f"{torch.__version__} ({threads} CPU threads), numpy {np.__version__}, "
            f"{platform.machine()}")


def current_rss():
    """Resident set size of this process now, bytes."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss():
    """Peak resident set size of this process, bytes.

    On Linux ``VmHWM`` of ``/proc/self/status``: ``getrusage(RUSAGE_SELF).ru_maxrss``
    survives ``execve``, so a child started by a process of 2 GB reports at least 2 GB
    whatever it does itself. Elsewhere ``ru_maxrss`` (macOS reports bytes).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def reset_peak_rss():
    """Reset this process's high-water mark to its current RSS (Linux ``clear_refs`` 5).

    Returns True if it worked, so that `peak_rss` afterwards is the peak since now.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- (a)
def throughput(args):
    import torch

    from astro_mantis import Mantis, add_redshift_columns, conf
    from astro_mantis.models import predict
    from astro_mantis.table import RunStats

    torch.set_num_threads(args.threads)
    n, L, cs, bs = args.n, args.latency, args.chunk_size, 64
    c = int(conf.max_connections_per_host)
    table, coords = input_table(n)
    dust = np.full((n, 2), 0.02, np.float32)
    chunks = chunks_of(n, cs)
    print(f"bench_table (a): add_redshift_columns on {n} rows (distinct positions), "
          f"latency {1000 * L:.0f} ms per request, chunk_size {cs}, batch {bs}, "
          f"c = conf.max_connections_per_host = {c}")
    print(machine_line(torch.get_num_threads()))
    print("  sky: astro_mantis.testing.SyntheticSky(seed=0), the SurveyServer default mock "
          "sky (one synthetic galaxy at each position),\n       rendered once per image in an "
          "untimed warm-up and replayed (bench_cutouts.ReplaySky); two servers in separate "
          "processes")

    with bench_cutouts.ProcessServer(latency=L, replay=True) as ps1, \
            bench_cutouts.ProcessServer(latency=L, replay=True) as legacy, \
            conf.set_temp("panstarrs_url", ps1.panstarrs_url), \
            conf.set_temp("legacysurvey_url", legacy.legacysurvey_url):
        ps1.latency = legacy.latency = 0.0
        t0 = time.perf_counter()
        for k, chunk in enumerate(chunks):
            cuts = Mantis.get_cutouts(coords[chunk], cache=False, progress=False)
            if k == 0:  # load the model and warm torch up
                predict(cuts[:bs], model="mantis-mini", dust=dust[chunk[:bs]], batch_size=bs)
            del cuts
        print(f"  warm-up: servers rendered {n} positions, model loaded, in "
              f"{time.perf_counter() - t0:.1f} s (not timed below)")
        ps1.latency = legacy.latency = L

        # (a) the pipeline
        with tempfile.TemporaryDirectory(prefix="bench_table_a_") as cache_dir, \
                conf.set_temp("cache_dir", cache_dir):
            before = ps1.counts + legacy.counts
            srv0, cpu0 = bench_cutouts._server_cpu(ps1, legacy), time.process_time()
            run = RunStats()
            t0 = time.perf_counter()
            add_redshift_columns(table, ra="ra", dec="dec", ebv="ebv", chunk_size=cs,
                                 batch_size=bs, progress=False, cache=True, report=run)
            wall = time.perf_counter() - t0
            cpu_a = time.process_time() - cpu0
            srv_a = bench_cutouts._server_cpu(ps1, legacy) - srv0
            req_a = bench_cutouts._diff(ps1.counts + legacy.counts, before)
        finite = int(np.sum(np.all(np.isfinite(np.ma.filled(table["z_pdf"], np.nan)), axis=1)))

        # (i) fetch only, same chunks, another empty cache; (ii) inference only on them
        with tempfile.TemporaryDirectory(prefix="bench_table_i_") as cache_dir, \
                conf.set_temp("cache_dir", cache_dir):
            t_fetch, missing = 0.0, 0
            for chunk in chunks:
                t0 = time.perf_counter()
                cuts = Mantis.get_cutouts(coords[chunk], cache=True, progress=False)
                t_fetch += time.perf_counter() - t0
                missing += sum(1 for cut in cuts if cut.missing)
                del cuts
            t_infer = 0.0
            before = ps1.counts + legacy.counts
            for chunk in chunks:
                cuts = Mantis.get_cutouts(coords[chunk], cache=True, progress=False)
                t0 = time.perf_counter()
                res = predict(cuts, model="mantis-mini", dust=dust[chunk], batch_size=bs)
                res.interval(0.68), res.mean(), res.median(), res.mode(), res.std()
                t_infer += time.perf_counter() - t0
                del cuts, res
            req_ii = bench_cutouts._diff(ps1.counts + legacy.counts, before)

    rows = [("(a) add_redshift_columns, fetch || inference", wall),
            ("(i) Mantis.get_cutouts alone, empty cache", t_fetch),
            ("(ii) predict + PDF summaries alone", t_infer)]
    width = max(len(r[0]) for r in rows)
    print()
    print(f"  {'run':<{width}}  {'seconds':>8}  {'galaxies/s':>10}")
    print(f"  {'-' * width}  {'-' * 8}  {'-' * 10}")
    for name, dt in rows:
        print(f"  {name:<{width}}  {dt:8.2f}  {n / dt:10.1f}")
    print()
    print(f"  (a) report: {run.n_unique} distinct positions in {run.n_chunks} chunks, "
          f"{run.n_estimated} rows estimated ({finite} with a finite PDF); wall "
          f"{run.wall_seconds:.2f} s")
    print(f"      fetching thread {run.fetch_seconds:7.2f} s = "
          f"{100 * run.fetch_seconds / wall:5.1f} % of wall  (alone, (i): {t_fetch:.2f} s; "
          f"x {run.fetch_seconds / t_fetch:.2f} while overlapped)")
    print(f"      fusion+inference{run.infer_seconds:7.2f} s = "
          f"{100 * run.infer_seconds / wall:5.1f} % of wall  (alone, (ii): {t_infer:.2f} s; "
          f"x {run.infer_seconds / t_infer:.2f} while overlapped)")
    print(f"      main thread not inferring (waiting for chunks, set-up, columns): "
          f"{wall - run.infer_seconds:.2f} s = {100 * (wall - run.infer_seconds) / wall:.1f} %")
    best, serial = max(t_fetch, t_infer), t_fetch + t_infer
    print(f"  max((i), (ii)) = {best:.2f} s: (a) takes {wall / best:.3f} x that "
          f"({100 * best / wall:.1f} % of the perfectly overlapped rate); "
          f"(i) + (ii) = {serial:.2f} s, (a) saves {100 * (1 - wall / serial):.1f} % of it")
    if L > 0:
        limit = c / (5 * L)
        print(f"  polite fetch limit c/(5L) = {limit:.1f} objects/s: "
              f"(a) {100 * n / wall / limit:.1f} %, (i) {100 * n / t_fetch / limit:.1f} %")
    print(f"  CPU per galaxy in (a): client {1000 * cpu_a / n:.1f} ms, servers "
          f"{1000 * srv_a / n:.1f} ms")
    print(f"  requests in (a): {bench_cutouts._fmt_counts(req_a)}; during (ii): "
          f"{bench_cutouts._fmt_counts(req_ii)}; (i) positions with a missing survey: {missing}")
    print(f"  flags in (a): {run.flags}")


# --------------------------------------------------------------------------- (b)
def rss_child(args):
    """Fresh process: baseline (no call) or one add_redshift_columns call; prints JSON."""
    import torch

    torch.set_num_threads(args.threads)
    from astro_mantis import add_redshift_columns, conf
    from astro_mantis import table as table_mod
    from astro_mantis.models import predict
    from astro_mantis.table import RunStats

    n = args.rss_child
    # load the model as the first call does, and run it once (torch's own start-up)
    predict(np.zeros((1, 9, 120, 120), np.float32), model="mantis-mini",
            dust=np.zeros((1, 2), np.float32))
    table, coords = input_table(n)
    del coords
    inputs = set(table.colnames)
    out = {"n": n, "before": peak_rss(), "rss_before_now": current_rss()}
    # from here on, VmHWM is the peak of the call alone (start-up peaks are forgotten)
    out["reset"] = reset_peak_rss()
    out["rss_before_now"] = current_rss()
    if not args.baseline:
        with tempfile.TemporaryDirectory(prefix="bench_table_rss_") as cache_dir, \
                conf.set_temp("cache_dir", cache_dir), \
                conf.set_temp("panstarrs_url", args.ps1_url), \
                conf.set_temp("legacysurvey_url", args.legacy_url):
            run = RunStats()
            t0 = time.perf_counter()
            add_redshift_columns(table, ra="ra", dec="dec", ebv="ebv", chunk_size=args.chunk_size,
                                 progress=False, cache=False, report=run)
            out["seconds"] = time.perf_counter() - t0
        # every column the call added, as stored (column_names() and z_ood, if made)
        names = [c for c in table.colnames if c not in inputs]
        missing = set(table_mod.column_names()) - set(names)
        if missing:
            raise RuntimeError(f"add_redshift_columns did not add {sorted(missing)}")
        data = sum(np.ma.getdata(table[c]).nbytes for c in names)
        masks = sum(np.ma.getmask(table[c]).nbytes for c in names
                    if np.ma.getmask(table[c]) is not np.ma.nomask)
        out["columns"] = [(c, str(np.ma.getdata(table[c]).dtype),
                           np.ma.getdata(table[c]).nbytes / n) for c in names]
        out.update(n_unique=run.n_unique, n_estimated=run.n_estimated, n_chunks=run.n_chunks,
                   fetch_seconds=run.fetch_seconds, infer_seconds=run.infer_seconds,
                   flags=run.flags, column_data=data, column_masks=masks,
                   finite=int(np.sum(np.all(np.isfinite(np.ma.getdata(table["z_pdf"])),
                                            axis=1))))
    out["peak"] = peak_rss()
    out["rss_now"] = current_rss()
    print(_MARKER + json.dumps(out), flush=True)


def _run_child(n, args, urls=None):
    cmd = [sys.executable, __file__, "--rss-child", str(n), "--chunk-size", str(args.chunk_size),
           "--threads", str(args.threads)]
    if urls is None:
        cmd.append("--baseline")
    else:
        cmd += ["--ps1-url", urls[0], "--legacy-url", urls[1]]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MARKER)]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise RuntimeError(f"RSS child for {n} rows failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(_MARKER):])


def memory(args):
    sizes = [int(s) for s in args.rss_sizes.split(",") if s.strip()]
    allowance = args.chunk_size * CHUNK_BYTES_PER_POSITION * 2
    print(f"bench_table (b): peak RSS of add_redshift_columns, a fresh client process per "
          f"run; sizes {', '.join(f'{s:,}' for s in sizes)} rows (distinct positions)")
    print("  peak RSS = the client process's own high-water mark (VmHWM; ru_maxrss would "
          "include this parent's RSS at fork)")
    print(machine_line(args.threads))
    print(f"  sky: CheapSky, {args.templates} SyntheticSky(seed=0) templates, each position "
          "served template hash(position) % K's pixels under a header/WCS\n       built for "
          "that position; latency 0; two servers in separate processes; cache=False; "
          f"chunk_size {args.chunk_size}, batch 64")
    print("  output columns: every column the call adds, their data's bytes as each run's "
          "table holds them (listed after the first run)")
    print(f"  chunk allowance: chunk_size x {CHUNK_BYTES_PER_POSITION / MB:.1f} MB x 2 chunks = "
          f"{args.chunk_size} x {CHUNK_BYTES_PER_POSITION / MB:.1f} MB x 2 = "
          f"{allowance / MB:.1f} MB")
    results = []
    t0 = time.perf_counter()
    with CheapServer(k=args.templates, latency=0.0) as ps1, \
            CheapServer(k=args.templates, latency=0.0) as legacy:
        print(f"  servers started (templates rendered) in {time.perf_counter() - t0:.1f} s",
              flush=True)
        urls = (ps1.panstarrs_url, legacy.legacysurvey_url)
        for n in sizes:
            base = _run_child(n, args)
            full = _run_child(n, args, urls)
            if not results:
                print("  output columns of the first run (data, bytes per row): " + " + ".join(
                    f"{c} {dtype} {b:,.0f} B" for c, dtype, b in full["columns"])
                    + f" = {full['column_data'] / n:,.0f} B/row", flush=True)
            results.append((n, base, full))
            print(f"  {n:,} rows: {full['seconds']:.1f} s ({n / full['seconds']:.1f} rows/s), "
                  f"{full['n_unique']:,} distinct positions in {full['n_chunks']} chunks, "
                  f"{full['n_estimated']:,} estimated, {full['finite']:,} finite PDFs; fetch "
                  f"thread {full['fetch_seconds']:.1f} s, inference {full['infer_seconds']:.1f}"
                  f" s; flags {full['flags']}", flush=True)
        counts = ps1.counts + legacy.counts
    print(f"  requests served: {bench_cutouts._fmt_counts(counts)}")

    print()
    print("  The high-water mark is reset (Linux /proc/self/clear_refs) once the model is loaded "
          "and the input table built,\n  so 'peak in call' is the largest RSS during "
          "add_redshift_columns alone; growth = peak in call - RSS at its start.")
    head = ("rows", "RSS at start", "peak in call", "growth", "columns", "cols+allow",
            "growth<=cols+allow")
    print("  " + "  ".join(f"{h:>{max(len(h), 9)}}" for h in head) + "   (MB = 1e6 bytes)")
    growths = []
    for n, base, full in results:
        if not full.get("reset"):
            raise RuntimeError("could not reset the RSS high-water mark (not Linux?)")
        growth = full["peak"] - full["rss_before_now"]
        growths.append(growth)
        cols = full["column_data"]
        ok = "yes" if growth <= cols + allowance else "NO"
        vals = (f"{n:,}", f"{full['rss_before_now'] / MB:.1f}", f"{full['peak'] / MB:.1f}",
                f"{growth / MB:.1f}", f"{cols / MB:.1f}", f"{(cols + allowance) / MB:.1f}", ok)
        print("  " + "  ".join(f"{v:>{max(len(h), 9)}}" for v, h in zip(vals, head)))
    print()
    for n, base, full in results:
        print(f"  {n:,} rows: output columns as stored: data {full['column_data'] / n:.0f} B/row"
              f" + masks {full['column_masks'] / n:.0f} B/row; RSS after the call "
              f"{full['rss_now'] / MB:.1f} MB; start-up peak (before the reset) "
              f"{full['before'] / MB:.1f} MB; baseline process: RSS {base['rss_now'] / MB:.1f}"
              " MB")
    if len(results) > 1:
        n1, n2 = results[0][0], results[-1][0]
        slope = (growths[-1] - growths[0]) / (n2 - n1)
        per_row = results[-1][2]["column_data"] / n2
        verdict = "yes" if slope <= per_row else "NO"
        print(f"  slope {n1:,} -> {n2:,} rows: peak growth {slope:,.0f} B/row against the "
              f"columns' {per_row:,.0f} B/row of data: {slope / per_row:.2f} x; "
              f"grows no more than the columns: {verdict}")


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
    parser.add_argument("--n", type=int, default=2000, help="rows for the throughput run (a)")
    parser.add_argument("--latency", type=float, default=0.05,
                        help="seconds added by the servers to every request in (a)")
    parser.add_argument("--rss-sizes", default="10000,100000",
                        help="comma-separated table sizes for the peak-RSS runs (b)")
    parser.add_argument("--skip-rss", action="store_true", help="skip (b)")
    parser.add_argument("--skip-throughput", action="store_true", help="skip (a)")
    parser.add_argument("--chunk-size", type=int, default=256,
                        help="add_redshift_columns chunk_size (default 256)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--templates", type=int, default=50,
                        help="pre-rendered images of the CheapSky in (b) (default 50)")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ps1-url", help=argparse.SUPPRESS)
    parser.add_argument("--legacy-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from astro_mantis import log

    log.setLevel("WARNING")  # no per-call INFO summaries between the figures
    if args.rss_child is not None:
        rss_child(args)
        return 0
    t0 = time.perf_counter()
    if not args.skip_throughput:
        throughput(args)
        print(flush=True)
    if not args.skip_rss:
        memory(args)
        print()
    print(f"  total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
