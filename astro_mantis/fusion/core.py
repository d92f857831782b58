"""Array math of the fusion recipes: normalisations, crops, resizing, NaN handling.

Everything here takes and returns `numpy.ndarray` objects; nothing here knows about
cutouts, WCS or units (that is `astro_mantis.fusion.high_level`). Torch is imported
only inside `resize_bilinear`, so this module imports without it.

The published early-fusion recipe of Mantis Shrimp (Engel et al. 2025), per survey:

==========  =====  ===========  ===========  =================================
survey      bands  native size  centre crop  normalisation
==========  =====  ===========  ===========  =================================
GALEX       2      32 × 1.5″    22 → 120     ``clip(x / 0.05, 0, 1)``
Pan-STARRS  5      170 × 0.25″  120          ``max(asinh(0.08 x) / 8, 0)``
unWISE      2      32 × 2.75″   22 → 120     ``max(asinh(0.6 x) / 6, 0)``
==========  =====  ===========  ===========  =================================

GALEX and unWISE are resized from 22 to 120 pixels with antialiased bilinear
interpolation (``torch.nn.functional.interpolate(mode="bilinear", antialias=True,
align_corners=False)``, the operation behind torchvision's ``Resize`` on tensors).
"""
import warnings
from typing import NamedTuple

import numpy as np
from astropy import units as u
from astropy.utils.exceptions import AstropyUserWarning

from ..flags import MantisFlag, survey_missing_flag
from ..surveys import get_survey

__all__ = ["CHANNELS", "RECIPE", "STRETCHES", "OUTPUT_SIZE", "NAN_POLICIES", "FusedInput",
           "fuse_arrays", "fuse_survey", "dust_array", "normalise_galex", "normalise_panstarrs",
           "normalise_unwise", "normalise", "center_crop", "crop_offsets", "resize_bilinear",
           "fill_nonfinite", "inpaint_nans"]

#: Side of the early-fusion image in pixels.
OUTPUT_SIZE = 120


#: Accepted values of the ``nan_policy`` arguments.
NAN_POLICIES = ("zero", "inpaint")


#: The stretch of each survey in the published early-fusion recipe, as ``(form, a,
#: b)``: ``("clip", a, None)`` is ``clip(x / a, 0, 1)``, ``("asinh", a, b)`` is
#: ``max(asinh(a x) / b, 0)`` (also in `RECIPE`, for code that must undo a stretch,
#: such as `astro_mantis.training.data.rescale_fused_counts`).
STRETCHES = {"galex": ("clip", 0.05, None), "panstarrs": ("asinh", 0.08, 8.0),
             "unwise": ("asinh", 0.6, 6.0)}


def _asinh_stretch(x, a, b):
    x = np.asarray(x, dtype=np.float32)
    return np.maximum(np.arcsinh(np.float32(a) * x) / np.float32(b), np.float32(0))


def normalise_galex(x):
    """GALEX stretch of the published model: ``clip(x / 0.05, 0, 1)`` (x in counts/s)."""
    return np.clip(np.asarray(x, dtype=np.float32) / np.float32(STRETCHES["galex"][1]), 0, 1)


def normalise_panstarrs(x):
    """Pan-STARRS stretch of the published model: ``max(asinh(0.08 x) / 8, 0)`` (x in counts)."""
    return _asinh_stretch(x, *STRETCHES["panstarrs"][1:])


def normalise_unwise(x):
    """unWISE stretch of the published model: ``max(asinh(0.6 x) / 6, 0)`` (x in Vega nmgy)."""
    return _asinh_stretch(x, *STRETCHES["unwise"][1:])


#: Per survey: the bands in channel order (read from the survey's module: the
#: survey facts live in `astro_mantis.surveys`), the centre crop (native pixels), the
#: normalisation function of the published early-fusion recipe and its form
#: (`~astro_mantis.fusion.core.STRETCHES`).
RECIPE = {
    "galex": {"bands": tuple(get_survey("galex").bands), "crop": 22,
              "normalise": normalise_galex, "stretch": STRETCHES["galex"]},
    "panstarrs": {"bands": tuple(get_survey("panstarrs").bands), "crop": 120,
                  "normalise": normalise_panstarrs, "stretch": STRETCHES["panstarrs"]},
    "unwise": {"bands": tuple(get_survey("unwise").bands), "crop": 22,
               "normalise": normalise_unwise, "stretch": STRETCHES["unwise"]},
}

#: ``(survey, band)`` of each of the nine model channels, in order: the bands of each
#: survey as its module in `astro_mantis.surveys` declares them, in the recipe's
#: survey order.
CHANNELS = tuple((survey, band) for survey, recipe in RECIPE.items()
                 for band in recipe["bands"])


def normalise(x, survey):
    """Apply the published normalisation of ``survey`` to ``x`` (any shape; NaN stays NaN)."""
    try:
        return RECIPE[survey]["normalise"](x)
    except KeyError:
        raise ValueError(f"no normalisation for survey {survey!r}; "
                         f"known: {', '.join(RECIPE)}") from None


def crop_offsets(shape, size):
    """``(top, left)`` of a centred ``size`` × ``size`` window in an image of ``shape`` (ny, nx).

    Same rule as torchvision's ``CenterCrop``: ``int(round((n - size) / 2))``.
    For the recipe's sizes the offsets are exact: 170 → 120 starts at 25, 32 → 22 at 5.
    """
    ny, nx = shape[-2:]
    if ny < size or nx < size:
        raise ValueError(f"cannot centre-crop {size}x{size} pixels from an image of "
                         f"{ny}x{nx}: the recipe needs at least {size} pixels per side")
    return int(round((ny - size) / 2.0)), int(round((nx - size) / 2.0))


def center_crop(a, size):
    """Centre-crop the last two axes of ``a`` to ``size`` × ``size`` (a view, no copy)."""
    top, left = crop_offsets(a.shape, size)
    return a[..., top:top + size, left:left + size]


def resize_bilinear(a, size):
    """Resize the last two axes of ``a`` to ``size`` × ``size``, bilinear with antialiasing.

    Uses ``torch.nn.functional.interpolate(mode="bilinear", antialias=True,
    align_corners=False)``, which is what ``torchvision.transforms.Resize`` does for
    tensors (pixel centres at half-integers, edge pixels replicated, a triangle
    filter widened by the scale factor when shrinking). When enlarging, as the
    recipe does (22 → 120), antialiasing changes nothing and this is plain bilinear
    interpolation.

    Parameters
    ----------
    a : array-like, shape (..., ny, nx)
        Finite values (NaN would spread to the neighbouring output pixels).
    size : int
        Output side in pixels.

    Returns
    -------
    `numpy.ndarray` of float32, shape (..., size, size)
    """
    a = np.asarray(a, dtype=np.float32)
    if a.shape[-2:] == (size, size):
        return a.copy()
    import torch
    import torch.nn.functional as F

    lead = a.shape[:-2]
    t = torch.from_numpy(np.ascontiguousarray(a.reshape((-1, 1) + a.shape[-2:])))
    with torch.no_grad():
        out = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True,
                            align_corners=False)
    return out.numpy().reshape(lead + (size, size))


def inpaint_nans(image, max_iter=20):
    """Fill the non-finite pixels of a 2-D image from their neighbours.

    Repeated `astropy.convolution.interpolate_replace_nans` with a Gaussian kernel of
    σ = 1 pixel (a normalised average of the finite neighbours within 4σ), so that
    each pass grows the filled region inwards until wide gaps (PS1 chip gaps) close.

    Parameters
    ----------
    image : array-like, shape (ny, nx)
    max_iter : int
        Passes at most; pixels still non-finite after them are left NaN.

    Returns
    -------
    `numpy.ndarray` of float32
        A copy; NaN only where no finite pixel could be reached (e.g. all-NaN input).
    """
    from astropy.convolution import Gaussian2DKernel, interpolate_replace_nans

    out = np.array(image, dtype=np.float64)
    bad = ~np.isfinite(out)
    if not bad.any() or bad.all():
        return out.astype(np.float32)
    out[bad] = np.nan
    kernel = Gaussian2DKernel(x_stddev=1.0)
    with warnings.catch_warnings():
        # wide gaps survive one pass by design: the next passes close them
        warnings.simplefilter("ignore", AstropyUserWarning)
        for _ in range(max_iter):
            out = interpolate_replace_nans(out, kernel, boundary="extend")
            if np.isfinite(out).all():
                break
    return out.astype(np.float32)


def fill_nonfinite(data, nan_policy="zero"):
    """Apply a NaN policy to an image stack; report what was filled.

    Parameters
    ----------
    data : array-like, shape (..., ny, nx)
        Pixel values; NaN and ±inf mark pixels with no data.
    nan_policy : {"zero", "inpaint"}
        ``"zero"``: non-finite pixels become 0, as in the reference implementation
        (0 is also what every normalisation maps 0 to). ``"inpaint"``: they are
        filled from their finite neighbours (`inpaint_nans`, per 2-D plane); planes
        with no finite pixel at all become 0.

    Returns
    -------
    filled : `numpy.ndarray` of float32
        The data with only finite values.
    zeroed : `numpy.ndarray` of bool, same shape
        True where a pixel was set to 0 because nothing better was available
        (every non-finite pixel with ``"zero"``; the unreachable ones with ``"inpaint"``).
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}; got {nan_policy!r}")
    data = np.array(data, dtype=np.float32)
    bad = ~np.isfinite(data)
    if not bad.any():
        return data, bad
    if nan_policy == "inpaint":
        planes = data.reshape((-1,) + data.shape[-2:])
        mask = bad.reshape(planes.shape)
        for i in np.flatnonzero(mask.any(axis=(1, 2))):
            planes[i] = inpaint_nans(planes[i])
        bad = ~np.isfinite(data)
    data[bad] = 0.0
    return data, bad


def check_nan_policy(nan_policy):
    """Raise ValueError unless ``nan_policy`` is one of `NAN_POLICIES`."""
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}; got {nan_policy!r}")


class FusedInput(NamedTuple):
    """Early-fused model input for N positions (unpacks as ``x, dust, valid, flags``).

    Attributes
    ----------
    x : `numpy.ndarray`, float32, shape (N, 9, size, size)
        Normalised images, channels NUV FUV g r i z y W1 W2. Always finite.
    dust : `numpy.ndarray`, float32, shape (N, 2)
        Milky Way E(B−V) values (CSFD, Planck) appended to the pooled features.
    valid : `numpy.ndarray`, bool, shape (N, 9)
        False for a channel whose survey or band is missing, or in which some pixel
        seen by the network had to be set to zero.
    flags : `numpy.ndarray`, int64, shape (N,)
        `~astro_mantis.MantisFlag` bits of each row (``<SURVEY>_MISSING``,
        ``NAN_PIXELS``, ``DUST_UNKNOWN``, plus the cutout's own flags when fused from
        cutouts). Decode one with ``MantisFlag(int(flags[i]))``.
    """

    x: np.ndarray
    dust: np.ndarray
    valid: np.ndarray
    flags: np.ndarray


def dust_array(ebv, n):
    """Dust values as float32 (N, 2), and the rows whose values are unknown.

    Parameters
    ----------
    ebv : array-like or `~astropy.units.Quantity`, shape (N, 2) or (2,) for N = 1; or None
        E(B−V) from CSFD and from Planck, in magnitudes.
    n : int
        Number of rows.

    Returns
    -------
    dust : `numpy.ndarray`, float32, shape (N, 2)
        Unknown (None or non-finite) rows are 0.
    unknown : `numpy.ndarray`, bool, shape (N,)
    """
    if ebv is None:
        return np.zeros((n, 2), np.float32), np.ones(n, bool)
    if isinstance(ebv, u.Quantity):
        ebv = ebv.to_value(u.mag)
    ebv = np.array(ebv, dtype=np.float32)
    if ebv.shape == (2,) and n == 1:
        ebv = ebv[np.newaxis]
    if ebv.shape != (n, 2):
        raise ValueError(f"ebv must have shape ({n}, 2) (E(B-V) CSFD and Planck per row); "
                         f"got {ebv.shape}")
    unknown = ~np.isfinite(ebv).all(axis=1)
    ebv[unknown] = 0.0
    return ebv, unknown


def fuse_survey(data, survey, nan_policy="zero", size=OUTPUT_SIZE):
    """The early-fusion channels of one survey, from its native pixel arrays.

    Steps: centre crop (`RECIPE`), the NaN policy, the survey's normalisation (pixel
    by pixel, at native resolution), then the antialiased bilinear resize to ``size``
    (a no-op for PS1, whose crop is already 120 pixels).

    Parameters
    ----------
    data : array-like, shape (N, nbands, ny, nx)
        Native pixels in the survey's unit, bands in `RECIPE` order; NaN where there
        is no data.
    survey : {"galex", "panstarrs", "unwise"}
    nan_policy : {"zero", "inpaint"}
        ``"inpaint"`` fills from the whole native image, so pixels just outside the
        crop help.
    size : int
        Output side.

    Returns
    -------
    x : `numpy.ndarray`, float32, shape (N, nbands, size, size)
    valid : `numpy.ndarray`, bool, shape (N, nbands)
        False where some pixel seen by the network had to be set to 0.
    nan_rows : `numpy.ndarray`, bool, shape (N,)
        Rows with some (not all) non-finite pixels in the crop.
    empty_rows : `numpy.ndarray`, bool, shape (N,)
        Rows without a single finite pixel in the crop: the survey is missing there.
    """
    check_nan_policy(nan_policy)
    data = np.asarray(data, dtype=np.float32)
    recipe = RECIPE[survey]
    if data.ndim != 4 or data.shape[1] != len(recipe["bands"]):
        raise ValueError(f"{survey} data must have shape (N, {len(recipe['bands'])}, ny, nx); "
                         f"got {data.shape}")
    cropped = center_crop(data, recipe["crop"])
    bad = ~np.isfinite(cropped)
    bad_rows = bad.any(axis=(1, 2, 3))
    empty_rows = bad.all(axis=(1, 2, 3))
    filled, zeroed = fill_nonfinite(cropped, "zero")
    if nan_policy == "inpaint":
        for row in np.flatnonzero(bad_rows & ~empty_rows):
            f, z = fill_nonfinite(data[row], "inpaint")
            filled[row], zeroed[row] = center_crop(f, recipe["crop"]), center_crop(z,
                                                                                  recipe["crop"])
    x = resize_bilinear(normalise(filled, survey), size)
    return x, ~zeroed.any(axis=(2, 3)), bad_rows & ~empty_rows, empty_rows


def _rows_and_dust(arrays, ebv):
    """The row count of per-survey arrays (and ``ebv``), the dust planes and the
    ``DUST_UNKNOWN`` flags: the check every array fuser starts with."""
    sizes = {len(a) for a in arrays.values() if a is not None}
    if ebv is not None:
        sizes.add(len(np.atleast_2d(ebv)))
    if len(sizes) > 1:
        raise ValueError(f"the arrays disagree on the number of rows: {sorted(sizes)}")
    if not sizes:
        raise ValueError("nothing to fuse: give at least one survey array (or ebv)")
    n = sizes.pop()
    dust, unknown = dust_array(ebv, n)
    flags = np.where(unknown, int(MantisFlag.DUST_UNKNOWN), 0).astype(np.int64)
    return n, dust, flags


def fuse_arrays(galex=None, panstarrs=None, unwise=None, ebv=None, nan_policy="zero",
                size=OUTPUT_SIZE):
    """Early fusion of native pixel arrays (no cutout objects needed).

    The array twin of `astro_mantis.fusion.early_fusion`, for data already stacked by
    survey (training shards).

    Parameters
    ----------
    galex, panstarrs, unwise : array-like, shape (N, nbands, ny, nx), optional
        Native pixels of each survey (bands in channel order: NUV FUV; g r i z y;
        W1 W2). None: the survey is missing for every row; a row whose crop has no
        finite pixel is missing for that row.
    ebv : array-like, shape (N, 2), optional
        E(B−V) (CSFD, Planck); None gives zeros and ``DUST_UNKNOWN``.
    nan_policy : {"zero", "inpaint"}
    size : int
        Output side (120 for the published recipe).

    Returns
    -------
    `FusedInput`
    """
    check_nan_policy(nan_policy)
    arrays = {"galex": galex, "panstarrs": panstarrs, "unwise": unwise}
    n, dust, flags = _rows_and_dust(arrays, ebv)
    x = np.zeros((n, len(CHANNELS), size, size), np.float32)
    valid = np.zeros((n, len(CHANNELS)), bool)
    first = 0
    for survey, recipe in RECIPE.items():
        chans = slice(first, first + len(recipe["bands"]))
        first += len(recipe["bands"])
        missing = int(survey_missing_flag(survey))
        if arrays[survey] is None:
            flags |= missing
            continue
        xs, ok, nan_rows, empty = fuse_survey(arrays[survey], survey, nan_policy, size)
        x[:, chans], valid[:, chans] = xs, ok
        flags[nan_rows] |= int(MantisFlag.NAN_PIXELS)
        flags[empty] |= missing
    return FusedInput(x, dust, valid, flags)
