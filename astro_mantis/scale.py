# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Photo-z over catalogs larger than one machine: LSDB (HATS) and Dask.

The distributed paths run the package's own table job,
`~astro_mantis.add_redshift_columns`, on every partition of a catalog:

* `add_redshift_columns_lsdb` on an ``lsdb.Catalog`` (a HATS catalog, partitioned by
  HEALPix pixel) returns an ``lsdb.Catalog`` with the redshift columns added;
* `add_redshift_columns_dask` does the same on a plain ``dask.dataframe.DataFrame``;
* `match_spectroscopic_lsdb` attaches the nearest spectroscopic redshift of a HATS
  spectroscopic catalog through LSDB's crossmatch.

Nothing is computed when these functions return: the result is lazy, and runs on
whatever Dask scheduler is active when it is computed (threads, processes, a
``dask.distributed`` cluster of any size).

What each partition does
========================
Each partition (a pandas DataFrame) is turned into an astropy
`~astropy.table.Table` of the columns the job reads (positions, dust columns),
`~astro_mantis.add_redshift_columns` runs on it exactly as it runs on a laptop
(the same cutout fetching, cache, chunking, flags and model), and its output columns
are put back on the partition, whose other columns, index and row order are left
as they were: one row out for every row in, in the same partition.

* **The model** is loaded once per worker process (kept for later partitions and
  later calls with the same name, weights and device).
* **Configuration does not travel by itself**: ``astro_mantis.conf`` is a
  per-process object, so the client's settings (service URLs, cache directory,
  time limits, retries, connections per host ...) are captured when the function
  is called and applied around each partition's work (``settings=`` overrides
  them, e.g. a cache directory on a file system the workers share).
* **The cutout cache is shared**: every worker reads and writes the same
  directory (the client's ``conf.cache_dir``, resolved to an absolute path); its
  entries are written atomically, so concurrent writers and killed workers
  leave no damaged entry, and a recomputed partition (after a worker died)
  fetches nothing that was stored before.
* **No warnings**: a partition's warnings (the job's
  `~astro_mantis.table.NotEstimatedWarning` among them) are silenced; the flags
  column is the record of what could not be estimated.

The columns, as pandas/pyarrow hold them
========================================
================  ================================================  ===================
column            type                                              not estimated
================  ================================================  ===================
``z_pdf``         ``fixed_size_list<item: float>[400][pyarrow]``    null
``z_mean`` ...    ``double[pyarrow]`` (mean, median, mode,          null
                  std, lo68, hi68, odds)
``z_ood``         ``double[pyarrow]`` (with a model that has        null
                  a reference embedding, the default's)
``z_flags``       ``int32[pyarrow]``                                never null
================  ================================================  ===================

The 400-bin PDF is one fixed-size list per row (a pyarrow ``FixedSizeListArray``),
which Parquet and HATS store as such (``lsdb.Catalog.to_hats`` writes it, and
``lsdb.open_catalog`` reads it back; pandas reads such a Parquet file back with
``pandas.read_parquet(path, dtype_backend="pyarrow")``, and fails without it).
`redshift_table` turns a computed partition or result back into an astropy Table
with the (N, 400) masked column the single-process job gives.

Provenance
==========
The run's provenance (the ``z_model``, ``z_sha256``, ``z_vers``, ``z_nbins``,
``z_zmin``, ``z_zmax``, ``z_dust``, ``z_survey``, ``z_tta``, ``z_ebv``, ``z_pos``,
``z_point``, ``z_srv``, ``z_oodth`` and ``z_prec`` entries
`~astro_mantis.add_redshift_columns` writes into ``table.meta``) is recorded

* for LSDB, in the result's catalog properties,
  ``catalog.hc_structure.catalog_info`` (extra keys), which ``lsdb.Catalog.to_hats``
  writes into the catalog's ``hats.properties`` file;
* for Dask, in ``ddf.attrs``-like form on the lazy frame's meta,
  ``ddf._meta.attrs``, and in the ``attrs`` of every computed partition (pandas
  keeps them through ``compute`` only when all partitions agree: with an explicit
  ``precision=`` every partition records the same, also one whose network never ran);

and `provenance` reads it from any of these. It is taken on the client, before
anything runs, by running the job on zero rows with the same arguments (which
also checks every argument). The precision the network ran in (``z_prec``) is
known only per partition when ``precision="auto"`` (a GPU worker and a CPU
worker may differ): it is in each computed partition's ``attrs``; pass an explicit
``precision=`` to have it recorded for the whole catalog.
"""
import contextlib
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .logger import log

__all__ = ["add_redshift_columns_lsdb", "add_redshift_columns_dask", "match_spectroscopic_lsdb",
           "redshift_table", "provenance", "worker_settings", "worker_model_loads"]

# keyword arguments of add_redshift_columns that the distributed paths refuse
_REFUSED = {
    "coord": "a DataFrame has no SkyCoord column: give ra= and dec= column names",
    "resume": "rerun instead: the shared cutout cache makes a rerun fetch nothing that was "
              "fetched before",
    "progress": "progress is shown by Dask (the dashboard, or dask.diagnostics.ProgressBar); "
                "per-partition bars are off",
    "table": "the catalog is the first argument",
    "report": "the partitions run in other threads or processes, so no one RunStats can "
              "collect them: the flags column (z_flags, or <prefix>flags) is the per-row "
              "record (count its NOT_ESTIMATED rows, for example), and provenance() the "
              "run's settings",
}

# ----------------------------------------------------------------------- settings
_CONF_LOCK = threading.Condition()
_CONF_STATE = {"active": None, "count": 0, "ctx": None}


def worker_settings(**overrides):
    """The configuration the workers will use: the client's ``astro_mantis.conf``.

    Every item of ``astro_mantis.conf`` is captured (service URLs, time limits,
    retries, connections per host, the cache directory ...), with ``cache_dir``
    resolved to the absolute directory the client's cutout cache uses, so that all
    workers of one machine share it.

    Parameters
    ----------
    **overrides
        Items to set instead (for example ``cache_dir="/shared/cutouts"``, a
        directory every worker of a cluster can reach).

    Returns
    -------
    dict
        Item name → value.

    Raises
    ------
    KeyError
        If an override names no item of ``astro_mantis.conf``.
    """
    from astropy.config import ConfigItem

    from .config import Conf, conf
    from .fetch import CutoutCache

    names = [k for k, v in vars(Conf).items() if isinstance(v, ConfigItem)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise KeyError(f"unknown configuration item(s) {unknown}; astro_mantis.conf has "
                       f"{sorted(names)}")
    out = {name: getattr(conf, name) for name in names}
    out["cache_dir"] = str(CutoutCache().directory.resolve())
    out.update(overrides)
    if out.get("cache_dir"):
        out["cache_dir"] = str(Path(out["cache_dir"]).expanduser().absolute())
    return out


@contextlib.contextmanager
def _applied(settings):
    """Apply ``settings`` to this process's ``conf`` for the block.

    Threads of one worker process share ``conf``: partitions with the same settings
    run side by side; a partition with other settings waits until they are done (a
    plain ``conf.set_temp`` per thread would restore the old values under the feet
    of a thread still running).
    """
    from .config import conf

    key = tuple(sorted((k, repr(v)) for k, v in settings.items()))
    with _CONF_LOCK:
        while _CONF_STATE["count"] and _CONF_STATE["active"] != key:
            _CONF_LOCK.wait()
        if not _CONF_STATE["count"]:
            stack = contextlib.ExitStack()
            for name, value in settings.items():
                stack.enter_context(conf.set_temp(name, value))
            _CONF_STATE.update(active=key, ctx=stack)
        _CONF_STATE["count"] += 1
    try:
        yield
    finally:
        with _CONF_LOCK:
            _CONF_STATE["count"] -= 1
            if not _CONF_STATE["count"]:
                _CONF_STATE["ctx"].close()
                _CONF_STATE.update(active=None, ctx=None)
                _CONF_LOCK.notify_all()


# ----------------------------------------------------------------------- the model
_MODEL_LOCK = threading.Lock()
_MODELS = {}
_LOADS = []


def worker_model_loads():
    """The models this process loaded for the distributed paths, in order.

    Meant for checking a cluster (``client.run(worker_model_loads)``): each worker
    process loads a model once, whatever the number of its partitions.

    Returns
    -------
    list of tuple
        ``(model name, weights, device)`` per load.
    """
    return list(_LOADS)


def _worker_model(model, weights, device):
    from .models.inference import get_model

    key = (model, None if weights is None else str(weights), None if device is None
           else str(device))
    with _MODEL_LOCK:
        if key not in _MODELS:
            _MODELS[key] = get_model(model, weights, device)
            _LOADS.append(key)
        return _MODELS[key]


# ----------------------------------------------------------------------- the job
@dataclass
class _Plan:
    """What every partition needs (small and picklable: travels in the task graph)."""

    kwargs: dict
    settings: dict
    input_columns: list
    names: list
    nbins: int
    meta: dict = field(default_factory=dict)
    #: columns of an earlier run that this one removes without writing them again
    stale: list = field(default_factory=list)


def _check_kwargs(kwargs):
    for key, why in _REFUSED.items():
        if key in kwargs:
            raise TypeError(f"{key}= is not taken by the distributed paths: {why}")
    if kwargs.get("precision") == "int8":
        raise ValueError("precision='int8' is not taken by the distributed paths: it needs an "
                         "int8-quantised model (astro_mantis.models.quantize_int8), and each "
                         "worker loads a registry model by name, never quantised. Use 'auto', "
                         "'float32', 'bfloat16', or 'float16' (GPU workers)")
    model = kwargs.get("model", "mantis-mini")
    if not isinstance(model, str):
        raise TypeError(f"model must be a registry name on the distributed paths (each worker "
                        f"loads it once; a network object would be copied into every task); got "
                        f"{type(model).__name__}. Save your weights and pass model=<name>, "
                        "weights=<path on the workers>")
    ebv = kwargs.get("ebv")
    if ebv is not None and not isinstance(ebv, str) and not callable(ebv) and not (
            isinstance(ebv, (tuple, list)) and len(ebv) == 2
            and all(isinstance(e, str) for e in ebv)) and np.ndim(ebv) > 0 \
            and np.shape(ebv) != (2,):
        raise TypeError("ebv= must be column name(s), one value (or a pair) for all rows, or a "
                        "function of positions on the distributed paths; an array of per-row "
                        "values cannot follow the partitions: put it in a column")


def _input_columns(columns, kwargs):
    """The columns the job reads from each partition."""
    cols = [kwargs.get("ra", "ra"), kwargs.get("dec", "dec")]
    ebv = kwargs.get("ebv")
    if isinstance(ebv, str):
        cols.append(ebv)
    elif isinstance(ebv, (tuple, list)) and all(isinstance(e, str) for e in ebv):
        cols.extend(ebv)
    out = []
    for c in cols:
        if c not in columns:
            close = [k for k in columns if str(k).lower() == str(c).lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise KeyError(f"column {c!r} not found{hint}; the catalog has columns "
                           f"{list(columns)}")
        if c not in out:
            out.append(c)
    return out


def _to_table(df, columns):
    """An astropy Table of ``columns`` of a pandas frame (NA → masked or NaN)."""
    import pandas as pd
    from astropy.table import MaskedColumn, Table

    t = Table()
    for name in columns:
        s = df[name]
        if pd.api.types.is_bool_dtype(s.dtype):
            # as booleans, which the job refuses (as dust values, say), never as 0/1
            na = s.isna().to_numpy()
            values = s.to_numpy(dtype=bool, na_value=False)
            t[name] = MaskedColumn(values, mask=na) if na.any() else values
        elif pd.api.types.is_numeric_dtype(s.dtype):
            t[name] = s.to_numpy(dtype=float, na_value=np.nan)
        else:
            na = s.isna().to_numpy()
            values = np.array(["" if m else str(v) for v, m in zip(s.tolist(), na)])
            t[name] = MaskedColumn(values, mask=na) if na.any() else values
    return t


def _empty_columns(names, nbins, index):
    import pandas as pd
    import pyarrow as pa

    pdf_type = pa.list_(pa.float32(), nbins)
    out = {names[0]: pd.Series(pd.arrays.ArrowExtensionArray(pa.array([], type=pdf_type)),
                               index=index)}
    for name in names[1:-1]:
        out[name] = pd.Series(pd.array([], dtype="double[pyarrow]"), index=index)
    out[names[-1]] = pd.Series(pd.array([], dtype="int32[pyarrow]"), index=index)
    return out


def _table_columns(table, names, index):
    """The redshift columns of ``table`` as pandas Series on ``index`` (pyarrow types)."""
    import pandas as pd
    import pyarrow as pa

    pdf = table[names[0]]
    n, nbins = pdf.shape
    missing = np.any(np.ma.getmaskarray(pdf).reshape(n, -1), axis=1)
    flat = pa.array(np.ma.getdata(pdf).astype(np.float32, copy=False).ravel())
    arr = pa.FixedSizeListArray.from_arrays(flat, nbins, mask=pa.array(missing))
    out = {names[0]: pd.Series(pd.arrays.ArrowExtensionArray(arr), index=index, copy=False)}
    for name in names[1:-1]:
        col = table[name]
        arr = pa.array(np.ma.getdata(col).astype(float), mask=np.ma.getmaskarray(col))
        out[name] = pd.Series(pd.arrays.ArrowExtensionArray(arr), index=index, copy=False)
    flags = pa.array(np.asarray(table[names[-1]], dtype=np.int32))
    out[names[-1]] = pd.Series(pd.arrays.ArrowExtensionArray(flags), index=index, copy=False)
    return out


def _scalar_meta(meta):
    return {str(k): (v if isinstance(v, (str, int, float, bool)) else str(v))
            for k, v in meta.items()}


def _partition_redshifts(df, plan):
    """add_redshift_columns on one partition; the partition with the columns added."""
    from .table import add_redshift_columns

    # a copy: NestedFrame.drop of no column returns the very frame (the meta of the input)
    out = df.copy()
    out = out.drop(columns=[c for c in [*plan.names, *plan.stale] if c in out.columns])
    if len(df) == 0:
        cols = _empty_columns(plan.names, plan.nbins, df.index)
        meta = dict(plan.meta)
    else:
        kwargs = dict(plan.kwargs)
        with _applied(plan.settings):
            kwargs["model"] = _worker_model(kwargs.get("model", "mantis-mini"),
                                            kwargs.pop("weights", None), kwargs.get("device"))
            table = _to_table(df, plan.input_columns)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                add_redshift_columns(table, progress=False, **kwargs)
        if len(table) != len(df):  # pragma: no cover - add_redshift_columns keeps rows
            raise RuntimeError(f"partition of {len(df)} rows came back with {len(table)}")
        cols = _table_columns(table, plan.names, df.index)
        meta = _scalar_meta(table.meta)
        # what the plan knows for the whole catalog (an explicit precision) is recorded
        # also by a partition whose network never ran (every row invalid or failed), so
        # that the partitions' attrs agree and survive compute
        for key, value in plan.meta.items():
            meta.setdefault(key, value)
    for name in plan.names:
        out[name] = cols[name]
    out.attrs = dict(meta)
    return out


class _Quiet:
    """Log filter hiding the one-line summary of the zero-row run."""

    def __init__(self, start):
        self.start = start

    def filter(self, record):
        return not str(record.getMessage()).startswith(self.start)


def _refuse_present(names, columns, kwargs):
    """Refuse output columns the catalog already has, unless ``overwrite=True``."""
    present = [n for n in names if n in columns]
    if present and not kwargs.get("overwrite", False):
        raise ValueError(f"the catalog already has column(s) {', '.join(present)}; pass "
                         "overwrite=True to replace them, or another prefix=")


def _check_device_precision(kwargs):
    """Refuse a precision the workers' named device can never run (no device needed)."""
    from .models import resolve_precision

    precision, device = kwargs.get("precision", "auto"), kwargs.get("device")
    if device is None or precision == "auto":
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # about the client's CPU, not the workers'
        try:
            resolve_precision(precision, device)
        except RuntimeError as exc:  # torch's refusal of a device name
            raise ValueError(f"device={device!r}: {exc}") from None


def _plan(columns, dtypes, kwargs, settings, recorded=None):
    """Check the arguments on the client and take the run's provenance (zero rows).

    ``recorded`` is the catalog's provenance (LSDB properties, Dask attrs), to tell
    whether it holds an earlier run (whose ``{prefix}ood`` column goes then).
    """
    import pandas as pd

    from .table import OOD_KEY, add_redshift_columns, column_names, records_run

    _check_kwargs(kwargs)
    kwargs = dict(kwargs)
    prefix = kwargs.get("prefix", "z_")
    names = column_names(prefix)
    _refuse_present(names, columns, kwargs)
    _check_device_precision(kwargs)
    inputs = _input_columns(columns, kwargs)
    settings = worker_settings() if settings is None else worker_settings(**settings)
    empty = pd.DataFrame({c: pd.Series([], dtype=dtypes[c]) for c in inputs})
    from .config import conf

    quiet = _Quiet("add_redshift_columns: ")
    with contextlib.ExitStack() as stack:
        for name, value in settings.items():
            stack.enter_context(conf.set_temp(name, value))
        log.addFilter(quiet)
        stack.callback(log.removeFilter, quiet)
        table = _to_table(empty, inputs)
        # the client checks the arguments on its CPU: the workers' device (a GPU the
        # client may lack) and the precisions it runs (float16, bfloat16 natively) are
        # theirs to check; the precision's name is checked here all the same
        plan = dict(kwargs, device="cpu")
        if plan.get("precision") in ("float16", "bfloat16"):
            plan["precision"] = "float32"
        add_redshift_columns(table, progress=False, **plan)
    ood = f"{prefix}{OOD_KEY}"
    stale = []
    if ood in table.colnames:  # the out-of-distribution score, before the flags
        # (written only with a model that has a reference embedding: the zero-row run
        # knows, so a catalog's own column of that name is refused only then)
        _refuse_present([ood], columns, kwargs)
        names = names[:-1] + [ood, names[-1]]
    elif ood in columns and records_run(columns, recorded, prefix):
        # a fresh run over an earlier one replaces all of it: an earlier score this run
        # does not write again goes, as add_redshift_columns removes it from a table
        stale = [ood]
    meta = _scalar_meta(table.meta)
    precision = kwargs.get("precision", "auto")
    if precision != "auto":
        meta[f"{prefix}prec"] = precision
    return _Plan(kwargs=kwargs, settings=settings, input_columns=inputs, names=names,
                 nbins=int(meta[f"{prefix}nbins"]), meta=meta, stale=stale)


def add_redshift_columns_dask(ddf, *, settings=None, **kwargs):
    """Add redshift PDF columns to every partition of a Dask DataFrame (lazily).

    Parameters
    ----------
    ddf : ``dask.dataframe.DataFrame``
        The catalog, one row per object, with position columns (and dust columns if
        ``ebv=`` names them).
    settings : dict, optional
        Overrides of the client's configuration for the workers (see
        `worker_settings`), e.g. ``{"cache_dir": "/shared/cutouts"}``.
    **kwargs
        Passed to `~astro_mantis.add_redshift_columns` on each partition: ``ra``,
        ``dec``, ``ra_unit``, ``dec_unit``, ``model`` (a registry name), ``weights``
        (a path the workers can read), ``prefix``, ``surveys``, ``ebv`` (column
        name(s), one value or a pair, or a function), ``batch_size``, ``device``,
        ``cache``, ``overwrite``, ``chunk_size``, ``tta``, ``precision`` (not
        ``"int8"``: the workers load no quantised model; ``"float16"`` and
        ``"bfloat16"`` are the workers' device's to run). ``coord``, ``resume``,
        ``progress`` and ``report`` are refused (see Raises). ``overwrite=True`` over
        an earlier run replaces all of it (an earlier ``{prefix}ood`` this run does not
        write is removed).

    Returns
    -------
    ``dask.dataframe.DataFrame``
        Same partitions, index and row order, with the redshift columns (see the
        module notes for their types) added at the end. The run's provenance is in
        ``result._meta.attrs`` and in the ``attrs`` of the computed frame (see
        `provenance`).

    Raises
    ------
    TypeError
        If ``ddf`` is not a Dask DataFrame, ``model`` is not a registry name, or an
        argument the distributed paths do not take is given (``coord``: no SkyCoord
        column in a DataFrame; ``resume``: rerun instead, the cache makes it cheap;
        ``progress``: use Dask's; ``report``: read the flags column and `provenance`).
    KeyError
        If a position or dust column is missing.
    ValueError
        If the columns exist already (without ``overwrite=True``), an argument is
        invalid (checked on the client, before anything runs: a boolean dust column,
        ``precision="int8"``, ``"float16"`` with ``device="cpu"`` ...).

    Examples
    --------
    >>> import dask.dataframe as dd  # doctest: +SKIP
    >>> from astro_mantis.scale import add_redshift_columns_dask
    >>> ddf = dd.read_parquet("galaxies/")  # doctest: +SKIP
    >>> out = add_redshift_columns_dask(ddf, ebv=("ebv_sfd", "ebv_planck"))  # doctest: +SKIP
    >>> out.to_parquet("galaxies_z/")  # doctest: +SKIP
    """
    import dask.dataframe as dd

    if not isinstance(ddf, dd.DataFrame):
        raise TypeError(f"ddf must be a dask.dataframe.DataFrame, got {type(ddf).__name__}"
                        " (for an lsdb.Catalog use add_redshift_columns_lsdb; for an astropy "
                        "Table, astro_mantis.add_redshift_columns)")
    plan = _plan(list(ddf.columns), ddf.dtypes, kwargs, settings,
                 recorded=getattr(ddf._meta, "attrs", None))
    meta = _partition_redshifts(ddf._meta, plan)
    out = ddf.map_partitions(_partition_redshifts, plan, meta=meta, align_dataframes=False)
    out._meta.attrs.update(plan.meta)
    return out


def add_redshift_columns_lsdb(catalog, *, settings=None, margin=False, **kwargs):
    """Add redshift PDF columns to every partition of an LSDB (HATS) catalog (lazily).

    Parameters
    ----------
    catalog : ``lsdb.Catalog``
        The catalog; its own right ascension and declination columns are used
        unless ``ra=``/``dec=`` name others.
    settings : dict, optional
        Overrides of the client's configuration for the workers (see
        `worker_settings`).
    margin : bool
        Also compute the columns for the catalog's margin (the copies of
        neighbouring pixels' rows near each pixel's edge, which crossmatches use).
        Default False: the result has no margin, so that no galaxy is estimated twice;
        ask for it when the result is to be the right side of a crossmatch.
    **kwargs
        Passed to `~astro_mantis.add_redshift_columns` on each partition, as for
        `add_redshift_columns_dask`.

    Returns
    -------
    ``lsdb.Catalog``
        Same pixels, rows and row order per pixel, with the redshift columns added
        (types in the module notes). The run's provenance is in
        ``result.hc_structure.catalog_info`` (written to ``hats.properties`` by
        ``lsdb.Catalog.to_hats``); `provenance` reads it.

    Raises
    ------
    TypeError, KeyError, ValueError
        As `add_redshift_columns_dask`; TypeError also if ``catalog`` is not an
        ``lsdb.Catalog``.

    Examples
    --------
    >>> import lsdb  # doctest: +SKIP
    >>> from astro_mantis.scale import add_redshift_columns_lsdb
    >>> cat = lsdb.open_catalog("my_hats_catalog")  # doctest: +SKIP
    >>> out = add_redshift_columns_lsdb(cat, ebv=("ebv_sfd", "ebv_planck"))  # doctest: +SKIP
    >>> out.to_hats("my_catalog_with_z")  # doctest: +SKIP
    """
    import lsdb

    if not isinstance(catalog, lsdb.Catalog):
        raise TypeError(f"catalog must be an lsdb.Catalog, got {type(catalog).__name__} (for a "
                        "Dask DataFrame use add_redshift_columns_dask)")
    info = catalog.hc_structure.catalog_info
    kwargs.setdefault("ra", info.ra_column)
    kwargs.setdefault("dec", info.dec_column)
    from .table import provenance_keys, records_run

    ddf = catalog.to_dask_dataframe()
    recorded = info.extra_dict()
    plan = _plan(list(ddf.columns), ddf.dtypes, kwargs, settings, recorded=recorded)
    meta = _partition_redshifts(ddf._meta, plan)
    source = catalog
    if not margin and catalog.margin is not None:
        source = _without_margin(catalog)
    out = source.map_partitions(_partition_redshifts, plan, meta=meta)
    new_info = out.hc_structure.catalog_info.model_copy(deep=True)
    prefix = kwargs.get("prefix", "z_")
    if records_run(ddf.columns, recorded, prefix):
        # a fresh run over an earlier one: the earlier provenance this run does not
        # write again (an OOD threshold, a precision) goes, not left stale
        for key in provenance_keys(new_info.model_extra, prefix):
            del new_info.model_extra[key]
    out.hc_structure.catalog_info = new_info.copy_and_update(**plan.meta)
    return out


def _without_margin(catalog):
    import copy

    out = copy.copy(catalog)
    out.margin = None
    return out


# ----------------------------------------------------------------------- reading back
def provenance(obj, prefix="z_"):
    """The provenance a distributed run recorded (model, checksum, version, settings).

    Parameters
    ----------
    obj : ``lsdb.Catalog``, ``dask.dataframe.DataFrame``, ``pandas.DataFrame`` or Table
        A result of `add_redshift_columns_lsdb` (also after ``lsdb.Catalog.to_hats``
        and ``lsdb.open_catalog``), of `add_redshift_columns_dask`, a computed
        partition or result, or a Table from `redshift_table`.
    prefix : str
        The columns' prefix.

    Returns
    -------
    dict
        ``model``, ``sha256``, ``vers``, ``nbins``, ``zmin``, ``zmax``, ``dust``,
        ``survey``, ``tta``, ``ebv``, ``pos``, ``point``, ``srv`` (and ``prec`` where
        known), as `~astro_mantis.table.run_settings` gives them; values read back
        from ``hats.properties`` are strings. Empty when nothing is recorded.
    """
    from astropy.table import Table

    from .table import run_settings

    if isinstance(obj, Table):
        meta = obj.meta
    elif hasattr(obj, "hc_structure"):
        meta = obj.hc_structure.catalog_info.extra_dict()
    elif hasattr(obj, "_meta") and hasattr(obj._meta, "attrs"):
        meta = obj._meta.attrs
    elif hasattr(obj, "attrs"):
        meta = obj.attrs
    else:
        raise TypeError(f"cannot read provenance from {type(obj).__name__}")
    return run_settings(Table(meta=dict(meta)), prefix)


def redshift_table(frame, prefix="z_"):
    """A computed result (pandas) as an astropy Table with the single-process columns.

    Parameters
    ----------
    frame : ``pandas.DataFrame``
        A computed result of `add_redshift_columns_lsdb` or
        `add_redshift_columns_dask` (or one partition).
    prefix : str
        The redshift columns' prefix.

    Returns
    -------
    `~astropy.table.Table`
        The frame's columns in order (the index is dropped), with ``{prefix}pdf`` a
        float32 (N, nbins) masked column and the summary columns masked where null,
        as `~astro_mantis.add_redshift_columns` makes them; ``meta`` holds the
        frame's ``attrs``.

    Raises
    ------
    KeyError
        If the frame has no ``{prefix}pdf`` column.
    """
    import pandas as pd
    from astropy.table import MaskedColumn, Table

    from .table import column_names

    names = column_names(prefix)
    if names[0] not in frame.columns:
        raise KeyError(f"no column {names[0]!r}; the frame has columns {list(frame.columns)}")
    t = Table(meta=dict(frame.attrs))
    for name in frame.columns:
        s = frame[name]
        if name == names[0]:
            values = s.tolist()
            # a null row is pd.NA (pandas 3) or None: ask pandas, not `is None`
            missing = s.isna().to_numpy(dtype=bool)
            nbins = next((len(v) for v, m in zip(values, missing) if not m), 0)
            if not nbins:
                nbins = int(getattr(getattr(s.dtype, "pyarrow_dtype", None), "list_size", 0))
            data = np.full((len(values), nbins), np.nan, dtype=np.float32)
            for i, (v, m) in enumerate(zip(values, missing)):
                if not m:
                    data[i] = v
            t[name] = MaskedColumn(data, mask=np.repeat(missing[:, None], nbins, axis=1))
        elif pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
            na = s.isna().to_numpy()
            if pd.api.types.is_float_dtype(s.dtype) or name in names:
                data = s.to_numpy(dtype=float, na_value=np.nan)
                if name == names[-1]:
                    data = data.astype(np.int32)
            else:
                data = s.to_numpy(na_value=0) if na.any() else s.to_numpy()
            t[name] = MaskedColumn(data, mask=na) if (na.any() or name in names[1:-1]) \
                else data
        else:
            na = s.isna().to_numpy()
            data = np.array(["" if m else str(v) for v, m in zip(s.tolist(), na)])
            t[name] = MaskedColumn(data, mask=na) if na.any() else data
    return t


# ----------------------------------------------------------------------- spectroscopy
def match_spectroscopic_lsdb(catalog, spectra, radius=None, *, z_col="z", z_err_col=None,
                             class_col=None, id_col=None, columns=None, source=None,
                             overwrite=False):
    """Attach the nearest spectroscopic redshift of a HATS catalog, through LSDB's crossmatch.

    The distributed twin of `~astro_mantis.spectro.match_spectroscopic` for a
    catalog of spectra already in HATS form (``lsdb.open_catalog``): each row gets the
    nearest spectrum within ``radius`` (LSDB's k-d tree crossmatch over aligned
    pixels, with the spectroscopic catalog's margin), and the same columns and
    `~astro_mantis.spectro.SpecFlag` bits.

    Parameters
    ----------
    catalog : ``lsdb.Catalog``
        The galaxies (for example the result of `add_redshift_columns_lsdb`).
    spectra : ``lsdb.Catalog``
        The spectroscopic catalog. It should carry a margin at least ``radius``
        wide (``lsdb.from_dataframe(..., margin_threshold=...)``, or a margin catalog
        opened with it): without one, a galaxy near a pixel edge does not see a
        spectrum across it, and a warning says so.
    radius : `~astropy.units.Quantity` or str
        Match radius, an angle (``1 * u.arcsec`` or ``"1 arcsec"``), at most 1°.
    z_col, z_err_col, class_col, id_col : str, optional
        Columns of ``spectra``: redshift, its uncertainty, class, identifier
        (default: the spectrum's position, ``"ra,dec"`` text).
    columns : str or sequence of str, optional
        More columns of ``spectra`` to copy, as ``spec_<name>`` (a str: one column).
    source : str, optional
        The catalog's name for ``spec_source`` (default: its HATS catalog name).
    overwrite : bool
        Replace the columns of an earlier match.

    Returns
    -------
    ``lsdb.Catalog``
        Every row of ``catalog`` once, with ``z_spec``, ``z_spec_err``,
        ``spec_class``, ``spec_id``, ``spec_sep`` (arcsec), ``spec_source`` (null
        where there is no match), ``spec_flags`` and ``spec_<name>``. Rows are in
        the order of ``catalog`` within each HEALPix range; the result's partitions
        are those of LSDB's pixel alignment (a pixel of ``catalog`` may be split at
        the finer order of ``spectra``). The settings are recorded as
        ``spec_match`` in the catalog properties.

    Raises
    ------
    TypeError
        If an input is not an ``lsdb.Catalog`` or ``radius`` has no angular unit.
    KeyError
        If a column of ``spectra`` is missing.
    ValueError
        If the columns exist already (without ``overwrite``) or ``radius`` is invalid.

    Notes
    -----
    ``SHARED`` (a spectrum that is the nearest of several rows) is decided within
    each aligned pixel: two galaxies on either side of a pixel edge that share
    their nearest spectrum are not flagged. ``AMBIGUOUS`` (a second spectrum within
    ``radius``) and everything else are exact.
    """
    import json

    import lsdb

    from ._version import __version__
    from .spectro.matching import SPEC_COLUMNS, check_copied_columns, check_radius

    for name, obj in (("catalog", catalog), ("spectra", spectra)):
        if not isinstance(obj, lsdb.Catalog):
            raise TypeError(f"{name} must be an lsdb.Catalog, got {type(obj).__name__}")
    if radius is None:
        raise TypeError("radius is required: an angle such as 1 * u.arcsec")
    radius = check_radius(radius)
    r_arcsec = float(radius.value)
    # as match_spectroscopic: no spec_flags from `columns`; a str is one column's name
    columns = check_copied_columns(columns)
    spec_cols = list(spectra.columns)
    wanted = [c for c in (z_col, z_err_col, class_col, id_col, *(columns or ())) if c]
    for c in wanted:
        if c not in spec_cols:
            raise KeyError(f"column {c!r} not in the spectroscopic catalog; it has {spec_cols}")
    new_names = list(SPEC_COLUMNS) + [f"spec_{c}" for c in columns or ()]
    present = [c for c in new_names if c in catalog.columns]
    if present and not overwrite:
        raise ValueError(f"the catalog has columns {present} already (from an earlier match?); "
                         "pass overwrite=True to replace them")
    if spectra.margin is None:
        log.warning("match_spectroscopic_lsdb: the spectroscopic catalog has no margin; "
                    "galaxies near a HEALPix pixel edge cannot match a spectrum across it")
    else:
        width = getattr(spectra.margin.hc_structure.catalog_info, "margin_threshold", None)
        if width is not None and float(width) < r_arcsec:
            log.warning(f"match_spectroscopic_lsdb: the spectroscopic catalog's margin "
                        f"({float(width):g} arcsec) is narrower than the radius "
                        f"({r_arcsec:g} arcsec); matches across pixel edges may be missed")
    sinfo = spectra.hc_structure.catalog_info
    label = source or sinfo.catalog_name
    keep = list(dict.fromkeys([sinfo.ra_column, sinfo.dec_column, *wanted]))
    right = spectra[keep] if len(keep) < len(spec_cols) else spectra
    info = catalog.hc_structure.catalog_info
    left = catalog.drop(columns=present) if present else catalog
    left = _without_margin(left)
    left = left.map_partitions(_number_rows, meta=_number_rows(left.to_dask_dataframe()._meta))
    left_cols = list(left.columns)
    suffix = "__amspec"
    crossed = left.crossmatch(right, n_neighbors=2, radius_arcsec=r_arcsec, how="left",
                              suffixes=("", suffix), log_changes=False)
    spec = {"ra": sinfo.ra_column + suffix, "dec": sinfo.dec_column + suffix,
            "z": z_col + suffix, "z_err": z_err_col and z_err_col + suffix,
            "cls": class_col and class_col + suffix, "id": id_col and id_col + suffix,
            "extra": {f"spec_{c}": c + suffix for c in columns or ()}}
    plan = dict(left_cols=[c for c in left_cols if c != _ROW], spec=spec, label=label,
                radius=r_arcsec)
    meta = _collapse_matches(crossed.to_dask_dataframe()._meta, plan)
    out = crossed.map_partitions(_collapse_matches, plan, meta=meta)
    summary = {"catalog": label, "radius_arcsec": r_arcsec, "quality": "none",
               "astro_mantis_version": __version__, "method": "lsdb crossmatch, n_neighbors=2"}
    out.hc_structure.catalog_info = out.hc_structure.catalog_info.copy_and_update(
        spec_match=json.dumps(summary), ra_column=info.ra_column, dec_column=info.dec_column)
    return out


_ROW = "_astro_mantis_row"


def _number_rows(df):
    out = df.copy()  # never the input itself (see _partition_redshifts)
    out[_ROW] = np.arange(len(df), dtype=np.int64)
    return out


def _pa_type(series):
    """The pyarrow type of a pandas Series (None if pyarrow must infer it)."""
    import pyarrow as pa

    dtype = series.dtype
    if hasattr(dtype, "pyarrow_dtype"):
        return dtype.pyarrow_dtype
    try:
        return pa.from_numpy_dtype(dtype)
    except (TypeError, NotImplementedError, pa.ArrowNotImplementedError):
        return pa.string() if dtype is np.dtype(object) or str(dtype).startswith("str") else None


def _collapse_matches(df, plan):
    """One row per galaxy from the (galaxy, neighbour) pairs of a left crossmatch."""
    import pandas as pd
    import pyarrow as pa

    from .spectro.matching import SpecFlag

    spec = plan["spec"]
    order = np.lexsort((df["_dist_arcsec"].to_numpy(dtype=float, na_value=np.inf),
                        df[_ROW].to_numpy(dtype=np.int64)))
    df = df.iloc[order]
    rows = df[_ROW].to_numpy(dtype=np.int64)
    first = np.ones(len(df), dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    starts = np.flatnonzero(first)
    dist = df["_dist_arcsec"].to_numpy(dtype=float, na_value=np.nan)
    within = np.isfinite(dist) & (dist <= plan["radius"] * (1 + 1e-12))
    # neighbours within the radius per galaxy (the crossmatch keeps at most two)
    n_within = np.add.reduceat(within.astype(int), starts) if len(df) else np.zeros(0, int)
    take = df.iloc[starts]
    out = take[plan["left_cols"]].copy()
    matched = within[starts]
    n = len(out)
    flags = np.zeros(n, dtype=np.int16)
    flags[~matched] |= int(SpecFlag.NO_MATCH)
    flags[matched & (n_within > 1)] |= int(SpecFlag.AMBIGUOUS)
    if spec["id"]:
        key = take[spec["id"]].astype(str).to_numpy()
    else:
        sra = take[spec["ra"]].to_numpy(dtype=float, na_value=np.nan)
        sdec = take[spec["dec"]].to_numpy(dtype=float, na_value=np.nan)
        key = np.array([f"{a:.7f},{b:.7f}" for a, b in zip(sra, sdec)], dtype=str)
    if matched.any():
        used, counts = np.unique(key[matched], return_counts=True)
        flags[matched & np.isin(key, used[counts > 1])] |= int(SpecFlag.SHARED)

    def series(values, pa_type):
        values = [v if m else None for v, m in zip(values, matched)]
        arr = pa.array(values, type=pa_type, from_pandas=True)
        return pd.Series(pd.arrays.ArrowExtensionArray(arr), index=out.index)

    def from_take(name):
        s = take[name]
        return series(s.to_numpy(dtype=object, na_value=None), _pa_type(s))

    out["z_spec"] = from_take(spec["z"]).astype("double[pyarrow]")
    out["z_spec_err"] = (from_take(spec["z_err"]) if spec["z_err"]
                         else series([None] * n, pa.float64())).astype("double[pyarrow]")
    out["spec_class"] = from_take(spec["cls"]) if spec["cls"] else series([None] * n,
                                                                          pa.string())
    out["spec_id"] = from_take(spec["id"]) if spec["id"] else series(key, pa.string())
    out["spec_sep"] = series(dist[starts], pa.float64())
    out["spec_source"] = series([plan["label"]] * n, pa.string())
    out["spec_flags"] = pd.Series(pd.arrays.ArrowExtensionArray(pa.array(flags)),
                                  index=out.index)
    for name, src in spec["extra"].items():
        out[name] = from_take(src)
    return out
