"""``etpay_rotate_keys`` while results arrive: no result is lost or rejected for a key in rotation.

The keys of the sessions are stored under the old secret; the new one is deployed first
(``SIGNATURE_KEYS = [NEW, OLD]``), then the command runs. Each session's webhook arrives from
another connection at the worst moment: after the command read the session's old ciphertext
and before it writes the new one. After the run, every session is paid once, nothing was
rejected, a second delivery still verifies (now under the new key), and ``--check`` finds every
key under the current secret (no result put an old ciphertext back).
"""

from __future__ import annotations

import threading
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection

from django_etpay import crypto
from django_etpay.models import Notification, PaymentSession
from tests.factories import deliver, make_session, mint_jwt
from tests.test_crypto import NEW, OLD, stored, use_keys

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SESSIONS = 8


def deliver_elsewhere(raw: str) -> Notification:
    """The webhook handled on another connection (another worker), to the end."""
    result: list[Notification | BaseException] = []

    def work() -> None:
        try:
            result.append(deliver(raw))
        except BaseException as err:  # re-raised below
            result.append(err)
        finally:
            connection.close()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert result, "the webhook hung"
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def test_results_arriving_during_the_rotation_are_all_accepted(
    settings: Any, receivers: dict[str, mock.MagicMock]
) -> None:
    use_keys(settings, OLD)
    sessions = [make_session() for _ in range(SESSIONS)]
    raws = [mint_jwt(session) for session in sessions]
    by_ciphertext = {stored(session): raw for session, raw in zip(sessions, raws, strict=True)}
    use_keys(settings, NEW, OLD)  # step 1 of a rotation: the new secret deployed first

    arrived: list[Notification] = []
    rotate = crypto.rotate

    def rotate_while_the_result_arrives(value: str) -> str:
        arrived.append(deliver_elsewhere(by_ciphertext[value]))
        return rotate(value)

    with mock.patch.object(crypto, "rotate", rotate_while_the_result_arrives):
        call_command("etpay_rotate_keys", "--batch-size", "1", stdout=StringIO())

    assert len(arrived) == SESSIONS  # every key was rotated, each with a result in between
    assert [n.outcome for n in arrived] == [Notification.Outcome.ACCEPTED] * SESSIONS
    assert set(PaymentSession.objects.values_list("status", flat=True)) == {"paid"}
    assert receivers["payment_completed"].call_count == SESSIONS
    assert not Notification.objects.filter(outcome=Notification.Outcome.REJECTED).exists()
    # Every key is under the new secret now, and the same results still verify with it.
    call_command("etpay_rotate_keys", "--check", stdout=StringIO())
    use_keys(settings, NEW)
    again = [deliver(raw) for raw in raws]
    assert [n.outcome for n in again] == [Notification.Outcome.DUPLICATE] * SESSIONS
    assert receivers["payment_completed"].call_count == SESSIONS
