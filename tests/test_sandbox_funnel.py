"""The sandbox funnel as a payer meets it: no dead ends, the RUT kept, cancel, Spanish.

Each of the first tests is a finding from trying the funnel as a new user would; they failed
before the funnel was fixed.
"""

from __future__ import annotations

import jwt
import pytest
from django.test import Client, override_settings

from django_etpay.sandbox.models import SandboxSession
from tests.test_sandbox_api import SHOP, funnel, jwt_of, new_session

pytestmark = pytest.mark.django_db


def test_the_funnel_offers_a_cancel_that_goes_to_the_cancellation_url(client: Client) -> None:
    session = new_session(
        client,
        payment_completed_url=f"{SHOP}/done",
        payment_cancellation_url=f"{SHOP}/cancelled",
    )
    page = client.get(funnel(session)).content.decode()
    assert 'name="action" value="cancel"' in page
    assert "Cancel and return to the shop" in page

    response = client.post(funnel(session), {"action": "cancel", "rut": "", "bank": ""})
    assert response.status_code == 303
    assert response["Location"].startswith(f"{SHOP}/cancelled?jwt=")
    claims = jwt.decode(jwt_of(response["Location"]), session.signature_token, ["HS256"])
    assert claims["payment_status"] is False
    session.refresh_from_db()
    assert session.status == SandboxSession.Status.REJECTED


def test_cancel_ignores_a_system_error_fault_set_for_the_session(client: Client) -> None:
    session = new_session(
        client,
        payment_cancellation_url=f"{SHOP}/cancelled",
        headers={"X-Sandbox-Faults": "system_error"},
    )
    response = client.post(funnel(session), {"action": "cancel"})
    claims = jwt.decode(jwt_of(response["Location"]), session.signature_token, ["HS256"])
    assert claims["payment_status"] is False


def test_no_cancel_button_without_a_cancellation_url(client: Client) -> None:
    session = new_session(client)
    assert 'value="cancel"' not in client.get(funnel(session)).content.decode()


def test_an_empty_rut_is_refused_and_the_session_stays_open(client: Client) -> None:
    session = new_session(client, payment_completed_url=f"{SHOP}/done")
    response = client.post(funnel(session), {"bank": "cl_bci", "rut": "  ", "action": "approve"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Enter your RUT." in page
    assert 'role="alert"' in page
    session.refresh_from_db()
    assert session.status == SandboxSession.Status.PENDING


def test_a_wrong_check_digit_keeps_what_the_payer_typed(client: Client) -> None:
    session = new_session(client, payment_completed_url=f"{SHOP}/done")
    response = client.post(
        funnel(session),
        {"bank": "cl_santander", "rut": "11.111.111-2", "action": "approve", "faults": "twice"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "RUT has a wrong check digit." in page
    assert 'value="11.111.111-2"' in page
    assert 'value="cl_santander" checked' in page
    assert 'value="twice" checked' in page
    session.refresh_from_db()
    assert session.status == SandboxSession.Status.PENDING


def test_the_typed_rut_is_what_etpay_reports(client: Client) -> None:
    session = new_session(client, payment_completed_url=f"{SHOP}/done")
    response = client.post(
        funnel(session), {"bank": "cl_bci", "rut": "12.345.678-5", "action": "approve"}
    )
    claims = jwt.decode(jwt_of(response["Location"]), session.signature_token, ["HS256"])
    assert claims["user_rut"] == "123456785"


@pytest.mark.parametrize(
    ("action", "faults", "url", "key_is_session_token"),
    [
        ("approve", "", f"{SHOP}/done?jwt=", False),
        ("reject", "", f"{SHOP}/cancelled?jwt=", False),
        ("approve", "system_error", f"{SHOP}/cancelled?jwt=", True),
    ],
)
def test_a_finished_session_shows_the_way_back_with_its_result(
    client: Client, action: str, faults: str, url: str, key_is_session_token: bool
) -> None:
    session = new_session(
        client,
        payment_completed_url=f"{SHOP}/done",
        payment_cancellation_url=f"{SHOP}/cancelled",
    )
    client.post(
        funnel(session),
        {"bank": "cl_bci", "rut": "11.111.111-1", "action": action, "faults": faults},
    )
    again = client.get(funnel(session))
    assert again.status_code == 200
    page = again.content.decode()
    assert "This payment session is finished." in page
    assert 'id="etpay-sandbox-back"' in page
    assert f'href="{url}' in page
    raw = page.split('data-payment="', 1)[1].split('"', 1)[0]
    session.refresh_from_db()
    key = session.token if key_is_session_token else session.signature_token
    claims = jwt.decode(raw, key, ["HS256"])
    assert claims["session_token"] == session.token


def test_the_funnel_page_names_its_session_and_origins_for_the_frame(client: Client) -> None:
    session = new_session(client, payment_completed_url=f"{SHOP}/done")
    page = client.get(funnel(session)).content.decode()
    assert f'data-session="{session.token}"' in page
    assert f'data-origins="{SHOP}"' in page


@override_settings(LANGUAGE_CODE="es")
def test_the_funnel_speaks_spanish(client: Client) -> None:
    session = new_session(
        client,
        payment_completed_url=f"{SHOP}/done",
        payment_cancellation_url=f"{SHOP}/cancelled",
    )
    page = client.get(funnel(session)).content.decode()
    assert '<html lang="es">' in page
    assert "Aprobar pago" in page
    assert "Cancelar y volver a la tienda" in page
    assert "Elige tu banco" in page
    error = client.post(funnel(session), {"bank": "cl_bci", "rut": "", "action": "approve"})
    assert "Ingresa tu RUT." in error.content.decode()
