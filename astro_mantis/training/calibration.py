# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Calibration of the redshift PDFs by temperature scaling.

A network trained with cross-entropy is often over-confident: its PDFs are too narrow,
so the true redshifts fall in their tails too often. Temperature scaling (Guo et al.
2017) divides all logits by one scalar ``T`` before the softmax, chosen to minimise the
negative log-likelihood of the true bins on the validation split. ``T > 1`` widens the
PDFs, ``T < 1`` sharpens them; the ranking of the bins, and so the mode, is unchanged.

The quality of the calibration is judged with the probability integral transform
(PIT): the value of each PDF's CDF at the true redshift. For calibrated PDFs the PIT
values are uniform on [0, 1]; we report the Kolmogorov-Smirnov distance of their
distribution from the uniform one, and the fraction of true redshifts inside the
central 68% (and 95%) credible interval (coverage), before and after scaling.
"""
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

from ..pdf import RedshiftPDF, Z_EDGES
from .data import z_to_bin

__all__ = ["TemperatureCalibration", "fit_temperature", "nll", "pit_values",
           "calibration_summary", "calibrate_model"]

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


def pit_values(logits, z, temperature=1.0, edges=None):
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

    Returns
    -------
    `numpy.ndarray`
        PIT values in [0, 1] (the PDF is constant within each bin, so the CDF is
        linear there).
    """
    pdf = RedshiftPDF.from_logits(np.asarray(logits), edges=edges, temperature=temperature)
    return np.asarray(pdf.cdf(np.asarray(z, dtype=np.float64)), dtype=np.float64)


def calibration_summary(logits, z, temperature=1.0, edges=None):
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

    Returns
    -------
    dict
        ``n``, ``nll`` (nats), ``pit_ks`` (Kolmogorov-Smirnov statistic of the PIT values
        against the uniform distribution), ``pit_ks_pvalue``, ``coverage68`` (fraction of
        PIT values in [0.16, 0.84], i.e. of true redshifts inside the central 68%
        interval; 0.68 when calibrated) and ``coverage95`` (PIT in [0.025, 0.975]).
    """
    pit = pit_values(logits, z, temperature, edges)
    ks = stats.kstest(pit, "uniform")
    return {"n": int(len(pit)), "nll": nll(logits, z, temperature, edges),
            "pit_ks": float(ks.statistic), "pit_ks_pvalue": float(ks.pvalue),
            "coverage68": float(np.mean((pit >= 0.16) & (pit <= 0.84))),
            "coverage95": float(np.mean((pit >= 0.025) & (pit <= 0.975)))}


@dataclass
class TemperatureCalibration:
    """A fitted temperature with the calibration diagnostics before and after.

    Attributes
    ----------
    temperature : float
        Divide the logits by this before the softmax.
    before, after : dict
        `~astro_mantis.training.calibration.calibration_summary` of the fitting data at ``T = 1``
        and at the fitted ``T``.
    method : str
        ``"temperature scaling"``.
    """

    temperature: float
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    method: str = "temperature scaling"

    @classmethod
    def fit(cls, logits, z, bounds=TEMPERATURE_BOUNDS, edges=None):
        """Fit the temperature on validation logits and report PIT before and after.

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

        Returns
        -------
        `~astro_mantis.training.calibration.TemperatureCalibration`
        """
        t = fit_temperature(logits, z, bounds=bounds, edges=edges)
        return cls(temperature=t, before=calibration_summary(logits, z, 1.0, edges),
                   after=calibration_summary(logits, z, t, edges))

    def apply(self, logits):
        """Scaled logits ``logits / T`` (same type as the input: array or tensor)."""
        return logits / self.temperature

    def to_dict(self):
        """The calibration as a JSON-serialisable dict (stored in the model card)."""
        return {"method": self.method, "temperature": float(self.temperature),
                "fitted_on": "validation", "before": dict(self.before),
                "after": dict(self.after)}

    def __str__(self):
        b, a = self.before, self.after
        return (f"temperature T = {self.temperature:.4f}: NLL {b['nll']:.4f} -> {a['nll']:.4f}, "
                f"PIT KS {b['pit_ks']:.4f} -> {a['pit_ks']:.4f}, 68% coverage "
                f"{b['coverage68']:.3f} -> {a['coverage68']:.3f}")


def calibrate_model(model, dataset, batch_size=128, device="cpu", num_workers=0, progress=False):
    """Fit the temperature of a trained model on a (validation) dataset.

    Parameters
    ----------
    model : `torch.nn.Module`
        The trained network.
    dataset : `~astro_mantis.training.data.FusedDataset`
        Validation data (no augmentation is applied).
    batch_size, device, num_workers, progress
        As for `astro_mantis.training.loop.collect_logits`.

    Returns
    -------
    `~astro_mantis.training.calibration.TemperatureCalibration`
    """
    from .loop import collect_logits

    logits, z = collect_logits(model, dataset, batch_size=batch_size, device=device,
                               num_workers=num_workers, progress=progress,
                               desc="calibrating")
    return TemperatureCalibration.fit(logits, z, edges=Z_EDGES)
