"""What ETpay's side does: check credentials, mint JWTs, build return URLs, call webhooks.

The sandbox plays ETpay, so it mints its JWTs with PyJWT and never uses the app's own
verification code: a bug there must not be mirrored here. Its claims are built by the same
helper as the app's test results (:func:`django_etpay.testing.results.payment_claims`), so
the sandbox, :class:`~django_etpay.testing.FakeEtpay` and a shop's tests send the same results.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from django.utils import timezone

from django_etpay import conf, validators
from django_etpay.exceptions import EtpayConfigurationError
from django_etpay.sandbox.models import SandboxSession
from django_etpay.testing.results import OMIT
from django_etpay.testing.results import payment_claims as result_claims

logger = logging.getLogger("django_etpay.sandbox")

#: RUT used when the payer leaves the field empty (ETpay's sandbox examples use it).
DEFAULT_PAYER_RUT = "111111111"
#: Phone used for a Mexican payer when neither the shop nor the payer gives one.
DEFAULT_PAYER_PHONE = "5555555555"
#: Seconds the sandbox waits for the shop's webhook endpoint.
WEBHOOK_TIMEOUT = (2.0, 10.0)
#: Seconds by which a stale (out-of-order) result predates the real one.
STALE_SECONDS = 60


def sandbox_enabled() -> bool:
    """The sandbox answers only while ``ETPAY["ENVIRONMENT"]`` is ``"sandbox"``."""
    try:
        return bool(conf.get_config().get("ENVIRONMENT") == "sandbox")
    except EtpayConfigurationError:
        return False


def _accounts() -> list[conf.MerchantConfig]:
    """The project's own sandbox accounts: the default one and each alias."""
    aliases: list[str | None] = [None, *conf.merchant_aliases()]
    accounts: list[conf.MerchantConfig] = []
    for alias in aliases:
        try:
            account = conf.get_merchant(alias)
        except EtpayConfigurationError:
            continue
        if account.environment == "sandbox":
            accounts.append(account)
    return accounts


def authenticate(merchant_code: str | None, api_token: str) -> conf.MerchantConfig | None:
    """The account these credentials belong to, or ``None``.

    ``merchant_code`` is ``None`` for the status query, which ETpay authenticates with the
    API token alone.
    """
    for account in _accounts():
        token_ok = hmac.compare_digest(account.merchant_api_token.encode(), api_token.encode())
        code_ok = merchant_code is None or hmac.compare_digest(
            account.merchant_code.encode(), merchant_code.encode()
        )
        if token_ok and code_ok:
            return account
    return None


def payment_status_value(approved: bool, as_string: bool) -> bool | str:
    """``true``/``false`` as ETpay's SDK shows it, or ``"success"``/``"failed"`` strings."""
    if as_string:
        return "success" if approved else "failed"
    return approved


def payment_claims(
    session: SandboxSession, *, approved: bool, as_string: bool = False
) -> dict[str, Any]:
    """The payment claims of a completed session, without ``iat``: the payer's bank and RUT
    as chosen on the sandbox's page, its ``payment_token``.

    A Mexican session's result has no RUT; its ``user_account`` names the method and the
    phone (``SPEI 5555555555``), an invention of the sandbox: ETpay does not publish the
    Mexican result's payer fields.
    """
    country: dict[str, Any] = {"user_rut": session.payer_rut}
    if session.country == "MX":
        method = "CoDi" if session.target_flow == "codi" else "SPEI"
        country = {
            "user_rut": OMIT,
            "user_account": f"{method} {session.customer_phone}".strip(),
            "merchant_account_bank": "mx_test",
            "merchant_account_type": "clabe",
        }
    return result_claims(
        session,
        status="success" if approved else "failure",
        user_bank=session.user_bank,
        payment_token=session.payment_token,
        payment_status=payment_status_value(approved, as_string),
        iat=OMIT,
        **country,
    )


def mint_payment_jwt(
    session: SandboxSession, *, approved: bool, as_string: bool = False, iat: int | None = None
) -> str:
    """A result JWT: HS256 with the session's ``signature_token``, ``iat`` only."""
    claims = payment_claims(session, approved=approved, as_string=as_string)
    claims["iat"] = int(time.time()) if iat is None else iat
    return jwt.encode(claims, session.signature_token, algorithm="HS256")


def mint_system_error_jwt(session: SandboxSession) -> str:
    """ETpay's system-error JWT, which it signs with the *session* token."""
    claims = {"session_token": session.token, "system_error": True, "iat": int(time.time())}
    return jwt.encode(claims, session.token, algorithm="HS256")


def final_result(session: SandboxSession) -> tuple[str, str]:
    """A finished session's result JWT (minted again) and the shop URL it goes to.

    Approved: a success JWT for ``completed_url``; rejected or cancelled: a failure JWT for
    ``cancellation_url``; system error: the system-error JWT for ``cancellation_url``. The
    shop records a repeat as a duplicate, so showing it again changes nothing there.
    """
    if session.status == SandboxSession.Status.SYSTEM_ERROR:
        return mint_system_error_jwt(session), session.cancellation_url
    approved = session.status == SandboxSession.Status.APPROVED
    as_string = "status_string" in session.faults.split(",")
    token = mint_payment_jwt(session, approved=approved, as_string=as_string)
    return token, session.completed_url if approved else session.cancellation_url


def status_entry(session: SandboxSession, *, as_string: bool) -> dict[str, Any]:
    """One item of the status query's reply."""
    entry = payment_claims(
        session, approved=session.status == SandboxSession.Status.APPROVED, as_string=as_string
    )
    completed = session.completed_at or timezone.now()
    entry["payment_date"] = completed.isoformat()
    return entry


def return_url(url: str, concat: str, token: str) -> str:
    """``url`` with the JWT appended, as ETpay appends it.

    ETpay does not publish the exact form. We assume ``?jwt=<JWT>``, and
    ``<url><concat>jwt=<JWT>`` when the session was created with ``concat`` (which ETpay asks
    for when the URL already has a query string).
    """
    separator = concat or "?"
    return f"{url}{separator}jwt={token}"


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, else ``None``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def known_origins(session: SandboxSession) -> list[str]:
    """Origins of the merchant's URLs: the only pages the funnel hands a JWT to."""
    origins: list[str] = []
    for url in (session.completed_url, session.cancellation_url, session.webhook_url):
        origin = origin_of(url) if url else None
        if origin and origin not in origins:
            origins.append(origin)
    return origins


def bank_codes(session: SandboxSession) -> tuple[str, ...]:
    """The bank codes of the session's country (``mx_*`` for a Mexican merchant)."""
    return validators.COUNTRY_BANK_CODES.get(session.country, validators.CHILE_BANK_CODES)


def bank_name(code: str) -> str:
    """Display name of a bank code (the code itself when unknown)."""
    return validators.BANK_NAMES.get(code, code)


def deliver_webhooks(url: str, payloads: list[str], *, delay: float = 0.0) -> threading.Thread:
    """POST ``{"payment": jwt}`` for each JWT, in order, from a background thread.

    A thread keeps the funnel's response independent of the shop's webhook endpoint, which may
    be served by the very process that is serving this request (runserver).
    """
    thread = threading.Thread(
        target=_deliver, args=(url, payloads, delay), name="etpay-sandbox-webhook", daemon=True
    )
    thread.start()
    return thread


def _deliver(url: str, payloads: list[str], delay: float) -> None:
    if delay:
        time.sleep(delay)
    for index, payload in enumerate(payloads, start=1):
        try:
            response = requests.post(url, json={"payment": payload}, timeout=WEBHOOK_TIMEOUT)
        except requests.RequestException as err:
            logger.warning(
                "Sandbox webhook %d/%d to %s failed: %s",
                index,
                len(payloads),
                url,
                type(err).__name__,
            )
            continue
        logger.info(
            "Sandbox webhook %d/%d to %s answered %s",
            index,
            len(payloads),
            url,
            response.status_code,
        )
