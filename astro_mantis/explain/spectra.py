# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Spectra of the trained weights (after Wang et al., "Spectral Evolution and Invariance in
Linear-width Neural Networks").

A weight matrix W (m × n, m ≤ n; a convolution reshaped to out × in·kh·kw) with
independent entries of variance σ² has its singular values inside the
Marchenko–Pastur bulk, whose upper edge is σ(√n + √m). Training leaves most of the
spectrum in the bulk and pushes a few **outliers** above the edge, and can fatten the
tail of the eigenvalue density of WᵀW into a power law p(λ) ∝ λ^(−α). `weight_spectra`
reports per layer the singular values, the edge (with σ estimated from W's own
entries), the number of singular values above it, and a tail exponent α from the Hill
estimator on the largest eigenvalues λ = s²: α = 1 + k / Σ_{i<k} ln(λ_i / λ_k), with
k = max(5, m // 10). A random layer has no outliers (up to edge fluctuations) and a
steep tail; heavy-tailed layers (α ≲ 4) carry learned structure.
"""
import json
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

__all__ = ["weight_spectra", "marchenko_pastur_edge", "hill_alpha", "plot_weight_spectra",
           "SpectralMonitor", "read_spectral_log", "plot_spectral_history"]


def marchenko_pastur_edge(shape, sigma):
    """Upper edge σ(√n + √m) of the singular values of an m × n random matrix."""
    m, n = sorted(int(v) for v in shape)
    return float(sigma) * (np.sqrt(n) + np.sqrt(m))


def hill_alpha(eigenvalues, k=None):
    """Power-law exponent α of the density of the largest eigenvalues (Hill estimator).

    Parameters
    ----------
    eigenvalues : array-like
        Positive values.
    k : int, optional
        Number of largest values used (default max(5, len // 10)).

    Returns
    -------
    float
        NaN when fewer than 3 positive values.
    """
    lam = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    lam = lam[lam > 0]
    if k is None:
        k = max(5, len(lam) // 10)
    k = min(k, len(lam) - 1)
    if k < 2:
        return float("nan")
    logs = np.log(lam[:k] / lam[k])
    return float(1.0 + k / max(logs.sum(), 1e-300))


def weight_spectra(model, min_dim=8):
    """Singular values of every weight matrix, the Marchenko–Pastur outliers and tail exponent.

    Parameters
    ----------
    model : str or `torch.nn.Module`
        Registry name or network.
    min_dim : int
        Layers whose smaller dimension is below this are skipped.

    Returns
    -------
    `~astropy.table.Table`
        One row per `~torch.nn.Linear` or `~torch.nn.Conv2d` layer: ``layer``,
        ``shape`` (m, n), ``sigma`` (entry standard deviation), ``sv_max``,
        ``mp_edge``, ``n_outliers`` (singular values above the edge), ``alpha``
        (tail exponent), ``singular_values`` (an object column: the sorted values).
    """
    from ._common import resolve_model

    net = resolve_model(model)
    rows = []
    for name, mod in net.named_modules():
        if not isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        w = mod.weight.detach().float().cpu()
        w = w.reshape(w.shape[0], -1)
        if min(w.shape) < min_dim:
            continue
        s = torch.linalg.svdvals(w.double()).numpy()
        sigma = float(w.double().std())
        edge = marchenko_pastur_edge(w.shape, sigma)
        rows.append((name, tuple(w.shape), sigma, float(s[0]), edge, int(np.sum(s > edge)),
                     hill_alpha(s ** 2), s))
    if not rows:
        raise ValueError(f"no Linear or Conv2d layer with both dimensions >= {min_dim}")
    t = Table(rows=[r[:7] for r in rows],
                names=("layer", "shape", "sigma", "sv_max", "mp_edge", "n_outliers", "alpha"),
                dtype=(str, object, float, float, float, int, float))
    t["singular_values"] = np.empty(len(rows), dtype=object)
    for i, r in enumerate(rows):
        t["singular_values"][i] = r[7]
    t.meta["model"] = (getattr(net, "meta", {}) or {}).get("name", type(net).__name__)
    return t


def plot_weight_spectra(spectra, layers=None, ax=None):
    """Plot the singular values of some layers against their Marchenko–Pastur edges.

    Parameters
    ----------
    spectra : `~astropy.table.Table`
        From `weight_spectra`.
    layers : sequence of str, optional
        Layer names (default: up to six, spread over the depth).
    ax : `matplotlib.axes.Axes`, optional

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    from ..plotting import weight_spectra

    names = list(spectra["layer"])
    if layers is None:
        pick = np.unique(np.linspace(0, len(names) - 1, min(6, len(names))).astype(int))
        layers = [names[i] for i in pick]
    curves = []
    for layer in layers:
        row = spectra[names.index(layer)]
        curves.append((np.asarray(row["singular_values"]) / row["mp_edge"],
                       f"{layer} ({row['n_outliers']} out, α={row['alpha']:.1f})"))
    return weight_spectra(curves, ax=ax)


class SpectralMonitor:
    """Per-epoch weight spectra of a network in training, logged as JSON lines.

    Call it once per epoch (``monitor(epoch, net)``); each call appends one line to
    ``path`` with, per layer, ``n_outliers``, ``alpha``, ``sv_max`` and ``mp_edge``, and
    returns the epoch's summary (``outliers``: total over layers; ``alpha_median``).
    Meant for a per-epoch hook of the trainer (``astro-mantis train --spectra``).

    Parameters
    ----------
    path : str or path-like
        The log file (e.g. ``OUT/spectra.jsonl``); created, or appended to. An epoch
        logged again (a run started afresh, or resumed from an earlier checkpoint)
        replaces that epoch's line and drops the lines after it, so the log follows
        the run's epochs as ``metrics.jsonl`` does.
    min_dim : int
        As in `weight_spectra`.
    """

    def __init__(self, path, min_dim=8):
        self.path = Path(path)
        self.min_dim = int(min_dim)

    def __call__(self, epoch, net):
        """Log the spectra of ``net`` after ``epoch``; returns the epoch's summary dict."""
        t = weight_spectra(net, min_dim=self.min_dim)
        layers = {r["layer"]: {"n_outliers": int(r["n_outliers"]), "alpha": float(r["alpha"]),
                               "sv_max": float(r["sv_max"]), "mp_edge": float(r["mp_edge"])}
                  for r in t}
        summary = {"epoch": int(epoch), "outliers": int(t["n_outliers"].sum()),
                   "alpha_median": float(np.median(t["alpha"]))}
        line = json.dumps(dict(summary, layers=layers)) + "\n"
        earlier = read_spectral_log(self.path) if self.path.exists() else []
        if any(row.get("epoch", 0) >= epoch for row in earlier):  # a run again from here
            from ..atomic import atomic_open

            with atomic_open(self.path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(row) + "\n" for row in earlier
                             if row.get("epoch", 0) < epoch)
                f.write(line)
        else:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
        return summary


def read_spectral_log(path):
    """Read a `SpectralMonitor` log: a list of per-epoch dicts."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_spectral_history(log, ax=None):
    """Plot the outlier count and median tail exponent against epoch.

    Parameters
    ----------
    log : list of dict or str or path-like
        `read_spectral_log` output, or the log file.
    ax : `matplotlib.axes.Axes`, optional

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    from ..plotting import spectral_history

    if not isinstance(log, list):
        log = read_spectral_log(log)
    return spectral_history([r["epoch"] for r in log], [r["outliers"] for r in log],
                            [r["alpha_median"] for r in log], ax=ax)
