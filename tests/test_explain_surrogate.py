# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of astro_mantis.explain.surrogate: projected NTK, kernel ridge surrogate, examples."""
import numpy as np
import pytest
import torch

from astro_mantis.explain.surrogate import (DEFAULT_NTK_DIM, KernelSurrogate, _sketch,
                                            explain_by_example, fidelity, fit_surrogate,
                                            kernel_features, ntk_features, plot_examples)
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


def test_sketch_is_compact_and_draws_the_same_projection():
    """The CountSketch tables held an int64 bucket and a float32 sign per parameter
    (12 bytes: 2.4 GB at 200 M parameters): now int32 and int8 (5 bytes), the same
    draws from the same seed, so the features are unchanged."""
    net = tiny()
    chosen = {k: v.detach() for k, v in net.named_parameters()}
    sketch = _sketch(chosen, 4096, 3)
    g = torch.Generator().manual_seed(3)
    n_par = 0
    for (idx, sign), p in zip(sketch, chosen.values()):
        n = p.numel()
        n_par += n
        assert idx.dtype == torch.int32 and sign.dtype == torch.int8
        assert torch.equal(idx.long(), torch.randint(0, 4096, (n,), generator=g))
        assert torch.equal(sign.float(), torch.randint(0, 2, (n,), generator=g).float() * 2 - 1)
    assert sum(i.element_size() * i.numel() + s.element_size() * s.numel()
               for i, s in sketch) == 5 * n_par


def test_plot_examples_takes_what_explain_by_example_takes():
    """The guide passed the query as (1, 9, H, W) (IndexError) and the training set as
    the fused input: plot_examples takes a query of (9, H, W) or (1, 9, H, W) or a
    FusedInput, and training images as an array or a FusedInput."""
    import matplotlib

    from astro_mantis.explain._common import as_fused

    matplotlib.use("Agg")
    net = tiny()
    x, dust = data(12)
    train = as_fused(x[:10], dust=dust[:10])
    s = fit_surrogate(net, train, kernel="ck")
    query = x[10:11]
    t = explain_by_example(query, s, net, k=2, dust=dust[10:11])
    ref = plot_examples(x[10], x[:10], t)
    for q in (query, as_fused(query, dust=dust[10:11])):
        fig = plot_examples(q, train, t)
        assert len(fig.axes) == len(ref.axes) and fig.axes[0].get_title().startswith("query")
        for a, b in zip(fig.axes, ref.axes):
            assert len(a.images) == len(b.images)
            for ia, ib in zip(a.images, b.images):
                assert np.array_equal(ia.get_array(), ib.get_array())
    with pytest.raises(ValueError, match="one query galaxy"):
        plot_examples(x[:2], x[:10], t)


def test_kernel_surrogate_checks_ids_and_z_lengths():
    rng = np.random.default_rng(2)
    f, y = rng.normal(size=(6, 4)), rng.normal(size=6)
    with pytest.raises(ValueError, match=r"ids must have one entry per training galaxy "
                                         r"\(6\); got 8"):
        KernelSurrogate(f, y, ids=np.arange(8))
    with pytest.raises(ValueError, match=r"z must have one entry per training galaxy "
                                         r"\(6\); got 2"):
        KernelSurrogate(f, y, z=[0.1, 0.2])
    s = KernelSurrogate(f, y, ids=np.arange(6) + 10, z=np.linspace(0, 1, 6))
    assert s.ids.tolist() == list(range(10, 16))


def test_compact_sketch_gives_identical_features(monkeypatch):
    """The int32 / int8 tables project exactly as the int64 / float32 ones did."""
    import astro_mantis.explain.surrogate as surrogate

    def old_sketch(params, dim, seed):
        g = torch.Generator().manual_seed(int(seed))
        return [(torch.randint(0, dim, (p.numel(),), generator=g),
                 torch.randint(0, 2, (p.numel(),), generator=g).float() * 2 - 1)
                for p in params.values()]

    net = tiny()
    x, dust = data(3)
    new = ntk_features(x, net, dust=dust, dim=256, seed=4)
    monkeypatch.setattr(surrogate, "_sketch", old_sketch)
    assert np.array_equal(ntk_features(x, net, dust=dust, dim=256, seed=4), new)


def test_surrogate_records_its_projection():
    """A KernelSurrogate did not record the NTK projection it was fitted with: fidelity
    and explain_by_example called without repeating dim/seed/params projected the
    queries into another space (wrong predictions, wrong examples, no error)."""
    net = tiny()
    x, dust = data(24)
    # the default dim: only the seed and params differ from ntk_features' defaults
    s = fit_surrogate(net, x[:18], kernel="ntk", dust=dust[:18], seed=7,
                      params=["fc0", "fc1"], ridge=1e-6)
    given = fidelity(s, x[18:], net, dust=dust[18:], seed=7, params=("fc0", "fc1"))
    default = fidelity(s, x[18:], net, dust=dust[18:])
    assert np.array_equal(default[1], given[1]) and default[0] == given[0]
    assert s.projection == {"dim": DEFAULT_NTK_DIM, "seed": 7, "params": ("fc0", "fc1")}
    own = fidelity(s, x[:18], net, dust=dust[:18])
    assert own[0] > 0.9  # its own training set, projected as at the fit
    a = explain_by_example(x[20], s, net, k=3, dust=dust[20])
    b = explain_by_example(x[20], s, net, k=3, dust=dust[20], dim=DEFAULT_NTK_DIM, seed=7,
                           params=["fc0", "fc1"], max_bytes=2 ** 20)
    assert list(a["index"]) == list(b["index"]) and np.allclose(a["contribution"],
                                                                 b["contribution"])
    for bad in ({"seed": 0}, {"dim": 32}, {"params": ["fc1"]}, {"params": None}):
        key = next(iter(bad))
        with pytest.raises(ValueError, match=f"{key}=.* differs from the {key}"):
            fidelity(s, x[18:], net, dust=dust[18:], **bad)
        with pytest.raises(ValueError, match=f"differs from the {key}"):
            explain_by_example(x[20], s, net, dust=dust[20], **bad)
    # the defaults of ntk_features are recorded too; the conjugate kernel has none
    assert fit_surrogate(net, x[:6], kernel="ntk", dust=dust[:6], dim=16).projection == {
        "dim": 16, "seed": 0, "params": None}
    assert fit_surrogate(net, x[:6], kernel="ck", dust=dust[:6]).projection is None
    with pytest.raises(ValueError, match="unknown keys"):
        KernelSurrogate(np.eye(3), np.arange(3.0), projection={"dims": 3})
