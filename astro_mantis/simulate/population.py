"""The mock galaxy population: redshifts, SEDs, magnitudes, sizes and shapes.

`draw_population` draws a spectroscopic-survey-like mixture of galaxies,
`draw_background` faint neighbour galaxies and `draw_stars` field stars, all
as `astropy.table.Table` with the same columns, ready to be placed on the sky
and rendered. Every parameter lives in `PopulationConfig`.

Anchoring on real galaxies
--------------------------
The spectral energy distributions are not invented: every mock galaxy is a
real SDSS galaxy of the **even rows** of kcorrect's ``gst_tests_small.fits``
(see `astro_mantis.simulate.photometry`), represented by its non-negative
template fit (`~astro_mantis.simulate.photometry.fit_sdss_coefficients`),
moved to a new redshift and luminosity and perturbed slightly (each
coefficient multiplied by a log-normal factor of width ``coeff_scatter``, the
rest-frame r luminosity kept). The odd rows are never used here; they are
the held-out evaluation set of the colour tests and of the documentation.

A galaxy is a normalised template mix :math:`s` (rest-frame SDSS r absolute
magnitude 0 at 10 pc), an absolute magnitude :math:`M_r` (rest frame,
band shift 0) and a redshift; its coefficients are
:math:`c = s\\,10^{-0.4(M_r + DM(z))}` and its observed magnitudes follow from
`~astro_mantis.simulate.photometry.band_magnitudes` (redshifting, IGM, Milky
Way extinction). Galaxies are "red" when their rest-frame SDSS
:math:`(u - r)_0` exceeds ``red_ur_split`` (default 2.1, the valley of the
anchor sample's colour distribution) and "blue" otherwise.

The three components
--------------------
``main`` — SDSS main-sample-like, r\\ :sub:`Petro` < 17.77, z ≲ 0.3.
    A non-parametric luminosity function: each anchor galaxy *i* (even row,
    extinction-corrected Petrosian r < ``main_r_limit``, 2MASS K\\ :sub:`s`
    < ``anchor_k_limit``, ``main_z_min`` ≤ z ≤ ``main_z_max``) can be seen
    wherever its Petrosian magnitude, carried to redshift z through its own
    template fit (k-correction), distance modulus and luminosity evolution
    :math:`M(z) = M(z_i) - Q (z - z_i)` (``main_evolution`` Q = 1.6 mag per
    unit z, Blanton et al. 2003), stays below the limit; that region has
    comoving volume :math:`V_{\\max,i}` (Schmidt 1968). The anchor sample is
    SDSS ∩ 2MASS XSC, so it is also limited in K; with ``main_k_limit`` set
    (e.g. 13.5) the mock reproduces that double selection exactly (galaxies
    drawn uniformly, each placed uniformly in comoving volume inside its
    :math:`V_{\\max}` for both limits), which is what the colour tests
    compare with the held-out rows. With ``main_k_limit=None`` (default)
    the mock is a pure r-limited sample: galaxy *i* is drawn with weight
    :math:`V_{\\max,i}(r)/V_{\\max,i}(r, K)` (capped at ``main_max_weight``)
    and placed in :math:`V_{\\max,i}(r)`. The resulting n(z) peaks near
    z ≈ 0.09 with a tail to 0.3 (median 0.107; see the docs figures). The
    anchor's K limit leaves dwarfs fainter than M_r ≈ −19 under-represented.
``lrg`` — BOSS/eBOSS-LRG-like luminous red galaxies to z ≈ 0.8.
    z from a normal distribution (``lrg_z_mean`` 0.5, ``lrg_z_sigma`` 0.15)
    truncated to [``lrg_z_min``, ``lrg_z_max``] = [0.15, 0.85]; SEDs of
    red anchor galaxies with :math:`M_r` (evolved to z = 0.1) brighter than
    ``lrg_pool_mr_max`` (−21); :math:`M_r` drawn from a normal distribution
    (mean ``lrg_mr_mean`` −22.2 at z = 0.1, passively brightening by
    ``lrg_evolution`` = 1.0 mag per unit z, σ = 0.35) truncated so that the
    galaxy is brighter than ``lrg_mag_limit`` = 21.0 in ``lrg_limit_band``
    (PS1 i), so the n(z) is exactly the one configured.
``elg`` — DESI-ELG-like blue star-forming galaxies to z ≈ 1.6.
    z normal (``elg_z_mean`` 0.95, ``elg_z_sigma`` 0.3) truncated to
    [0.3, 1.6]; SEDs of the anchor galaxies with the strongest ultraviolet
    (rest-frame GALEX NUV − SDSS r < ``elg_pool_nuvr_max`` = 2.5, which
    gives DESI-like observed g − r ≈ 0.3 at z = 1); :math:`M_r`
    normal (−20.3 at z = 0.1, brightening by 1.5 mag per unit z, σ = 0.7)
    truncated at PS1 g < 23.4 (DESI's g limit).

Distributions with the defaults (50,000 draws; 5th, 50th and 95th
percentiles):

======  ==================  ===================  ==================  =====================
type    z                   PS1 r (AB)           PS1 g − r           M_r
======  ==================  ===================  ==================  =====================
main    0.038, 0.107, 0.21  15.5, 17.2, 17.8     0.46, 0.79, 1.11    −23.1, −21.7, −19.9
lrg     0.26, 0.50, 0.74    18.7, 20.8, 22.2     1.23, 1.54, 1.68    −23.3, −22.6, −22.0
elg     0.50, 0.95, 1.41    21.4, 22.7, 23.3     0.01, 0.42, 0.88    −23.5, −22.4, −20.9
======  ==================  ===================  ==================  =====================

The documentation page ``simulate_population`` shows n(z), magnitude and
colour–redshift distributions against the held-out SDSS galaxies.

Sizes and shapes
----------------
Half-light radii (kpc) follow Shen et al. (2003, MNRAS 343, 978, Table 1)
log-normal size–luminosity relations in the r band — early-type
:math:`\\log R = -0.4 a M + b` (a = 0.60, b = −4.63) for red galaxies,
late-type :math:`\\log R = -0.4\\alpha M + (\\beta-\\alpha)
\\log(1 + 10^{-0.4(M - M_0)}) + \\gamma` (α = 0.21, β = 0.53, γ = −1.31,
M\\ :sub:`0` = −20.52) for blue ones, scatter
:math:`\\sigma_{\\ln R} = \\sigma_2 + (\\sigma_1-\\sigma_2)/(1 + 10^{-0.8(M-M_0)})`
(σ\\ :sub:`1` = 0.48, σ\\ :sub:`2` = 0.25) — evaluated at the luminosity
evolved to z = 0.1 and scaled by :math:`((1+z)/1.1)^{\\beta_z}` with
β\\ :sub:`z` = −1.48 (red) and −0.75 (blue) (van der Wel et al. 2014, at
fixed mass), then converted to arcsec with the Planck18 angular-diameter
distance. Each galaxy is an exponential disk plus a de Vaucouleurs bulge
with bulge-to-total flux ``bulge_frac`` drawn from Beta distributions
(``bulge_frac_red`` (4, 2), mean 0.67; ``bulge_frac_blue`` (1.5, 6), mean
0.2), bulge radius ``bulge_disk_ratio`` (0.5) times the disk radius, both
scaled so that the composite profile has the drawn half-light radius. Axis
ratios are random projections of oblate spheroids of intrinsic flattening
``disk_thickness`` + (``bulge_flattening`` − ``disk_thickness``) × B/T
(0.2 for a pure disk, 0.7 for a pure bulge), clipped to [0.1, 1]; position
angles are uniform; the light centre is offset from the catalogue position
by a normal ``offset_sigma`` = 0.15 arcsec per axis. Radii are circularised
(area-preserving) half-light radii of the unsheared profiles.

Dust
----
True :math:`E(B-V)` of the sky region is log-normal (median ``ebv_median``
0.03, ``ebv_log_sigma`` 0.6 in ln, clipped at ``ebv_max`` 0.5), typical of
high Galactic latitude; magnitudes include it (F99). The two dust inputs of
the model are noisy estimates of it: ``ebv_csfd`` (CSFD-like, Chiang 2023)
and ``ebv_planck`` (Planck-GNILC-like), each the truth times a log-normal
factor of width 0.08 (so the two differ by ≈ 11 % rms) plus a normal
additive error of 0.003 mag, clipped at zero.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from . import photometry as phot

__all__ = [
    "PopulationConfig",
    "COLUMNS",
    "draw_population",
    "sdss_galaxies",
    "draw_background",
    "draw_stars",
    "background_number_density",
    "star_number_density",
    "composite_half_light_radius",
    "colour_redshift_comparison",
    "colour_mode_comparison",
    "MODE_STATISTICS",
]

#: Columns of every table this module returns, in order (``mag_<band>`` for
#: each of ``BANDS``).
COLUMNS = ("z", "type", "coeffs", "abs_mag_r", "ebv", "ebv_csfd", "ebv_planck",
           *(f"mag_{b}" for b in phot.BANDS),
           "r_half_disk", "r_half_bulge", "bulge_frac", "q", "pa", "dx", "dy")

_LIMIT_BANDS = set(phot.BANDS) | set(phot.SDSS_BANDS)
_R_BAND = "sdss_r"  # rest-frame band of abs_mag_r and of the size relations
_PETRO_BAND = "sdss_r0"  # band of the main-sample selection (the fit's r)
_K_BAND = "twomass_Ks"
_U_BAND = "sdss_u"


def _rng_of(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _f(lo, hi, default, doc=""):
    """A float field with an allowed closed range."""
    return field(default=default, metadata={"range": (lo, hi), "doc": doc})


@dataclass(frozen=True)
class PopulationConfig:
    """Every parameter of the mock galaxy and star populations.

    All values are plain numbers (magnitudes AB unless said, redshifts,
    arcsec). Invalid values raise `ValueError` naming the field and its
    allowed range. The defaults are fixed (no randomness): the same
    configuration and seed always give the same population. The module
    docstring of `astro_mantis.simulate.population` describes the model each
    parameter enters.

    Parameters
    ----------
    frac_main, frac_lrg, frac_elg : float
        Mixture fractions of the three components of `draw_population`
        (each in [0, 1], summing to 1). Defaults 0.5, 0.25, 0.25.
    main_r_limit : float
        Extinction-corrected SDSS Petrosian r limit of the main sample (17.77).
    main_k_limit : float or None
        Optional 2MASS Ks (Vega) limit of the main sample; None (default) for
        a pure r-limited sample, a value ≤ ``anchor_k_limit`` to mimic the
        SDSS ∩ 2MASS anchor catalogue.
    anchor_k_limit : float
        2MASS Ks (Vega) completeness limit assumed for the anchor catalogue
        (13.5); anchor galaxies fainter in K are not used.
    main_z_min, main_z_max : float
        Redshift range of the main sample (0.01, 0.4).
    main_evolution : float
        Luminosity evolution Q of the main sample, mag per unit z (1.6).
    main_max_weight : float
        Cap on the r-only/(r, K) volume ratio weights (30).
    red_ur_split : float
        Rest-frame SDSS (u − r)_0 dividing red from blue galaxies (2.1).
    coeff_scatter : float
        Log-normal width of the per-coefficient SED perturbation (0.05).
    lrg_z_mean, lrg_z_sigma, lrg_z_min, lrg_z_max : float
        Truncated-normal n(z) of the LRGs (0.5, 0.15, 0.15, 0.85).
    lrg_mr_mean, lrg_mr_sigma, lrg_evolution : float
        LRG rest-frame r absolute magnitude at z = 0.1, its scatter and its
        brightening per unit z (−22.2, 0.35, 1.0).
    lrg_limit_band, lrg_mag_limit : str, float
        LRG selection: brighter than ``lrg_mag_limit`` (21.0) in this band
        ("i", PS1), before Milky Way extinction.
    lrg_pool_mr_max : float
        Anchor red galaxies lent to LRGs must be brighter than this M_r (−21).
    elg_z_mean, elg_z_sigma, elg_z_min, elg_z_max : float
        Truncated-normal n(z) of the ELGs (0.95, 0.3, 0.3, 1.6).
    elg_mr_mean, elg_mr_sigma, elg_evolution : float
        ELG M_r at z = 0.1, scatter, brightening per unit z (−20.3, 0.7, 1.5).
    elg_limit_band, elg_mag_limit : str, float
        ELG selection band and limit ("g", 23.4).
    elg_pool_nuvr_max : float
        Anchor galaxies lent to ELGs have rest-frame NUV − r below this (2.5).
    size_late : tuple of 4 float
        Shen et al. (2003) late-type (α, β, γ, M0) = (0.21, 0.53, −1.31, −20.52).
    size_early : tuple of 2 float
        Shen et al. (2003) early-type (a, b) = (0.60, −4.63).
    size_sigma : tuple of 2 float
        (σ1, σ2) of the log-normal scatter (0.48, 0.25).
    size_evolution_red, size_evolution_blue : float
        Exponents of (1 + z) of the size evolution (−1.48, −0.75).
    bulge_frac_red, bulge_frac_blue : tuple of 2 float
        Beta-distribution parameters of B/T ((4, 2), (1.5, 6)).
    bulge_disk_ratio : float
        Bulge over disk half-light radius (0.5).
    disk_thickness, bulge_flattening : float
        Intrinsic axis ratios of a pure disk and a pure bulge (0.2, 0.7).
    min_axis_ratio : float
        Lower clip of the projected axis ratio q (0.1).
    offset_sigma : float
        Centring offset per axis, arcsec (0.15).
    ebv_median, ebv_log_sigma, ebv_max : float
        Log-normal distribution of the true E(B − V) (0.03, 0.6, 0.5).
    dust_scatter : float
        Log-normal width of each dust estimate around the truth (0.08).
    dust_additive : float
        Additive normal error of each dust estimate, mag (0.003).
    background_r_min, background_r_max : float
        PS1 r range of background galaxies (18, 24).
    background_density_r21 : float
        Cumulative background galaxy counts N(r < 21) per deg² (3000).
    background_count_slope : float
        d log10 N / dm of the background counts (0.36).
    background_red_fraction : tuple of 2 float
        Red fraction at ``background_r_min`` and ``background_r_max``
        (0.35, 0.15).
    star_g_min, star_g_max : float
        PS1 g range of stars (14, 24).
    star_density_g21 : float
        Cumulative star counts N(g < 21) per deg² (2080; Chen et al. 2001,
        5.8e5 stars over 279 deg² at Galactic latitudes 49°–64°).
    star_count_slope : float
        d log10 N / dm of the star counts (0.15).
    star_red_fraction : float
        Fraction of M-dwarf-like stars (0.4).
    star_teff_blue, star_teff_red : tuple of 2 float
        Normal (mean, sigma) Teff of turn-off and M-dwarf-like stars, K
        ((5800, 400), (3400, 250)).
    """

    frac_main: float = _f(0.0, 1.0, 0.5)
    frac_lrg: float = _f(0.0, 1.0, 0.25)
    frac_elg: float = _f(0.0, 1.0, 0.25)

    main_r_limit: float = _f(14.0, 20.0, 17.77)
    main_k_limit: float | None = _f(8.0, 16.0, None)
    anchor_k_limit: float = _f(11.0, 15.0, 13.5)
    main_z_min: float = _f(0.005, 0.3, 0.01)
    main_z_max: float = _f(0.05, 0.6, 0.4)
    main_evolution: float = _f(-3.0, 5.0, 1.6)
    main_max_weight: float = _f(1.0, 1000.0, 30.0)

    red_ur_split: float = _f(1.0, 3.5, 2.1)
    coeff_scatter: float = _f(0.0, 0.5, 0.05)

    lrg_z_mean: float = _f(0.0, phot.Z_GRID_MAX, 0.5)
    lrg_z_sigma: float = _f(0.001, 2.0, 0.15)
    lrg_z_min: float = _f(0.005, phot.Z_GRID_MAX, 0.15)
    lrg_z_max: float = _f(0.005, phot.Z_GRID_MAX, 0.85)
    lrg_mr_mean: float = _f(-26.0, -16.0, -22.2)
    lrg_mr_sigma: float = _f(0.01, 2.0, 0.35)
    lrg_evolution: float = _f(-3.0, 5.0, 1.0)
    lrg_limit_band: str = field(default="i", metadata={"bands": True})
    lrg_mag_limit: float = _f(14.0, 26.0, 21.0)
    lrg_pool_mr_max: float = _f(-25.0, -15.0, -21.0)

    elg_z_mean: float = _f(0.0, phot.Z_GRID_MAX, 0.95)
    elg_z_sigma: float = _f(0.001, 2.0, 0.3)
    elg_z_min: float = _f(0.005, phot.Z_GRID_MAX, 0.3)
    elg_z_max: float = _f(0.005, 1.6, 1.6)
    elg_mr_mean: float = _f(-26.0, -14.0, -20.3)
    elg_mr_sigma: float = _f(0.01, 2.0, 0.7)
    elg_evolution: float = _f(-3.0, 5.0, 1.5)
    elg_limit_band: str = field(default="g", metadata={"bands": True})
    elg_mag_limit: float = _f(14.0, 27.0, 23.4)
    elg_pool_nuvr_max: float = _f(0.5, 6.0, 2.5)

    size_late: tuple = field(default=(0.21, 0.53, -1.31, -20.52),
                             metadata={"range": (-30.0, 30.0), "length": 4})
    size_early: tuple = field(default=(0.60, -4.63),
                              metadata={"range": (-30.0, 30.0), "length": 2})
    size_sigma: tuple = field(default=(0.48, 0.25), metadata={"range": (0.0, 2.0), "length": 2})
    size_evolution_red: float = _f(-4.0, 2.0, -1.48)
    size_evolution_blue: float = _f(-4.0, 2.0, -0.75)
    bulge_frac_red: tuple = field(default=(4.0, 2.0),
                                  metadata={"range": (0.01, 100.0), "length": 2})
    bulge_frac_blue: tuple = field(default=(1.5, 6.0),
                                   metadata={"range": (0.01, 100.0), "length": 2})
    bulge_disk_ratio: float = _f(0.05, 5.0, 0.5)
    disk_thickness: float = _f(0.01, 1.0, 0.2)
    bulge_flattening: float = _f(0.01, 1.0, 0.7)
    min_axis_ratio: float = _f(0.05, 1.0, 0.1)
    offset_sigma: float = _f(0.0, 5.0, 0.15)

    ebv_median: float = _f(1e-4, 1.0, 0.03)
    ebv_log_sigma: float = _f(0.0, 3.0, 0.6)
    ebv_max: float = _f(0.001, 3.0, 0.5)
    dust_scatter: float = _f(0.0, 1.0, 0.08)
    dust_additive: float = _f(0.0, 0.1, 0.003)

    background_r_min: float = _f(10.0, 30.0, 18.0)
    background_r_max: float = _f(10.0, 30.0, 24.0)
    background_density_r21: float = _f(0.0, 1e6, 3000.0)
    background_count_slope: float = _f(0.0, 1.0, 0.36)
    background_red_fraction: tuple = field(default=(0.35, 0.15),
                                           metadata={"range": (0.0, 1.0), "length": 2})

    star_g_min: float = _f(5.0, 30.0, 14.0)
    star_g_max: float = _f(5.0, 30.0, 24.0)
    star_density_g21: float = _f(0.0, 1e7, 2080.0)
    star_count_slope: float = _f(0.0, 1.0, 0.15)
    star_red_fraction: float = _f(0.0, 1.0, 0.4)
    star_teff_blue: tuple = field(default=(5800.0, 400.0),
                                  metadata={"range": (1.0, 50000.0), "length": 2})
    star_teff_red: tuple = field(default=(3400.0, 250.0),
                                 metadata={"range": (1.0, 50000.0), "length": 2})

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if meta.get("bands"):
                if value not in _LIMIT_BANDS:
                    raise ValueError(f"PopulationConfig.{f.name} must be one of "
                                     f"{sorted(_LIMIT_BANDS)}, got {value!r}")
                continue
            lo, hi = meta["range"]
            if "length" in meta:
                try:
                    items = tuple(float(v) for v in value)
                except (TypeError, ValueError):
                    items = ()
                if len(items) != meta["length"] or not all(
                        math.isfinite(v) and lo <= v <= hi for v in items):
                    raise ValueError(f"PopulationConfig.{f.name} must be {meta['length']} "
                                     f"numbers in [{lo}, {hi}], got {value!r}")
                object.__setattr__(self, f.name, items)
                continue
            if value is None and f.default is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if isinstance(value, bool) or not (math.isfinite(number) and lo <= number <= hi):
                raise ValueError(f"PopulationConfig.{f.name} must be a number in "
                                 f"[{lo}, {hi}], got {value!r}")
            object.__setattr__(self, f.name, number)
        total = self.frac_main + self.frac_lrg + self.frac_elg
        if abs(total - 1.0) > 1e-6:
            raise ValueError("PopulationConfig.frac_main + frac_lrg + frac_elg must equal 1, "
                             f"got {total!r}")
        for lo_name, hi_name in (("main_z_min", "main_z_max"), ("lrg_z_min", "lrg_z_max"),
                                 ("elg_z_min", "elg_z_max"),
                                 ("background_r_min", "background_r_max"),
                                 ("star_g_min", "star_g_max")):
            if getattr(self, lo_name) >= getattr(self, hi_name):
                raise ValueError(f"PopulationConfig.{lo_name} must be below {hi_name}, got "
                                 f"{getattr(self, lo_name)!r} >= {getattr(self, hi_name)!r}")
        if self.main_k_limit is not None and self.main_k_limit > self.anchor_k_limit:
            raise ValueError("PopulationConfig.main_k_limit must not exceed anchor_k_limit "
                             f"({self.anchor_k_limit!r}), got {self.main_k_limit!r}")


# ---------------------------------------------------------------------------
# Cosmology helpers (interpolated, fast for large arrays)
# ---------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _cosmo_tables():
    from astropy.cosmology import Planck18

    zg = np.concatenate([[0.0], np.geomspace(1e-4, 2.0, 2000)])
    dm = np.concatenate([[-np.inf], Planck18.distmod(zg[1:]).value])
    da_kpc = Planck18.angular_diameter_distance(zg).to_value("kpc")
    vol = Planck18.comoving_volume(zg).to_value("Mpc3")
    return zg, dm, da_kpc, vol


def _distmod(z):
    zg, dm, _, _ = _cosmo_tables()
    return np.interp(z, zg[1:], dm[1:])


def _kpc_per_arcsec(z):
    zg, _, da, _ = _cosmo_tables()
    return np.interp(z, zg, da) / 206264.80624709636


def _comoving_volume(z):
    zg, _, _, vol = _cosmo_tables()
    return np.interp(z, zg, vol)


# ---------------------------------------------------------------------------
# The anchor: even-row SDSS galaxies as (shape, M_r, z)
# ---------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _anchor():
    fit = phot.fit_sdss_coefficients("even")
    cat = phot.load_sdss_catalog("even")
    if not np.array_equal(np.asarray(fit["row"]), np.asarray(cat["row"])):
        raise RuntimeError("fit and catalogue rows disagree")  # pragma: no cover
    coeffs = np.asarray(fit["coeffs"], dtype=float)
    z = np.asarray(fit["z"], dtype=float)
    good = coeffs.sum(axis=1) > 0
    mags = phot.absolute_magnitudes(coeffs[good], z[good], ("nuv", _U_BAND, _R_BAND))
    m_nuv, m_u, m_r = mags[:, 0], mags[:, 1], mags[:, 2]
    dm = _distmod(z[good])
    shape = coeffs[good] * 10 ** (0.4 * (dm + m_r))[:, None]
    return {
        "row": np.asarray(fit["row"])[good],
        "z": z[good],
        "shape": shape,
        "m_r": m_r,
        "ur": m_u - m_r,
        "nuvr": m_nuv - m_r,
        "r_petro": np.asarray(cat["r_petro"], dtype=float)[good],
        "k_ext": np.asarray(cat["k_ext"], dtype=float)[good],
    }


def _shape_mags(shape, z, bands, ebv=0.0):
    """k-correction-like terms: magnitude of a unit-M shape at z minus DM."""
    return phot.band_magnitudes(shape, z, ebv, bands)


@lru_cache(maxsize=8)
def _main_pool(r_limit, k_limit, anchor_k, z_min, z_max, q_evol):
    """Volume tables of the main-sample anchor galaxies (see module notes)."""
    a = _anchor()
    sel = ((a["r_petro"] < r_limit) & (a["k_ext"] > 0) & (a["k_ext"] < anchor_k)
           & (a["z"] >= z_min) & (a["z"] <= z_max))
    idx = np.flatnonzero(sel)
    shape, zi, mr = a["shape"][idx], a["z"][idx], a["m_r"][idx]
    edges = np.arange(z_min, z_max + 1e-9, 0.002)
    if edges[-1] < z_max:
        edges = np.append(edges, z_max)
    mids = 0.5 * (edges[1:] + edges[:-1])
    dvol = np.diff(_comoving_volume(edges))
    # magnitudes of each anchor shape at every grid redshift (n_gal, n_z)
    nz = mids.size
    kr = np.empty((idx.size, nz))
    kk = np.empty((idx.size, nz))
    amat = phot.template_band_maggies(mids, (_PETRO_BAND, _K_BAND))  # (nz, 2, 5)
    with np.errstate(divide="ignore"):
        kr[:] = -2.5 * np.log10(shape @ amat[:, 0, :].T)
        kk[:] = -2.5 * np.log10(shape @ amat[:, 1, :].T)
    a_own = phot.template_band_maggies(zi, (_PETRO_BAND, _K_BAND))
    kr_own = -2.5 * np.log10(np.einsum("nk,nk->n", shape, a_own[:, 0, :]))
    kk_own = -2.5 * np.log10(np.einsum("nk,nk->n", shape, a_own[:, 1, :]))
    dmz = _distmod(mids)[None, :]
    dm_own = _distmod(zi)[:, None]
    evol = -q_evol * (mids[None, :] - zi[:, None])
    # apparent magnitude changes relative to the galaxy's own redshift
    d_r = (kr + dmz + evol) - (kr_own[:, None] + dm_own)
    d_k = (kk + dmz + evol) - (kk_own[:, None] + dm_own)
    r_at = a["r_petro"][idx][:, None] + d_r
    k_at = a["k_ext"][idx][:, None] + d_k
    sel_r = r_at < r_limit
    sel_rk = sel_r & (k_at < anchor_k)
    if k_limit is None:
        place = sel_r
        vol_r = sel_r @ dvol
        # at least the cell holding the galaxy's own redshift is in its (r, K) volume
        own = np.clip(np.searchsorted(edges, zi) - 1, 0, nz - 1)
        vol_rk = np.maximum(sel_rk @ dvol, dvol[own])
        weight = vol_r / vol_rk
    else:
        place = sel_r & (k_at < k_limit)
        weight = np.ones(idx.size)
    cum = np.cumsum(place * dvol[None, :], axis=1)
    ok = cum[:, -1] > 0
    return {
        "index": idx[ok], "edges": edges, "cum": cum[ok].astype(np.float64),
        "weight": weight[ok], "zi": zi[ok], "mr": mr[ok],
    }


# ---------------------------------------------------------------------------
# Sampling helpers
# ---------------------------------------------------------------------------
def _truncnorm(rng, mean, sigma, lo, hi, size):
    """Normal draws truncated to [lo, hi] (vectorised inverse CDF)."""
    from scipy.special import ndtr, ndtri

    mean = np.broadcast_to(np.asarray(mean, float), (size,))
    sigma = np.broadcast_to(np.asarray(sigma, float), (size,))
    a = ndtr((np.asarray(lo, float) - mean) / sigma)
    b = ndtr((np.asarray(hi, float) - mean) / sigma)
    u = rng.uniform(size=size)
    p = a + u * (b - a)
    p = np.clip(p, 1e-15, 1 - 1e-15)
    out = mean + sigma * ndtri(p)
    # where the window is beyond the numerical tail, fall back to its edge
    out = np.where(b - a > 1e-12, out, np.clip(mean, lo, hi))
    return np.clip(out, lo, hi)


def _powerlaw_mags(rng, slope, m_min, m_max, size):
    """Magnitudes with dN/dm proportional to 10**(slope m) in [m_min, m_max]."""
    if slope == 0:
        return rng.uniform(m_min, m_max, size)
    lo, hi = 10 ** (slope * m_min), 10 ** (slope * m_max)
    return np.log10(lo + rng.uniform(size=size) * (hi - lo)) / slope


def _perturb(shape, rng, scatter):
    """Multiply each coefficient by a log-normal factor, keep rest-frame r."""
    if scatter <= 0:
        return shape.copy()
    out = shape * np.exp(rng.normal(0.0, scatter, shape.shape))
    norm = phot.band_maggies(out, 0.0, 0.0, (_R_BAND,))[:, 0]
    return out / norm[:, None]


def _dust(cfg, rng, n, ebv=None):
    if ebv is None:
        ebv = cfg.ebv_median * np.exp(rng.normal(0.0, cfg.ebv_log_sigma, n))
        ebv = np.minimum(ebv, cfg.ebv_max)
    else:
        ebv = np.broadcast_to(np.asarray(ebv, dtype=float), (n,)).copy()
        if np.any(~np.isfinite(ebv)) or np.any(ebv < 0):
            raise ValueError("ebv must be finite and >= 0")
    est = []
    for _ in range(2):
        e = ebv * np.exp(rng.normal(0.0, cfg.dust_scatter, n)) + rng.normal(
            0.0, cfg.dust_additive, n)
        est.append(np.clip(e, 0.0, None))
    return ebv, est[0], est[1]


def composite_half_light_radius(bulge_frac, ratio):
    """Half-light radius of a de Vaucouleurs bulge + exponential disk.

    Parameters
    ----------
    bulge_frac : array_like
        Bulge-to-total flux ratio in [0, 1].
    ratio : array_like
        Bulge half-light radius over disk half-light radius (> 0).

    Returns
    -------
    `numpy.ndarray`
        Half-light radius of the sum in units of the disk half-light radius
        (untruncated, circular profiles; solved by bisection on the Sérsic
        enclosed-light fractions, :math:`P(2n, b_n (R/R_e)^{1/n})`).
    """
    from scipy.special import gammainc, gammaincinv

    bt = np.clip(np.asarray(bulge_frac, dtype=float), 0.0, 1.0)
    rho = np.asarray(ratio, dtype=float)
    bt, rho = np.broadcast_arrays(bt, rho)
    b1 = gammaincinv(2.0, 0.5)
    b4 = gammaincinv(8.0, 0.5)
    lo = np.minimum(rho, 1.0).astype(float)
    hi = np.maximum(rho, 1.0).astype(float)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        frac = bt * gammainc(8.0, b4 * (mid / rho) ** 0.25) + (1 - bt) * gammainc(2.0, b1 * mid)
        above = frac > 0.5
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return 0.5 * (lo + hi)


def _morphology(cfg, rng, z, m_r_ref, red):
    """Sizes (arcsec), bulge fraction, axis ratio, PA and centring offset."""
    n = z.size
    alpha, beta, gamma, m0 = cfg.size_late
    a_e, b_e = cfg.size_early
    s1, s2 = cfg.size_sigma
    m = m_r_ref
    log_late = -0.4 * alpha * m + (beta - alpha) * np.log10(1 + 10 ** (-0.4 * (m - m0))) + gamma
    log_early = -0.4 * a_e * m + b_e
    sigma_ln = s2 + (s1 - s2) / (1 + 10 ** (-0.8 * (m - m0)))
    r_kpc = 10 ** np.where(red, log_early, log_late) * np.exp(rng.normal(0.0, 1.0, n) * sigma_ln)
    beta_z = np.where(red, cfg.size_evolution_red, cfg.size_evolution_blue)
    r_kpc = r_kpc * ((1 + z) / 1.1) ** beta_z
    r_half = r_kpc / _kpc_per_arcsec(z)

    pa_red, pb_red = cfg.bulge_frac_red
    pa_blue, pb_blue = cfg.bulge_frac_blue
    bt = np.where(red, rng.beta(pa_red, pb_red, n), rng.beta(pa_blue, pb_blue, n))
    rho = np.full(n, cfg.bulge_disk_ratio)
    x = composite_half_light_radius(bt, rho)
    r_disk = r_half / x
    r_bulge = rho * r_disk

    q0 = cfg.disk_thickness + (cfg.bulge_flattening - cfg.disk_thickness) * bt
    cos_i = rng.uniform(0.0, 1.0, n)
    q = np.sqrt(cos_i**2 + q0**2 * (1 - cos_i**2))
    q = np.clip(q, cfg.min_axis_ratio, 1.0)
    pa = rng.uniform(0.0, 180.0, n)
    dx = rng.normal(0.0, cfg.offset_sigma, n)
    dy = rng.normal(0.0, cfg.offset_sigma, n)
    return r_disk, r_bulge, bt, q, pa, dx, dy


def _finish(cfg, rng, kind, z, shape, m_r, m_r_ref, red, ebv=None):
    """Coefficients, magnitudes, dust and morphology into a Table."""
    from astropy import units as u
    from astropy.table import Table

    n = z.size
    coeffs = shape * 10 ** (-0.4 * (m_r + _distmod(z)))[:, None]
    ebv, ebv_csfd, ebv_planck = _dust(cfg, rng, n, ebv)
    mags = phot.band_magnitudes(coeffs, z, ebv, phot.BANDS)
    r_disk, r_bulge, bt, q, pa, dx, dy = _morphology(cfg, rng, z, m_r_ref, red)
    return _table(z, np.full(n, kind), coeffs, m_r, ebv, ebv_csfd, ebv_planck, mags,
                  r_disk, r_bulge, bt, q, pa, dx, dy, u, Table)


def _table(z, kind, coeffs, m_r, ebv, ebv_csfd, ebv_planck, mags, r_disk, r_bulge, bt, q,
           pa, dx, dy, u, Table):
    tab = Table()
    tab["z"] = np.asarray(z, dtype=float)
    tab["type"] = np.asarray(kind, dtype="U4")
    tab["coeffs"] = np.asarray(coeffs, dtype=float)
    tab["abs_mag_r"] = np.asarray(m_r, dtype=float) * u.mag
    tab["ebv"] = np.asarray(ebv, dtype=float) * u.mag
    tab["ebv_csfd"] = np.asarray(ebv_csfd, dtype=float) * u.mag
    tab["ebv_planck"] = np.asarray(ebv_planck, dtype=float) * u.mag
    for j, band in enumerate(phot.BANDS):
        tab[f"mag_{band}"] = np.asarray(mags[:, j], dtype=float) * u.mag
    tab["r_half_disk"] = np.asarray(r_disk, dtype=float) * u.arcsec
    tab["r_half_bulge"] = np.asarray(r_bulge, dtype=float) * u.arcsec
    tab["bulge_frac"] = np.asarray(bt, dtype=float)
    tab["q"] = np.asarray(q, dtype=float)
    tab["pa"] = np.asarray(pa, dtype=float) * u.deg
    tab["dx"] = np.asarray(dx, dtype=float) * u.arcsec
    tab["dy"] = np.asarray(dy, dtype=float) * u.arcsec
    tab["coeffs"].description = ("kcorrect-default-v4 template coefficients, solar masses "
                                 "formed x (10 pc / D_L)^2")
    tab["abs_mag_r"].description = "rest-frame SDSS r absolute magnitude (AB, band shift 0)"
    tab["ebv"].description = "true Milky Way E(B-V) applied to the magnitudes (F99, R_V=3.1)"
    tab["ebv_csfd"].description = "CSFD-like estimate of E(B-V)"
    tab["ebv_planck"].description = "Planck-like estimate of E(B-V)"
    for band in phot.BANDS:
        tab[f"mag_{band}"].description = (f"total AB magnitude in {phot.BAND_FILTERS[band]}, "
                                          "after Milky Way extinction")
    tab["r_half_disk"].description = "half-light radius of the exponential disk"
    tab["r_half_bulge"].description = "half-light radius of the de Vaucouleurs bulge"
    tab["bulge_frac"].description = "bulge-to-total flux ratio"
    tab["q"].description = "projected axis ratio b/a"
    tab["pa"].description = "position angle of the major axis, east of north"
    tab["dx"].description = "offset of the light centre from the catalogue position, east"
    tab["dy"].description = "offset of the light centre from the catalogue position, north"
    return tab


# ---------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------
def _draw_main(cfg, rng, n):
    pool = _main_pool(cfg.main_r_limit, cfg.main_k_limit, cfg.anchor_k_limit, cfg.main_z_min,
                      cfg.main_z_max, cfg.main_evolution)
    a = _anchor()
    w = np.minimum(pool["weight"], cfg.main_max_weight)
    pick = rng.choice(w.size, size=n, p=w / w.sum())
    cum = pool["cum"][pick]
    target = rng.uniform(size=n) * cum[:, -1]
    cell = np.minimum((cum < target[:, None]).sum(axis=1), cum.shape[1] - 1)
    edges = pool["edges"]
    z = rng.uniform(edges[cell], edges[cell + 1])
    src = pool["index"][pick]
    m_r = pool["mr"][pick] - cfg.main_evolution * (z - pool["zi"][pick])
    m_ref = m_r + cfg.main_evolution * (z - 0.1)
    shape = _perturb(a["shape"][src], rng, cfg.coeff_scatter)
    red = a["ur"][src] > cfg.red_ur_split
    return z, shape, m_r, m_ref, red


def _draw_parametric(cfg, rng, n, prefix, pool_mask):
    a = _anchor()
    pool = np.flatnonzero(pool_mask)
    if pool.size == 0:
        raise ValueError(f"no anchor galaxy qualifies for the {prefix} component; loosen "
                         f"PopulationConfig.{prefix}_pool_*")
    g = lambda name: getattr(cfg, f"{prefix}_{name}")  # noqa: E731
    z = _truncnorm(rng, g("z_mean"), g("z_sigma"), g("z_min"), g("z_max"), n)
    src = pool[rng.integers(0, pool.size, n)]
    shape = _perturb(a["shape"][src], rng, cfg.coeff_scatter)
    k_lim = _shape_mags(shape, z, (g("limit_band"),))[:, 0]
    m_lim = g("mag_limit") - _distmod(z) - k_lim
    mean = g("mr_mean") - g("evolution") * (z - 0.1)
    m_r = _truncnorm(rng, mean, g("mr_sigma"), -np.inf, m_lim, n)
    m_ref = m_r + g("evolution") * (z - 0.1)
    red = a["ur"][src] > cfg.red_ur_split
    return z, shape, m_r, m_ref, red


def _anchor_mr_at01(cfg, q):
    a = _anchor()
    return a["m_r"] + q * (a["z"] - 0.1)


def draw_population(n, config=None, rng=None, ebv=None, components=None):
    """Draw a spectroscopic-survey-like mixture of mock galaxies.

    Parameters
    ----------
    n : int
        Number of galaxies (≥ 0).
    config : `PopulationConfig`, optional
        Parameters; default ``PopulationConfig()``.
    rng : `numpy.random.Generator` or int or None, optional
        Random generator or seed. The same seed and config give the same table.
    ebv : float or array_like, optional
        Use these true E(B − V) values (scalar or one per galaxy, e.g. from a
        dust map at the galaxies' positions) instead of drawing them.
    components : sequence of str, optional
        Restrict to some of ``"main"``, ``"lrg"``, ``"elg"`` (their fractions
        renormalised); default all three.

    Returns
    -------
    `astropy.table.Table`
        ``n`` rows with the columns of ``COLUMNS``: ``z``; ``type`` ('main',
        'lrg' or 'elg'); ``coeffs`` (n × 5); ``abs_mag_r``; ``ebv`` (true),
        ``ebv_csfd``, ``ebv_planck``; ``mag_nuv`` ... ``mag_w2`` (AB, total,
        after Milky Way extinction); ``r_half_disk``, ``r_half_bulge``
        (arcsec); ``bulge_frac``; ``q``; ``pa`` (deg); ``dx``, ``dy``
        (arcsec). Rows are in random order.

    Notes
    -----
    Only the even rows of the SDSS anchor catalogue feed the population. The
    first call fits them (about a second, cached on disk afterwards) and
    builds the volume tables of the main sample.
    """
    cfg = PopulationConfig() if config is None else config
    if not isinstance(cfg, PopulationConfig):
        raise TypeError(f"config must be a PopulationConfig, got {type(cfg).__name__}")
    n = _check_n(n)
    rng = _rng_of(rng)
    names = ("main", "lrg", "elg")
    fracs = np.array([cfg.frac_main, cfg.frac_lrg, cfg.frac_elg])
    if components is not None:
        components = [components] if isinstance(components, str) else list(components)
        bad = [c for c in components if c not in names]
        if bad or not components:
            raise ValueError(f"components must be a subset of {names}, got {components!r}")
        fracs = np.where([nm in components for nm in names], fracs, 0.0)
        if fracs.sum() <= 0:
            raise ValueError(f"the components {components!r} all have zero fraction")
    fracs = fracs / fracs.sum()
    counts = rng.multinomial(n, fracs) if n > 0 else np.zeros(3, int)
    a = _anchor()
    pieces = []
    for name, count in zip(names, counts):
        if count == 0:
            continue
        if name == "main":
            parts = _draw_main(cfg, rng, count)
        elif name == "lrg":
            mask = (a["ur"] > cfg.red_ur_split) & (
                _anchor_mr_at01(cfg, cfg.lrg_evolution) < cfg.lrg_pool_mr_max)
            parts = _draw_parametric(cfg, rng, count, "lrg", mask)
        else:
            mask = a["nuvr"] < cfg.elg_pool_nuvr_max
            parts = _draw_parametric(cfg, rng, count, "elg", mask)
        pieces.append((name, parts))
    return _assemble(cfg, rng, pieces, n, ebv)


def _assemble(cfg, rng, pieces, n, ebv):
    order = rng.permutation(n)
    if pieces:
        kind = np.concatenate([np.full(p[0].size, name) for name, p in pieces])
        z, shape, m_r, m_ref, red = (np.concatenate([p[i] for _, p in pieces]) for i in range(5))
    else:
        kind = np.array([], dtype="U4")
        z = m_r = m_ref = np.zeros(0)
        shape = np.zeros((0, phot.load_templates()[1].shape[0]))
        red = np.zeros(0, bool)
    z, kind, shape, m_r, m_ref, red = (x[order] for x in (z, kind, shape, m_r, m_ref, red))
    if ebv is not None:
        ebv = np.broadcast_to(np.asarray(ebv, dtype=float), (n,))
    tab = _finish(cfg, rng, "", z, shape, m_r, m_ref, red, ebv)
    tab["type"] = np.asarray(kind, dtype="U4")
    return tab


def sdss_galaxies(n=None, config=None, rng=None, rows="odd", r_limit=17.77, fit_only=False):
    """Real SDSS galaxies as a mock-sky catalog: their photometry, the mock's shapes.

    The galaxies of the SDSS catalog shipped in kcorrect (by default its
    **odd**, held-out rows), cut like the SDSS main sample, in the columns of
    `draw_population`, so that `~astro_mantis.simulate.MockSky` renders them
    (give them ``ra`` and ``dec`` first). What is real: each galaxy's redshift,
    its SFD E(B − V) and its nine-band magnitudes, its own measured photometry
    carried into the GALEX, Pan-STARRS and unWISE bands by its own template fit
    (`~astro_mantis.simulate.photometry.sdss_reference_magnitudes`), dimmed by
    that E(B − V) as observed. What is drawn, as `draw_population` draws it:
    the CSFD-like and Planck-like E(B − V) estimates, and the shapes from the
    size-luminosity and bulge-fraction relations of ``config`` (red or blue by
    the observed, not rest-frame, u − r against ``red_ur_split``; the absolute
    magnitude is ``r − DM(z)`` at the evolution of the main sample, without a
    k-correction, which is 0.1-0.2 mag at these redshifts).

    Parameters
    ----------
    n : int, optional
        Number of galaxies, drawn without replacement from those passing the
        cut (all of them, in catalog order, if None or more than there are).
    config : `PopulationConfig`, optional
        Parameters of the drawn parts; default ``PopulationConfig()``.
    rng : `numpy.random.Generator` or int or None, optional
        Random generator or seed. The same seed gives the same table.
    rows : {'odd', 'even'}
        Half of the catalog: ``'odd'`` (default) is held out for evaluation;
        the population is anchored on ``'even'``.
    r_limit : float
        Keep galaxies with Petrosian r below this (the main sample's 17.77).
    fit_only : bool
        If True, every band is the galaxy's template fit's prediction, never a
        measured band carried over: colours on the templates' manifold, without
        the catalog's measurement noise or the galaxy's own departures from the
        templates (to tell those apart from the rest).

    Returns
    -------
    `astropy.table.Table`
        The columns of `COLUMNS`, except ``coeffs``, with ``type`` ``'sdss'``
        and ``abs_mag_r`` the approximate one above, then ``sdss_row`` (the
        galaxy's row in the catalog). Galaxies whose photometry does not reach
        every band are left out.

    Raises
    ------
    ValueError
        If ``n`` is negative, ``rows`` unknown or ``r_limit`` not finite.

    Examples
    --------
    >>> from astro_mantis.simulate.population import sdss_galaxies
    >>> galaxies = sdss_galaxies(300, rng=1)
    >>> len(galaxies), float(galaxies["z"].max()) < 0.5
    (300, True)
    """
    from astropy import units as u
    from astropy.table import Table

    cfg = PopulationConfig() if config is None else config
    if not isinstance(cfg, PopulationConfig):
        raise TypeError(f"config must be a PopulationConfig, got {type(cfg).__name__}")
    if n is not None:
        n = _check_n(n)
    if not np.isfinite(r_limit):
        raise ValueError(f"r_limit must be finite, got {r_limit!r}")
    rng = _rng_of(rng)
    ref = phot.sdss_reference_magnitudes(rows=rows, bands=phot.BANDS + (_U_BAND, _R_BAND),
                                         max_anchor_distance=-1.0 if fit_only else 0.3)
    mags = np.stack([np.asarray(ref[f"mag_{b}"], float) for b in phot.BANDS], axis=1)
    keep = np.flatnonzero((np.asarray(ref["r_petro"], float) < r_limit)
                          & np.all(np.isfinite(mags), axis=1))
    if n is not None and n < keep.size:
        keep = np.sort(rng.choice(keep, size=n, replace=False))
    ref, mags = ref[keep], mags[keep]
    z = np.asarray(ref["z"], float)
    ext = np.stack([np.asarray(ref[f"ext_{b}"], float) for b in phot.BANDS], axis=1)
    ebv, ebv_csfd, ebv_planck = _dust(cfg, rng, z.size, np.asarray(ref["ebv_sfd"], float))
    r_abs = np.asarray(ref[f"mag_{_R_BAND}"], float) - _distmod(z)
    m_ref = r_abs + cfg.main_evolution * (z - 0.1)
    red = (np.asarray(ref[f"mag_{_U_BAND}"], float) - ref[f"mag_{_R_BAND}"]) > cfg.red_ur_split
    r_disk, r_bulge, bt, q, pa, dx, dy = _morphology(cfg, rng, z, m_ref, np.asarray(red))
    tab = _table(z, np.full(z.size, "sdss"), np.zeros((z.size, 0)), r_abs, ebv, ebv_csfd,
                 ebv_planck, mags + ext, r_disk, r_bulge, bt, q, pa, dx, dy, u, Table)
    tab.remove_column("coeffs")
    tab["abs_mag_r"].description = ("approximate rest-frame SDSS r absolute magnitude: r - "
                                    "DM(z), no k-correction")
    tab["sdss_row"] = np.asarray(ref["row"])
    tab["sdss_row"].description = f"row of the kcorrect SDSS catalog ({rows} half)"
    return tab


def _check_n(n):
    try:
        nn = int(n)
    except (TypeError, ValueError):
        raise ValueError(f"n must be a non-negative integer, got {n!r}") from None
    if nn != n or nn < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    return nn


def background_number_density(config=None):
    """Surface density of background galaxies, per square degree.

    Parameters
    ----------
    config : `PopulationConfig`, optional

    Returns
    -------
    float
        Galaxies per deg² with ``background_r_min`` < r < ``background_r_max``:
        :math:`N(<21)\\,(10^{\\alpha(r_{\\max}-21)} - 10^{\\alpha(r_{\\min}-21)})`.
        The defaults (N(r < 21) = 3000 deg⁻², α = 0.36) follow the SDSS
        galaxy counts (Yasuda et al. 2001) and give ≈ 10 arcmin⁻² to r = 24,
        in line with deep counts; treat them as approximate.
    """
    cfg = PopulationConfig() if config is None else config
    a = cfg.background_count_slope
    return float(cfg.background_density_r21 * (10 ** (a * (cfg.background_r_max - 21))
                                                - 10 ** (a * (cfg.background_r_min - 21))))


def star_number_density(config=None):
    """Surface density of stars at high Galactic latitude, per square degree.

    Parameters
    ----------
    config : `PopulationConfig`, optional

    Returns
    -------
    float
        Stars per deg² with ``star_g_min`` < g < ``star_g_max``, from
        N(g < 21) = ``star_density_g21`` (default 2080 deg⁻²: Chen et al.
        2001, ApJ 553, 184, 5.8 × 10⁵ stars brighter than g' = 21 over
        279 deg² at Galactic latitudes 49°–64°) and the slope ``star_count_slope``.
    """
    cfg = PopulationConfig() if config is None else config
    a = cfg.star_count_slope
    return float(cfg.star_density_g21 * (10 ** (a * (cfg.star_g_max - 21))
                                         - 10 ** (a * (cfg.star_g_min - 21))))


def draw_background(n, config=None, rng=None, ebv=None):
    """Draw faint neighbour (background) galaxies.

    Parameters
    ----------
    n : int
        Number of galaxies; for an area :math:`\\Omega` in deg² use
        ``rng.poisson(background_number_density(config) * Omega)``.
    config : `PopulationConfig`, optional
    rng : `numpy.random.Generator` or int or None, optional
    ebv : float or array_like, optional
        True E(B − V) to use instead of drawing it.

    Returns
    -------
    `astropy.table.Table`
        Same columns as `draw_population`, ``type`` = 'bkg'.

    Notes
    -----
    PS1 r (before extinction) follows the counts :math:`dN/dm \\propto
    10^{\\alpha m}` between ``background_r_min`` and ``background_r_max``.
    Redshifts are drawn from :math:`p(z|r) \\propto z^2
    \\exp[-(z/z_0)^{1.5}]` with median :math:`1.412 z_0` interpolated in
    (r, z_med) = (17, 0.10), (19, 0.22), (21, 0.40), (22, 0.52), (23, 0.65),
    (24, 0.80), (25, 0.95) — approximate medians of r-selected galaxies in
    spectroscopic and photometric-redshift surveys — and clipped to
    [0.02, 1.6]. SEDs come from the even-row anchor galaxies, red with a
    probability falling linearly from ``background_red_fraction[0]`` to
    ``[1]`` across the magnitude range; the luminosity follows from r, z and
    the SED.
    """
    cfg = PopulationConfig() if config is None else config
    n = _check_n(n)
    rng = _rng_of(rng)
    a = _anchor()
    r = _powerlaw_mags(rng, cfg.background_count_slope, cfg.background_r_min,
                       cfg.background_r_max, n)
    zmed = np.interp(r, [17, 19, 21, 22, 23, 24, 25], [0.10, 0.22, 0.40, 0.52, 0.65, 0.80, 0.95])
    z0 = zmed / 1.412
    z = np.clip(z0 * rng.gamma(2.0, 1.0, n) ** (2.0 / 3.0), 0.02, 1.6)
    f0, f1 = cfg.background_red_fraction
    span = cfg.background_r_max - cfg.background_r_min
    p_red = f0 + (f1 - f0) * (r - cfg.background_r_min) / span
    want_red = rng.uniform(size=n) < p_red
    red_pool = np.flatnonzero(a["ur"] > cfg.red_ur_split)
    blue_pool = np.flatnonzero(a["ur"] <= cfg.red_ur_split)
    src = np.where(want_red, red_pool[rng.integers(0, red_pool.size, n)],
                   blue_pool[rng.integers(0, blue_pool.size, n)])
    shape = _perturb(a["shape"][src], rng, cfg.coeff_scatter)
    k_r = _shape_mags(shape, z, ("r",))[:, 0] if n else np.zeros(0)
    m_r = r - _distmod(z) - k_r
    m_ref = m_r + 1.3 * (z - 0.1)
    tab = _finish(cfg, rng, "bkg", z, shape, m_r, m_ref, want_red, ebv)
    return tab


@lru_cache(maxsize=1)
def _blackbody_colours():
    """AB magnitudes minus PS1 g of blackbodies on a Teff grid."""
    teff = np.arange(2000.0, 30001.0, 50.0)
    wave = np.geomspace(900.0, 80000.0, 6000)
    h, c, k = 6.62607015e-27, 2.99792458e10, 1.380649e-16
    lam_cm = wave * 1e-8
    x = h * c / (lam_cm[None, :] * k * teff[:, None])
    with np.errstate(over="ignore"):
        blam = 1.0 / lam_cm[None, :] ** 5 / np.expm1(np.minimum(x, 700.0))
    mags = phot.sed_magnitudes(wave, blam * 1e-30, phot.BANDS)
    return teff, mags - mags[:, [phot.BANDS.index("g")]]


def draw_stars(n, rng=None, config=None, ebv=None):
    """Draw field stars with AB magnitudes in the nine bands.

    Parameters
    ----------
    n : int
        Number of stars; for an area :math:`\\Omega` in deg² use
        ``rng.poisson(star_number_density(config) * Omega)``.
    rng : `numpy.random.Generator` or int or None, optional
    config : `PopulationConfig`, optional
    ebv : float or array_like, optional
        True E(B − V) (stars at high latitude lie behind the dust layer and
        get all of it); drawn from the config's distribution if omitted.

    Returns
    -------
    `astropy.table.Table`
        Same columns as `draw_population` (``type`` = 'star', ``z`` = 0,
        zero coefficients and radii, so the renderer draws point sources)
        plus ``teff`` (K).

    Notes
    -----
    PS1 g follows :math:`dN/dm \\propto 10^{\\alpha m}` (``star_count_slope``)
    between ``star_g_min`` and ``star_g_max``; see `star_number_density` for
    the normalisation. Spectra are blackbodies — a simple stand-in that gets
    optical colours of F/G turn-off stars roughly right and is too blue in
    the infrared for M dwarfs — with Teff drawn from two normal
    populations (turn-off halo/thick-disk stars and M dwarfs, the two peaks
    of the g − r distribution of high-latitude stars). Extinction uses each
    band's F99 coefficient for a flat spectrum.
    """
    from astropy import units as u
    from astropy.table import Table

    cfg = PopulationConfig() if config is None else config
    n = _check_n(n)
    rng = _rng_of(rng)
    g = _powerlaw_mags(rng, cfg.star_count_slope, cfg.star_g_min, cfg.star_g_max, n)
    red = rng.uniform(size=n) < cfg.star_red_fraction
    mb, sb = cfg.star_teff_blue
    mr, sr = cfg.star_teff_red
    teff = np.where(red, rng.normal(mr, sr, n), rng.normal(mb, sb, n))
    tgrid, colours = _blackbody_colours()
    teff = np.clip(teff, tgrid[0], tgrid[-1])
    mags = np.stack([np.interp(teff, tgrid, colours[:, j]) for j in range(len(phot.BANDS))],
                    axis=1) + g[:, None]
    ebv_true, ebv_csfd, ebv_planck = _dust(cfg, rng, n, ebv)
    coef = np.array([phot._flat_band_extinction(b) for b in phot.BANDS])
    mags = mags + ebv_true[:, None] * coef[None, :]
    zeros = np.zeros(n)
    tab = _table(zeros, np.full(n, "star"), np.zeros((n, phot.load_templates()[1].shape[0])),
                 np.full(n, np.nan), ebv_true, ebv_csfd, ebv_planck, mags, zeros, zeros,
                 zeros, np.ones(n), zeros, zeros, zeros, u, Table)
    tab["teff"] = teff * u.K
    return tab


def _comparison_edges(z_edges):
    if z_edges is None:
        return np.round(np.arange(0.0, 0.5001, 0.05), 6)
    return np.asarray(z_edges, dtype=float)


def _comparison_config(config):
    return PopulationConfig(main_k_limit=13.5) if config is None else config


def _comparison_real(bands, cfg, rows):
    """The real rows ``rows`` of `sdss_reference_magnitudes` under the main
    sample's selection (see `colour_redshift_comparison`)."""
    real = phot.sdss_reference_magnitudes(rows, bands)
    keep = ((np.asarray(real["r_petro"]) < cfg.main_r_limit)
            & (np.asarray(real["z"]) >= cfg.main_z_min) & (np.asarray(real["z"]) <= cfg.main_z_max))
    if cfg.main_k_limit is not None:
        k = np.asarray(real["k_ext"])
        keep &= (k > 0) & (k < cfg.main_k_limit)
    return real[keep]


def _comparison_samples(bands, n, config, rng, rows):
    """Mock main sample and real rows under one selection: mock z, mock
    intrinsic magnitudes in ``bands`` and the selected real rows."""
    cfg = _comparison_config(config)
    mock = draw_population(n, cfg, rng, components=["main"])
    mz = np.asarray(mock["z"])
    mmag = phot.band_magnitudes(np.asarray(mock["coeffs"]), mz, 0.0, bands)
    return mz, mmag, _comparison_real(bands, cfg, rows)


def colour_redshift_comparison(colours=(("g", "r"), ("r", "i"), ("nuv", "r"), ("r", "w1")),
                               z_edges=None, n=30000, config=None, rng=0, rows="odd",
                               min_count=30, bootstrap=0):
    """Median colours per redshift bin: mock main sample against real SDSS.

    The evidence that the mock colours are right: the main component is
    drawn to the SDSS limits, and its intrinsic (extinction-free) colours
    are compared with those of real SDSS galaxies of the held-out odd rows
    under the same selection, expressed in the same bands by
    `~astro_mantis.simulate.photometry.sdss_reference_magnitudes`.

    Parameters
    ----------
    colours : sequence of (str, str)
        Band pairs; the colour is ``mag_a - mag_b``.
    z_edges : array_like, optional
        Redshift bin edges; default 0 to 0.5 in steps of 0.05.
    n : int, optional
        Number of mock main-sample galaxies (default 30,000).
    config : `PopulationConfig`, optional
        Default ``PopulationConfig(main_k_limit=13.5)``, which reproduces the
        anchor catalogue's own selection (SDSS r\\ :sub:`Petro` < 17.77 and
        2MASS Ks < 13.5); the real galaxies are cut identically
        (``r_petro < main_r_limit``, ``0 < k_ext < main_k_limit`` when set,
        ``main_z_min ≤ z ≤ main_z_max``).
    rng : `numpy.random.Generator` or int, optional
        Seed of the mock draw (default 0).
    rows : {'odd', 'even'}, optional
        Real rows to compare with (default the held-out odd rows).
    min_count : int, optional
        Bins with fewer real galaxies are left out (default 30).
    bootstrap : int, optional
        If > 0, also return ``sigma_real``, the bootstrap standard deviation
        (this many resamplings, fixed seed) of each real median.

    Returns
    -------
    `astropy.table.Table`
        One row per (colour, bin) with ``colour``, ``z_lo``, ``z_hi``,
        ``n_real``, ``n_mock``, ``median_real``, ``median_mock`` and
        ``diff`` (mock − real), plus ``sigma_real`` if requested.
    """
    from astropy.table import Table

    edges = _comparison_edges(z_edges)
    bands = tuple(dict.fromkeys(b for pair in colours for b in pair))
    mz, mmag, real = _comparison_samples(bands, n, config, rng, rows)
    rz = np.asarray(real["z"])
    out = {name: [] for name in ("colour", "z_lo", "z_hi", "n_real", "n_mock", "median_real",
                                 "median_mock", "diff", "sigma_real")}
    boot_rng = np.random.default_rng(12345)
    for a_band, b_band in colours:
        rc = np.asarray(real[f"mag_{a_band}"]) - np.asarray(real[f"mag_{b_band}"])
        mc = mmag[:, bands.index(a_band)] - mmag[:, bands.index(b_band)]
        for lo, hi in zip(edges[:-1], edges[1:]):
            ri = (rz >= lo) & (rz < hi) & np.isfinite(rc)
            mi = (mz >= lo) & (mz < hi) & np.isfinite(mc)
            if ri.sum() < min_count or mi.sum() == 0:
                continue
            med_r, med_m = float(np.median(rc[ri])), float(np.median(mc[mi]))
            sigma = math.nan
            if bootstrap > 0:
                values = rc[ri]
                draws = boot_rng.integers(0, values.size, (int(bootstrap), values.size))
                sigma = float(np.std(np.median(values[draws], axis=1)))
            for name, value in (("colour", f"{a_band}-{b_band}"), ("z_lo", lo), ("z_hi", hi),
                                ("n_real", int(ri.sum())), ("n_mock", int(mi.sum())),
                                ("median_real", med_r), ("median_mock", med_m),
                                ("diff", med_m - med_r), ("sigma_real", sigma)):
                out[name].append(value)
    if bootstrap <= 0:
        del out["sigma_real"]
    tab = Table(out)
    tab.meta["rows"] = rows
    return tab


#: Statistics of `colour_mode_comparison`, in the order of its table.
MODE_STATISTICS = ("median", "blue", "red", "f_red")


def _mode_statistics(colour, split):
    """Median, blue-mode median, red-mode median and red fraction of ``colour``
    (one sample, or one per row of a 2-d array of resamplings); NaN for an
    empty mode."""
    colour = np.atleast_2d(colour)
    red = colour >= split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slice: an empty mode
        blue_med = np.nanmedian(np.where(red, np.nan, colour), axis=1)
        red_med = np.nanmedian(np.where(red, colour, np.nan), axis=1)
    return np.stack([np.median(colour, axis=1), blue_med, red_med, red.mean(axis=1)], axis=1)


def _bootstrap_sigma(values, split, bootstrap, rng):
    """Bootstrap standard deviation of each of `_mode_statistics`."""
    draws = rng.integers(0, values.size, (int(bootstrap), values.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(_mode_statistics(values[draws], split), axis=0)


def colour_mode_comparison(colour=("nuv", "r"), split=4.5, z_edges=None, n=30000,
                           config=None, rng=0, rows="odd", min_count=30, mode_min_count=20,
                           tolerance=0.1, bootstrap=300, mock_colour=None):
    """A bimodal colour per redshift bin, statistic by statistic, with its noise.

    NUV − r is bimodal (blue cloud near 3.5, red sequence near 6), so its
    plain median sits in the sparse valley and moves with the red fraction.
    This comparison splits every bin at ``split`` and compares four
    statistics of the mock main sample with the real rows under the same
    selection as `colour_redshift_comparison`: the plain median, the median
    of each mode and the red fraction. Each difference is judged against the
    sampling noise of the real data behind it: ``sigma`` is the bootstrap
    standard deviation of the statistic in the compared rows and, when those
    are the held-out odd rows, also in the even rows, whose sampling noise the
    mock inherits (it resamples them; its own draws add almost none). A cell
    agrees when ``|diff| ≤ tolerance + 2 sigma``: the data are consistent
    with a difference no larger than the tolerance (0.1 mag for the medians,
    0 for the fraction).

    Parameters
    ----------
    colour : (str, str)
        Bands of the colour ``mag_a - mag_b``; default NUV − r.
    split : float
        Colour dividing the blue from the red mode (4.5, the valley of the
        even rows' NUV − r at z < 0.25).
    z_edges, n, config, rng, rows, min_count
        As for `colour_redshift_comparison`.
    mode_min_count : int
        A mode median is compared only where the real rows hold at least this
        many galaxies of that mode (20).
    tolerance : float
        Allowed difference of the medians, mag (0.1).
    bootstrap : int
        Resamplings for each sigma (300, fixed seed).
    mock_colour : callable, optional
        ``f(z, colour) -> colour`` applied to the mock colours before the
        comparison, to show what the comparison detects (e.g. a shifted red
        sequence); default none.

    Returns
    -------
    `astropy.table.Table`
        One row per (bin, statistic) with ``z_lo``, ``z_hi``, ``statistic``
        (one of ``MODE_STATISTICS``), ``n_real``, ``n_mode`` (real galaxies
        behind the statistic), ``mock``, ``real``, ``diff`` (mock − real),
        ``sigma``, ``tolerance``, ``excess`` (``(abs(diff) - tolerance) / sigma``),
        ``compared`` and ``agrees`` (``excess ≤ 2`` where compared).
    """
    from astropy.table import Table

    if rows not in ("odd", "even"):
        raise ValueError(f"rows must be 'odd' or 'even', got {rows!r}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) \
            or bootstrap < 2:
        raise ValueError(f"bootstrap must be an integer >= 2 (sigma needs resamplings), "
                         f"got {bootstrap!r}")
    if not math.isfinite(float(split)):
        raise ValueError(f"split must be a finite colour, got {split!r}")
    a_band, b_band = colour
    edges = _comparison_edges(z_edges)
    bands = tuple(dict.fromkeys((a_band, b_band)))
    mz, mmag, real = _comparison_samples(bands, n, config, rng, rows)
    mc = mmag[:, bands.index(a_band)] - mmag[:, bands.index(b_band)]
    if mock_colour is not None:
        mc = np.asarray(mock_colour(mz, mc), dtype=float)
    samples = [(np.asarray(real["z"]),
                np.asarray(real[f"mag_{a_band}"]) - np.asarray(real[f"mag_{b_band}"]))]
    if rows == "odd":
        anchor = _comparison_real(bands, _comparison_config(config), "even")
        samples.append((np.asarray(anchor["z"]), np.asarray(anchor[f"mag_{a_band}"])
                        - np.asarray(anchor[f"mag_{b_band}"])))
    boot_rng = np.random.default_rng(12345)
    names = ("z_lo", "z_hi", "statistic", "n_real", "n_mode", "mock", "real", "diff", "sigma",
             "tolerance", "excess", "compared", "agrees")
    out = {name: [] for name in names}
    for lo, hi in zip(edges[:-1], edges[1:]):
        cells = [c[(z >= lo) & (z < hi) & np.isfinite(c)] for z, c in samples]
        m = mc[(mz >= lo) & (mz < hi) & np.isfinite(mc)]
        if cells[0].size < min_count or m.size == 0:
            continue
        mock_s = _mode_statistics(m, split)[0]
        real_s = _mode_statistics(cells[0], split)[0]
        sigma = np.sqrt(sum(_bootstrap_sigma(c, split, bootstrap, boot_rng) ** 2
                            for c in cells))
        n_red = int((cells[0] >= split).sum())
        n_mode = (cells[0].size, cells[0].size - n_red, n_red, cells[0].size)
        for j, stat in enumerate(MODE_STATISTICS):
            tol = 0.0 if stat == "f_red" else float(tolerance)
            diff = float(mock_s[j] - real_s[j])
            compared = bool(n_mode[j] >= (mode_min_count if stat in ("blue", "red") else 1)
                            and np.isfinite(diff) and sigma[j] > 0)
            excess = (abs(diff) - tol) / sigma[j] if compared else math.nan
            for name, value in zip(names, (lo, hi, stat, cells[0].size, n_mode[j],
                                           float(mock_s[j]), float(real_s[j]), diff,
                                           float(sigma[j]), tol, excess, compared,
                                           bool(compared and excess <= 2.0))):
                out[name].append(value)
    tab = Table(out)
    tab.meta.update(rows=rows, split=split, colour=f"{a_band}-{b_band}")
    return tab
