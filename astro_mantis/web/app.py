# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The ASGI application of ``astro-mantis serve`` (FastAPI on Starlette).

`create_app` builds the application: the API (``POST /predict``, ``GET /predict``,
``POST /predict/batch``, ``GET /jobs/{id}``, ``GET /jobs/{id}/result``,
``GET /cutouts/{ra}/{dec}``,
``GET /healthz``, ``GET /examples``, the OpenAPI description at ``/openapi.json``)
and the page at ``/``. Every API request passes a per-client rate limit (429 with
``Retry-After``) and its work goes through a bounded `~astro_mantis.web.WorkQueue`
(503 with ``Retry-After`` when full); the model is loaded once at start-up and shared.
"""
import asyncio
import contextlib
import math
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

try:
    from fastapi import FastAPI, File, Form, HTTPException, Path as PathParam, Query, Request, \
        UploadFile
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, \
        StrictStr, field_validator
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("the web service needs the 'web' extra: pip install "
                      f"'astro-mantis[web]' ({exc})") from None

from .._version import __version__
from ..atomic import atomic_open
from .jobs import JobStore
from .limits import QueueFull, RateLimiter, ServiceClosed, WorkQueue
from .service import (OUTPUT_FORMATS, PhotozService, UploadTooLarge, check_output_format,
                      parse_coordinate, read_upload, write_table_bytes, cutout_fits,
                      cutout_png)
from .settings import WebSettings

# The request and answer models (PredictRequest, PredictResponse, JobStatus, ...) are
# documented by the service's own OpenAPI description (/openapi.json).
__all__ = ["create_app", "app_from_environment", "begin_shutdown", "STATIC_DIR"]

#: Directory of the page's files (``index.html``, ``app.js``, ``style.css``).
STATIC_DIR = Path(__file__).parent / "static"

_SHUTDOWN_HOOKS = []

# Content security policy of the page: nothing from other origins, no inline script.
_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'")

_LIMITED_PREFIXES = ("/predict", "/cutouts/", "/jobs/")
_JSON_TYPES = ("application/json",)


def begin_shutdown():
    """Tell every application of this process that the server is stopping.

    ``astro-mantis serve`` calls it when the server receives SIGINT or SIGTERM, before
    uvicorn waits for the open requests: each application stops accepting work, lets
    the queued work finish within ``shutdown_timeout`` and fails what is left with 503
    answers, so that no request is left waiting.
    """
    for hook in list(_SHUTDOWN_HOOKS):
        hook()


# ------------------------------------------------------------------------ schemas
_Coordinate = Union[StrictInt, StrictFloat, Annotated[StrictStr, Field(max_length=64)]]


class PredictRequest(BaseModel):
    """Body of ``POST /predict``: the reference web app's request.

    ``RA`` and ``DEC`` are degrees (numbers, or strings holding numbers), or
    sexagesimal strings (RA in hours: ``"10:00:28.6"``; Dec in degrees:
    ``"+02:12:21"``). ``NAME`` is echoed. ``require_ps1`` (ours) refuses positions south
    of Pan-STARRS (dec < -30) instead of answering a flagged estimate, as the page does.
    Unknown fields are refused.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"NAME": "1", "RA": 150.1, "DEC": 2.2}]})

    NAME: Optional[Union[StrictInt, Annotated[StrictStr, Field(max_length=200)]]] = None
    RA: _Coordinate
    DEC: _Coordinate
    require_ps1: StrictBool = False

    @field_validator("RA")
    @classmethod
    def _ra(cls, value):
        return parse_coordinate(value, "RA")

    @field_validator("DEC")
    @classmethod
    def _dec(cls, value):
        return parse_coordinate(value, "DEC")


class Flags(BaseModel):
    """`~astro_mantis.MantisFlag` bits of a result."""

    value: int
    names: list[str]
    bits: list[int]


class ModelInfo(BaseModel):
    """The model that answered."""

    name: str
    sha256: str
    version: str


class Intervals(BaseModel):
    """Central credible intervals ``[lo, hi]`` (null when not estimated)."""

    model_config = ConfigDict(populate_by_name=True)
    p68: Optional[list[Optional[float]]] = Field(None, alias="68")
    p95: Optional[list[Optional[float]]] = Field(None, alias="95")


class PredictResponse(BaseModel):
    """Answer of ``POST /predict``: the reference's fields, then ours.

    ``photo_z`` is the PDF mean (the Mantis Shrimp point estimate); ``CDE`` the
    probability of each of the 400 bins (``[[p_0, ..., p_399]]``, summing to 1, as the
    reference sends it); ``pdf`` the densities on ``bin_edges``. Values are null for
    a position that could not be estimated (see ``flags``).
    """

    RA: float
    DEC: float
    photo_z: Optional[float]
    CDE: Optional[list[list[float]]]
    CalPit: bool
    PDF: bool
    NAME: Optional[Union[int, str]] = None
    estimated: bool
    z_mean: Optional[float]
    z_median: Optional[float]
    z_mode: Optional[float]
    z_std: Optional[float]
    z_odds: Optional[float]
    intervals: Intervals
    bin_edges: list[float]
    pdf: Optional[list[float]]
    flags: Flags
    model: ModelInfo


class ErrorResponse(BaseModel):
    """Every error answer: what went wrong, and details for validation errors."""

    error: str
    detail: Optional[list] = None
    retry_after: Optional[int] = None


class JobStatus(BaseModel):
    """State of a batch job (``GET /jobs/{id}``)."""

    job_id: str
    status: Literal["queued", "running", "done", "failed"]
    n_rows: int
    rows_done: int
    format: str
    error: Optional[str]
    created: float
    started: Optional[float]
    finished: Optional[float]
    status_url: str
    result_url: Optional[str]


def _errors(*codes):
    text = {400: "Bad request", 404: "Not found", 409: "Not ready", 413: "Too large",
            415: "Wrong content type", 422: "Invalid input", 429: "Rate limit exceeded",
            503: "Busy or shutting down (see Retry-After)"}
    return {c: {"model": ErrorResponse, "description": text[c]} for c in codes}


# ------------------------------------------------------------------------ guard
class _TooLarge(Exception):
    pass


def _error_body(status, message, retry_after=None, detail=None):
    body = {"error": message}
    if detail is not None:
        body["detail"] = detail
    headers = {}
    if retry_after is not None:
        body["retry_after"] = int(retry_after)
        headers["Retry-After"] = str(int(retry_after))
    return JSONResponse(body, status_code=status, headers=headers)


class _Guard:
    """ASGI middleware: rate limit, content type, body size, shutdown (before any work)."""

    def __init__(self, app, state):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        st = self.state
        path, method = scope["path"], scope["method"]
        api = path.startswith(_LIMITED_PREFIXES)
        if api and st.closing:
            return await _error_body(503, "the service is shutting down", retry_after=5)(
                scope, receive, send)
        if api and st.limiter is not None:
            client = (scope.get("client") or ("unknown", 0))[0]
            allowed, wait = st.limiter.check(client)
            if not allowed:
                return await _error_body(429, "Rate limit exceeded", retry_after=math.ceil(wait))(
                    scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if method == "POST":
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            problem = None
            if path == "/predict" and not (ctype in _JSON_TYPES or ctype.endswith("+json")):
                # a body without Content-Type is refused too (FastAPI's strict default):
                # browsers send such requests cross-site without asking (CSRF)
                problem = ("POST /predict takes a JSON body with Content-Type: "
                           f"application/json; got {ctype or 'no Content-Type'!r}")
            elif path == "/predict/batch" and ctype != "multipart/form-data":
                problem = ("POST /predict/batch takes a file upload (Content-Type: "
                           f"multipart/form-data, field 'file'); got {ctype or 'none'!r}")
            if problem:
                return await _error_body(415, problem)(scope, receive, send)
            length = headers.get("content-length")
            limit = st.settings.max_upload_bytes
            if length is not None:
                try:
                    n = int(length)
                except ValueError:
                    return await _error_body(400, "invalid Content-Length header")(
                        scope, receive, send)
                if n > limit:
                    return await _error_body(413, f"request body of {n} bytes exceeds the "
                                                  f"limit of {limit} bytes")(scope, receive,
                                                                              send)
        seen = 0
        started = False
        too_large = False
        limit = st.settings.max_upload_bytes

        def refusal():
            return _error_body(413, f"request body exceeds the limit of {limit} bytes")

        async def counted_receive():
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    too_large = True
                    raise _TooLarge()
            return message

        async def tracked_send(message):
            nonlocal started
            if too_large:  # whatever the app made of the cut-off body, the answer is 413
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await refusal()(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await refusal()(scope, receive, send)


# ------------------------------------------------------------------------ the app
def create_app(settings=None, service=None):
    """Build the web application.

    Parameters
    ----------
    settings : `~astro_mantis.web.WebSettings`, optional
        Default: ``WebSettings()`` (127.0.0.1 is chosen by the server, not here).
    service : `~astro_mantis.web.service.PhotozService`, optional
        The photo-z work and its shared model; built at start-up when not given.

    Returns
    -------
    ``fastapi.FastAPI``
        An ASGI application. Its lifespan loads the model (unless a service is given),
        points ``astro_mantis.conf`` at the configured survey URLs and cache, and on
        shutdown finishes or fails the queued work.
    """
    settings = settings or WebSettings()
    os.environ.setdefault("MPLBACKEND", "Agg")

    class State:
        pass

    st = State()
    st.settings = settings
    st.closing = False
    st.service = service
    st.limiter = (RateLimiter(settings.rate_limit, settings.rate_burst)
                  if settings.rate_limit > 0 else None)
    st.work = None
    st.jobs_queue = None
    st.jobs = None
    st.cancel = threading.Event()
    st.started = None
    st.closer = None

    def shutdown_soon():
        """Called from the signal handler: close the queues in a thread."""
        if st.closing:
            return
        st.closing = True
        st.cancel.set()

        def close():
            if st.jobs_queue is not None:
                st.jobs_queue.close(timeout=0.0)
                st.jobs.fail_unfinished("the server shut down before the job finished")
            if st.work is not None:
                st.work.close(timeout=settings.shutdown_timeout)
        st.closer = threading.Thread(target=close, name="astro_mantis-web-shutdown",
                                     daemon=True)
        st.closer.start()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        from ..config import conf
        from ..table import DustWarning

        from ..logger import log

        warnings.filterwarnings("ignore", category=DustWarning)
        log.setLevel(settings.log_level)
        # unknown dust is reported to the client (DUST_UNKNOWN), not logged per request
        quiet = _QuietDust()
        log.addFilter(quiet)
        with contextlib.ExitStack() as stack:
            for key in ("panstarrs_url", "legacysurvey_url", "cache_dir"):
                value = getattr(settings, key)
                if value:
                    stack.enter_context(conf.set_temp(key, value))
            own_service = st.service is None
            if own_service:
                st.service = await asyncio.to_thread(PhotozService, settings)
            svc = st.service
            st.work = WorkQueue(settings.concurrency, settings.queue_size, settings.max_batch,
                                name="photoz")
            st.jobs_queue = WorkQueue(settings.job_workers, settings.max_jobs, name="jobs")
            st.jobs = JobStore(settings.jobs_dir or svc.workdir / "jobs",
                               ttl=settings.job_ttl)
            st.started = time.time()
            _SHUTDOWN_HOOKS.append(shutdown_soon)
            restore = _chain_signal_handlers()
            try:
                yield
            finally:
                log.removeFilter(quiet)
                restore()
                _SHUTDOWN_HOOKS.remove(shutdown_soon)
                shutdown_soon()
                await asyncio.to_thread(st.closer.join)
                if own_service:
                    svc.close()

    app = FastAPI(
        title="astro-mantis photo-z service",
        version=__version__,
        description=(
            "Galaxy redshift PDFs from GALEX, Pan-STARRS and unWISE cutouts (Mantis Shrimp, "
            "Engel et al. 2025), served by astro_mantis. `POST /predict` accepts the "
            "reference web app's request `{\"NAME\", \"RA\", \"DEC\"}` and answers its fields "
            "`RA, DEC, photo_z, CDE` plus the bin edges, PDF, summary statistics, intervals, "
            "flags and model. API endpoints are rate limited per client (429 with "
            "Retry-After) and their work is queued in a bounded queue (503 with "
            "Retry-After when full)."),
        lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.web = st

    # -------------------------------------------------------------- errors
    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):
        errors = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
        parts = []
        for err in errors:
            loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
            msg = str(err.get("msg", "invalid")).replace("Value error, ", "")
            parts.append(f"{'.'.join(loc) or 'request'}: {msg}")
            err.pop("input", None)
            err.pop("ctx", None)
            err.pop("url", None)
        return _error_body(422, "; ".join(parts) or "invalid request", detail=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        headers = dict(exc.headers or {})
        retry = headers.get("Retry-After")
        resp = _error_body(exc.status_code, str(exc.detail),
                           retry_after=int(retry) if retry else None)
        return resp

    @app.exception_handler(QueueFull)
    async def _full(request, exc):
        return _error_body(503, str(exc), retry_after=exc.retry_after)

    @app.exception_handler(ServiceClosed)
    async def _closed(request, exc):
        return _error_body(503, str(exc), retry_after=5)

    async def run_work(fn, payload, batchable=False):
        future = st.work.submit(fn, payload, batchable=batchable)
        return await asyncio.wrap_future(future)

    # -------------------------------------------------------------- page
    index_html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    page_headers = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(index_html, headers=page_headers)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # -------------------------------------------------------------- service state
    @app.get("/healthz", summary="Liveness and state of the service",
             responses=_errors(503))
    async def healthz():
        """The model, the queues' counters and the jobs; 503 while shutting down."""
        svc = st.service
        body = {"status": "shutting down" if st.closing else "ok",
                "version": __version__, "demo": bool(settings.demo),
                "model": svc.model_info if svc else None,
                "queue": st.work.stats() if st.work else None,
                "jobs": {"queue": st.jobs_queue.stats() if st.jobs_queue else None,
                         "states": st.jobs.counts() if st.jobs else None},
                "rate_limit": {"per_second": settings.rate_limit,
                               "burst": st.limiter.burst if st.limiter else None,
                               "refused": st.limiter.refused if st.limiter else 0},
                "limits": {"max_upload_bytes": settings.max_upload_bytes,
                           "sync_rows": settings.sync_rows, "max_rows": settings.max_rows,
                           "south_limit": settings.south_limit},
                "uptime": None if st.started is None else time.time() - st.started}
        return JSONResponse(body, status_code=503 if st.closing else 200)

    @app.get("/examples", summary="Example positions (sample galaxies in demo mode)")
    async def examples():
        """``[{"NAME", "RA", "DEC", "note"}, ...]``: sample galaxies of the bundled sky in
        demo mode (simulated), an empty list otherwise."""
        return st.service.examples() if st.service else []

    # -------------------------------------------------------------- predict
    def check_south(ra, dec, require_ps1):
        if require_ps1 and dec < settings.south_limit:
            raise HTTPException(422, f"DEC {dec:g} is south of {settings.south_limit:g}: "
                                     "Pan-STARRS has no data there, so the model would see "
                                     "only GALEX and unWISE (set require_ps1 to false to get "
                                     "that flagged estimate anyway)")

    @app.post("/predict", response_model=PredictResponse,
              summary="Redshift PDF of one position (the reference web app's API)",
              responses=_errors(413, 415, 422, 429, 503))
    async def predict(req: PredictRequest):
        """Fetch the cutouts at ``RA``, ``DEC`` (cached), run the model, answer the PDF.

        Requests arriving together are run as one table (one cutout fetch, one network
        pass); the answer of each is its own row.
        """
        check_south(req.RA, req.DEC, req.require_ps1)
        name = req.NAME
        return await run_work(st.service.predict_many, (name, req.RA, req.DEC),
                              batchable=True)

    @app.get("/predict", summary="Redshift PDF of one position, as a file (download links)",
             responses={200: {"content": {"application/json": {}, "text/plain": {},
                                          "text/csv": {}, "application/fits": {},
                                          "application/x-votable+xml": {}},
                              "description": "The answer of POST /predict (json) or a "
                                             "one-row table"},
                        **_errors(422, 429, 503)})
    async def predict_get(
            RA: Annotated[str, Query(max_length=64, description="degrees or sexagesimal "
                                                                "hours")],
            DEC: Annotated[str, Query(max_length=64, description="degrees or sexagesimal "
                                                                 "degrees")],
            NAME: Annotated[Optional[str], Query(max_length=200)] = None,
            format: Literal["json", "ecsv", "csv", "fits", "votable"] = "json"):
        """The same estimate as ``POST /predict``, as JSON or a one-row table (columns
        ``NAME``, ``ra``, ``dec`` and the redshift columns of
        `~astro_mantis.add_redshift_columns`)."""
        try:
            ra = parse_coordinate(RA, "RA")
            dec = parse_coordinate(DEC, "DEC")
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if format != "json":  # text FITS cannot hold is refused before the work
            from astropy.table import Table

            try:
                check_output_format(Table({"NAME": [NAME or ""]}), format)
            except ValueError as exc:
                raise HTTPException(422, f"NAME: {exc}") from None
        if format == "json":
            result = await run_work(st.service.predict_many, (NAME, ra, dec), batchable=True)
            return JSONResponse(result, headers={
                "Content-Disposition": _attachment(f"{_stem(NAME, ra, dec)}.json")})

        def one_row(payload):
            table = st.service.predict_positions([payload])
            try:
                return write_table_bytes(table, format)
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None
        data = await run_work(one_row, (NAME, ra, dec))
        _, media, suffix = OUTPUT_FORMATS[format]
        return Response(data, media_type=media, headers={
            "Content-Disposition": _attachment(f"{_stem(NAME, ra, dec)}{suffix}")})

    @app.post("/predict/batch", summary="Redshift columns for an uploaded table",
              responses={200: {"content": {"application/json": {}, "text/plain": {},
                                           "text/csv": {}, "application/fits": {},
                                           "application/x-votable+xml": {}},
                               "description": "The table with its redshift columns"},
                         202: {"model": JobStatus, "description": "Large table: a job was "
                               "created; poll its status_url"},
                         **_errors(413, 415, 422, 429, 503)})
    async def predict_batch(
            request: Request,
            file: Annotated[UploadFile, File(description="CSV, ECSV, FITS or VOTable table "
                                                         "with position columns")],
            format: Annotated[Optional[Literal["ecsv", "csv", "fits", "votable", "json"]],
                              Form(description="output format (default: the input's)")] = None,
            input_format: Annotated[Optional[Literal["csv", "ecsv", "fits", "votable"]],
                                    Form(description="input format (default: from the file "
                                                     "name or content)")] = None,
            ra_col: Annotated[Optional[str], Form(max_length=100)] = None,
            dec_col: Annotated[Optional[str], Form(max_length=100)] = None,
            job: Annotated[bool, Form(description="always answer with a job")] = False):
        """The uploaded table, row for row, with the columns of
        `~astro_mantis.add_redshift_columns` (``z_pdf``, ``z_mean``, ... ``z_flags``).

        Tables of at most ``sync_rows`` rows are answered on the request; larger ones
        (or ``job=true``) are answered ``202`` with a job whose ``status_url`` tells its
        progress and whose ``result_url`` gives the file once done. Positions are
        ``ra``/``dec`` columns (any case) unless named; degrees, or sexagesimal text.
        """
        form = await request.form()
        allowed = {"file", "format", "input_format", "ra_col", "dec_col", "job"}
        unknown = sorted(set(form.keys()) - allowed)
        if unknown:
            raise HTTPException(422, f"unknown form field(s) {', '.join(unknown)}; expected "
                                     f"{', '.join(sorted(allowed))}")
        data = await file.read()
        filename = file.filename or "table"

        def read(_):
            try:
                table, fmt = read_upload(data, filename, input_format,
                                         max_bytes=settings.max_upload_bytes)
            except UploadTooLarge as exc:
                raise HTTPException(413, str(exc)) from None
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None
            if len(table) > settings.max_rows:
                raise HTTPException(413, f"the table has {len(table)} rows; at most "
                                         f"{settings.max_rows} are accepted (split it, or run "
                                         "'astro-mantis predict' locally)")
            out_fmt = format or fmt
            # the same checks for both paths, on the request: a table that would fail
            # (missing or unusable position columns, redshift columns already there, text
            # the output format cannot hold) does so before any work or job
            try:
                work, ra_name, dec_name = st.service.check_table(table, ra_col, dec_col,
                                                                 out_fmt)
            except (KeyError, ValueError) as exc:
                raise HTTPException(422, str(exc.args[0] if exc.args else exc)) from None
            if job or len(table) > settings.sync_rows:
                return (work, ra_name, dec_name), out_fmt, None
            try:
                out = st.service.predict_table(work, ra_name, dec_name)
                return None, out_fmt, write_table_bytes(out, out_fmt)
            except (KeyError, ValueError) as exc:
                raise HTTPException(422, str(exc.args[0] if exc.args else exc)) from None

        checked, out_fmt, body = await run_work(read, None)
        out_name = f"{Path(filename).name.split('.')[0] or 'table'}_photoz" \
                   f"{OUTPUT_FORMATS[out_fmt][2]}"
        if body is not None:
            return Response(body, media_type=OUTPUT_FORMATS[out_fmt][1], headers={
                "Content-Disposition": _attachment(_safe(out_name))})
        table, ra_name, dec_name = checked  # checked in read(): bad tables fail there
        the_job = st.jobs.create(len(table), out_fmt, _safe(out_name))

        def run_job(_):
            st.jobs.update(the_job, status="running", started=time.time())
            try:
                out = st.service.predict_table(
                    table, ra_name, dec_name, cancel=st.cancel,
                    progress=lambda n: st.jobs.update(the_job, rows_done=n))
                # not <id>.json: that name is the job's state (jobs.py)
                path = st.jobs.result_path(the_job.id, OUTPUT_FORMATS[out_fmt][2])
                with atomic_open(path) as f:
                    f.write(write_table_bytes(out, out_fmt))
                st.jobs.update(the_job, path=path, status="done", finished=time.time())
            except Exception as exc:
                st.jobs.update(the_job, status="failed", finished=time.time(),
                               error=str(exc.args[0] if isinstance(exc, KeyError) and exc.args
                                         else exc))

        try:
            st.jobs_queue.submit(run_job, None)
        except (QueueFull, ServiceClosed):
            st.jobs.discard(the_job.id)
            raise
        return JSONResponse(the_job.as_dict(), status_code=202,
                            headers={"Location": f"/jobs/{the_job.id}"})

    _JobId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$",
                                      description="32 hexadecimal digits")]

    @app.get("/jobs/{job_id}", response_model=JobStatus, summary="State of a batch job",
             responses=_errors(404, 422, 429, 503))
    async def job_status(job_id: _JobId):
        """Status, rows done, and the result URL once done."""
        job = st.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id} (unknown, or expired after "
                                     f"{settings.job_ttl:g} s)")
        return job.as_dict()

    @app.get("/jobs/{job_id}/result", summary="Result file of a finished batch job",
             responses={200: {"content": {"application/octet-stream": {}},
                              "description": "The table with its redshift columns"},
                        **_errors(404, 409, 422, 429, 503)})
    async def job_result(job_id: _JobId):
        """The table file; 409 while the job runs or if it failed."""
        job = st.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id} (unknown, or expired after "
                                     f"{settings.job_ttl:g} s)")
        if job.status == "failed":
            raise HTTPException(409, f"job {job_id} failed: {job.error}")
        if job.status != "done":
            raise HTTPException(409, f"job {job_id} is {job.status}: {job.rows_done} of "
                                     f"{job.n_rows} rows done", headers={"Retry-After": "2"})
        data = await asyncio.to_thread(job.path.read_bytes)
        return Response(data, media_type=OUTPUT_FORMATS[job.format][1], headers={
            "Content-Disposition": _attachment(job.filename)})

    # -------------------------------------------------------------- cutouts
    @app.get("/cutouts/{ra}/{dec}", summary="Cutouts at a position: FITS or a PNG panel",
             responses={200: {"content": {"application/fits": {}, "image/png": {}},
                              "description": "Multi-extension FITS (all surveys or one) or "
                                             "the nine-band panel"},
                        **_errors(422, 429, 503)})
    async def cutouts(
            ra: Annotated[float, PathParam(ge=0, lt=360, allow_inf_nan=False,
                                           description="degrees")],
            dec: Annotated[float, PathParam(ge=-90, le=90, allow_inf_nan=False,
                                            description="degrees")],
            format: Literal["fits", "png"] = "fits",
            survey: Optional[Literal["galex", "panstarrs", "unwise"]] = None,
            layout: Literal["row", "grid"] = "row"):
        """GALEX, Pan-STARRS and unWISE cutouts (cached), as written by
        `~astro_mantis.MultiSurveyCutout.write` (``survey`` keeps one survey's
        extensions), or as a PNG of the nine bands (one ``row``, or a 3 x 3 ``grid``
        for phones)."""
        def work(_):
            cut = st.service.cutouts(ra, dec)
            if format == "png":
                return cutout_png(cut, layout=layout)
            return cutout_fits(cut, survey=survey)
        data = await run_work(work, None)
        stem = f"cutouts_{ra:.5f}_{dec:+.5f}" + (f"_{survey}" if survey else "")
        if format == "png":
            return Response(data, media_type="image/png",
                            headers={"Cache-Control": "max-age=3600"})
        return Response(data, media_type="application/fits", headers={
            "Content-Disposition": _attachment(f"{stem}.fits")})

    app.add_middleware(_Guard, state=st)
    if settings.allowed_hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    return app


class _QuietDust:
    """Log filter dropping the per-call warning about unknown dust values."""

    def filter(self, record):
        return "dust values" not in str(record.getMessage())


def _chain_signal_handlers():
    """Run `begin_shutdown` before the server's own SIGINT/SIGTERM handlers.

    uvicorn installs its handlers (with `signal.signal`) before the application starts;
    chaining ours in front lets the queues fail waiting work with 503 answers while
    uvicorn waits for the open requests. Returns a function restoring the handlers.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    replaced = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if not callable(previous) or previous is signal.default_int_handler:
            continue

        def handler(signum, frame, previous=previous):
            begin_shutdown()
            previous(signum, frame)
        signal.signal(sig, handler)
        replaced[sig] = (previous, handler)

    def restore():
        for sig, (previous, handler) in replaced.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous)
    return restore


def _safe(name):
    """A file name of letters and digits (of any script) and ``._+-``; others are ``_``."""
    keep = "".join(c if c.isalnum() or c in "._+-" else "_" for c in str(name))
    return keep[:120] or "result"


def _attachment(name):
    """A ``Content-Disposition`` header offering a download as ``name``.

    HTTP headers are Latin-1, and clients read ``filename=`` as ASCII: it gets ``name``
    with every other character replaced by ``_``, and ``filename*`` (RFC 6266 and
    5987) the name itself, in UTF-8 and percent-encoded, which browsers prefer.
    """
    from urllib.parse import quote

    name = _safe(name)
    plain = "".join(c if c.isascii() else "_" for c in name)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


def _stem(name, ra, dec):
    return _safe(name) if name else f"photoz_{ra:.5f}_{dec:+.5f}"


def app_from_environment():
    """The application built from ``ASTRO_MANTIS_WEB_SETTINGS`` (uvicorn's factory).

    ``astro-mantis serve --workers N`` starts N processes; each calls this to build its
    application from the settings the command put in the environment.

    Returns
    -------
    ``fastapi.FastAPI``
    """
    return create_app(WebSettings.from_environment())
