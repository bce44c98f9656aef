"""The example shop's single-page checkout (``/spa/``) in Chromium: JSON calls to the shop and
to django-etpay's REST API, the payment in the widget (or on the payment page when the loader
cannot be had), and the session's status polled until ETpay's result is in.

Runs on the shared fixtures of ``conftest.py``: the example shop under a strict
Content-Security-Policy, its sandbox on another origin, pages in Chilean Spanish, and any
console error failing the test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Shop, funnel_frame

pytestmark = pytest.mark.heavy

SESSIONS = "/etpay/api/sessions/"


def open_spa(page: Any, shop: Shop) -> None:
    page.goto(f"{shop.url}/spa/")


def fill_checkout(page: Any, *, product: str, email: str, quantity: int, bank: str = "") -> None:
    page.select_option("select[name=product]", product)
    page.fill("input[name=email]", email)
    page.fill("input[name=quantity]", str(quantity))
    page.select_option("select[name=user_bank_code]", bank)


def pay_and_capture(page: Any, button: str = "#spa-pay") -> dict[str, Any]:
    """Click ``button``; return the API's reply to the session request, as the browser got it."""
    with page.expect_response(lambda r: r.url.endswith(SESSIONS)) as created:
        page.click(button)
    reply = created.value
    assert reply.status == 201, reply.text()
    body: dict[str, Any] = reply.json()
    return body


def without_the_widget_loader(page: Any) -> None:
    """Make the loader unreachable, as a blocked or missing script is: the page must fall
    back to ETpay's payment page."""
    page.route("**/static/django_etpay/widget.js", lambda route: route.abort())
    page.allowed_errors.append("net::ERR_FAILED")  # the console reports the failed load


def decide(funnel: Any, action: str) -> None:
    """Approve or reject on the sandbox's payment page (a page or a frame), as a payer does."""
    button = funnel.locator(f"button[name=action][value={action}]")
    button.wait_for()  # the page (or frame) has loaded
    funnel.locator("input[name=rut]").fill("11.111.111-1")
    button.click()


def status_box(page: Any, state: str) -> Any:
    box = page.locator(f"#spa-status[data-state={state}]")
    box.wait_for()
    return box


def test_pay_in_the_widget_without_leaving_the_page(
    page: Any, shop: Shop, screenshot: Callable[[Any, str], Path]
) -> None:
    open_spa(page, shop)
    fill_checkout(page, product="taza-ceramica", email="ana@example.cl", quantity=2)

    session = pay_and_capture(page)

    # The amount is the shop's (2 x $12.990), whatever the page could have sent.
    assert session["order_amount"] == 25980
    assert session["amount_display"] == "$25.980"
    assert session["status"] == "pending"
    assert "signature_token" not in json.dumps(session)
    number = session["merchant_order_id"]
    # The loader opens the funnel in its dialog, on the shop's own page.
    dialog = page.locator("dialog.etpay-dialog")
    dialog.wait_for()
    assert page.url == f"{shop.url}/spa/"
    funnel_frame(page).locator("button[name=action][value=approve]").wait_for()
    screenshot(page, "spa-widget")
    decide(funnel_frame(page), "approve")

    # The loader confirms the result and returns to the page, which polls the status.
    page.wait_for_url(f"{shop.url}/spa/?order={number}")
    box = status_box(page, "paid")
    assert "Pago confirmado" in box.inner_text()
    screenshot(page, "spa-paid")
    assert number in box.inner_text()
    assert shop.order_status(number) == "paid"


def test_without_the_loader_the_payment_page_is_used(page: Any, shop: Shop) -> None:
    without_the_widget_loader(page)
    open_spa(page, shop)
    fill_checkout(page, product="taza-ceramica", email="ana@example.cl", quantity=1, bank="cl_bci")

    session = pay_and_capture(page)
    number = session["merchant_order_id"]

    # No loader: the page goes to ETpay's payment page itself, bank preselected.
    page.wait_for_url(f"{shop.sandbox_url}/session/{session['token']}")
    assert "Bci" in page.content()
    decide(page, "approve")
    # Back through django_etpay's return view to the shop's order page.
    page.wait_for_url(re.compile(rf"^{re.escape(shop.url)}/orders/{number}/"))
    # The single page, opened again in the same tab, polls the session through the API.
    open_spa(page, shop)
    assert number in status_box(page, "paid").inner_text()
    assert shop.order_status(number) == "paid"


def test_a_rejected_payment_offers_to_pay_again(page: Any, shop: Shop) -> None:
    without_the_widget_loader(page)
    open_spa(page, shop)
    fill_checkout(page, product="cafe-de-grano", email="bea@example.cl", quantity=1)
    first = pay_and_capture(page)
    page.wait_for_url(re.compile(r"/sandbox/session/"))
    decide(page, "reject")
    page.wait_for_url(re.compile(r"/orders/"))

    open_spa(page, shop)
    status_box(page, "failed")
    second = pay_and_capture(page, "#spa-pay-again")

    assert second["merchant_order_id"] == first["merchant_order_id"]
    assert second["token"] != first["token"]
    page.wait_for_url(re.compile(r"/sandbox/session/"))
    decide(page, "approve")
    page.wait_for_url(re.compile(r"/orders/"))
    assert shop.order_status(first["merchant_order_id"]) == "paid"


def test_form_errors_are_shown_on_their_fields(page: Any, shop: Shop) -> None:
    page.allowed_errors.append("400")  # the console reports the refused order
    open_spa(page, shop)
    fill_checkout(page, product="taza-ceramica", email="not-an-address", quantity=1)
    with page.expect_response(lambda r: r.url.endswith("/spa/orders/")) as refused:
        page.click("#spa-pay")
    assert refused.value.status == 400
    page.locator("[data-error-for=email]:not(:empty)").wait_for()
    assert page.locator("[data-error-for=quantity]").inner_text() == ""
    assert page.locator("#spa-pay").is_enabled()
    assert page.locator("#spa-status").is_hidden()


def test_the_browser_cannot_choose_the_amount_or_pay_for_someone_else(
    new_page: Any, shop: Shop
) -> None:
    page = new_page()
    without_the_widget_loader(page)
    open_spa(page, shop)
    fill_checkout(page, product="prensa-francesa", email="ana@example.cl", quantity=1)
    session = pay_and_capture(page)
    number = session["merchant_order_id"]
    page.wait_for_url(re.compile(r"/sandbox/session/"))
    open_spa(page, shop)

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

    stranger = new_page()
    open_spa(stranger, shop)
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
    stranger.allowed_errors.append("404")  # the console reports both refusals

    # The first visitor still sees their own session; without the CSRF token (as a cross-site
    # page would post with their cookies) they cannot create one.
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
    page.allowed_errors.extend(["400", "403"])
