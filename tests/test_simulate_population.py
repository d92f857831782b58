"""Tests of astro_mantis.simulate.population: config, draws, sizes, colours."""
import dataclasses
import time

import numpy as np
import pytest

pytest.importorskip("kcorrect")
pytest.importorskip("speclite")
pytest.importorskip("dust_extinction")

from astro_mantis.simulate import photometry as phot  # noqa: E402
from astro_mantis.simulate import population as pop  # noqa: E402
from astro_mantis.simulate.population import PopulationConfig, draw_population  # noqa: E402


@pytest.fixture(scope="module")
def galaxies():
    return draw_population(6000, rng=11)


@pytest.fixture(scope="module")
def colours_odd():
    """The issue's evidence: mock main sample vs held-out SDSS rows, per z bin."""
    return pop.colour_redshift_comparison(rng=0, bootstrap=200)


@pytest.fixture(scope="module")
def colours_even():
    return pop.colour_redshift_comparison(rng=0, rows="even", bootstrap=200)


# -- configuration ------------------------------------------------------------
def test_config_defaults_are_fixed_and_frozen():
    a, b = PopulationConfig(), PopulationConfig()
    assert a == b
    assert a.main_r_limit == 17.77 and a.main_k_limit is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.frac_main = 0.3
    c = dataclasses.replace(a, frac_main=0.6, frac_lrg=0.2, frac_elg=0.2)
    assert c.frac_main == 0.6


@pytest.mark.parametrize("kwargs, field, allowed", [
    ({"frac_main": 1.5}, "frac_main", "[0.0, 1.0]"),
    ({"frac_main": 0.6}, "frac_main + frac_lrg + frac_elg", "equal 1"),
    ({"main_r_limit": 25.0}, "main_r_limit", "[14.0, 20.0]"),
    ({"main_r_limit": float("nan")}, "main_r_limit", "[14.0, 20.0]"),
    ({"main_r_limit": "bright"}, "main_r_limit", "[14.0, 20.0]"),
    ({"main_z_min": 0.3, "main_z_max": 0.2}, "main_z_min", "below main_z_max"),
    ({"lrg_z_max": 2.5}, "lrg_z_max", "[0.005, 1.7]"),
    ({"elg_z_min": 1.65, "elg_z_max": 1.6}, "elg_z_min", "below elg_z_max"),
    ({"elg_z_max": 1.7}, "elg_z_max", "[0.005, 1.6]"),
    ({"lrg_limit_band": "q"}, "lrg_limit_band", "one of"),
    ({"size_late": (0.2, 0.5, -1.3)}, "size_late", "4 numbers"),
    ({"bulge_frac_red": (0.0, 2.0)}, "bulge_frac_red", "[0.01, 100.0]"),
    ({"ebv_median": -0.01}, "ebv_median", "[0.0001, 1.0]"),
    ({"offset_sigma": -1}, "offset_sigma", "[0.0, 5.0]"),
    ({"main_k_limit": 14.0}, "main_k_limit", "anchor_k_limit"),
    ({"star_g_min": 25.0, "star_g_max": 24.0}, "star_g_min", "below star_g_max"),
    ({"coeff_scatter": True}, "coeff_scatter", "[0.0, 0.5]"),
])
def test_config_validation_names_field_and_range(kwargs, field, allowed):
    with pytest.raises(ValueError) as err:
        PopulationConfig(**kwargs)
    msg = str(err.value)
    assert f"PopulationConfig.{field}" in msg
    assert allowed in msg


def test_bad_call_arguments():
    with pytest.raises(ValueError, match="non-negative integer"):
        draw_population(-1)
    with pytest.raises(ValueError, match="non-negative integer"):
        draw_population(2.5)
    with pytest.raises(TypeError, match="PopulationConfig"):
        draw_population(3, config={"frac_main": 1.0})
    with pytest.raises(ValueError, match="components"):
        draw_population(3, components=["qso"])
    with pytest.raises(ValueError, match="ebv"):
        draw_population(3, rng=1, ebv=-0.1)


# -- the table ------------------------------------------------------------------
def test_columns_types_and_units(galaxies):
    import astropy.units as u

    required = ["z", "type", "coeffs", "ebv", "ebv_csfd", "ebv_planck",
                *(f"mag_{b}" for b in phot.BANDS),
                "r_half_disk", "r_half_bulge", "bulge_frac", "q", "pa", "dx", "dy"]
    assert list(galaxies.colnames) == list(pop.COLUMNS)
    assert set(required) <= set(galaxies.colnames)
    assert set(np.unique(galaxies["type"])) == {"main", "lrg", "elg"}
    assert galaxies["coeffs"].shape == (6000, 5) and np.all(galaxies["coeffs"] >= 0)
    for name in ("r_half_disk", "r_half_bulge", "dx", "dy"):
        assert galaxies[name].unit == u.arcsec
    assert galaxies["pa"].unit == u.deg
    for name in ("ebv", "ebv_csfd", "ebv_planck", "mag_r"):
        assert galaxies[name].unit == u.mag
    q = np.asarray(galaxies["q"])
    assert np.all((q >= 0.1) & (q <= 1.0))
    pa = np.asarray(galaxies["pa"])
    assert np.all((pa >= 0) & (pa < 180))
    bt = np.asarray(galaxies["bulge_frac"])
    assert np.all((bt >= 0) & (bt <= 1))
    assert np.all(np.asarray(galaxies["r_half_disk"]) > 0)
    for band in ("g", "r", "i", "z", "y", "w1", "w2"):
        assert np.all(np.isfinite(galaxies[f"mag_{band}"]))


def test_mixture_fractions(galaxies):
    kinds = np.asarray(galaxies["type"])
    for kind, frac in (("main", 0.5), ("lrg", 0.25), ("elg", 0.25)):
        assert abs(np.mean(kinds == kind) - frac) < 0.03
    only = draw_population(500, rng=3, components="lrg")
    assert set(np.unique(only["type"])) == {"lrg"}


def test_magnitudes_follow_from_coefficients(galaxies):
    mags = phot.band_magnitudes(np.asarray(galaxies["coeffs"]), np.asarray(galaxies["z"]),
                                np.asarray(galaxies["ebv"]))
    for j, band in enumerate(phot.BANDS):
        np.testing.assert_allclose(np.asarray(galaxies[f"mag_{band}"]), mags[:, j])


def test_determinism():
    a = draw_population(400, rng=5)
    b = draw_population(400, rng=np.random.default_rng(5))
    c = draw_population(400, rng=6)
    for name in a.colnames:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))
    assert not np.array_equal(np.asarray(a["z"]), np.asarray(c["z"]))


def test_fifty_thousand_in_under_ten_seconds():
    draw_population(10, rng=0)  # caches: anchor fit, grids, volume tables
    t0 = time.perf_counter()
    tab = draw_population(50000, rng=1)
    assert len(tab) == 50000
    assert time.perf_counter() - t0 < 10.0


def test_components_follow_their_selection(galaxies):
    cfg = PopulationConfig()
    z = np.asarray(galaxies["z"])
    kind = np.asarray(galaxies["type"])
    intrinsic = phot.band_magnitudes(np.asarray(galaxies["coeffs"]), z, 0.0,
                                     ("g", "r", "i", "sdss_r0"))
    main, lrg, elg = kind == "main", kind == "lrg", kind == "elg"
    assert np.all((z[main] >= cfg.main_z_min) & (z[main] <= cfg.main_z_max))
    assert np.median(z[main]) < 0.15 and np.percentile(z[main], 99) < 0.35
    assert np.all((z[lrg] >= 0.15) & (z[lrg] <= 0.85))
    assert np.all((z[elg] >= 0.3) & (z[elg] <= 1.6))
    assert np.all(intrinsic[lrg, 2] < cfg.lrg_mag_limit + 1e-6)   # PS1 i < 21
    assert np.all(intrinsic[elg, 0] < cfg.elg_mag_limit + 1e-6)   # PS1 g < 23.4
    # main sample: model r near or below the Petrosian limit (Petrosian ~ model + 0.1)
    assert np.percentile(intrinsic[main, 3], 99) < cfg.main_r_limit + 0.3
    gr = intrinsic[:, 0] - intrinsic[:, 1]
    assert np.median(gr[lrg]) > 1.2      # red at z ~ 0.5
    assert np.median(gr[elg]) < 0.6      # blue at z ~ 1


def test_population_uses_even_rows_only():
    anchor = pop._anchor()
    assert np.all(anchor["row"] % 2 == 0)
    assert anchor["row"].size > 4900


def test_dust_columns(galaxies):
    ebv = np.asarray(galaxies["ebv"])
    csfd = np.asarray(galaxies["ebv_csfd"])
    planck = np.asarray(galaxies["ebv_planck"])
    assert np.all(ebv > 0) and np.all(ebv <= 0.5)
    assert 0.02 < np.median(ebv) < 0.04
    assert np.all(csfd >= 0) and np.all(planck >= 0)
    big = ebv > 0.05
    rel = np.std(np.log(csfd[big] / planck[big]))
    assert 0.08 < rel < 0.16  # the two estimates differ by ~11 % rms
    fixed = draw_population(50, rng=2, ebv=0.1)
    np.testing.assert_array_equal(np.asarray(fixed["ebv"]), 0.1)


def test_composite_half_light_radius():
    assert pop.composite_half_light_radius(0.0, 0.5) == pytest.approx(1.0, rel=1e-6)
    assert pop.composite_half_light_radius(1.0, 0.5) == pytest.approx(0.5, rel=1e-6)
    x = pop.composite_half_light_radius(0.5, 0.5)
    assert 0.5 < x < 1.0
    from scipy.special import gammainc, gammaincinv

    b1, b4 = gammaincinv(2.0, 0.5), gammaincinv(8.0, 0.5)
    frac = 0.5 * gammainc(8.0, b4 * (x / 0.5) ** 0.25) + 0.5 * gammainc(2.0, b1 * x)
    assert frac == pytest.approx(0.5, abs=1e-8)


def test_sizes_are_plausible(galaxies):
    kind = np.asarray(galaxies["type"])
    z = np.asarray(galaxies["z"])
    rd = np.asarray(galaxies["r_half_disk"])
    rb = np.asarray(galaxies["r_half_bulge"])
    bt = np.asarray(galaxies["bulge_frac"])
    np.testing.assert_allclose(rb, 0.5 * rd)
    r_half = rd * pop.composite_half_light_radius(bt, 0.5)
    main = kind == "main"
    assert 1.5 < np.median(r_half[main]) < 4.5          # SDSS main galaxies: 2-3 arcsec
    assert 0.3 < np.median(r_half[kind == "elg"]) < 1.0
    assert np.median(r_half[z > 0.8]) < np.median(r_half[z < 0.2])
    red = kind == "lrg"
    assert np.median(bt[red]) > 0.5 > np.median(bt[kind == "elg"])


# -- background galaxies and stars -------------------------------------------------
def test_background_galaxies():
    cfg = PopulationConfig()
    bkg = pop.draw_background(3000, rng=4)
    assert list(bkg.colnames) == list(pop.COLUMNS)
    assert set(np.unique(bkg["type"])) == {"bkg"}
    r0 = phot.band_magnitudes(np.asarray(bkg["coeffs"]), np.asarray(bkg["z"]), 0.0, ("r",))[:, 0]
    assert np.all((r0 > cfg.background_r_min - 1e-6) & (r0 < cfg.background_r_max + 1e-6))
    assert np.median(r0) > 22.5  # steep counts: most are faint
    assert 0.4 < np.median(bkg["z"]) < 0.9
    density = pop.background_number_density(cfg)
    assert 2e4 < density < 6e4  # ~10 per arcmin^2 to r = 24
    again = pop.draw_background(3000, rng=4)
    np.testing.assert_array_equal(np.asarray(again["mag_r"]), np.asarray(bkg["mag_r"]))


def test_stars():
    stars = pop.draw_stars(4000, rng=8)
    assert set(pop.COLUMNS) <= set(stars.colnames) and "teff" in stars.colnames
    assert set(np.unique(stars["type"])) == {"star"}
    assert np.all(np.asarray(stars["r_half_disk"]) == 0)
    g = np.asarray(stars["mag_g"]) - np.asarray(stars["ebv"]) * phot._flat_band_extinction("g")
    assert np.all((g >= 14) & (g <= 24))
    gr = np.asarray(stars["mag_g"] - stars["mag_r"])
    # two populations: turn-off stars (g-r ~ 0.4) and M dwarfs (g-r > 1)
    assert 0.25 < np.percentile(gr, 25) < 0.6 and np.percentile(gr, 90) > 1.0
    assert pop.star_number_density() == pytest.approx(
        2080 * (10 ** (0.15 * 3) - 10 ** (0.15 * -7)))
    again = pop.draw_stars(4000, rng=8)
    np.testing.assert_array_equal(np.asarray(again["mag_w1"]), np.asarray(stars["mag_w1"]))


# -- the colour evidence ------------------------------------------------------------
def _check(table, colour, tolerance):
    rows = table[table["colour"] == colour]
    assert len(rows) >= 4  # bins of 0.05 up to z = 0.25 hold >= 30 real galaxies
    assert np.all(rows["n_real"] >= 30)
    bad = rows[np.abs(rows["diff"]) > tolerance]
    assert len(bad) == 0, "\n" + "\n".join(
        f"{r['colour']} {r['z_lo']:.2f}-{r['z_hi']:.2f}: real {r['median_real']:.3f} "
        f"mock {r['median_mock']:.3f} diff {r['diff']:+.3f}" for r in bad)


@pytest.mark.parametrize("colour", ["g-r", "r-i", "r-w1"])
def test_colour_medians_match_heldout_sdss(colours_odd, colour):
    """Mock main-sample medians within 0.1 mag of the held-out SDSS galaxies."""
    _check(colours_odd, colour, 0.1)


# -- NUV - r, one mode at a time ------------------------------------------------------
# NUV - r is bimodal (blue cloud ~3.5, red sequence ~6) and its plain median falls in the
# sparse gap, where it follows the red fraction; so the two modes are compared separately.
# The split is the valley of the even (training) rows' distribution at z < 0.25 (4.56 with a
# 0.25-mag Gaussian kernel, checked below), which is also the middle of the conventional
# (rest-frame) green valley, roughly 4 < NUV - r < 5 (e.g. Salim 2014). Nothing here is
# chosen from the odd rows.
NUV_R_SPLIT = 4.5
MODE_MIN_COUNT = 20  # held-out galaxies a mode needs before its median is compared


@pytest.fixture(scope="module")
def nuv_r_samples():
    """Per-galaxy NUV - r of the mock and of both real halves, selected exactly as
    `colour_redshift_comparison` selects them (checked against its table below).

    Both sides carry the same cuts (Petrosian r < 17.77, 0 < Ks < 13.5, z range) and no cut
    on GALEX: the mock has no GALEX depth, so a detection cut could not be applied to both
    sides alike. A real galaxy without a GALEX detection has the NUV its template fit
    predicts, as every mock galaxy does; ``detected`` records which real values are
    measurements.
    """
    cfg = PopulationConfig(main_k_limit=13.5)
    mock = draw_population(30000, cfg, 0, components=["main"])
    z = np.asarray(mock["z"])
    mags = phot.band_magnitudes(np.asarray(mock["coeffs"]), z, 0.0, ("nuv", "r"))
    out = {"mock": (z, mags[:, 0] - mags[:, 1], np.zeros(z.size, bool))}
    for rows in ("odd", "even"):
        real = phot.sdss_reference_magnitudes(rows, ("nuv", "r"))
        zr, k = np.asarray(real["z"]), np.asarray(real["k_ext"])
        keep = ((np.asarray(real["r_petro"]) < cfg.main_r_limit) & (zr >= cfg.main_z_min)
                & (zr <= cfg.main_z_max) & (k > 0) & (k < cfg.main_k_limit))
        colour = np.asarray(real["mag_nuv"]) - np.asarray(real["mag_r"])
        detected = np.asarray(real["anchor_nuv"]) != "fit"
        out[rows] = (zr[keep], colour[keep], detected[keep])
    return out


def _nuv_r_modes(samples, split=NUV_R_SPLIT, min_count=30):
    """Per z bin (0.05 wide, >= min_count held-out galaxies, as in the table) and per sample:
    counts, median NUV - r of each mode, red fraction and its binomial error."""
    edges = np.round(np.arange(0.0, 0.5001, 0.05), 6)
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        entry = {"z": (lo, hi)}
        for name, (z, colour, detected) in samples.items():
            inside = (z >= lo) & (z < hi) & np.isfinite(colour)
            c, det = colour[inside], detected[inside]
            red = c >= split
            n = c.size
            f = red.mean() if n else np.nan
            entry[name] = {
                "n": n, "n_blue": int((~red).sum()), "n_red": int(red.sum()),
                "blue": float(np.median(c[~red])) if (~red).any() else np.nan,
                "red": float(np.median(c[red])) if red.any() else np.nan,
                "f_red": f, "sigma_f": np.sqrt(f * (1 - f) / n) if n else np.nan,
                "det_blue": det[~red].mean() if (~red).any() else np.nan,
                "det_red": det[red].mean() if red.any() else np.nan,
            }
        if entry["odd"]["n"] >= min_count:
            bins.append(entry)
    return bins


def _mode_line(b):
    m, o, e = b["mock"], b["odd"], b["even"]
    return (f"z {b['z'][0]:.2f}-{b['z'][1]:.2f}: n odd {o['n_blue']}/{o['n_red']} "
            f"(blue/red), even {e['n_blue']}/{e['n_red']}; blue mock {m['blue']:.3f} odd "
            f"{o['blue']:.3f} even {e['blue']:.3f}; red mock {m['red']:.3f} odd {o['red']:.3f} "
            f"even {e['red']:.3f}; f_red mock {m['f_red']:.3f} odd {o['f_red']:.3f}"
            f"+-{o['sigma_f']:.3f} even {e['f_red']:.3f}+-{e['sigma_f']:.3f}")


def test_nuv_r_samples_are_the_comparison_tables_selection(nuv_r_samples, colours_odd,
                                                           colours_even):
    """The per-galaxy samples reproduce the comparison table (same galaxies, same colours),
    and the mode counts are those the mode tests rely on."""
    bins = _nuv_r_modes(nuv_r_samples)
    for name, table in (("odd", colours_odd), ("even", colours_even)):
        rows = table[table["colour"] == "nuv-r"]
        assert len(rows) == len(bins) == 5
        for b, row in zip(bins, rows):
            assert b["z"][0] == pytest.approx(row["z_lo"])
            assert b[name]["n"] == row["n_real"] and b["mock"]["n"] == row["n_mock"]
        z, c, _ = nuv_r_samples[name]
        for row in rows:
            inside = (z >= row["z_lo"]) & (z < row["z_hi"]) & np.isfinite(c)
            assert np.median(c[inside]) == pytest.approx(row["median_real"], abs=1e-9)
    zm, cm, _ = nuv_r_samples["mock"]
    for row in colours_odd[colours_odd["colour"] == "nuv-r"]:
        inside = (zm >= row["z_lo"]) & (zm < row["z_hi"]) & np.isfinite(cm)
        assert np.median(cm[inside]) == pytest.approx(row["median_mock"], abs=1e-9)
    n_blue = [b["odd"]["n_blue"] for b in bins]
    n_red = [b["odd"]["n_red"] for b in bins]
    assert n_blue == [259, 409, 98, 18, 3] and n_red == [234, 607, 343, 113, 37]
    # in both modes most real NUV values are template predictions, as all mock ones are
    # (GALEX-detected: blue 10, 13, 23, 0, 0 %; red 12, 6, 3, 5, 5 % of the odd rows)
    for b in bins:
        assert b["odd"]["det_blue"] <= 0.25 and b["odd"]["det_red"] <= 0.15


def test_nuv_r_split_is_the_valley_of_the_training_rows(nuv_r_samples):
    """NUV_R_SPLIT is where the even rows' NUV - r distribution (z < 0.25) is lowest."""
    z, c, _ = nuv_r_samples["even"]
    c = c[(z < 0.25) & np.isfinite(c)]
    grid = np.arange(3.5, 6.0001, 0.01)
    density = np.exp(-0.5 * ((grid[:, None] - c[None, :]) / 0.25) ** 2).sum(axis=1)
    assert abs(grid[np.argmin(density)] - NUV_R_SPLIT) <= 0.15


@pytest.mark.xfail(strict=True, reason=(
    "Mode medians (split NUV-r = 4.5) miss 0.1 mag in 4 of 8 cells with >= 20 held-out "
    "galaxies: red 0.00-0.05 mock 5.563 vs odd 5.734 (-0.171; even 5.671), blue 0.10-0.15 "
    "3.623 vs 3.754 (-0.131; even 3.595), red 0.15-0.20 6.477 vs 6.257 (+0.220; even 6.450), "
    "red 0.20-0.25 6.588 vs 6.430 (+0.158; even 6.517). The held-out medians' own bootstrap "
    "errors there are 0.08, 0.08, 0.16, 0.19 mag, and the even half differs from the odd "
    "half by -0.06, -0.16, +0.19, +0.09."))
def test_nuv_r_mode_medians_match_heldout_sdss_within_0p1(nuv_r_samples):
    """Blue-cloud and red-sequence medians each within 0.1 mag of the held-out rows.

    Per z bin the galaxies are split at NUV - r = NUV_R_SPLIT; a mode is compared where the
    odd rows hold at least MODE_MIN_COUNT galaxies of it (8 cells: both modes at z < 0.15,
    the red mode to z = 0.25).
    """
    bad = []
    for b in _nuv_r_modes(nuv_r_samples):
        for mode in ("blue", "red"):
            if b["odd"][f"n_{mode}"] >= MODE_MIN_COUNT:
                if abs(b["mock"][mode] - b["odd"][mode]) > 0.1:
                    bad.append(f"{mode} " + _mode_line(b))
    assert not bad, "\n" + "\n".join(bad)


@pytest.mark.xfail(strict=True, reason=(
    "Red fraction (NUV-r >= 4.5) at 0.05 < z < 0.10: mock 0.675, held-out odd rows "
    "0.597 +- 0.015, even rows 0.659 +- 0.015; mock - odd = +0.077 = 3.6 sigma (2 sigma = "
    "0.042). The real halves themselves differ by 2.9 sigma in that bin. The other four bins "
    "agree within 0.6 sigma."))
def test_nuv_r_red_fraction_matches_heldout_sdss(nuv_r_samples):
    """Red fraction per z bin within 2 sigma of the held-out rows.

    sigma**2 = f_odd (1 - f_odd) / n_odd + f_mock (1 - f_mock) / n_even: the binomial error
    of the held-out fraction plus that of the mock's. The mock is a V_max resampling of the
    even rows, so its fraction carries the sampling noise of the even galaxies behind it
    (about n_even per bin); the 30,000 draws themselves add almost none, so using the mock's
    own count would demand that the mock beat the sampling noise of its own training data.
    No absolute floor (such as 0.1) is added: in the three bins with 400-1000 galaxies a
    floor of 0.1 would accept differences of 3-5 sigma, i.e. the very shifts of the red
    fraction that move the plain median, while in the small bins 2 sigma is already 0.09-0.13.
    """
    bad = []
    for b in _nuv_r_modes(nuv_r_samples):
        m, o, e = b["mock"], b["odd"], b["even"]
        sigma = np.sqrt(o["f_red"] * (1 - o["f_red"]) / o["n"]
                        + m["f_red"] * (1 - m["f_red"]) / e["n"])
        if abs(m["f_red"] - o["f_red"]) > 2 * sigma:
            bad.append(f"{(m['f_red'] - o['f_red']) / sigma:+.1f} sigma; " + _mode_line(b))
    assert not bad, "\n" + "\n".join(bad)


def test_nuv_r_as_close_to_heldout_as_the_training_half(colours_odd, colours_even):
    """NUV-r: the mock is as close to the held-out rows as the real even rows are.

    In every bin with at least 100 real galaxies the mock median is within
    0.1 mag of the even (training) half, and no further from the odd
    (held-out) half than the even half itself is, plus 0.1 mag.
    """
    odd = colours_odd[colours_odd["colour"] == "nuv-r"]
    even = colours_even[colours_even["colour"] == "nuv-r"]
    assert len(odd) >= 4 and np.array_equal(odd["z_lo"], even["z_lo"])
    big = (odd["n_real"] >= 100) & (even["n_real"] >= 100)
    assert big.sum() >= 3
    halves = np.asarray(even["median_real"] - odd["median_real"])
    assert np.all(np.abs(np.asarray(even["diff"])[big]) < 0.1)
    assert np.all(np.abs(np.asarray(odd["diff"])[big]) <= np.abs(halves[big]) + 0.1)
