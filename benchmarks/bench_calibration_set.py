"""Calibrate the bundled model on a validation set whose colours depart from the templates.

The recipe fits the temperature and the PIT map on its validation set, drawn with the
default training randomisation: its galaxies' colours are exact template mixtures. The
ninth stage of ``mantis-mini`` was trained on galaxies whose magnitudes carry real SDSS
galaxies' departures from their templates (``Randomisation(colour_departures=1.0)``), so
its PIT map pulls the PDFs back towards the widths that template-exact galaxies need.
This script asks what a calibration set drawn like the training set would change:

1. it renders the recipe's validation galaxies again (same seed, so the same galaxies,
   fields and draws: the departures are drawn last) with ``colour_departures`` added
   (``--colour-departures``, default 1.0), into ``--calibration-data`` (kept, and
   completed rather than rendered again when present);
2. it refits the PIT map there at the card's temperature (``--refit-temperature`` also
   refits the temperature, as the recipe does);
3. it prints the calibration on that set, then the test and shifted-simulator sets'
   metrics (PDF median) under the card's calibration and under the new one;
4. with ``--out DIR`` it writes the weights, the OOD reference and a copy of the card
   with the new calibration (``fitted_on`` says on what; the TTA map, fitted on the old
   validation set, is left out, so ``tta=True`` falls back to the new single-pass map
   with a warning), for ``bench_real_population.py --weights DIR/mantis-mini.safetensors``.

Nothing is written into the bundled card. The images are the package's simulator's.
Usage (about 3 minutes on two cores, plus 1 to render)::

    python benchmarks/bench_calibration_set.py --validation WORKDIR/data/validation \\
        --test WORKDIR/data/test --shifted WORKDIR/data/shifted \\
        --calibration-data WORKDIR/data/validation_dep1 --out WORKDIR/calib_dep1
"""
import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from _machine import cpu_model

COLUMNS = ("nmad", "outlier_0.05", "crps", "pit_ks", "coverage_68", "coverage_95")


def render_like(validation, path, colour_departures, workers):
    """Render the galaxies of the recipe's validation set ``validation`` again into
    ``path``, with ``colour_departures`` added to its randomisation."""
    from astro_mantis.simulate.dataset import dataset_config, make_dataset
    from astro_mantis.simulate.randomise import training_randomisation
    from astro_mantis.training.recipe import _SPLIT_OF

    manifest = json.loads((Path(validation) / "manifest.json").read_text())
    rand = training_randomisation()
    if repr(rand) not in manifest["config"]:
        raise SystemExit(f"{validation} was not rendered with the training randomisation "
                         "(is it the recipe's validation set?)")
    rand = dataclasses.replace(rand, colour_departures=colour_departures)
    n = int(manifest["splits"]["validation"]["n"])
    make_dataset(n, path, seed=int(manifest["seed"]),
                 config=dataset_config(n, randomisation=rand),
                 split=_SPLIT_OF["validation"], workers=workers, progress=False)


def scores(pdf, z):
    from astro_mantis.metrics import photoz_metrics

    return photoz_metrics(pdf.median(), z, pdf=pdf)


def main(argv=None):
    from astro_mantis.fusion.exposure import model_panstarrs_exposure
    from astro_mantis.models import load_model
    from astro_mantis.models.registry import DATA_DIR
    from astro_mantis.training import ShardDataset, collect_logits
    from astro_mantis.training.calibration import (PITMap, TemperatureCalibration,
                                                   calibration_summary, pit_values)
    from astro_mantis.training.evaluation import calibrated_pdf

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--validation", required=True, help="the recipe's WORKDIR/data/validation")
    p.add_argument("--test", required=True, help="the recipe's WORKDIR/data/test")
    p.add_argument("--shifted", default=None, help="the recipe's WORKDIR/data/shifted")
    p.add_argument("--calibration-data", required=True,
                   help="where the validation galaxies with departures are rendered")
    p.add_argument("--colour-departures", type=float, default=1.0,
                   help="Randomisation.colour_departures of the calibration set")
    p.add_argument("--refit-temperature", action="store_true",
                   help="refit the temperature too (default: keep the card's)")
    p.add_argument("--weights", default=None, help="mantis-mini weights (default: bundled)")
    p.add_argument("--out", default=None,
                   help="write weights + card with the new calibration into this directory")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    args = p.parse_args(argv)

    render_like(args.validation, args.calibration_data, args.colour_departures, args.workers)
    net = load_model("mantis-mini", weights=args.weights)
    meta = dict(net.meta)
    exposure = model_panstarrs_exposure(net)

    def logits_of(directory, split):
        return collect_logits(net, ShardDataset(directory, split, panstarrs_exposure=exposure),
                              batch_size=args.batch_size, progress=False)

    logits, z = logits_of(args.calibration_data, "validation")
    if args.refit_temperature:
        cal = TemperatureCalibration.fit(logits, z)
    else:
        t = float(meta.get("temperature") or 1.0)
        pit_map = PITMap.fit(pit_values(logits, z, t))
        cal = TemperatureCalibration(
            temperature=t, before=calibration_summary(logits, z, 1.0),
            after=calibration_summary(logits, z, t, pit_map=pit_map), pit_map=pit_map,
            method="temperature scaling + PIT recalibration")
    fitted_on = (f"validation galaxies with colour_departures={args.colour_departures:g} "
                 "(benchmarks/bench_calibration_set.py)"
                 + ("" if args.refit_temperature else "; temperature kept from the card"))
    calibration = {**cal.to_dict(), "fitted_on": fitted_on}
    new = {**meta, "temperature": cal.temperature, "calibration": calibration}
    new.pop("calibration_tta", None)

    print(f"CPU: {cpu_model()}; SIMULATED galaxies, not the real sky")
    old_cov = scores(calibrated_pdf(logits, meta), z)["coverage_68"]
    print(f"calibration set: {len(z)} validation galaxies with colour departures x"
          f"{args.colour_departures:g}; the card's calibration gives them 68 % coverage "
          f"{old_cov:.3f}; new: {cal}")
    sets = {"test": args.test}
    if args.shifted:
        sets["shifted"] = args.shifted
    print(f"{'set':8s} {'calibration':14s}" + "".join(f"{c:>14s}" for c in COLUMNS))
    for name, directory in sets.items():
        lt, zt = logits_of(directory, "test")
        for label, m in (("card", meta), ("departures", new)):
            row = scores(calibrated_pdf(lt, m), zt)
            print(f"{name:8s} {label:14s}" + "".join(f"{row[c]:14.4f}" for c in COLUMNS))

    if args.out:
        weights = Path(args.weights) if args.weights else DATA_DIR / "mantis-mini.safetensors"
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(weights, out / "mantis-mini.safetensors")
        ood = weights.with_suffix("").with_suffix(".ood.npz")
        if ood.exists():
            shutil.copy(ood, out / "mantis-mini.ood.npz")
        card = json.loads(weights.with_suffix(".json").read_text())
        card.update(temperature=cal.temperature, calibration=calibration)
        card.pop("calibration_tta", None)
        (out / "mantis-mini.json").write_text(json.dumps(card, indent=1) + "\n")
        print(f"wrote {out / 'mantis-mini.safetensors'} with the new calibration in its card")


if __name__ == "__main__":
    main()
