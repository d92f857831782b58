# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""SDSS spectra of matched rows: `get_spectrum` and `plot_spectrum`.

A row matched to SDSS (`~astro_mantis.spectro.match_spectroscopic` with ``"sdss"`` or
``"sdss-spall"``) knows its spectrum's plate, MJD, fiber and reduction. The spectrum
file is located with ``sdss-access`` (the ``spec-lite`` product of data releases up to
17: ``{spectro redux}/{run2d}/spectra/lite/{plate}/spec-{plate}-{mjd}-{fiber}.fits``),
taken from ``$SAS_BASE_DIR`` when there is a local copy, otherwise fetched once into
the astro_mantis download cache, checked for truncation, and read with ``specutils``
(``Spectrum.read(path, format="SDSS-III/IV spec")``).
"""
import functools
import os
import warnings

import numpy as np
from astropy import units as u

from .exceptions import CatalogFileError
from ..pdf import ZMAX, ZMIN

__all__ = ["get_spectrum", "spectrum_path", "plot_spectrum", "spectrum_ids", "SPECTRAL_LINES"]

#: Main optical lines: (label, rest-frame vacuum wavelength in Angstrom, "emission" or
#: "absorption"). SDSS wavelengths are vacuum wavelengths.
SPECTRAL_LINES = (
    ("[O II]", 3728.48, "emission"),
    ("Ca K", 3934.78, "absorption"),
    ("Ca H", 3969.59, "absorption"),
    ("Hδ", 4102.89, "emission"),
    ("G band", 4305.61, "absorption"),
    ("Hγ", 4341.68, "emission"),
    ("Hβ", 4862.68, "emission"),
    ("[O III]", 4960.30, "emission"),
    ("[O III]", 5008.24, "emission"),
    ("Mg b", 5176.70, "absorption"),
    ("Na D", 5894.60, "absorption"),
    ("[N II]", 6549.86, "emission"),
    ("Hα", 6564.61, "emission"),
    ("[N II]", 6585.27, "emission"),
    ("[S II]", 6718.29, "emission"),
    ("[S II]", 6732.67, "emission"),
)

_FIELDS = {
    "plate": ("spec_plate", "plate", "plateid"),
    "mjd": ("spec_mjd", "mjd"),
    "fiberid": ("spec_fiberid", "fiberid", "fiber"),
    "run2d": ("spec_run2d", "run2d"),
}


def _keys(row):
    if hasattr(row, "colnames"):
        return list(row.colnames)
    if hasattr(row, "keys"):
        return list(row.keys())
    raise TypeError(f"row must be a table row or a mapping, got {type(row).__name__}")


def _lookup(row, names, default=KeyError):
    keys = _keys(row)
    lower = {str(k).lower(): k for k in keys}
    for name in names:
        if name.lower() in lower:
            return row[lower[name.lower()]]
    if default is KeyError:
        raise KeyError(f"the row has none of the columns {list(names)}; it has: "
                       f"{', '.join(map(str, keys))}")
    return default


def spectrum_ids(row):
    """Plate, MJD, fiber and reduction of a row's SDSS spectrum.

    Parameters
    ----------
    row : `~astropy.table.Row` or mapping
        With ``spec_plate``, ``spec_mjd``, ``spec_fiberid``, ``spec_run2d`` (as written by
        `~astro_mantis.spectro.match_spectroscopic`) or SkyServer's ``plate``, ``mjd``,
        ``fiberID``, ``run2d`` (names case-insensitive).

    Returns
    -------
    dict
        ``plate``, ``mjd``, ``fiberid`` (int) and ``run2d`` (str).

    Raises
    ------
    KeyError
        If a column is missing.
    ValueError
        If the row has no matched spectrum (masked values).
    """
    out = {}
    for key, names in _FIELDS.items():
        value = _lookup(row, names)
        if np.ma.is_masked(value) or value is None or (isinstance(value, float)
                                                       and not np.isfinite(value)):
            raise ValueError(f"the row has no matched SDSS spectrum ({names[0]} is masked); "
                             "match it first with match_spectroscopic(catalog='sdss')")
        out[key] = str(value).strip() if key == "run2d" else int(value)
    return out


def _data_release(row, data_release):
    from .config import conf
    from .matching import match_summary

    if data_release is not None:
        return int(data_release)
    # meta["spec_match"], or the SPECMTCH keyword of a FITS file written by astro-mantis match
    match = match_summary(getattr(row, "meta", None) or {}) or {}
    if match.get("data_release") is not None:
        return int(match["data_release"])
    return int(conf.data_release)


def spectrum_path(row, data_release=None, progress=None, show_progress=None):
    """Local path of the ``spec-lite`` file of a row's SDSS spectrum, fetched once.

    Parameters
    ----------
    row : `~astropy.table.Row` or mapping
        See `~astro_mantis.spectro.spectra.spectrum_ids`.
    data_release : int, optional
        Data release, at most 17 (default: the one of the row's match, from its
        table's ``meta["spec_match"]`` or, read from a FITS file, the ``SPECMTCH``
        keyword; else ``spectro.conf.data_release``).
    progress : bool, optional
        Show the download's progress bar (default: on a terminal).
    show_progress : bool, optional
        Deprecated name of ``progress``.

    Returns
    -------
    str
        Under ``$SAS_BASE_DIR`` if a local copy exists, else in the astro_mantis cache.

    Raises
    ------
    ValueError
        For data releases after 17 (SDSS-V spectra are organised by field and catalog
        id, which this function does not support yet).
    FileNotFoundError
        If the SAS has no such spectrum.
    """
    from ..progress import renamed_progress
    from .spall import _access, _fetch

    progress = renamed_progress(progress, show_progress, "spectrum_path")
    ids = spectrum_ids(row)
    dr = _data_release(row, data_release)
    if dr > 17:
        raise ValueError(f"spectra of DR{dr} (SDSS-V) are not supported: their files are "
                         "organised by field and catalog id; use data_release=17 or earlier")
    access = _access(dr)
    kwargs = {"run2d": ids["run2d"], "plateid": ids["plate"], "mjd": ids["mjd"],
              "fiberid": ids["fiberid"]}
    local = access.full("spec-lite", **kwargs)
    url = access.url("spec-lite", **kwargs)
    candidate = {"name": os.path.basename(local), "local": local, "url": url}
    path, _ = _fetch([candidate], f"the DR{dr} spectrum", download=True,
                     progress=progress, large=False)
    return path


def get_spectrum(row, data_release=None, progress=None, show_progress=None):
    """The SDSS spectrum of a matched row, as a ``specutils.Spectrum``.

    Parameters
    ----------
    row : `~astropy.table.Row` or mapping
        See `~astro_mantis.spectro.spectra.spectrum_ids`.
    data_release : int, optional
        See `spectrum_path`.
    progress : bool, optional
        Show the download's progress bar (default: on a terminal).
    show_progress : bool, optional
        Deprecated name of ``progress``.

    Returns
    -------
    ``specutils.Spectrum``
        Flux in 1e-17 erg / (s cm2 Angstrom) against vacuum wavelength in Angstrom, with
        inverse-variance uncertainty and the pixel mask (``and_mask != 0``). ``meta`` has
        the file's primary ``header``, its ``path``, and the ``plate``, ``mjd``,
        ``fiberid`` and ``run2d``.

    Raises
    ------
    astro_mantis.spectro.CatalogFileError
        If the file is truncated or not an SDSS spec file.
    """
    from specutils import Spectrum

    from .spall import check_fits_complete

    from ..progress import renamed_progress

    progress = renamed_progress(progress, show_progress, "get_spectrum")
    path = spectrum_path(row, data_release, progress=progress)
    check_fits_complete(path)
    try:
        with warnings.catch_warnings():
            # SDSS writes BUNIT '1E-17 erg/cm^2/s/Ang'; specutils parses it correctly
            # but astropy frowns at its slashes
            warnings.simplefilter("ignore", u.UnitsWarning)
            spec = Spectrum.read(path, format="SDSS-III/IV spec")
    except Exception as exc:
        raise CatalogFileError(f"{path} is not a readable SDSS spec file ({type(exc).__name__}: "
                               f"{exc})") from None
    spec.meta["path"] = path
    spec.meta.update(spectrum_ids(row))
    return spec


def _row_value(row, name):
    value = _lookup(row, (name,), default=None)
    if value is None or np.ma.is_masked(value):
        return None
    return value


def _photo_z(row, z_phot, prefix):
    """(photo-z point estimate or None, RedshiftPDF or None) of a row."""
    from ..pdf import RedshiftPDF

    pdf = None
    vec = _row_value(row, f"{prefix}pdf")
    if vec is not None:
        table = getattr(row, "table", None)
        if table is not None and hasattr(row, "index"):
            pdf = RedshiftPDF.from_table(table[row.index:row.index + 1], prefix=prefix)[0]
        else:
            pdf = RedshiftPDF(np.asarray(vec, dtype=np.float64), allow_invalid=True)
        if not pdf.valid:
            pdf = None
    if z_phot is None:
        mean = _row_value(row, f"{prefix}mean")
        if mean is not None and np.isfinite(mean):
            z_phot = float(mean)
        elif pdf is not None:
            z_phot = float(pdf.mean())
    return z_phot, pdf


def _smooth(flux, good, width):
    """Boxcar mean over ``width`` pixels of the good pixels (NaN where none)."""
    if width <= 1:
        return np.where(good, flux, np.nan)
    kernel = np.ones(int(width))
    num = np.convolve(np.where(good, flux, 0.0), kernel, mode="same")
    den = np.convolve(good.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def plot_spectrum(row, fig=None, spectrum=None, z_phot=None, smooth=5, lines=SPECTRAL_LINES,
                  prefix="z_", data_release=None):
    """Draw a row's SDSS spectrum with its lines at z_spec and at the photo-z, beside its PDF.

    Parameters
    ----------
    row : `~astropy.table.Row` or mapping
        A matched row (see `~astro_mantis.spectro.spectra.spectrum_ids`); its ``z_spec``
        (or ``z``) places the lines.
        If it has ``{prefix}pdf`` (as written by ``add_redshift_columns``: N x 400 over
        `~astro_mantis.pdf.Z_EDGES`) and/or ``{prefix}mean``, the redshift PDF is drawn
        in a panel on the right (`~astro_mantis.pdf.RedshiftPDF.plot`) and the lines are
        also marked at the photo-z.
    fig : `matplotlib.figure.Figure`, optional
        Figure to draw into; a new one is made otherwise.
    spectrum : ``specutils.Spectrum``, optional
        The spectrum, if already fetched (default: `get_spectrum` of the row).
    z_phot : float, optional
        Photometric redshift to mark (default: ``{prefix}mean``, else the PDF's mean).
    smooth : int
        Width in pixels of the boxcar smoothing of the flux (1 for none).
    lines : sequence of tuple
        ``(label, rest wavelength in Angstrom, kind)``; default `SPECTRAL_LINES`.
    prefix : str
        Prefix of the photo-z columns.
    data_release : int, optional
        See `spectrum_path`.

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    from ..plotting import spectrum as draw_spectrum

    if spectrum is None:
        spectrum = get_spectrum(row, data_release)
    z_spec = _row_value(row, "z_spec")
    if z_spec is None:
        z_spec = _row_value(row, "z")
    z_spec = None if z_spec is None or not np.isfinite(z_spec) else float(z_spec)
    z_phot, pdf = _photo_z(row, z_phot, prefix)

    wave = spectrum.spectral_axis.to_value(u.AA)
    flux = np.asarray(spectrum.flux.value, dtype=float)
    good = np.isfinite(flux)
    if spectrum.mask is not None:
        good &= ~np.asarray(spectrum.mask, dtype=bool)
    if spectrum.uncertainty is not None:
        good &= np.asarray(spectrum.uncertainty.array, dtype=float) > 0
    ids = {k: spectrum.meta.get(k) for k in ("plate", "mjd", "fiberid")}
    title = "SDSS spectrum"
    if None not in ids.values():
        title += f" {ids['plate']}-{ids['mjd']}-{ids['fiberid']}"

    draw_pdf = pdf_xlim = pdf_ylim = None
    if pdf is not None:
        draw_pdf = functools.partial(pdf.plot, show_stats=True)
        lo_z, hi_z = pdf.interval(0.95)
        marks = [v for v in (z_spec, z_phot, lo_z, hi_z) if v is not None]
        width = max(max(marks) - min(marks), 0.05)
        pdf_xlim = (max(pdf.edges[0], min(marks) - 0.5 * width),
                    min(pdf.edges[-1], max(marks) + 0.5 * width))
        peak = float(np.nanmax(pdf.pdf)) if pdf.valid else 1.0
        pdf_ylim = (0, 1.75 * peak)  # room above the curve for the legend
    return draw_spectrum(wave, _smooth(flux, good, smooth), fig=fig, lines=lines,
                         z_spec=z_spec, z_phot=z_phot, title=title,
                         flux_label=f"flux ({smooth}-pixel mean)" if smooth > 1 else "flux",
                         draw_pdf=draw_pdf, pdf_xlim=pdf_xlim, pdf_ylim=pdf_ylim,
                         zrange=(ZMIN, ZMAX))
