# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Training from device-resident data, concatenated datasets and parallel fusing."""
import numpy as np
import pytest
import torch

from astro_mantis.training import ArrayDataset, TrainingData, train
from astro_mantis.training.data import ConcatDataset, EpochSampler, dihedral
from astro_mantis.training.resident import ResidentBatches, augment_batch, dihedral_index_maps

from test_training import QUIET, tiny_net, toy_data, toy_dataset

torch.set_num_threads(1)


def test_index_maps_reproduce_dihedral():
    x = np.arange(3 * 7 * 7).reshape(3, 7, 7)
    rows, cols = dihedral_index_maps(7)
    for k in range(8):
        assert np.array_equal(x[:, rows[k], cols[k]], dihedral(x, k))
    with pytest.raises(ValueError, match="side"):
        dihedral_index_maps(0)


def test_augment_batch_equals_the_per_item_augmentation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 9, 9)).astype(np.float32)
    k = np.array([0, 1, 2, 3, 5, 7])
    dy = np.array([0, 2, -2, 1, -1, 2])
    dx = np.array([1, -2, 0, 2, -1, -2])
    out = augment_batch(torch.from_numpy(x), torch.from_numpy(k), torch.from_numpy(dy),
                        torch.from_numpy(dx)).numpy()
    for b in range(len(x)):
        want = np.roll(dihedral(x[b], k[b]), (dy[b], dx[b]), axis=(-2, -1))
        assert np.array_equal(out[b], want)
    with pytest.raises(ValueError, match="shape"):
        augment_batch(torch.from_numpy(x), torch.from_numpy(k[:2]), torch.from_numpy(dy),
                      torch.from_numpy(dx))
    with pytest.raises(ValueError, match="square"):
        augment_batch(torch.zeros(2, 3, 4, 5), *(torch.zeros(2, dtype=torch.long),) * 3)


def test_concat_dataset_serves_its_parts_in_order():
    a, b = toy_dataset(5, 1), toy_dataset(7, 2)
    both = ConcatDataset([a, b])
    assert len(both) == 12
    assert np.array_equal(both.z, np.concatenate([a.z, b.z]))
    assert np.array_equal(both.row(6)[0], b.row(1)[0])
    assert np.array_equal(both.row(-1)[0], b.row(6)[0])
    assert both.dust.shape == (12, 2)
    with pytest.raises(IndexError):
        both.row(12)
    with pytest.raises(ValueError, match="at least one"):
        ConcatDataset([])


def test_resident_batches_cover_the_epoch_order():
    ds = ConcatDataset([toy_dataset(10, 1), toy_dataset(9, 2)])
    sampler = EpochSampler(len(ds), seed=3)
    batches = ResidentBatches(ds, 4, sampler, "cpu", seed=3, augment=False)
    batches.set_epoch(1)
    order = list(iter(sampler))[:16]
    seen = [z for _, _, zb in batches for z in zb.tolist()]
    assert len(batches) == 4 and seen == [float(ds.z[i]) for i in order]
    x, dust, z = next(iter(batches))
    assert x.dtype == torch.float32 and dust.dtype == torch.float32 and z.dtype == torch.float64
    # inputs are held in float16: the same values to its precision
    assert np.allclose(x[0].numpy(), ds.row(order[0])[0], rtol=1e-3, atol=1e-3)


def test_resident_augmentation_is_reproducible_per_epoch():
    ds = toy_dataset(8, 1)
    batches = ResidentBatches(ds, 8, EpochSampler(8, seed=0), "cpu", seed=5)
    batches.set_epoch(2)
    first = next(iter(batches))[0]
    again = next(iter(batches))[0]
    batches.set_epoch(3)
    other = next(iter(batches))[0]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_resident_zero_point_jitter_scales_bands_after_the_same_transforms():
    from astro_mantis.training.data import derive_seed, rescale_fused_counts

    ds = toy_dataset(8, 1)
    plain = ResidentBatches(ds, 8, EpochSampler(8, seed=0), "cpu", seed=5)
    jitter = ResidentBatches(ds, 8, EpochSampler(8, seed=0), "cpu", seed=5,
                             zero_point_jitter=0.05)
    for b in (plain, jitter):
        b.set_epoch(2)
    x0, x1 = next(iter(plain))[0], next(iter(jitter))[0]
    # the draws after the transforms' (so those stay as without jitter), applied through
    # the stretches by the data loader's own function
    gen = torch.Generator().manual_seed(derive_seed(5, 2, 2))
    torch.randint(0, 8, (8,), generator=gen)
    torch.randint(-2, 3, (8, 2), generator=gen)
    delta = (torch.rand((8, 9), generator=gen, dtype=torch.float64) * 2 - 1) * 0.05
    assert delta.abs().max() <= 0.05 and delta.std() > 0.01
    scale = (10.0 ** (-0.4 * delta)).float()
    assert torch.equal(x1, rescale_fused_counts(x0, scale))
    # a Pan-STARRS channel is an asinh stretch: sinh(8 y) scales with the counts
    bright = x0[:, 3].abs() > 0.3
    ratio = (torch.sinh(8 * x1[:, 3].double()) / torch.sinh(8 * x0[:, 3].double()))
    per_item = scale[:, 3, None, None].double().expand_as(ratio)
    assert torch.allclose(ratio[bright], per_item[bright], rtol=1e-4)
    assert torch.equal(x1, next(iter(jitter))[0])  # reproducible per epoch
    with pytest.raises(ValueError, match="zero_point_jitter"):
        ResidentBatches(ds, 8, EpochSampler(8, seed=0), "cpu", zero_point_jitter=1.0)
    off = ResidentBatches(ds, 8, EpochSampler(8, seed=0), "cpu", augment=False,
                          zero_point_jitter=0.05)
    off.set_epoch(2)
    sampler = EpochSampler(8, seed=0)
    sampler.set_epoch(2)
    order = list(iter(sampler))
    assert np.allclose(next(iter(off))[0][0].numpy(), ds.row(order[0])[0], rtol=1e-3,
                       atol=1e-3)


def test_resident_training_learns_and_resumes(tmp_path):
    kw = dict(epochs=4, batch_size=16, lr=3e-3, seed=2, device="cpu", resident=True, **QUIET)
    full = train(tiny_net(seed=5), toy_data(), tmp_path / "full", **kw)
    assert full.config["resident"] is True
    losses = [h["train_loss"] for h in full.history]
    assert losses[-1] < losses[0]
    train(tiny_net(seed=5), toy_data(), tmp_path / "split", stop_after=2, **kw)
    resumed = train(tiny_net(seed=5), toy_data(), tmp_path / "split", resume=True, **kw)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_training_data_from_several_directories(tmp_path):
    from astro_mantis.simulate.dataset import make_dataset
    from astro_mantis.simulate.render import ImagingConfig
    from astro_mantis.simulate.sky import MockSkyConfig

    pytest.importorskip("galsim")
    cfg = MockSkyConfig(imaging=ImagingConfig(noise=False, star_density=0,
                                              neighbour_density=0))
    make_dataset(6, tmp_path / "a", seed=1, config=cfg, split=(0.5, 0.5, 0.0), shard_size=2,
                 progress=False)
    make_dataset(4, tmp_path / "b", seed=2, config=cfg, split=(0.5, 0.0, 0.5), shard_size=2,
                 progress=False)
    data = TrainingData.from_directory([tmp_path / "a", tmp_path / "b"],
                                       cache_dir=tmp_path / "cache", workers=2)
    assert len(data.train) == 5 and len(data.validation) == 3 and len(data.test) == 2
    assert isinstance(data.train, ConcatDataset)
    assert len(data.manifest["runs"]) == 2
    assert len(list((tmp_path / "cache" / "train").glob("*.x.npy"))) == 3
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TrainingData.from_directory([tmp_path / "a", tmp_path / "nope"])


def test_array_dataset_resident_matches_dataloader_contract():
    ds = ArrayDataset(np.ones((4, 9, 6, 6), np.float32), np.zeros((4, 2)), np.full(4, 0.5))
    x, dust, z = next(iter(ResidentBatches(ds, 2, EpochSampler(4), "cpu")))
    assert x.shape == (2, 9, 6, 6) and dust.shape == (2, 2) and z.shape == (2,)
