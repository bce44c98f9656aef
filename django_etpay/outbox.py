"""The outbox: completion effects that survive a crash.

A state change (``paid``, ``failed``, ``expired``) and the row that says "its signal must
still be delivered" are written in one transaction, so neither exists without the other. After
commit, the process that made the change delivers the signal and marks the row ``done`` when
every receiver has returned. If that process dies in between (a killed worker, a lost
connection) or a receiver raises, the row stays ``pending``; :func:`deliver_due`, run by
``manage.py etpay_reconcile`` and by the reconcile task, delivers it again once its lease has
passed.

Who delivers holds a lease (``lease_until``) taken with a conditional ``UPDATE``: the process
that made the change owns it from the start, the recovery path takes it only after it expired,
so the two never deliver the same effect at the same time. A delivery that outlives its lease
(``EFFECT_RETRY_AFTER``) may be started again, which is why receivers must be idempotent:
deliveries are at least once, and exactly once whenever receivers finish within the lease.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone

from django_etpay import conf, signals
from django_etpay.dispatch import write_alias
from django_etpay.models import Notification, OutboxEffect, PaymentSession

logger = logging.getLogger("django_etpay")

Kind = OutboxEffect.Kind
State = OutboxEffect.State

#: The signal each kind of effect sends.
SIGNALS: dict[str, Signal] = {
    Kind.PAYMENT_COMPLETED: signals.payment_completed,
    Kind.PAYMENT_FAILED: signals.payment_failed,
    Kind.SESSION_EXPIRED: signals.session_expired,
    Kind.PAYMENT_DUPLICATED: signals.payment_duplicated,
}

#: Retries wait twice as long each time, up to this.
MAX_RETRY_DELAY = timedelta(days=1)

#: Effects claimed per query by :func:`deliver_due`.
BATCH_SIZE = 200


@dataclass
class DeliveryReport:
    """What one :func:`deliver_due` run did."""

    delivered: int = 0
    failed: int = 0
    gave_up: int = 0

    def as_dict(self) -> dict[str, int]:
        """JSON-ready counts (task results)."""
        return {"delivered": self.delivered, "failed": self.failed, "gave_up": self.gave_up}


def _new_claim() -> str:
    return secrets.token_hex(16)


def _lease() -> timedelta:
    return conf.get_duration("EFFECT_RETRY_AFTER")


def record(
    kind: str,
    *,
    session: PaymentSession,
    notification: Notification | None = None,
    previous_status: str = "",
) -> OutboxEffect:
    """Record one effect of a state change and deliver it after commit.

    Call inside the transaction that changed ``session``: the effect is written to
    ``session``'s database and committed, or rolled back, with the change. The calling
    process holds the lease from the start, so the recovery path leaves the effect alone
    while it is being delivered here.
    """
    effect, claim = new_effect(
        kind, session=session, notification=notification, previous_status=previous_status
    )
    effect.save(using=session._state.db or write_alias())
    deliver_on_commit(effect, claim)
    return effect


def new_effect(
    kind: str,
    *,
    session: PaymentSession,
    notification: Notification | None = None,
    previous_status: str = "",
) -> tuple[OutboxEffect, str]:
    """An unsaved effect whose lease the calling process holds, and the claim that proves it.

    Once it is saved, hand both to :func:`deliver_on_commit`; :func:`record` does all three.
    """
    claim = _new_claim()
    effect = OutboxEffect(
        kind=kind,
        session=session,
        notification=notification,
        previous_status=previous_status,
        attempts=1,
        claim=claim,
        lease_until=timezone.now() + _lease(),
    )
    return effect, claim


def deliver_on_commit(effect: OutboxEffect, claim: str) -> None:
    """Deliver the saved ``effect`` once the transaction of its database commits (at once
    without one)."""
    transaction.on_commit(lambda: _deliver(effect, claim), using=effect._state.db)


def record_many(
    kind: str,
    sessions: Iterable[PaymentSession],
    previous_status: str = "",
    *,
    using: str | None = None,
) -> None:
    """:func:`record` for many sessions in one ``INSERT`` (expiry works in batches), on
    ``using`` (the router's write database by default), delivered once it commits."""
    alias = using or write_alias()
    claim = _new_claim()
    lease_until = timezone.now() + _lease()
    effects = OutboxEffect.objects.using(alias).bulk_create(
        [
            OutboxEffect(
                kind=kind,
                session=session,
                previous_status=previous_status,
                attempts=1,
                claim=claim,
                lease_until=lease_until,
            )
            for session in sessions
        ]
    )

    def deliver_all() -> None:
        for effect in effects:
            _deliver(effect, claim)

    transaction.on_commit(deliver_all, using=alias)


def _kwargs(effect: OutboxEffect) -> dict[str, Any]:
    if effect.kind == Kind.SESSION_EXPIRED:
        return {"session": effect.session}
    if effect.kind == Kind.PAYMENT_DUPLICATED:
        # The extra payment's id is its result's (see django_etpay.duplicates).
        notification = effect.notification
        return {
            "session": effect.session,
            "notification": notification,
            "payment_token": notification.payment_token if notification is not None else "",
        }
    return {
        "session": effect.session,
        "notification": effect.notification,
        "previous_status": effect.previous_status,
    }


def _deliver(effect: OutboxEffect, claim: str) -> bool:
    """Send the effect's signal to every receiver, then record how that went.

    Returns whether every receiver finished without raising.
    """
    signal = SIGNALS[effect.kind]
    errors: list[str] = []
    for receiver_func, response in signal.send_robust(sender=PaymentSession, **_kwargs(effect)):
        if isinstance(response, Exception):
            name = getattr(receiver_func, "__qualname__", repr(receiver_func))
            errors.append(f"{name}: {type(response).__name__}")
            logger.error(
                "Receiver %s of django_etpay's %s raised %s (session %s)",
                name,
                effect.kind,
                type(response).__name__,
                effect.session_id,
                exc_info=response,
            )
    try:
        _finish(effect, claim, errors)
    except DatabaseError as err:
        # The receivers ran; the row still says pending, so the effect will be delivered
        # again after its lease: at least once, never lost.
        logger.error(
            "Could not mark the %s effect %s delivered (%s); it will be delivered again",
            effect.kind,
            effect.pk,
            type(err).__name__,
        )
    return not errors


def _finish(effect: OutboxEffect, claim: str, errors: list[str]) -> None:
    now = timezone.now()
    mine = OutboxEffect.objects.using(effect._state.db or write_alias()).filter(
        pk=effect.pk, claim=claim, state=State.PENDING
    )
    if not errors:
        updated = mine.update(state=State.DONE, delivered_at=now, last_error="")
    else:
        attempts = effect.attempts
        if attempts >= int(conf.get_setting("EFFECT_MAX_ATTEMPTS")):
            updated = mine.update(state=State.FAILED, last_error="\n".join(errors)[:2000])
            logger.error(
                "Gave up delivering the %s effect %s after %d attempts",
                effect.kind,
                effect.pk,
                attempts,
            )
        else:
            delay = min(_lease() * 2 ** max(attempts - 1, 0), MAX_RETRY_DELAY)
            updated = mine.update(
                lease_until=now + delay, claim="", last_error="\n".join(errors)[:2000]
            )
    if not updated:
        logger.warning(
            "The %s effect %s was claimed by another delivery while its receivers ran "
            "(they took longer than EFFECT_RETRY_AFTER)",
            effect.kind,
            effect.pk,
        )


def claim(
    pk: int, *, now: datetime | None = None, using: str | None = None
) -> tuple[OutboxEffect, str] | None:
    """Take the lease of pending effect ``pk`` if it has expired; ``None`` when it has not.

    The conditional ``UPDATE`` is the whole protocol: of any number of processes trying at
    once, exactly one gets a row count of 1. Runs on ``using``, the router's write database
    by default.
    """
    effects = OutboxEffect.objects.using(using or write_alias())
    now = now or timezone.now()
    token = _new_claim()
    taken = effects.filter(pk=pk, state=State.PENDING, lease_until__lte=now).update(
        claim=token, lease_until=now + _lease(), attempts=F("attempts") + 1
    )
    if not taken:
        return None
    effect = effects.select_related("session", "notification").get(pk=pk)
    return effect, token


def due(*, using: str | None = None) -> Any:
    """Pending effects whose lease has expired, oldest first (on the write database)."""
    return OutboxEffect.objects.using(using or write_alias()).filter(
        state=State.PENDING, lease_until__lte=timezone.now()
    )


def deliver_due(*, limit: int | None = None) -> DeliveryReport:
    """Deliver again every pending effect whose lease has expired (the recovery path).

    Safe to run from several processes at once and to interrupt: each effect is claimed
    before it is delivered, and one left half-done is picked up by a later run. Memory stays
    bounded: effects are read :data:`BATCH_SIZE` ids at a time.
    """
    report = DeliveryReport()
    alias = write_alias()
    last_pk = 0
    while True:
        done = report.delivered + report.failed + report.gave_up
        if limit is not None and done >= limit:
            break
        size = BATCH_SIZE if limit is None else min(BATCH_SIZE, limit - done)
        pending = due(using=alias).filter(pk__gt=last_pk).order_by("pk")
        pks = list(pending.values_list("pk", flat=True)[:size])
        if not pks:
            break
        last_pk = pks[-1]
        for pk in pks:
            claimed = claim(pk, using=alias)
            if claimed is None:
                continue  # another process took it, or its owner renewed nothing: not ours
            effect, token = claimed
            logger.info(
                "Delivering the %s effect %s for session %s again (attempt %d)",
                effect.kind,
                effect.pk,
                effect.session_id,
                effect.attempts,
            )
            if _deliver(effect, token):
                report.delivered += 1
            elif effect.attempts >= int(conf.get_setting("EFFECT_MAX_ATTEMPTS")):
                report.gave_up += 1
            else:
                report.failed += 1
    return report


def redeliver(effects: Iterable[OutboxEffect]) -> int:
    """Make ``effects`` (given up or delivered) due again now; returns how many.

    For staff, after fixing a receiver that kept failing. The attempt count starts over.
    """
    pks = [effect.pk for effect in effects]
    return (
        OutboxEffect.objects.using(write_alias())
        .filter(pk__in=pks)
        .update(state=State.PENDING, lease_until=timezone.now(), attempts=0, claim="")
    )
