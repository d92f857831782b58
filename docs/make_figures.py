#!/usr/bin/env python
# Licensed under a 3-clause BSD style license - see LICENSE
"""Make the figures of the documentation.

Run from anywhere, with astro_mantis installed::

    python docs/make_figures.py

It starts the loopback survey servers of `astro_mantis.testing` (no internet is
needed or used), fetches the cutouts of one position from them with
``Mantis.get_cutouts``, and draws them with ``MultiSurveyCutout.plot`` into
``docs/_static/cutout_example.png``. The images are synthetic: a galaxy rendered at
the requested position in each survey's units, pixel scale and PSF.
"""
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from astropy.coordinates import SkyCoord  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from astro_mantis import Mantis, conf  # noqa: E402
from astro_mantis.testing import SurveyServer  # noqa: E402

STATIC = Path(__file__).resolve().parent / "_static"
#: The position drawn in the example figure (ICRS degrees; in the COSMOS field).
RA, DEC = 150.14, 2.42


def cutout_example(path=STATIC / "cutout_example.png", dpi=72):
    """Fetch one position from the loopback servers and save its nine-panel figure.

    Parameters
    ----------
    path : path-like
        Output PNG file.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    path : `pathlib.Path`
        The file written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with SurveyServer() as server, server.configure(conf), \
            tempfile.TemporaryDirectory(prefix="astro_mantis_docs_") as cache, \
            conf.set_temp("cache_dir", cache):
        cutout = Mantis.get_cutouts(SkyCoord(RA, DEC, unit="deg"), progress=False)
    if cutout.missing:
        raise RuntimeError(f"the loopback servers did not deliver {cutout.missing}: "
                           f"{cutout.status}")
    fig = Figure(figsize=(13.5, 2.05), layout="constrained")
    cutout.plot(fig=fig)
    fig.savefig(path, dpi=dpi)
    return path


def main():
    path = cutout_example()
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1024:.0f} KiB)")
    if size > 300 * 1024:
        print("warning: the figure is larger than 300 KiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
