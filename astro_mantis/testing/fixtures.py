# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""pytest fixtures around `~astro_mantis.testing.SurveyServer`.

Use from a ``conftest.py``::

    from astro_mantis.testing.fixtures import survey_server  # noqa: F401
"""

import pytest

from .server import SurveyServer

__all__ = ["survey_server"]


@pytest.fixture
def survey_server(tmp_path):
    """A started `~astro_mantis.testing.SurveyServer` wired into ``astro_mantis.conf``.

    For the duration of the test, ``conf.panstarrs_url`` and
    ``conf.legacysurvey_url`` point at the server and ``conf.cache_dir`` at
    the test's temporary directory; the server is stopped afterwards.
    Fault and latency settings can be changed on the yielded server.

    Parameters
    ----------
    tmp_path : `pathlib.Path`
        pytest's per-test temporary directory.

    Yields
    ------
    server : `~astro_mantis.testing.SurveyServer`
        The running server (default `~astro_mantis.testing.SyntheticSky`, no faults).
    """
    from astro_mantis.config import conf

    with SurveyServer() as server, server.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path)):
        yield server
