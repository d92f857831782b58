# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The one retry policy and the DEBUG request log shared by every network client."""
import logging

import pytest

from astro_mantis import conf, log
from astro_mantis.exceptions import FetchError
from astro_mantis.retry import MAX_BACKOFF, RETRY_STATUSES, RetryPolicy


def test_statuses_and_attempts():
    assert RETRY_STATUSES == {408, 425, 429, 500, 502, 503, 504}
    policy = RetryPolicy(retries=2, backoff=0.0)
    assert list(policy.attempts()) == [0, 1, 2]
    assert policy.retryable(503) and not policy.retryable(404) and not policy.retryable(501)
    err = policy.exhausted("HTTP 503", "from http://x")
    assert isinstance(err, FetchError) and str(err) == "HTTP 503 (after 3 attempts) from http://x"


def test_backoff_is_full_jitter_capped():
    policy = RetryPolicy(retries=8, backoff=1.0, seed=1)
    assert policy.delay(0) == 0.0
    waits = [policy.delay(k) for k in range(1, 9)]
    assert all(0 <= w <= min(MAX_BACKOFF, 2.0 ** k) for k, w in zip(range(1, 9), waits))
    assert max(waits) > 2.0  # grows with the attempt


def test_defaults_come_from_conf():
    with conf.set_temp("retries", 5), conf.set_temp("backoff", 0.25):
        policy = RetryPolicy()
    assert policy.retries == 5 and policy.backoff == 0.25


def test_every_cutout_request_is_logged_at_debug(server, caplog):
    from astropy.coordinates import SkyCoord

    from astro_mantis import Mantis

    old = log.level
    log.setLevel("DEBUG")
    try:
        with caplog.at_level(logging.DEBUG, logger="astro_mantis"):
            Mantis.get_cutouts(SkyCoord(150.3, 2.3, unit="deg"), cache=False, progress=False)
    finally:
        log.setLevel(old)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("HTTP ")]
    assert len(lines) == Mantis.last_request_count == 8  # 1 listing + 5 bands + 2 layers
    assert any(line.startswith("HTTP POST 127.0.0.1") and "/ps1filenames.py -> 200" in line
               for line in lines)
    assert all(" bytes, " in line and line.endswith(" s") for line in lines)


def test_the_sdss_clients_use_the_policy():
    pytest.importorskip("astroquery")
    from astro_mantis.spectro.sdss import _SkyServerClient

    client = _SkyServerClient(17, False, 5.0, 4, 0.1, 0.0)
    assert isinstance(client.policy, RetryPolicy) and client.policy.retries == 4
