"""Read, verify and normalise the results ETpay sends as JWTs.

ETpay signs each result with HS256 and the per-session ``signature_token`` it returned when the
session was created. The only way to know which session (and so which key) a JWT belongs to is
its ``session_token`` claim, read *before* the signature is checked: :func:`read_unverified`
does that and nothing else may be trusted from its output. :func:`verify_payment_jwt` then
decodes the JWT again with the session's own key and the algorithm pinned to HS256, and
:func:`check_against_session` compares the verified claims with the stored row.

Every failure raises :class:`~django_etpay.exceptions.EtpayVerificationError` whose ``reason``
is a :class:`~django_etpay.models.Notification.Reason` value. Messages and log lines name the
reason only: never the JWT, its signature or the key.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import jwt
from django.views.decorators.debug import sensitive_variables

from django_etpay import conf, crypto
from django_etpay.exceptions import EtpaySecretUnavailableError, EtpayVerificationError
from django_etpay.models import Notification, PaymentSession

logger = logging.getLogger("django_etpay.tokens")

#: The only algorithm accepted. Never taken from the token's own header.
ALGORITHMS: list[str] = ["HS256"]

Reason = Notification.Reason
Result = Notification.Result


class PaymentClaims(TypedDict, total=False):
    """The claims of an ETpay result that this app reads (others are stored, not used).

    ETpay documents no schema; the names and types are those of its SDK examples and its status
    API. ``merchant_amount`` arrives as an integer, sometimes as a digit string.
    ``payment_status`` arrives as a boolean or as a string such as ``"success"``.
    """

    session_token: str
    merchant_order_id: str | int
    merchant_amount: int | str
    merchant_currency: str
    payment_status: bool | str
    payment_token: str
    user_bank: str
    user_account: str
    user_rut: str
    system_error: bool
    iat: int


#: ETpay's ``payment_status`` values mapped to our results. Strings are compared lower-cased
#: and stripped. ETpay has never published its failure literal, so the common spellings are
#: listed; a value not listed here (``"pending"``, a typo, a number) is neither success nor
#: failure: it changes nothing and flags the session for reconciliation.
PAYMENT_STATUS_RESULTS: dict[bool | str, str] = {
    True: Result.SUCCESS,
    "success": Result.SUCCESS,
    "true": Result.SUCCESS,
    False: Result.FAILURE,
    "false": Result.FAILURE,
    "failure": Result.FAILURE,
    "failed": Result.FAILURE,
    "fail": Result.FAILURE,
    "error": Result.FAILURE,
    "rejected": Result.FAILURE,
    "declined": Result.FAILURE,
    "cancelled": Result.FAILURE,
    "canceled": Result.FAILURE,
}


@dataclass(frozen=True)
class VerifiedResult:
    """A result whose origin has been established (signature or authenticated API call).

    ``result`` is a :class:`~django_etpay.models.Notification.Result` value. ``system_error``
    is true for ETpay's system-error JWT, whose payment outcome is unknown.
    """

    claims: dict[str, Any]
    result: str
    system_error: bool = False


def normalise_payment_status(value: object) -> str:
    """Map a ``payment_status`` value to a :class:`Notification.Result` value.

    ``True`` and ``"success"`` are success, ``False`` and the known failure strings are
    failure, anything else (missing, unknown string, number) is unknown: never success.
    """
    if isinstance(value, bool):
        return PAYMENT_STATUS_RESULTS[value]
    if isinstance(value, str):
        return PAYMENT_STATUS_RESULTS.get(value.strip().lower(), Result.UNKNOWN)
    return Result.UNKNOWN


def read_unverified(raw_jwt: str) -> dict[str, Any]:
    """Decode a JWT's payload *without* checking its signature, to find its session.

    Nothing in the returned dict may be trusted. Raises :class:`EtpayVerificationError`
    (``malformed``) when the text is not a JWT with a JSON object payload.
    """
    if not isinstance(raw_jwt, str) or not raw_jwt.strip():
        raise EtpayVerificationError(Reason.MALFORMED, "The result is empty.")
    if not raw_jwt.isascii():
        raise EtpayVerificationError(Reason.MALFORMED, "The result is not a JWT.")
    try:
        # Nothing is verified here, so no algorithm is accepted either: verification, in
        # _decode, pins HS256.
        claims: dict[str, Any] = jwt.decode(raw_jwt.strip(), options={"verify_signature": False})
    except Exception as err:
        # Not only InvalidTokenError: older PyJWT releases let RecursionError (deeply nested
        # JSON), ValueError (huge integers) and others escape. Untrusted text that cannot be
        # parsed is malformed, whatever the parser raised.
        logger.debug("ETpay result rejected: not a JWT (%s)", type(err).__name__)
        raise EtpayVerificationError(Reason.MALFORMED, "The result is not a JWT.") from None
    return claims


def session_token_of(claims: Mapping[str, Any]) -> str:
    """The ``session_token`` claim, or :class:`EtpayVerificationError` (``malformed``).

    A usable token is a string of 1 to 255 printable characters: no stored session can have
    another (the column holds at most 255 characters, and PostgreSQL text cannot hold NUL or a
    lone surrogate), so anything else is refused before it reaches a query.
    """
    token = claims.get("session_token")
    if not isinstance(token, str) or not token or len(token) > 255 or not token.isprintable():
        raise EtpayVerificationError(
            Reason.MALFORMED, "The result carries no usable session_token claim."
        )
    return token


@sensitive_variables("key", "raw_jwt")
def _decode(raw_jwt: str, key: str) -> dict[str, Any]:
    """Decode and verify with ``key``; HS256 only; ``iat`` checked with leeway, no ``exp``."""
    if not raw_jwt.isascii():
        raise EtpayVerificationError(Reason.MALFORMED, "The result is not a JWT.")
    try:
        claims: dict[str, Any] = jwt.decode(
            raw_jwt.strip(),
            key=key,
            algorithms=ALGORITHMS,
            # ETpay sends only iat: nothing is required, and exp/nbf are checked if present.
            options={"require": []},
            leeway=float(conf.get_setting("JWT_LEEWAY")),
        )
    except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError) as err:
        logger.debug("ETpay result rejected: bad signature (%s)", type(err).__name__)
        raise EtpayVerificationError(
            Reason.BAD_SIGNATURE, "The result's signature does not verify with its session."
        ) from err
    except jwt.InvalidTokenError as err:
        # read_unverified parsed the same text first, so what fails here is a claim check.
        logger.debug("ETpay result rejected: invalid claims (%s)", type(err).__name__)
        raise EtpayVerificationError(
            Reason.INVALID_CLAIMS, f"The result's registered claims are invalid ({err})."
        ) from err
    except Exception as err:
        # Anything else PyJWT raises (InvalidKeyError for a key shaped like a PEM key, parser
        # errors older releases let escape): unusable, never a 500.
        logger.debug("ETpay result rejected: unparseable (%s)", type(err).__name__)
        raise EtpayVerificationError(Reason.MALFORMED, "The result is not a valid JWT.") from None
    return claims


@sensitive_variables("raw_jwt")
def verify_payment_jwt(
    raw_jwt: str, session: PaymentSession, unverified: Mapping[str, Any] | None = None
) -> VerifiedResult:
    """Verify a result JWT with ``session``'s own key and return what it says.

    A normal result must verify with the session's ``signature_token`` (HS256).

    ETpay's system-error JWT (payload ``{session_token, system_error: true, iat}``) is signed
    with the *session token* instead. That is its own branch, taken only when the payload
    claims ``system_error: true``, and such a JWT can never be read as a success or failure:
    the session token is not secret (it is part of the payment URL), so anyone may mint one,
    and all it can do is flag the session for reconciliation.

    Raises :class:`EtpayVerificationError` (``bad_signature``, ``malformed``,
    ``invalid_claims``, ``session_mismatch``, and ``key_unavailable`` when the session's
    stored key cannot be decrypted with the configured keys).
    """
    if unverified is None:
        unverified = read_unverified(raw_jwt)
    token = session.token
    if not token or not session.signature_token:
        raise EtpayVerificationError(
            Reason.UNKNOWN_SESSION, "The session has no ETpay tokens to verify with."
        )
    if unverified.get("system_error") is True:
        claims = _verify_system_error(raw_jwt, session, token)
        _check_session_token(claims, token)
        return VerifiedResult(claims=claims, result=Result.UNKNOWN, system_error=True)
    claims = _decode(raw_jwt, _signature_key(session))
    _check_session_token(claims, token)
    if claims.get("system_error") not in (None, False):
        raise EtpayVerificationError(
            Reason.INVALID_CLAIMS, "The result's system_error claim is not a boolean."
        )
    return VerifiedResult(
        claims=claims, result=normalise_payment_status(claims.get("payment_status"))
    )


def _signature_key(session: PaymentSession) -> str:
    """The session's plain ``signature_token``; ``key_unavailable`` if it cannot be decrypted."""
    try:
        return crypto.reveal(session.signature_token)
    except EtpaySecretUnavailableError as err:
        raise EtpayVerificationError(Reason.KEY_UNAVAILABLE, str(err)) from None


def _verify_system_error(raw_jwt: str, session: PaymentSession, token: str) -> dict[str, Any]:
    """The system-error branch: the session's ``signature_token`` or its session ``token``.

    A stored key that cannot be decrypted does not stop this branch: the session token still
    verifies what ETpay signs with it.
    """
    try:
        return _decode(raw_jwt, _signature_key(session))
    except EtpayVerificationError as err:
        if err.reason not in (Reason.BAD_SIGNATURE, Reason.KEY_UNAVAILABLE):
            raise
    # The payload verified here is the one whose system_error was read unverified: true.
    return _decode(raw_jwt, token)


def _check_session_token(claims: Mapping[str, Any], token: str) -> None:
    claimed = claims.get("session_token")
    if not isinstance(claimed, str) or not hmac.compare_digest(claimed.encode(), token.encode()):
        raise EtpayVerificationError(
            Reason.SESSION_MISMATCH, "The result names another session than the one found."
        )


def result_from_status_entry(entry: Mapping[str, Any]) -> VerifiedResult:
    """Normalise one entry of ETpay's status API, which carries no signature.

    The entry came over TLS in reply to a call authenticated with the merchant's API token,
    so it is as trusted as a verified JWT; the same cross-checks apply. An entry whose
    ``system_error`` is anything but absent or ``false`` (``"true"``, ``1``...) is read as a
    system error: its payment outcome is unknown, whatever ``payment_status`` says.
    """
    claims = dict(entry)
    if claims.get("system_error") not in (None, False):
        return VerifiedResult(claims=claims, result=Result.UNKNOWN, system_error=True)
    return VerifiedResult(
        claims=claims, result=normalise_payment_status(claims.get("payment_status"))
    )


def parse_amount(value: object) -> int:
    """An amount claim as an ``int``: an integer, a digit string or a whole float.

    Booleans, fractional floats and anything else raise :class:`EtpayVerificationError`
    (``invalid_claims``).
    """
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        return value
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    elif isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        return int(value.strip())
    raise EtpayVerificationError(
        Reason.INVALID_CLAIMS, "The result's merchant_amount is not a whole number."
    )


def check_against_session(result: VerifiedResult, session: PaymentSession) -> None:
    """Compare a verified result with the stored session.

    ``merchant_order_id`` and ``merchant_amount`` must be present and equal to the row for a
    success (money is about to be trusted); for other results they are compared when
    present. ``merchant_currency`` is compared with ``session.currency`` when present (ETpay's
    examples always send it, but nothing says it is mandatory). A system-error result carries
    none of them and is not checked.

    Raises :class:`EtpayVerificationError` (``order_mismatch``, ``amount_mismatch``,
    ``currency_mismatch`` or ``invalid_claims``).
    """
    if result.system_error:
        return
    claims = result.claims
    required = result.result == Result.SUCCESS

    order_id = claims.get("merchant_order_id")
    if order_id is None:
        if required:
            raise EtpayVerificationError(
                Reason.INVALID_CLAIMS, "The result carries no merchant_order_id."
            )
    elif isinstance(order_id, bool) or not isinstance(order_id, str | int):
        raise EtpayVerificationError(
            Reason.INVALID_CLAIMS, "The result's merchant_order_id is not a string."
        )
    elif str(order_id) != session.merchant_order_id:
        raise EtpayVerificationError(
            Reason.ORDER_MISMATCH,
            "The result's merchant_order_id differs from the session's order.",
        )

    amount = claims.get("merchant_amount")
    if amount is None:
        if required:
            raise EtpayVerificationError(
                Reason.INVALID_CLAIMS, "The result carries no merchant_amount."
            )
    elif parse_amount(amount) != session.order_amount:
        raise EtpayVerificationError(
            Reason.AMOUNT_MISMATCH,
            f"The result's amount ({parse_amount(amount)}) differs from the session's "
            f"({session.order_amount}).",
        )

    currency = claims.get("merchant_currency")
    if currency is not None and (
        not isinstance(currency, str) or currency.strip().upper() != session.currency.upper()
    ):
        raise EtpayVerificationError(
            Reason.CURRENCY_MISMATCH, "The result's merchant_currency differs from the session's."
        )
