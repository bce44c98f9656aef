"""Shop views: product list, checkout, pay page, order status.

Every page a payer can reach ends somewhere: a paid order says so, and any other end (a
failed, expired or interrupted payment, or a confirmation that does not come) says what
happened and offers to pay again with a new ETpay session.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from django_etpay import conf, validators
from django_etpay.exceptions import EtpayError
from django_etpay.models import PaymentSession
from django_etpay.services import session_for_order
from django_etpay.widgets import BANK_FIELD
from shop.models import Order, Product

logger = logging.getLogger("shop")

#: The Django session key that remembers the payer's latest order, for the return page.
LAST_ORDER_KEY = "shop_last_order"
#: The Django session key that asks the pay page to open the widget once, after checkout.
OPEN_WIDGET_KEY = "shop_open_widget"
#: The Django session key of the phone a Mexican payer gave at checkout (ETpay prefills it).
PHONE_KEY = "shop_phone"
#: How often the order page looks again while a confirmation is on its way, and how many
#: times: after that it stops and offers "check again" and "pay again" instead.
POLL_SECONDS = 2
MAX_POLLS = 30


class CheckoutForm(forms.Form):
    """E-mail and quantity for a single-item checkout; a Mexican shop asks for a phone too,
    which ETpay Mexico prefills in its CoDi/SPEI form."""

    email = forms.EmailField(label=_("E-mail"), initial="payer@example.com")
    quantity = forms.IntegerField(label=_("Quantity"), min_value=1, max_value=10, initial=1)
    phone = forms.CharField(
        label=_("Mobile phone"), required=False, max_length=20, widget=forms.TextInput()
    )
    phone.widget.input_type = "tel"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if conf.account_country() != "MX":
            del self.fields["phone"]

    def clean_phone(self) -> str:
        value: str = self.cleaned_data.get("phone", "")
        if not value:
            return ""
        try:
            return validators.phone(value)
        except ValueError as err:
            raise forms.ValidationError(str(err)) from None


def product_list(request: HttpRequest) -> HttpResponse:
    """The catalogue, each product with its own checkout form."""
    return _render_products(request)


def _render_products(
    request: HttpRequest, bound: CheckoutForm | None = None, slug: str = "", status: int = 200
) -> HttpResponse:
    products = list(Product.objects.all())
    rows = [
        (
            product,
            bound
            if bound is not None and product.slug == slug
            else CheckoutForm(auto_id=f"{product.slug}-%s"),
        )
        for product in products
    ]
    return render(request, "shop/products.html", {"rows": rows}, status=status)


def _open_session(
    request: HttpRequest, order: Order, *, user_bank_code: str | None = None
) -> PaymentSession | None:
    """The order's live ETpay session, or a new one; on failure, tell the payer.

    ``session_for_order`` hands back the order's live session to a reload, a second tab or
    a double click, so that they do not open sessions that could each be paid. A bank button
    asks for a session at that bank (the same one if it is clicked again); a failed, expired
    or problem session gets a new one.
    """
    try:
        session = session_for_order(
            merchant_order_id=order.number,
            order_amount=order.amount,
            customer_email=order.email,
            metadata=[
                {"name": gettext("Product"), "value": order.product.name, "show": True},
                {"name": gettext("Quantity"), "value": order.quantity, "show": True},
                {"name": "order_pk", "value": order.pk, "show": False},
            ],
            user_bank_code=user_bank_code,
            # A Mexican shop: the phone the payer gave, prefilled in CoDi/SPEI.
            customer_phone=request.session.get(PHONE_KEY) or None,
            request=request,
        )
    except EtpayError as err:
        logger.warning("Could not open an ETpay session for %s: %s", order.number, err)
        messages.error(request, gettext("The payment service did not answer. Please try again."))
        return None
    order.payment_session = session
    order.save(update_fields=["payment_session"])
    return session


@require_POST
def checkout(request: HttpRequest, slug: str) -> HttpResponse:
    """Create the order and its ETpay session, then show the pay page with the widget open."""
    product = get_object_or_404(Product, slug=slug)
    form = CheckoutForm(request.POST, auto_id=f"{product.slug}-%s")
    if not form.is_valid():
        return _render_products(request, form, product.slug, status=400)
    order = Order.place(product, form.cleaned_data["quantity"], form.cleaned_data["email"])
    if form.cleaned_data.get("phone"):
        request.session[PHONE_KEY] = form.cleaned_data["phone"]
    else:
        request.session.pop(PHONE_KEY, None)
    if _open_session(request, order) is not None:
        request.session[OPEN_WIDGET_KEY] = order.number
    request.session[LAST_ORDER_KEY] = order.number
    return redirect("shop:pay", number=order.number)


def payment_state(order: Order) -> str:
    """What the payer is told about ``order``.

    ``paid``; ``failed``; ``expired`` (the session ended, or has waited longer than
    ``ETPAY["SESSION_TTL"]``: the payer left); ``problem`` (ETpay reported a system error, so
    the outcome is unknown until the session is reconciled); ``unavailable`` (no session
    could be opened); ``waiting`` (a live session, the payer may pay or a confirmation is on
    its way).
    """
    session = order.payment_session
    if order.status == Order.Status.PAID or (
        session is not None and session.status == PaymentSession.Status.PAID
    ):
        return "paid"
    if order.status == Order.Status.FAILED or (
        session is not None and session.status == PaymentSession.Status.FAILED
    ):
        return "failed"
    if session is None or not session.token:
        return "unavailable"
    if session.status == PaymentSession.Status.EXPIRED:
        return "expired"
    if session.needs_reconciliation:
        return "problem"
    ttl: Any = conf.get_setting("SESSION_TTL")
    if not isinstance(ttl, timedelta):
        ttl = timedelta(seconds=float(ttl))
    if session.created_at < timezone.now() - ttl:
        return "expired"
    return "waiting"


def _bank_code(request: HttpRequest) -> str | None:
    value = request.POST.get(BANK_FIELD) or None
    if value is None:
        return None
    try:
        return validators.bank_code(value, conf.account_country())
    except ValueError:
        return None


def pay(request: HttpRequest, number: str) -> HttpResponse:
    """The pay page: the widget, the redirect button and the bank buttons.

    ``POST`` (to pay again, or from a bank button with ``user_bank_code``) opens a new session
    when the order has no live one, and shows the page with the widget open.
    """
    order = get_object_or_404(
        Order.objects.select_related("payment_session", "product"), number=number
    )
    if request.method == "POST":
        if payment_state(order) == "paid":
            return redirect(order)
        order.status = Order.Status.PENDING
        order.save(update_fields=["status"])
        if _open_session(request, order, user_bank_code=_bank_code(request)) is not None:
            request.session[OPEN_WIDGET_KEY] = order.number
        request.session[LAST_ORDER_KEY] = order.number
        return redirect("shop:pay", number=order.number)
    state = payment_state(order)
    if state == "paid":
        return redirect(order)
    open_widget = request.session.pop(OPEN_WIDGET_KEY, None) == order.number
    context = {
        "order": order,
        "state": state,
        "session": order.payment_session if state == "waiting" else None,
        "open_widget": open_widget,
    }
    return render(request, "shop/pay.html", context)


def order_detail(request: HttpRequest, number: str) -> HttpResponse:
    """Order status; looks again every few seconds, a bounded number of times, while the
    payment may still be confirmed."""
    order = get_object_or_404(
        Order.objects.select_related("product", "payment_session"), number=number
    )
    state = payment_state(order)
    try:
        polls = max(0, int(request.GET.get("poll", "0")))
    except ValueError:
        polls = 0
    if state == "waiting" and polls >= MAX_POLLS:
        state = "stalled"
    context = {
        "order": order,
        "state": state,
        "refresh": POLL_SECONDS if state == "waiting" else None,
        "next_poll": polls + 1,
    }
    return render(request, "shop/order.html", context)


def payment_result(request: HttpRequest) -> HttpResponse:
    """Where django_etpay's return view sends the payer: back to their latest order."""
    number = request.session.get(LAST_ORDER_KEY)
    if not number:
        messages.info(request, gettext("Your payment result was recorded."))
        return redirect("shop:products")
    return redirect("shop:order", number=number)
