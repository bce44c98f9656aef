"""The outbox: effects recorded with the transition, delivered once, recovered after a crash."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_etpay import outbox, services
from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.factories import make_session, mint_jwt

pytestmark = pytest.mark.django_db

State = OutboxEffect.State
Kind = OutboxEffect.Kind


def pay(session: PaymentSession) -> Notification:
    return services.process_notification(mint_jwt(session), channel=Notification.Channel.WEBHOOK)


def overdue(effect: OutboxEffect) -> None:
    """Move the lease into the past, as the passing of EFFECT_RETRY_AFTER would."""
    OutboxEffect.objects.filter(pk=effect.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )


def test_transition_records_its_effect_and_delivers_it_on_commit(
    receivers: dict[str, mock.MagicMock], django_capture_on_commit_callbacks: Any
) -> None:
    session = make_session()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notification = pay(session)
    # Recorded before commit, in the same transaction as the status change.
    [effect] = OutboxEffect.objects.all()
    assert (effect.kind, effect.state, effect.attempts) == (
        Kind.PAYMENT_COMPLETED,
        State.PENDING,
        1,
    )
    assert effect.notification_id == notification.pk
    assert effect.previous_status == PaymentSession.Status.PENDING
    assert effect.lease_until > timezone.now()
    receivers["payment_completed"].assert_not_called()

    for callback in callbacks:
        callback()
    receivers["payment_completed"].assert_called_once()
    kwargs = receivers["payment_completed"].call_args.kwargs
    assert kwargs["session"].pk == session.pk
    assert kwargs["notification"].pk == notification.pk
    assert kwargs["previous_status"] == PaymentSession.Status.PENDING
    effect.refresh_from_db()
    assert effect.state == State.DONE
    assert effect.delivered_at is not None
    # Delivered: the recovery path has nothing to do, even much later.
    overdue(effect)
    assert outbox.deliver_due().delivered == 0
    receivers["payment_completed"].assert_called_once()


def test_rolled_back_transition_leaves_no_effect(receivers: dict[str, mock.MagicMock]) -> None:
    session = make_session()

    def shop_view() -> None:
        with transaction.atomic():
            pay(session)
            raise RuntimeError("the shop's own transaction fails")

    with pytest.raises(RuntimeError, match="shop's own"):
        shop_view()
    assert not OutboxEffect.objects.exists()
    session.refresh_from_db()
    assert session.status == PaymentSession.Status.PENDING


def test_duplicates_and_rejections_record_no_effect(
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = make_session()
    with django_capture_on_commit_callbacks(execute=True):
        pay(session)
        pay(session)
        services.process_notification(
            mint_jwt(session, key="x" * 40), channel=Notification.Channel.WEBHOOK
        )
    assert OutboxEffect.objects.count() == 1


def test_crash_before_delivery_is_recovered_exactly_once_after_the_lease(
    receivers: dict[str, mock.MagicMock], django_capture_on_commit_callbacks: Any
) -> None:
    session = make_session()
    # The process "dies" after commit: its on-commit callbacks never run.
    with django_capture_on_commit_callbacks(execute=False):
        notification = pay(session)
    [effect] = OutboxEffect.objects.all()

    # Within the lease the recovery path leaves it alone: its owner may still be delivering.
    assert outbox.deliver_due().delivered == 0
    receivers["payment_completed"].assert_not_called()

    overdue(effect)
    report = outbox.deliver_due()
    assert (report.delivered, report.failed, report.gave_up) == (1, 0, 0)
    receivers["payment_completed"].assert_called_once()
    kwargs = receivers["payment_completed"].call_args.kwargs
    assert kwargs["session"].status == PaymentSession.Status.PAID
    assert kwargs["notification"].pk == notification.pk
    assert kwargs["previous_status"] == PaymentSession.Status.PENDING
    effect.refresh_from_db()
    assert (effect.state, effect.attempts) == (State.DONE, 2)

    overdue(effect)
    assert outbox.deliver_due().delivered == 0
    receivers["payment_completed"].assert_called_once()


def test_owner_that_outlived_its_lease_cannot_mark_the_effect(
    receivers: dict[str, mock.MagicMock], django_capture_on_commit_callbacks: Any
) -> None:
    session = make_session()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pay(session)
    [effect] = OutboxEffect.objects.all()
    overdue(effect)
    claimed = outbox.claim(effect.pk)
    assert claimed is not None
    # A second claimant (another recovery run) gets nothing while the lease is held.
    assert outbox.claim(effect.pk) is None
    # An owner whose receivers outlived EFFECT_RETRY_AFTER no longer owns the row: it cannot
    # mark it done, and the recovery's claim stays in force (why receivers are idempotent).
    for callback in callbacks:
        callback()
    effect.refresh_from_db()
    assert effect.state == State.PENDING
    assert effect.claim == claimed[1]


def test_claim_is_exclusive() -> None:
    session = make_session()
    effect = OutboxEffect.objects.create(
        kind=Kind.SESSION_EXPIRED, session=session, lease_until=timezone.now()
    )
    first = outbox.claim(effect.pk)
    second = outbox.claim(effect.pk)
    assert first is not None
    assert second is None
    effect.refresh_from_db()
    assert effect.attempts == 1
    assert effect.lease_until > timezone.now()


def test_failing_receiver_is_retried_with_backoff_then_given_up(
    receivers: dict[str, mock.MagicMock],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.ETPAY = {**settings.ETPAY, "EFFECT_MAX_ATTEMPTS": 3}
    receivers["payment_completed"].side_effect = ConnectionError("mail server down")
    session = make_session()
    with django_capture_on_commit_callbacks(execute=True):
        pay(session)
    [effect] = OutboxEffect.objects.all()
    assert effect.state == State.PENDING
    assert "ConnectionError" in effect.last_error
    first_delay = effect.lease_until - timezone.now()
    assert timedelta(minutes=9) < first_delay <= timedelta(minutes=10)

    overdue(effect)
    assert outbox.deliver_due().failed == 1
    effect.refresh_from_db()
    assert effect.attempts == 2
    second_delay = effect.lease_until - timezone.now()
    assert timedelta(minutes=19) < second_delay <= timedelta(minutes=20)

    overdue(effect)
    assert outbox.deliver_due().gave_up == 1
    effect.refresh_from_db()
    assert (effect.state, effect.attempts) == (State.FAILED, 3)
    assert receivers["payment_completed"].call_count == 3
    overdue(effect)
    assert outbox.deliver_due().gave_up == 0
    assert receivers["payment_completed"].call_count == 3
    assert "Gave up delivering" in caplog.text

    # Staff fix the receiver and ask for another delivery.
    receivers["payment_completed"].side_effect = None
    assert outbox.redeliver([effect]) == 1
    assert outbox.deliver_due().delivered == 1
    effect.refresh_from_db()
    assert effect.state == State.DONE


def test_expiry_records_one_effect_per_session(
    receivers: dict[str, mock.MagicMock], django_capture_on_commit_callbacks: Any
) -> None:
    sessions = [make_session() for _ in range(3)]
    PaymentSession.objects.update(created_at=timezone.now() - timedelta(hours=2))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert services.expire_sessions() == 3
    effects = OutboxEffect.objects.order_by("session_id")
    assert [(e.session_id, e.kind, e.state) for e in effects] == [
        (s.pk, Kind.SESSION_EXPIRED, State.PENDING) for s in sessions
    ]
    for callback in callbacks:
        callback()
    assert receivers["session_expired"].call_count == 3
    assert set(OutboxEffect.objects.values_list("state", flat=True)) == {State.DONE}


def test_effects_are_delivered_in_order_of_creation(
    receivers: dict[str, mock.MagicMock], django_capture_on_commit_callbacks: Any
) -> None:
    session = make_session()
    PaymentSession.objects.filter(pk=session.pk).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    with django_capture_on_commit_callbacks(execute=False):
        services.expire_sessions()
        pay(session)  # a late payment after expiry
    OutboxEffect.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    calls: list[str] = []
    receivers["session_expired"].side_effect = lambda **kw: calls.append("expired")
    receivers["payment_completed"].side_effect = lambda **kw: calls.append("completed")
    assert outbox.deliver_due().delivered == 2
    assert calls == ["expired", "completed"]
    assert receivers["payment_completed"].call_args.kwargs["previous_status"] == "expired"


def test_mark_done_failure_leaves_it_for_recovery(
    receivers: dict[str, mock.MagicMock],
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from django.db import DatabaseError

    session = make_session()
    with (
        mock.patch.object(outbox, "_finish", side_effect=DatabaseError("gone")),
        django_capture_on_commit_callbacks(execute=True),
    ):
        pay(session)
    receivers["payment_completed"].assert_called_once()
    [effect] = OutboxEffect.objects.all()
    assert effect.state == State.PENDING
    assert "will be delivered again" in caplog.text


def test_deliver_due_limit_and_batches(
    receivers: dict[str, mock.MagicMock], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "BATCH_SIZE", 2)
    session = make_session()
    past = timezone.now() - timedelta(seconds=1)
    OutboxEffect.objects.bulk_create(
        [OutboxEffect(kind=Kind.SESSION_EXPIRED, session=session, lease_until=past)] * 5
    )
    assert outbox.deliver_due(limit=3).delivered == 3
    assert outbox.deliver_due().delivered == 2
    assert receivers["session_expired"].call_count == 5
    assert connection.vendor in ("postgresql", "sqlite")
