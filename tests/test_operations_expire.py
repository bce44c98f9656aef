"""services.expire_sessions (django_etpay.operations): which pending sessions expire, and a late
result after the expiry."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone

from django_etpay import services, tokens
from django_etpay.models import Notification, PaymentSession
from tests.factories import make_session, mint_jwt

pytestmark = pytest.mark.django_db

Outcome = Notification.Outcome
Status = PaymentSession.Status


def age(session: PaymentSession, delta: timedelta) -> None:
    PaymentSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - delta)


def test_expire_sessions_expires_only_old_pending_ones(
    receivers: dict[str, mock.MagicMock], django_capture_on_commit_callbacks: Any
) -> None:
    old = make_session()
    fresh = make_session()
    old_paid = make_session(status=Status.PAID)
    old_failed = make_session(status=Status.FAILED)
    for session in (old, old_paid, old_failed):
        age(session, timedelta(hours=2))

    with django_capture_on_commit_callbacks(execute=True):
        count = services.expire_sessions()

    assert count == 1
    statuses = {
        s.pk: s.status
        for s in PaymentSession.objects.filter(
            pk__in=[old.pk, fresh.pk, old_paid.pk, old_failed.pk]
        )
    }
    assert statuses == {
        old.pk: Status.EXPIRED,
        fresh.pk: Status.PENDING,
        old_paid.pk: Status.PAID,
        old_failed.pk: Status.FAILED,
    }
    receivers["session_expired"].assert_called_once()
    assert receivers["session_expired"].call_args.kwargs["session"].pk == old.pk

    with django_capture_on_commit_callbacks(execute=True):
        assert services.expire_sessions() == 0
    receivers["session_expired"].assert_called_once()


def test_expire_sessions_older_than(settings: Any) -> None:
    session = make_session()
    age(session, timedelta(minutes=10))
    assert services.expire_sessions(older_than=timedelta(minutes=30)) == 0
    assert services.expire_sessions(older_than=timedelta(minutes=5)) == 1
    session.refresh_from_db()
    assert session.status == Status.EXPIRED


def test_expire_sessions_honours_session_ttl_setting(settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "SESSION_TTL": timedelta(minutes=1)}
    session = make_session()
    young = make_session()
    age(session, timedelta(minutes=2))
    age(young, timedelta(seconds=30))
    assert services.expire_sessions() == 1
    young.refresh_from_db()
    assert young.status == Status.PENDING


@pytest.mark.parametrize("ttl", [60, 60.0, "60"])
def test_expire_sessions_reads_a_numeric_ttl_as_seconds(settings: Any, ttl: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "SESSION_TTL": ttl}
    old, young = make_session(), make_session()
    age(old, timedelta(seconds=90))
    age(young, timedelta(seconds=30))
    assert services.expire_sessions() == 1
    old.refresh_from_db()
    young.refresh_from_db()
    assert (old.status, young.status) == (Status.EXPIRED, Status.PENDING)


def test_expire_sessions_older_than_wins_over_the_setting(settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "SESSION_TTL": timedelta(days=1)}
    session = make_session()
    age(session, timedelta(minutes=10))
    assert services.expire_sessions(older_than=timedelta(minutes=5)) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_expire_skips_a_session_locked_by_result_processing(
    receivers: dict[str, mock.MagicMock],
) -> None:
    """expire_sessions must neither wait for nor undo a result being applied."""
    from django.db import connection

    session = make_session()
    other = make_session()
    age(session, timedelta(hours=2))
    age(other, timedelta(hours=2))
    locked = threading.Event()
    release = threading.Event()
    outcome: dict[str, Any] = {}
    real_check = tokens.check_against_session

    def slow_check(result: Any, checked: PaymentSession) -> None:
        # Called twice: on the session read without a lock, then again on the locked row,
        # inside the pipeline's transaction; the second call holds the lock.
        if connection.in_atomic_block:
            locked.set()
            assert release.wait(timeout=20)
        real_check(result, checked)

    def process() -> None:
        try:
            with mock.patch.object(tokens, "check_against_session", slow_check):
                outcome["notification"] = services.process_notification(
                    mint_jwt(session), channel=Notification.Channel.WEBHOOK
                )
        finally:
            connection.close()

    def expire() -> None:
        try:
            outcome["expired"] = services.expire_sessions()
        finally:
            connection.close()

    worker = threading.Thread(target=process, daemon=True)
    worker.start()
    assert locked.wait(timeout=20)
    expirer = threading.Thread(target=expire, daemon=True)
    expirer.start()
    expirer.join(timeout=10)
    finished_while_locked = not expirer.is_alive()
    release.set()
    worker.join(timeout=20)
    expirer.join(timeout=20)

    assert finished_while_locked, "expire_sessions waited for the locked session"
    assert outcome["expired"] == 1  # the other session only
    assert outcome["notification"].outcome == Outcome.ACCEPTED
    session.refresh_from_db()
    other.refresh_from_db()
    assert (session.status, other.status) == (Status.PAID, Status.EXPIRED)
    assert receivers["payment_completed"].call_args.kwargs["previous_status"] == Status.PENDING
    assert receivers["session_expired"].call_args.kwargs["session"].pk == other.pk


def test_late_success_after_expiry_is_paid(
    receivers: dict[str, mock.MagicMock], django_capture_on_commit_callbacks: Any
) -> None:
    session = make_session()
    age(session, timedelta(hours=2))
    services.expire_sessions()
    with django_capture_on_commit_callbacks(execute=True):
        notification = services.process_notification(
            mint_jwt(session), channel=Notification.Channel.WEBHOOK
        )
    assert notification.outcome == Outcome.ACCEPTED
    session.refresh_from_db()
    assert session.status == Status.PAID
    assert receivers["payment_completed"].call_args.kwargs["previous_status"] == Status.EXPIRED
