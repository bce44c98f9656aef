"""The views at their edges: exact limits, every body form and failure, what each rejection
stores and says, and the views as built by ``as_view()``."""

from __future__ import annotations

import io
import json
import logging
from typing import Any
from unittest import mock

import pytest
from django.db import DatabaseError, connections
from django.http import HttpRequest
from django.test import Client, RequestFactory

from django_etpay import pipeline, records, views
from django_etpay.models import Notification, PaymentSession
from tests.factories import (
    CSRF_SECRET,
    NOTIFICATION_URL,
    RETURN_URL,
    WIDGET_URL,
    make_session,
    mint_jwt,
    mint_payment_claims,
    sign,
)

pytestmark = pytest.mark.django_db

Reason = Notification.Reason
Status = PaymentSession.Status


def stored() -> Notification:
    return Notification.objects.latest("pk")


def post(client: Client, body: bytes | str, content_type: str, **extra: Any) -> Any:
    return client.generic("POST", NOTIFICATION_URL, body, content_type=content_type, **extra)


def sized_body(session: PaymentSession, size: int) -> bytes:
    """A JSON body with a valid JWT for ``session``, padded with spaces to ``size`` bytes."""
    body = json.dumps({"payment": mint_jwt(session)}).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


# -- what each rejection stores and says -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "detail"),
    [
        (b"", "application/json", "Empty body."),
        (b"{nope", "application/json", "Body is not JSON."),
        (b"[1]", "application/json", "JSON body is not an object with a 'payment' key."),
        (b'{"payment": 7}', "application/json", "'payment' is not a string."),
        (b"jwt=x", "application/x-www-form-urlencoded", "No 'payment' form field."),
        (b"payment=", "", "No 'payment' form field."),
        (b"<p/>", "application/xml", "Unsupported Content-Type 'application/xml'."),
        (
            b"<p/>",
            "application/" + "x" * 200,
            f"Unsupported Content-Type {('application/' + 'x' * 200)[:100]!r}.",
        ),
        (b"--b\r\nbroken", "multipart/form-data; boundary=b", "No 'payment' form field."),
        (
            b"--b\r\nbroken",
            "multipart/form-data",
            "The multipart body could not be parsed (MultiPartParserError).",
        ),
        (b'{"jwt": "x"}', "", "JSON body is not an object with a 'payment' key."),
    ],
)
def test_rejected_bodies_store_what_arrived_and_why(
    client: Client, body: bytes, content_type: str, detail: str
) -> None:
    response = post(client, body, content_type, REMOTE_ADDR="192.0.2.7")
    assert response.status_code == 400
    record = stored()
    assert (record.reason, record.detail) == (Reason.MALFORMED, detail)
    assert record.raw_body == body.decode()
    assert record.remote_addr == "192.0.2.7"


def test_views_without_remote_address_store_none() -> None:
    request = RequestFactory().post(NOTIFICATION_URL, b"x", content_type="text/plain")
    del request.META["REMOTE_ADDR"]
    views.NotificationView.as_view()(request)
    assert stored().remote_addr is None


def test_result_body_error_reads_as_its_detail() -> None:
    err = views.ResultBodyError(Reason.MALFORMED, "Empty body.")
    assert (str(err), err.status, err.raw_body) == ("Empty body.", 400, "")


@pytest.mark.parametrize("content_type", ["application/vnd.etpay+json", "application/json"])
def test_json_suffix_types_are_json(client: Client, content_type: str) -> None:
    session = make_session()
    response = post(client, json.dumps({"payment": mint_jwt(session)}), content_type)
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.status == Status.PAID


def test_a_bare_jwt_sent_as_json_is_not_json(client: Client) -> None:
    response = post(client, mint_jwt(make_session()), "application/problem+json")
    assert response.status_code == 400
    assert stored().detail == "Body is not JSON."


# -- exact limits ------------------------------------------------------------------------------


def test_a_body_of_exactly_the_limit_is_read(client: Client, settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_MAX_BYTES": 1500}
    session = make_session()
    assert post(client, sized_body(session, 1500), "application/json").status_code == 200
    over = post(client, sized_body(make_session(), 1501), "application/json")
    assert over.status_code == 413
    assert stored().detail == "Body of 1501 bytes exceeds 1500."


def test_an_invalid_content_length_is_malformed() -> None:
    request = RequestFactory().post(NOTIFICATION_URL, b"x", content_type="text/plain")
    request.META["CONTENT_LENGTH"] = "ten"
    response = views.NotificationView.as_view()(request)
    assert response.status_code == 400
    assert (stored().reason, stored().detail) == (Reason.MALFORMED, "Invalid Content-Length.")


def test_djangos_own_body_limit_is_too_large(client: Client, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = post(client, sized_body(make_session(), 900), "application/json")
    assert response.status_code == 413
    assert (stored().reason, stored().detail) == (Reason.TOO_LARGE, "Body too large.")
    multipart = post(
        client,
        b'--b\r\nContent-Disposition: form-data; name="payment"\r\n\r\n'
        + b"x" * 300
        + b"\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
    )
    assert multipart.status_code == 413


def test_a_return_jwt_of_exactly_the_limit_is_processed(client: Client, settings: Any) -> None:
    session = make_session()
    raw = mint_jwt(session)
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_MAX_BYTES": len(raw)}
    assert client.get(RETURN_URL, {"jwt": raw}).status_code == 200
    session.refresh_from_db()
    assert session.status == Status.PAID
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_MAX_BYTES": len(raw) - 1}
    response = client.get(RETURN_URL, {"jwt": raw}, REMOTE_ADDR="192.0.2.8")
    assert response.status_code == 400
    record = stored()
    assert (record.reason, record.detail, record.remote_addr, record.raw_body) == (
        Reason.TOO_LARGE,
        f"JWT of {len(raw)} characters exceeds {len(raw) - 1}.",
        "192.0.2.8",
        "",
    )


# -- charsets ----------------------------------------------------------------------------------


def test_form_in_utf16_is_read(client: Client) -> None:
    session = make_session()
    body = f"payment={mint_jwt(session)}".encode("utf-16")
    response = post(client, body, "application/x-www-form-urlencoded; charset=utf-16")
    assert response.status_code == 200


def test_form_with_an_undecodable_byte_elsewhere_is_read(client: Client) -> None:
    session = make_session()
    body = b"note=\xff\xfe&payment=" + mint_jwt(session).encode()
    assert post(client, body, "application/x-www-form-urlencoded").status_code == 200


def test_lenient_form_falls_back_to_utf8() -> None:
    assert views.lenient_form(b"a=%C3%A9", "no-such-charset")["a"] == "é"
    assert views.lenient_form(b"a=\xe9", "latin-1")["a"] == "é"
    assert views.lenient_form(b"a=1&" * 2000, None) == {}


# -- chunked and unreadable bodies --------------------------------------------------------------


class Stream:
    """A server's input stream: hands out at most what is asked, or fails."""

    def __init__(self, data: bytes = b"", error: Exception | None = None) -> None:
        self.data = io.BytesIO(data)
        self.error = error
        self.asked: list[int] = []

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.data.close()

    def read(self, size: int = -1) -> bytes:
        if self.error is not None:
            raise self.error
        assert size is not None, "an unbounded read"
        assert size >= 0, "an unbounded read"
        self.asked.append(size)
        return self.data.read(size)


def chunked(path: str, stream: Stream, terminated: bool = True, **extra: Any) -> HttpRequest:
    request = RequestFactory().generic(
        "POST",
        path,
        b"",
        content_type="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
        **extra,
    )
    request.META.pop("CONTENT_LENGTH", None)
    request.META["wsgi.input"] = stream
    if terminated:
        request.META["wsgi.input_terminated"] = True
    request._stream = io.BytesIO(b"")  # what Django reads without a Content-Length
    return request


def test_chunked_read_is_bounded_and_exact_limit_passes(settings: Any) -> None:
    session = make_session()
    body = json.dumps({"payment": mint_jwt(session)}).encode()
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_MAX_BYTES": len(body)}
    stream = Stream(body)
    response = views.NotificationView.as_view()(chunked(NOTIFICATION_URL, stream))
    assert response.status_code == 200
    assert stream.asked == [len(body) + 1]
    over = Stream(body + b" ")
    assert views.NotificationView.as_view()(chunked(NOTIFICATION_URL, over)).status_code == 413
    assert stored().detail == f"Chunked body exceeds {len(body)} bytes."


def test_chunked_stream_that_fails_asks_for_a_retry() -> None:
    response = views.NotificationView.as_view()(
        chunked(NOTIFICATION_URL, Stream(error=OSError("reset")))
    )
    assert response.status_code == 503
    assert (stored().reason, stored().detail) == (
        Reason.MALFORMED,
        "The chunked body could not be read.",
    )


def test_chunked_body_the_server_cannot_hand_over_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="django_etpay")
    stream = Stream(b'{"payment": "x"}')
    response = views.NotificationView.as_view()(chunked(NOTIFICATION_URL, stream, False))
    assert response.status_code == 503
    assert stream.asked == []
    assert stored().detail == "Chunked body this server cannot read (no wsgi.input_terminated)."
    assert [r.getMessage() for r in caplog.records if r.name == "django_etpay.views"] == [
        "ETpay result sent chunked to a server that cannot hand over chunked bodies; "
        "answering 503 so that it is sent again (see the deployment notes)"
    ]


def test_a_server_without_wsgi_input_hands_over_the_whole_body() -> None:
    # ASGI servers read the whole body before the view runs, chunked or not.
    session = make_session()
    body = json.dumps({"payment": mint_jwt(session)}).encode()
    request = chunked(NOTIFICATION_URL, Stream())
    del request.META["wsgi.input"]
    request._stream = io.BytesIO(body)
    assert views.NotificationView.as_view()(request).status_code == 200


def test_widget_reads_a_chunked_body_once_for_the_csrf_check_and_the_view() -> None:
    session = make_session()
    body = json.dumps({"payment": mint_jwt(session)}).encode()
    request = chunked(WIDGET_URL, Stream(body), HTTP_X_CSRFTOKEN=CSRF_SECRET)
    request.COOKIES["csrftoken"] = CSRF_SECRET
    response = views.WidgetResultView.as_view()(request)
    assert response.status_code == 200
    assert json.loads(response.content)["status"] == "paid"


def test_an_unreadable_body_asks_for_a_retry() -> None:
    request = RequestFactory().post(NOTIFICATION_URL, b"x" * 10, content_type="text/plain")
    request._stream = Stream(error=OSError("reset by peer"))
    response = views.NotificationView.as_view()(request)
    assert response.status_code == 503
    assert (stored().reason, stored().detail) == (Reason.MALFORMED, "The body could not be read.")


def test_a_multipart_body_parsed_before_the_view_is_still_read(client: Client) -> None:
    session = make_session()
    request = RequestFactory().post(NOTIFICATION_URL, {"payment": mint_jwt(session)})
    assert request.POST["payment"]  # e.g. by a middleware: the raw body is gone
    response = views.NotificationView.as_view()(request)
    assert response.status_code == 200
    other = RequestFactory().post(NOTIFICATION_URL, {"jwt": "x"})
    assert other.POST["jwt"] == "x"
    assert views.NotificationView.as_view()(other).status_code == 400
    assert (stored().detail, stored().raw_body) == ("No 'payment' form field.", "")


# -- the return view ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["&{raw}/", "&a=1&jwt={raw}/", ";{raw}/", "jwt={raw}"],
    ids=["amp", "key", "sep", "key2"],
)
def test_return_reads_a_jwt_appended_to_the_path(client: Client, path: str) -> None:
    session = make_session()
    response = client.get(RETURN_URL + path.format(raw=mint_jwt(session)))
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.status == Status.PAID


def test_return_ignores_bare_query_words_that_are_not_jwts(client: Client) -> None:
    response = client.get(RETURN_URL + "?thanks&order=1")
    assert response.status_code == 200
    assert response.context["state"] == "unknown"
    assert not Notification.objects.exists()


def test_every_return_page_has_the_request_and_a_result(client: Client, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3
    pages = [
        client.get(RETURN_URL),
        client.get(RETURN_URL, {"jwt": "not-a-jwt"}),
        client.get(RETURN_URL + "?" + "&".join(f"f{i}=1" for i in range(9))),
        client.get(RETURN_URL, {"jwt": mint_jwt(make_session())}),
    ]
    assert [p.status_code for p in pages] == [200, 400, 400, 200]
    for page in pages:
        assert page.context["request"].path == RETURN_URL
    assert [p.context["result"] for p in pages] == ["", "", "", "success"]


def test_unreadable_query_string_detail_names_the_error(client: Client, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3
    client.get(RETURN_URL + "?" + "&".join(f"f{i}=1" for i in range(9)), REMOTE_ADDR="192.0.2.9")
    record = stored()
    assert record.detail == "The return URL could not be read (TooManyFieldsSent)."
    assert record.remote_addr == "192.0.2.9"


def test_return_failures_to_store_answer_500_and_log(
    client: Client, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3
    fields = "&".join(f"f{i}=1" for i in range(9))
    with mock.patch.object(records, "record_rejection", side_effect=DatabaseError("down")):
        # Called directly: Django's own error report of a 500 would read the query string too.
        unreadable = views.ReturnView.as_view()(RequestFactory().get(f"{RETURN_URL}?{fields}"))
        too_long = client.get(RETURN_URL, {"jwt": "x" * 70_000})
    with mock.patch.object(pipeline, "process_notification", side_effect=DatabaseError("down")):
        failing = client.get(RETURN_URL, {"jwt": "a.b.c"})
    assert [p.status_code for p in (unreadable, too_long, failing)] == [500, 500, 500]
    assert all(p.context_data["state"] == "unknown" for p in (unreadable, too_long, failing))
    assert [r.getMessage() for r in caplog.records if r.name == "django_etpay.views"] == [
        "ETpay return result could not be stored (DatabaseError)"
    ] * 3


# -- the widget view ---------------------------------------------------------------------------


def test_widget_body_over_the_limit_is_stored_before_the_csrf_check(
    csrf_client: Client, settings: Any
) -> None:
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_MAX_BYTES": 100}
    response = csrf_client.post(
        WIDGET_URL,
        {"payment": "x" * 200, "csrfmiddlewaretoken": CSRF_SECRET},
        REMOTE_ADDR="192.0.2.5",
    )
    assert response.status_code == 413
    assert response.json() == {"status": "unknown", "outcome": "rejected", "redirect_url": None}
    record = stored()
    assert record.reason == Reason.TOO_LARGE
    assert record.detail.startswith("Body of ")
    assert record.detail.endswith(" exceeds 100.")
    assert (record.channel, record.remote_addr) == ("widget", "192.0.2.5")


def test_widget_body_django_cannot_parse_is_stored_with_the_error(csrf_client: Client) -> None:
    response = csrf_client.generic(
        "POST",
        WIDGET_URL,
        b"--b\r\nbroken",
        content_type="multipart/form-data",
        HTTP_X_CSRFTOKEN=CSRF_SECRET,
    )
    assert response.status_code == 400
    record = stored()
    assert (record.reason, record.detail, record.raw_body) == (
        Reason.MALFORMED,
        "The body could not be parsed (MultiPartParserError).",
        "--b\r\nbroken",
    )


def test_widget_body_over_djangos_limit_is_too_large(csrf_client: Client, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 50
    response = csrf_client.generic(
        "POST",
        WIDGET_URL,
        json.dumps({"payment": "x" * 100}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=CSRF_SECRET,
    )
    assert response.status_code == 413
    assert (stored().reason, stored().detail) == (Reason.TOO_LARGE, "Body too large.")


def test_widget_guard_that_cannot_store_answers_500(
    csrf_client: Client, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_MAX_BYTES": 10}
    with mock.patch.object(records, "record_rejection", side_effect=DatabaseError("down")):
        response = csrf_client.post(WIDGET_URL, {"payment": "x" * 50})
    assert response.status_code == 500
    assert response.json() == {"status": "unknown", "outcome": "rejected", "redirect_url": None}
    assert [r.getMessage() for r in caplog.records if r.name == "django_etpay.views"] == [
        "ETpay widget result could not be stored (DatabaseError)"
    ]


def test_widget_non_success_repeat_on_a_paid_session_goes_to_success(
    csrf_client: Client, settings: Any
) -> None:
    settings.ETPAY = {**settings.ETPAY, "SUCCESS_URL": "/ok/", "FAILURE_URL": "/ko/"}
    session = make_session(status=Status.PAID)
    response = csrf_client.post(
        WIDGET_URL,
        json.dumps({"payment": mint_jwt(session, payment_status=False)}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=CSRF_SECRET,
    )
    assert response.json() == {"status": "paid", "outcome": "duplicate", "redirect_url": "/ok/"}


def test_internal_failure_is_logged_with_its_channel(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with mock.patch.object(pipeline, "process_notification", side_effect=DatabaseError("x")):
        response = post(client, json.dumps({"payment": "a.b.c"}), "application/json")
    assert response.status_code == 500
    assert [r.getMessage() for r in caplog.records if r.name == "django_etpay.views"] == [
        "ETpay webhook result could not be stored (DatabaseError)"
    ]


# -- the views as as_view() builds them ------------------------------------------------------


def test_notification_view_is_csrf_exempt_non_atomic_and_open() -> None:
    view = views.NotificationView.as_view()
    assert view.view_class is views.NotificationView  # type: ignore[attr-defined]
    assert view.csrf_exempt is True  # type: ignore[attr-defined]
    assert view._non_atomic_requests == set(connections)  # type: ignore[attr-defined]
    assert getattr(view, "login_required", False) is False
    session = make_session()
    request = RequestFactory().post(
        NOTIFICATION_URL, json.dumps({"payment": mint_jwt(session)}), "application/json"
    )
    assert view(request).status_code == 200


def test_return_view_is_non_atomic_and_open() -> None:
    view = views.ReturnView.as_view()
    assert view.view_class is views.ReturnView  # type: ignore[attr-defined]
    assert view._non_atomic_requests == set(connections)  # type: ignore[attr-defined]
    assert getattr(view, "login_required", False) is False
    assert not getattr(view, "csrf_exempt", False)
    response = view(RequestFactory().get(RETURN_URL))
    response.render()
    assert response.status_code == 200


def test_widget_view_checks_csrf_itself() -> None:
    view = views.WidgetResultView.as_view()
    assert view.view_class is views.WidgetResultView  # type: ignore[attr-defined]
    assert view._non_atomic_requests == set(connections)  # type: ignore[attr-defined]
    # Exempt from the middleware, because it runs the same check itself, after reading the body.
    assert view.csrf_exempt is True  # type: ignore[attr-defined]
    assert getattr(view, "login_required", False) is False
    session = make_session()
    body = json.dumps({"payment": mint_jwt(session)})
    without = RequestFactory().post(WIDGET_URL, body, "application/json")
    assert view(without).status_code == 403
    with_token = RequestFactory().post(
        WIDGET_URL, body, "application/json", HTTP_X_CSRFTOKEN=CSRF_SECRET
    )
    with_token.COOKIES["csrftoken"] = CSRF_SECRET
    assert view(with_token).status_code == 200
    assert view(RequestFactory().get(WIDGET_URL)).status_code == 405


def test_views_accept_extra_keyword_arguments() -> None:
    session = make_session()
    raw = mint_jwt(session)
    claims = mint_payment_claims(session)
    assert sign(claims, session.signature_token)
    response = views.ReturnView.as_view()(RequestFactory().get(RETURN_URL), jwt=raw)
    response.render()
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.status == Status.PAID


# -- what the views tell, case by case -----------------------------------------------------------


def test_unknown_charset_and_broken_bytes_still_read_the_form(client: Client) -> None:
    session = make_session()
    body = b"note=\xff&payment=" + mint_jwt(session).encode()
    response = post(client, body, "application/x-www-form-urlencoded; charset=x-unknown")
    assert response.status_code == 200


def test_utf16_form_with_a_stray_byte_is_read(client: Client) -> None:
    session = make_session()
    body = f"payment={mint_jwt(session)}&x=1".encode("utf-16") + b"\x00"
    response = post(client, body, "application/x-www-form-urlencoded; charset=utf-16")
    assert response.status_code == 200


def test_widget_form_in_utf16(csrf_client: Client) -> None:
    session = make_session()
    response = csrf_client.generic(
        "POST",
        WIDGET_URL,
        f"payment={mint_jwt(session)}".encode("utf-16"),
        content_type="application/x-www-form-urlencoded; charset=utf-16",
        HTTP_X_CSRFTOKEN=CSRF_SECRET,
    )
    assert response.status_code == 200
    assert response.json()["status"] == "paid"


def test_widget_unparseable_body_keeps_its_bytes_readable(csrf_client: Client) -> None:
    body = b"--b\r\n\xff\xfe broken"
    response = csrf_client.generic(
        "POST", WIDGET_URL, body, content_type="multipart/form-data", HTTP_X_CSRFTOKEN=CSRF_SECRET
    )
    assert response.status_code == 400
    assert stored().raw_body == body.decode("utf-8", "replace")


def test_get_remote_addr_without_an_address() -> None:
    request = RequestFactory().get(RETURN_URL)
    del request.META["REMOTE_ADDR"]
    assert views.ReturnView().get_remote_addr(request) is None
    assert views.NotificationView().get_remote_addr(request) is None
    request.META["REMOTE_ADDR"] = "192.0.2.1"
    assert views.NotificationView().get_remote_addr(request) == "192.0.2.1"


@pytest.mark.parametrize(
    ("status", "claims"),
    [(Status.ERROR, {"payment_status": False}), (Status.FAILED, {"payment_status": "processing"})],
    ids=["failure-on-an-errored-session", "unknown-status-on-a-failed-session"],
)
def test_the_failed_state_comes_from_the_result_or_the_session(
    client: Client, status: str, claims: dict[str, Any]
) -> None:
    session = make_session(status=status)
    response = client.get(RETURN_URL, {"jwt": mint_jwt(session, **claims)})
    assert response.context["state"] == "failed"


def test_pages_rendered_after_failures_have_the_request(client: Client, settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_MAX_BYTES": 10}
    too_long = client.get(RETURN_URL, {"jwt": "x" * 11})
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_MAX_BYTES": 65536}
    with mock.patch.object(pipeline, "process_notification", side_effect=DatabaseError("x")):
        failing = client.get(RETURN_URL, {"jwt": "a.b.c"})
    assert [p.status_code for p in (too_long, failing)] == [400, 500]
    for page in (too_long, failing):
        assert page.context["request"].path == RETURN_URL


def test_unreadable_url_page_that_cannot_be_stored_has_the_request(settings: Any) -> None:
    from django.test.signals import template_rendered

    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3
    contexts: list[Any] = []

    def capture(sender: Any, context: Any, **kwargs: Any) -> None:
        contexts.append(context.flatten())  # while the context processors' values are bound

    request = RequestFactory().get(RETURN_URL + "?" + "&".join(f"f{i}=1" for i in range(9)))
    template_rendered.connect(capture, dispatch_uid="edges-capture")
    try:
        with mock.patch.object(records, "record_rejection", side_effect=DatabaseError("x")):
            response = views.ReturnView.as_view()(request)
            response.render()
    finally:
        template_rendered.disconnect(dispatch_uid="edges-capture")
    assert response.status_code == 500
    assert contexts[0]["request"] is request


def test_widget_csrf_token_inside_a_utf16_form(csrf_client: Client) -> None:
    # The CSRF check reads the token from the body, parsed in the body's own charset.
    session = make_session()
    body = f"payment={mint_jwt(session)}&csrfmiddlewaretoken={CSRF_SECRET}".encode("utf-16")
    response = csrf_client.generic(
        "POST",
        WIDGET_URL,
        body,
        content_type="application/x-www-form-urlencoded; charset=utf-16",
    )
    assert response.status_code == 200
    assert response.json()["status"] == "paid"
