# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The footprint index of a directory of survey tiles: which file holds which band where.

A *tile* is a FITS image whose header says everything: a celestial WCS, the band
(``BAND``, ``FILTER`` or ``FPA.FILTER``, or failing those the file name) and the unit
(``BUNIT``; none means the survey's own unit). Files holding the same band of the same
pixel grid (the same WCS cards and shape) form one *grid*: the five band files of a
Pan-STARRS skycell, the W1 and W2 coadds of an unWISE tile, the NUV and FUV intensity
maps of a GALEX tile. A cube of several bands (planes named by ``BAND0``, ``BAND1`` ...)
is a grid on its own.

`TileIndex` reads the headers of every FITS file under a directory once, and keeps what
it learnt in a small JSON file (the *index*), keyed by each file's path, size and
modification time. Opening the index again reads no header unless a file was added,
changed or removed; then only those files are read again.
"""
import hashlib
import json
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits

from ..atomic import atomic_open
from ..logger import log
from ..surveys import get_survey
from ..surveys.core import celestial_wcs, wcs_cards

__all__ = ["TileIndex", "Grid", "TILE_SUFFIXES", "default_index_dir", "read_tile_header",
           "band_of", "is_tile_name"]

#: File names read as tiles (case-insensitive).
TILE_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz")
#: Version of the index file layout; an index of another version is rebuilt. (Version 2
#: keeps a tile's legacy ``PC00i00j``/``CD00i00j`` cards in its grid, as ``PCi_j``/``CDi_j``.)
INDEX_VERSION = 2
#: WCS keywords that define a pixel grid (what makes two files share one).
_GRID_KEY = re.compile(r"^(WCSAXES|CTYPE[12]|CRVAL[12]|CRPIX[12]|CDELT[12]|CUNIT[12]|CROTA2|"
                       r"CD[12]_[12]|PC[12]_[12]|PV[12]_\d+|RADESYS|RADECSYS|EQUINOX|LONPOLE|"
                       r"LATPOLE|A_\w+|B_\w+|AP_\w+|BP_\w+)$")
#: Band spellings beyond the band names themselves, per survey (header values and
#: file-name tokens; compared in lower case).
_BAND_ALIASES = {
    "galex": {"1": "NUV", "n": "NUV", "nd": "NUV", "galex-nuv": "NUV",
              "2": "FUV", "f": "FUV", "fd": "FUV", "galex-fuv": "FUV"},
    "unwise": {"1": "W1", "wise2010-w1": "W1", "2": "W2", "wise2010-w2": "W2"},
    "panstarrs": {f"{p}{b}": b for b in "grizy" for p in ("ps1-", "panstarrs-", "ps1_")},
}
#: BUNIT spellings read as the survey's own unit (unWISE's nanomaggies are Vega-based).
_UNIT_SYNONYMS = {
    "unwise": {"nanomaggy", "nanomaggies", "nanomaggie", "nmgy", "nanomaggy_vega"},
    "panstarrs": {"counts", "count", "ct", "adu"},
    "galex": {"counts/s", "counts/sec", "count/s", "cps", "ct/s", "counts s-1"},
}


def default_index_dir():
    """Where indexes live unless told otherwise: ``<astropy cache>/astro_mantis/tile-index``."""
    from astropy.config import get_cache_dir_path

    return Path(get_cache_dir_path()) / "astro_mantis" / "tile-index"


def is_tile_name(name):
    """Whether a file name has one of the `TILE_SUFFIXES`."""
    low = name.lower()
    return low.endswith(TILE_SUFFIXES) and not low.startswith(".")


def band_of(survey, value):
    """The survey band a header value or file-name token names, or None.

    Parameters
    ----------
    survey : `~astro_mantis.surveys.Survey`
    value : str or int
        E.g. ``"g.00000"`` (Pan-STARRS ``FILTER``), ``1`` (GALEX or unWISE ``BAND``),
        ``"W2"``, ``"nuv"``.

    Returns
    -------
    str or None
    """
    text = str(value).strip().lower()
    if not text:
        return None
    for band in survey.bands:
        if text == band.lower():
            return band
    aliases = dict(_BAND_ALIASES.get(survey.name, {}))
    aliases.update({k.lower(): v for k, v in getattr(survey, "band_aliases", {}).items()})
    if text in aliases:
        return aliases[text]
    if survey.name == "panstarrs" and re.fullmatch(r"[grizy]\.0+", text):
        return text[0]  # the stacks' FILTER = 'g.00000'
    return None


def _band_from_header(survey, header):
    for key in ("BAND", "FILTER", "FPA.FILTER", "FILTNAM", "FILTER1"):
        if key in header:
            band = band_of(survey, header[key])
            if band is not None:
                return band
    return None


def _band_from_name(survey, name):
    tokens = [t for t in re.split(r"[._\-\s]+", name.lower()) if t]
    found = {band_of(survey, t) for t in tokens} - {None}
    return found.pop() if len(found) == 1 else None


def _unit_scale(survey, header):
    """Factor from the tile's ``BUNIT`` to the survey's unit (1 without BUNIT)."""
    text = str(header.get("BUNIT", "") or "").strip()
    if not text or text.lower() in _UNIT_SYNONYMS.get(survey.name, ()):
        return 1.0
    unit = u.Unit(text, parse_strict="silent")
    if isinstance(unit, u.UnrecognizedUnit):
        raise ValueError(f"BUNIT {text!r} is not a unit astropy reads")
    try:
        return float((1 * unit).to_value(survey.unit))
    except u.UnitConversionError:
        raise ValueError(f"BUNIT {text!r} does not convert to {survey.name}'s unit "
                         f"{survey.unit}") from None


def _grid_cards(header):
    """The WCS cards defining the pixel grid, as header text (the grid's identity).

    Legacy ``PC00i00j``/``CD00i00j`` matrix cards (real Pan-STARRS skycells carry
    ``PC001001 = -1`` with a positive ``CDELT1``) are kept as ``PCi_j``/``CDi_j``
    (`~astro_mantis.surveys.core.wcs_cards`).
    """
    return "".join(card.image for card in wcs_cards(header, _GRID_KEY))


def _unit_xyz(ra, dec):
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


def _geometry(wcs, ny, nx):
    """Centre (ra, dec), radius (deg) to the farthest pixel corner, and pixel scale matrix."""
    xc, yc = (nx - 1) / 2.0, (ny - 1) / 2.0
    xs = np.array([xc, -0.5, nx - 0.5, -0.5, nx - 0.5, xc, xc, -0.5, nx - 0.5])
    ys = np.array([yc, -0.5, -0.5, ny - 0.5, ny - 0.5, -0.5, ny - 0.5, yc, yc])
    ra, dec = wcs.all_pix2world(xs, ys, 0)
    if not np.all(np.isfinite(ra) & np.isfinite(dec)):
        raise ValueError("the WCS does not map the image corners to the sky")
    xyz = _unit_xyz(ra, dec)
    cosines = np.clip(xyz[1:] @ xyz[0], -1.0, 1.0)
    radius = float(np.degrees(np.arccos(cosines.min())))
    return float(ra[0]) % 360.0, float(dec[0]), radius


def read_tile_header(path, survey):
    """Index entries of one FITS file: one per band it holds.

    Parameters
    ----------
    path : str or path-like
        The file.
    survey : `~astro_mantis.surveys.Survey`
        The survey its directory belongs to (names the bands and the unit).

    Returns
    -------
    list of dict
        JSON-able entries: ``hdu``, ``plane`` (None for a 2-D image), ``band``, ``shape``
        (ny, nx), ``grid`` (the WCS cards), ``center``, ``radius`` (deg), ``scale``
        (unit factor), ``zeropoint``, ``exptime``, ``bscale``, ``bzero``, ``blank``,
        ``bsoften``, ``boffset``, ``compressed``.

    Raises
    ------
    ValueError
        If no HDU is an image with a celestial WCS, a band cannot be told, or the unit
        does not convert; the message says which.
    """
    path = Path(path)
    out = []
    problems = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
            for k, hdu in enumerate(hdul):
                if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
                    continue
                header = hdu.header
                naxis = int(header.get("ZNAXIS", header.get("NAXIS", 0))) \
                    if isinstance(hdu, fits.CompImageHDU) else int(header.get("NAXIS", 0))
                if naxis < 2:
                    continue
                shape = tuple(int(n) for n in hdu.shape)
                if len(shape) not in (2, 3):
                    problems.append(f"HDU {k}: {len(shape)}-D image")
                    continue
                try:
                    wcs = celestial_wcs(header)
                except Exception as exc:
                    problems.append(f"HDU {k}: unreadable WCS ({exc})")
                    continue
                if wcs.naxis != 2 or not wcs.has_celestial:
                    problems.append(f"HDU {k}: no celestial WCS")
                    continue
                ny, nx = shape[-2:]
                center_ra, center_dec, radius = _geometry(wcs, ny, nx)
                scale = _unit_scale(survey, header)
                planes = _planes(survey, header, shape, path.name, k)
                compressed = isinstance(hdu, fits.CompImageHDU)
                for plane, band in planes:
                    zps = survey.zeropoints(header)
                    zp = zps[survey.bands.index(band)]
                    if not np.isfinite(zp) and "MAGZP" in header:
                        zp = float(header["MAGZP"])
                    exptime = header.get("EXPTIME")
                    out.append({
                        "hdu": k, "plane": plane, "band": band, "shape": [ny, nx],
                        "grid": _grid_cards(header), "center": [center_ra, center_dec],
                        "radius": radius, "scale": scale,
                        "zeropoint": float(zp) if np.isfinite(zp) else None,
                        "exptime": float(exptime) if isinstance(exptime, (int, float)) else None,
                        # astropy applies the scaling of compressed HDUs itself
                        "bscale": 1.0 if compressed else float(header.get("BSCALE", 1.0)),
                        "bzero": 0.0 if compressed else float(header.get("BZERO", 0.0)),
                        "blank": (int(header["BLANK"]) if "BLANK" in header
                                  and int(header.get("BITPIX", -32)) > 0 and not compressed
                                  else None),
                        "bsoften": (float(header["BSOFTEN"]) if "BSOFTEN" in header
                                    and "BOFFSET" in header else None),
                        "boffset": (float(header["BOFFSET"]) if "BSOFTEN" in header
                                    and "BOFFSET" in header else None),
                        "compressed": compressed,
                    })
    if not out:
        why = "; ".join(problems) or "no image HDU"
        raise ValueError(f"not a {survey.name} tile: {why}")
    return out


def _planes(survey, header, shape, name, k):
    """(plane, band) pairs of one image HDU (plane None for a 2-D image)."""
    if len(shape) == 2:
        band = _band_from_header(survey, header) or _band_from_name(survey, name)
        if band is None:
            raise ValueError(
                f"cannot tell which {survey.name} band HDU {k} holds: no BAND or FILTER "
                f"keyword naming one of {', '.join(survey.bands)} and no band in the file "
                f"name; add e.g. BAND = '{survey.bands[0]}' to its header")
        return [(None, band)]
    nplanes = shape[0]
    names = [header.get(f"BAND{i}") for i in range(nplanes)]
    if nplanes == 1 and names[0] is None:
        return [(0, _planes(survey, header, shape[1:], name, k)[0][1])]
    if all(n is not None for n in names):
        bands = [band_of(survey, n) for n in names]
        if None in bands:
            raise ValueError(f"HDU {k}: BANDn keywords {names} do not all name "
                             f"{survey.name} bands ({', '.join(survey.bands)})")
    elif nplanes == len(survey.bands):
        bands = list(survey.bands)
    else:
        raise ValueError(f"HDU {k}: a cube of {nplanes} planes without BAND0, BAND1 ... "
                         f"keywords; expected {len(survey.bands)} planes in the order "
                         f"{', '.join(survey.bands)}")
    return list(enumerate(bands))


class Grid:
    """One pixel grid of a survey's tiles and the file (and HDU, plane) of each band.

    Attributes
    ----------
    survey : str
    shape : (int, int)
        ``(ny, nx)``.
    cards : str
        The grid's WCS cards as header text.
    center : (float, float)
        RA, Dec of the central pixel (deg).
    radius : float
        Largest distance from the centre to a pixel corner (deg).
    bands : dict
        Band → ``(path, entry)``; ``entry`` is the dict
        `~astro_mantis.sources.tileindex.read_tile_header` made.
    """

    def __init__(self, survey, shape, cards, center, radius):
        self.survey = survey
        self.shape = tuple(shape)
        self.cards = cards
        self.center = tuple(center)
        self.radius = float(radius)
        self.bands = {}
        self._wcs = None
        self._name = None

    @property
    def wcs(self):
        """Celestial `~astropy.wcs.WCS` of the grid (built on first use)."""
        if self._wcs is None:
            self._wcs = celestial_wcs(fits.Header.fromstring(self.cards))
            self._wcs.array_shape = self.shape
        return self._wcs

    @property
    def name(self):
        """A short label: the first band's file name."""
        if self._name is None:
            self._name = Path(next(iter(self.bands.values()))[0]).name
        return self._name

    def __repr__(self):
        return (f"<Grid {self.survey} {self.name} {self.shape[1]}x{self.shape[0]} "
                f"bands={','.join(self.bands)} ra={self.center[0]:.5f} "
                f"dec={self.center[1]:.5f}>")


class TileIndex:
    """The persisted footprint index of one survey's tile directory.

    Parameters
    ----------
    directory : str or path-like
        Directory searched recursively for FITS files
        (`~astro_mantis.sources.tileindex.TILE_SUFFIXES`).
    survey : str
        Survey name (``"panstarrs"``, ``"galex"``, ``"unwise"``).
    index_dir : str or path-like, optional
        Where the index file is kept (default
        `~astro_mantis.sources.tileindex.default_index_dir`); one file per
        survey and directory, named after both.

    Attributes
    ----------
    grids, problems, stats
        The pixel grids found (a list of `Grid`); the files not used as tiles (relative
        path → why); what the last `refresh` did (a dict of ``reused``, ``read`` and
        ``removed`` file counts, and whether the index file was ``written``).

    Raises
    ------
    FileNotFoundError
        If ``directory`` does not exist.
    ValueError
        If ``survey`` is unknown.
    """

    def __init__(self, directory, survey, index_dir=None):
        self.survey = get_survey(survey)
        self.directory = Path(directory).expanduser().resolve()
        if not self.directory.is_dir():
            raise FileNotFoundError(f"{self.survey.name} tile directory {str(directory)!r} "
                                    "does not exist or is not a directory")
        self.index_dir = Path(index_dir).expanduser() if index_dir is not None \
            else default_index_dir()
        digest = hashlib.sha1(str(self.directory).encode()).hexdigest()[:16]
        self.path = self.index_dir / f"{self.survey.name}-{digest}.json"
        self.grids = []
        self.problems = {}
        self.stats = {}
        self.refresh()

    def __repr__(self):
        return (f"<TileIndex {self.survey.name} {str(self.directory)!r}: {len(self.grids)} "
                f"grid(s), {len(self.problems)} file(s) skipped>")

    # ------------------------------------------------------------------ building
    def _scan(self):
        """Relative path → (size, mtime_ns) of every tile-named file under the directory."""
        found = {}
        for root, dirs, files in os.walk(self.directory):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                if not is_tile_name(name):
                    continue
                full = os.path.join(root, name)
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                found[os.path.relpath(full, self.directory)] = (st.st_size, st.st_mtime_ns)
        return found

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return {}
        except Exception as exc:
            log.warning(f"tile index {self.path} is unreadable ({exc}); rebuilding it")
            return {}
        if data.get("version") != INDEX_VERSION or data.get("survey") != self.survey.name \
                or data.get("directory") != str(self.directory):
            return {}
        return data.get("files", {})

    def refresh(self):
        """Bring the index up to date with the directory; returns ``stats``.

        Files whose size and modification time match the index are not opened; new and
        changed files have their headers read; removed files are dropped. The index file
        is rewritten (atomically) only when something changed.
        """
        files = self._scan()
        known = self._load()
        out, read, reused = {}, 0, 0
        for rel, (size, mtime) in sorted(files.items()):
            old = known.get(rel)
            if old is not None and old.get("size") == size and old.get("mtime_ns") == mtime:
                out[rel] = old
                reused += 1
                continue
            read += 1
            try:
                entries = read_tile_header(self.directory / rel, self.survey)
                out[rel] = {"size": size, "mtime_ns": mtime, "entries": entries}
            except Exception as exc:
                out[rel] = {"size": size, "mtime_ns": mtime, "error": f"{exc}"}
        removed = len(set(known) - set(files))
        written = bool(read or removed or not self.path.exists())
        if written:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            doc = {"version": INDEX_VERSION, "survey": self.survey.name,
                   "directory": str(self.directory), "files": out}
            with atomic_open(self.path, "w", fsync=False, encoding="utf-8") as fh:
                json.dump(doc, fh)
        self._build(out)
        self.stats = {"reused": reused, "read": read, "removed": removed, "written": written}
        bad = {rel: rec["error"] for rel, rec in out.items() if "error" in rec}
        new_bad = {rel: why for rel, why in bad.items() if rel not in self.problems}
        self.problems = bad
        for rel, why in list(new_bad.items())[:10]:
            log.warning(f"{self.survey.name} tiles: skipping {rel}: {why}")
        if len(new_bad) > 10:
            log.warning(f"{self.survey.name} tiles: {len(new_bad) - 10} more file(s) skipped "
                        "(see TileIndex.problems)")
        if not self.grids:
            log.warning(f"no usable {self.survey.name} tile under {self.directory}")
        return self.stats

    def _build(self, files):
        grids = {}
        for rel, rec in files.items():
            for entry in rec.get("entries", ()):
                key = (entry["grid"], tuple(entry["shape"]))
                grid = grids.get(key)
                if grid is None:
                    grid = grids[key] = Grid(self.survey.name, entry["shape"], entry["grid"],
                                             entry["center"], entry["radius"])
                if entry["band"] in grid.bands:
                    log.warning(f"{self.survey.name} tiles: {rel} repeats band "
                                f"{entry['band']} of {grid.bands[entry['band']][0]}; "
                                "keeping the latter")
                    continue
                grid.bands[entry["band"]] = (str(self.directory / rel), entry)
        self.grids = list(grids.values())
        if self.grids:
            centers = np.array([g.center for g in self.grids])
            self._xyz = _unit_xyz(centers[:, 0], centers[:, 1])
            self._radius = np.array([g.radius for g in self.grids])
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self._xyz)
        else:
            self._xyz = np.zeros((0, 3))
            self._radius = np.zeros(0)
            self._tree = None

    # ------------------------------------------------------------------ look-up
    def candidates(self, ra, dec, margin=0.0):
        """Grids whose footprint may hold each position.

        Parameters
        ----------
        ra, dec : array-like
            Degrees (finite).
        margin : float
            Degrees added to every grid's radius.

        Returns
        -------
        list of list of int
            Per position, indices into ``grids`` whose centre lies within their radius
            plus ``margin`` of it (a superset of the grids containing it).
        """
        ra = np.atleast_1d(np.asarray(ra, float))
        dec = np.atleast_1d(np.asarray(dec, float))
        if self._tree is None or not len(ra):
            return [[] for _ in range(len(ra))]
        xyz = _unit_xyz(ra, dec)
        reach = min(float(self._radius.max()) + margin, 180.0)
        chord = 2.0 * math.sin(math.radians(reach) / 2.0) * (1 + 1e-9) + 1e-12
        hits = self._tree.query_ball_point(xyz, chord, return_sorted=False)
        if len(self.grids) == 1 or np.ptp(self._radius) == 0:
            return [sorted(h) for h in hits]  # every grid has the largest radius
        counts = np.fromiter((len(h) for h in hits), dtype=int, count=len(hits))
        flat = np.fromiter((g for h in hits for g in h), dtype=int, count=int(counts.sum()))
        owner = np.repeat(np.arange(len(hits)), counts)
        cosines = np.clip(np.einsum("ij,ij->i", self._xyz[flat], xyz[owner]), -1.0, 1.0)
        keep = np.degrees(np.arccos(cosines)) <= self._radius[flat] + margin + 1e-9
        out = [[] for _ in range(len(hits))]
        for i, g in zip(owner[keep].tolist(), flat[keep].tolist()):
            out[i].append(g)
        return [sorted(h) for h in out]
