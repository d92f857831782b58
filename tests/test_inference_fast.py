"""Fast inference paths (issue 18): the bfloat16 inference copy, the one-pass fusion
for reduced precisions, and compiled inference with its fallbacks."""
import warnings

import numpy as np
import pytest
import torch

from astro_mantis.fusion import fuse_arrays
from astro_mantis.compiling import CompiledOrEager
from astro_mantis.fusion import batched
from astro_mantis.fusion.batched import fuse_arrays_batched, fuse_arrays_fast
from astro_mantis.flags import MantisFlag
from astro_mantis.models import build_model, pdf_total_variation, predict, predict_logits
from astro_mantis.models import inference
from astro_mantis.models.precision import inference_network, param_dtype

TINY = {"widths": [8, 16], "depths": [1, 1], "hidden": 32}


def native(n, seed=0, nan=0.0):
    rng = np.random.default_rng(seed)
    g = np.abs(rng.normal(0, 0.02, (n, 2, 32, 32))).astype(np.float32)
    p = rng.normal(2, 20, (n, 5, 170, 170)).astype(np.float32)
    w = rng.normal(1, 5, (n, 2, 32, 32)).astype(np.float32)
    for a in (g, p, w):
        a[rng.random(a.shape) < nan] = np.nan
    return g, p, w


def test_fast_fusion_float32_agrees_with_the_reference():
    g, p, w = native(6, nan=0.002)
    w[2] = np.nan                   # an empty survey: flagged missing, not NAN_PIXELS
    ebv = np.full((6, 2), 0.03, np.float32)
    ref = fuse_arrays(g, p, w, ebv=ebv)
    fast = fuse_arrays_fast(g, p, w, ebv=ebv, dtype="float32", compile=False)
    assert fast.x.dtype == torch.float32
    np.testing.assert_allclose(fast.x.numpy(), ref.x, rtol=0, atol=1e-6)
    assert not np.array_equal(fast.x.numpy(), ref.x)  # another order of operations
    np.testing.assert_array_equal(fast.flags, ref.flags)
    np.testing.assert_array_equal(fast.valid, ref.valid)
    np.testing.assert_array_equal(fast.dust, ref.dust)
    assert fast.flags[2] & MantisFlag.UNWISE_MISSING
    assert fast.flags[0] & MantisFlag.NAN_PIXELS


def test_fast_fusion_bfloat16_is_the_reference_rounded():
    g, p, w = native(4)
    ref = torch.from_numpy(fuse_arrays(g, None, w).x).to(torch.bfloat16)
    fast = fuse_arrays_fast(g, None, w, compile=False)
    assert fast.x.dtype == torch.bfloat16
    assert fast.x.is_contiguous(memory_format=torch.channels_last)
    assert fast.flags[0] & MantisFlag.PANSTARRS_MISSING
    assert torch.all(fast.x[:, 2:7] == 0)
    # values within 1e-6 of the reference round to the same bfloat16 but at the
    # rare rounding boundaries
    assert (fast.x == ref).float().mean() > 0.999
    diff = (fast.x.float() - ref.float()).abs()
    assert float(diff.max()) <= 2 ** -8 * float(ref.float().abs().max())
    with pytest.raises(ValueError, match="dtype must be one of"):
        fuse_arrays_fast(g, dtype="int8")


def test_fast_fusion_in_chunks_into_a_given_buffer():
    """Rows go through the compiled recipe FAST_CHUNK_ROWS at a time, the last chunk
    padded: the compiled result equals the eager one row for row, written into ``out``."""
    n = batched.FAST_CHUNK_ROWS + 3
    g, p, w = native(n, seed=9, nan=0.001)
    eager = fuse_arrays_fast(g, p, w, compile=False)
    out = torch.empty((n, 9, 120, 120), dtype=torch.bfloat16,
                      memory_format=torch.channels_last).fill_(float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a machine without a C++ compiler falls back
        fast = fuse_arrays_fast(g, p, w, out=out)
    assert fast.x is out and not torch.isnan(out).any()
    assert (fast.x == eager.x).float().mean() > 0.999  # rounding boundaries aside
    assert float((fast.x.float() - eager.x.float()).abs().max()) <= 2 ** -7
    np.testing.assert_array_equal(fast.flags, eager.flags)
    np.testing.assert_array_equal(fast.valid, eager.valid)
    # each row is its own: no chunk wrote over another's rows
    one = fuse_arrays_fast(g[-1:], p[-1:], w[-1:], compile=False)
    assert torch.equal(one.x[0], eager.x[-1])
    with pytest.raises(ValueError, match="out must be a CPU torch.Tensor of torch.bfloat16"):
        fuse_arrays_fast(g, p, w, out=torch.empty((n, 9, 120, 120)), compile=False)
    with pytest.raises(ValueError, match="out must be"):
        fuse_arrays_fast(g, p, w, out=np.empty((n, 9, 120, 120)), compile=False)


def test_threaded_fusion_copies_into_a_low_precision_buffer():
    g, p, w = native(11, nan=0.001)
    ref = fuse_arrays(g, p, w)
    low = torch.empty((11, 9, 120, 120), dtype=torch.bfloat16).contiguous(
        memory_format=torch.channels_last)
    out = fuse_arrays_batched(g, p, w, threads=2, copy_to=low)
    np.testing.assert_array_equal(out.x, ref.x)           # still the same bits
    assert torch.equal(low, torch.from_numpy(ref.x).to(torch.bfloat16))
    with pytest.raises(ValueError, match="copy_to must have shape"):
        fuse_arrays_batched(g, p, w, copy_to=low[:3])


def test_inference_network_is_a_cached_bfloat16_copy_rebuilt_after_training():
    net = build_model("mantis-mini", **TINY).eval()
    low, dtype = inference_network(net, "bfloat16", "cpu")
    assert dtype == torch.bfloat16 and low is not net
    assert low.fc1.weight.dtype == torch.float32            # the head stays float32
    assert next(low.Base.inner.parameters()).dtype == torch.bfloat16
    assert next(net.Base.stages.parameters()).dtype == torch.float32   # untouched
    assert inference_network(net, "bfloat16", "cpu")[0] is low   # cached
    with torch.no_grad():
        net.fc1.bias.add_(1.0)                               # weights change in place
    again, _ = inference_network(net, "bfloat16", "cpu")
    assert again is not low
    assert torch.equal(again.fc1.bias, net.fc1.bias)
    assert inference_network(net, "float32", "cpu") == (net, torch.float32)
    assert param_dtype(net) == torch.float32 and param_dtype(low.Base) == torch.bfloat16
    assert param_dtype(torch.nn.ReLU()) == torch.float32     # no parameters at all


def test_predict_bfloat16_runs_the_copy_and_stays_close_to_float32():
    net = build_model("mantis-mini", **TINY).eval()
    x = np.random.default_rng(3).random((6, 9, 120, 120), dtype=np.float32)
    ref = predict(x, model=net, precision="float32")
    low = predict(x, model=net, precision="bfloat16")
    assert low.meta["precision"] == "bfloat16"
    assert 0 < pdf_total_variation(ref, low) <= 0.01


def test_compiled_predict_pads_the_last_batch_and_matches_eager():
    net = build_model("mantis-mini", **TINY).eval()
    g, p, w = native(5)
    data = {"galex": g, "panstarrs": p, "unwise": w}
    eager = predict(data, model=net, precision="bfloat16", batch_size=4, compile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = predict(data, model=net, precision="bfloat16", batch_size=4, compile=True)
    assert fast.pdf.shape == eager.pdf.shape == (5, 400)
    np.testing.assert_array_equal(fast.meta["flags"], eager.meta["flags"])
    assert pdf_total_variation(eager, fast) <= 0.01
    with pytest.raises(ValueError, match="compile must be"):
        predict(data, model=net, compile="yes")


def test_a_compiler_failure_falls_back_to_eager(monkeypatch):
    def broken(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(inference, "_COMPILED", {})
    net = build_model("mantis-mini", **TINY).eval()
    x = np.random.default_rng(4).random((3, 9, 120, 120), dtype=np.float32)
    d = np.zeros((3, 2), np.float32)
    with pytest.warns(RuntimeWarning, match="failed for the network.*eagerly"):
        a = predict_logits(net, x, d, compile=True)
    np.testing.assert_array_equal(a, predict_logits(net, x, d))
    # the fusion falls back the same way, to the same result as the eager recipe
    monkeypatch.setattr(batched, "_FAST", {})
    g, p, w = native(2)
    with pytest.warns(RuntimeWarning, match="failed for the fusion.*eagerly"):
        fast = fuse_arrays_fast(g, p, w)
    assert torch.equal(fast.x, fuse_arrays_fast(g, p, w, compile=False).x)


def test_compiled_or_eager_raises_a_real_error_after_it_has_compiled():
    calls = []

    def fn(t):
        calls.append(1)
        if len(calls) > 1:
            raise ValueError("bad input")
        return t + 1

    run = CompiledOrEager(fn, what="a test function")
    run.fn = fn                  # stands for the compiled function: no compiler needed
    assert float(run(torch.zeros(1))) == 1.0 and run.ok is True
    with pytest.raises(ValueError, match="bad input"):   # not swallowed into "eager"
        run(torch.zeros(1))


def test_compile_auto_follows_the_size_of_the_call(monkeypatch):
    seen = []
    real = inference._Runner.__init__

    def spy(self, model, device, precision, tta, temperature, compile=False):
        seen.append(compile)
        real(self, model, device, precision, tta, temperature, False)

    monkeypatch.setattr(inference._Runner, "__init__", spy)
    monkeypatch.setattr(inference, "COMPILE_MIN_GALAXIES", 4)
    net = build_model("mantis-mini", **TINY).eval()
    rng = np.random.default_rng(5)
    predict(rng.random((3, 9, 120, 120), dtype=np.float32), model=net, precision="float32")
    predict(rng.random((4, 9, 120, 120), dtype=np.float32), model=net, precision="float32")
    assert seen == [False, True]
