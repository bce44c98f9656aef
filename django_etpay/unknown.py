"""Sessions whose creation outcome is unknown: found again at ETpay, or left to staff.

When ``/session/initialize`` fails after the request was sent (a read timeout, a 5xx, a reply
that could not be read or stored), ETpay may have opened the session anyway; the row is
``error`` with ``outcome_unknown`` and no token, so the status query by session token cannot
ask about it. :func:`settle_unknown` asks by ``merchant_order_id`` instead (ETpay's status
query accepts it, §3.3 of ETpay's API) and never guesses, since ETpay does not keep order ids
unique:

- the entries that could be this row's session are those with its order id, its amount, its
  currency (when ETpay states one), a ``payment_date`` inside :func:`match_window` (when ETpay
  states a readable one) and a ``session_token`` that no other row holds;
- exactly one such ETpay session: its token is adopted (the row becomes ``pending``, as it
  would have been had the reply arrived) and the session is then reconciled like any other
  (:func:`~django_etpay.pipeline.reconcile_session`: the status query by that token, the
  cross-checks, the transition rule, signals after commit);
- more than one: the row is flagged ``needs_staff_decision`` at once, with what ETpay returned
  stored in a ``poll`` notification (``ambiguous_order``);
- none: ETpay knows no payment that could be this row's. While the payer could still pay (the
  window has not closed) the row is asked about again on the next runs; once it has closed,
  the row is flagged for staff (``no_matching_session``).

Staff then decide with :func:`adopt_session` (this ETpay session is the row's: checked against
ETpay's answer again) or :func:`close_unknown` (no payment: the outcome is known from now on),
or send the row back to the automatic runs with :func:`ask_again`.

What a status-query answer can and cannot prove: it comes over TLS, in reply to a call
authenticated with the merchant's API token, so its entries are ETpay's word, trusted the way
the status query by session token already is. It does not return the ``signature_token``, so an
adopted session has none: its webhooks and browser results cannot be verified and are refused
(recorded as rejected), and the status query (by the adopted token, from then on) settles it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from django_etpay import conf, operations, tokens
from django_etpay.client import get_client
from django_etpay.dispatch import write_alias
from django_etpay.exceptions import EtpayAPIError, EtpayConfigurationError, EtpayVerificationError
from django_etpay.models import Notification, PaymentSession
from django_etpay.pipeline import reconcile_session

logger = logging.getLogger("django_etpay")

Status = PaymentSession.Status
Reason = Notification.Reason
Outcome = operations.Outcome

#: How far a ``payment_date`` may lie outside the row's window and still count: clocks differ,
#: and ETpay states no timezone (its dates are read in the site's ``TIME_ZONE``).
CLOCK_SLACK = timedelta(minutes=10)

#: The format of ETpay's ``payment_date`` (``31-01-2022 18:07:34``).
PAYMENT_DATE_FORMAT = "%d-%m-%Y %H:%M:%S"

#: Keys never stored from ETpay's answer, should it ever echo them.
SECRET_KEYS = frozenset({"merchant_api_token", "signature_token"})


def unknown_filter() -> Q:
    """The sessions :func:`settle_unknown` is for: no token, outcome unknown, not with staff."""
    return Q(token__isnull=True, outcome_unknown=True, needs_staff_decision=False)


def is_unknown(session: PaymentSession) -> bool:
    """Whether ``session`` is one whose creation outcome is unknown and not yet with staff."""
    return not session.token and session.outcome_unknown and not session.needs_staff_decision


def match_window(session: PaymentSession) -> tuple[datetime, datetime]:
    """When a payment of ``session`` could have happened: from its creation to the end of
    ``SESSION_TTL``, widened by :data:`CLOCK_SLACK` on both sides."""
    start = session.created_at - CLOCK_SLACK
    return start, session.created_at + conf.get_duration("SESSION_TTL") + CLOCK_SLACK


def window_closed(session: PaymentSession, *, now: datetime | None = None) -> bool:
    """Whether no payment of ``session`` can still happen (its :func:`match_window` is over)."""
    return (now or timezone.now()) > match_window(session)[1]


def _payment_date(entry: Mapping[str, Any]) -> datetime | None:
    value = entry.get("payment_date")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.strptime(value.strip(), PAYMENT_DATE_FORMAT)
    except ValueError:
        return None
    return timezone.make_aware(parsed)


def _excluded_by(entry: Mapping[str, Any], session: PaymentSession) -> str:
    """Why ``entry`` cannot be a payment of ``session`` ('' when it could be).

    Only evidence excludes: a value ETpay does not state (no currency, no readable date) never
    rules an entry out.
    """
    try:
        tokens.session_token_of(entry)
    except EtpayVerificationError:
        return "no usable session_token"
    if str(entry.get("merchant_order_id")) != session.merchant_order_id:
        return "another order"
    try:
        amount = tokens.parse_amount(entry.get("merchant_amount"))
    except EtpayVerificationError:
        return "no whole amount"
    if amount != session.order_amount:
        return "another amount"
    currency = entry.get("merchant_currency")
    if currency is not None and (
        not isinstance(currency, str) or currency.strip().upper() != session.currency.upper()
    ):
        return "another currency"
    paid_at = _payment_date(entry)
    start, end = match_window(session)
    if paid_at is not None and not start <= paid_at <= end:
        return "outside the time window"
    return ""


def candidates(
    session: PaymentSession, entries: Sequence[Mapping[str, Any]], *, using: str | None = None
) -> dict[str, list[Mapping[str, Any]]]:
    """The ETpay sessions (by session token, with their entries) that could be ``session``.

    An entry is left out when its order, amount, currency or date say it is not this row's
    session (:func:`_excluded_by`), or when another row already holds its session token (it
    is that row's session: a retry of the same order, say).
    """
    found: dict[str, list[Mapping[str, Any]]] = {}
    for entry in entries:
        if not _excluded_by(entry, session):
            found.setdefault(str(entry["session_token"]), []).append(entry)
    if found:
        taken = set(
            PaymentSession.objects.using(using or write_alias())
            .filter(token__in=list(found))
            .exclude(pk=session.pk)
            .values_list("token", flat=True)
        )
        found = {token: items for token, items in found.items() if token not in taken}
    return found


def _stored_answer(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """ETpay's entries without any secret they might echo."""
    return [{k: v for k, v in entry.items() if k not in SECRET_KEYS} for entry in entries]


def _record(
    session: PaymentSession,
    *,
    reason: str,
    detail: str,
    entries: Sequence[Mapping[str, Any]],
    using: str,
    status_before: str | None = None,
) -> Notification:
    """A ``poll`` record of what the status query by order id found (saved on ``using``).

    The claims hold ETpay's whole answer (secrets excluded), under ``entries``, for staff; the
    purge drops them with the rest of the payer's data.
    """
    from django_etpay.records import new_notification

    answer = _stored_answer(entries)
    notification = new_notification(
        session=session,
        channel=Notification.Channel.POLL,
        outcome=Notification.Outcome.DUPLICATE,
        reason=reason,
        detail=detail,
        result=Notification.Result.UNKNOWN,
        status_before=status_before if status_before is not None else session.status,
        status_after=session.status,
        claims={"merchant_order_id": session.merchant_order_id, "entries": answer},
        raw_body=json.dumps(answer, ensure_ascii=False, default=str),
        remote_addr=None,
        system_error=False,
    )
    notification.save(using=using)
    return notification


def _ask(session: PaymentSession) -> list[dict[str, Any]]:
    return get_client(session.merchant or None).check_payment_status(
        merchant_order_id=session.merchant_order_id
    )


def settle_unknown(session: PaymentSession) -> str:
    """Ask ETpay by order id about ``session`` (creation outcome unknown); return an
    :class:`~django_etpay.operations.Outcome` value.

    ``paid`` / ``failed`` / ``unchanged``: one ETpay session matched and was adopted, and its
    entries applied. ``unknown``: none matched yet and the payer could still pay; asked again
    next run. ``staff``: several matched, or none once the window closed; the row is flagged
    ``needs_staff_decision``. A session that is no longer unknown when its row is locked
    (another run settled it) changes nothing here (``unchanged``).

    The call to ETpay is made without any lock; the decision is taken on the row locked on the
    write database. Raises :class:`~django_etpay.exceptions.EtpayAPIError` when ETpay cannot
    be asked (nothing is changed then).
    """
    alias = write_alias()
    entries = _ask(session)
    found = candidates(session, entries, using=alias)
    rows = PaymentSession.objects.using(alias)
    adopted = ""
    with transaction.atomic(using=alias):
        locked = rows.select_for_update().filter(pk=session.pk).first()
        if locked is None or not is_unknown(locked):
            outcome = Outcome.UNCHANGED
        elif len(found) == 1:
            [adopted] = found
            outcome = _adopt(locked, adopted, entries, alias=alias)
        elif found:
            _flag(
                locked,
                Reason.AMBIGUOUS_ORDER,
                f"{len(found)} ETpay sessions have this order, amount and time; "
                "staff decide which, if any, is this one.",
                entries,
                alias=alias,
            )
            outcome = Outcome.STAFF
        elif window_closed(locked):
            _flag(
                locked,
                Reason.NO_MATCHING_SESSION,
                f"ETpay lists no session that could be this one ({len(entries)} entries for "
                "this order id) and the time to pay is over; staff decide.",
                entries,
                alias=alias,
            )
            outcome = Outcome.STAFF
        else:
            _record(
                locked,
                reason=Reason.UNKNOWN_TO_ETPAY,
                detail=f"ETpay lists no session that could be this one yet ({len(entries)} "
                "entries for this order id); asked again later.",
                entries=entries,
                using=alias,
            )
            outcome = Outcome.UNKNOWN
    if adopted and outcome == Outcome.UNCHANGED:
        outcome = _apply(session)
    session.refresh_from_db(using=alias)
    return outcome


def _adopt(
    locked: PaymentSession, token: str, entries: Sequence[Mapping[str, Any]], *, alias: str
) -> str:
    """Give ``locked`` (the row, locked) ETpay's session ``token``; ``staff`` when another row
    took that token meanwhile. The entries are applied after the lock is released."""
    before = locked.status
    try:
        with transaction.atomic(using=alias):
            rows = PaymentSession.objects.using(alias).filter(pk=locked.pk)
            rows.update(
                token=token,
                status=Status.PENDING,
                outcome_unknown=False,
                needs_reconciliation=True,
                updated_at=timezone.now(),
            )
    except IntegrityError:
        _flag(
            locked,
            Reason.AMBIGUOUS_ORDER,
            "The one ETpay session matching this row belongs to another row now; staff decide.",
            entries,
            alias=alias,
        )
        return Outcome.STAFF
    locked.token, locked.status, locked.outcome_unknown = token, Status.PENDING, False
    _record(
        locked,
        reason=Reason.SESSION_ADOPTED,
        detail="ETpay's session for this order, amount and time was found by the status query "
        "by order id and adopted.",
        entries=[e for e in entries if e.get("session_token") == token],
        using=alias,
        status_before=before,
    )
    logger.info("ETpay session of %s found by order id and adopted", locked.pk)
    return Outcome.UNCHANGED


def _apply(session: PaymentSession) -> str:
    """Ask ETpay about the adopted session by its token and apply the answer.

    The same status query and pipeline as every other session's, so that nothing about
    results is decided here; should this call fail, the adopted session stays flagged
    ``needs_reconciliation`` and the next run settles it.
    """
    session.refresh_from_db(using=write_alias())
    return operations.classify(reconcile_session(session))


def _flag(
    locked: PaymentSession,
    reason: str,
    detail: str,
    entries: Sequence[Mapping[str, Any]],
    *,
    alias: str,
) -> None:
    PaymentSession.objects.using(alias).filter(pk=locked.pk).update(
        needs_staff_decision=True, needs_reconciliation=True, updated_at=timezone.now()
    )
    locked.needs_staff_decision = True
    _record(locked, reason=reason, detail=detail, entries=entries, using=alias)
    logger.warning("ETpay session %s needs a staff decision: %s", locked.pk, detail)


def reconcile_unknown(session: PaymentSession) -> tuple[str, str]:
    """:func:`settle_unknown` for the batch job: ``(outcome, error message)``.

    ``last_checked_at`` is stamped when ETpay answered, so the next run waits
    ``RECONCILE_INTERVAL``; a failed call is not stamped and is retried next run.
    """
    try:
        outcome = settle_unknown(session)
    except (EtpayAPIError, EtpayConfigurationError) as err:
        logger.warning("Status query by order id for ETpay session %s failed: %s", session.pk, err)
        return Outcome.ERROR, f"{session.pk}: {err}"
    PaymentSession.objects.using(write_alias()).filter(pk=session.pk).update(
        last_checked_at=timezone.now()
    )
    return outcome, ""


# -- staff decisions --------------------------------------------------------------------------


def _decided(session: PaymentSession, detail: str, *, alias: str, before: str) -> None:
    from django_etpay.records import new_notification

    new_notification(
        session=session,
        channel=Notification.Channel.POLL,
        outcome=Notification.Outcome.DUPLICATE,
        reason=Reason.STAFF_DECISION,
        detail=detail,
        result=Notification.Result.UNKNOWN,
        status_before=before,
        status_after=session.status,
        claims=None,
        raw_body="",
        remote_addr=None,
        system_error=False,
    ).save(using=alias)


def _user_label(user: Any) -> str:
    return str(getattr(user, "get_username", lambda: "")() or "staff") if user else "staff"


def close_unknown(session: PaymentSession, *, user: Any = None) -> bool:
    """Staff decide that ETpay's session for ``session``, if any, was not paid.

    The row stays ``error``; its outcome is known from now on (``outcome_unknown``, the
    reconciliation flag and the staff flag are cleared) and a ``staff_decision`` record says
    who decided. Returns False (nothing done) for a row that has a token or whose outcome is
    not unknown.
    """
    alias = write_alias()
    with transaction.atomic(using=alias):
        locked = (
            PaymentSession.objects.using(alias)
            .select_for_update()
            .filter(pk=session.pk, token__isnull=True, outcome_unknown=True)
            .first()
        )
        if locked is None:
            return False
        PaymentSession.objects.using(alias).filter(pk=locked.pk).update(
            outcome_unknown=False,
            needs_reconciliation=False,
            needs_staff_decision=False,
            updated_at=timezone.now(),
        )
        _decided(
            locked,
            f"Closed as not paid by {_user_label(user)}.",
            alias=alias,
            before=locked.status,
        )
    session.refresh_from_db(using=alias)
    logger.info("ETpay session %s closed as not paid by staff", session.pk)
    return True


def ask_again(session: PaymentSession) -> bool:
    """Send a row flagged for staff back to the automatic runs (e.g. once the other row of the
    same order is settled); False when it was not flagged or has a token."""
    alias = write_alias()
    changed = (
        PaymentSession.objects.using(alias)
        .filter(pk=session.pk, needs_staff_decision=True, token__isnull=True)
        .update(needs_staff_decision=False, last_checked_at=None, updated_at=timezone.now())
    )
    session.refresh_from_db(using=alias)
    return bool(changed)


def adopt_session(session: PaymentSession, session_token: str, *, user: Any = None) -> str:
    """Staff decide that ETpay's session ``session_token`` is ``session``'s; an
    :class:`~django_etpay.operations.Outcome` value.

    ETpay is asked again by order id: the token must be among its sessions for this order,
    with this amount and currency, and held by no other row, else ``ValueError``. Then it is
    adopted and its entries applied as :func:`settle_unknown` does.
    """
    alias = write_alias()
    entries = _ask(session)
    if session_token not in candidates(session, entries, using=alias):
        raise ValueError(
            "ETpay lists no session with that token for this order, amount and currency that "
            "another row does not hold."
        )
    with transaction.atomic(using=alias):
        locked = (
            PaymentSession.objects.using(alias)
            .select_for_update()
            .filter(pk=session.pk, token__isnull=True, outcome_unknown=True)
            .first()
        )
        if locked is None:
            raise ValueError("The session's outcome is not unknown any more.")
        before = locked.status
        locked.needs_staff_decision = False
        outcome = _adopt(locked, session_token, entries, alias=alias)
        if outcome == Outcome.STAFF:
            raise ValueError("Another row holds that ETpay session now.")
        PaymentSession.objects.using(alias).filter(pk=locked.pk).update(needs_staff_decision=False)
        _decided(
            locked, f"ETpay session adopted by {_user_label(user)}.", alias=alias, before=before
        )
    outcome = _apply(session)
    session.refresh_from_db(using=alias)
    return outcome
