"""The payer's side in a real browser: the example shop, its widget and the sandbox funnel.

The shop runs on ``localhost`` and the sandbox on ``127.0.0.1`` (two origins), every shop page
under a strict CSP with nonces, and Chromium enforces the funnel's ``frame-ancestors``: what
passes here works framed for real, not only in the HTML.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import (
    Shop,
    approve,
    buy,
    expect,
    funnel_frame,
    wait_for_order_page,
)

pytestmark = pytest.mark.heavy


def dialog(page: Any) -> Any:
    return page.get_by_role("dialog")


def expect_paid(page: Any, shop: Shop, number: str) -> None:
    wait_for_order_page(page, shop, number)
    expect(page.locator("#order-status")).to_have_text("Pagado")
    assert shop.order_status(number) == "paid"


def record_events(page: Any) -> None:
    """Collect the widget's events in ``window.etpayEvents`` (reason of each ignored one)."""
    page.evaluate(
        """() => {
            window.etpayEvents = [];
            for (const name of ["etpay:ignored", "etpay:result", "etpay:fallback",
                                "etpay:close", "etpay:ready"]) {
                document.addEventListener(name, (event) => window.etpayEvents.push(
                    name + ":" + (event.detail.reason || event.detail.kind || "")));
            }
        }"""
    )


def wait_for_event(page: Any, event: str) -> None:
    page.wait_for_function("(e) => (window.etpayEvents || []).includes(e)", arg=event)


def test_pay_through_the_widget(
    page: Any, shop: Shop, screenshot: Any, screenshot_dir: Path
) -> None:
    page.goto(f"{shop.url}/")
    screenshot(page, "shop-products")
    number = buy(page, shop, quantity=2)
    # The checkout opened the dialog on the shop's own page, with the funnel framed in it.
    expect(dialog(page)).to_be_visible()
    expect(dialog(page)).to_have_accessible_name("Pagar con ETpay")
    expect(page.locator(".etpay-dialog__summary")).to_have_text(f"Pedido {number}: $25.980 CLP")
    funnel = funnel_frame(page)
    expect(funnel.get_by_role("heading", name="Pagar $25.980 CLP")).to_be_visible()
    expect(page.locator(".etpay-dialog__status")).to_be_hidden()
    funnel.get_by_label("Banco de Chile").check()
    funnel.get_by_label("RUT").fill("11.111.111-1")
    screenshot(page, "widget-dialog")

    started = time.perf_counter()
    funnel.get_by_role("button", name="Aprobar pago").click()
    expect_paid(page, shop, number)
    elapsed = time.perf_counter() - started
    screenshot(page, "order-paid")

    (screenshot_dir / "widget-timing.json").write_text(
        json.dumps({"approve_to_success_page_seconds": round(elapsed, 3)})
    )
    print(f"\nApprove -> shop success page through the widget: {elapsed * 1000:.0f} ms")
    # The result came through the widget (and the webhook), each recorded once.
    channels = {
        row[0]
        for row in shop.query(
            "SELECT n.channel FROM django_etpay_notification n "
            "JOIN django_etpay_paymentsession s ON s.id = n.session_id "
            "WHERE s.merchant_order_id = ?",
            (number,),
        )
    }
    assert "widget" in channels


def test_pay_through_the_redirect_button(page: Any, shop: Shop, screenshot: Any) -> None:
    number = buy(page, shop)
    page.keyboard.press("Escape")
    expect(dialog(page)).to_be_hidden()
    screenshot(page.locator(".alternatives"), "pay-button")
    page.get_by_role("link", name="Ir a la página de pago de ETpay").click()
    page.wait_for_url(f"{shop.sandbox_url}/session/*")
    expect(page.get_by_text("ETpay sandbox - sin dinero real")).to_be_visible()
    screenshot(page, "funnel-full-page")
    approve(page)
    expect_paid(page, shop, number)


def test_reject_then_cancel_then_pay(page: Any, shop: Shop, screenshot: Any) -> None:
    number = buy(page, shop)
    funnel = funnel_frame(page)
    funnel.get_by_label("RUT").fill("11.111.111-1")
    funnel.get_by_role("button", name="Rechazar").click()
    # The failure is shown, then the payer lands on the order page with a way on.
    expect(page.locator(".etpay-dialog__message")).to_have_text(
        "El pago no se completó. No se cobró dinero."
    )
    wait_for_order_page(page, shop, number)
    expect(page.locator("#order-status")).to_have_text("Pago fallido")
    screenshot(page, "order-failed")
    page.get_by_role("button", name="Pagar de nuevo").click()
    # A new session, the widget open again; this time the payer cancels in the funnel.
    expect(dialog(page)).to_be_visible()
    funnel_frame(page).get_by_role("button", name="Cancelar y volver a la tienda").click()
    wait_for_order_page(page, shop, number)
    expect(page.locator("#order-status")).to_have_text("Pago fallido")
    page.get_by_role("button", name="Pagar de nuevo").click()
    approve(funnel_frame(page))
    expect_paid(page, shop, number)


def test_close_midway_and_pay_again(page: Any, shop: Shop) -> None:
    number = buy(page, shop)
    record_events(page)
    funnel = funnel_frame(page)
    funnel.get_by_label("RUT").fill("11.111.111-1")
    page.keyboard.press("Escape")
    expect(dialog(page)).to_be_hidden()
    opener = page.get_by_role("link", name="Pagar con ETpay")
    expect(opener).to_be_focused()
    # Open again with the keyboard, close with the close button.
    opener.press("Enter")
    expect(dialog(page)).to_be_visible()
    expect(page.get_by_role("button", name="Cerrar")).to_be_focused()
    page.get_by_role("button", name="Cerrar").click()
    expect(dialog(page)).to_be_hidden()
    assert shop.order_status(number) == "pending"
    opener.click()
    approve(funnel_frame(page))
    expect_paid(page, shop, number)


def test_forged_messages_are_ignored(page: Any, shop: Shop) -> None:
    number = buy(page, shop)
    record_events(page)
    expect(page.locator(".etpay-dialog__status")).to_be_hidden()  # the funnel said "ready"
    posts: list[str] = []
    page.on(
        "request",
        lambda request: posts.append(request.url) if "widget-result" in request.url else None,
    )
    config = json.loads(page.locator("script[type='application/json']").text_content())
    token = config["sessionToken"]

    def jwt_for(session_token: str) -> str:
        payload = json.dumps({"session_token": session_token, "payment_status": True})
        encoded = page.evaluate(
            "(p) => btoa(p).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '')",
            payload,
        )
        return f"eyJhbGciOiJIUzI1NiJ9.{encoded}.c2ln"

    forged = {"type": "etpay:result", "session_token": token, "payment": jwt_for(token)}

    # 1. Another origin: the shop's page itself, and a page on a foreign origin (the shop's
    #    CSP frame-src keeps such a frame out, so its message event is built in the page).
    page.evaluate("(m) => window.postMessage(m, '*')", forged)
    wait_for_event(page, "etpay:ignored:origin")
    page.evaluate("() => { window.etpayEvents = []; }")
    page.evaluate(
        """(m) => window.dispatchEvent(new MessageEvent("message",
               {data: m, origin: "http://evil.example", source: window}))""",
        forged,
    )
    wait_for_event(page, "etpay:ignored:origin")

    # 2. The funnel's origin, but another window than the widget's frame.
    page.route(
        f"{shop.sandbox_url}/forged",
        lambda route: route.fulfill(
            content_type="text/html",
            body=f"<script>parent.postMessage({json.dumps(forged)}, '*');</script>",
        ),
    )
    page.evaluate(
        """(url) => { const f = document.createElement('iframe');
                      f.src = url; document.body.appendChild(f); }""",
        f"{shop.sandbox_url}/forged",
    )
    wait_for_event(page, "etpay:ignored:source")

    # 3. From the funnel's own frame, but for another session (named in the message, or in
    #    the JWT's claims).
    funnel = next(frame for frame in page.frames if "/sandbox/session/" in frame.url)
    funnel.evaluate(
        "(m) => parent.postMessage(m, '*')", {**forged, "session_token": "another-session"}
    )
    wait_for_event(page, "etpay:ignored:session")
    page.evaluate("() => { window.etpayEvents = []; }")
    funnel.evaluate(
        "(m) => parent.postMessage(m, '*')", {**forged, "payment": jwt_for("another-session")}
    )
    wait_for_event(page, "etpay:ignored:session")

    assert posts == []
    expect(dialog(page)).to_be_visible()
    expect(page.locator(".etpay-dialog__status")).to_be_hidden()
    assert shop.order_status(number) == "pending"
    approve(funnel_frame(page))
    expect_paid(page, shop, number)
    assert len(posts) == 1


def test_javascript_disabled_falls_back_to_the_redirect(new_page: Any, shop: Shop) -> None:
    page = new_page(java_script_enabled=False)
    number = buy(page, shop)
    expect(dialog(page)).to_have_count(0)
    page.get_by_role("link", name="Pagar con ETpay").click()
    page.wait_for_url(f"{shop.sandbox_url}/session/*")
    approve(page)
    expect_paid(page, shop, number)
    # No JavaScript, so the order page looks again by itself through a meta refresh only
    # while it waits; a paid order has none.
    assert page.locator("meta[http-equiv='refresh']").count() == 0


def test_a_360_px_phone(new_page: Any, shop: Shop, screenshot: Any) -> None:
    page = new_page(
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    number = buy(page, shop)
    expect(dialog(page)).to_be_visible()
    funnel = funnel_frame(page)
    expect(funnel.get_by_role("button", name="Aprobar pago")).to_be_visible()
    box = dialog(page).bounding_box()
    frame_box = page.locator("iframe.etpay-dialog__frame").bounding_box()
    close_box = page.get_by_role("button", name="Cerrar").bounding_box()
    assert box["x"] >= 0, box
    assert box["x"] + box["width"] <= 360.5, box
    assert box["height"] <= 740.5, box
    assert frame_box["width"] >= 340, frame_box
    assert close_box["width"] >= 44, close_box  # a fingertip
    assert close_box["height"] >= 44, close_box
    assert close_box["x"] + close_box["width"] <= 360.5
    # Nothing inside the funnel overflows sideways.
    overflow = (
        next(f for f in page.frames if f.url.startswith(shop.sandbox_url))
        .locator("html")
        .evaluate("(el) => el.scrollWidth - el.clientWidth")
    )
    assert overflow <= 0
    screenshot(page, "widget-phone-360")
    funnel.get_by_label("RUT").fill("11.111.111-1")
    # The phone keyboard's "Go" key submits the form with its first button, Approve.
    funnel.get_by_label("RUT").press("Enter")
    expect_paid(page, shop, number)


def test_a_refused_frame_falls_back_to_the_full_page(page: Any, shop: Shop) -> None:
    """A funnel that refuses to be framed: the loader sends the payer to it in the window."""
    page.allowed_errors = ["frame-ancestors", "Refused to display"]

    def refuse(route: Any) -> None:
        if route.request.frame.parent_frame is None:
            route.continue_()  # the full-page visit after the fallback
            return
        response = route.fetch()
        headers = {**response.headers, "content-security-policy": "frame-ancestors 'none'"}
        route.fulfill(response=response, headers=headers)

    page.route(re.compile(re.escape(shop.sandbox_url) + r"/session/[^/]+$"), refuse)
    number = buy(page, shop)
    page.wait_for_url(f"{shop.sandbox_url}/session/*")
    expect(page.get_by_role("button", name="Aprobar pago")).to_be_visible()
    approve(page)
    expect_paid(page, shop, number)


def test_bank_buttons_open_the_funnel_at_that_bank(page: Any, shop: Shop, screenshot: Any) -> None:
    number = buy(page, shop)
    page.keyboard.press("Escape")
    screenshot(page.locator(".etpay-banks"), "bank-buttons")
    page.get_by_role("button", name="BancoEstado").click()
    expect(dialog(page)).to_be_visible()
    funnel = funnel_frame(page)
    expect(funnel.get_by_text("Banco: BancoEstado")).to_be_visible()
    expect(funnel.get_by_role("radio")).to_have_count(0)
    approve(funnel)
    expect_paid(page, shop, number)
    banks = shop.query(
        "SELECT user_bank_code FROM django_etpay_paymentsession WHERE merchant_order_id = ? "
        "ORDER BY id",
        (number,),
    )
    assert [row[0] for row in banks] == ["", "cl_estado"]


def test_the_return_page_leads_back_to_the_shop(page: Any, shop: Shop, screenshot: Any) -> None:
    """django_etpay's own return page (no JWT on the URL, so the result is not known)."""
    page.goto(f"{shop.url}/etpay/return/")
    expect(page.get_by_role("heading")).to_have_text("Aún no conocemos el resultado del pago")
    screenshot(page, "return-page")
    page.get_by_role("link", name="Volver a la tienda").click()
    page.wait_for_url(f"{shop.url}/")
    expect(page.get_by_role("heading", name="Productos")).to_be_visible()


def test_the_funnel_lets_only_the_shops_own_origin_frame_it(page: Any, shop: Shop) -> None:
    """The sandbox's frame-ancestors, enforced by Chromium: a session opened from the shop at
    127.0.0.1 may be framed there, and not by the same shop reached as localhost."""
    page.allowed_errors = ["frame-ancestors"]
    other = shop.url.replace("localhost", "127.0.0.1")
    page.goto(f"{other}/")
    page.locator("form[action='/checkout/taza-ceramica/'] button").click()
    expect(dialog(page)).to_be_visible()
    funnel_url = page.locator(".etpay-widget__open").get_attribute("href")
    # Framed by its own shop (127.0.0.1): the funnel loads and says it is ready.
    expect(funnel_frame(page).get_by_role("button", name="Aprobar pago")).to_be_visible()
    expect(page.locator(".etpay-dialog__status")).to_be_hidden()

    page.goto(f"{shop.url}/")  # the same shop, another origin
    with page.expect_console_message(lambda message: "frame-ancestors" in message.text):
        page.evaluate(
            """(url) => { const f = document.createElement('iframe'); f.id = 'probe';
                          f.src = url; document.body.appendChild(f); }""",
            funnel_url,
        )
    expect(page.frame_locator("#probe").get_by_role("button")).to_have_count(0)
    assert not [frame for frame in page.frames if frame.url == funnel_url]
