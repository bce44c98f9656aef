"""The database router of the router tests: the app's models on their own database.

``django_etpay``'s models (and the test shop's orders, which point at its sessions) live on the
``payments`` alias; ``default`` keeps auth, sessions, the admin's log, the local sandbox and
the rest. It is the router docs/going-live.md shows, with one alias name per setting.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model

#: The alias the payment models are routed to (a second database in ``tests/settings.py``).
PAYMENTS = "payments"
#: The apps whose models live on it.
PAYMENT_APPS = frozenset({"django_etpay", "testshop"})


class PaymentsRouter:
    """Send the payment apps' reads, writes and migrations to :data:`PAYMENTS`."""

    def _alias(self, model: type[Model]) -> str | None:
        return PAYMENTS if model._meta.app_label in PAYMENT_APPS else None

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return self._alias(model)

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return self._alias(model)

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        # A session names the user who created it (PaymentSession.created_by), who lives on
        # default: a relation Django cannot enforce across databases, allowed explicitly.
        if {obj1._meta.app_label, obj2._meta.app_label} & PAYMENT_APPS:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        if app_label in PAYMENT_APPS:
            return db == PAYMENTS
        return db != PAYMENTS


class StaleReplicaRouter(PaymentsRouter):
    """Writes on :data:`PAYMENTS`, reads from a replica that has none of them yet.

    ``default`` plays the replica: it has the tables but not the rows. Whatever decides a
    transition must read the write database; only what merely shows rows (the admin's lists,
    a status poll) may read the replica.
    """

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return "default" if self._alias(model) else None


#: For ``override_settings(DATABASE_ROUTERS=...)``.
ROUTERS = ["tests.routers.PaymentsRouter"]
STALE_REPLICA_ROUTERS = ["tests.routers.StaleReplicaRouter"]
