"""The admin with the app's models routed to their own database (``tests/routers.py``).

Staff, their sessions and the admin's messages live on ``default``; the lists, pages and
actions read and change the payment rows on ``payments``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import Settings

from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.factories import make_session, mint_jwt, status_entry
from tests.router_support import DATABASES, assert_nothing_on_default
from tests.routers import PAYMENTS, ROUTERS

pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)

SESSIONS = "admin:django_etpay_paymentsession_changelist"
NOTIFICATIONS = "admin:django_etpay_notification_changelist"
EFFECTS = "admin:django_etpay_outboxeffect_changelist"
STATUS_URL = "https://api.etpay.test/merchant/check_payment_status"
Status = PaymentSession.Status


@pytest.fixture(autouse=True)
def routed(settings: Settings) -> None:
    settings.DATABASE_ROUTERS = ROUTERS


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def paid(session: PaymentSession) -> None:
    body = json.dumps({"payment": mint_jwt(session)})
    response = Client().post("/etpay/notification/", body, content_type="application/json")
    assert response.status_code == 200


def test_lists_show_the_rows_of_payments(admin_client: Client) -> None:
    session = make_session(merchant_order_id="OC-ROUTED-1", needs_reconciliation=True)
    paid(session)

    sessions = admin_client.get(reverse(SESSIONS))
    attention = admin_client.get(reverse(SESSIONS), {"attention": "yes"})
    found = admin_client.get(reverse(SESSIONS), {"q": "OC-ROUTED-1"})
    notifications = admin_client.get(reverse(NOTIFICATIONS))
    effects = admin_client.get(reverse(EFFECTS))

    for response in (sessions, found, notifications, effects):
        assert response.status_code == 200
        assert "OC-ROUTED-1" in response.content.decode()
    assert attention.status_code == 200
    assert sessions.context["cl"].result_count == 1
    assert found.context["cl"].result_count == 1
    assert notifications.context["cl"].result_count == 1
    assert effects.context["cl"].result_count == 1


def test_change_pages_show_the_rows_of_payments(admin_client: Client) -> None:
    session = make_session(merchant_order_id="OC-ROUTED-2")
    paid(session)
    notification = Notification.objects.get(session=session)
    effect = OutboxEffect.objects.get(session=session)

    pages = [
        reverse("admin:django_etpay_paymentsession_change", args=[session.pk]),
        reverse("admin:django_etpay_notification_change", args=[notification.pk]),
        reverse("admin:django_etpay_outboxeffect_change", args=[effect.pk]),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert "OC-ROUTED-2" in response.content.decode(), url


def test_reconcile_action(admin_client: Client, mocked_responses: Any) -> None:
    session = make_session(needs_reconciliation=True)
    entry = status_entry(session)
    mocked_responses.post(STATUS_URL, json=[entry])

    response = admin_client.post(
        reverse(SESSIONS),
        {"action": "reconcile_selected", "_selected_action": [session.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert messages_of(response)[0] == "Checked 1 session with ETpay: 1 now paid."
    session.refresh_from_db()
    assert session.status == Status.PAID
    assert_nothing_on_default()


def test_expire_action(admin_client: Client) -> None:
    pending, done = make_session(), make_session(status=Status.PAID)

    response = admin_client.post(
        reverse(SESSIONS),
        {"action": "expire_selected", "_selected_action": [pending.pk, done.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert messages_of(response) == [
        "Expired 1 session.",
        "1 selected session was not pending and was left as it is.",
    ]
    pending.refresh_from_db()
    done.refresh_from_db()
    assert (pending.status, done.status) == (Status.EXPIRED, Status.PAID)
    assert OutboxEffect.objects.get(session=pending).kind == OutboxEffect.Kind.SESSION_EXPIRED
    assert_nothing_on_default()


def test_deliver_again_action(admin_client: Client) -> None:
    session = make_session(status=Status.PAID)
    effect = OutboxEffect.objects.create(
        kind=OutboxEffect.Kind.PAYMENT_COMPLETED,
        session=session,
        state=OutboxEffect.State.FAILED,
        attempts=10,
        lease_until=timezone.now() + timedelta(days=1),
        last_error="shop.receivers.fulfil: ConnectionError",
    )

    response = admin_client.post(
        reverse(EFFECTS), {"action": "deliver_again", "_selected_action": [effect.pk]}, follow=True
    )

    assert messages_of(response) == ["1 effect will be delivered by the next reconcile run."]
    effect.refresh_from_db()
    assert (effect.state, effect.attempts) == (OutboxEffect.State.PENDING, 0)
    assert OutboxEffect.objects.using(PAYMENTS).filter(state="pending").count() == 1
    assert_nothing_on_default()
