# Licensed under a 3-clause BSD style license - see LICENSE
"""Tests of astro_mantis.pdf: the RedshiftPDF container and its statistics."""

import matplotlib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import astro_mantis.pdf as pdfmod
from astro_mantis.pdf import NBINS, Z_CENTERS, Z_EDGES, Z_WIDTHS, RedshiftPDF

matplotlib.use("Agg")

W = 0.004  # bin width of the standard grid


def gaussians(mu, sigma, dtype=np.float64):
    """Gaussian PDFs sampled at the bin centres (one row per mu, sigma)."""
    mu = np.atleast_1d(mu)[:, None]
    sigma = np.atleast_1d(sigma)[:, None]
    return np.exp(-0.5 * ((Z_CENTERS - mu) / sigma) ** 2).astype(dtype)


def one_bin(k, n=1):
    """PDFs confined to bin k."""
    p = np.zeros((n, NBINS))
    p[:, k] = 1.0
    return p


# -- the bin grid -----------------------------------------------------------------------
def test_bin_grid():
    assert NBINS == 400
    assert Z_EDGES.shape == (401,)
    assert Z_EDGES[0] == 0.0 and Z_EDGES[-1] == 1.6
    assert_allclose(Z_CENTERS[[0, 1, -1]], [0.002, 0.006, 1.598])
    assert_allclose(Z_WIDTHS, W)
    with pytest.raises(ValueError):
        Z_EDGES[0] = 1.0  # read-only


# -- construction -----------------------------------------------------------------------
def test_normalisation_and_shapes():
    rng = np.random.default_rng(0)
    raw = rng.random((5, NBINS)) * 7
    p = RedshiftPDF(raw)
    assert len(p) == 5 and p.shape == (5, NBINS) and p.nbins == NBINS
    assert not p.isscalar
    assert_allclose(p.pdf @ Z_WIDTHS, 1.0)
    assert_allclose(p.probabilities().sum(axis=1), 1.0)
    assert_allclose(p.pdf, raw / (raw @ Z_WIDTHS)[:, None])
    assert raw[0, 0] != p.pdf[0, 0]  # the input is not modified (copy=True)
    with pytest.raises(ValueError):
        p.pdf[0, 0] = 1.0  # the exposed array is read-only
    assert_array_equal(p.edges, Z_EDGES)
    assert_allclose(p.centers, Z_CENTERS)
    assert_allclose(p.widths, Z_WIDTHS)
    assert repr(p) == "<RedshiftPDF n=5 nbins=400 z=[0, 1.6)>"


def test_scalar_pdf_gives_floats():
    p = RedshiftPDF(gaussians(0.5, 0.05)[0])
    assert p.isscalar and p.shape == (NBINS,)
    for value in (p.mean(), p.median(), p.mode(), p.std(), p.cdf(0.5), p.ppf(0.5),
                  p.pdf_at(0.5)):
        assert isinstance(value, float)
    lo, hi = p.interval(0.68)
    assert isinstance(lo, float) and isinstance(hi, float)
    assert p.cdf([0.4, 0.5, 0.6]).shape == (3,)
    assert p.cdf(np.zeros((2, 3))).shape == (2, 3)
    assert p.valid is True
    with pytest.raises(TypeError):
        len(p)
    with pytest.raises(TypeError):
        p[0]


def test_dtype_storage():
    g32 = gaussians([0.3, 0.9], [0.05, 0.1], dtype=np.float32)
    assert RedshiftPDF(g32).dtype == np.float32
    assert RedshiftPDF(g32, dtype=np.float64).dtype == np.float64
    p32 = RedshiftPDF(g32.astype(np.float64), dtype=np.float32)
    p64 = RedshiftPDF(g32.astype(np.float64))
    assert p32.dtype == np.float32 and p64.dtype == np.float64
    assert_allclose(p32.mean(), p64.mean(), rtol=1e-6)
    assert_allclose(p32.median(), p64.median(), rtol=1e-6)
    with pytest.raises(ValueError, match="float32 or float64"):
        RedshiftPDF(g32, dtype=np.int32)


def test_copy_false_normalises_in_place():
    raw = gaussians([0.3, 0.9], [0.05, 0.1])
    p = RedshiftPDF(raw, copy=False)
    assert_allclose(raw @ Z_WIDTHS, 1.0)
    assert np.shares_memory(p.pdf, raw)


@pytest.mark.parametrize("bad, match", [
    (np.nan, "cannot be normalised"),
    (np.inf, "cannot be normalised"),
    (-1.0, "non-negative"),
])
def test_bad_rows_raise(bad, match):
    raw = gaussians([0.3, 0.5, 0.9], [0.05] * 3)
    raw[1, 10] = bad
    with pytest.raises(ValueError, match=match):
        RedshiftPDF(raw)


def test_zero_row_raises_and_allow_invalid():
    raw = gaussians([0.3, 0.5, 0.9, 1.2], [0.05] * 4)
    raw[1] = 0.0
    raw[3, 17] = np.nan
    with pytest.raises(ValueError, match=r"rows \[1, 3\].*allow_invalid=True"):
        RedshiftPDF(raw)
    p = RedshiftPDF(raw, allow_invalid=True)
    assert_array_equal(p.valid, [True, False, True, False])
    assert np.all(np.isnan(p.pdf[[1, 3]]))
    assert "invalid=2" in repr(p)
    lo, hi = p.interval()
    for stat in (p.mean(), p.median(), p.mode(), p.std(), lo, hi,
                 p.cdf(0.5), p.ppf(0.5), p.pdf_at(0.5), p.sample(seed=1)):
        assert np.all(np.isnan(stat[[1, 3]]))
        assert np.all(np.isfinite(stat[[0, 2]]))
    assert_allclose(p.mean()[[0, 2]], [0.3, 0.9], atol=1e-6)
    # the invalid rows stay invalid through slicing
    assert_array_equal(p[1:3].valid, [False, True])
    assert p[1].valid is False


def test_bad_shapes_and_edges():
    with pytest.raises(ValueError, match="301 edges"):
        RedshiftPDF(np.ones(300))
    with pytest.raises(ValueError, match="shape"):
        RedshiftPDF(np.ones((2, 3, 400)))
    with pytest.raises(ValueError, match="increasing"):
        RedshiftPDF(np.ones(3), edges=[0.0, 0.5, 0.4, 1.0])
    p = RedshiftPDF(np.ones(3), edges=[0.0, 0.5, 1.0, 2.0])
    assert p.nbins == 3
    assert_allclose(p.pdf, 1 / 2.0)


# -- statistics against hand-computed values -----------------------------------------------
def test_one_bin_pdf():
    k = 100  # the bin [0.4, 0.404)
    p = RedshiftPDF(one_bin(k, 2))
    c = Z_CENTERS[k]
    assert_allclose(p.pdf[:, k], 1 / W)
    assert_allclose(p.mean(), c)
    assert_allclose(p.median(), c)
    assert_allclose(p.mode(), c)
    assert_allclose(p.std(), W / np.sqrt(12))
    lo, hi = p.interval(0.68)
    assert_allclose(lo, c - 0.34 * W)
    assert_allclose(hi, c + 0.34 * W)
    assert_allclose(p.cdf(np.array([[0.3, 0.4, 0.401, 0.402, 0.404, 0.5]])),
                    [[0, 0, 0.25, 0.5, 1, 1]] * 2, atol=1e-12)
    assert_allclose(p.ppf(np.array([[0.0, 0.25, 1.0]])), [[0.4, 0.401, 0.404]] * 2)


def test_flat_pdf():
    p = RedshiftPDF(np.ones(NBINS))
    assert_allclose(p.pdf, 1 / 1.6)
    assert_allclose(p.mean(), 0.8)
    assert_allclose(p.median(), 0.8)
    assert_allclose(p.std(), 1.6 / np.sqrt(12))
    assert_allclose(p.interval(0.68), (0.16 * 1.6, 0.84 * 1.6))
    assert_allclose(p.interval(0.95), (0.025 * 1.6, 0.975 * 1.6))
    z = np.linspace(-0.5, 2.0, 101)
    assert_allclose(p.cdf(z), np.clip(z / 1.6, 0, 1), atol=1e-12)
    q = np.linspace(0, 1, 51)
    assert_allclose(p.ppf(q), 1.6 * q, atol=1e-12)
    assert p.mode() == Z_CENTERS[0]  # ties: the first bin


def test_gaussian_pdfs():
    mu = np.array([0.3, 0.7, 1.1])
    sigma = np.array([0.03, 0.05, 0.08])
    p = RedshiftPDF(gaussians(mu, sigma))
    assert_allclose(p.mean(), mu, atol=1e-9)
    assert_allclose(p.median(), mu, atol=1e-9)
    assert_allclose(p.mode(), mu, atol=W / 2 + 1e-12)
    # sampled at bin centres, the histogram's variance is sigma^2 + w^2/12
    assert_allclose(p.std(), np.sqrt(sigma ** 2 + W ** 2 / 12), rtol=1e-4)
    lo, hi = p.interval(0.68)
    assert_allclose((hi - lo) / 2, 0.9945 * sigma, rtol=5e-3)
    lo, hi = p.interval(0.95)
    assert_allclose((hi - lo) / 2, 1.96 * sigma, rtol=5e-3)


def test_cdf_ppf_inverse_and_gaps():
    rng = np.random.default_rng(3)
    raw = rng.random((50, NBINS))
    raw[:, 150:250] = 0.0  # a gap with no probability
    raw[::3, :40] = 0.0
    p = RedshiftPDF(raw)
    q = rng.random((50, 30))
    z = p.ppf(q)
    assert_allclose(p.cdf(z), q, atol=1e-12)
    # values inside the gap are never returned, except its lower edge
    assert not np.any((z > Z_EDGES[150]) & (z < Z_EDGES[250]))
    # q = 0 / 1: edges of the support
    assert_allclose(p.ppf(0.0)[::3], Z_EDGES[40])
    assert_allclose(p.ppf(0.0)[1::3], 0.0)
    assert_allclose(p.ppf(1.0), 1.6)
    assert np.all(np.isnan(p.ppf(np.array([[-0.1, 1.1, np.nan]]))))
    # the CDF is monotone and spans [0, 1]
    grid = np.linspace(-0.1, 1.7, 500)[np.newaxis, :]
    F = p.cdf(grid)
    assert np.all(np.diff(F, axis=1) >= 0)
    assert_allclose(F[:, 0], 0) and assert_allclose(F[:, -1], 1)


def test_many_quantiles_path_matches_few():
    """ppf uses a different search for many quantiles per row: same answers."""
    rng = np.random.default_rng(4)
    raw = rng.random((300, NBINS)) ** 4
    raw[::5, 100:] = 0
    p = RedshiftPDF(raw)
    q = rng.random((300, 20))
    q[:, 0] = 0.0
    q[:, 1] = 1.0
    many = p.ppf(q)
    few = np.column_stack([p.ppf(q[:, i]) for i in range(q.shape[1])])
    assert_array_equal(many, few)


def test_chunking_gives_identical_results(monkeypatch):
    rng = np.random.default_rng(5)
    p = RedshiftPDF(rng.random((257, NBINS)))
    z = rng.uniform(-0.1, 1.7, 257)
    ref = [p.mean(), p.median(), p.mode(), p.std(), *p.interval(0.9), p.cdf(z), p.pdf_at(z),
           p.ppf(rng.random((257, 12)))]
    monkeypatch.setattr(pdfmod, "_CHUNK_ELEMENTS", 1000)  # a couple of rows per chunk
    rng = np.random.default_rng(5)
    rng.random((257, NBINS)), rng.uniform(-0.1, 1.7, 257)
    new = [p.mean(), p.median(), p.mode(), p.std(), *p.interval(0.9), p.cdf(z), p.pdf_at(z),
           p.ppf(rng.random((257, 12)))]
    for a, b in zip(ref, new):
        assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_pdf_at():
    rng = np.random.default_rng(6)
    p = RedshiftPDF(rng.random((4, NBINS)))
    assert_allclose(p.pdf_at(Z_CENTERS[np.newaxis, :]), p.pdf)
    assert_allclose(p.pdf_at(Z_EDGES[np.newaxis, :-1]), p.pdf)  # bins are [lo, hi)
    assert_array_equal(p.pdf_at(np.array([[-0.1, 1.6, 2.0]])), 0.0)
    assert np.isnan(p.pdf_at(np.nan)).all()


def test_broadcasting_rules():
    p = RedshiftPDF(gaussians([0.2, 0.5, 0.8], [0.05] * 3))
    assert p.cdf(0.5).shape == (3,)
    assert_allclose(p.cdf([0.2, 0.5, 0.8]), 0.5, atol=1e-4)  # one z per object
    assert p.cdf(np.linspace(0, 1, 7)[np.newaxis, :]).shape == (3, 7)  # common grid
    assert p.cdf(np.zeros((3, 4))).shape == (3, 4)
    assert p.cdf(np.zeros((3, 1))).shape == (3, 1)
    with pytest.raises(ValueError, match=r"grid\[np.newaxis, :\]"):
        p.cdf(np.linspace(0, 1, 7))


def test_sample():
    mu = np.array([0.3, 1.0])
    p = RedshiftPDF(gaussians(mu, [0.05, 0.02]))
    s = p.sample(20000, seed=1)
    assert s.shape == (2, 20000)
    assert_allclose(s.mean(axis=1), p.mean(), atol=2e-3)
    assert_allclose(s.std(axis=1), p.std(), rtol=0.03)
    assert_array_equal(s, p.sample(20000, seed=1))
    assert p.sample(seed=2).shape == (2,)
    assert isinstance(p[0].sample(seed=3), float)
    assert p[0].sample(5, seed=3).shape == (5,)


# -- other constructors -----------------------------------------------------------------
def test_from_logits():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(6, NBINS)) * 3
    p = RedshiftPDF.from_logits(logits)
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert_allclose(p.probabilities(), prob, rtol=1e-12)
    # logit k belongs to bin k: a dominant logit puts the mode at that bin's centre
    one_hot = np.full((1, NBINS), -50.0)
    one_hot[0, 123] = 50.0
    assert_allclose(RedshiftPDF.from_logits(one_hot).mode(), Z_CENTERS[123])
    # temperature: T > 1 widens, and T = 2 is the same as halving the logits
    peaked = np.log(gaussians([0.5, 0.8], [0.03, 0.05]))
    assert np.all(RedshiftPDF.from_logits(peaked, temperature=2).std()
                  > RedshiftPDF.from_logits(peaked).std())
    assert_allclose(RedshiftPDF.from_logits(logits, temperature=2).pdf,
                    RedshiftPDF.from_logits(logits / 2).pdf, rtol=1e-12)
    # large logits do not overflow; float32 in, float32 out
    big = RedshiftPDF.from_logits((logits * 1000).astype(np.float32))
    assert big.dtype == np.float32 and np.all(big.valid)
    assert RedshiftPDF.from_logits(logits[0]).isscalar
    with pytest.raises(ValueError, match="temperature"):
        RedshiftPDF.from_logits(logits, temperature=0)
    bad = logits.copy()
    bad[2, 5] = np.nan
    assert_array_equal(RedshiftPDF.from_logits(bad, allow_invalid=True).valid,
                       [True, True, False, True, True, True])


def test_from_samples():
    rng = np.random.default_rng(8)
    samples = rng.normal([[0.4], [1.1]], [[0.05], [0.1]], size=(2, 50000))
    p = RedshiftPDF.from_samples(samples)
    assert_allclose(p.mean(), samples.mean(axis=1), atol=W / 10)
    assert_allclose(p.std(), samples.std(axis=1), rtol=0.01)
    # weights, and samples outside the edges ignored
    q = RedshiftPDF.from_samples([0.101, 0.101, 0.501, 5.0, -1.0], weights=[1, 1, 2, 9, 9])
    assert_allclose(q.probabilities()[[25, 125]], [0.5, 0.5])
    with pytest.raises(ValueError, match="cannot be normalised"):
        RedshiftPDF.from_samples([[0.5, 0.6], [3.0, 4.0]])


def test_qp_export_and_import():
    qp = pytest.importorskip("qp")
    rng = np.random.default_rng(9)
    p = RedshiftPDF(rng.random((5, NBINS)) ** 3)
    ens = p.to_qp()
    assert ens.npdf == 5
    assert_allclose(ens.pdf(Z_CENTERS), p.pdf, rtol=1e-10)
    z = np.linspace(0.01, 1.59, 37)
    assert_allclose(ens.cdf(z), p.cdf(z[np.newaxis, :]), atol=1e-10)
    back = RedshiftPDF.from_qp(ens)
    assert_allclose(back.pdf, p.pdf, rtol=1e-12)
    # a non-histogram ensemble is binned exactly from its CDF
    norm = qp.Ensemble(qp.stats.norm, data=dict(loc=np.array([[0.4], [0.9]]),
                                                scale=np.array([[0.05], [0.1]])))
    binned = RedshiftPDF.from_qp(norm)
    assert_allclose(binned.mean(), [0.4, 0.9], atol=1e-6)
    assert_allclose(binned.std(), np.sqrt(np.array([0.05, 0.1]) ** 2 + W ** 2 / 12),
                    rtol=1e-3)


# -- indexing and combining -----------------------------------------------------------------
def test_indexing():
    mu = np.linspace(0.2, 1.4, 8)
    p = RedshiftPDF(gaussians(mu, [0.05] * 8), meta={"model": "test"})
    one = p[3]
    assert one.isscalar and one.meta == {"model": "test"}
    assert_allclose(one.mean(), mu[3], atol=1e-4)
    assert_allclose(p[-1].mean(), mu[-1], atol=1e-4)
    sub = p[2:5]
    assert isinstance(sub, RedshiftPDF) and len(sub) == 3
    assert_allclose(sub.mean(), mu[2:5], atol=1e-4)
    assert_allclose(p[mu > 1].mean(), mu[mu > 1], atol=1e-4)
    assert_allclose(p[[7, 0]].mean(), mu[[7, 0]], atol=1e-4)
    assert len(list(p)) == 8
    with pytest.raises(IndexError):
        p[8]
    with pytest.raises(IndexError):
        p[0, 1]


def test_concatenate_and_stack():
    a = RedshiftPDF(one_bin(10, 3))
    b = RedshiftPDF(one_bin(30, 1))
    c = RedshiftPDF.concatenate([a, b])
    assert len(c) == 4
    assert_allclose(c.mode(), Z_CENTERS[[10, 10, 10, 30]])
    stacked = c.stack()
    assert stacked.isscalar
    assert_allclose(stacked.probabilities()[[10, 30]], [0.75, 0.25])
    with pytest.raises(ValueError, match="same bin edges"):
        RedshiftPDF.concatenate([a, RedshiftPDF(np.ones(3), edges=[0, 1, 2, 3])])


# -- odds ---------------------------------------------------------------------------------
def test_odds_of_a_gaussian_is_its_mass_in_the_outlier_window():
    from scipy.stats import norm

    mu, sigma = np.array([0.3, 0.8, 0.8]), np.array([0.02, 0.05, 0.15])
    p = RedshiftPDF(gaussians(mu, sigma))
    point = np.array([0.3, 0.8, 0.9])
    for width in (0.05, 0.15):
        lo, hi = (point - width) / (1 + width), (point + width) / (1 - width)
        expect = norm.cdf(hi, mu, sigma) - norm.cdf(lo, mu, sigma)
        assert_allclose(p.odds(point, width=width), expect, atol=2e-4)
    # default point: the median; a sharp PDF is sure of itself, a broad one is not
    assert_allclose(p.odds(), p.odds(p.median()))
    odds = p.odds()
    assert odds[0] > 0.99 and 0 < odds[2] < odds[1] < 1
    # one point for all objects, and a scalar PDF
    assert_allclose(p.odds(0.8), p.odds(np.full(3, 0.8)))
    assert isinstance(p[1].odds(), float) and p[1].odds() == pytest.approx(odds[1])


def test_odds_predict_the_outlier_fraction_of_calibrated_pdfs():
    # true redshifts drawn from the PDFs themselves: calibrated by construction, so one
    # minus the mean odds is the outlier fraction of the medians, and a cut on the odds
    # leaves fewer outliers
    rng = np.random.default_rng(3)
    n = 4000
    mu = rng.uniform(0.1, 1.3, n)
    sigma = rng.uniform(0.01, 0.15, n)
    p = RedshiftPDF(gaussians(mu, sigma))
    z = p.sample(seed=4)
    med = p.median()
    outlier = np.abs(med - z) / (1 + z) > 0.05
    odds = p.odds()
    error = np.sqrt(outlier.mean() * (1 - outlier.mean()) / n)
    assert abs((1 - odds.mean()) - outlier.mean()) < 4 * error
    assert outlier[odds > 0.9].mean() < 0.5 * outlier.mean()


def test_odds_invalid_rows_and_bad_input():
    raw = gaussians([0.2, 0.6], [0.04, 0.06])
    raw[1] = np.nan
    p = RedshiftPDF(raw, allow_invalid=True)
    odds = p.odds()
    assert 0.8 < odds[0] < 0.95 and np.isnan(odds[1])
    assert np.isnan(p.odds([np.nan, 0.6])).all()
    for width in (0, 1, -0.1, np.nan):
        with pytest.raises(ValueError, match="width must be in"):
            p.odds(width=width)
    with pytest.raises(ValueError, match="one point estimate per object"):
        p.odds([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="one point estimate per object"):
        p.odds(np.zeros((2, 2)))


# -- tables ---------------------------------------------------------------------------------
def test_table_columns_and_round_trip(tmp_path):
    from astropy.table import Table
    import astropy.units as u

    raw = gaussians([0.2, 0.6, 1.0], [0.04, 0.06, 0.1])
    raw[1] = np.nan
    p = RedshiftPDF(raw, allow_invalid=True, meta={"model": "mantis-mini"})
    cols = p.to_table_columns()
    assert list(cols) == ["z_pdf", "z_mean", "z_median", "z_mode", "z_std", "z_lo68", "z_hi68",
                          "z_odds"]
    for col in cols.values():
        assert col.unit == u.dimensionless_unscaled
        assert col.description
    pdfcol = cols["z_pdf"]
    assert pdfcol.dtype == np.float32 and pdfcol.shape == (3, NBINS)
    assert_allclose(pdfcol.meta["bin_edges"], Z_EDGES)
    assert pdfcol.meta["model"] == "mantis-mini"
    assert_allclose(cols["z_mean"], p.mean())
    assert_allclose(cols["z_lo68"], p.interval()[0])
    assert_allclose(cols["z_odds"], p.odds(p.median()))
    assert np.isnan(cols["z_median"][1]) and np.isnan(cols["z_odds"][1])
    masked = p.to_table_columns(masked=True)
    assert_array_equal(masked["z_odds"].mask, [False, True, False])

    table = Table(cols)
    table.write(tmp_path / "z.ecsv")
    back = RedshiftPDF.from_table(Table.read(tmp_path / "z.ecsv"))
    assert_array_equal(back.valid, [True, False, True])
    assert back.meta == {"model": "mantis-mini"}
    assert_allclose(back.mean(), p.mean(), rtol=1e-6)
    assert_allclose(back.pdf, p.pdf, rtol=1e-6, atol=1e-30)

    # FITS keeps the column meta too (astropy's serialised columns; see
    # test_which_table_formats_keep_the_bin_edges for one that does not)
    table.write(tmp_path / "z.fits")
    back = RedshiftPDF.from_table(Table.read(tmp_path / "z.fits"))
    assert_allclose(back.edges, Z_EDGES)
    assert_allclose(back.median(), p.median(), rtol=1e-6)


def test_table_columns_masked_prefix_and_custom_edges():
    from astropy.table import Table

    edges = np.linspace(0, 3, 31)
    raw = np.ones((3, 30))
    raw[2] = 0
    p = RedshiftPDF(raw, edges=edges, allow_invalid=True)
    cols = p.to_table_columns(prefix="pz_", masked=True)
    assert "pz_pdf" in cols
    assert_array_equal(cols["pz_mean"].mask, [False, False, True])
    assert cols["pz_pdf"].mask[2].all()
    table = Table(cols)
    back = RedshiftPDF.from_table(table, prefix="pz_")
    assert_allclose(back.edges, edges)
    assert_array_equal(back.valid, [True, True, False])
    # edges in the table meta, or given explicitly
    del table["pz_pdf"].meta["bin_edges"]
    with pytest.raises(ValueError, match="no bin edges"):
        RedshiftPDF.from_table(table, prefix="pz_")
    table.meta["pz_bin_edges"] = list(edges)
    assert_allclose(RedshiftPDF.from_table(table, prefix="pz_").edges, edges)
    assert_allclose(RedshiftPDF.from_table(table, prefix="pz_", edges=edges * 2).edges,
                    edges * 2)
    with pytest.raises(KeyError, match="no column 'z_pdf'"):
        RedshiftPDF.from_table(table)
    # a scalar PDF gives a one-row table
    assert len(RedshiftPDF(np.ones(NBINS)).to_table_columns()["z_mean"]) == 1


# -- plotting -------------------------------------------------------------------------------
def test_plot():
    import matplotlib.pyplot as plt

    p = RedshiftPDF(gaussians([0.3, 0.9], [0.05, 0.1]))
    ax = p.plot(index=1, z_true=0.95)
    try:
        assert ax.get_xlim() == (0.0, 1.6)
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any(lab.startswith("mean 0.9") for lab in labels)
        assert any(lab.startswith("true z") for lab in labels)
        assert any(lab.startswith("68% interval") for lab in labels)
    finally:
        plt.close(ax.figure)
    fig, ax = plt.subplots()
    try:
        assert p[0].plot(ax=ax, show_stats=False) is ax
    finally:
        plt.close(fig)


def test_masked_input_becomes_invalid_rows():
    from astropy.table import MaskedColumn

    data = np.ma.masked_array(np.ones((3, NBINS)), mask=False)
    data.mask[1, 7] = True
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        RedshiftPDF(data)
    assert_array_equal(RedshiftPDF(data, allow_invalid=True).valid, [True, False, True])
    col = MaskedColumn(np.ones((2, NBINS), dtype=np.float32), mask=np.zeros((2, NBINS), bool))
    col.mask[0] = True
    p = RedshiftPDF(col, allow_invalid=True)
    assert p.dtype == np.float32
    assert_array_equal(p.valid, [False, True])


# ------------------------------------------------------------------------- priors
def test_change_prior_divides_out_one_prior_and_applies_another():
    prior = np.exp(-Z_CENTERS / 0.3)
    like = np.exp(-0.5 * ((Z_CENTERS[None, :] - np.array([[0.4], [0.8]])) / 0.08) ** 2)
    posterior = RedshiftPDF(like * prior, meta={"model": "m"})
    flat = posterior.change_prior(prior)
    # the likelihood comes back: medians at the true centres, same bins and meta
    assert_allclose(flat.median(), [0.4, 0.8], atol=2e-3)
    assert_allclose(flat.pdf, RedshiftPDF(like).pdf, rtol=1e-9)
    assert flat.meta == {"model": "m"} and np.array_equal(flat.edges, posterior.edges)
    assert np.all(posterior.median() < flat.median())  # the prior pulled them low
    # another prior instead: the same as multiplying the likelihood by it
    new = np.where(Z_CENTERS < 0.6, 0.0, 1.0)
    swapped = posterior.change_prior(prior, new)
    assert_allclose(swapped.pdf, RedshiftPDF(like * new, allow_invalid=True).pdf, rtol=1e-9)
    assert swapped.median()[1] == pytest.approx(0.8, abs=2e-3)
    # scalar in, scalar out; float32 stays float32
    one = RedshiftPDF((like * prior)[1].astype(np.float32))
    assert one.change_prior(prior).isscalar and one.change_prior(prior).dtype == np.float32
    assert isinstance(one.change_prior(prior).median(), float)


def test_change_prior_keeps_rows_and_flags_the_ones_it_empties():
    pdf = np.zeros((3, NBINS))
    pdf[0, 10:20] = 1.0
    pdf[1, 300:310] = 1.0
    pdf[2] = np.nan
    p = RedshiftPDF(pdf, allow_invalid=True)
    new = np.where(Z_CENTERS < 0.5, 1.0, 0.0)  # no probability left for row 1
    out = p.change_prior(np.ones(NBINS), new)
    assert len(out) == 3 and out.valid.tolist() == [True, False, False]
    assert np.isnan(out.median()[1:]).all()


def test_change_prior_of_float32_pdfs_takes_priors_of_any_scale():
    """Only the ratio of the priors matters: a prior scaled by 1e-40 (or 1e40), or one
    whose tail reaches 1e-147, must not overflow a float32 row into NaN."""
    rng = np.random.default_rng(3)
    centres = rng.uniform(0.1, 1.4, 8)
    pdf = np.exp(-0.5 * ((Z_CENTERS[None, :] - centres[:, None]) / 0.05) ** 2) + 1e-6
    p32 = RedshiftPDF(pdf.astype(np.float32))
    p64 = RedshiftPDF(pdf)
    flat = np.ones(NBINS)
    ref = p32.change_prior(flat)
    assert ref.valid.all()
    for scale in (1e-40, 1e40, 1e-300):
        for out in (p32.change_prior(flat * scale), p32.change_prior(flat, flat * scale)):
            assert out.dtype == np.float32 and out.valid.all(), scale
            assert_allclose(out.pdf, ref.pdf, rtol=1e-6)
    narrow = np.exp(-0.5 * ((Z_CENTERS - 0.3) / 0.05) ** 2)    # 1e-147 at z = 1.6
    assert narrow.min() < 1e-140
    out = p32.change_prior(narrow)
    assert out.valid.all()
    expected = p64.change_prior(narrow)                       # float64 storage: the reference
    assert expected.valid.all()
    assert_allclose(out.pdf, expected.pdf.astype(np.float32), rtol=1e-5, atol=1e-30)
    assert_allclose(out.median(), expected.median(), atol=1e-6)


@pytest.mark.parametrize("old, new, match", [
    (np.ones(NBINS - 1), None, "one value per bin"),
    (np.r_[0.0, np.ones(NBINS - 1)], None, "positive in every bin"),
    (np.r_[np.nan, np.ones(NBINS - 1)], None, "finite"),
    (np.ones(NBINS), -np.ones(NBINS), "non-negative"),
    (np.ones(NBINS), np.zeros(NBINS), "positive somewhere"),
])
def test_change_prior_rejects_bad_priors(old, new, match):
    p = RedshiftPDF(np.ones(NBINS))
    with pytest.raises(ValueError, match=match):
        p.change_prior(old, new)


def test_redshift_prior_is_a_smooth_positive_density():
    from astro_mantis.pdf import redshift_prior

    z = np.random.default_rng(3).gamma(3.0, 0.1, 50_000)
    prior = redshift_prior(z)
    assert prior.shape == (NBINS,) and np.all(prior > 0)
    assert np.sum(prior * Z_WIDTHS) == pytest.approx(1.0)
    # close to the true gamma density where it is large, and smoother than the histogram
    from scipy.stats import gamma

    truth = gamma(3.0, scale=0.1).pdf(Z_CENTERS)
    core = (Z_CENTERS > 0.1) & (Z_CENTERS < 0.6)
    assert_allclose(prior[core], truth[core], rtol=0.1)
    raw = redshift_prior(z, smoothing=0)
    assert np.abs(np.diff(prior)).sum() < 0.5 * np.abs(np.diff(raw)).sum()
    # from counts: the same; empty bins still positive
    counts, _ = np.histogram(z, bins=Z_EDGES)
    assert_allclose(redshift_prior(counts=counts), prior)
    assert np.all(redshift_prior(counts=np.zeros(NBINS)) > 0)
    edges = np.linspace(0, 2, 11)
    assert redshift_prior(z, edges=edges).shape == (10,)
    for kw, match in [({}, "exactly one"), ({"z": z, "counts": counts}, "exactly one"),
                      ({"counts": np.ones(3)}, "counts must hold one value per bin"),
                      ({"counts": -np.ones(NBINS)}, "counts must be non-negative"),
                      ({"z": z, "smoothing": -1}, "smoothing")]:
        with pytest.raises(ValueError, match=match):
            redshift_prior(**kw)


# -- audit fixes -------------------------------------------------------------------------
def test_from_qp_one_object_histogram_gives_one_row():
    """qp stores one histogram as a row of shape (nbins,): still n=1, as for other kinds."""
    qp = pytest.importorskip("qp")
    p = RedshiftPDF(gaussians(0.5, 0.05))
    ens = p.to_qp()
    assert ens.npdf == 1
    back = RedshiftPDF.from_qp(ens)
    assert not back.isscalar and len(back) == 1 and back.shape == (1, NBINS)
    assert_allclose(back.pdf, p.pdf, rtol=1e-12)
    assert_allclose(RedshiftPDF.from_qp(RedshiftPDF(gaussians(0.5, 0.05)[0]).to_qp()).pdf,
                    p.pdf, rtol=1e-12)                     # a scalar PDF's ensemble too
    norm = qp.Ensemble(qp.stats.norm, data=dict(loc=np.array([[0.5]]),
                                                scale=np.array([[0.05]])))
    assert len(RedshiftPDF.from_qp(norm)) == 1              # the same as a histogram


def test_redshift_prior_leaves_out_the_upper_edge():
    """Bins are [z_k, z_k+1): z = 1.6 (the last edge) is outside, not in the last bin."""
    from astro_mantis.pdf import redshift_prior

    z = np.array([0.5, 1.6, 1.5999, 2.0, -0.1, np.nan])
    counts = np.zeros(NBINS)
    counts[np.searchsorted(Z_EDGES, [0.5, 1.5999], side="right") - 1] = 1
    assert counts[-1] == 1
    for smoothing in (0, 0.04):
        assert_array_equal(redshift_prior(z, smoothing=smoothing),
                           redshift_prior(counts=counts, smoothing=smoothing))
    edges = np.linspace(0.0, 1.0, 11)
    assert_array_equal(redshift_prior([0.05, 1.0], edges=edges, smoothing=0),
                       redshift_prior(counts=np.r_[1.0, np.zeros(9)], edges=edges,
                                      smoothing=0))


@pytest.mark.parametrize("counts, match, wrong", [
    (np.r_[np.nan, np.ones(NBINS - 1)], r"counts must be finite; got 1 non-finite value\(s\), "
                                        r"in bins \[0\]", "shape"),
    (np.r_[np.ones(NBINS - 1), np.inf], r"finite.*in bins \[399\]", "shape"),
    (np.r_[-1.0, np.ones(NBINS - 1)], r"counts must be non-negative; got 1 negative value\(s\), "
                                      r"in bins \[0\]", "shape"),
    (np.ones(3), r"one value per bin, shape \(400,\); got shape \(3,\)", "finite"),
])
def test_redshift_prior_errors_say_what_is_wrong(counts, match, wrong):
    from astro_mantis.pdf import redshift_prior

    with pytest.raises(ValueError, match=match) as info:
        redshift_prior(counts=counts)
    assert wrong not in str(info.value)


@pytest.mark.parametrize("old, new, match, wrong", [
    (np.r_[np.nan, np.ones(NBINS - 1)], None, r"old prior must be finite in every bin; "
                                              r"got 1 non-finite value\(s\), in bins \[0\]",
     "shape"),
    (np.ones(NBINS), np.r_[np.ones(NBINS - 2), np.inf, np.nan], r"new prior must be finite.*"
                                                                r"in bins \[398, 399\]", "shape"),
    (np.r_[np.ones(NBINS - 1), -2.0], None, r"positive in every bin.*1 value\(s\) <= 0, in "
                                            r"bins \[399\]", "shape"),
    (np.ones((2, NBINS)), None, r"one value per bin, shape \(400,\); got shape \(2, 400\)",
     "finite"),
])
def test_change_prior_errors_say_what_is_wrong(old, new, match, wrong):
    with pytest.raises(ValueError, match=match) as info:
        RedshiftPDF(np.ones(NBINS)).change_prior(old, new)
    assert wrong not in str(info.value)


def test_change_prior_works_in_chunks(monkeypatch):
    """Its float64 temporaries stay chunk-sized: the result is the one full-size array."""
    import tracemalloc

    rng = np.random.default_rng(11)
    p = RedshiftPDF(rng.random((12_000, NBINS), dtype=np.float32) + 0.01)
    old = np.exp(-Z_CENTERS / 0.5)
    new = np.exp(-0.5 * ((Z_CENTERS - 0.8) / 0.3) ** 2)
    # what it computes: the product normalised in float64, stored in the storage type
    ref = RedshiftPDF(p.pdf.astype(np.float64) * (new / old), dtype=np.float64,
                      allow_invalid=True).pdf.astype(np.float32)
    monkeypatch.setattr(pdfmod, "_CHUNK_ELEMENTS", 160_000)    # 400 rows at a time
    tracemalloc.start()
    try:
        out = p.change_prior(old, new)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.dtype == np.float32
    assert_allclose(out.pdf, ref, rtol=1e-6)
    result = out.pdf.nbytes                                     # 19.2 MB
    assert peak < 1.5 * result, (peak, result)                  # whole float64 copies: 4x


def test_from_table_copy_false_normalises_the_column_in_place():
    """copy=False: the column itself is normalised, and partly-NaN rows become all NaN."""
    from astropy.table import Table

    raw = gaussians([0.3, 0.8, 1.2], [0.05, 0.05, 0.05], dtype=np.float32) * 7.0
    raw[1, :10] = np.nan
    table = Table({"z_pdf": raw})
    column = table["z_pdf"]
    kept = np.array(column)
    p = RedshiftPDF.from_table(table, copy=False)
    assert np.shares_memory(p.pdf, np.asarray(column))
    assert_array_equal(p.valid, [True, False, True])
    assert_allclose(np.asarray(column)[[0, 2]] @ Z_WIDTHS, 1.0, rtol=1e-6)  # normalised
    assert np.isnan(np.asarray(column)[1]).all()                        # all NaN now
    table2 = Table({"z_pdf": kept.copy()})
    RedshiftPDF.from_table(table2)                              # the default leaves it be
    assert_array_equal(np.asarray(table2["z_pdf"]), kept)


def test_which_table_formats_keep_the_bin_edges(tmp_path):
    """As docs/pdf.rst says: FITS, ECSV and Parquet keep the column meta, VOTable drops it
    (then a 400-bin column is read on Z_EDGES, wrong for other bins: edges= fixes it)."""
    import warnings

    from astropy.table import Table

    edges = np.linspace(0.0, 2.0, NBINS + 1)
    p = RedshiftPDF(gaussians([0.3, 0.9], [0.05, 0.1]), edges=edges)
    table = Table(p.to_table_columns())
    import importlib.util

    names = ["z.fits", "z.ecsv"] + (["z.parquet"] if importlib.util.find_spec("pyarrow")
                                    else [])
    for name in names:
        table.write(tmp_path / name)
        back = RedshiftPDF.from_table(Table.read(tmp_path / name))
        assert_allclose(back.edges, edges, err_msg=name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                # VOTable's own notes on the meta
        table.write(tmp_path / "z.xml", format="votable")
        read = Table.read(tmp_path / "z.xml", format="votable")
    assert "bin_edges" not in read["z_pdf"].meta
    assert_allclose(RedshiftPDF.from_table(read).edges, Z_EDGES)        # the fallback
    assert_allclose(RedshiftPDF.from_table(read, edges=edges).mean(), p.mean(), rtol=1e-6)


def test_from_qp_warns_when_probability_lies_outside_the_bins():
    """Probability beyond [0, 1.6) was once dropped and renormalised without a word."""
    qp = pytest.importorskip("qp")
    from astropy.utils.exceptions import AstropyUserWarning

    norm = qp.Ensemble(qp.stats.norm, data=dict(loc=np.array([[0.5], [1.5], [2.5]]),
                                                scale=np.array([[0.05], [0.2], [0.05]])))
    with pytest.warns(AstropyUserWarning, match=r"2 of 3 distributions .* outside the bins"):
        back = RedshiftPDF.from_qp(norm)
    assert_allclose(back.mean()[0], 0.5, atol=1e-4)  # the first is kept as it was
    inside = qp.Ensemble(qp.stats.norm, data=dict(loc=np.array([[0.5]]),
                                                  scale=np.array([[0.05]])))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RedshiftPDF.from_qp(inside)  # all of it inside: no warning


def test_from_table_reads_the_grid_the_table_job_recorded(tmp_path):
    """A VOTable keeps the table's meta but not the column's: the recorded z_zmin/z_zmax/
    z_nbins give the grid, not the standard 0-1.6 one."""
    from astropy.table import Table

    edges = np.linspace(0.0, 3.0, NBINS + 1)
    p = RedshiftPDF(np.exp(-0.5 * ((0.5 * (edges[:-1] + edges[1:]) - np.array([[0.9], [2.1]]))
                                   / 0.05) ** 2), edges=edges)
    t = Table({"z_pdf": p.pdf.astype(np.float32)})
    t.meta.update({"Z_ZMIN": 0.0, "Z_ZMAX": 3.0, "Z_NBINS": NBINS})  # as FITS spells them
    back = RedshiftPDF.from_table(t)
    assert_allclose(back.edges, edges)
    assert_allclose(back.median(), [0.9, 2.1], atol=0.01)
    t.meta["Z_NBINS"] = 200
    with pytest.raises(ValueError, match="records z_nbins = 200"):
        RedshiftPDF.from_table(t)
    std = Table({"z_pdf": p.pdf}, meta={"z_zmin": 0.0, "z_zmax": 1.6, "z_nbins": NBINS})
    assert RedshiftPDF.from_table(std).edges is Z_EDGES or np.array_equal(
        RedshiftPDF.from_table(std).edges, Z_EDGES)
