# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Training sets from spectroscopic truth: `build_training_set`.

From a table whose rows carry a spectroscopic redshift (``z_spec``, as
`~astro_mantis.spectro.match_spectroscopic` writes it), `build_training_set` fetches
each selected row's GALEX, Pan-STARRS and unWISE cutouts through
`~astro_mantis.Mantis` (with its on-disk cache, so a rerun fetches nothing) and writes
them in the training-shard format of `astro_mantis.shards` (``manifest.json`` and
``train/``, ``validation/``, ``test/`` shards of raw cutouts in native units, the
redshift, the two dust values, flags and the catalog row). That is the format
``astro-mantis train --data DIR`` reads (`~astro_mantis.training.data.ShardDataset`
early-fuses each shard once when it opens it), so the fusion applied in training is
the one applied at inference.

Which rows
----------
Rows with a finite, unmasked redshift inside ``z_range`` (default the model's bins,
0 <= z < 1.6) and a valid position. Rows whose cutouts could not be fetched (a request
kept failing, ``FETCH_FAILED``) are left out unless ``keep_failed=True``: transient
failures are not coverage gaps the model should learn. Surveys that do not cover a
position (PS1 south of -30 deg, GALEX holes) are kept as in the simulated sets: all-NaN
planes, flagged. Every row left out is counted by reason in the manifest.

Splits
------
``split_method="random"``: a permutation drawn from ``seed``; the first
``round(f_train n)`` rows are the training set, the next ``round(f_validation n)`` the
validation set, the rest the test set (`~astro_mantis.shards.assign_splits`).

``split_method="healpix"``: whole HEALPix cells (``nside``, nested; 32 gives cells of
about 1.8 deg) go to one split, so that galaxies in the same cell, which share image
artefacts, depth and large-scale structure, do not straddle train and test (neighbours
on either side of a cell boundary still can; larger cells make that rarer). Cells are
taken in an order drawn from ``seed`` and given to the train, validation and test
splits in turn as their galaxy counts fill the fractions (`assign_healpix_splits`),
so the fractions hold to within a cell's worth of galaxies.

Shard contents and manifest
---------------------------
The shard members are those of `astro_mantis.shards` (``id``, ``z``,
``ebv_csfd``, ``ebv_planck``, ``flags``, the surveys' cutouts, ``panstarrs_scale``,
``panstarrs_exptime``, ``catalog``, ``columns``); ``id`` is ``id_col`` of the row
(integer, unmasked, within int64) or its row number in the input table, ``z`` is its
spectroscopic redshift and ``catalog`` holds its scalar columns and ``input_row``, its
row number. The two dust values come from where inference takes them (``ebv``, as for
`~astro_mantis.table.add_redshift_columns`: columns, an array, a function, or by
default the ``dustmaps`` package's maps when they are installed); where they are
unknown they are stored as NaN and the row is flagged ``DUST_UNKNOWN`` (the fusion
gives the network 0, as at inference). The manifest has every field the simulated
sets' have,
``simulated`` false unless the table says so, and the provenance: the input rows, the
spectroscopic match (``table.meta["spec_match"]``, or the ``SPECMTCH`` keyword of a
FITS file written by ``astro-mantis match``), the selection and split, the
cutout services and the time it took.
"""
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Column, MaskedColumn, Table

from .._version import __version__
from ..config import conf as mantis_conf
from ..flags import MantisFlag
from ..logger import log
from ..surveys import DEFAULT_SURVEYS, get_survey
from ..pdf import ZMAX, ZMIN
from ..progress import progress_bar
from ..shards import (SPLITS, assign_splits, check_ps1_dtype, check_shard_size, check_split,
                      check_surveys, column_meta, float16_planes, new_manifest, write_manifest,
                      write_shard)

__all__ = ["build_training_set", "assign_healpix_splits", "SPLIT_METHODS"]

#: Ways of splitting the rows into train, validation and test sets.
SPLIT_METHODS = ("random", "healpix")
_MAX_CATALOG_ELEMENTS = 64  # per-row size above which a column is left out of ``catalog``
_PS1_BANDS = ("g", "r", "i", "z", "y")


def assign_healpix_splits(ra, dec, fractions, nside=32, seed=0):
    """Split positions into train, validation and test sets by whole HEALPix cells.

    Parameters
    ----------
    ra, dec : array-like
        Positions in degrees (ICRS).
    fractions : sequence of 3 float
        Train, validation and test fractions of the positions (normalised to their sum).
    nside : int
        HEALPix resolution (a power of 2); cells are about ``58.6 / nside`` degrees
        across.
    seed : int
        Seed of the order in which cells are dealt out.

    Returns
    -------
    dict
        ``"train"``, ``"validation"``, ``"test"`` -> sorted indices into ``ra``; no cell
        is shared between two splits.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_mantis.spectro import assign_healpix_splits
    >>> rng = np.random.default_rng(1)
    >>> ra, dec = rng.uniform(150, 160, 2000), rng.uniform(0, 10, 2000)
    >>> parts = assign_healpix_splits(ra, dec, (0.8, 0.1, 0.1), nside=16)
    >>> sum(len(v) for v in parts.values())
    2000
    """
    from astropy_healpix import HEALPix

    fractions = check_split(fractions)
    ra = np.asarray(ra, dtype=float)
    dec = np.asarray(dec, dtype=float)
    n = len(ra)
    if n == 0:
        return {name: np.zeros(0, dtype=np.int64) for name in SPLITS}
    hp = HEALPix(nside=int(nside), order="nested")
    pix = np.asarray(hp.lonlat_to_healpix(ra * u.deg, dec * u.deg), dtype=np.int64)
    cells, inverse, counts = np.unique(pix, return_inverse=True, return_counts=True)
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6865616c])).permutation(
        len(cells))
    bounds = np.cumsum(fractions) * n
    before = np.concatenate([[0], np.cumsum(counts[order])[:-1]])
    middle = before + 0.5 * counts[order]
    which = np.minimum(np.searchsorted(bounds, middle, side="right"), 2)
    cell_split = np.empty(len(cells), dtype=np.int64)
    cell_split[order] = which
    row_split = cell_split[inverse.reshape(-1)]
    return {name: np.flatnonzero(row_split == k) for k, name in enumerate(SPLITS)}


def _select(table, z_col, ra_d, dec_d, good, z_range):
    if z_col not in table.colnames:
        raise KeyError(f"no column {z_col!r} (spectroscopic redshift); the columns are: "
                       f"{', '.join(table.colnames)}; run match_spectroscopic first or pass "
                       "z_col=")
    col = table[z_col]
    z = np.ma.filled(np.ma.asarray(getattr(col, "value", col)).astype(float), np.nan)
    finite = np.isfinite(z)
    lo, hi = float(z_range[0]), float(z_range[1])
    in_range = finite & (z >= lo) & (z < hi)
    skipped = {"no spectroscopic redshift": int((~finite).sum()),
               f"redshift outside [{lo}, {hi})": int((finite & ~in_range).sum()),
               "bad coordinate": int((in_range & ~good).sum())}
    return z, np.flatnonzero(in_range & good), skipped


def _dust(table, ra_d, dec_d, good, ebv):
    """(CSFD-like, Planck-like) E(B-V) per row, NaN where unknown; and their source."""
    from ..table import dust_values

    coords = SkyCoord(np.where(good, ra_d, np.nan) * u.deg, np.where(good, dec_d, np.nan)
                      * u.deg, frame="icrs")
    values, unknown, source = dust_values(table, coords, good, ebv)
    values = values.astype(np.float64)
    values[unknown] = np.nan
    return (values[:, 0], values[:, 1]), source


def _ids(table, id_col, rows):
    """The int64 id of every row of the table (its row number without ``id_col``); the
    ids of ``rows``, the rows kept, must be integers, unmasked and within int64."""
    if id_col is None:
        return np.arange(len(table), dtype=np.int64)
    col = table[id_col]
    data = np.ma.getdata(np.ma.asarray(col))
    if data.dtype.kind not in "iu" or data.ndim != 1:
        raise ValueError(f"id_col {id_col!r} must be an integer column, got dtype "
                         f"{data.dtype}" + (f" and shape {data.shape}" if data.ndim != 1
                                            else ""))
    hint = ("; leave id_col (--id-col) out to store the row number instead (every column "
            "of the row, spec_id included, is kept in the shards' catalog anyway)")
    masked = np.ma.getmaskarray(np.ma.asarray(col))[rows]
    if masked.any():
        raise ValueError(f"id_col {id_col!r} is masked in {int(masked.sum())} of the "
                         f"{rows.size} row(s) kept (e.g. row {int(rows[masked][0])}){hint}")
    if data.dtype.kind == "u" and data.dtype.itemsize == 8:
        big = data[rows] > np.iinfo(np.int64).max
        if big.any():
            raise ValueError(f"id_col {id_col!r} has {int(big.sum())} value(s) above the "
                             f"int64 range of the stored ids (e.g. {int(data[rows][big][0])} "
                             f"in row {int(rows[big][0])}; SDSS specObjIDs of plates >= "
                             f"8192 are){hint}")
    return data.astype(np.int64)


def _catalog_table(table):
    """The table's columns that fit a structured array (scalars, small vectors)."""
    out = Table()
    left_out = []
    for name in table.colnames:
        col = table[name]
        if isinstance(col, u.Quantity) and not isinstance(col, Column):
            col = Column(col.value, unit=col.unit, name=name)
        if not isinstance(col, Column) or col.dtype.kind == "O" \
                or int(np.prod(col.shape[1:], dtype=np.int64)) > _MAX_CATALOG_ELEMENTS:
            left_out.append(name)
            continue
        if isinstance(col, MaskedColumn):
            kind = col.dtype.kind
            fill = np.nan if kind == "f" else ("" if kind in "US" else 0)
            col = Column(col.filled(fill), name=name, unit=col.unit,
                         description=col.description)
        out[name] = col
    out["input_row"] = np.arange(len(table), dtype=np.int64)
    out["input_row"].description = "row number in the input table"
    return out, left_out


def _plan(path, overwrite):
    root = Path(path)
    manifest = root / "manifest.json"
    if manifest.exists() and not overwrite:
        raise ValueError(f"{root} holds a training set already (manifest.json); choose another "
                         "directory or pass overwrite=True (astro-mantis build-training-set "
                         "--overwrite)")
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    return root


def build_training_set(table, path, *, z_col="z_spec", ra="ra", dec="dec", coord=None,
                       id_col=None, ebv=None,
                       split=(0.8, 0.1, 0.1), split_method="random", nside=32, seed=0,
                       shard_size=256, surveys=DEFAULT_SURVEYS, ps1_dtype="float16",
                       z_range=(ZMIN, ZMAX), keep_failed=False, cache=True, progress=None,
                       overwrite=False):
    """Fetch the cutouts of the rows with a spectroscopic redshift and write training shards.

    See the module notes for the selection, the splits and the format.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Rows with positions and a spectroscopic redshift.
    path : str or path-like
        Output directory (created); an existing training set there is refused unless
        ``overwrite``.
    z_col : str
        Redshift column (default ``z_spec``).
    ra, dec, coord : str
        Position columns, as for `~astro_mantis.spectro.match_spectroscopic`.
    id_col : str, optional
        Integer column to store as each galaxy's ``id`` (default: its row number). The
        ids are stored as int64: a masked id, or one beyond the int64 range (SDSS
        ``specObjID`` of plates >= 8192, in a uint64 ``spec_id``), in a row kept is an
        error; the row number, and the row's columns in the shard's catalog, then do.
    ebv : str, (str, str), array-like, `~astropy.units.Quantity` or callable, optional
        The Milky Way E(B-V) values, the model's two extra inputs, as for
        `~astro_mantis.table.dust_values`: one column name (for both), two column names
        (CSFD-like, Planck-like), an array, or a function of positions. Default: the
        ``dustmaps`` package's maps when installed; unknown values are NaN and flagged
        ``DUST_UNKNOWN``.
    split : (float, float, float)
        Train, validation and test fractions.
    split_method : {"random", "healpix"}
        Random rows, or whole HEALPix cells per split (see the module notes).
    nside : int
        HEALPix resolution of ``split_method="healpix"``.
    seed : int
        Seed of the split.
    shard_size : int
        Galaxies per shard (and per batch of cutout requests).
    surveys : sequence of str
        Surveys to fetch (default all three).
    ps1_dtype : {"float16", "float32"}
        Storage of the Pan-STARRS pixels (as in the simulated sets).
    z_range : (float, float)
        Redshifts kept, ``low <= z < high`` (default the model's 400 bins).
    keep_failed : bool
        Keep rows whose cutout requests failed (their planes NaN and flagged).
    cache : bool
        Read and write the cutout cache (``astro_mantis.conf.cache_dir``).
    progress : bool, optional
        Show a progress bar (default: for more than 10 galaxies).
    overwrite : bool
        Replace a training set already in ``path``. It is removed (its manifest first)
        before the new one is written, whose manifest comes last: a rebuild that fails
        leaves no training set, never a manifest listing missing shards.

    Returns
    -------
    dict
        The manifest written to ``path/manifest.json``.

    Raises
    ------
    KeyError
        If ``z_col`` or a position column is missing.
    ValueError
        For invalid arguments, no selectable row, or an existing training set without
        ``overwrite``.
    """
    from .matching import _positions, match_summary

    t0 = time.perf_counter()
    fractions, shard_size, surveys, nside = _check_arguments(
        table, split, shard_size, surveys, split_method, ps1_dtype, nside, id_col)
    ra_d, dec_d, good = _positions(table, ra, dec, coord)
    z_all, rows, skipped = _select(table, z_col, ra_d, dec_d, good, z_range)
    if rows.size == 0:
        raise ValueError(f"no row has a usable {z_col!r} and position ({skipped}); nothing to "
                         "build")
    ids = _ids(table, id_col, rows)  # checked before anything is written
    root = _plan(path, overwrite)
    if split_method == "random":
        parts = assign_splits(rows.size, fractions, int(seed))
    else:
        parts = assign_healpix_splits(ra_d[rows], dec_d[rows], fractions, nside, int(seed))
    ebv_all, dust_source = _dust(table, ra_d, dec_d, good, ebv)
    cat_table, left_out = _catalog_table(table)
    if left_out:
        log.info(f"build_training_set: columns {left_out} are not stored in the shards' "
                 "catalog rows (objects, mixins or more than "
                 f"{_MAX_CATALOG_ELEMENTS} values per row)")
    columns = column_meta(cat_table)
    source = _Rows(ra=ra_d, dec=dec_d, z=z_all, ids=ids,
                   ebv=ebv_all, catalog=cat_table.as_array(),
                   columns_json=json.dumps(columns, sort_keys=True), surveys=surveys,
                   half=ps1_dtype == "float16", cache=cache, keep_failed=keep_failed)

    _remove_old_set(root)
    splits_info, failed_rows, total_bytes = {}, 0, 0
    with progress_bar(progress, rows.size > 10, total=int(rows.size), unit="galaxy",
                      desc="training set") as bar:
        for name in SPLITS:
            chosen = rows[np.sort(parts[name])]
            splits_info[name], failed, nbytes = _write_split(root, name, chosen, shard_size,
                                                             source, bar)
            failed_rows += failed
            total_bytes += nbytes

    n = int(sum(s["n"] for s in splits_info.values()))
    skipped["cutout fetch failed"] = int(failed_rows)
    if n == 0:
        raise ValueError("no galaxy could be written: every selected row's cutouts failed; "
                         "see the log")
    seconds = time.perf_counter() - t0
    plan = {"n": n, "seed": int(seed),
            "config": (f"build_training_set(z_col={z_col!r}, z_range={tuple(z_range)}, "
                       f"split_method={split_method!r}, nside={nside}, "
                       f"keep_failed={bool(keep_failed)})"),
            "split_fractions": [round(f, 12) for f in fractions], "shard_size": shard_size,
            "surveys": list(surveys), "ps1_dtype": ps1_dtype, "version": __version__}
    match = match_summary(table.meta)  # spec_match, or SPECMTCH of a FITS file
    manifest = new_manifest(
        plan, simulated=table.meta.get("simulated", False),
        provenance=_provenance(n, len(table), z_col, match), splits=splits_info,
        ps1_dtype=ps1_dtype, columns=columns, complete=True,
        bytes=int(total_bytes), bytes_per_galaxy=round(total_bytes / n, 1),
        generation={"galaxies_written": n, "seconds": round(seconds, 3),
                    "galaxies_per_second": round(n / seconds, 3) if seconds > 0 else None},
        split={"method": split_method, "seed": int(seed),
               **({"nside": nside, "order": "nested"} if split_method == "healpix" else {}),
               "fractions_achieved": {k: round(v["n"] / n, 4) for k, v in splits_info.items()}},
        source={"rows_in_table": len(table), "rows_selected": int(rows.size),
                "rows_written": n, "rows_left_out": skipped, "z_col": z_col,
                "z_range": [float(z_range[0]), float(z_range[1])],
                "id": id_col or "row number in the input table",
                "dust": dust_source,
                "spec_match": match,
                "cutout_services": {"panstarrs_url": mantis_conf.panstarrs_url,
                                    "legacysurvey_url": mantis_conf.legacysurvey_url},
                "catalog_columns_left_out": left_out})
    write_manifest(root, manifest)
    counts = ", ".join(f"{k} {v['n']}" for k, v in splits_info.items())
    reasons = ", ".join(f"{k}: {v}" for k, v in skipped.items() if v) or "none"
    log.info(f"build_training_set: {n} galaxies ({counts}) in {seconds:.1f} s; "
             f"{sum(skipped.values())} row(s) left out ({reasons}); {root}")
    return manifest


def _check_arguments(table, split, shard_size, surveys, split_method, ps1_dtype, nside,
                     id_col):
    """The checked split fractions, shard size, surveys and HEALPix nside."""
    if not isinstance(table, Table):
        raise TypeError(f"table must be an astropy Table, got {type(table).__name__}")
    fractions = check_split(split)
    shard_size = check_shard_size(shard_size)
    surveys = check_surveys(surveys)
    if split_method not in SPLIT_METHODS:
        raise ValueError(f"split_method must be one of {SPLIT_METHODS}, got {split_method!r}")
    check_ps1_dtype(ps1_dtype)
    nside = int(nside)
    if nside < 1 or nside & (nside - 1):
        raise ValueError(f"nside must be a power of 2, got {nside}")
    if id_col is not None and id_col not in table.colnames:
        raise KeyError(f"no column {id_col!r}; the columns are: {', '.join(table.colnames)}")
    return fractions, shard_size, surveys, nside


@dataclass
class _Rows:
    """What a shard takes from the input rows (indexed by row number), and how."""

    ra: np.ndarray
    dec: np.ndarray
    z: np.ndarray
    ids: np.ndarray
    ebv: tuple
    catalog: np.ndarray
    columns_json: str
    surveys: tuple
    half: bool
    cache: bool
    keep_failed: bool


def _remove_old_set(root):
    """Remove the training set already in ``root`` (``overwrite=True``): its manifest
    first, then its shards, so that a manifest never lists a shard that is gone, even
    when the rebuild fails; the new manifest is written last, once every shard is."""
    for name in ("manifest.json", "manifest.json.tmp"):
        (root / name).unlink(missing_ok=True)
    for name in SPLITS:
        for old in (root / name).glob("shard_*.npz"):
            old.unlink()  # a rebuild leaves no stale shard behind


def _write_split(root, name, chosen, shard_size, source, bar):
    """Fetch and write the shards of one split; returns (its manifest entry, rows left out
    because their fetch failed, bytes written)."""
    from ..fetch import fetcher

    (root / name).mkdir(exist_ok=True)
    shards, failed, nbytes, written = [], 0, 0, 0
    for start in range(0, chosen.size, shard_size):
        batch = chosen[start:start + shard_size]
        coords = SkyCoord(source.ra[batch] * u.deg, source.dec[batch] * u.deg, frame="icrs")
        cuts = fetcher.get_cutouts(coords, surveys=source.surveys, cache=source.cache,
                                   progress=False)
        keep = [j for j, c in enumerate(cuts)
                if source.keep_failed or not c.flags & MantisFlag.FETCH_FAILED]
        failed += len(cuts) - len(keep)
        bar.update(len(cuts))
        if not keep:
            continue
        rel = f"{name}/shard_{len(shards):05d}.npz"
        nbytes += write_shard(root / rel, _shard_arrays([cuts[j] for j in keep], batch[keep],
                                                        source))
        shards.append({"file": rel, "n": len(keep)})
        written += len(keep)
    return {"n": int(written), "shards": shards}, failed, nbytes


def _shard_arrays(cuts, sel, source):
    """The members of one shard: the rows ``sel`` and their cutouts."""
    m = len(sel)
    arrays = {"id": source.ids[sel], "z": source.z[sel].astype(np.float64),
              "ebv_csfd": source.ebv[0][sel], "ebv_planck": source.ebv[1][sel]}
    flags = np.array([int(c.flags) for c in cuts], dtype=np.int64)
    flags[~(np.isfinite(arrays["ebv_csfd"]) & np.isfinite(arrays["ebv_planck"]))] |= \
        int(MantisFlag.DUST_UNKNOWN)
    cubes = {}
    for s in source.surveys:
        facts = get_survey(s)
        cubes[s] = np.full((m, len(facts.bands), facts.size, facts.size), np.nan,
                           dtype=np.float32)
    exptime = np.full((m, 5), np.nan)
    for j, cut in enumerate(cuts):
        for s, img in cut.surveys.items():
            if img.data.shape != cubes[s].shape[1:]:
                raise ValueError(f"{s} cutout of shape {img.data.shape} at row {int(sel[j])}; "
                                 f"the shard format needs {cubes[s].shape[1:]}")
            cubes[s][j] = img.data
            if s == "panstarrs":
                exptime[j] = [float(img.meta.get(f"EXPTIME{b.upper()}", np.nan))
                              for b in _PS1_BANDS]
    arrays["flags"] = flags
    for s in source.surveys:
        if s != "panstarrs":
            arrays[s] = cubes[s]
            continue
        if source.half:
            arrays["panstarrs"], arrays["panstarrs_scale"] = float16_planes(cubes[s])
        else:
            arrays["panstarrs"] = cubes[s]
        arrays["panstarrs_exptime"] = exptime
    arrays["catalog"] = source.catalog[sel]
    arrays["columns"] = np.array(source.columns_json)
    return arrays


def _provenance(n, n_table, z_col, match):
    """The manifest's provenance text."""
    return (
        f"Spectroscopic training set built by astro_mantis {__version__} "
        f"(astro_mantis.spectro.build_training_set) on "
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}: {n} of {n_table} "
        f"input rows, redshifts from column {z_col!r}"
        + (f" ({match.get('source')}, radius {match.get('radius_arcsec')} arcsec, quality "
           f"{match.get('quality')!r})" if match is not None else "")
        + f"; cutouts from {mantis_conf.panstarrs_url} and {mantis_conf.legacysurvey_url}.")
