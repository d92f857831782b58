"""Configuration of astro_mantis (astropy ``ConfigNamespace``).

Every item can be set in ``~/.astropy/config/astro_mantis.cfg``, at run time
(``conf.timeout = 30``) or temporarily (``with conf.set_temp("retries", 0): ...``).
"""
from astropy import config as _config

__all__ = ["Conf", "conf"]


class Conf(_config.ConfigNamespace):
    """Configuration parameters for `astro_mantis`."""

    panstarrs_url = _config.ConfigItem(
        "https://ps1images.stsci.edu/cgi-bin",
        "Base URL of the Pan-STARRS1 image services (ps1filenames.py, fitscut.cgi).",
    )
    legacysurvey_url = _config.ConfigItem(
        "https://www.legacysurvey.org/viewer",
        "Base URL of the Legacy Surveys viewer (fits-cutout for GALEX and unWISE).",
    )
    timeout = _config.ConfigItem(
        60.0, "Time limit in seconds for one HTTP request (connect and read).", cfgtype="float"
    )
    retries = _config.ConfigItem(
        3,
        "How many times a request is retried after a 5xx status, a timeout, a connection "
        "error or an invalid body (never more).",
        cfgtype="integer",
    )
    backoff = _config.ConfigItem(
        0.5,
        "Base delay in seconds of the exponential back-off between retries "
        "(delay = backoff * 2**attempt, with full jitter).",
        cfgtype="float",
    )
    max_connections_per_host = _config.ConfigItem(
        8, "Most simultaneous connections opened to one host.", cfgtype="integer"
    )
    ps1_chunk_size = _config.ConfigItem(
        200, "Positions sent in one ps1filenames.py listing request.", cfgtype="integer"
    )
    cache_dir = _config.ConfigItem(
        "",
        "Directory of the on-disk cutout cache; empty means "
        "'<astropy cache dir>/astro_mantis/cutouts'.",
    )


conf = Conf()
