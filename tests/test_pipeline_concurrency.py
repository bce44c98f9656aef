"""Exactly once under concurrency, on real PostgreSQL.

Many threads, each with its own database connection, deliver the same result through the views
at the same moment (released together by a barrier). Exactly one of them may apply the
transition and fire ``payment_completed``; every delivery is recorded. A result that may
change a session is decided on the row locked with ``SELECT ... FOR UPDATE`` in a transaction.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from unittest import mock

import pytest
from django.test import Client

from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.factories import (
    NOTIFICATION_URL,
    deliver_together,
    make_session,
    mint_jwt,
    redirect,
    webhook,
    widget,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 24


def test_same_webhook_delivered_at_once_pays_once(
    receivers: dict[str, mock.MagicMock],
) -> None:
    session = make_session()
    raw = mint_jwt(session)

    codes = deliver_together([webhook(raw) for _ in range(THREADS)])

    assert codes == [200] * THREADS
    session.refresh_from_db()
    assert session.status == PaymentSession.Status.PAID
    assert receivers["payment_completed"].call_count == 1
    assert len(receivers["payment_completed"].call_args_list) == 1
    receivers["payment_failed"].assert_not_called()
    outcomes = Counter(
        Notification.objects.filter(session=session).values_list("outcome", flat=True)
    )
    assert outcomes == {
        Notification.Outcome.ACCEPTED: 1,
        Notification.Outcome.DUPLICATE: THREADS - 1,
    }
    accepted = Notification.objects.get(session=session, outcome=Notification.Outcome.ACCEPTED)
    assert receivers["payment_completed"].call_args.kwargs["notification"].pk == accepted.pk
    # One outbox effect for the one transition, delivered in process.
    [effect] = OutboxEffect.objects.filter(session=session)
    assert (effect.kind, effect.state, effect.attempts) == ("payment_completed", "done", 1)
    assert effect.notification_id == accepted.pk


def test_webhook_return_and_widget_at_once_pay_once(
    receivers: dict[str, mock.MagicMock],
) -> None:
    session = make_session()
    raw = mint_jwt(session)
    per_channel = THREADS // 3
    senders = [webhook(raw), redirect(raw), widget(raw)] * per_channel

    codes = deliver_together(senders)

    assert codes == [200] * len(senders)
    session.refresh_from_db()
    assert session.status == PaymentSession.Status.PAID
    assert receivers["payment_completed"].call_count == 1
    records = Notification.objects.filter(session=session)
    assert Counter(records.values_list("channel", flat=True)) == {
        Notification.Channel.WEBHOOK: per_channel,
        Notification.Channel.REDIRECT: per_channel,
        Notification.Channel.WIDGET: per_channel,
    }
    assert Counter(records.values_list("outcome", flat=True)) == {
        Notification.Outcome.ACCEPTED: 1,
        Notification.Outcome.DUPLICATE: len(senders) - 1,
    }


def test_success_and_failure_racing_end_paid_or_failed_then_paid(
    receivers: dict[str, mock.MagicMock],
) -> None:
    session = make_session()
    success = mint_jwt(session)
    failure = mint_jwt(session, payment_status=False)
    senders = [webhook(success), webhook(failure)] * (THREADS // 2)

    codes = deliver_together(senders)

    assert codes == [200] * len(senders)
    session.refresh_from_db()
    # Whatever the order, money that moved wins and is announced exactly once.
    assert session.status == PaymentSession.Status.PAID
    assert receivers["payment_completed"].call_count == 1
    assert receivers["payment_failed"].call_count <= 1
    accepted = Notification.objects.filter(
        session=session, outcome=Notification.Outcome.ACCEPTED
    ).count()
    assert accepted == 1 + receivers["payment_failed"].call_count


def test_repeats_without_the_lock_race_a_transition_under_it(
    receivers: dict[str, mock.MagicMock], settings: Any
) -> None:
    # A failed session: repeats of its failure change nothing and take no lock; the success
    # that arrives with them changes it under the lock. Both kinds share one storage budget,
    # which must hold exactly.
    settings.ETPAY = {**settings.ETPAY, "MAX_DUPLICATES_PER_SESSION": 7}
    session = make_session()
    failure = mint_jwt(session, payment_status=False)
    success = mint_jwt(session)
    assert (
        Client()
        .post(NOTIFICATION_URL, json.dumps({"payment": failure}), content_type="application/json")
        .status_code
        == 200
    )
    receivers["payment_failed"].reset_mock()
    senders = [webhook(success)] * (THREADS // 2) + [webhook(failure)] * (THREADS // 2)

    codes = deliver_together(senders)

    assert codes == [200] * THREADS
    session.refresh_from_db()
    assert session.status == PaymentSession.Status.PAID
    assert receivers["payment_completed"].call_count == 1
    receivers["payment_failed"].assert_not_called()
    records = Notification.objects.filter(session=session)
    assert Counter(records.values_list("outcome", flat=True)) == {
        Notification.Outcome.ACCEPTED: 2,  # the failure before the race, the success
        Notification.Outcome.DUPLICATE: 7,
    }
    assert session.stored_duplicates == 7
    assert OutboxEffect.objects.filter(session=session, kind="payment_completed").count() == 1
