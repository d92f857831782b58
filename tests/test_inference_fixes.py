"""Inference fixes: the thread-safe model cache, the fused-array input checks
(shape, bfloat16 tensors, NaN dust)."""
import threading
import time

import numpy as np
import pytest
import torch

from astro_mantis.flags import MantisFlag
from astro_mantis.models import build_model, get_model, predict
from astro_mantis.models import inference

TINY = {"widths": [8, 16], "depths": [1, 1], "hidden": 32}


@pytest.fixture
def fake_loader(monkeypatch):
    """load_model replaced by a slow loader of a small module that counts its loads."""
    loads = {}
    lock = threading.Lock()

    def load(name, weights=None, device=None):
        with lock:
            loads[(name, weights)] = loads.get((name, weights), 0) + 1
        time.sleep(0.002)  # a load takes a while: lets the threads interleave
        return torch.nn.Linear(2, 2)

    monkeypatch.setattr(inference, "load_model", load)
    inference.clear_model_cache()
    yield loads
    inference.clear_model_cache()


def _run_threads(target, n):
    errors = []
    start = threading.Barrier(n)

    def work(i):
        try:
            start.wait()
            target(i)
        except Exception as exc:  # noqa: BLE001 - collected and asserted on
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_model_cache_is_thread_safe(fake_loader):
    # more keys than the cache holds, from several threads: no KeyError
    def many(i):
        for k in range(40):
            model = get_model("m", weights=f"w{(i + k) % 3}", device="cpu")
            assert isinstance(model, torch.nn.Linear)

    assert _run_threads(many, 6) == []
    assert len(inference._CACHE) <= inference._CACHE_SIZE

    # one model asked for by several threads at once is loaded once, and all get it
    inference.clear_model_cache()
    fake_loader.clear()
    got = []
    assert _run_threads(lambda i: got.append(get_model("m", weights="same",
                                                       device="cpu")), 8) == []
    assert fake_loader == {("m", "same"): 1}
    assert all(m is got[0] for m in got)


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    net = build_model("mantis-mini", **TINY).eval()
    return net


def test_fused_arrays_of_another_shape_are_refused(tiny_net):
    x = np.random.default_rng(0).random((2, 9, 120, 120), dtype=np.float32)
    dust = np.zeros((2, 2), np.float32)
    net = build_model("mantis-mini", **TINY).eval()
    net.load_state_dict(tiny_net.state_dict())
    net.meta = dict(net.meta, input={"x": [9, 120, 120]})  # as a card records it
    assert len(predict(x, model=net, dust=dust, precision="float32")) == 2
    with pytest.raises(ValueError, match=r"\(N, 9, 120, 120\); got an array of shape "
                                         r"\(2, 9, 64, 64\)"):
        predict(x[:, :, :64, :64], model=net, dust=dust, precision="float32")
    with pytest.raises(ValueError, match=r"shape \(2, 8, 120, 120\)"):
        predict(x[:, :8], model=net, dust=dust, precision="float32")
    # a network without a recorded input size still needs the 9 channels
    with pytest.raises(ValueError, match="9"):
        predict(x[:, :8, :32, :32], model=tiny_net, dust=dust, precision="float32")
    assert len(predict(x[:, :, :32, :32], model=tiny_net, dust=dust,
                       precision="float32")) == 2


def test_the_bundled_model_refuses_a_wrong_image_size():
    x = np.zeros((1, 9, 64, 64), np.float32)
    with pytest.raises(ValueError, match="120, 120"):
        predict(x, model="mantis-mini", dust=np.zeros((1, 2)), device="cpu",
                precision="float32")


def test_bfloat16_tensors_are_read_as_float32(tiny_net):
    x = torch.rand(3, 9, 32, 32)
    dust = torch.rand(3, 2) * 0.1
    ref = predict(x.to(torch.bfloat16).float(), model=tiny_net,
                  dust=dust.to(torch.bfloat16).float(), precision="float32")
    got = predict(x.to(torch.bfloat16), model=tiny_net, dust=dust.to(torch.bfloat16),
                  precision="float32")
    np.testing.assert_array_equal(got.pdf, ref.pdf)


def test_nan_dust_of_a_fused_array_is_zeroed_and_flagged(tiny_net):
    x = np.random.default_rng(1).random((3, 9, 32, 32), dtype=np.float32)
    dust = np.array([[0.05, 0.04], [np.nan, 0.02], [0.0, np.inf]], np.float32)
    got = predict(x, model=tiny_net, dust=dust, precision="float32")
    clean = dust.copy()
    clean[1:] = 0.0
    ref = predict(x, model=tiny_net, dust=clean, precision="float32")
    np.testing.assert_array_equal(got.pdf, ref.pdf)
    unknown = int(MantisFlag.DUST_UNKNOWN)
    assert [int(f) & unknown for f in got.meta["flags"]] == [0, unknown, unknown]
    assert not ref.meta["flags"].any()
