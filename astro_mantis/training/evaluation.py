# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""A model's metrics on a data set, overall and per bin of true redshift.

`~astro_mantis.training.evaluation.evaluate_model` runs a model over one split of a data
directory made by `astro_mantis.simulate.dataset.make_dataset` (a test-only directory,
such as a shifted-simulator test set, is fine), applies the calibration of its model card
(temperature, then PIT map, as `astro_mantis.models.predict` does) and summarises the
calibrated PDFs with `astro_mantis.metrics.binned_metrics`: once for the PDFs themselves
(CRPS, PIT KS, coverage) and once for each point estimator of
`astro_mantis.pdf.point_estimate` (NMAD, median and mean bias, outlier fractions). The
result can be written as JSON and as reStructuredText tables, for the model card and
``benchmarks/README.rst``.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_open
from ..fusion.exposure import model_panstarrs_exposure
from ..metrics import BINNED_EDGES, PDF_METRICS, POINT_METRICS, binned_metrics
from ..pdf import (POINT_ESTIMATORS, RECOMMENDED_POINT_ESTIMATE, ZMAX, ZMIN, RedshiftPDF,
                   point_estimate)

__all__ = ["evaluate_model", "Evaluation", "calibrated_pdf"]

_KEYS = ("bin", "z_lo", "z_hi", "n")


def _point_table(tab, name):
    """The point-metric columns of a `~astro_mantis.metrics.binned_metrics` table."""
    tab = tab[list(_KEYS) + [c for c in tab.colnames if c.removesuffix("_err") in POINT_METRICS]]
    tab.meta["point_estimate"] = name
    return tab


def calibrated_pdf(logits, meta=None, tta=False):
    """Calibrated PDFs from a model's logits, as `astro_mantis.models.predict` makes them.

    Parameters
    ----------
    logits : array-like
        Shape ``(N, nbins)``.
    meta : dict, optional
        The model's ``meta`` (its card): ``temperature`` divides the logits, the bins
        come from ``n_bins``, ``z_min``, ``z_max``, and ``calibration["pit_map"]`` (if
        any) remaps the CDFs. None: temperature 1, the default bins, no PIT map.
    tta : bool
        ``logits`` are the log TTA averages of
        `~astro_mantis.training.collect_logits` (``tta=True``): the temperature is
        already in them, and the TTA PIT map is used
        (`~astro_mantis.models.pit_map_for`).

    Returns
    -------
    `~astro_mantis.pdf.RedshiftPDF`
    """
    from ..models import pit_map_for

    meta = dict(meta or {})
    pit_map, _ = pit_map_for(meta, tta)
    return _calibrated_pdf(logits, meta, tta, pit_map)


def _calibrated_pdf(logits, meta, tta, pit_map):
    """`calibrated_pdf` with the PIT map already looked up (``pit_map_for``)."""
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, nbins), got {logits.shape}")
    n_bins = int(meta.get("n_bins", logits.shape[1]))
    if n_bins != logits.shape[1]:
        raise ValueError(f"the model card says {n_bins} bins but the logits have "
                         f"{logits.shape[1]}")
    edges = np.linspace(meta.get("z_min", ZMIN), meta.get("z_max", ZMAX), n_bins + 1)
    pdf = RedshiftPDF.from_logits(logits, edges=edges, temperature=1.0 if tta else
                                  float(meta.get("temperature") or 1.0))
    if pit_map:
        pdf = pdf.remap_cdf(pit_map["knots"], pit_map["values"])
    return pdf


def _rows(table):
    """Table rows as JSON-ready dicts (masked and NaN values become None)."""
    out = []
    for row in table:
        d = {}
        for name in table.colnames:
            v = row[name]
            if np.ma.is_masked(v):
                d[name] = None
            elif isinstance(v, (np.integer, int)):
                d[name] = int(v)
            elif isinstance(v, (np.floating, float)):
                d[name] = None if not np.isfinite(v) else float(v)
            else:
                d[name] = str(v)
        out.append(d)
    return out


def _cell(value, error, digits):
    if np.ma.is_masked(value) or not np.isfinite(value):
        return "--"
    if np.ma.is_masked(error) or not np.isfinite(error):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ± {error:.{digits}f}"


def _rst(table, metrics, title, digits=4):
    """One reStructuredText table (with a title line) of values ± errors."""
    from io import StringIO

    from astropy.table import Table

    cols = {"bin": list(table["bin"]), "n": [str(n) for n in table["n"]]}
    for m in metrics:
        cols[m] = [_cell(v, e, digits) for v, e in zip(table[m], table[f"{m}_err"])]
    buf = StringIO()
    Table(cols).write(buf, format="ascii.rst")
    return f"{title}\n{'-' * len(title)}\n\n{buf.getvalue()}\n"


@dataclass
class Evaluation:
    """What `~astro_mantis.training.evaluation.evaluate_model` returns.

    Attributes
    ----------
    model : str
        The model's name (from its card).
    data_dir : str
        The data directory (or directories, joined by ``", "``).
    split : str
        The split evaluated.
    overall : dict
        `~astro_mantis.training.pipeline.split_metrics` of the split (PDF mean as the
        point estimate, with ``nll`` and bootstrap ``errors``): the model card's format.
    pdf_table : `~astropy.table.Table`
        Per-bin metrics of the PDFs (``crps``, ``pit_ks``, ``coverage_68``,
        ``coverage_95`` and their ``_err``), rows as in
        `~astro_mantis.metrics.binned_metrics`.
    point_tables : dict
        Estimator name → per-bin table of the point metrics (``nmad``,
        ``bias_median``, ``bias_mean``, ``outlier_0.05``, ``outlier_0.15`` and errors).
    pdf : `~astro_mantis.pdf.RedshiftPDF`
        The calibrated PDFs, in dataset order.
    z : `numpy.ndarray`
        The true redshifts.
    settings : dict
        ``edges``, ``min_count``, ``n_bootstrap``, ``seed``.
    """

    model: str
    data_dir: str
    split: str
    overall: dict
    pdf_table: object
    point_tables: dict
    pdf: RedshiftPDF = field(repr=False)
    z: np.ndarray = field(repr=False)
    settings: dict = field(default_factory=dict)

    def compare(self, metric="bias_median", errors=True):
        """One point metric per bin for every estimator, side by side.

        Parameters
        ----------
        metric : str
            A point metric: ``nmad``, ``bias_median``, ``bias_mean``,
            ``outlier_0.05`` or ``outlier_0.15``.
        errors : bool
            Add a ``<estimator>_err`` column after each estimator.

        Returns
        -------
        `~astropy.table.Table`
            Columns ``bin``, ``n`` and one per estimator (masked below ``min_count``).
        """
        if metric not in POINT_METRICS:
            raise ValueError(f"metric must be one of {', '.join(POINT_METRICS)}, got {metric!r}")
        from astropy.table import Table

        first = next(iter(self.point_tables.values()))
        out = Table({"bin": first["bin"], "n": first["n"]}, meta={"metric": metric})
        for name, tab in self.point_tables.items():
            out[name] = tab[metric]
            if errors:
                out[f"{name}_err"] = tab[f"{metric}_err"]
        return out

    def add_point_estimate(self, name, z_point):
        """Tabulate another point estimate beside the others, with the same bins and errors.

        Parameters
        ----------
        name : str
            Its name in `point_tables` (a new one).
        z_point : array-like
            One estimate per galaxy, in dataset order, e.g. the median of the PDFs with
            the training prior divided out (``ev.pdf.change_prior(training_prior(model))
            .median()``, see :ref:`evaluation`).

        Returns
        -------
        `~astropy.table.Table`
            Its per-bin table (also stored in `point_tables`).

        Raises
        ------
        ValueError
            If the name is taken or ``z_point`` does not have one value per galaxy.
        """
        name = str(name)
        if name in self.point_tables:
            raise ValueError(f"a point estimate named {name!r} is already tabulated")
        z_point = np.asarray(z_point, dtype=np.float64)
        if z_point.shape != np.shape(self.z):
            raise ValueError(f"z_point must hold one value per galaxy ({len(self.z)}), got "
                             f"shape {z_point.shape}")
        st = self.settings
        tab = binned_metrics(self.z, pdf=None, z_point=z_point,
                             edges=st.get("edges", BINNED_EDGES),
                             min_count=st.get("min_count", 50),
                             n_bootstrap=st.get("n_bootstrap", 200), seed=st.get("seed", 0))
        self.point_tables[name] = _point_table(tab, name)
        return self.point_tables[name]

    def as_dict(self):
        """Everything but the PDFs, as JSON-ready plain data.

        Returns
        -------
        dict
            ``model``, ``data_dir``, ``split``, ``n``, ``settings``, ``overall``,
            ``recommended_point_estimate``, ``binned`` (``"pdf"`` and each
            estimator → list of row dicts; masked values are None).
        """
        binned = {"pdf": _rows(self.pdf_table)}
        binned.update({k: _rows(t) for k, t in self.point_tables.items()})
        return {"model": self.model, "data_dir": self.data_dir, "split": self.split,
                "n": int(len(self.z)), "settings": self.settings, "overall": self.overall,
                "recommended_point_estimate": RECOMMENDED_POINT_ESTIMATE, "binned": binned}

    def to_rst(self, digits=4):
        """The per-bin tables as reStructuredText (values ± bootstrap errors).

        Parameters
        ----------
        digits : int
            Decimals shown.

        Returns
        -------
        str
            A section per table: the PDFs, then each point estimator.
        """
        head = (f"Model ``{self.model}`` on the {self.split} split of ``{self.data_dir}`` "
                f"({len(self.z)} galaxies; bins of true redshift, metrics masked below "
                f"{self.settings.get('min_count')} galaxies; ± bootstrap standard errors "
                f"of {self.settings.get('n_bootstrap')} resamples).\n\n")
        pdf_cols = [c for c in PDF_METRICS if c in self.pdf_table.colnames]
        parts = [head, _rst(self.pdf_table, pdf_cols, "PDF metrics", digits)]
        for name, tab in self.point_tables.items():
            parts.append(_rst(tab, [c for c in ("nmad", "bias_median", "bias_mean",
                                                "outlier_0.05", "outlier_0.15")],
                              f"Point estimate: {name}", digits))
        return "".join(parts)

    def write(self, out):
        """Write ``evaluation.json`` and ``evaluation.rst`` into a directory, atomically.

        Both texts are built before either file is written (a failure to build them
        leaves both files as they were), and each file is replaced whole through
        `~astro_mantis.atomic.atomic_open`: never a torn file.

        Parameters
        ----------
        out : str or path-like
            Directory (created if needed).

        Returns
        -------
        dict
            ``{"json": path, "rst": path}``.
        """
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "evaluation.json", "rst": out / "evaluation.rst"}
        texts = {"json": json.dumps(self.as_dict(), indent=1), "rst": self.to_rst()}
        for key, text in texts.items():  # each replaced whole, or left as it was
            with atomic_open(paths[key], "w", encoding="utf-8") as fh:
                fh.write(text)
        return paths


def _dataset(data_dir, split, cache_dir, workers, panstarrs_exposure="stack"):
    from .data import ConcatDataset, ShardDataset

    dirs = list(data_dir) if isinstance(data_dir, (list, tuple)) else [data_dir]
    for d in dirs:
        if not Path(d).is_dir():
            raise FileNotFoundError(f"data directory {str(d)!r} does not exist")
    parts = [ShardDataset(d, split, cache_dir=cache_dir, workers=workers,
                          panstarrs_exposure=panstarrs_exposure) for d in dirs]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def evaluate_model(model, data_dir, split="test", *, estimators=POINT_ESTIMATORS,
                   edges=BINNED_EDGES, min_count=50, n_bootstrap=200, seed=0, batch_size=128,
                   device=None, num_workers=0, cache_dir=None, workers=1, out=None,
                   progress=None, tta=False):
    """Evaluate a model on one split of a data directory, overall and per redshift bin.

    Parameters
    ----------
    model : `torch.nn.Module` or str
        A network with ``meta`` (as `astro_mantis.models.load_model` returns it; its
        card's temperature and PIT map are applied), or a registry name to load.
    data_dir : str, path-like or list of them
        Directory made by `astro_mantis.simulate.dataset.make_dataset`; only ``split``
        needs shards (a test-only directory works). Several: their splits are joined.
        They are fused as the model takes them (its ``panstarrs_exposure``).
    split : str
        ``"test"`` (default), ``"validation"`` or ``"train"``.
    estimators : sequence of str
        Point estimators (names of `astro_mantis.pdf.point_estimate`) to tabulate.
    edges, min_count, n_bootstrap, seed
        As for `astro_mantis.metrics.binned_metrics`.
    batch_size, device, num_workers
        As for `~astro_mantis.training.loop.collect_logits`; ``device`` defaults to the
        model's.
    cache_dir : str or path-like, optional
        Where the fused inputs are cached (default ``<data_dir>/fused_cache``).
    workers : int
        Processes fusing uncached shards.
    out : str or path-like, optional
        If given, `Evaluation.write` writes ``evaluation.json`` and ``evaluation.rst``
        there.
    progress : bool, optional
        Show progress bars (default: on a terminal).
    tta : bool
        Evaluate the 8-transform averages that `astro_mantis.models.predict` gives
        with ``tta=True`` (with the card's ``calibration_tta`` where it has one);
        eight passes.

    Returns
    -------
    `~astro_mantis.training.evaluation.Evaluation`

    Raises
    ------
    FileNotFoundError
        If the directory does not exist or has no shards of ``split``.
    ValueError
        If an estimator name is unknown.
    """
    from ..models import pit_map_for
    from .calibration import PITMap
    from .loop import collect_logits
    from .pipeline import split_metrics

    estimators = tuple(estimators)
    for name in estimators:
        if name not in POINT_ESTIMATORS:
            raise ValueError(f"unknown point estimator {name!r}; choose from "
                             f"{', '.join(POINT_ESTIMATORS)}")
    if not estimators:
        raise ValueError("give at least one point estimator")
    if isinstance(model, str):
        from ..models import load_model

        model = load_model(model)
    meta = dict(getattr(model, "meta", {}) or {})
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else "cpu"
    dataset = _dataset(data_dir, split, cache_dir, workers,
                       model_panstarrs_exposure(model))
    temperature = float(meta.get("temperature") or 1.0)
    logits, z = collect_logits(model, dataset, batch_size=batch_size, device=device,
                               num_workers=num_workers, progress=progress,
                               desc=f"evaluating {split}", tta=tta, temperature=temperature)
    pit_map, _ = pit_map_for(meta, tta)  # looked up (and warned about) once
    pdf = _calibrated_pdf(logits, meta, tta, pit_map)
    overall = split_metrics(logits, z, temperature=1.0 if tta else temperature,
                            n_bootstrap=n_bootstrap, seed=seed,
                            pit_map=PITMap.from_dict(pit_map) if pit_map else None)
    overall["tta"] = bool(tta)
    kw = dict(edges=edges, min_count=min_count, n_bootstrap=n_bootstrap, seed=seed)
    full = binned_metrics(z, pdf, z_point=estimators[0], **kw)
    pdf_table = full[list(_KEYS) + [c for c in full.colnames
                                    if c.removesuffix("_err") in PDF_METRICS]]
    point_tables = {}
    for name in estimators:
        tab = full if name == estimators[0] else \
            binned_metrics(z, pdf=None, z_point=point_estimate(pdf, name), **kw)
        point_tables[name] = _point_table(tab, name)
    dirs = data_dir if isinstance(data_dir, (list, tuple)) else [data_dir]
    result = Evaluation(model=str(meta.get("name", type(model).__name__)),
                        data_dir=", ".join(str(d) for d in dirs), split=split, overall=overall,
                        pdf_table=pdf_table, point_tables=point_tables, pdf=pdf, z=z,
                        settings={"edges": full.meta["edges"], "min_count": int(min_count),
                                  "n_bootstrap": int(n_bootstrap), "seed": seed})
    if out is not None:
        result.write(out)
    return result
