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


@pytest.fixture
def run_together():
    """Run callables in threads started at once (behind a barrier); re-raise the first
    error any of them met, after all have finished."""
    import threading

    def run(*targets):
        start, errors = threading.Barrier(len(targets)), []

        def wrapped(target):
            try:
                start.wait()
                target()
            except Exception as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=wrapped, args=(t,)) for t in targets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    return run
