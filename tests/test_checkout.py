"""services.initialize_session: validation first, the row before the call, and what every
failure leaves behind (without leaking a secret)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
import requests
import responses as responses_lib
from django.conf import settings as django_settings
from django.db import transaction
from django.test import RequestFactory
from pytest_django import DjangoCaptureOnCommitCallbacks, Settings

from django_etpay.exceptions import (
    EtpayAPIError,
    EtpayConfigurationError,
    EtpayConnectionError,
    EtpayHTTPError,
    EtpayResponseError,
    EtpayTimeoutError,
    EtpayValidationError,
)
from django_etpay.models import PaymentSession
from django_etpay.services import initialize_session
from django_etpay.validators import rut_check_digit
from tests import httpfakes
from tests.factories import INIT_URL
from tests.httpfakes import sent_json

pytestmark = pytest.mark.django_db

API_TOKEN = django_settings.TEST_MERCHANT_API_TOKEN
SIGNATURE = "sig-initialize-SECRET-5f1c9a0e7b3d4c2a8e6f0b1d3c5a7e9f1b3d5c7a"
REPLY = {"token": "sess-init-1", "signature_token": SIGNATURE, "terms_url": "https://t.test/tc"}
OUTLET = {
    "MERCHANT_CODE": "cl_outlet",
    "MERCHANT_API_TOKEN": "outlet-api-token-SECRET",
    "API_URL": "https://outlet-api.etpay.test/v1",
    "PMT_URL": "https://outlet-pmt.etpay.test",
    "ENVIRONMENT": "preproduction",
}

#: An empty URLconf, for the test that runs without the app's URLs (ROOT_URLCONF = __name__).
urlpatterns: list[Any] = []


def sent_body(mock: responses_lib.RequestsMock) -> dict[str, Any]:
    """The body of the one call made: a second call would be a retry or a double send."""
    assert len(mock.calls) == 1
    return sent_json(mock)


# -- success ----------------------------------------------------------------------------------


def test_success_stores_tokens_and_moves_to_pending(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)

    session = initialize_session("OC-100", 15990, customer_email="payer@example.cl")

    row = PaymentSession.objects.get(pk=session.pk)
    assert row.status == PaymentSession.Status.PENDING
    assert row.token == "sess-init-1"
    assert row.signature_token == SIGNATURE
    assert row.terms_url == "https://t.test/tc"
    assert row.merchant_order_id == "OC-100"
    assert row.order_amount == 15990
    assert row.currency == "CLP"
    assert row.environment == "sandbox"
    assert row.merchant == ""
    assert row.error == ""
    assert row.outcome_unknown is False
    assert session.payment_url == "https://pmt.etpay.test/session/sess-init-1"


def test_every_field_is_sent_normalised_and_stored(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)
    metadata = [{"name": "Cuenta Servicio Gas", "value": 30215, "show": True}]

    session = initialize_session(
        "OC-101",
        50000,
        customer_email="payer@example.cl",
        metadata=metadata,
        user_bank_code="CL_ESTADO",
        user_rut="12.345.678-5",
        is_rut_block=True,
        payment_completed_url="https://shop.test/ok",
        payment_cancellation_url="https://shop.test/ko",
        payment_webhook_url="https://shop.test/hook",
    )

    assert sent_body(mocked_responses) == {
        "merchant_code": "cl_sandbox_tests",
        "merchant_api_token": API_TOKEN,
        "merchant_order_id": "OC-101",
        "order_amount": 50000,
        "customer_email": "payer@example.cl",
        "metadata": [{"name": "Cuenta Servicio Gas", "value": "30215", "show": True}],
        "user_bank_code": "cl_estado",
        "user_rut": "123456785",
        "is_rut_block": True,
        "payment_completed_url": "https://shop.test/ok",
        "payment_cancellation_url": "https://shop.test/ko",
        "payment_webhook_url": "https://shop.test/hook",
    }
    row = PaymentSession.objects.get(pk=session.pk)
    assert row.metadata == [{"name": "Cuenta Servicio Gas", "value": "30215", "show": True}]
    assert row.user_bank_code == "cl_estado"
    assert row.user_rut == "123456785"
    assert row.is_rut_block is True
    assert row.payment_completed_url == "https://shop.test/ok"
    assert row.payment_cancellation_url == "https://shop.test/ko"
    assert row.payment_webhook_url == "https://shop.test/hook"


def test_only_given_fields_are_sent(mocked_responses: responses_lib.RequestsMock) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)

    session = initialize_session(1234, 1)

    assert sent_body(mocked_responses) == {
        "merchant_code": "cl_sandbox_tests",
        "merchant_api_token": API_TOKEN,
        "merchant_order_id": "1234",
        "order_amount": 1,
    }
    row = PaymentSession.objects.get(pk=session.pk)
    assert row.merchant_order_id == "1234"
    assert row.customer_email == ""
    assert row.metadata == []
    assert row.is_rut_block is None
    assert row.payment_webhook_url == ""


def test_the_row_is_initializing_when_etpay_is_called(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    seen: list[tuple[str, str | None]] = []

    def etpay(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        row = PaymentSession.objects.get(merchant_order_id="OC-102")
        seen.append((row.status, row.token))
        return 200, {}, json.dumps(REPLY)

    mocked_responses.add_callback(responses_lib.POST, INIT_URL, callback=etpay)

    initialize_session("OC-102", 1000)

    assert seen == [(PaymentSession.Status.INITIALIZING, None)]


def test_a_null_terms_url_is_stored_empty(mocked_responses: responses_lib.RequestsMock) -> None:
    mocked_responses.post(INIT_URL, json={**REPLY, "terms_url": None})

    session = initialize_session("OC-103", 1000)

    assert PaymentSession.objects.get(pk=session.pk).terms_url == ""


# -- default and explicit URLs ----------------------------------------------------------------


def test_default_urls_are_built_from_the_request(
    mocked_responses: responses_lib.RequestsMock, rf: RequestFactory
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)
    request = rf.get("/checkout/", secure=True, headers={"host": "shop.test"})

    session = initialize_session("OC-110", 1000, request=request)

    body = sent_body(mocked_responses)
    assert body["payment_completed_url"] == "https://shop.test/etpay/return/"
    assert body["payment_cancellation_url"] == "https://shop.test/etpay/return/"
    assert body["payment_webhook_url"] == "https://shop.test/etpay/notification/"
    row = PaymentSession.objects.get(pk=session.pk)
    assert row.payment_completed_url == "https://shop.test/etpay/return/"
    assert row.payment_webhook_url == "https://shop.test/etpay/notification/"


def test_explicit_urls_win_over_the_defaults(
    mocked_responses: responses_lib.RequestsMock, rf: RequestFactory
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)
    request = rf.get("/checkout/", secure=True, headers={"host": "shop.test"})

    initialize_session(
        "OC-111",
        1000,
        request=request,
        payment_completed_url="https://shop.test/thanks",
        payment_webhook_url="https://hooks.shop.test/etpay",
    )

    body = sent_body(mocked_responses)
    assert body["payment_completed_url"] == "https://shop.test/thanks"
    assert body["payment_webhook_url"] == "https://hooks.shop.test/etpay"
    # The one not given still gets its default.
    assert body["payment_cancellation_url"] == "https://shop.test/etpay/return/"


def test_without_request_no_url_is_sent(mocked_responses: responses_lib.RequestsMock) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)

    initialize_session("OC-112", 1000, payment_cancellation_url="https://shop.test/ko")

    body = sent_body(mocked_responses)
    assert body["payment_cancellation_url"] == "https://shop.test/ko"
    assert "payment_completed_url" not in body
    assert "payment_webhook_url" not in body


def test_default_urls_need_the_apps_urlconf(
    mocked_responses: responses_lib.RequestsMock, rf: RequestFactory, settings: Settings
) -> None:
    settings.ROOT_URLCONF = __name__

    with pytest.raises(EtpayConfigurationError, match=r"django_etpay\.urls"):
        initialize_session("OC-113", 1000, request=rf.get("/"))

    assert len(mocked_responses.calls) == 0
    assert not PaymentSession.objects.exists()


# -- merchants ----------------------------------------------------------------------------------


def test_a_merchant_alias_is_stored_and_its_credentials_used(
    mocked_responses: responses_lib.RequestsMock, settings: Settings
) -> None:
    settings.ETPAY = {**settings.ETPAY, "MERCHANTS": {"outlet": OUTLET}}
    mocked_responses.post("https://outlet-api.etpay.test/v1/session/initialize", json=REPLY)

    session = initialize_session("OC-120", 1000, merchant="outlet")

    body = sent_body(mocked_responses)
    assert body["merchant_code"] == "cl_outlet"
    assert body["merchant_api_token"] == "outlet-api-token-SECRET"
    row = PaymentSession.objects.get(pk=session.pk)
    assert row.merchant == "outlet"
    assert row.environment == "preproduction"
    assert row.payment_url == "https://outlet-pmt.etpay.test/session/sess-init-1"


def test_an_unknown_merchant_alias_creates_nothing(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    with pytest.raises(EtpayConfigurationError, match="'nope'"):
        initialize_session("OC-121", 1000, merchant="nope")

    assert len(mocked_responses.calls) == 0
    assert not PaymentSession.objects.exists()


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("merchant_order_id", {"merchant_order_id": ""}),
        ("merchant_order_id", {"merchant_order_id": "x" * 65}),
        ("merchant_order_id", {"merchant_order_id": None}),
        ("order_amount", {"order_amount": 0}),
        ("order_amount", {"order_amount": -100}),
        ("order_amount", {"order_amount": True}),
        ("order_amount", {"order_amount": 1000.0}),
        ("order_amount", {"order_amount": Decimal("1000")}),
        ("order_amount", {"order_amount": "1000"}),
        ("customer_email", {"customer_email": "not-an-email"}),
        ("metadata", {"metadata": [{"name": "a", "value": "b"}]}),
        ("metadata", {"metadata": {"name": "a", "value": "b", "show": True}}),
        ("user_bank_code", {"user_bank_code": "cl_nobank"}),
        ("user_rut", {"user_rut": "12.345.678-4"}),
        ("user_rut", {"user_rut": "12345678"}),
        ("is_rut_block", {"is_rut_block": "yes", "user_rut": "12.345.678-5"}),
        ("is_rut_block", {"is_rut_block": True}),
        ("payment_completed_url", {"payment_completed_url": "/relative/"}),
        ("payment_cancellation_url", {"payment_cancellation_url": "ftp://shop.test/"}),
        ("payment_webhook_url", {"payment_webhook_url": "not a url"}),
    ],
)
def test_each_bad_field_is_listed_and_nothing_is_sent_or_stored(
    mocked_responses: responses_lib.RequestsMock, field: str, kwargs: dict[str, Any]
) -> None:
    arguments: dict[str, Any] = {"merchant_order_id": "OC-130", "order_amount": 1000, **kwargs}

    with pytest.raises(EtpayValidationError) as info:
        initialize_session(**arguments)

    assert list(info.value.errors) == [field]
    assert info.value.errors[field]
    assert field in str(info.value)
    assert len(mocked_responses.calls) == 0
    assert not PaymentSession.objects.exists()


def test_several_bad_fields_are_listed_together(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    with pytest.raises(EtpayValidationError) as info:
        initialize_session(
            "",
            12.5,  # type: ignore[arg-type]
            customer_email="nope",
            user_rut="12.345.678-4",
            user_bank_code="cl_nobank",
            payment_webhook_url="/hook/",
        )

    assert set(info.value.errors) == {
        "merchant_order_id",
        "order_amount",
        "customer_email",
        "user_rut",
        "user_bank_code",
        "payment_webhook_url",
    }
    assert info.value.errors["user_rut"] == ["has a wrong check digit."]
    assert len(mocked_responses.calls) == 0
    assert not PaymentSession.objects.exists()


@pytest.mark.parametrize(
    "rut", ["12.345.678-5", "12345678-5", "123456785", " 12.345.678-5 ", "12 345 678-5"]
)
def test_rut_in_any_common_format_is_sent_normalised(
    mocked_responses: responses_lib.RequestsMock, rut: str
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)

    initialize_session("OC-131", 1000, user_rut=rut, is_rut_block=False)

    assert sent_body(mocked_responses)["user_rut"] == "123456785"


@pytest.mark.parametrize(
    ("rut", "sent"), [("10.000.013-K", "10000013K"), ("10000013-k", "10000013K")]
)
def test_rut_with_k_check_digit(
    mocked_responses: responses_lib.RequestsMock, rut: str, sent: str
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)

    initialize_session("OC-132", 1000, user_rut=rut)

    assert sent_body(mocked_responses)["user_rut"] == sent


def test_the_longest_accepted_values_fit_their_columns(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    # On PostgreSQL a value longer than its column is an error: validation must stop it first.
    mocked_responses.post(INIT_URL, json=REPLY)
    domain = ".".join(["b" * 60] * 3) + "."
    assert len("a" * 64 + "@" + "b." * 94 + "cl") == 255
    email = "a" * 64 + "@" + domain + "c" * (254 - 65 - len(domain))
    url = "https://shop.test/" + "u" * (2000 - len("https://shop.test/"))

    session = initialize_session(
        "x" * 64,
        2**63 - 1,
        customer_email=email,
        user_rut="999.999.999-" + rut_check_digit("999999999"),
        payment_completed_url=url,
        payment_cancellation_url=url,
        payment_webhook_url=url,
    )

    row = PaymentSession.objects.get(pk=session.pk)
    assert row.customer_email == email
    assert row.payment_webhook_url == url
    assert row.order_amount == 2**63 - 1


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("customer_email", {"customer_email": "a" * 64 + "@" + "b." * 94 + "cl"}),
        ("payment_webhook_url", {"payment_webhook_url": "https://shop.test/" + "u" * 1983}),
        ("user_rut", {"user_rut": "9.999.999.999-" + "0"}),
    ],
)
def test_values_longer_than_their_columns_are_validation_errors(
    mocked_responses: responses_lib.RequestsMock, field: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(EtpayValidationError) as info:
        initialize_session("OC-133", 1000, **kwargs)

    assert list(info.value.errors) == [field]
    assert not PaymentSession.objects.exists()


# -- failures (HTTP faked) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "exc", "code", "unknown"),
    [
        (
            {"status": 400, "json": {"message": "merchant_order_id duplicated"}},
            EtpayHTTPError,
            "http_error",
            False,
        ),
        ({"status": 401, "body": "Unauthorized"}, EtpayHTTPError, "http_error", False),
        ({"status": 500, "json": {"message": "internal"}}, EtpayHTTPError, "http_error", True),
        ({"status": 503, "body": ""}, EtpayHTTPError, "http_error", True),
        (
            {"status": 200, "body": "<html>maintenance</html>"},
            EtpayResponseError,
            "bad_response",
            True,
        ),
        (
            {"status": 200, "json": {"signature_token": SIGNATURE}},
            EtpayResponseError,
            "bad_response",
            True,
        ),
        ({"status": 200, "json": {"token": "t"}}, EtpayResponseError, "bad_response", True),
    ],
    ids=["400-message", "401-text", "500", "503-empty", "non-json", "no-token", "no-signature"],
)
def test_a_failed_call_marks_the_row_error_and_reraises(
    mocked_responses: responses_lib.RequestsMock,
    receivers: dict[str, mock.MagicMock],
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
    reply: dict[str, Any],
    exc: type[EtpayAPIError],
    code: str,
    unknown: bool,
) -> None:
    mocked_responses.post(INIT_URL, **reply)

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(exc) as info:
        initialize_session("OC-140", 1000)

    row = PaymentSession.objects.get(merchant_order_id="OC-140")
    assert row.status == PaymentSession.Status.ERROR
    assert row.error == str(info.value)
    assert row.error_code == code
    assert row.outcome_unknown is unknown
    assert row.needs_reconciliation is unknown
    assert row.token is None
    assert row.signature_token == ""
    assert callbacks == []
    receivers["session_initialized"].assert_not_called()


@pytest.mark.parametrize("field", ["token", "signature_token"])
def test_a_token_too_long_to_store_is_a_bad_response(
    mocked_responses: responses_lib.RequestsMock, field: str
) -> None:
    mocked_responses.post(INIT_URL, json={**REPLY, field: "t" * 256})

    with pytest.raises(EtpayResponseError) as info:
        initialize_session("OC-143", 1000)

    assert info.value.outcome_unknown is True
    row = PaymentSession.objects.get(merchant_order_id="OC-143")
    assert row.status == PaymentSession.Status.ERROR
    assert row.error_code == "bad_response"
    assert row.outcome_unknown is True
    assert "t" * 256 not in row.error


def test_an_etpay_message_is_kept_on_the_row(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(INIT_URL, status=422, json={"message": "order_amount too low"})

    with pytest.raises(EtpayHTTPError) as info:
        initialize_session("OC-141", 1)

    assert info.value.etpay_message == "order_amount too low"
    row = PaymentSession.objects.get(merchant_order_id="OC-141")
    assert "order_amount too low" in row.error
    assert "422" in row.error


def test_an_unexpected_exception_marks_the_row_internal(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    def explode(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        raise RuntimeError("boom")

    mocked_responses.add_callback(responses_lib.POST, INIT_URL, callback=explode)

    with pytest.raises(RuntimeError, match="boom"):
        initialize_session("OC-142", 1000)

    row = PaymentSession.objects.get(merchant_order_id="OC-142")
    assert row.status == PaymentSession.Status.ERROR
    assert row.error_code == "internal"
    assert row.outcome_unknown is True


# -- failures (real local servers) ------------------------------------------------------------


def _point_at(settings: Settings, url: str, **overrides: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "API_URL": url, **overrides}


@pytest.mark.slow
def test_connection_refused_marks_the_row_error_with_a_known_outcome(
    settings: Settings, receivers: dict[str, mock.MagicMock]
) -> None:
    _point_at(settings, f"http://127.0.0.1:{httpfakes.closed_port()}", CONNECT_RETRIES=1)

    with pytest.raises(EtpayConnectionError) as info:
        initialize_session("OC-150", 1000)

    assert info.value.outcome_unknown is False
    row = PaymentSession.objects.get(merchant_order_id="OC-150")
    assert row.status == PaymentSession.Status.ERROR
    assert row.error_code == "connection"
    assert row.outcome_unknown is False
    assert row.needs_reconciliation is False
    receivers["session_initialized"].assert_not_called()


@pytest.mark.slow
def test_a_read_timeout_marks_the_row_error_with_an_unknown_outcome(
    settings: Settings, servers: httpfakes.Servers
) -> None:
    server = servers.start(httpfakes.silent)
    _point_at(settings, server.url, TIMEOUT=(1, 0.5))

    with pytest.raises(EtpayTimeoutError):
        initialize_session("OC-151", 1000)

    row = PaymentSession.objects.get(merchant_order_id="OC-151")
    assert row.status == PaymentSession.Status.ERROR
    assert row.error_code == "timeout"
    assert row.outcome_unknown is True
    assert row.needs_reconciliation is True
    assert len(server.requests) == 1


@pytest.mark.slow
def test_a_dropped_connection_is_not_retried_and_the_outcome_is_unknown(
    settings: Settings, servers: httpfakes.Servers
) -> None:
    server = servers.start(httpfakes.hang_up)
    _point_at(settings, server.url, CONNECT_RETRIES=2)

    with pytest.raises(EtpayConnectionError):
        initialize_session("OC-152", 1000)

    assert len(server.requests) == 1
    row = PaymentSession.objects.get(merchant_order_id="OC-152")
    assert row.error_code == "connection"
    assert row.outcome_unknown is True


@pytest.mark.slow
def test_the_total_deadline_marks_the_row_error_with_an_unknown_outcome(
    settings: Settings, servers: httpfakes.Servers
) -> None:
    server = servers.start(httpfakes.drip(0.2, in_body=True))
    _point_at(settings, server.url, TIMEOUT=(1, 1), TOTAL_TIMEOUT=1)

    with pytest.raises(EtpayTimeoutError):
        initialize_session("OC-153", 1000)

    row = PaymentSession.objects.get(merchant_order_id="OC-153")
    assert row.error_code == "timeout"
    assert row.outcome_unknown is True


# -- signal -----------------------------------------------------------------------------------


def test_session_initialized_is_sent_once_after_commit(
    mocked_responses: responses_lib.RequestsMock,
    receivers: dict[str, mock.MagicMock],
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        session = initialize_session("OC-160", 1000)
        # Nothing is sent before the transaction commits.
        receivers["session_initialized"].assert_not_called()

    assert len(callbacks) == 1
    for callback in callbacks:
        callback()
    receivers["session_initialized"].assert_called_once()
    sent = receivers["session_initialized"].call_args.kwargs
    assert sent["sender"] is PaymentSession
    assert sent["session"] == session
    assert sent["session"].status == PaymentSession.Status.PENDING


def test_session_initialized_is_not_sent_when_the_transaction_rolls_back(
    mocked_responses: responses_lib.RequestsMock,
    receivers: dict[str, mock.MagicMock],
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)

    def create_then_fail() -> None:
        with transaction.atomic():
            initialize_session("OC-161", 1000)
            raise RollbackError

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RollbackError),
    ):
        create_then_fail()

    assert callbacks == []
    receivers["session_initialized"].assert_not_called()
    assert not PaymentSession.objects.filter(merchant_order_id="OC-161").exists()


class RollbackError(Exception):
    """Raised by a test to roll its transaction back."""


# -- secrets ----------------------------------------------------------------------------------

Scenario = Callable[[responses_lib.RequestsMock, Settings, httpfakes.Servers], None]


def _http(**reply: Any) -> Scenario:
    def setup(
        mock: responses_lib.RequestsMock, settings: Settings, servers: httpfakes.Servers
    ) -> None:
        mock.post(INIT_URL, **reply)

    return setup


def _server(handler: httpfakes.Handler, **overrides: Any) -> Scenario:
    def setup(
        mock: responses_lib.RequestsMock, settings: Settings, servers: httpfakes.Servers
    ) -> None:
        mock.add_passthru("http://127.0.0.1")
        _point_at(settings, servers.start(handler).url, **overrides)

    return setup


def _refused(
    mock: responses_lib.RequestsMock, settings: Settings, servers: httpfakes.Servers
) -> None:
    mock.add_passthru("http://127.0.0.1")
    _point_at(settings, f"http://127.0.0.1:{httpfakes.closed_port()}")


SCENARIOS: dict[str, Scenario] = {
    "4xx-echoes-api-token": _http(
        status=400, json={"message": f"bad merchant_api_token {API_TOKEN}"}
    ),
    "4xx-echoes-body": _http(
        status=422,
        json={"message": json.dumps({"merchant_api_token": API_TOKEN, "order_amount": 1})},
    ),
    "5xx-echoes-api-token": _http(status=500, json={"message": f"{API_TOKEN} failed"}),
    "non-json-with-secrets": _http(status=200, body=f"{API_TOKEN} {SIGNATURE}"),
    "no-token": _http(status=200, json={"signature_token": SIGNATURE}),
    "empty-token": _http(status=200, json={"token": "", "signature_token": SIGNATURE}),
    "redirect": _http(status=307, headers={"Location": f"https://x.test/?t={API_TOKEN}"}),
    "refused": _refused,
    "read-timeout": _server(httpfakes.silent, TIMEOUT=(1, 0.3)),
    "hang-up": _server(httpfakes.hang_up),
    "deadline": _server(httpfakes.drip(0.2, in_body=True), TIMEOUT=(1, 1), TOTAL_TIMEOUT=0.6),
    "oversized": _server(httpfakes.oversized(4096, declared=True), MAX_RESPONSE_BYTES=1024),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_secret_in_logs_exceptions_or_the_row(
    mocked_responses: responses_lib.RequestsMock,
    settings: Settings,
    servers: httpfakes.Servers,
    caplog: pytest.LogCaptureFixture,
    scenario: str,
) -> None:
    SCENARIOS[scenario](mocked_responses, settings, servers)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(EtpayAPIError) as info:
        initialize_session("OC-170", 1000, customer_email="payer@example.cl")

    row = PaymentSession.objects.get(merchant_order_id="OC-170")
    texts = [str(info.value), repr(info.value), row.error, repr(row), str(row)]
    texts += [str(vars(info.value))]
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args), record.exc_text or ""]
    assert caplog.records, "the failure is logged"
    for text in texts:
        assert API_TOKEN not in text
        assert SIGNATURE not in text


def test_no_secret_in_logs_on_success(
    mocked_responses: responses_lib.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)
    caplog.set_level(logging.DEBUG)

    session = initialize_session("OC-171", 1000)

    assert caplog.records
    for record in caplog.records:
        assert API_TOKEN not in record.getMessage()
        assert SIGNATURE not in record.getMessage()
    assert SIGNATURE not in repr(session)
    assert SIGNATURE not in str(session)


def test_a_token_etpay_already_gave_another_session_keeps_the_row(
    mocked_responses: responses_lib.RequestsMock, receivers: dict[str, mock.MagicMock]
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)
    first = initialize_session("OC-dup-1", 1000)

    with transaction.atomic():  # the caller's own transaction must stay usable
        with pytest.raises(EtpayResponseError) as caught:
            initialize_session("OC-dup-2", 2000)
        second = PaymentSession.objects.get(merchant_order_id="OC-dup-2")

    assert caught.value.outcome_unknown is True
    assert SIGNATURE not in str(caught.value)
    assert caught.value.__cause__ is None
    assert second.status == PaymentSession.Status.ERROR
    assert second.error_code == "storage"
    assert second.outcome_unknown
    assert second.needs_reconciliation
    assert second.token is None
    assert second.signature_token == ""
    first.refresh_from_db()
    assert first.status == PaymentSession.Status.PENDING
    assert first.token == "sess-init-1"


def test_concat_is_sent_when_a_return_url_has_a_query_string(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)
    initialize_session(
        "OC-concat-1",
        1000,
        payment_completed_url="https://shop.test/paid?order=17",
        payment_cancellation_url="https://shop.test/cancelled",
    )
    assert sent_body(mocked_responses)["concat"] == "&"


def test_concat_is_not_sent_for_plain_urls_and_an_explicit_one_wins(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)
    initialize_session("OC-concat-2", 1000, payment_completed_url="https://shop.test/paid")
    assert "concat" not in sent_body(mocked_responses)

    mocked_responses.calls.reset()
    mocked_responses.post(INIT_URL, json={**REPLY, "token": "sess-init-2"})
    initialize_session(
        "OC-concat-3", 1000, payment_completed_url="https://shop.test/p?o=1", concat=";"
    )
    assert sent_body(mocked_responses)["concat"] == ";"


@pytest.mark.parametrize("bad", ["", "&&&&&&&&&", " & ", "\n", 1])
def test_a_bad_concat_is_refused_before_any_call(
    mocked_responses: responses_lib.RequestsMock, bad: Any
) -> None:
    with pytest.raises(EtpayValidationError) as caught:
        initialize_session("OC-concat-4", 1000, concat=bad)
    assert list(caught.value.errors) == ["concat"]
    assert not mocked_responses.calls
    assert not PaymentSession.objects.exists()
