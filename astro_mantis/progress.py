# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Progress bars: one argument, one default, everywhere.

Every public function that can show progress takes ``progress``: True shows a bar,
False hides it, and None, the default, shows it where someone is watching: when
standard error is a terminal or the code runs in a Jupyter kernel (not in logs, CI
or a batch job). Library code reports through these bars and `astro_mantis.log`,
never with ``print``.
"""
import sys

__all__ = ["show_progress", "progress_bar"]


def show_progress(progress):
    """Whether a progress bar is shown for a ``progress`` argument.

    Parameters
    ----------
    progress : bool or None
        True or False as given; None: when standard error is a terminal or a Jupyter
        kernel runs the code.

    Returns
    -------
    bool

    Examples
    --------
    >>> show_progress(False), show_progress(True)
    (False, True)
    """
    if progress is not None:
        return bool(progress)
    stream = sys.stderr
    try:
        if stream is not None and stream.isatty():
            return True
    except (AttributeError, ValueError):  # closed or replaced streams
        pass
    return "ipykernel" in sys.modules


def progress_bar(progress, **kwargs):
    """A `tqdm` progress bar shown as `show_progress` says.

    Parameters
    ----------
    progress : bool or None
        See `show_progress`.
    **kwargs
        Passed to ``tqdm.auto.tqdm`` (``total``, ``unit``, ``desc``, ...).

    Returns
    -------
    tqdm.auto.tqdm
        Disabled (``bar.disable`` is True) when no bar is to be shown; it can be
        updated and closed all the same.
    """
    from tqdm.auto import tqdm

    return tqdm(disable=not show_progress(progress), **kwargs)
