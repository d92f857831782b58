# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Explanation by example: kernel surrogates of the trained network.

A kernel machine fitted to the network's own outputs on the training set explains a new
prediction as a sum over training galaxies (Engel et al., "Faithful and Efficient
Explanations for Neural Networks via Neural Tangent Kernel Surrogate Models"; Qadeer et
al., "Efficient kernel surrogates for neural network-based regression")::

    ẑ(x) ≈ ȳ + Σ_i α_i k(x, x_i),      α = (K + λ I)⁻¹ (y − ȳ)

where y_i is the network's PDF mean for training galaxy i. The term α_i k(x, x_i) is
training galaxy i's **contribution**: positive terms push the prediction up.

Kernels
=======
``"ck"`` — conjugate kernel
    Inner product of the penultimate features (``GELU(fc0([Base(x), dust]))``,
    `~astro_mantis.explain.penultimate_features`). Costs one forward pass per galaxy.
``"ntk"`` — projected trace neural tangent kernel
    Inner product of the per-galaxy gradients of the PDF mean with respect to the
    network's parameters, ⟨∇_θ ẑ(x), ∇_θ ẑ(x')⟩ (for a scalar output the trace NTK is
    this inner product). Gradients are computed per galaxy with ``torch.func``
    (``vmap(grad(functional_call))``) and compressed at once by a sparse random
    projection (CountSketch: parameter j goes to coordinate h(j) with sign s(j), both
    drawn from ``seed``), which preserves inner products in expectation; the default
    dimension is `DEFAULT_NTK_DIM` (4096). Only the projected vectors (N × dim float32)
    are kept. ``max_bytes`` (default 512 MB) sets the batch size so that the per-galaxy
    gradients held at once fit in it, but a batch holds at least one galaxy, whose
    gradient takes 4 bytes per parameter (7.1 MB for ``mantis-mini``, 0.8 GB at 200
    million parameters) whatever ``max_bytes`` says. It bounds neither the
    intermediate values of the backward pass nor the CountSketch tables, which stay in
    memory for the whole call: 5 bytes per differentiated parameter (an int32 bucket
    and an int8 sign; 9.3 MB for ``mantis-mini``, 1 GB at 200 million parameters).

The ridge λ is ``ridge`` × the mean diagonal of K. Fidelity is the Kendall τ between the
surrogate's and the network's predictions on held-out galaxies (`fidelity`).
"""
import numpy as np
import torch
from astropy.table import Table

from ._common import as_fused, penultimate_features, resolve_model, scalar_target

__all__ = ["DEFAULT_NTK_DIM", "KERNELS", "ntk_features", "kernel_features", "KernelSurrogate",
           "fit_surrogate", "fidelity", "explain_by_example", "plot_examples"]

#: Default dimension of the random projection of the per-galaxy gradients.
DEFAULT_NTK_DIM = 4096
#: Kernels of `fit_surrogate`.
KERNELS = ("ck", "ntk")


def _sketch(params, dim, seed):
    """Per parameter tensor: (bucket indices, signs) of the CountSketch projection.

    Stored compactly, 5 bytes per parameter: the buckets as int32, the signs (±1) as
    int8. They are drawn as int64 one tensor at a time and converted, so the
    projection is the same as that of the int64 / float32 tables kept before.
    """
    if not 1 <= dim <= np.iinfo(np.int32).max:
        raise ValueError(f"dim must be between 1 and {np.iinfo(np.int32).max}; got {dim}")
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for p in params.values():
        n = p.numel()
        idx = torch.randint(0, dim, (n,), generator=g).to(torch.int32)
        sign = torch.randint(0, 2, (n,), generator=g).to(torch.int8)
        out.append((idx, sign.mul_(2).sub_(1)))
    return out


def ntk_features(data, model="mantis-mini", dust=None, dim=DEFAULT_NTK_DIM, seed=0,
                 params=None, max_bytes=512 * 2 ** 20, target="mean"):
    """Projected per-galaxy gradients of the PDF mean (the features of the trace NTK).

    Parameters
    ----------
    data : cutouts, `~astro_mantis.fusion.FusedInput` or array-like (N, 9, H, W)
    model : str or `torch.nn.Module`
    dust : array-like, shape (N, 2), optional
    dim : int
        Dimension of the random projection (default `DEFAULT_NTK_DIM`).
    seed : int
        Seed of the projection: features are comparable only with the same seed.
    params : sequence of str, optional
        Parameter-name prefixes to differentiate (e.g. ``["fc0", "fc1"]`` for the
        head only); default all parameters.
    max_bytes : int
        Bound on the per-galaxy gradients held at once (sets the batch size; a batch
        holds at least one galaxy). Not a bound on the total memory: see the module
        notes.
    target : {"mean"}
        The scalar output (the PDF mean).

    Returns
    -------
    `numpy.ndarray`, float32, shape (N, dim)
    """
    from torch.func import functional_call, grad, vmap

    if target != "mean":
        raise ValueError("ntk_features explains the PDF mean (target='mean')")
    if dim < 1:
        raise ValueError(f"dim must be positive; got {dim}")
    net = resolve_model(model)
    fused = as_fused(data, dust=dust, net=net)
    named = dict(net.named_parameters())
    chosen = {k: v.detach() for k, v in named.items()
              if params is None or any(k.startswith(p) for p in params)}
    if not chosen:
        raise ValueError(f"no parameter name starts with any of {params}")
    frozen = {k: v.detach() for k, v in named.items() if k not in chosen}
    buffers = dict(net.named_buffers())
    f = scalar_target(net, "mean")
    n_par = sum(v.numel() for v in chosen.values())
    batch = int(max(1, min(64, max_bytes // (4 * n_par))))
    sketch = _sketch(chosen, dim, seed)
    device = next(net.parameters()).device

    def out(p, x, d):
        logits = functional_call(net, ({**p, **frozen}, buffers), (x[None], d[None]))
        return f(logits)[0]

    per_sample = vmap(grad(out), in_dims=(None, 0, 0))
    net.eval()
    result = np.empty((len(fused.x), dim), np.float32)
    for s in range(0, len(fused.x), batch):
        xb = torch.as_tensor(fused.x[s:s + batch]).to(device)
        db = torch.as_tensor(fused.dust[s:s + batch]).to(device)
        grads = per_sample(chosen, xb, db)
        proj = torch.zeros(len(xb), dim, device=device)
        for (name, _), (idx, sign) in zip(chosen.items(), sketch):
            gflat = grads[name].reshape(len(xb), -1)
            proj.index_add_(1, idx.to(device), gflat * sign.to(device, gflat.dtype))
        result[s:s + batch] = proj.cpu().numpy()
        del grads
    return result


def kernel_features(data, model="mantis-mini", kernel="ntk", dust=None, **kwargs):
    """Features whose inner products give a kernel (penultimate features or projected gradients).

    ``"ck"``: the penultimate features; ``"ntk"``: the projected per-galaxy gradients.

    Parameters
    ----------
    data, model, dust
        As in `ntk_features`.
    kernel : {"ck", "ntk"}
    **kwargs
        Passed to `ntk_features` (``dim``, ``seed``, ``params``, ``max_bytes``).

    Returns
    -------
    `numpy.ndarray`, float32, shape (N, D)
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}; got {kernel!r}")
    if kernel == "ntk":
        return ntk_features(data, model=model, dust=dust, **kwargs)
    net = resolve_model(model)
    fused = as_fused(data, dust=dust, net=net)
    return penultimate_features(net, fused.x, fused.dust)


def _network_mean(net, fused, batch_size=64):
    f = scalar_target(net, "mean")
    device = next(net.parameters()).device
    out = []
    with torch.inference_mode():
        for s in range(0, len(fused.x), batch_size):
            out.append(f(net(torch.as_tensor(fused.x[s:s + batch_size]).to(device),
                             torch.as_tensor(fused.dust[s:s + batch_size]).to(device)))
                       .cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


class KernelSurrogate:
    """Kernel ridge regression on the network's outputs (a linear kernel on features).

    Parameters
    ----------
    features : array-like, shape (N, D)
        Kernel features of the training galaxies (`kernel_features`).
    y : array-like, shape (N,)
        The network's PDF mean for each training galaxy.
    ridge : float
        λ relative to the mean diagonal of the kernel matrix.
    kernel : str
        Name recorded for reports.
    ids, z : array-like, shape (N,), optional
        Identifier and true redshift of each training galaxy (for tables).
    projection : dict, optional
        For ``kernel="ntk"``: the ``dim``, ``seed`` and ``params`` of the random
        projection the features were made with (`fit_surrogate` records them).
        `fidelity` and `explain_by_example` then project queries the same way by
        default, and refuse other values.

    Raises
    ------
    ValueError
        If the shapes of ``features``, ``y``, ``ids`` and ``z`` disagree, ``ridge``
        is not positive, or ``projection`` holds other keys.

    Attributes
    ----------
    alpha : `numpy.ndarray`, shape (N,)
        Surrogate weights (the dual coefficients).
    offset : float
        ȳ, the mean of ``y``.
    projection : dict or None
        ``dim``, ``seed`` and ``params`` of the NTK projection (None: not recorded).
    """

    def __init__(self, features, y, ridge=1e-3, kernel="ntk", ids=None, z=None,
                 projection=None):
        f = np.asarray(features, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if f.ndim != 2 or len(f) != len(y):
            raise ValueError(f"features (N, D) and y (N,) must agree; got {f.shape} and "
                             f"{y.shape}")
        if ridge <= 0:
            raise ValueError(f"ridge must be positive; got {ridge}")
        for name, value in (("ids", ids), ("z", z)):
            if value is not None and np.shape(value) != (len(y),):
                raise ValueError(f"{name} must have one entry per training galaxy "
                                 f"({len(y)}); got {np.size(value)} (shape "
                                 f"{np.shape(value)})")
        self.features, self.y, self.kernel, self.ridge = f, y, kernel, float(ridge)
        self.ids = np.arange(len(y)) if ids is None else np.asarray(ids)
        self.z = np.full(len(y), np.nan) if z is None else np.asarray(z, dtype=float)
        if projection is not None:
            unknown = sorted(set(projection) - set(_PROJECTION))
            if unknown:
                raise ValueError(f"projection holds unknown keys {unknown}; known: "
                                 f"{', '.join(_PROJECTION)}")
            projection = {key: _normalise(key, projection.get(key, default))
                          for key, default in _PROJECTION.items()}
        self.projection = projection
        k = f @ f.T
        lam = self.ridge * max(np.trace(k) / len(k), 1e-300)
        self.offset = float(y.mean())
        self.alpha = np.linalg.solve(k + lam * np.eye(len(k)), y - self.offset)

    def kernel_with(self, features):
        """Kernel values k(x, x_i) of queries (M, D) with the training galaxies → (M, N)."""
        q = np.asarray(features, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != self.features.shape[1]:
            raise ValueError(f"features must have shape (M, {self.features.shape[1]}); got "
                             f"{q.shape}")
        return q @ self.features.T

    def contributions(self, features):
        """α_i k(x, x_i) for each query and training galaxy → (M, N)."""
        return self.kernel_with(features) * self.alpha

    def predict(self, features):
        """Surrogate predictions ȳ + Σ_i α_i k(x, x_i) → (M,)."""
        return self.offset + self.contributions(features).sum(axis=1)


#: The settings of the NTK projection a surrogate records, with `ntk_features`' defaults.
_PROJECTION = {"dim": DEFAULT_NTK_DIM, "seed": 0, "params": None}


def _normalise(key, value):
    if key == "params":
        return None if value is None else tuple(str(p) for p in value)
    return int(value)


def _query_kwargs(surrogate, kwargs):
    """``ntk_features`` arguments for queries of a surrogate: its projection by default.

    An explicit ``dim``, ``seed`` or ``params`` other than the recorded one raises: the
    queries would be projected into another space than the training galaxies.
    """
    projection = getattr(surrogate, "projection", None)
    if surrogate.kernel != "ntk" or projection is None:
        return kwargs
    out = dict(kwargs)
    for key, fitted in projection.items():
        if key in out and _normalise(key, out[key]) != fitted:
            raise ValueError(f"{key}={out[key]!r} differs from the {key} the surrogate was "
                             f"fitted with ({fitted!r}): its queries must be projected the "
                             f"same way; leave {key} out to use the fit's")
        out[key] = fitted
    return out


def fit_surrogate(model, train, kernel="ntk", ridge=1e-3, dust=None, ids=None, z=None,
                  **kwargs):
    """Fit a kernel surrogate of a network on its training galaxies.

    Parameters
    ----------
    model : str or `torch.nn.Module`
    train : cutouts, `~astro_mantis.fusion.FusedInput` or array-like (N, 9, H, W)
        The training galaxies (a few thousand at most: the kernel matrix is N × N).
    kernel : {"ck", "ntk"}
    ridge : float
    dust : array-like, optional
    ids, z : array-like, optional
        Identifiers and true redshifts of the training galaxies.
    **kwargs
        Passed to `ntk_features` (``dim``, ``seed``, ``params``, ``max_bytes``). For
        the NTK, the surrogate records the projection's ``dim``, ``seed`` and
        ``params`` (the ``projection`` of `KernelSurrogate`): `fidelity` and
        `explain_by_example` use them without being told again.

    Returns
    -------
    `KernelSurrogate`
    """
    net = resolve_model(model)
    fused = as_fused(train, dust=dust, net=net)
    feats = kernel_features(fused, net, kernel, **kwargs)
    projection = {key: kwargs.get(key, default) for key, default in _PROJECTION.items()} \
        if kernel == "ntk" else None
    return KernelSurrogate(feats, _network_mean(net, fused), ridge, kernel, ids, z,
                           projection=projection)


def fidelity(surrogate, data, model="mantis-mini", dust=None, **kwargs):
    """Kendall τ between the surrogate's and the network's predictions on held-out galaxies.

    Parameters
    ----------
    surrogate : `KernelSurrogate`
    data : cutouts, `~astro_mantis.fusion.FusedInput` or array-like
        Galaxies not used to fit the surrogate.
    model : str or `torch.nn.Module`
        The network the surrogate was fitted to.
    dust : array-like, optional
    **kwargs
        Passed to `ntk_features`. ``dim``, ``seed`` and ``params`` default to those
        the surrogate recorded at its fit (the ``projection`` of `KernelSurrogate`); another
        value raises.

    Returns
    -------
    tau : float
    surrogate_prediction, network_prediction : `numpy.ndarray`

    Raises
    ------
    ValueError
        If ``dim``, ``seed`` or ``params`` differs from the surrogate's projection.
    """
    from scipy.stats import kendalltau

    kwargs = _query_kwargs(surrogate, kwargs)
    net = resolve_model(model)
    fused = as_fused(data, dust=dust, net=net)
    pred = surrogate.predict(kernel_features(fused, net, surrogate.kernel, **kwargs))
    truth = _network_mean(net, fused)
    return float(kendalltau(pred, truth)[0]), pred, truth


def explain_by_example(query, surrogate, model="mantis-mini", k=5, dust=None, **kwargs):
    """The training galaxies that most support and most oppose a prediction.

    Parameters
    ----------
    query : cutout, `~astro_mantis.fusion.FusedInput` or array-like
        One galaxy (the first row is used).
    surrogate : `KernelSurrogate`
        From `fit_surrogate` for the same model.
    model : str or `torch.nn.Module`
    k : int
        Galaxies of each kind.
    dust : array-like, optional
    **kwargs
        Passed to `ntk_features`. ``dim``, ``seed`` and ``params`` default to those
        the surrogate recorded at its fit (the ``projection`` of `KernelSurrogate`); another
        value raises (a `ValueError`).

    Returns
    -------
    `~astropy.table.Table`
        2k rows: ``role`` (``"supporting"``: the contribution pushes the prediction
        away from ȳ in the direction it went; ``"opposing"``: the other way), ``rank``,
        ``index`` (row in the training set), ``id``, ``z`` (the training galaxy's true
        redshift), ``z_net`` (the network's PDF mean for it), ``kernel`` (k(x, x_i)),
        ``weight`` (α_i) and ``contribution`` (α_i k(x, x_i)). ``meta`` holds the query's
        network and surrogate predictions, ȳ and the kernel.
    """
    if k < 1:
        raise ValueError(f"k must be positive; got {k}")
    kwargs = _query_kwargs(surrogate, kwargs)
    net = resolve_model(model)
    fused = as_fused(query, dust=dust, net=net)
    first = type(fused)(*(a[:1] for a in fused))
    feats = kernel_features(first, net, surrogate.kernel, **kwargs)
    kv = surrogate.kernel_with(feats)[0]
    contrib = kv * surrogate.alpha
    pred = surrogate.offset + contrib.sum()
    direction = 1.0 if pred >= surrogate.offset else -1.0
    order = np.argsort(-direction * contrib)
    k = min(k, len(order) // 2 or 1)
    rows = [("supporting", r + 1, i) for r, i in enumerate(order[:k])]
    rows += [("opposing", r + 1, i) for r, i in enumerate(order[::-1][:k])]
    idx = np.array([i for _, _, i in rows])
    table = Table({"role": [r for r, _, _ in rows], "rank": [r for _, r, _ in rows],
                   "index": idx, "id": surrogate.ids[idx], "z": surrogate.z[idx],
                   "z_net": surrogate.y[idx], "kernel": kv[idx],
                   "weight": surrogate.alpha[idx], "contribution": contrib[idx]})
    table.meta.update({"z_net": float(_network_mean(net, first)[0]),
                       "z_surrogate": float(pred), "offset": surrogate.offset,
                       "kernel": surrogate.kernel})
    return table


def _rgb(x):
    """A gri colour image (H, W, 3) of a fused galaxy, asinh-stretched for display."""
    rgb = np.stack([x[4], x[3], x[2]], axis=-1).astype(float)
    rgb = np.arcsinh(rgb / max(np.percentile(rgb, 99.5), 1e-6) * 3) / np.arcsinh(3)
    return np.clip(rgb, 0, 1)


def plot_examples(query_x, train_x, table, fig=None):
    """Figure: the query galaxy beside its top supporting and opposing training galaxies.

    Parameters
    ----------
    query_x : array-like, shape (9, H, W) or (1, 9, H, W), or `~astro_mantis.fusion.FusedInput`
        The query's fused image: what was given to `explain_by_example` (one galaxy).
    train_x : array-like, shape (N, 9, H, W), or `~astro_mantis.fusion.FusedInput`
        Fused images of the training set the surrogate was fitted on (indexed by
        ``table["index"]``).
    table : `~astropy.table.Table`
        From `explain_by_example`.
    fig : `matplotlib.figure.Figure`, optional

    Returns
    -------
    `matplotlib.figure.Figure`

    Raises
    ------
    ValueError
        If ``query_x`` holds more than one galaxy or the images are not fused
        (9, H, W) images.
    """
    from ..fusion.core import FusedInput
    from ..plotting import examples

    query = np.asarray(query_x.x if isinstance(query_x, FusedInput) else query_x)
    if query.ndim == 4:
        if len(query) != 1:
            raise ValueError(f"query_x must be one query galaxy, (9, H, W) or (1, 9, H, W); "
                             f"got shape {query.shape}")
        query = query[0]
    train = train_x.x if isinstance(train_x, FusedInput) else train_x
    if query.ndim != 3 or np.ndim(train) != 4:
        raise ValueError(f"expected fused images: query_x (9, H, W) and train_x "
                         f"(N, 9, H, W); got shapes {query.shape} and {np.shape(train)}")
    rows = []
    for role in ("supporting", "opposing"):
        sub = table[table["role"] == role]
        rows.append([(_rgb(np.asarray(train[sub["index"][j]])),
                      f"{role[:4]} {j + 1}: z={sub['z'][j]:.2f}\n"
                      f"c={sub['contribution'][j]:+.3f}") for j in range(len(sub))])
    return examples(_rgb(query),
                    f"query\nz_net={table.meta.get('z_net', np.nan):.3f}", rows, fig=fig)
