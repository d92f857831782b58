# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The ``astro-mantis explain`` subcommand: band attribution, OOD, examples, weight spectra.

`add_parser` adds ``explain`` (with its own subcommands) to the ``astro-mantis`` parser;
`run` executes the parsed arguments and returns the exit status (0 when the job ran,
2 for unusable input, raised as `~astro_mantis.cli.common.InputError`). Galaxies are read from
a training data directory (shards written by ``make_dataset`` or ``astro-mantis
build-training-set``), whose ``z`` serves as the spectroscopic redshift.
"""
import argparse
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..fusion.exposure import model_panstarrs_exposure
from .common import InputError, _count, _positive_int

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Explain the network's redshifts and say when not to trust them (astro_mantis.explain).

  bands      per-band and per-survey Shapley values (or integrated gradients) of the
             PDF mean, log p(z_spec) or the CDE loss, per galaxy
  reference  the reference embedding of a training set, stored beside the weights
  ood        the out-of-distribution score and flag of galaxies
  examples   the training galaxies that support and oppose one prediction
  spectra    singular-value spectra of the weights (Marchenko-Pastur outliers)
"""


def _common(p, data=True, max_rows=True):
    if data:
        p.add_argument("data", metavar="DIR",
                       help="training data directory (shards of make_dataset or "
                            "astro-mantis build-training-set)")
        p.add_argument("--split", default="test", choices=("train", "validation", "test"),
                       help="split of DIR to read (default: %(default)s)")
    if data and max_rows:
        p.add_argument("--max-rows", type=int, default=None, metavar="N",
                       help="use at most N galaxies (the first ones)")
    p.add_argument("--model", default="mantis-mini", help="registry name (default: %(default)s)")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="weights file (default: the registry's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def add_parser(subparsers):
    """Add the ``explain`` subcommand to an ``astro-mantis`` parser.

    Parameters
    ----------
    subparsers : argparse subparsers action
        What `argparse.ArgumentParser.add_subparsers` returned.

    Returns
    -------
    `argparse.ArgumentParser`
        The subcommand's parser; its ``func`` default is `run`.
    """
    p = subparsers.add_parser(
        "explain", help="why the network gave a redshift, and when not to believe it",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
               "  astro-mantis explain bands mock_data --max-rows 50 --out bands.ecsv "
               "--figure shares.png\n"
               "  astro-mantis explain reference mock_data --out ref.ood.npz\n"
               "  astro-mantis explain ood mock_data --reference ref.ood.npz --out ood.ecsv\n"
               "  astro-mantis explain examples mock_data --index 3 --out examples.ecsv\n"
               "  astro-mantis explain spectra --out spectra.ecsv --figure spectra.png")
    sub = p.add_subparsers(dest="explain_command", metavar="WHAT")
    b = sub.add_parser("bands", help="band and survey attributions per galaxy")
    _common(b)
    b.add_argument("--method", default="shapley", choices=("shapley", "ig"),
                   help="exact Shapley values over the 512 band subsets, or integrated "
                        "gradients (default: %(default)s)")
    b.add_argument("--target", default="mean", choices=("mean", "logp", "cde"),
                   help="what is attributed: the PDF mean, or (with the split's "
                        "spectroscopic z) the log-probability of its bin or the CDE loss "
                        "(default: %(default)s)")
    b.add_argument("--out", required=True, metavar="FILE", help="output table")
    b.add_argument("--figure", default=None, metavar="PNG",
                   help="also plot the mean survey shares against redshift")
    r = sub.add_parser("reference", help="reference embedding (and PDF widths) of galaxies "
                       "drawn like the training set: by default the validation split")
    _common(r)
    r.set_defaults(split="validation")
    r.add_argument("--components", type=_positive_int, default=32,
                   help="PCA axes (default: 32)")
    r.add_argument("--k", type=_positive_int, default=10, help="neighbour rank (default: 10)")
    r.add_argument("--out", default=None, metavar="FILE",
                   help="output file, written as a compressed .npz under exactly this name "
                        "(default: <weights stem>.ood.npz beside the weights)")
    o = sub.add_parser("ood", help="out-of-distribution score and flag per galaxy")
    _common(o)
    o.add_argument("--reference", default=None, metavar="FILE",
                   help="reference .npz (default: the one beside the weights)")
    o.add_argument("--allow-other-weights", action="store_true",
                   help="use a reference built for other weights (its recorded SHA-256 "
                        "differs from the model's) instead of refusing it")
    o.add_argument("--out", required=True, metavar="FILE", help="output table")
    e = sub.add_parser("examples", help="training galaxies behind one prediction")
    _common(e, max_rows=False)
    # not an option of examples (the query is --index, the training set --train-rows):
    # accepted only to be refused with that explanation, instead of being ignored
    e.add_argument("--max-rows", type=int, default=None, help=argparse.SUPPRESS)
    e.add_argument("--index", type=_count, default=0,
                   help="row of the query in the split, from 0 (default: %(default)s)")
    e.add_argument("--train-rows", type=_positive_int, default=1000, metavar="N",
                   help="the first N galaxies of the train split make the surrogate "
                        "(default: %(default)s)")
    e.add_argument("--kernel", default="ntk", choices=("ntk", "ck"),
                   help="projected neural tangent kernel or conjugate kernel "
                        "(default: %(default)s)")
    e.add_argument("-k", type=_positive_int, default=5,
                   help="galaxies of each kind (default: 5)")
    e.add_argument("--out", required=True, metavar="FILE", help="output table")
    e.add_argument("--figure", default=None, metavar="PNG", help="cutouts figure")
    s = sub.add_parser("spectra", help="singular-value spectra of the weights")
    _common(s, data=False)
    s.add_argument("--out", required=True, metavar="FILE", help="output table")
    s.add_argument("--figure", default=None, metavar="PNG", help="spectra figure")
    p.set_defaults(func=run, explain_parser=p)
    return p


def _fail(message):

    raise InputError(message)


def _check_out(path, overwrite):
    """An output file: not a directory, in a directory that exists, new or --overwrite."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        _fail(f"{str(path)!r} is a directory; give a file name")
    if path.exists() and not overwrite:
        _fail(f"{str(path)!r} exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        _fail(f"the directory of the output, {str(path.parent)!r}, does not exist")
    return path


#: Metadata each subcommand's table carries (stand-ins, for `_check_table`).
_TABLE_META = {
    "bands": {"method": "shapley", "target": "mean", "baseline": "zero (missing survey)",
              "model": "mantis-mini", "temperature": 1.0, "n_steps": 50},
    "ood": {"ood_threshold": 0.99},
    "examples": {"z_net": 0.5, "z_surrogate": 0.5, "offset": 0.5, "kernel": "ntk"},
    "spectra": {"model": "mantis-mini"},
}


def _check_table(path, overwrite, what):
    """Check, before any work, that the table of ``what`` can be written at ``path``.

    The checks of `_check_out`, then `astro_mantis.tableio.check_writable` on a
    prototype with the kinds of columns and the metadata the table will have: an
    unknown suffix, a format that cannot hold them, an unwritable directory.
    """
    from ..tableio import OutputError, check_writable

    path = _check_out(path, overwrite)
    proto = Table({"name": ["a", "b"], "value": [0.5, np.nan], "count": [0, 1]})
    try:
        check_writable(path, proto, meta=_TABLE_META[what], overwrite=True)
    except OutputError as exc:  # (explain has no --output-format: the suffix says)
        _fail(str(exc).replace(" or give --output-format", ""))
    return path


def _check_figure(path, overwrite):
    """Check, before any work, that a figure can be written at ``path``.

    Its suffix must be a format matplotlib writes (a name without one gets
    ``savefig.format``'s, as `~astro_mantis.plotting.save_figure` gives it); then the
    checks of `_check_out` on the name the figure will have.
    """
    if path is None:
        return None
    from ..plotting import figure_file_name, figure_formats

    path = Path(path)
    suffix = path.suffix[1:].lower()
    if not suffix:
        path = Path(figure_file_name(path))
    else:
        formats = figure_formats()
        if suffix not in formats:
            _fail(f"cannot write figure {str(path)!r}: matplotlib does not write "
                  f"{path.suffix!r} files; use one of "
                  f"{', '.join('.' + f for f in sorted(formats))}")
    return _check_out(path, overwrite)


def _model(args):
    from ..models import load_model

    try:
        return load_model(args.model, weights=args.weights)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))


def _read(args, net, split=None, max_rows=None):
    """The fused galaxies of the data directory, as ``net`` takes them."""
    from ..training.data import read_fused

    split = split or args.split
    max_rows = args.max_rows if max_rows is None else max_rows
    if not Path(args.data).is_dir():
        _fail(f"data directory {args.data!r} does not exist")
    try:
        return read_fused(args.data, split, max_rows,
                          model_panstarrs_exposure(net))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))


def _write(table, path):
    from ..tableio import write_table

    write_table(table, path, overwrite=True)  # atomically: no half-written table
    print(f"wrote {path} ({len(table)} rows)")


def run(args):
    """Run ``astro-mantis explain``; returns the exit status.

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed by the parser `add_parser` made.

    Returns
    -------
    int
        0 when the job ran; 2 when no ``explain`` subcommand was given (unusable input
        raises `~astro_mantis.cli.common.InputError`).
    """
    what = getattr(args, "explain_command", None)
    if what is None:
        args.explain_parser.print_help()
        return 2
    from ..explain import (band_attribution, build_reference, check_reference_weights,
                           explain_by_example, fit_surrogate, ood_flags, ood_score,
                           plot_examples, plot_survey_shares, plot_weight_spectra,
                           reference_path, weight_spectra)
    from ..explain.ood import OOD_THRESHOLD, ReferenceEmbedding, load_reference

    if what == "examples" and args.max_rows is not None:
        _fail("--max-rows does not apply to examples: the query is row --index of --split "
              "and the surrogate is fitted on the first --train-rows galaxies of the train "
              "split")
    if getattr(args, "max_rows", None) is not None and args.max_rows < 1:
        _fail("--max-rows must be positive")
    # every output problem is found before any work starts (even loading the model,
    # except for the default reference path, which is beside the weights)
    if what == "reference":
        out = _check_out(args.out, args.overwrite)
    else:
        out = _check_table(args.out, args.overwrite, what)
        fig = _check_figure(getattr(args, "figure", None), args.overwrite)
    if what == "spectra":
        spectra = weight_spectra(_model(args))
        t = spectra.copy()
        t["shape"] = [f"{a}x{b}" for a, b in t["shape"]]
        t.remove_column("singular_values")
        _write(t, out)
        if fig is not None:
            from ..plotting import save_figure

            ax = plot_weight_spectra(spectra)
            save_figure(ax.figure, fig, dpi=100, bbox_inches="tight")
        return 0
    net = _model(args)
    if what == "bands":
        x, d, z, ids = _read(args, net)
        try:
            t = band_attribution(x, model=net, method=args.method, target=args.target,
                                 z_spec=None if args.target == "mean" else z, dust=d)
        except ValueError as exc:  # e.g. a spectroscopic z beyond the model's grid
            _fail(f"{args.data} ({args.split} split): {exc}")
        t.add_column(ids, name="id", index=0)
        t.add_column(z, name="z", index=1)
        _write(t, out)
        if fig is not None:
            from ..plotting import save_figure

            ax = plot_survey_shares(t, z)
            save_figure(ax.figure, fig, dpi=100, bbox_inches="tight")
        return 0
    if what == "reference":
        if out is None:
            out = _check_out(reference_path(net), args.overwrite)
        x, d, _, _ = _read(args, net)
        try:
            ref = build_reference(net, x, dust=d, n_components=args.components, k=args.k)
        except ValueError as exc:
            _fail(str(exc))
        ref.meta.update(data=str(args.data), split=args.split)
        out = ref.save(out)  # exactly this name (no .npz appended)
        left_out = ref.meta.get("n_left_out") or 0
        print(f"wrote {out} ({len(ref.points)} galaxies, {len(ref.components)} axes"
              + (f"; {left_out} rows without data left out" if left_out else "") + ")")
        return 0
    if what == "ood":
        if args.reference is not None:
            if not Path(args.reference).is_file():
                _fail(f"reference {args.reference!r} does not exist")
            try:
                ref = ReferenceEmbedding.load(args.reference)
            except (ValueError, OSError) as exc:
                _fail(f"cannot read reference {args.reference!r}: {exc}")
        else:  # the one stored beside the weights
            try:  # the weights are checked below, with the option's name
                ref = load_reference(net, check_weights=False)
            except (ValueError, OSError) as exc:
                _fail(f"cannot read the reference embedding stored for this model: {exc} "
                      "(rebuild it: astro-mantis explain reference --overwrite)")
            if ref is None:
                _fail("no reference embedding is stored for this model: build one with "
                      "astro-mantis explain reference, or give --reference")
        if not args.allow_other_weights:  # before any galaxy is read
            try:
                check_reference_weights(ref, net, f" {args.reference!r}" if args.reference
                                        else " stored beside the weights")
            except ValueError as exc:
                _fail(str(exc).replace("pass check_weights=False",
                                       "pass --allow-other-weights"))
        x, d, z, ids = _read(args, net)
        try:
            score = ood_score(x, net, ref, dust=d, check_weights=False)  # checked above
        except ValueError as exc:
            _fail(str(exc))
        t = Table({"id": ids, "z": z, "z_ood": score, "z_flags": ood_flags(score)})
        t.meta["ood_threshold"] = OOD_THRESHOLD
        _write(t, out)
        print(f"{int(np.sum(score > OOD_THRESHOLD))} of {len(t)} above {OOD_THRESHOLD}")
        return 0
    # examples
    xq, dq, _, _ = _read(args, net, max_rows=args.index + 1)
    if args.index < 0 or args.index >= len(xq):
        _fail(f"--index {args.index} is outside the {args.split} split ({len(xq)} rows)")
    xt, dt, zt, idt = _read(args, net, split="train", max_rows=args.train_rows)
    try:
        sur = fit_surrogate(net, xt, kernel=args.kernel, dust=dt, ids=idt, z=zt)
        t = explain_by_example(xq[args.index], sur, net, k=args.k, dust=dq[args.index])
    except ValueError as exc:
        _fail(str(exc))
    _write(t, out)
    if fig is not None:
        from ..plotting import save_figure

        save_figure(plot_examples(xq[args.index], xt, t), fig, dpi=100, bbox_inches="tight")
    return 0
