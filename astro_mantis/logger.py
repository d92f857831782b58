"""The package logger, built the way astropy and astroquery build theirs."""
import logging

from astropy.logger import AstropyLogger

__all__ = ["log"]


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
