#!/usr/bin/env python
# Licensed under a 3-clause BSD style license - see LICENSE
"""Make the figure of the models page (``docs/models.rst``): early fusion, step by step.

Run from anywhere, with astro_mantis installed::

    python docs/make_models_figures.py

One galaxy of the bundled sample sky (simulated) is fetched with
``Mantis.get_cutouts`` from the loopback services of `astro_mantis.testing` (nothing
goes to the internet), then fused with `astro_mantis.fusion.early_fusion`, exactly as
`astro_mantis.add_redshift_columns` does. Writes ``docs/_static/models_fusion.png``:
top, one band of each survey as fetched, in native pixels, with the centre crop the
recipe keeps; bottom, the nine channels of the network's input.
"""
import io
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from astropy.coordinates import SkyCoord  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from astro_mantis import Mantis, conf  # noqa: E402
from astro_mantis.fusion import CHANNELS, RECIPE, early_fusion  # noqa: E402
from astro_mantis.simulate import SampleSky  # noqa: E402
from astro_mantis.surveys import SURVEYS  # noqa: E402
from astro_mantis.testing import SurveyServer  # noqa: E402

OUT = Path(__file__).resolve().parent / "_static" / "models_fusion.png"
SHOWN = (("galex", "NUV"), ("panstarrs", "r"), ("unwise", "W1"))


def _galaxy(sky):
    """A bright, low-redshift galaxy that every survey covers."""
    cat = sky.catalog
    ok = (cat["dec"] > -25) & (cat["z"] < 0.15) & np.isfinite(cat["mag_nuv"])
    rows = cat[ok]
    return rows[np.argmin(rows["mag_r"])]


def _stretch(image):
    """asinh display stretch between the 1st and 99.7th percentiles."""
    finite = np.where(np.isfinite(image), image, 0.0)
    lo, hi = np.percentile(finite, [1, 99.7])
    return np.arcsinh(np.clip((finite - lo) / max(hi - lo, 1e-12), 0, 1) * 10) / np.arcsinh(10)


def main():
    sky = SampleSky()
    gal = _galaxy(sky)
    coord = SkyCoord([gal["ra"]], [gal["dec"]], unit="deg")
    with SurveyServer(sky=sky) as server, server.configure(conf), \
            tempfile.TemporaryDirectory(prefix="astro_mantis_docs_") as cache, \
            conf.set_temp("cache_dir", cache):
        cutout = Mantis.get_cutouts(coord, progress=False)[0]
    fused = early_fusion([cutout], ebv=[[gal["ebv_csfd"], gal["ebv_planck"]]])
    x = np.asarray(fused.x[0])

    matplotlib.rcParams.update({"font.size": 12})  # read in a page column
    fig = Figure(figsize=(11, 6.2), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.25, 1])
    axes = top.subplots(1, 3)
    for ax, (survey, band) in zip(axes, SHOWN):
        img = cutout.surveys[survey]
        data = img.data[list(img.bands).index(band)]
        n = data.shape[0]
        crop = RECIPE[survey]["crop"]
        ax.imshow(_stretch(data), origin="lower", cmap="gray_r", interpolation="nearest")
        start = int(round((n - crop) / 2)) - 0.5
        ax.add_patch(Rectangle((start, start), crop, crop, fill=False, color="C3", lw=1.5,
                               ls="--"))
        scale = SURVEYS[survey].pixscale
        scale = scale.to_value("arcsec") if hasattr(scale, "to_value") else float(scale)
        resized = "resized to 120" if crop != 120 else "not resized"
        ax.set_title(f"{survey} {band}: {n} px of {scale:g}″\n"
                     f"dashed: {crop} px kept, {resized}", fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    top.suptitle(f"As fetched: a simulated galaxy (z = {gal['z']:.3f}, r = {gal['mag_r']:.1f}),"
                 " each survey at its own pixels and field")
    axes = bottom.subplots(1, 9)
    for ax, (survey, band), plane in zip(axes, CHANNELS, x):
        ax.imshow(plane, origin="lower", cmap="gray_r", vmin=0, vmax=max(plane.max(), 1e-6),
                  interpolation="nearest")
        ax.set_title(band, fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    bottom.suptitle("The network's input: nine normalised channels of 120 × 120 px "
                    f"(+ E(B−V) {gal['ebv_csfd']:.3f}, {gal['ebv_planck']:.3f})")
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=72)
    # grey noise compresses badly: a palette of 96 colours keeps the file small
    with Image.open(buffer) as png:
        png.convert("RGB").quantize(96).save(OUT, optimize=True)
    print(f"wrote {OUT} (galaxy id {gal['id']}, flags {int(fused.flags[0])})")


if __name__ == "__main__":
    main()
