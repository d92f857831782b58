"""Fast inference paths (issue 18): the bfloat16 inference copy, the one-pass fusion
for reduced precisions, and compiled inference with its fallbacks."""
import warnings

import numpy as np
import pytest
import torch

from astro_mantis.fusion import fuse_arrays
from astro_mantis.compiling import CompiledOrEager
from astro_mantis.fusion import batched
from astro_mantis.fusion.batched import fuse_arrays_batched, fuse_arrays_fast, has_native_fusion
from astro_mantis.flags import MantisFlag
from astro_mantis.models import build_model, pdf_total_variation, predict, predict_logits
from astro_mantis.models import inference
from astro_mantis.models.precision import inference_network, param_dtype

TINY = {"widths": [8, 16], "depths": [1, 1], "hidden": 32}

needs_native = pytest.mark.skipif(not has_native_fusion(),
                                  reason="the C fusion module was not built (no compiler)")
#: The two implementations of fuse_arrays_fast: the C module, and the torch recipe.
IMPLEMENTATIONS = [pytest.param(True, marks=needs_native, id="native"),
                   pytest.param(False, id="torch")]


def native(n, seed=0, nan=0.0):
    rng = np.random.default_rng(seed)
    g = np.abs(rng.normal(0, 0.02, (n, 2, 32, 32))).astype(np.float32)
    p = rng.normal(2, 20, (n, 5, 170, 170)).astype(np.float32)
    w = rng.normal(1, 5, (n, 2, 32, 32)).astype(np.float32)
    for a in (g, p, w):
        a[rng.random(a.shape) < nan] = np.nan
    return g, p, w


@pytest.mark.parametrize("use_native", IMPLEMENTATIONS)
def test_fast_fusion_float32_agrees_with_the_reference(use_native):
    g, p, w = native(6, nan=0.002)
    w[2] = np.nan                   # an empty survey: flagged missing, not NAN_PIXELS
    g[3, 1, 10, 12] = np.inf        # infinities count as bad pixels too
    ebv = np.full((6, 2), 0.03, np.float32)
    ref = fuse_arrays(g, p, w, ebv=ebv)
    fast = fuse_arrays_fast(g, p, w, ebv=ebv, dtype="float32", compile=False, native=use_native)
    assert fast.x.dtype == torch.float32
    np.testing.assert_allclose(fast.x.numpy(), ref.x, rtol=0, atol=1e-6)
    assert not np.array_equal(fast.x.numpy(), ref.x)  # another order of operations
    np.testing.assert_array_equal(fast.flags, ref.flags)
    np.testing.assert_array_equal(fast.valid, ref.valid)
    np.testing.assert_array_equal(fast.dust, ref.dust)
    assert fast.flags[2] & MantisFlag.UNWISE_MISSING
    assert fast.flags[0] & MantisFlag.NAN_PIXELS
    assert fast.flags[3] & MantisFlag.NAN_PIXELS and not fast.valid[3, 1]


@pytest.mark.parametrize("use_native", IMPLEMENTATIONS)
def test_fast_fusion_bfloat16_is_the_reference_rounded(use_native):
    g, p, w = native(4)
    ref = torch.from_numpy(fuse_arrays(g, None, w).x).to(torch.bfloat16)
    fast = fuse_arrays_fast(g, None, w, compile=False, native=use_native)
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
    eager = fuse_arrays_fast(g, p, w, compile=False, native=False)
    out = torch.empty((n, 9, 120, 120), dtype=torch.bfloat16,
                      memory_format=torch.channels_last).fill_(float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a machine without a C++ compiler falls back
        fast = fuse_arrays_fast(g, p, w, out=out, native=False)
    assert fast.x is out and not torch.isnan(out).any()
    assert (fast.x == eager.x).float().mean() > 0.999  # rounding boundaries aside
    assert float((fast.x.float() - eager.x.float()).abs().max()) <= 2 ** -7
    np.testing.assert_array_equal(fast.flags, eager.flags)
    np.testing.assert_array_equal(fast.valid, eager.valid)
    # each row is its own: no chunk wrote over another's rows
    one = fuse_arrays_fast(g[-1:], p[-1:], w[-1:], compile=False, native=False)
    assert torch.equal(one.x[0], eager.x[-1])
    with pytest.raises(ValueError, match="out must be a CPU torch.Tensor of torch.bfloat16"):
        fuse_arrays_fast(g, p, w, out=torch.empty((n, 9, 120, 120)), compile=False)
    with pytest.raises(ValueError, match="out must be"):
        fuse_arrays_fast(g, p, w, out=np.empty((n, 9, 120, 120)), compile=False)


@needs_native
def test_native_fusion_agrees_with_the_torch_recipe_on_any_threads_and_layout():
    """The C module: the torch recipe's values (to its rounding), the same bits on one
    thread or several, into a channels-last or a plain (NCHW) buffer."""
    n = 13
    g, p, w = native(n, seed=5, nan=0.001)
    p = p[:, :, ::-1]               # a view with negative strides: copied, not misread
    ref = fuse_arrays_fast(g, p, w, compile=False, native=False)
    one = fuse_arrays_fast(g, p, w, native=True, threads=1)
    assert one.x.is_contiguous(memory_format=torch.channels_last)
    assert (one.x == ref.x).float().mean() > 0.999
    assert float((one.x.float() - ref.x.float()).abs().max()) <= 2 ** -7
    np.testing.assert_array_equal(one.flags, ref.flags)
    np.testing.assert_array_equal(one.valid, ref.valid)
    several = fuse_arrays_fast(g, p, w, native=True, threads=3)
    assert torch.equal(several.x, one.x)
    plain = torch.full((n, 9, 120, 120), float("nan"), dtype=torch.bfloat16)
    fuse_arrays_fast(g, p, w, native=True, out=plain)
    assert torch.equal(plain, one.x)
    # a missing survey is zeros and flagged; torch tensors and float16 pixels are taken
    only = fuse_arrays_fast(None, torch.from_numpy(p.copy()), None, native=True)
    assert torch.all(only.x[:, :2] == 0) and torch.all(only.x[:, 7:] == 0)
    assert torch.equal(only.x[:, 2:7], one.x[:, 2:7])
    assert only.flags[0] & MantisFlag.GALEX_MISSING
    half = fuse_arrays_fast(None, p.astype(np.float16), None, dtype="float32", native=True)
    ref16 = fuse_arrays(None, p.astype(np.float16), None)
    np.testing.assert_allclose(half.x.numpy(), ref16.x, rtol=0, atol=1e-6)
    # another output size: every survey resized, shrinking with more than two taps
    small = fuse_arrays_fast(g, p, w, size=48, dtype="float32", native=True)
    ref48 = fuse_arrays(g, p, w, size=48)
    assert small.x.shape == (n, 9, 48, 48)
    np.testing.assert_allclose(small.x.numpy(), ref48.x, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(small.flags, ref48.flags)


@needs_native
def test_native_fusion_over_the_whole_float_range():
    """Every finite float32, negative, tiny or huge, gives a finite stretch within
    float32 rounding (relative 1e-6) of the NumPy reference."""
    rng = np.random.default_rng(11)
    values = np.concatenate([-np.logspace(-3, 38, 500), np.logspace(-45, 38.5, 3000),
                             [0.0, -0.0, np.finfo(np.float32).max]]).astype(np.float32)
    g, p, w = (rng.choice(values, shape).astype(np.float32)
               for shape in ((3, 2, 32, 32), (3, 5, 170, 170), (3, 2, 32, 32)))
    with np.errstate(all="ignore"):
        ref = fuse_arrays(g, p, w).x
    fast = fuse_arrays_fast(g, p, w, dtype="float32", native=True).x.numpy()
    assert np.isfinite(fast).all()
    np.testing.assert_allclose(fast, ref, rtol=1e-6, atol=1e-7)


def test_native_fusion_errors(monkeypatch):
    g, p, w = native(2)
    if has_native_fusion():
        with pytest.raises(ValueError, match="bfloat16 or float32, not float16"):
            fuse_arrays_fast(g, p, w, dtype="float16", native=True)
        from astro_mantis.fusion import _native

        out = np.empty((2, 120, 120, 9), np.float32)
        counts = np.empty((2, 9), np.int64)
        spec = (None, 2, 22, 22, 0, 0, 22, 0.05, 0.0, 0, None, None, 0)
        specs = batched._native_specs([g, p, w], 120)
        with pytest.raises(ValueError, match="out has the wrong size"):
            _native.fuse_rows(out[:1], counts, 2, 0, 2, 120, False, *specs)
        with pytest.raises(ValueError, match="bad row range"):
            _native.fuse_rows(out, counts, 2, 1, 3, 120, False, *specs)
        with pytest.raises(ValueError, match="nine channels"):
            _native.fuse_rows(out, counts, 2, 0, 2, 120, False, spec, spec, spec)
        bad = specs[1][:4] + (200,) + specs[1][5:]       # a crop outside the image
        with pytest.raises(ValueError, match="geometry"):
            _native.fuse_rows(out, counts, 2, 0, 2, 120, False, specs[0], bad, specs[2])
    monkeypatch.setattr(batched, "_NATIVE", {"fuse_rows": None})  # as where none was built
    assert not has_native_fusion()
    with pytest.raises(RuntimeError, match="was not built"):
        fuse_arrays_fast(g, p, w, native=True)
    # the default falls back to the torch recipe
    fallback = fuse_arrays_fast(g, p, w, compile=False)
    assert torch.equal(fallback.x, fuse_arrays_fast(g, p, w, compile=False, native=False).x)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_predict_keeps_the_features_and_hands_over_each_batch(precision):
    """features=True: the penultimate features of the same pass (as
    explain.penultimate_features computes them), PDFs unchanged; on_batch sees every
    fused batch, in order, as the network gets it."""
    from astro_mantis.explain import penultimate_features

    net = build_model("mantis-mini", **TINY).eval()
    g, p, w = native(7, seed=2)
    fused = fuse_arrays(g, p, w)
    seen = []

    def keep(x):
        seen.append(x.float().numpy() if isinstance(x, torch.Tensor) else x.copy())

    plain = predict(fused.x, model=net, dust=fused.dust, precision=precision, batch_size=3)
    both = predict(fused.x, model=net, dust=fused.dust, precision=precision, batch_size=3,
                   features=True, on_batch=keep)
    np.testing.assert_array_equal(both.pdf, plain.pdf)
    feats = both.meta["features"]
    assert feats.shape == (7, TINY["hidden"]) and feats.dtype == np.float32
    ref = penultimate_features(net, fused.x, fused.dust, precision=precision)
    tol = 1e-5 if precision == "float32" else 0.05 * float(np.abs(ref).max())
    np.testing.assert_allclose(feats, ref, rtol=0, atol=tol)
    assert [len(b) for b in seen] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(seen), fused.x)
    # from cutout-like native arrays: the batches are the fused images
    seen.clear()
    nat = predict({"galex": g, "panstarrs": p, "unwise": w}, model=net, precision=precision,
                  batch_size=4, features=True, on_batch=keep)
    assert nat.meta["features"].shape == (7, TINY["hidden"])
    tol = 1e-6 if precision == "float32" else 2 ** -7
    np.testing.assert_allclose(np.concatenate(seen), fused.x, rtol=0, atol=tol)
    one = predict(fused.x[0], model=net, dust=fused.dust[0], precision=precision,
                  features=True)
    assert one.meta["features"].shape == (TINY["hidden"],)
    with pytest.raises(ValueError, match="needs tta=False"):
        predict(fused.x, model=net, dust=fused.dust, tta=True, features=True)


def test_on_batch_gets_what_predict_documents_on_a_cpu():
    """A fused array: float32 numpy slices of it; native arrays on a CPU: CPU tensors in
    the network's type. (On a CUDA GPU native arrays are fused there and the batches
    are tensors on the GPU: not testable here.)"""
    net = build_model("mantis-mini", **TINY).eval()
    g, p, w = native(5, seed=3)
    fused = fuse_arrays(g, p, w)
    kinds = []

    def look(x):
        kinds.append((type(x).__name__, str(x.dtype),
                      x.device if isinstance(x, torch.Tensor) else None))
        np.asarray(torch.as_tensor(x).float().cpu())      # the conversion it suggests

    predict(fused.x, model=net, dust=fused.dust, precision="float32", batch_size=3,
            on_batch=look)
    assert kinds == [("ndarray", "float32", None)] * 2
    kinds.clear()
    predict({"galex": g, "panstarrs": p, "unwise": w}, model=net, precision="float32",
            batch_size=3, on_batch=look)
    assert kinds == [("Tensor", "torch.float32", torch.device("cpu"))] * 2


def test_features_of_concurrent_calls_on_one_network_stay_apart(run_together):
    """Threads sharing one network (the table job under Dask's threads) each get the
    features of their own pass. A forward hook on the shared module caught the other
    thread's output instead: features of 8 rows beside a misalignment of 2."""
    net = build_model("mantis-mini", **TINY).eval()
    rng = np.random.default_rng(5)
    inputs = [(rng.random((n, 9, 120, 120), dtype=np.float32), np.zeros((n, 2)))
              for n in (2, 8, 3, 5)]
    expected = [predict(x, model=net, dust=d, precision="float32", features=True)
                .meta["features"] for x, d in inputs]
    got = {i: [] for i in range(len(inputs))}

    def run(i):
        x, d = inputs[i]
        for _ in range(5):
            got[i].append(predict(x, model=net, dust=d, batch_size=1, precision="float32",
                                  features=True).meta["features"])

    run_together(*[lambda i=i: run(i) for i in range(len(inputs))])
    for i, ref in enumerate(expected):
        assert len(got[i]) == 5
        for feats in got[i]:
            np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-6)


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
        fast = fuse_arrays_fast(g, p, w, native=False)
    assert torch.equal(fast.x, fuse_arrays_fast(g, p, w, compile=False, native=False).x)


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

    def spy(self, model, device, precision, tta, temperature, compile=False, **kwargs):
        seen.append(compile)
        real(self, model, device, precision, tta, temperature, False, **kwargs)

    monkeypatch.setattr(inference._Runner, "__init__", spy)
    monkeypatch.setattr(inference, "COMPILE_MIN_GALAXIES", 4)
    net = build_model("mantis-mini", **TINY).eval()
    rng = np.random.default_rng(5)
    predict(rng.random((3, 9, 120, 120), dtype=np.float32), model=net, precision="float32")
    predict(rng.random((4, 9, 120, 120), dtype=np.float32), model=net, precision="float32")
    assert seen == [False, True]
