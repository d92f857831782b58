"""Score a redshift network against the tabular baseline on the same held-out test split.

The baseline is the comparison the Mantis Shrimp paper makes: photutils aperture
magnitudes in the nine bands and a k-nearest-neighbours regressor
(`astro_mantis.training.baseline`), fitted on the *train* split of the same data
directory the network was trained on. Both are scored on the *test* split with
`astro_mantis.metrics.photoz_metrics` (point estimate: the PDF mean for the network,
the neighbours' median for the baseline).

Usage::

    python benchmarks/bench_baseline.py --data mock_data [--weights PATH] [--k 20]

Without ``--weights`` the bundled ``mantis-mini`` is scored. With ``--write-card`` the
model card next to the weights gains ``baseline_test`` (the baseline's test metrics)
and ``targets`` (issue 4's targets, each true or false, from the figures printed); the
card's checksum describes the weights only, so it stays valid.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

from astro_mantis.metrics import photoz_metrics
from astro_mantis.models import load_model, predict
from astro_mantis.simulate.dataset import load_shard, shard_paths
from astro_mantis.training.baseline import KNNRedshift, shard_features

KEYS = ("bias_mean", "bias_median", "nmad", "outlier_0.15", "outlier_0.05", "crps",
        "cde_loss", "pit_ks", "coverage_68", "coverage_95")


def split_arrays(data, split, with_images=False):
    """Features, redshifts (and shards, for the network) of one split."""
    feats, zs, shards = [], [], []
    for path in shard_paths(data, split):
        shard = load_shard(path)
        feats.append(shard_features(shard))
        zs.append(np.asarray(shard["z"], dtype=float))
        if with_images:
            shards.append(shard)
    return np.concatenate(feats), np.concatenate(zs), shards


def network_pdf(model, shards):
    """The network's PDFs for the galaxies of ``shards``, fused as in training."""
    from astro_mantis.fusion import fuse_arrays
    from astro_mantis.pdf import RedshiftPDF

    pdfs = []
    for shard in shards:
        fused = fuse_arrays(shard["galex"], shard["panstarrs"], shard["unwise"],
                            ebv=np.column_stack([shard["ebv_csfd"], shard["ebv_planck"]]))
        pdfs.append(predict(fused.x, model=model, dust=fused.dust).pdf)
    return RedshiftPDF(np.concatenate(pdfs))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="directory written by make_dataset")
    parser.add_argument("--weights", default=None, help="mantis-mini weights (.safetensors)")
    parser.add_argument("--k", type=int, default=20, help="neighbours of the baseline")
    parser.add_argument("--write-card", action="store_true",
                        help="record the baseline and the targets in the weights' model card")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    x_train, z_train, _ = split_arrays(args.data, "train")
    x_test, z_test, shards = split_arrays(args.data, "test", with_images=True)
    knn = KNNRedshift(k=args.k).fit(x_train, z_train)
    base_pdf = knn.predict_pdf(x_test)
    base = photoz_metrics(knn.predict(x_test), z_test, pdf=base_pdf)
    model = load_model("mantis-mini", weights=args.weights)
    net_pdf = network_pdf(model, shards)
    net = photoz_metrics(net_pdf.mean(), z_test, pdf=net_pdf)
    print(f"test split: {len(z_test)} galaxies; baseline fitted on {len(z_train)} "
          f"(k = {args.k}); {time.perf_counter() - t0:.0f} s")
    print(f"  {'metric':<14}{'kNN baseline':>22}{'mantis-mini':>22}")
    for key in KEYS:
        b = f"{base[key]:.4f} ± {base.errors[key]:.4f}"
        n = f"{net[key]:.4f} ± {net.errors[key]:.4f}"
        print(f"  {key:<14}{b:>22}{n:>22}")
    targets = {
        "nmad_better_than_baseline": bool(net["nmad"] < base["nmad"]),
        "outlier_0.05_better_than_baseline": bool(net["outlier_0.05"] < base["outlier_0.05"]),
        "pit_ks_after_calibration_le_0.05": bool(net["pit_ks"] <= 0.05),
        "coverage_68_in_0.63_0.73": bool(0.63 <= net["coverage_68"] <= 0.73),
    }
    print("targets: " + ", ".join(f"{k} {v}" for k, v in targets.items()))
    if args.write_card:
        weights = Path(args.weights) if args.weights else Path(model.meta["weights"])
        card_path = weights.with_suffix(".json")
        card = json.loads(card_path.read_text())
        card["baseline_test"] = {
            "method": f"photutils aperture asinh magnitudes (9 bands) + kNN (k={args.k}), "
                      "fitted on the same train split (benchmarks/bench_baseline.py)",
            **{k: round(float(base[k]), 4) for k in KEYS}}
        card["targets"] = {**targets, "test_split": {k: round(float(net[k]), 4) for k in KEYS},
                           "n_test": int(len(z_test))}
        card_path.write_text(json.dumps(card, indent=1) + "\n")
        print(f"wrote baseline_test and targets into {card_path}")


if __name__ == "__main__":
    main()
