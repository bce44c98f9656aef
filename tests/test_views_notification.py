"""The notification view: accepted body forms, status codes, and the shared attack table."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest
from django.db import connection, connections
from django.test import Client
from django.urls import resolve, reverse

from django_etpay.models import Notification, PaymentSession
from tests.factories import (
    NOTIFICATION_URL,
    PUBLIC_KEY_PEM,
    WRONG_KEY,
    failing_session_saves,
    hmac_jws,
    make_session,
    mint_jwt,
    mint_payment_claims,
    raw_jws,
    tamper,
)

pytestmark = pytest.mark.django_db

Outcome = Notification.Outcome
Reason = Notification.Reason
Status = PaymentSession.Status

URL = NOTIFICATION_URL


@pytest.fixture
def post(client: Client, django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    def post(body: str | bytes, content_type: str = "application/json") -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return client.generic("POST", URL, body, content_type=content_type)

    return post


def payment_body(raw: str) -> str:
    return json.dumps({"payment": raw})


def test_url_name_is_namespaced() -> None:
    assert reverse("django_etpay:notification") == URL


# -- accepted forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_body", "content_type"),
    [
        pytest.param(payment_body, "application/json", id="json"),
        pytest.param(payment_body, "application/json; charset=utf-8", id="json-charset"),
        pytest.param(payment_body, "", id="json-no-content-type"),
        pytest.param(payment_body, "text/plain", id="json-as-text"),
        pytest.param(lambda raw: raw, "text/plain", id="bare-text"),
        pytest.param(lambda raw: f"  {raw}\n", "", id="bare-no-content-type"),
        pytest.param(lambda raw: f"payment={raw}", "application/x-www-form-urlencoded", id="form"),
        pytest.param(lambda raw: f"payment={raw}", "", id="form-no-content-type"),
    ],
)
def test_body_forms_are_accepted(
    post: Callable[..., Any],
    receivers: dict[str, mock.MagicMock],
    make_body: Callable[[str], str],
    content_type: str,
) -> None:
    session = make_session()
    response = post(make_body(mint_jwt(session)), content_type)
    assert response.status_code == 200
    assert response.content == b""
    session.refresh_from_db()
    assert session.status == Status.PAID
    receivers["payment_completed"].assert_called_once()


def test_multipart_form_field(client: Client) -> None:
    session = make_session()
    response = client.post(URL, {"payment": mint_jwt(session)})
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.status == Status.PAID


def test_duplicate_delivery_answers_200(
    post: Callable[..., Any], receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session()
    body = payment_body(mint_jwt(session))
    assert [post(body).status_code for _ in range(3)] == [200, 200, 200]
    outcomes = list(
        Notification.objects.filter(session=session)
        .order_by("pk")
        .values_list("outcome", flat=True)
    )
    assert outcomes == [Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    receivers["payment_completed"].assert_called_once()


def test_only_post_is_allowed(client: Client) -> None:
    assert client.get(URL).status_code == 405
    assert client.put(URL, "x").status_code == 405
    assert not Notification.objects.exists()


def test_csrf_is_not_required() -> None:
    session = make_session()
    strict = Client(enforce_csrf_checks=True)
    response = strict.post(URL, payment_body(mint_jwt(session)), content_type="application/json")
    assert response.status_code == 200


def test_remote_address_is_recorded(client: Client) -> None:
    session = make_session()
    client.post(
        URL,
        payment_body(mint_jwt(session)),
        content_type="application/json",
        REMOTE_ADDR="198.51.100.20",
    )
    assert Notification.objects.get(session=session).remote_addr == "198.51.100.20"


def test_internal_failure_answers_500_without_traceback(client: Client) -> None:
    session = make_session()
    with failing_session_saves():
        response = client.post(
            URL, payment_body(mint_jwt(session)), content_type="application/json"
        )
    assert response.status_code == 500
    assert response.content == b""
    session.refresh_from_db()
    assert session.status == Status.PENDING
    record = Notification.objects.get(session=session)
    assert record.reason == Reason.INTERNAL_ERROR


@pytest.mark.django_db(transaction=True)
def test_records_survive_with_atomic_requests(client: Client) -> None:
    session = make_session()
    view = resolve(URL).func
    assert getattr(view, "_non_atomic_requests", set()) == set(connections)
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    try:
        with failing_session_saves():
            failed = client.post(
                URL, payment_body(mint_jwt(session)), content_type="application/json"
            )
        rejected = client.post(
            URL,
            payment_body(mint_jwt(session, merchant_amount=1)),
            content_type="application/json",
        )
    finally:
        connection.settings_dict["ATOMIC_REQUESTS"] = False
    assert (failed.status_code, rejected.status_code) == (500, 400)
    reasons = set(Notification.objects.filter(session=session).values_list("reason", flat=True))
    assert reasons == {Reason.INTERNAL_ERROR, Reason.AMOUNT_MISMATCH}
    session.refresh_from_db()
    assert session.status == Status.PENDING


# -- the shared attack and bad-input table ----------------------------------------------------

Build = Callable[[PaymentSession, PaymentSession], tuple[str | bytes, str]]


@dataclass(frozen=True)
class Case:
    """One hostile or broken delivery, and what the view must do with it."""

    build: Build
    status: int
    reason: str
    linked: bool  # whether the stored record names the target session
    final_status: str = Status.PENDING
    outcome: str = Outcome.REJECTED
    prepaid: bool = False


def _json(raw: str) -> tuple[str, str]:
    return payment_body(raw), "application/json"


CASES: dict[str, Case] = {
    "alg-none": Case(
        lambda s, o: _json(raw_jws({"alg": "none", "typ": "JWT"}, mint_payment_claims(s))),
        400,
        Reason.BAD_SIGNATURE,
        linked=True,
    ),
    "wrong-key": Case(
        lambda s, o: _json(mint_jwt(s, key=WRONG_KEY)), 400, Reason.BAD_SIGNATURE, linked=True
    ),
    "other-sessions-key": Case(
        lambda s, o: _json(mint_jwt(s, key=o.signature_token)),
        400,
        Reason.BAD_SIGNATURE,
        linked=True,
    ),
    "rs256-header": Case(
        lambda s, o: _json(
            raw_jws({"alg": "RS256", "typ": "JWT"}, mint_payment_claims(s), b"\x07" * 256)
        ),
        400,
        Reason.BAD_SIGNATURE,
        linked=True,
    ),
    "hs256-with-public-key": Case(
        lambda s, o: _json(hmac_jws({"alg": "HS256"}, mint_payment_claims(s), PUBLIC_KEY_PEM)),
        400,
        Reason.BAD_SIGNATURE,
        linked=True,
    ),
    "hs512": Case(
        lambda s, o: _json(mint_jwt(s, algorithm="HS512")),
        400,
        Reason.BAD_SIGNATURE,
        linked=True,
    ),
    "tampered-amount": Case(
        lambda s, o: _json(tamper(mint_jwt(s, payment_status=False), payment_status=True)),
        400,
        Reason.BAD_SIGNATURE,
        linked=True,
    ),
    "tampered-session": Case(
        lambda s, o: _json(tamper(mint_jwt(o), session_token=s.token)),
        400,
        Reason.BAD_SIGNATURE,
        linked=True,
    ),
    "amount-mismatch": Case(
        lambda s, o: _json(mint_jwt(s, merchant_amount=s.order_amount - 1)),
        400,
        Reason.AMOUNT_MISMATCH,
        linked=True,
    ),
    "order-mismatch": Case(
        lambda s, o: _json(mint_jwt(s, merchant_order_id=o.merchant_order_id)),
        400,
        Reason.ORDER_MISMATCH,
        linked=True,
    ),
    "currency-mismatch": Case(
        lambda s, o: _json(mint_jwt(s, merchant_currency="USD")),
        400,
        Reason.CURRENCY_MISMATCH,
        linked=True,
    ),
    "unknown-session": Case(
        lambda s, o: _json(mint_jwt(s, session_token="sess-nobody-0123456789")),
        400,
        Reason.UNKNOWN_SESSION,
        linked=False,
    ),
    "not-a-jwt": Case(lambda s, o: _json("hello.world"), 400, Reason.MALFORMED, linked=False),
    "empty-body": Case(lambda s, o: ("", "application/json"), 400, Reason.MALFORMED, False),
    "blank-payment": Case(lambda s, o: _json(""), 400, Reason.MALFORMED, linked=False),
    "invalid-json": Case(
        lambda s, o: ('{"payment": ', "application/json"), 400, Reason.MALFORMED, False
    ),
    "json-array": Case(
        lambda s, o: (json.dumps([mint_jwt(s)]), "application/json"),
        400,
        Reason.MALFORMED,
        linked=False,
    ),
    "json-without-payment": Case(
        lambda s, o: (json.dumps({"jwt": mint_jwt(s)}), "application/json"),
        400,
        Reason.MALFORMED,
        linked=False,
    ),
    "deeply-nested-json": Case(
        lambda s, o: ("[" * 50_000, "application/json"), 400, Reason.MALFORMED, False
    ),
    "wrong-content-type": Case(
        lambda s, o: (f"<payment>{mint_jwt(s)}</payment>", "application/xml"),
        400,
        Reason.MALFORMED,
        linked=False,
    ),
    "json-declared-but-bare": Case(
        lambda s, o: (mint_jwt(s), "application/json"), 400, Reason.MALFORMED, False
    ),
    "form-without-field": Case(
        lambda s, o: ("jwt=abc", "application/x-www-form-urlencoded"),
        400,
        Reason.MALFORMED,
        linked=False,
    ),
    "oversized-body": Case(
        lambda s, o: (payment_body(mint_jwt(s)) + " " * (65 * 1024), "application/json"),
        413,
        Reason.TOO_LARGE,
        linked=False,
    ),
    "payment-is-a-number": Case(
        lambda s, o: (json.dumps({"payment": 123}), "application/json"),
        400,
        Reason.MALFORMED,
        linked=False,
    ),
    "payment-is-an-object": Case(
        lambda s, o: (json.dumps({"payment": {"jwt": mint_jwt(s)}}), "application/json"),
        400,
        Reason.MALFORMED,
        linked=False,
    ),
    "binary-garbage": Case(
        lambda s, o: (bytes(range(256)), "application/octet-stream"),
        400,
        Reason.MALFORMED,
        linked=False,
    ),
    "failure-replayed-after-success": Case(
        lambda s, o: _json(mint_jwt(s, payment_status=False)),
        200,
        Reason.NOT_APPLICABLE,
        linked=True,
        final_status=Status.PAID,
        outcome=Outcome.DUPLICATE,
        prepaid=True,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_attack_and_bad_input(
    post: Callable[..., Any], receivers: dict[str, mock.MagicMock], name: str
) -> None:
    case = CASES[name]
    session = make_session()
    other = make_session()
    if case.prepaid:
        assert post(payment_body(mint_jwt(session))).status_code == 200
        receivers["payment_completed"].reset_mock()
    before = Notification.objects.count()
    body, content_type = case.build(session, other)

    response = post(body, content_type)

    assert response.status_code == case.status
    assert b"Traceback" not in response.content
    session.refresh_from_db()
    other.refresh_from_db()
    assert session.status == case.final_status
    assert other.status == Status.PENDING
    assert Notification.objects.count() == before + 1
    record = Notification.objects.latest("pk")
    assert (record.outcome, record.reason) == (case.outcome, case.reason)
    assert record.session_id == (session.pk if case.linked else None)
    assert record.channel == Notification.Channel.WEBHOOK
    receivers["payment_completed"].assert_not_called()
    receivers["payment_failed"].assert_not_called()
    if case.outcome == Outcome.REJECTED:
        receivers["notification_rejected"].assert_called_once()
        assert receivers["notification_rejected"].call_args.kwargs["reason"] == case.reason
    stored = f"{record.raw_body}{record.detail}"
    assert session.signature_token not in stored
    assert other.signature_token not in stored
