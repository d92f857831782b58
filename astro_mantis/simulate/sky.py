# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""`MockSky`: a catalog of mock galaxies, rendered as the survey services send it.

A `MockSky` holds a catalog (drawn by `~astro_mantis.simulate.draw_population`
in a sky patch, or given) and answers ``render(survey, coord, ...)`` with the
`~astropy.io.fits.HDUList` the real GALEX, Pan-STARRS1 or unWISE cutout
service would return for that request: same shape, units, header keywords
and WCS conventions (`astro_mantis.simulate.service_format`). Every cutout
shows the catalog galaxies that overlap it, plus faint field galaxies
("neighbours") and stars at realistic densities, plus noise.

Neighbours and stars belong to the sky, not to a cutout: the sphere is cut
into cells of ``MockSkyConfig.background_cell`` arcsec, and each cell's
sources are drawn from a seed derived from (seed, cell), so overlapping
cutouts of any survey show the same neighbours at the same places.
"""

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, fields

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from ._checks import check_fraction, config_from_dict
from ._grid import SkyCells
from .randomise import (_check_psf_settings, _check_randomisation, _conditions_dict,
                        field_draw, perturb_catalog, variant_imaging)
from .render import SURVEY_OF_BAND, ImageRenderer, ImagingConfig, sky_noise
from .service_format import (
    NATIVE_TO_BAND,
    band_list,
    coord_to_radec,
    default_geometry,
    normalise_band,
    normalise_survey,
    ps1_geometry,
    ps1_hdulist,
    ps1_stack_exptime,
    stable_seed,
    viewer_geometry,
    viewer_hdulist,
)

__all__ = ["MockSky", "MockSkyConfig", "galex_coverage", "noise_seed", "ps1_chip_gap"]

_SHAPE_COLUMNS = ("r_half_disk", "r_half_bulge", "bulge_frac", "q", "pa")
_CELL_CACHE = 8192  # background cells kept in memory
_PS1_CACHE = 32  # noiseless five-band PS1 cutouts kept for the next band's request
_PS1_BANDS = ("g", "r", "i", "z", "y")
_VARIANT_PSF_BYTES = 24_000_000  # PSF k-images kept per randomisation renderer variant


def _population():
    """The population module (imported on first use: it loads SED templates)."""
    from . import population

    return population


def _ps1_min_dec():
    """Southern edge (deg) of the Pan-STARRS footprint (`astro_mantis.surveys`)."""
    from ..surveys import get_survey

    return float(get_survey("panstarrs").min_dec)


def _check_range(name, value, lo, hi):
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"MockSkyConfig.{name} must be a (min, max) pair of degrees, "
                         f"got {value!r}") from None
    if not (lo <= a < b <= hi):
        raise ValueError(f"MockSkyConfig.{name} must satisfy {lo} <= min < max <= {hi}, "
                         f"got {value!r}")
    return (a, b)


@dataclass
class MockSkyConfig:
    """Everything a `MockSky` needs: population, imaging, and where the sky is.

    Parameters
    ----------
    population : `~astro_mantis.simulate.PopulationConfig` or dict, optional
        Galaxy population settings; None for the defaults of
        `~astro_mantis.simulate.draw_population`.
    imaging : `~astro_mantis.simulate.ImagingConfig` or dict, optional
        PSFs, depths, noise, coverage holes, star and neighbour densities. With
        ``randomisation``, a non-default ``psf_model`` or ``moffat_beta`` that
        the randomisation would replace is refused (see
        `~astro_mantis.simulate.Randomisation`, Notes).
    n_galaxies : int, optional
        Catalog size when the catalog is drawn (default 1000).
    ra_range, dec_range : (float, float), optional
        The sky patch (degrees) the catalog is drawn in, uniformly on the
        sphere. Default: 180–190°, +20–+30°, a 10° × 10° field around the
        north Galactic pole (b ≈ +84°) covered by PS1 3π, GALEX AIS and
        unWISE alike.
    south_fraction : float, optional
        Fraction of the catalog placed instead in ``south_dec_range`` (same RA
        range), outside the PS1 footprint (dec < −30°), for footprint tests.
        Default 0.
    south_dec_range : (float, float), optional
        Default −40° to −32°. Must lie south of the PS1 footprint (max ≤ −30°).
    background_cell : float, optional
        Side (arcsec) of the sky cells that neighbours and stars are drawn in
        (default 60).
    pool_size : int, optional
        Number of distinct neighbour galaxies and stars drawn from the
        population model; cells pick from these pools (default 3000).
    randomisation : `~astro_mantis.simulate.Randomisation` or dict, optional
        Domain randomisation of observing conditions and galaxy shapes
        (`astro_mantis.simulate.randomise`). None (default): the nominal sky,
        exactly as without the option.

    Raises
    ------
    ValueError
        For an invalid value, naming the field (for a dict given as
        ``imaging``, ``population`` or ``randomisation``, an unknown key names
        the field and the key), or PSF settings of ``imaging`` that
        ``randomisation`` would override.
    """

    population: object = None
    imaging: ImagingConfig = field(default_factory=ImagingConfig)
    n_galaxies: int = 1000
    ra_range: tuple = (180.0, 190.0)
    dec_range: tuple = (20.0, 30.0)
    south_fraction: float = 0.0
    south_dec_range: tuple = (-40.0, -32.0)
    background_cell: float = 60.0
    pool_size: int = 3000
    randomisation: object = None

    def __repr__(self):
        # without randomisation the repr is the one from before the option existed, so
        # dataset manifests written then still match (make_dataset's resume check)
        names = [f.name for f in fields(self)
                 if not (f.name == "randomisation" and self.randomisation is None)]
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__name__}({inner})"

    def __post_init__(self):
        self.randomisation = _check_randomisation(self.randomisation)
        if isinstance(self.imaging, dict):
            self.imaging = config_from_dict("MockSkyConfig.imaging", ImagingConfig,
                                            self.imaging)
        if not isinstance(self.imaging, ImagingConfig):
            raise ValueError("MockSkyConfig.imaging must be an ImagingConfig, "
                             f"got {type(self.imaging).__name__}")
        if self.randomisation is not None:
            _check_psf_settings(self.imaging, self.randomisation)
        if self.population is not None:
            config_cls = _population().PopulationConfig
            if isinstance(self.population, dict):
                self.population = config_from_dict("MockSkyConfig.population", config_cls,
                                                   self.population)
            if not isinstance(self.population, config_cls):
                raise ValueError("MockSkyConfig.population must be a PopulationConfig, "
                                 f"got {type(self.population).__name__}")
        for name in ("n_galaxies", "pool_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"MockSkyConfig.{name} must be a non-negative integer, "
                                 f"got {value!r}")
            setattr(self, name, int(value))
        if self.pool_size < 1:
            raise ValueError(f"MockSkyConfig.pool_size must be positive, got {self.pool_size}")
        self.ra_range = _check_range("ra_range", self.ra_range, 0.0, 360.0)
        self.dec_range = _check_range("dec_range", self.dec_range, -90.0, 90.0)
        self.south_dec_range = _check_range("south_dec_range", self.south_dec_range,
                                            -90.0, 90.0)
        edge = _ps1_min_dec()
        if self.south_dec_range[1] > edge:  # the patch is there to lie outside PS1
            raise ValueError("MockSkyConfig.south_dec_range must lie outside the Pan-STARRS "
                             f"footprint (dec < {edge:g}°: max <= {edge:g}), "
                             f"got {self.south_dec_range!r}")
        self.south_fraction = check_fraction("MockSkyConfig.south_fraction",
                                             self.south_fraction)
        try:
            self.background_cell = float(self.background_cell)
        except (TypeError, ValueError):
            raise ValueError("MockSkyConfig.background_cell must be a number of arcsec, "
                             f"got {self.background_cell!r}") from None
        if not 5.0 <= self.background_cell <= 3600.0:
            raise ValueError("MockSkyConfig.background_cell must be within 5 and 3600 "
                             f"arcsec, got {self.background_cell!r}")


def _uniform_patch(rng, n, ra_range, dec_range):
    """``n`` positions uniform on the sphere inside an RA/Dec box."""
    ra = rng.uniform(ra_range[0], ra_range[1], n)
    s0, s1 = np.sin(np.radians(dec_range[0])), np.sin(np.radians(dec_range[1]))
    dec = np.degrees(np.arcsin(rng.uniform(s0, s1, n)))
    return ra % 360.0, dec


class MockSky:
    """A mock sky of galaxies that renders the surveys' cutout responses.

    Parameters
    ----------
    config : `MockSkyConfig`, optional
        Population, imaging and sky-patch settings (defaults if None).
    catalog : `~astropy.table.Table`, optional
        The galaxies. Needs ``ra`` and ``dec`` (deg) and ``mag_<band>``
        columns (AB, total, after Milky Way extinction) for the bands to
        draw; shape columns ``r_half_disk``, ``r_half_bulge`` (arcsec),
        ``bulge_frac``, ``q``, ``pa`` (deg east of north) and centring offsets
        ``dx``, ``dy`` (arcsec towards east and north: the light centre is at
        the catalog position plus the offset) are used when present; without
        radii a galaxy is a point source. If None, ``config.n_galaxies``
        galaxies are drawn with `~astro_mantis.simulate.draw_population` and
        placed uniformly in the configured sky patch.
    seed : int, optional
        Seed of everything random: catalog, neighbours, stars, noise,
        coverage. The same seed and request give byte-identical responses.

    Attributes
    ----------
    catalog : `~astropy.table.Table`
        The galaxies, ``ra`` and ``dec`` first.
    config : `MockSkyConfig`
    seed : int
    renderer : `~astro_mantis.simulate.render.ImageRenderer`

    Examples
    --------
    >>> from astropy.coordinates import SkyCoord
    >>> from astro_mantis.simulate import MockSky
    >>> sky = MockSky(seed=1)                                   # doctest: +SKIP
    >>> row = sky.catalog[0]                                    # doctest: +SKIP
    >>> hdul = sky.render("panstarrs", SkyCoord(row["ra"], row["dec"], unit="deg"),
    ...                   band="r")                             # doctest: +SKIP
    """

    def __init__(self, config=None, catalog=None, seed=0):
        if config is None:
            config = MockSkyConfig()
        if not isinstance(config, MockSkyConfig):
            raise ValueError(f"config must be a MockSkyConfig, got {type(config).__name__}")
        self.config = config
        self.seed = int(seed)
        self.renderer = ImageRenderer(config.imaging)
        self.catalog = self._draw_catalog() if catalog is None else self._check_catalog(catalog)
        self._prepare_index()
        self._cells = SkyCells(config.background_cell / 3600.0)
        self._cell_cache = OrderedDict()
        self._ps1_cache = OrderedDict()
        self._pools = None
        self._densities = None
        self._variants = {}  # renderer per (survey, PSF level, model, beta level)
        self._fields = (None if config.randomisation is None
                        else SkyCells(config.randomisation.field_size))
        self._field_cache = {}  # FieldDraw per field cell
        self._lock = threading.Lock()

    def __repr__(self):
        return (f"<MockSky seed={self.seed} galaxies={len(self.catalog)} "
                f"ra={self.config.ra_range} dec={self.config.dec_range}>")

    # ------------------------------------------------------------------ catalog
    def _draw_catalog(self):
        cfg = self.config
        n = cfg.n_galaxies
        pop = _population()
        rng = np.random.default_rng(stable_seed(self.seed, "catalog"))
        table = pop.draw_population(n, config=cfg.population, rng=rng)
        pos_rng = np.random.default_rng(stable_seed(self.seed, "positions"))
        ra, dec = _uniform_patch(pos_rng, n, cfg.ra_range, cfg.dec_range)
        south = pos_rng.random(n) < cfg.south_fraction
        if south.any():
            ra_s, dec_s = _uniform_patch(pos_rng, int(south.sum()), cfg.ra_range,
                                         cfg.south_dec_range)
            ra[south], dec[south] = ra_s, dec_s
        table = Table(table, copy=False)
        for name in ("ra", "dec"):
            if name in table.colnames:
                table.remove_column(name)
        table.add_column(np.arange(n), name="id", index=0)
        table.add_column(ra, name="ra", index=1)
        table.add_column(dec, name="dec", index=2)
        table["ra"].unit = "deg"
        table["dec"].unit = "deg"
        table.meta["seed"] = self.seed
        table.meta["patch"] = f"ra {cfg.ra_range} dec {cfg.dec_range}"
        if cfg.randomisation is not None:
            rng = np.random.default_rng(stable_seed(self.seed, "randomise-catalog"))
            perturb_catalog(table, cfg.randomisation, rng)
        return table

    @staticmethod
    def _check_catalog(catalog):
        if not isinstance(catalog, Table):
            try:
                catalog = Table(catalog)
            except Exception as exc:
                raise ValueError(f"catalog must be an astropy Table, got "
                                 f"{type(catalog).__name__}") from exc
        missing = [c for c in ("ra", "dec") if c not in catalog.colnames]
        if missing:
            raise ValueError(f"catalog needs columns 'ra' and 'dec' (deg); missing {missing}; "
                             f"it has {catalog.colnames}")
        return catalog

    def _prepare_index(self):
        """Plain arrays of the catalog, sorted by declination, for fast look-ups."""
        cat = self.catalog
        n = len(cat)

        def values(name, default):
            return _column_values(cat, name, default)

        ra = values("ra", np.nan) % 360.0
        dec = values("dec", np.nan)
        dx, dy = values("dx", 0.0), values("dy", 0.0)
        dx, dy = np.nan_to_num(dx), np.nan_to_num(dy)
        cosd = np.maximum(np.cos(np.radians(dec)), 1e-9)
        arrays = {"ra": (ra + dx / 3600.0 / cosd) % 360.0, "dec": dec + dy / 3600.0}
        defaults = {"r_half_disk": 0.0, "r_half_bulge": 0.0, "bulge_frac": 0.0, "q": 1.0,
                    "pa": 0.0}
        for name in _SHAPE_COLUMNS:
            arrays[name] = values(name, defaults[name])
        for band in SURVEY_OF_BAND:
            arrays[f"mag_{band}"] = values(f"mag_{band}", np.nan)
        order = np.argsort(arrays["dec"], kind="stable")
        self._cat = {k: v[order] for k, v in arrays.items()}
        rr, dd = np.radians(self._cat["ra"]), np.radians(self._cat["dec"])
        self._cat_xyz = np.stack([np.cos(dd) * np.cos(rr), np.cos(dd) * np.sin(rr),
                                  np.sin(dd)], axis=1)
        self._max_extent = 0.0
        self._cat_extent = np.zeros(n)
        if n:
            extent = np.maximum(6.0 * self._cat["r_half_disk"],
                                self.config.imaging.bulge_truncation * self._cat["r_half_bulge"])
            self._cat_extent = np.nan_to_num(extent)  # arcsec, as the renderer's stamps
            self._max_extent = float(np.nanmax(extent, initial=0.0))

    def _catalog_near(self, ra, dec, radius, by_extent=False):
        """Catalog sources within ``radius`` deg, as a dict of arrays.

        With ``by_extent``, within ``radius`` plus √2 times each galaxy's own
        extent (1 % slack): a superset of the sources whose stamps (squares
        of half-side extent plus margin, around the source) can reach a
        cutout of half-diagonal plus √2 times margin equal to ``radius``.
        """
        cat = self._cat
        reach = 1.01 * (radius + math.sqrt(2.0) * self._max_extent / 3600.0) if by_extent \
            else radius
        lo = np.searchsorted(cat["dec"], dec - reach, side="left")
        hi = np.searchsorted(cat["dec"], dec + reach, side="right")
        if hi <= lo:
            return None
        centre = _unit_vector(ra, dec)
        cosines = self._cat_xyz[lo:hi] @ centre
        if by_extent:
            limit = np.cos(np.radians(np.minimum(
                1.01 * (radius + math.sqrt(2.0) * self._cat_extent[lo:hi] / 3600.0), 180.0)))
        else:
            limit = math.cos(math.radians(radius))
        sel = lo + np.flatnonzero(cosines >= limit)
        if not len(sel):
            return None
        return {k: v[sel] for k, v in cat.items()}

    # ------------------------------------------------------------------ background
    def _background_pools(self):
        """Neighbour galaxies and stars to pick from (drawn once, on first use)."""
        with self._lock:
            if self._pools is None:
                self._pools = self._draw_pools()
            return self._pools

    @property
    def neighbour_density(self):
        """Faint field galaxies per square degree.

        ``ImagingConfig.neighbour_density`` if set, else the population
        model's ``background_number_density``.
        """
        value = self.config.imaging.neighbour_density
        if value is None:
            value = _population().background_number_density(self.config.population)
        return float(value)

    @property
    def star_density(self):
        """Stars per square degree.

        ``ImagingConfig.star_density`` if set, else the population model's
        ``star_number_density``.
        """
        value = self.config.imaging.star_density
        if value is None:
            value = _population().star_number_density(self.config.population)
        return float(value)

    def _draw_pools(self):
        n = self.config.pool_size
        pools = {}
        if self.neighbour_density > 0 or self.star_density > 0:
            pop = _population()
        if self.neighbour_density > 0:
            rng = np.random.default_rng(stable_seed(self.seed, "neighbour-pool"))
            pools["galaxy"] = _pool_arrays(
                pop.draw_background(n, config=self.config.population, rng=rng))
        if self.star_density > 0:
            rng = np.random.default_rng(stable_seed(self.seed, "star-pool"))
            pools["star"] = _pool_arrays(pop.draw_stars(n, rng=rng, config=self.config.population),
                                         stars=True)
        return pools

    def _cell_sources(self, j, i):
        """The neighbours and stars of one sky cell (deterministic, cached)."""
        key = (j, i)
        with self._lock:
            hit = self._cell_cache.get(key)
            if hit is not None:
                self._cell_cache.move_to_end(key)
                return hit
        pools = self._background_pools()
        ra_lo, ra_hi, dec_lo, dec_hi = self._cells.bounds(j, i)
        area = (math.sin(math.radians(dec_hi)) - math.sin(math.radians(dec_lo))) \
            * math.radians(ra_hi - ra_lo) * (180.0 / math.pi) ** 2
        rng = np.random.default_rng(stable_seed(self.seed, "cell", j, i))
        scales = self._density_scales(0.5 * (ra_lo + ra_hi), 0.5 * (dec_lo + dec_hi))
        parts = []
        for kind, density, scale in (("galaxy", self._densities[0], scales[0]),
                                     ("star", self._densities[1], scales[1])):
            count = rng.poisson(density * scale * area) if density * scale > 0 else 0
            if not count:
                continue
            pool = pools[kind]
            pick = rng.integers(0, len(pool["star"]), count)
            part = {k: v[pick] for k, v in pool.items()}
            part["ra"], part["dec"] = _uniform_patch(rng, count, (ra_lo, ra_hi), (dec_lo, dec_hi))
            if kind == "galaxy":
                part["pa"] = rng.uniform(0.0, 180.0, count)
            parts.append(part)
        out = _concat(parts)
        with self._lock:
            self._cell_cache[key] = out
            while len(self._cell_cache) > _CELL_CACHE:
                self._cell_cache.popitem(last=False)
        return out

    def _background_near(self, ra, dec, radius):
        if self._densities is None:
            self._densities = (self.neighbour_density, self.star_density)
        if self._densities[0] <= 0 and self._densities[1] <= 0:
            return None
        parts = [self._cell_sources(j, i) for j, i in self._cells.around(ra, dec, radius)]
        out = _concat([p for p in parts if p is not None])
        if out is None:
            return None
        keep = _unit_xyz(out["ra"], out["dec"]) @ _unit_vector(ra, dec) \
            >= math.cos(math.radians(radius))
        return {k: v[keep] for k, v in out.items()} if keep.any() else None

    def sources_near(self, coord, radius):
        """Everything the sky would draw within ``radius`` of a position.

        Parameters
        ----------
        coord : `~astropy.coordinates.SkyCoord` or (float, float)
            Centre (degrees for a pair).
        radius : `~astropy.units.Quantity` or float
            Angular radius (degrees for a float).

        Returns
        -------
        `~astropy.table.Table`
            Columns ``kind`` (``"catalog"``, ``"galaxy"`` for neighbours,
            ``"star"``), ``ra``, ``dec`` (light centres, deg), shape columns
            and ``mag_<band>`` for the nine bands.
        """
        ra, dec = coord_to_radec(coord)
        radius = float(getattr(radius, "to_value", lambda unit: radius)("deg"))
        tables = []
        for kind, part in (("catalog", self._catalog_near(ra, dec, radius)),
                           ("background", self._background_near(ra, dec, radius))):
            if part is None:
                continue
            t = Table({k: v for k, v in part.items() if k != "star"})
            if kind == "catalog":
                t["kind"] = "catalog"
            else:
                t["kind"] = np.where(part["star"], "star", "galaxy")
            tables.append(t)
        if not tables:
            return Table(names=["kind", "ra", "dec"], dtype=[str, float, float])
        from astropy.table import vstack

        out = vstack(tables)
        return out[["kind"] + [c for c in out.colnames if c != "kind"]]

    # ------------------------------------------------------------------ randomisation
    def _field(self, ra, dec):
        """The `~astro_mantis.simulate.randomise.FieldDraw` at a position (None: nominal)."""
        if self._fields is None:
            return None
        cell = self._fields.index(ra, dec)
        draw = self._field_cache.get(cell)
        if draw is None:
            draw = field_draw(self.config.randomisation, self.seed, cell)
            with self._lock:
                if len(self._field_cache) >= _CELL_CACHE:
                    self._field_cache.clear()
                self._field_cache[cell] = draw
        return draw

    def field_conditions(self, coord):
        """The observing conditions of the field containing a position.

        With ``MockSkyConfig.randomisation`` set, every cutout centred in a
        field of ``Randomisation.field_size`` degrees is observed under that
        field's draw; without it, the nominal conditions everywhere.

        Parameters
        ----------
        coord : `~astropy.coordinates.SkyCoord` or (float, float)
            Position (degrees for a pair).

        Returns
        -------
        dict
            ``field`` (row, column of the field grid; None without
            randomisation), ``psf_fwhm`` (band → arcsec), ``psf_model``
            (survey → PSF family), ``moffat_beta``, ``noise_scale`` (factor on
            the per-pixel sky noise), ``zero_point`` (band → Δzp, mag; the
            band's flux is multiplied by ``10**(-0.4 Δzp)``),
            ``neighbour_scale`` and ``star_scale`` (factors on the densities).
        """
        ra, dec = coord_to_radec(coord)
        return _conditions_dict(self.config.randomisation, self._field(ra, dec),
                                            self.config.imaging)

    def _density_scales(self, ra, dec):
        """Factors on the (neighbour, star) densities at a position."""
        draw = self._field(ra, dec)
        return (1.0, 1.0) if draw is None else (draw.neighbour_scale, draw.star_scale)

    def _renderer_for(self, survey, draw):
        """The renderer of a survey's bands under a field's conditions (cached variants)."""
        if draw is None:
            return self.renderer
        key = draw.variant_key(survey)
        with self._lock:
            hit = self._variants.get(key)
        if hit is None:
            hit = ImageRenderer(variant_imaging(self.config.imaging, draw, survey))
            with self._lock:
                hit = self._variants.setdefault(key, hit)
        _trim_psf_cache(hit, _VARIANT_PSF_BYTES)
        return hit

    def _add_noise(self, image, band, pixscale, exptime, seed, draw):
        """Sky and source noise; under randomisation the nominal sky noise times its factor."""
        if draw is None:
            return self.renderer.add_noise(image, band, pixscale, exptime, seed)
        imaging = self.config.imaging
        survey = SURVEY_OF_BAND[band]
        if survey == "panstarrs" and exptime is None:
            exptime = imaging.ps1_exptime[band]
        sigma = self.renderer.sky_sigma(band, pixscale, exptime) * draw.noise_scale
        return sky_noise(image, sigma, imaging.gain[band], seed,
                         sky_subtracted=imaging.sky_subtracted[survey])

    # ------------------------------------------------------------------ coverage
    def galex_covered(self, coord):
        """Whether GALEX has data at a position (False inside a coverage hole).

        Parameters
        ----------
        coord : `~astropy.coordinates.SkyCoord` or (float, float)

        Returns
        -------
        bool
        """
        ra, dec = coord_to_radec(coord)
        imaging = self.config.imaging
        return galex_coverage(self.seed, ra, dec, imaging.galex_hole_fraction,
                              imaging.galex_hole_cell)

    def _chip_gap(self, image, band, ra, dec):
        ps1_chip_gap(image, self.seed, band, ra, dec, self.config.imaging.ps1_nan_fraction)

    # ------------------------------------------------------------------ render
    def render(self, survey, coord, size=None, pixscale=None, band=None, skycell_center=None,
               *, noise=None):
        """Render a cutout exactly as the survey service sends it.

        Parameters
        ----------
        survey : {"galex", "panstarrs", "unwise"}
            Which service's output to imitate (``"ps1"`` is accepted for
            ``"panstarrs"``).
        coord : `~astropy.coordinates.SkyCoord` or (float, float)
            Requested cutout centre (ICRS; degrees for a pair).
        size : int, optional
            Cutout side in pixels. Defaults: 32 (GALEX, unWISE), 170 (PS1).
        pixscale : float, optional
            Arcsec per pixel. Defaults: 1.5 (GALEX), 2.75 (unWISE), 0.25 (PS1).
        band : str, int or sequence, optional
            PS1: one band, required (``"g"`` ... ``"y"``), as ``fitscut.cgi``
            serves one band per file. GALEX/unWISE: None for all bands in
            native order (NUV, FUV / W1, W2), or which planes to return.
        skycell_center : (float, float), optional
            PS1 only: the skycell centre (deg), used as the WCS ``CRVAL`` (so
            ``CRPIX`` may lie far outside the cutout, as real ``fitscut.cgi``
            output does) and to draw the stack's ``EXPTIME``. Default: the
            request itself.
        noise : bool, optional
            Override ``ImagingConfig.noise`` (False: noiseless images).

        Returns
        -------
        `~astropy.io.fits.HDUList`
            PS1: a (size, size) float32 image in linear counts with
            ``EXPTIME`` and ``FILTER``; one plane may be crossed by a NaN
            stripe (chip gap). GALEX/unWISE: a (nbands, size, size) float32
            cube with ``BANDS``, ``BAND0`` ..., ``SURVEY``, ``VERSION``,
            ``IMAGEW``, ``IMAGEH``; all zero inside a GALEX coverage hole.

        Raises
        ------
        ValueError
            For an unknown survey or band, a PS1 request without a band, or a
            non-positive size or pixel scale.
        """
        survey = normalise_survey(survey)
        ra, dec = coord_to_radec(coord)
        size, pixscale = default_geometry(survey, size, pixscale)
        if survey == "panstarrs":
            if band is None:
                raise ValueError("a PS1 render needs one band: band='g', 'r', 'i', 'z' or 'y'")
            native = normalise_band("panstarrs", band)
            image, (crval, crpix, cd), exptime = self._ps1_image(
                native, ra, dec, size, pixscale, skycell_center, noise)
            return ps1_hdulist(image, native, crval, crpix, cd, exptime)
        natives = band_list(survey, band)
        cube, (crval, crpix, cd) = self._viewer_cube(survey, natives, ra, dec, size, pixscale,
                                                    noise)
        return viewer_hdulist(cube, survey, natives, crval, crpix, cd)

    def render_arrays(self, coord, surveys=("galex", "panstarrs", "unwise"), *, noise=None):
        """The default cutouts of one position as the package's survey readers return them.

        The pixels are those of `render` at the services' default geometry
        (PS1 with the tangent point at the request, ``skycell_center=None``),
        without building the FITS files: what
        `astro_mantis.surveys.Survey.read` makes of the responses. Unlike a
        served PS1 cutout, whose stack ``EXPTIME`` is drawn at its skycell's
        centre, the ``EXPTIME`` is drawn at the requested position, so in
        `~astro_mantis.simulate.make_dataset` each galaxy has its own.

        Parameters
        ----------
        coord : `~astropy.coordinates.SkyCoord` or (float, float)
            Cutout centre (ICRS; degrees for a pair).
        surveys : sequence of str, optional
            Surveys to render (default all three).
        noise : bool, optional
            Override ``ImagingConfig.noise``.

        Returns
        -------
        dict
            Survey name → ``(data, info)``. ``data`` is a float32 array
            (nbands, size, size) in the survey's model channel order (GALEX
            NUV, FUV; PS1 g r i z y; unWISE W1, W2) and native unit, or None
            where the reader finds no coverage (an all-zero GALEX cube in a
            coverage hole). ``info`` holds ``"exptime"`` (PS1: the five
            stacks' ``EXPTIME``, s) and ``"covered"`` (bool).
        """
        ra, dec = coord_to_radec(coord)
        out = {}
        for survey in surveys:
            survey = normalise_survey(survey)
            size, pixscale = default_geometry(survey)
            if survey == "panstarrs":
                planes, exptimes = [], []
                for native in _PS1_BANDS:
                    image, _, exptime = self._ps1_image(native, ra, dec, size, pixscale, None,
                                                        noise)
                    planes.append(image)
                    exptimes.append(exptime)
                out[survey] = (np.stack(planes), {"exptime": exptimes, "covered": True})
                continue
            natives = band_list(survey, None)
            cube, _ = self._viewer_cube(survey, natives, ra, dec, size, pixscale, noise)
            finite = cube[np.isfinite(cube)]
            covered = bool(np.any(finite))
            out[survey] = (cube if covered else None, {"covered": covered})
        return out

    def _ps1_image(self, native, ra, dec, size, pixscale, skycell_center, noise):
        """One PS1 band: (float32 image, WCS geometry, EXPTIME), as `render` sends it."""
        if noise is None:
            noise = self.config.imaging.noise
        crval, crpix, cd = ps1_geometry(ra, dec, size, pixscale, skycell_center)
        cube, exptimes = self._ps1_clean(ra, dec, size, pixscale, crval, crpix, cd)
        i = _PS1_BANDS.index(native)
        image = cube[i]
        if noise:
            image = self._add_noise(image, native, pixscale, exptimes[i],
                                    self._noise_seed("panstarrs", native, ra, dec, size,
                                                     pixscale), self._field(ra, dec))
        image = image.astype(np.float32)
        self._chip_gap(image, native, ra, dec)
        return image, (crval, crpix, cd), exptimes[i]

    def _viewer_cube(self, survey, natives, ra, dec, size, pixscale, noise):
        """GALEX or unWISE planes (float32 cube in ``natives`` order) and WCS geometry."""
        if noise is None:
            noise = self.config.imaging.noise
        geometry = viewer_geometry(ra, dec, size, pixscale)
        crval, crpix, cd = geometry
        if survey == "galex" and not self.galex_covered((ra, dec)):
            return np.zeros((len(natives), size, size), dtype=np.float32), geometry
        wcs = _tan_wcs(crval, crpix, cd=cd)
        draw = self._field(ra, dec)
        cube = self._render_clean(survey, natives, ra, dec, wcs, size, pixscale,
                                  [None] * len(natives), draw)
        if noise:
            for i, native in enumerate(natives):
                cube[i] = self._add_noise(
                    cube[i], NATIVE_TO_BAND[(survey, native)], pixscale, None,
                    self._noise_seed(survey, native, ra, dec, size, pixscale), draw)
        return cube, geometry

    def _noise_seed(self, survey, native, ra, dec, size, pixscale):
        return noise_seed(self.seed, survey, native, ra, dec, size, pixscale)

    def _ps1_clean(self, ra, dec, size, pixscale, crval, crpix, cd):
        """Noiseless g r i z y images of one fitscut request, and their EXPTIMEs.

        ``fitscut.cgi`` serves one band per request; the five requests of a
        position share one multi-band render through a small cache.
        """
        key = (round(ra, 9), round(dec, 9), size, round(pixscale, 9), round(crval[0], 9),
               round(crval[1], 9))
        with self._lock:
            hit = self._ps1_cache.get(key)
            if hit is not None:
                self._ps1_cache.move_to_end(key)
                return hit
        imaging = self.config.imaging
        exptimes = [ps1_stack_exptime(self.seed, b, crval[0], crval[1],
                                      typical=imaging.ps1_exptime[b],
                                      scatter=imaging.ps1_exptime_scatter)
                    for b in _PS1_BANDS]
        wcs = _tan_wcs(crval, crpix, cdelt=cd)
        cube = self._render_clean("panstarrs", list(_PS1_BANDS), ra, dec, wcs, size, pixscale,
                                  exptimes, self._field(ra, dec))
        cube.setflags(write=False)
        with self._lock:
            self._ps1_cache[key] = (cube, exptimes)
            while len(self._ps1_cache) > _PS1_CACHE:
                self._ps1_cache.popitem(last=False)
        return cube, exptimes

    def _render_clean(self, survey, natives, ra, dec, wcs, size, pixscale, exptimes,
                      draw=None):
        """Noiseless images (float32) of the given native bands of one cutout.

        ``draw``: the field's randomised conditions (PSF variant, zero points), or None.
        """
        imaging = self.config.imaging
        renderer = self._renderer_for(survey, draw)
        bands = [NATIVE_TO_BAND[(survey, b)] for b in natives]
        half_diag = size * pixscale / 3600.0 / math.sqrt(2.0)
        fwhm = max(renderer.imaging.psf_fwhm[b] for b in bands)
        margin = (4.0 * fwhm + 2.0 * pixscale) / 3600.0
        sources = []
        # stamps are squares: a source is drawn if its square reaches the cutout's
        cat = self._catalog_near(ra, dec, half_diag + math.sqrt(2.0) * margin, by_extent=True)
        if cat is not None:
            cat = dict(cat)
            cat["field"] = np.zeros(len(cat["ra"]), bool)
            sources.append(cat)
        background = self._background_near(ra, dec, half_diag + margin + 20.0 / 3600.0)
        if background is not None:
            # neighbours and stars too faint to matter in every band are skipped
            background = dict(background)
            for band, exptime in zip(bands, exptimes):
                limit = imaging.band_depth(band, exptime) + imaging.neighbour_depth_margin
                mags = background[f"mag_{band}"]
                background[f"mag_{band}"] = np.where(mags < limit, mags, np.nan)
            background.pop("star", None)
            background["field"] = np.ones(len(background["ra"]), bool)
            sources.append(background)
        sources = _concat(sources) or {}
        cube = renderer.render_bands(bands, sources, wcs, size, pixscale, exptimes, noise=False)
        if draw is not None:  # calibration error: the source flux moves, the sky noise does not
            for i, band in enumerate(bands):
                cube[i] *= np.float32(10.0 ** (-0.4 * draw.zero_point[band]))
        return cube


def _trim_psf_cache(renderer, limit):
    """Bound a renderer's cache of PSF k-images: past ``limit`` bytes, drop the largest.

    A few dozen randomisation variants each fill their own cache; the large
    k-images (of rare large stamps) are most of the memory and cheap to redraw
    when needed again, the many small ones are kept.
    """
    cache = renderer._psf_k
    sizes = {k: getattr(v, "nbytes", 0) for k, v in list(cache.items())}
    total = sum(sizes.values())
    if total <= limit:
        return
    for k in sorted(sizes, key=sizes.get, reverse=True):
        cache.pop(k, None)
        total -= sizes[k]
        if total <= limit // 2:
            break


def noise_seed(seed, survey, native, ra, dec, size, pixscale):
    """Seed of the noise of one band of one cutout of the mock sky.

    Parameters
    ----------
    seed : int
        Sky seed.
    survey : str
        Canonical survey name.
    native : str or int
        Native band identifier.
    ra, dec : float
        Requested centre (deg; rounded to 1e-6 deg).
    size : int
        Cutout side (pixels).
    pixscale : float
        Arcsec per pixel.

    Returns
    -------
    int
    """
    return stable_seed(seed, "noise", survey, str(native), round(ra, 6), round(dec, 6),
                       size, round(pixscale, 6))


def galex_coverage(seed, ra, dec, fraction, cell):
    """Whether GALEX covers a position of the mock sky of a given seed.

    The sky is cut into cells of ``cell`` degrees (`MockSky`'s cell grid);
    each cell lacks GALEX data with probability ``fraction``, drawn from
    ``(seed, cell)``. Numpy only.

    Parameters
    ----------
    seed : int
        Sky seed.
    ra, dec : float
        Position (deg).
    fraction : float
        Fraction of cells without coverage (``ImagingConfig.galex_hole_fraction``).
    cell : float
        Cell side (deg; ``ImagingConfig.galex_hole_cell``).

    Returns
    -------
    bool
    """
    if fraction <= 0:
        return True
    if fraction >= 1:
        return False
    j, i = SkyCells(cell).index(ra, dec)
    rng = np.random.default_rng(stable_seed(seed, "galex-hole", j, i))
    return bool(rng.random() >= fraction)


def ps1_chip_gap(image, seed, band, ra, dec, fraction):
    """Cross a PS1 image with a NaN stripe (chip gap), in place, if its draw says so.

    Whether (probability ``fraction``), where, how wide (2 to 8 pixels) and
    in which direction derive from ``(seed, band, position)``. Numpy only.

    Parameters
    ----------
    image : `numpy.ndarray`, shape (ny, nx)
        Float image, modified in place.
    seed : int
        Sky seed.
    band : str
        PS1 band.
    ra, dec : float
        Requested position (deg).
    fraction : float
        ``ImagingConfig.ps1_nan_fraction``.

    Returns
    -------
    bool
        Whether a stripe was drawn.
    """
    if fraction <= 0:
        return False
    rng = np.random.default_rng(stable_seed(seed, "chipgap", band, round(ra, 6), round(dec, 6)))
    if rng.random() >= fraction:
        return False
    ny, nx = image.shape
    vertical = rng.random() < 0.5
    n = nx if vertical else ny
    width = int(rng.integers(2, 9))
    start = int(rng.integers(0, max(1, n - width)))
    if vertical:
        image[:, start:start + width] = np.nan
    else:
        image[start:start + width, :] = np.nan
    return True


def _unit_vector(ra, dec):
    r, d = math.radians(ra), math.radians(dec)
    return np.array([math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d)])


def _unit_xyz(ra, dec):
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=1)


def _tan_wcs(crval, crpix, cdelt=None, cd=None):
    """A celestial TAN `~astropy.wcs.WCS`, equal to the one its header cards describe."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(crval)
    wcs.wcs.crpix = list(crpix)
    if cd is not None:
        wcs.wcs.cd = [[cd[0], 0.0], [0.0, cd[1]]]
    else:
        wcs.wcs.cdelt = list(cdelt)
    wcs.wcs.set()
    return wcs


#: Units the renderer expects, per column (a column with another unit is converted).
_COLUMN_UNITS = {"ra": "deg", "dec": "deg", "pa": "deg", "dx": "arcsec", "dy": "arcsec",
                 "r_half_disk": "arcsec", "r_half_bulge": "arcsec"}


def _column_values(table, name, default):
    """A catalog column as a float array in the renderer's unit (masked → ``default``).

    A missing column gives ``default`` everywhere; magnitudes (``mag_*``) may
    carry ``mag`` units, angles and radii any angular unit.
    """
    n = len(table)
    if name not in table.colnames:
        return np.full(n, default, dtype=float)
    col = table[name]
    unit = getattr(col, "unit", None)
    if unit is not None and str(unit) not in ("", "mag") and name in _COLUMN_UNITS:
        data = np.ma.filled(np.ma.asarray(col, dtype=float), np.nan)
        try:
            data = (data * unit).to_value(_COLUMN_UNITS[name])
        except Exception as exc:
            raise ValueError(f"catalog column {name!r} has unit {unit}, which does not "
                             f"convert to {_COLUMN_UNITS[name]}") from exc
    else:
        data = np.ma.filled(np.ma.asarray(col, dtype=float), np.nan)
    data = np.asarray(data, dtype=float)
    return np.where(np.isfinite(data), data, default) if np.isfinite(default) else data


def _pool_arrays(table, stars=False):
    """Columns of a population table that rendering needs, as float arrays."""
    n = len(table)
    out = {}
    for band in SURVEY_OF_BAND:
        out[f"mag_{band}"] = _column_values(table, f"mag_{band}", np.nan)
    defaults = {"r_half_disk": 0.0, "r_half_bulge": 0.0, "bulge_frac": 0.0, "q": 1.0, "pa": 0.0}
    for name, default in defaults.items():
        out[name] = np.full(n, default) if stars else _column_values(table, name, default)
    out["star"] = np.full(n, bool(stars))
    return out


def _concat(parts):
    """Concatenate dicts of equal keys; None when there is nothing."""
    parts = [p for p in parts if p is not None and len(p.get("ra", ()))]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    keys = set(parts[0])
    for p in parts[1:]:
        keys &= set(p)
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}

