"""The web service (astro_mantis.web), tested as a real server over HTTP.

A real ``astro-mantis serve`` process (uvicorn) is started on loopback and talked to with
httpx: one in ``--demo`` mode (its own loopback survey servers on the bundled sample sky)
shared by most tests, and one whose survey services are a loopback server in this test
process with a gate, so that work can be held in flight deterministically to test the
queue bound, the rate limit and the graceful shutdown. Rate-limited tests send each
request from its own loopback source address (127.0.0.N): the limit is per client.
"""
import io
import itertools
import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from astropy.io import fits  # noqa: E402
from astropy.table import Table  # noqa: E402

from astro_mantis import MantisFlag  # noqa: E402
from astro_mantis.testing import SurveyServer  # noqa: E402
from astro_mantis.web import QueueFull, RateLimiter, ServiceClosed, WebSettings, \
    WorkQueue  # noqa: E402
from astro_mantis.web.process import ServerProcess  # noqa: E402
from astro_mantis.web.service import parse_coordinate, read_upload, \
    write_table_bytes  # noqa: E402

_addresses = itertools.count(10)


def fresh_client(base_url, timeout=120.0):
    """An httpx client from a loopback source address no other client used."""
    n = next(_addresses)
    address = f"127.0.{n // 250}.{n % 250 + 2}"
    return httpx.Client(base_url=base_url, timeout=timeout,
                        transport=httpx.HTTPTransport(local_address=address))


def wait_for(condition, what, timeout=60.0):
    """Poll until ``condition()`` is true (a safety limit, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class GatedSurveyServer(SurveyServer):
    """A loopback survey server whose answers wait until ``gate`` is set."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.gate.set()

    def _respond(self, endpoint, params, positions):
        self.gate.wait(timeout=120)
        return super()._respond(endpoint, params, positions)


@pytest.fixture(scope="module")
def service():
    """``astro-mantis serve --demo`` with small limits, shared by the module."""
    with ServerProcess(["--demo", "--rate-limit", "1000", "--rate-burst", "1000",
                        "--sync-rows", "5", "--max-rows", "50", "--max-upload-mb", "0.25",
                        "--job-ttl", "600"]) as server:
        yield server
    assert server.returncode == 0, server.text


@pytest.fixture(scope="module")
def api(service):
    with httpx.Client(base_url=service.url, timeout=120.0) as client:
        yield client


@pytest.fixture(scope="module")
def sample(api):
    """The demo's example positions: an ordinary galaxy first, then a southern one."""
    examples = api.get("/examples").json()
    assert examples, "the demo service offers example positions"
    return examples


def _gated_args(upstream, cache_dir, extra=()):
    return ["--panstarrs-url", upstream.panstarrs_url, "--legacysurvey-url",
            upstream.legacysurvey_url, "--cache-dir", str(cache_dir), "--concurrency", "1",
            "--queue-size", "2", *extra]


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """A service over a gated upstream: 1 worker, 2 waiting at most, 3 requests per client."""
    upstream = GatedSurveyServer()
    with upstream, ServerProcess(_gated_args(upstream, tmp_path_factory.mktemp("cache"),
                                             ["--rate-limit", "0.001", "--rate-burst",
                                              "3"])) as server:
        server.upstream = upstream
        yield server
        upstream.gate.set()


# ------------------------------------------------------------------ units without a server
class TestParseCoordinate:
    @pytest.mark.parametrize("value, axis, expected", [
        (150.1, "RA", 150.1), ("150.1", "RA", 150.1), (7, "DEC", 7.0),
        ("10:00:24", "RA", 150.1), ("10h00m24s", "RA", 150.1), ("10 00 24", "RA", 150.1),
        ("150d06m00s", "RA", 150.1), ("+02:12:00", "DEC", 2.2), ("-30d30m", "DEC", -30.5)])
    def test_reads(self, value, axis, expected):
        assert parse_coordinate(value, axis) == pytest.approx(expected, abs=1e-9)

    @pytest.mark.parametrize("value, axis, words", [
        ("abc", "RA", "RA must be"), (360.0, "RA", "out of range"), (-0.1, "RA", "out of range"),
        (90.5, "DEC", "out of range"), (float("nan"), "DEC", "finite"), (True, "RA", "RA must"),
        (None, "DEC", "DEC must"), ("", "RA", "RA must"), ("1" * 80, "RA", "RA must"),
        pytest.param(10 ** 400, "RA", "out of range", id="huge-int"), ([1], "DEC", "list"),
        ("2h", "DEC", "hours are for right ascension"),
        ("-01h30m", "DEC", "hours are for right ascension")])
    def test_refuses(self, value, axis, words):
        with pytest.raises(ValueError, match=words):
            parse_coordinate(value, axis)


def test_rate_limiter_refills_and_is_per_client():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.check("a")[0] for _ in range(4)] == [True, True, True, False]
    allowed, wait = limiter.check("a")
    assert not allowed and wait == pytest.approx(0.5)
    assert limiter.check("b")[0]
    now[0] = 0.5  # one token back
    assert limiter.check("a")[0] and not limiter.check("a")[0]
    assert limiter.refused == 3 and limiter.allowed == 5
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(1.0, burst=0)


def test_rate_limiter_forgets_idle_clients_first():
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=2, max_clients=2, clock=lambda: now[0])
    limiter.check("old")
    now[0] = 10.0
    limiter.check("busy")
    limiter.check("busy")
    limiter.check("new")  # three clients: the idle, refilled one is forgotten
    assert set(limiter._buckets) == {"busy", "new"}


def test_work_queue_bound_batches_and_shutdown():
    gate = threading.Event()
    calls = []

    def batch(items):
        gate.wait(30)
        calls.append(list(items))
        return [i * 10 for i in items]

    q = WorkQueue(workers=1, capacity=2, max_batch=8, name="test")
    first = q.submit(batch, 1, batchable=True)
    wait_for(lambda: q.stats()["running"] == 1, "the first item to start")
    waiting = [q.submit(batch, i, batchable=True) for i in (2, 3)]
    with pytest.raises(QueueFull) as info:
        q.submit(batch, 4, batchable=True)
    assert info.value.retry_after >= 1
    stats = q.stats()
    assert stats["waiting"] == 2 and stats["rejected"] == 1 and stats["max_waiting"] == 2
    gate.set()
    assert [f.result(30) for f in [first, *waiting]] == [10, 20, 30]
    assert calls == [[1], [2, 3]]  # the two waiting items ran as one batch
    assert q.submit(lambda x: x + 1, 1).result(30) == 2
    q.close(timeout=5)
    with pytest.raises(ServiceClosed):
        q.submit(batch, 5)
    assert q.stats()["completed"] == 4


def test_work_queue_close_fails_waiting_items():
    gate = threading.Event()
    q = WorkQueue(workers=1, capacity=4)
    running = q.submit(lambda _: gate.wait(30), None)
    wait_for(lambda: q.stats()["running"] == 1, "the item to start")
    queued = q.submit(lambda _: "never", None)
    closer = threading.Thread(target=q.close, kwargs={"timeout": 0.2})
    closer.start()
    with pytest.raises(ServiceClosed, match="shut down"):
        queued.result(30)
    gate.set()
    closer.join(30)
    assert running.result(30) is True
    assert q.stats()["failed"] == 1


def test_work_queue_errors_reach_the_caller():
    q = WorkQueue(workers=1, capacity=2)
    with pytest.raises(ZeroDivisionError):
        q.submit(lambda x: 1 / x, 0).result(30)
    gate = threading.Event()
    hold = q.submit(lambda _: gate.wait(30), None)
    wait_for(lambda: q.stats()["running"] == 1, "the item to start")

    def bad(items):
        return [0]
    a = q.submit(bad, 1, batchable=True)
    b = q.submit(bad, 2, batchable=True)
    gate.set()
    assert hold.result(30) is True
    for future in (a, b):  # one batch of two: both get the error, none is lost
        with pytest.raises(RuntimeError, match="returned 1 results for 2"):
            future.result(30)
    assert q.stats()["failed"] == 3
    q.close()
    with pytest.raises(ValueError, match="workers"):
        WorkQueue(workers=0)


def test_settings_refuse_bad_values_and_round_trip():
    s = WebSettings(rate_limit=2.5, queue_size=0, demo=True)
    assert WebSettings.from_json(s.to_json()) == s
    with pytest.raises(ValueError, match="concurrency"):
        WebSettings(concurrency=0)
    with pytest.raises(ValueError, match="sync_rows"):
        WebSettings(sync_rows=10, max_rows=5)
    with pytest.raises(ValueError, match="unknown web settings: colour"):
        WebSettings.from_json('{"colour": 1}')
    with pytest.raises(ValueError, match="rate_limit"):
        WebSettings(rate_limit=float("inf"))


def test_serve_sync_rows_follows_a_smaller_max_rows_and_names_the_options(capsys):
    """'astro-mantis serve --max-rows 50' once exited 2 with 'sync_rows (100) cannot
    exceed max_rows (50)': the default --sync-rows now stays within --max-rows, and the
    messages name the options, not the settings."""
    from astro_mantis.cli.main import build_parser
    from astro_mantis.cli.serve import main, settings_from_args

    parser = build_parser()
    settings = settings_from_args(parser.parse_args(["serve", "--max-rows", "50"]))
    assert (settings.sync_rows, settings.max_rows) == (50, 50)
    assert settings_from_args(parser.parse_args(["serve"])).sync_rows == 100
    assert settings_from_args(parser.parse_args(["serve", "--max-rows", "50",
                                                 "--sync-rows", "7"])).sync_rows == 7
    assert main(["--max-rows", "50", "--sync-rows", "60", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--sync-rows (60) cannot exceed --max-rows (50)" in err and "sync_rows" not in err


@pytest.mark.parametrize("host, sent", [("127.0.0.1", "127.0.0.1:8000"),
                                        ("::1", "[::1]:8000"), ("127.0.0.2", "127.0.0.2")])
def test_a_loopback_service_answers_to_its_own_address(host, sent):
    """The default allowed hosts include the address bound, as a client's Host header
    names it (an IPv6 address in brackets): 'serve --host ::1' once refused its own
    printed URL with 400."""
    from starlette.middleware.trustedhost import parse_host_header

    from astro_mantis.cli.main import build_parser
    from astro_mantis.cli.serve import settings_from_args

    settings = settings_from_args(build_parser().parse_args(["serve", "--host", host]))
    assert parse_host_header(sent).host.lower() in settings.allowed_hosts
    assert {"127.0.0.1", "localhost"} <= set(settings.allowed_hosts)
    given = build_parser().parse_args(["serve", "--host", host, "--allowed-host", "x.org"])
    assert settings_from_args(given).allowed_hosts == ["x.org"]
    wide = build_parser().parse_args(["serve", "--host", "0.0.0.0"])
    assert settings_from_args(wide).allowed_hosts is None

def test_read_upload_guesses_formats_and_refuses_garbage():
    t = Table({"ra": [1.0, 2.0], "dec": [3.0, 4.0]})
    for fmt in ("ecsv", "csv", "fits", "votable"):
        data = write_table_bytes(t, fmt)
        back, found = read_upload(data)  # no name: guessed from the content
        assert found == fmt and list(back["ra"]) == [1.0, 2.0]
    with pytest.raises(ValueError, match="could not read the upload as FITS"):
        read_upload(b"SIMPLE  = garbage", "x.fits")
    with pytest.raises(ValueError, match="empty"):
        read_upload(b"")
    with pytest.raises(ValueError, match="unknown input format"):
        read_upload(b"a\n1\n", format="xlsx")


def test_read_upload_never_opens_a_file_named_by_the_content(tmp_path):
    """Astropy reads a string without a line break as a file name or URL: an upload of
    the text '/path/to/secret.csv' once answered that server file."""
    secret = tmp_path / "secret.csv"
    secret.write_text("ra,dec,password\n150.1,2.2,hunter2\n")
    for name in ("x.csv", "x.ecsv", "x"):
        try:
            table, _ = read_upload(str(secret).encode(), name)
        except ValueError as exc:
            assert "hunter2" not in str(exc)
        else:
            assert "password" not in table.colnames and len(table) == 0, name


def test_read_upload_takes_a_byte_order_mark_and_gzip():
    """A CSV saved by a spreadsheet starts with a UTF-8 byte-order mark: before, the first
    column was read as '\\ufeffra'. Gzip uploads (.csv.gz, .fits.gz) were not readable."""
    import gzip

    from astro_mantis.web.service import UploadTooLarge

    t, fmt = read_upload("\ufeffra,dec\n1.5,2.5\n".encode("utf-8"), "t.csv")
    assert fmt == "csv" and t.colnames == ["ra", "dec"] and t["ra"][0] == 1.5
    t, _ = read_upload("\ufeff# %ECSV 1.0\n# ---\n# datatype:\n# - {name: ra, datatype: "
                       "float64}\n# schema: astropy-2.0\nra\n1.5\n".encode(), "t.ecsv")
    assert t.colnames == ["ra"]
    small = Table({"ra": [1.0, 2.0], "dec": [3.0, 4.0]})
    for name, fmt in (("t.csv.gz", "csv"), ("t.fits.gz", "fits"), ("t.ecsv.gz", "ecsv"),
                      ("t.xml.gz", "votable"), ("upload", "fits")):
        back, found = read_upload(gzip.compress(write_table_bytes(small, fmt)), name)
        assert found == fmt and list(back["dec"]) == [3.0, 4.0], name
    # two members, as 'cat a.gz b.gz' makes
    back, _ = read_upload(gzip.compress(b"ra,dec\n1,2\n") + gzip.compress(b"3,4\n"), "t.csv.gz")
    assert list(back["ra"]) == [1, 3]
    with pytest.raises(UploadTooLarge, match="decompressed upload exceeds the limit of 1000"):
        read_upload(gzip.compress(b"ra,dec\n" + b"1,2\n" * 1000), "t.csv.gz", max_bytes=1000)
    with pytest.raises(ValueError, match="truncated"):
        read_upload(gzip.compress(b"ra,dec\n1,2\n")[:-6], "t.csv.gz")


def test_write_table_bytes_refuses_text_fits_cannot_hold_and_keeps_meta():
    """FITS text is ASCII: other text is refused naming the column (before, astropy's
    UnicodeEncodeError was a 500). The VOTable keeps the meta (INFO elements)."""
    from astro_mantis.tableio import read_table
    from astro_mantis.web.service import check_output_format

    t = Table({"name": ["ok", "Café"], "ra": [1.0, 2.0]}, meta={"z_model": "mantis-mini"})
    for check in (lambda: write_table_bytes(t, "fits"), lambda: check_output_format(t, "fits")):
        with pytest.raises(ValueError, match=r"column 'name' holds text that is not ASCII "
                                             r"\(row 1: 'Café'\).*ecsv, csv, votable or json"):
            check()
    with pytest.raises(ValueError, match="column name 'naïve' is not ASCII"):
        write_table_bytes(Table({"naïve": [1]}), "fits")
    for fmt in ("ecsv", "csv", "votable", "json"):
        check_output_format(t, fmt)
        data = write_table_bytes(t, fmt)
        assert "Café" in (json.loads(data)["rows"][1]["name"] if fmt == "json" else
                          data.decode("utf-8"))
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.xml"
        path.write_bytes(write_table_bytes(t, "votable"))
        assert read_table(path).meta["z_model"] == "mantis-mini"


def test_csv_answer_flattens_columns_of_any_dimension():
    """Before, a column of more than two dimensions was dropped from CSV without a word."""
    t = Table({"id": [1, 2], "cube": np.arange(12.0).reshape(2, 2, 3),
               "vec": np.arange(4.0).reshape(2, 2)})
    out = Table.read(write_table_bytes(t, "csv").decode(), format="ascii.csv")
    assert out.colnames == ["id", "cube_0_0", "cube_0_1", "cube_0_2", "cube_1_0", "cube_1_1",
                            "cube_1_2", "vec_0", "vec_1"]
    assert list(out["cube_1_2"]) == [5.0, 11.0]


# ------------------------------------------------------------------ the demo service
def test_healthz_openapi_and_page(api):
    from astro_mantis.models import load_model

    health = api.get("/healthz").json()
    assert health["status"] == "ok" and health["demo"] is True
    assert health["model"]["name"] == "mantis-mini"
    assert health["model"]["sha256"] == load_model("mantis-mini").meta["sha256"]
    spec = api.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/cutouts/{ra}/{dec}", "/healthz",
            "/jobs/{job_id}", "/jobs/{job_id}/result"} <= set(spec["paths"])
    request_schema = spec["components"]["schemas"]["PredictRequest"]
    assert request_schema["additionalProperties"] is False
    assert {"RA", "DEC"} <= set(request_schema["required"])
    page = api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<label for="ra">' in page.text and '<label for="dec">' in page.text
    for path in ("/static/app.js", "/static/style.css"):
        assert api.get(path).status_code == 200
    assert api.get("/docs").status_code == 404  # no page pulling scripts from a CDN


def test_predict_answers_the_reference_fields_and_ours(api, sample):
    ex = sample[0]
    r = api.post("/predict", json={"NAME": 7, "RA": ex["RA"], "DEC": ex["DEC"]})
    assert r.status_code == 200, r.text
    body = r.json()
    # the reference web app's fields
    assert body["RA"] == pytest.approx(ex["RA"]) and body["DEC"] == pytest.approx(ex["DEC"])
    assert body["CalPit"] is False and body["PDF"] is False
    cde = np.array(body["CDE"])
    assert cde.shape == (1, 400) and cde.sum() == pytest.approx(1.0, abs=1e-5)
    edges = np.array(body["bin_edges"])
    assert edges.shape == (401,) and edges[0] == 0.0 and edges[-1] == pytest.approx(1.6)
    centers = 0.5 * (edges[1:] + edges[:-1])
    assert body["photo_z"] == pytest.approx(float(np.sum(centers * cde[0])), abs=1e-4)
    # ours
    assert body["NAME"] == 7 and body["estimated"] is True
    pdf = np.array(body["pdf"])
    assert np.allclose(pdf * np.diff(edges), cde[0], atol=1e-7)
    assert body["z_mean"] == body["photo_z"]
    lo68, hi68 = body["intervals"]["68"]
    lo95, hi95 = body["intervals"]["95"]
    assert lo95 <= lo68 <= body["z_median"] <= hi68 <= hi95
    assert body["flags"] == {"value": 0, "names": [], "bits": []}  # catalog dust, 9 bands
    assert body["model"]["name"] == "mantis-mini" and len(body["model"]["sha256"]) == 64


def test_predict_matches_the_library_on_the_same_sky(api, sample, tmp_path):
    """The service's answer is add_redshift_columns' answer (same model, dust, images)."""
    from astro_mantis import add_redshift_columns, conf
    from astro_mantis.simulate import SampleSky

    sky = SampleSky()
    ex = sample[3]
    k = sky.find((ex["RA"], ex["DEC"]), radius=1.0)
    t = Table({"ra": [ex["RA"]], "dec": [ex["DEC"]]})
    with SurveyServer(sky=sky) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path)):
        add_redshift_columns(t, ebv=np.array([[sky.catalog["ebv_csfd"][k],
                                               sky.catalog["ebv_planck"][k]]]), progress=False)
    body = api.post("/predict", json={"RA": ex["RA"], "DEC": ex["DEC"]}).json()
    # both run at precision "auto": in bfloat16 (CPUs with its instructions) the two
    # processes' thread counts change the kernels' blocking, so agreement is to bfloat16's
    # precision (point estimates within 0.01 (1+z): tests/test_precision.py)
    tol = dict(rel=1e-5) if t.meta["z_prec"] == "float32" else dict(abs=0.005)
    assert body["z_mean"] == pytest.approx(float(t["z_mean"][0]), **tol)
    assert body["z_std"] == pytest.approx(float(t["z_std"][0]), **tol)
    # a probability: within the PDFs' total variation in bfloat16 (below 0.02)
    assert body["z_odds"] == pytest.approx(float(t["z_odds"][0]),
                                           **(tol if "rel" in tol else dict(abs=0.02)))
    assert body["flags"]["value"] == int(t["z_flags"][0])


def test_predict_reference_clients_and_sexagesimal(api, sample):
    ex = sample[0]
    # a reference client: requests.post(url, json=...) sends application/json
    plain = api.post("/predict", content=json.dumps({"NAME": "g", "RA": ex["RA"],
                                                    "DEC": ex["DEC"]}).encode(),
                     headers={"Content-Type": "application/json"})
    assert plain.status_code == 200, plain.text
    # without a Content-Type: refused with a clear answer (a browser sends such requests
    # cross-site without asking)
    bare = api.post("/predict", content=json.dumps({"RA": ex["RA"], "DEC": ex["DEC"]}))
    assert bare.status_code == 415 and "Content-Type: application/json" in bare.json()["error"]
    from astropy.coordinates import Angle

    ra_text = Angle(ex["RA"], "deg").to_string(unit="hourangle", sep=":", precision=4)
    dec_text = Angle(ex["DEC"], "deg").to_string(unit="deg", sep=":", precision=3,
                                                 alwayssign=True)
    sexa = api.post("/predict", json={"NAME": "g", "RA": ra_text, "DEC": dec_text}).json()
    assert sexa["RA"] == pytest.approx(ex["RA"], abs=1e-5)
    assert sexa["DEC"] == pytest.approx(ex["DEC"], abs=1e-5)
    assert sexa["photo_z"] == pytest.approx(plain.json()["photo_z"], abs=1e-3)
    assert sexa["NAME"] == "g"


def test_south_of_ps1_flagged_by_the_api_refused_for_the_page(api, sample):
    south = next(e for e in sample if e["DEC"] < -30)
    body = api.post("/predict", json={"RA": south["RA"], "DEC": south["DEC"]}).json()
    names = set(body["flags"]["names"])
    assert {"PANSTARRS_MISSING", "OUT_OF_FOOTPRINT"} <= names
    assert body["flags"]["value"] & MantisFlag.PANSTARRS_MISSING
    refused = api.post("/predict", json={"RA": south["RA"], "DEC": south["DEC"],
                                         "require_ps1": True})
    assert refused.status_code == 422
    assert "south of -30" in refused.json()["error"]


@pytest.mark.parametrize("body, status, words", [
    ({"RA": "abc", "DEC": 2.0}, 422, "RA must be"),
    ({"RA": 150.0, "DEC": 95.0}, 422, "DEC 95 deg is out of range"),
    ({"RA": 360.0, "DEC": 0.0}, 422, "RA 360 deg is out of range"),
    ({"RA": 150.0}, 422, "DEC: Field required"),
    ({"RA": 150.0, "DEC": 2.0, "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    ({"RA": True, "DEC": 2.0}, 422, "RA"),
    ({"RA": 150.0, "DEC": 2.0, "NAME": 1.5}, 422, "NAME"),
    ([150.0, 2.0], 422, "valid dictionary"),
])
def test_predict_refuses_bad_requests_clearly(api, body, status, words):
    r = api.post("/predict", json=body)
    assert r.status_code == status
    assert words in r.json()["error"]


def test_predict_refuses_bad_bodies_and_content_types(api):
    r = api.post("/predict", content=b'{"RA": NaN, "DEC": 1}',
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "finite" in r.json()["error"]
    r = api.post("/predict", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["error"]
    r = api.post("/predict", data={"RA": "150", "DEC": "2"})  # a form post
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    r = api.put("/predict", json={"RA": 1, "DEC": 1})
    assert r.status_code == 405
    # a page on another site reaching the loopback service through DNS rebinding
    assert api.get("/healthz", headers={"Host": "evil.example"}).status_code == 400


def test_predict_downloads(api, sample):
    ex = sample[0]
    q = {"RA": str(ex["RA"]), "DEC": str(ex["DEC"]), "NAME": "gal 1"}
    ref = api.post("/predict", json={"RA": ex["RA"], "DEC": ex["DEC"]}).json()
    j = api.get("/predict", params={**q, "format": "json"})
    assert j.status_code == 200 and j.json()["z_mean"] == pytest.approx(ref["z_mean"])
    assert 'filename="gal_1.json"' in j.headers["content-disposition"]
    for fmt, reader in (("ecsv", "ascii.ecsv"), ("fits", "fits"), ("votable", "votable")):
        r = api.get("/predict", params={**q, "format": fmt})
        assert r.status_code == 200, r.text
        t = Table.read(io.BytesIO(r.content), format=reader) if fmt != "ecsv" else \
            Table.read(r.text, format=reader)
        assert len(t) == 1 and t["NAME"][0] == "gal 1"
        assert float(t["z_mean"][0]) == pytest.approx(ref["z_mean"], rel=1e-5)
        assert t["z_pdf"].shape == (1, 400)
    bad = api.get("/predict", params={"RA": "1", "DEC": "-91"})
    assert bad.status_code == 422 and "out of range" in bad.json()["error"]
    assert api.get("/predict", params={**q, "format": "xlsx"}).status_code == 422


def test_cutouts_fits_per_survey_and_png(api, sample):
    ex = sample[0]
    r = api.get(f"/cutouts/{ex['RA']}/{ex['DEC']}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/fits"
    with fits.open(io.BytesIO(r.content)) as hdul:
        assert hdul[0].header["RA"] == pytest.approx(ex["RA"])
        assert len(hdul) == 1 + 9
    r = api.get(f"/cutouts/{ex['RA']}/{ex['DEC']}", params={"survey": "panstarrs"})
    with fits.open(io.BytesIO(r.content)) as hdul:
        assert [h.header["BAND"] for h in hdul[1:]] == list("grizy")
    for layout, wide in (("row", True), ("grid", False)):
        png = api.get(f"/cutouts/{ex['RA']}/{ex['DEC']}", params={"format": "png",
                                                                  "layout": layout})
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = np.frombuffer(png.content[16:24], dtype=">u4")
        assert (width > 3 * height) == wide
    for path in ("/cutouts/400/0", "/cutouts/10/-91", "/cutouts/abc/0", "/cutouts/nan/0"):
        r = api.get(path)
        assert r.status_code == 422, path
        assert r.json()["error"]
    assert api.get("/cutouts/10/0", params={"format": "bmp"}).status_code == 422


def test_batch_small_tables_answered_in_every_format(api, sample):
    ex = sample[0]
    t = Table({"id": [1, 2, 3], "RA": [ex["RA"], 400.0, ex["RA"]],
               "Dec": [ex["DEC"], 0.0, ex["DEC"]]})
    for fmt, reader in (("ecsv", "ascii.ecsv"), ("fits", "fits"), ("votable", "votable")):
        data = write_table_bytes(t, fmt)
        r = api.post("/predict/batch", files={"file": (f"mine.{'xml' if fmt == 'votable' else fmt}",
                                                       data)})
        assert r.status_code == 200, r.text
        out = Table.read(io.BytesIO(r.content), format=reader) if fmt != "ecsv" else \
            Table.read(r.text, format=reader)
        assert list(out["id"]) == [1, 2, 3]  # every row, in order, input columns kept
        flags = np.asarray(out["z_flags"])
        assert flags[1] & MantisFlag.BAD_COORDINATE and flags[1] & MantisFlag.NOT_ESTIMATED
        assert float(out["z_mean"][0]) == pytest.approx(float(out["z_mean"][2]))
        assert "z_photoz" not in out.colnames
        if fmt == "votable":  # the meta as INFO elements, which astropy's reader skips
            out = _read_votable_with_meta(r.content)
        # the model travels in the table meta (FITS: upper case)
        assert {k.lower(): v for k, v in out.meta.items()}["z_model"] == "mantis-mini", fmt
    csv = api.post("/predict/batch", files={"file": ("m.ecsv", write_table_bytes(t, "ecsv"))},
                   data={"format": "csv"})
    out = Table.read(csv.text, format="ascii.csv")
    assert "z_pdf_000" in out.colnames and "z_pdf_399" in out.colnames
    assert 'filename="m_photoz.csv"' in csv.headers["content-disposition"]
    js = api.post("/predict/batch", files={"file": ("m.csv", b"name,ra,dec\nA,10:00:24,+02:12:00"
                                                              b"\nB,xx,3\n")},
                  data={"format": "json"}).json()
    assert [r["name"] for r in js["rows"]] == ["A", "B"]
    assert js["rows"][0]["ra"] == pytest.approx(150.1) and js["rows"][0]["z_mean"] is not None
    assert "BAD_COORDINATE" in js["rows"][1]["z_flag_names"]


def _read_votable_with_meta(content):
    import tempfile
    from pathlib import Path

    from astro_mantis.tableio import read_table

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "answer.xml"
        path.write_bytes(content)
        return read_table(path)


def test_batch_large_table_becomes_a_job(api, sample):
    ex = [e for e in sample if e["DEC"] > -30]
    rows = [ex[i % len(ex)] for i in range(7)]
    t = Table({"ra": [e["RA"] for e in rows], "dec": [e["DEC"] for e in rows]})
    r = api.post("/predict/batch", files={"file": ("big.ecsv", write_table_bytes(t, "ecsv"))})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == job["status_url"] == f"/jobs/{job['job_id']}"
    assert job["n_rows"] == 7
    wait_for(lambda: api.get(job["status_url"]).json()["status"] in ("done", "failed"),
             "the job to finish")
    status = api.get(job["status_url"]).json()
    assert status["status"] == "done" and status["rows_done"] == 7, status
    out = Table.read(api.get(status["result_url"]).text, format="ascii.ecsv")
    assert len(out) == 7 and np.all(np.isfinite(np.asarray(out["z_mean"], float)))
    assert api.get(f"/jobs/{'0' * 32}").status_code == 404
    assert api.get(f"/jobs/{'0' * 32}/result").status_code == 404
    assert api.get("/jobs/not-a-job").status_code == 422


def test_job_stores_on_one_directory_answer_for_each_other(tmp_path):
    """Two processes' stores (here two objects) on one directory: each sees the other's
    job and its progress, reads its result, and forgets it once expired."""
    from astro_mantis.web.jobs import JobStore

    a, b = JobStore(tmp_path, ttl=600), JobStore(tmp_path, ttl=600)
    job = a.create(7, "ecsv", "t_photoz.ecsv")
    assert b.get(job.id).status == "queued" and b.get(job.id).n_rows == 7
    a.update(job, status="running", started=time.time(), rows_done=3)
    seen = b.get(job.id)
    assert (seen.status, seen.rows_done) == ("running", 3)
    result = tmp_path / f"{job.id}.ecsv"
    result.write_text("# a table")
    a.update(job, status="done", path=result, finished=time.time())
    seen = b.get(job.id)
    assert seen.status == "done" and seen.path.read_text() == "# a table"
    assert seen.as_dict()["result_url"] == f"/jobs/{job.id}/result"
    assert b.get("0" * 32) is None
    a.fail_unfinished("shutdown")  # a finished job is left as it is
    assert b.get(job.id).status == "done"
    b.ttl = 0.0
    time.sleep(0.01)
    assert b.get(job.id) is None and not result.exists()
    b.ttl = 600.0
    other = a.create(1, "ecsv", "x")
    a.fail_unfinished("the server shut down")
    assert b.get(other.id).status == "failed" and b.get(other.id).error == "the server shut down"


def test_two_worker_processes_both_answer_for_a_job(tmp_path):
    """'serve --workers 2': each poll may reach either process, and every one finds the
    job (before, jobs lived in the memory of the process that took the upload, and the
    polls that reached the other process answered 404)."""
    with ServerProcess(["--demo", "--workers", "2", "--rate-limit", "0", "--sync-rows",
                        "1"]) as server:
        with httpx.Client(base_url=server.url, timeout=120.0) as client:
            ex = [e for e in client.get("/examples").json() if e["DEC"] > -30]
            t = Table({"ra": [e["RA"] for e in ex[:3]], "dec": [e["DEC"] for e in ex[:3]]})
            r = client.post("/predict/batch",
                            files={"file": ("t.ecsv", write_table_bytes(t, "ecsv"))})
            assert r.status_code == 202, r.text
            url = r.json()["status_url"]
        codes, status = [], None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with httpx.Client(base_url=server.url, timeout=60.0) as fresh:  # a new connection
                answer = fresh.get(url)
            codes.append(answer.status_code)
            status = answer.json()
            if len(codes) >= 20 and status.get("status") in ("done", "failed"):
                break
            time.sleep(0.05)
        assert set(codes) == {200}, codes
        assert status["status"] == "done", status
        for _ in range(6):
            with httpx.Client(base_url=server.url, timeout=60.0) as fresh:
                out = fresh.get(status["result_url"])
            assert out.status_code == 200
            assert len(Table.read(out.text, format="ascii.ecsv")) == 3
    assert server.returncode == 0, server.text

def test_json_job_answers_its_rows(api, sample):
    """A finished JSON job: before, its result was written to <id>.json, the name of the
    job's state file, and the next state update overwrote it, so GET /jobs/{id}/result
    answered the job record without 'rows' (the page's long lists broke)."""
    ex = [e for e in sample if e["DEC"] > -30]
    rows = [ex[i % len(ex)] for i in range(7)]
    csv = "name,ra,dec\n" + "".join(f"g{i},{e['RA']},{e['DEC']}\n" for i, e in enumerate(rows))
    r = api.post("/predict/batch", files={"file": ("positions.csv", csv.encode())},
                 data={"format": "json", "input_format": "csv"})
    assert r.status_code == 202, r.text  # 7 rows > --sync-rows 5: a job, as the page gets
    url = r.json()["status_url"]
    wait_for(lambda: api.get(url).json()["status"] in ("done", "failed"), "the job to finish")
    status = api.get(url).json()
    assert status["status"] == "done", status
    assert status["status"] == api.get(url).json()["status"]  # the state is still readable
    result = api.get(status["result_url"])
    assert result.status_code == 200 and result.headers["content-type"] == "application/json"
    body = result.json()
    assert [row["name"] for row in body["rows"]] == [f"g{i}" for i in range(7)]
    assert all(row["z_mean"] is not None for row in body["rows"])
    assert body["meta"]["z_model"] == "mantis-mini"


def test_job_result_never_takes_the_state_file_name(tmp_path):
    from astro_mantis.web.jobs import JobStore

    store = JobStore(tmp_path)
    job = store.create(1, "json", "t_photoz.json")
    path = store.result_path(job.id, ".json")
    assert path.parent == tmp_path and path != store._state_path(job.id)
    path.write_text('{"rows": []}')
    store.update(job, status="done", path=path, finished=time.time())
    assert path.read_text() == '{"rows": []}'
    assert JobStore(tmp_path).get(job.id).path == path


def test_text_positions_are_read_in_their_column_unit(api, sample):
    """Text positions are read as the library reads them: in the column's unit. Before,
    '185:01:27.1' with unit deg was read as hours (and flagged out of range), and '12.5'
    with unit hourangle silently as 12.5 degrees."""
    from astropy.coordinates import Angle

    ex = sample[0]
    ra_deg = Angle(ex["RA"], "deg").to_string(unit="deg", sep=":", precision=4)
    ra_hours = f"{ex['RA'] / 15:.8f}"
    ref = api.post("/predict", json={"RA": ex["RA"], "DEC": ex["DEC"]}).json()
    for text, unit in ((ra_deg, "deg"), (ra_hours, "hourangle")):
        t = Table({"ra": [text], "dec": [str(ex["DEC"])]})
        t["ra"].unit = unit
        r = api.post("/predict/batch", files={"file": ("t.ecsv", write_table_bytes(t, "ecsv"))},
                     data={"format": "json"})
        assert r.status_code == 200, r.text
        row = r.json()["rows"][0]
        assert row["ra"] == pytest.approx(ex["RA"], abs=1e-5), (text, unit)
        assert "BAD_COORDINATE" not in row["z_flag_names"], (text, unit)
        assert row["z_mean"] == pytest.approx(ref["z_mean"], abs=1e-3)
    # a declination in hours is not read as degrees (before: '2h' was 30 degrees)
    t = Table({"ra": [str(ex["RA"])] * 2, "dec": [str(ex["DEC"]), "2h"]})
    rows = api.post("/predict/batch", files={"file": ("t.csv", write_table_bytes(t, "csv"))},
                    data={"format": "json"}).json()["rows"]
    assert "BAD_COORDINATE" not in rows[0]["z_flag_names"]
    assert "BAD_COORDINATE" in rows[1]["z_flag_names"]


def test_uploads_with_a_byte_order_mark_or_gzip_are_read(api, sample):
    import gzip

    ex = sample[0]
    text = f"ra,dec\n{ex['RA']},{ex['DEC']}\n"
    bom = api.post("/predict/batch", files={"file": ("t.csv", b"\xef\xbb\xbf" + text.encode())},
                   data={"format": "json"})
    assert bom.status_code == 200, bom.text
    assert bom.json()["columns"][:2] == ["ra", "dec"]
    for name, data in (("t.csv.gz", gzip.compress(text.encode())),
                       ("t.fits.gz", gzip.compress(write_table_bytes(
                           Table({"ra": [ex["RA"]], "dec": [ex["DEC"]]}), "fits")))):
        r = api.post("/predict/batch", files={"file": (name, data)}, data={"format": "json"})
        assert r.status_code == 200, (name, r.text)
        assert r.json()["rows"][0]["z_mean"] is not None
    # the size limit holds for what is inside (--max-upload-mb 0.25)
    bomb = gzip.compress(b"ra,dec\n" + b"1.0000,2.0000\n" * 30000)
    r = api.post("/predict/batch", files={"file": ("t.csv.gz", bomb)})
    assert r.status_code == 413 and "decompressed upload exceeds" in r.json()["error"]


def test_text_fits_cannot_hold_is_refused_before_the_work(api, sample):
    """Non-ASCII text asked for as FITS: 422 naming the column, on every path, before the
    work (before: a 500 in plain text after the work; a job failed only at its end)."""
    ex = sample[0]
    t = Table({"name": ["Café"], "ra": [ex["RA"]], "dec": [ex["DEC"]]})
    before = api.get("/healthz").json()
    for extra in ({}, {"job": "true"}):
        r = api.post("/predict/batch", files={"file": ("t.ecsv", write_table_bytes(t, "ecsv"))},
                     data={"format": "fits", **extra})
        assert r.status_code == 422, (extra, r.text)
        assert "column 'name' holds text that is not ASCII" in r.json()["error"]
    r = api.get("/predict", params={"RA": ex["RA"], "DEC": ex["DEC"], "NAME": "Café",
                                    "format": "fits"})
    assert r.status_code == 422 and "not ASCII" in r.json()["error"], r.text
    after = api.get("/healthz").json()
    assert after["jobs"]["states"] == before["jobs"]["states"]  # no job was created
    assert after["queue"]["accepted"] - before["queue"]["accepted"] == 2  # the two reads only
    # the same text in a format that holds it
    ok = api.post("/predict/batch", files={"file": ("t.ecsv", write_table_bytes(t, "ecsv"))},
                  data={"format": "votable"})
    assert ok.status_code == 200 and "Café" in ok.content.decode("utf-8")


def test_jobs_make_the_checks_of_the_direct_path_first(api, sample):
    """A table that the direct path refuses is refused on the request with job=true too
    (before, the job was created and failed later)."""
    ex = sample[0]
    has_z = Table({"ra": [ex["RA"]], "dec": [ex["DEC"]], "z_mean": [0.1]})
    unreadable = Table({"ra": ["north", "south"], "dec": ["1", "2"]})
    not_angle = Table({"ra": [ex["RA"]], "dec": [ex["DEC"]]})
    not_angle["ra"].unit = "m"
    before = api.get("/healthz").json()["jobs"]["states"]
    for t, words in ((has_z, "already has the column(s) z_mean"),
                     (unreadable, "none of its values reads as an angle"),
                     (not_angle, "not an angle")):
        for extra in ({}, {"job": "true"}):
            r = api.post("/predict/batch",
                         files={"file": ("t.ecsv", write_table_bytes(t, "ecsv"))}, data=extra)
            assert r.status_code == 422, (extra, r.text)
            assert words in r.json()["error"]
    assert api.get("/healthz").json()["jobs"]["states"] == before


def test_batch_refuses_bad_uploads_clearly(api):
    ok = write_table_bytes(Table({"ra": [1.0], "dec": [2.0]}), "csv")
    cases = [
        (dict(json={"ra": 1}), 415, "multipart/form-data"),
        (dict(files={"file": ("t.fits", b"SIMPLE  = nonsense")}), 422, "could not read"),
        (dict(files={"file": ("t.csv", b"x,y\n1,2\n")}), 422, "no 'ra' column"),
        (dict(files={"file": ("t.csv", ok)}, data={"ra_col": "alpha"}), 422,
         "column 'alpha' not found"),
        (dict(files={"file": ("t.csv", ok)}, data={"colour": "red"}), 422,
         "unknown form field(s) colour"),
        (dict(files={"file": ("t.csv", ok)}, data={"format": "xlsx"}), 422, "format"),
        (dict(data={"format": "csv"}, files={"other": ("t.csv", ok)}), 422, "file"),
        (dict(files={"file": ("t.csv", b"ra,dec\n" + b"1,2\n" * 60)}), 413, "at most 50"),
        (dict(files={"file": ("t.csv", b"ra,dec\n" + b"1.0000,2.0000\n" * 30000)}), 413,
         "exceeds the limit"),
    ]
    for kwargs, status, words in cases:
        r = api.post("/predict/batch", **kwargs)
        assert r.status_code == status, (kwargs.get("data"), r.text)
        assert words in r.json()["error"], r.json()


class _LoopbackFiles:
    """A loopback HTTP server recording the paths asked for (and answering a file)."""

    def __init__(self, body):
        import http.server

        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _secret_tables(tmp_path):
    """A CSV and a FITS file of the server's, with a column 'password'."""
    t = Table({"ra": [150.1], "dec": [2.2], "password": ["hunter2"]})
    csv_path, fits_path = tmp_path / "secret.csv", tmp_path / "secret.fits"
    csv_path.write_bytes(write_table_bytes(t, "csv"))
    fits_path.write_bytes(write_table_bytes(t, "fits"))
    return csv_path, fits_path


def test_upload_text_is_never_a_file_name_or_url(api, tmp_path):
    """A CSV or ECSV upload whose content is a path or URL: once the server read that
    file, or fetched that URL (from its own network), and answered its rows."""
    csv_path, _ = _secret_tables(tmp_path)
    with _LoopbackFiles(csv_path.read_bytes()) as files:
        for content in (str(csv_path), f"{files.url}/internal.csv", f"file://{csv_path}"):
            for name in ("x.csv", "x.ecsv"):
                r = api.post("/predict/batch", files={"file": (name, content.encode())},
                             data={"format": "json"})
                assert r.status_code == 422, (content, name, r.text)
                assert "hunter2" not in r.text and "password" not in r.text
        assert files.hits == []


_VOT_STREAM = """<?xml version="1.0"?>
<VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
 <RESOURCE><TABLE>
  <FIELD name="ra" datatype="double"/><FIELD name="dec" datatype="double"/>
  <FIELD name="password" datatype="char" arraysize="*"/>
  <DATA>{data}</DATA>
 </TABLE></RESOURCE></VOTABLE>"""


def test_votable_streams_pointing_elsewhere_are_refused(api, tmp_path):
    """A VOTable whose <STREAM href="..."> names a file or URL: once astropy's reader
    opened it on the server (a server file, or a request from the server's network)."""
    _, fits_path = _secret_tables(tmp_path)
    with _LoopbackFiles(fits_path.read_bytes()) as files:
        for href in (f"file://{fits_path}", f"{files.url}/internal.fits"):
            for data in (f'<FITS extnum="1"><STREAM href="{href}"/></FITS>',
                         f'<BINARY><STREAM href="{href}" encoding="base64"/></BINARY>',
                         f'<BINARY2><STREAM href="{href}"/></BINARY2>'):
                vot = _VOT_STREAM.format(data=data).encode()
                r = api.post("/predict/batch", files={"file": ("t.xml", vot)},
                             data={"format": "json"})
                assert r.status_code == 422, (data, r.text)
                error = r.json()["error"]
                assert "STREAM that points at data elsewhere" in error and "hunter2" not in error
        assert files.hits == []
    # an inline stream is still read
    ok = write_table_bytes(Table({"ra": [150.1], "dec": [2.2]}), "votable")
    assert read_upload(ok, "t.xml")[0]["ra"][0] == 150.1


def _vla_fits(n, k):
    """A FITS table of n rows whose variable-length column's rows all point at one heap
    block of k floats: a small file that astropy reads as n * k floats."""
    col = fits.Column(name="spectrum", format="PE()",
                      array=[np.zeros(k, np.float32)] + [np.zeros(1, np.float32)] * (n - 1))
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="ra", format="D",
                                                     array=np.full(n, 150.1)),
                                         fits.Column(name="dec", format="D",
                                                     array=np.full(n, 2.2)), col])
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    data = bytearray(buf.getvalue())
    with fits.open(io.BytesIO(bytes(data))) as hdul:
        offset, width = hdul[1]._data_offset, hdul[1].header["NAXIS1"]
    for i in range(n):  # every descriptor: (k elements, at heap offset 0)
        data[offset + i * width + 16:offset + i * width + 24] = np.array([k, 0], ">i4").tobytes()
    return bytes(data)


def test_uploads_that_would_blow_up_in_memory_are_refused(api):
    """Once a ~1 MB FITS upload whose variable-length array rows all point at one heap
    block became gigabytes in the server; so did a small VOTable declaring wide fields,
    or a CSV with one long value (every row as wide). Now: 422 naming the column, or 413
    before astropy's reader allocates the table (--max-upload-mb 0.25: 4 MiB at most)."""
    import gzip

    data = _vla_fits(5, 25_000)
    assert len(data) < 0.25 * 2 ** 20
    r = api.post("/predict/batch", files={"file": ("t.fits", data)}, data={"format": "json"})
    assert r.status_code == 422, r.text[:300]
    assert "column 'spectrum' is a variable-length array column (TFORM 'PE(25000)')" in \
        r.json()["error"]
    vla_vot = _VOT_STREAM.replace('datatype="char" arraysize="*"',
                                  'datatype="double" arraysize="*"').format(
        data="<TABLEDATA><TR><TD>150.1</TD><TD>2.2</TD><TD>1 2 3</TD></TR></TABLEDATA>")
    r = api.post("/predict/batch", files={"file": ("t.xml", vla_vot.encode())},
                 data={"format": "json"})
    assert r.status_code == 422 and "column 'password' holds arrays" in r.json()["error"]
    wide = _VOT_STREAM.replace('arraysize="*"', 'arraysize="100000"').format(
        data="<TABLEDATA>" + "<TR><TD>150.1</TD><TD>2.2</TD><TD>x</TD></TR>" * 20
             + "</TABLEDATA>")
    long_value = "ra,dec,name\n" + "150.1,2.2," + "x" * 30_000 + "\n" + "150.1,2.2,a\n" * 40
    for name, content in (("t.xml", wide.encode()), ("t.csv", long_value.encode())):
        r = api.post("/predict/batch", files={"file": (name, content)}, data={"format": "json"})
        assert r.status_code == 413, (name, r.text[:300])
        assert "in memory" in r.json()["error"] and "more than the limit of 4.0 MiB" in \
            r.json()["error"]
    # astropy would decompress a second layer (or bzip2, xz) without any limit
    twice = gzip.compress(gzip.compress(b"ra,dec\n150.1,2.2\n"))
    r = api.post("/predict/batch", files={"file": ("t.csv.gz", twice)})
    assert r.status_code == 422 and "compressed more than once" in r.json()["error"]


def test_non_latin_names_are_offered_as_download_names(api, sample):
    """A NAME or file name in another script once made every download answer 500 (the
    Content-Disposition header could not be encoded), and a job's result was never
    retrievable."""
    from urllib.parse import quote

    ex = sample[0]
    for fmt in ("json", "ecsv"):
        r = api.get("/predict", params={"RA": ex["RA"], "DEC": ex["DEC"], "NAME": "銀河1",
                                        "format": fmt})
        assert r.status_code == 200, (fmt, r.text[:200])
        disposition = r.headers["content-disposition"]
        assert f'filename="__1.{fmt}"' in disposition
        assert f"filename*=UTF-8''{quote('銀河1')}.{fmt}" in disposition
    csv = f"ra,dec\n{ex['RA']},{ex['DEC']}\n".encode()
    r = api.post("/predict/batch", files={"file": ("銀河.csv", csv)})
    assert r.status_code == 200, r.text[:200]
    assert f"filename*=UTF-8''{quote('銀河_photoz.csv')}" in r.headers["content-disposition"]
    assert 'filename="___photoz.csv"' in r.headers["content-disposition"]
    job = api.post("/predict/batch", files={"file": ("銀河.csv", csv)}, data={"job": "true"})
    assert job.status_code == 202, job.text
    url = job.json()["status_url"]
    wait_for(lambda: api.get(url).json()["status"] in ("done", "failed"), "the job to finish")
    result = api.get(url + "/result")
    assert result.status_code == 200, result.text[:200]
    assert f"filename*=UTF-8''{quote('銀河_photoz.csv')}" in result.headers["content-disposition"]
    assert Table.read(result.text, format="ascii.csv")["z_mean"][0] > 0


def test_fits_answer_of_text_positions_that_are_not_ascii(api, sample):
    """Positions written with degree signs are read as degrees, which is what the answer
    holds: FITS was once refused because the upload's text was not ASCII."""
    from astropy.coordinates import Angle

    ex = sample[0]
    dec = Angle(ex["DEC"], "deg").to_string(unit="deg", format="unicode", precision=3)
    assert "°" in dec
    csv = f"name,ra,dec\nA,{ex['RA']},{dec}\n".encode()
    r = api.post("/predict/batch", files={"file": ("t.csv", csv)}, data={"format": "fits"})
    assert r.status_code == 200, r.text[:300]
    out = Table.read(io.BytesIO(r.content), format="fits")
    assert float(out["dec"][0]) == pytest.approx(ex["DEC"], abs=1e-5)
    assert float(out["z_mean"][0]) > 0
    # non-ASCII text elsewhere is still refused for FITS
    r = api.post("/predict/batch", files={"file": ("t.csv", csv.replace(b"A", "Å".encode()))},
                 data={"format": "fits"})
    assert r.status_code == 422 and "column 'name' holds text" in r.json()["error"]


@pytest.mark.parametrize("unit", ["degree", "DEGREES"])
def test_fits_catalogue_units_are_understood(api, sample, unit):
    """TUNIT 'degree' or 'DEGREES' (which astropy's FITS reader does not recognise) once
    made the upload a 422 'has unit degree, which is not an angle'."""
    ex = sample[0]
    cols = [fits.Column(name="RA", format="D", unit=unit, array=np.array([ex["RA"]])),
            fits.Column(name="DEC", format="D", unit=unit, array=np.array([ex["DEC"]]))]
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(buf)
    r = api.post("/predict/batch", files={"file": ("cat.fits", buf.getvalue())},
                 data={"format": "json"})
    assert r.status_code == 200, r.text[:300]
    row = r.json()["rows"][0]
    assert row["RA"] == pytest.approx(ex["RA"]) and row["z_mean"] is not None
    cols[0] = fits.Column(name="RA", format="D", unit="furlongs", array=np.array([ex["RA"]]))
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(buf)
    r = api.post("/predict/batch", files={"file": ("cat.fits", buf.getvalue())})
    assert r.status_code == 422
    assert "unit 'furlongs', which is not a unit astropy recognises" in r.json()["error"]


def test_a_text_column_of_no_angles_is_refused_some_unreadable_values_are_flagged(api,
                                                                                  sample):
    """As docs/web.rst says: a position column none of whose values reads as an angle is
    not a position column (422, even for one row); where some values read, the others
    are rows flagged BAD_COORDINATE."""
    ex = sample[0]
    r = api.post("/predict/batch", files={"file": ("t.csv", f"ra,dec\nxx,{ex['DEC']}\n".encode())})
    assert r.status_code == 422 and "none of its values reads as an angle" in r.json()["error"]
    r = api.post("/predict/batch", files={"file": ("t.csv", f"ra,dec\nxx,{ex['DEC']}\n"
                                                            f"{ex['RA']},{ex['DEC']}\n".encode())},
                 data={"format": "json"})
    assert r.status_code == 200, r.text[:300]
    rows = r.json()["rows"]
    assert "BAD_COORDINATE" in rows[0]["z_flag_names"] and rows[1]["z_mean"] is not None


def test_oversized_body_without_length_is_cut_off(api):
    def chunks():
        yield b'{"RA": 1, "DEC": 2, "NAME": "'
        for _ in range(400):
            yield b"x" * 1024
        yield b'"}'
    r = api.post("/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]


# ------------------------------------------------------------------ limits (gated upstream)
def test_rate_limit_is_per_client_with_retry_after(gated):
    with fresh_client(gated.url) as a, fresh_client(gated.url) as b:
        codes = [a.get(f"/jobs/{'0' * 32}").status_code for _ in range(3)]
        assert codes == [404, 404, 404]
        refused = a.get(f"/jobs/{'0' * 32}")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"] == "Rate limit exceeded"  # the reference's words
        assert a.post("/predict", json={"RA": 1, "DEC": 1}).status_code == 429
        assert a.get("/healthz").status_code == 200  # not limited: monitoring, the page
        assert a.get("/").status_code == 200
        assert b.get(f"/jobs/{'0' * 32}").status_code == 404  # another client is not limited
        assert a.get("/healthz").json()["rate_limit"]["refused"] >= 2


def test_queue_is_bounded_and_nothing_is_lost(gated):
    upstream = gated.upstream

    def health():
        with fresh_client(gated.url) as c:
            return c.get("/healthz").json()["queue"]

    before = health()
    upstream.gate.clear()
    positions = [(f"q{i}", 20.0 + i, 10.0 + i) for i in range(4)]

    def ask(p):
        with fresh_client(gated.url) as c:
            return c.post("/predict", json={"NAME": p[0], "RA": p[1], "DEC": p[2]})

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(ask, positions[0])
        wait_for(lambda: health()["running"] == 1, "the first request to run")
        waiting = [pool.submit(ask, p) for p in positions[1:3]]
        wait_for(lambda: health()["waiting"] == 2, "two requests to wait")
        full = ask(positions[3])
        assert full.status_code == 503
        assert int(full.headers["Retry-After"]) >= 1 and "queue is full" in full.json()["error"]
        upstream.gate.set()
        answers = [f.result(120) for f in [first, *waiting]]
    assert [a.status_code for a in answers] == [200, 200, 200]
    for a, p in zip(answers, positions):
        body = a.json()
        assert (body["NAME"], body["RA"], body["DEC"]) == p  # each answer is its own request
    after = health()
    assert after["accepted"] - before["accepted"] == 3
    assert after["rejected"] - before["rejected"] == 1
    assert after["completed"] - before["completed"] == 3
    assert after["max_waiting"] <= after["capacity"] == 2


def test_graceful_shutdown_finishes_running_work_and_fails_the_rest(tmp_path):
    upstream = GatedSurveyServer()
    with upstream:
        server = ServerProcess(_gated_args(upstream, tmp_path, ["--shutdown-timeout", "1",
                                                               "--rate-limit", "0"])).start()
        try:
            with httpx.Client(base_url=server.url, timeout=120) as c:
                def health():
                    return c.get("/healthz").json()["queue"]

                upstream.gate.clear()
                with ThreadPoolExecutor(2) as pool:
                    running = pool.submit(c.post, "/predict", json={"RA": 30.0, "DEC": 5.0})
                    wait_for(lambda: health()["running"] == 1, "the first request to run")
                    queued = pool.submit(c.post, "/predict", json={"RA": 31.0, "DEC": 6.0})
                    wait_for(lambda: health()["waiting"] == 1, "the second request to wait")
                    server.signal(signal.SIGTERM)
                    failed = queued.result(120)  # fails within --shutdown-timeout
                    assert failed.status_code == 503
                    assert "shut down" in failed.json()["error"]
                    assert failed.headers["Retry-After"]
                    upstream.gate.set()
                    done = running.result(120)  # the running one still finishes
                    assert done.status_code == 200 and done.json()["estimated"] is True
            assert server.wait(120) == 0, server.text
            assert "stopped" in server.text
        finally:
            upstream.gate.set()
            server.stop()


# ------------------------------------------------------------------ property-based (OpenAPI)
def _operations(url):
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_api_never_answers_5xx(service, mode):
    """Valid (positive) and invalid (negative) requests generated from the OpenAPI
    description of the live service, a bounded number per operation: never a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error

    operations = _operations(service.url)
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /predict", "GET /predict", "POST /predict/batch", "GET /cutouts/{ra}/{dec}",
        "GET /jobs/{job_id}", "GET /healthz"}
    generation = schemathesis.GenerationMode(mode)
    calls = []
    for op in operations:
        @settings(max_examples=10, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=generation))
        def check(case):
            response = case.call(base_url=service.url, timeout=120)
            calls.append(response.status_code)
            case.validate_response(response, checks=[not_a_server_error])
        try:
            check()
        except Unsatisfiable:  # nothing to make invalid (e.g. GET /healthz has no input)
            assert mode == "negative", op.path
    assert len(calls) > 30 and max(calls) < 500
    if mode == "negative":
        assert min(calls) >= 400  # every invalid request refused, none answered 200


def test_read_upload_splits_text_at_line_breaks_only():
    """Text went to astropy as str.splitlines(), which also splits at form feeds and
    Unicode line separators inside a value: the row broke in two."""
    from astro_mantis.web.service import read_upload

    table, fmt = read_upload("ra,dec,name\r\n1,2,a\u2028b\r\n3,4,c\x0cd\n".encode(), "x.csv")
    assert fmt == "csv" and len(table) == 2
    assert list(table["name"]) == ["a\u2028b", "c\x0cd"]
