"""Which of the shifted simulator's changes costs the bundled model its accuracy.

The shifted-simulator set (`astro_mantis.simulate.shifted_randomisation`) changes
several things at once: wider PSFs, more noise, single-profile galaxies, larger sizes,
zero-point offsets, light-centre offsets, nominal neighbour and star densities. This
benchmark renders the same galaxies (one catalog seed) once with the training
randomisation (`astro_mantis.simulate.training_randomisation`, the test set's) and once
per change, with only that change made, and evaluates a model on each with
`astro_mantis.training.evaluation.evaluate_model` (PDF median). It prints NMAD, the
0.05 outlier fraction, the median bias at z < 0.2 and overall, and each variant's NMAD
as a ratio to the unchanged rendering's, measured in the same run.

A colours-only control follows: the catalog-magnitude k-NN of
`astro_mantis.training.baseline` (``CatalogKNN``, depth noise; fitted on the catalogs of
the recipe's first four training runs) scored on the same galaxies' catalog magnitudes
without zero-point errors, and with the offsets their fields put on the images under
the training randomisation and under the shifted simulator's zero points (then fitted
on training catalogs carrying their own fields' offsets, as ``bench_baseline.py``'s
field-zero-point column is).

Usage::

    python benchmarks/bench_shift_ablation.py [--n 2048] [--weights W.safetensors]
        [--workdir DIR] [--variants none,psf,noise,...]

Renders ``--n`` galaxies per variant (about 80 a second on two cores) into ``--workdir``
(a temporary directory unless given; an existing rendering with the same settings is
reused). Simulated galaxies: not a result on the real sky.
"""
import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from _machine import cpu_model  # benchmarks/ is on the path of a script run from it


def variants():
    """Variant name -> the Randomisation fields it takes from the shifted simulator."""
    return {
        "none": (),
        "psf": ("psf_scale", "psf_models"),
        "noise": ("noise_scale",),
        "zero_point": ("zero_point",),
        "profile": ("profile",),
        "size": ("size_scale",),
        "offset": ("offset",),
        "densities": ("neighbour_scale", "star_scale", "bulge_frac_jitter"),
        "all": "all",
    }


def randomisation(name):
    """The training randomisation with variant ``name``'s shifted-simulator fields."""
    from astro_mantis.simulate import shifted_randomisation, training_randomisation

    fields = variants()[name]
    if fields == "all":
        return shifted_randomisation()
    shifted = shifted_randomisation()
    return dataclasses.replace(training_randomisation(),
                               **{f: getattr(shifted, f) for f in fields})


def catalog_control(test_dir, n, seed, knn_seed=0, n_fit=16384):
    """NMAD of the catalog k-NN on the galaxies of ``test_dir`` (rendered with ``n`` and
    catalog ``seed``) without zero-point errors, with those their fields have under the
    training randomisation, and with those of the shifted simulator's zero points."""
    import numpy as np

    from bench_baseline import field_zero_points, recipe_catalogs

    from astro_mantis.metrics import photoz_metrics
    from astro_mantis.shards import iter_shards
    from astro_mantis.simulate import MockSky
    from astro_mantis.simulate.dataset import dataset_config
    from astro_mantis.training.baseline import (CatalogKNN, noisy_magnitudes, shard_extinction,
                                                shard_magnitudes)

    parts = list(iter_shards(test_dir, "test"))
    mags = np.concatenate([shard_magnitudes(s) for s in parts])
    ext = np.concatenate([shard_extinction(s) for s in parts])
    z = np.concatenate([np.asarray(s["z"], float) for s in parts])
    radec = np.concatenate([np.column_stack([s["catalog"]["ra"], s["catalog"]["dec"]])
                            for s in parts])
    # the offsets each galaxy's field put on its images (the same draws the renderings had)
    zp = {name: field_zero_points(MockSky(dataset_config(n, randomisation=randomisation(name)),
                                          seed=seed), radec)
          for name in ("none", "zero_point")}
    train_mags, train_z, train_zp, train_ext, _ = recipe_catalogs(n_fit)
    clean = CatalogKNN().fit(noisy_magnitudes(train_mags, seed=knn_seed,
                                              extinction=train_ext), train_z)
    calibrated = CatalogKNN().fit(noisy_magnitudes(train_mags + train_zp, seed=knn_seed,
                                                   extinction=train_ext), train_z)
    cases = {"no zero-point errors (fit and scored)": (clean, 0.0),
             "training randomisation's field offsets": (calibrated, zp["none"]),
             "shifted simulator's field offsets": (calibrated, zp["zero_point"])}
    out = {}
    for name, (knn, dm) in cases.items():
        m = photoz_metrics(knn.predict(noisy_magnitudes(mags + dm, seed=knn_seed + 2,
                                                        extinction=ext)), z,
                           n_bootstrap=100)
        out[name] = (m["nmad"], m.errors["nmad"])
    return out


def main(argv=None):
    from astro_mantis.models import load_model
    from astro_mantis.simulate.dataset import dataset_config, make_dataset
    from astro_mantis.training.evaluation import evaluate_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048, help="galaxies per variant")
    parser.add_argument("--seed", type=int, default=2,
                        help="catalog seed (default 2, the recipe's test-set seed)")
    parser.add_argument("--weights", default=None,
                        help="mantis-mini weights (.safetensors; default: the bundled ones)")
    parser.add_argument("--workdir", default=None, help="where to render (kept)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-catalog-control", action="store_true",
                        help="skip the catalog k-NN control")
    parser.add_argument("--variants", default=",".join(variants()),
                        help="comma-separated, from " + ", ".join(variants()))
    args = parser.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in variants()]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(variants())}")
    if "none" not in names:
        names.insert(0, "none")  # the ratios' baseline, always measured in the same run

    print(f"CPU: {cpu_model()}")
    net = load_model("mantis-mini", weights=args.weights)
    print(f"model: mantis-mini sha256 {net.meta.get('sha256', '?')[:12]}, "
          f"{args.n} galaxies per variant, catalog seed {args.seed}")
    tmp = None if args.workdir else tempfile.TemporaryDirectory()
    root = Path(args.workdir or tmp.name)
    rows = {}
    for name in names:
        t0 = time.perf_counter()
        path = root / name
        config = dataset_config(args.n, randomisation=randomisation(name))
        make_dataset(args.n, path, seed=args.seed, config=config, split=(0, 0, 1),
                     workers=args.workers, progress=False)
        t1 = time.perf_counter()
        ev = evaluate_model(net, path, "test", estimators=("median",), n_bootstrap=100,
                            progress=False).as_dict()
        by_bin = {r["bin"]: r for r in ev["binned"]["median"]}
        low = [by_bin.get(b, {}).get("bias_median") for b in ("0.0-0.1", "0.1-0.2")]
        rows[name] = (by_bin["all"], low)
        print(f"  {name}: rendered in {t1 - t0:.0f} s, evaluated in "
              f"{time.perf_counter() - t1:.0f} s", flush=True)

    base = rows["none"][0]["nmad"]
    print()
    print(f"{'variant':<11} {'NMAD':>16} {'ratio':>6} {'out>0.05':>9} "
          f"{'median bias':>17} {'bias z<0.1':>13} {'bias 0.1-0.2':>13}")
    for name, (r, low) in rows.items():
        # None: fewer galaxies in the bin than evaluate_model's min_count
        lows = " ".join(f"{'—':>13}" if b is None else f"{b:+13.4f}" for b in low)
        print(f"{name:<11} {r['nmad']:.4f} ± {r['nmad_err']:.4f} "
              f"{r['nmad'] / base:6.2f} {r['outlier_0.05']:9.3f} "
              f"{r['bias_median']:+.4f} ± {r['bias_median_err']:.4f} {lows}")
    if not args.no_catalog_control:
        print("\ncolours only (catalog k-NN, the 'none' variant's galaxies):")
        control = catalog_control(root / "none", args.n, args.seed)
        base = list(control.values())[1][0]
        for name, (nmad, err) in control.items():
            print(f"  {name:<40} NMAD {nmad:.4f} ± {err:.4f}  ratio {nmad / base:.2f}")
        print("  (ratios to the training randomisation's row; the k-NN of the rows with "
              "offsets is fitted on catalogs with their own fields' offsets)")
    print("\nSIMULATED galaxies; each variant changes only the named fields of "
          "training_randomisation() to shifted_randomisation()'s.")
    if tmp is not None:
        tmp.cleanup()
    return rows


if __name__ == "__main__":
    main()
