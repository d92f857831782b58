"""Configuration of astro_mantis (astropy ``ConfigNamespace``).

Every item can be set in ``astro_mantis.cfg`` in astropy's configuration directory
(``astropy.config.get_config_dir()``: ``~/.config/astropy`` by default with astropy 8
and later, ``~/.astropy/config`` before) as a bare ``key = value`` line (no section
header), at run time (``conf.timeout = 30``) or
temporarily (``with conf.set_temp("retries", 0): ...``). Unknown keys and sections in
the file are reported with a warning when the package is imported, so a typo does
not pass silently.
"""
import warnings

from astropy import config as _config
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["Conf", "conf", "ConfigWarning", "check_config_file"]

#: The items live at the top level of astro_mantis.cfg (no ``[section]``).
_MODULE = "astro_mantis"
#: Sections of astro_mantis.cfg read by sub-packages (``[spectro]``: `astro_mantis.spectro`).
SUBPACKAGE_SECTIONS = ("spectro",)


class ConfigWarning(AstropyUserWarning):
    """The configuration file holds keys or sections astro_mantis does not know."""


class Conf(_config.ConfigNamespace):
    """Configuration parameters for `astro_mantis`."""

    panstarrs_url = _config.ConfigItem(
        "https://ps1images.stsci.edu/cgi-bin",
        "Base URL of the Pan-STARRS1 image services (ps1filenames.py, fitscut.cgi).",
        module=_MODULE)
    legacysurvey_url = _config.ConfigItem(
        "https://www.legacysurvey.org/viewer",
        "Base URL of the Legacy Surveys viewer (fits-cutout for GALEX and unWISE).",
        module=_MODULE)
    timeout = _config.ConfigItem(
        60.0, "Time limit in seconds for connecting and for each wait for data of an HTTP "
        "request; not a limit on the whole answer (a server that keeps sending slowly is "
        "waited for).", cfgtype="float", module=_MODULE)
    retries = _config.ConfigItem(
        3,
        "How many times a request is retried after a status of 408, 425, 429, 500, 502, "
        "503 or 504, a timeout, a connection error or an invalid body (never more).",
        cfgtype="integer",
        module=_MODULE)
    backoff = _config.ConfigItem(
        0.5,
        "Base delay in seconds of the exponential back-off between retries "
        "(delay = backoff * 2**attempt, with full jitter).",
        cfgtype="float",
        module=_MODULE)
    max_connections_per_host = _config.ConfigItem(
        8, "Most simultaneous connections opened to one host.", cfgtype="integer",
        module=_MODULE)
    ps1_chunk_size = _config.ConfigItem(
        200, "Positions sent in one ps1filenames.py listing request.", cfgtype="integer",
        module=_MODULE)
    ps1_coalesce_arcmin = _config.ConfigItem(
        0.0, "Pan-STARRS positions of one skycell within a square of this span (arcmin, "
        "at most 10) share one larger fitscut.cgi request per band, cut locally into "
        "identical cutouts; 0 turns it off (the default). Read when get_cutouts or "
        "add_redshift_columns is not given coalesce=.", cfgtype="float", module=_MODULE)
    cache_dir = _config.ConfigItem(
        "",
        "Directory of the on-disk cutout cache; empty means "
        "'<astropy cache dir>/astro_mantis/cutouts'.",
        module=_MODULE)


conf = Conf()


def check_config_file(config=None):
    """Warn about keys and sections of ``astro_mantis.cfg`` that no item reads.

    Parameters
    ----------
    config : ``configobj.ConfigObj``, optional
        The parsed file (default: astropy's ``get_config("astro_mantis")``).

    Returns
    -------
    list of str
        The unknown keys and sections found (each also reported as a `ConfigWarning`).
    """
    if config is None:
        try:
            config = _config.get_config(_MODULE)
        except Exception:  # no configuration directory: nothing to check
            return []
    known = set(Conf.__dict__)
    unknown = []
    for key in list(config.keys()):
        if key in config.sections and key in SUBPACKAGE_SECTIONS:
            continue
        if key in config.sections:
            unknown.append(f"[{key}]")
            warnings.warn(f"astro_mantis.cfg: section [{key}] is not read: astro_mantis "
                          "takes its settings as bare 'key = value' lines at the top of the "
                          "file (and those of astro_mantis.spectro in [spectro]); move them "
                          "out of the section", ConfigWarning, stacklevel=2)
        elif key not in known:
            unknown.append(key)
            warnings.warn(f"astro_mantis.cfg: unknown key {key!r} is ignored; known keys: "
                          f"{', '.join(sorted(k for k in known if not k.startswith('_')))}",
                          ConfigWarning, stacklevel=2)
    return unknown


check_config_file()
