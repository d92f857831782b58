"""astro_mantis: galaxy redshift PDFs from GALEX, Pan-STARRS and unWISE cutouts.

An astropy-affiliated implementation of Mantis Shrimp (Engel et al. 2025). Start with
`add_redshift_columns` on your table (the photo-z guide) or
`Mantis.get_cutouts <MantisClass.get_cutouts>` for the cutouts (the cutouts guide).
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("astro-mantis")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0.dev0"

from .config import Conf, conf  # noqa: E402
from .logger import log  # noqa: E402
from .flags import MantisFlag  # noqa: E402
from .multicutout import MultiSurveyCutout  # noqa: E402
from .cutouts import Mantis, MantisClass  # noqa: E402
from .pdf import RedshiftPDF  # noqa: E402
from .table import add_redshift_columns, query_coordinates  # noqa: E402
from .spectro import match_spectroscopic  # noqa: E402

__all__ = ["__version__", "Conf", "conf", "log", "MantisFlag", "MultiSurveyCutout",
           "Mantis", "MantisClass", "RedshiftPDF", "add_redshift_columns", "query_coordinates",
           "match_spectroscopic"]
