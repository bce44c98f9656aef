"""HTTP access to ETpay's API, and nothing else.

:class:`EtpayClient` owns one ``requests.Session`` (connection reuse), sends JSON bodies with a
User-Agent naming this app, applies ``ETPAY["TIMEOUT"]`` to every socket operation and
``ETPAY["TOTAL_TIMEOUT"]`` to the whole call, caps the size of replies, and maps every failure to
an :class:`~django_etpay.exceptions.EtpayAPIError` subclass in one place. It never logs a request
body: bodies carry ``merchant_api_token``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import socket
import threading
import time
from contextlib import suppress
from typing import Any

import requests
from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from django_etpay import __version__, conf
from django_etpay.exceptions import (
    EtpayAPIError,
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


class _Deadline:
    """Cuts the socket of one call when its total deadline passes.

    requests' timeouts bound each socket read, not the whole call: a server that sends one
    byte every few seconds keeps a call alive indefinitely. A timer thread shuts the socket
    down at the deadline, which wakes the blocked read at once.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._connection: HTTPConnection | None = None
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connection = connection
            # Keep the socket itself: on a close-delimited reply http.client drops
            # ``connection.sock`` while the body is still being read from it.
            self._sock = getattr(connection, "sock", None)
            if self.expired:
                self._shutdown()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        sock = self._sock
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


_current_deadline: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar(
    "django_etpay_deadline", default=None
)


class _WatchedMixin:
    """Registers the connection in use with the deadline of the call running in this thread."""

    def _watch(self) -> None:
        deadline = _current_deadline.get()
        if deadline is not None:
            deadline.attach(self)  # type: ignore[arg-type]

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._watch()

    def request(self, *args: Any, **kwargs: Any) -> Any:
        # Reused keep-alive connections skip connect(): register them here too.
        self._watch()
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_WatchedMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedMixin, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _EtpayAdapter(HTTPAdapter):
    """HTTPAdapter whose connections honour the per-call total deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }


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


class EtpayClient:
    """Client for ETpay's session API, built from one merchant account's settings.

    ``EtpayClient()`` uses the default account; ``EtpayClient("alias")`` one from
    ``ETPAY["MERCHANTS"]``. Raises :class:`~django_etpay.exceptions.EtpayConfigurationError`
    when a credential is missing.
    """

    def __init__(self, merchant: str | None = None) -> None:
        self.merchant = conf.get_merchant(merchant)
        self.timeout = conf.get_timeout()
        self.total_timeout = float(conf.get_setting("TOTAL_TIMEOUT"))
        self.max_response_bytes = int(conf.get_setting("MAX_RESPONSE_BYTES"))
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        adapter = _EtpayAdapter(
            max_retries=_retry_policy(int(conf.get_setting("CONNECT_RETRIES")))
        )
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def __repr__(self) -> str:
        return f"<EtpayClient merchant={self.merchant.alias or 'default'!r}>"

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    def __enter__(self) -> EtpayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        data = json.dumps(body, separators=(",", ":"))
        started = time.monotonic()
        deadline = _Deadline(self.total_timeout)
        token = _current_deadline.set(deadline)
        try:
            with deadline:
                try:
                    response = self.session.post(
                        url,
                        data=data.encode(),
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
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.info(
            "ETpay %s answered %s in %.0f ms (%d bytes)",
            path,
            response.status_code,
            elapsed_ms,
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
    return isinstance(_reason(err), NewConnectionError | ConnectionRefusedError)
