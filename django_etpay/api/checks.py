"""System checks of the REST API (``django_etpay.E1xx`` / ``W1xx``).

- ``django_etpay.E101``: an ``API_*`` class or hook setting cannot be imported or is of the
  wrong kind.
- ``django_etpay.E102``: the API's URLs are included with the stock create view, and
  ``ETPAY["API_ORDER_HOOK"]`` is not set: every checkout would fail.
- ``django_etpay.E103``: a rate in ``ETPAY["API_THROTTLE_RATES"]`` cannot be parsed.
- ``django_etpay.W101``: the API lets anyone create sessions (``AllowAny``) and the create
  endpoint is not throttled.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from rest_framework.permissions import AllowAny
from rest_framework.throttling import SimpleRateThrottle

from django_etpay import conf
from django_etpay.api import conf as api_conf
from django_etpay.api.throttling import CREATE_SCOPE
from django_etpay.exceptions import EtpayConfigurationError

_CLASS_KEYS = ("API_AUTHENTICATION_CLASSES", "API_PERMISSION_CLASSES", "API_THROTTLE_CLASSES")
_HOOK_KEYS = ("API_ORDER_HOOK", "API_VISIBILITY_HOOK")


def check_api(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The API's settings, and an order hook wherever the stock create view is mounted."""
    try:
        conf.get_config()
    except EtpayConfigurationError:
        return []  # a non-dict ETPAY: check_settings reports it (E001)
    errors: list[checks.CheckMessage] = []
    loaded: dict[str, Any] = {}
    for key in _CLASS_KEYS:
        try:
            loaded[key] = api_conf.load_classes(key)
        except EtpayConfigurationError as err:
            errors.append(checks.Error(str(err), id="django_etpay.E101"))
    for key in _HOOK_KEYS:
        try:
            loaded[key] = api_conf.load_callable(key)
        except EtpayConfigurationError as err:
            errors.append(checks.Error(str(err), id="django_etpay.E101"))

    rates: Any = conf.get_setting("API_THROTTLE_RATES") or {}
    if not isinstance(rates, dict):
        errors.append(
            checks.Error(
                'ETPAY["API_THROTTLE_RATES"] must map scopes to rates such as "10/minute".',
                id="django_etpay.E103",
            )
        )
        rates = {}
    for scope, rate in rates.items():
        try:
            SimpleRateThrottle.parse_rate(None, rate)  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            errors.append(
                checks.Error(
                    f'ETPAY["API_THROTTLE_RATES"][{scope!r}] = {rate!r} is not a rate such as '
                    '"10/minute" (or None).',
                    id="django_etpay.E103",
                )
            )

    if "API_ORDER_HOOK" in loaded and loaded["API_ORDER_HOOK"] is None and _stock_create_view():
        errors.append(
            checks.Error(
                'The REST API is mounted but ETPAY["API_ORDER_HOOK"] is not set: creating a '
                "session would fail.",
                hint="Name the function that maps a request to the order and amount to pay, "
                "or mount a SessionCreateView subclass that overrides get_order().",
                id="django_etpay.E102",
            )
        )

    permissions = loaded.get("API_PERMISSION_CLASSES") or []
    throttles = loaded.get("API_THROTTLE_CLASSES")
    if AllowAny in permissions and (not throttles or rates.get(CREATE_SCOPE, "") is None):
        errors.append(
            checks.Warning(
                "The REST API lets anyone create ETpay sessions and the create endpoint is "
                "not throttled.",
                hint='Keep ETPAY["API_THROTTLE_CLASSES"] and a rate for "etpay_session_create".',
                id="django_etpay.W101",
            )
        )
    return errors


def _stock_create_view() -> bool:
    """Whether ``django_etpay_api:sessions`` resolves to a view that needs the hook."""
    from django_etpay.api.views import SessionCreateView

    try:
        match = resolve(reverse("django_etpay_api:sessions"))
    except (NoReverseMatch, Resolver404):
        return False
    except Exception:  # a broken URLconf is reported by Django's own URL checks
        return False
    view_class = getattr(match.func, "cls", None)
    if not (isinstance(view_class, type) and issubclass(view_class, SessionCreateView)):
        return False
    return view_class.get_order is SessionCreateView.get_order
