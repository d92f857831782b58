"""Inference precision: choice, resolution, metadata, and the accuracy check.

The accuracy property (bfloat16 PDFs within a mean total-variation distance of 0.01
of float32's; int8 is looser) is checked with the bundled ``mantis-mini`` on galaxies of the
bundled sample sky (simulated), fetched through the loopback survey server.
"""
import warnings

import numpy as np
import pytest
import torch
from astropy.coordinates import SkyCoord

from astro_mantis import Mantis, conf
from astro_mantis.models import (PRECISIONS, build_model, load_model, native_precisions,
                                 pdf_total_variation, predict, predict_logits, quantize_int8,
                                 resolve_precision)
from astro_mantis.models import precision as prec
from astro_mantis.models.inference import CHECK_ROWS
from astro_mantis.simulate import SampleSky
from astro_mantis.testing import SurveyServer

TINY = {"widths": (4, 8, 8, 8), "depths": (1, 1, 1, 1), "hidden": 16}


@pytest.fixture(scope="module")
def sample_fused(tmp_path_factory):
    """Fused inputs, dust and true z of 64 sample-sky galaxies (over loopback HTTP)."""
    from astro_mantis.fusion import early_fusion

    sky = SampleSky()
    cat = sky.catalog[:64]
    coords = SkyCoord(cat["ra"], cat["dec"], unit="deg")
    with SurveyServer(sky=sky) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path_factory.mktemp("cache"))):
        cuts = Mantis.get_cutouts(coords, progress=False)
    ebv = np.column_stack([cat["ebv_csfd"], cat["ebv_planck"]])
    # the Pan-STARRS counts the bundled model takes (as served, or at the reference exposure)
    exposure = load_model("mantis-mini").panstarrs_exposure
    fused = early_fusion(cuts, ebv=ebv, panstarrs_exposure=exposure)
    return fused.x, fused.dust, np.asarray(cat["z"])


def test_precision_names_and_errors():
    assert PRECISIONS == ("auto", "float32", "bfloat16", "float16", "int8")
    assert resolve_precision("float32", "cpu") == "float32"
    assert resolve_precision("auto", "cpu") in native_precisions("cpu")
    assert native_precisions("cpu")[0] == "float32"
    with pytest.raises(ValueError, match="precision must be one of 'auto', 'float32', "
                                         "'bfloat16', 'float16', 'int8'; got 'half'"):
        resolve_precision("half", "cpu")
    with pytest.raises(ValueError, match="'float16' needs a GPU"):
        resolve_precision("float16", "cpu")
    x = np.zeros((1, 9, 120, 120), np.float32)
    with pytest.raises(ValueError, match="precision must be one of"):
        predict(x, model=build_model("mantis-mini", **TINY), precision="fp8")
    with pytest.raises(ValueError, match="'float16' needs a GPU"):
        predict(x, model=build_model("mantis-mini", **TINY), precision="float16")
    with pytest.raises(ValueError, match="needs a quantised model"):
        predict(x, model=build_model("mantis-mini", **TINY), precision="int8")


def test_auto_follows_the_cpu_flags(monkeypatch):
    real = prec.cpu_features()
    assert any(f.startswith("torch:") for f in real)
    assert resolve_precision("auto", "cpu") == (
        "bfloat16" if {"amx_bf16", "avx512_bf16"} & real else "float32")
    monkeypatch.setattr(prec, "cpu_features", lambda: frozenset({"avx2", "torch:AVX2"}))
    assert resolve_precision("auto", "cpu") == "float32"
    with pytest.warns(RuntimeWarning, match="emulates bfloat16"):
        assert resolve_precision("bfloat16", "cpu") == "bfloat16"
    for flag in ("amx_bf16", "avx512_bf16"):
        monkeypatch.setattr(prec, "cpu_features", lambda flag=flag: frozenset({flag}))
        assert resolve_precision("auto", "cpu") == "bfloat16"
        assert native_precisions("cpu") == ("float32", "bfloat16")


def test_total_variation():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    q = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    assert pdf_total_variation(p, p) == 0.0
    assert pdf_total_variation(p, q) == pytest.approx(0.5)       # (0 + 1) / 2
    with pytest.raises(ValueError, match="same shape"):
        pdf_total_variation(p, q[:1])


def test_metadata_records_the_precision_used(monkeypatch):
    net = build_model("mantis-mini", **TINY).eval()
    # CHECK_ROWS galaxies: enough for "auto" to decide (fewer run float32, undecided)
    x = np.random.default_rng(0).random((CHECK_ROWS, 9, 120, 120), dtype=np.float32)
    assert predict(x, model=net, precision="float32").meta["precision"] == "float32"
    bf = predict(x, model=net, precision="bfloat16")
    assert bf.meta["precision"] == "bfloat16"
    auto = predict(x, model=net)
    assert auto.meta["precision"] == resolve_precision("auto", "cpu")
    # auto on a CPU without bfloat16 instructions: float32, no check needed
    monkeypatch.setattr(prec, "cpu_features", lambda: frozenset())
    assert predict(x, model=net).meta["precision"] == "float32"
    # auto with bfloat16 native: the first batch is checked against float32
    monkeypatch.setattr(prec, "cpu_features", lambda: frozenset({"amx_bf16"}))
    out = predict(x, model=net)
    assert out.meta["precision"] == "bfloat16"
    assert 0 <= out.meta["precision_check_tv"] <= prec.TV_TOLERANCE


def test_auto_falls_back_to_float32_when_the_check_fails(monkeypatch):
    monkeypatch.setattr(prec, "cpu_features", lambda: frozenset({"amx_bf16"}))
    monkeypatch.setattr(prec, "TV_TOLERANCE", -1.0)   # nothing passes
    monkeypatch.setattr("astro_mantis.models.inference.TV_TOLERANCE", -1.0)
    net = build_model("mantis-mini", **TINY).eval()
    x = np.random.default_rng(1).random((CHECK_ROWS, 9, 120, 120), dtype=np.float32)
    with pytest.warns(RuntimeWarning, match="using float32 for this model"):
        out = predict(x, model=net)
    assert out.meta["precision"] == "float32"
    ref = predict(x, model=net, precision="float32")
    np.testing.assert_array_equal(out.pdf, ref.pdf)
    # explicit bfloat16 is not second-guessed
    assert predict(x, model=net, precision="bfloat16").meta["precision"] == "bfloat16"


def test_auto_never_decides_on_fewer_galaxies_than_check_rows(monkeypatch):
    """Without a card's check, "auto" decides bfloat16 or float32 once per model on the
    first CHECK_ROWS galaxies of a call that has them. A call with fewer (one galaxy)
    runs float32 and decides nothing, so a catalogue's precision does not hang on which
    single galaxy happened to run first (the auditor's autocheck.py, in small)."""
    import weakref

    from astro_mantis.models import inference

    monkeypatch.setattr(prec, "cpu_features", lambda: frozenset({"amx_bf16"}))
    torch.manual_seed(0)
    net = build_model("mantis-mini", **TINY).eval()
    rng = np.random.default_rng(7)
    n = CHECK_ROWS + 8
    x = (rng.random((n, 9, 120, 120), dtype=np.float32)
         * rng.uniform(0.1, 3.0, (n, 1, 1, 1)).astype(np.float32))
    p32 = predict(x, model=net, precision="float32")
    pbf = predict(x, model=net, precision="bfloat16")
    row_tv = 0.5 * np.abs(p32.probabilities() - pbf.probabilities()).sum(axis=1)
    low, high = int(np.argmin(row_tv)), int(np.argmax(row_tv))
    # a bar between the galaxies: one alone passes it, another alone fails it
    tol = float(np.sqrt(row_tv[low] * row_tv[high]))
    assert row_tv[low] < tol < row_tv[high]
    monkeypatch.setattr(prec, "TV_TOLERANCE", tol)
    monkeypatch.setattr(inference, "TV_TOLERANCE", tol)
    decided = {}
    for first in (low, high):
        monkeypatch.setattr(prec, "_CHECKED", weakref.WeakKeyDictionary())   # a new session
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            one = predict(x[first:first + 1], model=net)              # too few to decide
            assert one.meta["precision"] == "float32"
            assert one.meta["precision_check_tv"] is None
            np.testing.assert_allclose(one.pdf[0], p32.pdf[first], rtol=1e-5, atol=1e-7)
            small = predict(x, model=net, batch_size=CHECK_ROWS // 2)  # small batches: no more
            assert small.meta["precision"] == "float32"
            assert small.meta["precision_check_tv"] is None
            big = predict(x, model=net)                                 # decides, once
            decided[first] = (big.meta["precision"], big.meta["precision_check_tv"])
            # on its first CHECK_ROWS galaxies
            assert big.meta["precision_check_tv"] == pytest.approx(
                float(np.mean(row_tv[:CHECK_ROWS])), rel=1e-3)
            # and later calls, of any size, follow that decision
            again = predict(x[first:first + 1], model=net)
            assert (again.meta["precision"], again.meta["precision_check_tv"]) == decided[first]
    assert decided[low] == decided[high]     # whichever galaxy came first


def test_auto_follows_the_precision_check_a_card_records(monkeypatch):
    """A card's precision_check decides "auto" on CPUs: no first-batch check, no warning."""
    import weakref

    monkeypatch.setattr(prec, "cpu_features", lambda: frozenset({"amx_bf16"}))
    monkeypatch.setattr(prec, "_CHECKED", weakref.WeakKeyDictionary())
    net = build_model("mantis-mini", **TINY).eval()
    x = np.random.default_rng(4).random((3, 9, 120, 120), dtype=np.float32)
    assert prec.recorded_cpu_bfloat16_tv(net) is None
    net.meta["precision_check"] = {"cpu_bfloat16_tv": 0.02}      # fails the bar
    assert prec.recorded_cpu_bfloat16_tv(net) == 0.02
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # no warning at all
        out = predict(x, model=net)
    assert out.meta["precision"] == "float32" and out.meta["precision_check_tv"] == 0.02
    np.testing.assert_array_equal(out.pdf, predict(x, model=net, precision="float32").pdf)
    assert predict(x, model=net, precision="bfloat16").meta["precision"] == "bfloat16"
    net.meta["precision_check"] = {"cpu_bfloat16_tv": 0.004}     # passes: bfloat16
    assert predict(x, model=net).meta["precision"] == "bfloat16"
    net.meta["precision_check"] = "not a mapping"
    assert prec.recorded_cpu_bfloat16_tv(net) is None


@pytest.mark.parametrize("recorded", [0.004, 0.01])
def test_a_recorded_check_within_the_bar_is_followed_without_a_check(monkeypatch, recorded):
    """At or below TV_TOLERANCE the card's value decides too: bfloat16, no first-rows check
    (which could fail on unlucky galaxies and switch to float32 with a warning)."""
    import weakref

    from astro_mantis.models import inference

    def no_check(*args, **kwargs):
        raise AssertionError("the first-rows check ran although the card records one")

    monkeypatch.setattr(prec, "cpu_features", lambda: frozenset({"amx_bf16"}))
    monkeypatch.setattr(prec, "_CHECKED", weakref.WeakKeyDictionary())
    monkeypatch.setattr(inference, "_check_once", no_check)
    net = build_model("mantis-mini", **TINY).eval()
    net.meta["precision_check"] = {"cpu_bfloat16_tv": recorded}
    x = np.random.default_rng(5).random((3, 9, 120, 120), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = predict(x, model=net)
    assert out.meta["precision"] == "bfloat16"
    assert out.meta["precision_check_tv"] == recorded
    np.testing.assert_array_equal(out.pdf, predict(x, model=net, precision="bfloat16").pdf)
    # and without a card entry the first rows are still checked
    del net.meta["precision_check"]
    with pytest.raises(AssertionError, match="first-rows check ran"):
        predict(x, model=net)


def test_predict_logits_precision_argument():
    net = build_model("mantis-mini", **TINY).eval()
    rng = np.random.default_rng(2)
    x, d = rng.random((5, 9, 120, 120), dtype=np.float32), np.zeros((5, 2), np.float32)
    a = predict_logits(net, x, d, batch_size=2)                      # float32 by default
    with torch.no_grad():
        b = net(torch.from_numpy(x), torch.from_numpy(d)).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    c = predict_logits(net, x, d, batch_size=2, precision="bfloat16")
    assert c.dtype == np.float32 and not np.array_equal(a, c)      # really ran in bfloat16
    np.testing.assert_allclose(c, a, atol=0.1)


def test_bfloat16_and_int8_match_float32_on_the_sample_sky(sample_fused, monkeypatch):
    """The accuracy property: "auto" runs the bundled model in bfloat16 only where its
    mean PDF total variation to float32 is within TV_TOLERANCE, else in float32 exactly."""
    import weakref

    x, dust, z = sample_fused
    net = load_model("mantis-mini")
    ref = predict(x, model=net, dust=dust, precision="float32")
    bf = predict(x, model=net, dust=dust, precision="bfloat16")
    tv_bf = pdf_total_variation(ref, bf)
    assert 0 < tv_bf < 0.05
    # point estimates move far less than the scatter (~0.02 (1+z) on this sky)
    assert np.max(np.abs(bf.mean() - ref.mean()) / (1 + z)) < 0.01
    # "auto" on a CPU that runs bfloat16 natively: the card's check (measured on the
    # validation set) decides where it has one, else the first batch is checked
    monkeypatch.setattr(prec, "cpu_features", lambda: frozenset({"amx_bf16"}))
    monkeypatch.setattr(prec, "_CHECKED", weakref.WeakKeyDictionary())
    recorded = prec.recorded_cpu_bfloat16_tv(net)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        auto = predict(x, model=net, dust=dust)
    if recorded is not None:
        assert auto.meta["precision_check_tv"] == recorded
        assert not any("using float32" in str(w.message) for w in caught)  # no surprise
    tv = auto.meta["precision_check_tv"]
    assert tv > 0
    if tv > prec.TV_TOLERANCE:
        assert auto.meta["precision"] == "float32"
        np.testing.assert_allclose(auto.pdf, ref.pdf, rtol=1e-5, atol=1e-7)
    else:
        assert auto.meta["precision"] == "bfloat16"
        assert pdf_total_variation(ref, auto) <= 2 * prec.TV_TOLERANCE
    # int8: calibrated on the even rows, judged on the odd rows. It does NOT meet the
    # 0.01 bar (docs/models.rst), which is why "auto" never picks it; this pins that it
    # stays a usable approximation

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_int8(net, x[::2])
    assert q.meta["precision"] == "int8" and net.meta.get("precision") is None
    q8 = predict(x[1::2], model=q, dust=dust[1::2])
    assert q8.meta["precision"] == "int8"
    ref_odd = predict(x[1::2], model=net, dust=dust[1::2], precision="float32")
    tv_int8 = pdf_total_variation(ref_odd, q8)
    assert 0 < tv_int8 <= 0.2
    # its point estimates stay well inside the scatter, and none moves by as much as its
    # own PDF's standard deviation (a galaxy whose PDF spans most of the range may move
    # by more than the outlier width, 0.05 (1 + z): the ninth stage's weights have one)
    shift = np.abs(q8.median() - ref_odd.median())
    assert np.median(shift / (1 + z[1::2])) < 0.01
    assert np.all(shift < ref_odd.std())
    with pytest.raises(ValueError, match="int8-quantised"):
        predict(x[:1], model=q, precision="bfloat16")
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        quantize_int8(net, x[0])


def test_native_arrays_in_predict_match_fused_input():
    """predict on native per-survey arrays (fused in the loop) = predict on fused arrays."""
    from astro_mantis.fusion import fuse_arrays

    rng = np.random.default_rng(3)
    n = 10
    native = {"galex": rng.uniform(-0.02, 0.08, (n, 2, 32, 32)).astype(np.float32),
              "panstarrs": rng.uniform(-20, 400, (n, 5, 170, 170)).astype(np.float32),
              "unwise": rng.uniform(-2, 30, (n, 2, 32, 32)).astype(np.float32)}
    native["panstarrs"][2, 0, 60:70] = np.nan
    ebv = rng.uniform(0, 0.1, (n, 2))
    net = build_model("mantis-mini", **TINY).eval()
    from astro_mantis.fusion.exposure import reference_exptime

    typical = np.tile(reference_exptime(), (n, 1))  # stacks of the reference depth: no rescaling
    a = predict(dict(native, panstarrs_exptime=typical), model=net, dust=ebv, batch_size=4,
                precision="float32")
    fused = fuse_arrays(**native, ebv=ebv)
    b = predict(fused.x, model=net, dust=fused.dust, batch_size=4, precision="float32")
    np.testing.assert_array_equal(a.pdf, b.pdf)
    np.testing.assert_array_equal(a.meta["flags"], fused.flags)
    np.testing.assert_array_equal(a.meta["valid"], fused.valid)
    only_ps1 = predict({"panstarrs": native["panstarrs"]}, model=net, precision="float32")
    assert len(only_ps1) == n and (only_ps1.meta["flags"] & 1).all()  # GALEX_MISSING
    with pytest.raises(ValueError, match="unknown survey"):
        predict({"sdss": native["galex"]}, model=net)
    with pytest.raises(ValueError, match="agree on the number of rows"):
        predict({"galex": native["galex"], "unwise": native["unwise"][:3]}, model=net)


def test_compile_falls_back_cleanly(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    net = build_model("mantis-mini", **TINY).eval()
    x = np.random.default_rng(4).random((2, 9, 120, 120), dtype=np.float32)
    with pytest.warns(RuntimeWarning, match="running eagerly"):
        out = predict(x, model=net, precision="float32", compile=True)
    np.testing.assert_array_equal(out.pdf, predict(x, model=net, precision="float32").pdf)


def test_default_batch_size_per_device():
    assert prec.default_batch_size("cpu") == 64
    small = build_model("mantis-mini", **TINY)
    assert prec.default_batch_size("cuda", small) == 1024
    assert prec.default_batch_size("cuda") == 1024
    assert "threads" in prec.machine_summary()
