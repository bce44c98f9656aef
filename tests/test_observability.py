"""The structured events (logger ``django_etpay.events``) and the OpenTelemetry spans.

One event per call to ETpay, per result processed and per state change, each with every
documented field (docs/observability.md), none of them ever holding a secret; the same fields
as attributes of one span per call and per result when OpenTelemetry is installed, and
nothing broken when it is not.
"""

from __future__ import annotations

import importlib
import itertools
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses as responses_lib
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string

from django_etpay import observability, records, services
from django_etpay.client import get_client
from django_etpay.exceptions import (
    EtpayConnectionError,
    EtpayHTTPError,
    EtpayResponseError,
    EtpayTimeoutError,
)
from django_etpay.models import Notification, PaymentSession
from tests.factories import load_fixture, make_session, mint_jwt

pytestmark = pytest.mark.django_db

try:  # the span tests need the SDK (the test extra has it); the event tests do not
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
except ImportError:  # pragma: no cover - every tox env installs the test extra
    trace = None  # type: ignore[assignment]

Channel = Notification.Channel
Outcome = Notification.Outcome
Status = PaymentSession.Status

INIT_URL = "https://api.etpay.test/session/initialize"
STATUS_URL = "https://api.etpay.test/merchant/check_payment_status"
API_TOKEN = django_settings.TEST_MERCHANT_API_TOKEN
SIGNATURE = "sig-observed-SECRET-9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c"
REPLY = {"token": "sess-observed-1", "signature_token": SIGNATURE, "terms_url": ""}

#: Each read of the clock is 250 ms after the one before: every latency is exactly 250.0.
STEP = 0.25


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider, exporting to memory (set once: OpenTelemetry's rule)."""
    if trace is None:  # pragma: no cover
        pytest.skip("needs opentelemetry-sdk")
    memory = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    # else an earlier pytest run in this process set it (mutmut runs pytest in-process more
    # than once) and it cannot be replaced: this module's exporter is added to it.
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield memory
    # The provider stays (it cannot be unset); the tests after these keep nothing in memory.
    memory.shutdown()


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


@pytest.fixture(autouse=True)
def event_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = itertools.count()
    monkeypatch.setattr(observability, "_clock", lambda: next(ticks) * STEP)


@pytest.fixture
def caught(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The documented fields of every event record, and its level."""
    found = []
    for record in caplog.records:
        if record.name == observability.EVENTS_LOGGER:
            fields = {name: getattr(record, name) for name in observability.FIELDS}
            found.append({"level": record.levelname, **fields})
    return found


def only(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [e for e in events(caplog) if e["etpay_event"] == event]


def base(**values: Any) -> dict[str, Any]:
    """An event: every field ``None`` except ``values``."""
    return {"level": "INFO", **dict.fromkeys(observability.FIELDS), **values}


def entry_for(session: PaymentSession, **overrides: Any) -> dict[str, Any]:
    entry = load_fixture("payment_status_success.json", session, **overrides)
    entry.pop("iat", None)
    return entry


# -- results -------------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", [Channel.WEBHOOK, Channel.REDIRECT, Channel.WIDGET])
def test_an_accepted_result_gives_a_result_and_a_state_change(
    caught: pytest.LogCaptureFixture, settings: Any, channel: str
) -> None:
    settings.ETPAY = {**settings.ETPAY, "ACCEPT_BROWSER_RESULTS": True}
    session = make_session(merchant="")
    notification = services.process_notification(mint_jwt(session), channel=channel)

    common = {
        "etpay_session_id": session.pk,
        "etpay_merchant": "",
        "etpay_channel": channel,
        "etpay_outcome": "accepted",
        "etpay_reason": "",
        "etpay_latency_ms": 250.0,
        "etpay_notification_id": notification.pk,
        "etpay_stored": True,
        "etpay_status_before": "pending",
        "etpay_status_after": "paid",
        "etpay_cause": "result",
    }
    assert events(caught) == [
        base(etpay_event="result", **common),
        base(etpay_event="state_change", **common),
    ]
    # Plain text, not the choices' enum members: what a JSON encoder writes as it is.
    assert type(events(caught)[0]["etpay_channel"]) is str


def test_a_duplicate_changes_nothing_and_says_so(caught: pytest.LogCaptureFixture) -> None:
    session = make_session()
    services.process_notification(mint_jwt(session), channel=Channel.WEBHOOK)
    caught.clear()
    again = services.process_notification(mint_jwt(session), channel=Channel.WEBHOOK)

    assert events(caught) == [
        base(
            etpay_event="result",
            etpay_session_id=session.pk,
            etpay_merchant="",
            etpay_channel="webhook",
            etpay_outcome="duplicate",
            etpay_reason=again.reason,
            etpay_latency_ms=250.0,
            etpay_notification_id=again.pk,
            etpay_stored=True,
            etpay_status_before="paid",
            etpay_status_after="paid",
            etpay_cause="result",
        )
    ]


def test_a_rejection_names_its_reason_and_moves_nothing(caught: pytest.LogCaptureFixture) -> None:
    session = make_session()
    rejected = services.process_notification(
        mint_jwt(session, key="a-key-nobody-was-given-0123456789abcdefghijklmnop"),
        channel=Channel.WEBHOOK,
        remote_addr="203.0.113.9",
    )

    assert rejected.reason == "bad_signature"
    assert events(caught) == [
        base(
            etpay_event="result",
            etpay_session_id=session.pk,
            etpay_merchant="",
            etpay_channel="webhook",
            etpay_outcome="rejected",
            etpay_reason="bad_signature",
            etpay_latency_ms=250.0,
            etpay_notification_id=rejected.pk,
            etpay_stored=True,
            etpay_status_before="pending",
            etpay_status_after="pending",
            etpay_cause="result",
        )
    ]


def test_a_result_naming_no_session_has_no_session_fields(
    caught: pytest.LogCaptureFixture,
) -> None:
    services.process_notification("not-a-jwt", channel=Channel.WEBHOOK)

    [event] = events(caught)
    assert event["etpay_outcome"] == "rejected"
    assert event["etpay_reason"] == "malformed"
    assert event["etpay_session_id"] is None
    assert event["etpay_merchant"] is None
    assert event["etpay_stored"] is True


def test_a_rejection_beyond_the_budget_is_reported_as_not_stored(
    caught: pytest.LogCaptureFixture, settings: Any
) -> None:
    settings.ETPAY = {**settings.ETPAY, "MAX_REJECTED_PER_SESSION": 0}
    session = make_session()
    services.process_notification(mint_jwt(session, merchant_amount=1), channel=Channel.WEBHOOK)

    [event] = events(caught)
    assert (event["etpay_outcome"], event["etpay_stored"]) == ("rejected", False)
    assert event["etpay_notification_id"] is None


def test_a_body_refused_by_a_view_is_one_result(caught: pytest.LogCaptureFixture) -> None:
    # What the views record directly (a body too large to read, say) is a result too.
    records.record_rejection(channel=Channel.WEBHOOK, reason="too_large", detail="Too large.")

    [event] = events(caught)
    assert (event["etpay_event"], event["etpay_reason"]) == ("result", "too_large")


def test_a_failure_while_processing_is_reported_and_raised(
    caught: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = make_session()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr("django_etpay.pipeline._apply_verified", broken)
    with pytest.raises(RuntimeError):
        services.process_notification(mint_jwt(session), channel=Channel.WEBHOOK)

    # One event, from the outermost function: the record of the internal error stored inside
    # it emits none of its own.
    assert events(caught) == [
        base(
            level="WARNING",
            etpay_event="result",
            etpay_channel="webhook",
            etpay_outcome="rejected",
            etpay_reason="internal_error",
            etpay_latency_ms=250.0,
            etpay_cause="result",
        )
    ]


# -- a reconciliation: the call, then each result ---------------------------------------------


def test_a_reconciliation_gives_the_call_then_its_results(
    caught: pytest.LogCaptureFixture, mocked_responses: responses_lib.RequestsMock
) -> None:
    session = make_session(needs_reconciliation=True)
    mocked_responses.post(STATUS_URL, json=[entry_for(session)])

    [notification] = services.reconcile_session(session)

    assert [(e["etpay_event"], e["etpay_channel"]) for e in events(caught)] == [
        ("call", "poll"),
        ("result", "poll"),
        ("state_change", "poll"),
    ]
    call, result, change = events(caught)
    assert call == base(
        etpay_event="call",
        etpay_session_id=session.pk,
        etpay_merchant="",
        etpay_channel="poll",
        etpay_outcome="ok",
        etpay_reason="",
        etpay_latency_ms=250.0,
        etpay_operation="check_status",
        etpay_http_status=200,
        etpay_outcome_unknown=False,
        etpay_attempts=1,
    )
    assert result["etpay_notification_id"] == notification.pk
    assert (change["etpay_status_before"], change["etpay_status_after"]) == ("pending", "paid")


def test_a_reconciliation_etpay_knows_nothing_of_is_one_result(
    caught: pytest.LogCaptureFixture, mocked_responses: responses_lib.RequestsMock
) -> None:
    session = make_session()
    mocked_responses.post(STATUS_URL, json=[])

    services.reconcile_session(session)

    [_call, result] = events(caught)
    assert (result["etpay_channel"], result["etpay_outcome"], result["etpay_reason"]) == (
        "poll",
        "duplicate",
        "unknown_to_etpay",
    )
    assert result["etpay_session_id"] == session.pk


def test_the_call_outside_a_session_names_none(
    caught: pytest.LogCaptureFixture, mocked_responses: responses_lib.RequestsMock
) -> None:
    mocked_responses.post(STATUS_URL, json=[])
    get_client().check_payment_status(merchant_order_id="OC-1")
    [call] = events(caught)
    assert call["etpay_session_id"] is None
    assert call["etpay_operation"] == "check_status"


def test_a_call_refused_before_anything_was_sent_emits_nothing(
    caught: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ValueError, match="needs session_token"):
        get_client().check_payment_status()
    assert events(caught) == []


# -- calls to ETpay: every outcome ------------------------------------------------------------


CALL_FAILURES = {
    "connect-timeout": (
        {"body": requests.ConnectTimeout("connect timed out")},
        EtpayTimeoutError,
        ("timeout", None, False, 2),
    ),
    "read-timeout": (
        {"body": requests.ReadTimeout("read timed out")},
        EtpayTimeoutError,
        ("timeout", None, True, 1),
    ),
    "connection": (
        {"body": requests.ConnectionError("connection reset")},
        EtpayConnectionError,
        ("connection", None, True, 1),
    ),
    "http-4xx": (
        {"status": 401, "json": {"message": f"bad token {API_TOKEN}"}},
        EtpayHTTPError,
        ("http_error", 401, False, 1),
    ),
    "http-5xx": ({"status": 503, "body": "down"}, EtpayHTTPError, ("http_error", 503, True, 1)),
    "bad-response": (
        {"status": 200, "body": f"not json {SIGNATURE}"},
        EtpayResponseError,
        ("bad_response", 200, True, 1),
    ),
    "reply-without-tokens": (
        {"status": 200, "json": {"token": "only"}},
        EtpayResponseError,
        ("bad_response", 200, True, 1),
    ),
}


@pytest.mark.parametrize(
    ("reply", "error", "expected"), CALL_FAILURES.values(), ids=CALL_FAILURES.keys()
)
def test_every_failed_call_is_one_event_with_its_outcome(
    caught: pytest.LogCaptureFixture,
    mocked_responses: responses_lib.RequestsMock,
    settings: Any,
    reply: dict[str, Any],
    error: type[Exception],
    expected: tuple[str, int | None, bool, int],
) -> None:
    settings.ETPAY = {**settings.ETPAY, "CONNECT_RETRIES": 1}
    mocked_responses.post(INIT_URL, **reply)

    with pytest.raises(error):
        services.initialize_session("OC-OBS-1", 1000)

    row = PaymentSession.objects.get(merchant_order_id="OC-OBS-1")
    outcome, http_status, unknown, attempts = expected
    [call, change] = events(caught)
    assert call == base(
        level="WARNING",
        etpay_event="call",
        etpay_session_id=row.pk,
        etpay_merchant="",
        etpay_outcome=outcome,
        etpay_reason=outcome,
        etpay_latency_ms=250.0,
        etpay_operation="initialize",
        etpay_http_status=http_status,
        etpay_outcome_unknown=unknown,
        etpay_attempts=attempts,
    )
    assert change == base(
        etpay_event="state_change",
        etpay_session_id=row.pk,
        etpay_merchant="",
        etpay_reason=outcome,
        etpay_outcome_unknown=unknown,
        etpay_status_before="initializing",
        etpay_status_after="error",
        etpay_cause="initialize",
    )


def test_a_successful_initialisation_is_a_call_and_a_state_change(
    caught: pytest.LogCaptureFixture, mocked_responses: responses_lib.RequestsMock
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)

    session = services.initialize_session("OC-OBS-2", 1000)

    [call, change] = events(caught)
    assert (call["etpay_outcome"], call["etpay_http_status"], call["etpay_attempts"]) == (
        "ok",
        200,
        1,
    )
    assert call["etpay_session_id"] == session.pk
    assert call["etpay_channel"] is None
    assert change == base(
        etpay_event="state_change",
        etpay_session_id=session.pk,
        etpay_merchant="",
        etpay_reason="",
        etpay_outcome_unknown=False,
        etpay_status_before="initializing",
        etpay_status_after="pending",
        etpay_cause="initialize",
    )


def test_the_merchant_alias_is_the_calls_account(
    caught: pytest.LogCaptureFixture, mocked_responses: responses_lib.RequestsMock, settings: Any
) -> None:
    settings.ETPAY = {
        **settings.ETPAY,
        "MERCHANTS": {
            "outlet": {
                "MERCHANT_CODE": "cl_outlet",
                "MERCHANT_API_TOKEN": "outlet-api-token-SECRET",
                "API_URL": "https://outlet-api.etpay.test/v1",
                "PMT_URL": "https://outlet-pmt.etpay.test",
            }
        },
    }
    mocked_responses.post("https://outlet-api.etpay.test/v1/session/initialize", json=REPLY)

    services.initialize_session("OC-OBS-3", 1000, merchant="outlet")

    assert [e["etpay_merchant"] for e in events(caught)] == ["outlet", "outlet"]


def test_expiry_is_a_state_change_per_session(caught: pytest.LogCaptureFixture) -> None:
    old = make_session()
    PaymentSession.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))

    assert services.expire_sessions(timedelta(days=1)) == 1

    assert only(caught, "state_change") == [
        base(
            etpay_event="state_change",
            etpay_session_id=old.pk,
            etpay_merchant="",
            etpay_reason="",
            etpay_outcome_unknown=False,
            etpay_status_before="pending",
            etpay_status_after="expired",
            etpay_cause="expire",
        )
    ]


def test_an_undocumented_field_is_refused() -> None:
    with pytest.raises(ValueError, match="etpay_secret"):
        observability._emit(logging.INFO, "x", (), etpay_secret="no")


# -- secrets ------------------------------------------------------------------------------------


def _everything_in(record: logging.LogRecord) -> str:
    return " ".join(
        [record.getMessage(), *(f"{name}={value!r}" for name, value in vars(record).items())]
    )


def test_no_record_ever_carries_a_secret(
    caught: pytest.LogCaptureFixture,
    mocked_responses: responses_lib.RequestsMock,
    spans: InMemorySpanExporter,
    settings: Any,
) -> None:
    settings.ETPAY = {**settings.ETPAY, "ACCEPT_BROWSER_RESULTS": True}
    # Initialisation: the request carries the API token, the reply the signature key.
    mocked_responses.post(INIT_URL, json=REPLY)
    session = services.initialize_session("OC-OBS-4", 50000)
    # Every channel, accepted, duplicate and rejected results.
    jwt = mint_jwt(session)
    services.process_notification(jwt, channel=Channel.WIDGET)
    services.process_notification(jwt, channel=Channel.REDIRECT)
    services.process_notification(mint_jwt(session, key="x" * 40), channel=Channel.WEBHOOK)
    mocked_responses.post(STATUS_URL, json=[entry_for(session)])
    services.reconcile_session(session)
    # A failed call whose error body echoes the token.
    mocked_responses.post(INIT_URL, status=500, json={"message": f"echo {API_TOKEN}"})
    with pytest.raises(EtpayHTTPError):
        services.initialize_session("OC-OBS-5", 50000)

    assert {e["etpay_event"] for e in events(caught)} == {"call", "result", "state_change"}
    assert {e["etpay_channel"] for e in only(caught, "result")} == {
        "widget",
        "redirect",
        "webhook",
        "poll",
    }
    secrets = (SIGNATURE, API_TOKEN, jwt, jwt.split(".")[2])
    for record in caught.records:
        text = _everything_in(record)
        for secret in secrets:
            assert secret not in text, (record.name, record.msg)
    assert len(spans.get_finished_spans()) >= 6
    for span in spans.get_finished_spans():
        text = repr(dict(span.attributes or {})) + repr(span.status.description) + span.name
        for secret in secrets:
            assert secret not in text, span.name


# -- spans ------------------------------------------------------------------------------------


def test_a_result_is_one_span_with_the_events_fields(
    caught: pytest.LogCaptureFixture, spans: InMemorySpanExporter
) -> None:
    session = make_session()
    notification = services.process_notification(mint_jwt(session), channel=Channel.WEBHOOK)

    [span] = spans.get_finished_spans()
    assert span.name == "etpay result"
    assert span.kind == trace.SpanKind.INTERNAL
    assert dict(span.attributes or {}) == {
        "etpay.event": "result",
        "etpay.session_id": session.pk,
        "etpay.merchant": "",
        "etpay.channel": "webhook",
        "etpay.outcome": "accepted",
        "etpay.reason": "",
        "etpay.latency_ms": 250.0,
        "etpay.notification_id": notification.pk,
        "etpay.stored": True,
        "etpay.status_before": "pending",
        "etpay.status_after": "paid",
        "etpay.cause": "result",
    }
    assert span.status.status_code == trace.StatusCode.UNSET


def test_a_call_is_a_client_span_and_a_failure_sets_its_status(
    mocked_responses: responses_lib.RequestsMock, spans: InMemorySpanExporter
) -> None:
    mocked_responses.post(INIT_URL, status=503, body="down")

    with pytest.raises(EtpayHTTPError):
        services.initialize_session("OC-OBS-6", 1000)

    [span] = spans.get_finished_spans()
    assert span.name == "etpay initialize"
    assert span.kind == trace.SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    assert attributes["etpay.operation"] == "initialize"
    assert attributes["etpay.outcome"] == "http_error"
    assert attributes["etpay.http_status"] == 503
    assert attributes["etpay.attempts"] == 1
    assert attributes["etpay.outcome_unknown"] is True
    assert "etpay.channel" not in attributes  # None is left out
    assert span.status.status_code == trace.StatusCode.ERROR
    assert span.status.description == "EtpayHTTPError"
    # The exception's message (which may quote ETpay) is not on the span.
    assert list(span.events) == []


def test_a_reconciliation_is_a_call_span_then_one_span_per_result(
    mocked_responses: responses_lib.RequestsMock, spans: InMemorySpanExporter
) -> None:
    session = make_session()
    mocked_responses.post(
        STATUS_URL, json=[entry_for(session), entry_for(session, merchant_amount=1)]
    )

    services.reconcile_session(session)

    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["etpay check_status", "etpay result", "etpay result"]
    assert [dict(s.attributes or {}).get("etpay.outcome") for s in finished] == [
        "ok",
        "accepted",
        "rejected",
    ]


def test_nested_records_make_no_span_of_their_own(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = make_session()
    monkeypatch.setattr(
        "django_etpay.pipeline._apply_verified",
        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")),
    )
    with pytest.raises(RuntimeError):
        services.process_notification(mint_jwt(session), channel=Channel.WEBHOOK)

    [span] = spans.get_finished_spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    assert dict(span.attributes or {})["etpay.reason"] == "internal_error"


# -- without OpenTelemetry ----------------------------------------------------------------------


@pytest.fixture
def without_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The module as imported where ``opentelemetry`` is not installed (its import fails)."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    try:
        yield importlib.reload(observability)
    finally:
        monkeypatch.undo()
        importlib.reload(observability)


def test_without_opentelemetry_events_go_on_and_no_span_is_made(
    without_opentelemetry: Any,
    caught: pytest.LogCaptureFixture,
    mocked_responses: responses_lib.RequestsMock,
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert without_opentelemetry.otel_trace is None
    ticks = itertools.count()
    monkeypatch.setattr(without_opentelemetry, "_clock", lambda: next(ticks) * STEP)
    mocked_responses.post(INIT_URL, json=REPLY)
    session = services.initialize_session("OC-OBS-7", 50000)
    services.process_notification(mint_jwt(session), channel=Channel.WEBHOOK)
    mocked_responses.post(INIT_URL, status=503, body="down")
    with pytest.raises(EtpayHTTPError):
        services.initialize_session("OC-OBS-8", 1000)

    assert [(e["etpay_event"], e["etpay_outcome"]) for e in events(caught)] == [
        ("call", "ok"),
        ("state_change", None),
        ("result", "accepted"),
        ("state_change", "accepted"),
        ("call", "http_error"),
        ("state_change", None),
    ]
    assert spans.get_finished_spans() == ()


def test_opentelemetry_is_back_after_the_reload(spans: InMemorySpanExporter) -> None:
    # The reload above must not leave the module without spans for the tests that follow.
    assert observability.otel_trace is not None
    session = make_session()
    services.process_notification(mint_jwt(session), channel=Channel.WEBHOOK)
    assert len(spans.get_finished_spans()) == 1


# -- the admin's summary ------------------------------------------------------------------------


def test_the_session_list_counts_the_pages_results_by_channel_and_outcome(
    admin_client: Client,
) -> None:
    shown, other = make_session(), make_session()
    for channel, outcome, times in [
        (Channel.WEBHOOK, Outcome.ACCEPTED, 1),
        (Channel.WEBHOOK, Outcome.DUPLICATE, 2),
        (Channel.REDIRECT, Outcome.REJECTED, 1),
        (Channel.WIDGET, Outcome.DUPLICATE, 1),
        (Channel.POLL, Outcome.ACCEPTED, 3),
    ]:
        for _ in range(times):
            Notification.objects.create(session=shown, channel=channel, outcome=outcome)
    # Results of a session the page does not list are not counted.
    Notification.objects.create(session=other, channel=Channel.WEBHOOK, outcome=Outcome.REJECTED)
    # Nor those naming no session.
    Notification.objects.create(channel=Channel.WEBHOOK, outcome=Outcome.REJECTED)

    response = admin_client.get(
        reverse("admin:django_etpay_paymentsession_changelist"),
        {"q": shown.merchant_order_id},
    )

    assert response.status_code == 200
    counts = {row["channel"]: row for row in response.context["etpay_result_counts"]}
    assert list(counts) == ["webhook", "redirect", "widget", "poll"]
    assert {
        c: (r["accepted"], r["duplicate"], r["rejected"], r["total"]) for c, r in counts.items()
    } == {
        "webhook": (1, 2, 0, 3),
        "redirect": (0, 0, 1, 1),
        "widget": (0, 1, 0, 1),
        "poll": (3, 0, 0, 3),
    }
    html = response.content.decode()
    assert 'id="etpay-result-counts"' in html
    assert '<tr data-channel="poll">' in html
    assert '<td data-outcome="accepted">3</td>' in html


def test_the_summary_counts_every_session_of_the_page(admin_client: Client) -> None:
    first, second = make_session(), make_session()
    Notification.objects.create(session=first, channel=Channel.POLL, outcome=Outcome.ACCEPTED)
    Notification.objects.create(session=second, channel=Channel.POLL, outcome=Outcome.ACCEPTED)

    response = admin_client.get(reverse("admin:django_etpay_paymentsession_changelist"))

    poll = [r for r in response.context["etpay_result_counts"] if r["channel"] == "poll"]
    assert poll[0]["accepted"] == 2


def test_an_empty_page_shows_no_summary(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:django_etpay_paymentsession_changelist"))
    assert response.status_code == 200
    assert response.context["etpay_result_counts"] == []
    assert 'id="etpay-result-counts"' not in response.content.decode()


# -- the JSON formatter and the documented LOGGING ----------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "observability.md"


def test_the_json_formatter_writes_every_field_of_an_event(
    caught: pytest.LogCaptureFixture,
) -> None:
    session = make_session()
    services.process_notification(mint_jwt(session), channel=Channel.WEBHOOK)
    record = next(r for r in caught.records if r.name == observability.EVENTS_LOGGER)

    line = observability.JsonFormatter().format(record)

    data = json.loads(line)
    assert "\n" not in line
    assert data["logger"] == "django_etpay.events"
    assert data["level"] == "INFO"
    assert data["message"] == record.getMessage()
    assert data["time"].endswith("+00:00")
    assert {key: data[key] for key in observability.FIELDS} == {
        name: getattr(record, name) for name in observability.FIELDS
    }
    assert data["etpay_session_id"] == session.pk


def test_the_json_formatter_takes_any_record() -> None:
    record = logging.LogRecord(
        "django_etpay", logging.ERROR, __file__, 1, "plain %s", ("x",), None
    )
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    data = json.loads(observability.JsonFormatter().format(record))
    assert data["message"] == "plain x"
    assert not any(key.startswith("etpay_") for key in data)
    assert "ValueError: boom" in data["exc_info"]


def test_the_documented_logging_setting_names_the_formatter_and_the_logger() -> None:
    [snippet] = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, str(DOCS), "exec"), namespace)  # noqa: S102
    config = namespace["LOGGING"]
    formatter = import_string(config["formatters"]["json"]["()"])
    assert formatter is observability.JsonFormatter
    assert config["loggers"][observability.EVENTS_LOGGER]["handlers"] == ["etpay_events"]
    assert config["handlers"]["etpay_events"]["formatter"] == "json"


def test_every_field_is_documented() -> None:
    text = DOCS.read_text()
    for name in observability.FIELDS:
        assert f"| `{name}` |" in text, name


# -- reporting never breaks the work ---------------------------------------------------------


class _Broken(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        raise RuntimeError("a broken log filter")


@pytest.fixture
def broken_events() -> Iterator[None]:
    broken = _Broken()
    events_logger = logging.getLogger(observability.EVENTS_LOGGER)
    events_logger.addFilter(broken)
    yield
    events_logger.removeFilter(broken)


def test_a_failing_event_breaks_no_call_result_or_state_change(
    broken_events: None,
    caught: pytest.LogCaptureFixture,
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)
    session = services.initialize_session("OC-OBS-9", 50000)
    notification = services.process_notification(mint_jwt(session), channel=Channel.WEBHOOK)
    old = make_session()
    PaymentSession.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    expired = services.expire_sessions(timedelta(days=1))

    session.refresh_from_db()
    assert (session.status, notification.outcome, expired) == ("paid", "accepted", 1)
    reported = [
        r.getMessage()
        for r in caught.records
        if r.name == "django_etpay" and r.msg.startswith("A django_etpay event")
    ]
    # The call, the initialisation, the result (its state change with it), the expiry.
    assert reported == ["A django_etpay event could not be reported (RuntimeError)"] * 4
