"""The ``astro-mantis`` command.

Subcommands:

``astro-mantis cutouts TABLE --out DIR``
    Fetch GALEX, Pan-STARRS and unWISE cutouts for every row of a table, write one
    multi-extension FITS file per row and a row-aligned ``summary.ecsv``.
``astro-mantis demo``
    Run the same job on the embedded default: loopback copies of the survey services
    serving the bundled sample of mock galaxies (`astro_mantis.simulate.SampleSky`), no
    network needed; writes cutouts, figures and a summary with the true redshifts.
``astro-mantis train --data DIR --out DIR``
    Train a redshift network (default ``mantis-mini``) on a training data directory,
    calibrate it and export its weights with a model card (`astro_mantis.training`).

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
        The parser, with one subparser per subcommand (``cutouts``, ``demo``,
        ``train``).
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
        help="run the cutout service on the bundled mock sample sky (no network)",
        description=(
            "The package's main job on the embedded default, with no network: starts "
            "loopback copies of the Pan-STARRS and Legacy Surveys viewer services "
            "(astro_mantis.testing) serving the bundled sample sky (300 simulated mock "
            "galaxies with known redshifts, astro_mantis.simulate.SampleSky), points "
            "astro_mantis.conf at them for the duration of the run (with a temporary "
            "cutout cache), fetches cutouts for N sample galaxies (two south of dec -30, "
            "where Pan-STARRS has no data, one inside a GALEX coverage hole, and one "
            "invalid position, to show how such rows are flagged), and writes into DIR: "
            "one FITS file per row (cutout_NNNNNN.fits), summary.ecsv (with each "
            "galaxy's true redshift, z_true), figures of the first rows' cutouts "
            "(cutout_NNN.png) and an overview figure (overview.png)."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--out", "-o", default=f"./{DEMO_DIR}", metavar="DIR",
                   help="output directory (created if needed; default: %(default)s)")
    d.add_argument("--n", type=_positive_int, default=36, metavar="N",
                   help="number of positions, at most the sample's galaxies plus one "
                        "(default: %(default)s)")
    d.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    d.set_defaults(func=_cmd_demo)

    t = sub.add_parser(
        "train",
        help="train a redshift network on a training data directory",
        description=(
            "Train a redshift network (default: mantis-mini) on a training data directory,\n"
            "calibrate it and export it. DIR holds the shards of the splits train,\n"
            "validation and optionally test, and manifest.json, as written by\n"
            "astro_mantis.simulate.dataset.make_dataset.\n\n"
            "1. The shards are early-fused once into a memory-mapped cache\n"
            "   (OUT/fused_cache unless --cache-dir).\n"
            "2. AdamW with a linear warm-up and a cosine learning-rate schedule minimises\n"
            "   the cross-entropy over the 400 redshift bins, with random rotations, flips\n"
            "   and +-2 px shifts. After every epoch the validation split is evaluated,\n"
            "   a line is appended to OUT/metrics.jsonl (train loss, val loss, val CDE\n"
            "   loss, NMAD, outlier fractions, learning rate, seconds) and the full state\n"
            "   is saved to OUT/checkpoint.pt (--resume continues from it exactly).\n"
            "   Training stops early when the validation CDE loss has not improved for\n"
            "   --patience epochs; the best epoch's weights are kept (OUT/best_model.pt).\n"
            "3. A softmax temperature (by likelihood) and then a PIT recalibration map\n"
            "   (the CDF of the validation PIT values, applied to every PDF's CDF) are\n"
            "   fitted on the validation split (PIT KS statistic and 68% coverage before\n"
            "   and after are reported).\n"
            "4. The validation and test splits are evaluated, and OUT/NAME.safetensors\n"
            "   and its model card OUT/NAME.json (data, command, seed, metrics,\n"
            "   temperature, bin edges, sha256 of the weights) are written. Copy the two\n"
            "   files into astro_mantis/data/ to bundle the model."),
        epilog="Example (the bundled mantis-mini; see the training guide):\n"
               "  astro-mantis train --data mock_data/ --out runs/mantis-mini "
               "--model mantis-mini --seed 0\n"
               "Exit status: 0 when the model was trained and exported, 2 for unusable "
               "input (no data, an existing run without --resume/--overwrite, unknown "
               "model).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--data", required=True, metavar="DIR",
                   help="training data directory (shards of the splits train, validation "
                        "and optionally test, with manifest.json)")
    t.add_argument("--out", "-o", required=True, metavar="DIR",
                   help="output directory for the checkpoint, metrics log, fused cache and "
                        "exported model (created if needed)")
    t.add_argument("--model", default="mantis-mini", metavar="NAME",
                   help="architecture of the astro_mantis.models registry "
                        "(default: %(default)s)")
    t.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   dest="model_args",
                   help="build argument of the architecture, e.g. --model-arg drop=0.1 or "
                        "--model-arg 'widths=[16,32,64,128]' (VALUE is read as JSON, else "
                        "kept as text); repeat for several")
    t.add_argument("--name", default=None, metavar="NAME",
                   help="name of the exported files NAME.safetensors and NAME.json "
                        "(default: the --model name)")
    t.add_argument("--epochs", type=_positive_int, default=30, metavar="N",
                   help="epochs; the cosine schedule spans them (default: %(default)s)")
    t.add_argument("--batch-size", type=_positive_int, default=64, metavar="N",
                   help="training batch size (default: %(default)s)")
    t.add_argument("--lr", type=float, default=2e-3, metavar="LR",
                   help="peak learning rate of AdamW (default: %(default)s)")
    t.add_argument("--weight-decay", type=float, default=0.05, metavar="WD",
                   help="AdamW weight decay, not applied to biases and normalisation "
                        "weights (default: %(default)s)")
    t.add_argument("--warmup-epochs", type=float, default=1.0, metavar="E",
                   help="linear learning-rate warm-up, in epochs (default: %(default)s)")
    t.add_argument("--seed", type=int, default=0, metavar="SEED",
                   help="seed of the initial weights, sample order, augmentation and "
                        "dropout (default: %(default)s)")
    t.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda, cuda:1, mps ... "
                        "(default: %(default)s)")
    t.add_argument("--no-amp", action="store_true",
                   help="no mixed precision on CUDA (it is never used on other devices)")
    t.add_argument("--patience", type=int, default=5, metavar="N",
                   help="stop when the validation CDE loss has not improved for N epochs; "
                        "0 disables early stopping (default: %(default)s)")
    t.add_argument("--smoothing-sigma", type=float, default=0.0, metavar="BINS",
                   help="Gaussian-smoothed targets of this width in bins; 0 for hard "
                        "targets (default: %(default)s)")
    t.add_argument("--balanced", action="store_true",
                   help="redshift-balanced sampling (inverse n(z) weights) instead of "
                        "shuffling")
    t.add_argument("--no-augment", action="store_true",
                   help="no random rotations, flips and shifts")
    t.add_argument("--max-minutes", type=float, default=None, metavar="MIN",
                   help="time budget: start no epoch that would end after it (the result "
                        "then depends on the machine's speed; --resume continues)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    t.add_argument("--overwrite", action="store_true",
                   help="start afresh even if --out holds a checkpoint")
    t.add_argument("--workers", type=int, default=0, metavar="N",
                   help="data-loader worker processes (default: %(default)s, load in the "
                        "main process)")
    t.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="CPU threads for torch (default: torch's choice)")
    t.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="directory of the fused-input cache, to share it between runs "
                        "(default: OUT/fused_cache)")
    t.add_argument("--cache-dtype", choices=("float16", "float32"), default="float16",
                   help="storage type of the fused cache (default: %(default)s)")
    t.add_argument("--no-calibrate", action="store_true",
                   help="do not calibrate: no softmax temperature (the card records T = 1) "
                        "and no PIT map")
    t.add_argument("--no-pit", action="store_true",
                   help="calibrate with the softmax temperature only, without the PIT "
                        "recalibration map")
    t.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    t.set_defaults(func=_cmd_train)
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
_DEMO_SOUTH = "south of PS1 (dec < -30)"
_DEMO_HOLE = "GALEX coverage hole"
_DEMO_BAD = "invalid position (NaN)"


def demo_positions(n=36, sky=None):
    """Deterministic demo positions: galaxies of the bundled sample sky.

    Most positions are sample galaxies that every survey covers; two lie south of
    dec -30 (no Pan-STARRS), one inside a GALEX coverage hole, and one is invalid
    (NaN), so the demo shows how each case is flagged. Row 0 is an ordinary galaxy
    whose cutouts are all complete, row 1 a southern one and row 2 the GALEX hole, so
    the first figures show all three; the second southern galaxy and the invalid
    position come last.

    Parameters
    ----------
    n : int
        Number of positions (at most the sample's galaxies plus one).
    sky : `~astro_mantis.simulate.SampleSky`, optional
        The sample sky (default: the bundled one).

    Returns
    -------
    ra, dec : `numpy.ndarray`
        Degrees, length ``n``.
    labels : list of str
        What each position is meant to show (``""`` for ordinary ones).
    rows : `numpy.ndarray` of int
        Row of ``sky.catalog`` of each position (-1 for the invalid one).

    Raises
    ------
    ValueError
        If ``n`` exceeds the galaxies available.
    """
    if sky is None:
        from .simulate import SampleSky

        sky = SampleSky()
    cat = sky.catalog
    ra_all = np.asarray(cat["ra"], dtype=float)
    dec_all = np.asarray(cat["dec"], dtype=float)
    south = dec_all < -30.0
    covered = np.array([sky.galex_covered((r, d)) for r, d in zip(ra_all, dec_all)])
    clean = np.array([not sky.chip_gap_bands((r, d)) for r, d in zip(ra_all, dec_all)])

    def pick(mask, k):
        # complete cutouts first, so that the special rows show only what they are for
        idx = np.flatnonzero(mask)
        return list(idx[np.argsort(~clean[idx], kind="stable")][:k])

    souths = pick(south & covered, 2) or pick(south, 2)
    holes = pick(~south & ~covered, 1)
    ordinary = pick(~south & covered, int(np.sum(~south & covered)))
    specials = ([(_DEMO_SOUTH, souths[0])] if souths else []) \
        + ([(_DEMO_HOLE, holes[0])] if holes else []) \
        + [(_DEMO_SOUTH, i) for i in souths[1:2]] + [(_DEMO_BAD, -1)]
    nordinary = max(n - len(specials), 1)
    if nordinary > len(ordinary):
        raise ValueError(f"the sample sky offers at most {len(ordinary) + len(specials)} "
                         f"demo positions, not {n}")
    plain = [("", int(i)) for i in ordinary[:nordinary]]
    rows = (plain[:1] + specials[:2] + plain[1:] + specials[2:])[:n]
    index = np.array([r[1] for r in rows], dtype=np.int64)
    good = index >= 0
    ra = np.where(good, ra_all[np.maximum(index, 0)], np.nan)
    dec = np.where(good, dec_all[np.maximum(index, 0)], np.nan)
    return ra, dec, [r[0] for r in rows], index


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


def _add_truth(summary, catalog, index):
    """Add the sample galaxies' identity and true redshift to the demo summary."""
    good = index >= 0
    pick = np.maximum(index, 0)
    ids = np.asarray(catalog["id"], dtype=np.int64)[pick] if "id" in catalog.colnames else pick
    summary["sample_id"] = MaskedColumn(ids, mask=~good)
    summary["sample_id"].description = "row (id) of the galaxy in the bundled sample sky catalog"
    summary["z_true"] = MaskedColumn(np.asarray(catalog["z"], dtype=float)[pick], mask=~good)
    summary["z_true"].description = "true redshift of the simulated galaxy"
    summary["type"] = MaskedColumn(np.asarray(catalog["type"]).astype(str)[pick], mask=~good)
    summary["type"].description = "population component: main, lrg or elg"


def _format_truth(summary):
    """One line on the true redshifts of the demo galaxies."""
    z = np.ma.compressed(np.ma.asarray(summary["z_true"]))
    if not len(z):
        return "  true redshifts: none (no valid position)"
    kinds = Counter(str(t) for t in np.ma.compressed(np.ma.asarray(summary["type"])))
    mix = ", ".join(f"{k} {kinds[k]}" for k in sorted(kinds))
    return (f"  true redshifts of the {len(z)} galaxies: {z.min():.3f} to {z.max():.3f} "
            f"(median {np.median(z):.3f}; {mix}); column z_true of {SUMMARY_NAME}")


def _cmd_demo(args):
    """``astro-mantis demo``: see the subcommand's help."""
    from matplotlib.figure import Figure

    from .simulate import SampleSky
    from .testing import SurveyServer

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a directory")
    sky = SampleSky()
    try:
        ra, dec, labels, index = demo_positions(args.n, sky=sky)
    except ValueError as exc:
        raise InputError(f"--n {args.n}: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    surveys = DEFAULT_SURVEYS
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(SurveyServer(sky=sky, latency=0.0))
        stack.enter_context(server.configure(conf))
        cache_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="astro_mantis_demo_"))
        stack.enter_context(conf.set_temp("cache_dir", cache_dir))
        cuts, summary = fetch_and_write(
            ra, dec, out, surveys=surveys, cache=True, progress=not args.no_progress,
            meta={"input": "astro-mantis demo (loopback servers, bundled sample sky of "
                           "simulated galaxies)",
                  "sample_sky": f"seed {sky.seed}, {len(sky)} galaxies, astro_mantis "
                                f"{sky.meta.get('version')}"})
        requests = dict(server.counts)
    summary["note"] = np.array(labels, dtype=str)
    summary["note"].description = "what the demo position is meant to show"
    _add_truth(summary, sky.catalog, index)
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
        truth = (f", z_true={summary['z_true'][i]:.3f} {summary['type'][i]}"
                 if index[i] >= 0 else "")
        fig.suptitle(f"row {i}{': ' + labels[i] if labels[i] else ''} ({where}{truth}, "
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
          f"(bundled sample sky of simulated galaxies, no network) in {elapsed:.1f} s")
    print(format_summary(summary, surveys))
    print(_format_truth(summary))
    print("  requests served: " + ", ".join(f"{k} {v}" for k, v in sorted(requests.items())))
    print(f"wrote to {out}/:")
    print(f"  {SUMMARY_NAME}  (one row per position, in order, with flags, statuses and the "
          "true redshift z_true)")
    print(f"  cutout_NNNNNN.fits  ({int(np.sum(~_no_file(summary)))} files; "
          "read with astro_mantis.MultiSurveyCutout.read)")
    for p in figures:
        print(f"  {p.name}")
    return EXIT_OK


# ------------------------------------------------------------------------- train
def _model_args(items):
    """Parse ``--model-arg KEY=VALUE`` items into build keyword arguments."""
    import json

    out = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip().isidentifier():
            raise InputError(f"--model-arg expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _train_command(args):
    """The canonical command line of a ``train`` run, every option spelled out."""
    import shlex

    parts = ["astro-mantis", "train", "--data", str(args.data), "--out", str(args.out),
             "--model", args.model]
    for item in args.model_args:
        parts += ["--model-arg", item]
    if args.name:
        parts += ["--name", args.name]
    parts += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
              "--lr", repr(args.lr), "--weight-decay", repr(args.weight_decay),
              "--warmup-epochs", repr(args.warmup_epochs), "--seed", str(args.seed),
              "--patience", str(args.patience), "--smoothing-sigma", repr(args.smoothing_sigma),
              "--device", str(args.device)]
    for flag in ("balanced", "no_augment", "no_amp", "no_calibrate", "no_pit"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    if args.max_minutes is not None:
        parts += ["--max-minutes", repr(args.max_minutes)]
    return shlex.join(parts)


def _cmd_train(args):
    """``astro-mantis train``: see the subcommand's help."""
    import torch

    from .training.pipeline import fit_and_export

    data = Path(args.data)
    if not data.is_dir():
        raise InputError(f"--data {str(data)!r} is not a directory")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a directory")
    if (out / "checkpoint.pt").exists() and not (args.resume or args.overwrite):
        raise InputError(f"{str(out)!r} holds a training run: pass --resume to continue it "
                         "or --overwrite to start afresh")
    model_kwargs = _model_args(args.model_args)
    from .models import build_model
    try:
        build_model(args.model, **model_kwargs)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"cannot build model {args.model!r}: {exc}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        result = fit_and_export(
            args.model, data, out, name=args.name, calibrate=not args.no_calibrate,
            pit=not args.no_pit,
            command=_train_command(args),
            cache_dir=args.cache_dir, cache_dtype=args.cache_dtype,
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, seed=args.seed,
            device=args.device, amp=not args.no_amp,
            patience=args.patience if args.patience > 0 else None,
            smoothing_sigma=args.smoothing_sigma, balanced=args.balanced,
            augment=not args.no_augment, max_minutes=args.max_minutes, resume=args.resume,
            overwrite=args.overwrite, num_workers=args.workers, model_kwargs=model_kwargs,
            progress=not args.no_progress)
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None
    run = result.training
    print(f"astro-mantis train: {run.config['model']} on {run.config['n_train']} training "
          f"galaxies, {run.epochs_run} epochs ({run.stopped}), best epoch {run.best_epoch}, "
          f"{time.perf_counter() - t0:.0f} s on {run.config['device']}")
    if result.calibration is not None:
        print(f"  calibration (validation): {result.calibration}")
    for split, m in result.metrics.items():
        print(f"  {split} ({m['n']}): NMAD {m['nmad']:.4f}, outliers >0.15 "
              f"{m['outlier_0.15']:.3f}, >0.05 {m['outlier_0.05']:.3f}, bias "
              f"{m['bias_mean']:+.4f}, CDE loss {m['cde_loss']:.3f}, PIT KS {m['pit_ks']:.3f}, "
              f"68% coverage {m['coverage_68']:.3f}")
    print(f"wrote to {out}/:")
    print("  metrics.jsonl  (one line per epoch)")
    print("  checkpoint.pt  (full state; --resume continues)  best_model.pt")
    if result.export is not None:
        print(f"  {result.export.weights_path.name}  (sha256 "
              f"{result.export.card['sha256'][:16]}...)")
        print(f"  {result.export.card_path.name}  (model card)")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
