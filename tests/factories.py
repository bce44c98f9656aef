"""Test data: sessions with known secrets, and JWTs signed the way ETpay signs them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import jwt
from django.db import connection, connections
from django.db.models.signals import pre_save
from django.dispatch import Signal
from django.test import Client

from django_etpay import signals
from django_etpay.models import Notification, PaymentSession

T = TypeVar("T")

FIXTURES = Path(__file__).parent / "fixtures"

#: A key no session was given: a JWT signed with it must be rejected.
WRONG_KEY = "a-key-nobody-was-given-0123456789abcdefghijklmnop"
#: The app's views, as tests/urls.py mounts django_etpay.urls.
NOTIFICATION_URL = "/etpay/notification/"
RETURN_URL = "/etpay/return/"
WIDGET_URL = "/etpay/widget-result/"
#: The CSRF secret of :func:`tests.conftest.csrf_client`'s cookie: send it as
#: ``HTTP_X_CSRFTOKEN`` or ``csrfmiddlewaretoken`` to pass Django's CSRF check.
CSRF_SECRET = "A" * 16 + "b" * 16
#: ETpay's API, at the API_URL of tests/settings.py.
INIT_URL = "https://api.etpay.test/session/initialize"
STATUS_URL = "https://api.etpay.test/merchant/check_payment_status"

#: Every spelling of ``payment_status`` ETpay may use, and what it must mean, written out here
#: rather than read from the code under test. A success spelling is money that moved; mapping
#: any failure spelling to success would mark unpaid orders paid.
SUCCESS_SPELLINGS: list[Any] = [True, "success", "true"]
FAILURE_SPELLINGS: list[Any] = [
    False,
    "false",
    "failure",
    "failed",
    "fail",
    "error",
    "rejected",
    "declined",
    "cancelled",
    "canceled",
]

#: A public key, as an attacker would use it for an RS256/HS256 confusion attempt.
PUBLIC_KEY_PEM = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    b"-----END PUBLIC KEY-----\n"
)

#: Pass as a claim value to leave that claim out of the payload.
DROP: Any = object()

_counter = itertools.count(1)


def make_session(**overrides: Any) -> PaymentSession:
    """Create a ``pending`` session with ETpay tokens of known, unique values.

    ``signature_token`` is 68 characters (PyJWT warns under 32 bytes, 64 for HS512);
    ``token`` is long enough to serve as the key of a system-error JWT too.
    """
    n = next(_counter)
    values: dict[str, Any] = {
        "merchant": "",
        "environment": "sandbox",
        "merchant_order_id": f"OC-{n:06d}",
        "order_amount": 50000,
        "currency": "CLP",
        "customer_email": "payer@example.com",
        "token": f"sess-{secrets.token_hex(20)}",
        "signature_token": f"sig-{secrets.token_hex(32)}",
        "status": PaymentSession.Status.PENDING,
    }
    values.update(overrides)
    return PaymentSession.objects.create(**values)


def mint_payment_claims(session: PaymentSession, **overrides: Any) -> dict[str, Any]:
    """The payload ETpay sends for ``session`` (a success), with ``overrides`` applied.

    A claim set to :data:`DROP` is removed.
    """
    claims: dict[str, Any] = {
        "session_token": session.token,
        "merchant_account_bank": "cl_estado",
        "merchant_account_type": "cuenta_vista",
        "merchant_account": "19687526",
        "merchant_name": "Sandbox Developer Merchant",
        "merchant_currency": "CLP",
        "merchant_order_id": session.merchant_order_id,
        "merchant_amount": session.order_amount,
        "user_bank": "Banco de prueba",
        "user_rut": "111111111",
        "user_account": "Cuenta Corriente 12345678",
        "payment_token": f"pay-{(session.token or '')[-12:]}",
        "payment_status": True,
        "payment_process": "auto",
        "iat": int(time.time()),
    }
    for key, value in overrides.items():
        if value is DROP:
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


def status_entry(session: PaymentSession, **overrides: Any) -> dict[str, Any]:
    """An entry of ETpay's status API reporting ``session`` paid, with ``overrides`` applied."""
    return {
        "session_token": session.token,
        "merchant_order_id": session.merchant_order_id,
        "merchant_amount": session.order_amount,
        "merchant_currency": "CLP",
        "payment_token": f"pay-{session.pk}",
        "payment_status": "success",
        **overrides,
    }


def sign(
    claims: dict[str, Any],
    key: str,
    *,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    """Encode ``claims`` as a JWT signed with ``key``."""
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def mint_jwt(
    session: PaymentSession,
    *,
    key: str | None = None,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    """A result JWT for ``session``, signed with its ``signature_token`` unless ``key``."""
    return sign(
        mint_payment_claims(session, **claims),
        key if key is not None else session.signature_token,
        algorithm=algorithm,
    )


def mint_system_error_jwt(session: PaymentSession, *, key: str | None = None) -> str:
    """ETpay's system-error JWT: ``{session_token, system_error, iat}`` signed with the
    session token (or ``key``)."""
    claims = {"session_token": session.token, "system_error": True, "iat": int(time.time())}
    return sign(claims, key if key is not None else (session.token or ""))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_jws(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A JWT assembled by hand, for headers PyJWT refuses to produce."""
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)]
    )


def hmac_jws(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """A hand-made HS256 JWT signed with arbitrary key bytes (e.g. a public-key PEM)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def tamper(token: str, **changes: Any) -> str:
    """``token`` with its payload edited and its original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def load_fixture(name: str, session: PaymentSession, **overrides: Any) -> dict[str, Any]:
    """An ETpay payload shape from ``tests/fixtures``, filled in for ``session``."""
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    fill: dict[str, Any] = {
        "{session_token}": session.token,
        "{merchant_order_id}": session.merchant_order_id,
        "{merchant_amount}": session.order_amount,
        "{iat}": int(time.time()),
    }
    for key, value in data.items():
        if isinstance(value, str) and value in fill:
            data[key] = fill[value]
    data.update(overrides)
    return data


@contextmanager
def failing_session_saves(message: str = "database went away") -> Iterator[None]:
    """Make every change of a ``PaymentSession``'s fields raise, as a lost database would.

    Both ways the library changes a session fail: a model ``save()`` and a queryset
    ``update()`` of its fields. The storage budget's counter (``stored_*``) still moves, so
    that the failure itself can be recorded.
    """

    def explode(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError(message)

    def explode_sql(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if _SESSION_CHANGE.match(sql):
            raise RuntimeError(message)
        return execute(sql, params, many, context)

    uid = f"tests-explode-{id(explode)}"
    pre_save.connect(explode, sender=PaymentSession, weak=False, dispatch_uid=uid)
    try:
        with connection.execute_wrapper(explode_sql):
            yield
    finally:
        assert pre_save.disconnect(sender=PaymentSession, dispatch_uid=uid)


_SESSION_CHANGE = re.compile(
    rf'^UPDATE "{PaymentSession._meta.db_table}" SET "(?!stored_)'  # noqa: S608
)


#: Every signal of django_etpay.signals, in the order the module defines them: the payment
#: signals and the refund ledger's (``refund_requested``, ``refund_completed``,
#: ``refund_failed``) alike, so that one fixture serves every test of a signal.
SIGNAL_NAMES: tuple[str, ...] = tuple(
    name for name, value in vars(signals).items() if isinstance(value, Signal)
)


def _receiver(sender: Any, **kwargs: Any) -> None:
    """Signature the receiver mocks copy."""


@contextmanager
def signal_mocks() -> Iterator[dict[str, mock.MagicMock]]:
    """Connect one autospec mock receiver per django_etpay signal (:data:`SIGNAL_NAMES`),
    keyed by signal name; disconnect on exit."""
    connected: list[tuple[Signal, str]] = []
    receivers: dict[str, mock.MagicMock] = {}
    try:
        for name in SIGNAL_NAMES:
            signal: Signal = getattr(signals, name)
            receiver = mock.create_autospec(_receiver)
            uid = f"tests-{name}-{id(receiver)}"
            signal.connect(receiver, weak=False, dispatch_uid=uid)
            connected.append((signal, uid))
            receivers[name] = receiver
        yield receivers
    finally:
        for signal, uid in connected:
            signal.disconnect(dispatch_uid=uid)


def deliver(raw: str, channel: str = Notification.Channel.WEBHOOK) -> Notification:
    """``process_notification`` as the notification view calls it, from a documentation address."""
    from django_etpay import services

    return services.process_notification(raw, channel=channel, remote_addr="203.0.113.9")


#: A request from a test client, as :func:`deliver_together` sends it.
Send = Callable[[Client], Any]


def webhook(raw: str) -> Send:
    """ETpay's webhook delivering ``raw``."""
    body = json.dumps({"payment": raw})
    return lambda client: client.post(NOTIFICATION_URL, body, content_type="application/json")


def redirect(raw: str) -> Send:
    """The payer's browser returning with ``raw``."""
    return lambda client: client.get(RETURN_URL, {"jwt": raw})


def widget(raw: str) -> Send:
    """The widget posting ``raw``."""
    body = json.dumps({"payment": raw})
    return lambda client: client.post(WIDGET_URL, body, content_type="application/json")


def run_together(
    calls: list[Callable[[], T]], *, aliases: Iterable[str] = ("default",)
) -> list[T]:
    """Run each call in its own thread, all released at once; return what each returned.

    Each thread opens its connections to ``aliases`` before the start, so that the race is on
    the row lock, not on connecting, and closes them when done. An error in any thread, or a
    thread still running after a minute, fails the test.
    """
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def worker(index: int, call: Callable[[], T]) -> None:
        try:
            for alias in aliases:
                connections[alias].ensure_connection()
            barrier.wait(timeout=30)
            results[index] = call()
        except BaseException as err:  # reported by the assertion below
            errors.append(err)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=worker, args=(i, call), daemon=True)
        for i, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a delivery hung"
    assert not errors, errors
    return results


def deliver_together(senders: list[Send], *, aliases: Iterable[str] = ("default",)) -> list[int]:
    """Send each request from its own thread and test client, all at once (see
    :func:`run_together`); return the status codes."""
    client_calls = [lambda send=send: int(send(Client()).status_code) for send in senders]
    return run_together(client_calls, aliases=aliases)
