"""django_etpay.tokens: decoding, verification, normalisation and cross-checks (no database)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from django_etpay import tokens
from django_etpay.exceptions import EtpayVerificationError
from django_etpay.models import Notification, PaymentSession
from tests.factories import (
    DROP,
    FAILURE_SPELLINGS,
    PUBLIC_KEY_PEM,
    SUCCESS_SPELLINGS,
    hmac_jws,
    load_fixture,
    mint_jwt,
    mint_payment_claims,
    mint_system_error_jwt,
    raw_jws,
    sign,
    tamper,
)

Reason = Notification.Reason
Result = Notification.Result


def unsaved_session(**overrides: Any) -> PaymentSession:
    values: dict[str, Any] = {
        "merchant_order_id": "OC-700104",
        "order_amount": 50000,
        "currency": "CLP",
        "token": "sess-token-for-unit-tests-0123456789abcdef",
        "signature_token": "sig-secret-for-unit-tests-0123456789abcdef0123456789abcdef0123456789",
        "status": PaymentSession.Status.PENDING,
    }
    values.update(overrides)
    return PaymentSession(**values)


def verify_and_check(raw: str, session: PaymentSession) -> tokens.VerifiedResult:
    result = tokens.verify_payment_jwt(raw, session)
    tokens.check_against_session(result, session)
    return result


def rejection(raw: str, session: PaymentSession) -> EtpayVerificationError:
    with pytest.raises(EtpayVerificationError) as info:
        verify_and_check(raw, session)
    return info.value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(value, Result.SUCCESS) for value in SUCCESS_SPELLINGS],
        (" SUCCESS ", Result.SUCCESS),
        ("True", Result.SUCCESS),
        *[(value, Result.FAILURE) for value in FAILURE_SPELLINGS],
        (" Declined ", Result.FAILURE),
        ("CANCELED", Result.FAILURE),
        (None, Result.UNKNOWN),
        ("pending", Result.UNKNOWN),
        ("paid", Result.UNKNOWN),
        ("approved", Result.UNKNOWN),
        ("1", Result.UNKNOWN),
        ("", Result.UNKNOWN),
        (1, Result.UNKNOWN),
        (0, Result.UNKNOWN),
        (1.0, Result.UNKNOWN),
        (["success"], Result.UNKNOWN),
        ({"status": "success"}, Result.UNKNOWN),
    ],
)
def test_payment_status_normalisation(value: object, expected: str) -> None:
    assert tokens.normalise_payment_status(value) == expected


def test_the_spelling_table_is_exactly_the_documented_one() -> None:
    expected = {
        **dict.fromkeys(SUCCESS_SPELLINGS, Result.SUCCESS),
        **dict.fromkeys(FAILURE_SPELLINGS, Result.FAILURE),
    }
    table = tokens.PAYMENT_STATUS_RESULTS
    assert table == expected


@pytest.mark.parametrize("spelling", FAILURE_SPELLINGS)
def test_every_failure_spelling_verifies_as_a_failure(spelling: object) -> None:
    session = unsaved_session()
    result = verify_and_check(mint_jwt(session, payment_status=spelling), session)
    assert result.result == Result.FAILURE
    assert result.system_error is False


@pytest.mark.parametrize("key_of", ["token", "signature_token"])
@pytest.mark.parametrize("status", [True, "success", False])
def test_system_error_with_a_payment_status_never_reports_it(key_of: str, status: object) -> None:
    session = unsaved_session()
    claims = mint_payment_claims(session, system_error=True, payment_status=status)
    result = verify_and_check(sign(claims, getattr(session, key_of)), session)
    assert result.system_error is True
    assert result.result == Result.UNKNOWN
    assert result.claims["payment_status"] == status


@pytest.mark.parametrize("flag", ["true", 1, "yes"])
def test_system_error_that_is_not_boolean_true_is_not_the_system_error_branch(
    flag: object,
) -> None:
    # Signed with the public session token: only the system-error branch accepts that key,
    # and only for system_error: true.
    session = unsaved_session()
    claims = {"session_token": session.token, "system_error": flag, "payment_status": True}
    assert rejection(sign(claims, session.token or ""), session).reason == Reason.BAD_SIGNATURE
    signed = sign({**claims, **mint_payment_claims(session)}, session.signature_token)
    assert rejection(signed, session).reason == Reason.INVALID_CLAIMS


@pytest.mark.parametrize("bad", ["x\x00", "x\ud800", "tab\there", "\n", "x" * 256])
def test_session_token_claim_must_be_printable_and_short(bad: str) -> None:
    with pytest.raises(EtpayVerificationError) as info:
        tokens.session_token_of({"session_token": bad})
    assert info.value.reason == Reason.MALFORMED


@pytest.mark.parametrize("good", ["x", "sess-token with spaces", "ñandú", "x" * 255])
def test_printable_session_tokens_are_usable(good: str) -> None:
    assert tokens.session_token_of({"session_token": good}) == good


@pytest.mark.parametrize("fixture", ["payment_status_true.json", "payment_status_success.json"])
def test_etpay_payload_shapes_verify_as_success(fixture: str) -> None:
    session = unsaved_session()
    claims = load_fixture(fixture, session)
    result = verify_and_check(sign(claims, session.signature_token), session)
    assert result.result == Result.SUCCESS
    assert result.system_error is False
    assert result.claims["payment_token"] == claims["payment_token"]


@pytest.mark.parametrize("raw", ["", "   ", "not a jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30"])
def test_read_unverified_rejects_garbage_as_malformed(raw: str) -> None:
    with pytest.raises(EtpayVerificationError) as info:
        tokens.read_unverified(raw)
    assert info.value.reason == Reason.MALFORMED


def test_read_unverified_rejects_non_object_payload() -> None:
    raw = raw_jws({"alg": "HS256", "typ": "JWT"}, {}, b"x")
    header, _, signature = raw.split(".")
    list_payload = "WzEsMl0"  # base64url of [1,2]
    with pytest.raises(EtpayVerificationError) as info:
        tokens.read_unverified(f"{header}.{list_payload}.{signature}")
    assert info.value.reason == Reason.MALFORMED


@pytest.mark.parametrize("value", [DROP, 42, "", "x" * 256, None])
def test_session_token_claim_must_be_a_usable_string(value: Any) -> None:
    claims = mint_payment_claims(unsaved_session(), session_token=value)
    with pytest.raises(EtpayVerificationError) as info:
        tokens.session_token_of(claims)
    assert info.value.reason == Reason.MALFORMED


def test_alg_none_is_a_bad_signature() -> None:
    session = unsaved_session()
    raw = raw_jws({"alg": "none", "typ": "JWT"}, mint_payment_claims(session))
    assert rejection(raw, session).reason == Reason.BAD_SIGNATURE


def test_wrong_key_is_a_bad_signature() -> None:
    session = unsaved_session()
    raw = mint_jwt(session, key="another-key-of-sufficient-length-0123456789")
    assert rejection(raw, session).reason == Reason.BAD_SIGNATURE


def test_other_hmac_algorithm_is_refused() -> None:
    session = unsaved_session()
    raw = mint_jwt(session, algorithm="HS512")
    assert rejection(raw, session).reason == Reason.BAD_SIGNATURE


def test_rs256_header_is_refused() -> None:
    session = unsaved_session()
    raw = raw_jws({"alg": "RS256", "typ": "JWT"}, mint_payment_claims(session), b"\x01" * 256)
    assert rejection(raw, session).reason == Reason.BAD_SIGNATURE


def test_hs256_signed_with_a_public_key_is_refused() -> None:
    session = unsaved_session()
    raw = hmac_jws({"alg": "HS256", "typ": "JWT"}, mint_payment_claims(session), PUBLIC_KEY_PEM)
    assert rejection(raw, session).reason == Reason.BAD_SIGNATURE


def test_tampered_payload_is_a_bad_signature() -> None:
    session = unsaved_session()
    raw = tamper(mint_jwt(session), merchant_amount=1)
    assert rejection(raw, session).reason == Reason.BAD_SIGNATURE


def test_jwt_naming_another_session_is_a_session_mismatch() -> None:
    session = unsaved_session()
    raw = mint_jwt(session, session_token="sess-some-other-session-token-0123456789")
    assert rejection(raw, session).reason == Reason.SESSION_MISMATCH


def test_iat_in_the_future_beyond_leeway_is_invalid() -> None:
    session = unsaved_session()
    raw = mint_jwt(session, iat=int(time.time()) + 3600)
    assert rejection(raw, session).reason == Reason.INVALID_CLAIMS


def test_iat_within_leeway_is_accepted() -> None:
    session = unsaved_session()
    raw = mint_jwt(session, iat=int(time.time()) + 60)
    assert verify_and_check(raw, session).result == Result.SUCCESS


def test_leeway_comes_from_settings(settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "JWT_LEEWAY": 0}
    session = unsaved_session()
    raw = mint_jwt(session, iat=int(time.time()) + 60)
    assert rejection(raw, session).reason == Reason.INVALID_CLAIMS


def test_no_iat_and_no_exp_is_accepted() -> None:
    session = unsaved_session()
    raw = mint_jwt(session, iat=DROP)
    assert verify_and_check(raw, session).result == Result.SUCCESS


def test_expired_exp_is_invalid() -> None:
    session = unsaved_session()
    raw = mint_jwt(session, exp=int(time.time()) - 3600)
    assert rejection(raw, session).reason == Reason.INVALID_CLAIMS


def test_non_integer_iat_is_invalid() -> None:
    session = unsaved_session()
    raw = mint_jwt(session, iat="yesterday")
    assert rejection(raw, session).reason == Reason.INVALID_CLAIMS


def test_system_error_signed_with_session_token() -> None:
    session = unsaved_session()
    result = verify_and_check(mint_system_error_jwt(session), session)
    assert result.system_error is True
    assert result.result == Result.UNKNOWN


def test_system_error_signed_with_signature_token_is_also_recognised() -> None:
    session = unsaved_session()
    raw = mint_system_error_jwt(session, key=session.signature_token)
    assert verify_and_check(raw, session).system_error is True


def test_system_error_with_unrelated_key_is_a_bad_signature() -> None:
    session = unsaved_session()
    raw = mint_system_error_jwt(session, key="unrelated-key-of-sufficient-length-0123456789")
    assert rejection(raw, session).reason == Reason.BAD_SIGNATURE


def test_session_token_is_never_a_key_for_normal_results() -> None:
    session = unsaved_session()
    raw = mint_jwt(session, key=session.token)
    assert rejection(raw, session).reason == Reason.BAD_SIGNATURE


def test_system_error_claim_must_be_boolean_in_normal_results() -> None:
    session = unsaved_session()
    raw = mint_jwt(session, system_error="yes")
    assert rejection(raw, session).reason == Reason.INVALID_CLAIMS


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"merchant_order_id": "OC-999999"}, Reason.ORDER_MISMATCH),
        ({"merchant_amount": 49999}, Reason.AMOUNT_MISMATCH),
        ({"merchant_amount": "50001"}, Reason.AMOUNT_MISMATCH),
        ({"merchant_amount": True}, Reason.INVALID_CLAIMS),
        ({"merchant_amount": 50000.5}, Reason.INVALID_CLAIMS),
        ({"merchant_amount": "50000.0"}, Reason.INVALID_CLAIMS),
        ({"merchant_amount": "-50000"}, Reason.INVALID_CLAIMS),
        ({"merchant_amount": [50000]}, Reason.INVALID_CLAIMS),
        ({"merchant_currency": "MXN"}, Reason.CURRENCY_MISMATCH),
        ({"merchant_currency": 152}, Reason.CURRENCY_MISMATCH),
        ({"merchant_order_id": DROP}, Reason.INVALID_CLAIMS),
        ({"merchant_amount": DROP}, Reason.INVALID_CLAIMS),
        ({"merchant_order_id": True}, Reason.INVALID_CLAIMS),
    ],
)
def test_cross_checks_reject(overrides: dict[str, Any], reason: str) -> None:
    session = unsaved_session()
    assert rejection(mint_jwt(session, **overrides), session).reason == reason


@pytest.mark.parametrize(
    "overrides",
    [
        {"merchant_amount": "50000"},
        {"merchant_amount": 50000.0},
        {"merchant_currency": "clp"},
        {"merchant_currency": DROP},
    ],
)
def test_cross_checks_accept_liberal_forms(overrides: dict[str, Any]) -> None:
    session = unsaved_session()
    assert verify_and_check(mint_jwt(session, **overrides), session).result == Result.SUCCESS


@pytest.mark.parametrize(
    ("value", "expected"),
    [(" 50000 ", 50000), ("50000\n", 50000), ("\t1000", 1000), (1000, 1000), (7.0, 7)],
)
def test_amounts_padded_with_whitespace_are_read(value: object, expected: int) -> None:
    # ETpay's status API has sent digit strings; padding is read as the number it pads.
    assert tokens.parse_amount(value) == expected


@pytest.mark.parametrize("value", ["", "  ", "5 000", "\uff15\uff10", "1e3", "+5"])
def test_amounts_that_are_not_plain_digits_are_refused(value: str) -> None:
    with pytest.raises(EtpayVerificationError) as info:
        tokens.parse_amount(value)
    assert info.value.reason == Reason.INVALID_CLAIMS


@pytest.mark.parametrize(
    "overrides",
    [
        {"merchant_amount": " 50000 "},
        {"merchant_currency": " clp "},
        {"merchant_currency": "CLP\n"},
        {"merchant_currency": "Clp"},
    ],
)
def test_padded_amounts_and_lower_case_or_padded_currencies_are_accepted(
    overrides: dict[str, Any],
) -> None:
    session = unsaved_session()
    assert verify_and_check(mint_jwt(session, **overrides), session).result == Result.SUCCESS


def test_a_padded_amount_that_differs_is_still_a_mismatch() -> None:
    session = unsaved_session()
    err = rejection(mint_jwt(session, merchant_amount=" 49999 "), session)
    assert err.reason == Reason.AMOUNT_MISMATCH


def test_integer_order_id_matches_its_string() -> None:
    session = unsaved_session(merchant_order_id="700104")
    result = verify_and_check(mint_jwt(session, merchant_order_id=700104), session)
    assert result.result == Result.SUCCESS


def test_failure_without_amount_is_accepted_but_a_wrong_one_is_not() -> None:
    session = unsaved_session()
    ok = mint_jwt(session, payment_status=False, merchant_amount=DROP, merchant_order_id=DROP)
    assert verify_and_check(ok, session).result == Result.FAILURE
    wrong = mint_jwt(session, payment_status=False, merchant_amount=1)
    assert rejection(wrong, session).reason == Reason.AMOUNT_MISMATCH


def test_status_entry_is_normalised_like_a_jwt() -> None:
    session = unsaved_session()
    entry = load_fixture("payment_status_success.json", session)
    result = tokens.result_from_status_entry(entry)
    tokens.check_against_session(result, session)
    assert result.result == Result.SUCCESS
    assert result.system_error is False
    assert result.claims == entry
    failed = tokens.result_from_status_entry({**entry, "payment_status": "declined"})
    assert failed.result == Result.FAILURE


@pytest.mark.parametrize("status", [True, "success", None])
def test_status_entry_with_system_error_is_unknown(status: object) -> None:
    entry = {"session_token": "s", "system_error": True, "payment_status": status}
    result = tokens.result_from_status_entry(entry)
    assert (result.result, result.system_error) == (Result.UNKNOWN, True)
    assert result.claims == entry
    # Cross-checks do not apply to it: it carries no order or amount to compare.
    tokens.check_against_session(result, unsaved_session(order_amount=1))


@pytest.mark.parametrize("flag", ["true", 1, "yes", {}])
def test_status_entry_with_any_system_error_flag_never_pays(flag: object) -> None:
    result = tokens.result_from_status_entry({"system_error": flag, "payment_status": True})
    assert (result.result, result.system_error) == (Result.UNKNOWN, True)


def test_status_entry_with_system_error_false_is_read_normally() -> None:
    result = tokens.result_from_status_entry({"system_error": False, "payment_status": True})
    assert (result.result, result.system_error) == (Result.SUCCESS, False)


def test_messages_and_logs_never_carry_the_jwt_or_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = unsaved_session()
    attempts = [
        mint_jwt(session, key="another-key-of-sufficient-length-0123456789"),
        tamper(mint_jwt(session), merchant_amount=1),
        mint_jwt(session, merchant_amount=1),
        mint_jwt(session, iat=int(time.time()) + 3600),
        raw_jws({"alg": "none"}, mint_payment_claims(session)),
    ]
    with caplog.at_level(logging.DEBUG, logger="django_etpay"):
        for raw in attempts:
            err = rejection(raw, session)
            signature = raw.split(".")[2]
            for text in (str(err), repr(err), err.message):
                assert raw not in text
                assert not signature or signature not in text
                assert session.signature_token not in text
    assert caplog.records, "each failure reason writes a debug line"
    for raw in attempts:
        assert raw not in caplog.text
    assert session.signature_token not in caplog.text
