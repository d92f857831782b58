# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Shared plumbing of `astro_mantis.explain`: models, inputs, scalar targets, features."""
import warnings
from functools import lru_cache

import numpy as np
import torch

from ..fusion.core import CHANNELS, FusedInput
from ..fusion.exposure import model_panstarrs_exposure
from ..pdf import NBINS, ZMAX, ZMIN, RedshiftPDF

__all__ = ["BANDS", "SURVEYS", "SURVEY_CHANNELS", "TARGETS", "resolve_model", "as_fused",
           "model_grid", "scalar_target", "penultimate_features", "features_and_widths",
           "statistics_from_features",
           "features_and_statistics", "edge_mass", "band_misalignment", "STATISTICS",
           "EDGE_FRACTION", "MISALIGNMENT_RADIUS", "logits_and_features"]

#: Band names of the nine model channels, in channel order.
BANDS = tuple(band for _, band in CHANNELS)
#: The three surveys, in channel order.
SURVEYS = ("galex", "panstarrs", "unwise")
#: Survey name → indices of its channels.
SURVEY_CHANNELS = {s: tuple(i for i, (survey, _) in enumerate(CHANNELS) if survey == s)
                   for s in SURVEYS}
#: Scalar outputs of the network that can be explained.
TARGETS = ("mean", "logp", "cde")


@lru_cache(maxsize=2)
def _load(name):
    from ..models import load_model

    return load_model(name, device="cpu")


def resolve_model(model):
    """A network in ``eval()`` mode from a registry name or a module.

    Parameters
    ----------
    model : str or `torch.nn.Module`
        A registry name (loaded once with `astro_mantis.models.load_model` and kept) or a
        network taking ``(x, dust)`` and returning logits.

    Returns
    -------
    `torch.nn.Module`
    """
    if isinstance(model, str):
        return _load(model.lower())
    if isinstance(model, torch.nn.Module):
        return model.eval()
    raise TypeError(f"model must be a registry name or a torch.nn.Module; got "
                    f"{type(model).__name__}")


def model_grid(net):
    """Bin edges and softmax temperature of a network (from ``net.meta``)."""
    meta = dict(getattr(net, "meta", {}) or {})
    n_bins = int(meta.get("n_bins") or getattr(getattr(net, "fc1", None), "out_features", NBINS))
    edges = np.linspace(float(meta.get("z_min", ZMIN)), float(meta.get("z_max", ZMAX)),
                        n_bins + 1)
    return edges, float(meta.get("temperature") or 1.0)


def as_fused(data, dust=None, nan_policy="zero", net=None):
    """Early-fused input from cutouts, a `~astro_mantis.fusion.FusedInput` or an array.

    Parameters
    ----------
    data : cutouts, `~astro_mantis.fusion.FusedInput` or array-like
        Cutouts are fused with `astro_mantis.fusion.early_fusion`; an array must have
        shape (N, 9, H, W) (or one image (9, H, W)) and finite values.
    dust : array-like, shape (N, 2), optional
        E(B−V) (CSFD, Planck) for cutouts or arrays; ignored for a ``FusedInput``.
        None: zeros.
    nan_policy : {"zero", "inpaint"}
        For cutouts.
    net : `torch.nn.Module`, optional
        The network the input is for: cutouts are fused as it takes Pan-STARRS counts
        (its ``panstarrs_exposure``); None: as the published recipe.

    Returns
    -------
    `~astro_mantis.fusion.FusedInput`
        For an array, ``valid`` is False for the all-zero channels (what early fusion
        gives a missing survey) and ``flags`` are 0.
    """
    from ..multicutout import MultiSurveyCutout

    if isinstance(data, FusedInput):
        return data
    if isinstance(data, MultiSurveyCutout) or (
            isinstance(data, (list, tuple)) and len(data)
            and all(c is None or isinstance(c, MultiSurveyCutout) for c in data)):
        from ..fusion import early_fusion

        return early_fusion(data, ebv=dust, nan_policy=nan_policy,
                            panstarrs_exposure=model_panstarrs_exposure(net))
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    x = np.asarray(data, dtype=np.float32)
    if x.ndim == 3:
        x = x[np.newaxis]
    if x.ndim != 4 or x.shape[1] != len(CHANNELS):
        raise ValueError("expected cutouts, a FusedInput or a fused array of shape "
                         f"(N, {len(CHANNELS)}, H, W); got an array of shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("the fused array holds non-finite values: fuse cutouts with "
                         "astro_mantis.fusion.early_fusion, which replaces them")
    n = len(x)
    if dust is None:
        d = np.zeros((n, 2), np.float32)
    else:
        d = np.array(dust, dtype=np.float32)
        if d.size != 2 * n or d.shape[-1:] not in ((2,), (2 * n,)):
            raise ValueError(f"dust must have shape ({n}, 2); got {np.shape(dust)}")
        d = d.reshape(n, 2)
        if not np.isfinite(d).all():
            raise ValueError("dust holds non-finite values")
    valid = x.reshape(n, x.shape[1], x.shape[2] * x.shape[3]).any(axis=2)
    return FusedInput(x, d, valid, np.zeros(n, np.int64))


def no_data_rows(fused):
    """Rows of a `~astro_mantis.fusion.FusedInput` that hold no data at all.

    Early fusion marks them with no valid channel (``valid`` all False): a ``None``
    cutout (no position or no fetch), every survey missing, or, for a fused array
    (`as_fused`), an all-zero image. The explanations give them NaN instead of
    explaining the network's answer to a blank input.

    Returns
    -------
    `numpy.ndarray`, bool, shape (N,)
    """
    n = len(fused.x)
    if fused.valid is None or np.size(fused.valid) == 0:
        return np.zeros(n, bool)
    valid = np.asarray(fused.valid, dtype=bool)
    return ~valid.reshape(n, -1).any(axis=1)


def z_spec_values(z_spec):
    """Spectroscopic redshifts as a flat float64 array, NaN where masked.

    A masked entry (e.g. of a `~astropy.table.MaskedColumn`: a galaxy without a
    spectroscopic redshift) becomes NaN rather than the value stored under the mask.
    """
    return np.ma.filled(np.ma.asarray(z_spec, dtype=np.float64), np.nan).reshape(-1)


def _check_z_spec(z_spec, n, edges, target):
    if target == "mean":
        return None
    if z_spec is None:
        raise ValueError(f"target {target!r} needs z_spec (the spectroscopic redshift of "
                         "every row)")
    z = z_spec_values(z_spec)
    if z.shape != (n,):
        raise ValueError(f"z_spec must have one value per row ({n}); got shape "
                         f"{np.shape(z_spec)}")
    bad = ~np.isfinite(z) | (z < edges[0]) | (z >= edges[-1])
    if bad.any():
        raise ValueError(f"z_spec must be finite and in [{edges[0]}, {edges[-1]}) for target "
                         f"{target!r}; {int(bad.sum())} rows are not (e.g. {z[bad][0]!r})")
    return z


def scalar_target(net, target="mean", z_spec=None, n=None):
    """A function ``f(logits, index)`` → the scalar target of each row (a torch tensor).

    Parameters
    ----------
    net : `torch.nn.Module`
        Its ``meta`` gives the bins and the softmax temperature.
    target : {"mean", "logp", "cde"}
        ``"mean"``: the PDF mean ∑ p_k z_k over the bin centres;
        ``"logp"``: log of the probability of the bin holding ``z_spec``;
        ``"cde"``: the row's CDE loss ∫ p(z)² dz − 2 p(z_spec) (p a density).
        The probabilities are ``softmax(logits / T)`` with the model's calibration
        temperature T (the PIT recalibration map is not applied).
    z_spec : array-like, optional
        Needed for ``"logp"`` and ``"cde"``: one finite value per row, in the model's
        redshift range; a masked value counts as NaN (an error, not the value stored
        under the mask).
    n : int, optional
        Number of rows (checks ``z_spec``).

    Returns
    -------
    callable
        ``f(logits, index)`` where ``index`` (int tensor) holds the row of each logit
        vector (for ``z_spec``).
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}; got {target!r}")
    edges, temperature = model_grid(net)
    centres = torch.tensor(0.5 * (edges[1:] + edges[:-1]), dtype=torch.float32)
    widths = torch.tensor(np.diff(edges), dtype=torch.float32)
    z = _check_z_spec(z_spec, n if n is not None else np.size(z_spec), edges, target)
    bins = None if z is None else torch.as_tensor(
        np.clip(np.searchsorted(edges, z, side="right") - 1, 0, len(edges) - 2))

    def f(logits, index=None):
        logp = torch.log_softmax(logits.float() / temperature, dim=-1)
        if target == "mean":
            return logp.exp() @ centres.to(logp.device)
        b = bins.to(logp.device)[index]
        if target == "logp":
            return logp.gather(-1, b[:, None])[:, 0]
        dens = logp.exp() / widths.to(logp.device)
        return (dens * dens * widths.to(logp.device)).sum(-1) - 2.0 * dens.gather(
            -1, b[:, None])[:, 0]

    return f


def penultimate_features(net, x, dust, batch_size=64, layer="hidden", precision="float32"):
    """Features of a `~astro_mantis.models.PhotoZNet` before its output layer.

    Parameters
    ----------
    net : `~astro_mantis.models.PhotoZNet`
        Needs ``Base``, ``fc0`` and ``act`` (every registered model has them).
    x : array-like, float32, shape (N, 9, H, W)
    dust : array-like, float32, shape (N, 2)
    batch_size : int
    layer : {"hidden", "pooled"}
        ``"hidden"``: ``GELU(fc0([Base(x), dust]))``, the input of the last layer
        ``fc1`` (the penultimate features); ``"pooled"``: ``Base(x)``, the backbone's
        pooled features.
    precision : {"float32", "bfloat16", "float16", "int8"}
        Arithmetic of the pass (`torch.autocast` for the reduced types; ``"int8"``, a
        precision of `~astro_mantis.models.predict` only, runs in float32).

    Returns
    -------
    `numpy.ndarray`, float32, shape (N, n_features)
    """
    from ..models.precision import autocast

    if precision not in ("float32", "bfloat16", "float16", "int8"):
        raise ValueError(f"precision must be 'float32', 'bfloat16', 'float16' or 'int8'; "
                         f"got {precision!r}")
    if layer not in ("hidden", "pooled"):
        raise ValueError(f"layer must be 'hidden' or 'pooled'; got {layer!r}")
    for name in ("Base", "fc0", "act"):
        if not hasattr(net, name):
            raise TypeError(f"{type(net).__name__} has no {name!r}: penultimate features "
                            "need a PhotoZNet (Base, fc0, act, fc1)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    device = next(net.parameters()).device
    dtype = next(net.parameters()).dtype
    out = []
    net.eval()
    with torch.inference_mode(), autocast("float32" if precision == "int8" else precision,
                                          device):
        for s in range(0, len(x), batch_size):
            xb = torch.as_tensor(np.ascontiguousarray(x[s:s + batch_size])).to(device, dtype)
            db = torch.as_tensor(np.ascontiguousarray(dust[s:s + batch_size])).to(device, dtype)
            h = net.Base(xb)
            if layer == "hidden":
                h = net.act(net.fc0(torch.cat([h, db], dim=1)))
            out.append(h.float().cpu().numpy())
    if not out:
        return np.zeros((0, net.fc0.out_features if layer == "hidden"
                         else net.fc0.in_features - 2), np.float32)
    return np.concatenate(out)


#: Names of the per-galaxy statistics a reference embedding can hold beside the
#: distances, in the order `features_and_statistics` returns them (see
#: `astro_mantis.explain.ood`).
STATISTICS = ("width", "edge_mass", "misalignment")
#: `edge_mass` is the probability in the top ``EDGE_FRACTION`` of the model's redshift
#: range (z ≥ 1.44 on the 0 ≤ z < 1.6 grid).
EDGE_FRACTION = 0.1
#: Half side, in fused pixels (0.25″), of the central box `band_misalignment` measures
#: its centroids in: 16 pixels is 4″ either side of the target.
MISALIGNMENT_RADIUS = 16


def edge_mass(pdf, fraction=EDGE_FRACTION):
    """Probability of each PDF in the top ``fraction`` of its redshift range.

    A PDF that piles up against the upper end of the grid says the galaxy may lie
    beyond it: `ood_score <astro_mantis.explain.ood_score>` weighs it.

    Parameters
    ----------
    pdf : `~astro_mantis.RedshiftPDF`
    fraction : float
        In (0, 1]: 0.1 is z ≥ 1.44 on the 0 ≤ z < 1.6 grid.

    Returns
    -------
    `numpy.ndarray`, float64, shape (N,)
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction}")
    lo, hi = pdf.edges[0], pdf.edges[-1]
    return 1.0 - np.atleast_1d(pdf.cdf(hi - fraction * (hi - lo))).astype(np.float64)


def band_misalignment(x, radius=MISALIGNMENT_RADIUS):
    """How far the Pan-STARRS bands disagree on where the galaxy is, in fused pixels.

    In a box of ``2 radius`` pixels at the centre of each fused image (cutouts are
    centred on their target), the centroid of each Pan-STARRS band, weighted by the
    square of its positive excess over the band's median (the sky, measured on a
    4-pixel grid over the whole image); the result is the largest distance of a band's
    centroid from the bands' median centroid. A band cut from a misregistered or
    shifted image, or carrying an artefact near the target, moves away from the others;
    a centred galaxy seen alike in all bands stays at a fraction of a pixel, blank sky
    (noise) at a few pixels. `ood_score <astro_mantis.explain.ood_score>` weighs it.

    Parameters
    ----------
    x : array-like or `torch.Tensor`, shape (N, 9, H, W)
        Fused images (`~astro_mantis.fusion.fuse_arrays`; the Pan-STARRS channels are
        read, only in the central box and on the 4-pixel grid), e.g. the network's
        bfloat16 input.
    radius : int
        Half side of the central box, in pixels (at most H // 2).

    Returns
    -------
    `numpy.ndarray`, float64, shape (N,)
        Zero where the bands hold no light above their median (e.g. zeroed).
    """
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] != len(CHANNELS):
        raise ValueError(f"x must be fused images of shape (N, {len(CHANNELS)}, H, W); "
                         f"got {tuple(x.shape)}")
    h, w = x.shape[2:]
    radius = int(radius)
    if not 1 <= radius <= min(h, w) // 2:
        raise ValueError(f"radius must be between 1 and {min(h, w) // 2}; got {radius}")
    ps1 = SURVEY_CHANNELS["panstarrs"]
    ps1 = slice(ps1[0], ps1[-1] + 1)  # contiguous channels: views, not copies
    out = np.zeros(len(x))
    yy, xx = np.mgrid[-radius:radius, -radius:radius] + 0.5
    cy, cx = h // 2, w // 2
    for s in range(0, len(x), 256):  # bounded memory; only the pixels used are read
        grid = _float32(x[s:s + 256, ps1, ::4, ::4])
        sky = np.median(grid.reshape(grid.shape[:2] + (-1,)), axis=-1)
        box = _float32(x[s:s + 256, ps1, cy - radius:cy + radius, cx - radius:cx + radius])
        box = box - sky[..., None, None]
        wt = np.square(np.clip(box, 0, None), dtype=np.float64)
        tot = wt.sum((2, 3))
        lit = tot > 0
        safe = np.where(lit, tot, 1.0)
        px = np.where(lit, (wt * xx).sum((2, 3)) / safe, np.nan)
        py = np.where(lit, (wt * yy).sum((2, 3)) / safe, np.nan)
        with warnings.catch_warnings():  # rows with no lit band: NaN, then 0
            warnings.simplefilter("ignore", RuntimeWarning)
            mx, my = np.nanmedian(px, axis=1), np.nanmedian(py, axis=1)
            off = np.nanmax(np.hypot(px - mx[:, None], py - my[:, None]), axis=1)
        out[s:s + len(box)] = np.nan_to_num(off, nan=0.0)
    return out


def _float32(a):
    """A numpy array or a CPU tensor (e.g. bfloat16) as a float32 numpy array."""
    if isinstance(a, torch.Tensor):
        return a.detach().float().cpu().numpy()
    return np.asarray(a, dtype=np.float32)


def features_and_statistics(net, x, dust, batch_size=64, precision="float32",
                            statistics=STATISTICS):
    """Penultimate features and the trust statistics of each galaxy, from one forward pass.

    `penultimate_features` then `statistics_from_features`. The statistics
    (`STATISTICS`), all weighed by `~astro_mantis.explain.ood_score`:

    * ``"width"`` — `RedshiftPDF.std <astro_mantis.RedshiftPDF.std>` of the network's
      own PDF: the softmax of its logits divided by the model's calibration
      temperature, on the model's redshift grid (no PIT recalibration map);
    * ``"edge_mass"`` — `edge_mass` of that PDF: its probability in the top tenth of
      the redshift range;
    * ``"misalignment"`` — `band_misalignment` of the input images.

    Parameters
    ----------
    net : `~astro_mantis.models.PhotoZNet`
    x : array-like, float32, shape (N, 9, H, W)
    dust : array-like, float32, shape (N, 2)
    batch_size : int
    precision : {"float32", "bfloat16", "float16", "int8"}
        Arithmetic of the pass (`torch.autocast` for the reduced types; ``"int8"``, a
        precision of `~astro_mantis.models.predict` only, runs in float32). References
        are built in float32; on the bundled model and 2,048 mock test galaxies,
        bfloat16 moved `~astro_mantis.explain.ood_score` by 0.003 on average (at most
        0.07) and changed 2 ``OUT_OF_DISTRIBUTION`` flags, at 1.5 times the speed
        (the band misalignment, read from the images, does not depend on it).
    statistics : sequence of str
        Which of `STATISTICS` to compute (default all; the others cost nothing).

    Returns
    -------
    features : `numpy.ndarray`, float32, shape (N, hidden)
    statistics : dict
        Name → `numpy.ndarray`, float64, shape (N,), for each statistic asked for.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    _check_statistics(statistics)
    feats = penultimate_features(net, x, dust, batch_size=batch_size, precision=precision)
    return feats, statistics_from_features(net, feats, x, statistics)


def _check_statistics(statistics):
    unknown = sorted(set(statistics) - set(STATISTICS))
    if unknown:
        raise ValueError(f"unknown statistics {unknown}; known: {', '.join(STATISTICS)}")


def statistics_from_features(net, features, x=None, statistics=STATISTICS):
    """The trust statistics of galaxies whose penultimate features are known.

    For a caller that already ran the network, e.g. `~astro_mantis.models.predict`
    with ``features=True`` (the table job's single pass): the PDF width and edge
    mass come from the network's own PDF, ``softmax(fc1(features) / T)`` in float32
    (``fc1`` is the last layer, T the model's calibration temperature), the band
    misalignment from the images. See `features_and_statistics` for what each is.

    Parameters
    ----------
    net : `~astro_mantis.models.PhotoZNet`
    features : array-like, shape (N, hidden)
        `penultimate_features` of the galaxies.
    x : array-like, shape (N, 9, H, W), optional
        Their fused images; needed for ``"misalignment"`` only.
    statistics : sequence of str
        Which of `STATISTICS` to compute.

    Returns
    -------
    dict
        Name → `numpy.ndarray`, float64, shape (N,), for each statistic asked for.
    """
    _check_statistics(statistics)
    features = np.asarray(features, dtype=np.float32)
    out = {name: np.zeros(0) for name in STATISTICS}
    if len(features) and ("width" in statistics or "edge_mass" in statistics):
        edges, temperature = model_grid(net)
        fc1 = net.fc1
        with torch.inference_mode():
            logits = torch.nn.functional.linear(
                torch.from_numpy(features), fc1.weight.detach().float().cpu(),
                None if fc1.bias is None else fc1.bias.detach().float().cpu())
        pdf = RedshiftPDF.from_logits(logits.double().numpy(), edges=edges,
                                      temperature=temperature)
        if "width" in statistics:
            out["width"] = np.atleast_1d(pdf.std()).astype(np.float64)
        if "edge_mass" in statistics:
            out["edge_mass"] = edge_mass(pdf)
    if "misalignment" in statistics and len(features):
        if x is None:
            raise ValueError("the 'misalignment' statistic needs the fused images (x=)")
        out["misalignment"] = band_misalignment(x)
    return {name: out[name] for name in STATISTICS if name in statistics}


def features_and_widths(net, x, dust, batch_size=64, precision="float32"):
    """Penultimate features and the width of each galaxy's PDF, from one forward pass.

    `features_and_statistics` with its ``"width"`` statistic alone (see there).

    Returns
    -------
    features : `numpy.ndarray`, float32, shape (N, hidden)
    widths : `numpy.ndarray`, float64, shape (N,)
    """
    feats, stats = features_and_statistics(net, x, dust, batch_size, precision, ("width",))
    return feats, stats["width"]


def logits_and_features(net, x, dust):
    """Logits and penultimate features of one batch in a single forward pass.

    For callers that need both (e.g. a redshift table with an OOD score): the logits
    are ``fc1(drop(h))`` of the returned features ``h``, as in
    `~astro_mantis.models.PhotoZNet.forward` in ``eval()`` mode
    (`~astro_mantis.models.PhotoZNet.forward_with_features`).

    Parameters
    ----------
    net : `~astro_mantis.models.PhotoZNet`
        In ``eval()`` mode.
    x : `torch.Tensor`, shape (N, 9, H, W)
    dust : `torch.Tensor`, shape (N, 2)

    Returns
    -------
    logits : `torch.Tensor`, shape (N, n_bins)
    features : `torch.Tensor`, shape (N, hidden)
    """
    return net.forward_with_features(x, dust)
