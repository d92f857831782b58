# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""A training split held in the accelerator's memory and augmented there.

On a GPU the network trains far faster than data-loader workers can read, convert and
augment items one by one. `~astro_mantis.training.resident.ResidentBatches` copies the
whole fused training split once into device memory (float16: 259 kB per galaxy, so
50,000 galaxies take 13 GB) and serves each epoch's batches from it, with the same
augmentation as `~astro_mantis.training.data.augment` (one of the eight rotations/flips of
the square, then a circular shift of up to ``max_shift`` pixels) applied on the device by
`~astro_mantis.training.resident.augment_batch`, one gather per batch.

``train(..., resident=True)`` uses it. The epoch's order comes from the same
`~astro_mantis.training.data.EpochSampler` (shuffled or redshift-balanced) and the
transforms from a generator seeded by ``(seed, epoch)``, so a resumed run repeats the
epochs it would have run. (The transform of an item differs from the data-loader path's,
which draws per item; both are uniform over the same transforms.)
"""
import numpy as np
import torch

from .data import (MAX_SHIFT, ConcatDataset, ShardDataset, check_zero_point_jitter, derive_seed,
                   dihedral, rescale_fused_counts)

__all__ = ["ResidentBatches", "augment_batch", "dihedral_index_maps"]

_LOAD_CHUNK = 2048  # rows copied to the device at once when a split is loaded item by item


def dihedral_index_maps(n):
    """Source pixel indices of the eight `~astro_mantis.training.data.dihedral` transforms.

    Parameters
    ----------
    n : int
        Side of the square images.

    Returns
    -------
    rows, cols : `numpy.ndarray`
        int64, shape ``(8, n, n)``: ``dihedral(x, k)[..., i, j] == x[..., rows[k, i, j],
        cols[k, i, j]]``.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"the image side must be positive, got {n}")
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    rows = np.stack([dihedral(i, k) for k in range(8)])
    cols = np.stack([dihedral(j, k) for k in range(8)])
    return np.ascontiguousarray(rows), np.ascontiguousarray(cols)


def augment_batch(x, k, dy, dx, maps=None):
    """Apply per-item rotations/flips and circular shifts to a batch, on its device.

    Item ``b`` becomes ``numpy.roll(dihedral(x[b], k[b]), (dy[b], dx[b]), axis=(-2, -1))``,
    exactly as `~astro_mantis.training.data.augment` transforms one item.

    Parameters
    ----------
    x : `torch.Tensor`
        Shape ``(B, C, n, n)``.
    k, dy, dx : `torch.Tensor`
        Integer tensors of shape ``(B,)`` on ``x``'s device: the
        `~astro_mantis.training.data.dihedral` index (0–7) and the shifts (pixels).
    maps : (`torch.Tensor`, `torch.Tensor`), optional
        `~astro_mantis.training.resident.dihedral_index_maps` of side ``n`` on ``x``'s device
        (built when not given).

    Returns
    -------
    `torch.Tensor`
        A new tensor of ``x``'s shape, dtype and device.
    """
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"expected a batch of square image stacks (B, C, n, n), got "
                         f"{tuple(x.shape)}")
    b, c, n, _ = x.shape
    for name, t in (("k", k), ("dy", dy), ("dx", dx)):
        if t.shape != (b,):
            raise ValueError(f"{name} must have shape ({b},), got {tuple(t.shape)}")
    if maps is None:
        maps = tuple(torch.as_tensor(m, device=x.device) for m in dihedral_index_maps(n))
    rows, cols = maps
    ar = torch.arange(n, device=x.device)
    iy = (ar[None, :] - dy[:, None]) % n  # (B, n): output row i reads row i - dy of y
    ix = (ar[None, :] - dx[:, None]) % n
    kk = k[:, None, None]
    src_r = rows[kk, iy[:, :, None], ix[:, None, :]]
    src_c = cols[kk, iy[:, :, None], ix[:, None, :]]
    flat = (src_r * n + src_c).reshape(b, 1, n * n).expand(b, c, n * n)
    return x.reshape(b, c, n * n).gather(2, flat).reshape(b, c, n, n)


def _parts(dataset):
    """The leaf datasets of a (possibly concatenated) dataset, in order."""
    if isinstance(dataset, ConcatDataset):
        return [leaf for part in dataset.datasets for leaf in _parts(part)]
    return [dataset]


def _load_inputs(dataset, out):
    """Copy every fused input of ``dataset`` into the preallocated device tensor ``out``."""
    start = 0
    for part in _parts(dataset):
        if isinstance(part, ShardDataset):  # whole shards at a time
            for s in range(len(part.shards)):
                block = np.asarray(part._array(s))
                out[start:start + len(block)] = torch.from_numpy(
                    block.astype(np.float16, copy=False)).to(out.device)
                start += len(block)
            continue
        for lo in range(0, len(part), _LOAD_CHUNK):
            hi = min(lo + _LOAD_CHUNK, len(part))
            block = np.stack([np.asarray(part.row(i)[0], dtype=np.float16)
                              for i in range(lo, hi)])
            out[start:start + len(block)] = torch.from_numpy(block).to(out.device)
            start += len(block)
    if start != len(out):
        raise RuntimeError(f"loaded {start} inputs for a dataset of {len(out)}")


class ResidentBatches:
    """Batches of a training split held in device memory, augmented on the device.

    Parameters
    ----------
    dataset : `~astro_mantis.training.data.FusedDataset`
        The training split: a `~astro_mantis.training.data.ShardDataset`, an
        `~astro_mantis.training.data.ArrayDataset` or a
        `~astro_mantis.training.data.ConcatDataset` of them (anything with ``row``, ``z``
        and a ``dust`` array).
    batch_size : int
        Items per batch; the last incomplete batch of an epoch is dropped.
    sampler : `~astro_mantis.training.data.EpochSampler`
        Order of each epoch (shuffled or redshift-balanced).
    device : str or `torch.device`
        Where the split is held (``"cuda"``; ``"cpu"`` works too, for tests).
    seed : int
        Base seed of the transforms; epoch ``e`` draws from ``derive_seed(seed, e, 2)``.
    augment : bool
        Apply the rotations/flips and shifts.
    max_shift : int
        Largest shift in pixels.
    zero_point_jitter : float
        With ``augment``, also give each item's channels a zero-point error ``δ`` uniform
        in ``[-zero_point_jitter, zero_point_jitter]`` mag, applied to the stretched inputs
        by `~astro_mantis.training.data.rescale_fused_counts` as
        `~astro_mantis.training.data.jitter_zero_points` does (default 0: off).

    Notes
    -----
    Iterating yields ``(x, dust, z)``: float32 inputs, float32 dust and float64 redshifts, all
    on ``device``. Call `set_epoch` before each epoch.
    """

    def __init__(self, dataset, batch_size, sampler, device, seed=0, augment=True,
                 max_shift=MAX_SHIFT, zero_point_jitter=0.0):
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.sampler = sampler
        self.seed, self.augment, self.max_shift = int(seed), bool(augment), int(max_shift)
        self.zero_point_jitter = check_zero_point_jitter(zero_point_jitter)
        n = len(dataset)
        first = np.asarray(dataset.row(0)[0])
        self.x = torch.empty((n, *first.shape), dtype=torch.float16, device=self.device)
        _load_inputs(dataset, self.x)
        self.dust = torch.as_tensor(np.asarray(dataset.dust, np.float32), device=self.device)
        self.z = torch.as_tensor(np.asarray(dataset.z, np.float64), device=self.device)
        self.maps = tuple(torch.as_tensor(m, device=self.device)
                          for m in dihedral_index_maps(first.shape[-1]))
        self.epoch = 0

    def set_epoch(self, epoch):
        """Select the epoch whose order and transforms are drawn next."""
        self.epoch = int(epoch)
        self.sampler.set_epoch(epoch)

    def __len__(self):
        return len(self.sampler) // self.batch_size

    def __iter__(self):
        order = torch.as_tensor(list(iter(self.sampler)), dtype=torch.long)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, 2))
        m = len(self) * self.batch_size
        k = torch.randint(0, 8, (m,), generator=gen)
        shifts = torch.randint(-self.max_shift, self.max_shift + 1, (m, 2), generator=gen)
        c = self.x.shape[1]
        if self.zero_point_jitter:  # drawn after the transforms: those stay as without it
            delta = (torch.rand((m, c), generator=gen, dtype=torch.float64) * 2 - 1) \
                * self.zero_point_jitter
            scale = (10.0 ** (-0.4 * delta)).float().to(self.device)
        order, k, shifts = (t.to(self.device) for t in (order[:m], k, shifts))
        for s in range(0, m, self.batch_size):
            idx = order[s:s + self.batch_size]
            x = self.x[idx]
            if self.augment:
                sl = slice(s, s + self.batch_size)
                x = augment_batch(x, k[sl], shifts[sl, 0], shifts[sl, 1], self.maps).float()
                if self.zero_point_jitter:
                    x = rescale_fused_counts(x, scale[sl])
            yield x.float(), self.dust[idx], self.z[idx]
