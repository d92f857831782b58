"""Test-time augmentation of the bundled model: its own calibration, and what it gains.

``predict(tta=True)`` averages ``softmax(logits / T)`` over the 8 flips and rotations.
The average is broader than one pass, so the card's PIT map, fitted to single passes,
does not fit it. This script fits the map of the averages on a validation split
(`astro_mantis.training.calibrate_tta`), then prints, on a test split and on the
shifted-simulator set, three ways of predicting side by side: one pass (the default),
TTA with the single-pass map (what ``predict`` did before cards had
``calibration_tta``), and TTA with its own map. With ``--write-card`` it records the map
in the weights' card as ``calibration_tta`` (which ``predict(tta=True)`` then applies)
and the figures as ``evaluation_tta``. Point estimate: the PDF median. Simulated
galaxies: no figure here describes the real sky.

Two negative log-likelihoods are printed, both in nats per galaxy of the true
redshift's bin (the training loss's units): ``nll`` (printed ``nll_before_map``) is
taken *before* the PIT map, of ``softmax(logits / T)`` for one pass and of the
8-transform average for TTA, as `~astro_mantis.training.calibration.calibration_summary`
reports it, so the two TTA rows, which differ only in their map, always show the same
value; ``nll_calibrated`` is taken on the PDF each row predicts (the PIT map applied),
like the other columns.

Usage::

    python benchmarks/bundled_tta.py --validation WORKDIR/data/validation \\
        --test WORKDIR/data/test --shifted WORKDIR/data/shifted [--write-card]
"""
import argparse
import json
import warnings
from pathlib import Path

import numpy as np

COLUMNS = ("nmad", "outlier_0.05", "outlier_0.15", "crps", "nll", "nll_calibrated",
           "pit_ks", "coverage_68", "coverage_95", "worst_bin_bias")
#: printed headers where they differ from the keys (the card keeps the keys)
HEADERS = {"nll": "nll_before_map"}


def calibrated_nll(pdf, z):
    """Mean -log of the probability ``pdf`` (the PIT map applied) gives the true
    redshift's bin, nats per galaxy: the units of `~astro_mantis.training.nll`."""
    from astro_mantis.training.data import z_to_bin

    k = z_to_bin(np.asarray(z, float), pdf.edges)
    p = pdf.probabilities()[np.arange(len(k)), k]
    with np.errstate(divide="ignore"):  # a bin the map empties: -log 0 = inf, kept
        return float(-np.mean(np.log(p)))


def figures(pdf, z, log_probs):
    """The summary row of one way of predicting: median-based and PDF metrics."""
    from astro_mantis.metrics import binned_metrics, photoz_metrics
    from astro_mantis.training.calibration import nll

    zp = pdf.median()
    m = photoz_metrics(zp, z, pdf=pdf, n_bootstrap=0)
    bins = binned_metrics(z, z_point=zp, n_bootstrap=0)
    bias = np.asarray(bins["bias_median"])[np.asarray(bins["n"]) >= 50]
    row = {k: float(m[k]) for k in COLUMNS if k in m}
    row["nll"] = float(nll(log_probs, z, 1.0))  # before the PIT map
    row["nll_calibrated"] = calibrated_nll(pdf, z)
    row["worst_bin_bias"] = float(np.nanmax(np.abs(bias)))
    return {k: row[k] for k in COLUMNS}


def main(argv=None):
    from astro_mantis.fusion.exposure import model_panstarrs_exposure
    from astro_mantis.models import load_model
    from astro_mantis.models.precision import machine_summary
    from astro_mantis.models.registry import DATA_DIR
    from astro_mantis.training import ShardDataset, calibrate_tta, collect_logits
    from astro_mantis.training.evaluation import calibrated_pdf

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--validation", required=True,
                        help="directory with a validation split (make_dataset)")
    parser.add_argument("--test", required=True, help="directory with a test split")
    parser.add_argument("--shifted", default=None,
                        help="directory with the shifted-simulator set (its test split)")
    parser.add_argument("--weights", default=None,
                        help="mantis-mini weights (.safetensors; default: the bundled ones)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--write-card", action="store_true",
                        help="record calibration_tta and evaluation_tta in the weights' card")
    args = parser.parse_args(argv)

    net = load_model("mantis-mini", weights=args.weights)
    meta = dict(net.meta)
    meta.pop("calibration_tta", None)
    exposure = model_panstarrs_exposure(net)
    temperature = float(meta.get("temperature") or 1.0)
    print(machine_summary())

    def dataset(directory, split):
        return ShardDataset(directory, split, panstarrs_exposure=exposure)

    tta = calibrate_tta(net, dataset(args.validation, "validation"), temperature,
                        batch_size=args.batch_size)
    print(f"calibration_tta on {tta['before']['n']} validation galaxies: PIT KS "
          f"{tta['before']['pit_ks']:.4f} -> {tta['after']['pit_ks']:.4f}, 68% coverage "
          f"{tta['before']['coverage68']:.3f} -> {tta['after']['coverage68']:.3f}")
    sets = {"test": args.test}
    if args.shifted:
        sets["shifted"] = args.shifted
    results = {}
    for name, directory in sets.items():
        ds = dataset(directory, "test")
        logits, z = collect_logits(net, ds, batch_size=args.batch_size)
        log_probs, _ = collect_logits(net, ds, batch_size=args.batch_size, tta=True,
                                      temperature=temperature)
        scaled = logits / temperature
        rows = {"one pass": figures(calibrated_pdf(logits, meta), z, scaled)}
        with warnings.catch_warnings():  # the missing calibration_tta is the point here
            warnings.simplefilter("ignore", UserWarning)
            rows["TTA, single-pass map"] = figures(calibrated_pdf(log_probs, meta, tta=True),
                                                   z, log_probs)
        rows["TTA, own map"] = figures(
            calibrated_pdf(log_probs, {**meta, "calibration_tta": tta}, tta=True), z, log_probs)
        results[name] = {"n": int(len(z)), "rows": rows}
        print(f"\n{name} set, {len(z)} galaxies (PDF median; worst bin: largest |median "
              "bias| over bins of 0.1 with >= 50 galaxies)")
        print(f"{'':22s}" + "".join(f"{HEADERS.get(c, c):>15s}" for c in COLUMNS))
        for label, row in rows.items():
            print(f"{label:22s}" + "".join(f"{row[c]:15.4f}" for c in COLUMNS))

    if args.write_card:
        weights = Path(args.weights) if args.weights else DATA_DIR / "mantis-mini.safetensors"
        card_path = weights.with_suffix(".json")
        card = json.loads(card_path.read_text())
        command = ("python benchmarks/bundled_tta.py --validation WORKDIR/data/"
                   f"{Path(args.validation).name} --test WORKDIR/data/{Path(args.test).name}"
                   + (f" --shifted WORKDIR/data/{Path(args.shifted).name}" if args.shifted
                      else "") + " --write-card")
        card["calibration_tta"] = {**tta, "command": command}
        card["evaluation_tta"] = {"point_estimate": "median", "command": command, **results}
        card_path.write_text(json.dumps(card, indent=1) + "\n")
        print(f"\nwrote calibration_tta and evaluation_tta into {card_path}")


if __name__ == "__main__":
    main()
