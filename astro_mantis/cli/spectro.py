# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The ``astro-mantis match`` and ``astro-mantis build-training-set`` subcommands.

`add_match_parser` and `add_build_training_set_parser` each add one subcommand to the
``astro-mantis`` parser (``astro_mantis.cli.build_parser`` calls them with its
subparsers). Each subcommand's function takes the parsed arguments and returns the
exit status: 0 when the job ran (rows without a match or whose query failed are
counted in the summary, not errors), 2 for unusable input, raised as
`~astro_mantis.cli.common.InputError`.
"""
import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np
from astropy import units as u

from ..tableio import FORMATS, table_format, write_table
from .common import EXIT_INTERRUPTED, EXIT_OK, InputError, _add_cache_args, _read_table
from ..pdf import ZMAX, ZMIN

__all__ = ["add_match_parser", "add_build_training_set_parser", "run_match",
           "run_build_training_set", "parse_angle", "parse_fractions"]


# ------------------------------------------------------------------------- argument types
def parse_angle(text):
    """Parse an angle with a unit, e.g. ``1arcsec`` or ``"1.5 arcsec"`` (argparse ``type``).

    Parameters
    ----------
    text : str

    Returns
    -------
    `~astropy.units.Quantity`

    Raises
    ------
    argparse.ArgumentTypeError
        For text without an angular unit.
    """
    try:
        value = u.Quantity(str(text).strip())
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"cannot read an angle from {text!r}; write e.g. "
                                         "'1arcsec' or '0.5 arcsec'") from None
    if value.unit.physical_type != "angle":
        raise argparse.ArgumentTypeError(f"{text!r} has no angular unit; write e.g. '1arcsec'")
    return value


def parse_fractions(text, count=3):
    """Parse comma-separated numbers, e.g. ``0.8,0.1,0.1`` (argparse ``type``).

    Parameters
    ----------
    text : str
    count : int
        How many numbers are expected.

    Returns
    -------
    tuple of float

    Raises
    ------
    argparse.ArgumentTypeError
        For another count or a value that is not a number.
    """
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got "
                                         f"{text!r}") from None
    if len(values) != count:
        raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got "
                                         f"{text!r}")
    return values


def _column_names(text):
    """One column name, or two separated by a comma (argparse ``type``)."""
    names = [v.strip() for v in str(text).split(",")]
    if len(names) not in (1, 2) or not all(names):
        raise argparse.ArgumentTypeError(f"expected one column name or two separated by a "
                                         f"comma, got {text!r}")
    return names[0] if len(names) == 1 else tuple(names)


# ------------------------------------------------------------------------- match
_MATCH_DESCRIPTION = """\
Add spectroscopic redshifts to every row of TABLE and write the result to OUT.

Each row gets the nearest spectrum within --radius that passes the catalog's quality
cut, in the columns z_spec, z_spec_err, spec_class, spec_id, spec_sep (arcsec),
spec_source and spec_flags (1 no match, 2 ambiguous: another spectrum within the
radius, 4 shared: the spectrum is also another row's nearest, 8 bad coordinate,
16 query failed: not also "no match", as there may be a spectrum). Rows are never
dropped or reordered; unmatched rows keep masked values. SDSS catalogs add
spec_plate, spec_mjd, spec_fiberid, spec_run2d and spec_zwarning. The summary is
printed and stored in the table's meta (spec_match; in a FITS file, the JSON text
of header keyword SPECMTCH). OUT is checked (its directory, its format, the
columns and metadata it must hold) before the match starts. VOTable has no
unsigned integers but bytes: in a VOTable OUT the SDSS spec_id (specObjID, uint64)
is written as its decimal text, and other unsigned columns of the match as the next
larger signed integer.

Catalogs (--catalog):
  sdss        SDSS SkyServer's SpecObj view, queried with SQL through astroquery.sdss
              (positions grouped into sky boxes, at most one query per second).
              Suited to tables of up to some ten thousand rows.
  sdss-spall  The data release's spAll summary file (the lite variant where there is
              one), located with sdss-access: a copy under $SAS_BASE_DIR or in the
              astro_mantis cache is used; otherwise it is downloaded (gigabytes) only
              with --download. Read memory-mapped; the way to match large tables.
  FILE        Your own catalog (any table astropy reads: DESI, GAMA, VIPERS ...);
              name its columns with --z-col, --cat-ra-col, --cat-dec-col.

Quality cut (--quality): an expression over the catalog's columns (names are
case-insensitive), e.g. "zWarning == 0 and class == 'GALAXY'" (the SDSS default;
spAll adds "and specPrimary == 1"), "NQ >= 3" (GAMA), or 'none'."""


def add_match_parser(subparsers):
    """Add the ``match`` subcommand to an ``astro-mantis`` parser.

    Parameters
    ----------
    subparsers : argparse subparsers action
        What `argparse.ArgumentParser.add_subparsers` returned.

    Returns
    -------
    `argparse.ArgumentParser`
        The subcommand's parser; its ``func`` default is `run_match`.
    """
    p = subparsers.add_parser(
        "match",
        help="add spectroscopic redshifts (SDSS or your catalog) to the rows of a table",
        description=_MATCH_DESCRIPTION,
        epilog="Examples:\n"
               "  astro-mantis match targets.ecsv --out matched.ecsv\n"
               "  astro-mantis match big.fits --out big_z.fits --catalog sdss-spall "
               "--download\n"
               "  astro-mantis match targets.ecsv --out gama.ecsv --catalog SpecObj.fits "
               "--z-col Z --cat-ra-col RA --cat-dec-col DEC --quality 'NQ >= 3'\n"
               "Exit status: 0 when the match ran, 2 for unusable input (unreadable table, "
               "missing column, bad radius or quality cut, a download not asked for).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", metavar="TABLE",
                   help="input table, any format astropy.table.Table.read reads")
    p.add_argument("--out", "-o", required=True, metavar="FILE",
                   help="output table (format from its extension, e.g. .ecsv, .fits, .hdf5)")
    p.add_argument("--catalog", default="sdss", metavar="CATALOG",
                   help="sdss, sdss-spall or the path of a catalog file (default: %(default)s)")
    p.add_argument("--radius", type=parse_angle, default=u.Quantity("1 arcsec"),
                   metavar="ANGLE",
                   help="match radius with its unit, e.g. 1arcsec or '0.5 arcsec' "
                        "(default: 1 arcsec)")
    p.add_argument("--ra-col", default="ra", metavar="NAME",
                   help="TABLE's right ascension column, degrees unless it has a unit "
                        "(default: %(default)s)")
    p.add_argument("--dec-col", default="dec", metavar="NAME",
                   help="TABLE's declination column (default: %(default)s)")
    p.add_argument("--format", default=None, metavar="FORMAT",
                   help="format of TABLE for Table.read (default: from the file name)")
    p.add_argument("--quality", default="default", metavar="EXPR",
                   help="quality cut over the catalog's columns, 'default' (the catalog's) "
                        "or 'none' (default: %(default)s)")
    p.add_argument("--z-col", default="z", metavar="NAME",
                   help="catalog file: redshift column (default: %(default)s)")
    p.add_argument("--z-err-col", default=None, metavar="NAME",
                   help="catalog file: redshift error column")
    p.add_argument("--cat-ra-col", default="ra", metavar="NAME",
                   help="catalog file: right ascension column (default: %(default)s)")
    p.add_argument("--cat-dec-col", default="dec", metavar="NAME",
                   help="catalog file: declination column (default: %(default)s)")
    p.add_argument("--class-col", default=None, metavar="NAME",
                   help="catalog file: spectral class column")
    p.add_argument("--id-col", default=None, metavar="NAME",
                   help="catalog file: identifier column (default: the catalog's row number)")
    p.add_argument("--keep-col", action="append", default=[], metavar="NAME",
                   help="catalog file: another column to copy as spec_NAME (repeatable; "
                        "not one whose spec_NAME the match writes itself, such as flags)")
    p.add_argument("--catalog-format", default=None, metavar="FORMAT",
                   help="format of a catalog file for Table.read")
    p.add_argument("--data-release", type=int, default=None, metavar="N",
                   help="SDSS data release (default: astro_mantis.spectro.conf, 17)")
    p.add_argument("--run2d", action="append", default=None, metavar="RUN2D",
                   help="sdss-spall: reduction(s) whose spAll file to read (repeatable; "
                        "default: the release's BOSS/eBOSS reduction, v5_13_2 for DR17); "
                        "with --spall, the reduction of files without a RUN2D column (once "
                        "for all, or once per --spall)")
    p.add_argument("--spall", action="append", default=None, metavar="FILE",
                   help="sdss-spall: read this spAll file instead of locating it "
                        "(repeatable)")
    p.add_argument("--download", action="store_true",
                   help="sdss-spall: allow downloading the spAll file (gigabytes; its size "
                        "is shown first)")
    p.add_argument("--no-cache", action="store_true",
                   help="sdss: do not use astroquery's cache of SkyServer answers")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it exists, and every column an earlier match wrote "
                        "in TABLE (z_spec, spec_*)")
    p.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    p.set_defaults(func=run_match)
    return p


def _format_match_summary(summary):
    lines = [f"  catalog: {summary['source']} (quality: {summary['quality']}; radius "
             f"{summary['radius_arcsec']:g} arcsec)",
             f"  rows: {summary['n_rows']}; matched {summary['n_matched']}, no match "
             f"{summary['n_no_match']}, bad coordinate {summary['n_bad_coordinate']}, query "
             f"failed {summary['n_query_failed']}",
             f"  ambiguous (another spectrum within the radius): {summary['n_ambiguous']}; "
             f"rows sharing a spectrum: {summary['n_shared_rows']}"]
    return "\n".join(lines)


def run_match(args):
    """Run ``astro-mantis match`` (see its ``--help``).

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed arguments of the ``match`` subparser.

    Returns
    -------
    int
        0 when the match ran.

    Raises
    ------
    astro_mantis.cli.common.InputError
        For unusable input (exit status 2).
    """
    from ..exceptions import FetchError
    from ..spectro.exceptions import CatalogFileError, DownloadRequiredError, SkyServerError
    from ..spectro.matching import match_spectroscopic
    from ..tableio import OutputError, check_writable

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputError(f"--out {str(out)!r} exists; pass --overwrite to replace it")
    if out.is_dir():
        raise InputError(f"--out {str(out)!r} is a directory; give a file name")
    table = _read_table(args.table, args.format)
    quality = None if args.quality.strip().lower() == "none" else args.quality
    catalog = args.catalog
    if catalog.lower() not in ("sdss", "sdss-spall") and not Path(catalog).exists():
        raise InputError(f"--catalog {catalog!r} is neither sdss, sdss-spall nor an existing "
                         "file")
    # FITS names astropy knows beyond those of astro_mantis.tableio
    out_format = "fits" if out.name.lower().endswith((".fts", ".fts.gz", ".fit.gz")) else None
    fmt, _ = table_format(out, out_format)
    if fmt is None:
        raise InputError(f"cannot tell the format of --out {str(out)!r} from its name; end it "
                         f"with one of {', '.join(sorted([*FORMATS, '.fts']))}")
    kind = catalog.lower() if catalog.lower() in ("sdss", "sdss-spall") else "table"
    try:  # every output problem is found before the match (minutes of queries) starts
        head = table[:2].copy()
        _drop_summary(head.meta)
        check_writable(out, head, _match_columns(kind, fmt),
                       meta=_output_meta(_prototype_summary(kind), fmt), format=out_format,
                       overwrite=args.overwrite)
    except OutputError as exc:
        raise InputError(str(exc)) from None
    try:
        match_spectroscopic(
            table, catalog=catalog, radius=args.radius, ra=args.ra_col, dec=args.dec_col,
            quality=quality, z_col=args.z_col, z_err_col=args.z_err_col,
            ra_col=args.cat_ra_col, dec_col=args.cat_dec_col, class_col=args.class_col,
            id_col=args.id_col, columns=args.keep_col or None,
            catalog_format=args.catalog_format, data_release=args.data_release,
            run2d=args.run2d, spall=args.spall, download=args.download,
            cache=not args.no_cache, overwrite=args.overwrite,
            progress=False if args.no_progress else None)
    except (KeyError, ValueError, TypeError, FileNotFoundError, SkyServerError,
            DownloadRequiredError, CatalogFileError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise InputError(message) from None
    except FetchError as exc:
        raise InputError(f"the catalog could not be fetched: {exc}") from None
    summary = table.meta["spec_match"]
    written = _for_output(table, fmt)
    try:
        write_table(written, out, format=out_format, overwrite=args.overwrite)
    except Exception as exc:  # astropy raises many kinds for unwritable formats
        raise InputError(f"cannot write {str(out)!r}: {exc}") from None
    print(f"astro-mantis match: {args.table} -> {out} ({summary['seconds']:.1f} s)")
    print(_format_match_summary(summary))
    return EXIT_OK


#: The columns of a match and their dtypes (`check_writable` stand-ins); spec_id is
#: SDSS's specObjID (uint64) for the SDSS catalogs, a row number or the catalog's
#: identifier for a catalog file.
_MATCH_DTYPES = {"z_spec": np.float64, "z_spec_err": np.float64, "spec_class": "U6",
                 "spec_id": np.int64, "spec_sep": np.float64, "spec_source": "S40",
                 "spec_flags": np.int16}
_SDSS_DTYPES = {"spec_id": np.uint64, "spec_plate": np.int64, "spec_mjd": np.int64,
                "spec_fiberid": np.int64, "spec_run2d": "U8", "spec_zwarning": np.int64}


def _match_columns(kind, fmt):
    """Column name -> (per-row shape, dtype) of what a match of ``kind`` adds, as written
    in format ``fmt`` (see `_for_output`)."""
    dtypes = dict(_MATCH_DTYPES, **(_SDSS_DTYPES if kind != "table" else {}))
    return {name: ((), _output_dtype(np.dtype(dtype), fmt)) for name, dtype in dtypes.items()}


def _output_dtype(dtype, fmt):
    """The dtype a match column of ``dtype`` is written with in format ``fmt``: VOTable
    holds no unsigned integers but uint8, so uint64 (the SDSS specObjID, beyond int64
    for plates >= 8192) becomes decimal text, uint16 and uint32 the next larger signed
    integer."""
    if fmt != "votable" or dtype.kind != "u" or dtype.itemsize == 1:
        return dtype
    return np.dtype("U20") if dtype.itemsize == 8 else np.dtype(f"i{2 * dtype.itemsize}")


def _prototype_summary(kind):
    """A summary like the one of a match (for `check_writable`)."""
    return {"catalog": kind, "source": "x" * 40, "radius_arcsec": 1.0, "quality": "x" * 40,
            "n_rows": 0, "n_matched": 0, "data_release": 17, "files": ["x" * 40],
            "columns_added": list(_match_columns(kind, None)), "astro_mantis_version": "x"}


def _drop_summary(meta):
    """Remove the summary of an earlier match (``spec_match``, ``SPECMTCH``) from meta."""
    for key in [k for k in meta if str(k).lower() in ("spec_match", "specmtch")]:
        del meta[key]


def _output_meta(summary, fmt):
    """The meta entry of a match summary in format ``fmt``: ``spec_match``, or, in a FITS
    header, which holds no dictionary, the JSON text of the keyword ``SPECMTCH``."""
    if fmt == "fits":
        return {"SPECMTCH": json.dumps(summary, default=str)}
    return {"spec_match": summary}


def _for_output(table, fmt):
    """The matched table as written in format ``fmt`` (the table itself when nothing
    changes): the summary as `_output_meta` gives it, and in a VOTable the unsigned
    columns the match wrote as `_output_dtype` says."""
    summary = table.meta["spec_match"]
    changed = {}
    for name in summary.get("columns_added", ()):
        col = table[name]
        dtype = _output_dtype(col.dtype, fmt)
        if dtype != col.dtype:
            changed[name] = col
    if fmt != "fits" and not changed:
        return table
    written = table.copy(copy_data=False)
    _drop_summary(written.meta)
    written.meta.update(_output_meta(summary, fmt))
    for name, col in changed.items():
        dtype = _output_dtype(col.dtype, fmt)
        data = np.ma.getdata(col)
        values = data.astype(str) if dtype.kind == "U" else data.astype(dtype)
        written[name] = col.__class__(values, name=name, unit=col.unit, format=col.format,
                                      description=col.description,
                                      **({"mask": col.mask} if hasattr(col, "mask") else {}))
    return written


# ------------------------------------------------------------------------- training sets
_BUILD_DESCRIPTION = """\
Build a training data directory from the rows of TABLE that have a spectroscopic
redshift (column z_spec, as written by 'astro-mantis match'), for
'astro-mantis train --data DIR'.

For each row with a finite redshift in --z-range and a valid position, the GALEX,
Pan-STARRS and unWISE cutouts are fetched through the cutout service (and its cache,
so a rerun fetches nothing) and written, with the redshift, the dust values
(--ebv-col, as for predict; NaN and flagged when unknown) and the row's columns, in
the shard format of astro_mantis.shards: DIR/manifest.json and DIR/train/,
DIR/validation/, DIR/test/ shard_NNNNN.npz files. Rows whose cutouts could not be
fetched are left out (unless --keep-failed); the manifest counts every row left
out, by reason, and records the provenance (input, spectroscopic match, split,
services).

Splits (--split-method):
  random   rows drawn at random with --seed, in the --split fractions;
  healpix  whole HEALPix cells (--nside, nested) per split, so that galaxies in the
           same cell never straddle train and test (neighbours across a cell
           boundary still can; a smaller --nside, larger cells, makes that rarer).

With --overwrite, a training set already in DIR is removed (its manifest first)
before the new one is written: a rebuild that fails leaves none."""


def add_build_training_set_parser(subparsers):
    """Add the ``build-training-set`` subcommand to an ``astro-mantis`` parser.

    Parameters
    ----------
    subparsers : argparse subparsers action
        What `argparse.ArgumentParser.add_subparsers` returned.

    Returns
    -------
    `argparse.ArgumentParser`
        The subcommand's parser; its ``func`` default is `run_build_training_set`.
    """
    from ..surveys import DEFAULT_SURVEYS

    p = subparsers.add_parser(
        "build-training-set",
        help="fetch the cutouts of the rows with a spectroscopic redshift and write "
             "training shards",
        description=_BUILD_DESCRIPTION,
        epilog="Example:\n"
               "  astro-mantis match targets.ecsv --out matched.ecsv\n"
               "  astro-mantis build-training-set matched.ecsv --out train_data/ "
               "--split-method healpix\n"
               "  astro-mantis train --data train_data/ --out runs/mine\n"
               "Exit status: 0 when the training set was written, 2 for unusable input "
               "(unreadable table, missing column, no usable row, an existing training set "
               "without --overwrite), 130 when interrupted (Ctrl-C; 143 for SIGTERM): "
               "the same command builds it again, the cutouts fetched so far from the "
               "cache.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", metavar="TABLE",
                   help="input table with positions and spectroscopic redshifts")
    p.add_argument("--out", "-o", required=True, metavar="DIR",
                   help="output directory (created)")
    p.add_argument("--z-col", default="z_spec", metavar="NAME",
                   help="redshift column (default: %(default)s)")
    p.add_argument("--ra-col", default="ra", metavar="NAME",
                   help="right ascension column, degrees unless it has a unit "
                        "(default: %(default)s)")
    p.add_argument("--dec-col", default="dec", metavar="NAME",
                   help="declination column (default: %(default)s)")
    p.add_argument("--id-col", default=None, metavar="NAME",
                   help="integer column stored as each galaxy's id, as int64: masked ids or "
                        "ids beyond int64 (SDSS specObjIDs of plates >= 8192) are refused "
                        "(default: the row number)")
    p.add_argument("--ebv-col", type=_column_names, default=None, metavar="NAME[,NAME]",
                   help="Milky Way E(B-V) column, or two comma-separated columns (CSFD-like, "
                        "Planck-like), as for 'astro-mantis predict'. Default: the dustmaps "
                        "package if installed with its maps, else NaN and the DUST_UNKNOWN "
                        "flag")
    p.add_argument("--split", type=parse_fractions, default=(0.8, 0.1, 0.1),
                   metavar="TRAIN,VAL,TEST",
                   help="fractions of the three splits (default: 0.8,0.1,0.1)")
    p.add_argument("--split-method", choices=("random", "healpix"), default="random",
                   help="random rows or whole HEALPix cells per split (default: %(default)s)")
    p.add_argument("--nside", type=int, default=32, metavar="N",
                   help="HEALPix nside of --split-method healpix, a power of 2 "
                        "(default: %(default)s, cells of about 1.8 deg)")
    p.add_argument("--seed", type=int, default=0, metavar="SEED",
                   help="seed of the split (default: %(default)s)")
    p.add_argument("--shard-size", type=int, default=256, metavar="N",
                   help="galaxies per shard (default: %(default)s)")
    p.add_argument("--surveys", default=",".join(DEFAULT_SURVEYS), metavar="LIST",
                   help="comma-separated surveys to fetch (default: %(default)s)")
    p.add_argument("--ps1-dtype", choices=("float16", "float32"), default="float16",
                   help="storage of the Pan-STARRS pixels (default: %(default)s)")
    p.add_argument("--z-range", type=lambda t: parse_fractions(t, 2), default=(ZMIN, ZMAX),
                   metavar="LOW,HIGH",
                   help="redshifts kept, LOW <= z < HIGH (default: 0,1.6, the model's bins)")
    p.add_argument("--keep-failed", action="store_true",
                   help="keep rows whose cutout requests failed (NaN planes, flagged)")
    p.add_argument("--format", default=None, metavar="FORMAT",
                   help="format of TABLE for Table.read (default: from the file name)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a training set already in --out")
    _add_cache_args(p)  # --no-cache, --cache-dir, --no-progress, as the other fetching commands
    p.set_defaults(func=run_build_training_set)
    return p


def run_build_training_set(args):
    """Run ``astro-mantis build-training-set`` (see its ``--help``).

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed arguments of the ``build-training-set`` subparser.

    Returns
    -------
    int
        0 when the training set was written.

    Raises
    ------
    astro_mantis.cli.common.InputError
        For unusable input (exit status 2).
    """
    from ..config import conf
    from ..surveys import get_survey
    from ..spectro.training_set import build_training_set

    try:
        surveys = tuple(get_survey(s.strip()).name for s in args.surveys.split(",") if s.strip())
    except ValueError as exc:
        raise InputError(f"--surveys: {exc}") from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a directory")
    table = _read_table(args.table, args.format)
    cache_ctx = (conf.set_temp("cache_dir", str(Path(args.cache_dir).expanduser()))
                 if args.cache_dir else contextlib.nullcontext())
    try:
        with cache_ctx:
            manifest = build_training_set(
                table, out, z_col=args.z_col, ra=args.ra_col, dec=args.dec_col,
                id_col=args.id_col, ebv=args.ebv_col, split=args.split,
                split_method=args.split_method, nside=args.nside, seed=args.seed,
                shard_size=args.shard_size, surveys=surveys, ps1_dtype=args.ps1_dtype,
                z_range=args.z_range, keep_failed=args.keep_failed, cache=not args.no_cache,
                progress=False if args.no_progress else None, overwrite=args.overwrite)
    except (KeyError, ValueError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise InputError(message) from None
    except KeyboardInterrupt:
        # the manifest is written last, once every shard is; with --overwrite the old
        # one goes first: a manifest still there is the earlier, untouched set
        state = (f"the training set already in {out}/ is unchanged"
                 if (out / "manifest.json").is_file() else
                 f"no training set is in {out}/ (its manifest.json is written last)")
        cached = "" if args.no_cache else (", and the cutouts fetched so far come from the "
                                          "cache")
        print(f"astro-mantis build-training-set: interrupted; {state}. Rerun the same "
              f"command to complete it{cached}.", file=sys.stderr)
        return EXIT_INTERRUPTED
    splits = ", ".join(f"{k} {v['n']}" for k, v in manifest["splits"].items())
    left = manifest["source"]["rows_left_out"]
    reasons = ", ".join(f"{k} {v}" for k, v in left.items() if v) or "none"
    print(f"astro-mantis build-training-set: {args.table} -> {out}/ "
          f"({manifest['generation']['seconds']:.1f} s)")
    print(f"  galaxies: {manifest['n']} ({splits}; split {args.split_method})")
    print(f"  rows left out: {sum(left.values())} ({reasons})")
    print(f"  train with: astro-mantis train --data {out} --out RUN_DIR")
    return EXIT_OK


def add_parser(subparsers):
    """Add the ``match`` and ``build-training-set`` subcommands."""
    add_match_parser(subparsers)
    add_build_training_set_parser(subparsers)
