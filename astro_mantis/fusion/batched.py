"""Fast early fusion: threaded and in place on CPUs, in torch on accelerators.

Three implementations of the published early-fusion recipe of
`astro_mantis.fusion.core` (centre crops, the NaN policy, the three normalisations,
the antialiased bilinear resize 22 → 120), both checked against it in the tests:

* `fuse_arrays_batched` (and `~astro_mantis.fusion.batched.fuse_survey_batched`) —
  on the CPU. **Bit-identical** to `~astro_mantis.fusion.core.fuse_arrays`
  (``numpy.testing.assert_array_equal``), because it applies the very same
  floating-point operations in the same order: the NumPy ufuncs of the normalisations
  (multiply, ``arcsinh``, divide, clip / maximum),
  and ``torch.nn.functional.interpolate`` for the resize. What changes is how: the
  rows are cut into chunks that fit in the cores' caches and fused by a pool of
  threads (NumPy releases the interpreter lock inside ufuncs), the ufuncs write in
  place into the output array (no temporary arrays), a non-finite pixel is zeroed
  *after* its normalisation (every normalisation maps 0 to +0, so the result is the
  same), and the resize runs once per batch on torch's threads. The output can be
  written into a caller's buffer (e.g. pinned memory for a GPU transfer).
* `fuse_arrays_torch` — the same recipe as torch operations on any device (the
  inference device: a GPU), returning tensors there. It is **not** bit-identical to
  the NumPy path, and cannot be made so: NumPy computes ``arcsinh`` of float32 with
  its own vectorised routine (Intel SVML on AVX-512 machines, the C library's
  ``asinhf`` elsewhere), which is not correctly rounded and differs from every other
  implementation by one unit in the last place for a fraction of inputs (0.2 % of
  PS1-like values on an AVX-512 machine), and the GPU's resize kernel may sum its
  two terms in another order. Here ``arcsinh`` is computed in float64 and rounded to
  float32 (the correctly rounded value, the same on every device), so the two paths
  agree to one float32 unit in the last place of the normalised values (≤ 6e-8 for
  values ≤ 1) plus rounding in the resize; the tests bound the difference by 1e-6.
  `~astro_mantis.fusion.core` stays the reference.

* `fuse_arrays_fast` — for a network that runs in a reduced precision (bfloat16 on
  a CPU): the network's bfloat16, channels-last input written in one pass. By
  default through a small compiled C module built with the package
  (``astro_mantis/fusion/_native/kernel.c``; see `has_native_fusion`): each output row of
  the nine channels is assembled in the core's L1 cache and written once, on the
  fusion's threads. Where that module was not built (no C compiler at install
  time), the same recipe in torch, written so that `torch.compile` fuses it into a
  few vectorised loops. Both compute ``asinh`` as ``log(y + sqrt(y² + 1))``, which
  vectorises, and the resize with the explicit taps of torch's own antialiased
  kernel. Within 1e-6 of the reference before the rounding to bfloat16, which moves
  values by up to 2⁻⁹ relative anyway.

All return what `~astro_mantis.fusion.core.fuse_arrays` returns (a
`~astro_mantis.fusion.FusedInput`; `fuse_arrays_torch` with ``x`` and ``dust`` as
tensors on the device, `fuse_arrays_fast` with ``x`` as a tensor), so they are
drop-in replacements.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..flags import MantisFlag, survey_missing_flag
from .core import (CHANNELS, OUTPUT_SIZE, RECIPE, FusedInput, _rows_and_dust, center_crop,
                   check_nan_policy, crop_offsets, fill_nonfinite)

__all__ = ["fuse_arrays_batched", "fuse_survey_batched", "fuse_arrays_torch",
           "fuse_arrays_fast", "default_fusion_threads", "has_native_fusion"]

#: Rows fused by one task: 8 Pan-STARRS crops (5 × 120 × 120 float32) are 2.3 MB, the
#: size of a core's L2 cache and then some; smaller chunks cost more in task overhead.
CHUNK_ROWS = 8

#: One executor per thread count, never shut down: callers with different ``threads``
#: may be fusing at the same time (a pool shut down under one of them refused its tasks).
_POOLS = {}
_POOLS_LOCK = threading.Lock()


def default_fusion_threads():
    """Threads `fuse_arrays_batched` uses by default: torch's intra-op thread count.

    That is the number of cores torch would use for the network (see
    `torch.get_num_threads`; set it with ``torch.set_num_threads`` or the
    ``OMP_NUM_THREADS`` environment variable), capped at the machine's cores.

    Returns
    -------
    int
    """
    import torch

    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def _pool(threads):
    """The executor of ``threads`` workers, shared by every fusion that asks for that many.

    Executors are kept, one per size, and never shut down, so that fusions running at
    the same time with different ``threads`` do not pull a pool from under each other.
    Their idle threads cost nothing but a little memory; only a handful of sizes are
    ever used (the default and what callers pass).
    """
    pool = _POOLS.get(threads)
    if pool is None:
        with _POOLS_LOCK:
            pool = _POOLS.get(threads)
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=threads,
                                          thread_name_prefix="astro_mantis-fuse")
                _POOLS[threads] = pool
    return pool


def _run_chunks(task, n, threads):
    """``task(start)`` for every chunk of `CHUNK_ROWS` rows, on the fusion's threads."""
    starts = range(0, n, CHUNK_ROWS)
    threads = default_fusion_threads() if threads is None else int(threads)
    if threads > 1 and n > CHUNK_ROWS:
        list(_pool(threads).map(task, starts))
    else:
        for s in starts:
            task(s)


def _normalise_into(dst, src, survey):
    """The survey's normalisation of ``src`` written into ``dst`` (float32), in place.

    The same ufuncs, in the same order, as `astro_mantis.fusion.core.normalise`
    (which allocates a new array at each step), hence the same bits.
    """
    if survey == "galex":
        np.divide(src, np.float32(0.05), out=dst)
        np.clip(dst, 0, 1, out=dst)
        return
    scale, div = (np.float32(0.08), np.float32(8)) if survey == "panstarrs" else \
        (np.float32(0.6), np.float32(6))
    np.multiply(src, scale, out=dst)
    np.arcsinh(dst, out=dst)
    np.divide(dst, div, out=dst)
    np.maximum(dst, np.float32(0), out=dst)


def _check_survey_data(data, survey):
    recipe = RECIPE.get(survey)
    if recipe is None:
        raise ValueError(f"no recipe for survey {survey!r}; known: {', '.join(RECIPE)}")
    data = np.asarray(data)
    if data.ndim != 4 or data.shape[1] != len(recipe["bands"]):
        raise ValueError(f"{survey} data must have shape (N, {len(recipe['bands'])}, ny, nx); "
                         f"got {data.shape}")
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float32)
    crop_offsets(data.shape, recipe["crop"])  # raises for too small an image
    return data, recipe


def _survey_chunk(data, survey, recipe, rows, nan_policy, native_dst):
    """Normalise rows ``rows`` (a slice) of one survey; returns (valid, nan_rows, empty).

    ``data`` is indexed one row at a time: an (N, nbands, ny, nx) array, or a list of
    (nbands, ny, nx) arrays (their sizes may differ) in which None is a row without the
    survey (all zeros, not valid, "empty"). Rows are read in place: only their crop is
    touched, and nothing is stacked first.
    """
    crop = recipe["crop"]
    bad = np.empty(native_dst.shape, bool)
    with np.errstate(invalid="ignore"):
        for i in range(len(native_dst)):  # one row at a time: its passes stay in the cache
            planes = data[rows.start + i]
            if planes is None:
                bad[i] = True
                continue
            src = center_crop(planes, crop)
            if src.dtype != np.float32:
                src = src.astype(np.float32)
            np.isfinite(src, out=bad[i])
            np.logical_not(bad[i], out=bad[i])
            _normalise_into(native_dst[i], src, survey)
    bad_rows = bad.any(axis=(1, 2, 3))
    empty = bad.all(axis=(1, 2, 3))
    if bad_rows.any():
        np.copyto(native_dst, np.float32(0), where=bad)
        if nan_policy == "inpaint":
            for i in np.flatnonzero(bad_rows & ~empty):
                filled, zeroed = fill_nonfinite(data[rows.start + i], "inpaint")
                filled = center_crop(filled, crop)
                bad[i] = center_crop(zeroed, crop)
                with np.errstate(invalid="ignore"):
                    _normalise_into(native_dst[i], filled, survey)
    return ~bad.any(axis=(2, 3)), bad_rows & ~empty, empty


def _resize_into(dst, src, size):
    """``core.resize_bilinear(src, size)`` written into ``dst`` (one torch call)."""
    import torch
    import torch.nn.functional as F

    n, c = src.shape[:2]
    t = torch.from_numpy(src.reshape((n * c, 1) + src.shape[2:]))
    with torch.no_grad():
        out = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True,
                            align_corners=False)
    np.copyto(dst, out.numpy().reshape(n, c, size, size))


def fuse_survey_batched(data, survey, nan_policy="zero", size=OUTPUT_SIZE, threads=None,
                        out=None):
    """`~astro_mantis.fusion.core.fuse_survey`, threaded and in place (same bits).

    Parameters
    ----------
    data : array-like, shape (N, nbands, ny, nx)
        Native pixels of one survey (float32 or float16; other types are converted).
    survey : {"galex", "panstarrs", "unwise"}
    nan_policy : {"zero", "inpaint"}
    size : int
        Output side.
    threads : int, optional
        Worker threads; default `~astro_mantis.fusion.batched.default_fusion_threads`.
    out : `numpy.ndarray`, float32, shape (N, nbands, size, size), optional
        Where to write the images (any strides, e.g. a channel slice of a larger
        array); allocated when None.

    Returns
    -------
    x, valid, nan_rows, empty_rows
        As `~astro_mantis.fusion.core.fuse_survey`; ``x`` is ``out`` when given.
    """
    check_nan_policy(nan_policy)
    data, recipe = _check_survey_data(data, survey)
    n, nb = data.shape[:2]
    crop = recipe["crop"]
    if out is None:
        out = np.empty((n, nb, size, size), np.float32)
    elif out.shape != (n, nb, size, size) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {(n, nb, size, size)}; got "
                         f"{out.dtype} {out.shape}")
    valid = np.zeros((n, nb), bool)
    nan_rows = np.zeros(n, bool)
    empty = np.zeros(n, bool)
    resize = crop != size
    native = np.empty((n, nb, crop, crop), np.float32) if resize else out

    def task(start):
        rows = slice(start, min(start + CHUNK_ROWS, n))
        valid[rows], nan_rows[rows], empty[rows] = _survey_chunk(
            data, survey, recipe, rows, nan_policy, native[rows])

    _run_chunks(task, n, threads)
    if resize and n:
        _resize_into(out, native, size)
    return out, valid, nan_rows, empty


def fuse_arrays_batched(galex=None, panstarrs=None, unwise=None, ebv=None, nan_policy="zero",
                        size=OUTPUT_SIZE, threads=None, out=None, copy_to=None):
    """`~astro_mantis.fusion.core.fuse_arrays`, threaded and in place: the same bits, faster.

    The rows are fused in chunks of a few galaxies, each chunk by one thread from
    crop to resized image (and into ``copy_to``), so that its pixels stay in the
    core's cache between the steps.

    Parameters
    ----------
    galex, panstarrs, unwise : array-like, shape (N, nbands, ny, nx), optional
        Native pixels of each survey, bands in channel order (None: missing).
    ebv : array-like, shape (N, 2), optional
        E(B−V) (CSFD, Planck); None gives zeros and ``DUST_UNKNOWN``.
    nan_policy : {"zero", "inpaint"}
    size : int
        Output side (120 for the published recipe).
    threads : int, optional
        Worker threads; default `~astro_mantis.fusion.batched.default_fusion_threads`.
    out : `numpy.ndarray`, float32, shape (N, 9, size, size), optional
        Buffer to write the images into (for instance the numpy view of a pinned
        torch tensor); allocated when None.
    copy_to : `torch.Tensor`, shape (N, 9, size, size), optional
        A tensor of any floating type and memory format (for instance the bfloat16,
        channels-last input of `~astro_mantis.models.precision.inference_network`)
        that each chunk is also copied into, converted, while it is in the cache: one
        pass over memory fewer than converting the whole batch afterwards.

    Returns
    -------
    `~astro_mantis.fusion.FusedInput`
        Equal, bit for bit, to what `~astro_mantis.fusion.core.fuse_arrays` returns.
    """
    check_nan_policy(nan_policy)
    arrays = {"galex": galex, "panstarrs": panstarrs, "unwise": unwise}
    n, dust, flags = _rows_and_dust(arrays, ebv)
    shape = (n, len(CHANNELS), size, size)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {shape}; got {out.dtype} {out.shape}")
    if copy_to is not None and tuple(copy_to.shape) != shape:
        raise ValueError(f"copy_to must have shape {shape}; got {tuple(copy_to.shape)}")
    sources = {}
    for survey, data in arrays.items():
        if data is not None:
            sources[survey], _ = _check_survey_data(data, survey)
    valid = _fuse_into(sources, n, nan_policy, size, out, flags, threads, copy_to)
    return FusedInput(out, dust, valid, flags)


def _fuse_into(sources, n, nan_policy, size, out, flags, threads=None, copy_to=None):
    """The recipe for ``n`` rows written into ``out``; ORs the rows' flags into ``flags``.

    ``sources`` maps a survey to its rows, indexed one at a time (see `_survey_chunk`:
    an array, or a list with None for rows without the survey); an absent survey gives
    zeros and its missing flag on every row. Each chunk of rows is fused by one thread
    from crop to resized image (and into ``copy_to``), so its pixels stay in the core's
    cache between the steps; every pixel of ``out`` is written. Returns ``valid``.
    """
    valid = np.zeros((n, len(CHANNELS)), bool)
    nan_rows = np.zeros(n, bool)
    surveys, first = [], 0
    for survey, recipe in RECIPE.items():
        chans = slice(first, first + len(recipe["bands"]))
        first += len(recipe["bands"])
        if sources.get(survey) is None:
            out[:, chans] = 0.0
            flags |= int(survey_missing_flag(survey))
            continue
        surveys.append((survey, recipe, sources[survey], chans, np.zeros(n, bool)))

    def task(start):
        rows = slice(start, min(start + CHUNK_ROWS, n))
        for survey, recipe, data, chans, empty in surveys:
            crop = recipe["crop"]
            dst = out[rows, chans]
            native = dst if crop == size else np.empty(
                (len(range(n)[rows]), len(recipe["bands"]), crop, crop), np.float32)
            valid[rows, chans], bad, empty[rows] = _survey_chunk(
                data, survey, recipe, rows, nan_policy, native)
            nan_rows[rows] |= bad
            if crop != size:
                _resize_into(dst, native, size)
        if copy_to is not None:
            import torch

            copy_to[rows].copy_(torch.from_numpy(out[rows]))

    _run_chunks(task, n, threads)
    flags[nan_rows] |= int(MantisFlag.NAN_PIXELS)
    for survey, _, _, _, empty in surveys:
        flags[empty] |= int(survey_missing_flag(survey))
    return valid


# ---------------------------------------------------------------------- torch on a device
def _normalise_torch(x, survey):
    import torch

    if survey == "galex":
        return torch.clamp(x / 0.05, 0, 1)
    scale, div = (0.08, 8.0) if survey == "panstarrs" else (0.6, 6.0)
    y = torch.asinh((x * scale).double()).float()  # correctly rounded float32 asinh
    return torch.clamp_min(y / div, 0)


def fuse_arrays_torch(galex=None, panstarrs=None, unwise=None, ebv=None, nan_policy="zero",
                      size=OUTPUT_SIZE, device=None, non_blocking=False):
    """The early-fusion recipe in torch, on ``device``: tensors in, tensors out.

    For fusing on the inference device (a GPU), next to the network. Agrees with
    `~astro_mantis.fusion.core.fuse_arrays` to 1e-6 (not bit for bit: see the module
    docstring). ``nan_policy="inpaint"`` fills the affected rows on the CPU with
    `~astro_mantis.fusion.core.inpaint_nans` first (slow, as there).

    Parameters
    ----------
    galex, panstarrs, unwise : array-like or `torch.Tensor`, shape (N, nbands, ny, nx), optional
        Native pixels (None: missing). Arrays are cropped on the host first, so only
        the pixels the recipe uses travel to the device.
    ebv : array-like, shape (N, 2), optional
    nan_policy : {"zero", "inpaint"}
    size : int
    device : str or `torch.device`, optional
        Default: the CPU.
    non_blocking : bool
        Copy host arrays to the device asynchronously (from pinned memory).

    Returns
    -------
    `~astro_mantis.fusion.FusedInput`
        ``x`` (N, 9, size, size) and ``dust`` (N, 2) are float32 tensors on
        ``device``; ``valid`` and ``flags`` are numpy arrays.
    """
    import torch
    import torch.nn.functional as F

    check_nan_policy(nan_policy)
    device = torch.device("cpu" if device is None else device)
    arrays = {"galex": galex, "panstarrs": panstarrs, "unwise": unwise}
    n, dust, flags = _rows_and_dust(arrays, ebv)
    x = torch.zeros((n, len(CHANNELS), size, size), dtype=torch.float32, device=device)
    valid = torch.zeros((n, len(CHANNELS)), dtype=torch.bool, device=device)
    nan_all = torch.zeros(n, dtype=torch.bool, device=device)
    empties = {}
    first = 0
    for survey, recipe in RECIPE.items():
        nb, crop = len(recipe["bands"]), recipe["crop"]
        chans = slice(first, first + nb)
        first += nb
        data = arrays[survey]
        if data is None:
            flags |= int(survey_missing_flag(survey))
            continue
        if isinstance(data, torch.Tensor) and nan_policy == "zero":
            if data.ndim != 4 or data.shape[1] != nb:
                raise ValueError(f"{survey} data must have shape (N, {nb}, ny, nx); got "
                                 f"{tuple(data.shape)}")
            top, left = crop_offsets(tuple(data.shape), crop)
            t = data[..., top:top + crop, left:left + crop].to(device, torch.float32)
        else:
            if isinstance(data, torch.Tensor):
                data = data.detach().cpu().numpy()
            data, _ = _check_survey_data(data, survey)
            host = np.ascontiguousarray(center_crop(data, crop), dtype=np.float32)
            if nan_policy == "inpaint":
                finite = np.isfinite(host)
                some = ~finite.all(axis=(1, 2, 3)) & finite.any(axis=(1, 2, 3))
                flags[some] |= int(MantisFlag.NAN_PIXELS)
                for i in np.flatnonzero(some):  # left NaN: only what inpainting could not reach
                    f, z = fill_nonfinite(data[i], "inpaint")
                    host[i] = np.where(center_crop(z, crop), np.nan,
                                       center_crop(f, crop))
            t = torch.from_numpy(host)
            if non_blocking and device.type == "cuda":
                t = t.pin_memory()
            t = t.to(device, non_blocking=non_blocking)
        bad = ~torch.isfinite(t)
        bad_rows = bad.flatten(1).any(dim=1)
        empty = bad.flatten(1).all(dim=1)
        normed = _normalise_torch(torch.where(bad, 0.0, t), survey)
        if crop != size:
            normed = F.interpolate(normed.reshape(n * nb, 1, crop, crop), size=(size, size),
                                   mode="bilinear", antialias=True, align_corners=False
                                   ).reshape(n, nb, size, size)
        x[:, chans] = normed
        valid[:, chans] = ~bad.flatten(2).any(dim=2)
        nan_all |= bad_rows & ~empty
        empties[survey] = empty
    nan_np = nan_all.cpu().numpy()
    flags[nan_np] |= int(MantisFlag.NAN_PIXELS)
    for survey, empty in empties.items():
        flags[empty.cpu().numpy()] |= int(survey_missing_flag(survey))
    dust_t = torch.from_numpy(dust).to(device)
    return FusedInput(x, dust_t, valid.cpu().numpy(), flags)


# ------------------------------------------------- reduced precision: one compiled pass
#: Per survey, (scale a, divisor b, clip at 1) of the published stretch
#: ``max(asinh(a x) / b, 0)`` (``clip(x / 0.05, 0, 1)`` for GALEX is a = 20, no asinh).
_STRETCH = {"galex": (20.0, None, True), "panstarrs": (0.08, 8.0, False),
            "unwise": (0.6, 6.0, False)}
_TAPS = {}
_FAST = {}
_NATIVE = {}
#: Rows per call of the compiled recipe: its intermediates (about 0.3 MB a row) stay in
#: the caches and are reused from call to call; one call for a whole batch allocated them
#: afresh, and paid their page faults, every time (2.5x slower at 256 rows).
FAST_CHUNK_ROWS = 32


def _resize_taps(n_in, n_out):
    """Indices and weights (n_out, K) of torch's antialiased bilinear resize, per axis.

    Read off ``torch.nn.functional.interpolate`` itself (one-hot inputs), so the
    weights are exactly those of the reference resize.
    """
    key = (n_in, n_out)
    if key not in _TAPS:
        import torch
        import torch.nn.functional as F

        eye = torch.eye(n_in).reshape(n_in, 1, 1, n_in)
        w = F.interpolate(eye, size=(1, n_out), mode="bilinear", antialias=True,
                          align_corners=False).reshape(n_in, n_out).T  # (n_out, n_in)
        k = int((w != 0).sum(1).max())
        idx = torch.zeros((n_out, k), dtype=torch.long)
        wts = torch.zeros((n_out, k))
        for o in range(n_out):
            nz = torch.nonzero(w[o]).flatten()
            idx[o, :len(nz)], wts[o, :len(nz)] = nz, w[o, nz]
        _TAPS[key] = (idx, wts)
    return _TAPS[key]


def has_native_fusion():
    """Whether the compiled fusion module (``astro_mantis.fusion._native``) was built.

    It is built from C at install time where a C compiler is at hand (``pip install``
    needs nothing else); `fuse_arrays_fast` uses it by default and falls back to
    its torch recipe where it is absent.

    Returns
    -------
    bool

    Examples
    --------
    >>> from astro_mantis.fusion import has_native_fusion
    >>> isinstance(has_native_fusion(), bool)
    True
    """
    return _native_fuse_rows() is not None


def _native_fuse_rows():
    """``fuse_rows`` of the compiled module, or None where it was not built."""
    if "fuse_rows" not in _NATIVE:
        try:
            from ._native import fuse_rows
        except ImportError:
            fuse_rows = None
        _NATIVE["fuse_rows"] = fuse_rows
    return _NATIVE["fuse_rows"]


def fuse_arrays_fast(galex=None, panstarrs=None, unwise=None, ebv=None, size=OUTPUT_SIZE,
                     dtype="bfloat16", compile=True, out=None, native=None, threads=None):
    """The recipe for a network that runs in a reduced precision: one fused pass.

    For `~astro_mantis.models.predict` in ``precision="bfloat16"`` on a CPU: the
    fused images come out already in the network's type and channels-last layout.
    The same recipe as `~astro_mantis.fusion.core.fuse_arrays` (crops, NaN → 0 with
    the same flags, stretches, antialiased bilinear resize with torch's own weights),
    computed in float32 in an order that vectorises, then rounded to ``dtype``
    (round to nearest, ties to even, as torch rounds). Before that rounding it agrees
    with the reference to about 1e-6 (the stretch is evaluated as
    ``log(y + sqrt(y² + 1))`` and the resize's two terms are summed in another order);
    after it, to the rounding of ``dtype`` (bfloat16: 2⁻⁹ relative). Only
    ``nan_policy="zero"``.

    Two implementations compute it: the compiled C module built with the package
    (`has_native_fusion`; bfloat16 and float32 out, on the fusion's threads), used by
    default, and the recipe in torch (through `torch.compile` when ``compile``).

    Parameters
    ----------
    galex, panstarrs, unwise : array-like or `torch.Tensor`, shape (N, nbands, ny, nx), optional
        Native pixels (None: missing).
    ebv : array-like, shape (N, 2), optional
    size : int
    dtype : {"bfloat16", "float16", "float32"}
        Type of the returned images.
    compile : bool
        Run the torch recipe (where the compiled C module is not used) through
        `torch.compile` (cached per set of shapes: the first call of a
        shape compiles for a few seconds; falls back to eager torch, which is slower
        than `fuse_arrays_batched`, with a warning where compiling fails:
        `~astro_mantis.compiling.CompiledOrEager`). The rows go through it
        ``FAST_CHUNK_ROWS`` (32) at a time (the last chunk
        padded), so one graph serves every batch size.
    out : `torch.Tensor`, optional
        A CPU tensor of ``dtype`` and shape (N, 9, size, size) to write the images into
        (any memory format; channels-last is what the network wants), for instance one
        reused from batch to batch. Allocated (channels-last) when None.
    native : bool, optional
        Use the compiled C module: None (default) where it was built and ``dtype`` is
        bfloat16 or float32; True requires it (`RuntimeError` where it is absent);
        False runs the torch recipe.
    threads : int, optional
        Threads of the C module; default
        `~astro_mantis.fusion.batched.default_fusion_threads`.

    Returns
    -------
    `~astro_mantis.fusion.FusedInput`
        ``x`` (``out`` when given) is a CPU `torch.Tensor` (N, 9, size, size) of
        ``dtype`` in channels-last memory format; ``dust``, ``valid`` and ``flags`` as in
        `~astro_mantis.fusion.core.fuse_arrays`.
    """
    import torch

    types = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if dtype not in types:
        raise ValueError(f"dtype must be one of {sorted(types)}; got {dtype!r}")
    arrays = {"galex": galex, "panstarrs": panstarrs, "unwise": unwise}
    n, dust, flags = _rows_and_dust(arrays, ebv)
    sources = []
    for survey in RECIPE:
        data = arrays[survey]
        if data is None:
            sources.append(None)
            flags |= int(survey_missing_flag(survey))
            continue
        if isinstance(data, torch.Tensor):
            data = data.detach().cpu().numpy()
        sources.append(_check_survey_data(data, survey)[0])
    if all(d is None for d in sources):  # dust only: nothing to compute
        x = torch.zeros((n, len(CHANNELS), size, size), dtype=types[dtype]).contiguous(
            memory_format=torch.channels_last)
        if out is not None:
            _check_fast_out(out, x.shape, types[dtype])
            out.zero_()
            x = out
        return FusedInput(x, dust, np.zeros((n, len(CHANNELS)), bool), flags)
    shape = (n, len(CHANNELS), size, size)
    if out is None:
        x = torch.empty(shape, dtype=types[dtype], memory_format=torch.channels_last)
    else:
        _check_fast_out(out, shape, types[dtype])
        x = out
    counts = np.empty((n, len(CHANNELS)), np.int64)
    fuse_rows = None if native is False else _native_fuse_rows()
    if native and fuse_rows is None:
        raise RuntimeError("the compiled fusion module astro_mantis.fusion._native was not "
                           "built (no C compiler at install time?); use native=None or False")
    if native and dtype == "float16":
        raise ValueError("the compiled fusion module writes bfloat16 or float32, not float16")
    if fuse_rows is not None and dtype != "float16":
        _fuse_native(fuse_rows, sources, x, counts, size, threads)
        return _counted(counts, arrays, dust, flags, x)
    crops = [None if d is None else _crop_tensor(d, recipe["crop"])
             for d, recipe in zip(sources, RECIPE.values())]
    taps = tuple(None if c is None or c.shape[-1] == size else _resize_taps(c.shape[-1], size)
                 for c in crops)
    fn = _fast_function(compile)
    for start in range(0, n, FAST_CHUNK_ROWS):
        rows = len(range(n)[start:start + FAST_CHUNK_ROWS])
        part = [None if c is None else c[start:start + rows] for c in crops]
        dst = x[start:start + rows]
        if compile and rows < FAST_CHUNK_ROWS:  # padded: one compiled graph for every chunk
            part = [None if c is None else torch.cat(
                [c, c.new_zeros((FAST_CHUNK_ROWS - rows,) + tuple(c.shape[1:]))]) for c in part]
            dst = torch.empty((FAST_CHUNK_ROWS,) + shape[1:], dtype=x.dtype,
                              memory_format=torch.channels_last)
        c = fn(dst, size, taps, *part)
        if dst.shape[0] != rows:
            x[start:start + rows] = dst[:rows]
        counts[start:start + rows] = c[:rows].numpy()
    return _counted(counts, arrays, dust, flags, x)


def _check_fast_out(out, shape, dtype):
    """Raise ValueError unless ``out`` is a CPU tensor of ``dtype`` and ``shape``."""
    import torch

    shape = tuple(shape)
    if (not isinstance(out, torch.Tensor) or tuple(out.shape) != shape
            or out.dtype != dtype or out.device.type != "cpu"):
        raise ValueError(f"out must be a CPU torch.Tensor of {dtype} and shape {shape}; "
                         f"got {getattr(out, 'dtype', type(out).__name__)} "
                         f"{tuple(getattr(out, 'shape', ()))}")


def _crop_tensor(data, crop):
    """The centre crop of ``data`` as a tensor (a view; a copy where strides are negative,
    which torch does not take)."""
    import torch

    c = center_crop(data, crop)
    return torch.from_numpy(np.ascontiguousarray(c) if min(c.strides) < 0 else c)


def _counted(counts, arrays, dust, flags, x):
    """The `FusedInput` of fused images ``x`` from their bad-pixel counts per channel.

    A channel is valid where none of its pixels was bad and its survey was given at
    all: a survey passed as None has zero bad pixels counted, but its channels are
    zeros standing in for nothing, not valid (as in `~astro_mantis.fusion.core.fuse_arrays`).
    """
    valid = counts == 0
    first = 0
    for survey, recipe in RECIPE.items():
        nb = len(recipe["bands"])
        if arrays[survey] is None:
            valid[:, first:first + nb] = False
        else:
            c = counts[:, first:first + nb].sum(1)
            total = nb * recipe["crop"] ** 2
            flags[(c > 0) & (c < total)] |= int(MantisFlag.NAN_PIXELS)
            flags[c == total] |= int(survey_missing_flag(survey))
        first += nb
    return FusedInput(x, dust, valid, flags)


def _native_specs(sources, size):
    """The per-survey arguments of ``_native.fuse_rows`` (see ``_native/kernel.c``)."""
    specs, first = [], 0
    for (survey, recipe), data in zip(RECIPE.items(), sources):
        nb, crop = len(recipe["bands"]), recipe["crop"]
        a, b, clip = _STRETCH[survey]
        a, b = (1.0 / a, 0.0) if clip else (a, b)  # GALEX: x / 0.05, clipped
        if data is None:
            specs.append((None, nb, crop, crop, 0, 0, crop, a, b, first, None, None, 0))
        else:
            top, left = crop_offsets(data.shape, crop)
            idx = w = None
            if crop != size:
                key = ("native", crop, size)
                if key not in _TAPS:
                    i, wt = _resize_taps(crop, size)
                    _TAPS[key] = (np.ascontiguousarray(i.numpy(), np.int32),
                                  np.ascontiguousarray(wt.numpy(), np.float32))
                idx, w = _TAPS[key]
            specs.append((data, nb) + data.shape[2:] + (top, left, crop, a, b, first, idx, w,
                                                        0 if idx is None else idx.shape[1]))
        first += nb
    return specs


def _fuse_native(fuse_rows, sources, x, counts, size, threads):
    """The recipe through the compiled module into ``x``, on the fusion's threads."""
    import torch

    n = len(x)
    sources = [None if d is None else np.ascontiguousarray(d, dtype=np.float32)
               for d in sources]
    specs = _native_specs(sources, size)
    rows_last = x.permute(0, 2, 3, 1)  # (N, size, size, 9): contiguous when channels-last
    target = rows_last if rows_last.is_contiguous() else torch.empty(
        rows_last.shape, dtype=x.dtype)
    buf = (target.view(torch.int16) if x.dtype == torch.bfloat16 else target).numpy()
    bf16 = x.dtype == torch.bfloat16
    threads = default_fusion_threads() if threads is None else max(1, int(threads))
    step = max(1, -(-n // threads))  # one range of rows per thread

    def task(start):
        fuse_rows(buf, counts, n, start, min(start + step, n), size, bf16, *specs)

    if threads > 1 and n > step:
        list(_pool(threads).map(task, range(0, n, step)))
    elif n:
        task(0)
    if target is not rows_last:
        rows_last.copy_(target)


def _fast_function(compile):
    if not compile:
        return _fast_recipe
    if True not in _FAST:
        from ..compiling import CompiledOrEager

        _FAST[True] = CompiledOrEager(_fast_recipe, what="the fusion")
    return _FAST[True]


def _fast_recipe(dst, size, taps, *crops):
    """The recipe on crops (None for a missing survey), written into ``dst``; returns the
    bad-pixel counts per channel.

    ``dst`` is the output (rows, 9, size, size) in the network's type and layout;
    ``taps`` holds `_resize_taps` per survey (None where no resize is needed).

    Written so that `torch.compile` turns it into a few fused loops: the stretch as
    ``log(y + sqrt(y² + 1))`` of ``y = max(a x, 0)`` (asinh is monotonic and
    asinh(0) = 0, so clipping first changes nothing; log and sqrt vectorise, asinh
    does not), the resize as the explicit taps of `_resize_taps`.
    """
    import torch

    chans, counts = [], []
    for (survey, recipe), t, tap in zip(RECIPE.items(), crops, taps):
        nb = len(recipe["bands"])
        if t is None:
            chans.append(torch.zeros((len(dst), nb, size, size), dtype=torch.float32))
            counts.append(torch.zeros((len(dst), nb), dtype=torch.long))
            continue
        t = t.float()
        bad = ~torch.isfinite(t)
        counts.append(bad.sum((2, 3)))
        t = torch.where(bad, 0.0, t)
        a, b, clip = _STRETCH[survey]
        y = torch.clamp_min(t * a, 0)
        y = torch.clamp_max(y, 1) if clip else torch.log(y + torch.sqrt(y * y + 1)) / b
        if tap is not None:
            idx, w = tap
            h = sum(y[..., idx[:, k]] * w[:, k] for k in range(idx.shape[1]))
            y = sum(h[..., idx[:, k], :] * w[:, k, None] for k in range(idx.shape[1]))
        chans.append(y)
    dst.copy_(torch.cat(chans, 1))
    return torch.cat(counts, 1)
