"""Run in a child process with ``tests.routed_pipeline_settings``: results, expiry and
signals with the app's models routed to the ``payments`` database. Prints one JSON report.

``python -m tests.routed_pipeline_child`` (see ``tests/test_router_pipeline.py``).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connections, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from django_etpay import services, signals  # noqa: E402
from django_etpay.models import Notification, OutboxEffect, PaymentSession  # noqa: E402
from tests.factories import make_session, mint_jwt  # noqa: E402

SESSIONS = 5
DELIVERIES = 12


def close_all() -> None:
    for alias in connections:
        connections[alias].close()


def deliver_together(raws: list[str]) -> list[Any]:
    """POST every JWT to the notification view from its own thread, all released at once."""
    barrier = threading.Barrier(len(raws))
    answers: list[Any] = [None] * len(raws)

    def worker(index: int, raw: str) -> None:
        try:
            client = Client(raise_request_exception=False)
            connections["payments"].ensure_connection()
            barrier.wait(timeout=60)
            answers[index] = client.post(
                "/etpay/notification/", data=raw, content_type="application/jwt"
            ).status_code
        except BaseException as err:  # reported in the JSON
            answers[index] = repr(err)
        finally:
            close_all()

    threads = [threading.Thread(target=worker, args=(i, raw)) for i, raw in enumerate(raws)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


def main() -> None:
    call_command("migrate", database="default", verbosity=0)
    call_command("migrate", database="payments", verbosity=0)
    sent: Counter[str] = Counter()

    def count(signal_name: str) -> Any:
        def receiver(sender: Any, **kwargs: Any) -> None:
            sent[signal_name] += 1

        return receiver

    receivers = {name: count(name) for name in ("payment_completed", "session_expired")}
    signals.payment_completed.connect(receivers["payment_completed"], weak=False)
    signals.session_expired.connect(receivers["session_expired"], weak=False)

    sessions = [make_session() for _ in range(SESSIONS)]
    raws = [mint_jwt(session) for session in sessions for _ in range(DELIVERIES)]
    answers = deliver_together(raws)
    report: dict[str, Any] = {
        "answers": dict(Counter(str(answer) for answer in answers)),
        "payments_db": sorted({s._state.db for s in sessions}),
        "paid": PaymentSession.objects.filter(status=PaymentSession.Status.PAID).count(),
        "accepted": Notification.objects.filter(outcome=Notification.Outcome.ACCEPTED).count(),
        "recorded": Notification.objects.count(),
        "effects_done": OutboxEffect.objects.filter(state=OutboxEffect.State.DONE).count(),
        "payment_completed": sent["payment_completed"],
    }

    # Inside a transaction of the payments database, the signal waits for its commit.
    waiting = make_session()
    with transaction.atomic(using="payments"):
        services.process_notification(mint_jwt(waiting), channel="webhook")
        report["signal_before_commit"] = sent["payment_completed"] - report["payment_completed"]
    report["signal_after_commit"] = sent["payment_completed"] - report["payment_completed"]

    stale = make_session()
    PaymentSession.objects.filter(pk=stale.pk).update(
        created_at=timezone.now() - timedelta(days=2)
    )
    call_command("etpay_expire", verbosity=0)
    stale.refresh_from_db()
    report["expired_status"] = stale.status
    report["session_expired"] = sent["session_expired"]
    close_all()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
