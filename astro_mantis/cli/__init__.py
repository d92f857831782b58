# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The ``astro-mantis`` command: one module per subcommand (``match`` and
``build-training-set`` share `astro_mantis.cli.spectro`), `main` in `astro_mantis.cli.main`.

``astro-mantis COMMAND --help`` lists a command's options; :ref:`cli` describes them.
`main` takes an argument list, so the command can be driven from Python::

    from astro_mantis.cli import main
    status = main(["cutouts", "targets.ecsv", "--out", "cutouts/"])
"""
from .common import (EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_NONE_ESTIMATED, EXIT_OK,
                     InputError, column_degrees, positions_from_columns)
from .cutouts import FetchInterrupted, fetch_and_write, format_summary, summarize
from .main import build_parser, main

__all__ = ["main", "build_parser", "fetch_and_write", "FetchInterrupted", "summarize",
           "format_summary", "column_degrees", "positions_from_columns", "InputError",
           "EXIT_OK", "EXIT_BAD_INPUT", "EXIT_NONE_ESTIMATED", "EXIT_INTERRUPTED"]
