# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Retry-After, cancelling, shared host limits, redirects and cache hygiene of the
fetch engine, against loopback servers."""
import threading
import time
import urllib.request
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from astro_mantis import MultiSurveyCutout, conf
from astro_mantis.fetch import CutoutCache, FetchCancelled, fetcher
from astro_mantis.retry import RetryPolicy
from astro_mantis.testing import SurveyServer

POS = SkyCoord(150.0, 2.0, unit="deg")


class _Stub:
    """A tiny loopback HTTP server answering GETs with ``answer(handler, n)``."""

    def __init__(self, answer):
        self.hits = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                stub.hits.append(time.monotonic())
                status, headers, body = answer(self.path, len(stub.hits))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/viewer"

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def stub():
    made = []

    def make(answer):
        made.append(_Stub(answer))
        return made[-1]

    yield make
    for s in made:
        s.close()


# ----------------------------------------------------------------------- Retry-After
def test_parse_retry_after():
    from astro_mantis.retry import parse_retry_after

    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    assert 9 <= parse_retry_after(formatdate(now + 10, usegmt=True), now=now) <= 10.01
    assert parse_retry_after(formatdate(now - 10, usegmt=True), now=now) == 0.0


def test_retry_after_is_honoured(stub, tmp_path):
    with SurveyServer() as real:
        def answer(path, n):
            if n == 1:
                return 429, {"Retry-After": "1"}, b"slow down"
            return 200, {}, urllib.request.urlopen(real.url + path).read()

        s = stub(answer)
        with conf.set_temp("legacysurvey_url", s.url), conf.set_temp("cache_dir", str(tmp_path)), \
                conf.set_temp("backoff", 0.001), conf.set_temp("retries", 2):
            cut = fetcher.get_cutouts(POS, surveys="galex", progress=False)
    assert cut.status["galex"] == "ok"
    assert len(s.hits) == 2 and s.hits[1] - s.hits[0] >= 0.95  # not the 2 ms back-off


def test_retry_after_beyond_the_cap_fails_at_once(stub, tmp_path):
    s = stub(lambda path, n: (503, {"Retry-After": "3600"}, b"maintenance"))
    with conf.set_temp("legacysurvey_url", s.url), conf.set_temp("cache_dir", str(tmp_path)), \
            conf.set_temp("backoff", 0.001), conf.set_temp("retries", 3):
        t0 = time.monotonic()
        cut = fetcher.get_cutouts(POS, surveys="galex", progress=False)
    assert time.monotonic() - t0 < 5
    assert len(s.hits) == 1
    assert "retry after 3600 s" in cut.status["galex"] and "not retried" in cut.status["galex"]


# ----------------------------------------------------------------------- cancelling
def test_cancel_stops_retries_and_backoff(tmp_path):
    with SurveyServer(error_rate=1.0, seed=1) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path)), conf.set_temp("backoff", 2.0), \
            conf.set_temp("retries", 3), conf.set_temp("max_connections_per_host", 2):
        coords = SkyCoord(150 + 0.01 * np.arange(4), np.full(4, 2.0), unit="deg")
        cancel = threading.Event()
        at_cancel = []

        def cancel_now():
            at_cancel.append(srv.counts["fits-cutout"])
            cancel.set()

        timer = threading.Timer(0.2, cancel_now)
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(FetchCancelled):
            fetcher.get_cutouts(coords, surveys="galex", progress=False, cancel=cancel)
        elapsed = time.monotonic() - t0
        timer.join()
        sent = srv.counts["fits-cutout"]
        time.sleep(0.3)
        assert srv.counts["fits-cutout"] == sent  # nothing sent after the call returned
    assert elapsed < 1.5  # not the ~20 s of every retry's back-off
    # no attempt starts after the cancel: at most the two in flight then (a short
    # back-off may have let a retry go before it) are counted afterwards
    assert sent <= at_cancel[0] + 2


def test_retry_policy_cancel():
    cancel = threading.Event()
    tries = RetryPolicy(retries=3, backoff=10.0, seed=0).attempts(cancel)
    assert next(tries) == 0
    threading.Timer(0.1, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(Exception, match="cancelled"):
        next(tries)  # a back-off of up to 20 s, cut short
    assert time.monotonic() - t0 < 2


def test_answers_in_flight_at_cancel_are_cached(tmp_path):
    with SurveyServer(latency=0.6) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path)), \
            conf.set_temp("max_connections_per_host", 2):
        coords = SkyCoord(np.linspace(150, 150.1, 6), np.full(6, 2.0), unit="deg")
        cancel = threading.Event()

        def cancel_when_two_are_in_flight():  # received, answered 0.6 s later
            deadline = time.monotonic() + 30
            while srv.counts["fits-cutout"] < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            cancel.set()

        timer = threading.Thread(target=cancel_when_two_are_in_flight)
        timer.start()
        with pytest.raises(FetchCancelled):
            fetcher.get_cutouts(coords, surveys="galex", progress=False, cancel=cancel)
        timer.join()
        answered = srv.counts["fits-cutout"]
    assert answered == 2
    assert len(list(tmp_path.rglob("*.amc"))) == answered  # what they brought is cached


# ----------------------------------------------------------------------- host limit
def test_calls_with_different_limits_share_one(tmp_path):
    def call(ra0):
        c = SkyCoord(ra0 + 0.01 * np.arange(16), np.full(16, 2.0), unit="deg")
        fetcher.get_cutouts(c, surveys="galex", progress=False, cache=False)

    with SurveyServer(latency=0.15) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path)), \
            conf.set_temp("max_connections_per_host", 4):
        a = threading.Thread(target=call, args=(150.0,))
        a.start()
        time.sleep(0.1)
        conf.max_connections_per_host = 8  # another call's setting, read at call time
        b = threading.Thread(target=call, args=(160.0,))
        b.start()
        a.join()
        b.join()
        assert srv.max_in_flight == 4  # one limit (the first call's), not 4 + 8


# ----------------------------------------------------------------------- redirects
def test_redirects_are_followed(stub, tmp_path):
    with SurveyServer() as real:
        s = stub(lambda path, n: (302, {"Location": real.url + path}, b""))
        with conf.set_temp("legacysurvey_url", s.url), conf.set_temp("cache_dir", str(tmp_path)):
            cut = fetcher.get_cutouts(POS, surveys="galex", progress=False)
    assert cut.status["galex"] == "ok" and "galex" in cut.surveys


# ----------------------------------------------------------------------- cache
def test_reader_does_not_delete_a_fresh_entry(tmp_path, monkeypatch):
    from astropy.wcs import WCS

    from astro_mantis.surveys.core import SurveyImage

    key = "ab" + "0" * 38
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    img = SurveyImage("galex", np.ones((2, 8, 8), np.float32), w.to_header(), "adu",
                      ["FUV", "NUV"], check_nan=False, zeropoints=[20.0, 20.0])
    cache = CutoutCache(tmp_path)
    cache.store("galex", key, img, "src")
    path = cache.path("galex", key)
    path.write_bytes(path.read_bytes()[:-7])  # damaged

    real = CutoutCache.decode

    def decode_then_replaced(raw, source=None):
        try:
            return real(raw, source)
        finally:  # meanwhile another process stores a good entry
            CutoutCache(tmp_path).store("galex", key, img, "src")

    monkeypatch.setattr(CutoutCache, "decode", staticmethod(decode_then_replaced))
    assert cache.load("galex", key, "src") is None
    assert path.exists()  # the good entry stays
    monkeypatch.undo()
    assert cache.load("galex", key, "src") is not None


def test_a_changed_url_mid_call_caches_under_the_service_asked(tmp_path):
    with SurveyServer(latency=0.6) as a, SurveyServer(galex_holes=[(150.0, 2.0, 1.0)]) as b, \
            conf.set_temp("cache_dir", str(tmp_path)), \
            conf.set_temp("legacysurvey_url", a.legacysurvey_url):
        out = {}
        t = threading.Thread(target=lambda: out.setdefault(
            "a", fetcher.get_cutouts(POS, surveys="galex", progress=False)))
        t.start()
        time.sleep(0.2)
        conf.legacysurvey_url = b.legacysurvey_url  # the request to A is under way
        t.join()
        assert out["a"].status["galex"] == "ok"
        cut = fetcher.get_cutouts(POS, surveys="galex", progress=False)
        assert b.counts["fits-cutout"] == 1  # not served A's cutout from the cache
    assert cut.status["galex"] == "out of footprint"


# ----------------------------------------------------------------------- cutout files
def test_read_verifies_checksums(tmp_path):
    with SurveyServer() as srv, srv.configure(conf), conf.set_temp("cache_dir", str(tmp_path)):
        cut = fetcher.get_cutouts(POS, surveys="galex", progress=False)
    path = tmp_path / "c.fits"
    cut.write(path)
    assert MultiSurveyCutout.read(path).surveys["galex"].data.shape == \
        cut.surveys["galex"].data.shape
    raw = bytearray(path.read_bytes())
    raw[-2880 * 2 + 100] ^= 0x40  # one bit of the last extension's pixels
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="c.fits.*damaged.*verification failed"):
        MultiSurveyCutout.read(path)


# ----------------------------------------------------------------------- read errors
def test_a_body_rejected_when_read_fails_at_once_uncached(stub, tmp_path):
    """As docs/cutouts.rst ("Validation") says: not retried, failed, nothing cached."""
    import io

    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(np.ones((2, 8, 8), np.float32)).writeto(buf)
    s = stub(lambda path, n: (200, {}, buf.getvalue()))
    with conf.set_temp("legacysurvey_url", s.url), conf.set_temp("cache_dir", str(tmp_path)):
        cut = fetcher.get_cutouts(POS, surveys="galex", progress=False)
    assert cut.status["galex"].startswith("failed") and len(s.hits) == 1
    assert not list(tmp_path.rglob("*.amc"))
