# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The SDSS ``spAll`` summary file: locate it with ``sdss-access``, fetch it once, read it fast.

An ``spAll`` file lists every spectrum of a reduction (``run2d``) of a data release,
one row each, with its position, redshift, class and warning flags: the way to match a
large table without thousands of SkyServer queries. The files are large (gigabytes), so

* `spall_path` prefers the **lite** variant where the release has one
  (``spAll-lite-{run2d}.fits``, same rows, fewer columns) and falls back to the full
  file;
* a copy under ``$SAS_BASE_DIR`` (a local mirror of the SAS, laid out as
  ``sdss-access`` lays it out) is used as is, and so is a copy already in the
  astro_mantis download cache: neither touches the network;
* otherwise nothing is downloaded unless ``download=True`` is given: the file's size
  is asked for first (an HTTP ``HEAD``) and a
  `~astro_mantis.spectro.DownloadRequiredError` says how large it is. With
  ``download=True`` a warning gives the size, and `astropy.utils.data.download_file`
  fetches it into the astro_mantis cache (``pkgname="astro_mantis"``): written
  atomically, checked against the announced size, time-limited, and fetched once;
* `read_spall` opens it memory-mapped and reads only the columns it needs, not the
  hundreds of a full file: position, ``Z`` and the quality cut's columns for every row
  of the file, then ``PLATE``, ``MJD``, ``FIBERID``, ``RUN2D``, ``Z_ERR``, ``ZWARNING``
  and ``CLASS`` of the rows kept. Memory grows with the file's rows times the columns
  read (some tens of bytes a row with the default cut), not with the rows kept alone.

Paths and URLs come from ``sdss-access`` (``HttpAccess`` with the release's path
templates, ``remote_base = spectro.conf.sas_url``). Its own downloader is not used:
it has no time limit and leaves a partial file in place when a transfer breaks.
"""
import os
import threading
import time
import warnings

import numpy as np
from astropy.table import Table

from ..config import conf as mantis_conf
from ..exceptions import FetchError
from ..logger import log, log_request
from ..progress import progress_enabled, renamed_progress
from ..retry import RetryPolicy
from .exceptions import CatalogFileError, DownloadRequiredError
from .quality import QualityCut, _CaseInsensitive
from .sdss import SDSS_QUALITY, SPECOBJ_COLUMNS, sdss_specobjid

__all__ = ["spall_path", "read_spall", "spall_candidates", "check_fits_complete",
           "DEFAULT_RUN2D", "SPALL_QUALITY"]

#: The BOSS/eBOSS reduction whose spAll file each data release publishes.
DEFAULT_RUN2D = {9: "v5_4_45", 10: "v5_5_12", 11: "v5_6_5", 12: "v5_7_0", 13: "v5_9_0",
                 14: "v5_10_0", 15: "v5_10_0", 16: "v5_13_0", 17: "v5_13_2"}

#: Default quality cut of spAll files: that of SkyServer's ``SpecObj`` (a confident
#: galaxy redshift) plus the primary spectrum of each object, which is what the
#: ``SpecObj`` view holds.
SPALL_QUALITY = SDSS_QUALITY + " and specPrimary == 1"

# spAll columns (any of the names, first found) giving each SkyServer column
_SPALL_NAMES = {
    "ra": ("PLUG_RA", "RA", "FIBER_RA"),
    "dec": ("PLUG_DEC", "DEC", "FIBER_DEC"),
    "z": ("Z",),
    "zErr": ("Z_ERR", "ZERR"),
    "zWarning": ("ZWARNING",),
    "class": ("CLASS",),
    "plate": ("PLATE",),
    "mjd": ("MJD",),
    "fiberID": ("FIBERID",),
    "run2d": ("RUN2D",),
}


def _release(data_release):
    from .config import conf

    return int(conf.data_release if data_release is None else data_release)


def _http_access_class():
    """``sdss_access.HttpAccess``, imported quietly.

    Importing sdss-access reads two YAML files through sdsstools without closing them;
    the ResourceWarnings that follow are not ours to show (and pytest turns them into
    errors), so the import and the collection of those file objects happen here with
    ResourceWarning ignored.
    """
    import gc
    import sys

    if "sdss_access" not in sys.modules:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            import sdss_access  # noqa: F401

            gc.collect()
    from sdss_access import HttpAccess

    return HttpAccess


_ACCESS = {}
_ACCESS_LOCK = threading.Lock()


def _access(data_release):
    """An ``sdss_access.HttpAccess`` for the release, pointed at ``spectro.conf.sas_url``.

    Building one reads the release's path templates (a tenth of a second), so they are
    kept, one per release, SAS URL and ``$SAS_BASE_DIR`` (which sdss-access reads when
    it builds them).
    """
    from .config import conf

    remote = str(conf.sas_url).rstrip("/")
    key = (int(data_release), remote, os.environ.get("SAS_BASE_DIR"))
    with _ACCESS_LOCK:
        access = _ACCESS.get(key)
        if access is None:
            HttpAccess = _http_access_class()
            access = HttpAccess(release=f"DR{data_release}", verbose=False)
            access.remote(remote_base=remote)
            if len(_ACCESS) > 16:
                _ACCESS.clear()
            _ACCESS[key] = access
    return access


def _run2d_list(data_release, run2d):
    if run2d is None:
        if data_release not in DEFAULT_RUN2D:
            known = ", ".join(f"DR{k}: {v}" for k, v in DEFAULT_RUN2D.items())
            raise ValueError(f"no default spAll reduction for DR{data_release}; pass run2d= "
                             f"(astro-mantis match --run2d) (the defaults: {known})")
        return [DEFAULT_RUN2D[data_release]]
    if isinstance(run2d, str):
        return [run2d]
    return [str(r) for r in run2d]


def spall_candidates(data_release=None, run2d=None, lite=True):
    """The spAll files of a release and reduction, preferred first.

    Parameters
    ----------
    data_release : int, optional
        SDSS data release (default ``spectro.conf.data_release``).
    run2d : str, optional
        Reduction (default: the release's BOSS/eBOSS one, `DEFAULT_RUN2D`).
    lite : bool
        Put the lite variant first when the release's path templates have one.

    Returns
    -------
    list of dict
        ``{"name", "local", "url"}`` per file: a short name, the path under
        ``$SAS_BASE_DIR`` and the URL on ``spectro.conf.sas_url``.
    """
    dr = _release(data_release)
    access = _access(dr)
    (r2d,) = _run2d_list(dr, run2d if run2d is None or isinstance(run2d, str) else run2d[:1])
    templates = access.templates
    tries = []
    if lite:
        if "spAll-lite" in templates:
            tries.append(("spAll-lite", {"run2d": r2d}))
        elif "spAll-subset" in templates:
            tries.append(("spAll-subset", {"run2d": r2d, "subset": "lite"}))
    tries.append(("spAll", {"run2d": r2d}))
    out = []
    for name, kwargs in tries:
        try:
            local = access.full(name, **kwargs)
            url = access.url(name, **kwargs)
        except Exception as exc:  # sdss-access raises various errors for bad keywords
            log.debug(f"sdss-access cannot build {name} {kwargs}: {exc}")
            continue
        out.append({"name": os.path.basename(local), "local": local, "url": url})
    if not out:
        raise ValueError(f"sdss-access knows no spAll file for DR{dr} run2d={r2d!r}")
    return out


def check_fits_complete(path):
    """Raise `~astro_mantis.spectro.CatalogFileError` if a FITS file is truncated or unreadable.

    A FITS file is a whole number of 2880-byte blocks, and must hold all the data its
    HDU headers announce; every header is read (the check costs a few header reads,
    whatever the file size).

    Parameters
    ----------
    path : str or path-like
    """
    from astropy.io import fits
    from astropy.utils.exceptions import AstropyUserWarning

    size = os.path.getsize(path)
    if size == 0 or size % 2880:
        raise CatalogFileError(f"{path} is truncated or not a FITS file: {size} bytes is not a "
                               "whole number of 2880-byte FITS blocks; delete it and fetch it "
                               "again")
    try:
        with warnings.catch_warnings():
            # astropy warns "File may have been truncated"; the error below says more
            warnings.simplefilter("ignore", AstropyUserWarning)
            with fits.open(path, memmap=True, lazy_load_hdus=False) as hdul:
                for k in range(len(hdul)):
                    info = hdul.fileinfo(k)
                    end = info["datLoc"] + info["datSpan"]
                    if end > size:
                        raise CatalogFileError(
                            f"{path} is truncated: {size} bytes, but HDU {k} ends at byte "
                            f"{end}; delete it and fetch it again")
    except CatalogFileError:
        raise
    except Exception as exc:
        raise CatalogFileError(f"{path} is not a readable FITS file ({type(exc).__name__}: "
                               f"{exc}); delete it and fetch it again") from None


def _remote_size(url):
    """Size in bytes of a remote file (None if unknown); FileNotFoundError for 404."""
    import requests

    last = None
    policy = RetryPolicy()
    for _ in policy.attempts():
        t0 = time.perf_counter()
        try:
            resp = requests.head(url, timeout=mantis_conf.timeout, allow_redirects=True)
        except requests.exceptions.RequestException as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        log_request("HEAD", url, resp.status_code, 0, time.perf_counter() - t0)
        if resp.status_code == 404:
            raise FileNotFoundError(url)
        if policy.retryable(resp.status_code):
            last = f"HTTP {resp.status_code}"
            continue
        if resp.status_code != 200:
            raise FetchError(f"HTTP {resp.status_code} for {url}")
        length = resp.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else None
    raise policy.exhausted(last, f"for {url}")


def _size_text(size):
    if size is None:
        return "unknown size"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _download(url, progress=None):
    """Fetch ``url`` into the astro_mantis cache, checked; returns the cached path.

    Raises FileNotFoundError for HTTP 404, FetchError when all attempts fail.
    """
    import urllib.error

    from astropy.utils.data import clear_download_cache, download_file

    last = None
    policy = RetryPolicy()
    for _ in policy.attempts():
        t0 = time.perf_counter()
        try:
            path = download_file(url, cache=True, pkgname="astro_mantis",
                                 timeout=mantis_conf.timeout,
                                 show_progress=progress_enabled(progress))
        except urllib.error.HTTPError as exc:
            log_request("GET", url, exc.code, 0, time.perf_counter() - t0)
            if exc.code == 404:
                raise FileNotFoundError(f"{url} (HTTP 404)") from None
            if not policy.retryable(exc.code):
                raise FetchError(f"HTTP {exc.code} for {url}") from None
            last = f"HTTP {exc.code}"
            continue
        except (urllib.error.URLError, OSError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        log_request("GET", url, 200, os.path.getsize(path), time.perf_counter() - t0)
        try:
            check_fits_complete(path)
        except CatalogFileError as exc:
            clear_download_cache(url, pkgname="astro_mantis")
            last = str(exc)
            continue
        return path
    raise policy.exhausted(last, f"for {url}")


def _in_cache(url):
    from astropy.utils.data import CacheMissingWarning, is_url_in_cache

    with warnings.catch_warnings():  # an empty cache is not worth a warning
        warnings.simplefilter("ignore", CacheMissingWarning)
        return is_url_in_cache(url, pkgname="astro_mantis")


def _fetch(candidates, what, download, progress=None, large=True):
    """(local path, candidate) of the first candidate found locally, cached or remotely.

    A local copy under ``$SAS_BASE_DIR`` comes first, then the astro_mantis cache. For
    ``large`` files the remote size is asked for first and nothing is downloaded
    without ``download``; small files are downloaded directly.
    """
    from astropy.utils.data import download_file

    for c in candidates:
        if os.path.isfile(c["local"]):
            log.info(f"{what}: using the local SAS copy {c['local']}")
            return c["local"], c
    for c in candidates:
        if _in_cache(c["url"]):
            path = download_file(c["url"], cache=True, pkgname="astro_mantis")
            return path, c
    missing = []
    for c in candidates:
        try:
            if not large:
                return _download(c["url"], progress=progress), c
            size = _remote_size(c["url"])
        except FileNotFoundError:
            missing.append(c["url"])
            continue
        text = _size_text(size)
        if not download:
            raise DownloadRequiredError(
                f"{what} {c['name']} ({text}) is neither under SAS_BASE_DIR ({c['local']}) "
                f"nor in the astro_mantis download cache. Pass download=True "
                f"(astro-mantis match --download) to fetch it once from {c['url']}, or give "
                "the path of a copy you have.")
        log.warning(f"downloading {what} {c['name']} ({text}) from {c['url']} into the "
                    "astro_mantis cache; this is done once")
        return _download(c["url"], progress=progress), c
    raise FileNotFoundError(f"no {what} found: {', '.join(missing)} (HTTP 404)")


def spall_path(data_release=None, run2d=None, download=False, lite=True, progress=None,
               show_progress=None):
    """Local path of the spAll file of a data release, fetched once if asked.

    Parameters
    ----------
    data_release : int, optional
        SDSS data release (default ``spectro.conf.data_release``).
    run2d : str, optional
        Reduction (default: the release's BOSS/eBOSS reduction,
        `~astro_mantis.spectro.spall.DEFAULT_RUN2D`, e.g.
        ``"v5_13_2"`` for DR17; SDSS-I/II spectra are in the ``"26"``, ``"103"`` and
        ``"104"`` reductions).
    download : bool
        Download the file when it is neither local nor cached (it is large: see the
        module notes). Without it, a `~astro_mantis.spectro.DownloadRequiredError`
        gives its size and URL.
    lite : bool
        Prefer the lite variant.
    progress : bool, optional
        Show the download's progress bar (default: on a terminal).
    show_progress : bool, optional
        Deprecated name of ``progress``.

    Returns
    -------
    str
        Path of the local file (under ``$SAS_BASE_DIR`` or in the astro_mantis cache).

    Raises
    ------
    astro_mantis.spectro.DownloadRequiredError
        If the file would have to be downloaded and ``download`` is False.
    FileNotFoundError
        If the SAS has none of the candidate files.
    astro_mantis.exceptions.FetchError
        If the SAS cannot be reached after all retries.
    """
    progress = renamed_progress(progress, show_progress, "spall_path")
    return _spall_file(data_release, run2d, download, lite, progress)[0]


def _spall_file(data_release, run2d, download, lite=True, progress=None):
    """(local path, file name) of the spAll file; see `spall_path`."""
    candidates = spall_candidates(data_release, run2d, lite=lite)
    path, c = _fetch(candidates, f"the DR{_release(data_release)} spAll file", download,
                     progress)
    return path, c["name"]


def read_spall(path, quality=SPALL_QUALITY, run2d=None):
    """Read the spectra of an spAll file that pass a quality cut, as SkyServer columns.

    The file is memory-mapped and only the columns needed are read: the position, ``Z``
    and the quality cut's columns for every row of the file (memory grows with the
    file's rows), the other columns returned for the rows kept.

    Parameters
    ----------
    path : str or path-like
        An spAll(-lite) FITS file.
    quality : str, `~astro_mantis.spectro.QualityCut`, callable or None
        Quality cut over the file's columns (names case-insensitive, so SkyServer's
        names work: ``zWarning`` is ``ZWARNING``); a callable gets a mapping
        column name -> array (names case-insensitive; text as upper-case bytes, as in
        the FITS file) and returns a boolean mask; None keeps every spectrum.
        Rows without a valid position or a finite redshift are always dropped. Default
        `~astro_mantis.spectro.spall.SPALL_QUALITY`.
    run2d : str, optional
        Reduction written in the ``run2d`` column when the file has no ``RUN2D``
        (required then; ``astro-mantis match --spall FILE --run2d RUN2D``).

    Returns
    -------
    `~astropy.table.Table`
        The columns of `astro_mantis.spectro.sdss.SPECOBJ_COLUMNS`
        (``specObjID`` as uint64), one row per spectrum kept, in file order; ``meta``
        has ``file``, ``rows_in_file`` and ``rows_kept``.

    Raises
    ------
    astro_mantis.spectro.CatalogFileError
        If the file is truncated or not a FITS table.
    KeyError
        If a column needed is missing (the message lists those present).
    """
    from astropy.io import fits

    path = os.fspath(path)
    check_fits_complete(path)
    with fits.open(path, memmap=True, character_as_bytes=True) as hdul:
        hdu = next((h for h in hdul[1:] if isinstance(h, fits.BinTableHDU)), None)
        if hdu is None:
            raise CatalogFileError(f"{path} has no binary table: not an spAll file")
        data = hdu.data
        nrows = len(data)
        raw = _FieldGetter(data)
        cols = _CaseInsensitive(raw)  # normalised values, for the quality cut

        def pick(key, required=True):
            for name in _SPALL_NAMES[key]:
                if name.lower() in cols._lower:
                    return raw[cols._lower[name.lower()]]
            if required:
                raise KeyError(f"{path} has no {' / '.join(_SPALL_NAMES[key])} column; its "
                               f"columns are: {', '.join(cols.names)}")
            return None

        ra, dec, z = (np.asarray(pick(k), dtype=np.float64) for k in ("ra", "dec", "z"))
        with np.errstate(invalid="ignore"):
            keep = np.isfinite(ra) & np.isfinite(z) & (np.abs(dec) <= 90.0)
        if quality is not None:
            if callable(quality) and not isinstance(quality, QualityCut):
                mask = np.asarray(quality(cols), dtype=bool)
            else:
                cut = quality if isinstance(quality, QualityCut) else QualityCut(quality)
                mask = cut.evaluate(cols, n=nrows)
            if mask.shape != (nrows,):
                raise ValueError(f"the quality cut gave a mask of shape {mask.shape}, expected "
                                 f"({nrows},)")
            keep &= mask
        idx = np.flatnonzero(keep)
        out = Table()
        plate, mjd, fiber = (pick(k, required=False) for k in ("plate", "mjd", "fiberID"))
        r2d = pick("run2d", required=False)
        if r2d is None:
            if run2d is None:
                raise KeyError(f"{path} has no RUN2D column: pass run2d= (astro-mantis "
                               "match --run2d), the reduction the file holds")
            r2d_kept = np.full(idx.size, str(run2d))
        else:
            r2d_kept = np.char.strip(np.asarray(r2d[idx]).astype("U"))
        if plate is not None and mjd is not None and fiber is not None:
            plate_k = np.asarray(plate[idx], dtype=np.int64)
            mjd_k = np.asarray(mjd[idx], dtype=np.int64)
            fiber_k = np.asarray(fiber[idx], dtype=np.int64)
            specobjid = sdss_specobjid(plate_k, mjd_k, fiber_k, r2d_kept) if idx.size \
                else np.zeros(0, np.uint64)
        else:
            raise KeyError(f"{path} lacks PLATE, MJD or FIBERID; its columns are: "
                           f"{', '.join(cols.names)}")
        zerr = pick("zErr", required=False)
        zwarn = pick("zWarning", required=False)
        cls = pick("class", required=False)
        out["specObjID"] = np.asarray(specobjid, dtype=np.uint64)
        out["ra"] = ra[idx]
        out["dec"] = dec[idx]
        out["z"] = z[idx]
        out["zErr"] = (np.full(idx.size, np.nan) if zerr is None
                       else np.asarray(zerr[idx], dtype=np.float64))
        out["zWarning"] = (np.zeros(idx.size, np.int64) if zwarn is None
                           else np.asarray(zwarn[idx], dtype=np.int64))
        out["class"] = (np.full(idx.size, "") if cls is None
                        else np.char.strip(np.asarray(cls[idx]).astype("U")))
        out["plate"] = plate_k
        out["mjd"] = mjd_k
        out["fiberID"] = fiber_k
        out["run2d"] = r2d_kept
        del data
    out.meta.update({"file": path, "rows_in_file": int(nrows), "rows_kept": int(idx.size)})
    assert tuple(out.colnames) == SPECOBJ_COLUMNS
    return out


class _FieldGetter:
    """Columns of a FITS_rec, read one at a time (memory-mapped) and kept once read."""

    def __init__(self, data):
        self.data = data
        self.names = list(data.columns.names)
        self._cache = {}

    def keys(self):
        return self.names

    def __getitem__(self, name):
        if name not in self._cache:
            self._cache[name] = self.data.field(name)  # text stays bytes: no decoding
        return self._cache[name]
