# Licensed under a 3-clause BSD style license - see LICENSE.rst
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
are reported in the summary, not as an error), 2 when the input is unusable, 130 when
interrupted with Ctrl-C (SIGINT) and 143 when stopped with SIGTERM, which every command
but ``serve`` (it has its own shutdown) handles as it handles Ctrl-C: what was done is
kept, and the command says how to complete it.
`main` takes an argument list, so the command can be driven from Python::

    from astro_mantis.cli import main
    status = main(["cutouts", "targets.ecsv", "--out", "cutouts/"])
"""
import argparse
import contextlib
import signal
import sys

from .._version import __version__
from .cutouts import add_parser as add_cutouts_parser
from .demo import add_parser as add_demo_parser
from .explain import add_parser as add_explain_parser
from .plot import add_parser as add_plot_parser
from .predict import add_parser as add_predict_parser
from .serve import add_parser as add_serve_parser
from .spectro import add_parser as add_spectro_parser
from .train import add_parser as add_train_parser
from .common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, InputError, _signal_handler

__all__ = ["main", "build_parser"]

#: Exit status of a command stopped by SIGTERM (128 + 15), handled as Ctrl-C.
_EXIT_TERMINATED = 128 + signal.SIGTERM


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
               "summary), 2 for unusable input, 3 when 'predict' could estimate no row, 130 "
               "when interrupted (Ctrl-C), 143 when stopped with SIGTERM (handled as Ctrl-C: "
               "the work done is kept).")
    parser.add_argument("--version", action="version", version=f"astro_mantis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for add in (add_cutouts_parser, add_demo_parser, add_predict_parser, add_train_parser,
                add_plot_parser, add_spectro_parser, add_serve_parser, add_explain_parser):
        add(sub)
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
        errors), 3 when ``predict`` could estimate no row, 130 when interrupted
        (KeyboardInterrupt, Ctrl-C), 143 when stopped by SIGTERM; ``--help`` returns 0.

    Notes
    -----
    Called in the main thread, every command but ``serve`` takes SIGTERM (sent by batch
    schedulers, ``timeout`` or ``docker stop``) as a Ctrl-C for its duration: a
    KeyboardInterrupt in the main thread, so that the work done so far is kept and the
    command prints how to complete it. The earlier handler is restored afterwards.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argument errors
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    terminated = []
    with _sigterm_as_interrupt(terminated, args.command != "serve"):
        try:
            status = args.func(args)
        except InputError as exc:
            print(f"astro-mantis {args.command}: error: {exc}", file=sys.stderr)
            status = EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print(f"astro-mantis {args.command}: "
                  f"{'terminated (SIGTERM)' if terminated else 'interrupted'}", file=sys.stderr)
            status = EXIT_INTERRUPTED
    if terminated and status == EXIT_INTERRUPTED:
        status = _EXIT_TERMINATED
    return status


@contextlib.contextmanager
def _sigterm_as_interrupt(received, active=True):
    """Take SIGTERM as Ctrl-C during the block: a KeyboardInterrupt in the main thread
    (``received`` gets the signal number). Nothing is changed outside the main thread,
    where no handler can be set, or without ``active``."""
    def interrupt(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    if not active:
        yield
        return
    with _signal_handler(interrupt, (signal.SIGTERM,)):
        yield
