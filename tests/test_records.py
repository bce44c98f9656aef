"""What staff and operators read: rejection details stored on rows, and every log line.

The detail of a rejected or inert result is shown in the admin, and the log lines are how an
operator learns that results are refused, budgets are used up or a key cannot be decrypted.
They are part of the contract: these tests pin their wording, their arguments and their level,
and that none of them carries a JWT or a key.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses as responses_lib
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_etpay import dispatch, records, services, signals, tokens, values
from django_etpay.exceptions import EtpayVerificationError
from django_etpay.models import Notification, PaymentSession
from tests.factories import (
    DROP,
    PUBLIC_KEY_PEM,
    STATUS_URL,
    WRONG_KEY,
    failing_session_saves,
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


def lines(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[tuple[Any, ...]]:
    """(logger, level, message template, args) of django_etpay's records at ``level`` or up.

    The structured events (logger ``django_etpay.events``) are pinned in test_observability.
    """
    return [
        (r.name, r.levelname, r.msg, r.args)
        for r in caplog.records
        if r.name.startswith("django_etpay")
        and r.name != "django_etpay.events"
        and r.levelno >= level
    ]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="django_etpay")
    return caplog


def process(raw: str, channel: str = Channel.WEBHOOK, **kwargs: Any) -> Notification:
    return services.process_notification(raw, channel=channel, **kwargs)


# -- tokens: the message of every rejection ---------------------------------------------------


def verify_and_check(raw: Any, session: PaymentSession) -> None:
    tokens.check_against_session(tokens.verify_payment_jwt(raw, session), session)


def rejection(raw: Any, session: PaymentSession) -> EtpayVerificationError:
    with pytest.raises(EtpayVerificationError) as info:
        verify_and_check(raw, session)
    return info.value


SESSION = {
    "merchant_order_id": "OC-7",
    "order_amount": 50000,
    "currency": "CLP",
    "token": "sess-token-for-messages-0123456789abcdef",
    "signature_token": "sig-secret-for-messages-0123456789abcdef0123456789abcdef",
    "status": "pending",
}


@pytest.mark.parametrize(
    ("overrides", "reason", "message"),
    [
        (
            {"merchant_order_id": DROP},
            "invalid_claims",
            "The result carries no merchant_order_id.",
        ),
        (
            {"merchant_order_id": [1]},
            "invalid_claims",
            "The result's merchant_order_id is not a string.",
        ),
        (
            {"merchant_order_id": "OC-8"},
            "order_mismatch",
            "The result's merchant_order_id differs from the session's order.",
        ),
        ({"merchant_amount": DROP}, "invalid_claims", "The result carries no merchant_amount."),
        (
            {"merchant_amount": 49999},
            "amount_mismatch",
            "The result's amount (49999) differs from the session's (50000).",
        ),
        (
            {"merchant_amount": "1e3"},
            "invalid_claims",
            "The result's merchant_amount is not a whole number.",
        ),
        (
            {"merchant_currency": "USD"},
            "currency_mismatch",
            "The result's merchant_currency differs from the session's.",
        ),
        (
            {"session_token": "sess-another-one-0123456789"},
            "session_mismatch",
            "The result names another session than the one found.",
        ),
        (
            {"system_error": "no"},
            "invalid_claims",
            "The result's system_error claim is not a boolean.",
        ),
    ],
)
def test_claim_rejections_say_what_is_wrong(
    overrides: dict[str, Any], reason: str, message: str
) -> None:
    session = PaymentSession(**SESSION)
    err = rejection(mint_jwt(session, **overrides), session)
    assert (err.reason, err.message, str(err)) == (reason, message, message)


def test_signature_and_parse_rejections_say_what_is_wrong(logs: pytest.LogCaptureFixture) -> None:
    session = PaymentSession(**SESSION)
    bad_signature = rejection(mint_jwt(session, key=WRONG_KEY), session)
    assert bad_signature.message == "The result's signature does not verify with its session."
    future = rejection(mint_jwt(session, iat=int(time.time()) + 3600), session)
    assert future.reason == "invalid_claims"
    assert future.message.startswith("The result's registered claims are invalid (")
    # A stored key PyJWT refuses as an HMAC key (shaped like a PEM key): unusable.
    pem = PaymentSession(**{**SESSION, "signature_token": PUBLIC_KEY_PEM.decode()})
    unusable = rejection(mint_jwt(pem, key="another-key-of-sufficient-length-0123456789"), pem)
    assert (unusable.reason, unusable.message) == ("malformed", "The result is not a valid JWT.")
    assert lines(logs) == [
        (
            "django_etpay.tokens",
            "DEBUG",
            "ETpay result rejected: bad signature (%s)",
            ("InvalidSignatureError",),
        ),
        (
            "django_etpay.tokens",
            "DEBUG",
            "ETpay result rejected: invalid claims (%s)",
            ("ImmatureSignatureError",),
        ),
        (
            "django_etpay.tokens",
            "DEBUG",
            "ETpay result rejected: unparseable (%s)",
            ("InvalidKeyError",),
        ),
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "The result is empty."),
        ("  ", "The result is empty."),
        (None, "The result is empty."),
        ("é.é.é", "The result is not a JWT."),
        ("a.b.c", "The result is not a JWT."),
    ],
)
def test_unreadable_results_say_so(raw: Any, message: str) -> None:
    with pytest.raises(EtpayVerificationError) as info:
        tokens.read_unverified(raw)
    assert (info.value.reason, info.value.message) == ("malformed", message)


def test_unreadable_result_log_names_the_parser_error(logs: pytest.LogCaptureFixture) -> None:
    with pytest.raises(EtpayVerificationError):
        tokens.read_unverified("a.b.c")
    with (
        mock.patch("jwt.decode", side_effect=RecursionError),
        pytest.raises(EtpayVerificationError),
    ):
        tokens.read_unverified("a.b.c")
    session = PaymentSession(**SESSION)
    raw = mint_jwt(session)
    unverified = tokens.read_unverified(raw)
    # PyJWT read it unverified; here it fails only when it verifies.
    with (
        mock.patch("jwt.decode", side_effect=OverflowError),
        pytest.raises(EtpayVerificationError) as info,
    ):
        tokens.verify_payment_jwt(raw, session, unverified)
    err = info.value
    assert (err.reason, err.message) == ("malformed", "The result is not a valid JWT.")
    assert lines(logs) == [
        (
            "django_etpay.tokens",
            "DEBUG",
            "ETpay result rejected: not a JWT (%s)",
            ("DecodeError",),
        ),
        (
            "django_etpay.tokens",
            "DEBUG",
            "ETpay result rejected: not a JWT (%s)",
            ("RecursionError",),
        ),
        (
            "django_etpay.tokens",
            "DEBUG",
            "ETpay result rejected: unparseable (%s)",
            ("OverflowError",),
        ),
    ]


def test_session_token_and_missing_keys_say_so() -> None:
    with pytest.raises(EtpayVerificationError) as info:
        tokens.session_token_of({})
    assert info.value.message == "The result carries no usable session_token claim."
    session = PaymentSession(**{**SESSION, "signature_token": ""})
    err = rejection(mint_jwt(PaymentSession(**SESSION)), session)
    assert (err.reason, err.message) == (
        "unknown_session",
        "The session has no ETpay tokens to verify with.",
    )


def test_system_error_signed_with_the_key_keeps_its_claim_errors() -> None:
    # Verified with the signature key but with an iat in the future: invalid claims, not a
    # retry with the session token (which would call it a bad signature).
    session = PaymentSession(**SESSION)
    claims = {"session_token": session.token, "system_error": True, "iat": int(time.time()) + 3600}
    err = rejection(sign(claims, session.signature_token), session)
    assert err.reason == "invalid_claims"


# -- services: details and log lines of every path ---------------------------------------------


def test_accepted_result_detail_log_and_signal_sender(
    logs: pytest.LogCaptureFixture,
    receivers: dict[str, mock.MagicMock],
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = make_session()
    with django_capture_on_commit_callbacks(execute=True):
        notification = process(mint_jwt(session))
    assert notification.detail == "pending -> paid."
    assert lines(logs) == [
        (
            "django_etpay",
            "INFO",
            "ETpay session %s for order %s: %s -> %s (%s)",
            (session.pk, session.merchant_order_id, "pending", "paid", "webhook"),
        ),
    ]
    assert receivers["payment_completed"].call_args.kwargs["sender"] is PaymentSession


def test_duplicate_details_and_logs(logs: pytest.LogCaptureFixture, settings: Any) -> None:
    session = make_session()
    raw = mint_jwt(session)
    process(raw)
    logs.clear()
    repeat = process(raw)
    other_payment = process(mint_jwt(session, payment_token="pay-another"))
    stale = process(mint_jwt(session, payment_status=False))
    unknown = process(mint_system_error_jwt(session))
    assert [n.detail for n in (repeat, other_payment, stale, unknown)] == [
        "Already paid.",
        "Already paid by another payment_token.",
        "A failure result does not change a paid session.",
        "Payment outcome unknown; the session needs reconciling.",
    ]
    pk = session.pk
    nothing = "ETpay %s result for session %s changes nothing (%s)"
    assert lines(logs) == [
        ("django_etpay", "DEBUG", nothing, ("webhook", pk, "duplicate")),
        (
            "django_etpay",
            "WARNING",
            "ETpay %s result for session %s reports a second payment_token",
            ("webhook", pk),
        ),
        # The extra payment is recorded once (django_etpay.duplicates).
        (
            "django_etpay",
            "WARNING",
            "ETpay session %s for order %s was paid more than once (another payment_token); "
            "the extra payment is the shop's to give back",
            (pk, session.merchant_order_id),
        ),
        ("django_etpay", "DEBUG", nothing, ("webhook", pk, "not_applicable")),
        ("django_etpay", "DEBUG", nothing, ("webhook", pk, "not_applicable")),
        # A system error is first tried with the signature key, then with the session token.
        (
            "django_etpay.tokens",
            "DEBUG",
            "ETpay result rejected: bad signature (%s)",
            ("InvalidSignatureError",),
        ),
        ("django_etpay", "DEBUG", nothing, ("webhook", pk, "system_error")),
    ]
    settings.ETPAY = {**settings.ETPAY, "MAX_DUPLICATES_PER_SESSION": 0}
    logs.clear()
    over = process(raw, channel=Channel.REDIRECT)
    assert over.pk is None
    assert lines(logs) == [
        (
            "django_etpay",
            "WARNING",
            "ETpay %s result for session %s changes nothing (%s), not stored: budget used up",
            ("redirect", pk, "duplicate"),
        ),
        ("django_etpay", "DEBUG", nothing, ("redirect", pk, "duplicate")),
    ]


def test_untrusted_browser_detail(settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "ACCEPT_BROWSER_RESULTS": False}
    notification = process(mint_jwt(make_session()), channel=Channel.WIDGET)
    assert notification.detail == (
        "Browser results do not change a status (ACCEPT_BROWSER_RESULTS is off)."
    )


def test_rejection_logs_and_signal(
    logs: pytest.LogCaptureFixture,
    receivers: dict[str, mock.MagicMock],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    session = make_session()
    with django_capture_on_commit_callbacks(execute=True):
        linked = process(mint_jwt(session, key=WRONG_KEY))
        unknown = process(mint_jwt(session, session_token="sess-nobody-0123456789"))
    assert unknown.detail == "No session has the result's session_token."
    assert lines(logs) == [
        (
            "django_etpay.tokens",
            "DEBUG",
            "ETpay result rejected: bad signature (%s)",
            ("InvalidSignatureError",),
        ),
        (
            "django_etpay",
            "INFO",
            "ETpay %s result rejected (%s) for session %s",
            ("webhook", "bad_signature", session.pk),
        ),
        (
            "django_etpay",
            "INFO",
            "ETpay %s result rejected (%s) for session %s",
            ("webhook", "unknown_session", "unknown"),
        ),
    ]
    assert [c.kwargs["sender"] for c in receivers["notification_rejected"].call_args_list] == [
        Notification,
        Notification,
    ]
    assert linked.session_id == session.pk
    # A rejection with a known session does not ask for reconciliation: it proves nothing.
    session.refresh_from_db()
    assert session.needs_reconciliation is False

    settings.ETPAY = {
        **settings.ETPAY,
        "MAX_REJECTED_PER_SESSION": 0,
        "MAX_UNLINKED_REJECTED_PER_HOUR": 0,
    }
    logs.clear()
    process(mint_jwt(session, key=WRONG_KEY), channel=Channel.REDIRECT)
    process("garbage", channel=Channel.WIDGET)
    warnings = lines(logs, logging.WARNING)
    template = "ETpay %s result for session %s rejected (%s), not stored: budget used up"
    assert warnings == [
        ("django_etpay", "WARNING", template, ("redirect", session.pk, "bad_signature")),
        ("django_etpay", "WARNING", template, ("widget", "unknown", "malformed")),
    ]


def test_record_rejection_without_a_body_stores_an_empty_one() -> None:
    notification = services.record_rejection(
        channel=Channel.REDIRECT, reason=Reason.TOO_LARGE, detail="x"
    )
    notification.refresh_from_db()
    assert (notification.raw_body, notification.remote_addr, notification.claims) == (
        "",
        None,
        None,
    )


def test_internal_failure_logs_with_the_traceback_and_keeps_the_forensics(
    logs: pytest.LogCaptureFixture,
) -> None:
    session = make_session()
    raw = mint_jwt(session)
    with failing_session_saves(), pytest.raises(RuntimeError):
        process(raw, remote_addr="198.51.100.9")
    record = Notification.objects.get(session=session)
    assert record.detail == "Processing failed (RuntimeError); the result was not applied."
    assert (record.remote_addr, record.raw_body) == ("198.51.100.9", raw)
    assert record.claims is not None
    assert record.claims["merchant_order_id"] == session.merchant_order_id
    errors = [r for r in logs.records if r.levelno >= logging.ERROR]
    assert [(r.msg, r.args) for r in errors] == [
        (
            "ETpay %s result for session %s could not be processed (%s)",
            ("webhook", session.pk, "RuntimeError"),
        ),
    ]
    assert errors[0].exc_info is not None
    assert raw not in logs.text
    assert session.signature_token not in logs.text


def test_database_failure_before_the_session_is_found(logs: pytest.LogCaptureFixture) -> None:
    session = make_session()

    def lookup_fails(execute: Any, sql: str, *args: Any) -> Any:
        if sql.startswith("SELECT") and '"django_etpay_paymentsession"' in sql:
            raise DatabaseError("down")
        return execute(sql, *args)

    with connection.execute_wrapper(lookup_fails), pytest.raises(DatabaseError):
        process(mint_jwt(session), remote_addr="198.51.100.10")
    record = Notification.objects.get()
    assert (record.reason, record.session_id, record.remote_addr) == (
        "internal_error",
        None,
        "198.51.100.10",
    )
    assert [(r.msg, r.args) for r in logs.records if r.levelno >= logging.ERROR] == [
        (
            "ETpay %s result for session %s could not be processed (%s)",
            ("webhook", "unknown", "DatabaseError"),
        ),
    ]


def test_when_the_failure_cannot_be_stored_either(logs: pytest.LogCaptureFixture) -> None:
    session = make_session()
    with (
        failing_session_saves(),
        mock.patch.object(records, "record_rejection", side_effect=DatabaseError("gone")),
        pytest.raises(RuntimeError),
    ):
        process(mint_jwt(session))
    assert [(r.msg, r.args) for r in logs.records if r.levelno >= logging.ERROR][1:] == [
        ("ETpay %s result could not be stored either (%s)", ("webhook", "DatabaseError")),
    ]


def test_failing_receiver_is_logged_by_name(
    logs: pytest.LogCaptureFixture, django_capture_on_commit_callbacks: Any
) -> None:
    # notification_rejected goes out on commit directly (the payment signals go through the
    # outbox, which logs its own failures).
    def shop_receiver(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("shop bug")

    signals.notification_rejected.connect(shop_receiver, weak=False, dispatch_uid="msg-1")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            process(mint_jwt(make_session(), key=WRONG_KEY))
    finally:
        signals.notification_rejected.disconnect(dispatch_uid="msg-1")
    errors = [r for r in logs.records if r.name == "django_etpay" and r.levelno >= logging.ERROR]
    assert [(r.msg, r.args) for r in errors] == [
        (
            "Receiver %s of a django_etpay signal raised %s",
            ("test_failing_receiver_is_logged_by_name.<locals>.shop_receiver", "RuntimeError"),
        ),
    ]
    assert errors[0].exc_info is not None


def test_a_receiver_without_a_qualified_name_is_logged_by_its_class(
    logs: pytest.LogCaptureFixture, django_capture_on_commit_callbacks: Any
) -> None:
    class CallableReceiver:
        def __call__(self, sender: Any, **kwargs: Any) -> None:
            raise ValueError("bug")

    error = ValueError("bug")
    stub = mock.Mock(send_robust=mock.Mock(return_value=[(CallableReceiver(), error), (1, 2)]))
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.send_on_commit(stub, sender=PaymentSession, using="default", session=None)
    stub.send_robust.assert_called_once_with(sender=PaymentSession, session=None)
    assert [(r.msg, r.args, r.exc_info[1]) for r in logs.records if r.exc_info] == [
        (
            "Receiver %s of a django_etpay signal raised %s",
            (
                "test_a_receiver_without_a_qualified_name_is_logged_by_its_class.<locals>."
                "CallableReceiver",
                "ValueError",
            ),
            error,
        ),
    ]


def test_a_transition_writes_only_the_columns_it_changes() -> None:
    session = make_session()
    with CaptureQueriesContext(connection) as queries:
        process(mint_jwt(session))
    # The session's save(update_fields=...): its SET clause.
    [update] = [
        match.group(1)
        for q in queries.captured_queries
        if (match := re.search(r'UPDATE "django_etpay_paymentsession" SET (.*?) WHERE', q["sql"]))
    ]
    assert '"status"' in update
    assert '"payer_bank"' in update
    for untouched in ('"merchant_order_id"', '"order_amount"', '"signature_token"', '"metadata"'):
        assert untouched not in update


# -- services: storage edges -------------------------------------------------------------------


def test_long_payment_token_is_cut_and_its_repeat_is_a_plain_duplicate() -> None:
    session = make_session()
    token = "p" * 300
    process(mint_jwt(session, payment_token=token))
    session.refresh_from_db()
    assert session.payment_token == token[:255]
    repeat = process(mint_jwt(session, payment_token=token))
    assert (repeat.outcome, repeat.reason, repeat.payment_token) == (
        Outcome.DUPLICATE,
        "",
        token[:255],
    )


def test_payer_claims_that_are_not_strings_are_not_stored() -> None:
    session = make_session()
    process(mint_jwt(session, user_bank=12, user_account=None, payment_token=["x"]))
    session.refresh_from_db()
    assert (session.status, session.payer_bank, session.payer_account, session.payment_token) == (
        Status.PAID,
        "",
        "",
        "",
    )


@pytest.mark.parametrize("address", ["fe80::1%eth0", "not-an-ip", "", "999.1.1.1"])
def test_unusable_remote_addresses_are_dropped(address: str) -> None:
    notification = process("garbage", remote_addr=address)
    notification.refresh_from_db()
    assert notification.remote_addr is None


def test_raw_body_cut_exactly_at_the_byte_limit(settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_STORE_BYTES": 10}
    exact = process("x" * 10)
    over = process("x" * 11)
    # A two-byte character across the limit is dropped whole, never half-stored.
    split = process("x" * 9 + "é")
    assert (exact.raw_body, exact.raw_body_truncated) == ("x" * 10, False)
    assert (over.raw_body, over.raw_body_truncated) == ("x" * 10, True)
    assert (split.raw_body, split.raw_body_truncated) == ("x" * 9, True)


def test_stored_claims_keep_unicode_and_lose_only_what_cannot_be_stored() -> None:
    session = make_session()
    notification = process(
        mint_jwt(
            session, merchant_amount=1, user_bank="Itaú ✓", extra={"n\x00": ["a\ud800", 1.5, None]}
        )
    )
    notification.refresh_from_db()
    assert notification.claims is not None
    assert notification.claims["user_bank"] == "Itaú ✓"
    assert notification.claims["extra"] == {"n\ufffd": ["a\ufffd", 1.5, None]}


def test_claims_exactly_at_the_store_limit_are_kept(settings: Any) -> None:
    claims = {"session_token": "s", "x": "y"}
    size = len(json.dumps(claims))
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_STORE_BYTES": size}
    assert values.storable_claims(claims) == claims
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_STORE_BYTES": size - 1}
    assert values.storable_claims(claims) is None


def test_unlinked_budget_counts_the_last_hour_of_unlinked_rejections(settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "MAX_UNLINKED_REJECTED_PER_HOUR": 2}
    for _ in range(2):
        process("garbage")
    # Two hours ago no longer counts; linked rejections never count.
    Notification.objects.update(created_at=timezone.now() - timedelta(minutes=61))
    session = make_session()
    for _ in range(3):
        process(mint_jwt(session, key=WRONG_KEY))
    fresh = [process("garbage") for _ in range(3)]
    assert [n.pk is not None for n in fresh] == [True, True, False]


# -- reconcile and expire ----------------------------------------------------------------------


def test_reconcile_reads_past_other_sessions_and_keeps_what_etpay_said(
    mocked_responses: responses_lib.RequestsMock, logs: pytest.LogCaptureFixture
) -> None:
    session = make_session(needs_reconciliation=True)
    other = make_session()
    own = {
        "session_token": session.token,
        "merchant_order_id": session.merchant_order_id,
        "merchant_amount": 1,
        "payment_status": "success",
        "user_bank": "Itaú",
    }
    right = {**own, "merchant_amount": session.order_amount}
    mocked_responses.post(STATUS_URL, json=[{"session_token": other.token}, own, right])
    before = PaymentSession.objects.get(pk=session.pk).updated_at
    rejected, accepted = services.reconcile_session(session)
    assert rejected.reason == Reason.AMOUNT_MISMATCH
    assert rejected.claims == own
    assert rejected.raw_body == json.dumps(own, ensure_ascii=False)
    assert "Itaú" in accepted.raw_body
    assert session.status == Status.PAID
    assert session.needs_reconciliation is False
    assert session.updated_at > before
    assert (
        "django_etpay",
        "DEBUG",
        "ETpay status entry for another session ignored (session %s)",
        (session.pk,),
    ) in lines(logs)


def test_reconcile_of_a_settled_unflagged_session_writes_nothing(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    session = make_session()
    process(mint_jwt(session))
    before = PaymentSession.objects.get(pk=session.pk).updated_at
    entry = {k: v for k, v in mint_payment_claims(session).items() if k != "iat"}
    mocked_responses.post(STATUS_URL, json=[entry])
    [repeat] = services.reconcile_session(session)
    assert repeat.outcome == Outcome.DUPLICATE
    assert PaymentSession.objects.get(pk=session.pk).updated_at == before


def test_expire_updates_the_rows_and_the_sessions_it_signals(
    receivers: dict[str, mock.MagicMock],
    logs: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = make_session()
    PaymentSession.objects.filter(pk=session.pk).update(
        created_at=timezone.now() - timedelta(hours=2),
        updated_at=timezone.now() - timedelta(hours=2),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.expire_sessions() == 1
    stored = PaymentSession.objects.get(pk=session.pk)
    assert stored.updated_at > timezone.now() - timedelta(minutes=1)
    kwargs = receivers["session_expired"].call_args.kwargs
    assert kwargs["sender"] is PaymentSession
    assert (kwargs["session"].status, kwargs["session"].updated_at) == (
        Status.EXPIRED,
        stored.updated_at,
    )
    [(name, level, message, args)] = lines(logs, logging.INFO)
    assert (name, level, message, args[0]) == (
        "django_etpay",
        "INFO",
        "Expired %d ETpay sessions pending since before %s",
        1,
    )
    assert args[1] < timezone.now() - timedelta(minutes=59)


def test_a_detail_is_cut_at_2000_characters() -> None:
    session = make_session()
    notification = process(mint_jwt(session, merchant_amount=int("9" * 2500)))
    notification.refresh_from_db()
    assert notification.reason == Reason.AMOUNT_MISMATCH
    assert len(notification.detail) == 2000
    assert notification.detail.startswith("The result's amount (999")


def test_reconcile_clearing_the_flag_alone_touches_updated_at(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    session = make_session()
    process(mint_jwt(session))
    long_ago = timezone.now() - timedelta(days=1)
    PaymentSession.objects.filter(pk=session.pk).update(
        needs_reconciliation=True, updated_at=long_ago
    )
    entry = {k: v for k, v in mint_payment_claims(session).items() if k != "iat"}
    mocked_responses.post(STATUS_URL, json=[entry])
    [repeat] = services.reconcile_session(session)
    assert repeat.outcome == Outcome.DUPLICATE
    assert session.needs_reconciliation is False
    assert session.updated_at > long_ago


def test_a_status_query_that_knows_no_payment_leaves_a_worded_trace(
    mocked_responses: responses_lib.RequestsMock, logs: pytest.LogCaptureFixture
) -> None:
    session = make_session()
    mocked_responses.post(STATUS_URL, json=[])
    [trace] = services.reconcile_session(session)
    other = make_session()
    mocked_responses.replace(responses_lib.POST, STATUS_URL, json=[{"session_token": "x"}] * 2)
    [trace_with_others] = services.reconcile_session(other)
    assert (trace.outcome, trace.reason, trace.raw_body) == (
        Outcome.DUPLICATE,
        Reason.UNKNOWN_TO_ETPAY,
        "",
    )
    assert trace.detail == "ETpay's status query returned no payment for this session."
    assert trace_with_others.detail == (
        "ETpay's status query returned no payment for this session (2 entries for other sessions)."
    )
    assert (
        "django_etpay",
        "INFO",
        "ETpay knows no payment of session %s (status query)",
        (session.pk,),
    ) in lines(logs)


def test_expiry_records_its_effect_with_the_previous_status() -> None:
    from django_etpay.models import OutboxEffect

    session = make_session()
    PaymentSession.objects.filter(pk=session.pk).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    assert services.expire_sessions() == 1
    effect = OutboxEffect.objects.get(session=session)
    assert (effect.kind, effect.previous_status) == (
        OutboxEffect.Kind.SESSION_EXPIRED,
        Status.PENDING,
    )
