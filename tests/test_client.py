"""EtpayClient: what goes on the wire, and how every failure is mapped.

Field-level and status tests fake ETpay with ``responses``; transport tests (refused
connections, silent or dripping servers, oversized replies, connection reuse, retries) run
against real servers on 127.0.0.1 from :mod:`tests.httpfakes`.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from typing import Any

import pytest
import requests
import responses as responses_lib
from django.conf import settings as django_settings
from pytest_django import Settings as SettingsWrapper
from requests.adapters import BaseAdapter
from responses import matchers

from django_etpay import __version__
from django_etpay import client as client_module
from django_etpay import transport as transport_module
from django_etpay.client import EtpayClient, get_default_transport
from django_etpay.exceptions import (
    EtpayAPIError,
    EtpayConfigurationError,
    EtpayConnectionError,
    EtpayHTTPError,
    EtpayResponseError,
    EtpayTimeoutError,
)
from django_etpay.testing import FakeEtpay
from django_etpay.transport import CallLimits, EtpayAdapter
from tests import httpfakes
from tests.httpfakes import sent_json

API = "https://api.etpay.test"
INIT_URL = f"{API}/session/initialize"
STATUS_URL = f"{API}/merchant/check_payment_status"
TOKEN = django_settings.TEST_MERCHANT_API_TOKEN
REPLY = {"token": "sess-tok-1", "signature_token": "sig-secret-1", "terms_url": "https://t.test"}


def point_at(settings: SettingsWrapper, url: str, **overrides: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "API_URL": url, **overrides}


# -- what is sent ------------------------------------------------------------------------------


def test_initialize_sends_credentials_and_required_fields_only(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)

    reply = EtpayClient().initialize_session(merchant_order_id="OC-1", order_amount=5000)

    assert reply == REPLY
    assert sent_json(mocked_responses) == {
        "merchant_code": "cl_sandbox_tests",
        "merchant_api_token": TOKEN,
        "merchant_order_id": "OC-1",
        "order_amount": 5000,
    }


def test_initialize_sends_every_optional_field_as_given(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)
    optional = {
        "customer_email": "payer@example.cl",
        "metadata": [{"name": "Cuenta", "value": "30.215", "show": True}],
        "user_bank_code": "cl_estado",
        "user_rut": "123456785",
        "is_rut_block": True,
        "payment_completed_url": "https://shop.test/ok",
        "payment_cancellation_url": "https://shop.test/cancel",
        "payment_webhook_url": "https://shop.test/hook",
    }

    EtpayClient().initialize_session(merchant_order_id="OC-2", order_amount=1, **optional)

    body = sent_json(mocked_responses)
    for key, value in optional.items():
        assert body[key] == value, key
    assert set(body) == {
        *optional,
        "merchant_code",
        "merchant_api_token",
        "merchant_order_id",
        "order_amount",
    }


def test_initialize_leaves_out_fields_that_are_none(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(INIT_URL, json=REPLY)

    EtpayClient().initialize_session(
        merchant_order_id="OC-3",
        order_amount=10,
        customer_email=None,
        user_rut=None,
        is_rut_block=False,
        payment_webhook_url="https://shop.test/hook",
    )

    body = sent_json(mocked_responses)
    assert "customer_email" not in body
    assert "user_rut" not in body
    # False is a value, not an absence.
    assert body["is_rut_block"] is False
    assert body["payment_webhook_url"] == "https://shop.test/hook"


def test_headers_name_the_app_and_declare_json(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(
        INIT_URL,
        json=REPLY,
        match=[matchers.header_matcher({"Content-Type": "application/json"})],
    )

    EtpayClient().initialize_session(merchant_order_id="OC-4", order_amount=10)

    headers = mocked_responses.calls[0].request.headers
    assert headers["User-Agent"].startswith(f"django-etpay/{__version__} ")
    assert headers["Accept"] == "application/json"


def test_every_call_carries_the_configured_timeouts(
    mocked_responses: responses_lib.RequestsMock, settings: SettingsWrapper
) -> None:
    settings.ETPAY = {**settings.ETPAY, "TIMEOUT": (3, 7)}
    mocked_responses.post(INIT_URL, json=REPLY)
    mocked_responses.post(STATUS_URL, json=[])

    client = EtpayClient()
    client.initialize_session(merchant_order_id="OC-5", order_amount=10)
    client.check_payment_status(session_token="sess-tok-1")

    assert len(mocked_responses.calls) == 2
    for call in mocked_responses.calls:
        assert call.request.req_kwargs["timeout"] == (3.0, 7.0)


def test_a_single_timeout_number_applies_to_connect_and_read(
    mocked_responses: responses_lib.RequestsMock, settings: SettingsWrapper
) -> None:
    settings.ETPAY = {**settings.ETPAY, "TIMEOUT": 4}
    mocked_responses.post(INIT_URL, json=REPLY)

    EtpayClient().initialize_session(merchant_order_id="OC-6", order_amount=10)

    assert mocked_responses.calls[0].request.req_kwargs["timeout"] == (4.0, 4.0)


@pytest.mark.parametrize(
    "api_url", ["https://gw.etpay.test/sandbox", "https://gw.etpay.test/sandbox/"]
)
def test_api_url_may_carry_a_path_prefix(
    mocked_responses: responses_lib.RequestsMock, settings: SettingsWrapper, api_url: str
) -> None:
    settings.ETPAY = {**settings.ETPAY, "API_URL": api_url}
    mocked_responses.post("https://gw.etpay.test/sandbox/session/initialize", json=REPLY)
    mocked_responses.post("https://gw.etpay.test/sandbox/merchant/check_payment_status", json=[])

    client = EtpayClient()
    client.initialize_session(merchant_order_id="OC-7", order_amount=10)
    client.check_payment_status(payment_token="pay-1")

    assert [call.request.url for call in mocked_responses.calls] == [
        "https://gw.etpay.test/sandbox/session/initialize",
        "https://gw.etpay.test/sandbox/merchant/check_payment_status",
    ]


def test_a_merchant_alias_uses_its_own_credentials_and_url(
    mocked_responses: responses_lib.RequestsMock, settings: SettingsWrapper
) -> None:
    settings.ETPAY = {
        **settings.ETPAY,
        "MERCHANTS": {
            "outlet": {
                "MERCHANT_CODE": "cl_outlet",
                "MERCHANT_API_TOKEN": "outlet-api-token",
                "API_URL": "https://outlet-api.etpay.test/v2",
                "PMT_URL": "https://outlet-pmt.etpay.test",
            }
        },
    }
    mocked_responses.post("https://outlet-api.etpay.test/v2/session/initialize", json=REPLY)

    EtpayClient("outlet").initialize_session(merchant_order_id="OC-8", order_amount=10)

    body = sent_json(mocked_responses)
    assert body["merchant_code"] == "cl_outlet"
    assert body["merchant_api_token"] == "outlet-api-token"


def test_check_payment_status_sends_only_the_filters_given(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    payments = [{"payment_token": "p1", "payment_status": "success"}, {"payment_token": "p2"}]
    mocked_responses.post(STATUS_URL, json=payments)

    result = EtpayClient().check_payment_status(merchant_order_id="OC-9")

    assert result == payments
    assert sent_json(mocked_responses) == {
        "merchant_api_token": TOKEN,
        "merchant_order_id": "OC-9",
    }


def test_check_payment_status_sends_all_three_filters(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(STATUS_URL, json=[])

    result = EtpayClient().check_payment_status(
        session_token="s", merchant_order_id="o", payment_token="p"
    )

    assert result == []
    assert sent_json(mocked_responses) == {
        "merchant_api_token": TOKEN,
        "session_token": "s",
        "merchant_order_id": "o",
        "payment_token": "p",
    }


def test_check_payment_status_needs_a_filter_and_calls_nothing_without_one(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    with pytest.raises(ValueError, match="session_token"):
        EtpayClient().check_payment_status()
    with pytest.raises(ValueError, match="session_token"):
        EtpayClient().check_payment_status(session_token="", payment_token=None)
    assert len(mocked_responses.calls) == 0


def test_check_payment_status_wraps_a_single_object_in_a_list(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(STATUS_URL, json={"payment_token": "p1"})

    assert EtpayClient().check_payment_status(payment_token="p1") == [{"payment_token": "p1"}]


@pytest.mark.parametrize("reply", [["not an object"], "text", 3, None])
def test_check_payment_status_rejects_a_reply_that_is_not_a_list_of_objects(
    mocked_responses: responses_lib.RequestsMock, reply: Any
) -> None:
    mocked_responses.post(STATUS_URL, body=json.dumps(reply))

    with pytest.raises(EtpayResponseError):
        EtpayClient().check_payment_status(payment_token="p1")


def test_client_repr_and_config_repr_hide_the_api_token() -> None:
    client = EtpayClient()

    assert TOKEN not in repr(client)
    assert TOKEN not in repr(client.merchant)
    assert "default" in repr(client)


@pytest.mark.slow
def test_the_client_as_context_manager_closes_its_connections(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    server = servers.start(httpfakes.json_server(REPLY))
    point_at(settings, server.url)

    with EtpayClient() as client:
        client.initialize_session(merchant_order_id="OC-17", order_amount=10)
        adapter = client.session.get_adapter(server.url)
        assert len(adapter.poolmanager.pools) == 1

    assert len(adapter.poolmanager.pools) == 0


def test_missing_credential_fails_at_construction(settings: SettingsWrapper) -> None:
    settings.ETPAY = {k: v for k, v in settings.ETPAY.items() if k != "API_URL"}

    with pytest.raises(EtpayConfigurationError, match=r'ETPAY\["API_URL"\]'):
        EtpayClient()


# -- how ETpay's answers are mapped ------------------------------------------------------------


def test_4xx_with_message_carries_status_and_etpay_message(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(INIT_URL, status=401, json={"message": "Invalid merchant credentials"})

    with pytest.raises(EtpayHTTPError) as info:
        EtpayClient().initialize_session(merchant_order_id="OC-10", order_amount=10)

    err = info.value
    assert err.status_code == 401
    assert err.etpay_message == "Invalid merchant credentials"
    assert "Invalid merchant credentials" in str(err)
    assert "401" in str(err)
    assert err.outcome_unknown is False
    assert err.code == "http_error"


def test_4xx_without_a_json_body_has_no_etpay_message(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(INIT_URL, status=400, body="<html>Bad request</html>")

    with pytest.raises(EtpayHTTPError) as info:
        EtpayClient().initialize_session(merchant_order_id="OC-11", order_amount=10)

    assert info.value.status_code == 400
    assert info.value.etpay_message is None
    assert info.value.outcome_unknown is False


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_leaves_the_outcome_unknown(
    mocked_responses: responses_lib.RequestsMock, status: int
) -> None:
    mocked_responses.post(INIT_URL, status=status, json={"message": "upstream"})

    with pytest.raises(EtpayHTTPError) as info:
        EtpayClient().initialize_session(merchant_order_id="OC-12", order_amount=10)

    assert info.value.status_code == status
    assert info.value.outcome_unknown is True
    # Sent once: ETpay may have acted on it.
    assert len(mocked_responses.calls) == 1


def test_a_redirect_is_an_error_and_is_not_followed(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(
        INIT_URL, status=302, headers={"Location": "https://elsewhere.test/session/initialize"}
    )

    with pytest.raises(EtpayHTTPError) as info:
        EtpayClient().initialize_session(merchant_order_id="OC-13", order_amount=10)

    assert info.value.status_code == 302
    assert info.value.outcome_unknown is True
    assert len(mocked_responses.calls) == 1


def test_etpay_message_echoing_the_api_token_is_scrubbed(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    mocked_responses.post(
        INIT_URL, status=403, json={"message": f"token {TOKEN} is not valid here"}
    )

    with pytest.raises(EtpayHTTPError) as info:
        EtpayClient().initialize_session(merchant_order_id="OC-14", order_amount=10)

    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value)
    assert info.value.etpay_message is not None
    assert TOKEN not in info.value.etpay_message
    assert "is not valid here" in info.value.etpay_message


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ("not json at all", None),
        ("", None),
        (json.dumps({"signature_token": "sig-secret-1"}), "token"),
        (json.dumps({"token": "sess-tok-1"}), "signature_token"),
        (json.dumps({"token": "", "signature_token": "sig-secret-1"}), "token"),
        (json.dumps({"token": 42, "signature_token": "sig-secret-1"}), "token"),
        (json.dumps(["sess-tok-1", "sig-secret-1"]), None),
    ],
    ids=["not-json", "empty", "no-token", "no-signature", "empty-token", "int-token", "list"],
)
def test_a_malformed_success_reply_is_a_response_error(
    mocked_responses: responses_lib.RequestsMock, body: str, missing: str | None
) -> None:
    mocked_responses.post(INIT_URL, status=200, body=body)

    with pytest.raises(EtpayResponseError) as info:
        EtpayClient().initialize_session(merchant_order_id="OC-15", order_amount=10)

    assert info.value.outcome_unknown is True
    assert info.value.code == "bad_response"
    if missing:
        assert missing in str(info.value)
    assert "sig-secret-1" not in str(info.value)


def test_tokens_up_to_the_column_size_are_accepted(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    reply = {"token": "t" * 255, "signature_token": "s" * 255}
    mocked_responses.post(INIT_URL, json=reply)

    assert EtpayClient().initialize_session(merchant_order_id="OC-16", order_amount=1) == reply


def test_every_api_error_kind_has_its_own_code() -> None:
    kinds = [EtpayTimeoutError, EtpayConnectionError, EtpayHTTPError, EtpayResponseError]
    codes = {kind.code for kind in kinds}
    assert len(codes) == len(kinds)
    assert all(issubclass(kind, EtpayAPIError) for kind in kinds)


# -- retries: counted, against real local sockets ------------------------------------------------


class CountingAdapter(EtpayAdapter):
    """The client's own network transport, counting the attempts it is asked to send."""

    def __init__(self) -> None:
        super().__init__(max_retries=0)
        self.attempts = 0
        self.timeouts: list[Any] = []

    def send(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.attempts += 1
        self.timeouts.append(kwargs.get("timeout"))
        return super().send(*args, **kwargs)


class FakeClock:
    """``time.monotonic`` and ``time.sleep`` for the client: sleeping moves the clock on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(client_module, "time", fake)
    monkeypatch.setattr(transport_module, "time", fake)
    return fake


@pytest.mark.parametrize("retries", [0, 2])
def test_a_refused_connection_is_tried_once_plus_the_retries_with_known_outcome(
    settings: SettingsWrapper, retries: int
) -> None:
    point_at(settings, f"http://127.0.0.1:{httpfakes.closed_port()}", CONNECT_RETRIES=retries)
    counting = CountingAdapter()

    with pytest.raises(EtpayConnectionError) as info:
        EtpayClient(transport=counting).initialize_session(
            merchant_order_id="OC-20", order_amount=1
        )

    assert counting.attempts == 1 + retries
    assert info.value.outcome_unknown is False
    assert info.value.code == "connection"
    assert "Could not connect" in str(info.value)


def test_retries_wait_longer_each_time_and_stop_when_the_deadline_is_near(
    settings: SettingsWrapper, clock: FakeClock
) -> None:
    point_at(settings, f"http://127.0.0.1:{httpfakes.closed_port()}", CONNECT_RETRIES=5)
    counting = CountingAdapter()

    settings.ETPAY = {**settings.ETPAY, "TOTAL_TIMEOUT": 10}
    with pytest.raises(EtpayConnectionError):
        EtpayClient(transport=counting).initialize_session(
            merchant_order_id="OC-1", order_amount=1
        )
    assert counting.attempts == 6
    assert clock.slept == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])

    # 0.1 s waited after the first attempt leaves 0.15 s: not enough for the 0.2 s wait.
    settings.ETPAY = {**settings.ETPAY, "TOTAL_TIMEOUT": 0.25}
    counting.attempts, counting.timeouts, clock.slept = 0, [], []
    with pytest.raises(EtpayConnectionError) as info:
        EtpayClient(transport=counting).initialize_session(
            merchant_order_id="OC-2", order_amount=1
        )
    assert counting.attempts == 2
    assert clock.slept == pytest.approx([0.1])
    assert info.value.outcome_unknown is False
    # Each attempt may wait only the time left, to connect and to read.
    assert counting.timeouts == [pytest.approx((0.25, 0.25)), pytest.approx((0.15, 0.15))]


@pytest.mark.slow
@pytest.mark.parametrize("retries", [0, 2])
def test_a_connect_timeout_is_retried_and_says_nothing_was_sent(
    settings: SettingsWrapper, servers: httpfakes.Servers, retries: int
) -> None:
    unreachable = servers.full_backlog()
    point_at(settings, unreachable.url, TIMEOUT=(0.3, 5), CONNECT_RETRIES=retries)
    counting = CountingAdapter()

    with pytest.raises(EtpayTimeoutError) as info:
        EtpayClient(transport=counting).initialize_session(
            merchant_order_id="OC-19", order_amount=1
        )

    assert counting.attempts == 1 + retries
    assert info.value.outcome_unknown is False
    assert "connecting" in str(info.value)


@pytest.mark.slow
def test_a_deadline_passing_while_connecting_stops_the_retries_and_says_nothing_was_sent(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    unreachable = servers.full_backlog()
    point_at(settings, unreachable.url, TIMEOUT=(0.3, 5), CONNECT_RETRIES=2, TOTAL_TIMEOUT=0.4)
    counting = CountingAdapter()

    with pytest.raises(EtpayTimeoutError) as info:
        EtpayClient(transport=counting).initialize_session(
            merchant_order_id="OC-19", order_amount=1
        )

    # Each attempt waits its whole connect timeout (0.3 s), so the 0.4 s left room for two
    # at most (the second one shortened to the time left), not the three allowed.
    assert 1 <= counting.attempts <= 2
    assert info.value.outcome_unknown is False


@pytest.mark.slow
def test_a_dropped_request_is_not_retried(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    server = servers.start(httpfakes.hang_up)
    point_at(settings, server.url, CONNECT_RETRIES=2)

    with pytest.raises(EtpayConnectionError) as info:
        EtpayClient().initialize_session(merchant_order_id="OC-31", order_amount=10)

    assert len(server.requests) == 1
    assert info.value.outcome_unknown is True
    assert "broke" in str(info.value)


# -- the total deadline -------------------------------------------------------------------------


class DrippingBody:
    """A reply body that arrives one byte per read, each read taking 0.2 s of the fake clock."""

    def __init__(self, clock: FakeClock, size: int) -> None:
        self.clock = clock
        self.left = size
        self.delivered = 0

    def read(self, amount: int = -1, **kwargs: Any) -> bytes:
        if not self.left:
            return b""
        self.clock.now += 0.2
        self.left -= 1
        self.delivered += 1
        return b" "

    def close(self) -> None:
        pass


class DrippingTransport(BaseAdapter):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.body: DrippingBody | None = None

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        response = requests.Response()
        response.status_code = 200
        response.raw = self.body = DrippingBody(self.clock, 500)
        response.request = request
        return response

    def close(self) -> None:
        pass


def test_a_dripping_body_is_cut_between_chunks_at_the_deadline(
    settings: SettingsWrapper, clock: FakeClock
) -> None:
    settings.ETPAY = {**settings.ETPAY, "TOTAL_TIMEOUT": 1.5}
    transport = DrippingTransport(clock)

    with pytest.raises(EtpayTimeoutError) as info:
        EtpayClient(transport=transport).initialize_session(
            merchant_order_id="OC-1", order_amount=1
        )

    # Eight bytes, 0.2 s each: the eighth arrived at 1.6 s, past the deadline.
    assert transport.body is not None
    assert transport.body.delivered == 8
    assert info.value.outcome_unknown is True
    assert "within 1.5 s" in str(info.value)


def test_each_socket_read_waits_at_most_the_time_left(clock: FakeClock) -> None:
    limits = CallLimits(deadline=clock.now + 1.5, read_timeout=1.0, keepalive_idle=4.0)
    ours, theirs = socket.socketpair()
    reader = io.BufferedReader(transport_module._ReadsWithinDeadline(ours, limits))
    received = b""
    timeouts: list[float | None] = []

    def next_byte() -> None:
        # The server sends one byte every 0.2 s.
        nonlocal received
        theirs.sendall(b"x")
        clock.now += 0.2
        received += reader.read1(10)
        timeouts.append(ours.gettimeout())

    try:
        for _ in range(7):
            next_byte()
        with pytest.raises(TimeoutError):
            next_byte()
    finally:
        reader.close()
        ours.close()
        theirs.close()

    assert received == b"x" * 7
    # The read timeout until less than that is left, then the time left.
    assert timeouts == pytest.approx([1.0, 1.0, 0.9, 0.7, 0.5, 0.3, 0.1])


@pytest.mark.slow
def test_a_server_that_never_answers_is_a_read_timeout_with_unknown_outcome(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    server = servers.start(httpfakes.silent)
    point_at(settings, server.url, TIMEOUT=(1, 0.5), TOTAL_TIMEOUT=10)

    with pytest.raises(EtpayTimeoutError) as info:
        EtpayClient().initialize_session(merchant_order_id="OC-21", order_amount=10)

    assert info.value.outcome_unknown is True
    # The read timeout ended it, not the total deadline.
    assert "did not answer within 0.5 s" in str(info.value)
    assert len(server.requests) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("in_body", "declared"),
    [(False, True), (True, True), (True, False)],
    ids=["drip-head", "drip-body", "drip-body-until-close"],
)
def test_a_dripping_server_is_cut_at_the_total_deadline(
    settings: SettingsWrapper, servers: httpfakes.Servers, in_body: bool, declared: bool
) -> None:
    # One byte every 0.2 s: no read ever waits the read timeout, and the 60 bytes would take
    # 12 s. The call must end at the deadline, and at the latest one read timeout after it.
    server = servers.start(httpfakes.drip(0.2, in_body=in_body, declared=declared))
    deadline, read_timeout = 1.0, 5.0
    point_at(settings, server.url, TIMEOUT=(1, read_timeout), TOTAL_TIMEOUT=deadline)

    started = time.monotonic()
    with pytest.raises(EtpayTimeoutError) as info:
        EtpayClient().initialize_session(merchant_order_id="OC-22", order_amount=10)
    elapsed = time.monotonic() - started

    assert deadline <= elapsed < deadline + read_timeout
    assert info.value.outcome_unknown is True
    assert "within 1 s" in str(info.value)


@pytest.mark.slow
def test_headers_then_silence_is_a_read_timeout(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    server = servers.start(httpfakes.headers_then_stall)
    point_at(settings, server.url, TIMEOUT=(1, 0.5), TOTAL_TIMEOUT=10)

    with pytest.raises(EtpayTimeoutError) as info:
        EtpayClient().initialize_session(merchant_order_id="OC-23", order_amount=10)

    assert info.value.outcome_unknown is True
    assert "did not answer within 0.5 s" in str(info.value)


# -- the size cap, connections ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_a_reply_over_the_size_cap_is_a_response_error(
    settings: SettingsWrapper, servers: httpfakes.Servers, declared: bool
) -> None:
    server = servers.start(httpfakes.oversized(200_000, declared=declared))
    point_at(settings, server.url, MAX_RESPONSE_BYTES=50_000)

    with pytest.raises(EtpayResponseError, match="larger than 50000 bytes") as info:
        EtpayClient().initialize_session(merchant_order_id="OC-24", order_amount=10)

    assert info.value.outcome_unknown is True


def test_a_4xx_reply_over_the_size_cap_leaves_the_outcome_known(
    mocked_responses: responses_lib.RequestsMock, settings: SettingsWrapper
) -> None:
    settings.ETPAY = {**settings.ETPAY, "MAX_RESPONSE_BYTES": 10}
    mocked_responses.post(INIT_URL, status=400, body="x" * 11)

    with pytest.raises(EtpayResponseError, match="larger than 10 bytes") as info:
        EtpayClient().initialize_session(merchant_order_id="OC-24", order_amount=10)

    assert info.value.status_code == 400
    assert info.value.outcome_unknown is False


@pytest.mark.slow
def test_a_reply_under_the_size_cap_is_read(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    server = servers.start(httpfakes.json_server(REPLY))
    point_at(settings, server.url, MAX_RESPONSE_BYTES=len(json.dumps(REPLY)))

    assert EtpayClient().initialize_session(merchant_order_id="OC-25", order_amount=10) == REPLY


@pytest.mark.slow
def test_one_client_reuses_one_connection(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    server = servers.start(httpfakes.json_server(REPLY))
    point_at(settings, server.url)

    with EtpayClient() as client:
        client.initialize_session(merchant_order_id="OC-26", order_amount=10)
        client.initialize_session(merchant_order_id="OC-27", order_amount=10)
        client.initialize_session(merchant_order_id="OC-28", order_amount=10)

    assert len(server.requests) == 3
    assert server.connections == 1


@pytest.mark.slow
def test_two_clients_open_two_connections(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    server = servers.start(httpfakes.json_server(REPLY))
    point_at(settings, server.url)

    for order in ("OC-29", "OC-30"):
        with EtpayClient() as client:
            client.initialize_session(merchant_order_id=order, order_amount=10)

    assert server.connections == 2


@pytest.mark.slow
def test_a_connection_is_reused_only_within_keepalive_idle_of_its_last_request(
    settings: SettingsWrapper, servers: httpfakes.Servers, clock: FakeClock
) -> None:
    server = servers.start(httpfakes.json_server(REPLY))
    point_at(settings, server.url, KEEPALIVE_IDLE=4.0)

    with EtpayClient() as client:
        for at in (0.0, 3.9, 7.8, 12.0, 12.5):
            clock.now = 1000.0 + at
            client.initialize_session(merchant_order_id="OC-1", order_amount=10)

    # 12.0 is 4.2 s after the request at 7.8: a new connection; the others were reused.
    assert len(server.requests) == 5
    assert server.connections == 2


# -- an explicit transport, and secrets --------------------------------------------------------


def test_a_transport_given_to_the_client_wins_over_the_default_one(
    fake_etpay: FakeEtpay, settings: SettingsWrapper
) -> None:
    point_at(settings, f"http://127.0.0.1:{httpfakes.closed_port()}", CONNECT_RETRIES=0)
    counting = CountingAdapter()

    with pytest.raises(EtpayConnectionError):
        EtpayClient(transport=counting).check_payment_status(session_token="s")

    assert counting.attempts == 1
    assert fake_etpay.calls == []
    assert EtpayClient().transport is get_default_transport()


def test_no_log_line_or_error_carries_the_api_token(
    settings: SettingsWrapper, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    point_at(settings, f"http://127.0.0.1:{httpfakes.closed_port()}", CONNECT_RETRIES=1)

    with pytest.raises(EtpayConnectionError) as info:
        EtpayClient().initialize_session(merchant_order_id="OC-1", order_amount=1)

    assert "trying again" in caplog.text
    assert TOKEN not in caplog.text
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True
