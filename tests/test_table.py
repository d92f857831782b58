# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""add_redshift_columns / query_coordinates end to end over loopback (bundled sample sky)."""
import shutil
from collections import Counter
import warnings

import astropy.units as u
import numpy as np
import pytest
import torch
from astropy.coordinates import SkyCoord
from astropy.table import QTable, Table
from astropy.utils.exceptions import AstropyDeprecationWarning

import astro_mantis.table as T
from astro_mantis import Mantis, MantisFlag, RedshiftPDF, add_redshift_columns, conf
from astro_mantis.models import WeightsError, predict
from astro_mantis.simulate import SampleSky
from astro_mantis.table import DustWarning, column_names
from astro_mantis.testing import SurveyServer

F = MantisFlag


@pytest.fixture(scope="module")
def sky():
    return SampleSky()


@pytest.fixture
def sky_server(sky, tmp_path):
    """Loopback services over the sample sky; fresh cache; quick retries."""
    with SurveyServer(sky=sky) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path / "cache")), \
            conf.set_temp("backoff", 0.01), conf.set_temp("timeout", 5.0):
        yield srv


def _table(sky, rows):
    cat = sky.catalog
    return Table({"ra": np.array(cat["ra"][rows]), "dec": np.array(cat["dec"][rows]),
                  "ebv_csfd": np.array(cat["ebv_csfd"][rows]),
                  "ebv_planck": np.array(cat["ebv_planck"][rows]),
                  "z_true": np.array(cat["z"][rows])})


DUST = ("ebv_csfd", "ebv_planck")


def test_columns_rows_flags_and_values(sky, sky_server):
    t = _table(sky, np.arange(10))
    t["ra"] = np.ma.MaskedArray(t["ra"])
    t.add_row(t[2])  # a duplicate of row 2
    t.add_row({"ra": np.nan, "dec": 10.0, "ebv_csfd": 0.01, "ebv_planck": 0.01, "z_true": -1})
    t.add_row({"ra": 10.0, "dec": 95.0, "ebv_csfd": 0.01, "ebv_planck": 0.01, "z_true": -1})
    t.add_row(t[0])
    t["ra"].mask[-1] = True  # masked position
    ident = np.arange(len(t))
    t["ident"] = ident
    run = T.RunStats(n_rows=-1, failures=Counter({"stale": 1}))
    out = add_redshift_columns(t, ebv=DUST, progress=False, report=run)
    assert out is t and len(t) == 14 and np.array_equal(t["ident"], ident)
    names = column_names()
    assert t.colnames[-(len(names) + 1):] == names[:-1] + ["z_ood", names[-1]]
    # the out-of-distribution score of every estimated row, in [0, 1]; the threshold in meta
    est = ~np.ma.getmaskarray(t["z_mean"])
    # the odds of the median, from the row's own PDF; masked where not estimated
    back = RedshiftPDF.from_table(t[est])
    assert np.allclose(np.asarray(t["z_odds"])[est], back.odds(back.median()))
    assert np.all(np.ma.getmaskarray(t["z_odds"])[~est])
    assert np.all((np.asarray(t["z_ood"])[est] >= 0) & (np.asarray(t["z_ood"])[est] <= 1))
    assert np.all(np.ma.getmaskarray(t["z_ood"])[~est])
    assert t.meta["z_oodth"] == pytest.approx(0.99)
    # from the redshifts' own pass, the score ood_score gives from a pass of its own
    from astro_mantis import Mantis
    from astro_mantis.explain import ood_score

    first = np.flatnonzero(est)[:10]
    cuts = Mantis.get_cutouts(SkyCoord(np.asarray(t["ra"])[first], np.asarray(t["dec"])[first],
                                       unit="deg"), progress=False)
    own = ood_score(cuts, "mantis-mini", dust=np.column_stack(
        [np.asarray(t[c])[first] for c in DUST]), precision=t.meta["z_prec"])
    assert np.abs(np.asarray(t["z_ood"])[first] - own).max() < 0.05
    assert t["z_pdf"].dtype == np.float32 and t["z_pdf"].shape == (14, 400)
    bad = np.array([False] * 11 + [True, True, True])
    flags = np.asarray(t["z_flags"])
    assert np.all(flags[bad] & F.BAD_COORDINATE) and np.all(flags[bad] & F.NOT_ESTIMATED)
    assert not np.any(flags[~bad] & (F.NOT_ESTIMATED | F.DUST_UNKNOWN))
    for name in column_names()[:-1]:
        assert np.array_equal(np.any(np.ma.getmaskarray(t[name]).reshape(14, -1), axis=1), bad)
    # duplicates: fetched once, same values; the report is filled in afresh
    assert run.n_unique == 10 and run.n_estimated == 11 and not run.failures
    assert run.n_rows == 14 and run.wall_seconds >= run.infer_seconds > 0
    assert run.flags["BAD_COORDINATE"] == run.flags["NOT_ESTIMATED"] == 3
    assert "FETCH_FAILED" not in run.flags
    # the deprecated module global still holds it
    with pytest.warns(AstropyDeprecationWarning, match="report=RunStats"):
        assert T.last_run is run
    with pytest.raises(TypeError, match="report must be a RunStats"):
        add_redshift_columns(t, ebv=DUST, progress=False, overwrite=True, report={})
    assert run.rate == pytest.approx(10 / run.wall_seconds)
    assert np.isnan(T.RunStats().rate)  # nothing run yet
    assert np.array_equal(t["z_pdf"][10], t["z_pdf"][2])
    # the values are those of predict() on the same cutouts, and consistent summaries
    coords = SkyCoord(t["ra"][:10], t["dec"][:10], unit="deg")
    cuts = Mantis.get_cutouts(coords, progress=False)
    ref = predict(cuts, dust=np.c_[t["ebv_csfd"][:10], t["ebv_planck"][:10]])
    assert np.allclose(t["z_pdf"][:10].data, ref.pdf, rtol=1e-6, atol=1e-7)
    back = RedshiftPDF.from_table(t[:11])
    assert np.allclose(back.mean(), t["z_mean"][:11]) and np.allclose(back.std(), t["z_std"][:11])
    lo, hi = back.interval(0.68)
    assert np.allclose(lo, t["z_lo68"][:11]) and np.allclose(hi, t["z_hi68"][:11])
    assert np.all(t["z_lo68"][:11] <= t["z_median"][:11])
    # the network is informative on these mock galaxies
    zt = np.asarray(t["z_true"][:10])
    dz = np.abs(np.asarray(t["z_mean"][:10]) - zt) / (1 + zt)
    assert np.median(dz) < 0.1
    # metadata that survives FITS headers
    assert t.meta["z_model"] == "mantis-mini" and len(t.meta["z_sha256"]) == 64
    assert t.meta["z_nbins"] == 400 and t.meta["z_zmax"] == 1.6
    assert t["z_pdf"].meta["bin_edges"][1] == pytest.approx(0.004)
    assert t["z_mean"].description and t["z_flags"].description


def test_positions_from_skycoord_quantity_and_qtable(sky, sky_server):
    rows = np.arange(20, 26)
    ref = add_redshift_columns(_table(sky, rows), ebv=DUST, progress=False)
    n_req = sum(sky_server.counts.values())
    t = _table(sky, rows)
    q = QTable({"pos": SkyCoord(t["ra"], t["dec"], unit="deg").galactic,
                "ra_rad": (t["ra"] * u.deg).to(u.rad)})
    q["ebv"] = np.c_[t["ebv_csfd"], t["ebv_planck"]] * u.mag
    add_redshift_columns(q, coord="pos", ebv=q["ebv"], progress=False)
    assert np.allclose(q["z_mean"], ref["z_mean"], atol=1e-6)
    # radians in a Table column convert; cached cutouts are not fetched again
    t2 = _table(sky, rows)
    t2["ra"] = (t2["ra"] * u.deg).to(u.rad)
    add_redshift_columns(t2, ebv=DUST, progress=False)
    assert np.allclose(t2["z_mean"], ref["z_mean"], atol=1e-6)
    assert sum(sky_server.counts.values()) == n_req


def test_chunking_does_not_change_results(sky, sky_server):
    rows = np.arange(30, 40)
    a = add_redshift_columns(_table(sky, rows), ebv=DUST, progress=False, chunk_size=100)
    run = T.RunStats()
    b = add_redshift_columns(_table(sky, rows), ebv=DUST, progress=False, chunk_size=3,
                             batch_size=2, report=run)
    assert run.n_chunks == 4
    # equal up to float32 rounding (convolutions take other code paths per batch size)
    assert np.allclose(a["z_pdf"], b["z_pdf"], rtol=1e-3, atol=1e-5)
    assert np.allclose(a["z_mean"], b["z_mean"], rtol=0, atol=1e-5)


def test_bad_input(sky, sky_server, tmp_path):
    t = _table(sky, [0, 1])
    with pytest.raises(KeyError, match="'RA'.*the table has columns: ra, dec"):
        add_redshift_columns(t, ra="RA")
    with pytest.raises(KeyError, match="dust column 'nope'"):
        add_redshift_columns(t, ebv="nope")
    t["dec_m"] = t["dec"] * u.m
    with pytest.raises(ValueError, match="not an angle"):
        add_redshift_columns(t, dec="dec_m")
    t["name"] = ["a", "b"]
    with pytest.raises(ValueError, match="not numeric and none of its values reads"):
        add_redshift_columns(t, ra="name")
    with pytest.raises(ValueError, match="not a SkyCoord"):
        add_redshift_columns(t, coord="ra")
    with pytest.raises(TypeError, match="astropy Table"):
        add_redshift_columns({"ra": [1.0], "dec": [2.0]})
    with pytest.raises(ValueError, match="unknown model 'mantis-giant'"):
        add_redshift_columns(t, model="mantis-giant", ebv=DUST)
    with pytest.raises(ValueError, match=r"shape \(2,\) or \(2, 2\)"):
        add_redshift_columns(t, ebv=np.zeros(3))
    # a single dust value outside the physical range is refused outright
    for bad in (-0.1, 50.0, np.nan):
        with pytest.raises(ValueError, match=r"E\(B-V\) must lie in \[0, 5\] mag"):
            add_redshift_columns(t, ebv=bad)
    # a weights file that fails its checksum
    from astro_mantis.models.registry import DATA_DIR

    for suffix in (".safetensors", ".json"):
        shutil.copy(DATA_DIR / f"mantis-mini{suffix}", tmp_path / f"w{suffix}")
    raw = bytearray((tmp_path / "w.safetensors").read_bytes())
    raw[-10] ^= 0xFF
    (tmp_path / "w.safetensors").write_bytes(bytes(raw))
    with pytest.raises(WeightsError):
        add_redshift_columns(t, weights=tmp_path / "w.safetensors", ebv=DUST)
    assert "z_mean" not in t.colnames  # nothing added when the run could not start
    # an existing column is not replaced silently
    t["z_mean"] = [0.1, 0.2]
    with pytest.raises(ValueError, match="already has column.*z_mean.*overwrite=True"):
        add_redshift_columns(t, ebv=DUST)
    add_redshift_columns(t, ebv=DUST, overwrite=True, progress=False)
    assert np.all(t["z_mean"] != [0.1, 0.2])
    add_redshift_columns(t, ebv=DUST, prefix="pz_", progress=False)
    assert np.allclose(t["pz_mean"], t["z_mean"]) and t.meta["pz_model"] == "mantis-mini"
    # nor is a column named like the out-of-distribution score (once replaced silently)
    t["q_ood"] = ["mine", "mine"]
    with pytest.raises(ValueError, match="already has column.*q_ood"):
        add_redshift_columns(t, ebv=DUST, prefix="q_", progress=False)
    assert t["q_ood"].tolist() == ["mine", "mine"] and "q_mean" not in t.colnames
    add_redshift_columns(t, ebv=DUST, prefix="q_", ood=False, progress=False)
    assert t["q_ood"].tolist() == ["mine", "mine"] and "q_mean" in t.colnames


def test_empty_table(sky_server):
    t = Table({"ra": np.zeros(0), "dec": np.zeros(0)})
    add_redshift_columns(t, ebv=np.zeros(0))
    assert len(t) == 0 and set(column_names()) <= set(t.colnames)
    assert t["z_pdf"].shape == (0, 400) and sum(sky_server.counts.values()) == 0


def test_dust_sources(sky, sky_server):
    rows = np.arange(40, 44)
    t = _table(sky, rows)
    with pytest.warns(DustWarning, match="dust unknown"):
        add_redshift_columns(t, progress=False)
    assert np.all(np.asarray(t["z_flags"]) & F.DUST_UNKNOWN)
    assert t.meta["z_dust"].startswith("zeros")
    # one column used for both inputs; NaN values flag their rows only
    t2 = _table(sky, rows)
    t2["ebv_csfd"][1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error", DustWarning)
        add_redshift_columns(t2, ebv="ebv_csfd", progress=False)
    flagged = (np.asarray(t2["z_flags"]) & F.DUST_UNKNOWN) != 0
    assert flagged.tolist() == [False, True, False, False]
    assert t2.meta["z_dust"] == "columns ebv_csfd"
    # dust changes the answer (the network sees it), so the inputs are really used
    t3 = _table(sky, rows)
    add_redshift_columns(t3, ebv=lambda c: np.full(len(c), 0.5), progress=False)
    assert not np.allclose(t3["z_pdf"], t["z_pdf"])
    assert t3.meta["z_dust"].startswith("function")


def test_server_failures_flag_rows_and_resume_completes(sky, sky_server):
    rows = np.arange(50, 58)
    t = _table(sky, rows)
    with conf.set_temp("retries", 0):
        sky_server.fail_next(6, kind="5xx", endpoint="fitscut")
        add_redshift_columns(t, ebv=DUST, progress=False)
    failed = (np.asarray(t["z_flags"]) & F.FETCH_FAILED) != 0
    assert 1 <= failed.sum() < len(t)
    assert np.all(np.asarray(t["z_flags"])[failed] & F.NOT_ESTIMATED)
    assert np.all(np.ma.getmaskarray(t["z_mean"]) == failed)
    done_before = np.array(t["z_pdf"][~failed])
    # a resume that still estimates nothing says so, though earlier rows have values
    with conf.set_temp("retries", 0), pytest.warns(T.NotEstimatedWarning):
        sky_server.fail_next(1000, kind="5xx", endpoint="fitscut")
        add_redshift_columns(t, ebv=DUST, resume=True, progress=False)
    sky_server.reset()
    run = T.RunStats()
    add_redshift_columns(t, ebv=DUST, resume=True, progress=False, report=run)
    assert not np.any(np.asarray(t["z_flags"]) & (F.NOT_ESTIMATED | F.FETCH_FAILED))
    assert run.n_unique == failed.sum()  # only the failed rows were processed
    assert np.array_equal(np.array(t["z_pdf"][~failed]), done_before)
    # the rerun fetched the failed rows' Pan-STARRS bands only (the rest was cached)
    assert sky_server.counts["fitscut"] <= 5 * failed.sum()
    assert sky_server.counts.get("fits-cutout", 0) == 0


class _Interrupting(torch.nn.Module):
    """Wraps a network; raises KeyboardInterrupt on its n-th forward call."""

    def __init__(self, net, n):
        super().__init__()
        self.net, self.n, self.calls, self.meta = net, n, 0, net.meta
        self.panstarrs_exposure = net.panstarrs_exposure  # the input the network takes

    def forward(self, x, d):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.net(x, d)


def test_interrupted_run_keeps_rows_and_resumes(sky, sky_server):
    from astro_mantis.models import load_model

    t = _table(sky, np.arange(60, 69))
    net = _Interrupting(load_model("mantis-mini"), n=2)
    run = T.RunStats()
    with pytest.raises(KeyboardInterrupt):
        # float32: "auto" may add a check pass through the network on this CPU
        add_redshift_columns(t, model=net, ebv=DUST, chunk_size=4, batch_size=4,
                             progress=False, precision="float32", report=run)
    pending = (np.asarray(t["z_flags"]) & F.NOT_ESTIMATED) != 0
    assert pending.tolist() == [False] * 4 + [True] * 5
    # the report says what was done before the interrupt
    assert run.n_unique == 9 and run.n_estimated == 4 and run.flags["NOT_ESTIMATED"] == 5
    add_redshift_columns(t, ebv=DUST, resume=True, progress=False, precision="float32",
                         report=run)
    assert not np.any(np.asarray(t["z_flags"]) & F.NOT_ESTIMATED)
    assert run.n_todo == run.n_estimated == 5  # this call's rows, not the earlier four
    full = add_redshift_columns(_table(sky, np.arange(60, 69)), ebv=DUST, progress=False,
                                precision="float32")
    assert np.allclose(t["z_pdf"], full["z_pdf"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fmt,ext,kwargs", [
    ("fits", "fits", {}), ("ascii.ecsv", "ecsv", {}),
    ("hdf5", "h5", {"path": "data", "serialize_meta": True}),
    ("parquet", "parquet", {})])
def test_round_trips(sky, sky_server, tmp_path, fmt, ext, kwargs):
    if fmt == "hdf5":
        pytest.importorskip("h5py")
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    t = _table(sky, np.arange(70, 75))
    t.add_row({"ra": np.nan, "dec": 0.0, "ebv_csfd": 0, "ebv_planck": 0, "z_true": 0})
    add_redshift_columns(t, ebv=DUST, progress=False)
    path = tmp_path / f"t.{ext}"
    t.write(path, format=fmt, **kwargs)
    back = Table.read(path, format=fmt, **({"path": "data"} if fmt == "hdf5" else {}))
    assert back.colnames == t.colnames and len(back) == 6
    assert np.array_equal(back["z_flags"], t["z_flags"])
    good = ~np.ma.getmaskarray(t["z_mean"])
    for name in column_names()[:-1]:
        assert np.allclose(np.ma.filled(back[name], np.nan)[good], np.asarray(t[name])[good])
        # the unestimated row stays unusable: masked or NaN
        assert np.all(np.isnan(np.ma.filled(np.ma.asarray(back[name], dtype=float),
                                            np.nan)[~good]))
    meta = {k.lower(): v for k, v in back.meta.items()}  # FITS keywords are upper case
    for key in ("z_model", "z_sha256", "z_nbins"):
        assert meta[key] == t.meta[key]
    pdf = RedshiftPDF.from_table(back)
    assert pdf.valid.tolist() == good.tolist()
    ens = pdf[good].to_qp()
    centres = pdf.centers
    assert np.allclose(ens.pdf(centres)[:, :], np.asarray(t["z_pdf"])[good], rtol=1e-5,
                       atol=1e-6)


def test_query_coordinates(sky, sky_server):
    cat = sky.catalog
    coords = SkyCoord(cat["ra"][80:84], cat["dec"][80:84], unit="deg")
    dust = np.c_[cat["ebv_csfd"][80:84], cat["ebv_planck"][80:84]]
    t = Mantis.query_coordinates(coords, ebv=dust, progress=False)
    names = column_names()
    assert t.colnames == ["coord"] + names[:-1] + ["z_ood", names[-1]] and len(t) == 4
    assert np.allclose(t["coord"].ra.deg, coords.ra.deg)
    ref = add_redshift_columns(_table(sky, np.arange(80, 84)), ebv=DUST, progress=False)
    assert np.allclose(t["z_mean"], ref["z_mean"])
    one = Mantis.query_coordinates(coords[0], ebv=dust[:1], progress=False)
    assert len(one) == 1 and one["z_mean"][0] == pytest.approx(t["z_mean"][0])
    with pytest.raises(TypeError, match="SkyCoord"):
        Mantis.query_coordinates([1.0, 2.0])


def _fake_csfd(directory, nside=8):
    """A tiny CSFD map in dustmaps' file layout: E(B-V) = 0.001 x (ring pixel index)."""
    from astropy.io import fits

    npix = 12 * nside ** 2
    (directory / "csfd").mkdir(parents=True)
    for name, values in (("csfd_ebv.fits", 0.001 * np.arange(npix)),
                         ("mask.fits", np.zeros(npix))):
        hdu = fits.BinTableHDU.from_columns([fits.Column(name="T", format="E", array=values)])
        hdu.name = "xtension"
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(directory / "csfd" / name)
    return nside


def test_dust_from_dustmaps(sky, sky_server, tmp_path):
    pytest.importorskip("dustmaps")
    from astropy.coordinates import Galactic
    from astropy_healpix import HEALPix
    from dustmaps.config import config

    old = config.get("data_dir")
    config["data_dir"] = str(tmp_path / "maps")
    try:
        t = _table(sky, np.arange(90, 93))
        with pytest.warns(DustWarning, match="none of its CSFD, SFD or Planck maps"):
            add_redshift_columns(t, progress=False)
        assert np.all(np.asarray(t["z_flags"]) & F.DUST_UNKNOWN)
        nside = _fake_csfd(tmp_path / "maps")
        t2 = _table(sky, np.arange(90, 93))
        with warnings.catch_warnings():
            warnings.simplefilter("error", DustWarning)
            add_redshift_columns(t2, progress=False)
        assert not np.any(np.asarray(t2["z_flags"]) & F.DUST_UNKNOWN)
        assert t2.meta["z_dust"] == "dustmaps (csfd)"
        # the values the network saw are the map's at each galaxy (CSFD for both inputs)
        coords = SkyCoord(t2["ra"], t2["dec"], unit="deg")
        pix = HEALPix(nside=nside, order="ring", frame=Galactic()).skycoord_to_healpix(coords)
        from astro_mantis.table import dust_values

        values, unknown, _ = dust_values(t2, coords, np.ones(3, bool))
        assert np.allclose(values[:, 0], 0.001 * pix) and np.allclose(values[:, 1], values[:, 0])
        ref = add_redshift_columns(_table(sky, np.arange(90, 93)), ebv=values, progress=False)
        assert np.allclose(ref["z_pdf"], t2["z_pdf"])
    finally:
        config["data_dir"] = old


# --------------------------------------------------------------------- issue 11
def test_a_survey_subset_is_refused_and_surveys_are_recorded(sky, sky_server):
    t = _table(sky, [60, 61])
    with pytest.raises(ValueError, match="trained on galex, panstarrs, unwise.*gets only"):
        add_redshift_columns(t, surveys=("galex", "panstarrs"), ebv=DUST, progress=False)
    assert "z_pdf" not in t.colnames  # refused before any work
    add_redshift_columns(t, surveys=("unwise", "galex", "panstarrs"), ebv=DUST,
                         progress=False)
    s = T.run_settings(t)
    assert s["survey"] == "galex,panstarrs,unwise" and s["tta"] is False
    assert s["ebv"] == "col:ebv_csfd,ebv_planck" and s["point"] == "median"
    assert s["pos"] == "ra=ra,dec=dec"
    srv = T.recorded_services(t)
    assert srv["panstarrs"][0] == sky_server.panstarrs_url
    assert srv["galex"] == (sky_server.legacysurvey_url, "galex")


def test_z_ood_with_test_time_augmentation_takes_its_own_pass(sky, sky_server):
    """With tta the redshifts average eight passes: z_ood then comes from a pass of its
    own (ood_score), as it does for one untransformed pass without tta."""
    t = _table(sky, [5, 6, 7])
    add_redshift_columns(t, ebv=DUST, tta=True, precision="float32", progress=False)
    u_ = _table(sky, [5, 6, 7])
    add_redshift_columns(u_, ebv=DUST, precision="float32", progress=False)
    np.testing.assert_allclose(np.asarray(t["z_ood"]), np.asarray(u_["z_ood"]), atol=1e-9)
    assert not np.allclose(np.asarray(t["z_pdf"]), np.asarray(u_["z_pdf"]))


def test_resume_refuses_other_settings(sky, sky_server):
    t = _table(sky, [62, 63, 64])
    with conf.set_temp("retries", 0):
        sky_server.fail_next(3, kind="5xx", endpoint="fitscut")
        add_redshift_columns(t, ebv=DUST, progress=False)
    assert np.any(np.asarray(t["z_flags"]) & F.NOT_ESTIMATED)
    with pytest.raises(ValueError, match="tta: the earlier run used False, this call True"):
        add_redshift_columns(t, ebv=DUST, resume=True, tta=True, progress=False)
    with pytest.raises(ValueError, match="dust source.*'col:ebv_csfd,ebv_planck'.*'dustmaps'"):
        add_redshift_columns(t, resume=True, progress=False)
    with pytest.raises(ValueError, match="position columns"):
        t["ra2"], t["dec2"] = t["ra"], t["dec"]
        add_redshift_columns(t, ra="ra2", dec="dec2", ebv=DUST, resume=True, progress=False)
    # the earlier run wrote the OOD score: a resume without it would leave rows without
    assert "z_ood" in t.colnames
    with pytest.raises(ValueError, match="without the out-of-distribution score"):
        add_redshift_columns(t, ebv=DUST, resume=True, ood=False, progress=False)
    # and the same settings complete it; a FITS round trip (upper-case keys) is read too
    sky_server.reset()
    add_redshift_columns(t, ebv=DUST, resume=True, progress=False)
    assert not np.any(np.asarray(t["z_flags"]) & F.NOT_ESTIMATED)


def test_resume_keeps_the_earlier_runs_precision(sky, sky_server):
    """A resumed table never holds rows of two precisions: another explicit precision is
    refused, and "auto" (which gives float32 on CPUs for the bundled model, whose card
    records its bfloat16 check) takes the earlier run's bfloat16."""
    import warnings

    from astro_mantis.table import RunStats

    t = _table(sky, [72, 73, 74])
    with conf.set_temp("retries", 0), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bfloat16 emulated on some CPUs
        sky_server.fail_next(3, kind="5xx", endpoint="fitscut")
        add_redshift_columns(t, ebv=DUST, precision="bfloat16", progress=False)
    assert t.meta["z_prec"] == "bfloat16"
    assert np.any(np.asarray(t["z_flags"]) & F.NOT_ESTIMATED)
    with pytest.raises(ValueError, match="precision 'float32', but the earlier run used "
                                         "'bfloat16'"):
        add_redshift_columns(t, ebv=DUST, resume=True, precision="float32", progress=False)
    sky_server.reset()
    run = RunStats()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        add_redshift_columns(t, ebv=DUST, resume=True, report=run, progress=False)
    assert run.n_estimated > 0 and run.precision == "bfloat16"
    assert t.meta["z_prec"] == "bfloat16"
    assert not np.any(np.asarray(t["z_flags"]) & F.NOT_ESTIMATED)
    fresh = _table(sky, [72])
    add_redshift_columns(fresh, ebv=DUST, report=run, progress=False)
    assert run.precision == "float32"  # what "auto" gives without a run to resume

def test_scalar_dust_and_out_of_range_rows(sky, sky_server):
    t = _table(sky, [65, 66, 67])
    add_redshift_columns(t, ebv=0.03, progress=False)
    assert not np.any(np.asarray(t["z_flags"]) & F.DUST_UNKNOWN)
    assert t.meta["z_ebv"] == "value:0.03,0.03" and t.meta["z_dust"] == "value 0.03"
    t2 = _table(sky, [65, 66, 67])
    t2["ebv_csfd"][1] = 50.0  # a typo in one row flags that row only
    add_redshift_columns(t2, ebv="ebv_csfd", progress=False)
    flagged = (np.asarray(t2["z_flags"]) & F.DUST_UNKNOWN) != 0
    assert flagged.tolist() == [False, True, False]


def test_two_dust_numbers_are_one_pair_whatever_the_rows():
    """ebv=(a, b) is the (CSFD-like, Planck-like) pair of every row, as the record says,
    also on a table of two rows (it was read as per-row values there, so a wrong second
    value flagged one row instead of being refused, and the record disagreed)."""
    from astro_mantis.table import _ebv_setting, dust_values

    t = Table({"ra": [150.0, 150.1], "dec": [2.0, 2.1]})
    coords, good = SkyCoord(t["ra"], t["dec"], unit="deg"), np.ones(2, bool)
    values, unknown, source = dust_values(t, coords, good, (0.03, 0.05))
    assert np.allclose(values, [[0.03, 0.05], [0.03, 0.05]]) and not unknown.any()
    assert source == "value 0.03 and 0.05" and _ebv_setting((0.03, 0.05)) == "value:0.03,0.05"
    with pytest.raises(ValueError, match="must lie in"):
        dust_values(t, coords, good, (0.03, 9.0))
    per_row, _, source = dust_values(t, coords, good, np.array([[0.01, 0.02], [0.03, 0.04]]))
    assert np.allclose(per_row, [[0.01, 0.02], [0.03, 0.04]]) and source == "array"


def test_out_of_range_and_sexagesimal_positions(sky, sky_server):
    from astropy.coordinates import Angle

    t = _table(sky, [68, 69, 70, 71])
    ra = np.array(t["ra"])
    t["ra"][1] = ra[1] + 360.0  # ra=400-like: flagged, not wrapped
    t["ra"][2] = -10.0
    add_redshift_columns(t, ebv=DUST, progress=False)
    bad = (np.asarray(t["z_flags"]) & F.BAD_COORDINATE) != 0
    assert bad.tolist() == [False, True, True, False]
    s = _table(sky, [68, 71])
    s["ra_s"] = Angle(s["ra"], u.deg).to_string(unit=u.hourangle, sep=":", precision=3)
    s["dec_s"] = Angle(s["dec"], u.deg).to_string(unit=u.deg, sep=":", precision=2,
                                                  alwayssign=True)
    add_redshift_columns(s, ra="ra_s", dec="dec_s", ebv=DUST, progress=False)
    assert np.allclose(s["z_mean"], [t["z_mean"][0], t["z_mean"][3]], atol=2e-3)
    with pytest.raises(KeyError, match="Did you mean 'ra_s'"):
        add_redshift_columns(s, ra="RA_S", dec="dec_s", ebv=DUST, overwrite=True)


def test_warns_when_no_row_can_be_estimated(sky, sky_server):
    t = _table(sky, [72, 73])
    with conf.set_temp("retries", 0):
        sky_server.fail_next(100, kind="5xx", endpoint="fits-cutout")
        sky_server.fail_next(100, kind="5xx", endpoint="fitscut")
        run = T.RunStats()
        with pytest.warns(T.NotEstimatedWarning, match="no row could be estimated.*HTTP 503"):
            add_redshift_columns(t, ebv=DUST, progress=False, report=run)
    assert run.failures and all("HTTP 503" in k for k in run.failures)


def test_precision_is_passed_and_recorded(sky, sky_server):
    t = _table(sky, [74, 75])
    run = T.RunStats()
    add_redshift_columns(t, ebv=DUST, progress=False, precision="float32", report=run)
    assert t.meta["z_prec"] == "float32" and run.precision == "float32"
    sent = sum(sky_server.counts.values())
    with pytest.raises(ValueError, match="float16"):
        add_redshift_columns(_table(sky, [76]), ebv=DUST, progress=False, device="cpu",
                             precision="float16")
    assert sum(sky_server.counts.values()) == sent  # refused before any fetching


def test_local_tiles_source(tmp_path):
    """source=LocalTiles: the same job with cutouts cut from disk; recorded; plottable."""
    pytest.importorskip("galsim")
    from astropy.table import Table as T_
    from astro_mantis.simulate import ImagingConfig, MockSky, MockSkyConfig
    from astro_mantis.simulate.render import BANDS
    from astro_mantis.simulate.tiles import TileSky, write_tiles
    from astro_mantis.sources import LocalTiles
    from astro_mantis.visualization import plot_redshift_row

    rng = np.random.default_rng(1)
    n = 6
    # well inside the tiles (an unWISE cutout reaches 0.012 deg from its centre)
    cat = T_({"ra": 185.0 + rng.uniform(-0.01, 0.01, n), "dec": 25.0 + rng.uniform(-0.01, 0.01, n),
              "r_half_disk": rng.uniform(0.5, 2.0, n), "r_half_bulge": np.full(n, 0.4),
              "bulge_frac": np.full(n, 0.3), "q": np.full(n, 0.6), "pa": np.full(n, 50.0)})
    for band in BANDS:
        cat[f"mag_{band}"] = rng.uniform(17.0, 20.0, n)
    sky = MockSky(MockSkyConfig(imaging=ImagingConfig(
        star_density=0, neighbour_density=0, galex_hole_fraction=0, ps1_nan_fraction=0)),
        catalog=cat, seed=1)
    root = tmp_path / "tiles"
    write_tiles(sky, root, (184.97, 185.03), (24.97, 25.03))
    tiles = LocalTiles(panstarrs=root / "panstarrs", galex=root / "galex",
                       unwise=root / "unwise", index_dir=tmp_path / "index")
    t = T_({"ra": np.array(cat["ra"][:4]), "dec": np.array(cat["dec"][:4])})
    add_redshift_columns(t, ebv=0.02, progress=False, source=tiles, precision="float32")
    assert not np.any(np.asarray(t["z_flags"]) & F.NOT_ESTIMATED)
    assert T.recorded_services(t)["panstarrs"] == (f"tiles:{root / 'panstarrs'}", "local")
    # the same positions through the loopback services over the same tiles
    with SurveyServer(sky=TileSky(root)) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path / "cache")):
        u_ = T_({"ra": np.array(cat["ra"][:4]), "dec": np.array(cat["dec"][:4])})
        add_redshift_columns(u_, ebv=0.02, progress=False, precision="float32")
    # the same data-quality flags row for row (the pixels themselves are compared in
    # test_tiles.py: Pan-STARRS identical, the viewer's resampled layers within a
    # tolerance); OUT_OF_DISTRIBUTION is left out, as those small differences move the
    # z_ood of a row near the threshold across it
    quality = ~int(F.OUT_OF_DISTRIBUTION)
    assert np.array_equal(np.asarray(t["z_flags"]) & quality, np.asarray(u_["z_flags"]) & quality)
    assert np.abs(np.asarray(t["z_ood"]) - np.asarray(u_["z_ood"])).mean() < 0.1
    assert sum(srv.counts.values()) > 0 and t.meta["z_srv"] != u_.meta["z_srv"]
    fig = plot_redshift_row(t, 0)
    assert any("local tiles" in x.get_text() for x in fig.texts)


# ----------------------------------------------------------------- audit findings (E)
def test_rows_at_one_position_with_other_dust_get_their_own_estimate(sky, sky_server):
    """Rows at one position share its cutouts but not its dust: each row's PDF comes
    from its own E(B-V) (all rows of a position once got the first row's, and a row
    flagged DUST_UNKNOWN could carry the PDF of a known dust value)."""
    from astropy.table import MaskedColumn

    t = _table(sky, [5, 5, 5, 6])
    t["ebv"] = MaskedColumn([0.0, 0.3, 0.3, 0.01], mask=[True, False, False, False])
    run = T.RunStats()
    add_redshift_columns(t, ebv="ebv", progress=False, report=run)
    assert run.n_unique == 2  # the cutouts of a position are still fetched once
    flags = np.asarray(t["z_flags"])
    assert [bool(f & F.DUST_UNKNOWN) for f in flags] == [True, False, False, False]
    cuts = Mantis.get_cutouts(SkyCoord(np.asarray(t["ra"]), np.asarray(t["dec"]), unit="deg"),
                              progress=False)
    ref = predict(cuts, dust=[[0.0, 0.0], [0.3, 0.3], [0.3, 0.3], [0.01, 0.01]])
    assert np.allclose(np.asarray(t["z_pdf"]), ref.pdf, rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(t["z_pdf"][0]), np.asarray(t["z_pdf"][1]))
    assert np.array_equal(np.asarray(t["z_pdf"][1]), np.asarray(t["z_pdf"][2]))
    # two dust columns: a row differing in either value is its own estimate
    t2 = _table(sky, [5, 5])
    t2["ebv_planck"] = [0.02, 0.4]
    add_redshift_columns(t2, ebv=DUST, progress=False)
    assert not np.allclose(np.asarray(t2["z_pdf"][0]), np.asarray(t2["z_pdf"][1]))


def test_a_fresh_run_over_an_earlier_one_leaves_nothing_stale(sky, sky_server, tmp_path):
    """overwrite=True replaces the whole earlier output: a z_ood column, a threshold or
    a precision this run does not write are removed (a row not estimated this time once
    showed the old OOD score), and FITS's upper-case keys are not kept beside the new."""
    from astro_mantis.tableio import read_table, write_table

    t = _table(sky, [0, 1, 2])
    add_redshift_columns(t, ebv=DUST, progress=False)
    assert "z_ood" in t.colnames and "z_oodth" in t.meta and "z_prec" in t.meta
    t["ra"][1] = np.nan
    add_redshift_columns(t, ebv=0.5, overwrite=True, ood=False, progress=False)
    assert "z_ood" not in t.colnames and "z_oodth" not in t.meta
    assert t.meta["z_prec"] == "float32" and t.meta["z_ebv"] == "value:0.5,0.5"
    # no row estimated: the network never ran, so no precision is recorded
    t["ra"] = np.nan
    add_redshift_columns(t, ebv=0.5, overwrite=True, progress=False)
    assert "z_prec" not in t.meta and np.all(np.ma.getmaskarray(t["z_ood"]))
    # a table read back from FITS (keys upper-case): one key per setting afterwards
    t = _table(sky, [0, 1])
    add_redshift_columns(t, ebv=DUST, progress=False)
    write_table(t, tmp_path / "t.fits")
    back = read_table(tmp_path / "t.fits")
    add_redshift_columns(back, ebv=0.5, overwrite=True, ood=False, progress=False)
    keys = [k.lower() for k in back.meta]
    assert len(keys) == len(set(keys)) and "z_oodth" not in keys
    assert T.run_settings(back)["ebv"] == "value:0.5,0.5" and "z_ood" not in back.colnames


def test_the_users_own_meta_keys_are_not_replaced_silently(sky, sky_server):
    """prefix="" makes the provenance keys "survey", "model" ...: the table's own
    entries of those names are refused as existing columns are (they were replaced)."""
    t = _table(sky, [0, 1])
    t.meta.update({"survey": "my own survey", "model": "my own"})
    with pytest.raises(ValueError, match=r"meta already has key\(s\) survey, model.*"
                                         r"overwrite=True"):
        add_redshift_columns(t, ebv=DUST, prefix="", progress=False)
    assert "pdf" not in t.colnames and t.meta["survey"] == "my own survey"
    add_redshift_columns(t, ebv=DUST, prefix="", progress=False, overwrite=True)
    assert t.meta["model"] == "mantis-mini"
    # an earlier run's record (its columns dropped, its meta kept) is simply replaced
    t = _table(sky, [0, 1])
    add_redshift_columns(t, ebv=DUST, progress=False)
    again = t[["ra", "dec", "ebv_csfd", "ebv_planck"]]
    assert "z_model" in again.meta
    add_redshift_columns(again, ebv=0.02, progress=False)
    assert again.meta["z_ebv"] == "value:0.02,0.02"


def _dust(table, ebv):
    from astro_mantis.table import dust_values

    n = len(table)
    coords = SkyCoord(np.linspace(10, 20, n), np.zeros(n), unit="deg")
    return dust_values(table, coords, np.ones(n, bool), ebv)


def test_dust_column_units_are_converted_or_refused():
    """A plain column's unit counts, as for positions: mmag is converted (it was read
    as mag, 1000 times too much dust), a non-magnitude unit is refused."""
    t = Table({"ebv": [3.0, 30.0]})
    t["ebv"].unit = "mmag"
    values, unknown, _ = _dust(t, "ebv")
    assert np.allclose(values, [[0.003, 0.003], [0.03, 0.03]]) and not unknown.any()
    values, _, _ = _dust(QTable(t), "ebv")
    assert np.allclose(values[:, 0], [0.003, 0.03])
    t["ebv"] = [0.03, 0.3]
    t["ebv"].unit = "mag"
    assert np.allclose(_dust(t, "ebv")[0][:, 0], [0.03, 0.3])
    for unit in ("deg", "mag(AB)"):
        t["ebv"].unit = unit
        with pytest.raises(ValueError, match="dust column 'ebv' has unit .*not a magnitude"):
            _dust(t, "ebv")
    # a FITS file's "MAG" (not a FITS unit: astropy reads it as unrecognised) is mag
    t["ebv"].unit = u.Unit("MAG", parse_strict="silent")
    assert np.allclose(_dust(t, "ebv")[0][:, 0], [0.03, 0.3])
    t["ebv"].unit = u.Unit("furlongs", parse_strict="silent")
    with pytest.raises(ValueError, match="unit 'furlongs', which is not a unit astropy knows"):
        _dust(t, "ebv")


def test_text_dust_columns_and_malformed_names():
    """Text dust values are read per row (unreadable ones flag their rows, as NaN
    does); mixed or over-long name tuples are refused saying what is accepted."""
    t = Table({"ebv": ["0.02", "n/a", "", " 0.5 ", "junk"], "b": [True] * 5})
    values, unknown, _ = _dust(t, "ebv")
    assert unknown.tolist() == [False, True, True, False, True]
    assert np.allclose(values[:, 0], [0.02, 0, 0, 0.5, 0])
    t["none"] = ["abc", "x", "y", "z", "n/a"]
    with pytest.raises(ValueError, match="dust column 'none' holds text none of which reads"):
        _dust(t, "none")
    with pytest.raises(ValueError, match="dust column 'b' holds booleans"):
        _dust(t, "b")
    for bad in (("ebv", 0.02), ["ebv", "ebv", "ebv"]):
        with pytest.raises(ValueError, match="one dust column name, two.*not a mix"):
            _dust(t, bad)


def test_cartesian_coordinates(sky, sky_server):
    """A SkyCoord held as Cartesian vectors gives the same redshifts (it raised
    AttributeError: no attribute 'ra')."""
    from astro_mantis import query_coordinates

    cat = sky.catalog
    icrs = SkyCoord(cat["ra"][:2], cat["dec"][:2], unit="deg")
    cart = SkyCoord(icrs.cartesian, frame="icrs", representation_type="cartesian")
    a = query_coordinates(icrs, ebv=0.01, progress=False)
    b = add_redshift_columns(Table({"pos": cart}), coord="pos", ebv=0.01, progress=False)
    assert np.allclose(np.asarray(a["z_median"]), np.asarray(b["z_median"]))


# --------------------------------------------------------------------- audit findings (G)
def test_an_interrupt_during_a_slow_prefetch_returns_at_once_and_resumes(sky, sky_server,
                                                                          monkeypatch):
    """Ctrl-C while the next chunk is being fetched: the running fetch could not be
    cancelled and leaving the executor waited for it (72 s in the audit, a second
    Ctrl-C did not help). The fetch is now cancelled between requests: the call
    returns within a request's time, the rows inferred before it are kept, the rest
    flagged NOT_ESTIMATED, and resume completes them."""
    import time

    from astro_mantis.fetch import fetcher

    t = _table(sky, np.arange(100, 124))
    coords = SkyCoord(t["ra"], t["dec"], unit="deg")
    fetcher.get_cutouts(coords[:16], progress=False)  # chunks 1 and 2 come from the cache
    real, calls = T._infer_chunk, []

    def interrupted_in_the_second_chunk(job, chunk, cuts):
        calls.append(time.perf_counter())
        if len(calls) == 2:  # chunk 3 is being fetched, slowly
            time.sleep(0.3)  # let its requests start
            raise KeyboardInterrupt
        return real(job, chunk, cuts)

    monkeypatch.setattr(T, "_infer_chunk", interrupted_in_the_second_chunk)
    sky_server.latency = 0.5  # chunk 3 alone: about 14 s of requests on 2 connections
    run = T.RunStats()
    with conf.set_temp("max_connections_per_host", 2), pytest.raises(KeyboardInterrupt):
        add_redshift_columns(t, ebv=DUST, chunk_size=8, progress=False, precision="float32",
                             report=run)
    waited = time.perf_counter() - calls[-1]
    assert waited < 4.0, f"the interrupt took {waited:.1f} s to take effect"
    pending = (np.asarray(t["z_flags"]) & F.NOT_ESTIMATED) != 0
    assert pending.tolist() == [False] * 8 + [True] * 16
    assert run.n_unique == 24 and run.n_processed == 8 and run.n_estimated == 8
    first = np.asarray(t["z_pdf"][:8]).copy()
    sky_server.latency = 0.0
    monkeypatch.setattr(T, "_infer_chunk", real)
    add_redshift_columns(t, ebv=DUST, resume=True, progress=False, precision="float32",
                         report=run)
    assert not np.any(np.asarray(t["z_flags"]) & F.NOT_ESTIMATED)
    assert run.n_processed == run.n_unique == 16
    assert np.array_equal(np.asarray(t["z_pdf"][:8]), first)


def test_a_dust_value_is_recorded_exactly_and_old_records_still_resume(sky, sky_server):
    """ebv=VALUE was recorded with 6 significant digits and a resume from the record
    used the rounded value; it is recorded as repr(float), and a record of an earlier
    version (6 digits) still resumes with the value given or taken from it."""
    from astro_mantis.cli.predict import _ebv_from_record

    value = 0.0123456789
    t = _table(sky, [70, 71])
    add_redshift_columns(t, ebv=value, progress=False, precision="float32")
    assert t.meta["z_ebv"] == f"value:{value!r},{value!r}"
    assert _ebv_from_record(t.meta["z_ebv"]) == value  # what a bare --resume takes
    # a record written by an earlier version: 6 digits
    t["z_flags"][1] |= F.NOT_ESTIMATED
    t.meta["z_ebv"] = "value:0.0123457,0.0123457"
    add_redshift_columns(t, ebv=value, resume=True, progress=False, precision="float32")
    with pytest.raises(ValueError, match="dust source"):
        t["z_flags"][1] |= F.NOT_ESTIMATED
        add_redshift_columns(t, ebv=0.0123, resume=True, progress=False, precision="float32")


def test_records_run_and_provenance_keys_are_the_one_rule_of_an_earlier_run():
    """add_redshift_columns and the Dask/LSDB versions decide what an earlier run is,
    and which meta keys are its provenance, with these two."""
    from astro_mantis.table import PROVENANCE_KEYS, provenance_keys, records_run

    assert records_run(["ra", "z_flags"], {}, "z_")
    assert records_run(["ra"], {"Z_VERS": "astro_mantis 0.1"}, "z_")  # as FITS spells it
    assert not records_run(["ra"], {"z_vers": "something else"}, "z_")
    assert not records_run(["ra", "z_flags"], {}, "p_")
    meta = {"Z_MODEL": "m", "z_oodth": 0.9, "survey": "mine", "z_other": 1}
    assert provenance_keys(meta) == ["Z_MODEL", "z_oodth"]
    assert provenance_keys({"model": "m", "survey": "s"}, prefix="") == ["model", "survey"]
    assert {"model", "sha256", "vers", "prec", "oodth"} <= set(PROVENANCE_KEYS)


# ------------------------------------------------------------------ checkpoints
def test_checkpoints_hold_the_rows_done_so_far_and_resume_to_the_full_run(sky, sky_server,
                                                                          tmp_path):
    """A run killed without warning (SIGKILL, out of memory) kept nothing but the
    cutout cache: the table was only filled when the call ended. ``checkpoint`` hands
    the table over between chunks, filled as an interrupted run leaves it."""
    from astro_mantis.tableio import read_table, write_table

    rows = np.arange(86, 94)
    t = _table(sky, rows)
    seen = []

    def checkpoint(table):
        flags = np.asarray(table["z_flags"])
        seen.append({"pending": (flags & F.NOT_ESTIMATED) != 0,
                     "pdf": np.ma.filled(np.ma.asarray(table["z_pdf"]), np.nan).copy(),
                     "model": table.meta["z_model"]})
        write_table(table, tmp_path / "kept.ecsv", overwrite=True)

    run = T.RunStats()
    add_redshift_columns(t, ebv=DUST, chunk_size=2, batch_size=2, progress=False,
                         precision="float32", report=run, checkpoint=checkpoint,
                         checkpoint_interval=0)
    # after a chunk, never after the last one (the call's own end fills the columns)
    assert 1 <= len(seen) <= 3 and run.n_checkpoints == len(seen)
    assert run.checkpoint_seconds > 0
    done_before = np.zeros(len(t), dtype=bool)
    for snap in seen:
        done = ~snap["pending"]
        assert np.all(done[done_before]), "a row done earlier is pending again"
        assert done.any() and not done.all() and snap["model"] == "mantis-mini"
        # the rows done hold the final PDFs, the others nothing
        assert np.allclose(snap["pdf"][done], np.asarray(t["z_pdf"])[done])
        assert np.all(np.isnan(snap["pdf"][~done]))
        done_before = done
    # what the last checkpoint wrote completes to the full run's table
    kept = read_table(tmp_path / "kept.ecsv")
    assert np.any((np.asarray(kept["z_flags"]) & F.NOT_ESTIMATED) != 0)
    add_redshift_columns(kept, ebv=DUST, resume=True, progress=False, precision="float32")
    assert not np.any(np.asarray(kept["z_flags"]) & F.NOT_ESTIMATED)
    assert np.allclose(kept["z_pdf"], t["z_pdf"], rtol=1e-5, atol=1e-7)
    assert np.array_equal(kept["z_flags"], t["z_flags"])


def test_checkpoints_are_spaced_and_checked(sky, sky_server):
    t = _table(sky, np.arange(86, 90))
    calls = []
    run = T.RunStats()
    add_redshift_columns(t, ebv=DUST, chunk_size=1, progress=False, precision="float32",
                         report=run, checkpoint=calls.append, checkpoint_interval=1e6)
    assert calls == [] and run.n_checkpoints == 0  # none due within the run
    for bad, err in [({"checkpoint": "out.fits"}, TypeError),
                     ({"checkpoint": print, "checkpoint_interval": -1}, ValueError),
                     ({"checkpoint": print, "checkpoint_interval": float("nan")}, ValueError)]:
        with pytest.raises(err, match="checkpoint"):
            add_redshift_columns(_table(sky, [86]), ebv=DUST, progress=False, **bad)


def test_checkpoint_spacing_rule(monkeypatch):
    """A gap is the interval, and at least ten times the last checkpoint's duration."""
    clock = [100.0]
    monkeypatch.setattr(T.time, "perf_counter", lambda: clock[0])

    def slow_write():
        clock[0] += 3.0

    run = T.RunStats()
    c = T._Checkpoints(slow_write, run, interval=5.0)
    c.after_chunk()  # 100 < 105: not due
    assert run.n_checkpoints == 0
    clock[0] = 105.0
    c.after_chunk()  # written, 105 -> 108; next due at 108 + max(5, 30)
    assert run.n_checkpoints == 1 and run.checkpoint_seconds == 3.0 and c.due == 138.0
    clock[0] = 137.9
    c.after_chunk()
    assert run.n_checkpoints == 1


def test_filling_the_columns_does_not_copy_the_pdfs():
    """The table took a copy of the job's PDF array (``add_column`` copies by default):
    the 400-bin PDFs were held twice, the call's peak was about 4.2 kB per row on top of
    the working set instead of 2.5. Measured on the step that fills the columns."""
    import tracemalloc

    from astro_mantis.pdf import Z_EDGES

    n = 40000
    rng = np.random.default_rng(1)
    t = Table({"ra": rng.uniform(0, 360, n), "dec": rng.uniform(-30, 30, n)})
    pdf = rng.random((n, 400), dtype=np.float32)
    pdf[::7] = np.nan  # rows not estimated
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        pdfs = RedshiftPDF(pdf, edges=Z_EDGES, allow_invalid=True, copy=False)
        T._write_columns(t, "z_", pdfs, np.full(n, 0.5), np.zeros(n, np.int64),
                         {"name": "m"}, "none", {})
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    # the PDF mask (400 B/row), eight float64 columns and bounded temporaries (about
    # 1 kB per row at this size); a copy of the PDFs alone is 1,600 B/row
    assert peak / n < 1600, f"{peak / n:.0f} bytes per row"
    assert np.shares_memory(np.ma.getdata(t["z_pdf"]), pdf)
    assert np.ma.is_masked(t["z_mean"][7]) and not np.ma.is_masked(t["z_mean"][8])


# ------------------------------------------- recorded services of a local-tiles run
def test_surveys_without_local_tiles_are_recorded_not_fetched_and_old_records_resume(
        tmp_path):
    """A LocalTiles source without a survey's directory reports that survey 'not
    fetched': the run records it as ``none``, not as the service it never asked (which
    the figure of the row then fetched from). A table recorded the old way reads the
    same and still resumes (the services are only compared with a warning)."""
    from astro_mantis.simulate import ImagingConfig, MockSky, MockSkyConfig
    from astro_mantis.simulate.render import BANDS
    from astro_mantis.simulate.tiles import write_tiles
    from astro_mantis.sources import LocalTiles

    cat = Table({"ra": [185.0, 185.005], "dec": [25.0, 25.005], "r_half_disk": [1.0, 1.0],
                 "r_half_bulge": [0.4, 0.4], "bulge_frac": [0.3, 0.3], "q": [0.6, 0.6],
                 "pa": [50.0, 50.0]})
    for band in BANDS:
        cat[f"mag_{band}"] = [18.0, 18.5]
    write_tiles(MockSky(MockSkyConfig(imaging=ImagingConfig(star_density=0,
                                                            neighbour_density=0)),
                        catalog=cat, seed=1), tmp_path, (184.98, 185.02), (24.98, 25.02))
    ps1 = tmp_path / "panstarrs"
    t = Table({"ra": [185.0, 185.005], "dec": [25.0, 25.005]})
    with LocalTiles(panstarrs=ps1, index_dir=tmp_path / "index") as tiles, \
            conf.set_temp("panstarrs_url", "http://127.0.0.1:1/none"), \
            conf.set_temp("legacysurvey_url", "http://127.0.0.1:1/none"):
        add_redshift_columns(t, ebv=0.02, progress=False, source=tiles, precision="float32")
        assert t.meta["z_srv"] == f"galex=none; panstarrs=tiles:{ps1}|local; unwise=none"
        assert T.recorded_services(t) == {"galex": ("none", ""),
                                          "panstarrs": (f"tiles:{ps1}", "local"),
                                          "unwise": ("none", "")}
        # recorded before: the configured services beside the tiles, never asked
        t.meta["z_srv"] = (f"galex=http://127.0.0.1:1/none|galex; panstarrs=tiles:{ps1}|local"
                           "; unwise=http://127.0.0.1:1/none|unwise-neo7")
        assert T.recorded_services(t)["galex"] == ("none", "")
        assert T.recorded_services(t)["unwise"] == ("none", "")
        t["z_flags"][1] |= F.NOT_ESTIMATED
        from astro_mantis.logger import log

        with log.log_to_list() as messages:
            add_redshift_columns(t, ebv=0.02, resume=True, progress=False, source=tiles,
                                 precision="float32")
        # the same services, read the same: no "other services" warning
        assert not [m for m in messages if "other services" in m.getMessage()]
    assert not np.any(np.asarray(t["z_flags"]) & F.NOT_ESTIMATED)
    assert t.meta["z_srv"] == f"galex=none; panstarrs=tiles:{ps1}|local; unwise=none"
