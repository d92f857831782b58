"""From cutouts to model input: the published early-fusion recipe and its variants.

Laid out like ``reproject``: `astro_mantis.fusion.core` holds the array math
(normalisations, crops, resizing, NaN filling) on plain `numpy` arrays, and
`astro_mantis.fusion.high_level` the functions that take
`~astro_mantis.MultiSurveyCutout` objects. The names users need are importable
from here:

* `early_fusion` — the 9 × 120 × 120 input of the published ``mantis-shrimp-v1``
  (and of ``mantis-mini``), plus the two dust values, a per-channel validity mask
  and flags;
* `late_fusion` — per-survey normalised images at their native pixel grids;
* `reproject_fusion` — all nine channels resampled onto one sky grid with
  flux-conserving reprojection, for new models;
* `fuse_arrays` — the early fusion of plain per-survey arrays (training shards);
* `fuse_arrays_batched` — the same, threaded and in place, bit for bit identical
  (`astro_mantis.fusion.batched`); `fuse_arrays_torch` — the recipe in torch on the
  inference device (a GPU); `fuse_arrays_fast` — the recipe in one compiled pass
  straight into a reduced precision (bfloat16 networks on a CPU).

Importing this package does not import torch (only the resize step does).
"""
from .core import (CHANNELS, NAN_POLICIES, OUTPUT_SIZE, RECIPE, FusedInput, center_crop,
                   dust_array, fill_nonfinite, fuse_arrays, fuse_survey, inpaint_nans, normalise,
                   normalise_galex, normalise_panstarrs, normalise_unwise, resize_bilinear)
from .batched import fuse_arrays_batched, fuse_arrays_fast, fuse_arrays_torch, has_native_fusion
from .high_level import LateFusedInput, early_fusion, late_fusion, reproject_fusion

__all__ = ["early_fusion", "late_fusion", "reproject_fusion", "fuse_arrays", "fuse_survey",
           "fuse_arrays_batched", "fuse_arrays_torch", "fuse_arrays_fast", "has_native_fusion",
           "FusedInput", "LateFusedInput", "CHANNELS", "RECIPE", "OUTPUT_SIZE", "NAN_POLICIES",
           "dust_array", "normalise", "normalise_galex", "normalise_panstarrs",
           "normalise_unwise", "center_crop", "resize_bilinear", "fill_nonfinite",
           "inpaint_nans"]
