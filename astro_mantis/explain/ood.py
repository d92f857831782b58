# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Out of distribution and distribution shift, from the network's own embedding.

Following Vargas et al. ("Foundation Model's Embedded Representations May Detect
Distribution Shift"), a galaxy unlike the training set is recognised by where the
network puts it in its penultimate feature space, not by its pixels.

Reference embedding
===================
`build_reference` runs a network over galaxies drawn like its training set (the
training pipeline uses its validation split: the network has fitted its training
galaxies, whose features sit closer together and whose PDFs are narrower than any new
galaxy's) and keeps a small summary of their **penultimate features**
(``GELU(fc0([Base(x), dust]))``, the input of the output layer ``fc1``; 512 numbers per
galaxy for ``mantis-mini``, 2048 for ``mantis-shrimp-v1``) and of three **trust
statistics** (`~astro_mantis.explain.features_and_statistics`):

* a PCA of the features (mean, the leading ``n_components`` axes, default 32), the
  reduced coordinates **whitened** (divided by the square root of each axis's variance);
* the whitened coordinates of every reference galaxy (float32; 4,096 galaxies × 32
  axes is 0.5 MB);
* the leave-one-out distance of each reference galaxy to its ``k``-th nearest
  neighbour among the others (default k = 10), sorted: the null distribution of the
  distance;
* each reference galaxy's statistics, sorted: the **width** (standard deviation) of its
  PDF (the network's softmax over its redshift grid, at its calibration temperature),
  the PDF's **edge mass** (its probability in the top tenth of the redshift range,
  `~astro_mantis.explain.edge_mass`) and the **misalignment** of its Pan-STARRS bands
  (how far their light centroids disagree, `~astro_mantis.explain.band_misalignment`);
  and the sorted combined scores of the reference galaxies themselves (below).

Rows that hold no data (no valid channel: a ``None`` cutout, every survey missing, an
all-zero fused image), which `ood_score` does not score, are left out of the reference
and counted in its ``meta["n_left_out"]``.

`ReferenceEmbedding.save` writes these as a compressed ``.npz`` (arrays ``mean``,
``components``, ``scale``, ``points``, ``null``, ``k``, ``widths``, ``edge_mass``,
``misalignment``, ``combined``, and a JSON ``meta`` member: model name, weights
SHA-256, data, date); `save_reference` puts it beside the model's weights as
``<weights stem>.ood.npz`` (for the bundled model
``astro_mantis/data/mantis-mini.ood.npz``), where `load_reference` finds it
(`save_reference` refuses to replace a reference already there, such as the bundled
one, without ``overwrite=True``). A reference written with fewer statistics
(``widths`` only, by earlier development builds of this version, 0.1) is scored with
those it holds; one without any (``build_reference(..., widths=False)``, or by the
first development builds) gives the distance score alone.

A reference belongs to the weights it was built with: `ood_score` and, for a loaded
model, `load_reference` refuse one whose recorded SHA-256 differs from the model's
(`check_reference_weights`; ``check_weights=False`` to use it anyway).

Score and flag
==============
`ood_score` takes four percentiles of a galaxy against the reference galaxies: of its
**k-NN distance** (the fraction of reference galaxies whose own leave-one-out k-th
neighbour distance is smaller than the query's k-th neighbour distance to the
reference set; Vargas et al.), and of each statistic. The score is the percentile,
among the reference galaxies' own values, of the largest of the four. The distance
catches inputs the network places where no training galaxy lies (stars, a saturated
or missing band); the width catches inputs it places among the faint galaxies, where
the training set is densest, but cannot pin down (blank sky); the edge mass catches
galaxies it pushes against the top of its redshift range (those beyond it); the
misalignment catches a band whose light sits apart from the others' (a shifted or
misregistered band), which the network, trained on aligned bands, does not see as
strange. The score lies in [0, 1] and is close to uniform for galaxies drawn
like the reference, so a fraction ``1 − t`` of them score above ``t``.
`OOD_THRESHOLD` (0.99) is where `ood_flags` sets
`~astro_mantis.MantisFlag.OUT_OF_DISTRIBUTION`: about 1 % of in-distribution galaxies
are flagged by construction.

The score is NaN, and `ood_flags` sets no flag, for a galaxy that cannot be scored:
non-finite features or statistics, or a row that holds no data at all (early fusion
marks it with no valid channel: a ``None`` cutout, every survey missing, an all-zero
fused image), whose embedding would only say where the network puts a blank input.

Shift test
==========
`shift_test` asks whether two samples (a user's catalog and the training set, say)
come from the same distribution of embeddings: an MMD two-sample test (Gaussian kernel,
median-heuristic width, permutation p-value) or a classifier test (cross-fitted linear
discriminant, AUC, permutation p-value; its folds split each sample in halves, and its
permutations shuffle the labels within each fold). A statistic that is not finite
raises instead of giving a p-value.
"""
import datetime
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
from astropy.table import Table

from ..flags import MantisFlag
from ..fusion.exposure import model_panstarrs_exposure
from ._common import (STATISTICS, as_fused, features_and_statistics, no_data_rows,
                      penultimate_features, resolve_model)

__all__ = ["OOD_THRESHOLD", "DEFAULT_COMPONENTS", "DEFAULT_K", "ReferenceEmbedding",
           "embed", "build_reference", "reference_path", "save_reference", "load_reference",
           "check_reference_weights", "ood_score", "ood_flags", "ShiftTestResult",
           "shift_test", "auroc"]

#: Score above which `ood_flags` sets ``OUT_OF_DISTRIBUTION``: the 99th percentile of
#: the reference galaxies' own scores (of their combined scores where the reference
#: holds statistics, of their leave-one-out k-NN distances where it does not).
OOD_THRESHOLD = 0.99
#: Default number of PCA axes kept in a reference embedding.
DEFAULT_COMPONENTS = 32
#: Default neighbour rank of the k-NN distance.
DEFAULT_K = 10
_FORMAT = "astro_mantis.explain.reference/1"


def embed(data, model="mantis-mini", dust=None, batch_size=64, layer="hidden"):
    """Penultimate features of galaxies (the embedding the OOD tools work on).

    Parameters
    ----------
    data : cutouts, `~astro_mantis.fusion.FusedInput` or array-like (N, 9, H, W)
        As in `~astro_mantis.explain.band_attribution`.
    model : str or `torch.nn.Module`
    dust : array-like, shape (N, 2), optional
    batch_size : int
    layer : {"hidden", "pooled"}
        See `~astro_mantis.explain.penultimate_features`.

    Returns
    -------
    `numpy.ndarray`, float32, shape (N, n_features)
    """
    net = resolve_model(model)
    fused = as_fused(data, dust=dust, net=net)
    return penultimate_features(net, fused.x, fused.dust, batch_size=batch_size, layer=layer)


def _kth_distances(queries, points, k, exclude_self=False, chunk=2048):
    """Distance of each query to its k-th nearest point (Euclidean)."""
    out = np.empty(len(queries))
    pp = (points.astype(np.float64) ** 2).sum(1)
    kk = k + 1 if exclude_self else k
    if kk > len(points):
        raise ValueError(f"k = {k} needs more than {len(points)} reference rows")
    for s in range(0, len(queries), chunk):
        q = queries[s:s + chunk].astype(np.float64)
        d2 = (q ** 2).sum(1)[:, None] + pp[None] - 2.0 * q @ points.T.astype(np.float64)
        np.maximum(d2, 0, out=d2)
        part = np.partition(d2, kk - 1, axis=1)[:, kk - 1]
        out[s:s + chunk] = np.sqrt(part)
    return out


class ReferenceEmbedding:
    """A PCA-reduced, whitened embedding of a training set, with its k-NN null distribution.

    Build one with `build_reference` (from a model and data) or `from_features`.

    Parameters
    ----------
    mean : `numpy.ndarray`, shape (D,)
    components : `numpy.ndarray`, shape (n_components, D)
        Orthonormal PCA axes.
    scale : `numpy.ndarray`, shape (n_components,)
        Standard deviation of the reference along each axis (the whitening).
    points : `numpy.ndarray`, shape (N, n_components)
        Whitened coordinates of the reference galaxies.
    null : `numpy.ndarray`, shape (N,)
        Sorted leave-one-out k-th neighbour distances of the reference galaxies.
    k : int
    meta : dict, optional
        Provenance (model, weights SHA-256, data, date).
    widths : `numpy.ndarray`, shape (N,), optional
        Sorted PDF widths (standard deviations) of the reference galaxies: the same as
        ``statistics={"width": widths}``.
    combined : `numpy.ndarray`, shape (N,), optional
        Sorted combined scores of the reference galaxies themselves (see `score`);
        required with statistics.
    statistics : dict, optional
        Name (of `~astro_mantis.explain.STATISTICS`: ``"width"``, ``"edge_mass"``,
        ``"misalignment"``) → the reference galaxies' values, sorted
        (`~astro_mantis.explain.features_and_statistics`); the score weighs each.
    """

    def __init__(self, mean, components, scale, points, null, k, meta=None, widths=None,
                 combined=None, statistics=None):
        self.mean = np.asarray(mean, np.float32)
        self.components = np.asarray(components, np.float32)
        self.scale = np.asarray(scale, np.float32)
        self.points = np.asarray(points, np.float32)
        self.null = np.sort(np.asarray(null, np.float64))
        self.k = int(k)
        self.meta = dict(meta or {})
        stats = _check_statistic_names(statistics, widths)
        if bool(stats) != (combined is not None):
            raise ValueError("statistics (or widths) and combined go together: give both "
                             "or neither")
        #: Statistic name → the reference galaxies' sorted values (empty: distance only).
        self.statistics = {name: np.sort(np.asarray(v, np.float64)) for name, v in stats.items()}
        self.combined = None if combined is None else np.sort(np.asarray(combined, np.float64))

    @property
    def widths(self):
        """Sorted PDF widths of the reference galaxies (None without them)."""
        return self.statistics.get("width")

    def __repr__(self):
        return (f"<ReferenceEmbedding {len(self.points)} rows, {len(self.components)} axes of "
                f"{self.components.shape[1]} features, k={self.k}, "
                f"model={self.meta.get('model')!r}>")

    @classmethod
    def from_features(cls, features, n_components=DEFAULT_COMPONENTS, k=DEFAULT_K, meta=None,
                      widths=None, statistics=None):
        """Reference from an array of features (N, D).

        Parameters
        ----------
        features : array-like, shape (N, D)
        n_components : int
            PCA axes kept (at most min(N − 1, D)).
        k : int
            Neighbour rank of the distances (needs N > k + 1).
        meta : dict, optional
        widths : array-like, shape (N,), optional
            The PDF widths of the same galaxies: the same as
            ``statistics={"width": widths}``.
        statistics : dict, optional
            Statistic name → the same galaxies' values
            (`~astro_mantis.explain.features_and_statistics`): the score then combines
            the distance with each (see `score`).

        Returns
        -------
        `ReferenceEmbedding`
        """
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2:
            raise ValueError(f"features must be 2-D (N, D); got shape {f.shape}")
        if not np.isfinite(f).all():
            raise ValueError("features hold non-finite values")
        if k < 1 or len(f) < k + 2:
            raise ValueError(f"need more than k + 1 = {k + 1} reference rows for k = {k}; "
                             f"got {len(f)}")
        mean = f.mean(axis=0)
        _, s, vt = np.linalg.svd(f - mean, full_matrices=False)
        n_components = int(min(n_components, len(f) - 1, f.shape[1]))
        if n_components < 1:
            raise ValueError("n_components must be positive")
        scale = s[:n_components] / np.sqrt(len(f) - 1)
        scale = np.where(scale > 1e-12 * max(scale.max(), 1e-30), scale, 1.0)
        comps = vt[:n_components]
        points = (f - mean) @ comps.T / scale
        null = _kth_distances(points, points, k, exclude_self=True)
        meta = dict(meta or {})
        meta.setdefault("n_rows", int(len(f)))
        meta.setdefault("explained_variance", float((s[:n_components] ** 2).sum()
                                                    / max((s ** 2).sum(), 1e-300)))
        stats = _check_statistic_names(statistics, widths)
        combined = None
        if stats:
            for name, v in stats.items():
                v = stats[name] = np.asarray(v, np.float64)
                if v.shape != (len(f),) or not np.isfinite(v).all():
                    raise ValueError(f"{name} must be {len(f)} finite values, one per row "
                                     f"of features; got shape {v.shape}")
            combined = _largest_percentile(np.sort(null), null, stats,
                                           {n: np.sort(v) for n, v in stats.items()})
        return cls(mean, comps, scale, points, null, k, meta, combined=combined,
                   statistics=stats)

    def transform(self, features):
        """Whitened PCA coordinates of features (N, D) → (N, n_components)."""
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.components.shape[1]:
            raise ValueError(f"features must have shape (N, {self.components.shape[1]}) "
                             f"(the reference's feature width); got {f.shape}")
        return ((f - self.mean) @ self.components.T.astype(np.float64)) / self.scale

    def knn_distance(self, features):
        """k-th nearest-neighbour distance of features to the reference rows."""
        return _kth_distances(self.transform(features), self.points, self.k)

    def score(self, features, widths=None, statistics=None):
        """Out-of-distribution score in [0, 1] (see the module notes).

        Parameters
        ----------
        features : array-like, shape (N, D)
        widths : array-like, shape (N,), optional
            PDF widths of the same galaxies: the same as ``statistics={"width": widths}``.
        statistics : dict, optional
            Statistic name → the same galaxies' values
            (`~astro_mantis.explain.features_and_statistics`). Where the reference
            holds statistics, all of them must be given: the score is then the
            percentile, among the reference galaxies' own values, of the largest of
            the percentiles (k-NN distance, and each statistic). Given none, the
            score is the k-NN distance percentile.

        Returns
        -------
        `numpy.ndarray`, float64, shape (N,)
            NaN for a galaxy with a non-finite feature or statistic (`ood_flags` sets
            no flag for it).
        """
        f = np.asarray(features, dtype=np.float64)
        self.transform(f[:0] if f.ndim == 2 else f)  # checks the shape
        good = np.isfinite(f).all(axis=1)
        out = np.full(len(f), np.nan)
        given = _check_statistic_names(statistics, widths)
        if not given or not self.statistics:
            out[good] = _percentile(self.null, self.knn_distance(f[good]))
            return out
        missing = sorted(set(self.statistics) - set(given))
        if missing:
            raise ValueError(f"this reference weighs {', '.join(self.statistics)}: give "
                             f"{', '.join(missing)} too (features_and_statistics), or "
                             "no statistics for the distance alone")
        values = {}
        for name in self.statistics:
            v = np.asarray(given[name], dtype=np.float64)
            if v.shape != (len(f),):
                raise ValueError(f"{name} must have shape {(len(f),)} (one per galaxy); "
                                 f"got {np.shape(given[name])}")
            good &= np.isfinite(v)
            values[name] = v
        dist = self.knn_distance(f[good])
        out[good] = _percentile(self.combined, _largest_percentile(
            self.null, dist, {n: v[good] for n, v in values.items()}, self.statistics))
        return out

    def save(self, path):
        """Write the reference as a compressed ``.npz`` (see the module notes).

        The file is written at ``path`` exactly, whatever its suffix (no ``.npz`` is
        appended), and atomically (`astro_mantis.atomic`); an existing file is
        replaced.

        Returns
        -------
        `pathlib.Path`
            ``path``.
        """
        from ..atomic import atomic_open

        path = Path(path)
        meta = json.dumps(dict(self.meta, format=_FORMAT))
        # float64: the combined scores are exact fractions k / N, compared for ties
        extra = {_STORED[name]: v for name, v in self.statistics.items()}
        if self.combined is not None:
            extra["combined"] = self.combined
        # an open file: np.savez_compressed appends ".npz" to a name without it
        with atomic_open(path, "wb") as fh:
            np.savez_compressed(fh, mean=self.mean, components=self.components,
                                scale=self.scale, points=self.points,
                                null=self.null.astype(np.float32), k=np.array(self.k),
                                meta=np.frombuffer(meta.encode(), dtype=np.uint8), **extra)
        return path

    @classmethod
    def load(cls, path):
        """Read a reference written by `save`.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If it is not a reference embedding written by `save`, or cannot be read
            (truncated, another kind of file); the message names the file.
        """
        import zipfile

        def unreadable(exc):
            return ValueError(f"{path} is not a readable reference embedding: "
                              f"{type(exc).__name__}: {exc}")

        with open(path, "rb") as fh:  # closed also when numpy fails (a truncated file)
            try:
                with np.load(fh, allow_pickle=False) as npz:
                    arrays = {name: npz[name] for name in npz.files}
                meta = json.loads(bytes(arrays["meta"]).decode()) if "meta" in arrays else {}
            except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
                raise unreadable(exc) from exc  # (json and Unicode errors are ValueErrors)
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a reference embedding written by "
                             "astro_mantis.explain")
        stats = {name: arrays[key] for name, key in _STORED.items() if key in arrays}
        try:
            return cls(arrays["mean"], arrays["components"], arrays["scale"],
                       arrays["points"], arrays["null"], int(arrays["k"]), meta,
                       combined=arrays.get("combined"), statistics=stats)
        except (KeyError, ValueError, TypeError) as exc:  # a member missing or malformed
            raise unreadable(exc) from exc


def _percentile(sorted_values, x):
    """Fraction of ``sorted_values`` strictly below each ``x``."""
    return np.searchsorted(sorted_values, x, side="left") / len(sorted_values)


#: Statistic name → its array in a saved reference (``widths`` as written since 0.1).
_STORED = {"width": "widths", "edge_mass": "edge_mass", "misalignment": "misalignment"}


def _check_statistic_names(statistics, widths=None):
    """``statistics`` (and the ``widths`` shorthand) as one dict; unknown names raise."""
    stats = dict(statistics or {})
    if widths is not None:
        if "width" in stats:
            raise ValueError("give the widths once: widths= or statistics['width']")
        stats["width"] = widths
    unknown = sorted(set(stats) - set(STATISTICS))
    if unknown:
        raise ValueError(f"unknown statistics {unknown}; known: {', '.join(STATISTICS)}")
    return {name: stats[name] for name in STATISTICS if name in stats}


def _largest_percentile(null, distances, values, sorted_reference):
    """Per galaxy, the largest of its distance percentile and its statistics' percentiles."""
    out = _percentile(null, distances)
    for name, v in values.items():
        out = np.maximum(out, _percentile(sorted_reference[name], np.asarray(v, np.float64)))
    return out


def _iter_data(data, split, max_rows, dust, net):
    """Fused chunks of a shard directory, or the one fused input given.

    Yields ``(x, dust, z, n_left_out)``: the rows that hold data (``z`` None for an
    input that is not a directory) and the number of rows left out because they hold
    none (`~astro_mantis.explain._common.no_data_rows`: for a directory or an array,
    an all-zero fused image; for cutouts, no valid channel), which `ood_score` would
    not score either. ``max_rows`` counts the rows read, those left out included.
    """
    if isinstance(data, (str, Path)):
        if not Path(data).is_dir():
            raise FileNotFoundError(f"training data directory {str(data)!r} "
                                    + ("is not a directory" if Path(data).exists()
                                       else "does not exist"))
        from ..simulate.dataset import iter_shards
        from ..training.data import fuse_shard_arrays

        seen = 0
        for shard in iter_shards(data, split):
            x, d, _ = fuse_shard_arrays(shard, panstarrs_exposure=model_panstarrs_exposure(net))
            z = np.asarray(shard["z"], float)
            if max_rows is not None:
                x, d, z = x[:max_rows - seen], d[:max_rows - seen], z[:max_rows - seen]
            seen += len(x)
            empty = no_data_rows(as_fused(x, dust=d))  # an all-zero image, as ood_score
            keep = np.flatnonzero(~empty)
            yield x[keep], d[keep], z[keep], int(empty.sum())
            if max_rows is not None and seen >= max_rows:
                return
        return
    fused = as_fused(data, dust=dust, net=net)
    n = len(fused.x) if max_rows is None else min(max_rows, len(fused.x))
    empty = no_data_rows(fused)[:n]
    keep = np.flatnonzero(~empty)
    yield fused.x[keep], fused.dust[keep], None, int(empty.sum())


def build_reference(model, data, split="validation", n_components=DEFAULT_COMPONENTS,
                    k=DEFAULT_K, max_rows=None, dust=None, batch_size=64, widths=True):
    """The reference embedding of galaxies drawn like a model's training set.

    The training pipeline builds it from the validation split: galaxies drawn like
    the training set that the network has not fitted (on its own training galaxies
    a network's features sit closer together and its PDFs are narrower than on any
    new galaxy, which would make every new galaxy look unusual).

    Rows that hold no data (no valid channel in their fused input: a ``None`` cutout,
    every survey missing, an all-zero fused image) are left out, as `ood_score`
    scores them NaN: they would all sit at the one point where the network puts a
    blank input and shrink the k-NN null distribution. The number left out is
    recorded as ``meta["n_left_out"]`` (``meta["n_rows"]`` counts the rows kept).

    Parameters
    ----------
    model : str or `torch.nn.Module`
    data : str, path-like, cutouts, `~astro_mantis.fusion.FusedInput` or array-like
        A training data directory (``make_dataset`` / ``astro-mantis
        build-training-set`` shards; ``split`` is read) or the fused galaxies.
    split : {"validation", "train", "test"}
        For a directory (default the validation split, as the training pipeline uses).
    n_components, k
        See `ReferenceEmbedding.from_features`.
    max_rows : int, optional
        Use at most this many galaxies (the first ones, rows without data included
        in the count).
    dust : array-like, optional
        For cutouts or arrays.
    batch_size : int
    widths : bool
        Also keep the galaxies' trust statistics
        (`~astro_mantis.explain.features_and_statistics`: the width and edge mass of
        their PDFs, the misalignment of their bands), so that `ood_score` weighs how
        broad a PDF is, how much of it sits at the top of the redshift range and
        whether the bands agree, beside where the galaxy lies in the embedding
        (default). False: the distance alone.

    Returns
    -------
    `ReferenceEmbedding`

    Raises
    ------
    FileNotFoundError
        If ``data`` is a string or path that is not a directory (the message names
        it).
    ValueError
        If no rows, or too few for ``k``, hold data.
    """
    net = resolve_model(model)
    parts, left_out = [], 0
    for x, d, _, n_out in _iter_data(data, split, max_rows, dust, net):
        left_out += n_out
        parts.append(features_and_statistics(net, x, d, batch_size=batch_size,
                                             statistics=STATISTICS if widths else ()))
    feats = [f for f, _ in parts]
    n_rows = sum(len(f) for f in feats)
    if not n_rows:
        where = f" in {str(data)!r}" if isinstance(data, (str, Path)) else ""
        raise ValueError(f"no galaxies with data{where}"
                         + (f" ({left_out} rows hold no data)" if left_out else ""))
    if left_out and n_rows < k + 2:
        raise ValueError(f"need more than k + 1 = {k + 1} reference rows for k = {k}; got "
                         f"{n_rows} ({left_out} rows without data left out)")
    meta = dict(getattr(net, "meta", {}) or {})
    info = {"model": meta.get("name", type(net).__name__), "sha256": meta.get("sha256"),
            "layer": "hidden (GELU(fc0([Base(x), dust])))",
            "data": str(data) if isinstance(data, (str, Path)) else "arrays",
            "split": split if isinstance(data, (str, Path)) else None,
            "n_left_out": int(left_out),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}
    return ReferenceEmbedding.from_features(
        np.concatenate(feats), n_components, k, info,
        statistics={name: np.concatenate([st[name] for _, st in parts])
                    for name in STATISTICS} if widths else None)


def reference_path(model):
    """Where a model's reference embedding lives: ``<weights stem>.ood.npz`` beside the weights.

    Parameters
    ----------
    model : str, path-like or `torch.nn.Module`
        A registry name (its bundled weights), a weights path, or a loaded model
        (``model.meta["weights"]``).

    Returns
    -------
    `pathlib.Path`
    """
    import torch

    if isinstance(model, torch.nn.Module):
        weights = (getattr(model, "meta", {}) or {}).get("weights")
        if not weights:
            raise ValueError("this model has no weights file (meta['weights']): save the "
                             "reference with ReferenceEmbedding.save(path) instead")
        weights = Path(weights)
    elif isinstance(model, str) and not Path(model).suffix:
        from ..models.registry import DATA_DIR, get_spec

        spec = get_spec(model)
        if not spec.bundled:
            raise ValueError(f"{spec.name} has no bundled weights: pass its weights path")
        weights = DATA_DIR / f"{spec.bundled}.safetensors"
    else:
        weights = Path(model)
    return weights.with_name(weights.stem + ".ood.npz")


def save_reference(reference, model, overwrite=False):
    """Write a reference embedding beside the model's weights (`reference_path`).

    Parameters
    ----------
    reference : `ReferenceEmbedding`
    model : str, path-like or `torch.nn.Module`
        As in `reference_path`: for a registry name, its bundled weights (the package's
        own data directory).
    overwrite : bool
        Replace a reference already there (for ``"mantis-mini"``, the one shipped with
        the package). False (default): refuse, as ``astro-mantis explain reference``
        does without ``--overwrite``.

    Returns
    -------
    `pathlib.Path`
        Where it was written.

    Raises
    ------
    FileExistsError
        If a file is there and ``overwrite`` is False.
    """
    path = reference_path(model)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists: pass overwrite=True to replace it")
    return reference.save(path)


def load_reference(model, check_weights=True):
    """The reference embedding stored beside a model's weights, or None if there is none.

    Parameters
    ----------
    model : str, path-like or `torch.nn.Module`
        As in `reference_path`.
    check_weights : bool
        For a loaded model (a `torch.nn.Module`): check that the reference was built
        for its weights (`check_reference_weights`). False: do not.

    Raises
    ------
    ValueError
        If the file there cannot be read (see `ReferenceEmbedding.load`), or, with
        ``check_weights``, records weights other than the model's.
    """
    import torch

    path = reference_path(model)
    if not path.is_file():
        return None
    ref = ReferenceEmbedding.load(path)
    if check_weights and isinstance(model, torch.nn.Module):
        check_reference_weights(ref, model, f" stored beside the weights, {path},")
    return ref


def check_reference_weights(reference, model, where=""):
    """Refuse a reference embedding built for weights other than the model's.

    A reference records the SHA-256 of the weights it was built with
    (``meta["sha256"]``, from the model's ``meta["sha256"]``); a loaded model records
    that of its weights file. Scored against a reference built for other weights
    (an earlier or fine-tuned version of the model), galaxies land in a feature
    space the reference does not describe and the scores mean nothing.

    Parameters
    ----------
    reference : `ReferenceEmbedding`
    model : `torch.nn.Module`
    where : str
        Inserted after "the reference embedding" in the message.

    Raises
    ------
    ValueError
        If both SHA-256s are known and differ. Nothing is checked when either is
        unknown (a reference built with `ReferenceEmbedding.from_features` or from a
        network that was not loaded from a file).
    """
    ref_sha = str((reference.meta or {}).get("sha256") or "").lower()
    net_sha = str((getattr(model, "meta", {}) or {}).get("sha256") or "").lower()
    if ref_sha and net_sha and ref_sha != net_sha:
        raise ValueError(f"the reference embedding{where} was built for other weights "
                         f"(sha256 {ref_sha[:16]}...) than the model's (sha256 "
                         f"{net_sha[:16]}...): build one for these weights "
                         "(build_reference, or astro-mantis explain reference), or pass "
                         "check_weights=False to use it anyway")


def _reference_for(model, reference):
    if reference is not None:
        return reference if isinstance(reference, ReferenceEmbedding) else \
            ReferenceEmbedding.load(reference)
    try:
        path = reference_path(model)
    except ValueError:  # a network without a weights file, a model without bundled weights
        path = None
    if path is None or not path.is_file():
        raise ValueError("no reference embedding for this model: build one with "
                         "build_reference(model, validation_data) and pass reference=, or "
                         "store it with save_reference")
    try:
        return ReferenceEmbedding.load(path)
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot read the reference embedding stored for this model, "
                         f"{path}: {exc} (rebuild it: astro-mantis explain reference "
                         "--overwrite)") from exc


def ood_score(data, model="mantis-mini", reference=None, dust=None, batch_size=64,
              widths=None, precision="float32", statistics=None, check_weights=True):
    """Out-of-distribution score of galaxies against the reference (see the module notes).

    Parameters
    ----------
    data : cutouts, `~astro_mantis.fusion.FusedInput`, array-like (N, 9, H, W)
        The galaxies; or their penultimate features (N, D) already computed (`embed`).
    model : str or `torch.nn.Module`
    reference : `ReferenceEmbedding` or path, optional
        Default: the one stored beside the model's weights (`load_reference`).
    dust : array-like, shape (N, 2), optional
    batch_size : int
    widths : array-like, shape (N,), optional
        Shorthand for ``statistics={"width": widths}``.
    precision : {"float32", "bfloat16", "float16", "int8"}
        Arithmetic of the network's pass over the images (see
        `~astro_mantis.explain.features_and_statistics`); the table job uses the
        precision its redshifts were computed in.
    statistics : dict, optional
        With features given as ``data``: their galaxies' statistics
        (`~astro_mantis.explain.features_and_statistics`), all those the reference
        holds, or none for the distance alone. Computed from the images otherwise.
    check_weights : bool
        Refuse a reference built for weights other than the model's: both record the
        SHA-256 of their weights (`check_reference_weights`; nothing is checked where
        either is unknown). False: score against it anyway. With features given as
        ``data`` the model is not loaded: only a `torch.nn.Module` given as ``model``
        is checked.

    Returns
    -------
    `numpy.ndarray`, float64, shape (N,)
        In [0, 1]; above `OOD_THRESHOLD` means unlike the training set. With a
        reference that holds statistics, the percentile of the largest of the k-NN
        distance percentile and each statistic's percentile; otherwise the k-NN
        distance percentile. NaN (no flag from `ood_flags`) for a row that holds no
        data (no valid channel in its fused input: a ``None`` cutout, every survey
        missing, an all-zero fused image; not run through the network) and for
        non-finite features or statistics.

    Raises
    ------
    ValueError
        Without a reference (none given, none stored beside the weights), if the
        stored one cannot be read (the message names the file), or, with
        ``check_weights``, if the reference was built for other weights.
    """
    import torch

    ref = _reference_for(model, reference)
    arr = None if not isinstance(data, np.ndarray) else data
    if arr is not None and arr.ndim == 2:  # features: no network is needed (or loaded)
        if check_weights and isinstance(model, torch.nn.Module):
            check_reference_weights(ref, model)
        return ref.score(arr, widths, statistics)
    net = resolve_model(model)
    if check_weights:
        check_reference_weights(ref, net)
    fused = as_fused(data, dust=dust, net=net)
    empty = no_data_rows(fused)
    out = np.full(len(fused.x), np.nan)
    keep = np.flatnonzero(~empty)
    x, d = (fused.x, fused.dust) if not empty.any() else (fused.x[keep], fused.dust[keep])
    feats, stats = features_and_statistics(net, x, d, batch_size=batch_size,
                                           precision=precision,
                                           statistics=tuple(ref.statistics))
    out[keep] = ref.score(feats, statistics=stats)
    return out


def ood_flags(scores, threshold=OOD_THRESHOLD):
    """`~astro_mantis.MantisFlag.OUT_OF_DISTRIBUTION` bits for scores above a threshold.

    Parameters
    ----------
    scores : array-like
        From `ood_score`; NaN gives no flag.
    threshold : float
        In (0, 1]; default `OOD_THRESHOLD`.

    Returns
    -------
    `numpy.ndarray`, int64
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold!r}")
    s = np.asarray(scores, dtype=float)
    return np.where(s > threshold, int(MantisFlag.OUT_OF_DISTRIBUTION), 0).astype(np.int64)


def auroc(negatives, positives):
    """Area under the ROC curve: P(a positive scores above a negative), ties counting ½.

    Parameters
    ----------
    negatives, positives : array-like
        Scores of the two classes.

    Returns
    -------
    float
    """
    from scipy.stats import rankdata

    a, b = np.asarray(negatives, float).ravel(), np.asarray(positives, float).ravel()
    if not len(a) or not len(b):
        raise ValueError("auroc needs at least one score in each class")
    r = rankdata(np.concatenate([a, b]))
    return float((r[len(a):].sum() - len(b) * (len(b) + 1) / 2) / (len(a) * len(b)))


class ShiftTestResult(NamedTuple):
    """Result of `shift_test`.

    Attributes
    ----------
    statistic : float
        MMD² (unbiased) or the cross-fitted classifier AUC.
    p_value : float
        Permutation p-value, (1 + #{permuted ≥ observed}) / (1 + n_permutations).
    method : str
    n_a, n_b : int
        Sample sizes: the rows compared.
    n_left_out_a, n_left_out_b : int
        Rows of each sample left out: masked rows of a table column (such as the
        ``z_pdf`` of rows ``add_redshift_columns`` did not estimate), rows with a
        non-finite value, and images that hold no data (no valid channel).
    """

    statistic: float
    p_value: float
    method: str
    n_a: int
    n_b: int
    n_left_out_a: int = 0
    n_left_out_b: int = 0


def _as_embedding(data, model, dust, reference):
    """(features of the usable rows, number of rows left out)."""
    if isinstance(data, Table):
        for name in ("embedding", "z_pdf"):
            if name in data.colnames:
                col = data[name]
                f = np.asarray(np.ma.getdata(col), dtype=float).reshape(len(col), -1)
                masked = np.ma.getmaskarray(col).reshape(len(col), -1).any(axis=1)
                break
        else:
            raise ValueError("a table given to shift_test needs an 'embedding' column "
                             "(N, D) or a 'z_pdf' column (the redshift PDFs of "
                             "add_redshift_columns)")
    elif isinstance(data, np.ndarray) and data.ndim == 2:
        f, masked = data.astype(float), np.zeros(len(data), bool)
    else:  # rows without data (no valid channel) are left out, as ood_score scores them NaN
        net = resolve_model(model)
        fused = as_fused(data, dust=dust, net=net)
        masked = no_data_rows(fused)
        keep = np.flatnonzero(~masked)
        x, d = (fused.x, fused.dust) if not masked.any() else (fused.x[keep], fused.dust[keep])
        feats = penultimate_features(net, x, d)
        f = np.full((len(fused.x), feats.shape[1]), np.nan)
        f[keep] = feats
    good = ~masked & np.isfinite(f).all(axis=1)
    f = f[good]
    if reference is not None and f.shape[1] == reference.components.shape[1]:
        f = reference.transform(f)
    return f, int(np.count_nonzero(~good))


def _gaussian_kernel(f):
    """Gaussian kernel matrix of rows ``f`` (N, D), width² the median pairwise distance².

    The squared distances come from ‖a‖² + ‖b‖² − 2 a·b (as `_kth_distances`), so the
    memory is a few N × N arrays, not the N × N × D of the broadcast difference.
    """
    sq = (f ** 2).sum(axis=1)
    d2 = sq[:, None] + sq[None, :]
    d2 -= 2.0 * (f @ f.T)
    np.maximum(d2, 0, out=d2)
    np.fill_diagonal(d2, 0.0)
    width2 = np.median(d2[np.triu_indices(len(f), 1)])
    d2 /= -max(width2, 1e-12)
    return np.exp(d2, out=d2)


def _mmd2(k, n_a):
    kaa, kbb, kab = k[:n_a, :n_a], k[n_a:, n_a:], k[:n_a, n_a:]
    n_b = len(k) - n_a
    return ((kaa.sum() - np.trace(kaa)) / (n_a * (n_a - 1))
            + (kbb.sum() - np.trace(kbb)) / (n_b * (n_b - 1)) - 2 * kab.mean())


def _stratified_folds(labels, rng):
    """Two folds that split each class in halves (its rows in random order, alternating).

    Every fold then holds at least ``n // 2`` rows of a class of ``n`` rows: with the
    4 rows per sample `shift_test` requires, both classes are in both folds.
    """
    folds = np.empty(len(labels), int)
    for c in (0, 1):
        rows = np.flatnonzero(labels == c)
        folds[rng.permutation(rows)] = (np.arange(len(rows)) + rng.integers(2)) % 2
    return folds


def _permute_within_folds(labels, folds, rng):
    """Labels permuted within each fold: every fold keeps its count of each class."""
    out = labels.copy()
    for k in (0, 1):
        rows = np.flatnonzero(folds == k)
        out[rows] = labels[rng.permutation(rows)]
    return out


def _lda_auc(f, labels, folds, ridge=1e-3):
    """Cross-fitted linear discriminant AUC."""
    scores = np.empty(len(f))
    for k in range(2):
        train, test = folds != k, folds == k
        for part, name in ((train, "training"), (test, "test")):
            if len(np.unique(labels[part])) < 2:
                raise ValueError(f"a {name} fold of the classifier test lacks one of the "
                                 "samples: each sample needs rows in both folds")
        a, b = f[train & (labels == 0)], f[train & (labels == 1)]
        cov = np.cov(np.concatenate([a - a.mean(0), b - b.mean(0)]).T) if f.shape[1] > 1 \
            else np.atleast_2d(np.var(np.concatenate([a - a.mean(0), b - b.mean(0)])))
        cov = np.atleast_2d(cov) + ridge * np.trace(np.atleast_2d(cov)) / f.shape[1] * np.eye(
            f.shape[1])
        w = np.linalg.solve(cov, b.mean(0) - a.mean(0))
        scores[test] = f[test] @ w
    return auroc(scores[labels == 0], scores[labels == 1])


def shift_test(a, b, model="mantis-mini", method="mmd", n_permutations=200, seed=0,
               reference=None, n_components=16, dust_a=None, dust_b=None):
    """Two-sample test: do two sets of galaxies differ in the network's embedding?

    Parameters
    ----------
    a, b : cutouts, `~astro_mantis.fusion.FusedInput`, array-like or `~astropy.table.Table`
        The two samples: anything `embed` takes; a 2-D array (N, D) of features
        already computed; or a table with an ``embedding`` column, or a ``z_pdf``
        column (the PDFs then serve as the embedding).
    model : str or `torch.nn.Module`
        Network giving the embedding.
    method : {"mmd", "classifier"}
        ``"mmd"``: unbiased MMD² with a Gaussian kernel whose width is the median
        pairwise distance. ``"classifier"``: a ridge-regularised linear discriminant
        fitted on one half and scored on the other (both ways); the statistic is its
        AUC. The halves split each sample in two (stratified folds, so both halves
        hold rows of both samples however unequal their sizes), and the permutations
        shuffle the labels within each half.
    n_permutations : int
        Label permutations for the p-value.
    seed : int
    reference : `ReferenceEmbedding`, optional
        If given (and the features match it), the samples are compared in its whitened
        PCA coordinates; otherwise in the leading ``n_components`` PCA axes of the two
        samples pooled.
    n_components : int
        Axes kept without a reference.
    dust_a, dust_b : array-like, optional
        Dust values for cutouts or arrays.

    Returns
    -------
    `ShiftTestResult`
        Rows that cannot be compared are left out and counted (``n_left_out_a``,
        ``n_left_out_b``): masked rows of a table column (the ``z_pdf`` of rows
        ``add_redshift_columns`` did not estimate), rows with a non-finite value, and
        images that hold no data (no valid channel in their fused input).

    Raises
    ------
    ValueError
        If fewer than 4 rows of a sample remain, the samples' feature widths differ,
        or the statistic is not finite (no p-value is returned from it).
    """
    if method not in ("mmd", "classifier"):
        raise ValueError(f"method must be 'mmd' or 'classifier'; got {method!r}")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be positive; got {n_permutations}")
    fa, out_a = _as_embedding(a, model, dust_a, reference)
    fb, out_b = _as_embedding(b, model, dust_b, reference)
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"the two samples have different feature widths: {fa.shape[1]} and "
                         f"{fb.shape[1]}")
    if len(fa) < 4 or len(fb) < 4:
        raise ValueError(f"each sample needs at least 4 rows with finite values; got "
                         f"{len(fa)} ({out_a} left out) and {len(fb)} ({out_b} left out)")
    f = np.concatenate([fa, fb])
    if reference is None or f.shape[1] != len(reference.components):
        f = f - f.mean(0)
        _, s, vt = np.linalg.svd(f, full_matrices=False)
        m = int(min(n_components, len(f) - 1, f.shape[1]))
        f = f @ vt[:m].T / np.maximum(s[:m] / np.sqrt(len(f) - 1), 1e-12)
    rng = np.random.default_rng(seed)
    n_a = len(fa)
    labels = np.r_[np.zeros(n_a, int), np.ones(len(fb), int)]
    if method == "mmd":
        k = _gaussian_kernel(f)
        stat = _mmd2(k, n_a)
        null = []
        for _ in range(n_permutations):
            p = rng.permutation(len(f))
            null.append(_mmd2(k[np.ix_(p, p)], n_a))
    else:  # folds split each sample in halves; permutations keep each fold's counts
        folds = _stratified_folds(labels, rng)
        stat = _lda_auc(f, labels, folds)
        null = [_lda_auc(f, _permute_within_folds(labels, folds, rng), folds)
                for _ in range(n_permutations)]
    null = np.asarray(null, dtype=float)
    if not np.isfinite(stat) or not np.isfinite(null).all():
        raise ValueError(f"the {method} statistic is not finite ({stat!r}, or in "
                         f"{int(np.count_nonzero(~np.isfinite(null)))} of the "
                         f"{n_permutations} permutations): no p-value")
    p = (1 + np.sum(null >= stat)) / (1 + n_permutations)
    return ShiftTestResult(float(stat), float(p), method, n_a, len(fb), out_a, out_b)
