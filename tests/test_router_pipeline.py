"""The result pipeline with the app's models routed to a second PostgreSQL database.

A child process runs with ``tests.routed_pipeline_settings``: ``default`` keeps auth and the
rest, ``payments`` (another database on the same server) holds the app's tables. Concurrent
deliveries of one result must make exactly one transition per session, none answered 500
(the row lock must be taken inside a transaction of ``payments``, not of ``default``); a
signal must wait for the commit of ``payments``; ``etpay_expire`` must lock and expire there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from tests.subprocesses import ROOT, django_env

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    if connection.vendor != "postgresql":
        pytest.skip("routing to a second database is tested on PostgreSQL")
    names = (f"etpay_routed_default_{os.getpid()}", f"etpay_routed_payments_{os.getpid()}")
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield names
    finally:
        with connection.cursor() as cursor:
            for name in names:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_child(names: tuple[str, str]) -> dict[str, Any]:
    env = django_env(
        DJANGO_SETTINGS_MODULE="tests.routed_pipeline_settings",
        ETPAY_TEST_ROUTED_DEFAULT=names[0],
        ETPAY_TEST_ROUTED_PAYMENTS=names[1],
    )
    done = subprocess.run(
        [sys.executable, "-m", "tests.routed_pipeline_child"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_routed_results_signals_and_expiry(databases: tuple[str, str]) -> None:
    report = run_child(databases)
    # 5 sessions, 12 concurrent deliveries each: every one answered 200, one transition each.
    assert report["answers"] == {"200": 60}
    assert report["payments_db"] == ["payments"]
    assert report["paid"] == 5
    assert report["accepted"] == 5
    assert report["recorded"] == 60
    assert report["effects_done"] == 5
    assert report["payment_completed"] == 5
    # Inside a transaction of payments, payment_completed waits for that commit.
    assert (report["signal_before_commit"], report["signal_after_commit"]) == (0, 1)
    assert report["expired_status"] == "expired"
    assert report["session_expired"] == 1
