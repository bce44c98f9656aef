"""HTTP endpoints: ETpay's notification, the payer's return, the widget's result.

The views only read requests and write replies; verification, storage and signals are
:func:`django_etpay.pipeline.process_notification`. Every view is ``non_atomic_requests`` so
that the record of a result survives even with ``ATOMIC_REQUESTS = True``, and none ever
answers with a traceback or shows a JWT or a key.

Over 500 lines because the three endpoints share one bounded body reader and one set of
answers per outcome; splitting them would split the rules on untrusted bodies in two.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from django.contrib.auth import decorators as auth_decorators
from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.db import connections, transaction
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    QueryDict,
    RawPostDataException,
    UnreadablePostError,
)
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import redirect, resolve_url
from django.template.response import TemplateResponse
from django.views import View
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from django_etpay import conf, pipeline, records
from django_etpay.models import Notification, PaymentSession

logger = logging.getLogger("django_etpay.views")

_ViewFunc = Callable[..., Any]


def _no_op(view_func: _ViewFunc) -> _ViewFunc:
    return view_func


# Django 5.1+; before it there is no LoginRequiredMiddleware and so nothing to opt out of.
login_not_required: Callable[[_ViewFunc], _ViewFunc] = getattr(
    auth_decorators, "login_not_required", _no_op
)


def non_atomic_requests_everywhere(view: _ViewFunc) -> _ViewFunc:
    """``transaction.non_atomic_requests`` on every configured database, not only ``default``.

    With the app's models routed to a database of their own that has ``ATOMIC_REQUESTS``,
    Django would otherwise wrap the view in a transaction there: row locks held and signals
    held back until the whole response is built, a transaction open while ETpay answers.
    """
    for alias in connections:
        view = transaction.non_atomic_requests(using=alias)(view)
    return view


#: What a compact JWS looks like: three base64url segments joined by dots.
JWT_PATTERN = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
#: Separators ETpay's ``concat`` may leave in front of a JWT appended to a path.
_LEADING_SEPARATORS = re.compile(r"^[&?;]+")

_UTF8 = "utf-8"
_JSON_TYPES = ("application/json", "text/json")
_URLENCODED = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"
_BARE_TYPES = ("", "text/plain", "application/octet-stream", "application/jwt")

#: Where a body read once (by the CSRF guard or the view) is kept on the request.
_BODY_ATTR = "_django_etpay_body"

#: Errors Django raises while parsing a body it was sent: bad input, never a 500.
_BODY_ERRORS: tuple[type[Exception], ...] = (
    BadRequest,
    SuspiciousOperation,
    MultiPartParserError,
    UnreadablePostError,
    UnicodeError,
    ValueError,
)

Outcome = Notification.Outcome
Reason = Notification.Reason
Result = Notification.Result


class ResultBodyError(Exception):
    """A request body that yields no JWT; ``status`` is the HTTP reply code."""

    def __init__(self, reason: str, detail: str, *, status: int = 400, raw_body: str = "") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status
        self.raw_body = raw_body


class ResultIntakeMixin:
    """Reads a result JWT from a POST body: the forms ETpay and the widget loader use.

    Accepted bodies: a JSON object ``{"payment": "<JWT>"}`` (what ETpay sends in practice,
    with or without a JSON ``Content-Type``), a bare JWT (``text/plain`` or no type), or a
    form field ``payment``. Larger bodies than ``max_body_bytes`` (default
    ``ETPAY["NOTIFICATION_MAX_BYTES"]``) are refused without being read.
    """

    #: Body size limit in bytes; ``None`` reads ``ETPAY["NOTIFICATION_MAX_BYTES"]``.
    max_body_bytes: int | None = None
    #: The key of the JWT in JSON and form bodies.
    field_name: str = "payment"
    #: The ``Notification.Channel`` results read by this view are recorded with.
    channel: str = Notification.Channel.WEBHOOK

    def get_max_body_bytes(self) -> int:
        """The body size limit in bytes."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return int(conf.get_setting("NOTIFICATION_MAX_BYTES"))

    def get_remote_addr(self, request: HttpRequest) -> str | None:
        """The sender's address; override behind a proxy you trust."""
        value = request.META.get("REMOTE_ADDR")
        return str(value) if value else None

    def read_body(self, request: HttpRequest) -> bytes:
        """The raw body, at most :meth:`get_max_body_bytes` long, or :class:`ResultBodyError`.

        A declared ``Content-Length`` over the limit is refused without reading. A chunked
        body (``Transfer-Encoding: chunked``, no length declared) is read from the server's
        stream when the server marks it as terminated (``wsgi.input_terminated``: gunicorn,
        and any server that de-chunks); a server that cannot hand it over gets a 503, so that
        the sender retries instead of giving up on a result that was never read. A body read
        once is kept on the request: the CSRF check of the widget view reads it first.
        """
        cached: bytes | None = getattr(request, _BODY_ATTR, None)
        if cached is None:
            cached = self._read_body(request)
            setattr(request, _BODY_ATTR, cached)
        return cached

    def _read_body(self, request: HttpRequest) -> bytes:
        limit = self.check_declared_length(request)
        chunked = "chunked" in str(request.META.get("HTTP_TRANSFER_ENCODING")).lower()
        if chunked and "wsgi.input" in request.META:
            return self._read_chunked(request, limit)
        try:
            return request.body
        except RequestDataTooBig:
            raise ResultBodyError(Reason.TOO_LARGE, "Body too large.", status=413) from None
        except RawPostDataException:
            # Already parsed as multipart by other code: only request.POST has it now.
            return b""
        except UnreadablePostError:
            raise ResultBodyError(
                Reason.MALFORMED, "The body could not be read.", status=503
            ) from None

    def check_declared_length(self, request: HttpRequest) -> int:
        """Refuse a declared ``Content-Length`` over the limit, unread; return the limit."""
        limit = self.get_max_body_bytes()
        try:
            length = int(request.META.get("CONTENT_LENGTH") or "0")
        except ValueError:
            raise ResultBodyError(Reason.MALFORMED, "Invalid Content-Length.") from None
        if length > limit:
            raise ResultBodyError(
                Reason.TOO_LARGE, f"Body of {length} bytes exceeds {limit}.", status=413
            )
        return limit

    @staticmethod
    def _read_chunked(request: HttpRequest, limit: int) -> bytes:
        if not request.META.get("wsgi.input_terminated"):
            logger.warning(
                "ETpay result sent chunked to a server that cannot hand over chunked bodies; "
                "answering 503 so that it is sent again (see the deployment notes)"
            )
            raise ResultBodyError(
                Reason.MALFORMED,
                "Chunked body this server cannot read (no wsgi.input_terminated).",
                status=503,
            )
        try:
            # One byte more than the limit tells "over the limit" without reading further.
            body: bytes = request.META["wsgi.input"].read(limit + 1)
        except (OSError, ValueError):
            raise ResultBodyError(
                Reason.MALFORMED, "The chunked body could not be read.", status=503
            ) from None
        if len(body) > limit:
            raise ResultBodyError(
                Reason.TOO_LARGE, f"Chunked body exceeds {limit} bytes.", status=413
            )
        return body

    def read_jwt(self, request: HttpRequest) -> str:
        """Return the JWT in ``request``'s body or raise :class:`ResultBodyError`."""
        content_type = request.content_type or ""  # lower-cased by Django
        body = self.read_body(request)
        text = body.decode(_UTF8, "replace")
        if content_type == _MULTIPART:
            # request.POST parses what read_body kept (or what the CSRF check parsed); the body
            # is within the limits already, so whatever it raises is a parse failure.
            try:
                value = request.POST.get(self.field_name) or ""
            except _BODY_ERRORS as err:
                raise ResultBodyError(
                    Reason.MALFORMED,
                    f"The multipart body could not be parsed ({type(err).__name__}).",
                    raw_body=text,
                ) from None
            return self._field_value(value, text)
        if not body.strip():
            raise ResultBodyError(Reason.MALFORMED, "Empty body.")
        stripped = text.strip()
        if content_type == _URLENCODED:
            return self._from_form(body, (request.content_params or {}).get("charset"), text)
        if content_type in _JSON_TYPES or content_type.endswith("+json"):
            return self._from_json(stripped, text)
        if content_type in _BARE_TYPES:
            # ETpay's own SDK posts JSON without a Content-Type: recognise it by its shape.
            if stripped.startswith("{"):
                return self._from_json(stripped, text)
            if stripped.startswith(f"{self.field_name}="):
                return self._from_form(body, None, text)
            return stripped
        raise ResultBodyError(
            Reason.MALFORMED, f"Unsupported Content-Type {content_type[:100]!r}.", raw_body=text
        )

    def receive(self, request: HttpRequest) -> tuple[Notification | None, int]:
        """Read the result in ``request``'s body, process and record it.

        Returns the stored notification (``None`` when nothing could be stored) and the HTTP
        status to answer: 200 accepted or duplicate, 400 rejected, 413 too large, 500 when the
        result could not be stored or applied.
        """
        remote_addr = self.get_remote_addr(request)
        try:
            try:
                raw_jwt = self.read_jwt(request)
            except ResultBodyError as err:
                rejected = records.record_rejection(
                    channel=self.channel,
                    reason=err.reason,
                    detail=err.detail,
                    raw_body=err.raw_body,
                    remote_addr=remote_addr,
                )
                return rejected, err.status
            notification = pipeline.process_notification(
                raw_jwt, channel=self.channel, remote_addr=remote_addr
            )
        except Exception as err:
            # Never a traceback to the sender; the pipeline has logged and stored what it could.
            logger.error(
                "ETpay %s result could not be stored (%s)", self.channel, type(err).__name__
            )
            return None, 500
        return notification, 400 if notification.outcome == Outcome.REJECTED else 200

    def _from_form(self, body: bytes, charset: str | None, text: str) -> str:
        return self._field_value(lenient_form(body, charset).get(self.field_name) or "", text)

    def _field_value(self, value: str, text: str) -> str:
        if not value:
            raise ResultBodyError(
                Reason.MALFORMED, f"No {self.field_name!r} form field.", raw_body=text
            )
        return value.strip()

    def _from_json(self, stripped: str, text: str) -> str:
        try:
            data: Any = json.loads(stripped)
        except (ValueError, RecursionError):
            raise ResultBodyError(Reason.MALFORMED, "Body is not JSON.", raw_body=text) from None
        if not isinstance(data, dict) or self.field_name not in data:
            raise ResultBodyError(
                Reason.MALFORMED,
                f"JSON body is not an object with a {self.field_name!r} key.",
                raw_body=text,
            )
        value = data[self.field_name]
        if not isinstance(value, str):
            raise ResultBodyError(
                Reason.MALFORMED, f"{self.field_name!r} is not a string.", raw_body=text
            )
        return value.strip()


def lenient_form(body: bytes, charset: str | None) -> QueryDict:
    """A urlencoded body as a ``QueryDict``, in whatever charset it declares.

    Django 5.1+ refuses urlencoded bodies that declare a charset other than UTF-8 (and raises
    while doing so, from any code that reads ``request.POST``, the CSRF check included). A JWT
    is ASCII in every charset, so the body is decoded with the declared charset when Python
    knows it, as UTF-8 otherwise, and undecodable bytes are replaced: what is not a JWT is then
    rejected as malformed like any other bad body.
    """
    try:
        text = body.decode(charset or _UTF8, "replace")
    except LookupError:
        text = body.decode(_UTF8, "replace")
    try:
        return QueryDict(text)
    except _BODY_ERRORS:
        # More fields than DATA_UPLOAD_MAX_NUMBER_FIELDS: no usable form.
        return QueryDict()


class ResultStateMixin:
    """Turns a stored result into what the payer is told and where they are sent."""

    #: ``ETPAY["SUCCESS_URL"]`` / ``["FAILURE_URL"]`` when ``None``: a URL name or a path.
    success_url: str | None = None
    failure_url: str | None = None

    @staticmethod
    def proves_nothing(notification: Notification | None) -> bool:
        """Whether ``notification`` gives no ground to tell its sender anything.

        A rejected result proves nothing, and neither does ETpay's system-error JWT: it is
        signed with the session token, which is part of the payment URL, so anyone may mint
        one. Answering such a result with the session's status would let a stranger read the
        status of any session whose URL they saw.
        """
        return (
            notification is None
            or notification.outcome == Outcome.REJECTED
            or notification.reason == Reason.SYSTEM_ERROR
        )

    def get_state(self, notification: Notification | None) -> str:
        """``paid``, ``failed``, ``pending`` (verified, not final yet) or ``unknown``.

        ``unknown`` for every result that :meth:`proves_nothing`.
        """
        if notification is None or self.proves_nothing(notification):
            return "unknown"
        session = notification.session
        if session is not None and session.status == PaymentSession.Status.PAID:
            return "paid"
        if notification.result == Result.FAILURE or (
            session is not None and session.status == PaymentSession.Status.FAILED
        ):
            return "failed"
        return "pending"

    def get_redirect_url(self, state: str, notification: Notification | None) -> str | None:
        """Where to send the payer, or ``None`` to render the template.

        Success-like states (``paid``, or a verified success not applied yet) go to the
        success URL, failures and ETpay system errors to the failure URL. A system error goes
        there whatever the session's status, so that the redirect reveals nothing either.
        Rejected results render the template. Nothing from the result is appended: override
        this to add your own order reference.
        """
        if notification is None or notification.outcome == Outcome.REJECTED:
            return None
        if state == "paid" or (
            notification.result == Result.SUCCESS and notification.reason != Reason.SYSTEM_ERROR
        ):
            target = self.success_url or conf.get_setting("SUCCESS_URL")
        else:
            target = self.failure_url or conf.get_setting("FAILURE_URL")
        return resolve_url(target) if target else None


class NotificationView(ResultIntakeMixin, View):
    """Receives ETpay's server-to-server notification (POST, CSRF-exempt, no login).

    Replies with an empty body: 200 when the result was accepted or is a duplicate, 400 when
    it was rejected (malformed, too large, bad signature, unknown session, mismatch), 500
    only when it could not be stored or applied, so that ETpay tries again.
    """

    http_method_names = ["post"]
    channel: str = Notification.Channel.WEBHOOK

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., HttpResponseBase]:
        view = super().as_view(**initkwargs)
        return non_atomic_requests_everywhere(csrf_exempt(login_not_required(view)))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Status policy: 200 tells ETpay to stop (accepted, or a repeat of a stored result);
        # 400 says retrying the same body cannot help, and the attempt is stored anyway; 5xx
        # only when the result could not be stored or applied, so that ETpay retries.
        _notification, status = self.receive(request)
        return HttpResponse(status=status)


class ReturnView(ResultStateMixin, View):
    """Where ETpay sends the payer back (GET), with the result JWT on the URL.

    ETpay has not published how the JWT is attached, so it is looked for as a path segment,
    as one of :attr:`query_keys`, as a bare query string (``?<JWT>``, also after ``concat``)
    and as any query value shaped like a JWT. The result is verified and recorded with
    channel ``redirect``; the payer is then redirected to the success or failure URL, or
    :attr:`template_name` is rendered with ``session``, ``notification``, ``state`` and
    ``result``. Without a JWT the template says the result is not known yet.
    """

    http_method_names = ["get"]
    template_name = "django_etpay/return.html"
    channel: str = Notification.Channel.REDIRECT
    #: Query parameters searched for the JWT, in order.
    query_keys: tuple[str, ...] = ("jwt", "token", "payment", "result", "data", "response")

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., HttpResponseBase]:
        view = super().as_view(**initkwargs)
        return non_atomic_requests_everywhere(login_not_required(view))

    def find_jwt(self, request: HttpRequest, path_value: str | None = None) -> str | None:
        """The JWT carried by the URL, if any."""
        if path_value:
            # A JWT appended with ``concat`` to a URL that had no query string lands in the
            # path, possibly as ``&jwt=<JWT>``: keep what follows the last "=".
            return _LEADING_SEPARATORS.sub("", path_value.rpartition("=")[2]).strip() or None
        for key in self.query_keys:
            value = request.GET.get(key, "").strip()
            if value:
                return value
        for key, values in request.GET.lists():
            if JWT_PATTERN.match(key.strip()) and not any(values):
                return key.strip()
        for _key, values in request.GET.lists():
            for value in values:
                if JWT_PATTERN.match(value.strip()):
                    return value.strip()
        return None

    def get_remote_addr(self, request: HttpRequest) -> str | None:
        """The payer's address; override behind a proxy you trust."""
        value = request.META.get("REMOTE_ADDR")
        return str(value) if value else None

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        remote_addr = self.get_remote_addr(request)
        try:
            raw_jwt = self.find_jwt(request, kwargs.get("jwt"))
        except _BODY_ERRORS as err:
            # A query string Django refuses to parse (too many fields...): bad input, stored.
            return self._reject(request, Reason.MALFORMED, type(err).__name__, remote_addr)
        if raw_jwt is None:
            return self.render_result(request, None)
        limit = int(conf.get_setting("NOTIFICATION_MAX_BYTES"))
        try:
            if len(raw_jwt) > limit:
                records.record_rejection(
                    channel=self.channel,
                    reason=Reason.TOO_LARGE,
                    detail=f"JWT of {len(raw_jwt)} characters exceeds {limit}.",
                    remote_addr=remote_addr,
                )
                return self.render_result(request, None, status=400)
            notification = pipeline.process_notification(
                raw_jwt, channel=self.channel, remote_addr=remote_addr
            )
        except Exception as err:
            logger.error("ETpay return result could not be stored (%s)", type(err).__name__)
            return self.render_result(request, None, status=500)
        state = self.get_state(notification)
        url = self.get_redirect_url(state, notification)
        if url:
            return redirect(url)
        status = 400 if notification.outcome == Outcome.REJECTED else 200
        return self.render_result(request, notification, status=status)

    def _reject(
        self, request: HttpRequest, reason: str, why: str, remote_addr: str | None
    ) -> HttpResponseBase:
        try:
            records.record_rejection(
                channel=self.channel,
                reason=reason,
                detail=f"The return URL could not be read ({why}).",
                remote_addr=remote_addr,
            )
        except Exception as err:
            logger.error("ETpay return result could not be stored (%s)", type(err).__name__)
            return self.render_result(request, None, status=500)
        return self.render_result(request, None, status=400)

    def render_result(
        self, request: HttpRequest, notification: Notification | None, *, status: int = 200
    ) -> TemplateResponse:
        """Render :attr:`template_name` for ``notification`` (``None``: result unknown).

        ``session`` is ``None`` in the context for a result that proves nothing.
        """
        state = self.get_state(notification)
        session = notification.session if notification is not None and state != "unknown" else None
        context = {
            "session": session,
            "notification": notification,
            "state": state,
            "result": notification.result if notification is not None else "",
        }
        return TemplateResponse(request, self.template_name, context, status=status)


class WidgetResultView(ResultIntakeMixin, ResultStateMixin, View):
    """Receives the JWT the payment widget handed to the page (POST, CSRF protected).

    Accepts JSON ``{"payment": "<JWT>"}`` or a form field ``payment``; records the result
    with channel ``widget`` and answers JSON ``{"status", "outcome", "redirect_url"}``:
    200 for accepted or duplicate, 400 for rejected, 413 for a body too large.
    """

    http_method_names = ["post"]
    channel: str = Notification.Channel.WIDGET

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., HttpResponseBase]:
        view = super().as_view(**initkwargs)
        protected = csrf_protect(view)

        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            return cls(**initkwargs).check_body_then_csrf(request, protected, *args, **kwargs)

        # The CSRF middleware skips this view: the same check runs inside it (csrf_protect),
        # after the body has been read, so that a body Django cannot parse is a stored
        # rejection answered in JSON instead of an exception raised by the middleware.
        return non_atomic_requests_everywhere(csrf_exempt(login_not_required(guarded)))

    def check_body_then_csrf(
        self,
        request: HttpRequest,
        protected: Callable[..., HttpResponseBase],
        *args: Any,
        **kwargs: Any,
    ) -> HttpResponseBase:
        """Bound and parse the body, then run the CSRF-protected view.

        A urlencoded body is parsed leniently (:func:`lenient_form`) before the CSRF check
        reads ``request.POST``, so that any charset works; a body over the limit, or one
        Django cannot parse (a broken multipart body...), is stored as rejected and answered
        with the usual JSON instead of an error page.
        """
        try:
            if request.method == "POST":
                body = self.read_body(request)
                if request.content_type == _URLENCODED:
                    charset = (request.content_params or {}).get("charset")
                    request.POST = lenient_form(body, charset)  # type: ignore[assignment]
            return protected(request, *args, **kwargs)
        except ResultBodyError as err:
            failure = err
        except _BODY_ERRORS as err:
            # Raised by the CSRF check parsing the body read above.
            failure = ResultBodyError(
                Reason.MALFORMED,
                f"The body could not be parsed ({type(err).__name__}).",
                raw_body=self.read_body(request).decode(_UTF8, "replace"),
            )
        status = failure.status
        try:
            records.record_rejection(
                channel=self.channel,
                reason=failure.reason,
                detail=failure.detail,
                raw_body=failure.raw_body,
                remote_addr=self.get_remote_addr(request),
            )
        except Exception as err:
            logger.error("ETpay widget result could not be stored (%s)", type(err).__name__)
            status = 500
        # A rejection tells nothing: the reply is the same with or without the stored row.
        return self.reply(None, status=status)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        notification, status = self.receive(request)
        return self.reply(notification, status=status)

    def reply(self, notification: Notification | None, *, status: int) -> JsonResponse:
        """The JSON reply: session status, outcome and where the page should go next."""
        state = self.get_state(notification)
        session = notification.session if state != "unknown" and notification else None
        return JsonResponse(
            {
                "status": session.status if session is not None else "unknown",
                "outcome": notification.outcome if notification is not None else "rejected",
                "redirect_url": self.get_redirect_url(state, notification),
            },
            status=status,
        )
