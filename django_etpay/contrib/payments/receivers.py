"""The ``Payment`` follows this app's signals: the only place its status changes.

``payment_completed`` moves the payment to ``CONFIRMED``, ``payment_failed`` and
``session_expired`` to ``REJECTED`` (when no other session of the payment is still open).
A session is linked to its payment by the hidden metadata entry that names the payment's
primary key and by ``merchant_order_id``, the payment's token: both must match. Each receiver
locks the payment's row, so that two workers delivering effects of the same
payment at once change it once; and each is idempotent, because the outbox delivers an effect
again when a worker died before marking it done.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import router, transaction
from payments import PaymentStatus, get_payment_model

from django_etpay import signals
from django_etpay.models import PaymentSession

logger = logging.getLogger("django_etpay.contrib.payments")

#: Statuses a failure or an expiry may move to ``REJECTED``: nothing settled yet.
_OPEN = (PaymentStatus.WAITING, PaymentStatus.INPUT)
#: Statuses a success leaves alone: the money is already accounted for.
_SETTLED = (PaymentStatus.CONFIRMED, PaymentStatus.REFUNDED)


def _is_ours(payment: Any, session: PaymentSession) -> bool:
    """Whether ``payment`` is paid through an ``EtpayProvider`` of ``session``'s account."""
    from payments.core import provider_factory

    from django_etpay.contrib.payments.provider import EtpayProvider

    try:
        provider = provider_factory(payment.variant, payment)
    except ValueError:
        return False
    return isinstance(provider, EtpayProvider) and provider.merchant == session.merchant


def payment_id_of(session: PaymentSession) -> str | None:
    """The primary key of the ``Payment`` ``session`` was opened for, from its metadata."""
    from django_etpay.contrib.payments.provider import PAYMENT_METADATA_NAME

    for entry in session.metadata or []:
        if isinstance(entry, dict) and entry.get("name") == PAYMENT_METADATA_NAME:
            return str(entry.get("value"))
    return None


def _apply(session: PaymentSession, change: Any) -> None:
    """Run ``change(payment)`` on ``session``'s payment, its row locked, if it has one."""
    payment_id = payment_id_of(session)
    if payment_id is None:
        # Not opened by EtpayProvider: no query at all for the shop's other sessions.
        return
    payment_model = get_payment_model()
    try:
        pk = payment_model._meta.pk.to_python(payment_id)
    except ValidationError:
        return
    with transaction.atomic(using=router.db_for_write(payment_model)):
        payment = (
            payment_model._default_manager.select_for_update()
            .filter(pk=pk, token=session.merchant_order_id)
            .first()
        )
        if payment is None or not _is_ours(payment, session):
            # A session opened outside django-payments (or for another account).
            return
        change(payment)


def on_payment_completed(sender: Any, session: PaymentSession, **kwargs: Any) -> None:
    """A verified success: the payment is ``CONFIRMED`` with ETpay's payment token."""

    def confirm(payment: Any) -> None:
        if payment.status in _SETTLED:
            if payment.transaction_id != session.payment_token:
                # Two sessions of one payment were paid: the shop has to refund one.
                logger.warning(
                    "Payment %s was paid again through ETpay session %s", payment.pk, session.pk
                )
            return
        if Decimal(payment.total) != session.order_amount:
            payment.change_status(
                PaymentStatus.ERROR,
                f"ETpay session {session.pk} was paid {session.order_amount}, "
                f"the payment's total is {payment.total}.",
            )
            return
        payment.captured_amount = payment.total
        payment.transaction_id = session.payment_token
        payment.save(update_fields=["captured_amount", "transaction_id"])
        payment.change_status(PaymentStatus.CONFIRMED)

    _apply(session, confirm)


def _reject_with(message: str) -> Any:
    def receiver(sender: Any, session: PaymentSession, **kwargs: Any) -> None:
        def reject(payment: Any) -> None:
            if payment.status not in _OPEN:
                return
            still_open = PaymentSession.objects.filter(
                merchant=session.merchant,
                merchant_order_id=session.merchant_order_id,
                status__in=[PaymentSession.Status.INITIALIZING, PaymentSession.Status.PENDING],
            ).exclude(pk=session.pk)
            if still_open.exists():
                # The payer opened another session for this payment: it may still be paid.
                return
            payment.change_status(PaymentStatus.REJECTED, message)

        _apply(session, reject)

    return receiver


#: A verified failure (the payer cancelled, the bank refused): ``REJECTED``.
on_payment_failed = _reject_with("ETpay reported the payment as not completed.")
#: Nothing arrived within ``SESSION_TTL``: ``REJECTED`` (a late payment still confirms it).
on_session_expired = _reject_with("The ETpay session expired without a payment.")


def connect() -> None:
    """Connect the receivers (idempotent)."""
    signals.payment_completed.connect(
        on_payment_completed, dispatch_uid="django_etpay.contrib.payments.completed"
    )
    signals.payment_failed.connect(
        on_payment_failed, dispatch_uid="django_etpay.contrib.payments.failed"
    )
    signals.session_expired.connect(
        on_session_expired, dispatch_uid="django_etpay.contrib.payments.expired"
    )
