"""Concurrent partial refunds on real PostgreSQL never add up to more than the amount paid.

Twenty threads, each with its own database connection, request a refund of the same paid
session at the same moment (released together by a barrier). The session's row lock makes them
take turns: exactly as many succeed as the amount paid allows, the rest are refused with what is
left, and the ledger never holds more than was paid.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum

from django_etpay import refunds
from django_etpay.exceptions import EtpayRefundAmountError
from django_etpay.models import PaymentSession, Refund
from tests.factories import make_session

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 20


def together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run each call in its own thread, all released at once; return results or exceptions."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def worker(index: int, call: Callable[[], Any]) -> None:
        try:
            connection.ensure_connection()  # connect first, so that the race is on the lock
            barrier.wait(timeout=30)
            results[index] = call()
        except BaseException as err:  # sorted out by the caller
            results[index] = err
        finally:
            connection.close()

    threads = [
        threading.Thread(target=worker, args=(i, call), daemon=True)
        for i, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a refund hung"
    return results


def ledger_total(session: PaymentSession) -> int:
    counted = Refund.objects.filter(session=session, state__in=refunds.COUNTED_STATES)
    return int(counted.aggregate(total=Sum("amount"))["total"] or 0)


def test_twenty_concurrent_partial_refunds_never_exceed_the_amount_paid() -> None:
    session = make_session(status=PaymentSession.Status.PAID, order_amount=10000)

    results = together(
        [
            lambda: refunds.request_refund(session, 700, reason="concurrent partial refund")
            for _ in range(THREADS)
        ]
    )

    made = [r for r in results if isinstance(r, Refund)]
    refused = [r for r in results if isinstance(r, EtpayRefundAmountError)]
    assert len(made) + len(refused) == THREADS, results
    # 14 x 700 = 9800 fit in 10000; a fifteenth would make 10500.
    assert len(made) == 14
    assert ledger_total(session) == 9800
    assert Refund.objects.filter(session=session).count() == 14
    # Every refusal saw the others' refunds: 200 left, never a stale larger figure.
    assert {err.available for err in refused} == {200}


def test_concurrent_refunds_of_different_amounts_use_up_the_amount_exactly() -> None:
    session = make_session(status=PaymentSession.Status.PAID, order_amount=10000)
    amounts = [1000] * 10 + [500] * 10  # 15000 asked for, 10000 paid

    results = together(
        [
            lambda amount=amount: refunds.request_refund(session, amount, reason="mixed")
            for amount in amounts
        ]
    )

    made = [r for r in results if isinstance(r, Refund)]
    refused = [r for r in results if isinstance(r, EtpayRefundAmountError)]
    assert len(made) + len(refused) == THREADS, results
    assert ledger_total(session) == sum(r.amount for r in made)
    assert ledger_total(session) <= 10000
    # Whoever was refused was refused because their amount no longer fitted.
    assert all(err.available is not None for err in refused)
    assert all(
        err.available < amount
        for err, amount in zip(results, amounts, strict=True)
        if isinstance(err, EtpayRefundAmountError)
    )


def test_concurrent_settling_completes_a_refund_once() -> None:
    session = make_session(status=PaymentSession.Status.PAID, order_amount=10000)
    refund = refunds.request_refund(session, 1000, reason="settled twice at once")

    results = together(
        [
            lambda n=n: refunds.complete_refund(
                Refund.objects.get(pk=refund.pk), reference=f"ETP-{n}"
            )
            for n in range(THREADS)
        ]
    )

    settled = [r for r in results if isinstance(r, Refund)]
    assert len(settled) == 1, results
    stored = Refund.objects.get(pk=refund.pk)
    assert stored.reference == settled[0].reference
