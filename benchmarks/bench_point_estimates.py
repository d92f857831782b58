"""Which point estimate of the redshift PDF to use: mean, median, mode, smoothed mode, per bin.

Run from the repository root (the data directory is any ``make_dataset`` directory; it
is read, never copied; the fused inputs are cached under ``--cache-dir``)::

    python benchmarks/bench_point_estimates.py --data /work/ex_data/mock_data12k \\
        --model mantis-mini --cache-dir /tmp/bench_point_cache     # about 1 minute on 2 cores

    python benchmarks/bench_point_estimates.py --data DIR --weights my.safetensors --out results/

It runs the model over the split (``--split``, default ``test``) with the calibration of
its card (`astro_mantis.training.evaluation.evaluate_model`) and prints, per bin of *true*
redshift (0.1 wide, metrics only where a bin has at least ``--min-count`` galaxies) and
overall, for every estimator of `astro_mantis.pdf.point_estimate`:

1. the median bias of (z_point - z_true) / (1 + z_true), ± bootstrap standard errors;
2. NMAD;
3. the outlier fraction at |dz| / (1 + z) > 0.05;

then one summary line per estimator: overall NMAD, outlier fractions, overall median
bias and the largest |median bias| over the bins. Where the model card records its training
redshifts (``training_redshifts``), one more estimator is listed, ``median_flat``: the
median of the PDFs with the network's implicit prior, the training n(z)
(`astro_mantis.models.training_prior`), divided out (`RedshiftPDF.change_prior`).
``--out`` also writes the full evaluation (``evaluation.json``, ``evaluation.rst``).

The numbers describe the package's simulated sky, not the real one.
"""
import argparse
import platform

import numpy as np


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or "unknown"


def _print_table(ev, metric, digits=4):
    tab = ev.compare(metric)
    names = list(ev.point_tables)
    width = digits + 12
    print(f"\n{metric} per bin of true redshift (± bootstrap standard error)")
    print(f"{'bin':>9s} {'n':>5s} " + " ".join(f"{n:>{width}s}" for n in names))
    for row in tab:
        cells = []
        for n in names:
            v, e = row[n], row[f"{n}_err"]
            cells.append("--".rjust(width) if np.ma.is_masked(v)
                         else f"{v:+.{digits}f} ± {e:.{digits}f}".rjust(width))
        print(f"{row['bin']:>9s} {row['n']:5d} " + " ".join(cells))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="make_dataset directory")
    p.add_argument("--model", default="mantis-mini", help="registry name")
    p.add_argument("--weights", default=None, help="weights file (default: the bundled)")
    p.add_argument("--split", default="test")
    p.add_argument("--cache-dir", default=None, help="fused-input cache (default DATA/fused_cache)")
    p.add_argument("--min-count", type=int, default=50)
    p.add_argument("--n-bootstrap", type=int, default=200)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="write evaluation.json and evaluation.rst here")
    args = p.parse_args(argv)

    import torch

    from astro_mantis.models import load_model
    from astro_mantis.training.evaluation import RECOMMENDED_POINT_ESTIMATE, evaluate_model

    print(f"CPU: {_cpu()}; torch threads: {torch.get_num_threads()}; device: {args.device}")
    model = load_model(args.model, weights=args.weights, device=args.device)
    ev = evaluate_model(model, args.data, split=args.split, min_count=args.min_count,
                        n_bootstrap=args.n_bootstrap, cache_dir=args.cache_dir)
    print(f"model {ev.model} on the {ev.split} split of {ev.data_dir}: {len(ev.z)} galaxies "
          "(simulated sky)")
    from astro_mantis.models import training_prior

    try:
        prior = training_prior(model)
    except ValueError as exc:
        print(f"no median_flat: {exc}")
    else:
        ev.add_point_estimate("median_flat", ev.pdf.change_prior(prior).median())
    if args.out:
        ev.write(args.out)
    for metric in ("bias_median", "nmad", "outlier_0.05"):
        _print_table(ev, metric)
    print("\nsummary (overall; max |bias| over bins with >= "
          f"{args.min_count} galaxies)")
    print(f"{'estimator':>14s} {'nmad':>7s} {'out0.05':>8s} {'out0.15':>8s} "
          f"{'bias_med':>9s} {'max|bias_med|':>14s} {'bias z<0.1':>11s}")
    for name, tab in ev.point_tables.items():
        bins, last = tab[:-1], tab[-1]
        b = np.ma.filled(bins["bias_median"].astype(float), np.nan)
        print(f"{name:>14s} {last['nmad']:7.4f} {last['outlier_0.05']:8.3f} "
              f"{last['outlier_0.15']:8.3f} {last['bias_median']:+9.4f} "
              f"{np.nanmax(np.abs(b)):14.4f} {b[0]:+11.4f}")
    print(f"\nrecommended (astro_mantis.training.evaluation.RECOMMENDED_POINT_ESTIMATE): "
          f"{RECOMMENDED_POINT_ESTIMATE}")


if __name__ == "__main__":
    main()
