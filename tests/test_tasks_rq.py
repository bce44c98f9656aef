"""The jobs on RQ: django-tasks-rq, a real Redis server and real ``rqworker`` processes.

The Redis server is started by the tests (``tests/redis.py``) on a unix socket; the workers
(``manage.py rqworker`` of django-rq, with django-tasks-rq's job class) and the app servers
(gunicorn) are separate processes on the test run's PostgreSQL database. ETpay's status API is
a local server. A ``payment_completed`` receiver in every process writes one line per
delivery (``tests/blocking_receiver.py``), so that "exactly once" is counted, not assumed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.test.utils import override_settings
from django.utils import timezone

from django_etpay import tasks
from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.factories import make_session, mint_jwt
from tests.httpfakes import StatusApiServer, closed_port, serving
from tests.redis import redis_server
from tests.subprocesses import ROOT, django_env, wait_until

pytestmark = [
    pytest.mark.heavy,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

Status = PaymentSession.Status

#: The lease of a completion effect in the worker processes (``EFFECT_RETRY_AFTER``).
LEASE_SECONDS = 3


@pytest.fixture(scope="module")
def redis_socket() -> Iterator[Path]:
    if "rq" not in settings.TASKS:
        pytest.skip("needs django-tasks-rq (the heavy extra)")
    with redis_server() as path:
        yield path


@pytest.fixture
def rq(redis_socket: Path) -> Iterator[Path]:
    """The ``rq`` backend of this process pointed at the test Redis server, emptied after."""
    if connection.vendor != "postgresql":
        pytest.skip("the workers share the test database: PostgreSQL only")
    redis = {"UNIX_SOCKET_PATH": str(redis_socket), "DB": 0}
    queues = {"default": redis, "etpay": redis}
    with override_settings(RQ_QUEUES=queues):
        yield redis_socket
        import django_rq

        django_rq.get_connection("etpay").flushdb()


def due(**fields: Any) -> PaymentSession:
    session = make_session(**fields)
    PaymentSession.objects.filter(pk=session.pk).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    return session


def pays(status_api: StatusApiServer, *sessions: PaymentSession) -> None:
    """ETpay's status API reports every one of ``sessions`` paid."""
    for session in sessions:
        status_api.answers[session.token or ""] = [
            {
                "session_token": session.token,
                "merchant_order_id": session.merchant_order_id,
                "merchant_amount": session.order_amount,
                "merchant_currency": "CLP",
                "payment_token": f"pay-rq-{session.pk}",
                "payment_status": "success",
            }
        ]


def worker_args(*options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "django",
        "rqworker",
        "etpay",
        "--job-class",
        "django_tasks_rq.Job",
        *options,
    ]


def worker_env(rq: Path, status_api: StatusApiServer, folder: Path) -> dict[str, str]:
    return django_env(
        ETPAY_TEST_API_URL=status_api.url,
        ETPAY_TEST_REDIS_SOCKET=str(rq),
        ETPAY_TEST_BLOCK_DIR=str(folder),
        ETPAY_TEST_EFFECT_RETRY_AFTER=str(LEASE_SECONDS),
    )


def run_worker(env: dict[str, str], *options: str) -> str:
    done = subprocess.run(  # noqa: S603 - argv built by the test
        worker_args("--burst", *options),
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def deliveries(folder: Path) -> list[int]:
    """The session of each ``payment_completed`` delivery that finished, in order."""
    fulfilled = folder / "fulfilled"
    if not fulfilled.exists():
        return []
    return [int(line.split()[0]) for line in fulfilled.read_text().splitlines()]


def test_rq_worker_runs_reconcile_then_expire(
    rq: Path, status_api: StatusApiServer, tmp_path: Path
) -> None:
    paid = due()
    unknown = due()
    pays(status_api, paid)
    (tmp_path / "release").touch()
    reconcile = tasks.reconcile.using(backend="rq", queue_name="etpay").enqueue()
    expire = tasks.expire.using(backend="rq", queue_name="etpay").enqueue()
    assert reconcile.status == expire.status == "READY"

    run_worker(worker_env(rq, status_api, tmp_path))

    reconcile.refresh()
    expire.refresh()
    assert reconcile.status == "SUCCESSFUL", reconcile.errors
    assert expire.status == "SUCCESSFUL", expire.errors
    assert reconcile.return_value["checked"] == 2
    assert reconcile.return_value["paid"] == 1
    assert expire.return_value == {"expired": 1}
    paid.refresh_from_db()
    unknown.refresh_from_db()
    assert paid.status == Status.PAID
    assert paid.payment_token == f"pay-rq-{paid.pk}"
    assert unknown.status == Status.EXPIRED
    assert deliveries(tmp_path) == [paid.pk]


def test_a_worker_killed_mid_batch_loses_nothing_and_delivers_each_effect_once(
    rq: Path, status_api: StatusApiServer, tmp_path: Path
) -> None:
    sessions = [due() for _ in range(30)]
    pays(status_api, *sessions)
    env = worker_env(rq, status_api, tmp_path)
    tasks.reconcile.using(backend="rq", queue_name="etpay").enqueue()

    # The first worker stops in the first payment_completed receiver, after its commit.
    first = subprocess.Popen(  # noqa: S603 - argv built by the test
        worker_args("--burst"),
        env=env,
        cwd=str(ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until((tmp_path / "entered").exists, "the receiver to be entered", 120)
        # rqworker runs the job in a forked work horse, in a process group of its own: kill the
        # horse (the receiver wrote its pid) and the worker's group.
        horse = int((tmp_path / "entered").read_text().split()[0])
        assert horse != first.pid
        os.kill(horse, signal.SIGKILL)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)

    statuses = dict(PaymentSession.objects.values_list("pk", "status"))
    paid = [pk for pk, status in statuses.items() if status == Status.PAID]
    assert paid, "the kill came before any transition"
    assert len(paid) < len(sessions), "the kill came after the batch"
    assert deliveries(tmp_path) == []
    pending_effects = OutboxEffect.objects.filter(state="pending")
    assert set(pending_effects.values_list("session_id", flat=True)) == set(paid)

    # Restart: a new worker, the next scheduled run, the receiver no longer held up.
    (tmp_path / "release").touch()
    lease = max(pending_effects.values_list("lease_until", flat=True))
    wait_until(lambda: timezone.now() > lease, "the lease of the effects to pass")
    again = tasks.reconcile.using(backend="rq", queue_name="etpay").enqueue()
    run_worker(env)

    again.refresh()
    assert again.status == "SUCCESSFUL", again.errors
    # The effects of the killed worker were claimed once more, by the recovery; the others once.
    attempts = dict(OutboxEffect.objects.values_list("session_id", "attempts"))
    assert attempts == {s.pk: 2 if s.pk in paid else 1 for s in sessions}
    assert set(PaymentSession.objects.values_list("status", flat=True)) == {Status.PAID}
    assert sorted(deliveries(tmp_path)) == sorted(s.pk for s in sessions)
    assert set(OutboxEffect.objects.values_list("state", flat=True)) == {"done"}
    assert OutboxEffect.objects.count() == len(sessions)

    # Every later run finds nothing left to deliver or to ask.
    OutboxEffect.objects.update(lease_until=timezone.now())
    tasks.reconcile.using(backend="rq", queue_name="etpay").enqueue()
    run_worker(env)
    assert sorted(deliveries(tmp_path)) == sorted(s.pk for s in sessions)


def test_two_app_servers_and_two_workers_transition_and_signal_once(
    rq: Path, status_api: StatusApiServer, tmp_path: Path
) -> None:
    sessions = [due() for _ in range(20)]
    pays(status_api, *sessions)
    (tmp_path / "release").touch()
    env = worker_env(rq, status_api, tmp_path)
    results = [tasks.reconcile.using(backend="rq", queue_name="etpay").enqueue() for _ in range(2)]

    ports = [closed_port(), closed_port()]
    gunicorn = [
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "tests.wsgi:application",
        ]
        for port in ports
    ]
    with (
        serving(
            gunicorn[0], port=ports[0], env=env, cwd=str(ROOT), probe="/etpay/notification/"
        ) as a,
        serving(
            gunicorn[1], port=ports[1], env=env, cwd=str(ROOT), probe="/etpay/notification/"
        ) as b,
    ):
        # Each worker takes one of the two runs; both run while ETpay's webhooks arrive.
        workers = [
            subprocess.Popen(  # noqa: S603 - argv built by the test
                worker_args("--burst", "--max-jobs", "1", "--name", f"etpay-worker-{n}"),
                env=env,
                cwd=str(ROOT),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for n in (1, 2)
        ]
        answers: list[int] = []

        def webhook(base: str) -> None:
            for session in sessions:
                reply = requests.post(
                    f"{base}/etpay/notification/", json={"payment": mint_jwt(session)}, timeout=60
                )
                answers.append(reply.status_code)

        senders = [threading.Thread(target=webhook, args=(app.base,)) for app in (a, b)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=120)
        outputs = [worker.communicate(timeout=300)[0] for worker in workers]
        assert [worker.returncode for worker in workers] == [0, 0], outputs

    assert answers == [200] * (2 * len(sessions))
    # Every session's result arrived more than once (both app servers, and the polls).
    repeats = Notification.objects.filter(outcome=Notification.Outcome.DUPLICATE)
    assert set(repeats.values_list("session_id", flat=True)) == {s.pk for s in sessions}
    worker_names: set[str] = set()
    for result in results:
        result.refresh()
        assert result.status == "SUCCESSFUL", result.errors
        worker_names.update(result.worker_ids)
    assert worker_names == {"etpay-worker-1", "etpay-worker-2"}

    # One transition, one completion effect and one signal per session, whoever got there first.
    assert set(PaymentSession.objects.values_list("status", flat=True)) == {Status.PAID}
    for session in sessions:
        transitions = Notification.objects.filter(
            session=session, status_before=Status.PENDING, status_after=Status.PAID
        )
        assert transitions.count() == 1
    assert sorted(deliveries(tmp_path)) == sorted(s.pk for s in sessions)
    assert OutboxEffect.objects.filter(state="done").count() == len(sessions)
    assert OutboxEffect.objects.count() == len(sessions)
