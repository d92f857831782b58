# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The smallest flux errors a mock galaxy's cutouts allow (astro_mantis.simulate.matched_filter)."""
import math

import numpy as np
import pytest
from astropy.table import Table

galsim = pytest.importorskip("galsim")

from astro_mantis.simulate import (ImagingConfig, MockSky, MockSkyConfig,  # noqa: E402
                                   Randomisation)
from astro_mantis.simulate import flux_errors  # noqa: E402
from astro_mantis.simulate.render import BANDS, SURVEY_OF_BAND, ImageRenderer  # noqa: E402
from astro_mantis.simulate.service_format import default_geometry  # noqa: E402

RA, DEC = 185.0, 25.0
SURVEYS = ("galex", "panstarrs", "unwise")
SHAPES = {"r_half_disk": [0.0, 0.5, 2.0, 1.0, 0.0], "r_half_bulge": [0.0, 0.0, 0.0, 0.6, 1.5],
          "bulge_frac": [0.0, 0.0, 0.0, 0.5, 1.0], "q": [1.0, 0.8, 0.3, 0.6, 0.7],
          "pa": [0.0, 30.0, 70.0, 120.0, 10.0]}


def quiet(**kw):
    settings = dict(star_density=0, neighbour_density=0, galex_hole_fraction=0,
                    ps1_nan_fraction=0)
    settings.update(kw)
    return ImagingConfig(**settings)


def catalog(n=5, mag=None, **shape):
    table = Table({"ra": np.full(n, RA), "dec": np.full(n, DEC)})
    for name, values in {**SHAPES, **shape}.items():
        table[name] = np.resize(np.asarray(values, float), n)
    for band in BANDS:
        table[f"mag_{band}"] = np.full(n, 20.0 if mag is None else mag)
    return table


def nominal_sigma(sky, band):
    """A fifth of the band's 5σ depth (maggies), at the PS1 stack's exposure time there."""
    imaging = sky.config.imaging
    depth = imaging.depth[band]
    if SURVEY_OF_BAND[band] == "panstarrs":
        exptime = sky.render("panstarrs", (RA, DEC), band=band, noise=False)[0].header["EXPTIME"]
        depth = imaging.band_depth(band, exptime)
    return 10.0 ** (-0.4 * depth) / 5.0


@pytest.fixture(scope="module")
def sky():
    return MockSky(MockSkyConfig(imaging=quiet()), catalog=catalog(), seed=4)


def test_a_point_source_has_a_fifth_of_the_5sigma_depth(sky):
    errors = flux_errors(sky, catalog(1, r_half_disk=0.0, r_half_bulge=0.0))
    assert errors.shape == (1, 9)
    expect = [nominal_sigma(sky, band) for band in BANDS]
    np.testing.assert_allclose(errors[0], expect, rtol=0.01)


def test_galaxies_match_galsim_pixel_sums(sky):
    """σ_F = σ_pix / sqrt(Σ p²): the Fourier integral against GalSim's own pixels."""
    errors = flux_errors(sky)
    renderer = ImageRenderer(sky.config.imaging)
    for band in ("nuv", "r", "z", "w1"):
        j = BANDS.index(band)
        scale = default_geometry(SURVEY_OF_BAND[band])[1]
        psf = renderer.psf(band)
        for k in range(len(SHAPES["q"])):
            prof, _ = renderer._unit_profile(*(SHAPES[c][k] for c in SHAPES))
            obj = psf if prof is None else galsim.Convolve(prof, psf)
            sums = []
            for phase in ((0.0, 0.0), (0.25, 0.5), (0.5, 0.25)):
                img = obj.drawImage(nx=241, ny=241, scale=scale, offset=phase).array
                sums.append((img**2).sum() / img.sum() ** 2)
            direct = 1.0 / math.sqrt(renderer.n_eff(band, scale) * np.mean(sums))
            assert errors[k, j] / nominal_sigma(sky, band) == pytest.approx(direct, rel=0.02)
    # larger galaxies are noisier, most of all in the sharp Pan-STARRS images
    r = BANDS.index("r")
    assert errors[0, r] < errors[1, r] < errors[2, r]
    assert errors[2, r] / errors[0, r] > errors[2, BANDS.index("w1")] / errors[0, BANDS.index("w1")]


def test_the_bound_is_what_a_matched_filter_reaches_on_the_rendered_noise():
    """Many noise draws of the sky's own r-band cutout of a faint galaxy (sky-limited):
    the matched filter's scatter is the bound."""
    faint = catalog(1, mag=24.0, r_half_disk=1.2, r_half_bulge=0.0, bulge_frac=0.0, q=0.5)
    sky = MockSky(MockSkyConfig(imaging=quiet()), catalog=faint, seed=2)
    hdu = sky.render("panstarrs", (RA, DEC), band="r", noise=False)[0]
    clean = hdu.data.astype(float)
    template = clean / clean.sum()
    pixscale = default_geometry("panstarrs")[1]
    estimates = [np.sum(template * sky.renderer.add_noise(clean, "r", pixscale,
                                                           hdu.header["EXPTIME"], seed))
                 / np.sum(template**2) for seed in range(400)]
    maggies_per_count = 10.0 ** (-0.4 * 24.0) / clean.sum()
    measured = np.std(estimates) * maggies_per_count
    bound = flux_errors(sky, faint)[0, BANDS.index("r")]
    assert measured == pytest.approx(bound, rel=0.1)


def test_field_conditions_and_coverage_holes_are_followed():
    surveys = dict(psf_scale={"galex": (1.0, 1.0), "panstarrs": (1.2, 1.2), "unwise": (1.0, 1.0)},
                   psf_models={"galex": "gaussian", "panstarrs": "kolmogorov",
                               "unwise": "gaussian"})
    randomised = Randomisation(**surveys, moffat_beta=(3.5, 3.5), noise_scale=(1.3, 1.3),
                               zero_point=(0.0, 0.0), neighbour_scale=(1.0, 1.0),
                               star_scale=(1.0, 1.0), size_scale=(1.0, 1.0),
                               bulge_frac_jitter=(0.0, 0.0), offset=(0.0, 0.0))
    point = catalog(1, r_half_disk=0.0, r_half_bulge=0.0)
    plain = MockSky(MockSkyConfig(imaging=quiet()), catalog=point, seed=4)
    field = MockSky(MockSkyConfig(imaging=quiet(), randomisation=randomised), catalog=point,
                    seed=4)
    ratio = flux_errors(field, point)[0] / flux_errors(plain, point)[0]
    renderer = ImageRenderer(quiet())
    wide = ImageRenderer(quiet(psf_fwhm={b: v * (1.2 if SURVEY_OF_BAND[b] == "panstarrs"
                                                 else 1.0)
                                         for b, v in quiet().psf_fwhm.items()}))
    for j, band in enumerate(BANDS):
        scale = default_geometry(SURVEY_OF_BAND[band])[1]
        expect = 1.3 * math.sqrt(wide.n_eff(band, scale) / renderer.n_eff(band, scale))
        assert ratio[j] == pytest.approx(expect, rel=0.02), band
    # a GALEX hole: no data, infinite error, in the UV only
    holes = MockSky(MockSkyConfig(imaging=quiet(galex_hole_fraction=1.0)), catalog=point,
                    seed=4)
    errors = flux_errors(holes, point)[0]
    assert np.all(np.isinf(errors[:2])) and np.all(np.isfinite(errors[2:]))


def test_defaults_and_bad_input(sky):
    np.testing.assert_array_equal(flux_errors(sky), flux_errors(sky, sky.catalog))
    np.testing.assert_allclose(flux_errors(sky, bands=("w1", "g")),
                               flux_errors(sky)[:, [BANDS.index("w1"), BANDS.index("g")]],
                               rtol=1e-12)
    np.testing.assert_allclose(flux_errors(sky, chunk=2), flux_errors(sky), rtol=1e-12)
    # a row without a position is kept, as NaN; the others are as computed alone
    shapes = {c: np.asarray(sky.catalog[c], float) for c in ("ra", "dec") + tuple(SHAPES)}
    shapes["dec"][1] = np.nan
    errors = flux_errors(sky, shapes)
    assert errors.shape == (5, 9) and np.all(np.isnan(errors[1]))
    np.testing.assert_allclose(errors[[0, 2, 3, 4]], flux_errors(sky)[[0, 2, 3, 4]],
                               rtol=1e-12)
    with pytest.raises(ValueError, match="MockSky"):
        flux_errors(object())
    with pytest.raises(ValueError, match="unknown band.*'u'"):
        flux_errors(sky, bands=("g", "u"))
    with pytest.raises(ValueError, match="chunk"):
        flux_errors(sky, chunk=0)
    with pytest.raises(ValueError, match="lacks column.*dec"):
        flux_errors(sky, {"ra": np.zeros(2)})


def test_no_pan_starrs_error_outside_its_footprint():
    """South of dec −30° Pan-STARRS has no data (datasets store all-NaN cutouts): inf,
    as for a GALEX hole; the other surveys keep their errors, the north its own."""
    south = catalog(2)
    south["dec"] = [-35.0, DEC]
    sky = MockSky(MockSkyConfig(imaging=quiet()), catalog=south, seed=4)
    errors = flux_errors(sky)
    ps1 = [j for j, b in enumerate(BANDS) if SURVEY_OF_BAND[b] == "panstarrs"]
    others = [j for j in range(len(BANDS)) if j not in ps1]
    assert np.all(np.isinf(errors[0, ps1]))
    assert np.all(np.isfinite(errors[0, others])) and np.all(np.isfinite(errors[1]))
    np.testing.assert_allclose(errors[1], flux_errors(sky, south[1:])[0], rtol=1e-12)
    # on the footprint's edge (dec = −30°, in it) the band is measured
    edge = catalog(1)
    edge["dec"] = [-30.0]
    assert np.all(np.isfinite(flux_errors(sky, edge)))
