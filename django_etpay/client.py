"""HTTP access to ETpay's API, and nothing else.

:class:`EtpayClient` owns one ``requests.Session``. A call to ETpay:

1. is given a total deadline, ``ETPAY["TOTAL_TIMEOUT"]``, from its start;
2. is sent, and sent again only while the connection never opened (nothing was written),
   up to ``ETPAY["CONNECT_RETRIES"]`` more times;
3. reads its reply through a reader that gives every socket read the read timeout or the time
   left, whichever is shorter, and fails once no time is left; requests' own timeouts bound
   each read, not the call, so a server dripping bytes would otherwise hold it indefinitely;
4. refuses a reply over ``ETPAY["MAX_RESPONSE_BYTES"]``;
5. maps every failure to an :class:`~django_etpay.exceptions.EtpayAPIError` subclass in one
   place (:meth:`EtpayClient._map_exception`), saying whether ETpay may have acted.

No request body is ever logged: bodies carry ``merchant_api_token``.

:func:`get_client` hands out one shared client per merchant account and process, so that calls
reuse kept-alive TCP and TLS connections; it is rebuilt when the ``ETPAY`` setting changes,
closed at exit and never carried across ``fork()``.
"""

from __future__ import annotations

import atexit
import contextvars
import http.client
import io
import json
import logging
import os
import socket
import ssl
import threading
import time
import weakref
from contextlib import suppress
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
from django.core.signals import setting_changed
from django.views.decorators.debug import sensitive_variables
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProxyError, ReadTimeoutError
from urllib3.poolmanager import ProxyManager

from django_etpay import __version__, conf
from django_etpay.exceptions import (
    EtpayAPIError,
    EtpayConfigurationError,
    EtpayConnectionError,
    EtpayHTTPError,
    EtpayResponseError,
    EtpayTimeoutError,
)

logger = logging.getLogger("django_etpay.client")

INITIALIZE_PATH = "/session/initialize"
CHECK_STATUS_PATH = "/merchant/check_payment_status"

#: Longest ``token`` / ``signature_token`` accepted: the size of the columns that store them.
MAX_TOKEN_LENGTH = 255

USER_AGENT = f"django-etpay/{__version__} python-requests/{requests.__version__}"

#: Seconds to wait before the n-th connect retry is ``RETRY_BACKOFF * n``.
RETRY_BACKOFF = 0.1


# -- the limits of the call in progress, applied to our own connections -------------------------


@dataclass(frozen=True)
class _Limits:
    """What the connections of one call must respect; see :data:`_current_call`."""

    deadline: float  # time.monotonic() value
    read_timeout: float
    keepalive_idle: float

    def left(self) -> float:
        return self.deadline - time.monotonic()


#: Set by :meth:`EtpayClient._post` for the duration of a call. requests runs the call in the
#: caller's thread, so the connection code below reads the limits of its own call from here.
_current_call: contextvars.ContextVar[_Limits | None] = contextvars.ContextVar(
    "django_etpay_call", default=None
)


class _ReadsWithinDeadline(io.RawIOBase):
    """The socket reads of one reply, each given ``min(read timeout, time left)``.

    A read that finds no time left raises ``TimeoutError``, as a timed-out socket read does,
    so urllib3 and requests report it as a read timeout. The status line and headers are read
    through here too: http.client reads them before requests returns the response, so a check
    between body chunks alone could not cut a server that drips its headers.
    """

    def __init__(self, sock: socket.socket, limits: _Limits) -> None:
        super().__init__()
        self._sock = sock
        # The socket's own unbuffered file: it counts as an open file of the socket, so a
        # close-delimited reply stays readable after the connection drops the socket.
        self._raw = sock.makefile("rb", buffering=0)
        self._limits = limits

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._limits.left()
        if left <= 0:
            raise TimeoutError("the total deadline of the call has passed")
        self._sock.settimeout(min(self._limits.read_timeout, left))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _SocketForReply:
    """What :class:`_ReplyWithinDeadline` hands http.client instead of the socket.

    ``http.client.HTTPResponse`` uses its socket for one thing only, ``makefile("rb")``.
    """

    def __init__(self, sock: socket.socket, limits: _Limits) -> None:
        self._sock = sock
        self._limits = limits

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_ReadsWithinDeadline(self._sock, self._limits))


class _ReplyWithinDeadline(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        limits = _current_call.get()
        if limits is not None:
            sock = _SocketForReply(sock, limits)  # type: ignore[assignment]
        super().__init__(sock, *args, **kwargs)


#: Every connection this process opened to ETpay, so that a forked child can close its copies.
_open_connections: weakref.WeakSet[HTTPConnection] = weakref.WeakSet()
_open_connections_lock = threading.Lock()


class _ConnectionMixin:
    """Our connections: replies read within the deadline, an idle limit, tracked for fork.

    The idle limit: urllib3 already replaces a pooled connection the server has closed (it
    asks :attr:`is_connected` before reuse), so nothing is sent twice. What it cannot see is a
    server closing the idle connection just as the request is being written; that request's
    outcome would be unknown. Servers close idle connections after a few seconds (5 s is
    common) and ETpay does not publish its limit, so a connection whose last call started more
    than ``KEEPALIVE_IDLE`` seconds ago is reported as gone, and urllib3 opens a new one.
    """

    response_class: type[http.client.HTTPResponse] = _ReplyWithinDeadline
    _last_request: float | None = None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        with _open_connections_lock:
            _open_connections.add(self)  # type: ignore[arg-type]

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._last_request = time.monotonic()
        super().request(*args, **kwargs)  # type: ignore[misc]

    @property
    def is_connected(self) -> bool:
        limits = _current_call.get()
        if (
            limits is not None
            and self._last_request is not None
            and time.monotonic() - self._last_request > limits.keepalive_idle
        ):
            return False
        return bool(super().is_connected)  # type: ignore[misc]


class _Connection(_ConnectionMixin, HTTPConnection):
    pass


class _TLSConnection(_ConnectionMixin, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


_POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {"http": _Pool, "https": _TLSPool}


class _Adapter(HTTPAdapter):
    """requests' adapter, with pools of our connections (also through an HTTP(S) proxy).

    A SOCKS proxy keeps its own connection classes (without them the call would bypass the
    proxy): there the deadline is checked between the chunks of the body only.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, ProxyManager):
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


def _verify_setting() -> str | bool:
    """What requests' ``verify`` gets: ``CA_BUNDLE``, else the usual environment variables."""
    bundle = conf.get_setting("CA_BUNDLE")
    if bundle:
        if not isinstance(bundle, str | os.PathLike) or not os.path.exists(bundle):
            raise EtpayConfigurationError(
                'ETPAY["CA_BUNDLE"] must be the path of a CA bundle file or directory that exists.'
            )
        return os.fspath(bundle)
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


# -- the client ---------------------------------------------------------------------------------


class EtpayClient:
    """Client for ETpay's session API, built from one merchant account's settings.

    ``EtpayClient()`` uses the default account; ``EtpayClient("alias")`` one from
    ``ETPAY["MERCHANTS"]``. Raises :class:`~django_etpay.exceptions.EtpayConfigurationError`
    when a credential is missing.

    ``transport`` is a requests transport adapter that carries the calls instead of the
    network (a test double, say). Retries, the deadline between body chunks, the size cap and
    the error mapping apply to it; connection pooling and TLS are its own business. Without
    it, the client uses :func:`set_default_transport`'s, else the network.

    A client may be used from several threads at once. :func:`get_client` hands out one
    shared client per account and process, which is what the services use. Build one yourself
    (and close it, e.g. with ``with``) when you want connections of your own.
    """

    def __init__(self, merchant: str | None = None, *, transport: BaseAdapter | None = None):
        self.merchant = conf.get_merchant(merchant)
        self.timeout = conf.get_timeout()
        self.total_timeout = float(conf.get_setting("TOTAL_TIMEOUT"))
        self.max_response_bytes = int(conf.get_setting("MAX_RESPONSE_BYTES"))
        self.connect_retries = int(conf.get_setting("CONNECT_RETRIES"))
        self.pool_size = max(1, int(conf.get_setting("POOL_SIZE")))
        self.keepalive_idle = float(conf.get_setting("KEEPALIVE_IDLE"))
        self.verify = _verify_setting()
        self.transport = transport if transport is not None else _default_transport
        self.session = self._new_session()
        with _all_clients_lock:
            _all_clients.add(self)

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        # The environment (proxy and CA bundle variables, ~/.netrc) is read once here rather
        # than by requests on every call; the credentials travel in the body, so netrc has
        # nothing to add.
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(self.merchant.api_url)
        session.verify = self.verify
        # Calls are independent: a shared client must not carry one caller's cookies to another.
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        adapter = self.transport or _Adapter(
            max_retries=0,  # retries are decided in _post, where it is known what was sent
            pool_connections=4,
            pool_maxsize=self.pool_size,
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def __repr__(self) -> str:
        return f"<EtpayClient merchant={self.merchant.alias or 'default'!r}>"

    def close(self) -> None:
        """Close pooled connections. The client stays usable: a later call opens new ones."""
        self.session.close()

    def __enter__(self) -> EtpayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @sensitive_variables("body")
    def initialize_session(
        self, *, merchant_order_id: str, order_amount: int, **optional: Any
    ) -> dict[str, Any]:
        """``POST /session/initialize``; returns ETpay's decoded reply.

        Only optional fields whose value is not ``None`` are sent. The reply is checked to
        carry non-empty ``token`` and ``signature_token`` strings, else
        :class:`~django_etpay.exceptions.EtpayResponseError` is raised.
        """
        body: dict[str, Any] = {
            "merchant_code": self.merchant.merchant_code,
            "merchant_api_token": self.merchant.merchant_api_token,
            "merchant_order_id": merchant_order_id,
            "order_amount": order_amount,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        reply = self._post(INITIALIZE_PATH, body)
        if not isinstance(reply, dict):
            raise _bad_reply("ETpay's reply to session/initialize is not a JSON object.")
        # A token must be storable and usable as a key: printable text (no NUL, no control
        # character, no lone surrogate), and no longer than its column.
        keys = ("token", "signature_token")
        missing = [
            k
            for k in keys
            if not isinstance(reply.get(k), str) or not reply[k] or not reply[k].isprintable()
        ]
        if missing:
            raise _bad_reply(
                f"ETpay's reply to session/initialize lacks a usable {', '.join(missing)}."
            )
        too_long = [k for k in keys if len(reply[k]) > MAX_TOKEN_LENGTH]
        if too_long:
            raise _bad_reply(
                f"ETpay's reply to session/initialize has a {', '.join(too_long)} longer than "
                f"{MAX_TOKEN_LENGTH} characters."
            )
        return reply

    @sensitive_variables("body")
    def check_payment_status(
        self,
        session_token: str | None = None,
        merchant_order_id: str | None = None,
        payment_token: str | None = None,
    ) -> list[dict[str, Any]]:
        """``POST /merchant/check_payment_status``; returns the list of payments ETpay knows.

        At least one filter is required (``ValueError`` otherwise). ETpay documents a JSON
        array; a single object is accepted too and returned as a one-item list.
        """
        filters = {
            "session_token": session_token,
            "merchant_order_id": merchant_order_id,
            "payment_token": payment_token,
        }
        given = {key: value for key, value in filters.items() if value}
        if not given:
            raise ValueError(
                "check_payment_status needs session_token, merchant_order_id or payment_token."
            )
        body: dict[str, Any] = {"merchant_api_token": self.merchant.merchant_api_token, **given}
        reply = self._post(CHECK_STATUS_PATH, body)
        if isinstance(reply, dict):
            reply = [reply]
        if not isinstance(reply, list) or not all(isinstance(item, dict) for item in reply):
            raise EtpayResponseError(
                "ETpay's reply to check_payment_status is not a list of objects.",
                status_code=200,
            )
        return reply

    # -- transport ---------------------------------------------------------------------------

    @sensitive_variables("body", "data")
    def _post(self, path: str, body: dict[str, Any]) -> Any:
        data = json.dumps(body, separators=(",", ":")).encode()
        started = time.monotonic()
        limits = _Limits(started + self.total_timeout, self.timeout[1], self.keepalive_idle)
        token = _current_call.set(limits)
        try:
            attempt = 0
            while True:
                try:
                    status, content = self._send(path, data, limits)
                    break
                except requests.RequestException as err:
                    # Sent again only when nothing was written: a repeated session/initialize
                    # could open a second session for the same order.
                    if not (
                        attempt < self.connect_retries
                        and _never_opened(err)
                        and limits.left() > RETRY_BACKOFF * (attempt + 1)
                    ):
                        raise self._map_exception(err, limits, path) from None
                attempt += 1
                logger.info("Could not connect to ETpay %s; trying again (%d)", path, attempt)
                time.sleep(RETRY_BACKOFF * attempt)
        finally:
            _current_call.reset(token)
        logger.info(
            "ETpay %s answered %s in %.0f ms (%d bytes)",
            path,
            status,
            (time.monotonic() - started) * 1000,
            len(content),
        )
        return self._decode(path, status, content)

    @sensitive_variables("data")
    def _send(self, path: str, data: bytes, limits: _Limits) -> tuple[int, bytes]:
        """One attempt: the status and the body, read in chunks within the limits."""
        left = max(limits.left(), 0.001)  # requests refuses a timeout of 0
        connect, read = self.timeout
        response = self.session.post(
            f"{self.merchant.api_url}{path}",
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=(min(connect, left), min(read, left)),
            stream=True,
            allow_redirects=False,
        )
        with response:
            cap = self.max_response_bytes
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > cap:
                raise _too_large(response.status_code, cap)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(chunk_size=8192):
                size += len(chunk)
                if size > cap:
                    raise _too_large(response.status_code, cap)
                # Our connections already cut reads at the deadline; this covers transports
                # that do not (a SOCKS proxy, a test transport).
                if limits.left() <= 0:
                    raise _DeadlinePassed
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)

    def _map_exception(
        self, err: requests.RequestException, limits: _Limits, path: str
    ) -> EtpayAPIError:
        # Messages name the endpoint and the failure kind only: never the body.
        never_opened = _never_opened(err)
        if _certificate_refused(err):
            return EtpayConnectionError(
                f"ETpay's TLS certificate could not be verified ({path}); nothing was sent. "
                'Set ETPAY["CA_BUNDLE"] if ETpay\'s certificate chains to a private authority.',
                outcome_unknown=False,
            )
        if isinstance(err, requests.ConnectTimeout):
            return EtpayTimeoutError(
                f"Timed out connecting to ETpay {path}.", outcome_unknown=False
            )
        if never_opened:
            return EtpayConnectionError(
                f"Could not connect to ETpay {path}.", outcome_unknown=False
            )
        if limits.left() <= 0:
            return EtpayTimeoutError(
                f"ETpay {path} did not complete within {self.total_timeout:g} s.",
                outcome_unknown=True,
            )
        # A read timeout is a ReadTimeout while the head is read, and a ConnectionError wrapping
        # urllib3's ReadTimeoutError while the body is.
        if isinstance(err, requests.ReadTimeout) or isinstance(_reason(err), ReadTimeoutError):
            return EtpayTimeoutError(
                f"ETpay {path} did not answer within {self.timeout[1]:g} s.",
                outcome_unknown=True,
            )
        if isinstance(err, requests.ConnectionError):
            return EtpayConnectionError(
                f"The connection to ETpay {path} broke before a reply arrived.",
                outcome_unknown=True,
            )
        return EtpayConnectionError(
            f"Request to ETpay {path} failed ({type(err).__name__}).", outcome_unknown=True
        )

    def _decode(self, path: str, status_code: int, content: bytes) -> Any:
        try:
            payload: Any = json.loads(content.decode("utf-8")) if content else None
        except (UnicodeDecodeError, ValueError):
            payload = None
        if not 200 <= status_code < 300:
            etpay_message = None
            if isinstance(payload, dict) and isinstance(payload.get("message"), str):
                etpay_message = self._scrub(payload["message"])[:500]
            detail = f": {etpay_message}" if etpay_message else ""
            raise EtpayHTTPError(
                f"ETpay {path} answered HTTP {status_code}{detail}",
                status_code=status_code,
                etpay_message=etpay_message,
                # A 5xx (or an unexpected redirect) does not say whether ETpay acted.
                outcome_unknown=status_code >= 500 or status_code < 400,
            )
        if payload is None:
            raise _bad_reply(
                f"ETpay {path} answered HTTP {status_code} with a body that is not JSON.",
                status_code=status_code,
            )
        return payload

    def _scrub(self, text: str) -> str:
        """Remove the API token from text that came back from ETpay (it may echo input)."""
        secret = self.merchant.merchant_api_token
        return text.replace(secret, "[redacted]") if secret else text


class _DeadlinePassed(requests.RequestException):
    """The deadline passed between two chunks of the body (mapped like a cut read)."""


def _bad_reply(message: str, *, status_code: int = 200) -> EtpayResponseError:
    return EtpayResponseError(message, status_code=status_code, outcome_unknown=True)


def _too_large(status_code: int, cap: int) -> EtpayResponseError:
    return EtpayResponseError(
        f"ETpay's reply is larger than {cap} bytes.",
        status_code=status_code,
        outcome_unknown=not 400 <= status_code < 500,
    )


def _reason(err: requests.RequestException) -> object:
    """The urllib3 error behind a requests error, unwrapped from retries and proxies."""
    reason: object = err.args[0] if err.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    if isinstance(reason, ProxyError):
        reason = reason.original_error
    return reason


def _never_opened(err: requests.RequestException) -> bool:
    """True when the call failed before the request could be written: safe to send again."""
    return isinstance(err, requests.ConnectTimeout) or isinstance(
        _reason(err), NewConnectionError | ConnectionRefusedError
    )


def _certificate_refused(err: BaseException) -> bool:
    """True when the TLS handshake failed on the server's certificate: nothing was sent.

    Other TLS errors (an abrupt end of the stream while reading the reply, say) may come after
    the request was written, so only a failed certificate check counts.
    """
    seen: set[int] = set()
    pending: list[object] = [err]
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        if isinstance(item, ssl.SSLCertVerificationError):
            return True
        seen.add(id(item))
        pending.extend(item.args)
        pending.extend((getattr(item, "reason", None), item.__cause__, item.__context__))
    return False


# -- one shared client per merchant account and process ------------------------------------------

#: The transport of clients built without one; ``None``: the network.
_default_transport: BaseAdapter | None = None

#: Every client alive in this process (shared or not), so that a forked child can renew them.
_all_clients: weakref.WeakSet[EtpayClient] = weakref.WeakSet()
_all_clients_lock = threading.Lock()

_shared_lock = threading.Lock()
_shared: dict[tuple[Any, ...], EtpayClient] = {}


def set_default_transport(transport: BaseAdapter | None) -> None:
    """Send the calls of every client built from now on without a ``transport`` through this
    one (``None``: the network again), the shared clients of :func:`get_client` included.

    For stand-ins of ETpay that serve a whole process, such as
    :class:`django_etpay.testing.FakeEtpay`. The shared clients are closed, so that the next
    :func:`get_client` builds one with it; clients built earlier keep their transport.
    """
    global _default_transport
    _default_transport = transport
    close_clients()


def get_default_transport() -> BaseAdapter | None:
    """The transport :func:`set_default_transport` set; ``None`` while calls use the network."""
    return _default_transport


def _settings_key(merchant: str | None) -> tuple[Any, ...]:
    """Everything a client is built from: a change in any of it calls for a new client."""
    config = conf.get_config()
    return (
        conf.get_merchant(merchant),
        conf.get_timeout(),
        *(config[key] for key in ("TOTAL_TIMEOUT", "MAX_RESPONSE_BYTES", "CONNECT_RETRIES")),
        *(config[key] for key in ("POOL_SIZE", "KEEPALIVE_IDLE", "CA_BUNDLE")),
    )


def get_client(merchant: str | None = None) -> EtpayClient:
    """The shared :class:`EtpayClient` of merchant account ``merchant`` in this process.

    ``None`` is the default account, an alias one of ``ETPAY["MERCHANTS"]``. The client keeps
    its connections to ETpay alive between calls and may be used from any thread. It is built
    on first use, replaced by a new one when the settings it was built from change, closed at
    interpreter exit, and never shared with a forked child process. Do not close it yourself;
    :func:`close_clients` does that for every shared client. Raises
    :class:`~django_etpay.exceptions.EtpayConfigurationError` like ``EtpayClient``.
    """
    key = _settings_key(merchant)
    client = _shared.get(key)
    if client is not None:
        return client
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            client = _shared[key] = EtpayClient(merchant)
    return client


def close_clients() -> None:
    """Close and forget every shared client of this process.

    The next :func:`get_client` builds new ones. Runs at interpreter exit and when the
    ``ETPAY`` setting changes; call it yourself e.g. after rotating ETpay's credentials by
    other means than settings.
    """
    with _shared_lock:
        clients = list(_shared.values())
        _shared.clear()
    for client in clients:
        with suppress(Exception):
            client.close()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "ETPAY":
        close_clients()


setting_changed.connect(_on_setting_changed, dispatch_uid="django_etpay.client.close_clients")
atexit.register(close_clients)


def _after_fork_in_child() -> None:
    """Start the child with no connection or lock of its parent.

    The child's copies of the parent's sockets are closed (``detach`` then ``os.close``: no
    ``shutdown()``, no TLS alert, so the parent's connections carry on unharmed); every client
    gets a new session, so no pool lock a parent thread held at fork time is ever waited on.
    """
    global _all_clients_lock, _open_connections_lock, _shared_lock
    _all_clients_lock, _open_connections_lock = threading.Lock(), threading.Lock()
    for connection in list(_open_connections):
        sock, connection.sock = connection.sock, None
        if sock is not None:
            with suppress(OSError, AttributeError):  # AttributeError: TLS inside a TLS proxy
                os.close(sock.detach())
    _open_connections.clear()
    for client in list(_all_clients):
        client.session = client._new_session()
    _shared_lock = threading.Lock()
    _shared.clear()


if hasattr(os, "register_at_fork"):  # POSIX only; Windows has no fork()
    os.register_at_fork(after_in_child=_after_fork_in_child)
