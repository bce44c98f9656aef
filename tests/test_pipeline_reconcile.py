"""services.reconcile_session (django_etpay.pipeline): ETpay's status API, faked with responses,
and what each answer does to the session (expire_sessions is in test_operations_expire.py)."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
import responses as responses_lib

from django_etpay import services
from django_etpay.exceptions import EtpayAPIError
from django_etpay.models import Notification, PaymentSession
from tests.factories import STATUS_URL, load_fixture, make_session, mint_jwt

pytestmark = pytest.mark.django_db

Outcome = Notification.Outcome
Reason = Notification.Reason
Status = PaymentSession.Status


def entry_for(session: PaymentSession, **overrides: Any) -> dict[str, Any]:
    entry = load_fixture("payment_status_success.json", session, **overrides)
    entry.pop("iat", None)
    return entry


# -- reconcile --------------------------------------------------------------------------------


def test_reconcile_applies_a_success(
    mocked_responses: responses_lib.RequestsMock,
    receivers: dict[str, mock.MagicMock],
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = make_session(needs_reconciliation=True)
    call = mocked_responses.post(STATUS_URL, json=[entry_for(session)])

    with django_capture_on_commit_callbacks(execute=True):
        notifications = services.reconcile_session(session)

    assert [(n.channel, n.outcome) for n in notifications] == [
        (Notification.Channel.POLL, Outcome.ACCEPTED)
    ]
    assert session.status == Status.PAID  # refreshed in place
    assert session.needs_reconciliation is False
    assert session.payment_token == "prNq8Lm2Pfd"
    sent = json.loads(call.calls[0].request.body)
    assert sent["session_token"] == session.token
    assert "signature_token" not in sent
    receivers["payment_completed"].assert_called_once()
    assert receivers["payment_completed"].call_args.kwargs["previous_status"] == Status.PENDING


def test_reconcile_uses_the_sessions_merchant_account(
    mocked_responses: responses_lib.RequestsMock, settings: Any
) -> None:
    settings.ETPAY = {
        **settings.ETPAY,
        "MERCHANTS": {
            "outlet": {
                "MERCHANT_CODE": "cl_outlet",
                "MERCHANT_API_TOKEN": "outlet-api-token-value",
                "API_URL": "https://api.outlet.test",
                "PMT_URL": "https://pmt.outlet.test",
            }
        },
    }
    session = make_session(merchant="outlet")
    call = mocked_responses.post(
        "https://api.outlet.test/merchant/check_payment_status", json=[entry_for(session)]
    )
    services.reconcile_session(session)
    assert json.loads(call.calls[0].request.body)["merchant_api_token"] == "outlet-api-token-value"
    assert session.status == Status.PAID


def test_reconcile_rejects_a_mismatching_entry(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    session = make_session(needs_reconciliation=True)
    mocked_responses.post(STATUS_URL, json=[entry_for(session, merchant_amount=1)])
    notifications = services.reconcile_session(session)
    assert [(n.outcome, n.reason) for n in notifications] == [
        (Outcome.REJECTED, Reason.AMOUNT_MISMATCH)
    ]
    assert session.status == Status.PENDING
    assert session.needs_reconciliation is True


def test_reconcile_ignores_other_sessions_and_keeps_the_flag_when_nothing_learned(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    session = make_session(needs_reconciliation=True)
    other = make_session()
    mocked_responses.post(STATUS_URL, json=[entry_for(other)])
    [notification] = services.reconcile_session(session)
    assert (notification.channel, notification.outcome, notification.reason) == (
        Notification.Channel.POLL,
        Outcome.DUPLICATE,
        Reason.UNKNOWN_TO_ETPAY,
    )
    assert notification.session_id == session.pk
    assert "1 entries for other sessions" in notification.detail
    assert session.needs_reconciliation is True
    other.refresh_from_db()
    assert other.status == Status.PENDING
    assert not Notification.objects.filter(session=other).exists()


def test_reconcile_with_empty_answer_records_that_etpay_knows_nothing(
    mocked_responses: responses_lib.RequestsMock, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session(needs_reconciliation=True)
    mocked_responses.post(STATUS_URL, json=[])
    [notification] = services.reconcile_session(session)
    assert notification.pk is not None
    assert (notification.channel, notification.outcome, notification.reason) == (
        Notification.Channel.POLL,
        Outcome.DUPLICATE,
        Reason.UNKNOWN_TO_ETPAY,
    )
    assert notification.result == Notification.Result.UNKNOWN
    assert (notification.status_before, notification.status_after) == (
        Status.PENDING,
        Status.PENDING,
    )
    assert session.status == Status.PENDING
    assert session.needs_reconciliation is True
    for receiver in receivers.values():
        receiver.assert_not_called()


def test_reconcile_of_a_paid_session_clears_the_flag(
    mocked_responses: responses_lib.RequestsMock,
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = make_session()
    with django_capture_on_commit_callbacks(execute=True):
        services.process_notification(mint_jwt(session), channel=Notification.Channel.WEBHOOK)
    PaymentSession.objects.filter(pk=session.pk).update(needs_reconciliation=True)
    mocked_responses.post(STATUS_URL, json=[entry_for(session)])
    notifications = services.reconcile_session(session)
    assert [n.outcome for n in notifications] == [Outcome.DUPLICATE]
    assert session.needs_reconciliation is False


def test_reconcile_applies_a_failure(mocked_responses: responses_lib.RequestsMock) -> None:
    session = make_session(needs_reconciliation=True)
    mocked_responses.post(STATUS_URL, json=[entry_for(session, payment_status="failed")])
    [notification] = services.reconcile_session(session)
    assert notification.outcome == Outcome.ACCEPTED
    assert session.status == Status.FAILED
    assert session.needs_reconciliation is False


def test_reconcile_clears_only_its_own_sessions_flag(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    session = make_session(needs_reconciliation=True)
    others = [make_session(needs_reconciliation=True) for _ in range(2)]
    mocked_responses.post(STATUS_URL, json=[entry_for(session)])
    services.reconcile_session(session)
    assert session.needs_reconciliation is False
    for other in others:
        other.refresh_from_db()
        assert other.needs_reconciliation is True


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"payment_status": "processing"}, id="unknown-status"),
        pytest.param({"payment_status": None}, id="no-status"),
        pytest.param({"system_error": True, "payment_status": True}, id="system-error"),
        pytest.param({"merchant_amount": 1}, id="rejected-mismatch"),
    ],
)
def test_reconcile_keeps_the_flag_when_etpay_said_nothing_usable(
    mocked_responses: responses_lib.RequestsMock,
    receivers: dict[str, mock.MagicMock],
    overrides: dict[str, Any],
) -> None:
    session = make_session(needs_reconciliation=True)
    mocked_responses.post(STATUS_URL, json=[entry_for(session, **overrides)])
    [notification] = services.reconcile_session(session)
    assert notification.channel == Notification.Channel.POLL
    assert session.status == Status.PENDING
    assert session.needs_reconciliation is True
    receivers["payment_completed"].assert_not_called()


def test_reconcile_system_error_entry_is_recorded_as_such(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    session = make_session()
    entry = {"session_token": session.token, "system_error": True, "payment_status": True}
    mocked_responses.post(STATUS_URL, json=[entry])
    [notification] = services.reconcile_session(session)
    assert (notification.outcome, notification.reason) == (Outcome.DUPLICATE, Reason.SYSTEM_ERROR)
    assert notification.result == Notification.Result.UNKNOWN
    assert notification.claims == entry
    assert session.status == Status.PENDING
    assert session.needs_reconciliation is True


def test_reconcile_learns_from_a_later_entry_after_an_unknown_one(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    session = make_session(needs_reconciliation=True)
    mocked_responses.post(
        STATUS_URL,
        json=[entry_for(session, payment_status="processing"), entry_for(session)],
    )
    notifications = services.reconcile_session(session)
    assert [n.outcome for n in notifications] == [Outcome.DUPLICATE, Outcome.ACCEPTED]
    assert session.status == Status.PAID
    assert session.needs_reconciliation is False


def test_reconcile_propagates_api_errors(mocked_responses: responses_lib.RequestsMock) -> None:
    session = make_session(needs_reconciliation=True)
    mocked_responses.post(STATUS_URL, status=503, json={"message": "down"})
    with pytest.raises(EtpayAPIError):
        services.reconcile_session(session)
    session.refresh_from_db()
    assert session.status == Status.PENDING
    assert not Notification.objects.exists()


def test_reconcile_without_token_does_not_call_etpay(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    session = make_session(token=None, status=Status.ERROR)
    assert services.reconcile_session(session) == []
    assert len(mocked_responses.calls) == 0


def test_a_run_stamps_a_session_without_a_token_and_asks_nothing(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    # A session ETpay never gave a token (and not an unknown outcome, which is asked about by
    # order id) has nothing to ask; a run stamps it all the same, so it is not due again at
    # once. The mocked transport fails the test on any call.
    session = make_session(token=None)
    other = make_session(token=None)
    assert services.reconcile_session(session, stamp=True) == []
    stamped = PaymentSession.objects.get(pk=session.pk).last_checked_at
    assert stamped is not None
    assert session.last_checked_at == stamped
    assert PaymentSession.objects.get(pk=other.pk).last_checked_at is None
    # Called alone (no stamp), it changes nothing.
    assert services.reconcile_session(other) == []
    assert PaymentSession.objects.get(pk=other.pk).last_checked_at is None
