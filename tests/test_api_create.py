"""POST api/sessions/: the order hook decides what is paid, the payer's fields go through the
same validators as initialize_session, and ETpay's failures become 502/504 without secrets."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import requests
import responses as responses_lib
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import connection
from pytest_django import Settings
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate

from django_etpay import validators
from django_etpay.api.views import SessionCreateView
from django_etpay.exceptions import EtpayConfigurationError
from django_etpay.models import PaymentSession
from django_etpay.testing import FakeEtpay
from tests.api_support import api_settings, assert_no_secrets, handed_out
from tests.factories import INIT_URL

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.api_urls")]

URL = "/etpay/api/sessions/"


@pytest.fixture(autouse=True)
def api_configured(settings: Settings) -> Iterator[None]:
    settings.ETPAY = api_settings()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast
    cache.clear()  # throttle counts
    yield
    cache.clear()


@pytest.fixture
def user(django_user_model: Any) -> AbstractBaseUser:
    created: AbstractBaseUser = django_user_model.objects.create_user("ana", password="pw-ana")
    return created


@pytest.fixture
def client_for(user: AbstractBaseUser) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def post(client: APIClient, body: Any, **extra: Any) -> Any:
    return client.post(URL, json.dumps(body), content_type="application/json", **extra)


# -- success ----------------------------------------------------------------------------------


def test_creates_the_session_the_hook_names(
    client_for: APIClient, user: AbstractBaseUser, fake_etpay: FakeEtpay
) -> None:
    response = post(client_for, {"order": "cart-mug", "customer_email": "ana@example.cl"})

    assert response.status_code == 201, response.content
    session = PaymentSession.objects.get()
    body = response.json()
    assert body["id"] == session.pk
    assert body["token"] == session.token
    assert body["status"] == "pending"
    assert body["is_final"] is False
    assert body["merchant_order_id"] == "OC-API-MUG"
    assert body["order_amount"] == 6990
    assert body["amount_display"] == "$6.990"
    assert body["payment_url"] == f"https://pmt.etpay.test/session/{session.token}"
    assert body["status_url"] == f"http://testserver/etpay/api/sessions/{session.token}/"
    assert response["Location"] == body["status_url"]
    widget = body["widget"]
    assert widget["sessionToken"] == session.token
    assert widget["paymentUrl"] == body["payment_url"]
    assert widget["funnelOrigin"] == "https://pmt.etpay.test"
    assert widget["resultUrl"] == "http://testserver/etpay/widget-result/"
    assert widget["successUrl"] == "http://testserver/thanks/"
    # What ETpay was asked for came from the hook; the e-mail from the payer.
    sent = fake_etpay.calls[0].body
    assert sent["merchant_order_id"] == "OC-API-MUG"
    assert sent["order_amount"] == 6990
    assert sent["customer_email"] == "ana@example.cl"
    assert sent["metadata"] == [{"name": "Producto", "value": "Taza", "show": True}]
    assert sent["payment_completed_url"] == "http://testserver/etpay/return/"
    assert session.created_by_id == user.pk
    assert_no_secrets(response, *handed_out(fake_etpay))


def test_a_repeated_create_gets_the_orders_live_session(
    client_for: APIClient, fake_etpay: FakeEtpay
) -> None:
    """A double click or a second tab: one ETpay session for the order, not two."""
    first = post(client_for, {"order": "cart-mug"})
    again = post(client_for, {"order": "cart-mug"})
    other = post(client_for, {"order": "cart-big"})

    assert [first.status_code, again.status_code, other.status_code] == [201, 201, 201]
    assert again.json()["token"] == first.json()["token"]
    assert other.json()["token"] != first.json()["token"]
    assert len(fake_etpay.calls) == 2
    assert PaymentSession.objects.filter(merchant_order_id="OC-API-MUG").count() == 1


def test_the_reply_is_never_cached(client_for: APIClient, fake_etpay: FakeEtpay) -> None:
    response = post(client_for, {"order": "cart-mug"})
    assert response.status_code == 201
    directives = {d.strip() for d in response["Cache-Control"].split(",")}
    assert {"no-store", "private"} <= directives
    assert {"Authorization", "Cookie"} <= {v.strip() for v in response["Vary"].split(",")}


def test_the_hook_wins_over_the_payer_and_the_payer_fills_in(
    client_for: APIClient, settings: Settings, fake_etpay: FakeEtpay
) -> None:
    seen: list[dict[str, Any]] = []

    def hook(request: Any, data: Mapping[str, Any]) -> dict[str, Any]:
        seen.append(dict(data))
        return {
            "merchant_order_id": "OC-KNOWN",
            "order_amount": 15000,
            "customer_email": "known@example.cl",  # the shop knows this customer
            "user_rut": None,  # the shop refuses a prefilled RUT
        }

    settings.ETPAY = api_settings(API_ORDER_HOOK=hook)
    body = {
        "order": "42",
        "customer_email": "typed@example.cl",
        "user_bank_code": "CL_BCI",
        "user_rut": "12.345.678-5",
    }

    response = post(client_for, body)

    assert response.status_code == 201, response.content
    assert seen == [
        {
            "order": "42",
            "customer_email": "typed@example.cl",
            "user_bank_code": "cl_bci",
            "user_rut": "123456785",
        }
    ]
    sent = fake_etpay.calls[0].body
    assert sent["customer_email"] == "known@example.cl"
    assert sent["user_bank_code"] == "cl_bci"
    assert "user_rut" not in sent
    assert sent["order_amount"] == 15000


def test_empty_and_null_payer_fields_mean_not_given(
    client_for: APIClient, fake_etpay: FakeEtpay
) -> None:
    response = post(client_for, {"order": "cart-mug", "customer_email": "", "user_rut": None})
    assert response.status_code == 201, response.content
    sent = fake_etpay.calls[0].body
    assert "customer_email" not in sent
    assert "user_rut" not in sent


def test_a_view_subclass_can_be_the_hook(
    user: AbstractBaseUser, fake_etpay: FakeEtpay, settings: Settings
) -> None:
    settings.ETPAY = api_settings(API_ORDER_HOOK=None)
    linked: list[tuple[int, str]] = []

    class CheckoutView(SessionCreateView):
        def get_order(self, request: Any, data: dict[str, Any]) -> dict[str, Any]:
            return {"merchant_order_id": f"SUB-{data['order']}", "order_amount": 1000}

        def session_created(
            self, request: Any, session: PaymentSession, order: Mapping[str, Any]
        ) -> None:
            linked.append((session.pk, order["merchant_order_id"]))

    request = APIRequestFactory().post(URL, {"order": "7"}, format="json")
    force_authenticate(request, user)

    response = CheckoutView.as_view()(request)

    assert response.status_code == 201
    session = PaymentSession.objects.get()
    assert session.merchant_order_id == "SUB-7"
    assert linked == [(session.pk, "SUB-7")]


def test_without_a_hook_the_configuration_error_names_the_setting(
    client_for: APIClient, settings: Settings
) -> None:
    settings.ETPAY = api_settings(API_ORDER_HOOK=None)
    with pytest.raises(EtpayConfigurationError, match=r'ETPAY\["API_ORDER_HOOK"\]'):
        post(client_for, {"order": "cart-mug"})
    assert not PaymentSession.objects.exists()


def test_the_call_to_etpay_runs_outside_atomic_requests(
    transactional_db: None,
    client_for: APIClient,
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    """No transaction is held open while ETpay answers, and a failed call's row is kept."""
    in_transaction: list[bool] = []

    def etpay(request: Any) -> tuple[int, dict[str, str], str]:
        in_transaction.append(connection.in_atomic_block)
        return 500, {}, "{}"

    mocked_responses.add_callback(responses_lib.POST, INIT_URL, callback=etpay)
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    try:
        response = post(client_for, {"order": "cart-mug"})
    finally:
        connection.settings_dict["ATOMIC_REQUESTS"] = False

    assert response.status_code == 502
    assert in_transaction == [False]
    assert PaymentSession.objects.get().status == PaymentSession.Status.ERROR


# -- who may create ---------------------------------------------------------------------------


def test_anonymous_users_are_refused_by_default(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    response = post(APIClient(), {"order": "cart-mug"})
    assert response.status_code == 403
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert len(mocked_responses.calls) == 0
    assert not PaymentSession.objects.exists()
    assert_no_secrets(response)


def test_basic_authentication_answers_401_with_a_challenge(
    settings: Settings, user: AbstractBaseUser
) -> None:
    settings.ETPAY = api_settings(
        API_AUTHENTICATION_CLASSES=["rest_framework.authentication.BasicAuthentication"]
    )
    response = post(APIClient(), {"order": "cart-mug"})
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")


def test_permission_classes_come_from_the_settings(
    settings: Settings, client_for: APIClient, mocked_responses: responses_lib.RequestsMock
) -> None:
    settings.ETPAY = api_settings(
        API_PERMISSION_CLASSES=["rest_framework.permissions.IsAdminUser"]
    )
    response = post(client_for, {"order": "cart-mug"})
    assert response.status_code == 403
    assert len(mocked_responses.calls) == 0


def test_a_subclass_keeps_its_own_permission_classes(
    fake_etpay: FakeEtpay,
) -> None:
    from rest_framework.permissions import AllowAny

    request = APIRequestFactory().post(URL, {"order": "cart-mug"}, format="json")
    response = SessionCreateView.as_view(permission_classes=[AllowAny])(request)
    assert response.status_code == 201


def test_a_signed_in_browser_needs_the_csrf_token(
    user: AbstractBaseUser, fake_etpay: FakeEtpay
) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="ana", password="pw-ana")

    refused = post(client, {"order": "cart-mug"})
    token = _csrf_token(client)
    accepted = post(client, {"order": "cart-mug"}, HTTP_X_CSRFTOKEN=token)

    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert accepted.status_code == 201


def test_a_guest_browser_with_a_session_cookie_needs_the_csrf_token(
    settings: Settings, fake_etpay: FakeEtpay
) -> None:
    """A cross-site page must not create sessions with a guest's cookie (DRF checks CSRF only
    for users its SessionAuthentication signed in)."""
    settings.ETPAY = api_settings(API_PERMISSION_CLASSES=["rest_framework.permissions.AllowAny"])
    client = APIClient(enforce_csrf_checks=True)
    session = client.session
    session["cart"] = "cart-mug"
    session.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key

    refused = post(client, {"order": "cart-mug"})
    accepted = post(client, {"order": "cart-mug"}, HTTP_X_CSRFTOKEN=_csrf_token(client))

    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert accepted.status_code == 201
    assert len(fake_etpay.calls) == 1


def test_a_guest_app_without_cookies_needs_no_csrf_token(
    settings: Settings, fake_etpay: FakeEtpay
) -> None:
    settings.ETPAY = api_settings(API_PERMISSION_CLASSES=["rest_framework.permissions.AllowAny"])
    response = post(APIClient(enforce_csrf_checks=True), {"order": "cart-mug"})
    assert response.status_code == 201
    assert PaymentSession.objects.get().created_by is None


def _csrf_token(client: APIClient) -> str:
    """Give the browser a CSRF cookie (32 alphanumerics, as Django makes) and return it."""
    if "csrftoken" not in client.cookies:
        client.cookies["csrftoken"] = secrets.token_hex(16)
    return str(client.cookies["csrftoken"].value)


# -- validation: 400 with errors per field, nothing sent --------------------------------------


def _validator_message(check: Any, value: Any) -> str:
    """The message the shared validator gives for ``value`` (one source of truth)."""
    try:
        check(value)
    except ValueError as err:
        return str(err)
    raise AssertionError(f"{value!r} passed {check.__name__}")


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"customer_email": "not-an-address"},
            "customer_email",
            _validator_message(validators.email, "not-an-address"),
        ),
        (
            {"customer_email": 12},
            "customer_email",
            _validator_message(validators.email, 12),
        ),
        (
            {"customer_email": "a" * 250 + "@b.cl"},
            "customer_email",
            _validator_message(validators.email, "a" * 250 + "@b.cl"),
        ),
        (
            {"user_bank_code": "cl_nope"},
            "user_bank_code",
            _validator_message(validators.bank_code, "cl_nope"),
        ),
        (
            {"user_rut": "12.345.678-4"},
            "user_rut",
            _validator_message(validators.rut, "12.345.678-4"),
        ),
        (
            {"user_rut": 123456785},
            "user_rut",
            _validator_message(validators.rut, 123456785),
        ),
        (
            {"user_rut": "12-345"},
            "user_rut",
            _validator_message(validators.rut, "12-345"),
        ),
        ({"order": "x" * 129}, "order", "Ensure this field has no more than 128 characters."),
        ({"order": ["cart-mug"]}, "order", "Not a valid string."),
        ({"order": "cart\x00mug"}, "order", "Null characters are not allowed."),
    ],
)
def test_each_invalid_payer_field_is_reported_on_its_field(
    client_for: APIClient,
    mocked_responses: responses_lib.RequestsMock,
    body: dict[str, Any],
    field: str,
    message: str,
) -> None:
    response = post(client_for, {"order": "cart-mug", **body})

    assert response.status_code == 400
    assert response.json() == {field: [message]}
    assert len(mocked_responses.calls) == 0
    assert not PaymentSession.objects.exists()
    assert_no_secrets(response)


@pytest.mark.parametrize(
    "field", ["order_amount", "merchant_order_id", "metadata", "payment_completed_url"]
)
def test_the_browser_cannot_choose_what_it_pays(
    client_for: APIClient, mocked_responses: responses_lib.RequestsMock, field: str
) -> None:
    response = post(client_for, {"order": "cart-mug", field: 1})
    assert response.status_code == 400
    assert response.json() == {field: ["Set by the shop on the server; a browser cannot send it."]}
    assert len(mocked_responses.calls) == 0


def test_every_problem_is_reported_at_once(
    client_for: APIClient, mocked_responses: responses_lib.RequestsMock
) -> None:
    body = {"order_amount": 1, "colour": "red", "user_rut": "1-1", "customer_email": "x"}
    response = post(client_for, body)
    assert response.status_code == 400
    assert set(response.json()) == {"order_amount", "colour", "user_rut", "customer_email"}
    assert response.json()["colour"] == ["Unknown field."]


@pytest.mark.parametrize("key", ["signature_token", "SIGNATURE_TOKEN", "x_merchant_api_token"])
def test_an_unknown_key_naming_a_secret_is_not_echoed(
    client_for: APIClient, mocked_responses: responses_lib.RequestsMock, key: str
) -> None:
    # Found by the schema fuzzer: the refusal of a key "signature_token" named it back.
    response = post(client_for, {"merchant_order_id": "OC-1", key: "x"})
    assert response.status_code == 400
    assert response.json()["[redacted]"] == ["Unknown field."]
    assert "signature_token" not in response.content.decode().lower()
    assert "merchant_api_token" not in response.content.decode().lower()
    assert len(mocked_responses.calls) == 0


def test_unknown_keys_are_reported_up_to_a_bound(client_for: APIClient) -> None:
    body = {f"{n:03d}" + "k" * 100: n for n in range(500)}
    response = post(client_for, body)
    assert response.status_code == 400
    errors = response.json()
    assert len(errors) == 10
    assert all(len(key) <= 64 for key in errors)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("[1, 2]", {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
        (
            '"cart-mug"',
            {"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]},
        ),
        ("null", {"non_field_errors": ["No data provided"]}),
    ],
)
def test_a_body_that_is_not_an_object_is_a_400(
    client_for: APIClient, raw: str, error: dict[str, Any]
) -> None:
    response = client_for.post(URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == error


def test_malformed_json_is_a_400_with_a_detail(client_for: APIClient) -> None:
    response = client_for.post(URL, '{"order": ', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")


def test_a_form_body_is_refused_415(client_for: APIClient) -> None:
    response = client_for.post(URL, {"order": "cart-mug"})  # multipart form
    assert response.status_code == 415
    assert "Unsupported media type" in response.json()["detail"]


def test_the_shops_invalid_order_data_is_reported_on_its_field(
    client_for: APIClient, mocked_responses: responses_lib.RequestsMock
) -> None:
    """Checked by initialize_session itself (an empty cart has an amount of 0)."""
    response = post(client_for, {"order": "empty-cart"})
    assert response.status_code == 400
    assert response.json() == {"order_amount": [_validator_message(validators.amount, 0)]}
    assert len(mocked_responses.calls) == 0


@pytest.mark.parametrize(
    ("field", "value", "check"),
    [
        ("merchant_order_id", "x" * 65, validators.order_id),
        ("merchant_order_id", " padded ", validators.order_id),
        ("order_amount", 6990.0, validators.amount),
        ("order_amount", "6990", validators.amount),
        ("order_amount", True, validators.amount),
        ("metadata", [{"name": "x"}], validators.metadata),
        ("payment_completed_url", "javascript:alert(1)", validators.http_url),
        ("payment_webhook_url", "/relative/", validators.http_url),
        ("customer_email", "shop@@example", validators.email),
        ("user_rut", "11.111.111-2", validators.rut),
        # The account is Chilean: the message lists Chile's codes.
        ("user_bank_code", "us_chase", lambda value: validators.bank_code(value, "CL")),
    ],
)
def test_the_shops_values_go_through_the_same_validators(
    client_for: APIClient,
    settings: Settings,
    mocked_responses: responses_lib.RequestsMock,
    field: str,
    value: Any,
    check: Any,
) -> None:
    """One source of truth: what the hook returns is checked by initialize_session itself."""
    order = {"merchant_order_id": "OC-HOOK", "order_amount": 6990, field: value}
    settings.ETPAY = api_settings(API_ORDER_HOOK=lambda request, data: order)

    response = post(client_for, {"order": "cart-mug"})

    assert response.status_code == 400
    assert response.json() == {field: [_validator_message(check, value)]}
    assert len(mocked_responses.calls) == 0
    assert not PaymentSession.objects.exists()


def test_the_hook_refuses_with_its_own_error(client_for: APIClient) -> None:
    response = post(client_for, {"order": "closed"})
    assert response.status_code == 400
    assert response.json() == {"order": ["This order is already paid."]}


def test_no_order_found_is_a_404(
    client_for: APIClient, mocked_responses: responses_lib.RequestsMock
) -> None:
    response = post(client_for, {"order": "someone-elses-cart"})
    assert response.status_code == 404
    assert response.json() == {"detail": "There is no order to pay here."}
    assert len(mocked_responses.calls) == 0


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ([], "must return a mapping"),
        ({"merchant_order_id": "X"}, "must return order_amount"),
        ({"merchant_order_id": "X", "order_amount": 1, "amount": 1}, "unknown keys: amount"),
    ],
)
def test_a_broken_hook_is_a_programming_error(
    client_for: APIClient, settings: Settings, reply: Any, problem: str
) -> None:
    settings.ETPAY = api_settings(API_ORDER_HOOK=lambda request, data: reply)
    with pytest.raises(TypeError, match=problem):
        post(client_for, {"order": "cart-mug"})


# -- ETpay failures: 502 / 504 with the session id, no traceback, no secret -------------------


@pytest.mark.parametrize(
    ("fake", "status", "code", "outcome_unknown"),
    [
        ({"body": requests.ReadTimeout("read timed out")}, 504, "timeout", True),
        ({"body": requests.ConnectTimeout("connect timed out")}, 504, "timeout", False),
        ({"body": requests.ConnectionError("connection refused")}, 502, "connection", True),
        ({"status": 500, "json": {"message": "internal"}}, 502, "http_error", True),
        ({"status": 503, "body": "<html>down</html>"}, 502, "http_error", True),
        ({"status": 400, "json": {"message": "bad merchant"}}, 502, "http_error", False),
        ({"status": 200, "body": "not json"}, 502, "bad_response", True),
        ({"status": 200, "json": {"token": "only-a-token"}}, 502, "bad_response", True),
    ],
)
def test_etpay_failures_map_to_502_or_504_with_the_session_id(
    client_for: APIClient,
    mocked_responses: responses_lib.RequestsMock,
    fake: dict[str, Any],
    status: int,
    code: str,
    outcome_unknown: bool,
) -> None:
    mocked_responses.add(responses_lib.POST, INIT_URL, **fake)

    response = post(client_for, {"order": "cart-mug"})

    assert response.status_code == status
    session = PaymentSession.objects.get()
    assert session.status == PaymentSession.Status.ERROR
    body = response.json()
    assert body["session_id"] == session.pk
    assert body["code"] == code == session.error_code
    assert body["outcome_unknown"] is outcome_unknown
    assert body["detail"].startswith(
        "ETpay did not answer in time" if status == 504 else "ETpay could not open the payment"
    )
    assert set(body) == {"detail", "code", "session_id", "outcome_unknown"}
    assert_no_secrets(response)


def test_etpays_own_error_text_stays_on_the_row(
    client_for: APIClient, mocked_responses: responses_lib.RequestsMock
) -> None:
    """ETpay's message may echo the API token or merchant details: it is for staff only."""
    from django.conf import settings as django_settings

    token = django_settings.TEST_MERCHANT_API_TOKEN
    mocked_responses.add(
        responses_lib.POST,
        INIT_URL,
        status=401,
        json={"message": f"merchant_api_token {token} is not valid for merchant ZX-77"},
    )

    response = post(client_for, {"order": "cart-mug"})

    assert response.status_code == 502
    assert "ZX-77" not in response.content.decode()
    assert "ZX-77" in PaymentSession.objects.get().error
    assert_no_secrets(response)


def test_a_reply_etpay_created_but_that_cannot_be_stored_is_a_502(
    client_for: APIClient, mocked_responses: responses_lib.RequestsMock
) -> None:
    from tests.factories import make_session

    taken = make_session()
    mocked_responses.add(
        responses_lib.POST,
        INIT_URL,
        json={"token": taken.token, "signature_token": "sig-API-SECRET-duplicate-token-0000"},
    )

    response = post(client_for, {"order": "cart-mug"})

    assert response.status_code == 502
    failed = PaymentSession.objects.exclude(pk=taken.pk).get()
    assert response.json()["session_id"] == failed.pk
    assert response.json()["code"] == "storage"
    assert_no_secrets(response, "sig-API-SECRET-duplicate-token-0000")


def test_a_subclass_keeps_its_own_class_attributes(
    user: AbstractBaseUser, settings: Settings, fake_etpay: FakeEtpay
) -> None:
    """DRF's idiom: classes set on a subclass win over ETPAY (which would refuse here)."""
    from rest_framework.authentication import BaseAuthentication
    from rest_framework.permissions import IsAuthenticated

    class AsAna(BaseAuthentication):
        def authenticate(self, request: Any) -> tuple[AbstractBaseUser, None]:
            return user, None

    class ShopView(SessionCreateView):
        authentication_classes = [AsAna]
        permission_classes = [IsAuthenticated]
        throttle_classes: list[Any] = []

    settings.ETPAY = api_settings(
        API_AUTHENTICATION_CLASSES=[],
        API_PERMISSION_CLASSES=["rest_framework.permissions.IsAdminUser"],
        API_THROTTLE_RATES={"etpay_session_create": "1/minute"},
    )
    view = ShopView.as_view()
    statuses = [
        view(APIRequestFactory().post(URL, {"order": "cart-mug"}, format="json")).status_code
        for _ in range(2)
    ]
    assert statuses == [201, 201]
    # The second request gets the order's live session instead of a new one.
    assert PaymentSession.objects.filter(created_by=user).count() == 1


@pytest.mark.urls("tests.urls")
def test_a_view_mounted_without_the_api_urls_has_no_status_url(
    user: AbstractBaseUser, fake_etpay: FakeEtpay
) -> None:
    request = APIRequestFactory().post("/checkout/api/", {"order": "cart-mug"}, format="json")
    force_authenticate(request, user)
    response = SessionCreateView.as_view()(request)
    assert response.status_code == 201
    assert response.data["status_url"] is None
    assert not response.has_header("Location")
