"""Which database a result is written to, and signals sent once it has committed there.

Below the records and the pipeline: both send signals after commit, on the connection they
wrote with. One operation uses one alias, the router's write database for the app's models
(:func:`write_alias`), for every transaction, lock, read that decides a transition and
on-commit callback, so that with a database router nothing waits on another connection's
commit and a read replica never decides.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import router, transaction
from django.dispatch import Signal

from django_etpay.models import PaymentSession

logger = logging.getLogger("django_etpay")


def write_alias() -> str:
    """The database the app's rows are written to (``router.db_for_write``)."""
    return router.db_for_write(PaymentSession)


def send_on_commit(signal: Signal, sender: type[Any], *, using: str, **kwargs: Any) -> None:
    """Send ``signal`` once ``using``'s transaction commits (at once outside one).

    A failing receiver is logged and stops nothing else.
    """

    transaction.on_commit(lambda: send_robust(signal, sender, **kwargs), using=using)


def send_robust(signal: Signal, sender: type[Any], **kwargs: Any) -> None:
    """Send ``signal`` now; a failing receiver is logged and stops neither the others nor us."""
    for receiver_func, response in signal.send_robust(sender=sender, **kwargs):
        if isinstance(response, Exception):
            logger.error(
                "Receiver %s of a django_etpay signal raised %s",
                getattr(receiver_func, "__qualname__", type(receiver_func).__qualname__),
                type(response).__name__,
                exc_info=response,
            )
