# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""``astro-mantis train``: train, calibrate and export a network."""
import argparse
import sys
import time
from pathlib import Path



from .common import (EXIT_INTERRUPTED, EXIT_OK, InputError, _check_device, _count,
                     _positive_int)

__all__ = ["add_parser"]


def add_parser(sub):
    """Add the ``train`` subcommand to the ``astro-mantis`` parser's subparsers."""
    t = sub.add_parser(
        "train",
        help="train a redshift network on a training data directory",
        description=(
            "Train a redshift network (default: mantis-mini) on a training data directory,\n"
            "calibrate it and export it. DIR holds the shards of the splits train,\n"
            "validation and optionally test, and manifest.json, as written by\n"
            "astro_mantis.simulate.dataset.make_dataset.\n\n"
            "1. The shards are early-fused once into a memory-mapped cache\n"
            "   (OUT/fused_cache unless --cache-dir).\n"
            "2. AdamW with a linear warm-up and a cosine learning-rate schedule minimises\n"
            "   the cross-entropy over the 400 redshift bins, with random rotations, flips\n"
            "   and +-2 px shifts. After every epoch the validation split is evaluated,\n"
            "   a line is appended to OUT/metrics.jsonl (train loss, val loss, val CDE\n"
            "   loss, NMAD, outlier fractions, learning rate, seconds) and the full state\n"
            "   is saved to OUT/checkpoint.pt (--resume continues from it exactly).\n"
            "   Training stops early when the validation CDE loss has not improved for\n"
            "   --patience epochs; the best epoch's weights are kept (OUT/best_model.pt).\n"
            "3. A softmax temperature (by likelihood) and then a PIT recalibration map\n"
            "   (the CDF of the validation PIT values, applied to every PDF's CDF) are\n"
            "   fitted on the validation split (PIT KS statistic and 68% coverage before\n"
            "   and after are reported).\n"
            "4. The validation and test splits are evaluated, and OUT/NAME.safetensors\n"
            "   and its model card OUT/NAME.json (data, command, seed, metrics,\n"
            "   temperature, bin edges, sha256 of the weights) are written. Copy the two\n"
            "   files into astro_mantis/data/ to bundle the model."),
        epilog="Example (the bundled mantis-mini; see the training guide):\n"
               "  astro-mantis train --data mock_data/ --out runs/mantis-mini "
               "--model mantis-mini --seed 0\n"
               "Exit status: 0 when the model was trained and exported, 2 for unusable "
               "input (no data, an existing run without --resume/--overwrite, a --resume "
               "with other settings than the run's, unknown model or device, fewer "
               "training galaxies than one batch), 130 when interrupted (Ctrl-C; 143 for "
               "SIGTERM): OUT/checkpoint.pt keeps the last finished epoch, and the same "
               "command with --resume continues.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--data", required=True, metavar="DIR",
                   help="training data directory (shards of the splits train, validation "
                        "and optionally test, with manifest.json)")
    t.add_argument("--out", "-o", required=True, metavar="DIR",
                   help="output directory for the checkpoint, metrics log, fused cache and "
                        "exported model (created if needed)")
    t.add_argument("--model", default="mantis-mini", metavar="NAME",
                   help="architecture of the astro_mantis.models registry "
                        "(default: %(default)s)")
    t.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   dest="model_args",
                   help="build argument of the architecture, e.g. --model-arg drop=0.1 or "
                        "--model-arg 'widths=[16,32,64,128]' (VALUE is read as JSON, else "
                        "kept as text); repeat for several")
    t.add_argument("--name", default=None, metavar="NAME",
                   help="name of the exported files NAME.safetensors and NAME.json "
                        "(default: the --model name)")
    t.add_argument("--epochs", type=_positive_int, default=30, metavar="N",
                   help="epochs; the cosine schedule spans them (default: %(default)s)")
    t.add_argument("--batch-size", type=_positive_int, default=64, metavar="N",
                   help="training batch size (default: %(default)s)")
    t.add_argument("--lr", type=float, default=2e-3, metavar="LR",
                   help="peak learning rate of AdamW (default: %(default)s)")
    t.add_argument("--weight-decay", type=float, default=0.05, metavar="WD",
                   help="AdamW weight decay, not applied to biases and normalisation "
                        "weights (default: %(default)s)")
    t.add_argument("--warmup-epochs", type=float, default=1.0, metavar="E",
                   help="linear learning-rate warm-up, in epochs (default: %(default)s)")
    t.add_argument("--seed", type=_count, default=0, metavar="SEED",
                   help="seed of the initial weights, sample order, augmentation and "
                        "dropout (default: %(default)s)")
    t.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda, cuda:1, mps ... "
                        "(default: %(default)s)")
    t.add_argument("--no-amp", action="store_true",
                   help="no mixed precision (used by default on CUDA and on CPUs with native "
                        "bfloat16; never on others)")
    t.add_argument("--patience", type=_count, default=5, metavar="N",
                   help="stop when the validation CDE loss has not improved for N epochs; "
                        "0 disables early stopping (default: %(default)s)")
    t.add_argument("--smoothing-sigma", type=float, default=0.0, metavar="BINS",
                   help="Gaussian-smoothed targets of this width in bins; 0 for hard "
                        "targets (default: %(default)s)")
    t.add_argument("--balanced", action="store_true",
                   help="redshift-balanced sampling (inverse n(z) weights) instead of "
                        "shuffling")
    t.add_argument("--no-augment", action="store_true",
                   help="no random rotations, flips and shifts (nor --zero-point-jitter)")
    t.add_argument("--zero-point-jitter", type=float, default=0.0, metavar="MAG",
                   help="with the augmentation, a random calibration error per band and "
                        "galaxy, uniform in [-MAG, MAG] magnitudes (default: %(default)s, off)")
    t.add_argument("--max-minutes", type=float, default=None, metavar="MIN",
                   help="time budget: start no epoch that would end after it (the result "
                        "then depends on the machine's speed; --resume continues)")
    again = t.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint")
    again.add_argument("--overwrite", action="store_true",
                       help="start afresh even if --out holds a checkpoint")
    t.add_argument("--workers", type=_count, default=0, metavar="N",
                   help="processes fusing the cutouts into the cache, and data-loader "
                        "worker processes (default: %(default)s, both in the main process)")
    t.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="CPU threads for torch (default: torch's choice)")
    t.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="directory of the fused-input cache, to share it between runs "
                        "(default: OUT/fused_cache)")
    t.add_argument("--cache-dtype", choices=("float16", "float32"), default="float16",
                   help="storage type of the fused cache (default: %(default)s)")
    t.add_argument("--no-calibrate", action="store_true",
                   help="do not calibrate: no softmax temperature (the card records T = 1) "
                        "and no PIT map")
    t.add_argument("--no-pit", action="store_true",
                   help="calibrate with the softmax temperature only, without the PIT "
                        "recalibration map")
    t.add_argument("--spectra", action="store_true",
                   help="after every epoch, log the singular values of every weight matrix "
                        "(outliers beyond the Marchenko-Pastur edge, tail exponent) to "
                        "OUT/spectra.jsonl, and plot them to OUT/spectra.png "
                        "(astro_mantis.explain.SpectralMonitor)")
    t.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    t.set_defaults(func=_cmd_train)


# ------------------------------------------------------------------------- train
def _model_args(items):
    """Parse ``--model-arg KEY=VALUE`` items into build keyword arguments."""
    import json

    out = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip().isidentifier():
            raise InputError(f"--model-arg expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _train_command(args):
    """The canonical command line of a ``train`` run, every option spelled out."""
    import shlex

    parts = ["astro-mantis", "train", "--data", str(args.data), "--out", str(args.out),
             "--model", args.model]
    for item in args.model_args:
        parts += ["--model-arg", item]
    if args.name:
        parts += ["--name", args.name]
    parts += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
              "--lr", repr(args.lr), "--weight-decay", repr(args.weight_decay),
              "--warmup-epochs", repr(args.warmup_epochs), "--seed", str(args.seed),
              "--patience", str(args.patience), "--smoothing-sigma", repr(args.smoothing_sigma),
              "--device", str(args.device), "--cache-dtype", args.cache_dtype]
    if args.zero_point_jitter:
        parts += ["--zero-point-jitter", repr(args.zero_point_jitter)]
    for flag in ("balanced", "no_augment", "no_amp", "no_calibrate", "no_pit", "spectra"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    if args.max_minutes is not None:
        parts += ["--max-minutes", repr(args.max_minutes)]
    return shlex.join(parts)


def _interrupted(args, checkpoint, before):
    """What to do after an interrupt: resume from a checkpoint of this run, or start
    again (``before``: the checkpoint's mtime when the command started, or None)."""
    ours = checkpoint.is_file() and (args.resume or checkpoint.stat().st_mtime_ns != before)
    if ours:
        return (f"astro-mantis train: interrupted; {checkpoint} holds the run after its last "
                "finished epoch: rerun the same command with --resume"
                + (" in place of --overwrite" if args.overwrite else "")
                + " to continue it (finished epochs are not run again)")
    return ("astro-mantis train: interrupted before the first epoch finished (no checkpoint "
            f"of this run in {checkpoint.parent}/): rerun the same command to start again")


def _cmd_train(args):
    """``astro-mantis train``: see the subcommand's help."""
    import torch

    from ..training.pipeline import fit_and_export

    data = Path(args.data)
    if not data.is_dir():
        raise InputError(f"--data {str(data)!r} is not a directory")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a directory")
    if (out / "checkpoint.pt").exists() and not (args.resume or args.overwrite):
        raise InputError(f"{str(out)!r} holds a training run: pass --resume to continue it "
                         "or --overwrite to start afresh")
    model_kwargs = _model_args(args.model_args)
    from ..models import build_model
    try:
        build_model(args.model, **model_kwargs)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"cannot build model {args.model!r}: {exc}") from None
    from ..training.data import check_zero_point_jitter
    try:
        check_zero_point_jitter(args.zero_point_jitter)
    except ValueError as exc:
        raise InputError(f"--zero-point-jitter: {exc}") from None
    if args.zero_point_jitter and args.no_augment:
        raise InputError("--zero-point-jitter is part of the augmentation: it cannot go with "
                         "--no-augment")
    if args.device != "auto":
        _check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    callbacks = []
    if args.spectra:
        from ..explain import SpectralMonitor

        out.mkdir(parents=True, exist_ok=True)
        callbacks.append(SpectralMonitor(out / "spectra.jsonl"))
    t0 = time.perf_counter()
    checkpoint = out / "checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns if checkpoint.is_file() else None
    try:
        result = fit_and_export(
            args.model, data, out, name=args.name, calibrate=not args.no_calibrate,
            pit=not args.no_pit,
            command=_train_command(args),
            cache_dir=args.cache_dir, cache_dtype=args.cache_dtype,
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, seed=args.seed,
            device=args.device, amp=not args.no_amp,
            patience=args.patience if args.patience > 0 else None,
            smoothing_sigma=args.smoothing_sigma, balanced=args.balanced,
            augment=not args.no_augment, zero_point_jitter=args.zero_point_jitter,
            max_minutes=args.max_minutes, resume=args.resume,
            overwrite=args.overwrite, num_workers=args.workers, workers=max(1, args.workers),
            model_kwargs=model_kwargs, progress=not args.no_progress, callbacks=callbacks)
    except (FileNotFoundError, ValueError) as exc:  # unusable data or settings
        raise InputError(str(exc)) from None
    except KeyboardInterrupt:
        print(_interrupted(args, checkpoint, before), file=sys.stderr)
        return EXIT_INTERRUPTED
    run = result.training
    print(f"astro-mantis train: {run.config['model']} on {run.config['n_train']} training "
          f"galaxies, {run.epochs_run} epochs ({run.stopped}), best epoch {run.best_epoch}, "
          f"{time.perf_counter() - t0:.0f} s on {run.config['device']}")
    if result.calibration is not None:
        print(f"  calibration (validation): {result.calibration}")
    for split, m in result.metrics.items():
        print(f"  {split} ({m['n']}): NMAD {m['nmad']:.4f}, outliers >0.15 "
              f"{m['outlier_0.15']:.3f}, >0.05 {m['outlier_0.05']:.3f}, bias "
              f"{m['bias_mean']:+.4f}, CDE loss {m['cde_loss']:.3f}, PIT KS {m['pit_ks']:.3f}, "
              f"68% coverage {m['coverage_68']:.3f}")
    print(f"wrote to {out}/:")
    print("  metrics.jsonl  (one line per epoch)")
    print("  checkpoint.pt  (full state; --resume continues)  best_model.pt")
    if result.export is not None:
        print(f"  {result.export.weights_path.name}  (sha256 "
              f"{result.export.card['sha256'][:16]}...)")
        print(f"  {result.export.card_path.name}  (model card)")
    if args.spectra:
        from ..explain import plot_spectral_history
        from ..plotting import save_figure

        ax = plot_spectral_history(out / "spectra.jsonl")
        save_figure(ax.figure, out / "spectra.png", dpi=80)
        print("  spectra.jsonl, spectra.png  (weight spectra per epoch)")
    return EXIT_OK
