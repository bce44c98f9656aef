"""services.session_for_order: the order's live session on every page load, one at a time.

The concurrency test runs on real PostgreSQL: many threads, each with its own connection, ask
for the same order's session at once. ETpay's answer to the first is held back until every
other request is seen waiting on a lock in ``pg_stat_activity``, so the test proves that they
wait for the first one rather than relying on timing.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from pytest_django import Settings

from django_etpay import services
from django_etpay.client import EtpayClient
from django_etpay.exceptions import EtpayHTTPError, EtpayValidationError
from django_etpay.models import OrderLock, PaymentSession
from django_etpay.testing import FakeEtpay
from tests.factories import make_session

OUTLET = {
    "MERCHANT_CODE": "cl_outlet",
    "MERCHANT_API_TOKEN": "outlet-api-token-SECRET",
    "API_URL": "https://outlet-api.etpay.test/v1",
    "PMT_URL": "https://outlet-pmt.etpay.test",
    "ENVIRONMENT": "sandbox",
}


def initialize_calls(fake: FakeEtpay) -> int:
    return sum(1 for call in fake.calls if call.path.endswith("/session/initialize"))


@pytest.mark.django_db
class TestOneSessionPerOrder:
    def test_is_exported_by_services(self) -> None:
        from django_etpay import orders

        assert services.session_for_order is orders.session_for_order

    def test_a_reload_gets_the_same_session_and_etpay_is_called_once(
        self, fake_etpay: FakeEtpay
    ) -> None:
        first = services.session_for_order("OC-1", 6990, customer_email="a@example.com")
        second = services.session_for_order("OC-1", 6990, customer_email="b@example.com")

        assert first.status == PaymentSession.Status.PENDING
        assert second.pk == first.pk
        assert second.token == first.token
        assert initialize_calls(fake_etpay) == 1
        assert PaymentSession.objects.filter(merchant_order_id="OC-1").count() == 1
        assert OrderLock.objects.filter(merchant="", merchant_order_id="OC-1").count() == 1

    def test_an_int_order_id_names_the_same_order(self, fake_etpay: FakeEtpay) -> None:
        first = services.session_for_order(42, 1000)  # type: ignore[arg-type]

        assert services.session_for_order("42", 1000).pk == first.pk
        assert initialize_calls(fake_etpay) == 1

    def test_the_newest_live_session_is_returned(self, fake_etpay: FakeEtpay) -> None:
        older = make_session(merchant_order_id="OC-2", order_amount=1000)
        newer = make_session(merchant_order_id="OC-2", order_amount=1000)
        PaymentSession.objects.filter(pk=older.pk).update(
            created_at=timezone.now() - timedelta(minutes=5)
        )

        assert services.session_for_order("OC-2", 1000).pk == newer.pk
        assert initialize_calls(fake_etpay) == 0

    def test_a_changed_amount_gets_a_new_session(self, fake_etpay: FakeEtpay) -> None:
        first = services.session_for_order("OC-3", 1000)
        second = services.session_for_order("OC-3", 1500)

        assert second.pk != first.pk
        assert second.order_amount == 1500
        assert initialize_calls(fake_etpay) == 2
        assert services.session_for_order("OC-3", 1000).pk == first.pk

    def test_another_order_gets_its_own_session(self, fake_etpay: FakeEtpay) -> None:
        first = services.session_for_order("OC-4", 1000)

        assert services.session_for_order("OC-5", 1000).pk != first.pk

    @pytest.mark.parametrize(
        "status",
        [
            PaymentSession.Status.INITIALIZING,
            PaymentSession.Status.PAID,
            PaymentSession.Status.FAILED,
            PaymentSession.Status.EXPIRED,
            PaymentSession.Status.ERROR,
        ],
    )
    def test_only_a_pending_session_is_returned(self, fake_etpay: FakeEtpay, status: str) -> None:
        old = make_session(merchant_order_id="OC-6", order_amount=1000, status=status)

        session = services.session_for_order("OC-6", 1000)

        assert session.pk != old.pk
        assert session.status == PaymentSession.Status.PENDING
        assert initialize_calls(fake_etpay) == 1

    def test_a_session_past_session_ttl_is_not_returned(
        self, fake_etpay: FakeEtpay, settings: Settings
    ) -> None:
        settings.ETPAY = {**settings.ETPAY, "SESSION_TTL": timedelta(minutes=30)}
        old = make_session(merchant_order_id="OC-7", order_amount=1000)
        now = timezone.now()
        PaymentSession.objects.filter(pk=old.pk).update(created_at=now - timedelta(minutes=29))
        assert services.session_for_order("OC-7", 1000).pk == old.pk

        PaymentSession.objects.filter(pk=old.pk).update(created_at=now - timedelta(minutes=31))
        session = services.session_for_order("OC-7", 1000)

        assert session.pk != old.pk
        assert initialize_calls(fake_etpay) == 1

    def test_another_merchant_account_gets_its_own_session(
        self, fake_etpay: FakeEtpay, settings: Settings
    ) -> None:
        settings.ETPAY = {**settings.ETPAY, "MERCHANTS": {"outlet": OUTLET}}
        default = services.session_for_order("OC-8", 1000)

        outlet = services.session_for_order("OC-8", 1000, merchant="outlet")

        assert outlet.pk != default.pk
        assert outlet.merchant == "outlet"
        assert services.session_for_order("OC-8", 1000, merchant="outlet").pk == outlet.pk
        assert services.session_for_order("OC-8", 1000).pk == default.pk

    def test_a_session_of_another_environment_is_not_returned(self, fake_etpay: FakeEtpay) -> None:
        old = make_session(merchant_order_id="OC-9", order_amount=1000, environment="production")

        assert services.session_for_order("OC-9", 1000).pk != old.pk

    def test_a_session_in_another_currency_is_not_returned(self, fake_etpay: FakeEtpay) -> None:
        old = make_session(merchant_order_id="OC-10", order_amount=1000, currency="MXN")

        assert services.session_for_order("OC-10", 1000).pk != old.pk

    def test_invalid_arguments_are_reported_together(self, fake_etpay: FakeEtpay) -> None:
        with pytest.raises(EtpayValidationError) as caught:
            services.session_for_order("", 0)

        assert set(caught.value.errors) == {"merchant_order_id", "order_amount"}
        assert initialize_calls(fake_etpay) == 0
        assert not OrderLock.objects.exists()

    def test_a_failed_creation_keeps_its_error_row_and_raises(self, fake_etpay: FakeEtpay) -> None:
        fake_etpay.fail_next(status=500)

        with pytest.raises(EtpayHTTPError) as caught:
            services.session_for_order("OC-11", 1000)

        row = PaymentSession.objects.get(pk=caught.value.session_id)
        assert row.status == PaymentSession.Status.ERROR
        # The next load tries again.
        assert services.session_for_order("OC-11", 1000).status == PaymentSession.Status.PENDING


# -- two requests at once, on PostgreSQL ------------------------------------------------------

THREADS = 8


def lock_waiters() -> int:
    """Backends of this database waiting for a lock right now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_requests_at_once_create_exactly_one_session(
    fake_etpay: FakeEtpay, monkeypatch: pytest.MonkeyPatch
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    release = threading.Event()
    original = EtpayClient.initialize_session

    def held_back(self: EtpayClient, *args: Any, **kwargs: Any) -> Any:
        # ETpay answers once every other request is queued behind this one (or never would).
        release.wait(timeout=30)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EtpayClient, "initialize_session", held_back)
    barrier = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS

    def worker(index: int) -> None:
        try:
            connection.ensure_connection()  # connect first, so that the race is on the lock
            barrier.wait(timeout=30)
            results[index] = services.session_for_order("OC-RACE", 6990).pk
        except BaseException as err:  # reported by the assertions below
            results[index] = err
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    # Not a timed assertion: a deadline for a condition that a correct lock reaches quickly.
    deadline = time.monotonic() + 20
    most_waiting = 0
    while most_waiting < THREADS - 1 and time.monotonic() < deadline:
        most_waiting = max(most_waiting, lock_waiters())
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(timeout=60)

    assert most_waiting == THREADS - 1
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    sessions = list(PaymentSession.objects.filter(merchant_order_id="OC-RACE"))
    assert len(sessions) == 1
    assert sessions[0].status == PaymentSession.Status.PENDING
    assert set(results) == {sessions[0].pk}
    assert initialize_calls(fake_etpay) == 1
