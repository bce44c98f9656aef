"""HTML and configuration for the payer's side: the widget, the pay button, the bank buttons.

The template tags in :mod:`django_etpay.templatetags.etpay` are thin wrappers over the plain
functions here, so that views, the REST API and other template engines can use them too. The
markup comes from small, overridable templates under ``django_etpay/``; every value that comes
from data is escaped by them or built here with :func:`~django.utils.html.format_html` and
:func:`~django.utils.html.json_script`, never concatenated into HTML.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.shortcuts import resolve_url
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html, json_script
from django.utils.safestring import SafeString
from django.utils.translation import gettext

from django_etpay import conf, validators
from django_etpay.exceptions import EtpayConfigurationError
from django_etpay.models import PaymentSession
from django_etpay.money import format_money

#: Templates behind each function; override them in your project's templates folder.
WIDGET_TEMPLATE = "django_etpay/widget.html"
PAY_BUTTON_TEMPLATE = "django_etpay/pay_button.html"
BANK_BUTTONS_TEMPLATE = "django_etpay/bank_buttons.html"
UNAVAILABLE_TEMPLATE = "django_etpay/unavailable.html"

#: The form field the bank buttons post; read it in the view that opens the session.
BANK_FIELD = "user_bank_code"

#: Banks offered by :func:`render_bank_buttons` when none are named, per country of the
#: default account: ETpay's documented lists (its test bank is added in the sandbox
#: environment).
COUNTRY_DEFAULT_BANKS: dict[str, tuple[str, ...]] = {
    country: tuple(code for code in codes if not code.endswith("_test"))
    for country, codes in validators.COUNTRY_BANK_CODES.items()
}
#: The Chilean default list (``COUNTRY_DEFAULT_BANKS["CL"]``).
DEFAULT_BANKS: tuple[str, ...] = COUNTRY_DEFAULT_BANKS["CL"]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _resolve(target: str | None, request: HttpRequest | None) -> str | None:
    if not target:
        return None
    url = resolve_url(target)
    return request.build_absolute_uri(url) if request is not None else url


def _csrf_header_name() -> str:
    # settings.CSRF_HEADER_NAME is the WSGI key ("HTTP_X_CSRFTOKEN"); the browser sends the
    # header itself ("X-CSRFTOKEN").
    name = str(settings.CSRF_HEADER_NAME)
    if name.startswith("HTTP_"):
        name = name[5:]
    return name.replace("_", "-")


def _seconds_to_ms(key: str) -> int:
    return int(float(conf.get_setting(key)) * 1000)


def widget_texts(button_text: str | None = None) -> dict[str, str]:
    """Every string the widget loader shows, translated into the active language."""
    return {
        "button": button_text or gettext("Pay with ETpay"),
        "title": gettext("Pay with ETpay"),
        "close": gettext("Close"),
        "frameTitle": gettext("ETpay payment page"),
        "loading": gettext("Loading ETpay's payment page…"),
        "confirming": gettext("Confirming your payment…"),
        "paid": gettext("Payment received. Taking you back to the shop…"),
        "failed": gettext("The payment was not completed. No money was taken."),
        "pending": gettext(
            "ETpay has not confirmed the payment yet. We will show you the order's status."
        ),
        "unknown": gettext(
            "We could not confirm this payment here. If money left your account, the shop "
            "will receive ETpay's confirmation directly."
        ),
        "networkError": gettext("We could not reach the shop to confirm your payment."),
        "timeout": gettext("The shop took too long to confirm your payment."),
        "retry": gettext("Try again"),
        "continue": gettext("Continue"),
        "redirecting": gettext("Opening ETpay's payment page…"),
        "fallback": gettext("Problems? Open the payment page in this window"),
    }


def _summary(session: PaymentSession) -> dict[str, Any]:
    shown = [
        {"name": str(entry.get("name", "")), "value": str(entry.get("value", ""))}
        for entry in (session.metadata or [])
        if isinstance(entry, dict) and entry.get("show") is True
    ]
    amount = format_money(int(session.order_amount), session.currency or "CLP")
    return {
        "order": session.merchant_order_id,
        "amount": amount,
        "label": gettext("Order %(order)s: %(amount)s")
        % {"order": session.merchant_order_id, "amount": amount},
        "items": shown,
    }


def widget_config(
    session: PaymentSession,
    *,
    request: HttpRequest | None = None,
    success_url: str | None = None,
    failure_url: str | None = None,
    open_on_load: bool = False,
    button_text: str | None = None,
) -> dict[str, Any]:
    """The JSON-serialisable configuration the widget loader reads for ``session``.

    Keys (stable; the REST API returns the same dict): ``sessionToken``, ``paymentUrl``,
    ``funnelOrigin`` (the only origin whose messages are accepted), ``resultUrl`` (the
    ``widget-result`` view), ``successUrl`` / ``failureUrl`` (overrides, else
    ``ETPAY["SUCCESS_URL"]`` / ``["FAILURE_URL"]``, else ``None``), ``openOnLoad`` and
    ``texts`` (translated strings the loader shows). Also: ``summary`` (order id, formatted
    amount and the metadata entries marked ``show``, displayed in the dialog),
    ``csrfCookieName`` / ``csrfHeaderName`` (how to send Django's CSRF token when the page did
    not embed one), ``resultTimeoutMs`` and ``handshakeTimeoutMs`` (see
    ``ETPAY["WIDGET_RESULT_TIMEOUT"]`` and ``["WIDGET_HANDSHAKE_TIMEOUT"]``). Never carries
    ``signature_token``.

    Raises :class:`ValueError` for a session ETpay gave no token (nothing to open).
    """
    if not session.token:
        raise ValueError("This payment session has no ETpay token: there is nothing to open.")
    payment_url = session.payment_url
    result_path = reverse("django_etpay:widget-result")
    return {
        "sessionToken": session.token,
        "paymentUrl": payment_url,
        "funnelOrigin": _origin(payment_url),
        "resultUrl": request.build_absolute_uri(result_path) if request else result_path,
        "successUrl": _resolve(success_url or conf.get_setting("SUCCESS_URL"), request),
        "failureUrl": _resolve(failure_url or conf.get_setting("FAILURE_URL"), request),
        "openOnLoad": bool(open_on_load),
        "texts": widget_texts(button_text),
        "summary": _summary(session),
        "csrfCookieName": settings.CSRF_COOKIE_NAME,
        "csrfHeaderName": _csrf_header_name(),
        "resultTimeoutMs": _seconds_to_ms("WIDGET_RESULT_TIMEOUT"),
        "handshakeTimeoutMs": _seconds_to_ms("WIDGET_HANDSHAKE_TIMEOUT"),
    }


def csp_nonce(request: HttpRequest | None, context: Mapping[str, Any] | None = None) -> str | None:
    """The Content-Security-Policy nonce of this response, if the project uses one.

    Looked for, in order: ``csp_nonce`` in the template context (Django 6.0+'s
    ``django.template.context_processors.csp``), ``request.csp_nonce`` (django-csp), and the
    nonce Django 6.0+'s ``ContentSecurityPolicyMiddleware`` keeps on the request. Reading a
    lazy nonce generates it, which is what makes the middleware put it in the header.
    """
    candidates: list[Any] = []
    if context is not None:
        candidates.append(context.get("csp_nonce"))
    if request is not None:
        candidates.append(getattr(request, "csp_nonce", None))
        # Django 6.0+ keeps it here; its public accessor is django.middleware.csp.get_nonce.
        candidates.append(getattr(request, "_csp_nonce", None))
    for value in candidates:
        if value is not None:
            text = str(value)
            if text:
                return text
    return None


def _nonce_attr(nonce: str | None) -> SafeString:
    return format_html(' nonce="{}"', nonce) if nonce else SafeString("")


def unavailable_reason(session: PaymentSession | None) -> str | None:
    """Why ``session`` cannot be paid now, or ``None`` when it can.

    ``missing`` (no session at all), ``paid``, ``no_token`` (ETpay did not open it: the call
    failed or is still running), ``finished`` (failed or expired).
    """
    if session is None:
        return "missing"
    if session.status == PaymentSession.Status.PAID:
        return "paid"
    if not session.token:
        return "no_token"
    if session.status in (PaymentSession.Status.FAILED, PaymentSession.Status.EXPIRED):
        return "finished"
    return None


def _unavailable_message(reason: str, session: PaymentSession | None) -> str:
    order = session.merchant_order_id if session is not None else ""
    messages = {
        "missing": gettext("No payment has been started for this order."),
        "paid": gettext("The payment for order %(order)s is complete. Thank you."),
        "no_token": gettext(
            "The payment for order %(order)s could not be started: ETpay did not open a "
            "session for it. Please try again in a moment."
        ),
        "finished": gettext(
            "The payment session for order %(order)s has ended. Start a new payment to pay."
        ),
    }
    return messages[reason] % {"order": order} if reason != "missing" else messages[reason]


def render_unavailable(
    session: PaymentSession | None, reason: str, *, template_name: str = UNAVAILABLE_TEMPLATE
) -> SafeString:
    """The message shown instead of a widget or button that cannot be used."""
    context = {
        "session": session,
        "reason": reason,
        "message": _unavailable_message(reason, session),
    }
    return SafeString(render_to_string(template_name, context))


def _widget_script_url() -> str:
    custom = conf.get_setting("WIDGET_SCRIPT_URL")
    return str(custom) if custom else static("django_etpay/widget.js")


def render_widget(
    session: PaymentSession | None,
    *,
    request: HttpRequest | None = None,
    nonce: str | None = None,
    csrf_token: str | None = None,
    success_url: str | None = None,
    failure_url: str | None = None,
    open_on_load: bool = False,
    button_text: str | None = None,
    template_name: str = WIDGET_TEMPLATE,
) -> SafeString:
    """The widget: a container holding a plain pay link, its configuration and the loader.

    Without JavaScript the link sends the payer to ETpay's page (the redirect flow); with it,
    ``static/django_etpay/widget.js`` (or ``ETPAY["WIDGET_SCRIPT_URL"]``) opens the funnel in
    a dialog on this page. ``nonce`` goes on the ``<script>`` and ``<link>`` tags;
    ``csrf_token`` (taken from ``request`` when omitted) lets the loader post the result.
    A session that cannot be paid renders :data:`UNAVAILABLE_TEMPLATE` instead.
    """
    reason = unavailable_reason(session)
    if reason is not None or session is None:
        return render_unavailable(session, reason or "missing")
    config = widget_config(
        session,
        request=request,
        success_url=success_url,
        failure_url=failure_url,
        open_on_load=open_on_load,
        button_text=button_text,
    )
    if csrf_token is None and request is not None:
        csrf_token = get_token(request)
    if csrf_token:
        config["csrfToken"] = str(csrf_token)
    element_id = f"etpay-widget-{session.pk}"
    context = {
        "session": session,
        "element_id": element_id,
        "config_id": f"{element_id}-config",
        "config_script": json_script(config, f"{element_id}-config"),
        "payment_url": config["paymentUrl"],
        "button_text": config["texts"]["button"],
        "open_on_load": bool(open_on_load),
        "script_url": _widget_script_url(),
        "style_url": static("django_etpay/widget.css"),
        "nonce_attr": _nonce_attr(nonce),
    }
    return SafeString(render_to_string(template_name, context))


def render_pay_button(
    session: PaymentSession | None,
    *,
    text: str | None = None,
    template_name: str = PAY_BUTTON_TEMPLATE,
) -> SafeString:
    """A plain link to ETpay's payment page, styled as a button: works without JavaScript."""
    reason = unavailable_reason(session)
    if reason is not None or session is None:
        return render_unavailable(session, reason or "missing")
    context = {
        "session": session,
        "payment_url": session.payment_url,
        "text": text or gettext("Pay with ETpay"),
    }
    return SafeString(render_to_string(template_name, context))


def payment_url(session: PaymentSession | None) -> str:
    """``session.payment_url``, or ``""`` when there is nothing to open (never raises)."""
    if session is None or not session.token:
        return ""
    try:
        return session.payment_url
    except EtpayConfigurationError:
        return ""


def bank_choices(banks: Iterable[str] | str | None = None) -> list[tuple[str, str]]:
    """``(code, display name)`` for ``banks`` (codes, or one comma-separated string).

    Without ``banks``: the default account's country's banks (:data:`COUNTRY_DEFAULT_BANKS`:
    ``cl_*`` for Chile, ``mx_*`` for Mexico), plus ETpay's test bank in the sandbox
    environment. Raises :class:`ValueError` naming the allowed codes for an unknown one.
    """
    if banks is None:
        country = conf.account_country()
        codes = list(COUNTRY_DEFAULT_BANKS[country])
        if conf.get_setting("ENVIRONMENT") == "sandbox":
            codes.append(f"{country.lower()}_test")
    elif isinstance(banks, str):
        codes = [code.strip() for code in banks.split(",") if code.strip()]
    else:
        codes = [str(code) for code in banks]
    choices: list[tuple[str, str]] = []
    for code in codes:
        try:
            clean = validators.bank_code(code)
        except ValueError:
            raise ValueError(
                f"Unknown ETpay bank code {code!r}; allowed: {', '.join(validators.BANK_CODES)}."
            ) from None
        choices.append((clean, validators.BANK_NAMES.get(clean, clean)))
    return choices


def render_bank_buttons(
    action: str,
    *,
    banks: Iterable[str] | str | None = None,
    request: HttpRequest | None = None,
    csrf_token: str | None = None,
    template_name: str = BANK_BUTTONS_TEMPLATE,
) -> SafeString:
    """One submit button per bank, in a form that POSTs ``user_bank_code`` to ``action``.

    ``action`` is a URL or a URL name (resolved with :func:`~django.shortcuts.resolve_url`);
    the view there opens a session with ``initialize_session(..., user_bank_code=...)`` so
    ETpay's funnel starts at that bank's login. The form carries Django's CSRF token
    (``csrf_token``, else taken from ``request``).
    """
    if csrf_token is None and request is not None:
        csrf_token = get_token(request)
    context = {
        "action": resolve_url(action),
        "banks": bank_choices(banks),
        "field": BANK_FIELD,
        "csrf_token": csrf_token or "",
        "legend": gettext("Pay from your bank"),
    }
    return SafeString(render_to_string(template_name, context))


def shop_url(request: HttpRequest | None = None) -> str:
    """Where a payer left on a package page goes back to: ``FAILURE_URL``, ``SUCCESS_URL`` or
    the site root."""
    target = conf.get_setting("FAILURE_URL") or conf.get_setting("SUCCESS_URL") or "/"
    return str(resolve_url(target))
