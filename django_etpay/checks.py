"""System checks, run at start-up by ``manage.py check`` and ``runserver``.

Ids are stable; a retired id is listed here and never reused.

- ``django_etpay.E001``: a required credential is missing (default account or a merchant alias).
- ``django_etpay.E002``: ``ENVIRONMENT`` is not one of sandbox, preproduction, production.
- ``django_etpay.E003``: ``TIMEOUT`` / ``TOTAL_TIMEOUT`` are not positive numbers.
- ``django_etpay.E004``: ``API_URL`` or ``PMT_URL`` is not https outside the sandbox.
- ``django_etpay.E005``: the local sandbox is mounted with ``ENVIRONMENT = "production"``.
- ``django_etpay.E006``: ``SIGNATURE_KEYS`` is set but is not a list of non-empty strings.
- ``django_etpay.E007``: ``COUNTRY`` (default account or an alias) is not ``"CL"`` or ``"MX"``.
- ``django_etpay.E008``: ``CURRENCY`` (default account or an alias) is not its country's
  currency (CLP for Chile, MXN for Mexico).
- ``django_etpay.W001``: ``ENVIRONMENT = "production"`` while ``DEBUG`` is on.
- ``django_etpay.W002``: ``MERCHANTS`` is not a dict of dicts.
- ``django_etpay.W003``: a ``SIGNATURE_KEYS`` secret is shorter than 32 characters.
- ``django_etpay.W004``: a ModelAdmin names ``signature_token`` (list, filter, search, ordering,
  fields): the field refuses every lookup, and no admin page should show it.
- ``django_etpay.W005``: an account's ``MERCHANT_CODE`` carries another country's prefix
  (``cl_`` or ``mx_``), e.g. a Mexican code on an account whose ``COUNTRY`` is ``"CL"``.
- ``django_etpay.E101``-``E103``, ``W101``: the REST API (see :mod:`django_etpay.api.checks`).
- ``django_etpay.E201``: ``REFUND_BACKEND`` cannot be imported, or names neither a
  ``RefundBackend`` class nor a callable.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks

from django_etpay import conf


def register() -> None:
    """Register every check of this module (called from ``AppConfig.ready``)."""
    checks.register(check_settings, checks.Tags.security)
    checks.register(check_sandbox, checks.Tags.security, checks.Tags.urls)
    checks.register(check_admin_secrets, checks.Tags.admin)
    from django_etpay.api.checks import check_api

    checks.register(check_api, checks.Tags.security, checks.Tags.urls)
    checks.register(check_refunds)


def _accounts(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, settings) of the default account and each alias."""
    accounts: list[tuple[str, dict[str, Any]]] = [("ETPAY", config)]
    merchants = config.get("MERCHANTS") or {}
    if isinstance(merchants, dict):
        for alias, values in merchants.items():
            if isinstance(values, dict):
                accounts.append((f'ETPAY["MERCHANTS"][{alias!r}]', values))
    return accounts


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Credentials, environment, timeouts and URLs of every configured account."""
    errors: list[checks.CheckMessage] = []
    try:
        config = conf.get_config()
    except Exception as err:  # a non-dict ETPAY: report, never crash the check run
        return [checks.Error(str(err), id="django_etpay.E001")]

    merchants = config.get("MERCHANTS")
    if merchants and not (
        isinstance(merchants, dict) and all(isinstance(v, dict) for v in merchants.values())
    ):
        errors.append(
            checks.Warning(
                'ETPAY["MERCHANTS"] must map aliases to dicts of credentials.',
                id="django_etpay.W002",
            )
        )

    for label, values in _accounts(config):
        errors.extend(_check_country(label, values, config))
        for key in conf.CREDENTIAL_KEYS:
            value = values.get(key)
            if not value or not isinstance(value, str):
                errors.append(
                    checks.Error(
                        f'Missing ETpay setting {label}["{key}"].',
                        hint="ETpay hands these values over at onboarding; "
                        "see the settings reference.",
                        id="django_etpay.E001",
                    )
                )
        environment = values.get("ENVIRONMENT", config.get("ENVIRONMENT"))
        if environment not in conf.ENVIRONMENTS:
            errors.append(
                checks.Error(
                    f'{label}["ENVIRONMENT"] is {environment!r}; expected one of '
                    f"{', '.join(conf.ENVIRONMENTS)}.",
                    id="django_etpay.E002",
                )
            )
            continue
        if environment != "sandbox":
            for key in ("API_URL", "PMT_URL"):
                value = values.get(key)
                if isinstance(value, str) and value and urlsplit(value).scheme != "https":
                    errors.append(
                        checks.Error(
                            f'{label}["{key}"] must use https in the {environment} '
                            "environment: the API token travels in the request body.",
                            id="django_etpay.E004",
                        )
                    )
        if environment == "production" and settings.DEBUG:
            errors.append(
                checks.Warning(
                    f'{label}["ENVIRONMENT"] is "production" while DEBUG is on.',
                    hint="Use the sandbox credentials for development, or turn DEBUG off.",
                    id="django_etpay.W001",
                )
            )

    errors.extend(_check_signature_keys(config.get("SIGNATURE_KEYS")))

    if not _valid_timeouts(config.get("TIMEOUT"), config.get("TOTAL_TIMEOUT")):
        errors.append(
            checks.Error(
                'ETPAY["TIMEOUT"] must be a positive number or a (connect, read) pair of '
                'positive numbers, and ETPAY["TOTAL_TIMEOUT"] a positive number.',
                id="django_etpay.E003",
            )
        )
    return errors


def _check_country(
    label: str, values: dict[str, Any], config: dict[str, Any]
) -> list[checks.CheckMessage]:
    """``COUNTRY``, and the options that must fit it, of one account.

    An alias inherits the default account's ``COUNTRY`` but not its ``CURRENCY``: the global
    ``CURRENCY`` describes the default account, so that a Mexican alias may sit beside a
    Chilean default account.
    """
    country = values.get("COUNTRY", config.get("COUNTRY", "CL"))
    if not isinstance(country, str) or country.upper() not in conf.COUNTRIES:
        return [
            checks.Error(
                f'{label}["COUNTRY"] is {country!r}; expected one of {", ".join(conf.COUNTRIES)}.',
                hint='"CL" for ETpay Chile (CLP), "MX" for ETpay Mexico (MXN).',
                id="django_etpay.E007",
            )
        ]
    country = country.upper()
    expected = conf.COUNTRY_CURRENCIES[country]
    found: list[checks.CheckMessage] = []
    currency = values.get("CURRENCY")
    if currency is not None and (not isinstance(currency, str) or currency.upper() != expected):
        found.append(
            checks.Error(
                f'{label}["CURRENCY"] is {currency!r}, but the account\'s COUNTRY is '
                f"{country!r}, paid in {expected}.",
                hint="Remove CURRENCY (it follows COUNTRY), or set the account's COUNTRY.",
                id="django_etpay.E008",
            )
        )
    code = values.get("MERCHANT_CODE")
    if isinstance(code, str):
        prefix = code[:3].lower()
        for other in conf.COUNTRIES:
            if other != country and prefix == f"{other.lower()}_":
                found.append(
                    checks.Warning(
                        f'{label}["MERCHANT_CODE"] starts with {prefix!r}, a code of '
                        f"ETpay {other}, but the account's COUNTRY is {country!r}.",
                        hint=f'Set {label}["COUNTRY"] = "{other}" if this is a {other} account.',
                        id="django_etpay.W005",
                    )
                )
    return found


#: Shortest signature-key secret that does not draw a warning.
MIN_SIGNATURE_KEY_LENGTH = 32


def _check_signature_keys(keys: Any) -> list[checks.CheckMessage]:
    """``SIGNATURE_KEYS``: None (keys derived from SECRET_KEY) or a list of long secrets."""
    if keys is None:
        return []
    if (
        isinstance(keys, str)
        or not isinstance(keys, list | tuple)
        or not keys
        or not all(isinstance(key, str) and key for key in keys)
    ):
        return [
            checks.Error(
                'ETPAY["SIGNATURE_KEYS"] must be a non-empty list of secret strings, the '
                "current one first (or None to derive the keys from SECRET_KEY).",
                id="django_etpay.E006",
            )
        ]
    short = [index for index, key in enumerate(keys) if len(key) < MIN_SIGNATURE_KEY_LENGTH]
    if short:
        return [
            checks.Warning(
                f'ETPAY["SIGNATURE_KEYS"] entries {short} are shorter than '
                f"{MIN_SIGNATURE_KEY_LENGTH} characters.",
                hint='Use long random secrets, e.g. python -c "import secrets; '
                'print(secrets.token_urlsafe(48))".',
                id="django_etpay.W003",
            )
        ]
    return []


#: ModelAdmin options that name fields, and so could expose or query a secret.
_ADMIN_OPTIONS = (
    "list_display",
    "list_display_links",
    "list_filter",
    "search_fields",
    "ordering",
    "sortable_by",
    "fields",
    "readonly_fields",
    "list_editable",
    "date_hierarchy",
    "raw_id_fields",
    "autocomplete_fields",
)


def _names(option: Any) -> list[str]:
    if isinstance(option, str):
        return [option]
    names: list[str] = []
    for item in option or ():
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, list | tuple) and item and isinstance(item[0], str):
            names.append(item[0])
    return names


def check_admin_secrets(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """No ModelAdmin, on any admin site, may name ``signature_token``."""
    from django.contrib.admin.sites import all_sites
    from django.db.models.constants import LOOKUP_SEP

    found: list[checks.CheckMessage] = []
    for site in list(all_sites):
        for model, model_admin in site._registry.items():
            for option in _ADMIN_OPTIONS:
                for name in _names(getattr(model_admin, option, None)):
                    parts = name.lstrip("-=^@").split(LOOKUP_SEP)
                    if "signature_token" in parts:
                        found.append(
                            checks.Warning(
                                f"{type(model_admin).__name__}.{option} names {name!r} "
                                f"(admin site {site.name!r}).",
                                hint="signature_token is a secret: it refuses every lookup "
                                "and must not appear on an admin page.",
                                obj=model,
                                id="django_etpay.W004",
                            )
                        )
    return found


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _valid_timeouts(timeout: Any, total: Any) -> bool:
    if isinstance(timeout, list | tuple):
        pair_ok = len(timeout) == 2 and all(_positive(v) for v in timeout)
    else:
        pair_ok = _positive(timeout)
    return pair_ok and _positive(total)


def check_sandbox(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The local sandbox must never be reachable in production."""
    from django.urls import NoReverseMatch, reverse

    try:
        environment = conf.get_config().get("ENVIRONMENT")
    except Exception:
        return []
    if environment != "production":
        return []
    try:
        reverse("etpay_sandbox:initialize")
    except NoReverseMatch:
        return []
    except Exception:
        # A broken URLconf is reported by Django's own checks.
        return []
    return [
        checks.Error(
            "The ETpay sandbox (django_etpay.sandbox.urls) is mounted while "
            'ETPAY["ENVIRONMENT"] is "production".',
            hint="Remove the sandbox from your URLconf in production.",
            id="django_etpay.E005",
        )
    ]


def check_refunds(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``REFUND_BACKEND`` names something :func:`django_etpay.refunds.get_backend` can use."""
    from django_etpay import refunds
    from django_etpay.exceptions import EtpayConfigurationError

    try:
        refunds.get_backend()
    except EtpayConfigurationError as err:
        return [
            checks.Error(
                str(err),
                hint="A dotted path to a django_etpay.refunds.RefundBackend subclass or to a "
                "callable taking the refund; see the refunds page of the documentation.",
                id="django_etpay.E201",
            )
        ]
    except Exception as err:  # an error while importing the backend's module: report it
        return [
            checks.Error(
                f'ETPAY["REFUND_BACKEND"] cannot be loaded ({type(err).__name__}: {err}).',
                id="django_etpay.E201",
            )
        ]
    return []
