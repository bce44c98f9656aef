"""The example shop, end to end against the sandbox it mounts (``manage.py test shop``)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from io import StringIO

import requests
from django.conf import settings
from django.core.management import call_command
from django.test import LiveServerTestCase, TestCase, override_settings

from shop.models import Order, Product


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"Timed out waiting for {what}")


class DemoProductsTests(TestCase):
    def test_loading_twice_keeps_one_copy_of_each_product(self) -> None:
        call_command("load_demo_products", stdout=StringIO())
        first = Product.objects.count()
        call_command("load_demo_products", stdout=StringIO())
        assert Product.objects.count() == first
        assert first > 0


class CheckoutThroughTheSandboxTests(LiveServerTestCase):
    """A person's path: product list, buy, pay with ETpay, approve or reject, order page."""

    def setUp(self) -> None:
        sandbox = f"{self.live_server_url}/sandbox"
        override = override_settings(
            ETPAY={**settings.ETPAY, "API_URL": sandbox, "PMT_URL": sandbox}
        )
        override.enable()
        self.addCleanup(override.disable)
        call_command("load_demo_products", stdout=StringIO())

    def checkout_and_pay(
        self, action: str, faults: str = ""
    ) -> tuple[requests.Session, Order, requests.Response]:
        browser = requests.Session()
        home = browser.get(f"{self.live_server_url}/", timeout=10)
        assert "Taza de cerámica" in home.text
        pay_page = browser.post(
            f"{self.live_server_url}/checkout/taza-ceramica/",
            data={
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
                "email": "payer@example.com",
                "quantity": "2",
            },
            timeout=10,
        )
        # The widget's link is also the plain redirect: follow it as a browser without
        # JavaScript would.
        link = re.search(r'class="etpay-button etpay-widget__open" href="([^"]+)"', pay_page.text)
        assert link is not None, pay_page.text
        funnel = browser.get(link.group(1), timeout=10)
        assert "ETpay sandbox - sin dinero real" in funnel.text
        assert "Taza de cerámica" in funnel.text
        assert "$25.980" in funnel.text
        result = browser.post(
            link.group(1),
            data={"bank": "cl_estado", "rut": "11.111.111-1", "action": action, "faults": faults},
            timeout=10,
        )
        order = Order.objects.get()
        return browser, order, result

    def test_approved_payment_marks_the_order_paid(self) -> None:
        _, order, page = self.checkout_and_pay("approve")
        assert order.number in page.text
        wait_for(lambda: Order.objects.get(pk=order.pk).status == Order.Status.PAID, "paid")
        order.refresh_from_db()
        assert order.paid_at is not None
        assert order.amount == 25980

    def test_rejected_payment_marks_the_order_failed(self) -> None:
        _, order, _ = self.checkout_and_pay("reject")
        wait_for(lambda: Order.objects.get(pk=order.pk).status == Order.Status.FAILED, "failed")

    def test_a_system_error_ends_on_an_order_page_that_offers_to_pay_again(self) -> None:
        _, order, page = self.checkout_and_pay("approve", faults="system_error")
        assert page.url.endswith(order.get_absolute_url()), page.url
        assert 'http-equiv="refresh"' not in page.text
        assert 'id="pay-again"' in page.text
        order.refresh_from_db()
        assert order.status == Order.Status.PENDING
