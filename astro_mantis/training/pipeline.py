# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The whole recipe in one call: train, calibrate, evaluate, export.

`~astro_mantis.training.pipeline.fit_and_export` is what ``astro-mantis train`` runs:
`~astro_mantis.training.train` on the training split (early stopping on the validation split),
temperature scaling and a PIT recalibration fitted on the validation split, metrics on the
validation and test splits with that calibration, and `~astro_mantis.training.export_model` of
the best weights with a model card that records all of it.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..logger import log
from .calibration import PITMap, TemperatureCalibration
from .export import ExportResult, export_model
from .loop import (TrainingConfig, TrainingData, TrainResult, calibrate_tta, collect_logits,
                   epoch_metrics, model_exposure, train)

__all__ = ["fit_and_export", "FitResult", "split_metrics", "training_redshifts"]


def split_metrics(logits, z, temperature=1.0, n_bootstrap=200, seed=0, pit_map=None):
    """Metrics of one split for the model card.

    Parameters
    ----------
    logits : `numpy.ndarray`
        Shape ``(N, nbins)``.
    z : `numpy.ndarray`
        True redshifts.
    temperature : float
        Softmax temperature.
    n_bootstrap : int
        Bootstrap resamples for the standard errors.
    seed : int
        Seed of the bootstrap.
    pit_map : `~astro_mantis.training.calibration.PITMap`, optional
        PIT recalibration applied after the temperature.

    Returns
    -------
    dict
        ``n``, ``temperature``, ``pit_recalibrated``, ``nll`` (of the temperature-scaled
        softmax) and the entries of
        `astro_mantis.metrics.photoz_metrics` (point estimate: the PDF mean) with
        their standard errors under ``errors``.
    """
    from ..metrics import photoz_metrics
    from ..pdf import RedshiftPDF

    pdf = RedshiftPDF.from_logits(logits, temperature=temperature)
    if pit_map is not None:
        pdf = pit_map.apply(pdf)
    m = photoz_metrics(None, z, pdf=pdf, n_bootstrap=n_bootstrap, seed=seed)
    out = {"n": int(len(z)), "temperature": float(temperature),
           "pit_recalibrated": pit_map is not None,
           "nll": epoch_metrics(logits, z, temperature)["loss"]}
    out.update({k: float(v) for k, v in m.items()})
    out["errors"] = {k: float(v) for k, v in m.errors.items()}
    return out


@dataclass
class FitResult:
    """What `~astro_mantis.training.pipeline.fit_and_export` returns.

    Attributes
    ----------
    training : `~astro_mantis.training.loop.TrainResult`
        The training run (model with the best weights, history).
    calibration : `~astro_mantis.training.calibration.TemperatureCalibration` or None
        The fitted temperature and PIT map (None when calibration was switched off).
    metrics : dict
        Split name → `~astro_mantis.training.pipeline.split_metrics` (validation, and test when the
        data has one).
    export : `~astro_mantis.training.export.ExportResult` or None
        The written files (None when export was switched off).
    """

    training: TrainResult
    calibration: TemperatureCalibration
    metrics: dict
    export: ExportResult


def training_redshifts(z, edges=None):
    """The model card entry ``training_redshifts``: a histogram of the training redshifts.

    `astro_mantis.models.training_prior` turns it into the network's implicit prior.

    Parameters
    ----------
    z : array-like
        True redshifts of the training split.
    edges : array-like, optional
        The model's bin edges (default `~astro_mantis.pdf.Z_EDGES`).

    Returns
    -------
    dict
        ``counts`` (one int per bin), ``n`` (the redshifts counted) and ``outside``
        (those beyond the half-open edges ``[edges[0], edges[-1])``, not counted: a
        redshift equal to the last edge is outside, as in the model's bins).
    """
    from ..pdf import Z_EDGES

    z = np.asarray(z, dtype=np.float64)
    edges = np.asarray(Z_EDGES if edges is None else edges, dtype=np.float64)
    inside = z[(z >= edges[0]) & (z < edges[-1])]  # np.histogram closes its last bin
    counts, _ = np.histogram(inside, bins=edges)
    return {"counts": [int(c) for c in counts], "n": int(counts.sum()),
            "outside": int(len(z) - counts.sum())}


def fit_and_export(model, data_dir, out_dir, name=None, *, calibrate=True, pit=True, export=True,
                   command=None, card_extra=None, cache_dir=None, cache_dtype=None,
                   n_bootstrap=200, tta_calibration=False, **train_kwargs):
    """Train a model, calibrate it, evaluate it and export it with its model card.

    Parameters
    ----------
    model : str or `torch.nn.Module`
        Registry name (e.g. ``"mantis-mini"``) or module; see `~astro_mantis.training.loop.train`.
    data_dir : str, path-like or `~astro_mantis.training.loop.TrainingData`
        Training data directory (splits ``train``, ``validation`` and optionally
        ``test``).
    out_dir : str or path-like
        Output directory: the training files (``checkpoint.pt``, ``best_model.pt``,
        ``metrics.jsonl``) and the export ``<name>.safetensors`` + ``<name>.json``.
    name : str, optional
        Name of the exported model (default: the registry name, or the module's class
        name).
    calibrate : bool
        Fit the softmax temperature on the validation split.
    pit : bool
        With ``calibrate``, also fit a PIT recalibration map on the validation split
        (`~astro_mantis.training.calibration.PITMap`).
    export : bool
        Write the weights and model card.
    command : str, optional
        Command line recorded in the model card.
    card_extra : dict, optional
        Further model card entries (e.g. ``limits``).
    cache_dir, cache_dtype
        Fused cache settings (see `~astro_mantis.training.data.ShardDataset`); default:
        those of the training settings (``config=`` or keywords), else
        ``out_dir/fused_cache`` and float16.
    n_bootstrap : int
        Bootstrap resamples of the reported metrics' errors.
    tta_calibration : bool
        With ``calibrate`` and ``pit``, also fit the PIT map of the 8-transform
        averages (`~astro_mantis.training.calibrate_tta`, the card's
        ``calibration_tta``, which `astro_mantis.models.predict` applies with
        ``tta=True``) and add their test metrics as ``metrics["test_tta"]``: eight
        more passes over the validation and test splits.
    **train_kwargs
        Passed to `~astro_mantis.training.train` (``config=``, ``epochs``,
        ``batch_size``, ``lr``, ``seed``, ``device``, ``resume``, ...); the data are
        fused and evaluated with the same settings (``model_kwargs``, ``workers``,
        ``num_workers``, ``batch_size``, ...), whether given here or in ``config``.

    Returns
    -------
    `FitResult`

    Raises
    ------
    ValueError
        For ``tta_calibration`` without ``calibrate`` and ``pit``.
    """
    if tta_calibration and not (calibrate and pit):
        raise ValueError("tta_calibration=True needs calibrate=True and pit=True (the TTA "
                         "map is fitted at the calibrated temperature)")
    out_dir = Path(out_dir)
    settings = dict(train_kwargs)
    cfg = TrainingConfig.from_arguments(settings.pop("config", None), (), settings)
    if cache_dir is None:
        cache_dir = cfg.cache_dir if cfg.cache_dir is not None else out_dir / "fused_cache"
    cache_dtype = cfg.cache_dtype if cache_dtype is None else cache_dtype
    progress = cfg.progress
    if isinstance(data_dir, TrainingData):
        data = data_dir
    else:
        data = TrainingData.from_directory(
            data_dir, cache_dir=cache_dir, cache_dtype=cache_dtype, progress=progress,
            workers=cfg.workers, panstarrs_exposure=model_exposure(model, cfg.model_kwargs))
    result = train(model, data, out_dir, **train_kwargs)
    net = result.model
    device = next(iter(net.parameters())).device
    bs = int(cfg.eval_batch_size or 2 * cfg.batch_size)
    workers = cfg.num_workers

    logits, z = collect_logits(net, data.validation, batch_size=bs, device=device,
                               num_workers=workers, progress=progress, desc="validation")
    calibration = TemperatureCalibration.fit(logits, z, pit=pit) if calibrate else None
    temperature = calibration.temperature if calibration is not None else 1.0
    pit_map = calibration.pit_map if calibration is not None else None
    if calibration is not None:
        log.info(f"calibration on the validation split: {calibration}")
    metrics = {"validation": split_metrics(logits, z, temperature, n_bootstrap,
                                           pit_map=pit_map)}
    if data.test is not None and len(data.test):
        tl, tz = collect_logits(net, data.test, batch_size=bs, device=device,
                                num_workers=workers, progress=progress, desc="test")
        metrics["test"] = split_metrics(tl, tz, temperature, n_bootstrap, pit_map=pit_map)
        if calibration is not None:
            metrics["test"]["uncalibrated"] = {
                k: v for k, v in split_metrics(tl, tz, 1.0, 0).items()
                if k in ("nll", "pit_ks", "coverage_68", "coverage_95", "cde_loss")}
    tta = None
    if tta_calibration:
        passes = dict(batch_size=bs, device=device, num_workers=workers, progress=progress)
        tta = calibrate_tta(net, data.validation, temperature, **passes)
        log.info(f"TTA calibration on the validation split: PIT KS {tta['before']['pit_ks']:.4f}"
                 f" -> {tta['after']['pit_ks']:.4f}")
        if "test" in metrics:
            lp, tz = collect_logits(net, data.test, desc="test (TTA)", tta=True,
                                    temperature=temperature, **passes)
            metrics["test_tta"] = split_metrics(lp, tz, 1.0, n_bootstrap,
                                                pit_map=PITMap.from_dict(tta["pit_map"]))

    exported = None
    if export:
        cfg = dict(result.config)
        name = name or cfg["model"]
        training = {
            "config": {k: v for k, v in cfg.items() if k != "data"},
            "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "stopped": result.stopped,
            "best_val_cde_loss": result.best_metric,
            "history": result.history,
            "seconds": float(np.sum([h["seconds"] for h in result.history])),
        }
        extra = dict(card_extra or {})
        extra.setdefault("training_redshifts", training_redshifts(data.train.z))
        if tta is not None:
            extra.setdefault("calibration_tta", tta)
        exported = export_model(
            net, out_dir, name, model_kwargs=cfg["model_kwargs"], temperature=temperature,
            calibration=calibration.to_dict() if calibration is not None else None,
            metrics=metrics, training=training, data=data.manifest, command=command,
            seed=cfg["seed"], epochs=result.epochs_run, extra=extra)
        log.info(f"exported {exported.weights_path} and {exported.card_path}")
    return FitResult(training=result, calibration=calibration, metrics=metrics,
                     export=exported)
