"""DRF throttles on both endpoints: per endpoint, per user or guest address, from ETPAY."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from pytest_django import Settings
from rest_framework.test import APIClient

from django_etpay.models import PaymentSession
from django_etpay.testing import FakeEtpay
from tests.api_support import api_settings, assert_no_secrets, handed_out
from tests.factories import make_session

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.api_urls")]

CREATE = "/etpay/api/sessions/"
GUESTS = ["rest_framework.permissions.AllowAny"]


@pytest.fixture(autouse=True)
def clean_counts(settings: Settings) -> Iterator[None]:
    settings.ETPAY = api_settings()
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def ana(django_user_model: Any) -> AbstractBaseUser:
    user: AbstractBaseUser = django_user_model.objects.create_user("ana")
    return user


@pytest.fixture
def bea(django_user_model: Any) -> AbstractBaseUser:
    user: AbstractBaseUser = django_user_model.objects.create_user("bea")
    return user


def signed_in(user: AbstractBaseUser) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def create(client: APIClient, order: str = "cart-mug", **extra: Any) -> Any:
    body = json.dumps({"order": order})
    return client.post(CREATE, body, content_type="application/json", **extra)


def test_the_default_create_rate_is_ten_a_minute(
    ana: AbstractBaseUser, fake_etpay: FakeEtpay
) -> None:
    client = signed_in(ana)
    statuses = [create(client).status_code for _ in range(11)]
    assert statuses == [201] * 10 + [429]
    # One order, one live session: the repeats get the session the first request created.
    assert len(fake_etpay.calls) == 1


def test_a_throttled_create_says_when_to_retry_and_calls_nobody(
    settings: Settings, ana: AbstractBaseUser, fake_etpay: FakeEtpay
) -> None:
    settings.ETPAY = api_settings(API_THROTTLE_RATES={"etpay_session_create": "2/minute"})
    client = signed_in(ana)
    create(client, "cart-mug")
    create(client, "cart-big")

    throttled = create(client, "cart-tea")

    assert throttled.status_code == 429
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert throttled.json()["detail"].startswith("Request was throttled.")
    assert len(fake_etpay.calls) == 2
    assert PaymentSession.objects.count() == 2
    assert_no_secrets(throttled, *handed_out(fake_etpay))


def test_each_user_has_their_own_count(
    settings: Settings,
    ana: AbstractBaseUser,
    bea: AbstractBaseUser,
    fake_etpay: FakeEtpay,
) -> None:
    settings.ETPAY = api_settings(API_THROTTLE_RATES={"etpay_session_create": "1/minute"})
    assert create(signed_in(ana)).status_code == 201
    assert create(signed_in(ana)).status_code == 429
    assert create(signed_in(bea)).status_code == 201


def test_guests_are_counted_per_address(settings: Settings, fake_etpay: FakeEtpay) -> None:
    settings.ETPAY = api_settings(
        API_PERMISSION_CLASSES=GUESTS, API_THROTTLE_RATES={"etpay_session_create": "1/minute"}
    )
    first = create(APIClient(), REMOTE_ADDR="203.0.113.7")
    same_address = create(APIClient(), REMOTE_ADDR="203.0.113.7")
    other_address = create(APIClient(), REMOTE_ADDR="198.51.100.20")
    assert [first.status_code, same_address.status_code, other_address.status_code] == [
        201,
        429,
        201,
    ]


def test_polling_has_its_own_rate(settings: Settings, ana: AbstractBaseUser) -> None:
    settings.ETPAY = api_settings(
        API_THROTTLE_RATES={"etpay_session_create": "1/minute", "etpay_session_status": "3/minute"}
    )
    session = make_session(created_by=ana)
    client = signed_in(ana)
    statuses = [client.get(f"{CREATE}{session.token}/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_polling_does_not_use_up_the_create_rate(
    settings: Settings, ana: AbstractBaseUser, fake_etpay: FakeEtpay
) -> None:
    settings.ETPAY = api_settings(
        API_THROTTLE_RATES={"etpay_session_create": "1/minute", "etpay_session_status": None}
    )
    session = make_session(created_by=ana)
    client = signed_in(ana)
    for _ in range(30):
        assert client.get(f"{CREATE}{session.token}/").status_code == 200
    assert create(client).status_code == 201


def test_throttling_can_be_turned_off(
    settings: Settings, ana: AbstractBaseUser, fake_etpay: FakeEtpay
) -> None:
    settings.ETPAY = api_settings(API_THROTTLE_CLASSES=())
    client = signed_in(ana)
    assert all(create(client).status_code == 201 for _ in range(12))


def test_drfs_own_scoped_throttle_reads_the_scopes_from_rest_framework(
    settings: Settings, ana: AbstractBaseUser, fake_etpay: FakeEtpay
) -> None:
    settings.ETPAY = api_settings(
        API_THROTTLE_CLASSES=["rest_framework.throttling.ScopedRateThrottle"]
    )
    # DRF reads its rates once per class; patch them the way DRF's own tests do.
    from rest_framework.throttling import ScopedRateThrottle

    original = ScopedRateThrottle.THROTTLE_RATES
    ScopedRateThrottle.THROTTLE_RATES = {"etpay_session_create": "1/minute"}
    try:
        client = signed_in(ana)
        assert create(client).status_code == 201
        assert create(client).status_code == 429
    finally:
        ScopedRateThrottle.THROTTLE_RATES = original


def test_a_rest_framework_rate_is_the_fallback(settings: Settings, ana: AbstractBaseUser) -> None:
    settings.ETPAY = api_settings(API_THROTTLE_RATES={})
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"etpay_session_status": "1/minute"}}
    session = make_session(created_by=ana)
    client = signed_in(ana)
    assert client.get(f"{CREATE}{session.token}/").status_code == 200
    assert client.get(f"{CREATE}{session.token}/").status_code == 429
