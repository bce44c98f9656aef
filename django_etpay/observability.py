"""Structured events for operators: every call to ETpay, every result, every state change.

Each event is one record of the standard :mod:`logging` module on the logger
``django_etpay.events`` (:data:`EVENTS_LOGGER`), its fields passed in ``extra=`` under the
names of :data:`FIELDS`, so that any formatter that reads record attributes (a JSON formatter,
a log shipper) gets them as they are. Every event carries every field (``None`` where it does
not apply), so that a query never has to ask whether a column exists. No field ever holds a
secret: no ``signature_token``, no ``merchant_api_token``, no JWT, no request or reply body.

When ``opentelemetry-api`` is installed, each call to ETpay and each result processed also
runs in a span whose attributes are the same fields (``etpay.<name>`` instead of
``etpay_<name>``, the ones that are ``None`` left out). Without it nothing changes: the import
is guarded and no span is made.

The hooks are small on purpose (a decorator or a call at each point), so that the modules that
do the work keep saying only what they do:

- :func:`observed_call` on the methods of :class:`~django_etpay.client.EtpayClient`, with
  :func:`attempt` and :func:`answered` from inside the call, and :func:`about_session` around a
  call made for one session;
- :func:`observed_result` on every function that turns an inbound result into a record (the
  outermost one emits, the ones it calls do not);
- :func:`state_changed` where a session changes status otherwise than by a result
  (initialisation, expiry).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import ModuleType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from django.db.models import Count

from django_etpay import __version__
from django_etpay.exceptions import EtpayAPIError

if TYPE_CHECKING:
    # Only for type checkers: the client imports this module, and must stay importable
    # before Django's apps are loaded.
    from django_etpay.models import Notification, PaymentSession

otel_trace: ModuleType | None
try:  # optional: spans only where the shop installed OpenTelemetry's API
    from opentelemetry import trace as otel_trace
except ImportError:  # tested by reloading this module with the import failing
    otel_trace = None

#: The logger of the events; give it a handler of its own (see docs/observability.md).
EVENTS_LOGGER = "django_etpay.events"

logger = logging.getLogger(EVENTS_LOGGER)

#: The ``extra=`` fields of every event, in this order (documented in docs/observability.md).
FIELDS: tuple[str, ...] = (
    "etpay_event",
    "etpay_session_id",
    "etpay_merchant",
    "etpay_channel",
    "etpay_outcome",
    "etpay_reason",
    "etpay_latency_ms",
    "etpay_operation",
    "etpay_http_status",
    "etpay_outcome_unknown",
    "etpay_attempts",
    "etpay_notification_id",
    "etpay_stored",
    "etpay_status_before",
    "etpay_status_after",
    "etpay_cause",
)

#: ``etpay_event`` values.
CALL = "call"
RESULT = "result"
STATE_CHANGE = "state_change"

#: ``etpay_outcome`` of a call that ETpay answered with a usable reply, and of a call or a
#: result that failed for another reason than ETpay's answer (a bug, the database).
OK = "ok"
ERROR = "error"

#: The client's paths, by ``etpay_operation``.
OPERATIONS = {
    "initialize": "/session/initialize",
    "check_status": "/merchant/check_payment_status",
}

P = ParamSpec("P")
R = TypeVar("R")

#: The app's tracer, obtained on first use (OpenTelemetry's API only).
_tracer: Any = None

#: Read once per measure; a test may replace it to get exact latencies.
_clock: Callable[[], float] = time.monotonic

#: The session a call to ETpay is made for (set by :func:`about_session`).
_current_session: ContextVar[int | None] = ContextVar("etpay_observed_session", default=None)
#: The call being made in this context, which the client reports its attempts into.
_current_call: ContextVar[_Call | None] = ContextVar("etpay_observed_call", default=None)
#: Whether a result is being observed already in this context (nested records emit nothing).
_in_result: ContextVar[bool] = ContextVar("etpay_observed_result", default=False)


@dataclass
class _Call:
    attempts: int = 0
    http_status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# -- emitting --------------------------------------------------------------------------------


def _elapsed_ms(started: float) -> float:
    return round((_clock() - started) * 1000, 1)


def _emit(level: int, message: str, args: tuple[Any, ...], **values: Any) -> dict[str, Any]:
    """Log one event with every field of :data:`FIELDS` (``None`` unless given)."""
    unknown = set(values) - set(FIELDS)
    if unknown:  # a programming error: an undocumented field
        raise ValueError(f"Undocumented event fields: {sorted(unknown)}")
    # Plain values: a choice's enum member becomes its text, as a JSON encoder expects.
    fields = {name: _plain(values.get(name)) for name in FIELDS}
    logger.log(level, message, *args, extra=fields)
    return fields


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, str) else value


def _attributes(fields: dict[str, Any]) -> dict[str, Any]:
    """The span attributes of an event's fields (OpenTelemetry takes no ``None``)."""
    return {
        "etpay." + name.removeprefix("etpay_"): value
        for name, value in fields.items()
        if value is not None
    }


@contextlib.contextmanager
def _span(name: str, *, client: bool) -> Iterator[Any]:
    """An OpenTelemetry span, or ``None`` when the API is not installed."""
    if otel_trace is None:
        yield None
        return
    global _tracer
    if _tracer is None:
        # A proxy until the shop sets its tracer provider, then that provider's tracer.
        _tracer = otel_trace.get_tracer("django_etpay", __version__)
    tracer = _tracer
    kind = otel_trace.SpanKind.CLIENT if client else otel_trace.SpanKind.INTERNAL
    # Exceptions are not recorded on the span: their messages may quote what ETpay or the
    # database said; the status names the error's type only.
    with tracer.start_as_current_span(
        name, kind=kind, record_exception=False, set_status_on_exception=False
    ) as span:
        yield span


def _finish_span(span: Any, fields: dict[str, Any], error: BaseException | None) -> None:
    if span is None or otel_trace is None:
        return
    span.set_attributes(_attributes(fields))
    if error is not None:
        span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, type(error).__name__))


@contextlib.contextmanager
def _never_fails() -> Iterator[None]:
    """Reporting never breaks the work reported on (a payment recorded, a session created)."""
    try:
        yield
    except Exception as err:
        # The app's own logger: the events' may be the one that fails.
        logging.getLogger("django_etpay").error(
            "A django_etpay event could not be reported (%s)", type(err).__name__
        )


# -- calls to ETpay ----------------------------------------------------------------------------


@contextlib.contextmanager
def about_session(session_id: int | None) -> Iterator[None]:
    """Name the session the calls to ETpay made inside are for (``etpay_session_id``)."""
    token = _current_session.set(session_id)
    try:
        yield
    finally:
        _current_session.reset(token)


def attempt() -> None:
    """The client sends the request of the current call (once more)."""
    call = _current_call.get()
    if call is not None:
        call.attempts += 1


def answered(http_status: int) -> None:
    """ETpay answered the current call with ``http_status``."""
    call = _current_call.get()
    if call is not None:
        call.http_status = http_status


def _call_outcome(err: BaseException | None) -> str:
    if err is None:
        return OK
    if isinstance(err, EtpayAPIError):
        return str(err.code)
    return ERROR


def observed_call(operation: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a method of :class:`~django_etpay.client.EtpayClient` calling ``operation``.

    One ``call`` event (and one span, ``etpay <operation>``) per call, whatever its end: the
    outcome is ``ok`` or the failure's :attr:`~django_etpay.exceptions.EtpayAPIError.code`
    (``timeout``, ``connection``, ``http_error``, ``bad_response``); ``error`` for anything
    else. A call refused before anything was sent (bad arguments) emits nothing.
    """
    if operation not in OPERATIONS:
        raise ValueError(f"Unknown ETpay operation {operation!r}.")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            merchant = getattr(getattr(args[0], "merchant", None), "alias", None)
            call = _Call()
            token = _current_call.set(call)
            started = _clock()
            error: BaseException | None = None
            try:
                with _span(f"etpay {operation}", client=True) as span:
                    try:
                        return func(*args, **kwargs)
                    except BaseException as err:
                        error = err
                        raise
                    finally:
                        if call.attempts or isinstance(error, EtpayAPIError):
                            with _never_fails():
                                _call_event(operation, merchant, call, error, started, span)
            finally:
                _current_call.reset(token)

        return wrapper

    return decorate


def _call_event(
    operation: str,
    merchant: str | None,
    call: _Call,
    error: BaseException | None,
    started: float,
    span: Any,
) -> None:
    outcome = _call_outcome(error)
    http_status = call.http_status
    if http_status is None and isinstance(error, EtpayAPIError):
        http_status = error.status_code
    latency = _elapsed_ms(started)
    fields = _emit(
        logging.INFO if error is None else logging.WARNING,
        "ETpay call %s: %s (HTTP %s, %d attempts, %.0f ms)",
        (operation, outcome, http_status, call.attempts, latency),
        etpay_event=CALL,
        etpay_session_id=_current_session.get(),
        etpay_merchant=merchant,
        etpay_channel="poll" if operation == "check_status" else None,
        etpay_outcome=outcome,
        etpay_reason=getattr(error, "code", type(error).__name__) if error is not None else "",
        etpay_latency_ms=latency,
        etpay_operation=operation,
        etpay_http_status=http_status,
        etpay_outcome_unknown=bool(getattr(error, "outcome_unknown", error is not None)),
        etpay_attempts=call.attempts,
    )
    _finish_span(span, fields, error)


# -- results and state changes -----------------------------------------------------------------


def observed_result(func: Callable[P, Notification]) -> Callable[P, Notification]:
    """Decorate a function that turns an inbound result into a :class:`Notification`.

    The outermost decorated function in a context emits one ``result`` event (and one span,
    ``etpay result``), plus a ``state_change`` event when the result moved its session; the
    decorated functions it calls emit nothing. A result whose processing raised is reported
    with outcome ``rejected`` and reason ``internal_error`` (what the pipeline records).
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Notification:
        if _in_result.get():
            return func(*args, **kwargs)
        token = _in_result.set(True)
        started = _clock()
        try:
            with _span("etpay result", client=False) as span:
                try:
                    notification = func(*args, **kwargs)
                except Exception as err:
                    with _never_fails():
                        _failed_result_event(span, err, kwargs.get("channel"), started)
                    raise
                with _never_fails():
                    fields = _result_event(notification, _elapsed_ms(started))
                    _finish_span(span, fields, None)
        finally:
            _in_result.reset(token)
        return notification

    return wrapper


def _failed_result_event(span: Any, err: Exception, channel: Any, started: float) -> None:
    fields = _emit(
        logging.WARNING,
        "ETpay %s result could not be processed (%s)",
        (channel, type(err).__name__),
        etpay_event=RESULT,
        etpay_channel=_text(channel),
        etpay_outcome="rejected",
        etpay_reason="internal_error",
        etpay_latency_ms=_elapsed_ms(started),
        etpay_cause=RESULT,
    )
    _finish_span(span, fields, err)


def _text(value: object) -> str | None:
    return str(value) if value is not None else None


def _result_event(notification: Notification, latency: float) -> dict[str, Any]:
    # The session object the record was built with; no query (the id alone when it has none).
    session = notification.session if notification.session_id is not None else None
    merchant = session.merchant if session is not None else None
    common = {
        "etpay_session_id": notification.session_id,
        "etpay_merchant": merchant,
        "etpay_channel": notification.channel,
        "etpay_reason": notification.reason,
        "etpay_status_before": notification.status_before or None,
        "etpay_status_after": notification.status_after or None,
    }
    fields = _emit(
        logging.INFO,
        "ETpay %s result for session %s: %s (%s)",
        (
            notification.channel,
            notification.session_id,
            notification.outcome,
            notification.reason or "-",
        ),
        etpay_event=RESULT,
        etpay_outcome=notification.outcome,
        etpay_latency_ms=latency,
        etpay_notification_id=notification.pk,
        etpay_stored=notification.pk is not None,
        etpay_cause=RESULT,
        **common,
    )
    if (
        notification.outcome == "accepted"
        and notification.status_before != notification.status_after
    ):
        _emit(
            logging.INFO,
            "ETpay session %s: %s -> %s (%s result)",
            (
                notification.session_id,
                notification.status_before,
                notification.status_after,
                notification.channel,
            ),
            etpay_event=STATE_CHANGE,
            etpay_outcome=notification.outcome,
            etpay_latency_ms=latency,
            etpay_notification_id=notification.pk,
            etpay_stored=True,
            etpay_cause=RESULT,
            **common,
        )
    return fields


def state_changed(session: PaymentSession, *, before: str, cause: str, reason: str = "") -> None:
    """One ``state_change`` event: ``session`` went from ``before`` to its current status.

    For the changes no result makes: ``cause`` is ``initialize`` (``initializing`` to
    ``pending`` or ``error``; ``reason`` is the error code) or ``expire``. Never raises.
    """
    with _never_fails():
        _state_change_event(session, before=before, cause=cause, reason=reason)


def _state_change_event(session: PaymentSession, *, before: str, cause: str, reason: str) -> None:
    _emit(
        logging.INFO,
        "ETpay session %s: %s -> %s (%s)",
        (session.pk, before, session.status, cause),
        etpay_event=STATE_CHANGE,
        etpay_session_id=session.pk,
        etpay_merchant=session.merchant,
        etpay_reason=reason,
        etpay_outcome_unknown=session.outcome_unknown,
        etpay_status_before=before,
        etpay_status_after=session.status,
        etpay_cause=cause,
    )


def sessions_changed(sessions: Iterable[PaymentSession], *, before: str, cause: str) -> None:
    """:func:`state_changed` for each of ``sessions``."""
    for session in sessions:
        state_changed(session, before=before, cause=cause)


# -- a formatter ---------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message and every event field.

    Standard library only. For the event logger and any other: a record that is not an event
    just has no ``etpay_*`` keys. Use it from ``LOGGING`` as
    ``{"()": "django_etpay.observability.JsonFormatter"}`` (docs/observability.md).
    """

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update({name: getattr(record, name) for name in FIELDS if hasattr(record, name)})
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


# -- the admin's summary -----------------------------------------------------------------------


def result_counts(sessions: Iterable[PaymentSession]) -> list[dict[str, Any]]:
    """How the results of ``sessions`` arrived: one row per channel, with per-outcome counts.

    ``[{"channel": "webhook", "label": ..., "accepted": 3, "duplicate": 1, "rejected": 0,
    "total": 4}, ...]``, every channel listed (zeros included); ``[]`` for no session. One
    grouped ``COUNT`` on the indexed ``session`` column, over the given sessions only (the
    admin passes one page's).
    """
    from django_etpay.models import Notification

    sessions = list(sessions)
    if not sessions:
        return []
    rows = (
        Notification.objects.using(sessions[0]._state.db)
        .filter(session__in=[session.pk for session in sessions])
        .order_by()
        .values("channel", "outcome")
        .annotate(n=Count("pk"))
    )
    counts = {(row["channel"], row["outcome"]): row["n"] for row in rows}
    table = []
    for channel, label in Notification.Channel.choices:
        row: dict[str, Any] = {"channel": channel, "label": label}
        for outcome in Notification.Outcome.values:
            row[outcome] = counts.get((channel, outcome), 0)
        row["total"] = sum(row[outcome] for outcome in Notification.Outcome.values)
        table.append(row)
    return table
