# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The cutout cache shared by several processes (the distributed paths' workers).

Real processes (``multiprocessing``, fork), real SIGKILLs: concurrent writers of one
entry, a writer killed in the middle of a write, and a rerun after a crashed run that
fetches nothing the crashed run had stored.
"""
import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from astro_mantis import Mantis, conf
from astro_mantis.atomic import TEMP_SUFFIX
from astro_mantis.cutouts import CutoutCache, FetchStatus
from astro_mantis.simulate import SampleSky
from astro_mantis.surveys import DEFAULT_SURVEYS, get_survey
from astro_mantis.surveys.core import SurveyImage
from astro_mantis.testing import SurveyServer

if "fork" not in mp.get_all_start_methods():  # pragma: no cover
    pytest.skip("needs the fork start method", allow_module_level=True)

CTX = mp.get_context("fork")
KEY = "ab" + "0" * 38


def _image(value, shape=(5, 170, 170)):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [85.5, 85.5]
    w.wcs.cdelt = [-0.25 / 3600, 0.25 / 3600]
    return SurveyImage("panstarrs", np.full(shape, value, np.float32), w.to_header(),
                       "adu", list("grizy"), check_nan=False, zeropoints=[25.0] * 5)


def _writer(directory, value, n, start):
    cache = CutoutCache(directory)
    image = _image(value)
    start.wait()
    for _ in range(n):
        cache.store("panstarrs", KEY, image, "src")


def _reader(directory, stop, out):
    """Read the entry's bytes as they are on disk; decode; count what was seen."""
    path = CutoutCache(directory).path("panstarrs", KEY)
    seen = {"absent": 0, "damaged": 0, "torn": 0}
    while not stop.is_set():
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            seen["absent"] += 1
            continue
        try:
            image = CutoutCache.decode(raw, "src")
        except ValueError:
            seen["damaged"] += 1
            continue
        values = np.unique(image.data)
        if values.size != 1:
            seen["torn"] += 1
        else:
            seen[int(values[0])] = seen.get(int(values[0]), 0) + 1
    out.put(seen)


def test_concurrent_writers_of_one_entry(tmp_path):
    start, stop, out = CTX.Event(), CTX.Event(), CTX.Queue()
    writers = [CTX.Process(target=_writer, args=(tmp_path, v, 25, start)) for v in (1, 2, 3, 4)]
    readers = [CTX.Process(target=_reader, args=(tmp_path, stop, out)) for _ in range(2)]
    for p in writers + readers:
        p.start()
    start.set()
    for p in writers:
        p.join(60)
        assert p.exitcode == 0
    stop.set()
    seen = [out.get(timeout=30) for _ in readers]
    for p in readers:
        p.join(30)
    # the readers saw whole entries of the writers, never a damaged or torn one
    assert all(s["damaged"] == 0 and s["torn"] == 0 for s in seen)
    values = {k for s in seen for k in s if isinstance(k, int)}
    assert values and values <= {1, 2, 3, 4}
    final = CutoutCache(tmp_path).load("panstarrs", KEY, "src")
    assert np.unique(final.data).size == 1 and int(final.data[0, 0, 0]) in (1, 2, 3, 4)
    assert final.bands == tuple("grizy") or list(final.bands) == list("grizy")
    # every writer's temporary file was renamed into place: none left behind
    assert not list(tmp_path.rglob(f"*{TEMP_SUFFIX}*"))


def _stalled_store(directory, value, started, where):
    """Store an entry but stop for good half-way through the bytes or before the rename."""
    import sys

    import astro_mantis.atomic as atomic

    cutouts = sys.modules[CutoutCache.__module__]  # where the cache's writer lives
    if where == "write":
        real = cutouts.atomic_open

        class Half:
            def __init__(self, fh):
                self.fh = fh

            def write(self, data):
                self.fh.write(data[:len(data) // 2])
                self.fh.flush()
                started.set()
                time.sleep(600)

        import contextlib

        @contextlib.contextmanager
        def half_open(path, mode="wb", fsync=True, **kwargs):
            with real(path, mode, fsync=fsync, **kwargs) as fh:
                yield Half(fh)

        cutouts.atomic_open = half_open
    else:
        def stall(src, dst):
            started.set()
            time.sleep(600)

        atomic.os.replace = stall
    CutoutCache(directory).store("panstarrs", KEY, _image(value), "src")


@pytest.mark.parametrize("where", ["write", "rename"])
@pytest.mark.parametrize("old", [True, False])
def test_writer_killed_mid_write(tmp_path, where, old):
    cache = CutoutCache(tmp_path)
    if old:
        cache.store("panstarrs", KEY, _image(7), "src")
    started = CTX.Event()
    p = CTX.Process(target=_stalled_store, args=(tmp_path, 9, started, where))
    p.start()
    assert started.wait(30), "the writer never reached the point of the kill"
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    # the killed write left its temporary file, and nothing else: the entry is the old
    # one, whole, or absent (so it is fetched again)
    leftovers = list(tmp_path.rglob(f"*{TEMP_SUFFIX}*"))
    assert len(leftovers) == 1
    entry = CutoutCache(tmp_path).load("panstarrs", KEY, "src")
    if old:
        assert np.all(entry.data == 7)
    else:
        assert entry is None
    # a later writer (another process) stores the entry as usual
    q = CTX.Process(target=_writer, args=(tmp_path, 5, 1, _set_event()))
    q.start()
    q.join(30)
    assert q.exitcode == 0
    assert np.all(CutoutCache(tmp_path).load("panstarrs", KEY, "src").data == 5)


def _set_event():
    e = CTX.Event()
    e.set()
    return e


def _fetch(panstarrs_url, legacysurvey_url, directory, ra, dec):
    with conf.set_temp("panstarrs_url", panstarrs_url), \
            conf.set_temp("legacysurvey_url", legacysurvey_url), \
            conf.set_temp("cache_dir", str(directory)), conf.set_temp("backoff", 0.01):
        cuts = Mantis.get_cutouts(SkyCoord(ra, dec, unit="deg"), progress=False)
    bad = [s for c in cuts for s in c.status.values()
           if FetchStatus.of(s) is FetchStatus.FAILED]
    os._exit(1 if bad else 0)


def _request_survey(entry):
    if entry.endpoint == "fitscut":
        return "panstarrs"
    if entry.endpoint == "fits-cutout":
        return "galex" if entry.params.get("layer") == "galex" else "unwise"
    return None


def test_rerun_after_a_crash_fetches_nothing_stored(tmp_path):
    cat = SampleSky().catalog
    n = 40
    ra, dec = np.array(cat["ra"][:n]), np.array(cat["dec"][:n])
    with SurveyServer(sky=SampleSky(), latency=0.03) as srv, srv.configure(conf):
        keys = {(s, get_survey(s).cache_key(ra[i], dec[i])): i
                for s in DEFAULT_SURVEYS for i in range(n)}
        args = (srv.panstarrs_url, srv.legacysurvey_url, tmp_path, ra, dec)
        crashed = CTX.Process(target=_fetch, args=args)
        crashed.start()
        cache = CutoutCache(tmp_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stored = sum(cache.path(s, k).exists() for s, k in keys)
            if stored >= 20:
                break
            time.sleep(0.01)
        os.kill(crashed.pid, signal.SIGKILL)
        crashed.join(30)
        assert crashed.exitcode == -signal.SIGKILL
        before = {(s, i) for (s, k), i in keys.items() if cache.path(s, k).exists()}
        assert 20 <= len(before) < len(keys), "the crash did not happen mid-run"
        srv.reset()
        rerun = CTX.Process(target=_fetch, args=args)
        rerun.start()
        rerun.join(120)
        assert rerun.exitcode == 0  # every cutout of every position, none failed
        log = list(srv.log)
    # nothing stored before the crash was asked for again
    for entry in log:
        survey = _request_survey(entry)
        if survey is None:
            continue
        i = int(np.argmin(np.hypot(ra - float(entry.params["ra"]),
                                   dec - float(entry.params["dec"]))))
        assert (survey, i) not in before, f"{survey} cutout of position {i} fetched again"
    listed = sum(e.npositions or 0 for e in log if e.endpoint == "ps1filenames")
    assert listed == n - sum(1 for s, _ in before if s == "panstarrs")
    fetched = {(_request_survey(e), int(np.argmin(np.hypot(ra - float(e.params["ra"]),
                                                          dec - float(e.params["dec"])))))
               for e in log if _request_survey(e)}
    assert fetched == {(s, i) for s in DEFAULT_SURVEYS for i in range(n)} - before
    assert all(CutoutCache(tmp_path).path(s, k).exists() for s, k in keys)
