#!/usr/bin/env python
# Licensed under a 3-clause BSD style license - see LICENSE
"""Make the domain-randomisation figure of the mock-sky guide (``docs/simulate.rst``).

Run from anywhere, with astro_mantis and its simulation extras installed::

    python docs/make_randomise_figure.py

Writes ``docs/_static/simulate_randomise.png``: one bright mock galaxy in
Pan-STARRS r and unWISE W1 as the nominal sky renders it, under three training
draws (`astro_mantis.simulate.training_randomisation`: three sky seeds, so three
fields' conditions and per-galaxy perturbations) and under the shifted simulator
(`astro_mantis.simulate.shifted_randomisation`). Nothing is downloaded.
"""
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from astropy.visualization import AsinhStretch, ImageNormalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from astro_mantis.simulate import (  # noqa: E402
    MockSky,
    MockSkyConfig,
    shifted_randomisation,
    training_randomisation,
)
from astro_mantis.simulate.randomise import perturb_catalog  # noqa: E402

STATIC = Path(__file__).resolve().parent / "_static"
SEED = 2026
CROP = {"panstarrs": 40, "unwise": 0}  # pixels cut from each side (PS1: 170 -> 90)


def _galaxy(sky):
    """Index of a bright, resolved catalog galaxy."""
    cat = sky.catalog
    size = np.maximum(np.asarray(cat["r_half_disk"]), np.asarray(cat["r_half_bulge"]))
    score = np.where(size > 1.5, np.asarray(cat["mag_r"]), np.inf)
    return int(np.argmin(score))


def _versions(base, catalog):
    """(label, sky) for the nominal sky, three training draws and the shifted one."""
    out = [("nominal", MockSky(base, catalog=catalog, seed=SEED))]
    for k in range(3):
        rand = training_randomisation()
        cat = perturb_catalog(catalog.copy(), rand, np.random.default_rng(k))
        out.append((f"training draw {k + 1}",
                    MockSky(replace(base, randomisation=rand), catalog=cat, seed=SEED + 1 + k)))
    rand = shifted_randomisation()
    cat = perturb_catalog(catalog.copy(), rand, np.random.default_rng(9))
    out.append(("shifted", MockSky(replace(base, randomisation=rand), catalog=cat, seed=SEED)))
    return out


def _caption(sky, pos, index):
    """Conditions of the galaxy's field and its profile, for the panel's label."""
    cond = sky.field_conditions(pos)
    row = sky.catalog[index]
    profile = ("bulge+disk" if 0 < row["bulge_frac"] < 1 else
               "de Vauc." if row["bulge_frac"] >= 1 else "exponential")
    return (f"r FWHM {cond['psf_fwhm']['r']:.2f}″ ({cond['psf_model']['panstarrs'][:4]}.)\n"
            f"noise ×{cond['noise_scale']:.2f}, {profile}")


def main(path=STATIC / "simulate_randomise.png", dpi=70):
    """Render the five versions of one galaxy and write the figure."""
    base = MockSkyConfig(n_galaxies=200, ra_range=(185.0, 186.0), dec_range=(25.0, 26.0),
                         imaging={"galex_hole_fraction": 0.0, "ps1_nan_fraction": 0.0})
    nominal = MockSky(base, seed=SEED)
    index = _galaxy(nominal)
    row = nominal.catalog[index]
    pos = (float(row["ra"]), float(row["dec"]))
    versions = _versions(base, nominal.catalog)
    fig = Figure(figsize=(2.0 * len(versions), 4.6))
    axes = fig.subplots(2, len(versions))
    norms = {}
    for col, (label, sky) in enumerate(versions):
        arrays = sky.render_arrays(pos, ("panstarrs", "unwise"))
        for r, (survey, plane, name) in enumerate((("panstarrs", 1, "PS1 r"),
                                                   ("unwise", 0, "W1"))):
            image = arrays[survey][0][plane]
            c = CROP[survey]
            image = image[c:image.shape[0] - c, c:image.shape[1] - c]
            if survey not in norms:  # the nominal image sets each row's scale
                norms[survey] = ImageNormalize(vmin=-2 * np.nanstd(image[:10]),
                                               vmax=np.nanmax(image),
                                               stretch=AsinhStretch(0.05))
            ax = axes[r, col]
            ax.imshow(image, origin="lower", cmap="gray_r", norm=norms[survey])
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name)
            if r == 0:
                ax.set_title(label, fontsize=9)
        axes[1, col].set_xlabel(_caption(sky, pos, index), fontsize=7)
    fig.suptitle("One mock galaxy under domain randomisation (simulated data)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
