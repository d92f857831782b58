"""Load test of the web service (``astro-mantis serve``): latency, throughput, limits (issue 17).

Run from the repository root (needs the ``web`` extra)::

    python benchmarks/bench_web.py                      # 8 clients x 25 requests, L = 50 ms
    python benchmarks/bench_web.py --clients 4 --requests 10 --latency 0.02   # a quick try

No internet is used. Each server is a real ``astro-mantis serve --demo`` process
(uvicorn) on loopback; its loopback survey servers serve the bundled sample sky
(simulated galaxies) with ``--latency`` seconds added to every survey request, as a
remote host would. Clients are threads, each with its own keep-alive httpx connection
from its own loopback source address (127.0.0.N), so that each is one client for the
per-client rate limit. Every request asks ``POST /predict`` for a distinct position
(sample galaxies, shifted by a fraction of an arcsecond on each reuse, so that no
cutout is served from the cache) with a unique ``NAME``. Everything is bounded: a fixed
number of requests, each with a time limit; the script stops by itself.

(0) Baseline, in this process: `astro_mantis.add_redshift_columns` on one position at
    a time through the same kind of loopback survey server (same latency), sequential:
    what one user gets from the library. Its latency percentiles and its rate are
    printed: positions answered / the summed wall time of the timed calls (they run one
    after the other, so that is the rate one user reaches).
(a) Throughput: server A (no rate limit, ``--concurrency 2``, queue 64): ``--clients``
    concurrent clients each send ``--requests`` requests back to back. Printed: latency
    percentiles (p50, p90, p99, max) of the answers, requests/s over the phase, the
    ratio to the baseline rate, and the largest number of requests that waited at once
    (waiting requests run together as one table).
(b) Rate limit: server B (``--rate`` 1 per second, burst 2, queue 4, one worker): one
    client sends ``--rate-requests`` requests back to back. Printed: answered (200) and
    refused (429) counts, and the bound burst + rate x elapsed that the answered ones
    must not exceed.
(c) Queue bound: server B: ``--overload-clients`` clients (each its own address, so the
    rate limit does not bind) send 2 requests each, all at once. Printed: answered (200)
    and refused (503, with Retry-After) counts, and the server's largest number of
    waiting requests, which must not exceed the queue size.

In every phase the script checks that each request got exactly one answer, that every
answered request carries its own NAME and position (nothing lost, duplicated or
swapped) and that the server's counters (``GET /healthz``) agree with what the clients
saw: accepted == answered, rejected == refused. It exits with status 1 if any check
fails.
"""
import argparse
import itertools
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from _machine import cpu_model  # benchmarks/ is on the path of a script run from it

_addresses = itertools.count(10)


def client(base_url):
    import httpx

    n = next(_addresses)
    return httpx.Client(base_url=base_url, timeout=120.0, transport=httpx.HTTPTransport(
        local_address=f"127.0.{n // 250}.{n % 250 + 2}"))


def positions(sky, n, start=0):
    """n distinct (name, ra, dec): sample galaxies, shifted on each reuse by multiples of
    0.12 arcsec (at most 0.85 arcsec: still the galaxy, with its catalog dust)."""
    cat = sky.catalog
    ra, dec = np.asarray(cat["ra"], float), np.asarray(cat["dec"], float)
    out = []
    for k in range(start, start + n):
        i, cycle = k % len(cat), (k // len(cat)) % 36
        dra, ddec = (cycle % 6) * 0.12 / 3600.0, (cycle // 6) * 0.12 / 3600.0
        out.append((f"p{k}", round(float(ra[i] + dra / np.cos(np.radians(dec[i]))), 7),
                    round(float(dec[i] + ddec), 7)))
    return out


def percentiles(values):
    v = np.asarray(values, float)
    if v.size == 0:
        return "no answers"
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return (f"p50 {1000 * p50:.0f} ms, p90 {1000 * p90:.0f} ms, p99 {1000 * p99:.0f} ms, "
            f"max {1000 * v.max():.0f} ms")


def send(c, p):
    """One request; returns (position, status, seconds, body or None, retry_after)."""
    t = time.perf_counter()
    r = c.post("/predict", json={"NAME": p[0], "RA": p[1], "DEC": p[2]})
    dt = time.perf_counter() - t
    body = r.json() if r.status_code == 200 else None
    return p, r.status_code, dt, body, r.headers.get("Retry-After")


def check_answers(results, failures, what):
    """Every 200 carries its own request; no NAME answered twice."""
    seen = set()
    for p, status, _, body, _ in results:
        if status != 200:
            continue
        got = (body["NAME"], body["RA"], body["DEC"])
        if got != p:
            failures.append(f"{what}: request {p} was answered with {got}")
        if p[0] in seen:
            failures.append(f"{what}: {p[0]} answered twice")
        seen.add(p[0])
        if body["model"]["name"] != "mantis-mini" or len(body["CDE"][0]) != 400:
            failures.append(f"{what}: malformed answer for {p[0]}")


def health(url):
    with client(url) as c:
        return c.get("/healthz").json()


def counters_agree(before, after, results, failures, what):
    ok = sum(1 for r in results if r[1] == 200)
    refused_queue = sum(1 for r in results if r[1] == 503)
    qa, qb = after["queue"], before["queue"]
    if qa["accepted"] - qb["accepted"] != ok:
        failures.append(f"{what}: server accepted {qa['accepted'] - qb['accepted']}, clients "
                        f"got {ok} answers")
    if qa["rejected"] - qb["rejected"] != refused_queue:
        failures.append(f"{what}: server rejected {qa['rejected'] - qb['rejected']}, clients "
                        f"got {refused_queue} 503s")
    if qa["max_waiting"] > qa["capacity"]:
        failures.append(f"{what}: {qa['max_waiting']} requests waited, queue size "
                        f"{qa['capacity']}")
    other = [r[1] for r in results if r[1] not in (200, 429, 503)]
    if other:
        failures.append(f"{what}: unexpected statuses {sorted(set(other))}")


def baseline(sky, latency, n):
    from astropy.table import Table

    from astro_mantis import add_redshift_columns, conf
    from astro_mantis.models import load_model
    from astro_mantis.testing import SurveyServer

    net = load_model("mantis-mini")
    cat = sky.catalog
    times = []
    with SurveyServer(sky=sky, latency=latency) as srv, srv.configure(conf), \
            tempfile.TemporaryDirectory() as d, conf.set_temp("cache_dir", d):
        for name, ra, dec in positions(sky, n + 1, start=5000):
            k = sky.find((ra, dec), radius=1.0)
            ebv = np.array([[cat["ebv_csfd"][k], cat["ebv_planck"][k]]]) if k is not None \
                else np.full((1, 2), np.nan)
            t = Table({"ra": [ra], "dec": [dec]})
            t0 = time.perf_counter()
            add_redshift_columns(t, model=net, ebv=ebv, progress=False)
            times.append(time.perf_counter() - t0)
    return times[1:]  # the first call warms up


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25, help="per client in (a)")
    parser.add_argument("--latency", type=float, default=0.05,
                        help="seconds added to every survey request (default 0.05)")
    parser.add_argument("--rate", type=float, default=1.0,
                        help="server B's rate limit per client (default 1/s, burst 2)")
    parser.add_argument("--rate-requests", type=int, default=40)
    parser.add_argument("--overload-clients", type=int, default=24)
    parser.add_argument("--baseline-n", type=int, default=20)
    args = parser.parse_args(argv)

    from astro_mantis.simulate import SampleSky
    from astro_mantis.web.process import ServerProcess

    import torch

    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"python {platform.python_version()}")
    print(f"survey latency L = {1000 * args.latency:.0f} ms per request; galaxies are the "
          "bundled sample sky (SIMULATED)")
    sky = SampleSky()
    failures = []

    base = baseline(sky, args.latency, args.baseline_n)
    # the calls run one after the other: answers / the time they took is the rate
    base_rate = len(base) / sum(base)
    print(f"(0) baseline, library in process, one position at a time: {percentiles(base)}; "
          f"{len(base)} positions in {sum(base):.1f} s = {base_rate:.1f} positions/s")

    lat = ["--demo-latency", str(args.latency)]
    burst = max(1, int(round(2 * args.rate)))
    with ServerProcess(["--demo", *lat, "--rate-limit", "0", "--concurrency", "2",
                        "--queue-size", "64"]) as server:
        todo = positions(sky, args.clients * args.requests)
        # warm-up: the first request of a fresh server loads what is loaded lazily
        with client(server.url) as c:
            send(c, ("warm-up", 10.0, 10.0))
        before = health(server.url)
        results = []
        lock = threading.Lock()

        def run_client(k):
            mine = todo[k::args.clients]
            with client(server.url) as c:
                for p in mine:
                    res = send(c, p)
                    with lock:
                        results.append(res)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(run_client, range(args.clients)))
        wall = time.perf_counter() - t0
        after = health(server.url)
    ok = [r for r in results if r[1] == 200]
    if len(results) != len(todo):
        failures.append(f"(a): {len(todo)} requests sent, {len(results)} answered")
    check_answers(results, failures, "(a)")
    counters_agree(before, after, results, failures, "(a)")
    rate = len(ok) / wall
    calls = after["queue"]["completed"] - before["queue"]["completed"]
    print(f"(a) throughput, {args.clients} clients x {args.requests} requests: "
          f"{len(ok)}/{len(results)} answered 200 in {wall:.1f} s = {rate:.1f} requests/s "
          f"({rate / base_rate:.2f} x the baseline rate); latency "
          f"{percentiles([r[2] for r in ok])}")
    print(f"    server: accepted {after['queue']['accepted'] - before['queue']['accepted']}, "
          f"{calls} positions completed, largest queue {after['queue']['max_waiting']} "
          f"of {after['queue']['capacity']}")

    with ServerProcess(["--demo", *lat, "--rate-limit", str(args.rate), "--rate-burst",
                        str(burst), "--concurrency", "1", "--queue-size", "4"]) \
            as server:
        with client(server.url) as c:
            send(c, ("warm-up", 10.0, 10.0))
        # (b) one client, faster than the rate
        before = health(server.url)
        todo = positions(sky, args.rate_requests, start=10000)
        results = []
        with client(server.url) as c:
            t0 = time.perf_counter()
            for p in todo:
                results.append(send(c, p))
            elapsed = time.perf_counter() - t0
        after = health(server.url)
        ok = sum(1 for r in results if r[1] == 200)
        limited = sum(1 for r in results if r[1] == 429)
        bound = burst + args.rate * elapsed
        check_answers(results, failures, "(b)")
        counters_agree(before, after, results, failures, "(b)")
        if ok > bound + 1:
            failures.append(f"(b): {ok} answered, more than burst + rate x time = {bound:.1f}")
        if limited == 0:
            failures.append("(b): the client was never limited")
        print(f"(b) rate limit {args.rate:g}/s, burst {burst}: one client sent "
              f"{len(results)} requests in {elapsed:.1f} s: {ok} answered, {limited} refused "
              f"429 (bound: burst + rate x time = {bound:.1f})")

        # (c) many clients at once against a queue of 4
        before = health(server.url)
        todo = positions(sky, 2 * args.overload_clients, start=20000)
        results = []
        lock = threading.Lock()
        start = threading.Barrier(args.overload_clients)

        def overload(k):
            with client(server.url) as c:
                start.wait(60)
                for p in todo[2 * k:2 * k + 2]:
                    res = send(c, p)
                    with lock:
                        results.append(res)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.overload_clients) as pool:
            list(pool.map(overload, range(args.overload_clients)))
        wall = time.perf_counter() - t0
        after = health(server.url)
    ok = [r for r in results if r[1] == 200]
    busy = [r for r in results if r[1] == 503]
    if len(results) != len(todo):
        failures.append(f"(c): {len(todo)} requests sent, {len(results)} answered")
    if any(r[4] is None for r in busy):
        failures.append("(c): a 503 without Retry-After")
    check_answers(results, failures, "(c)")
    counters_agree(before, after, results, failures, "(c)")
    print(f"(c) queue bound 4, one worker: {args.overload_clients} clients x 2 requests at "
          f"once: {len(ok)} answered, {len(busy)} refused 503 (Retry-After "
          f"{sorted({int(r[4]) for r in busy}) if busy else '-'} s), other "
          f"{len(results) - len(ok) - len(busy)}; largest queue "
          f"{after['queue']['max_waiting']} of {after['queue']['capacity']}; {wall:.1f} s; "
          f"latency of the answered {percentiles([r[2] for r in ok])}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("all checks passed: one answer per request, every answer its own request, "
          "server counters = client counts, rate and queue bounds held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
