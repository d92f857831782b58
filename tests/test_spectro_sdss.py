"""SDSS SkyServer path of match_spectroscopic, over real HTTP to the loopback SkyServer."""
import logging
import math
import urllib.parse

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from astro_mantis import conf
from astro_mantis.simulate import SampleSky
from astro_mantis.spectro import (
    SkyServerError,
    SpecFlag,
    conf as sconf,
    match_spectroscopic,
    query_specobj,
    sdss_specobjid,
)
from astro_mantis.spectro.sdss import parse_specobj_csv, run2d_code, sky_boxes
from astro_mantis.testing import SkyServer, make_specobj


@pytest.fixture(scope="module")
def catalog():
    return SampleSky().catalog


@pytest.fixture(scope="module")
def specobj(catalog):
    return make_specobj(catalog, seed=7)


@pytest.fixture
def skyserver(specobj):
    with SkyServer(specobj) as srv, srv.configure(), \
            sconf.set_temp("skyserver_min_interval", 0.0), conf.set_temp("backoff", 0.01), \
            conf.set_temp("timeout", 5.0):
        yield srv


def _targets(catalog):
    """The sample galaxies, plus a NaN position and an empty patch of sky, in that order."""
    t = Table({"name": [f"g{i}" for i in catalog["id"]],
               "ra": np.asarray(catalog["ra"], float), "dec": np.asarray(catalog["dec"], float)})
    t.add_row({"name": "nan", "ra": np.nan, "dec": 1.0})
    t.add_row({"name": "empty", "ra": 20.0, "dec": 60.0})
    return t


def _truth(catalog, specobj, primary_only=True):
    """catalog id -> the spectrum row (index into specobj) that should match, or None."""
    ok = (np.asarray(specobj["zWarning"]) == 0) & (np.asarray(specobj["class"]) == "GALAXY")
    if primary_only:
        ok &= np.asarray(specobj["sciencePrimary"]) == 1
    best = {}
    for k in np.flatnonzero(ok):
        best.setdefault(int(specobj["mock_id"][k]), int(k))
    return {int(i): best.get(int(i)) for i in catalog["id"]}


# ------------------------------------------------------------------------- identifiers
def test_specobjid_is_skyservers():
    # two specObjIDs as SkyServer lists them (astroquery's documentation and test data)
    assert int(sdss_specobjid(751, 52251, 160, "26")) == 845594848269461504
    assert int(sdss_specobjid(2340, 53733, 60, "26")) == 2634622337315530752
    ids = sdss_specobjid([3586, 10000], [55181, 58000], [1, 1000], ["v5_13_2", "v5_7_0"])
    assert ids.dtype == np.uint64
    plate = (ids >> np.uint64(50)).tolist()
    fiber = ((ids >> np.uint64(38)) & np.uint64(0xFFF)).tolist()
    mjd = (((ids >> np.uint64(24)) & np.uint64(0x3FFF)) + np.uint64(50000)).tolist()
    code = ((ids >> np.uint64(10)) & np.uint64(0x3FFF)).tolist()
    assert (plate, fiber, mjd, code) == ([3586, 10000], [1, 1000], [55181, 58000], [1302, 700])


@pytest.mark.parametrize("run2d, code", [("26", 26), ("103", 103), ("v5_13_2", 1302),
                                         ("v5_4_45", 445), ("v6_0_4", 10004)])
def test_run2d_code(run2d, code):
    assert run2d_code(run2d) == code


def test_run2d_code_rejects_unknown_forms():
    with pytest.raises(ValueError, match="unknown SDSS run2d"):
        run2d_code("dr17")


# ------------------------------------------------------------------------- sky boxes
def _inside(box, ra, dec):
    a0, a1, d0, d1, _ = box
    return (d0 <= dec <= d1) and (a0 <= ra % 360.0 <= a1)


def test_sky_boxes_cover_every_match_circle():
    rng = np.random.default_rng(3)
    ra = np.concatenate([rng.uniform(0, 360, 300), [0.0001, 359.9999, 180.0, 10.0, 45.0],
                         rng.uniform(359.7, 360.3, 20) % 360.0])
    dec = np.concatenate([rng.uniform(-89, 89, 300), [0.0, 0.0, 89.9999, -89.9999, 89.0],
                          rng.uniform(-1, 1, 20)])
    radius = 5 * u.arcsec
    boxes = sky_boxes(ra, dec, radius)
    r = radius.to_value(u.deg)
    for i in range(ra.size):
        mine = [b for b in boxes if i in set(b[4].tolist())]
        assert mine, f"position {i} is in no box"
        for ang in np.linspace(0, 2 * np.pi, 16, endpoint=False):  # points on the circle
            d = float(np.clip(dec[i] + r * math.sin(ang), -90, 90))
            cosd = max(math.cos(math.radians(d)), 1e-9)
            a = (ra[i] + r * math.cos(ang) / cosd) % 360.0
            assert any(_inside(b, a, d) for b in mine), (i, a, d)
    assert all(0.0 <= b[0] <= b[1] <= 360.0 for b in boxes)


# ------------------------------------------------------------------------- matching
def test_match_sdss_end_to_end(skyserver, catalog, specobj):
    table = _targets(catalog)
    out = match_spectroscopic(table, catalog="sdss", radius=1 * u.arcsec, cache=False,
                              progress=False)
    assert out is table and len(table) == len(catalog) + 2
    assert table["name"][-2:].tolist() == ["nan", "empty"]  # order kept
    truth = _truth(catalog, specobj)
    flags = np.asarray(table["spec_flags"])
    for i, gid in enumerate(catalog["id"]):
        k = truth[int(gid)]
        if k is None:
            assert table["z_spec"].mask[i] and flags[i] & SpecFlag.NO_MATCH
            continue
        assert not table["z_spec"].mask[i]
        assert table["spec_id"][i] == specobj["specObjID"][k]
        assert table["z_spec"][i] == pytest.approx(specobj["z"][k], abs=1e-12)
        assert table["z_spec_err"][i] == pytest.approx(specobj["zErr"][k])
        assert table["spec_class"][i] == "GALAXY"
        assert (table["spec_plate"][i], table["spec_mjd"][i], table["spec_fiberid"][i],
                table["spec_run2d"][i]) == (specobj["plate"][k], specobj["mjd"][k],
                                            specobj["fiberID"][k], specobj["run2d"][k])
        assert 0 <= table["spec_sep"][i] < 1.0 and flags[i] == 0
    assert flags[-2] == SpecFlag.BAD_COORDINATE and table["z_spec"].mask[-2]
    assert flags[-1] == SpecFlag.NO_MATCH
    assert table["spec_sep"].unit == u.arcsec
    assert set(table["spec_source"][~table["spec_source"].mask]) == {
        "SDSS DR17 SpecObj (SkyServer)"}
    summary = table.meta["spec_match"]
    n_true = sum(v is not None for v in truth.values())
    assert summary["n_matched"] == n_true > 200
    assert summary["n_no_match"] == len(catalog) - n_true + 1
    assert summary["n_bad_coordinate"] == 1 and summary["n_query_failed"] == 0
    assert summary["quality"] == "zWarning == 0 and class == 'GALAXY'"
    # what went over the wire: SQL on SpecObj with the cut, short enough query strings
    for entry in skyserver.log:
        sql = entry.params["cmd"]
        assert "FROM SpecObj WHERE" in sql and "(zWarning = 0 AND class = 'GALAXY')" in sql
        assert sql.lstrip().startswith(f"SELECT TOP {sconf.skyserver_max_rows} ")
        assert entry.params["format"] == "csv" and entry.params["searchtool"] == "SQL"
        assert len(urllib.parse.urlencode(entry.params)) <= sconf.skyserver_max_query_length
    assert summary["queries"] == len(skyserver.log) == summary["attempts"]


def test_query_length_limit_gives_more_smaller_queries(skyserver, catalog):
    ref = query_specobj(SkyCoord(catalog["ra"], catalog["dec"]), cache=False, progress=False)
    skyserver.reset()
    skyserver.max_query_length = 700
    with sconf.set_temp("skyserver_max_query_length", 700):
        small = query_specobj(SkyCoord(catalog["ra"], catalog["dec"]), cache=False,
                              progress=False)
    assert small.meta["queries"] > ref.meta["queries"]
    assert sorted(small["specObjID"].tolist()) == sorted(ref["specObjID"].tolist())
    assert all(len(urllib.parse.urlencode(e.params)) <= 700 for e in skyserver.log)


def test_query_length_limit_too_small_is_explained(skyserver, catalog):
    with sconf.set_temp("skyserver_max_query_length", 200), \
            pytest.raises(ValueError, match="does not fit in 200 characters"):
        query_specobj(SkyCoord(catalog["ra"][:3], catalog["dec"][:3]), cache=False)


def test_row_limit_splits_dense_fields_and_loses_nothing(catalog):
    # a dense field: 60 galaxies within 2 arcmin, each with a spectrum
    rng = np.random.default_rng(5)
    n = 60
    field = Table({"id": np.arange(n), "ra": 150.0 + rng.uniform(0, 0.03, n),
                   "dec": 2.0 + rng.uniform(0, 0.03, n), "z": rng.uniform(0.05, 0.9, n)})
    spec = make_specobj(field, seed=1, completeness=1.0, bad_fraction=0.0,
                        duplicate_fraction=0.0, star_fraction=0.0, qso_fraction=0.0)
    coords = SkyCoord(field["ra"], field["dec"], unit="deg")
    with SkyServer(spec, row_limit=7) as srv, srv.configure(), \
            sconf.set_temp("skyserver_min_interval", 0.0), \
            sconf.set_temp("skyserver_max_rows", 7):
        got = query_specobj(coords, cache=False, progress=False)
        assert got.meta["splits"] > 0
        assert any(e.nrows == 7 for e in srv.log)  # some answers were cut short ...
    # ... and were asked again in pieces: nothing lost, nothing twice
    assert sorted(got["specObjID"].tolist()) == sorted(spec["specObjID"].tolist())
    t = Table({"ra": field["ra"], "dec": field["dec"]})
    with SkyServer(spec, row_limit=7) as srv, srv.configure(), \
            sconf.set_temp("skyserver_min_interval", 0.0), \
            sconf.set_temp("skyserver_max_rows", 7):
        match_spectroscopic(t, catalog="sdss", cache=False, progress=False)
    assert t.meta["spec_match"]["n_matched"] == n


def test_sql_error_page_raises_at_once(skyserver, catalog):
    t = _targets(catalog)[:5]
    with pytest.raises(SkyServerError, match="Invalid column name 'noSuchColumn'"):
        match_spectroscopic(t, catalog="sdss", quality="noSuchColumn == 1", cache=False)
    assert skyserver.counts["sql"] == 1  # not retried: it would fail again
    assert "z_spec" not in t.colnames


def test_empty_answers_leave_rows_unmatched(skyserver):
    t = Table({"ra": [10.0, 11.0, 300.0], "dec": [-5.0, -5.0, 70.0]})
    match_spectroscopic(t, catalog="sdss", cache=False, progress=False)
    assert t["z_spec"].mask.all() and (t["spec_flags"] == SpecFlag.NO_MATCH).all()
    assert skyserver.counts["sql"] >= 1
    assert len(parse_specobj_csv("#Table1\n" + ",".join(
        ["specObjID", "ra", "dec", "z", "zErr", "zWarning", "class", "plate", "mjd", "fiberID",
         "run2d"]) + "\n")) == 0


@pytest.mark.parametrize("kind", ["5xx", "html", "truncate", "busy", "timeout"])
def test_transient_faults_are_retried(skyserver, catalog, kind):
    coords = SkyCoord(catalog["ra"][:40], catalog["dec"][:40], unit="deg")
    ref = query_specobj(coords, cache=False, progress=False)
    nref = skyserver.counts["sql"]
    skyserver.reset()
    skyserver.timeout_sleep = 2.0
    skyserver.fail_next(2, kind)
    with conf.set_temp("timeout", 0.5):
        got = query_specobj(coords, cache=False, progress=False)
    assert sorted(got["specObjID"].tolist()) == sorted(ref["specObjID"].tolist())
    assert got.meta["failed"] == []
    assert skyserver.counts["sql"] == nref + 2


def test_persistent_failure_flags_rows_and_keeps_them(skyserver, catalog, caplog):
    skyserver.error_rate = 1.0
    t = _targets(catalog)[:30]
    with conf.set_temp("retries", 1), caplog.at_level(logging.WARNING, "astro_mantis"):
        match_spectroscopic(t, catalog="sdss", cache=False, progress=False)
    assert len(t) == 30 and t["z_spec"].mask.all()
    # not NO_MATCH: a row whose query failed may have a spectrum; counted once
    assert all(f == SpecFlag.QUERY_FAILED for f in t["spec_flags"])
    assert t.meta["spec_match"]["n_query_failed"] == 30
    assert t.meta["spec_match"]["n_no_match"] == 0
    assert "SkyServer query" in caplog.text and "HTTP 503" in caplog.text


def test_partial_failure_counts_each_unmatched_row_once(skyserver, catalog):
    """A row whose query failed is QUERY_FAILED, not NO_MATCH: every row is matched or
    has exactly one reason not to be, and the summary's counts add up."""
    t = _targets(catalog)
    skyserver.fail_next(1, "5xx")  # the first query fails, with no retry; the others answer
    with conf.set_temp("retries", 0):
        match_spectroscopic(t, catalog="sdss", cache=False, progress=False)
    flags = np.asarray(t["spec_flags"])
    matched = ~np.asarray(t["z_spec"].mask)
    failed = (flags & SpecFlag.QUERY_FAILED) != 0
    no_match = (flags & SpecFlag.NO_MATCH) != 0
    bad = (flags & SpecFlag.BAD_COORDINATE) != 0
    assert failed.any() and no_match.any() and matched.any() and bad.sum() == 1
    assert not (no_match & failed).any()
    unmatched_failed = failed & ~matched
    assert (matched.astype(int) + no_match + bad + unmatched_failed == 1).all()
    s = t.meta["spec_match"]
    assert s["n_query_failed"] == int(failed.sum()) and s["n_no_match"] == int(no_match.sum())
    assert (s["n_matched"] + s["n_no_match"] + s["n_bad_coordinate"]
            + int(unmatched_failed.sum())) == s["n_rows"] == len(t)


def test_bad_answers_are_not_left_in_astroquerys_cache(skyserver, catalog, tmp_path):
    from astropy.config.paths import temporary_cache_dir_path

    coords = SkyCoord(catalog["ra"][:20], catalog["dec"][:20], unit="deg")
    with temporary_cache_dir_path(tmp_path, namespace="astropy"):
        skyserver.fail_next(1, "html")
        first = query_specobj(coords, cache=True, progress=False)
        n_first = skyserver.counts["sql"]
        again = query_specobj(coords, cache=True, progress=False)
        assert skyserver.counts["sql"] == n_first  # all from the cache, and all good
    assert n_first == first.meta["queries"] + 1
    assert sorted(again["specObjID"].tolist()) == sorted(first["specObjID"].tolist())
    assert len(first) > 10


def test_queries_are_paced(skyserver, catalog):
    import time

    coords = SkyCoord(catalog["ra"], catalog["dec"], unit="deg")
    with sconf.set_temp("skyserver_min_interval", 0.05):
        t0 = time.perf_counter()
        res = query_specobj(coords, cache=False, progress=False)
        elapsed = time.perf_counter() - t0
    assert res.meta["queries"] >= 5
    assert elapsed >= 0.05 * (res.meta["queries"] - 1)


def test_old_data_release_refused(catalog):
    with pytest.raises(ValueError, match="data release 8 or later"):
        query_specobj(SkyCoord(1.0, 2.0, unit="deg"), data_release=7)


def test_radius_without_unit_refused():
    with pytest.raises(TypeError, match="angle with a unit"):
        query_specobj(SkyCoord(1.0, 2.0, unit="deg"), radius=1.0)


# ------------------------------------------------------------------------- the server
def test_loopback_skyserver_speaks_astroquerys_protocol(skyserver, specobj):
    from astroquery.sdss import SDSS

    res = SDSS.query_sql("SELECT TOP 3 specObjID, z, class FROM SpecObj "
                         "WHERE class = 'galaxy' ORDER BY z DESC", cache=False)
    primary = specobj[(specobj["sciencePrimary"] == 1) & (specobj["class"] == "GALAXY")]
    assert res["z"].tolist() == pytest.approx(sorted(primary["z"], reverse=True)[:3])
    assert res["specObjID"].dtype == np.uint64
    # DR10 has its own page; old releases too
    res10 = SDSS.query_sql("SELECT TOP 1 z FROM SpecObjAll", data_release=10, cache=False)
    assert len(res10) == 1
    assert skyserver.log[-1].params.get("searchtool") is None


def test_loopback_skyserver_error_forms(skyserver):
    import requests

    url = f"{skyserver.url}/dr17/en/tools/search/x_results.aspx"
    ok = {"format": "csv", "searchtool": "SQL"}
    r = requests.get(url, params=dict(ok, cmd="SELECT nope FROM SpecObj"), timeout=5)
    assert r.status_code == 200 and "<title>Skyserver Error</title>" in r.text
    assert "Invalid column name 'nope'." in r.text
    r = requests.get(url, params=dict(ok, cmd="SELECT z FROM NoTable"), timeout=5)
    assert "Invalid object name 'NoTable'." in r.text
    r = requests.get(url, params=dict(ok, cmd="SELECT z FROM SpecObj WHERE"), timeout=5)
    assert "Incorrect syntax near the end of the query." in r.text
    r = requests.get(url, params=dict(ok, cmd="SELECT z FROM SpecObj WHERE " + "z > 0 OR " * 900
                                      + "z > 0"), timeout=5)
    assert r.status_code == 404 and "query string is too long" in r.text
    assert requests.get(f"{skyserver.url}/dr99/en/tools/search/x_results.aspx",
                        timeout=5).status_code == 404
    r = requests.get(url, params=dict(ok, cmd="SELECT TOP 5 z FROM SpecObj"), timeout=5)
    lines = r.text.splitlines()
    assert lines[:2] == ["#Table1", "z"] and len(lines) == 7
    skyserver.row_limit = 2
    r = requests.get(url, params=dict(ok, cmd="SELECT TOP 5 z FROM SpecObj"), timeout=5)
    assert len(r.text.splitlines()) == 4  # silently cut at the row limit, as SkyServer does


def test_specobj_sql_selects_the_box_with_the_quality_cut(catalog, specobj):
    """The SQL of one box, run on the SkyServer's own SQL engine, returns exactly the
    spectra inside the box that pass the cut, at most ``top`` of them."""
    from astro_mantis.spectro.sdss import specobj_sql
    from astro_mantis.testing.skyserver import execute_sql

    ra, dec = np.asarray(specobj["ra"], float), np.asarray(specobj["dec"], float)
    box = (float(np.percentile(ra, 20)), float(np.percentile(ra, 80)),
           float(np.percentile(dec, 20)), float(np.percentile(dec, 80)))
    sql = specobj_sql([box], quality="zWarning == 0", top=10_000)
    assert sql.upper().startswith("SELECT TOP 10000 ")
    names, columns = execute_sql(sql, {"specobj": specobj})
    got = dict(zip(names, columns))
    key = next(n for n in names if n.lower() == "specobjid")
    inside = ((ra >= box[0]) & (ra <= box[1]) & (dec >= box[2]) & (dec <= box[3])
              & (np.asarray(specobj["zWarning"]) == 0))
    assert inside.sum() > 0
    assert sorted(np.asarray(got[key]).tolist()) == sorted(
        np.asarray(specobj["specObjID"])[inside].tolist())
    capped = execute_sql(specobj_sql([box], quality=None, top=3), {"specobj": specobj})
    assert len(capped[1][0]) == 3
    with sconf.set_temp("skyserver_max_rows", 5):
        assert "TOP 5 " in specobj_sql([box]).upper()
