"""The bundled model on held-out *real* SDSS galaxies rendered by the mock sky and served.

Issue 16 opened with this measurement: real SDSS main-sample galaxies, rendered by a
renderer, served over the surveys' protocols and run through the user's path, gave a
``z_mean`` biased by +0.035 at z < 0.1. This script repeats it with the package's own
pieces, so anyone can rerun it:

1. the galaxies are the **odd rows** of the real SDSS catalog shipped in kcorrect (held
   out from everything the package fits or tunes), cut like the SDSS main sample
   (``--r-limit``, Petrosian r, default 17.7), as
   `astro_mantis.simulate.population.sdss_galaxies` gives them: their redshifts and
   nine-band magnitudes are real (their own measured photometry carried into the GALEX,
   Pan-STARRS and unWISE bands by their own template fits, dimmed by their SFD E(B−V) as
   observed); their shapes are drawn from the mock population's relations, and their
   CSFD-like and Planck-like E(B−V) from the mock sky's scatter about SFD, since the real
   catalog carries neither;
2. they are placed at the training sets' density in the training sets' patch and
   rendered by `~astro_mantis.simulate.MockSky` — with ``--randomisation`` ``none`` (the
   nominal sky), ``training`` (the training sets' domain randomisation, its per-galaxy
   draws of sizes, bulge fractions and centring applied to these galaxies too) or
   ``shifted`` (the shifted simulator the card reports) — and served by the loopback
   survey servers (`astro_mantis.testing.SurveyServer`);
3. `~astro_mantis.add_redshift_columns` runs the bundled model on them, as a user's
   table would be, and the PDFs are scored against the spectroscopic redshifts:
   `~astro_mantis.metrics.photoz_metrics` overall for ``z_median`` and ``z_mean``, and
   per bin of true redshift (0–0.1, 0.1–0.15, 0.15–0.2, 0.2–0.3, 0.3–0.45, the issue's
   bins; at least ``--min-count`` galaxies) their median biases and NMAD, and the
   outlier fraction the ``z_odds`` expect against the measured one.

``--mock-control`` runs each sky a second time on as many galaxies of the mock
population's main sample (r < 17.77, the same redshift range), through the same path:
what differs between the two is the galaxies, not the images or the pipeline.
``--fit-only`` runs the same real galaxies with every band their template fit's
prediction: real redshifts and spectral types on the templates' manifold, without the
catalog's measurement noise or the galaxies' own departures from the templates.
``--rows even`` takes the catalog's even rows instead, the half that anything may be
fitted or tuned on (the odd rows only ever evaluate); ``--out DIR`` writes each run's
table (with ``z_pdf``) to ``DIR/<real|mock>_...fits`` for further analysis.
``--weights PATH`` runs a ``mantis-mini`` checkpoint other than the bundled one (a
training stage's export, with its model card beside it) through the same path.

The images are the package's own simulator's, not the real sky's: the real part is the
population (redshifts, colours, magnitudes). Usage (about two minutes per
randomisation for 1,500 galaxies on two cores)::

    python benchmarks/bench_real_population.py --randomisation none training shifted
"""
import argparse
import tempfile
import time

import numpy as np

from _machine import cpu_model

EDGES = (0.0, 0.1, 0.15, 0.2, 0.3, 0.45)


def real_catalog(n, seed, r_limit, config, mock=False, fit_only=False, rows="odd"):
    """``n`` held-out real SDSS galaxies (odd rows, `sdss_galaxies`) placed uniformly in
    the patch of the mock-sky ``config``, with its randomisation's per-galaxy draws; with
    ``mock``, the control: ``n`` mock main-sample galaxies (`draw_population`, its
    ``main`` component, r < 17.77) with the same redshift cut as the real ones."""
    from astro_mantis.simulate.population import draw_population, sdss_galaxies
    from astro_mantis.simulate.randomise import perturb_catalog

    rng = np.random.default_rng(seed)
    cat = sdss_galaxies(n, config=config.population, rng=rng, r_limit=r_limit,
                        fit_only=fit_only, rows=rows)
    if mock:  # as many mock main-sample galaxies, within the real ones' redshifts
        pool = draw_population(4 * len(cat), config=config.population, rng=rng,
                               components=["main"])
        pool = pool[np.asarray(pool["z"]) <= float(np.max(cat["z"]))]
        cat = pool[:len(cat)]
    ra_lo, ra_hi = config.ra_range
    s_lo, s_hi = np.sin(np.radians(config.dec_range))
    cat.add_column(rng.uniform(ra_lo, ra_hi, len(cat)), name="ra", index=0)
    cat.add_column(np.degrees(np.arcsin(rng.uniform(s_lo, s_hi, len(cat)))), name="dec",
                   index=1)
    if config.randomisation is not None:
        perturb_catalog(cat, config.randomisation, rng)
    return cat


def run(randomisation, n, seed, r_limit, mock=False, fit_only=False, rows="odd",
        model="mantis-mini"):
    """Render, serve and estimate one sky with ``model`` (a registry name or a loaded
    network); return (table of results, seconds)."""
    from astropy.table import Table

    from astro_mantis import add_redshift_columns, conf
    from astro_mantis.simulate import MockSky, shifted_randomisation, training_randomisation
    from astro_mantis.simulate.dataset import dataset_config
    from astro_mantis.testing import SurveyServer

    rand = {"none": None, "training": training_randomisation(),
            "shifted": shifted_randomisation()}[randomisation]
    config = dataset_config(n, randomisation=rand)
    cat = real_catalog(n, seed, r_limit, config, mock=mock, fit_only=fit_only, rows=rows)
    sky = MockSky(config, catalog=cat, seed=seed)
    table = Table({k: cat[k] for k in ("ra", "dec", "z", "ebv_csfd", "ebv_planck")})
    t0 = time.perf_counter()
    with SurveyServer(sky=sky) as server, server.configure(conf), \
            tempfile.TemporaryDirectory() as cache, conf.set_temp("cache_dir", cache):
        add_redshift_columns(table, model=model, ebv=("ebv_csfd", "ebv_planck"),
                             progress=False)
    return table, time.perf_counter() - t0


def report(name, table, min_count):
    from astro_mantis import RedshiftPDF
    from astro_mantis.metrics import binned_metrics, photoz_metrics

    est = ~np.ma.getmaskarray(table["z_median"])
    t = table[est]
    z = np.asarray(t["z"], float)
    pdf = RedshiftPDF.from_table(t)
    print(f"\n== {name}: {len(table)} galaxies, {est.sum()} estimated; "
          f"z median {np.median(z):.3f}")
    for point in ("median", "mean"):
        zp = np.asarray(t[f"z_{point}"], float)
        m = photoz_metrics(zp, z, pdf=pdf, seed=1)
        v, e = m, m.errors
        print(f"z_{point:6s} NMAD {v['nmad']:.4f} ± {e['nmad']:.4f}  "
              f"bias (median) {v['bias_median']:+.4f} ± {e['bias_median']:.4f}  "
              f"out>0.05 {v['outlier_0.05']:.3f} ± {e['outlier_0.05']:.3f} "
              f"(expected {v['expected_outlier_0.05']:.3f})  "
              f"out>0.15 {v['outlier_0.15']:.3f}  CRPS {v['crps']:.4f}  "
              f"PIT KS {v['pit_ks']:.3f}  cov68 {v['coverage_68']:.3f}")
        tab = binned_metrics(z, pdf, z_point=point, edges=EDGES, min_count=min_count, seed=1)
        cells = []
        for row in tab:
            if np.ma.is_masked(row["bias_median"]):
                continue
            cells.append(f"{row['bin']} (n={row['n']}): {row['bias_median']:+.4f} ± "
                         f"{row['bias_median_err']:.4f}, NMAD {row['nmad']:.4f}")
        print("   median bias per bin: " + "; ".join(cells))
    # the table's z_odds column, as a user would cut on it (the median's odds)
    odds = np.asarray(t["z_odds"], float)
    out = np.abs(np.asarray(t["z_median"], float) - z) / (1 + z) > 0.05
    keep = odds >= 0.7
    print(f"   z_odds >= 0.7: {keep.mean():.2f} kept, outliers {out[keep].mean():.3f} "
          f"measured, {1 - odds[keep].mean():.3f} expected")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1500, help="galaxies (of the odd rows' cut)")
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--r-limit", type=float, default=17.7, help="Petrosian r cut")
    p.add_argument("--randomisation", nargs="+", default=["none", "training", "shifted"],
                   choices=["none", "training", "shifted"])
    p.add_argument("--min-count", type=int, default=30)
    p.add_argument("--mock-control", action="store_true",
                   help="also run each sky on as many mock main-sample galaxies")
    p.add_argument("--rows", default="odd", choices=["odd", "even"],
                   help="half of the real catalog: odd (held out, default) or even (the "
                        "half anything may be fitted or tuned on)")
    p.add_argument("--out", default=None,
                   help="directory to write each run's table to (FITS, with z_pdf)")
    p.add_argument("--fit-only", action="store_true",
                   help="also run each sky on the same real galaxies with template-fit "
                        "magnitudes in every band (sdss_galaxies(fit_only=True))")
    p.add_argument("--weights", default=None,
                   help="a mantis-mini .safetensors other than the bundled one (its model "
                        "card .json beside it)")
    args = p.parse_args(argv)
    import torch

    model = "mantis-mini"
    if args.weights:
        from astro_mantis.models import load_model

        model = load_model("mantis-mini", weights=args.weights, verify=False)
        print(f"weights: {args.weights} (sha256 {str(model.meta.get('sha256'))[:12]})")

    print(f"CPU: {cpu_model()}; torch threads: {torch.get_num_threads()}; SIMULATED images "
          f"of real SDSS galaxies ({args.rows} rows of the catalog), not the real sky")
    def save(table, stem):
        if args.out:
            from pathlib import Path

            Path(args.out).mkdir(parents=True, exist_ok=True)
            table.write(Path(args.out) / f"{stem}.fits", overwrite=True)

    for name in args.randomisation:
        table, seconds = run(name, args.n, args.seed, args.r_limit, rows=args.rows,
                             model=model)
        report(f"real SDSS galaxies ({args.rows} rows), randomisation {name} "
               f"({seconds:.0f} s)", table, args.min_count)
        save(table, f"real_{args.rows}_{name}")
        if args.fit_only:
            table, seconds = run(name, args.n, args.seed, args.r_limit, fit_only=True,
                                 rows=args.rows, model=model)
            report(f"the same real galaxies, template-fit magnitudes, randomisation {name} "
                   f"({seconds:.0f} s)", table, args.min_count)
            save(table, f"real_{args.rows}_fit_only_{name}")
        if args.mock_control:
            table, seconds = run(name, args.n, args.seed, args.r_limit, mock=True,
                                 model=model)
            report(f"control: mock main-sample galaxies, randomisation {name} "
                   f"({seconds:.0f} s)", table, args.min_count)
            save(table, f"mock_{name}")


if __name__ == "__main__":
    main()
