"""What ``conf.timeout`` limits: connecting and each wait for data, not a whole answer."""
import http.server
import threading
import time
import urllib.request

import pytest
from astropy.coordinates import SkyCoord

from astro_mantis import Mantis, conf
from astro_mantis.fetch import FetchStatus

COORD = SkyCoord(150.14, 2.42, unit="deg")


class _Slow(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the server's ``body`` in ``pieces``, ``gap`` seconds apart."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        body, pieces, gap = self.server.body, self.server.pieces, self.server.gap
        self.send_response(200)
        self.send_header("Content-Type", "application/fits")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        step = -(-len(body) // pieces)
        try:
            for k in range(0, len(body), step):
                self.wfile.write(body[k:k + step])
                self.wfile.flush()
                if k + step < len(body):
                    time.sleep(gap)
        except OSError:  # the client gave up
            self.close_connection = True


@pytest.fixture
def slow_viewer(server):
    """A viewer that sends the loopback server's GALEX cutout of COORD slowly."""
    query = f"ra={COORD.ra.deg:.7f}&dec={COORD.dec.deg:.7f}&size=32&pixscale=1.5&layer=galex"
    with urllib.request.urlopen(f"{server.legacysurvey_url}/fits-cutout?{query}") as resp:
        body = resp.read()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    httpd.daemon_threads = True
    httpd.body, httpd.pieces, httpd.gap = body, 6, 0.25
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        with conf.set_temp("legacysurvey_url", f"http://127.0.0.1:{httpd.server_address[1]}"
                                               "/viewer"):
            yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_timeout_limits_each_wait_not_the_whole_answer(slow_viewer):
    # every piece comes within the limit: the answer is taken, though it took longer
    with conf.set_temp("timeout", 0.8), conf.set_temp("retries", 0):
        t0 = time.perf_counter()
        cut = Mantis.get_cutouts(COORD, surveys=("galex",), cache=False, progress=False)
        took = time.perf_counter() - t0
    assert cut.status["galex"].kind is FetchStatus.FETCHED
    assert took > 0.8
    # one wait longer than the limit fails the attempt
    slow_viewer.gap = 1.6
    with conf.set_temp("timeout", 0.8), conf.set_temp("retries", 0):
        cut = Mantis.get_cutouts(COORD, surveys=("galex",), cache=False, progress=False)
    assert cut.status["galex"].kind is FetchStatus.FAILED
    assert "timed out" in cut.status["galex"].lower()
