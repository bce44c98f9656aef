"""``reconcile_session`` and the webhook of the same result, at the same time: exactly one
transition and one signal, whichever wins; the other is recorded and changes nothing.

Each round starts both on their own connection, released together by a barrier, on a fresh
session; the status query and the webhook carry the same payment.
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
import responses as responses_lib

from django_etpay import services
from django_etpay.models import Notification, PaymentSession
from tests.factories import (
    STATUS_URL,
    deliver,
    load_fixture,
    make_session,
    mint_jwt,
    run_together,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROUNDS = 6
Outcome = Notification.Outcome


def test_reconcile_racing_the_webhook_makes_one_transition_and_one_signal(
    mocked_responses: responses_lib.RequestsMock, receivers: dict[str, mock.MagicMock]
) -> None:
    entries: dict[str, dict[str, Any]] = {}

    def status(request: Any) -> tuple[int, dict[str, str], str]:
        token = json.loads(request.body)["session_token"]
        return 200, {}, json.dumps([entries[token]])

    mocked_responses.add_callback(responses_lib.POST, STATUS_URL, callback=status)
    for round_ in range(ROUNDS):
        session = make_session(needs_reconciliation=True)
        entry = load_fixture("payment_status_success.json", session)
        entry.pop("iat", None)
        entries[session.token] = entry
        raw = mint_jwt(session, payment_token=entry["payment_token"])

        run_together(
            [
                lambda pk=session.pk: services.reconcile_session(
                    PaymentSession.objects.get(pk=pk)
                ),
                lambda raw=raw: deliver(raw),
            ]
        )

        session.refresh_from_db()
        assert session.status == PaymentSession.Status.PAID
        assert session.needs_reconciliation is False
        outcomes = sorted(
            (n.channel, n.outcome) for n in Notification.objects.filter(session=session)
        )
        accepted = [o for o in outcomes if o[1] == Outcome.ACCEPTED]
        assert len(accepted) == 1, outcomes
        assert {o[1] for o in outcomes} <= {Outcome.ACCEPTED, Outcome.DUPLICATE}, outcomes
        assert {o[0] for o in outcomes} == {
            Notification.Channel.POLL,
            Notification.Channel.WEBHOOK,
        }
        assert receivers["payment_completed"].call_count == round_ + 1
    assert receivers["payment_failed"].call_count == 0
