"""Checks on data sent to ETpay, run before any network call.

Each function returns the normalised value or raises ``ValueError`` with a message for the
payer-facing field it checks; :func:`django_etpay.services.initialize_session` collects them into
one :class:`~django_etpay.exceptions.EtpayValidationError`.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator
from django.utils.translation import gettext as _

#: Bank codes ETpay documents (lower case, as in its docs; its SDK uses upper case).
CHILE_BANK_CODES: tuple[str, ...] = (
    "cl_estado",
    "cl_santander",
    "cl_bch",
    "cl_bci",
    "cl_falabella",
    "cl_itau",
    "cl_scotiabank",
    "cl_mach",
    "cl_test",
)
MEXICO_BANK_CODES: tuple[str, ...] = (
    "mx_bbva",
    "mx_banamex",
    "mx_scotiabank",
    "mx_santander",
    "mx_banorte",
    "mx_azteca",
    "mx_banregio",
    "mx_test",
)
BANK_CODES: tuple[str, ...] = CHILE_BANK_CODES + MEXICO_BANK_CODES
#: The bank codes of each country's accounts: a Chilean session cannot preselect a Mexican bank.
COUNTRY_BANK_CODES: dict[str, tuple[str, ...]] = {"CL": CHILE_BANK_CODES, "MX": MEXICO_BANK_CODES}

#: The payment methods of ETpay Mexico a session may preselect (``target_flow``).
TARGET_FLOWS: tuple[str, ...] = ("codi", "spei")

#: Display names of the banks, for bank pickers (the sandbox's funnel).
BANK_NAMES: dict[str, str] = {
    "cl_estado": "BancoEstado",
    "cl_santander": "Banco Santander",
    "cl_bch": "Banco de Chile",
    "cl_bci": "Bci",
    "cl_falabella": "Banco Falabella",
    "cl_itau": "Itaú",
    "cl_scotiabank": "Scotiabank",
    "cl_mach": "MACH",
    "cl_test": "Banco de prueba",
    "mx_bbva": "BBVA México",
    "mx_banamex": "Banamex",
    "mx_scotiabank": "Scotiabank México",
    "mx_santander": "Santander México",
    "mx_banorte": "Banorte",
    "mx_azteca": "Banco Azteca",
    "mx_banregio": "Banregio",
    "mx_test": "Banco de prueba",
}

MAX_ORDER_ID_LENGTH = 64
#: Longest e-mail address and URL accepted: the lengths of their ``PaymentSession`` columns.
MAX_EMAIL_LENGTH = 254
MAX_URL_LENGTH = 2000
# Control characters, and lone surrogates (no database can store them: a surrogate cannot be
# encoded in UTF-8).
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# What a JSON column cannot hold: PostgreSQL's jsonb refuses \u0000 and lone surrogates.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
# At most 999.999.999: real RUTs have 8 digits, and the normalised form must fit its column.
_RUT_CHARS = re.compile(r"^\d{1,3}(?:\.?\d{3}){0,2}-?[\dkK]$")


def order_id(value: Any) -> str:
    """1 to 64 characters, no control characters; an ``int`` is accepted and stringified."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(_("must be a string of 1 to 64 characters."))
    text = str(value)
    if not 1 <= len(text) <= MAX_ORDER_ID_LENGTH:
        raise ValueError(_("must be 1 to %(max)d characters long.") % {"max": MAX_ORDER_ID_LENGTH})
    if _CONTROL_CHARS.search(text) or text != text.strip():
        raise ValueError(_("must not contain control characters or surrounding spaces."))
    return text


def amount(value: Any) -> int:
    """A positive ``int`` of whole pesos; ``bool``, ``float``, ``Decimal`` and ``str`` refused."""
    # type() rather than isinstance(): bool is an int subclass and must be refused.
    if type(value) is not int:
        raise ValueError(_("must be a positive integer number of pesos (no float, bool or str)."))
    if value <= 0:
        raise ValueError(_("must be greater than zero."))
    if value >= 2**63:
        raise ValueError(_("is too large."))
    return value


def rut_check_digit(body: str) -> str:
    """The modulo-11 check digit of a RUT body (digits only)."""
    total = 0
    factor = 2
    for digit in reversed(body):
        total += int(digit) * factor
        factor = 2 if factor == 7 else factor + 1
    remainder = 11 - total % 11
    if remainder == 11:
        return "0"
    if remainder == 10:
        return "K"
    return str(remainder)


def rut(value: Any) -> str:
    """A Chilean RUT in any common format (``12.345.678-5``, ``12345678-5``, ``123456785``).

    Returns it normalised as digits followed by the check digit, without dots or dash
    (``123456785``), which is how ETpay reports RUTs in its results.
    """
    if not isinstance(value, str):
        raise ValueError(_("must be a string such as 12.345.678-5."))
    text = value.strip().replace(" ", "")
    if not _RUT_CHARS.match(text):
        raise ValueError(_("is not a RUT (expected a form such as 12.345.678-5)."))
    compact = text.replace(".", "").replace("-", "").upper()
    body, check = compact[:-1], compact[-1]
    if not body or int(body) == 0:
        raise ValueError(_("is not a RUT."))
    if rut_check_digit(body) != check:
        raise ValueError(_("has a wrong check digit."))
    return f"{int(body)}{check}"


def format_rut(value: str) -> str:
    """``123456785`` -> ``12.345.678-5``, for display."""
    body, check = value[:-1], value[-1]
    return f"{int(body):,}".replace(",", ".") + f"-{check}"


def bank_code(value: Any, country: str | None = None) -> str:
    """One of :data:`BANK_CODES` (of ``country``'s banks when given), in any case; returned
    lower case as ETpay documents it."""
    codes = COUNTRY_BANK_CODES[country] if country else BANK_CODES
    if not isinstance(value, str) or value.lower() not in codes:
        raise ValueError(_("must be one of %(codes)s.") % {"codes": ", ".join(codes)})
    return value.lower()


def phone(value: Any) -> str:
    """A Mexican phone number of 10 digits, as ETpay Mexico takes it (``9616689020``).

    Spaces, dashes, dots and parentheses are dropped (``961 668 9020``, ``(961) 668-9020``); a
    leading ``+52`` country code too. Returned as the 10 digits.
    """
    if not isinstance(value, str):
        raise ValueError(_("must be a phone number of 10 digits, such as 9616689020."))
    text = re.sub(r"[\s().-]", "", value)
    if text.startswith("+52"):
        text = text[3:]
    if not (len(text) == 10 and text.isascii() and text.isdigit()):
        raise ValueError(_("must be a phone number of 10 digits, such as 9616689020."))
    return text


def target_flow(value: Any) -> str:
    """``"codi"`` or ``"spei"`` (any case): the Mexican payment method to preselect."""
    if not isinstance(value, str) or value.lower() not in TARGET_FLOWS:
        raise ValueError(_("must be codi or spei."))
    return value.lower()


def email(value: Any) -> str:
    """A syntactically valid e-mail address."""
    if not isinstance(value, str):
        raise ValueError(_("must be an e-mail address."))
    if len(value) > MAX_EMAIL_LENGTH:
        raise ValueError(
            _("is not a valid e-mail address (over %(max)d characters).")
            % {"max": MAX_EMAIL_LENGTH}
        )
    try:
        EmailValidator()(value)
    except ValidationError:
        raise ValueError(_("is not a valid e-mail address.")) from None
    return value


def http_url(value: Any) -> str:
    """An absolute http(s) URL."""
    if not isinstance(value, str):
        raise ValueError(_("must be an absolute http(s) URL."))
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(
            _("must be an absolute http(s) URL of at most %(max)d characters.")
            % {"max": MAX_URL_LENGTH}
        )
    if _CONTROL_CHARS.search(value):
        raise ValueError(_("must be an absolute http(s) URL."))
    try:
        URLValidator(schemes=["http", "https"])(value)
    except ValidationError:
        raise ValueError(_("must be an absolute http(s) URL.")) from None
    return value


def metadata(value: Any) -> list[dict[str, Any]]:
    """A list of ``{"name": str, "value": str|int, "show": bool}`` entries."""
    if not isinstance(value, list | tuple):
        raise ValueError(_("must be a list of {name, value, show} objects."))
    cleaned: list[dict[str, Any]] = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict) or set(entry) != {"name", "value", "show"}:
            raise ValueError(
                _("entry %(index)d must have exactly the keys name, value and show.")
                % {"index": index}
            )
        name, shown, show = entry["name"], entry["value"], entry["show"]
        if not isinstance(name, str) or not name.strip():
            raise ValueError(
                _("entry %(index)d: name must be a non-empty string.") % {"index": index}
            )
        if isinstance(shown, bool) or not isinstance(shown, str | int):
            raise ValueError(
                _("entry %(index)d: value must be a string or an integer.") % {"index": index}
            )
        if _UNSTORABLE.search(name) or _UNSTORABLE.search(str(shown)):
            raise ValueError(
                _("entry %(index)d: NUL and lone surrogates cannot be stored.") % {"index": index}
            )
        if not isinstance(show, bool):
            raise ValueError(_("entry %(index)d: show must be true or false.") % {"index": index})
        cleaned.append({"name": name, "value": str(shown), "show": show})
    return cleaned


def concat(value: Any) -> str:
    """The separator ETpay puts before what it appends to redirect URLs: 1 to 8 visible
    characters, such as ``"&"``."""
    if not isinstance(value, str) or not 1 <= len(value) <= 8:
        raise ValueError(_('must be 1 to 8 characters, such as "&".'))
    if _CONTROL_CHARS.search(value) or any(char.isspace() for char in value):
        raise ValueError(_("must not contain spaces or control characters."))
    return value
