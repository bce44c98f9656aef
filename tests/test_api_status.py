"""GET api/sessions/<token>/: visible only to whom the visibility hook allows, cacheable only
by the poller itself, and revalidated with an ETag."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses as responses_lib
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.test import RequestFactory
from pytest_django import Settings
from rest_framework.test import APIClient

from django_etpay.api import permissions
from django_etpay.models import PaymentSession
from django_etpay.services import initialize_session
from django_etpay.testing import FakeEtpay
from tests.api_support import api_settings, assert_no_secrets
from tests.factories import make_session

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.api_urls")]


@pytest.fixture(autouse=True)
def api_configured(settings: Settings) -> Iterator[None]:
    settings.ETPAY = api_settings()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def users(django_user_model: Any) -> dict[str, AbstractBaseUser]:
    manager = django_user_model.objects
    return {
        "owner": manager.create_user("owner", password="pw"),
        "other": manager.create_user("other", password="pw"),
        "staff": manager.create_user("staff", password="pw", is_staff=True),
        "retired": manager.create_user("retired", password="pw", is_staff=True, is_active=False),
    }


def client_as(user: AbstractBaseUser | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def url(session: PaymentSession) -> str:
    return f"/etpay/api/sessions/{session.token}/"


def directives(response: Any) -> set[str]:
    return {d.strip() for d in response["Cache-Control"].split(",")}


def test_the_creator_sees_the_status(users: dict[str, AbstractBaseUser]) -> None:
    session = make_session(created_by=users["owner"], order_amount=6990)

    response = client_as(users["owner"]).get(url(session))

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == session.pk
    assert body["token"] == session.token
    assert body["status"] == "pending"
    assert body["is_final"] is False
    assert body["order_amount"] == 6990
    assert body["amount_display"] == "$6.990"
    assert body["payment_url"] == f"https://pmt.etpay.test/session/{session.token}"
    assert body["status_url"] == f"http://testserver{url(session)}"
    assert body["paid_at"] is None
    assert "widget" not in body
    assert_no_secrets(response, session.signature_token)


def test_a_paid_session_says_it_is_final(users: dict[str, AbstractBaseUser]) -> None:
    session = make_session(created_by=users["owner"], status=PaymentSession.Status.PAID)
    body = client_as(users["owner"]).get(url(session)).json()
    assert body["status"] == "paid"
    assert body["is_final"] is True


@pytest.mark.parametrize(("who", "status"), [("other", 404), ("retired", 404), (None, 403)])
def test_others_do_not_see_it(
    users: dict[str, AbstractBaseUser], who: str | None, status: int
) -> None:
    session = make_session(created_by=users["owner"])
    response = client_as(users[who] if who else None).get(url(session))
    assert response.status_code == status
    assert session.token not in response.content.decode()
    assert_no_secrets(response, session.signature_token)


def test_someone_elses_session_looks_exactly_like_a_missing_one(
    users: dict[str, AbstractBaseUser],
) -> None:
    session = make_session(created_by=users["owner"])
    hidden = client_as(users["other"]).get(url(session))
    missing = client_as(users["other"]).get("/etpay/api/sessions/sess-does-not-exist/")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content


def test_staff_see_every_session(users: dict[str, AbstractBaseUser]) -> None:
    session = make_session(created_by=users["owner"])
    response = client_as(users["staff"]).get(url(session))
    assert response.status_code == 200
    assert response.json()["token"] == session.token


def test_a_session_without_creator_is_for_staff_only(users: dict[str, AbstractBaseUser]) -> None:
    session = make_session()
    assert client_as(users["owner"]).get(url(session)).status_code == 404
    assert client_as(users["staff"]).get(url(session)).status_code == 200


def test_a_server_side_checkout_records_its_user_for_the_api(
    users: dict[str, AbstractBaseUser], fake_etpay: FakeEtpay
) -> None:
    """initialize_session stores request.user, so sessions made by a classic checkout view
    can be polled through the API by the same customer."""
    request = RequestFactory().post("/checkout/")
    request.user = users["owner"]
    session = initialize_session("OC-CLASSIC-1", 5000, request=request)

    assert session.created_by == users["owner"]
    assert client_as(users["owner"]).get(url(session)).status_code == 200
    assert client_as(users["other"]).get(url(session)).status_code == 404


def test_a_guest_sees_the_sessions_its_browser_created(
    settings: Settings, fake_etpay: FakeEtpay
) -> None:
    settings.ETPAY = api_settings(API_PERMISSION_CLASSES=["rest_framework.permissions.AllowAny"])
    guest = APIClient()
    created = guest.post(
        "/etpay/api/sessions/", json.dumps({"order": "cart-mug"}), content_type="application/json"
    )
    assert created.status_code == 201
    status_url = created.json()["status_url"]

    mine = guest.get(status_url)
    stranger = APIClient().get(status_url)

    assert mine.status_code == 200
    assert mine.json()["token"] == created.json()["token"]
    assert stranger.status_code == 404


def test_a_guest_browser_remembers_a_bounded_number_of_sessions(rf: RequestFactory) -> None:
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore

    request = rf.post("/")
    request.session = SessionStore()
    request.user = AnonymousUser()
    sessions = [make_session() for _ in range(permissions.MAX_REMEMBERED + 3)]
    for session in sessions:
        permissions.remember_session(request, session)
    permissions.remember_session(request, sessions[5])  # again: moves to the end, no copy

    remembered = request.session[permissions.REMEMBERED_KEY]
    assert len(remembered) == permissions.MAX_REMEMBERED
    assert remembered[-1] == sessions[5].token
    assert sessions[0].token not in remembered
    assert permissions.created_in_this_browser(request, sessions[-1])
    assert not permissions.created_in_this_browser(request, sessions[0])


def test_signed_in_users_are_not_given_a_django_session(rf: RequestFactory) -> None:
    from django.contrib.sessions.backends.db import SessionStore

    request = rf.post("/")
    request.session = SessionStore()
    request.user = type("User", (), {"is_authenticated": True})()
    permissions.remember_session(request, make_session())
    assert permissions.REMEMBERED_KEY not in request.session


def test_the_visibility_hook_is_configurable(
    settings: Settings, users: dict[str, AbstractBaseUser]
) -> None:
    session = make_session(created_by=users["owner"], customer_email="other@example.cl")

    def same_email(request: Any, candidate: PaymentSession) -> bool:
        return bool(candidate.customer_email == f"{request.user.username}@example.cl")

    settings.ETPAY = api_settings(API_VISIBILITY_HOOK=same_email)
    assert client_as(users["other"]).get(url(session)).status_code == 200
    assert client_as(users["owner"]).get(url(session)).status_code == 404


# -- polling: caching and revalidation --------------------------------------------------------


def test_polling_replies_are_private_and_revalidated(users: dict[str, AbstractBaseUser]) -> None:
    session = make_session(created_by=users["owner"])
    response = client_as(users["owner"]).get(url(session))
    assert {"private", "no-cache", "max-age=0"} <= directives(response)
    assert "public" not in directives(response)
    assert {"Authorization", "Cookie"} <= {v.strip() for v in response["Vary"].split(",")}
    assert response["ETag"].startswith('"')


def test_an_unchanged_status_is_a_304_and_a_change_is_seen(
    users: dict[str, AbstractBaseUser],
) -> None:
    session = make_session(created_by=users["owner"])
    client = client_as(users["owner"])
    first = client.get(url(session))
    etag = first["ETag"]

    unchanged = client.get(url(session), HTTP_IF_NONE_MATCH=etag)
    weak = client.get(url(session), HTTP_IF_NONE_MATCH=f'"other", W/{etag}')
    PaymentSession.objects.filter(pk=session.pk).update(status=PaymentSession.Status.PAID)
    changed = client.get(url(session), HTTP_IF_NONE_MATCH=etag)

    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged["ETag"] == etag
    assert {"private", "no-cache"} <= directives(unchanged)
    assert weak.status_code == 304
    assert changed.status_code == 200
    assert changed.json()["status"] == "paid"
    assert changed["ETag"] != etag


def test_errors_are_never_cached(users: dict[str, AbstractBaseUser]) -> None:
    response = client_as(users["owner"]).get("/etpay/api/sessions/nope/")
    assert response.status_code == 404
    assert "no-store" in directives(response)


@pytest.mark.parametrize("token", ["x" * 256, "x" * 5000, "%00", "sess-%F0%9F%92%B8"])
def test_odd_tokens_are_simply_not_found(users: dict[str, AbstractBaseUser], token: str) -> None:
    response = client_as(users["staff"]).get(f"/etpay/api/sessions/{token}/")
    assert response.status_code == 404
    assert response.json() == {"detail": "No such payment session."}


def test_head_answers_like_get_without_a_body(users: dict[str, AbstractBaseUser]) -> None:
    session = make_session(created_by=users["owner"])
    response = client_as(users["owner"]).head(url(session))
    assert response.status_code == 200
    assert response.content == b""


def test_post_on_a_session_is_not_allowed(users: dict[str, AbstractBaseUser]) -> None:
    session = make_session(created_by=users["owner"])
    response = client_as(users["owner"]).post(url(session), {}, format="json")
    assert response.status_code == 405


# -- what initialize_session records for the API ----------------------------------------------


def test_guests_and_calls_without_a_request_record_no_creator(
    rf: RequestFactory, fake_etpay: FakeEtpay
) -> None:
    from django.contrib.auth.models import AnonymousUser

    request = rf.post("/checkout/")
    request.user = AnonymousUser()
    assert initialize_session("OC-GUEST-1", 1000, request=request).created_by is None
    assert initialize_session("OC-BATCH-1", 1000).created_by is None


def test_a_failed_call_names_the_row_it_kept(mocked_responses: responses_lib.RequestsMock) -> None:
    from django_etpay.exceptions import EtpayHTTPError

    mocked_responses.add(
        responses_lib.POST, "https://api.etpay.test/session/initialize", status=500, json={}
    )
    with pytest.raises(EtpayHTTPError) as caught:
        initialize_session("OC-FAIL-1", 1000)
    assert caught.value.session_id == PaymentSession.objects.get(merchant_order_id="OC-FAIL-1").pk


def test_without_a_visibility_hook_the_default_applies(
    settings: Settings, users: dict[str, AbstractBaseUser]
) -> None:
    settings.ETPAY = api_settings(API_VISIBILITY_HOOK=None)
    session = make_session(created_by=users["owner"])
    assert client_as(users["owner"]).get(url(session)).status_code == 200
    assert client_as(users["other"]).get(url(session)).status_code == 404
