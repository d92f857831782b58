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
bias and the largest |median bias| over the bins; and last, how well the PDFs predict
their own outliers: the odds of the median (`RedshiftPDF.odds`, the ``z_odds`` column:
the probability that |z_median - z| / (1 + z) <= 0.05), one minus their mean (the
expected outlier fraction) against the measured one, for all galaxies, for those above
odds cuts and per fifth of the odds. Where the model card records its training
redshifts (``training_redshifts``), one more estimator is listed, ``median_flat``: the
median of the PDFs with the network's implicit prior, the training n(z)
(`astro_mantis.models.training_prior`), divided out (`RedshiftPDF.change_prior`).
``max_odds`` is always listed: for each galaxy, the bin centre whose odds are highest,
i.e. the estimate that a calibrated PDF expects to be an outlier beyond 0.05 least
often (the Bayes choice for that count); it shows how much of the outlier fraction a
choice of estimator can remove.
``--out DIR`` also writes the full evaluation, every estimator listed above, to
``DIR/evaluation.json`` and ``DIR/evaluation.rst`` (``--name`` changes the file names'
stem); both record the command line and the CPU that made them (``command`` and
``cpu`` in the JSON, a first paragraph in the RST). ``--recipe-estimators`` writes only
the estimators of `~astro_mantis.training.evaluation.evaluate_model` (mean, median,
mode, smoothed mode), as the recipe's evaluation stage writes them; so the bundled
model's files in ``benchmarks/results/`` are redone with::

    python benchmarks/bench_point_estimates.py --data WORKDIR/data/test \
        --cache-dir /tmp/bench_point_cache_test --out benchmarks/results \
        --name mantis-mini_test --recipe-estimators
    python benchmarks/bench_point_estimates.py --data WORKDIR/data/shifted \
        --cache-dir /tmp/bench_point_cache_shifted --out benchmarks/results \
        --name mantis-mini_shifted --recipe-estimators

The numbers describe the package's simulated sky, not the real one.
"""
import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parent) not in sys.path:  # also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model  # noqa: E402


def write_evaluation(ev, out, name, command, cpu):
    """``out/<name>.json`` and ``out/<name>.rst``: `Evaluation.write`'s two files, with
    the command line and the CPU that made them; each replaced whole."""
    from astro_mantis.atomic import atomic_open

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {**ev.as_dict(), "command": command, "cpu": cpu}
    texts = {"json": json.dumps(record, indent=1),
             "rst": f"Written by ``{command}`` on {cpu}.\n\n{ev.to_rst()}"}
    paths = {k: out / f"{name}.{k}" for k in texts}
    for key, text in texts.items():
        with atomic_open(paths[key], "w", encoding="utf-8") as fh:
            fh.write(text)
    return paths


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


def _fraction(x):
    """Mean of a boolean array and its binomial standard error."""
    m = float(np.mean(x)) if len(x) else float("nan")
    return m, (np.sqrt(m * (1 - m) / len(x)) if len(x) else float("nan"))


def _print_odds(ev, cuts=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95)):
    """Expected (1 - mean odds) against measured outlier fractions of the median."""
    from astro_mantis.pdf import ODDS_WIDTH

    med = ev.pdf.median()
    odds = ev.pdf.odds(med)
    outlier = np.abs(med - ev.z) / (1 + ev.z) > ODDS_WIDTH
    print(f"\nodds of the median (z_odds): expected outlier fraction 1 - mean(odds) "
          f"against measured |dz|/(1+z) > {ODDS_WIDTH}")
    print(f"{'galaxies':>16s} {'kept':>7s} {'measured':>17s} {'expected':>9s}")
    rows = [("all", np.ones(len(odds), bool))]
    rows += [(f"odds >= {c}", odds >= c) for c in cuts]
    edges = np.quantile(odds, np.linspace(0, 1, 6))
    fifth = np.clip(np.searchsorted(edges, odds, side="right") - 1, 0, 4)
    rows += [(f"fifth {k + 1} of odds", fifth == k) for k in range(5)]
    for name, keep in rows:
        m, e = _fraction(outlier[keep])
        print(f"{name:>16s} {keep.mean():7.3f} {m:8.4f} ± {e:.4f} {1 - odds[keep].mean():9.4f}")


def max_odds(pdf):
    """Per galaxy, the bin centre with the highest odds (`RedshiftPDF.odds`, width 0.05).

    For calibrated PDFs, the point estimate with the smallest expected probability of
    being an outlier at |dz| / (1 + z) > 0.05; NaN for invalid rows.
    """
    centres = 0.5 * (pdf.edges[:-1] + pdf.edges[1:])
    n = len(pdf)
    best, best_odds = np.full(n, np.nan), np.full(n, -1.0)
    for zc in centres:
        odds = np.nan_to_num(pdf.odds(np.full(n, zc)), nan=-1.0)
        better = odds > best_odds
        best[better], best_odds[better] = zc, odds[better]
    best[best_odds < 0] = np.nan
    return best


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
    p.add_argument("--out", default=None,
                   help="write the evaluation here: NAME.json and NAME.rst, with the command "
                        "line and the CPU")
    p.add_argument("--name", default="evaluation",
                   help="stem of the files --out writes (default: evaluation)")
    p.add_argument("--recipe-estimators", action="store_true",
                   help="write only evaluate_model's estimators (mean, median, mode, "
                        "smoothed_mode), as the recipe's evaluation stage does; median_flat "
                        "and max_odds are still printed")
    args = p.parse_args(argv)
    if (args.name != "evaluation" or args.recipe_estimators) and not args.out:
        p.error("--name and --recipe-estimators need --out")
    if Path(args.name).name != args.name or args.name in ("", ".", ".."):
        p.error(f"--name is a file name stem, not a path: {args.name!r}")
    command = shlex.join(["python", "benchmarks/bench_point_estimates.py",
                          *(sys.argv[1:] if argv is None else argv)])
    cpu = cpu_model()

    import torch

    from astro_mantis.models import load_model
    from astro_mantis.training.evaluation import RECOMMENDED_POINT_ESTIMATE, evaluate_model

    print(f"CPU: {cpu}; torch threads: {torch.get_num_threads()}; device: {args.device}")
    model = load_model(args.model, weights=args.weights, device=args.device)
    ev = evaluate_model(model, args.data, split=args.split, min_count=args.min_count,
                        n_bootstrap=args.n_bootstrap, cache_dir=args.cache_dir)
    print(f"model {ev.model} on the {ev.split} split of {ev.data_dir}: {len(ev.z)} galaxies "
          "(simulated sky)")
    from astro_mantis.models import training_prior

    if args.out and args.recipe_estimators:
        paths = write_evaluation(ev, args.out, args.name, command, cpu)
    try:
        prior = training_prior(model)
    except ValueError as exc:
        print(f"no median_flat: {exc}")
    else:
        ev.add_point_estimate("median_flat", ev.pdf.change_prior(prior).median())
    best = max_odds(ev.pdf)
    ev.add_point_estimate("max_odds", best)
    if args.out and not args.recipe_estimators:
        paths = write_evaluation(ev, args.out, args.name, command, cpu)
    if args.out:
        print(f"wrote {paths['json']} and {paths['rst']}")
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
    from astro_mantis.pdf import ODDS_WIDTH

    for name, z_point in (("median", ev.pdf.median()), ("max_odds", best)):
        m, e = _fraction(np.abs(z_point - ev.z) / (1 + ev.z) > ODDS_WIDTH)
        print(f"{name}: outliers > {ODDS_WIDTH} measured {m:.4f} ± {e:.4f}, expected "
              f"(1 - mean odds) {1 - np.nanmean(ev.pdf.odds(z_point)):.4f}")
    _print_odds(ev)


if __name__ == "__main__":
    main()
