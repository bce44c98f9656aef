"""The REST API with the app's models routed to their own database (``tests/routers.py``):
a session created through it is stored on ``payments`` and its status read from there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import requests
import responses as responses_lib
from django.core.cache import cache
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from pytest_django import Settings
from rest_framework.test import APIClient

from django_etpay import signals
from django_etpay.models import PaymentSession
from django_etpay.services import initialize_session
from django_etpay.testing import FakeEtpay
from tests.api_support import api_settings
from tests.factories import INIT_URL, make_session, mint_jwt
from tests.router_support import DATABASES, assert_nothing_on_default
from tests.routers import PAYMENTS, ROUTERS

pytestmark = [
    pytest.mark.django_db(databases=DATABASES, transaction=True),
    pytest.mark.urls("tests.api_urls"),
]

URL = "/etpay/api/sessions/"


@pytest.fixture(autouse=True)
def routed(settings: Settings) -> Iterator[None]:
    settings.DATABASE_ROUTERS = ROUTERS
    settings.ETPAY = api_settings()
    cache.clear()  # throttle counts
    yield
    cache.clear()


def create(client: APIClient) -> Any:
    body = json.dumps({"order": "cart-mug", "customer_email": "ana@example.cl"})
    return client.post(URL, body, content_type="application/json")


def test_a_guest_creates_a_session_and_polls_it_until_paid(
    fake_etpay: FakeEtpay, settings: Settings
) -> None:
    settings.ETPAY = api_settings(API_PERMISSION_CLASSES=["rest_framework.permissions.AllowAny"])
    client = APIClient()

    created = create(client)

    assert created.status_code == 201, created.content
    session = PaymentSession.objects.using(PAYMENTS).get()
    assert created.json()["token"] == session.token
    status = client.get(f"{URL}{session.token}/")
    assert status.status_code == 200
    assert status.json()["status"] == "pending"

    body = json.dumps({"payment": mint_jwt(session)})
    paid = client.post("/etpay/notification/", body, content_type="application/json")
    assert paid.status_code == 200
    assert client.get(f"{URL}{session.token}/").json()["status"] == "paid"
    assert_nothing_on_default()


def test_a_signed_in_user_creates_a_session_and_sees_it(
    fake_etpay: FakeEtpay, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_user("ana", password="pw-ana")
    client = APIClient()
    client.force_authenticate(user)

    created = create(client)

    assert created.status_code == 201, created.content
    session = PaymentSession.objects.get()
    assert session.created_by_id == user.pk
    assert client.get(f"{URL}{session.token}/").status_code == 200
    stranger = APIClient()
    stranger.force_authenticate(django_user_model.objects.create_user("eva", password="pw-eva"))
    assert stranger.get(f"{URL}{session.token}/").status_code == 404
    assert_nothing_on_default()


def test_deleting_a_user_leaves_their_sessions_alone(django_user_model: Any) -> None:
    # Django looks for the rows to update on the user's database: the sessions are not there,
    # so none may be looked for (nor changed).
    user = django_user_model.objects.create_user("ana", password="pw-ana")
    user_pk = user.pk
    session = make_session(created_by=user)

    with CaptureQueriesContext(connections["default"]) as default_queries:
        user.delete()

    assert not [q for q in default_queries.captured_queries if "django_etpay" in q["sql"]]
    session.refresh_from_db()
    assert session.created_by_id == user_pk


def test_no_transaction_is_open_on_payments_while_etpay_answers(
    mocked_responses: responses_lib.RequestsMock,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(connections.settings[PAYMENTS], "ATOMIC_REQUESTS", True)
    settings.ETPAY = api_settings(API_PERMISSION_CLASSES=["rest_framework.permissions.AllowAny"])
    mocked_responses.post(
        INIT_URL, json={"token": "sess-routed-api", "signature_token": "sig-routed-" + "0" * 40}
    )
    in_transaction: list[bool] = []
    real_send = requests.adapters.HTTPAdapter.send

    def send(adapter: Any, request: Any, **kwargs: Any) -> Any:
        in_transaction.append(connections[PAYMENTS].in_atomic_block)
        return real_send(adapter, request, **kwargs)

    with mock.patch.object(requests.adapters.HTTPAdapter, "send", send):
        assert create(APIClient()).status_code == 201

    assert in_transaction == [False]


def test_session_initialized_waits_for_payments_not_default(
    fake_etpay: FakeEtpay,
) -> None:
    heard: list[int] = []

    def receiver(sender: Any, session: PaymentSession, **kwargs: Any) -> None:
        heard.append(session.pk)

    signals.session_initialized.connect(receiver, dispatch_uid="tests-router-initialized")
    try:
        with transaction.atomic(using="default"):
            first = initialize_session(merchant_order_id="OC-ROUTED-INIT-1", order_amount=6990)
            assert heard == [first.pk]  # committed on payments: default's block is not its own
        with transaction.atomic(using=PAYMENTS):
            second = initialize_session(merchant_order_id="OC-ROUTED-INIT-2", order_amount=6990)
            assert heard == [first.pk]
        assert heard == [first.pk, second.pk]
    finally:
        signals.session_initialized.disconnect(dispatch_uid="tests-router-initialized")
    assert_nothing_on_default()
