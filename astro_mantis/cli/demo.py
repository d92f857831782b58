# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""``astro-mantis demo``: the photo-z job on the bundled sample sky, offline."""
import argparse
from pathlib import Path



from .common import (EXIT_OK, InputError, _positive_int)

__all__ = ["add_parser", "DEMO_DIR"]

#: Default output directory of ``astro-mantis demo``.
DEMO_DIR = "astro_mantis_demo"


def add_parser(sub):
    """Add the ``demo`` subcommand to the ``astro-mantis`` parser's subparsers."""
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
            "photoz.fits (the table: ra, dec, ebv_csfd, ebv_planck (dust), z_true, type, "
            "sample_id, note and the columns z_pdf, z_mean, z_median, z_mode, z_std, "
            "z_lo68, z_hi68, z_odds, z_ood (out-of-distribution score), z_flags), "
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


# ------------------------------------------------------------------------- demo
def _cmd_demo(args):
    """``astro-mantis demo``: see the subcommand's help."""
    from ..demo import run_demo

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a directory")
    try:
        result = run_demo(out, n=args.n, progress=not args.no_progress)
    except ValueError as exc:
        raise InputError(f"--n {args.n}: {exc}") from None
    print(result.report())
    return EXIT_OK
