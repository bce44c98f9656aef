"""Reconcile, expire, purge, the outbox, the commands and the tasks, with the app's models
routed to their own database (``tests/routers.py``).

Every job reads and writes ``payments``, runs its transactions there (a lock outside a
transaction on ``payments`` is an error), and its signals wait for the commit of ``payments``.
"""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses as responses_lib
from django.core.management import call_command
from django.db import connections, transaction
from django.utils import timezone
from pytest_django import Settings

from django_etpay import outbox, services, tasks
from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.factories import load_fixture, make_session, mint_jwt
from tests.router_support import DATABASES, assert_nothing_on_default
from tests.routers import PAYMENTS, ROUTERS, STALE_REPLICA_ROUTERS

pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)

Status = PaymentSession.Status
STATUS_URL = "https://api.etpay.test/merchant/check_payment_status"


@pytest.fixture(autouse=True)
def routed(settings: Settings) -> None:
    settings.DATABASE_ROUTERS = ROUTERS


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def age(session: PaymentSession, delta: timedelta) -> None:
    PaymentSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - delta)


def paid_entry(session: PaymentSession) -> dict[str, Any]:
    entry = load_fixture("payment_status_success.json", session)
    entry.pop("iat", None)
    return entry


def overdue(effect: OutboxEffect) -> None:
    OutboxEffect.objects.filter(pk=effect.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )


# -- reconcile --------------------------------------------------------------------------------


def test_reconcile_settles_the_session_and_signals_after_payments_commits(
    mocked_responses: responses_lib.RequestsMock, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session(needs_reconciliation=True)
    mocked_responses.post(STATUS_URL, json=[paid_entry(session)])

    with transaction.atomic(using=PAYMENTS):
        services.reconcile_session(session)
        receivers["payment_completed"].assert_not_called()

    receivers["payment_completed"].assert_called_once()
    session.refresh_from_db()
    assert (session.status, session.needs_reconciliation) == (Status.PAID, False)
    [notification] = Notification.objects.filter(session=session)
    assert notification.channel == Notification.Channel.POLL
    assert_nothing_on_default()


def test_reconcile_does_not_wait_for_default(
    mocked_responses: responses_lib.RequestsMock, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session(needs_reconciliation=True)
    mocked_responses.post(STATUS_URL, json=[paid_entry(session)])

    with transaction.atomic(using="default"):
        services.reconcile_session(session)
        receivers["payment_completed"].assert_called_once()


def test_reconcile_command_settles_due_sessions_and_delivers_overdue_effects(
    mocked_responses: responses_lib.RequestsMock, receivers: dict[str, mock.MagicMock]
) -> None:
    # An effect whose receiver failed, now overdue.
    receivers["payment_completed"].side_effect = ConnectionError("mail server down")
    failed = make_session()
    services.process_notification(mint_jwt(failed), channel=Notification.Channel.WEBHOOK)
    [effect] = OutboxEffect.objects.all()
    assert effect.state == OutboxEffect.State.PENDING
    overdue(effect)
    receivers["payment_completed"].side_effect = None
    receivers["payment_completed"].reset_mock()
    # A session past its TTL that ETpay saw paid.
    due = make_session()
    age(due, timedelta(hours=2))
    mocked_responses.post(STATUS_URL, json=[paid_entry(due)])

    output = run("etpay_reconcile")

    assert "Effects delivered again: 1, still failing: 0, given up: 0." in output
    due.refresh_from_db()
    assert due.status == Status.PAID
    paid = [c.kwargs["session"].pk for c in receivers["payment_completed"].call_args_list]
    assert sorted(paid) == sorted([failed.pk, due.pk])
    assert set(OutboxEffect.objects.values_list("state", flat=True)) == {OutboxEffect.State.DONE}
    assert_nothing_on_default()


def test_reconcile_task(
    mocked_responses: responses_lib.RequestsMock, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session()
    age(session, timedelta(hours=2))
    mocked_responses.post(STATUS_URL, json=[paid_entry(session)])

    result = tasks.reconcile.enqueue()

    assert result.status == "SUCCESSFUL", result.errors
    assert result.return_value["checked"] == 1
    session.refresh_from_db()
    assert session.status == Status.PAID
    receivers["payment_completed"].assert_called_once()
    assert_nothing_on_default()


# -- expire -----------------------------------------------------------------------------------


def test_expire_sessions_expires_on_payments_and_signals_after_its_commit(
    receivers: dict[str, mock.MagicMock],
) -> None:
    old, fresh = make_session(), make_session()
    age(old, timedelta(hours=2))

    with transaction.atomic(using=PAYMENTS):
        assert services.expire_sessions() == 1
        receivers["session_expired"].assert_not_called()

    receivers["session_expired"].assert_called_once()
    assert receivers["session_expired"].call_args.kwargs["session"].pk == old.pk
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert (old.status, fresh.status) == (Status.EXPIRED, Status.PENDING)
    [effect] = OutboxEffect.objects.all()
    assert (effect.kind, effect.state) == ("session_expired", "done")
    assert_nothing_on_default()


def test_expire_command(receivers: dict[str, mock.MagicMock]) -> None:
    sessions = [make_session() for _ in range(3)]
    for session in sessions:
        age(session, timedelta(hours=2))

    assert "Expired 3 sessions." in run("etpay_expire", "--batch-size", "2")

    assert set(PaymentSession.objects.values_list("status", flat=True)) == {Status.EXPIRED}
    assert receivers["session_expired"].call_count == 3
    assert "Would expire 0 sessions." in run("etpay_expire", "--dry-run")
    assert_nothing_on_default()


def test_expire_task(receivers: dict[str, mock.MagicMock]) -> None:
    session = make_session()
    age(session, timedelta(hours=2))

    result = tasks.expire.enqueue()

    assert result.status == "SUCCESSFUL", result.errors
    assert result.return_value == {"expired": 1}
    session.refresh_from_db()
    assert session.status == Status.EXPIRED
    receivers["session_expired"].assert_called_once()


# -- purge ------------------------------------------------------------------------------------


def purgeable() -> tuple[PaymentSession, Notification]:
    session = make_session(status=Status.PAID, customer_email="payer@example.com")
    note = Notification.objects.create(
        session=session,
        channel=Notification.Channel.WEBHOOK,
        outcome=Notification.Outcome.ACCEPTED,
        raw_body='{"payment": "a.b.c"}',
        remote_addr="203.0.113.9",
        claims={"merchant_amount": 50000, "user_rut": "111111111"},
    )
    age(session, timedelta(days=40))
    Notification.objects.filter(pk=note.pk).update(created_at=timezone.now() - timedelta(days=40))
    return session, note


def test_purge_command() -> None:
    session, note = purgeable()

    output = run("etpay_purge", "--days", "30", "--batch-size", "1")

    assert "1 sessions" in output
    session.refresh_from_db()
    note.refresh_from_db()
    assert session.customer_email == ""
    assert session.purged_at is not None
    assert (note.raw_body, note.remote_addr, note.claims) == ("", None, {"merchant_amount": 50000})
    assert_nothing_on_default()


def test_purge_task() -> None:
    _session, note = purgeable()

    result = tasks.purge.enqueue(days=30)

    assert result.status == "SUCCESSFUL", result.errors
    assert result.return_value["sessions"] == 1
    assert result.return_value["notifications"] == 1
    note.refresh_from_db()
    assert note.raw_body == ""


# -- the outbox -------------------------------------------------------------------------------


def test_a_failed_effect_is_delivered_again_on_payments(
    receivers: dict[str, mock.MagicMock],
) -> None:
    receivers["payment_completed"].side_effect = ConnectionError("mail server down")
    session = make_session()
    services.process_notification(mint_jwt(session), channel=Notification.Channel.WEBHOOK)
    [effect] = OutboxEffect.objects.all()
    assert (effect.state, effect.attempts) == (OutboxEffect.State.PENDING, 1)
    assert "ConnectionError" in effect.last_error

    # Within its lease, nothing is due.
    assert outbox.deliver_due().delivered == 0
    receivers["payment_completed"].side_effect = None
    overdue(effect)
    report = outbox.deliver_due()

    assert (report.delivered, report.failed, report.gave_up) == (1, 0, 0)
    assert receivers["payment_completed"].call_count == 2
    effect.refresh_from_db()
    assert (effect.state, effect.attempts) == (OutboxEffect.State.DONE, 2)
    overdue(effect)
    assert outbox.deliver_due().delivered == 0
    assert receivers["payment_completed"].call_count == 2
    assert_nothing_on_default()


def test_an_effect_staff_deliver_again_is_delivered_by_the_next_run(
    receivers: dict[str, mock.MagicMock], settings: Settings
) -> None:
    settings.ETPAY = {**settings.ETPAY, "EFFECT_MAX_ATTEMPTS": 1}
    receivers["payment_completed"].side_effect = ConnectionError("mail server down")
    session = make_session()
    services.process_notification(mint_jwt(session), channel=Notification.Channel.WEBHOOK)
    [effect] = OutboxEffect.objects.all()
    assert effect.state == OutboxEffect.State.FAILED  # given up after its one attempt
    receivers["payment_completed"].side_effect = None
    receivers["payment_completed"].reset_mock()

    assert outbox.redeliver([effect]) == 1
    report = outbox.deliver_due()

    assert report.delivered == 1
    receivers["payment_completed"].assert_called_once()
    effect.refresh_from_db()
    assert effect.state == OutboxEffect.State.DONE
    assert_nothing_on_default()


# -- the other commands -----------------------------------------------------------------------


def test_check_command(mocked_responses: responses_lib.RequestsMock) -> None:
    mocked_responses.post(STATUS_URL, json=[])
    assert run("etpay_check").rstrip().endswith("ETpay configuration OK.")
    assert run("etpay_check", "--offline").rstrip().endswith("ETpay configuration OK.")


OLD = "old-signature-secret-0123456789abcdefghijklmnopqrstuv"
NEW = "new-signature-secret-0123456789abcdefghijklmnopqrstuv"
KEY = "sig-router-0123456789abcdef0123456789abcdef0123456789abcdef"


def test_rotate_keys_rewrites_on_payments_one_transaction_per_batch(settings: Settings) -> None:
    settings.ETPAY = {**settings.ETPAY, "SIGNATURE_KEYS": [OLD]}
    sessions = [make_session(signature_token=KEY) for _ in range(3)]
    settings.ETPAY = {**settings.ETPAY, "SIGNATURE_KEYS": [NEW, OLD]}
    in_transaction: list[bool] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith("UPDATE"):
            in_transaction.append(connections[PAYMENTS].in_atomic_block)
        return execute(sql, params, many, context)

    with connections[PAYMENTS].execute_wrapper(watch):
        output = run("etpay_rotate_keys", "--batch-size", "2")

    assert "3 under an older key and 0 in clear re-encrypted" in output
    assert in_transaction == [True, True, True]
    settings.ETPAY = {**settings.ETPAY, "SIGNATURE_KEYS": [NEW]}
    for session in sessions:
        assert PaymentSession.objects.get(pk=session.pk).signature_token == KEY
    assert "0 under an older key and 0 in clear need re-encrypting" in run(
        "etpay_rotate_keys", "--check"
    )


# -- a replica behind: reads that decide go to the write database ------------------------------


def test_reconcile_and_expire_with_a_stale_replica(
    settings: Settings,
    mocked_responses: responses_lib.RequestsMock,
    receivers: dict[str, mock.MagicMock],
) -> None:
    settings.DATABASE_ROUTERS = STALE_REPLICA_ROUTERS
    flagged, old = make_session(needs_reconciliation=True), make_session()
    PaymentSession.objects.using(PAYMENTS).filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    mocked_responses.post(STATUS_URL, json=[paid_entry(flagged)])

    services.reconcile_session(flagged)
    expired = services.expire_sessions()

    assert expired == 1
    statuses = dict(PaymentSession.objects.using(PAYMENTS).values_list("pk", "status"))
    assert statuses == {flagged.pk: Status.PAID, old.pk: Status.EXPIRED}
    receivers["payment_completed"].assert_called_once()
    receivers["session_expired"].assert_called_once()
    assert_nothing_on_default()
