# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Configuration of `astro_mantis.spectro`: section ``[spectro]`` of ``astro_mantis.cfg``."""
from astropy import config as _config

__all__ = ["Conf", "conf"]

#: The items live in the ``[spectro]`` section of astro_mantis.cfg.
_MODULE = "astro_mantis.spectro"


class Conf(_config.ConfigNamespace):
    """Configuration parameters for `astro_mantis.spectro`."""

    sas_url = _config.ConfigItem(
        "https://data.sdss.org",
        "Base URL of the SDSS Science Archive Server (sdss-access 'remote_base'): spAll "
        "files and spectra are fetched from <sas_url>/sas/dr<N>/...",
        module=_MODULE)
    data_release = _config.ConfigItem(
        17, "Default SDSS data release (SkyServer, spAll and spectra).", cfgtype="integer",
        module=_MODULE)
    skyserver_min_interval = _config.ConfigItem(
        1.0,
        "Least time in seconds between two SkyServer queries (SkyServer allows 60 "
        "queries per minute per client).",
        cfgtype="float",
        module=_MODULE)
    skyserver_max_rows = _config.ConfigItem(
        50000,
        "Rows asked for at most in one SkyServer query (SELECT TOP n); a query that returns "
        "that many is split and asked again, so a silently truncated answer is never used. "
        "Keep it below SkyServer's own row limit.",
        cfgtype="integer",
        module=_MODULE)
    skyserver_max_query_length = _config.ConfigItem(
        2000,
        "Longest URL query string (characters, URL-encoded) of one SkyServer query; "
        "positions are packed into queries up to this length.",
        cfgtype="integer",
        module=_MODULE)


conf = Conf()
