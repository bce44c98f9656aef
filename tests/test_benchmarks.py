"""The benchmark command keeps working, and its arithmetic is right.

The figures themselves are not asserted (they depend on the machine); the heavy test runs the
whole command in miniature, with its own checks of exactly-once outcomes, so that it is ready
to run when the code it measures changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings

from benchmarks.notification import Load
from benchmarks.profiles import summarize_collapsed

ROOT = Path(__file__).resolve().parent.parent


def test_merged_latency_histograms_give_the_percentiles_of_all_requests() -> None:
    fast = Load(requests=99, seconds=1.0, histogram=Counter({1000: 99}))
    slow = Load(requests=1, seconds=1.0, histogram=Counter({50_000: 1}), wraps=2)
    merged = Load()

    merged.add(fast)
    merged.add(slow)

    assert merged.requests == 100
    assert merged.rate == 50.0
    assert merged.p50_ms == 1.0
    assert merged.p99_ms == 1.0
    assert merged.percentile_ms(99.5) == 50.0
    assert merged.wraps == 2


def test_profile_summary_counts_only_time_spent_on_requests() -> None:
    handle = "SyncWorker.handle_request (gunicorn/workers/sync.py:1)"
    view = "NotificationView.post (django_etpay/views.py:2)"
    wait = "Connection.wait (psycopg/connection.py:3)"
    imports = "_find_and_load (<frozen importlib._bootstrap>:4)"
    collapsed = "\n".join(
        [
            f"{handle};{view};{wait} 3",
            f"{handle};{view} 1",
            f"{handle};{imports};{view} 50",  # a worker's first imports: left out
            "Arbiter.sleep (gunicorn/arbiter.py:5) 900",  # the idle master: left out
        ]
    )

    summary = summarize_collapsed(collapsed)

    assert summary.startswith("4 samples while handling requests")
    assert "75.0%  PostgreSQL round trips (psycopg)" in summary
    assert "25.0%  django_etpay" in summary
    assert "100.0%  django_etpay/views.py:NotificationView.post" in summary


def benchmark_env() -> dict[str, str]:
    """The environment of a benchmark child: this checkout first, on this run's PostgreSQL
    server when the suite has one (else the benchmark starts its own)."""
    database = settings.DATABASES["default"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if database["ENGINE"].endswith("postgresql"):
        env.update(ETPAY_TEST_PGHOST=database["HOST"], ETPAY_TEST_PGPORT=str(database["PORT"]))
    return env


@pytest.mark.heavy
def test_the_benchmark_command_runs_end_to_end(tmp_path: Path) -> None:
    env = benchmark_env()
    results = tmp_path / "results.json"

    completed = subprocess.run(  # noqa: S603 - fixed argv
        [
            sys.executable, "-m", "benchmarks.run", "--outbound-rounds", "1", "--calls", "16",
            "--threads", "2", "--rounds", "1", "--duration", "2", "--slices", "1",
            "--sessions", "200", "--json", str(results),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "| initialize_session / floor | 1 |" in completed.stdout
    assert "| client alone / SDK pattern | 2 |" in completed.stdout
    assert "| notification view / floor (requests/s) |" in completed.stdout
    assert "handshakes per call 1.000 (SDK pattern)" in completed.stdout
    assert results.exists()


def test_reconcile_profile_summary_counts_worker_threads_only(tmp_path: Path) -> None:
    from benchmarks.reconcile import _where

    worker = "thread (2): etpay-reconcile_0;reconcile_one (django_etpay/operations.py:1)"
    query = "CursorWrapper.execute (django/db/backends/utils.py:2)"
    wait = "Connection.wait (psycopg/connection.py:3)"
    post = "EtpayClient._post (django_etpay/client.py:4)"
    read = "SocketIO.readinto (socket.py:5)"
    profile = tmp_path / "reconcile-4.txt"
    profile.write_text(
        "\n".join(
            [
                f"{worker};{query};{wait} 6",
                f"{worker};{post};{read} 3",
                f"{worker} 1",
                "thread (1): MainThread;main (benchmarks/reconcile.py:6) 90",  # left out
            ]
        )
    )

    summary = _where(profile)

    assert summary.startswith("10 worker-thread samples")
    assert "in a query 60%, waiting for PostgreSQL 60%" in summary
    assert "in the call to ETpay 30%, waiting for ETpay's reply 30%" in summary


@pytest.mark.heavy
def test_the_reconcile_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    env = benchmark_env()
    results = tmp_path / "reconcile.json"

    completed = subprocess.run(  # noqa: S603 - fixed argv
        [
            sys.executable, "-m", "benchmarks.reconcile", "--latency", "0.001",
            "--runs", "1:3,4:8,4:6:2", "--floor", "--json", str(results),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "| concurrency | processes | sessions | run time |" in completed.stdout
    assert "Checked 8 sessions with ETpay" in completed.stdout
    # Two shards of 2 threads: each asked about its own three sessions, none twice.
    assert completed.stdout.count("Checked 3 sessions with ETpay") == 3
    assert results.exists()
    rows = json.loads(results.read_text())
    assert [(r["concurrency"], r["processes"], r["calls"]) for r in rows] == [
        (1, 1, 3),
        (4, 1, 8),
        (4, 2, 6),
    ]
