# Licensed under a 3-clause BSD style license - see LICENSE
"""Redshift probability density functions on a fixed grid of redshift bins.

Mantis Shrimp predicts, for each galaxy, a probability for each of 400 redshift bins
covering :math:`0 \\le z < 1.6`. `RedshiftPDF` holds many such PDFs at once (one row
per galaxy) and computes everything users want from them, vectorised over the
rows: point estimates, credible intervals, the CDF and its inverse, sampling,
export to ``qp`` and to astropy Table columns.

Bin convention
--------------
The bins have edges `~astro_mantis.pdf.Z_EDGES`
``= numpy.linspace(0.0, 1.6, 401)`` (width 0.004) and
centres `Z_CENTERS`, the midpoints ``0.002, 0.006, ..., 1.598``. The PDF is taken to
be *piecewise constant*: a histogram whose value in each bin is a probability
density (per unit redshift), normalised so that ``sum(pdf * widths) == 1``. Every
statistic below is computed exactly for that histogram density (the CDF is
piecewise linear). The published model's 400 outputs map one to one onto these
bins (the reference implementation labels them with the left edges when training
and with ``numpy.linspace(0, 1.6, 400)`` when reporting; we use the true edges and
midpoints).
"""
import numpy as np

__all__ = ["RedshiftPDF", "point_estimate", "POINT_ESTIMATORS", "RECOMMENDED_POINT_ESTIMATE",
           "redshift_prior", "PRIOR_SMOOTHING", "ODDS_WIDTH", "Z_EDGES", "Z_CENTERS",
           "Z_WIDTHS", "NBINS", "ZMIN", "ZMAX"]

#: Number of redshift bins of the Mantis Shrimp models.
NBINS = 400
#: Lower edge of the first bin.
ZMIN = 0.0
#: Upper edge of the last bin (excluded from the support's half-open interval).
ZMAX = 1.6
#: Bin edges, ``numpy.linspace(0.0, 1.6, 401)``.
Z_EDGES = np.linspace(ZMIN, ZMAX, NBINS + 1)
Z_EDGES.setflags(write=False)
#: Bin centres (midpoints of `~astro_mantis.pdf.Z_EDGES`): 0.002, 0.006, ..., 1.598.
Z_CENTERS = 0.5 * (Z_EDGES[1:] + Z_EDGES[:-1])
Z_CENTERS.setflags(write=False)
#: Bin widths (all 0.004).
Z_WIDTHS = np.diff(Z_EDGES)
Z_WIDTHS.setflags(write=False)

# Rows processed at once by the chunked computations: bounds the float64 temporaries
# (rows x (nbins + 1)) to a few tens of MB, whatever the number of objects.
_CHUNK_ELEMENTS = 1_600_000

# Descriptions of the columns written by RedshiftPDF.to_table_columns.
_COLUMN_DESCRIPTIONS = {
    "pdf": "Redshift probability density per bin (piecewise constant; edges in meta['bin_edges'])",
    "mean": "Mean redshift of the PDF (the Mantis Shrimp point estimate)",
    "median": "Median redshift of the PDF",
    "mode": "Redshift of the bin centre with the highest probability density",
    "std": "Standard deviation of the redshift PDF",
    "lo68": "Lower end of the central 68% credible interval of the PDF",
    "hi68": "Upper end of the central 68% credible interval of the PDF",
    "odds": "Probability under the PDF that |z_median - z| / (1 + z) <= 0.05: that the "
            "median is not an outlier (BPZ-like odds)",
}

#: Width of the ``odds`` table column: the usual outlier threshold on ``|dz| / (1 + z)``.
ODDS_WIDTH = 0.05


def _check_edges(edges, nbins=None):
    """Validate bin edges and return them as a read-only float64 array."""
    if edges is None:
        edges = Z_EDGES
    edges = np.array(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2:
        raise ValueError(f"bin edges must be a 1-D array of at least 2 values, got shape "
                         f"{edges.shape}")
    if not np.all(np.isfinite(edges)) or not np.all(np.diff(edges) > 0):
        raise ValueError("bin edges must be finite and strictly increasing")
    if nbins is not None and edges.size != nbins + 1:
        raise ValueError(f"{nbins} bins need {nbins + 1} edges, got {edges.size}")
    edges.setflags(write=False)
    return edges


def _chunk_slices(n, width):
    """Yield row slices so that ``rows * width`` stays near ``_CHUNK_ELEMENTS``."""
    step = max(1, _CHUNK_ELEMENTS // max(int(width), 1))
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


#: The probability a distribution may have outside the bins before `RedshiftPDF.from_qp`
#: warns that it was dropped.
_QP_MASS_TOLERANCE = 1e-3


#: Largest array (in elements) of a scalar PDF's meta that `RedshiftPDF.to_table_columns`
#: copies into the ``pdf`` column's meta (a per-row array is never copied).
_SMALL_META = 64


def _is_row_array(value, n):
    """Whether a meta value holds one entry per row of an ``n``-row PDF."""
    return isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == n


def _row_meta(meta, n, item, scalar=False):
    """``meta`` with its per-row arrays (first axis of length ``n``) indexed by ``item``.

    ``scalar``: ``item`` is one integer, and a 0-d entry becomes a Python scalar (the
    convention of `~astro_mantis.models.predict` for one object).
    """
    out = {}
    for key, value in meta.items():
        if _is_row_array(value, n):
            value = value[item]
            if scalar and np.ndim(value) == 0:
                value = value.item()
        out[key] = value
    return out


def _recorded_grid(meta, prefix, nbins, name):
    """Bin edges from a table job's ``{prefix}zmin``/``zmax``/``nbins`` meta (any case);
    None where they are not all there."""
    lower = {str(k).lower(): v for k, v in (meta or {}).items()}
    try:
        zmin, zmax, n = (lower[f"{prefix}{key}".lower()] for key in ("zmin", "zmax", "nbins"))
        zmin, zmax, n = float(zmin), float(zmax), int(n)
    except (KeyError, TypeError, ValueError):
        return None
    if n != nbins:
        raise ValueError(f"column {name!r} has {nbins} bins but the table's meta records "
                         f"{prefix}nbins = {n}; pass edges=")
    edges = np.linspace(zmin, zmax, n + 1)
    if edges.shape == Z_EDGES.shape and np.allclose(edges, Z_EDGES, rtol=0, atol=1e-9):
        return None  # the standard grid: its own edges, exactly
    return edges


class RedshiftPDF:
    """Redshift PDFs of one or many objects on a common grid of bins.

    Each PDF is a histogram: a probability density (per unit redshift) that is
    constant within each bin. On construction every row is normalised so that
    ``sum(pdf * widths) == 1``. All methods are vectorised over the objects, and the
    statistics process large arrays in chunks, so a million rows of 400 bins are
    fine: their float64 temporaries stay within a few tens of MB. What a method
    returns is allocated whole: PDFs on the same bins (`change_prior`, `remap_cdf`,
    indexing with an array) are a new array in the storage type, `probabilities` a
    new float64 array of the PDFs' shape, and `to_qp` builds its ensemble from a
    float64 copy of every PDF.

    Parameters
    ----------
    pdf : array-like
        Densities (or any non-negative weights proportional to them), shape
        ``(N, nbins)`` for N objects or ``(nbins,)`` for a single object. A 1-D
        input gives a *scalar* PDF whose statistics are plain floats.
    edges : array-like, optional
        Bin edges, ``nbins + 1`` strictly increasing values.
        Default: `~astro_mantis.pdf.Z_EDGES`, the
        400 bins of width 0.004 on [0, 1.6).
    meta : dict, optional
        Free-form metadata (model name, weights checksum, ...). An array whose first
        axis has one entry per row (``N``) is taken to be per-row data (as the
        ``flags``, ``valid`` and ``features`` of `~astro_mantis.models.predict`):
        indexing and `concatenate` select and join its rows, `stack` leaves it out,
        and `to_table_columns` never copies it into the ``pdf`` column's meta, which
        gets the rest (the provenance).
    dtype : dtype, optional
        Storage type, ``numpy.float32`` or ``numpy.float64``. Default: float32 if
        the input is float32, float64 otherwise. Statistics are always computed in
        float64.
    allow_invalid : bool
        What to do with rows that cannot be normalised (they contain NaN or
        infinite values, or sum to zero). By default they raise `ValueError`. With
        ``allow_invalid=True`` they are kept as all-NaN rows, flagged ``False`` in
        `valid`, and every statistic of such a row is NaN. This keeps tables
        row-aligned when some objects could not be estimated.
    copy : bool
        If False and ``pdf`` is already a C-contiguous array of the storage type,
        it is used (and normalised) in place instead of being copied.

    Raises
    ------
    ValueError
        If the shape does not match the edges, a value is negative, or a row cannot
        be normalised and ``allow_invalid`` is False.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_mantis.pdf import RedshiftPDF, Z_CENTERS
    >>> p = RedshiftPDF(np.exp(-0.5 * ((Z_CENTERS - 0.5) / 0.05) ** 2))
    >>> round(p.mean(), 4), round(p.median(), 4), round(p.mode(), 3)
    (0.5, 0.5, 0.498)
    >>> lo, hi = p.interval(0.68)
    >>> round(lo, 3), round(hi, 3)
    (0.45, 0.55)
    """

    def __init__(self, pdf, edges=None, meta=None, dtype=None, allow_invalid=False, copy=True):
        if np.ma.isMaskedArray(pdf):  # masked values (e.g. a MaskedColumn) become NaN
            pdf = np.ma.filled(pdf.astype(np.result_type(pdf.dtype, np.float32)), np.nan)
        arr = np.asarray(pdf)
        if dtype is None:
            dtype = np.float32 if arr.dtype == np.float32 else np.float64
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        if arr.ndim not in (1, 2):
            raise ValueError(f"pdf must have shape (N, nbins) or (nbins,), got {arr.shape}")
        self._scalar = arr.ndim == 1
        arr2 = arr.reshape(1, -1) if self._scalar else arr
        if copy or arr2.dtype != dtype or not arr2.flags.c_contiguous or not arr2.flags.writeable:
            arr2 = np.array(arr2, dtype=dtype, order="C", copy=True)
        self._edges = _check_edges(edges, arr2.shape[1])
        self._widths = np.diff(self._edges)
        self._equal_widths = bool(np.allclose(self._widths, self._widths[0], rtol=1e-12,
                                              atol=0))
        self._pdf = arr2
        self._valid = self._normalise(allow_invalid)
        self.meta = dict(meta) if meta is not None else {}

    # -- construction helpers --------------------------------------------------------
    def _normalise(self, allow_invalid):
        """Normalise the rows in place; return the validity mask."""
        pdf, widths = self._pdf, self._widths
        rtol = 1e-12 if pdf.dtype == np.float64 else 1e-6
        valid = np.ones(len(pdf), dtype=bool)
        for s in _chunk_slices(len(pdf), pdf.shape[1]):
            block = pdf[s]
            if np.any(block < 0):
                rows = s.start + np.unique(np.nonzero(block < 0)[0])
                raise ValueError(f"pdf values must be non-negative; negative values in rows "
                                 f"{rows[:10].tolist()}{' ...' if rows.size > 10 else ''}")
            norm = block.astype(np.float64, copy=False) @ widths
            ok = np.isfinite(norm) & (norm > 0)
            valid[s] = ok
            if not np.all(ok):
                if not allow_invalid:
                    rows = s.start + np.nonzero(~ok)[0]
                    raise ValueError(
                        "some PDF rows cannot be normalised (NaN or infinite values, or all "
                        f"zero): rows {rows[:10].tolist()}{' ...' if rows.size > 10 else ''}; "
                        "pass allow_invalid=True to keep them as NaN rows")
                block[~ok] = np.nan
            scale = np.where(ok, norm, 1.0)
            # rows already normalised to the storage precision are left untouched
            if not np.allclose(scale, 1.0, rtol=rtol, atol=0):
                block /= scale[:, None].astype(block.dtype)
        return valid

    @classmethod
    def _wrap(cls, pdf, edges, valid, scalar, meta):
        """Build from arrays known to be normalised (no copy, no checks)."""
        obj = cls.__new__(cls)
        obj._pdf = pdf
        obj._edges = edges
        obj._widths = np.diff(edges)
        obj._equal_widths = bool(np.allclose(obj._widths, obj._widths[0], rtol=1e-12, atol=0))
        obj._valid = valid
        obj._scalar = scalar
        obj.meta = dict(meta)
        return obj

    @classmethod
    def from_logits(cls, logits, edges=None, temperature=1.0, meta=None, dtype=None,
                    allow_invalid=False):
        """PDFs from a network's per-bin logits (softmax over the bins).

        The softmax gives the probability of each bin; dividing by the bin widths
        gives the density. With the published model, logit ``k`` belongs to the
        bin ``[Z_EDGES[k], Z_EDGES[k + 1])``.

        Parameters
        ----------
        logits : array-like
            Shape ``(N, nbins)`` or ``(nbins,)``.
        edges : array-like, optional
            Bin edges (default `~astro_mantis.pdf.Z_EDGES`).
        temperature : float
            Softmax temperature ``T > 0``: probabilities are ``softmax(logits / T)``.
            ``T > 1`` widens the PDFs, ``T < 1`` sharpens them (temperature scaling
            calibration).
        meta, dtype, allow_invalid
            As for `RedshiftPDF`.

        Returns
        -------
        `RedshiftPDF`
        """
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        arr = np.asarray(logits)
        if dtype is None:
            dtype = np.float32 if arr.dtype == np.float32 else np.float64
        scalar = arr.ndim == 1
        arr2 = np.atleast_2d(arr)
        if arr2.ndim != 2:
            raise ValueError(f"logits must have shape (N, nbins) or (nbins,), got {arr.shape}")
        widths = np.diff(_check_edges(edges, arr2.shape[1]))
        out = np.empty(arr2.shape, dtype=dtype)
        for s in _chunk_slices(len(arr2), arr2.shape[1]):
            x = arr2[s].astype(np.float64) / temperature
            with np.errstate(invalid="ignore"):
                x -= np.max(x, axis=1, keepdims=True)
            np.exp(x, out=x)
            x /= widths
            out[s] = x
        return cls(out[0] if scalar else out, edges=edges, meta=meta, dtype=dtype,
                   allow_invalid=allow_invalid, copy=False)

    @classmethod
    def from_samples(cls, samples, edges=None, weights=None, meta=None, dtype=None,
                     allow_invalid=False):
        """Histogram PDFs from redshift samples (one row of samples per object).

        Parameters
        ----------
        samples : array-like
            Shape ``(N, S)`` (S samples for each of N objects) or ``(S,)`` (one
            object). Samples outside the edges and NaN samples are ignored.
        edges : array-like, optional
            Bin edges (default `~astro_mantis.pdf.Z_EDGES`).
        weights : array-like, optional
            Weights of the samples, same shape as ``samples``.
        meta, dtype, allow_invalid
            As for `RedshiftPDF`. Objects with no sample inside the edges cannot be
            normalised.

        Returns
        -------
        `RedshiftPDF`
        """
        edges = _check_edges(edges)
        samples = np.asarray(samples, dtype=np.float64)
        scalar = samples.ndim == 1
        s2 = np.atleast_2d(samples)
        if s2.ndim != 2:
            raise ValueError(f"samples must have shape (N, S) or (S,), got {samples.shape}")
        if weights is None:
            w2 = np.ones_like(s2)
        else:
            w2 = np.asarray(weights, dtype=np.float64)
            if w2.shape != samples.shape:
                raise ValueError(f"weights must have the shape of samples {samples.shape}, "
                                 f"got {w2.shape}")
            w2 = w2.reshape(s2.shape)
        nbins = edges.size - 1
        n = len(s2)
        idx = np.searchsorted(edges, s2, side="right") - 1
        inside = (idx >= 0) & (idx < nbins) & np.isfinite(s2)
        flat = (np.arange(n)[:, None] * nbins + idx)[inside]
        counts = np.bincount(flat, weights=w2[inside], minlength=n * nbins).reshape(n, nbins)
        counts /= np.diff(edges)
        if dtype is None:
            dtype = np.float64
        return cls(counts[0] if scalar else counts, edges=edges, meta=meta, dtype=dtype,
                   allow_invalid=allow_invalid, copy=False)

    @classmethod
    def from_qp(cls, ensemble, edges=None, meta=None, dtype=None, allow_invalid=False):
        """PDFs from a ``qp.Ensemble``.

        A ``qp.hist`` ensemble on the same edges is taken over directly; any other
        ensemble (or other edges) is binned exactly: the probability of each bin is
        the difference of the ensemble's CDF at the bin edges. Probability outside the
        edges cannot be kept: it is dropped and each PDF renormalised over the bins,
        with an `~astropy.utils.exceptions.AstropyUserWarning` when a distribution
        loses more than 0.1 % of it.

        Parameters
        ----------
        ensemble : ``qp.Ensemble``
            The distributions, one per object.
        edges : array-like, optional
            Bin edges of the result. Default: the ensemble's own bins for a
            ``qp.hist`` ensemble, `~astro_mantis.pdf.Z_EDGES` otherwise.
        meta, dtype, allow_invalid
            As for `RedshiftPDF`.

        Returns
        -------
        `RedshiftPDF`
            One row per distribution, never scalar: a one-object ensemble gives
            ``n=1`` (``qp`` does not record whether it came from a scalar PDF).
        """
        md = ensemble.metadata
        name = np.atleast_1d(md.get("pdf_name", [b""]))[0]
        name = name.decode() if isinstance(name, bytes) else str(name)
        if name == "hist":
            bins = np.asarray(md["bins"], dtype=np.float64).ravel()
            if edges is None or (np.size(edges) == bins.size and np.allclose(edges, bins)):
                # qp stores a one-object ensemble's densities as one row of shape (nbins,)
                pdfs = np.atleast_2d(np.asarray(ensemble.objdata["pdfs"]))
                return cls(pdfs, edges=bins, meta=meta, dtype=dtype,
                           allow_invalid=allow_invalid)
        edges = _check_edges(edges)
        cdf = np.asarray(ensemble.cdf(edges), dtype=np.float64).reshape(-1, edges.size)
        prob = np.clip(np.diff(cdf, axis=1), 0.0, None)
        outside = 1.0 - prob.sum(axis=1)  # probability beyond the edges, dropped
        lost = outside > _QP_MASS_TOLERANCE
        if lost.any():
            import warnings

            from astropy.utils.exceptions import AstropyUserWarning

            warnings.warn(
                f"{int(lost.sum())} of {len(prob)} distributions have more than "
                f"{_QP_MASS_TOLERANCE:g} of their probability outside the bins "
                f"[{edges[0]:g}, {edges[-1]:g}) (up to {float(np.nanmax(outside)):.3g}); "
                "it is dropped and each PDF renormalised over the bins (pass wider edges "
                "to keep it)", AstropyUserWarning, stacklevel=2)
        return cls(prob / np.diff(edges), edges=edges, meta=meta, dtype=dtype,
                   allow_invalid=allow_invalid, copy=False)

    @classmethod
    def from_table(cls, table, prefix="z_", edges=None, dtype=None, copy=True):
        """Read PDFs back from the ``{prefix}pdf`` column of a table.

        The bin edges are looked up, in order, in: the ``edges`` argument, the
        column's ``meta['bin_edges']`` (written by `to_table_columns`), the table's
        ``meta['{prefix}bin_edges']`` and ``meta['bin_edges']``, then the grid the
        table job records in the table's meta, ``{prefix}zmin``, ``{prefix}zmax`` and
        ``{prefix}nbins`` (in any case, as FITS headers upper-case them; a format such
        as VOTable keeps these but not the column's meta). If none is found and
        the column has 400 bins, the standard `~astro_mantis.pdf.Z_EDGES` are used. Rows with a
        masked value, a NaN or an infinity, and all-zero rows, become invalid (all-NaN)
        rows.

        Parameters
        ----------
        table : `~astropy.table.Table`
            Table with a ``{prefix}pdf`` column of shape ``(N, nbins)``.
        prefix : str
            Column name prefix.
        edges : array-like, optional
            Bin edges, overriding any found in the metadata.
        dtype : dtype, optional
            Storage type (default: that of the column if float32, else float64).
        copy : bool
            If False, share memory with the column when its type allows (a
            C-contiguous, writeable float32 or float64 column without masked values,
            of the storage type ``dtype``): this saves a copy of a large column, but
            **modifies the column in place**. Every row is normalised (``sum(pdf *
            widths) == 1``), and every row that cannot be normalised (all zero, or
            holding a NaN or an infinity anywhere, so also partly-NaN rows) becomes
            all NaN; a negative value raises `ValueError`, possibly after the rows of
            earlier chunks were already normalised. The default copies and leaves the
            column as it was.

        Returns
        -------
        `RedshiftPDF`
        """
        name = f"{prefix}pdf"
        if name not in table.colnames:
            raise KeyError(f"no column {name!r} in the table; columns are {table.colnames}")
        col = table[name]
        if np.ma.isMaskedArray(col) and np.ma.is_masked(col):
            data = col  # the constructor turns masked values into NaN
        else:
            data = np.asarray(np.ma.getdata(col))  # no copy
        if np.ndim(data) != 2:
            raise ValueError(f"column {name!r} must have shape (N, nbins), got {np.shape(data)}")
        meta = dict(col.meta or {})
        if edges is None:
            for source in (meta.get("bin_edges"), table.meta.get(f"{prefix}bin_edges"),
                           table.meta.get("bin_edges")):
                if source is not None:
                    edges = source
                    break
        if edges is None:
            edges = _recorded_grid(table.meta, prefix, np.shape(data)[1], name)
        if edges is None and np.shape(data)[1] != NBINS:
            raise ValueError(f"column {name!r} has {np.shape(data)[1]} bins and no bin edges in "
                             "its meta; pass edges=")
        meta.pop("bin_edges", None)
        meta.pop("bin_convention", None)
        return cls(data, edges=edges, meta=meta, dtype=dtype, allow_invalid=True, copy=copy)

    @classmethod
    def concatenate(cls, pdfs):
        """Join several `RedshiftPDF` on the same bins into one (e.g. inference chunks).

        Parameters
        ----------
        pdfs : sequence of `RedshiftPDF`

        Returns
        -------
        `RedshiftPDF`
            Non-scalar; the meta of the first one, except its per-row arrays (arrays
            whose first axis has one entry per row, such as the ``flags``, ``valid``
            and ``features`` of `~astro_mantis.models.predict`): these are joined in
            order when every non-scalar input has one under that name with the same
            trailing shape (a scalar input adds its value as one row), and left out
            otherwise.
        """
        pdfs = list(pdfs)
        if not pdfs:
            raise ValueError("nothing to concatenate")
        edges = pdfs[0].edges
        for p in pdfs[1:]:
            if p.nbins != pdfs[0].nbins or not np.array_equal(p.edges, edges):
                raise ValueError("all PDFs must share the same bin edges")
        data = np.concatenate([p._pdf for p in pdfs])
        valid = np.concatenate([p._valid for p in pdfs])
        meta = {}
        for key, value in pdfs[0].meta.items():
            per_row = [not p._scalar and _is_row_array(p.meta.get(key), len(p._pdf))
                       for p in pdfs]
            if not any(per_row):
                meta[key] = value
                continue
            parts = []
            for p, row in zip(pdfs, per_row):
                if row:
                    parts.append(p.meta[key])
                elif p._scalar and key in p.meta:
                    parts.append(np.asarray(p.meta[key])[np.newaxis])
                else:
                    parts = None
                    break
            if parts is not None and len({part.shape[1:] for part in parts}) == 1:
                meta[key] = np.concatenate(parts)
        return cls._wrap(data, edges, valid, False, meta)

    # -- basic properties ----------------------------------------------------------
    @property
    def edges(self):
        """Bin edges, shape ``(nbins + 1,)`` (read-only)."""
        return self._edges

    @property
    def centers(self):
        """Bin centres (midpoints of the edges), shape ``(nbins,)``."""
        return 0.5 * (self._edges[1:] + self._edges[:-1])

    @property
    def widths(self):
        """Bin widths, shape ``(nbins,)``."""
        return self._widths.copy()

    @property
    def nbins(self):
        """Number of bins."""
        return self._pdf.shape[1]

    @property
    def isscalar(self):
        """True for a single PDF (built from a 1-D array or by integer indexing)."""
        return self._scalar

    @property
    def shape(self):
        """Shape of `pdf`: ``(N, nbins)``, or ``(nbins,)`` for a scalar PDF."""
        return self._pdf.shape[1:] if self._scalar else self._pdf.shape

    @property
    def pdf(self):
        """The normalised densities, shape `shape` (a read-only view)."""
        view = self._pdf[0] if self._scalar else self._pdf[:]
        view = view.view()
        view.setflags(write=False)
        return view

    @property
    def valid(self):
        """True for rows that hold a PDF, False for invalid (NaN) rows.

        A bool for a scalar PDF, an array of shape ``(N,)`` otherwise.
        """
        return bool(self._valid[0]) if self._scalar else self._valid.copy()

    @property
    def dtype(self):
        """Storage type of the densities."""
        return self._pdf.dtype

    def probabilities(self):
        """Probability of each bin, ``pdf * widths``.

        Returns
        -------
        `~numpy.ndarray`
            A new float64 array of the shape of `pdf` (N × nbins × 8 bytes: the
            only allocation; float32 densities are cast on the fly).
        """
        out = self._pdf * self._widths
        return out[0] if self._scalar else out

    def __len__(self):
        if self._scalar:
            raise TypeError("a scalar RedshiftPDF has no len()")
        return len(self._pdf)

    def __getitem__(self, item):
        if self._scalar:
            raise TypeError("a scalar RedshiftPDF cannot be indexed")
        if isinstance(item, tuple):
            raise IndexError("RedshiftPDF takes one index (over objects), not a tuple")
        if isinstance(item, (int, np.integer)):
            i = range(len(self._pdf))[item]  # raises IndexError when out of range
            return self._wrap(self._pdf[i:i + 1], self._edges, self._valid[i:i + 1], True,
                              _row_meta(self.meta, len(self._pdf), i, scalar=True))
        data = self._pdf[item]
        valid = self._valid[item]
        if data.ndim != 2:  # pragma: no cover (numpy gives 2-D for slices and arrays)
            raise IndexError(f"unsupported index {item!r}")
        return self._wrap(data, self._edges, valid, False,
                          _row_meta(self.meta, len(self._pdf), item))

    def __iter__(self):
        if self._scalar:
            raise TypeError("a scalar RedshiftPDF is not iterable")
        for i in range(len(self._pdf)):
            yield self[i]

    def __repr__(self):
        n = "scalar" if self._scalar else f"n={len(self._pdf)}"
        bad = int(np.count_nonzero(~self._valid))
        extra = f" invalid={bad}" if bad else ""
        return (f"<RedshiftPDF {n} nbins={self.nbins} "
                f"z=[{self._edges[0]:g}, {self._edges[-1]:g}){extra}>")

    # -- internal helpers ----------------------------------------------------------
    def _out(self, values):
        """Return a float for a scalar PDF, the (N,) array otherwise."""
        return float(values[0]) if self._scalar else values

    def _cdf_edges_t(self, s):
        """Unnormalised CDF at the edges for rows ``s``, *transposed*.

        Returns ``(ft, total)``: float64 ``ft`` of shape ``(nbins + 1, rows)`` with
        ``ft[0] == 0`` and ``ft[-1] == total``, so that the CDF at edge ``k`` is
        ``ft[k] / total`` (total is 1 up to rounding; with equal bin widths the
        multiplication by the width is skipped, as it cancels in the ratio). The
        transposed layout makes the running sum a sequence of contiguous vector
        additions, much faster than ``cumsum(axis=1)``. Invalid rows are NaN.
        """
        block = self._pdf[s]
        ft = np.empty((block.shape[1] + 1, block.shape[0]))
        ft[0] = 0.0
        if self._equal_widths:
            ft[1:] = block.T
        else:
            np.multiply(block.T, self._widths[:, None], out=ft[1:])
        for k in range(2, ft.shape[0]):
            ft[k] += ft[k - 1]
        return ft, ft[-1].copy()

    def _broadcast_z(self, z):
        """Pair the values ``z`` with the objects; return (z_b, out_shape).

        ``z_b`` has shape ``(N, ...)`` (a broadcast view), ``out_shape`` is the
        shape of the result.
        """
        z = np.asarray(z, dtype=np.float64)
        n = len(self._pdf)
        if self._scalar:
            return z.reshape((1,) + z.shape), z.shape
        if z.ndim == 0:
            return np.broadcast_to(z, (n,)), (n,)
        try:
            shape = np.broadcast_shapes(z.shape, (n,) + (1,) * (z.ndim - 1))
        except ValueError:
            raise ValueError(
                f"z of shape {z.shape} does not pair with {n} objects: its first axis must "
                f"have length {n} or 1 (one value or row of values per object); to evaluate "
                "every object on a common grid pass grid[np.newaxis, :]") from None
        return np.broadcast_to(z, shape), shape

    def _rowwise(self, z, func):
        """Apply ``func(rows_slice, z2d) -> (rows, M)`` chunk by chunk."""
        z_b, shape = self._broadcast_z(z)
        n = len(self._pdf)
        m = int(np.prod(z_b.shape[1:], dtype=np.int64))
        out = np.empty((n, m))
        for s in _chunk_slices(n, max(self.nbins + 1, m)):
            zz = np.ascontiguousarray(z_b[s]).reshape(s.stop - s.start, m)
            out[s] = func(s, zz)
        out = out.reshape(shape)
        return float(out) if out.ndim == 0 else out

    def _ppf_block(self, s, q):
        """Quantiles ``q`` (rows, M) for rows ``s``."""
        ft, total = self._cdf_edges_t(s)
        nb = self.nbins
        rows, ncol = q.shape
        valid = self._valid[s]
        if not np.all(valid):
            ft[:, ~valid] = np.linspace(0.0, 1.0, nb + 1)[:, None]  # masked below
            total[~valid] = 1.0
        bad_q = ~((q >= 0) & (q <= 1))
        # Work in the unnormalised units of ft: q becomes q * total.
        qq = np.where(bad_q, 0.5, q) * total[:, None]
        # j = number of edge CDF values below q (searchsorted 'left' in each row), so
        # that F[j - 1] < q <= F[j]: q falls in bin j - 1.
        if ncol <= 8:
            cols = np.arange(rows)[:, None]

            def at(idx):
                return ft[idx, cols]

            j = np.empty(q.shape, dtype=np.int64)
            for c in range(ncol):
                j[:, c] = np.count_nonzero(ft < qq[:, c], axis=0)
        else:
            # Many quantiles per row: gather from a row-major copy (cache friendly) and
            # run one searchsorted over all rows, shifting row r by 2 r max(total) so
            # that rows do not overlap; then correct the rare off-by-one caused by
            # rounding the shifted values.
            fr = np.ascontiguousarray(ft.T).ravel()
            base = (nb + 1) * np.arange(rows)[:, None]

            def at(idx):
                return fr[idx + base]

            off = 2.0 * float(np.max(total)) * np.arange(rows)[:, None]
            g = (fr.reshape(rows, nb + 1) + off).ravel()
            j = np.searchsorted(g, (qq + off).ravel(), side="left").reshape(q.shape) - base
            del g
            for _ in range(nb + 1):
                j = np.clip(j, 1, nb)
                up = (j < nb) & (at(j) < qq)
                down = (j > 1) & (at(j - 1) >= qq)
                if not (up.any() or down.any()):
                    break
                j = j + up - down
        zero = q == 0
        if np.any(zero):  # q = 0: lower edge of the first bin with probability
            j0 = np.count_nonzero(ft <= 0, axis=0)
            j = np.where(zero, j0[:, None], j)
        k = np.clip(j - 1, 0, nb - 1)
        fk = at(k)
        mk = at(k + 1) - fk
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(mk > 0, (qq - fk) / mk, 0.0)
        frac = np.clip(frac, 0.0, 1.0)
        z = self._edges[k] + frac * self._widths[k]
        z[bad_q | ~valid[:, None]] = np.nan
        return z

    # -- distribution functions ----------------------------------------------------
    def cdf(self, z):
        """Cumulative distribution function at ``z`` (linear within each bin).

        Parameters
        ----------
        z : float or array-like
            Redshifts. For N objects, ``z`` is paired with the objects along its
            first axis: a scalar or an array of shape ``(N,)`` gives one value per
            object; shape ``(N, M)`` gives M values per object; shape ``(1, M)``
            (e.g. ``grid[np.newaxis, :]``) evaluates every object on a common grid.
            For a scalar PDF, any shape.

        Returns
        -------
        float or `~numpy.ndarray`
            0 below the first edge, 1 above the last; NaN for invalid rows and NaN z.
        """
        edges, widths = self._edges, self._widths
        nb = self.nbins

        def func(s, zz):
            ft, total = self._cdf_edges_t(s)
            k = np.clip(np.searchsorted(edges, zz, side="right") - 1, 0, nb - 1)
            cols = np.arange(ft.shape[1])[:, None]
            fk = ft[k, cols]
            mk = ft[k + 1, cols] - fk
            with np.errstate(invalid="ignore"):
                frac = np.clip((zz - edges[k]) / widths[k], 0.0, 1.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                out = (fk + frac * mk) / total[:, None]
            out[zz < edges[0]] = 0.0
            out[zz >= edges[-1]] = 1.0
            out[np.isnan(zz) | ~self._valid[s, None]] = np.nan
            return out

        return self._rowwise(z, func)

    def ppf(self, q):
        """Quantile function (inverse of `cdf`) at probabilities ``q``.

        Within a bin the CDF is linear, so the quantile is interpolated linearly. Where
        the CDF is flat (bins with zero probability) the smallest redshift reaching
        ``q`` is returned; ``q = 0`` gives the lower edge of the first bin with
        probability, ``q = 1`` the upper edge of the last one.

        Parameters
        ----------
        q : float or array-like
            Probabilities in [0, 1], paired with the objects as ``z`` in `cdf`.

        Returns
        -------
        float or `~numpy.ndarray`
            NaN for ``q`` outside [0, 1] and for invalid rows.
        """
        return self._rowwise(q, self._ppf_block)

    def pdf_at(self, z):
        """Probability density at ``z`` (the value of the bin containing ``z``).

        Parameters
        ----------
        z : float or array-like
            Redshifts, paired with the objects as in `cdf`. Bins are half-open,
            ``[edges[k], edges[k + 1])``.

        Returns
        -------
        float or `~numpy.ndarray`
            0 outside the edges; NaN for invalid rows and NaN z.
        """
        edges = self._edges
        nb = self.nbins

        def func(s, zz):
            k = np.searchsorted(edges, zz, side="right") - 1
            inside = (k >= 0) & (k < nb)
            out = np.take_along_axis(self._pdf[s], np.clip(k, 0, nb - 1), axis=1)
            out = np.where(inside, out, 0.0)
            out[np.isnan(zz) | ~self._valid[s, None]] = np.nan
            return out

        return self._rowwise(z, func)

    # -- point estimates and intervals ---------------------------------------------
    def mean(self):
        """Mean redshift of each PDF (the point estimate of the Mantis Shrimp paper).

        Exact for the histogram: ``sum(pdf * widths * centers)``.

        Returns
        -------
        float or `~numpy.ndarray`
            Shape ``(N,)``; NaN for invalid rows.
        """
        out = np.empty(len(self._pdf))
        wc = self._widths * self.centers
        for s in _chunk_slices(len(self._pdf), self.nbins):
            out[s] = self._pdf[s].astype(np.float64, copy=False) @ wc
        return self._out(out)

    def std(self):
        """Standard deviation of each PDF.

        Exact for the histogram density, so it includes the spread within the bins:
        ``var = sum(P_k * (c_k**2 + w_k**2 / 12)) - mean**2`` with bin probabilities
        ``P_k``, centres ``c_k`` and widths ``w_k``. A PDF confined to one bin has
        ``std = w / sqrt(12)``.

        Returns
        -------
        float or `~numpy.ndarray`
            Shape ``(N,)``; NaN for invalid rows.
        """
        n = len(self._pdf)
        c = self.centers
        w = self._widths
        m1 = np.empty(n)
        m2 = np.empty(n)
        for s in _chunk_slices(n, self.nbins):
            block = self._pdf[s].astype(np.float64, copy=False)
            m1[s] = block @ (w * c)
            m2[s] = block @ (w * (c * c + w * w / 12.0))
        var = np.clip(m2 - m1 * m1, 0.0, None)
        return self._out(np.sqrt(var))

    def median(self):
        """Median redshift of each PDF, ``ppf(0.5)``.

        Returns
        -------
        float or `~numpy.ndarray`
            Shape ``(N,)``; NaN for invalid rows.
        """
        return self.ppf(0.5)

    def mode(self, refine=False):
        """Redshift of the highest density: the peak bin's centre, or refined within it.

        Parameters
        ----------
        refine : bool
            If False (the default), the centre of the bin with the highest density
            (the first one if tied). If True, the vertex of the parabola through that
            bin and its two neighbours (bin centres as abscissae), kept inside the
            peak bin: a sub-bin estimate of the peak of the underlying smooth density.
            A peak in the first or last bin, or a flat top, keeps the bin centre.

        Returns
        -------
        float or `~numpy.ndarray`
            Shape ``(N,)``; NaN for invalid rows.
        """
        n = len(self._pdf)
        idx = np.empty(n, dtype=np.int64)
        shift = np.zeros(n)
        nb = self.nbins
        for s in _chunk_slices(n, nb):
            block = np.nan_to_num(self._pdf[s], nan=-1.0)
            k = np.argmax(block, axis=1)
            idx[s] = k
            if refine and nb >= 3:
                rows = np.arange(len(k))
                inner = (k > 0) & (k < nb - 1)
                kc = np.clip(k, 1, nb - 2)
                left = block[rows, kc - 1].astype(np.float64)
                mid = block[rows, kc].astype(np.float64)
                right = block[rows, kc + 1].astype(np.float64)
                # vertex offset in units of the bin spacing (exact on equal widths)
                curv = left - 2.0 * mid + right
                with np.errstate(invalid="ignore", divide="ignore"):
                    off = np.where(inner & (curv < 0), 0.5 * (left - right) / curv, 0.0)
                shift[s] = np.clip(np.nan_to_num(off), -0.5, 0.5)
        out = self.centers[idx]
        if refine:
            out = out + shift * self._widths[idx]
        out[~self._valid] = np.nan
        return self._out(out)

    def smoothed_mode(self, scale=0.5):
        """Peak of each PDF after smoothing it by a fraction of its own width.

        Each row is convolved with a Gaussian of standard deviation ``scale``
        times the row's `std` (zero outside the edges), and the sub-bin peak of the
        result is returned (as ``mode(refine=True)``). The smoothing removes the
        bin-to-bin noise that makes the plain `mode` jumpy, while a narrow PDF stays
        narrow. A peak near an edge of the grid is moved inwards, since the kernel
        sees zeros beyond the edge, but less than the `mean` or `median` move: for a
        Gaussian of standard deviation 0.05 peaking at ``z = 0.02`` (truncated at 0)
        the smoothed mode is 0.031, the median 0.042 and the mean 0.048; for one of
        standard deviation 0.1 peaking at 0, 0.047 against 0.067 and 0.080; for one
        of standard deviation 0.05 peaking at 1.59, 1.573 against 1.562 and 1.556
        (``mode(refine=True)`` stays at the peak in all three).

        Parameters
        ----------
        scale : float
            Width of the smoothing kernel in units of each PDF's standard deviation
            (0 gives ``mode(refine=True)``).

        Returns
        -------
        float or `~numpy.ndarray`
            Shape ``(N,)``; NaN for invalid rows.

        Raises
        ------
        ValueError
            If ``scale`` is negative or not finite.
        """
        scale = float(scale)
        if not np.isfinite(scale) or scale < 0:
            raise ValueError(f"scale must be a non-negative number, got {scale!r}")
        if scale == 0:
            return self.mode(refine=True)
        n, nb = len(self._pdf), self.nbins
        std = np.atleast_1d(self.std())
        width = float(np.mean(self._widths))
        nfft = 2 * nb
        freq = np.fft.rfftfreq(nfft)
        out = np.empty(n)
        for s in _chunk_slices(n, 3 * nb):
            block = np.nan_to_num(self._pdf[s].astype(np.float64, copy=False), nan=0.0)
            sigma = np.nan_to_num(scale * std[s] / width, nan=0.0)[:, None]   # in bins
            gain = np.exp(-2.0 * (np.pi * freq[None, :] * sigma) ** 2)
            smooth = np.fft.irfft(np.fft.rfft(block, nfft, axis=1) * gain, nfft, axis=1)[:, :nb]
            out[s] = RedshiftPDF._wrap(np.clip(smooth, 0.0, None), self._edges,
                                       self._valid[s], False, {}).mode(refine=True)
        out[~self._valid] = np.nan
        return self._out(out)

    def interval(self, confidence=0.68):
        """Central credible interval holding probability ``confidence``.

        The interval runs from the ``(1 - confidence) / 2`` to the
        ``(1 + confidence) / 2`` quantile (see `ppf`: linear interpolation of the CDF
        within bins), so each tail holds ``(1 - confidence) / 2``.

        Parameters
        ----------
        confidence : float
            Probability inside the interval, in [0, 1] (0.68 for "1 sigma", 0.95
            for "2 sigma").

        Returns
        -------
        lo, hi : float or `~numpy.ndarray`
            The interval ends, each of shape ``(N,)``; NaN for invalid rows.
        """
        if not 0 <= confidence <= 1:
            raise ValueError(f"confidence must be in [0, 1], got {confidence!r}")
        qs = np.array([(1 - confidence) / 2, (1 + confidence) / 2])
        if self._scalar:
            lo, hi = self.ppf(qs)
            return float(lo), float(hi)
        both = self.ppf(np.broadcast_to(qs, (len(self._pdf), 2)))
        return both[:, 0].copy(), both[:, 1].copy()

    def odds(self, z=None, width=ODDS_WIDTH):
        """Probability that a point estimate lies within ``width (1 + z)`` of the truth.

        The photometric-redshift "odds" (Benítez 2000, BPZ): the PDF's probability that
        the true redshift ``z`` satisfies ``|z_point - z| / (1 + z) <= width``, i.e.
        that ``z_point`` is *not* an outlier at that width, in the sense of the usual
        outlier fraction (`astro_mantis.metrics.photoz_metrics`). Solved for ``z``,
        the window is ``(z_point - width) / (1 + width) <= z <= (z_point + width) /
        (1 - width)``. For calibrated PDFs, one minus the mean odds of a sample is its
        expected outlier fraction, and a cut on the odds selects the galaxies whose
        point estimate can be trusted (the cost in completeness is known per row).
        BPZ centres its window on the PDF's peak and scales it by ``1 + z_point``;
        this one is centred on any point estimate and scaled by ``1 + z``, as outliers
        are counted.

        Parameters
        ----------
        z : float or array-like, optional
            The point estimates, one per object (or one for all); default: the
            median, the package's recommended point estimate.
        width : float
            The window's half-width in ``|dz| / (1 + z)``, in (0, 1); default 0.05.

        Returns
        -------
        float or `~numpy.ndarray`
            Shape ``(N,)``, in [0, 1]; NaN for invalid rows and NaN point estimates.

        Raises
        ------
        ValueError
            If ``width`` is not in (0, 1), or ``z`` does not have one value per
            object.

        Examples
        --------
        >>> import numpy as np
        >>> from astro_mantis.pdf import RedshiftPDF, Z_CENTERS
        >>> sharp = np.exp(-0.5 * ((Z_CENTERS - 0.5) / 0.01) ** 2)
        >>> broad = np.exp(-0.5 * ((Z_CENTERS - 0.5) / 0.2) ** 2)
        >>> [round(float(x), 3) for x in RedshiftPDF(np.stack([sharp, broad])).odds()]
        [1.0, 0.295]
        """
        width = float(width)
        if not 0 < width < 1:
            raise ValueError(f"width must be in (0, 1), got {width!r}")
        n = 1 if self._scalar else len(self._pdf)
        point = np.asarray(self.median() if z is None else z, dtype=np.float64)
        if point.ndim > 1 or (point.ndim == 1 and len(point) not in (1, n)):
            raise ValueError(f"z must hold one point estimate per object ({n}), got "
                             f"shape {point.shape}")
        point = point.reshape(()) if self._scalar else np.broadcast_to(point.ravel(), (n,))
        lo = (point - width) / (1 + width)
        hi = (point + width) / (1 - width)
        cdf = self.cdf(np.stack(np.broadcast_arrays(lo, hi), axis=-1))
        return self._out(np.atleast_1d(cdf[..., 1] - cdf[..., 0]))

    def sample(self, size=None, seed=None):
        """Draw redshifts from each PDF (inverse-CDF sampling).

        Parameters
        ----------
        size : int, optional
            Number of draws per object. None draws one.
        seed : int or `numpy.random.Generator`, optional
            Random seed or generator.

        Returns
        -------
        float or `~numpy.ndarray`
            Shape ``(N,)`` (``size=None``) or ``(N, size)``; ``()`` or ``(size,)``
            for a scalar PDF. NaN for invalid rows.
        """
        rng = np.random.default_rng(seed)
        n = len(self._pdf)
        u = rng.random((n,) if size is None else (n, int(size)))
        if self._scalar:
            u = u[0]
        return self.ppf(u)

    def stack(self):
        """The average of the valid PDFs: an estimate of the redshift distribution n(z).

        Returns
        -------
        `RedshiftPDF`
            A scalar PDF on the same bins (all NaN if no row is valid), with this
            object's meta less its per-row arrays.
        """
        total = np.zeros(self.nbins)
        for s in _chunk_slices(len(self._pdf), self.nbins):
            block = self._pdf[s][self._valid[s]]
            if len(block):
                total += block.sum(axis=0, dtype=np.float64)
        nvalid = int(np.count_nonzero(self._valid))
        meta = self.meta if self._scalar else {
            k: v for k, v in self.meta.items() if not _is_row_array(v, len(self._pdf))}
        if nvalid == 0:
            return self._wrap(np.full((1, self.nbins), np.nan), self._edges,
                              np.array([False]), True, meta)
        return self._wrap((total / nvalid)[None, :], self._edges, np.array([True]), True,
                          meta)

    # -- export ------------------------------------------------------------------
    def remap_cdf(self, knots, values):
        """Recalibrated PDFs whose CDF is ``G(F(z))`` for a monotone map ``G``.

        This is how a PIT recalibration (Bordoloi, Lilly & Amara 2010) is applied:
        ``G`` is the cumulative distribution of the probability integral transform
        values measured on a calibration sample, so that the remapped PDFs give
        uniformly distributed PIT values on that sample. ``G`` is the piecewise
        linear function through ``(knots, values)``; it is applied to the CDF at the
        bin edges, so the result stays a histogram on the same bins.

        Parameters
        ----------
        knots, values : array-like
            Increasing abscissae from 0 to 1 and non-decreasing ordinates from 0 to
            1 of the map ``G`` (see `astro_mantis.training.calibration.PITMap`).

        Returns
        -------
        `RedshiftPDF`
            New PDFs on the same bins, with the same meta (invalid rows stay
            invalid).

        Raises
        ------
        ValueError
            If the map does not run from (0, 0) to (1, 1) monotonically.
        """
        knots = np.asarray(knots, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        if (knots.ndim != 1 or knots.shape != values.shape or len(knots) < 2
                or not np.all(np.diff(knots) > 0) or np.any(np.diff(values) < 0)
                or knots[0] != 0 or knots[-1] != 1 or values[0] != 0 or values[-1] != 1):
            raise ValueError("the CDF map must be given by increasing knots from 0 to 1 and "
                             "non-decreasing values from 0 to 1")
        out = np.empty_like(self._pdf)
        for s in _chunk_slices(len(self._pdf), self.nbins):
            ft, total = self._cdf_edges_t(s)
            with np.errstate(invalid="ignore", divide="ignore"):
                cdf = np.clip(ft / total, 0.0, 1.0)
            mapped = np.interp(cdf, knots, values)
            mapped[:, ~np.isfinite(total)] = np.nan
            block = np.diff(mapped, axis=0).T
            if not self._equal_widths:
                block = block / self._widths
            else:
                block = block / self._widths[0]
            out[s] = block
        return type(self)._wrap(out, self._edges, self._valid.copy(), self._scalar, self.meta)

    def change_prior(self, old, new=None):
        """The PDFs under another redshift prior: ``p'(z) ∝ p(z) new(z) / old(z)``.

        A network's PDFs are posteriors under the redshift distribution of its
        training set (its implicit prior). Dividing that out and multiplying by another
        n(z) gives the posteriors a population with that n(z) would have (for instance
        the n(z) of your own sample); dividing it out alone (``new=None``) leaves the
        likelihood, whose point estimates are not pulled towards where the training set
        was dense. See :ref:`evaluation` for what that does to the bias per bin of true
        redshift.

        Parameters
        ----------
        old : array-like
            The prior the PDFs carry, one density per bin (any normalisation): finite
            and positive in every bin, e.g. `redshift_prior` of the training redshifts,
            or ``astro_mantis.models.training_prior(model)``.
        new : array-like, optional
            The prior wanted, one non-negative finite density per bin (any
            normalisation). None: flat.

        Returns
        -------
        `RedshiftPDF`
            New PDFs on the same bins, with the same meta. Rows that were invalid, or
            that have no probability left where ``new`` is positive, are invalid.

        Raises
        ------
        ValueError
            If a prior does not have one finite value per bin, ``old`` is not positive
            everywhere, or ``new`` is negative somewhere or zero everywhere.

        Examples
        --------
        >>> import numpy as np
        >>> from astro_mantis.pdf import RedshiftPDF, Z_CENTERS
        >>> prior = np.exp(-Z_CENTERS / 0.3)          # a steeply falling n(z)
        >>> like = np.exp(-0.5 * ((Z_CENTERS - 0.8) / 0.1) ** 2)
        >>> posterior = RedshiftPDF(like * prior)     # pulled towards low z
        >>> round(posterior.median(), 3), round(posterior.change_prior(prior).median(), 3)
        (0.767, 0.8)
        """
        old = _prior_array(old, self.nbins, "old", positive=True)
        new = (np.ones(self.nbins) if new is None
               else _prior_array(new, self.nbins, "new", positive=False))
        weights = _prior_ratio(new, old)
        # the product in float64 chunk by chunk, each row normalised there before it is
        # stored in the storage type (a float32 row of un-normalised products could
        # overflow or underflow whole); the one full-size array is the result
        out = np.empty_like(self._pdf)
        for s in _chunk_slices(len(self._pdf), self.nbins):
            block = self._pdf[s].astype(np.float64) * weights
            with np.errstate(invalid="ignore", over="ignore"):
                norm = block @ self._widths
            ok = np.isfinite(norm) & (norm > 0)
            block /= np.where(ok, norm, 1.0)[:, None]
            out[s] = block
        pdf = RedshiftPDF(out, self._edges, meta=self.meta, dtype=self.dtype,
                          allow_invalid=True, copy=False)
        return pdf[0] if self._scalar else pdf

    def to_qp(self):
        """Export as a ``qp.Ensemble`` of ``qp.hist`` distributions.

        The ensemble's ``pdf`` at any redshift inside the edges equals `pdf_at`
        (invalid rows stay NaN, which ``qp`` warns about).

        Returns
        -------
        ``qp.Ensemble``
            One distribution per object, ``bins`` = `edges`. It is built from a float64
            copy of all the PDFs made at once (N × nbins × 8 bytes; none for float64
            storage); ``qp`` may make copies of its own.
        """
        import qp

        pdfs = np.asarray(self._pdf, dtype=np.float64)
        return qp.Ensemble(qp.hist, data=dict(bins=np.array(self._edges), pdfs=pdfs))

    def to_table_columns(self, prefix="z_", masked=False):
        """Table columns holding the PDFs and their summary statistics.

        Parameters
        ----------
        prefix : str
            Prefix of the column names.
        masked : bool
            If True, return `~astropy.table.MaskedColumn` objects with the invalid rows
            masked; otherwise invalid rows hold NaN.

        Returns
        -------
        dict
            Column name to `~astropy.table.Column` (dimensionless units, with
            descriptions), in this order: ``{prefix}pdf`` (float32, shape
            ``(N, nbins)``, sharing memory with this object when it stores float32;
            its ``meta`` holds ``bin_edges`` as a list, a short
            ``bin_convention`` text and this object's ``meta`` less its per-row
            arrays (first axis of length N, e.g. the ``flags``, ``valid`` and
            ``features`` of `~astro_mantis.models.predict`: add them as columns
            where they are wanted) and, for a scalar PDF, less arrays of more than
            64 elements), ``{prefix}mean``,
            ``{prefix}median``, ``{prefix}mode``, ``{prefix}std``, ``{prefix}lo68``,
            ``{prefix}hi68``, ``{prefix}odds`` (`odds` of the median at the width
            `ODDS_WIDTH`). A scalar PDF gives one row.
        """
        import astropy.units as u
        from astropy.table import Column, MaskedColumn

        obj = self if not self._scalar else self._wrap(self._pdf, self._edges, self._valid,
                                                       False, self.meta)
        lo, hi = obj.interval(0.68)
        values = {
            "pdf": obj._pdf.astype(np.float32, copy=False),
            "mean": obj.mean(), "median": obj.median(), "mode": obj.mode(),
            "std": obj.std(), "lo68": lo, "hi68": hi,
        }
        values["odds"] = obj.odds(z=values["median"])
        cls = MaskedColumn if masked else Column
        cols = {}
        for key, val in values.items():
            kwargs = dict(name=f"{prefix}{key}", unit=u.dimensionless_unscaled,
                          description=_COLUMN_DESCRIPTIONS[key])
            if masked:
                mask = ~obj._valid if val.ndim == 1 else np.repeat(~obj._valid[:, None],
                                                                    val.shape[1], axis=1)
                kwargs["mask"] = mask
            col = cls(val, copy=(key != "pdf"), **kwargs)
            if key == "pdf":
                col.meta.update(
                    (k, v) for k, v in self.meta.items()
                    if not (_is_row_array(v, len(obj._pdf))
                            or (isinstance(v, np.ndarray) and v.size > _SMALL_META)))
                col.meta["bin_edges"] = [float(e) for e in self._edges]
                col.meta["bin_convention"] = (
                    "piecewise-constant density per bin [edges[k], edges[k+1]), "
                    "normalised so that sum(pdf * diff(edges)) == 1")
            cols[col.name] = col
        return cols

    # -- plotting ------------------------------------------------------------------
    def plot(self, ax=None, index=0, z_true=None, show_stats=True, label=None, **kwargs):
        """Draw one PDF as a histogram with its summary statistics.

        Parameters
        ----------
        ax : `matplotlib.axes.Axes`, optional
            Axes to draw into; new ones are made otherwise.
        index : int
            Which object to draw (ignored for a scalar PDF).
        z_true : float, optional
            A true (e.g. spectroscopic) redshift to mark.
        show_stats : bool
            Mark the mean, median and mode and shade the central 68% interval.
        label : str, optional
            Legend label of the PDF line.
        **kwargs
            Passed to `matplotlib.axes.Axes.stairs` for the PDF line.

        Returns
        -------
        `matplotlib.axes.Axes`
        """
        from .plotting import pdf_histogram

        one = self if self._scalar else self[index]
        stats = {}
        if show_stats and one.valid:
            stats = dict(interval=one.interval(0.68), mean=one.mean(), median=one.median(),
                         mode=one.mode())
        return pdf_histogram(self._edges, one._pdf[0], ax=ax, z_true=z_true, label=label,
                             **stats, **kwargs)


#: Width (in redshift) of the Gaussian kernel `redshift_prior` smooths a histogram with.
PRIOR_SMOOTHING = 0.04


def _first(indices, k=10):
    """The first ``k`` of ``indices`` as a short text for an error message."""
    return f"{indices[:k].tolist()}{' ...' if indices.size > k else ''}"


def _prior_ratio(new, old):
    """``new / old`` (float64 priors as `_prior_array` checks them), scaled to a
    maximum of 1: the same PDFs after normalisation, whatever the priors' units (a
    prior given as 1e-40 per bin, or with tails of 1e-150, stays within range)."""
    new, old = new / new.max(), old / old.max()
    with np.errstate(over="ignore"):
        ratio = new / old
    if np.all(np.isfinite(ratio)):
        return ratio / ratio.max()
    # ``old`` spans more than float64's range (values below 1e-308 of its maximum)
    with np.errstate(divide="ignore"):
        log_ratio = np.log(new) - np.log(old)
    return np.exp(log_ratio - log_ratio.max())


def _prior_array(values, nbins, name, positive):
    """A prior as a float64 array of one finite value per bin (checked)."""
    a = np.asarray(values, dtype=np.float64)
    if a.shape != (nbins,):
        raise ValueError(f"the {name} prior must hold one value per bin, shape ({nbins},); "
                         f"got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        bad = np.flatnonzero(~np.isfinite(a))
        raise ValueError(f"the {name} prior must be finite in every bin; got {bad.size} "
                         f"non-finite value(s), in bins {_first(bad)}")
    if positive and not np.all(a > 0):
        bad = np.flatnonzero(~(a > 0))
        raise ValueError(f"the {name} prior must be positive in every bin (it divides the "
                         f"PDFs); got {bad.size} value(s) <= 0, in bins {_first(bad)}")
    if not positive and (np.any(a < 0) or not np.any(a > 0)):
        raise ValueError(f"the {name} prior must be non-negative and positive somewhere")
    return a


def redshift_prior(z=None, *, counts=None, edges=None, smoothing=PRIOR_SMOOTHING):
    """A smooth redshift distribution n(z) per bin, from redshifts or a histogram of them.

    The histogram's densities (with one galaxy added to every bin, so that none is empty)
    are smoothed by a Gaussian-weighted average over the neighbouring bins, of standard
    deviation ``smoothing`` in redshift (weights normalised per bin, so the ends of the
    range are not depleted), and normalised to unit integral. This is the form
    `RedshiftPDF.change_prior` takes, and how ``astro_mantis.models.training_prior``
    turns a model card's histogram of training redshifts into the network's implicit
    prior.

    Parameters
    ----------
    z : array-like, optional
        Redshifts. Values outside the half-open range ``[edges[0], edges[-1])`` are
        left out (so is ``z = edges[-1]`` itself, as in the PDFs' bins) and so are NaN.
    counts : array-like, optional
        Instead of ``z``: counts per bin (non-negative, one per bin).
    edges : array-like, optional
        Bin edges (default `~astro_mantis.pdf.Z_EDGES`).
    smoothing : float
        Kernel width in redshift (default `PRIOR_SMOOTHING`); 0 for none.

    Returns
    -------
    `numpy.ndarray`
        float64 density per bin, positive everywhere, ``sum(prior * widths) == 1``.

    Raises
    ------
    ValueError
        Without exactly one of ``z`` and ``counts``, for counts of the wrong shape,
        non-finite or negative (each with its own message), or a negative or
        non-finite ``smoothing``.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_mantis.pdf import redshift_prior, Z_WIDTHS
    >>> prior = redshift_prior(np.random.default_rng(0).gamma(2.0, 0.1, 10_000))
    >>> prior.shape, round(float(np.sum(prior * Z_WIDTHS)), 6)
    ((400,), 1.0)
    """
    edges = Z_EDGES if edges is None else _check_edges(edges)
    nbins = len(edges) - 1
    if (z is None) == (counts is None):
        raise ValueError("give exactly one of z and counts")
    if counts is None:
        z = np.asarray(z, dtype=np.float64).ravel()
        # np.histogram closes its last bin, which would count z == edges[-1]: keep the
        # half-open [edges[0], edges[-1]) of the PDFs' bins (NaN goes too)
        z = z[(z >= edges[0]) & (z < edges[-1])]
        counts, _ = np.histogram(z, bins=edges)
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (nbins,):
        raise ValueError(f"counts must hold one value per bin, shape ({nbins},); got shape "
                         f"{counts.shape}")
    if not np.all(np.isfinite(counts)):
        bad = np.flatnonzero(~np.isfinite(counts))
        raise ValueError(f"counts must be finite; got {bad.size} non-finite value(s), in "
                         f"bins {_first(bad)}")
    if np.any(counts < 0):
        bad = np.flatnonzero(counts < 0)
        raise ValueError(f"counts must be non-negative; got {bad.size} negative value(s), in "
                         f"bins {_first(bad)}")
    smoothing = float(smoothing)
    if not (np.isfinite(smoothing) and smoothing >= 0):
        raise ValueError(f"smoothing must be a non-negative redshift width, got {smoothing!r}")
    widths = np.diff(edges)
    density = (counts + 1.0) / widths
    if smoothing > 0:
        centers = 0.5 * (edges[1:] + edges[:-1])
        kernel = np.exp(-0.5 * ((centers[:, None] - centers[None, :]) / smoothing) ** 2)
        kernel *= widths[None, :]
        density = (kernel @ density) / kernel.sum(axis=1)
    return density / np.sum(density * widths)


#: Names accepted by `point_estimate`, in the order the evaluation tables list them.
POINT_ESTIMATORS = ("mean", "median", "mode", "smoothed_mode")

#: The recommended point estimate (recorded as ``z_point`` in a table's meta; the column is
#: ``z_median``): of the estimators it is the least biased overall and near z = 0 on the
#: mock test sets (see :ref:`evaluation`). The Mantis Shrimp paper's is the mean.
RECOMMENDED_POINT_ESTIMATE = "median"


def point_estimate(pdf, method="mean"):
    """One point estimate per PDF, chosen by name.

    Parameters
    ----------
    pdf : `RedshiftPDF`
        The PDFs.
    method : str
        One of `POINT_ESTIMATORS`:

        - ``"mean"``: `RedshiftPDF.mean` (the Mantis Shrimp paper's estimate; minimises
          the expected squared error when the PDFs are calibrated);
        - ``"median"``: `RedshiftPDF.median` (minimises the expected absolute error);
        - ``"mode"``: ``RedshiftPDF.mode(refine=True)``, the sub-bin peak;
        - ``"smoothed_mode"``: `RedshiftPDF.smoothed_mode` (peak after smoothing by half
          the PDF's width).

    Returns
    -------
    float or `~numpy.ndarray`
        As the method returns it; NaN for invalid rows.

    Raises
    ------
    ValueError
        If ``method`` is not a known name.
    TypeError
        If ``pdf`` is not a `RedshiftPDF`.
    """
    if not isinstance(pdf, RedshiftPDF):
        raise TypeError(f"pdf must be a RedshiftPDF, got {type(pdf).__name__}")
    if method == "mean":
        return pdf.mean()
    if method == "median":
        return pdf.median()
    if method == "mode":
        return pdf.mode(refine=True)
    if method == "smoothed_mode":
        return pdf.smoothed_mode()
    raise ValueError(f"unknown point estimator {method!r}; choose one of "
                     f"{', '.join(POINT_ESTIMATORS)}")
