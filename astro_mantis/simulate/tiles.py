# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Survey tiles of the mock sky, and a sky model that serves cutouts cut from them.

`write_tiles` renders a `~astro_mantis.simulate.MockSky` patch as the files a survey
archive holds, in the services' units and header conventions:

* **Pan-STARRS**: skycell-like grids, one file per band
  (``rings.v3.skycell.PPPP.SSS.stk.{g,r,i,z,y}.unconv.fits``), linear counts on a TAN
  grid of 0.25″ pixels with ``CDELT``, ``EXPTIME`` (zero point
  ``25 + 2.5 log10(EXPTIME)``) and ``FILTER = 'g.00000'``; optionally NaN chip-gap
  stripes, and optionally asinh-compressed with ``BSOFTEN``/``BOFFSET`` as the real
  stacks are.
* **GALEX**: intensity-map-like coadds of 1.5″ pixels in counts/s, one file per band
  (``*-nd-int.fits`` NUV with ``BAND = 1``, ``*-fd-int.fits`` FUV with ``BAND = 2``),
  zero outside the circular field of view; tiles whose centre falls in one of the
  sky's GALEX coverage holes are not written.
* **unWISE**: coadd-like tiles of 2.75″ pixels in Vega nanomaggies with a ``CD``
  matrix, one file per band (``unwise-NNNN{p,m}NNN-w{1,2}-img-m.fits``, ``BAND = 1``
  or ``2``).

Tiles overlap their neighbours (``overlap``), as real skycells and coadds do.

`TileSky` is a sky model for `astro_mantis.testing.SurveyServer` that answers every
request from those tiles the way the real services do: ``fitscut.cgi`` cuts the tile on
its own pixel grid, starting where ``fitscut`` starts a cutout
(`~astro_mantis.simulate.service_format.fitscut_corner`; so its answer and a local
cutout of the same tile are the same pixels), the viewer's ``fits-cutout`` resamples the coadd
onto a grid centred on the request with ``reproject.reproject_interp`` (bilinear).
"""
import math
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..atomic import TEMP_SUFFIX, atomic_path
from .service_format import (
    GALEX_ZEROPOINTS,
    SURVEY_BANDS,
    coord_to_radec,
    default_geometry,
    fitscut_corner,
    normalise_band,
    normalise_survey,
    ps1_hdulist,
    ps1_stack_exptime,
    stable_seed,
    viewer_hdulist,
)

__all__ = ["write_tiles", "tile_centers", "TileSky", "DEFAULT_TILE_PIXELS",
           "DEFAULT_OVERLAP"]

#: Side of a written tile in pixels, per survey (small: the real ones are 6000 px
#: skycells, 3840 px GALEX maps and 2048 px unWISE coadds).
DEFAULT_TILE_PIXELS = {"panstarrs": 480, "galex": 128, "unwise": 80}
#: Fraction of a tile's side shared with its neighbour, per survey (GALEX needs more:
#: its fields are circles).
DEFAULT_OVERLAP = {"panstarrs": 0.1, "galex": 0.32, "unwise": 0.1}
_ASINH_A = 2.5 / math.log(10.0)


def tile_centers(ra_range, dec_range, side, overlap):
    """Centres of tiles of ``side`` degrees covering an RA/Dec box, neighbours overlapping.

    Parameters
    ----------
    ra_range : (float, float)
        RA limits in degrees; ``lo > hi`` means the box crosses RA = 0 (e.g.
        ``(359.9, 0.1)``).
    dec_range : (float, float)
        Dec limits in degrees.
    side : float
        Tile side (deg).
    overlap : float
        Fraction of the side neighbours share, in [0, 0.9].

    Returns
    -------
    list of (int, int, float, float)
        ``(row, column, ra, dec)`` per tile; rows run in Dec, columns in RA.
    """
    if not 0.0 <= overlap <= 0.9:
        raise ValueError(f"overlap must be within [0, 0.9], got {overlap}")
    ra_lo, ra_hi = float(ra_range[0]) % 360.0, float(ra_range[1]) % 360.0
    if ra_range[1] - ra_range[0] >= 360.0:
        ra_lo, ra_hi = 0.0, 360.0
    width = (ra_hi - ra_lo) % 360.0 or (360.0 if ra_range[1] != ra_range[0] else 0.0)
    dec_lo, dec_hi = float(dec_range[0]), float(dec_range[1])
    if not -90.0 <= dec_lo <= dec_hi <= 90.0:
        raise ValueError(f"dec_range must satisfy -90 <= lo <= hi <= 90, got {dec_range}")
    step = side * (1.0 - overlap)
    nrows = max(1, int(math.ceil((dec_hi - dec_lo - side) / step - 1e-9)) + 1) \
        if dec_hi - dec_lo > side else 1
    rows_dec = [dec_lo + side / 2.0 + k * step for k in range(nrows)] if nrows > 1 \
        else [(dec_lo + dec_hi) / 2.0]
    out = []
    for r, dec in enumerate(rows_dec):
        cosd = max(math.cos(math.radians(abs(dec) + side / 2.0)), 1e-6)
        ra_side, ra_step = side / cosd, step / cosd
        ncols = max(1, int(math.ceil((width - ra_side) / ra_step - 1e-9)) + 1) \
            if width > ra_side else 1
        cols = [ra_lo + ra_side / 2.0 + k * ra_step for k in range(ncols)] if ncols > 1 \
            else [ra_lo + width / 2.0]
        out += [(r, c, ra % 360.0, dec) for c, ra in enumerate(cols)]
    return out


def _tile_wcs_cards(ra, dec, npix, pixscale, cd):
    crpix = (npix + 1) / 2.0
    cards = [("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN"), ("CRVAL1", float(ra)),
             ("CRVAL2", float(dec)), ("CRPIX1", crpix), ("CRPIX2", crpix)]
    if cd:
        cards += [("CD1_1", -pixscale / 3600.0), ("CD1_2", 0.0), ("CD2_1", 0.0),
                  ("CD2_2", pixscale / 3600.0)]
    else:
        cards += [("CDELT1", -pixscale / 3600.0), ("CDELT2", pixscale / 3600.0)]
    return cards


def _write(path, data, cards):
    header = fits.Header()
    for card in cards:
        header[card[0]] = card[1:] if len(card) > 2 else card[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    # a tile is replaced whole or not at all (fsync=False: tiles are rebuilt from the sky)
    with atomic_path(path, fsync=False) as tmp:
        fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header).writeto(tmp)


def write_tiles(sky, directory, ra_range, dec_range, surveys=("galex", "panstarrs", "unwise"),
                tile_pixels=None, overlap=None, noise=None, ps1_nan_fraction=None,
                ps1_asinh=False, galex_circle=True):
    """Render a patch of the mock sky as survey tiles on disk.

    Parameters
    ----------
    sky : `~astro_mantis.simulate.MockSky`
        The sky to render (its catalog, neighbours, stars, depths, GALEX holes). With
        ``MockSkyConfig.randomisation``, each tile is observed under the conditions of
        the field holding its centre (`~astro_mantis.simulate.MockSky.field_conditions`:
        PSF, zero points, noise level), as `~astro_mantis.simulate.MockSky.render` observes
        a cutout centred in that field; a tile reaching into a neighbouring field keeps
        its centre's conditions there (a stack has one calibration), where a
        cutout centred in that field has its own.
    directory : str or path-like
        Tiles go into ``directory/<survey>/``.
    ra_range, dec_range : (float, float)
        The patch in degrees (RA ``lo > hi`` crosses RA = 0).
    surveys : sequence of str
        Which surveys to write.
    tile_pixels, overlap : dict, optional
        Per survey: tile side in pixels (`DEFAULT_TILE_PIXELS`) and the fraction of
        it neighbours share (`DEFAULT_OVERLAP`).
    noise : bool, optional
        Override ``ImagingConfig.noise`` (False: noiseless tiles).
    ps1_nan_fraction : float, optional
        Chance that a Pan-STARRS tile band is crossed by a NaN stripe (a chip gap);
        default ``ImagingConfig.ps1_nan_fraction``.
    ps1_asinh : bool
        Write Pan-STARRS pixels asinh-compressed with ``BSOFTEN``/``BOFFSET``.
    galex_circle : bool
        Zero GALEX pixels outside the circle inscribed in the tile (the field of view).

    Returns
    -------
    `~astropy.table.Table`
        One row per file: ``survey``, ``band``, ``path``, ``ra``, ``dec`` (tile centre,
        deg), ``npix``, ``pixscale`` (arcsec).
    """
    from .sky import _tan_wcs, ps1_chip_gap

    directory = Path(directory)
    tile_pixels = {**DEFAULT_TILE_PIXELS, **(tile_pixels or {})}
    overlap = {**DEFAULT_OVERLAP, **(overlap or {})}
    imaging = sky.config.imaging
    noise = imaging.noise if noise is None else bool(noise)
    nan_fraction = imaging.ps1_nan_fraction if ps1_nan_fraction is None \
        else float(ps1_nan_fraction)
    rows = []
    for survey in (normalise_survey(s) for s in surveys):
        npix = int(tile_pixels[survey])
        _, pixscale = default_geometry(survey)
        side = npix * pixscale / 3600.0
        natives = list(SURVEY_BANDS[survey])
        for r, c, ra, dec in tile_centers(ra_range, dec_range, side, overlap[survey]):
            if survey == "galex" and not sky.galex_covered((ra, dec)):
                continue  # a coverage hole: no tile
            crpix = ((npix + 1) / 2.0, (npix + 1) / 2.0)
            scale = (-pixscale / 3600.0, pixscale / 3600.0)
            if survey == "panstarrs":
                wcs = _tan_wcs((ra, dec), crpix, cdelt=scale)
                exptimes = [ps1_stack_exptime(sky.seed, b, ra, dec,
                                              typical=imaging.ps1_exptime[b],
                                              scatter=imaging.ps1_exptime_scatter)
                            for b in natives]
            else:
                wcs = _tan_wcs((ra, dec), crpix, cd=scale)
                exptimes = [None] * len(natives)
            # a randomised sky's conditions: those of the field holding the tile's centre
            draw = sky._field(ra, dec)
            cube = sky._render_clean(survey, natives, ra, dec, wcs, npix, pixscale, exptimes,
                                     draw)
            name = _tile_name(survey, r, c, ra, dec)
            for k, native in enumerate(natives):
                image = cube[k]
                if noise:
                    image = sky._add_noise(
                        image, _band_name(survey, native), pixscale, exptimes[k],
                        stable_seed(sky.seed, "tile-noise", survey, str(native), name), draw)
                image = np.asarray(image, dtype=np.float32)
                cards = _tile_wcs_cards(ra, dec, npix, pixscale, cd=survey != "panstarrs")
                if survey == "panstarrs":
                    ps1_chip_gap(image, sky.seed, f"tile-{native}", ra, dec, nan_fraction)
                    cards += [("EXPTIME", exptimes[k], "[s] stack exposure time"),
                              ("FILTER", f"{native}.00000", "PS1 filter"),
                              ("HIERARCH FPA.ZP", 25.0, "zero point for 1 s")]
                    if ps1_asinh:
                        image, extra = _asinh_compress(image)
                        cards += extra
                    path = directory / "panstarrs" / f"{9000 + r:04d}" / (
                        f"rings.v3.skycell.{9000 + r:04d}.{c:03d}.stk.{native}.unconv.fits")
                elif survey == "galex":
                    if galex_circle:
                        yy, xx = np.mgrid[0:npix, 0:npix]
                        h = (npix - 1) / 2.0
                        image = np.where((xx - h) ** 2 + (yy - h) ** 2 <= (npix / 2.0) ** 2,
                                         image, 0.0).astype(np.float32)
                    cards += [("BAND", 1 if native == "n" else 2, "1 = NUV, 2 = FUV"),
                              ("MAGZP", GALEX_ZEROPOINTS[native], "AB zero point, 1 ct/s")]
                    path = directory / "galex" / (
                        f"{name}-{'nd' if native == 'n' else 'fd'}-int.fits")
                else:
                    cards += [("BAND", int(native), "WISE band")]
                    path = directory / "unwise" / name / f"unwise-{name}-w{native}-img-m.fits"
                _write(path, image, cards)
                rows.append((survey, _band_name(survey, native), str(path), ra, dec, npix,
                             pixscale))
    return Table(rows=rows or None, names=("survey", "band", "path", "ra", "dec", "npix",
                                           "pixscale"),
                 dtype=(str, str, str, float, float, int, float))


def _tile_name(survey, r, c, ra, dec):
    if survey == "unwise":
        return f"{round(ra * 10) % 3600:04d}{'p' if dec >= 0 else 'm'}{abs(round(dec * 10)):03d}" \
            + f"{r:02d}{c:02d}"
    return f"MOCK_{r:02d}_{c:03d}"


def _band_name(survey, native):
    from .service_format import NATIVE_TO_BAND

    return NATIVE_TO_BAND[(survey, native)]


def _asinh_compress(image):
    """PS1-style asinh compression of linear counts; returns (values, header cards)."""
    finite = image[np.isfinite(image)]
    boffset = float(np.median(finite)) if finite.size else 0.0
    bsoften = float(1.4826 * np.median(np.abs(finite - boffset))) if finite.size else 1.0
    bsoften = bsoften if bsoften > 0 else 1.0
    with np.errstate(invalid="ignore"):
        out = _ASINH_A * np.arcsinh((image.astype(np.float64) - boffset) / (2.0 * bsoften))
    return out.astype(np.float32), [("BSOFTEN", bsoften), ("BOFFSET", boffset)]


class TileSky:
    """A sky model for `~astro_mantis.testing.SurveyServer` that cuts written tiles.

    It answers ``render`` as the real services do from their archives: Pan-STARRS
    ``fitscut.cgi`` cuts the stack skycell on its own pixel grid (from the corner
    `~astro_mantis.simulate.service_format.fitscut_corner` gives, NaN outside), linear
    counts (asinh-compressed stacks decompressed), with the skycell's
    WCS and a shifted ``CRPIX``; the viewer's ``fits-cutout`` resamples the coadd
    bilinearly (``reproject.reproject_interp``) onto a TAN grid centred on the request.
    Of the tiles whose pixels hold the request, the one farthest from its edge is used.

    Parameters
    ----------
    directory : str or path-like
        The directory given to `write_tiles` (it holds ``<survey>/`` folders).

    Examples
    --------
    >>> from astro_mantis.testing import SurveyServer
    >>> with SurveyServer(sky=TileSky(tile_dir)) as srv:   # doctest: +SKIP
    ...     pass
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self._tiles = {}
        for survey in SURVEY_BANDS:
            tiles = {}
            for path in sorted((self.directory / survey).rglob("*.fits")):
                if TEMP_SUFFIX in path.name:  # a tile being written (or left by a crash)
                    continue
                with fits.open(path) as hdul:
                    header = hdul[0].header
                    data = np.asarray(hdul[0].data, dtype=np.float32)
                if "BSOFTEN" in header and "BOFFSET" in header:
                    from ..surveys.panstarrs import decompress_asinh

                    data = decompress_asinh(data, header["BSOFTEN"], header["BOFFSET"]) \
                        .astype(np.float32)
                native = _native_of(survey, header)
                key = (header["CRVAL1"], header["CRVAL2"], data.shape)
                tile = tiles.setdefault(key, {"header": header, "bands": {}, "headers": {}})
                tile["bands"][native] = data
                tile["headers"][native] = header
            self._tiles[survey] = list(tiles.values())

    def _best(self, survey, ra, dec):
        from ..surveys.core import celestial_wcs

        best, best_edge = None, -np.inf
        for tile in self._tiles[survey]:
            wcs = tile.get("wcs")
            if wcs is None:
                wcs = tile["wcs"] = celestial_wcs(tile["header"])
            x, y = wcs.all_world2pix(ra, dec, 0)
            ny, nx = next(iter(tile["bands"].values())).shape
            edge = min(x + 0.5, nx - 0.5 - x, y + 0.5, ny - 0.5 - y)
            if np.isfinite(edge) and edge > 0 and edge > best_edge:
                best, best_edge = (tile, wcs, float(x), float(y)), edge
        return best

    def render(self, survey, coord, size=None, pixscale=None, band=None, skycell_center=None,
               **kwargs):
        """The FITS answer of a service cut from the tiles.

        Parameters
        ----------
        survey : {"galex", "panstarrs", "unwise"}
        coord : `~astropy.coordinates.SkyCoord` or (float, float)
        size : int, optional
        pixscale : float, optional
            Arcsec per pixel (Pan-STARRS cuts ignore it: fitscut's grid is the skycell's).
        band : str, optional
            Pan-STARRS: the one band to cut.
        skycell_center : (float, float), optional
            Ignored: the tile is found from the position.
        **kwargs
            Ignored (``noise``).

        Returns
        -------
        `~astropy.io.fits.HDUList`
            As `MockSky.render <astro_mantis.simulate.MockSky.render>` builds it; all
            NaN (Pan-STARRS) or all zero (viewer) where no tile holds the position.
        """
        from astropy.nddata import Cutout2D

        survey = normalise_survey(survey)
        ra, dec = coord_to_radec(coord)
        size, pixscale = default_geometry(survey, size, pixscale)
        found = self._best(survey, ra, dec)
        if survey == "panstarrs":
            if band is None:
                raise ValueError("a PS1 render needs one band")
            native = normalise_band("panstarrs", band)
            if found is None:
                image = np.full((size, size), np.nan, np.float32)
                return ps1_hdulist(image, native, (ra, dec), ((size + 1) / 2.0,) * 2,
                                   (-pixscale / 3600, pixscale / 3600), 1.0)
            tile, wcs, x, y = found
            data = tile["bands"].get(native)
            if data is None:
                data = np.full(next(iter(tile["bands"].values())).shape, np.nan, np.float32)
            # the window starts where fitscut starts it, which is not Cutout2D's rule
            x0, y0 = fitscut_corner(x, size), fitscut_corner(y, size)
            cut = Cutout2D(data, (x0 + size / 2.0, y0 + size / 2.0), size, wcs=wcs,
                           mode="partial", fill_value=np.nan)
            h = tile["headers"].get(native, tile["header"])
            crval = (h["CRVAL1"], h["CRVAL2"])
            crpix = tuple(float(v) for v in cut.wcs.wcs.crpix)
            cdelt = (h["CDELT1"], h["CDELT2"])
            return ps1_hdulist(cut.data.astype(np.float32), native, crval, crpix, cdelt,
                               h["EXPTIME"])
        from reproject import reproject_interp

        natives = list(SURVEY_BANDS[survey])
        crpix = ((size + 1) / 2.0,) * 2
        cd = (-pixscale / 3600.0, pixscale / 3600.0)
        cube = np.zeros((len(natives), size, size), np.float32)
        if found is not None:
            tile, wcs, x, y = found
            from .sky import _tan_wcs

            target = _tan_wcs((ra, dec), crpix, cd=cd)
            for k, native in enumerate(natives):
                data = tile["bands"].get(native)
                if data is None:
                    continue
                out, _ = reproject_interp((data, wcs), target, shape_out=(size, size),
                                          order="bilinear")
                cube[k] = np.nan_to_num(out, nan=0.0)
        return viewer_hdulist(cube, survey, natives, (ra, dec), crpix, cd)


def _native_of(survey, header):
    if survey == "panstarrs":
        return str(header["FILTER"])[0]
    if survey == "galex":
        return "n" if int(header["BAND"]) == 1 else "f"
    return int(header["BAND"])
