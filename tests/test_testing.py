# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of astro_mantis.testing: loopback survey servers and the synthetic sky.

Everything goes through real sockets on 127.0.0.1 (no mocking).
"""

import io
import math
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from astropy.config import ConfigItem, ConfigNamespace
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from astro_mantis.testing import (
    SkycellGrid,
    SkycellSky,
    SurveyServer,
    SyntheticSky,
    cluster_catalog,
    ps1_skycell,
    ps1_skycell_center,
)
from astro_mantis.testing.fixtures import survey_server  # noqa: F401 (registers the fixture)
from astro_mantis.testing.server import PS1_LISTING_HEADER

RA, DEC = 210.80252, 54.34888
ASINH_A = 2.5 / math.log(10.0)


@pytest.fixture(scope="module")
def server():
    """One plain server shared by the read-only protocol tests."""
    with SurveyServer() as srv:
        yield srv


def listing(srv, ra=RA, dec=DEC, filters="grizy", **kw):
    params = {"ra": ra, "dec": dec, "filters": filters, "type": "stack"}
    return requests.get(f"{srv.panstarrs_url}/ps1filenames.py", params=params, timeout=10, **kw)


def fitscut(srv, filename, ra=RA, dec=DEC, size=170, **extra):
    params = {"red": filename, "ra": ra, "dec": dec, "size": size, "format": "fits"}
    params.update(extra)
    return requests.get(f"{srv.panstarrs_url}/fitscut.cgi", params=params, timeout=10)


def viewer(srv, layer="galex", ra=RA, dec=DEC, size=32, pixscale=None, **extra):
    if pixscale is None:
        pixscale = 1.5 if layer == "galex" else 2.75
    params = {"ra": ra, "dec": dec, "size": size, "pixscale": pixscale, "layer": layer}
    params.update(extra)
    return requests.get(f"{srv.legacysurvey_url}/fits-cutout", params=params, timeout=10)


def open_fits(content):
    return fits.open(io.BytesIO(content))


def ps1_file(srv, ra=RA, dec=DEC, band="r"):
    rows = listing(srv, ra, dec, filters=band).text.splitlines()[1:]
    assert len(rows) == 1
    return rows[0].split()[7]


# --------------------------------------------------------------------- PS1 listing
def test_listing_get_header_and_rows(server):
    r = listing(server)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    lines = r.text.splitlines()
    assert lines[0] == "projcell subcell ra dec filter mjd type filename shortname badflag"
    assert lines[0] == PS1_LISTING_HEADER
    rows = [line.split() for line in lines[1:]]
    assert [row[4] for row in rows] == list("grizy")
    projcell, subcell, _ra_c, _dec_c = ps1_skycell(RA, DEC)
    for row, band in zip(rows, "grizy"):
        assert len(row) == 10
        assert row[:4] == [str(projcell), str(subcell), "210.802520", "54.348880"]
        assert row[5:7] == ["0", "stack"]
        short = f"rings.v3.skycell.{projcell:04d}.{subcell:03d}.stk.{band}.unconv.fits"
        assert row[7] == f"/rings.v3.skycell/{projcell:04d}/{subcell:03d}/{short}"
        assert row[8] == short
        assert row[9] == "0"


def test_listing_filter_order_follows_request(server):
    rows = listing(server, filters="yzg").text.splitlines()[1:]
    assert [row.split()[4] for row in rows] == ["y", "z", "g"]


def test_listing_post_multipart_many_positions(server):
    server.reset()
    positions = [(RA, DEC), (10.0, -45.0), (150.1, 2.2), (359.99, 0.5)]
    text = "".join(f"{ra} {dec}\n" for ra, dec in positions)
    r = requests.post(f"{server.panstarrs_url}/ps1filenames.py",
                      data={"filters": "ri", "type": "stack"},
                      files={"file": ("coords.txt", text)}, timeout=10)
    assert r.status_code == 200
    rows = [line.split() for line in r.text.splitlines()[1:]]
    # (position, filter) rows in request order; the dec=-45 position is outside PS1
    expected = [(f"{ra:f}", f"{dec:f}", b) for ra, dec in positions if dec > -30 for b in "ri"]
    assert [(row[2], row[3], row[4]) for row in rows] == expected
    entry = server.log[-1]
    assert entry.method == "POST" and entry.endpoint == "ps1filenames"
    assert entry.npositions == 4
    assert entry.params == {"filters": "ri", "type": "stack"}


def test_listing_post_urlencoded_single(server):
    r = requests.post(f"{server.panstarrs_url}/ps1filenames.py",
                      data={"ra": RA, "dec": DEC, "filters": "g", "type": "stack"}, timeout=10)
    assert r.status_code == 200
    assert r.text.splitlines()[1].split()[2:5] == ["210.802520", "54.348880", "g"]


def test_listing_outside_footprint_header_only(server):
    r = listing(server, ra=10.0, dec=-40.0)
    assert r.status_code == 200
    assert r.text.strip() == PS1_LISTING_HEADER
    r = requests.post(f"{server.panstarrs_url}/ps1filenames.py", data={"filters": "grizy"},
                      files={"file": ("c.txt", "1 -50\n2 -60\n")}, timeout=10)
    assert r.text.strip() == PS1_LISTING_HEADER


def test_listing_footprint_limit_configurable():
    with SurveyServer(ps1_min_dec=-50.0) as srv:
        assert len(listing(srv, ra=10.0, dec=-40.0).text.splitlines()) == 6
        srv.ps1_min_dec = -30.0
        assert len(listing(srv, ra=10.0, dec=-40.0).text.splitlines()) == 1


def test_listing_bad_request(server):
    r = requests.get(f"{server.panstarrs_url}/ps1filenames.py", params={"ra": "x", "dec": 1},
                     timeout=10)
    assert r.status_code == 400


def test_skycell_tiling_round_trip():
    rng = np.random.default_rng(1)
    for ra, dec in zip(rng.uniform(0, 360, 200), rng.uniform(-89.9, 89.9, 200)):
        projcell, subcell, ra_c, dec_c = ps1_skycell(ra, dec)
        assert 1000 <= projcell <= 9999 and 0 <= subcell < 100
        assert ps1_skycell_center(projcell, subcell) == (ra_c, dec_c)
        assert ps1_skycell(ra_c, dec_c)[:2] == (projcell, subcell)
        assert abs(dec - dec_c) <= 0.2 + 1e-9


# --------------------------------------------------------------------- PS1 fitscut
def test_fitscut_wcs_puts_position_at_centre(server):
    _projcell, _subcell, ra_c, dec_c = ps1_skycell(RA, DEC)
    # positions near a skycell corner make CRPIX lie far outside the image
    for ra, dec in [(RA, DEC), (ra_c + 0.17 / math.cos(math.radians(dec_c)), dec_c - 0.18)]:
        r = fitscut(server, ps1_file(server, ra, dec, "i"), ra, dec)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/fits"
        assert int(r.headers["Content-Length"]) == len(r.content)
        with open_fits(r.content) as hdul:
            assert len(hdul) == 1
            hdu = hdul[0]
            assert hdu.data.shape == (170, 170)
            assert hdu.data.dtype == np.dtype(">f4")
            hdr = hdu.header
            assert isinstance(hdr["EXPTIME"], float) and hdr["EXPTIME"] > 0
            assert hdr["FILTER"].startswith("i")
            # the real stacks' layout: positive CDELT, the RA sign in legacy PC00i00j cards
            assert hdr["CDELT1"] == pytest.approx(0.25 / 3600)
            assert hdr["CDELT2"] == pytest.approx(0.25 / 3600)
            assert [hdr[k] for k in ("PC001001", "PC001002", "PC002001", "PC002002")] \
                == [-1.0, 0.0, 0.0, 1.0]
            assert not any(k in hdr for k in ("PC1_1", "CD1_1", "CD001001"))
            assert (hdr["CRVAL1"], hdr["CRVAL2"]) == pytest.approx(
                ps1_skycell(ra, dec)[2:], abs=1e-9)
            # fitscut reads the numbers sent in the cutout's frame, FK5 as real cutouts say
            assert hdr["RADESYS"] == "FK5"
            x, y = WCS(hdr).world_to_pixel_values(ra, dec)
            assert x == pytest.approx(84.5, abs=0.01)
            assert y == pytest.approx(84.5, abs=0.01)
    assert abs(hdr["CRPIX1"] - 85.5) > 170 and abs(hdr["CRPIX2"] - 85.5) > 170


def test_fitscut_output_size_and_defaults(server):
    fn = ps1_file(server)
    r = requests.get(f"{server.panstarrs_url}/fitscut.cgi",
                     params={"red": fn, "ra": RA, "dec": DEC, "output_size": 64,
                             "format": "fits", "unknown": "ignored"}, timeout=10)
    assert open_fits(r.content)[0].data.shape == (64, 64)
    r = requests.get(f"{server.panstarrs_url}/fitscut.cgi",
                     params={"red": fn, "ra": RA, "dec": DEC}, timeout=10)
    assert open_fits(r.content)[0].data.shape == (240, 240)


def test_fitscut_bad_requests(server):
    bad = "/rings.v3.skycell/0001/000/rings.v3.skycell.0001.000.stk.g.unconv.fits"
    assert fitscut(server, bad).status_code in (404, 500)
    assert fitscut(server, "nonsense.fits").status_code in (404, 500)
    r = requests.get(f"{server.panstarrs_url}/fitscut.cgi", params={"red": ps1_file(server)},
                     timeout=10)
    assert r.status_code >= 400


def test_fitscut_flux_matches_zero_point():
    # one bright source off-centre: flux in counts must follow ZP = 25 + 2.5 log10(EXPTIME)
    ra0, dec0 = RA + 3e-3, DEC - 2e-3
    cat = Table({"ra": [ra0], "dec": [dec0], "mag_r": [17.0], "r_half": [0.5],
                 "axis_ratio": [0.6], "pa": [30.0]})
    with SurveyServer(SyntheticSky(seed=3, catalog=cat)) as srv:
        hdu = open_fits(fitscut(srv, ps1_file(srv, band="r")).content)[0]
    data = hdu.data.astype(float)
    x, y = WCS(hdu.header).world_to_pixel(SkyCoord(ra0, dec0, unit="deg"))
    yy, xx = np.mgrid[: data.shape[0], : data.shape[1]]
    aperture = (xx - x) ** 2 + (yy - y) ** 2 < 30**2
    expected = hdu.header["EXPTIME"] * 10 ** (-0.4 * (17.0 - 25.0))
    assert data[aperture].sum() == pytest.approx(expected, rel=0.03)
    w = np.where(aperture, data, 0.0)
    assert (w * xx).sum() / w.sum() == pytest.approx(x, abs=0.1)
    assert (w * yy).sum() / w.sum() == pytest.approx(y, abs=0.1)


def test_fitscut_asinh_round_trips_to_linear():
    with SurveyServer() as lin_srv, SurveyServer(ps1_asinh=True) as asinh_srv:
        fn = ps1_file(lin_srv)
        linear = open_fits(fitscut(lin_srv, fn).content)[0]
        compressed = open_fits(fitscut(asinh_srv, fn).content)[0]
    assert "BSOFTEN" not in linear.header and "BOFFSET" not in linear.header
    hdr = compressed.header
    restored = hdr["BOFFSET"] + hdr["BSOFTEN"] * 2 * np.sinh(compressed.data / ASINH_A)
    assert not np.allclose(compressed.data, linear.data)
    np.testing.assert_allclose(restored, linear.data, rtol=1e-4, atol=1e-4 * hdr["BSOFTEN"])


def test_fitscut_nan_chip_gaps():
    with SurveyServer(ps1_nan_fraction=1.0) as srv:
        fn = ps1_file(srv)
        first = fitscut(srv, fn).content
        assert first == fitscut(srv, fn).content
        assert np.isnan(open_fits(first)[0].data).any()
        srv.ps1_nan_fraction = 0.0
        assert not np.isnan(open_fits(fitscut(srv, fn).content)[0].data).any()
        srv.ps1_nan_fraction = 0.5
        hits = sum(np.isnan(open_fits(fitscut(srv, ps1_file(srv, RA, DEC + k * 0.01), RA,
                                              DEC + k * 0.01, size=40).content)[0].data).any()
                   for k in range(20))
    assert 3 <= hits <= 17


# --------------------------------------------------------------------- Legacy viewer
@pytest.mark.parametrize("layer, pixscale, bands", [("galex", 1.5, ["n", "f"]),
                                                    ("unwise-neo7", 2.75, [1, 2])])
def test_fits_cutout_format(server, layer, pixscale, bands):
    r = viewer(server, layer)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(r.content)
    with open_fits(r.content) as hdul:
        assert len(hdul) == 1
        hdu = hdul[0]
        assert hdu.data.shape == (2, 32, 32)
        assert hdu.data.dtype == np.dtype(">f4")
        hdr = hdu.header
        assert hdr["BANDS"] == "".join(str(b) for b in bands)
        assert [hdr["BAND0"], hdr["BAND1"]] == bands
        assert type(hdr["BAND0"]) is type(bands[0])
        assert (hdr["CRVAL1"], hdr["CRVAL2"]) == pytest.approx((RA, DEC))
        assert (hdr["CRPIX1"], hdr["CRPIX2"]) == (16.5, 16.5)
        assert hdr["CD1_1"] == pytest.approx(-pixscale / 3600)
        assert hdr["CD2_2"] == pytest.approx(pixscale / 3600)
        assert hdr["SURVEY"] == layer
        assert "VERSION" in hdr and hdr["IMAGEW"] == 32 and hdr["IMAGEH"] == 32
        x, y = WCS(hdr, naxis=2).world_to_pixel(SkyCoord(RA, DEC, unit="deg"))
        assert (x, y) == pytest.approx((15.5, 15.5), abs=1e-6)


def test_fits_cutout_bands_subset(server):
    full = open_fits(viewer(server, "galex").content)[0]
    sub = open_fits(viewer(server, "galex", bands="f").content)[0]
    assert sub.data.shape == (1, 32, 32)
    assert sub.header["BANDS"] == "f" and sub.header["BAND0"] == "f"
    assert "BAND1" not in sub.header
    np.testing.assert_array_equal(sub.data[0], full.data[1])


def test_fits_cutout_reversed_band_order(server):
    native = open_fits(viewer(server, "unwise-neo7").content)[0]
    with SurveyServer(legacy_band_order="reversed") as srv:
        rev = open_fits(viewer(srv, "unwise-neo7").content)[0]
    assert rev.header["BANDS"] == "21"
    assert (rev.header["BAND0"], rev.header["BAND1"]) == (2, 1)
    np.testing.assert_array_equal(rev.data[0], native.data[1])
    np.testing.assert_array_equal(rev.data[1], native.data[0])


def test_fits_cutout_native_units():
    ra0, dec0 = RA - 4e-3, DEC + 3e-3
    cat = Table({"ra": [ra0], "dec": [dec0], "mag_nuv": [14.0], "mag_fuv": [14.5],
                 "mag_w1": [14.0], "mag_w2": [14.5], "r_half": [1.0]})
    with SurveyServer(SyntheticSky(catalog=cat)) as srv:
        galex = open_fits(viewer(srv, "galex", size=64).content)[0]
        wise = open_fits(viewer(srv, "unwise-neo7", size=64).content)[0]
    # GALEX counts/s (AB ZP 20.08, 18.82); unWISE Vega nanomaggies (AB - Vega 2.699, 3.339)
    for hdu, expected in [(galex, [10 ** (-0.4 * (14.0 - 20.08)), 10 ** (-0.4 * (14.5 - 18.82))]),
                          (wise, [10 ** (-0.4 * (14.0 - 2.699 - 22.5)),
                                  10 ** (-0.4 * (14.5 - 3.339 - 22.5))])]:
        x, y = WCS(hdu.header, naxis=2).world_to_pixel(SkyCoord(ra0, dec0, unit="deg"))
        yy, xx = np.mgrid[:64, :64]
        aperture = (xx - x) ** 2 + (yy - y) ** 2 < 15**2
        sums = [plane[aperture].sum() for plane in hdu.data.astype(float)]
        assert sums == pytest.approx(expected, rel=0.05)


def test_galex_hole_is_all_zero():
    with SurveyServer(galex_holes=[(RA, DEC, 0.1)]) as srv:
        hole = open_fits(viewer(srv, "galex").content)[0]
        assert hole.data.shape == (2, 32, 32) and not hole.data.any()
        assert hole.header["BANDS"] == "nf"
        assert open_fits(viewer(srv, "unwise-neo7").content)[0].data.any()
        assert open_fits(viewer(srv, "galex", ra=RA + 1).content)[0].data.any()


def test_no_overlap_header_only():
    with SurveyServer(no_overlap=[("unwise-neo7", RA, DEC, 0.05)]) as srv:
        r = viewer(srv, "unwise-neo7")
        assert r.status_code == 200
        hdu = open_fits(r.content)[0]
        assert hdu.data is None and hdu.header["OVERLAP"] is False
        assert open_fits(viewer(srv, "galex").content)[0].data.shape == (2, 32, 32)


def test_unknown_layer_and_path(server):
    r = viewer(server, "ls-dr99")
    assert r.status_code == 200 and r.text == "no such layer"
    assert requests.get(server.url + "/nothing/here", timeout=10).status_code == 404


# --------------------------------------------------------------------- faults
def test_error_rate_5xx():
    with SurveyServer(error_rate=1.0) as srv:
        r = viewer(srv)
        assert r.status_code == 503
        assert r.headers["Content-Type"].startswith("text/html")
        assert b"<html" in r.content


def test_truncate_rate():
    with SurveyServer() as good, SurveyServer(truncate_rate=1.0) as bad:
        full = viewer(good).content
        r = viewer(bad)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(r.content) == len(full) // 2
    assert r.content == full[: len(full) // 2]


def test_html_rate():
    with SurveyServer(html_rate=1.0) as srv:
        r = listing(srv)
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/html")
        assert "projcell" not in r.text


def test_fault_endpoints_and_rates_are_seeded():
    with SurveyServer(error_rate=1.0, endpoints={"fitscut"}) as srv:
        assert listing(srv).status_code == 200
        assert viewer(srv).status_code == 200
        assert fitscut(srv, ps1_file(srv)).status_code == 503
    with pytest.raises(ValueError):
        SurveyServer(endpoints={"nope"})
    outcomes = []
    for _ in range(2):
        with SurveyServer(error_rate=0.5, seed=7) as srv:
            outcomes.append([viewer(srv, size=4).status_code for _ in range(30)])
    assert outcomes[0] == outcomes[1]
    assert 5 <= outcomes[0].count(503) <= 25


def test_seed_set_on_a_running_server_restarts_the_faults():
    """Setting ``seed`` draws the random faults from that seed (the generator was once
    made at construction only, so a new seed changed nothing)."""
    def pattern(srv):
        return [viewer(srv, size=4).status_code for _ in range(30)]

    with SurveyServer(error_rate=0.5, seed=1) as srv:
        want = pattern(srv)
    with SurveyServer(error_rate=0.5, seed=0) as srv:
        first = pattern(srv)
        srv.seed = 1
        assert srv.seed == 1 and pattern(srv) == want != first


def test_restart_keeps_its_port_while_free_and_finds_another_when_not():
    import socket

    srv = SurveyServer().start()
    port = srv.port
    srv.stop()
    srv.start()
    assert srv.port == port and viewer(srv, size=4).status_code == 200
    srv.stop()
    with socket.socket() as taken:  # someone else binds the port meanwhile
        taken.bind(("127.0.0.1", port))
        srv.start()
        try:
            assert srv.port != port and viewer(srv, size=4).status_code == 200
        finally:
            srv.stop()
    fixed = SurveyServer(port=port).start()
    try:
        with pytest.raises(OSError):  # a port asked for is never swapped for another
            SurveyServer(port=port).start()
    finally:
        fixed.stop()


def test_a_sky_swapped_on_a_running_server_is_asked_again():
    """Whether the sky's render() takes skycell_center is asked of the sky being served:
    a swap once kept the old answer (500s, or a silently wrong WCS)."""
    class PlainSky(SyntheticSky):
        def render(self, survey, coord, size=None, pixscale=None, band=None):
            return SyntheticSky.render(self, survey, coord, size=size, pixscale=pixscale,
                                       band=band)

    def crval(r):
        assert r.status_code == 200
        header = open_fits(r.content)[0].header
        return header["CRVAL1"], header["CRVAL2"]

    with SurveyServer(sky=PlainSky()) as srv:
        plain = crval(fitscut(srv, ps1_file(srv)))  # centred on the position
        srv.sky = SyntheticSky()
        on_skycell = crval(fitscut(srv, ps1_file(srv)))  # the skycell's CRVAL
        srv.sky = PlainSky()
        assert crval(fitscut(srv, ps1_file(srv))) == plain
    assert on_skycell != plain
    with SurveyServer() as srv:
        assert crval(fitscut(srv, ps1_file(srv))) == on_skycell


def test_fail_next():
    with SurveyServer() as srv:
        srv.fail_next(2, "5xx", endpoint="fits-cutout")
        assert listing(srv).status_code == 200  # other endpoint untouched
        assert [viewer(srv).status_code for _ in range(3)] == [503, 503, 200]
        srv.fail_next(1, "html")
        assert listing(srv).headers["Content-Type"].startswith("text/html")
        srv.fail_next(1, "truncate", endpoint="fitscut")
        fn = ps1_file(srv)
        cut = fitscut(srv, fn)
        assert len(cut.content) < len(fitscut(srv, fn).content)
        srv.timeout_sleep = 0.6
        srv.fail_next(1, "timeout")
        with pytest.raises(requests.exceptions.Timeout):
            requests.get(f"{srv.legacysurvey_url}/fits-cutout",
                         params={"ra": RA, "dec": DEC, "layer": "galex", "size": 8}, timeout=0.2)
        assert viewer(srv).status_code == 200
        with pytest.raises(ValueError):
            srv.fail_next(1, "explode")


def test_latency_is_applied():
    with SurveyServer(latency=0.15) as srv:
        t0 = time.perf_counter()
        listing(srv)
        assert time.perf_counter() - t0 >= 0.15
        srv.latency = 0.0
        t0 = time.perf_counter()
        listing(srv)
        assert time.perf_counter() - t0 < 0.15


def test_concurrent_requests():
    def fetch(srv, k):
        # urllib: a light client, so that the test measures the server's concurrency
        url = (f"{srv.legacysurvey_url}/fits-cutout?ra={RA + k * 0.01}&dec={DEC}"
               "&size=16&pixscale=1.5&layer=galex")
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, len(response.read())

    with SurveyServer(latency=0.2) as srv:
        fetch(srv, 0)  # warm up
        assert srv.max_in_flight == 1 and srv.in_flight == 0
        srv.reset()
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda k: fetch(srv, k), range(16)))
        assert srv.counts["fits-cutout"] == 16
        # the server handles them side by side (one at a time would take 3.2 s)
        assert srv.max_in_flight >= 8 and srv.in_flight == 0
    assert all(status == 200 and size > 2880 for status, size in results)


# --------------------------------------------------------------------- instrumentation
def test_counts_log_reset():
    with SurveyServer() as srv:
        fn = ps1_file(srv)
        fitscut(srv, fn)
        viewer(srv)
        viewer(srv, "unwise-neo7")
        assert srv.counts == {"ps1filenames": 1, "fitscut": 1, "fits-cutout": 2}
        assert [e.endpoint for e in srv.log] == ["ps1filenames", "fitscut", "fits-cutout",
                                                 "fits-cutout"]
        method, endpoint, params, npos = srv.log[0]
        assert (method, endpoint, npos) == ("GET", "ps1filenames", 1)
        assert params["filters"] == "r"
        assert srv.log[1].params["red"] == fn and srv.log[1].npositions is None
        assert srv.log[3].params["layer"] == "unwise-neo7"
        srv.reset()
        assert not srv.counts and srv.log == []


def test_keep_alive_and_stop():
    srv = SurveyServer().start()
    try:
        with requests.Session() as session:
            for _ in range(3):
                r = session.get(f"{srv.legacysurvey_url}/fits-cutout", timeout=10,
                                params={"ra": RA, "dec": DEC, "layer": "galex", "size": 8})
                assert r.status_code == 200 and r.headers.get("Connection") != "close"
            srv.stop()
            assert not srv.running
            with pytest.raises(requests.exceptions.ConnectionError):
                session.get(f"http://127.0.0.1:{srv.port}/viewer/fits-cutout",
                            params={"ra": RA, "dec": DEC, "layer": "galex"}, timeout=2)
    finally:
        srv.stop()
    with pytest.raises(RuntimeError):
        _ = srv.url


# --------------------------------------------------------------------- determinism, sky
def test_responses_are_deterministic(server):
    fn = ps1_file(server)
    with SurveyServer() as other:
        for get in (lambda s: fitscut(s, fn), lambda s: viewer(s, "galex"),
                    lambda s: viewer(s, "unwise-neo7"), lambda s: listing(s)):
            first = get(server).content
            assert get(server).content == first
            assert get(other).content == first
    assert viewer(server, ra=RA + 1e-3).content != viewer(server).content


def test_render_matches_service():
    sky = SyntheticSky(seed=0)
    coord = SkyCoord(RA, DEC, unit="deg")
    with SurveyServer(sky) as srv:
        served = open_fits(viewer(srv, "galex").content)[0]
    rendered = sky.render("galex", coord, size=32, pixscale=1.5)[0]
    np.testing.assert_array_equal(served.data, rendered.data)
    assert served.header == rendered.header
    with pytest.raises(ValueError):
        sky.render("panstarrs", coord)  # PS1 needs a band
    ps1 = sky.render("panstarrs", coord, band="g")[0]
    assert ps1.data.shape == (170, 170) and ps1.header["CRPIX1"] == 85.5


def test_sky_catalog_and_band_selection():
    cat = Table({"ra": [RA, RA + 0.5], "dec": [DEC, DEC], "mag_nuv": [16.0, 16.0]})
    sky = SyntheticSky(catalog=cat)
    far = sky.render("galex", (RA + 0.25, DEC), band="n")[0].data
    near = sky.render("galex", (RA, DEC), band=["fuv", "nuv"])[0]
    assert near.header["BANDS"] == "fn"
    assert near.data[1].sum() == pytest.approx(10 ** (-0.4 * (16.0 - 20.08)), rel=0.05)
    assert abs(far.sum()) < 2.0  # noise only: the sources are 0.25 deg away
    assert abs(near.data[0].sum()) < 2.0  # no FUV magnitude: not drawn
    props = SyntheticSky(seed=5).galaxy_at(RA, DEC)
    again = SyntheticSky(seed=5).galaxy_at(RA + 1e-9, DEC)
    props.pop("ra"), again.pop("ra")
    assert props == again
    other = SyntheticSky(seed=6).galaxy_at(RA, DEC)
    other.pop("ra")
    assert props != other


# --------------------------------------------------------------------- configuration
class _Conf(ConfigNamespace):
    panstarrs_url = ConfigItem("https://ps1images.stsci.edu/cgi-bin", "PS1")
    legacysurvey_url = ConfigItem("https://www.legacysurvey.org/viewer", "viewer")


def test_configure_sets_and_restores_urls():
    conf = _Conf()
    with SurveyServer() as srv, srv.configure(conf) as same:
        assert same is srv
        assert conf.panstarrs_url == srv.url + "/cgi-bin"
        assert conf.legacysurvey_url == srv.url + "/viewer"
        assert listing(srv).status_code == 200
    assert conf.panstarrs_url == "https://ps1images.stsci.edu/cgi-bin"
    assert conf.legacysurvey_url == "https://www.legacysurvey.org/viewer"


def test_survey_server_fixture(request, tmp_path):
    mod = pytest.importorskip("astro_mantis.config")
    srv = request.getfixturevalue("survey_server")
    assert srv.running
    assert mod.conf.panstarrs_url == srv.panstarrs_url
    assert mod.conf.legacysurvey_url == srv.legacysurvey_url
    assert mod.conf.cache_dir == str(tmp_path)


def test_many_threads_share_counts():
    with SurveyServer() as srv:
        barrier = threading.Barrier(8)

        def work(_):
            barrier.wait()
            return [listing(srv, filters="g").status_code for _ in range(5)]

        with ThreadPoolExecutor(8) as pool:
            assert all(c == 200 for codes in pool.map(work, range(8)) for c in codes)
        assert srv.counts["ps1filenames"] == 40 and len(srv.log) == 40


# --------------------------------------------------------------------- skycell sky
def test_skycell_grid_covers_its_skycell():
    projcell, subcell, ra_c, dec_c = ps1_skycell(150.2, 2.2)
    grid = SkycellGrid.of((ra_c, dec_c), margin=0)
    assert grid.crval == (ra_c, dec_c) and grid.npix % 2 == 0
    x, y = grid.pixel(ra_c, dec_c)
    assert (float(x), float(y)) == pytest.approx((grid.npix / 2 - 0.5,) * 2)
    # every corner of the skycell is on the grid, a point 30" beyond an edge is not
    half_ra = (ps1_skycell_center(projcell, subcell + 1)[0] - ra_c) / 2  # the next column
    for dra, ddec in [(-1, -1), (-1, 1), (1, -1), (1, 1)]:
        a, d = ra_c + 0.999 * dra * half_ra, dec_c + 0.999 * ddec * 0.2
        assert ps1_skycell(a, d)[:2] == (projcell, subcell)
        x, y = grid.pixel(a, d)
        assert 0 <= x < grid.npix and 0 <= y < grid.npix
    x, y = grid.pixel(ra_c, dec_c + 0.2 + 30 / 3600)
    assert y > grid.npix
    assert SkycellGrid.of((ra_c, dec_c), margin=40).npix == grid.npix + 80


def test_skycell_sky_cutouts_agree_where_they_overlap():
    catalog = cluster_catalog(20, radius=1.0, seed=2)
    with SurveyServer(sky=SkycellSky(catalog=catalog)) as srv:
        ra, dec = float(catalog["ra"][0]), float(catalog["dec"][0])
        fn = ps1_file(srv, ra, dec, "g")
        small = open_fits(fitscut(srv, fn, ra, dec, size=170).content)[0]
        ra2 = ra + 20 / 3600 / math.cos(math.radians(dec))
        big = open_fits(fitscut(srv, fn, ra2, dec + 15 / 3600, size=400).content)[0]
        again = open_fits(fitscut(srv, fn, ra, dec, size=170).content)[0]
    for card in ("CRVAL1", "CRVAL2", "CDELT1", "CDELT2", "EXPTIME"):
        assert small.header[card] == big.header[card]
    # the small cutout is a block of the big one: CRPIX says where
    dx = big.header["CRPIX1"] - small.header["CRPIX1"]
    dy = big.header["CRPIX2"] - small.header["CRPIX2"]
    assert dx == int(dx) and dy == int(dy) and 0 < dx < 400 - 170 and 0 < dy < 400 - 170
    x0, y0 = int(dx), int(dy)
    np.testing.assert_array_equal(small.data, big.data[y0:y0 + 170, x0:x0 + 170])
    np.testing.assert_array_equal(small.data, again.data)
    # fitscut's rule: the position (the numbers sent, in the cutout's FK5 frame) lies in
    # [size // 2 - 0.5, size // 2 + 0.5) = [84.5, 85.5)
    x, y = WCS(small.header).world_to_pixel_values(ra, dec)
    assert 84.5 <= x < 85.5 and 84.5 <= y < 85.5
    # the galaxy is painted there: the centre is brighter than the noise
    assert small.data[80:90, 80:90].mean() > np.median(small.data) + 3 * np.std(
        small.data[:20, :20])


def test_skycell_sky_keeps_the_viewer_layers_of_the_synthetic_sky():
    catalog = cluster_catalog(5, radius=0.5, seed=1)
    coord = SkyCoord(catalog["ra"][0], catalog["dec"][0], unit="deg")
    a = SkycellSky(catalog=catalog).render("galex", coord)
    b = SyntheticSky(catalog=catalog).render("galex", coord)
    np.testing.assert_array_equal(a[0].data, b[0].data)
    # without a skycell (or resampled) Pan-STARRS renders are the synthetic sky's too
    a = SkycellSky(catalog=catalog).render("panstarrs", coord, band="r")
    b = SyntheticSky(catalog=catalog).render("panstarrs", coord, band="r")
    np.testing.assert_array_equal(a[0].data, b[0].data)


def test_skycell_sky_blocks_are_dropped_and_redrawn_identically():
    sky = SkycellSky(catalog=cluster_catalog(10, radius=1.0), block=64, max_blocks=4)
    coord = SkyCoord(150.2, 2.2, unit="deg")
    centre = ps1_skycell(150.2, 2.2)[2:]
    first = sky.render("panstarrs", coord, size=170, band="i", skycell_center=centre)[0].data
    assert len(sky._blocks) == 4  # 3 x 3 or more were drawn, only 4 kept
    second = sky.render("panstarrs", coord, size=170, band="i", skycell_center=centre)[0].data
    np.testing.assert_array_equal(first, second)


def test_server_refuses_cutouts_larger_than_max_size():
    with SurveyServer(max_size=200) as srv:
        fn = ps1_file(srv)
        assert fitscut(srv, fn, size=200).status_code == 200
        r = fitscut(srv, fn, size=201)
        assert r.status_code == 400 and b"1..200" in r.content
        assert viewer(srv, size=201).status_code == 400
        srv.max_size = 300
        assert fitscut(srv, fn, size=201).status_code == 200


def test_cluster_catalog_fills_a_disc():
    cat = cluster_catalog(300, center=(10.0, -5.0), radius=3.0, seed=4)
    sep = SkyCoord(cat["ra"], cat["dec"], unit="deg").separation(
        SkyCoord(10.0, -5.0, unit="deg")).arcmin
    assert len(cat) == 300 and sep.max() <= 3.0 + 1e-6 and np.median(sep) > 1.5
    assert {"mag_g", "mag_nuv", "mag_w2", "r_half"} <= set(cat.colnames)
    again = cluster_catalog(300, center=(10.0, -5.0), radius=3.0, seed=4)
    np.testing.assert_array_equal(cat["ra"], again["ra"])


def test_write_spall_replaces_a_file_whole_or_not_at_all(tmp_path, monkeypatch):
    """A mock spAll file is written atomically: a write that fails midway leaves the old
    file and no temporary one (the FITS writer once wrote into the file itself)."""
    from astro_mantis.testing import make_specobj, write_spall

    catalog = Table({"ra": [150.0, 150.01, 150.02], "dec": [2.0, 2.01, 2.02],
                     "z": [0.1, 0.2, 0.3], "id": [1, 2, 3]})
    specobj = make_specobj(catalog, seed=1, completeness=1.0)
    path = tmp_path / "spAll-lite-v6_1_3.fits.gz"
    write_spall(specobj, path)
    old = path.read_bytes()
    with fits.open(path) as hdul:
        assert len(hdul[1].data) == len(specobj)
    with pytest.raises(OSError, match="already exists"):
        write_spall(specobj, path)

    def torn(self, fileobj, *args, **kwargs):
        with open(fileobj, "wb") as fh:
            fh.write(old[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fits.HDUList, "writeto", torn)
    with pytest.raises(OSError, match="No space left"):
        write_spall(specobj, path, overwrite=True)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
