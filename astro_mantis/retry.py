# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The one retry policy of every network client of the package.

The cutout engine (`astro_mantis.fetch`), the SkyServer client and the SAS downloads
(`astro_mantis.spectro`) all retry the same way:

* these HTTP statuses are retried — the server or something in between is busy or
  broken: `RETRY_STATUSES` = 408, 425, 429, 500, 502, 503, 504; every other status is
  final (404 is "not there", 4xx "asked wrongly");
* so are time-outs, connection errors and bodies that are not what the protocol
  promises (an HTML page with status 200, a truncated FITS file);
* at most ``conf.retries`` times (3), after an exponential back-off with full jitter:
  before retry *k* a uniform random wait in ``[0, min(MAX_BACKOFF, conf.backoff *
  2**k)]`` seconds (``conf.backoff`` 0.5 s).

::

    policy = RetryPolicy()
    for attempt in policy.attempts():      # sleeps before each retry
        ...                                # on a retryable failure: last = "..."; continue
        return result
    raise policy.exhausted(last, "from https://...")
"""
import random
import threading
import time

from .exceptions import FetchError

__all__ = ["RetryPolicy", "RETRY_STATUSES", "MAX_BACKOFF"]

#: HTTP statuses worth retrying: the server or something in between is busy or broken.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Longest single back-off sleep, seconds.
MAX_BACKOFF = 30.0


class RetryPolicy:
    """How often and after which waits a request is tried again.

    Parameters
    ----------
    retries : int, optional
        Retries after the first attempt (default ``astro_mantis.conf.retries``, read
        when the policy is made).
    backoff : float, optional
        Base delay in seconds (default ``astro_mantis.conf.backoff``).
    max_backoff : float
        Longest single wait.
    seed : int, optional
        Seed of the jitter (for reproducible tests).
    """

    def __init__(self, retries=None, backoff=None, max_backoff=MAX_BACKOFF, seed=None):
        from .config import conf

        self.retries = max(0, int(conf.retries if retries is None else retries))
        self.backoff = max(0.0, float(conf.backoff if backoff is None else backoff))
        self.max_backoff = float(max_backoff)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    @staticmethod
    def retryable(status):
        """Whether an HTTP status is worth another attempt (`RETRY_STATUSES`)."""
        return int(status) in RETRY_STATUSES

    def delay(self, attempt):
        """The random wait before attempt number ``attempt`` (0 for the first)."""
        if attempt <= 0:
            return 0.0
        with self._lock:
            return self._rng.uniform(0, min(self.max_backoff, self.backoff * 2 ** attempt))

    def attempts(self):
        """Yield the attempt numbers 0 .. retries, sleeping before each retry."""
        for attempt in range(self.retries + 1):
            wait = self.delay(attempt)
            if wait:
                time.sleep(wait)
            yield attempt

    def exhausted(self, last, where=""):
        """The `~astro_mantis.exceptions.FetchError` to raise when every attempt failed."""
        return FetchError(f"{last} (after {self.retries + 1} attempts)"
                          + (f" {where}" if where else ""))
