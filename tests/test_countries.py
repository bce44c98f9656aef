"""Countries per merchant account: Chile (CLP) and Mexico (MXN) side by side.

``ETPAY["COUNTRY"]`` and ``MERCHANTS[alias]["COUNTRY"]`` choose the country; the currency,
the fields a session may send (RUT for Chile, phone and CoDi/SPEI for Mexico) and the bank
codes follow it, and a result is checked against the currency its session stored.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks as django_checks
from pytest_django import Settings

from django_etpay import conf, validators
from django_etpay.checks import check_settings
from django_etpay.exceptions import EtpayConfigurationError, EtpayValidationError
from django_etpay.models import Notification, PaymentSession
from django_etpay.services import initialize_session, process_notification, session_for_order
from django_etpay.testing import FakeEtpay
from django_etpay.testing.results import sign_result

MEXICO = {
    "MERCHANT_CODE": "mx_merchant",
    "MERCHANT_API_TOKEN": "mx-api-token-SECRET-0e7b3d4c",
    "API_URL": "https://api-mx.etpay.test",
    "PMT_URL": "https://pmt-mx.etpay.test",
    "COUNTRY": "MX",
}


@pytest.fixture
def two_countries(settings: Settings) -> None:
    """A Chilean default account (with the old global CURRENCY) and a Mexican alias."""
    settings.ETPAY = {**settings.ETPAY, "CURRENCY": "CLP", "MERCHANTS": {"mx": MEXICO}}


# -- settings ---------------------------------------------------------------------------------


def test_the_default_country_is_chile() -> None:
    account = conf.get_merchant()
    assert (account.country, account.currency) == ("CL", "CLP")


@pytest.mark.usefixtures("two_countries")
def test_an_alias_names_its_own_country() -> None:
    account = conf.get_merchant("mx")
    assert (account.country, account.currency) == ("MX", "MXN")
    assert conf.get_merchant().currency == "CLP"


def test_an_alias_inherits_the_default_country(settings: Settings) -> None:
    alias = {key: value for key, value in MEXICO.items() if key != "COUNTRY"}
    settings.ETPAY = {**settings.ETPAY, "COUNTRY": "mx", "MERCHANTS": {"other": alias}}
    assert conf.get_merchant("other").country == "MX"
    assert conf.account_currency() == "MXN"


def test_an_unknown_country_is_a_configuration_error(settings: Settings) -> None:
    settings.ETPAY = {**settings.ETPAY, "COUNTRY": "PE"}
    with pytest.raises(EtpayConfigurationError, match=r'ETPAY\["COUNTRY"\] must be one of CL'):
        conf.get_merchant()


# -- system checks ----------------------------------------------------------------------------


def _ids(settings: Settings, **etpay: Any) -> list[tuple[str, str]]:
    settings.ETPAY = {**settings.ETPAY, **etpay}
    return [(message.id or "", message.msg) for message in check_settings()]


def test_check_an_unknown_country(settings: Settings) -> None:
    found = _ids(settings, COUNTRY="PE")
    assert [id_ for id_, _ in found] == ["django_etpay.E007"]
    assert "'PE'" in found[0][1]


def test_check_an_alias_with_an_unknown_country(settings: Settings) -> None:
    found = _ids(settings, MERCHANTS={"mx": {**MEXICO, "COUNTRY": "Mexico"}})
    assert [id_ for id_, _ in found] == ["django_etpay.E007"]
    assert "ETPAY[\"MERCHANTS\"]['mx']" in found[0][1]


def test_check_a_chilean_account_with_another_currency(settings: Settings) -> None:
    found = _ids(settings, CURRENCY="MXN")
    assert [id_ for id_, _ in found] == ["django_etpay.E008"]
    assert "'MXN'" in found[0][1]
    assert "CLP" in found[0][1]


def test_check_a_mexican_alias_with_pesos_chilenos(settings: Settings) -> None:
    found = _ids(settings, MERCHANTS={"mx": {**MEXICO, "CURRENCY": "CLP"}})
    assert [id_ for id_, _ in found] == ["django_etpay.E008"]


@pytest.mark.usefixtures("two_countries")
def test_check_the_global_currency_does_not_bind_a_mexican_alias() -> None:
    assert check_settings() == []


def test_check_a_merchant_code_of_another_country(settings: Settings) -> None:
    found = _ids(settings, MERCHANTS={"mx": {**MEXICO, "COUNTRY": "CL"}})
    assert [id_ for id_, _ in found] == ["django_etpay.W005"]
    assert isinstance(check_settings()[0], django_checks.Warning)


def test_check_matching_currencies_pass(settings: Settings) -> None:
    assert _ids(settings, CURRENCY="clp", MERCHANTS={"mx": {**MEXICO, "CURRENCY": "MXN"}}) == []


# -- validators -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9616689020", "9616689020"),
        ("961 668 9020", "9616689020"),
        ("(961) 668-9020", "9616689020"),
        ("+52 961 668 9020", "9616689020"),
    ],
)
def test_phone_accepts_ten_digits(value: str, expected: str) -> None:
    assert validators.phone(value) == expected


@pytest.mark.parametrize("value", ["961668902", "96166890201", "961668902x", 9616689020, "", None])
def test_phone_refuses_anything_else(value: Any) -> None:
    # The whole message: it is what the payer's form and the API show.
    with pytest.raises(
        ValueError, match=r"^must be a phone number of 10 digits, such as 9616689020\.$"
    ):
        validators.phone(value)


@pytest.mark.parametrize(("value", "expected"), [("codi", "codi"), ("SPEI", "spei")])
def test_target_flow(value: str, expected: str) -> None:
    assert validators.target_flow(value) == expected


@pytest.mark.parametrize("value", ["oxxo", "", None, True])
def test_target_flow_refuses_other_methods(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^must be codi or spei\.$"):
        validators.target_flow(value)


def test_bank_codes_per_country() -> None:
    assert validators.bank_code("MX_BBVA", "MX") == "mx_bbva"
    assert validators.bank_code("cl_estado", "CL") == "cl_estado"
    with pytest.raises(ValueError, match="mx_bbva"):
        validators.bank_code("cl_estado", "MX")
    with pytest.raises(ValueError, match="cl_estado"):
        validators.bank_code("mx_bbva", "CL")


# -- initialize_session per country ----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("two_countries")
def test_a_mexican_session_sends_and_stores_its_fields(fake_etpay: FakeEtpay) -> None:
    session = initialize_session(
        "MX-1",
        1500,
        merchant="mx",
        customer_phone="961 668 9020",
        target_flow="SPEI",
        user_bank_code="mx_bbva",
    )
    row = PaymentSession.objects.get(pk=session.pk)
    assert (row.country, row.currency) == ("MX", "MXN")
    assert (row.customer_phone, row.target_flow, row.user_bank_code) == (
        "9616689020",
        "spei",
        "mx_bbva",
    )
    sent = fake_etpay.last_session.request
    assert sent["customer_phone"] == "9616689020"
    assert sent["target_flow"] == "spei"
    assert sent["user_bank_code"] == "mx_bbva"
    assert fake_etpay.last_session.currency == "MXN"
    # ETpay's Mexican API may answer without terms: stored empty.
    assert row.terms_url == ""


@pytest.mark.django_db
@pytest.mark.usefixtures("two_countries")
def test_a_chilean_session_beside_it_stays_chilean(fake_etpay: FakeEtpay) -> None:
    session = initialize_session("CL-1", 6990, user_rut="11.111.111-1", is_rut_block=True)
    assert (session.country, session.currency) == ("CL", "CLP")
    sent = fake_etpay.last_session.request
    assert sent["user_rut"] == "111111111"
    assert "customer_phone" not in sent
    assert "target_flow" not in sent
    assert session.terms_url == FakeEtpay.terms_url


@pytest.mark.django_db
@pytest.mark.usefixtures("two_countries")
def test_a_mexican_session_refuses_the_rut_fields(fake_etpay: FakeEtpay) -> None:
    with pytest.raises(EtpayValidationError) as caught:
        initialize_session("MX-2", 1500, merchant="mx", user_rut="11.111.111-1", is_rut_block=True)
    assert set(caught.value.errors) == {"user_rut", "is_rut_block"}
    assert "ETpay Chile" in caught.value.errors["user_rut"][0]
    assert not PaymentSession.objects.exists()
    assert fake_etpay.sessions == []


@pytest.mark.django_db
@pytest.mark.usefixtures("two_countries")
def test_a_chilean_session_refuses_the_mexican_fields(fake_etpay: FakeEtpay) -> None:
    with pytest.raises(EtpayValidationError) as caught:
        initialize_session(
            "CL-2", 6990, customer_phone="9616689020", target_flow="codi", user_bank_code="mx_bbva"
        )
    assert set(caught.value.errors) == {"customer_phone", "target_flow", "user_bank_code"}
    assert "ETpay Mexico" in caught.value.errors["target_flow"][0]
    assert not PaymentSession.objects.exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("two_countries")
def test_a_mexican_session_validates_its_fields(fake_etpay: FakeEtpay) -> None:
    with pytest.raises(EtpayValidationError) as caught:
        initialize_session(
            "MX-3", 1500, merchant="mx", customer_phone="12345", target_flow="oxxo",
            user_bank_code="cl_estado",
        )  # fmt: skip
    assert set(caught.value.errors) == {"customer_phone", "target_flow", "user_bank_code"}


@pytest.mark.django_db
@pytest.mark.usefixtures("two_countries")
def test_session_for_order_passes_the_mexican_fields(fake_etpay: FakeEtpay) -> None:
    first = session_for_order("MX-4", 1500, merchant="mx", target_flow="codi")
    again = session_for_order("MX-4", 1500, merchant="mx", target_flow="codi")
    assert again.pk == first.pk
    assert (first.currency, first.target_flow) == ("MXN", "codi")
    assert fake_etpay.last_session.request["target_flow"] == "codi"


# -- results: the session's own currency ------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("two_countries")
def test_an_mxn_result_pays_a_mexican_session_beside_a_chilean_one(
    fake_etpay: FakeEtpay, django_capture_on_commit_callbacks: Any
) -> None:
    chilean = initialize_session("CL-5", 6990)
    mexican = initialize_session("MX-5", 1500, merchant="mx")
    mexican = PaymentSession.objects.get(pk=mexican.pk)
    chilean = PaymentSession.objects.get(pk=chilean.pk)

    with django_capture_on_commit_callbacks(execute=True):
        mx_note = process_notification(
            sign_result(mexican, merchant_currency="MXN"), channel="webhook"
        )
        cl_note = process_notification(
            sign_result(chilean, merchant_currency="CLP"), channel="webhook"
        )

    assert (mx_note.outcome, cl_note.outcome) == ("accepted", "accepted")
    assert PaymentSession.objects.get(pk=mexican.pk).status == PaymentSession.Status.PAID
    assert PaymentSession.objects.get(pk=chilean.pk).status == PaymentSession.Status.PAID


@pytest.mark.django_db
@pytest.mark.usefixtures("two_countries")
def test_a_clp_result_for_a_mexican_session_is_a_currency_mismatch(fake_etpay: FakeEtpay) -> None:
    mexican = PaymentSession.objects.get(pk=initialize_session("MX-6", 1500, merchant="mx").pk)

    note = process_notification(sign_result(mexican, merchant_currency="CLP"), channel="webhook")

    assert note.outcome == "rejected"
    assert note.reason == Notification.Reason.CURRENCY_MISMATCH
    assert PaymentSession.objects.get(pk=mexican.pk).status == PaymentSession.Status.PENDING
