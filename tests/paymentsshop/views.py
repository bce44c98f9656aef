"""The checkout of a django-payments shop, as django-payments' documentation writes it.

Served with ``tests/browser/payments_settings.py`` for the browser test of ``EtpayProvider``.
"""

from __future__ import annotations

from decimal import Decimal

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404
from django.utils.html import format_html
from payments import RedirectNeeded

from tests.paymentsshop.models import Payment


def checkout(request: HttpRequest) -> HttpResponse:
    """A new order of $15.990 paid through the ``etpay`` variant."""
    payment = Payment.objects.create(
        variant="etpay", currency="CLP", total=Decimal("15990"), description="Taza de cerámica"
    )
    return HttpResponseRedirect(f"/shop/payments/{payment.pk}/")


def payment_details(request: HttpRequest, pk: int) -> HttpResponse:
    """django-payments' usual view: show the form, or follow ``RedirectNeeded``."""
    payment = get_object_or_404(Payment, pk=pk)
    if request.method == "POST":
        try:
            payment.get_form(data=request.POST)
        except RedirectNeeded as redirect:
            return HttpResponseRedirect(str(redirect))
    return HttpResponse(
        format_html(
            '<!doctype html><html lang="es"><title>Pago</title><main><h1>Pedido {}</h1>'
            '<form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="{}">'
            "<button>Pagar con ETpay</button></form></main></html>",
            payment.pk,
            get_token(request),
        )
    )


def outcome(request: HttpRequest, pk: int, page: str) -> HttpResponse:
    """The success (``thanks``) and failure (``retry``) pages: the payment's status."""
    payment = get_object_or_404(Payment, pk=pk)
    return HttpResponse(
        format_html(
            '<!doctype html><html lang="es"><title>{}</title><main><h1>{}</h1>'
            '<p id="payment-status">{}</p></main></html>',
            page,
            page,
            payment.status,
        )
    )
