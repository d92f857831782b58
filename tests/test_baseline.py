"""The tabular baseline: photutils aperture magnitudes + k nearest neighbours."""
import numpy as np
import pytest

from astro_mantis.training.baseline import (KNNRedshift, aperture_fluxes, asinh_magnitudes,
                                            shard_features)


def test_aperture_flux_of_a_constant_image_is_the_aperture_area():
    img = np.ones((2, 1, 33, 33))
    flux = aperture_fluxes(img, radius=5.0)
    assert flux.shape == (2, 1)
    np.testing.assert_allclose(flux, np.pi * 25, rtol=1e-6)


def test_nan_pixels_are_left_out():
    img = np.ones((1, 1, 33, 33))
    img[0, 0, 16, 16] = np.nan
    assert aperture_fluxes(img, 5.0)[0, 0] == pytest.approx(np.pi * 25 - 1, rel=1e-6)


def test_asinh_magnitudes_match_ab_for_bright_sources_and_stay_finite():
    zp, depth = 25.0, 23.0
    flux = 10 ** (-0.4 * (18.0 - zp))
    assert asinh_magnitudes(flux, zp, depth) == pytest.approx(18.0, abs=1e-3)
    faint = asinh_magnitudes(np.array([-5.0, 0.0, 5.0]), zp, depth)
    assert np.all(np.isfinite(faint)) and faint[0] > faint[1] > faint[2]


def test_shard_features_recover_a_known_magnitude():
    n = 3
    shard = {"galex": np.zeros((n, 2, 32, 32)), "unwise": np.zeros((n, 2, 32, 32)),
             "panstarrs": np.zeros((n, 5, 170, 170)),
             "panstarrs_exptime": np.full((n, 5), 100.0)}
    zp = 25 + 2.5 * np.log10(100.0)
    shard["panstarrs"][:, 1, 84:86, 84:86] = 10 ** (-0.4 * (17.0 - zp)) / 4  # r = 17
    feats = shard_features(shard)
    assert feats.shape == (n, 9)
    assert feats[:, 3] == pytest.approx(17.0, abs=1e-3)


def test_knn_learns_a_smooth_relation_and_gives_valid_pdfs():
    rng = np.random.default_rng(1)
    z = rng.uniform(0.05, 1.2, 3000)
    colours = np.column_stack([2 * z, -z, z ** 2]) + rng.normal(0, 0.02, (3000, 3))
    model = KNNRedshift(k=15).fit(colours[:2500], z[:2500])
    zp = model.predict(colours[2500:])
    assert np.median(np.abs(zp - z[2500:])) < 0.02
    pdf = model.predict_pdf(colours[2500:2510])
    assert len(pdf) == 10 and np.all(pdf.valid)
    assert np.all(np.abs(pdf.mean() - z[2500:2510]) < 0.1)
    with pytest.raises(ValueError, match="positive integer"):
        KNNRedshift(k=0)
