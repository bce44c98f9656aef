"""HTML and configuration for the payer's side: the widget, the pay button, the bank buttons.

The template tags in :mod:`django_etpay.templatetags.etpay` are thin wrappers over the plain
functions here, so that views, the REST API and other template engines can use them too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.translation import gettext

from django_etpay import conf
from django_etpay.models import PaymentSession


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _resolve(target: str | None, request: HttpRequest | None) -> str | None:
    if not target:
        return None
    url = resolve_url(target)
    return request.build_absolute_uri(url) if request is not None else url


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
    ``texts`` (translated strings the loader shows). Never carries ``signature_token``.

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
        "texts": {
            "button": button_text or gettext("Pay with ETpay"),
            "title": gettext("Pay with ETpay"),
            "close": gettext("Close"),
            "confirming": gettext("Confirming your payment…"),
        },
    }
