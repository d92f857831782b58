"""The model registry: names → architectures, weights, checksums.

``build_model(name)`` gives an architecture with fresh random weights (never a
download); ``load_model(name)`` gives it with trained weights:

* ``mantis-mini`` — the bundled default. Its weights live in the package,
  ``astro_mantis/data/mantis-mini.safetensors``, next to the model card
  ``mantis-mini.json`` (architecture, bins, calibration temperature, training data,
  command, seed, metrics). They are produced by the training pipeline
  (`save_model` writes this pair).
* ``mantis-shrimp-v1`` — the published model of Engel et al. (2025). Its checkpoint
  (a PyTorch state_dict with ``module.`` prefixes, file
  ``mantis_shrimp/MODELS_final/best_early.pt``, 801,048,832 bytes, SHA-256
  ``411536eba11a6733e5632c6a7c7cf9e07c000d68ff929965a9268c56b1c7428e``) lives in the
  reference repository's Git LFS; pass its local path or its URL as ``weights``.
  URLs are fetched once with `astropy.utils.data.download_file` into astropy's cache
  (``pkgname="astro_mantis"``).

Weights are read without executing pickled code: ``safetensors`` files with
``safetensors.torch.load_file``, PyTorch files with ``torch.load(weights_only=True)``.
"""
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..logger import log
from ..pdf import ZMAX, ZMIN
from .mantis_shrimp import N_BINS, build_mantis_shrimp_v1
from .mini import DEFAULT_ARCHITECTURE, build_mantis_mini

__all__ = ["ModelSpec", "WeightsError", "register_model", "available_models", "get_spec",
           "build_model", "load_model", "save_model", "load_state_dict", "read_state_dict",
           "verify_file", "select_device", "training_prior", "DATA_DIR", "Z_MIN", "Z_MAX"]

#: Folder of the bundled weights and model cards.
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
#: Redshift range of the 400 bins of every registered model (bin edges
#: ``numpy.linspace(Z_MIN, Z_MAX, N_BINS + 1)``, as `astro_mantis.pdf.Z_EDGES`).
Z_MIN, Z_MAX = ZMIN, ZMAX
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class WeightsError(ValueError):
    """A weights file that does not match what was expected (checksum, size, keys)."""


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model.

    Attributes
    ----------
    name : str
        Registry name.
    build : callable
        ``build(**kwargs)`` → `torch.nn.Module` with random weights.
    description : str
        One line for `available_models` listings and error messages.
    bundled : str or None
        File stem of weights shipped in `~astro_mantis.models.registry.DATA_DIR`
        (``<stem>.safetensors`` + ``<stem>.json``).
    url : str or None
        Where the trained weights can be downloaded, when known.
    size : int or None
        Size in bytes of the known weights file.
    sha256 : str or None
        SHA-256 of the known weights file (a prefix is enough).
    requires : tuple of str
        Python packages the architecture needs beyond torch.
    """

    name: str
    build: object
    description: str
    bundled: str | None = None
    url: str | None = None
    size: int | None = None
    sha256: str | None = None
    requires: tuple = field(default_factory=tuple)


_REGISTRY = {}


def register_model(spec):
    """Add (or replace) a model in the registry."""
    _REGISTRY[spec.name] = spec
    return spec


register_model(ModelSpec(
    name="mantis-mini",
    build=build_mantis_mini,
    description="compact residual CNN, same input/output as mantis-shrimp-v1 (bundled default)",
    bundled="mantis-mini",
))
#: Where the published ``mantis-shrimp-v1`` checkpoint can be downloaded: the Git LFS
#: object of ``mantis_shrimp/MODELS_final/best_early.pt`` in the reference repository
#: (https://github.com/pnnl/MantisShrimp), at the commit whose LFS pointer names its
#: SHA-256. ``load_model("mantis-shrimp-v1")`` downloads the 801 MB file from here once
#: into astropy's cache (its size and SHA-256 checked) and reuses it afterwards.
MANTIS_SHRIMP_V1_URL = ("https://media.githubusercontent.com/media/pnnl/MantisShrimp/"
                        "12538d28494ccc834eb1e01309262c7f53cc2e2f/mantis_shrimp/MODELS_final/"
                        "best_early.pt")

register_model(ModelSpec(
    name="mantis-shrimp-v1",
    build=build_mantis_shrimp_v1,
    description="the published Mantis Shrimp model (Engel et al. 2025): ConvNeXt-Large, 200M "
                "parameters; weights from the reference repository's Git LFS",
    size=801_048_832,
    sha256="411536eba11a6733e5632c6a7c7cf9e07c000d68ff929965a9268c56b1c7428e",
    requires=("timm",),
    url=MANTIS_SHRIMP_V1_URL,
))


def available_models():
    """Names of the registered models.

    Returns
    -------
    tuple of str

    Examples
    --------
    >>> from astro_mantis.models import available_models
    >>> available_models()
    ('mantis-mini', 'mantis-shrimp-v1')
    """
    return tuple(_REGISTRY)


def get_spec(name):
    """The `ModelSpec` called ``name``; ValueError listing the known ones otherwise."""
    if isinstance(name, ModelSpec):
        return name
    try:
        return _REGISTRY[str(name).lower()]
    except KeyError:
        known = "; ".join(f"{s.name!r} ({s.description})" for s in _REGISTRY.values())
        raise ValueError(f"unknown model {name!r}; known models: {known}") from None


def select_device(device=None):
    """A `torch.device`: the one asked for, or the best available when None.

    Parameters
    ----------
    device : str, `torch.device` or None
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` ...; None picks CUDA, then MPS,
        then the CPU.

    Raises
    ------
    ValueError
        If the device asked for is not available on this machine.
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA GPU here")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None)
                                     and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' asked for, but MPS is not available here")
    return device


def _default_meta(spec, arch):
    return {"name": spec.name, "architecture": dict(arch), "n_bins": arch.get("n_bins", N_BINS),
            "z_min": Z_MIN, "z_max": Z_MAX, "temperature": 1.0, "trained": False,
            "weights": None, "sha256": None}


def build_model(name, device=None, **kwargs):
    """The architecture of a registered model with fresh random weights (no download).

    Parameters
    ----------
    name : str
        ``"mantis-mini"`` or ``"mantis-shrimp-v1"`` (see `available_models`).
    device : str or `torch.device`, optional
        Where to create the parameters (default CPU). ``"meta"`` builds the structure
        without allocating memory: enough to inspect shapes and count parameters.
    **kwargs
        Architecture options (e.g. ``widths``, ``depths``, ``hidden`` for
        ``mantis-mini``; see `~astro_mantis.models.MantisMini` and
        `~astro_mantis.models.MantisShrimp`).

    Returns
    -------
    `~astro_mantis.models.PhotoZNet`
        In training mode; ``model.meta`` describes it (``trained=False``).

    Examples
    --------
    >>> from astro_mantis.models import build_model
    >>> net = build_model("mantis-mini", widths=(8, 16, 32, 64), depths=(1, 1, 1, 1))
    >>> net.fc1.out_features
    400
    """
    spec = get_spec(name)
    arch = dict(DEFAULT_ARCHITECTURE) if spec.name == "mantis-mini" else {}
    arch.update(kwargs)
    with torch.device(device or "cpu"):
        model = spec.build(**arch)
    config = getattr(model, "config", None) or arch
    model.meta = _default_meta(spec, {k: list(v) if isinstance(v, tuple) else v
                                      for k, v in config.items()})
    return model


def _is_url(text):
    return str(text).lower().startswith(("http://", "https://", "ftp://"))


def _sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path, size=None, sha256=None, what="weights"):
    """Check a file's size and SHA-256 (or a prefix of it).

    Parameters
    ----------
    path : str or path-like
    size : int, optional
        Expected size in bytes (checked first: it is free).
    sha256 : str, optional
        Expected hex digest, or its first characters.
    what : str
        Description used in error messages.

    Returns
    -------
    str
        The file's full SHA-256 hex digest (None when ``sha256`` was not asked for).

    Raises
    ------
    WeightsError
        On a mismatch; the message gives the expected and the actual value.
    """
    path = Path(path)
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise WeightsError(f"{what} {path}: expected {size:,} bytes, got {actual_size:,} "
                           "(a different or incomplete file; pass verify=False to load "
                           "another checkpoint deliberately)")
    if sha256 is None:
        return None
    digest = _sha256(path)
    if not digest.startswith(sha256.lower()):
        raise WeightsError(f"{what} {path}: expected sha256 starting {sha256!r}, got {digest!r} "
                           "(pass verify=False to load another checkpoint deliberately)")
    return digest


def _strip_prefixes(state_dict):
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def _is_safetensors(path):
    """Whether a file is in the safetensors format: an 8-byte little-endian header
    length, then that many bytes of JSON header starting with ``{``."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = Path(path).stat().st_size
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 0 < int.from_bytes(head[:8], "little") <= size - 8


# errors of reading that say nothing about the file's content: passed on as they are
_NOT_A_READ_FAILURE = (FileNotFoundError, IsADirectoryError, PermissionError, MemoryError,
                       getattr(torch, "OutOfMemoryError", MemoryError))


def _unreadable(path, exc):
    """The `WeightsError` for a weights file its reader could not read."""
    import pickle

    # torch's UnpicklingError advises weights_only=False: unsafe for a file of unknown
    # origin, so its text is not repeated here (it stays in the chained exception)
    reason = "" if isinstance(exc, pickle.UnpicklingError) else \
        (": " + (str(exc).strip().splitlines() or [""])[0][:200]).rstrip(": ")
    return WeightsError(
        f"weights file {path} is unreadable or incomplete ({type(exc).__name__}{reason}): "
        "a truncated or corrupted copy, or not a safetensors or PyTorch state_dict file. "
        "It is read without running pickled code (torch.load(weights_only=True)), which "
        "refuses anything but tensors and plain containers: save model.state_dict(), "
        "not the model object")


def read_state_dict(path, device="cpu"):
    """Read a state_dict without executing pickled code, wrapper prefixes removed.

    ``safetensors`` files (told by their content, so that a download cached without
    its name is recognised) are read with ``safetensors.torch.load_file``; anything
    else with ``torch.load(path, weights_only=True, map_location=device)``
    (memory-mapped when the file allows it). A dictionary holding the state_dict under
    ``"state_dict"``, ``"model_state_dict"`` or ``"model"`` is unwrapped, and the
    ``module.`` (``DataParallel``/``DistributedDataParallel``) and ``_orig_mod.``
    (``torch.compile``) prefixes are stripped.

    Returns
    -------
    dict
        Parameter name → `torch.Tensor`.

    Raises
    ------
    WeightsError
        If the file cannot be read (truncated, corrupted, not a weights file, or
        holding pickled objects other than tensors, which ``weights_only=True``
        refuses: save ``model.state_dict()``), the reader's own error chained as its
        ``__cause__``; or if it holds no state_dict.
    FileNotFoundError, PermissionError
        As the operating system raises them.
    """
    path = Path(path)
    device = torch.device(device)
    try:
        if path.suffix == ".safetensors" or _is_safetensors(path):
            from safetensors.torch import load_file

            state = load_file(str(path), device=str(device))
        else:
            try:
                state = torch.load(path, map_location=device, weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                state = torch.load(path, map_location=device, weights_only=True)
    except _NOT_A_READ_FAILURE:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader's own error type, said plainly
        raise _unreadable(path, exc) from exc
    if isinstance(state, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict) and len(state) <= 8:
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise WeightsError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return _strip_prefixes(state)


def load_state_dict(model, state_dict, what="weights"):
    """Load a state_dict with strict key and shape matching and a readable error.

    Parameters
    ----------
    model : `torch.nn.Module`
        Possibly built on the ``meta`` device: tensors are then assigned, not copied.
    state_dict : dict
    what : str
        Description used in error messages.

    Raises
    ------
    WeightsError
        Listing the missing keys, the unexpected keys and the shape mismatches.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)}, model {tuple(v.shape)}"
              for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or shapes:
        def listing(items, n=10):
            more = f" ... and {len(items) - n} more" if len(items) > n else ""
            return ", ".join(items[:n]) + more
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({listing(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({listing(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches ({listing(shapes, 5)})")
        raise WeightsError(f"{what} do not fit the {type(model).__name__} architecture: "
                           + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True, assign=True)
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers())
                if t.is_meta]
    if leftover:
        raise WeightsError(f"{what} left tensors uninitialised: {', '.join(leftover[:10])}")
    return model


def _read_card(path):
    card_path = Path(path).with_suffix(".json")
    if card_path.is_file():
        with open(card_path, encoding="utf-8") as f:
            return json.load(f)
    return {}


def training_prior(model, smoothing=None):
    """The redshift distribution a model was trained on: its PDFs' implicit prior.

    A network trained by cross-entropy on a sample returns posteriors under that sample's
    n(z). Its model card records the histogram of the training redshifts on the model's
    bins (``training_redshifts``, written by `astro_mantis.training.pipeline.fit_and_export`);
    this turns it into a smooth density (`astro_mantis.pdf.redshift_prior`) for
    `astro_mantis.pdf.RedshiftPDF.change_prior`.

    Parameters
    ----------
    model : `torch.nn.Module`, dict or str
        A network with ``meta`` (as `load_model` returns it), a model card (dict), or a
        registry name (its bundled card is read; no weights are loaded).
    smoothing : float, optional
        Kernel width in redshift (default `astro_mantis.pdf.PRIOR_SMOOTHING`).

    Returns
    -------
    `numpy.ndarray`
        float64 density per bin of the model's grid.

    Raises
    ------
    ValueError
        If the card does not record the training redshifts, or records them on other bins
        than the model's.

    Examples
    --------
    >>> from astro_mantis.models import training_prior
    >>> prior = training_prior("mantis-mini")
    >>> prior.shape
    (400,)
    """
    from ..pdf import PRIOR_SMOOTHING, redshift_prior

    if isinstance(model, str):
        spec = get_spec(model)
        meta = _read_card(DATA_DIR / f"{spec.bundled}.json") if spec.bundled else {}
        name = model
    elif isinstance(model, dict):
        meta, name = model, model.get("name", "this model")
    else:
        meta = dict(getattr(model, "meta", {}) or {})
        name = meta.get("name", type(model).__name__)
    record = meta.get("training_redshifts")
    if not record or "counts" not in record:
        raise ValueError(f"the model card of {name!r} does not record its training redshifts "
                         "('training_redshifts'); cards written by fit_and_export since "
                         "0.1 do")
    n_bins = int(meta.get("n_bins", len(record["counts"])))
    if len(record["counts"]) != n_bins:
        raise ValueError(f"the card of {name!r} records {len(record['counts'])} training "
                         f"redshift bins for a model of {n_bins}")
    edges = np.linspace(meta.get("z_min", 0.0), meta.get("z_max", 1.6), n_bins + 1)
    return redshift_prior(counts=record["counts"], edges=edges,
                          smoothing=PRIOR_SMOOTHING if smoothing is None else smoothing)


def load_model(name, weights=None, device="cpu", verify=True):
    """A registered model with trained weights, ready for inference (``eval()`` mode).

    Parameters
    ----------
    name : str
        ``"mantis-mini"`` or ``"mantis-shrimp-v1"``.
    weights : str or path-like, optional
        Local path or URL of the weights. Default: the bundled file for
        ``mantis-mini``; for ``mantis-shrimp-v1`` the published checkpoint
        (``astro_mantis.models.registry.MANTIS_SHRIMP_V1_URL``, 801 MB, in the
        reference repository's Git LFS). URLs are downloaded once into astropy's
        cache, checked, and reused; a download that fails the check is removed from
        the cache. A model card ``<same stem>.json`` next to a file is read when present
        (architecture options, bins, calibration temperature). Without one, a
        ``mantis-mini`` file is loaded into the architecture `build_model` gives
        (`~astro_mantis.models.mini.DEFAULT_ARCHITECTURE`, which takes
        ``panstarrs_exposure="reference"``), with temperature 1 and no PIT map, and a
        ``UserWarning`` says so; a card whose ``architecture`` lacks
        ``panstarrs_exposure`` (written before the setting existed) means ``"stack"``.
    device : str or `torch.device`, optional
        ``"cpu"`` (default), ``"cuda"``, ``"mps"``; None picks the best available.
    verify : bool
        Check the file against the size and SHA-256 the registry or the model card
        know (default True). Pass False to load another checkpoint of the same
        architecture (e.g. one you fine-tuned). Either way the file is hashed and its
        own SHA-256 is recorded in ``model.meta["sha256"]``.

    Returns
    -------
    `~astro_mantis.models.PhotoZNet`
        ``model.meta`` holds the name, bins, calibration ``temperature``, weights path,
        the SHA-256 of the file actually loaded (never a card's or the registry's
        figure copied over: two different files never share it), and the model card
        entries.

    Raises
    ------
    FileNotFoundError
        If the weights file does not exist (for the bundled ``mantis-mini``: the
        weights are not built yet).
    ValueError
        Unknown model name, or no weights given where there is no default.
    WeightsError
        Checksum or size mismatch, keys that do not fit the architecture, or a file
        that cannot be read (truncated, corrupted, not a weights file; see
        `read_state_dict`). A file downloaded from a URL that fails the check or
        cannot be read is removed from astropy's cache.
    """
    spec = get_spec(name)
    device = select_device(device)
    known_size, known_sha = spec.size, spec.sha256
    if weights is None:
        if spec.bundled:
            weights = DATA_DIR / f"{spec.bundled}.safetensors"
            if not weights.is_file():
                raise FileNotFoundError(
                    f"the bundled {spec.name} weights are not built yet ({weights} does not "
                    "exist): they come from the training pipeline (`astro-mantis train`). "
                    f"Use build_model({spec.name!r}) for random weights, or pass weights=...")
        elif spec.url:
            weights = spec.url
        else:
            hint = (f" or weights=astro_mantis.models.registry.MANTIS_SHRIMP_V1_URL to "
                    f"download it once ({MANTIS_SHRIMP_V1_URL})"
                    if spec.name == "mantis-shrimp-v1" else "")
            raise ValueError(
                f"{spec.name} has no default weights location: pass weights= the local path "
                f"of its checkpoint{hint} (published in the reference repository's Git LFS"
                + (f"; {spec.size:,} bytes" if spec.size else "")
                + (f", sha256 {spec.sha256}" if spec.sha256 else "") + ")")
    url = None
    if _is_url(weights):
        from astropy.utils.data import download_file, is_url_in_cache

        url = str(weights)
        if not is_url_in_cache(url, pkgname="astro_mantis"):
            log.info(f"downloading the {spec.name} weights once into astropy's cache"
                     + (f" ({spec.size / 1e6:,.0f} MB)" if spec.size else "") + f": {url}")
        weights = download_file(url, cache=True, pkgname="astro_mantis", show_progress=True)
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"weights file {weights} does not exist")
    card = _read_card(weights)
    if card.get("sha256"):  # the card describes this very file
        known_size, known_sha = card.get("size"), card["sha256"]
    if weights.suffix == ".safetensors" and not card.get("sha256"):
        known_size, known_sha = None, None  # the registry's checksums describe the .pt file

    def forget_download():
        if url is not None:  # a bad download must not stay cached as if it were good
            from astropy.utils.data import clear_download_cache

            clear_download_cache(url, pkgname="astro_mantis")

    # the SHA-256 of the file actually loaded, always (meta["sha256"]: what the table
    # job records and compares when it resumes), computed once and compared with the
    # expected one when verifying (one pass over the file either way). Hashing ran at
    # about 1.6 GB/s on one core of the development machine (SHA extensions; a 100 MB
    # file in 0.065 s from the page cache): 6 ms for the bundled 7.5 MB file, about
    # 0.5 s (extrapolated) for the published 801 MB one
    try:
        digest = None
        if verify and (known_size or known_sha):
            digest = verify_file(weights, known_size, known_sha, what=f"{spec.name} weights")
        if digest is None:
            digest = _sha256(weights)
    except WeightsError:
        forget_download()
        raise
    arch = dict(card.get("architecture", {}))
    if spec.name == "mantis-mini" and not card:
        # no card at all: the network is built as build_model gives it (the only
        # architecture the weights can fit without one), which is said aloud
        warnings.warn(
            f"{spec.name} weights {weights.name} have no model card beside them "
            f"({weights.with_suffix('.json').name}): loaded as build_model({spec.name!r}) "
            f"builds it, the default architecture taking Pan-STARRS counts at the "
            f"reference exposure (panstarrs_exposure="
            f"{DEFAULT_ARCHITECTURE['panstarrs_exposure']!r}), with temperature 1 and no "
            f"PIT recalibration. For weights trained on counts as served set "
            f"model.panstarrs_exposure = 'stack'; save_model writes the card that says it",
            UserWarning, stacklevel=2)
    elif spec.name == "mantis-mini":  # a card from before the setting: the published recipe
        arch.setdefault("panstarrs_exposure", "stack")
    model = build_model(spec.name, device="meta", **arch)
    try:
        state = read_state_dict(weights, device=device)
    except WeightsError:  # unreadable (e.g. a download cut short with no size announced)
        forget_download()
        raise
    load_state_dict(model, state, what=f"{spec.name} weights {weights.name}")
    model = model.to(device).eval()
    meta = model.meta
    meta.update({k: v for k, v in card.items() if k != "architecture"})
    meta.update(trained=True, weights=str(weights), sha256=digest)
    return model


def save_model(model, path, card=None):
    """Write weights as ``safetensors`` and their model card as JSON, side by side.

    This is the bundled-weights convention: ``<stem>.safetensors`` and ``<stem>.json``
    (``load_model("mantis-mini", weights="<stem>.safetensors")`` reads both back).

    Parameters
    ----------
    model : `~astro_mantis.models.PhotoZNet`
        Its ``meta["architecture"]`` (set by `build_model`) goes into the card.
    path : str or path-like
        Weights file name; ``.safetensors`` is appended when missing.
    card : dict, optional
        Model card entries: training data, command, seed, metrics, calibration
        ``temperature``, limits ... (JSON-serialisable).

    Returns
    -------
    weights_path, card_path : `pathlib.Path`
    """
    from safetensors.torch import save_file

    from ..atomic import atomic_open, atomic_path

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    meta = dict(getattr(model, "meta", {}) or {})
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"name": str(meta.get("name", ""))})
    out = {"name": meta.get("name"), "architecture": meta.get("architecture", {}),
           "n_bins": meta.get("n_bins", N_BINS), "z_min": meta.get("z_min", Z_MIN),
           "z_max": meta.get("z_max", Z_MAX), "temperature": meta.get("temperature", 1.0)}
    out.update(card or {})
    out.update(size=os.path.getsize(path), sha256=_sha256(path))
    card_path = path.with_suffix(".json")
    with atomic_open(card_path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")
    return path, card_path


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
