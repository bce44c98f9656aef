"""Whole payments over real HTTP: the app and the sandbox on a live server.

``initialize_session`` calls the sandbox through ``EtpayClient``; the test plays the payer with
``requests`` (GET the funnel, POST the approve form); the sandbox POSTs its webhook back to the
app's notification view from a background thread, so every wait is a poll with a deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
import requests
from django.test import RequestFactory

from django_etpay.exceptions import EtpayAPIError, EtpayTimeoutError
from django_etpay.models import Notification, PaymentSession
from django_etpay.sandbox import payments as sandbox_payments
from django_etpay.sandbox import views as sandbox_views
from django_etpay.services import initialize_session, reconcile_session
from tests.subprocesses import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def sent(receiver: mock.Mock, times: int = 1) -> Callable[[], bool]:
    """A condition: ``receiver`` has been called ``times`` times.

    The status is committed before the on-commit callbacks of the server's thread run, so
    seeing the new status is not enough: wait for the signal itself.
    """
    return lambda: receiver.call_count >= times


def status_of(session: PaymentSession) -> str:
    session.refresh_from_db()
    return session.status


def webhooks(session: PaymentSession) -> Any:
    return Notification.objects.filter(session=session, channel=Notification.Channel.WEBHOOK)


@pytest.fixture
def base_url(live_server: Any, settings: Any) -> str:
    """Point ETPAY at the sandbox mounted on the live server."""
    url = f"{live_server.url}/sandbox"
    settings.ETPAY = {**settings.ETPAY, "API_URL": url, "PMT_URL": url}
    return str(live_server.url)


def start(base_url: str, order: str = "E2E-1", **fields: Any) -> PaymentSession:
    """``initialize_session`` with URLs built from a request to the live server."""
    host = urlsplit(base_url).netloc
    request = RequestFactory().get("/checkout/", HTTP_HOST=host)
    return initialize_session(order, 23990, request=request, **fields)


def pay(session: PaymentSession, action: str = "approve", faults: str = "") -> requests.Response:
    """The payer: open the funnel, pick a bank, approve or reject."""
    page = requests.get(session.payment_url, timeout=10)
    assert page.status_code == 200
    assert "ETpay sandbox - no real money" in page.text
    data: dict[str, Any] = {"bank": "cl_bci", "rut": "11.111.111-1", "action": action}
    if faults:
        data["faults"] = faults.split(",")
    response = requests.post(session.payment_url, data=data, allow_redirects=False, timeout=10)
    assert response.status_code == 303
    return response


def test_full_payment(base_url: str, receivers: dict[str, mock.MagicMock]) -> None:
    session = start(base_url)
    assert session.status == PaymentSession.Status.PENDING
    assert session.payment_url.startswith(f"{base_url}/sandbox/session/")

    redirect = pay(session)

    wait_until(sent(receivers["payment_completed"]), "payment_completed after the webhook")
    assert status_of(session) == "paid"
    assert webhooks(session).get().outcome == Notification.Outcome.ACCEPTED
    assert session.payment_token
    assert session.payer_rut == "111111111"
    # The payer's browser then brings the same result back: recorded, changes nothing.
    back = requests.get(redirect.headers["Location"], allow_redirects=False, timeout=10)
    assert back.status_code < 500
    redirect_result = Notification.objects.get(
        session=session, channel=Notification.Channel.REDIRECT
    )
    assert redirect_result.outcome == Notification.Outcome.DUPLICATE
    assert receivers["payment_completed"].call_count == 1
    assert receivers["payment_failed"].call_count == 0


def test_rejection_ends_failed(base_url: str, receivers: dict[str, mock.MagicMock]) -> None:
    session = start(base_url)
    redirect = pay(session, action="reject")
    wait_until(sent(receivers["payment_failed"]), "payment_failed after the webhook")
    assert status_of(session) == "failed"
    assert "jwt=" in redirect.headers["Location"]
    assert receivers["payment_failed"].call_count == 1
    assert receivers["payment_completed"].call_count == 0


def test_webhook_twice_completes_once(base_url: str, receivers: dict[str, mock.MagicMock]) -> None:
    session = start(base_url)
    pay(session, faults="twice")
    wait_until(lambda: webhooks(session).count() == 2, "both webhook deliveries")
    assert status_of(session) == "paid"
    assert sorted(webhooks(session).values_list("outcome", flat=True)) == [
        "accepted",
        "duplicate",
    ]
    assert receivers["payment_completed"].call_count == 1


def test_webhook_never_then_reconcile_finds_the_payment(
    base_url: str, receivers: dict[str, mock.MagicMock]
) -> None:
    session = start(base_url)
    pay(session, faults="never")
    assert status_of(session) == "pending"
    assert not webhooks(session).exists()

    reconcile_session(session)

    assert session.status == PaymentSession.Status.PAID
    poll = Notification.objects.get(session=session, channel=Notification.Channel.POLL)
    assert poll.outcome == Notification.Outcome.ACCEPTED
    assert receivers["payment_completed"].call_count == 1


def test_late_webhook_pays_once_it_arrives(
    base_url: str, receivers: dict[str, mock.MagicMock]
) -> None:
    # The sandbox's delay is held by the test instead of timed: the webhook cannot arrive
    # before the test has looked, however slow the machine.
    waited: list[float] = []
    release = threading.Event()

    def hold(seconds: float) -> None:
        waited.append(seconds)
        assert release.wait(timeout=30)

    session = start(base_url, payment_completed_url="https://shop.example/done")
    with mock.patch.object(sandbox_payments, "time", mock.Mock(sleep=hold)):
        pay(session, faults="late=1")
        wait_until(lambda: waited == [1.0], "the sandbox waiting the 1 s it was told")
        assert status_of(session) == "pending"
        assert receivers["payment_completed"].call_count == 0
        release.set()
        wait_until(
            sent(receivers["payment_completed"]), "payment_completed after the late webhook"
        )
    assert status_of(session) == "paid"
    assert receivers["payment_completed"].call_count == 1


def test_failure_after_success_leaves_the_session_paid(
    base_url: str, receivers: dict[str, mock.MagicMock]
) -> None:
    session = start(base_url)
    pay(session, faults="out_of_order")
    wait_until(lambda: webhooks(session).count() == 2, "the success and the stale failure")
    assert status_of(session) == "paid"
    assert receivers["payment_completed"].call_count == 1
    assert receivers["payment_failed"].call_count == 0


def test_string_payment_status_is_understood(base_url: str) -> None:
    session = start(base_url)
    pay(session, faults="status_string")
    wait_until(lambda: status_of(session) == "paid", "the webhook with payment_status 'success'")


def test_initialize_5xx_leaves_an_error_row_with_unknown_outcome(
    base_url: str, settings: Any
) -> None:
    settings.ETPAY = {
        **settings.ETPAY,
        "API_URL": f"{base_url}/sandbox/faults/initialize_5xx",
    }
    with pytest.raises(EtpayAPIError) as excinfo:
        start(base_url)
    assert excinfo.value.status_code == 503
    session = PaymentSession.objects.get()
    assert session.status == PaymentSession.Status.ERROR
    assert session.outcome_unknown is True
    assert session.needs_reconciliation is True


def test_slow_initialize_times_out_into_an_error_row(base_url: str, settings: Any) -> None:
    settings.ETPAY = {
        **settings.ETPAY,
        "API_URL": f"{base_url}/sandbox/faults/slow=1.5",
        "TIMEOUT": (2.0, 0.5),
    }
    # The sandbox's 1.5 s are held by the test: the client's 0.5 s read timeout is what ends
    # the call, once (no retry of a request whose outcome is unknown), not a clock reading.
    slowed: list[float] = []
    release = threading.Event()

    def hold(seconds: float) -> None:
        slowed.append(seconds)
        release.wait(timeout=30)

    with mock.patch.object(sandbox_views, "time", mock.Mock(sleep=hold)):
        try:
            with pytest.raises(EtpayTimeoutError):
                start(base_url)
            assert slowed == [1.5]
        finally:
            release.set()
    session = PaymentSession.objects.get()
    assert session.status == PaymentSession.Status.ERROR
    assert session.error_code == "timeout"
    assert session.outcome_unknown is True


def test_system_error_on_the_cancellation_url_flags_reconciliation(
    base_url: str, receivers: dict[str, mock.MagicMock]
) -> None:
    session = start(base_url)
    redirect = pay(session, faults="system_error")
    assert redirect.headers["Location"].startswith(session.payment_cancellation_url)

    back = requests.get(redirect.headers["Location"], allow_redirects=False, timeout=10)

    assert back.status_code < 500
    session.refresh_from_db()
    assert session.status == PaymentSession.Status.PENDING
    assert session.needs_reconciliation is True
    assert receivers["payment_completed"].call_count == 0
    assert receivers["payment_failed"].call_count == 0


def test_a_mexican_payment_beside_the_chilean_account(
    base_url: str, settings: Any, receivers: dict[str, mock.MagicMock]
) -> None:
    """A Mexican alias on the same sandbox: SPEI, the phone sent, MXN all the way to paid."""
    mexico = {
        "MERCHANT_CODE": "mx_sandbox_e2e",
        "MERCHANT_API_TOKEN": "mx-e2e-api-token-SECRET-77c1",
        "API_URL": f"{base_url}/sandbox",
        "PMT_URL": f"{base_url}/sandbox",
        "COUNTRY": "MX",
    }
    settings.ETPAY = {**settings.ETPAY, "CURRENCY": "CLP", "MERCHANTS": {"mx": mexico}}
    session = start(
        base_url, "E2E-MX", merchant="mx", target_flow="spei", customer_phone="9616689020"
    )
    page = requests.get(session.payment_url, timeout=10)
    assert "$23,990.00 MXN" in page.text
    data = {"bank": "mx_bbva", "method": "spei", "phone": "9616689020", "action": "approve"}
    response = requests.post(session.payment_url, data=data, allow_redirects=False, timeout=10)
    assert response.status_code == 303

    wait_until(sent(receivers["payment_completed"]), "payment_completed after the webhook")
    assert status_of(session) == "paid"
    assert session.currency == "MXN"
    assert webhooks(session).get().outcome == Notification.Outcome.ACCEPTED
    assert session.payer_account == "SPEI 9616689020"
