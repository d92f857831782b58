"""Inference: cutouts (or fused arrays) in, `~astro_mantis.pdf.RedshiftPDF` out."""
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from astropy import units as u

from ..flags import MantisFlag
from .registry import Z_MAX, Z_MIN, load_model, select_device

__all__ = ["predict", "predict_logits", "dihedral_transforms", "clear_model_cache"]

_CACHE = OrderedDict()
_CACHE_SIZE = 2


def clear_model_cache():
    """Forget the models `predict` loaded by name (they are kept for the next call)."""
    _CACHE.clear()


def _cached_model(name, weights, device):
    stamp = None
    if weights is not None and Path(str(weights)).is_file():
        stamp = Path(weights).stat().st_mtime_ns
    key = (name, None if weights is None else str(weights), str(device), stamp)
    if key not in _CACHE:
        model = load_model(name, weights=weights, device=device)
        if device.type in ("cpu", "cuda"):
            model = model.to(memory_format=torch.channels_last)
        _CACHE[key] = model
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


def dihedral_transforms():
    """The 8 flips and 90° rotations of an image (the dihedral group D4).

    Returns
    -------
    list of callable
        Each maps a tensor (N, C, H, W) to its transformed copy; the first is the
        identity.
    """
    def make(k, flip):
        def f(x):
            if flip:
                x = torch.flip(x, dims=(3,))
            return torch.rot90(x, k, dims=(2, 3)) if k else x
        return f
    return [make(k, flip) for flip in (False, True) for k in range(4)]


def _is_cutouts(data):
    from ..multicutout import MultiSurveyCutout

    return isinstance(data, MultiSurveyCutout) or (
        isinstance(data, (list, tuple))
        and all(c is None or isinstance(c, MultiSurveyCutout) for c in data))


def _array_inputs(data, dust):
    """(x, dust, flags) as checked numpy arrays from a fused array."""
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    x = np.asarray(data, dtype=np.float32)
    if x.ndim == 3:
        x = x[np.newaxis]
    if x.ndim != 4:
        raise ValueError("expected MultiSurveyCutout(s) or a fused array of shape "
                         f"(N, 9, 120, 120); got an array of shape {x.shape}")
    n = x.shape[0]
    flags = np.zeros(n, np.int64)
    if dust is None:
        d = np.zeros((n, 2), np.float32)
        flags |= int(MantisFlag.DUST_UNKNOWN)
    else:
        if isinstance(dust, torch.Tensor):
            dust = dust.detach().cpu().numpy()
        d = np.array(dust, dtype=np.float32)
        if d.shape == (2,) and n == 1:
            d = d[np.newaxis]
        if d.shape != (n, 2):
            raise ValueError(f"dust must have shape ({n}, 2); got {np.shape(dust)}")
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise ValueError(f"the input holds {bad} non-finite values; the network never sees NaN "
                         "or inf: fuse cutouts with astro_mantis.fusion.early_fusion (which "
                         "zeroes or inpaints them) or clean the array first")
    if not np.isfinite(d).all():
        raise ValueError("dust holds non-finite values; pass 0 and flag DUST_UNKNOWN instead")
    return x, d, flags


def predict_logits(model, x, dust, batch_size=64, tta=False, device=None, temperature=1.0):
    """Run a network over a fused batch; logits, or TTA-averaged probabilities.

    Parameters
    ----------
    model : `torch.nn.Module`
        ``model(x, dust)`` → logits (N, n_bins).
    x : `numpy.ndarray`, float32, shape (N, C, H, W)
        Finite fused images.
    dust : `numpy.ndarray`, float32, shape (N, 2)
    batch_size : int
    tta : bool
        Average the softmax probabilities over the 8 `dihedral_transforms`.
    device : `torch.device`, optional
        Default: where the model's parameters are.
    temperature : float
        Calibration temperature (only used with ``tta``, for the softmax).

    Returns
    -------
    `numpy.ndarray`, float32, shape (N, n_bins)
        Logits when ``tta`` is False, bin probabilities (rows sum to 1) when True.
    """
    if device is None:
        device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    transforms = dihedral_transforms() if tta else None
    channels_last = torch.device(device).type in ("cpu", "cuda")
    out = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size]))
                xb = xb.to(device=device, dtype=dtype)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                db = torch.from_numpy(np.ascontiguousarray(dust[start:start + batch_size]))
                db = db.to(device=device, dtype=dtype)
                if not tta:
                    out.append(model(xb, db).float().cpu())
                    continue
                probs = 0
                for t in transforms:
                    logits = model(t(xb), db).float() / float(temperature)
                    probs = probs + torch.softmax(logits, dim=1)
                out.append((probs / len(transforms)).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, model.fc1.out_features), np.float32)


def predict(data, model="mantis-mini", dust=None, tta=False, batch_size=64, device=None,
            weights=None, nan_policy="zero"):
    """Redshift PDFs of galaxies from their cutouts (or from fused arrays).

    Deterministic: the network runs in ``eval()`` mode under `torch.inference_mode`,
    without the random rotations and flips the reference applies at inference. With
    ``tta=True`` the softmax probabilities are averaged over all 8 flips and 90°
    rotations instead. The calibration temperature of the model's card
    (``model.meta["temperature"]``) divides the logits when present, and its PIT
    recalibration map (``model.meta["calibration"]["pit_map"]``) is then applied to
    the PDFs' CDFs (`astro_mantis.pdf.RedshiftPDF.remap_cdf`).

    Parameters
    ----------
    data : `~astro_mantis.MultiSurveyCutout`, sequence of them, or array-like
        Cutouts (fused with `~astro_mantis.fusion.early_fusion`), or an already fused
        array (N, 9, 120, 120) (or one image (9, 120, 120)) of finite values.
    model : str or `torch.nn.Module`
        A registry name (loaded once with `~astro_mantis.models.load_model` and
        remembered for later calls), or a network object taking ``(x, dust)``.
    dust : array-like, shape (N, 2), optional
        Milky Way E(B−V) (CSFD, Planck) per galaxy. None: zeros and the
        `~astro_mantis.MantisFlag.DUST_UNKNOWN` flag.
    tta : bool
        Test-time augmentation over the 8 dihedral transforms (8× slower).
    batch_size : int
        Galaxies per forward pass.
    device : str or `torch.device`, optional
        ``"cpu"``, ``"cuda"``, ``"mps"``; None: the best available for a model given
        by name, the model's own device for a model object.
    weights : str or path-like, optional
        Weights path or URL for a model given by name (see
        `~astro_mantis.models.load_model`).
    nan_policy : {"zero", "inpaint"}
        Passed to `~astro_mantis.fusion.early_fusion` for cutouts.

    Returns
    -------
    `~astro_mantis.pdf.RedshiftPDF`
        One PDF per input row, in order (a scalar PDF for one cutout or one
        (9, 120, 120) image). ``meta`` holds ``model``, ``weights``,
        ``sha256``, ``temperature``, ``tta``, and per row ``flags``
        (`~astro_mantis.MantisFlag` bits, int64 array) and ``valid`` (N, 9) when
        cutouts were given.
    """
    from ..pdf import RedshiftPDF

    if isinstance(model, str):
        device = select_device(device)
        net = _cached_model(model, weights, device)
    elif isinstance(model, torch.nn.Module):
        net = model
        if device is not None:
            device = select_device(device)
            net = net.to(device)
    else:
        raise TypeError(f"model must be a registry name or a torch.nn.Module; got "
                        f"{type(model).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    meta_in = dict(getattr(net, "meta", {}) or {})
    temperature = float(meta_in.get("temperature") or 1.0)
    n_bins = int(meta_in.get("n_bins", net.fc1.out_features if hasattr(net, "fc1") else 400))
    edges = np.linspace(meta_in.get("z_min", Z_MIN), meta_in.get("z_max", Z_MAX), n_bins + 1)

    from ..multicutout import MultiSurveyCutout

    scalar = isinstance(data, MultiSurveyCutout) or (not _is_cutouts(data)
                                                    and np.ndim(data) == 3)
    valid = None
    if _is_cutouts(data):
        # fuse chunk by chunk: a fused galaxy takes 0.5 MB, a catalogue would not fit
        from ..fusion import dust_array, early_fusion

        cuts = [data] if isinstance(data, MultiSurveyCutout) else list(data)
        ebv = None
        if dust is not None:  # NaN rows stay NaN: early_fusion zeroes and flags them
            ebv = np.array(dust.to_value(u.mag) if isinstance(dust, u.Quantity) else dust,
                           dtype=np.float32)
            if ebv.shape == (2,) and len(cuts) == 1:
                ebv = ebv[np.newaxis]
            dust_array(ebv, len(cuts))  # checks the shape
        parts = [np.zeros((0, n_bins), np.float32)]
        flags, valid = [np.zeros(0, np.int64)], [np.zeros((0, 9), bool)]
        for start in range(0, len(cuts), batch_size):
            fused = early_fusion(cuts[start:start + batch_size],
                                 ebv=None if ebv is None else ebv[start:start + batch_size],
                                 nan_policy=nan_policy)
            parts.append(predict_logits(net, fused.x, fused.dust, batch_size=batch_size,
                                        tta=tta, device=device, temperature=temperature))
            flags.append(fused.flags)
            valid.append(fused.valid)
        out, flags, valid = np.concatenate(parts), np.concatenate(flags), np.concatenate(valid)
    else:
        x, d, flags = _array_inputs(data, dust)
        out = predict_logits(net, x, d, batch_size=batch_size, tta=tta, device=device,
                             temperature=temperature)
    meta = {"model": meta_in.get("name", type(net).__name__), "weights": meta_in.get("weights"),
            "sha256": meta_in.get("sha256"), "trained": meta_in.get("trained"),
            "temperature": temperature, "tta": bool(tta),
            "flags": int(flags[0]) if scalar else flags}
    if valid is not None:
        meta["valid"] = valid[0] if scalar else valid
    if scalar:
        out = out[0]
    if tta:
        pdf = RedshiftPDF(out / np.diff(edges), edges=edges, meta=meta)
    else:
        pdf = RedshiftPDF.from_logits(out, edges=edges, temperature=temperature, meta=meta)
    pit_map = (meta_in.get("calibration") or {}).get("pit_map")
    if pit_map:
        pdf = pdf.remap_cdf(pit_map["knots"], pit_map["values"])
        pdf.meta["pit_recalibrated"] = True
    return pdf
