"""Shared pieces of the REST API tests: the order hook, the fake ETpay's secrets, and the
secrets rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings as django_settings
from django.http import HttpResponseBase
from rest_framework import exceptions

from django_etpay.testing import FakeEtpay

#: The orders the test hook knows, by the reference a browser sends: (order id, amount).
ORDERS: dict[str, tuple[str, int]] = {
    "cart-mug": ("OC-API-MUG", 6990),
    "cart-big": ("OC-API-BIG", 1_250_000),
    "cart-tea": ("OC-API-TEA", 2990),
}


def order_hook(request: Any, data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The order hook the API tests configure: a fixed catalogue of orders.

    ``"empty-cart"`` returns an amount of 0 (the shop's data is invalid: a 400 on
    ``order_amount``); ``"closed"`` refuses with a DRF error; anything unknown is ``None``
    (404).
    """
    reference = data.get("order", "cart-mug")
    if reference == "empty-cart":
        return {"merchant_order_id": "OC-API-EMPTY", "order_amount": 0}
    if reference == "closed":
        raise exceptions.ValidationError({"order": ["This order is already paid."]})
    if reference not in ORDERS:
        return None
    order_id, amount = ORDERS[reference]
    return {
        "merchant_order_id": order_id,
        "order_amount": amount,
        "metadata": [{"name": "Producto", "value": "Taza", "show": True}],
        "success_url": "/thanks/",
    }


def api_settings(**overrides: Any) -> dict[str, Any]:
    """The test suite's ``ETPAY`` with the test order hook (and ``overrides``)."""
    return {**django_settings.ETPAY, "API_ORDER_HOOK": "tests.api_support.order_hook", **overrides}


def handed_out(fake: FakeEtpay) -> list[str]:
    """The signature tokens the fake ETpay handed out so far, to search replies for."""
    return [session.signature_token for session in fake.sessions]


def assert_no_secrets(response: HttpResponseBase, *secret_values: str) -> None:
    """Neither the merchant token, nor any ``signature_token``, nor the words are in a reply.

    Checks the body and every header. ``secret_values`` adds signature tokens to look for;
    every ``PaymentSession.signature_token`` in the database is looked for too.
    """
    from django_etpay.models import PaymentSession

    content = getattr(response, "content", b"") or b""
    text = (
        content.decode("utf-8", "replace")
        + "\n"
        + "\n".join(f"{name}: {value}" for name, value in response.items())
    )
    # The plain keys: the column holds them encrypted, and refuses lookups.
    stored = [
        session.signature_token
        for session in PaymentSession.objects.only("signature_token")
        if session.signature_token
    ]
    for value in (django_settings.TEST_MERCHANT_API_TOKEN, *secret_values, *stored):
        assert value not in text, "a secret reached an API response"
    lowered = text.lower()
    for word in ("signature_token", "merchant_api_token", "traceback"):
        assert word not in lowered, f"{word!r} appears in an API response"
