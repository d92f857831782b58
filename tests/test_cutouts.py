"""The cutout service end to end, through real sockets to the loopback survey servers."""

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from astro_mantis import Mantis, MultiSurveyCutout, conf
from astro_mantis.cutouts import CutoutCache
from astro_mantis.flags import MantisFlag
from astro_mantis.surveys import SURVEYS

ALL = ("galex", "panstarrs", "unwise")


def grid(n, ra0=150.0, dec0=2.0, step=0.01):
    return SkyCoord(ra0 + step * np.arange(n), dec0 + 0.5 * step * np.arange(n), unit="deg")


def test_scalar_gives_one_cutout_with_every_survey(server):
    coord = SkyCoord(150.1, 2.2, unit="deg")
    cut = Mantis.get_cutouts(coord)
    assert isinstance(cut, MultiSurveyCutout)
    assert list(cut.surveys) == list(ALL) and cut.missing == () and cut.flags == 0
    for name, img in cut.surveys.items():
        survey = SURVEYS[name]
        assert img.shape == (len(survey.bands), survey.size, survey.size)
        assert img.bands == survey.bands and img.unit == survey.unit
        # the numbers sent, in the cutout's own frame (PS1 cutouts say FK5, as real ones do)
        x, y = img.wcs.world_to_pixel_values(coord.ra.deg, coord.dec.deg)
        centre = (survey.size - 1) / 2
        assert abs(x - centre) < 0.01 and abs(y - centre) < 0.01
        # the synthetic galaxy sits at the requested position: the centre is bright
        band = img.data[0]
        c = survey.size // 2
        assert band[c - 2:c + 2, c - 2:c + 2].mean() > np.median(band)
    assert np.all(np.isfinite(cut.surveys["panstarrs"].zeropoints))


def test_array_is_row_aligned_and_endpoint_parameters_are_right(server):
    coords = grid(6)
    cuts = Mantis.get_cutouts(coords)
    assert len(cuts) == 6
    for coord, cut in zip(coords, cuts):
        assert cut.coord.separation(coord) < 1e-6 * u.arcsec
    fc = [e for e in server.log if e.endpoint == "fits-cutout"]
    layers = {e.params["layer"]: e.params for e in fc}
    assert set(layers) == {"galex", "unwise-neo7"}
    assert layers["galex"]["size"] == "32" and float(layers["galex"]["pixscale"]) == 1.5
    wise = layers["unwise-neo7"]
    assert wise["size"] == "32" and float(wise["pixscale"]) == 2.75
    cuts_ps1 = [e for e in server.log if e.endpoint == "fitscut"]
    assert len(cuts_ps1) == 6 * 5
    p = cuts_ps1[0].params
    assert p["size"] == "170" and p["format"] == "fits" and p["red"].endswith(".unconv.fits")
    (listing,) = [e for e in server.log if e.endpoint == "ps1filenames"]
    assert listing.method == "POST" and listing.npositions == 6
    assert listing.params.get("filters") == "grizy" and listing.params.get("type") == "stack"


def test_ps1_listings_are_batched_never_per_object(server):
    with conf.set_temp("ps1_chunk_size", 10):
        cuts = Mantis.get_cutouts(grid(25), surveys=("panstarrs",))
    assert all("panstarrs" in c for c in cuts)
    sizes = sorted(e.npositions for e in server.log if e.endpoint == "ps1filenames")
    assert sizes == [5, 10, 10]
    assert server.counts["fitscut"] == 25 * 5 and server.counts["fits-cutout"] == 0


def test_band_order_comes_from_band_keywords(server):
    coord = SkyCoord(33.3, 4.4, unit="deg")
    native = Mantis.get_cutouts(coord, surveys=("galex", "unwise"), cache=False)
    server.legacy_band_order = "reversed"
    flipped = Mantis.get_cutouts(coord, surveys=("galex", "unwise"), cache=False)
    for name in ("galex", "unwise"):
        np.testing.assert_array_equal(native[name].data, flipped[name].data)
        assert not np.array_equal(native[name].data[0], native[name].data[1])


def test_retries_recover_from_transient_5xx(server):
    server.fail_next(2, "5xx", endpoint="fits-cutout")
    with conf.set_temp("retries", 3):
        cut = Mantis.get_cutouts(SkyCoord(10, 10, unit="deg"), surveys=("galex",))
    assert "galex" in cut and cut.flags == 0
    assert server.counts["fits-cutout"] == 3


def test_retries_are_bounded_and_failures_are_flagged_not_raised(server):
    server.error_rate = 1.0
    server.endpoints = {"fits-cutout"}
    with conf.set_temp("retries", 2):
        cuts = Mantis.get_cutouts(grid(3), surveys=ALL)
    assert server.counts["fits-cutout"] == 3 * 2 * 3  # positions x surveys x (1 + retries)
    for cut in cuts:
        assert list(cut.surveys) == ["panstarrs"]
        assert set(cut.missing) == {"galex", "unwise"}
        assert MantisFlag.FETCH_FAILED in cut.flags
        assert MantisFlag.GALEX_MISSING in cut.flags and MantisFlag.UNWISE_MISSING in cut.flags
        assert cut.status["galex"].startswith("failed: HTTP 503")


@pytest.mark.parametrize("kind", ["truncate", "html", "5xx"])
def test_each_fault_is_retried_then_flagged(server, kind):
    coord = SkyCoord(20, 5, unit="deg")
    server.fail_next(1, kind, endpoint="fitscut")
    with conf.set_temp("retries", 1):
        cut = Mantis.get_cutouts(coord, surveys=("panstarrs",), cache=False)
    assert "panstarrs" in cut and cut.flags == 0
    server.fail_next(1, kind, endpoint="fitscut")
    with conf.set_temp("retries", 0):
        cut = Mantis.get_cutouts(coord, surveys=("panstarrs",), cache=False)
    assert cut.missing == ("panstarrs",) and MantisFlag.FETCH_FAILED in cut.flags
    reason = {"truncate": "truncated", "html": "HTML", "5xx": "HTTP 503"}[kind]
    assert reason in cut.status["panstarrs"]


def test_html_listing_and_timeouts(server):
    server.fail_next(1, "html", endpoint="ps1filenames")
    with conf.set_temp("retries", 0):
        cuts = Mantis.get_cutouts(grid(2), surveys=("panstarrs",), cache=False)
    assert all("listing" in c.status["panstarrs"] for c in cuts)
    server.timeout_sleep = 2.0
    server.fail_next(1, "timeout", endpoint="fits-cutout")
    with conf.set_temp("timeout", 0.5), conf.set_temp("retries", 1):
        cut = Mantis.get_cutouts(SkyCoord(5, 5, unit="deg"), surveys=("galex",), cache=False)
    assert "galex" in cut


def test_failures_in_the_middle_keep_rows_and_a_rerun_completes_them(server):
    coords = grid(9)
    server.fail_next(2, "5xx", endpoint="fits-cutout")
    with conf.set_temp("retries", 0):
        cuts = Mantis.get_cutouts(coords, surveys=("galex", "unwise"))
    assert len(cuts) == 9
    failed = [i for i, c in enumerate(cuts) if MantisFlag.FETCH_FAILED in c.flags]
    assert 1 <= len(failed) <= 2
    assert all(c.coord.separation(k) < 1e-6 * u.arcsec for c, k in zip(cuts, coords))
    server.reset()
    again = Mantis.get_cutouts(coords, surveys=("galex", "unwise"))
    assert all(c.flags == 0 for c in again)
    assert server.counts["fits-cutout"] == sum(len(cuts[i].missing) for i in failed)


def test_cache_hit_miss_corruption_and_bypass(server, tmp_path):
    coords = grid(4)
    Mantis.get_cutouts(coords)
    first = dict(server.counts)
    assert first["fitscut"] == 20
    server.reset()
    cached = Mantis.get_cutouts(coords)
    assert sum(server.counts.values()) == 0 and Mantis.last_request_count == 0
    assert all(set(c.status.values()) == {"cached"} for c in cached)
    # damage one cache file: it is detected, deleted and fetched again, alone
    cache = CutoutCache()
    galex = SURVEYS["galex"]
    ra, dec = coords[2].ra.deg, coords[2].dec.deg
    path = cache.path("galex", galex.cache_key(ra, dec))
    assert path.exists()
    raw = bytearray(path.read_bytes())
    raw[-100:-90] = b"0123456789"
    path.write_bytes(bytes(raw))
    again = Mantis.get_cutouts(coords)
    assert dict(server.counts) == {"fits-cutout": 1}
    np.testing.assert_array_equal(again[2]["galex"].data, cached[2]["galex"].data)
    # cache=False sends every request and writes nothing
    server.reset()
    with conf.set_temp("cache_dir", str(tmp_path / "elsewhere")):
        Mantis.get_cutouts(coords, cache=False)
    assert server.counts["fitscut"] == 20
    assert not (tmp_path / "elsewhere").exists()


def test_panstarrs_entries_of_the_old_format_are_fetched_again(server, tmp_path,
                                                               monkeypatch):
    """Entries written before the PS1 stacks' legacy PC matrix was kept hold a mirrored
    WCS: they are fetched again (once), while other surveys' old entries are served."""
    coord = SkyCoord(150.0, 2.0, unit="deg")
    with conf.set_temp("cache_dir", str(tmp_path)):
        monkeypatch.setattr(CutoutCache, "FORMAT", 1)  # as an older version wrote them
        Mantis.get_cutouts(coord, progress=False)
        monkeypatch.undo()
        server.reset()
        again = Mantis.get_cutouts(coord, progress=False)
        assert again.status["panstarrs"] == "ok" and server.counts["fitscut"] == 5
        assert again.status["galex"] == again.status["unwise"] == "cached"
        server.reset()
        third = Mantis.get_cutouts(coord, progress=False)
        assert set(third.status.values()) == {"cached"} and sum(server.counts.values()) == 0


def test_cache_files_are_written_atomically(server):
    Mantis.get_cutouts(grid(3))
    root = CutoutCache().directory
    files = list(root.rglob("*"))
    assert any(f.suffix == ".amc" for f in files)
    assert not any(f.suffix == ".tmp" for f in files)


def test_out_of_footprint_is_missing_not_an_error(server):
    server.galex_holes = [(40.0, 10.0, 0.5)]
    server.no_overlap = [("unwise-neo7", 60.0, 10.0, 0.5)]
    coords = SkyCoord([30.0, 40.0, 60.0], [-45.0, 10.0, 10.0], unit="deg")
    south, hole, nowise = Mantis.get_cutouts(coords)
    assert south.missing == ("panstarrs",) and south.status["panstarrs"] == "out of footprint"
    assert south.flags == MantisFlag.PANSTARRS_MISSING | MantisFlag.OUT_OF_FOOTPRINT
    assert hole.missing == ("galex",) and MantisFlag.GALEX_MISSING in hole.flags
    assert nowise.missing == ("unwise",) and MantisFlag.OUT_OF_FOOTPRINT in nowise.flags
    # dec < -30 is never asked for
    listed = [e.npositions for e in server.log if e.endpoint == "ps1filenames"]
    assert listed == [2]
    # PS1 covers every position north of -30: a listing without its rows was cut short,
    # so it is retried, then the position fails, and it is never cached as "not covered"
    server.ps1_min_dec = 0.0
    server.reset()
    with conf.set_temp("retries", 1):
        cut = Mantis.get_cutouts(SkyCoord(70.0, -10.0, unit="deg"), surveys=("panstarrs",))
    assert cut.missing == ("panstarrs",) and MantisFlag.FETCH_FAILED in cut.flags
    assert MantisFlag.OUT_OF_FOOTPRINT not in cut.flags
    assert server.counts["ps1filenames"] == 2 and server.counts["fitscut"] == 0
    server.reset()
    with conf.set_temp("retries", 0):
        Mantis.get_cutouts(SkyCoord(70.0, -10.0, unit="deg"), surveys=("panstarrs",))
    assert server.counts["ps1filenames"] == 1


def test_nan_pixels_are_kept_and_masked(server):
    server.ps1_nan_fraction = 1.0
    cut = Mantis.get_cutouts(SkyCoord(15, 15, unit="deg"), surveys=("panstarrs",))
    img = cut["panstarrs"]
    assert img.mask.any() and not img.mask.all()
    assert np.isnan(img.data[img.mask]).all()
    assert MantisFlag.NAN_PIXELS in cut.flags


def test_asinh_compressed_ps1_pixels_are_linearised(server):
    coord = SkyCoord(25, 25, unit="deg")
    linear = Mantis.get_cutouts(coord, surveys=("panstarrs",), cache=False)["panstarrs"]
    server.ps1_asinh = True
    decomp = Mantis.get_cutouts(coord, surveys=("panstarrs",), cache=False)["panstarrs"]
    scale = np.nanmax(np.abs(linear.data))
    np.testing.assert_allclose(decomp.data, linear.data, atol=1e-3 * scale)


def test_bad_coordinates(server):
    with pytest.raises(ValueError, match="invalid coordinate"):
        Mantis.get_cutouts(SkyCoord(np.nan, 1.0, unit="deg"))
    with pytest.raises(TypeError, match="SkyCoord"):
        Mantis.get_cutouts((150.0, 2.0))
    with pytest.raises(ValueError, match="unknown survey"):
        Mantis.get_cutouts(SkyCoord(1, 1, unit="deg"), surveys=("sdss",))
    coords = SkyCoord([10.0, np.nan, 12.0], [1.0, 2.0, np.nan], unit="deg")
    cuts = Mantis.get_cutouts(coords)
    assert len(cuts) == 3
    assert cuts[0].flags == 0 and set(cuts[0].surveys) == set(ALL)
    for bad in cuts[1:]:
        assert bad.flags == MantisFlag.BAD_COORDINATE and bad.surveys == {}
        assert set(bad.missing) == set(ALL)
    assert server.counts["ps1filenames"] == 1 and server.counts["fitscut"] == 5


def test_other_frames_are_converted_to_icrs(server):
    gal = SkyCoord(l=[96.3, 120.0] * u.deg, b=[60.2, -40.0] * u.deg, frame="galactic")
    cuts = Mantis.get_cutouts(gal, surveys=("galex",))
    for cut, g in zip(cuts, gal):
        assert cut.coord.frame.name == "icrs"
        assert cut.coord.separation(g) < 1e-6 * u.arcsec
    sent = sorted((float(e.params["ra"]), float(e.params["dec"])) for e in server.log)
    icrs = gal.icrs
    expect = sorted(zip(icrs.ra.deg, icrs.dec.deg))
    np.testing.assert_allclose(np.array(sent), np.array(expect), atol=1e-6)


def test_duplicated_positions_are_fetched_once(server):
    coords = SkyCoord([5.0, 6.0, 5.0], [5.0, 6.0, 5.0], unit="deg")
    cuts = Mantis.get_cutouts(coords, surveys=("galex",))
    assert server.counts["fits-cutout"] == 2
    np.testing.assert_array_equal(cuts[0]["galex"].data, cuts[2]["galex"].data)


def test_get_image_list_lists_without_downloading(server):
    coords = SkyCoord([10.0, 11.0, 12.0], [1.0, 2.0, -50.0], unit="deg")
    urls = Mantis.get_image_list(coords)
    assert len(urls) == 2 * 7 + 2  # the southern position has no PS1 image
    assert sum("fitscut.cgi?red=" in u_ for u_ in urls) == 10
    assert sum("layer=galex" in u_ for u_ in urls) == 3
    assert all(u_.startswith(server.url) for u_ in urls)
    assert server.counts["fitscut"] == 0 and server.counts["fits-cutout"] == 0
    assert server.counts["ps1filenames"] == 1


def test_calls_running_at_once_share_the_per_host_limit(server):
    """Two calls in threads (a Dask worker running two partitions, the web service's
    requests) once opened max_connections_per_host each: the limit is the process's."""
    import threading

    server.latency = 0.2
    coords = grid(8)
    errors = []

    def fetch(part):
        try:
            Mantis.get_cutouts(part, surveys=("galex",), cache=False, progress=False)
        except Exception as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    with conf.set_temp("max_connections_per_host", 2):
        server.reset()
        threads = [threading.Thread(target=fetch, args=(coords[i::2],)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert server.counts["fits-cutout"] == 8
    assert server.max_in_flight == 2


def test_connections_per_host_are_bounded(server):
    server.latency = 0.2
    coords = grid(8)
    with conf.set_temp("max_connections_per_host", 2):
        server.reset()
        Mantis.get_cutouts(coords, surveys=("galex",), cache=False)
    assert server.counts["fits-cutout"] == 8
    assert server.max_in_flight == 2  # never more than 2 requests at once, and 2 used
    with conf.set_temp("max_connections_per_host", 8):
        server.reset()
        Mantis.get_cutouts(coords, surveys=("galex",), cache=False)
    assert 2 < server.max_in_flight <= 8


def test_connections_are_reused(server):
    with conf.set_temp("max_connections_per_host", 2):
        Mantis.get_cutouts(grid(20), surveys=("galex",), cache=False)
    assert server.counts["fits-cutout"] == 20
    assert server.connections <= 2


def test_written_cutout_reads_back(server, tmp_path):
    cut = Mantis.get_cutouts(SkyCoord(150.1, 2.2, unit="deg"))
    cut.write(tmp_path / "c.fits")
    back = MultiSurveyCutout.read(tmp_path / "c.fits")
    for name in ALL:
        np.testing.assert_array_equal(back[name].data, cut[name].data)
        assert back[name].unit == cut[name].unit


# --------------------------------------------------------------------- issue 11
def test_cache_never_serves_one_service_as_another(tmp_path):
    """Two servers with different skies: the second is never answered from the first's cache."""
    from astro_mantis.testing import SurveyServer
    from astro_mantis.testing.synthetic import SyntheticSky

    coord = SkyCoord(150.0, 2.0, unit="deg")
    # Both servers run at once so that the OS cannot hand the second the first's port: a
    # service is identified by its URL, and a reused port would rightly be the same service.
    with conf.set_temp("cache_dir", str(tmp_path)), conf.set_temp("backoff", 0.01), \
            SurveyServer(sky=SyntheticSky(seed=1)) as a, \
            SurveyServer(sky=SyntheticSky(seed=2)) as b:
        with a.configure(conf):
            first = Mantis.get_cutouts(coord, progress=False)
            assert Mantis.get_cutouts(coord, progress=False).status["galex"] == "cached"
        with b.configure(conf):
            second = Mantis.get_cutouts(coord, progress=False)
            assert set(second.status.values()) == {"ok"}  # fetched, not "cached"
            assert Mantis.last_request_count > 0
    for s in ("galex", "panstarrs", "unwise"):
        assert not np.array_equal(first.surveys[s].data, second.surveys[s].data)
    # an entry is checked against the service on reading too
    survey = SURVEYS["galex"]
    cache = CutoutCache(tmp_path)
    key = survey.cache_key(150.0, 2.0)
    raw = cache.encode(first.surveys["galex"], source="http://elsewhere|galex")
    assert cache.decode(raw, "http://elsewhere|galex") is not None
    with pytest.raises(ValueError, match="came from 'http://elsewhere|galex'"):
        cache.decode(raw, "http://127.0.0.1:1/viewer|galex")
    cache.path("galex", key).parent.mkdir(parents=True, exist_ok=True)
    cache.path("galex", key).write_bytes(raw)
    assert cache.load("galex", key, source="http://other|galex") is None


def test_positions_as_strings_and_names(server):
    cut = Mantis.get_cutouts("10:00:00 +02:00:00", progress=False)
    assert cut.coord.ra.deg == pytest.approx(150.0) and cut.coord.dec.deg == pytest.approx(2.0)
    with pytest.raises(ValueError, match="(?s)cannot resolve 'M101'.*needs the network"):
        Mantis.get_cutouts("M101", progress=False)


def test_progress_callback_counts_every_position(server):
    coords = SkyCoord([150.0, 150.0, 150.01, np.nan], [2.0, 2.0, 2.0, 2.0], unit="deg")
    ticks = []
    Mantis.get_cutouts(coords, progress=ticks.append)
    assert sum(ticks) == 4  # one per input position: distinct, repeated and invalid


def test_plan_counts_cache_and_requests_without_sending(server):
    coords = grid(6)
    plan = Mantis.plan(coords)
    assert plan.n_unique == 6 and plan.to_fetch == {"galex": 6, "panstarrs": 6, "unwise": 6}
    assert sum(server.counts.values()) == 0  # nothing was sent
    # one loopback host serves both protocols: 1 PS1 listing + 5 bands x 6, and 6 + 6
    assert list(plan.requests.values()) == [1 + 6 * 5 + 6 + 6]
    Mantis.get_cutouts(coords[:4], progress=False)
    again = Mantis.plan(coords)
    assert again.cached == {"galex": 4, "panstarrs": 4, "unwise": 4}
    assert again.to_fetch["galex"] == 2 and again.seconds < plan.seconds
    assert "estimated time" in again.report()


def test_cache_removes_temporary_files_of_killed_writers(tmp_path):
    """A writer killed before its rename leaves a temporary file; an hour later it goes."""
    import os
    import time

    from astro_mantis.atomic import TEMP_SUFFIX

    cache = CutoutCache(tmp_path)
    key = SURVEYS["galex"].cache_key(1.0, 2.0)
    folder = cache.path("galex", key).parent
    folder.mkdir(parents=True)
    old = folder / f".{key}.x{TEMP_SUFFIX}.amc"
    fresh = folder / f".{key}.y{TEMP_SUFFIX}.amc"
    for f in (old, fresh):
        f.write_bytes(b"torn")
    past = time.time() - 2 * CutoutCache.STALE_SECONDS
    os.utime(old, (past, past))
    cache.store("galex", key, None, source="s")
    assert not old.exists() and fresh.exists()  # a live writer's file is left alone
    assert cache.load("galex", key, source="s") is CutoutCache.NOT_COVERED


# --------------------------------------------------------------------- the audit's findings
def test_clear_cache_deletes_only_the_cache_entries(server, tmp_path):
    """conf.cache_dir may hold other files: clear_cache leaves them alone."""
    coords = grid(2)
    Mantis.get_cutouts(coords, surveys=("galex", "panstarrs"), progress=False)
    assert Mantis.cache_location == tmp_path
    (tmp_path / "my_catalog.fits").write_bytes(b"SIMPLE  =                    T")
    (tmp_path / "results" / "ab").mkdir(parents=True)
    (tmp_path / "results" / "z.csv").write_text("z\n0.1\n")
    (tmp_path / "notes.amc").write_text("mine, not a cache entry")
    (tmp_path / "galex" / "README").write_text("mine too")
    n = Mantis.clear_cache()
    assert n == 4  # two positions x two surveys
    assert (tmp_path / "my_catalog.fits").exists() and (tmp_path / "notes.amc").exists()
    assert (tmp_path / "results" / "z.csv").read_text() == "z\n0.1\n"
    assert (tmp_path / "results" / "ab").is_dir() and (tmp_path / "galex" / "README").exists()
    assert not (tmp_path / "panstarrs").exists()  # the cache's own folders go when emptied
    assert [p.name for p in tmp_path.rglob("*.amc")] == ["notes.amc"]
    server.reset()
    again = Mantis.get_cutouts(coords, surveys=("galex", "panstarrs"), progress=False)
    assert all(set(c.status.values()) == {"ok"} for c in again)
    assert Mantis.clear_cache() == 4 and Mantis.clear_cache() == 0


def test_one_survey_may_be_named_as_a_string(server):
    coord = SkyCoord(150.14, 2.42, unit="deg")
    cut = Mantis.get_cutouts(coord, surveys="galex", progress=False)
    assert list(cut.surveys) == ["galex"] and cut.missing == ()
    assert Mantis.plan(coord, surveys="unwise").to_fetch == {"unwise": 1}
    assert len(Mantis.get_image_list(coord, surveys="panstarrs")) == 5
    payload = Mantis.get_cutouts(coord, surveys="unwise", get_query_payload=True)
    assert [r.params["layer"] for r in payload] == ["unwise-neo7"]
    both = Mantis.get_cutouts(coord, surveys="galex,unwise", progress=False)
    assert list(both.surveys) == ["galex", "unwise"]
    with pytest.raises(ValueError, match="unknown survey 'sdss'"):
        Mantis.get_cutouts(coord, surveys="sdss")


def test_a_bad_coordinate_cutout_of_get_cutouts_is_writable(server, tmp_path):
    cuts = Mantis.get_cutouts(SkyCoord([150.14, np.nan], [2.42, np.nan], unit="deg"),
                              surveys=("galex",), progress=False)
    cuts[1].write(tmp_path / "bad.fits")
    back = MultiSurveyCutout.read(tmp_path / "bad.fits")
    assert back.flags == MantisFlag.BAD_COORDINATE and back.status == {"galex": "bad coordinate"}


def test_ps1_cutout_keeps_the_stacks_legacy_pc_matrix(server, tmp_path):
    """fitscut headers (the real ones and the loopback's) give CDELT1 > 0 and the RA sign
    in the legacy ``PC001001 = -1``: the cutout's WCS must be the full header's, RA
    growing to the east (towards -x), not mirrored; and so after a FITS round trip."""
    import io
    import warnings

    import requests
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    coord = SkyCoord(150.1, 2.2, unit="deg")
    url = next(u_ for u_ in Mantis.get_image_list(coord) if "fitscut.cgi?red=" in u_)
    with fits.open(io.BytesIO(requests.get(url, timeout=30).content)) as hdul:
        header = hdul[0].header
    assert header["CDELT1"] > 0 and header["PC001001"] == -1.0 and "PC1_1" not in header
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # "this form ... is deprecated"
        full = WCS(header)
    cut = Mantis.get_cutouts(coord, surveys="panstarrs", cache=False)
    cut.write(tmp_path / "c.fits")
    back = MultiSurveyCutout.read(tmp_path / "c.fits")
    n = SURVEYS["panstarrs"].size - 1
    xs, ys = np.array([0, n, 0, n, n / 2]), np.array([0, 0, n, n, n / 2])
    want = np.array(full.all_pix2world(xs, ys, 0))
    for img in (cut["panstarrs"], back["panstarrs"]):
        got = np.array(img.wcs.all_pix2world(xs, ys, 0))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
        ra_left, ra_right = got[0][0], got[0][1]
        assert ra_left > ra_right  # east is left: RA falls with x
        x, y = img.wcs.world_to_pixel(coord)
        assert abs(x - n / 2) < 0.51 and abs(y - n / 2) < 0.51


def test_a_survey_named_twice_is_fetched_once(server):
    cut = Mantis.get_cutouts(SkyCoord(150.14, 2.42, unit="deg"), surveys=("galex", "GALEX"))
    assert list(cut.status) == ["galex"] and cut.status["galex"] == "ok"
    assert server.counts["fits-cutout"] == 1
    cut = Mantis.get_cutouts(SkyCoord(150.15, 2.42, unit="deg"), surveys="unwise, galex, UNWISE")
    assert list(cut.status) == ["unwise", "galex"] and server.counts["fits-cutout"] == 3


def test_a_band_without_data_is_flagged_and_kept(server):
    """Where GALEX observed NUV only, the viewer sends an all-zero FUV plane beside the
    NUV data; the cutout carried no flag (only an all-zero cube was noticed), so the
    model's zero FUV input went unmarked. It is now flagged BAND_MISSING and kept, from
    the service and from the cache alike."""
    server.galex_band_holes = [("f", 50.0, 20.0, 0.5)]
    coords = SkyCoord([50.0, 70.0], [20.0, 20.0], unit="deg")
    for _ in range(2):  # fetched, then from the cache
        nuv_only, both = Mantis.get_cutouts(coords)
        galex = nuv_only.surveys["galex"]
        fuv, nuv = (galex.data[galex.bands.index(b)] for b in ("FUV", "NUV"))
        assert not fuv.any() and nuv.any()
        assert MantisFlag.BAND_MISSING in nuv_only.flags and "galex" not in nuv_only.missing
        assert MantisFlag.BAND_MISSING not in both.flags
    # an all-zero cube is still a coverage hole, not a missing band
    server.galex_holes = [(70.0, 20.0, 0.5)]
    hole = Mantis.get_cutouts(SkyCoord(70.0, 20.0, unit="deg"), cache=False)
    assert hole.missing == ("galex",) and MantisFlag.BAND_MISSING not in hole.flags
