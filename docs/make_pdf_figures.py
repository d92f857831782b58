#!/usr/bin/env python
# Licensed under a 3-clause BSD style license - see LICENSE
"""Make the figures of the redshift PDF and metrics page (``docs/pdf.rst``).

Run from anywhere, with astro_mantis installed::

    python docs/make_pdf_figures.py

Everything is synthetic and seeded, so the figures are reproducible:

* ``docs/_static/pdf_example.png``: one two-peaked PDF with its mean, median, mode
  and central 68% interval (`RedshiftPDF.plot`).
* ``docs/_static/pdf_metrics.png``: a calibrated ensemble of Gaussian PDFs with true
  redshifts drawn from them, shown with `plot_zphot_zspec`, `plot_pit` (next to the
  PIT of the same PDFs made twice too narrow) and `plot_nz`.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from astro_mantis.metrics import (photoz_metrics, plot_nz, plot_pit,  # noqa: E402
                                  plot_zphot_zspec)
from astro_mantis.pdf import Z_CENTERS, RedshiftPDF  # noqa: E402

STATIC = Path(__file__).resolve().parent / "_static"


def example_pdf():
    """A two-peaked PDF where mean, median and mode differ."""
    z = Z_CENTERS
    density = (0.7 * np.exp(-0.5 * ((z - 0.42) / 0.035) ** 2) / 0.035
               + 0.3 * np.exp(-0.5 * ((z - 0.75) / 0.06) ** 2) / 0.06)
    return RedshiftPDF(density)


def calibrated_ensemble(n=4000, seed=1):
    """Gaussian PDFs and true redshifts drawn from them (a calibrated ensemble).

    Returns
    -------
    pdf, narrow, z_true
        The PDFs, the same PDFs with half the width, and the true redshifts.
    """
    rng = np.random.default_rng(seed)
    z_true_mean = np.clip(rng.gamma(4.0, 0.1, n), 0.02, 1.45)
    sigma = 0.025 * (1 + z_true_mean) * rng.uniform(0.7, 1.3, n)
    # PDF centres scattered around a population like photo-z's; the true redshifts
    # are then drawn from each PDF, which makes the ensemble calibrated by construction
    centre = z_true_mean + sigma * rng.standard_normal(n)

    def gauss(width):
        return np.exp(-0.5 * ((Z_CENTERS - centre[:, None]) / width[:, None]) ** 2)

    pdf = RedshiftPDF(gauss(sigma), dtype=np.float32)
    narrow = RedshiftPDF(gauss(sigma / 2), dtype=np.float32)
    z_true = pdf.sample(seed=seed + 1)
    return pdf, narrow, z_true


def pdf_example(path=STATIC / "pdf_example.png", dpi=80):
    """Draw `example_pdf` with its summary statistics."""
    fig = Figure(figsize=(7, 3.4))
    ax = fig.subplots()
    example_pdf().plot(ax=ax, z_true=0.45)
    ax.set_xlim(0.2, 1.1)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def pdf_metrics(path=STATIC / "pdf_metrics.png", dpi=72):
    """Draw the metrics plots of `calibrated_ensemble`."""
    pdf, narrow, z_true = calibrated_ensemble()
    good = photoz_metrics(None, z_true, pdf=pdf, n_bootstrap=0)
    bad = photoz_metrics(None, z_true, pdf=narrow, n_bootstrap=0)
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 4)
    plot_zphot_zspec(pdf.mean(), z_true, ax=axes[0], s=2)
    plot_pit(good.pit, ax=axes[1])
    axes[1].set_title(f"calibrated: KS {good['pit_ks']:.3f}, "
                      f"68% cov. {good['coverage_68']:.2f}", fontsize="medium")
    plot_pit(bad.pit, ax=axes[2], color="C3")
    axes[2].set_title(f"too narrow: KS {bad['pit_ks']:.3f}, "
                      f"68% cov. {bad['coverage_68']:.2f}", fontsize="medium")
    plot_nz(z_true, pdf=pdf, ax=axes[3])
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def main():
    STATIC.mkdir(parents=True, exist_ok=True)
    for make in (pdf_example, pdf_metrics):
        path = make()
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
