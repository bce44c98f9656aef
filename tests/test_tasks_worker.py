"""The jobs on a real task worker: ``db_worker`` of django-tasks-db, on PostgreSQL.

The test enqueues the reconcile and expire tasks on the database backend, then runs the
worker as its own process (``--batch``: it works through the queue and exits). ETpay's status
API is a local server.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from django_etpay import tasks
from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.factories import make_session
from tests.httpfakes import StatusApiServer
from tests.subprocesses import ROOT, django_env

pytestmark = [
    pytest.mark.heavy,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

Status = PaymentSession.Status


def due(**fields: Any) -> PaymentSession:
    session = make_session(**fields)
    PaymentSession.objects.filter(pk=session.pk).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    return session


def test_db_worker_runs_reconcile_then_expire(status_api: StatusApiServer) -> None:
    if "db" not in settings.TASKS:
        pytest.skip("needs django-tasks-db (the heavy extra)")
    paid = due()
    unknown = due()
    status_api.answers = {
        paid.token or "": [
            {
                "session_token": paid.token,
                "merchant_order_id": paid.merchant_order_id,
                "merchant_amount": paid.order_amount,
                "merchant_currency": "CLP",
                "payment_token": "pay-worker-1",
                "payment_status": "success",
            }
        ]
    }
    reconcile = tasks.reconcile.using(backend="db").enqueue()
    expire = tasks.expire.using(backend="db").enqueue()
    assert reconcile.status == expire.status == "READY"

    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "db_worker",
            "--backend",
            "db",
            "--batch",
            "--no-startup-delay",
        ],
        env=django_env(ETPAY_TEST_API_URL=status_api.url),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr

    reconcile.refresh()
    expire.refresh()
    assert reconcile.status == "SUCCESSFUL", reconcile.errors
    assert expire.status == "SUCCESSFUL", expire.errors
    assert reconcile.return_value["checked"] == 2
    assert reconcile.return_value["paid"] == 1
    assert reconcile.return_value["unknown"] == 1
    assert expire.return_value == {"expired": 1}
    assert status_api.calls == 2

    paid.refresh_from_db()
    unknown.refresh_from_db()
    assert paid.status == Status.PAID
    assert paid.payment_token == "pay-worker-1"
    assert unknown.status == Status.EXPIRED
    assert Notification.objects.get(session=unknown).reason == "unknown_to_etpay"
    # The worker delivered both completion effects in process.
    effects = {(e.session_id, e.kind, e.state) for e in OutboxEffect.objects.all()}
    assert effects == {
        (paid.pk, "payment_completed", "done"),
        (unknown.pk, "session_expired", "done"),
    }
