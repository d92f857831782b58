# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of astro_mantis.training: data, loop, calibration, export and the CLI.

Everything trains tiny networks on tiny data for a few seconds on the CPU.
"""
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from astro_mantis.pdf import Z_EDGES
from astro_mantis.training import (ArrayDataset, PITMap, TemperatureCalibration, TrainingData,
                                   export_model, fit_temperature, read_model_card, train,
                                   verify_export)
from astro_mantis.training.calibration import calibration_summary, nll, pit_values
from astro_mantis.training.data import (EpochSampler, augment, balanced_weights, dihedral,
                                        inverse_dihedral, soft_targets, z_to_bin)
from astro_mantis.training.loop import (BEST_NAME, CHECKPOINT_NAME, METRICS_NAME,
                                        WarmupCosine, bin_cross_entropy, epoch_metrics,
                                        load_checkpoint)

torch.set_num_threads(1)


class TinyNet(nn.Module):
    """A stand-in with the models' contract: ``forward(x, dust) -> logits (N, 400)``."""

    def __init__(self, width=6, drop=0.1):
        super().__init__()
        self.conv = nn.Conv2d(9, width, 3, padding=1)
        self.drop = nn.Dropout(drop)
        self.head = nn.Linear(width + 2, len(Z_EDGES) - 1)

    def forward(self, x, dust):
        h = F.gelu(self.conv(x)).mean(dim=(2, 3))
        return self.head(self.drop(torch.cat([h, dust], dim=1)))


def tiny_net(seed=0, **kwargs):
    """A `TinyNet` with reproducible initial weights."""
    torch.manual_seed(seed)
    return TinyNet(**kwargs)


def toy_dataset(n, seed, size=12):
    """A learnable toy problem: the central brightness of every channel scales with z."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.1, 1.4, n)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    profile = np.exp(-(xx ** 2 + yy ** 2) / 12.0)
    x = (z[:, None, None, None] * profile * np.linspace(0.5, 1.5, 9)[:, None, None]
         + 0.01 * rng.standard_normal((n, 9, size, size))).astype(np.float32)
    return ArrayDataset(x, rng.uniform(0.0, 0.1, (n, 2)), z)


def toy_data(n_train=64, n_val=32):
    return TrainingData(train=toy_dataset(n_train, 1), validation=toy_dataset(n_val, 2),
                        test=toy_dataset(n_val, 3), manifest={"name": "toy"})


QUIET = dict(progress=False, deterministic=True)
#: Build arguments of a very small mantis-mini (a few thousand parameters).
TINY_MINI = {"widths": [4, 8], "depths": [1, 1], "hidden": 16, "drop": 0.1}


# ------------------------------------------------------------------------- data
def test_dihedral_group():
    x = np.arange(2 * 5 * 5, dtype=np.float32).reshape(2, 5, 5)
    # rotating twice by 180 degrees is the identity; four 90-degree turns too
    assert np.array_equal(dihedral(dihedral(x, 2), 2), x)
    y = x
    for _ in range(4):
        y = dihedral(y, 1)
    assert np.array_equal(y, x)
    images = {dihedral(x, k).tobytes() for k in range(8)}
    assert len(images) == 8  # the 8 elements are distinct
    for k in range(8):
        assert np.array_equal(inverse_dihedral(dihedral(x, k), k), x)
        # the same transform in every channel
        assert np.array_equal(dihedral(x, k)[1] - dihedral(x, k)[0], np.full((5, 5), 25.0))
    with pytest.raises(ValueError):
        dihedral(x, 8)


def test_augment_preserves_shape_label_and_content():
    ds = toy_dataset(4, 0, size=12)
    ds.augment = True
    x0, d0, z0 = ds.row(1)
    for epoch in range(3):
        ds.set_epoch(epoch)
        x, dust, z = ds[1]
        assert x.shape == (9, 12, 12) and x.dtype == torch.float32
        assert float(z) == z0 and np.array_equal(dust.numpy(), d0)
        # a permutation of the pixels: the sorted values of every channel are unchanged
        assert np.array_equal(np.sort(x.numpy().reshape(9, -1), axis=1),
                              np.sort(x0.reshape(9, -1), axis=1))
    # reproducible per (seed, epoch, index), different across epochs
    ds.set_epoch(0)
    a = ds[1][0]
    assert torch.equal(a, ds[1][0])
    ds.set_epoch(1)
    b = ds[1][0]
    ds.set_epoch(2)
    c = ds[1][0]
    assert not (torch.equal(a, b) and torch.equal(b, c))
    # the parameters returned undo exactly
    rng = np.random.default_rng(5)
    y, (k, dy, dx) = augment(x0, rng)
    assert abs(dy) <= 2 and abs(dx) <= 2
    back = inverse_dihedral(np.roll(y, (-dy, -dx), axis=(-2, -1)), k)
    assert np.array_equal(back, x0)


def _blob(size, sigma):
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    return np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))


def test_zero_point_jitter_is_a_zero_point_error_on_the_counts():
    """The jitter of a fused input is the fusion of counts with the drawn zero-point errors
    (not a multiplication of the stretched input)."""
    from astro_mantis.fusion.core import fuse_arrays
    from astro_mantis.training.data import jitter_zero_points

    rng = np.random.default_rng(0)
    ps1 = (rng.normal(0, 150, (1, 5, 170, 170)) + 2e4 * _blob(170, 6.0)).astype(np.float32)
    galex = np.repeat((0.002 + 0.04 * _blob(32, 4.0))[None, None], 2, 1).astype(np.float32)
    unwise = np.repeat((0.5 + 300 * _blob(32, 4.0))[None, None], 2, 1).astype(np.float32)
    x = fuse_arrays(galex, ps1, unwise, ebv=np.zeros((1, 2))).x[0]
    x[3] = 0.0  # a masked channel stays masked
    y, delta = jitter_zero_points(x, np.random.default_rng(1), 0.05)
    assert y.shape == x.shape and y.dtype == x.dtype and delta.shape == (9,)
    assert np.all(np.abs(delta) <= 0.05) and np.ptp(delta) > 0.02  # independent per band
    s = (10 ** (-0.4 * delta)).astype(np.float32)
    truth = fuse_arrays(galex * s[:2, None, None], ps1 * s[2:7, None, None],
                        unwise * s[7:, None, None], ebv=np.zeros((1, 2))).x[0]
    truth[3] = 0.0
    # Pan-STARRS (no resampling): exact; GALEX below the clip: exact; unWISE (resampled
    # after its stretch, a smooth source): close
    assert np.allclose(y[[2, 4, 5, 6]], truth[[2, 4, 5, 6]], atol=2e-6)
    assert x[:2].max() < 1 and np.allclose(y[:2], truth[:2], atol=2e-6)
    assert np.allclose(y[7:], truth[7:], atol=2e-3)
    assert not y[3].any()
    # the same generator state gives the same draws; amplitude 0 changes nothing, draws nothing
    again, d2 = jitter_zero_points(x, np.random.default_rng(1), 0.05)
    assert np.array_equal(again, y) and np.array_equal(d2, delta)
    rng = np.random.default_rng(2)
    same, d0 = jitter_zero_points(x, rng, 0.0)
    assert np.array_equal(same, x) and same is not x and not d0.any()
    assert rng.random() == np.random.default_rng(2).random()
    for bad in (-0.01, 0.6, float("nan"), "a lot"):
        with pytest.raises(ValueError, match="zero_point_jitter"):
            jitter_zero_points(x, rng, bad)
    with pytest.raises(ValueError, match="channels"):
        jitter_zero_points(x[0], rng, 0.05)
    with pytest.raises(ValueError, match="9"):
        jitter_zero_points(x[:5], rng, 0.05)


def test_rescale_fused_counts_follows_each_stretch():
    from astro_mantis.fusion.core import normalise_galex, normalise_panstarrs, normalise_unwise
    from astro_mantis.training.data import rescale_fused_counts

    counts = np.array([0.0, 0.01, 3.0, 40.0, 900.0, 2.5e4, 1e6], np.float32)
    galex = np.array([0.0, 0.001, 0.02, 0.045, 0.049, 0.06, 3.0], np.float32)
    x = np.stack([normalise_galex(galex)] * 2 + [normalise_panstarrs(counts)] * 5
                 + [normalise_unwise(counts)] * 2)[:, None, :]
    for f in (0.9, 1.1):
        s = np.full(9, f, np.float32)
        y = rescale_fused_counts(torch.from_numpy(x), torch.from_numpy(s)).numpy()
        assert y.dtype == np.float32 and y.shape == x.shape
        assert np.allclose(y[2:7], normalise_panstarrs(f * counts)[None, None], atol=2e-6)
        assert np.allclose(y[7:], normalise_unwise(f * counts)[None, None], atol=2e-6)
        # GALEX: exact below the clip; a pixel at the clip stays there (its counts are
        # unknown beyond it: taken to be above it by more than the error)
        unclipped = galex < 0.05
        assert np.allclose(y[:2, 0, unclipped], normalise_galex(f * galex[unclipped]),
                           atol=1e-7)
        assert np.all(y[:2, 0, ~unclipped] == 1.0)
    # a batch with one factor per item and channel, as the resident path uses it
    xb = torch.from_numpy(np.stack([x, x]))
    sb = torch.tensor([[0.9] * 9, [1.1] * 9])
    yb = rescale_fused_counts(xb, sb)
    for i in range(2):
        assert torch.equal(yb[i], rescale_fused_counts(xb[i], sb[i]))


def test_dataset_zero_point_jitter_follows_the_geometric_augmentation():
    from astro_mantis.training.data import derive_seed, jitter_zero_points

    ds = toy_dataset(4, 0, size=12)
    ds.augment = True
    ds.set_epoch(1)
    plain = ds[2][0].numpy()
    ds.zero_point_jitter = 0.04
    jittered = ds[2][0].numpy()
    # the same rotation and shift, then the zero-point errors drawn next from the item's
    # generator
    rng = np.random.default_rng(derive_seed(ds.seed, 1, 2))
    augment(ds.row(2)[0], rng)
    expected, delta = jitter_zero_points(plain, rng, 0.04)
    assert np.array_equal(jittered, expected)
    assert np.all(np.abs(delta) <= 0.04) and np.ptp(delta) > 0
    assert not np.allclose(jittered, plain)
    assert np.array_equal(jittered, ds[2][0].numpy())  # reproducible per (seed, epoch, index)
    ds.augment = False  # jitter is part of the augmentation: off with it
    assert np.array_equal(ds[2][0].numpy(), ds.row(2)[0])


def test_training_with_zero_point_jitter_is_recorded_and_resumes(tmp_path):
    kw = dict(epochs=2, batch_size=8, lr=1e-2, patience=None, seed=7, device="cpu",
              model_kwargs=TINY_MINI, **QUIET)
    with pytest.raises(ValueError, match="zero_point_jitter"):
        train("mantis-mini", toy_data(), tmp_path / "bad", zero_point_jitter=-0.1, **kw)
    one = train("mantis-mini", toy_data(), tmp_path / "one", zero_point_jitter=0.05, **kw)
    plain = train("mantis-mini", toy_data(), tmp_path / "plain", **kw)
    assert one.config["zero_point_jitter"] == 0.05 and plain.config["zero_point_jitter"] == 0.0
    # the jitter reaches the training steps: the same seed gives other weights
    assert any(not torch.equal(a, b) for a, b in zip(one.model.state_dict().values(),
                                                     plain.model.state_dict().values()))
    train("mantis-mini", toy_data(), tmp_path / "two", zero_point_jitter=0.05, stop_after=1, **kw)
    with pytest.raises(ValueError, match="zero_point_jitter"):
        train("mantis-mini", toy_data(), tmp_path / "two", resume=True, **kw)
    two = train("mantis-mini", toy_data(), tmp_path / "two", zero_point_jitter=0.05, resume=True,
                **kw)
    for a, b in zip(one.model.state_dict().values(), two.model.state_dict().values()):
        assert torch.equal(a, b)
    # a checkpoint written before the setting existed resumes as "no jitter"
    ckpt = tmp_path / "old" / CHECKPOINT_NAME
    train("mantis-mini", toy_data(), tmp_path / "old", stop_after=1, **kw)
    saved = load_checkpoint(ckpt)
    del saved["config"]["zero_point_jitter"]
    torch.save(saved, ckpt)
    assert train("mantis-mini", toy_data(), tmp_path / "old", resume=True, **kw).epochs_run == 2


def test_targets():
    z = np.array([0.0, 0.0039, 0.004, 0.5, 1.5999, 1.7, -0.1])
    assert list(z_to_bin(z)) == [0, 0, 1, 125, 399, 399, 0]
    assert torch.equal(z_to_bin(torch.tensor(z)), torch.as_tensor(z_to_bin(z)))
    zt = torch.tensor([0.301, 1.001, 0.001], dtype=torch.float64)
    hard = soft_targets(zt, 0)
    assert torch.equal(hard.argmax(1), z_to_bin(zt)) and torch.all(hard.sum(1) == 1)
    soft = soft_targets(zt, 3.0)
    assert torch.allclose(soft.sum(1), torch.ones(3))
    assert torch.equal(soft.argmax(1), z_to_bin(zt))
    centres = torch.as_tensor(0.5 * (Z_EDGES[1:] + Z_EDGES[:-1]), dtype=torch.float32)
    spread = torch.sqrt((soft[1] * (centres - 1.001) ** 2).sum())
    assert spread == pytest.approx(3 * 0.004, rel=0.02)
    logits = torch.randn(3, 400)
    assert torch.allclose(bin_cross_entropy(logits, zt, 0.0),
                          F.cross_entropy(logits, z_to_bin(zt)))


def test_balanced_weights_flatten_nz():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.uniform(0.0, 0.4, 3000), rng.uniform(0.4, 1.6, 1000)])
    w = balanced_weights(z, nbins=8, max_ratio=100)
    assert w.sum() == pytest.approx(len(z))
    weighted, _ = np.histogram(z, bins=8, range=(0, 1.6), weights=w)
    assert np.ptp(weighted) / weighted.mean() < 1e-9
    capped = balanced_weights(np.r_[np.zeros(1000), [1.0]], nbins=8, max_ratio=20)
    assert capped.max() / capped.min() == pytest.approx(20)


def test_epoch_sampler():
    s = EpochSampler(50, seed=3)
    s.set_epoch(0)
    a = list(s)
    assert sorted(a) == list(range(50)) and a == list(s)
    s.set_epoch(1)
    assert list(s) != a
    w = np.r_[np.ones(25), np.zeros(25)]
    sw = EpochSampler(50, seed=3, weights=w)
    draws = list(sw)
    assert len(draws) == 50 and max(draws) < 25 and draws == list(sw)


def test_warmup_cosine():
    f = WarmupCosine(100, 10, final=0.0)
    vals = [f(i) for i in range(100)]
    assert vals[0] == pytest.approx(1 / 11) and vals[9] == pytest.approx(10 / 11)
    assert vals[10] == pytest.approx(1.0) and all(np.diff(vals[10:]) <= 0)
    assert f(100) == pytest.approx(0.0)


def test_epoch_metrics_agree_with_metrics_module():
    from astro_mantis.metrics import photoz_metrics
    from astro_mantis.pdf import RedshiftPDF

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(50, 400)) * 3
    z = rng.uniform(0, 1.5, 50)
    mine = epoch_metrics(logits, z, temperature=1.7)
    ref = photoz_metrics(None, z, pdf=RedshiftPDF.from_logits(logits, temperature=1.7),
                         n_bootstrap=0)
    assert mine["cde_loss"] == pytest.approx(ref["cde_loss"], rel=1e-9)
    assert mine["nmad"] == pytest.approx(ref["nmad"], rel=1e-9)
    assert mine["outlier_frac"] == pytest.approx(ref["outlier_0.15"])
    assert mine["outlier_frac_005"] == pytest.approx(ref["outlier_0.05"])
    assert mine["loss"] == pytest.approx(nll(logits, z, 1.7))


# ------------------------------------------------------------------------- loop
def test_loss_decreases_on_a_learnable_problem(tmp_path):
    torch.manual_seed(0)
    res = train(TinyNet(drop=0.0), toy_data(128, 32), tmp_path, epochs=6, batch_size=16,
                lr=2e-2, weight_decay=0.0, patience=None, smoothing_sigma=8.0, seed=0, **QUIET)
    losses = [h["train_loss"] for h in res.history]
    assert losses[-1] < losses[0] - 0.2
    assert res.history[-1]["val_loss"] < res.history[0]["val_loss"]
    assert res.stopped == "completed" and res.epochs_run == 6
    log = [json.loads(line) for line in (tmp_path / METRICS_NAME).read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, 7))
    assert set(log[0]) >= {"train_loss", "val_loss", "val_cde_loss", "val_nmad",
                           "val_outlier_frac", "lr", "seconds"}
    assert not res.model.training
    assert res.checkpoint_path == tmp_path / CHECKPOINT_NAME and res.checkpoint_path.exists()
    assert res.metrics_path == tmp_path / METRICS_NAME


def test_evaluate_and_calibrate_model_are_the_pieces_on_the_model_logits():
    """`evaluate` and `calibrate_model` run the model over the data once and apply
    `epoch_metrics`, `calibration_summary` and `TemperatureCalibration.fit` to its logits."""
    from astro_mantis.training import calibrate_model
    from astro_mantis.training.loop import collect_logits, evaluate

    model = tiny_net(seed=3).eval()
    data = toy_dataset(48, 4)
    logits, z = collect_logits(model, data, batch_size=16)
    assert logits.shape == (48, len(Z_EDGES) - 1) and np.array_equal(z, data.z)
    got = evaluate(model, data, temperature=1.7, batch_size=16)
    expected = {"temperature": 1.7, **epoch_metrics(logits, z, 1.7),
                **calibration_summary(logits, z, 1.7)}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, nan_ok=True), key
    assert got["n"] == 48
    cal = calibrate_model(model, data, batch_size=16)
    ref = TemperatureCalibration.fit(logits, z, edges=Z_EDGES, pit=True)
    assert cal.temperature == pytest.approx(ref.temperature, rel=1e-6)
    np.testing.assert_allclose(cal.pit_map.values, ref.pit_map.values, atol=1e-12)
    assert calibrate_model(model, data, batch_size=16, pit=False).pit_map is None


def test_exact_resume(tmp_path):
    """2 epochs in one go == 1 epoch, resume, 1 epoch: bit for bit (weights, optimiser)."""
    kw = dict(epochs=2, batch_size=8, lr=1e-2, patience=None, seed=7, augment=True,
              balanced=True, smoothing_sigma=2.0, model_kwargs=TINY_MINI, **QUIET)
    one = train("mantis-mini", toy_data(), tmp_path / "one", **kw)
    part = train("mantis-mini", toy_data(), tmp_path / "two", stop_after=1, **kw)
    assert part.stopped == "stop_after" and part.epochs_run == 1
    with pytest.raises(FileExistsError):
        train("mantis-mini", toy_data(), tmp_path / "two", **kw)
    with pytest.raises(ValueError, match="lr"):
        train("mantis-mini", toy_data(), tmp_path / "two", resume=True, **dict(kw, lr=2e-2))
    # settings that contradict each other are refused (resume and overwrite once resumed;
    # the jitter without the augmentation was dropped without a word)
    for extra, message in ((dict(resume=True, overwrite=True), "exclude each other"),
                           (dict(augment=False, zero_point_jitter=0.02), "needs augment=True"),
                           (dict(num_workers=-1), "num_workers"),
                           (dict(workers=0), "workers must be 1")):
        with pytest.raises(ValueError, match=message):
            train("mantis-mini", toy_data(), tmp_path / "two", **dict(kw, **extra))
    # another architecture, or other data, is not this run: refused, naming what differs
    # (they once resumed and overwrote the checkpoint's record of the first half)
    with pytest.raises(ValueError, match="model_kwargs .* in the checkpoint"):
        train("mantis-mini", toy_data(), tmp_path / "two", resume=True,
              **dict(kw, model_kwargs=dict(TINY_MINI, hidden=8)))
    seeded = TrainingData(train=toy_dataset(64, 1), validation=toy_dataset(32, 2),
                          manifest={"runs": [{"seed": 5, "n": 64, "path": "/a"}]})
    train("mantis-mini", seeded, tmp_path / "seeded", stop_after=1, **kw)
    other = TrainingData(train=toy_dataset(64, 1), validation=toy_dataset(32, 2),
                         manifest={"runs": [{"seed": 6, "n": 64, "path": "/a"}]})
    with pytest.raises(ValueError, match=r"data_identity \[\[5, 64\]\] in the checkpoint"):
        train("mantis-mini", other, tmp_path / "seeded", resume=True, **kw)
    moved = TrainingData(train=toy_dataset(64, 1), validation=toy_dataset(32, 2),
                         manifest={"runs": [{"seed": 5, "n": 64, "path": "/elsewhere"}]})
    assert train("mantis-mini", moved, tmp_path / "seeded", resume=True,
                 **kw).stopped == "completed"  # the same data on another machine resume
    torch.manual_seed(123)  # the global generators' state is restored from the checkpoint
    two = train("mantis-mini", toy_data(), tmp_path / "two", resume=True, **kw)
    assert two.epochs_run == 2 and two.stopped == "completed"
    a = load_checkpoint(tmp_path / "one" / CHECKPOINT_NAME)
    b = load_checkpoint(tmp_path / "two" / CHECKPOINT_NAME)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["scheduler"] == b["scheduler"]
    # mixed precision on a CPU is bfloat16 autocast where the CPU has it natively
    from astro_mantis.models.precision import native_precisions

    native = "bfloat16" in native_precisions("cpu")
    assert a["config"]["amp"] is native
    assert a["config"]["amp_dtype"] == ("bfloat16" if native else None)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in one.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in two.history]
    assert len((tmp_path / "two" / METRICS_NAME).read_text().splitlines()) == 2
    # a module object instead of a name resumes the same way
    three = train(TinyNet(), toy_data(), tmp_path / "three", stop_after=1,
                  **dict(kw, model_kwargs=None))
    three = train(tiny_net(seed=5), toy_data(), tmp_path / "three", resume=True,
                  **dict(kw, model_kwargs=None))
    assert three.epochs_run == 2


def test_resume_refuses_another_precision_or_residency(tmp_path, monkeypatch):
    """Mixed precision and the resident path shape the result: a resume keeps them (they
    once switched silently, and the card recorded only the last call's)."""
    import astro_mantis.models.precision as precision

    monkeypatch.setattr(precision, "native_precisions", lambda device: ("float32", "bfloat16"))
    kw = dict(epochs=2, batch_size=8, lr=1e-2, patience=None, seed=7, device="cpu",
              model_kwargs=TINY_MINI, **QUIET)
    train("mantis-mini", toy_data(), tmp_path / "amp", stop_after=1, amp=True, **kw)
    with pytest.raises(ValueError, match="amp True in the checkpoint, False now"):
        train("mantis-mini", toy_data(), tmp_path / "amp", resume=True, amp=False, **kw)
    done = train("mantis-mini", toy_data(), tmp_path / "amp", resume=True, amp=True, **kw)
    assert done.stopped == "completed" and done.config["amp_dtype"] == "bfloat16"
    train("mantis-mini", toy_data(), tmp_path / "res", stop_after=1, resident=True, **kw)
    with pytest.raises(ValueError, match="resident True in the checkpoint, False now"):
        train("mantis-mini", toy_data(), tmp_path / "res", resume=True, resident=False, **kw)
    assert train("mantis-mini", toy_data(), tmp_path / "res", resume=True, resident=True,
                 **kw).config["resident"] is True
    # a checkpoint from before "resident" was recorded ran on the data-loader path
    train("mantis-mini", toy_data(), tmp_path / "old", stop_after=1, **kw)
    ck = load_checkpoint(tmp_path / "old" / CHECKPOINT_NAME)
    del ck["config"]["resident"]
    torch.save(ck, tmp_path / "old" / CHECKPOINT_NAME)
    with pytest.raises(ValueError, match="resident False in the checkpoint, True now"):
        train("mantis-mini", toy_data(), tmp_path / "old", resume=True, resident=True, **kw)
    assert train("mantis-mini", toy_data(), tmp_path / "old", resume=True,
                 **kw).stopped == "completed"


def test_mixed_precision_type(monkeypatch):
    import astro_mantis.models.precision as precision
    from astro_mantis.training.loop import _amp_dtype

    assert _amp_dtype(False, "cpu") is None
    monkeypatch.setattr(precision, "native_precisions", lambda device: ("float32", "bfloat16"))
    assert _amp_dtype(True, "cpu") is torch.bfloat16
    # emulated bfloat16 is slower than float32: no autocast on such a CPU
    monkeypatch.setattr(precision, "native_precisions", lambda device: ("float32",))
    assert _amp_dtype(True, "cpu") is None
    assert _amp_dtype(True, "meta") is None


def test_early_stopping_and_time_budget(tmp_path):
    # lr = 0: nothing improves after the first epoch
    res = train(TinyNet(), toy_data(32, 16), tmp_path / "es", epochs=20, batch_size=16, lr=0.0,
                patience=2, **QUIET)
    assert res.stopped == "early stopping" and res.epochs_run == 3 and res.best_epoch == 1
    assert (tmp_path / "es" / BEST_NAME).exists()
    again = train(TinyNet(), toy_data(32, 16), tmp_path / "es", epochs=20, batch_size=16,
                  lr=0.0, patience=2, resume=True, **QUIET)
    assert again.stopped == "early stopping" and again.epochs_run == 3
    res = train(TinyNet(), toy_data(32, 16), tmp_path / "tb", epochs=20, batch_size=16,
                patience=None, max_minutes=1e-6, **QUIET)
    assert res.stopped == "time budget" and res.epochs_run == 1


# ------------------------------------------------------------------------- calibration
def test_temperature_scaling_recovers_known_temperature():
    rng = np.random.default_rng(42)
    n, t_true = 4000, 2.0
    centres = 0.5 * (Z_EDGES[1:] + Z_EDGES[:-1])
    mu = rng.uniform(0.1, 1.5, n)
    logits = -0.5 * ((centres[None, :] - mu[:, None]) / 0.02) ** 2 / 4.0
    logits += rng.normal(0, 0.5, logits.shape)
    p = np.exp(logits / t_true - (logits / t_true).max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    cdf = p.cumsum(1)
    k = (cdf < rng.uniform(size=(n, 1))).sum(1).clip(0, 399)
    z = Z_EDGES[k] + rng.uniform(size=n) * 0.004
    assert fit_temperature(logits, z) == pytest.approx(t_true, rel=0.05)
    cal = TemperatureCalibration.fit(logits, z, pit=False)
    assert cal.pit_map is None and cal.method == "temperature scaling"
    assert cal.after["nll"] <= cal.before["nll"]
    assert cal.after["pit_ks"] < cal.before["pit_ks"]
    assert abs(cal.after["coverage68"] - 0.68) < abs(cal.before["coverage68"] - 0.68)
    assert abs(cal.after["coverage68"] - 0.68) < 0.03
    d = cal.to_dict()
    assert d["temperature"] == cal.temperature and json.dumps(d)
    # bin indices work as well as redshifts
    assert fit_temperature(logits, k) == pytest.approx(cal.temperature)
    s = calibration_summary(logits, z, cal.temperature)
    assert s == cal.after


def _miscalibrated(rng, n):
    """Logits of PDFs that are too narrow and skewed, and true z drawn from the truth.

    The truth for object i is a mixture: 80% a Gaussian at mu_i of width 0.05, 20% a
    Gaussian of width 0.2 (outliers); the "network" predicts only the narrow
    component, 0.6 times too narrow. No temperature can fix both the core and the
    tails.
    """
    centres = 0.5 * (Z_EDGES[1:] + Z_EDGES[:-1])
    mu = rng.uniform(0.3, 1.3, n)
    logits = -0.5 * ((centres[None, :] - mu[:, None]) / 0.03) ** 2
    wide = rng.uniform(size=n) < 0.2
    z = mu + rng.normal(0, np.where(wide, 0.2, 0.05))
    return logits, np.clip(z, 0.001, 1.599)


def test_pit_map_fixes_a_shape_no_temperature_fixes():
    from scipy import stats

    rng = np.random.default_rng(7)
    vl, vz = _miscalibrated(rng, 3000)
    tl, tz = _miscalibrated(rng, 3000)  # held out: same process, new draws
    temp_only = TemperatureCalibration.fit(vl, vz, pit=False)
    cal = TemperatureCalibration.fit(vl, vz)
    assert cal.temperature == temp_only.temperature
    assert cal.method == "temperature scaling + PIT recalibration"
    # on held-out data the PIT map brings KS and coverage where a temperature cannot
    before = calibration_summary(tl, tz, temp_only.temperature)
    after = calibration_summary(tl, tz, cal.temperature, pit_map=cal.pit_map)
    assert before["pit_ks"] > 0.08
    assert after["pit_ks"] < 0.035 and abs(after["coverage68"] - 0.68) < 0.03
    assert stats.kstest(pit_values(tl, tz, cal.temperature, pit_map=cal.pit_map),
                        "uniform").statistic == pytest.approx(after["pit_ks"])
    # the map is the validation PIT's empirical CDF at the knots (mixed with the identity)
    pm = cal.pit_map
    pit_val = pit_values(vl, vz, cal.temperature)
    ecdf = np.mean(pit_val[:, None] <= pm.knots[None, 1:-1], axis=0)
    assert np.allclose(pm.values[1:-1], 0.99 * ecdf + 0.01 * pm.knots[1:-1])
    assert np.all(np.diff(pm.values) > 0) and pm.n == 3000
    # card round trip
    d = cal.to_dict()
    assert json.loads(json.dumps(d)) == d and "pit_map" in d
    back = TemperatureCalibration.from_dict(d)
    assert np.array_equal(back.pit_map.values, pm.values)
    assert back.temperature == cal.temperature and back.method == cal.method
    pdf = cal.apply_pdf(tl[:5])
    assert np.allclose(pdf.cdf(tz[:5]), pm(pit_values(tl[:5], tz[:5], cal.temperature)),
                       atol=0.02)


def test_remap_cdf():
    from astro_mantis.pdf import RedshiftPDF

    rng = np.random.default_rng(3)
    p = RedshiftPDF(rng.uniform(0, 1, (4, 400)) ** 4)
    same = p.remap_cdf([0, 1], [0, 1])
    assert np.allclose(same.pdf, p.pdf)
    knots, values = np.array([0, 0.5, 1.0]), np.array([0, 0.8, 1.0])
    q = p.remap_cdf(knots, values)
    # the new CDF at every edge is G(old CDF); PDFs stay normalised
    grid = Z_EDGES[np.newaxis, 1:-1]
    assert np.allclose(q.cdf(grid), np.interp(p.cdf(grid), knots, values))
    assert np.allclose((q.pdf * q.widths).sum(1), 1)
    # NaN rows stay invalid
    bad = RedshiftPDF(np.vstack([p.pdf[:1], np.full((1, 400), np.nan)]), allow_invalid=True)
    r = bad.remap_cdf(knots, values)
    assert r.valid.tolist() == [True, False] and np.isnan(r.pdf[1]).all()
    for k, v in (([0, 1], [0, 0.9]), ([0, 0.5, 0.4, 1], [0, 0.5, 0.6, 1]),
                 ([0, 0.5, 1], [0, 0.6, 0.5])):
        with pytest.raises(ValueError, match="CDF map"):
            p.remap_cdf(k, v)
    with pytest.raises(ValueError, match="PIT map"):
        PITMap([0, 1], [0, 0.5])
    # PITMap.apply is remap_cdf through the map's own knots
    pm = PITMap(knots, values)
    np.testing.assert_array_equal(pm.apply(p).pdf, q.pdf)
    assert pm(0.5) == pytest.approx(0.8) and pm(0.25) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="no finite PIT"):
        PITMap.fit([np.nan])


def test_predict_applies_the_card_pit_map():
    from astro_mantis.models import build_model, predict
    from astro_mantis.pdf import RedshiftPDF

    torch.manual_seed(0)
    net = build_model("mantis-mini", **TINY_MINI).eval()
    x, d = np.random.default_rng(1).random((3, 9, 120, 120), dtype=np.float32), np.zeros((3, 2))
    plain = predict(x, net, dust=d)
    pm = PITMap([0, 0.3, 1], [0, 0.6, 1])
    net.meta["calibration"] = {"method": "temperature scaling + PIT recalibration",
                               "pit_map": pm.to_dict()}
    cal = predict(x, net, dust=d)
    assert cal.meta["pit_recalibrated"] and "pit_recalibrated" not in plain.meta
    assert np.allclose(cal.pdf, pm.apply(RedshiftPDF(plain.pdf)).pdf, rtol=1e-5, atol=1e-6)
    assert not np.allclose(cal.pdf, plain.pdf)


# ------------------------------------------------------------------------- export
def test_export_round_trip(tmp_path):
    from astro_mantis.models import build_model, load_model

    torch.manual_seed(3)
    net = build_model("mantis-mini", **TINY_MINI).eval()
    out = export_model(net, tmp_path, "tiny-mini", temperature=1.3,
                       metrics={"validation": {"nmad": np.float64(0.05)}},
                       data={"n_train": 10}, command="astro-mantis train ...", seed=0, epochs=2)
    assert out.weights_path.name == "tiny-mini.safetensors"
    assert out.card_path.name == "tiny-mini.json"
    digest = hashlib.sha256(out.weights_path.read_bytes()).hexdigest()
    card = read_model_card(out.card_path)
    assert card == read_model_card(out.weights_path) == out.card
    assert card["sha256"] == digest and card["size"] == out.weights_path.stat().st_size
    assert card["model"] == "mantis-mini" and card["architecture"]["widths"] == [4, 8]
    assert card["temperature"] == 1.3 and card["seed"] == 0 and card["epochs"] == 2
    assert card["metrics"]["validation"]["nmad"] == 0.05
    assert np.allclose(card["bin_edges"], Z_EDGES) and len(card["bin_edges"]) == 401
    assert card["n_parameters"] == sum(p.numel() for p in net.parameters())
    state = verify_export(out.weights_path)
    assert state.keys() == net.state_dict().keys()
    # the registry loads the pair: architecture from the card, checksum verified
    loaded = load_model("mantis-mini", weights=out.weights_path)
    assert loaded.meta["temperature"] == 1.3
    x, d = torch.rand(2, 9, 120, 120), torch.zeros(2, 2)
    with torch.no_grad():
        assert torch.equal(net(x, d), loaded(x, d))
    # a changed file no longer verifies
    raw = bytearray(out.weights_path.read_bytes())
    raw[-1] ^= 1
    out.weights_path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256"):
        verify_export(out.weights_path)


# ------------------------------------------------------------------------- shards and CLI
@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    """A tiny training data directory from the mock sky, in the real shard format."""
    from astro_mantis.simulate.dataset import make_dataset

    path = tmp_path_factory.mktemp("mock_data")
    make_dataset(16, path, seed=1, split=(0.5, 0.25, 0.25), shard_size=4, progress=False)
    return path


def _cutouts_from_shard(shard):
    """MultiSurveyCutout objects holding a shard's raw arrays (missing surveys left out)."""
    from astropy.coordinates import SkyCoord

    from astro_mantis import MultiSurveyCutout
    from astro_mantis.surveys import SURVEYS, SurveyImage
    from astropy.wcs import WCS

    cuts = []
    for j in range(len(shard["z"])):
        images, missing = {}, []
        for name in ("galex", "panstarrs", "unwise"):
            data = shard[name][j]
            if np.isnan(data).all():
                missing.append(name)
                continue
            survey = SURVEYS[name]
            images[name] = SurveyImage(name, data, WCS(naxis=2), survey.unit, survey.bands)
        cuts.append(MultiSurveyCutout(SkyCoord(150.0, 2.0, unit="deg"), images,
                                      missing=missing))
    return cuts


def test_shard_dataset_matches_early_fusion(shard_dir, tmp_path):
    from astro_mantis.fusion import early_fusion
    from astro_mantis.training import ShardDataset
    from astro_mantis.training.data import load_shard

    ds = ShardDataset(shard_dir, "train", cache_dir=tmp_path / "c32", cache_dtype="float32")
    assert len(ds) == 8 and ds.z.shape == (8,) and ds.valid.shape == (8, 9)
    start = 0
    for path in ds.shards:
        shard = load_shard(path)
        ebv = np.stack([shard["ebv_csfd"], shard["ebv_planck"]], axis=1)
        ref = early_fusion(_cutouts_from_shard(shard), ebv=ebv)
        for j in range(len(shard["z"])):
            x, dust, z = ds.row(start + j)
            assert np.array_equal(x, ref.x[j])
            assert np.array_equal(dust, ref.dust[j]) and z == shard["z"][j]
            assert np.array_equal(ds.valid[start + j], ref.valid[j])
        start += len(shard["z"])
    # float16 cache: same items to float16 rounding; the cache is reused, not rebuilt
    ds16 = ShardDataset(shard_dir, "train", cache_dir=tmp_path / "c16")
    stamp = [p.stat().st_mtime_ns for p in sorted((tmp_path / "c16").rglob("*.npy"))]
    again = ShardDataset(shard_dir, "train", cache_dir=tmp_path / "c16")
    assert stamp == [p.stat().st_mtime_ns for p in sorted((tmp_path / "c16").rglob("*.npy"))]
    x16, x32 = again[3][0].numpy(), ds[3][0].numpy()
    assert np.allclose(x16, x32, rtol=1e-3, atol=1e-4)
    assert ds16[3][0].shape == (9, 120, 120)


def _cache_writer(shard_dir, cache_dir, dtype="float32"):
    """A bare ShardDataset that only fills the cache (as the parallel fusing workers do)."""
    from astro_mantis.training import ShardDataset
    from astro_mantis.training.data import list_shards

    ds = ShardDataset.__new__(ShardDataset)
    ds.directory, ds.split, ds.cache_dir = shard_dir, "train", cache_dir
    ds.cache_dtype, ds.panstarrs_exposure = np.dtype(dtype), "stack"
    return ds, list_shards(shard_dir, "train")[0]


def test_fused_cache_failed_write_leaves_old_entry_and_no_temporary(shard_dir, tmp_path,
                                                                     monkeypatch):
    """A fusing that fails midway (full disk, interrupt) leaves the old cache files as
    they were and no temporary file (the fixed ``.x.npy.tmp.npy`` once stayed behind)."""
    from astro_mantis.training import data

    ds, path = _cache_writer(shard_dir, tmp_path)
    xpath, _ = ds._ensure_cached(path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "train").iterdir()}
    real = data.fuse_shard_arrays

    def fail(*args, **kwargs):
        real(*args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(data, "_CACHE_VERSION", data._CACHE_VERSION + 1)  # force a rebuild
    monkeypatch.setattr(data, "fuse_shard_arrays", fail)
    with pytest.raises(OSError, match="No space left"):
        ds._ensure_cached(path)
    assert {p.name: p.read_bytes() for p in (tmp_path / "train").iterdir()} == before


def test_fused_cache_torn_entry_is_rebuilt_not_read(shard_dir, tmp_path):
    """Cache files cut short or emptied (a machine crash: the cache is not flushed to
    disk) under a valid signature are rebuilt; an empty .meta.npz once raised EOFError
    and a short .x.npy was reused, to fail at its first memory-mapped row."""
    from astro_mantis.training import ShardDataset

    first = ShardDataset(shard_dir, "train", cache_dir=tmp_path, cache_dtype="float32")
    want = first[5][0].numpy()
    xs = sorted((tmp_path / "train").glob("*.x.npy"))
    metas = sorted((tmp_path / "train").glob("*.meta.npz"))
    metas[0].write_bytes(b"")
    xs[1].write_bytes(xs[1].read_bytes()[:1000])
    again = ShardDataset(shard_dir, "train", cache_dir=tmp_path, cache_dtype="float32")
    assert np.array_equal(again[5][0].numpy(), want)
    assert np.array_equal(again.ids, first.ids) and np.array_equal(again.z, first.z)


def test_fused_cache_concurrent_writers_of_one_entry(shard_dir, tmp_path, monkeypatch):
    """Two processes fusing the same shard into one cache (two runs sharing a cache
    directory) once wrote the same temporary file: one truncated the other's, and the
    second rename failed (FileNotFoundError). Each now writes its own."""
    import threading

    from astro_mantis.training import data

    ds, path = _cache_writer(shard_dir, tmp_path)
    real, both_writing = data.fuse_shard_arrays, threading.Barrier(2, timeout=60)

    def fuse_together(*args, **kwargs):
        both_writing.wait()  # both writers have their output file open here
        return real(*args, **kwargs)

    monkeypatch.setattr(data, "fuse_shard_arrays", fuse_together)
    results, errors = [], []

    def write():
        try:
            results.append(ds._ensure_cached(path))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    monkeypatch.setattr(data, "fuse_shard_arrays", None)  # the entry is whole: reused
    xpath, meta = ds._ensure_cached(path)
    assert np.array_equal(np.load(xpath), np.load(results[0][0]))
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == sorted(
        [xpath.name, xpath.name.replace(".x.npy", ".meta.npz"),
         xpath.name.replace(".x.npy", ".json")])


def test_cli_train(shard_dir, tmp_path, capsys):
    from astro_mantis.cli import main
    from astro_mantis.models import load_model

    out = tmp_path / "run"
    args = ["train", "--data", str(shard_dir), "--out", str(out), "--model", "mantis-mini",
            "--model-arg", "widths=[4,8]", "--model-arg", "depths=[1,1]",
            "--model-arg", "hidden=16", "--epochs", "2", "--batch-size", "4", "--lr", "0.01",
            "--seed", "3", "--device", "cpu", "--no-progress", "--zero-point-jitter", "0.02"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "best epoch" in text and "calibration" in text and "test (4)" in text
    for name in ("metrics.jsonl", "checkpoint.pt", "best_model.pt", "mantis-mini.safetensors",
                 "mantis-mini.json"):
        assert (out / name).is_file(), name
    card = read_model_card(out / "mantis-mini.json")
    assert card["command"].startswith("astro-mantis train --data ")
    assert "--seed 3" in card["command"] and card["seed"] == 3
    assert set(card["metrics"]) == {"validation", "test"}
    assert card["data"]["splits"]["train"]["n"] == 8
    assert card["training"]["config"]["n_train"] == 8
    assert card["training_redshifts"]["n"] == 8 and len(card["training_redshifts"]["counts"]) == 400
    assert card["training"]["config"]["zero_point_jitter"] == 0.02
    assert "--zero-point-jitter 0.02" in card["command"]
    assert "--cache-dtype float16" in card["command"]
    assert card["training"]["config"]["cache_dtype"] == "float16"
    assert card["calibration"]["method"] == "temperature scaling + PIT recalibration"
    assert len(card["calibration"]["pit_map"]["knots"]) == 25
    assert card["temperature"] == card["calibration"]["temperature"] > 0
    verify_export(out / "mantis-mini.safetensors")
    net = load_model("mantis-mini", weights=out / "mantis-mini.safetensors")
    assert net.meta["architecture"]["widths"] == [4, 8]
    # an existing run needs --resume (which finds it complete) or --overwrite
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert main(["train", "--data", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert main(args + ["--overwrite", "--model", "no-such-model"]) == 2
    capsys.readouterr()
    assert main(args + ["--overwrite", "--zero-point-jitter", "-1"]) == 2
    assert "--zero-point-jitter" in capsys.readouterr().err
    # unusable settings answer 2 with a message (they once raised a traceback, or were
    # ignored), before any training
    bad = [(["--resume", "--lr", "0.02"], "cannot resume: .*lr 0.01 in the checkpoint, 0.02 now"),
           (["--overwrite", "--batch-size", "64"], "fewer than one batch of 64"),
           (["--overwrite", "--no-augment"], "--zero-point-jitter is part of the augment"),
           (["--overwrite", "--device", "nonsense"], "--device 'nonsense'"),
           (["--overwrite", "--workers", "-1"], "--workers: expected an integer of 0"),
           (["--overwrite", "--seed", "-3"], "--seed: expected an integer of 0"),
           (["--overwrite", "--resume"], "not allowed with argument --overwrite")]
    before = (out / "checkpoint.pt").stat().st_mtime_ns
    for extra, message in bad:
        assert main(args + extra) == 2, extra
        assert re.search(message, capsys.readouterr().err), extra
    assert (out / "checkpoint.pt").stat().st_mtime_ns == before


def test_cli_train_help(capsys):
    from astro_mantis.cli import main

    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--data", "--out", "--model", "--epochs", "--batch-size", "--lr", "--seed",
                   "--device", "--resume", "--max-minutes", "--patience", "--balanced",
                   "--smoothing-sigma", "--zero-point-jitter", "metrics.jsonl", "checkpoint.pt"):
        assert option in text, option


def test_cli_train_spectra(shard_dir, tmp_path, capsys):
    """--spectra: the weight spectra logged after every epoch, in the metrics too, plotted."""
    import json

    from astro_mantis.cli import main

    out = tmp_path / "run"
    args = ["train", "--data", str(shard_dir), "--out", str(out), "--model", "mantis-mini",
            "--model-arg", "widths=[4,8]", "--model-arg", "depths=[1,1]",
            "--model-arg", "hidden=16", "--epochs", "2", "--batch-size", "4", "--lr", "0.01",
            "--seed", "3", "--device", "cpu", "--no-progress", "--spectra", "--no-calibrate"]
    assert main(args) == 0
    assert "spectra.png" in capsys.readouterr().out
    lines = [json.loads(line) for line in (out / "spectra.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2] and lines[0]["layers"]
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("outliers" in h and "alpha_median" in h for h in history)
    assert (out / "spectra.png").stat().st_size > 1000
    card = read_model_card(out / "mantis-mini.json")
    assert "--spectra" in card["command"]


_FUSE_AFTER_TORCH = """
import sys, torch
torch.set_num_threads(2)
x = torch.randn(8, 9, 120, 120)
for _ in range(3):  # start PyTorch's thread pool in this (the parent) process
    torch.nn.functional.conv2d(x, torch.randn(16, 9, 3, 3)).sum().item()
from astro_mantis.training import ShardDataset
ds = ShardDataset(sys.argv[1], "train", cache_dir=sys.argv[2], workers=2)
print(len(ds))
"""


def test_parallel_fusing_after_pytorch_ran(shard_dir, tmp_path):
    """A forked copy of a process whose PyTorch thread pool ran waited for ever at its
    first PyTorch call (seen in the recipe, which loads the initial weights before
    fusing); the fusing workers now run PyTorch on one thread."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FUSE_AFTER_TORCH, str(shard_dir),
                           str(tmp_path / "cache")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "8"
    assert len(list((tmp_path / "cache" / "train").glob("*.x.npy"))) == 2


def test_training_redshifts_bins_are_half_open():
    """z = 1.6, the last edge, is outside the model's bins (np.histogram alone closes its
    last bin and once counted it there)."""
    from astro_mantis.training.pipeline import training_redshifts

    record = training_redshifts([0.5, 1.5999, 1.6, 2.0, -0.1, np.nan])
    assert record["n"] == 2 and record["outside"] == 4
    assert record["counts"][-1] == 1 and sum(record["counts"]) == 2


def test_patience_zero_disables_early_stopping(tmp_path):
    """patience=0 means no early stopping, as --patience 0 does (it once stopped every run
    after its first epoch); a negative patience is refused."""
    kw = dict(epochs=3, batch_size=16, lr=1e-6, seed=0, model_kwargs=TINY_MINI, **QUIET)
    run = train("mantis-mini", toy_data(), tmp_path / "p0", patience=0, min_delta=1e9, **kw)
    assert run.epochs_run == 3 and run.stopped == "completed"
    early = train("mantis-mini", toy_data(), tmp_path / "p1", patience=1, min_delta=1e9, **kw)
    assert early.epochs_run == 2 and early.stopped == "early stopping"
    with pytest.raises(ValueError, match="patience must be"):
        train("mantis-mini", toy_data(), tmp_path / "p2", patience=-1, **kw)


def test_missing_shards_are_errors_not_missing_splits(shard_dir, tmp_path):
    """A shard the manifest lists but the disk lacks, or a directory without a manifest,
    is an error naming it: such directories were once skipped, and a run trained on
    fewer galaxies, or without its test split, without a word."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(shard_dir, copy, ignore=shutil.ignore_patterns("fused_cache"))
    next((copy / "test").glob("shard_*.npz")).unlink()
    with pytest.raises(FileNotFoundError, match="listed in the manifest does not exist"):
        TrainingData.from_directory([shard_dir, copy], cache_dir=tmp_path / "c")
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(FileNotFoundError, match="manifest"):
        TrainingData.from_directory(bare, cache_dir=tmp_path / "c")
    whole = TrainingData.from_directory(shard_dir, cache_dir=tmp_path / "c")
    assert len(whole.train) == 8 and whole.test is not None


def test_fit_and_export_takes_the_settings_of_config(shard_dir, tmp_path):
    """config=TrainingConfig(...) reaches the fusing and the evaluation too (its
    model_kwargs once did not, so a stack-exposure network met reference-fused data)."""
    from astro_mantis.training.pipeline import fit_and_export
    from astro_mantis.training.loop import TrainingConfig

    cfg = TrainingConfig(model_kwargs=dict(TINY_MINI, panstarrs_exposure="stack"), epochs=1,
                         batch_size=4, device="cpu", progress=False, cache_dtype="float32")
    fit = fit_and_export("mantis-mini", shard_dir, tmp_path / "run", config=cfg, export=False,
                         n_bootstrap=0)
    assert fit.training.config["cache_dtype"] == "float32"
    assert list((tmp_path / "run" / "fused_cache" / "train").glob("*-float32.x.npy"))


def test_scrub_paths_touches_whole_paths_in_strings_only(tmp_path):
    """The recipe's card scrubbing: a work directory named '.' or 'work' once turned every
    decimal point, or the key "workers", into WORKDIR."""
    from astro_mantis.training.recipe import _scrub_paths

    card = tmp_path / "card.json"
    for workdir, given in ((".", "."), ("work", "work")):
        absolute = str(Path(workdir).resolve())
        card.write_text(json.dumps({
            "workers": 2, "lr": 0.0005, "note": "3.5 works",
            "command": f"astro-mantis recipe --workdir {given} --n-train 60",
            "data": {"path": f"{absolute}/data/test", "runs": [f"{given}/data/train_000"]},
            "other": "/somewhere/work/data"}))
        _scrub_paths(card, workdir)
        back = json.loads(card.read_text())
        assert back["workers"] == 2 and back["lr"] == 0.0005 and back["note"] == "3.5 works"
        assert back["data"]["path"] == "WORKDIR/data/test"
        assert back["other"] == "/somewhere/work/data"
        if given == "work":
            assert back["command"].endswith("--workdir WORKDIR --n-train 60")
            assert back["data"]["runs"] == ["WORKDIR/data/train_000"]


def test_parallel_fusing_gives_the_serial_values(shard_dir, tmp_path):
    """``workers`` (``astro-mantis train --workers``) changes who fuses, not the values."""
    from astro_mantis.training import ShardDataset

    one = ShardDataset(shard_dir, "train", cache_dir=tmp_path / "one", cache_dtype="float32")
    two = ShardDataset(shard_dir, "train", cache_dir=tmp_path / "two", cache_dtype="float32",
                       workers=2)
    assert len(one) == len(two) == 8
    for i in range(len(one)):
        for a, b in zip(one[i], two[i]):
            assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True), i


def test_shards_fused_as_the_network_takes_them(shard_dir, tmp_path):
    """Reference-exposure fusion uses each shard's EXPTIME, is cached apart from the
    published recipe's, and training refuses data fused the other way."""
    from astro_mantis.fusion import fuse_arrays
    from astro_mantis.fusion.exposure import to_reference_exposure
    from astro_mantis.training import ShardDataset
    from astro_mantis.training.data import fuse_shard_arrays, load_shard, read_fused

    path = ShardDataset(shard_dir, "train", cache_dir=tmp_path / "c").shards[0]
    shard = load_shard(path)
    assert np.isfinite(shard["panstarrs_exptime"]).all()
    assert np.ptp(shard["panstarrs_exptime"]) > 0            # stacks of different depth
    x_ref, _, _ = fuse_shard_arrays(shard, panstarrs_exposure="reference")
    scaled, flags = to_reference_exposure(shard["panstarrs"], shard["panstarrs_exptime"])
    assert not flags.any()
    expect = fuse_arrays(shard["galex"], scaled, shard["unwise"])
    np.testing.assert_array_equal(x_ref, expect.x)
    x_stack, _, _ = fuse_shard_arrays(shard)
    assert not np.allclose(x_ref[:, 2:7], x_stack[:, 2:7])
    np.testing.assert_array_equal(x_ref[:, [0, 1, 7, 8]], x_stack[:, [0, 1, 7, 8]])

    ref = ShardDataset(shard_dir, "train", cache_dir=tmp_path / "c", cache_dtype="float32",
                       panstarrs_exposure="reference")
    stack = ShardDataset(shard_dir, "train", cache_dir=tmp_path / "c", cache_dtype="float32")
    assert len(list((tmp_path / "c" / "train").glob("*-ref-float32.x.npy"))) == len(ref.shards)
    # float16 and float32 entries of one shard live side by side (they once took each
    # other's place, so two runs sharing a cache rebuilt it at every switch)
    assert len(list((tmp_path / "c" / "train").glob("*-float32.x.npy"))) == 2 * len(ref.shards)
    assert len(list((tmp_path / "c" / "train").glob("*.x.npy"))) == 3 * len(ref.shards)
    first = sorted((tmp_path / "c" / "train").glob("*.x.npy"))
    stamps = [p.stat().st_mtime_ns for p in first]
    ShardDataset(shard_dir, "train", cache_dir=tmp_path / "c")  # float16 again: nothing rebuilt
    assert [p.stat().st_mtime_ns for p in first] == stamps
    np.testing.assert_array_equal(ref.row(0)[0], x_ref[0])
    np.testing.assert_array_equal(stack.row(0)[0], x_stack[0])
    x, d, z, ids = read_fused(shard_dir, "train", max_rows=3, panstarrs_exposure="reference")
    assert x.shape == (3, 9, 120, 120) and d.shape == (3, 2) and len(ids) == 3
    np.testing.assert_array_equal(x[0], x_ref[0])
    np.testing.assert_array_equal(z, ref.z[:3])
    with pytest.raises(ValueError, match="panstarrs_exposure"):
        ShardDataset(shard_dir, "train", cache_dir=tmp_path / "c", panstarrs_exposure="x")

    data = TrainingData.from_directory(shard_dir, cache_dir=tmp_path / "c", progress=False)
    assert data.panstarrs_exposure == "stack"
    with pytest.raises(ValueError, match="fused with panstarrs_exposure='stack'"):
        train("mantis-mini", data, tmp_path / "run", model_kwargs=TINY_MINI, epochs=1,
              batch_size=4, **QUIET)
