# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The web service and page: ``astro-mantis serve`` (needs ``pip install 'astro-mantis[web]'``).

The reference Mantis Shrimp web app, on this package's API: ``POST /predict`` answers the
reference's request ``{"NAME", "RA", "DEC"}`` with its fields ``RA, DEC, photo_z, CDE`` and
ours (bin edges, PDF, summary statistics, intervals, flags, model and checksum);
``POST /predict/batch`` adds redshift columns to an uploaded table (large ones as a job);
``GET /cutouts/{ra}/{dec}`` gives the cutouts as FITS or a PNG panel; ``/`` is a page for
people. See the web service guide in the documentation.

* `astro_mantis.web.app.create_app` (needs FastAPI) builds the ASGI application;
* `WebSettings` holds its settings;
* `astro_mantis.web.service.PhotozService` does the photo-z work (framework-free);
* `RateLimiter` and `WorkQueue` are the admission control;
* ``astro_mantis.cli.serve`` adds the ``serve`` subcommand.

Importing this package does not import the web framework: ``create_app`` and
``app_from_environment`` are loaded on first use.
"""
from .limits import QueueFull, QueueStats, RateLimiter, ServiceClosed, WorkQueue
from .settings import SETTINGS_ENV, WebSettings

# create_app, app_from_environment (astro_mantis.web.app) and PhotozService
# (astro_mantis.web.service) are importable from here too, loaded on first use.
__all__ = ["WebSettings", "SETTINGS_ENV", "RateLimiter", "WorkQueue", "QueueFull",
           "QueueStats", "ServiceClosed"]


def __getattr__(name):
    if name in ("create_app", "app_from_environment"):
        from . import app

        return getattr(app, name)
    if name == "PhotozService":
        from .service import PhotozService

        return PhotozService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
