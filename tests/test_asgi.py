"""ASGI: uvicorn serves the app on PostgreSQL; 1,000 results, first deliveries and repeats at
once, pay each session exactly once, and the server holds no more connections or memory
after 1,000 results than after 200 (tox env ``heavy``).

Under ASGI, Django runs each request's sync code in a thread of its own, with a database
connection of its own: anything kept per connection (a cache keyed by it) is kept per
request, for good. The probe view of ``tests/asgi_urls.py`` counts, inside the server, the
live connection wrappers (``BaseDatabaseWrapper`` objects after a full collection) and the
memory ``tracemalloc`` traces, and which sessions ``payment_completed`` announced.
"""

from __future__ import annotations

import json
import random
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django.db import connection

from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.factories import make_session, mint_jwt
from tests.httpfakes import closed_port, serving
from tests.subprocesses import ROOT, django_env

pytestmark = [
    pytest.mark.heavy,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

#: Results per session: the first delivery and its repeats, on the webhook and the return.
DELIVERIES = 4
#: Sessions paid before the first measurement, and after it (200 and 800 results).
WARM_SESSIONS = 50
MORE_SESSIONS = 200
CONCURRENCY = 16
#: The leak this guards against held about 25 KiB and one connection wrapper per request;
#: what may grow between the two measurements, per result (caches filling up, the logs).
MAX_GROWTH_PER_REQUEST = 2048
MAX_MORE_WRAPPERS = 8


def deliveries(sessions: list[PaymentSession]) -> list[tuple[str, str]]:
    """(channel, JWT) for every delivery of every session, shuffled: a session's first
    delivery races its repeats."""
    sent = []
    for session in sessions:
        raw = mint_jwt(session)
        sent += [("webhook", raw), ("return", raw), ("webhook", raw), ("return", raw)]
    assert len(sent) == DELIVERIES * len(sessions)
    random.Random(len(sessions)).shuffle(sent)
    return sent


def send_all(base: str, sent: list[tuple[str, str]]) -> Counter[int]:
    """Send every delivery, :data:`CONCURRENCY` at a time; the status codes, counted."""
    local = threading.local()

    def send(item: tuple[str, str]) -> int:
        if not hasattr(local, "http"):
            local.http = requests.Session()
        channel, raw = item
        if channel == "webhook":
            response = local.http.post(
                f"{base}/etpay/notification/", json={"payment": raw}, timeout=60
            )
        else:
            response = local.http.get(
                f"{base}/etpay/return/", params={"jwt": raw}, timeout=60, allow_redirects=False
            )
        return response.status_code

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return Counter(pool.map(send, sent))


def probe(base: str) -> dict[str, Any]:
    response = requests.get(f"{base}/_probe/", timeout=60)
    assert response.status_code == 200
    value: dict[str, Any] = response.json()
    return value


def test_results_under_uvicorn_pay_once_and_leak_nothing() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("uvicorn shares the test database: PostgreSQL only")
    warm = [make_session() for _ in range(WARM_SESSIONS)]
    more = [make_session() for _ in range(MORE_SESSIONS)]
    port = closed_port()
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--lifespan",
        "off",
        "--no-access-log",
        "--log-level",
        "warning",
        "tests.asgi:application",
    ]
    env = django_env(DJANGO_SETTINGS_MODULE="tests.asgi_settings", ETPAY_TEST_TRACEMALLOC="1")

    with serving(args, port=port, env=env, cwd=str(ROOT), probe="/etpay/notification/") as app:
        start = probe(app.base)
        codes = send_all(app.base, deliveries(warm))
        after_warm = probe(app.base)
        codes += send_all(app.base, deliveries(more))
        end = probe(app.base)

    requests_sent = DELIVERIES * (WARM_SESSIONS + MORE_SESSIONS)
    figures = {
        "requests": requests_sent,
        "wrappers": [start["wrappers"], after_warm["wrappers"], end["wrappers"]],
        "traced KiB": [round(p["traced"] / 1024) for p in (start, after_warm, end)],
    }
    print(f"ASGI figures: {json.dumps(figures)}")
    assert codes == {200: requests_sent}, (codes, app.output[-3000:])

    # Exactly once: every session paid, one effect and one signal each.
    sessions = [*warm, *more]
    pks = [s.pk for s in sessions]
    statuses = Counter(PaymentSession.objects.filter(pk__in=pks).values_list("status", flat=True))
    assert statuses == {PaymentSession.Status.PAID: len(sessions)}
    effects = OutboxEffect.objects.filter(session__in=pks, kind="payment_completed")
    assert Counter(effects.values_list("session_id", flat=True)) == dict.fromkeys(pks, 1)
    assert set(effects.values_list("state", flat=True)) == {OutboxEffect.State.DONE}
    assert end["completed"] == {str(pk): 1 for pk in pks}
    outcomes = Counter(
        Notification.objects.filter(session__in=pks).values_list("outcome", flat=True)
    )
    assert outcomes == {
        Notification.Outcome.ACCEPTED: len(sessions),
        Notification.Outcome.DUPLICATE: (DELIVERIES - 1) * len(sessions),
    }

    # Nothing grows with the number of requests.
    measured = DELIVERIES * MORE_SESSIONS
    assert end["wrappers"] - after_warm["wrappers"] <= MAX_MORE_WRAPPERS, figures
    assert after_warm["traced"] > 0
    growth = end["traced"] - after_warm["traced"]
    assert growth <= MAX_GROWTH_PER_REQUEST * measured, (growth / measured, figures)
