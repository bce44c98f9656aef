"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses as responses_lib


@pytest.fixture
def mocked_responses() -> Iterator[responses_lib.RequestsMock]:
    """Fake ETpay's HTTP API at the edge; unexpected calls fail the test."""
    with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# The fixtures a shop gets from django_etpay.testing, loaded the way a shop loads them.
pytest_plugins = ["django_etpay.testing.pytest_plugin"]
