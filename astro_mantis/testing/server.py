# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Loopback HTTP servers that speak the survey services' protocols.

`SurveyServer` binds to 127.0.0.1 and answers the same paths, parameters
and response formats as

* the Pan-STARRS1 image service (``{panstarrs_url}/ps1filenames.py`` and
  ``{panstarrs_url}/fitscut.cgi``, with ``panstarrs_url = url + "/cgi-bin"``),
* the Legacy Survey viewer (``{legacysurvey_url}/fits-cutout`` for the
  ``galex`` and ``unwise-neo7`` layers, with
  ``legacysurvey_url = url + "/viewer"``),

rendering images with a pluggable sky model (`SyntheticSky` by default) and
injecting the failures the real services show (latency, 5xx, truncated
bodies, HTML pages with status 200, timeouts).

Only the standard library, numpy and astropy are used.
"""

import contextlib
import inspect
import math
import re
from collections import namedtuple
from email import policy as email_policy
from email.parser import BytesParser
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from .base import FAULT_KINDS, LoopbackService, _RequestHandler
from .synthetic import SURVEY_BANDS, SyntheticSky, _format_card, stable_seed

__all__ = [
    "PS1_LISTING_HEADER",
    "LogEntry",
    "SurveyServer",
    "ps1_filename",
    "ps1_skycell",
    "ps1_skycell_center",
]

#: Header line of a ``ps1filenames.py`` listing.
PS1_LISTING_HEADER = "projcell subcell ra dec filter mjd type filename shortname badflag"

#: One request as recorded in `SurveyServer.log`.
LogEntry = namedtuple("LogEntry", ["method", "endpoint", "params", "npositions"])

ENDPOINTS = frozenset({"ps1filenames", "fitscut", "fits-cutout"})
_ROUTES = {
    "/cgi-bin/ps1filenames.py": "ps1filenames",
    "/cgi-bin/fitscut.cgi": "fitscut",
    "/viewer/fits-cutout": "fits-cutout",
}
_LAYERS = {"galex": "galex", "unwise-neo7": "unwise", "unwise-neo6": "unwise"}
_PS1_FILENAME_RE = re.compile(
    r"rings\.v3\.skycell\.(\d{4})\.(\d{3})\.stk\.([grizy])\.unconv\.fits$"
)
_ASINH_A = 2.5 / math.log(10.0)
#: Default of `SurveyServer.max_size`.
MAX_SIZE = 3000

# ---------------------------------------------------------------------------
# PS1 sky tiling (a simplified stand-in for the real projection cells)
# ---------------------------------------------------------------------------
# Declination bands 4 deg high centred on multiples of 4 deg (-88 ... 88),
# each split in RA into about 4-deg wide projection cells, each cell split
# into a 10 x 10 grid of skycells (subcell = 10 * row + column), so a skycell
# is about 0.4 x 0.4 deg like a real PS1 skycell.
_BAND_HEIGHT = 4.0
_NDEC = 45
_PROJCELL_OFFSET = 1000
_NRA = np.array(
    [max(1, round(360.0 * math.cos(math.radians(-88.0 + 4.0 * k)) / 4.0))
     for k in range(_NDEC)]
)
_BASE = _PROJCELL_OFFSET + np.concatenate([[0], np.cumsum(_NRA)[:-1]])
_PROJCELL_MAX = int(_BASE[-1] + _NRA[-1] - 1)


def ps1_skycell(ra, dec):
    """Skycell of the loopback PS1 tiling containing a position.

    Parameters
    ----------
    ra, dec : float
        Position in degrees.

    Returns
    -------
    projcell : int
        Projection cell number (4 digits).
    subcell : int
        Skycell number within the projection cell (0-99).
    ra_c, dec_c : float
        Skycell centre in degrees, used as the ``CRVAL`` of ``fitscut.cgi``
        cutouts.
    """
    ra = float(ra) % 360.0
    dec = float(dec)
    if not -90.0 <= dec <= 90.0:
        raise ValueError(f"dec must be within [-90, 90] deg, got {dec}")
    k = min(int((dec + 90.0) // _BAND_HEIGHT), _NDEC - 1)
    width = 360.0 / _NRA[k]
    j = min(int(ra // width), int(_NRA[k]) - 1)
    dec_lo = -90.0 + _BAND_HEIGHT * k
    sx = min(int((ra - j * width) / width * 10.0), 9)
    sy = min(int((dec - dec_lo) / _BAND_HEIGHT * 10.0), 9)
    projcell = int(_BASE[k] + j)
    subcell = 10 * sy + sx
    return (projcell, subcell) + ps1_skycell_center(projcell, subcell)


def ps1_skycell_center(projcell, subcell):
    """Centre of a skycell of the loopback PS1 tiling.

    Parameters
    ----------
    projcell, subcell : int
        As returned by `ps1_skycell`.

    Returns
    -------
    ra_c, dec_c : float
        Skycell centre in degrees.

    Raises
    ------
    ValueError
        If the projection cell or skycell does not exist.
    """
    projcell, subcell = int(projcell), int(subcell)
    if not (_PROJCELL_OFFSET <= projcell <= _PROJCELL_MAX and 0 <= subcell < 100):
        raise ValueError(f"no skycell {projcell}.{subcell:03d}")
    k = int(np.searchsorted(_BASE, projcell, side="right") - 1)
    j = projcell - int(_BASE[k])
    width = 360.0 / _NRA[k]
    sy, sx = divmod(subcell, 10)
    ra_c = (j + (sx + 0.5) / 10.0) * width
    dec_c = -90.0 + _BAND_HEIGHT * k + (sy + 0.5) * _BAND_HEIGHT / 10.0
    return float(ra_c), float(dec_c)


def ps1_filename(projcell, subcell, band):
    """Stack image path and short name as ``ps1filenames.py`` lists them.

    Parameters
    ----------
    projcell, subcell : int
        Skycell identifiers.
    band : str
        PS1 band, one of ``g r i z y``.

    Returns
    -------
    filename, shortname : str
        E.g. ``/rings.v3.skycell/2381/032/rings.v3.skycell.2381.032.stk.g.unconv.fits``
        and its last path component.
    """
    short = f"rings.v3.skycell.{projcell:04d}.{subcell:03d}.stk.{band}.unconv.fits"
    return f"/rings.v3.skycell/{projcell:04d}/{subcell:03d}/{short}", short


def _angular_distance(ra1, dec1, ra2, dec2):
    """Great-circle distance in degrees."""
    ra1, dec1, ra2, dec2 = map(math.radians, (ra1, dec1, ra2, dec2))
    c = (math.sin(dec1) * math.sin(dec2)
         + math.cos(dec1) * math.cos(dec2) * math.cos(ra1 - ra2))
    return math.degrees(math.acos(min(1.0, max(-1.0, c))))


_STRUCTURAL = frozenset({"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT",
                         "END", "BSCALE", "BZERO", "BLANK"})
_BITPIX = {("f", 4): -32, ("f", 8): -64, ("u", 1): 8, ("i", 2): 16, ("i", 4): 32, ("i", 8): 64}


def _encode_fits(header, data, *, drop=(), replace=None, insert=(), insert_before=None):
    """Encode one primary HDU as FITS bytes, quickly.

    The structural keywords are written from ``data``; the other cards of
    ``header`` keep their original text, in order, except those named in
    ``drop``. ``replace`` maps keywords to new values (set in place, or
    appended when absent); ``insert`` cards go before the first card named
    ``insert_before`` (or at the end). This avoids the cost of building and
    writing a new `astropy.io.fits.HDUList` for each response.
    """
    replace = dict(replace or {})
    if data is None:
        shape, bitpix = (), 8
    else:
        data = np.asarray(data)
        bitpix = _BITPIX[(data.dtype.kind, data.dtype.itemsize)]
        shape = data.shape
    cards = [
        _format_card("SIMPLE", True, "conforms to FITS standard"),
        _format_card("BITPIX", bitpix, "array data type"),
        _format_card("NAXIS", len(shape), "number of array dimensions"),
    ]
    cards += [_format_card(f"NAXIS{i + 1}", n) for i, n in enumerate(reversed(shape))]
    inserted = not insert
    for card in header.cards:
        key = card.keyword
        if (key in _STRUCTURAL or key in drop
                or (key.startswith("NAXIS") and key[5:].isdigit())):
            continue
        if not inserted and key == insert_before:
            cards += [_format_card(*c) for c in insert]
            inserted = True
        if key in replace:
            cards.append(_format_card(key, replace.pop(key)))
        else:
            cards.append(card.image)
    if not inserted:
        cards += [_format_card(*c) for c in insert]
    cards += [_format_card(k, v) for k, v in replace.items()]
    text = "".join(cards) + "END".ljust(80)
    chunks = [(text + " " * (-len(text) % 2880)).encode("ascii")]
    if data is not None and data.size:
        raw = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder(">")).tobytes()
        chunks.append(raw + b"\0" * (-len(raw) % 2880))
    return b"".join(chunks)


class _BadRequest(Exception):
    """Raised for a malformed request; becomes a plain-text error response."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------
class _SurveyRequestHandler(_RequestHandler):
    """Routes ``GET`` and ``POST`` requests to a `SurveyServer` (``HEAD`` gets 501)."""

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, method):
        owner = self.server.owner
        split = urlsplit(self.path)
        path = split.path.rstrip("/") or "/"
        try:
            body = self._read_body() if method == "POST" else b""
        except (ValueError, OSError):
            self.send_body(400, b"bad request body\n", "text/plain", close=True)
            return
        endpoint = _ROUTES.get(path)
        if endpoint is None:
            self.send_body(404, b"Not Found\n", "text/plain")
            return
        try:
            params, file_text = _parse_params(split.query, body,
                                              self.headers.get("Content-Type", ""))
            positions = None
            if endpoint == "ps1filenames":
                positions = _listing_positions(params, file_text)
        except _BadRequest as err:
            owner._record(method, endpoint, {}, None)
            self.send_body(err.status, f"{err}\n".encode(), "text/plain")
            return
        owner._record(method, endpoint, params,
                      None if positions is None else len(positions))
        owner._sleep(owner.latency)

        fault = owner._choose_fault(endpoint)
        if owner._serve_fault(self, fault):
            return
        close = fault == "timeout"

        try:
            status, content_type, payload = owner._respond(endpoint, params, positions)
        except _BadRequest as err:
            status, content_type, payload = err.status, "text/plain", f"{err}\n".encode()
        except Exception as err:  # noqa: BLE001 - the real CGIs answer 500 on any error
            status, content_type = 500, "text/plain"
            payload = f"Internal Server Error: {type(err).__name__}: {err}\n".encode()
        if fault == "truncate":
            payload = payload[: len(payload) // 2]
        self.send_body(status, payload, content_type, close=close)


_HTML_503 = (
    b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>"
    b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to "
    b"service your request. Please try again later.</p></body></html>\n"
)
_HTML_200 = (
    b"<!DOCTYPE html>\n<html><head><title>Error</title></head><body>"
    b"<h1>An error occurred</h1><p>The requested cutout could not be produced "
    b"at this time.</p></body></html>\n"
)


def _parse_params(query, body, content_type):
    """Merge query-string and form parameters; return (params, file_text)."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    file_text = None
    if not body:
        return params, file_text
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "multipart/form-data":
        message = BytesParser(policy=email_policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        if not message.is_multipart():
            raise _BadRequest("malformed multipart body")
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name is None:
                continue
            payload = part.get_payload(decode=True) or b""
            if name == "file":
                file_text = payload.decode("utf-8", errors="replace")
            else:
                params[name] = payload.decode("utf-8", errors="replace")
    elif ctype in ("application/x-www-form-urlencoded", ""):
        params.update(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
    else:
        raise _BadRequest(f"unsupported Content-Type {content_type!r}")
    return params, file_text


def _float_param(params, name):
    if name not in params or params[name].strip() == "":
        raise _BadRequest(f"missing parameter {name!r}")
    try:
        value = float(params[name])
    except ValueError:
        raise _BadRequest(f"bad value for {name!r}: {params[name]!r}") from None
    if not math.isfinite(value):
        raise _BadRequest(f"bad value for {name!r}: {params[name]!r}")
    return value


def _int_param(params, name, default):
    if name not in params or params[name].strip() == "":
        return default
    try:
        return int(float(params[name]))
    except ValueError:
        raise _BadRequest(f"bad value for {name!r}: {params[name]!r}") from None


def _listing_positions(params, file_text):
    """Positions of a ps1filenames.py request, in the order given."""
    if file_text is not None:
        positions = []
        for lineno, line in enumerate(file_text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.replace(",", " ").split()
            try:
                ra, dec = float(fields[0]), float(fields[1])
            except (IndexError, ValueError):
                raise _BadRequest(f"cannot read 'ra dec' from line {lineno}: {line!r}") from None
            positions.append((ra, dec))
        return positions
    return [(_float_param(params, "ra"), _float_param(params, "dec"))]


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------
class SurveyServer(LoopbackService):
    """A loopback HTTP server speaking the PS1 and Legacy Survey protocols.

    Parameters
    ----------
    sky : object, optional
        Image source with a method ``render(survey, coord, size=None,
        pixscale=None, band=None, **kwargs)`` returning an
        `~astropy.io.fits.HDUList` (see `SyntheticSky.render`); PS1 renders
        also get ``skycell_center=(ra_c, dec_c)`` when the method accepts it.
        Defaults to ``SyntheticSky()``.
    host : str, optional
        Interface to bind, default ``"127.0.0.1"``.
    port : int, optional
        Port to bind; 0 (default) picks a free port when the server starts (kept by a
        restart while it is free).
    latency : float, optional
        Seconds added to every request (slept in the handler thread).
    error_rate, truncate_rate, html_rate : float, optional
        Fractions of responses answered with HTTP 503 (short HTML body),
        with the body cut to about half (status 200, ``Content-Length`` of
        the cut body), or with an HTML error page and status 200.
    endpoints : set of str, optional
        Endpoints the random faults apply to, among ``"ps1filenames"``,
        ``"fitscut"`` and ``"fits-cutout"``; None (default) means all.
    seed : int, optional
        Seed of the fault generator.
    ps1_min_dec : float, optional
        Southern limit of the PS1 footprint in degrees (default -30);
        positions below it get no rows from ``ps1filenames.py``.
    galex_holes : sequence of (ra, dec, radius_deg), optional
        Regions without GALEX coverage: the ``galex`` layer returns an
        all-zero cube there, as the real viewer does.
    galex_band_holes : sequence of (band, ra, dec, radius_deg), optional
        Regions where GALEX observed one band only: the ``galex`` layer returns
        zeros in the plane of ``band`` (``"f"`` or ``"n"``) there and data in the
        other, as the real viewer does (it picks its input tiles band by band; FUV
        is missing wherever only NUV was observed, as after the FUV detector
        failed in 2009).
    no_overlap : sequence of tuples, optional
        Regions where a layer has no overlap: the viewer returns a
        header-only FITS with ``OVERLAP = F``. Entries are
        ``(ra, dec, radius_deg)`` (all layers) or
        ``(layer, ra, dec, radius_deg)``.
    ps1_asinh : bool, optional
        Write PS1 cutouts asinh-compressed with ``BSOFTEN``/``BOFFSET``
        (``linear = BOFFSET + BSOFTEN * 2 * sinh(value / a)``,
        ``a = 2.5 / ln 10``) instead of linear counts. The real stack files are
        stored so, but the real ``fitscut.cgi`` inverts the compression and drops
        ``BSOFTEN``/``BOFFSET`` from its cutouts: this exercises the client's
        decompression (which local stack files need), not a behaviour of the service.
    ps1_nan_fraction : float, optional
        Fraction of PS1 cutouts given a NaN stripe (a chip gap); which
        cutouts is deterministic per position and band.
    legacy_band_order : {"native", "reversed"}, optional
        Plane order of viewer cubes; ``BANDn`` always names each plane.
    max_size : int, optional
        The largest cutout side (pixels) ``fitscut.cgi`` and ``fits-cutout``
        serve; a larger ``size`` is answered with HTTP 400 (default 3000).

    Attributes
    ----------
    counts : `collections.Counter`
        Requests received per endpoint name (failed ones included).
    log : list of `LogEntry`
        ``(method, endpoint, params, npositions)`` per request;
        ``npositions`` is the number of positions of a ``ps1filenames``
        request and None otherwise.
    connections, timeout_sleep
        As for `~astro_mantis.testing.LoopbackService`: TCP connections
        accepted, and the seconds a ``"timeout"`` fault waits (default 5).

    Notes
    -----
    All attributes given as parameters may be changed while the server runs.

    The lifecycle (``start``, ``stop``, ``with``, ``running``, ``url``), ``reset`` and
    ``fail_next`` are those of `~astro_mantis.testing.LoopbackService`; ``fail_next``
    takes the kinds ``"5xx"``, ``"truncate"``, ``"html"`` and ``"timeout"`` and
    the endpoints ``"ps1filenames"``, ``"fitscut"`` and ``"fits-cutout"``.

    Examples
    --------
    >>> from astro_mantis.testing import SurveyServer
    >>> with SurveyServer(latency=0.01) as srv:  # doctest: +SKIP
    ...     print(srv.panstarrs_url)
    http://127.0.0.1:54321/cgi-bin
    """

    _handler_class = _SurveyRequestHandler
    _fault_kinds = FAULT_KINDS
    _endpoint_names = ENDPOINTS
    _log_type = LogEntry
    _fault_pages = {"5xx": (503, _HTML_503, "text/html; charset=utf-8"),
                    "html": (200, _HTML_200, "text/html; charset=utf-8")}

    def __init__(self, sky=None, *, host="127.0.0.1", port=0, latency=0.0, error_rate=0.0,
                 truncate_rate=0.0, html_rate=0.0, endpoints=None, seed=0, ps1_min_dec=-30.0,
                 galex_holes=(), no_overlap=(), ps1_asinh=False, ps1_nan_fraction=0.0,
                 legacy_band_order="native", max_size=MAX_SIZE, galex_band_holes=()):
        super().__init__(host, port, latency, error_rate, truncate_rate, html_rate, seed)
        self.sky = SyntheticSky() if sky is None else sky
        self.endpoints = endpoints
        self.ps1_min_dec = float(ps1_min_dec)
        self.galex_holes = galex_holes
        self.galex_band_holes = galex_band_holes
        self.no_overlap = no_overlap
        self.ps1_asinh = bool(ps1_asinh)
        self.ps1_nan_fraction = float(ps1_nan_fraction)
        self.legacy_band_order = legacy_band_order
        self.max_size = int(max_size)

    # -- properties ------------------------------------------------------------
    @property
    def sky(self):
        """What the server serves; it may be replaced while the server runs."""
        return self._sky

    @sky.setter
    def sky(self, value):
        self._sky = value
        self._render_takes_skycell = None  # asked again of the new sky's render()

    @property
    def endpoints(self):
        """Endpoints random faults apply to (None for all)."""
        return self._endpoints

    @endpoints.setter
    def endpoints(self, value):
        if value is not None:
            value = {value} if isinstance(value, str) else set(value)
            unknown = value - ENDPOINTS
            if unknown:
                raise ValueError(f"unknown endpoints {sorted(unknown)}; "
                                 f"expected among {sorted(ENDPOINTS)}")
        self._endpoints = value

    @property
    def legacy_band_order(self):
        """Plane order of viewer cubes: ``"native"`` or ``"reversed"``."""
        return self._legacy_band_order

    @legacy_band_order.setter
    def legacy_band_order(self, value):
        value = {"reverse": "reversed"}.get(value, value)
        if value not in ("native", "reversed"):
            raise ValueError(f"legacy_band_order must be 'native' or 'reversed', got {value!r}")
        self._legacy_band_order = value

    @property
    def panstarrs_url(self):
        """URL to use as ``conf.panstarrs_url`` (``url + "/cgi-bin"``)."""
        return self.url + "/cgi-bin"

    @property
    def legacysurvey_url(self):
        """URL to use as ``conf.legacysurvey_url`` (``url + "/viewer"``)."""
        return self.url + "/viewer"

    @contextlib.contextmanager
    def configure(self, conf):
        """Temporarily point a configuration namespace at this server.

        Parameters
        ----------
        conf : `~astropy.config.ConfigNamespace`
            Namespace with ``panstarrs_url`` and ``legacysurvey_url`` items
            (normally ``astro_mantis.conf``).

        Yields
        ------
        server : `SurveyServer`
            This server; the URLs are restored on exit.
        """
        with conf.set_temp("panstarrs_url", self.panstarrs_url), \
                conf.set_temp("legacysurvey_url", self.legacysurvey_url):
            yield self

    # -- responses ----------------------------------------------------------------
    def _respond(self, endpoint, params, positions):
        if endpoint == "ps1filenames":
            return self._ps1filenames(params, positions)
        if endpoint == "fitscut":
            return self._fitscut(params)
        return self._fits_cutout(params)

    def _ps1filenames(self, params, positions):
        filters = [f for f in params.get("filters", "grizy") if f in "grizy"]
        types = [t.strip() for t in params.get("type", "stack").split(",")]
        lines = [PS1_LISTING_HEADER]
        if "stack" in types:  # only stacks exist on this server
            for ra, dec in positions:
                if dec < self.ps1_min_dec or not -90.0 <= dec <= 90.0:
                    continue
                projcell, subcell, _, _ = ps1_skycell(ra, dec)
                for band in filters:
                    filename, short = ps1_filename(projcell, subcell, band)
                    lines.append(f"{projcell} {subcell} {ra:f} {dec:f} {band} 0 stack "
                                 f"{filename} {short} 0")
        return 200, "text/plain", ("\n".join(lines) + "\n").encode("ascii")

    def _coord(self, ra, dec):
        from astropy.coordinates import SkyCoord

        if not -90.0 <= dec <= 90.0:
            raise _BadRequest(f"dec must be within [-90, 90], got {dec}")
        return SkyCoord(ra % 360.0, dec, unit="deg", frame="icrs")

    def _fitscut(self, params):
        red = params.get("red", "")
        match = _PS1_FILENAME_RE.search(red)
        if not match:
            raise _BadRequest(f"File not found: {red!r}", status=404)
        projcell, subcell, band = int(match[1]), int(match[2]), match[3]
        try:
            ra_c, dec_c = ps1_skycell_center(projcell, subcell)
        except ValueError:
            raise _BadRequest(f"File not found: {red!r}", status=404) from None
        fmt = params.get("format", "fits").lower()
        if fmt != "fits":
            raise _BadRequest(f"unsupported format {fmt!r}; this server writes only fits")
        ra, dec = _float_param(params, "ra"), _float_param(params, "dec")
        coord = self._coord(ra, dec)
        size = _int_param(params, "size", None)
        output_size = _int_param(params, "output_size", None)
        pixscale = 0.25
        if size is None:
            size = output_size if output_size is not None else 240
        elif output_size is not None and output_size != size:
            pixscale = 0.25 * size / output_size  # resampled to output_size pixels
            size = output_size
        if not 0 < size <= self.max_size:
            raise _BadRequest(f"size must be within 1..{self.max_size}, got {size}")
        if _angular_distance(ra % 360.0, dec, ra_c, dec_c) > 5.0:
            raise _BadRequest("requested position is not within the image", status=500)

        kwargs = {}
        if self._accepts_skycell():
            kwargs["skycell_center"] = (ra_c, dec_c)
        hdul = self.sky.render("panstarrs", coord, size=size, pixscale=pixscale, band=band,
                               **kwargs)
        hdu = hdul[0]
        data = np.array(hdu.data, dtype=np.float32)
        if self.ps1_nan_fraction > 0:
            self._add_chip_gap(data, ra, dec, band)
        replace = None
        if self.ps1_asinh:
            data, replace = self._asinh_compress(data)
        return 200, "application/fits", _encode_fits(hdu.header, data, replace=replace)

    def _accepts_skycell(self):
        if self._render_takes_skycell is None:
            try:
                sig = inspect.signature(self.sky.render)
                self._render_takes_skycell = any(
                    p.name == "skycell_center" or p.kind is p.VAR_KEYWORD
                    for p in sig.parameters.values()
                )
            except (TypeError, ValueError):
                self._render_takes_skycell = True
        return self._render_takes_skycell

    def _add_chip_gap(self, data, ra, dec, band):
        rng = np.random.default_rng(
            stable_seed(self.seed, "chipgap", round(ra % 360.0, 6), round(dec, 6), band)
        )
        if rng.random() >= self.ps1_nan_fraction:
            return
        ny, nx = data.shape
        vertical = rng.random() < 0.5
        n = nx if vertical else ny
        width = max(2, n // 20)
        start = int(rng.integers(0, max(1, n - width)))
        if vertical:
            data[:, start:start + width] = np.nan
        else:
            data[start:start + width, :] = np.nan

    @staticmethod
    def _asinh_compress(data):
        """PS1-style asinh compression; returns (values, header updates)."""
        finite = data[np.isfinite(data)]
        if finite.size:
            boffset = float(np.median(finite))
            bsoften = float(1.4826 * np.median(np.abs(finite - boffset)))
        else:
            boffset, bsoften = 0.0, 1.0
        if not bsoften > 0:
            bsoften = 1.0
        with np.errstate(invalid="ignore"):
            out = _ASINH_A * np.arcsinh((data.astype(np.float64) - boffset) / (2.0 * bsoften))
        return out.astype(np.float32), {"BOFFSET": boffset, "BSOFTEN": bsoften}

    def _in_regions(self, regions, ra, dec, layer=None):
        for region in regions:
            if len(region) == 4:
                reg_layer, rra, rdec, radius = region
                if layer is None or reg_layer != layer:
                    continue
            else:
                rra, rdec, radius = region
            if _angular_distance(ra, dec, float(rra) % 360.0, float(rdec)) <= float(radius):
                return True
        return False

    def _fits_cutout(self, params):
        from astropy.io import fits

        layer = params.get("layer", "ls-dr10")
        if layer not in _LAYERS:
            return 200, "text/plain", b"no such layer"
        survey = _LAYERS[layer]
        ra, dec = _float_param(params, "ra"), _float_param(params, "dec")
        coord = self._coord(ra, dec)
        ra %= 360.0
        size = _int_param(params, "size", 256)
        try:
            pixscale = float(params.get("pixscale") or 0.262)
        except ValueError:
            raise _BadRequest(f"bad value for 'pixscale': {params['pixscale']!r}") from None
        if not 0 < size <= self.max_size:
            raise _BadRequest(f"size must be within 1..{self.max_size}, got {size}")
        if not pixscale > 0:
            raise _BadRequest(f"pixscale must be positive, got {pixscale}")

        native = list(SURVEY_BANDS[survey])
        wanted = native
        if params.get("bands"):
            text = params["bands"]
            names = text.split(",") if "," in text else list(text)
            lookup = {str(b): b for b in native}
            unknown = [n for n in names if n.strip() not in lookup]
            if unknown:
                raise _BadRequest(f"no such band(s) {unknown} in layer {layer}")
            chosen = {lookup[n.strip()] for n in names}
            wanted = [b for b in native if b in chosen]

        if self._in_regions(self.no_overlap, ra, dec, layer):
            header = fits.Header([("OVERLAP", False, "no overlap with this layer"),
                                  ("SURVEY", layer), ("VERSION", "astro_mantis-loopback")])
            return 200, "image/fits", _encode_fits(header, None)

        hdul = self.sky.render(survey, coord, size=size, pixscale=pixscale)
        header = hdul[0].header
        cube = np.asarray(hdul[0].data, dtype=np.float32)
        planes = {}
        for i in range(cube.shape[0]):
            name = header.get(f"BAND{i}", native[i] if i < len(native) else i)
            planes[str(name).strip().lower()] = cube[i]
        order = list(wanted)
        if self.legacy_band_order == "reversed":
            order = order[::-1]
        try:
            new = np.stack([planes[str(b)] for b in order])  # native names are lower case
        except KeyError as err:
            raise RuntimeError(f"the sky model returned no plane for band {err}") from None
        if survey == "galex" and self._in_regions(self.galex_holes, ra, dec):
            new[...] = 0.0
        if survey == "galex":
            for i, band in enumerate(order):
                if self._in_regions(self.galex_band_holes, ra, dec, layer=str(band)):
                    new[i] = 0.0
        band_cards = [("BANDS", "".join(str(b) for b in order))]
        band_cards += [(f"BAND{i}", b) for i, b in enumerate(order)]
        drop = {"BANDS"} | {f"BAND{i}" for i in range(cube.shape[0])}
        # the new band cards go where the old ones were (else before CTYPE1)
        keys = list(header.keys())
        first = min((i for i, k in enumerate(keys) if k in drop), default=None)
        if first is None:
            after = "CTYPE1" if "CTYPE1" in keys else None
        else:
            after = next((k for k in keys[first:]
                          if k not in drop and k not in _STRUCTURAL), None)
        return 200, "image/fits", _encode_fits(
            header, new, drop=drop, replace={"SURVEY": layer},
            insert=band_cards, insert_before=after,
        )
