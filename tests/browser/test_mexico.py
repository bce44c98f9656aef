"""A Mexican shop in a real browser: the example shop with ``ETPAY_EXAMPLE_COUNTRY=MX`` and
its sandbox playing ETpay Mexico (MXN, CoDi/SPEI, the payer's phone prefilled)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Shop, expect, funnel_frame, wait_for_order_page

pytestmark = pytest.mark.heavy


def test_a_mexican_order_paid_by_spei_through_the_widget(
    new_page: Any, mexican_shop: Shop, screenshot: Any
) -> None:
    page = new_page(locale="es-MX")
    page.goto(f"{mexican_shop.url}/")
    form = page.locator("form[action='/checkout/taza-ceramica/']")
    # The catalogue is in Mexican pesos, written the Mexican way.
    expect(form.locator(".price")).to_contain_text(" MXN")
    expect(form.locator(".price")).to_contain_text(".00")
    form.get_by_label("Cantidad").fill("2")
    form.get_by_label("Celular").fill("961 668 9020")
    form.get_by_role("button", name="Comprar").click()
    page.wait_for_url(f"{mexican_shop.url}/orders/*/pay/")
    number = page.url.rstrip("/").split("/")[-2]
    amount = mexican_shop.query("SELECT amount FROM shop_order WHERE number = ?", (number,))[0][0]
    shown = f"${amount:,}.00 MXN"

    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(page.locator(".etpay-dialog__summary")).to_have_text(f"Pedido {number}: {shown}")
    funnel = funnel_frame(page)
    expect(funnel.get_by_role("heading", name=f"Pagar {shown}")).to_be_visible()
    # No RUT in Mexico; the phone the payer gave the shop is prefilled.
    expect(funnel.get_by_label("RUT")).to_have_count(0)
    expect(funnel.get_by_label("Celular")).to_have_value("9616689020")
    expect(funnel.get_by_label("BBVA México")).to_be_visible()
    funnel.get_by_label("SPEI").check()
    funnel.get_by_label("BBVA México").check()
    screenshot(page, "widget-dialog-mexico")
    funnel.get_by_role("button", name="Aprobar pago").click()

    wait_for_order_page(page, mexican_shop, number)
    expect(page.locator("#order-status")).to_have_text("Pagado")
    assert mexican_shop.order_status(number) == "paid"
    rows = mexican_shop.query(
        "SELECT currency, country, target_flow, customer_phone, status FROM "
        "django_etpay_paymentsession WHERE merchant_order_id = ?",
        (number,),
    )
    assert rows == [("MXN", "MX", "", "9616689020", "paid")]
    sandbox = mexican_shop.query(
        "SELECT target_flow, currency FROM etpay_sandbox_sandboxsession "
        "WHERE merchant_order_id = ?",
        (number,),
    )
    assert sandbox == [("spei", "MXN")]
