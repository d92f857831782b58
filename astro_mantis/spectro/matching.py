# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Attach spectroscopic redshifts to the rows of a table: `match_spectroscopic`.

Whatever the catalog, the match is the same local nearest-neighbour match
(`astropy.coordinates.SkyCoord.match_to_catalog_sky`, a k-d tree over the catalog)
after the catalog's quality cut:

* each row gets the **nearest** spectrum within ``radius``, or none;
* a row with a second spectrum within ``radius`` is flagged ``AMBIGUOUS`` (the
  nearest is kept); a spectrum that is the nearest of several rows is kept for each
  and flagged ``SHARED`` on each;
* rows are never dropped or reordered: a row without a match keeps masked values and
  a flag saying why (``NO_MATCH``, ``BAD_COORDINATE``, ``QUERY_FAILED``; one of them:
  a row whose query failed is not flagged ``NO_MATCH``, as there may be a spectrum).

Columns added (`SPEC_COLUMNS`), all masked where there is no match:

================  ======================================================================
``z_spec``        spectroscopic redshift
``z_spec_err``    its uncertainty (masked when the catalog has none)
``spec_class``    spectral class (``GALAXY``, ``QSO``, ``STAR``; masked when unknown)
``spec_id``       the spectrum's identifier (SDSS: ``specObjID``, uint64)
``spec_sep``      distance to the spectrum (arcsec)
``spec_source``   the catalog, e.g. ``SDSS DR17 SpecObj (SkyServer)`` (stored as bytes)
``spec_flags``    `SpecFlag` bits (never masked; 0 for a clean match)
================  ======================================================================

The SDSS catalogs add ``spec_plate``, ``spec_mjd``, ``spec_fiberid``, ``spec_run2d`` and
``spec_zwarning`` (what `~astro_mantis.spectro.get_spectrum` needs); other catalogs add
``spec_<name>`` for each of their ``columns`` asked for (with the catalog column's unit,
description and format; a vector column stays a vector column). A summary (counts of
matches, ambiguous rows, shared spectra, failures; the catalog, radius and quality cut;
``columns_added``, the columns the match wrote) goes in ``table.meta["spec_match"]`` and
the log.

A match changes the table only once everything is computed: an error (a missing column,
an unreachable catalog ...) leaves it as it was. Matching a table again with
``overwrite=True`` first removes every column an earlier match wrote: `SPEC_COLUMNS`,
`SDSS_EXTRA` and the ``spec_<name>`` copies its summary lists in ``columns_added``, so
that nothing of the earlier match (an SDSS plate on a row the new catalog does not
match, say) is left beside the new one.
"""
import enum
import json
import os
import time
from collections.abc import Mapping
from datetime import datetime, timezone

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Column, MaskedColumn, Table

from .._version import __version__
from ..logger import log
from .quality import QualityCut
from .sdss import SDSS_QUALITY, _query_specobj
from .spall import SPALL_QUALITY

__all__ = ["match_spectroscopic", "SpecFlag", "SPEC_COLUMNS", "DEFAULT_QUALITY", "SDSS_EXTRA",
           "nearest_spectra", "check_radius", "check_copied_columns", "match_summary"]

#: Columns every match adds.
SPEC_COLUMNS = ("z_spec", "z_spec_err", "spec_class", "spec_id", "spec_sep", "spec_source",
                "spec_flags")
#: Extra columns of the SDSS catalogs: table column -> SkyServer column.
SDSS_EXTRA = {"spec_plate": "plate", "spec_mjd": "mjd", "spec_fiberid": "fiberID",
              "spec_run2d": "run2d", "spec_zwarning": "zWarning"}
#: Default quality cut of each kind of catalog (None: only a finite redshift).
DEFAULT_QUALITY = {"sdss": SDSS_QUALITY, "sdss-spall": SPALL_QUALITY, "table": None}

_DESCRIPTIONS = {
    "z_spec": "Spectroscopic redshift of the nearest spectrum within the match radius",
    "z_spec_err": "Uncertainty of z_spec",
    "spec_class": "Spectral class of the matched spectrum",
    "spec_id": "Identifier of the matched spectrum in its catalog",
    "spec_sep": "Angular distance to the matched spectrum",
    "spec_source": "Catalog of the matched spectrum",
    "spec_flags": "SpecFlag bits: 1 no match, 2 ambiguous, 4 shared, 8 bad coordinate, "
                  "16 query failed",
    "spec_plate": "SDSS plate of the matched spectrum",
    "spec_mjd": "SDSS MJD of the matched spectrum",
    "spec_fiberid": "SDSS fiber of the matched spectrum",
    "spec_run2d": "SDSS reduction (run2d) of the matched spectrum",
    "spec_zwarning": "SDSS zWarning bits of the matched spectrum",
}


class SpecFlag(enum.IntFlag):
    """Bits of the ``spec_flags`` column.

    ==================  =====  ===========================================================
    flag                value  meaning
    ==================  =====  ===========================================================
    ``NO_MATCH``            1  no spectrum passing the quality cut within the radius
                               (not set on ``QUERY_FAILED`` rows: there may be one)
    ``AMBIGUOUS``           2  more than one spectrum within the radius (the nearest kept)
    ``SHARED``              4  the matched spectrum is also the nearest of another row
    ``BAD_COORDINATE``      8  the row's position is NaN, masked or out of range
    ``QUERY_FAILED``       16  the catalog could not be queried around this row (SkyServer
                               failed after all retries); the row may have a spectrum.
                               Unmatched, it is counted in ``n_query_failed`` only, not in
                               ``n_no_match``
    ==================  =====  ===========================================================
    """

    NONE = 0
    NO_MATCH = 1
    AMBIGUOUS = 2
    SHARED = 4
    BAD_COORDINATE = 8
    QUERY_FAILED = 16


# ----------------------------------------------------------------------------- inputs
def check_radius(radius):
    """A match radius checked: one positive angle of at most 1 degree.

    Parameters
    ----------
    radius : `~astropy.units.Quantity` or str
        An angle, or a string astropy reads as one (``"1 arcsec"``).

    Returns
    -------
    `~astropy.units.Quantity`
        The radius in arcseconds.

    Raises
    ------
    TypeError
        A number without a unit, or not an angle.
    ValueError
        Unreadable, not one positive finite angle, or larger than 1 degree.

    Examples
    --------
    >>> from astro_mantis.spectro.matching import check_radius
    >>> check_radius("1.5 arcsec")
    <Quantity 1.5 arcsec>
    """
    if isinstance(radius, str):
        try:
            radius = u.Quantity(radius)
        except (TypeError, ValueError):
            raise ValueError(f"cannot read radius {radius!r}; give an angle such as "
                             "'1 arcsec'") from None
    if not isinstance(radius, u.Quantity) or radius.unit.physical_type != "angle":
        raise TypeError(f"radius must be an angle with a unit, e.g. 1 * u.arcsec or '1 arcsec'; "
                        f"got {radius!r}" + (" (a number without a unit)"
                                             if np.isscalar(radius) else ""))
    if not radius.isscalar or not np.isfinite(radius.value) or radius.value <= 0:
        raise ValueError(f"radius must be one positive angle, got {radius}")
    if radius > 1 * u.deg:
        raise ValueError(f"radius {radius} is larger than 1 degree; spectroscopic matches use "
                         "arcseconds")
    return radius.to(u.arcsec)


def _positions(table, ra, dec, coord):
    """(ra, dec, good) of the table's rows, ICRS degrees (`astro_mantis.positions`)."""
    from ..positions import table_positions

    if coord is None:  # any case of the column names
        lower = {c.lower(): c for c in table.colnames}
        ra = lower.get(str(ra).lower(), ra) if ra not in table.colnames else ra
        dec = lower.get(str(dec).lower(), dec) if dec not in table.colnames else dec
    elif coord in table.colnames and not isinstance(table[coord], SkyCoord):
        raise TypeError(f"column {coord!r} must hold SkyCoord positions, got "
                        f"{type(table[coord]).__name__}")
    pos = table_positions(table, coord=coord, ra=ra, dec=dec)
    return pos.ra, pos.dec, pos.good


def _find(table, name, what, required=True):
    if name is None:
        return None
    if name in table.colnames:
        return name
    lower = {c.lower(): c for c in table.colnames}
    if name.lower() in lower:
        return lower[name.lower()]
    if required:
        raise KeyError(f"{what}: the catalog has no column {name!r}; its columns are: "
                       f"{', '.join(table.colnames) or '(none)'}")
    return None


# ----------------------------------------------------------------------------- catalogs
class _Catalog:
    """A spectroscopic catalog reduced to what the match needs."""

    def __init__(self, ra, dec, z, z_err, cls, ids, extra, source, kind, info=None,
                 extra_info=None):
        self.ra, self.dec, self.z, self.z_err = ra, dec, z, z_err
        self.cls, self.ids, self.extra = cls, ids, extra
        self.source, self.kind, self.info = source, kind, dict(info or {})
        # table column -> attributes (unit, description, format) of an extra column
        self.extra_info = dict(extra_info or {})

    def __len__(self):
        return len(self.ra)

    @classmethod
    def from_specobj(cls, table, source, kind, info=None):
        """From a table with SkyServer's SpecObj columns (SkyServer or spAll)."""
        extra = {col: np.asarray(table[src]) for col, src in SDSS_EXTRA.items()}
        return cls(np.asarray(table["ra"], float), np.asarray(table["dec"], float),
                   np.asarray(table["z"], float), np.asarray(table["zErr"], float),
                   np.asarray(table["class"]).astype("U", copy=False),
                   np.asarray(table["specObjID"], dtype=np.uint64), extra, source, kind, info)


def _local_quality(table, quality):
    """Mask of a quality cut (expression or callable) evaluated on a local table."""
    if quality is None:
        return np.ones(len(table), dtype=bool)
    if callable(quality) and not isinstance(quality, QualityCut):
        mask = np.asarray(quality(table), dtype=bool)
    else:
        cut = quality if isinstance(quality, QualityCut) else QualityCut(quality)
        mask = cut.evaluate(table, n=len(table))
    if mask.shape != (len(table),):
        raise ValueError(f"the quality cut gave a mask of shape {mask.shape}, expected "
                         f"({len(table)},)")
    return mask


def _user_catalog(catalog, quality, z_col, z_err_col, ra_col, dec_col, class_col, id_col,
                  catalog_format, columns):
    if isinstance(catalog, (str, os.PathLike)):
        path = os.fspath(catalog)
        if not os.path.exists(path):
            raise FileNotFoundError(f"catalog file {path!r} does not exist")
        fits_file = (catalog_format == "fits" if catalog_format
                     else path.lower().endswith((".fits", ".fit", ".fts")))
        try:  # FITS tables memory-mapped: only the columns used are read
            table = Table.read(path, format=catalog_format, **({"memmap": True}
                                                                if fits_file else {}))
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"cannot read catalog {path!r}: {first}"
                             + ("" if catalog_format else " (give catalog_format=)")) from None
        source = os.path.basename(path)
    elif isinstance(catalog, Table):
        table = catalog
        source = str(catalog.meta.get("name") or "user catalog")
    else:
        raise TypeError(f"catalog must be 'sdss', 'sdss-spall', an astropy Table or the path "
                        f"of a table file; got {type(catalog).__name__}")
    what = f"catalog {source!r}"
    z_name = _find(table, z_col, what)
    zcol = table[z_name]
    z = np.ma.filled(np.ma.asarray(getattr(zcol, "value", zcol)).astype(float), np.nan)
    try:
        ra, dec, good = _positions(table, _find(table, ra_col, what),
                                   _find(table, dec_col, what), None)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    keep = good & np.isfinite(z)
    keep &= _local_quality(table, quality)
    idx = np.flatnonzero(keep)
    z_err = np.full(idx.size, np.nan)
    if z_err_col is not None:
        ecol = table[_find(table, z_err_col, what)]
        z_err = np.ma.filled(np.ma.asarray(getattr(ecol, "value", ecol)).astype(float),
                             np.nan)[idx]
    cls = None
    if class_col is not None:
        ccol = table[_find(table, class_col, what)]
        cls = np.char.strip(np.asarray(np.ma.filled(np.ma.asarray(ccol).astype(str), ""),
                                       dtype=str))[idx]
    if id_col is not None:  # masked identifiers stay masked (np.ma keeps the mask)
        icol = table[_find(table, id_col, what)]
        ids = (np.ma.asarray(icol) if np.ma.is_masked(icol) else np.asarray(icol))[idx]
    else:
        ids = idx.astype(np.int64)
    extra, extra_info = {}, {}
    for name in columns or ():
        found = _find(table, name, what)
        extra[f"spec_{name}"], extra_info[f"spec_{name}"] = _copied(table[found], found, what,
                                                                    idx)
    info = {"rows_in_catalog": len(table), "rows_kept": int(idx.size)}
    return _Catalog(ra[idx], dec[idx], z[idx], z_err, cls, ids, extra, source, "table", info,
                    extra_info)


def _copied(col, name, what, idx):
    """(values, attributes) of the rows ``idx`` of a catalog column copied with ``columns``:
    a numpy (masked) array, of any per-row shape, and its unit, description and format."""
    if isinstance(col, u.Quantity):  # a QTable column, maybe masked
        mask = getattr(col, "mask", None)
        data = np.asarray(getattr(col, "unmasked", col).value)
        values = data if mask is None else np.ma.MaskedArray(data, mask=np.asarray(mask))
    elif isinstance(col, Column):
        values = np.ma.asarray(col) if isinstance(col, MaskedColumn) else np.asarray(col)
    else:
        raise TypeError(f"{what}: column {name!r} ({type(col).__name__}) cannot be copied with "
                        "columns (--keep-col); only plain columns, with or without a unit, "
                        "can")
    attrs = {"unit": getattr(col, "unit", None), "description": col.info.description,
             "format": col.info.format}
    return values[idx], attrs


# ----------------------------------------------------------------------------- match
def nearest_spectra(ra, dec, cat_ra, cat_dec, radius):
    """Nearest catalog entry of each position, and whether a second one is as close as ``radius``.

    Parameters
    ----------
    ra, dec : array-like
        Positions (ICRS degrees, finite).
    cat_ra, cat_dec : array-like
        Catalog positions (ICRS degrees, finite).
    radius : `~astropy.units.Quantity`
        Match radius.

    Returns
    -------
    index : `numpy.ndarray` of int
        Index of the nearest catalog entry (meaningful where ``matched``).
    sep : `~astropy.units.Quantity`
        Distance to it, arcsec.
    matched : `numpy.ndarray` of bool
        True where the nearest entry lies within ``radius``.
    ambiguous : `numpy.ndarray` of bool
        True where the second nearest also does.
    """
    n = len(ra)
    if n == 0 or len(cat_ra) == 0:
        return (np.zeros(n, dtype=np.int64), np.full(n, np.inf) * u.arcsec,
                np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
    coords = SkyCoord(np.asarray(ra) * u.deg, np.asarray(dec) * u.deg, frame="icrs")
    catalog = SkyCoord(np.asarray(cat_ra) * u.deg, np.asarray(cat_dec) * u.deg, frame="icrs")
    index, sep, _ = coords.match_to_catalog_sky(catalog)
    sep = sep.to(u.arcsec)
    matched = sep <= radius
    ambiguous = np.zeros(n, dtype=bool)
    if len(cat_ra) > 1 and matched.any():
        # the k-d tree built by the first call is reused
        sub = coords[matched]
        _, sep2, _ = sub.match_to_catalog_sky(catalog, nthneighbor=2)
        ambiguous[np.flatnonzero(matched)] = sep2 <= radius
    return np.asarray(index, dtype=np.int64), sep, np.asarray(matched), ambiguous


def _spec_catalog(catalog, ra, dec, good, radius, quality, data_release, run2d, spall,
                  download, cache, progress, kw):
    """(catalog, failed mask over rows) of the catalog asked for."""
    failed = np.zeros(len(ra), dtype=bool)
    if isinstance(catalog, str) and catalog.lower() == "sdss":
        from .config import conf

        dr = int(conf.data_release if data_release is None else data_release)
        server_cut = quality
        local_cut = None
        if callable(quality) and not isinstance(quality, (QualityCut, str)):
            server_cut, local_cut = None, quality
        idx = np.flatnonzero(good)
        table, bad, stats = _query_specobj(ra[idx], dec[idx], radius, server_cut, dr, cache,
                                           progress)
        if local_cut is not None:
            table = table[_local_quality(table, local_cut)]
        failed[idx[bad]] = True
        return _Catalog.from_specobj(table, f"SDSS DR{dr} SpecObj (SkyServer)", "sdss",
                                     dict(stats, data_release=dr)), failed
    if isinstance(catalog, str) and catalog.lower() == "sdss-spall":
        from astropy.table import vstack

        from .spall import _release, _run2d_list, _spall_file, read_spall

        dr = _release(data_release)
        if spall is not None:
            paths = [os.fspath(spall)] if isinstance(spall, (str, os.PathLike)) \
                else [os.fspath(p) for p in spall]
            names = [os.path.basename(p) for p in paths]
            run2ds = _spall_run2d(run2d, len(paths))
        else:
            run2ds = _run2d_list(dr, run2d)
            found = [_spall_file(dr, r, download, progress=progress) for r in run2ds]
            paths, names = [f[0] for f in found], [f[1] for f in found]
        tables = [read_spall(p, quality=quality, run2d=r) for p, r in zip(paths, run2ds)]
        table = tables[0] if len(tables) == 1 else vstack(tables, metadata_conflicts="silent")
        names = ", ".join(names)
        info = {"data_release": dr, "files": paths,
                "rows_in_files": int(sum(t.meta["rows_in_file"] for t in tables))}
        return _Catalog.from_specobj(table, f"SDSS DR{dr} {names}", "sdss-spall", info), failed
    if isinstance(catalog, str) and not os.path.exists(catalog) and "." not in catalog:
        raise ValueError(f"unknown catalog {catalog!r}: use 'sdss', 'sdss-spall', an astropy "
                         "Table or the path of a catalog file")
    return _user_catalog(catalog, quality, **kw), failed


def _spall_run2d(run2d, nfiles):
    """The reduction of each of ``nfiles`` spAll files given by path (None: the file's
    ``RUN2D`` column): ``run2d`` one reduction for all (a string or a one-item
    sequence, as ``--run2d`` gives it), or one per file."""
    if run2d is None or isinstance(run2d, str):
        return [run2d] * nfiles
    run2d = [str(r) for r in run2d]
    if len(run2d) == 1:
        return run2d * nfiles
    if len(run2d) != nfiles:
        raise ValueError(f"run2d (--run2d) with spall (--spall): give one reduction for all the "
                         f"spAll files, or one per file; got {len(run2d)} reductions for "
                         f"{nfiles} file(s)")
    return run2d


def _quality_text(quality):
    if quality is None:
        return "none"
    if isinstance(quality, QualityCut):
        return quality.expression
    if isinstance(quality, str):
        return quality
    return f"callable {getattr(quality, '__name__', type(quality).__name__)}"


def match_spectroscopic(table, catalog="sdss", radius=1 * u.arcsec, *, ra="ra", dec="dec",
                        coord=None, quality="default", z_col="z", z_err_col=None, ra_col="ra",
                        dec_col="dec", class_col=None, id_col=None, columns=None,
                        catalog_format=None, data_release=None, run2d=None, spall=None,
                        download=False, cache=True, overwrite=False, progress=None):
    """Add the nearest spectroscopic redshift within ``radius`` to every row of a table.

    See the module notes for the matching rules and the columns added. The table is
    changed in place (and returned); its rows are neither dropped nor reordered.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Rows with positions (ICRS).
    catalog : {"sdss", "sdss-spall"}, `~astropy.table.Table` or path
        ``"sdss"``: SkyServer's ``SpecObj`` view through `astroquery.sdss` (one query per
        few hundred square arcminutes of occupied sky; fine up to some ten thousand
        rows). ``"sdss-spall"``: the release's spAll file, local or downloaded once
        (see `~astro_mantis.spectro.spall_path`); the path for large tables. A
        `~astropy.table.Table` or the path of any table file astropy reads: your own
        catalog (DESI, GAMA, VIPERS ...), with ``z_col``, ``ra_col``, ``dec_col``.
    radius : `~astropy.units.Quantity` or str
        Match radius, an angle with a unit (``1 * u.arcsec`` or ``"1 arcsec"``); a bare
        number is refused.
    ra, dec : str
        The table's columns of right ascension and declination (degrees unless they
        carry an angular unit). Ignored when ``coord`` is given.
    coord : str, optional
        A `~astropy.coordinates.SkyCoord` column of the table to use instead.
    quality : str, `~astro_mantis.spectro.QualityCut`, callable, None or "default"
        Which spectra may be matched: a `~astro_mantis.spectro.QualityCut` expression
        over the catalog's columns (names case-insensitive; for ``"sdss"`` it becomes
        part of the SQL), a callable returning a boolean mask from the catalog table
        (for spAll files, a mapping of column name to array: see
        `~astro_mantis.spectro.read_spall`), or None for every spectrum with a finite
        redshift. ``"default"``: `~astro_mantis.spectro.DEFAULT_QUALITY` of the catalog,
        for SDSS ``zWarning == 0 and class == 'GALAXY'`` (and ``specPrimary == 1`` in
        spAll files, which SkyServer's ``SpecObj`` view implies); no cut for other
        catalogs.
    z_col, z_err_col, ra_col, dec_col, class_col, id_col : str, optional
        Columns of a user catalog (names case-insensitive): redshift, its error,
        position (degrees unless with a unit), class, identifier (default: the
        catalog's row number; a masked identifier gives a masked ``spec_id``).
    columns : str or sequence of str, optional
        More columns of a user catalog to copy, as ``spec_<name>`` (one name, as a
        str, is one column), with their unit, description and format; vector columns
        stay vector columns. A name whose ``spec_<name>`` is one of the match's own
        columns (`SPEC_COLUMNS`: ``flags``, ``sep``, ``id``, ``class``, ``source``;
        with an SDSS catalog, `SDSS_EXTRA` too) is refused.
    catalog_format : str, optional
        Format of a catalog file, passed to `~astropy.table.Table.read`.
    data_release : int, optional
        SDSS data release (default ``spectro.conf.data_release``, 17).
    run2d : str or sequence of str, optional
        spAll reduction(s) to read (default: the release's BOSS/eBOSS reduction). With
        ``spall``, the reduction of the files that have no ``RUN2D`` column: one for
        all of them, or one per file, in order.
    spall : path or sequence of paths, optional
        spAll file(s) to read instead of locating the release's.
    download : bool
        Allow downloading the spAll file (gigabytes) when it is neither under
        ``$SAS_BASE_DIR`` nor cached.
    cache : bool
        Use astroquery's cache of SkyServer answers.
    overwrite : bool
        Replace an earlier match: every column it wrote (`SPEC_COLUMNS`, `SDSS_EXTRA`,
        and the ``spec_<name>`` copies listed in its summary's ``columns_added``) is
        removed before the new columns are added. Without it, any of those columns in
        the table (or a ``spec_<name>`` the new match would write) is an error.
    progress : bool, optional
        Show progress bars (default: on a terminal, for long jobs).

    Returns
    -------
    `~astropy.table.Table`
        ``table``, with the columns added and ``table.meta["spec_match"]`` the summary
        (a FITS ``SPECMTCH`` keyword of an earlier match, which it replaces, is removed).

    Raises
    ------
    TypeError
        If ``radius`` has no angular unit, ``catalog`` is of an unknown kind, or a
        ``columns`` entry is not a column name or not a plain column.
    KeyError
        If a column is missing (the message lists the columns there are).
    ValueError
        If the columns exist already without ``overwrite``, or an argument is invalid.
        Whatever the error, the table is left unchanged.
    astro_mantis.spectro.SkyServerError
        If SkyServer rejects the query (e.g. the quality cut names an unknown column).
    astro_mantis.spectro.DownloadRequiredError
        If the spAll file would need a download and ``download`` is False.
    astro_mantis.spectro.CatalogFileError
        If an spAll file is truncated or unreadable.

    Examples
    --------
    >>> import astropy.units as u
    >>> from astropy.table import Table
    >>> from astro_mantis.spectro import match_spectroscopic
    >>> mine = Table({"ra": [150.1, 150.2], "dec": [2.2, 2.3], "z": [0.31, 0.52]})
    >>> targets = Table({"ra": [150.10001, 151.0], "dec": [2.2, 2.3]})
    >>> out = match_spectroscopic(targets, catalog=mine)  # doctest: +IGNORE_OUTPUT
    >>> targets["z_spec"].tolist(), targets["spec_flags"].tolist()
    ([0.31, None], [0, 1])
    """
    t0 = time.perf_counter()
    columns = _column_names(columns)
    radius, quality, earlier = _check_match(table, catalog, radius, quality, columns, overwrite)
    ra_d, dec_d, good = _positions(table, ra, dec, coord)
    kw = dict(z_col=z_col, z_err_col=z_err_col, ra_col=ra_col, dec_col=dec_col,
              class_col=class_col, id_col=id_col, catalog_format=catalog_format,
              columns=columns)
    cat, failed = _spec_catalog(catalog, ra_d, dec_d, good, radius, quality, data_release,
                                run2d, spall, download, cache, progress, kw)
    index, matched, sep, flags, n_shared_spectra = _match_rows(ra_d, dec_d, good, failed, cat,
                                                               radius)
    new = _new_columns(cat, index, matched, sep, flags, radius)
    summary = _summary(cat, radius, quality, flags, matched, n_shared_spectra, t0)
    summary["columns_added"] = list(new)
    # the table changes only from here on: every column and the summary are ready
    table.remove_columns([c for c in earlier if c not in new])
    for name, col in new.items():
        table[name] = col
    for key in [k for k in table.meta if str(k).lower() == "specmtch"]:
        del table.meta[key]  # an earlier match's summary, read from a FITS header
    table.meta["spec_match"] = summary
    log.info(f"match_spectroscopic: {summary['n_matched']} of {len(table)} row(s) matched to "
             f"{cat.source} within {radius:.3g}; {summary['n_ambiguous']} ambiguous, "
             f"{summary['n_shared_rows']} sharing a spectrum, {summary['n_no_match']} without "
             f"match, {summary['n_bad_coordinate']} bad coordinate(s), "
             f"{summary['n_query_failed']} not queried")
    return table


def _column_names(columns):
    """``columns=`` as a list of names: None is none, one str one name (as in
    ``table[name]``), else a sequence of str."""
    if columns is None:
        return []
    if isinstance(columns, str):
        return [columns]
    try:
        names = list(columns)
    except TypeError:
        raise TypeError(f"columns must be a column name or a sequence of them, got "
                        f"{type(columns).__name__}") from None
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"columns must be column names (str), got {name!r}")
    return names


def match_summary(meta):
    """The summary of the match a table went through, from the table's meta.

    That is ``meta["spec_match"]``, as `match_spectroscopic` leaves it (a dict, or its
    JSON text), or the FITS header keyword ``SPECMTCH`` (JSON text) that ``astro-mantis
    match`` writes in a FITS file and astropy reads back; keys in any case.

    Parameters
    ----------
    meta : mapping
        A table's (or row's) ``meta``.

    Returns
    -------
    dict or None
        None when there is none, or it cannot be read.
    """
    if not isinstance(meta, Mapping):
        return None
    keys = {str(k).lower(): k for k in meta}
    for key in ("spec_match", "specmtch"):
        if key not in keys:
            continue
        value = meta[keys[key]]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if isinstance(value, Mapping):
            return dict(value)
    return None


def _earlier_columns(table):
    """Columns of the table that an earlier match wrote: `SPEC_COLUMNS`, `SDSS_EXTRA`
    (whatever the catalog then) and the copies its summary lists in ``columns_added``."""
    summary = match_summary(table.meta) or {}
    added = summary.get("columns_added")
    added = [c for c in added if isinstance(c, str)] if isinstance(added, (list, tuple)) else []
    names = dict.fromkeys(list(SPEC_COLUMNS) + list(SDSS_EXTRA) + added)
    return [c for c in names if c in table.colnames]


def _check_match(table, catalog, radius, quality, columns, overwrite):
    """The checked radius and quality cut, and the columns of an earlier match to remove;
    refuses a table matched before (without ``overwrite``)."""
    if not isinstance(table, Table):
        raise TypeError(f"table must be an astropy Table, got {type(table).__name__}")
    radius = check_radius(radius)
    kind = catalog.lower() if isinstance(catalog, str) and catalog.lower() in (
        "sdss", "sdss-spall") else "table"
    if isinstance(quality, str) and quality == "default":
        quality = DEFAULT_QUALITY[kind]
    if isinstance(quality, str):
        quality = QualityCut(quality)  # fail early on a bad expression
    check_copied_columns(columns, kind)
    earlier = _earlier_columns(table)
    copies = [f"spec_{c}" for c in columns] if kind == "table" else []
    present = earlier + [c for c in copies if c in table.colnames and c not in earlier]
    if present and not overwrite:
        raise ValueError(f"the table has columns {present} already (from an earlier match?); "
                         "pass overwrite=True (astro-mantis match --overwrite) to replace them")
    return radius, quality, earlier


def check_copied_columns(columns, kind="table"):
    """Refuse catalog columns whose copy would replace a column the match writes.

    A column ``name`` of a catalog is copied as ``spec_<name>``; that must not be
    one of `SPEC_COLUMNS` (``spec_flags``, ``spec_sep``, ...), nor, for the SDSS
    catalogs, of `SDSS_EXTRA`. A user catalog's ``plate``, ``mjd``, ``run2d`` ...
    may be copied as ``spec_plate`` ..., which is how
    `~astro_mantis.spectro.get_spectrum` finds the spectra of such a catalog. Used by
    `~astro_mantis.spectro.match_spectroscopic` and
    `~astro_mantis.scale.match_spectroscopic_lsdb`.

    Parameters
    ----------
    columns : str, sequence of str or None
        The catalog columns to copy (a str: that one column).
    kind : {"table", "sdss", "sdss-spall"}
        A user catalog (``"table"``) or one of the SDSS catalogs.

    Returns
    -------
    list of str
        The column names, a str made a one-item list.

    Raises
    ------
    TypeError
        If ``columns`` holds something other than names.
    ValueError
        Naming the first column that would replace one of the match's own.
    """
    columns = _column_names(columns)
    own = list(SPEC_COLUMNS) + (list(SDSS_EXTRA) if kind != "table" else [])
    for name in columns:
        if f"spec_{name}" in own:
            raise ValueError(
                f"columns: {name!r} cannot be copied: as spec_{name} it would replace the "
                f"match's own column spec_{name} (the match writes {', '.join(own)}); "
                "leave it out of columns (--keep-col), or rename it in the catalog first")
    return columns


def _match_rows(ra_d, dec_d, good, failed, cat, radius):
    """Each row's nearest spectrum: (catalog index, matched, separation in arcsec,
    SpecFlag bits, number of spectra matched by more than one row)."""
    n = len(ra_d)
    rows = np.flatnonzero(good)
    idx, sep, matched_g, ambiguous_g = nearest_spectra(ra_d[rows], dec_d[rows], cat.ra,
                                                       cat.dec, radius)
    matched = np.zeros(n, dtype=bool)
    matched[rows] = matched_g
    index = np.zeros(n, dtype=np.int64)
    index[rows] = idx
    sep_all = np.full(n, np.nan)
    sep_all[rows] = sep.to_value(u.arcsec)
    flags = np.zeros(n, dtype=np.int16)
    flags[~good] |= int(SpecFlag.BAD_COORDINATE)
    # a row whose query failed is not known to have no spectrum: QUERY_FAILED only
    flags[good & ~matched & ~failed] |= int(SpecFlag.NO_MATCH)
    flags[failed] |= int(SpecFlag.QUERY_FAILED)
    flags[rows[ambiguous_g]] |= int(SpecFlag.AMBIGUOUS)
    used, counts = np.unique(index[matched], return_counts=True)
    shared_spectra = used[counts > 1]
    flags[matched & np.isin(index, shared_spectra)] |= int(SpecFlag.SHARED)
    return index, matched, sep_all, flags, int(shared_spectra.size)


def _summary(cat, radius, quality, flags, matched, n_shared_spectra, t0):
    """The ``spec_match`` entry of the table's meta."""
    def count(flag):
        return int((flags & flag).astype(bool).sum())

    summary = {
        "catalog": cat.kind, "source": cat.source, "radius_arcsec": float(radius.value),
        "quality": _quality_text(quality), "n_rows": len(flags),
        "n_matched": int(matched.sum()), "n_no_match": count(SpecFlag.NO_MATCH),
        "n_ambiguous": count(SpecFlag.AMBIGUOUS), "n_shared_rows": count(SpecFlag.SHARED),
        "n_shared_spectra": n_shared_spectra, "n_bad_coordinate": count(SpecFlag.BAD_COORDINATE),
        "n_query_failed": count(SpecFlag.QUERY_FAILED),
        "catalog_spectra": len(cat),
        "seconds": round(time.perf_counter() - t0, 3),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "astro_mantis_version": __version__,
    }
    summary.update({k: v for k, v in cat.info.items() if k not in summary})
    return summary


def _masked(values, mask, dtype=None, unit=None, name=None, fill=None):
    """A MaskedColumn over ``values`` (not copied when of the right type)."""
    data = np.asarray(values, dtype=dtype)
    if fill is not None:
        data[mask] = fill
    return MaskedColumn(data, mask=mask, unit=unit, name=name, copy=False,
                        description=_DESCRIPTIONS.get(name))


def _take(values, index, matched, fill):
    """``values[index]`` where matched, ``fill`` elsewhere (no out-of-range reads); values
    of any per-row shape (a vector column gives a vector column)."""
    values = np.asarray(values)
    dtype = values.dtype if len(values) else np.asarray([fill]).dtype
    out = np.full((len(index),) + values.shape[1:], fill, dtype=dtype)
    if len(values):
        out[matched] = values[index[matched]]
    return out


def _row_mask(rows, shape):
    """A mask of ``shape`` true on the rows ``rows`` (a boolean array over the rows)."""
    return np.broadcast_to(np.reshape(rows, (-1,) + (1,) * (len(shape) - 1)), shape).copy()


def _new_columns(cat, index, matched, sep, flags, radius):
    """The columns of the match, by name (nothing is written to the table here)."""
    new = {}
    nomatch = ~matched
    z = _take(cat.z, index, matched, np.nan)
    z_err = _take(cat.z_err, index, matched, np.nan)
    new["z_spec"] = _masked(z, nomatch, np.float64, name="z_spec")
    new["z_spec_err"] = _masked(z_err, nomatch | ~np.isfinite(z_err), np.float64,
                                name="z_spec_err")
    if cat.cls is not None and len(cat.cls):
        cls = _take(cat.cls, index, matched, "")
    else:
        cls = np.full(len(index), "", dtype="U6")
    new["spec_class"] = _masked(cls, nomatch | (cls == ""), name="spec_class")
    ids = np.ma.asarray(cat.ids)
    id_fill = 0 if ids.dtype.kind in "iuf" else ""
    id_mask = nomatch.copy()
    if np.ma.is_masked(ids):  # a spectrum without an identifier: its spec_id is masked
        id_mask[matched] |= np.ma.getmaskarray(ids)[index[matched]]
    new["spec_id"] = _masked(_take(np.ma.getdata(ids), index, matched, id_fill), id_mask,
                             name="spec_id", fill=id_fill)
    new["spec_sep"] = _masked(sep, nomatch, np.float64, unit=u.arcsec, name="spec_sep",
                              fill=np.nan)
    # the same text on every matched row: kept as bytes, one byte a character (astropy
    # gives str for its elements and compares it with str)
    label = cat.source.encode("utf-8")
    source = np.zeros(len(index), dtype=f"S{max(1, len(label))}")
    source[matched] = label
    new["spec_source"] = _masked(source, nomatch, name="spec_source")
    new["spec_flags"] = Column(flags, name="spec_flags",
                               description=_DESCRIPTIONS["spec_flags"])
    for name, values in cat.extra.items():
        attrs = cat.extra_info.get(name, {})
        values = np.ma.asarray(values)
        fill = 0 if values.dtype.kind in "iufcb" else ""
        data = _take(np.ma.getdata(values), index, matched, fill)
        mask = _row_mask(nomatch, data.shape)
        if np.ma.is_masked(values):
            mask[matched] |= np.ma.getmaskarray(values)[index[matched]]
        new[name] = MaskedColumn(data, mask=mask, name=name, copy=False,
                                 unit=attrs.get("unit"),
                                 description=(attrs.get("description")
                                              or _DESCRIPTIONS.get(name)),
                                 format=attrs.get("format"))
    new["z_spec"].meta["radius_arcsec"] = float(radius.value)
    return new
