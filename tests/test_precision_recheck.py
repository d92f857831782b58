"""precision="auto" measures again once the model's weights change in place."""
import warnings
import weakref

import numpy as np
import pytest
import torch

from astro_mantis.models import build_model, predict
from astro_mantis.models import precision as prec
from astro_mantis.models.inference import CHECK_ROWS

TINY = {"widths": (4, 8, 8, 8), "depths": (1, 1, 1, 1), "hidden": 16}


def test_auto_checks_again_after_the_weights_change(monkeypatch):
    monkeypatch.setattr(prec, "cpu_features", lambda: frozenset({"amx_bf16"}))
    monkeypatch.setattr(prec, "_CHECKED", weakref.WeakKeyDictionary())
    rng = np.random.default_rng(3)
    n = CHECK_ROWS
    x = rng.random((n, 9, 120, 120), dtype=np.float32) * 0.5
    dust = np.zeros((n, 2), np.float32)
    torch.manual_seed(0)
    net = build_model("mantis-mini", **TINY).eval()
    torch.manual_seed(1)
    other = build_model("mantis-mini", **TINY).eval()
    for m in other.modules():  # weights unlike net's, so the distances differ
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.2, 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        first = predict(x, model=net, dust=dust).meta["precision_check_tv"]
        # the same weights in another module: a measurement of its own
        fresh = build_model("mantis-mini", **TINY).eval()
        fresh.load_state_dict(other.state_dict())
        expected = predict(x, model=fresh, dust=dust).meta["precision_check_tv"]
        assert first is not None and expected is not None
        assert expected != pytest.approx(first, rel=1e-3)
        # the same call again: the kept measurement, nothing new
        assert predict(x, model=net, dust=dust).meta["precision_check_tv"] == first
        net.load_state_dict(other.state_dict())  # in place: the stamp changes
        # a call too small to decide runs float32 rather than follow a stale decision
        small = predict(x[:1], model=net, dust=dust[:1])
        assert small.meta["precision"] == "float32"
        assert small.meta["precision_check_tv"] is None
        again = predict(x, model=net, dust=dust).meta["precision_check_tv"]
    assert again == pytest.approx(expected, rel=1e-5)
