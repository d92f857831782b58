# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Errors raised by `astro_mantis.spectro`."""
from ..exceptions import MantisError

__all__ = ["SkyServerError", "CatalogFileError", "DownloadRequiredError"]


class SkyServerError(MantisError):
    """SDSS SkyServer refused a query and said why (an SQL error, an unknown column ...).

    The message is the one SkyServer returned. Such an error is not transient, so the
    query is not retried.
    """


class CatalogFileError(MantisError):
    """A spectroscopic file (an spAll summary, a spectrum) is truncated or unreadable."""


class DownloadRequiredError(MantisError):
    """A large file would have to be downloaded, and the download was not asked for.

    The message gives the file's URL and size and how to ask for it
    (``download=True``, or ``--download`` on the command line).
    """
