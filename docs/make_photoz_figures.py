"""Make the figures of docs/photoz.rst and docs/index.rst with the demo (loopback services,
bundled sample sky).

Run from the repository root: ``python docs/make_photoz_figures.py``.

Writes to ``docs/_static/``:

``photoz_summary.png``
    The demo table's summary (`astro_mantis.visualization.plot_photoz_summary`, as
    ``astro-mantis demo`` draws it).
``photoz_row.png``
    Row 2 of the demo table, a galaxy in a GALEX coverage hole (the photo-z guide).
``index_row.png``
    Row 23, a luminous red galaxy at z = 0.22 seen by all three surveys (the index).

The figures are drawn again from the demo's table at a size and font made for a page
column (the demo's own PNG files are wide figures for a screen); the rows' cutouts
are fetched once more from the loopback services.
"""
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from astro_mantis import Mantis, conf  # noqa: E402
from astro_mantis.demo import run_demo  # noqa: E402
from astro_mantis.simulate import SampleSky  # noqa: E402
from astro_mantis.table import table_coordinates  # noqa: E402
from astro_mantis.testing import SurveyServer  # noqa: E402
from astro_mantis.visualization import plot_photoz_summary, plot_redshift_row  # noqa: E402

STATIC = Path(__file__).parent / "_static"
ROWS = {"photoz_row.png": 2, "index_row.png": 23}


def _row_figures(table):
    coords, good = table_coordinates(table)
    with SurveyServer(sky=SampleSky()) as server, server.configure(conf), \
            tempfile.TemporaryDirectory(prefix="astro_mantis_docs_") as cache, \
            conf.set_temp("cache_dir", cache), matplotlib.rc_context({"font.size": 12}):
        for name, i in ROWS.items():
            assert good[i], f"row {i} of the demo table has no position"
            cut = Mantis.get_cutouts(coords[i], progress=False)
            fig = Figure(figsize=(11, 5.6), layout="constrained")
            plot_redshift_row(table, i, cutout=cut, z_spec="z_true", fig=fig)
            note = str(table["note"][i])
            fig.suptitle(f"row {i}" + (f": {note}" if note else "")
                         + f"  (true z {table['z_true'][i]:.3f}, {table['type'][i]})")
            fig.savefig(STATIC / name, dpi=72)
            print(f"wrote {STATIC / name}")


def _summary_figure(table):
    estimated = table[~table["z_median"].mask] if hasattr(table["z_median"], "mask") \
        else table
    with matplotlib.rc_context({"font.size": 12}):
        fig = Figure(figsize=(11, 3.9), layout="constrained")
        plot_photoz_summary(estimated, z_spec="z_true", fig=fig)
        fig.suptitle("astro-mantis demo: mantis-mini on the bundled sample sky "
                     "(simulated galaxies)")
        fig.savefig(STATIC / "photoz_summary.png", dpi=72)
    print(f"wrote {STATIC / 'photoz_summary.png'}")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        result = run_demo(Path(tmp) / "demo", progress=False)
        print(result.report())
    _summary_figure(result.table)
    _row_figures(result.table)


if __name__ == "__main__":
    main()
