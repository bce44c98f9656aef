"""The sandbox plays ETpay Mexico for a Mexican merchant account: MXN amounts, mx_ banks, the
CoDi/SPEI choice and the payer's phone, prefilled from what the shop sent."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from django.conf import settings as django_settings
from django.test import Client
from pytest_django import Settings

from django_etpay.sandbox.models import SandboxSession

INIT_URL = "/sandbox/session/initialize"
SHOP = "https://shop.example"
MEXICO = {
    "MERCHANT_CODE": "mx_sandbox_tests",
    "MERCHANT_API_TOKEN": "mx-sandbox-api-token-SECRET-9f1c",
    "API_URL": "http://testserver/sandbox",
    "PMT_URL": "http://testserver/sandbox",
    "COUNTRY": "MX",
}

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def mexican_account(settings: Settings) -> None:
    settings.ETPAY = {**django_settings.ETPAY, "MERCHANTS": {"mx": MEXICO}}


def initialize(client: Client, **fields: Any) -> Any:
    body = {
        "merchant_code": MEXICO["MERCHANT_CODE"],
        "merchant_api_token": MEXICO["MERCHANT_API_TOKEN"],
        "merchant_order_id": "MX-1",
        "order_amount": 1234,
        "payment_completed_url": f"{SHOP}/ok",
        "payment_cancellation_url": f"{SHOP}/ko",
        **fields,
    }
    return client.post(INIT_URL, json.dumps(body), content_type="application/json")


def new_session(client: Client, **fields: Any) -> SandboxSession:
    response = initialize(client, **fields)
    assert response.status_code == 200, response.content
    return SandboxSession.objects.get(token=response.json()["token"])


def funnel(session: SandboxSession) -> str:
    return f"/sandbox/session/{session.token}"


def claims_of(response: Any, session: SandboxSession) -> dict[str, Any]:
    token = parse_qs(urlsplit(response["Location"]).query)["jwt"][0]
    decoded: dict[str, Any] = jwt.decode(token, session.signature_token, ["HS256"])
    return decoded


def test_a_mexican_session_is_in_mxn_without_terms(client: Client) -> None:
    response = initialize(client, customer_phone="961 668 9020", target_flow="codi")
    assert response.status_code == 200
    assert response.json()["terms_url"] is None
    session = SandboxSession.objects.get(token=response.json()["token"])
    assert (session.country, session.currency) == ("MX", "MXN")
    assert (session.customer_phone, session.target_flow) == ("9616689020", "codi")


@pytest.mark.parametrize(
    ("field", "value"),
    [("user_rut", "11.111.111-1"), ("is_rut_block", True), ("user_bank_code", "cl_estado")],
)
def test_chilean_fields_are_refused(client: Client, field: str, value: Any) -> None:
    response = initialize(client, **{field: value})
    assert response.status_code == 400
    assert field in response.json()["message"]


def test_the_funnel_offers_codi_and_spei_and_prefills_the_phone(client: Client) -> None:
    session = new_session(client, customer_phone="9616689020", target_flow="spei")
    page = client.get(funnel(session)).content.decode()
    assert "$1,234.00 MXN" in page
    assert '<input type="radio" name="method" value="spei" checked required>' in page
    assert '<input type="radio" name="method" value="codi" required>' in page
    assert 'value="9616689020"' in page
    assert 'value="mx_bbva"' in page
    assert 'value="cl_estado"' not in page
    assert 'name="rut"' not in page


def test_without_a_target_flow_the_payer_chooses(client: Client) -> None:
    session = new_session(client)
    page = client.get(funnel(session)).content.decode()
    assert '<input type="radio" name="method" value="spei" required>' in page
    assert '<input type="radio" name="method" value="codi" required>' in page
    response = client.post(
        funnel(session),
        {"method_asked": "1", "bank": "mx_bbva", "phone": "5555555555", "action": "approve"},
    )
    assert response.status_code == 400
    assert "CoDi" in response.content.decode()
    session.refresh_from_db()
    assert session.status == SandboxSession.Status.PENDING


def test_paying_by_codi_reports_mxn_the_method_and_the_phone(client: Client) -> None:
    session = new_session(client, customer_phone="9616689020", target_flow="spei")
    response = client.post(
        funnel(session),
        {"bank": "mx_banorte", "method": "codi", "phone": "55 1234 5678", "action": "approve"},
    )
    assert response.status_code == 303
    claims = claims_of(response, session)
    assert claims["merchant_currency"] == "MXN"
    assert claims["merchant_amount"] == 1234
    assert claims["user_account"] == "CoDi 5512345678"
    assert claims["user_bank"] == "Banorte"
    assert "user_rut" not in claims
    session.refresh_from_db()
    assert (session.target_flow, session.customer_phone) == ("codi", "5512345678")


def test_a_bad_phone_shows_the_form_again(client: Client) -> None:
    session = new_session(client)
    response = client.post(
        funnel(session), {"bank": "mx_bbva", "method": "spei", "phone": "123", "action": "approve"}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "10 digits" in page
    assert 'value="123"' in page
    session.refresh_from_db()
    assert session.status == SandboxSession.Status.PENDING


def test_a_chilean_bank_is_not_a_mexican_payers_choice(client: Client) -> None:
    session = new_session(client)
    response = client.post(
        funnel(session), {"bank": "cl_estado", "method": "spei", "action": "approve"}
    )
    assert response.status_code == 400


def test_a_scripted_post_pays_by_spei_with_the_phone_sent(client: Client) -> None:
    session = new_session(client, customer_phone="9616689020", user_bank_code="mx_bbva")
    response = client.post(funnel(session), {"action": "approve"})
    claims = claims_of(response, session)
    assert claims["user_account"] == "SPEI 9616689020"
    assert claims["user_bank"] == "BBVA México"
