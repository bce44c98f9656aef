"""Settings for a child process whose django_etpay models live in a second database.

``default`` and ``payments`` are two databases on the test run's PostgreSQL server
(``ETPAY_TEST_PG*``), named by ``ETPAY_TEST_ROUTED_DEFAULT`` and ``ETPAY_TEST_ROUTED_PAYMENTS``.
:class:`PaymentsRouter` sends every read and write of the app's models to ``payments`` and
everything else to ``default``; see ``tests/test_router_pipeline.py``.
"""

from __future__ import annotations

import os
from typing import Any

from tests.subprocess_settings import *  # noqa: F403

_server = {**DATABASES["default"]}  # noqa: F405
DATABASES = {
    "default": {**_server, "NAME": os.environ["ETPAY_TEST_ROUTED_DEFAULT"]},
    "payments": {**_server, "NAME": os.environ["ETPAY_TEST_ROUTED_PAYMENTS"]},
}
DATABASE_ROUTERS = ["tests.routed_pipeline_settings.PaymentsRouter"]

#: The apps whose models live in ``payments``: the app's, and the test shop's orders, which
#: point at its sessions.
PAYMENT_APPS = frozenset({"django_etpay", "testshop"})


class PaymentsRouter:
    """The app's models in ``payments``, the rest in ``default``.

    Auth and contenttypes tables exist in both (the session's ``created_by`` foreign key needs
    a user table beside it); only the app's tables are migrated into ``payments`` alone.
    """

    def _alias(self, model: type[Any]) -> str:
        return "payments" if model._meta.app_label in PAYMENT_APPS else "default"

    def db_for_read(self, model: type[Any], **hints: Any) -> str:
        return self._alias(model)

    def db_for_write(self, model: type[Any], **hints: Any) -> str:
        return self._alias(model)

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        if app_label in PAYMENT_APPS:
            return db == "payments"
        return True
