# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Export a trained network: ``safetensors`` weights plus a JSON model card.

`~astro_mantis.training.export.export_model` writes ``<name>.safetensors`` (the state dict; loading
it executes no code) and ``<name>.json``, the model card: what the network is (registry name and
build arguments, input and output contract, bin edges), how it was trained (data manifest summary,
command, seed, epochs, schedule), how well it does (metrics on the validation and test splits), its
calibration (the softmax temperature) and the size and SHA-256 of the weights file, which
`~astro_mantis.training.export.verify_export` (and ``astro_mantis.models.load_model``) check. The
files follow the registry's convention (``astro_mantis.models.save_model``); the bundled model is
such a pair in ``astro_mantis/data/``.
"""
import datetime
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..pdf import Z_EDGES

__all__ = ["export_model", "read_model_card", "verify_export", "sha256_file", "ExportResult",
           "CARD_VERSION"]

#: Version of the model-card layout written by `~astro_mantis.training.export.export_model`.
CARD_VERSION = 1

#: Input channels of the early-fused tensor, in order.
CHANNELS = ("NUV", "FUV", "g", "r", "i", "z", "y", "W1", "W2")


def sha256_file(path, chunk=1 << 20):
    """SHA-256 hex digest of a file.

    Parameters
    ----------
    path : str or path-like
        The file.
    chunk : int
        Read size in bytes.

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _jsonable(value):
    """Convert numpy/torch scalars and arrays (recursively) to JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class ExportResult:
    """Paths and card of an exported model.

    Attributes
    ----------
    weights_path : `pathlib.Path`
        The ``.safetensors`` file.
    card_path : `pathlib.Path`
        The ``.json`` model card.
    card : dict
        The card's content.
    """

    weights_path: Path
    card_path: Path
    card: dict


def export_model(model, directory, name="mantis-mini", *, model_kwargs=None, temperature=1.0,
                 calibration=None, metrics=None, training=None, data=None, command=None,
                 seed=None, epochs=None, extra=None):
    """Write a trained network as ``safetensors`` weights and a JSON model card.

    The pair follows the registry's convention (``astro_mantis.models.save_model``), so
    ``load_model(registry_name, weights="<directory>/<name>.safetensors")`` rebuilds the
    architecture from the card, checks the file's size and SHA-256 against it and
    applies the calibration temperature.

    Parameters
    ----------
    model : `torch.nn.Module`
        The network; a model of ``astro_mantis.models.build_model`` carries its
        registry name and build arguments in ``model.meta``.
    directory : str or path-like
        Output directory (created if needed); the files are ``<name>.safetensors`` and
        ``<name>.json`` (existing files are replaced).
    name : str
        Name of the exported model (file stem and the card's ``name``).
    model_kwargs : dict, optional
        Build arguments, for a model without ``meta["architecture"]``.
    temperature : float
        Softmax temperature of the calibration
        (`~astro_mantis.training.calibration.TemperatureCalibration`); 1 for none.
    calibration : dict, optional
        The calibration's details (``TemperatureCalibration.to_dict()``).
    metrics : dict, optional
        Metrics per split, e.g. ``{"validation": {...}, "test": {...}}``.
    training : dict, optional
        Training settings and outcome (the ``config`` of `~astro_mantis.training.loop.train`, best
        epoch, ...).
    data : dict, optional
        Summary of the training data (`astro_mantis.training.loop.manifest_summary`).
    command : str, optional
        The command line that produced the model.
    seed : int, optional
        The training seed.
    epochs : int, optional
        Number of epochs trained.
    extra : dict, optional
        More card entries (merged last).

    Returns
    -------
    `~astro_mantis.training.export.ExportResult`
        The card includes ``name``, ``model`` (registry name), ``architecture`` (build
        arguments), ``n_bins``, ``z_min``, ``z_max``, ``bin_edges``, ``temperature``,
        ``calibration``, ``metrics``, ``training``, ``data``, ``command``, ``seed``,
        ``epochs``, ``n_parameters``, ``package_version``, ``torch_version``,
        ``created``, and the weights file's ``size`` (bytes) and ``sha256``.
    """
    from .._version import __version__
    from ..models import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = dict(getattr(model, "meta", None) or {})
    architecture = meta.get("architecture") or dict(model_kwargs or {})
    card = {
        "card_version": CARD_VERSION,
        "name": name,
        "model": meta.get("name") or type(model).__name__,
        "architecture": architecture,
        "weights_format": "safetensors",
        "n_parameters": sum(int(p.numel()) for p in model.parameters()),
        "input": {"x": [len(CHANNELS), 120, 120], "channels": list(CHANNELS),
                  "dust": ["ebv_csfd", "ebv_planck"], "fusion": "early_fusion"},
        "output": {"logits": len(Z_EDGES) - 1,
                   "pdf": ("softmax(logits / temperature), then the CDF remapped through "
                           "calibration['pit_map'] when present")},
        "n_bins": len(Z_EDGES) - 1,
        "z_min": float(Z_EDGES[0]),
        "z_max": float(Z_EDGES[-1]),
        "bin_edges": [float(v) for v in Z_EDGES],
        "temperature": float(temperature),
        "calibration": calibration or {"method": "none", "temperature": float(temperature)},
        "metrics": metrics or {},
        "training": training or {},
        "data": data or {},
        "command": command,
        "seed": seed,
        "epochs": epochs,
        "package_version": __version__,
        "torch_version": str(torch.__version__),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        card.update(extra)
    card = _jsonable(card)
    json.dumps(card, allow_nan=False)  # fail before writing anything
    weights_path, card_path = save_model(model, directory / f"{name}.safetensors", card=card)
    return ExportResult(weights_path=Path(weights_path), card_path=Path(card_path),
                        card=read_model_card(card_path))


def read_model_card(path):
    """Read a model card written by `~astro_mantis.training.export.export_model`.

    Parameters
    ----------
    path : str or path-like
        The ``.json`` card, or the ``.safetensors`` file next to it.

    Returns
    -------
    dict
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        path = path.with_suffix(".json")
    return json.loads(path.read_text())


def verify_export(weights_path, card_path=None):
    """Check an exported model: checksum, size and loadable tensors.

    Parameters
    ----------
    weights_path : str or path-like
        The ``.safetensors`` file.
    card_path : str or path-like, optional
        Its model card (default: the ``.json`` file of the same name).

    Returns
    -------
    state : dict
        The weights as a state dict of tensors (loaded without executing code).

    Raises
    ------
    ValueError
        If the file's size or SHA-256 differs from the card's.
    """
    from safetensors.torch import load_file

    weights_path = Path(weights_path)
    card = read_model_card(card_path or weights_path.with_suffix(".json"))
    size = weights_path.stat().st_size
    if size != card["size"]:
        raise ValueError(f"{weights_path} has {size} bytes, the card says {card['size']}")
    digest = sha256_file(weights_path)
    if digest != card["sha256"]:
        raise ValueError(f"{weights_path} has SHA-256 {digest}, the card says "
                         f"{card['sha256']}")
    return load_file(str(weights_path))
