from __future__ import annotations

from typing import Any

import pytest

from django_etpay.money import format_amount


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (0, "CLP", "$0"),
        (990, "CLP", "$990"),
        (6990, "CLP", "$6.990"),
        (1234567, "clp", "$1.234.567"),
        (-6990, "CLP", "-$6.990"),
        (1500, "MXN", "$1,500.00"),
        (1234567, "mxn", "$1,234,567.00"),
        (-39, "MXN", "-$39.00"),
        (1500, "XYZ", "1.500 XYZ"),
        (6990, "", "$6.990"),
    ],
)
def test_format_amount(amount: int, currency: str, expected: str) -> None:
    assert format_amount(amount, currency) == expected


@pytest.mark.parametrize("amount", [6990.0, "6990", True, None])
def test_format_amount_refuses_non_integers(amount: object) -> None:
    with pytest.raises(TypeError):
        format_amount(amount)  # type: ignore[arg-type]


def test_the_default_currency_is_clp() -> None:
    assert format_amount(6990) == "$6.990"


def test_a_non_integer_amount_is_named_in_the_error() -> None:
    with pytest.raises(TypeError, match=r"^amount must be an int of whole units, not float$"):
        format_amount(6990.0)  # type: ignore[arg-type]


# -- the one format people read, and its template filter --------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (6990, "CLP", "$6.990 CLP"),
        (15990, "clp", "$15.990 CLP"),
        (6990, None, "$6.990 CLP"),
        (1500, "MXN", "$1,500.00 MXN"),
        (1500, "XYZ", "1.500 XYZ"),
    ],
)
def test_format_money_always_names_the_currency(
    amount: int, currency: str | None, expected: str
) -> None:
    from django_etpay.money import format_money

    assert format_money(amount, currency) == expected


def test_the_template_filter_writes_the_one_format(settings: Any) -> None:
    from django.template import Context, Template

    template = Template("{% load etpay %}{{ amount|etpay_money }}|{{ amount|etpay_money:'MXN' }}")
    assert template.render(Context({"amount": 15990})) == "$15.990 CLP|$15,990.00 MXN"
    # Without a currency the default account's country decides.
    settings.ETPAY = {**settings.ETPAY, "COUNTRY": "MX"}
    assert Template("{% load etpay %}{{ 1500|etpay_money }}").render(Context()) == (
        "$1,500.00 MXN"
    )
