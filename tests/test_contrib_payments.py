"""``EtpayProvider``: a django-payments shop (its own ``BasePayment``) pays through ETpay.

The ``Payment`` changes only through this app's verified results and signals: the tests post
signed results to the app's URLs and to django-payments' ``process`` URL, and check that
forged or foreign ones change nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest

payments = pytest.importorskip("payments", reason="needs django-payments (the extra `payments`)")

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.db.models import Sum  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from payments import PaymentError, PaymentStatus, RedirectNeeded  # noqa: E402
from payments import core as payments_core  # noqa: E402
from payments.signals import status_changed  # noqa: E402

from django_etpay import apps as etpay_apps  # noqa: E402
from django_etpay import refunds, signals  # noqa: E402
from django_etpay.contrib.payments import EtpayProvider, receivers  # noqa: E402
from django_etpay.contrib.payments.provider import PAYMENT_METADATA_NAME  # noqa: E402
from django_etpay.models import Notification, PaymentSession, Refund  # noqa: E402
from django_etpay.services import expire_sessions  # noqa: E402
from django_etpay.testing import FakeEtpay, sign_result  # noqa: E402
from tests.factories import make_session  # noqa: E402
from tests.paymentsshop.models import Payment  # noqa: E402

pytestmark = pytest.mark.django_db

Status = PaymentSession.Status
PROCESS = "https://shop.example.test/payments/process/{token}/"


@pytest.fixture(autouse=True)
def _fresh_providers() -> Iterator[None]:
    """django-payments caches one provider per variant: each test builds its own."""
    payments_core.PROVIDER_CACHE.clear()
    yield
    payments_core.PROVIDER_CACHE.clear()


@pytest.fixture
def status_changes() -> Iterator[list[tuple[int, str]]]:
    """``(payment pk, new status)`` for each ``status_changed`` django-payments sent."""
    seen: list[tuple[int, str]] = []

    def record(sender: Any, instance: Payment, **kwargs: Any) -> None:
        seen.append((instance.pk, instance.status))

    status_changed.connect(record, dispatch_uid="test-status-changes")
    yield seen
    status_changed.disconnect(dispatch_uid="test-status-changes")


def new_payment(**fields: Any) -> Payment:
    values: dict[str, Any] = {
        "variant": "etpay",
        "currency": "CLP",
        "total": Decimal("15990"),
        "description": "Order 1001",
        "billing_email": "payer@example.com",
    }
    values.update(fields)
    return Payment.objects.create(**values)


def checkout(payment: Payment) -> str:
    """``payment.get_form()`` as a checkout view calls it: the URL the payer is sent to."""
    with pytest.raises(RedirectNeeded) as redirect:
        payment.get_form()
    return str(redirect.value)


def paid_through_checkout(fake: FakeEtpay, payment: Payment) -> PaymentSession:
    checkout(payment)
    session = PaymentSession.objects.get(merchant_order_id=payment.token)
    fake.pay(session)
    return session


def sibling(payment: Payment, **fields: Any) -> PaymentSession:
    """Another session opened for ``payment`` (another tab, another device)."""
    link = {"name": PAYMENT_METADATA_NAME, "value": str(payment.pk), "show": False}
    values: dict[str, Any] = {
        "merchant_order_id": payment.token,
        "order_amount": 15990,
        "metadata": [link],
    }
    return make_session(**{**values, **fields})


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# -- opening the session -----------------------------------------------------------------------


def test_checkout_opens_a_session_linked_to_the_payment(fake_etpay: FakeEtpay) -> None:
    payment = new_payment()
    url = checkout(payment)

    session = PaymentSession.objects.get()
    assert url == session.payment_url
    assert url.endswith(f"/session/{session.token}")
    assert session.merchant_order_id == payment.token
    assert session.order_amount == 15990
    assert session.status == Status.PENDING
    assert session.customer_email == "payer@example.com"
    assert session.metadata == [
        {"name": PAYMENT_METADATA_NAME, "value": str(payment.pk), "show": False},
        {"name": "Description", "value": "Order 1001", "show": True},
    ]
    process_url = PROCESS.format(token=payment.token)
    assert session.payment_completed_url == process_url
    assert session.payment_cancellation_url == process_url
    assert session.payment_webhook_url == "https://shop.example.test/etpay/notification/"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.INPUT
    assert payment.attrs.etpay_session_id == session.pk


def test_a_second_checkout_reuses_the_pending_session(fake_etpay: FakeEtpay) -> None:
    payment = new_payment()
    first = checkout(payment)
    assert checkout(payment) == first
    assert PaymentSession.objects.count() == 1
    assert len(fake_etpay.calls) == 1


def test_a_checkout_after_a_failed_session_opens_a_new_one(fake_etpay: FakeEtpay) -> None:
    payment = new_payment()
    first = checkout(payment)
    fake_etpay.reject(PaymentSession.objects.get())
    fake_etpay.notify(PaymentSession.objects.get())
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REJECTED
    second = checkout(payment)
    assert second != first
    assert PaymentSession.objects.filter(merchant_order_id=payment.token).count() == 2
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.INPUT


def test_a_confirmed_payment_goes_to_its_success_url(fake_etpay: FakeEtpay) -> None:
    payment = new_payment(status=PaymentStatus.CONFIRMED)
    assert checkout(payment) == payment.get_success_url()
    assert not PaymentSession.objects.exists()


@pytest.mark.parametrize("total", [Decimal("15990.50"), Decimal("0"), Decimal("-1")])
def test_amounts_that_are_not_whole_positive_pesos_are_refused(
    fake_etpay: FakeEtpay, total: Decimal
) -> None:
    payment = new_payment(total=total)
    with pytest.raises(PaymentError, match="without cents"):
        payment.get_form()
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.ERROR
    assert not PaymentSession.objects.exists()
    assert fake_etpay.calls == []


def test_another_currency_is_refused(fake_etpay: FakeEtpay) -> None:
    payment = new_payment(currency="USD")
    with pytest.raises(PaymentError, match="CLP") as err:
        payment.get_form()
    assert err.value.code == "currency"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.ERROR
    assert fake_etpay.calls == []


def test_etpay_refusing_the_session_moves_the_payment_to_error(
    fake_etpay: FakeEtpay, settings: Any
) -> None:
    fake_etpay.fail_next("initialize", status=500, message="down for maintenance")
    payment = new_payment()
    with pytest.raises(PaymentError) as err:
        payment.get_form()
    assert err.value.code == "http_error"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.ERROR
    assert payment.message == str(err.value)
    assert settings.TEST_MERCHANT_API_TOKEN not in payment.message
    # The app kept its own record of the failed call.
    assert PaymentSession.objects.get().status == Status.ERROR


def test_capture_false_is_a_configuration_error() -> None:
    with pytest.raises(ImproperlyConfigured, match="capture=True"):
        EtpayProvider(capture=False)


def test_an_unknown_merchant_alias_fails_at_first_use() -> None:
    with pytest.raises(Exception, match="Unknown ETpay merchant alias 'nope'"):
        EtpayProvider(merchant="nope")


def test_capture_and_release_are_not_offered() -> None:
    provider = EtpayProvider()
    payment = new_payment(status=PaymentStatus.PREAUTH)
    with pytest.raises(PaymentError, match="captured later"):
        provider.capture(payment)
    with pytest.raises(PaymentError, match="released"):
        provider.release(payment)


# -- results through this app's URLs and signals ----------------------------------------------


def test_the_webhook_confirms_the_payment_once(
    fake_etpay: FakeEtpay, status_changes: list[tuple[int, str]]
) -> None:
    payment = new_payment()
    session = paid_through_checkout(fake_etpay, payment)
    assert fake_etpay.notify(session).status_code == 200
    assert fake_etpay.notify(session).status_code == 200  # ETpay repeats itself

    payment.refresh_from_db()
    session.refresh_from_db()
    assert payment.status == PaymentStatus.CONFIRMED
    assert payment.captured_amount == Decimal("15990")
    assert payment.transaction_id == session.payment_token != ""
    assert status_changes == [(payment.pk, "input"), (payment.pk, "confirmed")]


def test_a_redelivered_effect_changes_the_payment_once(
    fake_etpay: FakeEtpay, status_changes: list[tuple[int, str]]
) -> None:
    payment = new_payment()
    session = paid_through_checkout(fake_etpay, payment)
    fake_etpay.notify(session)
    session.refresh_from_db()
    # The outbox delivers an effect again when a worker died before marking it done.
    receivers.on_payment_completed(sender=PaymentSession, session=session)
    assert status_changes.count((payment.pk, "confirmed")) == 1


def test_a_failure_rejects_the_payment(fake_etpay: FakeEtpay) -> None:
    payment = new_payment()
    checkout(payment)
    session = PaymentSession.objects.get()
    fake_etpay.reject(session)
    fake_etpay.notify(session)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REJECTED
    assert payment.message == "ETpay reported the payment as not completed."
    assert payment.captured_amount == 0


def test_an_expired_session_rejects_the_payment_and_a_late_payment_confirms_it(
    fake_etpay: FakeEtpay, django_capture_on_commit_callbacks: Any
) -> None:
    payment = new_payment()
    checkout(payment)
    session = PaymentSession.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        assert expire_sessions(older_than=timedelta(seconds=-1)) == 1
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REJECTED
    assert payment.message == "The ETpay session expired without a payment."

    fake_etpay.pay(session)
    fake_etpay.notify(session)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CONFIRMED


def test_a_failure_leaves_the_payment_open_while_another_session_is_pending(
    fake_etpay: FakeEtpay,
) -> None:
    payment = new_payment()
    checkout(payment)
    older = PaymentSession.objects.get()
    # A second session of the same payment (another tab, another device).
    newer = sibling(payment)
    receivers.on_payment_failed(sender=PaymentSession, session=older)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.INPUT
    PaymentSession.objects.filter(pk=newer.pk).update(status=Status.FAILED)
    receivers.on_payment_failed(sender=PaymentSession, session=older)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REJECTED


def test_a_failure_never_undoes_a_confirmation(fake_etpay: FakeEtpay) -> None:
    payment = new_payment()
    session = paid_through_checkout(fake_etpay, payment)
    fake_etpay.notify(session)
    other = sibling(payment)
    receivers.on_payment_failed(sender=PaymentSession, session=other)
    receivers.on_session_expired(sender=PaymentSession, session=other)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CONFIRMED


def test_a_second_paid_session_is_logged_and_changes_nothing(
    fake_etpay: FakeEtpay, caplog: pytest.LogCaptureFixture
) -> None:
    payment = new_payment()
    session = paid_through_checkout(fake_etpay, payment)
    fake_etpay.notify(session)
    other = sibling(payment, payment_token="pay-second")
    receivers.on_payment_completed(sender=PaymentSession, session=other)
    payment.refresh_from_db()
    session.refresh_from_db()
    assert payment.transaction_id == session.payment_token
    assert f"Payment {payment.pk} was paid again through ETpay session {other.pk}" in caplog.text


def test_a_total_changed_after_the_session_was_opened_is_an_error(
    fake_etpay: FakeEtpay,
) -> None:
    payment = new_payment()
    session = paid_through_checkout(fake_etpay, payment)
    Payment.objects.filter(pk=payment.pk).update(total=Decimal("19990"))
    fake_etpay.notify(session)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.ERROR
    assert "paid 15990" in payment.message
    assert payment.captured_amount == 0


def test_sessions_opened_outside_django_payments_are_left_alone(fake_etpay: FakeEtpay) -> None:
    payment = new_payment(variant="dummy")
    mine = new_payment()
    link = {"name": PAYMENT_METADATA_NAME, "value": str(mine.pk), "show": False}
    sessions = [
        # A payment of another provider, linked as EtpayProvider links its own.
        sibling(payment),
        # The order id of an EtpayProvider payment, without the link.
        make_session(merchant_order_id=mine.token, order_amount=15990),
        # The link to an EtpayProvider payment, with another order id.
        make_session(metadata=[link], order_amount=15990),
        # A link that names no primary key.
        make_session(
            merchant_order_id=mine.token,
            order_amount=15990,
            metadata=[{**link, "value": "not-a-pk"}],
        ),
        make_session(),
    ]
    for receiver in (receivers.on_payment_completed, receivers.on_payment_failed):
        for session in sessions:
            receiver(sender=PaymentSession, session=session)
    assert set(Payment.objects.values_list("status", flat=True)) == {PaymentStatus.WAITING}


def test_sessions_without_the_link_cost_no_query(
    fake_etpay: FakeEtpay, django_assert_num_queries: Any
) -> None:
    session = make_session()
    with django_assert_num_queries(0):
        receivers.on_payment_completed(sender=PaymentSession, session=session)
        receivers.on_session_expired(sender=PaymentSession, session=session)


def test_sessions_of_another_merchant_account_are_left_alone(fake_etpay: FakeEtpay) -> None:
    payment = new_payment()
    session = sibling(payment, merchant="other")
    receivers.on_payment_completed(sender=PaymentSession, session=session)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.WAITING


# -- django-payments' process URL -------------------------------------------------------------


def test_the_payers_return_confirms_and_redirects_to_success(
    fake_etpay: FakeEtpay, django_capture_on_commit_callbacks: Any
) -> None:
    payment = new_payment()
    session = paid_through_checkout(fake_etpay, payment)
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().get(local(fake_etpay.return_url(session)))
    assert response.status_code == 302
    assert response["Location"] == payment.get_success_url()
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CONFIRMED
    notification = Notification.objects.get()
    assert notification.channel == Notification.Channel.REDIRECT
    # The result came with the payer: ETpay's status API was not asked.
    assert [call.path for call in fake_etpay.calls] == ["/session/initialize"]


def test_a_failed_return_redirects_to_failure(
    fake_etpay: FakeEtpay, django_capture_on_commit_callbacks: Any
) -> None:
    payment = new_payment()
    checkout(payment)
    session = PaymentSession.objects.get()
    fake_etpay.reject(session)
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().get(local(fake_etpay.return_url(session)))
    assert response.status_code == 302
    assert response["Location"] == payment.get_failure_url()
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REJECTED


def test_a_forged_result_on_the_return_proves_nothing(
    fake_etpay: FakeEtpay, django_capture_on_commit_callbacks: Any
) -> None:
    payment = new_payment()
    checkout(payment)
    session = PaymentSession.objects.get()
    forged = sign_result(session, key="not-the-signature-token-" * 3)
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().get(PROCESS.format(token=payment.token) + f"?jwt={forged}")
    # ETpay's status API knows no payment either: the page says the result is on its way.
    assert response.status_code == 200
    assert response.context["state"] == "pending"
    assert response.context["session"] == session
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.INPUT
    assert Notification.objects.filter(outcome=Notification.Outcome.REJECTED).count() == 1


def test_a_result_of_another_payment_does_not_send_this_payer_to_success(
    fake_etpay: FakeEtpay, django_capture_on_commit_callbacks: Any
) -> None:
    mine = new_payment()
    checkout(mine)
    other = new_payment()
    other_session = paid_through_checkout(fake_etpay, other)
    mine_session = PaymentSession.objects.get(merchant_order_id=mine.token)
    # Shown the other payer's (genuine) result URL, on this payment's process URL.
    jwt = fake_etpay.return_url(other_session).rpartition("jwt=")[2]
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().get(PROCESS.format(token=mine.token) + f"?jwt={jwt}")
    assert response.status_code == 200
    assert response.context["session"] == mine_session
    mine.refresh_from_db()
    assert mine.status == PaymentStatus.INPUT


def test_a_return_without_result_asks_etpay(
    fake_etpay: FakeEtpay, django_capture_on_commit_callbacks: Any
) -> None:
    payment = new_payment()
    paid_through_checkout(fake_etpay, payment)
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().get(PROCESS.format(token=payment.token))
    assert response.status_code == 302
    assert response["Location"] == payment.get_success_url()
    assert Notification.objects.get().channel == Notification.Channel.POLL
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CONFIRMED


@override_settings(
    PAYMENT_VARIANTS={
        "etpay": ("django_etpay.contrib.payments.EtpayProvider", {"check_status_on_return": False})
    }
)
def test_the_status_query_on_return_can_be_turned_off(fake_etpay: FakeEtpay) -> None:
    payment = new_payment()
    paid_through_checkout(fake_etpay, payment)
    calls = len(fake_etpay.calls)
    response = Client().get(PROCESS.format(token=payment.token))
    assert response.status_code == 200
    assert response.context["state"] == "pending"
    assert len(fake_etpay.calls) == calls
    assert not Notification.objects.exists()


def test_a_return_while_etpay_is_down_says_pending(fake_etpay: FakeEtpay) -> None:
    payment = new_payment()
    checkout(payment)
    fake_etpay.fail_next("status", status=503)
    response = Client().get(PROCESS.format(token=payment.token))
    assert response.status_code == 200
    assert response.context["state"] == "pending"


def test_a_return_to_a_payment_whose_session_could_not_be_opened_goes_to_failure(
    fake_etpay: FakeEtpay,
) -> None:
    payment = new_payment()
    fake_etpay.fail_next("initialize", status=400)
    with pytest.raises(PaymentError):
        payment.get_form()
    response = Client().get(PROCESS.format(token=payment.token))
    assert response.status_code == 302
    assert response["Location"] == payment.get_failure_url()


def test_the_webhook_posted_to_the_process_url_is_verified(
    fake_etpay: FakeEtpay, django_capture_on_commit_callbacks: Any
) -> None:
    payment = new_payment()
    session = paid_through_checkout(fake_etpay, payment)
    url = PROCESS.format(token=payment.token)
    forged = sign_result(session, key="not-the-signature-token-" * 3)
    with django_capture_on_commit_callbacks(execute=True):
        refused = Client().post(url, {"payment": forged}, content_type="application/json")
    assert refused.status_code == 400
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.INPUT
    with django_capture_on_commit_callbacks(execute=True):
        accepted = Client().post(
            url, {"payment": fake_etpay.session(session).result}, content_type="application/json"
        )
    assert accepted.status_code == 200
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CONFIRMED
    assert Notification.objects.get(outcome=Notification.Outcome.ACCEPTED).channel == "webhook"


def test_the_static_callback_finds_the_payment_by_the_session(
    fake_etpay: FakeEtpay, django_capture_on_commit_callbacks: Any
) -> None:
    payment = new_payment()
    session = paid_through_checkout(fake_etpay, payment)
    result = fake_etpay.session(session).result
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post(
            "/payments/process/etpay/", {"payment": result}, content_type="application/json"
        )
    assert response.status_code == 200
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CONFIRMED


def test_the_static_callback_without_a_known_session_finds_nothing(fake_etpay: FakeEtpay) -> None:
    unknown = sign_result(make_session(), key="x" * 40)
    PaymentSession.objects.all().delete()
    for body in ({"payment": unknown}, {"payment": "not a jwt"}, {}):
        response = Client().post("/payments/process/etpay/", body, content_type="application/json")
        assert response.status_code == 400
        assert "Could not extract payment token" in response.json()["error"]


# -- refunds -----------------------------------------------------------------------------------


def paid_and_confirmed(fake: FakeEtpay, payment: Payment) -> PaymentSession:
    """Pay ``payment`` at the fake ETpay and deliver the signed webhook: it is ``CONFIRMED``."""
    session = paid_through_checkout(fake, payment)
    fake.notify(session)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CONFIRMED
    session.refresh_from_db()
    assert session.status == Status.PAID
    return session


def ledger_of(session: PaymentSession) -> list[tuple[int, str]]:
    """``(amount, state)`` of the session's refunds, oldest first."""
    return list(
        Refund.objects.filter(session=session).order_by("pk").values_list("amount", "state")
    )


def test_partial_refunds_are_recorded_in_the_refund_ledger(
    fake_etpay: FakeEtpay, django_capture_on_commit_callbacks: Any
) -> None:
    payment = new_payment()
    session = paid_and_confirmed(fake_etpay, payment)
    requested: list[Refund] = []

    def record(sender: Any, refund: Refund, **kwargs: Any) -> None:
        requested.append(refund)

    signals.refund_requested.connect(record, dispatch_uid="test-payments-refund-requested")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            payment.refund(Decimal("5990"))
    finally:
        signals.refund_requested.disconnect(dispatch_uid="test-payments-refund-requested")

    refund = Refund.objects.get()
    assert (refund.session_id, refund.amount, refund.state) == (
        session.pk,
        5990,
        Refund.State.REQUESTED,
    )
    assert refund.reason == f"django-payments refund of {payment.pk}"
    assert requested == [refund]
    payment.refresh_from_db()
    assert payment.captured_amount == Decimal("10000")
    assert payment.status == PaymentStatus.CONFIRMED
    assert refunds.refundable_amount(session) == 10000

    with pytest.raises(PaymentError, match="without cents") as cents:
        payment.refund(Decimal("0.5"))
    assert cents.value.code == "amount"
    assert ledger_of(session) == [(5990, Refund.State.REQUESTED)]

    payment.refund()  # the rest of what is captured
    assert ledger_of(session) == [(5990, Refund.State.REQUESTED), (10000, Refund.State.REQUESTED)]
    payment.refresh_from_db()
    assert payment.captured_amount == 0
    assert payment.status == PaymentStatus.REFUNDED
    assert refunds.refundable_amount(session) == 0


def test_a_refund_above_what_is_left_is_a_payment_error(fake_etpay: FakeEtpay) -> None:
    payment = new_payment()
    session = paid_and_confirmed(fake_etpay, payment)
    # Staff gave 10000 back in the admin: the ledger knows, the Payment's captured_amount not.
    refunds.request_refund(session, 10000, reason="Returned item")

    with pytest.raises(PaymentError, match=r"exceeds what is left .*\(5990\)") as err:
        payment.refund(Decimal("6000"))
    assert err.value.code == "refund"
    assert ledger_of(session) == [(10000, Refund.State.REQUESTED)]
    payment.refresh_from_db()
    assert payment.captured_amount == Decimal("15990")
    assert payment.status == PaymentStatus.CONFIRMED

    payment.refund(Decimal("5990"))
    payment.refresh_from_db()
    assert payment.captured_amount == Decimal("10000")
    with pytest.raises(PaymentError, match=r"exceeds what is left .*\(0\)"):
        payment.refund()
    total = Refund.objects.filter(session=session).aggregate(total=Sum("amount"))["total"]
    assert total == session.order_amount == 15990
    payment.refresh_from_db()
    assert payment.captured_amount == Decimal("10000")


def test_a_failed_ledger_refund_can_be_requested_again(fake_etpay: FakeEtpay) -> None:
    payment = new_payment()
    session = paid_and_confirmed(fake_etpay, payment)
    first = refunds.request_refund(session, 15990, reason="Cancelled order")
    with pytest.raises(PaymentError, match="exceeds what is left"):
        EtpayProvider().refund(payment, Decimal("15990"))
    refunds.fail_refund(first, reason="The payer's account was closed")

    payment.refund()
    assert ledger_of(session) == [(15990, Refund.State.FAILED), (15990, Refund.State.REQUESTED)]
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REFUNDED


@pytest.mark.parametrize("settle", ["pending", "rejected"])
def test_refund_of_a_payment_with_no_paid_session_is_refused(
    fake_etpay: FakeEtpay, settle: str
) -> None:
    payment = new_payment()
    checkout(payment)
    session = PaymentSession.objects.get()
    if settle == "rejected":
        fake_etpay.reject(session)
        fake_etpay.notify(session)
        session.refresh_from_db()
        assert session.status == Status.FAILED
    with pytest.raises(PaymentError, match="no paid ETpay session") as err:
        EtpayProvider().refund(payment, Decimal("100"))
    assert err.value.code == "refund"
    # django-payments itself refuses before asking the provider: the payment is not confirmed.
    with pytest.raises(ValueError, match="Only charged payments"):
        payment.refund(Decimal("100"))
    assert not Refund.objects.exists()


# -- start-up ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variants", "expected"),
    [
        ({"etpay": ("django_etpay.contrib.payments.EtpayProvider", {})}, True),
        (
            {"a": ["payments.dummy.DummyProvider", {}], "b": ["django_etpay.contrib.payments.X"]},
            True,
        ),
        ({"dummy": ("payments.dummy.DummyProvider", {})}, False),
        ({"broken": ()}, False),
        ({"odd": "django_etpay.contrib.payments.EtpayProvider"}, False),
        (None, False),
        ([("django_etpay.contrib.payments.EtpayProvider", {})], False),
    ],
)
def test_the_receivers_are_connected_when_a_variant_names_the_provider(
    variants: Any, expected: bool
) -> None:
    assert etpay_apps._uses_payments_provider(variants) is expected


def test_the_optional_app_config_connects_the_receivers(fake_etpay: FakeEtpay) -> None:
    import django_etpay.contrib.payments as contrib
    from django_etpay import signals
    from django_etpay.contrib.payments.apps import EtpayPaymentsConfig

    uids = {
        signals.payment_completed: "django_etpay.contrib.payments.completed",
        signals.payment_failed: "django_etpay.contrib.payments.failed",
        signals.session_expired: "django_etpay.contrib.payments.expired",
    }
    for signal, uid in uids.items():
        signal.disconnect(dispatch_uid=uid)
    try:
        unheard = new_payment()
        fake_etpay.notify(paid_through_checkout(fake_etpay, unheard))
        unheard.refresh_from_db()
        assert unheard.status == PaymentStatus.INPUT

        EtpayPaymentsConfig("django_etpay.contrib.payments", contrib).ready()
        heard = new_payment()
        fake_etpay.notify(paid_through_checkout(fake_etpay, heard))
        heard.refresh_from_db()
        assert heard.status == PaymentStatus.CONFIRMED
    finally:
        receivers.connect()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_receiver_waits_for_the_payments_row_lock(
    fake_etpay: FakeEtpay, status_changes: list[tuple[int, str]]
) -> None:
    """Two deliveries for one payment at once (two workers, two sessions): the second one
    waits for the first one's lock and then sees the payment confirmed."""
    import threading

    from django.db import connection, connections, transaction

    from tests.subprocesses import wait_until

    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL only")
    payment = new_payment()
    checkout(payment)
    first = PaymentSession.objects.get()
    fake_etpay.pay(first)
    fake_etpay.notify(first)
    first.refresh_from_db()
    # As if the first delivery had not confirmed the payment yet.
    Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.INPUT, transaction_id="")
    status_changes.clear()
    second = sibling(payment, payment_token="pay-second")
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            receivers.on_payment_completed(sender=PaymentSession, session=second)
        except BaseException as err:  # reported by the main thread
            errors.append(err)
        finally:
            connections.close_all()

    with transaction.atomic():
        # The first delivery holds the payment's row lock...
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        worker = threading.Thread(target=deliver)
        worker.start()

        def waiting_for_the_lock() -> bool:
            with connections["default"].cursor() as cursor:
                # Statistics views are a snapshot per transaction: take a new one each time.
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
                return bool(cursor.fetchone()[0])

        wait_until(waiting_for_the_lock, "the second delivery to wait for the row lock", 30)
        # ...and confirms the payment before it commits.
        locked.transaction_id = first.payment_token
        locked.save(update_fields=["transaction_id"])
        locked.change_status(PaymentStatus.CONFIRMED)
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert errors == []
    # Only the first delivery's change: the second saw the payment confirmed and kept it.
    assert status_changes == [(payment.pk, "confirmed")]
    payment.refresh_from_db()
    assert payment.transaction_id == first.payment_token != "pay-second"
