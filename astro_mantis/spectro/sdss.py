# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""SDSS spectroscopic redshifts from SkyServer, through `astroquery.sdss`.

`query_specobj` fetches the spectra of SkyServer's ``SpecObj`` view (one science-primary
spectrum per object) around many positions with SQL, politely:

* positions are grouped into sky cells (``CELL_DEG`` wide); each occupied cell becomes
  one box, the bounding box of its positions grown by the match radius (split in two
  where it crosses RA 0°, the whole RA range near a pole);
* boxes are packed into ``SELECT TOP n ... WHERE (box OR box ...) AND (quality)``
  queries no longer than ``spectro.conf.skyserver_max_query_length`` URL-encoded
  characters, sent one at a time at most once per
  ``spectro.conf.skyserver_min_interval`` seconds (SkyServer allows 60 queries a
  minute);
* ``n`` is ``spectro.conf.skyserver_max_rows``: a query that returns ``n`` rows may have
  been cut short, so its boxes are split (a single box into halves) and asked again,
  and no truncated answer is ever used;
* 5xx statuses, time-outs, connection errors, HTML pages in place of CSV and CSV that
  does not parse are retried ``astro_mantis.conf.retries`` times with exponential
  back-off; a bad answer is removed from astroquery's cache so a retry or a rerun does
  not replay it. Positions whose query still fails are reported, not dropped;
* SkyServer's own error page (an SQL error, an unknown column) raises
  `~astro_mantis.spectro.SkyServerError` at once: it would fail again.

The address is astroquery's ``astroquery.sdss.conf.skyserver_baseurl`` and the query
path the one astroquery builds for the data release
(``/dr{N}/en/tools/search/x_results.aspx`` for DR 11 and later).
"""
import csv
import html
import math
import re
import threading
import time
import urllib.parse

import numpy as np
from astropy import units as u
from astropy.table import Table

from ..config import conf as mantis_conf
from ..exceptions import FetchError, InvalidResponseError
from ..logger import log, log_request
from ..retry import RetryPolicy
from .exceptions import SkyServerError
from .quality import QualityCut

__all__ = ["query_specobj", "sdss_specobjid", "run2d_code", "specobj_sql", "sky_boxes",
           "parse_specobj_csv", "SPECOBJ_COLUMNS", "SDSS_QUALITY", "CELL_DEG",
           "MIN_DATA_RELEASE"]

#: Columns read from ``SpecObj`` (SkyServer's names, in order).
SPECOBJ_COLUMNS = ("specObjID", "ra", "dec", "z", "zErr", "zWarning", "class", "plate", "mjd",
                   "fiberID", "run2d")
#: Default quality cut of the SDSS catalogs: a confident redshift of a galaxy.
SDSS_QUALITY = "zWarning == 0 and class == 'GALAXY'"
#: Side (degrees of declination) of the sky cells positions are grouped into.
CELL_DEG = 0.5
#: The first data release with the ``SpecObj`` schema used here (``class``, ``run2d``).
MIN_DATA_RELEASE = 8

_TRANSIENT_WORDS = ("timeout", "time out", "timed out", "try again", "too many", "busy",
                    "unavailable", "deadlock")
_MIN_BOX_DEG = 1.0 / 3600.0
_INT_COLUMNS = {"zwarning", "plate", "mjd", "fiberid"}
_FLOAT_COLUMNS = {"ra", "dec", "z", "zerr"}
_STR_COLUMNS = {"class", "run2d"}

_RATE_LOCK = threading.Lock()
_LAST_QUERY = [0.0]


# ----------------------------------------------------------------------------- ids
def run2d_code(run2d):
    """The integer code of an SDSS reduction version, as packed into ``specObjID``.

    Parameters
    ----------
    run2d : str or int
        ``"26"``, ``"103"``, ``"104"`` (SDSS-I/II) or ``"vN_M_P"`` (BOSS, eBOSS).

    Returns
    -------
    int
        The number itself for SDSS-I/II, ``(N - 5) * 10000 + M * 100 + P`` for ``vN_M_P``.

    Raises
    ------
    ValueError
        For any other form.
    """
    text = str(run2d).strip()
    if text.isdigit():
        return int(text)
    match = re.fullmatch(r"v(\d+)_(\d+)_(\d+)", text)
    if not match:
        raise ValueError(f"unknown SDSS run2d {run2d!r}: expected e.g. '26' or 'v5_13_2'")
    n, m, p = (int(g) for g in match.groups())
    return (n - 5) * 10000 + m * 100 + p


def sdss_specobjid(plate, mjd, fiberid, run2d):
    """SDSS ``specObjID`` from plate, MJD, fiber and reduction, as SkyServer defines it.

    The bits are: plate (50-63), fiber (38-49), MJD - 50000 (24-37), run2d code (10-23,
    see `~astro_mantis.spectro.sdss.run2d_code`), 0
    (0-9).

    Parameters
    ----------
    plate, mjd, fiberid : int or array-like
        Plate number, MJD of the observation, fiber number.
    run2d : str or array-like of str
        Reduction version (``"26"``, ``"v5_13_2"`` ...).

    Returns
    -------
    `numpy.uint64` or `numpy.ndarray` of uint64

    Examples
    --------
    >>> from astro_mantis.spectro import sdss_specobjid
    >>> int(sdss_specobjid(751, 52251, 160, "26"))
    845594848269461504
    """
    scalar = np.ndim(plate) == 0
    plate = np.atleast_1d(np.asarray(plate)).astype(np.uint64)
    mjd = np.atleast_1d(np.asarray(mjd)).astype(np.int64)
    fiberid = np.atleast_1d(np.asarray(fiberid)).astype(np.uint64)
    run2d = np.atleast_1d(np.asarray(run2d).astype(str))
    names, inverse = np.unique(run2d, return_inverse=True)
    code = np.array([run2d_code(r) for r in names], dtype=np.uint64)[inverse.reshape(-1)]
    code = np.broadcast_to(code.reshape(run2d.shape), plate.shape)
    out = ((plate << np.uint64(50)) | (fiberid << np.uint64(38))
           | ((mjd - 50000).astype(np.uint64) << np.uint64(24)) | (code << np.uint64(10)))
    return out[0] if scalar else out


# ----------------------------------------------------------------------------- boxes
class _Box:
    """An RA/Dec rectangle (degrees) and the input positions it serves."""

    __slots__ = ("ra0", "ra1", "dec0", "dec1", "members")

    def __init__(self, ra0, ra1, dec0, dec1, members):
        self.ra0, self.ra1, self.dec0, self.dec1 = ra0, ra1, dec0, dec1
        self.members = members

    def sql(self):
        # rounded outwards: the box never shrinks
        return (f"(ra BETWEEN {math.floor(self.ra0 * 1e7) / 1e7:.7f} AND "
                f"{math.ceil(self.ra1 * 1e7) / 1e7:.7f} AND dec BETWEEN "
                f"{math.floor(self.dec0 * 1e7) / 1e7:.7f} AND "
                f"{math.ceil(self.dec1 * 1e7) / 1e7:.7f})")

    def split(self):
        """Two halves along the longer side (on the sky)."""
        cosd = max(math.cos(math.radians(max(abs(self.dec0), abs(self.dec1)))), 1e-6)
        if (self.ra1 - self.ra0) * cosd >= self.dec1 - self.dec0:
            mid = 0.5 * (self.ra0 + self.ra1)
            return [_Box(self.ra0, mid, self.dec0, self.dec1, self.members),
                    _Box(mid, self.ra1, self.dec0, self.dec1, self.members)]
        mid = 0.5 * (self.dec0 + self.dec1)
        return [_Box(self.ra0, self.ra1, self.dec0, mid, self.members),
                _Box(self.ra0, self.ra1, mid, self.dec1, self.members)]

    def size(self):
        return max(self.ra1 - self.ra0, self.dec1 - self.dec0)


def sky_boxes(ra, dec, radius, cell=CELL_DEG):
    """Group positions into RA/Dec boxes that cover every match circle.

    Parameters
    ----------
    ra, dec : array-like
        Positions in degrees (finite).
    radius : `~astropy.units.Quantity`
        Match radius; each box is its positions' bounding box grown by it.
    cell : float
        Side of the grouping cells in degrees of declination (RA cells are as wide on
        the sky).

    Returns
    -------
    list of tuple
        ``(ra_min, ra_max, dec_min, dec_max, indices)`` per box, degrees, with
        ``0 <= ra_min <= ra_max <= 360``; ``indices`` are the positions the box serves.
        A cell whose grown box crosses RA 0 gives two boxes.
    """
    return [(b.ra0, b.ra1, b.dec0, b.dec1, b.members)
            for b in _sky_boxes(np.asarray(ra, float), np.asarray(dec, float),
                                radius.to_value(u.deg), cell)]


def _sky_boxes(ra, dec, r, cell):
    ra = np.mod(ra, 360.0)
    nband = int(math.ceil(180.0 / cell))
    kb = np.clip(np.floor((dec + 90.0) / cell).astype(np.int64), 0, nband - 1)
    # RA cells in each band about `cell` wide on the sky (at the band's equatorward edge)
    edge = np.minimum(np.abs(-90.0 + kb * cell), np.abs(-90.0 + (kb + 1) * cell))
    nra = np.maximum(1, np.floor(360.0 * np.cos(np.radians(edge)) / cell)).astype(np.int64)
    ka = np.minimum(np.floor(ra / 360.0 * nra).astype(np.int64), nra - 1)
    key = kb * 1_000_000 + ka
    order = np.argsort(key, kind="stable")
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    boxes = []
    for members in np.split(order, bounds):
        if members.size == 0:
            continue
        d0 = max(-90.0, float(dec[members].min()) - r)
        d1 = min(90.0, float(dec[members].max()) + r)
        a0, a1 = float(ra[members].min()), float(ra[members].max())
        extreme = max(abs(d0), abs(d1))
        if extreme >= 89.999:
            boxes.append(_Box(0.0, 360.0, d0, d1, members))
            continue
        pad = min(r / math.cos(math.radians(extreme)), 180.0)
        a0, a1 = a0 - pad, a1 + pad
        if a1 - a0 >= 360.0:
            boxes.append(_Box(0.0, 360.0, d0, d1, members))
        elif a0 < 0.0:
            boxes.append(_Box(a0 + 360.0, 360.0, d0, d1, members))
            boxes.append(_Box(0.0, a1, d0, d1, members))
        elif a1 > 360.0:
            boxes.append(_Box(a0, 360.0, d0, d1, members))
            boxes.append(_Box(0.0, a1 - 360.0, d0, d1, members))
        else:
            boxes.append(_Box(a0, a1, d0, d1, members))
    return boxes


# ----------------------------------------------------------------------------- SQL
def _quality_sql(quality):
    if quality is None:
        return None
    cut = quality if isinstance(quality, QualityCut) else QualityCut(quality)
    return cut.to_sql()


def specobj_sql(boxes, quality=SDSS_QUALITY, top=None):
    """The SQL of one SkyServer query for the spectra inside some boxes.

    Parameters
    ----------
    boxes : sequence of tuple
        ``(ra_min, ra_max, dec_min, dec_max, ...)`` in degrees (as from `sky_boxes`).
    quality : str or `~astro_mantis.spectro.QualityCut` or None
        Quality cut (over ``SpecObj`` columns), added to the ``WHERE`` clause.
    top : int, optional
        ``SELECT TOP n`` (default ``spectro.conf.skyserver_max_rows``).

    Returns
    -------
    str
    """
    from .config import conf

    top = int(conf.skyserver_max_rows if top is None else top)
    parts = [b.sql() if isinstance(b, _Box) else _Box(*b[:4], None).sql() for b in boxes]
    return _sql(parts, _quality_sql(quality), top)


def _sql(box_parts, quality_sql, top):
    where = "(" + " OR ".join(box_parts) + ")"
    if quality_sql:
        where += f" AND {quality_sql}"
    return f"SELECT TOP {top} {', '.join(SPECOBJ_COLUMNS)} FROM SpecObj WHERE {where}"


def _encoded_length(sql, data_release):
    params = {"cmd": " " + sql, "format": "csv"}
    if data_release > 11:
        params["searchtool"] = "SQL"
    return len(urllib.parse.urlencode(params))


def _pack(boxes, quality_sql, top, data_release, max_length):
    """Pack boxes into queries below ``max_length``; returns lists of boxes."""
    base = _encoded_length(_sql([], quality_sql, top), data_release)
    budget = max_length - base
    queries, current, used = [], [], 0
    for box in boxes:
        cost = len(urllib.parse.quote_plus(box.sql() + " OR "))
        if cost > budget:
            raise ValueError(f"a SkyServer query does not fit in {max_length} characters even "
                             "with a single box; raise spectro.conf.skyserver_max_query_length "
                             "or shorten the quality cut")
        if current and used + cost > budget:
            queries.append(current)
            current, used = [], 0
        current.append(box)
        used += cost
    if current:
        queries.append(current)
    return queries


# ----------------------------------------------------------------------------- responses
def _error_page_message(text):
    """SkyServer's error text in its HTML error page, or None if not such a page."""
    if "skyserver error" not in text[:2000].lower() and "error_message" not in text[:2000]:
        return None
    match = re.search(r"<font[^>]*color\s*=\s*[\"']?red[\"']?[^>]*>(.*?)</font>", text,
                      flags=re.I | re.S)
    if match is None:
        match = re.search(r'"error_message"\s*:\s*"((?:[^"\\]|\\.)*)"', text)
    message = match.group(1) if match else text[:500]
    message = html.unescape(re.sub(r"<[^>]+>", " ", message))
    return " ".join(message.split()) or "(no message)"


def parse_specobj_csv(text):
    """Parse SkyServer's CSV answer (``#Table1`` line, header, rows) into a Table.

    Parameters
    ----------
    text : str
        The body of the answer to a query selecting `SPECOBJ_COLUMNS`.

    Returns
    -------
    `~astropy.table.Table`
        `SPECOBJ_COLUMNS` (names as SkyServer spells them, whatever the answer's case),
        ``specObjID`` as uint64 (parsed as integers: no precision lost to floats).

    Raises
    ------
    astro_mantis.exceptions.InvalidResponseError
        When the text is not such a table, lacks a column or has a row cut short.
    """
    lines = text.lstrip("\ufeff").splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    if not lines or "," not in lines[0] and lines[0].strip().lower() not in (
            c.lower() for c in SPECOBJ_COLUMNS):
        raise InvalidResponseError(f"not a SkyServer CSV table: {text[:120]!r}")
    rows = list(csv.reader(lines))
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    missing = [c for c in SPECOBJ_COLUMNS if c.lower() not in lower]
    if missing:
        raise InvalidResponseError(f"SkyServer CSV lacks column(s) {missing}: {text[:120]!r}")
    body = [r for r in rows[1:] if r]
    bad = [k for k, r in enumerate(body) if len(r) != len(header)]
    if bad:
        raise InvalidResponseError(f"SkyServer CSV row {bad[0] + 1} has {len(body[bad[0]])} "
                                   f"fields instead of {len(header)} (truncated answer?)")
    cols = list(zip(*body)) if body else [()] * len(header)
    table = Table()
    for name in SPECOBJ_COLUMNS:
        values = cols[lower.index(name.lower())]
        key = name.lower()
        try:
            if key == "specobjid":
                data = np.array([int(v) for v in values], dtype=np.uint64)
            elif key in _FLOAT_COLUMNS:
                data = np.array([float(v) if v.strip() else np.nan for v in values],
                                dtype=np.float64)
            elif key in _INT_COLUMNS:
                data = np.array([int(float(v)) for v in values], dtype=np.int64)
            else:
                data = np.array([v.strip() for v in values], dtype=str)
        except ValueError as exc:
            raise InvalidResponseError(f"SkyServer CSV column {name!r} does not parse: "
                                       f"{exc}") from None
        table[name] = data
    return table


# ----------------------------------------------------------------------------- queries
class _SkyServerClient:
    """Sends SQL through `astroquery.sdss` with retries, pacing and cache hygiene."""

    def __init__(self, data_release, cache, timeout, retries, backoff, min_interval):
        from astroquery.sdss import SDSSClass

        self.sdss = SDSSClass()
        self.data_release = int(data_release)
        self.cache = bool(cache)
        self.timeout = float(timeout)
        self.policy = RetryPolicy(retries, backoff)
        self.retries = self.policy.retries
        self.min_interval = max(0.0, float(min_interval))
        self.attempts = 0  # answers asked for (from astroquery's cache or the network)

    def close(self):
        """Close the HTTP session's connections."""
        session = getattr(self.sdss, "_session", None)
        if session is not None:
            session.close()

    def _pace(self):
        with _RATE_LOCK:
            wait = _LAST_QUERY[0] + self.min_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            _LAST_QUERY[0] = time.monotonic()

    def _forget(self):
        """Remove the last answer from astroquery's cache (it was bad)."""
        query = getattr(self.sdss, "_last_query", None)
        if self.cache and query is not None:
            try:
                query.remove_cache_file(self.sdss.cache_location)
            except OSError:
                pass

    def query(self, sql):
        """The parsed table of one SQL query; raises FetchError or SkyServerError."""
        import requests

        last = None
        for _ in self.policy.attempts():
            self._pace()
            self.attempts += 1
            t0 = time.perf_counter()
            try:
                response = self.sdss.query_sql_async(sql, timeout=self.timeout,
                                                     data_release=self.data_release,
                                                     cache=self.cache)
            except (requests.exceptions.RequestException, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            status = response.status_code
            text = response.text
            log_request("GET", response.url, status, len(response.content),
                        time.perf_counter() - t0)
            if self.policy.retryable(status):
                self._forget()
                last = f"HTTP {status}"
                continue
            message = _error_page_message(text)
            if message is not None:
                self._forget()
                if any(w in message.lower() for w in _TRANSIENT_WORDS):
                    last = f"SkyServer: {message}"
                    continue
                raise SkyServerError(f"SkyServer DR{self.data_release} refused the query: "
                                     f"{message}\nquery: {sql}")
            if status != 200:
                self._forget()
                raise FetchError(f"HTTP {status} from {response.url}")
            try:
                return parse_specobj_csv(text)
            except InvalidResponseError as exc:
                self._forget()
                last = str(exc)
                continue
        raise self.policy.exhausted(last, f"from SkyServer DR{self.data_release}")


def _run_queries(client, queries, quality_sql, top, progress):
    """Run packed queries, splitting truncated ones; returns (tables, failed boxes)."""
    from tqdm.auto import tqdm

    from ..progress import progress_enabled

    todo = list(queries)
    tables, failed, nqueries, nsplit = [], [], 0, 0
    show = progress_enabled(progress, len(queries) > 10)
    with tqdm(total=len(todo), unit="query", desc="SkyServer", disable=not show,
              leave=False) as bar:
        while todo:
            boxes = todo.pop(0)
            sql = _sql([b.sql() for b in boxes], quality_sql, top)
            nqueries += 1
            try:
                table = client.query(sql)
            except FetchError as exc:
                log.warning(f"SkyServer query of {len(boxes)} sky box(es) failed: {exc}")
                failed.extend(boxes)
                bar.update(1)
                continue
            if len(table) >= top:  # possibly cut short: ask again in smaller pieces
                if len(boxes) > 1:
                    half = len(boxes) // 2
                    todo[:0] = [boxes[:half], boxes[half:]]
                    nsplit += 1
                    bar.total += 1
                    continue
                if boxes[0].size() > _MIN_BOX_DEG:
                    todo[:0] = [[b] for b in boxes[0].split()]
                    nsplit += 1
                    bar.total += 1
                    continue
                log.warning(f"a SkyServer box of {boxes[0].size() * 3600:.2f} arcsec holds "
                            f"at least {top} spectra; keeping the first {top}")
            tables.append(table)
            bar.update(1)
    return tables, failed, nqueries, nsplit


def _query_specobj(ra, dec, radius, quality=SDSS_QUALITY, data_release=None, cache=True,
                   progress=None):
    """Core of `query_specobj`: (unique spectra, failed position mask, stats)."""
    from astropy.table import vstack

    from .config import conf

    data_release = int(conf.data_release if data_release is None else data_release)
    if data_release < MIN_DATA_RELEASE:
        raise ValueError(f"SpecObj queries need data release {MIN_DATA_RELEASE} or later, got "
                         f"{data_release}")
    ra = np.asarray(ra, dtype=float)
    dec = np.asarray(dec, dtype=float)
    failed = np.zeros(len(ra), dtype=bool)
    stats = {"queries": 0, "attempts": 0, "splits": 0, "boxes": 0,
             "data_release": data_release}
    quality_sql = _quality_sql(quality)
    empty = Table({name: np.zeros(0, dtype=dt) for name, dt in zip(
        SPECOBJ_COLUMNS, (np.uint64, float, float, float, float, np.int64, str, np.int64,
                          np.int64, np.int64, str))})
    if len(ra) == 0:
        return empty, failed, stats
    top = int(conf.skyserver_max_rows)
    boxes = _sky_boxes(ra, dec, radius.to_value(u.deg), CELL_DEG)
    queries = _pack(boxes, quality_sql, top, data_release, int(conf.skyserver_max_query_length))
    least = len(queries) * float(conf.skyserver_min_interval)
    if least > 600:
        log.warning(f"{len(ra)} positions need {len(queries)} SkyServer queries, at least "
                    f"{least / 60:.0f} minutes at SkyServer's pace; for large tables "
                    "catalog='sdss-spall' is much faster")
    client = _SkyServerClient(data_release, cache, mantis_conf.timeout, mantis_conf.retries,
                              mantis_conf.backoff, conf.skyserver_min_interval)
    t0 = time.perf_counter()
    try:
        tables, bad_boxes, nqueries, nsplit = _run_queries(client, queries, quality_sql, top,
                                                           progress)
    finally:
        client.close()
    for box in bad_boxes:
        failed[box.members] = True
    tables = [t for t in tables if len(t)]
    result = vstack(tables, metadata_conflicts="silent") if tables else empty
    if len(result):  # boxes overlap: a spectrum may come back more than once
        _, first = np.unique(np.asarray(result["specObjID"]), return_index=True)
        result = result[np.sort(first)]
    stats.update(queries=nqueries, attempts=client.attempts, splits=nsplit, boxes=len(boxes),
                 seconds=round(time.perf_counter() - t0, 3))
    log.info(f"SkyServer DR{data_release}: {len(ra)} position(s) in {len(boxes)} box(es), "
             f"{nqueries} quer(ies), {client.attempts} attempt(s); {len(result)} spectra; "
             f"{int(failed.sum())} position(s) not queried")
    return result, failed, stats


def query_specobj(coordinates, radius=1 * u.arcsec, quality=SDSS_QUALITY, data_release=None,
                  cache=True, progress=None):
    """SkyServer ``SpecObj`` spectra around many positions (see the module notes).

    Parameters
    ----------
    coordinates : `~astropy.coordinates.SkyCoord`
        Positions (any frame convertible to ICRS); invalid ones are ignored.
    radius : `~astropy.units.Quantity`
        Angle around each position within which spectra are wanted (at least; the
        query boxes are larger).
    quality : str or `~astro_mantis.spectro.QualityCut` or None
        Quality cut over ``SpecObj`` columns, applied by SkyServer; default
        ``"zWarning == 0 and class == 'GALAXY'"``; None for every spectrum.
    data_release : int, optional
        SDSS data release, 8 or later (default ``spectro.conf.data_release``).
    cache : bool
        Use astroquery's cache of query answers.
    progress : bool, optional
        Show a progress bar (default: on a terminal, for more than 10 queries).

    Returns
    -------
    `~astropy.table.Table`
        One row per spectrum (``SPECOBJ_COLUMNS``, ``specObjID`` as uint64), each
        spectrum once. ``meta`` holds the query statistics and ``meta['failed']``
        the indices of the positions whose query failed after all retries (their
        neighbourhood may lack spectra).

    Raises
    ------
    astro_mantis.spectro.SkyServerError
        If SkyServer rejects the SQL (e.g. an unknown column in ``quality``).
    """
    from ..positions import coordinate_positions

    pos = coordinate_positions(coordinates)
    ra, dec, good = pos.ra, pos.dec, pos.good
    idx = np.flatnonzero(good)
    table, failed, stats = _query_specobj(ra[idx], dec[idx], _check_angle(radius), quality,
                                          data_release, cache, progress)
    table.meta.update(stats)
    table.meta["failed"] = idx[failed].tolist()
    return table


def _check_angle(radius):
    if not isinstance(radius, u.Quantity) or radius.unit.physical_type != "angle":
        raise TypeError(f"radius must be an angle with a unit, e.g. 1 * u.arcsec; got "
                        f"{radius!r}")
    return radius
