"""etpay_reconcile, etpay_expire, etpay_check and etpay_purge, including interruption and rerun."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses as responses_lib
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_etpay import operations
from django_etpay.models import Notification, OutboxEffect, PaymentSession
from django_etpay.testing import FakeEtpay
from tests.factories import STATUS_URL, make_session

pytestmark = pytest.mark.django_db

Status = PaymentSession.Status


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def age(session: PaymentSession, delta: timedelta) -> None:
    PaymentSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - delta)


# -- etpay_reconcile --------------------------------------------------------------------------


def due_session(**fields: Any) -> PaymentSession:
    session = make_session(**fields)
    age(session, timedelta(hours=2))
    return session


def test_reconcile_summarises_every_outcome(
    fake_etpay: FakeEtpay,
    receivers: dict[str, mock.MagicMock],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.ETPAY = {**settings.ETPAY, "RECONCILE_RETRIES": 0}  # the 503 is asked once
    paid = due_session()
    failed = due_session()
    unknown = due_session()
    broken = due_session()
    flagged = make_session(status=Status.EXPIRED, needs_reconciliation=True)
    fresh = make_session()  # pending, but younger than SESSION_TTL: not due
    settled = make_session(status=Status.PAID)
    age(settled, timedelta(hours=2))
    fake_etpay.pay(paid)
    fake_etpay.reject(failed)
    fake_etpay.fail_next("status", status=503, session=broken)
    fake_etpay.pay(flagged)

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(CommandError, match="Some status queries failed") as raised,
    ):
        run("etpay_reconcile")
    assert raised.value.returncode == 1

    assert sorted(fake_etpay.status_queries) == sorted(
        s.token for s in (paid, failed, unknown, broken, flagged)
    )
    assert fresh.token not in fake_etpay.status_queries
    assert settled.token not in fake_etpay.status_queries
    statuses = dict(PaymentSession.objects.values_list("pk", "status"))
    assert statuses[paid.pk] == statuses[flagged.pk] == Status.PAID
    assert statuses[failed.pk] == Status.FAILED
    assert statuses[unknown.pk] == statuses[broken.pk] == Status.PENDING
    assert receivers["payment_completed"].call_count == 2
    assert receivers["payment_failed"].call_count == 1
    trace = Notification.objects.get(session=unknown)
    assert (trace.channel, trace.reason) == ("poll", Notification.Reason.UNKNOWN_TO_ETPAY)
    assert not Notification.objects.filter(session=broken).exists()


def test_reconcile_prints_a_one_line_summary(fake_etpay: FakeEtpay) -> None:
    paid, _unknown = due_session(), due_session()
    fake_etpay.pay(paid)
    output = run("etpay_reconcile")
    assert output.strip() == (
        "Checked 2 sessions with ETpay: 1 now paid, 0 now failed, 0 unchanged, "
        "1 unknown to ETpay, 0 failed to ask."
    )


def test_reconcile_is_idempotent_and_waits_for_the_interval(
    fake_etpay: FakeEtpay, settings: Any
) -> None:
    unknown = due_session()
    run("etpay_reconcile")
    run("etpay_reconcile")
    assert fake_etpay.status_queries == [unknown.token]  # asked once within RECONCILE_INTERVAL
    assert Notification.objects.filter(session=unknown).count() == 1
    settings.ETPAY = {**settings.ETPAY, "RECONCILE_INTERVAL": timedelta(0)}
    run("etpay_reconcile")
    assert fake_etpay.status_queries == [unknown.token, unknown.token]


def test_reconcile_interrupted_then_rerun_asks_each_session_once(
    fake_etpay: FakeEtpay,
    receivers: dict[str, mock.MagicMock],
    django_capture_on_commit_callbacks: Any,
) -> None:
    sessions = [due_session() for _ in range(7)]
    for session in sessions:
        fake_etpay.pay(session)
    # Ctrl-C while the 4th call is on the wire (the due sessions are asked in key order).
    fake_etpay.fail_next("status", error="interrupt", session=sessions[3])

    out = io.StringIO()
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(CommandError, match="Interrupted") as raised,
    ):
        call_command("etpay_reconcile", "--batch-size", "2", stdout=out)
    assert raised.value.returncode == 130
    assert "Checked 3 sessions with ETpay: 3 now paid" in out.getvalue()
    assert PaymentSession.objects.filter(status=Status.PAID).count() == 3

    with django_capture_on_commit_callbacks(execute=True):
        output = run("etpay_reconcile", "--batch-size", "2")
    assert "Checked 4 sessions with ETpay: 4 now paid" in output
    assert PaymentSession.objects.filter(status=Status.PAID).count() == 7
    # The interrupted session was asked twice (its call never returned); every other once,
    # and each session was paid, and announced, exactly once.
    assert len(fake_etpay.status_queries) == 8
    assert receivers["payment_completed"].call_count == 7
    assert Notification.objects.filter(outcome=Notification.Outcome.ACCEPTED).count() == 7


def test_reconcile_dry_run_asks_nothing(fake_etpay: FakeEtpay) -> None:
    session = due_session(merchant_order_id="OC-DRY")
    output = run("etpay_reconcile", "--dry-run", "-v", "2")
    assert "Sessions due for a status query: 1" in output
    assert "Effects due for delivery: 0" in output
    assert "OC-DRY" in output
    assert fake_etpay.status_queries == []
    session.refresh_from_db()
    assert session.last_checked_at is None


def test_reconcile_merchant_filter(fake_etpay: FakeEtpay, settings: Any) -> None:
    settings.ETPAY = {
        **settings.ETPAY,
        "MERCHANTS": {
            "outlet": {
                "MERCHANT_CODE": "cl_outlet",
                "MERCHANT_API_TOKEN": "outlet-token",
                "API_URL": "https://api.etpay.test",
                "PMT_URL": "https://pmt.outlet.test",
            }
        },
    }
    default = due_session()
    outlet = due_session(merchant="outlet")
    run("etpay_reconcile", "--merchant", "outlet")
    assert fake_etpay.status_queries == [outlet.token]
    run("etpay_reconcile", "--merchant=")
    assert fake_etpay.status_queries == [outlet.token, default.token]
    with pytest.raises(CommandError, match="Unknown merchant alias"):
        run("etpay_reconcile", "--merchant", "nope")


def test_reconcile_older_than_and_limit(fake_etpay: FakeEtpay) -> None:
    recent = make_session()
    age(recent, timedelta(minutes=20))
    run("etpay_reconcile", "--older-than", "30m")
    assert fake_etpay.status_queries == []
    others = [due_session() for _ in range(3)]
    run("etpay_reconcile", "--older-than", "10m", "--limit", "2")
    assert len(fake_etpay.status_queries) == 2
    run("etpay_reconcile", "--older-than", "10m")
    assert sorted(fake_etpay.status_queries) == sorted([recent.token, *(s.token for s in others)])


def test_reconcile_stops_when_etpay_keeps_failing(fake_etpay: FakeEtpay, settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "RECONCILE_RETRIES": 0}  # each 503 is asked once
    sessions = [due_session() for _ in range(6)]
    for session in sessions:
        fake_etpay.fail_next("status", status=503, session=session)
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("etpay_reconcile", "--max-errors", "3", stdout=out, stderr=io.StringIO())
    assert len(fake_etpay.status_queries) == 3
    assert "Stopped after 3 failed calls in a row" in out.getvalue()
    # Failed sessions are not stamped: the next run asks them again.
    assert not PaymentSession.objects.filter(last_checked_at__isnull=False).exists()


def test_reconcile_redelivers_overdue_effects(
    fake_etpay: FakeEtpay, receivers: dict[str, mock.MagicMock]
) -> None:
    # The recovery path delivers directly (no on-commit), so no callback capture is needed.
    session = make_session(status=Status.PAID)
    OutboxEffect.objects.create(
        kind=OutboxEffect.Kind.PAYMENT_COMPLETED,
        session=session,
        attempts=1,
        claim="dead-worker",
        lease_until=timezone.now() - timedelta(minutes=1),
    )
    output = run("etpay_reconcile")
    assert "Effects delivered again: 1, still failing: 0, given up: 0." in output
    receivers["payment_completed"].assert_called_once()
    assert run("etpay_reconcile").startswith("Checked 0 sessions")
    receivers["payment_completed"].assert_called_once()
    run("etpay_reconcile", "--no-effects")


def test_classify() -> None:
    def n(**fields: Any) -> Notification:
        return Notification(**fields)

    accepted = Notification.Outcome.ACCEPTED
    assert operations.classify([n(outcome=accepted, status_after="paid")]) == "paid"
    assert operations.classify([n(outcome=accepted, status_after="failed")]) == "failed"
    assert (
        operations.classify(
            [n(outcome=accepted, status_after="failed"), n(outcome=accepted, status_after="paid")]
        )
        == "paid"
    )
    assert operations.classify([n(outcome="duplicate", reason="unknown_to_etpay")]) == "unknown"
    assert operations.classify([n(outcome="rejected", reason="amount_mismatch")]) == "rejected"
    assert operations.classify([n(outcome="duplicate")]) == "unchanged"
    assert operations.classify([]) == "unchanged"


def test_parse_duration() -> None:
    assert operations.parse_duration("90m") == timedelta(minutes=90)
    assert operations.parse_duration("2h") == timedelta(hours=2)
    assert operations.parse_duration("7d") == timedelta(days=7)
    assert operations.parse_duration("45") == timedelta(seconds=45)
    assert operations.parse_duration("1:30:00") == timedelta(hours=1, minutes=30)
    for bad in ("soon", "-5m", "m", ""):
        with pytest.raises(ValueError, match="duration"):
            operations.parse_duration(bad)


# -- etpay_expire -----------------------------------------------------------------------------


def test_expire_in_batches_interrupted_and_rerun(
    receivers: dict[str, mock.MagicMock], django_capture_on_commit_callbacks: Any
) -> None:
    old = [due_session() for _ in range(5)]
    fresh = make_session()
    assert run("etpay_expire", "--dry-run").strip() == "Would expire 5 sessions."

    real = operations.expire_sessions
    calls = 0

    def interrupted(*args: Any, **kwargs: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = io.StringIO()
    with (
        mock.patch.object(operations, "expire_sessions", interrupted),
        pytest.raises(CommandError, match="Interrupted"),
    ):
        call_command("etpay_expire", "--batch-size", "2", stdout=out)
    assert "Expired 2 sessions before the interruption." in out.getvalue()
    assert PaymentSession.objects.filter(status=Status.EXPIRED).count() == 2

    with django_capture_on_commit_callbacks(execute=True):
        assert run("etpay_expire", "--batch-size", "2").strip() == "Expired 3 sessions."
    assert set(
        PaymentSession.objects.filter(pk__in=[s.pk for s in old]).values_list("status", flat=True)
    ) == {Status.EXPIRED}
    fresh.refresh_from_db()
    assert fresh.status == Status.PENDING
    assert OutboxEffect.objects.filter(kind="session_expired").count() == 5
    assert run("etpay_expire").strip() == "Expired 0 sessions."


def test_expire_older_than() -> None:
    session = make_session()
    age(session, timedelta(minutes=20))
    assert run("etpay_expire", "--older-than", "30m").strip() == "Expired 0 sessions."
    assert run("etpay_expire", "--older-than", "10m").strip() == "Expired 1 sessions."


# -- etpay_purge ------------------------------------------------------------------------------


def purge_fixture() -> tuple[PaymentSession, Notification, PaymentSession, PaymentSession]:
    old = make_session(
        status=Status.PAID,
        customer_email="payer@example.com",
        user_rut="12345678-5",
        payer_rut="111111111",
        payer_account="Cuenta Corriente 12345678",
        payer_bank="Banco de prueba",
        payment_token="pay-old",
    )
    note = Notification.objects.create(
        session=old,
        channel=Notification.Channel.WEBHOOK,
        outcome=Notification.Outcome.ACCEPTED,
        result=Notification.Result.SUCCESS,
        payment_token="pay-old",
        status_before="pending",
        status_after="paid",
        raw_body='{"payment": "a.b.c"}',
        remote_addr="203.0.113.9",
        claims={
            "merchant_order_id": old.merchant_order_id,
            "merchant_amount": 50000,
            "payment_status": True,
            "user_rut": "111111111",
            "user_account": "Cuenta Corriente 12345678",
            "user_bank": "Banco de prueba",
            "something_new": "unknown claims are not kept",
        },
    )
    stuck = make_session(customer_email="stuck@example.com")  # still pending: left alone
    recent = make_session(status=Status.PAID, customer_email="recent@example.com")
    for session in (old, stuck):
        age(session, timedelta(days=40))
    Notification.objects.filter(pk=note.pk).update(created_at=timezone.now() - timedelta(days=40))
    return old, note, stuck, recent


def test_purge_removes_personal_data_and_keeps_the_audit_trail() -> None:
    old, note, stuck, recent = purge_fixture()
    assert run("etpay_purge", "--days", "30", "--dry-run").strip() == (
        "Would purge personal data of 1 sessions and raw data of 1 notifications."
    )
    old.refresh_from_db()
    assert old.payer_rut == "111111111"  # a dry run changes nothing

    assert run("etpay_purge", "--days", "30").strip() == (
        "Purged personal data of 1 sessions and raw data of 1 notifications."
    )
    old.refresh_from_db()
    note.refresh_from_db()
    assert (old.customer_email, old.user_rut, old.payer_rut, old.payer_account) == ("",) * 4
    assert old.purged_at is not None
    # What the audit needs stays.
    assert (old.order_amount, old.status, old.payment_token) == (50000, Status.PAID, "pay-old")
    assert old.payer_bank == "Banco de prueba"
    assert (note.raw_body, note.remote_addr, note.purged_at is not None) == ("", None, True)
    assert note.claims == {
        "merchant_order_id": old.merchant_order_id,
        "merchant_amount": 50000,
        "payment_status": True,
    }
    assert (note.outcome, note.status_before, note.status_after, note.payment_token) == (
        "accepted",
        "pending",
        "paid",
        "pay-old",
    )
    stuck.refresh_from_db()
    recent.refresh_from_db()
    assert stuck.customer_email == "stuck@example.com"
    assert recent.customer_email == "recent@example.com"
    # A rerun finds nothing left to do.
    assert run("etpay_purge", "--days", "30").strip() == (
        "Purged personal data of 0 sessions and raw data of 0 notifications."
    )


def test_purge_interrupted_then_rerun(monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = [make_session(status=Status.PAID, payer_rut="111111111") for _ in range(5)]
    PaymentSession.objects.update(created_at=timezone.now() - timedelta(days=40))
    batches = 0

    def progress_interrupt(summary: operations.PurgeSummary) -> None:
        nonlocal batches
        batches += 1
        if batches == 2:
            raise KeyboardInterrupt

    real_purge = operations.purge_personal_data

    def purge(*args: Any, **kwargs: Any) -> operations.PurgeSummary:
        kwargs["progress"] = progress_interrupt
        return real_purge(*args, **kwargs)

    monkeypatch.setattr(operations, "purge_personal_data", purge)
    with pytest.raises(CommandError, match="Interrupted"):
        run("etpay_purge", "--days", "30", "--batch-size", "2")
    assert PaymentSession.objects.filter(purged_at__isnull=False).count() == 4
    monkeypatch.setattr(operations, "purge_personal_data", real_purge)
    assert "1 sessions" in run("etpay_purge", "--days", "30", "--batch-size", "2")
    assert set(
        PaymentSession.objects.filter(pk__in=[s.pk for s in sessions]).values_list(
            "payer_rut", flat=True
        )
    ) == {""}


def test_purge_needs_an_age(settings: Any) -> None:
    with pytest.raises(CommandError, match="PURGE_AFTER"):
        run("etpay_purge")
    with pytest.raises(CommandError, match="at least one day"):
        run("etpay_purge", "--days", "0")
    settings.ETPAY = {**settings.ETPAY, "PURGE_AFTER": timedelta(days=30)}
    _old, _note, _stuck, _recent = purge_fixture()
    assert "1 sessions" in run("etpay_purge")


# -- etpay_check ------------------------------------------------------------------------------


def test_check_offline_lists_every_account(settings: Any) -> None:
    settings.ETPAY = {
        **settings.ETPAY,
        "MERCHANTS": {
            "outlet": {
                "MERCHANT_CODE": "cl_outlet",
                "MERCHANT_API_TOKEN": "outlet-secret-token",
                "API_URL": "https://api.outlet.test",
                "PMT_URL": "https://pmt.outlet.test",
            }
        },
    }
    output = run("etpay_check", "--offline")
    assert "ok   default account (cl_sandbox_tests, sandbox, https://api.etpay.test)" in output
    assert "ok   merchant 'outlet' (cl_outlet, sandbox, https://api.outlet.test)" in output
    assert "outlet-secret-token" not in output
    assert settings.TEST_MERCHANT_API_TOKEN not in output


def test_check_asks_etpay_without_creating_anything(
    mocked_responses: responses_lib.RequestsMock, settings: Any
) -> None:
    call = mocked_responses.post(STATUS_URL, json=[])
    output = run("etpay_check")
    assert "status API answered" in output
    assert output.rstrip().endswith("ETpay configuration OK.")
    [request] = call.calls
    body = json.loads(request.request.body)
    assert body["session_token"].startswith("etpay-check-")
    assert body["merchant_api_token"] == settings.TEST_MERCHANT_API_TOKEN
    assert not PaymentSession.objects.exists()
    assert len(mocked_responses.calls) == 1  # no /session/initialize


def test_check_reports_refused_credentials(mocked_responses: responses_lib.RequestsMock) -> None:
    mocked_responses.post(STATUS_URL, status=401, json={"message": "Invalid credentials"})
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command("etpay_check", stdout=out)
    assert "FAIL default account" in out.getvalue()
    assert "refused the credentials" in out.getvalue()


def test_check_reports_unreachable_api_and_missing_credentials(
    mocked_responses: responses_lib.RequestsMock, settings: Any
) -> None:
    settings.ETPAY = {
        **settings.ETPAY,
        "MERCHANTS": {"broken": {"MERCHANT_CODE": "cl_broken"}},
    }
    mocked_responses.post(STATUS_URL, status=502, body="bad gateway")
    out = io.StringIO()
    with pytest.raises(CommandError, match="problem"):
        call_command("etpay_check", stdout=out)
    text = out.getvalue()
    assert "FAIL default account" in text
    assert "FAIL merchant 'broken'" in text
    assert 'ETPAY["MERCHANTS"][\'broken\']["MERCHANT_API_TOKEN"]' in text
    assert "ERROR django_etpay.E001" in text


class Terminal(io.StringIO):
    """An output that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_reconcile_shows_progress_on_a_terminal_only(fake_etpay: FakeEtpay) -> None:
    for _ in range(12):
        due_session()
    terminal = Terminal()
    call_command("etpay_reconcile", stdout=terminal, stderr=io.StringIO())
    shown = terminal.getvalue()
    assert "\r10/12 " in shown
    assert "\r12/12 " in shown
    assert shown.rstrip().endswith("12 unknown to ETpay, 0 failed to ask.")
    plain = run("etpay_reconcile", "--older-than", "0")
    assert "\r" not in plain


def test_reconcile_leaves_sessions_past_the_max_age_alone(
    fake_etpay: FakeEtpay, settings: Any
) -> None:
    recent = make_session(status=Status.EXPIRED, needs_reconciliation=True)
    ancient = make_session(status=Status.EXPIRED, needs_reconciliation=True)
    age(ancient, timedelta(days=31))
    run("etpay_reconcile")
    assert fake_etpay.status_queries == [recent.token]  # RECONCILE_MAX_AGE is 30 days by default
    run("etpay_reconcile", "--max-age", "0")
    assert fake_etpay.status_queries == [recent.token, ancient.token]
    settings.ETPAY = {**settings.ETPAY, "RECONCILE_MAX_AGE": None, "RECONCILE_INTERVAL": 0}
    run("etpay_reconcile")
    assert sorted(fake_etpay.status_queries[2:]) == sorted([recent.token, ancient.token])
