# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Explain and trust: why the network gave a redshift, and when not to believe it.

* `band_attribution` — per-band and per-survey Shapley values or integrated gradients
  of the PDF mean, the log probability of the spectroscopic bin or the CDE loss
  (`astro_mantis.explain.attribution`).

See the "Explain and trust" guide (``docs/explain.rst``) for the methods and the papers
they come from.
"""
from ._common import BANDS, SURVEYS, TARGETS, penultimate_features
from .attribution import (METHODS, add_attribution_columns, band_attribution,
                          coalition_values, plot_survey_shares, shapley_from_values,
                          survey_shares_by_redshift)

__all__ = ["band_attribution", "shapley_from_values", "coalition_values",
           "add_attribution_columns", "survey_shares_by_redshift", "plot_survey_shares",
           "penultimate_features", "BANDS", "SURVEYS", "TARGETS", "METHODS"]
