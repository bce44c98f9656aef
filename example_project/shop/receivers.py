"""Payment signal receivers: where the shop fulfils its orders.

django_etpay has already verified the JWT with the session's secret and checked the order id,
amount and currency against the session. The shop still checks that the session belongs to
the order it is about to fulfil, and fulfils at most once.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from django_etpay.models import PaymentSession
from shop.models import Order

logger = logging.getLogger("shop")


def _order_for(session: PaymentSession) -> Order | None:
    order = Order.objects.filter(number=session.merchant_order_id).first()
    if order is None or order.amount != session.order_amount:
        logger.error("ETpay session %s does not match any order: not fulfilled", session.pk)
        return None
    return order


def fulfil_order(sender: Any, session: PaymentSession, **kwargs: Any) -> None:
    """Mark the order paid (once), whichever channel reported the payment first."""
    order = _order_for(session)
    if order is None:
        return
    # A conditional UPDATE: a second delivery, or a second worker, changes nothing.
    updated = (
        Order.objects.filter(pk=order.pk)
        .exclude(status=Order.Status.PAID)
        .update(status=Order.Status.PAID, paid_at=timezone.now(), payment_session=session)
    )
    if updated:
        logger.info("Order %s paid (ETpay session %s): shipping it", order.number, session.pk)
    else:
        logger.info("Order %s was already paid", order.number)


def mark_payment_failed(sender: Any, session: PaymentSession, **kwargs: Any) -> None:
    """Show the failure, unless the order is paid or a newer session is open for it."""
    order = _order_for(session)
    if order is None:
        return
    Order.objects.filter(pk=order.pk, status=Order.Status.PENDING, payment_session=session).update(
        status=Order.Status.FAILED
    )
