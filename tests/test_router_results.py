"""The result path with the app's models routed to their own database (``tests/routers.py``).

Webhook, return and widget result each record and apply a result on ``payments``; the same
result delivered many times at once applies one transition and sends one signal, with no 500;
signals wait for the commit of ``payments``, whatever ``default`` is doing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from unittest import mock

import pytest
from django.db import connections, transaction
from django.test import Client
from pytest_django import Settings

from django_etpay import services
from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.factories import make_session, mint_jwt, redirect, webhook, widget
from tests.router_support import DATABASES, assert_nothing_on_default, deliver_together
from tests.routers import PAYMENTS, ROUTERS, STALE_REPLICA_ROUTERS

pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)

Outcome = Notification.Outcome


@pytest.fixture(autouse=True)
def routed(settings: Settings) -> None:
    settings.DATABASE_ROUTERS = ROUTERS


def test_the_router_sends_the_models_to_payments() -> None:
    session = make_session()
    assert session._state.db == PAYMENTS
    assert PaymentSession.objects.using(PAYMENTS).filter(pk=session.pk).exists()
    assert_nothing_on_default()


@pytest.mark.parametrize("send", [webhook, redirect, widget], ids=["webhook", "return", "widget"])
def test_each_channel_pays_the_session_on_payments(
    send: Any, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session()

    response = send(mint_jwt(session))(Client())

    assert response.status_code == 200
    session.refresh_from_db()
    assert session.status == PaymentSession.Status.PAID
    [notification] = Notification.objects.filter(session=session)
    assert notification.outcome == Outcome.ACCEPTED
    [effect] = OutboxEffect.objects.filter(session=session)
    assert (effect.kind, effect.state, effect.attempts) == ("payment_completed", "done", 1)
    receivers["payment_completed"].assert_called_once()
    assert receivers["payment_completed"].call_args.kwargs["notification"].pk == notification.pk
    assert_nothing_on_default()


def test_a_repeat_is_a_duplicate_and_sends_nothing(receivers: dict[str, mock.MagicMock]) -> None:
    session = make_session()
    raw = mint_jwt(session)
    assert webhook(raw)(Client()).status_code == 200

    assert webhook(raw)(Client()).status_code == 200
    assert redirect(raw)(Client()).status_code == 200

    outcomes = Counter(
        Notification.objects.filter(session=session).values_list("outcome", flat=True)
    )
    assert outcomes == {Outcome.ACCEPTED: 1, Outcome.DUPLICATE: 2}
    assert receivers["payment_completed"].call_count == 1
    assert_nothing_on_default()


def test_a_failure_then_a_late_success(receivers: dict[str, mock.MagicMock]) -> None:
    session = make_session()
    assert webhook(mint_jwt(session, payment_status=False))(Client()).status_code == 200
    session.refresh_from_db()
    assert session.status == PaymentSession.Status.FAILED
    receivers["payment_failed"].assert_called_once()

    assert webhook(mint_jwt(session))(Client()).status_code == 200

    session.refresh_from_db()
    assert session.status == PaymentSession.Status.PAID
    receivers["payment_completed"].assert_called_once()
    kwargs = receivers["payment_completed"].call_args.kwargs
    assert kwargs["previous_status"] == PaymentSession.Status.FAILED
    assert_nothing_on_default()


def test_a_rejection_is_stored_on_payments(receivers: dict[str, mock.MagicMock]) -> None:
    session = make_session()

    response = webhook(mint_jwt(session, key="sig-" + "x" * 64))(Client())

    assert response.status_code == 400
    [notification] = Notification.objects.all()
    assert notification.outcome == Outcome.REJECTED
    receivers["notification_rejected"].assert_called_once()
    session.refresh_from_db()
    assert session.status == PaymentSession.Status.PENDING
    assert_nothing_on_default()


def test_signals_wait_for_the_commit_of_payments(receivers: dict[str, mock.MagicMock]) -> None:
    session = make_session()
    with transaction.atomic(using=PAYMENTS):
        services.process_notification(mint_jwt(session), channel=Notification.Channel.WEBHOOK)
        # Not committed yet: nobody may hear of it.
        receivers["payment_completed"].assert_not_called()
    receivers["payment_completed"].assert_called_once()


def test_signals_do_not_wait_for_default(receivers: dict[str, mock.MagicMock]) -> None:
    session = make_session()
    with transaction.atomic(using="default"):
        services.process_notification(mint_jwt(session), channel=Notification.Channel.WEBHOOK)
        # The payment is committed on payments: an open transaction on default is not its.
        assert not connections[PAYMENTS].in_atomic_block
        receivers["payment_completed"].assert_called_once()
    receivers["payment_completed"].assert_called_once()


@pytest.mark.postgres
@pytest.mark.parametrize("run", range(3))
def test_one_result_delivered_at_once_pays_once(
    run: int, receivers: dict[str, mock.MagicMock]
) -> None:
    if connections[PAYMENTS].vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL; SQLite serialises writers differently")
    session = make_session()
    raw = mint_jwt(session)
    senders = [webhook(raw), redirect(raw), widget(raw)] * 4

    codes = deliver_together(senders)

    assert codes == [200] * len(senders)
    session.refresh_from_db()
    assert session.status == PaymentSession.Status.PAID
    assert receivers["payment_completed"].call_count == 1
    outcomes = Counter(
        Notification.objects.filter(session=session).values_list("outcome", flat=True)
    )
    assert outcomes == {Outcome.ACCEPTED: 1, Outcome.DUPLICATE: len(senders) - 1}
    [effect] = OutboxEffect.objects.filter(session=session)
    assert (effect.kind, effect.state) == ("payment_completed", "done")
    assert_nothing_on_default()


@pytest.mark.postgres
def test_success_and_failure_at_once_end_paid_and_announced_once(
    receivers: dict[str, mock.MagicMock],
) -> None:
    if connections[PAYMENTS].vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL; SQLite serialises writers differently")
    session = make_session()
    senders = [webhook(mint_jwt(session)), webhook(mint_jwt(session, payment_status=False))] * 6

    codes = deliver_together(senders)

    assert codes == [200] * len(senders)
    session.refresh_from_db()
    assert session.status == PaymentSession.Status.PAID
    assert receivers["payment_completed"].call_count == 1
    assert receivers["payment_failed"].call_count <= 1
    assert_nothing_on_default()


# -- a replica behind: reads that decide go to the write database ------------------------------


@pytest.mark.parametrize("send", [webhook, redirect, widget], ids=["webhook", "return", "widget"])
def test_a_stale_replica_decides_nothing(
    send: Any, settings: Settings, receivers: dict[str, mock.MagicMock]
) -> None:
    settings.DATABASE_ROUTERS = STALE_REPLICA_ROUTERS
    session = make_session()
    raw = mint_jwt(session)

    first, repeat = send(raw)(Client()), send(raw)(Client())

    assert (first.status_code, repeat.status_code) == (200, 200)
    paid = PaymentSession.objects.using(PAYMENTS).get(pk=session.pk)
    assert paid.status == PaymentSession.Status.PAID
    outcomes = Counter(
        Notification.objects.using(PAYMENTS).filter(session=paid).values_list("outcome", flat=True)
    )
    assert outcomes == {Outcome.ACCEPTED: 1, Outcome.DUPLICATE: 1}
    receivers["payment_completed"].assert_called_once()
    assert_nothing_on_default()


# -- ATOMIC_REQUESTS on the payments database --------------------------------------------------


@pytest.mark.parametrize("send", [webhook, redirect, widget], ids=["webhook", "return", "widget"])
def test_the_views_opt_out_of_atomic_requests_on_payments(
    send: Any, monkeypatch: pytest.MonkeyPatch, receivers: dict[str, mock.MagicMock]
) -> None:
    monkeypatch.setitem(connections.settings[PAYMENTS], "ATOMIC_REQUESTS", True)
    session = make_session()
    in_transaction: list[bool] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        in_transaction.append(connections[PAYMENTS].in_atomic_block)
        return execute(sql, params, many, context)

    with connections[PAYMENTS].execute_wrapper(watch):
        assert send(mint_jwt(session))(Client()).status_code == 200

    # Not one transaction around the whole request: the lookup, at least, runs outside one.
    assert False in in_transaction
    receivers["payment_completed"].assert_called_once()
