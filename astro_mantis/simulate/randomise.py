# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Domain randomisation of the mock sky: observing conditions and galaxy shapes that vary.

A network trained on one simulator learns that simulator: its PSFs, noise,
profiles and sizes. `Randomisation` (``MockSkyConfig.randomisation``) makes
the `~astro_mantis.simulate.MockSky` vary them over documented ranges:

* per **field** (a cell of ``field_size`` degrees of the sky grid): PSF FWHM
  and family per survey, Moffat index, sky noise, zero-point errors per band,
  and the densities of background neighbours and stars. Every cutout centred
  in a field is observed under that field's conditions; they derive from
  ``(sky seed, "field", cell)`` only, so they are the same for every request,
  process and rerun (`field_draw`);
* per **galaxy**, once, on the drawn catalog (`perturb_catalog`): size scale,
  bulge-fraction jitter, profile family, an extra offset of the light
  centre and, where asked, a real galaxy's departure from its template
  colours (`colour_departure_pool`), recorded as catalog columns ``rand_*``.

`~astro_mantis.simulate.training_randomisation` gives the training ranges,
`~astro_mantis.simulate.shifted_randomisation` the shifted-simulator test set
(conditions outside the centre of the training ranges, which training never
sees).

PSF widths, Moffat indices and noise levels are quantised to ``levels``
evenly spaced values of their range, so that a handful of renderer variants
(each with its own PSF caches) serves every field.
"""

import math
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache

import numpy as np

from ._checks import check_fraction, config_from_dict
from ._grid import SkyCells
from .render import (_DEFAULT_PSF_MODEL, _PSF_MODELS, _SURVEYS, BANDS, SURVEY_OF_BAND,
                     ImagingConfig)
from .service_format import stable_seed

__all__ = ["FieldDraw", "Randomisation", "colour_departure_pool", "field_cell", "field_draw",
           "perturb_catalog", "shifted_randomisation", "training_randomisation",
           "variant_imaging"]

_PROFILES = ("mix", "single")
_TRAIN_PSF_SCALE = {"galex": (0.9, 1.1), "panstarrs": (0.8, 1.3), "unwise": (0.95, 1.05)}
_POOL_R_LIMIT = 17.77
_SHOWN_WHERE_SET = ("single_fraction", "colour_departures")
_TRAIN_PSF_MODELS = {"galex": ("gaussian",), "panstarrs": ("kolmogorov", "moffat"),
                     "unwise": ("gaussian",)}


def _pair(name, value, lo=-math.inf, hi=math.inf, *, open_lo=False):
    """A validated (lo, hi) range of floats inside [lo, hi] (lo excluded with ``open_lo``)."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"Randomisation.{name} must be a (lo, hi) pair of numbers, "
                         f"got {value!r}") from None
    low_ok = a > lo if open_lo else a >= lo
    if not (math.isfinite(a) and math.isfinite(b) and low_ok and a <= b <= hi):
        bound = f"{lo} < lo" if open_lo else f"{lo} <= lo"
        raise ValueError(f"Randomisation.{name} must satisfy {bound} <= hi <= {hi}, "
                         f"got {value!r}")
    return (a, b)


def _survey_dict(name, given, default, check):
    """Merge a survey -> value dict into the defaults (canonical survey order)."""
    if not isinstance(given, dict):
        raise ValueError(f"Randomisation.{name} must be a dict survey -> value, got {given!r}")
    unknown = [s for s in given if s not in _SURVEYS]
    if unknown:
        raise ValueError(f"Randomisation.{name} has unknown survey(s) {unknown}; "
                         f"surveys are {_SURVEYS}")
    merged = dict(default)
    merged.update(given)
    return {s: check(f"{name}[{s!r}]", merged[s]) for s in _SURVEYS}


def _models(name, value):
    if isinstance(value, str):
        value = (value,)
    try:
        value = tuple(str(m).lower() for m in value)
    except TypeError:
        raise ValueError(f"Randomisation.{name} must be a sequence of PSF models, "
                         f"got {value!r}") from None
    bad = [m for m in value if m not in _PSF_MODELS]
    if not value or bad:
        raise ValueError(f"Randomisation.{name} must be a non-empty sequence of "
                         f"{_PSF_MODELS}, got {value!r}")
    return value


@dataclass
class Randomisation:
    """Ranges over which the mock sky's observing conditions and galaxy shapes vary.

    Every randomised quantity is a ``(lo, hi)`` range; ``lo == hi`` fixes it.
    The defaults are the **training** ranges (`training_randomisation`);
    each is chosen to cover the variation of the real surveys around the
    package's nominal values, without leaving them. Invalid values raise
    `ValueError` naming the field.

    Parameters
    ----------
    field_size : float, optional
        Side (deg) of the sky cells ("fields") that share one set of
        observing conditions (default 0.25: about a PS1 skycell, a fraction
        of a GALEX or unWISE tile).
    psf_scale : dict, optional
        Survey → ``(lo, hi)`` factor on the PSF FWHM of the survey's bands
        (a partial dict overrides only the surveys it names). Defaults:
        GALEX (0.9, 1.1), the field-to-field spread of the AIS PSF
        (Morrissey et al. 2007); Pan-STARRS1 (0.8, 1.3), the spread of the
        3π stack seeing around its median (about 0.95″–1.55″ in r, Chambers
        et al. 2016); unWISE (0.95, 1.05), the stable WISE PSF across coadds.
    psf_models : dict, optional
        Survey → PSF families to choose from with equal probability
        (`~astro_mantis.simulate.ImagingConfig` ``psf_model`` values).
        Defaults: Pan-STARRS1 Kolmogorov or Moffat (stack PSFs lie between
        the two: Kolmogorov wings from seeing, Moffat cores from the
        stacking); GALEX and unWISE Gaussian. Every field draws every
        survey's family from these, in place of ``ImagingConfig.psf_model``
        (which then only sets the nominal PSF whose noise-equivalent area
        fixes the nominal sky noise per pixel); a `~astro_mantis.simulate.MockSkyConfig`
        whose ``ImagingConfig.psf_model`` differs from the default for a
        survey whose families here are not that one model alone is refused.
    moffat_beta : (float, float), optional
        Moffat index where a survey draws ``"moffat"`` (default (2.5, 4.5):
        the range fitted to ground-based PSFs; must exceed 1.1). It replaces
        ``ImagingConfig.moffat_beta`` there; a non-default
        ``ImagingConfig.moffat_beta`` is refused where a survey may draw
        ``"moffat"`` unless this range is that value alone.
    noise_scale : (float, float), optional
        Factor on the per-pixel sky noise of every band of a field (default
        (0.75, 1.35): about ±0.3 mag of depth, the spread of PS1 stack depths
        across the 3π sky, and of GALEX AIS exposure times). The sky noise
        per pixel is the nominal one times this factor whatever the PSF, so
        a wider PSF also makes a field shallower for point sources, as on
        the real sky.
    zero_point : (float, float), optional
        Magnitude ``|Δzp|`` of a calibration error per band and field, with
        a random sign (default (0, 0.03): PS1's ≈ 0.01–0.02 mag and GALEX's
        and unWISE's few-hundredths zero-point uncertainties). The noiseless
        image of the band is multiplied by ``10**(-0.4 Δzp)`` before the
        noise; the sky noise is unchanged.
    levels : int, optional
        PSF factors, Moffat indices and noise factors take ``levels`` evenly
        spaced values of their ranges (default 5; 1 takes the middle), so a
        few cached renderer variants serve every field.
    neighbour_scale, star_scale : (float, float), optional
        Factors on the densities of faint neighbour galaxies and of stars in
        each background cell (defaults (0.5, 1.5) and (0.5, 2.0): the
        field-to-field variance of galaxy counts on 0.25° scales, and the
        change of star counts between b ≈ 90° and b ≈ 50°).
    size_scale : (float, float), optional
        Per galaxy, log-uniform factor on both half-light radii (default
        (0.8, 1.25): ± 0.1 dex, about half the scatter of the size–luminosity
        relation at fixed luminosity, added to the population's own).
    bulge_frac_jitter : (float, float), optional
        Per galaxy, ``|Δ(B/T)|`` added with a random sign, then clipped to
        [0, 1] (default (0, 0.15): the spread between bulge/disk
        decompositions of the same galaxy).
    profile : {"mix", "single"}, optional
        ``"mix"`` (default): bulge + disk as drawn. ``"single"``: each
        galaxy becomes a pure exponential (B/T < 0.5) or a pure de
        Vaucouleurs profile (B/T ≥ 0.5) of the same composite half-light
        radius, the single-Sérsic models of many catalogs.
    single_fraction : float, optional
        With ``profile="mix"``: the probability that a galaxy is nonetheless
        rendered as a single profile (as ``"single"`` does), drawn per galaxy
        (default 0: every galaxy bulge + disk). Real galaxies are neither a
        bulge + disk nor a single Sérsic profile; a fraction of each teaches a
        network both families, as the reference's training set of real
        galaxies did. Must lie in [0, 1], and be 0 with ``profile="single"``
        (which leaves nothing for it to do).
    offset : (float, float), optional
        Per galaxy, radius (arcsec) of an extra offset of the light centre
        from the catalog position, in a random direction (default (0, 0.3):
        the astrometric and centroiding differences between surveys and
        catalogs, about one PS1 pixel).
    colour_departures : float, optional
        Per galaxy, add ``colour_departures`` times the departure of a real
        galaxy's measured colours from its own template fit, drawn at random
        from `colour_departure_pool` (the even, fitting rows of the SDSS
        catalog), to the galaxy's magnitudes in every band (default 0: the
        mock galaxies keep the templates' colours exactly). Real galaxies are
        not template mixtures: their measured g, r, i depart from their fits
        by about 0.01 mag (NMAD) and z, y by 0.02 mag, correlated across
        bands, and a network that has only seen template colours is
        over-confident on them (``benchmarks/bench_real_population.py``).
        Must lie in [0, 3]. The departures include the catalog's own
        measurement errors, so 1 is an upper end of the real galaxies'
        intrinsic departures, not their estimate.

    Notes
    -----
    Per-galaxy perturbations are applied when a `~astro_mantis.simulate.MockSky`
    draws its catalog (not to a catalog it is given, which is used as is).

    What randomisation does to the PSF settings of
    `~astro_mantis.simulate.ImagingConfig`: ``psf_fwhm`` is the nominal FWHM that
    ``psf_scale`` multiplies; ``psf_model`` and ``moffat_beta`` are replaced in
    every field by the field's draw from ``psf_models`` and ``moffat_beta``
    (`variant_imaging`), and keep only one role, the nominal PSF whose
    noise-equivalent area sets the nominal sky noise per pixel that
    ``noise_scale`` multiplies. So that a setting is never silently ignored,
    `~astro_mantis.simulate.MockSkyConfig` refuses (`ValueError` naming the
    fields) a non-default ``psf_model`` or ``moffat_beta`` that the
    randomisation could replace by something else; give the randomisation that
    one family (``psf_models={"panstarrs": ("moffat",)}``) or that one index
    (``moffat_beta=(3.0, 3.0)``) to keep it.
    """

    field_size: float = 0.25
    psf_scale: dict = field(default_factory=dict)
    psf_models: dict = field(default_factory=dict)
    moffat_beta: tuple = (2.5, 4.5)
    noise_scale: tuple = (0.75, 1.35)
    zero_point: tuple = (0.0, 0.03)
    levels: int = 5
    neighbour_scale: tuple = (0.5, 1.5)
    star_scale: tuple = (0.5, 2.0)
    size_scale: tuple = (0.8, 1.25)
    bulge_frac_jitter: tuple = (0.0, 0.15)
    profile: str = "mix"
    offset: tuple = (0.0, 0.3)
    single_fraction: float = 0.0
    colour_departures: float = 0.0

    def __post_init__(self):
        try:
            self.field_size = float(self.field_size)
        except (TypeError, ValueError):
            raise ValueError("Randomisation.field_size must be a number of degrees, "
                             f"got {self.field_size!r}") from None
        if not 0.001 <= self.field_size <= 90.0:
            raise ValueError("Randomisation.field_size must be within 0.001 and 90 deg, "
                             f"got {self.field_size!r}")
        self.psf_scale = _survey_dict("psf_scale", self.psf_scale, _TRAIN_PSF_SCALE,
                                      lambda n, v: _pair(n, v, 0.0, 10.0, open_lo=True))
        self.psf_models = _survey_dict("psf_models", self.psf_models, _TRAIN_PSF_MODELS,
                                       _models)
        self.moffat_beta = _pair("moffat_beta", self.moffat_beta, 1.1, 100.0, open_lo=True)
        self.noise_scale = _pair("noise_scale", self.noise_scale, 0.0, 100.0, open_lo=True)
        self.zero_point = _pair("zero_point", self.zero_point, 0.0, 1.0)
        if isinstance(self.levels, bool) or not isinstance(self.levels, (int, np.integer)) \
                or self.levels < 1:
            raise ValueError(f"Randomisation.levels must be a positive integer, "
                             f"got {self.levels!r}")
        self.levels = int(self.levels)
        self.neighbour_scale = _pair("neighbour_scale", self.neighbour_scale, 0.0, 100.0)
        self.star_scale = _pair("star_scale", self.star_scale, 0.0, 100.0)
        self.size_scale = _pair("size_scale", self.size_scale, 0.0, 10.0, open_lo=True)
        self.bulge_frac_jitter = _pair("bulge_frac_jitter", self.bulge_frac_jitter, 0.0, 1.0)
        if self.profile not in _PROFILES:
            raise ValueError(f"Randomisation.profile must be one of {_PROFILES}, "
                             f"got {self.profile!r}")
        self.offset = _pair("offset", self.offset, 0.0, 10.0)
        self.single_fraction = check_fraction("Randomisation.single_fraction",
                                              self.single_fraction)
        if self.profile == "single" and self.single_fraction > 0.0:
            raise ValueError("Randomisation.single_fraction applies with profile='mix' only "
                             "(profile='single' makes every galaxy a single profile); got "
                             f"single_fraction={self.single_fraction!r} with profile='single'")
        try:
            self.colour_departures = float(self.colour_departures)
        except (TypeError, ValueError):
            raise ValueError("Randomisation.colour_departures must be a number in [0, 3], "
                             f"got {self.colour_departures!r}") from None
        if not 0.0 <= self.colour_departures <= 3.0:  # NaN fails too
            raise ValueError("Randomisation.colour_departures must be within [0, 3], "
                             f"got {self.colour_departures!r}")

    def __repr__(self):
        # single_fraction and colour_departures show only where set: dataset manifests
        # record this repr, so the data sets rendered before they existed keep matching
        # their settings.
        parts = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                 if f.name not in _SHOWN_WHERE_SET or getattr(self, f.name)]
        return f"{type(self).__qualname__}({', '.join(parts)})"

    def level_values(self, name, survey=None):
        """The quantised values a field may draw for a range.

        Parameters
        ----------
        name : {"psf_scale", "moffat_beta", "noise_scale"}
            The quantised range.
        survey : str, optional
            For ``"psf_scale"``: the survey.

        Returns
        -------
        `numpy.ndarray`
            ``levels`` evenly spaced values from ``lo`` to ``hi`` (the
            middle of the range when ``levels`` is 1).
        """
        if name not in ("psf_scale", "moffat_beta", "noise_scale"):
            raise ValueError(f"name must be 'psf_scale', 'moffat_beta' or 'noise_scale', "
                             f"got {name!r}")
        lo, hi = self.psf_scale[survey] if name == "psf_scale" else getattr(self, name)
        if self.levels == 1:
            return np.array([0.5 * (lo + hi)])
        return np.linspace(lo, hi, self.levels)


def training_randomisation():
    """The training ranges of the mock sky's domain randomisation.

    Returns
    -------
    `Randomisation`
        The defaults (see `Randomisation` for each range and why).
    """
    return Randomisation()


def shifted_randomisation():
    """The shifted simulator: a test set rendered outside the centre of the training ranges.

    Fixed changes, none of which training sees as such: PSF FWHM × 1.2 in
    all three surveys, noise × 1.3, single-profile galaxies (pure
    exponential or de Vaucouleurs instead of the bulge + disk mix), sizes
    × 1.2, zero points off by 0.03 mag (random sign per band and field),
    light centres offset by 0.5″ (random direction); the PSF families of
    `~astro_mantis.simulate.ImagingConfig`'s defaults, fixed (Pan-STARRS1
    Kolmogorov, GALEX and unWISE Gaussian: ``psf_models`` names them, so
    they do not follow an ``ImagingConfig.psf_model`` given with it), nominal
    neighbour and star densities, no bulge-fraction jitter.

    Returns
    -------
    `Randomisation`
    """
    return Randomisation(
        psf_scale={s: (1.2, 1.2) for s in _SURVEYS},
        psf_models={"galex": ("gaussian",), "panstarrs": ("kolmogorov",),
                    "unwise": ("gaussian",)},
        noise_scale=(1.3, 1.3), zero_point=(0.03, 0.03), neighbour_scale=(1.0, 1.0),
        star_scale=(1.0, 1.0), size_scale=(1.2, 1.2), bulge_frac_jitter=(0.0, 0.0),
        profile="single", offset=(0.5, 0.5))


@dataclass(frozen=True)
class FieldDraw:
    """The observing conditions of one field (see `field_draw`).

    Attributes
    ----------
    field : (int, int)
        Cell (row, column) of the ``field_size`` grid.
    psf_level : dict
        Survey → index into ``Randomisation.level_values("psf_scale", survey)``.
    psf_scale : dict
        Survey → factor on the PSF FWHM.
    psf_model : dict
        Survey → PSF family.
    beta_level : int
    moffat_beta : float
    noise_level : int
    noise_scale : float
        Factor on the per-pixel sky noise.
    zero_point : dict
        Band → zero-point error Δzp (mag); the band's flux is multiplied by
        ``10**(-0.4 Δzp)``.
    neighbour_scale, star_scale : float
        Factors on the neighbour and star densities.
    """

    field: tuple
    psf_level: dict
    psf_scale: dict
    psf_model: dict
    beta_level: int
    moffat_beta: float
    noise_level: int
    noise_scale: float
    zero_point: dict
    neighbour_scale: float
    star_scale: float

    def variant_key(self, survey):
        """Hashable key of the renderer variant a survey's bands need in this field.

        Parameters
        ----------
        survey : str

        Returns
        -------
        tuple
        """
        model = self.psf_model[survey]
        return (survey, self.psf_level[survey], model,
                self.beta_level if model == "moffat" else None)


def field_cell(randomisation, ra, dec):
    """The (row, column) of the field containing a position.

    Parameters
    ----------
    randomisation : `Randomisation`
    ra, dec : float
        Position (deg).

    Returns
    -------
    (int, int)
    """
    return SkyCells(randomisation.field_size).index(ra, dec)


def field_draw(randomisation, seed, cell):
    """Draw the observing conditions of one field.

    Parameters
    ----------
    randomisation : `Randomisation`
    seed : int
        Sky seed.
    cell : (int, int)
        Field (row, column), e.g. from `field_cell`.

    Returns
    -------
    `FieldDraw`
        Deterministic in ``(seed, cell)`` and the randomisation.
    """
    r = randomisation
    j, i = (int(c) for c in cell)
    rng = np.random.default_rng(stable_seed(seed, "field", j, i))
    psf_level, psf_scale, psf_model = {}, {}, {}
    for survey in _SURVEYS:
        k = int(rng.integers(r.levels))
        models = r.psf_models[survey]
        psf_level[survey] = k
        psf_scale[survey] = float(r.level_values("psf_scale", survey)[k])
        psf_model[survey] = models[int(rng.integers(len(models)))]
    beta_level = int(rng.integers(r.levels))
    noise_level = int(rng.integers(r.levels))
    magnitude = rng.uniform(r.zero_point[0], r.zero_point[1], len(BANDS))
    sign = np.where(rng.random(len(BANDS)) < 0.5, -1.0, 1.0)
    zero_point = {b: float(s * m) for b, s, m in zip(BANDS, sign, magnitude)}
    neighbour = float(rng.uniform(*r.neighbour_scale))
    star = float(rng.uniform(*r.star_scale))
    return FieldDraw(field=(j, i), psf_level=psf_level, psf_scale=psf_scale,
                     psf_model=psf_model, beta_level=beta_level,
                     moffat_beta=float(r.level_values("moffat_beta")[beta_level]),
                     noise_level=noise_level,
                     noise_scale=float(r.level_values("noise_scale")[noise_level]),
                     zero_point=zero_point, neighbour_scale=neighbour, star_scale=star)


def variant_imaging(imaging, draw, survey):
    """The `~astro_mantis.simulate.ImagingConfig` of one survey under a field's conditions.

    Parameters
    ----------
    imaging : `~astro_mantis.simulate.ImagingConfig`
        The sky's nominal settings.
    draw : `FieldDraw`
    survey : str

    Returns
    -------
    `~astro_mantis.simulate.ImagingConfig`
        The survey's bands' PSF FWHM scaled; its PSF family replaced by the
        draw's, whatever ``imaging.psf_model`` says; the Moffat index replaced
        by the draw's where the draw is ``"moffat"`` (else ``imaging``'s,
        unused by the survey's bands); every other setting as in ``imaging``
        (the noise factor is applied by the sky to the nominal per-pixel
        noise, not here). `~astro_mantis.simulate.MockSkyConfig` refuses
        an ``imaging`` whose non-default ``psf_model`` or ``moffat_beta``
        this would replace by something else (`Randomisation`, Notes).
    """
    scale = draw.psf_scale[survey]
    fwhm = {b: v * scale if SURVEY_OF_BAND[b] == survey else v
            for b, v in imaging.psf_fwhm.items()}
    models = dict(imaging.psf_model)
    models[survey] = draw.psf_model[survey]
    beta = draw.moffat_beta if draw.psf_model[survey] == "moffat" else imaging.moffat_beta
    return replace(imaging, psf_fwhm=fwhm, psf_model=models, moffat_beta=beta)


def _composite_radius(r_disk, r_bulge, bulge_frac):
    """Half-light radius (arcsec) of bulge + disk; 0 for point sources."""
    from .population import composite_half_light_radius

    r_disk, r_bulge = np.asarray(r_disk, float), np.asarray(r_bulge, float)
    bf = np.clip(np.asarray(bulge_frac, float), 0.0, 1.0)
    out = np.where(bf > 0, r_bulge, 0.0)
    ok = r_disk > 0
    if ok.any():
        rho = np.where(r_bulge[ok] > 0, r_bulge[ok] / r_disk[ok], 1.0)
        bt = np.where(r_bulge[ok] > 0, bf[ok], 0.0)
        out[ok] = r_disk[ok] * composite_half_light_radius(bt, rho)
    return out


def _set_column(table, name, values):
    """Overwrite a column in place (keeping unit and description) or add it."""
    if name in table.colnames:
        table[name][:] = values
    else:
        table[name] = values


@lru_cache(maxsize=1)
def _departure_pool():
    from . import photometry as phot

    measured = phot.sdss_reference_magnitudes("even", BANDS, max_anchor_distance=0.3)
    fitted = phot.sdss_reference_magnitudes("even", BANDS, max_anchor_distance=-1.0)
    dmag = np.stack([np.asarray(measured[f"mag_{b}"], float)
                     - np.asarray(fitted[f"mag_{b}"], float) for b in BANDS], axis=1)
    keep = (np.asarray(measured["r_petro"], float) < _POOL_R_LIMIT) \
        & np.all(np.isfinite(dmag), axis=1)
    dmag = dmag[keep]
    dmag.setflags(write=False)
    return dmag


def colour_departure_pool():
    """Real galaxies' departures from their template colours, one row per galaxy.

    For each galaxy of the even (fitting) rows of the SDSS catalog shipped in
    kcorrect with Petrosian r < 17.77 (the main sample's limit), the magnitude
    in each of the nine bands that its own measured photometry gives
    (`~astro_mantis.simulate.photometry.sdss_reference_magnitudes`) minus the
    magnitude its template fit alone predicts. Bands without a measured band
    nearby (W1, W2, and the ultraviolet where GALEX did not detect the galaxy)
    depart by 0. ``Randomisation.colour_departures`` draws rows of it. The odd,
    held-out rows are never used.

    Returns
    -------
    `numpy.ndarray`
        Read-only array (galaxies × 9 bands, in the order of
        ``astro_mantis.simulate.BANDS``), magnitudes; positive is fainter than
        the templates.
    """
    return _departure_pool()


def perturb_catalog(table, randomisation, rng):
    """Apply the per-galaxy randomisation to a drawn catalog, in place.

    Sizes, bulge fractions, profiles, light-centre offsets and (with
    ``colour_departures`` > 0) magnitudes change as the `Randomisation` says;
    the values applied are recorded in new columns ``rand_size_scale``,
    ``rand_bulge_jitter``, ``rand_offset_dx`` and ``rand_offset_dy`` (arcsec
    east and north, added to ``dx`` and ``dy``), ``rand_single`` (True where
    the galaxy became a single profile) and, with ``colour_departures`` > 0,
    ``rand_colour_departure`` (mag added to each ``mag_<band>``, nine per
    galaxy in the order of ``astro_mantis.simulate.BANDS``).

    Parameters
    ----------
    table : `~astropy.table.Table`
        Catalog with ``r_half_disk``, ``r_half_bulge`` (arcsec),
        ``bulge_frac``, ``dx``, ``dy`` (arcsec) columns (missing ones are
        taken as point sources without offset) and ``mag_<band>`` columns
        (those present take the colour departures).
    randomisation : `Randomisation`
    rng : `numpy.random.Generator`

    Returns
    -------
    `~astropy.table.Table`
        ``table``.
    """
    r = randomisation
    n = len(table)
    size = np.exp(rng.uniform(math.log(r.size_scale[0]), math.log(r.size_scale[1]), n))
    jitter = rng.uniform(*r.bulge_frac_jitter, n) * np.where(rng.random(n) < 0.5, -1.0, 1.0)
    radius = rng.uniform(*r.offset, n)
    angle = rng.uniform(0.0, 2.0 * math.pi, n)

    def column(name):
        return np.asarray(table[name], float) if name in table.colnames else np.zeros(n)

    r_disk = column("r_half_disk") * size
    r_bulge = column("r_half_bulge") * size
    bulge_frac = np.clip(column("bulge_frac") + jitter, 0.0, 1.0)
    if r.profile == "single":
        single = np.ones(n, bool)
    elif r.single_fraction > 0.0:  # drawn last: catalogs without it keep their draws
        single = rng.random(n) < r.single_fraction
    else:
        single = np.zeros(n, bool)
    if single.any():
        r_comp = _composite_radius(r_disk, r_bulge, bulge_frac)
        bulge_frac = np.where(single, np.where(bulge_frac < 0.5, 0.0, 1.0), bulge_frac)
        r_disk = np.where(single, r_comp, r_disk)
        r_bulge = np.where(single, r_comp, r_bulge)
    if r.colour_departures > 0.0:  # drawn last, too
        pool = _departure_pool()
        dmag = r.colour_departures * pool[rng.integers(pool.shape[0], size=n)]
        for j, band in enumerate(BANDS):
            if f"mag_{band}" in table.colnames:
                _set_column(table, f"mag_{band}", column(f"mag_{band}") + dmag[:, j])
        table["rand_colour_departure"] = dmag
        table["rand_colour_departure"].description = (
            "randomisation: real galaxy's departure from its template colours added to "
            "mag_<band> (mag, bands in astro_mantis.simulate.BANDS order)")
    off_x, off_y = radius * np.sin(angle), radius * np.cos(angle)
    for name, values in (("r_half_disk", r_disk), ("r_half_bulge", r_bulge),
                         ("bulge_frac", bulge_frac), ("dx", column("dx") + off_x),
                         ("dy", column("dy") + off_y)):
        _set_column(table, name, values)
    for name, values, text in (
            ("rand_size_scale", size, "randomisation: factor applied to both half-light radii"),
            ("rand_bulge_jitter", jitter, "randomisation: added to bulge_frac before clipping"),
            ("rand_offset_dx", off_x, "randomisation: light-centre offset added to dx (arcsec)"),
            ("rand_offset_dy", off_y, "randomisation: light-centre offset added to dy (arcsec)"),
            ("rand_single", single, "randomisation: rendered as a single profile")):
        table[name] = values
        table[name].description = text
    table.meta["randomisation"] = repr(r)
    return table


def _conditions_dict(randomisation, draw, imaging):
    """The observing conditions of a field as plain values (`MockSky.field_conditions`).

    Parameters
    ----------
    randomisation : `Randomisation` or None
    draw : `FieldDraw` or None
        None (no randomisation): the nominal conditions.
    imaging : `~astro_mantis.simulate.ImagingConfig`

    Returns
    -------
    dict
        ``field`` (row, column or None), ``psf_fwhm`` (band → arcsec),
        ``psf_model`` (survey → family), ``moffat_beta``, ``noise_scale``,
        ``zero_point`` (band → mag), ``neighbour_scale``, ``star_scale``.
    """
    if draw is None:
        return {"field": None, "psf_fwhm": dict(imaging.psf_fwhm),
                "psf_model": dict(imaging.psf_model), "moffat_beta": imaging.moffat_beta,
                "noise_scale": 1.0, "zero_point": dict.fromkeys(BANDS, 0.0),
                "neighbour_scale": 1.0, "star_scale": 1.0}
    return {"field": draw.field,
            "psf_fwhm": {b: v * draw.psf_scale[SURVEY_OF_BAND[b]]
                         for b, v in imaging.psf_fwhm.items()},
            "psf_model": dict(draw.psf_model), "moffat_beta": draw.moffat_beta,
            "noise_scale": draw.noise_scale, "zero_point": dict(draw.zero_point),
            "neighbour_scale": draw.neighbour_scale, "star_scale": draw.star_scale}


def _check_randomisation(value):
    """``MockSkyConfig.randomisation`` validated: None, a `Randomisation`, or a dict of one.

    Parameters
    ----------
    value : None, `Randomisation` or dict

    Returns
    -------
    `Randomisation` or None
    """
    if value is None or isinstance(value, Randomisation):
        return value
    if isinstance(value, dict):
        return config_from_dict("MockSkyConfig.randomisation", Randomisation, value)
    raise ValueError("MockSkyConfig.randomisation must be None, a Randomisation or a dict, "
                     f"got {type(value).__name__}")


#: ``ImagingConfig.moffat_beta``'s default.
_DEFAULT_MOFFAT_BETA = {f.name: f.default for f in fields(ImagingConfig)}["moffat_beta"]


def _check_psf_settings(imaging, randomisation):
    """Refuse an ``ImagingConfig`` PSF setting that the randomisation would override.

    Under randomisation every field draws each survey's PSF family from
    ``Randomisation.psf_models`` and, where it draws ``"moffat"``, the index
    from ``Randomisation.moffat_beta`` (`variant_imaging`). A non-default
    ``ImagingConfig.psf_model`` or ``moffat_beta`` would then never be rendered,
    while the dataset manifest records it; that is an error, unless the
    randomisation can only draw that very setting.

    Parameters
    ----------
    imaging : `~astro_mantis.simulate.ImagingConfig`
    randomisation : `Randomisation`

    Raises
    ------
    ValueError
        Naming the ``ImagingConfig`` and ``Randomisation`` fields in conflict.
    """
    problems = []
    for survey in _SURVEYS:
        model = imaging.psf_model[survey]
        drawn = randomisation.psf_models[survey]
        if model != _DEFAULT_PSF_MODEL[survey] and tuple(drawn) != (model,):
            problems.append(
                f"ImagingConfig.psf_model[{survey!r}] = {model!r} is replaced in every field "
                f"by a draw from Randomisation.psf_models[{survey!r}] = {drawn!r} (give "
                f"Randomisation(psf_models={{{survey!r}: ({model!r},)}}) to keep it)")
    beta = imaging.moffat_beta
    moffat = [s for s in _SURVEYS if "moffat" in randomisation.psf_models[s]]
    if beta != _DEFAULT_MOFFAT_BETA and moffat and tuple(randomisation.moffat_beta) != (beta, beta):
        problems.append(
            f"ImagingConfig.moffat_beta = {beta!r} is replaced, where a field draws "
            f"'moffat' ({', '.join(moffat)}), by a draw from Randomisation.moffat_beta = "
            f"{randomisation.moffat_beta!r} (give Randomisation(moffat_beta=({beta!r}, "
            f"{beta!r})) to keep it)")
    if problems:
        raise ValueError("MockSkyConfig: the randomisation overrides a PSF setting of the "
                         "imaging: " + "; ".join(problems) + ". Leave ImagingConfig.psf_model "
                         "and moffat_beta at their defaults under randomisation, or make the "
                         "randomisation draw only them.")
