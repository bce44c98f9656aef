"""The API's ``ETPAY`` keys, turned into classes and callables when a request needs them.

Read at request time (never at import), so that ``override_settings(ETPAY=...)`` works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.module_loading import import_string

from django_etpay import conf
from django_etpay.exceptions import EtpayConfigurationError


def _load(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return import_string(value)
    except ImportError as err:
        raise EtpayConfigurationError(
            f'ETPAY["{key}"] names {value!r}, which cannot be imported ({err}).'
        ) from err


def load_classes(key: str) -> list[type[Any]] | None:
    """The classes listed in ``ETPAY[key]`` (dotted paths imported); ``None`` when unset."""
    value = conf.get_setting(key)
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise EtpayConfigurationError(
            f'ETPAY["{key}"] must be a list of classes or dotted paths to classes.'
        )
    return [_load(key, item) for item in value]


def load_callable(key: str) -> Callable[..., Any] | None:
    """The callable ``ETPAY[key]`` names (a dotted path is imported); ``None`` when unset."""
    value = conf.get_setting(key)
    if value is None:
        return None
    hook = _load(key, value)
    if not callable(hook):
        raise EtpayConfigurationError(f'ETPAY["{key}"] must be a callable or its dotted path.')
    return hook  # type: ignore[no-any-return]
