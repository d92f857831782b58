# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Loopback servers and synthetic skies for testing without the internet.

`SurveyServer` answers on 127.0.0.1 with the same paths, parameters and
response formats as the Pan-STARRS1 image service (``ps1filenames.py``,
``fitscut.cgi``) and the Legacy Survey viewer (``fits-cutout`` for the
``galex`` and ``unwise-neo7`` layers), with fault injection; `SyntheticSky`
renders the images (`SkycellSky` cuts Pan-STARRS ones from whole skycells, as the
real ``fitscut.cgi`` does). The pytest fixture ``survey_server`` lives in
`astro_mantis.testing.fixtures` (import it from a ``conftest.py``).
"""

from .server import (
    LogEntry,
    SurveyServer,
    ps1_filename,
    ps1_skycell,
    ps1_skycell_center,
)
from .synthetic import SyntheticSky
from .skycells import SkycellGrid, SkycellSky, cluster_catalog

__all__ = [
    "LogEntry",
    "SurveyServer",
    "SyntheticSky",
    "SkycellSky",
    "SkycellGrid",
    "cluster_catalog",
    "ps1_filename",
    "ps1_skycell",
    "ps1_skycell_center",
]

# Loopback SDSS services (astro_mantis.spectro): SkyServer's SQL search and the SAS.
from .skyserver import LoopbackService, SkyServer, SkyServerLogEntry, make_specobj  # noqa: E402
from .sas import SASLogEntry, SASServer, spec_lite_hdulist, write_spall  # noqa: E402

__all__ += ["SkyServer", "SkyServerLogEntry", "LoopbackService", "make_specobj", "SASServer",
            "SASLogEntry", "spec_lite_hdulist", "write_spall"]
