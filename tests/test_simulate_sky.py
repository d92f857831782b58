"""Tests of astro_mantis.simulate.sky: the mock sky and its loopback service.

Nothing here touches the internet: the end-to-end tests go through real sockets
to `astro_mantis.testing.SurveyServer` on 127.0.0.1, serving a `MockSky`.
"""
import io
import math

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table

pytest.importorskip("galsim")

from astro_mantis import Mantis, conf  # noqa: E402
from astro_mantis.flags import MantisFlag  # noqa: E402
from astro_mantis.simulate import ImagingConfig, MockSky, MockSkyConfig  # noqa: E402
from astro_mantis.simulate.render import BANDS  # noqa: E402
from astro_mantis.surveys import get_survey  # noqa: E402
from astro_mantis.testing import SurveyServer  # noqa: E402

RA, DEC = 185.0, 25.0
MAGS = dict(zip(BANDS, (19.5, 20.2, 18.3, 17.6, 17.3, 17.1, 17.0, 17.4, 17.9)))


def quiet_imaging(**kw):
    settings = dict(star_density=0, neighbour_density=0, galex_hole_fraction=0,
                    ps1_nan_fraction=0)
    settings.update(kw)
    return ImagingConfig(**settings)


def galaxies(ra, dec, **shape):
    ra, dec = np.atleast_1d(ra).astype(float), np.atleast_1d(dec).astype(float)
    n = len(ra)
    table = Table({"ra": ra, "dec": dec})
    defaults = {"r_half_disk": 1.0, "r_half_bulge": 0.4, "bulge_frac": 0.3, "q": 0.6,
                "pa": 50.0, "dx": 0.0, "dy": 0.0}
    defaults.update(shape)
    for name, value in defaults.items():
        table[name] = np.full(n, value, dtype=float)
    for band in BANDS:
        table[f"mag_{band}"] = np.full(n, MAGS[band])
    return table


def fits_bytes(hdul):
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def render_all(sky, pos, noise=None):
    """The bytes of every service response at a position (PS1 per band)."""
    out = [fits_bytes(sky.render("panstarrs", pos, band=b, noise=noise)) for b in "grizy"]
    out += [fits_bytes(sky.render(s, pos, noise=noise)) for s in ("galex", "unwise")]
    return out


@pytest.fixture(scope="module")
def default_sky():
    """A small default mock sky: population catalog, neighbours, stars, holes, gaps."""
    return MockSky(MockSkyConfig(n_galaxies=200, south_fraction=0.1), seed=7)


# --------------------------------------------------------------------- catalog
def test_default_catalog(default_sky):
    cat = default_sky.catalog
    assert len(cat) == 200
    assert cat.colnames[:3] == ["id", "ra", "dec"]
    for name in ("z", "type", "ebv", "ebv_csfd", "ebv_planck", "r_half_disk", "r_half_bulge",
                 "bulge_frac", "q", "pa", "dx", "dy") + tuple(f"mag_{b}" for b in BANDS):
        assert name in cat.colnames, name
    ra, dec = np.asarray(cat["ra"]), np.asarray(cat["dec"])
    assert np.all((ra >= 180) & (ra <= 190))
    north = dec > 0
    assert np.all((dec[north] >= 20) & (dec[north] <= 30))
    assert np.all((dec[~north] >= -40) & (dec[~north] <= -32))
    assert 5 <= (~north).sum() <= 40  # south_fraction 0.1 of 200
    same = MockSky(MockSkyConfig(n_galaxies=200, south_fraction=0.1), seed=7).catalog
    assert np.array_equal(np.asarray(same["ra"]), ra)
    assert np.array_equal(np.asarray(same["mag_r"]), np.asarray(cat["mag_r"]))
    other = MockSky(MockSkyConfig(n_galaxies=200), seed=8).catalog
    assert not np.array_equal(np.asarray(other["ra"]), ra)


def test_given_catalog_is_used_and_checked():
    cat = galaxies([RA, RA + 0.01], [DEC, DEC])
    sky = MockSky(MockSkyConfig(imaging=quiet_imaging()), catalog=cat)
    assert sky.catalog is cat
    with pytest.raises(ValueError, match="'ra' and 'dec'"):
        MockSky(catalog=Table({"ra": [1.0]}))
    with pytest.raises(ValueError, match="MockSkyConfig"):
        MockSky(config={"n_galaxies": 3}, catalog=cat)


def test_catalog_units_are_respected():
    """Radii in arcmin and offsets in mas give the same image as arcsec."""
    plain = galaxies(RA, DEC, dx=0.5)
    scaled = galaxies(RA, DEC, dx=0.5)
    scaled["r_half_disk"] = plain["r_half_disk"] / 60.0
    scaled["r_half_disk"].unit = "arcmin"
    scaled["dx"] = plain["dx"] * 1000.0
    scaled["dx"].unit = "mas"
    cfg = MockSkyConfig(imaging=quiet_imaging(noise=False))
    a = MockSky(cfg, catalog=plain).render("panstarrs", (RA, DEC), band="r")[0].data
    b = MockSky(cfg, catalog=scaled).render("panstarrs", (RA, DEC), band="r")[0].data
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3 * a.max())
    bad = galaxies(RA, DEC)
    bad["r_half_disk"].unit = "kg"
    with pytest.raises(ValueError, match="r_half_disk"):
        MockSky(cfg, catalog=bad)


# --------------------------------------------------------------------- determinism
def test_same_seed_and_position_give_identical_bytes(default_sky):
    row = default_sky.catalog[np.argmax(default_sky.catalog["dec"])]
    pos = SkyCoord(row["ra"], row["dec"], unit="deg")
    first = render_all(default_sky, pos)
    again = render_all(MockSky(MockSkyConfig(n_galaxies=200, south_fraction=0.1), seed=7), pos)
    assert first == again
    assert render_all(default_sky, pos) == first  # and from the cache
    other_seed = render_all(MockSky(default_sky.config, catalog=default_sky.catalog, seed=9),
                            pos)
    assert all(a != b for a, b in zip(first, other_seed))
    moved = render_all(default_sky, (row["ra"] + 2e-4, row["dec"]))
    assert all(a != b for a, b in zip(first, moved))


# --------------------------------------------------------------------- empty sky
def test_position_without_galaxy_renders_sky_noise_only():
    imaging = quiet_imaging()
    sky = MockSky(MockSkyConfig(imaging=imaging), catalog=galaxies(RA, DEC))
    far = (RA + 1.0, DEC)
    for survey, band, name, scale in (("panstarrs", "r", "r", 0.25), ("galex", None, "nuv", 1.5),
                                      ("galex", None, "fuv", 1.5), ("unwise", None, "w1", 2.75),
                                      ("unwise", None, "w2", 2.75)):
        hdu = sky.render(survey, far, size=200, band=band)[0]
        data = hdu.data if hdu.data.ndim == 2 else hdu.data[0 if name in ("nuv", "w1") else 1]
        sigma = sky.renderer.sky_sigma(name, scale, hdu.header.get("EXPTIME"))
        assert data.std() == pytest.approx(sigma, rel=0.05), name
        assert abs(data.mean()) < 5 * sigma / 200, name
        clean = sky.render(survey, far, size=200, band=band, noise=False)[0].data
        assert not clean.any()
    near = sky.render("panstarrs", (RA, DEC), band="r")[0].data
    assert near[80:90, 80:90].mean() > 10 * sky.renderer.sky_sigma("r", 0.25, 1000.0)


# --------------------------------------------------------------------- neighbours, stars
def test_neighbours_and_stars_belong_to_the_sky(default_sky):
    pos = (186.0, 24.0)
    radius = 0.02  # deg
    found = default_sky.sources_near(pos, radius)
    again = MockSky(default_sky.config, catalog=default_sky.catalog, seed=7).sources_near(
        pos, radius)
    assert len(found) == len(again) and np.array_equal(found["ra"], again["ra"])
    area = math.pi * radius**2
    for kind, density in (("galaxy", default_sky.neighbour_density),
                          ("star", default_sky.star_density)):
        expected = density * area
        count = int((found["kind"] == kind).sum())
        assert abs(count - expected) < 5 * math.sqrt(expected) + 1, (kind, count, expected)
    # the brightest star shows at its place in PS1 and in unWISE
    stars = found[found["kind"] == "star"]
    star = stars[np.argmin(stars["mag_r"])]
    for survey, band in (("panstarrs", "r"), ("unwise", None)):
        hdu = default_sky.render(survey, (star["ra"], star["dec"]), band=band, noise=False)[0]
        data = hdu.data if hdu.data.ndim == 2 else hdu.data[0]
        from astropy.wcs import WCS

        x, y = WCS(hdu.header, naxis=2).world_to_pixel_values(star["ra"], star["dec"])
        iy, ix = np.unravel_index(np.argmax(data), data.shape)
        assert abs(ix - x) <= 1 and abs(iy - y) <= 1, survey


# --------------------------------------------------------------------- coverage
def test_galex_coverage_holes_are_all_zero_and_read_as_missing():
    cat = galaxies(RA, DEC)
    holes = MockSky(MockSkyConfig(imaging=quiet_imaging(galex_hole_fraction=1.0)), catalog=cat)
    hdu = holes.render("galex", (RA, DEC))[0]
    assert hdu.data.shape == (2, 32, 32) and not hdu.data.any()
    assert hdu.header["BANDS"] == "nf"
    galex = get_survey("galex")
    reqs = galex.image_requests(RA, DEC)
    assert galex.read([fits_bytes(holes.render("galex", (RA, DEC)))], reqs, RA, DEC) is None
    assert holes.render("unwise", (RA, DEC))[0].data.any()
    some = MockSky(MockSkyConfig(imaging=quiet_imaging(galex_hole_fraction=0.3)), catalog=cat,
                   seed=2)
    grid = [(ra, dec) for ra in np.arange(180, 190, 0.7) for dec in np.arange(20, 30, 0.7)]
    covered = np.array([some.galex_covered(p) for p in grid])
    assert 0.1 < 1 - covered.mean() < 0.5
    for p, cov in list(zip(grid, covered))[:12]:
        assert bool(some.render("galex", p, size=8)[0].data.any()) == cov


def test_ps1_chip_gaps_and_south_of_the_footprint():
    cat = galaxies(RA, DEC)
    gaps = MockSky(MockSkyConfig(imaging=quiet_imaging(ps1_nan_fraction=1.0)), catalog=cat)
    ps1 = get_survey("panstarrs")
    listing = {b: f"x.{b}.fits" for b in "grizy"}
    reqs = ps1.image_requests(RA, DEC, listing=listing)
    contents = [fits_bytes(gaps.render("panstarrs", (RA, DEC), band=r.band)) for r in reqs]
    img = ps1.read(contents, reqs, RA, DEC)
    assert MantisFlag.NAN_PIXELS in img.flags
    assert all(np.isnan(plane).any() for plane in img.data)
    assert all(np.isnan(plane).mean() < 0.06 for plane in img.data)  # a stripe, not a hole
    none = MockSky(MockSkyConfig(imaging=quiet_imaging(ps1_nan_fraction=0.0)), catalog=cat)
    assert not np.isnan(none.render("panstarrs", (RA, DEC), band="g")[0].data).any()
    # the footprint limit is the listing's business: a render at dec < -30 still works
    south = none.render("panstarrs", (RA, -45.0), band="z")[0]
    assert south.data.shape == (170, 170) and np.isfinite(south.data).all()


# --------------------------------------------------------------------- arguments, config
def test_render_arguments():
    sky = MockSky(MockSkyConfig(imaging=quiet_imaging()), catalog=galaxies(RA, DEC))
    with pytest.raises(ValueError, match="needs one band"):
        sky.render("panstarrs", (RA, DEC))
    with pytest.raises(ValueError, match="unknown survey"):
        sky.render("sdss", (RA, DEC))
    with pytest.raises(ValueError, match="band"):
        sky.render("panstarrs", (RA, DEC), band="u")
    with pytest.raises(ValueError, match="positive"):
        sky.render("galex", (RA, DEC), size=0)
    full = sky.render("galex", (RA, DEC))[0]
    sub = sky.render("galex", (RA, DEC), band="fn")[0]
    assert sub.header["BANDS"] == "fn" and (sub.header["BAND0"], sub.header["BAND1"]) == ("f", "n")
    np.testing.assert_array_equal(sub.data[0], full.data[1])
    wise = sky.render("unwise", SkyCoord(RA, DEC, unit="deg"), size=20, pixscale=2.0)[0]
    assert wise.data.shape == (2, 20, 20) and wise.header["CD2_2"] == pytest.approx(2.0 / 3600)
    assert (wise.header["BAND0"], wise.header["BAND1"]) == (1, 2)
    assert wise.header["SURVEY"] == "unwise-neo7"
    ps1 = sky.render("ps1", (RA, DEC), band="i", skycell_center=(RA + 0.1, DEC - 0.1))[0]
    assert ps1.header["CRVAL1"] == pytest.approx(RA + 0.1)
    assert ps1.header["FILTER"].startswith("i") and ps1.header["EXPTIME"] > 0
    # as the real stacks spell it: CDELT1 > 0, the RA axis turned by the legacy PC001001
    assert ps1.header["CDELT1"] == pytest.approx(0.25 / 3600) and ps1.header["PC001001"] == -1
    assert "PC1_1" not in ps1.header and "CD1_1" not in ps1.header
    assert "MockSky" in repr(sky)


@pytest.mark.parametrize("kwargs, field", [
    ({"n_galaxies": -1}, "n_galaxies"),
    ({"n_galaxies": 2.5}, "n_galaxies"),
    ({"ra_range": (10.0, 5.0)}, "ra_range"),
    ({"ra_range": (0.0, 400.0)}, "ra_range"),
    ({"dec_range": (-95.0, 0.0)}, "dec_range"),
    ({"dec_range": "north"}, "dec_range"),
    ({"south_fraction": 1.5}, "south_fraction"),
    ({"south_dec_range": (-20.0, -40.0)}, "south_dec_range"),
    ({"background_cell": 1.0}, "background_cell"),
    ({"pool_size": 0}, "pool_size"),
    ({"imaging": "deep"}, "imaging"),
    ({"imaging": {"star_density": -2}}, "star_density"),
    ({"population": 42}, "population"),
])
def test_invalid_mock_sky_config_is_a_clear_error(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MockSkyConfig(**kwargs)


# --------------------------------------------------------------------- end to end
def test_loopback_cutouts_show_mock_galaxies_where_the_catalog_puts_them(tmp_path):
    """Mantis.get_cutouts over loopback: each galaxy lands at its catalog position."""
    ras = RA + np.array([0.0, 0.3, 0.6])
    decs = DEC + np.array([0.0, 0.2, -0.3])
    cat = galaxies(ras, decs)
    sky = MockSky(MockSkyConfig(imaging=quiet_imaging(noise=False)), catalog=cat, seed=4)
    # request positions a few arcsec away from the galaxies
    requests = SkyCoord(ras + 4.0 / 3600, decs - 3.0 / 3600, unit="deg")
    with SurveyServer(sky=sky) as server, server.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path)):
        cuts = Mantis.get_cutouts(requests, cache=False)
    assert len(cuts) == 3
    for cut, ra, dec in zip(cuts, ras, decs):
        assert cut.missing == () and cut.flags == MantisFlag.NONE
        for name, img in cut.surveys.items():
            x, y = img.wcs.world_to_pixel_values(ra, dec)
            n = img.data.shape[-1]
            yy, xx = np.mgrid[:n, :n]
            for plane, zp, band in zip(img.data, img.zeropoints, img.bands):
                w = np.where((xx - x) ** 2 + (yy - y) ** 2 < (0.3 * n) ** 2, plane, 0.0)
                cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
                assert abs(cx - x) < 0.1 and abs(cy - y) < 0.1, (name, band, cx - x, cy - y)
                key = {"NUV": "nuv", "FUV": "fuv", "W1": "w1", "W2": "w2"}.get(band, band)
                mag = zp - 2.5 * math.log10(plane.sum())
                assert mag == pytest.approx(MAGS[key], abs=0.1), (name, band)


def test_loopback_default_sky_with_noise_and_footprint(default_sky, tmp_path):
    cat = default_sky.catalog
    north = cat[cat["dec"] > 0]
    north = north[np.argsort(north["mag_r"])[:3]]  # bright ones: visible above the noise
    south = cat[cat["dec"] < -30][:1]
    coords = SkyCoord(np.concatenate([north["ra"], south["ra"]]),
                      np.concatenate([north["dec"], south["dec"]]), unit="deg")
    with SurveyServer(sky=default_sky) as server, server.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path)):
        cuts = Mantis.get_cutouts(coords, cache=False)
    for cut, row in zip(cuts[:3], north):
        assert "panstarrs" in cut.surveys and "unwise" in cut.surveys
        img = cut.surveys["panstarrs"]
        x, y = img.wcs.world_to_pixel_values(row["ra"], row["dec"])
        ix, iy = int(round(float(x))), int(round(float(y)))
        r = img["r"]
        centre = r[iy - 2:iy + 3, ix - 2:ix + 3]
        assert np.nanmean(centre) > np.nanmedian(r) + 3 * np.nanstd(r[:20, :20])
    # dec < -30: PS1 lists nothing there, the other surveys still answer
    assert "panstarrs" in cuts[3].missing and "unwise" in cuts[3].surveys


def test_stable_seed_ignores_numpy_scalar_types():
    import numpy as np
    from astro_mantis.simulate.service_format import stable_seed
    assert stable_seed(1, (np.float64(2.36), np.float32(1.5))) == stable_seed(1, (2.36, 1.5))
    assert stable_seed(1, 2.36) != stable_seed(1, 2.37)


@pytest.mark.parametrize("field, cls", [("imaging", "ImagingConfig"),
                                        ("population", "PopulationConfig"),
                                        ("randomisation", "Randomisation")])
def test_dict_configs_with_an_unknown_key_name_the_field_and_the_key(field, cls):
    """imaging, population and randomisation given as dicts fail alike on a bad key."""
    with pytest.raises(ValueError, match=rf"MockSkyConfig\.{field} has unknown setting\(s\) "
                                         rf"\['foo'\]; {cls} settings are \["):
        MockSkyConfig(**{field: {"foo": 1}})
    with pytest.raises(ValueError, match=rf"MockSkyConfig\.{field} has unknown setting\(s\) "
                                         r"\[1\]"):
        MockSkyConfig(**{field: {1: 2}})


def test_dict_configs_are_made_into_their_classes():
    from astro_mantis.simulate import PopulationConfig, Randomisation

    config = MockSkyConfig(imaging={"star_density": 0}, population={"frac_main": 0.6,
                                                                    "frac_lrg": 0.2,
                                                                    "frac_elg": 0.2},
                           randomisation={"levels": 3})
    assert config.imaging == ImagingConfig(star_density=0)
    assert isinstance(config.population, PopulationConfig)
    assert config.population.frac_main == 0.6
    assert config.randomisation == Randomisation(levels=3)


@pytest.mark.parametrize("value", [(10.0, 20.0), (-40.0, -20.0), (-35.0, -29.9)])
def test_south_dec_range_must_lie_outside_the_ps1_footprint(value):
    """Its documented meaning: galaxies placed outside the PS1 footprint (dec < −30°)."""
    with pytest.raises(ValueError, match=r"MockSkyConfig\.south_dec_range must lie outside "
                                         r"the Pan-STARRS footprint"):
        MockSkyConfig(south_fraction=0.1, south_dec_range=value)


def test_south_dec_range_south_of_the_footprint_is_accepted():
    assert MockSkyConfig().south_dec_range == (-40.0, -32.0)
    assert MockSkyConfig(south_dec_range=(-60, -30)).south_dec_range == (-60.0, -30.0)
    assert not get_survey("panstarrs").in_footprint(185.0, -30.0 - 1e-9)
