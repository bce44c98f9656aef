"""How amounts are shown to people: one function, used by templates, the admin and the API."""

from __future__ import annotations

#: Currency symbols used in front of the amount. CLP and MXN both write ``$``.
SYMBOLS: dict[str, str] = {"CLP": "$", "MXN": "$"}


def format_amount(amount: int, currency: str | None = None) -> str:
    """``6990`` -> ``"$6.990"``: an amount of whole pesos, written as its country writes it.

    ``currency`` defaults to CLP (also when empty). CLP has no minor unit: Chile groups
    thousands with dots and shows no decimals (``$6.990``), whatever the active language.
    MXN is written the Mexican way, thousands grouped with commas and two decimals after a
    point (``1500`` -> ``$1,500.00``); the decimals are always ``.00``, since sessions hold
    whole pesos (see the Mexico page of the docs). Another currency keeps the Chilean grouping
    and is followed by its code (``"1.500 XYZ"``). A negative amount keeps its sign in front.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"amount must be an int of whole units, not {type(amount).__name__}")
    sign = "-" if amount < 0 else ""
    code = currency.upper() if currency else "CLP"
    if code == "MXN":
        return f"{sign}{SYMBOLS['MXN']}{abs(amount):,}.00"
    grouped = f"{abs(amount):,}".replace(",", ".")
    if code == "CLP":
        return f"{sign}{SYMBOLS['CLP']}{grouped}"
    return f"{sign}{grouped} {code}"


def format_money(amount: int, currency: str | None = None) -> str:
    """``6990`` -> ``"$6.990 CLP"``: :func:`format_amount` followed by the currency code.

    What every page shows a person (the shop's pages through the ``etpay_money`` template
    filter, the payment dialog, the sandbox, the admin): the code says which peso it is, since
    CLP and MXN both write ``$`` (``1500`` in MXN -> ``"$1,500.00 MXN"``). ``currency``
    defaults to CLP, as in :func:`format_amount`.
    """
    text = format_amount(amount, currency)
    code = currency.upper() if currency else "CLP"
    # format_amount already ends a currency other than CLP and MXN with its code.
    return text if text.endswith(f" {code}") else f"{text} {code}"
