"""The records of results: notifications, rejections, and the storage budgets that bound them.

Below the pipeline, above the rules: a record is built from a :class:`~django_etpay.rules.
Decision` and stored through a budget when it changes nothing. What a stranger can make the
app store is bounded per session (a counter on the session row, taken with a conditional
``UPDATE``, so the bound holds under concurrency) and per hour for results naming no session.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from django_etpay import conf, observability, signals, tokens
from django_etpay.dispatch import send_on_commit, write_alias
from django_etpay.models import Notification, PaymentSession
from django_etpay.rules import Decision
from django_etpay.values import (
    claim_str,
    clean_ip,
    storable_claims,
    storable_text,
    system_error_claims,
)

logger = logging.getLogger("django_etpay")

Outcome = Notification.Outcome
Reason = Notification.Reason
Result = Notification.Result


def new_notification(
    *,
    session: PaymentSession | None,
    channel: str,
    outcome: str,
    reason: str,
    detail: str,
    result: str,
    status_before: str,
    status_after: str,
    claims: Mapping[str, Any] | None,
    raw_body: str,
    remote_addr: str | None,
    system_error: bool,
) -> Notification:
    """An unsaved record, every value made storable.

    The record of a system-error JWT keeps only the claims ETpay's system-error JWT carries
    (:data:`~django_etpay.values.SYSTEM_ERROR_CLAIMS`) and no ``payment_token``: that JWT is
    signed with the session token, which anyone holding the payment URL has. An entry of the
    status API (channel ``poll``) came from ETpay itself, in reply to an authenticated call,
    and is kept whole.
    """
    body, truncated = storable_text(raw_body)
    if system_error and claims and channel != Notification.Channel.POLL:
        claims = system_error_claims(claims)
    stored_claims = storable_claims(claims)
    return Notification(
        session=session,
        channel=channel,
        outcome=outcome,
        reason=reason,
        detail=storable_text(detail)[0][:2000],
        result=result,
        status_before=status_before,
        status_after=status_after,
        payment_token=claim_str(stored_claims or {}, "payment_token", 255),
        raw_body=body,
        raw_body_truncated=truncated,
        claims=stored_claims,
        remote_addr=clean_ip(remote_addr),
    )


def notification_of(
    decision: Decision,
    session: PaymentSession,
    verified: tokens.VerifiedResult,
    *,
    channel: str,
    raw_body: str,
    remote_addr: str | None,
) -> Notification:
    """The (unsaved) record of ``decision``."""
    return new_notification(
        session=session,
        channel=channel,
        outcome=Outcome.ACCEPTED if decision.signal is not None else Outcome.DUPLICATE,
        reason=decision.reason,
        detail=decision.detail,
        result=verified.result,
        status_before=decision.status_before,
        status_after=decision.status_after,
        claims=verified.claims,
        raw_body=raw_body,
        remote_addr=remote_addr,
        system_error=verified.system_error,
    )


@observability.observed_result
def record_rejection(
    *,
    channel: str,
    reason: str,
    detail: str,
    raw_body: str = "",
    remote_addr: str | None = None,
    session: PaymentSession | None = None,
    claims: Mapping[str, Any] | None = None,
) -> Notification:
    """Store a rejected result and send ``notification_rejected`` after commit.

    Used by the pipeline and by views for bodies that never yield a JWT (too large, not
    parseable). ``raw_body`` is capped at ``NOTIFICATION_STORE_BYTES``. What a stranger can
    make the app store is bounded: results naming a known session are stored up to
    ``MAX_REJECTED_PER_SESSION`` per session (a counter on the session row, taken with a
    conditional ``UPDATE``, so the bound holds under concurrency), results naming none up to
    ``MAX_UNLINKED_REJECTED_PER_HOUR`` across the site. Beyond a bound the returned
    notification is not saved (``pk is None``) and no signal is sent; a warning is logged.
    The rejection of a JWT claiming ``system_error`` keeps only the system-error claims.
    """
    alias = session._state.db if session is not None else None
    alias = alias or write_alias()
    notification = new_notification(
        session=session,
        channel=channel,
        outcome=Outcome.REJECTED,
        reason=reason,
        detail=detail,
        result="",
        status_before=session.status if session is not None else "",
        status_after=session.status if session is not None else "",
        claims=claims,
        raw_body=raw_body,
        remote_addr=remote_addr,
        system_error=claims is not None and claims.get("system_error") not in (None, False),
    )
    if session is not None:
        stored = save_within_budget(
            notification,
            session.pk,
            counter="stored_rejections",
            cap=int(conf.get_setting("MAX_REJECTED_PER_SESSION")),
            using=alias,
        )
    else:
        with transaction.atomic(using=alias):
            stored = _unlinked_budget_left(alias)
            if stored:
                notification.save(using=alias)
    if not stored:
        logger.warning(
            "ETpay %s result for session %s rejected (%s), not stored: budget used up",
            channel,
            session.pk if session is not None else "unknown",
            reason,
        )
        return notification
    logger.info(
        "ETpay %s result rejected (%s) for session %s",
        channel,
        reason,
        session.pk if session is not None else "unknown",
    )
    send_on_commit(
        signals.notification_rejected,
        sender=Notification,
        using=alias,
        notification=notification,
        reason=reason,
    )
    return notification


def _unlinked_budget_left(alias: str) -> bool:
    """Whether the hourly budget of rejected results naming no session has room left.

    Counted from the table: a soft bound, as concurrent requests may overshoot it by the number
    of workers.
    """
    cap = int(conf.get_setting("MAX_UNLINKED_REJECTED_PER_HOUR"))
    # Only rejections are stored without a session; (session, created_at) is indexed.
    recent = Notification.objects.using(alias).filter(
        session=None, created_at__gte=timezone.now() - timedelta(hours=1)
    )
    return recent[:cap].count() < cap


def save_within_budget(
    notification: Notification, session_pk: int, *, counter: str, cap: int, using: str
) -> bool:
    """Take one unit of a session's storage budget and save ``notification``.

    ``counter`` is ``stored_rejections`` or ``stored_duplicates``. The budget is a conditional
    ``UPDATE ... SET counter = counter + 1 WHERE counter < cap``: the database re-checks the
    condition once it holds the row's write lock, so concurrent requests never store more
    than ``cap``, and the notification is saved only when the counter moved. The session row
    is locked only for that ``UPDATE``, never by ``select_for_update``. Returns False (nothing
    saved) when the budget is used up.

    Inside a transaction both go in a savepoint, so that no unit is spent on a row that was
    not stored. In autocommit there is no transaction to pay for (two round trips of four):
    when the save fails the unit is given back before the error goes on; only a process that
    dies in between loses one, which errs on storing less, never more.
    """
    below_cap = PaymentSession.objects.using(using).filter(
        pk=session_pk, **{f"{counter}__lt": cap}
    )
    if transaction.get_connection(using).in_atomic_block:
        with transaction.atomic(using=using):
            if below_cap.update(**{counter: F(counter) + 1}) != 1:
                return False
            notification.save(using=using)
        return True
    if below_cap.update(**{counter: F(counter) + 1}) != 1:
        return False
    try:
        notification.save(using=using)
    except BaseException:
        try:
            PaymentSession.objects.using(using).filter(pk=session_pk).update(
                **{counter: F(counter) - 1}
            )
        except DatabaseError:
            logger.warning(
                "A storage budget unit of session %s could not be given back", session_pk
            )
        raise
    return True


@observability.observed_result
def record_unknown_to_etpay(
    session: PaymentSession,
    entries: int,
    *,
    using: str,
    checked_at: datetime | None = None,
) -> Notification:
    """Leave a trace of a status query that found no payment of ``session`` (on ``using``).

    The record needs the session's status as it is now. Without ``checked_at`` the session is
    refreshed from the database for it. With ``checked_at``, the session's
    ``last_checked_at`` is set to it by an UPDATE conditional on the status the caller read,
    which confirms that status in the same statement (a reconcile run records an answer in
    two statements, not four); only when another process changed the status meanwhile is the
    row read again.
    """
    if checked_at is None:
        session.refresh_from_db(using=using)
    else:
        rows = PaymentSession.objects.using(using).filter(pk=session.pk)
        if not rows.filter(status=session.status).update(last_checked_at=checked_at):
            session.refresh_from_db(using=using, fields=["status"])
            rows.update(last_checked_at=checked_at)
        session.last_checked_at = checked_at
    notification = new_notification(
        session=session,
        channel=Notification.Channel.POLL,
        outcome=Outcome.DUPLICATE,
        reason=Reason.UNKNOWN_TO_ETPAY,
        detail=(
            "ETpay's status query returned no payment for this session"
            + (f" ({entries} entries for other sessions)." if entries else ".")
        ),
        result=Result.UNKNOWN,
        status_before=session.status,
        status_after=session.status,
        claims=None,
        raw_body="",
        remote_addr=None,
        system_error=False,
    )
    notification.save(using=using)
    logger.info("ETpay knows no payment of session %s (status query)", session.pk)
    return notification


def record_internal_error(
    err: Exception,
    *,
    session: PaymentSession | None,
    channel: str,
    raw_body: str,
    remote_addr: str | None,
    claims: Mapping[str, Any] | None,
) -> None:
    """Log a result that could not be processed, and record it when the database lets us."""
    # The traceback carries code lines and the exception message, never local values.
    logger.error(
        "ETpay %s result for session %s could not be processed (%s)",
        channel,
        session.pk if session is not None else "unknown",
        type(err).__name__,
        exc_info=err,
    )
    try:
        record_rejection(
            channel=channel,
            reason=Reason.INTERNAL_ERROR,
            detail=f"Processing failed ({type(err).__name__}); the result was not applied.",
            raw_body=raw_body,
            remote_addr=remote_addr,
            session=session,
            claims=claims,
        )
    except Exception as record_err:
        logger.error(
            "ETpay %s result could not be stored either (%s)", channel, type(record_err).__name__
        )
