"""The fast fusion paths against the NumPy reference (astro_mantis.fusion.core).

`fuse_arrays_batched` must give the very same bits as `core.fuse_arrays`
(``assert_array_equal``) on random inputs holding NaN and ±inf, for both NaN
policies, whatever the thread count, chunking or output buffer. `fuse_arrays_torch`
(the recipe as torch operations, for GPUs) cannot be bit-identical (NumPy's float32
``arcsinh`` is not correctly rounded; see the module docstring): it is held to 1e-6 on
the CPU here.
"""
import threading

import numpy as np
import pytest
import torch

from astro_mantis import MantisFlag, MultiSurveyCutout
from astro_mantis.fusion import core, early_fusion, fuse_arrays
from astro_mantis.fusion import batched
from astro_mantis.fusion.batched import (CHUNK_ROWS, default_fusion_threads,
                                         fuse_arrays_batched, fuse_arrays_fast,
                                         fuse_arrays_torch, fuse_survey_batched,
                                         has_native_fusion)

#: The two implementations of fuse_arrays_fast: the C module, and the torch recipe.
FAST_IMPLEMENTATIONS = [
    pytest.param(True, id="native", marks=pytest.mark.skipif(
        not has_native_fusion(), reason="the C fusion module was not built (no compiler)")),
    pytest.param(False, id="torch")]


def native(n, seed=0, dtype=np.float32):
    """Native-pixel stacks spanning every stretch's range, with NaN, +inf and -inf."""
    rng = np.random.default_rng(seed)
    g = rng.uniform(-0.02, 0.08, (n, 2, 32, 32))
    p = rng.uniform(-20.0, 400.0, (n, 5, 170, 170)) * rng.choice([1e-3, 1, 30], (n, 5, 1, 1))
    w = rng.uniform(-2.0, 30.0, (n, 2, 32, 32))
    for a in (g, p, w):
        a[rng.random(a.shape) < 0.01] = np.nan
        a[rng.random(a.shape) < 0.002] = np.inf
        a[rng.random(a.shape) < 0.002] = -np.inf
        a[rng.random(a.shape) < 0.002] = -0.0
    if n > 3:
        w[3] = np.nan                    # a row with no finite unWISE pixel: missing
        g[2] = 0.01                      # a row with no bad GALEX pixel
        p[1, :, 25:145, 25:145] = np.abs(p[1, :, 25:145, 25:145])  # crop finite...
        p[1, :, :25] = np.nan            # ...NaN only outside it: not flagged
    return g.astype(dtype), p.astype(dtype), w.astype(dtype)


def assert_same(a, b):
    for field in ("x", "dust", "valid", "flags"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


@pytest.mark.parametrize("threads", [1, 2])
def test_batched_is_bit_identical_to_numpy_reference(threads):
    n = 2 * CHUNK_ROWS + 3                # several chunks, the last one short
    g, p, w = native(n)
    ebv = np.random.default_rng(1).uniform(0, 0.2, (n, 2))
    ebv[4] = np.nan
    ref = fuse_arrays(g, p, w, ebv=ebv)
    fast = fuse_arrays_batched(g, p, w, ebv=ebv, threads=threads)
    assert_same(ref, fast)
    # the case the test is about actually occurs
    assert (ref.flags & int(MantisFlag.NAN_PIXELS)).any() and not ref.valid.all()
    assert MantisFlag.UNWISE_MISSING in MantisFlag(int(ref.flags[3]))
    assert MantisFlag.DUST_UNKNOWN in MantisFlag(int(ref.flags[4]))
    assert np.isfinite(fast.x).all()


def test_batched_inpaint_policy_and_missing_surveys_match():
    g, p, w = native(5, seed=2)
    assert_same(fuse_arrays(g, p, None, nan_policy="inpaint"),
                fuse_arrays_batched(g, p, None, nan_policy="inpaint"))
    assert_same(fuse_arrays(panstarrs=p[:2]), fuse_arrays_batched(panstarrs=p[:2]))


def test_batched_float16_input_and_other_sizes():
    """Training shards store PS1 as float16; other output sizes resize PS1 too."""
    g, p, w = native(4, seed=3, dtype=np.float16)
    assert_same(fuse_arrays(g, p, w), fuse_arrays_batched(g, p, w))
    assert_same(fuse_arrays(g, p, w, size=64), fuse_arrays_batched(g, p, w, size=64))


def test_batched_writes_into_a_given_buffer():
    g, p, w = native(3, seed=4)
    buf = np.full((3, 9, 120, 120), 7.0, np.float32)
    fused = fuse_arrays_batched(g, None, w, out=buf)
    assert fused.x is buf
    np.testing.assert_array_equal(buf, fuse_arrays(g, None, w).x)  # missing PS1 → zeros
    with pytest.raises(ValueError, match="out must be float32 of shape"):
        fuse_arrays_batched(g, p, w, out=np.zeros((3, 9, 120, 120)))
    x, valid, nan_rows, empty = fuse_survey_batched(g, "galex", threads=1)
    r = core.fuse_survey(g, "galex")
    np.testing.assert_array_equal(x, r[0])
    np.testing.assert_array_equal(valid, r[1])


def test_batched_rejects_bad_input():
    g, p, w = native(2, seed=5)
    with pytest.raises(ValueError, match="disagree on the number of rows"):
        fuse_arrays_batched(g, p[:1], w)
    with pytest.raises(ValueError, match=r"panstarrs data must have shape \(N, 5"):
        fuse_arrays_batched(panstarrs=p[:, :3])
    with pytest.raises(ValueError, match="at least 120"):
        fuse_arrays_batched(panstarrs=p[..., :100, :100])
    with pytest.raises(ValueError, match="nan_policy"):
        fuse_arrays_batched(g, nan_policy="drop")
    with pytest.raises(ValueError, match="no recipe for survey 'sdss'"):
        fuse_survey_batched(g, "sdss")
    assert 1 <= default_fusion_threads()


def test_early_fusion_of_cutouts_equals_the_reference_recipe():
    """early_fusion runs the batched survey fusion: still the reference's bits."""
    from astropy.coordinates import SkyCoord

    from astro_mantis.surveys import SURVEYS, SurveyImage

    n = CHUNK_ROWS + 2
    g, p, w = native(n, seed=8)
    coord = SkyCoord(150.0, 2.0, unit="deg")
    cuts = [MultiSurveyCutout(coord, {
        name: SurveyImage(name, a[i], None, SURVEYS[name].unit, SURVEYS[name].bands)
        for name, a in (("galex", g), ("panstarrs", p), ("unwise", w))}) for i in range(n)]
    for policy in ("zero", "inpaint"):
        a = early_fusion(cuts, nan_policy=policy)
        b = fuse_arrays(g, p, w, nan_policy=policy)
        for field in ("x", "dust", "valid"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_early_fusion_reads_rows_of_any_size_and_missing_surveys_in_place():
    """Rows with different native sizes, rows without a survey, float64 pixels and a
    reused output buffer full of stale values: the reference's bits, every pixel written."""
    from astropy.coordinates import SkyCoord

    from astro_mantis.surveys import SURVEYS, SurveyImage

    n = CHUNK_ROWS + 3
    g, p, w = native(n, seed=12)
    big = np.random.default_rng(13).uniform(-20, 400, (5, 200, 200)).astype(np.float32)
    coord = SkyCoord(150.0, 2.0, unit="deg")

    def cut(i):
        images = {"galex": g[i], "panstarrs": p[i].astype(np.float64), "unwise": w[i]}
        if i == 4:
            images["panstarrs"] = big            # a larger cutout: its own centre crop
        if i in (1, 6):
            del images["galex"]                  # no GALEX for these rows
        return MultiSurveyCutout(coord, {
            name: SurveyImage(name, a, None, SURVEYS[name].unit, SURVEYS[name].bands)
            for name, a in images.items()})

    cuts = [cut(i) for i in range(n)]
    out = np.full((n, 9, 120, 120), np.nan, np.float32)   # stale contents
    for policy in ("zero", "inpaint"):
        out.fill(np.nan)
        a = early_fusion(cuts, nan_policy=policy, out=out)
        assert a.x is out and np.isfinite(out).all()
        for i in range(n):
            gi = None if i in (1, 6) else g[i:i + 1]
            pi = core.center_crop(big, 170)[None] if i == 4 else p[i:i + 1]
            ref = fuse_arrays(gi, pi, w[i:i + 1], nan_policy=policy)
            np.testing.assert_array_equal(a.x[i], ref.x[0], err_msg=f"row {i}")
            np.testing.assert_array_equal(a.valid[i], ref.valid[0], err_msg=f"row {i}")
            assert (a.flags[i] & ~int(MantisFlag.DUST_UNKNOWN)) == \
                (ref.flags[0] & ~int(MantisFlag.DUST_UNKNOWN)), f"row {i}"
    assert MantisFlag.GALEX_MISSING in MantisFlag(int(a.flags[1]))
    assert MantisFlag.GALEX_MISSING not in MantisFlag(int(a.flags[0]))
    # no row holds a survey: zeros and its flag everywhere
    no_galex = early_fusion([c for i, c in enumerate(cuts) if i in (1, 6)])
    assert not no_galex.x[:, :2].any() and not no_galex.valid[:, :2].any()
    with pytest.raises(ValueError, match="out must be a float32 numpy array of shape"):
        early_fusion(cuts, out=np.empty((n, 9, 120, 120), np.float64))
    with pytest.raises(ValueError, match="out must be"):
        early_fusion(cuts, out=np.empty((n + 1, 9, 120, 120), np.float32))


def test_torch_path_agrees_with_reference_to_1e6():
    g, p, w = native(2 * CHUNK_ROWS, seed=6)
    ebv = np.random.default_rng(7).uniform(0, 0.2, (len(g), 2))
    for policy in ("zero", "inpaint"):
        sl = slice(None) if policy == "zero" else slice(0, 4)
        ref = fuse_arrays(g[sl], p[sl], w[sl], ebv=ebv[sl], nan_policy=policy)
        t = fuse_arrays_torch(g[sl], p[sl], w[sl], ebv=ebv[sl], nan_policy=policy,
                              device="cpu")
        assert isinstance(t.x, torch.Tensor) and t.x.dtype == torch.float32
        np.testing.assert_allclose(t.x.numpy(), ref.x, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(t.dust.numpy(), ref.dust)
        np.testing.assert_array_equal(t.valid, ref.valid)
        np.testing.assert_array_equal(t.flags, ref.flags)
    # tensors in (already on the device) give the same as arrays in
    t2 = fuse_arrays_torch(torch.from_numpy(g), torch.from_numpy(p), None)
    np.testing.assert_array_equal(t2.x.numpy(), fuse_arrays_torch(g, p, None).x.numpy())
    assert MantisFlag.UNWISE_MISSING in MantisFlag(int(t2.flags[0]))


@pytest.mark.parametrize("use_native", FAST_IMPLEMENTATIONS)
def test_fast_fusion_reports_surveys_given_as_none_not_valid(use_native):
    """A survey passed as None has no bad pixel to count, but its channels are zeros
    standing in for nothing: not valid, as in fuse_arrays."""
    g, p, w = native(5, seed=8)
    for arrays in [(g, None, w), (None, p, None), (g, p, None)]:
        ref = fuse_arrays(*arrays)
        fast = fuse_arrays_fast(*arrays, dtype="float32", compile=False, native=use_native)
        np.testing.assert_array_equal(fast.valid, ref.valid)
        np.testing.assert_array_equal(fast.flags, ref.flags)
        for (survey, _), ok in zip(core.CHANNELS, fast.valid.T):
            if arrays[list(core.RECIPE).index(survey)] is None:
                assert not ok.any(), survey


def test_bfloat16_predict_from_native_arrays_reports_missing_surveys_not_valid():
    """predict(..., precision="bfloat16") on a CPU fuses native arrays with
    fuse_arrays_fast: its meta["valid"] is that of the float32 path."""
    from astro_mantis.models import build_model, predict

    net = build_model("mantis-mini", widths=[8, 16], depths=[1, 1], hidden=32).eval()
    g, _, w = native(3, seed=9)
    data = {"galex": g, "unwise": w}
    low = predict(data, model=net, precision="bfloat16", compile=False)
    ref = predict(data, model=net, precision="float32")
    np.testing.assert_array_equal(low.meta["valid"], ref.meta["valid"])
    assert not np.asarray(low.meta["valid"])[:, 2:7].any()


@pytest.mark.parametrize("use_native", [None, False])
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_every_path_fuses_dust_alone(use_native, dtype):
    """Only dust: zeros, no valid channel, every survey missing (flags 7), on every path."""
    ebv = [[0.1, 0.1]]
    ref = fuse_arrays(ebv=ebv)
    assert ref.flags.tolist() == [7] and not ref.x.any() and not ref.valid.any()
    others = [fuse_arrays_batched(ebv=ebv), fuse_arrays_torch(ebv=ebv),
              fuse_arrays_fast(ebv=ebv, dtype=dtype, native=use_native, compile=False)]
    for got in others:
        x = got.x.float().numpy() if isinstance(got.x, torch.Tensor) else got.x
        np.testing.assert_array_equal(x, ref.x)
        dust = got.dust.numpy() if isinstance(got.dust, torch.Tensor) else got.dust
        np.testing.assert_array_equal(dust, ref.dust)
        np.testing.assert_array_equal(got.valid, ref.valid)
        np.testing.assert_array_equal(got.flags, ref.flags)
    fast = others[-1].x
    assert fast.dtype == getattr(torch, dtype)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    # into a given buffer, as when there are surveys
    out = torch.full((1, 9, 120, 120), 3.0, dtype=getattr(torch, dtype))
    into = fuse_arrays_fast(ebv=ebv, dtype=dtype, native=use_native, compile=False, out=out)
    assert into.x is out and not out.any()
    with pytest.raises(ValueError, match="out must be"):
        fuse_arrays_fast(ebv=ebv, dtype=dtype, out=torch.empty((2, 9, 120, 120)))


def test_concurrent_fusions_with_different_thread_counts(monkeypatch):
    """Two callers fusing at once with different ``threads`` each get a working pool:
    asking for a pool of another size must not shut down one in use."""
    n = CHUNK_ROWS + 3                        # more than one chunk: the pool is used
    g, p, w = native(n, seed=10)
    ref = fuse_arrays(g, p, w)
    both_have_a_pool = threading.Barrier(2, timeout=60)
    pool = batched._pool

    def pool_then_wait(threads):              # both pools handed out before either is used
        got = pool(threads)
        both_have_a_pool.wait()
        return got

    monkeypatch.setattr(batched, "_pool", pool_then_wait)
    results, errors = {}, []

    def fuse(threads):
        try:
            results[threads] = fuse_arrays_batched(g, p, w, threads=threads)
        except BaseException as exc:          # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=fuse, args=(k,)) for k in (2, 3)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(120)
    assert not errors, errors
    for k in (2, 3):
        assert_same(results[k], ref)
    # a pool handed out stays usable whatever size is asked for next
    two = pool(2)
    pool(4)
    assert two.submit(lambda: 1).result() == 1
