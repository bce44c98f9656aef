"""The notification view against its floor, under gunicorn on PostgreSQL, in one run.

Each round creates ``sessions`` pending sessions and a mix of deliveries: every session's
success JWT ``repeats`` times (ETpay's retries, the payer's browser), shuffled within windows
of ``WINDOW`` sessions, so that first deliveries and repeats race each other across workers and
every stretch of the mix has the same share of first deliveries (one in ``repeats``). The same
mix is sent for ``duration`` seconds to the floor view (:mod:`benchmarks.floor`) and to the
app's notification view, one after the other, in the same gunicorn; the order alternates
between rounds so that neither always runs on the larger table. Load comes from wrk when it is
installed (``apt-get install wrk``), else from a Python load generator in this process.

After each app run the database is checked: no session accepted twice, every session with an
accepted result paid, nothing but ``accepted`` and ``duplicate`` recorded.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.subprocesses import free_port

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).with_name("notification.lua")

APP_PATH = "/etpay/notification/"
FLOOR_PATH = "/floor/notification/"

#: Sessions whose deliveries are shuffled together.
WINDOW = 50


@dataclass
class Load:
    """Requests served in some seconds, with their latency histogram (microseconds -> count)."""

    requests: int = 0
    seconds: float = 0.0
    histogram: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    #: Times the load generator ran out of the mix and started it again (all repeats then).
    wraps: int = 0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, percent: float) -> float:
        total = sum(self.histogram.values())
        rank = total * percent / 100
        seen = 0
        for value in sorted(self.histogram):
            seen += self.histogram[value]
            if seen >= rank:
                return value / 1000
        return 0.0

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    def add(self, other: Load) -> None:
        self.requests += other.requests
        self.seconds += other.seconds
        self.histogram.update(other.histogram)
        self.errors += other.errors
        self.wraps += other.wraps


class Gunicorn:
    """gunicorn serving ``benchmarks.wsgi``; ``wrapper`` prefixes its command (a profiler)."""

    def __init__(self, workers: int, wrapper: list[str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.wrapped = bool(wrapper)
        self.process = subprocess.Popen(
            [
                *(wrapper or []),
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                str(workers),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
                "benchmarks.wsgi:application",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            self._wait_until_ready(time.monotonic() + 120)
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self, deadline: float) -> None:
        while True:
            try:
                requests.get(f"{self.base}/etpay/return/", timeout=10)
                return
            except requests.RequestException:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("gunicorn did not start") from None
                time.sleep(0.2)

    def _master_pid(self) -> int | None:
        if not self.wrapped:
            return self.process.pid
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        found = children.read_text().split() if children.exists() else []
        return int(found[0]) if found else None

    def stop(self) -> None:
        if self.process.poll() is None:
            master = self._master_pid()
            if master is not None:
                os.kill(master, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def make_mix(sessions: int, repeats: int, seed: int) -> tuple[list[Any], list[bytes]]:
    """``sessions`` new pending sessions and their deliveries, ``repeats`` each, shuffled
    within windows of :data:`WINDOW` sessions."""
    from django_etpay.models import PaymentSession
    from tests.factories import mint_jwt

    run = secrets.token_hex(4)
    rows = [
        PaymentSession(
            merchant="",
            environment="sandbox",
            merchant_order_id=f"B{run}-{n}",
            order_amount=50000,
            currency="CLP",
            customer_email="payer@example.com",
            token=f"sess-{run}-{n}-{secrets.token_hex(12)}",
            signature_token=f"sig-{secrets.token_hex(32)}",
            status=PaymentSession.Status.PENDING,
        )
        for n in range(sessions)
    ]
    created = PaymentSession.objects.bulk_create(rows)
    shuffler = random.Random(seed)
    bodies: list[bytes] = []
    for start in range(0, len(created), WINDOW):
        window = [
            json.dumps({"payment": mint_jwt(s)}).encode() for s in created[start : start + WINDOW]
        ] * repeats
        shuffler.shuffle(window)
        bodies.extend(window)
    return created, bodies


def check_app_run(created: list[Any]) -> str:
    """Exactly-once outcome of one app run; returns a problem description or ''."""
    from django.db import connection, transaction

    from benchmarks.floor import FLOOR_DETAIL
    from django_etpay.models import Notification, PaymentSession

    ids = [s.pk for s in created]
    # One snapshot for every query: the workers may still be finishing the last requests.
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        statuses = Counter(
            PaymentSession.objects.filter(pk__in=ids).values_list("status", flat=True)
        )
        app_rows = Notification.objects.filter(session_id__in=ids).exclude(detail=FLOOR_DETAIL)
        outcomes = Counter(app_rows.values_list("outcome", flat=True))
        accepted_per_session = Counter(
            app_rows.filter(outcome="accepted").values_list("session_id", flat=True)
        )
    problems = []
    if any(count > 1 for count in accepted_per_session.values()):
        problems.append("a session was accepted twice")
    if statuses.get("paid", 0) != len(accepted_per_session):
        problems.append(f"paid sessions {statuses} != accepted {len(accepted_per_session)}")
    if set(outcomes) - {"accepted", "duplicate"}:
        problems.append(f"unexpected outcomes {dict(outcomes)}")
    return "; ".join(problems)


def wrk_load(
    url: str, bodies_file: Path, *, connections: int, threads: int, duration: int
) -> Load:
    wrk = shutil.which("wrk")
    assert wrk is not None
    completed = subprocess.run(
        [
            wrk, "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
            "--timeout", "30s", "-s", str(LUA), url, "--", str(bodies_file), str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    lines = completed.stdout.strip().splitlines()
    summary = next(json.loads(line) for line in lines if line.startswith("{"))
    histogram: Counter[int] = Counter()
    for line in lines:
        if line.startswith("H "):
            _, value, count = line.split()
            histogram[int(value)] += int(count)
    errors = sum(
        summary[key]
        for key in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return Load(
        requests=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        histogram=histogram,
        errors=errors,
        wraps=summary["wraps"],
    )


def python_load(url: str, bodies: list[bytes], *, connections: int, duration: int) -> Load:
    """The fallback load generator: ``connections`` threads, each with its own slice."""
    chunks = [bodies[i::connections] for i in range(connections)]
    stop_at = time.perf_counter() + duration

    def worker(chunk: list[bytes]) -> tuple[list[tuple[float, int]], int]:
        results = []
        wraps = 0
        with requests.Session() as http:
            position = 0
            while time.perf_counter() < stop_at:
                if position == len(chunk):
                    position, wraps = 0, wraps + 1
                started = time.perf_counter()
                response = http.post(
                    url,
                    data=chunk[position],
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
                results.append(((time.perf_counter() - started) * 1000, response.status_code))
                position += 1
        return results, wraps

    histogram: Counter[int] = Counter()
    errors = wraps = requests_done = 0
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=connections) as pool:
        for results, wrapped in pool.map(worker, chunks):
            wraps += wrapped
            for latency, code in results:
                histogram[int(latency * 1000)] += 1
                requests_done += 1
                errors += code != 200
    return Load(
        requests=requests_done,
        seconds=time.perf_counter() - started,
        histogram=histogram,
        errors=errors,
        wraps=wraps,
    )


@dataclass
class Results:
    rounds: list[dict[str, Load]]
    generator: str
    sessions: int
    repeats: int
    connections: int


def run(
    *,
    rounds: int,
    sessions: int,
    repeats: int,
    connections: int,
    workers: int,
    duration: int,
    slices: int,
    use_wrk: bool,
    log: Callable[[str], None],
) -> Results:
    """``rounds`` rounds of ``duration`` seconds per endpoint, each in ``slices`` turns."""
    slice_seconds = max(1, round(duration / slices))
    generator = "wrk" if use_wrk and shutil.which("wrk") else "python"
    wrk_threads = max(1, min(2, os.cpu_count() or 1))
    gunicorn = Gunicorn(workers)
    measured: list[dict[str, Load]] = []
    workdir = Path(tempfile.mkdtemp(prefix="etpay-bench-"))
    try:

        def load(path: str, bodies: list[bytes], bodies_file: Path, seconds: int) -> Load:
            url = f"{gunicorn.base}{path}"
            if generator == "wrk":
                return wrk_load(
                    url,
                    bodies_file,
                    connections=connections,
                    threads=wrk_threads,
                    duration=seconds,
                )
            return python_load(url, bodies, connections=connections, duration=seconds)

        def write(bodies: list[bytes], name: str) -> Path:
            path = workdir / name
            path.write_bytes(b"\n".join(bodies) + b"\n")
            return path

        # Warm up both endpoints (imports, database connections of every worker).
        _, warm = make_mix(max(WINDOW, sessions // 10), repeats, seed=0)
        warm_file = write(warm, "warm.txt")
        load(FLOOR_PATH, warm, warm_file, 2)
        load(APP_PATH, warm, warm_file, 2)

        for number in range(1, rounds + 1):
            # Floor and app take turns in slices of the round, in alternating order, so that
            # a burst of load from elsewhere on the machine lands on both alike. Each slice
            # has a fresh part of the mix: new sessions for the app's first deliveries.
            result = {"floor": Load(), "app": Load()}
            created: list[Any] = []
            for part in range(slices):
                part_sessions, bodies = make_mix(
                    max(WINDOW, sessions // slices), repeats, seed=number * 1000 + part
                )
                created.extend(part_sessions)
                bodies_file = write(bodies, f"round-{number}-{part}.txt")
                order = ("floor", "app") if (number + part) % 2 else ("app", "floor")
                for name in order:
                    path = APP_PATH if name == "app" else FLOOR_PATH
                    result[name].add(load(path, bodies, bodies_file, slice_seconds))
                bodies_file.unlink()
            problem = check_app_run(created)
            if problem:
                raise SystemExit(f"round {number}: exactly-once check failed: {problem}")
            for name, outcome in result.items():
                if outcome.errors:
                    raise SystemExit(f"round {number}: {name} had {outcome.errors} errors")
                # Only the app's work depends on the mix (the floor does the same for any body).
                if outcome.wraps and name == "app":
                    log(
                        f"round {number}: {name} ran out of the mix {outcome.wraps} times:"
                        " raise --sessions so that repeats keep their share"
                    )
            measured.append(result)
            log(format_round(number, result))
    finally:
        gunicorn.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return Results(measured, generator, sessions, repeats, connections)


def format_round(number: int, result: dict[str, Load]) -> str:
    floor, app = result["floor"], result["app"]
    return (
        f"round {number}: floor {floor.rate:6.0f}/s p50 {floor.p50_ms:5.1f} ms p99"
        f" {floor.p99_ms:6.1f} ms | app {app.rate:6.0f}/s p50 {app.p50_ms:5.1f} ms p99"
        f" {app.p99_ms:6.1f} ms | app/floor {app.rate / floor.rate:.2f},"
        f" p99 app/floor {app.p99_ms / floor.p99_ms:.2f}"
    )


def summary_rows(results: Results) -> list[dict[str, Any]]:
    throughput = [r["app"].rate / r["floor"].rate for r in results.rounds]
    p99 = [r["app"].p99_ms / r["floor"].p99_ms for r in results.rounds]
    return [
        {
            "figure": "notification view / floor (requests/s)",
            "rounds": throughput,
            "median": statistics.median(throughput),
            # A guard, not a target: the pipeline uses public Django APIs only (a row lock in a
            # transaction, then save()); hand-built SQL bought speed at the cost of deployments.
            "goal": 0.5,
            "higher_is_better": True,
        },
        {
            "figure": "notification view p99 / floor p99",
            "rounds": p99,
            "median": statistics.median(p99),
            "goal": 2.0,
            "higher_is_better": False,
        },
    ]


# -- where the time goes: py-spy on the workers ---------------------------------------------------


def profile(
    *,
    sessions: int,
    repeats: int,
    connections: int,
    workers: int,
    duration: int,
    directory: Path,
    log: Callable[[str], None],
) -> None:
    """Serve one mix to the app and to the floor, each from a gunicorn run under py-spy.

    Not part of the measured rounds (the sampler costs a little): it writes py-spy's raw
    (collapsed) stacks per endpoint into ``directory`` and logs a summary of each.
    """
    from benchmarks import profiles

    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        log("py-spy is not installed (pip install py-spy): no worker profile")
        return
    directory.mkdir(parents=True, exist_ok=True)
    from django_etpay.services import process_notification

    _, (delivery, *_) = make_mix(1, 1, seed=98)
    jwt = json.loads(delivery)["payment"]
    log("-- notification statements (process_notification, in process) --")
    for label in ("first delivery", "repeat"):
        counted = profiles.statements(lambda: process_notification(jwt, channel="webhook"))
        log(f"{label}: {counted}")
    wrk_threads = max(1, min(2, os.cpu_count() or 1))
    _, bodies = make_mix(sessions, repeats, seed=99)
    bodies_file = directory / "profile-bodies.txt"
    bodies_file.write_bytes(b"\n".join(bodies) + b"\n")
    try:
        for name, path in (("app", APP_PATH), ("floor", FLOOR_PATH)):
            output = directory / f"notification-{name}.txt"
            wrapper = [
                py_spy, "record", "--subprocesses", "--idle", "--format", "raw",
                "--rate", "200", "--nonblocking", "--output", str(output), "--",
            ]  # fmt: skip
            gunicorn = Gunicorn(workers, wrapper=wrapper)
            try:
                url = f"{gunicorn.base}{path}"
                if shutil.which("wrk"):
                    wrk_load(
                        url,
                        bodies_file,
                        connections=connections,
                        threads=wrk_threads,
                        duration=duration,
                    )
                else:
                    python_load(url, bodies, connections=connections, duration=duration)
            finally:
                gunicorn.stop()
            log(f"-- notification {name} (py-spy, workers) --")
            log(profiles.summarize_collapsed(output.read_text(), focus=path))
    finally:
        bodies_file.unlink(missing_ok=True)
