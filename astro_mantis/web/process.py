# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""`ServerProcess`: ``astro-mantis serve`` in a child process, for tests, benchmarks, notebooks.

It starts ``python -m astro_mantis.web`` with the given options on a free loopback port,
waits until the service answers ``GET /healthz``, and stops it with SIGTERM (a
graceful shutdown) when the ``with`` block ends.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

__all__ = ["ServerProcess"]

_LISTENING = re.compile(r"listening on (http://\S+?)/? ")


class ServerProcess:
    """The web service running in a child process.

    Parameters
    ----------
    args : sequence of str
        Options of ``astro-mantis serve`` (e.g. ``["--demo"]``); ``--port 0`` (a free
        port) is added unless a port is given.
    startup_timeout : float
        Seconds to wait for the service to answer.
    env : dict, optional
        Extra environment variables of the child.

    Attributes
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:41234`` (no trailing slash).
    process : ``subprocess.Popen``
        The child.
    output : list of str
        Lines the child printed (stdout and stderr), collected in a thread.

    Examples
    --------
    >>> with ServerProcess(["--demo"]) as server:  # doctest: +SKIP
    ...     print(server.url)
    http://127.0.0.1:41234
    """

    def __init__(self, args=(), startup_timeout=120.0, env=None):
        self.args = [str(a) for a in args]
        if "--port" not in self.args:
            self.args += ["--port", "0"]
        self.startup_timeout = float(startup_timeout)
        self.env = dict(env or {})
        self.url = None
        self.process = None
        self.output = []
        self.returncode = None
        self._reader = None
        self._found = threading.Event()

    def start(self):
        """Start the child and wait until ``GET /healthz`` answers.

        Returns
        -------
        `ServerProcess`
            This object.

        Raises
        ------
        RuntimeError
            If the child exits or does not answer within ``startup_timeout`` (the
            message holds its output).
        """
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "astro_mantis.web", *self.args], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name="astro_mantis-serve-output")
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._found.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("astro-mantis serve did not start:\n" + self.text)
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=5) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("astro-mantis serve did not answer /healthz:\n" + self.text)
            time.sleep(0.1)

    def _read(self):
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match and self.url is None:
                self.url = match.group(1).rstrip("/")
                self._found.set()

    @property
    def text(self):
        """Everything the child printed so far, as one string."""
        return "\n".join(self.output)

    def signal(self, signum=signal.SIGTERM):
        """Send a signal to the child (SIGTERM: graceful shutdown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout=60.0):
        """Wait for the child to exit; kill it after ``timeout`` seconds.

        Returns
        -------
        int
            Its exit status.
        """
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.returncode = self.process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.returncode

    def stop(self, timeout=60.0):
        """SIGTERM, then wait (see `wait`).

        Returns
        -------
        int
            The exit status.
        """
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
