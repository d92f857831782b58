"""Pan-STARRS stack counts on one photometric scale, whatever the stack's depth.

A PS1 3π stack's pixels are linear counts with the zero point ``25 + 2.5
log10(EXPTIME)``: the same galaxy gives twice the counts in a stack of twice the
exposure. Stacks differ in depth from skycell to skycell and from band to band (the
number of warps stacked varies), so counts alone carry an error of the stack's
``EXPTIME`` ratio in every band, and colours between PS1 bands inherit it. The
published recipe feeds counts as they are (``panstarrs_exposure="stack"``: what
``mantis-shrimp-v1`` was trained on). A model trained with
``panstarrs_exposure="reference"`` takes counts rescaled to the band's typical
exposure time, `~astro_mantis.surveys.panstarrs.PanstarrsSurvey.typical_exptime`::

    counts_reference = counts × typical_exptime[band] / EXPTIME

so that one zero point, ``25 + 2.5 log10(typical_exptime[band])``, holds for every
stack, and the normalisation ``asinh(0.08 x) / 8`` sees calibrated fluxes at the scale
the published one was set for. A stack whose ``EXPTIME`` is unknown keeps its counts
(as if it had the typical depth) and the row gets
`~astro_mantis.MantisFlag.EXPTIME_UNKNOWN`.

A network states which it takes in its ``panstarrs_exposure`` attribute
(`~astro_mantis.models.PhotoZNet`); `~astro_mantis.models.predict` and the training
data (`~astro_mantis.training.data.ShardDataset`) follow it.
"""
import numpy as np

from ..flags import MantisFlag
from ..surveys import get_survey

__all__ = ["PANSTARRS_EXPOSURES", "check_panstarrs_exposure", "model_panstarrs_exposure",
           "reference_exptime",
           "exposure_scale", "zeropoint_exptime", "to_reference_exposure"]

#: The settings of ``panstarrs_exposure``: ``"stack"`` (counts as served, the published
#: recipe) and ``"reference"`` (counts rescaled to the typical exposure time).
PANSTARRS_EXPOSURES = ("stack", "reference")


def check_panstarrs_exposure(value):
    """Return ``value`` if it is one of `PANSTARRS_EXPOSURES`, else raise `ValueError`."""
    if value not in PANSTARRS_EXPOSURES:
        raise ValueError(f"panstarrs_exposure must be one of {PANSTARRS_EXPOSURES}, "
                         f"got {value!r}")
    return value


def model_panstarrs_exposure(net):
    """How a network takes Pan-STARRS counts: its ``panstarrs_exposure``, checked.

    The one place that reads a network's exposure setting, so that every path
    (prediction, training, evaluation, explanation) fuses what the network
    takes. Wrappers are looked through: a module that holds the network as
    ``module`` (`torch.nn.DataParallel`, DistributedDataParallel and the
    like) or ``_orig_mod`` (`torch.compile`) takes what the network inside
    takes, unless the wrapper declares its own ``panstarrs_exposure``.

    Parameters
    ----------
    net : object
        A network (usually a `torch.nn.Module`) or a wrapper around one.

    Returns
    -------
    str
        ``"stack"`` or ``"reference"``; ``"stack"`` (counts as served, the
        published recipe) for a network that declares nothing.

    Raises
    ------
    ValueError
        If the network declares a value outside `PANSTARRS_EXPOSURES`.
    """
    seen = set()
    while net is not None and id(net) not in seen:
        seen.add(id(net))
        value = getattr(net, "panstarrs_exposure", None)
        if value is not None:
            return check_panstarrs_exposure(value)
        inner = getattr(net, "_orig_mod", None)
        net = inner if inner is not None else getattr(net, "module", None)
    return "stack"


def reference_exptime():
    """The reference exposure time (s) of each PS1 band, in channel order g r i z y.

    Returns
    -------
    `numpy.ndarray`, float64, shape (5,)
    """
    survey = get_survey("panstarrs")
    return np.array([survey.typical_exptime[b] for b in survey.bands], dtype=np.float64)


def exposure_scale(exptime):
    """Factors that bring stack counts to the reference exposure time.

    Parameters
    ----------
    exptime : array-like, shape (N, 5) or (5,)
        Each stack's ``EXPTIME`` (s), bands g r i z y. NaN, zero or negative: unknown.

    Returns
    -------
    scale : `numpy.ndarray`, float32, same shape
        ``typical_exptime / EXPTIME``; 1 where ``EXPTIME`` is unknown.
    known : `numpy.ndarray`, bool, same shape
        Where ``EXPTIME`` was known.

    Raises
    ------
    ValueError
        If the last axis does not have the five PS1 bands.
    """
    exptime = np.asarray(exptime, dtype=np.float64)
    if exptime.ndim not in (1, 2) or exptime.shape[-1] != 5:
        raise ValueError("exptime must have shape (N, 5) or (5,): the EXPTIME of the g r i z y "
                         f"stacks; got shape {exptime.shape}")
    known = np.isfinite(exptime) & (exptime > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(known, reference_exptime() / exptime, 1.0)
    return scale.astype(np.float32), known


def zeropoint_exptime(zeropoints):
    """Stack exposure times (s) from their AB zero points ``25 + 2.5 log10(EXPTIME)``.

    Parameters
    ----------
    zeropoints : array-like, shape (5,) or (N, 5)
        AB zero points of the g r i z y planes (NaN: unknown), as a
        `~astro_mantis.surveys.SurveyImage` carries them.

    Returns
    -------
    `numpy.ndarray`, float64, same shape
        ``EXPTIME``; NaN where the zero point is unknown. Give it to `exposure_scale`
        or `to_reference_exposure`.
    """
    zp = np.asarray(zeropoints, dtype=np.float64)
    zp1 = get_survey("panstarrs").zeropoint_1s
    with np.errstate(over="ignore", invalid="ignore"):
        return 10.0 ** (0.4 * (zp - zp1))


def to_reference_exposure(panstarrs, exptime):
    """PS1 stack counts rescaled to the reference exposure times, and their flags.

    Parameters
    ----------
    panstarrs : array-like, shape (N, 5, ny, nx)
        Native stack pixels (counts), bands g r i z y.
    exptime : array-like, shape (N, 5), or None
        Each stack's ``EXPTIME`` (s); None: unknown for every row.

    Returns
    -------
    counts : `numpy.ndarray`, float32, shape (N, 5, ny, nx)
        A new array (the input is not changed).
    flags : `numpy.ndarray`, int64, shape (N,)
        `~astro_mantis.MantisFlag.EXPTIME_UNKNOWN` for rows where some band's
        ``EXPTIME`` is unknown and its plane holds finite pixels, else 0.

    Raises
    ------
    ValueError
        If the shapes do not match.
    """
    panstarrs = np.asarray(panstarrs, dtype=np.float32)
    if panstarrs.ndim != 4 or panstarrs.shape[1] != 5:
        raise ValueError(f"panstarrs must have shape (N, 5, ny, nx); got {panstarrs.shape}")
    n = len(panstarrs)
    if exptime is None:
        exptime = np.full((n, 5), np.nan)
    exptime = np.asarray(exptime, dtype=np.float64)
    if exptime.shape != (n, 5):
        raise ValueError(f"exptime must have shape ({n}, 5) to match panstarrs; got "
                         f"{exptime.shape}")
    scale, known = exposure_scale(exptime)
    counts = panstarrs * scale[:, :, None, None]
    has_data = np.isfinite(panstarrs).any(axis=(2, 3))
    unknown = (~known & has_data).any(axis=1)
    flags = np.where(unknown, int(MantisFlag.EXPTIME_UNKNOWN), 0).astype(np.int64)
    return counts, flags
