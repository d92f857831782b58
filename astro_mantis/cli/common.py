# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""What the ``astro-mantis`` subcommands share: exit statuses, errors, argument types,
the fetching options, table input."""
import argparse
import contextlib
import sys
from pathlib import Path

from astropy.table import Table

from ..config import conf
from ..surveys import get_survey

__all__ = ["EXIT_OK", "EXIT_BAD_INPUT", "EXIT_NONE_ESTIMATED", "EXIT_INTERRUPTED",
           "InputError", "column_degrees", "positions_from_columns"]

#: Exit status of a job that ran (failures of single rows are in the summary).
EXIT_OK = 0


#: Exit status for unusable input: unreadable table, missing column, unknown survey,
#: an output that cannot be written.
EXIT_BAD_INPUT = 2


#: Exit status of a ``predict`` run that could estimate no row (the reasons are printed).
EXIT_NONE_ESTIMATED = 3


#: Exit status of an interrupted job (Ctrl-C).
EXIT_INTERRUPTED = 130


class InputError(Exception):
    """Unusable command-line input; the message is shown to the user (exit status 2)."""


# ------------------------------------------------------------------------- parser
@contextlib.contextmanager
def _signal_handler(handler, signals):
    """Handle ``signals`` with ``handler`` during the block, the earlier handlers restored
    afterwards. Outside the main thread, where Python sets no handler, nothing changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)


def _survey_list(text):
    """Parse and check a comma-separated survey list (argparse ``type``)."""
    names = [s.strip().lower() for s in str(text).split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one survey, e.g. galex,panstarrs,unwise")
    try:
        return tuple(get_survey(n).name for n in names)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text):
    """Parse an integer of 0 or more (argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer of 0 or more, got {text!r}") \
            from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer of 0 or more, got {value}")
    return value


def _non_negative(text):
    """Parse a finite number of 0 or more (argparse ``type``), e.g. seconds or a rate."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, got {text!r}") \
            from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of 0 or more, got {text!r}")
    return value


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


def _tiles(args):
    """The `~astro_mantis.sources.LocalTiles` of ``--tiles`` (None without it)."""
    text = getattr(args, "tiles", None)
    if not text:
        return None
    if getattr(args, "demo_services", False):
        raise InputError("give --tiles or --demo-services, not both")
    from ..sources import LocalTiles

    try:
        return LocalTiles.from_cli(text)
    except (ValueError, FileNotFoundError) as exc:
        raise InputError(f"--tiles: {exc}") from None


def _add_service_args(parser):
    """--tiles, --demo-services and --dry-run, shared by the commands that fetch cutouts."""
    parser.add_argument("--tiles", default=None, metavar="SURVEY=DIR[,SURVEY=DIR...]",
                        help="cut the cutouts from survey images on local disks instead of "
                             "fetching them, e.g. panstarrs=/data/ps1,galex=/data/galex,"
                             "unwise=/data/unwise (FITS tiles with a celestial WCS; see the "
                             "local tiles guide)")
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
    from ..simulate import SampleSky
    from ..testing import SurveyServer

    with SurveyServer(sky=SampleSky()) as server, server.configure(conf):
        print(f"astro-mantis {args.command}: --demo-services: loopback survey services on the "
              f"bundled sample sky (simulated galaxies) at {server.panstarrs_url} and "
              f"{server.legacysurvey_url}", file=sys.stderr)
        yield server


# ------------------------------------------------------------------------- table input
def _read_output(path, format=None):
    from ..tableio import read_table

    try:
        return read_table(path, format=format)
    except Exception as exc:
        raise InputError(f"cannot read {str(path)!r} to resume from it: {exc}") from None


def _read_table(path, format=None):
    """Read an input table, turning every failure into an `InputError`."""
    from ..tableio import read_table, table_format

    path = Path(path)
    if not path.exists():
        raise InputError(f"table {str(path)!r} does not exist")
    fmt, kwargs = table_format(path, format)
    try:
        if fmt == "hdf5":  # the file's table, wherever it is stored
            return Table.read(path, format="hdf5", path=_hdf5_table_path(path))
        if fmt == "votable" or (fmt == "ascii.ecsv" and "delimiter" not in kwargs):
            return read_table(path, format=format)  # VOTable INFO meta; zero-row ECSV
        return Table.read(path, format=format)
    except InputError:
        raise
    except Exception as exc:  # astropy raises many kinds for unreadable tables
        hint = "" if format else " (give its format with --format, e.g. ascii.csv or fits)"
        raise InputError(f"cannot read table {str(path)!r}: {exc}{hint}") from None


def _hdf5_table_path(path):
    """The path of the table in an HDF5 file: its only table, or ``data`` (where
    ``astro-mantis`` writes its tables) among several; an `InputError` naming them
    when the file holds several tables and none at ``data``."""
    import h5py

    tables = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.dtype.names:
            tables.append(name)

    with h5py.File(path, "r") as fh:
        fh.visititems(visit)
    if len(tables) == 1:
        return tables[0]
    if "data" in tables:
        return "data"
    if not tables:
        raise InputError(f"cannot read table {str(path)!r}: the HDF5 file holds no table")
    raise InputError(f"cannot read table {str(path)!r}: the HDF5 file holds {len(tables)} "
                     f"tables ({', '.join(tables)}); give a file with one table, or with "
                     "the table to read at path 'data'")


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
    from ..positions import column_degrees as _column_degrees

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
    from ..positions import check_degrees

    pos = check_degrees(ra, dec)
    return pos.coord, pos.good


def _check_device(device):
    if device is None:
        return
    from ..models.registry import select_device

    try:
        select_device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise InputError(f"--device {device!r}: {exc} (use cpu, cuda, cuda:1 or mps)") from None
