"""The operational jobs as tasks of Django's Tasks framework.

``django.tasks`` on Django 6.0 and later; the ``django-tasks`` backport before (``pip install
"django-etpay[tasks]"``). The tasks run on whatever backend the project configures in
``TASKS``: a database worker (``django-tasks-db``), RQ (``django-tasks-rq``), Celery, or the
immediate backend. Each returns a JSON summary, which backends that keep results store.

Enqueue them from your scheduler (see ``docs/operations.md``)::

    from django_etpay.tasks import reconcile, expire, purge

    reconcile.enqueue()
    expire.enqueue()
    purge.enqueue(days=365)

Use ``reconcile.using(queue_name="etpay", backend="...")`` to route them elsewhere. Tasks
bind to a backend when this module is imported, so it is imported only by code that uses it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django_etpay import operations

if TYPE_CHECKING:
    from django.tasks import task
else:
    try:
        from django.tasks import task  # Django 6.0+
    except ImportError:  # pragma: no cover - depends on the installed Django
        try:
            from django_tasks import task  # the backport, for Django 4.2 and 5.2
        except ImportError as err:
            raise ImportError(
                "django_etpay.tasks needs Django's Tasks framework: Django 6.0 or later, or "
                'the backport (pip install "django-etpay[tasks]").'
            ) from err


@task
def reconcile(
    older_than_seconds: float | None = None,
    merchant: str | None = None,
    limit: int | None = None,
    max_age_seconds: float | None = None,
    concurrency: int | None = None,
    max_per_second: float | None = None,
    shard: str | None = None,
) -> dict[str, Any]:
    """``etpay_reconcile`` as a task: re-deliver overdue effects, reconcile due sessions.

    ``older_than_seconds`` overrides ``SESSION_TTL`` and ``max_age_seconds``
    ``RECONCILE_MAX_AGE`` (task arguments must be JSON, so no ``timedelta``); ``merchant``
    restricts to one alias; ``limit`` caps the sessions asked about in this run (the next run
    continues); ``concurrency`` and ``max_per_second`` override ``RECONCILE_CONCURRENCY`` and
    ``RECONCILE_MAX_PER_SECOND``; ``shard`` (``"K/N"``, as ``--shard``) asks about one of N
    disjoint shares of the due sessions, so that N tasks on N workers share a backlog.
    Returns the summary's counts.
    """
    summary = operations.reconcile_due(
        older_than=_seconds(older_than_seconds),
        max_age=_seconds(max_age_seconds),
        merchant=merchant,
        limit=limit,
        concurrency=concurrency,
        max_per_second=max_per_second,
        shard=operations.parse_shard(shard) if shard is not None else None,
    )
    return summary.as_dict()


@task
def expire(older_than_seconds: float | None = None) -> dict[str, Any]:
    """``etpay_expire`` as a task: expire pending sessions past ``SESSION_TTL``."""
    return {"expired": operations.expire_due(older_than=_seconds(older_than_seconds))}


@task
def purge(days: int | None = None) -> dict[str, Any]:
    """``etpay_purge`` as a task: purge personal data older than ``days`` (or
    ``PURGE_AFTER``). Raises when neither is set, so a misconfigured schedule fails visibly."""
    return operations.purge_personal_data(operations.purge_age(days)).as_dict()


def _seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)
