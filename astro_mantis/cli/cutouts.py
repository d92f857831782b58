# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""``astro-mantis cutouts``: the cutouts of every row of a table, with a summary."""
import argparse
import contextlib
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import MaskedColumn, Table

from .._version import __version__
from ..config import conf
from ..flags import MantisFlag
from ..surveys import DEFAULT_SURVEYS, get_survey

from .common import (_add_cache_args, _add_service_args, EXIT_INTERRUPTED, EXIT_OK, InputError,
                     positions_from_columns, _read_table, _services, _survey_list, _tiles)

__all__ = ["add_parser", "SUMMARY_NAME"]

#: Name of the row-aligned summary table written next to the cutouts.
SUMMARY_NAME = "summary.ecsv"


_STATUS_KINDS = ("fetched", "cached", "out of footprint", "failed", "bad coordinate",
                 "not fetched")


def add_parser(sub):
    """Add the ``cutouts`` subcommand to the ``astro-mantis`` parser's subparsers."""
    default_surveys = ",".join(DEFAULT_SURVEYS)
    p = sub.add_parser(
        "cutouts",
        help="fetch the cutouts of every row of a table",
        description=(
            "Fetch GALEX (NUV, FUV), Pan-STARRS1 (g r i z y) and unWISE (W1, W2) cutouts "
            "for every row of TABLE. Writes one multi-extension FITS file per row, "
            "DIR/cutout_NNNNNN.fits (NNNNNN = row number, from 0; read it back with "
            "astro_mantis.MultiSurveyCutout.read), and DIR/summary.ecsv with one row per "
            "input row, in input order: row, ra, dec, flags (MantisFlag bits), the status "
            "of each survey (fetched / cached / out of footprint / failed: reason / bad "
            "coordinate / not fetched: no local tiles of the survey with --tiles) and the "
            "file name. Rows with a NaN, masked or out-of-range "
            "position get no file but keep their summary row. Service URLs, time limits, "
            "retries and connections per host come from astro_mantis.conf "
            "(astro_mantis.cfg in astropy.config.get_config_dir(), e.g. ~/.config/astropy)."),
        epilog="Example:\n  astro-mantis cutouts targets.ecsv --out cutouts/ "
               "--surveys panstarrs,unwise",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", metavar="TABLE",
                   help="input table, any format astropy.table.Table.read reads "
                        "(ECSV, FITS, VOTable, CSV, ...)")
    p.add_argument("--out", "-o", required=True, metavar="DIR",
                   help="output directory (created if needed, its parent must exist; existing "
                        "cutout files of the same rows are overwritten)")
    p.add_argument("--ra-col", default="ra", metavar="NAME",
                   help="column of right ascension, ICRS; degrees unless the column has "
                        "an angular unit (default: %(default)s)")
    p.add_argument("--dec-col", default="dec", metavar="NAME",
                   help="column of declination, ICRS; degrees unless the column has an "
                        "angular unit (default: %(default)s)")
    p.add_argument("--ra-unit", default=None, metavar="UNIT",
                   help="unit of a right ascension column that carries none: deg, "
                        "hourangle, rad (default: deg for numbers, hourangle for "
                        "sexagesimal strings such as '12:20:05.8')")
    p.add_argument("--surveys", type=_survey_list, default=DEFAULT_SURVEYS, metavar="LIST",
                   help=f"comma-separated surveys to fetch (default: {default_surveys})")
    p.add_argument("--format", default=None, metavar="FORMAT",
                   help="table format passed to Table.read, e.g. ascii.csv, fits, votable "
                        "(default: guessed from the file name)")
    _add_service_args(p)
    _add_cache_args(p)
    p.set_defaults(func=_cmd_cutouts)


def _table_positions(table, args):
    """(ra, dec) degree arrays of a table for the ``cutouts`` command."""
    from ..positions import table_positions

    try:
        pos = table_positions(table, ra=args.ra_col, dec=args.dec_col, ra_unit=args.ra_unit,
                              options=("--ra-col", "--dec-col"))
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return pos.ra, pos.dec


# ------------------------------------------------------------------------- the job
def _status_kind(text):
    """Group a per-survey status string into one of `_STATUS_KINDS`."""
    from ..fetch import FetchStatus

    kind = FetchStatus.of(text)
    return {FetchStatus.FETCHED: "fetched", FetchStatus.CACHED: "cached",
            FetchStatus.OUT_OF_FOOTPRINT: "out of footprint",
            FetchStatus.BAD_COORDINATE: "bad coordinate",
            FetchStatus.NOT_FETCHED: "not fetched"}.get(kind, "failed")


def _status_text(text):
    """The status as written in the summary (``ok`` is spelled ``fetched``)."""
    return "fetched" if text == "ok" else str(text)


class FetchInterrupted(KeyboardInterrupt):
    """`fetch_and_write` was interrupted; ``summary`` holds what was written until then."""

    def __init__(self, summary):
        super().__init__("interrupted")
        self.summary = summary


def _summary_table(ra, dec, surveys, flags, statuses, files, elapsed, meta, interrupted):
    n = len(flags)
    summary = Table()
    summary["row"] = np.arange(n, dtype=np.int64)
    summary["ra"] = np.asarray(ra, dtype=float) * u.deg
    summary["dec"] = np.asarray(dec, dtype=float) * u.deg
    summary["flags"] = np.asarray(flags, dtype=np.int64)
    for s in surveys:
        summary[f"status_{s}"] = np.array(statuses[s], dtype=str) if n else \
            np.array([], dtype=str)
    files = np.array(files, dtype=str) if n else np.array([], dtype=str)
    summary["file"] = MaskedColumn(files, mask=files == "")
    summary["row"].description = "row number in the input table (from 0)"
    summary["flags"].description = "astro_mantis.MantisFlag bits: " + ", ".join(
        f"{f.name}={f.value}" for f in MantisFlag if f.value)
    for s in surveys:
        summary[f"status_{s}"].description = (
            f"{s}: fetched, cached, out of footprint, failed: <reason>, bad coordinate, "
            f"not fetched: no local {s} tiles (--tiles named no {s} directory), or not "
            "fetched (the run was interrupted before the row)")
    summary["file"].description = "cutout file in this directory (masked when none was written)"
    summary.meta.update({"creator": f"astro_mantis {__version__}",
                         "surveys": list(surveys),
                         "fetch_seconds": round(elapsed, 3),
                         "interrupted": bool(interrupted), "in_progress": False})
    summary.meta.update(meta or {})
    return summary


def fetch_and_write(ra, dec, out, surveys=DEFAULT_SURVEYS, cache=True, progress=True,
                    meta=None, chunk_size=64, source=None):
    """Fetch the cutouts of many positions and write them with a row-aligned summary.

    The positions go in chunks: each chunk's files are written as soon as it is
    fetched, so an interrupted run keeps every file it fetched, and its summary
    (written also on an interrupt) says which rows were ``not fetched``. Before the
    first file is written, ``summary.ecsv`` is replaced by one with every row ``not
    fetched`` (meta ``interrupted`` and ``in_progress`` true): a run killed outright
    (SIGKILL, a power cut) in a folder of an earlier run leaves a summary that names
    no file, never one naming files that now hold other positions.

    Parameters
    ----------
    ra, dec : array-like
        Positions in ICRS degrees; NaN or out-of-range entries are flagged, not dropped.
    out : str or path-like
        Output directory (created if needed).
    surveys : sequence of str
        Survey names.
    cache : bool
        Use the on-disk cutout cache.
    progress : bool
        Show a progress bar (one step per position, with an ETA).
    meta : dict, optional
        Extra entries for the summary table's ``meta``.
    chunk_size : int
        Positions fetched and written at a time.
    source : `~astro_mantis.sources.LocalTiles`, optional
        Cut the cutouts from local survey tiles instead of fetching them.

    Returns
    -------
    cutouts : list of `~astro_mantis.MultiSurveyCutout`
        One per position, in input order.
    summary : `~astropy.table.Table`
        The summary written to ``out/summary.ecsv``: ``row``, ``ra``, ``dec``,
        ``flags``, ``status_<survey>`` per survey, ``file`` (masked when no file was
        written, i.e. for invalid positions).

    Raises
    ------
    FetchInterrupted
        On Ctrl-C, after writing the summary of what was done (its ``summary``).
    """
    from tqdm.auto import tqdm

    from ..atomic import atomic_path
    from ..cutouts import Mantis

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    coords, good = positions_from_columns(ra, dec)
    n = len(good)
    surveys = tuple(get_survey(s).name for s in surveys)
    flags = np.zeros(n, dtype=np.int64)
    statuses = {s: ["not fetched"] * n for s in surveys}
    files = [""] * n
    cuts = []
    t0 = time.perf_counter()
    interrupted = False
    # an earlier run's summary would name files this run overwrites: mark the run as
    # under way first, so that a killed run leaves a summary that claims no file
    started = _summary_table(ra, dec, surveys, flags, statuses, files, 0.0, meta, True)
    started.meta["in_progress"] = True
    with atomic_path(out / SUMMARY_NAME) as tmp:
        started.write(tmp, format="ascii.ecsv")
    bar = tqdm(total=n, unit="pos", desc="cutouts", disable=not progress, dynamic_ncols=True)
    try:
        for start in range(0, n, max(1, int(chunk_size))):
            idx = np.arange(start, min(n, start + max(1, int(chunk_size))))
            chunk = Mantis.get_cutouts(coords[idx], surveys=surveys, cache=cache,
                                       progress=bar.update if progress else False,
                                       source=source)
            for i, cut in zip(idx, chunk):
                flags[i] = int(cut.flags)
                for s in surveys:
                    statuses[s][i] = _status_text(cut.status.get(s, ""))
                if good[i] and MantisFlag.BAD_COORDINATE not in cut.flags:
                    name = f"cutout_{i:06d}.fits"
                    cut.write(out / name, overwrite=True)
                    files[i] = name
            cuts.extend(chunk)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        summary = _summary_table(ra, dec, surveys, flags, statuses, files,
                                 time.perf_counter() - t0, meta, interrupted)
        with atomic_path(out / SUMMARY_NAME) as tmp:
            summary.write(tmp, format="ascii.ecsv")
    if interrupted:
        raise FetchInterrupted(summary)
    return cuts, summary


def _no_file(summary):
    """Boolean array: rows of a summary without a cutout file."""
    col = summary["file"]
    mask = np.ma.getmaskarray(np.ma.asarray(col))
    return mask | (np.ma.filled(np.ma.asarray(col).astype(str), "") == "")


def summarize(summary, surveys):
    """Count per survey how many rows were fetched, cached, not covered or failed.

    Parameters
    ----------
    summary : `~astropy.table.Table`
        A summary table as written by `fetch_and_write`.
    surveys : sequence of str
        Survey names (their ``status_<survey>`` columns are counted).

    Returns
    -------
    counts : dict
        Survey name → `collections.Counter` over ``fetched``, ``cached``,
        ``out of footprint``, ``failed``, ``bad coordinate`` and ``not fetched``.
    """
    return {s: Counter(_status_kind(v) for v in summary[f"status_{s}"]) for s in surveys}


def format_summary(summary, surveys):
    """A short human-readable report of a summary table (rows, then a line per survey).

    Rows are said ``not fetched (interrupted)`` only when the summary's meta says the
    run was ``interrupted``; a survey that ``--tiles`` named no directory for (status
    ``not fetched: no local <survey> tiles``) gets a line of its own.

    Parameters
    ----------
    summary : `~astropy.table.Table`
        A summary table as written by `fetch_and_write`.
    surveys : sequence of str
        Survey names.

    Returns
    -------
    text : str
    """
    counts = summarize(summary, surveys)
    n = len(summary)
    nfiles = n - (int(np.sum(_no_file(summary))) if n else 0)
    first = surveys[0] if surveys else None
    nbad = counts[first]["bad coordinate"] if first else 0
    # rows an interrupted run did not reach say "not fetched" in every survey; a survey
    # without local tiles says "not fetched: no local <survey> tiles" in the rows reached
    unreached = int(np.sum(np.all([np.asarray(summary[f"status_{s}"]).astype(str)
                                   == "not fetched" for s in surveys], axis=0))) \
        if surveys and n else 0
    interrupted = bool(summary.meta.get("interrupted", False))
    lines = [f"{n} row(s): {nfiles} cutout file(s) written, {nbad} row(s) with a bad "
             "coordinate (no file)"
             + (f", {unreached} row(s) not fetched" + (" (interrupted)" if interrupted else "")
                if unreached else "")]
    width = max([len("survey")] + [len(s) for s in surveys])
    kinds = _STATUS_KINDS[:4]
    lines.append(f"  {'survey':<{width}}  " + "  ".join(f"{k:>16}" for k in kinds))
    for s in surveys:
        lines.append(f"  {s:<{width}}  " + "  ".join(f"{counts[s][k]:>16d}" for k in kinds))
    for s in surveys:
        why = Counter(str(v) for v in summary[f"status_{s}"]
                      if _status_kind(v) == "not fetched" and str(v) != "not fetched")
        for text, count in why.items():
            lines.append(f"  {s}: {count} row(s) {text}")
    failures = [(int(r["row"]), s, str(r[f"status_{s}"])) for r in summary for s in surveys
                if _status_kind(r[f"status_{s}"]) == "failed"]
    for row, s, text in failures[:5]:
        lines.append(f"  row {row} {s}: {text}")
    if len(failures) > 5:
        lines.append(f"  ... and {len(failures) - 5} more failure(s): see the summary table")
    return "\n".join(lines)


def _cmd_cutouts(args):
    """``astro-mantis cutouts``: see the subcommand's help."""
    table = _read_table(args.table, args.format)
    ra, dec = _table_positions(table, args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a directory")
    if not out.parent.is_dir():
        raise InputError(f"the directory holding --out, {str(out.parent)!r}, does not exist")
    cache_ctx = (conf.set_temp("cache_dir", str(Path(args.cache_dir).expanduser()))
                 if args.cache_dir else contextlib.nullcontext())
    source = _tiles(args)
    with _services(args), cache_ctx:
        if args.dry_run and source is not None:
            print(f"astro-mantis cutouts --dry-run: {len(table)} rows; cut from {source!r}, "
                  "no request is sent")
            return EXIT_OK
        if args.dry_run:
            from ..cutouts import Mantis

            coords, good = positions_from_columns(ra, dec)
            plan = Mantis.plan(coords[good], surveys=args.surveys, cache=not args.no_cache)
            print(f"astro-mantis cutouts --dry-run: {len(table)} rows, {int(good.sum())} "
                  "valid positions; nothing is fetched or written")
            print(plan.report())
            return EXIT_OK
        try:
            cuts, summary = fetch_and_write(
                ra, dec, out, surveys=args.surveys, cache=not args.no_cache,
                progress=not args.no_progress, source=source,
                meta={"input": str(args.table), "ra_col": args.ra_col,
                      "dec_col": args.dec_col})
        except FetchInterrupted as exc:
            summary = exc.summary
            done = int(np.sum(~_no_file(summary)))
            print(f"astro-mantis cutouts: interrupted after "
                  f"{summary.meta['fetch_seconds']:.1f} s; {done} cutout file(s) written to "
                  f"{out}/ are kept, and {out / SUMMARY_NAME} marks the rows not fetched. "
                  "Rerun the same command to complete it"
                  + (" (without --no-cache, cached cutouts would not be fetched again)."
                     if args.no_cache else " (cached cutouts are not fetched again)."),
                  file=sys.stderr)
            print(format_summary(summary, args.surveys))
            return EXIT_INTERRUPTED
    print(f"astro-mantis cutouts: {args.table} -> {out}/ "
          f"({summary.meta['fetch_seconds']:.1f} s)")
    print(format_summary(summary, args.surveys))
    print(f"summary: {out / SUMMARY_NAME}")
    return EXIT_OK
