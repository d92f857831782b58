#!/usr/bin/env python
# Licensed under a 3-clause BSD style license - see LICENSE
"""Make the figures of the mock-population page (``simulate_population.rst``).

Run from anywhere, with astro_mantis and its ``sim`` extra installed::

    python docs/make_population_figures.py

No internet is needed: the filters come from speclite, the templates and the
real SDSS galaxies from the kcorrect package. It writes into ``docs/_static/``:

``population_templates.png``
    The five kcorrect templates and the nine filter curves.
``population_nz.png``
    n(z) of the three components, and of the real SDSS galaxies.
``population_colours.png``
    Colour–redshift medians, mock main sample against held-out SDSS rows.
``population_mags.png``
    Magnitude distributions and g − r against redshift to z = 1.6.
``population_sizes.png``
    Half-light radius against redshift and the size–luminosity relation.

It also prints the colour comparison table shown on the page.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from astro_mantis.simulate import photometry as phot  # noqa: E402
from astro_mantis.simulate import population as pop  # noqa: E402

STATIC = Path(__file__).resolve().parent / "_static"
COLOURS = {"main": "tab:green", "lrg": "tab:red", "elg": "tab:blue", "bkg": "0.5"}
DPI = 80


def save(fig, name):
    path = STATIC / name
    fig.savefig(path, dpi=DPI)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1024:.0f} KB)")
    if size > 200 * 1024:
        raise SystemExit(f"{name} is larger than 200 KB")


def templates_figure():
    wave, flux = phot.load_templates()
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    keep = (wave > 900) & (wave < 60000)
    for k in range(flux.shape[0]):
        f = wave[keep] * flux[k, keep]
        ax.plot(wave[keep], f / f.max(), lw=0.8, label=f"template {k}")
    ax2 = ax.twinx()
    for band in phot.BANDS:
        w, r = phot.filter_curve(band)
        ax2.fill_between(w, 0, r / r.max(), alpha=0.15, color="k")
        ax2.text(phot.effective_wavelength(band), 1.02, band, ha="center", fontsize=8)
    ax2.set_ylim(0, 1.1)
    ax2.set_yticks([])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1e-3, 1.5)
    ax.set_xlabel("wavelength [Å] (rest frame for templates, observed for filters)")
    ax.set_ylabel(r"$\lambda f_\lambda$ (normalised)")
    ax.legend(fontsize=7, loc="lower right")
    save(fig, "population_templates.png")


def nz_figure(gal):
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    bins = np.linspace(0, 1.6, 65)
    for kind in ("main", "lrg", "elg"):
        z = np.asarray(gal["z"][gal["type"] == kind])
        ax.hist(z, bins, histtype="step", color=COLOURS[kind], label=kind, lw=1.5)
    ax.set_xlabel("z")
    ax.set_ylabel("galaxies per bin")
    ax.set_title("mock components (50,000 draws)", fontsize=9)
    ax.legend(fontsize=8)
    ax = fig.add_subplot(1, 2, 2)
    bins = np.linspace(0, 0.4, 41)
    main = np.asarray(gal["z"][gal["type"] == "main"])
    ax.hist(main, bins, histtype="step", density=True, color=COLOURS["main"],
            label="mock main (r < 17.77)", lw=1.5)
    like = pop.draw_population(20000, pop.PopulationConfig(main_k_limit=13.5), rng=3,
                               components="main")
    ax.hist(np.asarray(like["z"]), bins, histtype="step", density=True, color="k", ls="--",
            label="mock main, + Ks < 13.5")
    real = phot.load_sdss_catalog("odd")
    sel = (real["r_petro"] < 17.77) & (real["k_ext"] > 0) & (real["k_ext"] < 13.5)
    ax.hist(np.asarray(real["z"][sel]), bins, density=True, color="0.7",
            label="SDSS odd rows, Ks < 13.5")
    ax.set_xlabel("z")
    ax.set_ylabel("density")
    ax.set_title("main sample against the held-out SDSS rows", fontsize=9)
    ax.legend(fontsize=7)
    save(fig, "population_nz.png")


def colours_figure(table):
    cfg = pop.PopulationConfig(main_k_limit=13.5)
    mock = pop.draw_population(6000, cfg, rng=0, components="main")
    mmag = phot.band_magnitudes(np.asarray(mock["coeffs"]), np.asarray(mock["z"]), 0.0)
    real = phot.sdss_reference_magnitudes("odd")
    sel = (real["r_petro"] < 17.77) & (real["k_ext"] > 0) & (real["k_ext"] < 13.5)
    real = real[sel]
    fig = Figure(figsize=(8, 5.6), layout="constrained")
    for i, (a, b) in enumerate((("g", "r"), ("r", "i"), ("nuv", "r"), ("r", "w1"))):
        ax = fig.add_subplot(2, 2, i + 1)
        ja, jb = phot.BANDS.index(a), phot.BANDS.index(b)
        ax.scatter(mock["z"], mmag[:, ja] - mmag[:, jb], s=1, color=COLOURS["main"],
                   alpha=0.15, rasterized=True, lw=0)
        ax.scatter(real["z"], real[f"mag_{a}"] - real[f"mag_{b}"], s=1, color="k", alpha=0.3,
                   rasterized=True, lw=0)
        rows = table[table["colour"] == f"{a}-{b}"]
        mid = 0.5 * (rows["z_lo"] + rows["z_hi"])
        ax.plot(mid, rows["median_mock"], "o-", color=COLOURS["main"], label="mock median")
        ax.plot(mid, rows["median_real"], "s--", color="k", mfc="none",
                label="SDSS odd rows, median")
        ax.set_xlim(0, 0.3)
        lo, hi = np.percentile(np.asarray(real[f"mag_{a}"] - real[f"mag_{b}"]), [0.5, 99.5])
        ax.set_ylim(lo - 0.2, hi + 0.2)
        ax.set_xlabel("z")
        ax.set_ylabel(f"{a} − {b}")
        if i == 0:
            ax.legend(fontsize=7, loc="upper left")
    save(fig, "population_colours.png")


def mags_figure(gal):
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    bins = np.linspace(12, 26, 57)
    bkg = pop.draw_background(20000, rng=5)
    for kind, tab in (("main", gal[gal["type"] == "main"]), ("lrg", gal[gal["type"] == "lrg"]),
                      ("elg", gal[gal["type"] == "elg"]), ("bkg", bkg)):
        ax.hist(np.asarray(tab["mag_r"]), bins, histtype="step", color=COLOURS[kind],
                label=kind, lw=1.5, density=True)
    ax.set_xlabel("PS1 r (AB, after Milky Way extinction)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax = fig.add_subplot(1, 2, 2)
    for kind in ("main", "lrg", "elg"):
        tab = gal[gal["type"] == kind][:4000]
        ax.scatter(tab["z"], tab["mag_g"] - tab["mag_r"], s=1, color=COLOURS[kind],
                   alpha=0.3, rasterized=True, lw=0, label=kind)
    ax.set_xlabel("z")
    ax.set_ylabel("g − r (PS1)")
    ax.set_ylim(-0.5, 2.5)
    save(fig, "population_mags.png")


def sizes_figure(gal):
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    r_half = (np.asarray(gal["r_half_disk"])
              * pop.composite_half_light_radius(np.asarray(gal["bulge_frac"]), 0.5))
    ax = fig.add_subplot(1, 2, 1)
    for kind in ("main", "lrg", "elg"):
        m = np.asarray(gal["type"] == kind)
        ax.scatter(np.asarray(gal["z"])[m][:4000], r_half[m][:4000], s=1, color=COLOURS[kind],
                   alpha=0.3, rasterized=True, lw=0, label=kind)
    ax.set_yscale("log")
    ax.set_xlabel("z")
    ax.set_ylabel("half-light radius [arcsec]")
    ax.legend(fontsize=8, markerscale=5)
    ax = fig.add_subplot(1, 2, 2)
    from astropy.cosmology import Planck18

    z = np.asarray(gal["z"])
    kpc = r_half * Planck18.angular_diameter_distance(z).to_value("kpc") / 206264.8
    for kind in ("main", "lrg", "elg"):
        m = np.asarray(gal["type"] == kind)
        ax.scatter(np.asarray(gal["abs_mag_r"])[m][:4000], kpc[m][:4000], s=1,
                   color=COLOURS[kind], alpha=0.3, rasterized=True, lw=0)
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(r"$M_r$ (rest frame, at the galaxy's z)")
    ax.set_ylabel("half-light radius [kpc]")
    save(fig, "population_sizes.png")


def nuv_r_modes():
    """The NUV - r tables of the docs: each statistic against both halves, and how far
    apart random halves of the real catalogue fall (evaluation only: nothing is fitted)."""
    odd = pop.colour_mode_comparison(rows="odd")
    even = pop.colour_mode_comparison(rows="even")
    print("z bin      stat    n   mock    odd    even   sigma(odd)  excess odd  excess even")
    for o, e in zip(odd, even):
        print(f"{o['z_lo']:.2f}-{o['z_hi']:.2f} {o['statistic']:6s} {o['n_mode']:5d} "
              f"{o['mock']:6.3f} {o['real']:6.3f} {e['real']:6.3f} {o['sigma']:8.3f} "
              f"{o['excess']:+10.2f}{'' if o['compared'] else ' (not compared)'} "
              f"{e['excess']:+10.2f}")
    # the red fraction at 0.05 < z < 0.10 in random halves of all rows (even and odd)
    from astro_mantis.simulate import photometry as phot

    cfg = pop.PopulationConfig(main_k_limit=13.5)
    cells = []
    for rows in ("even", "odd"):
        real = phot.sdss_reference_magnitudes(rows, ("nuv", "r"))
        z, k = np.asarray(real["z"]), np.asarray(real["k_ext"])
        colour = np.asarray(real["mag_nuv"]) - np.asarray(real["mag_r"])
        keep = ((np.asarray(real["r_petro"]) < cfg.main_r_limit) & (k > 0)
                & (k < cfg.main_k_limit) & (z >= 0.05) & (z < 0.10) & np.isfinite(colour))
        cells.append(colour[keep] >= 4.5)
    red = np.concatenate(cells)
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(4000):
        perm = rng.permutation(red.size)
        diffs.append(red[perm[:cells[0].size]].mean() - red[perm[cells[0].size:]].mean())
    observed = cells[0].mean() - cells[1].mean()
    print(f"red fraction 0.05-0.10: even {cells[0].mean():.3f} odd {cells[1].mean():.3f}, "
          f"difference {observed:+.3f}; random halves: sd {np.std(diffs):.4f}, "
          f"|difference| >= observed in {np.mean(np.abs(diffs) >= abs(observed)):.4f}")


def main():
    STATIC.mkdir(exist_ok=True)
    gal = pop.draw_population(50000, rng=1)
    table = pop.colour_redshift_comparison(rng=0, bootstrap=200)
    even = pop.colour_redshift_comparison(rng=0, rows="even")
    print("colour  z bin      n_real  real    mock    mock-real  (even-odd)  sigma_real")
    for row, ev in zip(table, even):
        print(f"{row['colour']:6s} {row['z_lo']:.2f}-{row['z_hi']:.2f} {row['n_real']:6d} "
              f"{row['median_real']:7.3f} {row['median_mock']:7.3f} {row['diff']:+8.3f} "
              f"{ev['median_real'] - row['median_real']:+10.3f} {row['sigma_real']:9.3f}")
    nuv_r_modes()
    for kind in ("main", "lrg", "elg"):
        t = gal[gal["type"] == kind]
        pct = lambda x: np.percentile(np.asarray(x), [5, 50, 95])  # noqa: E731
        print(kind, "z", np.round(pct(t["z"]), 3), "r", np.round(pct(t["mag_r"]), 2),
              "g-r", np.round(pct(t["mag_g"] - t["mag_r"]), 2),
              "M_r", np.round(pct(t["abs_mag_r"]), 2))
    templates_figure()
    nz_figure(gal)
    colours_figure(table)
    mags_figure(gal)
    sizes_figure(gal)


if __name__ == "__main__":
    main()
