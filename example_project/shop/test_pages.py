"""The shop's pages as a payer meets them: no dead ends, the widget by default, kept input.

The dead-end tests are findings from trying the shop as a new user would; each failed before
the shop was fixed.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

from django.test import TestCase, override_settings
from django.urls import reverse
from django.utils import timezone

from django_etpay.models import PaymentSession
from shop.models import Order, Product
from shop.views import MAX_POLLS

REFRESH = 'http-equiv="refresh"'


@override_settings(LANGUAGE_CODE="en")
class PayerPagesTests(TestCase):
    def setUp(self) -> None:
        self.product = Product.objects.create(name="Mug", slug="mug", price=6990)
        self.order = Order.objects.create(product=self.product, email="a@b.cl", amount=6990)

    def attach_session(self, **fields: object) -> PaymentSession:
        values: dict[str, object] = {
            "environment": "sandbox",
            "merchant_order_id": self.order.number,
            "order_amount": 6990,
            "token": f"tok-{self.order.number}",
            "signature_token": "sig-" + "0" * 64,
            "status": PaymentSession.Status.PENDING,
            **fields,
        }
        session = PaymentSession.objects.create(**values)
        self.order.payment_session = session
        self.order.save(update_fields=["payment_session"])
        return session

    def order_page(self, query: str = "") -> str:
        response = self.client.get(reverse("shop:order", args=[self.order.number]) + query)
        assert response.status_code == 200
        return response.content.decode()

    def assert_offers_a_new_payment(self, html: str) -> None:
        pay_url = reverse("shop:pay", args=[self.order.number])
        assert re.search(rf'<form method="post" action="{re.escape(pay_url)}"', html), html
        assert 'id="pay-again"' in html

    # -- dead ends ---------------------------------------------------------------------------

    def test_a_system_error_stops_the_refresh_and_offers_to_pay_again(self) -> None:
        self.attach_session(needs_reconciliation=True)
        html = self.order_page()
        assert REFRESH not in html
        assert "ETpay reported a technical problem" in html
        self.assert_offers_a_new_payment(html)

    def test_a_session_past_its_ttl_stops_the_refresh_and_offers_to_pay_again(self) -> None:
        session = self.attach_session()
        PaymentSession.objects.filter(pk=session.pk).update(
            created_at=timezone.now() - timedelta(hours=2)
        )
        html = self.order_page()
        assert REFRESH not in html
        assert "The payment session expired" in html
        self.assert_offers_a_new_payment(html)

    def test_an_expired_session_offers_to_pay_again(self) -> None:
        self.attach_session(status=PaymentSession.Status.EXPIRED)
        html = self.order_page()
        assert REFRESH not in html
        self.assert_offers_a_new_payment(html)

    def test_polling_stops_after_its_bound(self) -> None:
        self.attach_session()
        first = self.order_page()
        assert f'{REFRESH} content="2;url=?poll=1"' in first
        last = self.order_page(f"?poll={MAX_POLLS}")
        assert REFRESH not in last
        assert "has not confirmed the payment yet" in last
        assert 'id="check-again"' in last
        self.assert_offers_a_new_payment(last)

    def test_a_nonsense_poll_counter_is_read_as_zero(self) -> None:
        self.attach_session()
        assert f'{REFRESH} content="2;url=?poll=1"' in self.order_page("?poll=abc")

    def test_the_pay_page_of_a_system_error_session_offers_a_new_payment(self) -> None:
        session = self.attach_session(needs_reconciliation=True)
        response = self.client.get(reverse("shop:pay", args=[self.order.number]))
        html = response.content.decode()
        assert session.token not in html
        assert "ETpay reported a technical problem" in html
        self.assert_offers_a_new_payment(html)

    def test_checkout_errors_are_shown_per_field_and_keep_the_input(self) -> None:
        other = Product.objects.create(name="Plate", slug="plate", price=9990)
        response = self.client.post(
            reverse("shop:checkout", args=["mug"]),
            {"email": "not-an-email", "quantity": "12"},
        )
        assert response.status_code == 400
        html = response.content.decode()
        assert 'value="not-an-email"' in html
        assert 'value="12"' in html
        assert "Please check the form:" not in html
        assert re.search(
            r'id="mug-email"[^>]*aria-invalid="true"[^>]*aria-describedby="mug-email-errors"',
            html,
        ), html
        assert re.search(r'<ul class="errorlist" id="mug-email-errors">\s*<li>', html)
        assert re.search(r'<ul class="errorlist" id="mug-quantity-errors">\s*<li>', html)
        # The other product's form is untouched.
        assert 'id="plate-email"' in html
        assert "plate-email-errors" not in html
        assert other.slug in html
        assert Order.objects.count() == 1

    def test_pages_name_an_empty_icon_so_browsers_do_not_ask_for_favicon_ico(self) -> None:
        html = self.client.get(reverse("shop:products")).content.decode()
        assert '<link rel="icon" href="data:,">' in html

    # -- the widget by default ---------------------------------------------------------------

    def test_the_pay_page_has_the_widget_the_redirect_button_and_the_bank_buttons(self) -> None:
        session = self.attach_session()
        session_store = self.client.session
        session_store["shop_open_widget"] = self.order.number
        session_store.save()
        html = self.client.get(reverse("shop:pay", args=[self.order.number])).content.decode()
        assert "data-etpay-widget" in html
        config = json.loads(
            re.search(
                r'<script id="etpay-widget-\d+-config" type="application/json">(.*?)</script>',
                html,
            ).group(1)  # type: ignore[union-attr]
        )
        assert config["openOnLoad"] is True
        assert config["paymentUrl"].endswith(f"/session/{session.token}")
        assert 'class="etpay-button etpay-pay-button"' in html
        assert 'name="user_bank_code" value="cl_bci"' in html
        again = self.client.get(reverse("shop:pay", args=[self.order.number])).content.decode()
        assert '"openOnLoad": false' in again
