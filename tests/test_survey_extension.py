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

from astro_mantis import Mantis, MantisFlag, MultiSurveyCutout
from astro_mantis.flags import SURVEY_FLAG_BITS, survey_flags, survey_missing_flag
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

    def in_footprint(self, ra, dec):
        """The toy covers the northern sky only."""
        return dec >= 0

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


def test_the_new_survey_gets_its_own_missing_flag(toy, server, tmp_path):
    # ToySurvey declares no bit: it is given the lowest free one above MantisFlag's members
    flag = toy.flag
    assert flag == survey_missing_flag("toy") == MantisFlag(1 << SURVEY_FLAG_BITS[0])
    assert not flag & sum(int(m) for m in MantisFlag)
    assert survey_flags()["TOY_MISSING"] == flag
    assert list(survey_flags())[:3] == ["GALEX_MISSING", "PANSTARRS_MISSING", "UNWISE_MISSING"]
    # the fetch engine flags a position the toy does not cover with it
    south = SkyCoord(150.2, -2.3, unit="deg")
    cut = Mantis.get_cutouts(south, surveys=("galex", "toy"), progress=False)
    assert tuple(cut.missing) == ("toy",) and "toy" not in cut.surveys
    assert cut.flags == flag | MantisFlag.OUT_OF_FOOTPRINT
    assert int(cut.flags) & int(flag)
    # what the flag says survives a write and read back
    cut.write(tmp_path / "south.fits")
    assert MultiSurveyCutout.read(tmp_path / "south.fits").flags == cut.flags


def test_a_declared_missing_bit_is_kept_and_checked():
    class Declared(ToySurvey):
        name = "declared"
        missing_flag = 1 << 20

    class Clash(ToySurvey):
        name = "clash"
        missing_flag = MantisFlag.NAN_PIXELS

    class Taken(ToySurvey):
        name = "taken"
        missing_flag = 1 << 20

    declared = register_survey(Declared("http://127.0.0.1:9"))
    try:
        assert declared.flag == MantisFlag(1 << 20) == survey_missing_flag("DECLARED")
        with pytest.raises(ValueError, match="NAN_PIXELS"):
            register_survey(Clash("http://127.0.0.1:9"))
        with pytest.raises(ValueError, match="held by survey 'declared'"):
            register_survey(Taken("http://127.0.0.1:9"))
        assert "clash" not in SURVEYS and "taken" not in SURVEYS
        assert survey_missing_flag("clash") == MantisFlag.NONE
    finally:
        unregister_survey("declared")
    # leaving the registry frees the bit
    assert survey_missing_flag("declared") == MantisFlag.NONE
    assert "DECLARED_MISSING" not in survey_flags()


def test_registration_is_checked():
    with pytest.raises(TypeError, match="Survey instance"):
        register_survey("toy")
    with pytest.raises(ValueError, match="registered already"):
        register_survey(get_survey("galex"))
    with pytest.raises(ValueError, match="built-in"):
        unregister_survey("galex")
    with pytest.raises(ValueError, match="not registered"):
        unregister_survey("nope")


def test_a_mixed_case_name_is_refused():
    """The registry looks names up lower-cased, the cutouts key on ``survey.name``: a
    mixed-case name would register, fetch, and then be found under no spelling."""
    class Mixed(ToySurvey):
        name = "MyToy"

    with pytest.raises(ValueError, match="lower case: name the survey 'mytoy', not 'MyToy'"):
        register_survey(Mixed("http://127.0.0.1:9"))
    assert "mytoy" not in SURVEYS and "MyToy" not in SURVEYS
    assert survey_missing_flag("mytoy") == MantisFlag.NONE
