"""Shared fixtures, and the hook that gives the ``postgres`` marker its meaning.

A fixture two test modules need lives here, once; builders and constants live in
``tests/factories.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING
from unittest import mock

import pytest
import responses as responses_lib

if TYPE_CHECKING:
    from django.test import Client

    from tests.httpfakes import Servers, StatusApiServer


@pytest.fixture
def mocked_responses() -> Iterator[responses_lib.RequestsMock]:
    """Fake ETpay's HTTP API at the edge; unexpected calls fail the test."""
    with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# The fixtures a shop gets from django_etpay.testing, loaded the way a shop loads them.
# tests/gate.py: a skip outside tests/allowed_skips.txt fails a gate run (ETPAY_GATE=1).
pytest_plugins = ["django_etpay.testing.pytest_plugin", "tests.gate"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres`` skip where the suite runs on SQLite, and only there.

    The marker is the one place a test says it needs PostgreSQL: ``-m postgres`` selects all of
    them, and tests/allowed_skips.txt allows exactly these skips, on SQLite.
    """
    if os.environ.get("ETPAY_TEST_DB") != "sqlite":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL; this run uses SQLite (ETPAY_TEST_DB=sqlite)")
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(skip)


@pytest.fixture
def receivers() -> Iterator[dict[str, mock.MagicMock]]:
    """A mock receiver connected to each of the app's signals, keyed by signal name."""
    from tests.factories import signal_mocks

    with signal_mocks() as mocks:
        yield mocks


@pytest.fixture
def csrf_client() -> Client:
    """A test client that enforces CSRF checks, with the cookie of ``factories.CSRF_SECRET``."""
    from django.test import Client

    from tests.factories import CSRF_SECRET

    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = CSRF_SECRET
    return client


@pytest.fixture
def servers() -> Iterator[Servers]:
    """Real HTTP servers on 127.0.0.1 (:mod:`tests.httpfakes`), stopped after the test."""
    from tests.httpfakes import Servers

    started = Servers()
    yield started
    started.stop_all()


@pytest.fixture
def status_api() -> Iterator[StatusApiServer]:
    """ETpay's status API as a real server on 127.0.0.1, for worker processes to reach."""
    from tests.httpfakes import StatusApiServer

    server = StatusApiServer()
    yield server
    server.stop()
