"""The jobs as Tasks (Django's Tasks framework), run here by the immediate backend.

A real database worker on PostgreSQL runs them in ``test_tasks_worker.py`` (heavy).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import responses as responses_lib
from django.utils import timezone

from django_etpay import tasks
from django_etpay.models import Notification, PaymentSession
from tests.factories import STATUS_URL, make_session

pytestmark = pytest.mark.django_db(transaction=True)


def succeeded(result: Any) -> dict[str, Any]:
    assert result.status == "SUCCESSFUL", result.errors
    value: dict[str, Any] = result.return_value
    json.dumps(value)  # what a result-storing backend must be able to keep
    return value


def test_tasks_are_module_level_tasks_of_the_framework() -> None:
    for name in ("reconcile", "expire", "purge"):
        task = getattr(tasks, name)
        assert task.module_path == f"django_etpay.tasks.{name}"
        assert callable(task.enqueue)


def test_reconcile_task(mocked_responses: responses_lib.RequestsMock) -> None:
    session = make_session()
    PaymentSession.objects.filter(pk=session.pk).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    mocked_responses.post(STATUS_URL, json=[])
    value = succeeded(tasks.reconcile.enqueue())
    assert value["checked"] == 1
    assert value["unknown"] == 1
    assert value["effects"] == {"delivered": 0, "failed": 0, "gave_up": 0}
    assert Notification.objects.get().reason == Notification.Reason.UNKNOWN_TO_ETPAY


def test_reconcile_task_arguments(mocked_responses: responses_lib.RequestsMock) -> None:
    session = make_session()
    PaymentSession.objects.filter(pk=session.pk).update(
        created_at=timezone.now() - timedelta(minutes=20)
    )
    assert succeeded(tasks.reconcile.enqueue(older_than_seconds=1800))["checked"] == 0
    mocked_responses.post(STATUS_URL, json=[])
    assert succeeded(tasks.reconcile.enqueue(older_than_seconds=600, limit=5))["checked"] == 1


# Threads writing at once: SQLite's shared in-memory test database answers "table is locked".
@pytest.mark.postgres
def test_reconcile_task_concurrency_and_rate(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    from unittest import mock

    from django_etpay import operations

    sessions = [make_session() for _ in range(3)]
    PaymentSession.objects.filter(pk__in=[s.pk for s in sessions]).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    mocked_responses.post(STATUS_URL, json=[])
    with mock.patch.object(operations, "_in_threads", wraps=operations._in_threads) as threads:
        value = succeeded(tasks.reconcile.enqueue(concurrency=2, max_per_second=1000))
    assert value["checked"] == value["unknown"] == 3
    assert threads.call_args.kwargs["concurrency"] == 2


def test_expire_task() -> None:
    session = make_session()
    PaymentSession.objects.filter(pk=session.pk).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    assert succeeded(tasks.expire.enqueue()) == {"expired": 1}
    session.refresh_from_db()
    assert session.status == PaymentSession.Status.EXPIRED


def test_purge_task_needs_an_age_and_purges(settings: Any) -> None:
    failed = tasks.purge.enqueue()
    assert failed.status == "FAILED"
    assert "PURGE_AFTER" in failed.errors[0].traceback
    session = make_session(status=PaymentSession.Status.PAID, payer_rut="111111111")
    PaymentSession.objects.filter(pk=session.pk).update(
        created_at=timezone.now() - timedelta(days=10)
    )
    assert succeeded(tasks.purge.enqueue(days=5)) == {"sessions": 1, "notifications": 0}
    settings.ETPAY = {**settings.ETPAY, "PURGE_AFTER": timedelta(days=5)}
    assert succeeded(tasks.purge.enqueue()) == {"sessions": 0, "notifications": 0}
    session.refresh_from_db()
    assert session.payer_rut == ""


def test_without_any_tasks_framework_the_import_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "django.tasks", None)
    monkeypatch.setitem(sys.modules, "django_tasks", None)
    monkeypatch.delitem(sys.modules, "django_etpay.tasks")
    with pytest.raises(ImportError, match=r'pip install "django-etpay\[tasks\]"'):
        importlib.import_module("django_etpay.tasks")
    monkeypatch.undo()
    assert importlib.import_module("django_etpay.tasks") is tasks
