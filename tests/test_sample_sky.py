"""Tests of the bundled sample sky (astro_mantis.simulate.SampleSky).

Only the last tests need GalSim (they compare with MockSky); the others show that
the sample sky renders, and is served over loopback, without it.
"""
import io
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from astro_mantis import Mantis, conf
from astro_mantis.flags import MantisFlag
from astro_mantis.simulate import SampleSky
from astro_mantis.simulate.sample import SAMPLE_N, SAMPLE_SEED, SAMPLE_SKY_PATH
from astro_mantis.surveys import get_survey
from astro_mantis.testing import SurveyServer, ps1_skycell


@pytest.fixture(scope="module")
def sky():
    return SampleSky()


def position(sky, i):
    return float(sky.catalog["ra"][i]), float(sky.catalog["dec"][i])


def fits_bytes(hdul):
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def first(sky, predicate):
    for i in range(len(sky)):
        if predicate(i):
            return i
    raise AssertionError("no sample galaxy with the wanted property")


def test_bundled_file_is_small_and_documented(sky):
    assert SAMPLE_SKY_PATH.exists()
    assert SAMPLE_SKY_PATH.stat().st_size <= 5 * 1024**2
    meta = sky.meta
    assert meta["simulated"] is True and "simulated" in meta["description"]
    assert meta["seed"] == sky.seed == SAMPLE_SEED
    assert meta["n"] == len(sky) == SAMPLE_N and 200 <= len(sky) <= 300
    assert "MockSkyConfig(" in meta["config"] and "south_fraction=0.02" in meta["config"]
    assert meta["version"]
    assert "even-indexed" in meta["provenance"]
    assert meta["max_rounding_sigma"] <= 1 / 32 + 1e-9


def test_catalog(sky):
    cat = sky.catalog
    for name in ("id", "ra", "dec", "z", "type", "ebv", "ebv_csfd", "ebv_planck", "mag_nuv",
                 "mag_fuv", "mag_g", "mag_r", "mag_i", "mag_z", "mag_y", "mag_w1", "mag_w2",
                 "r_half_disk", "q", "pa"):
        assert name in cat.colnames
    assert cat["ra"].unit == "deg" and cat["mag_r"].unit == "mag"
    assert "CSFD" in cat["ebv_csfd"].description
    assert set(cat["type"]) == {"main", "lrg", "elg"}
    assert 0 < np.min(cat["z"]) and np.max(cat["z"]) < 1.6
    assert np.sum(np.asarray(cat["dec"]) < -30) >= 2  # some outside PS1


def test_imports_and_renders_without_galsim(tmp_path):
    code = textwrap.dedent("""
        import sys
        for name in ("galsim", "kcorrect", "speclite", "dust_extinction"):
            sys.modules[name] = None
        import astro_mantis.simulate as simulate
        from astro_mantis.simulate import SampleSky, load_sample_sky
        sky = load_sample_sky()
        ra, dec = float(sky.catalog["ra"][0]), float(sky.catalog["dec"][0])
        assert sky.render("panstarrs", (ra, dec), band="i")[0].data.shape == (170, 170)
        assert sky.render("galex", (ra, dec))[0].data.shape == (2, 32, 32)
        assert sky.render("unwise", (ra + 1, dec))[0].data.shape == (2, 32, 32)
        try:
            simulate.MockSky()
        except ImportError as exc:
            assert "GalSim" in str(exc)
        else:
            raise AssertionError("MockSky rendered without GalSim")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_render_contract_and_readers(sky):
    i = first(sky, lambda i: sky.catalog["dec"][i] > -30
              and sky.galex_covered(position(sky, i)) and not sky.chip_gap_bands(position(sky, i)))
    ra, dec = position(sky, i)
    coord = SkyCoord(ra, dec, unit="deg")
    ps1 = [sky.render("panstarrs", coord, band=b) for b in "grizy"]
    for b, hdul in zip("grizy", ps1):
        hdu = hdul[0]
        assert hdu.data.shape == (170, 170) and hdu.data.dtype.name in ("float32", ">f4")
        assert hdu.header["FILTER"] == f"{b}.00000" and hdu.header["EXPTIME"] > 0
    galex = sky.render("galex", coord)[0]
    assert galex.data.shape == (2, 32, 32) and galex.header["BANDS"] == "nf"
    unwise = sky.render("unwise", coord)[0]
    assert unwise.header["SURVEY"] == "unwise-neo7" and unwise.header["BAND1"] == 2
    assert sky.render("unwise", coord, band="w2")[0].data.shape == (1, 32, 32)
    # the package's readers take them, and the WCS puts the galaxy at the centre
    for name, hduls in (("panstarrs", ps1), ("galex", [sky.render("galex", coord)]),
                        ("unwise", [sky.render("unwise", coord)])):
        survey = get_survey(name)
        listing = {b: f"stack.{b}" for b in "grizy"}
        reqs = (survey.image_requests(ra, dec, listing=listing) if name == "panstarrs"
                else survey.image_requests(ra, dec))
        image = survey.read([fits_bytes(h) for h in hduls], reqs, ra, dec)
        assert image is not None and image.flags == MantisFlag.NONE
        # the numbers sent, in the cutout's own frame (PS1 cutouts say FK5, as real ones do)
        x, y = image.wcs.world_to_pixel_values(ra, dec)
        centre = (survey.size - 1) / 2
        assert abs(x - centre) < 1e-6 and abs(y - centre) < 1e-6
    # the galaxy is there: the noiseless image is brightest near the centre, and the
    # noisy image is that plus noise of the stored sigma
    model = sky.noiseless(i, "panstarrs")[1]
    peak = np.unravel_index(np.argmax(model), model.shape)
    assert abs(peak[0] - 84.5) < 6 and abs(peak[1] - 84.5) < 6
    resid = ps1[1][0].data - model
    sigma = sky._sigma["panstarrs"][i, 1]
    sky_px = model < 0.01 * sigma
    assert np.std(resid[sky_px]) / sigma == pytest.approx(1.0, abs=0.05)
    noiseless = sky.render("panstarrs", coord, band="r", noise=False)[0].data
    np.testing.assert_allclose(noiseless, model.astype(np.float32))


def test_deterministic(sky):
    pos = position(sky, 5)
    a = [fits_bytes(sky.render("panstarrs", pos, band=b)) for b in "gz"]
    a += [fits_bytes(sky.render(s, pos)) for s in ("galex", "unwise")]
    other = SampleSky()
    b = [fits_bytes(other.render("panstarrs", pos, band=b)) for b in "gz"]
    b += [fits_bytes(other.render(s, pos)) for s in ("galex", "unwise")]
    assert a == b


def test_requests_within_half_a_pixel_and_empty_sky(sky):
    ra, dec = position(sky, 7)
    exact = sky.render("panstarrs", (ra, dec), band="r")[0]
    near = sky.render("panstarrs", (ra + 0.08 / 3600 / math.cos(math.radians(dec)), dec),
                      band="r")[0]
    assert np.array_equal(exact.data, near.data, equal_nan=True)
    assert near.header["CRVAL1"] == exact.header["CRVAL1"]  # where the galaxy is
    # one arcsec away there is no stored galaxy: empty sky of the right noise level
    empty = sky.render("panstarrs", (ra, dec + 1 / 3600), band="r")[0]
    t = empty.header["EXPTIME"]
    facts = sky.meta["surveys"]["panstarrs"]
    sigma = facts["sigma_typical"][1] * math.sqrt(t / facts["exptime_typical"][1])
    data = empty.data[np.isfinite(empty.data)]
    assert np.std(data) / sigma == pytest.approx(1.0, abs=0.03)
    assert abs(np.mean(data)) < 0.02 * sigma
    w = sky.render("unwise", (ra + 0.5, dec))[0].data
    for k, s in enumerate(sky.meta["surveys"]["unwise"]["sigma_typical"]):
        assert np.std(w[k]) / s == pytest.approx(1.0, abs=0.1)


def test_coverage_failures_follow_the_mock_sky_rules(sky):
    hole = first(sky, lambda i: not sky.galex_covered(position(sky, i)))
    assert not np.any(sky.render("galex", position(sky, hole))[0].data)
    gap = first(sky, lambda i: sky.chip_gap_bands(position(sky, i)))
    bands = sky.chip_gap_bands(position(sky, gap))
    for b in "grizy":
        data = sky.render("panstarrs", position(sky, gap), band=b)[0].data
        assert np.isnan(data).any() == (b in bands)


def test_geometry_options(sky):
    pos = position(sky, 2)
    full = sky.render("panstarrs", pos, band="g", noise=False)[0].data
    small = sky.render("panstarrs", pos, band="g", size=120, noise=False)[0]
    assert np.array_equal(small.data, full[25:145, 25:145], equal_nan=True)
    assert small.header["CRPIX1"] == pytest.approx(60.5)
    centre = (pos[0] + 0.1, pos[1] - 0.1)
    moved = sky.render("panstarrs", pos, band="g", skycell_center=centre)[0]
    assert moved.header["CRVAL1"] == pytest.approx(centre[0])
    assert np.array_equal(moved.data, sky.render("panstarrs", pos, band="g")[0].data,
                          equal_nan=True)
    with pytest.raises(ValueError, match="pixel only"):
        sky.render("galex", pos, pixscale=1.0)
    with pytest.raises(ValueError, match="same parity"):
        sky.render("panstarrs", pos, band="g", size=171)
    with pytest.raises(ValueError, match="needs one band"):
        sky.render("panstarrs", pos)
    with pytest.raises(ValueError, match="unknown survey"):
        sky.render("sdss", pos)
    # empty sky has no stored cutout to cut from: any size works
    assert sky.render("galex", (pos[0] + 1, pos[1]), size=64)[0].data.shape == (2, 64, 64)


def test_served_over_loopback(sky, tmp_path):
    south = first(sky, lambda i: sky.catalog["dec"][i] < -30)
    hole = first(sky, lambda i: sky.catalog["dec"][i] > -30
                 and not sky.galex_covered(position(sky, i)))
    rows = [0, 1, south, hole]
    coords = SkyCoord([position(sky, i) for i in rows] + [(200.0, 10.0)], unit="deg")
    with SurveyServer(sky=sky) as server, server.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path)):
        cuts = Mantis.get_cutouts(coords, progress=False)
    for i, cut in zip(rows, cuts):
        pos = position(sky, i)
        for name, image in cut.surveys.items():
            if name == "panstarrs":
                want = np.stack([sky.render(name, pos, band=b)[0].data for b in "grizy"])
                _, _, ra_c, dec_c = ps1_skycell(*pos)
                assert image.header["CRVAL1"] == pytest.approx(ra_c)  # skycell projection
            else:
                want = sky.render(name, pos)[0].data
            np.testing.assert_array_equal(image.data, want)
    assert "panstarrs" in cuts[2].missing and cuts[2].flags & MantisFlag.OUT_OF_FOOTPRINT
    assert "galex" in cuts[3].missing and cuts[3].flags & MantisFlag.GALEX_MISSING
    assert set(cuts[4].surveys) == {"galex", "panstarrs", "unwise"}  # empty sky


def test_builder_and_fidelity_to_the_mock_sky(tmp_path):
    pytest.importorskip("galsim")
    from astro_mantis.simulate import MockSky, MockSkyConfig, build_sample_sky

    path = tmp_path / "s.npz"
    meta = build_sample_sky(path, n=3, seed=7)
    assert build_sample_sky(tmp_path / "again.npz", n=3, seed=7)["bytes"] == meta["bytes"]
    assert (tmp_path / "again.npz").read_bytes() == path.read_bytes()  # reproducible
    sample = SampleSky(path)
    mock = MockSky(MockSkyConfig(n_galaxies=3, south_fraction=0.02), seed=7)
    assert np.array_equal(sample.catalog["ra"], mock.catalog["ra"])
    for i in range(3):
        pos = position(sample, i)
        for b in "grizy":
            a, m = sample.render("panstarrs", pos, band=b)[0], mock.render("panstarrs", pos,
                                                                              band=b)[0]
            assert a.header.tostring() == m.header.tostring()
            sigma = sample._sigma["panstarrs"][i, "grizy".index(b)]
            assert np.array_equal(np.isnan(a.data), np.isnan(m.data))
            assert np.nanmax(np.abs(a.data - m.data)) <= sigma * (1 / 32 + 1e-3)
        for name in ("galex", "unwise"):
            a, m = sample.render(name, pos)[0], mock.render(name, pos)[0]
            assert a.header.tostring() == m.header.tostring()
            sigma = sample._sigma[name][i][:, None, None]
            if name == "unwise":  # Gaussian regime: the same deviates
                assert np.max(np.abs(a.data - m.data) / sigma) <= 1 / 32 + 1e-3
            else:  # photon counting: same statistics
                assert np.std(a.data) == pytest.approx(np.std(m.data), rel=0.15)


def test_bundled_sample_is_what_the_builder_makes():
    pytest.importorskip("galsim")
    from astro_mantis.simulate import MockSky, MockSkyConfig

    sample = SampleSky()
    mock = MockSky(MockSkyConfig(n_galaxies=SAMPLE_N, south_fraction=0.02), seed=SAMPLE_SEED)
    assert sample.meta["config"] == repr(mock.config)
    for name in ("ra", "dec", "z", "mag_r", "ebv_csfd"):
        # equal to rounding: the bundled file was made on another CPU, whose vectorised
        # transcendental functions may differ from this one's in the last bit
        np.testing.assert_allclose(sample.catalog[name], mock.catalog[name], rtol=1e-13,
                                   atol=0)
    pos = position(sample, 0)
    for b in "gy":
        a = sample.render("panstarrs", pos, band=b)[0].data
        m = mock.render("panstarrs", pos, band=b)[0].data
        sigma = sample._sigma["panstarrs"][0, "grizy".index(b)]
        assert np.nanmax(np.abs(a - m)) <= sigma * (1 / 32 + 1e-3)
