"""services.process_notification: the transition rule, the record, the signals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest

from django_etpay import services
from django_etpay.models import Notification, PaymentSession
from tests.factories import (
    FAILURE_SPELLINGS,
    failing_session_saves,
    hmac_jws,
    load_fixture,
    make_session,
    mint_jwt,
    mint_payment_claims,
    mint_system_error_jwt,
    sign,
)

pytestmark = pytest.mark.django_db

Channel = Notification.Channel
Outcome = Notification.Outcome
Reason = Notification.Reason
Status = PaymentSession.Status

Run = Callable[..., Notification]


@pytest.fixture
def run(django_capture_on_commit_callbacks: Any) -> Run:
    """process_notification with its on-commit callbacks executed, as in production."""

    def run(raw: str, *, channel: str = Channel.WEBHOOK, remote_addr: str | None = None) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return services.process_notification(
                raw, channel=channel, remote_addr=remote_addr or "203.0.113.7"
            )

    return run


def reload(session: PaymentSession) -> PaymentSession:
    return PaymentSession.objects.get(pk=session.pk)


def test_success_marks_paid_records_and_signals_once(
    run: Run, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session()
    raw = mint_jwt(session)

    notification = run(raw)

    session = reload(session)
    assert session.status == Status.PAID
    assert session.paid_at is not None
    assert session.completed_at == session.paid_at
    assert session.payment_token == f"pay-{session.token[-12:]}"
    assert (session.payer_bank, session.payer_account, session.payer_rut) == (
        "Banco de prueba",
        "Cuenta Corriente 12345678",
        "111111111",
    )
    assert notification.pk is not None
    assert notification.session_id == session.pk
    assert (notification.channel, notification.outcome, notification.reason) == (
        Channel.WEBHOOK,
        Outcome.ACCEPTED,
        "",
    )
    assert notification.result == Notification.Result.SUCCESS
    assert (notification.status_before, notification.status_after) == (Status.PENDING, Status.PAID)
    assert notification.raw_body == raw
    assert notification.claims is not None
    assert notification.claims["merchant_order_id"] == session.merchant_order_id
    assert notification.payment_token == session.payment_token
    assert notification.remote_addr == "203.0.113.7"
    receivers["payment_completed"].assert_called_once()
    kwargs = receivers["payment_completed"].call_args.kwargs
    assert kwargs["session"].pk == session.pk
    assert kwargs["notification"].pk == notification.pk
    assert kwargs["previous_status"] == Status.PENDING
    receivers["payment_failed"].assert_not_called()
    receivers["notification_rejected"].assert_not_called()


def test_payment_status_success_string_is_a_success(run: Run) -> None:
    session = make_session()
    claims = load_fixture("payment_status_success.json", session)
    notification = run(sign(claims, session.signature_token))
    assert notification.outcome == Outcome.ACCEPTED
    assert reload(session).status == Status.PAID


def test_same_result_twice_is_a_duplicate_without_signal(
    run: Run, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session()
    raw = mint_jwt(session)
    first = run(raw)
    paid_at = reload(session).paid_at
    second = run(raw)
    assert (first.outcome, second.outcome) == (Outcome.ACCEPTED, Outcome.DUPLICATE)
    assert second.reason == ""
    assert reload(session).paid_at == paid_at
    assert receivers["payment_completed"].call_count == 1
    assert Notification.objects.filter(session=session).count() == 2


def test_failure_then_late_success(run: Run, receivers: dict[str, mock.MagicMock]) -> None:
    session = make_session()
    failed = run(mint_jwt(session, payment_status=False))
    assert failed.outcome == Outcome.ACCEPTED
    session = reload(session)
    assert session.status == Status.FAILED
    assert session.completed_at is not None
    assert session.paid_at is None
    receivers["payment_failed"].assert_called_once()
    assert receivers["payment_failed"].call_args.kwargs["previous_status"] == Status.PENDING

    paid = run(mint_jwt(session, payment_status="success"))
    assert paid.outcome == Outcome.ACCEPTED
    assert reload(session).status == Status.PAID
    receivers["payment_completed"].assert_called_once()
    assert receivers["payment_completed"].call_args.kwargs["previous_status"] == Status.FAILED


def test_success_after_expiry_reports_previous_status(
    run: Run, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session(status=Status.EXPIRED)
    assert run(mint_jwt(session)).outcome == Outcome.ACCEPTED
    assert reload(session).status == Status.PAID
    assert receivers["payment_completed"].call_args.kwargs["previous_status"] == Status.EXPIRED


def test_failure_after_success_changes_nothing(
    run: Run, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session()
    run(mint_jwt(session))
    notification = run(mint_jwt(session, payment_status=False))
    assert (notification.outcome, notification.reason) == (
        Outcome.DUPLICATE,
        Reason.NOT_APPLICABLE,
    )
    assert reload(session).status == Status.PAID
    receivers["payment_failed"].assert_not_called()


def test_failure_on_an_errored_session_is_not_applicable(run: Run) -> None:
    session = make_session(status=Status.ERROR)
    notification = run(mint_jwt(session, payment_status=False))
    assert notification.reason == Reason.NOT_APPLICABLE
    assert reload(session).status == Status.ERROR


def test_system_error_flags_reconciliation_only(
    run: Run, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session()
    notification = run(mint_system_error_jwt(session), channel=Channel.REDIRECT)
    assert (notification.outcome, notification.reason) == (Outcome.DUPLICATE, Reason.SYSTEM_ERROR)
    assert notification.result == Notification.Result.UNKNOWN
    session = reload(session)
    assert session.status == Status.PENDING
    assert session.needs_reconciliation is True
    receivers["payment_completed"].assert_not_called()
    receivers["payment_failed"].assert_not_called()


def test_unknown_payment_status_changes_nothing(run: Run) -> None:
    session = make_session()
    notification = run(mint_jwt(session, payment_status="processing"))
    assert (notification.outcome, notification.reason) == (
        Outcome.DUPLICATE,
        Reason.NOT_APPLICABLE,
    )
    session = reload(session)
    assert session.status == Status.PENDING
    assert session.needs_reconciliation is True


def test_success_clears_the_reconciliation_flag(run: Run) -> None:
    session = make_session(needs_reconciliation=True)
    run(mint_jwt(session))
    assert reload(session).needs_reconciliation is False


@pytest.mark.parametrize("channel", [Channel.REDIRECT, Channel.WIDGET])
def test_browser_results_change_status_by_default(run: Run, channel: str) -> None:
    session = make_session()
    assert run(mint_jwt(session), channel=channel).outcome == Outcome.ACCEPTED
    assert reload(session).status == Status.PAID


@pytest.mark.parametrize("channel", [Channel.REDIRECT, Channel.WIDGET])
@pytest.mark.parametrize("status", [True, False])
def test_untrusted_browser_results_are_recorded_only(
    run: Run,
    settings: Any,
    receivers: dict[str, mock.MagicMock],
    channel: str,
    status: bool,
) -> None:
    settings.ETPAY = {**settings.ETPAY, "ACCEPT_BROWSER_RESULTS": False}
    session = make_session()
    notification = run(mint_jwt(session, payment_status=status), channel=channel)
    assert (notification.outcome, notification.reason) == (
        Outcome.DUPLICATE,
        Reason.BROWSER_NOT_TRUSTED,
    )
    assert notification.result == (
        Notification.Result.SUCCESS if status else Notification.Result.FAILURE
    )
    session = reload(session)
    assert session.status == Status.PENDING
    # The browser said something the server has not heard yet: ask ETpay.
    assert session.needs_reconciliation is True
    receivers["payment_completed"].assert_not_called()
    receivers["payment_failed"].assert_not_called()
    assert run(mint_jwt(session, payment_status=status)).outcome == Outcome.ACCEPTED
    # The webhook settles it, and with it the question.
    assert reload(session).needs_reconciliation is False


def test_untrusted_browser_repeat_of_a_settled_result_flags_nothing(
    run: Run, settings: Any
) -> None:
    settings.ETPAY = {**settings.ETPAY, "ACCEPT_BROWSER_RESULTS": False}
    session = make_session()
    raw = mint_jwt(session)
    run(raw)
    notification = run(raw, channel=Channel.REDIRECT)
    assert (notification.outcome, notification.reason) == (Outcome.DUPLICATE, "")
    assert reload(session).needs_reconciliation is False


@pytest.mark.parametrize(
    "spelling",
    [*FAILURE_SPELLINGS, " Declined "],
)
def test_every_failure_spelling_fails_the_session(
    run: Run, receivers: dict[str, mock.MagicMock], spelling: object
) -> None:
    session = make_session()
    notification = run(mint_jwt(session, payment_status=spelling))
    assert notification.outcome == Outcome.ACCEPTED
    assert notification.result == Notification.Result.FAILURE
    assert reload(session).status == Status.FAILED
    receivers["payment_failed"].assert_called_once()
    receivers["payment_completed"].assert_not_called()


@pytest.mark.parametrize("key_of", ["token", "signature_token"])
@pytest.mark.parametrize("status", [Status.PENDING, Status.EXPIRED, Status.FAILED])
def test_system_error_with_payment_status_true_never_pays(
    run: Run, receivers: dict[str, mock.MagicMock], key_of: str, status: str
) -> None:
    session = make_session(status=status)
    claims = mint_payment_claims(session, system_error=True, payment_status=True)
    notification = run(sign(claims, getattr(session, key_of)))
    assert (notification.outcome, notification.reason) == (Outcome.DUPLICATE, Reason.SYSTEM_ERROR)
    assert notification.result == Notification.Result.UNKNOWN
    session = reload(session)
    assert session.status == status
    assert session.paid_at is None
    assert session.needs_reconciliation is True
    receivers["payment_completed"].assert_not_called()


@pytest.mark.parametrize("status", [Status.PENDING, Status.PAID])
def test_a_system_error_record_keeps_only_what_etpay_s_system_error_carries(
    run: Run, status: str
) -> None:
    # Signed with the session token, which is in the payment URL: anyone may add claims.
    session = make_session(status=status)
    claims = mint_payment_claims(
        session, system_error=True, payment_token="pay-forged", user_rut="1-9", extra="x"
    )
    notification = run(sign(claims, session.token))
    assert notification.reason == Reason.SYSTEM_ERROR
    stored = Notification.objects.get(pk=notification.pk)
    assert stored.claims == {
        "session_token": session.token,
        "system_error": True,
        "iat": claims["iat"],
    }
    assert stored.payment_token == ""
    assert reload(session).payment_token == ""


def test_a_rejected_system_error_keeps_only_its_claims_too(run: Run) -> None:
    session = make_session()
    claims = mint_payment_claims(session, system_error=True, payment_token="pay-forged")
    notification = run(sign(claims, "not-the-session-key-" + "x" * 48))
    assert (notification.outcome, notification.reason) == (Outcome.REJECTED, Reason.BAD_SIGNATURE)
    stored = Notification.objects.get(pk=notification.pk)
    assert stored.claims is not None
    assert set(stored.claims) == {"session_token", "system_error", "iat"}
    assert stored.payment_token == ""


def test_a_normal_result_keeps_every_claim(run: Run) -> None:
    session = make_session()
    notification = run(mint_jwt(session, payment_token="pay-real", extra="x"))
    stored = Notification.objects.get(pk=notification.pk)
    assert stored.claims is not None
    assert stored.claims["extra"] == "x"
    assert stored.payment_token == "pay-real"


def test_system_error_on_a_paid_session_flags_nothing(run: Run) -> None:
    session = make_session()
    run(mint_jwt(session))
    notification = run(mint_system_error_jwt(session))
    assert notification.reason == Reason.SYSTEM_ERROR
    session = reload(session)
    assert (session.status, session.needs_reconciliation) == (Status.PAID, False)


def test_rejected_rows_keep_the_forensic_fields(run: Run) -> None:
    session = make_session(status=Status.EXPIRED)
    raw = mint_jwt(session, key="someone-elses-key-0123456789abcdefghijklmnop")
    notification = run(raw, remote_addr="198.51.100.23")
    notification.refresh_from_db()
    assert (notification.outcome, notification.reason) == (Outcome.REJECTED, Reason.BAD_SIGNATURE)
    assert notification.raw_body == raw
    assert notification.raw_body_truncated is False
    assert notification.remote_addr == "198.51.100.23"
    assert (notification.status_before, notification.status_after) == ("expired", "expired")
    assert notification.session_id == session.pk
    assert notification.channel == Channel.WEBHOOK
    assert notification.result == ""
    assert notification.claims is not None
    assert notification.claims["merchant_order_id"] == session.merchant_order_id
    assert notification.payment_token == f"pay-{session.token[-12:]}"
    assert "signature" in notification.detail


def test_rejected_row_without_a_session_keeps_what_arrived(run: Run) -> None:
    notification = run("not even a jwt", remote_addr="2001:db8::7")
    notification.refresh_from_db()
    assert (notification.outcome, notification.reason) == (Outcome.REJECTED, Reason.MALFORMED)
    assert notification.raw_body == "not even a jwt"
    assert notification.remote_addr == "2001:db8::7"
    assert (notification.status_before, notification.status_after) == ("", "")
    assert notification.session_id is None
    assert notification.claims is None


def test_duplicate_rows_keep_the_status_they_saw(run: Run) -> None:
    session = make_session()
    raw = mint_jwt(session)
    run(raw)
    notification = run(raw, remote_addr="203.0.113.99")
    notification.refresh_from_db()
    assert (notification.status_before, notification.status_after) == ("paid", "paid")
    assert notification.raw_body == raw
    assert notification.remote_addr == "203.0.113.99"
    assert notification.detail == "Already paid."


def test_mismatch_is_rejected_stored_and_signalled(
    run: Run, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session()
    notification = run(mint_jwt(session, merchant_amount=1))
    assert notification.pk is not None
    assert (notification.outcome, notification.reason) == (
        Outcome.REJECTED,
        Reason.AMOUNT_MISMATCH,
    )
    assert notification.session_id == session.pk
    assert notification.claims is not None
    assert notification.claims["merchant_amount"] == 1
    assert reload(session).status == Status.PENDING
    receivers["notification_rejected"].assert_called_once()
    kwargs = receivers["notification_rejected"].call_args.kwargs
    assert kwargs["reason"] == Reason.AMOUNT_MISMATCH
    assert kwargs["notification"].pk == notification.pk
    receivers["payment_completed"].assert_not_called()


def test_unknown_session_is_stored_without_session(run: Run) -> None:
    session = make_session()
    raw = mint_jwt(session, session_token="sess-unknown-0123456789abcdef")
    notification = run(raw)
    assert (notification.outcome, notification.reason) == (
        Outcome.REJECTED,
        Reason.UNKNOWN_SESSION,
    )
    assert notification.pk is not None
    assert notification.session_id is None


def test_rejections_per_session_are_capped(run: Run, settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "MAX_REJECTED_PER_SESSION": 2}
    session = make_session()
    results = [
        run(mint_jwt(session, key="wrong-key-of-sufficient-length-0123456789ab")) for _ in range(4)
    ]
    assert [n.reason for n in results] == [Reason.BAD_SIGNATURE] * 4
    assert [n.pk is not None for n in results] == [True, True, False, False]
    assert Notification.objects.filter(session=session, outcome=Outcome.REJECTED).count() == 2
    assert run(mint_jwt(session)).outcome == Outcome.ACCEPTED


def test_raw_body_is_capped_and_storable(run: Run, settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_STORE_BYTES": 100}
    garbage = "\x00" + "x" * 500 + "\ud800"
    notification = run(garbage)
    notification.refresh_from_db()
    assert notification.reason == Reason.MALFORMED
    assert notification.raw_body_truncated is True
    assert len(notification.raw_body.encode()) <= 100
    assert "\x00" not in notification.raw_body


def test_claims_with_nul_and_huge_values_are_storable(run: Run, settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_STORE_BYTES": 4096}
    session = make_session()
    nul = run(mint_jwt(session, merchant_amount=1, merchant_name="a\x00b"))
    huge = run(mint_jwt(session, merchant_amount=1, merchant_name="z" * 10_000))
    nul.refresh_from_db()
    huge.refresh_from_db()
    assert nul.claims is not None
    assert nul.claims["merchant_name"] == "a\ufffdb"
    assert huge.claims is None
    assert huge.reason == Reason.AMOUNT_MISMATCH


def test_invalid_remote_addr_is_dropped(run: Run) -> None:
    session = make_session()
    notification = run(mint_jwt(session), remote_addr="not-an-ip")
    assert notification.remote_addr is None
    assert notification.outcome == Outcome.ACCEPTED


def test_internal_failure_rolls_back_but_keeps_the_record(
    receivers: dict[str, mock.MagicMock], django_capture_on_commit_callbacks: Any
) -> None:
    session = make_session()
    with (
        failing_session_saves(),
        pytest.raises(RuntimeError),
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.process_notification(mint_jwt(session), channel=Channel.WEBHOOK)

    assert reload(session).status == Status.PENDING
    record = Notification.objects.get(session=session)
    assert (record.outcome, record.reason) == (Outcome.REJECTED, Reason.INTERNAL_ERROR)
    assert "RuntimeError" in record.detail
    receivers["payment_completed"].assert_not_called()


def test_failing_receiver_does_not_undo_the_payment(
    run: Run, receivers: dict[str, mock.MagicMock], caplog: pytest.LogCaptureFixture
) -> None:
    receivers["payment_completed"].side_effect = RuntimeError("shop bug")
    session = make_session()
    raw = mint_jwt(session)
    notification = run(raw)
    assert notification.outcome == Outcome.ACCEPTED
    assert reload(session).status == Status.PAID
    receivers["payment_completed"].assert_called_once()
    assert "RuntimeError" in caplog.text
    assert raw not in caplog.text
    assert session.signature_token not in caplog.text


def test_nan_and_infinity_claims_are_rejected_and_storable(run: Run) -> None:
    session = make_session()
    claims = mint_payment_claims(session, merchant_amount=float("nan"), extra=float("inf"))
    raw = hmac_jws({"alg": "HS256", "typ": "JWT"}, claims, session.signature_token.encode())
    notification = run(raw)
    notification.refresh_from_db()
    assert (notification.outcome, notification.reason) == (
        Outcome.REJECTED,
        Reason.INVALID_CLAIMS,
    )
    assert notification.claims is None
    assert reload(session).status == Status.PENDING


def test_unknown_channel_is_a_programming_error() -> None:
    session = make_session()
    with pytest.raises(ValueError, match="channel"):
        services.process_notification(mint_jwt(session), channel="carrier-pigeon")
    assert not Notification.objects.exists()


def test_second_payment_token_for_a_paid_session_is_flagged(
    run: Run, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session()
    run(mint_jwt(session))
    notification = run(mint_jwt(session, payment_token="pay-another-transfer"))
    assert (notification.outcome, notification.reason) == (
        Outcome.DUPLICATE,
        Reason.NOT_APPLICABLE,
    )
    assert notification.payment_token == "pay-another-transfer"
    assert reload(session).payment_token != "pay-another-transfer"
    receivers["payment_completed"].assert_called_once()
