# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Training, calibration and export of the redshift networks.

The pieces, in the order a run uses them (``astro-mantis train`` chains them all):

* `astro_mantis.training.data`: datasets over the shards of a training data
  directory (fused once into a memory-mapped cache), augmentation, targets, samplers;
* `astro_mantis.training.loop`: `~astro_mantis.training.loop.train` with its settings in a
  `~astro_mantis.training.loop.TrainingConfig` (AdamW, warm-up + cosine
  schedule, cross-entropy over the redshift bins, checkpoints with exact resume, early stopping on
  the validation CDE loss, metrics log);
* `astro_mantis.training.calibration`: temperature scaling and a PIT recalibration
  map fitted on the validation split, with PIT diagnostics before and after;
* `astro_mantis.training.export`: ``safetensors`` weights and a JSON model card.
"""
from .calibration import PITMap, TemperatureCalibration, fit_temperature, tta_calibration
from .data import ArrayDataset, ShardDataset, augment, balanced_weights, soft_targets, z_to_bin
from .export import export_model, read_model_card, verify_export
from .loop import (TrainingData, TrainResult, calibrate_model, calibrate_tta, collect_logits,
                   evaluate, train)

__all__ = ["train", "TrainResult", "TrainingData", "collect_logits", "evaluate",
           "ArrayDataset", "ShardDataset", "augment", "balanced_weights", "soft_targets",
           "z_to_bin", "TemperatureCalibration", "PITMap", "fit_temperature", "calibrate_model",
           "calibrate_tta", "tta_calibration",
           "export_model", "read_model_card", "verify_export"]
