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
    # read with the typical exposure time's zero point instead (what counts alone tell),
    # the same counts give a galaxy fainter by 2.5 log10(typical / 100 s)
    from astro_mantis.surveys import SURVEYS

    typical = SURVEYS["panstarrs"].typical_exptime["r"]
    blind = shard_features(shard, ps1_zeropoints="typical")
    assert blind[:, 3] == pytest.approx(17.0 + 2.5 * np.log10(typical / 100.0), abs=1e-3)
    with pytest.raises(ValueError, match="ps1_zeropoints"):
        shard_features(shard, ps1_zeropoints="catalog")


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


# --- the catalog-magnitude baseline -------------------------------------------------------

from astro_mantis.training.baseline import (CatalogKNN, catalog_magnitudes,  # noqa: E402
                                            colour_features, depth_noise_fluxes,
                                            noisy_magnitudes, shard_extinction,
                                            shard_magnitudes)

NINE = ("nuv", "fuv", "g", "r", "i", "z", "y", "w1", "w2")
DEPTH = {"nuv": 20.8, "fuv": 19.9, "g": 23.3, "r": 23.2, "i": 23.1, "z": 22.3, "y": 21.4,
         "w1": 20.3, "w2": 19.9}


@pytest.fixture(scope="module")
def sim():
    pytest.importorskip("kcorrect")
    pytest.importorskip("speclite")
    pytest.importorskip("dust_extinction")
    return pytest.importorskip("astro_mantis.simulate.photometry")


def test_catalog_magnitudes_fit_rows_are_even_and_evaluation_rows_odd(sim):
    even = catalog_magnitudes("even")
    assert len(even) == 5000
    np.testing.assert_array_equal(even["row"], np.arange(0, 10000, 2))
    assert even["mag"].shape == (5000, 9) and even.meta["bands"] == list(NINE)
    # the template fit at the spectroscopic redshift, corrected for Galactic extinction
    fit = sim.fit_sdss_coefficients("even")
    np.testing.assert_array_equal(fit["row"], even["row"])
    expected = sim.band_magnitudes(np.asarray(fit["coeffs"][:50]), np.asarray(fit["z"][:50]),
                                   0.0, NINE)
    np.testing.assert_allclose(even["mag"][:50], expected, atol=1e-9)
    # SDSS main-sample galaxies are bright in r
    assert 15 < np.median(even["mag"][:, 3]) < 18
    odd = catalog_magnitudes("odd", bands=("g", "r"))
    assert np.all(odd["row"] % 2 == 1) and odd["mag"].shape == (5000, 2)
    assert not np.intersect1d(odd["row"], even["row"]).size
    with pytest.raises(ValueError, match="'even' or 'odd'"):
        catalog_magnitudes("all")
    with pytest.raises(ValueError, match="source"):
        catalog_magnitudes("even", source="model")
    with pytest.raises(ValueError, match="unknown band.*'u'"):
        catalog_magnitudes("even", bands=("g", "u"))


def test_catalog_magnitudes_carry_the_extinction_they_were_corrected_for(sim):
    even = catalog_magnitudes("even")
    ext = np.asarray(even["extinction"])
    assert ext.shape == (5000, 9) and np.all(np.isfinite(ext)) and np.all(ext >= 0)
    fit = sim.fit_sdss_coefficients("even")[:50]
    coeffs, z = np.asarray(fit["coeffs"]), np.asarray(fit["z"])
    ebv = np.asarray(even["ebv_sfd"][:50], dtype=float)
    expected = (sim.band_magnitudes(coeffs, z, ebv, NINE)
                - sim.band_magnitudes(coeffs, z, 0.0, NINE))
    expected = np.where(np.isfinite(expected), expected, 0.0)
    np.testing.assert_allclose(ext[:50], expected, atol=1e-9)
    # redder bands are less extinguished: A(NUV)/E(B-V) ~ 8, A(r) ~ 2.3, A(W1) ~ 0.2
    reddened = np.asarray(even["ebv_sfd"]) > 0.02
    per_ebv = np.median(ext[reddened] / np.asarray(even["ebv_sfd"])[reddened, None], axis=0)
    nuv, r, w1 = (NINE.index(b) for b in ("nuv", "r", "w1"))
    assert 6 < per_ebv[nuv] < 10 and 1.8 < per_ebv[r] < 3 and per_ebv[w1] < 0.5


def test_depth_noise_has_a_fifth_of_the_5sigma_depth_flux():
    mags = np.tile([18.0, 30.0, 20.0], (20000, 1))
    bands = ("r", "w1", "nuv")
    flux, sigma = depth_noise_fluxes(mags, bands=bands, seed=3)
    expect = 10 ** (-0.4 * np.array([DEPTH[b] for b in bands])) / 5
    np.testing.assert_allclose(sigma, expect)
    resid = flux - 10 ** (-0.4 * mags)
    np.testing.assert_allclose(resid.std(axis=0) / expect, 1.0, atol=0.03)
    np.testing.assert_allclose(resid.mean(axis=0) / expect, 0.0, atol=0.03)
    # a source at the 5σ depth has signal-to-noise 5; a custom depth is honoured
    at_depth = np.full((20000, 1), 22.0)
    f, s = depth_noise_fluxes(at_depth, bands=("g",), depth={"g": 22.0}, seed=0)
    assert np.mean(f) / s[0] == pytest.approx(5.0, abs=0.05)
    # no flux at all (inf) stays finite once noisy
    assert np.all(np.isfinite(noisy_magnitudes(np.full((5, 9), np.inf))))


def test_depth_noise_takes_each_rows_own_sigma():
    mags = np.tile([18.0, 21.0, 30.0], (20000, 1))
    bands = ("r", "g", "nuv")
    sigma = np.tile([1e-9, 3e-9, np.inf], (20000, 1))
    sigma[::2, 0] = 4e-9  # two noise levels in one column
    flux, out = depth_noise_fluxes(mags, bands=bands, seed=5, sigma=sigma)
    assert out is not None and out.shape == mags.shape
    resid = flux - 10 ** (-0.4 * mags)
    assert np.std(resid[1::2, 0]) / 1e-9 == pytest.approx(1.0, abs=0.03)
    assert np.std(resid[::2, 0]) / 4e-9 == pytest.approx(1.0, abs=0.03)
    assert np.std(resid[:, 1]) / 3e-9 == pytest.approx(1.0, abs=0.03)
    # a band not measured (infinite or NaN σ) has no flux, and stays finite as a magnitude
    assert np.all(flux[:, 2] == 0.0)
    nan_sigma = np.where(np.isinf(sigma), np.nan, sigma)
    np.testing.assert_array_equal(depth_noise_fluxes(mags, bands, seed=5, sigma=nan_sigma)[0],
                                  flux)
    mag = noisy_magnitudes(mags, bands, seed=5, sigma=sigma)
    assert np.all(np.isfinite(mag))
    # the same deviates as the depth's noise: only their scale changes
    plain, s0 = depth_noise_fluxes(mags, bands, seed=5)
    scaled, _ = depth_noise_fluxes(mags, bands, seed=5, sigma=np.tile(2 * s0, (20000, 1)))
    np.testing.assert_allclose(scaled - 10 ** (-0.4 * mags), 2 * (plain - 10 ** (-0.4 * mags)))
    with pytest.raises(ValueError, match="sigma must have the shape of mags"):
        depth_noise_fluxes(mags, bands, sigma=sigma[:5])
    with pytest.raises(ValueError, match="sigma must be positive"):
        depth_noise_fluxes(mags, bands, sigma=np.zeros_like(sigma))


def test_noise_is_drawn_on_the_observed_flux_of_corrected_magnitudes():
    bands = ("r", "nuv", "g")
    corrected = np.tile([18.0, 21.0, 30.0], (20000, 1))
    ext = np.tile([0.1, 0.8, 0.3], (20000, 1))
    flux, sigma = depth_noise_fluxes(corrected, bands, seed=6, extinction=ext)
    nominal = 10 ** (-0.4 * np.array([DEPTH[b] for b in bands])) / 5
    boost = 10 ** (0.4 * ext[0])
    # the corrected flux is unbiased and its σ is the images' σ times 10**(0.4 A)
    np.testing.assert_allclose(sigma, np.tile(nominal * boost, (20000, 1)))
    resid = flux - 10 ** (-0.4 * corrected)
    np.testing.assert_allclose(resid.std(axis=0) / (nominal * boost), 1.0, atol=0.03)
    np.testing.assert_allclose(resid.mean(axis=0) / (nominal * boost), 0.0, atol=0.03)
    # the same deviates as without extinction, scaled; zero extinction changes nothing
    plain, _ = depth_noise_fluxes(corrected, bands, seed=6)
    np.testing.assert_allclose(resid, (plain - 10 ** (-0.4 * corrected)) * boost)
    np.testing.assert_array_equal(
        noisy_magnitudes(corrected, bands, seed=6, extinction=np.zeros_like(ext)),
        noisy_magnitudes(corrected, bands, seed=6))
    # so the corrected NUV magnitude of a reddened galaxy scatters more
    m_ext = noisy_magnitudes(corrected, bands, seed=6, extinction=ext)
    m_plain = noisy_magnitudes(corrected, bands, seed=6)
    assert np.std(m_ext[:, 1]) > 1.9 * np.std(m_plain[:, 1])
    # with per-row σ too, both scale
    own = np.tile([1e-9, 2e-9, np.inf], (20000, 1))
    f_own, s_own = depth_noise_fluxes(corrected, bands, seed=6, sigma=own, extinction=ext)
    np.testing.assert_allclose(s_own[:, :2], own[:, :2] * boost[:2])
    assert np.all(f_own[:, 2] == 0.0)
    with pytest.raises(ValueError, match="extinction must have the shape of mags"):
        depth_noise_fluxes(corrected, bands, extinction=ext[:3])
    with pytest.raises(ValueError, match="extinction must be finite"):
        noisy_magnitudes(corrected, bands, extinction=np.full_like(ext, np.nan))


def test_noise_is_deterministic_per_seed():
    mags = np.random.default_rng(0).uniform(16, 24, (100, 9))
    a = noisy_magnitudes(mags, seed=7)
    np.testing.assert_array_equal(a, noisy_magnitudes(mags, seed=7))
    assert not np.array_equal(a, noisy_magnitudes(mags, seed=8))
    # bright bands barely move, faint ones much more
    bright = noisy_magnitudes(np.full((2000, 9), 15.0), seed=1)
    assert np.std(bright[:, 3]) < 0.01 < np.std(noisy_magnitudes(np.full((2000, 9), 23.0),
                                                                  seed=1)[:, 3])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"shape \(N, 9\).*\(10, 8\)"):
        noisy_magnitudes(np.zeros((10, 8)))
    with pytest.raises(ValueError, match=r"shape \(N, 9\)"):
        depth_noise_fluxes(np.zeros(9))
    # depths given as a bare array (no band names) are refused as such, not as bands
    with pytest.raises(TypeError, match="depth must map band names"):
        noisy_magnitudes(np.zeros((3, 9)), depth=np.full(9, 23.0))
    with pytest.raises(ValueError, match="unknown band.*'k'"):
        depth_noise_fluxes(np.zeros((3, 2)), bands=("g", "k"))
    with pytest.raises(ValueError, match="unknown band.*'r'"):
        depth_noise_fluxes(np.zeros((3, 1)), bands=("r",), depth={"g": 22.0})
    with pytest.raises(ValueError, match="NaN"):
        depth_noise_fluxes(np.full((3, 9), np.nan))
    with pytest.raises(ValueError, match=r"z must have shape \(50,\)"):
        CatalogKNN().fit(np.zeros((50, 9)), np.zeros(49))
    with pytest.raises(ValueError, match="smoothing"):
        CatalogKNN(smoothing=-1)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        CatalogKNN(bands=("g", "r")).fit(np.zeros((50, 9)), np.zeros(50))
    with pytest.raises(ValueError, match="catalog"):
        shard_magnitudes({"z": np.zeros(3)})


def test_colour_features_are_wavelength_ordered_neighbour_colours():
    mags = np.arange(9.0)[None, :] * np.array([[1.0]])  # nuv=0, fuv=1, g=2, ...
    feats = colour_features(mags)
    assert feats.shape == (1, 17)
    np.testing.assert_array_equal(feats[0, :9], mags[0])
    # FUV−NUV, NUV−g, g−r, r−i, i−z, z−y, y−W1, W1−W2
    np.testing.assert_array_equal(feats[0, 9:], [1 - 0, 0 - 2, -1, -1, -1, -1, -1, -1])


def test_catalog_knn_recovers_redshift_better_than_a_constant():
    rng = np.random.default_rng(2)
    n = 1500
    z = rng.uniform(0.02, 0.6, n)
    # a toy SED whose colours redden with z and whose brightness is unrelated to z
    base = rng.uniform(16, 19, n)[:, None]
    slope = np.array([3.0, 4.0, 1.5, 0.8, 0.4, 0.2, 0.1, -0.3, -0.6])
    true = base + slope[None, :] * z[:, None] * 2 + rng.normal(0, 0.05, (n, 9))
    noisy = noisy_magnitudes(true, seed=4)
    model = CatalogKNN(k=20).fit(noisy[:1200], z[:1200])
    zp = model.predict(noisy[1200:])
    err = np.median(np.abs(zp - z[1200:]))
    const = np.median(np.abs(np.median(z[:1200]) - z[1200:]))
    assert err < 0.2 * const
    pdf = model.predict_pdf(noisy[1200:1250])
    assert len(pdf) == 50 and np.all(pdf.valid)
    assert np.all(np.abs(pdf.mean() - z[1200:1250]) < 0.1)
    # smoothing widens the PDF, 0 is the bare neighbour histogram
    bare = CatalogKNN(k=20, smoothing=0).fit(noisy[:1200], z[:1200])
    wide = CatalogKNN(k=20, smoothing=0.05).fit(noisy[:1200], z[:1200])
    assert np.all(wide.predict_pdf(noisy[1200:1250]).std()
                  > bare.predict_pdf(noisy[1200:1250]).std())


def test_shard_magnitudes_undo_the_milky_way_extinction(sim):
    from astropy.table import Table

    fit = sim.fit_sdss_coefficients("even")[:20]
    coeffs, z = np.asarray(fit["coeffs"]), np.asarray(fit["z"])
    ebv = np.linspace(0.0, 0.3, 20)
    observed = sim.band_magnitudes(coeffs, z, ebv, NINE)
    cat = Table({"coeffs": coeffs, "z": z, "ebv": ebv, "ebv_csfd": ebv,
                 **{f"mag_{b}": observed[:, j] for j, b in enumerate(NINE)}})
    intrinsic = sim.band_magnitudes(coeffs, z, 0.0, NINE)
    np.testing.assert_allclose(shard_magnitudes({"catalog": cat}), intrinsic, atol=1e-6)
    np.testing.assert_allclose(shard_magnitudes({"catalog": cat}, ebv=None), observed)
    # the correction it applied, by itself
    np.testing.assert_allclose(shard_extinction({"catalog": cat}), observed - intrinsic,
                               atol=1e-6)
    np.testing.assert_allclose(shard_extinction({"catalog": cat}, bands=("w1",)),
                               (observed - intrinsic)[:, [7]], atol=1e-6)
    with pytest.raises(ValueError, match="ebv must be 'ebv_csfd', 'ebv_planck' or 'ebv' "):
        shard_extinction({"catalog": cat}, ebv=None)
    assert np.all(observed[-1] > intrinsic[-1] + 0.01)
    with pytest.raises(ValueError, match="ebv must be"):
        shard_magnitudes({"catalog": cat}, ebv="sfd")
    with pytest.raises(ValueError, match="lacks column.*mag_w2"):
        shard_magnitudes({"catalog": cat[[c for c in cat.colnames if c != "mag_w2"]]})
