"""Checkout: create a payment session with ETpay for an order (:func:`initialize_session`).

Validates what the shop passes, saves the row before ETpay is called, stores ETpay's tokens
and sends ``session_initialized`` once the row's database commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, transaction
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext
from django.views.decorators.debug import sensitive_variables

from django_etpay import conf, observability, signals, validators
from django_etpay.client import get_client
from django_etpay.exceptions import (
    EtpayAPIError,
    EtpayConfigurationError,
    EtpayResponseError,
    EtpayValidationError,
)
from django_etpay.models import PaymentSession

logger = logging.getLogger("django_etpay")


def _validate_session_input(
    *,
    merchant_order_id: Any,
    order_amount: Any,
    customer_email: Any,
    metadata: Any,
    user_bank_code: Any,
    user_rut: Any,
    is_rut_block: Any,
    concat: Any,
    urls: dict[str, Any],
    country: str = "CL",
    customer_phone: Any = None,
    target_flow: Any = None,
) -> dict[str, Any]:
    """Check every field, collect every problem, return the cleaned values.

    ``country`` is the merchant account's: the RUT fields belong to Chile, the phone and the
    payment method to Mexico, and each country has its own bank codes.
    """
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, Any] = {}

    def check(name: str, value: Any, validator: Callable[[Any], Any]) -> None:
        try:
            cleaned[name] = validator(value)
        except ValueError as err:
            errors.setdefault(name, []).append(str(err))

    check("merchant_order_id", merchant_order_id, validators.order_id)
    check("order_amount", order_amount, validators.amount)
    if customer_email is not None:
        check("customer_email", customer_email, validators.email)
    if metadata is not None:
        check("metadata", metadata, validators.metadata)
    if user_bank_code is not None:
        check(
            "user_bank_code",
            user_bank_code,
            lambda value: validators.bank_code(value, country),
        )
    if country != "CL":
        # ETpay Mexico has no RUT: a RUT sent there is a shop's mistake, not something to drop.
        for name, value in (("user_rut", user_rut), ("is_rut_block", is_rut_block)):
            if value is not None:
                errors.setdefault(name, []).append(_only_in("CL"))
        user_rut = is_rut_block = None
    if country != "MX":
        for name, value in (("customer_phone", customer_phone), ("target_flow", target_flow)):
            if value is not None:
                errors.setdefault(name, []).append(_only_in("MX"))
    else:
        if customer_phone is not None:
            check("customer_phone", customer_phone, validators.phone)
        if target_flow is not None:
            check("target_flow", target_flow, validators.target_flow)
    if user_rut is not None:
        check("user_rut", user_rut, validators.rut)
    if is_rut_block is not None:
        if not isinstance(is_rut_block, bool):
            errors.setdefault("is_rut_block", []).append("must be true or false.")
        elif is_rut_block and user_rut is None:
            errors.setdefault("is_rut_block", []).append("needs user_rut to lock.")
        else:
            cleaned["is_rut_block"] = is_rut_block
    if concat is not None:
        check("concat", concat, validators.concat)
    for name, value in urls.items():
        if value is not None:
            check(name, value, validators.http_url)
    if errors:
        raise EtpayValidationError(errors)
    return cleaned


def _only_in(country: str) -> str:
    """The message for a field that the merchant account's country does not take."""
    if country == "CL":
        return gettext("is only sent to ETpay Chile; this merchant account is Mexican.")
    return gettext("is only sent to ETpay Mexico; this merchant account is Chilean.")


def _default_url(request: HttpRequest | None, name: str) -> str | None:
    """Absolute URL of one of this app's views, built from ``request``."""
    if request is None:
        return None
    try:
        path = reverse(f"django_etpay:{name}")
    except NoReverseMatch:
        raise EtpayConfigurationError(
            'Include django_etpay.urls in your URLconf (path("etpay/", '
            'include("django_etpay.urls"))) or pass the redirect and webhook URLs explicitly.'
        ) from None
    return request.build_absolute_uri(path)


@sensitive_variables("reply")
def initialize_session(
    merchant_order_id: str,
    order_amount: int,
    *,
    customer_email: str | None = None,
    metadata: list[dict[str, Any]] | None = None,
    user_bank_code: str | None = None,
    user_rut: str | None = None,
    is_rut_block: bool | None = None,
    payment_completed_url: str | None = None,
    payment_cancellation_url: str | None = None,
    payment_webhook_url: str | None = None,
    concat: str | None = None,
    merchant: str | None = None,
    request: HttpRequest | None = None,
    target_flow: str | None = None,
    customer_phone: str | None = None,
) -> PaymentSession:
    """Create an ETpay payment session for an order and return its ``PaymentSession``.

    Every field is validated before any network call; all problems are reported together in
    one :class:`~django_etpay.exceptions.EtpayValidationError` (``.errors`` maps field names to
    messages). ``order_amount`` is a positive ``int`` of whole pesos of the account's
    currency: CLP for a Chilean account, MXN for a Mexican one (``ETPAY["COUNTRY"]``,
    ``MERCHANTS[alias]["COUNTRY"]``), stored on the row as its ``country`` and ``currency``.

    What a session may send depends on that country: ``user_rut`` and ``is_rut_block`` only
    to Chile; ``customer_phone`` (10 digits) and ``target_flow`` (``"codi"`` or ``"spei"``)
    only to Mexico; ``user_bank_code`` among the country's codes (``cl_*``, ``mx_*``). A field
    the country does not take is a validation error, not silently dropped.

    The row is saved as ``initializing`` before ETpay is called. On success it holds ETpay's
    tokens and is ``pending``, and ``session_initialized`` is sent after commit. On failure the
    row is marked ``error`` with the reason (and ``outcome_unknown`` when ETpay may have
    created the session anyway: read timeout, 5xx, unreadable reply) and the
    :class:`~django_etpay.exceptions.EtpayAPIError` is re-raised.

    When ``request`` is given, the redirect and webhook URLs that are not passed point at this
    app's ``return`` and ``notification`` views. Without ``request`` they are not sent and
    ETpay uses the URLs configured at onboarding.

    ``concat`` is the separator ETpay puts before the data it appends to the redirect URLs.
    When it is not given and a redirect URL already carries a query string, ``"&"`` is sent,
    so that ETpay's ``?...`` does not break the URL.

    A signed-in ``request.user`` is stored as the session's ``created_by`` (the REST API shows
    a session's status to the user who created it).

    When the call to ETpay fails, the raised error's ``session_id`` is the primary key of the
    row kept with the reason.

    Call it outside ``transaction.atomic()`` (or catch the error inside your view) if the error
    row must survive an exception that rolls your transaction back.
    """
    merchant_config = conf.get_merchant(merchant)
    # The shared client of this account (kept-alive connections); obtained before the row is
    # created, so that a configuration error leaves nothing behind.
    client = get_client(merchant)
    urls = {
        "payment_completed_url": payment_completed_url,
        "payment_cancellation_url": payment_cancellation_url,
        "payment_webhook_url": payment_webhook_url,
    }
    cleaned = _validate_session_input(
        merchant_order_id=merchant_order_id,
        order_amount=order_amount,
        customer_email=customer_email,
        metadata=metadata,
        user_bank_code=user_bank_code,
        user_rut=user_rut,
        is_rut_block=is_rut_block,
        concat=concat,
        urls=urls,
        country=merchant_config.country,
        customer_phone=customer_phone,
        target_flow=target_flow,
    )
    defaults = {
        "payment_completed_url": "return",
        "payment_cancellation_url": "return",
        "payment_webhook_url": "notification",
    }
    for field, view_name in defaults.items():
        if urls[field] is None:
            urls[field] = _default_url(request, view_name)
    if concat is None and any(
        "?" in (urls[field] or "")
        for field in ("payment_completed_url", "payment_cancellation_url")
    ):
        concat = "&"

    session = PaymentSession.objects.create(
        merchant=merchant_config.alias,
        environment=merchant_config.environment,
        merchant_order_id=cleaned["merchant_order_id"],
        order_amount=cleaned["order_amount"],
        country=merchant_config.country,
        currency=merchant_config.currency,
        customer_email=cleaned.get("customer_email", ""),
        metadata=cleaned.get("metadata", []),
        user_bank_code=cleaned.get("user_bank_code", ""),
        user_rut=cleaned.get("user_rut", ""),
        is_rut_block=cleaned.get("is_rut_block"),
        customer_phone=cleaned.get("customer_phone", ""),
        target_flow=cleaned.get("target_flow", ""),
        payment_completed_url=urls["payment_completed_url"] or "",
        payment_cancellation_url=urls["payment_cancellation_url"] or "",
        payment_webhook_url=urls["payment_webhook_url"] or "",
        status=PaymentSession.Status.INITIALIZING,
        created_by=_signed_in_user(request),
    )
    optional = {
        "customer_email": cleaned.get("customer_email"),
        "metadata": cleaned.get("metadata"),
        "user_bank_code": cleaned.get("user_bank_code"),
        "user_rut": cleaned.get("user_rut"),
        "is_rut_block": cleaned.get("is_rut_block"),
        "customer_phone": cleaned.get("customer_phone"),
        "target_flow": cleaned.get("target_flow"),
        **urls,
        "concat": concat,
    }
    try:
        with observability.about_session(session.pk):
            reply = client.initialize_session(
                merchant_order_id=session.merchant_order_id,
                order_amount=session.order_amount,
                **optional,
            )
    except EtpayAPIError as err:
        _mark_error(session, str(err), err.code, outcome_unknown=err.outcome_unknown)
        err.session_id = session.pk
        raise
    except Exception as err:
        # Not an ETpay failure (a bug, a signal handler...): the request may have gone out.
        _mark_error(session, f"Internal error ({type(err).__name__}).", "internal", True)
        raise

    terms_url = reply.get("terms_url")
    session.token = reply["token"]
    session.signature_token = reply["signature_token"]
    session.terms_url = terms_url if isinstance(terms_url, str) and len(terms_url) <= 2000 else ""
    session.status = PaymentSession.Status.PENDING
    stored_fields = ["token", "signature_token", "terms_url", "status", "updated_at"]
    try:
        if transaction.get_connection(session._state.db).in_atomic_block:
            # A savepoint, so that a failed save leaves a usable transaction for the error row.
            with transaction.atomic(using=session._state.db):
                session.save(update_fields=stored_fields)
        else:
            # In autocommit a failed UPDATE leaves nothing to roll back: no BEGIN and COMMIT.
            session.save(update_fields=stored_fields)
    except DatabaseError as err:
        # ETpay created a session that cannot be stored (e.g. a token another row has). The
        # database error is not chained: its text may quote the values it refused.
        session.token = None
        session.signature_token = ""
        session.terms_url = ""
        _mark_error(
            session,
            f"ETpay's session could not be stored ({type(err).__name__}).",
            "storage",
            outcome_unknown=True,
        )
        error = EtpayResponseError(
            "ETpay's reply to session/initialize could not be stored.", outcome_unknown=True
        )
        error.code = "storage"  # as on the row
        error.session_id = session.pk
        raise error from None
    logger.info(
        "ETpay session %s created for order %s (%d %s)",
        session.pk,
        session.merchant_order_id,
        session.order_amount,
        session.currency,
    )
    observability.state_changed(
        session, before=PaymentSession.Status.INITIALIZING, cause="initialize"
    )
    transaction.on_commit(
        lambda: signals.session_initialized.send(sender=PaymentSession, session=session),
        using=session._state.db,
    )
    return session


def _signed_in_user(request: HttpRequest | None) -> Any:
    """The authenticated user of ``request`` (``None`` for guests and without a request)."""
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def _mark_error(session: PaymentSession, message: str, code: str, outcome_unknown: bool) -> None:
    """Keep the row of a failed initialisation, with why it failed."""
    session.status = PaymentSession.Status.ERROR
    session.error = message
    session.error_code = code
    session.outcome_unknown = outcome_unknown
    session.needs_reconciliation = outcome_unknown
    session.save(
        update_fields=[
            "status",
            "error",
            "error_code",
            "outcome_unknown",
            "needs_reconciliation",
            "updated_at",
        ]
    )
    logger.warning(
        "ETpay session %s for order %s failed (%s, outcome %s): %s",
        session.pk,
        session.merchant_order_id,
        code,
        "unknown" if outcome_unknown else "known",
        message,
    )
    observability.state_changed(
        session, before=PaymentSession.Status.INITIALIZING, cause="initialize", reason=code
    )
