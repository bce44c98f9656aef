"""A transition applied in one statement on PostgreSQL, and what it must leave as the lock does.

On PostgreSQL a result that changes a pending session is applied by one statement that changes
the row only if its status is still the one read, and stores the record and the outbox effect
with it (``services._transition_in_one_statement``). These tests hold it to the rows, signals
and logs of the locked path, and to giving way to that path whenever the row changed after it
was read. The races themselves, across connections, are in ``tests/test_concurrency.py``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_etpay import services
from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.factories import deliver, failing_session_saves, make_session, mint_jwt

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # The one-statement transition is PostgreSQL's.
    pytest.mark.postgres,
]

Channel = Notification.Channel
Outcome = Notification.Outcome
Reason = Notification.Reason
Status = PaymentSession.Status
State = OutboxEffect.State

#: Fields that differ between two sessions of the same content (identity, time).
_VARYING = {"id", "token", "merchant_order_id", "signature_token", "payment_token"}
_VARYING |= {"created_at", "updated_at", "paid_at", "completed_at", "session", "notification"}
_VARYING |= {"claims", "raw_body", "claim", "lease_until", "delivered_at", "last_checked_at"}


def row(instance: Any) -> dict[str, Any]:
    """A row's values, without those that differ between two sessions of the same content."""
    return {
        field.name: getattr(instance, field.attname)
        for field in instance._meta.concrete_fields
        if field.name not in _VARYING
    }


def through_the_lock() -> Any:
    return mock.patch.object(services, "_transition_in_one_statement", return_value=None)


def meanwhile(change: Any) -> Any:
    """Run ``change(session)`` after the session was read, before the result is applied."""
    decide = services._changes_nothing
    calls: list[int] = []

    def changed_after_read(session: PaymentSession, verified: Any) -> bool:
        calls.append(1)
        if len(calls) == 1:
            change(session)
        return decide(session, verified)

    return mock.patch.object(services, "_changes_nothing", changed_after_read)


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({}, Status.PAID),
        ({"payment_status": False}, Status.FAILED),
        ({"user_bank": "", "user_account": "", "user_rut": "", "payment_token": ""}, Status.PAID),
    ],
)
def test_the_one_statement_leaves_the_rows_and_signals_the_lock_leaves(
    receivers: dict[str, mock.MagicMock], claims: dict[str, Any], status: str
) -> None:
    fast, slow = make_session(), make_session()
    for session in (fast, slow):
        # A flag a system error left: a transition clears it.
        PaymentSession.objects.filter(pk=session.pk).update(needs_reconciliation=True)
    before = timezone.now()
    fast_raw = mint_jwt(fast, **claims)
    fast_notification = deliver(fast_raw)
    with through_the_lock():
        slow_notification = deliver(mint_jwt(slow, **claims))
    after = timezone.now()

    fast_session, slow_session = (PaymentSession.objects.get(pk=s.pk) for s in (fast, slow))
    assert fast_session.status == status
    assert row(fast_session) == row(slow_session)
    assert (fast_session.payment_token == "") == (slow_session.payment_token == "")
    assert fast_session.needs_reconciliation is False
    assert before <= fast_session.completed_at <= after
    assert fast_session.completed_at <= fast_session.updated_at <= after
    assert fast_session.paid_at == (fast_session.completed_at if status == Status.PAID else None)

    fast_stored, slow_stored = (
        Notification.objects.get(pk=n.pk) for n in (fast_notification, slow_notification)
    )
    assert fast_stored.outcome == Outcome.ACCEPTED
    assert row(fast_stored) == row(slow_stored)
    assert fast_stored.session_id == fast.pk
    assert fast_stored.raw_body == fast_raw
    assert str(fast_stored.remote_addr) == "203.0.113.9"
    assert fast_stored.claims == fast_notification.claims
    assert fast_stored.payment_token == fast_session.payment_token
    assert fast_stored.created_at == fast_notification.created_at
    assert before <= fast_stored.created_at <= after

    fast_effect, slow_effect = (OutboxEffect.objects.get(session=s) for s in (fast, slow))
    assert row(fast_effect) == row(slow_effect)
    assert (fast_effect.state, fast_effect.attempts, fast_effect.previous_status) == (
        State.DONE,
        1,
        Status.PENDING,
    )
    assert fast_effect.notification_id == fast_notification.pk
    assert fast_effect.last_error == ""
    assert fast_effect.delivered_at is not None

    signal = receivers["payment_completed" if status == Status.PAID else "payment_failed"]
    assert signal.call_count == 2
    fast_call, slow_call = (call.kwargs for call in signal.call_args_list)
    assert fast_call.keys() == slow_call.keys()
    assert fast_call["previous_status"] == slow_call["previous_status"] == Status.PENDING
    assert fast_call["notification"] is fast_notification
    assert fast_call["session"] is fast_notification.session


def test_what_it_returns_is_what_it_stored() -> None:
    session = make_session()
    notification = deliver(mint_jwt(session))
    stored = Notification.objects.get(pk=notification.pk)
    assert notification.pk is not None
    assert (notification._state.adding, notification._state.db) == (False, "default")
    in_memory = notification.session
    assert in_memory is not None
    loaded = PaymentSession.objects.get(pk=session.pk)
    for field in ("status", "completed_at", "paid_at", "updated_at", "payer_bank", "payer_rut"):
        assert getattr(in_memory, field) == getattr(loaded, field), field
    assert in_memory.payer_account == loaded.payer_account
    assert in_memory.payment_token == loaded.payment_token == stored.payment_token
    assert in_memory.needs_reconciliation is loaded.needs_reconciliation is False
    effect = OutboxEffect.objects.get(session=session)
    assert effect.notification_id == stored.pk
    # Saved and then marked delivered: a second save would have made a second effect.
    assert OutboxEffect.objects.count() == 1


def test_the_effect_it_delivers_is_the_saved_row() -> None:
    session = make_session()
    with mock.patch.object(
        services.outbox, "deliver_on_commit", wraps=services.outbox.deliver_on_commit
    ) as deliver_on_commit:
        notification = deliver(mint_jwt(session))
    [(effect, claim), _kwargs] = deliver_on_commit.call_args
    stored = OutboxEffect.objects.get(session=session)
    assert (effect.pk, effect._state.adding, effect._state.db) == (stored.pk, False, "default")
    assert effect.notification is notification
    assert effect.session is notification.session
    assert claim == effect.claim != ""


@pytest.mark.parametrize("model", [Notification, OutboxEffect])
def test_without_either_insert_the_transition_goes_under_the_lock(
    model: type[Any], receivers: dict[str, mock.MagicMock]
) -> None:
    # Each INSERT is built from Django's own; when either cannot be, no statement is sent.
    real = services._insert_select

    def not_for(shape: type[Any], *args: Any, **kwargs: Any) -> Any:
        return None if shape is model else real(shape, *args, **kwargs)

    session = make_session()
    with (
        mock.patch.object(services, "_insert_select", side_effect=not_for),
        CaptureQueriesContext(connection) as queries,
    ):
        notification = deliver(mint_jwt(session))
    assert notification.outcome == Outcome.ACCEPTED
    sent = [q["sql"] for q in queries.captured_queries]
    assert not any(sql.startswith("WITH changed") for sql in sent)
    assert any("FOR UPDATE" in sql for sql in sent)
    receivers["payment_completed"].assert_called_once()


def test_a_status_changed_after_the_read_is_decided_again_under_the_lock(
    receivers: dict[str, mock.MagicMock], caplog: pytest.LogCaptureFixture
) -> None:
    # The failure was read on a pending session; a success paid it before the failure's
    # statement ran. The statement changes nothing and the locked path calls it what it is.
    session = make_session()
    success, failure = mint_jwt(session), mint_jwt(session, payment_status=False)

    def pay(target: PaymentSession) -> None:
        assert deliver(success).outcome == Outcome.ACCEPTED

    caplog.set_level(logging.DEBUG, logger="django_etpay")
    with meanwhile(pay), CaptureQueriesContext(connection) as queries:
        notification = deliver(failure)
    assert (notification.outcome, notification.reason) == (
        Outcome.DUPLICATE,
        Reason.NOT_APPLICABLE,
    )
    assert (notification.status_before, notification.status_after) == (Status.PAID, Status.PAID)
    assert notification.detail == "A failure result does not change a paid session."
    assert PaymentSession.objects.get(pk=session.pk).status == Status.PAID
    receivers["payment_completed"].assert_called_once()
    receivers["payment_failed"].assert_not_called()
    assert OutboxEffect.objects.filter(session=session).count() == 1
    assert Notification.objects.filter(session=session, outcome=Outcome.ACCEPTED).count() == 1
    assert any("FOR UPDATE" in q["sql"] for q in queries.captured_queries)
    assert (
        f"ETpay webhook result for session {session.pk}: the status changed since it was read; "
        "deciding again under the row lock"
    ) in caplog.messages


def test_a_flag_set_after_the_read_is_cleared_by_the_transition() -> None:
    session = make_session()

    def flag(target: PaymentSession) -> None:
        PaymentSession.objects.filter(pk=target.pk).update(needs_reconciliation=True)

    with meanwhile(flag):
        assert deliver(mint_jwt(session)).outcome == Outcome.ACCEPTED
    loaded = PaymentSession.objects.get(pk=session.pk)
    assert (loaded.status, loaded.needs_reconciliation) == (Status.PAID, False)


def test_a_session_expired_after_the_read_is_still_paid_once() -> None:
    # pending -> expired meanwhile: the statement misses, the lock pays the expired session.
    session = make_session()

    def expire(target: PaymentSession) -> None:
        PaymentSession.objects.filter(pk=target.pk).update(status=Status.EXPIRED)

    with meanwhile(expire):
        notification = deliver(mint_jwt(session))
    assert (notification.outcome, notification.status_before) == (
        Outcome.ACCEPTED,
        Status.EXPIRED,
    )
    assert notification.detail == "expired -> paid."
    assert PaymentSession.objects.get(pk=session.pk).status == Status.PAID
    assert OutboxEffect.objects.get(session=session).previous_status == Status.EXPIRED


def test_inside_the_callers_transaction_a_failure_is_recorded_and_the_caller_goes_on(
    receivers: dict[str, mock.MagicMock],
) -> None:
    session = make_session()
    with transaction.atomic():
        with failing_session_saves(), pytest.raises(RuntimeError, match="database went away"):
            deliver(mint_jwt(session))
        # The statement ran under a savepoint: the caller's transaction is still usable.
        assert PaymentSession.objects.get(pk=session.pk).status == Status.PENDING
        record = Notification.objects.get(session=session)
        assert (record.outcome, record.reason) == (Outcome.REJECTED, Reason.INTERNAL_ERROR)
        assert deliver(mint_jwt(session)).outcome == Outcome.ACCEPTED
        receivers["payment_completed"].assert_not_called()
    receivers["payment_completed"].assert_called_once()
    assert PaymentSession.objects.get(pk=session.pk).status == Status.PAID


def test_in_the_callers_transaction_the_signal_waits_for_commit(
    receivers: dict[str, mock.MagicMock],
) -> None:
    session = make_session()
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        assert deliver(mint_jwt(session)).outcome == Outcome.ACCEPTED
        receivers["payment_completed"].assert_not_called()
        assert OutboxEffect.objects.get(session=session).state == State.PENDING
    receivers["payment_completed"].assert_called_once()
    assert OutboxEffect.objects.get(session=session).state == State.DONE
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    assert statements.count("SAVEPOINT") == 1
    assert statements.count("RELEASE") == 1


def test_the_outbox_lease_is_the_delivering_process_own() -> None:
    # The effect is written with its lease taken: the recovery path leaves it alone meanwhile.
    session = make_session()
    seen: list[OutboxEffect] = []

    def look(sender: Any, **kwargs: Any) -> None:
        seen.append(OutboxEffect.objects.get(session=kwargs["session"]))

    from django_etpay import signals

    signals.payment_completed.connect(look, weak=False, dispatch_uid="tests-look")
    try:
        deliver(mint_jwt(session))
    finally:
        signals.payment_completed.disconnect(dispatch_uid="tests-look")
    [effect] = seen
    assert effect.state == State.PENDING
    assert effect.claim != ""
    assert effect.lease_until > timezone.now() + timedelta(seconds=30)
    assert effect.kind == OutboxEffect.Kind.PAYMENT_COMPLETED
