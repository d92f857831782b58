"""Pan-STARRS1 3π stacks (g r i z y) from the PS1 image cutout service at STScI.

Two steps, as the service documents them:

1. ``POST {panstarrs_url}/ps1filenames.py`` with form fields ``filters=grizy``,
   ``type=stack`` and a file field ``file`` holding one "ra dec" line per position
   (many positions in one request). The answer is a whitespace table with columns
   ``projcell subcell ra dec filter mjd type filename shortname badflag``, one row per
   position and filter, the position echoed as numbers (``PanstarrsSurvey.parse_listing``
   matches rows back to positions by value, within ``MATCH_TOLERANCE`` degrees). The
   3π stacks cover every position north of dec = -30° in every band, so a listing that
   lacks a row for such a position was cut short (``PanstarrsSurvey.listing_gaps``):
   the fetch engine retries it like any truncated body, and never takes the position
   for uncovered.
2. ``GET {panstarrs_url}/fitscut.cgi?red=FILENAME&ra=&dec=&size=170&format=fits``
   per band: a 170 × 170 image of 0.25″ pixels in linear counts, with the stack's
   WCS (its CRPIX can lie far outside the cutout; a positive ``CDELT1`` whose sign the
   legacy matrix card ``PC001001 = -1`` turns, read as ``PC1_1`` by
   `~astro_mantis.surveys.core.wcs_header`; ``RADESYS = 'FK5'``) and ``EXPTIME``.
   The cutout starts where `fitscut_origin` says. The AB zero point is
   ``25 + 2.5 log10(EXPTIME)`` (NaN unless ``EXPTIME`` is positive). The service
   decompresses asinh-compressed stacks; should a header still carry ``BSOFTEN`` and
   ``BOFFSET``, the pixels are decompressed here.

PS1 does not observe south of dec = -30°; such positions are never requested.
NaN pixels (chip gaps, skycell edges) are kept and show in
`SurveyImage.mask <astro_mantis.surveys.SurveyImage.mask>`.

``fitscut.cgi`` cuts on the skycell's own pixel grid (no resampling): a larger
cutout of the same skycell holds every smaller one inside it, pixel for pixel. So
positions close together in one skycell can share one larger request, cut locally
into each position's cutout (`PanstarrsSurvey.cut`); the fetch engine does so when
asked to coalesce (:ref:`cutouts-coalescing`).
"""
import math

import numpy as np
from astropy import units as u

from ..exceptions import InvalidResponseError
from ..flags import MantisFlag
from .core import Request, Survey, SurveyImage, celestial_wcs, read_primary_image, wcs_header

__all__ = ["PanstarrsSurvey", "survey", "decompress_asinh", "fitscut_origin"]

LISTING_COLUMNS = ("projcell", "subcell", "ra", "dec", "filter", "mjd", "type", "filename",
                   "shortname", "badflag")
#: Tolerance (deg) when matching listing rows back to the positions sent.
MATCH_TOLERANCE = 1e-4


def fitscut_origin(x, size):
    """First pixel of the ``size``-pixel cutout ``fitscut.cgi`` cuts around pixel ``x`` (0-based).

    The PS1 cutout service runs ``fitscut`` (source: github.com/spacetelescope/fitscut,
    ``extract.c``), which makes the position's WCS pixel coordinate 0-based, subtracts
    half the cutout side in integer arithmetic (``size // 2``) and rounds half up:
    ``floor(x - size // 2 + 0.5)``. So the position lies in
    ``[size // 2 - 0.5, size // 2 + 0.5)`` of the cutout, within half a pixel of the
    centre of pixel ``size // 2``: the central pixel for an odd size; for an even one
    the pixel above the centre (the centre, ``(size - 1) / 2``, is the corner of the
    four central pixels), so the position lies between the centre and one pixel above
    it. On an exact tie (``x - size // 2`` a half-integer) the cutout starts at the
    higher pixel.

    Parameters
    ----------
    x : float
        0-based pixel coordinate of the position along one axis.
    size : int
        Cutout side in pixels.

    Returns
    -------
    int

    Examples
    --------
    >>> fitscut_origin(100.3, 170), fitscut_origin(100.7, 170), fitscut_origin(100.3, 171)
    (15, 16, 15)
    """
    return int(math.floor(float(x) - int(size) // 2 + 0.5))


def decompress_asinh(data, bsoften, boffset):
    """Undo PS1's asinh pixel compression: ``BOFFSET + BSOFTEN * 2 sinh(x / a)``, a = 2.5/ln 10."""
    a = 2.5 / math.log(10.0)
    return boffset + bsoften * 2.0 * np.sinh(np.asarray(data, dtype=np.float64) / a)


class PanstarrsSurvey(Survey):
    """PS1 3π stack cutouts in g r i z y (model channels 2–6)."""

    name = "panstarrs"
    layer = "stack"
    bands = ("g", "r", "i", "z", "y")
    pixscale = 0.25 * u.arcsec
    size = 170
    unit = u.ct
    #: Median seeing of the 3π stacks (Chambers et al. 2016).
    psf_fwhm = {"g": 1.31 * u.arcsec, "r": 1.19 * u.arcsec, "i": 1.11 * u.arcsec,
                "z": 1.07 * u.arcsec, "y": 1.02 * u.arcsec}
    url_config = "panstarrs_url"
    needs_listing = True
    missing_flag = MantisFlag.PANSTARRS_MISSING
    filter_curves = {b: f"panstarrs-{b}" for b in ("g", "r", "i", "z", "y")}
    #: AB magnitude of 1 count in a 1 s stack (``fitscut`` pixels are linear counts).
    zeropoint_1s = 25.0
    #: Typical 3π stack ``EXPTIME`` (s) per band: the reference exposure times to which
    #: `astro_mantis.fusion.exposure` rescales stack counts, and the mock sky's typical
    #: stacks. A stack's pixels have the zero point ``25 + 2.5 log10(EXPTIME)``, so
    #: counts of stacks of different depth differ by their ``EXPTIME`` ratio.
    typical_exptime = {"g": 1100.0, "r": 950.0, "i": 1450.0, "z": 950.0, "y": 650.0}
    min_dec = -30.0
    coalescible = True

    def in_footprint(self, ra, dec):
        """PS1 3π covers dec > -30°."""
        return dec >= self.min_dec

    def exptime_zeropoint(self, exptime):
        """AB zero point ``25 + 2.5 log10(exptime)`` of a stack of ``exptime`` seconds.

        NaN where ``exptime`` is not a positive number (a stack with ``EXPTIME = 0``
        has no zero point; its pixels are kept, as `read` keeps them).

        Parameters
        ----------
        exptime : float or array-like
            The stack's ``EXPTIME`` (s).

        Returns
        -------
        float or `numpy.ndarray`
        """
        if np.ndim(exptime) == 0:
            exptime = float(exptime)
            if not exptime > 0:  # zero, negative or NaN
                return np.nan
            return self.zeropoint_1s + 2.5 * math.log10(exptime)
        exptime = np.asarray(exptime, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            zp = self.zeropoint_1s + 2.5 * np.log10(exptime)
        return np.where(exptime > 0, zp, np.nan)

    def zeropoints(self, header=None):
        """AB zero point ``25 + 2.5 log10(EXPTIME)`` from a fitscut header."""
        if header is None or "EXPTIME" not in header:
            return [np.nan] * len(self.bands)
        return [self.exptime_zeropoint(header["EXPTIME"])] * len(self.bands)

    def listing_request(self, positions):
        """One POST to ``ps1filenames.py`` listing the stack files of many positions."""
        lines = "".join(f"{ra:.7f} {dec:.7f}\n" for ra, dec in positions)
        return Request("POST", f"{self.base_url}/ps1filenames.py",
                       data={"filters": "".join(self.bands), "type": "stack"},
                       files={"file": ("positions.txt", lines)})

    def parse_listing(self, content, positions):
        """Map the listing table back to positions: a {band: filename} dict, or None.

        The service echoes each position it was sent in the ``ra`` and ``dec``
        columns, as numbers whose precision it chooses (fewer decimals than the 7
        sent, possibly). So a row goes to *every* position it matches within
        ``MATCH_TOLERANCE``, in whatever order the rows come, and where several rows of
        one band match a position, the nearest wins: two positions closer together
        than the echo's precision share the files of their rows, rather than one of
        them being taken for uncovered.

        Parameters
        ----------
        content : bytes or str
            The ``ps1filenames.py`` answer.
        positions : sequence of (float, float)
            The positions sent (degrees), in order.

        Returns
        -------
        list of dict or None
            Per position, {band: file name} of the rows that match it, or None
            where no row does.

        Raises
        ------
        `~astro_mantis.exceptions.InvalidResponseError`
            If the answer is not a listing table, or a row is cut short or unreadable
            (a listing cut in the middle of a row).
        """
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        lines = [ln.split() for ln in text.splitlines() if ln.strip()]
        if not lines or lines[0][:len(LISTING_COLUMNS)] != list(LISTING_COLUMNS):
            snippet = text[:80].strip()
            raise InvalidResponseError(f"panstarrs listing: not a ps1filenames table ({snippet!r})")
        col = {name: i for i, name in enumerate(lines[0])}
        pos = np.array(positions, dtype=float).reshape(-1, 2)
        entries = [None] * len(pos)
        best = {}  # (position, band) -> separation of the row chosen
        for row in lines[1:]:
            if len(row) < len(col):
                raise InvalidResponseError(f"panstarrs listing: short row {' '.join(row)!r}")
            try:
                ra, dec = float(row[col["ra"]]), float(row[col["dec"]])
            except ValueError:
                raise InvalidResponseError(
                    f"panstarrs listing: bad row {' '.join(row)!r}") from None
            band = row[col["filter"]]
            if band not in self.bands:
                continue
            dra = np.abs((pos[:, 0] - ra + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec))
            sep = np.hypot(dra, pos[:, 1] - dec)
            for k in np.flatnonzero(sep <= MATCH_TOLERANCE):  # none: a row we did not ask for
                k = int(k)
                if (k, band) in best and best[k, band] <= sep[k]:
                    continue
                best[k, band] = sep[k]
                if entries[k] is None:
                    entries[k] = {}
                entries[k][band] = row[col["filename"]]
        return entries

    def listing_gaps(self, entries, positions):
        """Positions inside the footprint (dec >= -30) whose listing entry lacks a band.

        The service lists each such position in every band asked for (``filters``:
        all of `bands`), so a position without its rows, or with only some of them,
        is one a listing cut at a row boundary left out.

        Parameters
        ----------
        entries : list
            What `parse_listing` made of the listing.
        positions : sequence of (float, float)
            The positions sent, in the same order.

        Returns
        -------
        list of int
        """
        return [k for k, (entry, (ra, dec)) in enumerate(zip(entries, positions))
                if self.in_footprint(ra, dec)
                and (entry is None or any(b not in entry for b in self.bands))]

    def image_requests(self, ra, dec, listing=None, size=None, pixscale=None):
        """One ``fitscut.cgi`` GET per band listed for this position."""
        if listing is None:
            raise ValueError("panstarrs needs the ps1filenames listing of this position")
        size = int(size or self.size)
        return [Request("GET", f"{self.base_url}/fitscut.cgi",
                        {"red": listing[band], "ra": f"{ra:.7f}", "dec": f"{dec:.7f}",
                         "size": size, "format": "fits"}, band=band)
                for band in self.bands if band in listing]

    def read(self, contents, requests, ra, dec, size=None, pixscale=None):
        """Stack the per-band fitscut images into one `~astro_mantis.surveys.SurveyImage`.

        Bands missing from the listing become all-NaN planes.
        """
        size = int(size or self.size)
        bands = self._read_bands(contents, requests, f"at ({ra:.5f}, {dec:.5f})", size)
        if not bands:
            return None
        return self._image({b: data for b, _, data in bands},
                           {b: hdr.get("EXPTIME", np.nan) for b, hdr, _ in bands},
                           bands[0][1], size)

    def coalesce_key(self, listing):
        """The skycell a position's cutout is cut from: its listing's band files.

        Positions with the same key are cut from the same pixel grid, so one larger
        cutout holds all of theirs (see `cut`).

        Parameters
        ----------
        listing : dict
            The position's entry from `parse_listing` ({band: file name}).

        Returns
        -------
        tuple
        """
        return tuple(sorted(listing.items()))

    def cut(self, contents, requests, positions, size=None):
        """Cut the cutouts of several positions from one larger fitscut cutout per band.

        ``fitscut.cgi`` cuts on the skycell's pixel grid, so the cutout of each
        position is a block of the larger one: the pixels `read` would give for the
        position's own requests (the block's origin from `fitscut_origin`), with the
        same WCS (``CRPIX`` shifted by the block's origin), zero points, flags and
        metadata.

        Parameters
        ----------
        contents : list of bytes
            The bodies of the larger request of each band (`image_requests` at the
            positions' centre with a larger ``size``), all of one skycell.
        requests : list of `~astro_mantis.surveys.Request`
            Those requests.
        positions : sequence of (float, float)
            Right ascension and declination (degrees) of the positions; read to 7
            decimals, as their own requests would send them.
        size : int, optional
            Side of each position's cutout (default `size`).

        Returns
        -------
        list of `~astro_mantis.surveys.SurveyImage` or None
            One per position, in order; None where the position's cutout does not
            lie wholly inside the larger one (it must then be fetched on its own).

        Raises
        ------
        `~astro_mantis.exceptions.InvalidResponseError`
            If a body is not a FITS image of the requested size, or the bands do not
            share one pixel grid (their WCS cards, ``wcs_header(..., grid_only=True)``,
            differ; the epochs ``MJD-OBS`` and ``DATE-OBS`` of the band stacks may).
        """
        size = int(size or self.size)
        if not requests:
            return [None] * len(positions)
        big = int(requests[0].params["size"])
        bands = self._read_bands(contents, requests, "(coalesced)", big)
        header = wcs_header(bands[0][1])
        grid = wcs_header(bands[0][1], grid_only=True)
        for band, hdr, _ in bands[1:]:
            # the bands' stacks share the skycell's grid, not their epochs (MJD-OBS)
            if wcs_header(hdr, grid_only=True) != grid:
                raise InvalidResponseError(
                    f"panstarrs {band}: coalesced cutout is not on the grid of the "
                    f"{bands[0][0]} band")
        exptimes = {b: hdr.get("EXPTIME", np.nan) for b, hdr, _ in bands}
        pos = np.array([(float(f"{ra:.7f}"), float(f"{dec:.7f}")) for ra, dec in positions],
                       dtype=float).reshape(-1, 2)
        xs, ys = celestial_wcs(header).all_world2pix(pos[:, 0], pos[:, 1], 0)
        out = []
        for x, y in zip(xs, ys):
            x0, y0 = fitscut_origin(x, size), fitscut_origin(y, size)
            if not (0 <= x0 <= big - size and 0 <= y0 <= big - size):
                out.append(None)
                continue
            shifted = header.copy()
            shifted["CRPIX1"] = header["CRPIX1"] - x0
            shifted["CRPIX2"] = header["CRPIX2"] - y0
            planes = {b: data[y0:y0 + size, x0:x0 + size] for b, _, data in bands}
            out.append(self._image(planes, exptimes, shifted, size))
        return out

    def _read_bands(self, contents, requests, where, size):
        """``[(band, header, pixels)]`` of fitscut bodies of ``size`` x ``size`` pixels,
        asinh-compressed pixels decompressed."""
        out = []
        for content, req in zip(contents, requests):
            hdr, data = read_primary_image(content, f"panstarrs fitscut {req.band} {where}")
            if data is None or data.shape != (size, size):
                shape = None if data is None else data.shape
                raise InvalidResponseError(
                    f"panstarrs {req.band}: image shape {shape}, expected ({size}, {size})")
            if "BSOFTEN" in hdr and "BOFFSET" in hdr:
                data = decompress_asinh(data, hdr["BSOFTEN"], hdr["BOFFSET"])
            out.append((req.band, hdr, data))
        return out

    def _image(self, planes, exptimes, header, size):
        """The `~astro_mantis.surveys.SurveyImage` of band planes on one grid."""
        exptimes = {b: float(t) for b, t in exptimes.items()}
        cube = np.stack([planes.get(b, np.full((size, size), np.nan)) for b in self.bands])
        zps = [25.0 + 2.5 * math.log10(exptimes[b]) if exptimes.get(b, 0) > 0 else np.nan
               for b in self.bands]
        meta = {"LAYER": self.layer}
        meta.update({f"EXPTIME{b.upper()}": exptimes[b] for b in exptimes})
        flags = MantisFlag.NONE if len(planes) == len(self.bands) else MantisFlag.NAN_PIXELS
        return SurveyImage(self.name, cube, header, self.unit, self.bands,
                           zeropoints=zps, flags=flags, meta=meta)


survey = PanstarrsSurvey()
