"""services.session_for_order: the order's live session on every page load, one at a time.

The concurrency test runs on real PostgreSQL: many threads, each with its own connection, ask
for the same order's session at once. ETpay's answer to the first is held back until every
other request has found the order claimed and started waiting, so the test proves that they
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

from django_etpay import orders, services
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
        self, fake_etpay: FakeEtpay, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(orders, "_pause", self.must_not_wait)
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

    def test_a_session_flagged_for_reconciliation_is_not_returned(
        self, fake_etpay: FakeEtpay
    ) -> None:
        flagged = make_session(
            merchant_order_id="OC-14", order_amount=1000, needs_reconciliation=True
        )

        session = services.session_for_order("OC-14", 1000)

        assert session.pk != flagged.pk
        assert initialize_calls(fake_etpay) == 1

    def test_a_bank_asked_for_gets_a_session_at_that_bank(self, fake_etpay: FakeEtpay) -> None:
        plain = services.session_for_order("OC-15", 1000)

        at_bank = services.session_for_order("OC-15", 1000, user_bank_code="cl_estado")
        again = services.session_for_order("OC-15", 1000, user_bank_code="CL_ESTADO")
        reload = services.session_for_order("OC-15", 1000)

        assert at_bank.pk != plain.pk
        assert at_bank.user_bank_code == "cl_estado"
        assert again.pk == at_bank.pk
        assert reload.pk == at_bank.pk  # no bank asked for: the newest live session
        assert initialize_calls(fake_etpay) == 2

    def test_an_invalid_bank_is_reported_by_initialize_session(
        self, fake_etpay: FakeEtpay
    ) -> None:
        with pytest.raises(EtpayValidationError) as caught:
            services.session_for_order("OC-16", 1000, user_bank_code="nobank")

        assert set(caught.value.errors) == {"user_bank_code"}
        assert initialize_calls(fake_etpay) == 0

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

    def test_a_claim_whose_request_died_expires(
        self, fake_etpay: FakeEtpay, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        OrderLock.objects.create(
            merchant_order_id="OC-12",
            claim="dead-request",
            claimed_until=timezone.now() - timedelta(seconds=1),
        )
        monkeypatch.setattr(orders, "_pause", self.must_not_wait)

        session = services.session_for_order("OC-12", 1000)

        assert session.status == PaymentSession.Status.PENDING
        assert OrderLock.objects.get(merchant_order_id="OC-12").claim == ""

    def test_a_live_claim_is_waited_for_and_its_session_returned(
        self, fake_etpay: FakeEtpay, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        OrderLock.objects.create(
            merchant_order_id="OC-13",
            claim="other-request",
            claimed_until=timezone.now() + timedelta(minutes=1),
        )
        created: list[PaymentSession] = []

        def other_request_finishes(seconds: float) -> None:
            assert seconds == orders.WAIT_STEP
            created.append(make_session(merchant_order_id="OC-13", order_amount=1000))
            OrderLock.objects.filter(merchant_order_id="OC-13").update(
                claim="", claimed_until=None
            )

        monkeypatch.setattr(orders, "_pause", other_request_finishes)

        session = services.session_for_order("OC-13", 1000)

        assert [session.pk] == [s.pk for s in created]
        assert initialize_calls(fake_etpay) == 0

    def test_the_claim_lasts_longer_than_a_call_to_etpay(self, settings: Settings) -> None:
        settings.ETPAY = {**settings.ETPAY, "TOTAL_TIMEOUT": 45.0}

        assert orders._claim_lifetime() == timedelta(seconds=45) + orders.CLAIM_MARGIN
        assert timedelta(0) < orders.CLAIM_MARGIN

    @staticmethod
    def must_not_wait(seconds: float) -> None:
        raise AssertionError("waited for a claim that had expired")

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
        assert OrderLock.objects.get(merchant_order_id="OC-11").claim == ""  # released
        # The next load tries again.
        assert services.session_for_order("OC-11", 1000).status == PaymentSession.Status.PENDING


# -- two requests at once, on PostgreSQL ------------------------------------------------------

THREADS = 8


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_requests_at_once_create_exactly_one_session(
    fake_etpay: FakeEtpay, monkeypatch: pytest.MonkeyPatch
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the race is run on PostgreSQL, where requests really run at once")
    waiting: set[int] = set()
    everyone_waits = threading.Condition()
    original = EtpayClient.initialize_session
    in_transaction: list[bool] = []

    def pause(seconds: float) -> None:
        with everyone_waits:
            waiting.add(threading.get_ident())
            everyone_waits.notify_all()
        time.sleep(0.001)

    def held_back(self: EtpayClient, *args: Any, **kwargs: Any) -> Any:
        # ETpay answers once every other request waits for this one (or never would).
        in_transaction.append(connection.in_atomic_block)
        with everyone_waits:
            everyone_waits.wait_for(lambda: len(waiting) >= THREADS - 1, timeout=20)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(orders, "_pause", pause)
    monkeypatch.setattr(EtpayClient, "initialize_session", held_back)
    barrier = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS

    def worker(index: int) -> None:
        try:
            connection.ensure_connection()  # connect first, so that the race is on the claim
            barrier.wait(timeout=30)
            results[index] = services.session_for_order("OC-RACE", 6990).pk
        except BaseException as err:  # reported by the assertions below
            results[index] = err
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert len(waiting) == THREADS - 1
    sessions = list(PaymentSession.objects.filter(merchant_order_id="OC-RACE"))
    assert len(sessions) == 1
    assert sessions[0].status == PaymentSession.Status.PENDING
    assert set(results) == {sessions[0].pk}
    assert initialize_calls(fake_etpay) == 1
    assert in_transaction == [False]  # no transaction is held open while ETpay answers
    lock = OrderLock.objects.get(merchant_order_id="OC-RACE")
    assert (lock.claim, lock.claimed_until) == ("", None)
