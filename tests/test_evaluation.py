# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of per-bin metrics, point estimators and astro_mantis.training.evaluation."""
import json

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from scipy import stats

from astro_mantis.metrics import BINNED_METRICS, binned_metrics, photoz_metrics
from astro_mantis.pdf import POINT_ESTIMATORS, Z_CENTERS, RedshiftPDF, point_estimate

torch.set_num_threads(1)

#: Build arguments of a very small mantis-mini (a few thousand parameters).
TINY_MINI = {"widths": [4, 8], "depths": [1, 1], "hidden": 16, "drop": 0.1}


def gaussian_pdfs(mu, sigma):
    mu = np.asarray(mu, dtype=float)[:, None]
    sigma = np.asarray(sigma, dtype=float)[:, None]
    return RedshiftPDF(np.exp(-0.5 * ((Z_CENTERS - mu) / sigma) ** 2))


@pytest.fixture(scope="module")
def sample():
    """Gaussian PDFs (truncated at z = 0 near it) and redshifts drawn from them."""
    rng = np.random.default_rng(7)
    n = 1500
    mu = rng.uniform(0.0, 1.2, n)
    pdf = gaussian_pdfs(mu, rng.uniform(0.02, 0.05, n))
    return pdf, pdf.sample(seed=8)


# -- binned_metrics -------------------------------------------------------------------------
def test_binned_rows_edges_and_masking(sample):
    pdf, z = sample
    edges = (0.0, 0.3, 0.6, 1.15, 1.3)
    tab = binned_metrics(z, pdf, edges=edges, min_count=100, n_bootstrap=10)
    assert list(tab["bin"]) == ["0.00-0.30", "0.30-0.60", "0.60-1.15", "1.15-1.30",
                                "all"]
    assert_allclose(tab["z_lo"][:-1], edges[:-1])
    assert np.isnan(tab["z_lo"][-1]) and np.isnan(tab["z_hi"][-1])
    counts = [np.sum((z >= lo) & (z < hi)) for lo, hi in zip(edges[:-1], edges[1:])]
    assert list(tab["n"][:-1]) == counts
    assert tab["n"][-1] == len(z)          # "all" counts objects outside the edges too
    for m in BINNED_METRICS:
        assert m in tab.colnames and f"{m}_err" in tab.colnames
    # the last bin (1.15-1.3) holds fewer than 100: kept, with n, metrics masked
    small = tab["n"] < 100
    assert small[3] and not small[:3].any()
    for m in BINNED_METRICS:
        assert list(tab[m].mask) == [False, False, False, True, False]
    assert tab.meta["point_estimate"] == "mean" and tab.meta["min_count"] == 100


def test_binned_matches_photoz_metrics_in_a_bin(sample):
    pdf, z = sample
    tab = binned_metrics(z, pdf, z_point="median", edges=(0.0, 0.4, 0.8), min_count=1,
                         n_bootstrap=30, seed=3)
    sel = (z >= 0.4) & (z <= 0.8)              # the last bin is closed
    ref = photoz_metrics(pdf.median()[sel], z[sel], pdf=pdf[sel], n_bootstrap=30, seed=3)
    row = tab[1]
    assert row["n"] == sel.sum()
    for m in BINNED_METRICS:
        assert_allclose(row[m], ref[m], rtol=1e-12)
        assert_allclose(row[f"{m}_err"], ref.errors[m], rtol=1e-12)
    overall = photoz_metrics(pdf.median(), z, pdf=pdf, n_bootstrap=30, seed=3)
    assert_allclose(tab[-1]["nmad"], overall["nmad"], rtol=1e-12)


def test_binned_point_only_and_exclusions():
    z = np.array([0.05, 0.05, 0.15, np.nan, 0.15, 2.0])
    zp = np.array([0.06, 0.04, 0.15, 0.2, np.nan, 2.0])
    tab = binned_metrics(z, z_point=zp, edges=(0.0, 0.1, 0.2), min_count=0, n_bootstrap=0)
    assert "crps" not in tab.colnames and "nmad" in tab.colnames
    assert list(tab["n"]) == [2, 1, 4]       # NaN truth and NaN estimate left out
    assert_allclose(tab["bias_median"][0], 0.0, atol=1e-12)
    assert_allclose(tab["bias_mean"][1], 0.0)
    assert np.isnan(tab["nmad_err"][0])      # no bootstrap
    assert tab.meta["point_estimate"] == "given"
    # an empty bin is a masked row, not a missing one
    empty = binned_metrics(z, z_point=zp, edges=(0.5, 1.0, 3.0), min_count=0, n_bootstrap=0)
    assert list(empty["n"]) == [0, 1, 4] and empty["nmad"].mask.tolist() == [True, False, False]


def test_binned_errors(sample):
    pdf, z = sample
    with pytest.raises(ValueError, match="needs pdf"):
        binned_metrics(z, z_point="median")
    with pytest.raises(ValueError, match="needs pdf"):
        binned_metrics(z)
    with pytest.raises(ValueError, match="increasing"):
        binned_metrics(z, pdf, edges=(0.5, 0.2))
    with pytest.raises(ValueError, match="min_count"):
        binned_metrics(z, pdf, min_count=-1)
    with pytest.raises(ValueError, match="rows"):
        binned_metrics(z[:10], pdf)
    with pytest.raises(ValueError, match="unknown point estimator"):
        binned_metrics(z, pdf, z_point="average")


# -- point estimators ----------------------------------------------------------------------
def test_estimators_agree_on_a_symmetric_pdf():
    pdf = gaussian_pdfs([0.5013, 0.8], [0.03, 0.05])
    for name in POINT_ESTIMATORS:
        assert_allclose(point_estimate(pdf, name), [0.5013, 0.8], atol=2e-4, err_msg=name)
    # the plain mode is a bin centre; the refined one moves inside the peak bin
    assert_allclose(pdf.mode()[0], 0.502)
    assert abs(pdf.mode(refine=True)[0] - 0.5013) < 1e-4


def test_truncated_pdf_mean_is_high_and_peak_is_not():
    # a Gaussian centred at z = 0.02, sigma 0.03, cut at z = 0: the mass below 0 is lost
    pdf = gaussian_pdfs([0.02], [0.03])
    a = (0 - 0.02) / 0.03
    expected_mean = stats.truncnorm(a, np.inf, loc=0.02, scale=0.03).mean()
    assert_allclose(pdf.mean(), expected_mean, atol=5e-4)
    assert pdf.mean()[0] > 0.031                           # biased high by > 0.011
    assert 0.025 < pdf.median()[0] < pdf.mean()[0]         # less, but still high
    assert abs(pdf.mode(refine=True)[0] - 0.02) < 1e-3      # the peak stays put
    assert abs(pdf.smoothed_mode()[0] - 0.02) < 0.004


def test_smoothed_mode_resists_bin_noise():
    rng = np.random.default_rng(1)
    clean = np.exp(-0.5 * ((Z_CENTERS - 0.7) / 0.06) ** 2)
    noisy = clean * rng.uniform(0.5, 1.5, (200, clean.size))
    pdf = RedshiftPDF(noisy)
    err_mode = np.abs(pdf.mode() - 0.7)
    err_smooth = np.abs(pdf.smoothed_mode() - 0.7)
    assert np.median(err_smooth) < 0.5 * np.median(err_mode)
    assert np.max(err_smooth) < 0.02
    assert_allclose(pdf.smoothed_mode(scale=0), pdf.mode(refine=True))


def test_estimators_invalid_rows_and_bad_input():
    bad = np.ones((2, Z_CENTERS.size))
    bad[1] = np.nan
    pdf = RedshiftPDF(bad, allow_invalid=True)
    for name in POINT_ESTIMATORS:
        out = point_estimate(pdf, name)
        assert np.isfinite(out[0]) and np.isnan(out[1])
    assert isinstance(point_estimate(pdf[0], "smoothed_mode"), float)
    with pytest.raises(ValueError, match="unknown point estimator"):
        point_estimate(pdf, "peak")
    with pytest.raises(TypeError, match="RedshiftPDF"):
        point_estimate(np.ones(400), "mean")
    with pytest.raises(ValueError, match="scale"):
        pdf.smoothed_mode(scale=-1)


# -- evaluate_model ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def test_only_dir(tmp_path_factory):
    """A test-only mock dataset (no train or validation shards), a few seconds to render."""
    from astro_mantis.simulate.dataset import make_dataset

    path = tmp_path_factory.mktemp("eval_mock")
    make_dataset(24, path, seed=5, split=(0, 0, 1), shard_size=12, progress=False)
    return path


@pytest.fixture(scope="module")
def tiny_model():
    from astro_mantis.models import build_model

    torch.manual_seed(0)
    net = build_model("mantis-mini", **TINY_MINI).eval()
    knots = [0.0, 0.25, 0.5, 0.75, 1.0]
    net.meta.update(name="tiny", temperature=1.5,
                    calibration={"pit_map": {"knots": knots,
                                             "values": [0.0, 0.2, 0.5, 0.8, 1.0]}})
    return net


def test_evaluate_model_end_to_end(test_only_dir, tiny_model, tmp_path):
    from astro_mantis.training.data import ShardDataset
    from astro_mantis.training.evaluation import calibrated_pdf, evaluate_model
    from astro_mantis.training.loop import collect_logits

    edges = (0.0, 0.3, 1.6)
    ev = evaluate_model(tiny_model, test_only_dir, edges=edges, min_count=3, n_bootstrap=10,
                        cache_dir=tmp_path / "cache", out=tmp_path / "out")
    assert tiny_model.panstarrs_exposure == "reference"  # fused as the network takes them
    logits, z = collect_logits(tiny_model, ShardDataset(
        test_only_dir, "test", cache_dir=tmp_path / "cache", panstarrs_exposure="reference"))
    assert_allclose(ev.z, z)
    pdf = calibrated_pdf(logits, tiny_model.meta)
    assert_allclose(ev.pdf.pdf, pdf.pdf)
    # the card's calibration is applied: temperature, then the PIT map
    plain = RedshiftPDF.from_logits(logits, temperature=1.5)
    assert_allclose(pdf.cdf(plain.ppf(0.25)), 0.2, atol=1e-3)   # (0.25 without the map)
    assert ev.overall["n"] == 24 and ev.overall["pit_recalibrated"]
    assert set(ev.point_tables) == set(POINT_ESTIMATORS)
    mean_all = ev.point_tables["mean"][-1]
    assert_allclose(mean_all["nmad"], ev.overall["nmad"], rtol=1e-12)
    ref = binned_metrics(z, pdf, z_point="median", edges=edges, min_count=3, n_bootstrap=10)
    for col in ("n", "nmad", "bias_median", "outlier_0.05", "nmad_err"):
        assert_allclose(ev.point_tables["median"][col], ref[col], rtol=1e-12)
    assert_allclose(ev.pdf_table["crps"], ref["crps"], rtol=1e-12)
    assert "nmad" not in ev.pdf_table.colnames and "crps" not in ev.point_tables["mode"].colnames
    cmp = ev.compare("bias_median")
    assert cmp.colnames[:3] == ["bin", "n", "mean"] and len(cmp) == 3
    assert_allclose(cmp["mode"], ev.point_tables["mode"]["bias_median"])
    # the files: JSON with every table, RST with a section per table
    data = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert data["n"] == 24 and data["model"] == "tiny" and data["split"] == "test"
    assert set(data["binned"]) == {"pdf", *POINT_ESTIMATORS}
    assert data["binned"]["median"][-1]["bin"] == "all"
    assert_allclose(data["binned"]["median"][-1]["nmad"], ref["nmad"][-1])
    rst = (tmp_path / "out" / "evaluation.rst").read_text()
    assert "PDF metrics" in rst and "Point estimate: smoothed_mode" in rst and " ± " in rst
    with pytest.raises(ValueError, match="metric"):
        ev.compare("crps")
    # any other point estimate is tabulated beside the built-in ones, the same way
    flat = ev.pdf.change_prior(np.linspace(2.0, 0.5, 400))
    tab = ev.add_point_estimate("median_flat", flat.median())
    ref_flat = binned_metrics(z, pdf=None, z_point=flat.median(), edges=edges, min_count=3,
                              n_bootstrap=10)
    for col in ("n", "nmad", "bias_median", "nmad_err"):
        assert_allclose(tab[col], ref_flat[col], rtol=1e-12)
    assert tab.meta["point_estimate"] == "median_flat"
    assert "median_flat" in ev.compare("nmad").colnames
    assert not np.allclose(tab["bias_median"], ev.point_tables["median"]["bias_median"])
    ev.write(tmp_path / "out2")
    data2 = json.loads((tmp_path / "out2" / "evaluation.json").read_text())
    assert "median_flat" in data2["binned"]
    with pytest.raises(ValueError, match="already tabulated"):
        ev.add_point_estimate("median", ev.pdf.median())
    with pytest.raises(ValueError, match="one value per galaxy"):
        ev.add_point_estimate("short", ev.pdf.median()[:-1])


def test_evaluate_model_errors(test_only_dir, tiny_model, tmp_path):
    from astro_mantis.training.evaluation import calibrated_pdf, evaluate_model

    with pytest.raises(FileNotFoundError, match="'train'"):
        evaluate_model(tiny_model, test_only_dir, split="train", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_model(tiny_model, tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown point estimator"):
        evaluate_model(tiny_model, test_only_dir, estimators=("mean", "peak"))
    with pytest.raises(ValueError, match="bins"):
        calibrated_pdf(np.zeros((2, 10)), {"n_bins": 400})
