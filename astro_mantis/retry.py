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
  2**k)]`` seconds (``conf.backoff`` 0.5 s);
* a 429 or 503 answer's ``Retry-After`` header (seconds or an HTTP date) is honoured:
  the next attempt waits at least that long (`Attempts.retry_after`). A service that
  asks for more than `MAX_BACKOFF` seconds is not retried: the request fails at once,
  with a message saying how long the service asked to wait;
* with a ``cancel`` event (`threading.Event`), no attempt starts once it is set and
  the back-off waits end as soon as it is (`FetchError` "cancelled").

::

    policy = RetryPolicy()
    tries = policy.attempts(cancel)        # waits before each retry
    for attempt in tries:
        ...                                # on a retryable failure: last = "..."; continue
        # on 429/503: tries.retry_after(headers.get("Retry-After"), last); continue
        return result
    raise policy.exhausted(last, "from https://...")
"""
import email.utils
import random
import threading
import time

from .exceptions import FetchError

__all__ = ["RetryPolicy", "Attempts", "RETRY_STATUSES", "MAX_BACKOFF", "RETRY_AFTER_STATUSES",
           "parse_retry_after"]

#: HTTP statuses worth retrying: the server or something in between is busy or broken.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Statuses whose ``Retry-After`` header is honoured.
RETRY_AFTER_STATUSES = frozenset({429, 503})
#: Longest single back-off sleep, seconds; also the longest ``Retry-After`` honoured
#: (a service asking for more fails the request at once).
MAX_BACKOFF = 30.0


def parse_retry_after(value, now=None):
    """Seconds asked for by a ``Retry-After`` header value (delay-seconds or an HTTP
    date), at least 0; None when absent or unreadable."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = str(value).strip()
    if not value:
        return None
    try:
        return max(0.0, float(value)) if value.replace(".", "", 1).isdigit() else \
            max(0.0, email.utils.parsedate_to_datetime(value).timestamp()
                - (time.time() if now is None else now))
    except (TypeError, ValueError, OverflowError):
        return None


class Attempts:
    """The attempts of one request (`RetryPolicy.attempts`): iterate for the attempt
    numbers 0 .. retries; it waits before each retry, at least as long as the last
    `retry_after` asked.

    Raises `~astro_mantis.exceptions.FetchError` ("cancelled") from the iteration when
    the ``cancel`` event is set before an attempt or during a wait.
    """

    def __init__(self, policy, cancel=None):
        self.policy, self.cancel = policy, cancel
        self._next = 0
        self._floor = 0.0

    def __iter__(self):
        return self

    def _cancelled(self):
        return self.cancel is not None and self.cancel.is_set()

    def __next__(self):
        attempt = self._next
        if attempt > self.policy.retries:
            raise StopIteration
        if self._cancelled():
            raise FetchError("cancelled")
        wait = max(self.policy.delay(attempt), self._floor if attempt else 0.0)
        self._floor = 0.0
        if wait > 0:
            if self.cancel is not None:
                if self.cancel.wait(wait):
                    raise FetchError("cancelled")
            else:
                time.sleep(wait)
        self._next = attempt + 1
        return attempt

    def retry_after(self, value, last=""):
        """Honour a ``Retry-After`` header value (None: nothing asked): the next attempt
        waits at least that many seconds. Raises `~astro_mantis.exceptions.FetchError`
        at once when the service asks for more than the policy's ``max_backoff``."""
        seconds = parse_retry_after(value)
        if seconds is None:
            return
        if seconds > self.policy.max_backoff:
            raise FetchError(
                f"{last + ': ' if last else ''}the service asks to retry after "
                f"{seconds:.0f} s, more than the {self.policy.max_backoff:g} s astro_mantis "
                "waits; not retried (try again later)")
        self._floor = max(self._floor, seconds)


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

    def attempts(self, cancel=None):
        """The attempt numbers 0 .. retries (an `Attempts`), waiting before each retry;
        with the event ``cancel`` set, no further attempt starts and a wait ends at once
        (`~astro_mantis.exceptions.FetchError` "cancelled")."""
        return Attempts(self, cancel)

    def exhausted(self, last, where=""):
        """The `~astro_mantis.exceptions.FetchError` to raise when every attempt failed."""
        return FetchError(f"{last} (after {self.retries + 1} attempts)"
                          + (f" {where}" if where else ""))
