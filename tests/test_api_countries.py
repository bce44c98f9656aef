"""POST api/sessions/ for a Mexican merchant account: the payer's phone and CoDi/SPEI choice go
through, MXN comes back, and the fields of the other country are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from pytest_django import Settings
from rest_framework.test import APIClient

from django_etpay.models import PaymentSession
from django_etpay.testing import FakeEtpay
from tests.api_support import api_settings

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.api_urls")]

URL = "/etpay/api/sessions/"
MEXICO = {
    "MERCHANT_CODE": "mx_merchant",
    "MERCHANT_API_TOKEN": "mx-api-token-SECRET-0e7b3d4c",
    "API_URL": "https://api-mx.etpay.test",
    "PMT_URL": "https://pmt-mx.etpay.test",
    "COUNTRY": "MX",
}


def mexican_order_hook(request: Any, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Orders of ``cart-mx`` are paid to the Mexican account, anything else to the Chilean."""
    if data.get("order") == "cart-mx":
        return {"merchant_order_id": "MX-API-1", "order_amount": 1234, "merchant": "mx"}
    return {"merchant_order_id": "CL-API-1", "order_amount": 6990}


@pytest.fixture(autouse=True)
def api_configured(settings: Settings) -> Iterator[None]:
    settings.ETPAY = api_settings(
        API_ORDER_HOOK=mexican_order_hook, MERCHANTS={"mx": MEXICO}, CURRENCY="CLP"
    )
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def client(django_user_model: Any) -> APIClient:
    user: AbstractBaseUser = django_user_model.objects.create_user("ana", password="pw-ana")
    api = APIClient()
    api.force_authenticate(user)
    return api


def post(client: APIClient, body: Any) -> Any:
    return client.post(URL, json.dumps(body), content_type="application/json")


def test_a_mexican_order_sends_the_payers_phone_and_method(
    client: APIClient, fake_etpay: FakeEtpay
) -> None:
    response = post(
        client, {"order": "cart-mx", "customer_phone": "961-668-9020", "target_flow": "spei"}
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["currency"], body["country"]) == ("MXN", "MX")
    assert body["amount_display"] == "$1,234.00"
    sent = fake_etpay.last_session.request
    assert (sent["customer_phone"], sent["target_flow"]) == ("9616689020", "spei")
    row = PaymentSession.objects.get()
    assert (row.merchant, row.customer_phone, row.target_flow) == ("mx", "9616689020", "spei")


def test_a_chilean_order_beside_it_answers_in_clp(
    client: APIClient, fake_etpay: FakeEtpay
) -> None:
    response = post(client, {"order": "cart-cl"})

    assert response.status_code == 201
    assert (response.json()["currency"], response.json()["amount_display"]) == ("CLP", "$6.990")


def test_a_bad_phone_is_refused_before_etpay(client: APIClient, fake_etpay: FakeEtpay) -> None:
    response = post(client, {"order": "cart-mx", "customer_phone": "12345"})

    assert response.status_code == 400
    assert list(response.json()) == ["customer_phone"]
    assert fake_etpay.sessions == []


def test_a_rut_for_a_mexican_order_is_refused(client: APIClient, fake_etpay: FakeEtpay) -> None:
    response = post(client, {"order": "cart-mx", "user_rut": "11.111.111-1"})

    assert response.status_code == 400
    assert "ETpay Chile" in response.json()["user_rut"][0]
    assert not PaymentSession.objects.exists()


def test_a_phone_for_a_chilean_order_is_refused(client: APIClient, fake_etpay: FakeEtpay) -> None:
    response = post(client, {"order": "cart-cl", "target_flow": "codi"})

    assert response.status_code == 400
    assert "ETpay Mexico" in response.json()["target_flow"][0]
    assert not PaymentSession.objects.exists()
