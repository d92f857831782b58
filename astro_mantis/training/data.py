# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Training data: fused-cutout datasets, augmentation, targets and samplers.

The network sees early-fused inputs, ``x`` of shape ``(9, 120, 120)`` plus two dust
values, and is trained to put probability on the redshift bin of the true redshift.
This module turns training shards (the format of `astro_mantis.shards`, written by
``astro_mantis.simulate.dataset.make_dataset`` and
`~astro_mantis.spectro.build_training_set`: raw per-survey cutouts, true redshift,
dust) into PyTorch datasets:

* `~astro_mantis.training.data.ShardDataset` fuses each shard once (``astro_mantis.fusion``) into a
  memory-mapped ``.npy`` cache on disk, so datasets larger than memory train with a bounded memory
  footprint; `~astro_mantis.training.data.ArrayDataset` holds already-fused arrays in memory.
* `~astro_mantis.training.data.augment` applies one of the 8 rotations/flips of the square plus a
  small circular shift, identically to all channels. Each item's transform is drawn from a random
  generator keyed by ``(seed, epoch, index)``, so an epoch is reproducible whatever the number of
  data-loader workers and after a resume.
* `~astro_mantis.training.data.jitter_zero_points` gives each channel a zero-point error ``δ``
  uniform in ``[-a, a]`` mag, i.e. what multiplying the band's counts by ``10**(-0.4 δ)`` does to
  the stretched input (`~astro_mantis.training.data.rescale_fused_counts`): calibration errors
  drawn afresh per item and epoch, so a network cannot lean on colours more exact than the
  surveys' zero points (``train(..., zero_point_jitter=a)``; off by default).
* `~astro_mantis.training.data.z_to_bin` and `~astro_mantis.training.data.soft_targets` give the
  class targets; `~astro_mantis.training.data.EpochSampler` shuffles or draws redshift-balanced
  samples (`~astro_mantis.training.data.balanced_weights`), again keyed by the epoch.
"""
import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, WeightedRandomSampler

from ..atomic import atomic_open, atomic_path
from ..logger import log
from ..pdf import Z_EDGES, ZMAX, ZMIN
from ..shards import SPLITS, load_shard, read_manifest, shard_paths  # noqa: F401

__all__ = [
    "ArrayDataset",
    "ConcatDataset",
    "ShardDataset",
    "FusedDataset",
    "EpochSampler",
    "augment",
    "jitter_zero_points",
    "rescale_fused_counts",
    "check_zero_point_jitter",
    "dihedral",
    "inverse_dihedral",
    "z_to_bin",
    "soft_targets",
    "balanced_weights",
    "derive_seed",
    "fuse_shard_arrays",
    "read_fused",
]

#: Maximum circular shift (pixels) of the default augmentation.
MAX_SHIFT = 2

# Rows fused at once when a shard is written to the cache (bounds the temporaries).
_FUSE_CHUNK = 256
# Version of the on-disk fused cache layout; bump to invalidate old caches.
_CACHE_VERSION = 1


def derive_seed(*keys):
    """Combine integers into one 63-bit seed, independently of call order elsewhere.

    Parameters
    ----------
    *keys : int
        Non-negative integers, e.g. ``(seed, epoch, index)``.

    Returns
    -------
    seed : int
        A seed in ``[0, 2**63)`` from `numpy.random.SeedSequence`, so that nearby keys
        give unrelated streams.
    """
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


# ------------------------------------------------------------------------- targets
def z_to_bin(z, edges=None):
    """Index of the redshift bin holding each redshift.

    Parameters
    ----------
    z : array-like or `torch.Tensor`
        Redshifts.
    edges : array-like, optional
        Bin edges (default `astro_mantis.pdf.Z_EDGES`, 400 bins on [0, 1.6)).

    Returns
    -------
    bins : `numpy.ndarray` or `torch.Tensor` of int64
        ``k`` such that ``edges[k] <= z < edges[k + 1]``. Redshifts outside the grid are
        clipped to the first or last bin (the network has no bin for them).
    """
    edges_np = Z_EDGES if edges is None else np.asarray(edges, dtype=np.float64)
    nbins = len(edges_np) - 1
    if isinstance(z, torch.Tensor):
        e = torch.tensor(np.array(edges_np), dtype=torch.float64, device=z.device)
        k = torch.searchsorted(e, z.to(torch.float64), right=True) - 1
        return k.clamp_(0, nbins - 1).to(torch.int64)
    k = np.searchsorted(edges_np, np.asarray(z, dtype=np.float64), side="right") - 1
    return np.clip(k, 0, nbins - 1).astype(np.int64)


def soft_targets(z, sigma, edges=None):
    """Gaussian-smoothed class targets: a probability vector over the bins per redshift.

    Parameters
    ----------
    z : `torch.Tensor`
        Redshifts, shape ``(N,)``.
    sigma : float
        Standard deviation of the Gaussian in units of bins (``sigma=1`` is one bin
        width, 0.004 in redshift for the default grid). ``sigma <= 0`` gives one-hot
        targets on the bin of ``z``.
    edges : array-like, optional
        Bin edges (default `astro_mantis.pdf.Z_EDGES`).

    Returns
    -------
    targets : `torch.Tensor`
        Shape ``(N, nbins)``, float32, rows summing to 1. The Gaussian is centred on the
        exact redshift (not on its bin's centre) and truncated at the ends of the grid
        (then renormalised).
    """
    edges_np = Z_EDGES if edges is None else np.asarray(edges, dtype=np.float64)
    z = torch.as_tensor(z)
    nbins = len(edges_np) - 1
    if sigma <= 0:
        k = z_to_bin(z, edges_np)
        return torch.nn.functional.one_hot(k, nbins).to(torch.float32)
    centres = torch.as_tensor(0.5 * (edges_np[1:] + edges_np[:-1]), dtype=torch.float64,
                              device=z.device)
    width = float(np.mean(np.diff(edges_np)))
    zc = z.to(torch.float64).clamp(float(edges_np[0]), float(edges_np[-1]))
    d = (centres[None, :] - zc[:, None]) / (sigma * width)
    w = torch.exp(-0.5 * d * d)
    return (w / w.sum(dim=1, keepdim=True)).to(torch.float32)


def balanced_weights(z, nbins=40, zrange=(ZMIN, ZMAX), max_ratio=20.0):
    """Per-object sampling weights that flatten the redshift distribution.

    Each object gets the weight ``1 / n(z)`` of its coarse redshift bin, where ``n`` is
    the histogram of ``z`` over ``nbins`` equal bins; the weights are clipped so that no
    object weighs more than ``max_ratio`` times the least-weighted one (sparse bins
    would otherwise repeat a few galaxies many times per epoch).

    Parameters
    ----------
    z : array-like
        Training redshifts.
    nbins : int
        Number of coarse histogram bins.
    zrange : (float, float)
        Range of the histogram.
    max_ratio : float
        Largest allowed ratio of two weights.

    Returns
    -------
    weights : `numpy.ndarray`
        float64, same length as ``z``, summing to ``len(z)``.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.size == 0:
        return np.zeros(0)
    counts, edges = np.histogram(np.clip(z, *zrange), bins=nbins, range=zrange)
    k = np.clip(np.searchsorted(edges, np.clip(z, *zrange), side="right") - 1, 0, nbins - 1)
    w = 1.0 / counts[k]
    w = np.minimum(w, w.min() * float(max_ratio))
    return w * (len(w) / w.sum())


# ------------------------------------------------------------------------- augmentation
def dihedral(x, k):
    """Apply element ``k`` of the symmetry group of the square to an image stack.

    Parameters
    ----------
    x : `numpy.ndarray`
        Shape ``(..., ny, nx)`` with ``ny == nx``; all leading channels get the same
        transform.
    k : int
        ``0..7``: rotation by ``(k % 4) * 90`` degrees (`numpy.rot90`, counter-clockwise
        in array order), preceded by a left-right flip when ``k >= 4``.

    Returns
    -------
    `numpy.ndarray`
        The transformed array (a view where possible).
    """
    k = int(k)
    if not 0 <= k < 8:
        raise ValueError(f"dihedral index must be in 0..7, got {k}")
    if k >= 4:
        x = x[..., ::-1]
    return np.rot90(x, k % 4, axes=(-2, -1))


def inverse_dihedral(x, k):
    """Undo `~astro_mantis.training.data.dihedral`: ``inverse_dihedral(dihedral(x, k), k) == x``.

    Parameters
    ----------
    x : `numpy.ndarray`
        Shape ``(..., ny, nx)``.
    k : int
        The index given to `~astro_mantis.training.data.dihedral`.

    Returns
    -------
    `numpy.ndarray`
    """
    k = int(k)
    if not 0 <= k < 8:
        raise ValueError(f"dihedral index must be in 0..7, got {k}")
    x = np.rot90(x, -(k % 4), axes=(-2, -1))
    return x[..., ::-1] if k >= 4 else x


def augment(x, rng, max_shift=MAX_SHIFT):
    """Randomly rotate/flip and shift one fused input, identically in all channels.

    Parameters
    ----------
    x : `numpy.ndarray`
        One input, shape ``(channels, ny, nx)`` with ``ny == nx``.
    rng : `numpy.random.Generator`
        Source of the random choices (three draws per call).
    max_shift : int
        Largest shift in pixels along each axis; shifts are uniform integers in
        ``[-max_shift, max_shift]``. The shift is circular (`numpy.roll`): pixels leaving
        one edge re-enter at the other, so the transform is a bijection of the pixels
        and loses nothing (at ±2 px of a 120 px cutout only sky re-enters).

    Returns
    -------
    x : `numpy.ndarray`
        A new C-contiguous array of the same shape and dtype.
    params : tuple of int
        ``(k, dy, dx)``: the `~astro_mantis.training.data.dihedral` index and the shifts applied
        after it.
    """
    if x.ndim != 3 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"expected one square image stack (channels, n, n), got {x.shape}")
    k = int(rng.integers(0, 8))
    dy, dx = (int(v) for v in rng.integers(-max_shift, max_shift + 1, size=2))
    y = dihedral(x, k)
    if dy or dx:
        y = np.roll(y, (dy, dx), axis=(-2, -1))
    return np.ascontiguousarray(y), (k, dy, dx)


def check_zero_point_jitter(value):
    """Validate a zero-point jitter amplitude (mag) and return it as a float.

    Parameters
    ----------
    value : float
        Largest calibration error drawn per band, in magnitudes: finite, in ``[0, 0.5]``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For a value that is not a finite number in ``[0, 0.5]``.
    """
    try:
        a = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"zero_point_jitter must be a number of magnitudes, got {value!r}") \
            from None
    if not (np.isfinite(a) and 0.0 <= a <= 0.5):
        raise ValueError(f"zero_point_jitter must be in [0, 0.5] mag, got {value!r}")
    return a


@functools.lru_cache(maxsize=None)
def _channel_stretches():
    """Per model channel (`astro_mantis.fusion.core.CHANNELS` order): the form of its
    survey's stretch, ``("clip", None)`` or ``("asinh", b)``
    (`~astro_mantis.fusion.core.STRETCHES`; ``a`` cancels out of ``f(s f⁻¹(y))``)."""
    from ..fusion.core import CHANNELS, RECIPE

    forms = {}
    for survey, recipe in RECIPE.items():
        kind, _, b = recipe["stretch"]
        if kind not in ("clip", "asinh"):
            raise RuntimeError(f"the {survey} stretch {kind!r} of astro_mantis.fusion is "
                               "neither 'clip' nor 'asinh': rescale_fused_counts cannot undo it")
        forms[survey] = (kind, None if b is None else float(b))
    return tuple(forms[survey] for survey, _ in CHANNELS)


def rescale_fused_counts(x, scale):
    """What multiplying the counts of each band by a factor does to fused network inputs.

    The inputs are not counts: each survey's counts went through its stretch ``f`` of the
    early-fusion recipe (`astro_mantis.fusion.core.RECIPE`: ``max(asinh(a x) / b, 0)`` for
    Pan-STARRS and unWISE, ``clip(x / 0.05, 0, 1)`` for GALEX) before the network saw them.
    Channel ``c`` becomes ``f(s_c f⁻¹(y))``, i.e. ``asinh(s_c sinh(b y)) / b`` for the asinh
    stretches (zero stays zero) and ``min(s_c y, 1)`` for GALEX. A GALEX pixel at the clip
    (``y = 1``) only says that its counts are at least at the clip: it stays 1 (exact when
    ``s_c ≥ 1``; when ``s_c < 1`` it assumes the counts lie above the clip by more than the
    error, true of all but the faintest saturated pixels).

    The transform is exact pixel by pixel for Pan-STARRS, whose fused channels are its
    stretched pixels. GALEX and unWISE are resized (bilinear, 22 → 120 pixels) after their
    stretch, and the stretch does not commute with the interpolation, so for them it is
    exact where the image is smooth on the scale of a native pixel and an approximation at
    sharp features (a point source's core, the edge of a clipped GALEX region).

    Both training paths use it: `~astro_mantis.training.data.jitter_zero_points` (one item
    on the CPU) and `~astro_mantis.training.resident.ResidentBatches` (batches on the
    device).

    Parameters
    ----------
    x : `torch.Tensor`
        Fused inputs, shape ``(..., 9, ny, nx)``, channels in
        `astro_mantis.fusion.core.CHANNELS` order.
    scale : `torch.Tensor`
        Factor on the counts per channel, shape ``(..., 9)`` (``10**(-0.4 δ)`` for an error
        ``δ`` mag in the zero point), on ``x``'s device.

    Returns
    -------
    `torch.Tensor`
        float32, a new tensor of ``x``'s shape and device.
    """
    forms = _channel_stretches()
    if x.ndim < 3 or x.shape[-3] != len(forms) or scale.shape[-1] != len(forms):
        raise ValueError(f"expected inputs (..., {len(forms)}, ny, nx) and factors "
                         f"(..., {len(forms)}); got {tuple(x.shape)} and {tuple(scale.shape)}")
    y = x.float()
    s = scale.float()[..., None, None]
    out = torch.empty_like(y)
    for c, (kind, b) in enumerate(forms):
        yc, sc = y[..., c, :, :], s[..., c, :, :]
        if kind == "clip":
            out[..., c, :, :] = torch.where(yc >= 1.0, yc, torch.clamp(sc * yc, max=1.0))
        else:
            out[..., c, :, :] = torch.asinh(sc * torch.sinh(b * yc)) / b
    return out


def jitter_zero_points(x, rng, amplitude):
    """Give each channel of one fused input a random zero-point error.

    Draws ``δ_c`` uniformly in ``[-amplitude, amplitude]`` magnitudes, independently per
    channel (each of the nine channels is one band), and applies to channel ``c`` what
    multiplying its counts by ``10**(-0.4 δ_c)`` does after the survey's stretch
    (`~astro_mantis.training.data.rescale_fused_counts`: the inputs are stretched counts,
    not counts). Sky noise is scaled with the signal, as a real zero-point error does;
    masked (zero) channels stay zero.

    Parameters
    ----------
    x : `numpy.ndarray`
        One fused input, shape ``(9, ny, nx)``, channels in
        `astro_mantis.fusion.core.CHANNELS` order.
    rng : `numpy.random.Generator`
        Source of the draws (one array of ``channels`` values per call).
    amplitude : float
        Largest ``|δ|`` in magnitudes (`check_zero_point_jitter`); 0 returns a copy of ``x``
        and draws nothing.

    Returns
    -------
    x : `numpy.ndarray`
        A new array of ``x``'s shape and dtype.
    delta : `numpy.ndarray`
        float64 ``(channels,)``: the errors applied, in magnitudes.
    """
    a = check_zero_point_jitter(amplitude)
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"expected one image stack (channels, ny, nx), got {x.shape}")
    if a == 0.0:
        return np.array(x, copy=True), np.zeros(x.shape[0])
    delta = rng.uniform(-a, a, x.shape[0])
    scale = torch.from_numpy((10.0 ** (-0.4 * delta)).astype(np.float32))
    y = rescale_fused_counts(torch.from_numpy(np.array(x, dtype=np.float32)), scale)
    return y.numpy().astype(x.dtype, copy=False), delta


# ------------------------------------------------------------------------- datasets
class FusedDataset(Dataset):
    """Base class of the training datasets: fused inputs, dust and true redshifts.

    An item is a tuple ``(x, dust, z)``: ``x`` a float32 tensor ``(9, 120, 120)``,
    ``dust`` a float32 tensor ``(2,)`` (E(B-V) CSFD, Planck) and ``z`` a float64 scalar
    tensor. Subclasses implement ``__len__``, `row` and the `z` property.

    Parameters
    ----------
    augment : bool
        Apply `~astro_mantis.training.data.augment` to each item.
    seed : int
        Seed of the augmentation; item ``i`` in epoch ``e`` uses the generator
        ``numpy.random.default_rng(derive_seed(seed, e, i))``.
    max_shift : int
        Largest shift of the augmentation, pixels.

    Attributes
    ----------
    zero_point_jitter : float
        With ``augment``, also `~astro_mantis.training.data.jitter_zero_points` each item
        with this amplitude (mag), drawn after the geometric transform from the same
        generator (default 0: off; `~astro_mantis.training.train` sets it from its
        ``zero_point_jitter``).
    """

    def __init__(self, augment=False, seed=0, max_shift=MAX_SHIFT):
        self.augment = bool(augment)
        self.seed = int(seed)
        self.max_shift = int(max_shift)
        self.zero_point_jitter = 0.0
        self.epoch = 0

    def set_epoch(self, epoch):
        """Select the epoch whose augmentation draws are used (call before iterating).

        Parameters
        ----------
        epoch : int
            Zero-based epoch number.
        """
        self.epoch = int(epoch)

    @property
    def z(self):
        """True redshifts of all items, float64 `numpy.ndarray` (no image I/O)."""
        raise NotImplementedError

    def row(self, index):
        """Return the raw ``(x, dust, z)`` of one item as numpy values, unaugmented."""
        raise NotImplementedError

    def __getitem__(self, index):
        index = int(index)
        x, dust, z = self.row(index)
        x = np.asarray(x, dtype=np.float32)
        if self.augment:
            rng = np.random.default_rng(derive_seed(self.seed, self.epoch, index))
            x, _ = augment(x, rng, self.max_shift)
            if self.zero_point_jitter:
                x, _ = jitter_zero_points(x, rng, self.zero_point_jitter)
        else:
            x = np.array(x, dtype=np.float32, copy=True)
        return (torch.from_numpy(x), torch.as_tensor(np.asarray(dust, dtype=np.float32)),
                torch.tensor(float(z), dtype=torch.float64))


class ArrayDataset(FusedDataset):
    """A dataset over fused arrays held in memory.

    Parameters
    ----------
    x : array-like
        Fused inputs, shape ``(N, channels, n, n)`` (float32 or float16).
    dust : array-like
        Dust values, shape ``(N, 2)``.
    z : array-like
        True redshifts, shape ``(N,)``.
    augment, seed, max_shift
        As for `~astro_mantis.training.data.FusedDataset`.
    """

    def __init__(self, x, dust, z, augment=False, seed=0, max_shift=MAX_SHIFT):
        super().__init__(augment=augment, seed=seed, max_shift=max_shift)
        self.x = np.asarray(x)
        self.dust = np.asarray(dust, dtype=np.float32)
        self._z = np.asarray(z, dtype=np.float64)
        n = len(self._z)
        if self.x.ndim != 4 or len(self.x) != n or self.dust.shape != (n, 2):
            raise ValueError(f"expected x (N, C, n, n), dust (N, 2) and z (N,) with the same "
                             f"N; got {self.x.shape}, {self.dust.shape}, {self._z.shape}")

    def __len__(self):
        return len(self._z)

    @property
    def z(self):
        return self._z

    def row(self, index):
        return self.x[index], self.dust[index], self._z[index]


class ConcatDataset(FusedDataset):
    """Several fused datasets served as one, in order (e.g. the shards of several data runs).

    Parameters
    ----------
    datasets : sequence of `~astro_mantis.training.data.FusedDataset`
        The parts (each with a ``dust`` array, as `~astro_mantis.training.data.ShardDataset`
        and `~astro_mantis.training.data.ArrayDataset` have).
    augment, seed, max_shift
        As for `~astro_mantis.training.data.FusedDataset`; the parts' own settings are not used.

    Attributes
    ----------
    dust : `numpy.ndarray`
        float32 ``(N, 2)``, the parts' dust inputs concatenated.
    """

    def __init__(self, datasets, augment=False, seed=0, max_shift=MAX_SHIFT):
        super().__init__(augment=augment, seed=seed, max_shift=max_shift)
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset needs at least one dataset")
        self._z = np.concatenate([np.asarray(d.z, np.float64) for d in self.datasets])
        self.dust = np.concatenate([np.asarray(d.dust, np.float32) for d in self.datasets])
        self._starts = np.concatenate([[0], np.cumsum([len(d) for d in self.datasets])])

    def __len__(self):
        return int(self._starts[-1])

    @property
    def z(self):
        return self._z

    def row(self, index):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        part = int(np.searchsorted(self._starts, index, side="right") - 1)
        return self.datasets[part].row(index - int(self._starts[part]))


def fuse_shard_arrays(shard, nan_policy="zero", panstarrs_exposure="stack"):
    """Early-fuse the raw cutout arrays of one shard (the published recipe).

    A thin wrapper of ``astro_mantis.fusion.fuse_arrays``, the array twin of
    ``astro_mantis.fusion.early_fusion``: per survey, centre crop (PS1 170 → 120,
    GALEX and unWISE 32 → 22), non-finite pixels handled by ``nan_policy``, the
    survey's normalisation, and the antialiased bilinear resize to 120 × 120. The
    network therefore sees in training exactly what ``early_fusion`` gives it at
    inference.

    Parameters
    ----------
    shard : mapping
        A shard as read by `astro_mantis.shards.load_shard`: per-survey
        arrays ``galex`` ``(N, 2, 32, 32)``, ``panstarrs`` ``(N, 5, 170, 170)``,
        ``unwise`` ``(N, 2, 32, 32)`` in native units (all-NaN planes for a missing
        survey; a survey absent from the shard is missing for every row), and
        ``ebv_csfd``, ``ebv_planck``.
    nan_policy : {"zero", "inpaint"}
        What replaces non-finite pixels (``"zero"`` is the reference's choice).
    panstarrs_exposure : {"stack", "reference"}
        ``"reference"`` rescales the PS1 counts to the typical exposure times first,
        with the shard's ``panstarrs_exptime`` (`astro_mantis.fusion.exposure`; a
        shard without it counts as unknown, the counts kept); ``"stack"`` (default)
        fuses them as served, as the published recipe does.

    Returns
    -------
    x : `numpy.ndarray`
        float32 ``(N, 9, 120, 120)``, channels NUV FUV g r i z y W1 W2.
    dust : `numpy.ndarray`
        float32 ``(N, 2)`` (non-finite values become 0).
    valid : `numpy.ndarray`
        bool ``(N, 9)``: False for a channel whose survey is missing or in which some
        pixel seen by the network had to be set to zero.
    """
    from ..fusion import fuse_arrays
    from ..fusion.exposure import check_panstarrs_exposure, to_reference_exposure

    panstarrs = shard.get("panstarrs")
    if check_panstarrs_exposure(panstarrs_exposure) == "reference" and panstarrs is not None:
        panstarrs, _ = to_reference_exposure(panstarrs, shard.get("panstarrs_exptime"))
    fused = fuse_arrays(shard.get("galex"), panstarrs, shard.get("unwise"),
                        ebv=_shard_dust(shard), nan_policy=nan_policy)
    return (np.asarray(fused.x, np.float32), np.asarray(fused.dust, np.float32),
            np.asarray(fused.valid, bool))


def read_fused(directory, split, max_rows=None, panstarrs_exposure="stack"):
    """The fused inputs of one split of a shard directory, in memory (no cache).

    Parameters
    ----------
    directory : str or path-like
        A shard directory (`astro_mantis.shards`).
    split : str
        ``"train"``, ``"validation"`` or ``"test"``.
    max_rows : int, optional
        Stop after this many galaxies (the first ones, in shard order).
    panstarrs_exposure : {"stack", "reference"}
        As for `fuse_shard_arrays`: that of the network the inputs are for.

    Returns
    -------
    x, dust, z, ids : `numpy.ndarray`
        float32 (N, 9, 120, 120), float32 (N, 2), float64 (N,), int64 (N,).

    Raises
    ------
    FileNotFoundError
        If the directory has no shards of ``split``.
    ValueError
        If the split holds no galaxies.
    """
    from ..shards import iter_shards

    xs, ds, zs, ids = [], [], [], []
    for shard in iter_shards(directory, split):
        x, d, _ = fuse_shard_arrays(shard, panstarrs_exposure=panstarrs_exposure)
        xs.append(x)
        ds.append(d)
        zs.append(np.asarray(shard["z"], np.float64))
        ids.append(np.asarray(shard["id"], np.int64))
        if max_rows is not None and sum(map(len, xs)) >= max_rows:
            break
    if not xs:
        raise ValueError(f"no galaxies in the {split} split of {directory}")
    return tuple(np.concatenate(a)[:max_rows] for a in (xs, ds, zs, ids))


def _shard_dust(shard):
    """The ``(N, 2)`` dust array (CSFD, Planck) of a shard, non-finite values set to 0."""
    dust = np.stack([np.asarray(shard["ebv_csfd"], dtype=np.float32),
                     np.asarray(shard["ebv_planck"], dtype=np.float32)], axis=1)
    dust[~np.isfinite(dust)] = 0.0
    return dust


def _file_signature(path):
    """Size and modification time of a file: a cheap identity for cache validation."""
    st = os.stat(path)
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


class ShardDataset(FusedDataset):
    """A dataset over the shards of one split of a training data directory.

    On construction each shard of the split is fused once
    (`~astro_mantis.training.data.fuse_shard_arrays`) and written to ``cache_dir`` as
    ``<shard>.x.npy`` (the fused inputs, in ``cache_dtype``) plus ``<shard>.meta.npz`` (dust,
    redshift, validity mask, flags, ids). Items are then read from memory-mapped arrays, so memory
    use does not grow with the data set: the operating system pages the rows in and out. A cache
    entry is reused when its source shard's size and modification time and the package's fusion
    version are unchanged.

    Parameters
    ----------
    directory : str or path-like
        The data directory (with ``manifest.json`` and the shards).
    split : str
        ``"train"``, ``"validation"`` or ``"test"``.
    cache_dir : str or path-like, optional
        Where the fused cache goes; default ``<directory>/fused_cache``.
    cache_dtype : {"float16", "float32"}
        Storage type of the cached inputs. float16 halves disk use and I/O; its relative
        rounding (5e-4) is far below the images' noise. Items are always float32.
    in_memory : bool
        Load the whole cached split into memory instead of memory-mapping it.
    augment, seed, max_shift
        As for `~astro_mantis.training.data.FusedDataset`.
    progress : bool, optional
        Show a progress bar while fusing (default: on a terminal).
    workers : int
        Processes fusing the shards not yet cached, in parallel (default 1: in this process).
    panstarrs_exposure : {"stack", "reference"}
        How the PS1 counts are fused (`fuse_shard_arrays`): that of the network to be
        trained or evaluated (its ``panstarrs_exposure``). The two are cached apart.

    Attributes
    ----------
    dust : `numpy.ndarray`
        float32 ``(N, 2)``, the dust inputs.
    valid : `numpy.ndarray`
        bool ``(N, 9)``, the fusion's per-channel validity mask.
    flags : `numpy.ndarray`
        int64 ``(N,)``, the shards' `~astro_mantis.MantisFlag` bits.
    ids : `numpy.ndarray`
        int64 ``(N,)``, the catalog ``id`` of each item.
    shards : list of `pathlib.Path`
        The shard files, in order.
    """

    def __init__(self, directory, split="train", cache_dir=None, cache_dtype="float16",
                 in_memory=False, augment=False, seed=0, max_shift=MAX_SHIFT, progress=None,
                 workers=1, panstarrs_exposure="stack"):
        from ..fusion.exposure import check_panstarrs_exposure

        super().__init__(augment=augment, seed=seed, max_shift=max_shift)
        self.panstarrs_exposure = check_panstarrs_exposure(panstarrs_exposure)
        self.directory = Path(directory)
        self.split = str(split)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else \
            self.directory / "fused_cache"
        self.cache_dtype = np.dtype(cache_dtype)
        if self.cache_dtype not in (np.dtype(np.float16), np.dtype(np.float32)):
            raise ValueError(f"cache_dtype must be float16 or float32, got {cache_dtype!r}")
        self.in_memory = bool(in_memory)
        self.shards = list_shards(self.directory, self.split)
        if not self.shards:
            raise FileNotFoundError(f"no {self.split!r} shards in {str(self.directory)!r}")
        if int(workers) > 1 and len(self.shards) > 1:
            self._fuse_in_parallel(int(workers))
        self._x_paths = []
        parts = {"z": [], "dust": [], "valid": [], "flags": [], "id": []}
        for path in _progress(self.shards, progress, f"fusing {self.split}"):
            xpath, meta = self._ensure_cached(path)
            self._x_paths.append(xpath)
            for key in parts:
                parts[key].append(meta[key])
        self._z = np.concatenate(parts["z"]).astype(np.float64)
        self.dust = np.concatenate(parts["dust"]).astype(np.float32)
        self.valid = np.concatenate(parts["valid"]).astype(bool)
        self.flags = np.concatenate(parts["flags"]).astype(np.int64)
        self.ids = np.concatenate(parts["id"]).astype(np.int64)
        sizes = np.array([len(v) for v in parts["z"]], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(sizes)])
        self._arrays = [None] * len(self.shards)

    def __len__(self):
        return int(self._starts[-1])

    @property
    def z(self):
        return self._z

    def __getstate__(self):  # memory maps are reopened in data-loader workers
        state = self.__dict__.copy()
        if not self.in_memory:
            state["_arrays"] = [None] * len(self.shards)
        return state

    def _array(self, s):
        arr = self._arrays[s]
        if arr is None:
            arr = np.load(self._x_paths[s], mmap_mode=None if self.in_memory else "r")
            self._arrays[s] = arr
        return arr

    def row(self, index):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        s = int(np.searchsorted(self._starts, index, side="right") - 1)
        i = index - int(self._starts[s])
        return self._array(s)[i], self.dust[index], self._z[index]

    def _fuse_in_parallel(self, workers):
        """Fill the cache of every shard with a pool of processes (cached shards cost a read)."""
        import multiprocessing

        settings = (self.directory, self.split, self.cache_dir, self.cache_dtype.name,
                    self.panstarrs_exposure)
        with multiprocessing.get_context().Pool(min(workers, len(self.shards)),
                                                initializer=_init_fuse_worker) as pool:
            for _ in pool.imap_unordered(_fuse_one, [(settings, p) for p in self.shards]):
                pass

    @property
    def _reference(self):
        return self.panstarrs_exposure == "reference"

    def _signature(self, path):
        from .._version import __version__

        return {"cache_version": _CACHE_VERSION, "package_version": __version__,
                "fusion": "fuse_arrays, nan_policy=zero" + (
                    ", panstarrs_exposure=reference" if self._reference else ""),
                "dtype": self.cache_dtype.name,
                "source": _file_signature(path)}

    def _ensure_cached(self, path):
        """Fuse one shard into the cache unless an up-to-date entry exists."""
        key = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:10]
        suffix = "-ref" if self._reference else ""
        if self.cache_dtype != np.float16:  # beside the float16 entry, not in its place
            suffix += f"-{self.cache_dtype.name}"
        base = self.cache_dir / self.split / f"{Path(path).stem}-{key}{suffix}"
        xpath = base.with_name(base.name + ".x.npy")
        mpath = base.with_name(base.name + ".meta.npz")
        spath = base.with_name(base.name + ".json")
        sig = self._signature(path)
        if xpath.exists() and mpath.exists() and spath.exists():
            try:
                if json.loads(spath.read_text()) == sig:
                    meta = _read_cache_entry(xpath, mpath, self.cache_dtype)
                    if meta is not None:
                        return xpath, meta
            except (OSError, ValueError):
                pass
        base.parent.mkdir(parents=True, exist_ok=True)
        shard = load_shard(path)
        n = len(shard["z"])
        dust = np.empty((n, 2), np.float32)
        valid = np.empty((n, 9), bool)
        # Each file goes to a temporary file of its own (concurrent writers of one entry
        # do not share it) and is renamed into place whole: a memory map of the old file
        # in another process keeps reading the old data, and a failure leaves no file.
        # The signature, written last, marks the entry valid; a cache is not flushed to
        # disk, so `_read_cache_entry` checks that the files are whole before reusing them.
        with atomic_path(xpath, fsync=False) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.cache_dtype,
                                            shape=(n, 9, 120, 120))
            try:
                for start in range(0, n, _FUSE_CHUNK):
                    sl = slice(start, min(start + _FUSE_CHUNK, n))
                    part = {k: shard[k][sl] for k in ("galex", "panstarrs", "unwise", "ebv_csfd",
                                                       "ebv_planck", "panstarrs_exptime")
                            if k in shard}
                    x, d, v = fuse_shard_arrays(part, panstarrs_exposure=self.panstarrs_exposure)
                    out[sl] = x
                    dust[sl] = d
                    valid[sl] = v
                out.flush()
            finally:
                del out
        meta = {"z": np.asarray(shard["z"], dtype=np.float64), "dust": dust, "valid": valid,
                "flags": np.asarray(shard["flags"], dtype=np.int64),
                "id": np.asarray(shard["id"], dtype=np.int64)}
        with atomic_open(mpath, "wb", fsync=False) as fh:  # a file object: no ".npz" added
            np.savez(fh, **meta)
        with atomic_open(spath, "w", fsync=False) as fh:
            fh.write(json.dumps(sig))
        log.debug(f"fused {path} -> {xpath}")
        return xpath, meta


def _read_cache_entry(xpath, mpath, dtype):
    """The metadata of a fused-cache entry, or None when its files are not whole.

    The cache is written without flushing to disk, so after a crash of the machine its
    signature may survive files that are empty or cut short; those are rebuilt rather
    than read (a short ``.x.npy`` would fail only later, at its first memory-mapped row).
    """
    try:
        with np.load(mpath) as m:
            meta = {k: m[k] for k in m.files}
        n = len(meta["z"])
        if any(len(meta[k]) != n for k in ("dust", "valid", "flags", "id")):
            return None
        x = np.load(xpath, mmap_mode="r")  # reads the header; a short file fails to map
        ok = x.shape == (n, 9, 120, 120) and x.dtype == dtype
        del x
    except Exception:  # noqa: BLE001 - EOFError, zipfile.BadZipFile, KeyError, ValueError ...
        return None
    return meta if ok else None


def _init_fuse_worker():
    """Pin a fusing worker to one PyTorch thread before it runs anything.

    A worker forked from a process whose PyTorch (OpenMP) thread pool has run inherits
    that pool's state, and its first multi-threaded PyTorch call then waits for ever
    (seen in the recipe, which loads the initial weights before fusing). One thread
    starts no parallel region, and each worker is meant to use one core anyway.
    """
    torch.set_num_threads(1)


def _fuse_one(args):
    """Pool task of `ShardDataset`'s parallel fusing: cache one shard."""
    (directory, split, cache_dir, dtype, exposure), path = args
    ds = ShardDataset.__new__(ShardDataset)
    ds.directory, ds.split, ds.cache_dir = directory, split, cache_dir
    ds.cache_dtype, ds.panstarrs_exposure = np.dtype(dtype), exposure
    ds._ensure_cached(path)


def list_shards(directory, split):
    """Paths of the shards of one split, in order, from the directory's manifest.

    Parameters
    ----------
    directory : str or path-like
        A shard directory (`astro_mantis.shards`).
    split : {"train", "validation", "test"}
        The split.

    Returns
    -------
    list of `pathlib.Path`
        Empty when the split has no galaxies.

    Raises
    ------
    FileNotFoundError
        If there is no ``manifest.json`` or a listed shard is missing.
    ValueError
        For an unknown split or an incomplete dataset.
    """
    paths = [path for path, shard in zip(shard_paths(directory, split),
                                         read_manifest(directory)["splits"][split]["shards"])
             if shard.get("n", 1) > 0]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"shard {path} listed in the manifest does not exist")
    return paths


def _progress(iterable, progress, desc):
    from ..progress import progress_bar

    return progress_bar(progress, iterable=iterable, desc=desc, leave=False)


# ------------------------------------------------------------------------- sampling
class EpochSampler(Sampler):
    """Shuffled or redshift-balanced sample order, reproducible per epoch.

    Parameters
    ----------
    n : int
        Dataset length.
    seed : int
        Base seed; epoch ``e`` draws from ``derive_seed(seed, e, 1)``.
    shuffle : bool
        Random permutation each epoch (else ``0..n-1``). Ignored with ``weights``.
    weights : array-like, optional
        Per-item sampling weights (e.g. `~astro_mantis.training.data.balanced_weights`): each epoch
        then draws ``n`` items with replacement through `torch.utils.data.WeightedRandomSampler`.
    """

    def __init__(self, n, seed=0, shuffle=True, weights=None):
        self.n = int(n)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.weights is not None and len(self.weights) != self.n:
            raise ValueError(f"{len(self.weights)} weights for {self.n} items")
        self.epoch = 0

    def set_epoch(self, epoch):
        """Select the epoch whose order is drawn next.

        Parameters
        ----------
        epoch : int
            Zero-based epoch number.
        """
        self.epoch = int(epoch)

    def __len__(self):
        return self.n

    def __iter__(self):
        gen = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, 1))
        if self.weights is not None:
            return iter(WeightedRandomSampler(self.weights, self.n, replacement=True,
                                              generator=gen))
        if not self.shuffle:
            return iter(range(self.n))
        return iter(torch.randperm(self.n, generator=gen).tolist())
