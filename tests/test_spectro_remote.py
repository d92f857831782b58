"""The real SDSS SkyServer and Science Archive Server. Skipped by default.

Run with ``pytest --remote-data=any tests/test_spectro_remote.py``. These pin the
protocol facts the loopback servers (`astro_mantis.testing.SkyServer`,
`astro_mantis.testing.SASServer`) imitate: the CSV answer, the SQL error page, the
SpecObj columns and specObjID layout, the SAS paths built by sdss-access, the spAll
column names and the spec-lite HDU layout. Nothing large is downloaded: the spAll
file's size is asked for with HEAD and its header read with a Range request.
"""
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table

from astro_mantis import conf
from astro_mantis.spectro import (
    DownloadRequiredError,
    SkyServerError,
    get_spectrum,
    match_spectroscopic,
    query_specobj,
    sdss_specobjid,
    spall_path,
)
from astro_mantis.spectro.spall import _SPALL_NAMES, spall_candidates

# astroquery's documented example: a galaxy with an SDSS-I spectrum (plate 751, MJD
# 52251, fiber 160, z = 0.0456)
COORD = SkyCoord("0h8m05.63s +14d50m23.3s", frame="icrs")
SPECOBJID = 845594848269461504


@pytest.fixture
def private_caches(tmp_path, monkeypatch):
    from astropy.config.paths import temporary_cache_dir_path

    monkeypatch.setenv("SAS_BASE_DIR", str(tmp_path / "sas"))
    with temporary_cache_dir_path(tmp_path, namespace="astro_mantis"), \
            conf.set_temp("retries", 2):
        yield tmp_path


def _header_at(raw, start):
    """The FITS header starting at byte ``start`` and where the next block after it starts."""
    pos = start
    while raw[pos:pos + 8] != b"END     ":
        pos += 80
    end = pos + 80
    return fits.Header.fromstring(raw[start:end].decode("ascii")), 2880 * -(-end // 2880)


@pytest.mark.remote_data
def test_real_skyserver_match(private_caches):
    t = Table({"ra": [COORD.ra.deg, 1.0], "dec": [COORD.dec.deg, -80.0]})
    match_spectroscopic(t, catalog="sdss", radius=2 * u.arcsec, cache=False)
    assert int(t["spec_id"][0]) == SPECOBJID
    assert int(sdss_specobjid(t["spec_plate"][0], t["spec_mjd"][0], t["spec_fiberid"][0],
                              t["spec_run2d"][0])) == SPECOBJID
    assert t["z_spec"][0] == pytest.approx(0.0456, abs=5e-4)
    assert t["spec_class"][0] == "GALAXY" and t["spec_flags"][0] == 0
    assert t["z_spec"].mask[1]  # no SDSS spectrum near the south celestial pole


@pytest.mark.remote_data
def test_real_skyserver_csv_and_error_page():
    from astroquery.sdss import SDSSClass

    resp = SDSSClass().query_sql_async("SELECT TOP 2 specObjID, z FROM SpecObj",
                                       data_release=17, cache=False)
    assert resp.status_code == 200 and resp.text.startswith("#Table1")
    assert resp.text.splitlines()[1].lower() == "specobjid,z"
    with pytest.raises(SkyServerError, match="noSuchColumn"):
        query_specobj(COORD, quality="noSuchColumn == 1", cache=False)


@pytest.mark.remote_data
def test_real_sas_spall_is_located_and_not_downloaded(private_caches):
    import requests

    first = spall_candidates(17)[0]
    assert first["url"].endswith("/sas/dr17/eboss/spectro/redux/v5_13_2/"
                                 "spAll-lite-v5_13_2.fits")
    head = requests.head(first["url"], timeout=60, allow_redirects=True)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) > 100e6
    with pytest.raises(DownloadRequiredError, match="GB"):
        spall_path(17)
    # the columns read_spall uses are there: read the table header only
    part = requests.get(first["url"], headers={"Range": "bytes=0-172799"}, timeout=60)
    assert part.status_code == 206
    primary, end = _header_at(part.content, 0)
    assert primary.get("NAXIS", 0) == 0  # the table follows the primary header
    table_header, _ = _header_at(part.content, end)
    names = {table_header[f"TTYPE{i}"].upper() for i in range(1, table_header["TFIELDS"] + 1)}
    for key in ("ra", "dec", "z", "zErr", "zWarning", "class", "plate", "mjd", "fiberID"):
        assert names & set(_SPALL_NAMES[key]), key
    assert "SPECPRIMARY" in names


@pytest.mark.remote_data
def test_real_spectrum_layout(private_caches):
    row = {"plate": 751, "mjd": 52251, "fiberID": 160, "run2d": "26", "z_spec": 0.0456}
    spec = get_spectrum(row, data_release=17)
    wave = spec.spectral_axis.to_value(u.AA)
    assert 3700 < wave.min() < 3900 and 9000 < wave.max() < 9300
    assert len(wave) > 3500 and np.isfinite(spec.flux.value).mean() > 0.99
    with fits.open(spec.meta["path"]) as hdul:
        assert [h.name for h in hdul][:4] == ["PRIMARY", "COADD", "SPALL", "SPZLINE"]
        assert hdul[1].columns.names[:3] == ["flux", "loglam", "ivar"]
        assert hdul[0].header["TELESCOP"] == "SDSS 2.5-M"
