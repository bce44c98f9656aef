"""Shared pieces of the router tests (``tests/test_router_*.py``).

They run with :class:`tests.routers.PaymentsRouter` installed: the app's models on the
``payments`` database, everything else on ``default``. Both test databases carry every table
(they are created before any router is installed), so a query sent to the wrong database would
not fail by itself: :func:`assert_nothing_on_default` checks that none of the app's rows landed
on ``default``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections
from django.test import Client

from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.routers import PAYMENTS

#: For ``pytest.mark.django_db(databases=...)``.
DATABASES = ["default", PAYMENTS]

Send = Callable[[Client], Any]


def assert_nothing_on_default() -> None:
    """None of the app's rows were written to ``default``."""
    for model in (PaymentSession, Notification, OutboxEffect):
        assert not model.objects.using("default").exists(), f"{model.__name__} on default"


def deliver_together(senders: list[Send]) -> list[int]:
    """Run each sender in its own thread (its own connections), all released at once; return
    the status codes."""
    barrier = threading.Barrier(len(senders))
    results: list[int | BaseException | None] = [None] * len(senders)

    def worker(index: int, send: Send) -> None:
        try:
            client = Client()
            for alias in DATABASES:  # connect first, so that the race is on the lock
                connections[alias].ensure_connection()
            barrier.wait(timeout=30)
            results[index] = send(client).status_code
        except BaseException as err:  # reported by the assertion below
            results[index] = err
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=worker, args=(i, send), daemon=True)
        for i, send in enumerate(senders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a delivery hung"
    errors = [r for r in results if not isinstance(r, int)]
    assert not errors, errors
    return [r for r in results if isinstance(r, int)]
