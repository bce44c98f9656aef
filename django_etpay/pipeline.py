"""Inbound results: verify each one, apply it to its session, record it.

One pipeline for every result, whatever carried it (the webhook, the payer's browser, the
status API): parse, find the session by the unverified ``session_token`` claim, verify with
that session's own key, cross-check against the row, then decide (:mod:`django_etpay.rules`)
and apply the transition under a row lock, record the outcome (:mod:`django_etpay.records`)
and send signals on commit. Rejections are recorded after the locked block has been left, so
that their record never depends on the fate of the transaction that processed them.

Every step of one result uses one database, the router's write database for the app's models
(:func:`django_etpay.dispatch.write_alias`): the lookup, the lock, the transaction, the
records and the on-commit delivery of signals.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from django_etpay import conf, duplicates, observability, outbox, tokens
from django_etpay.client import get_client
from django_etpay.dispatch import write_alias
from django_etpay.exceptions import EtpayVerificationError
from django_etpay.models import Notification, PaymentSession
from django_etpay.records import (
    notification_of,
    record_internal_error,
    record_rejection,
    record_unknown_to_etpay,
    save_within_budget,
)
from django_etpay.rules import EFFECT_KINDS, TARGET_STATUS, Decision, changes_nothing, decide

logger = logging.getLogger("django_etpay")

Channel = Notification.Channel
Outcome = Notification.Outcome
Reason = Notification.Reason


def _unknown_session() -> EtpayVerificationError:
    """The rejection of a result whose ``session_token`` names no session (any more)."""
    return EtpayVerificationError(
        Reason.UNKNOWN_SESSION, "No session has the result's session_token."
    )


def _one(sessions: QuerySet[PaymentSession]) -> PaymentSession:
    """The one session of ``sessions``; the ``unknown_session`` rejection when there is none."""
    try:
        return sessions.get()
    except PaymentSession.DoesNotExist:
        raise _unknown_session() from None


def _apply_verified(
    session: PaymentSession,
    verified: tokens.VerifiedResult,
    *,
    channel: str,
    raw_body: str,
    remote_addr: str | None,
    locked: bool = True,
) -> Notification:
    """Decide (:func:`~django_etpay.rules.decide`) and apply what a verified result does.

    Must run inside ``transaction.atomic(using=...)`` on ``session``'s database with
    ``session`` locked, unless ``locked`` is false: then ``session`` was read without a lock
    and :func:`~django_etpay.rules.changes_nothing` holds for it, so there is nothing to apply
    and only the record is stored (its budget taken atomically, see
    :func:`~django_etpay.records.save_within_budget`). Accepted results are always stored;
    duplicates up to ``MAX_DUPLICATES_PER_SESSION`` per session (the system-error JWT is
    signed with the public session token, so anyone holding a payment URL can mint them).
    Their effect on the session (the reconciliation flag) applies beyond the cap too.
    """
    alias = session._state.db or write_alias()
    decision = decide(session, verified, channel=channel)
    if not locked and (decision.changes or decision.signal is not None):
        # changes_nothing() and the rules disagree: a programming error, never stored.
        raise RuntimeError("A result read without the row lock would change the session.")
    if decision.changes:
        for field, value in decision.changes.items():
            setattr(session, field, value)
        session.save(using=alias, update_fields=[*decision.changes, "updated_at"])
    notification = notification_of(
        decision, session, verified, channel=channel, raw_body=raw_body, remote_addr=remote_addr
    )
    if decision.signal is not None:
        # A transition is always recorded; only results that change nothing are budgeted.
        notification.save(using=alias)
        _log_transition(session, decision, channel)
        # Recorded in this transaction, delivered after commit, re-delivered if this process
        # dies before every receiver finished (see django_etpay.outbox).
        outbox.record(
            EFFECT_KINDS[session.status],
            session=session,
            notification=notification,
            previous_status=decision.status_before,
        )
        if session.status == PaymentSession.Status.PAID:
            # Another session of the same order paid already: the order is paid twice.
            duplicates.record_paid_sibling(session, notification, using=alias)
        return notification
    extra = duplicates.is_extra_payment(session, notification)
    if extra and not locked:
        # A second payment_token on a paid session: money the shop has to give back, recorded
        # once per token under the session's row lock. The lock is taken first, and the
        # budget's UPDATE and every INSERT referencing the session follow it in the same
        # transaction: locking only after an autocommit UPDATE and INSERT (whose foreign-key
        # check takes FOR KEY SHARE on the row) lets concurrent deliveries wait on each other
        # in a cycle, which PostgreSQL breaks by killing one of them.
        with transaction.atomic(using=alias):
            # A session deleted meanwhile leaves nothing to record against.
            if duplicates.lock_session(session, using=alias):
                _store_repeat(notification, session, decision, channel, alias)
                duplicates.record_duplicate(session, notification, notification.payment_token)
    else:
        _store_repeat(notification, session, decision, channel, alias)
        if extra:  # already inside the pipeline's locked transaction
            duplicates.record_duplicate(session, notification, notification.payment_token)
    logger.debug(
        "ETpay %s result for session %s changes nothing (%s)",
        channel,
        session.pk,
        decision.reason or "duplicate",
    )
    return notification


def _store_repeat(
    notification: Notification,
    session: PaymentSession,
    decision: Decision,
    channel: str,
    alias: str,
) -> None:
    """Store the record of a result that changes nothing, within the session's budget."""
    # One mechanism, locked or not: the counter's conditional UPDATE and the row together (the
    # counter is not in the changes, so updated_at keeps saying when the session last changed).
    stored = save_within_budget(
        notification,
        session.pk,
        counter="stored_duplicates",
        cap=int(conf.get_setting("MAX_DUPLICATES_PER_SESSION")),
        using=alias,
    )
    if not stored:
        logger.warning(
            "ETpay %s result for session %s changes nothing (%s), not stored: budget used up",
            channel,
            session.pk,
            decision.reason or "duplicate",
        )


def _log_transition(session: PaymentSession, decision: Decision, channel: str) -> None:
    logger.info(
        "ETpay session %s for order %s: %s -> %s (%s)",
        session.pk,
        session.merchant_order_id,
        decision.status_before,
        decision.status_after,
        channel,
    )


@observability.observed_result
def _run_pipeline(
    *,
    session_token: str,
    verify: Callable[[PaymentSession], tokens.VerifiedResult],
    channel: str,
    raw_body: str,
    remote_addr: str | None,
    unverified: Mapping[str, Any] | None,
) -> Notification:
    """Find the session, verify, cross-check, apply; record rejections after.

    The session is read without a lock and the result verified against it (its key is
    decrypted once, on that instance, and the JWT verified once). A result that cannot change
    the session whatever happens concurrently (:func:`~django_etpay.rules.changes_nothing`) is
    recorded at once, without a row lock. Any other result takes the row lock in a
    transaction and is decided on the locked row. All of it on the write database: a read
    replica may lag behind and never decides.
    """
    alias = write_alias()
    sessions = PaymentSession.objects.using(alias)
    session: PaymentSession | None = None
    rejection: EtpayVerificationError
    try:
        # get(), not first(): the token is unique, and an ORDER BY would cost its compilation.
        session = _one(sessions.filter(token=session_token))
        verified = verify(session)
        tokens.check_against_session(verified, session)
        if changes_nothing(session, verified):
            return _apply_verified(
                session,
                verified,
                channel=channel,
                raw_body=raw_body,
                remote_addr=remote_addr,
                locked=False,
            )
        with transaction.atomic(using=alias):
            session = _one(sessions.select_for_update().filter(pk=session.pk))
            # The fields compared never change once ETpay gave the session its token; checked
            # again on the locked row all the same, without decrypting or decoding anything.
            tokens.check_against_session(verified, session)
            return _apply_verified(
                session, verified, channel=channel, raw_body=raw_body, remote_addr=remote_addr
            )
    except EtpayVerificationError as err:
        rejection = err
    except Exception as err:
        # Written after the atomic block rolled back, so it survives; then the error goes on
        # (the view answers 5xx so that ETpay retries).
        record_internal_error(
            err,
            session=session,
            channel=channel,
            raw_body=raw_body,
            remote_addr=remote_addr,
            claims=unverified,
        )
        raise
    if rejection.reason == Reason.UNKNOWN_SESSION:
        session = None
    elif rejection.reason == Reason.KEY_UNAVAILABLE and session is not None:
        # The result cannot be verified until the keys are fixed; the status API needs no
        # signature key, so a reconciliation settles the session meanwhile.
        logger.error(
            "ETpay %s result for session %s cannot be verified: its signature_token cannot be "
            "decrypted with the configured keys (see etpay_rotate_keys)",
            channel,
            session.pk,
        )
        sessions.filter(pk=session.pk).update(needs_reconciliation=True)
    return record_rejection(
        channel=channel,
        reason=rejection.reason,
        detail=rejection.message,
        raw_body=raw_body,
        remote_addr=remote_addr,
        session=session,
        claims=unverified,
    )


@observability.observed_result
@sensitive_variables("raw_jwt")
def process_notification(
    raw_jwt: str, *, channel: str, remote_addr: str | None = None
) -> Notification:
    """Verify one result JWT from ETpay, apply it to its session and record it.

    Finds the session by the JWT's ``session_token`` claim, verifies HS256 with that session's
    ``signature_token``, checks ``merchant_order_id``, ``merchant_amount`` and the currency
    against the row, then, inside one transaction holding a row lock on the session, applies
    the transition rule of :meth:`PaymentSession.transition_allowed` and stores a
    :class:`~django_etpay.models.Notification`. Signals go out on commit: ``payment_completed``
    or ``payment_failed`` once per transition, ``notification_rejected`` for rejections.

    Returns the notification; read ``.outcome`` (``accepted``, ``duplicate``, ``rejected``)
    and ``.reason``. Nothing is raised for bad input, which is recorded as ``rejected``. An
    internal failure (database down, a bug) is recorded as ``rejected`` / ``internal_error``
    when possible and then re-raised. Browser channels (``redirect``, ``widget``) change a
    status only when ``ACCEPT_BROWSER_RESULTS`` is on. Neither the JWT nor any key is logged.
    ``ValueError`` is raised for a ``channel`` that is not a ``Notification.Channel`` value.
    """
    if channel not in Channel.values:
        raise ValueError(f"Unknown channel {channel!r}; use a Notification.Channel value.")
    raw_text = raw_jwt if isinstance(raw_jwt, str) else ""
    unverified: dict[str, Any] | None = None
    try:
        unverified = tokens.read_unverified(raw_text)
        session_token = tokens.session_token_of(unverified)
    except EtpayVerificationError as err:
        return record_rejection(
            channel=channel,
            reason=err.reason,
            detail=err.message,
            raw_body=raw_text,
            remote_addr=remote_addr,
            claims=unverified,
        )
    checked_claims = unverified

    def verify(session: PaymentSession) -> tokens.VerifiedResult:
        return tokens.verify_payment_jwt(raw_text, session, checked_claims)

    return _run_pipeline(
        session_token=session_token,
        verify=verify,
        channel=channel,
        raw_body=raw_text,
        remote_addr=remote_addr,
        unverified=unverified,
    )


def reconcile_session(
    session: PaymentSession, *, stamp: bool = False, refresh: bool = True
) -> list[Notification]:
    """Ask ETpay for ``session``'s payments and apply each one like a notification.

    Calls ``/merchant/check_payment_status`` by session token with the session's own merchant
    account. Each entry naming this session goes through the same cross-checks and transition
    rule as a JWT, with channel ``poll``; entries for other sessions are ignored.
    ``needs_reconciliation`` is cleared when ETpay reported a success or failure. When ETpay's
    answer names no payment of this session, that is recorded too: one ``poll`` notification,
    outcome ``duplicate`` (nothing changed), reason ``unknown_to_etpay``. ``session`` is
    refreshed from the database before returning.

    ``stamp=True`` sets the session's ``last_checked_at`` once ETpay has answered (what a
    reconcile run does, so the session is not due again for ``RECONCILE_INTERVAL``).
    ``refresh=False`` leaves ``session`` as it was read, apart from ``last_checked_at``, when
    the caller has no use for the refreshed row: a run over many sessions saves a read each.

    Raises :class:`~django_etpay.exceptions.EtpayAPIError` when ETpay cannot be asked; returns
    ``[]`` for a session ETpay never gave a token.
    """
    alias = write_alias()
    rows = PaymentSession.objects.using(alias).filter(pk=session.pk)
    if not session.token:
        if stamp:
            _stamp_checked(rows, session, timezone.now())
        return []
    with observability.about_session(session.pk):
        entries = get_client(session.merchant or None).check_payment_status(
            session_token=session.token
        )
    checked_at = timezone.now() if stamp else None
    notifications: list[Notification] = []
    learned: list[bool] = []
    for entry in entries:
        if entry.get("session_token") != session.token:
            logger.debug("ETpay status entry for another session ignored (session %s)", session.pk)
            continue
        result = tokens.result_from_status_entry(entry)
        notification = _run_pipeline(
            session_token=session.token,
            verify=_constant(result),
            channel=Channel.POLL,
            raw_body=json.dumps(entry, ensure_ascii=False),
            remote_addr=None,
            unverified=entry,
        )
        notifications.append(notification)
        learned.append(notification.outcome != Outcome.REJECTED and result.result in TARGET_STATUS)
    if not notifications:
        # Its own read (or, when stamping, its conditional UPDATE) leaves the session as
        # fresh as a refresh would: nothing else to do for the answer most sessions get.
        record = record_unknown_to_etpay(session, len(entries), using=alias, checked_at=checked_at)
        return [record]
    if any(learned):
        rows.filter(needs_reconciliation=True).update(
            needs_reconciliation=False, updated_at=timezone.now()
        )
    if checked_at is not None:
        _stamp_checked(rows, session, checked_at)
    if refresh:
        session.refresh_from_db(using=alias)
    return notifications


def _stamp_checked(
    rows: QuerySet[PaymentSession], session: PaymentSession, checked_at: datetime
) -> None:
    """Set ``last_checked_at`` in the row and on ``session``, which a run may not refresh."""
    rows.update(last_checked_at=checked_at)
    session.last_checked_at = checked_at


def _constant(
    result: tokens.VerifiedResult,
) -> Callable[[PaymentSession], tokens.VerifiedResult]:
    """A verify step for results whose origin is already established (status API)."""

    def verify(session: PaymentSession) -> tokens.VerifiedResult:
        return result

    return verify
