"""The spAll path: sdss-access paths, SAS_BASE_DIR, one explicit download, fast reading.

All over real HTTP to the loopback SAS (`astro_mantis.testing.SASServer`).
"""
import logging
import os
import tracemalloc

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from astro_mantis import conf
from astro_mantis.exceptions import FetchError
from astro_mantis.simulate import SampleSky
from astro_mantis.spectro import (
    CatalogFileError,
    DownloadRequiredError,
    SpecFlag,
    conf as sconf,
    match_spectroscopic,
    read_spall,
    spall_path,
)
from astro_mantis.spectro.spall import check_fits_complete, spall_candidates
from astro_mantis.testing import SASServer, SkyServer, make_specobj, write_spall


@pytest.fixture(scope="module")
def catalog():
    return SampleSky().catalog


@pytest.fixture(scope="module")
def specobj(catalog):
    return make_specobj(catalog, seed=11)


@pytest.fixture
def download_cache(tmp_path):
    """A private astro_mantis download cache (astropy's cache is never touched)."""
    from astropy.config.paths import temporary_cache_dir_path

    with temporary_cache_dir_path(tmp_path, namespace="astro_mantis") as path:
        yield path


@pytest.fixture
def sas_dir(tmp_path, monkeypatch):
    path = tmp_path / "sas"
    monkeypatch.setenv("SAS_BASE_DIR", str(path))
    return path


@pytest.fixture
def sas(specobj, sas_dir, download_cache):
    with SASServer(specobj) as srv, srv.configure(), conf.set_temp("backoff", 0.01), \
            conf.set_temp("timeout", 5.0):
        yield srv


def _targets(catalog):
    return Table({"ra": np.asarray(catalog["ra"], float),
                  "dec": np.asarray(catalog["dec"], float)})


def test_paths_come_from_sdss_access(sas, sas_dir):
    first, second = spall_candidates(17)
    assert first["name"] == "spAll-lite-v5_13_2.fits" and second["name"] == "spAll-v5_13_2.fits"
    assert first["url"] == (f"{sas.url}/sas/dr17/eboss/spectro/redux/v5_13_2/"
                            "spAll-lite-v5_13_2.fits")
    assert first["local"] == str(sas_dir / "dr17/eboss/spectro/redux/v5_13_2/"
                                           "spAll-lite-v5_13_2.fits")
    with pytest.raises(ValueError, match="no default spAll reduction for DR18"):
        spall_candidates(18)


def test_no_download_without_being_asked(sas, download_cache):
    with pytest.raises(DownloadRequiredError) as info:
        spall_path()
    text = str(info.value)
    assert "spAll-lite-v5_13_2.fits" in text and "kB" in text and "download=True" in text
    assert sas.url in text
    assert [e.method for e in sas.log] == ["HEAD"]  # asked for the size only
    assert not list(download_cache.rglob("contents"))


def test_download_once_with_a_warning_then_cached(sas, caplog, catalog):
    with caplog.at_level(logging.WARNING, "astro_mantis"):
        path = spall_path(download=True, progress=False)
    assert "downloading the DR17 spAll file spAll-lite-v5_13_2.fits" in caplog.text
    check_fits_complete(path)
    n = len(sas.log)
    assert [e.method for e in sas.log] == ["HEAD", "GET"]
    assert spall_path() == path  # cached: no request, no download flag needed
    t = _targets(catalog)
    match_spectroscopic(t, catalog="sdss-spall")
    assert len(sas.log) == n
    assert t.meta["spec_match"]["source"] == "SDSS DR17 spAll-lite-v5_13_2.fits"


def test_full_file_when_there_is_no_lite_one(specobj, sas_dir, download_cache):
    with SASServer(specobj, spall_products=("full",)) as srv, srv.configure():
        path = spall_path(download=True, progress=False)
        assert [(e.method, e.params["lite"]) for e in srv.log] == [
            ("HEAD", True), ("HEAD", False), ("GET", False)]
    with fits.open(path) as hdul:
        assert "SPECTROFLUX" in hdul[1].columns.names


def test_local_sas_copy_needs_no_network(specobj, sas_dir, catalog):
    local = sas_dir / "dr17/eboss/spectro/redux/v5_13_2/spAll-v5_13_2.fits"
    local.parent.mkdir(parents=True)
    write_spall(specobj[np.char.startswith(np.asarray(specobj["run2d"]).astype(str), "v")],
                local, lite=False)
    with SASServer(specobj) as srv, srv.configure():
        assert spall_path() == str(local)
        t = _targets(catalog)
        match_spectroscopic(t, catalog="sdss-spall")
        assert len(srv.log) == 0
    assert t.meta["spec_match"]["n_matched"] > 50


def test_truncated_local_file_is_a_clear_error(specobj, sas_dir, catalog):
    local = sas_dir / "dr17/eboss/spectro/redux/v5_13_2/spAll-lite-v5_13_2.fits"
    local.parent.mkdir(parents=True)
    write_spall(specobj, local)
    data = local.read_bytes()
    local.write_bytes(data[:len(data) - 3000])
    t = _targets(catalog)
    with pytest.raises(CatalogFileError, match="truncated"):
        match_spectroscopic(t, catalog="sdss-spall")
    assert "z_spec" not in t.colnames  # nothing half-written
    local.write_bytes(b"<html>not a FITS file</html>")
    with pytest.raises(CatalogFileError, match="not a FITS file"):
        read_spall(local)
    local.write_bytes(b"<html>" + b" " * 2874)  # the size of a FITS block, still no FITS
    with pytest.raises(CatalogFileError, match="not a readable FITS file"):
        read_spall(local)


@pytest.mark.parametrize("kind", ["truncate", "short", "5xx", "html"])
def test_broken_downloads_are_retried(sas, kind):
    sas.fail_next(1, kind, endpoint="spall")
    path = spall_path(download=True, progress=False)
    check_fits_complete(path)
    assert [e.method for e in sas.log] == ["HEAD", "GET", "GET"]  # the bad GET, then a good one
    assert len(read_spall(path)) > 50


def test_show_progress_is_a_deprecated_name_of_progress(sas):
    from astropy.utils.exceptions import AstropyDeprecationWarning

    with pytest.warns(AstropyDeprecationWarning, match=r"spall_path\(show_progress=...\) is "
                      r"deprecated; use progress="):
        path = spall_path(download=True, show_progress=False)
    assert path == spall_path(download=True, progress=False)


def test_unreachable_sas_fails_after_retries(sas):
    sas.error_rate = 1.0
    with conf.set_temp("retries", 1), pytest.raises(FetchError, match="HTTP 503"):
        spall_path(download=True, progress=False)
    assert [e.method for e in sas.log] == ["HEAD", "GET", "GET"]


def test_missing_everywhere_is_file_not_found(specobj, sas_dir, download_cache):
    with SASServer(specobj, spall_products=()) as srv, srv.configure(), \
            pytest.raises(FileNotFoundError, match="spAll-lite-v5_13_2.fits.*404"):
        spall_path(download=True)


def test_spall_and_skyserver_agree(sas, specobj, catalog):
    """The two SDSS paths give the same spectra (spAll holds only its reductions)."""
    with SkyServer(specobj) as sky, sky.configure(), \
            sconf.set_temp("skyserver_min_interval", 0.0):
        via_sql = match_spectroscopic(_targets(catalog), catalog="sdss", cache=False,
                                      progress=False)
    both = match_spectroscopic(_targets(catalog), catalog="sdss-spall", download=True,
                               run2d=["v5_13_2", "26"])
    boss = match_spectroscopic(_targets(catalog), catalog="sdss-spall", download=True)
    ids_sql = np.ma.filled(via_sql["spec_id"], 0)
    assert (np.ma.filled(both["spec_id"], 0) == ids_sql).all()
    np.testing.assert_allclose(np.ma.filled(both["z_spec"], -1), np.ma.filled(
        via_sql["z_spec"], -1), rtol=1e-6)  # spAll stores Z as float32
    legacy = np.ma.filled(via_sql["spec_run2d"], "") == "26"
    assert legacy.sum() > 10
    assert boss["z_spec"].mask[legacy].all()
    assert (np.ma.filled(boss["spec_id"], 0)[~legacy] == ids_sql[~legacy]).all()
    assert boss.meta["spec_match"]["quality"].endswith("and specPrimary == 1")


def test_all_spectra_with_quality_none_shows_repeats_as_ambiguous(sas, specobj, catalog):
    path = spall_path(download=True, progress=False)
    t = match_spectroscopic(_targets(catalog), catalog="sdss-spall", spall=path,
                            quality=None, radius=1 * u.arcsec)
    repeats = specobj[(specobj["sciencePrimary"] == 0)
                      & np.char.startswith(np.asarray(specobj["run2d"]).astype(str), "v")]
    boss_primary = specobj[(specobj["sciencePrimary"] == 1)
                           & np.char.startswith(np.asarray(specobj["run2d"]).astype(str), "v")]
    both = set(repeats["mock_id"].tolist()) & set(boss_primary["mock_id"].tolist())
    ambiguous = {int(i) for i, f in zip(catalog["id"], t["spec_flags"])
                 if f & SpecFlag.AMBIGUOUS}
    assert ambiguous == both and len(both) > 0
    assert t.meta["spec_match"]["n_ambiguous"] == len(both)


def test_read_spall_reads_only_the_columns_it_needs(tmp_path):
    n = 8000
    rng = np.random.default_rng(0)
    spec = Table({"specObjID": np.zeros(n, np.uint64), "ra": rng.uniform(0, 10, n),
                  "dec": rng.uniform(0, 10, n), "z": rng.uniform(0, 1, n),
                  "zErr": np.full(n, 1e-4), "zWarning": rng.integers(0, 2, n) * 4,
                  "class": np.full(n, "GALAXY"), "plate": np.full(n, 3586),
                  "mjd": np.full(n, 55181), "fiberID": np.arange(n) % 1000 + 1,
                  "run2d": np.full(n, "v5_13_2")})
    write_spall(spec, tmp_path / "spAll.fits", lite=True)
    with fits.open(tmp_path / "spAll.fits") as hdul:
        cols = hdul[1].columns.columns + [fits.Column("BIG", "250D",
                                                      array=np.zeros((n, 250)))]
        fits.BinTableHDU.from_columns(cols).writeto(tmp_path / "big.fits")
    big = n * 250 * 8  # 16 MB that read_spall must not load
    tracemalloc.start()
    try:
        out = read_spall(tmp_path / "big.fits")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < big / 4
    assert len(out) == int((spec["zWarning"] == 0).sum())
    assert out.meta["rows_in_file"] == n and out.colnames[0] == "specObjID"


def test_missing_spall_column_is_named(tmp_path):
    fits.BinTableHDU.from_columns([fits.Column("Z", "E", array=np.zeros(3))]).writeto(
        tmp_path / "x.fits")
    with pytest.raises(KeyError, match="PLUG_RA / RA / FIBER_RA.*Z"):
        read_spall(tmp_path / "x.fits")
    assert os.path.exists(tmp_path / "x.fits")


def test_no_default_reduction_message_names_the_option(sas):
    with pytest.raises(ValueError, match=r"pass run2d= \(astro-mantis match --run2d\)"):
        spall_candidates(18)
