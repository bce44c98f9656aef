"""The transition rule: what a verified result does to a session in a given state.

Pure: nothing here reads or writes the database. :mod:`django_etpay.pipeline` applies what
:func:`decide` returns, under the row lock; :func:`changes_nothing` tells it when no lock is
needed at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.dispatch import Signal
from django.utils import timezone

from django_etpay import conf, signals, tokens
from django_etpay.models import Notification, OutboxEffect, PaymentSession
from django_etpay.values import PAYER_FIELDS, claim_str

logger = logging.getLogger("django_etpay")

Channel = Notification.Channel
Reason = Notification.Reason
Result = Notification.Result

#: Channels that go through the payer's browser; see ``ACCEPT_BROWSER_RESULTS``.
BROWSER_CHANNELS: frozenset[str] = frozenset({Channel.REDIRECT, Channel.WIDGET})

#: The status each payment outcome leads to.
TARGET_STATUS: dict[str, str] = {
    Result.SUCCESS: PaymentSession.Status.PAID,
    Result.FAILURE: PaymentSession.Status.FAILED,
}

#: The completion effect (and so the signal) of each transition a result makes.
EFFECT_KINDS: dict[str, str] = {
    PaymentSession.Status.PAID: OutboxEffect.Kind.PAYMENT_COMPLETED,
    PaymentSession.Status.FAILED: OutboxEffect.Kind.PAYMENT_FAILED,
}


@dataclass
class Decision:
    """What a verified result does to a session in a given state (see :func:`decide`)."""

    status_before: str
    status_after: str
    #: Session fields to write, with their new values (``updated_at`` is added on save).
    changes: dict[str, Any]
    reason: str
    detail: str
    #: Set exactly when the status changes: the signal of the transition.
    signal: Signal | None


def changes_nothing(session: PaymentSession, verified: tokens.VerifiedResult) -> bool:
    """Whether ``verified`` cannot change ``session``, read without a lock, whatever happens.

    A status read without the lock may be stale, but only towards a later status of the
    transition rule. ``paid`` is final, and nothing a result does touches a paid session
    (the reconciliation flag is set only on sessions that are not final). ``failed`` can only
    become ``paid``, and neither takes a failure. Any other case may change the status or the
    reconciliation flag and is decided under the row lock.
    """
    if session.status == PaymentSession.Status.PAID:
        return True
    return (
        session.status == PaymentSession.Status.FAILED
        and verified.result == Result.FAILURE
        and not verified.system_error
    )


def decide(session: PaymentSession, verified: tokens.VerifiedResult, *, channel: str) -> Decision:
    """The transition rule applied to ``session`` as read; changes nothing, in memory or not.

    The outcome is ``accepted`` exactly when the status changes (so one transition, one
    accepted record, one signal); every other verified result is ``duplicate``, with a reason
    when it is not a plain repeat: ``not_applicable`` (the transition rule forbids it, or
    ETpay's status value is unknown), ``system_error``, ``browser_not_trusted``.
    """
    status_before = session.status
    target = TARGET_STATUS.get(verified.result)
    trusted = channel not in BROWSER_CHANNELS or bool(conf.get_setting("ACCEPT_BROWSER_RESULTS"))
    changes: dict[str, Any] = {}
    reason = ""
    signal: Signal | None = None

    if target is None:
        reason = Reason.SYSTEM_ERROR if verified.system_error else Reason.NOT_APPLICABLE
        detail = "Payment outcome unknown; the session needs reconciling."
        if not session.is_final and not session.needs_reconciliation:
            changes["needs_reconciliation"] = True
    elif session.status == target:
        detail = f"Already {target}."
        payment_token = claim_str(verified.claims, "payment_token", 255)
        if payment_token and session.payment_token and payment_token != session.payment_token:
            # Same outcome, another payment: keep it visible instead of calling it a repeat.
            reason = Reason.NOT_APPLICABLE
            detail = f"Already {target} by another payment_token."
            logger.warning(
                "ETpay %s result for session %s reports a second payment_token",
                channel,
                session.pk,
            )
    elif not PaymentSession.transition_allowed(session.status, target):
        reason = Reason.NOT_APPLICABLE
        detail = f"A {verified.result} result does not change a {session.status} session."
    elif not trusted:
        reason = Reason.BROWSER_NOT_TRUSTED
        detail = "Browser results do not change a status (ACCEPT_BROWSER_RESULTS is off)."
        if not session.needs_reconciliation:
            changes["needs_reconciliation"] = True
    else:
        now = timezone.now()
        changes = {"status": target, "completed_at": now}
        if target == PaymentSession.Status.PAID:
            changes["paid_at"] = now
            signal = signals.payment_completed
        else:
            signal = signals.payment_failed
        if session.needs_reconciliation:
            changes["needs_reconciliation"] = False
        for claim, (field, max_length) in PAYER_FIELDS.items():
            value = claim_str(verified.claims, claim, max_length)
            if value:
                changes[field] = value
        detail = f"{status_before} -> {target}."
    return Decision(
        status_before=status_before,
        status_after=changes.get("status", status_before),
        changes=changes,
        reason=reason,
        detail=detail,
        signal=signal,
    )
