"""Photo-z networks: architectures, the weight registry and inference.

* `build_model` — an architecture with fresh random weights (no download);
* `load_model` — with trained weights (bundled ``mantis-mini``, or the published
  ``mantis-shrimp-v1`` checkpoint from a path or URL);
* `predict` — cutouts or fused arrays → `~astro_mantis.pdf.RedshiftPDF`, in the
  precision `resolve_precision` picks for the device (`astro_mantis.models.precision`).

Every model takes the early-fused images (N, 9, 120, 120) of
`astro_mantis.fusion.early_fusion` and the two dust values (N, 2), and returns logits
over 400 redshift bins on 0 ≤ z < 1.6. Importing this package imports torch (not
timm: only the ``mantis-shrimp-v1`` architecture needs it).
"""
from .inference import (clear_model_cache, dihedral_transforms, get_model, pit_map_for,
                        predict, predict_logits, tta_probabilities)
from .mantis_shrimp import MantisShrimp, PhotoZNet, build_mantis_shrimp_v1
from .mini import MantisMini, MiniBackbone, build_mantis_mini
from .precision import (PRECISIONS, native_precisions, pdf_total_variation, quantize_int8,
                        resolve_precision)
from .registry import (ModelSpec, WeightsError, available_models, build_model, get_spec,
                       load_model, load_state_dict, read_state_dict, register_model, save_model,
                       select_device, training_prior, verify_file)

__all__ = ["predict", "predict_logits", "dihedral_transforms", "clear_model_cache", "get_model",
           "pit_map_for", "tta_probabilities",
           "build_model", "load_model", "save_model", "available_models", "get_spec",
           "register_model", "ModelSpec", "WeightsError", "read_state_dict", "load_state_dict",
           "verify_file", "select_device", "PhotoZNet", "MantisShrimp", "MantisMini",
           "MiniBackbone", "build_mantis_shrimp_v1", "build_mantis_mini", "PRECISIONS",
           "resolve_precision", "native_precisions", "pdf_total_variation", "quantize_int8",
           "training_prior"]
