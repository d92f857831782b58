"""MultiSurveyCutout: FITS round trip and plotting."""
import matplotlib
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from astro_mantis import MultiSurveyCutout
from astro_mantis.flags import MantisFlag
from astro_mantis.surveys import SURVEYS, SurveyImage

matplotlib.use("Agg")


def make_image(name, ra=150.0, dec=2.0, seed=0, nan=False):
    survey = SURVEYS[name]
    rng = np.random.default_rng(seed)
    n = survey.size
    data = rng.normal(size=(len(survey.bands), n, n)).astype(np.float32)
    if nan:
        data[:, :3, :] = np.nan
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    s = survey.pixscale.to_value(u.deg)
    w.wcs.cd = [[-s, 0], [0, s]]
    return SurveyImage(name, data, w, survey.unit, survey.bands,
                       zeropoints=survey.zeropoints() if name != "panstarrs" else [27.0] * 5,
                       meta={"LAYER": survey.layer})


def test_surveyimage_validates_shape_and_band_lookup():
    img = make_image("galex")
    assert img["FUV"].shape == (32, 32)
    with pytest.raises(KeyError, match="has no band 'g'"):
        img["g"]
    with pytest.raises(ValueError, match="nbands=2"):
        SurveyImage("galex", np.zeros((3, 4, 4)), img.wcs, "ct/s", ("NUV", "FUV"))


def test_fits_round_trip_keeps_data_wcs_units_and_flags(tmp_path):
    coord = SkyCoord(150.0, 2.0, unit="deg")
    cut = MultiSurveyCutout(
        coord,
        {"galex": make_image("galex"), "panstarrs": make_image("panstarrs", nan=True)},
        missing=["unwise"],
        flags=MantisFlag.UNWISE_MISSING | MantisFlag.OUT_OF_FOOTPRINT,
        status={"galex": "ok", "panstarrs": "ok", "unwise": "out of footprint"},
    )
    assert MantisFlag.NAN_PIXELS in cut.flags  # merged from the PS1 image
    path = tmp_path / "cut.fits"
    cut.write(path)
    back = MultiSurveyCutout.read(path)
    assert back.coord.separation(coord) < 1e-6 * u.arcsec
    assert list(back.surveys) == ["galex", "panstarrs"]
    assert back.missing == ("unwise",)
    assert back.flags == cut.flags
    assert back.status == cut.status
    for name in back.surveys:
        a, b = cut.surveys[name], back.surveys[name]
        assert b.bands == a.bands and b.unit == a.unit
        np.testing.assert_array_equal(a.data, b.data)  # NaNs included
        np.testing.assert_allclose(b.zeropoints, a.zeropoints)
        assert b.wcs.pixel_to_world(3, 7).separation(a.wcs.pixel_to_world(3, 7)) < 1e-6 * u.arcsec
        assert b.meta["LAYER"] == SURVEYS[name].layer
    assert back.surveys["panstarrs"].mask[:, :3].all()


def test_unwise_vega_unit_survives_round_trip(tmp_path):
    cut = MultiSurveyCutout(SkyCoord(1, 1, unit="deg"), {"unwise": make_image("unwise")})
    cut.write(tmp_path / "w.fits")
    assert MultiSurveyCutout.read(tmp_path / "w.fits")["unwise"].unit == SURVEYS["unwise"].unit


def test_read_rejects_foreign_files(tmp_path):
    from astropy.io import fits
    fits.PrimaryHDU(np.zeros((3, 3))).writeto(tmp_path / "x.fits")
    with pytest.raises(ValueError, match="not an astro_mantis cutout"):
        MultiSurveyCutout.read(tmp_path / "x.fits")


def test_plot_has_nine_labelled_panels_even_with_a_missing_survey():
    cut = MultiSurveyCutout(SkyCoord(1, 1, unit="deg"),
                            {"galex": make_image("galex"), "unwise": make_image("unwise")},
                            missing=["panstarrs"], status={"panstarrs": "out of footprint"})
    fig = cut.plot()
    axes = fig.axes
    assert len(axes) == 9
    titles = [ax.get_title() for ax in axes]
    assert titles[0] == "galex\nNUV" and titles[2] == "panstarrs\ng" and titles[8] == "unwise\nW2"
    assert len(axes[0].images) == 1 and len(axes[2].images) == 0
    assert "out of footprint" in axes[2].texts[0].get_text()
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_a_bad_coordinate_cutout_is_written_and_read_back(tmp_path):
    """What get_cutouts gives a NaN position: no images, every survey missing."""
    coord = SkyCoord([10.0, np.nan], [1.0, np.nan], unit="deg")[1]
    status = {s: "bad coordinate" for s in ("galex", "panstarrs", "unwise")}
    cut = MultiSurveyCutout(coord, {}, list(status), MantisFlag.BAD_COORDINATE, status)
    cut.write(tmp_path / "bad.fits")
    back = MultiSurveyCutout.read(tmp_path / "bad.fits")
    assert np.isnan(back.coord.ra.deg) and np.isnan(back.coord.dec.deg)
    assert back.flags == MantisFlag.BAD_COORDINATE and back.surveys == {}
    assert back.missing == cut.missing and back.status == status
    assert "bad coordinate" in repr(back)


def test_long_failure_reasons_survive_the_round_trip(tmp_path):
    reason = ("failed: listing: panstarrs listing: no row for 3 of 200 positions inside the "
              "footprint (after 4 attempts) from http://127.0.0.1:8080/cgi-bin/ps1filenames.py"
              " - it's 'quoted' too")
    status = {"galex": "ok", "panstarrs": reason, "unwise": "failed: " + "x" * 300}
    cut = MultiSurveyCutout(SkyCoord(1, 1, unit="deg"), {"galex": make_image("galex")},
                            ["panstarrs", "unwise"], MantisFlag.FETCH_FAILED, status)
    cut.write(tmp_path / "long.fits")
    back = MultiSurveyCutout.read(tmp_path / "long.fits")
    assert back.status == status
    # each survey's card still says what happened, in one card, for a header reader
    from astropy.io import fits
    header = fits.getheader(tmp_path / "long.fits")
    assert header["STATUS PANSTARRS"].startswith("failed: listing:")
    assert header["STATUS GALEX"] == "ok"


def test_statuses_come_back_as_status_texts(tmp_path):
    """After a FITS round trip the statuses say their outcome (``kind``) and ``detail``,
    as the fetch engine's do, without parsing the text."""
    import pickle

    from astro_mantis.fetch import FetchStatus, StatusText

    status = {"galex": StatusText(FetchStatus.OUT_OF_FOOTPRINT),
              "panstarrs": FetchStatus.FAILED.text("HTTP 503 (after 4 attempts)"),
              "unwise": StatusText(FetchStatus.CACHED)}
    cut = MultiSurveyCutout(SkyCoord(1, 1, unit="deg"), {}, ["galex", "panstarrs"],
                            MantisFlag.FETCH_FAILED, status)
    cut.write(tmp_path / "s.fits")
    back = MultiSurveyCutout.read(tmp_path / "s.fits")
    assert back.status == status
    for name, text in status.items():
        got = back.status[name]
        assert isinstance(got, StatusText)
        assert (got.kind, got.detail) == (text.kind, text.detail)
        assert pickle.loads(pickle.dumps(got)) == got
    assert back.status["panstarrs"].detail == "HTTP 503 (after 4 attempts)"
    # a text of no standard form keeps its words and says what it is
    odd = MultiSurveyCutout(SkyCoord(1, 1, unit="deg"), status={"galex": "fetched"})
    got = MultiSurveyCutout.from_hdulist(odd.to_hdulist()).status["galex"]
    assert got == "fetched" and got.kind is FetchStatus.FETCHED


def test_non_finite_meta_values_are_written_and_read_back_as_nan(tmp_path):
    """A PS1 stack without EXPTIME: ``EXPTIMEG = nan`` in meta, which no FITS card can
    hold; the file is written (an undefined value) and reads back NaN."""
    img = make_image("panstarrs")
    img.meta.update({"EXPTIMEG": float("nan"), "EXPTIMER": 900.0, "EXPTIMEI": float("inf")})
    cut = MultiSurveyCutout(SkyCoord(150, 2, unit="deg"), {"panstarrs": img})
    cut.write(tmp_path / "nan.fits")
    back = MultiSurveyCutout.read(tmp_path / "nan.fits")["panstarrs"]
    assert np.isnan(back.meta["EXPTIMEG"]) and np.isnan(back.meta["EXPTIMEI"])
    assert back.meta["EXPTIMER"] == 900.0 and back.meta["LAYER"] == "stack"
    np.testing.assert_array_equal(back.data, img.data)
