# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Band and survey utilisation: which bands did the network use for a redshift?

`band_attribution` splits a scalar output of the network — the PDF mean, the log
probability of the spectroscopic bin, or the CDE loss — among the nine bands (and,
separately, among the three surveys), as in the utilisation study of the Mantis Shrimp
paper (Engel et al. 2025).

Removing a band
===============
A band is "removed" by setting its fused channel to **0**: exactly what
`astro_mantis.fusion.early_fusion` feeds the network when a survey is missing (absent
surveys give all-zero channels, and every normalisation maps zero flux to 0). The
dust values are kept. The attributions therefore answer "how would the output change
if these bands had not been observed", on the scale the network was trained with.

Methods
=======
``"shapley"``
    Exact Shapley values. For the bands, the value of all 2⁹ = 512 coalitions
    (band subsets) is computed for each galaxy (batched forward passes), and
    φ_j = Σ_S s!(9−s−1)!/9! [v(S ∪ {j}) − v(S)], s the size of S. The survey values are the
    Shapley values of the three-player game whose players are whole surveys (8 of the
    same 512 coalitions), so they cost nothing extra; note that a survey's value is
    not the sum of its bands' values. Efficiency holds by construction:
    Σ φ = v(all) − v(none).
``"ig"``
    Integrated gradients (captum's ``captum.attr.IntegratedGradients``, baseline the
    all-zero input, ``n_steps`` Riemann steps), summed over the pixels of each
    channel; a survey's value is the sum of its bands'. Cheap (one backward pass per
    step) but only approximately complete: ``ig_delta`` reports Σ φ − (v(all) −
    v(none)).
"""
import math

import numpy as np
import torch
from astropy.table import Table

from ._common import (BANDS, SURVEY_CHANNELS, SURVEYS, TARGETS, as_fused, model_grid,
                      no_data_rows, resolve_model, scalar_target, z_spec_values)
from ..pdf import ZMAX, ZMIN

__all__ = ["band_attribution", "shapley_from_values", "coalition_values",
           "add_attribution_columns", "survey_shares_by_redshift", "plot_survey_shares",
           "METHODS"]

#: Accepted values of ``method``.
METHODS = ("shapley", "ig")


def _coalition_masks(n_players):
    """(2**n, n) bool: row c holds the players of coalition c (bit j of c ↔ player j)."""
    c = np.arange(2 ** n_players)
    return ((c[:, None] >> np.arange(n_players)) & 1).astype(bool)


def shapley_from_values(values, n_players):
    """Exact Shapley values from the values of all coalitions.

    Parameters
    ----------
    values : array-like, shape (N, 2**n_players)
        ``values[:, c]`` is the value of coalition ``c``, whose players are the set
        bits of ``c`` (bit ``j`` ↔ player ``j``).
    n_players : int

    Returns
    -------
    `numpy.ndarray`, float64, shape (N, n_players)
        Shapley values; each row sums to ``values[:, -1] - values[:, 0]`` up to
        float64 rounding.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 2 ** n_players:
        raise ValueError(f"values must have shape (N, {2 ** n_players}) for {n_players} "
                         f"players; got {v.shape}")
    c = np.arange(2 ** n_players)
    size = np.array([bin(k).count("1") for k in c])
    weight = np.array([math.factorial(s) * math.factorial(n_players - s - 1)
                       / math.factorial(n_players) if s < n_players else 0.0 for s in size])
    phi = np.empty((len(v), n_players))
    for j in range(n_players):
        without = c[(c >> j) & 1 == 0]
        phi[:, j] = (v[:, without | (1 << j)] - v[:, without]) @ weight[without]
    return phi


def coalition_values(net, fused, masks, target="mean", z_spec=None, batch_size=256,
                     baseline=0.0):
    """The target output of every galaxy with only some channels kept.

    Parameters
    ----------
    net : `torch.nn.Module`
    fused : `~astro_mantis.fusion.FusedInput`
    masks : array-like of bool, shape (C, 9)
        Channels kept in each of C coalitions; the others are set to ``baseline``.
    target, z_spec
        As in `band_attribution`.
    batch_size : int
        Images per forward pass.
    baseline : float or array-like broadcastable to (9, H, W)
        Value of a removed channel (default 0: a missing survey).

    Returns
    -------
    `numpy.ndarray`, float64, shape (N, C)
    """
    x, dust = fused.x, fused.dust
    n = len(x)
    masks = np.asarray(masks, dtype=bool)
    f = scalar_target(net, target, z_spec, n)
    device = next(net.parameters()).device
    dtype = next(net.parameters()).dtype
    m = torch.as_tensor(masks)[:, :, None, None].to(device)
    base = torch.as_tensor(np.broadcast_to(np.asarray(baseline, np.float32),
                                           x.shape[1:]).copy()).to(device, dtype)
    out = np.empty((n, len(masks)))
    per = max(1, int(batch_size))
    net.eval()
    with torch.inference_mode():
        for i in range(n):
            xi = torch.as_tensor(x[i]).to(device, dtype)
            di = torch.as_tensor(dust[i]).to(device, dtype)
            for s in range(0, len(masks), per):
                mb = m[s:s + per]
                xb = torch.where(mb, xi[None], base[None])
                logits = net(xb, di[None].expand(len(mb), -1))
                idx = torch.full((len(mb),), i, dtype=torch.long)
                out[i, s:s + per] = f(logits, idx).double().cpu().numpy()
    return out


def _survey_coalitions():
    """The 8 band-coalition indices made of whole surveys, in survey-bit order."""
    idx = []
    for c in range(2 ** len(SURVEYS)):
        bits = 0
        for k, s in enumerate(SURVEYS):
            if (c >> k) & 1:
                for ch in SURVEY_CHANNELS[s]:
                    bits |= 1 << ch
        idx.append(bits)
    return np.array(idx)


class _TargetModule(torch.nn.Module):
    """``(x, dust, index)`` → scalar target per row: the form captum's methods call."""

    def __init__(self, net, f):
        super().__init__()
        self.net, self.f = net, f

    def forward(self, x, dust, index):
        return self.f(self.net(x, dust), index)


def _shares(phi_surveys):
    a = np.abs(phi_surveys)
    tot = a.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, a / np.where(tot > 0, tot, 1), np.nan)


def band_attribution(cutouts_or_fused, model="mantis-mini", method="shapley", target="mean",
                     z_spec=None, dust=None, batch_size=256, n_steps=50, baseline=0.0):
    """Per-band and per-survey attributions of a redshift output.

    Parameters
    ----------
    cutouts_or_fused : cutouts, `~astro_mantis.fusion.FusedInput` or array-like
        The galaxies: cutouts (fused with `~astro_mantis.fusion.early_fusion`), a
        ``FusedInput``, or a fused array (N, 9, 120, 120).
    model : str or `torch.nn.Module`
        Registry name (``"mantis-mini"``, or ``"mantis-shrimp-v1"`` once its weights
        are available) or a network taking ``(x, dust)``.
    method : {"shapley", "ig"}
        Exact Shapley values over the 512 band coalitions (and the 8 survey
        coalitions), or integrated gradients summed per band (see the module notes).
    target : {"mean", "logp", "cde"}
        The output explained: the PDF mean; the log probability of the bin holding
        ``z_spec``; the row's CDE loss (lower is better) given ``z_spec``.
    z_spec : array-like, optional
        Spectroscopic redshift per row (one value for every input row, including
        rows without data), needed by ``"logp"`` and ``"cde"``. A masked value (e.g.
        in a `~astropy.table.MaskedColumn`: a galaxy without a spectroscopic
        redshift) leaves its row without a target: NaN in every column, as a row
        without data. An unmasked value must be finite and in the model's redshift
        range, except on rows without data.
    dust : array-like, shape (N, 2), optional
        E(B−V) for cutouts or arrays (a ``FusedInput`` carries its own).
    batch_size : int
        Images per forward pass (Shapley).
    n_steps : int
        Integration steps (integrated gradients).
    baseline : float or array-like broadcastable to (9, H, W)
        Value of a removed channel; the default 0 is what the network sees for a
        missing survey. Change it only to study other baselines.

    Returns
    -------
    `~astropy.table.Table`
        One row per galaxy: ``phi_<band>`` for the nine bands (``phi_NUV`` ...
        ``phi_W2``), ``phi_<survey>`` and ``share_<survey>`` (abs(φ_survey) / Σ abs(φ),
        the survey's share of the attribution; NaN when all are 0) for ``galex``,
        ``panstarrs``, ``unwise``, ``v_all`` and ``v_none`` (the target with every
        band, and with none), and for ``"ig"`` ``ig_delta``. A row that holds no data
        (no valid channel in its fused input: a ``None`` cutout, every survey missing,
        an all-zero fused image) is NaN in every column; ``z_spec`` is not checked
        for it. So is a row whose ``z_spec`` is masked (``"logp"`` and ``"cde"``).
        ``meta`` records the method, target, baseline and model.

    Raises
    ------
    ValueError
        Unknown method or target, a target needing ``z_spec`` without it, a ``z_spec``
        without one value per input row, an unmasked ``z_spec`` of a row with data
        that is not finite or lies outside the model's redshift range, bad shapes.

    Examples
    --------
    >>> from astro_mantis.models import build_model
    >>> from astro_mantis.explain import band_attribution
    >>> import numpy as np
    >>> net = build_model("mantis-mini", widths=(4, 8), depths=(1, 1), hidden=16).eval()
    >>> x = np.random.default_rng(0).random((1, 9, 120, 120), dtype=np.float32)
    >>> t = band_attribution(x, model=net)
    >>> bool(np.isclose(sum(t[f"phi_{b}"][0] for b in "NUV FUV g r i z y W1 W2".split()),
    ...                 t["v_all"][0] - t["v_none"][0]))
    True
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}; got {target!r}")
    net = resolve_model(model)
    fused = as_fused(cutouts_or_fused, dust=dust, net=net)
    n_all = len(fused.x)
    empty = no_data_rows(fused)
    if target != "mean" and z_spec is not None:
        # checked against every input row, before any row is left out: a z_spec one
        # value short must not be paired with the rows that hold data
        z_values = z_spec_values(z_spec)
        if z_values.shape != (n_all,):
            raise ValueError(f"z_spec must have one value per row ({n_all}); got shape "
                             f"{np.shape(z_spec)}")
        empty = empty | np.ma.getmaskarray(np.ma.asarray(z_spec)).reshape(-1)
        z_spec = z_values
    keep = np.flatnonzero(~empty)
    if empty.any():  # rows without data or target: NaN, and no forward pass spent on them
        fused = type(fused)(*(np.asarray(a)[keep] for a in fused))
        if z_spec is not None and target != "mean":
            z_spec = z_spec[keep]
    n = len(fused.x)
    f = scalar_target(net, target, z_spec, n)  # checks z_spec
    table = Table()
    if method == "shapley":
        masks = _coalition_masks(len(BANDS))
        values = coalition_values(net, fused, masks, target, z_spec, batch_size, baseline)
        phi_b = shapley_from_values(values, len(BANDS))
        phi_s = shapley_from_values(values[:, _survey_coalitions()], len(SURVEYS))
        v_all, v_none = values[:, -1], values[:, 0]
    else:
        from captum.attr import IntegratedGradients

        if n_steps < 2:
            raise ValueError(f"n_steps must be at least 2; got {n_steps}")
        device = next(net.parameters()).device
        dtype = next(net.parameters()).dtype
        ig = IntegratedGradients(_TargetModule(net, f))
        phi_b, delta, v_all, v_none = [], [], [], []
        base = torch.as_tensor(np.broadcast_to(np.asarray(baseline, np.float32),
                                               fused.x.shape[1:]).copy()).to(device, dtype)
        for i in range(n):
            xi = torch.as_tensor(fused.x[i:i + 1]).to(device, dtype)
            di = torch.as_tensor(fused.dust[i:i + 1]).to(device, dtype)
            idx = torch.tensor([i])
            attr = ig.attribute(xi, baselines=base[None], additional_forward_args=(di, idx),
                                n_steps=n_steps, internal_batch_size=max(2, batch_size // 4))
            phi_b.append(attr.sum(dim=(2, 3))[0].double().cpu().numpy())
            with torch.inference_mode():
                va = float(f(net(xi, di), idx))
                vn = float(f(net(base[None], di), idx))
            v_all.append(va)
            v_none.append(vn)
            delta.append(phi_b[-1].sum() - (va - vn))
        phi_b = np.array(phi_b).reshape(n, len(BANDS))
        phi_s = np.stack([phi_b[:, list(SURVEY_CHANNELS[s])].sum(axis=1) for s in SURVEYS],
                         axis=1)
        v_all, v_none = np.array(v_all), np.array(v_none)

    def rows(a):  # back to every input row, NaN for those without data
        a = np.asarray(a, dtype=np.float64)
        out = np.full((n_all,) + a.shape[1:], np.nan)
        out[keep] = a
        return out

    phi_b, phi_s, shares = rows(phi_b), rows(phi_s), rows(_shares(phi_s))
    for j, band in enumerate(BANDS):
        table[f"phi_{band}"] = phi_b[:, j]
    for k, s in enumerate(SURVEYS):
        table[f"phi_{s}"] = phi_s[:, k]
    for k, s in enumerate(SURVEYS):
        table[f"share_{s}"] = shares[:, k]
    table["v_all"], table["v_none"] = rows(v_all), rows(v_none)
    if method == "ig":
        table["ig_delta"] = rows(np.array(delta))
    meta = dict(getattr(net, "meta", {}) or {})
    table.meta.update({"method": method, "target": target,
                       "baseline": "zero (missing survey)" if np.ndim(baseline) == 0
                       and float(baseline) == 0.0 else "custom",
                       "model": meta.get("name", type(net).__name__),
                       "temperature": model_grid(net)[1]})
    if method == "ig":
        table.meta["n_steps"] = int(n_steps)
    for name in table.colnames:
        table[name].description = _describe(name, target)
    return table


def _describe(name, target):
    what = {"mean": "PDF mean", "logp": "log p(z_spec bin)", "cde": "CDE loss"}[target]
    if name.startswith("phi_"):
        return f"attribution of the {what} to {name[4:]}"
    if name.startswith("share_"):
        return f"share of {name[6:]} in the survey attributions (|phi| / sum |phi|)"
    if name == "v_all":
        return f"{what} with every band"
    if name == "v_none":
        return f"{what} with every band removed (all-zero input)"
    return "integrated-gradients completeness error: sum phi - (v_all - v_none)"


def add_attribution_columns(table, attributions, prefix=""):
    """Copy the ``phi_<band>``, ``phi_<survey>`` and ``share_<survey>`` columns onto a table.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The user's table, row-aligned with ``attributions``; changed in place.
    attributions : `~astropy.table.Table`
        What `band_attribution` returned.
    prefix : str
        Prepended to the column names (e.g. ``"z_"``).

    Returns
    -------
    `~astropy.table.Table`
        ``table``.
    """
    if len(table) != len(attributions):
        raise ValueError(f"the table has {len(table)} rows but the attributions "
                         f"{len(attributions)}: they must be row-aligned")
    names = [c for c in attributions.colnames if c.startswith(("phi_", "share_"))]
    if not names:
        raise ValueError("attributions has no phi_/share_ columns: pass what "
                         "band_attribution returned")
    for c in names:
        table[prefix + c] = attributions[c]
    table.meta[prefix + "attribution"] = {k: attributions.meta.get(k)
                                          for k in ("method", "target", "model", "baseline")}
    return table


def survey_shares_by_redshift(attributions, z, bins=8, zrange=(ZMIN, ZMAX)):
    """Mean survey shares in redshift bins.

    Parameters
    ----------
    attributions : `~astropy.table.Table`
        With ``share_<survey>`` columns (`band_attribution`).
    z : array-like
        Redshift of each row (spectroscopic, or the PDF mean); a row whose redshift
        is masked or NaN falls in no bin.
    bins : int or array-like
        Number of equal bins over ``zrange``, or bin edges.
    zrange : (float, float)

    Returns
    -------
    `~astropy.table.Table`
        ``z_lo``, ``z_hi``, ``n``, and ``share_<survey>`` with its standard error
        ``share_<survey>_err`` per bin (NaN in empty bins). ``n`` counts the rows the
        means are taken over: those of the bin whose shares are finite (and not
        masked) in every survey; rows with NaN shares (no data, or every
        attribution 0) are left out of both.
    """
    z = np.ma.filled(np.ma.asarray(z, dtype=float), np.nan)  # masked: in no bin
    if len(z) != len(attributions):
        raise ValueError(f"z has {len(z)} values for {len(attributions)} rows")
    edges = np.linspace(*zrange, int(bins) + 1) if np.ndim(bins) == 0 else np.asarray(bins)
    out = Table({"z_lo": edges[:-1], "z_hi": edges[1:]})
    which = np.digitize(z, edges) - 1
    shares = {s: np.ma.filled(np.ma.asarray(attributions[f"share_{s}"], dtype=float), np.nan)
              for s in SURVEYS}
    # the rows averaged: finite shares in every survey (NaN: no data, or nothing to share)
    usable = np.logical_and.reduce([np.isfinite(v) for v in shares.values()])
    out["n"] = [int(np.sum((which == k) & usable)) for k in range(len(edges) - 1)]
    for s in SURVEYS:
        share = shares[s]
        mean, err = [], []
        for k in range(len(edges) - 1):
            v = share[(which == k) & usable]
            mean.append(v.mean() if v.size else np.nan)
            err.append(v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else np.nan)
        out[f"share_{s}"], out[f"share_{s}_err"] = mean, err
    return out


def plot_survey_shares(attributions, z, bins=8, zrange=(ZMIN, ZMAX), ax=None):
    """Plot the mean survey shares against redshift (the paper's utilisation figure).

    Parameters
    ----------
    attributions : `~astropy.table.Table`
        From `band_attribution`.
    z : array-like
        Redshift of each row.
    bins, zrange
        As in `survey_shares_by_redshift`.
    ax : `matplotlib.axes.Axes`, optional

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    from ..plotting import survey_shares

    binned = survey_shares_by_redshift(attributions, z, bins, zrange)
    mid = 0.5 * (np.asarray(binned["z_lo"]) + np.asarray(binned["z_hi"]))
    shares = {s: (np.asarray(binned[f"share_{s}"]), np.asarray(binned[f"share_{s}_err"]))
              for s in SURVEYS}
    meta = attributions.meta
    return survey_shares(mid, shares, ax=ax,
                         title=f"{meta.get('model', '')}: {meta.get('method', '')} on "
                               f"{meta.get('target', '')}")
