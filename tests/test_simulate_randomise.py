# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Domain randomisation of the mock sky (astro_mantis.simulate.randomise)."""

import numpy as np
import pytest
from astropy.table import Table

from astro_mantis.simulate.randomise import (
    Randomisation,
    field_draw,
    perturb_catalog,
    shifted_randomisation,
    training_randomisation,
)
from astro_mantis.simulate.render import BANDS, SURVEY_OF_BAND

SURVEYS = ("galex", "panstarrs", "unwise")

#: A randomisation that changes nothing: every hook must then be neutral.
IDENTITY = dict(psf_scale={s: (1.0, 1.0) for s in SURVEYS},
                psf_models={"galex": "gaussian", "panstarrs": "kolmogorov", "unwise": "gaussian"},
                moffat_beta=(3.5, 3.5), noise_scale=(1.0, 1.0), zero_point=(0.0, 0.0),
                neighbour_scale=(1.0, 1.0), star_scale=(1.0, 1.0), size_scale=(1.0, 1.0),
                bulge_frac_jitter=(0.0, 0.0), offset=(0.0, 0.0))


def _cells(n, seed=0):
    rng = np.random.default_rng(seed)
    return list(zip(rng.integers(0, 720, n), rng.integers(0, 1440, n)))


def _fake_catalog(n=400, seed=3):
    rng = np.random.default_rng(seed)
    t = Table()
    t["r_half_disk"] = rng.uniform(0.3, 3.0, n)
    t["r_half_disk"].unit = "arcsec"
    t["r_half_bulge"] = rng.uniform(0.2, 2.0, n)
    t["bulge_frac"] = rng.uniform(0.0, 1.0, n)
    t["dx"] = rng.normal(0.0, 0.1, n)
    t["dy"] = rng.normal(0.0, 0.1, n)
    return t


# ----------------------------------------------------------------------------- no GalSim
def test_field_draws_respect_ranges_and_levels():
    r = training_randomisation()
    draws = [field_draw(r, 7, c) for c in _cells(400)]
    for survey in SURVEYS:
        levels = r.level_values("psf_scale", survey)
        assert len(levels) == r.levels
        assert levels[0] == r.psf_scale[survey][0] and levels[-1] == r.psf_scale[survey][1]
        seen = {d.psf_scale[survey] for d in draws}
        assert seen <= set(levels) and len(seen) == r.levels  # quantised, every level used
        assert {d.psf_model[survey] for d in draws} == set(r.psf_models[survey])
    assert {d.noise_scale for d in draws} == set(r.level_values("noise_scale"))
    assert {d.moffat_beta for d in draws} == set(r.level_values("moffat_beta"))
    zps = np.array([[d.zero_point[b] for b in BANDS] for d in draws])
    assert np.all(np.abs(zps) <= 0.03) and (zps > 0).any() and (zps < 0).any()
    neigh = np.array([d.neighbour_scale for d in draws])
    star = np.array([d.star_scale for d in draws])
    assert neigh.min() >= 0.5 and neigh.max() <= 1.5 and neigh.std() > 0.2
    assert star.min() >= 0.5 and star.max() <= 2.0


def test_field_draw_deterministic_per_seed():
    r = training_randomisation()
    cells = _cells(20)
    assert [field_draw(r, 5, c) for c in cells] == [field_draw(r, 5, c) for c in cells]
    assert [field_draw(r, 5, c) for c in cells] != [field_draw(r, 6, c) for c in cells]


def test_levels_one_takes_the_middle():
    r = Randomisation(levels=1)
    assert r.level_values("noise_scale").tolist() == [pytest.approx(1.05)]
    with pytest.raises(ValueError, match="name must be"):
        r.level_values("zero_point")


def test_shifted_preset_fields_are_fixed():
    r = shifted_randomisation()
    for d in (field_draw(r, 1, c) for c in _cells(50)):
        assert d.psf_scale == dict.fromkeys(SURVEYS, 1.2)
        assert d.psf_model == {"galex": "gaussian", "panstarrs": "kolmogorov",
                               "unwise": "gaussian"}
        assert d.noise_scale == 1.3
        assert all(abs(abs(v) - 0.03) < 1e-12 for v in d.zero_point.values())
        assert d.neighbour_scale == 1.0 and d.star_scale == 1.0
    assert r.profile == "single"


def test_perturb_catalog_ranges_and_columns():
    r = training_randomisation()
    before = _fake_catalog()
    after = perturb_catalog(before.copy(), r, np.random.default_rng(0))
    size = np.asarray(after["rand_size_scale"])
    assert size.min() >= 0.8 and size.max() <= 1.25 and size.std() > 0.05
    assert np.allclose(after["r_half_disk"], before["r_half_disk"] * size)
    assert after["r_half_disk"].unit == "arcsec"
    jitter = np.asarray(after["rand_bulge_jitter"])
    assert np.abs(jitter).max() <= 0.15
    assert np.allclose(after["bulge_frac"], np.clip(before["bulge_frac"] + jitter, 0, 1))
    offset = np.hypot(after["rand_offset_dx"], after["rand_offset_dy"])
    assert offset.min() >= 0.0 and offset.max() <= 0.3 + 1e-12
    assert np.allclose(after["dx"], before["dx"] + after["rand_offset_dx"])
    assert np.allclose(after["dy"], before["dy"] + after["rand_offset_dy"])
    again = perturb_catalog(before.copy(), r, np.random.default_rng(0))
    assert np.array_equal(again["rand_size_scale"], size)


def test_perturb_catalog_shifted_preset():
    before = _fake_catalog()
    after = perturb_catalog(before.copy(), shifted_randomisation(), np.random.default_rng(1))
    assert np.allclose(after["rand_size_scale"], 1.2)
    assert np.allclose(np.hypot(after["rand_offset_dx"], after["rand_offset_dy"]), 0.5)
    assert set(np.unique(after["bulge_frac"])) <= {0.0, 1.0}


def test_single_fraction_turns_that_share_of_galaxies_into_single_profiles():
    from astro_mantis.simulate.randomise import _composite_radius

    before = _fake_catalog(n=4000)
    r = Randomisation(single_fraction=0.3)
    after = perturb_catalog(before.copy(), r, np.random.default_rng(5))
    single = np.asarray(after["rand_single"])
    assert single.dtype == bool and abs(single.mean() - 0.3) < 0.03
    # singles: pure exponential or de Vaucouleurs of the composite radius ...
    assert set(np.unique(after["bulge_frac"][single])) <= {0.0, 1.0}
    assert np.allclose(after["r_half_disk"][single], after["r_half_bulge"][single])
    size = np.asarray(after["rand_size_scale"])
    jittered = np.clip(before["bulge_frac"] + after["rand_bulge_jitter"], 0, 1)
    expected = _composite_radius(before["r_half_disk"] * size, before["r_half_bulge"] * size,
                                 jittered)
    assert np.allclose(after["r_half_disk"][single], expected[single])
    # ... the others keep their bulge + disk
    assert np.allclose(after["bulge_frac"][~single], jittered[~single])
    assert np.allclose(after["r_half_disk"][~single],
                       (before["r_half_disk"] * size)[~single])
    # the draws before it are those of a randomisation without it (same seed)
    plain = perturb_catalog(before.copy(), training_randomisation(), np.random.default_rng(5))
    for name in ("rand_size_scale", "rand_bulge_jitter", "rand_offset_dx"):
        assert np.array_equal(plain[name], after[name])
    assert not plain["rand_single"].any()
    again = perturb_catalog(before.copy(), r, np.random.default_rng(5))
    assert np.array_equal(again["rand_single"], single)
    assert perturb_catalog(before.copy(), shifted_randomisation(),
                           np.random.default_rng(5))["rand_single"].all()


def test_repr_shows_single_fraction_only_where_set():
    # dataset manifests record this repr: the data sets of earlier randomisations still match
    assert "single_fraction" not in repr(training_randomisation())
    assert repr(Randomisation(single_fraction=0.25)).endswith("single_fraction=0.25)")
    assert eval(repr(Randomisation(single_fraction=0.25)), {"Randomisation": Randomisation}) \
        == Randomisation(single_fraction=0.25)


def test_repr_shows_colour_departures_only_where_set():
    assert "colour_departures" not in repr(training_randomisation())
    r = Randomisation(single_fraction=0.3, colour_departures=1.0)
    assert repr(r).endswith("single_fraction=0.3, colour_departures=1.0)")
    assert eval(repr(r), {"Randomisation": Randomisation}) == r


def test_colour_departure_pool_is_real_galaxies_departures():
    from astro_mantis.simulate.photometry import sdss_reference_magnitudes
    from astro_mantis.simulate.randomise import colour_departure_pool

    pool = colour_departure_pool()
    assert pool.shape[1] == len(BANDS) and not pool.flags.writeable
    assert np.all(np.isfinite(pool))
    column = {b: pool[:, j] for j, b in enumerate(BANDS)}
    # no measured band near W1, W2: the templates' own prediction, no departure
    assert np.all(column["w1"] == 0) and np.all(column["w2"] == 0)
    # the optical bands depart by about a hundredth of a magnitude (NMAD), z more
    for band in ("g", "r", "i"):
        d = column[band]
        nmad = 1.4826 * np.median(np.abs(d - np.median(d)))
        assert 0.004 < nmad < 0.02, band
    assert np.std(column["z"]) > np.std(column["g"])
    # GALEX detected a minority of them: the others depart by 0 in the ultraviolet
    assert 0.01 < np.mean(column["nuv"] != 0) < 0.5
    # the even rows with r < 17.77, nothing of the held-out odd rows
    even = sdss_reference_magnitudes("even", BANDS)
    assert pool.shape[0] == int(np.sum(np.asarray(even["r_petro"]) < 17.77))


def test_colour_departures_shift_magnitudes_by_drawn_real_departures():
    from astro_mantis.simulate.randomise import colour_departure_pool

    before = _fake_catalog(n=3000)
    for j, band in enumerate(BANDS):
        before[f"mag_{band}"] = np.full(len(before), 20.0 + j)
        before[f"mag_{band}"].unit = "mag"
    pool = colour_departure_pool()
    r = Randomisation(single_fraction=0.3, colour_departures=2.0)
    after = perturb_catalog(before.copy(), r, np.random.default_rng(7))
    dmag = np.asarray(after["rand_colour_departure"])
    assert dmag.shape == (len(before), len(BANDS))
    for j, band in enumerate(BANDS):
        assert after[f"mag_{band}"].unit == "mag"
        assert np.allclose(after[f"mag_{band}"], 20.0 + j + dmag[:, j])
    # every galaxy got twice one pool row, and many different rows were drawn
    rows = {tuple(np.round(row, 9)) for row in pool}
    assert all(tuple(np.round(d / 2.0, 9)) in rows for d in dmag[:50])
    assert len({tuple(d) for d in dmag}) > 1000
    # deterministic per seed; drawn last, so the other draws are those without it
    again = perturb_catalog(before.copy(), r, np.random.default_rng(7))
    assert np.array_equal(again["rand_colour_departure"], dmag)
    plain = perturb_catalog(before.copy(), Randomisation(single_fraction=0.3),
                            np.random.default_rng(7))
    assert "rand_colour_departure" not in plain.colnames
    for name in ("rand_size_scale", "rand_offset_dx", "rand_single"):
        assert np.array_equal(plain[name], after[name])
    assert np.array_equal(plain["mag_g"], before["mag_g"])
    # a catalog without magnitudes still records what it would have added
    bare = perturb_catalog(_fake_catalog(n=20), r, np.random.default_rng(7))
    assert bare["rand_colour_departure"].shape == (20, len(BANDS))


def test_single_profile_keeps_composite_half_light_radius():
    from astro_mantis.simulate.population import composite_half_light_radius

    r = Randomisation(**{**IDENTITY, "profile": "single"})
    before = _fake_catalog()
    after = perturb_catalog(before.copy(), r, np.random.default_rng(2))
    bf = np.asarray(before["bulge_frac"])
    assert np.array_equal(after["bulge_frac"], np.where(bf < 0.5, 0.0, 1.0))
    rd = np.asarray(before["r_half_disk"])
    expected = rd * composite_half_light_radius(bf, np.asarray(before["r_half_bulge"]) / rd)
    assert np.allclose(after["r_half_disk"], expected)
    assert np.allclose(after["r_half_bulge"], expected)


@pytest.mark.parametrize("kwargs, field", [
    ({"field_size": 0}, "field_size"),
    ({"field_size": "big"}, "field_size"),
    ({"psf_scale": {"panstarrs": (1.3, 0.8)}}, "psf_scale"),
    ({"psf_scale": {"sdss": (1, 1)}}, "psf_scale"),
    ({"psf_scale": {"galex": (0, 1)}}, "psf_scale"),
    ({"psf_models": {"panstarrs": ("sersic",)}}, "psf_models"),
    ({"psf_models": {"unwise": ()}}, "psf_models"),
    ({"moffat_beta": (1.0, 3.0)}, "moffat_beta"),
    ({"noise_scale": (0.0, 1.0)}, "noise_scale"),
    ({"noise_scale": 1.3}, "noise_scale"),
    ({"zero_point": (-0.01, 0.03)}, "zero_point"),
    ({"levels": 0}, "levels"),
    ({"levels": 2.5}, "levels"),
    ({"neighbour_scale": (1.0, float("nan"))}, "neighbour_scale"),
    ({"star_scale": (-1, 1)}, "star_scale"),
    ({"size_scale": (0.0, 1.0)}, "size_scale"),
    ({"bulge_frac_jitter": (0.0, 1.5)}, "bulge_frac_jitter"),
    ({"profile": "sersic"}, "profile"),
    ({"offset": (0.5, 0.1)}, "offset"),
    ({"single_fraction": 1.5}, "single_fraction"),
    ({"single_fraction": -0.1}, "single_fraction"),
    ({"single_fraction": "some"}, "single_fraction"),
    ({"colour_departures": -0.1}, "colour_departures"),
    ({"colour_departures": 3.5}, "colour_departures"),
    ({"colour_departures": float("nan")}, "colour_departures"),
    ({"colour_departures": "real"}, "colour_departures"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"Randomisation.{field}"):
        Randomisation(**kwargs)


def test_lists_and_partial_dicts_are_accepted():
    r = Randomisation(psf_scale={"unwise": [1.0, 1.1]}, noise_scale=[1, 2],
                      psf_models={"panstarrs": "moffat"})
    assert r.psf_scale["unwise"] == (1.0, 1.1) and r.noise_scale == (1.0, 2.0)
    assert r.psf_scale["panstarrs"] == (0.8, 1.3)  # the training default
    assert r.psf_models["panstarrs"] == ("moffat",)
    assert r == Randomisation(**{"psf_scale": {"unwise": (1.0, 1.1)}, "noise_scale": (1, 2),
                                 "psf_models": {"panstarrs": ("moffat",)}})


def test_single_fraction_with_single_profile_is_refused():
    """single_fraction is documented for profile="mix"; with "single" it did nothing."""
    with pytest.raises(ValueError, match=r"Randomisation\.single_fraction applies with "
                                         r"profile='mix' only.*single_fraction=0\.3"):
        Randomisation(profile="single", single_fraction=0.3)
    assert Randomisation(profile="single", single_fraction=0.0).profile == "single"
    assert Randomisation(single_fraction=0.3).single_fraction == 0.3
    # the presets are unchanged
    assert shifted_randomisation().single_fraction == 0.0


# ----------------------------------------------------------------------------- mock sky
galsim = pytest.importorskip("galsim")
pytest.importorskip("kcorrect")


def _config(randomisation=None, noise=False, **kwargs):
    from astro_mantis.simulate import MockSkyConfig

    imaging = dict(noise=noise, galex_hole_fraction=0.0, ps1_nan_fraction=0.0)
    imaging.update(kwargs.pop("imaging", {}))
    return MockSkyConfig(n_galaxies=3, ra_range=(185.0, 185.02), dec_range=(25.0, 25.02),
                         pool_size=60, imaging=imaging, randomisation=randomisation, **kwargs)


def _sky(randomisation=None, seed=4, **kwargs):
    from astro_mantis.simulate import MockSky

    return MockSky(_config(randomisation, **kwargs), seed=seed)


def _arrays(sky, surveys=SURVEYS, noise=None):
    row = sky.catalog[0]
    out = sky.render_arrays((row["ra"], row["dec"]), surveys, noise=noise)
    return {k: v[0] for k, v in out.items()}


def test_config_accepts_dict_and_rejects_other_types():
    from astro_mantis.simulate import MockSkyConfig

    config = MockSkyConfig(randomisation={"profile": "single"})
    assert isinstance(config.randomisation, Randomisation)
    assert config.randomisation.profile == "single"
    with pytest.raises(ValueError, match="MockSkyConfig.randomisation"):
        MockSkyConfig(randomisation="training")
    with pytest.raises(ValueError, match="MockSkyConfig.randomisation"):
        MockSkyConfig(randomisation={"psf": 1})
    # without randomisation the repr is unchanged (old dataset manifests still resume)
    assert "randomisation" not in repr(MockSkyConfig())
    assert "Randomisation(" in repr(MockSkyConfig(randomisation=Randomisation()))


def test_identity_randomisation_renders_byte_identical_to_none():
    nominal = _sky(None, noise=True)
    neutral = _sky(Randomisation(**IDENTITY), noise=True)
    for name in ("ra", "dec", "r_half_disk", "r_half_bulge", "bulge_frac", "dx", "dy"):
        assert np.array_equal(nominal.catalog[name], neutral.catalog[name]), name
    a, b = _arrays(nominal), _arrays(neutral)
    for survey in SURVEYS:
        assert a[survey].tobytes() == b[survey].tobytes(), survey


def test_field_conditions_nominal_and_shifted():
    nominal = _sky(None)
    pos = (185.01, 25.01)
    cond = nominal.field_conditions(pos)
    assert cond["field"] is None and cond["noise_scale"] == 1.0
    assert cond["psf_fwhm"] == nominal.config.imaging.psf_fwhm
    shifted = _sky(shifted_randomisation())
    cond = shifted.field_conditions(pos)
    for band in BANDS:
        assert cond["psf_fwhm"][band] == pytest.approx(1.2 * nominal.config.imaging.psf_fwhm[band])
        assert abs(cond["zero_point"][band]) == pytest.approx(0.03)
    assert cond["noise_scale"] == pytest.approx(1.3)
    variant = shifted._renderer_for("panstarrs", shifted._field(*pos)).imaging
    nominal_fwhm = nominal.config.imaging.psf_fwhm
    assert variant.psf_fwhm["r"] == pytest.approx(1.2 * nominal_fwhm["r"])
    assert variant.psf_fwhm["w1"] == nominal_fwhm["w1"]


def test_same_seed_same_pixels_other_seed_other_pixels():
    r = training_randomisation()
    a, b = _arrays(_sky(r, seed=11)), _arrays(_sky(r, seed=11))
    for survey in SURVEYS:
        assert a[survey].tobytes() == b[survey].tobytes()
    one, two = _sky(r, seed=11), _sky(r, seed=12)
    assert one.field_conditions((185.01, 25.01)) != two.field_conditions((185.01, 25.01))
    assert not np.array_equal(one.catalog["rand_size_scale"], two.catalog["rand_size_scale"])


def test_zero_point_scales_noiseless_flux():
    nominal = _sky(None)
    shifted = _sky(Randomisation(**{**IDENTITY, "zero_point": (0.03, 0.03)}))
    a, b = _arrays(nominal, noise=False), _arrays(shifted, noise=False)
    row = shifted.catalog[0]
    zp = shifted.field_conditions((row["ra"], row["dec"]))["zero_point"]
    for survey in SURVEYS:
        bands = [b_ for b_ in BANDS if SURVEY_OF_BAND[b_] == survey]
        for i, band in enumerate(bands):
            factor = 10 ** (-0.4 * zp[band])
            assert abs(factor - 1) > 0.02
            assert np.allclose(b[survey][i], a[survey][i] * factor, rtol=1e-6,
                               atol=1e-6 * np.abs(a[survey][i]).max())


def test_noise_scale_multiplies_sky_noise():
    nominal = _sky(None, noise=True, imaging={"neighbour_density": 0, "star_density": 0})
    noisy = _sky(Randomisation(**{**IDENTITY, "noise_scale": (1.3, 1.3)}), noise=True,
                 imaging={"neighbour_density": 0, "star_density": 0})
    pos = (185.3, 25.3)  # away from the catalog galaxies: sky only
    a = nominal.render_arrays(pos, ["panstarrs"])["panstarrs"][0]
    b = noisy.render_arrays(pos, ["panstarrs"])["panstarrs"][0]
    ratio = b.std(axis=(1, 2)) / a.std(axis=(1, 2))
    assert np.allclose(ratio, 1.3, rtol=0.03)


def test_density_scales_change_the_background():
    pos, radius = (185.01, 25.01), 0.05
    none = _sky(Randomisation(**{**IDENTITY, "neighbour_scale": (0, 0), "star_scale": (0, 0)}))
    kinds = set(none.sources_near(pos, radius)["kind"])
    assert kinds <= {"catalog"}
    more = _sky(Randomisation(**{**IDENTITY, "neighbour_scale": (3, 3), "star_scale": (3, 3)}))
    nominal = _sky(None)
    n_more = np.sum(more.sources_near(pos, radius)["kind"] != "catalog")
    n_nominal = np.sum(nominal.sources_near(pos, radius)["kind"] != "catalog")
    assert n_more > 2 * n_nominal > 0


def test_make_dataset_records_randomisation_and_resumes(tmp_path):
    from astro_mantis.simulate.dataset import dataset_config, load_shard, make_dataset

    config = dataset_config(4, randomisation=training_randomisation())
    config.imaging.noise = False
    kwargs = dict(seed=2, config=config, split=(0, 0, 1), surveys=("unwise",),
                  shard_size=4, progress=False)
    manifest = make_dataset(4, tmp_path, **kwargs)
    assert "Randomisation(field_size=0.25" in manifest["config"]
    assert manifest["splits"]["test"]["n"] == 4 and manifest["splits"]["train"]["n"] == 0
    assert "rand_size_scale" in manifest["columns"]
    shard = load_shard(tmp_path / manifest["splits"]["test"]["shards"][0]["file"])
    scale = np.asarray(shard["catalog"]["rand_size_scale"])
    assert np.all((scale >= 0.8) & (scale <= 1.25))
    again = make_dataset(4, tmp_path, **kwargs)
    assert again["generation"]["galaxies_skipped"] == 4
    kwargs["config"] = dataset_config(4, randomisation=shifted_randomisation())
    with pytest.raises(ValueError, match="config"):
        make_dataset(4, tmp_path, **kwargs)


def test_variant_psf_cache_is_bounded():
    from types import SimpleNamespace

    from astro_mantis.simulate.sky import _trim_psf_cache

    cache = {("r", n, False, 0.25): np.zeros((n, n)) for n in (8, 16, 64, 128)}
    renderer = SimpleNamespace(_psf_k=dict(cache))
    _trim_psf_cache(renderer, 10**6)  # 166 kB in all: nothing to drop
    assert len(renderer._psf_k) == 4
    _trim_psf_cache(renderer, 100_000)  # the largest go first, down to half the limit
    assert sorted(k[1] for k in renderer._psf_k) == [8, 16, 64]


@pytest.mark.parametrize("imaging, randomisation, fields", [
    ({"psf_model": {"panstarrs": "moffat"}}, {},
     [r"ImagingConfig\.psf_model\['panstarrs'\] = 'moffat'",
      r"Randomisation\.psf_models\['panstarrs'\] = \('kolmogorov', 'moffat'\)"]),
    ({"psf_model": {"unwise": "airy"}}, {},
     [r"ImagingConfig\.psf_model\['unwise'\] = 'airy'", r"Randomisation\.psf_models"]),
    ({"moffat_beta": 3.0}, {}, [r"ImagingConfig\.moffat_beta = 3\.0",
                                r"Randomisation\.moffat_beta = \(2\.5, 4\.5\)"]),
    ({"psf_model": {"galex": "moffat"}, "moffat_beta": 2.0},
     {"psf_models": {"galex": ("moffat",)}},
     [r"ImagingConfig\.moffat_beta = 2\.0", r"Randomisation\.moffat_beta"]),
])
def test_psf_settings_the_randomisation_would_override_are_refused(imaging, randomisation,
                                                                   fields):
    """A non-default ImagingConfig.psf_model / moffat_beta was silently replaced by each
    field's draw (variant_imaging); it is now an error naming both fields."""
    from astro_mantis.simulate import ImagingConfig, MockSkyConfig

    for field in fields:
        with pytest.raises(ValueError, match=field):
            MockSkyConfig(imaging=ImagingConfig(**imaging),
                          randomisation=Randomisation(**randomisation))
    # without randomisation the setting is rendered, as before
    assert MockSkyConfig(imaging=ImagingConfig(**imaging)).randomisation is None


def test_psf_settings_the_randomisation_keeps_are_accepted():
    from astro_mantis.simulate import ImagingConfig, MockSkyConfig

    # defaults, with every preset
    for r in (training_randomisation(), shifted_randomisation()):
        MockSkyConfig(randomisation=r)
    # the randomisation draws only that family, and only that index
    MockSkyConfig(imaging=ImagingConfig(psf_model={"panstarrs": "moffat"}, moffat_beta=3.0),
                  randomisation=Randomisation(psf_models={"panstarrs": ("moffat",)},
                                              moffat_beta=(3.0, 3.0)))
    # an index no field can use (no survey draws "moffat")
    MockSkyConfig(imaging=ImagingConfig(moffat_beta=3.0),
                  randomisation=shifted_randomisation())
