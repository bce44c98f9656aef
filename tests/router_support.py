"""Shared pieces of the router tests (``tests/test_router_*.py``).

They run with :class:`tests.routers.PaymentsRouter` installed: the app's models on the
``payments`` database, everything else on ``default``. Both test databases carry every table
(they are created before any router is installed), so a query sent to the wrong database would
not fail by itself: :func:`assert_nothing_on_default` checks that none of the app's rows landed
on ``default``.
"""

from __future__ import annotations

from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests import factories
from tests.factories import Send
from tests.routers import PAYMENTS

#: For ``pytest.mark.django_db(databases=...)``.
DATABASES = ["default", PAYMENTS]


def assert_nothing_on_default() -> None:
    """None of the app's rows were written to ``default``."""
    for model in (PaymentSession, Notification, OutboxEffect):
        assert not model.objects.using("default").exists(), f"{model.__name__} on default"


def deliver_together(senders: list[Send]) -> list[int]:
    """:func:`tests.factories.deliver_together`, each thread connected to both databases."""
    return factories.deliver_together(senders, aliases=DATABASES)
