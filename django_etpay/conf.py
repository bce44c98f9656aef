"""The ``ETPAY`` settings dict: defaults, a cached accessor and per-merchant credentials.

Settings are read when a function runs or a client is built, never at import time, so
``override_settings(ETPAY=...)`` works in tests: the cache is cleared on ``setting_changed``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_etpay.exceptions import EtpayConfigurationError

#: The four values ETpay hands over at onboarding, for each environment.
CREDENTIAL_KEYS: tuple[str, ...] = ("MERCHANT_CODE", "MERCHANT_API_TOKEN", "API_URL", "PMT_URL")

#: ETpay's three environments. Sessions record the one they were created in.
ENVIRONMENTS: tuple[str, ...] = ("sandbox", "preproduction", "production")

#: The countries ETpay serves, each with the currency its accounts are paid in. A merchant
#: account belongs to one country (``ETPAY["COUNTRY"]``, ``MERCHANTS[alias]["COUNTRY"]``).
COUNTRY_CURRENCIES: dict[str, str] = {"CL": "CLP", "MX": "MXN"}
COUNTRIES: tuple[str, ...] = tuple(COUNTRY_CURRENCIES)

DEFAULTS: dict[str, Any] = {
    # Which of ETpay's environments the credentials belong to.
    "ENVIRONMENT": "sandbox",
    # The country of the default account ("CL" or "MX"); each alias in MERCHANTS inherits it
    # unless it names its own. The currency follows: CLP for Chile, MXN for Mexico.
    "COUNTRY": "CL",
    # (connect, read) seconds; requests applies the read value to each socket read.
    "TIMEOUT": (5.0, 30.0),
    # Wall-clock limit for one whole call to ETpay, because per-read timeouts alone let a
    # server that drips bytes hold a call open indefinitely.
    "TOTAL_TIMEOUT": 45.0,
    # Replies from ETpay are a few hundred bytes; anything far larger is not ETpay.
    "MAX_RESPONSE_BYTES": 1024 * 1024,
    # Automatic retries, only for calls whose connection never opened (nothing was sent).
    "CONNECT_RETRIES": 2,
    # Path of a CA bundle (file or directory) that ETpay's TLS certificate must chain to; None
    # uses requests' default (certifi, or REQUESTS_CA_BUNDLE). Verification is never disabled.
    "CA_BUNDLE": None,
    # Kept-alive connections to ETpay per merchant account and process: at least the number of
    # threads that call ETpay at once (more are opened when needed, then closed after use).
    "POOL_SIZE": 10,
    # Seconds a kept-alive connection may sit idle and still be reused. Older ones are closed
    # and a new one opened, so that a request is not written onto a connection the server is
    # about to close (ETpay does not publish its idle limit; 5 s is a common server default).
    "KEEPALIVE_IDLE": 4.0,
    # Optional extra merchant accounts: alias -> {MERCHANT_CODE, MERCHANT_API_TOKEN, API_URL,
    # PMT_URL[, ENVIRONMENT][, COUNTRY]}.
    "MERCHANTS": {},
    # How long a pending session waits before it may be expired or reconciled.
    "SESSION_TTL": timedelta(hours=1),
    # ETpay's own widget script, when ETpay hands one out; else the bundled loader is used.
    "WIDGET_SCRIPT_URL": None,
    # Seconds the widget loader waits for the shop's widget-result reply before it tells the
    # payer and offers to try again (the JWT stays in the page, so nothing is lost).
    "WIDGET_RESULT_TIMEOUT": 20.0,
    # Seconds the loader waits, after the framed funnel has loaded, for the funnel to announce
    # itself; without that the frame is unusable (refused, or a funnel that does not speak to
    # the loader) and the payer is sent to the payment page in the whole window instead.
    "WIDGET_HANDSHAKE_TIMEOUT": 3.0,
    # Whether a verified JWT arriving through the payer's browser (redirect or widget) may
    # change a session's status. It is signed with the session's secret, so it is trusted.
    "ACCEPT_BROWSER_RESULTS": True,
    # Clock skew tolerated on the JWT ``iat`` claim, in seconds.
    "JWT_LEEWAY": 120,
    # Largest notification body the notification view reads, in bytes.
    "NOTIFICATION_MAX_BYTES": 64 * 1024,
    # How much of each raw notification body is stored on the Notification row.
    "NOTIFICATION_STORE_BYTES": 8 * 1024,
    # Rejected notifications stored per session, so that a stranger cannot fill the table.
    "MAX_REJECTED_PER_SESSION": 100,
    # Verified results that change nothing (repeats, system errors, stale results) stored per
    # session: the system-error JWT is signed with the public session token, so anyone holding
    # a payment URL can mint one. The effect (a reconciliation flag) applies beyond the cap.
    "MAX_DUPLICATES_PER_SESSION": 100,
    # Rejected results that name no known session (garbage, unknown tokens) stored per hour,
    # across the whole site; beyond it they are counted in the logs only.
    "MAX_UNLINKED_REJECTED_PER_HOUR": 1000,
    # Secrets that encrypt signature tokens at rest: the first encrypts, all decrypt. None
    # derives the keys from SECRET_KEY and SECRET_KEY_FALLBACKS.
    "SIGNATURE_KEYS": None,
    # Currency of the default account; None follows COUNTRY (CLP, MXN). When set it must be
    # the country's currency (system check E008): a session stores its account's currency and
    # results are checked against the session's, so two countries can sit side by side.
    "CURRENCY": None,
    # Where the return view sends the payer; URL names or paths. None renders a template.
    "SUCCESS_URL": None,
    "FAILURE_URL": None,
    # etpay_reconcile asks ETpay again about the same session at most this often, so that a
    # session ETpay knows nothing of is not queried (and logged) on every run.
    "RECONCILE_INTERVAL": timedelta(hours=1),
    # etpay_reconcile leaves sessions older than this alone (a flag ETpay cannot resolve would
    # otherwise be queried every RECONCILE_INTERVAL forever); they stay visible in the admin's
    # "needs attention" filter. None asks about sessions of any age.
    "RECONCILE_MAX_AGE": timedelta(days=30),
    # Threads etpay_reconcile (and the reconcile task) ask ETpay with at once. 1 keeps the run
    # in one thread and one database connection; raise it to get through a backlog (see
    # docs/operations.md: about 16 after a webhook outage), with POOL_SIZE at least as large.
    "RECONCILE_CONCURRENCY": 1,
    # Status queries per second etpay_reconcile sends, all threads together; None: no limit
    # but the concurrency (ETpay publishes no rate limit; its 429s are backed off from).
    "RECONCILE_MAX_PER_SECOND": None,
    # Times etpay_reconcile asks again about a session when ETpay answered 429 or a 5xx, after
    # an exponential backoff (0.5 s, 1 s, 2 s, ... at most 30 s) or ETpay's Retry-After.
    "RECONCILE_RETRIES": 3,
    # A completion effect (payment_completed, payment_failed, session_expired) whose receivers
    # have not all finished this long after its delivery started is delivered again by
    # etpay_reconcile. Longer than your slowest receiver, so that a slow receiver is not
    # delivered twice; each further retry waits twice as long (capped at a day).
    "EFFECT_RETRY_AFTER": timedelta(minutes=10),
    # Deliveries of one effect before giving up (the effect is then "failed" in the admin).
    "EFFECT_MAX_ATTEMPTS": 10,
    # Default age for etpay_purge and the purge task: raw bodies and payer personal data older
    # than this are removed. None means the age must be given each time.
    "PURGE_AFTER": None,
    # -- REST API (django_etpay.api, opt-in through its own URL include) --
    # Authentication classes of the API views (classes or dotted paths); None uses
    # REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"].
    "API_AUTHENTICATION_CLASSES": None,
    # Who may call the API at all. Signed-in users only by default: guest checkouts are a
    # deliberate choice (see docs/api.md), not an accident of configuration.
    "API_PERMISSION_CLASSES": ("rest_framework.permissions.IsAuthenticated",),
    # Throttles of both endpoints (classes or dotted paths); () turns throttling off.
    "API_THROTTLE_CLASSES": ("django_etpay.api.throttling.SessionRateThrottle",),
    # Rates per endpoint scope, per signed-in user or per client address for guests. Every
    # creation calls ETpay, so it is the expensive one; polling is cheap but frequent.
    "API_THROTTLE_RATES": {
        "etpay_session_create": "10/minute",
        "etpay_session_status": "120/minute",
    },
    # The shop's hook that maps a request to the order and amount to pay: a callable or its
    # dotted path, (request, data) -> mapping of initialize_session arguments. The browser
    # never chooses what it pays. Required by the stock create view.
    "API_ORDER_HOOK": None,
    # Who may see a session's status: a callable or its dotted path, (request, session) ->
    # bool. The default shows it to the user who created it, to the browser session that
    # created it, and to staff.
    "API_VISIBILITY_HOOK": "django_etpay.api.permissions.can_view_session",
    # -- refunds (django_etpay.refunds) --
    # Dotted path of what carries a requested refund out: a RefundBackend subclass or a
    # callable taking the refund. ETpay's Payouts API is not public, so the default records the
    # request and waits for staff to confirm it once done in ETpay's back-office.
    "REFUND_BACKEND": "django_etpay.refunds.ManualRefundBackend",
}


@dataclass(frozen=True)
class MerchantConfig:
    """The credentials and endpoints of one ETpay merchant account.

    ``merchant_api_token`` is excluded from ``repr`` so that it never reaches a log line or a
    traceback by accident.
    """

    alias: str
    merchant_code: str
    merchant_api_token: str = field(repr=False)
    api_url: str
    pmt_url: str
    environment: str
    #: ``"CL"`` or ``"MX"`` (:data:`COUNTRIES`).
    country: str = "CL"

    @property
    def currency(self) -> str:
        """The ISO 4217 code this account is paid in: CLP for Chile, MXN for Mexico."""
        return COUNTRY_CURRENCIES[self.country]


@functools.cache
def get_config() -> dict[str, Any]:
    """Return the ``ETPAY`` settings merged over :data:`DEFAULTS` (cached)."""
    user: Any = getattr(settings, "ETPAY", None) or {}
    if not isinstance(user, dict):
        raise EtpayConfigurationError("settings.ETPAY must be a dict.")
    return {**DEFAULTS, **user}


@receiver(setting_changed)
def _reset_config(*, setting: str, **kwargs: Any) -> None:
    if setting == "ETPAY":
        get_config.cache_clear()


def get_setting(key: str) -> Any:
    """Return one ``ETPAY`` setting, its default when unset."""
    return get_config()[key]


def merchant_aliases() -> list[str]:
    """Aliases configured in ``ETPAY["MERCHANTS"]``."""
    merchants = get_config().get("MERCHANTS") or {}
    return list(merchants)


def get_merchant(alias: str | None = None) -> MerchantConfig:
    """Return the credentials of merchant ``alias``, or of the default account for ``None``.

    Raises :class:`~django_etpay.exceptions.EtpayConfigurationError` naming the exact
    missing key, e.g. ``ETPAY["MERCHANT_API_TOKEN"]``.
    """
    config = get_config()
    if alias:
        merchants = config.get("MERCHANTS") or {}
        if not isinstance(merchants, dict) or alias not in merchants:
            raise EtpayConfigurationError(
                f'Unknown ETpay merchant alias {alias!r}: add it to ETPAY["MERCHANTS"].'
            )
        source: dict[str, Any] = merchants[alias] or {}
        prefix = f'ETPAY["MERCHANTS"][{alias!r}]'
        if not isinstance(source, dict):
            raise EtpayConfigurationError(f"{prefix} must be a dict of credentials.")
    else:
        source = config
        prefix = "ETPAY"
    values: dict[str, str] = {}
    for key in CREDENTIAL_KEYS:
        value = source.get(key)
        if not value or not isinstance(value, str):
            raise EtpayConfigurationError(f'Missing ETpay setting {prefix}["{key}"].')
        values[key] = value
    environment = source.get("ENVIRONMENT", config["ENVIRONMENT"])
    if environment not in ENVIRONMENTS:
        raise EtpayConfigurationError(
            f'{prefix}["ENVIRONMENT"] must be one of {", ".join(ENVIRONMENTS)}.'
        )
    country = account_country(alias)
    return MerchantConfig(
        alias=alias or "",
        merchant_code=values["MERCHANT_CODE"],
        merchant_api_token=values["MERCHANT_API_TOKEN"],
        api_url=values["API_URL"].rstrip("/"),
        pmt_url=values["PMT_URL"].rstrip("/"),
        environment=environment,
        country=country,
    )


def account_country(alias: str | None = None) -> str:
    """The country of merchant ``alias`` (the default account for ``None`` or ``""``).

    An alias without ``COUNTRY`` inherits ``ETPAY["COUNTRY"]``. Raises
    :class:`~django_etpay.exceptions.EtpayConfigurationError` for a value that is not one of
    :data:`COUNTRIES` (system check ``django_etpay.E007`` reports it at start-up), and for an
    unknown alias.
    """
    config = get_config()
    value: Any = config.get("COUNTRY", "CL")
    prefix = "ETPAY"
    if alias:
        merchants = config.get("MERCHANTS") or {}
        source = merchants.get(alias) if isinstance(merchants, dict) else None
        if not isinstance(source, dict):
            raise EtpayConfigurationError(
                f'Unknown ETpay merchant alias {alias!r}: add it to ETPAY["MERCHANTS"].'
            )
        if "COUNTRY" in source:
            value = source["COUNTRY"]
            prefix = f'ETPAY["MERCHANTS"][{alias!r}]'
    if not isinstance(value, str) or value.upper() not in COUNTRIES:
        raise EtpayConfigurationError(
            f'{prefix}["COUNTRY"] must be one of {", ".join(COUNTRIES)}.'
        )
    return value.upper()


def account_currency(alias: str | None = None) -> str:
    """The currency of merchant ``alias``: its country's (:data:`COUNTRY_CURRENCIES`)."""
    return COUNTRY_CURRENCIES[account_country(alias)]


def get_timeout() -> tuple[float, float]:
    """The (connect, read) timeout pair; a single number applies to both."""
    value = get_setting("TIMEOUT")
    if isinstance(value, int | float):
        return (float(value), float(value))
    connect, read = value
    return (float(connect), float(read))


def get_duration(key: str) -> timedelta:
    """A duration setting as a ``timedelta``; a plain number is read as seconds."""
    value = get_setting(key)
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EtpayConfigurationError(
            f'ETPAY["{key}"] must be a timedelta or a number of seconds.'
        )
    return timedelta(seconds=float(value))
