"""Speed of the package's inner pieces, each against a baseline timed in the same run.

Run from the repository root (the mock-sky parts need the ``sim`` extra)::

    python benchmarks/bench_components.py
    python benchmarks/bench_components.py --only pdf render

These figures used to be wall-clock limits inside the tests; timing limits fail on a
busy machine and say nothing about correctness, so the tests now check behaviour and
the speed is printed here. Each part prints its figure and a ratio to a baseline run
in the same process moments before or after, which is what to compare between
machines:

``pdf``
    `~astro_mantis.pdf.RedshiftPDF` mean, median and 68 % interval of 100,000 PDFs
    (400 bins, float32), against the straightforward per-row NumPy code
    (``np.dot`` for the mean, ``np.cumsum`` + ``np.interp`` for the quantiles) timed on
    ``--baseline-rows`` rows and scaled per row. Checks that both agree.
``grid``
    Building the per-band template grids of `~astro_mantis.simulate.photometry` (all
    nine bands), against the direct integration (``band_maggies_exact``) that the grid
    replaces: the build cost in exact evaluations, and the speed-up per galaxy.
``population``
    `~astro_mantis.simulate.population.draw_population` of 50,000 galaxies (caches
    warm), against the photometry step alone (``band_magnitudes`` of the same
    galaxies in the nine bands), which every draw has to do.
``fit``
    `~astro_mantis.simulate.photometry.fit_sdss_coefficients` served from its cache,
    against the fit itself (``use_galex=False`` variant, not cached before).
``render``
    One cutout of `astro_mantis.testing.SyntheticSky` per survey (CPU time of the
    calling thread: the mean of 5 calls, the best of 5 such rounds), against the same
    request served over loopback HTTP by `astro_mantis.testing.SurveyServer` (render +
    FITS + HTTP).
"""
import argparse
import platform
import sys
import time
import timeit

import numpy as np

from _machine import machine_line  # benchmarks/ is on the path of a script run from it

PARTS = ("pdf", "grid", "population", "fit", "render")


def _best(func, number=1, repeat=3, timer=time.perf_counter):
    return min(timeit.repeat(func, number=number, repeat=repeat, timer=timer)) / number


def bench_pdf(rows, baseline_rows):
    from astro_mantis.pdf import RedshiftPDF

    rng = np.random.default_rng(10)
    raw = rng.random((rows, 400), dtype=np.float32)
    pdf = RedshiftPDF(raw, copy=False)
    centres = pdf.centers
    edges = pdf.edges

    def package():
        pdf.mean()
        pdf.median()
        pdf.interval(0.68)

    def naive(block):
        out = np.empty((block.shape[0], 4))
        for k, p in enumerate(block.astype(np.float64)):
            p = p / p.sum()
            cdf = np.concatenate([[0.0], np.cumsum(p)])
            out[k] = (np.dot(p, centres), *np.interp([0.5, 0.16, 0.84], cdf, edges))
        return out

    t_pkg = _best(package, repeat=3)
    sub = raw[:baseline_rows]
    t_naive = _best(lambda: naive(sub), repeat=3) * rows / baseline_rows
    ref = naive(sub)
    small = RedshiftPDF(sub)
    lo, hi = small.interval(0.68)
    got = np.stack([small.mean(), small.median(), lo, hi], axis=1)
    print(f"[pdf] {rows:,} PDFs, mean + median + 68% interval: {t_pkg:.2f} s "
          f"({rows / t_pkg:,.0f} PDFs/s); per-row NumPy loop: {t_naive:.1f} s "
          f"(timed on {baseline_rows:,} rows, scaled); speed-up {t_naive / t_pkg:.0f}x; "
          f"largest difference {np.max(np.abs(got - ref)):.1e}")


def bench_grid():
    from astro_mantis.simulate import photometry as phot

    phot.template_band_maggies(0.1, ("r",))  # filters and templates loaded
    saved = dict(phot._GRIDS)
    try:
        phot._GRIDS.clear()
        t0 = time.perf_counter()
        phot.template_band_maggies(0.1, phot.BANDS)
        t_build = time.perf_counter() - t0
    finally:
        phot._GRIDS.clear()
        phot._GRIDS.update(saved)
    rng = np.random.default_rng(0)
    n = 20
    coeffs = rng.random((n, 5)) * 1e-9
    z = rng.uniform(0.01, 1.5, n)
    t_exact = _best(lambda: phot.band_maggies_exact(coeffs, z), repeat=2) / n
    m = 50_000
    big_c = rng.random((m, 5)) * 1e-9
    big_z = rng.uniform(0.01, 1.5, m)
    t_grid = _best(lambda: phot.band_maggies(big_c, big_z), repeat=3) / m
    print(f"[grid] building the 9 band grids: {t_build:.2f} s = {t_build / t_exact:,.0f} "
          f"exact galaxies ({t_exact * 1e3:.1f} ms each); gridded photometry "
          f"{t_grid * 1e6:.2f} us per galaxy, {t_exact / t_grid:,.0f}x faster than exact")


def bench_population(n):
    from astro_mantis.simulate import photometry as phot
    from astro_mantis.simulate.population import draw_population

    draw_population(10, rng=0)  # caches: anchor fit, grids, volume tables
    t0 = time.perf_counter()
    tab = draw_population(n, rng=1)
    t_draw = time.perf_counter() - t0
    coeffs, z, ebv = (np.asarray(tab[c]) for c in ("coeffs", "z", "ebv"))
    t_phot = _best(lambda: phot.band_magnitudes(coeffs, z, ebv, phot.BANDS), repeat=3)
    print(f"[population] draw_population({n:,}): {t_draw:.2f} s ({n / t_draw:,.0f} "
          f"galaxies/s) = {t_draw / t_phot:.1f}x its 9-band photometry alone "
          f"({t_phot:.2f} s)")


def bench_fit():
    from astro_mantis.simulate import photometry as phot

    phot.fit_sdss_coefficients("even")  # cached (memory or disk) from here on
    t_cached = _best(lambda: phot.fit_sdss_coefficients("even"), repeat=5)
    t0 = time.perf_counter()
    phot.fit_sdss_coefficients("even", use_galex=False, cache=False)
    t_fit = time.perf_counter() - t0
    print(f"[fit] cached template fit of the 5,000 even rows: {t_cached * 1e3:.2f} ms; "
          f"fitting them: {t_fit:.2f} s; the cache is {t_fit / t_cached:,.0f}x faster")


def bench_render():
    import requests
    from astropy.coordinates import SkyCoord

    from astro_mantis.testing import SurveyServer, SyntheticSky
    from astro_mantis.testing import ps1_skycell

    ra, dec = 150.0, 2.0
    sky = SyntheticSky(seed=0)
    coord = SkyCoord(ra, dec, unit="deg")
    centre = ps1_skycell(ra, dec)[2:]
    renders = {
        "panstarrs (r)": lambda: sky.render("panstarrs", coord, band="r",
                                            skycell_center=centre),
        "galex": lambda: sky.render("galex", coord),
        "unwise": lambda: sky.render("unwise", coord),
    }
    with SurveyServer(sky) as srv, requests.Session() as session:
        url = f"{srv.legacysurvey_url}/fits-cutout"

        def served(layer):
            return lambda: session.get(url, params={"ra": ra, "dec": dec, "layer": layer,
                                                    "size": 32, "pixscale": 1.5},
                                       timeout=10).content

        for name, render in renders.items():
            t_cpu = _best(render, number=5, repeat=5, timer=time.thread_time)
            line = f"[render] {name}: {t_cpu * 1e3:.2f} ms CPU per cutout"
            if name in ("galex", "unwise"):
                layer = "galex" if name == "galex" else "unwise-neo7"
                t_http = _best(served(layer), number=5, repeat=5)
                line += (f"; served over loopback HTTP {t_http * 1e3:.2f} ms, the render "
                         f"is {t_cpu / t_http:.0%} of it")
            print(line)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--rows", type=int, default=100_000, help="PDFs for 'pdf'")
    parser.add_argument("--baseline-rows", type=int, default=5_000)
    parser.add_argument("--n", type=int, default=50_000, help="galaxies for 'population'")
    args = parser.parse_args(argv)
    print(f"{machine_line()}; python {platform.python_version()} on {platform.machine()}")
    for part in args.only:
        if part == "pdf":
            bench_pdf(args.rows, args.baseline_rows)
        elif part == "grid":
            bench_grid()
        elif part == "population":
            bench_population(args.n)
        elif part == "fit":
            bench_fit()
        else:
            bench_render()
    return 0


if __name__ == "__main__":
    sys.exit(main())
