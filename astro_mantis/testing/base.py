# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The common base of the loopback HTTP servers in `astro_mantis.testing`.

`LoopbackService` holds what `~astro_mantis.testing.SurveyServer`,
`~astro_mantis.testing.SkyServer` and `~astro_mantis.testing.SASServer` share: a
threading HTTP server bound to 127.0.0.1 and served from a background thread
(`~LoopbackService.start`, `~LoopbackService.stop`, or a ``with`` block), the
record of every request (``counts``, ``log``, ``connections``) and the injection of
faults (``latency``, random faults at ``error_rate``, ``truncate_rate`` and
``html_rate``, forced ones with `~LoopbackService.fail_next`).

A service names its request handler class (``_handler_class``; by default a handler
that passes every request to the service's ``_handle`` method), its endpoints
(``_endpoint_names``), its fault kinds (``_fault_kinds``), the namedtuple of its
``log`` (``_log_type``) and the pages of its page faults (``_fault_pages``).

Only the standard library is used.
"""

import random
import socket
import threading
from collections import Counter, namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["FAULT_KINDS", "LoopbackService"]

#: Fault kinds every loopback service injects: ``"5xx"`` (an HTTP 503 page),
#: ``"truncate"`` (the body cut short, status 200), ``"html"`` (an HTML page with
#: status 200) and ``"timeout"`` (a wait of ``timeout_sleep`` seconds before the
#: answer). The first three are also drawn at random.
FAULT_KINDS = ("5xx", "truncate", "html", "timeout")

# A ``log`` entry of a service that names no log type of its own.
_LogEntry = namedtuple("LogEntry", ["method", "endpoint", "params", "count"])

_RANDOM_FAULTS = ("5xx", "truncate", "html")
_HTML_503 = (b"<html><head><title>503 Service Unavailable</title></head><body>"
             b"<h1>Service Unavailable</h1></body></html>\n")
_HTML_200 = (b"<html><head><title>Error</title></head><body><h1>An error occurred</h1>"
             b"</body></html>\n")


# ----------------------------------------------------------------------------- HTTP
class _LoopbackHTTPServer(ThreadingHTTPServer):
    """Threading HTTP server that counts and can close its client connections.

    Parameters
    ----------
    address : tuple
        ``(host, port)`` to bind.
    handler : type
        Request handler class.
    owner : `LoopbackService`
        The service; its ``connections`` count is incremented per connection and
        handlers reach it as ``self.server.owner``.
    """

    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address, handler, owner):
        self.owner = owner
        self._connections = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
            self.owner.connections += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self):
        """Shut down every open client connection (keep-alive included)."""
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        # Clients hanging up (timeouts, truncated reads) are expected here.
        pass


class _RequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler of ``GET`` and ``POST``, silent, with `send_body`.

    Subclasses define ``_dispatch(method)``.
    """

    protocol_version = "HTTP/1.1"
    server_version = "astro-mantis-loopback/1.0"
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections are closed after this

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._counted("GET")

    def do_POST(self):
        self._counted("POST")

    def _counted(self, method):
        """Run ``_dispatch`` with the request counted as in flight on the service until
        its response starts (`send_body`), so that a client that has its answer never
        sees it still counted; or until ``_dispatch`` ends, if it sent none."""
        owner = self.server.owner
        with owner._lock:
            owner.in_flight += 1
            owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
        self._counted_in_flight = True
        try:
            self._dispatch(method)
        finally:
            self._done_in_flight()

    def _done_in_flight(self):
        if getattr(self, "_counted_in_flight", False):
            self._counted_in_flight = False
            owner = self.server.owner
            with owner._lock:
                owner.in_flight -= 1

    def send_body(self, status, body, content_type, close=False, length=None, headers=()):
        """Send a complete response; a client that hung up closes the connection.

        Parameters
        ----------
        status : int
            HTTP status.
        body : bytes
            The body (not sent in answer to ``HEAD``).
        content_type : str
            ``Content-Type`` header.
        close : bool
            Close the connection after the response.
        length : int, optional
            ``Content-Length`` announced; default ``len(body)``.
        headers : iterable of (str, str)
            More headers.
        """
        self._done_in_flight()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            for key, value in headers:
                self.send_header(key, value)
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True


class _Handler(_RequestHandler):
    """Passes ``GET``, ``POST`` and ``HEAD`` requests to ``owner._handle``."""

    def do_HEAD(self):
        self._counted("HEAD")

    def _dispatch(self, method):
        owner = self.server.owner
        split = urlsplit(self.path)
        body = b""
        if method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
        owner._handle(self, method, split, body)


# ----------------------------------------------------------------------------- service
class LoopbackService:
    """Lifecycle, fault injection and instrumentation of the loopback servers.

    The base of `~astro_mantis.testing.SurveyServer`, `~astro_mantis.testing.SkyServer`
    and `~astro_mantis.testing.SASServer`: a threading HTTP server on ``host:port``
    (127.0.0.1, a free port by default), started and stopped with `start` and `stop`
    or as a context manager, that records every request (``counts``, ``log``) and
    injects faults: ``latency`` seconds per request, random faults at ``error_rate``
    (503), ``truncate_rate`` (body cut short) and ``html_rate`` (an HTML page with
    status 200), and forced ones with `fail_next`. Every attribute may be changed
    while the server runs.

    Parameters
    ----------
    host : str
        Interface to bind.
    port : int
        Port; 0 picks a free one when the server starts, and a restart keeps it
        while it is free (another free one where it is not).
    latency : float
        Seconds added to every request.
    error_rate, truncate_rate, html_rate : float
        Fractions of responses given each random fault.
    seed : int
        Seed of the random faults (setting ``seed`` later restarts their generator).

    Attributes
    ----------
    counts : `collections.Counter`
        Requests per endpoint.
    log : list of namedtuple
        Every request: method, endpoint, parameters and a count the service chooses.
    connections : int
        TCP connections accepted (a client that reuses connections opens few).
    in_flight, max_in_flight : int
        Requests being handled now (from arrival until their response starts,
        latency included), and the most at once since the start or the last
        `reset`: how concurrent a client really is.
    timeout_sleep : float
        Seconds a ``"timeout"`` fault waits before answering (default 5).

    Notes
    -----
    A subclass names, as class attributes:

    ``_handler_class``
        Its request handler class; by default one that passes every ``GET``,
        ``POST`` and ``HEAD`` request to the service's
        ``_handle(handler, method, split, body)`` (``split``: the
        `urllib.parse.urlsplit` of the path), which answers with
        ``handler.send_body(status, body, content_type, ...)``.
    ``_endpoint_names``
        The endpoints `fail_next` accepts.
    ``_fault_kinds``
        The fault kinds `fail_next` accepts (default `~astro_mantis.testing.base.FAULT_KINDS`).
    ``_log_type``
        The namedtuple of ``log`` entries: method, endpoint, parameters and a count
        (what it counts is the service's choice; None for a failed request).
    ``_fault_pages``
        ``{kind: (status, body, content_type)}``: the faults answered with a page
        (default a 503 page for ``"5xx"`` and an HTML page for ``"html"``).

    and may set ``_endpoints`` (an instance attribute) to the set of endpoints random
    faults apply to (None, the default, for all).
    """

    _handler_class = _Handler
    _fault_kinds = FAULT_KINDS
    _endpoint_names = frozenset()
    _endpoints = None
    _log_type = _LogEntry
    _fault_pages = {"5xx": (503, _HTML_503, "text/html"), "html": (200, _HTML_200, "text/html")}

    def __init__(self, host, port, latency, error_rate, truncate_rate, html_rate, seed):
        self.host = host
        self.port = int(port)
        self._port_asked = int(port)
        self.latency = float(latency)
        self.error_rate = float(error_rate)
        self.truncate_rate = float(truncate_rate)
        self.html_rate = float(html_rate)
        self._rng = random.Random(seed)
        self.seed = seed
        self.timeout_sleep = 5.0
        self.counts = Counter()
        self.log = []
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._forced = []
        self._httpd = None
        self._thread = None
        self._stopping = threading.Event()

    @property
    def seed(self):
        """Seed of the random faults; setting it restarts their generator from it."""
        return self._seed

    @seed.setter
    def seed(self, value):
        self._seed = value
        self._rng = random.Random(value)

    @property
    def running(self):
        """Whether the server is accepting connections."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self):
        """Base URL, ``http://127.0.0.1:{port}`` (available once started)."""
        if self._httpd is None:
            raise RuntimeError("the server is not started; call start() first")
        return f"http://{self.host}:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------
    def start(self):
        """Bind the socket and serve in a background thread.

        Returns
        -------
        self : `LoopbackService`
            The started server, for chaining.
        """
        if self.running:
            return self
        self._stopping.clear()
        try:  # a restarted server keeps its URL where it can (conf stays pointed at it)
            self._httpd = _LoopbackHTTPServer((self.host, self.port), self._handler_class, self)
        except OSError:
            if self._port_asked != 0 or self.port == 0:
                raise
            # port=0: the port of the last run is taken now; any free one will do
            self._httpd = _LoopbackHTTPServer((self.host, 0), self._handler_class, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop serving, close open connections and join the server thread."""
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping for latency/timeouts
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
        self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        where = self.url if self._httpd is not None else "not started"
        return f"<{type(self).__name__} {where}>"

    # -- instrumentation & faults --------------------------------------------------------
    def reset(self):
        """Clear ``counts``, ``log``, ``connections``, ``max_in_flight`` and pending
        `fail_next` failures."""
        with self._lock:
            self.counts.clear()
            self.log.clear()
            self._forced.clear()
            self.connections = 0
            self.max_in_flight = self.in_flight

    def fail_next(self, n=1, kind="5xx", endpoint=None):
        """Force the next ``n`` matching responses to fail.

        Parameters
        ----------
        n : int, optional
            Number of responses to fail.
        kind : str, optional
            One of the server's fault kinds: ``"5xx"`` (HTTP 503 with a short HTML
            body), ``"truncate"`` (status 200 with the body cut to about half),
            ``"html"`` (status 200 with an HTML error page), ``"timeout"`` (wait
            ``timeout_sleep`` seconds before answering normally), and those the
            server adds (see its notes).
        endpoint : str, optional
            Only requests to this endpoint count; None for any.

        Raises
        ------
        ValueError
            For an unknown fault kind or endpoint.
        """
        if kind not in self._fault_kinds:
            raise ValueError(f"kind must be one of {self._fault_kinds}, got {kind!r}")
        if endpoint is not None and endpoint not in self._endpoint_names:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of "
                             f"{sorted(self._endpoint_names)}")
        if int(n) > 0:
            with self._lock:
                self._forced.append([int(n), kind, endpoint])

    def _record(self, method, endpoint, params, count):
        """Count a request and log it; returns the index of its ``log`` entry."""
        with self._lock:
            self.counts[endpoint] += 1
            self.log.append(self._log_type(method, endpoint, dict(params), count))
            return len(self.log) - 1

    def _set_count(self, k, count):
        """Set the count (last field) of ``log`` entry ``k``."""
        with self._lock:
            self.log[k] = self.log[k]._replace(**{self.log[k]._fields[-1]: count})

    def _sleep(self, seconds):
        """Sleep, waking early when the server stops."""
        if seconds and seconds > 0:
            self._stopping.wait(seconds)

    def _choose_fault(self, endpoint):
        """The fault of a request: a forced one, else a random one, else None."""
        with self._lock:
            for entry in self._forced:
                if entry[2] is None or entry[2] == endpoint:
                    entry[0] -= 1
                    if entry[0] <= 0:
                        self._forced.remove(entry)
                    return entry[1]
            if self._endpoints is not None and endpoint not in self._endpoints:
                return None
            rates = (self.error_rate, self.truncate_rate, self.html_rate)
            if not any(r > 0 for r in rates):
                return None
            draw = self._rng.random()
        edge = 0.0
        for kind, rate in zip(_RANDOM_FAULTS, rates):
            edge += rate
            if draw < edge:
                return kind
        return None

    def _serve_fault(self, handler, fault):
        """Answer a page fault, or sleep through a ``"timeout"`` fault.

        Parameters
        ----------
        handler : `http.server.BaseHTTPRequestHandler`
            The request's handler (with ``send_body``).
        fault : str or None
            As from ``_choose_fault``.

        Returns
        -------
        bool
            True if the request has been answered (a fault of ``_fault_pages``).
        """
        if fault == "timeout":
            self._sleep(self.timeout_sleep)
        elif fault in self._fault_pages:
            status, body, content_type = self._fault_pages[fault]
            handler.send_body(status, body, content_type)
            return True
        return False
