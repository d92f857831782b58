# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Admission control of the web service: a per-client rate limit and a bounded work queue.

Neither class knows about HTTP. The service asks `RateLimiter.check` before it does
anything for a request (a refusal becomes a 429 answer with ``Retry-After``) and hands
the work to a `WorkQueue` (a full queue becomes a 503 answer with ``Retry-After``), so
the server never holds an unbounded backlog: at most ``workers`` items run and
``capacity`` wait, whatever the load.
"""
import math
import threading
import time
from collections import deque
from concurrent.futures import Future

__all__ = ["RateLimiter", "WorkQueue", "QueueFull", "ServiceClosed", "QueueStats"]


class QueueFull(RuntimeError):
    """The work queue holds ``capacity`` waiting items: come back later.

    Attributes
    ----------
    retry_after : int
        Suggested wait in seconds before trying again.
    """

    def __init__(self, message, retry_after=1):
        super().__init__(message)
        self.retry_after = int(retry_after)


class ServiceClosed(RuntimeError):
    """The queue is shutting down: new work is refused and unfinished work is failed."""


class RateLimiter:
    """Token buckets, one per client: ``rate`` requests per second, bursts of ``burst``.

    A client starts with a full bucket of ``burst`` tokens; each request takes one and
    the bucket refills at ``rate`` tokens per second. A request finding the bucket
    empty is refused with the time until the next token.

    Parameters
    ----------
    rate : float
        Sustained requests per second per client (the reference web app allows 10).
        0 or less turns the limit off.
    burst : int, optional
        Bucket size (default: ``max(1, ceil(2 * rate))``).
    max_clients : int
        Buckets kept at most; when there are more, the fullest (idlest) ones are
        forgotten first (a forgotten client starts again with a full bucket, which is
        what its bucket would have reached anyway once full).
    clock : callable
        Monotonic clock in seconds (replaceable in tests).

    Examples
    --------
    >>> limiter = RateLimiter(rate=1.0, burst=2, clock=lambda: 0.0)
    >>> [limiter.check("10.0.0.1")[0] for _ in range(3)]
    [True, True, False]
    >>> limiter.check("10.0.0.2")[0]
    True
    """

    def __init__(self, rate, burst=None, max_clients=10000, clock=time.monotonic):
        self.rate = float(rate)
        if burst is None:
            burst = max(1, math.ceil(2 * self.rate))
        if int(burst) < 1:
            raise ValueError(f"burst must be at least 1 request; got {burst}")
        if int(max_clients) < 1:
            raise ValueError(f"max_clients must be positive; got {max_clients}")
        self.burst = int(burst)
        self.max_clients = int(max_clients)
        self._clock = clock
        self._buckets = {}
        self._lock = threading.Lock()
        #: Requests refused so far.
        self.refused = 0
        #: Requests allowed so far.
        self.allowed = 0

    @property
    def enabled(self):
        """Whether the limit applies (``rate > 0``)."""
        return self.rate > 0

    def check(self, client):
        """Take one token from ``client``'s bucket.

        Parameters
        ----------
        client : str
            The client's key (its IP address).

        Returns
        -------
        allowed : bool
            Whether the request may go on.
        retry_after : float
            Seconds until the bucket holds a token again (0 when allowed).
        """
        if not self.enabled:
            self.allowed += 1
            return True, 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                self.allowed += 1
                allowed, wait = True, 0.0
            else:
                self._buckets[client] = (tokens, now)
                self.refused += 1
                allowed, wait = False, (1.0 - tokens) / self.rate
            if len(self._buckets) > self.max_clients:
                self._forget(now)
        return allowed, wait

    def _forget(self, now):
        """Drop the buckets that have refilled the most (those of idle clients)."""
        level = {k: min(float(self.burst), t + (now - last) * self.rate)
                 for k, (t, last) in self._buckets.items()}
        for key in sorted(level, key=level.get, reverse=True)[:len(level) - self.max_clients]:
            del self._buckets[key]


class QueueStats(dict):
    """Counters of a `WorkQueue` (a plain dict, ready for JSON).

    Keys: ``workers``, ``capacity``, ``waiting`` (items queued now), ``running`` (items
    being processed now), ``accepted``, ``rejected`` (refused because the queue was
    full or closed), ``completed``, ``failed`` (raised, or failed at shutdown),
    ``max_waiting`` (the most items ever queued at once; never above ``capacity``),
    ``closed``.
    """


class _Item:
    __slots__ = ("fn", "payload", "batchable", "future", "t_submit")

    def __init__(self, fn, payload, batchable):
        self.fn = fn
        self.payload = payload
        self.batchable = batchable
        self.future = Future()
        self.t_submit = time.monotonic()


class WorkQueue:
    """A bounded queue of blocking work served by a fixed pool of threads.

    At most ``capacity`` items wait; `submit` refuses more with `QueueFull` (which
    carries a ``retry_after`` estimate) instead of letting a backlog grow. Items of a
    *batchable* function that wait together are run as one call (``fn(list of
    payloads) -> list of results``, at most ``max_batch`` at once), so that positions
    asked for in separate requests share one cutout fetch and one network pass.

    Parameters
    ----------
    workers : int
        Threads processing items.
    capacity : int
        Most items waiting (not yet started). 0 means work is accepted only when a
        worker is idle.
    max_batch : int
        Most items of one batchable function run in one call.
    name : str
        Name of the threads (``astro_mantis-web-<name>-<k>``).

    Examples
    --------
    >>> q = WorkQueue(workers=1, capacity=4)
    >>> q.submit(sum, [1, 2, 3]).result()
    6
    >>> _ = q.close()
    """

    def __init__(self, workers=1, capacity=16, max_batch=16, name="work"):
        if int(workers) < 1:
            raise ValueError(f"workers must be at least 1; got {workers}")
        if int(capacity) < 0:
            raise ValueError(f"capacity must be 0 or more; got {capacity}")
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be at least 1; got {max_batch}")
        self.workers = int(workers)
        self.capacity = int(capacity)
        self.max_batch = int(max_batch)
        self.name = name
        self._items = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._idle = self.workers
        self._running = 0
        self._service_time = None  # moving average of seconds per call
        self._counts = dict(accepted=0, rejected=0, completed=0, failed=0, max_waiting=0)
        self._threads = [threading.Thread(target=self._work, name=f"astro_mantis-web-{name}-{k}",
                                          daemon=True) for k in range(self.workers)]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ submitting
    def submit(self, fn, payload, batchable=False):
        """Queue one item of work.

        Parameters
        ----------
        fn : callable
            ``fn(payload) -> result``, or for a batchable item ``fn([payload, ...]) ->
            [result, ...]`` (same length and order).
        payload : object
            The item's argument.
        batchable : bool
            Whether items of the same ``fn`` waiting together may run in one call.

        Returns
        -------
        `concurrent.futures.Future`
            Resolves to the result, or to the exception ``fn`` raised
            (`ServiceClosed` if the queue shut down before the item ran).

        Raises
        ------
        QueueFull
            If ``capacity`` items are waiting already.
        ServiceClosed
            If the queue is closing or closed.
        """
        with self._cond:
            if self._closed:
                self._counts["rejected"] += 1
                raise ServiceClosed("the service is shutting down; no new work is accepted")
            waiting = len(self._items)
            # with no idle worker the item would wait: count it against the capacity
            if waiting >= self.capacity + self._idle_unclaimed():
                self._counts["rejected"] += 1
                raise QueueFull(f"the work queue is full ({waiting} items waiting, at most "
                                f"{self.capacity}); try again later",
                                retry_after=self._retry_after(waiting))
            item = _Item(fn, payload, batchable)
            self._items.append(item)
            self._counts["accepted"] += 1
            queued = max(0, len(self._items) - self._idle_unclaimed())
            self._counts["max_waiting"] = max(self._counts["max_waiting"], queued)
            self._cond.notify()
        return item.future

    def _idle_unclaimed(self):
        # idle workers that have not yet been woken to take an item
        return max(0, self._idle)

    def _retry_after(self, waiting):
        per_call = self._service_time if self._service_time is not None else 1.0
        return max(1, min(60, math.ceil(per_call * (waiting + 1) / self.workers)))

    # ------------------------------------------------------------------ processing
    def _take(self):
        """Wait for work; return a list of items to run in one call (None to stop)."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if not self._items:
                return None
            first = self._items.popleft()
            batch = [first]
            if first.batchable:
                rest = deque()
                while self._items and len(batch) < self.max_batch:
                    item = self._items.popleft()
                    (batch if item.batchable and item.fn is first.fn else rest).append(item)
                rest.extend(self._items)
                self._items = rest
            self._idle -= 1
            self._running += len(batch)
            return batch

    def _work(self):
        while True:
            batch = self._take()
            if batch is None:
                return
            live = [it for it in batch if it.future.set_running_or_notify_cancel()]
            t0 = time.monotonic()
            ok = False
            try:
                if not live:
                    ok = True
                elif batch[0].batchable:
                    results = live[0].fn([it.payload for it in live])
                    if len(results) != len(live):
                        raise RuntimeError(f"batch function returned {len(results)} results "
                                           f"for {len(live)} items")
                    for it, res in zip(live, results):
                        it.future.set_result(res)
                    ok = True
                else:
                    live[0].future.set_result(live[0].fn(live[0].payload))
                    ok = True
            except BaseException as exc:  # handed to the waiting request, never lost
                for it in live:
                    if not it.future.done():
                        it.future.set_exception(exc)
            finally:
                seconds = time.monotonic() - t0
                with self._cond:
                    self._idle += 1
                    self._running -= len(batch)
                    self._counts["completed" if ok else "failed"] += len(live)
                    self._service_time = seconds if self._service_time is None else (
                        0.8 * self._service_time + 0.2 * seconds)
                    self._cond.notify_all()

    # ------------------------------------------------------------------ state
    @property
    def closed(self):
        """Whether `close` was called."""
        return self._closed

    def stats(self):
        """The queue's counters now.

        Returns
        -------
        `QueueStats`
        """
        with self._cond:
            waiting = max(0, len(self._items) - self._idle_unclaimed())
            return QueueStats(workers=self.workers, capacity=self.capacity, waiting=waiting,
                              running=self._running, closed=self._closed, **self._counts)

    def close(self, timeout=30.0):
        """Stop accepting work, let queued work finish, fail what is left after ``timeout``.

        Parameters
        ----------
        timeout : float
            Seconds to wait for queued and running items to finish. Items still
            waiting afterwards are failed with `ServiceClosed` (their requests get a
            503 answer); running items are waited for a little longer (they cannot
            be interrupted) if the worker threads allow.

        Returns
        -------
        int
            Items failed because they had not started in time.
        """
        deadline = time.monotonic() + max(0.0, float(timeout))
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while (self._items or self._running) and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
            left = list(self._items)
            self._items.clear()
            self._counts["failed"] += len(left)
            self._cond.notify_all()
        for it in left:
            if it.future.set_running_or_notify_cancel():
                it.future.set_exception(ServiceClosed(
                    "the service shut down before this request was processed"))
        for t in self._threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        return len(left)
