"""The most SQL each hot path may send, by kind and table, so that it cannot grow silently.

Each path runs as in production: in autocommit (``transaction=True``), so the statements are
those a request pays for. Statements are written as ``KIND table [FOR UPDATE]``. Each path has
an upper bound per kind of statement, not an exact list: a Django release that adds a
savepoint or drops a statement passes, a query in a loop or a new kind of statement fails.
Transaction control (``BEGIN``, ``COMMIT``, savepoints) is not counted.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any
from unittest import mock

import pytest
import responses as responses_lib
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_etpay import operations, pipeline, services, tokens
from django_etpay.exceptions import EtpayResponseError
from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.factories import (
    INIT_URL,
    STATUS_URL,
    WRONG_KEY,
    deliver,
    make_session,
    mint_jwt,
    mint_payment_claims,
    mint_system_error_jwt,
)

pytestmark = pytest.mark.django_db(transaction=True)

Channel = Notification.Channel
Outcome = Notification.Outcome
Reason = Notification.Reason
Status = PaymentSession.Status

SESSION = "django_etpay_paymentsession"
NOTIFICATION = "django_etpay_notification"
OUTBOX = "django_etpay_outboxeffect"


REPLY = {"token": "sess-pinned-1", "signature_token": "sig-pinned-" + "k" * 60}

_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', re.IGNORECASE)
_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def describe(sql: str) -> str:
    """``SELECT etpay_paymentsession FOR UPDATE``, ``INSERT etpay_notification``..."""
    kind = sql.split()[0].upper()
    if kind in _CONTROL:
        return kind
    tables = list(dict.fromkeys(_TABLE.findall(sql)))
    lock = " FOR UPDATE" if "FOR UPDATE" in sql.upper() else ""
    return f"{kind} {','.join(tables)}{lock}"


class Statements:
    """What ran inside the block: ``.sql`` without transaction control, ``.control`` apart."""

    def __init__(self) -> None:
        self.all: list[str] = []

    @property
    def sql(self) -> list[str]:
        return [s for s in self.all if s not in _CONTROL]

    @property
    def control(self) -> list[str]:
        return [s for s in self.all if s in _CONTROL]


@pytest.fixture
def captured() -> Any:
    def capture() -> Any:
        statements = Statements()

        class Context(CaptureQueriesContext):
            def __exit__(self, *exc: Any) -> None:
                super().__exit__(*exc)
                statements.all[:] = [describe(q["sql"]) for q in self.captured_queries]

        return Context(connection), statements

    return capture


def locked(table: str) -> str:
    """How a locking read of ``table`` shows (SQLite has no FOR UPDATE)."""
    suffix = " FOR UPDATE" if connection.vendor == "postgresql" else ""
    return f"SELECT {table}{suffix}"


def assert_at_most(statements: list[str], bound: list[str]) -> None:
    """Each kind of statement in ``statements`` is in ``bound`` and runs at most as often."""
    counts, allowed = Counter(statements), Counter(bound)
    assert set(counts) <= set(allowed), f"unexpected statements: {set(counts) - set(allowed)}"
    over = {kind: n for kind, n in counts.items() if n > allowed[kind]}
    assert not over, f"more statements than allowed: {over} (at most {dict(allowed)})"


def first_delivery() -> list[str]:
    """Read, then lock and re-read in a transaction; change, record, outbox effect, and (for a
    payment) whether the order has another session, paid already; after commit the effect is
    marked delivered."""
    return [
        f"SELECT {SESSION}",
        f"SELECT {SESSION}",
        locked(SESSION),
        f"UPDATE {SESSION}",
        f"INSERT {NOTIFICATION}",
        f"INSERT {OUTBOX}",
        f"UPDATE {OUTBOX}",
    ]


#: A result that changes nothing: the read, the storage budget (a conditional UPDATE of the
#: session's counter) and the record.
BUDGETED = [f"SELECT {SESSION}", f"UPDATE {SESSION}", f"INSERT {NOTIFICATION}"]


def paid_session() -> tuple[PaymentSession, str]:
    session = make_session()
    raw = mint_jwt(session)
    assert deliver(raw).outcome == Outcome.ACCEPTED
    return session, raw


# -- notification paths ---------------------------------------------------------------------


def test_first_delivery_changes_records_and_marks_its_effect(
    captured: Any, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session()
    raw = mint_jwt(session)
    context, statements = captured()
    with context:
        notification = deliver(raw)
    assert notification.outcome == Outcome.ACCEPTED
    assert_at_most(statements.sql, first_delivery())
    # Decided on the locked row, and its effect marked delivered after the receivers ran.
    assert locked(SESSION) in statements.sql
    assert statements.sql[-1] == f"UPDATE {OUTBOX}"
    receivers["payment_completed"].assert_called_once()


def test_repeat_takes_no_row_lock(captured: Any) -> None:
    session, raw = paid_session()
    updated_at = PaymentSession.objects.get(pk=session.pk).updated_at
    context, statements = captured()
    with context:
        notification = deliver(raw)
    assert notification.outcome == Outcome.DUPLICATE
    assert_at_most(statements.sql, BUDGETED)
    assert not any("FOR UPDATE" in s for s in statements.all)
    stored = Notification.objects.get(pk=notification.pk)
    assert (stored.session_id, stored.outcome, stored.reason) == (
        session.pk,
        Outcome.DUPLICATE,
        "",
    )
    assert (stored.status_before, stored.status_after) == (Status.PAID, Status.PAID)
    assert stored.detail == "Already paid."
    assert stored.raw_body == raw
    assert stored.claims == notification.claims
    assert stored.claims is not None
    assert stored.claims["session_token"] == session.token
    assert str(stored.remote_addr) == "203.0.113.9"
    assert stored.created_at is not None
    assert stored.created_at == notification.created_at
    session.refresh_from_db()
    # The counter moved; updated_at still says when the session itself last changed.
    assert session.stored_duplicates == 1
    assert session.updated_at == updated_at


def test_repeat_beyond_its_budget_stores_nothing(
    captured: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.ETPAY = {**settings.ETPAY, "MAX_DUPLICATES_PER_SESSION": 2}
    session, raw = paid_session()
    assert [deliver(raw).pk is not None for _ in range(2)] == [True, True]
    context, statements = captured()
    with context:
        notification = deliver(raw)
    assert notification.outcome == Outcome.DUPLICATE
    assert notification.pk is None
    # The budget's UPDATE changed no row: nothing is inserted.
    assert_at_most(statements.sql, [f"SELECT {SESSION}", f"UPDATE {SESSION}"])
    assert Notification.objects.filter(session=session).count() == 3
    session.refresh_from_db()
    assert session.stored_duplicates == 2
    assert "not stored: budget used up" in caplog.text


@pytest.mark.parametrize(
    ("first", "then", "reason"),
    [
        (True, False, Reason.NOT_APPLICABLE),  # a failure after the payment
        (False, False, ""),  # a failure repeated
    ],
    ids=["failure-on-paid", "failure-on-failed"],
)
def test_results_a_settled_session_cannot_take_skip_the_lock(
    captured: Any, first: bool, then: bool, reason: str
) -> None:
    session = make_session()
    assert deliver(mint_jwt(session, payment_status=first)).outcome == Outcome.ACCEPTED
    context, statements = captured()
    with context:
        notification = deliver(mint_jwt(session, payment_status=then))
    assert (notification.outcome, notification.reason) == (Outcome.DUPLICATE, reason)
    assert_at_most(statements.sql, BUDGETED)
    assert not any("FOR UPDATE" in s for s in statements.all)


def test_system_error_on_a_paid_session_skips_the_lock(captured: Any) -> None:
    session, _ = paid_session()
    context, statements = captured()
    with context:
        notification = deliver(mint_system_error_jwt(session))
    assert (notification.outcome, notification.reason) == (Outcome.DUPLICATE, Reason.SYSTEM_ERROR)
    assert_at_most(statements.sql, BUDGETED)
    assert not any("FOR UPDATE" in s for s in statements.all)
    session.refresh_from_db()
    assert session.needs_reconciliation is False


def test_result_that_may_change_a_pending_session_is_decided_under_the_lock(
    captured: Any,
) -> None:
    session = make_session()
    context, statements = captured()
    with context:
        notification = deliver(mint_system_error_jwt(session))
    assert (notification.outcome, notification.reason) == (Outcome.DUPLICATE, Reason.SYSTEM_ERROR)
    # The reconciliation flag under the lock, then the record within its budget, taken the
    # same way as on the lock-free path.
    assert_at_most(statements.sql, [locked(SESSION), f"UPDATE {SESSION}", *BUDGETED])
    assert locked(SESSION) in statements.sql
    session.refresh_from_db()
    assert (session.needs_reconciliation, session.stored_duplicates) == (True, 1)


def test_rejected_result_of_a_known_session(
    captured: Any, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session()
    context, statements = captured()
    with context:
        notification = deliver(mint_jwt(session, key=WRONG_KEY))
    assert (notification.outcome, notification.reason) == (Outcome.REJECTED, Reason.BAD_SIGNATURE)
    assert_at_most(statements.sql, BUDGETED)
    assert not any("FOR UPDATE" in s for s in statements.all)
    stored = Notification.objects.get(pk=notification.pk)
    assert stored.session_id == session.pk
    assert stored.detail == "The result's signature does not verify with its session."
    session.refresh_from_db()
    assert (session.stored_rejections, session.status) == (1, Status.PENDING)
    receivers["notification_rejected"].assert_called_once()


def test_rejected_result_of_a_known_session_beyond_its_budget(
    captured: Any, settings: Any, receivers: dict[str, mock.MagicMock]
) -> None:
    settings.ETPAY = {**settings.ETPAY, "MAX_REJECTED_PER_SESSION": 1}
    session = make_session()
    assert deliver(mint_jwt(session, key=WRONG_KEY)).pk is not None
    context, statements = captured()
    with context:
        notification = deliver(mint_jwt(session, key=WRONG_KEY))
    assert notification.pk is None
    assert_at_most(statements.sql, [f"SELECT {SESSION}", f"UPDATE {SESSION}"])
    assert Notification.objects.filter(session=session).count() == 1
    assert receivers["notification_rejected"].call_count == 1


def test_rejected_result_naming_no_session(captured: Any) -> None:
    stranger = PaymentSession(token="sess-nobody", signature_token="k" * 64, order_amount=1)
    context, statements = captured()
    with context:
        notification = deliver(mint_jwt(stranger))
    assert (notification.outcome, notification.reason) == (
        Outcome.REJECTED,
        Reason.UNKNOWN_SESSION,
    )
    # The session lookup, the hourly budget of unlinked rejections (counted), the row.
    assert_at_most(
        statements.sql, [f"SELECT {SESSION}", f"SELECT {NOTIFICATION}", f"INSERT {NOTIFICATION}"]
    )
    assert Notification.objects.filter(pk=notification.pk, session=None).exists()


def test_a_repeat_read_before_the_first_delivery_committed_is_decided_under_the_lock(
    receivers: dict[str, mock.MagicMock],
) -> None:
    # The repeat reads the session while it is still pending; the first delivery commits
    # before the repeat takes the lock. The locked re-read must see "paid": one transition.
    session = make_session()
    raw = mint_jwt(session)
    real = pipeline.changes_nothing
    first: list[Notification] = []
    calls: list[str] = []

    def first_delivery_commits_meanwhile(*args: Any) -> bool:
        answer = real(*args)
        calls.append(args[0].status)
        if len(calls) == 1:
            first.append(deliver(raw))
        return answer

    with mock.patch.object(pipeline, "changes_nothing", first_delivery_commits_meanwhile):
        repeat = deliver(raw)

    # The repeat saw "pending" (so went for the lock), the first delivery saw it too.
    assert calls == [Status.PENDING, Status.PENDING]
    assert first[0].outcome == Outcome.ACCEPTED
    assert (repeat.outcome, repeat.status_before, repeat.detail) == (
        Outcome.DUPLICATE,
        Status.PAID,
        "Already paid.",
    )
    receivers["payment_completed"].assert_called_once()
    assert OutboxEffect.objects.filter(session=session).count() == 1
    assert Notification.objects.filter(session=session, outcome=Outcome.ACCEPTED).count() == 1


def test_repeat_inside_the_callers_transaction(captured: Any) -> None:
    session, raw = paid_session()
    with transaction.atomic():
        notification = deliver(raw)
        assert Notification.objects.filter(pk=notification.pk).exists()
    session.refresh_from_db()
    assert session.stored_duplicates == 1


def test_each_result_is_verified_and_each_key_decrypted_once() -> None:
    from django_etpay import crypto, tokens

    session = make_session()
    raw = mint_jwt(session)
    session_id = session.pk
    with (
        mock.patch.object(tokens, "_decode", wraps=tokens._decode) as decode,
        mock.patch.object(crypto, "decrypt", wraps=crypto.decrypt) as decrypt,
    ):
        assert deliver(raw).outcome == Outcome.ACCEPTED  # the lock path
        assert deliver(raw).outcome == Outcome.DUPLICATE  # the fast path
    assert decode.call_count == 2
    assert decrypt.call_count == 2
    assert PaymentSession.objects.get(pk=session_id).status == Status.PAID


# -- initialize_session -----------------------------------------------------------------------


def test_initialize_session_in_autocommit_writes_twice(
    mocked_responses: responses_lib.RequestsMock, captured: Any
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)
    context, statements = captured()
    with context:
        session = services.initialize_session("OC-pinned-1", 1000)
    # The initializing row, then ETpay's tokens; no transaction of its own.
    assert_at_most(statements.all, [f"INSERT {SESSION}", f"UPDATE {SESSION}"])
    assert PaymentSession.objects.get(pk=session.pk).status == Status.PENDING


def test_initialize_session_in_a_transaction_guards_its_update_with_a_savepoint(
    mocked_responses: responses_lib.RequestsMock, captured: Any
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)
    context, statements = captured()
    with transaction.atomic(), context:
        services.initialize_session("OC-pinned-2", 1000)
    assert_at_most(statements.sql, [f"INSERT {SESSION}", f"UPDATE {SESSION}"])
    assert statements.all.count("SAVEPOINT") == 1


def test_initialize_session_in_autocommit_keeps_the_row_when_the_tokens_cannot_be_stored(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)
    mocked_responses.post(INIT_URL, json=REPLY)
    first = services.initialize_session("OC-pinned-3", 1000)
    with pytest.raises(EtpayResponseError) as caught:
        services.initialize_session("OC-pinned-4", 2000)
    second = PaymentSession.objects.get(pk=caught.value.session_id)
    assert (second.status, second.error_code, second.outcome_unknown) == (
        Status.ERROR,
        "storage",
        True,
    )
    assert second.error == "ETpay's session could not be stored (IntegrityError)."
    assert (second.token, second.signature_token) == (None, "")
    first.refresh_from_db()
    assert (first.status, first.token) == (Status.PENDING, "sess-pinned-1")


# -- the lock-free path refuses to change anything; a session gone before its lock -------------


def test_a_result_read_without_the_lock_may_not_change_the_session() -> None:
    # The guard behind changes_nothing(): a system error flags a pending session for
    # reconciliation (a field changes, no signal), so it must never be applied unlocked.
    session = make_session()
    verified = tokens.verify_payment_jwt(mint_system_error_jwt(session), session)
    with pytest.raises(
        RuntimeError, match=r"^A result read without the row lock would change the session\.$"
    ):
        pipeline._apply_verified(
            session, verified, channel=Channel.WEBHOOK, raw_body="", remote_addr=None, locked=False
        )
    session.refresh_from_db()
    assert session.needs_reconciliation is False
    assert Notification.objects.count() == 0


def test_a_session_deleted_before_its_lock_is_rejected_as_unknown() -> None:
    session = make_session()
    raw = mint_jwt(session)
    decide = pipeline.changes_nothing

    def delete_then_decide(target: PaymentSession, verified: Any) -> bool:
        PaymentSession.objects.filter(pk=target.pk).delete()
        return decide(target, verified)

    with mock.patch.object(pipeline, "changes_nothing", delete_then_decide):
        notification = services.process_notification(raw, channel=Channel.WEBHOOK)
    assert notification.outcome == Outcome.REJECTED
    assert notification.reason == Reason.UNKNOWN_SESSION
    assert notification.detail == "No session has the result's session_token."
    assert notification.session_id is None


# -- the storage budgets -----------------------------------------------------------------------


def test_each_counter_takes_its_own_budget_in_one_process() -> None:
    # A rejection and then a repeat of the same session each move their own counter.
    session = make_session()
    assert deliver(mint_jwt(session, key=WRONG_KEY)).outcome == Outcome.REJECTED
    assert deliver(mint_jwt(session)).outcome == Outcome.ACCEPTED
    assert deliver(mint_jwt(session)).outcome == Outcome.DUPLICATE
    assert deliver(mint_jwt(session, key=WRONG_KEY)).outcome == Outcome.REJECTED
    session.refresh_from_db()
    assert (session.stored_rejections, session.stored_duplicates) == (2, 1)
    assert Notification.objects.filter(session=session).count() == 4


def test_a_stored_repeat_is_returned_as_a_saved_row() -> None:
    _session, raw = paid_session()
    notification = deliver(raw)
    assert notification.pk is not None
    loaded = Notification.objects.get(pk=notification.pk)
    assert (notification._state.adding, notification._state.db) == (
        loaded._state.adding,
        loaded._state.db,
    )


def test_if_the_lock_free_decision_were_wrong_nothing_would_be_applied() -> None:
    # Should changes_nothing() ever call a pending session's success harmless, the pipeline
    # must refuse to apply it without the lock rather than pay the session unlocked.
    session = make_session()
    with (
        mock.patch.object(pipeline, "changes_nothing", return_value=True),
        pytest.raises(RuntimeError, match="without the row lock"),
    ):
        deliver(mint_jwt(session))
    session.refresh_from_db()
    assert session.status == Status.PENDING
    assert not Notification.objects.filter(outcome=Outcome.ACCEPTED).exists()


# -- status queries (reconcile) ---------------------------------------------------------------


def answer_status(mocked: responses_lib.RequestsMock, entries: list[dict[str, Any]]) -> None:
    mocked.add("POST", STATUS_URL, json=entries)


def test_a_run_records_an_answer_naming_no_payment_in_two_statements(
    captured: Any, mocked_responses: responses_lib.RequestsMock
) -> None:
    # Most due sessions were abandoned before the payer reached a bank: ETpay knows no
    # payment. The stamp confirms the status the run read, so no refresh is needed.
    session = make_session()
    answer_status(mocked_responses, [])
    context, statements = captured()
    with context:
        outcome, error = operations.reconcile_one(session)
    assert (outcome, error) == (operations.Outcome.UNKNOWN, "")
    assert statements.sql == [f"UPDATE {SESSION}", f"INSERT {NOTIFICATION}"]
    stored = PaymentSession.objects.get(pk=session.pk)
    assert stored.last_checked_at is not None
    assert session.last_checked_at == stored.last_checked_at
    record = Notification.objects.get(session=session)
    assert (record.reason, record.status_before) == (Reason.UNKNOWN_TO_ETPAY, Status.PENDING)


def test_a_status_changed_since_the_run_read_it_is_recorded_as_it_is_now(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    # The run read the session pending; a webhook paid it before ETpay's (stale) answer came.
    session = make_session()
    PaymentSession.objects.filter(pk=session.pk).update(status=Status.PAID)
    answer_status(mocked_responses, [])
    assert operations.reconcile_one(session)[0] == operations.Outcome.UNKNOWN
    record = Notification.objects.get(session=session)
    assert (record.status_before, record.status_after) == (Status.PAID, Status.PAID)
    stored = PaymentSession.objects.get(pk=session.pk)
    assert stored.status == Status.PAID
    assert stored.last_checked_at is not None
    assert session.status == Status.PAID


def test_reconcile_session_alone_refreshes_and_does_not_stamp(
    captured: Any, mocked_responses: responses_lib.RequestsMock
) -> None:
    session = make_session()
    PaymentSession.objects.filter(pk=session.pk).update(needs_reconciliation=True)
    answer_status(mocked_responses, [])
    context, statements = captured()
    with context:
        records = services.reconcile_session(session)
    assert [r.reason for r in records] == [Reason.UNKNOWN_TO_ETPAY]
    assert statements.sql == [f"SELECT {SESSION}", f"INSERT {NOTIFICATION}"]
    assert session.needs_reconciliation is True  # read back from the row
    assert PaymentSession.objects.get(pk=session.pk).last_checked_at is None


def test_a_run_stamps_a_paid_answer_without_reading_the_session_back(
    captured: Any, mocked_responses: responses_lib.RequestsMock
) -> None:
    session = make_session()
    claims = mint_payment_claims(session)
    answer_status(mocked_responses, [claims])
    context, statements = captured()
    with context:
        outcome, _error = operations.reconcile_one(session)
    assert outcome == operations.Outcome.PAID
    stored = PaymentSession.objects.get(pk=session.pk)
    assert (stored.status, stored.last_checked_at is not None) == (Status.PAID, True)
    assert session.last_checked_at == stored.last_checked_at
    assert session.status == Status.PENDING  # as read: the run does not need it refreshed
    assert statements.sql[-1] != f"SELECT {SESSION}"
    assert statements.sql.count(f"UPDATE {SESSION}") >= 2  # the transition and the stamp
