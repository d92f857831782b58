"""Inference: cutouts (or fused arrays) in, `~astro_mantis.pdf.RedshiftPDF` out."""
import queue
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from astropy import units as u

from ..compiling import CompiledOrEager
from ..flags import MantisFlag
from .precision import (TV_TOLERANCE, _check_once, autocast, default_batch_size,
                        inference_network, is_quantized, param_dtype,
                        recorded_cpu_bfloat16_tv, resolve_precision)
from .registry import Z_MAX, Z_MIN, load_model, select_device
from ..pdf import NBINS

__all__ = ["predict", "predict_logits", "dihedral_transforms", "clear_model_cache",
           "get_model", "pit_map_for", "tta_probabilities"]

#: Galaxies of the first batch run in float32 too by ``precision="auto"`` (the check),
#: unless a CPU follows the check the model's card records. The check decides only on
#: this many: a call whose first batch holds fewer (a call of fewer galaxies, or
#: ``batch_size`` below it) runs in float32 without deciding anything, until a call
#: with enough galaxies has decided for the model.
CHECK_ROWS = 16

_CACHE = OrderedDict()
_CACHE_SIZE = 2
#: Guards `_CACHE` (the web service and the Dask workers call `get_model` from several
#: threads). It is held while a model loads, so threads asking for one model at once
#: load it once; a thread asking for another waits for that load.
_CACHE_LOCK = threading.RLock()


def clear_model_cache():
    """Forget the models `predict` loaded by name (they are kept for the next call)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _COMPILED.clear()


_COMPILED = {}


def _compiled(net, device, freeze=False):
    """``torch.compile(net)`` (cached, with an eager fallback), or ``net`` itself.

    ``freeze`` (for the inference copies of `inference_network`, whose weights never
    change) lets inductor treat the weights as constants and pre-pack them for oneDNN
    on a CPU.
    """
    key = (id(net), str(device), freeze)
    hit = _COMPILED.get(key)
    if hit is not None and hit[0]() is net:
        return hit[1]
    import weakref

    try:
        fn = CompiledOrEager(net, {"freezing": True} if freeze else None)
    except Exception as exc:  # noqa: BLE001 - any failure means: run eagerly
        warnings.warn(f"torch.compile is not available here ({exc}); running eagerly",
                      RuntimeWarning, stacklevel=3)
        fn = net
    _COMPILED[key] = (weakref.ref(net), fn)
    return fn


#: ``compile="auto"`` compiles when a call has at least this many galaxies: on two
#: AMX cores compiling ``mantis-mini`` and the fast fusion took about 25 s with an
#: empty inductor cache, and then saved 0.35 ms per galaxy of native arrays (2,205
#: against 1,254 galaxies/s, ``benchmarks/bench_inference.py``): paid back after
#: about 70,000 galaxies.
COMPILE_MIN_GALAXIES = 100_000


def _cached_model(name, weights, device):
    stamp = None
    if weights is not None and Path(str(weights)).is_file():
        stamp = Path(weights).stat().st_mtime_ns
    key = (name, None if weights is None else str(weights), str(device), stamp)
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = load_model(name, weights=weights, device=device)
            if device.type in ("cpu", "cuda"):
                model = model.to(memory_format=torch.channels_last)
            _CACHE[key] = model
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        else:
            _CACHE.move_to_end(key)
        return model


def get_model(model, weights=None, device=None):
    """A network ready to run: a registry name loaded once and remembered, or a module.

    What `predict` does with its ``model`` argument, for callers that run a model
    several times (the table job, the Dask workers): a name is loaded with
    `~astro_mantis.models.load_model` on the first call and kept (the two latest
    models, channels-last on CPUs and CUDA GPUs; `clear_model_cache` forgets them);
    a `torch.nn.Module` is returned as it is. Safe to call from several threads: the
    cache is locked while a model is looked up or loaded, so a model asked for by
    several threads at once is loaded once (and the others wait for it).

    Parameters
    ----------
    model : str or `torch.nn.Module`
    weights : str or path-like, optional
        Weights path or URL for a model given by name.
    device : str or `torch.device`, optional
        For a model given by name; None: the best available
        (`~astro_mantis.models.select_device`).

    Returns
    -------
    `torch.nn.Module`

    Raises
    ------
    TypeError
        If ``model`` is neither a name nor a module.
    """
    if isinstance(model, torch.nn.Module):
        return model
    if not isinstance(model, str):
        raise TypeError(f"model must be a registry name or a torch.nn.Module; got "
                        f"{type(model).__name__}")
    return _cached_model(model, weights, select_device(device))


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


def pit_map_for(meta, tta=False):
    """The PIT recalibration map a model's card gives for single passes or for TTA.

    A card's ``calibration["pit_map"]`` was fitted to single-pass PDFs. The
    8-transform average of `predict` (``tta=True``) is broader, so a card may also
    hold ``calibration_tta["pit_map"]``, fitted to that average on the same
    validation set (`~astro_mantis.training.calibrate_tta`); with ``tta`` it is the
    one used.

    Parameters
    ----------
    meta : dict
        The model's ``meta`` (its card).
    tta : bool
        Whether the PDFs are test-time-augmentation averages.

    Returns
    -------
    map : dict or None
        ``{"knots": ..., "values": ...}`` (for
        `~astro_mantis.pdf.RedshiftPDF.remap_cdf`), or None if the card has none.
    source : str or None
        ``"calibration"``, ``"calibration_tta"`` or None: which entry it came from.
        With ``tta`` and a card that has only the single-pass map, or whose
        ``calibration_tta`` was fitted at another temperature than the card's (a
        stale entry), the single-pass map is returned, with a warning saying why.
    """
    meta = meta or {}
    why = "its card has no calibration_tta"
    if tta:
        entry = meta.get("calibration_tta") or {}
        fitted_at = entry.get("temperature")
        temperature = float(meta.get("temperature") or 1.0)
        if entry.get("pit_map") and fitted_at is not None and not np.isclose(
                float(fitted_at), temperature, rtol=1e-9, atol=0):
            why = (f"its calibration_tta was fitted at temperature {float(fitted_at):.6g}, "
                   f"not the card's {temperature:.6g}, and is ignored")
        elif entry.get("pit_map"):
            return entry["pit_map"], "calibration_tta"
    pit_map = (meta.get("calibration") or {}).get("pit_map")
    if not pit_map:
        return None, None
    if tta:
        warnings.warn(f"model {meta.get('name', '')!r}: {why}, so the PIT map fitted to "
                      "single-pass PDFs is applied to the TTA average, which is broader; its "
                      "coverage may be off (fit one with astro_mantis.training.calibrate_tta)",
                      UserWarning, stacklevel=3)
    return pit_map, "calibration"


def _is_cutouts(data):
    from ..multicutout import MultiSurveyCutout

    return isinstance(data, MultiSurveyCutout) or (
        isinstance(data, (list, tuple))
        and all(c is None or isinstance(c, MultiSurveyCutout) for c in data))


def _expected_input(meta):
    """The (channels, height, width) a network takes: its card's ``input["x"]`` where
    recorded (models loaded by name), else 9 channels of any size."""
    recorded = meta.get("input")
    shape = recorded.get("x") if isinstance(recorded, dict) else None
    if shape is not None and len(shape) == 3:
        return tuple(int(v) for v in shape)
    from ..fusion import CHANNELS

    return (len(CHANNELS), None, None)


def _array_inputs(data, dust, expected=(9, None, None)):
    """(x, dust, flags) as checked numpy arrays from a fused array.

    ``expected``: (channels, height, width) the network takes (None: any size).
    Non-finite dust rows become 0 and are flagged ``DUST_UNKNOWN``.
    """
    if isinstance(data, torch.Tensor):  # .float(): numpy has no bfloat16
        data = data.detach().cpu().float().numpy()
    x = np.asarray(data, dtype=np.float32)
    if x.ndim == 3:
        x = x[np.newaxis]
    from ..fusion import OUTPUT_SIZE

    c, h, w = expected
    if x.ndim != 4:
        raise ValueError("expected MultiSurveyCutout(s) or a fused array of shape "
                         f"(N, {c}, {h or OUTPUT_SIZE}, {w or OUTPUT_SIZE}); got an array "
                         f"of shape {x.shape}")
    want = f"(N, {c}, {h or 'H'}, {w or 'W'})"
    if x.shape[1] != c or any(e is not None and e != v
                              for e, v in zip((h, w), x.shape[2:])):
        raise ValueError(f"the network takes fused images of shape {want}; got an array of "
                         f"shape {x.shape} (fuse cutouts with "
                         "astro_mantis.fusion.early_fusion, or fuse_arrays for native arrays)")
    n = x.shape[0]
    flags = np.zeros(n, np.int64)
    if dust is None:
        d = np.zeros((n, 2), np.float32)
        flags |= int(MantisFlag.DUST_UNKNOWN)
    else:
        if isinstance(dust, torch.Tensor):
            dust = dust.detach().cpu().float().numpy()
        d = np.array(dust, dtype=np.float32)
        if d.shape == (2,) and n == 1:
            d = d[np.newaxis]
        if d.shape != (n, 2):
            raise ValueError(f"dust must have shape ({n}, 2); got {np.shape(dust)}")
        unknown = ~np.isfinite(d).all(axis=1)  # as the fusion does for cutouts
        d[unknown] = 0.0
        flags[unknown] |= int(MantisFlag.DUST_UNKNOWN)
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise ValueError(f"the input holds {bad} non-finite values; the network never sees NaN "
                         "or inf: fuse cutouts with astro_mantis.fusion.early_fusion (which "
                         "zeroes or inpaints them) or clean the array first")
    return x, d, flags


def _run_batch(model, xb, db, precision, device, tta, transforms, temperature, amp=True):
    """Logits (or TTA probabilities) of one batch on the device, as float32 there.

    Under `~astro_mantis.models.precision.autocast` unless ``amp`` is False (the
    inference copies of `~astro_mantis.models.precision.inference_network` carry their
    own types).
    """
    with autocast(precision if amp else "float32", device):
        if not tta:
            return model(xb, db).float()
        return tta_probabilities(model, xb, db, temperature, transforms)


def tta_probabilities(model, x, dust, temperature=1.0, transforms=None):
    """The test-time-augmentation average of one batch: what ``predict(tta=True)`` runs.

    Parameters
    ----------
    model : `torch.nn.Module`
        ``model(x, dust)`` → logits (N, n_bins).
    x : `torch.Tensor`, shape (N, C, H, W)
    dust : `torch.Tensor`, shape (N, 2)
    temperature : float
        Each pass's logits are divided by it before the softmax.
    transforms : list of callable, optional
        Default: the 8 `dihedral_transforms`.

    Returns
    -------
    `torch.Tensor`, float32, shape (N, n_bins)
        The mean over the transforms of ``softmax(model(t(x), dust) / temperature)``;
        rows sum to 1.
    """
    transforms = dihedral_transforms() if transforms is None else transforms
    probs = 0
    for t in transforms:
        probs = probs + torch.softmax(model(t(x), dust).float() / float(temperature), dim=1)
    return probs / len(transforms)


def _to_device(a, device, dtype, channels_last=False):
    """A host batch (numpy or tensor) on ``device``; pinned and asynchronous for CUDA."""
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
    if device.type == "cuda" and t.device.type == "cpu":
        if not t.is_pinned():
            t = t.pin_memory()
        t = t.to(device, non_blocking=True)
    if channels_last and t.ndim == 4:  # one pass: device, type and layout at once
        return t.to(device, dtype, memory_format=torch.channels_last)
    return t.to(device, dtype)


class _Runner:
    """Runs batches through a network in one precision; checks ``"auto"`` once."""

    def __init__(self, model, device, precision, tta, temperature, compile=False,
                 features=False):
        if device is None:
            device = next(model.parameters()).device
        self.device = torch.device(device)
        self.quantized = is_quantized(model)
        if self.quantized:
            if precision not in ("auto", "int8"):
                raise ValueError(f"this model is int8-quantised (quantize_int8): precision "
                                 f"must be 'auto' or 'int8', got {precision!r}")
            if self.device.type != "cpu":
                raise ValueError("an int8-quantised model runs on the CPU only")
            self.precision, self.asked = "int8", precision
        else:
            if precision == "int8":
                raise ValueError("precision 'int8' needs a quantised model: "
                                 "astro_mantis.models.quantize_int8(model, calibration_images)")
            self.precision, self.asked = resolve_precision(precision, self.device), precision
        self.model = model
        self.compile = compile
        self.rows = None
        self._use(self.precision)
        self.tta = tta
        self.transforms = dihedral_transforms() if tta else None
        self.temperature = temperature
        self.channels_last = self.device.type in ("cpu", "cuda")
        self.tv = None
        if self.asked == "auto" and self.precision == "bfloat16" and self.device.type == "cpu":
            recorded = recorded_cpu_bfloat16_tv(model)
            if recorded is not None:
                # the card measured it on the model's validation set: follow it, whatever
                # its size and without a check of its own, so that the choice never hangs
                # on which galaxies happen to come first
                self.tv = recorded
                if not recorded <= TV_TOLERANCE:  # (a NaN recorded: float32 too)
                    self._use("float32")
        #: With ``features``: the penultimate features of each batch, as run (device).
        self.features = [] if features else None

    def _use(self, precision):
        """Run in ``precision`` from now on: the network and input type for it."""
        self.precision = precision
        net, self.dtype = inference_network(self.model, precision, self.device)
        self.dust_dtype = param_dtype(self.model)
        self.net = net
        self.fn = _compiled(net, self.device, freeze=net is not self.model) if self.compile \
            else net

    def input_dtype(self):
        """The type the next batch's images should come in (float32 while checking)."""
        if self.asked == "auto" and self.tv is None and self.precision not in ("float32",
                                                                                "int8"):
            return torch.float32
        return self.dtype

    def __call__(self, xb, db):
        """Logits of one batch (device tensors or host arrays), float32 on the device."""
        if (self.asked == "auto" and self.precision not in ("float32", "int8")
                and self.tv is None):
            def run(precision, x, d):
                net, dtype = inference_network(self.model, precision, self.device)
                x = _to_device(x, self.device, dtype, self.channels_last)
                d = _to_device(d, self.device, self.dust_dtype)
                return _run_batch(net, x, d, precision, self.device, False, None,
                                  1.0, amp=net is self.model).cpu().numpy()
            self.tv = _check_once(self.model, self.device, self.precision, run,
                                  xb[:CHECK_ROWS], db[:CHECK_ROWS], min_rows=CHECK_ROWS)
            if self.tv is None:
                # fewer than CHECK_ROWS galaxies in the first batch and no earlier
                # decision: this call runs in float32, and nothing is decided (or kept)
                # on so few galaxies
                self._use("float32")
            elif self.tv > TV_TOLERANCE:
                self._use("float32")
        xb = _to_device(xb, self.device, self.dtype, self.channels_last)
        db = _to_device(db, self.device, self.dust_dtype)
        rows = len(xb)
        if self.fn is not self.net:  # compiled for one batch size: pad the last batch
            if self.rows is None:
                self.rows = rows
            elif rows < self.rows:
                xb = torch.cat([xb, xb.new_zeros((self.rows - rows,) + xb.shape[1:])]).to(
                    memory_format=torch.channels_last if self.channels_last
                    else torch.contiguous_format)
                db = torch.cat([db, db.new_zeros((self.rows - rows,) + db.shape[1:])])
        if self.features is not None:  # the head's hidden layer, from the same pass
            with autocast(self.precision if self.net is self.model else "float32",
                          self.device):
                out, feats = self.net.forward_with_features(xb, db)
            self.features.append(feats[:rows].float())
            return out[:rows].float()
        return _run_batch(self.fn, xb, db, self.precision, self.device, self.tta,
                          self.transforms, self.temperature, amp=self.net is self.model)[:rows]


def predict_logits(model, x, dust, batch_size=64, tta=False, device=None, temperature=1.0,
                   precision="float32", compile=False):
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
    precision : {"float32", "auto", "bfloat16", "float16", "int8"}
        See `~astro_mantis.models.resolve_precision`; float32 by default here (the
        low-level loop), ``"auto"`` by default in `predict`.
    compile : bool
        Run the network through `torch.compile` (falls back to eager mode with a
        warning where compiling fails).

    Returns
    -------
    `numpy.ndarray`, float32, shape (N, n_bins)
        Logits when ``tta`` is False, bin probabilities (rows sum to 1) when True.
    """
    runner = _Runner(model, device, precision, tta, temperature, compile)
    logits = _run_all(model, runner, ((x[s:s + batch_size], dust[s:s + batch_size])
                                      for s in range(0, len(x), batch_size)))
    return logits if logits is not None else np.zeros((0, model.fc1.out_features), np.float32)


def _run_all(model, runner, batches):
    """Concatenated outputs of ``runner`` over ``batches`` of (x, dust), as numpy."""
    out = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for xb, db in batches:
                out.append(runner(xb, db))  # stays on the device: no sync per batch
    finally:
        model.train(was_training)
    return torch.cat(out).cpu().numpy() if out else None


class _Prefetch:
    """Iterate ``fn(item)`` for ``items`` with the next result computed in a thread.

    Fusion of batch k+1 (NumPy, which releases the interpreter lock) overlaps the
    network's pass over batch k.
    """

    _END = object()

    def __init__(self, fn, items):
        self.q = queue.Queue(maxsize=1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, args=(fn, items), daemon=True,
                                       name="astro_mantis-fusion")
        self.thread.start()

    def _work(self, fn, items):
        try:
            for item in items:
                if self.stop.is_set():
                    return
                self.q.put((True, fn(item)))
            self.q.put((True, self._END))
        except BaseException as exc:  # handed to the consumer
            self.q.put((False, exc))

    def __iter__(self):
        try:
            while True:
                ok, value = self.q.get()
                if not ok:
                    raise value
                if value is self._END:
                    return
                yield value
        finally:
            self.stop.set()
            while self.thread.is_alive():  # unblock a producer waiting on put
                try:
                    self.q.get_nowait()
                except queue.Empty:
                    self.thread.join(0.01)


class _ReferenceExposure:
    """Native PS1 counts read batch by batch at the reference exposure times.

    Slicing gives the rescaled counts of those rows (`astro_mantis.fusion.exposure`),
    so a large array is never copied whole; ``flags`` collects the rows' EXPTIME_UNKNOWN.
    """

    def __init__(self, panstarrs, exptime):
        self.array = panstarrs
        n = len(panstarrs)
        self.exptime = np.full((n, 5), np.nan) if exptime is None else \
            np.asarray(exptime, dtype=np.float64)
        if self.exptime.shape != (n, 5):
            raise ValueError(f"panstarrs_exptime must have shape ({n}, 5): the EXPTIME of the "
                             f"g r i z y stacks of each row; got {self.exptime.shape}")
        self.flags = np.zeros(n, np.int64)

    def __len__(self):
        return len(self.array)

    def __getitem__(self, sl):
        from ..fusion.exposure import to_reference_exposure

        counts, flags = to_reference_exposure(self.array[sl], self.exptime[sl])
        self.flags[sl] = flags
        return counts


def _native_arrays(data, exposure="stack"):
    """{"galex": ..., "panstarrs": ..., "unwise": ...} of native pixels, checked.

    ``data["panstarrs_exptime"]`` (optional) gives the PS1 stacks' EXPTIME; with
    ``exposure="reference"`` the PS1 array is read through `_ReferenceExposure`.
    """
    from ..fusion import RECIPE

    data = dict(data)
    exptime = data.pop("panstarrs_exptime", None)
    unknown = set(data) - set(RECIPE)
    if unknown:
        raise ValueError(f"unknown survey(s) {sorted(unknown)} in the native arrays; "
                         f"expected keys among {list(RECIPE)}")
    arrays = {s: data.get(s) for s in RECIPE}
    lengths = {len(a) for a in arrays.values() if a is not None}
    if len(lengths) != 1:
        raise ValueError("native arrays must be given for at least one survey and agree "
                         f"on the number of rows; got {sorted(lengths)}")
    if exposure == "reference" and arrays["panstarrs"] is not None:
        arrays["panstarrs"] = _ReferenceExposure(arrays["panstarrs"], exptime)
    return arrays, lengths.pop()


def _fused_native_batches(arrays, n, ebv, nan_policy, batch_size, device, runner=None):
    """(x, dust, flags, valid) per batch from native arrays: fused where it is fastest.

    On a GPU, a thread copies the crops of batch k+1 into reused pinned buffers while
    batch k runs; they travel asynchronously and the recipe runs there in torch
    (`~astro_mantis.fusion.batched.fuse_arrays_torch`). On a CPU,
    `~astro_mantis.fusion.batched.fuse_arrays_batched` (bit-identical to NumPy, on
    all cores) writes into a reused buffer, and the network runs after it; the
    fusion also writes each chunk, in the type and channels-last layout the
    ``runner``'s network takes (asked before each batch), into a second reused
    buffer that the network reads, while the chunk is in the cache. When the runner
    runs in bfloat16 and the compiled C fusion module was built
    (`~astro_mantis.fusion.has_native_fusion`), or compiles and runs in a reduced
    precision, `~astro_mantis.fusion.batched.fuse_arrays_fast` (one pass, straight
    into the network's input) instead; its torch recipe on batches padded to
    ``batch_size``.
    """
    from ..fusion import batched, core

    starts = range(0, n, batch_size)
    if device.type == "cuda" and nan_policy == "zero":
        pinned = [{}, {}, {}]  # reused page-locked buffers: the thread fills k+2 while k runs

        def crops(k_start):
            k, start = k_start
            sl = slice(start, start + batch_size)
            out = {}
            for s, a in arrays.items():
                if a is not None:
                    c = core.center_crop(np.asarray(a[sl]), core.RECIPE[s]["crop"])
                    buf = pinned[k % 3].get(s)
                    if buf is None or tuple(buf.shape) != c.shape:
                        buf = pinned[k % 3][s] = torch.empty(c.shape, dtype=torch.float32,
                                                             pin_memory=True)
                    np.copyto(buf.numpy(), c, casting="unsafe")  # one pass, into pinned
                    out[s] = buf
            return sl, out

        for sl, host in _Prefetch(crops, enumerate(starts)):
            fused = batched.fuse_arrays_torch(
                **{s: t.to(device, non_blocking=True) for s, t in host.items()},
                ebv=None if ebv is None else ebv[sl], nan_policy=nan_policy, device=device)
            yield fused.x, fused.dust, fused.flags, fused.valid  # (flags: synchronised)
        return
    # on a CPU the network already uses every core: fusing in a second thread only
    # makes the two compete (measured slower), so fuse then run, in turn, into a
    # reused buffer (no fresh pages per batch)
    buf = low = fast_out = None
    for start in starts:
        sl = slice(start, start + batch_size)
        rows = len(range(n)[sl])
        if buf is None or len(buf) != rows:
            shape = (rows, len(core.CHANNELS), core.OUTPUT_SIZE, core.OUTPUT_SIZE)
            buf, low = np.empty(shape, np.float32), None
        want = None if runner is None else runner.input_dtype()
        native = want == torch.bfloat16 and batched.has_native_fusion()
        if (want is not None and (runner.compile or native) and nan_policy == "zero"
                and runner.precision in ("bfloat16", "float16")):
            names = {torch.bfloat16: "bfloat16", torch.float16: "float16",
                     torch.float32: "float32"}
            # the torch recipe is compiled for one batch size: pad; the C module is not
            pad = (lambda a: a) if native else (lambda a: _padded(a, batch_size))
            part = {s: (None if a is None else pad(np.asarray(a[sl]))) for s, a in arrays.items()}
            if fast_out is None or fast_out.dtype != want:
                with torch.inference_mode(False):
                    fast_out = torch.empty((batch_size,) + buf.shape[1:], dtype=want,
                                           memory_format=torch.channels_last)
            dst = fast_out[:rows] if native else fast_out
            fused = batched.fuse_arrays_fast(
                **part, ebv=None if ebv is None else pad(ebv[sl]), dtype=names[want], out=dst)
            yield fused.x[:rows], fused.dust[:rows], fused.flags[:rows], fused.valid[:rows]
            continue
        if want is None or not runner.channels_last:
            low = None
        elif low is None or low.dtype != want:
            with torch.inference_mode(False):  # written by the fusion's worker threads
                low = torch.empty(buf.shape, dtype=want, memory_format=torch.channels_last)
        fused = batched.fuse_arrays_batched(
            **{s: (None if a is None else a[sl]) for s, a in arrays.items()},
            ebv=None if ebv is None else ebv[sl], nan_policy=nan_policy, out=buf,
            copy_to=low)
        yield (fused.x if low is None else low), fused.dust, fused.flags, fused.valid


def _n_galaxies(data):
    """How many galaxies ``predict`` was given (before any checking)."""
    from ..multicutout import MultiSurveyCutout

    if isinstance(data, MultiSurveyCutout):
        return 1
    if isinstance(data, dict):
        return max((len(a) for a in data.values() if a is not None), default=0)
    if _is_cutouts(data):
        return len(data)
    return len(data) if np.ndim(data) == 4 else 1


def _padded(a, rows):
    """``a`` with zero rows appended up to ``rows`` (a compiled function's batch size)."""
    if len(a) >= rows:
        return a
    return np.concatenate([a, np.zeros((rows - len(a),) + a.shape[1:], a.dtype)])


def _fused_cutout_batches(cuts, ebv, nan_policy, batch_size, exposure="stack"):
    """(x, dust, flags, valid) per batch of cutouts, fused one batch ahead in a thread."""
    from ..fusion import core, early_fusion

    # three buffers in turn: the network holds batch k, the queue k + 1, the thread
    # writes k + 2; the thread reaches k's buffer again only after the network asked
    # for k + 1. Reused buffers spare every batch the page faults of a fresh array.
    buffers = {}

    def fuse(start):
        part = cuts[start:start + batch_size]
        key = start // batch_size % 3
        buf = buffers.get(key)
        if buf is None or len(buf) != len(part):
            buf = buffers[key] = np.empty(
                (len(part), len(core.CHANNELS), core.OUTPUT_SIZE, core.OUTPUT_SIZE), np.float32)
        fused = early_fusion(part, ebv=None if ebv is None else ebv[start:start + batch_size],
                             nan_policy=nan_policy, out=buf, panstarrs_exposure=exposure)
        return fused.x, fused.dust, fused.flags, fused.valid

    return _Prefetch(fuse, range(0, len(cuts), batch_size))


def predict(data, model="mantis-mini", dust=None, tta=False, batch_size=None, device=None,
            weights=None, nan_policy="zero", precision="auto", compile="auto",
            features=False, on_batch=None):
    """Redshift PDFs of galaxies from their cutouts (or from fused arrays).

    Deterministic: the network runs in ``eval()`` mode under `torch.inference_mode`,
    without the random rotations and flips the reference applies at inference. With
    ``tta=True`` the softmax probabilities are averaged over all 8 flips and 90°
    rotations instead. The calibration temperature of the model's card
    (``model.meta["temperature"]``) divides the logits when present, and its PIT
    recalibration map (``model.meta["calibration"]["pit_map"]``) is then applied to
    the PDFs' CDFs (`astro_mantis.pdf.RedshiftPDF.remap_cdf`); with ``tta=True``, the
    card's map fitted to the TTA average (``calibration_tta``) where it has one
    (`~astro_mantis.models.pit_map_for`).

    Fusion: cutouts are fused with `~astro_mantis.fusion.early_fusion` one batch
    ahead of the network, in a thread. Native arrays are fused with
    `~astro_mantis.fusion.batched.fuse_arrays_batched` on a CPU (the same bits as
    the NumPy reference, on all cores, in turn with the network) or with
    `~astro_mantis.fusion.batched.fuse_arrays_torch` on a GPU (crops copied into
    pinned memory one batch ahead in a thread).

    Parameters
    ----------
    data : `~astro_mantis.MultiSurveyCutout`, sequence of them, dict or array-like
        Cutouts (fused with `~astro_mantis.fusion.early_fusion`); a dict of native
        pixel arrays ``{"galex": (N, 2, 32, 32), "panstarrs": (N, 5, 170, 170),
        "unwise": (N, 2, 32, 32)}`` (as `~astro_mantis.fusion.fuse_arrays` takes
        them; a survey left out is missing), optionally with ``"panstarrs_exptime"``
        (N, 5), the stacks' ``EXPTIME``; or an already fused array
        (N, 9, 120, 120) (or one image (9, 120, 120)) of finite values. A network
        whose ``panstarrs_exposure`` is ``"reference"`` (the bundled ``mantis-mini``)
        gets PS1 counts rescaled to the typical exposure times
        (`astro_mantis.fusion.exposure`), from the cutouts' zero points or from
        ``"panstarrs_exptime"``; rows without them are flagged
        `~astro_mantis.MantisFlag.EXPTIME_UNKNOWN`. A fused array must already have
        been fused as the network takes it: 9 channels, and the image size the
        model's card records (``meta["input"]["x"]``, 120 × 120 for the models
        loaded by name); another shape raises `ValueError`. A torch tensor may be of
        any floating type (bfloat16 included); it is read as float32.
    model : str or `torch.nn.Module`
        A registry name (loaded once with `~astro_mantis.models.load_model` and
        remembered for later calls), or a network object taking ``(x, dust)``.
    dust : array-like, shape (N, 2), optional
        Milky Way E(B−V) per galaxy. None: zeros and the
        `~astro_mantis.MantisFlag.DUST_UNKNOWN` flag; so are rows holding NaN
        (or inf), with cutouts, native arrays and fused arrays alike.
    tta : bool
        Test-time augmentation over the 8 dihedral transforms (8× slower).
    batch_size : int, optional
        Galaxies per forward pass; default
        `~astro_mantis.models.precision.default_batch_size` (64 on a CPU, 1024 for
        ``mantis-mini`` on a GPU).
    device : str or `torch.device`, optional
        ``"cpu"``, ``"cuda"``, ``"mps"``; None: the best available for a model given
        by name, the model's own device for a model object.
    weights : str or path-like, optional
        Weights path or URL for a model given by name (see
        `~astro_mantis.models.load_model`).
    nan_policy : {"zero", "inpaint"}
        Passed to the fusion for cutouts and native arrays.
    precision : {"auto", "float32", "bfloat16", "float16", "int8"}
        Arithmetic of the network (`~astro_mantis.models.resolve_precision`):
        ``"auto"`` takes bfloat16 where the device runs it natively and float32
        elsewhere, and checks bfloat16 against float32 on the first
        ``astro_mantis.models.inference.CHECK_ROWS`` (16) galaxies of the first batch
        the first time a model runs on that device with at least that many in its
        first batch (`~astro_mantis.models.precision.TV_TOLERANCE`); until then, calls
        with fewer run in float32 and decide nothing;
        on a CPU, a model whose card records that check (``precision_check``,
        `~astro_mantis.models.precision.recorded_cpu_bfloat16_tv`) is not checked:
        bfloat16 where the recorded value is at most the tolerance, float32 above.
        ``"int8"`` needs a model from `~astro_mantis.models.quantize_int8`.
    compile : bool or "auto"
        Run the network through `torch.compile` (on a CPU in bfloat16: its inference
        copy, with the weights frozen into the compiled code) and, for native arrays
        in a reduced precision where the C fusion module was not built, the fusion's
        torch recipe (`~astro_mantis.fusion.batched.fuse_arrays_fast`). The first
        batch compiles (about 25 s for ``mantis-mini`` on two CPU cores with an empty
        inductor cache, a few seconds with a warm one); after that, on two AMX cores,
        the bfloat16 network runs 1.2× faster and native arrays go through fusion and
        network 1.1× faster (1.8× where the fusion is compiled too). ``"auto"`` (the
        default) compiles when the call has at least
        ``astro_mantis.models.inference.COMPILE_MIN_GALAXIES`` (100,000) galaxies,
        where that pays. Falls back to eager mode, with a warning, where
        compiling fails (e.g. no C++ compiler).
    features : bool
        Also keep each row's penultimate features (the input of the network's last
        layer, `~astro_mantis.explain.penultimate_features`) from the same forward
        pass, as ``meta["features"]`` (float32, (N, hidden)): what
        `~astro_mantis.explain.ood_score` and
        `~astro_mantis.explain.statistics_from_features` take, so a redshift and its
        out-of-distribution score cost one pass (the table job's way). Needs a
        `~astro_mantis.models.PhotoZNet` that is not int8-quantised, and
        ``tta=False``; the network then runs uncompiled.
    on_batch : callable, optional
        Called as ``on_batch(x)`` with each batch of fused images, (rows, 9, 120,
        120), in order, as the network is about to receive it. What ``x`` is depends
        on the input and the device: for cutouts and for a fused array, a float32
        `numpy.ndarray` (for a fused array, a slice of it); for native arrays on a
        CPU, a CPU `torch.Tensor` in the type and layout the network takes (float32
        or bfloat16, channels-last); for native arrays on a CUDA GPU, a float32
        `torch.Tensor` **on that GPU** (fused there; with ``nan_policy="inpaint"``,
        which fuses on the CPU, a CPU tensor as above); elsewhere (MPS) a float32
        `numpy.ndarray`. ``numpy.asarray(torch.as_tensor(x).float().cpu())`` gives
        float32 numpy in every case. Buffers may be reused for later batches: use or
        copy ``x`` before returning. For what needs the fused images beside the
        redshifts without fusing twice (the table job's band misalignment).

    Returns
    -------
    `~astro_mantis.pdf.RedshiftPDF`
        One PDF per input row, in order (a scalar PDF for one cutout or one
        (9, 120, 120) image). ``meta`` holds ``model``, ``weights``,
        ``sha256``, ``temperature``, ``tta``, ``precision`` (the precision used,
        never ``"auto"``), ``precision_check_tv`` (where ``"auto"`` picked bfloat16:
        the mean PDF total-variation distance to float32 it decided by, float32
        being run instead above `~astro_mantis.models.precision.TV_TOLERANCE`; on a
        CPU the value the model's card records where it has one (no check runs
        then), else that of the check on the first ``CHECK_ROWS`` (16) galaxies of
        the first batch of the first call with at least that many, kept for later
        calls; None where ``"auto"`` chose float32 outright, where a call with fewer
        galaxies ran in float32 before any check, or where another precision was
        asked),
        ``features`` with ``features=True``, and per row ``flags``
        (`~astro_mantis.MantisFlag` bits, int64 array) and ``valid`` (N, 9) when
        cutouts or native arrays were given; where a PIT map was applied,
        ``pit_recalibrated`` (True) and ``pit_map``, the card entry it came from
        (``"calibration"`` or ``"calibration_tta"``).

    Raises
    ------
    ValueError
        For an unknown ``precision``, ``"float16"`` on a CPU, ``"int8"`` without a
        quantised model, non-finite fused input, or badly shaped arrays.
    """
    from ..pdf import RedshiftPDF

    if isinstance(model, str):
        device = select_device(device)
        net = _cached_model(model, weights, device)
    elif isinstance(model, torch.nn.Module):
        net = model
        if device is not None:
            device = select_device(device)
            if not is_quantized(net):
                net = net.to(device)
    else:
        raise TypeError(f"model must be a registry name or a torch.nn.Module; got "
                        f"{type(model).__name__}")
    if device is None:
        first = next(net.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if batch_size is None:
        batch_size = default_batch_size(device, net)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    meta_in = dict(getattr(net, "meta", {}) or {})
    temperature = float(meta_in.get("temperature") or 1.0)
    n_bins = int(meta_in.get("n_bins", net.fc1.out_features if hasattr(net, "fc1") else NBINS))
    edges = np.linspace(meta_in.get("z_min", Z_MIN), meta_in.get("z_max", Z_MAX), n_bins + 1)
    if compile == "auto":
        compile = _n_galaxies(data) >= COMPILE_MIN_GALAXIES
    elif not isinstance(compile, bool):
        raise ValueError(f"compile must be True, False or 'auto'; got {compile!r}")
    if features:
        if tta:
            raise ValueError("features=True needs tta=False (the features of one pass)")
        if is_quantized(net) or not callable(getattr(net, "forward_with_features", None)):
            raise ValueError("features=True needs a PhotoZNet (with forward_with_features) "
                             "that is not int8-quantised")
        compile = False
    runner = _Runner(net, device, precision, tta, temperature, compile,
                     features=bool(features))

    from ..multicutout import MultiSurveyCutout

    scalar = isinstance(data, MultiSurveyCutout) or (
        not _is_cutouts(data) and not isinstance(data, dict) and np.ndim(data) == 3)
    valid = None
    if _is_cutouts(data) or isinstance(data, dict):
        from ..fusion import dust_array
        from ..fusion.exposure import model_panstarrs_exposure

        exposure = model_panstarrs_exposure(net)
        if isinstance(data, dict):
            arrays, n = _native_arrays(data, exposure)
        else:
            cuts = [data] if isinstance(data, MultiSurveyCutout) else list(data)
            n = len(cuts)
        ebv = None
        if dust is not None:  # NaN rows stay NaN: the fusion zeroes and flags them
            ebv = np.array(dust.to_value(u.mag) if isinstance(dust, u.Quantity) else dust,
                           dtype=np.float32)
            if ebv.shape == (2,) and n == 1:
                ebv = ebv[np.newaxis]
            dust_array(ebv, n)  # checks the shape
        if isinstance(data, dict):
            batches = _fused_native_batches(arrays, n, ebv, nan_policy, batch_size, device,
                                            runner)
        else:
            batches = _fused_cutout_batches(cuts, ebv, nan_policy, batch_size, exposure)
        flags, valid = [np.zeros(0, np.int64)], [np.zeros((0, 9), bool)]

        def model_inputs():
            for x, d, f, v in batches:
                flags.append(f)
                valid.append(v)
                if on_batch is not None:
                    on_batch(x)
                yield x, d

        out = _run_all(net, runner, model_inputs())
        out = np.zeros((0, n_bins), np.float32) if out is None else out
        flags, valid = np.concatenate(flags), np.concatenate(valid)
        if isinstance(data, dict) and isinstance(arrays["panstarrs"], _ReferenceExposure):
            flags |= arrays["panstarrs"].flags
    else:
        x, d, flags = _array_inputs(data, dust, _expected_input(meta_in))

        def array_batches():
            for s in range(0, len(x), batch_size):
                if on_batch is not None:
                    on_batch(x[s:s + batch_size])
                yield x[s:s + batch_size], d[s:s + batch_size]

        out = _run_all(net, runner, array_batches())
        out = np.zeros((0, n_bins), np.float32) if out is None else out
    meta = {"model": meta_in.get("name", type(net).__name__), "weights": meta_in.get("weights"),
            "sha256": meta_in.get("sha256"), "trained": meta_in.get("trained"),
            "temperature": temperature, "tta": bool(tta), "precision": runner.precision,
            "precision_check_tv": None if runner.tv is None else float(runner.tv),
            "flags": int(flags[0]) if scalar else flags}
    if valid is not None:
        meta["valid"] = valid[0] if scalar else valid
    if features:
        feats = (torch.cat(runner.features).cpu().numpy() if runner.features
                 else np.zeros((0, net.fc1.in_features), np.float32))
        meta["features"] = feats[0] if scalar else feats
    if scalar:
        out = out[0]
    if tta:
        pdf = RedshiftPDF(out / np.diff(edges), edges=edges, meta=meta)
    else:
        pdf = RedshiftPDF.from_logits(out, edges=edges, temperature=temperature, meta=meta)
    pit_map, source = pit_map_for(meta_in, tta)
    if pit_map:
        pdf = pdf.remap_cdf(pit_map["knots"], pit_map["values"])
        pdf.meta["pit_recalibrated"] = True
        pdf.meta["pit_map"] = source
    return pdf
