"""Survey declarations and their response readers, on hand-made FITS bodies."""
import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS

from astro_mantis import conf
from astro_mantis.exceptions import InvalidResponseError
from astro_mantis.flags import MantisFlag
from astro_mantis.surveys import DEFAULT_SURVEYS, SURVEYS, get_survey, read_fits_bytes
from astro_mantis.surveys.panstarrs import decompress_asinh
from astro_mantis.surveys.unwise import nanomaggy_vega

GALEX, PS1, UNWISE = (get_survey(n) for n in DEFAULT_SURVEYS)


def tan_header(ra, dec, size, pixscale, crval=None):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = crval or (ra, dec)
    w.wcs.cd = np.array([[-pixscale / 3600, 0], [0, pixscale / 3600]])
    w.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    if crval is not None:  # put (ra, dec) at the cutout centre, CRPIX wherever it lands
        x, y = w.world_to_pixel_values(ra, dec)
        w.wcs.crpix = [w.wcs.crpix[0] - (x - (size - 1) / 2), w.wcs.crpix[1] - (y - (size - 1) / 2)]
    return w.to_header()


def fits_bytes(data, header=None):
    buf = io.BytesIO()
    fits.PrimaryHDU(data, header=header).writeto(buf)
    return buf.getvalue()


def viewer_body(bands, data=None, size=32, pixscale=1.5, ra=150.0, dec=2.0, **extra):
    hdr = tan_header(ra, dec, size, pixscale)
    hdr["BANDS"] = "".join(str(b) for b in bands)
    for i, b in enumerate(bands):
        hdr[f"BAND{i}"] = b
    for k, v in extra.items():
        hdr[k] = v
    if data is None:
        data = np.stack([np.full((size, size), i + 1.0, np.float32) for i in range(len(bands))])
    return fits_bytes(data, hdr)


def test_registry_order_and_lookup():
    assert list(SURVEYS)[:3] == ["galex", "panstarrs", "unwise"]
    assert get_survey("GALEX") is GALEX
    with pytest.raises(ValueError, match="known surveys: galex, panstarrs, unwise"):
        get_survey("sdss")


def test_survey_facts():
    assert GALEX.bands == ("NUV", "FUV") and GALEX.size == 32
    assert GALEX.pixscale == 1.5 * u.arcsec and GALEX.unit == u.ct / u.s
    assert GALEX.zeropoints() == [20.08, 18.82]
    assert PS1.bands == tuple("grizy") and PS1.size == 170 and PS1.pixscale == 0.25 * u.arcsec
    assert UNWISE.bands == ("W1", "W2") and UNWISE.pixscale == 2.75 * u.arcsec
    assert UNWISE.unit == nanomaggy_vega
    assert UNWISE.zeropoints() == pytest.approx([22.5 + 2.699, 22.5 + 3.339])
    for s in SURVEYS.values():
        assert set(s.psf_fwhm) == set(s.bands)
    assert GALEX.flag == MantisFlag.GALEX_MISSING and UNWISE.flag == MantisFlag.UNWISE_MISSING


def test_surveys_never_import_torch():
    code = "import sys, astro_mantis.surveys; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    for path in Path(sys.modules["astro_mantis.surveys"].__file__).parent.glob("*.py"):
        assert "import torch" not in path.read_text(), path


def test_viewer_requests_follow_the_protocol():
    with conf.set_temp("legacysurvey_url", "http://viewer.example/viewer/"):
        (g,) = GALEX.image_requests(150.1, 2.2)
        (w,) = UNWISE.image_requests(150.1, 2.2)
    assert g.method == "GET" and g.url == "http://viewer.example/viewer/fits-cutout"
    assert g.params == {"ra": "150.1000000", "dec": "2.2000000", "size": 32,
                        "pixscale": "1.5", "layer": "galex"}
    assert w.params["layer"] == "unwise-neo7" and w.params["pixscale"] == "2.75"
    assert g.full_url.startswith("http://viewer.example/viewer/fits-cutout?ra=150.1")
    assert g.host == "http://viewer.example"


@pytest.mark.parametrize("bands", [("n", "f"), ("f", "n"), ("NUV", "FUV")])
def test_viewer_band_order_from_header(bands):
    img = GALEX.read([viewer_body(bands)], None, 150.0, 2.0)
    # plane k of the body holds the value k + 1
    expect = {b: i + 1.0 for i, b in enumerate(bands)}
    names = {"n": "NUV", "f": "FUV", "NUV": "NUV", "FUV": "FUV"}
    got = {names[b]: v for b, v in expect.items()}
    assert img.bands == ("NUV", "FUV")
    assert img["NUV"][0, 0] == got["NUV"] and img["FUV"][0, 0] == got["FUV"]
    assert img.unit == u.ct / u.s
    assert list(img.zeropoints) == [20.08, 18.82]


def test_unwise_integer_band_keywords_and_wcs():
    body = viewer_body((2, 1), size=32, pixscale=2.75, ra=10.0, dec=-5.0)
    img = UNWISE.read([body], None, 10.0, -5.0)
    assert img["W1"][0, 0] == 2.0 and img["W2"][0, 0] == 1.0
    x, y = img.wcs.world_to_pixel_values(10.0, -5.0)
    assert (x, y) == pytest.approx((15.5, 15.5), abs=1e-6)


def test_viewer_without_band_keywords_uses_native_order():
    hdr = tan_header(150, 2, 32, 1.5)
    data = np.stack([np.full((32, 32), 5.0), np.full((32, 32), 7.0)]).astype(np.float32)
    img = GALEX.read([fits_bytes(data, hdr)], None, 150.0, 2.0)
    assert img["NUV"][0, 0] == 5.0 and img["FUV"][0, 0] == 7.0


def test_viewer_coverage_holes_mean_not_covered():
    zeros = np.zeros((2, 32, 32), np.float32)
    assert GALEX.read([viewer_body(("n", "f"), data=zeros)], None, 1.0, 1.0) is None
    hdr = fits.Header()
    hdr["OVERLAP"] = False
    assert GALEX.read([fits_bytes(None, hdr)], None, 1.0, 1.0) is None


@pytest.mark.parametrize("body, match", [
    (b"", "empty body"),
    (b"<!DOCTYPE html><html><body>Service unavailable</body></html>", "HTML page"),
    (b"no such layer", "not FITS"),
])
def test_invalid_bodies_are_named(body, match):
    with pytest.raises(InvalidResponseError, match=match):
        GALEX.read([body], None, 1.0, 1.0)


def test_truncated_and_wrong_shape_bodies():
    body = viewer_body(("n", "f"))
    with pytest.raises(InvalidResponseError, match="truncated"):
        read_fits_bytes(body[: len(body) // 2])
    small = viewer_body(("n", "f"), data=np.ones((2, 20, 20), np.float32), size=20)
    with pytest.raises(InvalidResponseError, match="shape"):
        GALEX.read([small], None, 1.0, 1.0)
    one_band = viewer_body(("n",), data=np.ones((1, 32, 32), np.float32))
    with pytest.raises(InvalidResponseError, match="lacks band"):
        GALEX.read([one_band], None, 1.0, 1.0)


def test_ps1_listing_request_batches_positions():
    with conf.set_temp("panstarrs_url", "http://ps1.example/cgi-bin"):
        req = PS1.listing_request([(10.0, 20.0), (11.5, -3.25)])
    assert req.method == "POST" and req.url == "http://ps1.example/cgi-bin/ps1filenames.py"
    assert req.data == {"filters": "grizy", "type": "stack"}
    name, text = req.files["file"]
    assert text.splitlines() == ["10.0000000 20.0000000", "11.5000000 -3.2500000"]


LISTING = """projcell subcell ra dec filter mjd type filename shortname badflag
1001 22 11.500000 -3.250000 g 0 stack /rings.v3.skycell/1001/022/a.stk.g.unconv.fits a.g 0
1001 22 11.500000 -3.250000 r 0 stack /rings.v3.skycell/1001/022/a.stk.r.unconv.fits a.r 0
2001 33 10.000000 20.000000 g 0 stack /rings.v3.skycell/2001/033/b.stk.g.unconv.fits b.g 0
"""


def test_ps1_listing_rows_map_back_to_positions():
    positions = [(10.0, 20.0), (11.5, -3.25), (40.0, 40.0)]
    entries = PS1.parse_listing(LISTING.encode(), positions)
    assert entries[0] == {"g": "/rings.v3.skycell/2001/033/b.stk.g.unconv.fits"}
    assert set(entries[1]) == {"g", "r"}
    assert entries[2] is None  # no row: outside the footprint
    header_only = LISTING.splitlines()[0] + "\n"
    assert PS1.parse_listing(header_only.encode(), positions) == [None, None, None]
    with pytest.raises(InvalidResponseError, match="not a ps1filenames table"):
        PS1.parse_listing(b"<html>oops</html>", positions)


def test_ps1_image_requests_one_per_band():
    listing = {b: f"/x/f.stk.{b}.unconv.fits" for b in "grizy"}
    with conf.set_temp("panstarrs_url", "http://ps1.example/cgi-bin"):
        reqs = PS1.image_requests(1.0, 2.0, listing=listing)
    assert [r.band for r in reqs] == list("grizy")
    assert reqs[0].url == "http://ps1.example/cgi-bin/fitscut.cgi"
    assert reqs[0].params == {"red": "/x/f.stk.g.unconv.fits", "ra": "1.0000000",
                              "dec": "2.0000000", "size": 170, "format": "fits"}
    assert PS1.in_footprint(0, -29.9) and not PS1.in_footprint(0, -30.1)


def ps1_band_body(value, exptime=300.0, asinh=None, size=170, nan_stripe=False):
    hdr = tan_header(200.0, 40.0, size, 0.25, crval=(200.3, 40.2))
    hdr["EXPTIME"] = exptime
    data = np.full((size, size), value, np.float32)
    if nan_stripe:
        data[:, 80:90] = np.nan
    if asinh is not None:
        bsoften, boffset = asinh
        a = 2.5 / math.log(10)
        data = (a * np.arcsinh((data - boffset) / (2 * bsoften))).astype(np.float32)
        hdr["BSOFTEN"], hdr["BOFFSET"] = bsoften, boffset
    return fits_bytes(data, hdr)


def test_ps1_read_zero_points_asinh_and_far_crpix():
    listing = {b: f"/x/f.stk.{b}.unconv.fits" for b in "grizy"}
    reqs = PS1.image_requests(200.0, 40.0, listing=listing)
    bodies = [ps1_band_body(10.0 * (k + 1), exptime=100.0 * (k + 1),
                            asinh=(2.0, 0.5) if k == 1 else None) for k in range(5)]
    img = PS1.read(bodies, reqs, 200.0, 40.0)
    assert img.shape == (5, 170, 170) and img.unit == u.ct
    assert np.allclose(img["r"], 20.0, rtol=1e-4)  # asinh-compressed band decompressed
    assert img.zeropoints == pytest.approx([25 + 2.5 * math.log10(100.0 * (k + 1))
                                            for k in range(5)])
    assert abs(img.wcs.wcs.crpix[0]) > 170  # CRPIX far outside the cutout ...
    x, y = img.wcs.world_to_pixel_values(200.0, 40.0)
    assert (x, y) == pytest.approx((84.5, 84.5), abs=1e-3)  # ... and the WCS still right
    assert img.flags == MantisFlag.NONE


def test_ps1_nan_pixels_are_kept_and_masked():
    listing = {b: f"/x/f.stk.{b}.unconv.fits" for b in "grizy"}
    reqs = PS1.image_requests(200.0, 40.0, listing=listing)
    img = PS1.read([ps1_band_body(1.0, nan_stripe=True)] * 5, reqs, 200.0, 40.0)
    assert img.mask[:, :, 80:90].all() and not img.mask[:, :, :80].any()
    assert MantisFlag.NAN_PIXELS in img.flags


def test_decompress_asinh_inverts_compression():
    lin = np.array([-3.0, 0.0, 5.0, 1e4])
    a = 2.5 / math.log(10)
    comp = a * np.arcsinh((lin - 1.0) / (2 * 3.0))
    assert decompress_asinh(comp, 3.0, 1.0) == pytest.approx(lin)


def test_cache_key_depends_on_every_ingredient():
    k = GALEX.cache_key(1.0, 2.0)
    assert k == GALEX.cache_key(1.0, 2.0)
    assert len({k, GALEX.cache_key(1.0, 2.0000002), GALEX.cache_key(1.0, 2.0, size=64),
                GALEX.cache_key(1.0, 2.0, pixscale=2 * u.arcsec), UNWISE.cache_key(1.0, 2.0)}) == 5


def test_zero_points_match_the_mock_services():
    """The readers' AB zero points are the ones the mock services write pixels with."""
    from astro_mantis.simulate.service_format import ab_zeropoint

    assert ab_zeropoint("galex", "n") == 20.08 and ab_zeropoint("galex", "f") == 18.82
    assert get_survey("galex").zeropoints() == [20.08, 18.82]
    assert ab_zeropoint("unwise", 1) == pytest.approx(22.5 + 2.699)
    assert ab_zeropoint("unwise", 2) == pytest.approx(22.5 + 3.339)
    ps1 = get_survey("panstarrs")
    header = fits.Header({"EXPTIME": 1040.0})
    expected = 25.0 + 2.5 * math.log10(1040.0)
    assert ab_zeropoint("panstarrs", "g", exptime=1040.0) == pytest.approx(expected)
    assert ps1.zeropoints(header) == [pytest.approx(expected)] * len(ps1.bands)
    assert all(math.isnan(v) for v in ps1.zeropoints()) and len(ps1.zeropoints()) == 5
    assert all(math.isnan(v) for v in ps1.zeropoints(fits.Header()))


# ------------------------------------------------- headers as the real services write them
def ps1_legacy_header(size, crpix=(-3000.5, 2500.5)):
    """A Pan-STARRS stack / fitscut header as the real service writes it: a positive
    CDELT1 and the RA sign in the legacy AIPS matrix card ``PC001001 = -1``."""
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
    h["CRPIX1"], h["CRPIX2"] = crpix
    h["CDELT1"] = h["CDELT2"] = 6.94444461259988E-05
    h["PC001001"], h["PC001002"], h["PC002001"], h["PC002002"] = -1.0, 0.0, 0.0, 1.0
    h["RADESYS"] = "FK5"  # on real cutouts since 2019-03-13
    h["EXPTIME"] = 1000.0
    return h


def _full_wcs(header):
    import warnings

    from astropy.wcs import FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # the legacy form is deprecated
        return WCS(header)


def test_wcs_header_keeps_the_legacy_pc_matrix_of_ps1_headers():
    from astro_mantis.surveys.core import modern_wcs_keyword, wcs_header

    header = ps1_legacy_header(170)
    kept = wcs_header(header)
    assert [kept[k] for k in ("PC1_1", "PC1_2", "PC2_1", "PC2_2")] == [-1.0, 0.0, 0.0, 1.0]
    assert "PC001001" not in kept and "EXPTIME" not in kept
    assert modern_wcs_keyword("CD002001") == "CD2_1" and modern_wcs_keyword("PC1_2") == "PC1_2"
    legacy_cd = fits.Header([("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN"),
                             ("CD001001", -1e-4), ("CD002002", 1e-4), ("CD1_1", -2e-4)])
    # both spellings of one element: the modern card wins
    assert wcs_header(legacy_cd)["CD1_1"] == -2e-4 and wcs_header(legacy_cd)["CD2_2"] == 1e-4
    full = _full_wcs(header)
    n = 169
    xs, ys = np.array([0, n, 0, n]), np.array([0, 0, n, n])
    listing = {b: f"/x/f.stk.{b}.unconv.fits" for b in "grizy"}
    ra, dec = (float(v) for v in full.all_pix2world(84.5, 84.5, 0))
    img = PS1.read([fits_bytes(np.zeros((170, 170), np.float32), header)] * 5,
                   PS1.image_requests(ra, dec, listing=listing), ra, dec)
    got = np.array(img.wcs.all_pix2world(xs, ys, 0))
    np.testing.assert_allclose(got, np.array(full.all_pix2world(xs, ys, 0)), rtol=0, atol=1e-10)
    assert got[0][0] > got[0][1]  # RA grows to the east: towards -x


def test_ps1_cut_reads_the_legacy_pc_matrix_and_ignores_band_epochs():
    """Coalesced cutouts of a real-layout skycell (PC001001 = -1, CDELT1 > 0), whose band
    stacks each have their own MJD-OBS / DATE-OBS: the same images as `read` gives."""
    big = 400
    full = _full_wcs(ps1_legacy_header(big))
    ra0, dec0 = (float(v) for v in full.all_pix2world(199.5, 199.5, 0))
    listing = {b: f"/x/f.stk.{b}.unconv.fits" for b in "grizy"}
    bodies = []
    for k in range(5):
        h = ps1_legacy_header(big)
        h["MJD-OBS"] = 55500.0 + 37.25 * k
        h["DATE-OBS"] = f"2011-0{k + 1}-01T00:00:00"
        data = np.arange(big * big, dtype=np.float32).reshape(big, big) + k
        bodies.append(fits_bytes(data, h))
    reqs = PS1.image_requests(ra0, dec0, listing=listing, size=big)
    ra1, dec1 = (float(v) for v in full.all_pix2world(150.3, 240.2, 0))
    cuts = PS1.cut(bodies, reqs, [(ra0, dec0), (ra1, dec1)])
    assert all(c is not None for c in cuts)
    for (ra, dec), c in zip([(ra0, dec0), (ra1, dec1)], cuts):
        x, y = c.wcs.world_to_pixel_values(ra, dec)
        # fitscut's rule: the position in [size // 2 - 0.5, size // 2 + 0.5)
        assert 84.5 - 1e-6 <= x <= 85.5 + 1e-6 and 84.5 - 1e-6 <= y <= 85.5 + 1e-6
        assert c.wcs.wcs.get_pc()[0, 0] == -1.0
        assert c.wcs.wcs.radesys == "FK5" and c.header["RADESYS"] == "FK5"
    # a band on another grid is still refused
    moved = ps1_legacy_header(big, crpix=(-3001.5, 2500.5))
    bodies[3] = fits_bytes(np.zeros((big, big), np.float32), moved)
    with pytest.raises(InvalidResponseError, match="not on the grid of the g band"):
        PS1.cut(bodies, reqs, [(ra0, dec0)])
    flipped = ps1_legacy_header(big)
    flipped["PC001001"] = 1.0  # the sign of the RA axis is part of the grid
    bodies[3] = fits_bytes(np.zeros((big, big), np.float32), flipped)
    with pytest.raises(InvalidResponseError, match="not on the grid of the g band"):
        PS1.cut(bodies, reqs, [(ra0, dec0)])


def test_read_primary_image_blanks_integer_pixels_as_fits_open_does():
    from astro_mantis.surveys.core import read_primary_image

    raw = np.array([[1, -32768], [3, 4]], dtype=">i2")
    header = fits.Header([("SIMPLE", True), ("BITPIX", 16), ("NAXIS", 2), ("NAXIS1", 2),
                          ("NAXIS2", 2), ("BSCALE", 0.5), ("BZERO", 10.0), ("BLANK", -32768)])
    body = header.tostring().encode() + raw.tobytes()
    body += b"\0" * (-len(body) % 2880)
    _, mine = read_primary_image(body)
    with fits.open(io.BytesIO(body)) as hdul:
        theirs = hdul[0].data
    np.testing.assert_array_equal(mine, theirs)  # NaN where BLANK, in the same places
    assert np.isnan(mine[0, 1]) and mine[0, 0] == 10.5
    unscaled = fits_bytes(np.array([[7, 0], [7, 2]], np.int32),
                          fits.Header([("BLANK", 7)]))
    _, data = read_primary_image(unscaled)
    assert np.isnan(data[:, 0]).all() and list(data[:, 1]) == [0.0, 2.0]


def test_get_surveys_names_each_survey_once():
    from astro_mantis.surveys import get_surveys

    assert [s.name for s in get_surveys("galex, GALEX")] == ["galex"]
    assert [s.name for s in get_surveys(["unwise", GALEX, "Unwise", "galex"])] == \
        ["unwise", "galex"]


# ------------------------------------------------------------- fitscut's cutout window
def test_fitscut_origin_is_fitscuts_rule():
    """``floor(x - size // 2 + 0.5)`` (fitscut, extract.c): the position lands in
    [size // 2 - 0.5, size // 2 + 0.5) of the cutout, for even and odd sizes, and the
    loopback's own statement of the rule gives the same corner."""
    from astro_mantis.simulate.service_format import fitscut_corner
    from astro_mantis.surveys.panstarrs import fitscut_origin

    rng = np.random.default_rng(7)
    xs = np.concatenate([rng.uniform(-300.0, 6300.0, 500), np.arange(-3.0, 3.0, 0.125)])
    for size in (170, 171, 240, 400, 2, 1):
        for x in xs:
            x0 = fitscut_origin(x, size)
            assert isinstance(x0, int) and x0 == fitscut_corner(x, size)
            assert size // 2 - 0.5 <= x - x0 < size // 2 + 0.5, (x, size, x0)
        assert list(fitscut_corner(xs, size)) == [fitscut_origin(x, size) for x in xs]
    # where the fraction of x is below 0.5, an even size starts one pixel below
    # Cutout2D's ceil(x - size / 2); ties start at the higher pixel
    assert fitscut_origin(100.3, 170) == 15 == math.ceil(100.3 - 85) - 1
    assert fitscut_origin(100.5, 170) == 16 == fitscut_origin(100.7, 170)
    assert fitscut_origin(100.3, 171) == 15 and fitscut_origin(100.5, 171) == 16


def test_ps1_cut_takes_fitscuts_window_where_the_fraction_is_below_half():
    """The coalesced block of a position with frac(x), frac(y) < 0.5 is the window the
    position's own fitscut request gives (`fitscut_corner`), not the one beside it."""
    from astro_mantis.simulate.service_format import fitscut_corner

    big = 400
    header = ps1_legacy_header(big)
    full = _full_wcs(header)
    data = np.arange(big * big, dtype=np.float32).reshape(big, big)
    listing = {b: f"/x/f.stk.{b}.unconv.fits" for b in "grizy"}
    ra0, dec0 = (float(v) for v in full.all_pix2world(199.5, 199.5, 0))
    reqs = PS1.image_requests(ra0, dec0, listing=listing, size=big)
    pixels = [(150.2, 240.3), (210.45, 190.1), (230.7, 170.8)]
    positions = [tuple(float(v) for v in full.all_pix2world(x, y, 0)) for x, y in pixels]
    cuts = PS1.cut([fits_bytes(data, header)] * 5, reqs, positions)
    for (x, y), c in zip(pixels, cuts):
        x0, y0 = fitscut_corner(x, 170), fitscut_corner(y, 170)
        np.testing.assert_array_equal(c["g"], data[y0:y0 + 170, x0:x0 + 170])
        assert (c.header["CRPIX1"], c.header["CRPIX2"]) == (header["CRPIX1"] - x0,
                                                            header["CRPIX2"] - y0)


def test_exptime_zero_has_no_zero_point():
    """EXPTIME <= 0 (or NaN): a NaN zero point, scalar or array, no math domain error."""
    assert math.isnan(PS1.exptime_zeropoint(0.0)) and math.isnan(PS1.exptime_zeropoint(-5))
    assert math.isnan(PS1.exptime_zeropoint(float("nan")))
    assert PS1.exptime_zeropoint(100.0) == pytest.approx(30.0)
    with np.errstate(all="raise"):
        got = PS1.exptime_zeropoint([100.0, 0.0, -1.0, np.nan])
    assert got[0] == pytest.approx(30.0) and np.isnan(got[1:]).all()
    zps = PS1.zeropoints(fits.Header([("EXPTIME", 0.0)]))
    assert len(zps) == 5 and all(math.isnan(z) for z in zps)
