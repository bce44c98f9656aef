"""The public face of the app's services: import them from here.

Each concern lives in its own module; this one re-exports their public names so that shop
code never depends on where they live:

- :func:`initialize_session`: checkout (:mod:`django_etpay.checkout`);
- :func:`process_notification`, :func:`reconcile_session`: inbound results
  (:mod:`django_etpay.pipeline`), :func:`record_rejection` their records
  (:mod:`django_etpay.records`);
- :func:`expire_sessions`: operations (:mod:`django_etpay.operations`);
- :func:`session_for_order`: one session per order (:mod:`django_etpay.orders`).
"""

from __future__ import annotations

from django_etpay.checkout import initialize_session
from django_etpay.operations import expire_sessions
from django_etpay.orders import session_for_order
from django_etpay.pipeline import process_notification, reconcile_session
from django_etpay.records import record_rejection
from django_etpay.rules import BROWSER_CHANNELS

__all__ = [
    "BROWSER_CHANNELS",
    "expire_sessions",
    "initialize_session",
    "process_notification",
    "reconcile_session",
    "record_rejection",
    "session_for_order",
]
