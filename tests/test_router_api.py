"""The REST API with the app's models routed to their own database (``tests/routers.py``):
a session created through it is stored on ``payments`` and its status read from there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses as responses_lib
from django.core.cache import cache
from pytest_django import Settings
from rest_framework.test import APIClient

from django_etpay.models import PaymentSession
from tests.api_support import api_settings, etpay_replies
from tests.factories import mint_jwt
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
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    etpay_replies(mocked_responses)
    client = APIClient()

    created = create(client)

    assert created.status_code == 201, created.content
    session = PaymentSession.objects.using(PAYMENTS).get()
    assert created.json()["token"] == session.token
    status = client.get(f"{URL}{session.token}/")
    assert status.status_code == 200
    assert status.json()["status"] == "pending"

    body = json.dumps({"payment": mint_jwt(session)})
    assert client.post("/etpay/notification/", body, content_type="application/json").status_code
    assert client.get(f"{URL}{session.token}/").json()["status"] == "paid"
    assert_nothing_on_default()


def test_a_signed_in_user_creates_a_session_and_sees_it(
    mocked_responses: responses_lib.RequestsMock, django_user_model: Any
) -> None:
    etpay_replies(mocked_responses)
    user = django_user_model.objects.create_user("ana", password="pw-ana")
    client = APIClient()
    client.force_authenticate(user)

    created = create(client)

    assert created.status_code == 201, created.content
    session = PaymentSession.objects.get()
    assert session.created_by_id == user.pk
    assert client.get(f"{URL}{session.token}/").status_code == 200
    stranger = APIClient()
    assert stranger.get(f"{URL}{session.token}/").status_code == 404
    assert_nothing_on_default()
