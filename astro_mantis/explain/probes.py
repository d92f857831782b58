# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Layer-wise PCA probes of the learned representations (after Harlev et al., "Exploring
Learned Representations of Neural Networks with Principal Component Analysis").

For each stage of the network — the stem, every stage of the backbone, the pooled
backbone features and the penultimate layer — the activations of a set of galaxies are
averaged over the image (one vector per galaxy and layer), reduced by PCA, and a
k-nearest-neighbour regression of the redshift on the leading components is scored by
cross-validation: how much of the redshift each layer already "knows", and in how
few directions.
"""
import threading

import numpy as np
import torch
from astropy.table import Table

from ._common import as_fused, resolve_model

__all__ = ["probe_layers", "layer_activations", "layer_probes", "plot_layer_probes"]


def probe_layers(net):
    """Default probed modules of a `~astro_mantis.models.PhotoZNet`: name → module."""
    out = {}
    base = getattr(net, "Base", None)
    if base is None:
        raise TypeError(f"{type(net).__name__} has no Base backbone")
    if hasattr(base, "stem"):
        out["stem"] = base.stem
    for i, stage in enumerate(getattr(base, "stages", [])):
        out[f"stage{i}"] = stage
    out["pooled"] = base
    out["hidden"] = net.act
    return out


def layer_activations(model, data, dust=None, layers=None, batch_size=32):
    """Image-averaged activations of probed layers.

    Parameters
    ----------
    model : str or `torch.nn.Module`
    data : cutouts, `~astro_mantis.fusion.FusedInput` or array-like (N, 9, H, W)
    dust : array-like, optional
    layers : dict, optional
        Name → module (default `probe_layers`).
    batch_size : int

    Returns
    -------
    dict
        Name → `numpy.ndarray` (N, channels); for no galaxies (N = 0), empty arrays
        (0, channels) from one pass over an empty batch.

    Notes
    -----
    The activations are caught by forward hooks on the network's modules; each hook
    records only the passes of the thread that called this function, so other threads
    using the same network at the same time (a registry name shares one) neither add to
    nor take from them.
    """
    net = resolve_model(model)
    fused = as_fused(data, dust=dust, net=net)
    layers = probe_layers(net) if layers is None else layers
    store = {k: [] for k in layers}
    hooks = []
    device = next(net.parameters()).device
    owner = threading.get_ident()
    for name, mod in layers.items():
        def hook(_, __, out, name=name):
            if threading.get_ident() != owner:  # another thread's pass on the same net
                return
            a = out.detach().float()
            if a.ndim == 4:  # NCHW (ConvNeXt stages and ResNet blocks are NCHW)
                a = a.mean(dim=(2, 3))
            # flatten(1), not reshape(len(a), -1): an empty batch keeps its widths
            store[name].append((a.flatten(1) if a.ndim > 1 else a[:, None]).cpu().numpy())
        hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            # no galaxies: one pass over the empty batch, for the layers' widths
            for s in range(0, max(len(fused.x), 1), batch_size):
                net(torch.as_tensor(fused.x[s:s + batch_size]).to(device),
                    torch.as_tensor(fused.dust[s:s + batch_size]).to(device))
    finally:
        for h in hooks:
            h.remove()
    return {k: np.concatenate(v) for k, v in store.items()}


def _knn_cv(features, z, k, folds, rng):
    order = rng.permutation(len(z))
    pred = np.empty(len(z))
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        d2 = ((features[test, None, :] - features[None, train, :]) ** 2).sum(-1)
        nn = np.argsort(d2, axis=1)[:, :k]
        pred[test] = np.median(z[train][nn], axis=1)
    return pred


def layer_probes(model, data, z, dust=None, n_components=(1, 2, 4, 8, 16), k=10, folds=5,
                 seed=0, layers=None):
    """How much of the redshift the leading principal components of each layer hold.

    Parameters
    ----------
    model : str or `torch.nn.Module`
    data : cutouts, `~astro_mantis.fusion.FusedInput` or array-like (N, 9, H, W)
    z : array-like, shape (N,)
        True redshifts. Rows whose redshift is NaN, infinite or masked (e.g. in a
        `~astropy.table.MaskedColumn`: no spectroscopic redshift) are left out of the
        probes (and of the network's pass); the table's ``meta`` counts them.
    dust : array-like, optional
    n_components : sequence of int
        Numbers of leading components probed.
    k : int
        Neighbours of the k-NN regression (median of their redshifts).
    folds : int
        Cross-validation folds.
    seed : int
    layers : dict, optional
        Name → module (default `probe_layers`).

    Returns
    -------
    `~astropy.table.Table`
        One row per layer and number of components: ``layer``, ``width``,
        ``n_components``, ``explained_variance`` (fraction held by those components),
        ``nmad`` (1.4826 × median abs(Δz − median Δz) / (1 + z) of the cross-validated
        probe) and ``r2`` (1 − mean squared error / variance of z). ``meta["n_rows"]``
        is the number of galaxies probed, ``meta["n_left_out"]`` that of the rows
        left out for lack of a finite redshift.

    Raises
    ------
    ValueError
        If ``z`` does not have one value per row, or fewer than folds × (k + 1)
        galaxies have a finite redshift.
    """
    net = resolve_model(model)
    fused = as_fused(data, dust=dust, net=net)
    z = np.ma.filled(np.ma.asarray(z, dtype=float), np.nan).reshape(-1)
    if len(z) != len(fused.x):
        raise ValueError(f"z has {len(z)} values but the data {len(fused.x)} rows")
    finite = np.isfinite(z)
    left_out = int(np.count_nonzero(~finite))
    if left_out:  # no truth to probe against: left out (and not run through the network)
        keep = np.flatnonzero(finite)
        fused = type(fused)(*(np.asarray(a)[keep] for a in fused))
        z = z[keep]
    n = len(z)
    if n < folds * (k + 1):
        raise ValueError(f"need at least folds × (k + 1) = {folds * (k + 1)} galaxies with a "
                         f"finite redshift; got {n}"
                         + (f" ({left_out} rows without one left out)" if left_out else ""))
    acts = layer_activations(net, fused, layers=layers)
    rng = np.random.default_rng(seed)
    rows = []
    for name, a in acts.items():
        a = a.astype(np.float64)
        a = a - a.mean(0)
        _, s, vt = np.linalg.svd(a, full_matrices=False)
        var = s ** 2 / max((s ** 2).sum(), 1e-300)
        for c in n_components:
            c = int(min(c, len(s)))
            proj = a @ vt[:c].T
            pred = _knn_cv(proj, z, k, folds, np.random.default_rng(rng.integers(1 << 31)))
            dz = (pred - z) / (1 + z)
            rows.append((name, a.shape[1], c, float(var[:c].sum()),
                         float(1.4826 * np.median(np.abs(dz - np.median(dz)))),
                         float(1 - np.mean((pred - z) ** 2) / max(np.var(z), 1e-300))))
    table = Table(rows=rows, names=("layer", "width", "n_components", "explained_variance",
                                    "nmad", "r2"))
    table.meta.update(n_rows=n, n_left_out=left_out)
    return table


def plot_layer_probes(probes, ax=None):
    """Plot the probe R² of each layer against the number of components.

    Parameters
    ----------
    probes : `~astropy.table.Table`
        From `layer_probes`.
    ax : `matplotlib.axes.Axes`, optional

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    from ..plotting import layer_probes

    curves = {}
    for layer in dict.fromkeys(probes["layer"]):
        sub = probes[probes["layer"] == layer]
        curves[layer] = (np.asarray(sub["n_components"]), np.asarray(sub["r2"]))
    return layer_probes(curves, ax=ax)
