"""Cutouts in, model inputs out: early fusion, late fusion and reprojected fusion.

These functions take `~astro_mantis.MultiSurveyCutout` objects (one, or a list of
them) and hand the pixel arrays to the array math of `astro_mantis.fusion.core`.

Missing data policy (all three functions):

* a survey absent from a cutout (``cutout.missing``, or simply not in
  ``cutout.surveys``), or whose pixels in the region the recipe uses are all
  non-finite, gives all-zero channels, ``valid = False`` for them, and the survey's
  ``<SURVEY>_MISSING`` flag — zeros are what the reference implementation feeds the
  network for absent data, and 0 is what every normalisation maps a zero flux to;
* non-finite pixels (NaN, ±inf: PS1 chip gaps and edges) are replaced according to
  ``nan_policy``: ``"zero"`` (default, as the reference) or ``"inpaint"`` (filled from
  their finite neighbours, `~astro_mantis.fusion.core.inpaint_nans`). Channels in
  which any pixel the network sees had to be zeroed get ``valid = False``, and the row
  gets `~astro_mantis.MantisFlag.NAN_PIXELS` whenever the pixels used held non-finite
  values (inpainted or not);
* no dust values (``ebv=None``, or a non-finite row) gives 0 and
  `~astro_mantis.MantisFlag.DUST_UNKNOWN`.

The output never contains a NaN or an infinity.
"""
import functools
from typing import NamedTuple

import numpy as np
from astropy import units as u

from ..flags import MantisFlag, survey_missing_flag
from .batched import _fuse_into
from .core import (CHANNELS, FusedInput, OUTPUT_SIZE, RECIPE, check_nan_policy,
                   dust_array, fill_nonfinite)
from .core import normalise as normalise_survey

__all__ = ["LateFusedInput", "early_fusion", "late_fusion", "reproject_fusion"]

_FUSED_SURVEYS = tuple(RECIPE)


class LateFusedInput(NamedTuple):
    """Per-survey model inputs at native pixel grids (see `late_fusion`).

    Attributes
    ----------
    images : dict
        Survey name → `numpy.ndarray`, float32, shape (N, nbands, ny, nx), normalised.
    dust : `numpy.ndarray`, float32, shape (N, 2)
    valid : dict
        Survey name → `numpy.ndarray`, bool, shape (N, nbands).
    flags : `numpy.ndarray`, int64, shape (N,)
    """

    images: dict
    dust: np.ndarray
    valid: dict
    flags: np.ndarray


def _as_list(cutouts):
    from ..multicutout import MultiSurveyCutout

    if cutouts is None or isinstance(cutouts, MultiSurveyCutout):
        return [cutouts]
    cutouts = list(cutouts)
    for c in cutouts:
        if c is not None and not isinstance(c, MultiSurveyCutout):
            raise TypeError("expected MultiSurveyCutout objects (or None for a row without "
                            f"data); got {type(c).__name__}")
    return cutouts


def _base_flags(cutouts, dust_unknown):
    flags = np.array([int(c.flags) if c is not None else int(MantisFlag.BAD_COORDINATE)
                      for c in cutouts], dtype=np.int64)
    flags[dust_unknown] |= int(MantisFlag.DUST_UNKNOWN)
    return flags


def _survey_planes(image, bands):
    """(nbands, ny, nx) float32 of ``bands`` from a SurveyImage; absent bands are all NaN."""
    if tuple(image.bands) == tuple(bands):
        return image.data
    out = np.full((len(bands),) + image.data.shape[1:], np.nan, np.float32)
    for i, band in enumerate(bands):
        if band in image.bands:
            out[i] = image.data[image.bands.index(band)]
    return out


@functools.lru_cache(maxsize=64)
def _unit_mismatch(unit, survey):
    """None where ``unit`` is the unit the recipe's normalisation of ``survey`` expects
    (or the same unit spelled otherwise: converting is multiplying by 1); else that unit."""
    from ..surveys import get_survey

    expected = get_survey(survey).unit
    if unit == expected:
        return None
    try:
        scale = u.Unit(unit).to(expected)
    except (u.UnitsError, ValueError, TypeError):  # not convertible, or not a unit known
        return expected
    return None if np.isclose(scale, 1.0, rtol=1e-12, atol=0.0) else expected


def _check_unit(image, survey, row):
    """Raise ValueError unless ``image`` is in the unit the normalisation of ``survey``
    assumes (``get_survey(survey).unit``): its stretch is fixed, so pixels in another
    unit would be fused as nonsense, silently."""
    expected = _unit_mismatch(image.unit, survey)
    if expected is not None:
        given = image.unit.to_string() or "dimensionless"
        raise ValueError(f"row {row}, {survey}: the image is in {given!r} but the recipe's "
                         f"{survey} normalisation expects {expected.to_string()!r} "
                         f"(get_survey({survey!r}).unit); convert the pixels first")


def _nan_flag(planes, survey):
    """NAN_PIXELS for some non-finite pixels, the survey's MISSING flag when all are."""
    finite = np.isfinite(planes)
    if finite.all():
        return 0
    return int(survey_missing_flag(survey) if not finite.any() else MantisFlag.NAN_PIXELS)


def _rows_of(cutouts, survey, flags):
    """Rows holding ``survey``; flags the others as missing."""
    rows = []
    for n, c in enumerate(cutouts):
        if c is not None and survey in c.surveys:
            rows.append(n)
        else:
            flags[n] |= int(survey_missing_flag(survey))
    return rows


def _reference_planes(image, planes, row, flags):
    """PS1 planes rescaled to the reference exposure times (`astro_mantis.fusion.exposure`)."""
    from .exposure import to_reference_exposure, zeropoint_exptime

    zps = image.zeropoints
    zps = [np.nan] * len(planes) if zps is None else list(zps)
    if tuple(image.bands) != tuple(RECIPE["panstarrs"]["bands"]):
        zps = [zps[image.bands.index(b)] if b in image.bands else np.nan
               for b in RECIPE["panstarrs"]["bands"]]
    counts, row_flags = to_reference_exposure(planes[None], zeropoint_exptime(zps)[None])
    flags[row] |= int(row_flags[0])
    return counts[0]


def early_fusion(cutouts, ebv=None, nan_policy="zero", out=None, panstarrs_exposure="stack"):
    """Fuse cutouts into the 9 × 120 × 120 input of the published Mantis Shrimp model.

    The recipe of the published model (``mantis-shrimp-v1``), per survey: non-finite
    pixels handled by ``nan_policy``; the survey's normalisation applied pixel by pixel
    (GALEX ``clip(x/0.05, 0, 1)``, PS1 ``max(asinh(0.08x)/8, 0)``, unWISE
    ``max(asinh(0.6x)/6, 0)``); a centre crop (PS1 170 → 120 pixels, GALEX and unWISE
    32 → 22); GALEX and unWISE resized 22 → 120 with antialiased bilinear interpolation
    (`~astro_mantis.fusion.core.resize_bilinear`). Channels in the order NUV FUV g r i z
    y W1 W2. The normalisations are applied at native resolution, before resizing.

    The surveys are stacked as they come: each keeps its own field of view (PS1 30″,
    GALEX 33″, unWISE 60.5″). For a common sky grid see `reproject_fusion`.

    Parameters
    ----------
    cutouts : `~astro_mantis.MultiSurveyCutout` or sequence of them
        As returned by `Mantis.get_cutouts <astro_mantis.MantisClass.get_cutouts>`.
        ``None`` entries are rows without data.
    ebv : array-like, shape (N, 2), optional
        Milky Way E(B−V) per row: (CSFD, Planck), in magnitudes. None: zeros and
        `~astro_mantis.MantisFlag.DUST_UNKNOWN`.
    nan_policy : {"zero", "inpaint"}
        What replaces non-finite pixels (see the module docstring).
    out : `numpy.ndarray`, float32, shape (N, 9, 120, 120), optional
        Where to write the fused images (every pixel is written), for instance a
        buffer reused from batch to batch: a fresh array of this size costs its page
        faults on every call. Allocated when None.
    panstarrs_exposure : {"stack", "reference"}
        ``"stack"`` (default, the published recipe) fuses PS1 counts as served;
        ``"reference"`` first rescales them to the typical exposure time of each band,
        from the stacks' zero points (`astro_mantis.fusion.exposure`; a stack without
        one keeps its counts and the row gets
        `~astro_mantis.MantisFlag.EXPTIME_UNKNOWN`). Use what the network takes
        (its ``panstarrs_exposure``); `~astro_mantis.models.predict` does.

    Returns
    -------
    `~astro_mantis.fusion.FusedInput`
        ``(x, dust, valid, flags)``; ``x`` is float32 (N, 9, 120, 120) (``out`` when
        given).

    Raises
    ------
    ValueError
        If an image is smaller than the recipe's crop or not in its survey's unit
        (``get_survey(name).unit``, which the normalisation assumes: GALEX ct/s, PS1
        ct, unWISE Vega nanomaggies), ``ebv`` has the wrong shape, ``nan_policy`` is
        unknown or ``out`` has the wrong shape or type.
    """
    from .exposure import check_panstarrs_exposure

    check_nan_policy(nan_policy)
    reference = check_panstarrs_exposure(panstarrs_exposure) == "reference"
    cutouts = _as_list(cutouts)
    n = len(cutouts)
    shape = (n, len(CHANNELS), OUTPUT_SIZE, OUTPUT_SIZE)
    if out is None:
        out = np.empty(shape, np.float32)
    elif not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be a float32 numpy array of shape {shape}; got "
                         f"{getattr(out, 'dtype', type(out).__name__)} "
                         f"{getattr(out, 'shape', '')}")
    dust, dust_unknown = dust_array(ebv, n)
    flags = _base_flags(cutouts, dust_unknown)
    sources = {}
    for survey in _FUSED_SURVEYS:
        recipe = RECIPE[survey]
        crop = recipe["crop"]
        rows = [None] * n  # the rows' native planes, read in place by the fusion
        for row in _rows_of(cutouts, survey, flags):
            image = cutouts[row].surveys[survey]
            _check_unit(image, survey, row)
            planes = _survey_planes(image, recipe["bands"])
            if planes.shape[1] < crop or planes.shape[2] < crop:
                raise ValueError(f"row {row}, {survey}: the recipe crops {crop}x{crop} pixels "
                                 f"but the image is {planes.shape[1]}x{planes.shape[2]}")
            if reference and survey == "panstarrs":
                planes = _reference_planes(image, planes, row, flags)
            rows[row] = planes
        if any(r is not None for r in rows):
            sources[survey] = rows
    # the threaded twin of core.fuse_survey, row by row: the same bits (tests/test_fusion_batched)
    valid = _fuse_into(sources, n, nan_policy, OUTPUT_SIZE, out, flags)
    return FusedInput(out, dust, valid, flags)


def late_fusion(cutouts, ebv=None, nan_policy="zero"):
    """Per-survey normalised images at their native pixel grids, for late-fusion models.

    No crop and no resampling: each survey keeps its cutout (GALEX and unWISE 32 × 32,
    PS1 170 × 170 with the default cutout sizes); the published normalisations and the
    missing-data policy of `early_fusion` apply. A model taking these has one branch
    per survey and fuses after its encoders.

    Parameters
    ----------
    cutouts : `~astro_mantis.MultiSurveyCutout` or sequence of them
    ebv : array-like, shape (N, 2), optional
        Milky Way E(B−V) (CSFD, Planck) per row.
    nan_policy : {"zero", "inpaint"}

    Returns
    -------
    `LateFusedInput`
        ``(images, dust, valid, flags)``; ``images[survey]`` is float32
        (N, nbands, ny, nx). A survey missing from a row gives zeros of the size the
        other rows have (or the survey's default cutout size when no row has it).

    Raises
    ------
    ValueError
        If the images of one survey do not all have the same shape, or an image is
        not in its survey's unit (as in `early_fusion`).
    """
    from ..surveys import SURVEYS

    check_nan_policy(nan_policy)
    cutouts = _as_list(cutouts)
    n = len(cutouts)
    dust, dust_unknown = dust_array(ebv, n)
    flags = _base_flags(cutouts, dust_unknown)
    images, valid = {}, {}
    for survey in _FUSED_SURVEYS:
        bands = RECIPE[survey]["bands"]
        rows = _rows_of(cutouts, survey, flags)
        shapes = {cutouts[r].surveys[survey].data.shape[1:] for r in rows}
        if len(shapes) > 1:
            raise ValueError(f"{survey} images differ in shape ({sorted(shapes)}); "
                             "late fusion stacks them at their native grid")
        side = SURVEYS[survey].size if survey in SURVEYS else RECIPE[survey]["crop"]
        shape = shapes.pop() if shapes else (side, side)
        out = np.zeros((n, len(bands)) + tuple(shape), np.float32)
        ok = np.zeros((n, len(bands)), bool)
        for row in rows:
            _check_unit(cutouts[row].surveys[survey], survey, row)
            planes = _survey_planes(cutouts[row].surveys[survey], bands)
            filled, zeroed = fill_nonfinite(planes, nan_policy)
            flags[row] |= _nan_flag(planes, survey)
            out[row] = normalise_survey(filled, survey)
            ok[row] = ~zeroed.any(axis=(1, 2))
        images[survey], valid[survey] = out, ok
    return LateFusedInput(images, dust, valid, flags)


def _target_wcs(coord, size, pixscale_deg):
    from astropy.wcs import WCS

    icrs = coord.icrs
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [float(icrs.ra.deg), float(icrs.dec.deg)]
    w.wcs.crpix = [(size + 1) / 2.0, (size + 1) / 2.0]
    w.wcs.cdelt = [-pixscale_deg, pixscale_deg]
    w.wcs.radesys = "ICRS"
    return w


def reproject_fusion(cutouts, size=120, pixscale=0.25 * u.arcsec, ebv=None, nan_policy="zero",
                     normalise=True):
    """Early fusion on one common sky grid, with flux-conserving reprojection.

    Each survey image is resampled with ``reproject.reproject_adaptive``
    (``conserve_flux=True``, Gaussian kernel) onto a ``size`` × ``size`` TAN grid of
    ``pixscale`` pixels centred on the cutout position, so all nine channels see the
    same patch of sky (by default 30″, the PS1 crop of the published recipe), and the
    summed flux of a source is the same before and after.

    This is **not** the input ``mantis-shrimp-v1`` was trained on (that is
    `early_fusion`, which stacks the surveys' different fields of view); it is meant for
    training new models.

    Parameters
    ----------
    cutouts : `~astro_mantis.MultiSurveyCutout` or sequence of them
    size : int
        Output side in pixels.
    pixscale : `~astropy.units.Quantity`
        Output pixel scale (angle).
    ebv : array-like, shape (N, 2), optional
        Milky Way E(B−V) (CSFD, Planck) per row.
    nan_policy : {"zero", "inpaint"}
        Applied to the native images before reprojection.
    normalise : bool
        If True (default), rescale each channel to its survey's native pixel area
        (flux per native pixel, the units the published stretches expect) and apply
        the survey's normalisation (the images must then be in their survey's unit,
        as in `early_fusion`: ValueError otherwise). If False, return flux per output
        pixel in each survey's own unit.

    Returns
    -------
    `~astro_mantis.fusion.FusedInput`
        ``x`` float32 (N, 9, size, size). Output pixels not covered by a survey's
        cutout are 0 and make the channel invalid.
    """
    from reproject import reproject_adaptive

    check_nan_policy(nan_policy)
    cutouts = _as_list(cutouts)
    n = len(cutouts)
    pix_deg = u.Quantity(pixscale, u.arcsec).to_value(u.deg)
    dust, dust_unknown = dust_array(ebv, n)
    flags = _base_flags(cutouts, dust_unknown)
    x = np.zeros((n, len(CHANNELS), size, size), np.float32)
    valid = np.zeros((n, len(CHANNELS)), bool)
    first = 0
    for survey in _FUSED_SURVEYS:
        bands = RECIPE[survey]["bands"]
        nb = len(bands)
        chans = slice(first, first + nb)
        first += nb
        for row in _rows_of(cutouts, survey, flags):
            cut = cutouts[row]
            if not (np.isfinite(cut.coord.ra.deg) and np.isfinite(cut.coord.dec.deg)):
                flags[row] |= int(MantisFlag.BAD_COORDINATE)
                continue
            image = cut.surveys[survey]
            if normalise:
                _check_unit(image, survey, row)
            planes = _survey_planes(image, bands)
            filled, zeroed = fill_nonfinite(planes, nan_policy)
            flags[row] |= _nan_flag(planes, survey)
            target = _target_wcs(cut.coord, size, pix_deg)
            both = np.concatenate([filled, zeroed.astype(np.float32)])
            out, footprint = reproject_adaptive((both, image.wcs), target, shape_out=(size, size),
                                                conserve_flux=True, return_footprint=True)
            flux, hit_zeroed = out[:nb], out[nb:]
            uncovered = ~np.isfinite(flux) | (footprint[:nb] <= 0)
            flux = np.where(uncovered, 0.0, flux)
            if normalise:
                native_area = image.wcs.proj_plane_pixel_area().to_value(u.deg ** 2)
                flux = normalise_survey(flux * (native_area / pix_deg ** 2), survey)
            x[row, chans] = flux
            valid[row, chans] = ~(uncovered.any(axis=(1, 2))
                                  | (np.nan_to_num(hit_zeroed) > 0).any(axis=(1, 2)))
    return FusedInput(x, dust, valid, flags)
