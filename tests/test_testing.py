"""django_etpay.testing: signed results, the fake ETpay and the pytest fixtures, as a shop
uses them (the fixtures come from ``pytest_plugins`` in ``tests/conftest.py``)."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import jwt
import pytest
from django.test import Client, override_settings

from django_etpay import client as client_module
from django_etpay.client import EtpayClient, get_client
from django_etpay.exceptions import (
    EtpayConnectionError,
    EtpayHTTPError,
    EtpayResponseError,
    EtpayTimeoutError,
)
from django_etpay.models import Notification, PaymentSession
from django_etpay.services import initialize_session, process_notification, reconcile_session
from django_etpay.testing import OMIT, FakeEtpay, FakeSession, payment_claims, sign_result
from tests.factories import make_session, signal_mocks
from tests.httpfakes import closed_port
from tests.settings import TEST_MERCHANT_API_TOKEN

pytestmark = pytest.mark.django_db

Outcome = Notification.Outcome
Reason = Notification.Reason
Status = PaymentSession.Status


def refresh(session: PaymentSession) -> PaymentSession:
    return PaymentSession.objects.get(pk=session.pk)


# -- sign_result --------------------------------------------------------------------------------


def test_a_signed_success_pays_the_session() -> None:
    session = make_session()
    notification = process_notification(sign_result(session), channel="webhook")
    assert notification.outcome == Outcome.ACCEPTED
    session = refresh(session)
    assert session.status == Status.PAID
    assert session.payer_rut == "111111111"
    assert session.payment_token.startswith("pay_")


def test_a_signed_failure_fails_the_session() -> None:
    session = make_session()
    notification = process_notification(sign_result(session, status="failure"), channel="webhook")
    assert notification.outcome == Outcome.ACCEPTED
    assert refresh(session).status == Status.FAILED


def test_a_signed_system_error_flags_the_session_and_changes_nothing() -> None:
    session = make_session()
    token = sign_result(session, status="system_error")
    assert set(jwt.decode(token, session.token, algorithms=["HS256"])) == {
        "session_token",
        "system_error",
        "iat",
    }
    notification = process_notification(token, channel="redirect")
    assert (notification.outcome, notification.reason) == (Outcome.DUPLICATE, Reason.SYSTEM_ERROR)
    session = refresh(session)
    assert session.status == Status.PENDING
    assert session.needs_reconciliation


def test_results_are_signed_with_the_session_secret_and_hs256() -> None:
    session = make_session()
    token = sign_result(session)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, session.signature_token, algorithms=["HS256"])
    assert claims["merchant_order_id"] == session.merchant_order_id
    assert claims["merchant_amount"] == session.order_amount
    assert claims["merchant_currency"] == "CLP"
    assert claims["payment_status"] is True
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, session.token or "", algorithms=["HS256"])


def test_a_result_signed_with_another_key_is_rejected() -> None:
    session = make_session()
    forged = sign_result(session, key="not-the-session-secret-" + "x" * 20)
    notification = process_notification(forged, channel="webhook")
    assert (notification.outcome, notification.reason) == (Outcome.REJECTED, Reason.BAD_SIGNATURE)
    assert refresh(session).status == Status.PENDING


def test_claims_can_be_changed_and_left_out() -> None:
    session = make_session()
    claims = payment_claims(session, merchant_amount=1, user_rut=OMIT, payment_status="success")
    assert claims["merchant_amount"] == 1
    assert "user_rut" not in claims
    assert claims["payment_status"] == "success"
    wrong_amount = process_notification(sign_result(session, merchant_amount=1), channel="webhook")
    assert wrong_amount.reason == Reason.AMOUNT_MISMATCH
    no_amount = process_notification(sign_result(session, merchant_amount=OMIT), channel="webhook")
    assert no_amount.reason == Reason.INVALID_CLAIMS
    string_status = process_notification(
        sign_result(session, payment_status="success"), channel="webhook"
    )
    assert string_status.outcome == Outcome.ACCEPTED


def test_two_results_for_one_session_name_the_same_payment() -> None:
    session = make_session()
    first = jwt.decode(sign_result(session), options={"verify_signature": False})
    second = jwt.decode(sign_result(session), options={"verify_signature": False})
    other = jwt.decode(sign_result(make_session()), options={"verify_signature": False})
    assert first["payment_token"] == second["payment_token"]
    assert first["payment_token"] != other["payment_token"]
    session.payment_token = "pay-stored"
    assert payment_claims(session)["payment_token"] == "pay-stored"


def test_sign_result_refuses_what_etpay_never_sends() -> None:
    with pytest.raises(ValueError, match="status must be one of"):
        sign_result(make_session(), status="paid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no ETpay token"):
        sign_result(make_session(token=None))
    with pytest.raises(ValueError, match="no signature_token"):
        sign_result(make_session(signature_token=""))


# -- FakeEtpay: session/initialize -----------------------------------------------------------


def test_initialize_session_is_answered_by_the_fake_without_network(
    fake_etpay: FakeEtpay,
) -> None:
    # An address that cannot resolve: only the fake can answer.
    with override_settings(
        ETPAY={
            "MERCHANT_CODE": "cl_sandbox_tests",
            "MERCHANT_API_TOKEN": TEST_MERCHANT_API_TOKEN,
            "API_URL": "https://etpay.invalid/prefix",
            "PMT_URL": "https://pmt.etpay.invalid",
        }
    ):
        session = initialize_session(
            "OC-77", 15990, customer_email="ana@example.cl", user_bank_code="cl_bci"
        )
    assert session.status == Status.PENDING
    fake = fake_etpay.last_session
    assert (session.token, session.signature_token) == (fake.token, fake.signature_token)
    assert (fake.merchant_order_id, fake.order_amount) == ("OC-77", 15990)
    assert fake.request["customer_email"] == "ana@example.cl"
    assert fake.request["user_bank_code"] == "cl_bci"
    assert session.terms_url == FakeEtpay.terms_url
    [call] = fake_etpay.calls
    assert call.path == "/session/initialize"
    assert call.body["merchant_api_token"] == "[redacted]"
    assert call.body["merchant_code"] == "cl_sandbox_tests"
    assert TEST_MERCHANT_API_TOKEN not in repr(fake_etpay.calls)
    assert fake.signature_token not in repr(fake)


def test_the_shared_client_is_rebuilt_on_install_and_on_uninstall() -> None:
    # A closed port: once the fake is gone, calls reach the network again and fail there.
    url = f"http://127.0.0.1:{closed_port()}"
    with override_settings(ETPAY={**_settings(), "API_URL": url}):
        before = get_client()
        with FakeEtpay() as etpay:
            during = get_client()
            assert during is not before
            assert during.check_payment_status(session_token="nothing") == []
            assert len(etpay.calls) == 1
        after = get_client()
        assert after is not during
        with pytest.raises(EtpayConnectionError):
            after.check_payment_status(session_token="nothing")
    assert client_module.get_default_transport() is None


def test_clients_built_directly_use_the_fake_too(fake_etpay: FakeEtpay) -> None:
    with EtpayClient() as etpay_client:
        reply = etpay_client.initialize_session(merchant_order_id="OC-9", order_amount=1000)
    assert reply["token"] == fake_etpay.last_session.token


def test_the_fake_answers_calls_from_other_threads(fake_etpay: FakeEtpay) -> None:
    replies: list[dict[str, Any]] = []

    def call() -> None:
        replies.append(get_client().initialize_session(merchant_order_id="T", order_amount=5))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len({reply["token"] for reply in replies}) == 4
    assert len(fake_etpay.sessions) == 4


def test_only_one_fake_at_a_time(fake_etpay: FakeEtpay) -> None:
    with pytest.raises(RuntimeError, match="Another FakeEtpay"):
        FakeEtpay().install()
    assert client_module.get_default_transport() is not None


def test_credentials_etpay_does_not_know_get_its_401(fake_etpay: FakeEtpay) -> None:
    # The fake knows the credentials of the ETPAY setting; a client that sends others (its
    # merchant replaced after it was built) is refused as ETpay refuses them.
    with EtpayClient() as etpay_client:
        etpay_client.merchant = dataclasses.replace(
            etpay_client.merchant, merchant_api_token="someone-elses-token"
        )
        with pytest.raises(EtpayHTTPError) as initialize:
            etpay_client.initialize_session(merchant_order_id="OC-1", order_amount=1000)
        with pytest.raises(EtpayHTTPError) as status:
            etpay_client.check_payment_status(session_token="tok")
    assert initialize.value.status_code == status.value.status_code == 401
    assert initialize.value.etpay_message == "Invalid merchant credentials."
    assert not initialize.value.outcome_unknown
    assert fake_etpay.sessions == []


def test_etpay_refusing_the_shops_credentials_leaves_an_error_row(
    fake_etpay: FakeEtpay,
) -> None:
    fake_etpay.fail_next(status=401, message="Invalid merchant credentials.")
    with pytest.raises(EtpayHTTPError) as caught:
        initialize_session("OC-1", 1000)
    row = PaymentSession.objects.get(pk=caught.value.session_id)
    assert (row.status, row.error_code, row.outcome_unknown) == (Status.ERROR, "http_error", False)
    assert "Invalid merchant credentials." in row.error


def test_merchant_aliases_are_accepted_with_their_own_credentials(
    fake_etpay: FakeEtpay,
) -> None:
    outlet = {
        "MERCHANT_CODE": "cl_outlet",
        "MERCHANT_API_TOKEN": "outlet-token-" + "o" * 20,
        "API_URL": "https://api.etpay.test",
        "PMT_URL": "https://pmt.etpay.test",
    }
    with override_settings(ETPAY={**_settings(), "MERCHANTS": {"outlet": outlet}}):
        session = initialize_session("OC-OUT", 2500, merchant="outlet")
        fake_etpay.pay(session)
        assert fake_etpay.last_session.merchant_code == "cl_outlet"
        assert fake_etpay.last_session.merchant_alias == "outlet"
        # The default account's token does not see the outlet's payments.
        assert get_client().check_payment_status(merchant_order_id="OC-OUT") == []
        assert len(get_client("outlet").check_payment_status(merchant_order_id="OC-OUT")) == 1


@pytest.mark.parametrize(
    ("fault", "error", "outcome_unknown", "code"),
    [
        ({"error": "timeout"}, EtpayTimeoutError, True, "timeout"),
        ({"error": "connect_timeout"}, EtpayTimeoutError, False, "timeout"),
        ({"error": "refused"}, EtpayConnectionError, False, "connection"),
        ({"error": "broken"}, EtpayConnectionError, True, "connection"),
        ({"error": "not_json"}, EtpayResponseError, True, "bad_response"),
        ({"status": 503}, EtpayHTTPError, True, "http_error"),
        ({"status": 400, "message": "order_amount invalid"}, EtpayHTTPError, False, "http_error"),
    ],
)
def test_fail_next_makes_the_next_call_fail_like_etpay_would(
    fake_etpay: FakeEtpay,
    fault: dict[str, Any],
    error: type[Exception],
    outcome_unknown: bool,
    code: str,
) -> None:
    fake_etpay.fail_next("initialize", **fault)
    with pytest.raises(error) as caught:
        initialize_session("OC-F", 1000)
    row = PaymentSession.objects.get(pk=caught.value.session_id)  # type: ignore[attr-defined]
    assert (row.status, row.error_code, row.outcome_unknown) == (
        Status.ERROR,
        code,
        outcome_unknown,
    )
    if "message" in fault:
        assert "order_amount invalid" in row.error
    # One fault, one call: the next call succeeds.
    assert initialize_session("OC-F", 1000).status == Status.PENDING


def test_faults_queue_per_endpoint(fake_etpay: FakeEtpay) -> None:
    fake_etpay.fail_next("status", status=500)
    fake_etpay.fail_next("status", error="timeout")
    session = initialize_session("OC-Q", 1000)
    with pytest.raises(EtpayHTTPError):
        reconcile_session(session)
    with pytest.raises(EtpayTimeoutError):
        reconcile_session(session)
    assert reconcile_session(session)[0].reason == Reason.UNKNOWN_TO_ETPAY


def test_a_fault_for_one_session_waits_for_a_query_about_it(fake_etpay: FakeEtpay) -> None:
    first = initialize_session("OC-S1", 1000)
    second = initialize_session("OC-S2", 1000)
    fake_etpay.fail_next("status", status=500, session=second)
    fake_etpay.fail_next("status", error="timeout")
    # The fault without a session is met by the next call, about any session...
    with pytest.raises(EtpayTimeoutError):
        reconcile_session(first)
    # ... the other only by a query about its own.
    assert reconcile_session(first)[0].reason == Reason.UNKNOWN_TO_ETPAY
    with pytest.raises(EtpayHTTPError):
        reconcile_session(second)
    assert reconcile_session(second)[0].reason == Reason.UNKNOWN_TO_ETPAY
    assert fake_etpay.status_queries == [first.token, first.token, second.token, second.token]


def test_a_fault_for_a_session_given_as_a_token_or_a_fake_session(fake_etpay: FakeEtpay) -> None:
    session = initialize_session("OC-S3", 1000)
    fake_etpay.fail_next("status", status=502, session=str(session.token))
    fake_etpay.fail_next("status", status=503, session=fake_etpay.session(session))
    for status in (502, 503):
        with pytest.raises(EtpayHTTPError) as caught:
            reconcile_session(session)
        assert caught.value.status_code == status
    assert reconcile_session(session)[0].reason == Reason.UNKNOWN_TO_ETPAY


def test_an_interrupt_raises_keyboard_interrupt_while_the_call_is_on_the_wire(
    fake_etpay: FakeEtpay,
) -> None:
    session = initialize_session("OC-INT", 1000)
    fake_etpay.fail_next("status", error="interrupt", session=session)
    with pytest.raises(KeyboardInterrupt):
        reconcile_session(session)
    assert fake_etpay.status_queries == [session.token]  # the question had left
    assert reconcile_session(session)[0].reason == Reason.UNKNOWN_TO_ETPAY


def test_status_queries_lists_only_status_calls_by_session_token(fake_etpay: FakeEtpay) -> None:
    session = initialize_session("OC-SQ", 1000)
    assert fake_etpay.status_queries == []
    get_client().check_payment_status(merchant_order_id="OC-SQ")
    reconcile_session(session)
    assert fake_etpay.status_queries == ["", session.token]
    assert len(fake_etpay.calls) == 3  # the initialize call is not a status query


def test_a_fault_for_a_session_is_for_status_queries_about_a_token(fake_etpay: FakeEtpay) -> None:
    with pytest.raises(ValueError, match='endpoint="status" only'):
        fake_etpay.fail_next("initialize", status=500, session="sess-1")
    with pytest.raises(ValueError, match="no token"):
        fake_etpay.fail_next("status", status=500, session=make_session(token=None))


def test_fail_next_refuses_unclear_faults(fake_etpay: FakeEtpay) -> None:
    with pytest.raises(ValueError, match="either error or status"):
        fake_etpay.fail_next()
    with pytest.raises(ValueError, match="either error or status"):
        fake_etpay.fail_next(error="timeout", status=500)
    with pytest.raises(ValueError, match="error must be one of"):
        fake_etpay.fail_next(error="slow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="endpoint must be one of"):
        fake_etpay.fail_next("refund", status=500)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="HTTP status"):
        fake_etpay.fail_next(status=42)


# -- FakeEtpay: results -------------------------------------------------------------------------


def test_pay_and_notify_completes_the_payment_once(etpay_session: PaymentSession) -> None:
    etpay = _installed()
    with signal_mocks() as received:
        jwt_text = etpay.pay(etpay_session)
        response = etpay.notify(etpay_session)
        assert response.status_code == 200
        # Inside the test's transaction: the on-commit signal ran all the same.
        received["payment_completed"].assert_called_once()
        repeat = etpay.notify(etpay_session)
        assert repeat.status_code == 200
        received["payment_completed"].assert_called_once()
    session = refresh(etpay_session)
    assert session.status == Status.PAID
    assert session.payment_token == etpay.session(session).payment_token
    webhook = session.notifications.order_by("pk").first()
    assert webhook is not None
    assert (webhook.channel, webhook.outcome) == ("webhook", Outcome.ACCEPTED)
    assert webhook.raw_body == jwt_text


def test_reject_and_notify_fails_the_session(etpay_session: PaymentSession) -> None:
    etpay = _installed()
    with signal_mocks() as received:
        etpay.reject(etpay_session)
        assert etpay.notify(etpay_session).status_code == 200
        received["payment_failed"].assert_called_once()
    assert refresh(etpay_session).status == Status.FAILED


def test_a_system_error_flags_the_session(etpay_session: PaymentSession) -> None:
    etpay = _installed()
    etpay.system_error(etpay_session)
    assert etpay.notify(etpay_session).status_code == 200
    session = refresh(etpay_session)
    assert (session.status, session.needs_reconciliation) == (Status.PENDING, True)
    # ETpay's status API knows no outcome for it.
    assert reconcile_session(session)[0].reason == Reason.UNKNOWN_TO_ETPAY


def test_a_result_etpay_reports_for_another_amount_is_rejected(
    etpay_session: PaymentSession,
) -> None:
    etpay = _installed()
    etpay.pay(etpay_session, merchant_amount=1)
    assert etpay.notify(etpay_session).status_code == 400
    assert refresh(etpay_session).status == Status.PENDING


def test_a_lost_webhook_is_found_by_reconcile(etpay_session: PaymentSession) -> None:
    etpay = _installed()
    assert reconcile_session(etpay_session)[0].reason == Reason.UNKNOWN_TO_ETPAY
    etpay.pay(etpay_session)  # ... and no notify(): the webhook never arrives
    [notification] = reconcile_session(etpay_session)
    assert (notification.channel, notification.outcome) == ("poll", Outcome.ACCEPTED)
    assert refresh(etpay_session).status == Status.PAID
    assert etpay.calls[-1].path == "/merchant/check_payment_status"
    assert etpay.calls[-1].body == {
        "merchant_api_token": "[redacted]",
        "session_token": etpay_session.token,
    }


def test_status_entries_look_like_etpays_and_filter(fake_etpay: FakeEtpay) -> None:
    paid = initialize_session("OC-S1", 1000)
    failed = initialize_session("OC-S2", 2000)
    initialize_session("OC-S3", 3000)  # pending: not a payment yet
    fake_etpay.pay(paid)
    fake_etpay.reject(failed)
    status_client = get_client()
    assert [e["merchant_order_id"] for e in status_client.check_payment_status("x")] == []
    [entry] = status_client.check_payment_status(merchant_order_id="OC-S1")
    assert entry["payment_status"] is True
    assert entry["merchant_amount"] == 1000
    assert "iat" not in entry
    assert len(entry["payment_date"]) == len("31-01-2022 18:07:34")
    [by_payment] = status_client.check_payment_status(payment_token=entry["payment_token"])
    assert by_payment["session_token"] == paid.token
    [rejected] = status_client.check_payment_status(session_token=failed.token)
    assert rejected["payment_status"] is False
    assert status_client.check_payment_status(merchant_order_id="OC-S3") == []
    with pytest.raises(ValueError, match="Only a paid or failed"):
        fake_etpay.status_entry(fake_etpay.last_session)


def test_return_url_brings_the_payer_back_through_the_return_view(
    fake_etpay: FakeEtpay, client: Client, rf: Any
) -> None:
    session = initialize_session("OC-R", 4990, request=rf.get("/", HTTP_HOST="shop.example"))
    fake_etpay.pay(session)
    url = fake_etpay.return_url(session)
    assert url.startswith("http://shop.example/etpay/return/?jwt=")
    response = client.get(url.removeprefix("http://shop.example"))
    assert response.status_code == 200
    assert refresh(session).status == Status.PAID
    assert refresh(session).notifications.get().channel == "redirect"


def test_return_url_uses_the_cancellation_url_and_concat(fake_etpay: FakeEtpay) -> None:
    session = initialize_session(
        "OC-C",
        1000,
        payment_completed_url="https://shop.example/ok?order=OC-C",
        payment_cancellation_url="https://shop.example/ko?order=OC-C",
    )
    token = fake_etpay.reject(session)
    assert fake_etpay.return_url(session) == f"https://shop.example/ko?order=OC-C&jwt={token}"


def test_sessions_the_fake_never_opened_are_adopted(fake_etpay: FakeEtpay) -> None:
    session = make_session()
    fake = fake_etpay.session(session)
    assert isinstance(fake, FakeSession)
    assert fake_etpay.session(session.token or "") is fake
    fake_etpay.pay(session)
    assert fake_etpay.notify(session).status_code == 200
    assert refresh(session).status == Status.PAID
    with pytest.raises(LookupError):
        fake_etpay.session("no-such-token")


def test_an_unsettled_session_cannot_be_delivered(etpay_session: PaymentSession) -> None:
    etpay = _installed()
    with pytest.raises(ValueError, match="not settled"):
        etpay.notify(etpay_session)
    with pytest.raises(ValueError, match="not settled"):
        etpay.return_url(etpay_session)


def test_last_session_needs_a_session() -> None:
    with pytest.raises(LookupError):
        _ = FakeEtpay().last_session


# -- helpers ----------------------------------------------------------------------------------


def _settings() -> dict[str, Any]:
    from django.conf import settings

    return dict(settings.ETPAY)


def _installed() -> FakeEtpay:
    """The FakeEtpay the ``fake_etpay`` fixture installed (through ``etpay_session``)."""
    transport = client_module.get_default_transport()
    assert transport is not None
    fake: FakeEtpay = transport.fake  # type: ignore[attr-defined]
    return fake


def test_the_plugin_loads_before_django_is_set_up() -> None:
    # ``-p django_etpay.testing.pytest_plugin`` imports it before pytest-django configures
    # Django: nothing may touch the app registry at import.
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", "import django_etpay.testing.pytest_plugin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
