"""System checks of the REST API: one test per id."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.urls import include, path
from pytest_django import Settings

from django_etpay.api.checks import check_api
from django_etpay.api.views import SessionCreateView
from tests.api_support import api_settings


class ShopCheckoutView(SessionCreateView):
    def get_order(self, request: Any, data: dict[str, Any]) -> dict[str, Any]:
        return {"merchant_order_id": "X", "order_amount": 1}


#: A project that mounts its own create view first, under the API's URL names.
urlpatterns: list[Any] = [
    path("etpay/api/sessions/", ShopCheckoutView.as_view()),
    path("etpay/", include("django_etpay.api.urls")),
]


def api_ids() -> list[str]:
    """What the registry reports for the API (proves the check is registered)."""
    found = checks.run_checks(tags=[checks.Tags.security])
    return sorted(str(m.id) for m in found if str(m.id) in API_IDS)


API_IDS = {"django_etpay.E101", "django_etpay.E102", "django_etpay.E103", "django_etpay.W101"}


def test_the_defaults_report_nothing(settings: Settings) -> None:
    settings.ETPAY = api_settings(API_ORDER_HOOK=None)
    assert check_api() == []
    assert api_ids() == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("API_PERMISSION_CLASSES", ["rest_framework.permissions.NoSuchThing"]),
        ("API_AUTHENTICATION_CLASSES", ["nowhere.Auth"]),
        ("API_THROTTLE_CLASSES", "django_etpay.api.throttling.SessionRateThrottle"),
        ("API_ORDER_HOOK", "shop.api.missing_function"),
        ("API_VISIBILITY_HOOK", 42),
    ],
)
def test_e101_a_setting_that_cannot_be_used(settings: Settings, key: str, value: Any) -> None:
    settings.ETPAY = api_settings(**{key: value})
    messages = check_api()
    assert [m.id for m in messages] == ["django_etpay.E101"]
    assert f'ETPAY["{key}"]' in messages[0].msg


@pytest.mark.urls("tests.api_urls")
def test_e102_the_api_is_mounted_without_an_order_hook(settings: Settings) -> None:
    settings.ETPAY = api_settings(API_ORDER_HOOK=None)
    assert [m.id for m in check_api()] == ["django_etpay.E102"]
    assert api_ids() == ["django_etpay.E102"]


@pytest.mark.urls("tests.api_urls")
def test_e102_not_raised_with_a_hook(settings: Settings) -> None:
    settings.ETPAY = api_settings()
    assert check_api() == []


@pytest.mark.urls(__name__)
def test_e102_not_raised_for_a_subclass_that_finds_the_order(settings: Settings) -> None:
    settings.ETPAY = api_settings(API_ORDER_HOOK=None)
    assert check_api() == []


@pytest.mark.parametrize("rate", ["ten a minute", "10/fortnight", 10, "10/"])
def test_e103_a_rate_that_cannot_be_parsed(settings: Settings, rate: Any) -> None:
    settings.ETPAY = api_settings(API_THROTTLE_RATES={"etpay_session_create": rate})
    assert [m.id for m in check_api()] == ["django_etpay.E103"]


def test_e103_rates_must_be_a_dict(settings: Settings) -> None:
    settings.ETPAY = api_settings(API_THROTTLE_RATES=["10/minute"])
    assert [m.id for m in check_api()] == ["django_etpay.E103"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"API_THROTTLE_CLASSES": ()},
        {"API_THROTTLE_RATES": {"etpay_session_create": None}},
    ],
)
def test_w101_guests_may_create_sessions_without_a_throttle(
    settings: Settings, overrides: dict[str, Any]
) -> None:
    settings.ETPAY = api_settings(
        API_PERMISSION_CLASSES=["rest_framework.permissions.AllowAny"], **overrides
    )
    assert [m.id for m in check_api()] == ["django_etpay.W101"]


def test_w101_not_raised_for_throttled_guest_checkouts(settings: Settings) -> None:
    settings.ETPAY = api_settings(API_PERMISSION_CLASSES=["rest_framework.permissions.AllowAny"])
    assert check_api() == []
