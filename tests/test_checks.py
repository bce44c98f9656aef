"""System checks of django_etpay.checks: one test per id (E005 lives with the sandbox tests)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from pytest_django import Settings

from django_etpay.checks import check_settings

VALID: dict[str, Any] = {
    "MERCHANT_CODE": "cl_checks",
    "MERCHANT_API_TOKEN": "checks-api-token-secret",
    "API_URL": "https://api.etpay.test",
    "PMT_URL": "https://pmt.etpay.test",
    "ENVIRONMENT": "production",
}
OUTLET: dict[str, Any] = {
    "MERCHANT_CODE": "cl_outlet",
    "MERCHANT_API_TOKEN": "outlet-api-token-secret",
    "API_URL": "https://outlet-api.etpay.test",
    "PMT_URL": "https://outlet-pmt.etpay.test",
}


def etpay_messages() -> list[checks.CheckMessage]:
    """Everything django_etpay reports through Django's registry (proves registration).

    Limited to the security tag, under which the app registers its checks: Django's model
    checks would need the database. E005 is left out: the test URLconf mounts the sandbox,
    so it fires with every production setting here, and its own tests cover it.
    """
    found = checks.run_checks(tags=[checks.Tags.security])
    return [
        m for m in found if str(m.id).startswith("django_etpay.") and m.id != "django_etpay.E005"
    ]


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return sorted(str(m.id) for m in messages)


def test_a_complete_configuration_reports_nothing(settings: Settings) -> None:
    settings.ETPAY = {**VALID, "MERCHANTS": {"outlet": OUTLET}}
    settings.DEBUG = False

    assert etpay_messages() == []


@pytest.mark.parametrize("key", ["MERCHANT_CODE", "MERCHANT_API_TOKEN", "API_URL", "PMT_URL"])
def test_e001_missing_credential(settings: Settings, key: str) -> None:
    settings.ETPAY = {k: v for k, v in VALID.items() if k != key}

    messages = etpay_messages()

    assert ids(messages) == ["django_etpay.E001"]
    assert isinstance(messages[0], checks.Error)
    assert f'ETPAY["{key}"]' in messages[0].msg
    assert "checks-api-token-secret" not in messages[0].msg


def test_e001_missing_credential_of_a_merchant_alias(settings: Settings) -> None:
    outlet = {**OUTLET, "PMT_URL": ""}
    settings.ETPAY = {**VALID, "MERCHANTS": {"outlet": outlet}}

    messages = etpay_messages()

    assert ids(messages) == ["django_etpay.E001"]
    assert """ETPAY["MERCHANTS"]['outlet']["PMT_URL"]""" in messages[0].msg


def test_e001_every_missing_key_is_reported(settings: Settings) -> None:
    settings.ETPAY = {"ENVIRONMENT": "sandbox"}

    assert ids(etpay_messages()) == ["django_etpay.E001"] * 4


def test_e001_a_non_dict_etpay_is_reported_not_raised(settings: Settings) -> None:
    settings.ETPAY = "not a dict"

    assert ids(etpay_messages()) == ["django_etpay.E001"]


@pytest.mark.parametrize("environment", ["staging", "", None, "PRODUCTION"])
def test_e002_unknown_environment(settings: Settings, environment: Any) -> None:
    settings.ETPAY = {**VALID, "ENVIRONMENT": environment}

    messages = etpay_messages()

    assert ids(messages) == ["django_etpay.E002"]
    assert isinstance(messages[0], checks.Error)


def test_e002_unknown_environment_of_a_merchant_alias(settings: Settings) -> None:
    settings.ETPAY = {**VALID, "MERCHANTS": {"outlet": {**OUTLET, "ENVIRONMENT": "prod"}}}

    messages = etpay_messages()

    assert ids(messages) == ["django_etpay.E002"]
    assert "outlet" in messages[0].msg


@pytest.mark.parametrize(
    ("timeout", "total"),
    [
        (0, 45),
        (-1, 45),
        ((5, 0), 45),
        ((5,), 45),
        ((1, 2, 3), 45),
        ("5", 45),
        (True, 45),
        ((True, 5), 45),
        (None, 45),
        ((5, 30), 0),
        ((5, 30), None),
        ((5, 30), "45"),
    ],
)
def test_e003_bad_timeouts(settings: Settings, timeout: Any, total: Any) -> None:
    settings.ETPAY = {**VALID, "TIMEOUT": timeout, "TOTAL_TIMEOUT": total}

    messages = etpay_messages()

    assert ids(messages) == ["django_etpay.E003"]
    assert isinstance(messages[0], checks.Error)


@pytest.mark.parametrize(("timeout", "total"), [(3, 10), ((1, 2), 2.5), ([0.5, 1.5], 60)])
def test_e003_valid_timeouts_pass(settings: Settings, timeout: Any, total: Any) -> None:
    settings.ETPAY = {**VALID, "TIMEOUT": timeout, "TOTAL_TIMEOUT": total}

    assert etpay_messages() == []


@pytest.mark.parametrize("environment", ["preproduction", "production"])
@pytest.mark.parametrize("key", ["API_URL", "PMT_URL"])
def test_e004_plain_http_outside_the_sandbox(
    settings: Settings, environment: str, key: str
) -> None:
    settings.ETPAY = {**VALID, "ENVIRONMENT": environment, key: "http://etpay.test"}

    messages = etpay_messages()

    assert ids(messages) == ["django_etpay.E004"]
    assert f'["{key}"]' in messages[0].msg


def test_e004_plain_http_is_fine_in_the_sandbox(settings: Settings) -> None:
    settings.ETPAY = {
        **VALID,
        "ENVIRONMENT": "sandbox",
        "API_URL": "http://127.0.0.1:8000/sandbox",
        "PMT_URL": "http://127.0.0.1:8000/sandbox",
    }

    assert etpay_messages() == []


def test_e004_checks_a_production_alias_under_a_sandbox_default(settings: Settings) -> None:
    live = {**OUTLET, "ENVIRONMENT": "production", "API_URL": "http://outlet-api.etpay.test"}
    settings.ETPAY = {**VALID, "ENVIRONMENT": "sandbox", "MERCHANTS": {"live": live}}

    messages = etpay_messages()

    assert ids(messages) == ["django_etpay.E004"]
    assert "'live'" in messages[0].msg


def test_w001_production_with_debug_on(settings: Settings) -> None:
    settings.ETPAY = VALID
    settings.DEBUG = True

    messages = etpay_messages()

    assert ids(messages) == ["django_etpay.W001"]
    assert isinstance(messages[0], checks.Warning)


@pytest.mark.parametrize("environment", ["sandbox", "preproduction"])
def test_w001_not_raised_outside_production(settings: Settings, environment: str) -> None:
    settings.ETPAY = {**VALID, "ENVIRONMENT": environment}
    settings.DEBUG = True

    assert etpay_messages() == []


@pytest.mark.parametrize(
    "merchants", [["outlet"], {"outlet": "cl_outlet"}, {"outlet": OUTLET, "other": None}]
)
def test_w002_merchants_not_a_dict_of_dicts(settings: Settings, merchants: Any) -> None:
    settings.ETPAY = {**VALID, "MERCHANTS": merchants}

    messages = etpay_messages()

    assert ids(messages) == ["django_etpay.W002"]
    assert isinstance(messages[0], checks.Warning)


def test_manage_py_check_fails_on_a_missing_credential(settings: Settings) -> None:
    settings.ETPAY = {k: v for k, v in VALID.items() if k != "MERCHANT_API_TOKEN"}

    with pytest.raises(SystemCheckError, match=r"django_etpay\.E001"):
        call_command("check", tag=["security"])


def test_check_settings_can_be_called_directly(settings: Settings) -> None:
    settings.ETPAY = {**VALID, "ENVIRONMENT": "nowhere"}

    assert ids(check_settings()) == ["django_etpay.E002"]
