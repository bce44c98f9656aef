"""The one result pipeline: what a transition leaves behind, and when it is decided again.

Every result that may change a session is decided on the row locked with
``select_for_update`` inside ``transaction.atomic(using=...)``, on every database. These tests
hold the rows, signals and model signals it leaves, and what happens when the row changed
between the unlocked read and the lock. The races themselves, across connections, are in
``tests/test_pipeline_concurrency.py``.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models.signals import post_save, pre_save
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_etpay import pipeline, services, signals
from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.factories import failing_session_saves, make_session, mint_jwt

pytestmark = pytest.mark.django_db(transaction=True)

Channel = Notification.Channel
Outcome = Notification.Outcome
Reason = Notification.Reason
Status = PaymentSession.Status
State = OutboxEffect.State


def deliver(raw: str, channel: str = Channel.WEBHOOK) -> Notification:
    return services.process_notification(raw, channel=channel, remote_addr="203.0.113.9")


def meanwhile(change: Any) -> Any:
    """Run ``change(session)`` after the session was read, before the result is applied."""
    decide = pipeline.changes_nothing
    calls: list[int] = []

    def changed_after_read(session: PaymentSession, verified: Any) -> bool:
        calls.append(1)
        if len(calls) == 1:
            change(session)
        return decide(session, verified)

    return mock.patch.object(pipeline, "changes_nothing", changed_after_read)


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({}, Status.PAID),
        ({"payment_status": False}, Status.FAILED),
        ({"user_bank": "", "user_account": "", "user_rut": "", "payment_token": ""}, Status.PAID),
    ],
)
def test_a_transition_leaves_its_rows_and_one_signal(
    receivers: dict[str, mock.MagicMock], claims: dict[str, Any], status: str
) -> None:
    session = make_session()
    # A flag a system error left: a transition clears it.
    PaymentSession.objects.filter(pk=session.pk).update(needs_reconciliation=True)
    before = timezone.now()
    raw = mint_jwt(session, **claims)
    with CaptureQueriesContext(connection) as queries:
        notification = deliver(raw)
    after = timezone.now()
    assert any("FOR UPDATE" in q["sql"] for q in queries.captured_queries) == (
        connection.features.has_select_for_update
    )

    loaded = PaymentSession.objects.get(pk=session.pk)
    assert loaded.status == status
    assert loaded.needs_reconciliation is False
    assert before <= loaded.completed_at <= after
    assert loaded.completed_at <= loaded.updated_at <= after
    assert loaded.paid_at == (loaded.completed_at if status == Status.PAID else None)

    stored = Notification.objects.get(pk=notification.pk)
    assert stored.outcome == Outcome.ACCEPTED
    assert stored.session_id == session.pk
    assert stored.raw_body == raw
    assert str(stored.remote_addr) == "203.0.113.9"
    assert stored.claims == notification.claims
    assert stored.payment_token == loaded.payment_token
    assert stored.created_at == notification.created_at
    assert before <= stored.created_at <= after

    effect = OutboxEffect.objects.get(session=session)
    assert (effect.state, effect.attempts, effect.previous_status) == (
        State.DONE,
        1,
        Status.PENDING,
    )
    assert effect.notification_id == notification.pk
    assert effect.last_error == ""
    assert effect.delivered_at is not None

    signal = receivers["payment_completed" if status == Status.PAID else "payment_failed"]
    signal.assert_called_once()
    call = signal.call_args.kwargs
    assert call["previous_status"] == Status.PENDING
    assert call["notification"] is notification
    assert call["session"] is notification.session


def test_what_it_returns_is_what_it_stored() -> None:
    session = make_session()
    notification = deliver(mint_jwt(session))
    stored = Notification.objects.get(pk=notification.pk)
    assert (notification._state.adding, notification._state.db) == (False, "default")
    in_memory = notification.session
    assert in_memory is not None
    loaded = PaymentSession.objects.get(pk=session.pk)
    for field in ("status", "completed_at", "paid_at", "updated_at", "payer_bank", "payer_rut"):
        assert getattr(in_memory, field) == getattr(loaded, field), field
    assert in_memory.payment_token == loaded.payment_token == stored.payment_token
    assert OutboxEffect.objects.get(session=session).notification_id == stored.pk
    assert OutboxEffect.objects.count() == 1


@pytest.mark.parametrize("model", [PaymentSession, Notification, OutboxEffect])
def test_model_signals_fire_for_every_row_a_transition_writes(model: type[Any]) -> None:
    # Audit-log and history packages listen to pre_save/post_save: every row the pipeline
    # writes goes through Model.save(), on every database.
    session = make_session()
    seen: list[tuple[str, bool]] = []

    def before(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append(("pre", instance.pk is None))

    def after(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        seen.append(("post", created))

    pre_save.connect(before, sender=model, weak=False, dispatch_uid="tests-pre")
    post_save.connect(after, sender=model, weak=False, dispatch_uid="tests-post")
    try:
        assert deliver(mint_jwt(session)).outcome == Outcome.ACCEPTED
    finally:
        pre_save.disconnect(sender=model, dispatch_uid="tests-pre")
        post_save.disconnect(sender=model, dispatch_uid="tests-post")
    if model is PaymentSession:
        assert seen == [("pre", False), ("post", False)]
    else:
        assert seen == [("pre", True), ("post", True)]


def test_a_repeat_is_recorded_through_save_too() -> None:
    session = make_session()
    raw = mint_jwt(session)
    deliver(raw)
    stored: list[bool] = []

    def after(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        stored.append(created)

    post_save.connect(after, sender=Notification, weak=False, dispatch_uid="tests-repeat")
    try:
        assert deliver(raw).outcome == Outcome.DUPLICATE
    finally:
        post_save.disconnect(sender=Notification, dispatch_uid="tests-repeat")
    assert stored == [True]


def test_a_status_changed_after_the_read_is_decided_on_the_locked_row(
    receivers: dict[str, mock.MagicMock],
) -> None:
    # The failure was read on a pending session; a success paid it before the lock was taken.
    session = make_session()
    success, failure = mint_jwt(session), mint_jwt(session, payment_status=False)

    def pay(target: PaymentSession) -> None:
        assert deliver(success).outcome == Outcome.ACCEPTED

    with meanwhile(pay):
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


def test_a_flag_set_after_the_read_is_cleared_by_the_transition() -> None:
    session = make_session()

    def flag(target: PaymentSession) -> None:
        PaymentSession.objects.filter(pk=target.pk).update(needs_reconciliation=True)

    with meanwhile(flag):
        assert deliver(mint_jwt(session)).outcome == Outcome.ACCEPTED
    loaded = PaymentSession.objects.get(pk=session.pk)
    assert (loaded.status, loaded.needs_reconciliation) == (Status.PAID, False)


def test_a_session_expired_after_the_read_is_still_paid_once() -> None:
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
        # The pipeline ran under a savepoint: the caller's transaction is still usable.
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
    with transaction.atomic():
        assert deliver(mint_jwt(session)).outcome == Outcome.ACCEPTED
        receivers["payment_completed"].assert_not_called()
        assert OutboxEffect.objects.get(session=session).state == State.PENDING
    receivers["payment_completed"].assert_called_once()
    assert OutboxEffect.objects.get(session=session).state == State.DONE


def test_the_outbox_lease_is_the_delivering_process_own() -> None:
    # The effect is written with its lease taken: the recovery path leaves it alone meanwhile.
    session = make_session()
    seen: list[OutboxEffect] = []

    def look(sender: Any, **kwargs: Any) -> None:
        seen.append(OutboxEffect.objects.get(session=kwargs["session"]))

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


@pytest.mark.parametrize("inside_a_transaction", [False, True])
def test_a_record_that_cannot_be_saved_spends_no_budget_unit(inside_a_transaction: bool) -> None:
    # In autocommit the unit is given back; in a transaction the savepoint rolls it back.
    session = make_session()
    bystander = make_session(stored_duplicates=3, stored_rejections=2)
    raw = mint_jwt(session)
    assert deliver(raw).outcome == Outcome.ACCEPTED
    failing = mock.patch.object(Notification, "save", side_effect=DatabaseError("disk full"))
    outer = transaction.atomic() if inside_a_transaction else nullcontext()
    with failing, outer, pytest.raises(DatabaseError, match="disk full"):
        deliver(raw)
    loaded = PaymentSession.objects.get(pk=session.pk)
    assert (loaded.stored_duplicates, loaded.stored_rejections) == (0, 0)
    # Only this session's unit is given back.
    bystander.refresh_from_db()
    assert (bystander.stored_duplicates, bystander.stored_rejections) == (3, 2)
    assert Notification.objects.filter(session=session).count() == 1
    # The budget still works afterwards.
    assert deliver(raw).pk is not None
    loaded.refresh_from_db()
    assert loaded.stored_duplicates == 1


def test_a_budget_unit_that_cannot_be_given_back_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from django_etpay import records

    session = make_session()
    notification = Notification(session=session, channel=Channel.WEBHOOK, raw_body="")
    real_update = type(PaymentSession.objects.all()).update
    calls: list[int] = []

    def update(queryset: Any, **kwargs: Any) -> int:
        calls.append(1)
        if len(calls) == 2:
            raise DatabaseError("gone")
        return real_update(queryset, **kwargs)

    with (
        mock.patch.object(Notification, "save", side_effect=DatabaseError("disk full")),
        mock.patch.object(type(PaymentSession.objects.all()), "update", update),
        pytest.raises(DatabaseError, match="disk full"),
    ):
        records.save_within_budget(
            notification, session.pk, counter="stored_duplicates", cap=5, using="default"
        )
    assert f"A storage budget unit of session {session.pk} could not be given back" in (
        caplog.messages
    )
    assert PaymentSession.objects.get(pk=session.pk).stored_duplicates == 1
