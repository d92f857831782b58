#!/usr/bin/env python
# Licensed under a 3-clause BSD style license - see LICENSE
"""Make the per-bin figure of the model card (``docs/model_card.rst``).

Run from anywhere, with astro_mantis installed::

    python docs/make_model_card_figures.py

It draws the bundled model's evaluation on its 4,096-galaxy mock test set and on the
shifted-simulator set, per bin of true redshift, from the files the recipe's
evaluation stage wrote (`astro_mantis.training.evaluation.evaluate_model`):
``benchmarks/results/mantis-mini_test.json`` and ``mantis-mini_shifted.json``.
Nothing is recomputed, so the figure shows exactly the numbers of the card's tables.
Writes ``docs/_static/model_card_bins.png``.
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = Path(__file__).resolve().parent / "_static" / "model_card_bins.png"
SETS = (("test", "test set", "C0", "o"), ("shifted", "shifted simulator", "C3", "s"))


def _read(name):
    with open(RESULTS / f"mantis-mini_{name}.json", encoding="utf8") as f:
        return json.load(f)


def _column(rows, key):
    """Bin centres, values and errors of one metric; bins without a value dropped."""
    rows = [r for r in rows if r["bin"] != "all" and r.get(key) is not None]
    centre = np.array([(r["z_lo"] + r["z_hi"]) / 2 for r in rows])
    value = np.array([r[key] for r in rows], dtype=float)
    error = np.array([r.get(f"{key}_err") or 0.0 for r in rows], dtype=float)
    return centre, value, error


def main():
    data = {name: _read(name) for name, *_ in SETS}
    fig = Figure(figsize=(12, 3.9), layout="constrained")
    axes = fig.subplots(1, 3, sharex=True)
    offsets = {"test": -0.012, "shifted": 0.012}  # side by side within a bin
    for name, label, colour, marker in SETS:
        d = data[name]
        point = d.get("recommended_point_estimate", "median")
        dx = offsets[name]
        rows = d["binned"][point]
        overall = next(r for r in rows if r["bin"] == "all")
        z, v, e = _column(rows, "nmad")
        axes[0].errorbar(z + dx, v, e, fmt=marker, color=colour, ms=4, capsize=2,
                         label=f"{label} (all: {overall['nmad']:.3f})")
        z, v, e = _column(rows, f"bias_{point}")
        axes[1].errorbar(z + dx, v, e, fmt=marker, color=colour, ms=4, capsize=2,
                         label=label)
        for level, fill in (("68", True), ("95", False)):
            z, v, e = _column(d["binned"]["pdf"], f"coverage_{level}")
            axes[2].errorbar(z + dx, v, e, fmt=marker, color=colour, ms=4, capsize=2,
                             mfc=colour if fill else "white",
                             label=label if fill else None)
    axes[0].set_ylabel("NMAD of (z_median − z) / (1 + z)")
    axes[0].set_ylim(bottom=0)
    axes[1].axhline(0, color="0.3", lw=1)
    axes[1].axhspan(-0.01, 0.01, color="0.9", lw=0, zorder=0)
    axes[1].set_ylabel("median bias of z_median")
    for level in (0.68, 0.95):
        axes[2].axhline(level, color="0.3", lw=1, ls="--")
    axes[2].set_ylabel("fraction of true z inside the interval")
    axes[2].set_ylim(0.3, 1.02)
    titles = ("scatter", "bias (grey: ±0.01)", "coverage of the credible intervals")
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("true redshift (bins of 0.1)")
        ax.set_xlim(0, 1.5)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small", loc="upper left")
    axes[2].legend(fontsize="small", loc="lower left",
                   title="filled: 68 % interval\nopen: 95 % interval",
                   title_fontsize="small")
    n = data["test"]["n"]
    fig.suptitle(f"mantis-mini per bin of true redshift: {n:,} simulated test galaxies and "
                 f"{data['shifted']['n']:,} of the shifted simulator (bins of ≥ 50 galaxies)")
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
