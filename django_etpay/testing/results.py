"""ETpay's signed results for tests: the claims ETpay sends for a session, and their JWT.

:func:`payment_claims` builds the claims of a success, a failure or ETpay's system error from
a session; :func:`sign_result` signs them as ETpay signs them. Used by a shop's tests, by
:class:`~django_etpay.testing.FakeEtpay` and by the local sandbox, so that all three mint the
same results.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Literal, Protocol

import jwt

#: Pass as a claim's value to leave that claim out of a result.
OMIT: Any = type("Omit", (), {"__repr__": lambda self: "OMIT"})()

#: The three kinds of result ETpay sends for a session.
ResultStatus = Literal["success", "failure", "system_error"]
_STATUSES: tuple[str, ...] = ("success", "failure", "system_error")

#: The merchant's receiving account, as ETpay's sandbox reports it in every result.
MERCHANT_CLAIMS: dict[str, str] = {
    "merchant_account_bank": "cl_estado",
    "merchant_account_type": "cuenta_vista",
    "merchant_account": "19687526",
    "merchant_name": "Sandbox Developer Merchant",
}
#: The payer, as ETpay's sandbox reports it (its test bank, RUT and account).
PAYER_CLAIMS: dict[str, str] = {
    "user_bank": "Banco de prueba",
    "user_rut": "111111111",
    "user_account": "Cuenta Corriente 12345678",
}


class SessionLike(Protocol):
    """What a result is minted from: a :class:`PaymentSession`, a :class:`FakeSession` or a
    sandbox session; its ``currency``, when it has one, is the result's ``merchant_currency``
    (``CLP`` otherwise)."""

    @property
    def token(self) -> str | None: ...

    @property
    def signature_token(self) -> str: ...

    @property
    def merchant_order_id(self) -> str: ...

    @property
    def order_amount(self) -> int: ...


def payment_token_for(session: SessionLike) -> str:
    """ETpay's payment id for ``session``: the stored one, else one derived from its token.

    Derived, not random, so that two results minted for the same session name the same
    payment (the app treats a second ``payment_token`` for a paid session as suspicious).
    """
    stored = getattr(session, "payment_token", "")
    if isinstance(stored, str) and stored:
        return stored
    digest = hashlib.sha256((session.token or "").encode()).hexdigest()
    return f"pay_{digest[:24]}"


def payment_claims(
    session: SessionLike, *, status: ResultStatus = "success", **claims: Any
) -> dict[str, Any]:
    """The claims of the result ETpay sends for ``session``, with ``claims`` applied.

    ``status`` is ``"success"`` (``payment_status: true``), ``"failure"``
    (``payment_status: false``) or ``"system_error"`` (ETpay's ``{session_token,
    system_error: true, iat}``). The other claims are those of ETpay's examples, filled in
    from the session: ``merchant_order_id``, ``merchant_amount``, ``merchant_currency``,
    ``payment_token``, the payer's test bank, RUT and account, ``iat`` (now). A claim given
    as :data:`OMIT` is left out; ``payment_status="success"`` sends the string form.
    """
    if status not in _STATUSES:
        raise ValueError(f"status must be one of {', '.join(_STATUSES)}, not {status!r}.")
    if not session.token:
        raise ValueError("The session has no ETpay token: ETpay never opened it.")
    values: dict[str, Any]
    if status == "system_error":
        values = {"session_token": session.token, "system_error": True}
    else:
        values = {
            "session_token": session.token,
            **MERCHANT_CLAIMS,
            # A session without a currency (the sandbox's) is in Chilean pesos.
            "merchant_currency": getattr(session, "currency", "") or "CLP",
            "merchant_order_id": session.merchant_order_id,
            "merchant_amount": int(session.order_amount),
            **PAYER_CLAIMS,
            "payment_token": payment_token_for(session),
            "payment_status": status == "success",
            "payment_process": "auto",
        }
    values["iat"] = int(time.time())
    for name, value in claims.items():
        if value is OMIT:
            values.pop(name, None)
        else:
            values[name] = value
    return values


def sign_result(
    session: SessionLike,
    *,
    status: ResultStatus = "success",
    key: str | None = None,
    **claims: Any,
) -> str:
    """The result JWT ETpay sends for ``session``: HS256, signed as ETpay signs it.

    A success or a failure is signed with the session's ``signature_token``; ETpay's system
    error with the session token, as ETpay does. ``key`` signs with another key instead (a
    forged result, for tests of what the app refuses). ``claims`` override or, given as
    :data:`OMIT`, remove claims (see :func:`payment_claims`). Post it to the ``notification``
    view as ``{"payment": <jwt>}``, put it on the ``return`` URL as ``?jwt=<jwt>``, or pass it
    to ``process_notification``.
    """
    values = payment_claims(session, status=status, **claims)
    if key is None:
        key = (session.token or "") if status == "system_error" else session.signature_token
    if not key:
        raise ValueError("The session has no signature_token to sign with.")
    return jwt.encode(values, key, algorithm="HS256")
