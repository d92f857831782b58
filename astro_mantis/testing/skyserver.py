# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""A loopback SDSS SkyServer: the SQL search endpoint astroquery.sdss uses.

`SkyServer` binds to 127.0.0.1 and answers what `astroquery.sdss.SDSSClass.query_sql`
sends: ``GET`` (or ``POST``) ``{skyserver_baseurl}/dr{N}/en/tools/search/x_results.aspx``
with ``cmd`` (the SQL), ``format=csv`` and ``searchtool=SQL`` for data releases after
11 (``x_sql.aspx`` for DR10, ``x_sql.asp`` before), with the answers SkyServer gives:

* the result as CSV: a ``#Table1`` line, a header line, one line per row; no row
  count, and at most ``row_limit`` rows (the rest silently dropped, as SkyServer's
  SQL Search does);
* an SQL error (unknown column or table, bad syntax) as SkyServer's HTML error page,
  ``<title>Skyserver Error</title>`` with the message in red, **with status 200**;
* a query string longer than ``max_query_length`` refused with 404 (IIS request
  filtering).

The database is one table, ``SpecObjAll`` (and the ``SpecObj`` view of its rows with
``sciencePrimary = 1``), made from a mock catalog by `make_specobj` or given. The SQL
understood is the subset a spectroscopic match needs: ``SELECT [TOP n] columns|*
FROM table [alias] [WHERE condition] [ORDER BY column [ASC|DESC], ...]`` with
comparisons, ``BETWEEN``, ``IN``, ``AND``/``OR``/``NOT`` and parentheses; column
names and strings compare case-insensitively, as in SkyServer's SQL Server. A masked
or NaN value is SQL's NULL: conditions follow SQL's three-valued logic, so a
comparison with it is unknown, and neither it nor its ``NOT`` selects the row.

Faults are injected as in `~astro_mantis.testing.SurveyServer` (see
`LoopbackService`): ``latency``, random ``error_rate`` (503 page), ``truncate_rate``
(the body cut short, status 200), ``html_rate`` (an HTML page with status 200), and
``fail_next`` for these, ``"timeout"`` and ``"busy"`` (SkyServer's error page with a
transient message).
"""
import contextlib
import html
import re
from collections import namedtuple
from urllib.parse import parse_qsl

import numpy as np
from astropy import units as u
from astropy.table import Table

from .base import FAULT_KINDS as _BASE_FAULT_KINDS
from .base import LoopbackService

__all__ = ["SkyServer", "SkyServerLogEntry", "LoopbackService", "make_specobj", "execute_sql",
           "SQLError", "skyserver_error_page"]

#: One request as recorded in the ``log`` of a `SkyServer`: method, endpoint,
#: parameters and the number of rows answered (None for a failed request).
SkyServerLogEntry = namedtuple("SkyServerLogEntry", ["method", "endpoint", "params", "nrows"])

FAULT_KINDS = _BASE_FAULT_KINDS + ("busy",)


# ----------------------------------------------------------------------------- mock data
def make_specobj(catalog, seed=0, completeness=0.85, bad_fraction=0.05, duplicate_fraction=0.03,
                 star_fraction=0.05, qso_fraction=0.02, legacy_fraction=0.3,
                 offset=0.1 * u.arcsec):
    """A mock SDSS ``SpecObjAll`` table: spectra of the galaxies of a catalog, and more.

    Parameters
    ----------
    catalog : `~astropy.table.Table`
        With ``ra``, ``dec`` (degrees), ``z`` and optionally ``id`` (e.g. the
        ``catalog`` of `~astro_mantis.simulate.SampleSky` or
        `~astro_mantis.simulate.MockSky`).
    seed : int
        Seed of every random choice.
    completeness : float
        Fraction of the catalog's galaxies that have a spectrum.
    bad_fraction : float
        Fraction of those whose redshift failed: ``zWarning = 4`` (small delta chi2) and
        a wrong ``z``.
    duplicate_fraction : float
        Fraction observed a second time: another plate and MJD, ``sciencePrimary = 0``
        (in ``SpecObjAll`` only, like SDSS repeats).
    star_fraction, qso_fraction : float
        Stars (``class = 'STAR'``, z near 0) and quasars (``'QSO'``, 0.5 < z < 3), as
        fractions of the catalog size, at random positions inside its footprint.
    legacy_fraction : float
        Fraction of the plates from SDSS-I/II (``run2d = '26'``, 640 fibers); the others
        are BOSS plates (``run2d = 'v5_13_2'``, 1000 fibers).
    offset : `~astropy.units.Quantity`
        Scatter (per axis) of the fiber position around the galaxy.

    Returns
    -------
    `~astropy.table.Table`
        Columns ``specObjID`` (uint64, SDSS's bit layout), ``ra``, ``dec``, ``z``, ``zErr``,
        ``zWarning``, ``class``, ``subClass``, ``plate``, ``mjd``, ``fiberID``, ``run2d``,
        ``sciencePrimary`` and ``mock_id`` (the catalog ``id`` of the galaxy observed,
        -1 for stars and quasars; never served, it is the truth for tests).
    """
    from ..spectro.sdss import sdss_specobjid

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5d55]))
    n = len(catalog)
    ids = (np.asarray(catalog["id"], dtype=np.int64) if "id" in catalog.colnames
           else np.arange(n, dtype=np.int64))
    ra0 = np.asarray(getattr(catalog["ra"], "value", catalog["ra"]), dtype=float)
    dec0 = np.asarray(getattr(catalog["dec"], "value", catalog["dec"]), dtype=float)
    z0 = np.asarray(getattr(catalog["z"], "value", catalog["z"]), dtype=float)
    sig = offset.to_value(u.deg)

    def scatter(ra, dec):
        cosd = np.maximum(np.cos(np.radians(dec)), 1e-6)
        return (np.mod(ra + rng.normal(0, sig, ra.size) / cosd, 360.0),
                np.clip(dec + rng.normal(0, sig, dec.size), -90, 90))

    gal = np.flatnonzero(rng.random(n) < completeness)
    g_ra, g_dec = scatter(ra0[gal], dec0[gal])
    g_zerr = 1e-4 * (1 + z0[gal]) * rng.uniform(0.5, 1.5, gal.size)
    g_z = z0[gal] + rng.normal(0, g_zerr)
    g_warn = np.zeros(gal.size, dtype=np.int64)
    bad = rng.random(gal.size) < bad_fraction
    g_warn[bad] = 4
    g_z[bad] = rng.uniform(0.0, 1.0, int(bad.sum()))
    g_cls = np.full(gal.size, "GALAXY")
    g_sub = np.where(rng.random(gal.size) < 0.4, "STARFORMING", "")

    dup = gal[rng.random(gal.size) < duplicate_fraction]
    pos = {int(g): k for k, g in enumerate(gal)}
    d_k = np.array([pos[int(g)] for g in dup], dtype=np.int64)
    d_ra, d_dec = scatter(ra0[dup], dec0[dup])
    d_z = g_z[d_k] + rng.normal(0, g_zerr[d_k])

    lo_ra, hi_ra = (ra0.min(), ra0.max()) if n else (0.0, 1.0)
    lo_dec, hi_dec = (dec0.min(), dec0.max()) if n else (0.0, 1.0)
    nstar = int(round(star_fraction * n))
    nqso = int(round(qso_fraction * n))
    s_ra = rng.uniform(lo_ra, hi_ra, nstar + nqso)
    s_dec = rng.uniform(lo_dec, hi_dec, nstar + nqso)
    s_z = np.concatenate([rng.normal(0, 1e-4, nstar), rng.uniform(0.5, 3.0, nqso)])
    s_cls = np.array(["STAR"] * nstar + ["QSO"] * nqso, dtype="U6")

    ra = np.concatenate([g_ra, d_ra, s_ra])
    dec = np.concatenate([g_dec, d_dec, s_dec])
    z = np.concatenate([g_z, d_z, s_z])
    zerr = np.concatenate([g_zerr, g_zerr[d_k], np.full(nstar + nqso, 2e-4)])
    warn = np.concatenate([g_warn, g_warn[d_k], np.zeros(nstar + nqso, dtype=np.int64)])
    cls = np.concatenate([g_cls, np.full(dup.size, "GALAXY"), s_cls]).astype("U6")
    sub = np.concatenate([g_sub, g_sub[d_k], np.full(nstar + nqso, "")]).astype("U16")
    primary = np.concatenate([np.ones(gal.size, np.int64), np.zeros(dup.size, np.int64),
                              np.ones(nstar + nqso, np.int64)])
    mock_id = np.concatenate([ids[gal], ids[dup], np.full(nstar + nqso, -1, np.int64)])

    # plates: spectra in RA order, primaries first; legacy plates, then BOSS plates
    m = ra.size
    order = np.lexsort((ra, 1 - primary))
    plate = np.empty(m, np.int64)
    fiber = np.empty(m, np.int64)
    mjd = np.empty(m, np.int64)
    run2d = np.empty(m, dtype="U8")
    n_legacy = int(round(legacy_fraction * m))
    for part, (first_plate, nfib, first_mjd, r2d) in zip(
            (order[:n_legacy], order[n_legacy:]),
            ((266, 640, 51602, "26"), (3586, 1000, 55181, "v5_13_2"))):
        k = np.arange(part.size)
        plate[part] = first_plate + k // nfib
        fiber[part] = 1 + k % nfib
        mjd[part] = first_mjd + 3 * (k // nfib)
        run2d[part] = r2d
    specobjid = sdss_specobjid(plate, mjd, fiber, run2d) if m else np.zeros(0, np.uint64)
    out = Table()
    out["specObjID"] = np.asarray(specobjid, dtype=np.uint64)
    out["ra"] = ra
    out["dec"] = dec
    out["z"] = z
    out["zErr"] = zerr
    out["zWarning"] = warn
    out["class"] = cls
    out["subClass"] = sub
    out["plate"] = plate
    out["mjd"] = mjd
    out["fiberID"] = fiber
    out["run2d"] = run2d
    out["sciencePrimary"] = primary
    out["mock_id"] = mock_id
    out.meta["description"] = ("mock SDSS SpecObjAll (astro_mantis.testing.make_specobj) of "
                               f"{n} catalog galaxies, seed {seed}")
    return out


# ----------------------------------------------------------------------------- SQL
class SQLError(Exception):
    """An SQL error, with SQL Server's wording (e.g. ``Invalid column name 'foo'.``)."""


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<name>\[[^\]]+\]|[A-Za-z_#@][A-Za-z0-9_#@$]*)
  | (?P<op><=|>=|<>|!=|=|<|>|\(|\)|,|\*|\.|-|\+|;)
""", re.X)
_KEYWORDS = {"SELECT", "TOP", "FROM", "WHERE", "AND", "OR", "NOT", "BETWEEN", "IN", "AS",
             "ORDER", "BY", "ASC", "DESC", "DISTINCT", "JOIN", "GROUP", "UNION", "INTO"}


def _tokenize(sql):
    pos, out = 0, []
    while pos < len(sql):
        m = _TOKEN.match(sql, pos)
        if m is None:
            raise SQLError(f"Incorrect syntax near '{sql[pos:pos + 10]}'.")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        text = m.group()
        if kind == "name":
            if text.startswith("["):
                text = text[1:-1]
            elif text.upper() in _KEYWORDS:
                kind, text = "kw", text.upper()
        out.append((kind, text))
    out.append(("end", ""))
    return out


class _Parser:
    """Recursive descent over the SQL subset; evaluates on numpy columns."""

    def __init__(self, tokens, tables):
        self.tokens, self.k, self.tables = tokens, 0, tables

    def peek(self):
        return self.tokens[self.k]

    def next(self):
        tok = self.tokens[self.k]
        self.k += 1
        return tok

    def fail(self):
        kind, text = self.peek()
        raise SQLError(f"Incorrect syntax near '{text}'." if kind != "end"
                       else "Incorrect syntax near the end of the query.")

    def expect(self, kind, text=None):
        tok = self.peek()
        if tok[0] != kind or (text is not None and tok[1] != text):
            self.fail()
        return self.next()

    def accept(self, kind, text=None):
        tok = self.peek()
        if tok[0] == kind and (text is None or tok[1] == text):
            self.k += 1
            return True
        return False

    # -- statement
    def select(self):
        self.expect("kw", "SELECT")
        top = None
        if self.accept("kw", "TOP"):
            kind, text = self.expect("number")
            top = int(float(text))
        items = []
        if self.accept("op", "*"):
            items = None
        else:
            while True:
                ref = self.colref()
                alias = ref[1]
                if self.accept("kw", "AS"):
                    alias = self.expect("name")[1]
                elif self.peek()[0] == "name":
                    alias = self.next()[1]
                items.append((ref, alias))
                if not self.accept("op", ","):
                    break
        self.expect("kw", "FROM")
        tname = self.expect("name")[1]
        key = tname.lower()
        if key.startswith("dbo."):
            key = key[4:]
        if key not in self.tables:
            raise SQLError(f"Invalid object name '{tname}'.")
        self.table = self.tables[key]
        self.tname = key
        self.alias = None
        if self.accept("kw", "AS"):
            self.alias = self.expect("name")[1].lower()
        elif self.peek()[0] == "name":
            self.alias = self.next()[1].lower()
        self.lower = {c.lower(): c for c in self.table.colnames if not c.startswith("mock_")}
        n = len(self.table)
        mask = np.ones(n, dtype=bool)
        if self.accept("kw", "WHERE"):
            mask = self.expr()[0]  # the rows where the condition is true (not unknown)
        order = []
        if self.accept("kw", "ORDER"):
            self.expect("kw", "BY")
            while True:
                ref = self.colref()
                desc = self.accept("kw", "DESC")
                if not desc:
                    self.accept("kw", "ASC")
                order.append((ref, desc))
                if not self.accept("op", ","):
                    break
        self.accept("op", ";")
        if self.peek()[0] != "end":
            self.fail()
        if items is None:
            items = [((None, c), c) for c in self.table.colnames if not c.startswith("mock_")]
        names = [alias for _, alias in items]
        cols = [self.column(ref) for ref, _ in items]
        rows = np.flatnonzero(mask)
        if order:
            keys = []
            for ref, desc in reversed(order):
                col = self.column(ref)[rows]
                if desc:  # rank, then reverse: works for text too
                    col = -np.unique(_norm(col), return_inverse=True)[1].reshape(-1)
                elif col.dtype.kind in "US":
                    col = _norm(col)
                keys.append(col)
            rows = rows[np.lexsort(keys)]
        if top is not None:
            rows = rows[:top]
        return names, [c[rows] for c in cols]

    def colref(self):
        first = self.expect("name")[1]
        if self.accept("op", "."):
            return first, self.expect("name")[1]
        return None, first

    def column(self, ref):
        qual, name = ref
        if qual is not None and qual.lower() not in (self.alias or self.tname,):
            raise SQLError(f"The multi-part identifier \"{qual}.{name}\" could not be bound.")
        key = self.lower.get(name.lower())
        if key is None:
            raise SQLError(f"Invalid column name '{name}'.")
        return np.asarray(self.table[key])

    # -- conditions: (true, false) masks, SQL's three-valued logic (a row in neither is
    # unknown: a comparison with NULL, i.e. a masked or NaN value)
    def expr(self):
        true, false = self.and_expr()
        while self.accept("kw", "OR"):
            t, f = self.and_expr()
            true, false = true | t, false & f
        return true, false

    def and_expr(self):
        true, false = self.not_expr()
        while self.accept("kw", "AND"):
            t, f = self.not_expr()
            true, false = true & t, false | f
        return true, false

    def not_expr(self):
        if self.accept("kw", "NOT"):
            true, false = self.not_expr()
            return false, true
        return self.predicate()

    def operand(self):
        kind, text = self.peek()
        if kind == "number":
            self.next()
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "string":
            self.next()
            return text[1:-1].replace("''", "'")
        if kind == "op" and text in "-+":
            self.next()
            value = self.operand()
            if isinstance(value, str) or isinstance(value, np.ndarray):
                self.fail()
            return -value if text == "-" else value
        if kind == "name":
            ref = self.colref()
            qual, name = ref
            self.column(ref)  # checks the name
            col = self.table[self.lower[name.lower()]]
            return np.ma.asarray(col) if np.ma.is_masked(col) else np.asarray(col)
        self.fail()

    def predicate(self):
        if self.accept("op", "("):
            pair = self.expr()
            self.expect("op", ")")
            return pair
        left = self.operand()
        negate = self.accept("kw", "NOT")
        if self.accept("kw", "BETWEEN"):
            low = self.operand()
            self.expect("kw", "AND")
            high = self.operand()
            (t1, f1), (t2, f2) = _cmp(">=", left, low), _cmp("<=", left, high)
            true, false = t1 & t2, f1 | f2
        elif self.accept("kw", "IN"):
            self.expect("op", "(")
            values = [self.operand()]
            while self.accept("op", ","):
                values.append(self.operand())
            self.expect("op", ")")
            true, false = _cmp("=", left, values[0])
            for v in values[1:]:
                t, f = _cmp("=", left, v)
                true, false = true | t, false & f
        elif negate:
            self.fail()
        else:
            kind, op = self.expect("op")
            if op not in ("=", "<>", "!=", "<", "<=", ">", ">="):
                self.fail()
            true, false = _cmp(op, left, self.operand())
        n = len(self.table)
        true, false = np.broadcast_to(true, (n,)).copy(), np.broadcast_to(false, (n,)).copy()
        return (false, true) if negate else (true, false)


def _norm(value):
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return np.char.upper(np.char.rstrip(arr.astype(str)))
    return arr


def _unknown(value):
    """Where a value is SQL's NULL: masked, or a NaN (SQL Server has no NaN)."""
    unknown = np.ma.getmaskarray(value) if np.ma.isMaskedArray(value) else \
        np.zeros(np.shape(value), dtype=bool)
    data = np.ma.getdata(value)
    if np.asarray(data).dtype.kind == "f":
        unknown = unknown | np.isnan(data)
    return unknown


def _cmp(op, left, right):
    """(true, false) masks of ``left op right``: neither where a side is NULL."""
    unknown = _unknown(left) | _unknown(right)
    a, b = _norm(np.ma.getdata(left)), _norm(np.ma.getdata(right))
    if (a.dtype.kind == "U") != (b.dtype.kind == "U"):
        text = a if a.dtype.kind == "U" else b
        sample = str(text.flat[0]) if text.size else ""
        raise SQLError(f"Conversion failed when converting the varchar value '{sample}' to "
                       "data type int.")
    func = {"=": np.equal, "<>": np.not_equal, "!=": np.not_equal, "<": np.less,
            "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}[op]
    with np.errstate(invalid="ignore"):
        result = np.asarray(func(a, b), dtype=bool)
    return result & ~unknown, ~result & ~unknown


def execute_sql(sql, tables):
    """Run one query of the SQL subset (see the module notes) on tables.

    Parameters
    ----------
    sql : str
        The query.
    tables : dict
        Lower-case table name -> `~astropy.table.Table`.

    Returns
    -------
    names : list of str
        Result column names.
    columns : list of `numpy.ndarray`
        Result columns.

    Raises
    ------
    SQLError
        With SQL Server's wording of the problem.
    """
    return _Parser(_tokenize(sql), tables).select()


def _csv_value(v):
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else repr(float(v))
    if isinstance(v, (np.integer, int)):
        return str(int(v))
    text = str(v)
    if any(c in text for c in ',"\n'):
        text = '"' + text.replace('"', '""') + '"'
    return text


def skyserver_error_page(message):
    """SkyServer's HTML error page (served with status 200) for a message."""
    return ("<html><head>\n<title>Skyserver Error</title>\n</head><body bgcolor=white>\n"
            "<p>An error occured</p>"
            f"<p><font color=red><br> {html.escape(message, quote=False)} </font></p>"
            "</BODY></HTML>\n")


# ----------------------------------------------------------------------------- HTTP
_HTML_503 = (b"<html><body><h1>503 Service Unavailable</h1>\nNo server is available to "
             b"handle this request.\n</body></html>\n")
_HTML_200 = (b"<!DOCTYPE html>\n<html><head><title>Scheduled maintenance</title></head><body>"
             b"<h1>SkyServer is down for maintenance</h1></body></html>\n")
_NOT_FOUND = b"<html><body><h1>404 Not Found</h1></body></html>\n"
_TOO_LONG = (b"<html><body><h2>HTTP Error 404.15 - Not Found</h2><p>The request filtering "
             b"module is configured to deny a request where the query string is too long."
             b"</p></body></html>\n")
_BUSY = skyserver_error_page("Query timeout expired. The server is busy; please try "
                             "again later.").encode()


class SkyServer(LoopbackService):
    """A loopback SDSS SkyServer answering SQL searches (see the module notes).

    Parameters
    ----------
    specobj : `~astropy.table.Table`, optional
        The ``SpecObjAll`` table (as from `make_specobj`); columns whose names start
        with ``mock_`` are not served. Default: `make_specobj` of the bundled sample
        sky (`~astro_mantis.simulate.SampleSky`).
    host : str
        Interface to bind (default 127.0.0.1).
    port : int
        Port; 0 picks a free one.
    latency : float
        Seconds added to every request.
    error_rate, truncate_rate, html_rate : float
        Fractions of responses answered with a 503 page, with the CSV cut short
        (status 200), or with an HTML maintenance page (status 200).
    row_limit : int
        Most rows in one answer; more are silently dropped, as SkyServer's SQL Search
        does (SkyServer's own limit is 500,000).
    max_query_length : int
        Longest accepted query string (characters); longer ones get 404.15.
    releases : iterable of int
        Data releases served (default 8 to 19).
    seed : int
        Seed of the random faults.

    Attributes
    ----------
    counts : `collections.Counter`
        Requests per endpoint (``"sql"``).
    log : list of `SkyServerLogEntry`
        Every request: method, endpoint, parameters (``cmd`` holds the SQL), rows sent.
    timeout_sleep : float
        Seconds a ``"timeout"`` fault waits before answering (default 5).

    Examples
    --------
    >>> from astro_mantis.testing import SkyServer
    >>> with SkyServer() as sky, sky.configure():  # doctest: +SKIP
    ...     from astroquery.sdss import SDSS
    ...     SDSS.query_sql("SELECT TOP 2 z FROM SpecObj", cache=False)
    """

    _fault_kinds = FAULT_KINDS
    _endpoint_names = frozenset({"sql"})
    _log_type = SkyServerLogEntry
    _fault_pages = {"5xx": (503, _HTML_503, "text/html"), "html": (200, _HTML_200, "text/html"),
                    "busy": (200, _BUSY, "text/html")}

    def __init__(self, specobj=None, *, host="127.0.0.1", port=0, latency=0.0, error_rate=0.0,
                 truncate_rate=0.0, html_rate=0.0, row_limit=500000, max_query_length=8192,
                 releases=range(8, 20), seed=0):
        super().__init__(host, port, latency, error_rate, truncate_rate, html_rate, seed)
        if specobj is None:
            from ..simulate import SampleSky

            specobj = make_specobj(SampleSky().catalog, seed=seed)
        self.specobj = specobj
        self.row_limit = int(row_limit)
        self.max_query_length = int(max_query_length)
        self.releases = frozenset(int(r) for r in releases)

    @property
    def specobj(self):
        """The served ``SpecObjAll`` table (``SpecObj``: its rows with sciencePrimary = 1)."""
        return self._specobj

    @specobj.setter
    def specobj(self, table):
        self._specobj = table
        primary = (np.asarray(table["sciencePrimary"]) == 1 if "sciencePrimary" in table.colnames
                   else np.ones(len(table), dtype=bool))
        self._tables = {"specobjall": table, "specobj": table[primary]}

    @contextlib.contextmanager
    def configure(self, conf=None):
        """Point ``astroquery.sdss.conf.skyserver_baseurl`` at this server for a while.

        Parameters
        ----------
        conf : `~astropy.config.ConfigNamespace`, optional
            Namespace with a ``skyserver_baseurl`` item; default astroquery's SDSS one.

        Yields
        ------
        `SkyServer`
            This server.
        """
        if conf is None:
            from astroquery.sdss import conf
        with conf.set_temp("skyserver_baseurl", self.url):
            yield self

    def _route(self, path):
        m = re.fullmatch(r"/dr(\d+)/en/tools/search/(x_results\.aspx|x_sql\.aspx|x_sql\.asp)",
                         path, flags=re.I)
        if m is None:
            return None
        dr, page = int(m.group(1)), m.group(2).lower()
        expected = "x_results.aspx" if dr > 10 else ("x_sql.aspx" if dr == 10 else "x_sql.asp")
        if dr not in self.releases or page != expected:
            return None
        return dr

    def _handle(self, handler, method, split, body):
        if len(split.query) > self.max_query_length:
            self._record(method, "sql", {}, None)
            handler.send_body(404, _TOO_LONG, "text/html")
            return
        dr = self._route(split.path)
        if dr is None:
            handler.send_body(404, _NOT_FOUND, "text/html")
            return
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        if body:
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        k = self._record(method, "sql", params, None)
        self._sleep(self.latency)
        fault = self._choose_fault("sql")
        if self._serve_fault(handler, fault):
            return
        close = fault == "timeout"
        status, ctype, payload, nrows = self._answer(dr, params)
        if nrows is not None:
            self._set_count(k, nrows)
        if fault == "truncate":
            cut = len(payload) // 2
            while 0 < cut < len(payload) and payload[cut - 1:cut] in (b"\n", b","):
                cut -= 1  # never exactly at a line or field end
            payload = payload[:cut]
        handler.send_body(status, payload, ctype, close=close)

    def _answer(self, dr, params):
        if dr > 11 and params.get("searchtool", "") != "SQL":
            return 200, "text/html", skyserver_error_page("Select proper tool").encode(), None
        sql = params.get("cmd", "").strip()
        fmt = params.get("format", "html").lower()
        if not sql:
            return 200, "text/html", skyserver_error_page("No query specified.").encode(), None
        if fmt != "csv":
            return 200, "text/html", skyserver_error_page(
                f"The loopback SkyServer writes only format=csv, not {fmt!r}.").encode(), None
        try:
            names, cols = execute_sql(sql, self._tables)
        except SQLError as err:
            return 200, "text/html", skyserver_error_page(str(err)).encode(), None
        nrows = len(cols[0]) if cols else 0
        nrows = min(nrows, self.row_limit)
        lines = ["#Table1", ",".join(names)]
        for i in range(nrows):
            lines.append(",".join(_csv_value(c[i]) for c in cols))
        return 200, "text/plain", ("\n".join(lines) + "\n").encode("utf-8"), nrows

