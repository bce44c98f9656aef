"""The EtpayError tree: hierarchy, attributes, messages."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation

from django_etpay.exceptions import (
    EtpayAPIError,
    EtpayConfigurationError,
    EtpayConnectionError,
    EtpayError,
    EtpayHTTPError,
    EtpayResponseError,
    EtpayTimeoutError,
    EtpayValidationError,
    EtpayVerificationError,
)

API_ERRORS = [EtpayTimeoutError, EtpayConnectionError, EtpayResponseError]


def test_the_tree_has_one_root_for_everything_but_configuration() -> None:
    for cls in (
        EtpayValidationError,
        EtpayAPIError,
        EtpayVerificationError,
        *API_ERRORS,
        EtpayHTTPError,
    ):
        assert issubclass(cls, EtpayError), cls
    for cls in (*API_ERRORS, EtpayHTTPError):
        assert issubclass(cls, EtpayAPIError), cls
    # A broken configuration must not be swallowed by ``except EtpayError``.
    assert issubclass(EtpayConfigurationError, ImproperlyConfigured)
    assert not issubclass(EtpayConfigurationError, EtpayError)


def test_validation_error_is_a_value_error_listing_every_field() -> None:
    err = EtpayValidationError(
        {"order_amount": ["must be greater than zero."], "user_rut": ("has a wrong check digit.",)}
    )

    assert isinstance(err, ValueError)
    assert err.errors == {
        "order_amount": ["must be greater than zero."],
        "user_rut": ["has a wrong check digit."],
    }
    assert "order_amount: must be greater than zero." in str(err)
    assert "user_rut: has a wrong check digit." in str(err)


def test_verification_error_is_a_suspicious_operation_with_a_reason() -> None:
    err = EtpayVerificationError("bad_signature", "Signature does not match.")

    assert isinstance(err, SuspiciousOperation)
    assert err.reason == "bad_signature"
    assert err.message == "Signature does not match."
    assert str(err) == "Signature does not match."


@pytest.mark.parametrize("cls", API_ERRORS)
def test_api_errors_carry_status_and_outcome(cls: type[EtpayAPIError]) -> None:
    err = cls("ETpay /x failed.", status_code=200, outcome_unknown=True)

    assert str(err) == "ETpay /x failed."
    assert err.message == "ETpay /x failed."
    assert err.status_code == 200
    assert err.outcome_unknown is True


def test_api_error_outcome_is_known_unless_said_otherwise() -> None:
    err = EtpayConnectionError("refused")

    assert err.outcome_unknown is False
    assert err.status_code is None


def test_http_error_carries_status_code_and_etpay_message() -> None:
    err = EtpayHTTPError("ETpay answered HTTP 422", status_code=422, etpay_message="bad amount")

    assert err.status_code == 422
    assert err.etpay_message == "bad amount"
    assert err.outcome_unknown is False
    assert isinstance(err, EtpayAPIError)


def test_codes_are_distinct_and_stable() -> None:
    assert {cls.code for cls in (EtpayAPIError, *API_ERRORS, EtpayHTTPError)} == {
        "api_error",
        "timeout",
        "connection",
        "bad_response",
        "http_error",
    }
