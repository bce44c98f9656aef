"""The admin shows every session and notification, read-only, and never a secret."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from django_etpay.models import Notification, PaymentSession

SIGNATURE_TOKEN = "sig-admin-test-0123456789abcdef0123456789abcdef"


@pytest.fixture
def paid_session(db: Any) -> PaymentSession:
    session = PaymentSession.objects.create(
        environment="sandbox",
        merchant_order_id="OC-700104",
        order_amount=125000,
        token="tok-admin-1",
        signature_token=SIGNATURE_TOKEN,
        status=PaymentSession.Status.PAID,
        payment_token="pay-admin-1",
        payer_bank="Banco de prueba",
    )
    Notification.objects.create(
        session=session,
        channel=Notification.Channel.WEBHOOK,
        outcome=Notification.Outcome.ACCEPTED,
        result=Notification.Result.SUCCESS,
        claims={"merchant_order_id": "OC-700104", "merchant_amount": 125000},
        raw_body='{"payment": "x.y.z"}',
    )
    return session


def _assert_no_secret(html: str) -> None:
    assert SIGNATURE_TOKEN not in html
    assert settings.TEST_MERCHANT_API_TOKEN not in html
    assert "signature_token" not in html


def test_session_changelist_and_search(admin_client: Client, paid_session: PaymentSession) -> None:
    url = reverse("admin:django_etpay_paymentsession_changelist")
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "OC-700104" in html
    assert "125.000 CLP" in html
    _assert_no_secret(html)

    found = admin_client.get(url, {"q": "OC-700104"})
    assert found.context["cl"].result_count == 1
    missed = admin_client.get(url, {"q": "OC-700105"})
    assert missed.context["cl"].result_count == 0
    # The secret is not searchable: searching for it finds nothing.
    by_secret = admin_client.get(url, {"q": SIGNATURE_TOKEN})
    assert by_secret.context["cl"].result_count == 0


def test_session_change_page_is_read_only_and_secret_free(
    admin_client: Client, paid_session: PaymentSession
) -> None:
    url = reverse("admin:django_etpay_paymentsession_change", args=[paid_session.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Banco de prueba" in html
    assert "https://pmt.etpay.test/session/tok-admin-1" in html
    _assert_no_secret(html)
    # Nothing ETpay sent can be edited: no input named after a model field.
    assert 'name="status"' not in html
    assert 'name="order_amount"' not in html
    # Posting a change does not alter the row.
    admin_client.post(url, {"status": "failed", "order_amount": "1"})
    paid_session.refresh_from_db()
    assert paid_session.status == PaymentSession.Status.PAID
    assert paid_session.order_amount == 125000


def test_sessions_cannot_be_added_by_hand(admin_client: Client, db: Any) -> None:
    response = admin_client.get(reverse("admin:django_etpay_paymentsession_add"))
    assert response.status_code == 403


def test_notifications_are_view_only(admin_client: Client, paid_session: PaymentSession) -> None:
    notification = Notification.objects.get()
    change_url = reverse("admin:django_etpay_notification_change", args=[notification.pk])
    response = admin_client.get(change_url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "OC-700104" in html
    assert reverse("admin:django_etpay_paymentsession_change", args=[paid_session.pk]) in html
    _assert_no_secret(html)

    assert admin_client.get(reverse("admin:django_etpay_notification_add")).status_code == 403
    delete_url = reverse("admin:django_etpay_notification_delete", args=[notification.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert Notification.objects.filter(pk=notification.pk).exists()


def test_reconcile_action_asks_etpay_and_applies_the_answer(
    admin_client: Client, db: Any, mocked_responses: Any
) -> None:
    session = PaymentSession.objects.create(
        environment="sandbox",
        merchant_order_id="OC-1",
        order_amount=5000,
        token="tok-reconcile-1",
        signature_token=SIGNATURE_TOKEN,
        status=PaymentSession.Status.PENDING,
        needs_reconciliation=True,
    )
    mocked_responses.post(
        "https://api.etpay.test/merchant/check_payment_status",
        json=[
            {
                "session_token": "tok-reconcile-1",
                "merchant_order_id": "OC-1",
                "merchant_amount": 5000,
                "merchant_currency": "CLP",
                "payment_token": "pay-reconcile-1",
                "payment_status": "success",
            }
        ],
    )
    url = reverse("admin:django_etpay_paymentsession_changelist")
    response = admin_client.post(
        url,
        {"action": "reconcile_selected", "_selected_action": [session.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Checked 1 session with ETpay." in response.content.decode()
    session.refresh_from_db()
    assert session.status == PaymentSession.Status.PAID
    assert session.payment_token == "pay-reconcile-1"
    assert not session.needs_reconciliation
    assert session.notifications.get().channel == Notification.Channel.POLL


def test_reconcile_action_reports_etpay_failures(
    admin_client: Client, db: Any, mocked_responses: Any
) -> None:
    session = PaymentSession.objects.create(
        environment="sandbox",
        merchant_order_id="OC-2",
        order_amount=5000,
        token="tok-reconcile-2",
        signature_token=SIGNATURE_TOKEN,
        status=PaymentSession.Status.PENDING,
    )
    mocked_responses.post(
        "https://api.etpay.test/merchant/check_payment_status",
        status=503,
        json={"message": "maintenance"},
    )
    response = admin_client.post(
        reverse("admin:django_etpay_paymentsession_changelist"),
        {"action": "reconcile_selected", "_selected_action": [session.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "HTTP 503: maintenance" in html
    assert "Checked 0 sessions with ETpay." in html
    session.refresh_from_db()
    assert session.status == PaymentSession.Status.PENDING
