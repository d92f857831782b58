# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Training, validation and test sets rendered from the mock sky.

`make_dataset` draws ``n`` mock galaxies (a `~astro_mantis.simulate.MockSky`
catalog), renders the three surveys' cutouts of each at the services' default
geometry as the package's own survey readers (`astro_mantis.surveys`) would
return them (with one difference from a served Pan-STARRS cutout: the tangent
point is the galaxy, not its skycell's centre, so the stack ``EXPTIME`` is drawn
per galaxy, not per skycell), and writes them in shards with the
true redshift, the two dust values the model takes and the galaxy's catalog
row. `load_shard` and `iter_shards` read them back. By default the galaxies lie
at 100 per square degree near the north Galactic pole (`dataset_config`), so
the cost per galaxy does not grow with ``n``.

The format
==========
The directory layout, the shard members, the float16 storage of Pan-STARRS and
the manifest are those of `astro_mantis.shards`, the one definition of the
training-shard format (`~astro_mantis.spectro.build_training_set` writes it too and
`~astro_mantis.training.data.ShardDataset` reads it); `load_shard`, `iter_shards`,
`read_manifest`, `shard_paths` and `assign_splits` are that module's, importable
from here as before. Which galaxy goes to which split is `assign_splits` of the
seed.

What the mock sky puts in a shard: the pixels of
`~astro_mantis.simulate.MockSky.render` at the services' default geometry (PS1
tangent point at the galaxy, so each galaxy's stacks have the ``EXPTIME`` drawn at
its own position; `~astro_mantis.simulate.MockSky.render_arrays`), after the
readers; the galaxy's full catalog row
(every column of the mock sky's catalog). A survey the client would report missing
is all NaN and flagged: GALEX inside a coverage hole (``GALEX_MISSING |
OUT_OF_FOOTPRINT``; the service sends zeros) and PS1 south of dec −30°
(``PANSTARRS_MISSING | OUT_OF_FOOTPRINT``); PS1 chip gaps are NaN stripes
(``NAN_PIXELS``). A pixel at the PS1 sky noise level σ (about 100–500 counts) is
rounded by at most σ/2048 in float16, and a bright pixel of ``v`` counts by at most
``v``/2048, below its own shot noise √v for ``v`` < 4 × 10\\ :sup:`6` counts.

Disk space: about 306 kB per galaxy with float16 PS1 (15 GB for 50,000
galaxies), 594 kB with float32 (30 GB). The manifest's ``config`` is the
``repr`` of the `~astro_mantis.simulate.MockSkyConfig`; it also records the
provenance of the mock galaxies (`PROVENANCE`) and the generation rate.

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
what is missing (an interrupted run resumes); a rerun into a complete directory
writes nothing, so the set never looks incomplete to its readers. A rerun with
different settings into the same directory is refused.
"""

import json
import math
import multiprocessing
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .._version import __version__
from ..flags import MantisFlag
from ..logger import log
from ..shards import (FORMAT, SPLITS, assign_splits, check_ps1_dtype, check_shard_size,
                      check_split, check_surveys, column_meta, float16_planes, new_manifest,
                      shard_complete, write_manifest, write_shard)
# astro_mantis.shards' readers (documented there), importable from here as before
from ..shards import iter_shards, load_shard, read_manifest, shard_paths  # noqa: F401
from ..surveys import get_survey

__all__ = ["PROVENANCE", "make_dataset", "dataset_config", "DEFAULT_DENSITY"]

#: Catalog galaxies per square degree of the default dataset sky (`dataset_config`).
DEFAULT_DENSITY = 100.0

#: Where the mock galaxies come from (written in every manifest and sample sky).
PROVENANCE = (
    "Simulated data (astro_mantis.simulate mock sky), not observations. The galaxies' "
    "SEDs are non-negative template fits to the even-indexed rows (0, 2, 4, ...) of "
    "kcorrect's gst_tests_small.fits (real SDSS galaxies with spectroscopic redshifts); "
    "its odd-indexed rows are held out for independent evaluation and were not used.")

#: Settings that must match for a rerun into an existing directory.
_PLAN_KEYS = ("n", "seed", "config", "split_fractions", "shard_size", "surveys", "ps1_dtype",
              "version")


# ---------------------------------------------------------------------------- checks
def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


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
        Number of galaxies (a positive integer).
    density : float, optional
        Catalog galaxies per square degree (default 100, about the density of
        a spectroscopic survey such as SDSS; faint neighbours and stars come
        on top at their own densities). A positive finite number.
    randomisation : `~astro_mantis.simulate.Randomisation` or dict, optional
        Domain randomisation of the sky (`astro_mantis.simulate.randomise`):
        `~astro_mantis.simulate.training_randomisation` for training sets,
        `~astro_mantis.simulate.shifted_randomisation` for the
        shifted-simulator test set. None (default): the nominal sky.

    Returns
    -------
    `~astro_mantis.simulate.MockSkyConfig`

    Raises
    ------
    ValueError
        If ``n`` is not a positive integer or ``density`` not a positive finite
        number (naming it), or for an invalid ``randomisation``.
    """
    from .sky import MockSkyConfig

    n = _check_positive_int("dataset_config n", n)
    try:
        density = float(density)
    except (TypeError, ValueError):
        raise ValueError("dataset_config density must be a positive number of galaxies per "
                         f"square degree, got {density!r}") from None
    if not (math.isfinite(density) and density > 0):  # NaN fails too
        raise ValueError("dataset_config density must be a positive finite number of galaxies "
                         f"per square degree, got {density!r}")
    side = min(math.sqrt(n / density), 60.0)
    half_ra = side / 2.0 / math.cos(math.radians(25.0))
    if not 185.0 - half_ra < 185.0 + half_ra:
        raise ValueError(f"dataset_config density {density!r} is too high for n={n}: the "
                         "patch of n / density square degrees has no extent")
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


# ---------------------------------------------------------------------------- rendering
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
                    data, scale[j] = float16_planes(data)
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
    return write_shard(target, arrays)


_WORKER = {}


def _init_worker(config, catalog, seed):
    from .sky import MockSky

    _WORKER["sky"] = MockSky(config, catalog=catalog, seed=seed)


def _worker_task(args):
    target, indices, surveys, ps1_dtype, columns_json = args
    nbytes = _render_shard(_WORKER["sky"], target, indices, surveys, ps1_dtype, columns_json)
    return target, len(indices), nbytes


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


# ---------------------------------------------------------------------------- public
def make_dataset(n, path, seed=0, config=None, split=(0.8, 0.1, 0.1), shard_size=256,
                 surveys=("galex", "panstarrs", "unwise"), workers=1, progress=None,
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
        Show a progress bar (default: on a terminal). The generation rate is logged
        at the end (`astro_mantis.log`, INFO).
    ps1_dtype : {"float16", "float32"}, optional
        Storage of the PS1 pixels (float16: half the disk, 0.05 % rounding).

    Returns
    -------
    dict
        The manifest as written to ``path/manifest.json``; its
        ``"generation"`` entry holds the galaxies rendered in this call, the
        seconds spent, the rate (galaxies per second) and the CPU seconds of
        this process and its workers while rendering. A directory that is
        complete already is not written to at all: its manifest is returned
        with this call's ``"generation"`` (nothing rendered), while the file
        keeps the one of the call that made it.

    Raises
    ------
    ValueError
        For invalid arguments, or a directory made with other settings.
    """
    from .sky import MockSky

    n = _check_positive_int("n", n)
    shard_size = check_shard_size(shard_size)
    workers = _check_positive_int("workers", workers)
    fractions = check_split(split)
    surveys = check_surveys(surveys)
    check_ps1_dtype(ps1_dtype)
    config = _dataset_config(config, n)
    seed = int(seed)
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"

    plan = {"n": n, "seed": seed, "config": repr(config),
            "split_fractions": [round(f, 12) for f in fractions], "shard_size": shard_size,
            "surveys": list(surveys), "ps1_dtype": ps1_dtype, "version": __version__}
    old = None
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{manifest_path} exists but is not readable ({exc}); "
                             "remove it or choose another directory") from None
        if old.get("format") != FORMAT:
            raise ValueError(f"{manifest_path} is not an astro_mantis dataset manifest")
        differ = [k for k in _PLAN_KEYS if old.get(k) != plan[k]]
        if differ:
            raise ValueError(f"{root} holds a dataset made with other settings "
                             f"({', '.join(differ)} differ); choose another directory "
                             "or delete it")

    t_setup = time.perf_counter()
    sky = MockSky(config, seed=seed)
    catalog = sky.catalog
    columns = column_meta(catalog)
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

    cat_ids = (np.asarray(catalog["id"], dtype=np.int64) if "id" in catalog.colnames
               else np.arange(n, dtype=np.int64))
    todo = [(t, i) for t, i in tasks if not shard_complete(t, cat_ids[i])]
    n_todo = int(sum(len(i) for _, i in todo))
    skipped = n - n_todo
    setup_seconds = time.perf_counter() - t_setup
    if not todo and old is not None and old.get("complete") is True \
            and old.get("splits") == splits_info:
        # complete already: the manifest is left as it is (never marked incomplete, even
        # for a moment, under a reader of the finished set)
        log.info(f"make_dataset: nothing to render, {n} galaxies already present; {root}")
        return dict(old, generation={
            "galaxies_rendered": 0, "galaxies_skipped": n, "workers": workers,
            "bytes_written": 0, "setup_seconds": round(setup_seconds, 3), "seconds": 0.0,
            "galaxies_per_second": None, "cpu_seconds": 0.0})

    manifest = new_manifest(plan, simulated=True, provenance=PROVENANCE, splits=splits_info,
                            ps1_dtype=ps1_dtype, columns=columns, complete=False)
    write_manifest(root, manifest)

    from ..progress import progress_bar

    t0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    written = 0
    with progress_bar(progress, total=n_todo, unit="galaxy", desc="rendering") as bar:
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
    write_manifest(root, manifest)
    message = (f"make_dataset: {n_todo} galaxies rendered in {seconds:.1f} s "
               f"({rate:.1f} galaxies/s with {workers} worker(s)); {skipped} already present; "
               f"{total_bytes / n / 1e3:.0f} kB per galaxy; {root}")
    log.info(message)
    return manifest
