"""Paying an order, tested the way a shop tests its own integration: django_etpay.testing's
fake ETpay answers the checkout's calls and delivers signed results (no server, no network).
"""

from __future__ import annotations

from django.test import TestCase, override_settings
from django.urls import reverse

from django_etpay.models import PaymentSession
from django_etpay.services import initialize_session, reconcile_session
from django_etpay.testing import FakeEtpay, sign_result
from shop.models import Order, Product


@override_settings(LANGUAGE_CODE="en")
class PaymentTests(TestCase):
    def setUp(self) -> None:
        self.etpay = FakeEtpay().install()
        self.addCleanup(self.etpay.uninstall)
        self.product = Product.objects.create(name="Mug", slug="mug", price=6990)

    def checkout(self, quantity: int = 2) -> Order:
        response = self.client.post(
            reverse("shop:checkout", args=["mug"]),
            {"email": "ana@example.cl", "quantity": str(quantity)},
        )
        order = Order.objects.select_related("payment_session").get()
        self.assertRedirects(
            response, reverse("shop:pay", args=[order.number]), fetch_redirect_response=False
        )
        return order

    def session_of(self, order: Order) -> PaymentSession:
        session = Order.objects.get(pk=order.pk).payment_session
        assert session is not None
        return session

    def test_checkout_opens_an_etpay_session_for_the_order(self) -> None:
        order = self.checkout(quantity=2)
        sent = self.etpay.last_session
        assert (sent.merchant_order_id, sent.order_amount) == (order.number, 13980)
        assert sent.request["customer_email"] == "ana@example.cl"
        assert {"name": "Product", "value": "Mug", "show": True} in sent.request["metadata"]
        assert sent.payment_webhook_url == "http://testserver/etpay/notification/"
        page = self.client.get(reverse("shop:pay", args=[order.number])).content.decode()
        assert f"/session/{sent.token}" in page

    def test_a_paid_order_is_fulfilled_once(self) -> None:
        order = self.checkout()
        session = self.session_of(order)
        self.etpay.pay(session)
        assert self.etpay.notify(session).status_code == 200
        order.refresh_from_db()
        assert order.status == Order.Status.PAID
        paid_at = order.paid_at
        # ETpay delivers again: the receiver changes nothing.
        assert self.etpay.notify(session).status_code == 200
        order.refresh_from_db()
        assert order.paid_at == paid_at
        page = self.client.get(order.get_absolute_url()).content.decode()
        assert 'http-equiv="refresh"' not in page

    def test_a_rejected_payment_marks_the_order_failed(self) -> None:
        order = self.checkout()
        session = self.session_of(order)
        self.etpay.reject(session)
        assert self.etpay.notify(session).status_code == 200
        order.refresh_from_db()
        assert order.status == Order.Status.FAILED

    def test_the_payer_comes_back_to_the_order_page(self) -> None:
        order = self.checkout()
        session = self.session_of(order)
        self.etpay.pay(session)
        back = self.client.get(self.etpay.return_url(session))
        # django_etpay's return view checks the JWT, then sends the payer to the shop.
        self.assertRedirects(back, reverse("shop:payment-result"), fetch_redirect_response=False)
        self.assertRedirects(
            self.client.get(reverse("shop:payment-result")), order.get_absolute_url()
        )
        assert self.session_of(order).status == PaymentSession.Status.PAID

    def test_a_lost_webhook_is_found_by_asking_etpay(self) -> None:
        order = self.checkout()
        session = self.session_of(order)
        self.etpay.pay(session)  # ... and ETpay's webhook never arrives
        with self.captureOnCommitCallbacks(execute=True):
            reconcile_session(session)
        order.refresh_from_db()
        assert order.status == Order.Status.PAID

    def test_etpay_reporting_another_amount_is_refused(self) -> None:
        order = self.checkout()
        session = self.session_of(order)
        self.etpay.pay(session, merchant_amount=1)
        assert self.etpay.notify(session).status_code == 400
        order.refresh_from_db()
        assert order.status == Order.Status.PENDING

    def test_a_paid_session_for_another_amount_does_not_pay_the_order(self) -> None:
        # Signed and consistent for its own session, but not this order's amount: the
        # receiver's own check is what keeps the order unpaid.
        order = self.checkout()
        other = initialize_session(order.number, 1)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                reverse("django_etpay:notification"),
                {"payment": sign_result(other)},
                content_type="application/json",
            )
        assert response.status_code == 200
        assert PaymentSession.objects.get(pk=other.pk).status == PaymentSession.Status.PAID
        order.refresh_from_db()
        assert order.status == Order.Status.PENDING

    def test_etpay_down_at_checkout_tells_the_payer(self) -> None:
        self.etpay.fail_next(error="timeout")
        order = self.checkout()
        page = self.client.get(reverse("shop:pay", args=[order.number])).content.decode()
        assert "The payment service did not answer" in page
        assert order.payment_session is None
        row = PaymentSession.objects.get(merchant_order_id=order.number)
        assert (row.status, row.outcome_unknown) == (PaymentSession.Status.ERROR, True)
