"""django_etpay.conf: defaults, the cached accessor, per-merchant credentials."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from pytest_django import Settings

from django_etpay import conf
from django_etpay.exceptions import EtpayConfigurationError, EtpayError

BASE = {
    "MERCHANT_CODE": "cl_sandbox_conf",
    "MERCHANT_API_TOKEN": "conf-api-token-secret",
    "API_URL": "https://api.etpay.test/prefix/",
    "PMT_URL": "https://pmt.etpay.test/",
}
OUTLET = {
    "MERCHANT_CODE": "cl_outlet",
    "MERCHANT_API_TOKEN": "outlet-api-token-secret",
    "API_URL": "https://outlet-api.etpay.test",
    "PMT_URL": "https://outlet-pmt.etpay.test",
}


def test_unset_keys_take_their_defaults() -> None:
    with override_settings(ETPAY=BASE):
        config = conf.get_config()

    assert config["ENVIRONMENT"] == "sandbox"
    assert config["TIMEOUT"] == (5.0, 30.0)
    assert config["TOTAL_TIMEOUT"] == 45.0
    assert config["CONNECT_RETRIES"] == 2
    assert config["MERCHANTS"] == {}
    assert config["SESSION_TTL"] == timedelta(hours=1)
    assert config["ACCEPT_BROWSER_RESULTS"] is True
    assert config["MERCHANT_CODE"] == "cl_sandbox_conf"
    assert set(conf.DEFAULTS) <= set(config)


def test_user_values_win_over_defaults() -> None:
    with override_settings(ETPAY={**BASE, "TIMEOUT": (1, 2), "ENVIRONMENT": "production"}):
        assert conf.get_setting("TIMEOUT") == (1, 2)
        assert conf.get_setting("ENVIRONMENT") == "production"


def test_the_accessor_is_cached_until_the_setting_changes(settings: Settings) -> None:
    settings.ETPAY = {**BASE, "CURRENCY": "CLP"}
    first = conf.get_config()
    assert conf.get_config() is first

    settings.ETPAY = {**BASE, "CURRENCY": "MXN"}

    assert conf.get_config() is not first
    assert conf.get_setting("CURRENCY") == "MXN"


def test_other_settings_changing_keep_the_cache(settings: Settings) -> None:
    first = conf.get_config()

    settings.DEBUG = not settings.DEBUG

    assert conf.get_config() is first


def test_override_settings_is_seen_and_undone() -> None:
    before = conf.get_setting("MERCHANT_CODE")
    with override_settings(ETPAY={**BASE, "MERCHANT_CODE": "cl_inside"}):
        assert conf.get_setting("MERCHANT_CODE") == "cl_inside"
    assert conf.get_setting("MERCHANT_CODE") == before


def test_unknown_setting_key_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        conf.get_setting("NOT_A_SETTING")


def test_get_merchant_builds_the_default_account() -> None:
    with override_settings(ETPAY={**BASE, "ENVIRONMENT": "preproduction"}):
        merchant = conf.get_merchant()

    assert merchant.alias == ""
    assert merchant.merchant_code == "cl_sandbox_conf"
    assert merchant.merchant_api_token == "conf-api-token-secret"
    # Trailing slashes are dropped so paths can be appended; the prefix stays.
    assert merchant.api_url == "https://api.etpay.test/prefix"
    assert merchant.pmt_url == "https://pmt.etpay.test"
    assert merchant.environment == "preproduction"


def test_merchant_config_repr_hides_the_api_token() -> None:
    with override_settings(ETPAY=BASE):
        merchant = conf.get_merchant()

    assert "conf-api-token-secret" not in repr(merchant)
    assert "cl_sandbox_conf" in repr(merchant)


@pytest.mark.parametrize("key", conf.CREDENTIAL_KEYS)
@pytest.mark.parametrize("how", ["absent", "empty", "not-a-string"])
def test_a_missing_credential_names_the_exact_key(key: str, how: str) -> None:
    values: dict[str, object] = dict(BASE)
    if how == "absent":
        del values[key]
    else:
        values[key] = "" if how == "empty" else 12345

    with override_settings(ETPAY=values), pytest.raises(EtpayConfigurationError) as info:
        conf.get_merchant()

    assert isinstance(info.value, ImproperlyConfigured)
    assert not isinstance(info.value, EtpayError)
    assert f'ETPAY["{key}"]' in str(info.value)
    assert "conf-api-token-secret" not in str(info.value)


def test_without_any_etpay_setting_the_first_credential_is_named(settings: Settings) -> None:
    # Deleting a setting sends no setting_changed; assigning first clears the cache.
    settings.ETPAY = {}
    del settings.ETPAY

    with pytest.raises(EtpayConfigurationError, match=r'ETPAY\["MERCHANT_CODE"\]'):
        conf.get_merchant()


def test_a_non_dict_etpay_setting_is_a_configuration_error() -> None:
    with (
        override_settings(ETPAY=["not", "a", "dict"]),
        pytest.raises(EtpayConfigurationError, match="must be a dict"),
    ):
        conf.get_config()


def test_an_unknown_environment_is_a_configuration_error() -> None:
    with (
        override_settings(ETPAY={**BASE, "ENVIRONMENT": "staging"}),
        pytest.raises(EtpayConfigurationError, match=r'ETPAY\["ENVIRONMENT"\]'),
    ):
        conf.get_merchant()


def test_a_merchant_alias_has_its_own_credentials() -> None:
    with override_settings(ETPAY={**BASE, "MERCHANTS": {"outlet": OUTLET}}):
        merchant = conf.get_merchant("outlet")
        aliases = conf.merchant_aliases()

    assert aliases == ["outlet"]
    assert merchant.alias == "outlet"
    assert merchant.merchant_code == "cl_outlet"
    assert merchant.merchant_api_token == "outlet-api-token-secret"
    assert merchant.api_url == "https://outlet-api.etpay.test"
    assert merchant.pmt_url == "https://outlet-pmt.etpay.test"
    # Without its own ENVIRONMENT an alias inherits the top-level one.
    assert merchant.environment == "sandbox"


def test_a_merchant_alias_may_set_its_own_environment() -> None:
    merchants = {"live": {**OUTLET, "ENVIRONMENT": "production"}}
    with override_settings(ETPAY={**BASE, "MERCHANTS": merchants}):
        assert conf.get_merchant("live").environment == "production"
        assert conf.get_merchant().environment == "sandbox"


@pytest.mark.parametrize("key", conf.CREDENTIAL_KEYS)
def test_a_missing_alias_credential_names_the_alias_and_the_key(key: str) -> None:
    outlet = {k: v for k, v in OUTLET.items() if k != key}
    with (
        override_settings(ETPAY={**BASE, "MERCHANTS": {"outlet": outlet}}),
        pytest.raises(EtpayConfigurationError) as info,
    ):
        conf.get_merchant("outlet")

    assert f"""ETPAY["MERCHANTS"]['outlet']["{key}"]""" in str(info.value)
    assert "outlet-api-token-secret" not in str(info.value)


def test_an_alias_does_not_borrow_the_default_credentials() -> None:
    outlet = {k: v for k, v in OUTLET.items() if k != "MERCHANT_API_TOKEN"}
    with (
        override_settings(ETPAY={**BASE, "MERCHANTS": {"outlet": outlet}}),
        pytest.raises(EtpayConfigurationError, match="MERCHANT_API_TOKEN"),
    ):
        conf.get_merchant("outlet")


@pytest.mark.parametrize(
    "merchants", [["outlet"], {"outlet": "cl_outlet"}, {"outlet": ["cl_outlet"]}]
)
def test_a_malformed_merchants_setting_is_a_configuration_error(merchants: object) -> None:
    with (
        override_settings(ETPAY={**BASE, "MERCHANTS": merchants}),
        pytest.raises(EtpayConfigurationError, match="MERCHANTS"),
    ):
        conf.get_merchant("outlet")


def test_an_unknown_alias_is_a_configuration_error() -> None:
    with (
        override_settings(ETPAY={**BASE, "MERCHANTS": {"outlet": OUTLET}}),
        pytest.raises(EtpayConfigurationError, match="'nope'"),
    ):
        conf.get_merchant("nope")


@pytest.mark.parametrize(
    ("value", "expected"),
    [((3, 9), (3.0, 9.0)), ([1.5, 2], (1.5, 2.0)), (4, (4.0, 4.0)), (2.5, (2.5, 2.5))],
)
def test_get_timeout_returns_a_float_pair(value: object, expected: tuple[float, float]) -> None:
    with override_settings(ETPAY={**BASE, "TIMEOUT": value}):
        assert conf.get_timeout() == expected
