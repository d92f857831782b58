"""The ``astro-mantis`` command.

Subcommands:

``astro-mantis predict INPUT -o OUTPUT``
    Add redshift PDF columns (``z_pdf``, ``z_mean``, ..., ``z_flags``) to a table with
    `astro_mantis.add_redshift_columns` and write it, in any astropy format.
``astro-mantis cutouts TABLE --out DIR``
    Fetch GALEX, Pan-STARRS and unWISE cutouts for every row of a table, write one
    multi-extension FITS file per row and a row-aligned ``summary.ecsv``.
``astro-mantis demo``
    Run the photo-z job on the embedded default: loopback copies of the survey services
    serving the bundled sample of mock galaxies (`astro_mantis.simulate.SampleSky`), no
    network needed; writes the table, metrics against the true redshifts and figures
    (`astro_mantis.demo`).
``astro-mantis train --data DIR --out DIR``
    Train a redshift network (default ``mantis-mini``) on a training data directory,
    calibrate it and export its weights with a model card (`astro_mantis.training`).
``astro-mantis match TABLE -o OUTPUT``
    Attach spectroscopic redshifts (SDSS SkyServer, an spAll file or your catalog) to a
    table (`astro_mantis.spectro`).
``astro-mantis build-training-set TABLE --out DIR``
    Fetch the cutouts of a table with spectroscopic redshifts and write training shards
    that ``astro-mantis train`` reads.
``astro-mantis plot TABLE --row N -o FILE``
    A figure of one row of a redshift table: its cutouts above its PDF.
``astro-mantis serve``
    The photo-z web service and page (`astro_mantis.web`; ``pip install
    "astro-mantis[web]"``).
``astro-mantis explain bands|reference|ood|examples|spectra``
    Why the network said a redshift, and when not to believe it (`astro_mantis.explain`).

Every subcommand returns an exit status: 0 when the job ran (rows whose fetch failed
are reported in the summary, not as an error), 2 when the input is unusable.
`main` takes an argument list, so the command can be driven from Python::

    from astro_mantis.cli import main
    status = main(["cutouts", "targets.ecsv", "--out", "cutouts/"])
"""
import argparse
import contextlib
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import MaskedColumn, Table

from ._version import __version__
from .config import conf
from .flags import MantisFlag
from .surveys import DEFAULT_SURVEYS, get_survey
from .tableio import write_table

__all__ = ["main", "build_parser", "fetch_and_write", "column_degrees", "positions_from_columns",
           "summarize", "format_summary", "write_table", "InputError", "EXIT_OK",
           "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "EXIT_NONE_ESTIMATED"]

#: Exit status of a job that ran (failures of single rows are in the summary).
EXIT_OK = 0
#: Exit status for unusable input: unreadable table, missing column, unknown survey,
#: an output that cannot be written.
EXIT_BAD_INPUT = 2
#: Exit status of a ``predict`` run that could estimate no row (the reasons are printed).
EXIT_NONE_ESTIMATED = 3
#: Exit status of an interrupted job (Ctrl-C).
EXIT_INTERRUPTED = 130

#: Name of the row-aligned summary table written next to the cutouts.
SUMMARY_NAME = "summary.ecsv"
#: Default output directory of ``astro-mantis demo``.
DEMO_DIR = "astro_mantis_demo"

_STATUS_KINDS = ("fetched", "cached", "out of footprint", "failed", "bad coordinate",
                 "not fetched")


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


def _add_cache_args(parser):
    """The cache and progress options shared by the commands that fetch cutouts."""
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor write the on-disk cutout cache: fetch everything")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="cutout cache directory for this run (default: conf.cache_dir, "
                             "else <astropy cache>/astro_mantis/cutouts)")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def _add_service_args(parser):
    """--demo-services and --dry-run, shared by the commands that fetch cutouts."""
    parser.add_argument("--demo-services", action="store_true",
                        help="fetch from loopback copies of the survey services serving the "
                             "bundled sample sky (simulated galaxies; no network), as "
                             "'astro-mantis demo' does: try the command offline")
    parser.add_argument("--dry-run", action="store_true",
                        help="report the positions, what the cache holds, the requests the "
                             "job would send per host and a rough time at the polite "
                             "connection limit, and stop (nothing is fetched or written)")


@contextlib.contextmanager
def _services(args):
    """Run a command against the loopback services on the sample sky (--demo-services)."""
    if not getattr(args, "demo_services", False):
        yield None
        return
    from .simulate import SampleSky
    from .testing import SurveyServer

    with SurveyServer(sky=SampleSky()) as server, server.configure(conf):
        print(f"astro-mantis {args.command}: --demo-services: loopback survey services on the "
              f"bundled sample sky (simulated galaxies) at {server.panstarrs_url} and "
              f"{server.legacysurvey_url}", file=sys.stderr)
        yield server


def build_parser():
    """Build the argument parser of the ``astro-mantis`` command.

    Returns
    -------
    parser : `argparse.ArgumentParser`
        The parser, with one subparser per subcommand (``predict``, ``cutouts``,
        ``demo``, ``train``, ``match``, ``build-training-set``, ``plot``, ``serve``,
        ``explain``).
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

    d = sub.add_parser(
        "demo",
        help="photo-z for the bundled mock sample sky over loopback services (no network)",
        description=(
            "The package's main job on the embedded default, with no network: starts "
            "loopback copies of the Pan-STARRS and Legacy Surveys viewer services "
            "(astro_mantis.testing) serving the bundled sample sky (simulated mock "
            "galaxies with known redshifts, astro_mantis.simulate.SampleSky), points "
            "astro_mantis.conf at them for the duration of the run (with a temporary "
            "cutout cache), and runs astro_mantis.add_redshift_columns with the bundled "
            "mantis-mini model on a table of N sample galaxies (two south of dec -30, "
            "where Pan-STARRS has no data, one inside a GALEX coverage hole, and one "
            "invalid position, to show how such rows are flagged). Writes into DIR: "
            "photoz.fits (the table: ra, dec, dust, z_true, type, note and the columns "
            "z_pdf, z_mean, z_median, z_mode, z_std, z_lo68, z_hi68, z_flags), "
            "metrics.ecsv (NMAD, bias, outlier fractions, CRPS, PIT KS, coverage, with "
            "bootstrap errors, against the true redshifts), photoz_summary.png (photo-z "
            "vs true z, PIT histogram, n(z)) and row_000.png ... (the first rows' "
            "cutouts above their PDFs). The galaxies are simulated: the metrics show the "
            "path works, not how the model does on the real sky."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--out", "-o", default=f"./{DEMO_DIR}", metavar="DIR",
                   help="output directory (created if needed; default: %(default)s)")
    d.add_argument("--n", type=_positive_int, default=None, metavar="N",
                   help="number of rows, at most the sample's galaxies plus one (default: "
                        "all of them)")
    d.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    d.set_defaults(func=_cmd_demo)

    r = sub.add_parser(
        "predict",
        help="add redshift PDF columns to a table",
        description=(
            "Read INPUT (any format astropy.table.Table.read reads: FITS, ECSV, VOTable, "
            "HDF5, Parquet, CSV ...), fetch each row's GALEX, Pan-STARRS and unWISE "
            "cutouts (with the on-disk cache), estimate its redshift PDF with the model "
            "and write OUTPUT: the input table, row for row in the same order, plus the "
            "columns z_pdf (float32, 400 bins on 0 <= z < 1.6), z_mean, z_median, z_mode, "
            "z_std, z_lo68, z_hi68 and z_flags (astro_mantis.MantisFlag bits). Rows that "
            "cannot be estimated (invalid position, a fetch that kept failing, no survey "
            "data) are kept, masked and flagged NOT_ESTIMATED; --resume completes them "
            "later. The table meta records the model, its weights' sha256, the package "
            "version and the bin grid. Positions are processed in chunks, fetching the "
            "next chunk while the network works on the current one. Service URLs, time "
            "limits and retries come from astro_mantis.conf."),
        epilog="Examples:\n"
               "  astro-mantis predict targets.fits -o targets_photoz.fits\n"
               "  astro-mantis predict cat.ecsv -o out.parquet --ra-col RAJ2000 "
               "--dec-col DEJ2000 --ebv-col EBV\n"
               "  astro-mantis predict cat.ecsv -o out.fits --resume   (complete an "
               "interrupted or partly failed run)\n"
               "Exit status: 0 when the table was written (rows that failed are flagged in "
               "it), 2 for unusable input, 130 when interrupted (the rows done so far are "
               "written; rerun with --resume).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("input", metavar="INPUT", help="input table")
    r.add_argument("--output", "-o", required=True, metavar="OUTPUT",
                   help="output table; its format follows the file name: .fits, .ecsv, "
                        ".csv (ECSV with commas), .h5/.hdf5, .parquet, .vot/.xml (VOTable), "
                        "unless --output-format is given. Each keeps the run's settings. "
                        "It is checked before any work starts and written atomically: a "
                        "failed write leaves an earlier file as it was")
    r.add_argument("--ra-col", default=None, metavar="NAME",
                   help="right ascension column, ICRS: numbers in degrees unless the column "
                        "has an angular unit, or strings (decimal degrees, or sexagesimal "
                        "'12:20:05.8' read in hours unless --ra-unit says otherwise) "
                        "(default: ra)")
    r.add_argument("--dec-col", default=None, metavar="NAME",
                   help="declination column, ICRS, degrees or '+47:11:43' (default: dec)")
    r.add_argument("--ra-unit", default=None, metavar="UNIT",
                   help="unit of a right ascension column that carries none: deg, "
                        "hourangle, rad (default: deg for numbers, hourangle for "
                        "sexagesimal strings)")
    r.add_argument("--coord-col", default=None, metavar="NAME",
                   help="a SkyCoord column (e.g. of an ECSV or FITS table written by "
                        "astropy) to use instead of --ra-col/--dec-col")
    r.add_argument("--ebv-col", default=None, metavar="NAME[,NAME]",
                   help="Milky Way E(B-V) column, or two comma-separated columns (CSFD-like, "
                        "Planck-like). Default: the dustmaps package if installed with its "
                        "maps, else zeros and the DUST_UNKNOWN flag")
    r.add_argument("--ebv", default=None, metavar="VALUE[,VALUE]",
                   help="one Milky Way E(B-V) in mag for every row (or two: CSFD-like, "
                        "Planck-like), instead of --ebv-col")
    r.add_argument("--model", default=None, metavar="NAME",
                   help="model of the astro_mantis.models registry (default: mantis-mini)")
    r.add_argument("--weights", default=None, metavar="FILE",
                   help="weights file for the model (default: the registry's; checked against "
                        "its model card's sha256)")
    r.add_argument("--surveys", type=_survey_list, default=None, metavar="LIST",
                   help="comma-separated surveys to fetch: those the model was trained on "
                        f"(default: {default_surveys}; another set is refused, as the model "
                        "would silently give degraded redshifts)")
    r.add_argument("--prefix", default="z_", metavar="PREFIX",
                   help="prefix of the new columns' names (default: %(default)s)")
    r.add_argument("--batch-size", type=_positive_int, default=64, metavar="N",
                   help="inference batch size (default: %(default)s)")
    r.add_argument("--chunk-size", type=_positive_int, default=256, metavar="N",
                   help="positions per chunk; two chunks of cutouts are held in memory (a "
                        "working set of about 1 GB at the default %(default)s; it scales with "
                        "the chunk size)")
    r.add_argument("--device", default=None, metavar="DEVICE",
                   help="cpu, cuda, cuda:1, mps ... (default: CUDA, else MPS, else CPU)")
    r.add_argument("--tta", action="store_true", default=None,
                   help="average the PDFs over the 8 flips and rotations of the cutouts")
    r.add_argument("--precision", choices=("auto", "float32", "bfloat16", "float16"),
                   default="auto",
                   help="arithmetic of the network: auto (default) takes bfloat16 where the "
                        "device runs it natively and a check against float32 passes, "
                        "float32 elsewhere; float16 needs a GPU (see the models page, "
                        "'Precision and speed')")
    r.add_argument("--format", default=None, metavar="FORMAT",
                   help="format of INPUT for Table.read (default: guessed from the name)")
    r.add_argument("--output-format", default=None, metavar="FORMAT",
                   help="format of OUTPUT for Table.write (default: guessed from the name)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT if it exists, and redshift columns already in INPUT")
    r.add_argument("--resume", action="store_true",
                   help="read OUTPUT (an earlier, interrupted or partly failed run) and "
                        "estimate only its rows flagged NOT_ESTIMATED with the settings it "
                        "records (model, surveys, dust source, --tta, position columns); "
                        "an INPUT or a setting that differs from the recorded one is "
                        "refused. Cached cutouts are not fetched again")
    r.add_argument("--qp", default=None, metavar="FILE",
                   help="also write the estimated rows' PDFs as a qp ensemble (HDF5, e.g. "
                        "pdfs.hdf5), with their row numbers as ancillary data 'row'")
    _add_service_args(r)
    _add_cache_args(r)
    r.set_defaults(func=_cmd_predict)

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

    g = sub.add_parser(
        "plot",
        help="a figure of one row of a redshift table: its cutouts above its PDF",
        description=(
            "Draw one row of a table written by 'astro-mantis predict' (or "
            "add_redshift_columns): the nine cutout panels above the redshift PDF with its "
            "68%% interval and flags (astro_mantis.visualization.plot_redshift_row). The "
            "cutouts come from --cutout (a file written by 'astro-mantis cutouts'), else "
            "from the services the table records (from the cache when they were cached), "
            "never silently from others; the figure says where they came from."),
        epilog="Example:\n  astro-mantis plot targets_photoz.fits --row 12 -o row12.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("table", metavar="TABLE", help="table with redshift columns")
    g.add_argument("--row", type=int, required=True, metavar="N",
                   help="row number (from 0; negative counts from the end)")
    g.add_argument("--output", "-o", required=True, metavar="FILE",
                   help="figure file; format from the name (.png, .pdf, .svg ...)")
    g.add_argument("--cutout", default=None, metavar="FILE",
                   help="the row's cutout file (cutout_NNNNNN.fits of 'astro-mantis cutouts')")
    g.add_argument("--z-col", default=None, metavar="NAME",
                   help="column of a reference redshift to mark (e.g. z_spec)")
    g.add_argument("--prefix", default="z_", metavar="PREFIX",
                   help="prefix of the redshift columns (default: %(default)s)")
    g.add_argument("--format", default=None, metavar="FORMAT",
                   help="format of TABLE for Table.read (default: from the name)")
    g.add_argument("--dpi", type=_positive_int, default=100, metavar="DPI",
                   help="resolution of raster figures (default: %(default)s)")
    g.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    g.set_defaults(func=_cmd_plot)

    from .spectro.cli import add_build_training_set_parser, add_match_parser

    add_match_parser(sub)
    add_build_training_set_parser(sub)

    from .web.cli import add_parser as add_serve_parser

    add_serve_parser(sub)

    from .explain.cli import add_parser as add_explain_parser

    add_explain_parser(sub)
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
        return EXIT_INTERRUPTED


# ------------------------------------------------------------------------- table input
def _read_output(path, format=None):
    from .tableio import read_table

    try:
        return read_table(path, format=format)
    except Exception as exc:
        raise InputError(f"cannot read {str(path)!r} to resume from it: {exc}") from None


def _read_table(path, format=None):
    """Read an input table, turning every failure into an `InputError`."""
    from .tableio import read_table, table_format

    path = Path(path)
    if not path.exists():
        raise InputError(f"table {str(path)!r} does not exist")
    try:
        if table_format(path, format)[0] in ("votable", "hdf5"):
            return read_table(path, format=format)
        return Table.read(path, format=format)
    except Exception as exc:  # astropy raises many kinds for unreadable tables
        hint = "" if format else " (give its format with --format, e.g. ascii.csv or fits)"
        raise InputError(f"cannot read table {str(path)!r}: {exc}{hint}") from None


def column_degrees(table, name, unit=None, option=None, what=""):
    """Return a table column as float degrees, with NaN for masked or unreadable values.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The input table.
    name : str
        Column name: numbers (degrees unless the column has an angular unit) or
        strings (see `astro_mantis.positions`).
    unit : str, optional
        Unit of a column that carries none.
    option : str, optional
        The option choosing the column, suggested when only the case differs.
    what : str
        ``"right ascension"`` (sexagesimal strings in hours) or ``"declination"``.

    Returns
    -------
    values : `numpy.ndarray`
        1-D float array in degrees.

    Raises
    ------
    InputError
        If the column does not exist (the message lists the columns that do and
        suggests one that differs only in case), is not one value per row, or has a
        non-angular unit.
    """
    from .positions import column_degrees as _column_degrees

    try:
        return _column_degrees(table, name, what, unit=unit, option=option)[0]
    except KeyError as exc:
        raise InputError(f"{exc.args[0]} (choose them with --ra-col / --dec-col)") from None
    except ValueError as exc:
        raise InputError(str(exc)) from None


def positions_from_columns(ra, dec):
    """Build ICRS positions from degree arrays, keeping invalid rows as NaN.

    Parameters
    ----------
    ra, dec : array-like
        Right ascension and declination in degrees (ICRS).

    Returns
    -------
    coords : `~astropy.coordinates.SkyCoord`
        One position per row; rows with a non-finite value, ``ra`` outside [0, 360] or
        ``|dec| > 90`` are NaN (`Mantis.get_cutouts
        <astro_mantis.MantisClass.get_cutouts>` flags them ``BAD_COORDINATE``).
    good : `numpy.ndarray` of bool
        True where the position is valid.
    """
    from .positions import check_degrees

    pos = check_degrees(ra, dec)
    return pos.coord, pos.good


def _table_positions(table, args):
    """(ra, dec) degree arrays of a table for the ``cutouts`` command."""
    from .positions import table_positions

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
    from .cutouts import FetchStatus

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
            f"{s}: fetched, cached, out of footprint, failed: <reason>, bad coordinate, or "
            "not fetched (the run was interrupted first)")
    summary["file"].description = "cutout file in this directory (masked when none was written)"
    summary.meta.update({"creator": f"astro_mantis {__version__}",
                         "surveys": list(surveys),
                         "fetch_seconds": round(elapsed, 3),
                         "interrupted": bool(interrupted)})
    summary.meta.update(meta or {})
    return summary


def fetch_and_write(ra, dec, out, surveys=DEFAULT_SURVEYS, cache=True, progress=True,
                    meta=None, chunk_size=64):
    """Fetch the cutouts of many positions and write them with a row-aligned summary.

    The positions go in chunks: each chunk's files are written as soon as it is
    fetched, so an interrupted run keeps every file it fetched, and its summary
    (written also on an interrupt) says which rows were ``not fetched``.

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

    from .atomic import atomic_path
    from .cutouts import Mantis

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
    bar = tqdm(total=n, unit="pos", desc="cutouts", disable=not progress, dynamic_ncols=True)
    try:
        for start in range(0, n, max(1, int(chunk_size))):
            idx = np.arange(start, min(n, start + max(1, int(chunk_size))))
            chunk = Mantis.get_cutouts(coords[idx], surveys=surveys, cache=cache,
                                       progress=bar.update if progress else False)
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
    nfiles = n - (int(np.sum(_no_file(summary))) if n else 0)
    first = surveys[0] if surveys else None
    nbad = counts[first]["bad coordinate"] if first else 0
    nnot = counts[first]["not fetched"] if first else 0
    lines = [f"{n} row(s): {nfiles} cutout file(s) written, {nbad} row(s) with a bad "
             "coordinate (no file)" + (f", {nnot} row(s) not fetched (interrupted)"
                                        if nnot else "")]
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
    ra, dec = _table_positions(table, args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a directory")
    if not out.parent.is_dir():
        raise InputError(f"the directory holding --out, {str(out.parent)!r}, does not exist")
    cache_ctx = (conf.set_temp("cache_dir", str(Path(args.cache_dir).expanduser()))
                 if args.cache_dir else contextlib.nullcontext())
    with _services(args), cache_ctx:
        if args.dry_run:
            from .cutouts import Mantis

            coords, good = positions_from_columns(ra, dec)
            plan = Mantis.plan(coords[good], surveys=args.surveys, cache=not args.no_cache)
            print(f"astro-mantis cutouts --dry-run: {len(table)} rows, {int(good.sum())} "
                  "valid positions; nothing is fetched or written")
            print(plan.report())
            return EXIT_OK
        try:
            cuts, summary = fetch_and_write(
                ra, dec, out, surveys=args.surveys, cache=not args.no_cache,
                progress=not args.no_progress,
                meta={"input": str(args.table), "ra_col": args.ra_col,
                      "dec_col": args.dec_col})
        except FetchInterrupted as exc:
            summary = exc.summary
            done = int(np.sum(~_no_file(summary)))
            print(f"astro-mantis cutouts: interrupted after "
                  f"{summary.meta['fetch_seconds']:.1f} s; {done} cutout file(s) written to "
                  f"{out}/ are kept, and {out / SUMMARY_NAME} marks the rows not fetched. "
                  "Rerun the same command to complete it (cached cutouts are not fetched "
                  "again).", file=sys.stderr)
            print(format_summary(summary, args.surveys))
            return EXIT_INTERRUPTED
    print(f"astro-mantis cutouts: {args.table} -> {out}/ "
          f"({summary.meta['fetch_seconds']:.1f} s)")
    print(format_summary(summary, args.surveys))
    print(f"summary: {out / SUMMARY_NAME}")
    return EXIT_OK


# ------------------------------------------------------------------------- predict
#: The column stand-ins `check_writable` tries before a predict run (per-row shape, dtype).
def _output_columns(prefix):
    from .pdf import NBINS
    from .table import OUTPUT_KEYS

    cols = {f"{prefix}pdf": ((NBINS,), np.float32), f"{prefix}flags": ((), np.int32)}
    cols.update({f"{prefix}{k}": ((), np.float64) for k in OUTPUT_KEYS[1:-1]})
    return cols


def _file_sha256(path):
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _parse_ebv(args):
    """The ``ebv=`` argument from --ebv-col / --ebv (None when neither is given)."""
    if args.ebv_col and args.ebv is not None:
        raise InputError("give --ebv-col or --ebv, not both")
    if args.ebv_col:
        names = [c.strip() for c in args.ebv_col.split(",") if c.strip()]
        if len(names) not in (1, 2):
            raise InputError("--ebv-col takes one column name or two separated by a comma")
        return names[0] if len(names) == 1 else tuple(names)
    if args.ebv is not None:
        try:
            values = [float(v) for v in str(args.ebv).split(",")]
        except ValueError:
            raise InputError(f"--ebv expects one or two numbers (mag), got {args.ebv!r}") from None
        if len(values) not in (1, 2):
            raise InputError("--ebv takes one value, or two separated by a comma")
        return values[0] if len(values) == 1 else tuple(values)
    return None


def _ebv_from_record(text):
    """The ``ebv=`` argument that reproduces a recorded dust source (``z_ebv``)."""
    kind, _, rest = str(text).partition(":")
    if kind == "col":
        names = rest.split(",")
        return names[0] if len(set(names)) == 1 else tuple(names)
    if kind == "value":
        values = [float(v) for v in rest.split(",")]
        return values[0] if len(set(values)) == 1 else tuple(values)
    if kind == "dustmaps":
        return None
    raise InputError(f"the earlier run took its dust values from {text!r}, which the command "
                     "line cannot give again; resume it from Python with the same ebv=")


def _resume_settings(args, table):
    """Fill the options not given on the command line from what the earlier run recorded."""
    from .table import run_settings

    rec = run_settings(table, args.prefix)
    if not rec:
        return
    given = []
    if args.model is None and rec.get("model"):
        args.model = str(rec["model"])
    if args.surveys is None and rec.get("survey"):
        args.surveys = _survey_list(str(rec["survey"]))
    if args.tta is None and "tta" in rec:
        args.tta = bool(rec["tta"])
    if args.ebv_col is None and args.ebv is None and rec.get("ebv"):
        args.resumed_ebv = _ebv_from_record(rec["ebv"])
    pos = str(rec.get("pos", ""))
    if pos.startswith("coord=") and args.coord_col is None:
        args.coord_col = pos[len("coord="):]
    elif pos.startswith("ra="):
        parts = dict(p.split("=", 1) for p in pos.split(",") if "=" in p)
        for opt, key in (("ra_col", "ra"), ("dec_col", "dec"), ("ra_unit", "ra_unit")):
            if getattr(args, opt) is None and key in parts:
                setattr(args, opt, parts[key])
    return given


def _check_input_matches(args, table):
    """--resume: refuse an INPUT other than the one the earlier run read."""
    from .table import run_settings

    recorded = str(run_settings(table, args.prefix).get("input", "") or "")
    path = Path(args.input)
    if not recorded:
        return
    if not path.is_file():
        raise InputError(f"--resume: input {str(path)!r} does not exist (the earlier run read a "
                         f"file with sha256 {recorded[:16]}...)")
    digest = _file_sha256(path)
    if digest != recorded:
        raise InputError(f"--resume: {str(path)!r} is not the input of the run that wrote "
                         f"{args.output!r} (sha256 {digest[:16]}... against the recorded "
                         f"{recorded[:16]}...); give the same INPUT, or start afresh with "
                         "--overwrite")


def _resume_command(args):
    """The command that completes this run (everything the recorded settings do not hold)."""
    import shlex

    parts = ["astro-mantis", "predict", str(args.input), "-o", str(args.output), "--resume"]
    for opt, flag in (("prefix", "--prefix"), ("cache_dir", "--cache-dir"),
                      ("format", "--format"), ("output_format", "--output-format"),
                      ("weights", "--weights"), ("device", "--device")):
        value = getattr(args, opt, None)
        if value is not None and not (opt == "prefix" and value == "z_"):
            parts += [flag, str(value)]
    if args.no_cache:
        parts.append("--no-cache")
    if getattr(args, "demo_services", False):
        parts.append("--demo-services")
    return shlex.join(parts)


def _failure_lines(run, limit=5):
    lines = [f"  {reason}: {count} position(s)" for reason, count in
             run.failures.most_common(limit)]
    if len(run.failures) > limit:
        lines.append(f"  ... and {len(run.failures) - limit} other reason(s)")
    return lines


def _check_device(device):
    if device is None:
        return
    from .models.registry import select_device

    try:
        select_device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise InputError(f"--device {device!r}: {exc} (use cpu, cuda, cuda:1 or mps)") from None


def _cmd_predict(args):
    """``astro-mantis predict``: see the subcommand's help."""
    with _services(args):
        return _predict(args)


def _predict(args):
    import warnings

    from . import table as table_module
    from .models.registry import WeightsError
    from .tableio import OutputError, check_writable

    _check_device(args.device)
    out = Path(args.output)
    args.resumed_ebv = None
    if args.resume:
        if not out.exists():
            raise InputError(f"--resume: {str(out)!r} does not exist (nothing to resume)")
        table = _read_output(out, args.output_format)
        _check_input_matches(args, table)
        _resume_settings(args, table)
    else:
        table = _read_table(args.input, args.format)
    ebv = _parse_ebv(args) if not args.resume or args.resumed_ebv is None else args.resumed_ebv
    args.model = args.model or "mantis-mini"
    args.surveys = args.surveys or DEFAULT_SURVEYS
    args.tta = bool(args.tta)
    args.ra_col, args.dec_col = args.ra_col or "ra", args.dec_col or "dec"
    try:  # every output problem is found before any work starts
        check_writable(out, table, _output_columns(args.prefix),
                       meta=_prototype_meta(args.prefix), format=args.output_format,
                       overwrite=args.overwrite, existing_ok=args.resume)
    except OutputError as exc:
        raise InputError(str(exc)) from None
    if args.dry_run:
        return _dry_run(args, table)
    cache_ctx = (conf.set_temp("cache_dir", str(Path(args.cache_dir).expanduser()))
                 if args.cache_dir else contextlib.nullcontext())
    interrupted = False
    t0 = time.perf_counter()
    with cache_ctx, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", table_module.DustWarning)
        warnings.simplefilter("always", table_module.NotEstimatedWarning)
        try:
            table_module.add_redshift_columns(
                table, coord=args.coord_col, ra=args.ra_col, dec=args.dec_col,
                ra_unit=args.ra_unit, model=args.model, weights=args.weights,
                prefix=args.prefix, surveys=args.surveys, ebv=ebv, batch_size=args.batch_size,
                chunk_size=args.chunk_size, device=args.device, tta=args.tta,
                progress=not args.no_progress, cache=not args.no_cache,
                overwrite=args.overwrite, resume=args.resume, precision=args.precision)
        except (KeyError, ValueError, TypeError, WeightsError, FileNotFoundError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise InputError(_with_options(str(msg))) from None
        except KeyboardInterrupt:
            interrupted = True
    for w in caught:
        if issubclass(w.category, table_module.DustWarning):
            print(f"astro-mantis predict: warning: {w.message}", file=sys.stderr)
    if args.prefix + "flags" not in table.colnames:  # interrupted before anything ran
        return EXIT_INTERRUPTED
    if Path(args.input).is_file():
        table.meta[f"{args.prefix}input"] = _file_sha256(args.input)
    try:
        write_table(table, out, format=args.output_format, overwrite=True)
    except Exception as exc:
        raise InputError(f"cannot write {str(out)!r} ({type(exc).__name__}: {exc}); the "
                         "earlier file, if any, is unchanged") from None
    if args.qp:
        _write_qp(table, args.prefix, Path(args.qp))
    run = table_module.last_run
    flags = np.asarray(table[args.prefix + "flags"])
    n_not = int(np.sum((flags & MantisFlag.NOT_ESTIMATED) != 0))
    print(f"astro-mantis predict: {args.input if not args.resume else out} -> {out}: "
          f"{len(table)} rows, {len(table) - n_not} estimated, {n_not} not "
          f"({time.perf_counter() - t0:.1f} s; {run.n_unique} positions processed, "
          f"fetching {run.fetch_seconds:.1f} s, inference {run.infer_seconds:.1f} s)")
    if run.flags:
        print("  flags: " + ", ".join(f"{k} {v}" for k, v in run.flags.items()))
    if run.failures:
        print("  fetches that failed, by reason:")
        print("\n".join(_failure_lines(run)))
    if args.qp:
        print(f"  PDFs of the estimated rows as a qp ensemble: {args.qp}")
    if interrupted:
        print(f"astro-mantis predict: interrupted; the rows done so far are in {out}: "
              f"complete it with: {_resume_command(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if n_not:
        print(f"  rows flagged NOT_ESTIMATED: {n_not} (FETCH_FAILED ones can be completed "
              f"with: {_resume_command(args)})")
    if len(table) and n_not == len(table):
        print("astro-mantis predict: error: no row could be estimated (see the reasons "
              "above)", file=sys.stderr)
        return EXIT_NONE_ESTIMATED
    return EXIT_OK


def _with_options(message):
    """Turn the library's column suggestion ("Did you mean 'RA'?") into the option to use."""
    import re

    for what, option in (("right ascension", "--ra-col"), ("declination", "--dec-col"),
                         ("coordinate", "--coord-col"), ("dust", "--ebv-col")):
        if message.startswith(f"{what} column"):
            return re.sub(r"Did you mean '([^']*)'\?", rf"Did you mean {option} \1?", message)
    return message


def _prototype_meta(prefix):
    keys = ("model", "sha256", "vers", "nbins", "zmin", "zmax", "dust", "survey", "tta", "ebv",
            "pos", "point", "srv", "input", "prec")
    meta = {f"{prefix}{k}": "x" * 64 for k in keys}
    meta.update({f"{prefix}nbins": 400, f"{prefix}zmin": 0.0, f"{prefix}tta": False})
    return meta


def _write_qp(table, prefix, path):
    """The estimated rows' PDFs as a qp ensemble file (with their row numbers)."""
    from .atomic import atomic_path
    from .pdf import RedshiftPDF

    est = ~np.ma.getmaskarray(np.ma.asarray(table[prefix + "mean"]))
    ens = RedshiftPDF.from_table(table[est], prefix=prefix).to_qp()
    ens.set_ancil({"row": np.flatnonzero(est)})
    try:
        with atomic_path(path) as tmp:
            ens.write_to(str(tmp))
    except Exception as exc:
        raise InputError(f"cannot write the qp file {str(path)!r}: {exc}") from None


def _dry_run(args, table):
    """--dry-run: what the job would fetch, and roughly how long it would take."""
    from .cutouts import Mantis
    from .table import table_coordinates

    try:
        coords, good = table_coordinates(table, coord=args.coord_col, ra=args.ra_col,
                                         dec=args.dec_col, ra_unit=args.ra_unit)
    except (KeyError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise InputError(str(msg)) from None
    if args.resume:
        flags = np.asarray(table[args.prefix + "flags"])
        good &= (flags & MantisFlag.NOT_ESTIMATED) != 0
    cache_ctx = (conf.set_temp("cache_dir", str(Path(args.cache_dir).expanduser()))
                 if args.cache_dir else contextlib.nullcontext())
    with cache_ctx:
        plan = Mantis.plan(coords[good], surveys=args.surveys, cache=not args.no_cache)
    print(f"astro-mantis predict --dry-run: {len(table)} rows, {int(np.sum(good))} to "
          "process; nothing is fetched or written")
    print(plan.report())
    return EXIT_OK


# ------------------------------------------------------------------------- plot
def _cmd_plot(args):
    """``astro-mantis plot``: see the subcommand's help."""
    from .atomic import atomic_path
    from .visualization import plot_redshift_row

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise InputError(f"{str(out)!r} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise InputError(f"the directory of {str(out)!r} does not exist")
    table = _read_output(args.table, args.format) if Path(args.table).exists() else None
    if table is None:
        raise InputError(f"table {args.table!r} does not exist")
    if f"{args.prefix}flags" not in table.colnames:
        raise InputError(f"{args.table!r} has no {args.prefix}flags column: not a redshift "
                         "table (give --prefix if its columns have another prefix)")
    if args.cutout is not None and not Path(args.cutout).is_file():
        raise InputError(f"--cutout {args.cutout!r} does not exist")
    try:
        fig = plot_redshift_row(table, args.row, cutout=args.cutout, prefix=args.prefix,
                                z_spec=args.z_col)
    except (IndexError, KeyError, ValueError) as exc:
        raise InputError(str(exc.args[0] if exc.args else exc)) from None
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=args.dpi)
    except ValueError as exc:
        raise InputError(f"cannot write {str(out)!r}: {exc}") from None
    print(f"astro-mantis plot: row {args.row} of {args.table} -> {out}")
    return EXIT_OK


# ------------------------------------------------------------------------- demo
def _cmd_demo(args):
    """``astro-mantis demo``: see the subcommand's help."""
    from .demo import run_demo

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a directory")
    try:
        result = run_demo(out, n=args.n, progress=not args.no_progress)
    except ValueError as exc:
        raise InputError(f"--n {args.n}: {exc}") from None
    print(result.report())
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
