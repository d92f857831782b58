"""The bundled mantis-mini: its card, its checksum, and that it works on the sample sky."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord

import astro_mantis
from astro_mantis import Mantis, conf
from astro_mantis.models import load_model, predict
from astro_mantis.simulate import SampleSky
from astro_mantis.testing import SurveyServer

DATA = Path(astro_mantis.__file__).parent / "data"


def test_docs_quote_the_bundled_cards_own_figures():
    """The pages that quote the bundled card name its weights and its recorded
    bfloat16 check; a new model whose pages were not updated fails here."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    if not docs.is_dir():
        pytest.skip("needs the source tree (docs/)")
    card = json.loads((DATA / "mantis-mini.json").read_text())
    assert f"sha256 {card['sha256'][:12]}" in (docs / "photoz.rst").read_text()
    tv = card["precision_check"]["cpu_bfloat16_tv"]
    assert f"card records {tv:.4f}" in (docs / "models.rst").read_text()
    assert f"T = {card['temperature']:.3f}" in (docs / "model_card.rst").read_text()


def test_card_matches_the_weights_and_says_what_they_are():
    weights = DATA / "mantis-mini.safetensors"
    card = json.loads((DATA / "mantis-mini.json").read_text())
    assert weights.stat().st_size <= 20 * 1024 ** 2
    assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert card["data_origin"].startswith("SIMULATED")
    assert len(card["bin_edges"]) == 401 and card["n_bins"] == 400
    assert "/work" not in json.dumps(card)  # no machine paths
    for split in ("validation", "test"):
        assert 0 < card["metrics"][split]["nmad"] < 0.2
    # the calibration is stored, fitted on validation, and the card's target verdicts
    # agree with its own test metrics
    cal = card["calibration"]
    assert cal["fitted_on"] == "validation" and "pit_map" in cal
    assert cal["temperature"] == card["temperature"]
    test = card["metrics"]["test"]
    assert test["pit_recalibrated"]
    targets = card["targets"]
    assert targets["pit_ks_after_calibration_le_0.05"] == (test["pit_ks"] <= 0.05)
    assert targets["coverage_68_in_0.63_0.73"] == (0.63 <= test["coverage_68"] <= 0.73)
    base = card["baseline_test"]
    assert targets["nmad_better_than_baseline"] == (targets["test_split"]["nmad"] < base["nmad"])


def test_bundled_model_recovers_sample_sky_redshifts(tmp_path):
    sky = SampleSky()
    cat = sky.catalog[:24]
    coords = SkyCoord(cat["ra"], cat["dec"], unit="deg")
    with SurveyServer(sky=sky) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path)):
        cuts = Mantis.get_cutouts(coords, progress=False)
    ebv = np.column_stack([cat["ebv_csfd"], cat["ebv_planck"]])
    pdf = predict(cuts, model=load_model("mantis-mini"), dust=ebv)
    assert len(pdf) == 24 and np.all(pdf.valid)
    assert pdf.meta["pit_recalibrated"]
    dz = np.abs(pdf.mean() - cat["z"]) / (1 + cat["z"])
    assert np.median(dz) < 0.1


def test_bundled_model_is_calibrated_on_the_sample_sky(tmp_path):
    """PIT of the 300 sample-sky galaxies (not in the training data) is near uniform.

    For 300 calibrated PDFs the 68% coverage has a standard error of 0.027 and the KS
    statistic is below 0.08 in 95% of samples; the bounds allow that, and would fail
    for PDFs as miscalibrated as a temperature off by 30%.
    """
    from scipy import stats

    from astro_mantis.metrics import pit

    sky = SampleSky()
    cat = sky.catalog
    coords = SkyCoord(cat["ra"], cat["dec"], unit="deg")
    with SurveyServer(sky=sky) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path)):
        cuts = Mantis.get_cutouts(coords, progress=False)
    ebv = np.column_stack([cat["ebv_csfd"], cat["ebv_planck"]])
    u = pit(predict(cuts, model="mantis-mini", dust=ebv), np.asarray(cat["z"]))
    coverage = np.mean((u >= 0.16) & (u <= 0.84))
    assert stats.kstest(u, "uniform").statistic < 0.09
    assert 0.60 <= coverage <= 0.76


def test_bundled_card_calibrates_tta_averages_and_predict_uses_it():
    """The card's calibration_tta was fitted to the 8-transform averages on the
    validation set, and ``predict(tta=True)`` applies it without a warning."""
    import warnings

    from astro_mantis.training import PITMap

    card = json.loads((DATA / "mantis-mini.json").read_text())
    entry = card["calibration_tta"]
    assert entry["temperature"] == card["temperature"] and entry["fitted_on"] == "validation"
    assert entry["after"]["pit_ks"] < entry["before"]["pit_ks"]
    assert abs(entry["after"]["coverage68"] - 0.68) < 0.01 < entry["before"]["coverage68"] - 0.68
    assert np.all(np.diff(PITMap.from_dict(entry["pit_map"]).values) > 0)
    rows = card["evaluation_tta"]["test"]["rows"]
    assert (abs(rows["TTA, own map"]["coverage_68"] - 0.68)
            < abs(rows["TTA, single-pass map"]["coverage_68"] - 0.68))
    x = np.random.default_rng(0).random((2, 9, 120, 120), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pdf = predict(x, dust=np.zeros((2, 2)), tta=True, precision="float32")
    assert pdf.meta["pit_map"] == "calibration_tta" and pdf.meta["tta"] is True


def test_bundled_card_records_the_training_redshifts():
    from astro_mantis.models import training_prior
    from astro_mantis.pdf import Z_CENTERS, Z_WIDTHS

    card = json.loads((DATA / "mantis-mini.json").read_text())
    record = card["training_redshifts"]
    assert len(record["counts"]) == card["n_bins"] and sum(record["counts"]) == record["n"]
    assert record["n"] > 50_000
    prior = training_prior("mantis-mini")
    assert prior.shape == (400,) and np.all(prior > 0)
    assert np.sum(prior * Z_WIDTHS) == pytest.approx(1.0)
    # the mock sky's n(z): most galaxies below z = 0.3, few above 1.2
    assert np.sum((prior * Z_WIDTHS)[Z_CENTERS < 0.3]) > 0.4
    assert np.sum((prior * Z_WIDTHS)[Z_CENTERS > 1.2]) < 0.06
    assert np.array_equal(training_prior(card), prior)
    with pytest.raises(ValueError, match="training_redshifts"):
        training_prior({"name": "old", "n_bins": 400})
    bad = dict(card, training_redshifts={"counts": [1, 2, 3]})
    with pytest.raises(ValueError, match="3 training redshift bins"):
        training_prior(bad)
