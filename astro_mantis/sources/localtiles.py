# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""`LocalTiles`: survey cutouts cut from FITS tiles on local disks, not fetched.

The same `~astro_mantis.MultiSurveyCutout` objects as
`Mantis.get_cutouts <astro_mantis.MantisClass.get_cutouts>` (row-aligned, the same
``status`` texts, ``missing`` and `~astro_mantis.MantisFlag` bits), made from survey
images a user holds: Pan-STARRS stack skycells, unWISE coadds, GALEX intensity maps, or
any FITS mosaic with a celestial WCS and the survey's unit.

For each survey and position:

1. the survey's `~astro_mantis.sources.TileIndex` (built once, kept on disk, brought up
   to date when files change) names the pixel grids whose footprint holds the
   position;
2. among them, the one where the cutout is most complete is chosen: the largest share
   of the cutout inside the grid, times the share of the survey's bands the grid has;
   ties go to the grid whose edge is farthest. When the chosen cut holds missing
   pixels (NaN; zeros in GALEX and unWISE) another covering grid is cut too, and the
   one with more valid pixels kept;
3. the cutout is cut on the tile's own pixel grid, to the survey's size
   (`Survey.size <astro_mantis.surveys.Survey>` pixels: Pan-STARRS 170, GALEX and
   unWISE 32), with the tile's WCS (``CRPIX`` shifted) and NaN beyond the tile. A
   Pan-STARRS cutout starts where ``fitscut.cgi`` starts the service's
   (`~astro_mantis.surveys.panstarrs.fitscut_origin`), so it holds the service's
   pixels; GALEX and unWISE ones as `~astropy.nddata.Cutout2D` cuts (its
   ``overlap_slices``, ``mode="partial"``). Positions are read to 7 decimals of a
   degree, as the requests to the services send them. Only when a tile's pixel grid
   differs from the survey's (another pixel
   scale, a rotation) is it resampled with ``reproject.reproject_interp`` (bilinear)
   onto a north-up grid of the survey's pixel scale centred on the position, and
   multiplied by the ratio of pixel areas so that a pixel keeps its flux.

Positions no grid holds are "out of footprint", as are GALEX and unWISE cutouts
without a single finite non-zero pixel (the rule the network readers apply to the
viewer's answers).
"""
import math
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..fetch import FetchStatus
from ..flags import MantisFlag
from ..logger import log
from ..multicutout import MultiSurveyCutout
from ..positions import coordinate_positions, resolve_name
from ..surveys import DEFAULT_SURVEYS, SURVEYS, get_survey, get_surveys
from ..surveys.core import SurveyImage
from ..surveys.legacysurvey import LegacyViewerSurvey
from ..surveys.panstarrs import PanstarrsSurvey, decompress_asinh, fitscut_origin
from .tileindex import TileIndex

__all__ = ["LocalTiles"]

#: Relative tolerance under which a tile's pixel grid counts as the survey's own.
GRID_TOLERANCE = 1e-3
#: At most this many covering grids are cut for one position (the best first).
MAX_TRIES = 3


def _card(key, value):
    """One 80-character header card of a float value (free format, exact round trip)."""
    text = repr(float(value)).upper()
    if "." not in text and "E" not in text and "N" not in text:
        text += ".0"
    return f"{key:<8}= {text:>20}".ljust(80)[:80]


def _default_max_open_files():
    """Tile HDUs `LocalTiles` keeps open by default: a quarter of ``ulimit -n``, in [16, 512]."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY or soft <= 0:
            soft = 1 << 20
    except (ImportError, OSError, ValueError):  # pragma: no cover - not a POSIX system
        soft = 1024
    return int(min(512, max(16, soft // 4)))


class _OpenFiles:
    """A bounded set of open tile files (least recently used closed first)."""

    def __init__(self, max_open):
        self.max_open = max(1, int(max_open))
        self._open = OrderedDict()
        self._lock = threading.Lock()

    def pixels(self, path, entry):
        """The array (memory-mapped, unscaled) or section (compressed) of one HDU.

        A compressed HDU is opened without memory mapping: astropy refuses the section
        of a memory-mapped one whose header has ``BSCALE``, ``BZERO`` or ``BLANK``
        (fpack's integer tiles), and decompresses only the tiles a section touches
        either way.
        """
        key = (path, entry["hdu"])
        with self._lock:
            hit = self._open.get(key)
            if hit is not None:
                self._open.move_to_end(key)
                return hit[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            hdul = fits.open(path, memmap=not entry["compressed"], lazy_load_hdus=True,
                             do_not_scale_image_data=not entry["compressed"])
            try:
                hdu = hdul[entry["hdu"]]
                data = hdu.section if entry["compressed"] else hdu.data
            except Exception:
                hdul.close()
                raise
        if data is None:
            hdul.close()
            raise ValueError(f"{path} HDU {entry['hdu']} holds no data")
        with self._lock:
            self._open[key] = (hdul, data)
            while len(self._open) > self.max_open:
                _, (old, _) = self._open.popitem(last=False)
                old.close()
        return data

    def close(self):
        with self._lock:
            for hdul, _ in self._open.values():
                hdul.close()
            self._open.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class _GridPlan:
    """What cutting a grid for a survey needs, worked out once per grid."""

    def __init__(self, grid, survey):
        self.grid = grid
        wcs = grid.wcs
        m = wcs.pixel_scale_matrix * 3600.0  # arcsec per pixel
        s = survey.pixscale.to_value("arcsec")
        self.native = bool(np.all(np.abs(m - np.diag([-s, s])) <= GRID_TOLERANCE * s))
        self.in_scale = math.sqrt(abs(np.linalg.det(m)))
        self.crpix = wcs.wcs.crpix.copy()
        cards = fits.Header.fromstring(grid.cards)
        for key in ("CRPIX1", "CRPIX2"):
            cards.remove(key, ignore_missing=True)
        self.template = "".join(card.image for card in cards.cards)
        self.ny, self.nx = grid.shape
        self.present = [b in grid.bands for b in survey.bands]
        for _, entry in grid.bands.values():
            entry["plain"] = (entry["bscale"] == 1.0 and entry["bzero"] == 0.0
                              and entry["bsoften"] is None and entry["scale"] == 1.0
                              and entry["blank"] is None)
        self.band_share = sum(self.present) / len(survey.bands)
        size = survey.size
        if not self.native:  # a source box that holds the target grid at any angle
            size = int(math.ceil(survey.size * s / self.in_scale * math.sqrt(2.0))) + 4
        self.size = size
        #: Pan-STARRS cuts on the skycell grid start where fitscut starts them
        self.fitscut = self.native and isinstance(survey, PanstarrsSurvey)


class LocalTiles:
    """Survey cutouts cut from local FITS tiles: the network path's objects, from disk.

    Parameters
    ----------
    panstarrs, galex, unwise : str or path-like, optional
        One directory per survey, searched recursively for FITS tiles (Pan-STARRS stack
        skycells, GALEX intensity maps, unWISE coadds, or any mosaic with a celestial
        WCS in the survey's unit; see the local tiles guide). At least one is needed.
    index_dir : str or path-like, optional
        Where the footprint indexes are kept (default
        ``<astropy cache>/astro_mantis/tile-index``).
    max_open_files : int, optional
        Tile HDUs kept open (memory-mapped) at once, the least recently used closed
        first. Default: a quarter of the process's limit on open files (``ulimit -n``;
        each open HDU holds up to two descriptors), between 16 and 512 — 256 under the
        common limit of 1024. More than a batch of positions touches avoids reopening
        (and re-reading the headers of) the same files batch after batch.
    **directories
        Directories of other registered surveys, by survey name.

    Attributes
    ----------
    indexes : dict
        Survey name → its `~astro_mantis.sources.TileIndex`.
    last_request_count : int
        Always 0: like ``Mantis.last_request_count``, the HTTP requests of the last call.

    Raises
    ------
    ValueError
        If no directory is given or a survey name is unknown.
    FileNotFoundError
        If a directory does not exist.

    Examples
    --------
    >>> from astro_mantis.sources import LocalTiles
    >>> tiles = LocalTiles(panstarrs="/data/ps1/skycells", galex="/data/galex",
    ...                    unwise="/data/unwise")                       # doctest: +SKIP
    >>> cuts = tiles.get_cutouts(coords)                                 # doctest: +SKIP
    """

    def __init__(self, panstarrs=None, galex=None, unwise=None, *, index_dir=None,
                 max_open_files=None, **directories):
        given = {"panstarrs": panstarrs, "galex": galex, "unwise": unwise}
        for name, path in directories.items():
            given[get_survey(name).name] = path
        given = {k: v for k, v in given.items() if v is not None and str(v) != ""}
        if not given:
            raise ValueError("LocalTiles needs at least one tile directory, e.g. "
                             "LocalTiles(panstarrs='/data/ps1', galex='/data/galex', "
                             "unwise='/data/unwise')")
        order = {name: i for i, name in enumerate(SURVEYS)}
        self.directories = {k: Path(given[k]) for k in sorted(given, key=order.get)}
        self.index_dir = index_dir
        self.indexes = {name: TileIndex(path, name, index_dir=index_dir)
                        for name, path in self.directories.items()}
        self._files = _OpenFiles(_default_max_open_files() if max_open_files is None
                                 else max_open_files)
        self._plans = {}
        self._backwards = {}
        self.last_request_count = 0

    def __repr__(self):
        parts = ", ".join(f"{k}={str(v)!r}" for k, v in self.directories.items())
        return f"LocalTiles({parts})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close the tile files held open (they reopen when needed)."""
        self._files.close()

    @classmethod
    def from_cli(cls, text, index_dir=None):
        """Build from a ``survey=DIR`` list, as ``astro-mantis predict --tiles`` takes it.

        Parameters
        ----------
        text : str
            ``"panstarrs=DIR,galex=DIR,unwise=DIR"`` (any subset, any order; ``ps1`` is
            read as ``panstarrs``; commas or semicolons separate the items).
        index_dir : str or path-like, optional
            As for `LocalTiles`.

        Returns
        -------
        `LocalTiles`

        Raises
        ------
        ValueError
            If an item is not ``survey=DIR``, names an unknown survey, or repeats one.
        """
        aliases = {"ps1": "panstarrs", "pan-starrs": "panstarrs", "wise": "unwise"}
        dirs = {}
        for item in str(text).replace(";", ",").split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, path = item.partition("=")
            name, path = name.strip().lower(), path.strip()
            if not sep or not name or not path:
                raise ValueError(f"--tiles item {item!r} is not SURVEY=DIR; expected e.g. "
                                 "'panstarrs=/data/ps1,galex=/data/galex,unwise=/data/unwise'")
            name = aliases.get(name, name)
            if name not in SURVEYS:
                raise ValueError(f"--tiles: unknown survey {name!r}; known surveys: "
                                 f"{', '.join(SURVEYS)}")
            if name in dirs:
                raise ValueError(f"--tiles names {name} twice")
            dirs[name] = path
        if not dirs:
            raise ValueError("--tiles is empty; expected e.g. 'panstarrs=DIR,galex=DIR,unwise=DIR'")
        return cls(index_dir=index_dir, **dirs)

    def refresh(self):
        """Bring every index up to date with its directory (files added, changed, removed).

        Returns
        -------
        dict
            Survey → `TileIndex.stats <astro_mantis.sources.TileIndex>`.
        """
        self.close()
        self._plans.clear()
        return {name: index.refresh() for name, index in self.indexes.items()}

    # ------------------------------------------------------------------ public API
    def get_cutouts(self, coordinates, surveys=DEFAULT_SURVEYS, cache=None, progress=None):
        """Cut every survey's cutout at every position from the local tiles.

        The call and its result mirror `Mantis.get_cutouts
        <astro_mantis.MantisClass.get_cutouts>`.

        Parameters
        ----------
        coordinates : `~astropy.coordinates.SkyCoord` or str
            One position or an array of them, any frame convertible to ICRS; or one
            position (or object name) as a string.
        surveys : str or sequence of str
            Survey names, default all three (one name alone: that survey). A survey
            without a tile directory is reported ``"not fetched"`` (and missing) at
            every position.
        cache : bool, optional
            Accepted for compatibility with the network path and ignored: cutting a
            tile costs no more than reading a cache entry.
        progress : bool or callable, optional
            As for the network path: a progress bar (default: on a terminal, for more
            than 10 positions), or a callable called with the number of positions done.

        Returns
        -------
        `~astro_mantis.MultiSurveyCutout` or list of them
            A scalar position gives one cutout; an array gives a list of the same
            length and order, invalid positions flagged ``BAD_COORDINATE``, never
            dropped.

        Raises
        ------
        TypeError
            If ``coordinates`` is not a `~astropy.coordinates.SkyCoord` or a string.
        ValueError
            If a scalar position is invalid, or a survey name is unknown.
        """
        scalar = self._is_scalar(coordinates)
        out = list(self.iter_cutouts(coordinates, surveys, progress=progress))
        return out[0] if scalar else out

    def iter_cutouts(self, coordinates, surveys=DEFAULT_SURVEYS, batch_size=1024,
                     progress=None):
        """`get_cutouts` one position at a time, in input order, in bounded memory.

        Positions are looked up and cut ``batch_size`` at a time, so memory does not
        grow with the number of positions.

        Parameters
        ----------
        coordinates, surveys, progress
            As for `get_cutouts` (a scalar position gives a one-element iterator).
        batch_size : int
            Positions per batch.

        Yields
        ------
        `~astro_mantis.MultiSurveyCutout`
        """
        positions, icrs = self._positions(coordinates)
        survey_objs = get_surveys(surveys)
        batch_size = max(1, int(batch_size))
        n = len(positions)
        for s in survey_objs:
            if s.name not in self.indexes:
                log.warning(f"LocalTiles has no {s.name} directory: {s.name} is reported "
                            "missing ('not fetched') at every position")
        from tqdm.auto import tqdm

        from ..progress import progress_enabled

        callback = progress if callable(progress) else None
        show = callback is None and progress_enabled(progress, n > 10)
        bar = tqdm(total=n, unit="position", desc="tiles", disable=not show, leave=False)
        self.last_request_count = 0
        try:
            for start in range(0, n, batch_size):
                stop = min(n, start + batch_size)
                yield from self._batch(positions, icrs, start, stop, survey_objs)
                bar.update(stop - start)
                if callback is not None:
                    callback(stop - start)
        finally:
            bar.close()

    def survey_image(self, survey, coord):
        """The cutout of one survey at one position, or None where no tile covers it.

        Parameters
        ----------
        survey : str
            Survey name (it must have a tile directory).
        coord : `~astropy.coordinates.SkyCoord`
            One position.

        Returns
        -------
        `~astro_mantis.surveys.SurveyImage` or None

        Raises
        ------
        ValueError
            If the survey has no tile directory or the position is invalid.
        """
        survey = self._survey_with_tiles(survey)
        positions, _ = self._positions(coord)
        if len(positions) != 1 or not positions.good[0]:
            raise ValueError(f"survey_image needs one valid position, got {coord!r}")
        state, value = self._survey_batch(survey, positions.ra, positions.dec)[0]
        if state == FetchStatus.FAILED.value:
            raise OSError(value)
        return value

    def tiles_at(self, survey, coord):
        """The tile grids whose pixels hold a position, best first.

        Parameters
        ----------
        survey : str
        coord : `~astropy.coordinates.SkyCoord`
            One position.

        Returns
        -------
        list of `~astro_mantis.sources.Grid`

        Raises
        ------
        ValueError
            If the survey has no tile directory or the position is invalid.
        """
        survey = self._survey_with_tiles(survey)
        positions, _ = self._positions(coord)
        if len(positions) != 1 or not positions.good[0]:
            raise ValueError(f"tiles_at needs one valid position, got {coord!r}")
        index = self.indexes[survey.name]
        ranked = self._rank(survey, index, _as_sent(positions.ra),
                            _as_sent(positions.dec))[0]
        return [index.grids[g] for g, _, _ in ranked]

    # ------------------------------------------------------------------ internals
    def _survey_with_tiles(self, survey):
        """The `~astro_mantis.surveys.Survey` of ``survey``; ValueError if it has no directory."""
        survey = get_survey(survey)
        if survey.name not in self.indexes:
            raise ValueError(f"LocalTiles has no {survey.name} directory (it has "
                             f"{', '.join(self.indexes)})")
        return survey

    @staticmethod
    def _is_scalar(coordinates):
        return isinstance(coordinates, str) or bool(getattr(coordinates, "isscalar", False))

    @staticmethod
    def _positions(coordinates):
        if isinstance(coordinates, str):
            coordinates = resolve_name(coordinates)
        try:
            positions = coordinate_positions(coordinates)
        except TypeError:
            raise TypeError(
                f"coordinates must be an astropy SkyCoord, a position string or an object "
                f"name, got {type(coordinates).__name__}; for example "
                "SkyCoord(ra=150.1, dec=2.2, unit='deg')") from None
        if coordinates.isscalar and not positions.good[0]:
            raise ValueError(f"invalid coordinate: {positions.reason[0]}")
        return positions, coordinates.icrs.reshape(-1)

    def _batch(self, positions, icrs, start, stop, survey_objs):
        """The cutouts of positions ``start:stop``, in order."""
        ra, dec, good = positions.ra[start:stop], positions.dec[start:stop], \
            positions.good[start:stop]
        keys, first_of = {}, np.full(stop - start, -1)
        for i in np.flatnonzero(good):
            first_of[i] = keys.setdefault((round(ra[i], 7), round(dec[i], 7)), i)
        unique = np.array(sorted(set(keys.values())), dtype=int)
        results = {}
        for s in survey_objs:
            if s.name not in self.indexes:
                results[s.name] = dict.fromkeys(
                    unique.tolist(), (FetchStatus.NOT_FETCHED.value, f"no local {s.name} tiles"))
                continue
            states = self._survey_batch(s, ra[unique], dec[unique])
            results[s.name] = dict(zip(unique.tolist(), states))
        for i in range(stop - start):
            coord = icrs[start + i]
            if not good[i]:
                yield MultiSurveyCutout(
                    coord, {}, [s.name for s in survey_objs], MantisFlag.BAD_COORDINATE,
                    {s.name: FetchStatus.BAD_COORDINATE.text() for s in survey_objs})
                continue
            j = int(first_of[i])
            images, missing, status, flags = {}, [], {}, MantisFlag.NONE
            for s in survey_objs:
                state, value = results[s.name][j]
                if state == FetchStatus.FETCHED.value:
                    images[s.name] = value
                    status[s.name] = FetchStatus.FETCHED.text()
                    continue
                status[s.name] = FetchStatus(state).text(value)
                missing.append(s.name)
                flags |= s.flag
                if state == FetchStatus.OUT_OF_FOOTPRINT.value:
                    flags |= MantisFlag.OUT_OF_FOOTPRINT
                elif state == FetchStatus.FAILED.value:
                    flags |= MantisFlag.FETCH_FAILED
            yield MultiSurveyCutout(coord, images, missing, flags, status)

    def _plan(self, survey, index, g):
        key = (survey.name, id(index), g)
        plan = self._plans.get(key)
        if plan is None or plan.grid is not index.grids[g]:
            plan = self._plans[key] = _GridPlan(index.grids[g], survey)
        return plan

    def _rank(self, survey, index, ra, dec):
        """Per position: [(grid, x, y), ...] of the grids holding it, most complete first."""
        cands = index.candidates(ra, dec)
        by_grid = {}
        for i, gs in enumerate(cands):
            for g in gs:
                by_grid.setdefault(g, []).append(i)
        parts = []
        for g, idx in by_grid.items():
            plan = self._plan(survey, index, g)
            idx = np.asarray(idx)
            with np.errstate(invalid="ignore"):
                x, y = plan.grid.wcs.all_world2pix(ra[idx], dec[idx], 0)
                nx, ny, size = plan.nx, plan.ny, plan.size
                inside = np.isfinite(x) & np.isfinite(y) & (x >= -0.5) & (x < nx - 0.5) \
                    & (y >= -0.5) & (y < ny - 0.5)
            if not inside.any():
                continue
            idx, x, y = idx[inside], x[inside], y[inside]
            x0, y0 = _origin(x, size, plan.fitscut), _origin(y, size, plan.fitscut)
            ox = np.minimum(nx, x0 + size) - np.maximum(0, x0)
            oy = np.minimum(ny, y0 + size) - np.maximum(0, y0)
            share = ox * oy / float(size * size) * plan.band_share
            edge = np.minimum(np.minimum(x + 0.5, nx - 0.5 - x),
                              np.minimum(y + 0.5, ny - 0.5 - y))
            parts.append((idx, np.full(len(idx), g), share, edge, x, y))
        ranked = [[] for _ in range(len(ra))]
        if not parts:
            return ranked
        idx, g, share, edge, x, y = (np.concatenate(c) for c in zip(*parts))
        order = np.lexsort((g, -edge, -share, idx))
        for i, gk, xk, yk in zip(idx[order].tolist(), g[order].tolist(), x[order].tolist(),
                                 y[order].tolist()):
            ranked[i].append((gk, xk, yk))
        return ranked

    def _survey_batch(self, survey, ra, dec):
        """(state, value) per position: ("ok", SurveyImage), ("out of footprint", None) or
        ("failed", reason). Positions are read to 7 decimals, as requests send them."""
        index = self.indexes[survey.name]
        ra, dec = _as_sent(ra), _as_sent(dec)
        ranked = self._rank(survey, index, ra, dec)
        viewer = isinstance(survey, LegacyViewerSurvey)
        out = [None] * len(ra)
        # cut grid by grid, so a tile's pages stay hot; every other batch backwards, so
        # that a batch starts on the files the last one ended on (still open, when there
        # are more tile files than max_open_files: a cyclic order would reopen them all)
        backwards = self._backwards[survey.name] = not self._backwards.get(survey.name, True)
        order = sorted(range(len(ra)), key=lambda i: ranked[i][0][0] if ranked[i] else -1,
                       reverse=backwards)
        for i in order:
            tries = ranked[i][:MAX_TRIES]
            if not tries:
                out[i] = (FetchStatus.OUT_OF_FOOTPRINT.value, None)
                continue
            best, best_valid, error = None, -1, None
            for g, x, y in tries:
                try:
                    image = self._cut(survey, index, g, x, y, ra[i], dec[i])
                except Exception as exc:  # one unreadable tile must not stop the others
                    error = f"{type(exc).__name__}: {exc}"
                    continue
                data = image.data
                if not viewer and not image.flags & MantisFlag.NAN_PIXELS:
                    nvalid = data.size
                else:
                    valid = np.isfinite(data)
                    if viewer:
                        valid &= data != 0
                    nvalid = int(valid.sum())
                if nvalid > best_valid:
                    best, best_valid = image, nvalid
                if nvalid == data.size:
                    break
            if best is None:
                out[i] = (FetchStatus.FAILED.value, error)
            elif viewer and best_valid == 0:
                out[i] = (FetchStatus.OUT_OF_FOOTPRINT.value, None)
            else:
                out[i] = (FetchStatus.FETCHED.value, best)
        return out

    def _cut(self, survey, index, g, x, y, ra, dec):
        """The `SurveyImage` of grid ``g`` at pixel (x, y) of it (position ra, dec)."""
        plan = self._plan(survey, index, g)
        size = plan.size
        nb = len(survey.bands)
        large, small, x0, y0 = _slices(plan.ny, plan.nx, size, x, y, plan.fitscut)
        data = np.empty((nb, size, size), dtype=np.float32)
        if small != (slice(0, size), slice(0, size)):  # a partial cut: NaN beyond the tile
            data.fill(np.nan)
        zps, meta = [], {"LAYER": survey.layer, "TILE": _card_text(plan.grid.name)[-68:]}
        for b, band in enumerate(survey.bands):
            held = plan.grid.bands.get(band)
            if held is None:
                data[b] = np.nan
                zps.append(np.nan)
                continue
            path, entry = held
            zps.append(np.nan if entry["zeropoint"] is None else entry["zeropoint"])
            if entry["exptime"] is not None and survey.name == "panstarrs":
                meta[f"EXPTIME{band.upper()}"] = entry["exptime"]
            pixels = self._files.pixels(path, entry)
            if entry["plane"] is None:
                block = pixels[large]
            else:
                block = pixels[(entry["plane"],) + large]
            if entry["plain"]:
                data[b][small] = block  # converted to native float32 in the copy
            else:
                data[b][small] = _calibrate(np.asarray(block), entry)
        if plan.native:
            cards = plan.template + _card("CRPIX1", plan.crpix[0] - x0) \
                + _card("CRPIX2", plan.crpix[1] - y0)
        else:
            data, cards = self._resample(survey, plan, data, x0, y0, ra, dec)
            meta["RESAMPLD"] = True
        flags = MantisFlag.NAN_PIXELS if np.isnan(data).any() else MantisFlag.NONE
        return SurveyImage(survey.name, data, cards, survey.unit, survey.bands,
                           zeropoints=zps, meta=meta, flags=flags, check_nan=False)

    @staticmethod
    def _resample(survey, plan, data, x0, y0, ra, dec):
        """Resample a source box onto the survey's north-up grid centred on (ra, dec)."""
        from astropy.wcs import WCS, Sip
        from reproject import reproject_interp

        shift = np.array([x0, y0], dtype=float)
        src = plan.grid.wcs.deepcopy()
        src.wcs.crpix = plan.crpix - shift
        if src.sip is not None:  # SIP keeps its own reference pixel: shift it too
            sip = src.sip
            src.sip = Sip(sip.a, sip.b, sip.ap, sip.bp, np.asarray(sip.crpix) - shift)
        src.array_shape = data.shape[1:]
        size = survey.size
        s = survey.pixscale.to_value("deg")
        target = WCS(naxis=2)
        target.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        target.wcs.crval = [ra, dec]
        target.wcs.crpix = [(size + 1) / 2.0, (size + 1) / 2.0]
        target.wcs.cd = [[-s, 0.0], [0.0, s]]
        target.wcs.set()
        out, _ = reproject_interp((data, src), target, shape_out=(size, size),
                                  order="bilinear")
        area = (s * 3600.0 / plan.in_scale) ** 2
        out = (np.asarray(out) * area).astype(np.float32)
        cards = "".join(card.image for card in target.to_header().cards
                        if card.keyword in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2",
                                            "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1",
                                            "CD2_2", "PC1_1", "PC1_2", "PC2_1", "PC2_2",
                                            "CDELT1", "CDELT2", "RADESYS", "EQUINOX"))
        return out, cards


def _as_sent(values):
    """Positions (degrees) as the services receive them: to 7 decimals (``f"{v:.7f}"``)."""
    return np.array([float(f"{v:.7f}") for v in np.asarray(values, dtype=float).ravel()],
                    dtype=float)


def _card_text(text):
    """``text`` with every character a FITS card cannot hold (beyond printable ASCII)
    written as its Python backslash escape, e.g. ``mosa\\xefque.fits``."""
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii")
                   for c in str(text))


def _origin(x, size, fitscut):
    """First pixel of ``size``-pixel cutouts around pixel coordinates ``x`` (array):
    fitscut's rule (`~astro_mantis.surveys.panstarrs.fitscut_origin`) or Cutout2D's."""
    if fitscut:
        return np.floor(x - size // 2 + 0.5)
    return np.ceil(x - size / 2.0)


def _slices(ny, nx, size, x, y, fitscut=False):
    """The slices of a ``size`` square at (x, y), mode "partial".

    `~astropy.nddata.utils.overlap_slices`'s arithmetic (``start = ceil(position - size /
    2)``), without its checks, or with ``fitscut`` the start fitscut gives
    (`~astro_mantis.surveys.panstarrs.fitscut_origin`): (x, y) is known to lie inside
    the grid. Returns the slices into the tile, into the cutout, and the cutout's origin
    (x0, y0) in tile pixels.
    """
    if fitscut:
        x0, y0 = fitscut_origin(x, size), fitscut_origin(y, size)
    else:
        x0, y0 = math.ceil(x - size / 2.0), math.ceil(y - size / 2.0)
    large = (slice(max(0, y0), min(ny, y0 + size)), slice(max(0, x0), min(nx, x0 + size)))
    small = (slice(max(0, -y0), min(ny - y0, size)), slice(max(0, -x0), min(nx - x0, size)))
    return large, small, x0, y0


def _calibrate(block, entry):
    """Raw tile pixels → float32 in the survey's unit (scaling, blanks, asinh, BUNIT)."""
    scaled = entry["bscale"] != 1.0 or entry["bzero"] != 0.0
    asinh = entry["bsoften"] is not None
    unit = entry["scale"] != 1.0
    values = block.astype(np.float64)
    if entry["blank"] is not None:
        values[block == entry["blank"]] = np.nan
    if scaled:
        values = values * entry["bscale"] + entry["bzero"]
    if asinh:
        values = decompress_asinh(values, entry["bsoften"], entry["boffset"])
    if unit:
        values = values * entry["scale"]
    return values.astype(np.float32)
