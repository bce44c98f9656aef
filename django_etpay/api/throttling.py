"""Rate limits for both endpoints (DRF throttles), configured in ``ETPAY``."""

from __future__ import annotations

from typing import Any

from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from django_etpay import conf

#: The ``throttle_scope`` of each view; the keys of ``ETPAY["API_THROTTLE_RATES"]``.
CREATE_SCOPE = "etpay_session_create"
STATUS_SCOPE = "etpay_session_status"


class SessionRateThrottle(ScopedRateThrottle):
    """Limits each endpoint separately, per signed-in user or, for guests, per client address.

    The rate of a view's ``throttle_scope`` is read from ``ETPAY["API_THROTTLE_RATES"]`` when
    a request arrives, then from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``; ``None`` (or a
    missing scope) does not limit. Counts live in Django's default cache: use a shared cache
    (Redis, Memcached, database) when several processes serve the API, or each process
    counts on its own. Client addresses come from DRF's ``get_ident`` (``REMOTE_ADDR``, or
    ``X-Forwarded-For`` when ``REST_FRAMEWORK["NUM_PROXIES"]`` says how many proxies to
    trust).
    """

    def get_rate(self) -> str | None:
        scope = self.scope or ""
        rates: Any = conf.get_setting("API_THROTTLE_RATES") or {}
        fallback: Any = api_settings.DEFAULT_THROTTLE_RATES
        rate: str | None = rates[scope] if scope in rates else fallback.get(scope)
        return rate
