"""The REST API shows a session's refunded amount, read-only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from pytest_django import Settings
from rest_framework.test import APIClient

from django_etpay import refunds
from django_etpay.models import PaymentSession
from tests.api_support import api_settings
from tests.factories import make_session

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.api_urls")]


@pytest.fixture(autouse=True)
def api_configured(settings: Settings) -> Iterator[None]:
    settings.ETPAY = api_settings()
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def owner(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("refund-owner", password="pw")


def status(session: PaymentSession, user: Any) -> Any:
    client = APIClient()
    client.force_authenticate(user)
    return client.get(f"/etpay/api/sessions/{session.token}/")


def test_the_refunded_amount_counts_completed_refunds_only(owner: Any) -> None:
    session = make_session(created_by=owner, status=PaymentSession.Status.PAID, order_amount=10000)
    assert status(session, owner).json()["refunded_amount"] == 0
    done = refunds.request_refund(session, 2500, reason="one item")
    refunds.request_refund(session, 1000, reason="not confirmed yet")
    failed = refunds.request_refund(session, 500, reason="failed")
    refunds.fail_refund(failed, reason="closed account")
    before = status(session, owner)
    assert before.json()["refunded_amount"] == 0

    refunds.complete_refund(done, reference="ETP-5")

    after = status(session, owner)
    assert after.json()["refunded_amount"] == 2500
    # The ETag follows, so a poller revalidating with the old one hears of the refund.
    assert after["ETag"] != before["ETag"]


def test_a_pending_session_reports_nothing_refunded(owner: Any) -> None:
    session = make_session(created_by=owner)
    assert status(session, owner).json()["refunded_amount"] == 0


def test_the_refunded_amount_cannot_be_written(owner: Any) -> None:
    session = make_session(created_by=owner, status=PaymentSession.Status.PAID)
    client = APIClient()
    client.force_authenticate(owner)

    response = client.patch(
        f"/etpay/api/sessions/{session.token}/", {"refunded_amount": 5}, format="json"
    )

    assert response.status_code == 405
    assert status(session, owner).json()["refunded_amount"] == 0
