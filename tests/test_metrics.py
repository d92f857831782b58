# Licensed under a 3-clause BSD style license - see LICENSE
"""Tests of astro_mantis.metrics against hand-computed and analytic cases."""
import matplotlib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from astro_mantis.metrics import (PhotozMetrics, _cvm_rows, _ks_rows, cde_loss, crps,
                                  photoz_metrics, pit, plot_nz, plot_pit, plot_zphot_zspec)
from astro_mantis.pdf import NBINS, Z_CENTERS, Z_EDGES, RedshiftPDF

matplotlib.use("Agg")

W = 0.004

# Six objects whose metrics are worked out by hand below.
Z_SPEC = np.array([0.0, 1.0, 0.5, 0.25, 0.0, 0.0])
Z_PHOT = np.array([0.02, 1.4, 0.5, 0.0, -0.01, 0.1])


def gaussian_pdfs(mu, sigma):
    mu = np.asarray(mu)[:, None]
    sigma = np.asarray(sigma)[:, None]
    return RedshiftPDF(np.exp(-0.5 * ((Z_CENTERS - mu) / sigma) ** 2))


@pytest.fixture(scope="module")
def ensemble():
    """Gaussian PDFs well inside [0, 1.6) and redshifts drawn from them."""
    rng = np.random.default_rng(42)
    n = 3000
    mu = rng.uniform(0.3, 1.3, n)
    sigma = rng.uniform(0.02, 0.06, n)
    pdf = gaussian_pdfs(mu, sigma)
    z_true = pdf.sample(seed=43)
    return mu, sigma, pdf, z_true


# -- point-estimate metrics ---------------------------------------------------------------
def test_point_metrics_by_hand():
    # delta = (z_phot - z_spec) / (1 + z_spec) = [0.02, 0.2, 0, -0.2, -0.01, 0.1]
    #   mean   = 0.11 / 6
    #   median = (0 + 0.02) / 2 = 0.01   (sorted: -0.2, -0.01, 0, 0.02, 0.1, 0.2)
    #   |delta - 0.01| = [0.01, 0.19, 0.01, 0.21, 0.02, 0.09]  -> median (0.02 + 0.09) / 2
    #   NMAD = 1.4826 * 0.055
    #   |delta| > 0.15: 2 of 6;  |delta| > 0.05: 3 of 6
    m = photoz_metrics(Z_PHOT, Z_SPEC, n_bootstrap=0)
    assert list(m) == ["bias_mean", "bias_median", "nmad", "outlier_0.15", "outlier_0.05"]
    assert_allclose(m["bias_mean"], 0.11 / 6)
    assert_allclose(m["bias_median"], 0.01)
    assert_allclose(m["nmad"], 1.4826 * 0.055)
    assert_allclose(m["outlier_0.15"], 2 / 6)
    assert_allclose(m["outlier_0.05"], 3 / 6)
    assert m.n == 6 and m.n_excluded == 0
    assert np.isnan(m.errors["nmad"])
    assert m.pit is None


def test_nan_and_masked_inputs_are_excluded_and_counted():
    zp = np.append(Z_PHOT, [np.nan, 0.3, 0.3, 0.5])
    zs = np.append(Z_SPEC, [0.2, np.nan, -1.0, 0.4])
    zs = np.ma.masked_array(zs, mask=[False] * 9 + [True])
    m = photoz_metrics(zp, zs, n_bootstrap=0)
    assert m.n == 6 and m.n_excluded == 4
    assert_array_equal(m.excluded, [False] * 6 + [True] * 4)
    ref = photoz_metrics(Z_PHOT, Z_SPEC, n_bootstrap=0)
    for key in ref:
        assert m[key] == ref[key]
    empty = photoz_metrics([np.nan], [0.5])
    assert empty.n == 0 and np.isnan(empty["nmad"]) and np.isnan(empty.errors["nmad"])


def test_input_errors():
    with pytest.raises(ValueError, match="give z_phot, or pdf"):
        photoz_metrics(None, Z_SPEC)
    with pytest.raises(ValueError, match="6 rows"):
        photoz_metrics(None, Z_SPEC[:5], pdf=RedshiftPDF(np.ones((6, NBINS))))
    with pytest.raises(ValueError, match="z_phot has 5 values"):
        photoz_metrics(Z_PHOT[:5], Z_SPEC, pdf=RedshiftPDF(np.ones((6, NBINS))))
    with pytest.raises(TypeError, match="RedshiftPDF"):
        crps(np.ones((2, NBINS)), [0.1, 0.2])


# -- CRPS ---------------------------------------------------------------------------------
def test_crps_one_bin_top_hat_analytic():
    # PDF uniform on the bin [a, a + w): for a truth at fraction s of the bin,
    # CRPS = w (s^3 + (1 - s)^3) / 3; a truth a distance d outside adds d to w / 3.
    k = 200
    a = Z_EDGES[k]
    s = np.array([0.0, 0.25, 0.5, 0.9, 1.0])
    y = np.concatenate([a + s * W, [a - 0.1, a + W + 0.3, -0.2, 2.0]])
    p = RedshiftPDF(np.tile(np.eye(NBINS)[k], (len(y), 1)))
    expected = np.concatenate([W * (s ** 3 + (1 - s) ** 3) / 3,
                               [W / 3 + 0.1, W / 3 + 0.3, W / 3 + a + 0.2,
                                W / 3 + 2.0 - a - W]])
    assert_allclose(crps(p, y), expected, rtol=1e-10, atol=1e-15)
    assert_allclose(crps(p, y)[2], W / 12)


def test_crps_matches_numerical_integration():
    rng = np.random.default_rng(1)
    p = RedshiftPDF(rng.random((3, NBINS)) ** 3)
    y = np.array([0.3337, -0.2, 1.75])
    z = np.linspace(-0.5, 2.0, 250_001)
    F = p.cdf(z[np.newaxis, :])
    H = (z[np.newaxis, :] >= y[:, None])
    numeric = np.trapezoid((F - H) ** 2, z, axis=1)
    assert_allclose(crps(p, y), numeric, atol=2e-5)
    assert np.isnan(crps(p, [0.1, np.nan, 0.2])[1])


def test_crps_is_smaller_for_sharper_correct_pdfs():
    wide = gaussian_pdfs([0.5], [0.1])
    sharp = gaussian_pdfs([0.5], [0.02])
    assert crps(sharp, [0.5])[0] < crps(wide, [0.5])[0]


# -- CDE loss ------------------------------------------------------------------------------
def test_cde_loss_flat_and_delta():
    y = np.array([0.1, 0.77, 1.5])
    flat = RedshiftPDF(np.ones((3, NBINS)))
    # flat: int p^2 = 1/1.6 and p(y) = 1/1.6, so L = 1/1.6 - 2/1.6 = -1/1.6 = -0.625
    assert_allclose(cde_loss(flat, y), -1 / 1.6)
    # one bin of width w at the truth: int p^2 = 1/w, p(y) = 1/w, L = -1/w = -250
    k = np.searchsorted(Z_EDGES, y, side="right") - 1
    delta = RedshiftPDF(np.eye(NBINS)[k])
    assert_allclose(cde_loss(delta, y), -1 / W)
    # the same deltas at the wrong places: p(y) = 0, so L = +1/w
    assert_allclose(cde_loss(delta, y[::-1] + [0, 0.1, 0]), 1 / W)
    # one right, two wrong: (-1/w + 1/w + 1/w) / 3
    assert_allclose(cde_loss(delta, [0.1, 0.2, 0.3]), 1 / W / 3)
    # a truth outside the bins only pays int p^2
    assert_allclose(cde_loss(flat[:1], [2.0]), 1 / 1.6)


# -- PIT and coverage ----------------------------------------------------------------------
def test_calibrated_ensemble(ensemble):
    mu, sigma, pdf, z_true = ensemble
    m = photoz_metrics(None, z_true, pdf=pdf, n_bootstrap=50)
    assert list(m)[5:] == ["crps", "cde_loss", "pit_ks", "pit_cvm", "coverage_68",
                           "coverage_95", "expected_outlier_0.05"]
    n = len(z_true)
    assert m["pit_ks"] < 1.36 / np.sqrt(n)  # below the 5% critical value
    assert m.pit_ks_pvalue > 0.05 and m.pit_cvm_pvalue > 0.05
    assert abs(m["coverage_68"] - 0.68) < 3 * np.sqrt(0.68 * 0.32 / n)
    assert abs(m["coverage_95"] - 0.95) < 3 * np.sqrt(0.95 * 0.05 / n)
    assert_allclose(m.pit, pdf.cdf(z_true))
    assert_allclose(pit(pdf, z_true), m.pit)
    assert abs(m["bias_mean"]) < 3 * m.errors["bias_mean"] + 1e-4
    assert abs(m["crps"] - crps(pdf, z_true).mean()) < 1e-12
    assert abs(m["cde_loss"] - cde_loss(pdf, z_true)) < 1e-12
    # calibrated PDFs expect the outliers their point estimates have
    assert abs(m["expected_outlier_0.05"] - m["outlier_0.05"]) < (
        3 * m.errors["outlier_0.05"] + 0.01)
    assert_allclose(m["expected_outlier_0.05"], 1 - pdf.odds(pdf.mean()).mean())


def test_too_narrow_pdfs_undercover(ensemble):
    mu, sigma, pdf, z_true = ensemble
    narrow = gaussian_pdfs(mu, sigma / 2)
    m = photoz_metrics(None, z_true, pdf=narrow, n_bootstrap=0)
    # half the width: a 68% interval holds P(|x| < 0.4945 sigma) = 0.38 of the truths
    assert m["coverage_68"] < 0.45
    assert m["coverage_95"] < 0.75
    assert m["pit_ks"] > 0.1 and m.pit_ks_pvalue < 1e-6
    # and expect far fewer outliers than they have
    assert m["expected_outlier_0.05"] < 0.6 * m["outlier_0.05"]
    wide = gaussian_pdfs(mu, sigma * 2)
    assert photoz_metrics(None, z_true, pdf=wide, n_bootstrap=0)["coverage_68"] > 0.9


def test_invalid_pdf_rows_are_excluded(ensemble):
    mu, sigma, pdf, z_true = ensemble
    raw = np.array(pdf.pdf[:100])
    raw[[3, 50]] = np.nan
    bad = RedshiftPDF(raw, allow_invalid=True)
    m = photoz_metrics(None, z_true[:100], pdf=bad, n_bootstrap=0)
    assert m.n == 98 and m.n_excluded == 2
    assert np.isnan(m.pit[[3, 50]]).all() and np.isfinite(np.delete(m.pit, [3, 50])).all()


# -- bootstrap -------------------------------------------------------------------------------
def test_vectorised_test_statistics_match_scipy():
    from scipy import stats

    u = np.random.default_rng(3).random((4, 57))
    ks = _ks_rows(u.copy())
    cvm = _cvm_rows(u.copy())
    for i in range(4):
        assert_allclose(ks[i], stats.kstest(u[i], "uniform").statistic, rtol=1e-12)
        assert_allclose(cvm[i], stats.cramervonmises(u[i], "uniform").statistic, rtol=1e-12)


def test_bootstrap_errors_shrink_as_one_over_sqrt_n():
    rng = np.random.default_rng(5)
    zs = rng.uniform(0.1, 1.2, 6400)
    zp = zs + 0.03 * (1 + zs) * rng.standard_normal(6400)
    small = photoz_metrics(zp[:400], zs[:400], n_bootstrap=200, seed=1)
    large = photoz_metrics(zp, zs, n_bootstrap=200, seed=1)
    for key in ("bias_mean", "nmad", "outlier_0.05"):
        ratio = small.errors[key] / large.errors[key]
        assert 2.8 < ratio < 5.5, (key, ratio)  # sqrt(6400 / 400) = 4
    # the error of the mean is close to the textbook sigma / sqrt(N)
    d = (zp - zs) / (1 + zs)
    assert_allclose(large.errors["bias_mean"], d.std() / np.sqrt(len(d)), rtol=0.2)


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(6)
    zs = rng.uniform(0.1, 1.2, 300)
    zp = zs + 0.05 * rng.standard_normal(300)
    a = photoz_metrics(zp, zs, seed=7, n_bootstrap=30)
    b = photoz_metrics(zp, zs, seed=7, n_bootstrap=30)
    c = photoz_metrics(zp, zs, seed=8, n_bootstrap=30)
    assert a.errors == b.errors
    assert a.errors != c.errors
    assert dict(a) == dict(c)


def test_result_table_and_repr(ensemble):
    mu, sigma, pdf, z_true = ensemble
    m = photoz_metrics(None, z_true[:200], pdf=pdf[:200], n_bootstrap=20)
    assert isinstance(m, PhotozMetrics) and len(m) == 12
    t = m.as_table()
    assert t.colnames == ["metric", "value", "error", "description"]
    assert list(t["metric"]) == list(m)
    assert t.meta["n"] == 200 and t.meta["n_bootstrap"] == 20
    assert_allclose(t["value"], list(m.values()))
    assert np.all(np.asarray(t["error"]) >= 0)
    assert t["error"][0] > 0
    assert set(m.as_dict()["nmad"]) == {"value", "error"}
    assert "nmad" in repr(m) and "+/-" in repr(m)


# -- plots -------------------------------------------------------------------------------------
def test_plots(ensemble):
    import matplotlib.pyplot as plt

    mu, sigma, pdf, z_true = ensemble
    figs = []
    try:
        ax = plot_zphot_zspec(pdf.mean(), z_true)
        figs.append(ax.figure)
        assert len(ax.lines) == 3  # one-to-one and the two outlier boundaries
        assert_allclose(ax.lines[2].get_ydata(), [0.15, 1.6 + 0.15 * 2.6])
        ax = plot_zphot_zspec(np.tile(pdf.mean(), 3), np.tile(z_true, 3))  # hexbin
        figs.append(ax.figure)
        assert ax.collections
        m = photoz_metrics(None, z_true, pdf=pdf, n_bootstrap=0)
        ax = plot_pit(m.pit, bins=10)
        figs.append(ax.figure)
        outline = ax.patches[0].get_xy()          # one step outline over 10 bins
        assert np.allclose(np.unique(outline[:, 0]), np.linspace(0, 1, 11))
        ax = plot_nz(z_true, pdf=pdf)
        figs.append(ax.figure)
        fig, ax0 = plt.subplots()
        figs.append(fig)
        assert plot_nz(z_true, ax=ax0) is ax0
        with pytest.raises(ValueError, match="kind"):
            plot_zphot_zspec([0.1], [0.1], ax=ax0, kind="contour")
    finally:
        for fig in figs:
            plt.close(fig)
