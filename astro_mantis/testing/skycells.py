# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""A loopback sky whose Pan-STARRS cutouts are cut from whole skycells.

The real ``fitscut.cgi`` cuts a stack skycell on the skycell's own pixel grid: two
cutouts of one skycell that overlap hold the same pixels where they overlap, and a
large cutout holds every smaller one inside it. `SkycellSky` gives the loopback
`~astro_mantis.testing.SurveyServer` that property, which the default
`~astro_mantis.testing.SyntheticSky` (a grid centred on each request, noise drawn per
request) does not have.
"""
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..simulate.service_format import (coord_to_radec, default_geometry, fitscut_corner,
                                       normalise_band, normalise_survey, ps1_hdulist,
                                       stable_seed, tan_project)
from .server import _BAND_HEIGHT, _NRA, ps1_skycell
from .synthetic import _BAND_INFO, _FWHM_TO_SIGMA, _GAUSS_HALF_LIGHT, SyntheticSky

__all__ = ["SkycellSky", "SkycellGrid", "cluster_catalog"]

_PS1_PIXSCALE = 0.25  # arcsec
_ASINH_A = 2.5 / math.log(10.0)


@dataclass(frozen=True)
class SkycellGrid:
    """The pixel grid of one loopback Pan-STARRS skycell.

    A TAN grid of 0.25″ pixels (``CDELT``) centred on the skycell's centre, square,
    covering the skycell's extent of the loopback tiling
    (`~astro_mantis.testing.ps1_skycell`) plus a margin on each side; pixels beyond
    it hold no data (NaN in a cutout).

    Attributes
    ----------
    crval : (float, float)
        The skycell centre (degrees), the grid's tangent point.
    crpix : (float, float)
        FITS (1-based) reference pixel of the grid.
    npix : int
        Side of the grid in pixels.
    """

    crval: tuple
    crpix: tuple
    npix: int

    @property
    def cdelt(self):
        """Degrees per pixel, ``(-0.25″, +0.25″)``."""
        return (-_PS1_PIXSCALE / 3600.0, _PS1_PIXSCALE / 3600.0)

    def pixel(self, ra, dec):
        """0-based pixel coordinates ``(x, y)`` of positions (degrees) on this grid."""
        x_iw, y_iw = tan_project(ra, dec, *self.crval)
        return (self.crpix[0] - 1.0 + x_iw / self.cdelt[0],
                self.crpix[1] - 1.0 + y_iw / self.cdelt[1])

    @classmethod
    def of(cls, skycell_center, margin=40):
        """The grid of the skycell centred at ``skycell_center`` (degrees).

        Parameters
        ----------
        skycell_center : (float, float)
            As `~astro_mantis.testing.ps1_skycell_center` gives it.
        margin : int
            Pixels added beyond the skycell's extent on each side (real skycells
            overlap their neighbours).

        Returns
        -------
        `SkycellGrid`
        """
        ra_c, dec_c = float(skycell_center[0]) % 360.0, float(skycell_center[1])
        ps1_skycell(ra_c, dec_c)  # raises for a position outside the tiling
        k = min(int((dec_c + 90.0) // _BAND_HEIGHT), len(_NRA) - 1)
        width = 360.0 / _NRA[k] / 10.0  # degrees of right ascension
        height = _BAND_HEIGHT / 10.0
        nearest = max(0.0, abs(dec_c) - height / 2.0)  # the skycell's widest row
        extent = max(width * math.cos(math.radians(nearest)), height)
        half = math.ceil(extent / 2.0 * 3600.0 / _PS1_PIXSCALE) + int(margin)
        npix = 2 * half
        return cls((ra_c, dec_c), ((npix + 1) / 2.0, (npix + 1) / 2.0), npix)


def cluster_catalog(n=500, center=(150.2, 2.2), radius=5.0, seed=0):
    """A crowded field: ``n`` galaxies spread evenly over a disc of the sky.

    Parameters
    ----------
    n : int
        Galaxies.
    center : (float, float)
        Centre of the disc (degrees); the default is the centre of a loopback
        Pan-STARRS skycell, so a disc up to 12 arcmin across lies in that one skycell.
    radius : float
        Radius of the disc in arcminutes.
    seed : int
        Seed of the positions; magnitudes and shapes are those
        `SyntheticSky.galaxy_at` gives each position.

    Returns
    -------
    `~astropy.table.Table`
        Columns ``ra``, ``dec`` (degrees), ``r_half``, ``axis_ratio``, ``pa`` and the
        AB magnitudes ``mag_nuv`` ... ``mag_w2``: a catalog for `SkycellSky` or
        `SyntheticSky`.

    Examples
    --------
    >>> cat = cluster_catalog(50, radius=2.0)
    >>> len(cat), float(cat["dec"].min()) > 2.2 - 2.0 / 60
    (50, True)
    """
    from astropy.table import Table

    rng = np.random.default_rng(seed)
    r = np.sqrt(rng.uniform(0.0, 1.0, int(n))) * float(radius) / 60.0
    theta = rng.uniform(0.0, 2.0 * math.pi, int(n))
    dec = float(center[1]) + r * np.sin(theta)
    ra = (float(center[0]) + r * np.cos(theta) / np.cos(np.radians(dec))) % 360.0
    sky = SyntheticSky(seed=seed)
    rows = [sky.galaxy_at(a, d) for a, d in zip(ra, dec)]
    return Table(rows=rows, names=list(rows[0])) if rows else Table(names=("ra", "dec"))


class SkycellSky(SyntheticSky):
    """A `SyntheticSky` whose Pan-STARRS cutouts share their skycell's pixel grid.

    Every loopback skycell is a `SkycellGrid`, drawn lazily in square blocks that are
    kept once drawn: the catalog's sources painted on the skycell's grid, and noise
    drawn per block. A ``fitscut.cgi`` request is cut from its skycell (the one its
    ``red`` file names) as the real service does: the grid's pixels around the
    position, starting where ``fitscut`` starts them
    (`~astro_mantis.simulate.service_format.fitscut_corner`, the loopback's own
    statement of the rule, not the client's), with the skycell's ``CRVAL`` and a
    shifted ``CRPIX``, NaN beyond the skycell. So
    any two cutouts of one skycell agree pixel for pixel where they overlap, whatever
    their centres and sizes. GALEX and unWISE (the viewer resamples onto a grid
    centred on each request) and resampled Pan-STARRS requests (``output_size``)
    are rendered as `SyntheticSky` renders them.

    Parameters
    ----------
    seed : int, optional
        Seed of the noise.
    catalog : `~astropy.table.Table`, optional
        The sources (see `SyntheticSky`); without one the skycells hold noise only.
    margin : int, optional
        Pixels each skycell's grid extends beyond its extent in the loopback tiling.
    block : int, optional
        Side in pixels of the blocks skycells are drawn in.
    max_blocks : int, optional
        Blocks kept (least recently used ones are dropped and drawn again, identically,
        when needed); each holds ``block**2`` float32 pixels.
    asinh : bool, optional
        Send the pixels asinh-compressed with ``BSOFTEN``/``BOFFSET`` constant over a
        skycell and band. The real stack files store them so, but the real
        ``fitscut.cgi`` inverts the compression and drops ``BSOFTEN``/``BOFFSET``: its
        cutouts are linear counts. This exercises the client's decompression (which
        the local-tile path needs for real stacks), not a behaviour of the service.

    Notes
    -----
    Use it with a server whose ``ps1_asinh`` and ``ps1_nan_fraction`` are off: those
    act on each response, not on the skycell.

    Examples
    --------
    >>> from astro_mantis.testing import SkycellSky, SurveyServer
    >>> with SurveyServer(sky=SkycellSky(catalog=catalog)) as srv:  # doctest: +SKIP
    ...     pass
    """

    def __init__(self, seed=0, catalog=None, *, margin=40, block=256, max_blocks=1024,
                 asinh=False):
        super().__init__(seed=seed, catalog=catalog)
        self.margin, self.block, self.max_blocks = int(margin), int(block), int(max_blocks)
        self.asinh = bool(asinh)
        self._blocks = OrderedDict()
        self._grids = {}
        self._lock = threading.Lock()
        self._pad = self._paint_reach()

    def render(self, survey, coord, size=None, pixscale=None, band=None, *,
               skycell_center=None):
        """Render a cutout as `SyntheticSky.render` does; Pan-STARRS ones cut from skycells.

        Parameters
        ----------
        survey, coord, size, pixscale, band
            As for `SyntheticSky.render`.
        skycell_center : (float, float), optional
            The skycell the request names (the server passes it); without it, or
            for a pixel scale other than 0.25″, the cutout is rendered as
            `SyntheticSky` does.

        Returns
        -------
        `~astropy.io.fits.HDUList`
        """
        name = normalise_survey(survey)
        size, pixscale = default_geometry(name, size, pixscale)
        if name != "panstarrs" or skycell_center is None or pixscale != _PS1_PIXSCALE:
            return super().render(survey, coord, size=size, pixscale=pixscale, band=band,
                                  skycell_center=skycell_center)
        if band is None:
            raise ValueError("a PS1 render needs one band: band='g', 'r', 'i', 'z' or 'y'")
        band = normalise_band("panstarrs", band)
        grid = self.grid(skycell_center)
        x, y = grid.pixel(*coord_to_radec(coord))
        x0, y0 = fitscut_corner(x, size), fitscut_corner(y, size)
        image = self._pixels(grid, band, x0, y0, size)
        exptime = self.ps1_exptime(band, *grid.crval)
        crpix = (grid.crpix[0] - x0, grid.crpix[1] - y0)
        extra = []
        if self.asinh:
            bsoften, boffset = self._sigma(band, exptime), 0.0
            with np.errstate(invalid="ignore"):
                image = (_ASINH_A * np.arcsinh((image.astype(np.float64) - boffset)
                                               / (2.0 * bsoften))).astype(np.float32)
            extra = [("BSOFTEN", bsoften), ("BOFFSET", boffset)]
        hdul = ps1_hdulist(image, band, grid.crval, crpix, grid.cdelt, exptime)
        for key, value in extra:
            hdul[0].header[key] = value
        return hdul

    def grid(self, skycell_center):
        """The `SkycellGrid` of the skycell centred at ``skycell_center`` (degrees)."""
        key = (round(float(skycell_center[0]) % 360.0, 9), round(float(skycell_center[1]), 9))
        grid = self._grids.get(key)
        if grid is None:
            grid = self._grids[key] = SkycellGrid.of(key, self.margin)
        return grid

    # -- drawing -------------------------------------------------------------------
    def _sigma(self, band, exptime):
        return self._noise_sigma("panstarrs", band, _PS1_PIXSCALE, exptime)

    def _paint_reach(self):
        """Pixels a source's painted footprint can reach from its centre (the painter
        stops at 6 sigma of its widest band)."""
        if self._cat is None or not len(self._cat["ra"]):
            return 0
        r_half = np.nanmax(np.append(self._cat["r_half"], 0.0))
        psf = max(fwhm for (s, _), (_, fwhm, _, _) in _BAND_INFO.items() if s == "panstarrs")
        sigma = math.hypot(r_half / _GAUSS_HALF_LIGHT, psf * _FWHM_TO_SIGMA)
        return math.ceil(6.0 * sigma / _PS1_PIXSCALE) + 3

    def _pixels(self, grid, band, x0, y0, size):
        """The grid's pixels ``[y0, y0 + size) x [x0, x0 + size)``, NaN off the grid."""
        out = np.full((size, size), np.nan, np.float32)
        xa, xb = max(x0, 0), min(x0 + size, grid.npix)
        ya, yb = max(y0, 0), min(y0 + size, grid.npix)
        b = self.block
        for by in range(ya // b, (yb - 1) // b + 1) if yb > ya else ():
            for bx in range(xa // b, (xb - 1) // b + 1) if xb > xa else ():
                data = self._block(grid, band, bx, by)
                sx = slice(max(xa, bx * b), min(xb, (bx + 1) * b))
                sy = slice(max(ya, by * b), min(yb, (by + 1) * b))
                out[sy.start - y0:sy.stop - y0, sx.start - x0:sx.stop - x0] = \
                    data[sy.start - by * b:sy.stop - by * b, sx.start - bx * b:sx.stop - bx * b]
        return out

    def _block(self, grid, band, bx, by):
        """Block (``bx``, ``by``) of a skycell band, drawn once and kept."""
        key = (grid.crval, band, bx, by)
        with self._lock:
            data = self._blocks.get(key)
            if data is not None:
                self._blocks.move_to_end(key)
                return data
        data = self._draw(grid, band, bx, by)
        with self._lock:
            self._blocks[key] = data
            while len(self._blocks) > self.max_blocks:
                self._blocks.popitem(last=False)
        return data

    def _draw(self, grid, band, bx, by):
        b = self.block
        exptime = self.ps1_exptime(band, *grid.crval)
        rng = np.random.default_rng(stable_seed(self.seed, "skycell-noise", grid.crval, band,
                                                bx, by))
        image = rng.standard_normal((b, b), dtype=np.float32) * np.float32(
            self._sigma(band, exptime))
        if self._cat is not None and len(self._cat["ra"]):
            x, y = grid.pixel(self._cat["ra"], self._cat["dec"])
            near = ((x > bx * b - self._pad) & (x < (bx + 1) * b + self._pad)
                    & (y > by * b - self._pad) & (y < (by + 1) * b + self._pad))
            if near.any():
                src = {k: v[near] for k, v in self._cat.items() if k != "xyz"}
                crpix = (grid.crpix[0] - bx * b, grid.crpix[1] - by * b)
                self._paint(image, "panstarrs", band, src, grid.crval, crpix, grid.cdelt,
                            _PS1_PIXSCALE, exptime)
        return image
