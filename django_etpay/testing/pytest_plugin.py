"""pytest fixtures for a shop's tests (opt-in). In your ``conftest.py``::

    pytest_plugins = ["django_etpay.testing.pytest_plugin"]

or ``-p django_etpay.testing.pytest_plugin`` on the command line. ``fake_etpay`` installs a
:class:`~django_etpay.testing.FakeEtpay` for one test; ``etpay_session`` is a pending session
opened through it (it needs pytest-django's database).

Nothing here touches Django when the plugin is loaded, so it may load before pytest-django
has set Django up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from django_etpay.models import PaymentSession
    from django_etpay.testing import FakeEtpay


@pytest.fixture
def fake_etpay() -> Iterator[FakeEtpay]:
    """A fake ETpay that answers every ETpay call of this test; no network is used."""
    from django_etpay.testing import FakeEtpay

    with FakeEtpay() as etpay:
        yield etpay


@pytest.fixture
def etpay_session(db: None, fake_etpay: FakeEtpay) -> PaymentSession:
    """A ``pending`` session for order ``TEST-0001`` of $10.000, opened with the fake ETpay.

    Created by ``initialize_session`` without a request, so it carries no redirect or webhook
    URLs; :meth:`FakeEtpay.notify` then posts to the ``notification`` view's URL.
    """
    from django_etpay.services import initialize_session

    return initialize_session(
        merchant_order_id="TEST-0001", order_amount=10000, customer_email="payer@example.com"
    )
