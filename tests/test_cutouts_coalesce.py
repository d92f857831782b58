"""Coalescing crowded fields: Pan-STARRS positions of one skycell share one larger request.

Everything goes through real sockets to a loopback `SurveyServer` whose Pan-STARRS
cutouts are cut from whole skycells (`SkycellSky`), as the real fitscut.cgi cuts them,
so a coalesced cutout must equal the position's own cutout pixel for pixel.
"""
import logging
import math

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from astro_mantis import Mantis, conf
from astro_mantis.fetch import (DEFAULT_COALESCE_SPAN, FetchStatus, _Coalescer,
                                coalesce_span)
from astro_mantis.flags import MantisFlag
from astro_mantis.surveys import get_survey
from astro_mantis.testing import (SkycellSky, SurveyServer, cluster_catalog, ps1_skycell,
                                  ps1_skycell_center)

PS1 = get_survey("panstarrs")


def coords_of(catalog):
    return SkyCoord(catalog["ra"], catalog["dec"], unit="deg")


@pytest.fixture
def field(tmp_path):
    """A loopback server over a crowded field of 40 galaxies within 1.5 arcmin."""
    catalog = cluster_catalog(40, radius=1.5, seed=3)
    with SurveyServer(sky=SkycellSky(catalog=catalog)) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path)), conf.set_temp("backoff", 0.01):
        yield srv, coords_of(catalog)


def assert_same_cutouts(plain, coalesced):
    """Equal statuses, flags, missing surveys and, per survey, pixels (NaN where NaN),
    WCS cards, zero points, flags, units and metadata."""
    assert len(plain) == len(coalesced)
    for a, b in zip(plain, coalesced):
        assert a.status == b.status and a.flags == b.flags and a.missing == b.missing
        assert [s.kind for s in a.status.values()] == [s.kind for s in b.status.values()]
        assert list(a.surveys) == list(b.surveys)
        for name in a.surveys:
            x, y = a[name], b[name]
            np.testing.assert_array_equal(x.data, y.data)  # NaN equals NaN here
            assert x.header.tostring() == y.header.tostring()
            np.testing.assert_array_equal(x.zeropoints, y.zeropoints)
            assert (x.flags, x.unit, x.bands, x.meta) == (y.flags, y.unit, y.bands, y.meta)


def fitscut_sizes(server):
    return [int(e.params["size"]) for e in server.log if e.endpoint == "fitscut"]


def test_coalesced_cutouts_equal_plain_ones_with_fewer_requests(field):
    server, coords = field
    plain = Mantis.get_cutouts(coords, cache=False, progress=False)
    plain_counts = dict(server.counts)
    server.reset()
    coalesced = Mantis.get_cutouts(coords, cache=False, progress=False, coalesce=True)
    assert_same_cutouts(plain, coalesced)
    assert all(c.flags == MantisFlag.NONE for c in coalesced)
    # Pan-STARRS: 5 band requests per group instead of per position
    assert plain_counts["fitscut"] == 5 * len(coords)
    sizes = fitscut_sizes(server)
    assert server.counts["fitscut"] <= 5 * len(coords) / 3
    assert max(sizes) > PS1.size and len(sizes) % 5 == 0
    assert server.counts["ps1filenames"] == plain_counts["ps1filenames"] == 1
    # GALEX and unWISE are never coalesced: the viewer resamples per request
    assert server.counts["fits-cutout"] == plain_counts["fits-cutout"] == 2 * len(coords)
    assert Mantis.last_request_count == sum(server.counts.values())


def test_a_wider_span_sends_fewer_larger_requests(field):
    server, coords = field
    counts = {}
    for span in (0.5, 1.0, 3.0):
        server.reset()
        cuts = Mantis.get_cutouts(coords, surveys=["panstarrs"], cache=False, progress=False,
                                  coalesce=span)
        assert all(c.status["panstarrs"] == "ok" for c in cuts)
        counts[span] = (server.counts["fitscut"], max(fitscut_sizes(server)))
    assert counts[0.5][0] > counts[1.0][0] > counts[3.0][0] >= 5
    assert counts[0.5][1] < counts[3.0][1] <= PS1.size + 3.0 * 60 / 0.25 + 8


def test_asinh_compressed_stacks_are_cut_identically(tmp_path):
    catalog = cluster_catalog(12, radius=0.8, seed=5)
    with SurveyServer(sky=SkycellSky(catalog=catalog, asinh=True)) as srv, \
            srv.configure(conf), conf.set_temp("cache_dir", str(tmp_path)):
        coords = coords_of(catalog)
        plain = Mantis.get_cutouts(coords, surveys=["panstarrs"], cache=False, progress=False)
        srv.reset()
        coalesced = Mantis.get_cutouts(coords, surveys=["panstarrs"], cache=False,
                                       progress=False, coalesce=2 * u.arcmin)
        assert srv.counts["fitscut"] == 5  # one group
    assert_same_cutouts(plain, coalesced)


def test_pixel_fractions_below_half_are_cut_as_fitscut_cuts_them(tmp_path):
    """Positions whose skycell pixel has a fraction below 0.5 on either axis (there
    fitscut's window is one pixel from Cutout2D's ``ceil(x - size / 2)``) and above: the
    coalesced cutouts equal the positions' own, which the loopback cuts by its own
    statement of fitscut's rule, with the position in [84.5, 85.5) of the cutout."""
    from astropy.wcs import WCS

    sky = SkycellSky(catalog=cluster_catalog(10, radius=0.5, seed=4))
    centre = ps1_skycell_center(*ps1_skycell(150.2, 2.2)[:2])
    grid = sky.grid(centre)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = grid.crval, grid.crpix, grid.cdelt
    half = grid.npix // 2
    fracs = [(0.1, 0.2), (0.3, 0.45), (0.05, 0.8), (0.7, 0.3), (0.9, 0.9), (0.45, 0.05)]
    px = np.array([half + 37 * k + fx for k, (fx, _) in enumerate(fracs)])
    py = np.array([half - 23 * k + fy for k, (_, fy) in enumerate(fracs)])
    ra, dec = w.all_pix2world(px, py, 0)
    ra, dec = np.round(ra, 7), np.round(dec, 7)  # as sent
    x, y = grid.pixel(ra, dec)
    np.testing.assert_allclose(x % 1, [f for f, _ in fracs], atol=0.01)
    np.testing.assert_allclose(y % 1, [f for _, f in fracs], atol=0.01)
    coords = SkyCoord(ra, dec, unit="deg")
    with SurveyServer(sky=sky) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path)):
        plain = Mantis.get_cutouts(coords, surveys=["panstarrs"], cache=False, progress=False)
        srv.reset()
        coalesced = Mantis.get_cutouts(coords, surveys=["panstarrs"], cache=False,
                                       progress=False, coalesce=2)
        assert srv.counts["fitscut"] == 5  # one group
    assert_same_cutouts(plain, coalesced)
    for cut, a, d, xk, yk in zip(plain, ra, dec, x, y):
        image = cut["panstarrs"]
        cx, cy = image.wcs.world_to_pixel_values(a, d)
        assert 84.5 <= cx < 85.5 and 84.5 <= cy < 85.5
        x0 = grid.crpix[0] - image.header["CRPIX1"]
        y0 = grid.crpix[1] - image.header["CRPIX2"]
        assert (x0, y0) == (math.floor(xk - 84.5), math.floor(yk - 84.5))


def test_targets_near_a_skycell_edge(tmp_path):
    """Positions on both sides of a skycell boundary: one group per skycell, and the
    NaN beyond each skycell's grid where their own cutouts have it."""
    ra_c, dec_c = ps1_skycell_center(*ps1_skycell(150.2, 2.2)[:2])
    edge = dec_c + 0.2  # the northern boundary of the skycell
    ra = ra_c + np.linspace(-0.5, 0.5, 6) / 60
    dec = np.concatenate([np.full(3, edge - 4 / 3600), np.full(3, edge + 4 / 3600)])
    coords = SkyCoord(ra, dec, unit="deg")
    cells = {ps1_skycell(a, d)[:2] for a, d in zip(ra, dec)}
    assert len(cells) == 2
    with SurveyServer(sky=SkycellSky(margin=0)) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path)):
        plain = Mantis.get_cutouts(coords, surveys=["panstarrs"], cache=False, progress=False)
        srv.reset()
        coalesced = Mantis.get_cutouts(coords, surveys=["panstarrs"], cache=False,
                                       progress=False, coalesce=2)
        assert srv.counts["fitscut"] == 5 * len(cells)
    assert_same_cutouts(plain, coalesced)
    for cut in coalesced:
        image = cut["panstarrs"]
        assert image.mask.any() and not image.mask.all()  # cut at the grid's edge
        assert image.flags & MantisFlag.NAN_PIXELS and cut.flags & MantisFlag.NAN_PIXELS


def test_a_refused_larger_request_falls_back_to_one_request_per_position(field, caplog):
    server, coords = field
    plain = Mantis.get_cutouts(coords, surveys=["panstarrs"], cache=False, progress=False)
    server.reset()
    server.max_size = 300  # the larger requests are refused with HTTP 400 (not retried)
    with caplog.at_level(logging.INFO, logger="astro_mantis"):
        coalesced = Mantis.get_cutouts(coords, surveys=["panstarrs"], cache=False,
                                       progress=False, coalesce=3)
    assert_same_cutouts(plain, coalesced)
    sizes = fitscut_sizes(server)
    refused = [s for s in sizes if s > 300]
    assert refused and sizes.count(PS1.size) == 5 * len(coords)
    assert "fetched alone after their group's gave none" in caplog.text
    assert all(c.status["panstarrs"].kind is FetchStatus.FETCHED for c in coalesced)


def test_a_transient_failure_of_a_larger_request_is_retried(field):
    server, coords = field
    plain = Mantis.get_cutouts(coords[:10], surveys=["panstarrs"], cache=False, progress=False)
    server.reset()
    server.fail_next(2, "5xx", endpoint="fitscut")
    coalesced = Mantis.get_cutouts(coords[:10], surveys=["panstarrs"], cache=False,
                                   progress=False, coalesce=5)
    assert_same_cutouts(plain, coalesced)
    assert server.counts["fitscut"] == 5 + 2  # one group, two retried bands


def test_a_failed_larger_request_that_fails_alone_too_is_flagged(field):
    server, coords = field
    server.max_size = 100  # neither the group's nor the positions' own requests pass
    cuts = Mantis.get_cutouts(coords[:6], surveys=["panstarrs"], cache=False,
                              progress=False, coalesce=True)
    for cut in cuts:
        status = cut.status["panstarrs"]
        assert status.kind is FetchStatus.FAILED and "HTTP 400" in status.detail
        assert cut.flags & MantisFlag.FETCH_FAILED and cut.missing == ("panstarrs",)


def test_cache_interaction(field):
    server, coords = field
    reference = Mantis.get_cutouts(coords, cache=False, progress=False)
    # half the positions cached by a plain call; a coalesced call fetches only the rest
    Mantis.get_cutouts(coords[::2], progress=False)
    server.reset()
    mixed = Mantis.get_cutouts(coords, progress=False, coalesce=True)
    for k, cut in enumerate(mixed):
        kind = FetchStatus.CACHED if k % 2 == 0 else FetchStatus.FETCHED
        assert {s.kind for s in cut.status.values()} == {kind}
    assert server.counts["fitscut"] < 5 * len(coords[1::2])
    assert server.counts["fits-cutout"] == 2 * len(coords[1::2])
    for a, b in zip(reference, mixed):
        for name in a.surveys:
            np.testing.assert_array_equal(a[name].data, b[name].data)
    # the coalesced cutouts were cached under the positions' own keys: a plain rerun
    # sends nothing and reads the same pixels
    server.reset()
    again = Mantis.get_cutouts(coords, progress=False)
    assert sum(server.counts.values()) == 0 and Mantis.last_request_count == 0
    assert all(set(c.status.values()) == {"cached"} for c in again)
    for a, b in zip(reference, again):
        np.testing.assert_array_equal(a["panstarrs"].data, b["panstarrs"].data)
        assert a["panstarrs"].header.tostring() == b["panstarrs"].header.tostring()


def test_off_by_default_and_bad_spans_are_refused(field):
    server, coords = field
    Mantis.get_cutouts(coords[:5], surveys=["panstarrs"], cache=False, progress=False)
    assert set(fitscut_sizes(server)) == {PS1.size}
    server.reset()
    for bad in (-1, 11, "wide", 2 * u.m):
        with pytest.raises(ValueError, match="coalesce"):
            Mantis.get_cutouts(coords[:5], cache=False, progress=False, coalesce=bad)
    assert sum(server.counts.values()) == 0
    assert coalesce_span(True) == DEFAULT_COALESCE_SPAN.to_value(u.arcsec) == 60.0
    assert coalesce_span(30 * u.arcsec) == 30.0 and coalesce_span(0) == 0.0


def test_cut_leaves_out_positions_outside_the_larger_cutout(field):
    server, coords = field
    ra, dec = float(coords[0].ra.deg), float(coords[0].dec.deg)
    from astro_mantis.fetch import _Fetcher, _check_fits_body, _ListingCheck

    fetcher = _Fetcher(2, 0, 5.0, 0.01)
    try:
        check = _ListingCheck(PS1, [(ra, dec)])
        fetcher.submit(PS1.listing_request([(ra, dec)]), check).result()
        listing = check.entries[0]
        requests = PS1.image_requests(ra, dec, listing=listing, size=PS1.size + 40)
        bodies = [fetcher.submit(r, _check_fits_body).result() for r in requests]
        own = PS1.image_requests(ra, dec, listing=listing)
        alone = PS1.read([fetcher.submit(r, _check_fits_body).result() for r in own], own,
                         ra, dec)
    finally:
        fetcher.close()
    far = (ra + 30 / 3600 / np.cos(np.radians(dec)), dec)  # 30" away: half outside
    inside, outside = PS1.cut(bodies, requests, [(ra, dec), far])
    assert outside is None
    np.testing.assert_array_equal(inside.data, alone.data)
    assert inside.header.tostring() == alone.header.tostring()


def test_groups_hold_one_skycell_and_one_square_each():
    ra = np.array([10.0, 10.0 + 20 / 3600, 10.0 + 200 / 3600, 10.0])
    dec = np.array([5.0, 5.0, 5.0, 5.0 + 10 / 3600])
    members = [(0, {"g": "a"}), (1, {"g": "a"}), (2, {"g": "a"}), (3, {"g": "b"})]
    groups = _Coalescer(60.0).groups(PS1, members, ra, dec)
    assert sorted(sorted(i for i, _ in g) for g in groups) == [[0, 1], [2], [3]]
    assert _Coalescer(0.0).groups(PS1, members, ra, dec) == [[m] for m in members]
    assert not _Coalescer(60.0).applies(get_survey("galex"))


def test_request_geometry_holds_every_member_across_ra_zero():
    ra = np.array([359.995, 0.005, 0.0])
    dec = np.array([1.0, 1.01, 1.005])
    ra_c, dec_c, side = _Coalescer.request_geometry(PS1, ra, dec)
    assert min(abs(ra_c), abs(ra_c - 360.0)) < 1e-6 and abs(dec_c - 1.005) < 1e-9
    # 0.01 deg = 36" = 144 pixels across in either direction, plus the cutout
    assert PS1.size + 144 <= side <= PS1.size + 144 + 10


def test_the_configuration_turns_coalescing_on_for_calls_without_coalesce(field):
    """``conf.ps1_coalesce_arcmin`` decides when ``coalesce=`` is not given (tables too)."""
    from astropy.table import Table

    from astro_mantis import add_redshift_columns

    server, coords = field
    coords = coords[:12]
    assert coalesce_span(None) == 0.0                  # off by default
    explicit = Mantis.get_cutouts(coords, cache=False, progress=False, coalesce=True)
    n_explicit = server.counts["fitscut"]
    server.reset()
    with conf.set_temp("ps1_coalesce_arcmin", 1.0):
        assert coalesce_span(None) == 60.0
        configured = Mantis.get_cutouts(coords, cache=False, progress=False)
        assert server.counts["fitscut"] == n_explicit < 5 * len(coords)
        assert_same_cutouts(explicit, configured)
        server.reset()
        table = Table({"ra": coords.ra.deg, "dec": coords.dec.deg})
        add_redshift_columns(table, cache=False, progress=False)
        assert server.counts["fitscut"] == n_explicit       # the table job coalesces too
    server.reset()
    Mantis.get_cutouts(coords, cache=False, progress=False)
    assert server.counts["fitscut"] == 5 * len(coords)     # and not once it is off
