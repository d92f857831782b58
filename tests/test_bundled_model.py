"""The bundled mantis-mini: its card, its checksum, and that it works on the sample sky."""
import hashlib
import json
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord

import astro_mantis
from astro_mantis import Mantis, conf
from astro_mantis.models import load_model, predict
from astro_mantis.simulate import SampleSky
from astro_mantis.testing import SurveyServer

DATA = Path(astro_mantis.__file__).parent / "data"


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
    dz = np.abs(pdf.mean() - cat["z"]) / (1 + cat["z"])
    assert np.median(dz) < 0.1
