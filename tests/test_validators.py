"""django_etpay.validators: the checks run on session input before anything reaches ETpay."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from django.utils import translation

from django_etpay import validators
from django_etpay.models import PaymentSession


def column_length(name: str) -> int:
    length = PaymentSession._meta.get_field(name).max_length
    assert length is not None
    return length


# -- order id ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("OC-700104", "OC-700104"), ("a", "a"), ("x" * 64, "x" * 64), (1234, "1234")],
)
def test_order_id_accepts_1_to_64_characters(value: Any, expected: str) -> None:
    assert validators.order_id(value) == expected


@pytest.mark.parametrize(
    "value", ["", "x" * 65, " OC-1", "OC-1 ", "OC\n1", "OC\x001", None, True, 12.0, b"OC-1"]
)
def test_order_id_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        validators.order_id(value)


def test_order_id_limit_matches_the_column() -> None:
    assert column_length("merchant_order_id") == validators.MAX_ORDER_ID_LENGTH


# -- amount ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 50000, 2**63 - 1])
def test_amount_accepts_positive_ints(value: int) -> None:
    assert validators.amount(value) == value


@pytest.mark.parametrize(
    "value",
    [0, -1, True, False, 1.0, 50000.0, Decimal("5000"), "5000", None, 2**63],
    ids=[
        "zero",
        "negative",
        "true",
        "false",
        "float-1",
        "float",
        "decimal",
        "str",
        "none",
        "too-large",
    ],
)
def test_amount_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        validators.amount(value)


# -- RUT ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12.345.678-5", "123456785"),
        ("12345678-5", "123456785"),
        ("123456785", "123456785"),
        (" 12.345.678-5 ", "123456785"),
        ("12 345 678-5", "123456785"),
        ("10.000.013-K", "10000013K"),
        ("10000013-k", "10000013K"),
        ("10000013k", "10000013K"),
        ("10.000.004-0", "100000040"),
        ("11.111.111-1", "111111111"),
        ("7.654.321-6", "76543216"),
        ("1-9", "19"),
        ("100.000.013-9", "1000000139"),
    ],
)
def test_rut_accepts_common_formats_and_normalises(value: str, expected: str) -> None:
    assert validators.rut(value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("12.345.678-4", "check digit"),
        ("12345678-K", "check digit"),
        ("10000013-0", "check digit"),
        ("12.345.678", "not a RUT"),
        ("12.34.5678-5", "not a RUT"),
        ("12-345-678-5", "not a RUT"),
        ("abc", "not a RUT"),
        ("", "not a RUT"),
        ("0-0", "not a RUT"),
        ("12.345.678-X", "not a RUT"),
    ],
)
def test_rut_rejects(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        validators.rut(value)


@pytest.mark.parametrize("value", [123456785, None, ["12345678-5"]])
def test_rut_must_be_a_string(value: Any) -> None:
    with pytest.raises(ValueError, match="string"):
        validators.rut(value)


def test_rut_check_digit_is_modulo_11() -> None:
    # 12345678: 8*2 + 7*3 + 6*4 + 5*5 + 4*6 + 3*7 + 2*2 + 1*3 = 138; 11 - 138 % 11 = 5.
    assert validators.rut_check_digit("12345678") == "5"
    # 10000013: 3*2 + 1*3 + 1*3 = 12; 11 - 1 = 10 -> K.
    assert validators.rut_check_digit("10000013") == "K"
    # 10000004: 4*2 + 1*3 = 11; 11 - 0 = 11 -> 0.
    assert validators.rut_check_digit("10000004") == "0"


def test_every_accepted_rut_fits_the_column() -> None:
    # The longest body the RUT pattern accepts, with its correct check digit.
    longest = ""
    for digits in range(8, 16):
        body = "9" * digits
        candidate = body + validators.rut_check_digit(body)
        try:
            longest = validators.rut(candidate)
        except ValueError:
            break
    assert longest
    assert len(longest) <= column_length("user_rut")


def test_format_rut_for_display() -> None:
    assert validators.format_rut("123456785") == "12.345.678-5"
    assert validators.format_rut("10000013K") == "10.000.013-K"
    assert validators.format_rut("19") == "1-9"


# -- bank code ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("cl_estado", "cl_estado"),
        ("CL_BCI", "cl_bci"),
        ("cl_mach", "cl_mach"),
        ("mx_bbva", "mx_bbva"),
    ],
)
def test_bank_code_accepts_known_codes_in_any_case(value: str, expected: str) -> None:
    assert validators.bank_code(value) == expected


@pytest.mark.parametrize("value", ["cl_unknown", "", "estado", None, 1])
def test_bank_code_rejects_unknown_codes_listing_the_allowed_ones(value: Any) -> None:
    with pytest.raises(ValueError, match="cl_estado"):
        validators.bank_code(value)


def test_every_bank_code_fits_the_column() -> None:
    assert max(len(code) for code in validators.BANK_CODES) <= column_length("user_bank_code")


# -- e-mail ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["payer@example.cl", "a.b+c@sub.example.com"])
def test_email_accepts_addresses(value: str) -> None:
    assert validators.email(value) == value


@pytest.mark.parametrize("value", ["", "payer", "payer@", "@example.cl", "a b@example.cl", None])
def test_email_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="e-mail"):
        validators.email(value)


def test_email_longer_than_the_column_is_rejected() -> None:
    limit = column_length("customer_email")
    assert limit == validators.MAX_EMAIL_LENGTH
    prefix = "a" * 64 + "@" + ".".join(["b" * 60] * 3) + "."
    fits = prefix + "c" * (limit - len(prefix))
    assert len(fits) == limit
    assert validators.email(fits) == fits

    with pytest.raises(ValueError, match="e-mail"):
        validators.email(fits[:65] + "d" + fits[65:])


# -- URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["https://shop.test/etpay/return/", "http://127.0.0.1:8000/x?y=1"]
)
def test_http_url_accepts_absolute_http_urls(value: str) -> None:
    assert validators.http_url(value) == value


@pytest.mark.parametrize(
    "value", ["/etpay/return/", "ftp://shop.test/", "javascript:alert(1)", "", None]
)
def test_http_url_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="URL"):
        validators.http_url(value)


def test_url_longer_than_the_column_is_rejected() -> None:
    limit = column_length("payment_completed_url")
    assert limit == validators.MAX_URL_LENGTH
    for name in ("payment_cancellation_url", "payment_webhook_url"):
        assert column_length(name) == limit
    base = "https://shop.test/"
    fits = base + "a" * (limit - len(base))
    assert validators.http_url(fits) == fits

    with pytest.raises(ValueError, match="URL"):
        validators.http_url(fits + "a")


# -- metadata ----------------------------------------------------------------------------------


def test_metadata_accepts_entries_and_stringifies_values() -> None:
    entries = [
        {"name": "Cuenta Servicio Gas", "value": "30.215", "show": True},
        {"name": "Cliente", "value": 42, "show": False},
    ]

    assert validators.metadata(entries) == [
        {"name": "Cuenta Servicio Gas", "value": "30.215", "show": True},
        {"name": "Cliente", "value": "42", "show": False},
    ]
    assert validators.metadata(()) == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"name": "a", "value": "b", "show": True}, "list"),
        ("a=b", "list"),
        ([{"name": "a", "value": "b"}], "entry 0"),
        ([{"name": "a", "value": "b", "show": True, "extra": 1}], "entry 0"),
        (["a"], "entry 0"),
        ([{"name": "", "value": "b", "show": True}], "name"),
        ([{"name": 1, "value": "b", "show": True}], "name"),
        ([{"name": "a", "value": None, "show": True}], "value"),
        ([{"name": "a", "value": True, "show": True}], "value"),
        ([{"name": "a", "value": 1.5, "show": True}], "value"),
        ([{"name": "a", "value": "b", "show": "yes"}], "show"),
        ([{"name": "a", "value": "b", "show": 1}], "show"),
        ([{"name": "a", "value": "b", "show": True}, {"name": "c"}], "entry 1"),
    ],
)
def test_metadata_rejects(value: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        validators.metadata(value)


# -- every message, word for word ----------------------------------------------------------------

#: What each check says, in English: a shop shows these beside its form fields, so a change of
#: wording is a change of the library's behaviour.
MESSAGES = [
    (validators.order_id, None, "must be a string of 1 to 64 characters."),
    (validators.order_id, "x" * 65, "must be 1 to 64 characters long."),
    (validators.order_id, " OC-1", "must not contain control characters or surrounding spaces."),
    (
        validators.amount,
        6990.0,
        "must be a positive integer number of pesos (no float, bool or str).",
    ),
    (validators.amount, 0, "must be greater than zero."),
    (validators.amount, 10**19, "is too large."),
    (validators.rut, 11111111, "must be a string such as 12.345.678-5."),
    (validators.rut, "abc", "is not a RUT (expected a form such as 12.345.678-5)."),
    (validators.rut, "0-0", "is not a RUT."),
    (validators.rut, "11.111.111-2", "has a wrong check digit."),
    (validators.email, 7, "must be an e-mail address."),
    (validators.email, "not-an-address", "is not a valid e-mail address."),
    (validators.http_url, 7, "must be an absolute http(s) URL."),
    (validators.http_url, "/relative/path", "must be an absolute http(s) URL."),
    (validators.http_url, "https://shop.example/a\x00b", "must be an absolute http(s) URL."),
    (validators.http_url, "http://[::1", "must be an absolute http(s) URL."),
    (validators.metadata, "a=b", "must be a list of {name, value, show} objects."),
    (
        validators.metadata,
        [{"name": "a", "value": "b"}],
        "entry 0 must have exactly the keys name, value and show.",
    ),
    (
        validators.metadata,
        [{"name": "", "value": "b", "show": True}],
        "entry 0: name must be a non-empty string.",
    ),
    (
        validators.metadata,
        [{"name": "a", "value": None, "show": True}],
        "entry 0: value must be a string or an integer.",
    ),
    (
        validators.metadata,
        [{"name": "a", "value": "b", "show": True}, {"name": "a\x00", "value": "b", "show": True}],
        "entry 1: NUL and lone surrogates cannot be stored.",
    ),
    (
        validators.metadata,
        [{"name": "a", "value": "b\ud800", "show": True}],
        "entry 0: NUL and lone surrogates cannot be stored.",
    ),
    (
        validators.metadata,
        [{"name": "a", "value": "b", "show": "yes"}],
        "entry 0: show must be true or false.",
    ),
    (validators.concat, "", 'must be 1 to 8 characters, such as "&".'),
    (validators.concat, "a b", "must not contain spaces or control characters."),
]


@pytest.mark.parametrize(("check", "value", "message"), MESSAGES)
def test_each_rejection_says_why_in_these_words(check: Any, value: Any, message: str) -> None:
    with translation.override("en"), pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check(value)


def test_the_url_length_message_names_the_limit() -> None:
    limit = column_length("payment_webhook_url")
    message = f"must be an absolute http(s) URL of at most {limit} characters."
    with translation.override("en"), pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        validators.http_url("https://shop.example/" + "a" * limit)


def test_concat_takes_up_to_eight_characters() -> None:
    assert validators.concat("&" * 8) == "&" * 8
    with pytest.raises(ValueError, match="1 to 8 characters"):
        validators.concat("&" * 9)
