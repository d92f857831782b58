#!/usr/bin/env python
# Licensed under a 3-clause BSD style license - see LICENSE
"""Make the figure of the surveys page (``docs/surveys.rst``): footprints and pixel grids.

Run from anywhere, with astro_mantis installed::

    python docs/make_surveys_figures.py

Everything drawn comes from the survey declarations (`astro_mantis.surveys`) and the
fusion recipe's crop sizes (`astro_mantis.fusion.core`); nothing is fetched. Writes
``docs/_static/surveys_grids.png``.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from astro_mantis.surveys import SURVEYS  # noqa: E402

OUT = Path(__file__).resolve().parent / "_static" / "surveys_grids.png"
# centre crops of the published early-fusion recipe (pixels), see docs/models.rst
CROPS = {"galex": 22, "panstarrs": 120, "unwise": 22}
COLOURS = {"galex": "C4", "panstarrs": "C2", "unwise": "C3"}


def main():
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax_sky = fig.add_subplot(1, 2, 1, projection="mollweide")
    ax_pix = fig.add_subplot(1, 2, 2)

    # footprints: PS1 3pi covers dec > -30 (the static test of its declaration);
    # GALEX and unWISE are all-sky in the declarations (GALEX's holes are not drawn)
    ra = np.linspace(-np.pi, np.pi, 361)
    ps1 = SURVEYS["panstarrs"]
    dec_grid = np.linspace(-90, 90, 721)
    covered = np.array([ps1.in_footprint(10.0, d) for d in dec_grid])
    dec_min = np.radians(dec_grid[covered].min())
    ax_sky.fill_between(ra, dec_min, np.pi / 2, color=COLOURS["panstarrs"], alpha=0.35,
                        label="Pan-STARRS1 3π (dec > −30°)")
    ax_sky.fill_between(ra, -np.pi / 2, np.pi / 2, facecolor="none", hatch="..",
                        edgecolor=COLOURS["unwise"], linewidth=0,
                        label="unWISE: all sky")
    ax_sky.fill_between(ra, -np.pi / 2, np.pi / 2, facecolor="none", hatch="//",
                        edgecolor=COLOURS["galex"], linewidth=0, alpha=0.6,
                        label="GALEX: most of the sky, with holes")
    ax_sky.grid(True, alpha=0.4)
    ax_sky.set_xticklabels([])
    ax_sky.set_title("Footprints (equatorial, Mollweide)", fontsize="medium")
    ax_sky.legend(loc="lower center", bbox_to_anchor=(0.5, -0.32), fontsize="small",
                  frameon=False)

    # pixel grids to scale, centred on the galaxy; solid: what is fetched, dashed: the
    # centre crop the published fusion recipe keeps
    for name in ("unwise", "galex", "panstarrs"):
        s = SURVEYS[name]
        scale = s.pixscale.to_value("arcsec")
        half = s.size * scale / 2
        c = COLOURS[name]
        ax_pix.add_patch(Rectangle((-half, -half), 2 * half, 2 * half, fill=False,
                                   edgecolor=c, linewidth=2,
                                   label=f"{name}: {s.size} px × {scale:g}″ = "
                                         f"{2 * half:.0f}″"))
        crop = CROPS[name] * scale / 2
        ax_pix.add_patch(Rectangle((-crop, -crop), 2 * crop, 2 * crop, fill=False,
                                   edgecolor=c, linewidth=1.2, linestyle="--"))
        # a few pixel boundaries near the centre, to show the pixel size
        ticks = np.arange(-4, 5) * scale
        for t in ticks:
            ax_pix.plot([t, t], [-4 * scale, 4 * scale], color=c, linewidth=0.4, alpha=0.6)
            ax_pix.plot([-4 * scale, 4 * scale], [t, t], color=c, linewidth=0.4, alpha=0.6)
    ax_pix.set_aspect("equal")
    lim = SURVEYS["unwise"].size * SURVEYS["unwise"].pixscale.to_value("arcsec") / 2 * 1.05
    ax_pix.set_xlim(-lim, lim)
    ax_pix.set_ylim(-lim, lim)
    ax_pix.set_xlabel("offset east (arcsec)")
    ax_pix.set_ylabel("offset north (arcsec)")
    ax_pix.set_title("Cutouts to scale: fetched (solid), kept by the fusion (dashed)",
                     fontsize="medium")
    ax_pix.legend(loc="upper left", fontsize="small", frameon=True)
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
