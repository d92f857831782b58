"""The calibration of test-time-augmentation averages (``calibration_tta``)."""
import json
import warnings

import numpy as np
import pytest
import torch

from astro_mantis.pdf import Z_EDGES, RedshiftPDF
from astro_mantis.training import ArrayDataset, PITMap, calibrate_tta, collect_logits
from astro_mantis.training.calibration import calibration_summary, pit_values, tta_calibration

#: Build arguments of a very small mantis-mini (a few thousand parameters).
TINY_MINI = {"widths": [4, 8], "depths": [1, 1], "hidden": 16, "drop": 0.1}
SINGLE = PITMap([0.0, 0.3, 1.0], [0.0, 0.6, 1.0])
TTA = PITMap([0.0, 0.5, 1.0], [0.0, 0.3, 1.0])


def tiny_mini(seed=0):
    from astro_mantis.models import build_model

    torch.manual_seed(seed)
    return build_model("mantis-mini", **TINY_MINI).eval()


def asymmetric(n, seed=1):
    """Random images (not symmetric, so the 8 transforms differ), dust and redshifts."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, 9, 120, 120), dtype=np.float32),
            rng.uniform(0, 0.1, (n, 2)).astype(np.float32), rng.uniform(0.05, 1.5, n))


def test_collect_logits_tta_is_the_log_of_predicts_average():
    from astro_mantis.models import predict

    net = tiny_mini()
    x, dust, z = asymmetric(5)
    net.meta["temperature"] = 1.3
    log_probs, zz = collect_logits(net, ArrayDataset(x, dust, z), batch_size=2, tta=True,
                                   temperature=1.3)
    assert np.array_equal(zz, z) and log_probs.shape == (5, 400)
    averaged = predict(x, net, dust=dust, tta=True, precision="float32")
    np.testing.assert_allclose(np.exp(log_probs), averaged.pdf * averaged.widths,
                               rtol=1e-4, atol=1e-7)
    # their softmax at temperature 1 is the average itself; one pass differs from it
    np.testing.assert_allclose(RedshiftPDF.from_logits(log_probs).pdf, averaged.pdf,
                               rtol=1e-4, atol=1e-6)
    single, _ = collect_logits(net, ArrayDataset(x, dust, z), batch_size=2)
    assert not np.allclose(RedshiftPDF.from_logits(single, temperature=1.3).pdf, averaged.pdf,
                           atol=1e-6)


def _broad(rng, n):
    """Log-probabilities of PDFs twice too broad, and true redshifts from the truth."""
    centres = 0.5 * (Z_EDGES[1:] + Z_EDGES[:-1])
    mu = rng.uniform(0.3, 1.3, n)
    logits = -0.5 * ((centres[None, :] - mu[:, None]) / 0.1) ** 2
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return log_probs, np.clip(mu + rng.normal(0, 0.05, n), 0.001, 1.599)


def test_tta_calibration_fits_the_averages_map():
    rng = np.random.default_rng(4)
    vl, vz = _broad(rng, 3000)
    tl, tz = _broad(rng, 3000)  # held out
    entry = tta_calibration(vl, vz, 1.25)
    assert entry["temperature"] == 1.25 and entry["transforms"] == 8
    assert entry["fitted_on"] == "validation" and "8 flips" in entry["method"]
    assert json.loads(json.dumps(entry)) == entry  # a card entry
    pm = PITMap.from_dict(entry["pit_map"])
    ref = PITMap.fit(pit_values(vl, vz, 1.0))
    np.testing.assert_array_equal(pm.values, ref.values)
    # the broad PDFs' coverage is too high before and nominal after, on held-out draws
    assert entry["before"]["coverage68"] > 0.85
    after = calibration_summary(tl, tz, 1.0, pit_map=pm)
    assert abs(after["coverage68"] - 0.68) < 0.03 and after["pit_ks"] < 0.03
    assert entry["after"]["pit_ks"] < entry["before"]["pit_ks"]
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="temperature must be a positive number"):
            tta_calibration(vl, vz, bad)


def test_predict_uses_the_tta_map_with_tta_and_warns_without_one():
    from astro_mantis.models import pit_map_for, predict

    net = tiny_mini()
    x, dust, _ = asymmetric(3)
    raw_tta = predict(x, net, dust=dust, tta=True, precision="float32")
    raw = predict(x, net, dust=dust, precision="float32")
    assert "pit_recalibrated" not in raw_tta.meta
    net.meta["calibration"] = {"pit_map": SINGLE.to_dict()}
    net.meta["calibration_tta"] = {"pit_map": TTA.to_dict()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tta = predict(x, net, dust=dust, tta=True, precision="float32")
        one = predict(x, net, dust=dust, precision="float32")
    assert tta.meta["pit_map"] == "calibration_tta" and tta.meta["pit_recalibrated"]
    assert one.meta["pit_map"] == "calibration"
    np.testing.assert_allclose(tta.pdf, TTA.apply(RedshiftPDF(raw_tta.pdf)).pdf,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one.pdf, SINGLE.apply(RedshiftPDF(raw.pdf)).pdf,
                               rtol=1e-5, atol=1e-6)
    # a card without calibration_tta: the single-pass map, with a warning saying so
    del net.meta["calibration_tta"]
    with pytest.warns(UserWarning, match="no calibration_tta"):
        old = predict(x, net, dust=dust, tta=True, precision="float32")
    assert old.meta["pit_map"] == "calibration"
    np.testing.assert_allclose(old.pdf, SINGLE.apply(RedshiftPDF(raw_tta.pdf)).pdf,
                               rtol=1e-5, atol=1e-6)
    assert pit_map_for({}, tta=True) == (None, None)
    assert pit_map_for(None) == (None, None)
    # a stale entry, fitted at another temperature than the card's, is not used
    card = {"name": "m", "temperature": 1.2, "calibration": {"pit_map": SINGLE.to_dict()},
            "calibration_tta": {"temperature": 1.2, "pit_map": TTA.to_dict()}}
    assert pit_map_for(card, tta=True)[1] == "calibration_tta"
    with pytest.warns(UserWarning, match="fitted at temperature 1.2, not the card's 1.3"):
        assert pit_map_for(dict(card, temperature=1.3), tta=True)[1] == "calibration"


def test_fit_and_export_refuses_tta_calibration_without_a_pit_map(tmp_path):
    from astro_mantis.training.pipeline import fit_and_export

    for kw in ({"calibrate": False}, {"pit": False}):
        with pytest.raises(ValueError, match="tta_calibration=True needs calibrate=True"):
            fit_and_export("mantis-mini", tmp_path, tmp_path / "out", tta_calibration=True, **kw)
    assert not (tmp_path / "out").exists()  # refused before anything was made


def test_calibrate_tta_is_tta_calibration_of_the_models_averages():
    net = tiny_mini(2)
    net.meta["temperature"] = 0.8
    x, dust, z = asymmetric(40, seed=3)
    data = ArrayDataset(x, dust, z)
    entry = calibrate_tta(net, data, batch_size=16)
    log_probs, _ = collect_logits(net, data, batch_size=16, tta=True, temperature=0.8)
    ref = tta_calibration(log_probs, z, 0.8)
    assert entry["temperature"] == 0.8
    np.testing.assert_allclose(entry["pit_map"]["values"], ref["pit_map"]["values"], atol=1e-9)
    assert calibrate_tta(net, data, temperature=2.0, batch_size=16)["temperature"] == 2.0


def test_evaluate_model_with_tta(tmp_path):
    from astro_mantis.simulate.dataset import make_dataset
    from astro_mantis.training.data import ShardDataset
    from astro_mantis.training.evaluation import calibrated_pdf, evaluate_model

    make_dataset(8, tmp_path / "d", seed=5, split=(0, 0, 1), shard_size=8, progress=False)
    net = tiny_mini()
    net.meta.update(name="tiny", temperature=1.5,
                    calibration={"pit_map": SINGLE.to_dict()},
                    calibration_tta={"pit_map": TTA.to_dict()})
    ev = evaluate_model(net, tmp_path / "d", min_count=1, n_bootstrap=2,
                        cache_dir=tmp_path / "c", tta=True)
    log_probs, z = collect_logits(net, ShardDataset(tmp_path / "d", "test", cache_dir=tmp_path
                                                    / "c", panstarrs_exposure="reference"),
                                  tta=True, temperature=1.5)
    expected = TTA.apply(RedshiftPDF.from_logits(log_probs))
    np.testing.assert_allclose(ev.pdf.pdf, expected.pdf, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(calibrated_pdf(log_probs, net.meta, tta=True).pdf, expected.pdf)
    assert ev.overall["tta"] is True and ev.overall["temperature"] == 1.0
    assert evaluate_model(net, tmp_path / "d", min_count=1, n_bootstrap=2,
                          cache_dir=tmp_path / "c").overall["tta"] is False
    # a card without calibration_tta: the single-pass map, and one warning that says so
    del net.meta["calibration_tta"]
    with pytest.warns(UserWarning, match="no calibration_tta") as caught:
        old = evaluate_model(net, tmp_path / "d", min_count=1, n_bootstrap=2,
                             cache_dir=tmp_path / "c", tta=True)
    assert len([w for w in caught if "calibration_tta" in str(w.message)]) == 1
    np.testing.assert_allclose(old.pdf.pdf, SINGLE.apply(RedshiftPDF.from_logits(log_probs)).pdf,
                               rtol=1e-5, atol=1e-6)
