# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""``astro-mantis plot``: a figure of one row of a redshift table."""
import argparse
from pathlib import Path

from .common import (EXIT_OK, InputError, _positive_int, _read_output)

__all__ = ["add_parser"]


def add_parser(sub):
    """Add the ``plot`` subcommand to the ``astro-mantis`` parser's subparsers."""
    g = sub.add_parser(
        "plot",
        help="a figure of one row of a redshift table: its cutouts above its PDF",
        description=(
            "Draw one row of a table written by 'astro-mantis predict' (or "
            "add_redshift_columns): the nine cutout panels above the redshift PDF with its "
            "68% interval and flags (astro_mantis.visualization.plot_redshift_row). The "
            "cutouts come from --cutout (a file written by 'astro-mantis cutouts'), else "
            "from the services the table records (from the cache when they were cached), "
            "never silently from others: a table made from local tiles has them cut from "
            "the tile directories it records, its surveys without tiles shown 'not "
            "fetched' as the model saw them. The figure says where they came from."),
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


# ------------------------------------------------------------------------- plot
def _cmd_plot(args):
    """``astro-mantis plot``: see the subcommand's help."""
    from ..plotting import figure_formats, save_figure
    from ..visualization import plot_redshift_row

    # everything that can be checked is checked before the cutouts are fetched
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise InputError(f"{str(out)!r} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise InputError(f"the directory of {str(out)!r} does not exist")
    formats = figure_formats()
    if out.suffix[1:].lower() not in formats:
        raise InputError(f"cannot write a figure to {str(out)!r}: its format follows the "
                         f"name's suffix, one of {', '.join('.' + f for f in sorted(formats))}")
    table = _read_output(args.table, args.format) if Path(args.table).exists() else None
    if table is None:
        raise InputError(f"table {args.table!r} does not exist")
    for name in (f"{args.prefix}flags", f"{args.prefix}pdf"):
        if name not in table.colnames:
            raise InputError(f"{args.table!r} has no {name} column: not a redshift table "
                             "(give --prefix if its columns have another prefix)")
    if args.z_col is not None and args.z_col not in table.colnames:
        raise InputError(f"--z-col {args.z_col!r} is not a column of {args.table!r}; it has "
                         f"columns: {', '.join(table.colnames)}")
    if not -len(table) <= args.row < len(table):
        raise InputError(f"row {args.row} does not exist in a table of {len(table)} rows")
    if args.cutout is not None and not Path(args.cutout).is_file():
        raise InputError(f"--cutout {args.cutout!r} does not exist")
    try:
        fig = plot_redshift_row(table, args.row, cutout=args.cutout, prefix=args.prefix,
                                z_spec=args.z_col)
    except (IndexError, KeyError, ValueError) as exc:
        raise InputError(str(exc.args[0] if exc.args else exc)) from None
    try:
        save_figure(fig, out, dpi=args.dpi)  # written whole or not at all
    except ValueError as exc:
        raise InputError(f"cannot write {str(out)!r}: {exc}") from None
    print(f"astro-mantis plot: row {args.row} of {args.table} -> {out}")
    return EXIT_OK
