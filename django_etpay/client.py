"""HTTP access to ETpay's API, and nothing else.

A call of :class:`EtpayClient` gets a total deadline (``ETPAY["TOTAL_TIMEOUT"]``) when it
starts, kept by the connections of :mod:`django_etpay.transport` while the reply is read and
checked between the chunks of its body. It is sent again only while the connection never
opened (nothing was written), up to ``CONNECT_RETRIES`` times. Replies over
``MAX_RESPONSE_BYTES`` are refused. Every failure becomes an
:class:`~django_etpay.exceptions.EtpayAPIError` in :meth:`EtpayClient._map_exception`, which
says whether ETpay may have acted. Request bodies carry ``merchant_api_token``: never logged.

:func:`get_client` hands out one shared client per merchant account and process, so calls
reuse kept-alive connections; it is rebuilt when ``ETPAY`` changes and never crosses ``fork()``.
"""

from __future__ import annotations

import atexit
import email.utils
import json
import logging
import os
import ssl
import threading
import time
import weakref
from contextlib import suppress
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
from django.core.signals import setting_changed
from django.views.decorators.debug import sensitive_variables
from requests.adapters import BaseAdapter
from urllib3.exceptions import (
    MaxRetryError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from django_etpay import __version__, conf, observability
from django_etpay.exceptions import (
    EtpayAPIError,
    EtpayConfigurationError,
    EtpayConnectionError,
    EtpayHTTPError,
    EtpayResponseError,
    EtpayTimeoutError,
)
from django_etpay.transport import CallLimits, EtpayAdapter, current_call

logger = logging.getLogger("django_etpay.client")

INITIALIZE_PATH = "/session/initialize"
CHECK_STATUS_PATH = "/merchant/check_payment_status"

#: Longest ``token`` / ``signature_token`` accepted: the size of the columns that store them.
MAX_TOKEN_LENGTH = 255

USER_AGENT = f"django-etpay/{__version__} python-requests/{requests.__version__}"

#: Seconds to wait before the n-th connect retry: ``RETRY_BACKOFF * n``.
RETRY_BACKOFF = 0.1


# -- the client ---------------------------------------------------------------------------------


class EtpayClient:
    """Client for ETpay's session API, built from one merchant account's settings.

    ``EtpayClient()`` uses the default account, ``EtpayClient("alias")`` one from
    ``ETPAY["MERCHANTS"]``; :class:`~django_etpay.exceptions.EtpayConfigurationError` when a
    credential is missing. Safe to use from several threads at once. The services use the
    shared clients of :func:`get_client`; build one yourself (and close it, e.g. with
    ``with``) when you want connections of your own.

    ``transport``, a requests transport adapter, carries the calls instead of the network (a
    test double, say): retries, the deadline between body chunks, the size cap and the error
    mapping still apply. Without it, the one of :func:`set_default_transport`, else the network.
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
        # The environment (proxies, CA bundle, ~/.netrc) is read once here, not on every call;
        # the credentials travel in the body, so netrc has nothing to add.
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(self.merchant.api_url)
        session.verify = self.verify
        # Calls are independent: a shared client must not carry one caller's cookies to another.
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        adapter = self.transport
        if adapter is None:
            # max_retries=0: _post decides on retries, knowing whether anything was sent.
            adapter = EtpayAdapter(max_retries=0, pool_maxsize=self.pool_size)
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

    @observability.observed_call("initialize")
    @sensitive_variables("body")
    def initialize_session(
        self, *, merchant_order_id: str, order_amount: int, **optional: Any
    ) -> dict[str, Any]:
        """``POST /session/initialize``; returns ETpay's decoded reply.

        Only optional fields whose value is not ``None`` are sent. The reply must carry
        ``token`` and ``signature_token``: printable, non-empty strings that fit their columns
        (else :class:`~django_etpay.exceptions.EtpayResponseError`).
        """
        body: dict[str, Any] = {
            "merchant_code": self.merchant.merchant_code,
            "merchant_api_token": self.merchant.merchant_api_token,
            "merchant_order_id": merchant_order_id,
            "order_amount": order_amount,
            **{key: value for key, value in optional.items() if value is not None},
        }
        reply = self._post(INITIALIZE_PATH, body)
        what = "ETpay's reply to session/initialize"
        if not isinstance(reply, dict):
            raise _bad_reply(f"{what} is not a JSON object.")
        # Printable: no NUL, no control character, no lone surrogate, so storable as a key.
        keys = ("token", "signature_token")
        if missing := [k for k in keys if not _printable_text(reply.get(k))]:
            raise _bad_reply(f"{what} lacks a usable {', '.join(missing)}.")
        if too_long := [k for k in keys if len(reply[k]) > MAX_TOKEN_LENGTH]:
            raise _bad_reply(
                f"{what} has a {', '.join(too_long)} longer than {MAX_TOKEN_LENGTH} characters."
            )
        return reply

    @observability.observed_call("check_status")
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
        if not (given := {key: value for key, value in filters.items() if value}):
            raise ValueError(
                "check_payment_status needs session_token, merchant_order_id or payment_token."
            )
        body = {"merchant_api_token": self.merchant.merchant_api_token, **given}
        reply = self._post(CHECK_STATUS_PATH, body)
        reply = [reply] if isinstance(reply, dict) else reply
        if not isinstance(reply, list) or not all(isinstance(item, dict) for item in reply):
            raise EtpayResponseError(
                "ETpay's reply to check_payment_status is not a list of objects.", status_code=200
            )
        return reply

    # -- one call ----------------------------------------------------------------------------

    @sensitive_variables("body", "data")
    def _post(self, path: str, body: dict[str, Any]) -> Any:
        data = json.dumps(body, separators=(",", ":")).encode()
        started = time.monotonic()
        limits = CallLimits(started + self.total_timeout, self.timeout[1], self.keepalive_idle)
        token = current_call.set(limits)
        try:
            attempt = 0
            while True:
                try:
                    observability.attempt()
                    status, content, retry_after = self._send(path, data, limits)
                    break
                except requests.RequestException as err:
                    # Sent again only if nothing was written: a repeated session/initialize
                    # could open a second session for the same order.
                    backoff = RETRY_BACKOFF * (attempt + 1)
                    retry = attempt < self.connect_retries and limits.left() > backoff
                    if not (retry and _never_opened(err)):
                        raise self._map_exception(err, limits, path) from None
                attempt += 1
                logger.info("Could not connect to ETpay %s, trying again (%d)", path, attempt)
                time.sleep(backoff)
        finally:
            current_call.reset(token)
        observability.answered(status)
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.info(
            "ETpay %s answered %s in %.0f ms (%d bytes)", path, status, elapsed_ms, len(content)
        )
        return self._decode(path, status, content, retry_after=retry_after)

    @sensitive_variables("data")
    def _send(self, path: str, data: bytes, limits: CallLimits) -> tuple[int, bytes, float | None]:
        """One attempt: the status, the body (read in chunks within the limits) and the
        seconds of its ``Retry-After`` header (``None`` without a usable one)."""
        left = max(limits.left(), 0.001)  # urllib3 refuses a timeout of 0
        response = self.session.post(
            f"{self.merchant.api_url}{path}",
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=(min(self.timeout[0], left), min(self.timeout[1], left)),
            stream=True,
            allow_redirects=False,
        )
        with response:
            cap, status = self.max_response_bytes, response.status_code
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > cap:
                raise _too_large(status, cap)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(chunk_size=8192):
                size += len(chunk)
                if size > cap:
                    raise _too_large(status, cap)
                # Our connections cut each read at the deadline; this is for transports
                # that do not (a test transport, or a SOCKS proxy, where it comes late).
                if limits.left() <= 0:
                    raise _DeadlinePassed
                chunks.append(chunk)
        return status, b"".join(chunks), retry_after

    def _map_exception(
        self, err: requests.RequestException, limits: CallLimits, path: str
    ) -> EtpayAPIError:
        # Messages name the endpoint and the failure kind only, never the body.
        if _certificate_refused(err):
            return EtpayConnectionError(
                f"ETpay's TLS certificate could not be verified ({path}); nothing was sent. "
                'Set ETPAY["CA_BUNDLE"] if ETpay\'s certificate chains to a private authority.'
            )
        if isinstance(err, requests.ConnectTimeout):
            return EtpayTimeoutError(f"Timed out connecting to ETpay {path}.")
        if _never_opened(err):
            return EtpayConnectionError(f"Could not connect to ETpay {path}.")
        # From here on, the request may have reached ETpay: the outcome is unknown.
        if limits.left() <= 0:
            message = f"ETpay {path} did not complete within {self.total_timeout:g} s."
            return EtpayTimeoutError(message, outcome_unknown=True)
        # A ReadTimeout while the head is read; a ConnectionError wrapping urllib3's
        # ReadTimeoutError while the body is.
        if isinstance(err, requests.ReadTimeout) or isinstance(_reason(err), ReadTimeoutError):
            message = f"ETpay {path} did not answer within {self.timeout[1]:g} s."
            return EtpayTimeoutError(message, outcome_unknown=True)
        if isinstance(err, requests.ConnectionError):
            message = f"The connection to ETpay {path} broke before a reply arrived."
        else:
            message = f"Request to ETpay {path} failed ({type(err).__name__})."
        return EtpayConnectionError(message, outcome_unknown=True)

    def _decode(
        self, path: str, status_code: int, content: bytes, *, retry_after: float | None = None
    ) -> Any:
        try:
            payload: Any = json.loads(content.decode("utf-8")) if content else None
        except ValueError:  # UnicodeDecodeError included
            payload = None
        if not 200 <= status_code < 300:
            message = payload.get("message") if isinstance(payload, dict) else None
            # ETpay may echo the request: keep the API token out of the error.
            etpay_message = self._scrub(message)[:500] if isinstance(message, str) else None
            raise EtpayHTTPError(
                f"ETpay {path} answered HTTP {status_code}"
                + (f": {etpay_message}" if etpay_message else ""),
                status_code=status_code,
                etpay_message=etpay_message,
                # A 5xx (or an unexpected redirect) does not say whether ETpay acted.
                outcome_unknown=not 400 <= status_code < 500,
                retry_after=retry_after,
            )
        if payload is None:
            message = f"ETpay {path} answered HTTP {status_code} with a body that is not JSON."
            raise _bad_reply(message, status_code=status_code)
        return payload

    def _scrub(self, text: str) -> str:
        secret = self.merchant.merchant_api_token
        return text.replace(secret, "[redacted]") if secret else text


class _DeadlinePassed(requests.RequestException):
    """The deadline passed between two chunks of the body."""


def _verify_setting() -> str | bool:
    """What requests' ``verify`` gets: ``CA_BUNDLE``, else the usual environment variables."""
    bundle = conf.get_setting("CA_BUNDLE")
    if not bundle:
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    if not isinstance(bundle, str | os.PathLike) or not os.path.exists(bundle):
        raise EtpayConfigurationError(
            'ETPAY["CA_BUNDLE"] must be the path of a CA bundle file or directory that exists.'
        )
    return os.fspath(bundle)


#: The longest wait a ``Retry-After`` header is taken at (a day): a larger one is capped.
MAX_RETRY_AFTER = 86400.0


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    ``None`` when absent or unreadable; never negative, at most :data:`MAX_RETRY_AFTER`.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _printable_text(value: object) -> bool:
    return isinstance(value, str) and value != "" and value.isprintable()


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


def _certificate_refused(err: requests.RequestException) -> bool:
    """True when the TLS handshake failed on the server's certificate: nothing was sent.

    Other TLS errors (the stream ending abruptly while the reply is read, say) may come after
    the request was written, so only a failed certificate check counts.
    """
    reason = _reason(err)
    return isinstance(reason, SSLError) and isinstance(
        reason.args[0] if reason.args else None, ssl.SSLCertVerificationError
    )


# -- one shared client per merchant account and process ------------------------------------------

#: The transport of clients built without one (see set_default_transport); None: the network.
_default_transport: BaseAdapter | None = None

#: Every client alive in this process, shared or not, so that a forked child can renew them.
_all_clients: weakref.WeakSet[EtpayClient] = weakref.WeakSet()
_all_clients_lock = threading.Lock()

_shared_lock = threading.Lock()
_shared: dict[tuple[Any, ...], EtpayClient] = {}


def set_default_transport(transport: BaseAdapter | None) -> None:
    """Carry the calls of clients built from now on without a ``transport`` through this one.

    For a stand-in for ETpay that serves the whole process, the shared clients included, such
    as :class:`django_etpay.testing.FakeEtpay`; ``None`` gives the network back. The shared
    clients are closed, so the next :func:`get_client` builds them anew.
    """
    global _default_transport
    _default_transport = transport
    close_clients()


def get_default_transport() -> BaseAdapter | None:
    """The transport :func:`set_default_transport` set; ``None`` while calls use the network."""
    return _default_transport


def get_client(merchant: str | None = None) -> EtpayClient:
    """The shared :class:`EtpayClient` of merchant account ``merchant`` in this process.

    ``None`` is the default account, an alias one of ``ETPAY["MERCHANTS"]``. The client keeps
    its connections alive between calls and may be used from any thread. It is built on first
    use, replaced when the settings it was built from change, closed at interpreter exit and
    never shared with a forked child. Do not close it yourself (:func:`close_clients` does).
    Raises :class:`~django_etpay.exceptions.EtpayConfigurationError` like ``EtpayClient``.
    """
    config = conf.get_config()
    keys = ("TOTAL_TIMEOUT", "MAX_RESPONSE_BYTES", "CONNECT_RETRIES", "POOL_SIZE")
    key = (
        conf.get_merchant(merchant),
        conf.get_timeout(),
        *(config[name] for name in (*keys, "KEEPALIVE_IDLE", "CA_BUNDLE")),
    )
    if (client := _shared.get(key)) is None:
        with _shared_lock:
            if (client := _shared.get(key)) is None:
                client = _shared[key] = EtpayClient(merchant)
    return client


def close_clients() -> None:
    """Close and forget every shared client of this process; :func:`get_client` builds anew.

    Runs at interpreter exit and when the ``ETPAY`` setting changes; call it yourself e.g.
    after rotating ETpay's credentials by other means than settings.
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

    Every client gets a new session, so no pool lock a parent thread held at fork time is
    ever waited on (:mod:`django_etpay.transport` has closed the child's copies of the
    parent's sockets already).
    """
    global _all_clients_lock, _shared_lock
    _all_clients_lock = threading.Lock()
    for client in list(_all_clients):
        client.session = client._new_session()
    _shared_lock = threading.Lock()
    _shared.clear()


if hasattr(os, "register_at_fork"):  # POSIX only; Windows has no fork()
    os.register_at_fork(after_in_child=_after_fork_in_child)
