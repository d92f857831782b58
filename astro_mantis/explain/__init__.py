# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Explain and trust: why the network gave a redshift, and when not to believe it.

* `band_attribution` — per-band and per-survey Shapley values or integrated gradients
  of the PDF mean, the log probability of the spectroscopic bin or the CDE loss
  (`astro_mantis.explain.attribution`);
* `build_reference`, `ood_score`, `ood_flags`, `shift_test` — a reference embedding of
  the training set, an out-of-distribution score and flag, and a two-sample shift test
  (`astro_mantis.explain.ood`);
* `fit_surrogate`, `explain_by_example`, `fidelity` — kernel surrogates (conjugate
  kernel, projected trace NTK) and the training galaxies behind a prediction
  (`astro_mantis.explain.surrogate`);
* `layer_probes` and `weight_spectra` — PCA probes of each layer's representation and
  the singular-value spectra of the weights (`astro_mantis.explain.probes`,
  `astro_mantis.explain.spectra`).

See the "Explain and trust" guide (``docs/explain.rst``) for the methods and the papers
they come from.
"""
from ._common import (BANDS, EDGE_FRACTION, MISALIGNMENT_RADIUS, STATISTICS, SURVEYS,
                      TARGETS, band_misalignment, edge_mass, features_and_statistics,
                      features_and_widths, logits_and_features, penultimate_features,
                      statistics_from_features)
from .ood import (DEFAULT_COMPONENTS, DEFAULT_K, OOD_THRESHOLD, ReferenceEmbedding,
                  ShiftTestResult, auroc, build_reference, check_reference_weights, embed,
                  load_reference, ood_flags, ood_score, reference_path, save_reference,
                  shift_test)
from .surrogate import (DEFAULT_NTK_DIM, KERNELS, KernelSurrogate, explain_by_example,
                        fidelity, fit_surrogate, kernel_features, ntk_features, plot_examples)
from .probes import layer_activations, layer_probes, plot_layer_probes, probe_layers
from .spectra import (SpectralMonitor, hill_alpha, marchenko_pastur_edge, plot_spectral_history,
                      plot_weight_spectra, read_spectral_log, weight_spectra)
from .attribution import (METHODS, add_attribution_columns, band_attribution,
                          coalition_values, plot_survey_shares, shapley_from_values,
                          survey_shares_by_redshift)

__all__ = ["band_attribution", "shapley_from_values", "coalition_values",
           "add_attribution_columns", "survey_shares_by_redshift", "plot_survey_shares",
           "penultimate_features", "features_and_widths", "features_and_statistics",
           "statistics_from_features",
           "edge_mass", "band_misalignment", "STATISTICS", "EDGE_FRACTION",
           "MISALIGNMENT_RADIUS", "embed", "ReferenceEmbedding",
           "build_reference", "check_reference_weights",
           "reference_path", "save_reference", "load_reference", "ood_score", "ood_flags",
           "shift_test", "ShiftTestResult", "auroc", "OOD_THRESHOLD", "DEFAULT_COMPONENTS",
           "DEFAULT_K", "ntk_features", "kernel_features", "KernelSurrogate", "fit_surrogate",
           "fidelity", "explain_by_example", "plot_examples", "DEFAULT_NTK_DIM", "KERNELS",
           "layer_probes", "layer_activations", "probe_layers", "plot_layer_probes",
           "weight_spectra", "marchenko_pastur_edge", "hill_alpha", "plot_weight_spectra",
           "SpectralMonitor", "read_spectral_log", "plot_spectral_history",
           "logits_and_features", "BANDS", "SURVEYS", "TARGETS", "METHODS"]
