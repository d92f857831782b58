# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Calibration of the redshift PDFs: temperature scaling and PIT recalibration.

A network trained with cross-entropy is often over-confident: its PDFs are too narrow,
so the true redshifts fall in their tails too often. Temperature scaling (Guo et al.
2017) divides all logits by one scalar ``T`` before the softmax, chosen to minimise the
negative log-likelihood of the true bins on the validation split. ``T > 1`` widens the
PDFs, ``T < 1`` sharpens them; the ranking of the bins, and so the mode, is unchanged.

One scalar only fixes the *width* of the PDFs. When the distribution of PIT values
has another shape (too many true redshifts in one tail, say) a PIT recalibration
(Bordoloi, Lilly & Amara 2010) follows: with ``G`` the cumulative distribution of the
validation PIT values, every PDF's CDF ``F`` is replaced by ``G(F)``, which makes the
validation PIT values uniform by construction. `PITMap` holds ``G`` as a piecewise
linear function on a few knots (smooth enough not to fit the noise of the validation
sample) and is stored in the model card; `astro_mantis.models.predict` applies it.

The quality of the calibration is judged with the probability integral transform
(PIT): the value of each PDF's CDF at the true redshift. For calibrated PDFs the PIT
values are uniform on [0, 1]; we report the Kolmogorov-Smirnov distance of their
distribution from the uniform one, and the fraction of true redshifts inside the
central 68% (and 95%) credible interval (coverage), before and after scaling.
"""
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

from ..pdf import RedshiftPDF
from .data import z_to_bin

__all__ = ["TemperatureCalibration", "PITMap", "PIT_KNOTS", "fit_temperature", "nll",
           "pit_values", "calibration_summary", "tta_calibration"]

#: Search range of the temperature.
TEMPERATURE_BOUNDS = (0.05, 20.0)


def _log_softmax(logits, beta):
    x = np.asarray(logits, dtype=np.float64) * beta
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def nll(logits, z, temperature=1.0, edges=None):
    """Mean negative log-likelihood of the true bins under ``softmax(logits / T)``.

    Parameters
    ----------
    logits : array-like
        Shape ``(N, nbins)``.
    z : array-like
        True redshifts, shape ``(N,)`` (or their bin indices, if integer).
    temperature : float
        The temperature ``T``.
    edges : array-like, optional
        Bin edges (default `astro_mantis.pdf.Z_EDGES`).

    Returns
    -------
    float
        In nats per object; the cross-entropy loss of training.
    """
    k = _bins(z, edges)
    lp = _log_softmax(logits, 1.0 / float(temperature))
    return float(-np.mean(lp[np.arange(len(k)), k]))


def _bins(z, edges):
    z = np.asarray(z)
    if np.issubdtype(z.dtype, np.integer):
        return z.astype(np.int64)
    return z_to_bin(z, edges)


def fit_temperature(logits, z, bounds=TEMPERATURE_BOUNDS, edges=None):
    """The temperature that minimises the negative log-likelihood of the true bins.

    The NLL is a convex function of the inverse temperature, so a bounded scalar
    minimisation (`scipy.optimize.minimize_scalar`, on ``log T``) finds the global
    minimum.

    Parameters
    ----------
    logits : array-like
        Validation logits, shape ``(N, nbins)``.
    z : array-like
        True redshifts (or integer bin indices), shape ``(N,)``.
    bounds : (float, float)
        Range searched for ``T``.
    edges : array-like, optional
        Bin edges (default `astro_mantis.pdf.Z_EDGES`).

    Returns
    -------
    float
        The fitted temperature.
    """
    logits = np.asarray(logits, dtype=np.float64)
    k = _bins(z, edges)
    if logits.ndim != 2 or len(logits) != len(k) or len(k) == 0:
        raise ValueError(f"expected logits (N, nbins) and N redshifts with N > 0, got "
                         f"{logits.shape} and {k.shape}")
    rows = np.arange(len(k))

    def objective(log_t):
        return -np.mean(_log_softmax(logits, np.exp(-log_t))[rows, k])

    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    res = optimize.minimize_scalar(objective, bounds=(lo, hi), method="bounded",
                                   options={"xatol": 1e-6})
    return float(np.exp(res.x))


def pit_values(logits, z, temperature=1.0, edges=None, pit_map=None):
    """Probability integral transform: each PDF's CDF at its true redshift.

    Parameters
    ----------
    logits : array-like
        Shape ``(N, nbins)``.
    z : array-like
        True redshifts, shape ``(N,)``.
    temperature : float
        Softmax temperature.
    edges : array-like, optional
        Bin edges (default `astro_mantis.pdf.Z_EDGES`).
    pit_map : `PITMap`, optional
        PIT recalibration applied after the temperature.

    Returns
    -------
    `numpy.ndarray`
        PIT values in [0, 1] (the PDF is constant within each bin, so the CDF is
        linear there).
    """
    pdf = RedshiftPDF.from_logits(np.asarray(logits), edges=edges, temperature=temperature)
    if pit_map is not None:
        pdf = pit_map.apply(pdf)
    return np.asarray(pdf.cdf(np.asarray(z, dtype=np.float64)), dtype=np.float64)


def _pit_summary(pit):
    ks = stats.kstest(pit, "uniform")
    return {"pit_ks": float(ks.statistic), "pit_ks_pvalue": float(ks.pvalue),
            "coverage68": float(np.mean((pit >= 0.16) & (pit <= 0.84))),
            "coverage95": float(np.mean((pit >= 0.025) & (pit <= 0.975)))}


def calibration_summary(logits, z, temperature=1.0, edges=None, pit_map=None):
    """How well calibrated the PDFs ``softmax(logits / T)`` are.

    Parameters
    ----------
    logits : array-like
        Shape ``(N, nbins)``.
    z : array-like
        True redshifts, shape ``(N,)``.
    temperature : float
        Softmax temperature.
    edges : array-like, optional
        Bin edges (default `astro_mantis.pdf.Z_EDGES`).
    pit_map : `PITMap`, optional
        PIT recalibration applied after the temperature (the ``nll`` entry is
        always that of the temperature-scaled softmax).

    Returns
    -------
    dict
        ``n``, ``nll`` (nats), ``pit_ks`` (Kolmogorov-Smirnov statistic of the PIT values
        against the uniform distribution), ``pit_ks_pvalue``, ``coverage68`` (fraction of
        PIT values in [0.16, 0.84], i.e. of true redshifts inside the central 68%
        interval; 0.68 when calibrated) and ``coverage95`` (PIT in [0.025, 0.975]).
    """
    pit = pit_values(logits, z, temperature, edges, pit_map=pit_map)
    return {"n": int(len(pit)), "nll": nll(logits, z, temperature, edges), **_pit_summary(pit)}


#: Default knots of the PIT map: dense in the tails, where outliers pile up.
PIT_KNOTS = np.unique(np.concatenate([[0.0, 0.01, 0.025], np.linspace(0.05, 0.95, 19),
                                      [0.975, 0.99, 1.0]]))


@dataclass
class PITMap:
    """A PIT recalibration map ``G``: recalibrated CDFs are ``G(F(z))``.

    ``G`` is piecewise linear through ``(knots, values)``, from (0, 0) to (1, 1);
    fitted as the empirical distribution function of validation PIT values at the
    knots, mixed with a small fraction ``mix`` of the identity so that it is
    strictly increasing (no redshift range is given zero probability).

    Attributes
    ----------
    knots, values : `numpy.ndarray`
        The map's abscissae (PIT before) and ordinates (PIT after).
    n : int
        Number of PIT values it was fitted on.
    mix : float
        Weight of the identity in the mixture.
    """

    knots: np.ndarray
    values: np.ndarray
    n: int = 0
    mix: float = 0.0

    def __post_init__(self):
        self.knots = np.asarray(self.knots, dtype=np.float64)
        self.values = np.asarray(self.values, dtype=np.float64)
        if (self.knots.ndim != 1 or self.knots.shape != self.values.shape
                or len(self.knots) < 2 or not np.all(np.diff(self.knots) > 0)
                or np.any(np.diff(self.values) < 0)
                or (self.knots[0], self.knots[-1], self.values[0], self.values[-1])
                != (0.0, 1.0, 0.0, 1.0)):
            raise ValueError("a PIT map needs increasing knots from 0 to 1 and "
                             "non-decreasing values from 0 to 1")

    @classmethod
    def fit(cls, pit, knots=None, mix=0.01):
        """Fit the map to PIT values of a calibration (validation) sample.

        Parameters
        ----------
        pit : array-like
            PIT values in [0, 1] (NaN values are ignored).
        knots : array-like, optional
            Knots from 0 to 1 (default
            `~astro_mantis.training.calibration.PIT_KNOTS`, 25 knots dense in the tails).
        mix : float
            Weight of the identity map, in [0, 1).

        Returns
        -------
        `PITMap`
        """
        pit = np.asarray(pit, dtype=np.float64)
        pit = pit[np.isfinite(pit)]
        if pit.size == 0:
            raise ValueError("no finite PIT values to fit a PIT map to")
        if not 0 <= mix < 1:
            raise ValueError(f"mix must be in [0, 1), got {mix}")
        knots = PIT_KNOTS if knots is None else np.asarray(knots, dtype=np.float64)
        ecdf = np.searchsorted(np.sort(np.clip(pit, 0, 1)), knots, side="right") / pit.size
        values = (1 - mix) * ecdf + mix * knots
        values[0], values[-1] = 0.0, 1.0
        return cls(knots=knots, values=values, n=int(pit.size), mix=float(mix))

    def __call__(self, u):
        """``G(u)`` for PIT values (or CDF values) ``u``."""
        return np.interp(u, self.knots, self.values)

    def apply(self, pdf):
        """The recalibrated PDFs (`~astro_mantis.pdf.RedshiftPDF.remap_cdf` through this map)."""
        return pdf.remap_cdf(self.knots, self.values)

    def to_dict(self):
        """JSON-serialisable form (stored in the model card)."""
        return {"knots": self.knots.tolist(), "values": self.values.tolist(), "n": self.n,
                "mix": self.mix}

    @classmethod
    def from_dict(cls, d):
        """Inverse of `to_dict`."""
        return cls(knots=d["knots"], values=d["values"], n=int(d.get("n", 0)),
                   mix=float(d.get("mix", 0.0)))


@dataclass
class TemperatureCalibration:
    """A fitted temperature (and PIT map) with the calibration diagnostics.

    Attributes
    ----------
    temperature : float
        Divide the logits by this before the softmax.
    before, after : dict
        `~astro_mantis.training.calibration.calibration_summary` of the fitting data at ``T = 1``
        and after the calibration (temperature, then PIT map if any). ``after`` of a
        PIT map is uniform by construction on the data it was fitted on: judge it on
        held-out data.
    pit_map : `PITMap` or None
        PIT recalibration applied after the temperature.
    method : str
        ``"temperature scaling"`` or ``"temperature scaling + PIT recalibration"``.
    """

    temperature: float
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    pit_map: PITMap = None
    method: str = "temperature scaling"

    @classmethod
    def fit(cls, logits, z, bounds=TEMPERATURE_BOUNDS, edges=None, pit=True, knots=None):
        """Fit the temperature (by NLL) and the PIT map on validation logits.

        Parameters
        ----------
        logits : array-like
            Validation logits, shape ``(N, nbins)``.
        z : array-like
            True redshifts, shape ``(N,)``.
        bounds : (float, float)
            Range searched for ``T``.
        edges : array-like, optional
            Bin edges (default `astro_mantis.pdf.Z_EDGES`).
        pit : bool
            Also fit a `PITMap` to the PIT values at the fitted temperature.
        knots : array-like, optional
            Knots of the PIT map (default `~astro_mantis.training.calibration.PIT_KNOTS`).

        Returns
        -------
        `~astro_mantis.training.calibration.TemperatureCalibration`
        """
        t = fit_temperature(logits, z, bounds=bounds, edges=edges)
        pit_map = PITMap.fit(pit_values(logits, z, t, edges), knots=knots) if pit else None
        return cls(temperature=t, before=calibration_summary(logits, z, 1.0, edges),
                   after=calibration_summary(logits, z, t, edges, pit_map=pit_map),
                   pit_map=pit_map,
                   method=("temperature scaling + PIT recalibration" if pit
                           else "temperature scaling"))

    def apply(self, logits):
        """Scaled logits ``logits / T`` (same type as the input: array or tensor)."""
        return logits / self.temperature

    def apply_pdf(self, logits, edges=None):
        """Calibrated `~astro_mantis.pdf.RedshiftPDF` of ``logits`` (temperature, then PIT map)."""
        pdf = RedshiftPDF.from_logits(np.asarray(logits), edges=edges,
                                      temperature=self.temperature)
        return self.pit_map.apply(pdf) if self.pit_map is not None else pdf

    def to_dict(self):
        """The calibration as a JSON-serialisable dict (stored in the model card)."""
        out = {"method": self.method, "temperature": float(self.temperature),
               "fitted_on": "validation", "before": dict(self.before),
               "after": dict(self.after)}
        if self.pit_map is not None:
            out["pit_map"] = self.pit_map.to_dict()
        return out

    @classmethod
    def from_dict(cls, d):
        """Inverse of `to_dict` (e.g. from a model card's ``calibration`` entry)."""
        pm = d.get("pit_map")
        return cls(temperature=float(d.get("temperature", 1.0)), before=dict(d.get("before", {})),
                   after=dict(d.get("after", {})),
                   pit_map=PITMap.from_dict(pm) if pm else None,
                   method=d.get("method", "temperature scaling"))

    def __str__(self):
        b, a = self.before, self.after
        pm = " and a PIT map" if self.pit_map is not None else ""
        return (f"temperature T = {self.temperature:.4f}{pm}: NLL {b['nll']:.4f} -> "
                f"{a['nll']:.4f}, PIT KS {b['pit_ks']:.4f} -> {a['pit_ks']:.4f}, 68% coverage "
                f"{b['coverage68']:.3f} -> {a['coverage68']:.3f}")


def tta_calibration(log_probs, z, temperature, edges=None, knots=None):
    """The model card's ``calibration_tta``: a PIT map fitted to TTA averages.

    Averaging ``softmax(logits / T)`` over the 8 flips and rotations (``tta=True`` in
    `astro_mantis.models.predict`) gives broader PDFs than one pass, so the
    single-pass PIT map does not fit them. This fits one to the averages of a
    validation set, keeping ``T`` (applied to each pass before averaging).

    Parameters
    ----------
    log_probs : array-like
        Logarithms of the validation set's TTA averages, shape ``(N, nbins)``
        (`~astro_mantis.training.collect_logits` with ``tta=True``).
    z : array-like
        True redshifts, shape ``(N,)``.
    temperature : float
        The temperature each pass was divided by (the card's ``temperature``).
    edges : array-like, optional
        Bin edges (default `astro_mantis.pdf.Z_EDGES`).
    knots : array-like, optional
        Knots of the map (default `PIT_KNOTS`).

    Returns
    -------
    dict
        ``method``, ``temperature``, ``transforms`` (8), ``fitted_on``
        (``"validation"``), ``before`` and ``after`` (`calibration_summary` without and
        with the map) and ``pit_map`` (`PITMap.to_dict`).
    """
    temperature = float(temperature)
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number; got {temperature}")
    log_probs = np.asarray(log_probs)
    pit_map = PITMap.fit(pit_values(log_probs, z, 1.0, edges), knots=knots)
    return {"method": "PIT recalibration of the average of softmax(logits / temperature) "
                      "over the 8 flips and rotations",
            "temperature": temperature, "transforms": 8, "fitted_on": "validation",
            "before": calibration_summary(log_probs, z, 1.0, edges),
            "after": calibration_summary(log_probs, z, 1.0, edges, pit_map=pit_map),
            "pit_map": pit_map.to_dict()}
