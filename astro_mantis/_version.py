# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The package version, from the installed distribution's metadata.

Every module that needs the version imports it from here, never from the package
``__init__`` (which would pull in the whole package behind the smallest import).
"""
from importlib.metadata import PackageNotFoundError, version as _version

__all__ = ["__version__"]

try:
    __version__ = _version("astro-mantis")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0.dev0"
