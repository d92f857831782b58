# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The smallest flux errors a mock galaxy's own cutouts allow.

`flux_errors` gives, for each galaxy of a `~astro_mantis.simulate.MockSky` and each of
the nine bands, the 1σ error of the best linear flux estimate on the cutouts the sky
renders for it: a matched filter with the galaxy's true profile, convolved with its
field's PSF and integrated over the cutout's pixels, under the field's sky noise. For
Gaussian sky noise that is the Cramér–Rao bound of a flux whose shape is known:

.. math::

    \\sigma_F = \\sigma_{\\rm pix} \\Big/ \\sqrt{\\textstyle\\sum_i p_i^2},

with :math:`p_i` the unit-flux profile in pixel *i* and :math:`\\sigma_{\\rm pix}` the
per-pixel sky noise. For a point source under the nominal conditions it is a fifth of
the band's 5σ depth (`~astro_mantis.simulate.render.DEFAULT_DEPTH`), the noise the
catalog baselines of `astro_mantis.training.baseline` assume; an extended galaxy, a
wider PSF, a noisier field or a shorter Pan-STARRS stack make it larger.

What it leaves out, so that real measurements can only do worse: the source's own
shot noise (it matters only where the fractional error is already a few thousandths:
for a 1″ disk in Pan-STARRS r it adds 2 % to the error at r = 20 and 12 % at r = 18),
neighbours, stars and chip gaps, and the profile's uncertainty (it is taken as known). Zero-point
errors are not noise and are not included (``MockSky.field_conditions`` gives them).

How it is computed
==================
By Parseval's theorem, :math:`\\sum_i p_i^2` is proportional to
:math:`\\int |\\tilde g(k)\\,\\tilde\\psi(k)\\,\\tilde\\Pi(k)|^2\\, d^2k` (galaxy, PSF
and pixel transforms). The same integral with :math:`\\tilde g = 1` under the nominal
PSF sets the nominal point-source noise, so only the ratio of the two is needed. The
integral runs on a polar grid of wavenumbers (logarithmic in radius, 16 angles); the
galaxy transforms are the analytic ones of the renderer's fast path (exponential disk,
tabulated truncated de Vaucouleurs bulge, axis ratio and position angle). Aliasing of
the undersampled GALEX and unWISE PSFs is left out of both integrals alike.
"""
import math

import numpy as np

from ..surveys import get_survey
from .photometry import BANDS
from .render import _EXP_HALF_LIGHT, NATIVE_OF_BAND, SURVEY_OF_BAND, ImageRenderer
from .service_format import default_geometry, ps1_stack_exptime

__all__ = ["flux_errors"]

#: Wavenumbers of the integration grid (rad/arcsec) and its angles.
_K = np.concatenate([[0.0], np.geomspace(1e-3, 40.0, 160)])
_N_ANGLES = 16
_SHAPE_COLUMNS = ("r_half_disk", "r_half_bulge", "bulge_frac", "q", "pa")


def _grid():
    """Polar grid: (kn, ke) components (n_k, n_angles) and quadrature weights k dk dθ."""
    theta = (np.arange(_N_ANGLES) + 0.5) * math.pi / _N_ANGLES
    dk = np.gradient(_K)
    kn = _K[:, None] * np.cos(theta)[None, :]
    ke = _K[:, None] * np.sin(theta)[None, :]
    weights = (_K * dk)[:, None] * np.full(_N_ANGLES, math.pi / _N_ANGLES)[None, :]
    return kn, ke, weights


def _band_weight(renderer, band, pixscale, kn, ke, weights):
    """|PSF ⊗ pixel|² on the grid times the quadrature weights, flattened."""
    import galsim

    psf = renderer.psf(band)
    radial = np.array([abs(psf.kValue(galsim.PositionD(float(k), 0.0))) for k in _K])
    half = 0.5 * pixscale
    pixel = np.sinc(kn * half / math.pi) * np.sinc(ke * half / math.pi)
    return ((radial[:, None] * pixel) ** 2 * weights).ravel()


def _profile_power(shape, kn, ke, table_x2, table_k):
    """|g̃(k)|² of unit-flux galaxies on the grid, shape (N, n_k * n_angles)."""
    def col(name, default):
        values = np.asarray(shape.get(name, np.full(len(shape["ra"]), default)), float)
        return np.where(np.isfinite(values), values, default)

    r_disk, r_bulge = col("r_half_disk", 0.0), col("r_half_bulge", 0.0)
    bfrac = np.clip(col("bulge_frac", 0.0), 0.0, 1.0)
    q = np.clip(col("q", 1.0), 0.05, 1.0)
    beta = np.radians(col("pa", 0.0))
    has_disk = (r_disk > 0) & (bfrac < 1)
    has_bulge = (r_bulge > 0) & (bfrac > 0)
    w_disk = np.where(has_disk, 1.0 - bfrac, 0.0)
    w_bulge = np.where(has_bulge, bfrac, 0.0)
    total = w_disk + w_bulge
    point = total <= 0
    w_disk = np.where(point, 0.0, w_disk / np.where(point, 1.0, total))
    w_bulge = np.where(point, 0.0, w_bulge / np.where(point, 1.0, total))
    kn, ke = kn.ravel()[None, :], ke.ravel()[None, :]
    cb, sb = np.cos(beta)[:, None], np.sin(beta)[:, None]
    qc = q[:, None]
    k2 = (kn * cb + ke * sb) ** 2 / qc + (ke * cb - kn * sb) ** 2 * qc
    base = 1.0 + k2 * ((r_disk / _EXP_HALF_LIGHT) ** 2)[:, None]
    amp = w_disk[:, None] / (base * np.sqrt(base))
    if has_bulge.any():
        amp += w_bulge[:, None] * np.interp(k2 * (r_bulge**2)[:, None], table_x2, table_k,
                                            right=0.0)
    amp[point] = 1.0
    return amp * amp


def flux_errors(sky, catalog=None, bands=None, chunk=2048):
    """Each galaxy's smallest flux error on its own cutouts (matched filter, sky-limited).

    Parameters
    ----------
    sky : `~astro_mantis.simulate.MockSky`
        The sky that renders the galaxies (its observing conditions, field draws,
        Pan-STARRS stack exposure times and GALEX coverage are used). The exposure
        times are those drawn at each galaxy's own position, the tangent point of
        the cutouts `~astro_mantis.simulate.make_dataset` stores
        (`~astro_mantis.simulate.MockSky.render_arrays`), not those of a skycell
        centre that a ``render(..., skycell_center=...)`` request names.
    catalog : `~astropy.table.Table` or dict of arrays, optional
        The galaxies: ``ra``, ``dec`` (deg) and the shape columns ``r_half_disk``,
        ``r_half_bulge`` (arcsec), ``bulge_frac``, ``q``, ``pa`` (deg; missing shape
        columns or both radii zero make point sources). Default: ``sky.catalog``.
        Rows of a shard's ``catalog`` (`~astro_mantis.simulate.load_shard`) work.
    bands : sequence of str, optional
        Default the nine model bands (`~astro_mantis.simulate.photometry.BANDS`).
    chunk : int, optional
        Galaxies per block of the computation (memory: about ``chunk`` × 0.1 MB).

    Returns
    -------
    `numpy.ndarray`, shape (N, nbands)
        1σ flux errors in maggies (AB), one row per catalog row. ``inf`` where the band
        has no data: a GALEX coverage hole (the cutout is empty) and outside a survey's
        footprint (``Survey.in_footprint`` of `astro_mantis.surveys`: Pan-STARRS south
        of dec −30°, where `~astro_mantis.simulate.make_dataset` stores all-NaN
        cutouts); NaN in every band of a row without a finite position. Non-finite
        shape values are read as the renderer reads them (radii 0, ``q`` 1, ``pa`` 0).

    Raises
    ------
    ValueError
        If the catalog lacks ``ra`` or ``dec``, a band is unknown, or ``chunk`` is not
        a positive integer.

    Notes
    -----
    The bound leaves out the galaxy's own shot noise, neighbours, stars, chip gaps and
    the profile's uncertainty, so real measurements can only do worse (:ref:`simulate`;
    ``benchmarks/bench_forced_photometry.py`` measures how much worse). For a point
    source under the nominal conditions it equals a fifth of the band's 5σ depth to
    within the integration's accuracy (about 1 %).

    Examples
    --------
    >>> from astro_mantis.simulate import MockSky, MockSkyConfig, flux_errors
    >>> sky = MockSky(MockSkyConfig(n_galaxies=5), seed=1)
    >>> flux_errors(sky).shape
    (5, 9)
    """
    from .sky import MockSky

    if not isinstance(sky, MockSky):
        raise ValueError(f"sky must be a MockSky, got {type(sky).__name__}")
    bands = list(BANDS if bands is None else bands)
    unknown = [b for b in bands if b not in SURVEY_OF_BAND]
    if unknown:
        raise ValueError(f"unknown band(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(BANDS)}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    catalog = sky.catalog if catalog is None else catalog
    names = getattr(catalog, "colnames", None) or getattr(getattr(catalog, "dtype", None),
                                                        "names", None) or list(catalog)
    missing = [c for c in ("ra", "dec") if c not in names]
    if missing:
        raise ValueError(f"catalog lacks column(s) {', '.join(missing)}")
    shape = {c: np.asarray(getattr(catalog[c], "value", catalog[c]), float)
             for c in ("ra", "dec") + _SHAPE_COLUMNS if c in names}
    placed = np.isfinite(shape["ra"]) & np.isfinite(shape["dec"])
    if not placed.all():  # no position, no cutout: NaN rows, every row kept
        out = np.full((len(placed), len(bands)), np.nan)
        out[placed] = flux_errors(sky, {c: v[placed] for c, v in shape.items()}, bands,
                                  chunk)
        return out
    n = len(shape["ra"])
    imaging = sky.config.imaging
    nominal = ImageRenderer(imaging)
    kn, ke, weights = _grid()
    table_x, table_k = nominal._devauc_table()
    table_x2 = table_x**2

    # every galaxy's field draw, and the renderer variant of each survey in it
    draws = [sky._field(ra, dec) for ra, dec in zip(shape["ra"], shape["dec"])]
    noise = np.array([1.0 if d is None else d.noise_scale for d in draws])
    covered = np.array([sky.galex_covered((ra, dec))
                        for ra, dec in zip(shape["ra"], shape["dec"])], bool)
    out = np.empty((n, len(bands)))
    variant_of = {}
    columns = {}
    for j, band in enumerate(bands):
        survey = SURVEY_OF_BAND[band]
        pixscale = default_geometry(survey)[1]
        keys = [None if d is None else d.variant_key(survey) for d in draws]
        for key, d in zip(keys, draws):
            if (band, key) not in columns:
                renderer = nominal if d is None else sky._renderer_for(survey, d)
                columns[(band, key)] = len(columns)
                variant_of[(band, key)] = _band_weight(renderer, band, pixscale, kn, ke,
                                                       weights)
        nominal_power = float(_band_weight(nominal, band, pixscale, kn, ke, weights).sum())
        sigma = 10.0 ** (-0.4 * imaging.depth[band]) / 5.0 * noise
        if survey == "panstarrs":
            typical = imaging.ps1_exptime[band]
            exptime = np.array([ps1_stack_exptime(sky.seed, NATIVE_OF_BAND[band], ra, dec,
                                                  typical=typical,
                                                  scatter=imaging.ps1_exptime_scatter)
                                for ra, dec in zip(shape["ra"], shape["dec"])])
            sigma = sigma * np.sqrt(typical / exptime)
        out[:, j] = sigma * math.sqrt(nominal_power)
        shape[f"_key_{band}"] = np.array([columns[(band, k)] for k in keys])
    order = sorted(columns, key=columns.get)
    matrix = np.stack([variant_of[k] for k in order], axis=1)
    index = {b: shape.pop(f"_key_{b}") for b in bands}
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        power = _profile_power({c: v[sl] for c, v in shape.items()}, kn, ke, table_x2,
                               table_k)
        integrals = power @ matrix
        rows = np.arange(sl.stop - sl.start)
        for j, band in enumerate(bands):
            out[sl, j] /= np.sqrt(integrals[rows, index[band][sl]])
    # no data, no measurement: a GALEX coverage hole (the cutout is empty) and a survey's
    # footprint (Pan-STARRS south of dec -30 deg, where datasets store all-NaN cutouts)
    outside = {}
    for j, band in enumerate(bands):
        survey = SURVEY_OF_BAND[band]
        if survey not in outside:
            footprint = get_survey(survey)
            outside[survey] = ~np.array([bool(footprint.in_footprint(ra, dec))
                                         for ra, dec in zip(shape["ra"], shape["dec"])])
        out[outside[survey], j] = np.inf
        if survey == "galex":
            out[~covered, j] = np.inf
    return out
