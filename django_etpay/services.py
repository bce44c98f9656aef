"""Orchestration: create sessions with ETpay, apply the results ETpay sends.

Views and shop code call these functions; they use :mod:`django_etpay.client` for HTTP and
:mod:`django_etpay.models` for storage, and send :mod:`django_etpay.signals` after commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.views.decorators.debug import sensitive_variables

from django_etpay import conf, signals, validators
from django_etpay.client import EtpayClient
from django_etpay.exceptions import (
    EtpayAPIError,
    EtpayConfigurationError,
    EtpayValidationError,
)
from django_etpay.models import PaymentSession

logger = logging.getLogger("django_etpay")


# -- initialisation ---------------------------------------------------------------------------


def _validate_session_input(
    *,
    merchant_order_id: Any,
    order_amount: Any,
    customer_email: Any,
    metadata: Any,
    user_bank_code: Any,
    user_rut: Any,
    is_rut_block: Any,
    urls: dict[str, Any],
) -> dict[str, Any]:
    """Check every field, collect every problem, return the cleaned values."""
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
        check("user_bank_code", user_bank_code, validators.bank_code)
    if user_rut is not None:
        check("user_rut", user_rut, validators.rut)
    if is_rut_block is not None:
        if not isinstance(is_rut_block, bool):
            errors.setdefault("is_rut_block", []).append("must be true or false.")
        elif is_rut_block and user_rut is None:
            errors.setdefault("is_rut_block", []).append("needs user_rut to lock.")
        else:
            cleaned["is_rut_block"] = is_rut_block
    for name, value in urls.items():
        if value is not None:
            check(name, value, validators.http_url)
    if errors:
        raise EtpayValidationError(errors)
    return cleaned


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
    merchant: str | None = None,
    request: HttpRequest | None = None,
) -> PaymentSession:
    """Create an ETpay payment session for an order and return its ``PaymentSession``.

    Every field is validated before any network call; all problems are reported together in
    one :class:`~django_etpay.exceptions.EtpayValidationError` (``.errors`` maps field names to
    messages). ``order_amount`` is a positive ``int`` of whole pesos.

    The row is saved as ``initializing`` before ETpay is called. On success it holds ETpay's
    tokens and is ``pending``, and ``session_initialized`` is sent after commit. On failure the
    row is marked ``error`` with the reason (and ``outcome_unknown`` when ETpay may have
    created the session anyway: read timeout, 5xx, unreadable reply) and the
    :class:`~django_etpay.exceptions.EtpayAPIError` is re-raised.

    When ``request`` is given, the redirect and webhook URLs that are not passed point at this
    app's ``return`` and ``notification`` views. Without ``request`` they are not sent and
    ETpay uses the URLs configured at onboarding.

    Call it outside ``transaction.atomic()`` (or catch the error inside your view) if the error
    row must survive an exception that rolls your transaction back.
    """
    merchant_config = conf.get_merchant(merchant)
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
        urls=urls,
    )
    defaults = {
        "payment_completed_url": "return",
        "payment_cancellation_url": "return",
        "payment_webhook_url": "notification",
    }
    for field, view_name in defaults.items():
        if urls[field] is None:
            urls[field] = _default_url(request, view_name)

    session = PaymentSession.objects.create(
        merchant=merchant_config.alias,
        environment=merchant_config.environment,
        merchant_order_id=cleaned["merchant_order_id"],
        order_amount=cleaned["order_amount"],
        currency=conf.get_setting("CURRENCY"),
        customer_email=cleaned.get("customer_email", ""),
        metadata=cleaned.get("metadata", []),
        user_bank_code=cleaned.get("user_bank_code", ""),
        user_rut=cleaned.get("user_rut", ""),
        is_rut_block=cleaned.get("is_rut_block"),
        payment_completed_url=urls["payment_completed_url"] or "",
        payment_cancellation_url=urls["payment_cancellation_url"] or "",
        payment_webhook_url=urls["payment_webhook_url"] or "",
        status=PaymentSession.Status.INITIALIZING,
    )
    optional = {
        "customer_email": cleaned.get("customer_email"),
        "metadata": cleaned.get("metadata"),
        "user_bank_code": cleaned.get("user_bank_code"),
        "user_rut": cleaned.get("user_rut"),
        "is_rut_block": cleaned.get("is_rut_block"),
        **urls,
    }
    try:
        with EtpayClient(merchant) as client:
            reply = client.initialize_session(
                merchant_order_id=session.merchant_order_id,
                order_amount=session.order_amount,
                **optional,
            )
    except EtpayAPIError as err:
        _mark_error(session, str(err), err.code, outcome_unknown=err.outcome_unknown)
        raise
    except Exception as err:
        # Not an ETpay failure (a bug, a signal handler...): the request may have gone out.
        _mark_error(session, f"Internal error ({type(err).__name__}).", "internal", True)
        raise

    session.token = reply["token"]
    session.signature_token = reply["signature_token"]
    terms_url = reply.get("terms_url")
    session.terms_url = terms_url if isinstance(terms_url, str) else ""
    session.status = PaymentSession.Status.PENDING
    session.save(update_fields=["token", "signature_token", "terms_url", "status", "updated_at"])
    logger.info(
        "ETpay session %s created for order %s (%d %s)",
        session.pk,
        session.merchant_order_id,
        session.order_amount,
        session.currency,
    )
    transaction.on_commit(
        lambda: signals.session_initialized.send(sender=PaymentSession, session=session)
    )
    return session


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
