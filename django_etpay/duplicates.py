"""Double payments: a paid session that receives a verified success of another payment.

A payer may go through ETpay's funnel twice for one session (a second tab, a reload after the
bank's page): ETpay then reports two successes with two ``payment_token`` values. The session
stays paid by the first one; every further payment token is recorded here once, as an outbox
effect of kind ``payment_duplicated`` linked to the result that carried it, so that
:data:`~django_etpay.signals.payment_duplicated` reaches the shop once per extra payment after
commit (and again after a crash, like the completion signals). The admin lists these sessions
("paid more than once") and shows each extra payment on the session page.
"""

from __future__ import annotations

import logging

from django_etpay import outbox
from django_etpay.dispatch import write_alias
from django_etpay.models import Notification, OutboxEffect, PaymentSession

logger = logging.getLogger("django_etpay")

KIND = OutboxEffect.Kind.PAYMENT_DUPLICATED


def is_extra_payment(session: PaymentSession, notification: Notification) -> bool:
    """Whether ``notification`` is a verified success of another payment of the paid ``session``.

    Only for results that passed verification and the cross-checks (rejected results never
    reach this).
    """
    token = notification.payment_token
    return (
        session.status == PaymentSession.Status.PAID
        and notification.outcome != Notification.Outcome.REJECTED
        and notification.result == Notification.Result.SUCCESS
        and bool(token)
        and bool(session.payment_token)
        and token != session.payment_token
    )


def extra_payments(session: PaymentSession) -> list[Notification]:
    """The results that carried ``session``'s extra payments, first one first."""
    return [
        effect.notification
        for effect in OutboxEffect.objects.filter(session_id=session.pk, kind=KIND)
        .select_related("notification")
        .order_by("created_at", "pk")
        if effect.notification is not None
    ]


def lock_session(session: PaymentSession, *, using: str) -> bool:
    """Take ``session``'s row lock (``select_for_update``) on ``using``; False if it is gone.

    Call inside ``transaction.atomic(using=using)``, before anything else in that transaction
    writes a row referencing the session (see :func:`record_duplicate`).
    """
    return (
        PaymentSession.objects.using(using)
        .select_for_update()
        .filter(pk=session.pk)
        .order_by()
        .values_list("pk", flat=True)
        .first()
    ) is not None


def record_duplicate(
    session: PaymentSession, notification: Notification, payment_token: str
) -> OutboxEffect | None:
    """Record the extra payment ``payment_token`` of the paid ``session``, once.

    Must run inside ``transaction.atomic(using=...)`` on the session's database with the
    session's row already locked (the pipeline's locked block, or :func:`lock_session` taken
    first). The lock orders concurrent deliveries of one extra payment, so exactly one of them
    records it; and taking it before the storage budget's ``UPDATE`` and the inserts that
    reference the session (whose foreign-key checks take ``FOR KEY SHARE`` on its row)
    keeps one lock order for every delivery, so they never deadlock.

    Called by the result pipeline with the verified result's record (saved or not: a result
    past the session's storage budget for repeats is saved here all the same, since it carries
    money). The first time a payment token is seen, an outbox effect is written and
    ``payment_duplicated`` is sent after commit; a repeat of the same payment finds that
    effect and does nothing. Returns the new effect, or ``None`` for a payment already
    recorded.
    """
    alias = write_alias()
    known = (
        OutboxEffect.objects.using(alias)
        .filter(session_id=session.pk, kind=KIND, notification__payment_token=payment_token)
        .exists()
    )
    if known:
        return None
    if not notification.pk:  # not stored by the pipeline (its repeat budget is used up)
        notification.save(using=alias)
    effect = outbox.record(KIND, session=session, notification=notification)
    logger.warning(
        "ETpay session %s for order %s was paid more than once (another payment_token); "
        "the extra payment is the shop's to give back",
        session.pk,
        session.merchant_order_id,
    )
    return effect


def record_paid_sibling(
    session: PaymentSession, notification: Notification, *, using: str
) -> OutboxEffect | None:
    """Record ``session``'s payment as an extra one when another session of its order is paid.

    Called by the result pipeline in the transaction that has just marked ``session`` paid
    (its row locked). ``session_for_order`` keeps one live session per order, but a session
    opened another way, or one paid after its order's next session was opened, can be paid
    too: the payer's money then moved twice for one order. The shop gets
    ``payment_completed`` for this session (it is paid) and ``payment_duplicated`` with this
    session's payment token, once (this transition happens once).

    Two sessions of one order paid at the same moment must not each miss the other, so every
    such check first takes the row lock of the order's oldest other session: they queue on
    one row, and the holder of that row's own lock takes no second one, so no cycle forms.
    """
    siblings = (
        PaymentSession.objects.using(using)
        .filter(
            merchant=session.merchant,
            environment=session.environment,
            merchant_order_id=session.merchant_order_id,
        )
        .exclude(pk=session.pk)
    )
    # One statement when the order has no other session, the common case.
    first = siblings.order_by("pk").values_list("pk", flat=True).first()
    if first is None:
        return None
    if first < session.pk:
        locked = PaymentSession.objects.using(using).select_for_update().filter(pk=first)
        list(locked.order_by().values_list("pk", flat=True))
    if not siblings.filter(status=PaymentSession.Status.PAID).exists():
        return None
    effect = outbox.record(KIND, session=session, notification=notification)
    logger.warning(
        "ETpay session %s paid order %s, which another session had paid already; "
        "the extra payment is the shop's to give back",
        session.pk,
        session.merchant_order_id,
    )
    return effect
