"""One ETpay session per order: :func:`session_for_order`.

A pay page that calls :func:`~django_etpay.services.initialize_session` on every request opens
a new ETpay session on each reload, second tab or crawler visit, and two live sessions of one
order can both be paid. :func:`session_for_order` hands back the order's live session instead,
and creates one only when there is none, one request at a time per order.

No database transaction is held open while ETpay answers (the same database may serve the
sandbox's own writes, and a slow ETpay must not hold locks): the request that creates the
session claims the order's :class:`~django_etpay.models.OrderLock` row with a conditional
``UPDATE``, committed at once, and a concurrent request for the same order waits for the
claim to end and then takes the session it produced.
"""

from __future__ import annotations

import secrets
import time
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from django_etpay import checkout, conf, validators
from django_etpay.dispatch import write_alias
from django_etpay.models import OrderLock, PaymentSession

__all__ = ["session_for_order"]

#: How long a request waiting for another one's claim pauses between two looks, in seconds.
WAIT_STEP = 0.05
#: Added to ``TOTAL_TIMEOUT`` for a claim's lifetime: the database writes around the call.
CLAIM_MARGIN = timedelta(seconds=15)


def _pause(seconds: float) -> None:
    """Wait before looking again (a function of its own, so that tests can see the waits)."""
    time.sleep(seconds)


def _claim_lifetime() -> timedelta:
    """How long a claim holds: the longest ``initialize_session`` may take, and a margin."""
    total: Any = conf.get_setting("TOTAL_TIMEOUT")
    return timedelta(seconds=float(total)) + CLAIM_MARGIN


def _live_session(
    using: str,
    merchant: str,
    environment: str,
    currency: str,
    merchant_order_id: str,
    order_amount: int,
    bank: str | None,
) -> PaymentSession | None:
    """The newest pending session of this order and amount that ``SESSION_TTL`` has not ended
    (at ``bank`` when one is asked for)."""
    cutoff = timezone.now() - conf.get_duration("SESSION_TTL")
    sessions = PaymentSession.objects.using(using)
    if bank is not None:
        sessions = sessions.filter(user_bank_code=bank)
    return (
        sessions.filter(
            merchant=merchant,
            # An account moved from sandbox to production keeps its alias: a sandbox session
            # must not be offered to a real payer.
            environment=environment,
            merchant_order_id=merchant_order_id,
            order_amount=order_amount,
            currency=currency,
            status=PaymentSession.Status.PENDING,
            needs_reconciliation=False,
            created_at__gt=cutoff,
        )
        .order_by("-created_at", "-pk")
        .first()
    )


@sensitive_variables("arguments")
def session_for_order(
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
    """The order's live ETpay session, or a new one: call it from the pay page on every load.

    Takes the arguments of :func:`~django_etpay.services.initialize_session`. It returns the
    newest ``pending`` session of the same merchant account (and environment), order id,
    amount and currency that is younger than ``ETPAY["SESSION_TTL"]``; when there is none it
    calls ``initialize_session`` and returns the new session (raising what that raises). The
    other arguments (e-mail, metadata, RUT, phone, payment method, URLs) are used only when a
    session is created,
    except ``user_bank_code``: a payer who picks a bank on the shop's page (``{%
    etpay_bank_buttons %}``) asks for a session at that bank, so when it is given only a live
    session preselecting that bank is returned. A changed amount gets a new session; a paid,
    failed, expired or failed-to-open session is never returned, nor one flagged
    ``needs_reconciliation`` (ETpay reported a problem with it, or a result about it could
    not be trusted: the payer cannot go on with it; ``etpay_reconcile`` settles it, and a
    payment found there still sends ``payment_completed``).

    Two requests for the same order at the same moment get the same session. The one that
    creates it first claims the order's :class:`~django_etpay.models.OrderLock` row on the
    models' write database (a conditional ``UPDATE``, committed at once: no transaction is
    held open while ETpay answers); the other looks again every ``WAIT_STEP`` seconds until
    the claim ends, then returns the session the first one created (or, if that failed,
    creates its own). A claim whose request died ends by itself after ``TOTAL_TIMEOUT`` and a
    margin. Called inside a transaction (``ATOMIC_REQUESTS``), the claim and the session
    become visible to other requests only when it commits; on PostgreSQL the second request
    then waits on the row lock instead.

    It does not look at the shop's own order: check that the order is still unpaid before
    calling it.
    """
    arguments: dict[str, Any] = {
        "customer_email": customer_email,
        "metadata": metadata,
        "user_bank_code": user_bank_code,
        "user_rut": user_rut,
        "is_rut_block": is_rut_block,
        "payment_completed_url": payment_completed_url,
        "payment_cancellation_url": payment_cancellation_url,
        "payment_webhook_url": payment_webhook_url,
        "concat": concat,
        "merchant": merchant,
        "request": request,
        "target_flow": target_flow,
        "customer_phone": customer_phone,
    }
    merchant_config = conf.get_merchant(merchant)
    try:
        order_id = validators.order_id(merchant_order_id)
        amount = validators.amount(order_amount)
        bank = (
            None
            if user_bank_code is None
            else validators.bank_code(user_bank_code, merchant_config.country)
        )
    except ValueError:
        # No session can match; initialize_session reports every invalid field together.
        return checkout.initialize_session(merchant_order_id, order_amount, **arguments)
    using = write_alias()
    found = (
        using,
        merchant_config.alias,
        merchant_config.environment,
        merchant_config.currency,
        order_id,
        amount,
        bank,
    )
    # The usual reload finds its session without writing anything.
    session = _live_session(*found)
    if session is not None:
        return session
    lock, _created = OrderLock.objects.using(using).get_or_create(
        merchant=merchant_config.alias, merchant_order_id=order_id
    )
    claim = secrets.token_hex(16)
    while True:
        now = timezone.now()
        # Atomic on every database: of two requests, one updates the row and the other
        # (on PostgreSQL, after waiting for the first one's commit) matches nothing.
        claimed = (
            OrderLock.objects.using(using)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now), pk=lock.pk)
            .update(claim=claim, claimed_until=now + _claim_lifetime())
        )
        # Looked for after the claim: a session created under the previous claim is seen.
        session = _live_session(*found)
        if claimed:
            break
        if session is not None:
            return session
        # Another request is creating this order's session: wait for it (or for its claim
        # to expire, should it have died).
        _pause(WAIT_STEP)
    try:
        if session is not None:
            return session
        return checkout.initialize_session(order_id, amount, **arguments)
    finally:
        OrderLock.objects.using(using).filter(pk=lock.pk, claim=claim).update(
            claim="", claimed_until=None
        )
