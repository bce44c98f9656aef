"""django_etpay.E005: the sandbox must not be mounted in production."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core import checks
from django.test import override_settings
from django.urls import include, path

from django_etpay.checks import check_sandbox

#: A URLconf without the sandbox, used by ROOT_URLCONF overrides below.
urlpatterns = [path("etpay/", include("django_etpay.urls"))]


def ids(messages: list[checks.CheckMessage]) -> list[str | None]:
    return [message.id for message in messages]


def production() -> dict[str, object]:
    return {
        **settings.ETPAY,
        "ENVIRONMENT": "production",
        "API_URL": "https://api.etpay.test",
        "PMT_URL": "https://pmt.etpay.test",
    }


def test_e005_when_the_sandbox_is_mounted_in_production() -> None:
    with override_settings(ETPAY=production()):
        assert ids(check_sandbox()) == ["django_etpay.E005"]
        assert "django_etpay.E005" in ids(checks.run_checks(tags=[checks.Tags.urls]))


@pytest.mark.parametrize("environment", ["sandbox", "preproduction"])
def test_no_e005_outside_production(environment: str) -> None:
    with override_settings(ETPAY={**settings.ETPAY, "ENVIRONMENT": environment}):
        assert check_sandbox() == []


def test_no_e005_in_production_without_the_sandbox_urls() -> None:
    with override_settings(ETPAY=production(), ROOT_URLCONF="tests.test_sandbox_checks"):
        assert check_sandbox() == []
