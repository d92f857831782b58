"""The ``astro-mantis`` command.

Subcommands:

``astro-mantis cutouts TABLE --out DIR``
    Fetch GALEX, Pan-STARRS and unWISE cutouts for every row of a table, write one
    multi-extension FITS file per row and a row-aligned ``summary.ecsv``.
``astro-mantis demo``
    Run the same job on the embedded default: loopback copies of the survey services
    serving a synthetic sky, no network needed; writes cutouts, figures and a summary.

Every subcommand returns an exit status: 0 when the job ran (rows whose fetch failed
are reported in the summary, not as an error), 2 when the input is unusable.
`main` takes an argument list, so the command can be driven from Python::

    from astro_mantis.cli import main
    status = main(["cutouts", "targets.ecsv", "--out", "cutouts/"])
"""
import argparse
import contextlib
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import MaskedColumn, Table

from . import __version__
from .config import conf
from .flags import MantisFlag
from .surveys import DEFAULT_SURVEYS, get_survey

__all__ = ["main", "build_parser", "fetch_and_write", "column_degrees", "positions_from_columns",
           "summarize", "format_summary", "demo_positions", "InputError", "EXIT_OK",
           "EXIT_BAD_INPUT"]

#: Exit status of a job that ran (failures of single rows are in the summary).
EXIT_OK = 0
#: Exit status for unusable input: unreadable table, missing column, unknown survey.
EXIT_BAD_INPUT = 2

#: Name of the row-aligned summary table written next to the cutouts.
SUMMARY_NAME = "summary.ecsv"
#: Default output directory of ``astro-mantis demo``.
DEMO_DIR = "astro_mantis_demo"

_STATUS_KINDS = ("fetched", "cached", "out of footprint", "failed", "bad coordinate")


class InputError(Exception):
    """Unusable command-line input; the message is shown to the user (exit status 2)."""


# ------------------------------------------------------------------------- parser
def _survey_list(text):
    """Parse and check a comma-separated survey list (argparse ``type``)."""
    names = [s.strip().lower() for s in str(text).split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one survey, e.g. galex,panstarrs,unwise")
    try:
        return tuple(get_survey(n).name for n in names)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text):
    """Parse a positive integer (argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser():
    """Build the argument parser of the ``astro-mantis`` command.

    Returns
    -------
    parser : `argparse.ArgumentParser`
        The parser, with one subparser per subcommand (``cutouts``, ``demo``).
    """
    parser = argparse.ArgumentParser(
        prog="astro-mantis",
        description="Galaxy redshift PDFs from GALEX, Pan-STARRS and unWISE cutouts "
                    "(Mantis Shrimp, Engel et al. 2025). Run 'astro-mantis COMMAND --help' "
                    "for the options of a command.",
        epilog="Exit status: 0 when the job ran (single rows that failed are listed in the "
               "summary), 2 for unusable input.")
    parser.add_argument("--version", action="version", version=f"astro_mantis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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
            "coordinate) and the file name. Rows with a NaN, masked or out-of-range "
            "position get no file but keep their summary row. Service URLs, time limits, "
            "retries and connections per host come from astro_mantis.conf "
            "(~/.astropy/config/astro_mantis.cfg)."),
        epilog="Example:\n  astro-mantis cutouts targets.ecsv --out cutouts/ "
               "--surveys panstarrs,unwise",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", metavar="TABLE",
                   help="input table, any format astropy.table.Table.read reads "
                        "(ECSV, FITS, VOTable, CSV, ...)")
    p.add_argument("--out", "-o", required=True, metavar="DIR",
                   help="output directory (created if needed; existing cutout files of the "
                        "same rows are overwritten)")
    p.add_argument("--ra-col", default="ra", metavar="NAME",
                   help="column of right ascension, ICRS; degrees unless the column has "
                        "an angular unit (default: %(default)s)")
    p.add_argument("--dec-col", default="dec", metavar="NAME",
                   help="column of declination, ICRS; degrees unless the column has an "
                        "angular unit (default: %(default)s)")
    p.add_argument("--surveys", type=_survey_list, default=DEFAULT_SURVEYS, metavar="LIST",
                   help=f"comma-separated surveys to fetch (default: {default_surveys})")
    p.add_argument("--format", default=None, metavar="FORMAT",
                   help="table format passed to Table.read, e.g. ascii.csv, fits, votable "
                        "(default: guessed from the file name)")
    p.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the on-disk cutout cache: fetch everything")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="cutout cache directory for this run (default: conf.cache_dir, "
                        "else <astropy cache>/astro_mantis/cutouts)")
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.set_defaults(func=_cmd_cutouts)

    d = sub.add_parser(
        "demo",
        help="run the cutout service on the built-in synthetic sky (no network)",
        description=(
            "The package's main job on the embedded default, with no network: starts "
            "loopback copies of the Pan-STARRS and Legacy Surveys viewer services "
            "(astro_mantis.testing) serving a synthetic sky, points astro_mantis.conf at "
            "them for the duration of the run (with a temporary cutout cache), fetches "
            "cutouts for N deterministic positions spread over the sky (a few south of "
            "dec -30, where Pan-STARRS has no data, one inside a GALEX coverage hole and "
            "one invalid position, to show how such rows are flagged), and writes into "
            "DIR: one FITS file per row (cutout_NNNNNN.fits), summary.ecsv, figures of the "
            "first rows' cutouts (cutout_NNN.png) and an overview figure (overview.png)."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--out", "-o", default=f"./{DEMO_DIR}", metavar="DIR",
                   help="output directory (created if needed; default: %(default)s)")
    d.add_argument("--n", type=_positive_int, default=36, metavar="N",
                   help="number of positions (default: %(default)s)")
    d.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    d.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None):
    """Run the ``astro-mantis`` command.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    status : int
        Exit status: 0 when the job ran, 2 for unusable input (including argument
        errors); ``--help`` returns 0.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argument errors
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.func(args)
    except InputError as exc:
        print(f"astro-mantis {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("astro-mantis: interrupted", file=sys.stderr)
        return 130


# ------------------------------------------------------------------------- table input
def _read_table(path, format=None):
    """Read an input table, turning every failure into an `InputError`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"table {str(path)!r} does not exist")
    try:
        return Table.read(path, format=format)
    except Exception as exc:  # astropy raises many kinds for unreadable tables
        hint = "" if format else " (give its format with --format, e.g. ascii.csv or fits)"
        raise InputError(f"cannot read table {str(path)!r}: {exc}{hint}") from None


def column_degrees(table, name):
    """Return a table column as float degrees, with NaN for masked or missing values.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The input table.
    name : str
        Column name.

    Returns
    -------
    values : `numpy.ndarray`
        1-D float array in degrees. A column without a unit is taken to be in degrees;
        a column with an angular unit is converted.

    Raises
    ------
    InputError
        If the column does not exist (the message lists the columns that do), is not
        numeric and one-dimensional, or has a non-angular unit.
    """
    if name not in table.colnames:
        raise InputError(f"column {name!r} not found; the table has columns: "
                         f"{', '.join(table.colnames) or '(none)'} "
                         "(choose them with --ra-col / --dec-col)")
    col = table[name]
    if getattr(col, "ndim", 1) != 1:
        raise InputError(f"column {name!r} has shape {col.shape}; expected one value per row")
    data = np.ma.asarray(getattr(col, "value", col))
    try:
        values = np.ma.filled(data.astype(float), np.nan)
    except (TypeError, ValueError):
        raise InputError(f"column {name!r} is not numeric (dtype {data.dtype}); "
                         "expected angles in degrees") from None
    unit = getattr(col, "unit", None)
    if unit is not None and u.Unit(unit) != u.dimensionless_unscaled:
        try:
            values = (values * u.Unit(unit)).to_value(u.deg)
        except u.UnitConversionError:
            raise InputError(f"column {name!r} has unit {unit}, which is not an angle") from None
    return np.asarray(values, dtype=float)


def positions_from_columns(ra, dec):
    """Build ICRS positions from degree arrays, keeping invalid rows as NaN.

    Parameters
    ----------
    ra, dec : array-like
        Right ascension and declination in degrees (ICRS).

    Returns
    -------
    coords : `~astropy.coordinates.SkyCoord`
        One position per row; rows with a non-finite value or ``|dec| > 90`` are NaN
        (`Mantis.get_cutouts <astro_mantis.MantisClass.get_cutouts>` flags them ``BAD_COORDINATE``).
    good : `numpy.ndarray` of bool
        True where the position is valid.
    """
    ra = np.asarray(ra, dtype=float)
    dec = np.asarray(dec, dtype=float)
    good = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0)
    coords = SkyCoord(np.where(good, ra, np.nan) * u.deg, np.where(good, dec, np.nan) * u.deg,
                      frame="icrs")
    return coords, good


# ------------------------------------------------------------------------- the job
def _status_kind(text):
    """Group a per-survey status string into one of `_STATUS_KINDS`."""
    text = str(text)
    if text in ("ok", "fetched"):
        return "fetched"
    if text == "cached":
        return "cached"
    if text.startswith("out of footprint"):
        return "out of footprint"
    if text.startswith("bad coordinate"):
        return "bad coordinate"
    return "failed"


def _status_text(text):
    """The status as written in the summary (``ok`` is spelled ``fetched``)."""
    return "fetched" if text == "ok" else str(text)


def fetch_and_write(ra, dec, out, surveys=DEFAULT_SURVEYS, cache=True, progress=True,
                    meta=None):
    """Fetch the cutouts of many positions and write them with a row-aligned summary.

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
        Show a progress bar.
    meta : dict, optional
        Extra entries for the summary table's ``meta``.

    Returns
    -------
    cutouts : list of `~astro_mantis.MultiSurveyCutout`
        One per position, in input order.
    summary : `~astropy.table.Table`
        The summary written to ``out/summary.ecsv``: ``row``, ``ra``, ``dec``,
        ``flags``, ``status_<survey>`` per survey, ``file`` (masked when no file was
        written, i.e. for invalid positions).
    """
    from tqdm.auto import tqdm

    from .cutouts import Mantis

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    coords, good = positions_from_columns(ra, dec)
    n = len(good)
    surveys = tuple(get_survey(s).name for s in surveys)
    t0 = time.perf_counter()
    if n:
        cuts = Mantis.get_cutouts(coords, surveys=surveys, cache=cache, progress=progress)
    else:
        cuts = []
    elapsed = time.perf_counter() - t0

    files = []
    with tqdm(total=len(cuts), unit="file", desc="writing", disable=not progress,
              leave=False) as bar:
        for i, cut in enumerate(cuts):
            bar.update(1)
            if not good[i] or MantisFlag.BAD_COORDINATE in cut.flags:
                files.append("")
                continue
            name = f"cutout_{i:06d}.fits"
            cut.write(out / name, overwrite=True)
            files.append(name)

    summary = Table()
    summary["row"] = np.arange(n, dtype=np.int64)
    summary["ra"] = np.asarray(ra, dtype=float) * u.deg
    summary["dec"] = np.asarray(dec, dtype=float) * u.deg
    summary["flags"] = np.array([int(c.flags) for c in cuts], dtype=np.int64)
    for s in surveys:
        summary[f"status_{s}"] = np.array([_status_text(c.status.get(s, "")) for c in cuts],
                                          dtype=str) if n else np.array([], dtype=str)
    files = np.array(files, dtype=str) if n else np.array([], dtype=str)
    summary["file"] = MaskedColumn(files, mask=files == "")
    summary["row"].description = "row number in the input table (from 0)"
    summary["flags"].description = "astro_mantis.MantisFlag bits: " + ", ".join(
        f"{f.name}={f.value}" for f in MantisFlag if f.value)
    for s in surveys:
        summary[f"status_{s}"].description = (
            f"{s}: fetched, cached, out of footprint, failed: <reason>, or bad coordinate")
    summary["file"].description = "cutout file in this directory (masked when none was written)"
    summary.meta.update({"creator": f"astro_mantis {__version__}",
                         "surveys": list(surveys),
                         "fetch_seconds": round(elapsed, 3)})
    summary.meta.update(meta or {})
    summary.write(out / SUMMARY_NAME, format="ascii.ecsv", overwrite=True)
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
        ``out of footprint``, ``failed`` and ``bad coordinate``.
    """
    return {s: Counter(_status_kind(v) for v in summary[f"status_{s}"]) for s in surveys}


def format_summary(summary, surveys):
    """A short human-readable report of a summary table (rows, then a line per survey).

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
    nbad = int(np.sum(_no_file(summary))) if n else 0
    nfiles = n - nbad
    lines = [f"{n} row(s): {nfiles} cutout file(s) written, {nbad} row(s) with a bad "
             "coordinate (no file)"]
    width = max([len("survey")] + [len(s) for s in surveys])
    kinds = _STATUS_KINDS[:4]
    lines.append(f"  {'survey':<{width}}  " + "  ".join(f"{k:>16}" for k in kinds))
    for s in surveys:
        lines.append(f"  {s:<{width}}  " + "  ".join(f"{counts[s][k]:>16d}" for k in kinds))
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
    ra = column_degrees(table, args.ra_col)
    dec = column_degrees(table, args.dec_col)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a directory")
    cache_ctx = (conf.set_temp("cache_dir", str(Path(args.cache_dir).expanduser()))
                 if args.cache_dir else contextlib.nullcontext())
    with cache_ctx:
        cuts, summary = fetch_and_write(
            ra, dec, out, surveys=args.surveys, cache=not args.no_cache,
            progress=not args.no_progress,
            meta={"input": str(args.table), "ra_col": args.ra_col, "dec_col": args.dec_col})
    print(f"astro-mantis cutouts: {args.table} -> {out}/ "
          f"({summary.meta['fetch_seconds']:.1f} s)")
    print(format_summary(summary, args.surveys))
    print(f"summary: {out / SUMMARY_NAME}")
    return EXIT_OK


# ------------------------------------------------------------------------- demo
#: Special positions of the demo: (label, ra, dec).
_DEMO_SOUTH = [("south of PS1 (dec < -30)", 83.82, -45.5),
               ("south of PS1 (dec < -30)", 201.37, -67.2)]
_DEMO_BAD = ("invalid position (NaN)", np.nan, np.nan)
#: (ra, dec, radius) in degrees of the GALEX coverage hole the demo server simulates.
_DEMO_GALEX_HOLE = (247.5, 36.2, 0.05)


def demo_positions(n=36, galex_hole=None):
    """Deterministic demo positions spread over the sky.

    Most positions lie on a Fibonacci lattice of the sky north of dec -25 (inside the
    Pan-STARRS footprint); two lie south of dec -30 (no Pan-STARRS), one inside a
    GALEX coverage hole when one is given, and one is invalid (NaN), so the demo shows
    how each case is flagged. Row 0 is an ordinary position, row 1 a southern one and
    row 2 the GALEX hole (or an ordinary one), so the first figures show all three.

    Parameters
    ----------
    n : int
        Number of positions.
    galex_hole : tuple of float, optional
        ``(ra, dec)`` in degrees of a position without GALEX coverage.

    Returns
    -------
    ra, dec : `numpy.ndarray`
        Degrees, length ``n``.
    labels : list of str
        What each position is meant to show (``""`` for ordinary ones).
    """
    specials = [_DEMO_SOUTH[0]]
    if galex_hole is not None:
        specials.append(("GALEX coverage hole", float(galex_hole[0]), float(galex_hole[1])))
    specials += [_DEMO_SOUTH[1], _DEMO_BAD]
    nlattice = max(n - len(specials), 1)
    # Fibonacci lattice on the cap dec > -25: uniform in sin(dec), golden-angle RA steps.
    k = np.arange(nlattice) + 0.5
    smin = np.sin(np.radians(-25.0))
    sdec = smin + (1.0 - smin) * k / nlattice
    dec_l = np.degrees(np.arcsin(np.clip(sdec, -1, 1)))
    ra_l = np.mod(np.degrees(k * np.pi * (3.0 - np.sqrt(5.0))) + 150.0, 360.0)
    lattice = [("", round(float(r), 5), round(float(d), 5)) for r, d in zip(ra_l, dec_l)]
    rows = lattice[:1] + specials[:2] + lattice[1:] + specials[2:]
    rows = rows[:n]
    ra = np.array([r[1] for r in rows], dtype=float)
    dec = np.array([r[2] for r in rows], dtype=float)
    return ra, dec, [r[0] for r in rows]


def _thumbnail(img, size=64):
    """An image resampled (nearest pixel) to ``size`` x ``size`` and scaled to [0, 1] (asinh)."""
    ny, nx = img.shape
    sample = img[np.ix_((np.arange(size) * ny) // size, (np.arange(size) * nx) // size)]
    fin = np.isfinite(sample)
    if fin.sum() < 2:
        return np.full((size, size), np.nan)
    lo, hi = np.percentile(sample[fin], [0.5, 99.5])
    scaled = np.clip((sample - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    return np.arcsinh(10 * scaled) / np.arcsinh(10)


def _overview_figure(cuts, summary, labels, surveys, ncol=8, cell=64):
    """The demo's overview figure: sky map of the positions and a mosaic of thumbnails."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8.5))
    ax = fig.add_axes([0.06, 0.45, 0.74, 0.47], projection="aitoff")
    ndeliv = np.array([len(c.surveys) for c in cuts])
    ra = np.asarray(summary["ra"], dtype=float)
    dec = np.asarray(summary["dec"], dtype=float)
    ok = np.isfinite(ra) & np.isfinite(dec)
    x = -np.radians(((ra + 180.0) % 360.0) - 180.0)  # RA increasing to the left
    y = np.radians(dec)
    colors = {0: "tab:red", 1: "tab:orange", 2: "tab:olive", 3: "tab:green"}
    for k in sorted(set(ndeliv[ok])):
        sel = ok & (ndeliv == k)
        ax.scatter(x[sel], y[sel], s=28, color=colors.get(min(k, 3), "tab:blue"),
                   label=f"{k} of {len(surveys)} surveys", zorder=3)
    xs = np.linspace(-np.pi, np.pi, 200)
    ax.plot(xs, np.full_like(xs, np.radians(-30.0)), ls="--", color="0.4", lw=1,
            label="PS1 limit (dec -30°)")
    for i in np.flatnonzero(ok):
        if labels[i]:
            ax.annotate(str(i), (x[i], y[i]), xytext=(4, 4), textcoords="offset points",
                        fontsize=8)
    ax.set_xticks(np.radians(np.arange(-150, 181, 30)))
    ax.set_xticklabels([f"{(-v) % 360}°" for v in range(-150, 181, 30)], fontsize=7)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(True, alpha=0.4)
    ax.legend(loc="upper left", fontsize=8, bbox_to_anchor=(1.02, 1.0), frameon=False)
    nbad = int((~ok).sum())
    fig.text(0.5, 0.97, f"astro-mantis demo: {len(cuts)} positions (ICRS; {nbad} invalid, not "
             "shown); colour: surveys delivered; numbers: rows of special cases",
             ha="center", va="top", fontsize=10)

    # mosaic: one band per survey (rows) for the first positions (columns), one image
    bands = {"galex": "NUV", "panstarrs": "r", "unwise": "W1"}
    show = [s for s in surveys if s in bands]
    ncol = min(ncol, len(cuts))
    gap = cell // 8
    mosaic = np.full((len(show) * (cell + gap), max(ncol, 1) * (cell + gap)), np.nan)
    notes = []
    for r, s in enumerate(show):
        for c in range(ncol):
            y0, x0 = r * (cell + gap), c * (cell + gap)
            if s in cuts[c].surveys:
                mosaic[y0:y0 + cell, x0:x0 + cell] = _thumbnail(cuts[c].surveys[s][bands[s]],
                                                                cell)[::-1]
            else:
                mosaic[y0:y0 + cell, x0:x0 + cell] = 0.0
                notes.append((x0 + cell / 2, y0 + cell / 2, cuts[c].status.get(s, "missing")))
    mx = fig.add_axes([0.06, 0.03, 0.88, 0.36])
    cmap = colormaps["gray"].with_extremes(bad="white")
    mx.imshow(mosaic, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    for xc, yc, text in notes:
        mx.text(xc, yc, str(text).replace(": ", ":\n", 1)[:40], ha="center", va="center",
                fontsize=7, color="white")
    mx.set_xticks([c * (cell + gap) + cell / 2 for c in range(ncol)])
    mx.set_xticklabels([f"row {c}" for c in range(ncol)], fontsize=8)
    mx.xaxis.tick_top()
    mx.set_yticks([r * (cell + gap) + cell / 2 for r in range(len(show))])
    mx.set_yticklabels([f"{s} {bands[s]}" for s in show], fontsize=8)
    mx.tick_params(length=0)
    for side in mx.spines.values():
        side.set_visible(False)
    return fig


def _cmd_demo(args):
    """``astro-mantis demo``: see the subcommand's help."""
    from matplotlib.figure import Figure

    from .testing import SurveyServer

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    surveys = DEFAULT_SURVEYS
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        hole = _DEMO_GALEX_HOLE
        server = stack.enter_context(SurveyServer(latency=0.0, galex_holes=[hole]))
        ra, dec, labels = demo_positions(args.n, galex_hole=hole[:2])
        stack.enter_context(server.configure(conf))
        cache_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="astro_mantis_demo_"))
        stack.enter_context(conf.set_temp("cache_dir", cache_dir))
        cuts, summary = fetch_and_write(
            ra, dec, out, surveys=surveys, cache=True, progress=not args.no_progress,
            meta={"input": "astro-mantis demo (loopback servers, synthetic sky)"})
        requests = dict(server.counts)
    summary["note"] = np.array(labels, dtype=str)
    summary["note"].description = "what the demo position is meant to show"
    summary.write(out / SUMMARY_NAME, format="ascii.ecsv", overwrite=True)

    figures = []
    for i in range(min(3, len(cuts))):
        if not cuts[i].surveys and not cuts[i].missing:
            continue
        npanel = sum(len(get_survey(s).bands) for s in surveys)
        fig = Figure(figsize=(1.6 * npanel, 2.3))
        cuts[i].plot(fig=fig)
        fig.subplots_adjust(left=0.005, right=0.995, bottom=0.02, top=0.72, wspace=0.05)
        c = cuts[i].coord
        where = (f"ra={c.ra.deg:.4f} dec={c.dec.deg:+.4f}" if np.isfinite(c.ra.deg)
                 else "invalid position")
        fig.suptitle(f"row {i}{': ' + labels[i] if labels[i] else ''} ({where}, "
                     f"flags={int(cuts[i].flags)})", fontsize=9)
        path = out / f"cutout_{i:03d}.png"
        fig.savefig(path, dpi=80)
        figures.append(path)
    fig = _overview_figure(cuts, summary, labels, surveys)
    path = out / "overview.png"
    fig.savefig(path, dpi=80)
    figures.append(path)
    elapsed = time.perf_counter() - t0

    print(f"astro-mantis demo: {len(cuts)} positions fetched from loopback survey servers "
          f"(synthetic sky, no network) in {elapsed:.1f} s")
    print(format_summary(summary, surveys))
    print("  requests served: " + ", ".join(f"{k} {v}" for k, v in sorted(requests.items())))
    print(f"wrote to {out}/:")
    print(f"  {SUMMARY_NAME}  (one row per position, in order, with flags and statuses)")
    print(f"  cutout_NNNNNN.fits  ({int(np.sum(~_no_file(summary)))} files; "
          "read with astro_mantis.MultiSurveyCutout.read)")
    for p in figures:
        print(f"  {p.name}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
