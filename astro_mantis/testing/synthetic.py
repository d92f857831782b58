# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Fast synthetic sky images in the formats the survey services send.

`SyntheticSky` renders GALEX, Pan-STARRS1 and unWISE cutouts as the real
services deliver them (units, header keywords, WCS conventions), with
galaxies placed exactly at their sky positions through the cutout's TAN
WCS. It is deliberately simple (elliptical Gaussian galaxies convolved with
a Gaussian PSF, Gaussian sky noise) and fast, so that loopback servers in
`astro_mantis.testing.server` can answer many requests per second.

The service formats (header keywords, WCS conventions, units) are shared
with the physical mock sky and live in
``astro_mantis.simulate.service_format``; in short:

* GALEX (``galex`` layer of the Legacy Survey viewer): counts/s, AB zero
  points NUV 20.08, FUV 18.82.
* Pan-STARRS1 stacks (``fitscut.cgi``): linear counts with zero point
  ``25 + 2.5 log10(EXPTIME)``.
* unWISE (``unwise-neo7`` layer): Vega nanomaggies (zero point 22.5 Vega);
  AB = Vega + 2.699 (W1), + 3.339 (W2).
"""

import math

import numpy as np
from astropy import units as u

from ..simulate.service_format import (
    GALEX_ZEROPOINTS,
    NATIVE_TO_BAND,
    PS1_EXPTIME,
    SERVICE_VERSION,
    SURVEY_BANDS,
    WISE_VEGA_TO_AB,
    band_list,
    coord_to_radec,
    default_geometry,
    format_card,
    native_flux,
    normalise_band,
    normalise_survey,
    primary_hdu,
    ps1_geometry,
    ps1_hdulist,
    ps1_stack_exptime,
    stable_seed,
    tan_project,
    viewer_geometry,
    viewer_hdulist,
)
from ..surveys import get_survey

__all__ = [
    "GALEX_ZEROPOINTS",
    "PS1_EXPTIME",
    "SURVEY_BANDS",
    "WISE_VEGA_TO_AB",
    "SyntheticSky",
    "stable_seed",
    "tan_project",
]

# Former private names, kept for code that imported them from here.
_VERSION = SERVICE_VERSION
_coord_to_radec = coord_to_radec
_normalise_band = normalise_band
_band_list = band_list
_format_card = format_card
_primary_hdu = primary_hdu

# Per band: catalog column, PSF FWHM (arcsec), native pixel scale (arcsec) -- the
# survey's (`astro_mantis.surveys`) -- and 5-sigma point-source depth (AB mag, an
# approximate published value).
_DEPTH = {("galex", "n"): 20.8, ("galex", "f"): 19.9, ("panstarrs", "g"): 23.3,
          ("panstarrs", "r"): 23.2, ("panstarrs", "i"): 23.1, ("panstarrs", "z"): 22.3,
          ("panstarrs", "y"): 21.4, ("unwise", 1): 20.6, ("unwise", 2): 20.3}


def _band_info():
    info = {}
    for name, natives in SURVEY_BANDS.items():
        facts = get_survey(name)
        for native, band in zip(natives, facts.bands):
            info[(name, native)] = (f"mag_{NATIVE_TO_BAND[(name, native)]}",
                                    float(facts.psf_fwhm[band].to_value(u.arcsec)),
                                    float(facts.pixscale.to_value(u.arcsec)),
                                    _DEPTH[(name, native)])
    return info


_BAND_INFO = _band_info()

_GAUSS_HALF_LIGHT = math.sqrt(2.0 * math.log(2.0))  # r_half / sigma of a 2-D Gaussian
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


class SyntheticSky:
    """A deterministic synthetic sky rendered in the survey services' formats.

    Parameters
    ----------
    seed : int, optional
        Seed mixed into every per-position random draw. Two instances with
        the same seed (and catalog) render byte-identical images.
    catalog : `~astropy.table.Table`, optional
        Sources to render, with columns ``ra`` and ``dec`` (degrees, plain
        floats or angle quantities) and AB magnitude columns ``mag_nuv``,
        ``mag_fuv``, ``mag_g``, ``mag_r``, ``mag_i``, ``mag_z``, ``mag_y``,
        ``mag_w1``, ``mag_w2`` (a missing column or a non-finite value means
        the source is not drawn in that band). Optional shape columns:
        ``r_half`` (half-light radius, arcsec, default 1.0), ``axis_ratio``
        (default 1.0) and ``pa`` (position angle east of north, degrees,
        default 0). Without a catalog, every cutout contains one galaxy at
        the requested position whose magnitudes and shape are derived
        deterministically from that position.

    Notes
    -----
    Galaxies are elliptical Gaussians convolved analytically with a Gaussian
    PSF of the band's typical FWHM, integrated over the output pixel area,
    so the sum of a source's pixels is its flux in the survey's native unit.
    Sky noise is Gaussian with a per-pixel sigma set from the band's typical
    5-sigma point-source depth.
    """

    #: Native bands per survey (``"galex"``, ``"panstarrs"``, ``"unwise"``).
    bands = SURVEY_BANDS

    def __init__(self, seed=0, catalog=None):
        self.seed = int(seed)
        self.catalog = catalog
        self._cat = None
        if catalog is not None:
            self._cat = self._prepare_catalog(catalog)

    # ------------------------------------------------------------------ catalog
    @staticmethod
    def _column(table, name, default=None, unit="deg"):
        if name not in table.colnames:
            return default
        col = table[name]
        col_unit = getattr(col, "unit", None)
        if unit is not None and col_unit is not None and str(col_unit) != "":
            try:
                col = u.Quantity(col).to_value(unit)
            except u.UnitsError:
                pass
        values = np.ma.asarray(getattr(col, "value", col)).astype(float)
        return np.ma.filled(values, np.nan)

    def _prepare_catalog(self, catalog):
        for name in ("ra", "dec"):
            if name not in catalog.colnames:
                raise ValueError(f"catalog needs an {name!r} column (degrees); "
                                 f"it has {catalog.colnames}")
        ra = self._column(catalog, "ra")
        dec = self._column(catalog, "dec")
        n = len(ra)
        cat = {
            "ra": ra % 360.0,
            "dec": dec,
            "r_half": self._column(catalog, "r_half", np.full(n, 1.0), unit="arcsec"),
            "axis_ratio": self._column(catalog, "axis_ratio", np.ones(n), unit=None),
            "pa": self._column(catalog, "pa", np.zeros(n)),
        }
        for colname, *_rest in _BAND_INFO.values():
            mags = self._column(catalog, colname, None, unit=None)
            cat[colname] = np.full(n, np.nan) if mags is None else mags
        rra, rdec = np.radians(cat["ra"]), np.radians(cat["dec"])
        cat["xyz"] = np.stack(
            [np.cos(rdec) * np.cos(rra), np.cos(rdec) * np.sin(rra), np.sin(rdec)], axis=1
        )
        return cat

    def galaxy_at(self, ra, dec):
        """Properties of the catalog-free galaxy placed at a position.

        Parameters
        ----------
        ra, dec : float
            Position in degrees.

        Returns
        -------
        props : dict
            ``ra``, ``dec``, ``r_half`` (arcsec), ``axis_ratio``, ``pa``
            (degrees) and AB magnitudes ``mag_nuv`` ... ``mag_w2``;
            identical for the same seed and position (rounded to 1e-6 deg).
        """
        rng = np.random.default_rng(
            stable_seed(self.seed, "galaxy", round(ra % 360.0, 6), round(dec, 6))
        )
        draw = rng.random(6)
        t = draw[1]  # "redness": 0 = blue star-forming, 1 = red passive
        mag_r = 16.5 + 4.0 * draw[0]
        mags = {
            "mag_r": mag_r,
            "mag_g": mag_r + 0.3 + 0.6 * t,
            "mag_i": mag_r - (0.15 + 0.35 * t),
            "mag_z": mag_r - (0.2 + 0.6 * t),
            "mag_y": mag_r - (0.25 + 0.75 * t),
            "mag_nuv": mag_r + 1.5 + 3.0 * t,
            "mag_fuv": mag_r + 1.8 + 4.5 * t,
            "mag_w1": mag_r - (0.2 + 0.6 * t),
            "mag_w2": mag_r - (0.2 + 0.6 * t) + 0.6 - 0.4 * t,
        }
        props = {
            "ra": ra % 360.0,
            "dec": dec,
            "r_half": 0.6 + 2.4 * draw[2],
            "axis_ratio": 0.3 + 0.7 * draw[3],
            "pa": 180.0 * draw[4],
        }
        props.update(mags)
        return props

    # ------------------------------------------------------------------ sources
    def _sources(self, ra, dec, radius_deg):
        """Sources to draw around (ra, dec) as a dict of arrays."""
        if self._cat is None:
            g = self.galaxy_at(ra, dec)
            return {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in g.items()}
        rra, rdec = math.radians(ra), math.radians(dec)
        centre = np.array(
            [math.cos(rdec) * math.cos(rra), math.cos(rdec) * math.sin(rra), math.sin(rdec)]
        )
        keep = self._cat["xyz"] @ centre >= math.cos(math.radians(min(radius_deg, 80.0)))
        return {k: v[keep] for k, v in self._cat.items() if k != "xyz"}

    @staticmethod
    def _native_flux(survey, band, mag_ab, exptime):
        """Convert AB magnitudes to the survey's native pixel-sum unit."""
        return native_flux(survey, band, mag_ab, exptime)

    def _paint(self, image, survey, band, src, crval, crpix, cd, pixscale, exptime):
        """Add every source of ``src`` to ``image`` (ny, nx) in place."""
        colname, fwhm, _native_scale, _depth = _BAND_INFO[(survey, band)]
        mags = src[colname]
        flux = self._native_flux(survey, band, mags, exptime)
        x_iw, y_iw = tan_project(src["ra"], src["dec"], crval[0], crval[1])
        px = crpix[0] - 1.0 + x_iw / cd[0]  # 0-based column
        py = crpix[1] - 1.0 + y_iw / cd[1]  # 0-based row
        ny, nx = image.shape
        psf_sigma = fwhm * _FWHM_TO_SIGMA
        for k in range(len(mags)):
            if not (np.isfinite(flux[k]) and np.isfinite(px[k]) and np.isfinite(py[k])):
                continue
            a = max(src["r_half"][k], 0.0) / _GAUSS_HALF_LIGHT
            b = a * min(max(src["axis_ratio"][k], 0.05), 1.0)
            pa = math.radians(src["pa"][k])
            # covariance (arcsec^2) on (east, north); major axis along PA.
            ue, un = math.sin(pa), math.cos(pa)
            ve, vn = math.cos(pa), -math.sin(pa)
            c_ee = a * a * ue * ue + b * b * ve * ve + psf_sigma**2
            c_nn = a * a * un * un + b * b * vn * vn + psf_sigma**2
            c_en = a * a * ue * un + b * b * ve * vn
            # to pixels: east = -dx * scale, north = dy * scale.
            s2 = pixscale * pixscale
            cxx, cyy, cxy = c_ee / s2, c_nn / s2, -c_en / s2
            det = cxx * cyy - cxy * cxy
            half = math.ceil(6.0 * math.sqrt(max(cxx, cyy))) + 1
            ix, iy = math.floor(px[k]), math.floor(py[k])
            x_lo, x_hi = max(ix - half, 0), min(ix + half + 2, nx)
            y_lo, y_hi = max(iy - half, 0), min(iy + half + 2, ny)
            if x_lo >= x_hi or y_lo >= y_hi:
                continue
            dx = np.arange(x_lo, x_hi, dtype=float) - px[k]
            dy = np.arange(y_lo, y_hi, dtype=float)[:, None] - py[k]
            q = (cyy * dx * dx - 2.0 * cxy * dx * dy + cxx * dy * dy) / det
            amp = flux[k] / (2.0 * math.pi * math.sqrt(det))
            image[y_lo:y_hi, x_lo:x_hi] += (amp * np.exp(-0.5 * q)).astype(image.dtype)

    def _noise_sigma(self, survey, band, pixscale, exptime):
        """Per-pixel sky noise sigma in native units."""
        _col, fwhm, _native, depth = _BAND_INFO[(survey, band)]
        psf_sigma = fwhm * _FWHM_TO_SIGMA
        n_eff = 4.0 * math.pi * psf_sigma**2 / pixscale**2
        f5 = float(self._native_flux(survey, band, depth, exptime))
        return f5 / (5.0 * math.sqrt(max(n_eff, 1.0)))

    def _noise(self, survey, band, ra, dec, shape, sigma, extra=()):
        rng = np.random.default_rng(
            stable_seed(self.seed, "noise", survey, str(band), round(ra, 6), round(dec, 6),
                        tuple(shape), *extra)
        )
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)

    def ps1_exptime(self, band, ra_c, dec_c):
        """Deterministic stack exposure time of a PS1 skycell.

        Parameters
        ----------
        band : str
            PS1 band (``g r i z y``).
        ra_c, dec_c : float
            Skycell centre in degrees.

        Returns
        -------
        exptime : float
            Seconds; the pixel zero point is ``25 + 2.5 log10(exptime)``.
        """
        return ps1_stack_exptime(self.seed, band, ra_c, dec_c)

    # ------------------------------------------------------------------ render
    def render(self, survey, coord, size=None, pixscale=None, band=None, *,
               skycell_center=None):
        """Render a cutout exactly as the survey service sends it.

        Parameters
        ----------
        survey : {"galex", "panstarrs", "unwise"}
            Which service's output to imitate (``"ps1"`` is accepted for
            ``"panstarrs"``).
        coord : `~astropy.coordinates.SkyCoord` or (float, float)
            Requested cutout centre (ICRS, degrees for a pair).
        size : int, optional
            Cutout side in pixels. Defaults: 32 (GALEX, unWISE), 170 (PS1).
        pixscale : float, optional
            Arcsec per pixel. Defaults: 1.5 (GALEX), 2.75 (unWISE),
            0.25 (PS1).
        band : str, int or sequence, optional
            PS1: one band, required (``"g"`` ... ``"y"``). GALEX/unWISE:
            ``None`` for all bands in native order (NUV, FUV / W1, W2), or a
            band or sequence of bands (``"n"``, ``"fuv"``, ``1``, ``"w2"``,
            ``"nf"``, ``"12"``) giving which planes to return and in what
            order.
        skycell_center : (float, float), optional
            PS1 only: the skycell centre (degrees) used as the WCS
            ``CRVAL``; ``CRPIX`` is then set so that ``coord`` falls on the
            cutout's centre pixel, possibly far outside the image, as real
            ``fitscut.cgi`` output does. Defaults to ``coord`` itself.

        Returns
        -------
        hdul : `~astropy.io.fits.HDUList`
            One primary HDU with float32 data: ``(size, size)`` for PS1 with
            ``EXPTIME`` and ``FILTER``; ``(nbands, size, size)`` for
            GALEX/unWISE with ``BANDS``, ``BAND0`` ..., ``SURVEY``,
            ``VERSION``, ``IMAGEW``, ``IMAGEH`` as the Legacy Survey viewer
            writes them.

        Raises
        ------
        ValueError
            For an unknown survey or band, a missing PS1 band, or a
            non-positive size or pixel scale.
        """
        survey = normalise_survey(survey)
        ra, dec = coord_to_radec(coord)
        size, pixscale = default_geometry(survey, size, pixscale)
        if survey == "panstarrs":
            return self._render_ps1(ra, dec, size, pixscale, band, skycell_center)
        return self._render_legacy(survey, ra, dec, size, pixscale, band)

    def _render_ps1(self, ra, dec, size, pixscale, band, skycell_center):
        if band is None:
            raise ValueError("a PS1 render needs one band: band='g', 'r', 'i', 'z' or 'y'")
        band = normalise_band("panstarrs", band)
        crval, crpix, cd = ps1_geometry(ra, dec, size, pixscale, skycell_center)
        exptime = self.ps1_exptime(band, *crval)

        half_diag = size * pixscale / 3600.0 * 0.75 + 30.0 / 3600.0
        src = self._sources(ra, dec, half_diag)
        sigma = self._noise_sigma("panstarrs", band, pixscale, exptime)
        image = self._noise("panstarrs", band, ra, dec, (size, size), sigma, (pixscale,))
        self._paint(image, "panstarrs", band, src, crval, crpix, cd, pixscale, exptime)
        return ps1_hdulist(image, band, crval, crpix, cd, exptime)

    def _render_legacy(self, survey, ra, dec, size, pixscale, band):
        bands = band_list(survey, band)
        crval, crpix, cd = viewer_geometry(ra, dec, size, pixscale)
        half_diag = size * pixscale / 3600.0 * 0.75 + 60.0 / 3600.0
        src = self._sources(ra, dec, half_diag)
        cube = np.empty((len(bands), size, size), dtype=np.float32)
        for i, b in enumerate(bands):
            sigma = self._noise_sigma(survey, b, pixscale, None)
            cube[i] = self._noise(survey, b, ra, dec, (size, size), sigma, (pixscale,))
            self._paint(cube[i], survey, b, src, crval, crpix, cd, pixscale, None)
        return viewer_hdulist(cube, survey, bands, crval, crpix, cd)
