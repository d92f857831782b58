"""Colours measured on the rendered cutouts themselves, against the flux_errors bound.

``bench_baseline.py --image-noise`` gives the catalog kNN each galaxy's smallest flux
errors on its cutouts (`astro_mantis.simulate.flux_errors`, a matched filter with the
true profile, sky-limited). That bound leaves out what real photometry meets: the
galaxy's own shot noise, neighbours, stars and chip gaps. This benchmark measures
the fluxes instead, on the very cutouts of recipe data sets (their shards): for each
galaxy and band, a matched filter whose template is the galaxy alone, rendered
noiseless by the same sky (its field's PSF, zero point and stack exposure time), over
the cutout's finite pixels (``flux = Σ t d / Σ t²``, in units of the template's
flux). It still knows each galaxy's true profile, so it is a best case of real
photometry. Both are turned into extinction-corrected asinh magnitudes, a catalog kNN
(`~astro_mantis.training.baseline.CatalogKNN`, k = 20) is fitted on the training runs
given and scored on the test set, and the two are printed side by side, with the
pulls of the measured fluxes (their error over the bound) per band.

Usage::

    python benchmarks/bench_forced_photometry.py --test WORKDIR/data/test \\
        --fit WORKDIR/data/train_105 WORKDIR/data/train_106 ... [--workers 2]

The data sets must come from the recipe's training randomisation (the skies are
rebuilt from their manifests, as ``bench_baseline.py`` does). Only the runs whose
cutouts are on disk can be measured, so the kNN is fitted on fewer galaxies than the
card's catalog columns (all 428,640 training catalogs); the bound column here is
fitted on the same galaxies, so the two compare like with like; ``--fit-sizes 16384
32768`` also fits both on the first 16,384 and 32,768 of them, to show how the gap
between the two changes with the fit's size.

``--template psf`` measures with a point source at each galaxy's position instead (PSF
photometry: no knowledge of the profile, as a pipeline without profile fits would
have), and ``--combine`` multiplies the network's calibrated PDFs by the
measured-photometry kNN's and divides by the network's training prior (the two as
independent evidence), to ask whether colours measured this way hold information the
network does not use. ``--test`` may be the shifted-simulator set
(``WORKDIR/data/shifted``); the kNN is always fitted on the training runs.
``--validation WORKDIR/data/validation`` also tempers the colours' evidence,
``p(z | images) (p(z | colours) / p(z)) ** beta`` for each ``--betas`` value, and marks
the beta of the lowest mean CRPS on the validation set (the test set chooses nothing).
"""
import argparse
import dataclasses
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from astropy.table import Table
from _machine import machine_line  # benchmarks/ is on the path of a script run from it
from bench_baseline import dataset_sky_config, field_zero_points, network_pdf

from astro_mantis.metrics import binned_metrics, photoz_metrics
from astro_mantis.simulate import MockSky, flux_errors
from astro_mantis.simulate.dataset import load_shard, shard_paths
from astro_mantis.simulate.photometry import BANDS
from astro_mantis.simulate.render import DEFAULT_DEPTH, NATIVE_TO_BAND
from astro_mantis.training.baseline import (CatalogKNN, asinh_magnitudes, noisy_magnitudes,
                                            shard_extinction)

#: Model bands of each survey's cutout planes, in plane order.
PLANES = {s: [b for (survey, _), b in NATIVE_TO_BAND.items() if survey == s]
          for s in ("galex", "panstarrs", "unwise")}
DEPTHS = np.array([DEFAULT_DEPTH[b] for b in BANDS])
KNN_SEEDS = {"fit": 1, "test": 2}


def quiet_sky(data, catalog):
    """The sky of a recipe data set with only ``catalog`` in it: no neighbours, stars
    or chip gaps, the same fields, exposure times and coverage."""
    found = dataset_sky_config(data)
    if found is None:
        raise SystemExit(f"{data}: rendered with neither the recipe's training "
                         "randomisation nor the shifted simulator's")
    config, seed = found
    imaging = dataclasses.replace(config.imaging, neighbour_density=0.0,
                                  star_density=0.0, ps1_nan_fraction=0.0)
    return MockSky(dataclasses.replace(config, imaging=imaging), catalog=catalog, seed=seed)


def measure_shard(data, path, template="true"):
    """Template fluxes (units of the true flux, NaN: no data), catalog magnitudes,
    extinction corrections, field zero points, flux_errors and redshifts of a shard.
    ``template``: ``"true"`` (the galaxy's own profile) or ``"psf"`` (a point source
    at its position: PSF photometry, which needs no knowledge of the profile)."""
    shard = load_shard(path)
    catalog = Table(shard["catalog"])
    sky = quiet_sky(data, point_sources(catalog) if template == "psf" else catalog)
    raw = np.column_stack([np.asarray(catalog[f"mag_{b}"], float) for b in BANDS])
    scale = np.full(raw.shape, np.nan)
    for j, (ra, dec) in enumerate(zip(catalog["ra"], catalog["dec"])):
        templates = sky.render_arrays((float(ra), float(dec)), noise=False)
        for survey, bands in PLANES.items():
            template = templates[survey][0]
            if template is None:  # a GALEX hole
                continue
            for k, band in enumerate(bands):
                t = template[k].astype(float)
                d = shard[survey][j, k].astype(float)
                ok = np.isfinite(d)
                if ok.any() and np.any(d[ok]):
                    scale[j, BANDS.index(band)] = (np.sum(t[ok] * d[ok])
                                                   / np.sum(t[ok] ** 2))
    radec = np.column_stack([catalog["ra"], catalog["dec"]])
    return {"scale": scale, "mag": raw, "corr": shard_extinction(shard),
            "zp": field_zero_points(sky, radec), "err": flux_errors(sky, catalog),
            "z": np.asarray(shard["z"], float)}


def point_sources(catalog):
    """A copy of ``catalog`` whose galaxies are point sources (both radii zero)."""
    out = catalog.copy()
    out["r_half_disk"] = 0.0
    out["r_half_bulge"] = 0.0
    return out


def measure(dirs, split, workers, template="true"):
    """`measure_shard` over every shard of ``split`` in ``dirs``, concatenated."""
    jobs = [(d, p, template) for d in dirs for p in shard_paths(d, split)]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(measure_shard, *zip(*jobs)))
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def measured_magnitudes(m):
    """Asinh magnitudes of the measured fluxes (no data: zero flux), extinction-corrected.

    ``scale`` is in units of the template's flux, which is the catalog flux under the
    field's zero point, so ``scale × truth`` is ``Σ t d / Σ t²`` in maggies: the true
    flux only converts units and cancels."""
    truth = 10.0 ** (-0.4 * (m["mag"] + m["zp"]))
    flux = np.where(np.isfinite(m["scale"]), m["scale"], 0.0) * truth
    return asinh_magnitudes(flux * 10.0 ** (0.4 * m["corr"]), 0.0, DEPTHS)


def bound_magnitudes(m, seed):
    """Asinh magnitudes with Gaussian noise of the flux_errors bound (inf: zero flux),
    extinction-corrected: the noise is drawn on the observed fluxes, as the measured
    ones carry it, so its σ scales with the correction."""
    return noisy_magnitudes(m["mag"] + m["zp"] - m["corr"], seed=seed, sigma=m["err"],
                            extinction=m["corr"])


def network_and_colours(model, knn, data, split, measured):
    """The network's calibrated PDFs and the measured-photometry kNN's on the galaxies of
    ``split`` in ``data`` (``measured``: their `measure` output, in the same order)."""
    shards = [load_shard(p) for p in shard_paths(data, split)]
    if not np.array_equal(np.concatenate([s["z"] for s in shards]), measured["z"]):
        raise SystemExit("the network's rows and the photometry's differ")
    net = network_pdf(model, shards)
    return net, knn.predict_pdf(measured_magnitudes(measured))


def combined_pdf(net, colours, prior, beta=1.0):
    """The network's PDFs times the colours' likelihood ratio to the power ``beta``:
    ``p(z | images) (p(z | colours) / p(z)) ** beta``, normalised (``beta`` = 1: the two
    as independent evidence; 0: the network alone)."""
    from astro_mantis.pdf import RedshiftPDF

    ratio = np.clip(colours.pdf, 1e-12, None) / prior[None, :]
    product = net.pdf * ratio ** beta
    return RedshiftPDF(product / (product * net.widths).sum(axis=1, keepdims=True),
                       edges=net.edges)


def print_combined(args, fit, test):
    """The network alone, and its PDFs times the measured-photometry kNN's over the
    network's training prior (independent evidence: p(z | both) ∝ p(z | images)
    p(z | colours) / p(z)), on the test galaxies; PDF median and mean. With
    ``--validation``, the colours' evidence is also tempered by each ``--betas`` value,
    and the one of the lowest mean CRPS on the validation set is marked: nothing is
    chosen on the test set."""
    from astro_mantis.models import load_model, training_prior

    model = load_model("mantis-mini", weights=args.weights)
    prior = training_prior(model)
    knn = CatalogKNN(k=args.k).fit(measured_magnitudes(fit), fit["z"])
    net, colours = network_and_colours(model, knn, args.test, "test", test)
    print(f"the network and the kNN on fluxes measured with the {args.template!r} "
          f"template, on {len(test['z'])} test galaxies:")
    pdfs = (("network", net), ("network x measured colours",
                                combined_pdf(net, colours, prior)))
    for name, pdf in pdfs:
        for estimator in ("median", "mean"):
            m = photoz_metrics(getattr(pdf, estimator)(), test["z"], pdf=pdf)
            print(f"  {name + ', PDF ' + estimator:<40} NMAD {m['nmad']:.4f} ± "
                  f"{m.errors['nmad']:.4f}, outliers > 0.05 {m['outlier_0.05']:.3f} ± "
                  f"{m.errors['outlier_0.05']:.3f}, > 0.15 {m['outlier_0.15']:.3f}, CRPS "
                  f"{m['crps']:.4f}, PIT KS {m['pit_ks']:.3f}")
    if args.validation is None:
        return
    val = measure([args.validation], "validation", args.workers, args.template)
    val_net, val_colours = network_and_colours(model, knn, args.validation, "validation",
                                               val)
    scores = {}
    for beta in args.betas:
        pdf = combined_pdf(val_net, val_colours, prior, beta)
        scores[beta] = photoz_metrics(pdf.median(), val["z"], pdf=pdf, n_bootstrap=0)
    chosen = min(scores, key=lambda b: scores[b]["crps"])
    print(f"tempered colours, p(z | images) (p(z | colours) / p(z)) ** beta, PDF median "
          f"(bins of true z of width 0.1 with >= 50 galaxies); beta chosen by the lowest "
          f"CRPS on the {len(val['z'])} validation galaxies (*), then scored on the "
          f"{len(test['z'])} of --test:")
    for beta in args.betas:
        pdf = combined_pdf(net, colours, prior, beta)
        z_point = pdf.median()
        m = photoz_metrics(z_point, test["z"], pdf=pdf)
        bins = binned_metrics(test["z"], z_point=z_point, min_count=50, n_bootstrap=0)
        worst = max((abs(r["bias_median"]) for r in bins
                     if r["bin"] != "all" and not np.ma.is_masked(r["bias_median"])),
                    default=np.nan)  # nan: no bin holds 50 galaxies
        v = scores[beta]
        print(f"  {'*' if beta == chosen else ' '} beta {beta:<5g} validation CRPS "
              f"{v['crps']:.4f}, outliers > 0.05 {v['outlier_0.05']:.3f}, PIT KS "
              f"{v['pit_ks']:.3f} | test NMAD {m['nmad']:.4f} ± {m.errors['nmad']:.4f}, "
              f"outliers > 0.05 {m['outlier_0.05']:.3f} ± {m.errors['outlier_0.05']:.3f}, "
              f"CRPS {m['crps']:.4f}, PIT KS {m['pit_ks']:.3f}, worst bin's |median bias| "
              f"{worst:.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test", required=True, help="recipe test set (its 'test' split)")
    parser.add_argument("--fit", required=True, nargs="+",
                        help="recipe training runs (their 'train' split) to fit the kNN on")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--k", type=int, default=20, help="neighbours (default 20)")
    parser.add_argument("--template", choices=("true", "psf"), default="true",
                        help="matched-filter template: the galaxy's true profile (default) "
                             "or a point source at its position (PSF photometry, which "
                             "needs no knowledge of the profile)")
    parser.add_argument("--combine", action="store_true",
                        help="also score the product of the bundled network's PDFs (or "
                             "--weights') and the measured-photometry kNN's, over the "
                             "network's training prior")
    parser.add_argument("--validation", default=None,
                        help="with --combine, a recipe validation set (WORKDIR/data/"
                             "validation): also temper the colours' evidence by each of "
                             "--betas and mark the one of the lowest validation CRPS")
    parser.add_argument("--betas", type=float, nargs="+", default=[0, 0.25, 0.5, 0.75, 1],
                        help="exponents of the colours' likelihood ratio (default 0 0.25 "
                             "0.5 0.75 1)")
    parser.add_argument("--weights", default=None, help="mantis-mini weights (.safetensors)")
    parser.add_argument("--fit-sizes", type=int, nargs="*", default=[],
                        help="also fit both kNNs on the first N fit galaxies, for each N "
                             "(how the gap between them changes with the fit's size)")
    args = parser.parse_args(argv)
    if args.validation is not None and not args.combine:
        parser.error("--validation needs --combine")
    if any(b < 0 for b in args.betas):
        parser.error("--betas must be non-negative")
    if any(n < args.k for n in args.fit_sizes):
        parser.error(f"--fit-sizes must be at least --k ({args.k})")
    print(machine_line(), flush=True)
    t0 = time.perf_counter()
    fit = measure(args.fit, "train", args.workers, args.template)
    test = measure([args.test], "test", args.workers, args.template)
    print(f"measured {len(fit['z'])} fit and {len(test['z'])} test galaxies in "
          f"{time.perf_counter() - t0:.0f} s")

    if args.template == "true":  # PSF fluxes of extended galaxies are not total fluxes
        truth = 10.0 ** (-0.4 * (test["mag"] + test["zp"]))
        pulls = (test["scale"] - 1.0) * truth / test["err"]
        cells = []
        for band, p in zip(BANDS, pulls.T):
            p = p[np.isfinite(p)]
            robust = 1.4826 * np.median(np.abs(p - np.median(p)))
            cells.append(f"{band} {np.median(p):+.2f} / {robust:.2f} / "
                         f"{np.mean(np.abs(p) > 5):.3f}")
        print("pulls of the measured test fluxes (error / bound): median / robust std / "
              "fraction beyond 5: " + ", ".join(cells))

    columns = {}
    magnitudes = (
        ("measured on the cutouts", measured_magnitudes(fit), measured_magnitudes(test)),
        ("flux_errors bound", bound_magnitudes(fit, KNN_SEEDS["fit"]),
         bound_magnitudes(test, KNN_SEEDS["test"])))
    for name, fit_mag, test_mag in magnitudes:
        knn = CatalogKNN(k=args.k).fit(fit_mag, fit["z"])
        z_point = knn.predict(test_mag)
        columns[name] = (photoz_metrics(z_point, test["z"], pdf=knn.predict_pdf(test_mag)),
                         binned_metrics(test["z"], z_point=z_point, min_count=50,
                                        n_bootstrap=0))
    print(f"catalog kNN (k = {args.k}) with field zero points, fitted on the {len(fit['z'])} "
          f"galaxies of {len(args.fit)} run(s), scored on {len(test['z'])}:")
    print(f"  {'metric':<14}" + "".join(f"{name:>28}" for name in columns))
    for key in ("nmad", "outlier_0.05", "outlier_0.15", "bias_median", "crps", "pit_ks"):
        print(f"  {key:<14}" + "".join(f"{m[key]:>19.4f} ± {m.errors[key]:.4f}"
                                       for m, _ in columns.values()))
    for name, (_, table) in columns.items():
        rows = [r for r in table if r["bin"] != "all" and not np.ma.is_masked(r["nmad"])]
        print(f"  {name}, per bin of z (NMAD / outliers > 0.05): "
              + ", ".join(f"{r['bin']} {r['nmad']:.3f}/{r['outlier_0.05']:.2f}" for r in rows))
    if args.combine:
        print_combined(args, fit, test)
    for n in args.fit_sizes:
        cells = []
        for name, fit_mag, test_mag in magnitudes:
            knn = CatalogKNN(k=args.k).fit(fit_mag[:n], fit["z"][:n])
            m = photoz_metrics(knn.predict(test_mag), test["z"], n_bootstrap=0)
            cells.append(f"{name} NMAD {m['nmad']:.4f}, outliers > 0.05 {m['outlier_0.05']:.3f}")
        print(f"  fitted on the first {min(n, len(fit['z']))} galaxies: " + "; ".join(cells))


if __name__ == "__main__":
    main()
