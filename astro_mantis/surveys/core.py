"""What every survey module declares, and the per-survey image object.

A survey module (``galex.py``, ``panstarrs.py``, ``unwise.py``) holds one `Survey`
subclass instance that says what the survey *is* (bands in model channel order,
pixel scale, default cutout size, flux unit, zero points, PSF) and *how its
cutouts are fetched*: which HTTP requests to send (`Request`) and how to turn the
bytes that come back into a `SurveyImage`. Sending the requests (concurrency,
retries, cache) is the job of `astro_mantis.fetch`; nothing here opens a socket
and nothing here imports torch.
"""
import functools
import hashlib
import io
import re
import warnings
from dataclasses import dataclass, field
from urllib.parse import urlencode

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning

from ..config import conf
from ..exceptions import InvalidResponseError
from ..flags import MantisFlag, survey_missing_flag

__all__ = ["Request", "SurveyImage", "Survey", "read_fits_bytes", "read_primary_image",
           "primary_layout", "wcs_header", "wcs_cards", "modern_wcs_keyword"]

FITS_MAGIC = b"SIMPLE  ="


@dataclass(frozen=True)
class Request:
    """One HTTP request a survey needs sent.

    Parameters
    ----------
    method : {"GET", "POST"}
        HTTP method.
    url : str
        URL without the query string.
    params : dict
        Query-string parameters.
    data : dict, optional
        Form fields of a POST.
    files : dict, optional
        Multipart file fields of a POST: ``{field: (filename, text)}``.
    band : str, optional
        The band this request returns, when it returns only one.
    """

    method: str
    url: str
    params: dict = field(default_factory=dict)
    data: dict | None = None
    files: dict | None = None
    band: str | None = None

    @property
    def full_url(self):
        """The URL with its query string, as it would appear in a browser."""
        return f"{self.url}?{urlencode(self.params)}" if self.params else self.url

    @property
    def host(self):
        """``scheme://netloc`` of the URL: the unit of politeness (connections per host)."""
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"


_BITPIX_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_WCS_KEY = re.compile(r"^(WCSAXES|CTYPE\d|CRVAL\d|CRPIX\d|CDELT\d|CUNIT\d|CROTA\d|CD\d_\d|PC\d_\d|"
                      r"PV\d_\d+|PS\d_\d+|RADESYS|RADECSYS|EQUINOX|EPOCH|LONPOLE|LATPOLE|"
                      r"MJD-OBS|DATE-OBS|A_\w+|B_\w+|AP_\w+|BP_\w+)$")
#: The WCS cards that say when an image was taken, not where its pixels lie: they differ
#: between the band stacks of one Pan-STARRS skycell, whose pixel grid is one.
_EPOCH_KEYS = frozenset({"MJD-OBS", "DATE-OBS"})
#: The legacy (AIPS, pre-WCS-paper) spelling of the PC and CD matrix elements, ``PC001002``
#: for ``PC1_2``: real Pan-STARRS stack and ``fitscut.cgi`` headers carry their rotation
#: (``PC001001 = -1`` with a positive ``CDELT1``) this way. wcslib reads both spellings.
_LEGACY_MATRIX_KEY = re.compile(r"^(PC|CD)(\d{3})(\d{3})$")


def _reject_non_fits(content, what):
    if not content:
        raise InvalidResponseError(f"{what}: empty body")
    if not content.startswith(FITS_MAGIC):
        head = content[:200].lstrip().lower()
        kind = "an HTML page" if head.startswith((b"<!doctype html", b"<html")) else "not FITS"
        snippet = content[:80].decode("latin-1", "replace").strip()
        raise InvalidResponseError(f"{what}: body is {kind} ({snippet!r})")


def primary_layout(content, what="response"):
    """Locate the primary header and data of a FITS file in memory, without astropy.

    A cheap check for every response body: it rejects empty bodies, HTML pages,
    non-FITS bodies and files shorter than their own header says (truncated).

    Parameters
    ----------
    content : bytes
        The body of an HTTP response.
    what : str
        A description of the request, used in error messages.

    Returns
    -------
    header_bytes : int
        Length of the primary header (whole 2880-byte blocks).
    shape : tuple of int
        Data shape in numpy order; ``()`` when the HDU holds no data.
    bitpix : int
        The ``BITPIX`` value.
    """
    _reject_non_fits(content, what)
    cards = {}
    end = None
    for pos in range(0, len(content) - 79, 80):
        key = content[pos:pos + 8]
        if key == b"END     ":
            end = pos
            break
        if key.startswith((b"BITPIX", b"NAXIS")):
            value = content[pos + 10:pos + 80].split(b"/")[0].strip()
            try:
                cards[key.strip().decode()] = int(value)
            except ValueError:
                raise InvalidResponseError(f"{what}: bad {key.decode().strip()} card") from None
    if end is None:
        raise InvalidResponseError(f"{what}: truncated FITS (no END card in {len(content)} bytes)")
    header_bytes = (end // 2880 + 1) * 2880
    naxis = cards.get("NAXIS", 0)
    shape = tuple(cards.get(f"NAXIS{i}", 0) for i in range(naxis, 0, -1))
    bitpix = cards.get("BITPIX", 8)
    if bitpix not in _BITPIX_DTYPES:
        raise InvalidResponseError(f"{what}: unsupported BITPIX {bitpix}")
    nbytes = int(np.prod(shape)) * abs(bitpix) // 8 if shape else 0
    if len(content) < header_bytes + nbytes:
        raise InvalidResponseError(
            f"{what}: truncated FITS ({len(content)} bytes, header and data need "
            f"{header_bytes + nbytes})")
    return header_bytes, shape, bitpix


def read_primary_image(content, what="response"):
    """Read the primary HDU of a FITS file held in memory, fast.

    Equivalent to ``fits.open(...)[0]`` for the header and (scaled) data, at a
    fraction of the cost: the cutout services answer with one image HDU.

    Returns
    -------
    header : `~astropy.io.fits.Header`
    data : `numpy.ndarray` or None
        Native-endian; ``BSCALE``/``BZERO`` applied (float32 unless float64 on disk);
        the pixels of an integer image that equal its ``BLANK`` value are NaN.
    """
    header_bytes, shape, bitpix = primary_layout(content, what)
    try:
        header = fits.Header.fromstring(content[:header_bytes].decode("ascii", "replace"))
    except Exception as exc:
        raise InvalidResponseError(f"{what}: unreadable FITS header ({exc})") from exc
    if not shape or 0 in shape:
        return header, None
    raw = np.frombuffer(content, dtype=_BITPIX_DTYPES[bitpix], count=int(np.prod(shape)),
                        offset=header_bytes).reshape(shape)
    out_dtype = np.float64 if bitpix == -64 else np.float32
    data = raw.astype(out_dtype)
    blank = header.get("BLANK") if bitpix > 0 else None
    if isinstance(blank, (int, np.integer)) and not isinstance(blank, bool):
        data[raw == blank] = np.nan  # undefined pixels of an integer image
    bscale, bzero = header.get("BSCALE", 1.0), header.get("BZERO", 0.0)
    if bscale != 1.0 or bzero != 0.0:
        data = data * out_dtype(bscale) + out_dtype(bzero)
    return header, data


def modern_wcs_keyword(keyword):
    """The WCS paper's spelling of a keyword: ``PCi_j``/``CDi_j`` for the legacy
    ``PC00i00j``/``CD00i00j``; any other keyword unchanged.

    Examples
    --------
    >>> modern_wcs_keyword("PC001002"), modern_wcs_keyword("CD002002"), modern_wcs_keyword("CDELT1")
    ('PC1_2', 'CD2_2', 'CDELT1')
    """
    match = _LEGACY_MATRIX_KEY.match(keyword)
    if match is None:
        return keyword
    return f"{match[1]}{int(match[2])}_{int(match[3])}"


def wcs_cards(header, keep):
    """The cards of ``header`` whose keyword (in the WCS paper's spelling) ``keep`` matches.

    Legacy ``PC00i00j`` and ``CD00i00j`` cards come out renamed ``PCi_j`` and ``CDi_j``
    (`modern_wcs_keyword`), their values and comments unchanged, so that a header cut
    down to its WCS cards still holds the matrix (and the sign of the RA axis) that
    wcslib reads from the full header. Where a header spells one element both ways,
    the modern card wins.

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
    keep : compiled regular expression
        Matched (``keep.match``) against each keyword, renamed.

    Returns
    -------
    list of `~astropy.io.fits.Card`
    """
    present = set(header.keys())
    out = []
    for card in header.cards:
        key = modern_wcs_keyword(card.keyword)
        if not keep.match(key):
            continue
        if key != card.keyword:
            if key in present:
                continue
            card = fits.Card(key, card.value, card.comment)
        out.append(card)
    return out


def wcs_header(header, grid_only=False):
    """Only the WCS cards of ``header`` (cheap to keep, and enough to rebuild the WCS).

    Legacy ``PC00i00j``/``CD00i00j`` matrix cards are kept under their modern names
    ``PCi_j``/``CDi_j`` (see `wcs_cards`).

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
    grid_only : bool, optional
        Leave out the cards that date the image (``MJD-OBS``, ``DATE-OBS``) and keep only
        those that place its pixels on the sky: two images on one pixel grid have equal
        ``wcs_header(..., grid_only=True)``.

    Returns
    -------
    `~astropy.io.fits.Header`
    """
    out = fits.Header()
    for card in wcs_cards(header, _WCS_KEY):
        if not (grid_only and card.keyword in _EPOCH_KEYS):
            out.append(card)
    return out


def read_fits_bytes(content, what="response"):
    """Parse and fully load a FITS file held in memory.

    Raises `~astro_mantis.exceptions.InvalidResponseError` when it is not one.

    An HTML page, an empty body, a truncated file or anything that is not FITS is
    rejected with a message that says which of these it was.

    Parameters
    ----------
    content : bytes
        The body of an HTTP response.
    what : str
        A description of the request, used in error messages.

    Returns
    -------
    `~astropy.io.fits.HDUList`
        With all data read into memory.
    """
    _reject_non_fits(content, what)
    if len(content) % 2880:
        raise InvalidResponseError(
            f"{what}: truncated FITS ({len(content)} bytes is not a multiple of 2880)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", fits.verify.VerifyWarning)
            warnings.simplefilter("error", AstropyUserWarning)
            hdul = fits.open(io.BytesIO(content), lazy_load_hdus=False, memmap=False)
            for hdu in hdul:
                if hdu.data is not None:
                    hdu.data = np.array(hdu.data)
    except Exception as exc:  # astropy raises many types for damaged files
        text = str(exc)
        kind = "truncated" if ("truncated" in text or "too small" in text) else "unreadable"
        raise InvalidResponseError(f"{what}: {kind} FITS ({text})") from exc
    return hdul


@functools.lru_cache(maxsize=64)
def _parse_unit_text(text):
    return u.Unit(text, parse_strict="silent")


def _parse_unit(unit):
    """`astropy.units.Unit` of ``unit``; strings are parsed once and remembered."""
    return _parse_unit_text(unit) if isinstance(unit, str) else u.Unit(unit)


def _unit_string(unit):
    """BUNIT text: the FITS spelling where the standard has one, astropy's generic one otherwise."""
    if unit == u.dimensionless_unscaled:
        return ""
    try:
        return unit.to_string("fits")
    except ValueError:
        return unit.to_string()


def celestial_wcs(header):
    """The 2-D celestial WCS of a header (quietly fixing non-standard keywords)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header, naxis=2).celestial


class SurveyImage:
    """The cutout of one survey at one position: all its bands on one pixel grid.

    Parameters
    ----------
    survey : str
        Survey name (``"galex"``, ``"panstarrs"``, ``"unwise"``).
    data : array-like, shape (nbands, ny, nx)
        Pixel values in ``unit``. NaN marks pixels with no data.
    wcs : `~astropy.wcs.WCS` or `~astropy.io.fits.Header`
        Celestial WCS of the pixel grid (shared by all bands), or a header holding
        it (its WCS cards are kept and the WCS is built on first use).
    unit : `~astropy.units.UnitBase` or str
        Flux unit of ``data``.
    bands : sequence of str
        Band names, one per plane, in model channel order.
    zeropoints : sequence of float, optional
        AB magnitude zero point of each plane: ``m_AB = zp - 2.5 log10(value)``.
    flags : `~astro_mantis.flags.MantisFlag`, optional
        Flags; `~astro_mantis.flags.MantisFlag.NAN_PIXELS` is added when NaN pixels exist.
    meta : dict, optional
        Extra header keywords worth keeping (exposure times, layer, source URL).
    check_nan : bool, optional
        Scan the pixels to set `~astro_mantis.flags.MantisFlag.NAN_PIXELS` (default).
        Pass False only when ``flags`` already says whether NaN pixels exist.
    """

    def __init__(self, survey, data, wcs, unit, bands, zeropoints=None, flags=MantisFlag.NONE,
                 meta=None, check_nan=True):
        data = np.asarray(data, dtype=np.float32)
        if data.ndim == 2:
            data = data[np.newaxis]
        if data.ndim != 3 or data.shape[0] != len(bands):
            raise ValueError(
                f"data must have shape (nbands={len(bands)}, ny, nx); got {data.shape}"
            )
        self.survey = survey
        self.data = data
        self._wcs, self._wcs_header = None, None
        if isinstance(wcs, str):  # WCS cards as header text (from the cache)
            self._wcs_header = wcs
        elif isinstance(wcs, fits.Header):
            self._wcs_header = wcs_header(wcs)
        else:
            self._wcs = wcs
        self.unit = _parse_unit(unit)
        self.bands = tuple(bands)
        self.zeropoints = (np.full(len(bands), np.nan) if zeropoints is None
                           else np.asarray(zeropoints, dtype=float))
        self.meta = dict(meta or {})
        self.flags = MantisFlag(flags)
        # a finite sum proves every pixel finite, at a fraction of the cost of isfinite()
        if check_nan and not np.isfinite(data.sum(dtype=np.float64)) and self.mask.any():
            self.flags |= MantisFlag.NAN_PIXELS

    @property
    def wcs(self):
        """Celestial `~astropy.wcs.WCS` of the pixel grid (built on first use)."""
        if self._wcs is None:
            self._wcs = celestial_wcs(self.header)
        return self._wcs

    @property
    def header(self):
        """The WCS as FITS header cards."""
        if self._wcs_header is None:
            self._wcs_header = self._wcs.to_header()
        elif isinstance(self._wcs_header, str):
            self._wcs_header = fits.Header.fromstring(self._wcs_header)
        return self._wcs_header

    @property
    def mask(self):
        """Boolean array, True where a pixel has no valid value (NaN or inf)."""
        return ~np.isfinite(self.data)

    @property
    def shape(self):
        """``(nbands, ny, nx)``."""
        return self.data.shape

    def __getitem__(self, band):
        """The 2-D image of one band, by name."""
        try:
            return self.data[self.bands.index(band)]
        except ValueError:
            raise KeyError(f"{self.survey} has no band {band!r}; bands are {self.bands}") from None

    def __repr__(self):
        ny, nx = self.data.shape[1:]
        return (f"<SurveyImage {self.survey} bands={','.join(self.bands)} {ny}x{nx} "
                f"unit={self.unit} flags={self.flags!r}>")

    def to_hdus(self):
        """One `~astropy.io.fits.ImageHDU` per band (EXTNAME ``SURVEY_BAND``) with WCS and units.

        ``meta`` entries that are strings, numbers or booleans with keywords of at most
        8 characters become header cards; a NaN or infinite number (a PS1 stack without
        ``EXPTIME``) becomes a card with an undefined value, which `from_hdus` reads
        back as NaN.
        """
        hdus = []
        wcs_block = self.header
        for i, band in enumerate(self.bands):
            hdr = fits.Header()
            hdr["EXTNAME"] = f"{self.survey.upper()}_{band.upper()}"
            hdr["SURVEY"] = (self.survey, "survey name")
            hdr["BAND"] = (band, "band name")
            hdr["BANDIDX"] = (i, "band index in channel order")
            hdr["BUNIT"] = _unit_string(self.unit)
            if np.isfinite(self.zeropoints[i]):
                hdr["MAGZP"] = (float(self.zeropoints[i]), "AB zero point")
            hdr["FLAGS"] = (int(self.flags), "astro_mantis MantisFlag bits")
            for key, value in self.meta.items():
                if isinstance(value, (str, int, float, bool)) and len(key) <= 8:
                    if isinstance(value, float) and not np.isfinite(value):
                        # FITS has no NaN or inf card value: an undefined value, read
                        # back as NaN by from_hdus
                        hdr[key] = (None, "not a finite number")
                    else:
                        hdr[key] = value
            hdr.update(wcs_block)
            hdus.append(fits.ImageHDU(self.data[i], header=hdr))
        return hdus

    @classmethod
    def from_hdus(cls, hdus):
        """Rebuild a `SurveyImage` from the HDUs written by `to_hdus` (bands in BANDIDX order).

        Header cards other than the WCS and those `to_hdus` writes itself become ``meta``;
        a card with an undefined value becomes NaN.
        """
        hdus = sorted(hdus, key=lambda h: h.header.get("BANDIDX", 0))
        if not hdus:
            raise ValueError("no HDUs given")
        first = hdus[0].header
        meta_skip = {"EXTNAME", "SURVEY", "BAND", "BANDIDX", "BUNIT", "MAGZP", "FLAGS",
                     "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT",
                     "CHECKSUM", "DATASUM"}
        wcs = wcs_header(first)
        meta = {k: np.nan if first[k] is None else first[k] for k in first
                if k not in meta_skip and modern_wcs_keyword(k) not in wcs
                and k not in ("", "COMMENT", "HISTORY")}
        return cls(
            survey=first["SURVEY"],
            data=np.stack([np.asarray(h.data, dtype=np.float32) for h in hdus]),
            wcs=wcs,
            unit=first.get("BUNIT", "") or "",
            bands=[h.header["BAND"] for h in hdus],
            zeropoints=[h.header.get("MAGZP", np.nan) for h in hdus],
            flags=first.get("FLAGS", 0),
            meta=meta,
        )


class Survey:
    """Base class of the survey declarations.

    Subclasses set the class attributes below and implement `image_requests` and
    `read`; a survey that must first look up which files cover a position (PS1)
    also implements `listing_request` and `parse_listing`.

    Attributes
    ----------
    name : str
        Registry name, in lower case, e.g. ``"galex"`` (looked up case-insensitively).
    bands : tuple of str
        Band names in model channel order.
    native_bands : tuple
        The same bands as the service names them in requests and headers (default:
        `bands`).
    filter_curves : dict
        Band → name of its filter response curve in ``speclite`` (used by the
        simulator's photometry).
    pixscale : `~astropy.units.Quantity`
        Pixel scale of the cutouts.
    size : int
        Default cutout side in pixels.
    unit : `~astropy.units.UnitBase`
        Flux unit of the pixels as served.
    psf_fwhm : dict
        Band → PSF FWHM (`~astropy.units.Quantity`).
    url_config : str
        Name of the `astro_mantis.conf` item holding the service's base URL.
    layer : str
        Service layer / product name (part of the cache key).
    needs_listing : bool
        Whether a listing request must run before the image requests.
    missing_flag : int or `~astro_mantis.flags.MantisFlag` or None
        The bit of the survey's ``<SURVEY>_MISSING`` flag: its member of
        `~astro_mantis.flags.MantisFlag` for a built-in survey, a bit of
        `~astro_mantis.flags.SURVEY_FLAG_BITS` for another, or None (the default) to
        be given the lowest free one of those when the survey joins the registry.
    coalescible : bool
        Whether the service cuts on the survey's own image grid (no resampling), so
        that positions close together can share one larger request, cut locally into
        their cutouts (`coalesce_key`, `cut`); default False.
    """

    name = ""
    bands = ()
    pixscale = 1 * u.arcsec
    size = 32
    unit = u.dimensionless_unscaled
    psf_fwhm = {}
    url_config = ""
    layer = ""
    needs_listing = False
    missing_flag = None
    filter_curves = {}
    coalescible = False

    @property
    def native_bands(self):
        """The bands as the service names them (here the same as `bands`)."""
        return tuple(self.bands)

    @property
    def flag(self):
        """The ``<SURVEY>_MISSING`` flag of this survey (as recorded by the registry)."""
        return survey_missing_flag(self.name) or MantisFlag(int(self.missing_flag or 0))

    @property
    def base_url(self):
        """The service's base URL, read from `astro_mantis.conf` at call time."""
        return getattr(conf, self.url_config).rstrip("/")

    def zeropoints(self, header=None):
        """AB zero point of each band (``m_AB = zp - 2.5 log10(pixel sum)``)."""
        raise NotImplementedError

    def in_footprint(self, ra, dec):
        """Static footprint test (no network); True unless the survey never covers (ra, dec)."""
        return True

    @property
    def source(self):
        """Which service a cutout comes from: the base URL and the layer (data release).

        Part of every cache key and stored in every cache entry, so that cutouts of
        one service (a test server, a mirror, another data release) are never
        served as another's.
        """
        return f"{self.base_url}|{self.layer}"

    def cache_key(self, ra, dec, size=None, pixscale=None):
        """A file-name-safe key for one cutout: survey, service (`source`), position, size,
        pixel scale."""
        size = size or self.size
        pixscale = u.Quantity(self.pixscale if pixscale is None else pixscale,
                              u.arcsec).to_value(u.arcsec)
        text = f"{self.name}|{self.source}|{ra:.7f}|{dec:.7f}|{size:d}|{pixscale:.5f}"
        return hashlib.sha1(text.encode()).hexdigest()

    def listing_request(self, positions):
        """The request that lists which files cover ``positions`` ((ra, dec) pairs)."""
        raise NotImplementedError(f"{self.name} needs no listing")

    def parse_listing(self, content, positions):
        """Turn a listing response into one entry per position (None: not covered)."""
        raise NotImplementedError(f"{self.name} needs no listing")

    def listing_gaps(self, entries, positions):
        """The positions a listing should have answered and did not: its gaps.

        A listing is checked with this before it is used, and one with gaps is a
        bad answer (retried, as a truncated body is): the service lists every
        position inside the footprint, so a position inside `in_footprint` without
        an entry was cut off, not found uncovered.

        Parameters
        ----------
        entries : list
            What `parse_listing` made of the listing (None: no row).
        positions : sequence of (float, float)
            The positions sent, in the same order.

        Returns
        -------
        list of int
            Indices of the positions inside the footprint without an entry.
        """
        return [k for k, (entry, (ra, dec)) in enumerate(zip(entries, positions))
                if entry is None and self.in_footprint(ra, dec)]

    def image_requests(self, ra, dec, listing=None, size=None, pixscale=None):
        """The requests that fetch the cutout at (ra, dec) in degrees."""
        raise NotImplementedError

    def read(self, contents, requests, ra, dec, size=None, pixscale=None):
        """Build a `SurveyImage` from the response bodies of `image_requests`.

        Returns None when the response says the position is not covered
        (out of footprint); raises `~astro_mantis.exceptions.InvalidResponseError`
        when a body is not what the protocol promises.
        """
        raise NotImplementedError

    def coalesce_key(self, listing):
        """Which image grid a position's cutout is cut from (only if `coalescible`).

        Positions of one key can share one larger request; ``listing`` is the
        position's listing entry (None for a survey without listings).
        """
        raise NotImplementedError(f"{self.name} does not coalesce requests")

    def cut(self, contents, requests, positions, size=None):
        """Cut the cutouts of ``positions`` from the bodies of one larger request
        (only if `coalescible`); None for a position not wholly inside it."""
        raise NotImplementedError(f"{self.name} does not coalesce requests")

    def __repr__(self):
        return (f"<Survey {self.name}: bands={','.join(self.bands)} "
                f"{self.size}px x {self.pixscale:g} unit={self.unit}>")
