"""HTTP access to ETpay's API, and nothing else.

:class:`EtpayClient` owns one ``requests.Session``, sends JSON bodies with a User-Agent naming
this app, applies ``ETPAY["TIMEOUT"]`` to every socket operation and ``ETPAY["TOTAL_TIMEOUT"]``
to the whole call, caps the size of replies, and maps every failure to an
:class:`~django_etpay.exceptions.EtpayAPIError` subclass in one place. It never logs a request
body: bodies carry ``merchant_api_token``.

:func:`get_client` returns the one shared client of a merchant account in this process, so
that calls reuse kept-alive TCP and TLS connections instead of paying both handshakes on every
call. Shared clients are safe to use from many threads, are replaced when the ``ETPAY``
setting changes, are closed at interpreter exit, and are never carried across ``fork()``: a
forked process (a gunicorn worker, a task worker) starts with fresh clients and closes its
copies of the parent's sockets without touching the parent's connections.

The total deadline of every call is kept by one watchdog thread per process, which holds the
deadlines of all calls in flight in a heap and shuts down the socket of a call whose deadline
passes.
"""

from __future__ import annotations

import atexit
import contextvars
import heapq
import itertools
import json
import logging
import os
import socket
import ssl
import threading
import time
import weakref
from contextlib import suppress
from http.cookiejar import CookiePolicy
from typing import Any

import requests
from django.core.signals import setting_changed
from django.views.decorators.debug import sensitive_variables
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError, NewConnectionError, ReadTimeoutError
from urllib3.poolmanager import PoolManager, ProxyManager
from urllib3.util.retry import Retry

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


# -- the total deadline of a call --------------------------------------------------------------


class _Deadline:
    """Cuts the socket of one call when its total deadline passes.

    requests' timeouts bound each socket read, not the whole call: a server that sends one
    byte every few seconds keeps a call alive indefinitely. The process's watchdog shuts the
    socket down at the deadline, which wakes the blocked read at once.
    """

    __slots__ = ("_lock", "_sock", "expired", "finished", "seconds", "when")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.when = time.monotonic() + seconds
        self.expired = False
        # Set when the call has ended; read without the lock by the watchdog, which only uses
        # it to drop the entry early (``_expire`` re-checks it under the lock).
        self.finished = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            # Keep the socket itself: on a close-delimited reply http.client drops
            # ``connection.sock`` while the body is still being read from it.
            self._sock = getattr(connection, "sock", None)
            if self.expired:
                self._shutdown()

    def _expire(self) -> None:
        with self._lock:
            # A call that has ended may already have handed its kept-alive connection to
            # another call: never touch its socket then.
            if self.finished:
                return
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        sock = self._sock
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Deadline:
        _watchdog.schedule(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.finished = True
            self._sock = None


class _Watchdog:
    """One thread per process that expires the deadlines of the calls in flight.

    Deadlines wait in a heap ordered by time. A call that ends marks its deadline finished;
    finished entries are dropped when they reach the top of the heap, or all at once when
    they outnumber the live ones, so the heap stays proportional to the calls in flight.
    The thread starts with the first call and is started again in a forked child.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._sequence = itertools.count()
        self._compact_at = 64
        self._thread: threading.Thread | None = None

    def schedule(self, deadline: _Deadline) -> None:
        entry = (deadline.when, next(self._sequence), deadline)
        with self._condition:
            heap = self._heap
            if len(heap) >= self._compact_at:
                heap[:] = [item for item in heap if not item[2].finished]
                heapq.heapify(heap)
                self._compact_at = max(64, 2 * len(heap))
            heapq.heappush(heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="django-etpay-deadlines", daemon=True
                )
                self._thread.start()
            elif heap[0] is entry:
                # The new deadline is the nearest: wake the thread to sleep less.
                self._condition.notify()

    def pending(self) -> int:
        """Deadlines of calls still in flight (for tests: it must fall back to zero)."""
        with self._condition:
            return sum(1 for item in self._heap if not item[2].finished)

    def _run(self) -> None:
        while True:
            with self._condition:
                heap = self._heap
                while True:
                    while heap and heap[0][2].finished:
                        heapq.heappop(heap)
                    if not heap:
                        self._condition.wait()
                        continue
                    delay = heap[0][0] - time.monotonic()
                    if delay <= 0:
                        due = heapq.heappop(heap)[2]
                        break
                    self._condition.wait(delay)
            # Outside the heap's lock: shutting a socket down is quick, but never block
            # scheduling on it.
            due._expire()


_watchdog = _Watchdog()

_current_deadline: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar(
    "django_etpay_deadline", default=None
)


# -- connections: deadlines, idle limit, fork safety --------------------------------------------

#: Every connection this process opened to ETpay, so that a forked child can close its copies.
_open_connections: weakref.WeakSet[HTTPConnection] = weakref.WeakSet()
#: Guards the two weak sets of connections and clients (renewed in a forked child).
_tracking_lock = threading.Lock()


class _WatchedMixin:
    """Registers the connection in use with the deadline of the call running in this thread."""

    #: When the connection went back to its pool; ``None`` while it is in use or new.
    etpay_idle_since: float | None = None

    def _watch(self) -> None:
        deadline = _current_deadline.get()
        if deadline is not None:
            deadline.attach(self)  # type: ignore[arg-type]

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        with _tracking_lock:
            _open_connections.add(self)  # type: ignore[arg-type]
        self._watch()

    def request(self, *args: Any, **kwargs: Any) -> Any:
        # Reused keep-alive connections skip connect(): register them here too.
        self._watch()
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_WatchedMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedMixin, HTTPSConnection):
    pass


class _PoolMixin:
    """Closes pooled connections that sat idle too long instead of writing a POST onto them.

    urllib3 already discards a pooled connection whose peer has closed it (it polls the
    socket before reuse) and then opens a new one, so nothing is sent twice. What it cannot
    see is a server that closes the idle connection just as the request is being written;
    that request may or may not have been read, so it is not retried and its outcome is
    unknown. Servers close idle connections after a few seconds (5 s is common), and ETpay
    does not publish its limit: connections idle longer than ``KEEPALIVE_IDLE`` are closed
    before use, which keeps that race out of normal operation.
    """

    keepalive_idle: float = 0.0

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        idle_since = getattr(conn, "etpay_idle_since", None)
        if idle_since is not None:
            conn.etpay_idle_since = None
            if time.monotonic() - idle_since > self.keepalive_idle and conn.sock is not None:
                logger.debug("Closing a connection to ETpay idle for too long")
                conn.close()
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            conn.etpay_idle_since = time.monotonic()
        super()._put_conn(conn)  # type: ignore[misc]


class _WatchedHTTPPool(_PoolMixin, HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(_PoolMixin, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


def _use_watched_pools(manager: PoolManager, keepalive_idle: float) -> None:
    """Make ``manager`` build pools of watched connections with the given idle limit."""
    manager.pool_classes_by_scheme = {
        "http": type("_EtpayHTTPPool", (_WatchedHTTPPool,), {"keepalive_idle": keepalive_idle}),
        "https": type("_EtpayHTTPSPool", (_WatchedHTTPSPool,), {"keepalive_idle": keepalive_idle}),
    }


class _EtpayAdapter(HTTPAdapter):
    """HTTPAdapter whose connections honour the per-call total deadline and the idle limit.

    HTTP(S) proxy managers (``HTTPS_PROXY``...) get the same connection classes, so the
    deadline holds through such a proxy too.
    """

    def __init__(self, *, keepalive_idle: float, **kwargs: Any) -> None:
        self.keepalive_idle = keepalive_idle
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _use_watched_pools(self.poolmanager, self.keepalive_idle)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        known = proxy in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # HTTP(S) proxies only: a SOCKS manager's pools carry the SOCKS connection classes,
        # which must stay (without them the call would bypass the proxy).
        if not known and isinstance(manager, ProxyManager):
            _use_watched_pools(manager, self.keepalive_idle)
        return manager


class _NoCookies(CookiePolicy):
    """Refuses every cookie: calls to ETpay are independent, and a shared client must not
    carry state from one caller's call to another's."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: Any) -> bool:
        return False

    def path_return_ok(self, path: str, request: Any) -> bool:
        return False


def _retry_policy(connect_retries: int) -> Retry:
    # Only failures before anything was sent are retried: connect errors. A read timeout or a
    # 5xx means ETpay may have acted on the request, so the outcome is unknown and a blind
    # retry could create a second session.
    return Retry(
        total=connect_retries,
        connect=connect_retries,
        read=0,
        redirect=0,
        status=0,
        other=0,
        allowed_methods=None,
        backoff_factor=0.1,
        raise_on_status=False,
    )


def _verify_setting() -> str | bool:
    """What requests' ``verify`` gets: ``CA_BUNDLE``, else the usual environment variables."""
    bundle = conf.get_setting("CA_BUNDLE")
    if bundle:
        if not isinstance(bundle, str | os.PathLike) or not os.path.exists(bundle):
            raise EtpayConfigurationError(
                'ETPAY["CA_BUNDLE"] must be the path of a CA bundle file or directory that exists.'
            )
        return os.fspath(bundle)
    # requests reads these on every call when it trusts the environment; the client reads
    # them once instead (see EtpayClient._new_session).
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


# -- the client ---------------------------------------------------------------------------------


class EtpayClient:
    """Client for ETpay's session API, built from one merchant account's settings.

    ``EtpayClient()`` uses the default account; ``EtpayClient("alias")`` one from
    ``ETPAY["MERCHANTS"]``. Raises :class:`~django_etpay.exceptions.EtpayConfigurationError`
    when a credential is missing.

    A client may be used from several threads at once. Each one keeps its own pool of
    connections; :func:`get_client` hands out one shared client per account and process,
    which is what the services use. Build one yourself (and close it, e.g. with ``with``)
    when you want connections of your own.
    """

    def __init__(self, merchant: str | None = None) -> None:
        self.merchant = conf.get_merchant(merchant)
        self.timeout = conf.get_timeout()
        self.total_timeout = float(conf.get_setting("TOTAL_TIMEOUT"))
        self.max_response_bytes = int(conf.get_setting("MAX_RESPONSE_BYTES"))
        self.connect_retries = int(conf.get_setting("CONNECT_RETRIES"))
        self.pool_size = max(1, int(conf.get_setting("POOL_SIZE")))
        self.keepalive_idle = float(conf.get_setting("KEEPALIVE_IDLE"))
        self.verify = _verify_setting()
        self.session = self._new_session()
        with _tracking_lock:
            _all_clients.add(self)

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        # The environment (proxy variables, CA bundle variables, ~/.netrc) is read once here
        # rather than by requests on every call; ETpay's credentials travel in the body, so
        # netrc has nothing to add.
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(self.merchant.api_url)
        session.verify = self.verify
        session.cookies.set_policy(_NoCookies())
        if _test_transport is not None:
            # django_etpay.testing.FakeEtpay is installed: no call leaves the process.
            session.mount("https://", _test_transport)
            session.mount("http://", _test_transport)
            return session
        adapter = _EtpayAdapter(
            keepalive_idle=self.keepalive_idle,
            max_retries=_retry_policy(self.connect_retries),
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

    def _renew_after_fork(self) -> None:
        # The parent's session, pools and their locks stay behind untouched (a lock held by
        # a parent thread at fork time would never be released here); the child gets new
        # ones. The sockets themselves were already closed by _after_fork_in_child().
        self.session = self._new_session()

    @sensitive_variables("body")
    def initialize_session(
        self,
        *,
        merchant_order_id: str,
        order_amount: int,
        **optional: Any,
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
            raise EtpayResponseError(
                "ETpay's reply to session/initialize is not a JSON object.",
                status_code=200,
                outcome_unknown=True,
            )
        # A token must be storable and usable as a key: printable text (no NUL, no control
        # character, no lone surrogate).
        missing = [
            key
            for key in ("token", "signature_token")
            if not isinstance(reply.get(key), str)
            or not reply.get(key)
            or not reply[key].isprintable()
        ]
        if missing:
            raise EtpayResponseError(
                f"ETpay's reply to session/initialize lacks a usable {', '.join(missing)}.",
                status_code=200,
                outcome_unknown=True,
            )
        too_long = [k for k in ("token", "signature_token") if len(reply[k]) > MAX_TOKEN_LENGTH]
        if too_long:
            raise EtpayResponseError(
                f"ETpay's reply to session/initialize has a {', '.join(too_long)} longer than "
                f"{MAX_TOKEN_LENGTH} characters.",
                status_code=200,
                outcome_unknown=True,
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
        url = f"{self.merchant.api_url}{path}"
        data = json.dumps(body, separators=(",", ":")).encode()
        started = time.monotonic()
        deadline = _Deadline(self.total_timeout)
        token = _current_deadline.set(deadline)
        try:
            with deadline:
                try:
                    response = self.session.post(
                        url,
                        data=data,
                        headers={"Content-Type": "application/json"},
                        timeout=self.timeout,
                        stream=True,
                        allow_redirects=False,
                    )
                    try:
                        content = self._read_capped(response)
                    finally:
                        response.close()
                except requests.RequestException as err:
                    raise self._map_exception(err, deadline, path) from None
        finally:
            _current_deadline.reset(token)
        if deadline.expired:
            # A close-delimited reply cut at the deadline ends like a complete one.
            raise EtpayTimeoutError(
                f"ETpay {path} did not complete within {deadline.seconds:g} s.",
                outcome_unknown=True,
            )
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "ETpay %s answered %s in %.0f ms (%d bytes)",
                path,
                response.status_code,
                (time.monotonic() - started) * 1000,
                len(content),
            )
        return self._decode(path, response.status_code, content)

    def _read_capped(self, response: requests.Response) -> bytes:
        limit = self.max_response_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise EtpayResponseError(
                f"ETpay's reply is larger than {limit} bytes.",
                status_code=response.status_code,
                outcome_unknown=response.ok or response.status_code >= 500,
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=8192):
            size += len(chunk)
            if size > limit:
                raise EtpayResponseError(
                    f"ETpay's reply is larger than {limit} bytes.",
                    status_code=response.status_code,
                    outcome_unknown=response.ok or response.status_code >= 500,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _map_exception(
        self, err: requests.RequestException, deadline: _Deadline, path: str
    ) -> EtpayAPIError:
        # Messages name the endpoint and the failure kind only: the exception text of
        # requests can carry the URL, and the URL is safe, but the body never is.
        never_sent = isinstance(err, requests.ConnectTimeout) or (
            isinstance(err, requests.ConnectionError) and _connection_never_opened(err)
        )
        if deadline.expired and not never_sent:
            return EtpayTimeoutError(
                f"ETpay {path} did not complete within {deadline.seconds:g} s.",
                outcome_unknown=True,
            )
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
        if isinstance(err, requests.ReadTimeout):
            return EtpayTimeoutError(
                f"ETpay {path} did not answer within {self.timeout[1]:g} s.",
                outcome_unknown=True,
            )
        if isinstance(err, requests.ConnectionError):
            if isinstance(_reason(err), ReadTimeoutError):
                # With a Retry policy (or mid-body), requests reports a read timeout as a
                # ConnectionError wrapping urllib3's ReadTimeoutError.
                return EtpayTimeoutError(
                    f"ETpay {path} did not answer within {self.timeout[1]:g} s.",
                    outcome_unknown=True,
                )
            never_opened = _connection_never_opened(err)
            return EtpayConnectionError(
                f"Could not connect to ETpay {path}."
                if never_opened
                else f"The connection to ETpay {path} broke before a reply arrived.",
                outcome_unknown=not never_opened,
            )
        return EtpayConnectionError(
            f"Request to ETpay {path} failed ({type(err).__name__}).", outcome_unknown=True
        )

    def _decode(self, path: str, status_code: int, content: bytes) -> Any:
        try:
            payload: Any = json.loads(content.decode("utf-8")) if content else None
        except (UnicodeDecodeError, ValueError):
            payload = None
            is_json = False
        else:
            is_json = payload is not None
        if status_code >= 400 or status_code < 200 or 300 <= status_code < 400:
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
        if not is_json:
            raise EtpayResponseError(
                f"ETpay {path} answered HTTP {status_code} with a body that is not JSON.",
                status_code=status_code,
                outcome_unknown=True,
            )
        return payload

    def _scrub(self, text: str) -> str:
        """Remove the API token from text that came back from ETpay (it may echo input)."""
        secret = self.merchant.merchant_api_token
        return text.replace(secret, "[redacted]") if secret else text


def _reason(err: requests.ConnectionError) -> object:
    """The urllib3 error behind a requests ``ConnectionError``, unwrapped from retries."""
    reason: object = err.args[0] if err.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return reason


def _connection_never_opened(err: requests.ConnectionError) -> bool:
    """True when the failure happened before the request could be sent."""
    return isinstance(_reason(err), NewConnectionError | ConnectionRefusedError) or (
        _certificate_refused(err)
    )


def _certificate_refused(err: BaseException) -> bool:
    """True when the TLS handshake failed on the server's certificate: nothing was sent.

    Other TLS errors (e.g. an abrupt end of the stream while reading the reply) may come
    after the request was written, so only a failed certificate check counts.
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


# -- a stand-in for the network, for tests ------------------------------------------------------

#: While set, every client built in this process (shared or not) sends its calls through this
#: adapter instead of the network. Only :class:`django_etpay.testing.FakeEtpay` sets it.
_test_transport: BaseAdapter | None = None


def _set_test_transport(adapter: BaseAdapter | None) -> None:
    """Route every client built from now on through ``adapter`` (``None``: the network).

    The shared clients are closed, so that the next :func:`get_client` builds one that uses
    the new transport; a client built earlier and kept elsewhere keeps its own.
    """
    global _test_transport
    _test_transport = adapter
    close_clients()


# -- one shared client per merchant account and process ------------------------------------------

#: Every client alive in this process (shared or not), so that a forked child can renew them.
_all_clients: weakref.WeakSet[EtpayClient] = weakref.WeakSet()

_shared_lock = threading.Lock()
_shared: dict[tuple[Any, ...], EtpayClient] = {}


def _settings_key(merchant: str | None) -> tuple[Any, ...]:
    """Everything a client is built from: a change in any of it calls for a new client."""
    config = conf.get_config()
    return (
        conf.get_merchant(merchant),
        conf.get_timeout(),
        config["TOTAL_TIMEOUT"],
        config["MAX_RESPONSE_BYTES"],
        config["CONNECT_RETRIES"],
        config["POOL_SIZE"],
        config["KEEPALIVE_IDLE"],
        config["CA_BUNDLE"],
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
    """Start the child with no connection, lock or thread of its parent.

    The child's copies of the parent's sockets are closed (``detach`` then ``os.close``: no
    ``shutdown()``, no TLS alert, so the parent's connections carry on unharmed); every
    client gets a new session; the shared clients, their lock and the watchdog start anew.
    """
    global _shared_lock, _tracking_lock, _watchdog
    _tracking_lock = threading.Lock()
    for connection in list(_open_connections):
        sock = connection.sock
        connection.sock = None
        if sock is not None:
            with suppress(OSError):
                fd = sock.detach()
                if fd >= 0:
                    os.close(fd)
    _open_connections.clear()
    for client in list(_all_clients):
        client._renew_after_fork()
    _shared_lock = threading.Lock()
    _shared.clear()
    _watchdog = _Watchdog()


if hasattr(os, "register_at_fork"):  # POSIX only; Windows has no fork()
    os.register_at_fork(after_in_child=_after_fork_in_child)
