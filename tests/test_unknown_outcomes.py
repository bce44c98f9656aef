"""Sessions whose creation outcome is unknown are settled by the status query by order id.

The fake ETpay opens the session and the reply is lost (a read timeout after the request was
sent): the row is ``error`` / ``outcome_unknown`` without a token. ``etpay_reconcile`` then
asks ETpay by ``merchant_order_id``; exactly one matching session is adopted and its result
applied, anything else ends with the row flagged for staff with what ETpay returned.
"""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from django_etpay import operations, unknown
from django_etpay.checkout import initialize_session
from django_etpay.exceptions import EtpayTimeoutError
from django_etpay.models import Notification, PaymentSession
from django_etpay.testing import FakeEtpay
from tests.factories import make_session

Status = PaymentSession.Status
Reason = Notification.Reason


def lost_reply(etpay: FakeEtpay, order: str = "OC-LOST-1", amount: int = 15000) -> PaymentSession:
    """``initialize_session`` whose request ETpay acted on, its reply lost to a read timeout."""
    etpay.fail_next("initialize", error="timeout", after_processing=True)
    with pytest.raises(EtpayTimeoutError) as caught:
        initialize_session(order, amount)
    session = PaymentSession.objects.get(pk=caught.value.session_id)
    assert (session.status, session.token, session.outcome_unknown) == (Status.ERROR, None, True)
    return session


def reconcile() -> str:
    out = io.StringIO()
    call_command("etpay_reconcile", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def age(session: PaymentSession, delta: timedelta) -> None:
    PaymentSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - delta)
    session.refresh_from_db()


def staff_records(session: PaymentSession) -> list[Notification]:
    return list(
        Notification.objects.filter(
            session=session, reason__in=[Reason.AMBIGUOUS_ORDER, Reason.NO_MATCHING_SESSION]
        )
    )


@pytest.mark.django_db
def test_session_created_behind_a_read_timeout_ends_paid_after_reconcile(
    fake_etpay: FakeEtpay,
    receivers: dict[str, mock.MagicMock],
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = lost_reply(fake_etpay)
    opened = fake_etpay.last_session  # ETpay did open it
    fake_etpay.pay(opened)  # and the payer paid

    with django_capture_on_commit_callbacks(execute=True):
        output = reconcile()

    session.refresh_from_db()
    assert session.status == Status.PAID
    assert session.token == opened.token
    assert session.payment_token == opened.payment_token
    assert not session.outcome_unknown
    assert not session.needs_reconciliation
    assert not session.needs_staff_decision
    assert session.signature_token == ""  # the status query never returns it
    assert receivers["payment_completed"].call_count == 1
    assert "1 now paid" in output
    asked = [c.body for c in fake_etpay.calls if c.path.endswith("check_payment_status")]
    assert asked[0].get("merchant_order_id") == "OC-LOST-1"
    assert "session_token" not in asked[0]
    reasons = list(Notification.objects.filter(session=session).values_list("reason", "outcome"))
    assert (Reason.SESSION_ADOPTED, Notification.Outcome.DUPLICATE) in reasons
    assert ("", Notification.Outcome.ACCEPTED) in reasons


@pytest.mark.django_db
def test_adopted_session_paid_later_is_settled_by_its_token(
    fake_etpay: FakeEtpay,
    receivers: dict[str, mock.MagicMock],
    django_capture_on_commit_callbacks: Any,
) -> None:
    """ETpay lists the opened session before it is paid (a pending entry): adopted at once,
    paid by a later run through the status query by token."""
    session = lost_reply(fake_etpay)
    opened = fake_etpay.last_session
    pending_entry = {
        "session_token": opened.token,
        "merchant_order_id": opened.merchant_order_id,
        "merchant_amount": opened.order_amount,
        "merchant_currency": "CLP",
        "payment_status": "pending",
    }
    with mock.patch.object(unknown, "_ask", return_value=[pending_entry]):
        # Adopted, then asked about by its token: the fake lists only settled sessions.
        assert unknown.settle_unknown(session) == operations.Outcome.UNKNOWN
    assert (session.status, session.token, session.needs_reconciliation) == (
        Status.PENDING,
        opened.token,
        True,
    )
    receivers["payment_completed"].assert_not_called()

    fake_etpay.pay(opened)
    assert operations.due_sessions().filter(pk=session.pk).exists()  # flagged to reconcile
    with django_capture_on_commit_callbacks(execute=True):
        assert operations.reconcile_one(session)[0] == operations.Outcome.PAID
    session.refresh_from_db()
    assert session.status == Status.PAID
    assert receivers["payment_completed"].call_count == 1


@pytest.mark.django_db
def test_two_candidate_sessions_end_flagged_for_staff(
    fake_etpay: FakeEtpay, receivers: dict[str, mock.MagicMock]
) -> None:
    session = lost_reply(fake_etpay)
    first = fake_etpay.last_session
    # The same order and amount opened twice at ETpay (the lost reply, and a second lost one
    # ETpay also acted on): both paid, nothing says which is this row's.
    fake_etpay.fail_next("initialize", error="timeout", after_processing=True)
    with pytest.raises(EtpayTimeoutError) as caught:
        initialize_session("OC-LOST-1", 15000)
    second = fake_etpay.last_session
    assert second.token != first.token
    fake_etpay.pay(first)
    fake_etpay.pay(second)

    output = reconcile()

    for row in (session, PaymentSession.objects.get(pk=caught.value.session_id)):
        row.refresh_from_db()
        assert (row.status, row.token) == (Status.ERROR, None)
        assert row.needs_staff_decision
        assert row.outcome_unknown
        [record] = staff_records(row)
        assert record.reason == Reason.AMBIGUOUS_ORDER
        assert {e["session_token"] for e in record.claims["entries"]} == {
            first.token,
            second.token,
        }
        assert all("signature_token" not in e for e in record.claims["entries"])
    receivers["payment_completed"].assert_not_called()
    assert "2 left for a staff decision" in output
    # Left to staff: the next runs do not ask again.
    assert not operations.due_sessions().filter(pk=session.pk).exists()


@pytest.mark.django_db
def test_a_candidate_held_by_another_row_is_not_a_candidate(
    fake_etpay: FakeEtpay, receivers: dict[str, mock.MagicMock]
) -> None:
    """The shop retried the order and the retry succeeded: the retry's ETpay session is the
    retry's, not the lost one's; the lost one's own session is adopted."""
    session = lost_reply(fake_etpay)
    lost = fake_etpay.last_session
    retry = initialize_session("OC-LOST-1", 15000)
    fake_etpay.pay(retry)
    fake_etpay.pay(lost)

    assert unknown.settle_unknown(session) == operations.Outcome.PAID
    assert session.token == lost.token != retry.token


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("merchant_amount", 14999),
        ("merchant_currency", "MXN"),
        ("merchant_order_id", "OC-OTHER"),
        ("payment_date", "01-01-2020 10:00:00"),
    ],
)
def test_entries_that_differ_are_not_adopted(
    fake_etpay: FakeEtpay, change: str, value: Any
) -> None:
    session = lost_reply(fake_etpay)
    opened = fake_etpay.last_session
    fake_etpay.pay(opened)
    entry = {**fake_etpay.status_entry(opened), change: value}

    with mock.patch.object(unknown, "_ask", return_value=[entry]):
        outcome = unknown.settle_unknown(session)

    assert outcome == operations.Outcome.UNKNOWN
    assert (session.token, session.outcome_unknown, session.needs_staff_decision) == (
        None,
        True,
        False,
    )


@pytest.mark.django_db
def test_an_entry_without_date_or_currency_still_matches(fake_etpay: FakeEtpay) -> None:
    """Only evidence excludes: what ETpay does not state never rules a session out."""
    session = lost_reply(fake_etpay)
    opened = fake_etpay.last_session
    fake_etpay.pay(opened)
    entry = fake_etpay.status_entry(opened)
    del entry["payment_date"], entry["merchant_currency"]

    with mock.patch.object(unknown, "_ask", return_value=[entry]):
        unknown.settle_unknown(session)

    assert session.token == opened.token


@pytest.mark.django_db
def test_none_found_is_asked_again_until_the_time_to_pay_is_over_then_flagged(
    fake_etpay: FakeEtpay,
) -> None:
    session = lost_reply(fake_etpay)  # opened at ETpay, never paid: ETpay lists nothing

    assert operations.reconcile_one(session)[0] == operations.Outcome.UNKNOWN
    session.refresh_from_db()
    assert session.outcome_unknown
    assert not session.needs_staff_decision
    assert session.last_checked_at is not None
    assert Notification.objects.filter(session=session, reason=Reason.UNKNOWN_TO_ETPAY).exists()

    age(session, unknown.match_window(session)[1] - session.created_at + timedelta(seconds=1))
    assert operations.reconcile_one(session)[0] == operations.Outcome.STAFF
    session.refresh_from_db()
    assert session.needs_staff_decision
    [record] = staff_records(session)
    assert record.reason == Reason.NO_MATCHING_SESSION
    assert record.claims["entries"] == []


@pytest.mark.django_db
def test_unknown_sessions_are_due_whatever_their_age_and_only_while_unknown(
    fake_etpay: FakeEtpay,
) -> None:
    session = lost_reply(fake_etpay)
    age(session, timedelta(days=365))
    known_error = make_session(token=None, status=Status.ERROR, outcome_unknown=False)

    due = set(operations.due_sessions().values_list("pk", flat=True))

    assert session.pk in due
    assert known_error.pk not in due
    PaymentSession.objects.filter(pk=session.pk).update(last_checked_at=timezone.now())
    assert not operations.due_sessions().filter(pk=session.pk).exists()


@pytest.mark.django_db
def test_staff_close_as_not_paid_makes_the_outcome_known(fake_etpay: FakeEtpay) -> None:
    session = lost_reply(fake_etpay)
    PaymentSession.objects.filter(pk=session.pk).update(needs_staff_decision=True)

    assert unknown.close_unknown(session)
    assert not unknown.close_unknown(session)  # once

    assert (session.status, session.outcome_unknown, session.needs_staff_decision) == (
        Status.ERROR,
        False,
        False,
    )
    assert not session.needs_reconciliation
    assert Notification.objects.filter(session=session, reason=Reason.STAFF_DECISION).count() == 1
    assert not operations.due_sessions().filter(pk=session.pk).exists()


@pytest.mark.django_db
def test_staff_adopt_one_of_the_candidates(
    fake_etpay: FakeEtpay,
    receivers: dict[str, mock.MagicMock],
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = lost_reply(fake_etpay)
    first = fake_etpay.last_session
    fake_etpay.fail_next("initialize", error="timeout", after_processing=True)
    with pytest.raises(EtpayTimeoutError):
        initialize_session("OC-LOST-1", 15000)
    second = fake_etpay.last_session
    fake_etpay.pay(first)
    fake_etpay.pay(second)
    assert unknown.settle_unknown(session) == operations.Outcome.STAFF

    with pytest.raises(ValueError, match="lists no session"):
        unknown.adopt_session(session, "not-an-etpay-token")
    with django_capture_on_commit_callbacks(execute=True):
        assert unknown.adopt_session(session, first.token) == operations.Outcome.PAID

    assert (session.status, session.token, session.needs_staff_decision) == (
        Status.PAID,
        first.token,
        False,
    )
    assert receivers["payment_completed"].call_count == 1
    assert Notification.objects.filter(session=session, reason=Reason.STAFF_DECISION).count() == 1


@pytest.mark.django_db
def test_ask_again_sends_a_flagged_row_back_to_the_runs(fake_etpay: FakeEtpay) -> None:
    session = lost_reply(fake_etpay)
    PaymentSession.objects.filter(pk=session.pk).update(
        needs_staff_decision=True, last_checked_at=timezone.now()
    )
    assert not operations.due_sessions().filter(pk=session.pk).exists()

    assert unknown.ask_again(session)

    assert operations.due_sessions().filter(pk=session.pk).exists()


@pytest.mark.django_db
def test_a_failed_status_query_changes_nothing_and_is_retried(fake_etpay: FakeEtpay) -> None:
    session = lost_reply(fake_etpay)
    fake_etpay.fail_next("status", error="refused")

    outcome, error = operations.reconcile_one(session)

    assert outcome == operations.Outcome.ERROR
    assert str(session.pk) in error
    session.refresh_from_db()
    assert session.last_checked_at is None
    assert session.outcome_unknown


# -- concurrency ------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_adopt_once(
    fake_etpay: FakeEtpay, receivers: dict[str, mock.MagicMock]
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    session = lost_reply(fake_etpay)
    opened = fake_etpay.last_session
    fake_etpay.pay(opened)
    entries = [fake_etpay.status_entry(opened)]
    barrier = threading.Barrier(2)
    outcomes: list[Any] = []

    def ask(merchant_session: PaymentSession) -> list[dict[str, Any]]:
        barrier.wait(timeout=30)  # both have read the row before either decides
        return entries

    def worker() -> None:
        try:
            row = PaymentSession.objects.get(pk=session.pk)
            outcomes.append(unknown.settle_unknown(row))
        except BaseException as err:  # reported by the assertion below
            outcomes.append(err)
        finally:
            connection.close()

    with mock.patch.object(unknown, "_ask", side_effect=ask):
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert sorted(outcomes) == [operations.Outcome.PAID, operations.Outcome.UNCHANGED]
    session.refresh_from_db()
    assert (session.status, session.token) == (Status.PAID, opened.token)
    assert Notification.objects.filter(session=session, reason=Reason.SESSION_ADOPTED).count() == 1
    assert receivers["payment_completed"].call_count == 1


# -- the task and the admin -------------------------------------------------------------------


@pytest.mark.django_db
def test_the_reconcile_task_settles_an_unknown_session(fake_etpay: FakeEtpay) -> None:
    from django_etpay import tasks
    from tests.test_tasks import succeeded

    session = lost_reply(fake_etpay)
    fake_etpay.pay(fake_etpay.last_session)

    value = succeeded(tasks.reconcile.enqueue())

    assert value["paid"] == 1
    session.refresh_from_db()
    assert session.status == Status.PAID


def _staff_client(*codenames: str) -> Any:
    from tests.test_admin import staff

    return staff(*codenames)


@pytest.mark.django_db
def test_the_admin_action_settles_an_unknown_session_and_filters_staff_decisions(
    fake_etpay: FakeEtpay,
) -> None:
    from django.urls import reverse

    sessions_url = reverse("admin:django_etpay_paymentsession_changelist")
    paid = lost_reply(fake_etpay, order="OC-LOST-A")
    fake_etpay.pay(fake_etpay.last_session)
    ambiguous = lost_reply(fake_etpay, order="OC-LOST-B")
    fake_etpay.pay(fake_etpay.last_session)
    fake_etpay.fail_next("initialize", error="timeout", after_processing=True)
    with pytest.raises(EtpayTimeoutError):
        initialize_session("OC-LOST-B", 15000)
    fake_etpay.pay(fake_etpay.last_session)
    client = _staff_client("reconcile_paymentsession")

    client.post(
        sessions_url,
        {"action": "reconcile_selected", "_selected_action": [paid.pk, ambiguous.pk]},
    )

    paid.refresh_from_db()
    ambiguous.refresh_from_db()
    assert paid.status == Status.PAID
    assert ambiguous.needs_staff_decision
    listed = client.get(sessions_url, {"needs_staff_decision__exact": "1"})
    assert [s.pk for s in listed.context["cl"].result_list] == [ambiguous.pk]
    assert "needs staff decision" in listed.content.decode()
    page = client.get(
        reverse("admin:django_etpay_paymentsession_change", args=[ambiguous.pk])
    ).content.decode()
    opened_b = [f for f in fake_etpay.sessions if f.merchant_order_id == "OC-LOST-B"]
    assert len(opened_b) == 2
    assert all(f.token in page for f in opened_b)  # the ETpay sessions staff choose from

    client.post(
        sessions_url, {"action": "close_unknown_selected", "_selected_action": [ambiguous.pk]}
    )
    ambiguous.refresh_from_db()
    assert (ambiguous.outcome_unknown, ambiguous.needs_staff_decision) == (False, False)


@pytest.mark.django_db
def test_the_admin_hides_payer_data_inside_etpays_stored_answer(fake_etpay: FakeEtpay) -> None:
    from django.urls import reverse

    session = lost_reply(fake_etpay)
    fake_etpay.pay(fake_etpay.last_session, user_rut="111111111")
    fake_etpay.fail_next("initialize", error="timeout", after_processing=True)
    with pytest.raises(EtpayTimeoutError):
        initialize_session("OC-LOST-1", 15000)
    fake_etpay.pay(fake_etpay.last_session, user_rut="111111111")
    unknown.settle_unknown(session)
    [record] = staff_records(session)
    assert record.claims["entries"][0]["user_rut"] == "111111111"
    url = reverse("admin:django_etpay_notification_change", args=[record.pk])

    hidden = _staff_client().get(url).content.decode()
    shown = _staff_client("view_payer_data").get(url).content.decode()

    assert "111111111" not in hidden
    assert "111111111" in shown
