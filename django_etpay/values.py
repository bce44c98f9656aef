"""Claim values as the database can store them: text, JSON, addresses, payer fields.

The bottom floor of the result pipeline (views -> pipeline -> records -> rules -> values):
nothing here reads the database or sends a signal, so every floor above may use it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any

from django_etpay import conf

#: Payer details ETpay reports -> (session field, its max_length).
PAYER_FIELDS: dict[str, tuple[str, int]] = {
    "payment_token": ("payment_token", 255),
    "user_bank": ("payer_bank", 255),
    "user_account": ("payer_account", 255),
    "user_rut": ("payer_rut", 32),
}

#: The claims a system-error result's record keeps: the JWT is signed with the session token,
#: which is part of the payment URL, so anything else in it may come from anyone.
SYSTEM_ERROR_CLAIMS: tuple[str, ...] = ("session_token", "system_error", "iat")

_UTF8 = "utf-8"

#: What no database text column can hold: NUL (PostgreSQL) and lone surrogates (UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str) -> str:
    """``value`` with NUL and lone surrogates replaced by U+FFFD: any database stores it."""
    return _UNSTORABLE.sub("\ufffd", value)


def storable_text(raw: str) -> tuple[str, bool]:
    """``raw`` capped at ``NOTIFICATION_STORE_BYTES`` and made storable in any database;
    with whether it was cut."""
    limit = int(conf.get_setting("NOTIFICATION_STORE_BYTES"))
    encoded = storable(raw).encode(_UTF8)
    if len(encoded) <= limit:
        return encoded.decode(_UTF8), False
    return encoded[:limit].decode(_UTF8, "ignore"), True


def storable_claims(claims: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Claims as JSON any database accepts, or ``None`` when they cannot or should not be kept.

    Strings (keys too) lose NUL and lone surrogates (:func:`storable`); NaN and infinities,
    which JSON columns refuse, and claims whose JSON exceeds ``NOTIFICATION_STORE_BYTES`` give
    ``None``.
    """
    if not claims:
        return None
    try:
        cleaned = storable_json(dict(claims))
        size = len(json.dumps(cleaned, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        return None
    if size > int(conf.get_setting("NOTIFICATION_STORE_BYTES")):
        return None
    stored: dict[str, Any] = cleaned
    return stored


def storable_json(value: Any) -> Any:
    """``value`` (decoded JSON) with every string made storable."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(key): storable_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable_json(item) for item in value]
    return value


def system_error_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """Only the claims of :data:`SYSTEM_ERROR_CLAIMS` that ``claims`` has."""
    return {key: claims[key] for key in SYSTEM_ERROR_CLAIMS if key in claims}


def clean_ip(value: str | None) -> str | None:
    """A valid IP address for ``remote_addr``, else ``None`` (never a database error)."""
    if not value or "%" in value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def claim_str(claims: Mapping[str, Any], key: str, max_length: int) -> str:
    """A string claim, storable and cut to ``max_length``; ``""`` for anything else."""
    value = claims.get(key)
    return storable(value)[:max_length] if isinstance(value, str) else ""
