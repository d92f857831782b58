"""Numerical precision of inference: which one a device runs natively, and checks.

`~astro_mantis.models.predict` takes ``precision=`` one of:

``"float32"``
    The reference: every operation in float32.
``"bfloat16"``
    On a CPU, `inference_network`: a cached copy of the model whose backbone is
    stored in bfloat16 (8 bits of mantissa, float32's range), channels-last; the head
    (dust values, the two linear layers, the logits) stays in float32. Elsewhere
    `torch.autocast` with ``dtype=torch.bfloat16``: convolutions and matrix products
    in bfloat16, reductions, softmax and the output in float32. Native on CPUs with
    AMX-BF16 (Intel Sapphire Rapids and later) or AVX512-BF16 (Intel Cooper Lake, AMD
    Zen 4 and later), and on CUDA GPUs of compute capability 8.0 or more; elsewhere
    torch emulates it (correct, but slower than float32).
``"float16"``
    `torch.autocast` with ``dtype=torch.float16``. GPUs only (CUDA, MPS); asking for it
    on a CPU raises `ValueError`.
``"int8"``
    A model quantised by `quantize_int8` (post-training static quantisation with
    torch's own ``torch.ao.quantization`` tooling, calibrated on images you give it).
    CPUs only. ``predict`` never quantises by itself, because calibration needs data:
    pass the quantised model (its precision is then ``"int8"``). It is about twice
    as fast as bfloat16 on an AVX512-BF16 CPU without AMX, but it does **not** pass
    the accuracy check: its mean PDF total-variation distance from float32 is well
    above `~astro_mantis.models.precision.TV_TOLERANCE` (the bundled model's, measured
    on its test set, is in the models documentation, "Precision and speed"), so
    ``"auto"`` never chooses it.
``"auto"`` (the default)
    `resolve_precision`: ``"bfloat16"`` where the device runs it natively, else
    ``"float32"``; then, per model, the accuracy check below may send it back to
    float32. The first time a model is run in a reduced precision by ``predict`` on a
    call whose first batch holds at least 16 galaxies
    (``astro_mantis.models.inference.CHECK_ROWS``), those 16 are also run in float32 and
    the mean total-variation distance between the two sets of PDFs
    (`pdf_total_variation`) must be at most
    `~astro_mantis.models.precision.TV_TOLERANCE`; if not, that model falls back to
    float32 on that device (with a warning) for the rest of the session. Until such a
    call has decided, calls whose first batch holds fewer galaxies run in float32 and
    decide nothing, so that no decision rests on one or two galaxies. A model whose
    card records that distance on CPUs, measured on its validation set
    (``precision_check = {"cpu_bfloat16_tv": ...}``, `recorded_cpu_bfloat16_tv`), is
    not checked on CPUs: ``"auto"`` follows the card, silently, whatever the value
    (bfloat16 at or below the tolerance, float32 above), so that the choice does not
    depend on which galaxies come first.

The precision actually used is recorded in ``RedshiftPDF.meta["precision"]``.
"""
import contextlib
import copy
import platform
import warnings
import weakref
from functools import lru_cache

import numpy as np
import torch

__all__ = ["PRECISIONS", "TV_TOLERANCE", "cpu_features", "native_precisions",
           "recorded_cpu_bfloat16_tv",
           "resolve_precision", "autocast", "pdf_total_variation", "quantize_int8",
           "is_quantized", "default_batch_size", "inference_network", "param_dtype"]

#: The accepted values of ``precision``.
PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")
#: Largest mean total-variation distance between a reduced precision's PDFs and float32's
#: for which ``"auto"`` keeps the reduced precision.
TV_TOLERANCE = 0.01

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
# model → {(device, precision): (weights stamp, distance the accuracy check measured)}
_CHECKED = weakref.WeakKeyDictionary()
# model → {(device, precision): (weights stamp, inference copy)}
_COPIES = weakref.WeakKeyDictionary()


def _check_precision_name(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}; "
                         f"got {precision!r}")


@lru_cache(maxsize=1)
def cpu_features():
    """Instruction-set flags of this CPU that matter for reduced precision.

    Read from ``/proc/cpuinfo`` (Linux); elsewhere only what torch reports.

    Returns
    -------
    frozenset of str
        Among ``"amx_bf16"``, ``"amx_int8"``, ``"avx512_bf16"``, ``"avx512_fp16"``,
        ``"avx512_vnni"``, ``"avx_vnni"``, ``"avx512f"``, ``"avx2"``; plus
        ``"torch:<capability>"`` from `torch.backends.cpu.get_cpu_capability`
        (e.g. ``"torch:AVX512"``).
    """
    wanted = {"amx_bf16", "amx_int8", "avx512_bf16", "avx512_fp16", "avx512_vnni",
              "avx_vnni", "avx512f", "avx2"}
    found = set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    found = wanted & set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    try:
        found.add(f"torch:{torch.backends.cpu.get_cpu_capability()}")
    except Exception:  # pragma: no cover - very old torch
        pass
    return frozenset(found)


def _cpu_bf16_native():
    feats = cpu_features()
    if "amx_bf16" in feats or "avx512_bf16" in feats:
        return True
    # Apple silicon (arm64 macOS, M2 and later) has BF16 instructions too, but torch's
    # CPU kernels do not use them for convolutions: stay with float32 there
    return False


def native_precisions(device="cpu"):
    """The precisions ``device`` runs natively (fast, in hardware), fastest last.

    Parameters
    ----------
    device : str or `torch.device`

    Returns
    -------
    tuple of str
        Always starts with ``"float32"``. CPUs: ``"bfloat16"`` with AMX-BF16 or
        AVX512-BF16 (see `~astro_mantis.models.precision.cpu_features`). CUDA:
        ``"float16"`` from compute capability 7.0, ``"bfloat16"`` from 8.0. MPS:
        ``"float16"``. ``"int8"`` is not listed: it needs a calibrated model (`quantize_int8`).
    """
    device = torch.device(device)
    if device.type == "cpu":
        return ("float32", "bfloat16") if _cpu_bf16_native() else ("float32",)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, _ = torch.cuda.get_device_capability(index)
        out = ["float32"]
        if major >= 7:  # tensor cores for float16 from Volta on
            out.append("float16")
        if major >= 8:  # and bfloat16 from Ampere on
            out.append("bfloat16")
        return tuple(out)
    if device.type == "mps":
        return ("float32", "float16")
    return ("float32",)


def resolve_precision(precision="auto", device="cpu"):
    """The precision ``predict`` uses for ``precision`` on ``device``.

    Parameters
    ----------
    precision : {"auto", "float32", "bfloat16", "float16", "int8"}
    device : str or `torch.device`

    Returns
    -------
    str
        For ``"auto"``: ``"bfloat16"`` when `native_precisions` lists it for the
        device, else ``"float32"``. This is the hardware's side only: whether a model
        stays within `~astro_mantis.models.precision.TV_TOLERANCE` in bfloat16 is
        decided per model by `~astro_mantis.models.predict` (its card's
        ``precision_check``, `recorded_cpu_bfloat16_tv`, or a check of its own), which
        may run float32 instead; the bundled ``mantis-mini``'s card records a distance
        above the tolerance, so it runs in float32 on CPUs (models documentation,
        "Precision and speed"). Other values are returned as given once checked.

    Raises
    ------
    ValueError
        For an unknown name, ``"float16"`` on a CPU, ``"int8"`` elsewhere than on a
        CPU.

    Examples
    --------
    >>> from astro_mantis.models import resolve_precision
    >>> resolve_precision("float32", "cpu")
    'float32'
    >>> resolve_precision("auto", "cpu") in ("float32", "bfloat16")
    True
    """
    _check_precision_name(precision)
    device = torch.device(device)
    if precision == "auto":
        return "bfloat16" if "bfloat16" in native_precisions(device) else "float32"
    if precision == "float16" and device.type == "cpu":
        raise ValueError("precision 'float16' needs a GPU (CUDA or MPS); on a CPU use "
                         "'bfloat16' (autocast), 'int8' (quantize_int8) or 'float32'")
    if precision == "int8" and device.type != "cpu":
        raise ValueError(f"precision 'int8' runs on the CPU only (torch's quantised "
                         f"kernels); got device {device}")
    if precision == "bfloat16" and device.type == "cpu" and not _cpu_bf16_native():
        warnings.warn("this CPU has neither AMX-BF16 nor AVX512-BF16: torch emulates "
                      "bfloat16 here, which is slower than float32", RuntimeWarning,
                      stacklevel=2)
    return precision


def autocast(precision, device):
    """A context manager running a network in ``precision`` on ``device``.

    Parameters
    ----------
    precision : {"float32", "bfloat16", "float16", "int8"}
        A resolved precision (`resolve_precision`); ``"float32"`` and ``"int8"`` (a
        quantised model carries its own arithmetic) need no autocast.
    device : str or `torch.device`

    Returns
    -------
    context manager
    """
    device = torch.device(device)
    if precision in ("float32", "int8"):
        return contextlib.nullcontext()
    if precision not in _DTYPES:
        _check_precision_name(precision)
        raise ValueError(f"resolve precision {precision!r} first (resolve_precision)")
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


class _LowPrecisionBackbone(torch.nn.Module):
    """A backbone run in a reduced floating-point type, handing float32 features on."""

    def __init__(self, inner, dtype):
        super().__init__()
        self.inner = inner.to(dtype, memory_format=torch.channels_last)
        self.input_dtype = dtype

    def forward(self, x):
        return self.inner(x.to(self.input_dtype)).float()


def param_dtype(model):
    """The floating-point type of ``model``'s parameters (float32 when it has none).

    Parameters
    ----------
    model : `torch.nn.Module`

    Returns
    -------
    `torch.dtype`
    """
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def _weights_stamp(model):
    # in-place updates (an optimiser step, load_state_dict) bump a tensor's _version
    return tuple((id(t), t._version) for t in
                 list(model.parameters()) + list(model.buffers()))


def inference_network(model, precision, device="cpu"):
    """The module `~astro_mantis.models.predict` runs for ``precision`` on ``device``.

    For ``"bfloat16"`` on a CPU this is a cached copy of ``model`` prepared for
    inference: the backbone's weights stored in bfloat16 and channels-last, so that it
    takes bfloat16 channels-last images and needs no `torch.autocast` (which re-casts
    the weights at every call). The head (the dust values, ``fc0``, ``fc1`` and the
    logits) stays in float32: it costs nothing, and logits rounded to bfloat16's 8 bits
    would move the PDFs by more than the accuracy check allows. On an earlier bundled
    model the copy's softmax moved as little as under autocast, and the network ran
    about 1.2× faster than under autocast on two AMX cores
    (``benchmarks/bench_inference.py``); the current bundled model's distance to
    float32 is the one its card records (``precision_check``, above
    `~astro_mantis.models.precision.TV_TOLERANCE`: see the models documentation,
    "Precision and speed"). Tried and left: folding the BatchNorms into the bfloat16
    convolution weights (faster, but the PDFs moved further); a float32 stem (the PDFs
    move less, but 12 % slower). Everywhere
    else (float32, GPUs, float16, int8-quantised models, models without a ``Base``
    backbone) ``model`` itself is returned and run under `autocast`. The copy is rebuilt
    when ``model``'s weights change in place.

    Parameters
    ----------
    model : `torch.nn.Module`
    precision : str
        A resolved precision (`resolve_precision`).
    device : str or `torch.device`

    Returns
    -------
    net : `torch.nn.Module`
    dtype : `torch.dtype`
        The floating-point type ``net`` takes its images in (the dust values go in the
        type of ``model``'s parameters).
    """
    device = torch.device(device)
    dtype = param_dtype(model)
    if (precision != "bfloat16" or device.type != "cpu" or is_quantized(model)
            or not isinstance(getattr(model, "Base", None), torch.nn.Module)):
        return model, dtype
    key = (str(device), precision)
    stamp = _weights_stamp(model)
    try:
        copies = _COPIES.setdefault(model, {})
    except TypeError:  # pragma: no cover - not weak-referenceable
        copies = {}
    hit = copies.get(key)
    if hit is None or hit[0] != stamp:
        net = copy.deepcopy(model).eval().to(device)
        net.Base = _LowPrecisionBackbone(net.Base, torch.bfloat16)
        copies[key] = hit = (stamp, net)
    return hit[1], hit[1].Base.input_dtype


def pdf_total_variation(p, q):
    """Mean total-variation distance between two sets of binned PDFs.

    ``TV = ½ Σ_k |p_k − q_k|`` over the bins of each row (p, q as bin probabilities,
    each row summing to 1), averaged over the rows: 0 for identical PDFs, 1 for
    disjoint ones.

    Parameters
    ----------
    p, q : array-like or `~astro_mantis.pdf.RedshiftPDF`, shape (N, n_bins) or (n_bins,)
        Bin probabilities, or `~astro_mantis.pdf.RedshiftPDF` objects (their
        densities times the bin widths are used).

    Returns
    -------
    float
    """
    def probs(a):
        if hasattr(a, "pdf") and hasattr(a, "widths"):
            a = np.asarray(a.pdf) * np.asarray(a.widths)
        return np.atleast_2d(np.asarray(a, dtype=np.float64))

    p, q = probs(p), probs(q)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape; got {p.shape} and {q.shape}")
    if p.size == 0:
        return 0.0
    return float(np.mean(0.5 * np.abs(p - q).sum(axis=1)))


def is_quantized(model):
    """Whether ``model`` came from `quantize_int8`."""
    return bool(getattr(model, "meta", {}).get("precision") == "int8")


def quantize_int8(model, x, dust=None, batch_size=64):
    """Post-training static int8 quantisation of a network's backbone (CPU).

    torch's FX graph-mode quantisation (``torch.ao.quantization``, backend ``"x86"``:
    oneDNN / FBGEMM kernels using AVX512-VNNI or AVX-VNNI where present) of the
    convolutional backbone ``model.Base``: per-channel int8 weights, int8
    activations with ranges calibrated by running ``x`` through it. The dust head
    (``fc0``, ``fc1``, a few hundred thousand multiply-adds) stays in float32.
    Calibrate on data like what will be predicted (the validation split, or a few
    hundred galaxies of the catalogue): ranges from unlike data clip real images.

    Parameters
    ----------
    model : `~astro_mantis.models.PhotoZNet`
        A network with a ``Base`` backbone (``mantis-mini``; the ConvNeXt of
        ``mantis-shrimp-v1`` does not trace with FX).
    x : array-like, shape (N, 9, 120, 120)
        Fused calibration images (finite).
    dust : array-like, shape (N, 2), optional
        Unused by the calibration (the head stays float32); accepted for symmetry.
    batch_size : int
        Calibration batch size.

    Returns
    -------
    `~astro_mantis.models.PhotoZNet`
        A quantised copy on the CPU (``model`` is unchanged), with ``meta`` copied and
        ``meta["precision"] = "int8"``; `~astro_mantis.models.predict` runs it (and
        records ``precision="int8"``).

    Raises
    ------
    ValueError
        If ``x`` is empty or not (N, C, H, W), or the model has no ``Base``.
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if not hasattr(model, "Base"):
        raise ValueError("quantize_int8 needs a PhotoZNet with a Base backbone; got "
                         f"{type(model).__name__}")
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"calibration images must have shape (N, C, H, W) with N ≥ 1; "
                         f"got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("calibration images hold non-finite values")
    torch.backends.quantized.engine = "x86" if "x86" in \
        torch.backends.quantized.supported_engines else torch.backends.quantized.engine
    net = copy.deepcopy(model).cpu().eval()
    example = torch.from_numpy(x[:1]).contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices
        prepared = prepare_fx(net.Base, get_default_qconfig_mapping("x86"),
                              example_inputs=(example,))
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size]))
                prepared(xb.contiguous(memory_format=torch.channels_last))
        net.Base = convert_fx(prepared)
    net.meta = dict(getattr(model, "meta", {}) or {})
    net.meta.update(precision="int8", int8_calibration=int(len(x)))
    return net


def default_batch_size(device, model=None):
    """Galaxies per forward pass when ``batch_size`` is not given.

    CPUs: 64 (larger batches are no faster: ``mantis-mini`` runs at the same rate
    from 32 to 256, and 64 fused images take 33 MB). GPUs: 1024 for ``mantis-mini``
    (fills an H100/H200-class GPU; 530 MB of input), 256 for the large network.

    Parameters
    ----------
    device : str or `torch.device`
    model : `torch.nn.Module`, optional

    Returns
    -------
    int
    """
    device = torch.device(device)
    if device.type == "cpu":
        return 64
    n_params = sum(p.numel() for p in model.parameters()) if model is not None else 0
    return 256 if n_params > 50_000_000 else 1024


def _check_once(model, device, precision, run, x, dust, min_rows=1):
    """The mean PDF distance of ``precision`` to float32 on (x, dust) for this model.

    Measured once per (model, device, precision) and kept for the session, with the
    stamp of the weights it was measured on: once the weights change in place (an
    optimiser step, ``load_state_dict``) the measurement is stale and the next call
    measures again. None, with nothing measured or kept, where no measurement of the
    current weights is kept yet and ``x`` has fewer than ``min_rows`` rows (a decision
    on one or two galaxies would hang every later call's precision on which galaxies
    happened to come first).
    """
    key = (str(device), precision)
    try:
        done = _CHECKED.setdefault(model, {})
    except TypeError:  # pragma: no cover - not weak-referenceable
        done = {}
    stamp = _weights_stamp(model)
    kept = done.get(key)
    if kept is None or kept[0] != stamp:
        if len(x) < min_rows:
            return None
        ref = run("float32", x, dust)
        low = run(precision, x, dust)
        tv = pdf_total_variation(_softmax(ref), _softmax(low))
        done[key] = (stamp, tv)
        if tv > TV_TOLERANCE:
            warnings.warn(f"precision {precision!r} on {device}: mean PDF total-variation "
                          f"distance to float32 is {tv:.4f} > {TV_TOLERANCE} on the first "
                          f"{len(x)} galaxies; using float32 for this model", RuntimeWarning,
                          stacklevel=3)
    return done[key][1]


def recorded_cpu_bfloat16_tv(model):
    """The bfloat16-on-CPU accuracy check recorded in ``model``'s card, if any.

    Parameters
    ----------
    model : `torch.nn.Module`
        A model whose ``meta`` holds its card's entries (`~astro_mantis.models.load_model`).

    Returns
    -------
    float or None
        The card's ``precision_check["cpu_bfloat16_tv"]``: the mean PDF total-variation
        distance between bfloat16 and float32 on a CPU, measured on the model's
        validation set. None where the card has none (``"auto"`` then checks the first
        16 galaxies of the first batch of a call that has at least 16). Where it is
        recorded, ``predict`` with
        ``precision="auto"`` on a CPU that runs bfloat16 natively follows it without a
        check of its own: bfloat16 at or below
        `~astro_mantis.models.precision.TV_TOLERANCE`, float32 above.
    """
    check = (getattr(model, "meta", None) or {}).get("precision_check")
    if not isinstance(check, dict) or check.get("cpu_bfloat16_tv") is None:
        return None
    return float(check["cpu_bfloat16_tv"])


def _softmax(logits):
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def machine_summary():
    """One line naming the CPU, its reduced-precision features and torch's threads."""
    name = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    feats = ",".join(sorted(f for f in cpu_features() if not f.startswith("torch:")))
    return (f"{name or platform.machine()} [{feats or 'no AVX-512/AMX'}], "
            f"torch {torch.__version__} {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads")
