# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Photo-z on your table: `add_redshift_columns` and `query_coordinates`.

Hand over an astropy `~astropy.table.Table` (or `~astropy.coordinates.SkyCoord`
positions) and get redshift PDF columns back, one row out for every row in:

1. the positions are read from a `~astropy.coordinates.SkyCoord` column or from
   right ascension and declination columns (degrees, or any angular unit); rows
   with NaN, masked or out-of-range positions are flagged, not dropped;
2. repeated positions are processed once;
3. the positions go through in chunks: while the network infers the redshifts of
   one chunk, the cutouts of the next are fetched (`Mantis.get_cutouts
   <astro_mantis.MantisClass.get_cutouts>`, with its on-disk cache), so memory
   stays bounded by two chunks of cutouts plus the output columns;
4. the PDFs come from `astro_mantis.models.predict` (with the calibration stored in
   the model card) and the summary columns from `astro_mantis.pdf.RedshiftPDF`.

Rows that cannot be estimated (bad coordinate, a fetch that kept failing, no survey
data at all) keep their place with masked values and the
`~astro_mantis.MantisFlag.NOT_ESTIMATED` flag. A rerun with ``resume=True`` (or
``overwrite=True``) completes them; cached cutouts are not fetched again.
"""
import math
import threading
import time
from collections import Counter
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import MISSING, dataclass, field, fields

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import MaskedColumn, QTable, Table
from astropy.utils.exceptions import AstropyUserWarning

from ._version import __version__
from .flags import MantisFlag
from .logger import log, quiet_cutout_summaries
from .pdf import NBINS, RECOMMENDED_POINT_ESTIMATE, ZMAX, ZMIN
from .positions import missing_column_error, table_positions
from .surveys import DEFAULT_SURVEYS

__all__ = ["add_redshift_columns", "query_coordinates", "table_coordinates", "dust_values",
           "run_settings", "recorded_services", "model_surveys", "MAX_EBV",
           "NotEstimatedWarning",
           "column_names", "RunStats", "OUTPUT_KEYS", "DustWarning", "PROVENANCE_KEYS",
           "provenance_keys", "records_run"]

#: Suffixes of the columns `add_redshift_columns` always adds (after the prefix); the
#: out-of-distribution score, ``ood``, comes before ``flags`` where the model has a
#: reference embedding.
OUTPUT_KEYS = ("pdf", "mean", "median", "mode", "std", "lo68", "hi68", "odds", "flags")

#: Suffix of the out-of-distribution score column (added when the model has a reference
#: embedding; see `add_redshift_columns`).
OOD_KEY = "ood"

#: Keys (after the prefix) of the provenance a run writes into the table's meta;
#: ``prec`` and ``oodth`` only when the network ran and the OOD score was added.
PROVENANCE_KEYS = ("model", "sha256", "vers", "nbins", "zmin", "zmax", "dust", "survey", "tta",
             "ebv", "pos", "point", "srv", "prec", "oodth")

#: Key (after the prefix) of the input file's SHA-256, written by ``astro-mantis predict``.
_INPUT_KEY = "input"

#: Flags after which a row gets no estimate (its values are masked).
_NO_ESTIMATE = MantisFlag.BAD_COORDINATE | MantisFlag.FETCH_FAILED

_FLAGS_DESCRIPTION = ("astro_mantis.MantisFlag bits (missing surveys, bad coordinate, fetch "
                      "failed, dust unknown, not estimated, ...)")

# RunStats of the latest add_redshift_columns call, for the deprecated ``last_run``
_LAST_RUN = None


def _set_last_run(run):
    global _LAST_RUN
    _LAST_RUN = run


def __getattr__(name):
    if name == "last_run":
        from astropy.utils.exceptions import AstropyDeprecationWarning

        warnings.warn("astro_mantis.table.last_run is deprecated: pass "
                      "report=RunStats() to add_redshift_columns and read it afterwards",
                      AstropyDeprecationWarning, stacklevel=2)
        return _LAST_RUN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Largest Milky Way E(B-V) (mag) taken as a real value: beyond it the optical
#: extinction exceeds ~15 mag and no extragalactic photo-z is possible; larger values
#: (typos, or columns in another unit) make the row DUST_UNKNOWN.
MAX_EBV = 5.0


class DustWarning(AstropyUserWarning):
    """Milky Way dust values are unknown: zeros are used and the rows are flagged."""


class NotEstimatedWarning(AstropyUserWarning):
    """No row of the table could be estimated (every fetch failed, or no valid position)."""


@dataclass
class RunStats:
    """What one `add_redshift_columns` call did and where its time went.

    Attributes
    ----------
    n_rows : int
        Rows of the table.
    n_todo : int
        Rows with a valid position that were processed (all, or those to resume).
    n_unique : int
        Distinct positions among them (each fetched once, and inferred once per
        distinct dust value of its rows): the positions planned.
    n_processed : int
        Distinct positions whose cutouts were fetched and inferred (their chunk
        finished): ``n_unique`` after a whole run, fewer after an interrupt.
    n_estimated : int
        Rows that received an estimate in this call (of ``n_todo``; on a resume, rows
        estimated by the earlier run are not counted).
    n_chunks : int
        Chunks the positions were processed in.
    fetch_seconds, infer_seconds, wall_seconds : float
        Time spent fetching cutouts (in the fetching thread), fusing and inferring,
        and in all.
    flags : dict
        Flag name → number of rows carrying it.
    failures : `collections.Counter`
        ``"<survey>: <reason>"`` → number of positions whose fetch failed for it.
    precision : str
        The precision the network ran in (never ``"auto"``; empty if it never ran).
    n_checkpoints : int
        Times the ``checkpoint`` callable was called.
    checkpoint_seconds : float
        Time spent in those calls (filling the columns and the callable's own work).
    """

    n_rows: int = 0
    n_todo: int = 0
    n_unique: int = 0
    n_processed: int = 0
    n_estimated: int = 0
    n_chunks: int = 0
    fetch_seconds: float = 0.0
    infer_seconds: float = 0.0
    wall_seconds: float = 0.0
    flags: dict = field(default_factory=dict)
    failures: Counter = field(default_factory=Counter)
    precision: str = ""
    n_checkpoints: int = 0
    checkpoint_seconds: float = 0.0

    @property
    def rate(self):
        """Distinct positions processed (``n_processed``) per second of wall time."""
        return self.n_processed / self.wall_seconds if self.wall_seconds > 0 else float("nan")


def column_names(prefix="z_"):
    """The names of the columns `add_redshift_columns` always adds, in order.

    With a model that has a reference embedding (the bundled ``mantis-mini`` has one)
    and ``ood=True``, it also adds ``{prefix}ood`` just before
    ``{prefix}flags``.

    Parameters
    ----------
    prefix : str
        Column name prefix.

    Returns
    -------
    list of str

    Examples
    --------
    >>> from astro_mantis.table import column_names
    >>> column_names()
    ['z_pdf', 'z_mean', 'z_median', 'z_mode', 'z_std', 'z_lo68', 'z_hi68', 'z_odds',
     'z_flags']
    """
    return [f"{prefix}{k}" for k in OUTPUT_KEYS]


# ------------------------------------------------------------------------ positions
def table_coordinates(table, coord=None, ra="ra", dec="dec", ra_unit=None, dec_unit=None):
    """The ICRS positions of a table's rows, with invalid rows marked.

    The positions are read by `astro_mantis.positions.table_positions`: numbers in
    degrees (or the column's angular unit), or strings (decimal degrees or
    sexagesimal; sexagesimal right ascension in hours unless ``ra_unit`` or the
    column's unit says otherwise).

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
        The table.
    coord : str, optional
        Name of a `~astropy.coordinates.SkyCoord` column (any frame convertible to
        ICRS). When given, ``ra`` and ``dec`` are ignored.
    ra, dec : str
        Names of the right ascension and declination columns (ICRS). Masked, NaN,
        unreadable and out-of-range values (``ra`` outside [0, 360], ``dec`` outside
        [-90, 90] degrees) make invalid rows.
    ra_unit, dec_unit : `~astropy.units.Unit` or str, optional
        Units of columns that carry none.

    Returns
    -------
    coords : `~astropy.coordinates.SkyCoord`
        One ICRS position per row (NaN for invalid rows).
    good : `numpy.ndarray` of bool
        False for rows whose position is invalid.

    Raises
    ------
    KeyError
        If a column does not exist (the message lists those that do, and suggests a
        column of the same name in another case).
    ValueError
        If a column is not one value per row or not an angle; or the ``coord``
        column is not a SkyCoord.
    """
    pos = table_positions(table, coord=coord, ra=ra, dec=dec, ra_unit=ra_unit,
                          dec_unit=dec_unit)
    return pos.coord, pos.good


# ------------------------------------------------------------------------ dust
def _dust_from_dustmaps(coords, good):
    """E(B-V) from the ``dustmaps`` package: (values (N, 2) or None, description)."""
    import contextlib
    import importlib
    import io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dustmaps warns when it has no config file
        try:
            importlib.import_module("dustmaps")
        except ImportError:
            return None, "the dustmaps package is not installed"
    queries = {}
    for module, cls in (("csfd", "CSFDQuery"), ("sfd", "SFDQuery"), ("planck", "PlanckQuery")):
        # a missing map makes dustmaps print instructions and raise: keep that quiet
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                queries[module] = getattr(importlib.import_module(f"dustmaps.{module}"), cls)()
            except Exception:  # map not downloaded, or a dustmaps without the module
                continue
    if not queries:
        return None, "dustmaps is installed but none of its CSFD, SFD or Planck maps is present"
    first = queries.get("csfd") or queries.get("sfd") or queries["planck"]
    second = queries.get("planck", first)
    out = np.zeros((len(coords), 2), dtype=np.float32)
    if np.any(good):
        sub = coords[good]
        out[good, 0] = np.asarray(first(sub), dtype=np.float32)
        out[good, 1] = np.asarray(second(sub), dtype=np.float32)
    return out, f"dustmaps ({', '.join(queries)})"


#: Text a string dust column may hold for a missing value (read as unknown, like a
#: masked or NaN value), compared in lower case.
_MISSING_TEXT = frozenset({"", "nan", "n/a", "na", "null", "none", "--", "-", "?"})


def _unit_factor(unit, what):
    """The factor from ``unit`` to mag (None for no unit); a ValueError for any unit
    that is not a magnitude."""
    if unit is None:
        return None
    try:
        unit = u.Unit(unit)
        if isinstance(unit, u.UnrecognizedUnit):  # FITS files write "MAG" too
            unit = u.Unit(unit.name.strip().lower())
    except (ValueError, TypeError):
        raise ValueError(f"{what} has unit {str(unit)!r}, which is not a unit astropy "
                         "knows; expected mag or mmag (E(B-V)), or no unit") from None
    if unit == u.dimensionless_unscaled:
        return None
    try:
        return float(unit.to(u.mag))
    except (u.UnitsError, TypeError, ValueError):
        raise ValueError(f"{what} has unit {unit}, which is not a magnitude; expected mag or "
                         "mmag (E(B-V)), or no unit") from None


def _parse_dust_text(values, what):
    """A string array as float magnitudes: unreadable or missing cells are NaN (rows
    flagged DUST_UNKNOWN); a ValueError when no cell reads and some hold other text."""
    text = np.char.strip(np.asarray(values, dtype=str))
    out = np.full(text.shape, np.nan)
    unread = []
    for i, cell in enumerate(text.ravel()):
        try:
            out.flat[i] = float(cell)
        except ValueError:
            if cell.lower() not in _MISSING_TEXT:
                unread.append(cell)
    if unread and not np.any(np.isfinite(out)):
        raise ValueError(f"{what} holds text none of which reads as a number (e.g. "
                         f"{unread[0]!r}); expected E(B-V) in mag (numbers, or text such as "
                         "'0.02'; empty, 'nan' or 'n/a' for unknown values)")
    return out


def _as_mag(values, what):
    """Dust values as a float array in mag, NaN where masked or unreadable.

    A `~astropy.units.Quantity`, or a column with a unit, is converted to mag (mag,
    mmag); any other unit is refused. String values are read per cell.
    """
    if isinstance(values, u.Quantity):
        try:
            values = values.to_value(u.mag)
        except u.UnitConversionError:
            raise ValueError(f"{what} has unit {values.unit}; expected mag (E(B-V))") from None
        factor = None
    else:
        factor = _unit_factor(getattr(values, "unit", None), what)
    data = np.ma.asarray(values)
    if data.dtype.kind in "US":
        out = _parse_dust_text(np.ma.filled(data, ""), what)
        out[np.ma.getmaskarray(data)] = np.nan
    elif data.dtype.kind == "b":
        raise ValueError(f"{what} holds booleans; expected E(B-V) values in mag")
    else:
        try:
            out = np.ma.filled(data.astype(float), np.nan)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} is not numeric ({exc}); expected E(B-V) values in "
                             "mag") from None
    return out * factor if factor is not None else out


def dust_values(table, coords, good, ebv=None):
    """Milky Way E(B-V) (CSFD-like, Planck-like) for each row, and where it is unknown.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The table (for column names).
    coords : `~astropy.coordinates.SkyCoord`
        The rows' ICRS positions.
    good : `numpy.ndarray` of bool
        Valid positions.
    ebv : str, (str, str), float, array-like, `~astropy.units.Quantity` or callable, optional
        One column name (used for both dust inputs), two column names (CSFD-like,
        Planck-like), one value or one pair of values (CSFD-like, Planck-like) for
        every row, an array of shape ``(N,)`` or ``(N, 2)`` in magnitudes, or a
        function of `~astropy.coordinates.SkyCoord` returning either. Two numbers are
        always the pair, also for a table of two rows (give its per-row values with
        shape ``(2, 2)``). Default: the ``dustmaps`` package's CSFD (else SFD) and
        Planck maps when it is installed with the maps present, otherwise zeros.

    Returns
    -------
    values : `numpy.ndarray`
        float32, shape ``(N, 2)``; unknown values are 0.
    unknown : `numpy.ndarray` of bool
        Rows whose dust is unknown (NaN or masked inputs, values outside
        ``0 <= E(B-V) <= MAX_EBV``, or no source at all): flagged
        `~astro_mantis.MantisFlag.DUST_UNKNOWN`, with 0 used.
    source : str
        Where the values came from.

    Raises
    ------
    ValueError
        If a single value for every row is negative or above `MAX_EBV`, or the
        values have the wrong shape.
    """
    n = len(coords)
    if ebv is None:
        values, source = _dust_from_dustmaps(coords, good)
        if values is None:
            return np.zeros((n, 2), np.float32), np.ones(n, bool), f"zeros ({source})"
    elif callable(ebv):
        values = _as_mag(ebv(coords), "the dust function's result")
        source = f"function {getattr(ebv, '__name__', repr(ebv))}"
    elif isinstance(ebv, str) or _has_names(ebv):
        if not isinstance(ebv, str) and (len(ebv) != 2 or not all(isinstance(e, str)
                                                                   for e in ebv)):
            raise ValueError(f"ebv={ebv!r}: give one dust column name, two (CSFD-like, "
                             "Planck-like), or numbers (one value, one pair, or one value or "
                             "pair per row), not a mix of names and numbers nor more than two "
                             "names")
        names = (ebv, ebv) if isinstance(ebv, str) else tuple(ebv)
        for name in names:
            if name not in table.colnames:
                raise missing_column_error(table, name, "dust")
        values = np.stack([_as_mag(table[name], f"dust column {name!r}") for name in names],
                          axis=1)
        source = "columns " + (names[0] if names[0] == names[1] else " and ".join(names))
    else:
        values = _as_mag(ebv, "ebv")
        if np.ndim(values) == 0 or np.shape(values) == (2,):  # one value, or one pair
            scalar = np.atleast_1d(values).astype(float)
            if not np.all(np.isfinite(scalar)) or np.any(scalar < 0) or np.any(scalar > MAX_EBV):
                raise ValueError(f"ebv={ebv!r}: Milky Way E(B-V) must lie in [0, {MAX_EBV:g}] "
                                 "mag")
            values = np.broadcast_to(scalar, (n, scalar.size))
            source = "value " + " and ".join(f"{v:g}" for v in scalar)
        else:
            source = "array"
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = np.stack([values, values], axis=1)
    elif values.ndim == 2 and values.shape[1] == 1:
        values = np.repeat(values, 2, axis=1)
    if values.shape != (n, 2):
        raise ValueError(f"dust values must have shape ({n},) or ({n}, 2); got {values.shape}")
    with np.errstate(invalid="ignore"):
        unknown = ~np.all(np.isfinite(values) & (values >= 0) & (values <= MAX_EBV), axis=1)
    values = np.where(unknown[:, None], 0.0, values).astype(np.float32)
    return values, unknown, source


def _has_names(ebv):
    """Whether ``ebv`` is a tuple or list holding a column name (a string)."""
    return isinstance(ebv, (tuple, list)) and any(isinstance(e, str) for e in ebv)


# ------------------------------------------------------------------------ the job
def _unique_positions(coords, rows):
    """Representative row of each distinct position among ``rows``; inverse index."""
    ra = np.round(coords.ra.deg[rows], 7)
    dec = np.round(coords.dec.deg[rows], 7)
    _, first, inverse = np.unique(np.stack([ra, dec], axis=1), axis=0, return_index=True,
                                  return_inverse=True)
    order = np.argsort(first)  # keep table order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rows[first[order]], rank[inverse.ravel()]


def _dust_groups(rows, inverse, dust, unknown):
    """The distinct (position, dust) pairs among ``rows``: each is inferred once.

    Rows at one position share its cutouts, but the network takes each row's own
    E(B-V): rows of one position whose dust values (or their unknown-ness) differ are
    inferred separately.

    Returns
    -------
    reps : `numpy.ndarray`
        A table row of each group, the groups ordered by position index (so the groups
        of a range of positions are a contiguous range).
    position : `numpy.ndarray`
        The position index (into ``_unique_positions``' output) of each group.
    inverse : `numpy.ndarray`
        The group of each of ``rows``.
    """
    key = np.column_stack([inverse.astype(np.float64), dust[rows].astype(np.float64),
                           unknown[rows].astype(np.float64)])
    _, first, group = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return rows[first], inverse[first], group.ravel()


def _ood_reference(net):
    """The reference embedding of the model's training set, or None (logged)."""
    from .explain.ood import load_reference

    if not all(hasattr(net, name) for name in ("Base", "fc0", "act")):
        log.info(f"no {OOD_KEY} column: the network exposes no penultimate features")
        return None
    try:
        ref = load_reference(net)
    except (ValueError, OSError) as exc:
        ref, why = None, str(exc)
    else:
        why = "no reference embedding beside its weights"
    if ref is None:
        log.info(f"no {OOD_KEY} column: {why} (build one with 'astro-mantis explain "
                 "reference')")
    return ref


def _check_precision(precision, net):
    """Refuse a precision the network's device cannot run, before any work."""
    from .models import resolve_precision

    if precision == "int8":
        return  # needs a quantised model; predict says so with the details
    param = next(iter(net.parameters()), None)
    resolve_precision(precision, param.device if param is not None else "cpu")


def _check_surveys(surveys, meta):
    """The surveys to fetch, checked against those the model was trained on."""
    from .surveys import get_survey

    if isinstance(surveys, str):
        surveys = [s for s in surveys.split(",") if s.strip()]
    asked = tuple(get_survey(s.strip() if isinstance(s, str) else s).name for s in surveys)
    trained = model_surveys(meta)
    if set(asked) != set(trained):
        name = meta.get("name", "the model")
        raise ValueError(
            f"surveys={','.join(asked)}: {name} was trained on {', '.join(trained)} and gets "
            "only the inputs it was trained for. Fed a subset, its redshifts degrade without "
            "warning (the missing survey's channels arrive empty), so pass "
            f"surveys={tuple(trained)!r} (positions a survey does not cover are flagged "
            "per row) or use a model trained on the surveys you have")
    return tuple(s for s in trained)


def model_surveys(meta):
    """The surveys a model was trained on, from its ``meta`` (model card).

    Parameters
    ----------
    meta : dict
        A model's ``meta`` (`astro_mantis.models.load_model` fills it from the card).

    Returns
    -------
    tuple of str
        The card's ``surveys`` or ``data.surveys``; the three Mantis Shrimp surveys
        when the card does not say (the registry's architectures take all three).
    """
    data = meta.get("data")
    found = meta.get("surveys") or (data.get("surveys") if isinstance(data, dict) else None)
    return tuple(found) if found else tuple(DEFAULT_SURVEYS)


def _ebv_setting(ebv):
    """Machine-readable record of the dust source (what ``resume`` compares)."""
    if ebv is None:
        return "dustmaps"
    if isinstance(ebv, str):
        return f"col:{ebv},{ebv}"
    if isinstance(ebv, (tuple, list)) and len(ebv) == 2 and all(isinstance(e, str) for e in ebv):
        return "col:" + ",".join(ebv)
    if callable(ebv):
        return f"function:{getattr(ebv, '__name__', type(ebv).__name__)}"
    values = _as_mag(ebv, "ebv")
    if np.ndim(values) == 0 or np.shape(values) == (2,):
        pair = np.broadcast_to(np.atleast_1d(values).astype(float), (2,))
        # repr: the shortest text that reads back as the same float, so that a resume
        # from the record uses the very value (earlier versions wrote 6 digits, "%g")
        return "value:" + ",".join(repr(float(v)) for v in pair)
    return "array"


def _same_ebv(old, new):
    """Whether two recorded dust sources (``_ebv_setting``) are the same. A value
    recorded with 6 significant digits by earlier versions matches the values that
    round to it."""
    old, new = str(old), str(new)
    if old == new:
        return True
    if not (old.startswith("value:") and new.startswith("value:")):
        return False
    try:
        olds = old[len("value:"):].split(",")
        news = [float(v) for v in new[len("value:"):].split(",")]
        return len(olds) == len(news) and all(
            float(o) == n or o == f"{n:g}" for o, n in zip(olds, news))
    except ValueError:
        return False


def _settings(meta, surveys, tta, ebv, pos, source=None):
    """The settings that shape a run's result, as scalar table-meta entries.

    ``srv`` records where each survey's cutouts came from: ``survey=base URL|layer``
    for a service, ``survey=tiles:DIR|local`` for local tiles, and ``survey=none``
    for a survey that a `~astro_mantis.sources.LocalTiles` source has no directory
    for (it reports that survey ``not fetched`` at every position; no service is
    asked).
    """
    from .surveys import get_survey

    dirs = getattr(source, "directories", None)
    if dirs is None:
        srv = "; ".join(f"{s}={get_survey(s).source}" for s in surveys)
    else:
        srv = "; ".join(f"{s}=tiles:{dirs[s]}|local" if s in dirs else f"{s}=none"
                        for s in surveys)
    return {"model": str(meta.get("name", "unknown")), "sha256": str(meta.get("sha256") or ""),
            "survey": ",".join(surveys), "tta": bool(tta), "ebv": _ebv_setting(ebv),
            "pos": pos, "point": RECOMMENDED_POINT_ESTIMATE, "srv": srv}


def recorded_services(table, prefix="z_"):
    """The services a run fetched its cutouts from, as recorded in the table's meta.

    Parameters
    ----------
    table : `~astropy.table.Table`
    prefix : str

    Returns
    -------
    dict
        Survey name → (base URL, layer); ``("tiles:DIR", "local")`` for a survey cut
        from local tiles, and ``("none", "")`` for one the run did not fetch (local
        tiles without that survey's directory). Empty when the table records none.
        Tables written before ``none`` was recorded name a service for such a survey
        beside the ``tiles:`` entries; as no service was asked there, it is read as
        ``none`` too.
    """
    return _parse_services(run_settings(table, prefix).get("srv", ""))


def _parse_services(text):
    """A ``srv`` record (see `_settings`) as survey name → (base URL, layer)."""
    out = {}
    for item in str(text or "").split(";"):
        name, sep, source = item.strip().partition("=")
        if sep:
            url, _, layer = source.partition("|")
            out[name.strip()] = (url.strip(), layer.strip())
    if any(url.startswith("tiles:") for url, _ in out.values()):
        # a LocalTiles run: it cut every survey it had a directory for and fetched none
        out = {name: entry if entry[0].startswith("tiles:") else ("none", "")
               for name, entry in out.items()}
    return out


def run_settings(table, prefix="z_"):
    """The settings an `add_redshift_columns` run recorded in a table's meta.

    Reads the keys whatever their case (FITS headers return them upper-case:
    ``Z_MODEL``), so it works on a table read back from any format.

    Parameters
    ----------
    table : `~astropy.table.Table`
        A table with redshift columns.
    prefix : str
        The columns' prefix.

    Returns
    -------
    dict
        ``model``, ``sha256``, ``vers``, ``survey``, ``tta``, ``ebv``, ``dust``,
        ``point``, ``srv``, ``input`` (the input file's SHA-256, recorded by
        ``astro-mantis predict``), ``prec`` ..., whichever are present, under their
        names without the prefix.
    """
    lower = prefix.lower()
    out = {}
    for key, value in table.meta.items():
        k = str(key).lower()
        if k.startswith(lower) and k != lower:
            out[k[len(lower):]] = value
    if "tta" in out and isinstance(out["tta"], str):
        out["tta"] = out["tta"].strip().lower() in ("true", "1", "t")
    return out


def _check_resume(table, prefix, settings):
    """Refuse to resume a run whose recorded settings differ from this call's."""
    recorded = run_settings(table, prefix)
    labels = {"model": "model", "sha256": "model weights (sha256)", "survey": "surveys",
              "tta": "tta", "ebv": "dust source (ebv)", "pos": "position columns"}
    diffs = []
    for key, label in labels.items():
        if key not in recorded or key not in settings:
            continue
        old, new = recorded[key], settings[key]
        if key == "tta":
            old, new = bool(old), bool(new)
        elif key == "ebv" and (str(old) == "array" or str(new) == "array"):
            continue  # arrays cannot be compared with what was used then
        elif key == "ebv" and _same_ebv(old, new):
            continue
        else:
            old, new = str(old), str(new)
        if old != new:
            diffs.append(f"{label}: the earlier run used {old!r}, this call {new!r}")
    if diffs:
        raise ValueError("resume=True with settings that differ from the earlier run's, which "
                         "would mix two kinds of estimate in one table: " + "; ".join(diffs)
                         + ". Resume with the earlier settings, or start afresh with "
                         "overwrite=True")
    old_srv = str(recorded.get("srv", settings["srv"]))
    if _parse_services(old_srv) != _parse_services(settings["srv"]):
        log.warning(f"resuming with other services than the earlier run: {old_srv!r} then, "
                    f"{settings['srv']!r} now")


def _check_resume_ood(table, prefix, with_ood):
    """Refuse to resume without the OOD score when the earlier run wrote one: the new
    rows would have none. (Where it wrote none, a resume writes none either.)"""
    if f"{prefix}{OOD_KEY}" in table.colnames and not with_ood:
        raise ValueError(f"resume=True without the out-of-distribution score, but the earlier "
                         f"run wrote {prefix}{OOD_KEY}: the new rows would have none. Resume "
                         "with ood=True and the same model, or start afresh with "
                         "overwrite=True")


def _resume_precision(table, prefix, precision, net):
    """The precision a resumed run uses: the earlier run's (recorded as ``prec``)."""
    recorded = str(run_settings(table, prefix).get("prec", "") or "")
    if not recorded or recorded == precision:
        return precision
    if precision != "auto":
        raise ValueError(f"resume=True with precision {precision!r}, but the earlier run "
                         f"used {recorded!r}: that would mix two kinds of estimate in one "
                         f"table. Resume with precision={recorded!r} (or 'auto', which "
                         "takes the earlier run's), or start afresh with overwrite=True")
    try:
        _check_precision(recorded, net)
    except ValueError as exc:
        raise ValueError(f"resume=True: the earlier run used precision {recorded!r}, which "
                         f"cannot run here ({exc}). Resume where it can, or start afresh "
                         "with overwrite=True") from None
    return recorded


def _check_columns(table, names, overwrite, resume):
    present = [n for n in names if n in table.colnames]
    if resume:
        missing = [n for n in names if n not in table.colnames]
        if missing:
            raise ValueError(f"resume=True needs the columns of an earlier run; missing "
                             f"{', '.join(missing)}")
    elif present and not overwrite:
        raise ValueError(f"the table already has column(s) {', '.join(present)}; pass "
                         "overwrite=True to replace them, resume=True to complete the rows "
                         "not yet estimated, or another prefix=")


def _meta_keys(table, keys):
    """The keys of ``table.meta`` equal to one of ``keys`` but for case (FITS headers
    give them back upper-case)."""
    wanted = {k.lower() for k in keys}
    return [k for k in table.meta if str(k).lower() in wanted]


def provenance_keys(meta, prefix="z_"):
    """The keys of ``meta`` that hold a run's provenance under ``prefix``.

    Compared without regard to case: FITS headers give the keys back upper-case.

    Parameters
    ----------
    meta : dict
        A table's ``meta`` (or a Dask frame's ``attrs``, an LSDB catalog's properties).
    prefix : str
        The columns' prefix.

    Returns
    -------
    list
        The keys of ``meta`` among ``{prefix}`` + `PROVENANCE_KEYS`, as ``meta`` spells
        them.

    Examples
    --------
    >>> from astro_mantis.table import provenance_keys
    >>> provenance_keys({"Z_MODEL": "mantis-mini", "survey": "mine"})
    ['Z_MODEL']
    """
    wanted = {f"{prefix}{k}".lower() for k in PROVENANCE_KEYS}
    return [k for k in (meta or {}) if str(k).lower() in wanted]


def records_run(columns, meta, prefix="z_"):
    """Whether a table holds an earlier run's output under ``prefix``.

    It does when it has that run's flags column, or its provenance
    (``{prefix}vers`` naming the package). `add_redshift_columns` and the Dask and LSDB
    versions (`astro_mantis.scale`) decide with this what ``overwrite=True`` replaces
    whole and which meta keys may be written over.

    Parameters
    ----------
    columns : sequence of str
        The column names.
    meta : dict
        The table's ``meta`` (a frame's ``attrs``, a catalog's properties).
    prefix : str
        The columns' prefix.

    Returns
    -------
    bool
    """
    if f"{prefix}flags" in columns:
        return True
    vers = f"{prefix}vers".lower()
    return any(str(k).lower() == vers and str(v).startswith("astro_mantis")
               for k, v in (meta or {}).items())


def _records_run(table, prefix):
    """`records_run` of an astropy table."""
    return records_run(table.colnames, table.meta, prefix)


def _check_meta(table, prefix, overwrite, resume):
    """Refuse to replace the table's own meta entries with the run's provenance.

    The run writes ``{prefix}model``, ``{prefix}survey`` ... (`PROVENANCE_KEYS`, and
    ``astro-mantis predict`` ``{prefix}input``); with a short prefix (or none) these can
    be the user's own keys. They are replaced only with ``overwrite`` (or ``resume``),
    or when they are an earlier run's record.
    """
    if overwrite or resume:
        return
    present = _meta_keys(table, [f"{prefix}{k}" for k in PROVENANCE_KEYS + (_INPUT_KEY,)])
    if present and not _records_run(table, prefix):
        raise ValueError(f"the table's meta already has key(s) {', '.join(map(str, present))}: "
                         f"this run records its settings under those names (prefix={prefix!r}); "
                         "pass overwrite=True to replace them, or another prefix=")


def add_redshift_columns(table, coord=None, ra="ra", dec="dec", model="mantis-mini",
                         prefix="z_", surveys=DEFAULT_SURVEYS, ebv=None, batch_size=64,
                         device=None, progress=None, cache=True, overwrite=False,
                         resume=False, chunk_size=256, weights=None, tta=False, ra_unit=None,
                         dec_unit=None, precision="auto", source=None, ood=True, report=None,
                         checkpoint=None, checkpoint_interval=600.0):
    """Add redshift PDF columns to a table, in place; one row out for every row in.

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
        The table; it gains the columns below (modified in place).
    coord : str, optional
        Name of a `~astropy.coordinates.SkyCoord` column holding the positions.
    ra, dec : str
        Otherwise, names of the right ascension and declination columns (ICRS):
        numbers in degrees unless the columns carry an angular unit, or strings
        (decimal degrees or sexagesimal, see `astro_mantis.positions`). Masked, NaN,
        unreadable and out-of-range values (``ra`` outside [0, 360], ``dec`` outside
        [-90, 90] degrees) make rows flagged ``BAD_COORDINATE``, never wrapped.
    model : str or `torch.nn.Module`
        Registry name (`astro_mantis.models.available_models`) or a network. The
        default, ``"mantis-mini"``, was trained on simulated galaxies only (for trying
        the pipeline); for real-sky science use ``"mantis-shrimp-v1"``, the published
        model (its ``weights`` file, or downloaded once into astropy's cache).
    prefix : str
        Prefix of the new columns' names.
    surveys : sequence of str
        Surveys to fetch: they must be those the model was trained on (its card's
        ``data.surveys``; all three for the registry's models). A model fed only
        some of its surveys gives silently degraded redshifts, so another set is
        refused. Positions a survey does not cover are flagged, not refused.
    ebv : see `~astro_mantis.table.dust_values`, optional
        Milky Way E(B-V): column name(s), one value for all rows, values or a
        function of the positions.
        Default: the ``dustmaps`` package when installed with its maps, otherwise
        zeros with the ``DUST_UNKNOWN`` flag and one `~astro_mantis.table.DustWarning`.
    batch_size : int
        Inference batch size.
    device : str, optional
        Torch device (default: CUDA, else MPS, else CPU).
    progress : bool, optional
        Show one progress bar over the distinct positions, with the rate; default:
        on a terminal (`astro_mantis.progress.progress_enabled`).
    cache : bool
        Use the on-disk cutout cache (``conf.cache_dir``): a rerun fetches nothing
        that was fetched before.
    overwrite : bool
        Replace existing columns of the same names.
    resume : bool
        Complete an earlier run: process only the rows flagged
        ``NOT_ESTIMATED`` (except bad coordinates) and keep the others. The settings
        recorded by the earlier run (model and checksum, surveys, dust source, TTA,
        position columns, precision) must match this call's; a difference is refused,
        naming it. With ``precision="auto"`` the earlier run's precision is used, so
        one table never holds rows of two precisions.
    chunk_size : int
        Distinct positions per chunk. Two chunks of cutouts are in memory at once;
        the working set measured with the default 256 is about 1 GB
        (``benchmarks/README.rst``); it scales with this number.
    weights : str or path-like, optional
        Weights file for a registry model (default: the registry's).
    tta : bool
        Average over the 8 flips and rotations (`astro_mantis.models.predict`).
    ra_unit, dec_unit : `~astropy.units.Unit` or str, optional
        Units of position columns that carry none (e.g. ``"hourangle"``).
    precision : {"auto", "float32", "bfloat16", "float16", "int8"}
        Arithmetic of the network (`astro_mantis.models.predict`): ``"auto"`` takes
        bfloat16 where the device runs it natively and a check against float32
        passes, float32 elsewhere. The precision used is recorded as
        ``{prefix}prec``.
    source : `~astro_mantis.sources.LocalTiles`, optional
        Cut the cutouts from survey images on local disks instead of fetching them
        from the services (:ref:`local_tiles`); recorded in ``{prefix}srv``.
    ood : bool
        Add ``{prefix}ood``, the out-of-distribution score of each estimated row (its
        penultimate features' k-NN distance, its PDF's width and edge mass and its
        bands' misalignment, each as a percentile among the reference galaxies of the
        model's training set, combined: `astro_mantis.explain.ood_score`), and
        flag rows above `astro_mantis.explain.OOD_THRESHOLD` ``OUT_OF_DISTRIBUTION``.
        Done when the model has a reference embedding beside its weights (the
        bundled ``mantis-mini`` has one); otherwise skipped with a log message. A
        resume follows the earlier run: no score where it wrote none, and
        ``ood=False`` is refused where it wrote one.
    report : `~astro_mantis.table.RunStats`, optional
        Filled in with what the call did and where its time went (rows, distinct
        positions, seconds fetching and inferring, flags, the reasons fetches
        failed), also when the call is interrupted: pass ``report=RunStats()`` and
        read it afterwards.
    checkpoint : callable, optional
        Called as ``checkpoint(table)`` between chunks, so that a run killed without
        warning (SIGKILL, out of memory, a lost machine) keeps its work: the table
        then holds the columns as an interrupted run leaves them (the rows done so far
        estimated, the others masked and flagged ``NOT_ESTIMATED``, the run's meta
        recorded), ready for the callable to write, e.g. with
        `astro_mantis.tableio.write_table`; ``resume=True`` on what it wrote completes
        the run. Filling the columns takes time, so the calls are spaced (see
        ``checkpoint_interval``). The columns are filled again when the call ends.
    checkpoint_interval : float
        Seconds from the start to the first ``checkpoint`` call and between calls; a
        gap is also at least ten times the last call's duration, so checkpoints take
        at most about a tenth of the run. ``0``: after every chunk, spaced only by
        that rule.

    Returns
    -------
    table : `~astropy.table.Table`
        The same table, with columns ``{prefix}pdf`` (float32, N x 400),
        ``{prefix}mean``, ``{prefix}median``, ``{prefix}mode``, ``{prefix}std``,
        ``{prefix}lo68``, ``{prefix}hi68``, ``{prefix}odds`` (the probability that
        the median is within 0.05 (1 + z) of the truth, `~astro_mantis.pdf.RedshiftPDF.odds`; all
        masked where not estimated), ``{prefix}ood`` (the out-of-distribution score,
        with ``ood`` and a model that has a reference embedding) and
        ``{prefix}flags`` (`~astro_mantis.MantisFlag` bits). The ``pdf`` column's
        meta holds the bin edges; ``table.meta`` gains ``{prefix}model``,
        ``{prefix}sha256``, ``{prefix}vers`` (package version), ``{prefix}nbins``,
        ``{prefix}zmin``, ``{prefix}zmax`` and ``{prefix}dust`` (scalar entries, so
        they survive FITS headers; FITS returns them upper-case, which
        `~astro_mantis.table.run_settings` reads either way), and the settings that
        shape the result: ``{prefix}survey`` (surveys used), ``{prefix}tta``,
        ``{prefix}ebv`` (the dust source, machine-readable), ``{prefix}pos`` (the
        position columns), ``{prefix}point`` (the recommended point estimate,
        ``median``: the column ``{prefix}median``; the Mantis Shrimp paper's is the
        mean), ``{prefix}prec`` (the network's precision), ``{prefix}oodth`` (the
        out-of-distribution threshold, with ``{prefix}ood``) and
        ``{prefix}srv`` (the services the cutouts came from,
        `~astro_mantis.table.recorded_services`). The run's statistics go into
        ``report``; a `~astro_mantis.table.NotEstimatedWarning` is issued when
        positions were processed but no row could be estimated.

    Raises
    ------
    TypeError
        If ``table`` is not an astropy Table, or ``report`` not a
        `~astro_mantis.table.RunStats`.
    KeyError
        If a position or dust column does not exist (the message lists the columns).
    ValueError
        If the output columns exist (without ``overwrite``/``resume``), a column is
        unusable, or the model name is unknown.
    astro_mantis.models.WeightsError
        If the weights fail their checksum.

    Notes
    -----
    If the run is interrupted (``KeyboardInterrupt``), the columns are still added:
    the rows done so far hold their estimates, the others are masked and flagged
    ``NOT_ESTIMATED``; ``resume=True`` continues from there.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from astro_mantis import add_redshift_columns
    >>> t = Table({"ra": [150.1, 150.2], "dec": [2.2, 2.3]})
    >>> add_redshift_columns(t)  # doctest: +SKIP
    """
    if not isinstance(table, Table):
        raise TypeError(f"table must be an astropy Table or QTable, got {type(table).__name__}")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
    if report is not None and not isinstance(report, RunStats):
        raise TypeError(f"report must be a RunStats, got {type(report).__name__}")
    if int(chunk_size) < 1 or int(batch_size) < 1:
        raise ValueError("chunk_size and batch_size must be positive")
    if checkpoint is not None and not callable(checkpoint):
        raise TypeError(f"checkpoint must be callable, got {type(checkpoint).__name__}")
    if not float(checkpoint_interval) >= 0:
        raise ValueError(f"checkpoint_interval must be 0 or more seconds, got "
                         f"{checkpoint_interval!r}")
    _check_columns(table, column_names(prefix), overwrite, resume)
    _check_meta(table, prefix, overwrite, resume)
    # a fresh run over an earlier one replaces all of it: what it does not write again
    # (the OOD score, its threshold, the precision) is removed, not left stale
    replace_all = not resume and _records_run(table, prefix)
    t0 = time.perf_counter()
    coords, good = table_coordinates(table, coord=coord, ra=ra, dec=dec, ra_unit=ra_unit,
                                     dec_unit=dec_unit)
    dust, dust_unknown, dust_source = dust_values(table, coords, good, ebv)
    from .models.inference import get_model

    net = get_model(model, weights, device)
    meta = dict(getattr(net, "meta", {}) or {})
    _check_precision(precision, net)
    if resume and ood and f"{prefix}{OOD_KEY}" not in table.colnames:
        ood = False  # a resume follows the earlier run, which wrote no score
    ood_ref = _ood_reference(net) if ood else None
    if ood_ref is not None and not resume:  # the score is an output column like the others
        _check_columns(table, [f"{prefix}{OOD_KEY}"], overwrite, resume)
    surveys = _check_surveys(surveys, meta)
    settings = _settings(meta, surveys, tta, ebv, _position_setting(coord, ra, dec, ra_unit,
                                                                      dec_unit), source)
    if resume:
        _check_resume(table, prefix, settings)
        _check_resume_ood(table, prefix, ood_ref is not None)
        precision = _resume_precision(table, prefix, precision, net)
    edges = np.linspace(float(meta.get("z_min", ZMIN)), float(meta.get("z_max", ZMAX)),
                        int(meta.get("n_bins", NBINS)) + 1)
    pdf, ood_values, flags, todo = _start_arrays(table, prefix, good, len(edges) - 1, resume,
                                                 ood_ref is not None)
    rows = np.flatnonzero(todo)
    reps, inverse = _unique_positions(coords, rows) if rows.size else (rows, rows)
    groups = _dust_groups(rows, inverse, dust, dust_unknown) if rows.size else (rows,) * 3
    run = _reset(report if report is not None else RunStats(), n_rows=len(table),
                 n_todo=int(rows.size), n_unique=int(reps.size),
                 n_chunks=math.ceil(reps.size / int(chunk_size)))
    job = _Job(net=net, coords=coords, dust=dust, surveys=surveys, chunk_size=int(chunk_size),
               batch_size=int(batch_size), cache=cache, tta=tta, precision=precision,
               source=source, ood_ref=ood_ref, rows=rows, reps=reps, inverse=inverse,
               group_reps=groups[0], group_position=groups[1], group_inverse=groups[2],
               run=run, pdf=pdf, edges=edges, ood=ood_values)
    _warn_dust(dust_unknown, todo, ebv, dust_source)

    def fill_columns():
        # the columns as they stand: the rows done so far estimated, the others flagged
        pdfs = _finish(job, flags, good, dust_unknown, t0)
        if run.precision:
            settings["prec"] = run.precision
        if ood_ref is not None:
            from .explain.ood import OOD_THRESHOLD

            settings["oodth"] = float(OOD_THRESHOLD)
        _write_columns(table, prefix, pdfs, job.ood, flags, meta, dust_source, settings,
                       replace_all)

    if checkpoint is not None:
        job.checkpoint = _Checkpoints(lambda: (fill_columns(), checkpoint(table)), run,
                                      float(checkpoint_interval))
    try:
        with quiet_cutout_summaries():
            _run_chunks(job, progress)
    finally:
        # also after an interrupt: the rows done so far are written, the others flagged
        fill_columns()
        _set_last_run(run)
    if run.n_todo and not run.n_estimated:
        reasons = "; ".join(f"{k} ({v}x)" for k, v in run.failures.most_common(3)) or \
            "no survey data at these positions"
        warnings.warn(f"no row could be estimated: {run.n_todo} row(s) processed, all "
                      f"flagged NOT_ESTIMATED. Reasons: {reasons}", NotEstimatedWarning,
                      stacklevel=2)
    log.info(f"add_redshift_columns: {len(table)} rows, {run.n_unique} distinct positions "
             f"processed, {run.n_estimated} rows estimated in {run.wall_seconds:.1f} s (fetch "
             f"{run.fetch_seconds:.1f} s, inference {run.infer_seconds:.1f} s)")
    return table


def _reset(run, **counts):
    """``run`` with every field at its default, then ``counts``."""
    for f in fields(RunStats):
        setattr(run, f.name, f.default_factory() if f.default is MISSING else f.default)
    for key, value in counts.items():
        setattr(run, key, value)
    return run


def _position_setting(coord, ra, dec, ra_unit, dec_unit):
    """How the positions were read, as recorded in ``{prefix}pos``."""
    if coord is not None:
        return f"coord={coord}"
    return (f"ra={ra},dec={dec}" + (f",ra_unit={ra_unit}" if ra_unit else "")
            + (f",dec_unit={dec_unit}" if dec_unit else ""))


def _start_arrays(table, prefix, good, nbins, resume, with_ood):
    """The PDFs, OOD scores and flags to fill, and which rows to process.

    Afresh: every row with a valid position. Resuming: the arrays of the earlier run,
    and its rows flagged ``NOT_ESTIMATED`` (except bad coordinates).
    """
    n = len(table)
    if resume:
        old_flags = np.asarray(table[f"{prefix}flags"], dtype=np.int64)
        pdf = np.ma.filled(np.ma.asarray(table[f"{prefix}pdf"]).astype(np.float32), np.nan)
        if pdf.shape != (n, nbins):
            raise ValueError(f"column {prefix}pdf has shape {pdf.shape}; the model gives "
                             f"{nbins} bins")
        name = f"{prefix}{OOD_KEY}"
        ood = None
        if with_ood:
            ood = (np.ma.filled(np.ma.asarray(table[name]).astype(float), np.nan)
                   if name in table.colnames else np.full(n, np.nan))
        flags = old_flags.copy()
        todo = good & ((old_flags & MantisFlag.NOT_ESTIMATED) != 0)
    else:
        pdf = np.full((n, nbins), np.nan, dtype=np.float32)
        ood = np.full(n, np.nan) if with_ood else None
        flags = np.zeros(n, dtype=np.int64)
        todo = good.copy()
    flags[~good] = int(MantisFlag.BAD_COORDINATE | MantisFlag.NOT_ESTIMATED)
    return pdf, ood, flags, todo


def _warn_dust(dust_unknown, todo, ebv, dust_source):
    """One DustWarning when no dust source was given and none is known; a log line for
    unusable values among those given."""
    if np.any(dust_unknown) and ebv is None:
        warnings.warn(f"Milky Way dust unknown: {dust_source}. Using E(B-V) = 0 for both dust "
                      "inputs and flagging the rows DUST_UNKNOWN; pass ebv= column names or "
                      "values, or install dustmaps with its maps.", DustWarning, stacklevel=3)
    elif np.any(dust_unknown[todo]):
        log.warning(f"{int(np.sum(dust_unknown[todo]))} row(s) have NaN, masked or "
                    f"out-of-range dust values (E(B-V) outside [0, {MAX_EBV:g}] mag): zeros "
                    "used, rows flagged DUST_UNKNOWN")


@dataclass
class _Job:
    """One `add_redshift_columns` call: its inputs and the arrays the chunks fill.

    ``reps`` are the table rows standing for the distinct positions among ``rows`` (the
    rows to process; each position's cutouts are fetched once), ``inverse`` maps each
    of ``rows`` to its position. The network runs once per distinct (position, dust)
    pair (`_dust_groups`): ``group_reps`` stand for them, ``group_position`` is the
    position of each and ``group_inverse`` maps each of ``rows`` to its group;
    ``group_flags`` and ``group_done`` are per group, ``pdf`` and ``ood`` per table row.
    """

    net: object
    coords: SkyCoord
    dust: np.ndarray
    surveys: tuple
    chunk_size: int
    batch_size: int
    cache: bool
    tta: bool
    precision: str
    source: object
    ood_ref: object
    rows: np.ndarray
    reps: np.ndarray
    inverse: np.ndarray
    group_reps: np.ndarray
    group_position: np.ndarray
    group_inverse: np.ndarray
    run: RunStats
    pdf: np.ndarray
    edges: np.ndarray
    ood: np.ndarray = None
    group_flags: np.ndarray = None
    group_done: np.ndarray = None
    checkpoint: object = None

    def __post_init__(self):
        self.group_flags = np.zeros(self.group_reps.size, dtype=np.int64)
        self.group_done = np.zeros(self.group_reps.size, dtype=bool)
        # the table rows of each group, as a slice of the rows sorted by group
        self.by_group = np.argsort(self.group_inverse, kind="stable")
        self.sorted_group = self.group_inverse[self.by_group]


class _Checkpoints:
    """Calls ``write()`` after a chunk when one is due: ``interval`` seconds after the
    start and after the last call ended, and at least ten times the last call's
    duration after it, so that checkpoints take at most about a tenth of the run."""

    def __init__(self, write, run, interval):
        self.write, self.run, self.interval = write, run, interval
        self.due = time.perf_counter() + interval

    def after_chunk(self):
        if time.perf_counter() < self.due:
            return
        t = time.perf_counter()
        try:
            self.write()
        finally:
            end = time.perf_counter()
            self.run.n_checkpoints += 1
            self.run.checkpoint_seconds += end - t
            self.due = end + max(self.interval, 10 * (end - t))


def _fetch_chunk(coords, idx, surveys, cache, on_position=False, source=None, cancel=None):
    """Fetch (or cut, from a local ``source``) one chunk's cutouts; returns (cutouts, seconds).

    Setting the event ``cancel`` stops a fetch (`~astro_mantis.fetch.FetchCancelled`)."""
    from .fetch import fetcher

    t = time.perf_counter()
    if source is None:
        cuts = fetcher.get_cutouts(coords[idx], surveys=surveys, cache=cache,
                                   progress=on_position, cancel=cancel)
    else:
        cuts = source.get_cutouts(coords[idx], surveys=surveys, cache=cache,
                                  progress=on_position)
    return cuts, time.perf_counter() - t


def _failure_reason(status):
    """A fetch status worth counting as a reason (URLs removed), or None."""
    from .fetch import FetchStatus

    kind = FetchStatus.of(status)
    if kind is not FetchStatus.FAILED:
        return None
    text = str(status)
    return text.split(" from http", 1)[0].split(" from /", 1)[0]


def _run_chunks(job, progress):
    """Fetch chunk k+1 while inferring chunk k; fill the job's arrays as chunks finish."""
    from .progress import progress_bar

    size = job.chunk_size
    chunks = [np.arange(s, min(s + size, job.reps.size)) for s in range(0, job.reps.size, size)]
    if not chunks:
        return
    bar = progress_bar(progress, total=int(job.reps.size), unit="pos", desc="photo-z",
                       dynamic_ncols=True)
    # the bar moves once per position whose cutouts are in (fetched, cached or failed),
    # so it shows progress and an ETA within a chunk; the postfix counts the estimates
    tick = False if bar.disable else bar.update
    # set on an interrupt: the prefetch under way stops within a request's time (its
    # unsent requests are dropped) instead of fetching the rest of its chunk first
    cancel = threading.Event()

    def fetch(chunk):
        return pool.submit(_fetch_chunk, job.coords, job.reps[chunk], job.surveys, job.cache,
                           tick, job.source, cancel)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="astro_mantis-prefetch") as pool:
        future = fetch(chunks[0])
        try:
            for k, chunk in enumerate(chunks):
                cuts, seconds = future.result()
                job.run.fetch_seconds += seconds
                if k + 1 < len(chunks):
                    future = fetch(chunks[k + 1])
                t = time.perf_counter()
                _infer_chunk(job, chunk, cuts)
                job.run.infer_seconds += time.perf_counter() - t
                job.run.n_processed += int(chunk.size)
                del cuts
                if not bar.disable:
                    bar.set_postfix(estimated=int(np.sum(job.group_done)), refresh=False)
                if job.checkpoint is not None and k + 1 < len(chunks):
                    job.checkpoint.after_chunk()
        except BaseException:
            cancel.set()
            future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            bar.close()


def _infer_chunk(job, chunk, cuts):
    """Count the chunk's fetch failures, infer its usable positions, fill their rows.

    Each (position, dust) group of the chunk's positions is inferred with its own dust
    values, from its position's cutouts.
    """
    from .models import predict

    for c in cuts:
        for s, status in c.status.items():
            reason = _failure_reason(status)
            if reason is not None:
                job.run.failures[f"{s}: {reason}"] += 1
    cflags = np.array([int(c.flags) for c in cuts], dtype=np.int64)
    usable = np.array([bool(c.surveys) for c in cuts]) & ((cflags & int(_NO_ESTIMATE)) == 0)
    # the groups of these positions: a contiguous range (groups are ordered by position)
    g0, g1 = np.searchsorted(job.group_position, [chunk[0], chunk[-1] + 1])
    groups = np.arange(g0, g1)
    local = job.group_position[groups] - chunk[0]  # each group's cutout in ``cuts``
    job.group_flags[groups] = cflags[local]
    ok = usable[local]
    if not np.any(ok):
        return
    sel = groups[ok]
    good_cuts = [cuts[i] for i in local[ok]]
    dust = job.dust[job.group_reps[sel]]
    ood = None
    if job.ood_ref is not None and _one_pass(job):
        result, ood = _predict_and_score(job, good_cuts, dust)
    else:
        result = predict(good_cuts, model=job.net, dust=dust, batch_size=job.batch_size,
                         tta=job.tta, precision=job.precision)
    job.run.precision = result.meta.get("precision", job.run.precision)
    job.group_flags[sel] |= np.asarray(result.meta["flags"], dtype=np.int64)
    if job.ood_ref is not None:
        from .explain.ood import ood_flags, ood_score

        if ood is None:  # a second pass: test-time augmentation or an int8 model
            ood = ood_score(good_cuts, model=job.net, reference=job.ood_ref, dust=dust,
                            batch_size=job.batch_size, precision=job.run.precision)
        job.group_flags[sel] |= ood_flags(ood)
    # every table row of these groups: a slice of the rows sorted by group (no pass over
    # the whole table per chunk)
    lo, hi = np.searchsorted(job.sorted_group, [g0, g1])
    members = job.by_group[lo:hi]
    slot = np.full(groups.size, -1)
    slot[np.flatnonzero(ok)] = np.arange(sel.size)
    pos = slot[job.group_inverse[members] - g0]
    targets, pos = job.rows[members[pos >= 0]], pos[pos >= 0]
    job.pdf[targets] = result.pdf[pos].astype(np.float32)
    if ood is not None:
        job.ood[targets] = ood[pos]
    job.group_done[sel] = True


def _one_pass(job):
    """Whether the job's redshifts and z_ood can come from one network pass."""
    from .models.precision import is_quantized

    return (not job.tta and not is_quantized(job.net)
            and callable(getattr(job.net, "forward_with_features", None)))


def _predict_and_score(job, cuts, dust):
    """The PDFs and z_ood of cutouts from one fusion and one forward pass.

    ``predict(features=True)`` keeps the penultimate features of the pass, and its
    ``on_batch`` hands over each fused batch for the band misalignment; the PDF width
    and edge mass come from the features (`~astro_mantis.explain.statistics_from_features`).
    `~astro_mantis.explain.ood_score` on the cutouts would fuse them and run the
    network a second time (half the table job's speed from local tiles).
    """
    from .explain import band_misalignment, ood_score, statistics_from_features
    from .models import predict

    wanted = tuple(job.ood_ref.statistics)
    misaligned = []

    def on_batch(x):  # a float32 array, or the network's input tensor (e.g. bfloat16)
        if "misalignment" in wanted:
            misaligned.append(band_misalignment(x))

    result = predict(cuts, model=job.net, dust=dust, batch_size=job.batch_size,
                     precision=job.precision, features=True, on_batch=on_batch)
    feats = result.meta.pop("features")
    stats = statistics_from_features(job.net, feats, None,
                                     [s for s in wanted if s != "misalignment"])
    if "misalignment" in wanted:
        stats["misalignment"] = np.concatenate(misaligned) if misaligned else np.zeros(0)
    stats = {name: stats[name] for name in wanted}
    return result, ood_score(feats, job.net, job.ood_ref, statistics=stats or None)


def _finish(job, flags, good, dust_unknown, t0):
    """Scatter each position's flags to its rows; the PDFs and the run's totals."""
    from .pdf import RedshiftPDF

    rows, run = job.rows, job.run
    if rows.size:
        row_flags = job.group_flags[job.group_inverse]
        row_flags |= np.where(dust_unknown[rows], int(MantisFlag.DUST_UNKNOWN), 0)
        row_flags |= np.where(job.group_done[job.group_inverse], 0,
                              int(MantisFlag.NOT_ESTIMATED))
        flags[rows] = row_flags
    flags[~good] |= np.where(dust_unknown[~good], int(MantisFlag.DUST_UNKNOWN), 0)
    # rows never estimated are all NaN: invalid rows, whose statistics are NaN
    pdfs = RedshiftPDF(job.pdf, edges=job.edges, allow_invalid=True, copy=False)
    run.n_estimated = int(np.count_nonzero(pdfs.valid[rows])) if rows.size else 0
    run.wall_seconds = time.perf_counter() - t0
    run.flags = {f.name: int(np.sum((flags & f) != 0)) for f in MantisFlag
                 if f and np.any((flags & f) != 0)}
    return pdfs


def _write_columns(table, prefix, pdfs, ood, flags, meta, dust_source, settings,
                   replace_all=False):
    """Put the PDFs (`RedshiftPDF.to_table_columns`), the OOD scores and the flags into
    the table as masked columns, and the run's provenance into its meta.

    With ``replace_all`` (a fresh run over an earlier run's output) the earlier run's
    ``{prefix}ood`` column and provenance entries that this run does not write are
    removed. Entries that differ from the new ones only in case (a table read back
    from FITS has ``Z_MODEL``) are always replaced, never kept beside them.
    """
    cols = pdfs.to_table_columns(prefix=prefix, masked=True)
    estimated = pdfs.valid
    if ood is not None:  # the score goes just before the flags
        cols[f"{prefix}{OOD_KEY}"] = MaskedColumn(
            ood, name=f"{prefix}{OOD_KEY}", mask=~estimated | ~np.isfinite(ood),
            description="out-of-distribution score (0-1): percentile among the model's "
                        "reference galaxies of the row's most unusual statistic (k-NN "
                        "feature distance, PDF width, edge mass, band misalignment); "
                        "flagged OUT_OF_DISTRIBUTION above the threshold in meta")
    cols[f"{prefix}flags"] = MaskedColumn(flags.astype(np.int32), name=f"{prefix}flags",
                                          description=_FLAGS_DESCRIPTION)
    for name, col in cols.items():
        if isinstance(table, QTable) and name != f"{prefix}flags":
            col = np.ma.getdata(col) if not np.any(col.mask) else col
        # not copied: the PDF column is the job's array (a second copy of the largest
        # column doubled the call's peak memory)
        if name in table.colnames:
            table.replace_column(name, col, copy=False)
        else:
            table.add_column(col, name=name, copy=False)
    ood_name = f"{prefix}{OOD_KEY}"
    if replace_all and ood is None and ood_name in table.colnames:
        table.remove_column(ood_name)
    edges = pdfs.edges
    new_meta = {
        f"{prefix}model": str(meta.get("name", "unknown")),
        f"{prefix}sha256": str(meta.get("sha256") or ""),
        f"{prefix}vers": f"astro_mantis {__version__}",
        f"{prefix}nbins": int(len(edges) - 1),
        f"{prefix}zmin": float(edges[0]),
        f"{prefix}zmax": float(edges[-1]),
        f"{prefix}dust": dust_source,
        **{f"{prefix}{key}": value for key, value in settings.items()
           if key not in ("model", "sha256")},
    }
    stale = [f"{prefix}{k}" for k in PROVENANCE_KEYS] if replace_all else list(new_meta)
    for key in _meta_keys(table, stale):
        del table.meta[key]
    table.meta.update(new_meta)


def query_coordinates(coordinates, **kwargs):
    """Redshift PDFs at positions, as a new table.

    Parameters
    ----------
    coordinates : `~astropy.coordinates.SkyCoord`
        One position or an array of them.
    **kwargs
        Passed to `add_redshift_columns` (``model``, ``prefix``, ``surveys``,
        ``ebv`` (values, not column names), ``batch_size``, ``device``, ...).

    Returns
    -------
    `~astropy.table.Table`
        Column ``coord`` (the positions, in input order) and the redshift columns.
    """
    if not isinstance(coordinates, SkyCoord):
        raise TypeError(f"coordinates must be an astropy SkyCoord, got "
                        f"{type(coordinates).__name__}")
    if coordinates.isscalar:
        coordinates = coordinates.reshape((1,))
    table = Table({"coord": coordinates.ravel()})
    return add_redshift_columns(table, coord="coord", **kwargs)
