"""The package logger, built the way astropy and astroquery build theirs."""
import contextlib
import logging

from astropy.logger import AstropyLogger

__all__ = ["log", "log_request", "quiet_cutout_summaries"]


def _init_log():
    orig = logging.getLoggerClass()
    logging.setLoggerClass(AstropyLogger)
    try:
        log = logging.getLogger("astro_mantis")
        log._set_defaults()
    finally:
        logging.setLoggerClass(orig)
    return log


log = _init_log()


def log_request(method, url, status, nbytes, seconds):
    """Log one HTTP request at DEBUG: method, host and path, status, bytes, seconds.

    Every network client of the package calls this once per request (retries
    included), so ``log.setLevel("DEBUG")`` shows the traffic.
    """
    from urllib.parse import urlsplit

    if log.isEnabledFor(10):  # logging.DEBUG
        parts = urlsplit(str(url))
        log.debug(f"HTTP {method} {parts.netloc}{parts.path} -> {status}, {int(nbytes)} bytes, "
                  f"{seconds:.3f} s")


class _NoCutoutSummaries(logging.Filter):
    def filter(self, record):
        return not str(record.getMessage()).startswith("cutouts: ")


@contextlib.contextmanager
def quiet_cutout_summaries():
    """Hide the one-line summary each `~astro_mantis.MantisClass.get_cutouts` call logs.

    For jobs that fetch in many calls (the table job's chunks, the demo's row figures)
    and report once themselves.

    Examples
    --------
    >>> from astro_mantis.logger import quiet_cutout_summaries
    >>> with quiet_cutout_summaries():
    ...     pass  # get_cutouts calls here log no "cutouts: ..." line
    """
    quiet = _NoCutoutSummaries()
    log.addFilter(quiet)
    try:
        yield
    finally:
        log.removeFilter(quiet)
