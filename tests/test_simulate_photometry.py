"""Tests of astro_mantis.simulate.photometry: filters, templates, IGM, dust, fits."""

import numpy as np
import pytest

pytest.importorskip("kcorrect")
pytest.importorskip("speclite")
pytest.importorskip("dust_extinction")

from astro_mantis.simulate import photometry as phot  # noqa: E402

C_ANGSTROM = 2.99792458e18
AB_FNU = 3631e-23


def flat_fnu(wave, mag):
    """f_lambda of a source with constant f_nu of the given AB magnitude."""
    return AB_FNU * 10 ** (-0.4 * mag) * C_ANGSTROM / wave**2


@pytest.fixture(scope="module")
def even_fit():
    return phot.fit_sdss_coefficients("even")


def test_band_order_and_filters():
    assert phot.BANDS == ("nuv", "fuv", "g", "r", "i", "z", "y", "w1", "w2")
    lam = [phot.effective_wavelength(b) for b in phot.BANDS[2:]]
    assert np.all(np.diff(lam) > 0)  # g ... W2 redder and redder
    assert phot.effective_wavelength("fuv") < phot.effective_wavelength("nuv") < lam[0]
    wave, resp = phot.filter_curve("sdss_r0")  # a kcorrect response file
    assert np.all(np.diff(wave) > 0) and resp.max() > 0
    with pytest.raises(ValueError, match="unknown band"):
        phot.filter_curve("not-a-band")
    with pytest.raises(ValueError, match="unknown band"):
        phot.filter_curve("nosuchresponse")


def test_templates_read_with_astropy():
    wave, flux = phot.load_templates()
    assert flux.shape == (5, wave.size)
    assert wave[0] == pytest.approx(600, rel=0.01)
    assert wave[-1] == pytest.approx(3.2e6, rel=0.01)
    assert np.all(flux >= 0)


def test_flat_fnu_source_has_equal_ab_magnitudes():
    import speclite.filters

    wave = np.geomspace(900.0, 80000.0, 40000)
    bands = phot.BANDS + phot.SDSS_BANDS
    mags = phot.sed_magnitudes(wave, flat_fnu(wave, 20.0), bands)
    np.testing.assert_allclose(mags, 20.0, atol=1e-3)
    # and speclite's own integration agrees
    names = [phot.BAND_FILTERS[b] for b in phot.BANDS]
    ref = speclite.filters.load_filters(*names).get_ab_magnitudes(flat_fnu(wave, 20.0), wave)
    np.testing.assert_allclose([ref[n][0] for n in names], 20.0, atol=2e-3)


def test_igm_transmission_formula():
    wave = np.array([800.0, 1100.0, 1950.0, 2100.0, 2500.0, 5000.0])
    t = phot.igm_transmission(wave, 1.0)
    assert t.shape == wave.shape
    assert np.all(t[wave > 1215.67 * 2.0] == 1.0)  # redward of Ly-alpha at the source
    assert np.all(t[wave < 1215.67 * 2.0] < 1.0)
    # between Ly-beta and Ly-alpha at the source only the Ly-alpha forest absorbs:
    # tau = 0.0036 (2100/1215.67)**3.46 (Madau 1995, eq. 12)
    assert -np.log(t[3]) == pytest.approx(0.0036 * (2100 / 1215.67) ** 3.46, rel=1e-6)
    # add Ly-beta (eq. 15) blueward of 1025.72 (1 + z), still redward of Ly-gamma
    tau_1950 = 0.0036 * (1950 / 1215.67) ** 3.46 + 0.0017 * (1950 / 1025.72) ** 3.46
    assert -np.log(t[2]) == pytest.approx(tau_1950, rel=1e-6)
    # below the Lyman limit at the source the continuum term dominates
    assert t[0] < 0.5
    # more absorption towards higher redshift, none at z = 0
    assert np.all(phot.igm_transmission(wave, 1.5) <= t)
    assert np.all(phot.igm_transmission(wave, 0.0) == 1.0)
    assert phot.igm_transmission(wave, [0.5, 1.0]).shape == (2, wave.size)


def test_igm_dims_galex_bands_of_a_blue_template_at_high_z():
    wave, flux = phot.load_templates()
    uv = (wave > 1400) & (wave < 1700)
    opt = (wave > 5000) & (wave < 6000)
    blue = np.argmax(flux[:, uv].mean(1) / flux[:, opt].mean(1))
    coeffs = np.eye(5)[blue]
    for z, band, at_least in ((0.8, "fuv", 0.02), (1.2, "fuv", 0.1), (1.5, "nuv", 0.02)):
        with_igm = phot.band_maggies_exact(coeffs, z, bands=(band,), igm=True)[0]
        without = phot.band_maggies_exact(coeffs, z, bands=(band,), igm=False)[0]
        assert -2.5 * np.log10(with_igm / without) > at_least, (z, band)
    # the optical bands are untouched at these redshifts, and so is the UV at low z
    for z, band in ((1.5, "g"), (0.2, "fuv"), (0.3, "nuv")):
        with_igm = phot.band_maggies_exact(coeffs, z, bands=(band,), igm=True)[0]
        without = phot.band_maggies_exact(coeffs, z, bands=(band,), igm=False)[0]
        assert abs(2.5 * np.log10(with_igm / without)) < 5e-3, (z, band)


def test_f99_extinction_dims_bluer_bands_more(even_fit):
    coeffs = np.asarray(even_fit["coeffs"])[:50]
    z = np.asarray(even_fit["z"])[:50]
    dm = phot.band_magnitudes(coeffs, z, 0.1) - phot.band_magnitudes(coeffs, z, 0.0)
    order = ["nuv", "g", "r", "i", "z", "y", "w1", "w2"]
    cols = [phot.BANDS.index(b) for b in order]
    assert np.all(np.diff(dm[:, cols], axis=1) < 0)
    assert np.all(dm[:, phot.BANDS.index("fuv")] > dm[:, phot.BANDS.index("g")])
    # W1/W2 beyond F99's range: the power-law continuation stays small and positive
    assert np.all((dm[:, -2:] > 0) & (dm[:, -2:] < 0.025))


def test_band_extinction_is_the_dimming_and_zero_without_flux(even_fit):
    coeffs = np.asarray(even_fit["coeffs"])[:50]
    z = np.asarray(even_fit["z"])[:50]
    ebv = np.linspace(0.0, 0.2, 50)
    a = phot.band_extinction(coeffs, z, ebv)
    np.testing.assert_allclose(
        a, phot.band_magnitudes(coeffs, z, ebv) - phot.band_magnitudes(coeffs, z, 0.0))
    assert np.all(a[0] == 0) and np.all(a[1:] > 0)
    # about linear in E(B-V) at these values: A/E(B-V) is nearly the same for all rows
    r = phot.BANDS.index("r")
    per_ebv = a[1:, r] / ebv[1:]
    assert 1.8 < per_ebv.min() and per_ebv.max() < 3.0
    # a template with no flux in a band has no extinction there, not NaN
    none = phot.band_extinction(np.zeros(5), 0.3, 0.1, ("fuv", "r"))
    np.testing.assert_array_equal(none, [0.0, 0.0])


def test_f99_matches_dust_extinction_directly(even_fit):
    """Grid extinction vs dust_extinction's F99 applied to the observed SED."""
    import astropy.units as u
    import speclite.filters
    from dust_extinction.parameter_averages import F99

    ext = F99(Rv=3.1)
    bands = ("nuv", "fuv", "g", "r", "i", "z", "y")
    filters = speclite.filters.load_filters(*[phot.BAND_FILTERS[b] for b in bands])
    wave = np.geomspace(1010.0, 32000.0, 30000)
    rng = np.random.default_rng(3)
    rows = rng.choice(len(even_fit), 6, replace=False)
    cases = zip(rows, (0.05, 0.1, 0.3, 0.6, 1.0, 1.4), (0.02, 0.05, 0.1, 0.2, 0.35, 0.5))
    for row, z, ebv in cases:
        coeffs = np.asarray(even_fit["coeffs"][row])
        sed = phot.observed_sed(coeffs, z, wave, ebv=0.0)
        reddened = sed * ext.extinguish(wave * u.AA, Ebv=ebv)
        m0 = filters.get_ab_magnitudes(sed, wave)
        m1 = filters.get_ab_magnitudes(reddened, wave)
        direct = np.array([m1[n][0] - m0[n][0] for n in filters.names])
        ours = (phot.band_magnitudes(coeffs, z, ebv, bands)
                - phot.band_magnitudes(coeffs, z, 0.0, bands))
        np.testing.assert_allclose(ours, direct, atol=0.01)


def test_grid_matches_exact_integration(even_fit):
    rng = np.random.default_rng(7)
    rows = rng.choice(len(even_fit), 40, replace=False)
    coeffs = np.asarray(even_fit["coeffs"])[rows]
    z = rng.uniform(0.0, phot.Z_GRID_MAX, rows.size)
    ebv = rng.uniform(0.0, 1.0, rows.size)
    exact = phot.band_maggies_exact(coeffs, z, ebv)
    grid = phot.band_maggies(coeffs, z, ebv)
    dm = -2.5 * np.log10(grid / exact)
    assert np.nanmax(np.abs(dm)) < 0.01


def test_grid_errors_are_as_documented(even_fit):
    """The two approximations of the grid, apart (docs/simulate_population.rst): the
    quadratic in E(B-V) is exact at 0, 0.5 and 1 and off by < 0.01 mag in NUV in between
    (< 0.001 mag elsewhere); the linear interpolation in z, < 0.005 mag."""
    rng = np.random.default_rng(3)
    rows = rng.choice(len(even_fit), 40, replace=False)
    coeffs = np.asarray(even_fit["coeffs"])[rows]
    nodes = rng.integers(0, round(phot.Z_GRID_MAX / phot.Z_GRID_STEP) + 1, rows.size)
    z = np.round(nodes * phot.Z_GRID_STEP, 6)  # on the grid: no interpolation error

    def dm(z, ebv):
        return np.abs(2.5 * np.log10(phot.band_maggies(coeffs, z, ebv)
                                     / phot.band_maggies_exact(coeffs, z, ebv)))

    for ebv in (0.0, 0.5, 1.0):
        assert dm(z, ebv).max() < 1e-4, ebv
    nuv = phot.BANDS.index("nuv")
    for ebv in (0.2, 0.8):
        d = dm(z, ebv)
        assert 0.001 < d[:, nuv].max() < 0.01, ebv  # the quadratic's own error
        assert np.delete(d, nuv, axis=1).max() < 0.001, ebv
    between = rng.uniform(0.0, phot.Z_GRID_MAX, rows.size)
    assert dm(between, 0.0).max() < 0.005


def test_grid_is_built_once_per_band():
    """Each band's grid is built on first use and reused (its build time is in
    benchmarks/bench_components.py)."""
    phot.template_band_maggies(0.1, phot.BANDS)  # filters and templates loaded
    saved = dict(phot._GRIDS)
    try:
        phot._GRIDS.clear()
        first = phot.template_band_maggies(0.1, ("g", "w1"))
        assert set(phot._GRIDS) == {"g", "w1"}
        grids = dict(phot._GRIDS)
        again = phot.template_band_maggies(0.1, ("w1", "g"))
        assert all(phot._GRIDS[b] is grids[b] for b in grids)
        np.testing.assert_array_equal(again[:, ::-1, :], first)  # (z, band, template)
    finally:
        phot._GRIDS.clear()
        phot._GRIDS.update(saved)


def test_band_magnitudes_shapes_and_validation():
    c = np.array([1e-6, 0, 0, 0, 0])
    assert phot.band_magnitudes(c, 0.1).shape == (9,)
    assert phot.band_magnitudes(np.tile(c, (3, 1)), [0.1, 0.2, 0.3], 0.05).shape == (3, 9)
    assert phot.band_magnitudes(c, 0.1, bands=("r",)).shape == (1,)
    with pytest.raises(ValueError, match="z must lie in"):
        phot.band_magnitudes(c, 1.8)
    with pytest.raises(ValueError, match="z must lie in"):
        phot.band_magnitudes(c, -0.1)
    with pytest.raises(ValueError, match="ebv"):
        phot.band_magnitudes(c, 0.1, -0.01)
    with pytest.raises(ValueError, match="5 columns"):
        phot.band_magnitudes(np.ones((2, 4)), 0.1)
    with pytest.raises(ValueError, match="one per row"):
        phot.band_magnitudes(np.ones((2, 5)), [0.1, 0.2, 0.3])


def test_reproduces_kcorrect_reconstruction(even_fit):
    """band_magnitudes gives kcorrect's own reconstructed maggies (< 0.02 mag)."""
    import gc
    import warnings

    import kcorrect.kcorrect

    responses = ["sdss_u0", "sdss_g0", "sdss_r0", "sdss_i0", "sdss_z0"]
    cat = phot.load_sdss_catalog("even")[:150]
    z = np.asarray(cat["z"])
    maggies = np.asarray(cat["maggies"])[:, 2:7]
    ivar = np.asarray(cat["ivar"])[:, 2:7]
    with warnings.catch_warnings():
        # kcorrect leaves its template file open; collect it here, quietly
        warnings.simplefilter("ignore", ResourceWarning)
        kc = kcorrect.kcorrect.Kcorrect(responses=responses, redshift_range=[0.0, 0.6],
                                        nredshift=121)
        coeffs = kc.fit_coeffs(redshift=z, maggies=maggies, ivar=ivar)
        recon = kc.reconstruct(redshift=z, coeffs=coeffs)
        del kc
        gc.collect()
    ours = phot.band_magnitudes(coeffs, z, 0.0, responses)
    assert np.max(np.abs(ours + 2.5 * np.log10(recon))) < 0.02
    # our own NNLS fit of the same photometry reconstructs the same maggies
    sdss_only = cat.copy()
    iv = np.array(sdss_only["ivar"])
    iv[:, [0, 1, 7, 8, 9]] = 0
    sdss_only["ivar"] = iv
    fit = phot._fit_table(sdss_only)
    mine = phot.band_magnitudes(np.asarray(fit["coeffs"]), z, 0.0, responses)
    assert np.max(np.abs(mine + 2.5 * np.log10(recon))) < 0.02


def test_even_odd_rule():
    with pytest.raises(ValueError, match="held out"):
        phot.fit_sdss_coefficients("odd")
    with pytest.raises(ValueError, match="'even' or 'odd'"):
        phot.fit_sdss_coefficients("all")
    with pytest.raises(ValueError, match="'even' or 'odd'"):
        phot.load_sdss_catalog("both")
    # evaluation helpers may read the odd rows
    odd = phot.load_sdss_catalog("odd")
    assert np.all(np.asarray(odd["row"]) % 2 == 1)


def test_fit_uses_even_rows_only(even_fit):
    from astropy.io import fits

    rows = np.asarray(even_fit["row"])
    assert len(even_fit) == 5000
    assert np.array_equal(rows, np.arange(0, 10000, 2))
    with fits.open(phot.sdss_catalog_path()) as hdul:
        z_file = np.asarray(hdul[1].data["Z"], dtype=float)
    np.testing.assert_array_equal(np.asarray(even_fit["z"])[:5], z_file[[0, 2, 4, 6, 8]])
    np.testing.assert_array_equal(np.asarray(even_fit["z"]), z_file[0::2])
    assert even_fit["z"][1] == pytest.approx(0.16737595)  # row 2 of the file


def test_fit_quality_and_cache(even_fit):
    coeffs = np.asarray(even_fit["coeffs"])
    assert coeffs.shape == (5000, 5) and np.all(coeffs >= 0)
    assert np.all(coeffs.sum(1) > 0)
    assert np.median(even_fit["chi2"] / np.maximum(even_fit["ndof"], 1)) < 2.0
    cat = phot.load_sdss_catalog("even")
    model = phot.band_maggies(coeffs, np.asarray(even_fit["z"]), 0.0, phot.FIT_BANDS)
    resid = -2.5 * np.log10(np.asarray(cat["maggies"])[:, 3:6] / model[:, 3:6])
    assert np.all(np.abs(np.median(resid, axis=0)) < 0.01)  # g r i
    def refit(*args, **kwargs):
        raise AssertionError("the cached fit should have been reused")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(phot, "_nnls_fit", refit)
        again = phot.fit_sdss_coefficients("even")
    np.testing.assert_array_equal(np.asarray(again["coeffs"]), coeffs)


def test_fit_cache_is_written_atomically(tmp_path, monkeypatch):
    """The fit cache (.npz) is replaced whole: a write that fails midway (a full disk)
    leaves the old file and no temporary one (a ``<name>.<pid>.tmp.npz`` once stayed)."""
    cfile = tmp_path / "sdss_fit_key.npz"
    phot._save_npz(cfile, {"a": np.arange(3)})
    assert [p.name for p in tmp_path.iterdir()] == ["sdss_fit_key.npz"]
    with np.load(cfile) as data:
        assert data["a"].tolist() == [0, 1, 2]
    old = cfile.read_bytes()

    def torn(file, *args, **kwargs):
        if hasattr(file, "write"):
            file.write(old[:50])
        else:
            with open(file, "wb") as fh:
                fh.write(old[:50])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", torn)
    phot._save_npz(cfile, {"a": np.arange(5)})  # a cache: the failure is not an error
    assert [p.name for p in tmp_path.iterdir()] == ["sdss_fit_key.npz"]
    assert cfile.read_bytes() == old


def test_catalog_facts():
    cat = phot.load_sdss_catalog("even")
    assert len(cat) == 5000
    assert cat["maggies"].shape == (5000, len(phot.FIT_BANDS))
    r_model = -2.5 * np.log10(np.asarray(cat["maggies"])[:, 4])
    assert 16.0 < np.median(r_model) < 17.5  # nanomaggies -> maggies done right
    assert 16.5 < np.median(cat["r_petro"]) < 17.1
    ivar = np.asarray(cat["ivar"])
    assert 300 < np.sum(ivar[:, 1] > 0) < 450  # GALEX NUV detections
    offsets = phot.twomass_offsets()
    assert np.all((offsets > 0.05) & (offsets < 0.35))


def test_absolute_magnitudes(even_fit):
    m = phot.absolute_magnitudes(np.asarray(even_fit["coeffs"])[:200],
                                 np.asarray(even_fit["z"])[:200])
    assert m.shape == (200, 5)
    assert -23.5 < np.median(m[:, 2]) < -20.0  # bright SDSS galaxies
    with pytest.raises(ValueError, match="z > 0"):
        phot.absolute_magnitudes(np.asarray(even_fit["coeffs"])[0], 0.0)


def test_reference_magnitudes_anchor_rules():
    ref = phot.sdss_reference_magnitudes("odd", ("nuv", "g", "w1"))
    assert np.all(np.asarray(ref["row"]) % 2 == 1)
    assert set(np.asarray(ref["anchor_g"])) == {"sdss_g0"}
    assert set(np.asarray(ref["anchor_w1"])) == {"fit"}
    measured = np.asarray(ref["anchor_nuv"]) == "nuv"
    assert 300 < measured.sum() < 450
    cat = phot.load_sdss_catalog("odd")
    nuv = -2.5 * np.log10(np.asarray(cat["maggies"])[measured, 1])
    np.testing.assert_allclose(np.asarray(ref["mag_nuv"])[measured], nuv)


def test_mw_extinction_is_f99_inside_its_range_and_continued_outside():
    from dust_extinction.parameter_averages import F99

    import astropy.units as u

    f99 = F99(Rv=3.1)
    wave = np.array([1500.0, 2300.0, 4400.0, 5500.0, 8000.0, 22000.0])  # Angstrom
    expected = 0.1 * 3.1 * f99(wave * u.AA)
    np.testing.assert_allclose(phot.mw_extinction_mag(wave, 0.1), expected, rtol=1e-6)
    # broadcast: one E(B-V) per wavelength, or a column of them against all wavelengths
    ebv = np.array([[0.0], [0.02], [0.5]])
    np.testing.assert_allclose(phot.mw_extinction_mag(wave, ebv), ebv * expected / 0.1,
                               rtol=1e-6)
    # redward of 3.33 micron: a power law falling through the W1/W2 values the docs give
    w1, w2, far = phot.mw_extinction_mag([34000.0, 46000.0, 120000.0], 1.0)
    assert 0.18 < w1 < 0.22 and 0.11 < w2 < 0.15 and 0 < far < w2 < w1
    assert w1 == pytest.approx(phot._flat_band_extinction("w1"), rel=0.03)
    assert w2 == pytest.approx(phot._flat_band_extinction("w2"), rel=0.03)
    # blueward of 1000 Angstrom: held at the 1000 Angstrom value
    a_912, a_1000 = phot.mw_extinction_mag([912.0, 1000.0], 1.0)
    assert a_912 == pytest.approx(a_1000, rel=1e-5)
