"""Every answer the widget can get from the shop's widget-result view, in a real browser.

The payer approves in the framed sandbox funnel; the reply of ``widget-result`` is either the
real one (a system error) or replaced through Playwright's routing (what a reply that proves
nothing, a server error, a lost connection or a stalled server look like to the page). Each
case must end somewhere: a clear message, then the order page, or a retry that pays.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.browser.conftest import Shop, approve, buy, expect, funnel_frame, wait_for_order_page

pytestmark = pytest.mark.heavy


RESULT_URL = "**/etpay/widget-result/"
UNKNOWN = (
    "No pudimos confirmar este pago aquí. Si se descontó dinero de tu cuenta, la tienda "
    "recibirá la confirmación de ETpay directamente."
)


def message(page: Any) -> Any:
    return page.locator(".etpay-dialog__message")


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            {
                "status": 200,
                "content_type": "application/json",
                "body": json.dumps(
                    {"status": "unknown", "outcome": "duplicate", "redirect_url": None}
                ),
            },
            id="proves-nothing",
        ),
        pytest.param(
            {
                "status": 400,
                "content_type": "application/json",
                "body": json.dumps(
                    {"status": "unknown", "outcome": "rejected", "redirect_url": None}
                ),
            },
            id="rejected",
        ),
        pytest.param(
            {"status": 500, "content_type": "text/html", "body": "<h1>Server Error</h1>"},
            id="server-error",
        ),
        pytest.param(
            {"status": 403, "content_type": "text/html", "body": "<h1>Forbidden</h1>"},
            id="csrf-refused",
        ),
    ],
)
def test_a_reply_that_confirms_nothing_says_so_then_goes_to_the_order_page(
    page: Any, shop: Shop, screenshot: Any, reply: dict[str, Any], request: Any
) -> None:
    page.allowed_errors = [f"status of {reply['status']}"]
    page.route(RESULT_URL, lambda route: route.fulfill(**reply))
    number = buy(page, shop)
    approve(funnel_frame(page))
    expect(message(page)).to_have_text(UNKNOWN)
    expect(page.get_by_role("button", name="Continuar")).to_be_visible()
    if request.node.callspec.id == "proves-nothing":
        screenshot(page, "widget-unknown")
    wait_for_order_page(page, shop, number)


def test_a_system_error_confirms_nothing_then_the_order_page_offers_to_pay_again(
    page: Any, shop: Shop, screenshot: Any
) -> None:
    number = buy(page, shop)
    funnel = funnel_frame(page)
    funnel.get_by_text("Simular un problema (solo sandbox)").click()
    funnel.locator("input[value='system_error']").check()
    approve(funnel)
    # ETpay's system-error JWT is signed with the public session token: it proves nothing, so
    # widget-result answers status "unknown" and the loader says it could not confirm.
    expect(message(page)).to_have_text(UNKNOWN)
    wait_for_order_page(page, shop, number)
    expect(page.get_by_text("ETpay informó un problema técnico con este pago.")).to_be_visible()
    assert page.locator("meta[http-equiv='refresh']").count() == 0
    screenshot(page, "order-problem")
    page.get_by_role("button", name="Pagar de nuevo").click()
    approve(funnel_frame(page))
    wait_for_order_page(page, shop, number)
    expect(page.locator("#order-status")).to_have_text("Pagado")


def test_a_lost_connection_offers_a_retry_that_pays(page: Any, shop: Shop) -> None:
    page.route(RESULT_URL, lambda route: route.abort("connectionreset"))
    number = buy(page, shop)
    approve(funnel_frame(page))
    expect(message(page)).to_have_text(
        "No pudimos comunicarnos con la tienda para confirmar tu pago."
    )
    page.allowed_errors = ["net::ERR_CONNECTION_RESET"]
    page.unroute(RESULT_URL)
    page.get_by_role("button", name="Intentar de nuevo").click()
    wait_for_order_page(page, shop, number)
    expect(page.locator("#order-status")).to_have_text("Pagado")


def test_a_stalled_shop_times_out_and_offers_a_retry_that_pays(
    page: Any, shop: Shop, screenshot: Any
) -> None:
    held: list[Any] = []
    page.route(RESULT_URL, lambda route: held.append(route))
    number = buy(page, shop)
    approve(funnel_frame(page))
    expect(message(page)).to_have_text("Confirmando tu pago…")
    expect(page.get_by_role("button", name="Cerrar")).to_be_disabled()
    screenshot(page, "widget-confirming")
    # ETPAY["WIDGET_RESULT_TIMEOUT"] is 4 s in the served shop.
    expect(message(page)).to_have_text(
        "La tienda tardó demasiado en confirmar tu pago.", timeout=15_000
    )
    page.unroute(RESULT_URL)
    page.get_by_role("button", name="Intentar de nuevo").click()
    wait_for_order_page(page, shop, number)
    expect(page.locator("#order-status")).to_have_text("Pagado")
    assert len(held) == 1


def test_the_funnel_keeps_the_rut_after_an_error_inside_the_widget(
    page: Any, shop: Shop, screenshot: Any
) -> None:
    # The funnel answers a form with an error with HTTP 400.
    page.allowed_errors = ["status of 400 (Bad Request)"]
    number = buy(page, shop)
    funnel = funnel_frame(page)
    funnel.get_by_role("button", name="Aprobar pago").click()
    expect(funnel.get_by_role("alert")).to_have_text("Ingresa tu RUT.")
    funnel.get_by_label("RUT").fill("11.111.111-2")
    funnel.get_by_role("button", name="Aprobar pago").click()
    expect(funnel.get_by_role("alert")).to_have_text(
        "El RUT tiene un dígito verificador incorrecto."
    )
    expect(funnel.get_by_label("RUT")).to_have_value("11.111.111-2")
    screenshot(page, "funnel-rut-error")
    approve(funnel)
    wait_for_order_page(page, shop, number)
    expect(page.locator("#order-status")).to_have_text("Pagado")
