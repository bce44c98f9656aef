"""``{% load etpay %}``: thin tags over :mod:`django_etpay.widgets`.

- ``{% etpay_widget session [button_text=...] [open_on_load=True] [success_url=...]
  [failure_url=...] %}``: the payment dialog, with the redirect link as its no-JavaScript form;
- ``{% etpay_pay_button session [text=...] %}``: the plain redirect button;
- ``{% etpay_bank_buttons action [banks="cl_bci,cl_estado"] %}``: one button per bank, posting
  ``user_bank_code`` to ``action`` (a URL or URL name);
- ``{% etpay_payment_url session %}``: the funnel URL ("" when there is none);
- ``{% etpay_shop_url %}``: where a package page sends the payer back to the shop;
- ``{{ amount|etpay_money }}`` / ``{{ amount|etpay_money:"CLP" }}``: an amount as every page
  writes it (``$6.990 CLP``).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.http import HttpRequest
from django.template.context import Context
from django.utils.safestring import SafeString

from django_etpay import conf, money, widgets
from django_etpay.models import PaymentSession

register = template.Library()


def _request(context: Context) -> HttpRequest | None:
    request = context.get("request")
    return request if isinstance(request, HttpRequest) else None


def _csrf_token(context: Context) -> str | None:
    # Django's csrf context processor (always on for RequestContext) puts a lazy token here.
    token: Any = context.get("csrf_token")
    if token is None or str(token) in ("", "NOTPROVIDED"):
        return None
    return str(token)


@register.simple_tag(takes_context=True)
def etpay_widget(
    context: Context,
    session: PaymentSession | None,
    *,
    button_text: str | None = None,
    open_on_load: bool = False,
    success_url: str | None = None,
    failure_url: str | None = None,
) -> SafeString:
    """The payment widget for ``session`` (see :func:`django_etpay.widgets.render_widget`)."""
    request = _request(context)
    return widgets.render_widget(
        session,
        request=request,
        nonce=widgets.csp_nonce(request, {"csp_nonce": context.get("csp_nonce")}),
        csrf_token=_csrf_token(context),
        success_url=success_url,
        failure_url=failure_url,
        open_on_load=bool(open_on_load),
        button_text=button_text,
    )


@register.simple_tag
def etpay_pay_button(session: PaymentSession | None, *, text: str | None = None) -> SafeString:
    """A link to ETpay's payment page, styled as a button."""
    return widgets.render_pay_button(session, text=text)


@register.simple_tag(takes_context=True)
def etpay_bank_buttons(context: Context, action: str, *, banks: str | None = None) -> SafeString:
    """One button per bank, posting ``user_bank_code`` to ``action``."""
    return widgets.render_bank_buttons(
        action, banks=banks, request=_request(context), csrf_token=_csrf_token(context)
    )


@register.simple_tag
def etpay_payment_url(session: PaymentSession | None) -> str:
    """ETpay's payment page for ``session``, or ``""``."""
    return widgets.payment_url(session)


@register.simple_tag
def etpay_shop_url() -> str:
    """``ETPAY["FAILURE_URL"]``, else ``["SUCCESS_URL"]``, else ``/``."""
    return widgets.shop_url()


@register.filter
def etpay_money(amount: int, currency: str | None = None) -> str:
    """``{{ 6990|etpay_money }}`` -> ``$6.990 CLP``: the one way amounts are written.

    ``currency`` defaults to the default account's (``ETPAY["COUNTRY"]``: CLP or MXN); pass
    the session's for a session's amount
    (``{{ session.order_amount|etpay_money:session.currency }}``). An amount that is not an
    ``int`` (a float or a string from a form) is a mistake in the template's data and raises.
    """
    return money.format_money(amount, currency or conf.account_currency())
