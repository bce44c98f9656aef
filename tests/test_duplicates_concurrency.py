"""Double payments under concurrency, on real PostgreSQL: one extra payment, one signal.

Twenty threads, each with its own database connection, deliver the same extra payment of a paid
session at the same moment; then ten threads deliver ten different extra payments. The session's
row lock orders them: ``payment_duplicated`` fires exactly once per extra payment token.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from django_etpay import services, signals
from django_etpay.models import Notification, OutboxEffect
from tests.factories import make_session, mint_jwt, run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 20
KIND = OutboxEffect.Kind.PAYMENT_DUPLICATED


@pytest.fixture
def heard() -> Iterator[list[str]]:
    tokens: list[str] = []
    lock = threading.Lock()

    def receiver(sender: Any, payment_token: str, **kwargs: Any) -> None:
        with lock:
            tokens.append(payment_token)

    signals.payment_duplicated.connect(receiver, weak=False, dispatch_uid="tests-dup-threads")
    yield tokens
    signals.payment_duplicated.disconnect(dispatch_uid="tests-dup-threads")


def deliver_together(raws: list[str]) -> None:
    """Each JWT delivered as a webhook from its own thread, all at once."""
    run_together(
        [
            lambda raw=raw: services.process_notification(
                raw, channel=Notification.Channel.WEBHOOK
            )
            for raw in raws
        ]
    )


def test_the_same_extra_payment_delivered_at_once_fires_once(heard: list[str]) -> None:
    session = make_session()
    services.process_notification(
        mint_jwt(session, payment_token="pay-first"), channel=Notification.Channel.WEBHOOK
    )
    raw = mint_jwt(session, payment_token="pay-second")

    deliver_together([raw] * THREADS)

    assert heard == ["pay-second"]
    assert OutboxEffect.objects.filter(session=session, kind=KIND).count() == 1


def test_different_extra_payments_at_once_fire_once_each(heard: list[str]) -> None:
    session = make_session()
    services.process_notification(
        mint_jwt(session, payment_token="pay-first"), channel=Notification.Channel.WEBHOOK
    )
    extra = [f"pay-extra-{n}" for n in range(10)]

    deliver_together([mint_jwt(session, payment_token=token) for token in extra for _ in (1, 2)])

    assert sorted(heard) == sorted(extra)
    assert OutboxEffect.objects.filter(session=session, kind=KIND).count() == 10


@pytest.mark.parametrize("sessions", [2, 5])
def test_sessions_of_one_order_paid_at_once_are_one_payment_and_extra_ones(
    heard: list[str], sessions: int
) -> None:
    # Each session's first payment holds only its own row lock; the check for a paid sibling
    # queues on the order's oldest session, so no two of them miss each other.
    order = [make_session(merchant_order_id="OC-RACE") for _ in range(sessions)]
    tokens = [f"pay-{n}" for n in range(sessions)]

    deliver_together([mint_jwt(s, payment_token=t) for s, t in zip(order, tokens, strict=True)])

    assert len(heard) == sessions - 1
    assert set(heard) < set(tokens)
    assert OutboxEffect.objects.filter(kind=KIND).count() == sessions - 1
