"""The sandbox's API and funnel, driven in-process with Django's test client."""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from django.conf import settings
from django.test import Client, override_settings

from django_etpay import validators
from django_etpay.sandbox.models import SandboxSession

INIT_URL = "/sandbox/session/initialize"
STATUS_URL = "/sandbox/merchant/check_payment_status"
SHOP = "https://shop.example"

pytestmark = pytest.mark.django_db


def credentials() -> dict[str, Any]:
    return {
        "merchant_code": settings.ETPAY["MERCHANT_CODE"],
        "merchant_api_token": settings.ETPAY["MERCHANT_API_TOKEN"],
    }


def initialize(client: Client, *, headers: dict[str, str] | None = None, **fields: Any) -> Any:
    body = {**credentials(), "merchant_order_id": "OC-1", "order_amount": 15990, **fields}
    return client.post(
        INIT_URL, json.dumps(body), content_type="application/json", headers=headers or {}
    )


def new_session(client: Client, **fields: Any) -> SandboxSession:
    response = initialize(client, **fields)
    assert response.status_code == 200, response.content
    return SandboxSession.objects.get(token=response.json()["token"])


def funnel(session: SandboxSession) -> str:
    return f"/sandbox/session/{session.token}"


def jwt_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["jwt"][0]


# -- /session/initialize ---------------------------------------------------------------------


def test_initialize_returns_tokens_and_stores_the_session(client: Client) -> None:
    response = initialize(client, customer_email="payer@example.com")
    assert response.status_code == 200
    reply = response.json()
    assert set(reply) == {"token", "signature_token", "terms_url"}
    session = SandboxSession.objects.get(token=reply["token"])
    assert session.signature_token == reply["signature_token"]
    assert (session.merchant_order_id, session.order_amount) == ("OC-1", 15990)
    assert session.customer_email == "payer@example.com"


def test_initialize_parses_json_without_a_content_type(client: Client) -> None:
    # ETpay's SDK posts json.dumps(...) with no Content-Type header.
    body = json.dumps({**credentials(), "merchant_order_id": "OC-2", "order_amount": 100})
    response = client.generic("POST", INIT_URL, body, content_type="")
    assert response.status_code == 200
    assert SandboxSession.objects.filter(merchant_order_id="OC-2").exists()


@pytest.mark.parametrize(
    "override",
    [{"merchant_api_token": "wrong-token"}, {"merchant_code": "cl_someone_else"}],
)
def test_bad_credentials_are_a_401_with_a_message(
    client: Client, override: dict[str, str]
) -> None:
    response = initialize(client, **override)
    assert response.status_code == 401
    assert response.json() == {"message": "Invalid merchant credentials."}
    assert not SandboxSession.objects.exists()


def test_a_merchant_alias_is_accepted_and_recorded(client: Client) -> None:
    alias = {
        "MERCHANT_CODE": "cl_sandbox_second",
        "MERCHANT_API_TOKEN": "second-account-token-0123456789abcdef",
        "API_URL": "https://api.etpay.test",
        "PMT_URL": "https://pmt.etpay.test",
    }
    with override_settings(ETPAY={**settings.ETPAY, "MERCHANTS": {"second": alias}}):
        response = initialize(
            client,
            merchant_code=alias["MERCHANT_CODE"],
            merchant_api_token=alias["MERCHANT_API_TOKEN"],
        )
    assert response.status_code == 200
    assert SandboxSession.objects.get().merchant == "second"


@pytest.mark.parametrize("missing", ["merchant_code", "merchant_order_id", "order_amount"])
def test_missing_fields_are_a_400_naming_them(client: Client, missing: str) -> None:
    body = {**credentials(), "merchant_order_id": "OC-3", "order_amount": 100}
    del body[missing]
    response = client.post(INIT_URL, json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert missing in response.json()["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("order_amount", 10.5),
        ("order_amount", -1),
        ("user_bank_code", "cl_nope"),
        ("user_rut", "12.345.678-9"),
        ("payment_webhook_url", "not a url"),
    ],
)
def test_invalid_fields_are_a_400(client: Client, field: str, value: Any) -> None:
    response = initialize(client, **{field: value})
    assert response.status_code == 400
    assert field in response.json()["message"]


def test_a_body_that_is_not_json_is_a_400(client: Client) -> None:
    response = client.generic("POST", INIT_URL, b"merchant_code=x", content_type="")
    assert response.status_code == 400
    assert "JSON" in response.json()["message"]


def test_the_sandbox_is_off_outside_the_sandbox_environment(client: Client) -> None:
    with override_settings(ETPAY={**settings.ETPAY, "ENVIRONMENT": "preproduction"}):
        assert initialize(client).status_code == 404
    session = new_session(client)
    with override_settings(ETPAY={**settings.ETPAY, "ENVIRONMENT": "production"}):
        assert client.get(funnel(session)).status_code == 404


def test_initialize_5xx_fault_answers_503_after_creating_the_session(client: Client) -> None:
    response = initialize(client, headers={"X-Sandbox-Faults": "initialize_5xx"})
    assert response.status_code == 503
    assert "message" in response.json()
    assert SandboxSession.objects.count() == 1


def test_fault_prefix_on_the_api_url_is_stored_on_the_session(client: Client) -> None:
    body = {**credentials(), "merchant_order_id": "OC-4", "order_amount": 100}
    response = client.post(
        "/sandbox/faults/late=2,twice/session/initialize",
        json.dumps(body),
        content_type="application/json",
    )
    assert response.status_code == 200
    assert SandboxSession.objects.get().faults == "late=2,twice"


def test_an_unknown_fault_is_a_400(client: Client) -> None:
    response = initialize(client, headers={"X-Sandbox-Faults": "explode"})
    assert response.status_code == 400
    assert "explode" in response.json()["message"]


# -- /merchant/check_payment_status ----------------------------------------------------------


def status_query(client: Client, **filters: Any) -> Any:
    body = {"merchant_api_token": settings.ETPAY["MERCHANT_API_TOKEN"], **filters}
    return client.generic("POST", STATUS_URL, json.dumps(body), content_type="")


def test_status_lists_completed_payments_only(client: Client) -> None:
    paid = new_session(client, merchant_order_id="OC-10")
    new_session(client, merchant_order_id="OC-10")  # still in the funnel: not a payment
    client.post(funnel(paid), {"bank": "cl_bci", "rut": "11.111.111-1", "action": "approve"})

    reply = status_query(client, merchant_order_id="OC-10")
    assert reply.status_code == 200
    entries = reply.json()
    assert isinstance(entries, list)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["session_token"] == paid.token
    assert entry["payment_status"] is True
    assert entry["merchant_amount"] == 15990
    assert entry["user_bank"] == validators.BANK_NAMES["cl_bci"]
    assert entry["user_rut"] == "111111111"
    assert {"payment_token", "payment_date", "merchant_currency"} <= set(entry)
    assert status_query(client, session_token=paid.token).json() == entries


def test_status_string_fault_reports_success_as_a_string(client: Client) -> None:
    session = new_session(client)
    client.post(funnel(session), {"bank": "cl_bci", "action": "approve"})
    reply = client.generic(
        "POST",
        STATUS_URL,
        json.dumps(
            {
                "merchant_api_token": settings.ETPAY["MERCHANT_API_TOKEN"],
                "session_token": session.token,
            }
        ),
        content_type="",
        headers={"X-Sandbox-Faults": "status_string"},
    )
    assert reply.json()[0]["payment_status"] == "success"


def test_status_needs_a_filter_and_the_api_token(client: Client) -> None:
    assert status_query(client).status_code == 400
    response = client.generic(
        "POST",
        STATUS_URL,
        json.dumps({"merchant_api_token": "nope", "session_token": "x"}),
        content_type="",
    )
    assert response.status_code == 401
    assert response.json()["message"]


# -- the funnel page ------------------------------------------------------------------------


def test_funnel_offers_every_chilean_bank_and_says_no_real_money(client: Client) -> None:
    session = new_session(client)
    page = client.get(funnel(session)).content.decode()
    assert "ETpay sandbox - no real money" in page
    for code in validators.CHILE_BANK_CODES:
        assert f'name="bank" value="{code}"' in page
    assert "$15.990" in page
    assert session.signature_token not in page


def test_funnel_honours_a_preselected_bank(client: Client) -> None:
    session = new_session(client, user_bank_code="cl_santander")
    page = client.get(funnel(session)).content.decode()
    assert 'type="radio"' not in page
    assert '<input type="hidden" name="bank" value="cl_santander">' in page
    assert validators.BANK_NAMES["cl_santander"] in page


def test_a_chilean_account_refuses_a_mexican_bank(client: Client) -> None:
    # A Mexican account's preselected bank completes: tests/test_sandbox_mexico.py.
    response = initialize(client, user_bank_code="mx_bbva")
    assert response.status_code == 400
    assert "user_bank_code must be one of cl_estado" in response.json()["message"]


def test_funnel_prefills_and_locks_the_rut(client: Client) -> None:
    locked = new_session(client, user_rut="12.345.678-5", is_rut_block=True)
    page = client.get(funnel(locked)).content.decode()
    assert 'value="12.345.678-5"' in page
    assert "readonly" in page
    open_rut = new_session(client, user_rut="12.345.678-5")
    assert "readonly" not in client.get(funnel(open_rut)).content.decode()


def test_a_locked_rut_cannot_be_changed_by_the_payer(client: Client) -> None:
    session = new_session(
        client,
        user_rut="12.345.678-5",
        is_rut_block=True,
        payment_completed_url=f"{SHOP}/done",
    )
    response = client.post(
        funnel(session), {"bank": "cl_bci", "rut": "11.111.111-1", "action": "approve"}
    )
    claims = jwt.decode(jwt_of(response["Location"]), session.signature_token, ["HS256"])
    assert claims["user_rut"] == "123456785"


def test_funnel_shows_only_metadata_marked_show(client: Client) -> None:
    session = new_session(
        client,
        metadata=[
            {"name": "Producto", "value": "Taza de cerámica", "show": True},
            {"name": "internal_ref", "value": "hidden-4411", "show": False},
        ],
    )
    page = client.get(funnel(session)).content.decode()
    assert "Taza de cerámica" in page
    assert "internal_ref" not in page
    assert "hidden-4411" not in page


# -- completing the funnel ------------------------------------------------------------------


def test_approval_redirects_with_a_jwt_signed_by_the_session_key(client: Client) -> None:
    session = new_session(client, payment_completed_url=f"{SHOP}/done")
    response = client.post(
        funnel(session), {"bank": "cl_estado", "rut": "11.111.111-1", "action": "approve"}
    )
    assert response.status_code == 303
    assert response["Location"].startswith(f"{SHOP}/done?jwt=")
    claims = jwt.decode(jwt_of(response["Location"]), session.signature_token, ["HS256"])
    assert claims["payment_status"] is True
    assert claims["session_token"] == session.token
    assert claims["merchant_order_id"] == "OC-1"
    assert claims["merchant_amount"] == 15990
    assert claims["merchant_name"] == "Sandbox Developer Merchant"
    assert claims["merchant_currency"] == "CLP"
    assert "exp" not in claims
    assert isinstance(claims["iat"], int)
    session.refresh_from_db()
    assert session.status == SandboxSession.Status.APPROVED
    assert claims["payment_token"] == session.payment_token


def test_rejection_goes_to_the_cancellation_url_with_concat(client: Client) -> None:
    session = new_session(
        client,
        payment_completed_url=f"{SHOP}/done",
        payment_cancellation_url=f"{SHOP}/cancel?order=OC-1",
        concat="&",
    )
    response = client.post(funnel(session), {"bank": "cl_bci", "action": "reject"})
    assert response["Location"].startswith(f"{SHOP}/cancel?order=OC-1&jwt=")
    claims = jwt.decode(jwt_of(response["Location"]), session.signature_token, ["HS256"])
    assert claims["payment_status"] is False


def test_system_error_fault_sends_a_jwt_signed_with_the_session_token(client: Client) -> None:
    session = new_session(client, payment_cancellation_url=f"{SHOP}/cancel")
    response = client.post(
        funnel(session) + "?faults=system_error", {"bank": "cl_bci", "action": "approve"}
    )
    assert response["Location"].startswith(f"{SHOP}/cancel?jwt=")
    claims = jwt.decode(jwt_of(response["Location"]), session.token, ["HS256"])
    assert claims["system_error"] is True
    assert set(claims) == {"session_token", "system_error", "iat"}
    assert status_query(client, session_token=session.token).json() == []


def test_framed_funnel_hands_the_jwt_to_the_merchant_origin_only(client: Client) -> None:
    session = new_session(
        client,
        payment_completed_url=f"{SHOP}/done",
        payment_webhook_url="https://hooks.shop.example/etpay",
    )
    response = client.post(funnel(session), {"bank": "cl_bci", "action": "approve", "framed": "1"})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="etpay-sandbox-result"' in page
    assert f'data-origins="{SHOP} https://hooks.shop.example"' in page
    assert "frame-ancestors 'self' https://shop.example" in response["Content-Security-Policy"]
    script = client.get("/sandbox/assets/funnel.js").content.decode()
    assert '"etpay:result"' in script
    assert "window.parent.postMessage(message, origin)" in script
    assert "message.session_token = session" in script
    assert "*" not in script


def test_a_session_completes_once(client: Client) -> None:
    session = new_session(client, payment_completed_url=f"{SHOP}/done")
    first = client.post(funnel(session), {"bank": "cl_bci", "action": "approve"})
    second = client.post(funnel(session), {"bank": "cl_bci", "action": "reject"})
    assert first.status_code == 303
    assert second.status_code == 200
    session.refresh_from_db()
    assert session.status == SandboxSession.Status.APPROVED


def test_a_missing_bank_choice_is_asked_again(client: Client) -> None:
    session = new_session(client)
    response = client.post(funnel(session), {"action": "approve"})
    assert response.status_code == 400
    assert "Choose your bank" in response.content.decode()
    session.refresh_from_db()
    assert session.status == SandboxSession.Status.PENDING


def test_never_fault_starts_no_webhook_delivery(client: Client) -> None:
    session = new_session(client, payment_webhook_url=f"{SHOP}/hook")
    before = {t.ident for t in threading.enumerate() if t.name == "etpay-sandbox-webhook"}
    client.post(funnel(session), {"bank": "cl_bci", "action": "approve", "faults": "never"})
    after = {t.ident for t in threading.enumerate() if t.name == "etpay-sandbox-webhook"}
    assert after == before
    session.refresh_from_db()
    assert session.faults == "never"
