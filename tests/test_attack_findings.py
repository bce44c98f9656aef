"""Regression tests for what an attack run against the app found, one section per finding.

Each test failed before its fix (checked by reverting the fix) and passes after it. The attack
corpus (``tests/attack``) replays the same kinds of requests through gunicorn on PostgreSQL;
these tests pin each finding with the Django test client, so that they run everywhere.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Callable
from typing import Any
from unittest import mock

import jwt
import pytest
from django.contrib import admin
from django.core.exceptions import FieldError
from django.db import connection
from django.test import Client, RequestFactory
from django.urls import include, path

from django_etpay import views
from django_etpay.models import Notification, PaymentSession
from tests.factories import (
    CSRF_SECRET,
    NOTIFICATION_URL,
    RETURN_URL,
    WIDGET_URL,
    WRONG_KEY,
    make_session,
    mint_jwt,
    mint_system_error_jwt,
    raw_jws,
    sign,
)
from tests.testshop.admin import OrderAdmin
from tests.testshop.models import Order

pytestmark = pytest.mark.django_db

Outcome = Notification.Outcome
Reason = Notification.Reason
Status = PaymentSession.Status


# A second admin site, mounted only by the tests that use it, where a careless shop lists the
# secret behind its foreign key in a filter and a search: the field itself must refuse.
careless_site = admin.AdminSite(name="careless")


class CarelessOrderAdmin(OrderAdmin):
    list_filter = ("payment_session__signature_token",)
    search_fields = ("payment_session__signature_token",)


careless_site.register(Order, CarelessOrderAdmin)

urlpatterns = [
    path("careless-admin/", careless_site.urls),
    path("", include("tests.urls")),
]


def post_json(client: Client, url: str, raw: str, **extra: Any) -> Any:
    return client.post(url, json.dumps({"payment": raw}), content_type="application/json", **extra)


# -- 1. signature keys recoverable through the admin, and readable in a database dump --------


def _changelist_answers(client: Client, url: str, param: str, values: list[str]) -> set[str]:
    """What the changelist answers for each value, reduced to what an attacker can observe."""
    answers = set()
    for value in values:
        response = client.get(url, {param: value})
        count = response.context["cl"].result_count if response.status_code == 200 else None
        answers.add(f"{response.status_code} {response.get('Location', '')} {count}")
    return answers


@pytest.mark.parametrize(
    "param",
    [
        "signature_token__startswith",
        "signature_token",
        "signature_token__exact",
        "signature_token__istartswith",
        "signature_token__contains",
        "signature_token__regex",
        "signature_token__gt",
        "signature_token__isnull",
        "signature_token__in",
    ],
)
def test_session_changelist_refuses_lookups_on_the_key(admin_client: Client, param: str) -> None:
    session = make_session()
    key = session.signature_token
    url = "/admin/django_etpay/paymentsession/"
    values = [key[:5], key, "zzzz", "", "True", "False", f"{key},x"]
    answers = _changelist_answers(admin_client, url, param, values)
    # One answer whatever the value: nothing to learn, and never a filtered list.
    assert len(answers) == 1, answers
    assert answers.pop().startswith("400 ")


def test_notification_changelist_refuses_lookups_through_the_session(
    admin_client: Client,
) -> None:
    session = make_session()
    Notification.objects.create(session=session, channel="webhook", outcome="rejected")
    key = session.signature_token
    url = "/admin/django_etpay/notification/"
    for param in ("session__signature_token__startswith", "session__signature_token"):
        answers = _changelist_answers(admin_client, url, param, [key[:5], key, "zzzz"])
        assert len(answers) == 1, answers
        assert not answers.pop().startswith("200 ")


def test_a_shops_order_admin_cannot_filter_on_the_key(admin_client: Client) -> None:
    session = make_session()
    Order.objects.create(number="A-1", payment_session=session)
    key = session.signature_token
    url = "/admin/testshop/order/"
    for param in (
        "payment_session__signature_token__startswith",
        "payment_session__signature_token",
        "payment_session__signature_token__isnull",
    ):
        answers = _changelist_answers(admin_client, url, param, [key[:5], key, "zzzz"])
        assert len(answers) == 1, answers
        assert not answers.pop().startswith("200 ")


@pytest.mark.urls(__name__)
def test_a_careless_shop_admin_still_cannot_filter_or_search_on_the_key(
    admin_client: Client,
) -> None:
    session = make_session()
    Order.objects.create(number="A-2", payment_session=session)
    key = session.signature_token
    url = "/careless-admin/testshop/order/"
    # The shop's admin lists the lookup in list_filter, so Django's admin lets it through: the
    # model field refuses it, and the admin answers "incorrect lookup" whatever the value.
    answers = _changelist_answers(
        admin_client, url, "payment_session__signature_token__startswith", [key[:5], "zzzz"]
    )
    assert len(answers) == 1, answers
    assert "?e=1" in answers.pop()
    page = admin_client.get(url)
    assert key not in page.content.decode()
    with pytest.raises(FieldError):
        admin_client.get(url, {"q": key[:8]})


def test_orm_lookups_on_the_key_are_refused() -> None:
    session = make_session()
    attempts: list[Callable[[], Any]] = [
        lambda: PaymentSession.objects.filter(signature_token=session.signature_token).count(),
        lambda: PaymentSession.objects.filter(signature_token__startswith="sig").count(),
        lambda: PaymentSession.objects.filter(signature_token__isnull=False).count(),
        lambda: PaymentSession.objects.exclude(signature_token="").count(),
        lambda: Notification.objects.filter(session__signature_token__startswith="s").count(),
        lambda: Order.objects.filter(payment_session__signature_token__gte="s").count(),
    ]
    for attempt in attempts:
        with pytest.raises(FieldError):
            attempt()


def test_the_key_is_encrypted_in_the_database() -> None:
    session = make_session()
    twin = make_session(signature_token=session.signature_token)
    table = PaymentSession._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT signature_token FROM {connection.ops.quote_name(table)} "  # noqa: S608
            "WHERE id IN (%s, %s) ORDER BY id",
            [session.pk, twin.pk],
        )
        stored = [row[0] for row in cursor.fetchall()]
    assert all(session.signature_token not in value for value in stored)
    assert stored[0] != stored[1]  # a fresh nonce each time: equal keys do not look equal
    assert all(value.startswith("fernet:") for value in stored)
    # The application still reads the plain key, and values() hands out no plain key.
    assert PaymentSession.objects.get(pk=session.pk).signature_token == session.signature_token
    values = list(PaymentSession.objects.values_list("signature_token", flat=True))
    assert session.signature_token not in values


# -- 2. a NUL or a lone surrogate in the session_token claim ---------------------------------


@pytest.mark.parametrize("bad", ["x\x00", "x\ud800", "\x00", "sess-\udfff-1"])
@pytest.mark.parametrize("system_error", [False, True], ids=["result", "system-error"])
def test_unstorable_session_token_claim_is_malformed_on_every_view(
    client: Client, csrf_client: Client, bad: str, system_error: bool
) -> None:
    claims: dict[str, Any] = {"session_token": bad}
    if system_error:
        claims["system_error"] = True
    raw = jwt.encode(claims, "k" * 32)

    replies = [
        client.generic("POST", NOTIFICATION_URL, raw, content_type="text/plain"),
        client.get(RETURN_URL, {"jwt": raw}),
        post_json(csrf_client, WIDGET_URL, raw, HTTP_X_CSRFTOKEN=CSRF_SECRET),
    ]

    assert [r.status_code for r in replies] == [400, 400, 400]
    assert replies[2].json()["status"] == "unknown"
    stored = list(Notification.objects.order_by("pk"))
    assert [(n.outcome, n.reason, n.session_id) for n in stored] == [
        (Outcome.REJECTED, Reason.MALFORMED, None)
    ] * 3
    assert [n.channel for n in stored] == ["webhook", "redirect", "widget"]


# -- 3. a form body in another charset -------------------------------------------------------


def test_form_body_in_latin1_is_read(client: Client) -> None:
    session = make_session()
    body = f"payment={mint_jwt(session)}".encode("iso-8859-1")
    ctype = "application/x-www-form-urlencoded; charset=iso-8859-1"
    response = client.generic("POST", NOTIFICATION_URL, body, content_type=ctype)
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.status == Status.PAID


@pytest.mark.parametrize("charset", ["iso-8859-1", "utf-16", "no-such-charset"])
def test_form_body_in_another_charset_is_stored_not_a_500(client: Client, charset: str) -> None:
    ctype = f"application/x-www-form-urlencoded; charset={charset}"
    response = client.generic("POST", NOTIFICATION_URL, b"payment=a.b.c", content_type=ctype)
    assert response.status_code == 400
    record = Notification.objects.get()
    assert (record.outcome, record.reason) == (Outcome.REJECTED, Reason.MALFORMED)


def test_widget_form_body_in_latin1_passes_the_csrf_check(csrf_client: Client) -> None:
    session = make_session()
    body = f"payment={mint_jwt(session)}&csrfmiddlewaretoken={CSRF_SECRET}".encode("latin-1")
    response = csrf_client.generic(
        "POST",
        WIDGET_URL,
        body,
        content_type="application/x-www-form-urlencoded; charset=iso-8859-1",
    )
    assert response.status_code == 200
    assert response.json()["status"] == "paid"


def test_widget_unreadable_form_is_stored_and_answered_in_json(csrf_client: Client) -> None:
    response = csrf_client.generic(
        "POST",
        WIDGET_URL,
        b"payment=a.b.c",
        content_type="application/x-www-form-urlencoded; charset=iso-8859-1",
        HTTP_X_CSRFTOKEN=CSRF_SECRET,
    )
    assert response.status_code == 400
    assert response.json() == {"status": "unknown", "outcome": "rejected", "redirect_url": None}
    assert Notification.objects.get().reason == Reason.MALFORMED


# -- 4. unbounded storage through forged system errors (and replays) -------------------------


def _forged_system_error(session: PaymentSession, padding: int = 9000) -> str:
    """What anyone holding the payment URL can mint: signed with the public session token."""
    claims = {"session_token": session.token, "system_error": True, "pad": "p" * padding}
    return sign(claims, session.token or "")


def test_forged_system_errors_store_a_bounded_number_of_rows(
    client: Client, settings: Any
) -> None:
    settings.ETPAY = {**settings.ETPAY, "MAX_DUPLICATES_PER_SESSION": 5}
    session = make_session()
    codes = [
        post_json(client, NOTIFICATION_URL, _forged_system_error(session)).status_code
        for _ in range(12)
    ]
    assert codes == [200] * 12
    assert Notification.objects.filter(session=session).count() == 5
    session.refresh_from_db()
    assert session.status == Status.PENDING
    assert session.needs_reconciliation is True


def test_replayed_results_store_a_bounded_number_of_rows(client: Client, settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "MAX_DUPLICATES_PER_SESSION": 3}
    session = make_session()
    raw = mint_jwt(session)
    codes = [post_json(client, NOTIFICATION_URL, raw).status_code for _ in range(8)]
    assert codes == [200] * 8
    outcomes = list(Notification.objects.filter(session=session).values_list("outcome", flat=True))
    # The transition is always stored; repeats up to the cap.
    assert sorted(outcomes) == ["accepted", "duplicate", "duplicate", "duplicate"]


def test_each_session_has_its_own_budget(client: Client, settings: Any) -> None:
    settings.ETPAY = {
        **settings.ETPAY,
        "MAX_DUPLICATES_PER_SESSION": 2,
        "MAX_REJECTED_PER_SESSION": 2,
    }
    first, second = make_session(), make_session()
    for session in (first, second):
        for _ in range(4):
            post_json(client, NOTIFICATION_URL, _forged_system_error(session, padding=10))
            post_json(client, NOTIFICATION_URL, mint_jwt(session, key=WRONG_KEY))
    for session in (first, second):
        outcomes = sorted(
            Notification.objects.filter(session=session).values_list("outcome", flat=True)
        )
        assert outcomes == ["duplicate", "duplicate", "rejected", "rejected"]


def test_results_naming_no_session_have_a_global_budget(client: Client, settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "MAX_UNLINKED_REJECTED_PER_HOUR": 3}
    codes = [
        client.generic("POST", NOTIFICATION_URL, f"garbage-{i}", content_type="text/plain")
        for i in range(6)
    ]
    assert [r.status_code for r in codes] == [400] * 6
    assert Notification.objects.filter(session=None).count() == 3
    # A result for a known session is still stored.
    session = make_session()
    post_json(client, NOTIFICATION_URL, mint_jwt(session, key=WRONG_KEY))
    assert Notification.objects.filter(session=session).count() == 1


# -- 5. a result that proves nothing reveals nothing -----------------------------------------


@pytest.mark.parametrize("status", [Status.PAID, Status.FAILED, Status.PENDING, Status.EXPIRED])
def test_forged_system_error_reveals_no_status_to_the_widget(
    csrf_client: Client, status: str
) -> None:
    session = make_session(status=status)
    response = post_json(
        csrf_client, WIDGET_URL, mint_system_error_jwt(session), HTTP_X_CSRFTOKEN=CSRF_SECRET
    )
    assert response.status_code == 200
    assert response.json() == {"status": "unknown", "outcome": "duplicate", "redirect_url": None}


@pytest.mark.parametrize("status", [Status.PAID, Status.FAILED, Status.PENDING])
def test_forged_system_error_reveals_no_status_on_the_return_page(
    client: Client, status: str
) -> None:
    session = make_session(status=status)
    response = client.get(RETURN_URL, {"jwt": mint_system_error_jwt(session)})
    assert response.status_code == 200
    assert response.context["state"] == "unknown"
    assert response.context["session"] is None
    html = response.content.decode()
    assert session.merchant_order_id not in html
    assert "confirmed" not in html


def test_forged_system_error_answers_the_same_for_every_status(
    csrf_client: Client, client: Client, settings: Any
) -> None:
    settings.ETPAY = {**settings.ETPAY, "SUCCESS_URL": "/ok/", "FAILURE_URL": "/ko/"}
    answers = set()
    for status in (Status.PAID, Status.FAILED, Status.PENDING, Status.EXPIRED, Status.ERROR):
        session = make_session(status=status)
        raw = mint_system_error_jwt(session)
        widget = post_json(csrf_client, WIDGET_URL, raw, HTTP_X_CSRFTOKEN=CSRF_SECRET)
        back = client.get(RETURN_URL, {"jwt": raw})
        answers.add((widget.status_code, widget.content, back.status_code, back["Location"]))
    reply = b'{"status": "unknown", "outcome": "duplicate", "redirect_url": "/ko/"}'
    assert answers == {(200, reply, 302, "/ko/")}


# -- 6. deeply nested JSON inside a JWT ------------------------------------------------------


def _deep_jwt(session: PaymentSession, depth: int = 1500) -> str:
    head, _body, signature = raw_jws({"alg": "HS256", "typ": "JWT"}, {}, b"s" * 32).split(".")
    nested = f'{{"session_token": "{session.token}", "x": {"[" * depth}{"]" * depth}}}'
    body = base64.urlsafe_b64encode(nested.encode()).rstrip(b"=").decode()
    return f"{head}.{body}.{signature}"


def test_deeply_nested_claims_are_malformed_on_every_view(
    client: Client, csrf_client: Client
) -> None:
    session = make_session()
    raw = _deep_jwt(session)
    replies = [
        client.generic("POST", NOTIFICATION_URL, raw, content_type="text/plain"),
        client.get(RETURN_URL, {"jwt": raw}),
        post_json(csrf_client, WIDGET_URL, raw, HTTP_X_CSRFTOKEN=CSRF_SECRET),
    ]
    assert [r.status_code for r in replies] == [400, 400, 400]
    assert Notification.objects.filter(outcome=Outcome.REJECTED).count() == 3


@pytest.mark.parametrize("error", [RecursionError, ValueError, TypeError, OverflowError])
def test_any_failure_to_parse_an_untrusted_jwt_is_malformed(client: Client, error: type) -> None:
    # Older PyJWT releases let RecursionError and friends escape from jwt.decode.
    session = make_session()
    with mock.patch("jwt.decode", side_effect=error("from the parser")):
        response = post_json(client, NOTIFICATION_URL, mint_jwt(session))
    assert response.status_code == 400
    record = Notification.objects.get()
    assert (record.outcome, record.reason) == (Outcome.REJECTED, Reason.MALFORMED)
    session.refresh_from_db()
    assert session.status == Status.PENDING


# -- 7. chunked bodies -----------------------------------------------------------------------


def _chunked_request(body: bytes, *, terminated: bool) -> Any:
    request = RequestFactory().generic(
        "POST",
        NOTIFICATION_URL,
        b"",
        content_type="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
    )
    # What gunicorn hands over for a chunked body: no Content-Length, a de-chunked stream.
    request.META.pop("CONTENT_LENGTH", None)
    request.META["wsgi.input"] = io.BytesIO(body)
    if terminated:
        request.META["wsgi.input_terminated"] = True
    request._stream = io.BytesIO(b"")  # what Django reads without a Content-Length
    return request


def test_chunked_body_is_read_when_the_server_terminates_the_stream() -> None:
    session = make_session()
    body = json.dumps({"payment": mint_jwt(session)}).encode()
    response = views.NotificationView.as_view()(_chunked_request(body, terminated=True))
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.status == Status.PAID


def test_chunked_body_over_the_limit_is_refused(settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_MAX_BYTES": 200}
    body = json.dumps({"payment": "x" * 500}).encode()
    response = views.NotificationView.as_view()(_chunked_request(body, terminated=True))
    assert response.status_code == 413
    assert Notification.objects.get().reason == Reason.TOO_LARGE


def test_chunked_body_the_server_cannot_read_asks_for_a_retry() -> None:
    session = make_session()
    body = json.dumps({"payment": mint_jwt(session)}).encode()
    response = views.NotificationView.as_view()(_chunked_request(body, terminated=False))
    # Not 400, which would tell ETpay to give up: a 5xx makes it try again.
    assert response.status_code == 503
    record = Notification.objects.get()
    assert (record.outcome, record.reason) == (Outcome.REJECTED, Reason.MALFORMED)
    session.refresh_from_db()
    assert session.status == Status.PENDING


# -- 8. NUL or a lone surrogate in a signed result's payer fields ---------------------------


@pytest.mark.parametrize("claim", ["user_bank", "user_account", "user_rut", "payment_token"])
@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b", "\x00"])
def test_signed_result_with_unstorable_payer_fields_is_applied(
    client: Client, receivers: dict[str, mock.MagicMock], claim: str, bad: str
) -> None:
    session = make_session()
    raw = mint_jwt(session, **{claim: bad})
    first = post_json(client, NOTIFICATION_URL, raw)
    again = post_json(client, NOTIFICATION_URL, raw)
    assert (first.status_code, again.status_code) == (200, 200)
    session.refresh_from_db()
    assert session.status == Status.PAID
    field = {
        "user_bank": "payer_bank",
        "user_account": "payer_account",
        "user_rut": "payer_rut",
        "payment_token": "payment_token",
    }[claim]
    stored = getattr(session, field)
    assert "\x00" not in stored
    assert stored == bad.replace("\x00", "\ufffd").replace("\ud800", "\ufffd")
    records = Notification.objects.filter(session=session).order_by("pk")
    assert list(records.values_list("outcome", flat=True)) == [Outcome.ACCEPTED, Outcome.DUPLICATE]


# -- 9. the rejection cap holds under concurrency --------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_rejection_cap_holds_under_concurrency(settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "MAX_REJECTED_PER_SESSION": 5}
    session = make_session()
    raw = mint_jwt(session, key=WRONG_KEY)
    threads = 30
    barrier = threading.Barrier(threads)
    codes: list[int] = []
    lock = threading.Lock()

    def deliver() -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=30)
            code = post_json(Client(), NOTIFICATION_URL, raw).status_code
            with lock:
                codes.append(code)
        finally:
            connection.close()

    workers = [threading.Thread(target=deliver, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert codes == [400] * threads
    assert Notification.objects.filter(session=session).count() == 5
