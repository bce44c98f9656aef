"""The unverified read of a plain JWT without PyJWT: the same claims as PyJWT, or PyJWT decides.

``tokens.read_unverified`` reads the JWTs ETpay sends (three unpadded base64url segments, a
header of ``alg`` and ``typ``) itself, and hands everything else to PyJWT. Held here to PyJWT's
own reading on a corpus of near misses of a real result: wherever the quick reader answers,
PyJWT reads the same claims; everywhere else the outcome is PyJWT's.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from unittest import mock

import jwt
import pytest

from django_etpay import tokens
from django_etpay.exceptions import EtpayVerificationError
from tests.factories import hmac_jws

KEY = b"plain-jwt-test-key-" + b"k" * 45
CLAIMS = {"session_token": "sess-plain-1", "merchant_amount": 6990, "payment_status": True}


def b64(value: Any) -> str:
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: Any, payload: Any, signature: str = "s" * 43) -> str:
    return f"{b64(header)}.{b64(payload)}.{signature}"


def spare_bits(segment: str) -> str:
    """``segment`` with the unused low bits of its last character set: the same bytes."""
    assert len(segment) % 4 in (2, 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) | 1]


def pyjwt(text: str) -> Any:
    """What PyJWT reads unverified, or the name of what it raised."""
    try:
        return jwt.decode(text, options={"verify_signature": False})
    except Exception as err:
        return type(err).__name__


def real() -> str:
    return hmac_jws({"alg": "HS256", "typ": "JWT"}, CLAIMS, KEY)


def test_a_result_as_etpay_signs_it_is_read_without_pyjwt() -> None:
    with mock.patch.object(tokens.jwt, "decode", side_effect=AssertionError("PyJWT called")):
        assert tokens.read_unverified(real()) == CLAIMS
        assert tokens.read_unverified(f"  {real()}\n") == CLAIMS
    assert tokens.read_unverified(real()) == pyjwt(real())


@pytest.mark.parametrize(
    "header", [{"alg": "HS256", "typ": "JWT"}, {"alg": "HS256"}, {"typ": "JWT"}, {}, {"alg": 1}]
)
def test_headers_of_alg_and_typ_only_are_plain(header: dict[str, Any]) -> None:
    text = compact(header, CLAIMS)
    assert tokens._read_plain(text) == CLAIMS == pyjwt(text)


@pytest.mark.parametrize(
    "text",
    [
        # Header members PyJWT checks even when it verifies nothing.
        compact({"alg": "HS256", "kid": 5}, CLAIMS),
        compact({"alg": "HS256", "crit": ["x"]}, CLAIMS),
        compact({"alg": "HS256", "b64": False}, CLAIMS),
        compact({"alg": "HS256", "kid": "k1"}, CLAIMS),
        # Padding, an empty signature: PyJWT's to judge.
        compact({"alg": "HS256"}, CLAIMS) + "=",
        compact({"alg": "HS256"}, CLAIMS, signature=""),
        # Not a JSON object, not JSON, not UTF-8.
        compact([1], CLAIMS),
        compact({"alg": "HS256"}, [CLAIMS]),
        compact({"alg": "HS256"}, "claims"),
        f"{b64({'alg': 'HS256'})}.{b64(b'{not json')}.{'s' * 43}",
        f"{b64({'alg': 'HS256'})}.{b64(bytes([0xFF, 0xFE, 0x7B]))}.{'s' * 43}",
        f"{b64(b'{')}.{b64(CLAIMS)}.{'s' * 43}",
        # Base64url that is not the canonical spelling of its bytes (spare bits set).
        compact({"alg": "HS256"}, CLAIMS, signature="s" * 42),
        f"{spare_bits(b64({'alg': 'HS256'}))}.{b64(CLAIMS)}.{'s' * 43}",
        f"{b64({'alg': 'HS256'})}.{spare_bits(b64(CLAIMS))}.{'s' * 43}",
        # Nested past the parser's depth.
        f"{b64({'alg': 'HS256'})}.{b64(b'[' * 100_000 + b']' * 100_000)}.{'s' * 43}",
        # Segments base64 cannot decode: one character past a multiple of four.
        compact({"alg": "HS256"}, CLAIMS, signature="s" * 41),
        f"{b64({'alg': 'HS256'})}.{b64(CLAIMS)}X.{'s' * 43}",
        f"{b64({'alg': 'HS256'})}X.{b64(CLAIMS)}.{'s' * 43}",
        # Not three segments, other characters.
        f"{b64({'alg': 'HS256'})}.{b64(CLAIMS)}",
        compact({"alg": "HS256"}, CLAIMS) + ".x",
        compact({"alg": "HS256"}, CLAIMS).replace("s", "+"),
        f".{b64(CLAIMS)}.{'s' * 43}",
        f"{b64({'alg': 'HS256'})}..{'s' * 43}",
    ],
)
def test_what_is_not_plain_is_left_to_pyjwt(text: str) -> None:
    # Left to the PyJWT installed, whose answers differ between releases.
    assert tokens._read_plain(text) is None
    read = pyjwt(text)
    if isinstance(read, dict):
        assert tokens.read_unverified(text) == read
    else:
        with pytest.raises(EtpayVerificationError) as caught:
            tokens.read_unverified(text)
        assert (caught.value.reason, caught.value.message) == (
            "malformed",
            "The result is not a JWT.",
        )


def near_misses(text: str) -> list[str]:
    """Every one-character deletion, and substitutions at every position."""
    variants = {text[:i] + text[i + 1 :] for i in range(len(text))}
    for i in range(len(text)):
        for character in "A_-=.+/!":
            variants.add(text[:i] + character + text[i + 1 :])
    return sorted(variants)


def test_near_misses_of_a_result_read_as_pyjwt_reads_them() -> None:
    quick = 0
    for text in near_misses(real()):
        plain = tokens._read_plain(text)
        if plain is None:
            continue
        quick += 1
        assert plain == pyjwt(text), text
    # Most substitutions in the signature keep the text plain: the comparison is not empty.
    assert quick > 100


def test_a_segment_may_end_in_any_base64url_character() -> None:
    # 33 bytes make 44 characters without spare bits: every last character is canonical.
    for last in range(64):
        signature = b64(bytes(32) + bytes([last]))
        text = compact({"alg": "HS256", "typ": "JWT"}, CLAIMS, signature=signature)
        assert tokens._read_plain(text) == CLAIMS == pyjwt(text), signature[-1]
