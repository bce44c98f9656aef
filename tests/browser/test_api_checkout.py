"""The example shop's single-page checkout in a real browser (Playwright + Debian chromium):
JSON calls to the shop and to django-etpay's REST API, the payment through the sandbox, and
the status polled until ETpay's result is in."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser._api_support import WIDGET_LOADER, Shop, chromium, serve_shop

pytestmark = pytest.mark.heavy

SESSIONS = "/etpay/api/sessions/"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with serve_shop(tmp_path_factory.mktemp("spa-shop")) as served:
        yield served


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def browser_context(playwright: Any, tmp_path: Path) -> Iterator[Any]:
    with chromium(playwright, tmp_path / "profile", viewport={"width": 1024, "height": 800}) as c:
        yield c


@pytest.fixture
def another_browser(playwright: Any, tmp_path: Path) -> Iterator[Any]:
    """A second, unrelated visitor."""
    with chromium(playwright, tmp_path / "other-profile") as context:
        yield context


def order_status(shop: Shop, number: str) -> str:
    rows = shop.query("SELECT status FROM shop_order WHERE number = ?", number)
    return str(rows[0][0]) if rows else ""


def fill_checkout(page: Any, *, product: str, email: str, quantity: int, bank: str = "") -> None:
    page.select_option("select[name=product]", product)
    page.fill("input[name=email]", email)
    page.fill("input[name=quantity]", str(quantity))
    page.select_option("select[name=user_bank_code]", bank)


def pay_and_capture(page: Any) -> dict[str, Any]:
    """Click "Pay", return the API's reply to the session request (read by the browser)."""
    with page.expect_response(lambda r: r.url.endswith(SESSIONS)) as created:
        page.click("#spa-pay")
    reply = created.value
    assert reply.status == 201, reply.text()
    body: dict[str, Any] = reply.json()
    return body


def without_the_widget_loader(page: Any) -> None:
    """Make the loader unreachable, as a blocked or missing script is: the page must fall
    back to ETpay's payment page."""
    page.route("**/static/django_etpay/widget.js", lambda route: route.abort())


def approve_or_reject(page: Any, action: str) -> None:
    page.wait_for_url(re.compile(r"/sandbox/session/"))
    decide(page, action)


def decide(funnel: Any, action: str) -> None:
    """Approve or reject on the sandbox's payment page (a page or a frame), as a payer does."""
    button = funnel.locator(f"button[name=action][value={action}]")
    button.wait_for()  # the page (or frame) has loaded
    rut = funnel.locator("input[name=rut]")
    if rut.count() and rut.is_editable():
        rut.fill("11.111.111-1")
    button.click()


def test_pay_through_the_payment_page_and_see_it_confirmed(
    shop: Shop, browser_context: Any
) -> None:
    page = browser_context.new_page()
    without_the_widget_loader(page)
    page.goto(shop.url("/spa/"))
    fill_checkout(page, product="taza-ceramica", email="ana@example.cl", quantity=2, bank="cl_bci")

    session = pay_and_capture(page)

    # The amount is the shop's (2 x $12.990), whatever the page could have sent.
    assert session["order_amount"] == 25980
    assert session["amount_display"] == "$25.980"
    assert session["status"] == "pending"
    assert "signature_token" not in json.dumps(session)
    assert session["widget"]["paymentUrl"] == session["payment_url"]
    number = session["merchant_order_id"]
    # No loader: the page goes to ETpay's payment page, bank preselected.
    page.wait_for_url(re.compile(r"/sandbox/session/"))
    assert "Bci" in page.content()
    approve_or_reject(page, "approve")

    # Back through django_etpay's return view to the shop; the webhook marks the order paid.
    page.wait_for_url(re.compile(rf"/orders/{number}/"))
    shop.wait_for("the order to be paid", lambda: order_status(shop, number) == "paid")
    # The single page polls the session through the API and shows the result.
    page.goto(shop.url("/spa/"))
    status = page.locator("#spa-status")
    status.locator("[data-slot=message]").filter(has_text="Payment confirmed").wait_for()
    assert status.get_attribute("data-state") == "paid"
    assert number in status.inner_text()


def test_a_rejected_payment_offers_to_pay_again(shop: Shop, browser_context: Any) -> None:
    page = browser_context.new_page()
    without_the_widget_loader(page)
    page.goto(shop.url("/spa/"))
    fill_checkout(page, product="cafe-de-grano", email="bea@example.cl", quantity=1)
    first = pay_and_capture(page)
    approve_or_reject(page, "reject")
    page.wait_for_url(re.compile(r"/orders/"))

    page.goto(shop.url("/spa/"))
    page.locator("#spa-status[data-state=failed]").wait_for()
    with page.expect_response(lambda r: r.url.endswith(SESSIONS)) as again:
        page.click("#spa-pay-again")
    second = again.value.json()
    assert again.value.status == 201
    assert second["merchant_order_id"] == first["merchant_order_id"]
    assert second["token"] != first["token"]
    approve_or_reject(page, "approve")
    number = first["merchant_order_id"]
    shop.wait_for("the order to be paid", lambda: order_status(shop, number) == "paid")


def test_form_errors_are_shown_on_their_fields(shop: Shop, browser_context: Any) -> None:
    page = browser_context.new_page()
    page.goto(shop.url("/spa/"))
    fill_checkout(page, product="taza-ceramica", email="not-an-address", quantity=1)
    page.click("#spa-pay")
    error = page.locator("[data-error-for=email]")
    error.filter(has_text="valid email").wait_for()
    assert page.locator("#spa-pay").is_enabled()
    assert page.locator("#spa-status").is_hidden()


def test_the_browser_cannot_choose_the_amount_or_pay_for_someone_else(
    shop: Shop, browser_context: Any, another_browser: Any
) -> None:
    page = browser_context.new_page()
    without_the_widget_loader(page)
    page.goto(shop.url("/spa/"))
    fill_checkout(page, product="prensa-francesa", email="ana@example.cl", quantity=1)
    session = pay_and_capture(page)
    number = session["merchant_order_id"]
    page.wait_for_url(re.compile(r"/sandbox/session/"))

    page.goto(shop.url("/spa/"))
    tampered = page.evaluate(
        """async (number) => {
            const csrf = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const reply = await fetch("/etpay/api/sessions/", {
                method: "POST", credentials: "same-origin",
                headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
                body: JSON.stringify({order: number, order_amount: 1}),
            });
            return {status: reply.status, body: await reply.json()};
        }""",
        number,
    )
    assert tampered["status"] == 400
    assert list(tampered["body"]) == ["order_amount"]

    stranger = another_browser.new_page()
    stranger.goto(shop.url("/spa/"))
    attempt = stranger.evaluate(
        """async ([number, statusUrl]) => {
            const csrf = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const create = await fetch("/etpay/api/sessions/", {
                method: "POST", credentials: "same-origin",
                headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
                body: JSON.stringify({order: number}),
            });
            const status = await fetch(statusUrl, {credentials: "same-origin"});
            return [create.status, status.status];
        }""",
        [number, session["status_url"]],
    )
    # Another visitor's order cannot be paid from their browser, nor its status seen.
    assert attempt == [404, 404]
    # The first visitor still sees their own session; without the CSRF token (as a
    # cross-site page would post with their cookies) they cannot create one.
    own = page.evaluate(
        """async ([number, statusUrl]) => {
            const status = await fetch(statusUrl, {credentials: "same-origin"});
            const forged = await fetch("/etpay/api/sessions/", {
                method: "POST", credentials: "same-origin",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({order: number}),
            });
            return [status.status, forged.status, (await forged.json()).detail];
        }""",
        [number, session["status_url"]],
    )
    assert own[:2] == [200, 403]
    assert own[2].startswith("CSRF Failed")


@pytest.mark.skipif(
    not WIDGET_LOADER.exists(),
    reason="the widget loader (django_etpay/widget.js) is not in this tree",
)
def test_pay_in_the_widget_without_leaving_the_page(shop: Shop, browser_context: Any) -> None:
    page = browser_context.new_page()
    page.goto(shop.url("/spa/"))
    fill_checkout(page, product="cafe-de-grano", email="cata@example.cl", quantity=3)
    session = pay_and_capture(page)
    number = session["merchant_order_id"]

    decide(page.frame_locator("dialog iframe"), "approve")

    # The loader confirms the result and returns to the page, which polls the status.
    page.wait_for_url(re.compile(rf"/spa/\?order={number}"))
    page.locator("#spa-status[data-state=paid]").wait_for()
    assert order_status(shop, number) == "paid"
