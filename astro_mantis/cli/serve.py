# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The ``astro-mantis serve`` subcommand: run the web service with uvicorn.

`add_parser` adds the subcommand to the ``astro-mantis`` parser and `run` runs it;
``python -m astro_mantis.web`` does the same on its own (`main`). Importing this module
imports neither the web framework nor the server: a missing ``web`` extra is reported
when the command runs.
"""
import argparse
import contextlib
import ipaddress
import os
import re
import signal
import sys
import threading

from .common import InputError, _count, _non_negative, _positive_int

__all__ = ["add_parser", "run", "main", "settings_from_args"]

_DESCRIPTION = (
    "Serve the photo-z web service and its page with uvicorn: POST /predict (the "
    "reference Mantis Shrimp web app's JSON API: {\"NAME\", \"RA\", \"DEC\"} -> RA, DEC, "
    "photo_z, CDE, plus the bin edges, PDF, statistics, intervals, flags and model), "
    "GET /predict?RA=&DEC=&format= (the same as a file), POST /predict/batch (a CSV, "
    "ECSV, FITS or VOTable upload -> the table with redshift columns; large tables become "
    "a job at /jobs/ID), GET /cutouts/RA/DEC (FITS or a PNG panel), GET /healthz, the "
    "OpenAPI description at /openapi.json, and the page at /. The model is loaded once; "
    "cutouts go through the library's on-disk cache (astro_mantis.conf). Each client may "
    "send --rate-limit requests per second to the API (429 beyond, with Retry-After); "
    "at most --queue-size requests wait for the --concurrency worker threads (503 "
    "beyond, with Retry-After). SIGINT/SIGTERM stop the server gracefully: queued work "
    "finishes within --shutdown-timeout, what is left is answered 503. With --demo, "
    "loopback copies of the survey services serve the bundled sample sky (simulated "
    "galaxies), as in 'astro-mantis demo': no network is needed.")


def _port(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535 (0: any free port), got "
                                         f"{text!r}")
    return value


def _add_arguments(p):
    net = p.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1",
                     help="interface to bind (default: %(default)s, this machine only; "
                          "0.0.0.0 serves every interface)")
    net.add_argument("--port", type=_port, default=8000,
                     help="port (default: %(default)s; 0 picks a free one, printed at start)")
    net.add_argument("--allowed-host", action="append", default=None, metavar="NAME",
                     dest="allowed_hosts",
                     help="host name clients may use in the Host header (repeatable; "
                          "default: 127.0.0.1, localhost and the --host address when "
                          "listening on loopback, any otherwise); others get 400, against "
                          "DNS rebinding")
    net.add_argument("--workers", type=_positive_int, default=1,
                     help="server processes, each with its own model, queue and rate limit "
                          "(default: %(default)s)")
    net.add_argument("--log-level", default="warning",
                     choices=["critical", "error", "warning", "info", "debug"],
                     help="uvicorn log level (default: %(default)s; 'info' logs each request)")
    model = p.add_argument_group("model and data")
    model.add_argument("--demo", action="store_true",
                       help="serve the bundled sample sky through loopback survey servers "
                            "(simulated galaxies; no network), with a temporary cutout cache")
    model.add_argument("--demo-latency", type=_non_negative, default=0.0, metavar="SECONDS",
                       help="with --demo: delay added to every loopback survey request, to "
                            "mimic remote services (default: 0)")
    model.add_argument("--model", default="mantis-mini",
                       help="registry name of the model (default: %(default)s)")
    model.add_argument("--weights", default=None, metavar="PATH",
                       help="weights file of the model (default: the registry's)")
    model.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    model.add_argument("--cache-dir", default=None, metavar="DIR",
                       help="cutout cache directory (default: astro_mantis.conf.cache_dir)")
    model.add_argument("--panstarrs-url", default=None, metavar="URL",
                       help="Pan-STARRS image services base URL (default: "
                            "astro_mantis.conf.panstarrs_url)")
    model.add_argument("--legacysurvey-url", default=None, metavar="URL",
                       help="Legacy Surveys viewer base URL (default: "
                            "astro_mantis.conf.legacysurvey_url)")
    lim = p.add_argument_group("limits")
    lim.add_argument("--rate-limit", type=_non_negative, default=10.0, metavar="PER_SECOND",
                     help="API requests per second per client IP (default: %(default)s, as "
                          "the reference; 0: no limit)")
    lim.add_argument("--rate-burst", type=_positive_int, default=None, metavar="N",
                     help="requests a client may send at once (default: twice the rate)")
    lim.add_argument("--concurrency", type=_positive_int, default=2, metavar="N",
                     help="worker threads for photo-z and cutouts (default: %(default)s)")
    lim.add_argument("--queue-size", type=_count, default=32, metavar="N",
                     help="requests waiting for a worker at most; more get 503 "
                          "(default: %(default)s)")
    lim.add_argument("--max-batch", type=_positive_int, default=32, metavar="N",
                     help="waiting single-position requests run together, at most N "
                          "(default: %(default)s)")
    lim.add_argument("--max-jobs", type=_count, default=4, metavar="N",
                     help="batch jobs waiting at most; more get 503 (default: %(default)s)")
    lim.add_argument("--sync-rows", type=_positive_int, default=None, metavar="N",
                     help="uploads of at most N rows are answered directly; larger ones "
                          "become a job (default: 100, or --max-rows when that is smaller)")
    lim.add_argument("--max-rows", type=_positive_int, default=100_000, metavar="N",
                     help="most rows of an upload (default: %(default)s)")
    lim.add_argument("--max-upload-mb", type=_non_negative, default=20.0, metavar="MB",
                     help="largest request body in MiB (default: %(default)s)")
    lim.add_argument("--job-ttl", type=_non_negative, default=3600.0, metavar="SECONDS",
                     help="how long a finished job's result is kept (default: %(default)s)")
    lim.add_argument("--shutdown-timeout", type=_non_negative, default=30.0, metavar="SECONDS",
                     help="time queued work gets to finish at shutdown (default: "
                          "%(default)s)")


def add_parser(subparsers):
    """Add the ``serve`` subcommand to the ``astro-mantis`` parser.

    Parameters
    ----------
    subparsers : `argparse._SubParsersAction`
        What ``ArgumentParser.add_subparsers`` returned.

    Returns
    -------
    `argparse.ArgumentParser`
        The subcommand's parser; its default ``func`` is `run`.
    """
    p = subparsers.add_parser(
        "serve", help="run the photo-z web service and page (needs the 'web' extra)",
        description=_DESCRIPTION,
        epilog="Examples:\n  astro-mantis serve --demo            # no network: the sample "
               "sky\n  astro-mantis serve --port 8080 --workers 2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(p)
    p.set_defaults(func=run)
    return p


def settings_from_args(args):
    """The `~astro_mantis.web.WebSettings` of parsed ``serve`` arguments.

    Parameters
    ----------
    args : `argparse.Namespace`

    Returns
    -------
    `~astro_mantis.web.WebSettings`

    Raises
    ------
    ValueError
        For settings that cannot work together (the message names their options).
    """
    from ..web.settings import WebSettings

    sync_rows = args.sync_rows
    if sync_rows is None:  # the default, within --max-rows
        sync_rows = min(WebSettings.sync_rows, args.max_rows)
    elif sync_rows > args.max_rows:
        raise ValueError(f"--sync-rows ({sync_rows}) cannot exceed --max-rows "
                         f"({args.max_rows}): tables above --max-rows are refused, so none "
                         "could become a job")
    try:
        return _settings(WebSettings, args, sync_rows)
    except ValueError as exc:  # a setting's name, as the option that sets it
        raise ValueError(re.sub(r"\b(" + "|".join(_OPTIONS) + r")\b",
                                lambda m: _OPTIONS[m.group(1)], str(exc))) from None


#: The options of settings of `~astro_mantis.web.WebSettings`, for the messages.
_OPTIONS = {name: "--" + name.replace("_", "-") for name in (
    "rate_limit", "rate_burst", "concurrency", "queue_size", "max_batch", "max_jobs",
    "sync_rows", "max_rows", "job_ttl", "shutdown_timeout")}


def _settings(WebSettings, args, sync_rows):
    return WebSettings(
        model=args.model, weights=args.weights, device=args.device,
        rate_limit=args.rate_limit, rate_burst=args.rate_burst,
        concurrency=args.concurrency, queue_size=args.queue_size, max_batch=args.max_batch,
        max_jobs=args.max_jobs, sync_rows=sync_rows, max_rows=args.max_rows,
        max_upload_bytes=max(1, int(args.max_upload_mb * 1024 * 1024)), job_ttl=args.job_ttl,
        shutdown_timeout=args.shutdown_timeout, demo=args.demo,
        panstarrs_url=args.panstarrs_url, legacysurvey_url=args.legacysurvey_url,
        cache_dir=args.cache_dir,
        log_level="INFO" if args.log_level in ("info", "debug") else "WARNING",
        allowed_hosts=args.allowed_hosts or (_loopback_hosts(args.host)
                                             if _is_loopback(args.host) else None))


def _loopback_hosts(host):
    """The Host names a loopback service answers to: the usual two and its own address
    (an IPv6 one in brackets, as clients send it and starlette compares it)."""
    own = f"[{host}]" if ":" in host else host
    return list(dict.fromkeys(["127.0.0.1", "localhost", own.lower()]))


def _input_error(message):
    return InputError(message)


def run(args):
    """Run ``astro-mantis serve`` until SIGINT or SIGTERM.

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed arguments of the subcommand.

    Returns
    -------
    int
        0 after a clean shutdown, 1 if the server failed after binding (the model
        could not be loaded, say).

    Raises
    ------
    astro_mantis.cli.common.InputError
        If the web extra is missing, the settings are unusable or the address cannot
        be bound (the command then exits with 2).
    """
    try:
        import uvicorn
        from uvicorn.supervisors import Multiprocess

        from ..web.app import create_app
    except ImportError as exc:
        raise _input_error(f"the web service needs the 'web' extra: pip install "
                           f"'astro-mantis[web]' ({exc})") from None
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        raise _input_error(str(exc)) from None
    if not args.demo and args.demo_latency:
        raise _input_error("--demo-latency only applies with --demo")
    if not _is_loopback(args.host):
        print(f"astro-mantis serve: warning: listening on {args.host}: anyone who can reach "
              "this machine can use the service and its compute; put it behind a reverse "
              "proxy with TLS for wider use", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        if args.demo:
            import tempfile

            from ..simulate import SampleSky
            from ..testing import SurveyServer

            server = stack.enter_context(SurveyServer(sky=SampleSky(),
                                                      latency=args.demo_latency))
            settings.panstarrs_url = settings.panstarrs_url or server.panstarrs_url
            settings.legacysurvey_url = settings.legacysurvey_url or server.legacysurvey_url
            if not settings.cache_dir:
                settings.cache_dir = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="astro_mantis_serve_"))
        graceful = int(settings.shutdown_timeout) + 10
        common = dict(host=args.host, port=args.port, log_level=args.log_level,
                      lifespan="on", proxy_headers=False, server_header=False,
                      timeout_graceful_shutdown=graceful,
                      access_log=args.log_level in ("info", "debug"))
        if args.workers > 1:
            from ..web.settings import SETTINGS_ENV

            if not settings.jobs_dir:  # one directory, so any process answers for a job
                import tempfile

                settings.jobs_dir = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="astro_mantis_jobs_"))

            os.environ[SETTINGS_ENV] = settings.to_json()
            config = uvicorn.Config("astro_mantis.web.app:app_from_environment", factory=True,
                                    workers=args.workers, **common)
        else:
            config = uvicorn.Config(create_app(settings), **common)
        try:
            sock = config.bind_socket()
        except (OSError, SystemExit) as exc:
            raise _input_error(f"cannot listen on {args.host}:{args.port}: {exc}") from None
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"astro-mantis serve: listening on http://{shown}:{port}/ "
              f"(model {settings.model}{', demo: simulated sample sky' if args.demo else ''};"
              f" {args.workers} worker process{'es' if args.workers > 1 else ''}; "
              "Ctrl+C to stop)", flush=True)
        if threading.current_thread() is threading.main_thread():
            # uvicorn re-raises the signal that stopped it once it has shut down; a
            # SIGTERM handled here lets the command finish and report a clean exit
            stack.callback(signal.signal, signal.SIGTERM,
                           signal.signal(signal.SIGTERM, lambda signum, frame: None))
        try:
            if args.workers > 1:
                Multiprocess(config, sockets=[sock]).run()
                started = True
            else:
                server = uvicorn.Server(config)
                server.run(sockets=[sock])
                started = server.started
        except KeyboardInterrupt:
            started = True
        finally:
            sock.close()
    print("astro-mantis serve: stopped", flush=True)
    return 0 if started else 1


def _is_loopback(host):
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv=None):
    """``python -m astro_mantis.web``: the ``serve`` subcommand on its own.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 after a clean shutdown, 1 if the server could not start, 2 for
        unusable arguments.
    """
    parser = argparse.ArgumentParser(prog="python -m astro_mantis.web", description=_DESCRIPTION)
    _add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return run(args)
    except Exception as exc:
        if isinstance(exc, InputError):
            print(f"astro-mantis serve: error: {exc}", file=sys.stderr)
            return 2
        raise
