# Licensed under a 3-clause BSD style license - see LICENSE
"""Photometric-redshift metrics and their diagnostic plots.

`photoz_metrics` computes the standard point-estimate metrics (bias, NMAD, outlier
fractions) and, given the PDFs as a `~astro_mantis.pdf.RedshiftPDF`, the
probabilistic ones (CRPS, CDE loss, PIT uniformity, interval coverage), each with a
bootstrap standard error. The per-object building blocks (`crps`, `cde_loss`,
`pit`) are public too, for training loops and custom summaries. The plots
(`plot_zphot_zspec`, `plot_pit`, `plot_nz`) draw into a matplotlib
`~matplotlib.axes.Axes` and return it. `binned_metrics` tabulates `photoz_metrics` per
bin of true redshift (see :ref:`evaluation`).

With :math:`\\Delta z = z_\\mathrm{phot} - z_\\mathrm{spec}` and
:math:`\\delta = \\Delta z / (1 + z_\\mathrm{spec})`:

* bias: mean and median of :math:`\\delta`;
* NMAD: :math:`1.4826\\,\\mathrm{median}(|\\delta - \\mathrm{median}(\\delta)|)`;
* outlier fractions: fraction with :math:`|\\delta| > 0.15` and :math:`> 0.05`;
* CRPS: :math:`\\int (F(z) - H(z - z_\\mathrm{spec}))^2\\,dz`, averaged over objects
  (exact for the histogram PDF);
* CDE loss (Izbicki & Lee 2017):
  :math:`\\langle \\int p(z)^2\\,dz \\rangle - 2 \\langle p(z_\\mathrm{spec}) \\rangle`;
* PIT: :math:`F(z_\\mathrm{spec})`, uniform on [0, 1] for calibrated PDFs; its
  Kolmogorov–Smirnov and Cramér–von Mises statistics against U(0, 1);
* coverage: the fraction of :math:`z_\\mathrm{spec}` inside the central 68% and 95%
  credible intervals.
"""
from collections.abc import Mapping

import numpy as np

from .pdf import ZMAX, ZMIN, RedshiftPDF

__all__ = ["photoz_metrics", "PhotozMetrics", "binned_metrics", "crps", "cde_loss", "pit",
           "plot_zphot_zspec", "plot_pit", "plot_nz", "NMAD_SCALE", "BINNED_METRICS",
           "BINNED_EDGES", "POINT_METRICS", "PDF_METRICS"]

#: Scale turning a median absolute deviation into a Gaussian sigma, 1.4826.
NMAD_SCALE = 1.4826

# Name, description of each metric, in reporting order.
_DESCRIPTIONS = {
    "bias_mean": "mean of (z_phot - z_spec) / (1 + z_spec)",
    "bias_median": "median of (z_phot - z_spec) / (1 + z_spec)",
    "nmad": "1.4826 x median absolute deviation of (z_phot - z_spec) / (1 + z_spec)",
    "outlier_0.15": "fraction with |z_phot - z_spec| / (1 + z_spec) > 0.15",
    "outlier_0.05": "fraction with |z_phot - z_spec| / (1 + z_spec) > 0.05",
    "crps": "continuous ranked probability score, mean over objects",
    "cde_loss": "conditional density estimation loss (Izbicki & Lee 2017)",
    "pit_ks": "Kolmogorov-Smirnov statistic of the PIT values against U(0, 1)",
    "pit_cvm": "Cramer-von Mises statistic of the PIT values against U(0, 1)",
    "coverage_68": "fraction of z_spec inside the central 68% interval",
    "coverage_95": "fraction of z_spec inside the central 95% interval",
    "expected_outlier_0.05": "outlier fraction at 0.05 the PDFs expect for z_phot: "
                             "1 - mean odds (RedshiftPDF.odds)",
}
#: Names of the metrics of a point estimate (`photoz_metrics`, `binned_metrics`).
POINT_METRICS = ("bias_mean", "bias_median", "nmad", "outlier_0.15", "outlier_0.05")
#: Names of the metrics of the PDFs (`photoz_metrics`, `binned_metrics`).
PDF_METRICS = ("crps", "cde_loss", "pit_ks", "pit_cvm", "coverage_68", "coverage_95",
               "expected_outlier_0.05")

# Elements per temporary array in chunked or bootstrap computations.
_BLOCK = 4_000_000


def _chunks(n, width):
    step = max(1, _BLOCK // max(int(width), 1))
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def _as_pdf(pdf):
    if not isinstance(pdf, RedshiftPDF):
        raise TypeError(f"pdf must be a RedshiftPDF, got {type(pdf).__name__}")
    if pdf.isscalar:
        return RedshiftPDF._wrap(pdf._pdf, pdf.edges, pdf._valid, False, pdf.meta)
    return pdf


def _z_array(z, name, n=None):
    z = np.asarray(z, dtype=np.float64)
    if np.ma.isMaskedArray(z):  # pragma: no cover (asarray drops masks)
        z = z.filled(np.nan)
    z = np.atleast_1d(z)
    if z.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {z.shape}")
    if n is not None and len(z) != n:
        raise ValueError(f"{name} has {len(z)} values but the PDF has {n} rows")
    return z


def _filled(z):
    """Masked input (e.g. a masked table column) to a float array with NaN."""
    if np.ma.isMaskedArray(z) or hasattr(z, "mask"):
        return np.ma.filled(np.ma.asarray(z, dtype=np.float64), np.nan)
    return z


def pit(pdf, z_true):
    """Probability integral transform: each PDF's CDF at its true redshift.

    Parameters
    ----------
    pdf : `~astro_mantis.pdf.RedshiftPDF`
        N PDFs.
    z_true : array-like
        N true redshifts.

    Returns
    -------
    `~numpy.ndarray`
        Shape ``(N,)``, in [0, 1]; NaN for invalid rows or NaN ``z_true``.
    """
    pdf = _as_pdf(pdf)
    return pdf.cdf(_z_array(_filled(z_true), "z_true", len(pdf)))


def crps(pdf, z_true):
    """Continuous ranked probability score of each PDF, exact for the histogram.

    .. math:: \\mathrm{CRPS} = \\int_{-\\infty}^{\\infty} (F(z) - H(z - z_\\mathrm{true}))^2 \\, dz

    with ``F`` the (piecewise-linear) CDF and ``H`` the Heaviside step. A true
    redshift outside the bins adds its distance to the nearest edge. Lower is
    better; it has the units of z.

    Parameters
    ----------
    pdf : `~astro_mantis.pdf.RedshiftPDF`
        N PDFs.
    z_true : array-like
        N true redshifts.

    Returns
    -------
    `~numpy.ndarray`
        Shape ``(N,)``; NaN for invalid rows or NaN ``z_true``.
    """
    pdf = _as_pdf(pdf)
    y = _z_array(_filled(z_true), "z_true", len(pdf))
    e = pdf.edges
    w = np.diff(e)
    nb = pdf.nbins
    out = np.empty(len(pdf))
    for s in _chunks(len(pdf), nb + 1):
        # the CDF at the edges, transposed (nb + 1, rows): F[0] = 0, F[-1] = 1
        F, total = pdf._cdf_edges_t(s)
        with np.errstate(invalid="ignore", divide="ignore"):
            F /= total
        Fk = F[:-1]
        m = np.diff(F, axis=0)                     # bin probabilities
        # integral of F^2 over the bins (F linear within each bin)
        i2 = w @ (Fk * (Fk + m) + m * m / 3.0)
        # G(z) = integral of F from e[0] to z, at the edges
        G = np.zeros_like(F)
        np.cumsum((Fk + 0.5 * m) * w[:, None], axis=0, out=G[1:])
        ys = y[s]
        a = np.clip(ys, e[0], e[-1])
        k = np.clip(np.searchsorted(e, a, side="right") - 1, 0, nb - 1)
        cols = np.arange(len(ys))
        t = (a - e[k]) / w[k]
        fk, mk = Fk[k, cols], m[k, cols]
        g_a = G[k, cols] + w[k] * (fk * t + 0.5 * mk * t * t)
        out[s] = (i2 - 2.0 * (G[-1] - g_a) + (e[-1] - a)
                  + np.clip(e[0] - ys, 0, None) + np.clip(ys - e[-1], 0, None))
    out[np.isnan(y)] = np.nan
    return out


def _cde_terms(pdf, y):
    """Per-object CDE loss terms, int p^2 dz - 2 p(y)."""
    w = np.diff(pdf.edges)
    sq = np.empty(len(pdf))
    for s in _chunks(len(pdf), pdf.nbins):
        block = np.asarray(pdf._pdf[s], dtype=np.float64)
        sq[s] = (block * block) @ w
    return sq - 2.0 * pdf.pdf_at(y)


def cde_loss(pdf, z_true):
    """Conditional density estimation loss (Izbicki & Lee 2017), lower is better.

    .. math:: L = \\frac{1}{N} \\sum_i \\int p_i(z)^2 \\, dz
              - \\frac{2}{N} \\sum_i p_i(z_{\\mathrm{true}, i})

    It estimates, up to a constant, the integrated squared error between the PDFs and
    the true conditional densities. A flat PDF on [0, 1.6) scores ``-1/1.6``; a PDF
    concentrated in the single bin (width ``w``) of the truth scores ``-1/w``.
    Objects with an invalid PDF or a NaN truth are left out of the mean.

    Parameters
    ----------
    pdf : `~astro_mantis.pdf.RedshiftPDF`
        N PDFs.
    z_true : array-like
        N true redshifts.

    Returns
    -------
    float
        NaN if no object can be used.
    """
    pdf = _as_pdf(pdf)
    y = _z_array(_filled(z_true), "z_true", len(pdf))
    terms = _cde_terms(pdf, y)
    terms = terms[np.isfinite(terms)]
    return float(terms.mean()) if terms.size else float("nan")


# -- statistics on bootstrap resamples -------------------------------------------------
def _ks_rows(u):
    """Kolmogorov-Smirnov statistic against U(0, 1) of each row of u (sorted in place)."""
    u.sort(axis=1)
    n = u.shape[1]
    i = np.arange(1, n + 1)
    return np.maximum((i / n - u).max(axis=1), (u - (i - 1) / n).max(axis=1))


def _cvm_rows(u):
    """Cramér-von Mises statistic against U(0, 1) of each row of u (sorted in place)."""
    u.sort(axis=1)
    n = u.shape[1]
    i = np.arange(1, n + 1)
    return 1.0 / (12 * n) + ((u - (2 * i - 1) / (2.0 * n)) ** 2).sum(axis=1)


def _nmad_rows(x):
    med = np.median(x, axis=1)
    return NMAD_SCALE * np.median(np.abs(x - med[:, None]), axis=1)


def _bootstrap(per_object, n_bootstrap, rng):
    """Bootstrap standard errors of each metric, resampling objects.

    ``per_object`` maps metric name to ``(kind, values)``: ``kind`` is "mean",
    "median", "nmad", "ks" or "cvm".
    """
    n = len(next(iter(per_object.values()))[1])
    errors = {name: float("nan") for name in per_object}
    if n_bootstrap < 2 or n < 2:
        return errors
    samples = {name: np.empty(n_bootstrap) for name in per_object}
    step = max(1, _BLOCK // n)
    for start in range(0, n_bootstrap, step):
        b = min(step, n_bootstrap - start)
        idx = rng.integers(0, n, size=(b, n))
        for name, (kind, values) in per_object.items():
            x = values[idx]
            if kind == "mean":
                r = x.mean(axis=1)
            elif kind == "median":
                r = np.median(x, axis=1)
            elif kind == "nmad":
                r = _nmad_rows(x)
            elif kind == "ks":
                r = _ks_rows(x)
            else:
                r = _cvm_rows(x)
            samples[name][start:start + b] = r
    return {name: float(np.std(v, ddof=1)) for name, v in samples.items()}


class PhotozMetrics(Mapping):
    """The result of `photoz_metrics`: metric name → value, with errors.

    It behaves as a read-only, ordered dict of floats (``m["nmad"]``); the
    bootstrap standard errors are in ``errors``, the descriptions in
    ``descriptions``.

    Attributes
    ----------
    errors : dict
        Metric name → bootstrap standard error (NaN without bootstrap).
    descriptions : dict
        Metric name → one-line definition.
    n : int
        Number of objects used.
    n_excluded : int
        Number of objects left out (NaN or masked redshift, ``z_spec <= -1``,
        invalid PDF row).
    excluded : `~numpy.ndarray`
        Boolean mask over the input objects, True where left out.
    pit : `~numpy.ndarray` or None
        PIT values aligned with the input (NaN where excluded); None without PDFs.
    pit_ks_pvalue, pit_cvm_pvalue : float or None
        p-values of the two uniformity tests (scipy), None without PDFs.
    n_bootstrap : int
        Number of bootstrap resamples.
    """

    def __init__(self, values, errors, n, excluded, pit=None, pit_ks_pvalue=None,
                 pit_cvm_pvalue=None, n_bootstrap=0):
        self._values = dict(values)
        self.errors = dict(errors)
        self.descriptions = {k: _DESCRIPTIONS[k] for k in self._values}
        self.n = int(n)
        self.excluded = excluded
        self.n_excluded = int(np.count_nonzero(excluded))
        self.pit = pit
        self.pit_ks_pvalue = pit_ks_pvalue
        self.pit_cvm_pvalue = pit_cvm_pvalue
        self.n_bootstrap = int(n_bootstrap)

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def as_dict(self):
        """Plain dict ``{name: {"value": v, "error": e}}`` (e.g. for JSON)."""
        return {k: {"value": v, "error": self.errors[k]} for k, v in self._values.items()}

    def as_table(self):
        """The metrics as an astropy `~astropy.table.Table`.

        Returns
        -------
        `~astropy.table.Table`
            Columns ``metric``, ``value``, ``error``, ``description``; ``meta``
            holds ``n``, ``n_excluded`` and ``n_bootstrap``.
        """
        from astropy.table import Table

        names = list(self._values)
        return Table(
            {"metric": names,
             "value": [self._values[k] for k in names],
             "error": [self.errors[k] for k in names],
             "description": [self.descriptions[k] for k in names]},
            meta={"n": self.n, "n_excluded": self.n_excluded, "n_bootstrap": self.n_bootstrap})

    def __repr__(self):
        lines = [f"<PhotozMetrics n={self.n} n_excluded={self.n_excluded}"
                 f" n_bootstrap={self.n_bootstrap}>"]
        width = max((len(k) for k in self._values), default=0)
        for k, v in self._values.items():
            lines.append(f"  {k:<{width}s} {v: .5f} +/- {self.errors[k]:.5f}")
        return "\n".join(lines)


def photoz_metrics(z_phot, z_spec, pdf=None, n_bootstrap=200, seed=0):
    """Standard photo-z metrics, with bootstrap standard errors.

    Parameters
    ----------
    z_phot : array-like or None
        Point estimates, shape ``(N,)``. None uses the PDF means (the Mantis Shrimp
        point estimate; needs ``pdf``).
    z_spec : array-like
        True (spectroscopic) redshifts, shape ``(N,)``. Masked values count as NaN.
    pdf : `~astro_mantis.pdf.RedshiftPDF`, optional
        The N PDFs; adds ``crps``, ``cde_loss``, ``pit_ks``, ``pit_cvm``,
        ``coverage_68``, ``coverage_95`` and ``expected_outlier_0.05``.
    n_bootstrap : int
        Number of bootstrap resamples of the objects for the standard errors
        (0 or 1: errors are NaN).
    seed : int or `numpy.random.Generator`
        Seed of the resampling (results are reproducible).

    Returns
    -------
    `PhotozMetrics`
        Ordered mapping name → value: ``bias_mean``, ``bias_median``, ``nmad``,
        ``outlier_0.15``, ``outlier_0.05`` and, with ``pdf``, the probabilistic
        metrics; its ``errors`` attribute holds the standard errors. Objects with NaN
        or masked redshifts, ``z_spec <= -1`` or an invalid PDF row are excluded and
        counted in ``n_excluded``; if none is left, every value is NaN.

    Notes
    -----
    With :math:`\\delta = (z_\\mathrm{phot} - z_\\mathrm{spec}) / (1 + z_\\mathrm{spec})`,
    NMAD is :math:`1.4826\\,\\mathrm{median}(|\\delta - \\mathrm{median}(\\delta)|)` and the
    outlier fractions count :math:`|\\delta| > 0.15` and :math:`> 0.05`. CRPS and CDE
    loss are averaged over objects (see `crps`, `cde_loss`); the PIT statistics
    are those of `scipy.stats.kstest` and `scipy.stats.cramervonmises` against
    U(0, 1); coverage counts ``lo <= z_spec <= hi`` for the central intervals of
    `RedshiftPDF.interval <astro_mantis.pdf.RedshiftPDF.interval>`.
    ``expected_outlier_0.05`` is the outlier fraction the PDFs themselves expect for
    the point estimates, one minus their mean `odds
    <astro_mantis.pdf.RedshiftPDF.odds>` at 0.05: beside ``outlier_0.05`` it tells
    whether the PDFs know how often ``z_phot`` is far off (equal, within the errors,
    for calibrated PDFs).
    """
    z_spec = _z_array(_filled(z_spec), "z_spec")
    n_all = len(z_spec)
    if pdf is not None:
        pdf = _as_pdf(pdf)
        if len(pdf) != n_all:
            raise ValueError(f"pdf has {len(pdf)} rows but z_spec has {n_all} values")
    if z_phot is None:
        if pdf is None:
            raise ValueError("give z_phot, or pdf to use the PDF means")
        z_phot = pdf.mean()
    z_phot = _z_array(_filled(z_phot), "z_phot", n_all)
    if len(z_phot) != n_all:  # pragma: no cover (checked above)
        raise ValueError("z_phot and z_spec differ in length")

    with np.errstate(invalid="ignore"):
        ok = np.isfinite(z_phot) & np.isfinite(z_spec) & (z_spec > -1)
    if pdf is not None:
        ok &= pdf.valid
    excluded = ~ok
    zp, zs = z_phot[ok], z_spec[ok]
    n = int(ok.sum())
    rng = np.random.default_rng(seed)

    delta = (zp - zs) / (1.0 + zs)
    per_object = {
        "bias_mean": ("mean", delta),
        "bias_median": ("median", delta),
        "nmad": ("nmad", delta),
        "outlier_0.15": ("mean", (np.abs(delta) > 0.15).astype(np.float64)),
        "outlier_0.05": ("mean", (np.abs(delta) > 0.05).astype(np.float64)),
    }
    pit_all = ks_p = cvm_p = None
    if pdf is not None:
        # per-object quantities on all rows (no copy of the PDFs), then keep the used
        zs_all = np.where(ok, z_spec, np.nan)
        pit_all = pdf.cdf(zs_all)
        pit_used = pit_all[ok]
        lo68, hi68 = pdf.interval(0.68)
        lo95, hi95 = pdf.interval(0.95)
        lo68, hi68, lo95, hi95 = lo68[ok], hi68[ok], lo95[ok], hi95[ok]
        per_object.update({
            "crps": ("mean", crps(pdf, zs_all)[ok]),
            "cde_loss": ("mean", _cde_terms(pdf, zs_all)[ok]),
            "pit_ks": ("ks", pit_used),
            "pit_cvm": ("cvm", pit_used),
            "coverage_68": ("mean", ((zs >= lo68) & (zs <= hi68)).astype(np.float64)),
            "coverage_95": ("mean", ((zs >= lo95) & (zs <= hi95)).astype(np.float64)),
            "expected_outlier_0.05": ("mean", 1.0 - pdf.odds(np.where(ok, z_phot, np.nan),
                                                            width=0.05)[ok]),
        })

    values = {}
    if n == 0:
        values = {name: float("nan") for name in per_object}
        errors = dict(values)
    else:
        for name, (kind, x) in per_object.items():
            if kind == "mean":
                values[name] = float(np.mean(x))
            elif kind == "median":
                values[name] = float(np.median(x))
            elif kind == "nmad":
                values[name] = float(_nmad_rows(x[None, :])[0])
        if pdf is not None:
            from scipy import stats

            ks = stats.kstest(pit_used, "uniform")
            values["pit_ks"], ks_p = float(ks.statistic), float(ks.pvalue)
            if n >= 2:
                cvm = stats.cramervonmises(pit_used, "uniform")
                values["pit_cvm"], cvm_p = float(cvm.statistic), float(cvm.pvalue)
            else:
                values["pit_cvm"] = float(_cvm_rows(pit_used[None, :].copy())[0])
        values = {name: values[name] for name in per_object}
        errors = _bootstrap(per_object, int(n_bootstrap), rng)
    return PhotozMetrics(values, errors, n, excluded, pit=pit_all, pit_ks_pvalue=ks_p,
                         pit_cvm_pvalue=cvm_p, n_bootstrap=n_bootstrap)


# -- plots ---------------------------------------------------------------------------
def plot_zphot_zspec(z_phot, z_spec, ax=None, zmax=ZMAX, kind=None, annotate=True, **kwargs):
    """Photometric against spectroscopic redshift, with the outlier boundaries.

    Draws the one-to-one line and the lines :math:`z_\\mathrm{phot} = z_\\mathrm{spec}
    \\pm 0.15 (1 + z_\\mathrm{spec})` beyond which an object is an outlier.

    Parameters
    ----------
    z_phot, z_spec : array-like
        Point estimates and true redshifts, shape ``(N,)``; NaN pairs are skipped.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw into; new ones are made otherwise.
    zmax : float
        Upper limit of both axes.
    kind : {"scatter", "hexbin"}, optional
        Default: points up to 5000 objects, a logarithmic hexbin density above.
    annotate : bool
        Write N, NMAD and the 0.15 outlier fraction in a corner.
    **kwargs
        Passed to `matplotlib.axes.Axes.scatter` or `matplotlib.axes.Axes.hexbin`.

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    from .plotting import zphot_zspec

    zp = _z_array(_filled(z_phot), "z_phot")
    zs = _z_array(_filled(z_spec), "z_spec", len(zp))
    ok = np.isfinite(zp) & np.isfinite(zs)
    zp, zs = zp[ok], zs[ok]
    annotation = None
    if annotate and len(zp):
        d = (zp - zs) / (1 + zs)
        nmad = NMAD_SCALE * np.median(np.abs(d - np.median(d)))
        out = np.mean(np.abs(d) > 0.15)
        annotation = f"N = {len(zp)}\nNMAD = {nmad:.4f}\n$f_{{0.15}}$ = {out:.3f}"
    return zphot_zspec(zp, zs, zmax, ax=ax, kind=kind, annotation=annotation, outlier=0.15,
                       **kwargs)


def plot_pit(pit, ax=None, bins=20, band_sigma=2.0, **kwargs):
    """Histogram of PIT values with the uniform reference and its scatter band.

    For calibrated PDFs the PIT values are uniform: the histogram (as a density) is
    1 everywhere, up to the binomial scatter of the counts, shaded as
    ``1 +/- band_sigma * sqrt(bins * (1 - 1/bins) / N)``. A U shape means PDFs too
    narrow (over-confident), a hump too wide, a slope a biased redshift.

    Parameters
    ----------
    pit : array-like
        PIT values in [0, 1] (e.g. the ``pit`` attribute of a `PhotozMetrics`, or
        `pit`); NaN are skipped.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw into; new ones are made otherwise.
    bins : int
        Number of histogram bins on [0, 1].
    band_sigma : float
        Half-width of the shaded band in binomial standard deviations (0: no band).
    **kwargs
        Passed to `matplotlib.axes.Axes.hist`.

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    from .plotting import pit_histogram

    return pit_histogram(_filled(pit), ax=ax, bins=bins, band_sigma=band_sigma, **kwargs)


def plot_nz(z_spec, pdf=None, ax=None, bins=40, zrange=(ZMIN, ZMAX), **kwargs):
    """Redshift distribution: histogram of true redshifts and the stacked PDF.

    Parameters
    ----------
    z_spec : array-like
        True redshifts; NaN are skipped.
    pdf : `~astro_mantis.pdf.RedshiftPDF`, optional
        PDFs whose average (`RedshiftPDF.stack <astro_mantis.pdf.RedshiftPDF.stack>`)
        is drawn on top.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw into; new ones are made otherwise.
    bins : int or array-like
        Histogram bins of the true redshifts.
    zrange : tuple of float
        Range of the histogram and of the x axis.
    **kwargs
        Passed to `matplotlib.axes.Axes.hist`.

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    from .plotting import nz_histogram

    zs = _z_array(_filled(z_spec), "z_spec")
    stacked = None
    if pdf is not None:
        stacked = _as_pdf(pdf).stack()
        stacked = (stacked.pdf, stacked.edges)
    return nz_histogram(zs, zrange, ax=ax, bins=bins, stacked=stacked, **kwargs)


# -- per-redshift-bin summary ------------------------------------------------------------
#: Metrics of `binned_metrics`, in column order (the last four need PDFs).
BINNED_METRICS = ("nmad", "bias_median", "bias_mean", "outlier_0.05", "outlier_0.15",
                  "crps", "pit_ks", "coverage_68", "coverage_95")
#: Default redshift bins of `binned_metrics`: steps of 0.1 over the model's range
#: (`astro_mantis.pdf.ZMIN` to `astro_mantis.pdf.ZMAX`: 0, 0.1, ..., 1.6).
BINNED_EDGES = tuple(round(ZMIN + 0.1 * k, 1)
                     for k in range(int(round((ZMAX - ZMIN) / 0.1)) + 1))


def binned_metrics(z_true, pdf=None, z_point=None, edges=BINNED_EDGES, min_count=50,
                   n_bootstrap=200, seed=0):
    """`photoz_metrics` per bin of true redshift, plus an overall row, as a Table.

    Parameters
    ----------
    z_true : array-like
        True (spectroscopic) redshifts, shape ``(N,)``; masked or NaN values are
        left out (as in `photoz_metrics`).
    pdf : `~astro_mantis.pdf.RedshiftPDF`, optional
        The N PDFs; adds the columns ``crps``, ``pit_ks``, ``coverage_68`` and
        ``coverage_95``.
    z_point : array-like or str, optional
        Point estimates, shape ``(N,)``, or the name of a PDF point estimator of
        `~astro_mantis.pdf.point_estimate` (needs ``pdf``). Default: the PDF mean
        (as `photoz_metrics`).
    edges : array-like
        Increasing edges of the bins of **true** redshift (default 0, 0.1, ...,
        1.6). Bins are half-open, ``[lo, hi)``, except the last, which includes
        its upper edge.
    min_count : int
        Bins with fewer usable objects keep their row, with ``n`` filled in and
        every metric masked.
    n_bootstrap : int
        Bootstrap resamples per row for the standard errors (0 or 1: NaN errors).
    seed : int
        Seed of the resampling; each row uses the same seed, so results are
        reproducible and a row does not depend on the other bins.

    Returns
    -------
    `~astropy.table.Table`
        One row per bin, in order, then a last row ``"all"`` over every usable
        object (inside the edges or not; never masked unless it has no object).
        Columns: ``bin`` (e.g. ``"0.0-0.1"``), ``z_lo``, ``z_hi`` (NaN in the
        ``"all"`` row), ``n`` (usable objects: finite ``z_true > -1``, finite
        point estimate, valid PDF row) and, for each metric of
        ``BINNED_METRICS`` (the probabilistic ones only with ``pdf``), a masked
        column of values and one ``<metric>_err`` of bootstrap standard errors.
        ``meta`` holds ``edges``, ``min_count``, ``n_bootstrap``, ``seed``,
        ``point_estimate`` (the estimator's name, or ``"given"``) and
        ``descriptions`` (metric name → definition).

    Raises
    ------
    ValueError
        If the edges are not increasing, ``min_count`` is negative, the lengths
        disagree, or ``z_point`` is a name without ``pdf``.

    Notes
    -----
    Metric definitions are those of `photoz_metrics`, with
    :math:`\\delta = (z_\\mathrm{point} - z_\\mathrm{true}) / (1 + z_\\mathrm{true})`.
    Binning by the *true* redshift shows how the estimate depends on where the galaxy
    really is: a posterior mean is pulled toward the bulk of the training sample, so it
    reads high in the lowest bins and low in the highest ones even when the PDFs are
    well calibrated overall.
    """
    from astropy.table import MaskedColumn, Table

    from .pdf import point_estimate

    z_true = _z_array(_filled(z_true), "z_true")
    n_all = len(z_true)
    if pdf is not None:
        pdf = _as_pdf(pdf)
        if len(pdf) != n_all:
            raise ValueError(f"pdf has {len(pdf)} rows but z_true has {n_all} values")
    if isinstance(z_point, str) or z_point is None:
        name = "mean" if z_point is None else z_point
        if pdf is None:
            raise ValueError(f"z_point={z_point!r} needs pdf (the PDFs to take the "
                             f"{name} of); give pdf, or the point estimates as an array")
        z_point = point_estimate(pdf, name)
    else:
        name = "given"
    z_point = _z_array(_filled(z_point), "z_point", n_all)
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) \
            or not np.all(np.diff(edges) > 0):
        raise ValueError(f"edges must be at least two finite, increasing values; got {edges}")
    if int(min_count) != min_count or min_count < 0:
        raise ValueError(f"min_count must be a non-negative integer, got {min_count!r}")

    with np.errstate(invalid="ignore"):
        usable = np.isfinite(z_true) & (z_true > -1) & np.isfinite(z_point)
    if pdf is not None:
        usable &= pdf.valid
    k = np.searchsorted(edges, z_true, side="right") - 1
    k[z_true == edges[-1]] = len(edges) - 2      # the last bin is closed
    k[~np.isfinite(z_true)] = -1
    names = [m for m in BINNED_METRICS if pdf is not None or m in POINT_METRICS]
    nb = len(edges) - 1
    rows = [(np.flatnonzero(usable & (k == b)), False) for b in range(nb)]
    rows.append((np.flatnonzero(usable), True))
    values = np.full((nb + 1, len(names)), np.nan)
    errors = np.full((nb + 1, len(names)), np.nan)
    masked = np.zeros(nb + 1, dtype=bool)
    counts = np.array([len(idx) for idx, _ in rows], dtype=np.int64)
    for r, (idx, overall) in enumerate(rows):
        if len(idx) == 0 or (not overall and len(idx) < min_count):
            masked[r] = True
            continue
        m = photoz_metrics(z_point[idx], z_true[idx], pdf=None if pdf is None else pdf[idx],
                           n_bootstrap=n_bootstrap, seed=seed)
        values[r] = [m[c] for c in names]
        errors[r] = [m.errors[c] for c in names]

    decimals = next((d for d in range(7) if np.allclose(np.round(edges, d), edges, rtol=0,
                                                         atol=1e-9)), 6)
    labels = [f"{edges[b]:.{decimals}f}-{edges[b + 1]:.{decimals}f}" for b in range(nb)] \
        + ["all"]
    cols = {"bin": labels,
            "z_lo": np.append(edges[:-1], np.nan), "z_hi": np.append(edges[1:], np.nan),
            "n": counts}
    for j, c in enumerate(names):
        cols[c] = MaskedColumn(values[:, j], mask=masked, description=_DESCRIPTIONS[c])
        cols[f"{c}_err"] = MaskedColumn(errors[:, j], mask=masked,
                                        description=f"bootstrap standard error of {c}")
    return Table(cols, meta={"edges": [float(e) for e in edges], "min_count": int(min_count),
                             "n_bootstrap": int(n_bootstrap), "seed": seed,
                             "point_estimate": name,
                             "descriptions": {c: _DESCRIPTIONS[c] for c in names}})
