"""The sample sky's builder (astro_mantis.simulate.build_sample_sky) against MockSky.

tests/test_sample_sky.py holds the tests of SampleSky that run without GalSim; these
compare what the builder stores with what MockSky renders.
"""
import numpy as np
import pytest

pytest.importorskip("galsim")

from astro_mantis.simulate import (MockSky, MockSkyConfig, SampleSky,  # noqa: E402
                                   build_sample_sky, shifted_randomisation)
from astro_mantis.simulate.sample import SAMPLE_N, SAMPLE_SEED, SAMPLE_SKY_PATH  # noqa: E402

N = 2
SEED = 5


@pytest.fixture(scope="module")
def randomised(tmp_path_factory):
    """A two-galaxy sample of a randomised sky, and that sky."""
    # the shifted simulator: PSF x 1.2, sky noise x 1.3, zero points off by 0.03 mag in
    # every field, so a builder that ignores the field's conditions cannot pass
    config = MockSkyConfig(south_fraction=0.02, randomisation=shifted_randomisation())
    path = tmp_path_factory.mktemp("sample") / "randomised.npz"
    build_sample_sky(path, n=N, seed=SEED, config=config)
    mock = MockSky(MockSkyConfig(n_galaxies=N, south_fraction=0.02,
                                 randomisation=shifted_randomisation()), seed=SEED)
    return SampleSky(path), mock


def _position(sample, i):
    return float(sample.catalog["ra"][i]), float(sample.catalog["dec"][i])


def test_randomised_sample_matches_mock_render_in_every_survey(randomised):
    """Stored images and sigmas carry the field's conditions: noiseless renders agree
    within sigma/32 in every band of every survey, noisy PS1 and unWISE renders too (the
    same deviates), GALEX has the field's noise level."""
    sample, mock = randomised
    assert np.array_equal(sample.catalog["ra"], mock.catalog["ra"])
    for i in range(N):
        pos = _position(sample, i)
        scale = mock.field_conditions(pos)["noise_scale"]
        assert scale == 1.3
        for k, b in enumerate("grizy"):
            sigma = sample._sigma["panstarrs"][i, k]
            for noise in (False, True):
                a = sample.render("panstarrs", pos, band=b, noise=noise)[0]
                m = mock.render("panstarrs", pos, band=b, noise=noise)[0]
                assert a.header.tostring() == m.header.tostring()
                assert np.array_equal(np.isnan(a.data), np.isnan(m.data))
                assert np.nanmax(np.abs(a.data - m.data)) <= sigma * (1 / 32 + 1e-3), (i, b)
        for name in ("galex", "unwise"):
            sigma = sample._sigma[name][i][:, None, None]
            nominal = np.array(sample.meta["surveys"][name]["sigma_typical"])[:, None, None]
            np.testing.assert_allclose(sigma, nominal * scale, rtol=1e-12)
            a = sample.render(name, pos, noise=False)[0]
            m = mock.render(name, pos, noise=False)[0]
            assert a.header.tostring() == m.header.tostring()
            assert np.max(np.abs(a.data - m.data) / sigma) <= 1 / 32 + 1e-3, (i, name)
            a = sample.render(name, pos)[0].data
            m = mock.render(name, pos)[0].data
            if name == "unwise":  # Gaussian regime: the same deviates
                assert np.max(np.abs(a - m) / sigma) <= 1 / 32 + 1e-3, i
            elif np.any(m):  # photon counting: the same statistics (not in a GALEX hole)
                assert np.std(a) == pytest.approx(np.std(m), rel=0.15)


@pytest.mark.slow
def test_builder_reproduces_the_bundled_sample_sky(tmp_path):
    """Every image, sigma and EXPTIME of the bundled file is what the builder makes now.

    The whole file is byte-identical where the catalog's floats are: the bundled file
    was made on another CPU, whose vectorised transcendental functions may round a few
    catalog values differently in the last bit (test_sample_sky.py checks those to
    1e-13).
    """
    path = tmp_path / "rebuilt.npz"
    meta = build_sample_sky(path, n=SAMPLE_N, seed=SAMPLE_SEED)
    bundled = np.load(SAMPLE_SKY_PATH)
    rebuilt = np.load(path)
    assert sorted(bundled.files) == sorted(rebuilt.files)
    for name in bundled.files:
        if name == "catalog":
            continue
        a, b = bundled[name], rebuilt[name]
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name
    assert meta["config"] == SampleSky().meta["config"]
