#!/usr/bin/env python
# Licensed under a 3-clause BSD style license - see LICENSE
"""Make the figures of the mock-sky guide (``docs/simulate.rst``).

Run from anywhere, with astro_mantis and its simulation extras (GalSim,
photutils) installed::

    python docs/make_simulate_figures.py

Nothing is downloaded: the mock sky is rendered locally and served by the
loopback servers of `astro_mantis.testing`. Three PNG files are written to
``docs/_static/``:

``simulate_cutouts.png``
    Three mock galaxies (a main-sample galaxy, a luminous red galaxy and an
    emission-line galaxy) in the nine bands, fetched with
    ``Mantis.get_cutouts`` from a loopback server that serves a `MockSky`.
``simulate_field.png``
    A wide Pan-STARRS r and unWISE W1 view around a catalog galaxy, with the
    neighbours and stars of that patch of sky marked.
``simulate_checks.png``
    The evidence of the tests, measured again on more sources: aperture
    photometry against catalog magnitudes, the fitted PSF FWHM against the
    configured one, and the measured 5σ depth against the documented one,
    per band.
"""
import math
import sys
import tempfile
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from astropy.coordinates import SkyCoord  # noqa: E402
from astropy.table import Table  # noqa: E402
from astropy.visualization import simple_norm  # noqa: E402
from astropy.wcs import WCS  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from astro_mantis import Mantis, conf  # noqa: E402
from astro_mantis.simulate import ImagingConfig, MockSky, MockSkyConfig  # noqa: E402
from astro_mantis.simulate.render import (  # noqa: E402
    BANDS,
    NATIVE_OF_BAND,
    SURVEY_OF_BAND,
)
from astro_mantis.simulate.service_format import ab_zeropoint, native_flux  # noqa: E402
from astro_mantis.testing import SurveyServer  # noqa: E402

STATIC = Path(__file__).resolve().parent / "_static"
PIXSCALE = {"galex": 1.5, "panstarrs": 0.25, "unwise": 2.75}
LABEL = {"nuv": "NUV", "fuv": "FUV", "w1": "W1", "w2": "W2"}
SEED = 2025


def _quiet(**kw):
    settings = dict(star_density=0, neighbour_density=0, galex_hole_fraction=0,
                    ps1_nan_fraction=0)
    settings.update(kw)
    return ImagingConfig(**settings)


def _plane(hdul):
    data = hdul[0].data
    return data if data.ndim == 2 else data[0]


def cutouts_figure(sky, path=STATIC / "simulate_cutouts.png", dpi=70):
    """Nine-band cutouts of three mock galaxies, fetched over loopback.

    Parameters
    ----------
    sky : `~astro_mantis.simulate.MockSky`
        The sky to serve.
    path : path-like
        Output PNG.
    dpi : int
        Resolution.

    Returns
    -------
    `pathlib.Path`
    """
    cat = sky.catalog
    north = cat[(cat["dec"] > 0)]
    picks = []
    for kind, mag_max in (("main", 16.5), ("lrg", 19.5), ("elg", 21.5)):
        rows = north[(north["type"] == kind) & (north["mag_r"] < mag_max)]
        if not len(rows):
            rows = north[north["type"] == kind]
        picks.append(rows[np.argmin(rows["mag_r"])] if len(rows) else north[len(picks)])
    coords = SkyCoord([r["ra"] for r in picks], [r["dec"] for r in picks], unit="deg")
    with SurveyServer(sky=sky) as server, server.configure(conf), \
            tempfile.TemporaryDirectory(prefix="astro_mantis_docs_") as cache, \
            conf.set_temp("cache_dir", cache):
        cuts = Mantis.get_cutouts(coords, progress=False)
    fig = Figure(figsize=(13.5, 4.9), layout="constrained")
    axes = fig.subplots(3, 9)
    for row, (cut, gal) in enumerate(zip(cuts, picks)):
        panels = []
        for name in ("galex", "panstarrs", "unwise"):
            img = cut.surveys.get(name)
            if img is None:
                panels += [(name, "-", None)] * {"galex": 2, "panstarrs": 5, "unwise": 2}[name]
            else:
                panels += [(name, b, img.data[i]) for i, b in enumerate(img.bands)]
        for col, (ax, (name, band, data)) in enumerate(zip(axes[row], panels)):
            ax.set_xticks([])
            ax.set_yticks([])
            if data is None:
                ax.text(0.5, 0.5, f"no {name}", ha="center", va="center",
                        transform=ax.transAxes)
                continue
            finite = np.where(np.isfinite(data), data, 0.0)
            n = finite.shape[0]
            centre = finite[n // 4:3 * n // 4, n // 4:3 * n // 4]  # the galaxy sets the stretch
            norm = simple_norm(finite, "asinh", vmin=np.percentile(finite, 1),
                               vmax=max(centre.max(), np.percentile(finite, 99)))
            ax.imshow(finite, origin="lower", cmap="gray", norm=norm)
            if row == 0:
                ax.set_title(f"{name} {band}", fontsize=9)
            if col == 0:
                ax.set_ylabel(f"{gal['type']} z={gal['z']:.2f}\nr={gal['mag_r']:.1f}",
                              fontsize=9)
    _save_small(fig, path, dpi)
    return Path(path)


def field_figure(sky, path=STATIC / "simulate_field.png", dpi=70):
    """A wide PS1 r and unWISE W1 view with the sky's sources marked.

    Parameters
    ----------
    sky : `~astro_mantis.simulate.MockSky`
    path : path-like
    dpi : int

    Returns
    -------
    `pathlib.Path`
    """
    cat = sky.catalog
    row = cat[(cat["dec"] > 0) & (cat["mag_r"] < 18)][0]
    pos = (float(row["ra"]), float(row["dec"]))
    width = 150.0  # arcsec
    fig = Figure(figsize=(9.0, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    sources = sky.sources_near(pos, width / 3600.0)
    for ax, (survey, band, scale) in zip(axes, (("panstarrs", "r", 0.25),
                                                ("unwise", None, 2.75))):
        size = int(width / scale)
        hdu = sky.render(survey, pos, size=size, band=band)[0]
        data = _plane([hdu])
        wcs = WCS(hdu.header, naxis=2)
        finite = np.where(np.isfinite(data), data, 0.0)
        ax.imshow(finite, origin="lower", cmap="gray_r",
                  norm=simple_norm(finite, "asinh", percent=99.5))
        for kind, marker, colour in (("catalog", "o", "tab:red"), ("galaxy", "s", "tab:blue"),
                                     ("star", "*", "tab:orange")):
            sel = sources[sources["kind"] == kind]
            mag = sel["mag_r" if survey == "panstarrs" else "mag_w1"]
            depth = sky.config.imaging.depth["r" if survey == "panstarrs" else "w1"]
            sel = sel[mag < depth]
            x, y = wcs.world_to_pixel_values(sel["ra"], sel["dec"])
            inside = (x > 0) & (y > 0) & (x < size - 1) & (y < size - 1)
            ax.scatter(x[inside], y[inside], s=90 if kind == "catalog" else 40,
                       facecolors="none", edgecolors=colour, marker=marker, linewidths=1.0,
                       label={"catalog": "catalog galaxy", "galaxy": "neighbour",
                              "star": "star"}[kind] + " (above 5σ)")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{'Pan-STARRS r' if survey == 'panstarrs' else 'unWISE W1'}: "
                     f"{width:.0f}″ × {width:.0f}″, {scale}″ pixels", fontsize=10)
    axes[0].legend(loc="lower left", fontsize=8, framealpha=0.8)
    _save_small(fig, path, dpi)
    return Path(path)


def measure_photometry():
    """Aperture magnitude minus catalog magnitude, per band (noiseless, isolated galaxy)."""
    from photutils.aperture import CircularAperture, aperture_photometry

    ra, dec = 185.0, 25.0
    mags = dict(zip(BANDS, (19.5, 20.2, 18.3, 17.6, 17.3, 17.1, 17.0, 17.4, 17.9)))
    cat = Table({"ra": [ra], "dec": [dec], "r_half_disk": [1.2], "r_half_bulge": [0.5],
                 "bulge_frac": [0.4], "q": [0.5], "pa": [40.0]})
    for band in BANDS:
        cat[f"mag_{band}"] = [mags[band]]
    sky = MockSky(MockSkyConfig(imaging=_quiet(noise=False)), catalog=cat)
    out = {}
    for band in BANDS:
        survey, native = SURVEY_OF_BAND[band], NATIVE_OF_BAND[band]
        size = {"galex": 64, "panstarrs": 240, "unwise": 48}[survey]
        hdu = sky.render(survey, (ra + 3e-4, dec - 2e-4), size=size, band=native)[0]
        x, y = WCS(hdu.header, naxis=2).world_to_pixel_values(ra, dec)
        total = aperture_photometry(_plane([hdu]), CircularAperture((x, y), 0.45 * size))
        zp = ab_zeropoint(survey, native, hdu.header.get("EXPTIME"))
        out[band] = zp - 2.5 * math.log10(total["aperture_sum"][0]) - mags[band]
    return out


def measure_fwhm():
    """Fitted FWHM of a star over the configured FWHM, per band."""
    from photutils.psf import fit_fwhm

    ra, dec = 185.0, 25.0
    cat = Table({"ra": [ra], "dec": [dec]})
    for band in BANDS:
        cat[f"mag_{band}"] = [16.0]
    imaging = _quiet(noise=False)
    sky = MockSky(MockSkyConfig(imaging=imaging), catalog=cat)
    out = {}
    for band in BANDS:
        survey, native = SURVEY_OF_BAND[band], NATIVE_OF_BAND[band]
        hdu = sky.render(survey, (ra, dec), size=64, band=native)[0]
        x, y = WCS(hdu.header, naxis=2).world_to_pixel_values(ra, dec)
        box = max(int(3 * imaging.psf_fwhm[band] / PIXSCALE[survey]) | 1, 7)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fwhm = fit_fwhm(_plane([hdu]), xypos=[(x, y)], fit_shape=box)[0]
        out[band] = fwhm * PIXSCALE[survey] / imaging.psf_fwhm[band]
    return out


def measure_depth(repeats=16):
    """Measured minus documented 5σ depth, per band (as in the tests, more samples)."""
    ra, dec = 185.0, 25.0
    imaging = _quiet(ps1_exptime_scatter=0.0)
    out = {}
    for band in BANDS:
        survey, native = SURVEY_OF_BAND[band], NATIVE_OF_BAND[band]
        fwhm = imaging.psf_fwhm[band] / PIXSCALE[survey]
        step, half, n = int(math.ceil(6 * fwhm)), int(math.ceil(2 * fwhm)), 9
        size = step * (n + 1)
        empty = MockSky(MockSkyConfig(imaging=imaging), catalog=Table({"ra": [0.0],
                                                                      "dec": [0.0]}))
        header = empty.render(survey, (ra, dec), size=size, band=native, noise=False)[0].header
        grid = np.arange(1, n + 1) * step
        gx, gy = np.meshgrid(grid, grid)
        gra, gdec = WCS(header, naxis=2).pixel_to_world_values(gx.ravel().astype(float),
                                                              gy.ravel().astype(float))
        depth = imaging.depth[band]
        cat = Table({"ra": gra, "dec": gdec, f"mag_{band}": np.full(gra.size, depth)})
        sky = MockSky(MockSkyConfig(imaging=imaging), catalog=cat, seed=SEED)
        flux = float(native_flux(survey, native, depth, header.get("EXPTIME")))
        clean = _plane(sky.render(survey, (ra, dec), size=size, band=native, noise=False))
        psf = clean[grid[0] - half:grid[0] + half + 1, grid[0] - half:grid[0] + half + 1] / flux
        weights = psf / (psf**2).sum()

        def measure(image, xs, ys):
            return [(image[yy - half:yy + half + 1, xx - half:xx + half + 1] * weights).sum()
                    for yy in ys for xx in xs]

        signal, blank = [], []
        cells = range(half, size - half - 1, 2 * half + 1)
        for k in range(repeats):
            # another seed: a new noise realisation of the same sources on the same grid
            noisy = MockSky(sky.config, catalog=cat, seed=SEED + k)
            signal += measure(_plane(noisy.render(survey, (ra, dec), size=size, band=native)),
                              grid, grid)
            blank += measure(_plane(empty.render(survey, (ra + 1 + 0.1 * k, dec), size=size,
                                                 band=native)), cells, cells)
        snr = np.mean(signal) / np.std(blank)
        out[band] = 2.5 * math.log10(snr / 5.0)
    return out


def checks_figure(path=STATIC / "simulate_checks.png", dpi=70):
    """Photometry, PSF width and depth against their targets, per band.

    Parameters
    ----------
    path : path-like
    dpi : int

    Returns
    -------
    `pathlib.Path`
    dict
        The three measurements (band → value).
    """
    phot, fwhm, depth = measure_photometry(), measure_fwhm(), measure_depth()
    fig = Figure(figsize=(12, 3.4), layout="constrained")
    axes = fig.subplots(1, 3)
    x = np.arange(len(BANDS))
    labels = [LABEL.get(b, b) for b in BANDS]
    for ax, values, target, tol, title in (
            (axes[0], phot, 0.0, 0.05, "aperture mag − catalog mag"),
            (axes[1], fwhm, 1.0, 0.10, "fitted FWHM / configured FWHM"),
            (axes[2], depth, 0.0, 0.30, "measured − documented 5σ depth (mag)")):
        ax.axhspan(target - tol, target + tol, color="0.9", label=f"tolerance ±{tol:g}")
        ax.axhline(target, color="0.5", lw=0.8)
        ax.plot(x, [values[b] for b in BANDS], "o", color="tab:blue")
        ax.set_xticks(x, labels)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(target - 2 * tol, target + 2 * tol)
        ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=dpi)
    return Path(path), {"photometry": phot, "fwhm": fwhm, "depth": depth}


def _save_small(fig, path, dpi):
    """Save a figure as a palette PNG (the panels are grey-scale: 256 colours suffice)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    buf.seek(0)
    with Image.open(buf) as img:
        img.convert("RGB").quantize(colors=256).save(path, optimize=True)


def main():
    STATIC.mkdir(parents=True, exist_ok=True)
    sky = MockSky(MockSkyConfig(n_galaxies=400), seed=SEED)
    written = [cutouts_figure(sky), field_figure(sky)]
    path, values = checks_figure()
    written.append(path)
    for name, per_band in values.items():
        print(name, {b: round(float(v), 3) for b, v in per_band.items()})
    for p in written:
        size = p.stat().st_size
        print(f"{p} ({size / 1024:.0f} KiB)")
        if size > 200 * 1024:
            print(f"warning: {p.name} is larger than 200 KiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
