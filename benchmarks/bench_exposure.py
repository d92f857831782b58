"""What the Pan-STARRS stacks' exposure times are worth to photometric redshifts.

A PS1 stack's counts carry the zero point ``25 + 2.5 log10(EXPTIME)``, and stacks differ
in depth. This benchmark measures the information the exposure times hold on simulated
galaxies: the aperture-photometry k-NN of `astro_mantis.training.baseline` (nine asinh
aperture magnitudes and the colours of adjacent bands, k = 20) fitted on the training
runs of a recipe work directory and scored on its test set, once with each stack's zero
point (calibrated magnitudes) and once with the typical exposure time's (what the counts
alone tell, as the published recipe feeds them to a network). The difference is what a
network gains from `astro_mantis.fusion.exposure` (``panstarrs_exposure="reference"``).

Usage::

    python benchmarks/bench_exposure.py --data WORKDIR/data --train-runs 15-24

Prints NMAD, the outlier fraction at 0.05 and the median bias (true-redshift scale
``Δz/(1+z)``) with bootstrap errors, and the CPU it ran on. Simulated galaxies: not a
result on the real sky.
"""
import argparse
import time
from pathlib import Path

import numpy as np

from _machine import cpu_model  # benchmarks/ is on the path of a script run from it

from astro_mantis.metrics import photoz_metrics
from astro_mantis.shards import iter_shards
from astro_mantis.training.baseline import KNNRedshift, shard_features


def features(directory, split):
    """(stack-zero-point features, typical-zero-point features, z) of a split."""
    parts = {"stack": [], "typical": [], "z": []}
    for shard in iter_shards(directory, split):
        for key in ("stack", "typical"):
            mags = shard_features(shard, ps1_zeropoints=key)
            parts[key].append(np.concatenate([mags, np.diff(mags, axis=1)], axis=1))
        parts["z"].append(np.asarray(shard["z"], float))
    return {k: np.concatenate(v) for k, v in parts.items()}


def runs(spec):
    first, _, last = spec.partition("-")
    return range(int(first), int(last or first) + 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True,
                        help="the recipe's WORKDIR/data (train_NNN runs and test/)")
    parser.add_argument("--train-runs", default="15-24",
                        help="training runs to fit on, e.g. 15-24 (default)")
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_model()}")
    t0 = time.perf_counter()
    data = Path(args.data)
    train = [features(data / f"train_{i:03d}", "train") for i in runs(args.train_runs)]
    train = {k: np.concatenate([t[k] for t in train]) for k in train[0]}
    test = features(data / "test", "test")
    print(f"aperture magnitudes of {len(train['z'])} training and {len(test['z'])} test "
          f"galaxies in {time.perf_counter() - t0:.0f} s (SIMULATED galaxies)")
    print(f"{'PS1 zero points':28s} {'NMAD':>16s} {'outliers >0.05':>16s} "
          f"{'median bias':>18s}")
    for key, label in (("stack", "each stack's EXPTIME"), ("typical", "typical EXPTIME")):
        knn = KNNRedshift(k=args.k).fit(train[key], train["z"])
        m = photoz_metrics(knn.predict(test[key]), test["z"], n_bootstrap=200, seed=0)
        e = m.errors
        print(f"{label:28s} {m['nmad']:.4f} ± {e['nmad']:.4f}  "
              f"{m['outlier_0.05']:.3f} ± {e['outlier_0.05']:.3f}  "
              f"{m['bias_median']:+.4f} ± {e['bias_median']:.4f}")


if __name__ == "__main__":
    main()
