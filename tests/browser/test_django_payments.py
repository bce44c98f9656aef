"""A django-payments shop pays an order through ``EtpayProvider`` in the sandbox, in a browser.

The shop (``tests/paymentsshop``: django-payments' own ``BasePayment`` and the checkout its
documentation shows) runs on ``localhost`` under ``runserver`` with the sandbox mounted on
``127.0.0.1``. The payer goes from the shop's pay button to the sandbox's funnel, approves, and
comes back through django-payments' ``process`` URL to the success page, which shows the
payment confirmed; the sandbox's webhook arrives too and changes nothing more.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ROOT, approve, expect
from tests.subprocesses import free_port, stop, wait_for_url, wait_until

pytestmark = pytest.mark.heavy


@dataclass
class PaymentsShop:
    url: str
    database: Path
    log: Path

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10) as db:
            return list(db.execute(sql, params))


@contextlib.contextmanager
def served(folder: Path) -> Iterator[PaymentsShop]:
    port = free_port()
    database = folder / "payments-shop.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.browser.payments_settings",
            "ETPAY_TEST_DB": "sqlite",
            "PYTHONPATH": str(ROOT),
            "SHOP_PORT": str(port),
            "SHOP_DATABASE": str(database),
            "PYTHONUNBUFFERED": "1",
        }
    )
    manage = [sys.executable, "-m", "django"]
    migrated = subprocess.run(  # noqa: S603 - fixed argv
        [*manage, "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr
    log_path = folder / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_url(f"http://127.0.0.1:{port}/etpay/notification/")
            yield PaymentsShop(f"http://localhost:{port}", database, log_path)
        finally:
            stop(process)


@pytest.fixture(scope="module")
def payments_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaymentsShop]:
    with served(tmp_path_factory.mktemp("payments-shop")) as shop:
        yield shop


def test_a_django_payments_order_is_paid_through_etpay_in_the_sandbox(
    page: Any, payments_shop: PaymentsShop
) -> None:
    shop = payments_shop
    page.goto(f"{shop.url}/shop/checkout/")
    page.wait_for_url(re.compile(rf"^{re.escape(shop.url)}/shop/payments/\d+/$"))
    pk = int(page.url.rstrip("/").split("/")[-1])
    page.get_by_role("button", name="Pagar con ETpay").click()

    # ETpay's payment page: the sandbox's funnel, for the payment's amount.
    page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/sandbox/session/"))
    expect(page.get_by_role("heading", name="Pagar $15.990 CLP")).to_be_visible()
    [(token, status)] = shop.query("SELECT token, status FROM paymentsshop_payment")
    assert status == "input"
    [(order, amount, metadata)] = shop.query(
        "SELECT merchant_order_id, order_amount, metadata FROM django_etpay_paymentsession"
    )
    assert (order, amount) == (token, 15990)
    assert f'"value": "{pk}"' in metadata

    approve(page)

    # Back through django-payments' process URL to the success page.
    page.wait_for_url(f"{shop.url}/shop/payments/{pk}/thanks/")
    expect(page.locator("#payment-status")).to_have_text("confirmed")
    [(status, captured, transaction_id)] = shop.query(
        "SELECT status, captured_amount, transaction_id FROM paymentsshop_payment"
    )
    assert status == "confirmed"
    assert int(float(captured)) == 15990
    [(session_status, payment_token)] = shop.query(
        "SELECT status, payment_token FROM django_etpay_paymentsession"
    )
    assert session_status == "paid"
    assert transaction_id == payment_token != ""

    # The sandbox's webhook reaches the shop as well: recorded as a repeat, nothing changes.
    def webhook_recorded() -> bool:
        return bool(
            shop.query("SELECT 1 FROM django_etpay_notification WHERE channel = 'webhook'")
        )

    wait_until(webhook_recorded, "the sandbox's webhook")
    channels = dict(
        shop.query("SELECT channel, outcome FROM django_etpay_notification ORDER BY id")
    )
    assert sorted(channels.values()) == ["accepted", "duplicate"]
    assert shop.query("SELECT state FROM django_etpay_outboxeffect") == [("done",)]
    assert shop.query("SELECT status FROM paymentsshop_payment") == [("confirmed",)]
