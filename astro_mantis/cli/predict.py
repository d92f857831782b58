# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""``astro-mantis predict``: redshift columns for a table."""
import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np

from ..config import conf
from ..flags import MantisFlag
from ..surveys import DEFAULT_SURVEYS
from ..tableio import write_table

from .common import (_add_cache_args, _add_service_args, _check_device, EXIT_INTERRUPTED,
                     EXIT_NONE_ESTIMATED, EXIT_OK, InputError, _positive_int, _read_output,
                     _non_negative,
                     _read_table, _services, _signal_handler, _survey_list, _tiles)
from ..pdf import NBINS, ZMIN

__all__ = ["add_parser"]


def add_parser(sub):
    """Add the ``predict`` subcommand to the ``astro-mantis`` parser's subparsers."""
    default_surveys = ",".join(DEFAULT_SURVEYS)
    r = sub.add_parser(
        "predict",
        help="add redshift PDF columns to a table",
        description=(
            "Read INPUT (any format astropy.table.Table.read reads: FITS, ECSV, VOTable, "
            "HDF5, Parquet, CSV ...), fetch each row's GALEX, Pan-STARRS and unWISE "
            "cutouts (with the on-disk cache), estimate its redshift PDF with the model "
            "and write OUTPUT: the input table, row for row in the same order, plus the "
            "columns z_pdf (float32, 400 bins on 0 <= z < 1.6), z_mean, z_median, z_mode, "
            "z_std, z_lo68, z_hi68, z_odds (the probability that z_median is within "
            "0.05 (1 + z) of the truth), z_ood (the out-of-distribution score, for a model "
            "with a reference embedding such as mantis-mini) and z_flags "
            "(astro_mantis.MantisFlag bits). Rows that "
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
               "it), 2 for unusable input, 3 when no row could be estimated (the flagged "
               "table is still written), 130 when interrupted with Ctrl-C, 143 with SIGTERM "
               "(the rows done so far are written; the printed --resume command completes "
               "them).",
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
                   help="model of the astro_mantis.models registry (default: mantis-mini, "
                        "trained on simulated galaxies only; for real-sky science use "
                        "mantis-shrimp-v1, the published model: its --weights file, or downloaded "
                        "once)")
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
    r.add_argument("--checkpoint-every", type=_non_negative, default=600.0, metavar="SECONDS",
                   help="write OUTPUT with the rows done so far every SECONDS during the "
                        "run (default: %(default)g; 0: never), so that a run killed without "
                        "warning (SIGKILL, out of memory, a lost machine) can be completed "
                        "with --resume. Each write replaces the last, atomically; they are "
                        "spaced to take at most about a tenth of the run")
    r.add_argument("--qp", default=None, metavar="FILE",
                   help="also write the estimated rows' PDFs as a qp ensemble (HDF5, e.g. "
                        "pdfs.hdf5), with their row numbers as ancillary data 'row'")
    _add_service_args(r)
    _add_cache_args(r)
    r.set_defaults(func=_cmd_predict)


# ------------------------------------------------------------------------- predict
def _output_columns(prefix):
    """The column stand-ins `check_writable` tries before a run (per-row shape, dtype)."""
    from ..table import OUTPUT_KEYS

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
    from ..table import run_settings

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
    from ..table import run_settings

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


#: Options of ``predict`` that OUTPUT records (``--resume`` takes them from it), so the
#: printed resume command leaves them out; `_RESUME_OPTIONS` are the others it carries.
_RECORDED_OPTIONS = ("ra_col", "dec_col", "ra_unit", "coord_col", "ebv_col", "ebv", "model",
                     "surveys", "tta")

#: (attribute, option, default) of every option the printed resume command carries when
#: given: those OUTPUT does not record (the qp file, the cache, local tiles, the weights
#: file, an explicit precision, ...) and those that shape the run's memory and output.
_RESUME_OPTIONS = (("prefix", "--prefix", "z_"), ("weights", "--weights", None),
                   ("device", "--device", None), ("precision", "--precision", "auto"),
                   ("format", "--format", None), ("output_format", "--output-format", None),
                   ("qp", "--qp", None), ("tiles", "--tiles", None),
                   ("cache_dir", "--cache-dir", None), ("chunk_size", "--chunk-size", 256),
                   ("batch_size", "--batch-size", 64),
                   ("checkpoint_every", "--checkpoint-every", 600.0))
_RESUME_FLAGS = (("no_cache", "--no-cache"), ("demo_services", "--demo-services"),
                 ("no_progress", "--no-progress"))


def _resume_command(args):
    """The command that completes this run: every option given that OUTPUT does not
    record (`_RECORDED_OPTIONS` are taken from it)."""
    import shlex

    parts = ["astro-mantis", "predict", str(args.input), "-o", str(args.output), "--resume"]
    for opt, flag, default in _RESUME_OPTIONS:
        value = getattr(args, opt, None)
        if value is not None and value != default:
            parts += [flag, str(value)]
    parts += [flag for opt, flag in _RESUME_FLAGS if getattr(args, opt, False)]
    return shlex.join(parts)


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT and SIGTERM during the block (the final write: atomic and brief, so
    that an interrupt cannot throw away every estimate); yields the list of the signals
    that came meanwhile, which the caller then acts on. Outside the main thread, where
    no handler can be set, nothing is held."""
    import signal

    came = []
    with _signal_handler(lambda signum, frame: came.append(signum),
                         (signal.SIGINT, signal.SIGTERM)):
        yield came


class _CheckpointWriter:
    """The ``checkpoint`` of ``predict``: writes OUTPUT with the rows done so far.

    The write is atomic and SIGINT/SIGTERM wait for it (then act as they would have);
    a failed write (a full disk) is reported once and the run goes on, its rows safe in
    memory until the final write."""

    def __init__(self, args, out, input_sha256):
        self.args, self.out, self.input_sha256 = args, out, input_sha256
        self.n_written, self.failed = 0, False

    def __call__(self, table):
        import signal

        with _signals_held() as came:
            if self.input_sha256:
                table.meta[f"{self.args.prefix}input"] = self.input_sha256
            try:
                write_table(table, self.out, format=self.args.output_format, overwrite=True)
                self.n_written += 1
            except Exception as exc:
                if not self.failed:
                    print(f"astro-mantis predict: warning: cannot write the checkpoint "
                          f"{str(self.out)!r} ({type(exc).__name__}: {exc}); the run goes "
                          "on", file=sys.stderr)
                self.failed = True
        if came:  # acted on now, as if it had come after the write
            signal.raise_signal(came[0])


def _failure_lines(run, limit=5):
    lines = [f"  {reason}: {count} position(s)" for reason, count in
             run.failures.most_common(limit)]
    if len(run.failures) > limit:
        lines.append(f"  ... and {len(run.failures) - limit} other reason(s)")
    return lines


def _cmd_predict(args):
    """``astro-mantis predict``: see the subcommand's help."""
    with _services(args):
        return _predict(args)


def _predict(args):
    import warnings

    import astro_mantis.table as table_module
    from ..models.registry import WeightsError
    from ..tableio import OutputError, check_writable

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
    args.source = _tiles(args)
    if args.dry_run:
        if args.source is not None:
            print(f"astro-mantis predict --dry-run: {len(table)} rows; cutouts cut from "
                  f"{args.source!r}, no request is sent")
            return EXIT_OK
        return _dry_run(args, table)
    cache_ctx = (conf.set_temp("cache_dir", str(Path(args.cache_dir).expanduser()))
                 if args.cache_dir else contextlib.nullcontext())
    interrupted = False
    t0 = time.perf_counter()
    input_sha256 = _file_sha256(args.input) if Path(args.input).is_file() else None
    checkpoints = _CheckpointWriter(args, out, input_sha256)
    with cache_ctx, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", table_module.DustWarning)
        warnings.simplefilter("always", table_module.NotEstimatedWarning)
        run = table_module.RunStats()
        try:
            table_module.add_redshift_columns(
                table, coord=args.coord_col, ra=args.ra_col, dec=args.dec_col,
                ra_unit=args.ra_unit, model=args.model, weights=args.weights,
                prefix=args.prefix, surveys=args.surveys, ebv=ebv, batch_size=args.batch_size,
                chunk_size=args.chunk_size, device=args.device, tta=args.tta,
                progress=False if args.no_progress else None, cache=not args.no_cache,
                overwrite=args.overwrite, resume=args.resume, precision=args.precision,
                source=args.source, report=run,
                checkpoint=checkpoints if args.checkpoint_every > 0 else None,
                checkpoint_interval=args.checkpoint_every)
        except (KeyError, ValueError, TypeError, WeightsError, FileNotFoundError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise InputError(_with_options(str(msg))) from None
        except KeyboardInterrupt:
            interrupted = True
        except Exception:  # a crash: say what the last checkpoint kept, then fail loudly
            if checkpoints.n_written:
                print(f"astro-mantis predict: the run failed; the rows done by its last "
                      f"checkpoint are in {out}: complete it with: {_resume_command(args)}",
                      file=sys.stderr)
            raise
    for w in caught:
        if issubclass(w.category, table_module.DustWarning):
            print(f"astro-mantis predict: warning: {w.message}", file=sys.stderr)
    if args.prefix + "flags" not in table.colnames:  # interrupted before anything ran
        print("astro-mantis predict: interrupted before any row was estimated (while "
              "loading the model or the dust values); nothing was written"
              + (f" and {str(out)!r} is unchanged" if out.exists() else "")
              + ". Run the same command again.", file=sys.stderr)
        return EXIT_INTERRUPTED
    # the estimates are in memory only until this write: SIGINT/SIGTERM wait for it
    with _signals_held() as came:
        if input_sha256:
            table.meta[f"{args.prefix}input"] = input_sha256
        try:
            write_table(table, out, format=args.output_format, overwrite=True)
        except Exception as exc:
            raise InputError(f"cannot write {str(out)!r} ({type(exc).__name__}: {exc}); the "
                             "earlier file, if any, is unchanged") from None
        if args.qp:
            _write_qp(table, args.prefix, Path(args.qp))
    # a signal held during the write is acted on now: the command stops as interrupted
    status = 128 + int(came[0]) if came else EXIT_INTERRUPTED
    flags = np.asarray(table[args.prefix + "flags"])
    n_not = int(np.sum((flags & MantisFlag.NOT_ESTIMATED) != 0))
    processed = (f"{run.n_processed} of {run.n_unique}" if run.n_processed < run.n_unique
                 else f"{run.n_processed}")
    print(f"astro-mantis predict: {args.input if not args.resume else out} -> {out}: "
          f"{len(table)} rows, {len(table) - n_not} estimated, {n_not} not "
          f"({time.perf_counter() - t0:.1f} s; {processed} positions processed, "
          f"fetching {run.fetch_seconds:.1f} s, inference {run.infer_seconds:.1f} s)")
    if run.flags:
        print("  flags: " + ", ".join(f"{k} {v}" for k, v in run.flags.items()))
    if run.failures:
        print("  fetches that failed, by reason:")
        print("\n".join(_failure_lines(run)))
    if args.qp:
        print(f"  PDFs of the estimated rows as a qp ensemble: {args.qp}")
    if interrupted:
        print(f"astro-mantis predict: interrupted; the rows done so far are in {out}"
              + (f" (and {args.qp})" if args.qp else "")
              + f": complete it with: {_resume_command(args)}", file=sys.stderr)
        return status
    if n_not:
        print(f"  rows flagged NOT_ESTIMATED: {n_not} (FETCH_FAILED ones can be completed "
              f"with: {_resume_command(args)})")
    if came:
        print(f"astro-mantis predict: interrupted during the final write, which was "
              f"finished first: {out} holds the whole run", file=sys.stderr)
        return status
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
    meta.update({f"{prefix}nbins": NBINS, f"{prefix}zmin": ZMIN, f"{prefix}tta": False})
    return meta


def _write_qp(table, prefix, path):
    """The estimated rows' PDFs as a qp ensemble file (with their row numbers)."""
    from ..atomic import atomic_path
    from ..pdf import RedshiftPDF

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
    from ..cutouts import Mantis
    from ..table import table_coordinates

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
