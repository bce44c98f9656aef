"""The admin's detail pages: each outcome once, a repeat named and explained, metadata as a
table, RUTs written as Chile writes them, the environment translated."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from django_etpay.models import Notification, PaymentSession
from tests.factories import make_session

pytestmark = pytest.mark.django_db


def session_page(client: Client, session: PaymentSession) -> str:
    url = reverse("admin:django_etpay_paymentsession_change", args=[session.pk])
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def notification(session: PaymentSession, **values: object) -> Notification:
    fields: dict[str, object] = {
        "session": session,
        "channel": Notification.Channel.WIDGET,
        "outcome": Notification.Outcome.DUPLICATE,
        "result": Notification.Result.SUCCESS,
        "status_before": "paid",
        "status_after": "paid",
    }
    fields.update(values)
    return Notification.objects.create(**fields)


def field_row(html: str, name: str) -> str:
    """The readonly row of one field on a change page: up to the next row or the fieldset's end
    (Django 6.1 puts the help text before the value, so the row's own closing tags vary)."""
    match = re.search(
        rf'<div class="[^"]*field-{name}[^"]*">(.*?)(?=<div class="[^"]*form-row|</fieldset>)',
        html,
        re.S,
    )
    assert match, name
    return match.group(1)


def test_the_notification_page_shows_the_outcome_once(admin_client: Client) -> None:
    accepted = notification(
        make_session(), outcome=Notification.Outcome.ACCEPTED, status_before="pending"
    )
    url = reverse("admin:django_etpay_notification_change", args=[accepted.pk])
    html = admin_client.get(url).content.decode()

    assert html.count("Accepted") == 1
    assert "field-outcome_label" in html
    assert "field-outcome " not in html
    assert 'field-outcome"' not in html


def test_a_repeat_is_named_and_explained(admin_client: Client) -> None:
    session = make_session(status=PaymentSession.Status.PAID)
    repeat = notification(session)

    page = session_page(admin_client, session)
    assert "Repeat: changed nothing (expected)" in page
    assert ">Duplicate<" not in page

    url = reverse("admin:django_etpay_notification_change", args=[repeat.pk])
    detail = admin_client.get(url).content.decode()
    explanation = field_row(detail, "outcome_explanation")
    assert "changed nothing" in explanation
    assert "expected, not a fault" in explanation


def test_an_accepted_result_has_no_repeat_explanation(admin_client: Client) -> None:
    accepted = notification(
        make_session(), outcome=Notification.Outcome.ACCEPTED, status_before="pending"
    )
    url = reverse("admin:django_etpay_notification_change", args=[accepted.pk])
    detail = admin_client.get(url).content.decode()

    assert "not a fault" not in detail
    assert re.search(r'class="readonly">-</div>', field_row(detail, "outcome_explanation"))


def test_metadata_is_a_small_table(admin_client: Client) -> None:
    session = make_session(
        metadata=[
            {"name": "Producto", "value": "Taza <b>", "show": True},
            {"name": "order_pk", "value": 7, "show": False},
        ]
    )
    row = field_row(session_page(admin_client, session), "metadata_table")

    assert '<table class="etpay-metadata">' in row
    assert "<tr><td>Producto</td><td>Taza &lt;b&gt;</td><td>yes</td></tr>" in row
    assert "<tr><td>order_pk</td><td>7</td><td>no</td></tr>" in row
    assert "[{" not in row  # not the raw JSON


def test_the_payer_rut_is_written_with_dots_and_dash(admin_client: Client) -> None:
    session = make_session(payer_rut="111111111", user_rut="123456785")
    page = session_page(admin_client, session)

    assert "11.111.111-1" in field_row(page, "payer_rut_display")
    assert "12.345.678-5" in field_row(page, "user_rut_display")
    assert ">111111111<" not in page


@pytest.mark.parametrize(
    ("stored", "shown"),
    [("111111111", "11.111.111-1"), ("7654321k", "7.654.321-K"), ("not a rut", "not a rut")],
)
def test_rut_display(stored: str, shown: str) -> None:
    from django_etpay.admin import _rut_display

    assert _rut_display(stored) == shown


def test_the_environment_is_translated_in_spanish(admin_client: Client) -> None:
    session = make_session(environment="preproduction")
    changelist = reverse("admin:django_etpay_paymentsession_changelist")
    with translation.override("es"):
        listing = admin_client.get(changelist, HTTP_ACCEPT_LANGUAGE="es").content.decode()
        page = admin_client.get(
            reverse("admin:django_etpay_paymentsession_change", args=[session.pk]),
            HTTP_ACCEPT_LANGUAGE="es",
        ).content.decode()

    assert "Preproducción" in listing
    assert "Producción" in listing
    assert "Preproducción" in field_row(page, "environment_display")
    filtered = admin_client.get(changelist, {"environment": "preproduction"})
    assert session.merchant_order_id in filtered.content.decode()
    other = admin_client.get(changelist, {"environment": "production"})
    assert session.merchant_order_id not in other.content.decode()


def test_a_mexican_session_shows_its_phone_and_method_and_no_rut(admin_client: Client) -> None:
    session = make_session(
        country="MX",
        currency="MXN",
        order_amount=1234,
        customer_phone="9616689020",
        target_flow="spei",
        user_bank_code="mx_bbva",
    )
    html = session_page(admin_client, session)

    assert "$1,234.00 MXN" in field_row(html, "amount_display")
    assert "Mexico" in field_row(html, "country")
    assert "9616689020" in field_row(html, "customer_phone")
    assert "SPEI" in field_row(html, "target_flow")
    assert "field-user_rut_display" not in html
    assert "field-is_rut_block" not in html


def test_a_chilean_session_keeps_its_rut_rows(admin_client: Client) -> None:
    html = session_page(admin_client, make_session(user_rut="123456785", is_rut_block=True))

    assert "12.345.678-5" in field_row(html, "user_rut_display")
    assert "field-customer_phone" not in html
    assert "field-target_flow" not in html
