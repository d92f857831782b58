# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Progress bars: one argument, one default, everywhere.

Every public function that can show progress takes ``progress``: True shows a bar,
False hides it, and None, the default, shows it where someone is watching: when
standard error is a terminal or the code runs in a Jupyter kernel (not in logs, CI
or a batch job). Library code reports through these bars and `astro_mantis.log`,
never with ``print``.
"""
import sys

__all__ = ["progress_enabled", "progress_bar", "renamed_progress"]


def progress_enabled(progress, large=True):
    """Whether a progress bar is shown for a ``progress`` argument.

    Parameters
    ----------
    progress : bool or None
        True or False as given; None: when standard error is a terminal or a Jupyter
        kernel runs the code, and the job is ``large``.
    large : bool, optional
        Whether the job is long enough for a bar to help (functions that often run
        on a handful of items pass e.g. ``n > 10``); only read when ``progress`` is
        None.

    Returns
    -------
    bool

    Examples
    --------
    >>> progress_enabled(False), progress_enabled(True, large=False)
    (False, True)
    """
    if progress is not None:
        return bool(progress)
    if not large:
        return False
    stream = sys.stderr
    try:
        if stream is not None and stream.isatty():
            return True
    except (AttributeError, ValueError):  # closed or replaced streams
        pass
    return "ipykernel" in sys.modules


def renamed_progress(progress, show_progress, function):
    """The ``progress`` argument of a function that used to call it ``show_progress``.

    Parameters
    ----------
    progress : bool or None
        The ``progress`` argument.
    show_progress : bool or None
        The deprecated ``show_progress`` argument (None: not given).
    function : str
        The function's name, for the warning.

    Returns
    -------
    bool or None
        ``progress``, or ``show_progress`` when only that was given (with an
        `~astropy.utils.exceptions.AstropyDeprecationWarning`).
    """
    if show_progress is None:
        return progress
    import warnings

    from astropy.utils.exceptions import AstropyDeprecationWarning

    warnings.warn(f"{function}(show_progress=...) is deprecated; use progress=...",
                  AstropyDeprecationWarning, stacklevel=3)
    return show_progress if progress is None else progress


def progress_bar(progress, large=True, **kwargs):
    """A `tqdm` progress bar shown as `progress_enabled` says.

    Parameters
    ----------
    progress : bool or None
        See `progress_enabled`.
    large : bool, optional
        See `progress_enabled`.
    **kwargs
        Passed to ``tqdm.auto.tqdm`` (``total``, ``unit``, ``desc``, ...).

    Returns
    -------
    tqdm.auto.tqdm
        Disabled (``bar.disable`` is True) when no bar is to be shown; it can be
        updated and closed all the same.
    """
    from tqdm.auto import tqdm

    return tqdm(disable=not progress_enabled(progress, large), **kwargs)
