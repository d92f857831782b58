# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The training-shard format: manifest, splits, shard files; versioned.

Training, validation and test data of the network live in one directory layout,
whoever writes it: the mock sky (`astro_mantis.simulate.dataset.make_dataset`), real
cutouts of spectroscopic galaxies (`astro_mantis.spectro.build_training_set`); and
one reader, `astro_mantis.training.data.ShardDataset` (or `load_shard`,
`iter_shards`). This module is that contract: the writers and the readers use its
names, and nothing else of one another.

Layout on disk
==============
::

    PATH/manifest.json
    PATH/train/shard_00000.npz, shard_00001.npz, ...
    PATH/validation/shard_00000.npz, ...
    PATH/test/shard_00000.npz, ...

Each split (`SPLITS`) holds its galaxies in shards of ``shard_size`` (the last shard
of a split may hold fewer). `assign_splits` deals galaxies to the splits by a
permutation drawn from a seed.

A shard is a ``.npz`` file (an uncompressed zip archive of ``.npy`` arrays, readable
with `numpy.load` without ``allow_pickle``; `write_npz` writes it byte-reproducibly
and atomically) with, for its ``m`` galaxies:

=====================  ========================  ============================================
member                 shape, dtype              content
=====================  ========================  ============================================
``id``                 (m,) int64                catalog row (``id`` column) of each galaxy
``z``                  (m,) float64              true redshift
``ebv_csfd``           (m,) float64              CSFD-like E(B−V) (mag), a model input
``ebv_planck``         (m,) float64              Planck-like E(B−V) (mag), a model input
``flags``              (m,) int64                `~astro_mantis.MantisFlag` bits, as the
                                                 client would set them
``galex``              (m, 2, 32, 32) float32    NUV, FUV in counts s\\ :sup:`-1`
``panstarrs``          (m, 5, 170, 170)          g r i z y in linear counts; float16
                       float16 or float32        (default, see below) or float32
``panstarrs_scale``    (m, 5) float32            float16 only: pixel = stored value × scale
``panstarrs_exptime``  (m, 5) float64            stack ``EXPTIME`` (s); AB zero point
                                                 25 + 2.5 log10(EXPTIME)
``unwise``             (m, 2, 32, 32) float32    W1, W2 in Vega nanomaggies
``catalog``            (m,) structured           the galaxy's catalog row
``columns``            0-d str                   JSON: unit, description and dtype of each
                                                 catalog column (`column_meta`)
=====================  ========================  ============================================

Only the surveys written are present (in the order of `SURVEYS`); their planes are
in model channel order and native units, as the survey readers of
`astro_mantis.surveys` return them. A survey missing at a position is all NaN and
flagged with its ``<SURVEY>_MISSING`` bit.

Pan-STARRS at float16
---------------------
To halve the disk space, PS1 pixels are stored as float16 by default
(`float16_planes`): each (galaxy, band) plane is divided by a power of two
(``panstarrs_scale``, 1 unless the plane's brightest pixel exceeds 32768 counts) so
the division is exact, then rounded to 11 significant bits: every pixel keeps its
value to a relative 2\\ :sup:`-11` (0.05 %). `load_shard` returns float32 with the
scale applied.

The manifest
------------
``manifest.json`` (`new_manifest`, `write_manifest`, `read_manifest`) records
`FORMAT` and `FORMAT_VERSION`, the galaxies per split and their shard files, the
seed, how the galaxies were made (``config``), the package version, band order,
units, pixel scales and zero points of each survey (`survey_facts`, from
`astro_mantis.surveys`), the catalog columns, the PS1 precision, the provenance,
and whether the set is complete. A reader refuses a manifest of another format or
of a newer version than it knows.
"""
import json
import math
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ._version import __version__
from .atomic import atomic_open
from .surveys import DEFAULT_SURVEYS, get_survey

__all__ = ["FORMAT", "FORMAT_VERSION", "SPLITS", "SURVEYS", "PS1_DTYPES",
           "check_split", "check_surveys", "check_ps1_dtype", "check_shard_size",
           "assign_splits", "survey_facts", "column_meta",
           "table_from_rows", "float16_planes", "new_manifest", "write_manifest",
           "read_manifest", "shard_paths", "write_npz", "json_array", "read_json_member",
           "write_shard", "shard_complete", "load_shard", "iter_shards"]

#: The format's name in every manifest (``"format"``). It keeps the name of the module
#: that first defined it, so that sets written before this module existed still read.
FORMAT = "astro_mantis.simulate.dataset"

#: Version of the format (``"format_version"``): raised when a change would mislead
#: an older reader; a reader refuses manifests of a newer version than its own.
FORMAT_VERSION = 1

#: Split names, in the order of the split fractions.
SPLITS = ("train", "validation", "test")

#: Surveys a shard may hold, in the order they are written (the model's channel order).
SURVEYS = tuple(DEFAULT_SURVEYS)

#: Storage types of the Pan-STARRS pixels.
PS1_DTYPES = ("float16", "float32")

_F16_LIMIT = 32768.0  # planes brighter than this are scaled by a power of two first
_EPOCH = (1980, 1, 1, 0, 0, 0)
_COMPRESSION = {"stored": zipfile.ZIP_STORED, "deflate": zipfile.ZIP_DEFLATED,
                "bzip2": zipfile.ZIP_BZIP2}


# ---------------------------------------------------------------------------- checks
def check_split(split):
    """Split fractions (train, validation, test), normalised to sum to 1.

    Parameters
    ----------
    split : sequence of 3 float
        Non-negative fractions with a positive sum.

    Returns
    -------
    list of float

    Raises
    ------
    ValueError
        For anything else.

    Examples
    --------
    >>> check_split((8, 1, 1))
    [0.8, 0.1, 0.1]
    """
    try:
        fractions = [float(f) for f in split]
    except (TypeError, ValueError):
        raise ValueError("split must be three fractions (train, validation, test), "
                         f"got {split!r}") from None
    if len(fractions) != 3 or any(not math.isfinite(f) or f < 0 for f in fractions) \
            or sum(fractions) <= 0:
        raise ValueError("split must be three non-negative fractions (train, validation, "
                         f"test) with a positive sum, got {split!r}")
    total = sum(fractions)
    return [f / total for f in fractions]


def check_surveys(surveys):
    """The surveys to write, in shard order (`SURVEYS`).

    Parameters
    ----------
    surveys : str or sequence of str
        Survey names (case-insensitive).

    Returns
    -------
    tuple of str

    Raises
    ------
    ValueError
        If a name is unknown, not one of `SURVEYS`, or none is given.
    """
    if isinstance(surveys, str):
        surveys = [surveys]
    names = {get_survey(s).name for s in surveys}
    unknown = names - set(SURVEYS)
    if unknown or not names:
        raise ValueError(f"surveys must be among {SURVEYS}, got {surveys!r}")
    return tuple(s for s in SURVEYS if s in names)


def check_ps1_dtype(ps1_dtype):
    """Refuse a Pan-STARRS storage type other than those of `PS1_DTYPES`.

    Parameters
    ----------
    ps1_dtype : str

    Returns
    -------
    str
        ``ps1_dtype``.

    Raises
    ------
    ValueError
        If it is not ``"float16"`` or ``"float32"``.
    """
    if ps1_dtype not in PS1_DTYPES:
        raise ValueError(f"ps1_dtype must be 'float16' or 'float32', got {ps1_dtype!r}")
    return ps1_dtype


def check_shard_size(shard_size):
    """Galaxies per shard, a positive integer.

    Parameters
    ----------
    shard_size : int

    Returns
    -------
    int

    Raises
    ------
    ValueError
        For anything but a positive integer.
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, (int, np.integer)) \
            or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    return int(shard_size)


def assign_splits(n, fractions, seed):
    """Indices of each split, from a permutation drawn from the seed.

    Parameters
    ----------
    n : int
        Number of galaxies.
    fractions : sequence of float
        Train, validation and test fractions (summing to 1, see `check_split`).
    seed : int
        Seed of the permutation.

    Returns
    -------
    dict
        Split name → sorted integer array of indices; the splits are disjoint and
        cover ``range(n)``, with ``round(f n)`` galaxies in the training and
        validation sets and the rest in the test set.

    Examples
    --------
    >>> parts = assign_splits(10, (0.8, 0.1, 0.1), seed=0)
    >>> [len(parts[name]) for name in SPLITS]
    [8, 1, 1]
    """
    from .simulate.service_format import stable_seed

    perm = np.random.default_rng(stable_seed(seed, "dataset-split")).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = min(int(round(fractions[1] * n)), n - n_train)
    bounds = (0, n_train, n_train + n_val, n)
    return {name: np.sort(perm[bounds[k]:bounds[k + 1]]) for k, name in enumerate(SPLITS)}


# ---------------------------------------------------------------------------- manifest
def survey_facts(surveys):
    """The manifest's ``surveys_info``: bands, shape, pixel scale, unit and zero points.

    Parameters
    ----------
    surveys : sequence of str
        Survey names.

    Returns
    -------
    dict
        Survey name → facts, read from `astro_mantis.surveys`.
    """
    out = {}
    for name in surveys:
        s = get_survey(name)
        facts = {"bands": list(s.bands), "shape": [len(s.bands), s.size, s.size],
                 "pixscale_arcsec": float(s.pixscale.to_value("arcsec")), "unit": str(s.unit)}
        if name == "panstarrs":
            facts["zeropoint_ab"] = (f"{s.zeropoint_1s:g} + 2.5 log10(EXPTIME); member "
                                     "panstarrs_exptime")
        else:
            facts["zeropoint_ab"] = [float(z) for z in s.zeropoints()]
        if name == "unwise":
            facts["zeropoint_vega"] = s.vega_zeropoint
            facts["ab_minus_vega"] = [s.vega_to_ab[b] for b in s.bands]
        out[name] = facts
    return out


def column_meta(catalog):
    """Unit, description, dtype and shape of each column of a catalog table.

    Parameters
    ----------
    catalog : `~astropy.table.Table`

    Returns
    -------
    dict
        Column name → ``{"unit", "description", "dtype", "shape"}``: the manifest's
        ``columns`` and each shard's ``columns`` member.
    """
    meta = {}
    for name in catalog.colnames:
        col = catalog[name]
        unit = getattr(col, "unit", None)
        meta[name] = {"unit": "" if unit is None else str(unit),
                      "description": getattr(col, "description", None) or "",
                      "dtype": col.dtype.str, "shape": list(col.shape[1:])}
    return meta


def table_from_rows(rows, columns):
    """A `~astropy.table.Table` of catalog rows, with the units and descriptions of
    `column_meta`.

    Parameters
    ----------
    rows : structured `numpy.ndarray`
        A shard's ``catalog`` member.
    columns : dict
        As returned by `column_meta`.

    Returns
    -------
    `~astropy.table.Table`
    """
    from astropy.table import Table

    table = Table(np.asarray(rows))
    for name, info in columns.items():
        if name not in table.colnames:
            continue
        if info.get("unit"):
            table[name].unit = info["unit"]
        if info.get("description"):
            table[name].description = info["description"]
    return table


def new_manifest(plan, *, simulated, provenance, splits, ps1_dtype, columns, complete, **extra):
    """A manifest with every field the format requires, in the order it is written.

    Parameters
    ----------
    plan : dict
        What made the set: ``n``, ``seed``, ``config``, ``split_fractions``,
        ``shard_size``, ``surveys``, ``ps1_dtype``, ``version``.
    simulated : bool
        Whether the galaxies are simulated.
    provenance : str
        Where the galaxies come from.
    splits : dict
        Split name → ``{"n": galaxies, "shards": [{"file": relative path, "n": ...}]}``.
    ps1_dtype : {"float16", "float32"}
        Storage of the Pan-STARRS pixels.
    columns : dict
        `column_meta` of the catalog rows.
    complete : bool
        Whether every shard is written.
    **extra
        Further entries, appended.

    Returns
    -------
    dict
    """
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, **plan,
        "created_by": f"astro_mantis {__version__}",
        "simulated": bool(simulated),
        "provenance": provenance,
        "splits": splits,
        "surveys_info": survey_facts(plan["surveys"]),
        "panstarrs_precision": (
            "float16 of pixel / panstarrs_scale (a power of two): relative rounding "
            "2**-11 per pixel" if ps1_dtype == "float16" else "float32, unchanged"),
        "missing_surveys": "all-NaN planes, flagged in 'flags' (MantisFlag bits)",
        "columns": columns,
        "complete": bool(complete),
        **extra,
    }


def write_manifest(directory, manifest):
    """Write ``manifest.json`` into a directory, atomically (`~astro_mantis.atomic.atomic_open`).

    Parameters
    ----------
    directory : str or path-like
    manifest : dict
    """
    path = Path(directory) / "manifest.json"
    # a temporary file of its own (writers of one directory do not collide), flushed to
    # disk before the rename, and removed when the manifest cannot be written
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=False)
        fh.write("\n")


def read_manifest(directory):
    """Read ``manifest.json`` of a shard directory.

    Parameters
    ----------
    directory : str or path-like

    Returns
    -------
    dict

    Raises
    ------
    FileNotFoundError
        Without a ``manifest.json``.
    ValueError
        If it is not JSON, is of another format, or of a newer `FORMAT_VERSION`.
    """
    path = Path(directory) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"no manifest.json in {directory}: not a dataset made by "
                                "make_dataset")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not readable JSON ({exc})") from None
    fmt = manifest.get("format", FORMAT) if isinstance(manifest, dict) else None
    if fmt != FORMAT:
        raise ValueError(f"{path} is not an astro_mantis shard manifest (format {fmt!r})")
    version = manifest.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {version!r}; this astro_mantis "
                         f"({__version__}) reads versions up to {FORMAT_VERSION}: upgrade it")
    return manifest


def shard_paths(directory, split="train"):
    """Paths of the shards of one split, in order, as the manifest lists them.

    Parameters
    ----------
    directory : str or path-like
        A shard directory.
    split : {"train", "validation", "test"}, optional

    Returns
    -------
    list of `pathlib.Path`

    Raises
    ------
    ValueError
        For an unknown split or an incomplete set.
    FileNotFoundError
        Without a ``manifest.json``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    manifest = read_manifest(directory)
    if not manifest.get("complete"):
        raise ValueError(f"the dataset in {directory} is incomplete: rerun make_dataset "
                         "with the same arguments to finish it")
    return [Path(directory) / shard["file"] for shard in manifest["splits"][split]["shards"]]


# ---------------------------------------------------------------------------- files
def json_array(obj):
    """A JSON document as a 0-d unicode array (loads without ``allow_pickle``)."""
    return np.array(json.dumps(obj, sort_keys=True, separators=(",", ":")))


def read_json_member(npz, name):
    """Decode a member written by `json_array` (or any JSON text member)."""
    return json.loads(str(npz[name][()]))


def write_npz(path, arrays, compression="stored"):
    """Write arrays to an ``.npz`` file, byte-reproducibly and atomically.

    `numpy.savez` stamps every member with the current time, so two runs never give
    identical bytes; this writes the same layout (a zip archive of ``.npy`` members,
    readable with `numpy.load`) with fixed timestamps, through a temporary file that
    is flushed to disk and renamed into place (`~astro_mantis.atomic.atomic_open`), so
    a reader never sees a partial file.

    Parameters
    ----------
    path : str or path-like
        Destination; its directory must exist.
    arrays : dict
        Member name → array (written in the dict's order). Object arrays are
        refused: the file must load with ``allow_pickle=False``.
    compression : {"stored", "deflate", "bzip2"}, optional
        Zip compression of the members (all readable by `numpy.load`).

    Returns
    -------
    int
        Size of the written file in bytes.
    """
    path = os.fspath(path)
    method = _COMPRESSION[compression]
    # a temporary file flushed to disk and renamed into place; removed on any error
    with atomic_open(path, "wb") as fh:
        level = None if method == zipfile.ZIP_STORED else 9
        with zipfile.ZipFile(fh, "w", compression=method, allowZip64=True,
                             compresslevel=level) as zf:
            for name, value in arrays.items():
                value = np.asanyarray(value)
                if value.dtype.hasobject:
                    raise TypeError(f"member {name!r} has object dtype; not writable")
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
                info.compress_type = method
                info.external_attr = 0o644 << 16
                # streamed member by member: no second copy of a large array
                with zf.open(info, mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, value, allow_pickle=False)
        os.chmod(fh.name, 0o644)
    return os.path.getsize(path)


def float16_planes(cube):
    """PS1 planes (..., 5, ny, nx) as float16 and the power-of-two scale of each plane.

    Parameters
    ----------
    cube : array-like
        Pixels in counts; NaN planes (surveys not covered) are kept NaN, and NaN or
        ±inf pixels stay NaN or ±inf (the scale is set by the finite pixels).

    Returns
    -------
    stored : `numpy.ndarray` of float16
        ``cube / scale``, rounded to 11 significant bits.
    scale : `numpy.ndarray` of float32
        A power of two per plane (1 unless the plane's finite peak exceeds 32768).
    """
    magnitude = np.abs(cube)
    infinite = np.isinf(magnitude)
    if infinite.any():  # the peak of the finite pixels: ±inf stays ±inf, nothing else does
        magnitude[infinite] = np.nan
    with warnings.catch_warnings():  # all-NaN planes: surveys not covered
        warnings.simplefilter("ignore", RuntimeWarning)
        peak = np.nanmax(magnitude, axis=(-2, -1))
    peak = np.where(np.isfinite(peak), peak, 0.0)
    exponent = np.ceil(np.log2(np.maximum(peak, 1.0) / _F16_LIMIT))
    scale = np.exp2(np.maximum(exponent, 0.0)).astype(np.float32)
    stored = (cube / scale[..., None, None]).astype(np.float16)
    return stored, scale


_REQUIRED = ("id", "z", "ebv_csfd", "ebv_planck", "flags", "catalog", "columns")


def write_shard(path, arrays):
    """Write one shard, checking that it holds the members the format requires.

    Parameters
    ----------
    path : str or path-like
        ``<split>/shard_NNNNN.npz`` in a shard directory (its folder must exist).
    arrays : dict
        The members (see the module notes), in the order to write them.

    Returns
    -------
    int
        Size of the file in bytes.

    Raises
    ------
    ValueError
        If a required member is missing, a member has another number of galaxies,
        or a survey not in `SURVEYS` is given.
    """
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise ValueError(f"a shard needs the members {missing}")
    m = len(arrays["id"])
    for key, value in arrays.items():
        if key != "columns" and len(value) != m:
            raise ValueError(f"shard member {key!r} has {len(value)} rows, 'id' has {m}")
    images = [k for k in arrays if k not in _REQUIRED and not k.startswith("panstarrs_")]
    unknown = [k for k in images if k not in SURVEYS]
    if unknown:
        raise ValueError(f"unknown shard member(s) {unknown}; surveys are {SURVEYS}")
    return write_npz(path, arrays)


def shard_complete(path, ids):
    """Whether a shard file exists, is readable and holds exactly the galaxies ``ids``.

    Parameters
    ----------
    path : str or path-like
    ids : array-like of int
        The ``id`` member expected.

    Returns
    -------
    bool
    """
    if not os.path.exists(path):
        return False
    try:
        with np.load(path, allow_pickle=False) as npz:
            stored = npz["id"]
    except Exception:  # noqa: BLE001 - any unreadable file is simply redone
        return False
    return np.array_equal(stored, ids)


def load_shard(path, missing=np.nan):
    """Read one shard.

    Parameters
    ----------
    path : str or path-like
        A ``shard_NNNNN.npz`` file.
    missing : float, optional
        Value given to the pixels of surveys flagged missing (GALEX holes, PS1
        south of −30°); default NaN, as stored. PS1 chip gaps stay NaN.

    Returns
    -------
    dict
        ``id``, ``z``, ``ebv_csfd``, ``ebv_planck``, ``flags`` (arrays of
        length m); ``galex``, ``panstarrs``, ``unwise`` (float32 cutouts,
        PS1 scaled back to counts) for the surveys present;
        ``panstarrs_exptime``; ``catalog`` (`~astropy.table.Table` of the m
        catalog rows with units and descriptions).
    """
    out = {}
    with np.load(path, allow_pickle=False) as npz:
        names = set(npz.files)
        for key in ("id", "z", "ebv_csfd", "ebv_planck", "flags", "panstarrs_exptime"):
            if key in names:
                out[key] = npz[key]
        for name in SURVEYS:
            if name not in names:
                continue
            data = npz[name]
            if name == "panstarrs" and "panstarrs_scale" in names:
                data = data.astype(np.float32) * npz["panstarrs_scale"][:, :, None, None]
            data = np.asarray(data, dtype=np.float32)
            if not (isinstance(missing, float) and math.isnan(missing)):
                gone = (out["flags"] & int(get_survey(name).flag)) != 0
                data[gone] = missing
            out[name] = data
        columns = read_json_member(npz, "columns") if "columns" in names else {}
        out["catalog"] = table_from_rows(npz["catalog"], columns)
    return out


def iter_shards(directory, split="train", missing=np.nan):
    """Iterate over the shards of one split, in order.

    Parameters
    ----------
    directory : str or path-like
        A shard directory.
    split : {"train", "validation", "test"}, optional
    missing : float, optional
        As in `load_shard`.

    Yields
    ------
    dict
        `load_shard` of each shard.

    Raises
    ------
    ValueError
        For an unknown split or an incomplete set.
    """
    for path in shard_paths(directory, split):
        yield load_shard(path, missing=missing)
