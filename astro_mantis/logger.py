"""The package logger, built the way astropy and astroquery build theirs."""
import logging

from astropy.logger import AstropyLogger

__all__ = ["log", "log_request"]


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
