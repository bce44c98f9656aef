"""The shared, kept-alive ETpay client: reuse, threads, settings changes, fork, exit, TLS.

Every test here runs against real servers on 127.0.0.1 (:mod:`tests.httpfakes`) that count
the connections they accept, because what is under test is what happens on the wire.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.test import override_settings
from pytest_django import Settings as SettingsWrapper

from django_etpay import client as client_module
from django_etpay import conf
from django_etpay import transport as transport_module
from django_etpay.client import EtpayClient, close_clients, get_client
from django_etpay.exceptions import (
    EtpayConfigurationError,
    EtpayConnectionError,
    EtpayTimeoutError,
)
from django_etpay.models import Notification, PaymentSession
from django_etpay.services import initialize_session, reconcile_session
from tests import httpfakes
from tests.factories import make_session

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TLS = Path(__file__).parent / "fixtures" / "tls"
REPLY = {"token": "sess-tok-1", "signature_token": "sig-secret-1"}


@pytest.fixture(autouse=True)
def fresh_shared_clients() -> Iterator[None]:
    close_clients()
    yield
    close_clients()


def point_at(settings: SettingsWrapper, url: str, **overrides: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "API_URL": url, **overrides}


def init(client: EtpayClient, order: str) -> dict[str, Any]:
    return client.initialize_session(merchant_order_id=order, order_amount=10)


def counting_json_server(log: list[tuple[int, str]]) -> httpfakes.Handler:
    """Keep-alive JSON server that logs (connection number, merchant_order_id) per request."""
    numbers = iter(range(1, 1000))
    lock = threading.Lock()

    def handler(conn: socket.socket, server: httpfakes.RawServer) -> None:
        with lock:
            number = next(numbers)
        while (request := httpfakes.read_request(conn, server)) is not None:
            order = httpfakes.request_json(request).get("merchant_order_id", "status")
            with lock:
                log.append((number, order))
            reply = {"token": f"tok-{order}", "signature_token": f"sig-{order}"}
            conn.sendall(httpfakes.http_response(json.dumps(reply).encode()))

    return handler


# -- one client per account and process, reused ------------------------------------------------


def test_get_client_returns_one_client_per_merchant_account(settings: SettingsWrapper) -> None:
    settings.ETPAY = {
        **settings.ETPAY,
        "MERCHANTS": {
            "outlet": {
                "MERCHANT_CODE": "cl_outlet",
                "MERCHANT_API_TOKEN": "outlet-api-token",
                "API_URL": "https://outlet-api.etpay.test",
                "PMT_URL": "https://outlet-pmt.etpay.test",
            }
        },
    }
    seen: list[EtpayClient] = []
    threads = [threading.Thread(target=lambda: seen.append(get_client())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(found is seen[0] for found in seen)
    assert get_client() is seen[0]
    assert get_client(None) is seen[0]
    outlet = get_client("outlet")
    assert outlet is not seen[0]
    assert outlet is get_client("outlet")
    assert outlet.merchant.merchant_code == "cl_outlet"
    with pytest.raises(EtpayConfigurationError, match="'nope'"):
        get_client("nope")


def test_many_calls_share_one_connection(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    server = servers.start(httpfakes.json_server(REPLY))
    point_at(settings, server.url)

    for n in range(20):
        assert init(get_client(), f"OC-{n}") == REPLY

    assert len(server.requests) == 20
    assert server.connections == 1


def test_many_calls_share_one_tls_connection(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS / "server.pem", TLS / "server.key")
    server = servers.start(httpfakes.json_server(REPLY), tls=context)
    point_at(settings, server.url, CA_BUNDLE=str(TLS / "ca.pem"))

    for n in range(10):
        assert init(get_client(), f"OC-{n}") == REPLY

    assert server.url.startswith("https://")
    assert len(server.requests) == 10
    assert server.connections == 1


def test_an_untrusted_certificate_is_refused_and_nothing_was_sent(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS / "server.pem", TLS / "server.key")
    server = servers.start(httpfakes.json_server(REPLY), tls=context)
    point_at(settings, server.url, CONNECT_RETRIES=2)

    with pytest.raises(EtpayConnectionError, match="certificate") as info:
        init(get_client(), "OC-1")

    assert info.value.outcome_unknown is False
    assert server.requests == []


def test_a_ca_bundle_that_does_not_exist_is_a_configuration_error(
    settings: SettingsWrapper, tmp_path: Path
) -> None:
    point_at(settings, "https://api.etpay.test", CA_BUNDLE=str(tmp_path / "missing.pem"))

    with pytest.raises(EtpayConfigurationError, match=r'ETPAY\["CA_BUNDLE"\]'):
        get_client()


@pytest.mark.django_db
def test_a_client_that_cannot_be_built_leaves_no_session_row(
    settings: SettingsWrapper, tmp_path: Path
) -> None:
    point_at(settings, "https://api.etpay.test", CA_BUNDLE=str(tmp_path / "missing.pem"))

    with pytest.raises(EtpayConfigurationError, match=r'ETPAY\["CA_BUNDLE"\]'):
        initialize_session("OC-1", 1000)

    assert not PaymentSession.objects.exists()


@pytest.mark.django_db
def test_initialize_session_and_reconcile_session_use_the_shared_connection(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    log: list[tuple[int, str]] = []
    server = servers.start(counting_json_server(log))
    point_at(settings, server.url)

    for n in range(5):
        session = initialize_session(f"OC-{n}", 1000)
        assert session.status == PaymentSession.Status.PENDING
    # The reply of check_payment_status is an object naming no session: nothing to apply,
    # only the trace that ETpay knows nothing of it.
    [trace] = reconcile_session(make_session())
    assert trace.reason == Notification.Reason.UNKNOWN_TO_ETPAY

    assert len(server.requests) == 6
    assert server.connections == 1


def test_a_call_starts_no_thread(settings: SettingsWrapper, servers: httpfakes.Servers) -> None:
    server = servers.start(httpfakes.json_server(REPLY))
    point_at(settings, server.url)
    client = get_client()
    init(client, "OC-0")
    started: list[threading.Thread] = []
    original_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread)
        original_start(thread)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threading.Thread, "start", counting_start)
        for n in range(1, 30):
            init(client, f"OC-{n}")

    assert started == []


def test_concurrent_calls_each_keep_their_own_deadline(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    # The call with the later deadline starts first; the one with the earlier deadline starts
    # while it runs, ends first, and does not cut the other short.
    slow = servers.start(httpfakes.drip(0.2, in_body=False))
    point_at(settings, slow.url, TIMEOUT=(1, 5), TOTAL_TIMEOUT=2.5)
    long_client = EtpayClient()
    point_at(settings, slow.url, TIMEOUT=(1, 5), TOTAL_TIMEOUT=0.6)
    short_client = EtpayClient()
    elapsed: dict[str, float] = {}
    errors: dict[str, BaseException] = {}
    finished: list[str] = []

    def call(name: str, client: EtpayClient) -> None:
        started = time.monotonic()
        try:
            init(client, name)
        except EtpayTimeoutError as err:
            errors[name] = err
        elapsed[name] = time.monotonic() - started
        finished.append(name)

    long_thread = threading.Thread(target=call, args=("long", long_client))
    long_thread.start()
    assert _wait_until(lambda: len(slow.requests) == 1)
    short_thread = threading.Thread(target=call, args=("short", short_client))
    short_thread.start()
    short_thread.join(10)
    long_thread.join(10)

    assert finished == ["short", "long"]
    assert "within 0.6 s" in str(errors["short"])
    assert "within 2.5 s" in str(errors["long"])
    assert elapsed["short"] >= 0.6
    assert elapsed["long"] >= 2.5
    long_client.close()
    short_client.close()


def _wait_until(condition: Any, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


# -- many threads, one client ---------------------------------------------------------------------


def test_many_threads_share_one_client_safely(
    settings: SettingsWrapper, servers: httpfakes.Servers, caplog: pytest.LogCaptureFixture
) -> None:
    server = servers.start(httpfakes.echo_order)
    point_at(settings, server.url, POOL_SIZE=16)
    client = get_client()
    threads_count, calls = 16, 25
    barrier = threading.Barrier(threads_count)
    mismatches: list[str] = []
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        barrier.wait(timeout=10)
        for n in range(calls):
            order = f"T{index}-{n}"
            try:
                reply = init(client, order)
            except BaseException as err:  # reported below, with the thread's other results
                failures.append(err)
                continue
            if reply != {"token": f"tok-{order}", "signature_token": f"sig-{order}"}:
                mismatches.append(order)

    caplog.set_level(logging.WARNING, logger="urllib3")
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert failures == []
    assert mismatches == []
    assert len(server.requests) == threads_count * calls
    # Each connection carried many calls: at most one per thread was ever opened.
    assert 1 <= server.connections <= threads_count
    assert not [r for r in caplog.records if "discarding connection" in r.getMessage()]


def test_cookies_from_etpay_are_never_sent_back(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    def cookie_setter(conn: socket.socket, server: httpfakes.RawServer) -> None:
        while httpfakes.read_request(conn, server) is not None:
            conn.sendall(
                httpfakes.http_response(
                    json.dumps(REPLY).encode(),
                    extra_headers={"Set-Cookie": "caller=first; Path=/"},
                )
            )

    server = servers.start(cookie_setter)
    point_at(settings, server.url)

    init(get_client(), "OC-1")
    init(get_client(), "OC-2")

    assert len(server.requests) == 2
    assert b"\r\ncookie:" not in server.requests[1].lower()
    assert len(get_client().session.cookies) == 0


# -- settings changes ---------------------------------------------------------------------------


def test_a_settings_change_gives_a_fresh_client(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    first_server = servers.start(httpfakes.json_server(REPLY))
    second_server = servers.start(httpfakes.json_server(REPLY))
    point_at(settings, first_server.url)
    first = get_client()
    init(first, "OC-1")

    point_at(settings, second_server.url, TIMEOUT=(1, 2))
    second = get_client()
    init(second, "OC-2")

    assert second is not first
    assert second.merchant.api_url == second_server.url
    assert second.timeout == (1.0, 2.0)
    assert len(first_server.requests) == 1
    assert len(second_server.requests) == 1
    # The replaced client was closed: the first server saw its connection end.
    assert first_server.wait_closed(1)


def test_override_settings_gives_a_fresh_client_inside_and_after(
    settings: SettingsWrapper,
) -> None:
    before = get_client()

    with override_settings(ETPAY={**settings.ETPAY, "API_URL": "https://inside.etpay.test"}):
        inside = get_client()

    after = get_client()
    assert inside is not before
    assert inside.merchant.api_url == "https://inside.etpay.test"
    assert after is not inside
    assert after.merchant.api_url == before.merchant.api_url


def test_a_changed_setting_is_picked_up_even_without_the_signal() -> None:
    before = get_client()

    # The cached configuration changes in place: no setting_changed signal is sent.
    with mock.patch.dict(conf.get_config(), {"TOTAL_TIMEOUT": 7.0}):
        changed = get_client()

    assert changed is not before
    assert changed.total_timeout == 7.0
    assert get_client() is before


# -- connections the server closed, or that sat idle ---------------------------------------------


def test_a_kept_alive_connection_closed_by_the_server_is_replaced_before_sending(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    def one_reply_then_close(conn: socket.socket, server: httpfakes.RawServer) -> None:
        # Answers like a keep-alive server, then closes the idle connection.
        if httpfakes.read_request(conn, server) is not None:
            conn.sendall(httpfakes.http_response(json.dumps(REPLY).encode()))

    server = servers.start(one_reply_then_close)
    point_at(settings, server.url, CONNECT_RETRIES=0)
    client = get_client()

    init(client, "OC-1")
    assert server.wait_closed(1)
    assert init(client, "OC-2") == REPLY

    # The second request went out once, on a new connection: nothing was written onto the
    # closed one, so nothing had to be retried.
    assert [httpfakes.request_json(r)["merchant_order_id"] for r in server.requests] == [
        "OC-1",
        "OC-2",
    ]
    assert server.connections == 2


def test_a_request_read_by_the_server_on_a_reused_connection_is_never_retried(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    def answer_once_then_hang_up(conn: socket.socket, server: httpfakes.RawServer) -> None:
        if httpfakes.read_request(conn, server) is not None:
            conn.sendall(httpfakes.http_response(json.dumps(REPLY).encode()))
        # The next request arrives on the kept-alive connection and is dropped unanswered.
        httpfakes.read_request(conn, server)

    server = servers.start(answer_once_then_hang_up)
    point_at(settings, server.url, CONNECT_RETRIES=2)
    client = get_client()
    init(client, "OC-1")

    with pytest.raises(EtpayConnectionError) as info:
        init(client, "OC-2")

    assert info.value.outcome_unknown is True
    assert [httpfakes.request_json(r)["merchant_order_id"] for r in server.requests] == [
        "OC-1",
        "OC-2",
    ]
    assert server.connections == 1


def test_a_connection_idle_longer_than_keepalive_idle_is_closed_not_reused(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    server = servers.start(httpfakes.json_server(REPLY))
    point_at(settings, server.url, KEEPALIVE_IDLE=0)
    client = get_client()

    for n in range(3):
        init(client, f"OC-{n}")

    assert server.connections == 3
    # The client closed each idle connection itself (the server never closes them).
    assert server.wait_closed(2)


# -- proxies ------------------------------------------------------------------------------------


def test_a_proxy_from_the_environment_is_used_and_the_deadline_holds_through_it(
    settings: SettingsWrapper, servers: httpfakes.Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = servers.start(httpfakes.json_server(REPLY))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    point_at(settings, "http://api.etpay.invalid")

    assert init(get_client(), "OC-1") == REPLY
    assert proxy.requests[0].startswith(b"POST http://api.etpay.invalid/session/initialize ")

    # The dripped reply would take 12 s: the call ends within the deadline plus one read.
    slow_proxy = servers.start(httpfakes.drip(0.2, in_body=True))
    monkeypatch.setenv("HTTP_PROXY", slow_proxy.url)
    point_at(settings, "http://api.etpay.invalid", TIMEOUT=(1, 5), TOTAL_TIMEOUT=1.0)
    started = time.monotonic()
    with pytest.raises(EtpayTimeoutError, match="within 1 s"):
        init(get_client(), "OC-2")
    assert time.monotonic() - started < 1.0 + 5


# -- processes: fork and exit --------------------------------------------------------------------

SCRIPT_SETUP = """
import json, os, sys, time
import django
from django.conf import settings
settings.configure(ETPAY={
    "MERCHANT_CODE": "cl_fork", "MERCHANT_API_TOKEN": "fork-token",
    "API_URL": sys.argv[1], "PMT_URL": "https://pmt.etpay.test",
    "TIMEOUT": (2, 8), "TOTAL_TIMEOUT": 1.0, "CONNECT_RETRIES": 0,
    "MERCHANTS": {"slow": {
        "MERCHANT_CODE": "cl_slow", "MERCHANT_API_TOKEN": "slow-token",
        "API_URL": sys.argv[2], "PMT_URL": "https://pmt.etpay.test"}},
})
"""

FORK_SCRIPT = (
    SCRIPT_SETUP
    + """
from django_etpay.client import get_client
from django_etpay.exceptions import EtpayTimeoutError

parent = get_client()
parent.initialize_session(merchant_order_id="parent-1", order_amount=10)
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    report = {}
    try:
        child = get_client()
        report["same_client"] = child is parent
        report["reply"] = child.initialize_session(merchant_order_id="child-1", order_amount=10)
        started = time.monotonic()
        try:
            get_client("slow").initialize_session(merchant_order_id="child-slow", order_amount=1)
        except EtpayTimeoutError:
            report["deadline_cut_after"] = time.monotonic() - started
    except BaseException as err:
        report["error"] = repr(err)
    os.write(write_end, json.dumps(report).encode())
    os._exit(0)
os.waitpid(pid, 0)
child_report = json.loads(os.read(read_end, 65536))
parent.initialize_session(merchant_order_id="parent-2", order_amount=10)
print(json.dumps(child_report))
"""
)


def run_script(script: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(  # noqa: S603 - argv built by the test itself
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def test_a_forked_child_gets_its_own_connection_and_leaves_the_parents_alone(
    servers: httpfakes.Servers,
) -> None:
    log: list[tuple[int, str]] = []
    server = servers.start(counting_json_server(log))
    slow = servers.start(httpfakes.drip(0.2, in_body=False))

    result = run_script(FORK_SCRIPT, server.url, slow.url)

    assert result.returncode == 0, result.stderr
    child = json.loads(result.stdout)
    assert "error" not in child, child
    assert child["same_client"] is False
    assert child["reply"]["token"] == "tok-child-1"
    # The child keeps its deadline of 1 s (plus at most one read timeout of 8 s) against a
    # server that would drip for 12 s.
    assert 1.0 <= child["deadline_cut_after"] < 1.0 + 8
    # The parent's connection (1) carried both of the parent's calls; the child opened its
    # own (2), and closing its copy of the parent's socket did not break the parent's.
    assert sorted(log) == [(1, "parent-1"), (1, "parent-2"), (2, "child-1")]
    assert server.connections == 2


EXIT_SCRIPT = (
    """
import atexit, sys, threading, weakref
sys.path.insert(0, ".")
from tests import httpfakes

server = httpfakes.RawServer(httpfakes.json_server({"token": "t", "signature_token": "s"}))
server.start()

# urllib3's pool finalizers close idle connections too, but only when weakref.finalize's own
# exit hook runs, and that hook is registered by whichever module made the first finalizer.
# Make that happen first, as in most real processes, so only django_etpay's hook can run
# before the report.
weakref.finalize(server, lambda: None)

def report():
    # Registered before django_etpay is imported, so it runs after its exit handler.
    print("closed" if server.wait_closed(1, timeout=3) else "still open")

atexit.register(report)
sys.argv[1:] = [server.url, server.url]
"""
    + SCRIPT_SETUP.replace("import json, os, sys, time\n", "")
    + """
from django_etpay.client import get_client
get_client().initialize_session(merchant_order_id="exit-1", order_amount=10)
assert server.connections == 1
"""
)


def test_the_fork_hooks_close_inherited_sockets_and_renew_every_session(
    settings: SettingsWrapper, servers: httpfakes.Servers
) -> None:
    server = servers.start(httpfakes.json_server(REPLY))
    point_at(settings, server.url)
    client = get_client()
    init(client, "OC-1")
    session = client.session

    # What a forked child runs first, run here as if this process were that child.
    transport_module._after_fork_in_child()
    client_module._after_fork_in_child()

    # This process held the only copy of the socket: closing it ended the connection.
    assert server.wait_closed(1)
    assert client.session is not session
    assert get_client() is not client
    init(client, "OC-2")
    assert server.connections == 2


def test_shared_connections_are_closed_at_interpreter_exit() -> None:
    result = run_script(EXIT_SCRIPT)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "closed"
