# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Training, validation and test sets rendered from the mock sky.

`make_dataset` draws ``n`` mock galaxies (a `~astro_mantis.simulate.MockSky`
catalog), renders the three surveys' cutouts of each exactly as the services
would deliver them and the package's own survey readers
(`astro_mantis.surveys`) would return them, and writes them in shards with the
true redshift, the two dust values the model takes and the galaxy's catalog
row. `load_shard` and `iter_shards` read them back. By default the galaxies lie
at 100 per square degree near the north Galactic pole (`dataset_config`), so
the cost per galaxy does not grow with ``n``.

Layout on disk
==============
::

    PATH/manifest.json
    PATH/train/shard_00000.npz, shard_00001.npz, ...
    PATH/validation/shard_00000.npz, ...
    PATH/test/shard_00000.npz, ...

Each split holds its galaxies in catalog order, ``shard_size`` per shard (the
last shard of a split may hold fewer). Which galaxy goes to which split is a
permutation drawn from the seed: the first ``round(f_train n)`` galaxies of the
permutation are the training set, the next ``round(f_validation n)`` the
validation set, the rest the test set.

A shard is a ``.npz`` file (an uncompressed zip archive of ``.npy`` arrays,
readable with `numpy.load` without ``allow_pickle``) with, for its ``m``
galaxies:

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
``catalog``            (m,) structured           the galaxy's full catalog row (every
                                                 column of the mock sky's catalog)
``columns``            0-d str                   JSON: unit, description and dtype of each
                                                 catalog column
=====================  ========================  ============================================

Only the surveys asked for are present. The pixels are those of
`~astro_mantis.simulate.MockSky.render` at the services' default geometry
(PS1 tangent point at the galaxy), after the readers: planes in model channel
order and native units. A survey the client would report missing is all NaN
and flagged: GALEX inside a coverage hole (``GALEX_MISSING |
OUT_OF_FOOTPRINT``; the service sends zeros) and PS1 south of dec −30°
(``PANSTARRS_MISSING | OUT_OF_FOOTPRINT``); PS1 chip gaps are NaN stripes
(``NAN_PIXELS``).

Precision of Pan-STARRS at float16
----------------------------------
Raw cutouts are kept whole (no cropping); to halve the disk space, PS1 pixels
are stored as float16 by default: each (galaxy, band) plane is divided by a power
of two (``panstarrs_scale``, 1 unless the plane's brightest pixel exceeds 32768
counts) so the division is exact, then rounded to 11 significant bits. Every
pixel keeps its value to a relative 2\\ :sup:`-11` (0.05 %); a pixel at the sky
noise level σ (about 100–500 counts in the PS1 bands) is rounded by at most σ/2048, and
a bright pixel of ``v`` counts by at most ``v``/2048, below its own shot noise √v
for ``v`` < 4 × 10\\ :sup:`6` counts. `load_shard` returns float32 with the scale
applied. ``ps1_dtype="float32"`` stores the pixels unchanged.

Disk space: about 306 kB per galaxy with float16 PS1 (15 GB for 50,000
galaxies), 594 kB with float32 (30 GB).

The manifest
------------
``manifest.json`` records the galaxies per split and their shard files, the
seed, the configuration (``repr``), the package version, band order, units,
pixel scales and zero points of each survey, the catalog columns, the PS1
precision, the provenance of the mock galaxies, whether the run completed and
its generation rate.

Domain randomisation and the shifted-simulator test set
-------------------------------------------------------
The sky may vary its observing conditions per field and its galaxies' shapes
(``MockSkyConfig.randomisation``, `astro_mantis.simulate.randomise`); the
manifest's ``config`` records the `~astro_mantis.simulate.Randomisation` and
each shard's catalog rows the per-galaxy values (``rand_*`` columns). Training
data over the training ranges, and a test set of the shifted simulator (another
seed, so other galaxies, all in the test split)::

    from astro_mantis.simulate import shifted_randomisation, training_randomisation
    from astro_mantis.simulate.dataset import dataset_config, make_dataset

    make_dataset(n, path, seed=s,
                 config=dataset_config(n, randomisation=training_randomisation()))
    make_dataset(m, path2, seed=other_seed, split=(0, 0, 1),
                 config=dataset_config(m, randomisation=shifted_randomisation()))

Reproducibility and resuming
----------------------------
Everything derives from the seed: catalog, split, noise, neighbours, coverage.
Each galaxy's cutouts depend only on the seed and its position, so the shards
are byte-identical whatever the number of ``workers`` and across reruns.
Shards are written to a temporary file and renamed into place, so a shard that
exists is complete; a rerun with the same settings skips them and renders only
what is missing (an interrupted run resumes). A rerun with different settings
into the same directory is refused.
"""

import json
import math
import multiprocessing
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from astropy.table import Table

from .._version import __version__
from ..flags import MantisFlag
from ..logger import log
from ..surveys import get_survey
from ._npz import read_json_member, write_npz

__all__ = ["SPLITS", "PROVENANCE", "make_dataset", "load_shard", "iter_shards",
           "read_manifest", "shard_paths", "assign_splits", "dataset_config",
           "DEFAULT_DENSITY"]

#: Catalog galaxies per square degree of the default dataset sky (`dataset_config`).
DEFAULT_DENSITY = 100.0

#: Split names, in the order of the ``split`` fractions.
SPLITS = ("train", "validation", "test")

#: Where the mock galaxies come from (written in every manifest and sample sky).
PROVENANCE = (
    "Simulated data (astro_mantis.simulate mock sky), not observations. The galaxies' "
    "SEDs are non-negative template fits to the even-indexed rows (0, 2, 4, ...) of "
    "kcorrect's gst_tests_small.fits (real SDSS galaxies with spectroscopic redshifts); "
    "its odd-indexed rows are held out for independent evaluation and were not used.")

_FORMAT = "astro_mantis.simulate.dataset"
_FORMAT_VERSION = 1
_SURVEY_ORDER = ("galex", "panstarrs", "unwise")
_F16_LIMIT = 32768.0  # planes brighter than this are scaled by a power of two first
#: Settings that must match for a rerun into an existing directory.
_PLAN_KEYS = ("n", "seed", "config", "split_fractions", "shard_size", "surveys", "ps1_dtype",
              "version")


# ---------------------------------------------------------------------------- checks
def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_split(split):
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


def _check_surveys(surveys):
    if isinstance(surveys, str):
        surveys = [surveys]
    names = {get_survey(s).name for s in surveys}
    unknown = names - set(_SURVEY_ORDER)
    if unknown or not names:
        raise ValueError(f"surveys must be among {_SURVEY_ORDER}, got {surveys!r}")
    return tuple(s for s in _SURVEY_ORDER if s in names)


def dataset_config(n, density=DEFAULT_DENSITY, randomisation=None):
    """The default mock sky of `make_dataset`: ``n`` galaxies at a fixed density.

    The catalog is spread over a square patch of ``n / density`` square
    degrees centred on RA 185°, Dec +25° (near the north Galactic pole,
    covered by all three surveys), so that the rate of overlaps between
    catalog galaxies, and with it the rendering cost per galaxy, does not
    depend on ``n`` (the side is capped at 60°).

    Parameters
    ----------
    n : int
        Number of galaxies.
    density : float, optional
        Catalog galaxies per square degree (default 100, about the density of
        a spectroscopic survey such as SDSS; faint neighbours and stars come
        on top at their own densities).
    randomisation : `~astro_mantis.simulate.Randomisation` or dict, optional
        Domain randomisation of the sky (`astro_mantis.simulate.randomise`):
        `~astro_mantis.simulate.training_randomisation` for training sets,
        `~astro_mantis.simulate.shifted_randomisation` for the
        shifted-simulator test set. None (default): the nominal sky.

    Returns
    -------
    `~astro_mantis.simulate.MockSkyConfig`
    """
    from .sky import MockSkyConfig

    side = min(math.sqrt(n / float(density)), 60.0)
    half_ra = side / 2.0 / math.cos(math.radians(25.0))
    return MockSkyConfig(n_galaxies=n, ra_range=(185.0 - half_ra, 185.0 + half_ra),
                         dec_range=(25.0 - side / 2.0, 25.0 + side / 2.0),
                         randomisation=randomisation)


def _dataset_config(config, n):
    from .sky import MockSkyConfig

    if config is None:
        return dataset_config(n)
    if not isinstance(config, MockSkyConfig):
        raise ValueError(f"config must be a MockSkyConfig, got {type(config).__name__}")
    return replace(config, n_galaxies=n)


# ---------------------------------------------------------------------------- plan
def assign_splits(n, fractions, seed):
    """Catalog indices of each split, from a permutation drawn from the seed.

    Parameters
    ----------
    n : int
        Number of galaxies.
    fractions : sequence of float
        Train, validation and test fractions (summing to 1).
    seed : int
        Dataset seed.

    Returns
    -------
    dict
        Split name → sorted integer array of catalog indices; the splits are
        disjoint and cover ``range(n)``, with ``round(f n)`` galaxies in the
        training and validation sets and the rest in the test set.
    """
    from .service_format import stable_seed

    perm = np.random.default_rng(stable_seed(seed, "dataset-split")).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = min(int(round(fractions[1] * n)), n - n_train)
    bounds = (0, n_train, n_train + n_val, n)
    return {name: np.sort(perm[bounds[k]:bounds[k + 1]]) for k, name in enumerate(SPLITS)}


def _survey_facts(surveys):
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


def _column_meta(catalog):
    meta = {}
    for name in catalog.colnames:
        col = catalog[name]
        unit = getattr(col, "unit", None)
        meta[name] = {"unit": "" if unit is None else str(unit),
                      "description": getattr(col, "description", None) or "",
                      "dtype": col.dtype.str, "shape": list(col.shape[1:])}
    return meta


def _table_from_rows(rows, columns):
    table = Table(np.asarray(rows))
    for name, info in columns.items():
        if name not in table.colnames:
            continue
        if info.get("unit"):
            table[name].unit = info["unit"]
        if info.get("description"):
            table[name].description = info["description"]
    return table


# ---------------------------------------------------------------------------- rendering
def _float16_planes(cube):
    """PS1 planes (..., 5, ny, nx) as float16 and the power-of-two scale of each plane."""
    with warnings.catch_warnings():  # all-NaN planes: surveys not covered
        warnings.simplefilter("ignore", RuntimeWarning)
        peak = np.nanmax(np.abs(cube), axis=(-2, -1))
    peak = np.where(np.isfinite(peak), peak, 0.0)
    exponent = np.ceil(np.log2(np.maximum(peak, 1.0) / _F16_LIMIT))
    scale = np.exp2(np.maximum(exponent, 0.0)).astype(np.float32)
    stored = (cube / scale[..., None, None]).astype(np.float16)
    return stored, scale


def _render_shard(sky, target, indices, surveys, ps1_dtype, columns_json, tick=None):
    """Render the cutouts of ``indices`` and write one shard; returns the file size."""
    catalog = sky.catalog
    m = len(indices)
    rows = catalog[indices].as_array()
    if np.ma.isMaskedArray(rows):
        rows = rows.filled()
    ids = (np.asarray(catalog["id"][indices], dtype=np.int64) if "id" in catalog.colnames
           else np.asarray(indices, dtype=np.int64))
    ra = np.asarray(catalog["ra"][indices], dtype=float)
    dec = np.asarray(catalog["dec"][indices], dtype=float)
    arrays = {"id": ids}
    for name in ("z", "ebv_csfd", "ebv_planck"):
        arrays[name] = np.asarray(getattr(catalog[name], "value", catalog[name])[indices],
                                  dtype=np.float64)
    flags = np.zeros(m, dtype=np.int64)
    cubes = {}
    half = ps1_dtype == "float16"
    for name in surveys:
        s = get_survey(name)
        dtype = np.float16 if name == "panstarrs" and half else np.float32
        cubes[name] = np.full((m, len(s.bands), s.size, s.size), np.nan, dtype=dtype)
    scale = np.ones((m, 5), dtype=np.float32)
    exptime = np.full((m, 5), np.nan)
    for j in range(m):
        wanted = []
        for name in surveys:
            if get_survey(name).in_footprint(ra[j], dec[j]):
                wanted.append(name)
            else:
                flags[j] |= int(get_survey(name).flag | MantisFlag.OUT_OF_FOOTPRINT)
        rendered = sky.render_arrays((ra[j], dec[j]), wanted)
        for name, (data, info) in rendered.items():
            if data is None:
                flags[j] |= int(get_survey(name).flag | MantisFlag.OUT_OF_FOOTPRINT)
                continue
            if not np.isfinite(data.sum(dtype=np.float64)):
                flags[j] |= int(MantisFlag.NAN_PIXELS)
            if name == "panstarrs":
                exptime[j] = info["exptime"]
                if half:  # converted galaxy by galaxy: the shard is held at float16
                    data, scale[j] = _float16_planes(data)
            cubes[name][j] = data
        if tick is not None:
            tick(1)
    arrays["flags"] = flags
    for name in surveys:
        arrays[name] = cubes[name]
        if name == "panstarrs":
            if half:
                arrays["panstarrs_scale"] = scale
            arrays["panstarrs_exptime"] = exptime
    arrays["catalog"] = rows
    arrays["columns"] = np.array(columns_json)
    del cubes
    return write_npz(target, arrays)


_WORKER = {}


def _init_worker(config, catalog, seed):
    from .sky import MockSky

    _WORKER["sky"] = MockSky(config, catalog=catalog, seed=seed)


def _worker_task(args):
    target, indices, surveys, ps1_dtype, columns_json = args
    nbytes = _render_shard(_WORKER["sky"], target, indices, surveys, ps1_dtype, columns_json)
    return target, len(indices), nbytes


def _shard_complete(target, ids):
    """Whether a shard file exists, is readable and holds exactly the galaxies ``ids``."""
    if not os.path.exists(target):
        return False
    try:
        with np.load(target, allow_pickle=False) as npz:
            stored = npz["id"]
    except Exception:  # noqa: BLE001 - any unreadable file is simply redone
        return False
    return np.array_equal(stored, ids)


def _cpu_seconds():
    """CPU time of this process and its finished children (None where unknown)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return None
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _write_json(path, obj):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=False)
        fh.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- public
def make_dataset(n, path, seed=0, config=None, split=(0.8, 0.1, 0.1), shard_size=256,
                 surveys=("galex", "panstarrs", "unwise"), workers=1, progress=True,
                 ps1_dtype="float16"):
    """Render ``n`` mock galaxies into training, validation and test shards.

    See the module notes for the layout, the file format and the precision.

    Parameters
    ----------
    n : int
        Number of galaxies (the catalog size).
    path : str or path-like
        Output directory (created if needed). An existing directory made with
        the same settings is completed, not redone.
    seed : int, optional
        Seed of everything: catalog, split assignment, noise, neighbours.
    config : `~astro_mantis.simulate.MockSkyConfig`, optional
        Population, imaging and sky patch; its ``n_galaxies`` is replaced by
        ``n``. Default: `~astro_mantis.simulate.dataset.dataset_config`
        (``n`` galaxies at 100 per square degree around RA 185°, Dec +25°,
        near the north Galactic pole). Its ``randomisation`` (domain
        randomisation, see the module notes) is part of the manifest's
        ``config``.
    split : (float, float, float), optional
        Fractions of train, validation and test (normalised to their sum).
    shard_size : int, optional
        Galaxies per shard file: what a writer or a worker holds in memory at
        once (about 80 MB for 256 galaxies with float16 PS1, 150 MB with
        float32; `load_shard` returns float32).
    surveys : sequence of str, optional
        Surveys to render (default all three).
    workers : int, optional
        Processes rendering shards in parallel (multiprocessing, the
        platform's default start method; call from under ``if __name__ ==
        "__main__":`` where that is ``spawn``). The output does not depend
        on it.
    progress : bool, optional
        Show a progress bar and print the generation rate at the end.
    ps1_dtype : {"float16", "float32"}, optional
        Storage of the PS1 pixels (float16: half the disk, 0.05 % rounding).

    Returns
    -------
    dict
        The manifest as written to ``path/manifest.json``; its
        ``"generation"`` entry holds the galaxies rendered in this call, the
        seconds spent, the rate (galaxies per second) and the CPU seconds of
        this process and its workers while rendering.

    Raises
    ------
    ValueError
        For invalid arguments, or a directory made with other settings.
    """
    from .sky import MockSky

    n = _check_positive_int("n", n)
    shard_size = _check_positive_int("shard_size", shard_size)
    workers = _check_positive_int("workers", workers)
    fractions = _check_split(split)
    surveys = _check_surveys(surveys)
    if ps1_dtype not in ("float16", "float32"):
        raise ValueError(f"ps1_dtype must be 'float16' or 'float32', got {ps1_dtype!r}")
    config = _dataset_config(config, n)
    seed = int(seed)
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"

    plan = {"n": n, "seed": seed, "config": repr(config),
            "split_fractions": [round(f, 12) for f in fractions], "shard_size": shard_size,
            "surveys": list(surveys), "ps1_dtype": ps1_dtype, "version": __version__}
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{manifest_path} exists but is not readable ({exc}); "
                             "remove it or choose another directory") from None
        if old.get("format") != _FORMAT:
            raise ValueError(f"{manifest_path} is not an astro_mantis dataset manifest")
        differ = [k for k in _PLAN_KEYS if old.get(k) != plan[k]]
        if differ:
            raise ValueError(f"{root} holds a dataset made with other settings "
                             f"({', '.join(differ)} differ); choose another directory "
                             "or delete it")

    t_setup = time.perf_counter()
    sky = MockSky(config, seed=seed)
    catalog = sky.catalog
    columns = _column_meta(catalog)
    columns_json = json.dumps(columns, sort_keys=True)
    assignment = assign_splits(n, fractions, seed)

    tasks = []
    splits_info = {}
    for name in SPLITS:
        idx = assignment[name]
        (root / name).mkdir(exist_ok=True)
        shards = []
        for k, start in enumerate(range(0, len(idx), shard_size)):
            part = idx[start:start + shard_size]
            rel = f"{name}/shard_{k:05d}.npz"
            shards.append({"file": rel, "n": int(len(part))})
            tasks.append((str(root / rel), part))
        splits_info[name] = {"n": int(len(idx)), "shards": shards}

    manifest = {
        "format": _FORMAT, "format_version": _FORMAT_VERSION, **plan,
        "created_by": f"astro_mantis {__version__}",
        "simulated": True,
        "provenance": PROVENANCE,
        "splits": splits_info,
        "surveys_info": _survey_facts(surveys),
        "panstarrs_precision": (
            "float16 of pixel / panstarrs_scale (a power of two): relative rounding "
            "2**-11 per pixel" if ps1_dtype == "float16" else "float32, unchanged"),
        "missing_surveys": "all-NaN planes, flagged in 'flags' (MantisFlag bits)",
        "columns": columns,
        "complete": False,
    }
    _write_json(manifest_path, manifest)

    cat_ids = (np.asarray(catalog["id"], dtype=np.int64) if "id" in catalog.colnames
               else np.arange(n, dtype=np.int64))
    todo = [(t, i) for t, i in tasks if not _shard_complete(t, cat_ids[i])]
    n_todo = int(sum(len(i) for _, i in todo))
    skipped = n - n_todo
    setup_seconds = time.perf_counter() - t_setup

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    written = 0
    with tqdm(total=n_todo, unit="galaxy", desc="rendering", disable=not progress) as bar:
        if workers == 1 or len(todo) <= 1:  # in this process
            for target, indices in todo:
                written += _render_shard(sky, target, indices, surveys, ps1_dtype,
                                         columns_json, tick=bar.update)
        else:
            ctx = multiprocessing.get_context()
            args = [(t, i, surveys, ps1_dtype, columns_json) for t, i in todo]
            pool = ctx.Pool(min(workers, len(todo)), initializer=_init_worker,
                            initargs=(config, catalog, seed))
            try:
                for _target, count, nbytes in pool.imap_unordered(_worker_task, args):
                    written += nbytes
                    bar.update(count)
                pool.close()
            except BaseException:
                pool.terminate()
                raise
            finally:
                pool.join()  # reaped workers: their CPU time is counted below
    seconds = time.perf_counter() - t0
    cpu1 = _cpu_seconds()
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    rate = n_todo / seconds if n_todo and seconds > 0 else float("nan")

    total_bytes = sum(os.path.getsize(t) for t, _ in tasks)
    manifest["complete"] = True
    manifest["bytes"] = int(total_bytes)
    manifest["bytes_per_galaxy"] = round(total_bytes / n, 1)
    manifest["generation"] = {
        "galaxies_rendered": n_todo, "galaxies_skipped": int(skipped), "workers": workers,
        "bytes_written": int(written),
        "setup_seconds": round(setup_seconds, 3), "seconds": round(seconds, 3),
        "galaxies_per_second": None if not np.isfinite(rate) else round(rate, 3),
        "cpu_seconds": None if cpu is None else round(cpu, 3),
    }
    _write_json(manifest_path, manifest)
    message = (f"make_dataset: {n_todo} galaxies rendered in {seconds:.1f} s "
               f"({rate:.1f} galaxies/s with {workers} worker(s)); {skipped} already present; "
               f"{total_bytes / n / 1e3:.0f} kB per galaxy; {root}")
    if progress:
        print(message)
    else:
        log.info(message)
    return manifest


def read_manifest(directory):
    """Read ``manifest.json`` of a dataset directory.

    Parameters
    ----------
    directory : str or path-like

    Returns
    -------
    dict
    """
    path = Path(directory) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"no manifest.json in {directory}: not a dataset made by "
                                "make_dataset")
    return json.loads(path.read_text())


def load_shard(path, missing=np.nan):
    """Read one shard written by `make_dataset`.

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
        for name in _SURVEY_ORDER:
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
        out["catalog"] = _table_from_rows(npz["catalog"], columns)
    return out


def iter_shards(directory, split="train", missing=np.nan):
    """Iterate over the shards of one split, in order.

    Parameters
    ----------
    directory : str or path-like
        A directory written by `make_dataset`.
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
        For an unknown split or an incomplete dataset.
    """
    for path in shard_paths(directory, split):
        yield load_shard(path, missing=missing)


def shard_paths(directory, split="train"):
    """Paths of the shards of one split, in order, as the manifest lists them.

    Parameters
    ----------
    directory : str or path-like
        A directory written by `make_dataset`.
    split : {"train", "validation", "test"}, optional

    Returns
    -------
    list of `pathlib.Path`

    Raises
    ------
    ValueError
        For an unknown split or an incomplete dataset.
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
