"""Load benchmark: ETpay notifications through gunicorn on a real PostgreSQL.

    .venv/bin/python benchmarks/notification_load.py [--workers 2] [--sessions 400]
        [--repeats 3] [--concurrency 32] [--garbage 2000]

Starts a throw-away PostgreSQL server (``tests/postgres.py``), migrates it, creates
``--sessions`` pending sessions, starts gunicorn on 127.0.0.1 and, from ``--concurrency``
client threads:

1. delivers every session's success JWT ``--repeats`` times, shuffled, so first deliveries and
   duplicates race each other across workers;
2. posts ``--garbage`` bodies that are not JWTs.

It prints throughput and latency percentiles for each phase, then checks the database: every
session ``paid``, exactly one ``accepted`` notification per session and the rest ``duplicate``.
Exits non-zero when a check fails. All traffic stays on the loopback interface; the request
count is bounded by the arguments.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit(f"gunicorn did not start at {url}")


def _fire(
    url: str, bodies: list[bytes], concurrency: int
) -> tuple[float, list[float], Counter[int]]:
    """POST every body; return (elapsed seconds, latencies in ms, status counts)."""
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    chunks = [bodies[i::concurrency] for i in range(concurrency)]

    def worker(chunk: list[bytes]) -> list[tuple[float, int]]:
        results = []
        with requests.Session() as http:
            for body in chunk:
                started = time.perf_counter()
                response = http.post(
                    url, data=body, headers={"Content-Type": "application/json"}, timeout=30
                )
                results.append(((time.perf_counter() - started) * 1000, response.status_code))
        return results

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for results in pool.map(worker, chunks):
            for latency, code in results:
                latencies.append(latency)
                codes[code] += 1
    return time.perf_counter() - started, latencies, codes


def _report(name: str, elapsed: float, latencies: list[float], codes: Counter[int]) -> None:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{name}: {len(latencies)} requests in {elapsed:.2f} s = {len(latencies) / elapsed:.0f}/s;"
        f" p50 {statistics.median(ordered):.1f} ms, p99 {p99:.1f} ms, max {ordered[-1]:.1f} ms;"
        f" status codes {dict(sorted(codes.items()))}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--garbage", type=int, default=2000)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    os.environ.pop("ETPAY_TEST_DB", None)
    from tests.postgres import database_settings

    db = database_settings()  # starts the server; gunicorn's workers reuse it via the env
    os.environ["ETPAY_TEST_PGHOST"] = db["HOST"]
    os.environ["ETPAY_TEST_PGPORT"] = db["PORT"]

    import django

    django.setup()
    from django.core.management import call_command

    from django_etpay.models import Notification, PaymentSession
    from tests.factories import make_session, mint_jwt

    call_command("migrate", verbosity=0)
    sessions = [make_session() for _ in range(args.sessions)]
    jwts = [mint_jwt(session) for session in sessions]
    deliveries = [f'{{"payment": "{token}"}}'.encode() for token in jwts] * args.repeats
    random.Random(1).shuffle(deliveries)
    garbage = [b'{"payment": "not-a-jwt"}'] * args.garbage

    port = _free_port()
    gunicorn = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(args.workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "benchmarks.wsgi:application",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/etpay/return/", time.monotonic() + 30)
        url = f"{base}/etpay/notification/"
        print(
            f"gunicorn {args.workers} workers, PostgreSQL, {args.concurrency} client threads,"
            f" {os.cpu_count()} cores"
        )
        _report("valid + duplicates", *_fire(url, deliveries, args.concurrency))
        _report("garbage", *_fire(url, garbage, args.concurrency))
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=30)

    statuses = Counter(PaymentSession.objects.values_list("status", flat=True))
    outcomes: Counter[Any] = Counter(
        Notification.objects.filter(session__isnull=False).values_list("outcome", flat=True)
    )
    print(f"sessions by status: {dict(statuses)}; notifications by outcome: {dict(outcomes)}")
    ok = (
        statuses == Counter({"paid": args.sessions})
        and outcomes["accepted"] == args.sessions
        and outcomes["duplicate"] == args.sessions * (args.repeats - 1)
    )
    print("checks:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
