"""The test URLconf plus a probe of the server process, for ``tests/test_asgi.py``.

``GET _probe/`` answers, after a full garbage collection, how many database connection
wrappers are alive in the process, how much memory ``tracemalloc`` sees (0 when it is not
tracing) and which sessions ``payment_completed`` announced, and how often.
"""

from __future__ import annotations

import gc
import threading
import tracemalloc
from collections import Counter
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, JsonResponse
from django.urls import path

from django_etpay import signals
from tests.urls import urlpatterns as test_urlpatterns

_completed: Counter[int] = Counter()
_lock = threading.Lock()


def _count_completed(sender: Any, session: Any, **kwargs: Any) -> None:
    with _lock:
        _completed[session.pk] += 1


signals.payment_completed.connect(_count_completed, dispatch_uid="tests-asgi-probe")


def probe(request: HttpRequest) -> JsonResponse:
    gc.collect()
    # type(), not isinstance(): that would evaluate lazy objects (a request.user...).
    wrappers = sum(issubclass(type(obj), BaseDatabaseWrapper) for obj in gc.get_objects())
    traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
    with _lock:
        completed = {str(pk): count for pk, count in _completed.items()}
    return JsonResponse({"wrappers": wrappers, "traced": traced, "completed": completed})


urlpatterns = [*test_urlpatterns, path("_probe/", probe)]
