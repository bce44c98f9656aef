"""The operational jobs: reconcile, expire, purge.

One implementation each, shared by the management commands (``etpay_reconcile``,
``etpay_expire``, ``etpay_purge``), the tasks in :mod:`django_etpay.tasks` and the admin
actions. Every job works in batches keyed on the primary key, so memory stays bounded however
many rows are due, and commits as it goes, so it can be interrupted at any point and run again:
a rerun picks up what is left and never repeats what was finished.

Over 500 lines because the three jobs share their batching, summaries and translated reports;
each job is its own section (reconcile, expire, purge).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_duration as django_parse_duration
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from django_etpay import conf, observability, outbox
from django_etpay.dispatch import write_alias
from django_etpay.exceptions import EtpayAPIError, EtpayConfigurationError, EtpayHTTPError
from django_etpay.models import Notification, OutboxEffect, PaymentSession
from django_etpay.pacing import Pacer, backoff_delay, should_retry
from django_etpay.pipeline import reconcile_session

logger = logging.getLogger("django_etpay")

Status = PaymentSession.Status


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``"90m"``, ``"2h"``, ``"7d"``, ``"45s"``, plain seconds, or Django's own formats
    (``"1:30:00"``, ``"P1D"``). ``ValueError`` for anything else or a negative duration."""
    value = text.strip().lower()
    if not value:
        raise ValueError("An empty duration; give one such as 30m, 2h or 7d.")
    number, unit = value[:-1], value[-1:]
    result: timedelta | None
    if unit in _UNITS and number.replace(".", "", 1).isdigit():
        result = timedelta(seconds=float(number) * _UNITS[unit])
    elif value.replace(".", "", 1).isdigit():
        result = timedelta(seconds=float(value))
    else:
        result = django_parse_duration(text.strip())
    if result is None or result < timedelta(0):
        raise ValueError(f"{text!r} is not a duration such as 30m, 2h or 7d.")
    return result


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` (the second of four shards) as ``(2, 4)``. ``ValueError`` for anything else:
    both numbers whole, ``1 <= K <= N``."""
    number, slash, count = text.strip().partition("/")
    if slash and number.strip().isdigit() and count.strip().isdigit():
        shard = (int(number), int(count))
        if 1 <= shard[0] <= shard[1]:
            return shard
    raise ValueError(f"{text!r} is not a shard such as 1/4 (the first of four, K from 1 to N).")


# -- reconcile --------------------------------------------------------------------------------


class Outcome:
    """What one status query did to one session."""

    PAID = "paid"
    FAILED = "failed"
    UNCHANGED = "unchanged"
    UNKNOWN = "unknown"
    REJECTED = "rejected"
    ERROR = "error"
    #: A session whose creation outcome is unknown, left for staff (see django_etpay.unknown).
    STAFF = "staff"

    ALL = (PAID, FAILED, UNCHANGED, UNKNOWN, REJECTED, ERROR, STAFF)


def _part(outcome: str, count: int) -> str:
    if outcome == Outcome.PAID:
        text = ngettext("%(count)d now paid", "%(count)d now paid", count)
    elif outcome == Outcome.FAILED:
        text = ngettext("%(count)d now failed", "%(count)d now failed", count)
    elif outcome == Outcome.UNCHANGED:
        text = ngettext("%(count)d unchanged", "%(count)d unchanged", count)
    elif outcome == Outcome.UNKNOWN:
        text = ngettext("%(count)d unknown to ETpay", "%(count)d unknown to ETpay", count)
    elif outcome == Outcome.REJECTED:
        text = ngettext(
            "%(count)d answer rejected (mismatch)", "%(count)d answers rejected (mismatch)", count
        )
    elif outcome == Outcome.STAFF:
        text = ngettext(
            "%(count)d left for a staff decision", "%(count)d left for a staff decision", count
        )
    else:
        text = ngettext("%(count)d failed to ask", "%(count)d failed to ask", count)
    return text % {"count": count}


@dataclass
class ReconcileSummary:
    """Counts of one reconcile run, by outcome, and what the outbox recovery did."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Outcome.ALL, 0))
    effects: outbox.DeliveryReport = field(default_factory=outbox.DeliveryReport)
    errors: list[str] = field(default_factory=list)
    stopped: str = ""

    #: Error messages kept for the report; the rest are only counted.
    MAX_ERRORS_KEPT = 10

    @property
    def checked(self) -> int:
        """Sessions ETpay was asked about (errors included)."""
        return sum(self.counts.values())

    def add(self, outcome: str, error: str = "") -> None:
        """Count one session's outcome."""
        self.counts[outcome] += 1
        if error and len(self.errors) < self.MAX_ERRORS_KEPT:
            self.errors.append(error)

    def parts(self, *, include_zero: bool) -> list[str]:
        """One translated phrase per outcome ("2 now paid")."""
        always = (Outcome.PAID, Outcome.FAILED, Outcome.UNCHANGED, Outcome.UNKNOWN, Outcome.ERROR)
        return [
            _part(outcome, count)
            for outcome, count in self.counts.items()
            if count or (include_zero and outcome in always)
        ]

    def describe(self, *, include_zero: bool = True) -> str:
        """One line for people: "Checked 5 sessions: 2 now paid, ..., 1 failed to ask."."""
        text = ngettext(
            "Checked %(count)d session with ETpay",
            "Checked %(count)d sessions with ETpay",
            self.checked,
        ) % {"count": self.checked}
        parts = self.parts(include_zero=include_zero)
        if parts:
            text += ": " + ", ".join(parts)
        text += "."
        effects = self.effects
        if effects.delivered or effects.failed or effects.gave_up:
            text += (
                " "
                + _(
                    "Effects delivered again: %(delivered)d, still failing: %(failed)d, "
                    "given up: %(gave_up)d."
                )
                % effects.as_dict()
            )
        if self.stopped:
            text += " " + self.stopped
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (task results)."""
        return {
            "checked": self.checked,
            **self.counts,
            "effects": self.effects.as_dict(),
            "errors": list(self.errors),
            "stopped": self.stopped,
        }


def classify(notifications: Iterable[Notification]) -> str:
    """The :class:`Outcome` of a status query, from the notifications it recorded."""
    records = list(notifications)
    accepted = {n.status_after for n in records if n.outcome == Notification.Outcome.ACCEPTED}
    if Status.PAID in accepted:
        return Outcome.PAID
    if Status.FAILED in accepted:
        return Outcome.FAILED
    if any(n.reason == Notification.Reason.UNKNOWN_TO_ETPAY for n in records):
        return Outcome.UNKNOWN
    if any(n.outcome == Notification.Outcome.REJECTED for n in records):
        return Outcome.REJECTED
    return Outcome.UNCHANGED


def reconcile_one(
    session: PaymentSession,
    *,
    retries: int = 0,
    pacer: Pacer | None = None,
) -> tuple[str, str]:
    """Ask ETpay about one session, apply the answer; return ``(outcome, error message)``.

    ``last_checked_at`` is stamped when ETpay answered, so the batch job leaves the session
    alone for ``RECONCILE_INTERVAL``; a failed call is not stamped and is retried next run.
    ``pacer`` (shared by the threads of a run) spaces the calls; a ``429`` or a 5xx is asked
    again up to ``retries`` times, after an exponential backoff or ETpay's ``Retry-After`` (a
    429 pauses every thread of the run), and counted as failed once they are used up.

    A session whose creation outcome is unknown (no token) is asked about by order id
    (:func:`django_etpay.unknown.reconcile_unknown`).
    """
    from django_etpay import unknown  # it builds on this module

    if unknown.is_unknown(session):
        return unknown.reconcile_unknown(session)
    attempt = 0
    while True:
        if pacer is not None:
            pacer.acquire()
        try:
            notifications = reconcile_session(session, stamp=True, refresh=False)
            break
        except (EtpayAPIError, EtpayConfigurationError) as err:
            http_error = err if isinstance(err, EtpayHTTPError) else None
            delay = None
            if http_error is not None and should_retry(http_error) and attempt < retries:
                delay = backoff_delay(attempt, http_error.retry_after)
            if http_error is None or delay is None:
                logger.warning("Status query for ETpay session %s failed: %s", session.pk, err)
                return Outcome.ERROR, f"{session.pk}: {err}"
            logger.info(
                "ETpay answered HTTP %s for session %s; asking again in %.1f s",
                http_error.status_code,
                session.pk,
                delay,
            )
            attempt += 1
            if pacer is None:
                time.sleep(delay)
            elif http_error.status_code == 429:
                pacer.pause(delay)  # the next acquire() waits, with every other thread
            else:
                pacer.sleep(delay)
    return classify(notifications), ""


def reconcile_many(sessions: Iterable[PaymentSession]) -> ReconcileSummary:
    """Reconcile the given sessions one by one (the admin action); no outbox recovery."""
    summary = ReconcileSummary()
    for session in sessions:
        summary.add(*reconcile_one(session))
    return summary


def due_sessions(
    *,
    older_than: timedelta | None = None,
    max_age: timedelta | None = None,
    merchant: str | None = None,
    now: datetime | None = None,
    shard: tuple[int, int] | None = None,
) -> QuerySet[PaymentSession]:
    """Sessions a status query should look at now.

    Those with a token that are ``pending`` for longer than ``older_than`` (default
    ``SESSION_TTL``) or flagged ``needs_reconciliation``, that are younger than ``max_age``
    (default ``RECONCILE_MAX_AGE``; ``timedelta(0)`` means any age), and those whose creation
    outcome is unknown, whatever their age, until ETpay's answer settles them or leaves them
    to staff (:mod:`django_etpay.unknown`); all of them not asked about within
    ``RECONCILE_INTERVAL``. ``merchant`` restricts to one alias ("" for the default account).
    ``shard=(K, N)`` keeps the sessions whose primary key divided by ``N`` leaves ``K - 1``:
    ``N`` runs, one per shard, share the due sessions without overlap (see
    :func:`parse_shard`).
    """
    from django_etpay.unknown import unknown_filter

    now = now or timezone.now()
    age = older_than if older_than is not None else conf.get_duration("SESSION_TTL")
    interval = conf.get_duration("RECONCILE_INTERVAL")
    known = Q(token__isnull=False) & (
        Q(status=Status.PENDING, created_at__lt=now - age) | Q(needs_reconciliation=True)
    )
    if max_age is None and conf.get_setting("RECONCILE_MAX_AGE") is not None:
        max_age = conf.get_duration("RECONCILE_MAX_AGE")
    if max_age:
        known &= Q(created_at__gte=now - max_age)
    due = PaymentSession.objects.filter(known | unknown_filter())
    due = due.filter(Q(last_checked_at__isnull=True) | Q(last_checked_at__lt=now - interval))
    if merchant is not None:
        due = due.filter(merchant=merchant)
    if shard is not None:
        number, count = shard
        if not 1 <= number <= count:
            raise ValueError(f"shard {number}/{count}: K must be from 1 to N.")
        # Disjoint and complete whatever the keys: every integer has one remainder.
        due = due.alias(etpay_shard=F("pk") % count).filter(etpay_shard=number - 1)
    return due


def reconcile_due(
    *,
    older_than: timedelta | None = None,
    max_age: timedelta | None = None,
    merchant: str | None = None,
    batch_size: int = 100,
    limit: int | None = None,
    max_consecutive_errors: int = 20,
    deliver_effects: bool = True,
    summary: ReconcileSummary | None = None,
    progress: Callable[[ReconcileSummary], None] | None = None,
    concurrency: int | None = None,
    max_per_second: float | None = None,
    retries: int | None = None,
    pacer: Pacer | None = None,
    shard: tuple[int, int] | None = None,
) -> ReconcileSummary:
    """Deliver overdue outbox effects, then reconcile every due session, in batches.

    Interrupt it at any point and run it again: each session's answer is committed as it is
    applied, and a session already asked about is not due again for ``RECONCILE_INTERVAL``.
    Pass ``summary`` to keep the counts of an interrupted run. The run stops early after
    ``max_consecutive_errors`` failed calls in a row (ETpay is down: no use asking for every
    session); the summary says so.

    ``concurrency`` (default ``RECONCILE_CONCURRENCY``) threads ask ETpay at once, each with
    its own database connection, closed when it is done; the due sessions are read in
    batches of ``batch_size`` (keyset pagination) and handed over through a queue of at most
    twice ``concurrency`` sessions, so memory does not grow with the number due. At 1 the
    run stays in the calling thread. ``max_per_second`` (default
    ``RECONCILE_MAX_PER_SECOND``; ``None``: no limit) caps the calls of all threads together
    (or pass a :class:`~django_etpay.pacing.Pacer` of your own). A 429 or a 5xx is asked
    again up to ``retries`` (default ``RECONCILE_RETRIES``) times (see :func:`reconcile_one`).
    ``progress`` is called after each session, from the thread that asked, one at a time.
    ``shard=(K, N)`` asks only about the K-th of N disjoint shares of the due sessions (see
    :func:`due_sessions`), so that N processes, on one machine or several, share a backlog;
    each also re-delivers overdue effects, which their claims keep to one delivery.
    """
    summary = summary if summary is not None else ReconcileSummary()
    if concurrency is None:
        concurrency = int(conf.get_setting("RECONCILE_CONCURRENCY"))
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1.")
    if max_per_second is None:
        max_per_second = conf.get_setting("RECONCILE_MAX_PER_SECOND")
    if retries is None:
        retries = int(conf.get_setting("RECONCILE_RETRIES"))
    if pacer is None:
        pacer = Pacer(float(max_per_second) if max_per_second else None)
    if concurrency > int(conf.get_setting("POOL_SIZE")):
        logger.warning(
            'etpay reconcile: concurrency %d is above ETPAY["POOL_SIZE"] (%s): the connections '
            "beyond it are opened and closed for every call",
            concurrency,
            conf.get_setting("POOL_SIZE"),
        )
    if deliver_effects:
        summary.effects = outbox.deliver_due()
    queryset = due_sessions(older_than=older_than, max_age=max_age, merchant=merchant, shard=shard)
    run = _ReconcileRun(summary, progress=progress, max_consecutive_errors=max_consecutive_errors)
    sessions = _stream_due(queryset, batch_size=batch_size, limit=limit, stop=run.stopped)

    def ask(session: PaymentSession) -> None:
        run.record(*reconcile_one(session, retries=retries, pacer=pacer))

    if concurrency == 1:
        for session in sessions:
            ask(session)
    else:
        _in_threads(sessions, ask, concurrency=concurrency, stop=run.stopped)
    if not summary.stopped:
        logger.info("etpay reconcile: %s", summary.describe())
    return summary


class _ReconcileRun:
    """The counts of one run, updated by its threads one at a time, and whether to stop."""

    def __init__(
        self,
        summary: ReconcileSummary,
        *,
        progress: Callable[[ReconcileSummary], None] | None,
        max_consecutive_errors: int,
    ) -> None:
        self.summary = summary
        self.progress = progress
        self.max_consecutive_errors = max_consecutive_errors
        self.errors_in_a_row = 0
        self.stopped = threading.Event()
        self._lock = threading.Lock()

    def record(self, outcome: str, error: str) -> None:
        with self._lock:
            self.summary.add(outcome, error)
            if self.stopped.is_set():
                return  # already in flight when the run stopped: counted, nothing more
            self.errors_in_a_row = self.errors_in_a_row + 1 if outcome == Outcome.ERROR else 0
            if self.progress is not None:
                self.progress(self.summary)
            limit = self.max_consecutive_errors
            if limit and self.errors_in_a_row >= limit and not self.stopped.is_set():
                self.summary.stopped = _(
                    "Stopped after %(count)d failed calls in a row; the rest is left for the "
                    "next run."
                ) % {"count": self.errors_in_a_row}
                logger.error(
                    "etpay reconcile stopped: %d failed calls in a row", self.errors_in_a_row
                )
                self.stopped.set()


def _stream_due(
    queryset: QuerySet[PaymentSession],
    *,
    batch_size: int,
    limit: int | None,
    stop: threading.Event,
) -> Iterator[PaymentSession]:
    """The due sessions in primary-key order, read ``batch_size`` at a time (keyset
    pagination: each batch starts after the last key of the one before, so no read holds
    more than a batch and none is slowed by an offset)."""
    last_pk = 0
    handed = 0
    while not stop.is_set() and (limit is None or handed < limit):
        size = batch_size if limit is None else min(batch_size, limit - handed)
        batch = list(queryset.filter(pk__gt=last_pk).order_by("pk")[:size])
        if not batch:
            return
        last_pk = batch[-1].pk
        for session in batch:
            if stop.is_set():
                return
            handed += 1
            yield session


_DONE = object()


def _in_threads(
    items: Iterable[PaymentSession],
    work: Callable[[PaymentSession], None],
    *,
    concurrency: int,
    stop: threading.Event,
) -> None:
    """Run ``work`` on every item with ``concurrency`` threads, at most that many at once.

    The calling thread reads the items and puts them on a queue of ``2 * concurrency``; it
    blocks while the queue is full, so no more than that waits in memory. Each thread takes
    items until it gets the end marker, then closes its database connections (a thread's
    connections are its own: nobody else would close them). Once ``stop`` is set, queued
    items are dropped unprocessed. An exception in ``work`` stops the run and is raised here.
    """
    work_queue: queue.Queue[Any] = queue.Queue(maxsize=2 * concurrency)
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            while (item := work_queue.get()) is not _DONE:
                if stop.is_set():
                    continue
                try:
                    work(item)
                except BaseException as err:
                    failures.append(err)
                    stop.set()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="etpay-reconcile") as pool:
        futures = [pool.submit(worker) for _ in range(concurrency)]
        try:
            for item in items:
                if stop.is_set():
                    break
                work_queue.put(item)
        except BaseException:
            stop.set()  # KeyboardInterrupt in the reading thread: let the workers drain
            raise
        finally:
            for _ in futures:
                work_queue.put(_DONE)
    for future in futures:
        future.result()
    if failures:
        raise failures[0]


# -- expire -----------------------------------------------------------------------------------


def expirable_sessions(older_than: timedelta | None = None) -> QuerySet[PaymentSession]:
    """Pending sessions older than ``older_than`` (default ``SESSION_TTL``)."""
    age = older_than if older_than is not None else conf.get_duration("SESSION_TTL")
    return PaymentSession.objects.filter(
        status=Status.PENDING, created_at__lt=timezone.now() - age
    )


def expire_sessions(
    older_than: timedelta | None = None,
    *,
    limit: int | None = None,
    ids: Iterable[int] | None = None,
) -> int:
    """Mark ``pending`` sessions created more than ``older_than`` ago as ``expired``.

    ``older_than`` defaults to ``ETPAY["SESSION_TTL"]``. Sessions locked by a result being
    processed at that moment are skipped (the next run sees them). ``session_expired`` is
    sent once per session after commit (through the outbox, so a crash does not lose it). A
    success that arrives later still marks an expired session paid. ``limit`` expires at most
    that many, oldest first, in one transaction (call again until it returns 0 to work in
    bounded batches); ``ids`` restricts it to those sessions. Returns how many were expired.
    Runs on the router's write database for the app's models, lock and transaction alike.
    """
    ttl: Any = older_than if older_than is not None else conf.get_setting("SESSION_TTL")
    if not isinstance(ttl, timedelta):
        ttl = timedelta(seconds=float(ttl))
    cutoff = timezone.now() - ttl
    alias = write_alias()
    candidates = PaymentSession.objects.using(alias).filter(
        status=PaymentSession.Status.PENDING, created_at__lt=cutoff
    )
    if ids is not None:
        candidates = candidates.filter(pk__in=list(ids))
    with transaction.atomic(using=alias):
        sessions = list(candidates.select_for_update(skip_locked=True).order_by("pk")[:limit])
        if not sessions:
            return 0
        now = timezone.now()
        PaymentSession.objects.using(alias).filter(pk__in=[s.pk for s in sessions]).update(
            status=PaymentSession.Status.EXPIRED, updated_at=now
        )
        for session in sessions:
            session.status = PaymentSession.Status.EXPIRED
            session.updated_at = now
        outbox.record_many(
            OutboxEffect.Kind.SESSION_EXPIRED,
            sessions,
            previous_status=PaymentSession.Status.PENDING,
            using=alias,
        )
    logger.info("Expired %d ETpay sessions pending since before %s", len(sessions), cutoff)
    observability.sessions_changed(sessions, before=PaymentSession.Status.PENDING, cause="expire")
    return len(sessions)


def expire_due(
    *,
    older_than: timedelta | None = None,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Expire every pending session older than ``older_than``, one transaction per batch.

    Uses :func:`expire_sessions`; interrupting it leaves the finished
    batches expired (with their ``session_expired`` effects) and the rest pending.
    """
    total = 0
    while True:
        expired = expire_sessions(older_than, limit=batch_size)
        if not expired:
            return total
        total += expired
        if progress is not None:
            progress(total)


# -- purge ------------------------------------------------------------------------------------

#: Claims that say nothing about the payer; every other claim is dropped by a purge (an
#: allow-list, so that a claim ETpay adds one day is not kept by mistake).
NON_PERSONAL_CLAIMS = frozenset(
    {
        "session_token",
        "merchant_code",
        "merchant_name",
        "merchant_order_id",
        "merchant_amount",
        "merchant_currency",
        "merchant_account_bank",
        "merchant_account_type",
        "merchant_account",
        "payment_token",
        "payment_status",
        "payment_process",
        "payment_date",
        "confirmated_at",
        "system_error",
        "code",
        "iat",
    }
)

#: Session fields that hold the payer's personal data.
PERSONAL_SESSION_FIELDS = (
    "customer_email",
    "user_rut",
    "customer_phone",
    "payer_rut",
    "payer_account",
)


@dataclass
class PurgeSummary:
    """Rows a purge cleaned (or, in a dry run, would clean)."""

    sessions: int = 0
    notifications: int = 0

    def as_dict(self) -> dict[str, int]:
        """JSON-ready (task results)."""
        return {"sessions": self.sessions, "notifications": self.notifications}

    def describe(self, *, dry_run: bool = False) -> str:
        """One line for people."""
        values = {"sessions": self.sessions, "notifications": self.notifications}
        if dry_run:
            return (
                _(
                    "Would purge personal data of %(sessions)d sessions and raw data of "
                    "%(notifications)d notifications."
                )
                % values
            )
        return (
            _(
                "Purged personal data of %(sessions)d sessions and raw data of "
                "%(notifications)d notifications."
            )
            % values
        )


def purge_age(days: int | None = None) -> timedelta:
    """``days`` as a timedelta, else ``PURGE_AFTER``; an error when neither is set."""
    if days is not None:
        if days < 1:
            raise ValueError("The purge age must be at least one day.")
        return timedelta(days=days)
    value = conf.get_setting("PURGE_AFTER")
    if value is None:
        raise EtpayConfigurationError(
            'Give the age (--days) or set ETPAY["PURGE_AFTER"] to purge personal data.'
        )
    return conf.get_duration("PURGE_AFTER")


def purgeable_sessions(cutoff: datetime) -> QuerySet[PaymentSession]:
    """Sessions created before ``cutoff`` not purged yet; pending ones wait (a late payment
    still writes the payer's details, so they are purged once they are settled)."""
    return PaymentSession.objects.filter(purged_at__isnull=True, created_at__lt=cutoff).exclude(
        status__in=[Status.INITIALIZING, Status.PENDING]
    )


def purgeable_notifications(cutoff: datetime) -> QuerySet[Notification]:
    """Notifications received before ``cutoff`` not purged yet."""
    return Notification.objects.filter(purged_at__isnull=True, created_at__lt=cutoff)


def scrub_claims(claims: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``claims`` without anything about the payer (see :data:`NON_PERSONAL_CLAIMS`)."""
    if not claims:
        return None if claims is None else {}
    return {key: value for key, value in claims.items() if key in NON_PERSONAL_CLAIMS}


def purge_personal_data(
    older_than: timedelta,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    progress: Callable[[PurgeSummary], None] | None = None,
) -> PurgeSummary:
    """Remove raw bodies and payer personal data older than ``older_than``.

    Sessions lose the payer's e-mail, RUTs and account; notifications lose their raw body,
    their sender's address and every claim that is not in :data:`NON_PERSONAL_CLAIMS`.
    Amounts, statuses, tokens, outcomes, reasons and timestamps stay: the audit trail is
    intact. Refunds stay whole (they are the books of money given back, and hold no payer
    data). Each batch is one transaction and marks its rows ``purged_at``, so a run can be
    interrupted and run again.
    """
    cutoff = timezone.now() - older_than
    summary = PurgeSummary()
    alias = write_alias()
    if dry_run:
        summary.sessions = purgeable_sessions(cutoff).using(alias).count()
        summary.notifications = purgeable_notifications(cutoff).using(alias).count()
        return summary
    last_pk = 0
    while True:
        pks = list(
            purgeable_sessions(cutoff)
            .using(alias)
            .filter(pk__gt=last_pk)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not pks:
            break
        last_pk = pks[-1]
        summary.sessions += (
            PaymentSession.objects.using(alias)
            .filter(pk__in=pks)
            .update(**dict.fromkeys(PERSONAL_SESSION_FIELDS, ""), purged_at=timezone.now())
        )
        if progress is not None:
            progress(summary)
    last_pk = 0
    while True:
        rows = list(
            purgeable_notifications(cutoff)
            .using(alias)
            .filter(pk__gt=last_pk)
            .order_by("pk")
            .only("pk", "claims")[:batch_size]
        )
        if not rows:
            break
        last_pk = rows[-1].pk
        now = timezone.now()
        for row in rows:
            row.claims = scrub_claims(row.claims)
            row.raw_body = ""
            row.raw_body_truncated = False
            row.remote_addr = None
            row.purged_at = now
        with transaction.atomic(using=alias):
            Notification.objects.using(alias).bulk_update(
                rows, ["claims", "raw_body", "raw_body_truncated", "remote_addr", "purged_at"]
            )
        summary.notifications += len(rows)
        if progress is not None:
            progress(summary)
    logger.info("etpay purge: %s", summary.describe())
    return summary
