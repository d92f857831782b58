# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Adding a survey means adding one module: a toy fourth survey, fetched over loopback."""
import http.server
import threading
import urllib.parse

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from astro_mantis import Mantis, MultiSurveyCutout
from astro_mantis.surveys import SURVEYS, get_survey, register_survey, unregister_survey
from astro_mantis.surveys.core import Request, Survey, SurveyImage, read_primary_image


class ToySurvey(Survey):
    """One band, 16 pixels of 1″, served at ``{base}/toy?ra=&dec=`` as a FITS image."""

    name = "toy"
    layer = "toy-dr1"
    bands = ("T",)
    pixscale = 1.0 * u.arcsec
    size = 16
    unit = u.ct / u.s

    def __init__(self, url):
        self.url = url

    @property
    def base_url(self):
        return self.url

    def zeropoints(self, header=None):
        return [22.5]

    def image_requests(self, ra, dec, listing=None, size=None, pixscale=None):
        return [Request("GET", f"{self.base_url}/toy", {"ra": f"{ra:.7f}", "dec": f"{dec:.7f}"})]

    def read(self, contents, requests, ra, dec, size=None, pixscale=None):
        header, data = read_primary_image(contents[0], "toy")
        return SurveyImage(self.name, data[None], header, self.unit, self.bands,
                           zeropoints=self.zeropoints())


class _ToyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        ra, dec = float(q["ra"][0]), float(q["dec"][0])
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [ra, dec]
        w.wcs.crpix = [8.5, 8.5]
        w.wcs.cdelt = [-1 / 3600, 1 / 3600]
        data = np.full((16, 16), ra + dec, dtype=np.float32)
        body = fits.PrimaryHDU(data, header=w.to_header())
        import io

        buf = io.BytesIO()
        body.writeto(buf)
        payload = buf.getvalue()
        self.send_response(200)
        self.send_header("Content-Type", "application/fits")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def toy():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ToyHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    survey = register_survey(ToySurvey(f"http://127.0.0.1:{httpd.server_address[1]}"))
    try:
        yield survey
    finally:
        unregister_survey("toy")
        httpd.shutdown()
        httpd.server_close()


def test_a_fourth_survey_module_is_fetched_cached_and_written(toy, server, tmp_path):
    assert list(SURVEYS)[-1] == "toy" and get_survey("TOY") is toy
    coord = SkyCoord(150.2, 2.3, unit="deg")
    surveys = ("galex", "panstarrs", "unwise", "toy")
    cut = Mantis.get_cutouts(coord, surveys=surveys, progress=False)
    assert cut.status["toy"] == "ok" and set(cut.surveys) == set(surveys)
    image = cut.surveys["toy"]
    assert image.data.shape == (1, 16, 16) and image.bands == ("T",)
    assert np.allclose(image.data, 152.5)
    again = Mantis.get_cutouts(coord, surveys=surveys, progress=False)
    assert again.status["toy"] == "cached"
    path = tmp_path / "c.fits"
    cut.write(path)
    back = MultiSurveyCutout.read(path)
    assert np.array_equal(back.surveys["toy"].data, image.data)


def test_registration_is_checked():
    with pytest.raises(TypeError, match="Survey instance"):
        register_survey("toy")
    with pytest.raises(ValueError, match="registered already"):
        register_survey(get_survey("galex"))
    with pytest.raises(ValueError, match="built-in"):
        unregister_survey("galex")
    with pytest.raises(ValueError, match="not registered"):
        unregister_survey("nope")
