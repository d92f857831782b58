"""The bundled model's bfloat16-on-CPU accuracy check, measured on its validation set.

``predict(precision="auto")`` runs a model in bfloat16 on CPUs that have the
instructions for it only where its PDFs stay within a mean total-variation distance of
``TV_TOLERANCE`` (0.01) of float32's. Without a record it checks the first batch it
sees, so a model near the bar could be run in either precision depending on which
galaxies come first. This script measures the distance once, on all the galaxies of a
validation split (fused with the model's ``panstarrs_exposure``), prints it with the
shift of the PDF medians, and with ``--write-card`` records it in the weights' card as
``precision_check`` (`astro_mantis.models.precision.recorded_cpu_bfloat16_tv`), which
``"auto"`` then follows on CPUs. Run it on a CPU with AVX512-BF16 or AMX-BF16.

Usage::

    python benchmarks/bundled_precision.py --data WORKDIR/data/validation [--write-card]
"""
import argparse
import json
from pathlib import Path

import numpy as np


def main(argv=None):
    from astro_mantis.fusion.exposure import model_panstarrs_exposure
    from astro_mantis.models import load_model, pdf_total_variation, predict
    from astro_mantis.models.precision import TV_TOLERANCE, machine_summary
    from astro_mantis.models.registry import DATA_DIR
    from astro_mantis.training.data import read_fused

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="directory written by make_dataset")
    parser.add_argument("--split", default="validation", help="split of --data to use")
    parser.add_argument("--weights", default=None,
                        help="mantis-mini weights (.safetensors; default: the bundled ones)")
    parser.add_argument("--write-card", action="store_true",
                        help="record the result in the weights' card as precision_check")
    args = parser.parse_args(argv)

    net = load_model("mantis-mini", weights=args.weights)
    x, dust, _, _ = read_fused(args.data, args.split, None, model_panstarrs_exposure(net))
    ref = predict(x, model=net, dust=dust, precision="float32")
    low = predict(x, model=net, dust=dust, precision="bfloat16")
    tv = float(pdf_total_variation(ref, low))
    shift = np.abs(low.median() - ref.median())
    print(machine_summary())
    print(f"{len(x)} galaxies of the {args.split} split: mean PDF total variation "
          f"bfloat16 vs float32 {tv:.4f} (bar {TV_TOLERANCE}); |shift of z_median| median "
          f"{np.median(shift):.4f}, largest {shift.max():.4f}; \"auto\" on CPUs: "
          + ("float32" if tv > TV_TOLERANCE else "bfloat16"))
    if args.write_card:
        weights = Path(args.weights) if args.weights else DATA_DIR / "mantis-mini.safetensors"
        card_path = weights.with_suffix(".json")
        card = json.loads(card_path.read_text())
        card["precision_check"] = {
            "cpu_bfloat16_tv": round(tv, 5),
            "tolerance": TV_TOLERANCE,
            "auto_on_cpu": "float32" if tv > TV_TOLERANCE else "bfloat16",
            "median_abs_shift_z_median": round(float(np.median(shift)), 5),
            "data": f"the {len(x)} galaxies of the {args.split} split of "
                    f"WORKDIR/data/{Path(args.data).name}",
            "command": "python benchmarks/bundled_precision.py --data "
                       f"WORKDIR/data/{Path(args.data).name} --write-card",
        }
        card_path.write_text(json.dumps(card, indent=1) + "\n")
        print(f"wrote precision_check into {card_path}")


if __name__ == "__main__":
    main()
