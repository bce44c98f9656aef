"""Double payments: ``payment_duplicated`` once per extra payment token of a paid session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from pytest_django import Settings

from django_etpay import duplicates, outbox, services, signals
from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.factories import make_session, mint_jwt

pytestmark = pytest.mark.django_db

Channel = Notification.Channel
KIND = OutboxEffect.Kind.PAYMENT_DUPLICATED


def _receiver(sender: Any, **kwargs: Any) -> None:
    """Signature the receiver mock copies."""


@pytest.fixture
def duplicated() -> Iterator[mock.MagicMock]:
    receiver = mock.create_autospec(_receiver)
    signals.payment_duplicated.connect(receiver, weak=False, dispatch_uid="tests-duplicated")
    yield receiver
    signals.payment_duplicated.disconnect(dispatch_uid="tests-duplicated")


@pytest.fixture
def completed() -> Iterator[mock.MagicMock]:
    receiver = mock.create_autospec(_receiver)
    signals.payment_completed.connect(receiver, weak=False, dispatch_uid="tests-dup-completed")
    yield receiver
    signals.payment_completed.disconnect(dispatch_uid="tests-dup-completed")


@pytest.fixture
def deliver(django_capture_on_commit_callbacks: Any) -> Any:
    def deliver(raw: str, channel: str = Channel.WEBHOOK) -> Notification:
        with django_capture_on_commit_callbacks(execute=True):
            return services.process_notification(raw, channel=channel)

    return deliver


def test_a_double_payment_fires_payment_duplicated_once(
    deliver: Any, duplicated: mock.MagicMock, completed: mock.MagicMock
) -> None:
    session = make_session()
    first = deliver(mint_jwt(session, payment_token="pay-first"))
    assert first.outcome == Notification.Outcome.ACCEPTED
    completed.assert_called_once()
    duplicated.assert_not_called()

    second = deliver(mint_jwt(session, payment_token="pay-second", user_bank="Otro Banco"))

    duplicated.assert_called_once()
    kwargs = duplicated.call_args.kwargs
    assert kwargs["sender"] is PaymentSession
    assert kwargs["session"].pk == session.pk
    assert kwargs["notification"].pk == second.pk
    assert kwargs["payment_token"] == "pay-second"
    # The session stays paid by its first payment; completion is not announced again.
    session.refresh_from_db()
    assert (session.status, session.payment_token) == ("paid", "pay-first")
    assert completed.call_count == 1
    [effect] = OutboxEffect.objects.filter(session=session, kind=KIND)
    assert (effect.notification_id, effect.state) == (second.pk, OutboxEffect.State.DONE)

    # The same second payment again, through every channel: nothing more.
    for channel in (Channel.WEBHOOK, Channel.REDIRECT, Channel.WIDGET):
        deliver(mint_jwt(session, payment_token="pay-second"), channel)
    assert duplicated.call_count == 1
    assert OutboxEffect.objects.filter(session=session, kind=KIND).count() == 1

    # A third payment is another extra payment: once more.
    third = deliver(mint_jwt(session, payment_token="pay-third"))
    assert duplicated.call_count == 2
    assert duplicated.call_args.kwargs["payment_token"] == "pay-third"
    assert [n.pk for n in duplicates.extra_payments(session)] == [second.pk, third.pk]


def test_a_repeat_of_the_first_payment_is_not_a_double_payment(
    deliver: Any, duplicated: mock.MagicMock
) -> None:
    session = make_session()
    raw = mint_jwt(session, payment_token="pay-first")
    deliver(raw)

    deliver(raw)
    deliver(mint_jwt(session, payment_token="pay-first"))

    duplicated.assert_not_called()
    assert not OutboxEffect.objects.filter(kind=KIND).exists()


def test_a_second_failure_of_a_failed_session_is_not_a_double_payment(
    deliver: Any, duplicated: mock.MagicMock
) -> None:
    session = make_session()
    deliver(mint_jwt(session, payment_status=False, payment_token="pay-a"))
    deliver(mint_jwt(session, payment_status=False, payment_token="pay-b"))

    session.refresh_from_db()
    assert session.status == "failed"
    duplicated.assert_not_called()


def test_an_extra_payment_past_the_repeat_budget_is_still_recorded(
    deliver: Any, duplicated: mock.MagicMock, settings: Settings
) -> None:
    settings.ETPAY = {**settings.ETPAY, "MAX_DUPLICATES_PER_SESSION": 1}
    session = make_session()
    raw = mint_jwt(session, payment_token="pay-first")
    deliver(raw)
    deliver(raw)  # uses up the budget of results that change nothing

    deliver(mint_jwt(session, payment_token="pay-second"))

    duplicated.assert_called_once()
    notification = duplicated.call_args.kwargs["notification"]
    assert notification.pk is not None
    assert Notification.objects.get(pk=notification.pk).payment_token == "pay-second"


def test_the_effect_is_delivered_again_after_a_crash(
    deliver: Any, duplicated: mock.MagicMock
) -> None:
    session = make_session()
    deliver(mint_jwt(session, payment_token="pay-first"))
    with mock.patch.object(outbox, "_deliver"):  # the process dies before delivering
        deliver(mint_jwt(session, payment_token="pay-second"))
    duplicated.assert_not_called()
    OutboxEffect.objects.filter(kind=KIND).update(lease_until=session.created_at)

    report = outbox.deliver_due()

    assert report.delivered == 1
    duplicated.assert_called_once()
    assert duplicated.call_args.kwargs["payment_token"] == "pay-second"


def test_is_extra_payment_needs_two_different_tokens() -> None:
    session = make_session(status=PaymentSession.Status.PAID, payment_token="pay-1")

    def result(**values: Any) -> Notification:
        fields = {"outcome": "duplicate", "result": "success", "payment_token": "pay-2"}
        return Notification(session=session, **{**fields, **values})

    assert duplicates.is_extra_payment(session, result())
    assert not duplicates.is_extra_payment(session, result(payment_token="pay-1"))
    assert not duplicates.is_extra_payment(session, result(payment_token=""))
    assert not duplicates.is_extra_payment(session, result(result="failure"))
    assert not duplicates.is_extra_payment(session, result(outcome="rejected"))
    session.payment_token = ""
    assert not duplicates.is_extra_payment(session, result())
    session.payment_token = "pay-1"
    session.status = PaymentSession.Status.FAILED
    assert not duplicates.is_extra_payment(session, result())


# -- a second session of an order that is already paid ------------------------------------------


def test_a_second_session_of_a_paid_order_paid_too_fires_payment_duplicated_once(
    deliver: Any, duplicated: mock.MagicMock, completed: mock.MagicMock
) -> None:
    first = make_session(merchant_order_id="OC-TWICE")
    second = make_session(merchant_order_id="OC-TWICE")
    deliver(mint_jwt(first, payment_token="pay-one"))
    duplicated.assert_not_called()

    paid_again = deliver(mint_jwt(second, payment_token="pay-two"))
    # A repeat of the second session's result changes nothing and announces nothing again.
    deliver(mint_jwt(second, payment_token="pay-two"), Channel.REDIRECT)

    duplicated.assert_called_once()
    kwargs = duplicated.call_args.kwargs
    assert kwargs["session"].pk == second.pk
    assert kwargs["notification"].pk == paid_again.pk
    assert kwargs["payment_token"] == "pay-two"
    # Both sessions are paid, so both are announced complete: the shop's receiver fulfils once
    # and gives the second payment back.
    assert [c.kwargs["session"].pk for c in completed.call_args_list] == [first.pk, second.pk]
    assert OutboxEffect.objects.filter(kind=KIND).count() == 1


@pytest.mark.parametrize(
    "other",
    [
        {"merchant_order_id": "OC-ANOTHER"},
        {"merchant": "other-account"},
        {"environment": "production"},
    ],
)
def test_a_paid_session_of_another_order_account_or_environment_is_no_sibling(
    deliver: Any, duplicated: mock.MagicMock, other: dict[str, str]
) -> None:
    paid = make_session(**{"merchant_order_id": "OC-ONE", **other})
    PaymentSession.objects.filter(pk=paid.pk).update(status=PaymentSession.Status.PAID)
    session = make_session(merchant_order_id="OC-ONE")

    assert deliver(mint_jwt(session)).outcome == Notification.Outcome.ACCEPTED

    duplicated.assert_not_called()


@pytest.mark.parametrize("status", ["pending", "failed", "expired", "error"])
def test_a_sibling_that_is_not_paid_is_no_double_payment(
    deliver: Any, duplicated: mock.MagicMock, status: str
) -> None:
    make_session(merchant_order_id="OC-ONCE", status=status)
    session = make_session(merchant_order_id="OC-ONCE")

    deliver(mint_jwt(session))

    duplicated.assert_not_called()


def test_the_older_session_paid_after_the_newer_one_is_the_extra_payment(
    deliver: Any, duplicated: mock.MagicMock
) -> None:
    older = make_session(merchant_order_id="OC-LATE")
    newer = make_session(merchant_order_id="OC-LATE")
    deliver(mint_jwt(newer, payment_token="pay-newer"))
    deliver(mint_jwt(older, payment_token="pay-older"))

    duplicated.assert_called_once()
    assert duplicated.call_args.kwargs["session"].pk == older.pk
    assert duplicated.call_args.kwargs["payment_token"] == "pay-older"
