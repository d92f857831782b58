# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The training loop: AdamW, warm-up + cosine schedule, checkpoints and exact resume.

`~astro_mantis.training.loop.train` fits a network of the ``astro_mantis.models`` registry (or any
module with the same ``forward(x, dust) -> logits`` contract) to the shards of a training data
directory, minimising the cross-entropy over the 400 redshift bins. Each epoch it evaluates the
validation split, appends a line to ``metrics.jsonl`` and writes a full-state checkpoint, from which
``resume=True`` continues bit for bit; it stops early when the validation CDE loss has not improved
for ``patience`` epochs.
"""
import json
import math
import os
import random
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..atomic import atomic_open, atomic_path
from ..fusion.exposure import model_panstarrs_exposure
from ..logger import log
from ..pdf import Z_EDGES
from ..progress import progress_enabled
from .calibration import TemperatureCalibration, calibration_summary, tta_calibration
from .data import (SPLITS, ConcatDataset, EpochSampler, FusedDataset, ShardDataset,
                   balanced_weights, check_zero_point_jitter, list_shards, soft_targets,
                   z_to_bin)

__all__ = [
    "train",
    "TrainingConfig",
    "TrainResult",
    "TrainingData",
    "WarmupCosine",
    "bin_cross_entropy",
    "collect_logits",
    "calibrate_model",
    "calibrate_tta",
    "evaluate",
    "epoch_metrics",
    "manifest_summary",
    "model_exposure",
    "seed_everything",
    "resolve_device",
    "load_checkpoint",
    "CHECKPOINT_NAME",
    "BEST_NAME",
    "METRICS_NAME",
]

#: File name of the full-state checkpoint written after every epoch.
CHECKPOINT_NAME = "checkpoint.pt"
#: File name of the weights of the best epoch (lowest validation CDE loss).
BEST_NAME = "best_model.pt"
#: File name of the per-epoch metrics log (JSON lines).
METRICS_NAME = "metrics.jsonl"

# Settings that must not change when a run is resumed (they shape the result).
# "amp" and "amp_dtype" are the precision the run has (autocast where the device supports
# it); "resident" picks the augmentation's draws (per batch on the device, not per item).
_RESUME_FIXED = ("model", "model_kwargs", "batch_size", "lr", "weight_decay", "warmup_epochs",
                 "seed", "smoothing_sigma", "balanced", "augment", "epochs", "n_train",
                 "min_delta", "grad_clip", "zero_point_jitter", "cache_dtype", "amp",
                 "amp_dtype", "resident", "data_identity")
# What a checkpoint that predates a setting ran with (so it still resumes).
_RESUME_DEFAULTS = {"zero_point_jitter": 0.0, "cache_dtype": "float16", "resident": False}


# ------------------------------------------------------------------------- helpers
def seed_everything(seed):
    """Seed Python's, NumPy's and PyTorch's (CPU and CUDA) global random generators.

    Parameters
    ----------
    seed : int
        The seed.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device="auto"):
    """Turn a device name into a `torch.device`.

    Parameters
    ----------
    device : str or `torch.device`
        ``"auto"`` picks CUDA when available, then Apple MPS, else the CPU; any other
        value is passed to `torch.device`.

    Returns
    -------
    `torch.device`
    """
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


class WarmupCosine:
    """Learning-rate factor: linear warm-up, then cosine decay to ``final``.

    Used as the ``lr_lambda`` of `torch.optim.lr_scheduler.LambdaLR`, stepped once per
    optimiser step.

    Parameters
    ----------
    total_steps : int
        Number of optimiser steps of the whole run.
    warmup_steps : int
        Steps of the linear warm-up from ``1 / (warmup_steps + 1)`` to 1.
    final : float
        Factor reached at the last step.
    """

    def __init__(self, total_steps, warmup_steps, final=0.01):
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = max(min(int(warmup_steps), self.total_steps - 1), 0)
        self.final = float(final)

    def __call__(self, step):
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(self.total_steps - self.warmup_steps, 1)
        t = min((step - self.warmup_steps) / span, 1.0)
        return self.final + (1.0 - self.final) * 0.5 * (1.0 + math.cos(math.pi * t))


def bin_cross_entropy(logits, z, smoothing_sigma=0.0, edges=None):
    """Cross-entropy of bin logits against the true redshifts.

    Parameters
    ----------
    logits : `torch.Tensor`
        Shape ``(N, nbins)``.
    z : `torch.Tensor`
        True redshifts, shape ``(N,)``.
    smoothing_sigma : float
        0 for hard targets (the bin holding ``z``); otherwise the width, in bins, of the
        Gaussian soft targets (`astro_mantis.training.data.soft_targets`).
    edges : array-like, optional
        Bin edges (default `astro_mantis.pdf.Z_EDGES`).

    Returns
    -------
    loss : `torch.Tensor`
        The mean over the batch (a scalar).
    """
    logits = logits.float()
    if smoothing_sigma and smoothing_sigma > 0:
        target = soft_targets(z, smoothing_sigma, edges).to(logits.device)
        return -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    return torch.nn.functional.cross_entropy(logits, z_to_bin(z, edges).to(logits.device))


def epoch_metrics(logits, z, temperature=1.0, edges=None):
    """The per-epoch validation metrics, computed from logits.

    Parameters
    ----------
    logits : `numpy.ndarray`
        Shape ``(N, nbins)``.
    z : `numpy.ndarray`
        True redshifts.
    temperature : float
        Softmax temperature.
    edges : array-like, optional
        Bin edges (default `astro_mantis.pdf.Z_EDGES`).

    Returns
    -------
    dict
        ``loss`` (mean negative log-likelihood of the true bin, i.e. the hard-target
        cross-entropy), ``cde_loss`` (Izbicki & Lee 2017: mean of ``∫ p(z)^2 dz - 2
        p(z_true)`` for the histogram density; lower is better), ``nmad``
        (``1.4826 * median(|dz - median(dz)|)``, ``dz = (z_mean - z) / (1 + z)``, the
        point estimate being the PDF mean), ``outlier_frac`` (``|dz| > 0.15``),
        ``outlier_frac_005`` (``|dz| > 0.05``), ``bias`` (mean ``dz``).
    """
    edges = Z_EDGES if edges is None else np.asarray(edges, dtype=np.float64)
    widths = np.diff(edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    z = np.asarray(z, dtype=np.float64)
    x = np.asarray(logits, dtype=np.float64) / float(temperature)
    x = x - x.max(axis=1, keepdims=True)
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    k = z_to_bin(z, edges)
    inside = (z >= edges[0]) & (z < edges[-1])
    rows = np.arange(len(z))
    dens_true = np.where(inside, p[rows, k] / widths[k], 0.0)
    cde = np.mean(np.sum(p * p / widths, axis=1) - 2.0 * dens_true)
    zmean = p @ centres
    dz = (zmean - z) / (1.0 + z)
    return {
        "loss": float(-np.mean(logp[rows, k])),
        "cde_loss": float(cde),
        "nmad": float(1.4826 * np.median(np.abs(dz - np.median(dz)))),
        "outlier_frac": float(np.mean(np.abs(dz) > 0.15)),
        "outlier_frac_005": float(np.mean(np.abs(dz) > 0.05)),
        "bias": float(np.mean(dz)),
    }


@torch.inference_mode()
def collect_logits(model, dataset, batch_size=128, device="cpu", num_workers=0, progress=None,
                   desc="evaluating", tta=False, temperature=1.0):
    """Run a model over a dataset (no augmentation) and gather its logits.

    Parameters
    ----------
    model : `torch.nn.Module`
        Network with ``forward(x, dust) -> logits``.
    dataset : `~astro_mantis.training.data.FusedDataset`
        The data; its augmentation is switched off for the call.
    batch_size : int
        Batch size.
    device : str or `torch.device`
        Where to run.
    num_workers : int
        Data-loader worker processes.
    progress : bool, optional
        Show a progress bar (default: on a terminal).
    desc : str
        Label of the progress bar.
    tta : bool
        Instead of logits, gather the log of the average of ``softmax(logits /
        temperature)`` over the 8 flips and rotations
        (`astro_mantis.models.dihedral_transforms`), the average
        `astro_mantis.models.predict` makes with ``tta=True``: their softmax at
        temperature 1 is that average. Eight passes.
    temperature : float
        Softmax temperature of each pass (only with ``tta``).

    Returns
    -------
    logits : `numpy.ndarray`
        float32 ``(N, nbins)``, in dataset order (with ``tta``, log-probabilities).
    z : `numpy.ndarray`
        float64 ``(N,)``, the true redshifts.
    """
    from tqdm.auto import tqdm

    from ..models import dihedral_transforms, tta_probabilities

    device = resolve_device(device)
    transforms = dihedral_transforms() if tta else None
    was_training = model.training
    saved = dataset.augment
    dataset.augment = False
    model.eval()
    try:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                            num_workers=num_workers, pin_memory=device.type == "cuda")
        outs, zs = [], []
        for x, dust, z in tqdm(loader, desc=desc, disable=not progress_enabled(progress),
                               leave=False):
            x, dust = x.to(device, non_blocking=True), dust.to(device, non_blocking=True)
            if tta:
                probs = tta_probabilities(model, x, dust, temperature, transforms)
                out = torch.log(probs.clamp_min(torch.finfo(torch.float32).tiny))
            else:
                out = model(x, dust)
            outs.append(out.float().cpu().numpy())
            zs.append(z.numpy())
    finally:
        dataset.augment = saved
        model.train(was_training)
    if not outs:
        return np.zeros((0, len(Z_EDGES) - 1), np.float32), np.zeros(0)
    return np.concatenate(outs), np.concatenate(zs)


def evaluate(model, dataset, temperature=1.0, batch_size=128, device="cpu", num_workers=0,
             progress=None, desc="evaluating"):
    """Metrics of a model on a dataset (no augmentation).

    Parameters
    ----------
    model : `torch.nn.Module`
        The network.
    dataset : `~astro_mantis.training.data.FusedDataset`
        The data (e.g. the validation or test split).
    temperature : float
        Softmax temperature of the calibration.
    batch_size, device, num_workers, progress, desc
        As for `~astro_mantis.training.loop.collect_logits`.

    Returns
    -------
    dict
        The entries of `~astro_mantis.training.loop.epoch_metrics` and of
        `~astro_mantis.training.calibration.calibration_summary` (``n``, ``nll``,
        ``pit_ks``, ``coverage68``, ``coverage95``), plus ``temperature``.
    """
    logits, z = collect_logits(model, dataset, batch_size=batch_size, device=device,
                               num_workers=num_workers, progress=progress, desc=desc)
    out = {"temperature": float(temperature)}
    out.update(epoch_metrics(logits, z, temperature))
    out.update(calibration_summary(logits, z, temperature))
    return out


# ------------------------------------------------------------------------- data
@dataclass
class TrainingData:
    """The splits a run trains and validates on (and optionally tests on).

    Parameters
    ----------
    train, validation : `~astro_mantis.training.data.FusedDataset`
        Training and validation datasets.
    test : `~astro_mantis.training.data.FusedDataset`, optional
        Held-out test set (only evaluated after training, never used for choices).
    manifest : dict
        Summary of where the data came from (goes into the model card).
    panstarrs_exposure : {"stack", "reference"}, optional
        How the PS1 counts were fused (`astro_mantis.fusion.exposure`); `train` refuses a
        network that takes the other. None (datasets made by hand): not checked.
    """

    train: FusedDataset
    validation: FusedDataset
    test: FusedDataset = None
    manifest: dict = field(default_factory=dict)
    panstarrs_exposure: str = None

    @classmethod
    def from_directory(cls, directory, cache_dir=None, cache_dtype="float16", in_memory=False,
                       progress=None, workers=1, panstarrs_exposure="stack"):
        """Open the splits of a training data directory (or of several).

        Each split is a `~astro_mantis.training.data.ShardDataset`; with several directories,
        a `~astro_mantis.training.data.ConcatDataset` of the directories that have it (e.g.
        training data rendered in several runs, and validation and test sets made apart).

        Parameters
        ----------
        directory : str, path-like or list of them
            Directory written by ``astro_mantis.simulate.dataset.make_dataset`` (or any
            directory of shards in its format with a ``manifest.json``), or several.
        cache_dir : str or path-like, optional
            Where the fused cache goes (default ``<directory>/fused_cache`` of each).
        cache_dtype : {"float16", "float32"}
            Storage type of the cached inputs.
        in_memory : bool
            Hold the fused splits in memory instead of memory-mapping them.
        progress : bool, optional
            Show progress bars while fusing (default: on a terminal).
        workers : int
            Processes fusing uncached shards in parallel.
        panstarrs_exposure : {"stack", "reference"}
            How the PS1 counts are fused: as the network to be trained takes them (its
            ``panstarrs_exposure``, see `~astro_mantis.training.data.ShardDataset`).

        Returns
        -------
        `~astro_mantis.training.loop.TrainingData`
            ``test`` is None when no directory has test shards.

        Raises
        ------
        FileNotFoundError
            If a directory does not exist or has no ``manifest.json``, a shard its
            manifest lists is missing, or no directory has training or validation shards.
        """
        dirs = [Path(d) for d in directory] if isinstance(directory, (list, tuple)) \
            else [Path(directory)]
        for d in dirs:
            if not d.is_dir():
                raise FileNotFoundError(f"training data directory {str(d)!r} does not exist")
        kw = dict(cache_dir=cache_dir, cache_dtype=cache_dtype, in_memory=in_memory,
                  progress=progress, workers=workers, panstarrs_exposure=panstarrs_exposure)
        splits = {}
        for name in SPLITS:
            parts = []
            for d in dirs:
                if not list_shards(d, name):  # a missing manifest or shard raises here
                    continue
                parts.append(ShardDataset(d, name, **kw))
            if not parts and name != "test":
                raise FileNotFoundError(f"no {name!r} shards in {', '.join(map(str, dirs))}")
            splits[name] = None if not parts else parts[0] if len(parts) == 1 \
                else ConcatDataset(parts)
        manifest = manifest_summary(dirs[0]) if len(dirs) == 1 else \
            {"runs": [manifest_summary(d) for d in dirs]}
        return cls(train=splits["train"], validation=splits["validation"],
                   test=splits["test"], manifest=manifest, panstarrs_exposure=panstarrs_exposure)


def manifest_summary(directory):
    """A compact summary of a data directory's ``manifest.json`` for logs and model cards.

    Parameters
    ----------
    directory : str or path-like
        The data directory.

    Returns
    -------
    dict
        The manifest's entries except the catalog column descriptions (``columns``),
        with lists of more than 20 items (per-shard listings) replaced by their length,
        plus ``path`` (as given) and the ``manifest_sha256`` of the manifest file;
        ``{"path": ...}`` alone when there is no manifest.
    """
    import hashlib

    directory = Path(directory)
    path = directory / "manifest.json"
    out = {"path": str(directory)}
    if not path.exists():
        return out
    raw = path.read_bytes()
    out["manifest_sha256"] = hashlib.sha256(raw).hexdigest()

    def squeeze(v):
        if isinstance(v, dict):
            return {k: squeeze(w) for k, w in v.items()}
        if isinstance(v, list) and len(v) > 20:
            return f"<{len(v)} items>"
        if isinstance(v, list):
            return [squeeze(w) for w in v]
        return v

    try:
        manifest = json.loads(raw)
    except ValueError:
        return out
    manifest.pop("columns", None)
    out.update(squeeze(manifest))
    return out


# ------------------------------------------------------------------------- result
@dataclass
class TrainResult:
    """What `~astro_mantis.training.loop.train` returns.

    Attributes
    ----------
    model : `torch.nn.Module`
        The network with the weights of the best epoch (lowest validation CDE loss), in
        evaluation mode, on the training device.
    history : list of dict
        One entry per epoch, as written to ``metrics.jsonl``.
    best_epoch : int
        One-based number of the best epoch (0 if no epoch ran).
    best_metric : float
        Validation CDE loss of the best epoch.
    epochs_run : int
        Epochs completed in total (over all resumed runs).
    stopped : str
        Why training ended: ``"completed"``, ``"early stopping"``, ``"time budget"`` or
        ``"stop_after"``.
    out_dir : `pathlib.Path`
        Directory holding the checkpoint, best weights and metrics log.
    config : dict
        The settings of the run (also stored in the checkpoint).
    """

    model: torch.nn.Module
    history: list
    best_epoch: int
    best_metric: float
    epochs_run: int
    stopped: str
    out_dir: Path
    config: dict

    @property
    def checkpoint_path(self):
        """Path of the last full-state checkpoint."""
        return self.out_dir / CHECKPOINT_NAME

    @property
    def metrics_path(self):
        """Path of the per-epoch metrics log."""
        return self.out_dir / METRICS_NAME


# ------------------------------------------------------------------------- checkpoints
def _rng_state():
    np_state = np.random.get_state(legacy=False)
    return {
        "python": list(random.getstate()[1]) + [random.getstate()[0],
                                                random.getstate()[2]],
        "numpy": {"key": torch.from_numpy(np.asarray(np_state["state"]["key"], np.int64)),
                  "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state):
    py = state["python"]
    random.setstate((py[-2], tuple(int(v) for v in py[:-2]), py[-1]))
    s = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": s["key"].numpy().astype(np.uint32), "pos": s["pos"]},
                         "has_gauss": s["has_gauss"], "gauss": s["gauss"]})
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj, path):
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path, map_location="cpu"):
    """Read a checkpoint written by `~astro_mantis.training.loop.train` (no pickled code runs).

    Parameters
    ----------
    path : str or path-like
        ``checkpoint.pt`` (full state) or ``best_model.pt`` (weights).
    map_location : str or `torch.device`
        Passed to `torch.load`.

    Returns
    -------
    dict
        A full-state checkpoint holds ``model``, ``optimizer``, ``scheduler``,
        ``scaler``, ``epoch`` (epochs completed), ``rng``, ``best_metric``,
        ``best_epoch``, ``bad_epochs``, ``history``, ``config`` and ``stopped``.
    """
    return torch.load(path, map_location=map_location, weights_only=True)


def _write_history(out_dir, history):
    with atomic_open(out_dir / METRICS_NAME, "w") as fh:
        for row in history:
            fh.write(json.dumps(row) + "\n")


def _build(model, model_kwargs):
    if isinstance(model, torch.nn.Module):
        name = (getattr(model, "meta", None) or {}).get("name") or type(model).__name__
        return model, str(name)
    from ..models import build_model

    return build_model(str(model), **(model_kwargs or {})), str(model)


# ------------------------------------------------------------------------- train
#: The settings `train` accepted by position before `TrainingConfig`, in that order.
_POSITIONAL = ("epochs", "batch_size", "lr", "weight_decay", "seed", "device", "amp", "patience",
               "smoothing_sigma", "balanced", "max_minutes", "progress")


@dataclass
class TrainingConfig:
    """How `train` trains: every setting but the model, the data and the output folder.

    Pass one to ``train(model, data, out_dir, config=...)``, or give any of its fields
    to `train` by name (``train(model, data, out_dir, epochs=10)``), as before.

    Attributes
    ----------
    epochs : int
        Length of the run; the cosine schedule spans this many epochs.
    batch_size : int
        Training batch size (the last incomplete batch is dropped).
    lr : float
        Peak learning rate of AdamW.
    weight_decay : float
        AdamW weight decay (decoupled); not applied to biases and normalisation weights
        (parameters with fewer than 2 dimensions).
    seed : int
        Seed of the weights' initialisation (for a model given by name), the sample
        order, the augmentation and dropout.
    device : str or `torch.device`
        ``"auto"`` (CUDA, else MPS, else CPU), ``"cpu"``, ``"cuda"``, ...
    amp : bool
        Mixed precision. On CUDA: bfloat16 where supported, else float16 with loss
        scaling. On a CPU with native bfloat16 (AVX512-BF16 or AMX-BF16, see
        `~astro_mantis.models.precision.native_precisions`): bfloat16 autocast, about
        2.3 times the float32 rate of ``mantis-mini``'s training steps. Ignored
        elsewhere (full float32). The checkpoint records the type used.
    patience : int or None
        Stop when the validation CDE loss has not improved by more than ``min_delta`` for
        this many epochs; None or 0 disables early stopping.
    smoothing_sigma : float
        Width in bins of Gaussian-smoothed targets; 0 for hard targets.
    balanced : bool
        Draw training samples with inverse-n(z) weights
        (`~astro_mantis.training.data.balanced_weights`) instead of shuffling.
    max_minutes : float, optional
        Time budget, counted from the start of this call (fusing the data into the
        cache included, when ``data`` is a directory): no new epoch starts when the time
        so far plus the mean duration of the last three epochs would exceed it. The
        result then depends on the machine's speed; the checkpoint allows continuing
        with ``resume=True``.
    progress : bool, optional
        Show a progress bar (default: on a terminal).
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` when it exists: model, optimiser,
        scheduler, loss scaler, random generators, early-stopping state and history are
        restored, so an interrupted run ends with the same weights as an uninterrupted
        one (on the same hardware and software, with deterministic algorithms).
    overwrite : bool
        Start afresh even if ``out_dir`` holds a checkpoint (without ``resume`` or
        ``overwrite`` an existing checkpoint is an error).
    warmup_epochs : float
        Length of the linear learning-rate warm-up, in epochs.
    min_delta : float
        Smallest decrease of the validation CDE loss that counts as an improvement.
    augment : bool
        Random rotations, flips and ±2 px shifts of the training inputs.
    zero_point_jitter : float
        With ``augment``, also a random calibration error per band and item, uniform in
        ``[-zero_point_jitter, zero_point_jitter]`` mag
        (`~astro_mantis.training.data.jitter_zero_points`), so that the network cannot lean
        on colours more exact than the surveys' zero points. 0 (the default) is off.
    grad_clip : float, optional
        Clip the gradients' global norm to this value.
    num_workers : int
        Data-loader worker processes (0 loads in the main process).
    model_kwargs : dict, optional
        Keyword arguments of ``build_model`` (e.g. a width); stored in the checkpoint.
    cache_dir : str or path-like, optional
        Fused-input cache directory (default ``out_dir/fused_cache``).
    cache_dtype : {"float16", "float32"}
        Storage type of the fused cache.
    deterministic : bool
        Ask PyTorch for deterministic algorithms (`torch.use_deterministic_algorithms`
        with ``warn_only=True``; cuDNN benchmarking off).
    stop_after : int, optional
        End this call after this many epochs (the checkpoint allows resuming), e.g. to
        split a long run into jobs; the schedule still spans ``epochs``.
    eval_batch_size : int, optional
        Batch size for validation (default ``2 * batch_size``).
    callbacks : sequence of callable, optional
        Called after every epoch as ``callback(epoch, net)``; a dict they return is
        merged into that epoch's line of ``metrics.jsonl`` (e.g.
        `astro_mantis.explain.SpectralMonitor`, which ``astro-mantis train --spectra``
        uses).
    resident : bool
        Hold the whole training split in the device's memory and augment it there
        (`~astro_mantis.training.resident.ResidentBatches`): the fast path on a GPU, where
        data-loader workers cannot keep up. Needs float16 device memory of 259 kB per item.
    workers : int
        Processes fusing the shards not yet in the fused cache (default 1).
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    device: object = "auto"
    amp: bool = True
    patience: object = 5
    smoothing_sigma: float = 0.0
    balanced: bool = False
    max_minutes: object = None
    progress: object = None
    resume: bool = False
    overwrite: bool = False
    warmup_epochs: float = 1.0
    min_delta: float = 0.0
    augment: bool = True
    zero_point_jitter: float = 0.0
    grad_clip: object = None
    num_workers: int = 0
    model_kwargs: object = None
    cache_dir: object = None
    cache_dtype: str = "float16"
    deterministic: bool = True
    stop_after: object = None
    eval_batch_size: object = None
    callbacks: object = None
    resident: bool = False
    workers: int = 1

    @classmethod
    def from_arguments(cls, config=None, args=(), settings=None):
        """A config from a base ``config`` and `train`'s positional and keyword settings.

        Parameters
        ----------
        config : `TrainingConfig`, optional
            The base (default: every field at its default).
        args : sequence
            Values of ``epochs``, ``batch_size``, ``lr``, ... by position (the order of
            `train`'s parameters before this class existed).
        settings : dict, optional
            Fields by name; they override ``config`` and ``args``.

        Returns
        -------
        `TrainingConfig`

        Raises
        ------
        TypeError
            For an unknown setting, a setting given twice, too many positional values,
            or a ``config`` that is not a `TrainingConfig`.
        """
        if config is None:
            config = cls()
        if not isinstance(config, cls):
            raise TypeError(f"config must be a TrainingConfig, got {type(config).__name__}")
        settings = dict(settings or {})
        if len(args) > len(_POSITIONAL):
            raise TypeError(f"train() takes at most {len(_POSITIONAL) + 3} positional "
                            f"arguments ({len(args) + 3} given)")
        for name, value in zip(_POSITIONAL, args):
            if name in settings:
                raise TypeError(f"train() got multiple values for argument {name!r}")
            settings[name] = value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TypeError(f"train() got unexpected keyword argument(s) {unknown}; the "
                            f"settings are those of TrainingConfig: {', '.join(sorted(known))}")
        return replace(config, **settings)


def train(model, train_dir, out_dir, *args, config=None, **settings):
    """Train a redshift network on a training data directory.

    Parameters
    ----------
    model : str or `torch.nn.Module`
        A name of the ``astro_mantis.models`` registry (built with
        ``build_model(model, **model_kwargs)`` after seeding), or a module with
        ``forward(x, dust) -> logits`` over the 400 bins.
    train_dir : str, path-like, list of them, or `~astro_mantis.training.loop.TrainingData`
        Data directory of training shards (`astro_mantis.shards`, e.g. written by
        ``astro_mantis.simulate.dataset.make_dataset``; its ``train`` and ``validation``
        shards are used), several of them (each split is gathered from every directory
        that has it), or the datasets themselves.
    out_dir : str or path-like
        Where ``checkpoint.pt``, ``best_model.pt``, ``metrics.jsonl`` and the fused
        cache (``fused_cache/``, unless ``cache_dir`` is given) go.
    *args
        ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``seed``, ``device``,
        ``amp``, ``patience``, ``smoothing_sigma``, ``balanced``, ``max_minutes``,
        ``progress`` by position, as before
        `~astro_mantis.training.loop.TrainingConfig` gathered them.
    config : `~astro_mantis.training.loop.TrainingConfig`, optional
        The settings (default: `~astro_mantis.training.loop.TrainingConfig` at its
        defaults: 30 epochs, batch size 64, peak learning rate 2e-3, ...).
    **settings
        Any field of `~astro_mantis.training.loop.TrainingConfig` by name (``epochs=``,
        ``resume=``, ``resident=``, ...), overriding ``config``; see that class for
        what each does.

    Returns
    -------
    `~astro_mantis.training.loop.TrainResult`
        The model with the best epoch's weights, the history and why training ended.

    Raises
    ------
    FileExistsError
        If ``out_dir`` holds a checkpoint and neither ``resume`` nor ``overwrite`` is set.
    ValueError
        If a resumed run's settings differ from the checkpoint's in a way that changes
        the result (batch size, learning rate, seed, mixed precision, ``resident``,
        ...); for ``resume`` together with
        ``overwrite``, ``zero_point_jitter`` without ``augment``, a negative
        ``num_workers`` or ``workers`` below 1.
    TypeError
        For a setting `~astro_mantis.training.loop.TrainingConfig` does not have.
    """
    cfg = TrainingConfig.from_arguments(config, args, settings)
    cfg = replace(cfg, zero_point_jitter=check_zero_point_jitter(cfg.zero_point_jitter))
    _check_settings(cfg)
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT_NAME
    if ckpt_path.exists() and not (cfg.resume or cfg.overwrite):
        raise FileExistsError(f"{str(ckpt_path)!r} exists: pass resume=True to continue that "
                              "run or overwrite=True to start afresh")
    dev = resolve_device(cfg.device)
    with _deterministic_mode(cfg.deterministic, dev):
        data = _training_data(train_dir, out_dir, cfg, model_exposure(model, cfg.model_kwargs))
        train_ds, val_ds = data.train, data.validation
        n_train = len(train_ds)
        if n_train < cfg.batch_size:
            raise ValueError(f"{n_train} training items are fewer than one batch of "
                             f"{cfg.batch_size}")
        if len(val_ds) == 0:
            raise ValueError("the validation split is empty")

        seed_everything(cfg.seed)
        net, model_name = _build(model, cfg.model_kwargs)
        exposure = model_panstarrs_exposure(net)
        if data.panstarrs_exposure not in (None, exposure):
            raise ValueError(f"the training data were fused with panstarrs_exposure="
                             f"{data.panstarrs_exposure!r} but the network takes {exposure!r}: "
                             "open them with TrainingData.from_directory(..., "
                             f"panstarrs_exposure={exposure!r})")
        net.to(dev)
        run = _Run.start(net, cfg, dev, n_train // cfg.batch_size)
        config = _checkpoint_config(cfg, model_name, dev, run, n_train, len(val_ds), data)
        state = {"epoch": 0, "history": [], "best_metric": math.inf, "best_epoch": 0,
                 "bad_epochs": 0, "stopped": None}
        if cfg.resume and ckpt_path.exists():
            state = _restore(ckpt_path, dev, config, run, state)
            log.info(f"resuming {model_name} from {ckpt_path} after epoch {state['epoch']}")
        _write_history(out_dir, state["history"])

        train_ds.seed, train_ds.augment = int(cfg.seed), bool(cfg.augment)
        train_ds.zero_point_jitter = float(cfg.zero_point_jitter)
        sampler = EpochSampler(n_train, seed=cfg.seed, shuffle=True,
                               weights=balanced_weights(train_ds.z) if cfg.balanced else None)
        loader, loader_gen = _loader(train_ds, sampler, cfg, dev)
        epoch_times = [row["seconds"] for row in state["history"]]
        run_epochs = 0
        while state["stopped"] is None:
            state["stopped"] = _stop_reason(state["epoch"], run_epochs, epoch_times, t_start,
                                            cfg)
            if state["stopped"] is not None:
                break
            epoch, t0 = state["epoch"], time.perf_counter()
            sampler.set_epoch(epoch)
            train_ds.set_epoch(epoch)
            if cfg.resident:
                loader.set_epoch(epoch)
            loader_gen.manual_seed(cfg.seed + epoch)
            _run_epoch(run, loader, val_ds, state, epoch, cfg, dev, out_dir, t0)
            epoch_times.append(state["history"][-1]["seconds"])
            run_epochs += 1
            _atomic_save(dict(state, model=_cpu_state(net), optimizer=run.optimizer.state_dict(),
                              scheduler=run.scheduler.state_dict(),
                              scaler=run.scaler.state_dict() if run.scaler.is_enabled() else {},
                              rng=_rng_state(), config=config), ckpt_path)
            _write_history(out_dir, state["history"])

        if state["best_epoch"] and (out_dir / BEST_NAME).exists():
            net.load_state_dict(load_checkpoint(out_dir / BEST_NAME, map_location=dev))
        net.eval()
        return TrainResult(model=net, history=state["history"], best_epoch=state["best_epoch"],
                           best_metric=state["best_metric"], epochs_run=state["epoch"],
                           stopped=state["stopped"], out_dir=out_dir, config=config)


def model_exposure(model, model_kwargs=None):
    """The ``panstarrs_exposure`` of a network, or of a registry name with its arguments.

    Parameters
    ----------
    model : str or `torch.nn.Module`
        A network (its ``panstarrs_exposure`` attribute; "stack" without one) or a name
        of the ``astro_mantis.models`` registry (built on the ``meta`` device, which
        allocates nothing).
    model_kwargs : dict, optional
        Architecture arguments for a name.

    Returns
    -------
    str
        ``"stack"`` or ``"reference"`` (`astro_mantis.fusion.exposure`).
    """
    if isinstance(model, str):
        from ..models import build_model

        model = build_model(model, device="meta", **(model_kwargs or {}))
    return model_panstarrs_exposure(model)


def _training_data(train_dir, out_dir, cfg, exposure):
    """The training and validation datasets (fused once into the cache)."""
    if isinstance(train_dir, TrainingData):
        return train_dir
    cache_dir = out_dir / "fused_cache" if cfg.cache_dir is None else cfg.cache_dir
    return TrainingData.from_directory(train_dir, cache_dir=cache_dir,
                                       cache_dtype=cfg.cache_dtype, progress=cfg.progress,
                                       workers=cfg.workers, panstarrs_exposure=exposure)


@dataclass
class _Run:
    """The network and what steps it: optimiser, schedule, loss scaling."""

    net: object
    optimizer: object
    scheduler: object
    scaler: object
    use_amp: bool
    amp_dtype: object
    step: object

    @classmethod
    def start(cls, net, cfg, dev, steps):
        amp_dtype = _amp_dtype(cfg.amp, dev)
        use_amp = amp_dtype is not None
        amp_dtype = torch.float16 if amp_dtype is None else amp_dtype
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
        decay = [p for p in net.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in net.parameters() if p.requires_grad and p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, WarmupCosine(cfg.epochs * steps, round(cfg.warmup_epochs * steps)))
        step = _Stepper(net, optimizer, scheduler, scaler, dev, use_amp, amp_dtype,
                        cfg.smoothing_sigma, cfg.grad_clip)
        return cls(net, optimizer, scheduler, scaler, use_amp, amp_dtype, step)


def _checkpoint_config(cfg, model_name, dev, run, n_train, n_validation, data):
    """The run's settings as the checkpoint records them (what resuming compares)."""
    return {
        "model": model_name, "model_kwargs": dict(cfg.model_kwargs or {}),
        "epochs": int(cfg.epochs), "batch_size": int(cfg.batch_size), "lr": float(cfg.lr),
        "weight_decay": float(cfg.weight_decay), "warmup_epochs": float(cfg.warmup_epochs),
        "seed": int(cfg.seed), "device": str(dev), "amp": run.use_amp,
        "amp_dtype": str(run.amp_dtype).replace("torch.", "") if run.use_amp else None,
        "patience": cfg.patience, "min_delta": float(cfg.min_delta),
        "smoothing_sigma": float(cfg.smoothing_sigma), "balanced": bool(cfg.balanced),
        "augment": bool(cfg.augment), "grad_clip": cfg.grad_clip,
        "zero_point_jitter": float(cfg.zero_point_jitter),
        "max_minutes": cfg.max_minutes, "n_train": n_train, "n_validation": n_validation,
        "deterministic": bool(cfg.deterministic), "resident": bool(cfg.resident),
        "cache_dtype": _cache_dtype(data.train),
        "torch": str(torch.__version__),
        "data": data.manifest,
    }


def _cache_dtype(dataset):
    """The fused cache's storage type of a dataset ("float16", "float32"), or None."""
    parts = getattr(dataset, "datasets", [dataset])
    kinds = {str(np.dtype(d.cache_dtype)) for d in parts if hasattr(d, "cache_dtype")}
    return kinds.pop() if len(kinds) == 1 else None


def _data_identity(manifest):
    """What identifies a run's data across machines: each directory's seed and size.

    Paths and the manifests' timing entries differ when the same data are rendered
    again on another machine; the seeds and counts do not.
    """
    runs = manifest.get("runs", [manifest]) if isinstance(manifest, dict) else []
    return [[run.get("seed"), run.get("n")] for run in runs]


def _check_settings(cfg):
    """Refuse settings that contradict each other, before any work."""
    if cfg.resume and cfg.overwrite:
        raise ValueError("resume=True and overwrite=True exclude each other: resume continues "
                         "the run in out_dir, overwrite starts it afresh")
    if cfg.zero_point_jitter and not cfg.augment:
        raise ValueError(f"zero_point_jitter={cfg.zero_point_jitter} is part of the "
                         "augmentation: it needs augment=True")
    if cfg.patience is not None and (isinstance(cfg.patience, bool) or int(cfg.patience) < 0
                                     or int(cfg.patience) != cfg.patience):
        raise ValueError(f"patience must be a whole number of epochs of 0 or more (0 or None: "
                         f"no early stopping), got {cfg.patience!r}")
    if int(cfg.num_workers) < 0:
        raise ValueError(f"num_workers must be 0 or more, got {cfg.num_workers}")
    if int(cfg.workers) < 1:
        raise ValueError(f"workers must be 1 or more, got {cfg.workers}")


def _restore(ckpt_path, dev, config, run, state):
    """Load a checkpoint into the run; returns its state. Refuses other settings."""
    ck = load_checkpoint(ckpt_path, map_location="cpu")  # generator states stay on the CPU
    saved = {k: ck["config"].get(k, _RESUME_DEFAULTS.get(k)) for k in _RESUME_FIXED}
    saved["data_identity"] = _data_identity(ck["config"].get("data", {}))
    now = dict(config, data_identity=_data_identity(config.get("data", {})))
    diff = {k: (saved[k], now[k]) for k in _RESUME_FIXED if saved[k] != now[k]}
    if diff:
        raise ValueError("cannot resume: settings differ from the checkpoint's: "
                         + ", ".join(f"{k} {a!r} in the checkpoint, {b!r} now"
                                     for k, (a, b) in diff.items()))
    run.net.load_state_dict(ck["model"])
    run.optimizer.load_state_dict(ck["optimizer"])
    run.scheduler.load_state_dict(ck["scheduler"])
    if ck.get("scaler"):
        run.scaler.load_state_dict(ck["scaler"])
    state = {k: ck[k] for k in state}
    state["history"] = list(state["history"])
    _set_rng_state(ck["rng"])
    return state


def _loader(train_ds, sampler, cfg, dev):
    """The batches of an epoch (data-loader, or resident on the device) and the loader's
    generator."""
    loader_gen = torch.Generator()
    if cfg.resident:
        from .resident import ResidentBatches

        loader = ResidentBatches(train_ds, cfg.batch_size, sampler, dev, seed=cfg.seed,
                                 augment=cfg.augment, zero_point_jitter=cfg.zero_point_jitter)
    else:
        loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler,
                            drop_last=True, num_workers=cfg.num_workers,
                            pin_memory=dev.type == "cuda", generator=loader_gen)
    return loader, loader_gen


def _stop_reason(epoch, run_epochs, epoch_times, t_start, cfg):
    """Why no further epoch starts (None: it does)."""
    if epoch >= cfg.epochs:
        return "completed"
    if cfg.stop_after is not None and run_epochs >= cfg.stop_after:
        return "stop_after"
    if cfg.max_minutes is not None and epoch_times and (
            time.perf_counter() - t_start + float(np.mean(epoch_times[-3:]))
            > 60.0 * cfg.max_minutes):
        log.info(f"stopping after epoch {epoch}: another epoch would exceed the time "
                 f"budget of {cfg.max_minutes} min")
        return "time budget"
    return None


def _run_epoch(run, loader, val_ds, state, epoch, cfg, dev, out_dir, t0):
    """Train one epoch (begun at ``t0``), validate, keep the best weights; updates
    ``state``."""
    from tqdm.auto import tqdm

    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=not progress_enabled(cfg.progress), leave=False, unit="batch")
    train_loss = run.step.epoch(bar, epoch)
    val_logits, val_z = collect_logits(
        run.net, val_ds, batch_size=int(cfg.eval_batch_size or 2 * cfg.batch_size), device=dev,
        num_workers=cfg.num_workers, progress=False)
    m = epoch_metrics(val_logits, val_z)
    improved = m["cde_loss"] < state["best_metric"] - cfg.min_delta
    if improved:
        state.update(best_metric=m["cde_loss"], best_epoch=epoch + 1, bad_epochs=0)
        _atomic_save(_cpu_state(run.net), out_dir / BEST_NAME)
    else:
        state["bad_epochs"] += 1
    seconds = time.perf_counter() - t0
    state["history"].append({
        "epoch": epoch + 1, "train_loss": train_loss, "val_loss": m["loss"],
        "val_cde_loss": m["cde_loss"], "val_nmad": m["nmad"],
        "val_outlier_frac": m["outlier_frac"],
        "val_outlier_frac_005": m["outlier_frac_005"], "val_bias": m["bias"],
        "lr": float(run.scheduler.get_last_lr()[0]), "seconds": seconds,
        "best": bool(improved)})
    for callback in cfg.callbacks or ():  # e.g. explain.SpectralMonitor
        state["history"][-1].update(callback(epoch + 1, run.net) or {})
    state["epoch"] = epoch + 1
    if cfg.patience and state["bad_epochs"] >= cfg.patience:
        state["stopped"] = "early stopping"
        log.info(f"early stopping after epoch {epoch + 1}: the validation CDE loss "
                 f"has not improved for {cfg.patience} epochs (best: epoch "
                 f"{state['best_epoch']})")
    log.info(f"epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.4f}, val loss "
             f"{m['loss']:.4f}, val CDE loss {m['cde_loss']:.3f}, NMAD "
             f"{m['nmad']:.4f}, outliers {m['outlier_frac']:.3f}, {seconds:.1f} s"
             + (" (best)" if improved else ""))


def _amp_dtype(amp, device):
    """The autocast type of mixed-precision training on ``device`` (None: full float32).

    CUDA: bfloat16 where supported, else float16 (with loss scaling). CPU: bfloat16 where
    the CPU runs it natively (AVX512-BF16 or AMX-BF16), about 2.3 times the float32 rate
    of the bundled network's training steps on such a CPU; elsewhere float32, since
    emulated bfloat16 is slower than float32.
    """
    if not amp:
        return None
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        from ..models.precision import native_precisions

        return torch.bfloat16 if "bfloat16" in native_precisions("cpu") else None
    return None


def _cpu_state(net):
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


class _Stepper:
    """One epoch of optimiser steps (forward, loss, backward, step, schedule)."""

    def __init__(self, net, optimizer, scheduler, scaler, device, use_amp, amp_dtype,
                 smoothing_sigma, grad_clip):
        self.net, self.optimizer, self.scheduler, self.scaler = net, optimizer, scheduler, scaler
        self.device, self.use_amp, self.amp_dtype = device, use_amp, amp_dtype
        self.smoothing_sigma, self.grad_clip = smoothing_sigma, grad_clip

    def epoch(self, batches, epoch):
        """Train on an iterable of ``(x, dust, z)`` batches; return the mean loss."""
        net, opt, dev = self.net, self.optimizer, self.device
        net.train()
        total, count = 0.0, 0
        for x, dust, z in batches:
            x = x.to(dev, non_blocking=True)
            dust = dust.to(dev, non_blocking=True)
            z = z.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=self.amp_dtype, enabled=self.use_amp):
                logits = net(x, dust)
            loss = bin_cross_entropy(logits, z, self.smoothing_sigma)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the training loss became {loss.item()} in epoch "
                                         f"{epoch + 1}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.grad_clip:
                self.scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(net.parameters(), self.grad_clip)
            self.scaler.step(opt)
            self.scaler.update()
            self.scheduler.step()
            total += float(loss.detach()) * len(z)
            count += len(z)
            if hasattr(batches, "set_postfix"):
                batches.set_postfix(loss=f"{total / count:.4f}",
                                    lr=f"{self.scheduler.get_last_lr()[0]:.2e}", refresh=False)
        if hasattr(batches, "close"):
            batches.close()
        return total / max(count, 1)


class _deterministic_mode:
    """Switch PyTorch's deterministic algorithms on for a block, then restore the settings."""

    def __init__(self, enabled, device):
        self.enabled = bool(enabled)
        self.device = device

    def __enter__(self):
        self.saved = (torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled(),
                      torch.backends.cudnn.benchmark)
        if self.enabled:
            if self.device.type == "cuda":
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        return self

    def __exit__(self, *exc):
        torch.use_deterministic_algorithms(self.saved[0], warn_only=self.saved[1])
        torch.backends.cudnn.benchmark = self.saved[2]
        return False


def calibrate_model(model, dataset, batch_size=128, device="cpu", num_workers=0, progress=None,
                    pit=True):
    """Fit the temperature (and PIT map) of a trained model on a (validation) dataset.

    Parameters
    ----------
    model : `torch.nn.Module`
        The trained network.
    dataset : `~astro_mantis.training.data.FusedDataset`
        Validation data (no augmentation is applied).
    batch_size, device, num_workers, progress
        As for `astro_mantis.training.loop.collect_logits`.
    pit : bool
        Also fit a `~astro_mantis.training.calibration.PITMap`.

    Returns
    -------
    `~astro_mantis.training.calibration.TemperatureCalibration`
    """
    logits, z = collect_logits(model, dataset, batch_size=batch_size, device=device,
                               num_workers=num_workers, progress=progress,
                               desc="calibrating")
    return TemperatureCalibration.fit(logits, z, edges=Z_EDGES, pit=pit)


def calibrate_tta(model, dataset, temperature=None, batch_size=128, device="cpu", num_workers=0,
                  progress=None):
    """Fit the PIT map of a model's TTA averages on a (validation) dataset.

    The card entry ``calibration_tta`` that `astro_mantis.models.predict` applies
    with ``tta=True`` (`astro_mantis.models.pit_map_for`); see
    `~astro_mantis.training.calibration.tta_calibration`. Eight passes over the data.

    Parameters
    ----------
    model, dataset
        The trained network and the validation data, as for
        `~astro_mantis.training.calibrate_model`.
    temperature : float, optional
        Temperature of each pass; default the model card's (``model.meta``), else 1.
    batch_size, device, num_workers, progress
        As for `astro_mantis.training.loop.collect_logits`.

    Returns
    -------
    dict
        The ``calibration_tta`` entry.
    """
    if temperature is None:
        temperature = float((getattr(model, "meta", None) or {}).get("temperature") or 1.0)
    log_probs, z = collect_logits(model, dataset, batch_size=batch_size, device=device,
                                  num_workers=num_workers, progress=progress,
                                  desc="calibrating TTA", tta=True, temperature=temperature)
    return tta_calibration(log_probs, z, temperature, edges=Z_EDGES)
