import matplotlib
import pytest

from astro_mantis import conf
from astro_mantis.testing.fixtures import survey_server  # noqa: F401  (re-exported fixture)

matplotlib.use("Agg")


@pytest.fixture
def server(survey_server):  # noqa: F811
    """The loopback survey server with quick retries, so fault tests run fast."""
    with conf.set_temp("backoff", 0.01), conf.set_temp("timeout", 5.0):
        yield survey_server
