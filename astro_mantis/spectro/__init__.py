# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Spectroscopic truth: match spectroscopic redshifts, fetch spectra, build training sets.

`match_spectroscopic` adds spectroscopic redshifts (``z_spec`` and friends) to the rows
of a table from

* ``catalog="sdss"``: SDSS SkyServer's ``SpecObj`` view, queried with SQL through
  `astroquery.sdss` (positions grouped into sky boxes, queries sized to the
  service's limits), matched locally;
* ``catalog="sdss-spall"``: the SDSS ``spAll`` summary file of a data release,
  located with ``sdss-access`` (the lite variant where the release has one), read
  memory-mapped, only the columns needed, matched locally: the path for large tables;
* any catalog of your own (DESI, GAMA, VIPERS ... files or an astropy
  `~astropy.table.Table`), naming its redshift and position columns.

`get_spectrum` and `plot_spectrum` fetch and draw the SDSS spectrum of a matched row
(``spec-lite`` files through ``sdss-access``, read with ``specutils``), and
`build_training_set` turns a table with ``z_spec`` into the training shards that
``astro-mantis train`` reads. Quality cuts are written once, as a `QualityCut`
expression, whatever the catalog.

Configuration: `conf` (an astropy ``ConfigNamespace``, section ``[spectro]`` of
``astro_mantis.cfg``) holds the SAS address, the default data release and the
SkyServer query limits; the SkyServer address itself is astroquery's own
``astroquery.sdss.conf.skyserver_baseurl``. Time limits and retries come from
``astro_mantis.conf``.
"""
from .config import Conf, conf  # noqa: E402

__all__ = ["Conf", "conf", "match_spectroscopic", "SpecFlag", "QualityCut", "DEFAULT_QUALITY",
           "SPEC_COLUMNS", "SkyServerError", "CatalogFileError", "DownloadRequiredError",
           "query_specobj", "sdss_specobjid", "spall_path", "read_spall", "get_spectrum",
           "spectrum_path", "plot_spectrum", "SPECTRAL_LINES", "build_training_set",
           "assign_healpix_splits"]

from .exceptions import CatalogFileError, DownloadRequiredError, SkyServerError  # noqa: E402
from .quality import QualityCut  # noqa: E402
from .sdss import query_specobj, sdss_specobjid  # noqa: E402
from .spall import read_spall, spall_path  # noqa: E402
from .matching import DEFAULT_QUALITY, SPEC_COLUMNS, SpecFlag, match_spectroscopic  # noqa: E402
from .spectra import SPECTRAL_LINES, get_spectrum, plot_spectrum, spectrum_path  # noqa: E402
from .training_set import assign_healpix_splits, build_training_set  # noqa: E402
