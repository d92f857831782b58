"""astro_mantis: galaxy redshift PDFs from GALEX, Pan-STARRS and unWISE cutouts.

An astropy-affiliated implementation of Mantis Shrimp (Engel et al. 2025). Start with
`add_redshift_columns` on your table (the photo-z guide) or
`Mantis.get_cutouts <MantisClass.get_cutouts>` for the cutouts (the cutouts guide).

The names below are loaded on first use, so that importing one module of the package
(``import astro_mantis.pdf``) does not pull in the network clients or torch.
"""
import importlib

from ._version import __version__
from .config import Conf, conf
from .flags import MantisFlag
from .logger import log

__all__ = ["__version__", "Conf", "conf", "log", "MantisFlag", "MultiSurveyCutout",
           "Mantis", "MantisClass", "RedshiftPDF", "add_redshift_columns", "query_coordinates",
           "match_spectroscopic", "LocalTiles"]

#: Public names loaded on first use: name → the module that defines it.
_LAZY = {
    "MultiSurveyCutout": ".multicutout",
    "Mantis": ".cutouts",
    "MantisClass": ".cutouts",
    "RedshiftPDF": ".pdf",
    "add_redshift_columns": ".table",
    "query_coordinates": ".table",
    "match_spectroscopic": ".spectro",
    "LocalTiles": ".sources",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
