"""The attack corpus, in-process: every named case through Django's test client.

This is the fast subset of the attack suite (``python -m tests.attack`` runs the same corpus
against gunicorn on PostgreSQL, plus chunked bodies, concurrency and a hypothesis run). Each
case is one test, so a failure names the attack.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from django_etpay import signals as etpay_signals
from django_etpay.models import PaymentSession
from tests.attack import ETPAY_OVERRIDES
from tests.attack.corpus import BY_NAME, CASES
from tests.attack.harness import (
    ClientTransport,
    Response,
    SecretSearch,
    crawl_admin,
    failed,
    run_case,
    summary,
)
from tests.attack.hostile_etpay import HostileEtpayServer

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.attack.urls")]


@pytest.fixture(scope="module")
def hostile_etpay() -> Iterator[HostileEtpayServer]:
    """The attack harness's hostile ETpay (tests/attack/hostile_etpay.py), a real server on a
    port."""
    server = HostileEtpayServer().start()
    yield server
    server.stop()


@dataclass
class Env:
    search: SecretSearch
    fired: list[tuple[str, int]]
    limit: int

    def signals(self) -> list[tuple[str, int]]:
        taken = list(self.fired)
        self.fired.clear()
        return taken


@pytest.fixture
def env(
    settings: Any, hostile_etpay: HostileEtpayServer, caplog: pytest.LogCaptureFixture
) -> Iterator[Env]:
    settings.ETPAY = {**settings.ETPAY, **ETPAY_OVERRIDES, "API_URL": hostile_etpay.url}
    fired: list[tuple[str, int]] = []
    receivers = []
    for name in ("payment_completed", "payment_failed"):

        def receiver(sender: Any, session: Any, _name: str = name, **kwargs: Any) -> None:
            fired.append((_name, session.pk))

        getattr(etpay_signals, name).connect(receiver, weak=False, dispatch_uid=f"corpus-{name}")
        receivers.append(name)
    caplog.set_level(logging.DEBUG)
    search = SecretSearch()
    try:
        yield Env(search, fired, int(settings.ETPAY["NOTIFICATION_MAX_BYTES"]))
    finally:
        for name in receivers:
            getattr(etpay_signals, name).disconnect(dispatch_uid=f"corpus-{name}")
    search.plain_keys.update(hostile_etpay.issued_keys)
    search.search("records of this case", "log record", caplog.text)
    assert not search.hits, search.hits


def test_the_corpus_covers_every_entry_point() -> None:
    counts = Counter(case.entry for case in CASES)
    assert len(CASES) >= 60
    assert set(counts) == {"notification", "return", "widget", "initialize"}
    assert min(counts.values()) >= 10


@pytest.mark.parametrize("name", [case.name for case in CASES if not case.http_only])
def test_attack(env: Env, name: str) -> None:
    figures = run_case(BY_NAME[name], ClientTransport(), env.signals, env.search, env.limit)
    assert not failed(figures, env.search), summary(name, figures, env.search)


def test_admin_pages_and_database_hold_no_secret(env: Env, admin_client: Client) -> None:
    transport = ClientTransport()
    for name in ("valid-success", "return-valid", "widget-valid", "wrong-key", "init-valid"):
        figures = run_case(BY_NAME[name], transport, env.signals, env.search, env.limit)
        assert not failed(figures, env.search), summary(name, figures, env.search)

    def get(path: str) -> Response:
        reply = admin_client.get(path)
        return Response(reply.status_code, dict(reply.items()), reply.content)

    sessions = list(PaymentSession.objects.exclude(token=None).order_by("-pk")[:10])
    pages, oracles = crawl_admin(get, env.search, sessions)
    env.search.search_database()
    assert pages > 30
    assert oracles == []
    assert env.search.hits == []
    assert env.search.haystacks["database row"] > 10
