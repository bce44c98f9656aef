"""The browser-facing views: the payer's return (GET) and the widget's result (POST)."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from django.test import Client
from django.urls import reverse

from django_etpay.models import Notification, PaymentSession
from tests.factories import (
    CSRF_SECRET,
    RETURN_URL,
    WIDGET_URL,
    failing_session_saves,
    make_session,
    mint_jwt,
    mint_system_error_jwt,
)

pytestmark = pytest.mark.django_db

Outcome = Notification.Outcome
Reason = Notification.Reason
Status = PaymentSession.Status


@pytest.fixture
def shop_urls(settings: Any) -> None:
    settings.ETPAY = {
        **settings.ETPAY,
        "SUCCESS_URL": "/shop/thanks/",
        "FAILURE_URL": "/shop/retry/",
    }


def assert_no_secret(content: bytes, session: PaymentSession, raw: str | None = None) -> None:
    text = content.decode()
    assert session.signature_token not in text
    assert "Traceback" not in text
    if raw is not None:
        assert raw not in text


def test_url_names() -> None:
    assert reverse("django_etpay:return") == RETURN_URL
    assert reverse("django_etpay:widget-result") == WIDGET_URL
    assert reverse("django_etpay:return-jwt", args=["a.b.c"]) == "/etpay/return/a.b.c/"


# -- return -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_url",
    [
        pytest.param(lambda raw: f"{RETURN_URL}?jwt={raw}", id="jwt-param"),
        pytest.param(lambda raw: f"{RETURN_URL}?order=OC-1&jwt={raw}", id="concat-ampersand"),
        pytest.param(lambda raw: f"{RETURN_URL}?token={raw}", id="token-param"),
        pytest.param(lambda raw: f"{RETURN_URL}?payment={raw}", id="payment-param"),
        pytest.param(lambda raw: f"{RETURN_URL}?result={raw}", id="result-param"),
        pytest.param(lambda raw: f"{RETURN_URL}?data={raw}", id="data-param"),
        pytest.param(lambda raw: f"{RETURN_URL}?{raw}", id="bare-query"),
        pytest.param(lambda raw: f"{RETURN_URL}?order=OC-1&{raw}", id="bare-after-concat"),
        pytest.param(lambda raw: f"{RETURN_URL}?unexpected_name={raw}", id="any-param"),
        pytest.param(lambda raw: f"{RETURN_URL}{raw}/", id="path-segment"),
        pytest.param(lambda raw: f"{RETURN_URL}{raw}", id="path-segment-no-slash"),
        pytest.param(lambda raw: f"{RETURN_URL}&jwt={raw}", id="concat-without-query"),
    ],
)
def test_return_reads_the_jwt_from_the_url(client: Client, shop_urls: None, make_url: Any) -> None:
    session = make_session()
    raw = mint_jwt(session)
    response = client.get(make_url(raw))
    assert response.status_code == 302
    assert response["Location"] == "/shop/thanks/"
    session.refresh_from_db()
    assert session.status == Status.PAID
    record = Notification.objects.get(session=session)
    assert (record.channel, record.outcome) == (Notification.Channel.REDIRECT, Outcome.ACCEPTED)


def test_return_failure_goes_to_failure_url(client: Client, shop_urls: None) -> None:
    session = make_session()
    response = client.get(RETURN_URL, {"jwt": mint_jwt(session, payment_status=False)})
    assert response.status_code == 302
    assert response["Location"] == "/shop/retry/"
    session.refresh_from_db()
    assert session.status == Status.FAILED


def test_return_system_error_goes_to_failure_url(client: Client, shop_urls: None) -> None:
    session = make_session()
    response = client.get(RETURN_URL, {"jwt": mint_system_error_jwt(session)})
    assert response["Location"] == "/shop/retry/"
    session.refresh_from_db()
    assert session.status == Status.PENDING
    assert session.needs_reconciliation is True


def test_return_url_names_are_resolved(client: Client, settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "SUCCESS_URL": "django_etpay:return"}
    session = make_session()
    response = client.get(RETURN_URL, {"jwt": mint_jwt(session)})
    assert response["Location"] == RETURN_URL


def test_return_renders_template_without_urls(client: Client) -> None:
    session = make_session()
    raw = mint_jwt(session)
    response = client.get(RETURN_URL, {"jwt": raw})
    assert response.status_code == 200
    assert "django_etpay/return.html" in [t.name for t in response.templates]
    assert response.context["state"] == "paid"
    assert response.context["session"].pk == session.pk
    assert b"Payment received" in response.content
    assert session.merchant_order_id.encode() in response.content
    assert_no_secret(response.content, session, raw)


def test_return_without_jwt_says_result_unknown(client: Client) -> None:
    response = client.get(RETURN_URL)
    assert response.status_code == 200
    assert response.context["state"] == "unknown"
    assert b"not known yet" in response.content
    assert not Notification.objects.exists()


def test_return_with_bad_signature_is_recorded_and_shows_no_secret(
    client: Client, shop_urls: None
) -> None:
    session = make_session()
    raw = mint_jwt(session, key="somebody-elses-key-0123456789abcdefghijklmn")
    response = client.get(RETURN_URL, {"jwt": raw})
    assert response.status_code == 400
    assert response.context["state"] == "unknown"
    assert response.context["session"] is None
    assert_no_secret(response.content, session, raw)
    session.refresh_from_db()
    assert session.status == Status.PENDING
    record = Notification.objects.get(session=session)
    assert (record.channel, record.reason) == (Notification.Channel.REDIRECT, Reason.BAD_SIGNATURE)


def test_return_with_garbage_is_recorded(client: Client) -> None:
    response = client.get(RETURN_URL, {"jwt": "not-a-jwt"})
    assert response.status_code == 400
    assert Notification.objects.get().reason == Reason.MALFORMED


def test_return_too_long_is_refused(client: Client, settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "NOTIFICATION_MAX_BYTES": 100}
    session = make_session()
    response = client.get(RETURN_URL, {"jwt": mint_jwt(session)})
    assert response.status_code == 400
    assert Notification.objects.get().reason == Reason.TOO_LARGE
    session.refresh_from_db()
    assert session.status == Status.PENDING


def test_return_untrusted_browser_result_shows_pending(client: Client, settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "ACCEPT_BROWSER_RESULTS": False}
    session = make_session()
    response = client.get(RETURN_URL, {"jwt": mint_jwt(session)})
    assert response.status_code == 200
    assert response.context["state"] == "pending"
    session.refresh_from_db()
    assert session.status == Status.PENDING
    assert Notification.objects.get(session=session).reason == Reason.BROWSER_NOT_TRUSTED


def test_return_after_webhook_is_a_duplicate_and_shows_paid(
    client: Client, receivers: dict[str, mock.MagicMock], django_capture_on_commit_callbacks: Any
) -> None:
    session = make_session()
    raw = mint_jwt(session)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/etpay/notification/", json.dumps({"payment": raw}), "application/json")
        response = client.get(RETURN_URL, {"jwt": raw})
    assert response.context["state"] == "paid"
    assert response.context["notification"].outcome == Outcome.DUPLICATE
    receivers["payment_completed"].assert_called_once()


def test_return_is_get_only(client: Client) -> None:
    assert client.post(RETURN_URL, {"jwt": "x"}).status_code == 405


# -- widget result ----------------------------------------------------------------------------


def widget_post(client: Client, body: Any, **extra: Any) -> Any:
    return client.post(WIDGET_URL, json.dumps(body), content_type="application/json", **extra)


def test_widget_requires_csrf(csrf_client: Client) -> None:
    session = make_session()
    response = widget_post(csrf_client, {"payment": mint_jwt(session)})
    assert response.status_code == 403
    session.refresh_from_db()
    assert session.status == Status.PENDING
    assert not Notification.objects.exists()


def test_widget_result_accepted(
    csrf_client: Client,
    shop_urls: None,
    receivers: dict[str, mock.MagicMock],
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = make_session()
    raw = mint_jwt(session)
    with django_capture_on_commit_callbacks(execute=True):
        response = widget_post(csrf_client, {"payment": raw}, HTTP_X_CSRFTOKEN=CSRF_SECRET)
    assert response.status_code == 200
    assert response.json() == {
        "status": "paid",
        "outcome": "accepted",
        "redirect_url": "/shop/thanks/",
    }
    assert_no_secret(response.content, session, raw)
    record = Notification.objects.get(session=session)
    assert record.channel == Notification.Channel.WIDGET
    receivers["payment_completed"].assert_called_once()


def test_widget_form_field(csrf_client: Client) -> None:
    session = make_session()
    response = csrf_client.post(
        WIDGET_URL, {"payment": mint_jwt(session), "csrfmiddlewaretoken": CSRF_SECRET}
    )
    assert response.status_code == 200
    assert response.json() == {"status": "paid", "outcome": "accepted", "redirect_url": None}


def test_widget_rejected(csrf_client: Client) -> None:
    session = make_session()
    raw = mint_jwt(session, merchant_order_id="OC-other")
    response = widget_post(csrf_client, {"payment": raw}, HTTP_X_CSRFTOKEN=CSRF_SECRET)
    assert response.status_code == 400
    assert response.json() == {"status": "unknown", "outcome": "rejected", "redirect_url": None}
    assert Notification.objects.get(session=session).reason == Reason.ORDER_MISMATCH


def test_widget_bad_body(csrf_client: Client) -> None:
    response = widget_post(csrf_client, {"payment": 1}, HTTP_X_CSRFTOKEN=CSRF_SECRET)
    assert response.status_code == 400
    assert response.json()["outcome"] == "rejected"
    record = Notification.objects.get()
    assert (record.channel, record.reason) == (Notification.Channel.WIDGET, Reason.MALFORMED)


def test_widget_untrusted(csrf_client: Client, settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "ACCEPT_BROWSER_RESULTS": False}
    session = make_session()
    response = widget_post(
        csrf_client, {"payment": mint_jwt(session)}, HTTP_X_CSRFTOKEN=CSRF_SECRET
    )
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert response.json()["outcome"] == "duplicate"
    session.refresh_from_db()
    assert session.status == Status.PENDING


def test_return_internal_failure_renders_page_without_traceback(client: Client) -> None:
    session = make_session()
    raw = mint_jwt(session)
    with failing_session_saves():
        response = client.get(RETURN_URL, {"jwt": raw})
    assert response.status_code == 500
    assert response.context["state"] == "unknown"
    assert_no_secret(response.content, session, raw)
    assert Notification.objects.get(session=session).reason == Reason.INTERNAL_ERROR


def test_widget_internal_failure_answers_json_500(csrf_client: Client) -> None:
    session = make_session()
    raw = mint_jwt(session)
    with failing_session_saves():
        response = widget_post(csrf_client, {"payment": raw}, HTTP_X_CSRFTOKEN=CSRF_SECRET)
    assert response.status_code == 500
    assert response.json() == {"status": "unknown", "outcome": "rejected", "redirect_url": None}
    assert_no_secret(response.content, session, raw)


# -- the failed page and the redirect rules -----------------------------------------------------


def test_return_failure_renders_the_failed_page_without_urls(client: Client) -> None:
    session = make_session()
    response = client.get(RETURN_URL, {"jwt": mint_jwt(session, payment_status="declined")})
    assert response.status_code == 200
    assert response.context["state"] == "failed"
    assert response.context["result"] == Notification.Result.FAILURE
    assert response.context["session"].pk == session.pk
    html = response.content.decode()
    assert "Payment not completed" in html
    assert "Payment received" not in html
    assert "etpay-return--failed" in html


def test_return_failure_repeat_on_a_failed_session_still_shows_failed(client: Client) -> None:
    session = make_session(status=Status.FAILED)
    response = client.get(RETURN_URL, {"jwt": mint_jwt(session, payment_status=False)})
    assert response.context["state"] == "failed"
    assert response.context["notification"].outcome == Outcome.DUPLICATE


def test_return_unknown_status_shows_pending(client: Client) -> None:
    session = make_session()
    response = client.get(RETURN_URL, {"jwt": mint_jwt(session, payment_status="processing")})
    assert response.status_code == 200
    assert response.context["state"] == "pending"
    assert b"Confirming your payment" in response.content


def test_return_untrusted_verified_success_goes_to_the_success_url(
    client: Client, shop_urls: None, settings: Any
) -> None:
    settings.ETPAY = {**settings.ETPAY, "ACCEPT_BROWSER_RESULTS": False}
    session = make_session()
    response = client.get(RETURN_URL, {"jwt": mint_jwt(session)})
    # Verified with the session's own key: the payer is sent on as for a success, while the
    # session waits for the server-to-server confirmation.
    assert response.status_code == 302
    assert response["Location"] == "/shop/thanks/"
    session.refresh_from_db()
    assert session.status == Status.PENDING


def test_return_untrusted_verified_failure_goes_to_the_failure_url(
    client: Client, shop_urls: None, settings: Any
) -> None:
    settings.ETPAY = {**settings.ETPAY, "ACCEPT_BROWSER_RESULTS": False}
    session = make_session()
    response = client.get(RETURN_URL, {"jwt": mint_jwt(session, payment_status=False)})
    assert response["Location"] == "/shop/retry/"


@pytest.mark.parametrize("status", [False, "processing"])
def test_paid_session_receiving_a_non_success_repeat_goes_to_the_success_url(
    client: Client, shop_urls: None, status: object
) -> None:
    session = make_session(status=Status.PAID)
    response = client.get(RETURN_URL, {"jwt": mint_jwt(session, payment_status=status)})
    # Money moved: a stale failure must not send the payer to "try again".
    assert response.status_code == 302
    assert response["Location"] == "/shop/thanks/"
    session.refresh_from_db()
    assert session.status == Status.PAID


def test_return_rejected_result_renders_unknown_even_with_urls(
    client: Client, shop_urls: None
) -> None:
    session = make_session(status=Status.PAID)
    response = client.get(RETURN_URL, {"jwt": mint_jwt(session, merchant_amount=1)})
    assert response.status_code == 400
    assert response.context["state"] == "unknown"
    assert response.context["session"] is None
    assert session.merchant_order_id.encode() not in response.content


def test_widget_untrusted_success_redirects_to_success_url(
    csrf_client: Client, shop_urls: None, settings: Any
) -> None:
    settings.ETPAY = {**settings.ETPAY, "ACCEPT_BROWSER_RESULTS": False}
    session = make_session()
    response = widget_post(
        csrf_client, {"payment": mint_jwt(session)}, HTTP_X_CSRFTOKEN=CSRF_SECRET
    )
    assert response.json() == {
        "status": "pending",
        "outcome": "duplicate",
        "redirect_url": "/shop/thanks/",
    }


def test_widget_failure_reports_failed_and_the_failure_url(
    csrf_client: Client, shop_urls: None
) -> None:
    session = make_session()
    response = widget_post(
        csrf_client,
        {"payment": mint_jwt(session, payment_status=False)},
        HTTP_X_CSRFTOKEN=CSRF_SECRET,
    )
    assert response.json() == {
        "status": "failed",
        "outcome": "accepted",
        "redirect_url": "/shop/retry/",
    }


# -- forensic fields through the views ------------------------------------------------------------


def test_return_records_the_payers_address_and_the_jwt(client: Client) -> None:
    session = make_session()
    raw = mint_jwt(session, key="not-the-sessions-key-0123456789abcdefghijklmn")
    client.get(RETURN_URL, {"jwt": raw}, REMOTE_ADDR="192.0.2.44")
    record = Notification.objects.get(session=session)
    assert record.raw_body == raw
    assert record.remote_addr == "192.0.2.44"
    assert (record.status_before, record.status_after) == ("pending", "pending")


def test_widget_records_the_body_and_the_address(csrf_client: Client) -> None:
    body = json.dumps({"payment": 7})
    csrf_client.post(
        WIDGET_URL,
        body,
        content_type="application/json",
        HTTP_X_CSRFTOKEN=CSRF_SECRET,
        REMOTE_ADDR="192.0.2.45",
    )
    record = Notification.objects.get()
    assert record.raw_body == body
    assert record.remote_addr == "192.0.2.45"
    assert record.channel == Notification.Channel.WIDGET


def test_return_with_an_unparseable_query_string_is_recorded(
    client: Client, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    response = client.get(RETURN_URL + "?" + "&".join(f"f{i}=x" for i in range(20)))
    assert response.status_code == 400
    assert response.context["state"] == "unknown"
    record = Notification.objects.get()
    assert (record.outcome, record.reason) == (Outcome.REJECTED, Reason.MALFORMED)
    assert record.channel == Notification.Channel.REDIRECT
