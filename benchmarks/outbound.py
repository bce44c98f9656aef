"""Calls to ETpay: ``initialize_session`` and the client, each against its floor, in one run.

Four ways to create a session with ETpay, run against the same loopback TLS server
(:mod:`benchmarks.etpay_server`) in interleaved rounds, sequentially and from several threads:

``sdk``
    ETpay's SDK pattern: one ``requests.post`` per call (a new TCP and TLS connection each
    time), no database.
``client``
    ``django_etpay.client.get_client().initialize_session(...)``: the shared client alone,
    no database.
``floor``
    What ``initialize_session`` cannot do without: the same two row writes (INSERT the
    ``initializing`` row, UPDATE it with ETpay's tokens) around one POST on a persistent
    ``requests.Session``, with the ORM.
``app``
    ``django_etpay.services.initialize_session(...)`` with the same fields.

Every variant sends the same fields and trusts the server through the same CA bundle;
certificate verification is on everywhere. The server counts the connections it accepts, so
each run also reports how many TCP+TLS handshakes each call paid.
"""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from benchmarks.tls import Certificates

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = ("sdk", "client", "floor", "app")

#: The optional fields a shop typically sends (explicit URLs, so that no request is needed).
OPTIONAL: dict[str, Any] = {
    "customer_email": "payer@example.cl",
    "payment_completed_url": "https://shop.example/etpay/return/",
    "payment_cancellation_url": "https://shop.example/etpay/return/",
    "payment_webhook_url": "https://shop.example/etpay/notification/",
}
AMOUNT = 6990
TIMEOUT = (5.0, 30.0)

#: Calls per turn of a variant: sequentially, and per thread with several threads.
SEQUENTIAL_BATCH = 20
THREAD_BATCH = 5

#: (variant, threads) pairs compared, as (numerator, denominator, goal).
COMPARISONS = (
    ("app", "floor", 0.8),
    ("app", "sdk", None),
    ("client", "sdk", 2.0),
)


class EtpayServer:
    """The loopback TLS server process, with its connection and request counters."""

    def __init__(self, certificates: Certificates) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.etpay_server",
                "--cert",
                str(certificates.cert),
                "--key",
                str(certificates.key),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdin is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the benchmark's ETpay server did not start")
        self.port: int = json.loads(line)["port"]
        self.url = f"https://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        stats: dict[str, Any] = json.loads(self.process.stdout.readline())
        return stats

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclass
class Run:
    variant: str
    threads: int
    calls: int
    seconds: float
    handshakes: int

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


@dataclass
class Results:
    rounds: list[dict[tuple[str, int], Run]] = field(default_factory=list)
    tls: str = ""


def _callers(server: EtpayServer, ca_bundle: str) -> dict[str, Callable[[str], Any]]:
    from django_etpay import conf
    from django_etpay.client import get_client
    from django_etpay.models import PaymentSession
    from django_etpay.services import initialize_session

    url = f"{server.url}/session/initialize"
    merchant = conf.get_merchant()
    persistent = requests.Session()

    def body(order: str) -> dict[str, Any]:
        return {
            "merchant_code": merchant.merchant_code,
            "merchant_api_token": merchant.merchant_api_token,
            "merchant_order_id": order,
            "order_amount": AMOUNT,
            **OPTIONAL,
        }

    def sdk(order: str) -> Any:
        response = requests.post(url, json=body(order), timeout=TIMEOUT, verify=ca_bundle)
        response.raise_for_status()
        return response.json()

    def client(order: str) -> Any:
        return get_client().initialize_session(
            merchant_order_id=order, order_amount=AMOUNT, **OPTIONAL
        )

    def floor(order: str) -> Any:
        row = PaymentSession.objects.create(
            merchant="",
            environment=merchant.environment,
            merchant_order_id=order,
            order_amount=AMOUNT,
            currency="CLP",
            customer_email=OPTIONAL["customer_email"],
            metadata=[],
            payment_completed_url=OPTIONAL["payment_completed_url"],
            payment_cancellation_url=OPTIONAL["payment_cancellation_url"],
            payment_webhook_url=OPTIONAL["payment_webhook_url"],
            status=PaymentSession.Status.INITIALIZING,
        )
        # verify per call: requests lets REQUESTS_CA_BUNDLE override a Session's own verify.
        response = persistent.post(url, json=body(order), timeout=TIMEOUT, verify=ca_bundle)
        response.raise_for_status()
        reply = response.json()
        row.token = reply["token"]
        row.signature_token = reply["signature_token"]
        row.terms_url = reply.get("terms_url", "")
        row.status = PaymentSession.Status.PENDING
        row.save(update_fields=["token", "signature_token", "terms_url", "status", "updated_at"])
        return row

    def app(order: str) -> Any:
        return initialize_session(order, AMOUNT, **OPTIONAL)

    return {"sdk": sdk, "client": client, "floor": floor, "app": app}


def _measure(
    call: Callable[[str], Any],
    name: str,
    calls: int,
    threads: int,
    pool: ThreadPoolExecutor | None,
    orders: itertools.count[int],
) -> float:
    """Seconds to make ``calls`` calls from ``threads`` threads."""
    if threads == 1 or pool is None:
        names = [f"{name}-{next(orders)}" for _ in range(calls)]
        started = time.perf_counter()
        for order in names:
            call(order)
        return time.perf_counter() - started
    per_thread = calls // threads
    batches = [[f"{name}-{next(orders)}" for _ in range(per_thread)] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def work(batch: list[str]) -> None:
        barrier.wait()
        for order in batch:
            call(order)

    futures = [pool.submit(work, batch) for batch in batches]
    barrier.wait()
    started = time.perf_counter()
    for future in futures:
        future.result()
    return time.perf_counter() - started


def run(
    certificates: Certificates,
    *,
    rounds: int,
    calls: int,
    threads: int,
    log: Callable[[str], None],
) -> Results:
    """Run every variant, sequentially and with ``threads`` threads, ``rounds`` times."""
    from django.conf import settings
    from django.db import connections
    from django.test.utils import override_settings

    server = EtpayServer(certificates)
    results = Results()
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench")
    orders = itertools.count(1)
    # The library's defaults for timeouts and retries, pointed at the loopback server, which
    # is trusted through its CA bundle.
    etpay = {
        key: value
        for key, value in settings.ETPAY.items()
        if key not in ("TIMEOUT", "TOTAL_TIMEOUT", "CONNECT_RETRIES")
    }
    etpay.update(API_URL=server.url, CA_BUNDLE=str(certificates.ca))
    overridden = override_settings(ETPAY=etpay)
    overridden.enable()
    try:
        callers = _callers(server, str(certificates.ca))
        # Warm up: database connections of every thread, imports, the shared client.
        for name in VARIANTS:
            _measure(callers[name], f"warm-{name}", threads * 4, threads, pool, orders)
            _measure(callers[name], f"warm-{name}", 10, 1, None, orders)
        for round_number in range(1, rounds + 1):
            measured: dict[tuple[str, int], Run] = {}
            for thread_count in (1, threads):
                # Variants take turns in small batches, in an order that rotates, so that a
                # burst of load from elsewhere on the machine lands on all of them alike.
                batch = SEQUENTIAL_BATCH if thread_count == 1 else thread_count * THREAD_BATCH
                totals = {name: Run(name, thread_count, 0, 0.0, 0) for name in VARIANTS}
                for batch_number in range(max(1, calls // batch)):
                    shift = (batch_number + round_number) % len(VARIANTS)
                    for name in VARIANTS[shift:] + VARIANTS[:shift]:
                        before = server.stats()
                        seconds = _measure(callers[name], name, batch, thread_count, pool, orders)
                        after = server.stats()
                        if after["requests"] - before["requests"] != batch:
                            raise SystemExit(
                                f"{name}: the server answered another number of calls"
                            )
                        totals[name].calls += batch
                        totals[name].seconds += seconds
                        totals[name].handshakes += after["connections"] - before["connections"]
                        results.tls = after["tls"]
                for name, total in totals.items():
                    measured[(name, thread_count)] = total
            results.rounds.append(measured)
            log(format_round(round_number, measured, threads))
    finally:
        closing = threading.Barrier(threads)

        def close_connections() -> None:
            closing.wait(timeout=30)  # one call per pool thread: each closes its own
            connections.close_all()

        for _ in range(threads):
            pool.submit(close_connections)
        pool.shutdown(wait=True)
        overridden.disable()
        server.stop()
    return results


def format_round(number: int, measured: dict[tuple[str, int], Run], threads: int) -> str:
    lines = [f"round {number}:"]
    for thread_count in (1, threads):
        runs = [measured[(name, thread_count)] for name in VARIANTS]
        rates = "  ".join(
            f"{run.variant} {run.rate:6.0f}/s ({run.handshakes / run.calls:.3f} handshakes/call)"
            for run in runs
        )
        ratios = "  ".join(
            f"{a}/{b} {measured[(a, thread_count)].rate / measured[(b, thread_count)].rate:.2f}"
            for a, b, _ in COMPARISONS
        )
        label = "sequential" if thread_count == 1 else f"{thread_count} threads"
        lines.append(f"  {label:<11} {rates}\n  {'':<11} {ratios}")
    return "\n".join(lines)


def summary_rows(results: Results, threads: int) -> list[dict[str, Any]]:
    """One row per comparison and thread count: each round's ratio and the median."""
    rows = []
    for a, b, goal in COMPARISONS:
        for thread_count in (1, threads):
            ratios = [
                measured[(a, thread_count)].rate / measured[(b, thread_count)].rate
                for measured in results.rounds
            ]
            rows.append(
                {
                    "figure": f"{_label(a)} / {_label(b)}",
                    "threads": thread_count,
                    "rounds": ratios,
                    "median": statistics.median(ratios),
                    "goal": goal,
                    "rates": [
                        (
                            measured[(a, thread_count)].rate,
                            measured[(b, thread_count)].rate,
                        )
                        for measured in results.rounds
                    ],
                }
            )
    return rows


def handshakes_per_call(results: Results, threads: int) -> dict[tuple[str, int], float]:
    totals: dict[tuple[str, int], float] = {}
    for key in results.rounds[0]:
        runs = [measured[key] for measured in results.rounds]
        totals[key] = sum(r.handshakes for r in runs) / sum(r.calls for r in runs)
    return totals


def _label(name: str) -> str:
    return {
        "sdk": "SDK pattern",
        "client": "client alone",
        "floor": "floor",
        "app": "initialize_session",
    }[name]


def round_trip_savings(results: Results, threads: int, rtt_ms: float = 50.0) -> list[str]:
    """What reuse saves at ``rtt_ms`` of round trip, from the handshakes counted per call.

    A new connection costs one round trip for TCP and one for a TLS 1.3 handshake (two for
    TLS 1.2) before the request's own round trip; a reused one costs only the latter.
    """
    per_call = handshakes_per_call(results, threads)
    tls_trips = 1 if results.tls == "TLSv1.3" else 2
    setup_ms = (1 + tls_trips) * rtt_ms
    lines = []
    for thread_count in (1, threads):
        sdk = per_call[("sdk", thread_count)]
        app = per_call[("app", thread_count)]
        sdk_ms = rtt_ms + sdk * setup_ms
        app_ms = rtt_ms + app * setup_ms
        label = "sequential" if thread_count == 1 else f"{thread_count} threads"
        lines.append(
            f"{label}: handshakes per call {sdk:.3f} (SDK pattern) vs {app:.4f}"
            f" (initialize_session): {sdk - app:.3f} avoided per call; at {rtt_ms:g} ms RTT"
            f" ({results.tls or 'TLS'}: {1 + tls_trips} round trips per new connection) the"
            f" network part of a call is {sdk_ms:.0f} ms vs {app_ms:.1f} ms, saving"
            f" {sdk_ms - app_ms:.0f} ms per call ({sdk_ms / app_ms:.1f}x less waiting)"
        )
    return lines


# -- where the time goes: pyinstrument on sequential calls ---------------------------------------


def profile(
    certificates: Certificates, *, calls: int, directory: Path, log: Callable[[str], None]
) -> None:
    """Profile ``calls`` sequential calls of ``app`` and of ``floor`` with pyinstrument.

    Not part of the measured rounds. Writes each profile as text into ``directory`` and logs
    it. pyinstrument samples wall-clock time, so waits on the database and the server count.
    """
    try:
        from pyinstrument import Profiler
    except ImportError:
        log("pyinstrument is not installed (pip install pyinstrument): no call profile")
        return
    from django.conf import settings
    from django.test.utils import override_settings

    from benchmarks import profiles

    directory.mkdir(parents=True, exist_ok=True)
    server = EtpayServer(certificates)
    etpay = {
        key: value
        for key, value in settings.ETPAY.items()
        if key not in ("TIMEOUT", "TOTAL_TIMEOUT", "CONNECT_RETRIES")
    }
    etpay.update(API_URL=server.url, CA_BUNDLE=str(certificates.ca))
    try:
        with override_settings(ETPAY=etpay):
            callers = _callers(server, str(certificates.ca))
            orders = itertools.count(1)
            counted = profiles.statements(lambda: callers["app"]("profile-statements"))
            log(f"-- initialize_session statements (in process): {counted} --")
            for name in ("app", "floor"):
                _measure(callers[name], f"warm-{name}", 20, 1, None, orders)
                profiler = Profiler(interval=0.0002)
                profiler.start()
                _measure(callers[name], f"profile-{name}", calls, 1, None, orders)
                profiler.stop()
                text = profiler.output_text(unicode=False, color=False, show_all=False)
                (directory / f"initialize-{name}.txt").write_text(text)
                log(f"-- initialize_session {name} (pyinstrument, {calls} sequential calls) --")
                log(text)
    finally:
        server.stop()
