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
import numpy as np
import torch
from astropy.table import Table

__all__ = ["weight_spectra", "marchenko_pastur_edge", "hill_alpha", "plot_weight_spectra"]


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
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.4))
    names = list(spectra["layer"])
    if layers is None:
        pick = np.unique(np.linspace(0, len(names) - 1, min(6, len(names))).astype(int))
        layers = [names[i] for i in pick]
    for colour, layer in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], layers):
        row = spectra[names.index(layer)]
        s = np.asarray(row["singular_values"])
        ax.plot(np.arange(1, len(s) + 1), s / row["mp_edge"], color=colour,
                label=f"{layer} ({row['n_outliers']} out, α={row['alpha']:.1f})")
    ax.axhline(1.0, color="k", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rank")
    ax.set_ylabel("singular value / MP edge")
    ax.legend(fontsize="xx-small")
    return ax
