"""get_spectrum / plot_spectrum over real HTTP to the loopback SAS."""
import io

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table
from matplotlib.figure import Figure

from astro_mantis import conf
from astro_mantis.pdf import Z_CENTERS, RedshiftPDF
from astro_mantis.spectro import (
    SPECTRAL_LINES,
    CatalogFileError,
    get_spectrum,
    match_spectroscopic,
    plot_spectrum,
    spectrum_path,
)
from astro_mantis.spectro.spectra import spectrum_ids
from astro_mantis.testing import SASServer, make_specobj, spec_lite_hdulist


@pytest.fixture(scope="module")
def specobj():
    rng = np.random.default_rng(2)
    n = 12
    field = Table({"id": np.arange(n), "ra": 185 + rng.uniform(0, 1, n),
                   "dec": 25 + rng.uniform(0, 1, n), "z": rng.uniform(0.05, 0.3, n)})
    return make_specobj(field, seed=4, completeness=1.0, bad_fraction=0.0,
                        duplicate_fraction=0.0, star_fraction=0.0, qso_fraction=0.0,
                        legacy_fraction=0.5)


@pytest.fixture
def sas(specobj, tmp_path, monkeypatch):
    from astropy.config.paths import temporary_cache_dir_path

    monkeypatch.setenv("SAS_BASE_DIR", str(tmp_path / "sas"))
    with temporary_cache_dir_path(tmp_path, namespace="astro_mantis"), \
            SASServer(specobj) as srv, srv.configure(), conf.set_temp("backoff", 0.01):
        yield srv


@pytest.fixture
def matched(specobj):
    t = Table({"ra": specobj["ra"], "dec": specobj["dec"]})
    return match_spectroscopic(t, catalog=specobj, z_col="z", z_err_col="zErr",
                               class_col="class", id_col="specObjID",
                               columns=["plate", "mjd", "fiberID", "run2d"])


def _row(specobj, k):
    return specobj[k]


def test_get_spectrum_locates_fetches_once_and_reads(sas, specobj):
    legacy = np.flatnonzero(specobj["run2d"] == "26")[:2]
    boss = np.flatnonzero(specobj["run2d"] == "v5_13_2")[:2]
    for k in np.concatenate([legacy, boss]):  # both kinds of reduction and layout
        row = specobj[k]
        spec = get_spectrum(row)
        run2d = str(row["run2d"])
        survey = "sdss" if run2d == "26" else "eboss"
        entry = sas.log[-1]
        assert entry.method == "GET" and entry.params["path"] == (
            f"/sas/dr17/{survey}/spectro/redux/{run2d}/spectra/lite/{row['plate']:04d}/"
            f"spec-{row['plate']:04d}-{row['mjd']}-{row['fiberID']:04d}.fits")
        wave = spec.spectral_axis.to_value(u.AA)
        assert spec.flux.unit == u.Unit("1e-17 erg / (Angstrom cm2 s)")
        assert 3500 < wave.min() < 3900 and wave.max() > 9000
        assert spec.mask[-1] and not spec.mask[0]
        assert spec.meta["plate"] == row["plate"] and spec.meta["run2d"] == run2d
        # the strongest line of the synthetic spectrum, H alpha, is at (1 + z) 6564.61 A
        halpha = 6564.61 * (1 + row["z"])
        if halpha < wave.max() - 20:
            near = np.abs(wave - halpha) < 3
            far = (np.abs(wave - halpha) > 60) & (np.abs(wave - halpha) < 150)
            assert spec.flux.value[near].max() > spec.flux.value[far].mean() + 4  # noise 1
    n = len(sas.log)
    get_spectrum(specobj[legacy[0]])  # cached now
    assert len(sas.log) == n == 4


def test_matched_rows_work_and_unmatched_rows_say_so(sas, specobj):
    t = Table({"ra": [specobj["ra"][0], 10.0], "dec": [specobj["dec"][0], 10.0]})
    match_spectroscopic(t, catalog=specobj, z_col="z", id_col="specObjID",
                        columns=["plate", "mjd", "fiberID", "run2d"])
    # a user catalog's extra columns arrive as spec_<name>: exactly what get_spectrum reads
    assert spectrum_ids(t[0]) == {"plate": int(specobj["plate"][0]),
                                  "mjd": int(specobj["mjd"][0]),
                                  "fiberid": int(specobj["fiberID"][0]),
                                  "run2d": str(specobj["run2d"][0])}
    assert get_spectrum(t[0]).meta["fiberid"] == specobj["fiberID"][0]
    with pytest.raises(ValueError, match="no matched SDSS spectrum"):
        get_spectrum(t[1])
    with pytest.raises(KeyError, match="none of the columns"):
        get_spectrum({"ra": 1.0})


def test_missing_spectrum_is_file_not_found(sas, specobj):
    row = dict(zip(specobj.colnames, specobj[0]))
    row["fiberID"] = 999
    with pytest.raises(FileNotFoundError, match="404"):
        get_spectrum(row)
    assert [e.method for e in sas.log] == ["GET"]  # no retry of a 404


@pytest.mark.parametrize("kind", ["truncate", "short", "5xx"])
def test_broken_spectrum_downloads_are_retried(sas, specobj, kind):
    sas.fail_next(1, kind, endpoint="spectrum")
    spec = get_spectrum(specobj[1])
    assert len(spec.flux) > 3000 and [e.method for e in sas.log] == ["GET", "GET"]


def test_damaged_local_copy_is_reported(sas, specobj, tmp_path):
    path = tmp_path / "sas/dr17/eboss/spectro/redux/v5_13_2/spectra/lite"
    row = specobj[np.flatnonzero(specobj["run2d"] == "v5_13_2")[0]]
    local = path / f"{row['plate']:04d}/spec-{row['plate']:04d}-{row['mjd']}-" \
                   f"{row['fiberID']:04d}.fits"
    local.parent.mkdir(parents=True)
    data = io.BytesIO()
    spec_lite_hdulist(row).writeto(data)
    local.write_bytes(data.getvalue()[:-5000])
    with pytest.raises(CatalogFileError, match="truncated"):
        get_spectrum(row)
    assert len(sas.log) == 0  # the local copy is used, never the network


def test_sdss_v_releases_refused(specobj):
    with pytest.raises(ValueError, match="DR19"):
        spectrum_path(specobj[0], data_release=19)


def _line_positions(ax):
    return {round(float(line.get_xdata()[0]), 2) for line in ax.lines[1:]}


def test_plot_with_pdf_and_photo_z(sas, specobj):
    k = 2
    z = float(specobj["z"][k])
    t = Table(specobj[k:k + 1])
    t["z_spec"] = [z]
    pdf = RedshiftPDF(np.exp(-0.5 * ((Z_CENTERS - (z + 0.03)) / 0.02) ** 2)[None, :])
    for name, col in pdf.to_table_columns(prefix="z_").items():
        t[name] = col
    fig = plot_spectrum(t[0])
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax, axp = fig.axes
    wave = ax.get_xlim()
    zp = float(t["z_mean"][0])
    positions = _line_positions(ax)
    for _, rest, _ in SPECTRAL_LINES:
        for zz in (z, zp):
            if wave[0] <= rest * (1 + zz) <= wave[1]:
                assert round(rest * (1 + zz), 2) in positions
    assert "photo-z" in " ".join(text.get_text() for text in ax.get_legend().get_texts())
    assert axp.get_xlabel() == "redshift $z$"
    assert any(abs(line.get_xdata()[0] - z) < 1e-9 for line in axp.lines[1:])  # z_spec on PDF
    fig.savefig(io.BytesIO(), format="png")


def test_plot_without_photo_z_and_with_z_mean_only(sas, specobj):
    row = dict(zip(specobj.colnames, specobj[3]))
    fig = plot_spectrum(row, smooth=1)
    assert len(fig.axes) == 1
    row["z_mean"] = 0.5
    fig = plot_spectrum(row, spectrum=get_spectrum(row))
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "photo-z"
    fig.savefig(io.BytesIO(), format="png")
