"""The admin lists, rendered by a real browser at 1280 px: every column fits, nothing scrolls
sideways."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.factories import make_session

pytestmark = [pytest.mark.heavy, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The same browser and variables as tests/browser/ (Debian's chromium; ETPAY_CHROMIUM names
# another one, ETPAY_SCREENSHOT_DIR keeps the screenshots).
CHROMIUM = os.environ.get("ETPAY_CHROMIUM", "/usr/bin/chromium")
WIDTH = 1280


@pytest.fixture
def admin_page(live_server: Any, rows: None) -> Iterator[Any]:
    """Chromium, ``WIDTH`` pixels wide, signed in to the admin as staff."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"No Chromium at {CHROMIUM}: apt-get install chromium, or set ETPAY_CHROMIUM.")
    # Playwright's sync API runs an event loop: every database write happens before it starts.
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        tab = browser.new_page(viewport={"width": WIDTH, "height": 900})
        tab.goto(f"{live_server.url}/admin/login/")
        tab.fill("#id_username", "staff")
        tab.fill("#id_password", "pw-for-tests")
        tab.click("input[type=submit]")
        tab.base = live_server.url
        yield tab
        browser.close()


@pytest.fixture
def rows(settings: Any) -> None:
    settings.ETPAY = {
        **settings.ETPAY,
        "MERCHANTS": {
            "outlet-santiago-centro": {
                "MERCHANT_CODE": "cl_outlet",
                "MERCHANT_API_TOKEN": "outlet-token",
                "API_URL": "https://api.outlet.test",
                "PMT_URL": "https://pmt.outlet.test",
            }
        },
    }
    User.objects.create_superuser("staff", "staff@example.com", "pw-for-tests")
    statuses = list(PaymentSession.Status)
    for i in range(30):
        session = make_session(
            merchant_order_id=("OC-" + "7" * 61) if i == 0 else f"OC-{700100 + i}",
            order_amount=1_234_567_890 if i == 1 else 6990 * (i + 1),
            status=statuses[i % len(statuses)],
            needs_reconciliation=i % 4 == 0,
            outcome_unknown=i % 7 == 0,
            merchant="outlet-santiago-centro" if i % 3 == 0 else "",
        )
        Notification.objects.create(
            session=session,
            channel=Notification.Channel.WEBHOOK,
            outcome=Notification.Outcome.DUPLICATE,
            reason=Notification.Reason.BROWSER_NOT_TRUSTED,
            result=Notification.Result.SUCCESS,
            remote_addr="2001:db8:85a3::8a2e:370:7334",
        )
        OutboxEffect.objects.create(
            kind=OutboxEffect.Kind.PAYMENT_COMPLETED,
            session=session,
            state=OutboxEffect.State.FAILED,
            attempts=10,
            lease_until=timezone.now(),
            delivered_at=timezone.now(),
        )


@pytest.mark.parametrize(
    "path",
    [
        "/admin/django_etpay/paymentsession/",
        "/admin/django_etpay/notification/",
        "/admin/django_etpay/outboxeffect/",
    ],
)
def test_changelists_fit_in_1280_px(admin_page: Any, path: str) -> None:
    admin_page.goto(admin_page.base + path)
    assert admin_page.locator("#result_list tbody tr").count() > 0
    if os.environ.get("ETPAY_SCREENSHOT_DIR"):
        name = path.strip("/").replace("/", "-")
        admin_page.screenshot(path=f"{os.environ['ETPAY_SCREENSHOT_DIR']}/{name}.png")
    # Django's navigation sidebar is open (its default) and the filter column shown.
    assert admin_page.locator("#nav-sidebar").is_visible()
    widths = admin_page.evaluate(
        """() => {
            const results = document.querySelector('#changelist .results');
            return {
                document: document.documentElement.scrollWidth,
                results: results.clientWidth,
                table: results.scrollWidth,
            };
        }"""
    )
    assert widths["document"] <= WIDTH, widths
    # No column hidden behind a sideways scroll bar.
    assert widths["table"] <= widths["results"], widths
