"""The shop's side of the single-page checkout (``/spa/``), on django_etpay's REST API.

The page creates an order here (``create_order``), then asks the API for an ETpay session for
it. The API never takes an amount from the browser: ``checkout_order``, named in
``ETPAY["API_ORDER_HOOK"]``, finds the order and says what it costs. Guests may pay (the shop
has no customer accounts), so the hook only accepts orders that this browser's own Django
session created: knowing another order's number is not enough to open a session for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError

from django_etpay.widgets import csp_nonce
from shop.models import Order, Product
from shop.views import LAST_ORDER_KEY, CheckoutForm

#: The Django session key listing the order numbers this browser created on the page.
SPA_ORDERS_KEY = "shop_spa_orders"
#: How many of them are remembered.
MAX_SPA_ORDERS = 20


@ensure_csrf_cookie
def spa(request: HttpRequest) -> HttpResponse:
    """The single-page checkout: plain JavaScript (``static/shop/spa.js``), no build step."""
    products = [
        {"slug": p.slug, "name": p.name, "price": p.price, "price_display": p.price_display}
        for p in Product.objects.all()
    ]
    context = {"products": products, "texts": spa_texts(), "nonce": csp_nonce(request)}
    return render(request, "shop/spa.html", context)


def spa_texts() -> dict[str, str]:
    """What ``spa.js`` shows, translated here (``%(name)s`` is filled in by the script)."""
    return {
        "pay": _("Pay with ETpay"),
        "opening": _("Opening ETpay…"),
        "complete": _("Complete the payment on ETpay's page."),
        "waiting": _("Waiting for ETpay's confirmation…"),
        "stillWaiting": _("Still waiting for ETpay's confirmation: we will e-mail you."),
        "paid": _("Payment confirmed. Thank you!"),
        "failed": _("The payment did not go through."),
        "expired": _("The payment was not completed in time."),
        "error": _("ETpay could not open the payment."),
        "notShown": _("This payment cannot be shown here."),
        "payAgain": _("Pay again"),
        "throttled": _("Too many attempts: try again in %(seconds)s seconds."),
        "unexpected": _("Something went wrong (%(status)s). Please try again."),
        "unreachable": _("The shop could not be reached. Please try again."),
        "state_opening": _("opening"),
        "state_pending": _("pending"),
        "state_paid": _("paid"),
        "state_failed": _("failed"),
        "state_expired": _("expired"),
        "state_error": _("error"),
        "state_initializing": _("opening"),
        "state_unknown": _("unknown"),
    }


@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    """Create an order from ``{"product", "quantity", "email"}`` (JSON); 400 with errors per
    field. The price comes from the catalogue, never from the request."""
    try:
        data: Any = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"detail": _("The body is not JSON.")}, status=400)
    if not isinstance(data, dict):
        return JsonResponse({"detail": _("The body is not a JSON object.")}, status=400)
    product = Product.objects.filter(slug=str(data.get("product", ""))).first()
    form = CheckoutForm({"email": data.get("email"), "quantity": data.get("quantity")})
    if product is None or not form.is_valid():
        errors: dict[str, list[str]] = {k: list(v) for k, v in form.errors.items()}
        if product is None:
            errors["product"] = [_("Choose a product.")]
        return JsonResponse(errors, status=400)
    order = Order.place(product, form.cleaned_data["quantity"], form.cleaned_data["email"])
    numbers = [n for n in request.session.get(SPA_ORDERS_KEY, []) if n != order.number]
    request.session[SPA_ORDERS_KEY] = [*numbers[-(MAX_SPA_ORDERS - 1) :], order.number]
    # Where the shop's return page sends the payer back after the payment page.
    request.session[LAST_ORDER_KEY] = order.number
    return JsonResponse(
        {"number": order.number, "amount": order.amount, "amount_display": order.amount_display},
        status=201,
    )


def checkout_order(request: Any, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """``ETPAY["API_ORDER_HOOK"]``: the order this browser asks to pay, and its amount.

    ``None`` (404) for an order this browser did not create; a 400 on ``order`` for one that
    is already paid. The widget returns to this page, which then polls the session's status.
    """
    number = data.get("order")
    if not number or number not in request.session.get(SPA_ORDERS_KEY, []):
        return None
    order = Order.objects.select_related("product").filter(number=number).first()
    if order is None:
        return None
    if order.status == Order.Status.PAID:
        raise ValidationError({"order": [_("This order is already paid.")]})
    back = f"{reverse('shop:spa')}?order={order.number}"
    return {
        "merchant_order_id": order.number,
        "order_amount": order.amount,
        "customer_email": order.email,
        "metadata": [
            {"name": "Producto", "value": order.product.name, "show": True},
            {"name": "Cantidad", "value": order.quantity, "show": True},
            {"name": "order_pk", "value": order.pk, "show": False},
        ],
        "success_url": back,
        "failure_url": back,
    }
