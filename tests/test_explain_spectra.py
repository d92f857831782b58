# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of astro_mantis.explain.spectra and astro_mantis.explain.probes."""
import numpy as np
import pytest
import torch

from astro_mantis.explain import (hill_alpha, layer_activations, layer_probes,
                                  marchenko_pastur_edge, plot_layer_probes,
                                  plot_weight_spectra, weight_spectra)
from astro_mantis.models import build_model, load_model

torch.set_num_threads(1)


def test_marchenko_pastur_and_hill():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.5, (200, 800))
    s = np.linalg.svd(w, compute_uv=False)
    edge = marchenko_pastur_edge(w.shape, 0.5)
    assert np.isclose(edge, 0.5 * (np.sqrt(800) + np.sqrt(200)))
    assert s.max() < 1.02 * edge and s.max() > 0.95 * edge  # the bulk reaches the edge
    pareto = (1 - rng.random(20000)) ** (-1 / 1.5)  # density exponent alpha = 2.5
    assert abs(hill_alpha(pareto, k=2000) - 2.5) < 0.15
    assert np.isnan(hill_alpha([1.0, 2.0]))


def test_weight_spectra_random_versus_trained():
    torch.manual_seed(0)
    fresh = weight_spectra(build_model("mantis-mini"))
    trained = weight_spectra(load_model("mantis-mini"))
    assert list(fresh["layer"]) == list(trained["layer"])
    assert "fc1" in list(trained["layer"]) and "Base.stem.0" in list(trained["layer"])
    # random initialisation sits in the bulk; training pushes singular values out of it
    assert fresh["n_outliers"].sum() <= 2
    assert trained["n_outliers"].sum() > 20 * max(1, fresh["n_outliers"].sum())
    assert np.median(trained["alpha"]) < np.median(fresh["alpha"])
    row = trained[list(trained["layer"]).index("fc1")]
    assert tuple(row["shape"]) == (400, 512) and len(row["singular_values"]) == 400
    assert row["sv_max"] == row["singular_values"][0]
    ax = plot_weight_spectra(trained)
    assert len(ax.get_lines()) == 7  # six layers and the edge
    with pytest.raises(ValueError, match="no Linear"):
        weight_spectra(build_model("mantis-mini"), min_dim=10_000)


def _probe_set(n):
    """A tiny untrained network, ``n`` images whose r channel's level is their z, and
    the generator that drew them (for further draws)."""
    torch.manual_seed(0)
    net = build_model("mantis-mini", widths=(4, 8), depths=(1, 1), hidden=16).eval()
    rng = np.random.default_rng(0)
    z = rng.uniform(0.1, 1.4, n)
    x = rng.normal(0, 0.02, (n, 9, 24, 24)).astype(np.float32)
    x[:, 3] += z[:, None, None].astype(np.float32)
    return net, x, z, rng


def test_layer_probes_find_the_signal():
    n = 60
    net, x, z, rng = _probe_set(n)
    acts = layer_activations(net, x)
    assert set(acts) == {"stem", "stage0", "stage1", "pooled", "hidden"}
    assert acts["stem"].shape == (n, 4) and acts["hidden"].shape == (n, 16)
    probes = layer_probes(net, x, z, n_components=(1, 4), k=5, folds=4)
    assert len(probes) == 10
    assert (probes["r2"] > 0.8).all()  # z is the leading direction everywhere
    shuffled = layer_probes(net, x, rng.permutation(z), n_components=(4,), k=5, folds=4)
    assert (shuffled["r2"] < 0.5).all()
    assert ((probes["explained_variance"] > 0) & (probes["explained_variance"] <= 1 + 1e-9)).all()
    ax = plot_layer_probes(probes)
    assert len(ax.get_lines()) == 5
    with pytest.raises(ValueError, match="z has"):
        layer_probes(net, x, z[:10], k=5, folds=4)
    with pytest.raises(ValueError, match="at least"):
        layer_probes(net, x[:10], z[:10], k=5, folds=4)


def test_layer_activations_of_concurrent_calls_on_one_network_stay_apart(run_together):
    """Hooks on a shared network catch only their own thread's passes: two threads
    probing the same module, or one probing while another predicts, keep their rows."""
    from astro_mantis.models import predict

    torch.manual_seed(0)
    net = build_model("mantis-mini", widths=(4, 8), depths=(1, 1), hidden=16).eval()
    rng = np.random.default_rng(3)
    xs = [rng.random((n, 9, 24, 24), dtype=np.float32) for n in (3, 7)]
    expected = [layer_activations(net, x, batch_size=1) for x in xs]
    got = {0: [], 1: []}

    def probe(i):
        for _ in range(4):
            got[i].append(layer_activations(net, xs[i], batch_size=1))

    def predicting():
        for _ in range(6):
            predict(xs[1], model=net, dust=np.zeros((7, 2)), batch_size=1,
                    precision="float32")

    run_together(lambda: probe(0), lambda: probe(1), predicting)
    for i, ref in enumerate(expected):
        assert len(got[i]) == 4
        for acts in got[i]:
            assert set(acts) == set(ref)
            for name in ref:
                np.testing.assert_allclose(acts[name], ref[name], rtol=1e-5, atol=1e-6)


def test_layer_activations_shrimp():
    pytest.importorskip("timm")
    torch.manual_seed(0)
    net = build_model("mantis-shrimp-v1", backbone="convnext_atto", hidden=32).eval()
    acts = layer_activations(net, np.random.default_rng(0).random((2, 9, 32, 32),
                                                                  dtype=np.float32))
    assert set(acts) == {"stem", "stage0", "stage1", "stage2", "stage3", "pooled", "hidden"}
    assert acts["hidden"].shape == (2, 32)


def test_spectral_monitor(tmp_path):
    from astro_mantis.explain import SpectralMonitor, plot_spectral_history, read_spectral_log

    torch.manual_seed(0)
    net = build_model("mantis-mini", widths=(8, 16), depths=(1, 1), hidden=32)
    monitor = SpectralMonitor(tmp_path / "spectra.jsonl")
    first = monitor(1, net)
    with torch.no_grad():  # a rank-one spike, as training makes: one outlier more in fc1
        u, v = torch.randn(400, 1), torch.randn(1, 32)
        net.fc1.weight += 3 * u @ v / (u.norm() * v.norm()) * net.fc1.weight.std() * 30
    second = monitor(2, net)
    log = read_spectral_log(tmp_path / "spectra.jsonl")
    assert [r["epoch"] for r in log] == [1, 2]
    assert log[1]["layers"]["fc1"]["n_outliers"] == log[0]["layers"]["fc1"]["n_outliers"] + 1
    assert second["outliers"] == first["outliers"] + 1
    ax = plot_spectral_history(tmp_path / "spectra.jsonl")
    assert len(ax.get_lines()) == 1
    # a run started afresh (or resumed from epoch 1) logs epoch 2 again: it replaces the
    # old line instead of following it (an --overwrite run once kept both runs' lines)
    monitor(2, net)
    assert [r["epoch"] for r in read_spectral_log(tmp_path / "spectra.jsonl")] == [1, 2]
    monitor(1, net)
    assert [r["epoch"] for r in read_spectral_log(tmp_path / "spectra.jsonl")] == [1]
    monitor(2, net)
    assert [r["epoch"] for r in read_spectral_log(tmp_path / "spectra.jsonl")] == [1, 2]


def test_logits_and_features_match_forward():
    from astro_mantis.explain import logits_and_features, penultimate_features

    torch.manual_seed(0)
    net = build_model("mantis-mini", widths=(4, 8), depths=(1, 1), hidden=16).eval()
    x = torch.rand(3, 9, 24, 24)
    d = torch.rand(3, 2)
    with torch.no_grad():
        logits, h = logits_and_features(net, x, d)
        assert torch.allclose(logits, net(x, d), atol=1e-6)
    assert np.allclose(h.numpy(), penultimate_features(net, x.numpy(), d.numpy()), atol=1e-6)


def test_layer_probes_leave_out_rows_without_a_redshift():
    """A NaN or masked redshift was used as the k-NN probe's truth: every layer's nmad
    and r2 became NaN (NaN z), or were computed against the values under the mask."""
    from astropy.table import MaskedColumn

    n = 46
    net, x, z, _ = _probe_set(n)
    zz = MaskedColumn(z.copy(), mask=np.arange(n) < 3)  # three galaxies without z_spec
    zz[3], zz[4], zz[5] = np.nan, np.inf, 5.0  # and a NaN, an infinity, an outlier
    keep = np.r_[5:n]
    probes = layer_probes(net, x, zz, n_components=(1, 4), k=5, folds=4)
    assert np.isfinite(probes["nmad"]).all() and np.isfinite(probes["r2"]).all()
    zk = np.asarray(zz.filled(np.nan))[keep]
    same = layer_probes(net, x[keep], zk, n_components=(1, 4), k=5, folds=4)
    for name in ("nmad", "r2", "explained_variance"):
        np.testing.assert_allclose(probes[name], same[name], rtol=1e-6, err_msg=name)
    assert probes.meta["n_rows"] == n - 5 and probes.meta["n_left_out"] == 5
    assert same.meta["n_left_out"] == 0
    with pytest.raises(ValueError, match=r"finite redshift; got 3 \(43 rows without"):
        layer_probes(net, x, np.r_[z[:3], np.full(n - 3, np.nan)], k=5, folds=4)


def test_layer_activations_of_no_galaxies_are_empty():
    """No galaxies raised 'need at least one array to concatenate'."""
    torch.manual_seed(0)
    net = build_model("mantis-mini", widths=(4, 8), depths=(1, 1), hidden=16).eval()
    acts = layer_activations(net, np.zeros((0, 9, 24, 24), np.float32))
    full = layer_activations(net, np.ones((2, 9, 24, 24), np.float32))
    assert set(acts) == set(full)
    assert all(acts[k].shape == (0, full[k].shape[1]) for k in full)
