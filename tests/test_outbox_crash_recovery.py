"""A worker killed between commit and receiver: the payment is announced by the recovery path,
exactly once.

gunicorn serves the app on PostgreSQL with a ``payment_completed`` receiver that stops after
commit until the test releases it (``tests/blocking_receiver.py``). The test delivers a
success webhook, waits until the receiver has been entered (the transition is committed),
then kills that worker with SIGKILL. The receiver never finished: the outbox row is still
pending. Once its lease has passed, ``manage.py etpay_reconcile`` (a separate process, the
receiver now released) delivers it; a second run delivers nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from django.utils import timezone

from django_etpay.models import OutboxEffect, PaymentSession
from tests.factories import make_session, mint_jwt
from tests.httpfakes import closed_port, serving
from tests.subprocesses import ROOT, django_env, wait_until

pytestmark = [
    pytest.mark.heavy,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

LEASE_SECONDS = 3


def reconcile(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "django", "etpay_reconcile"],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_sigkill_between_commit_and_receiver_is_delivered_once_by_recovery(
    tmp_path: Path,
) -> None:
    session = make_session()
    env = django_env(
        ETPAY_TEST_BLOCK_DIR=str(tmp_path), ETPAY_TEST_EFFECT_RETRY_AFTER=str(LEASE_SECONDS)
    )
    port = closed_port()
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        "1",
        "--timeout",
        "120",
        "--bind",
        f"127.0.0.1:{port}",
        "tests.wsgi:application",
    ]
    outcome: dict[str, Any] = {}

    with serving(args, port=port, env=env, cwd=str(ROOT), probe="/etpay/notification/") as app:

        def deliver() -> None:
            try:
                outcome["response"] = requests.post(
                    f"{app.base}/etpay/notification/",
                    json={"payment": mint_jwt(session)},
                    timeout=90,
                )
            except requests.RequestException as err:
                outcome["error"] = err

        client = threading.Thread(target=deliver, daemon=True)
        client.start()
        entered = tmp_path / "entered"
        wait_until(entered.exists, "the receiver to be entered")
        worker_pid = int(entered.read_text().split()[0])

        # Committed: the session is paid and its effect is recorded, not yet delivered.
        session.refresh_from_db()
        assert session.status == PaymentSession.Status.PAID
        [effect] = OutboxEffect.objects.filter(session=session)
        assert (effect.state, effect.attempts) == ("pending", 1)

        os.kill(worker_pid, signal.SIGKILL)
        client.join(timeout=60)
        assert not client.is_alive()
        # The payer's bank had no answer from the killed worker.
        assert "response" not in outcome or outcome["response"].status_code >= 500

    assert not (tmp_path / "fulfilled").exists()
    effect.refresh_from_db()
    assert (effect.state, effect.attempts) == ("pending", 1)

    # Recovery, after the lease: a separate process, the receiver released.
    (tmp_path / "release").touch()
    wait_until(lambda: timezone.now() > effect.lease_until, "the lease to pass")
    output = reconcile(env)
    assert "Effects delivered again: 1, still failing: 0, given up: 0." in output
    lines = (tmp_path / "fulfilled").read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].split()[0] == str(session.pk)
    assert lines[0].split()[1] != str(worker_pid)
    effect.refresh_from_db()
    assert (effect.state, effect.attempts) == ("done", 2)

    # Nothing more to deliver, however often the recovery runs.
    OutboxEffect.objects.filter(pk=effect.pk).update(lease_until=timezone.now())
    reconcile(env)
    assert (tmp_path / "fulfilled").read_text().splitlines() == lines
