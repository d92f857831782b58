# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of astro_mantis.explain.surrogate: projected NTK, kernel ridge surrogate, examples."""
import numpy as np
import pytest
import torch

from astro_mantis.explain.surrogate import (KernelSurrogate, _sketch, explain_by_example,
                                            fidelity, fit_surrogate, kernel_features,
                                            ntk_features, plot_examples)
from astro_mantis.explain._common import scalar_target
from astro_mantis.models import build_model

torch.set_num_threads(1)


def tiny(seed=0):
    torch.manual_seed(seed)
    net = build_model("mantis-mini", widths=(4, 8), depths=(1, 1), hidden=16).eval()
    with torch.no_grad():
        net.fc1.weight.mul_(20)
    return net


def data(n, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, 9, 24, 24), dtype=np.float32), rng.random((n, 2)).astype(np.float32)


def exact_gradients(net, x, dust, names):
    f = scalar_target(net, "mean")
    rows = []
    for i in range(len(x)):
        net.zero_grad()
        out = f(net(torch.as_tensor(x[i:i + 1]), torch.as_tensor(dust[i:i + 1])))[0]
        out.backward()
        rows.append({k: p.grad.detach().clone() for k, p in net.named_parameters()
                     if k in names})
    return rows


def test_ntk_features_are_the_projected_per_sample_gradients():
    net = tiny()
    x, dust = data(3)
    names = [k for k, _ in net.named_parameters() if k.startswith(("fc0", "fc1", "Base.stem"))]
    feats = ntk_features(x, net, dust=dust, dim=64, seed=5, params=["fc0", "fc1", "Base.stem"],
                         max_bytes=1)  # batch of one: the memory bound is honoured
    grads = exact_gradients(net, x, dust, names)
    chosen = {k: p for k, p in net.named_parameters() if k in names}
    sketch = _sketch(chosen, 64, 5)
    for i, g in enumerate(grads):
        proj = torch.zeros(64)
        for (name, _), (idx, sign) in zip(chosen.items(), sketch):
            proj.index_add_(0, idx, g[name].reshape(-1) * sign)
        assert np.allclose(feats[i], proj.numpy(), rtol=1e-4, atol=1e-6)
    # a wide projection preserves inner products (all parameters)
    wide = ntk_features(x, net, dust=dust, dim=200_000, seed=1)
    full = exact_gradients(net, x, dust, [k for k, _ in net.named_parameters()])
    flat = np.array([torch.cat([v.reshape(-1) for v in g.values()]).numpy() for g in full])
    assert np.allclose(wide @ wide.T, flat @ flat.T, rtol=0.1, atol=0.02 * np.abs(
        flat @ flat.T).max())
    with pytest.raises(ValueError, match="no parameter"):
        ntk_features(x, net, dust=dust, params=["nothing"])
    with pytest.raises(ValueError, match="dim"):
        ntk_features(x, net, dust=dust, dim=0)


def test_kernel_surrogate_algebra():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(80, 30))
    w = rng.normal(size=30)
    y = f @ w + 0.5
    small = KernelSurrogate(f[:20], y[:20], ridge=1e-10)
    assert np.allclose(small.predict(f[:20]), y[:20], atol=1e-5)  # interpolates (N < D)
    s = KernelSurrogate(f, y, ridge=1e-8, kernel="test", z=np.linspace(0, 1, 80))
    q = rng.normal(size=(20, 30))
    assert np.allclose(s.contributions(q).sum(axis=1) + s.offset, s.predict(q))
    assert np.corrcoef(s.predict(q), q @ w)[0, 1] > 0.99  # a linear target is learnt
    with pytest.raises(ValueError, match="agree"):
        KernelSurrogate(f, y[:5])
    with pytest.raises(ValueError, match="ridge"):
        KernelSurrogate(f, y, ridge=0)
    with pytest.raises(ValueError, match="shape"):
        s.predict(q[:, :3])


@pytest.mark.parametrize("kernel", ["ck", "ntk"])
def test_fit_explain_and_fidelity(kernel):
    import matplotlib

    matplotlib.use("Agg")
    net = tiny()
    x, dust = data(40)
    z = np.linspace(0.1, 1.2, 40)
    s = fit_surrogate(net, x[:30], kernel=kernel, dust=dust[:30], z=z[:30], ridge=1e-6,
                      ids=np.arange(100, 130))
    assert s.kernel == kernel and len(s.alpha) == 30
    tau, pred, truth = fidelity(s, x[:30], net, dust=dust[:30])
    assert tau > 0.9  # on its own training set the surrogate reproduces the network
    tau_out, _, _ = fidelity(s, x[30:], net, dust=dust[30:])
    assert -1 <= tau_out <= 1
    t = explain_by_example(x[35], s, net, k=3, dust=dust[35:36])
    assert list(t["role"]) == ["supporting"] * 3 + ["opposing"] * 3
    sign = 1 if t.meta["z_surrogate"] >= t.meta["offset"] else -1
    c = sign * np.asarray(t["contribution"])
    assert np.all(np.diff(c[:3]) <= 0) and np.all(np.diff(c[3:]) >= 0)
    assert c[:3].min() >= c[3:].max()
    assert np.allclose(t["contribution"], t["kernel"] * t["weight"])
    assert set(t["id"]) <= set(range(100, 130))
    assert np.allclose(t["z"], z[np.asarray(t["index"])])
    full = s.contributions(kernel_features(x[35:36], net, kernel, dust=dust[35:36]))[0]
    assert np.isclose(t.meta["z_surrogate"], s.offset + full.sum())
    fig = plot_examples(x[35], x[:30], t)
    assert len(fig.axes) == 8
    with pytest.raises(ValueError, match="k must"):
        explain_by_example(x[35], s, net, k=0)
    with pytest.raises(ValueError, match="kernel"):
        kernel_features(x[:2], net, "rbf")
