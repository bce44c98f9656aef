"""Shop views: product list, checkout, pay page, order status."""

from __future__ import annotations

import logging

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from django_etpay.exceptions import EtpayError
from django_etpay.services import initialize_session
from shop.models import Order, Product

logger = logging.getLogger("shop")

#: The Django session key that remembers the payer's latest order, for the return page.
LAST_ORDER_KEY = "shop_last_order"


class CheckoutForm(forms.Form):
    """E-mail and quantity for a single-item checkout."""

    email = forms.EmailField()
    quantity = forms.IntegerField(min_value=1, max_value=10, initial=1)


def product_list(request: HttpRequest) -> HttpResponse:
    """The catalogue, each product with its own checkout form."""
    products = Product.objects.all()
    return render(request, "shop/products.html", {"products": products, "form": CheckoutForm()})


def _open_session(request: HttpRequest, order: Order) -> None:
    """Create an ETpay session for the order; on failure, tell the payer."""
    try:
        session = initialize_session(
            merchant_order_id=order.number,
            order_amount=order.amount,
            customer_email=order.email,
            metadata=[
                {"name": "Producto", "value": order.product.name, "show": True},
                {"name": "Cantidad", "value": order.quantity, "show": True},
                {"name": "order_pk", "value": order.pk, "show": False},
            ],
            request=request,
        )
    except EtpayError as err:
        logger.warning("Could not open an ETpay session for %s: %s", order.number, err)
        messages.error(request, "The payment service did not answer. Please try again.")
        return
    order.payment_session = session
    order.save(update_fields=["payment_session"])


@require_POST
def checkout(request: HttpRequest, slug: str) -> HttpResponse:
    """Create the order and its ETpay session, then show the pay page."""
    product = get_object_or_404(Product, slug=slug)
    form = CheckoutForm(request.POST)
    if not form.is_valid():
        products = Product.objects.all()
        return render(
            request, "shop/products.html", {"products": products, "form": form}, status=400
        )
    quantity = form.cleaned_data["quantity"]
    order = Order.objects.create(
        product=product,
        quantity=quantity,
        email=form.cleaned_data["email"],
        amount=product.price * quantity,
    )
    _open_session(request, order)
    request.session[LAST_ORDER_KEY] = order.number
    return redirect("shop:pay", number=order.number)


def pay(request: HttpRequest, number: str) -> HttpResponse:
    """The pay button (a plain link to the funnel); POST opens a fresh session to retry."""
    order = get_object_or_404(Order.objects.select_related("payment_session"), number=number)
    if request.method == "POST" and order.status != Order.Status.PAID:
        order.status = Order.Status.PENDING
        order.save(update_fields=["status"])
        _open_session(request, order)
        request.session[LAST_ORDER_KEY] = order.number
        return redirect("shop:pay", number=order.number)
    if order.status == Order.Status.PAID:
        return redirect(order)
    session = order.payment_session
    payment_url = session.payment_url if session and session.status == "pending" else ""
    return render(request, "shop/pay.html", {"order": order, "payment_url": payment_url})


def order_detail(request: HttpRequest, number: str) -> HttpResponse:
    """Order status; refreshes itself while the payment confirmation is on its way."""
    order = get_object_or_404(Order.objects.select_related("product"), number=number)
    return render(request, "shop/order.html", {"order": order})


def payment_result(request: HttpRequest) -> HttpResponse:
    """Where django_etpay's return view sends the payer: back to their latest order."""
    number = request.session.get(LAST_ORDER_KEY)
    if not number:
        messages.info(request, "Your payment result was recorded.")
        return redirect("shop:products")
    return redirect("shop:order", number=number)
