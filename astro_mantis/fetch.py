"""The fetch engine: cutouts of many positions from the survey services.

`CutoutFetcher` (its shared instance is `fetcher`; `Mantis <astro_mantis.Mantis>` is
the astroquery-style front over it) fetches each survey's cutout over the survey's
own protocol (declared in `astro_mantis.surveys`), politely and without ever losing a
row:

* requests go through one small thread pool *per host*, of
  ``conf.max_connections_per_host`` threads, each with its own keep-alive session,
  and never more than that many are in flight to one host from the whole process,
  however many calls run at once (threads of a Dask worker, the web service);
* Pan-STARRS positions are listed in chunks of ``conf.ps1_chunk_size`` with one
  ``ps1filenames.py`` POST per chunk, and their band images are fetched as soon as
  their chunk's listing is back, so listing and downloading overlap;
* the statuses of `RETRY_STATUSES` (408, 425, 429, 500, 502, 503, 504; every other
  status is final), timeouts, connection errors and invalid bodies (HTML with status
  200, empty or truncated FITS, a listing cut short) are retried at most
  ``conf.retries`` times with exponential back-off and full jitter, waiting at least
  the ``Retry-After`` of a 429 or 503 answer (`astro_mantis.retry`); what still fails
  is flagged on that row, not raised; redirects are followed (``MAX_REDIRECTS``);
* results are cached on disk (one ``.amc`` entry per survey, service and position:
  `CutoutCache`, written atomically), so a rerun over cached positions sends no
  request at all.
"""
import json
import math
import os
import re
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from dataclasses import dataclass, field

import certifi
import numpy as np
import requests
import urllib3
from astropy import units as u
from astropy.coordinates import SkyCoord

from ._version import __version__
from .atomic import STALE_SECONDS, TEMP_SUFFIX, atomic_open, remove_stale_temporaries
from .config import conf
from .exceptions import FetchError, InvalidResponseError
from .flags import MantisFlag
from .logger import log, log_request
# FetchStatus and StatusText live beside MultiSurveyCutout (a cutout read from a file
# rebuilds its statuses); they are this module's public names
from .multicutout import FetchStatus, MultiSurveyCutout, StatusText
from .positions import icrs_positions, resolve_name
from .retry import RETRY_AFTER_STATUSES, RETRY_STATUSES, RetryPolicy
from .surveys import DEFAULT_SURVEYS, get_surveys
from .surveys.core import SurveyImage, primary_layout

__all__ = ["CutoutFetcher", "fetcher", "CutoutCache", "normalize_coordinates", "FetchStatus",
           "StatusText", "FetchCancelled", "FetchPlan", "PLAN_SECONDS_PER_REQUEST",
           "RETRY_STATUSES", "coalesce_span", "DEFAULT_COALESCE_SPAN", "MAX_COALESCE_SPAN"]



# ---------------------------------------------------------------------------- input
def _read_positions(coordinates):
    """``(icrs, scalar, positions)``: the ICRS coordinates (1-D), whether the input was
    a scalar, and their `~astro_mantis.positions.Positions`, converted once."""
    if isinstance(coordinates, str):
        coordinates = resolve_name(coordinates)
    if not isinstance(coordinates, SkyCoord):
        raise TypeError(
            f"coordinates must be an astropy SkyCoord, a position string or an object "
            f"name, got {type(coordinates).__name__}; "
            "for example SkyCoord(ra=150.1, dec=2.2, unit='deg') or "
            "SkyCoord(table['ra'], table['dec'], unit='deg')")
    icrs, pos = icrs_positions(coordinates)
    if coordinates.isscalar and not pos.good[0]:
        ra, dec = (np.ma.filled(np.ma.asarray(a, dtype=float), np.nan)[0]
                   for a in (icrs.ra.deg, icrs.dec.deg))
        raise ValueError(f"invalid coordinate (ra={ra}, dec={dec}): "
                         "RA and Dec must be finite, with -90 <= Dec <= 90")
    return icrs, coordinates.isscalar, pos


def normalize_coordinates(coordinates):
    """Check and convert positions to ICRS (with `astro_mantis.positions`).

    Parameters
    ----------
    coordinates : `~astropy.coordinates.SkyCoord` or str
        Scalar or array, in any frame that converts to ICRS; or one position as a
        string, ``"12:20:05.8 +47:11:43"`` (right ascension in hours) or
        ``"185.024 47.195"`` (degrees), or an object name (``"M101"``) resolved with
        `SkyCoord.from_name <astropy.coordinates.SkyCoord.from_name>` (needs the
        network).

    Returns
    -------
    icrs : `~astropy.coordinates.SkyCoord`
        Flattened (1-D) ICRS positions.
    scalar : bool
        Whether the input was a scalar.
    good : `numpy.ndarray` of bool
        False where a position is NaN, masked or out of range.

    Raises
    ------
    TypeError
        If ``coordinates`` is not a `~astropy.coordinates.SkyCoord`.
    ValueError
        If the frame cannot be converted to ICRS, or a scalar position is invalid.
    """
    icrs, scalar, pos = _read_positions(coordinates)
    return icrs, scalar, pos.good


def _distinct(pos):
    """The distinct valid positions of `~astro_mantis.positions.Positions`, sorted by
    (ra, dec) to 7 decimals of a degree."""
    ra, dec = np.round(pos.ra[pos.good], 7), np.round(pos.dec[pos.good], 7)
    return sorted(set(zip(ra.tolist(), dec.tolist())))


# ---------------------------------------------------------------------------- cache
#: Cache folders already swept for abandoned temporary files by this process.
_SWEPT = set()
_SWEPT_LOCK = threading.Lock()


class FetchCancelled(Exception):
    """A `CutoutFetcher.get_cutouts` call was cancelled by its ``cancel`` event."""


class _StaleEntry(ValueError):
    """A cache entry whole and readable, but written in a format no longer served."""


class CutoutCache:
    """On-disk cache of survey cutouts: one file per survey, service, position, size and scale.

    An entry is a small binary file: a magic line, a JSON description (survey, the
    service it came from, bands, unit, zero points, flags, WCS cards, shape), the
    float32 pixels, and an Adler-32 checksum of all of it. The service (base URL
    and layer, `Survey.source <astro_mantis.surveys.Survey.source>`) is part of the
    key and is checked again on reading, so a cutout of one server is never served
    as another's. Loading one costs well under a millisecond, so a rerun over
    cached positions is fast as well as silent on the network. A "not covered"
    answer is cached too, so a rerun knows a survey has nothing there without
    asking. Files are written to a temporary name and renamed into place, so a
    reader never sees half a file; an entry that fails its checksum or does not parse is
    deleted and fetched again, and so is one written in a format no longer served
    (Pan-STARRS entries of astro_mantis before the stacks' legacy WCS matrix was kept).

    Parameters
    ----------
    directory : str or path-like, optional
        Cache root; default ``conf.cache_dir`` or ``<astropy cache>/astro_mantis/cutouts``.
    """

    NOT_COVERED = object()
    MAGIC = b"ASTRO_MANTIS_CUTOUT 1\n"
    #: Format of the entries this version writes (the ``format`` of their description).
    FORMAT = 2
    #: The oldest format still served, per survey; older entries are fetched again.
    #: Pan-STARRS entries of format 1 hold WCS cards cut down without the stacks' legacy
    #: ``PC001001 = -1`` (their right ascension runs the wrong way).
    _MIN_FORMAT = {"panstarrs": 2}
    #: Names of what the cache writes in ``<survey>/<xx>/``: entries (the SHA-1 hex digest
    #: of the key, whose first two digits name the folder) and writers' temporary files.
    _ENTRY_NAME = re.compile(r"[0-9a-f]{40}\.amc")
    _TEMP_NAME = re.compile(r"\.[0-9a-f]{40}\..*" + re.escape(TEMP_SUFFIX) + r"\.amc")
    _FOLDER_NAME = re.compile(r"[0-9a-f]{2}")

    def __init__(self, directory=None):
        if directory is None:
            directory = conf.cache_dir or None
        if directory is None:
            from astropy.config import get_cache_dir_path
            directory = Path(get_cache_dir_path()) / "astro_mantis" / "cutouts"
        self.directory = Path(directory).expanduser()
        self._made = set()

    def path(self, survey, key):
        """Where the entry of ``key`` lives."""
        return self.directory / survey / key[:2] / f"{key}.amc"

    @classmethod
    def encode(cls, image, source=None):
        """Serialise a `~astro_mantis.surveys.SurveyImage` (or None for "not covered") to bytes.

        ``source`` names the service the entry came from (checked by `decode`).
        """
        if image is None:
            desc, pixels = {"covered": False, "source": source}, b""
        else:
            data = np.ascontiguousarray(image.data, dtype="<f4")
            desc = {"covered": True, "source": source, "survey": image.survey,
                    "bands": list(image.bands),
                    "unit": image.unit.to_string(), "shape": list(data.shape),
                    "zeropoints": [None if not np.isfinite(z) else float(z)
                                   for z in image.zeropoints],
                    "flags": int(image.flags), "wcs": image.header.tostring(),
                    "meta": {k: v for k, v in image.meta.items()
                             if isinstance(v, (str, int, float, bool))},
                    "version": __version__, "format": cls.FORMAT}
            pixels = data.tobytes()
        blob = json.dumps(desc).encode()
        body = cls.MAGIC + struct.pack("<Q", len(blob)) + blob + pixels
        return body + struct.pack("<I", zlib.adler32(body))

    @classmethod
    def decode(cls, raw, source=None):
        """Inverse of `encode`; raises ValueError on any damage, or when ``source`` is given
        and the entry came from another service."""
        if not raw.startswith(cls.MAGIC) or len(raw) < len(cls.MAGIC) + 12:
            raise ValueError("not an astro_mantis cache entry")
        body, (crc,) = memoryview(raw)[:-4], struct.unpack("<I", raw[-4:])
        if zlib.adler32(body) != crc:
            raise ValueError("checksum mismatch")
        start = len(cls.MAGIC) + 8
        (nblob,) = struct.unpack("<Q", raw[len(cls.MAGIC):start])
        desc = json.loads(bytes(body[start:start + nblob]))
        if source is not None and desc.get("source") != source:
            raise ValueError(f"entry came from {desc.get('source')!r}, not {source!r}")
        if not desc["covered"]:
            return cls.NOT_COVERED
        if desc.get("format", 1) < cls._MIN_FORMAT.get(desc["survey"], 1):
            raise _StaleEntry(f"a {desc['survey']} entry of format {desc.get('format', 1)}")
        shape = tuple(desc["shape"])
        data = np.frombuffer(body, dtype="<f4", offset=start + nblob).reshape(shape)
        if not data.flags.writeable:  # only bytes (immutable) input needs a copy
            data = data.copy()
        return SurveyImage(desc["survey"], data.astype(np.float32, copy=False), desc["wcs"],
                           desc["unit"], desc["bands"], check_nan=False,
                           zeropoints=[np.nan if z is None else z for z in desc["zeropoints"]],
                           flags=desc["flags"], meta=desc["meta"])

    def load(self, survey, key, source=None):
        """A `~astro_mantis.surveys.SurveyImage`, `NOT_COVERED`, or None (absent, unreadable,
        or from another service than ``source``)."""
        path = self.path(survey, key)
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                raw = bytearray(st.st_size)
                fh.readinto(raw)  # a mutable buffer: the pixels need no copy
        except FileNotFoundError:
            return None
        try:
            return self.decode(raw, source)
        except _StaleEntry as exc:  # written by an older version: not damage
            log.debug(f"cache entry {path} is {exc}, no longer served; fetching it again")
            self._unlink_if_same(path, st)
            return None
        except Exception as exc:
            log.warning(f"cache entry {path} is unreadable ({exc}); fetching it again")
            self._unlink_if_same(path, st)
            return None

    @staticmethod
    def _unlink_if_same(path, st):
        """Delete ``path`` only if it is still the file ``st`` describes: another process
        may have replaced it with a good entry (`store` renames) since it was read."""
        try:
            now = os.stat(path)
            if (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
                path.unlink()
        except FileNotFoundError:
            pass

    def store(self, survey, key, image, source=None):
        """Atomically write ``image``, a `~astro_mantis.surveys.SurveyImage` (None: not covered),
        fetched from the service ``source``."""
        path = self.path(survey, key)
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
            with _SWEPT_LOCK:  # once per folder and process: a cache can hold millions
                sweep = path.parent not in _SWEPT
                _SWEPT.add(path.parent)
            if sweep:
                self.remove_stale(path.parent)
        # swept once per folder above, not at every write (a folder holds thousands)
        try:
            with atomic_open(path, "wb", fsync=False, sweep=False) as fh:
                fh.write(self.encode(image, source))
        except FileNotFoundError:  # the folder was removed meanwhile (`clear`)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(path, "wb", fsync=False, sweep=False) as fh:
                fh.write(self.encode(image, source))

    def clear(self):
        """Delete every entry of the cache, and nothing else.

        The cache directory (``conf.cache_dir``) may hold other files too: only what
        the cache writes is deleted, the entries ``<survey>/<xx>/<key>.amc``, the
        temporary files that killed writers left (those older than
        `STALE_SECONDS`; a live writer's is left to it), and the folders of that
        layout left empty. Any other file or folder stays, wherever it lies.

        Returns
        -------
        int
            The number of entries deleted.
        """
        if not self.directory.is_dir():
            return 0
        n = 0
        now = time.time()
        for top in self.directory.iterdir():
            if top.is_symlink() or not top.is_dir():
                continue
            emptied = False
            for sub in top.iterdir():
                if (sub.is_symlink() or not sub.is_dir()
                        or not self._FOLDER_NAME.fullmatch(sub.name)):
                    continue
                removed = False
                for f in sub.iterdir():
                    entry = bool(self._ENTRY_NAME.fullmatch(f.name)) and f.name[:2] == sub.name
                    if not entry and not self._TEMP_NAME.fullmatch(f.name):
                        continue
                    try:
                        if f.is_symlink() or not f.is_file():
                            continue
                        if not entry and now - f.stat().st_mtime <= self.STALE_SECONDS:
                            continue
                        f.unlink()
                    except OSError:  # removed or renamed meanwhile
                        continue
                    n += entry
                    removed = True
                if removed:
                    try:
                        sub.rmdir()
                        emptied = True
                    except OSError:  # not empty: something else lives there
                        pass
            if emptied:
                try:
                    top.rmdir()
                except OSError:
                    pass
        self._made.clear()
        return n

    #: Age in seconds after which a leftover temporary file is taken to be abandoned
    #: (`astro_mantis.atomic.STALE_SECONDS`).
    STALE_SECONDS = STALE_SECONDS

    def remove_stale(self, directory):
        """Delete temporary files a killed writer left in ``directory`` (older than
        `STALE_SECONDS`; a live writer's file is seconds old). Returns how many
        (`astro_mantis.atomic.remove_stale_temporaries`)."""
        return remove_stale_temporaries(directory, older_than=self.STALE_SECONDS)


# ---------------------------------------------------------------------------- HTTP
#: The process's request slots per host: see `_host_slot`.
_HOST_SLOTS = {}
_HOST_SLOTS_LOCK = threading.Lock()

#: Redirects followed per request (301, 302, 303, 307, 308); a longer chain ends on
#: the last redirect's status, which is final.
MAX_REDIRECTS = 5


class _Slots:
    """The request slots of one host: a semaphore of ``limit`` and how many requests
    hold or wait for one (``users``, changed under ``_HOST_SLOTS_LOCK``)."""

    def __init__(self, limit):
        self.limit = limit
        self.sem = threading.BoundedSemaphore(limit)
        self.users = 0


@contextmanager
def _host_slot(host, nconn):
    """Hold one of this process's request slots for ``host`` while the block runs.

    There is one limit per host, shared by every fetcher of the process, so that calls
    running at once never add their limits up. While requests to the host are in
    flight or waiting, a new one shares their slots, whatever its own
    ``conf.max_connections_per_host`` (``nconn``): the limit is the one of the call
    whose request found the host idle; once the host is idle again, the next request
    sets it anew (so a changed ``conf`` value takes effect).
    """
    with _HOST_SLOTS_LOCK:
        slots = _HOST_SLOTS.get(host)
        if slots is None or (slots.limit != nconn and slots.users == 0):
            slots = _HOST_SLOTS[host] = _Slots(nconn)
        slots.users += 1
    try:
        with slots.sem:
            yield
    finally:
        with _HOST_SLOTS_LOCK:
            slots.users -= 1


class _HostPool:
    """At most ``nconn`` concurrent requests to one host, over at most ``nconn`` kept-alive
    connections.

    The requests go through `urllib3` directly (the layer under `requests`): for thousands
    of small requests it costs less than half the CPU time, which matters when one
    process fetches while it parses. Environment proxies (``HTTPS_PROXY``, ``NO_PROXY``
    ...) and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` are honoured as `requests` would.
    """

    def __init__(self, host, nconn, user_agent, timeout):
        self.host = host
        self.nconn = nconn
        self.headers = {"User-Agent": user_agent}
        # ``conf.timeout`` bounds connecting and each wait for data (every socket read),
        # not a whole answer: urllib3's ``Timeout(total=)`` would not either, as it only
        # shortens the read limit by the time spent connecting.
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout)
        ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") \
            or certifi.where()
        # redirects are followed (at most MAX_REDIRECTS); nothing else is retried here:
        # `_Fetcher` retries
        retries = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0,
                                redirect=MAX_REDIRECTS, raise_on_redirect=False,
                                raise_on_status=False)
        kwargs = dict(num_pools=2, maxsize=nconn, block=True, retries=retries, ca_certs=ca)
        proxy = requests.utils.get_environ_proxies(host).get(host.split("://")[0])
        self.http = (urllib3.ProxyManager(proxy, **kwargs) if proxy
                     else urllib3.PoolManager(**kwargs))
        self.executor = ThreadPoolExecutor(max_workers=nconn,
                                           thread_name_prefix=f"astro_mantis-{host}")

    def send(self, request):
        """Send one `Request`; returns ``(status, body, headers)``, following up to
        ``MAX_REDIRECTS`` redirects. Logged at DEBUG.

        It waits for one of the process's slots for this host (`_host_slot`), so that
        several calls running at once (threads of a Dask worker, a web service's
        requests) share the per-host limit, not multiply it.
        """
        with _host_slot(self.host, self.nconn):
            return self._send(request)

    def _send(self, request):
        t0 = time.perf_counter()
        if request.method == "GET":
            resp = self.http.request("GET", request.url, fields=request.params,
                                     headers=self.headers, timeout=self.timeout)
        else:
            fields = dict(request.data or {})
            for key, (name, text) in (request.files or {}).items():
                fields[key] = (name, text.encode() if isinstance(text, str) else text,
                               "text/plain")
            url = request.full_url
            resp = self.http.request(request.method, url, fields=fields, encode_multipart=True,
                                     headers=self.headers, timeout=self.timeout)
        log_request(request.method, request.url, resp.status, len(resp.data),
                    time.perf_counter() - t0)
        return resp.status, resp.data, resp.headers

    def close(self):
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.http.clear()


def _check_fits_body(content):
    """Cheap validity check of a FITS body: FITS magic, an END card, all the data.

    Raises `InvalidResponseError` (which the fetcher retries) for HTML pages with
    status 200, empty bodies and truncated files: a body shorter than its header
    and the data the header announces. The padding of the last 2880-byte block is
    not required (it holds nothing).
    """
    primary_layout(content)


class _ListingCheck:
    """The check of a listing's body, run on every attempt, so a bad listing is retried.

    A body fails it when it is not a listing table, when a row is cut short (a
    listing cut inside a row), and when it lacks the rows of positions the survey
    covers (`Survey.listing_gaps <astro_mantis.surveys.Survey.listing_gaps>`: a
    listing cut at a row boundary). The entries of the last body that parsed are
    kept (``entries``, with its ``gaps``), so that once every attempt failed, the
    positions it did list can still be fetched.

    Parameters
    ----------
    survey : `~astro_mantis.surveys.Survey`
        A survey that needs a listing.
    positions : list of (float, float)
        The positions the listing request sends, in order.
    """

    def __init__(self, survey, positions):
        self.survey, self.positions = survey, positions
        self.entries = self.gaps = None

    def __call__(self, content):
        entries = self.survey.parse_listing(content, self.positions)
        gaps = self.survey.listing_gaps(entries, self.positions)
        self.entries, self.gaps = entries, gaps
        if gaps:
            raise InvalidResponseError(
                f"{self.survey.name} listing: no rows of every band for {len(gaps)} of "
                f"{len(self.positions)} position(s) inside the footprint (cut short)")


class _Fetcher:
    """Sends `Request` objects with per-host pools, retries and back-off; counts requests.

    Once `close` is called, no attempt starts any more and the back-off waits end (the
    request fails, "cancelled"); attempts under way are answered.
    """

    def __init__(self, nconn, retries, timeout, backoff):
        self.nconn = max(1, int(nconn))
        #: Set by `close`: the retry loops stop (`RetryPolicy.attempts`).
        self.stopping = threading.Event()
        self.policy = RetryPolicy(retries, backoff)
        self.retries = self.policy.retries
        self.timeout = float(timeout)
        self.pools = {}
        self.nrequests = 0
        self._lock = threading.Lock()
        self._ua = f"astro_mantis/{__version__} (+https://github.com/astro-mantis)"

    def pool(self, host):
        with self._lock:
            if self.stopping.is_set():
                raise RuntimeError("the fetcher is closed")
            if host not in self.pools:
                self.pools[host] = _HostPool(host, self.nconn, self._ua, self.timeout)
            return self.pools[host]

    def submit(self, request, check):
        """Schedule ``request`` on its host's pool; the future gives the response body."""
        pool = self.pool(request.host)
        return pool.executor.submit(self._fetch, pool, request, check)

    def _fetch(self, pool, request, check):
        last = None
        tries = self.policy.attempts(self.stopping)
        for _ in tries:
            with self._lock:
                self.nrequests += 1
            try:
                status, content, headers = pool.send(request)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if self.policy.retryable(status):
                last = f"HTTP {status}"
                if status in RETRY_AFTER_STATUSES:  # the service says when to come back
                    try:
                        tries.retry_after(headers.get("Retry-After"), last)
                    except FetchError as exc:
                        raise FetchError(f"{exc} from {request.full_url}") from None
                continue
            if status != 200:
                raise FetchError(f"HTTP {status} from {request.full_url}")
            try:
                check(content)
            except InvalidResponseError as exc:
                last = str(exc)
                continue
            return content
        raise self.policy.exhausted(last, f"from {request.full_url}")

    def close(self):
        """Stop: drop the requests not sent yet, end the retries and their back-off waits,
        and wait for the attempts under way (their answers are delivered)."""
        self.stopping.set()
        with self._lock:
            pools = list(self.pools.values())
        for pool in pools:
            pool.close()
        with self._lock:
            self.pools.clear()


# ---------------------------------------------------------------------------- planning
#: Seconds one request is assumed to take on the real services, for the time estimate
#: of `CutoutFetcher.plan` (an assumption: no service publishes its response time).
PLAN_SECONDS_PER_REQUEST = 0.5


@dataclass
class FetchPlan:
    """What `CutoutFetcher.plan` found a job would fetch (nothing sent).

    Attributes
    ----------
    n_positions, n_unique : int
        Valid positions asked for, and distinct ones among them.
    cached, not_covered, to_fetch : dict
        Survey → positions answered by the cache, known to lie outside the survey
        (statically or from the cache), and left to fetch.
    requests : dict
        Host → requests that would be sent (retries not counted).
    seconds : float
        Rough wall time: per host, requests × `PLAN_SECONDS_PER_REQUEST` /
        ``conf.max_connections_per_host``, the hosts working in parallel.
    """

    n_positions: int = 0
    n_unique: int = 0
    cached: dict = field(default_factory=dict)
    not_covered: dict = field(default_factory=dict)
    to_fetch: dict = field(default_factory=dict)
    requests: dict = field(default_factory=dict)
    seconds: float = 0.0

    def report(self):
        """A short text report."""
        lines = [f"{self.n_positions} valid position(s), {self.n_unique} distinct"]
        for s in self.to_fetch:
            lines.append(f"  {s:<10} cached {self.cached[s]:>8d}   not covered "
                         f"{self.not_covered[s]:>8d}   to fetch {self.to_fetch[s]:>8d}")
        for host, nreq in self.requests.items():
            lines.append(f"  {host}: {nreq} request(s)")
        lines.append(f"  estimated time: {_duration(self.seconds)} at "
                     f"{conf.max_connections_per_host} connection(s) per host and an assumed "
                     f"{PLAN_SECONDS_PER_REQUEST:g} s per request (the real services vary; "
                     "failures and retries add to it)")
        return "\n".join(lines)


def _duration(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------------------- one call
#: Side of the squares of sky within which positions share one request with
#: ``coalesce=True`` (`coalesce_span`).
DEFAULT_COALESCE_SPAN = 1.0 * u.arcmin
#: The largest span accepted: a request of about 2,600 pixels on a side.
MAX_COALESCE_SPAN = 10.0 * u.arcmin

class _Ledger:
    """What became of every (survey, position) of one call, each settled exactly once.

    Progress is shown as outcomes come in: a bar of (survey, position) pairs, or a
    callable called with 1 each time all surveys of a position are settled.
    """

    def __init__(self, surveys, npositions, progress):
        from tqdm.auto import tqdm

        from .progress import progress_enabled

        self.nsurveys = len(surveys)
        #: {survey name: {position index: (FetchStatus, SurveyImage or None, detail)}}
        self.outcomes = {s.name: {} for s in surveys}
        self._settled = {}  # position index -> surveys settled
        self._lock = threading.Lock()
        self._callback = progress if callable(progress) else None
        show = self._callback is None and progress_enabled(progress, npositions > 10)
        self._bar = tqdm(total=npositions * len(surveys), unit="cutout", desc="cutouts",
                         disable=not show, leave=False)

    def settle(self, survey, i, status, image=None, detail=None):
        """Record the outcome of (``survey``, position ``i``); a second one is ignored."""
        with self._lock:
            per = self.outcomes[survey.name]
            if i in per:
                return
            per[i] = (status, image, detail)
            self._settled[i] = n = self._settled.get(i, 0) + 1
        self._bar.update(1)
        if n == self.nsurveys and self._callback is not None:
            self._callback(1)

    def fail(self, survey, indices, detail):
        """Settle every position of ``indices`` not yet settled as failed."""
        for i in indices:
            self.settle(survey, i, FetchStatus.FAILED, detail=detail)

    def counts(self):
        """`FetchStatus` → how many (survey, position) pairs ended so."""
        out = dict.fromkeys(FetchStatus, 0)
        for per in self.outcomes.values():
            for status, _, _ in per.values():
                out[status] += 1
        return out

    def close(self):
        self._bar.close()


class _Outstanding:
    """How many scheduled units (a listing, one position's images) are not finished yet."""

    def __init__(self):
        self._n = 0
        self._cond = threading.Condition()

    def add(self):
        with self._cond:
            self._n += 1

    def done(self):
        with self._cond:
            self._n -= 1
            if self._n == 0:
                self._cond.notify_all()

    def wait(self, cancel=None):
        """Block until every unit added so far (and those they added) is done; raise
        `FetchCancelled` as soon as the event ``cancel`` is set (checked every 0.05 s)."""
        with self._cond:
            while self._n:
                if cancel is not None and cancel.is_set():
                    raise FetchCancelled("the fetch was cancelled")
                self._cond.wait(None if cancel is None else 0.05)


class _Gather:
    """Sends the image requests of one unit and calls ``then(bodies, error)`` once, when
    every request is answered (``error``: the first failure, else None).

    ``then`` runs on the thread of the connection that answered last.
    """

    def __init__(self, fetcher, requests, then):
        self._bodies = [None] * len(requests)
        self._left = len(requests)
        self._error = None
        self._lock = threading.Lock()
        self._then = then
        for k, request in enumerate(requests):
            future = fetcher.submit(request, _check_fits_body)
            future.add_done_callback(lambda f, k=k: self._answered(k, f))

    def _answered(self, k, future):
        error = FetchError("cancelled") if future.cancelled() else future.exception()
        with self._lock:
            if error is None:
                self._bodies[k] = future.result()
            elif self._error is None:
                self._error = error
            self._left -= 1
            last = self._left == 0
        if last:
            self._then(self._bodies, self._error)


class _Call:
    """The fetching of one `CutoutFetcher.get_cutouts` call: what to ask, in what order.

    Each (survey, position) is first looked up in the survey's static footprint and in
    the cache; Pan-STARRS positions left are listed in chunks, and each position's image
    requests go out as soon as its chunk's listing is back; the bodies are parsed and
    cached off the connections' threads (`parser`). Every (survey, position) ends
    settled in the `_Ledger`, failures included; `run` returns when all have.

    Parameters
    ----------
    fetcher : `_Fetcher`
        Sends the requests (per-host pools, retries).
    cache : `CutoutCache` or None
        Read before asking, written after parsing (None: neither).
    ra, dec : `numpy.ndarray`
        Degrees of every position of the call (indexed by position).
    ledger : `_Ledger`
        Where outcomes are settled.
    coalescer : `_Coalescer`, optional
        Groups the listed positions of a coalescible survey that share one larger
        request (default: none do).
    """

    def __init__(self, fetcher, cache, ra, dec, ledger, coalescer=None):
        self.fetcher, self.cache, self.ra, self.dec, self.ledger = fetcher, cache, ra, dec, ledger
        self.coalescer = coalescer or _Coalescer(0.0)
        self.outstanding = _Outstanding()
        self.parser = None
        #: {(survey name, position index): (cache key, source)}, fixed when the position
        #: is planned (`_triage`), so that what is stored goes under the service asked
        #: even if ``conf`` changes while the call runs.
        self.keys = {}

    def run(self, surveys, positions, cancel=None):
        """Fetch every survey at the position indices ``positions``; wait for all.

        With the event ``cancel`` set, raise `FetchCancelled` at once (as a
        KeyboardInterrupt in this thread does), after closing the fetcher: the requests
        not sent yet are dropped, retries stop, and the attempts under way are answered,
        parsed and cached before the parser stops."""
        self.parser = ThreadPoolExecutor(max_workers=2, thread_name_prefix="astro_mantis-parse")
        try:
            for survey in surveys:
                if cancel is not None and cancel.is_set():
                    raise FetchCancelled("the fetch was cancelled")
                todo = self._triage(survey, positions)
                if self.coalescer.applies(survey):  # neighbours in the same listings
                    todo = self.coalescer.order(todo, self.ra, self.dec)
                if survey.needs_listing:
                    for chunk in _chunks(todo):
                        self._list(survey, chunk)
                else:
                    for i in todo:
                        self._fetch(survey, i)
            self.outstanding.wait(cancel)
        finally:
            try:  # first the fetcher: late answers still find the parser
                self.fetcher.close()
            finally:
                self.parser.shutdown(wait=True)

    def _triage(self, survey, positions):
        """Settle what needs no request (outside the static footprint, in the cache);
        returns the positions left to fetch."""
        todo = []
        for i in positions:
            ra, dec = self.ra[i], self.dec[i]
            if not survey.in_footprint(ra, dec):
                self.ledger.settle(survey, i, FetchStatus.OUT_OF_FOOTPRINT)
                continue
            if self.cache is not None:
                source = survey.source
                key = survey.cache_key(ra, dec)
                self.keys[survey.name, int(i)] = (key, source)
                hit = self.cache.load(survey.name, key, source)
                if hit is CutoutCache.NOT_COVERED:
                    self.ledger.settle(survey, i, FetchStatus.OUT_OF_FOOTPRINT)
                    continue
                if hit is not None:
                    self.ledger.settle(survey, i, FetchStatus.CACHED, hit)
                    continue
            todo.append(int(i))
        return todo

    def _list(self, survey, chunk):
        """Send the listing request of positions ``chunk``."""
        self.outstanding.add()
        positions = [(self.ra[i], self.dec[i]) for i in chunk]
        check = _ListingCheck(survey, positions)
        future = self.fetcher.submit(survey.listing_request(positions), check)
        future.add_done_callback(lambda f: self._listed(survey, chunk, f, check))

    def _listed(self, survey, chunk, future, check):
        """A listing is back (``check`` holds what it parsed): fetch the covered
        positions, settle the others.

        When every attempt failed, the positions the last listing that parsed gave
        files are fetched all the same, and those it lacked fail; "not covered" is
        cached only from a listing that passed its check.
        """
        try:
            error = future.exception()
            if check.entries is None:  # no attempt gave a listing
                self.ledger.fail(survey, chunk, f"listing: {error}")
                return
            gaps = set(check.gaps) if error is not None else set()
            covered = []
            for k, (i, entry) in enumerate(zip(chunk, check.entries)):
                if k in gaps:
                    self.ledger.settle(survey, i, FetchStatus.FAILED, detail=f"listing: {error}")
                elif entry is None:
                    if error is None:
                        self._store(survey, i, None)
                    self.ledger.settle(survey, i, FetchStatus.OUT_OF_FOOTPRINT)
                else:
                    covered.append((i, entry))
            for members in self.coalescer.groups(survey, covered, self.ra, self.dec):
                if len(members) == 1:
                    self._fetch(survey, *members[0])
                else:
                    self._fetch_group(survey, members)
        except Exception as exc:  # never leave a position unsettled
            self.ledger.fail(survey, chunk, f"listing: {type(exc).__name__}: {exc}")
        finally:
            self.outstanding.done()

    def _fetch(self, survey, i, listing=None):
        """Send the image requests of (``survey``, position ``i``)."""
        requests = survey.image_requests(self.ra[i], self.dec[i], listing=listing)
        self.outstanding.add()
        if not requests:
            self._parse(survey, i, requests, [])
            return
        _Gather(self.fetcher, requests,
                lambda bodies, error: self._answered(survey, i, requests, bodies, error))

    def _answered(self, survey, i, requests, bodies, error):
        """All requests of one (survey, position) are answered: parse off this thread."""
        try:
            if error is not None:
                self.ledger.settle(survey, i, FetchStatus.FAILED, detail=str(error))
                self.outstanding.done()
            else:  # the connection's thread moves on to its next request
                self.parser.submit(self._parse, survey, i, requests, bodies)
        except Exception as exc:  # e.g. the call was interrupted and the parser is gone
            self.ledger.settle(survey, i, FetchStatus.FAILED,
                               detail=f"{type(exc).__name__}: {exc}")
            self.outstanding.done()

    def _parse(self, survey, i, requests, bodies):
        """Read the bodies of one (survey, position), cache and settle the image."""
        try:
            image = survey.read(bodies, requests, self.ra[i], self.dec[i])
            self._store(survey, i, image)
        except Exception as exc:  # one bad cutout must not stop the others
            self.ledger.settle(survey, i, FetchStatus.FAILED,
                               detail=f"{type(exc).__name__}: {exc}")
        else:
            if image is None:
                self.ledger.settle(survey, i, FetchStatus.OUT_OF_FOOTPRINT)
            else:
                self.ledger.settle(survey, i, FetchStatus.FETCHED, image)
        finally:
            self.outstanding.done()

    def _fetch_group(self, survey, members):
        """Send one larger request for positions close together (``[(i, listing)]``)."""
        ra, dec, size = self.coalescer.request_geometry(
            survey, [self.ra[i] for i, _ in members], [self.dec[i] for i, _ in members])
        requests = survey.image_requests(ra, dec, listing=members[0][1], size=size)
        self.outstanding.add()
        self.coalescer.count(sent=1)
        _Gather(self.fetcher, requests,
                lambda bodies, error: self._group_answered(survey, members, requests, bodies,
                                                           error))

    def _group_answered(self, survey, members, requests, bodies, error):
        """A group's larger request is answered: cut it off this thread, or fall back."""
        try:
            if error is None:
                self.parser.submit(self._cut, survey, members, requests, bodies)
                return  # `_cut` finishes the unit
            self._fall_back(survey, members, error)
        except Exception as exc:  # e.g. the call was interrupted and the parser is gone
            self.ledger.fail(survey, [i for i, _ in members], f"{type(exc).__name__}: {exc}")
        self.outstanding.done()

    def _cut(self, survey, members, requests, bodies):
        """Cut each member's cutout from a group's bodies; cache and settle them."""
        try:
            try:
                images = survey.cut(bodies, requests,
                                    [(self.ra[i], self.dec[i]) for i, _ in members])
            except Exception as exc:
                self._fall_back(survey, members, f"{type(exc).__name__}: {exc}")
                return
            outside = []
            for (i, entry), image in zip(members, images):
                if image is None:
                    outside.append((i, entry))
                    continue
                try:
                    self._store(survey, i, image)
                except Exception as exc:
                    self.ledger.settle(survey, i, FetchStatus.FAILED,
                                       detail=f"{type(exc).__name__}: {exc}")
                else:
                    self.ledger.settle(survey, i, FetchStatus.FETCHED, image)
                    self.coalescer.count(cut=1)
            if outside:
                self._fall_back(survey, outside, "not wholly inside the coalesced cutout")
        finally:
            self.outstanding.done()

    def _fall_back(self, survey, members, reason):
        """Fetch the members of a group one by one (its larger request failed)."""
        log.debug(f"{survey.name}: coalesced request of {len(members)} position(s) gave no "
                  f"cutouts ({reason}); fetching them one by one")
        self.coalescer.count(fell_back=len(members))
        for i, entry in members:
            try:
                self._fetch(survey, i, entry)
            except Exception as exc:
                self.ledger.settle(survey, i, FetchStatus.FAILED,
                                   detail=f"{type(exc).__name__}: {exc}")

    def _store(self, survey, i, image):
        if self.cache is not None:
            key, source = self.keys[survey.name, int(i)]  # as planned, not as conf is now
            self.cache.store(survey.name, key, image, source)


class _Coalescer:
    """Which listed positions of a coalescible survey share one larger request.

    Positions whose cutouts come from the same image grid (the survey's
    ``coalesce_key``: one Pan-STARRS skycell) and that fall in the same square of
    ``span`` on the sky (squares of a tangent plane, counted from the positions'
    south-west corner) form a group; a group of one is fetched as usual.

    Parameters
    ----------
    span : float
        Side of the squares in arcseconds; 0 turns coalescing off.
    """

    def __init__(self, span):
        self.span = float(span)
        self._lock = threading.Lock()
        #: Larger requests sent (per survey and group), positions cut from them, and
        #: positions fetched alone after their group's request gave no cutout.
        self.sent = self.cut = self.fell_back = 0

    def applies(self, survey):
        """Whether positions of ``survey`` are grouped."""
        return self.span > 0 and survey.coalescible

    @staticmethod
    def order(indices, ra, dec):
        """``indices`` in strips of declination, by right ascension within each, so that
        neighbours share listing chunks."""
        return sorted(indices, key=lambda i: (math.floor(dec[i] / 0.25), ra[i]))

    def groups(self, survey, members, ra, dec):
        """``members`` (``[(index, listing)]``) in groups that share one request."""
        if not self.applies(survey):
            return [[m] for m in members]
        by_grid = {}
        for m in members:
            by_grid.setdefault(survey.coalesce_key(m[1]), []).append(m)
        out = []
        for same in by_grid.values():
            x, y = _tangent(np.array([ra[i] for i, _ in same]),
                            np.array([dec[i] for i, _ in same]))
            cells = {}  # squares from the south-west corner: a narrower field fits in one
            for m, cx, cy in zip(same, np.floor((x - x.min()) / self.span),
                                 np.floor((y - y.min()) / self.span)):
                cells.setdefault((cx, cy), []).append(m)
            out += list(cells.values())
        return out

    @staticmethod
    def request_geometry(survey, ra, dec):
        """Centre (degrees) and side (pixels) of one request holding the cutouts of
        all positions ``ra``, ``dec``."""
        ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
        x, y = _tangent(ra, dec)
        xc, yc = (x.min() + x.max()) / 2.0, (y.min() + y.max()) / 2.0
        ra0, dec0 = ra[0], float(np.mean(dec))
        scale = survey.pixscale.to_value("arcsec")
        extent = max(x.max() - x.min(), y.max() - y.min()) / scale
        side = int(survey.size) + int(math.ceil(extent)) + 8  # slack for rounding and TAN
        return ((ra0 + xc / 3600.0 / math.cos(math.radians(dec0))) % 360.0,
                dec0 + yc / 3600.0, side)

    def count(self, **counts):
        """Add to the counts (``sent``, ``cut``, ``fell_back``)."""
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def summary(self):
        """The counts as a phrase for the call's log line ("" when nothing coalesced)."""
        if not self.sent:
            return ""
        text = f"; {self.cut} position(s) cut from the larger requests of {self.sent} group(s)"
        return text + (f", {self.fell_back} fetched alone after their group's gave none"
                       if self.fell_back else "")


def _tangent(ra, dec):
    """Arcseconds east and north of the first position's right ascension and the mean
    declination (a local flat approximation; right ascension wraps at 0)."""
    dec0 = float(np.mean(dec))
    x = ((ra - ra[0] + 180.0) % 360.0 - 180.0) * math.cos(math.radians(dec0)) * 3600.0
    return x, (dec - dec0) * 3600.0


def coalesce_span(coalesce):
    """The span within which positions share one request, from a ``coalesce`` argument.

    Parameters
    ----------
    coalesce : bool, float, `~astropy.units.Quantity` or None
        False or 0: off; True: `DEFAULT_COALESCE_SPAN`; a number: arcminutes; an
        angle; None: ``conf.ps1_coalesce_arcmin`` (0, off, unless configured).

    Returns
    -------
    float
        Arcseconds (0 when off).

    Raises
    ------
    ValueError
        If the span is negative or larger than `MAX_COALESCE_SPAN`, or not an angle.

    Examples
    --------
    >>> coalesce_span(True), coalesce_span(2), coalesce_span(False)
    (60.0, 120.0, 0.0)
    """
    if coalesce is None:
        coalesce = float(conf.ps1_coalesce_arcmin)
    if coalesce is False:
        return 0.0
    if coalesce is True:
        return float(DEFAULT_COALESCE_SPAN.to_value(u.arcsec))
    try:
        span = (u.Quantity(coalesce, u.arcmin) if not isinstance(coalesce, u.Quantity)
                else coalesce).to_value(u.arcsec)
    except (u.UnitsError, TypeError, ValueError):
        raise ValueError(f"coalesce must be True, False, arcminutes or an angle, got "
                         f"{coalesce!r}") from None
    if not 0.0 <= span <= MAX_COALESCE_SPAN.to_value(u.arcsec):
        raise ValueError(f"coalesce span {span / 60.0:g} arcmin is outside [0, "
                         f"{MAX_COALESCE_SPAN.to_value(u.arcmin):g}] arcmin")
    return float(span)


def _chunks(indices):
    """``indices`` in chunks of ``conf.ps1_chunk_size`` (one listing request each)."""
    size = max(1, int(conf.ps1_chunk_size))
    return [indices[k:k + size] for k in range(0, len(indices), size)]


def _cutout(coord, surveys, outcomes, j):
    """The `~astro_mantis.MultiSurveyCutout` of position ``j`` from the call's outcomes."""
    images, missing, status, flags = {}, [], {}, MantisFlag.NONE
    for s in surveys:
        kind, image, detail = outcomes[s.name][j]
        status[s.name] = kind.text(detail)
        if image is not None:
            images[s.name] = image
            continue
        missing.append(s.name)
        flags |= s.flag
        flags |= (MantisFlag.OUT_OF_FOOTPRINT if kind is FetchStatus.OUT_OF_FOOTPRINT
                  else MantisFlag.FETCH_FAILED)
    return MultiSurveyCutout(coord, images, missing, flags, status)


# ---------------------------------------------------------------------------- engine
class CutoutFetcher:
    """Fetch GALEX, Pan-STARRS and unWISE cutouts for sky positions.

    The engine behind `Mantis <astro_mantis.Mantis>` and
    `~astro_mantis.add_redshift_columns`; use the shared instance `fetcher`. Service
    URLs, time limits, retries and connections per host come from
    `astro_mantis.conf`, read at call time.
    """

    def __init__(self):
        #: HTTP requests sent by the last `get_cutouts` call (retries included).
        self.last_request_count = None

    # -- public API -----------------------------------------------------------
    def get_cutouts(self, coordinates, surveys=DEFAULT_SURVEYS, cache=True, progress=None,
                    coalesce=None, cancel=None):
        """Fetch the cutouts of every survey at every position.

        Parameters
        ----------
        coordinates : `~astropy.coordinates.SkyCoord`
            One position or an array of them, any frame convertible to ICRS.
        surveys : str or sequence of str
            Survey names (see `astro_mantis.surveys.SURVEYS`), default all three; one
            name alone (``"galex"``) asks for that survey
            (`~astro_mantis.surveys.get_surveys`).
        cache : bool
            Read and write the on-disk cache (``conf.cache_dir``). With False, every
            cutout is fetched and nothing is written.
        progress : bool or callable, optional
            True shows a progress bar, False hides it; default (None): shown on a
            terminal (standard error is one, or a Jupyter kernel runs the code), for
            more than 10 distinct valid positions (`astro_mantis.progress`). A
            callable is called with 1 each time a position's cutouts are all in
            (fetched, cached or failed) instead, e.g. a `tqdm.tqdm` bar's ``update``.
        coalesce : bool, float or `~astropy.units.Quantity`
            Let Pan-STARRS positions of one skycell that lie within a square of this
            span share one larger ``fitscut.cgi`` request per band, cut locally into
            their cutouts (the same pixels, WCS, flags and statuses as their own
            requests give; :ref:`cutouts-coalescing`). True: 1 arcmin
            (`DEFAULT_COALESCE_SPAN`); a number: arcminutes; an angle; False: every
            position is fetched alone; None (the default): ``conf.ps1_coalesce_arcmin``
            (0, off, unless configured).
        cancel : `threading.Event`, optional
            Set from another thread, it stops the call within a request's time: the
            requests not sent yet are dropped, those under way are answered (and what
            they bring is cached), and `FetchCancelled` is raised. A KeyboardInterrupt
            in the calling thread stops it the same way.

        Returns
        -------
        `~astro_mantis.MultiSurveyCutout` or list of them
            A scalar position gives one cutout. An array gives a list of the same
            length and order: invalid positions and failed fetches are flagged in each
            cutout's ``flags``, ``missing`` and ``status``, never dropped.

        Raises
        ------
        TypeError
            If ``coordinates`` is not a `~astropy.coordinates.SkyCoord`.
        ValueError
            If a scalar position is NaN or out of range, a survey name is unknown, or
            ``coalesce`` is not a span in [0, 10] arcmin.
        FetchCancelled
            If ``cancel`` was set before the call ended.
        """
        span = coalesce_span(coalesce)
        icrs, scalar, pos = _read_positions(coordinates)
        survey_objs = get_surveys(surveys)
        first_of = pos.first_of()  # duplicated positions are fetched once
        unique = np.flatnonzero(first_of == np.arange(len(pos)))
        outcomes = self._fetch_all(survey_objs, pos.ra, pos.dec, unique, cache, progress, span,
                                   cancel)
        if callable(progress) and len(pos) > len(unique):  # invalid and repeated positions
            progress(len(pos) - len(unique))
        bad = {s.name: FetchStatus.BAD_COORDINATE.text() for s in survey_objs}
        out = [_cutout(icrs[i], survey_objs, outcomes, first_of[i]) if pos.good[i] else
               MultiSurveyCutout(icrs[i], {}, list(bad), MantisFlag.BAD_COORDINATE, bad)
               for i in range(len(pos))]
        return out[0] if scalar else out

    def plan(self, coordinates, surveys=DEFAULT_SURVEYS, cache=True):
        """What `get_cutouts` would fetch and roughly how long it would take; sends nothing.

        Parameters
        ----------
        coordinates : `~astropy.coordinates.SkyCoord`
            Positions (invalid ones are not counted).
        surveys : str or sequence of str
            Survey names (one name alone: that survey).
        cache : bool
            Count what the on-disk cache already holds (for the configured services).

        Returns
        -------
        `~astro_mantis.fetch.FetchPlan`
        """
        from urllib.parse import urlsplit

        _, _, pos = _read_positions(coordinates)
        pairs = _distinct(pos)
        plan = FetchPlan(n_positions=int(np.sum(pos.good)), n_unique=len(pairs))
        cache_obj = CutoutCache() if cache else None
        nconn = max(1, int(conf.max_connections_per_host))
        for survey in get_surveys(surveys):
            hit = out = 0
            todo = []
            for r, d in pairs:
                if not survey.in_footprint(r, d):
                    out += 1
                    continue
                if cache_obj is not None:
                    entry = cache_obj.path(survey.name, survey.cache_key(r, d))
                    if entry.exists():
                        value = cache_obj.load(survey.name, survey.cache_key(r, d),
                                               survey.source)
                        if value is CutoutCache.NOT_COVERED:
                            out += 1
                            continue
                        if value is not None:
                            hit += 1
                            continue
                todo.append((r, d))
            plan.cached[survey.name], plan.not_covered[survey.name] = hit, out
            plan.to_fetch[survey.name] = len(todo)
            host = urlsplit(survey.base_url).netloc or survey.base_url
            if survey.needs_listing:
                nreq = len(_chunks(todo)) + len(todo) * len(survey.bands)
            else:
                nreq = len(todo) * (len(survey.image_requests(*todo[0])) if todo else 1)
            plan.requests[host] = plan.requests.get(host, 0) + nreq
        plan.seconds = max([n * PLAN_SECONDS_PER_REQUEST / nconn
                            for n in plan.requests.values()] or [0.0])
        return plan

    def query_payload(self, coordinates, surveys=DEFAULT_SURVEYS, cache=True):
        """The requests `get_cutouts` would send first, sending none.

        For the Legacy Surveys layers these are the image requests themselves; for
        Pan-STARRS, whose image file names come from its listing service, they are
        the ``ps1filenames.py`` listing requests (one per ``conf.ps1_chunk_size``
        positions), after which five band images per covered position follow.
        Positions the cache already answers, invalid positions and positions outside
        a survey's static footprint send nothing.

        Parameters
        ----------
        coordinates : `~astropy.coordinates.SkyCoord` or str
            Positions.
        surveys : str or sequence of str
            Survey names (one name alone: that survey).
        cache : bool
            Leave out what the on-disk cache holds.

        Returns
        -------
        list of `~astro_mantis.surveys.Request`
            Each with ``method``, ``url``, ``params``, ``data`` and ``files``
            (``full_url`` gives a GET request's whole URL).
        """
        _, _, pos = _read_positions(coordinates)
        pairs = _distinct(pos)
        cache_obj = CutoutCache() if cache else None
        out = []
        for survey in get_surveys(surveys):
            todo = []
            for r, d in pairs:
                if not survey.in_footprint(r, d):
                    continue
                if cache_obj is not None and cache_obj.load(
                        survey.name, survey.cache_key(r, d), survey.source) is not None:
                    continue
                todo.append((r, d))
            if survey.needs_listing:
                out += [survey.listing_request(chunk) for chunk in _chunks(todo)]
            else:
                for r, d in todo:
                    out += survey.image_requests(r, d)
        return out

    def get_image_list(self, coordinates, surveys=DEFAULT_SURVEYS):
        """The URLs of the images `get_cutouts` would fetch (no cache, no download).

        Pan-STARRS file names come from its listing service, so this sends the
        ``ps1filenames.py`` listing requests (one per chunk of positions); nothing else
        is requested. Invalid positions and positions outside a survey's footprint
        contribute no URL.

        Parameters
        ----------
        coordinates : `~astropy.coordinates.SkyCoord`
            Scalar or array.
        surveys : str or sequence of str
            Survey names (one name alone: that survey).

        Returns
        -------
        list of str
        """
        _, _, pos = _read_positions(coordinates)
        ra, dec = pos.ra, pos.dec
        urls = []
        fetcher = self._fetcher()
        try:
            for survey in get_surveys(surveys):
                idx = [i for i in np.flatnonzero(pos.good) if survey.in_footprint(ra[i], dec[i])]
                listings = self._listings(fetcher, survey, ra, dec, idx) if survey.needs_listing \
                    else {i: None for i in idx}
                for i in idx:
                    if survey.needs_listing and listings.get(i) is None:
                        continue
                    urls += [r.full_url for r in
                             survey.image_requests(ra[i], dec[i], listing=listings[i])]
        finally:
            fetcher.close()
        return urls

    # -- internals ---------------------------------------------------------------
    @staticmethod
    def _fetcher():
        return _Fetcher(conf.max_connections_per_host, conf.retries, conf.timeout, conf.backoff)

    def _listings(self, fetcher, survey, ra, dec, idx):
        """Blocking listing of positions ``idx`` (used by `get_image_list`)."""
        out = {}
        futures = []
        for chunk in _chunks(list(idx)):
            positions = [(ra[i], dec[i]) for i in chunk]
            check = _ListingCheck(survey, positions)
            futures.append((chunk, check,
                            fetcher.submit(survey.listing_request(positions), check)))
        for chunk, check, fut in futures:
            fut.result()  # raises when every attempt failed
            out.update(zip(chunk, check.entries))
        return out

    def _fetch_all(self, surveys, ra, dec, unique, cache, progress, span=0.0, cancel=None):
        """Fetch every (survey, position of ``unique``); returns the `_Ledger` outcomes,
        ``{survey: {index: (FetchStatus, image or None, detail)}}``. Positions within
        ``span`` arcseconds may share requests (`_Coalescer`); setting ``cancel`` stops
        the call (`FetchCancelled`)."""
        ledger = _Ledger(surveys, len(unique), progress)
        fetcher = self._fetcher()
        coalescer = _Coalescer(span)
        try:
            _Call(fetcher, CutoutCache() if cache else None, ra, dec, ledger,
                  coalescer).run(surveys, unique, cancel)
        finally:
            fetcher.close()
            ledger.close()
        n = ledger.counts()
        log.info(f"cutouts: {len(unique)} position(s) x {len(surveys)} survey(s); "
                 f"{n[FetchStatus.FETCHED]} fetched, {n[FetchStatus.CACHED]} from cache, "
                 f"{n[FetchStatus.OUT_OF_FOOTPRINT]} not covered, "
                 f"{n[FetchStatus.FAILED]} failed; {fetcher.nrequests} HTTP request(s)"
                 f"{coalescer.summary()}")
        self.last_request_count = fetcher.nrequests
        return ledger.outcomes


#: The shared engine (`Mantis <astro_mantis.Mantis>` and the table job use it).
fetcher = CutoutFetcher()
