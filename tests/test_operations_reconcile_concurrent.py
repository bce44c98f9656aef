"""Concurrent reconcile: bounded threads, a shared rate limit, backoff on 429 and 5xx.

ETpay is replaced by a requests transport (:class:`StatusTransport`) that counts the calls in
flight and answers each one from a script; the rate limit and the backoff are counted on a
fake clock, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.utils import format_datetime
from typing import Any
from unittest import mock

import pytest
import requests
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.utils import timezone
from requests.adapters import BaseAdapter

from django_etpay import client as client_module
from django_etpay import operations
from django_etpay.client import parse_retry_after
from django_etpay.exceptions import EtpayConnectionError, EtpayHTTPError
from django_etpay.models import Notification, PaymentSession
from django_etpay.pacing import BACKOFF_CAP, Pacer, backoff_delay, should_retry
from tests.factories import make_session, signal_mocks, status_entry

Status = PaymentSession.Status

#: How a scripted reply is given: (status, body, headers).
Reply = tuple[int, Any, dict[str, str]]


class StatusTransport(BaseAdapter):
    """ETpay's status API as a requests transport: counts calls (in flight, per token).

    ``script[token]`` is a list of replies used in turn (the last one repeats); a token
    without a script is answered ``paid`` when in ``paid``, else ``[]``. ``hold`` is called
    while a call is in flight (a barrier, to hold calls together).
    """

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.asked: Counter[str] = Counter()
        self.sessions: dict[str, PaymentSession] = {}
        self.paid: set[str] = set()
        self.script: dict[str, list[Reply]] = {}
        self.hold: Callable[[], None] | None = None

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        token = json.loads(request.body or b"{}")["session_token"]
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.asked[token] += 1
            attempt = self.asked[token]
        try:
            if self.hold is not None:
                self.hold()
            return self._reply(request, token, attempt)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _reply(self, request: requests.PreparedRequest, token: str, attempt: int) -> Any:
        if token in self.script:
            replies = self.script[token]
            status, body, headers = replies[min(attempt, len(replies)) - 1]
        elif token in self.paid:
            status, body, headers = 200, [status_entry(self.sessions[token])], {}
        else:
            status, body, headers = 200, [], {}
        content = json.dumps(body).encode()
        response = requests.Response()
        response.status_code = status
        response.headers.update({"Content-Type": "application/json", **headers})
        response.headers["Content-Length"] = str(len(content))
        response.raw = io.BytesIO(content)
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        """Nothing to close."""


@pytest.fixture
def transport() -> Iterator[StatusTransport]:
    fake = StatusTransport()
    client_module.set_default_transport(fake)
    try:
        yield fake
    finally:
        client_module.set_default_transport(None)


def due_sessions(transport: StatusTransport, count: int, *, paid_every: int = 0) -> list[int]:
    """``count`` sessions pending for two hours (due); every ``paid_every``-th one paid."""
    sessions = [make_session() for _ in range(count)]
    PaymentSession.objects.filter(pk__in=[s.pk for s in sessions]).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    for n, session in enumerate(sessions):
        transport.sessions[session.token or ""] = session
        if paid_every and n % paid_every == 0:
            transport.paid.add(session.token or "")
    return [s.pk for s in sessions]


class FakeClock:
    """A clock that records every sleep; it stands still unless ``advance`` (then a sleep
    moves it on by what was slept)."""

    def __init__(self, *, advance: bool = False) -> None:
        self.now = 0.0
        self.advance = advance
        self.slept: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)
            if self.advance:
                self.now += seconds


@pytest.fixture
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL; SQLite serialises them")


# -- the pacer, the backoff and Retry-After (no database) ----------------------------------------


def test_pacer_spaces_calls_by_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(10, clock=clock, sleep=clock.sleep)
    waits = [pacer.acquire() for _ in range(5)]
    # The clock stands still: each call is given the next slot, 0.1 s after the one before.
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert clock.slept == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_pacer_slot_free_again_once_time_has_passed() -> None:
    clock = FakeClock()
    pacer = Pacer(2, clock=clock, sleep=clock.sleep)
    assert pacer.acquire() == 0.0
    clock.now = 10.0  # long after the next slot
    assert pacer.acquire() == 0.0
    assert pacer.acquire() == pytest.approx(0.5)


def test_pacer_without_a_rate_waits_only_for_a_pause() -> None:
    clock = FakeClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    assert [pacer.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    pacer.pause(2.5)
    assert pacer.acquire() == pytest.approx(2.5)
    clock.now = 3.0
    assert pacer.acquire() == 0.0


def test_pacer_refuses_a_negative_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        Pacer(-1)


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after() -> None:
    assert [backoff_delay(n) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(20) == BACKOFF_CAP
    assert backoff_delay(0, retry_after=7.0) == 7.0
    assert backoff_delay(3, retry_after=0.0) == 0.0
    # Asked to wait longer than the cap: give up on this run rather than ask early.
    assert backoff_delay(0, retry_after=BACKOFF_CAP + 1) is None


def test_only_429_and_5xx_are_retried() -> None:
    assert should_retry(EtpayHTTPError("x", status_code=429))
    assert should_retry(EtpayHTTPError("x", status_code=503))
    assert not should_retry(EtpayHTTPError("x", status_code=401))
    assert not should_retry(EtpayHTTPError("x", status_code=404))
    assert not should_retry(EtpayConnectionError("x"))


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 3 ") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
    when = timezone.now() + timedelta(seconds=30)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=when.timestamp() - 30) == (
        pytest.approx(30.0, abs=1)
    )
    # A date in the past: no wait; far in the future: capped at a day.
    assert parse_retry_after("Mon, 01 Jan 2001 00:00:00 GMT") == 0.0
    assert parse_retry_after("99999999") == 86400.0


# -- backoff through reconcile (either database) -------------------------------------------------


@pytest.mark.django_db
def test_429_then_5xx_then_success(transport: StatusTransport) -> None:
    [pk] = due_sessions(transport, 1)
    session = PaymentSession.objects.get(pk=pk)
    transport.script[session.token or ""] = [
        (429, {"message": "slow down"}, {"Retry-After": "2"}),
        (503, {"message": "unavailable"}, {}),
        (200, [status_entry(session)], {}),
    ]
    clock = FakeClock(advance=True)
    summary = operations.reconcile_due(pacer=Pacer(None, clock=clock, sleep=clock.sleep))

    assert transport.asked[session.token or ""] == 3
    # The 429's Retry-After pauses the pacer (2 s); the 503 is the second retry: 0.5 * 2.
    assert clock.slept == pytest.approx([2.0, 1.0])
    assert summary.counts[operations.Outcome.PAID] == 1
    assert summary.counts[operations.Outcome.ERROR] == 0
    session.refresh_from_db()
    assert session.status == Status.PAID
    assert session.last_checked_at is not None


@pytest.mark.django_db
def test_retries_used_up_is_an_error_left_for_the_next_run(transport: StatusTransport) -> None:
    [pk] = due_sessions(transport, 1)
    session = PaymentSession.objects.get(pk=pk)
    transport.script[session.token or ""] = [(502, {"message": "bad gateway"}, {})]
    clock = FakeClock()
    summary = operations.reconcile_due(
        retries=2, pacer=Pacer(None, clock=clock, sleep=clock.sleep)
    )

    assert transport.asked[session.token or ""] == 3  # the first call and two retries
    assert clock.slept == pytest.approx([0.5, 1.0])
    assert summary.counts[operations.Outcome.ERROR] == 1
    assert "HTTP 502" in summary.errors[0]
    session.refresh_from_db()
    assert session.status == Status.PENDING
    assert session.last_checked_at is None  # due again next run


@pytest.mark.django_db
def test_a_retry_after_beyond_the_cap_is_not_waited_for(transport: StatusTransport) -> None:
    [pk] = due_sessions(transport, 1)
    token = PaymentSession.objects.get(pk=pk).token or ""
    transport.script[token] = [(429, {}, {"Retry-After": "3600"})]
    clock = FakeClock()
    summary = operations.reconcile_due(pacer=Pacer(None, clock=clock, sleep=clock.sleep))
    assert transport.asked[token] == 1
    assert clock.slept == []
    assert summary.counts[operations.Outcome.ERROR] == 1


@pytest.mark.django_db
def test_a_4xx_is_not_retried(transport: StatusTransport) -> None:
    [pk] = due_sessions(transport, 1)
    token = PaymentSession.objects.get(pk=pk).token or ""
    transport.script[token] = [(401, {"message": "bad token"}, {})]
    clock = FakeClock()
    summary = operations.reconcile_due(pacer=Pacer(None, clock=clock, sleep=clock.sleep))
    assert transport.asked[token] == 1
    assert summary.counts[operations.Outcome.ERROR] == 1


@pytest.mark.django_db
def test_rate_limit_in_one_thread(transport: StatusTransport) -> None:
    due_sessions(transport, 4)
    clock = FakeClock()
    operations.reconcile_due(pacer=Pacer(5, clock=clock, sleep=clock.sleep))
    assert sum(transport.asked.values()) == 4
    assert clock.slept == pytest.approx([0.2, 0.4, 0.6])


@pytest.mark.django_db
def test_settings_give_the_defaults(transport: StatusTransport, settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "RECONCILE_MAX_PER_SECOND": 4, "RECONCILE_RETRIES": 0}
    due_sessions(transport, 1)
    with mock.patch("django_etpay.operations.Pacer", wraps=Pacer) as built:
        operations.reconcile_due()
    built.assert_called_once_with(4.0)


@pytest.mark.django_db
def test_command_refuses_bad_concurrency_and_rate() -> None:
    with pytest.raises(CommandError, match="--concurrency"):
        call_command("etpay_reconcile", "--concurrency", "0", stdout=io.StringIO())
    with pytest.raises(CommandError, match="--max-per-second"):
        call_command("etpay_reconcile", "--max-per-second", "0", stdout=io.StringIO())
    with pytest.raises(ValueError, match="concurrency"):
        operations.reconcile_due(concurrency=0)


# -- threads (PostgreSQL: one connection per thread, committed data) -----------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_never_more_calls_in_flight_than_the_concurrency(
    transport: StatusTransport, postgres_only: None
) -> None:
    concurrency = 4
    due_sessions(transport, concurrency * 3)
    # Each call waits until `concurrency` calls are in flight together: a run with fewer
    # threads breaks the barrier (its calls fail), one with more shows a higher peak.
    barrier = threading.Barrier(concurrency)
    transport.hold = lambda: barrier.wait(timeout=10)

    summary = operations.reconcile_due(concurrency=concurrency, deliver_effects=False)

    assert transport.peak == concurrency
    assert summary.counts[operations.Outcome.ERROR] == 0
    assert summary.checked == concurrency * 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_every_due_session_processed_exactly_once(
    transport: StatusTransport, postgres_only: None
) -> None:
    pks = due_sessions(transport, 60, paid_every=3)
    with signal_mocks() as receivers:
        summary = operations.reconcile_due(concurrency=8, batch_size=7)

    assert set(transport.asked.values()) == {1}
    assert len(transport.asked) == 60
    assert summary.checked == 60
    assert summary.counts[operations.Outcome.PAID] == 20
    assert summary.counts[operations.Outcome.UNKNOWN] == 40
    assert receivers["payment_completed"].call_count == 20
    sessions = PaymentSession.objects.filter(pk__in=pks)
    assert sessions.filter(last_checked_at__isnull=True).count() == 0
    assert sessions.filter(status=Status.PAID).count() == 20


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_limit_and_rate_hold_across_threads(
    transport: StatusTransport, postgres_only: None
) -> None:
    due_sessions(transport, 12)
    clock = FakeClock()
    summary = operations.reconcile_due(
        concurrency=4, limit=8, pacer=Pacer(10, clock=clock, sleep=clock.sleep)
    )
    assert summary.checked == 8
    assert sum(transport.asked.values()) == 8
    # The clock stands still: eight calls got eight distinct slots, 0.1 s apart, whichever
    # thread took each.
    assert sorted(clock.slept) == pytest.approx([0.1 * n for n in range(1, 8)])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_worker_threads_close_their_connections(
    transport: StatusTransport, postgres_only: None
) -> None:
    due_sessions(transport, 20)
    opened: list[BaseDatabaseWrapper] = []
    main = threading.get_ident()

    def created(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
        if threading.get_ident() != main:
            opened.append(connection)  # a strong reference: only close() ends it

    connection_created.connect(created)
    try:
        operations.reconcile_due(concurrency=4)
    finally:
        connection_created.disconnect(created)

    assert opened  # the worker threads did open connections of their own
    assert [wrapper for wrapper in opened if wrapper.connection is not None] == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_transition_each_session_once(
    transport: StatusTransport, postgres_only: None
) -> None:
    pks = due_sessions(transport, 30, paid_every=2)
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            operations.reconcile_due(concurrency=4, deliver_effects=False)
        except BaseException as err:
            failures.append(err)
        finally:
            connection.close()

    with signal_mocks() as receivers:
        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    assert failures == []
    paid = PaymentSession.objects.filter(pk__in=pks, status=Status.PAID)
    assert paid.count() == 15
    accepted = Notification.objects.filter(session__in=paid, outcome=Notification.Outcome.ACCEPTED)
    assert sorted(accepted.values_list("session_id", flat=True)) == sorted(
        paid.values_list("pk", flat=True)
    )
    assert receivers["payment_completed"].call_count == 15


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_command_runs_concurrently_and_stops_on_errors(
    transport: StatusTransport, postgres_only: None, settings: Any
) -> None:
    settings.ETPAY = {**settings.ETPAY, "RECONCILE_RETRIES": 0}
    pks = due_sessions(transport, 40)
    for session in PaymentSession.objects.filter(pk__in=pks):
        transport.script[session.token or ""] = [(503, {"message": "down"}, {})]
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "etpay_reconcile",
            "--concurrency",
            "4",
            "--max-errors",
            "5",
            stdout=out,
            stderr=io.StringIO(),
        )
    assert "Stopped after 5 failed calls in a row" in out.getvalue()
    # The calls in flight when it stopped finish; nothing further is asked.
    assert 5 <= sum(transport.asked.values()) < 5 + 2 * 4 + 4
