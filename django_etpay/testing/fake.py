"""A fake ETpay, in memory, for a shop's tests: no network, no sandbox server.

:class:`FakeEtpay` answers ``/session/initialize`` and ``/merchant/check_payment_status`` for
every :class:`~django_etpay.client.EtpayClient` of the process, the shared ones of
:func:`~django_etpay.client.get_client` included, so ``initialize_session``,
``reconcile_session``, ``etpay_reconcile`` and ``etpay_check`` run unchanged against it. Its
results are minted by :mod:`django_etpay.testing.results`.

Like ETpay's sandbox of the same name, the fake keeps nothing secret from the test that owns
it, except the merchant API token: :attr:`FakeEtpay.calls` shows every body sent, with
``merchant_api_token`` redacted, so that an assertion message never prints it.

Over 500 lines because it is one class with one job: it plays both endpoints of ETpay's API,
their faults and the payer's funnel, and a reader follows a call through it top to bottom.
"""

from __future__ import annotations

import hmac
import io
import json
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import jwt
import requests
from django.http.response import HttpResponseBase
from django.test import Client, TestCase
from django.urls import reverse
from django.utils import timezone
from requests.adapters import BaseAdapter
from urllib3.exceptions import ProtocolError

from django_etpay import client as client_module
from django_etpay import conf
from django_etpay.client import CHECK_STATUS_PATH, INITIALIZE_PATH
from django_etpay.exceptions import EtpayConfigurationError
from django_etpay.testing.results import ResultStatus, payment_token_for, sign_result

if TYPE_CHECKING:
    # Imported where used: this module (and its pytest plugin) may be imported before Django
    # is set up.
    from django_etpay.models import PaymentSession

__all__ = ["REDACTED", "FakeCall", "FakeEtpay", "FakeSession"]

#: What :attr:`FakeEtpay.calls` shows in place of ``merchant_api_token``.
REDACTED = "[redacted]"

# -- the fake ---------------------------------------------------------------------------------


@dataclass
class FakeCall:
    """One request the app sent to the fake ETpay.

    ``path`` is ``/session/initialize`` or ``/merchant/check_payment_status``; ``body`` is the
    JSON body as sent, except ``merchant_api_token``, which reads ``"[redacted]"``.
    """

    path: str
    body: dict[str, Any]


@dataclass
class FakeSession:
    """A session as the fake ETpay knows it.

    ``status`` is ``"pending"`` until the test settles it with :meth:`FakeEtpay.pay`,
    :meth:`FakeEtpay.reject` or :meth:`FakeEtpay.system_error`; ``result`` is then the JWT
    ETpay sends for it. ``request`` holds the optional fields the app sent (``customer_email``,
    ``metadata``, ``user_bank_code``, ``payment_webhook_url``...).
    """

    token: str
    signature_token: str = field(repr=False)
    merchant_code: str
    merchant_order_id: str
    order_amount: int
    currency: str = "CLP"
    request: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"
    payment_token: str = ""
    result: str | None = field(default=None, repr=False)
    completed_at: datetime | None = None
    merchant_alias: str = ""

    @property
    def payment_webhook_url(self) -> str:
        return str(self.request.get("payment_webhook_url") or "")

    @property
    def payment_completed_url(self) -> str:
        return str(self.request.get("payment_completed_url") or "")

    @property
    def payment_cancellation_url(self) -> str:
        return str(self.request.get("payment_cancellation_url") or "")


FaultKind = Literal["timeout", "connect_timeout", "refused", "broken", "not_json", "interrupt"]
_FAULT_KINDS: tuple[str, ...] = (
    "timeout",
    "connect_timeout",
    "refused",
    "broken",
    "not_json",
    "interrupt",
)
_ENDPOINTS: dict[str, str] = {"initialize": INITIALIZE_PATH, "status": CHECK_STATUS_PATH}


@dataclass(frozen=True)
class _Fault:
    kind: str | None
    status: int | None
    message: str | None
    after_processing: bool = False
    #: The session token a status query must name to meet this fault (None: any call).
    session_token: str | None = None


class _ReplyError(Exception):
    """An HTTP answer the fake gives instead of the normal one."""

    def __init__(self, status: int, payload: Any) -> None:
        super().__init__(status)
        self.status = status
        self.payload = payload


class FakeEtpay:
    """A fake ETpay, in memory, for a shop's tests: no network, no sandbox server.

    While installed (``with FakeEtpay() as etpay:``, or :meth:`install` and
    :meth:`uninstall`), every :class:`~django_etpay.client.EtpayClient` built in the process,
    the shared ones of :func:`~django_etpay.client.get_client` included, sends its calls here.
    The app's own client code runs unchanged: request bodies are encoded, replies decoded and
    checked, failures mapped to the same exceptions, from any thread (a live server's too).

    - ``/session/initialize`` checks the credentials against your ``ETPAY`` settings (the
      default account and every alias in ``MERCHANTS``; others get ETpay's 401), opens a
      :class:`FakeSession` and replies ``{token, signature_token, terms_url}``.
    - ``/merchant/check_payment_status`` lists the settled sessions (paid or failed) that
      match the filters, in the shape of ETpay's status API, so ``reconcile_session`` finds a
      payment whose webhook never arrived.
    - :meth:`pay`, :meth:`reject` and :meth:`system_error` settle a session as the payer and
      ETpay would, and return the signed result; :meth:`notify` delivers it to your
      ``notification`` view, :meth:`return_url` is where ETpay would send the payer back.
    - :meth:`fail_next` makes the next call fail (timeout, refused or broken connection,
      an HTTP error, a reply that is not JSON, an interruption), or the next status query
      about one session.
    - :attr:`status_queries` is the session token of each status query, in order: how often
      the app asked about a session.

    The fake does not retry refused connections (``CONNECT_RETRIES`` does not apply) and
    does not enforce ``TIMEOUT``: a ``"timeout"`` fault raises at once.
    """

    terms_url = "https://www.etpay.com/terms-conditions"

    def __init__(self) -> None:
        self.sessions: list[FakeSession] = []
        self.calls: list[FakeCall] = []
        self._faults: dict[str, list[_Fault]] = {path: [] for path in _ENDPOINTS.values()}
        self._lock = threading.RLock()
        self._installed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def install(self) -> FakeEtpay:
        """Route every ETpay call of this process here until :meth:`uninstall`."""
        if client_module.get_default_transport() is not None:
            raise RuntimeError("Another FakeEtpay is installed: uninstall it first.")
        client_module.set_default_transport(_FakeTransport(self))
        self._installed = True
        return self

    def uninstall(self) -> None:
        """Give the network back; the shared clients are rebuilt on next use."""
        if self._installed:
            client_module.set_default_transport(None)
            self._installed = False

    def __enter__(self) -> FakeEtpay:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    # -- what ETpay knows --------------------------------------------------------------------

    def session(self, session: PaymentSession | FakeSession | str) -> FakeSession:
        """The fake's record of ``session`` (a ``PaymentSession``, a token or a FakeSession).

        A ``PaymentSession`` the fake never opened (one your test created directly) is
        adopted from its own fields, so it can be paid too. ``LookupError`` for an unknown
        token.
        """
        from django_etpay.models import PaymentSession

        if isinstance(session, FakeSession):
            return session
        token = session if isinstance(session, str) else session.token
        with self._lock:
            for known in self.sessions:
                if known.token == token:
                    return known
            if isinstance(session, PaymentSession) and session.token:
                merchant = conf.get_merchant(session.merchant or None)
                adopted = FakeSession(
                    token=session.token,
                    signature_token=session.signature_token,
                    merchant_code=merchant.merchant_code,
                    merchant_order_id=session.merchant_order_id,
                    order_amount=session.order_amount,
                    currency=session.currency,
                    request={
                        "payment_completed_url": session.payment_completed_url,
                        "payment_cancellation_url": session.payment_cancellation_url,
                        "payment_webhook_url": session.payment_webhook_url,
                    },
                    merchant_alias=session.merchant,
                )
                self.sessions.append(adopted)
                return adopted
        raise LookupError(f"The fake ETpay has no session with token {token!r}.")

    @property
    def last_session(self) -> FakeSession:
        """The session opened last (``LookupError`` when none was)."""
        with self._lock:
            if not self.sessions:
                raise LookupError("The fake ETpay has opened no session.")
            return self.sessions[-1]

    # -- scripting ETpay's side --------------------------------------------------------------

    def fail_next(
        self,
        endpoint: Literal["initialize", "status"] = "initialize",
        *,
        error: FaultKind | None = None,
        status: int | None = None,
        message: str | None = None,
        after_processing: bool = False,
        session: PaymentSession | FakeSession | str | None = None,
    ) -> None:
        """Make the next call to ``endpoint`` fail; calls queue up in order.

        Give either ``error``:

        - ``"timeout"``: ETpay took the request but no answer came in time
          (``EtpayTimeoutError``, outcome unknown);
        - ``"connect_timeout"`` / ``"refused"``: the connection never opened (outcome known);
        - ``"broken"``: the connection broke after the request was sent (outcome unknown);
        - ``"not_json"``: a 200 reply whose body is not JSON (``EtpayResponseError``);
        - ``"interrupt"``: the process is interrupted (Ctrl-C, a worker's shutdown) while the
          call is on the wire: ``KeyboardInterrupt`` is raised, for testing that a command
          stopped mid-run leaves nothing half done and a rerun finishes the work;

        or ``status``, an HTTP status ETpay answers with, and its JSON ``{"message": ...}``
        (``EtpayHTTPError``; a 5xx leaves the outcome unknown).

        With ``after_processing=True`` the fake ETpay acts on the request first (it opens the
        session) and the reply is then lost: what a read timeout or a broken connection after
        the request was sent may hide.

        With ``session`` (a ``PaymentSession``, a ``FakeSession`` or a session token; only for
        ``endpoint="status"``) the fault waits for the first status query that names that
        session's token, whatever the calls before it: ETpay failing for one session of a
        reconcile run. Faults without a session are met by the next calls, in order.
        """
        if endpoint not in _ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(_ENDPOINTS)}.")
        if (error is None) == (status is None):
            raise ValueError("Give either error or status.")
        if error is not None and error not in _FAULT_KINDS:
            raise ValueError(f"error must be one of {', '.join(_FAULT_KINDS)}.")
        if status is not None and not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code.")
        token: str | None = None
        if session is not None:
            if endpoint != "status":
                raise ValueError('session applies to endpoint="status" only.')
            token = session if isinstance(session, str) else session.token
            if not token:
                raise ValueError("The session has no token: no status query can name it.")
        with self._lock:
            self._faults[_ENDPOINTS[endpoint]].append(
                _Fault(error, status, message, after_processing, token)
            )

    @property
    def status_queries(self) -> list[str]:
        """The ``session_token`` of each call to the status API, in order (``""`` for a query
        by ``merchant_order_id`` or ``payment_token`` only): how many times, and in which
        order, the app asked ETpay about each session."""
        with self._lock:
            return [
                str(call.body.get("session_token") or "")
                for call in self.calls
                if call.path == CHECK_STATUS_PATH
            ]

    def pay(self, session: PaymentSession | FakeSession | str, **claims: Any) -> str:
        """The payer approves at ETpay: settle ``session`` as paid, return its result JWT.

        ``claims`` change the result (``merchant_amount=1`` is ETpay reporting another
        amount, which the app must refuse). Nothing is delivered: call :meth:`notify`, visit
        :meth:`return_url`, or let ``reconcile_session`` find it through the status API.
        """
        return self._settle(session, "success", claims)

    def reject(self, session: PaymentSession | FakeSession | str, **claims: Any) -> str:
        """The payer rejects or cancels at ETpay: settle ``session`` as failed."""
        return self._settle(session, "failure", claims)

    def system_error(self, session: PaymentSession | FakeSession | str) -> str:
        """ETpay loses track of the payment: its system-error JWT, signed with the token.

        The status API does not list the session (ETpay has no outcome for it).
        """
        return self._settle(session, "system_error", {})

    def _settle(
        self,
        session: PaymentSession | FakeSession | str,
        status: ResultStatus,
        claims: dict[str, Any],
    ) -> str:
        fake = self.session(session)
        with self._lock:
            if not fake.payment_token and status != "system_error":
                fake.payment_token = payment_token_for(fake)
            fake.status = {"success": "paid", "failure": "failed"}.get(status, status)
            fake.completed_at = timezone.now()
            fake.result = sign_result(fake, status=status, **claims)
            return fake.result

    def notify(
        self, session: PaymentSession | FakeSession | str, *, client: Client | None = None
    ) -> HttpResponseBase:
        """Deliver the session's result as ETpay's webhook does, through Django's test client.

        POSTs ``{"payment": <jwt>}`` as JSON to the path of the session's
        ``payment_webhook_url`` (the ``notification`` view's URL when none was sent) and
        returns the response (200 accepted or duplicate, 400 rejected). The on-commit
        callbacks it registers run before it returns, inside ``TestCase`` too, so the
        ``payment_completed`` receivers have run as they would in production after commit.
        """
        fake = self.session(session)
        if fake.result is None:
            raise ValueError("The session is not settled: call pay(), reject() or system_error().")
        url = fake.payment_webhook_url or reverse("django_etpay:notification")
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        test_client = client or Client()
        with TestCase.captureOnCommitCallbacks(execute=True):
            response = test_client.post(
                path, data={"payment": fake.result}, content_type="application/json"
            )
        return response

    def return_url(self, session: PaymentSession | FakeSession | str) -> str:
        """Where ETpay sends the payer back, the result JWT appended (``?jwt=<jwt>``).

        A paid session goes to its ``payment_completed_url``, any other result to its
        ``payment_cancellation_url`` (the ``return`` view's path when none was sent). ETpay
        does not publish how it appends the JWT; this is the form the sandbox uses, and
        ``concat`` replaces the ``?`` when the session was created with one.
        """
        fake = self.session(session)
        if fake.result is None:
            raise ValueError("The session is not settled: call pay(), reject() or system_error().")
        url = (
            fake.payment_completed_url if fake.status == "paid" else fake.payment_cancellation_url
        )
        url = url or reverse("django_etpay:return")
        separator = str(fake.request.get("concat") or "?")
        return f"{url}{separator}jwt={fake.result}"

    # -- the two endpoints -------------------------------------------------------------------

    def _answer(self, path: str, body: Any) -> tuple[int, Any]:
        """(status, JSON payload) for one call; raises the requests error of a fault."""
        with self._lock:
            redacted = dict(body) if isinstance(body, dict) else {"<body>": body}
            if "merchant_api_token" in redacted:
                redacted["merchant_api_token"] = REDACTED
            self.calls.append(FakeCall(path=path, body=redacted))
            fault = self._take_fault(path, body)
        if fault is not None and not fault.after_processing:
            return self._fail(fault)
        answer = self._process(path, body)
        return answer if fault is None else self._fail(fault)

    def _take_fault(self, path: str, body: Any) -> _Fault | None:
        """The first queued fault this call meets (the caller holds the lock)."""
        queue = self._faults.get(path) or []
        asked = body.get("session_token") if isinstance(body, dict) else None
        for index, fault in enumerate(queue):
            if fault.session_token is None or fault.session_token == asked:
                return queue.pop(index)
        return None

    def _process(self, path: str, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return 400, {"message": "The request body must be a JSON object."}
        try:
            if path == INITIALIZE_PATH:
                return 200, self._initialize(body)
            if path == CHECK_STATUS_PATH:
                return 200, self._status(body)
        except _ReplyError as reply:
            return reply.status, reply.payload
        return 404, {"message": "Not found."}

    @staticmethod
    def _fail(fault: _Fault) -> tuple[int, Any]:
        if fault.status is not None:
            return fault.status, {"message": fault.message or f"Fake ETpay error {fault.status}."}
        if fault.kind == "interrupt":
            raise KeyboardInterrupt("fake ETpay: interrupted while the call was on the wire")
        if fault.kind == "timeout":
            raise requests.ReadTimeout("fake ETpay: no answer in time")
        if fault.kind == "connect_timeout":
            raise requests.ConnectTimeout("fake ETpay: connect timeout")
        if fault.kind == "refused":
            raise requests.ConnectionError(ConnectionRefusedError("fake ETpay: refused"))
        if fault.kind == "broken":
            raise requests.ConnectionError(
                ProtocolError("Connection aborted.", ConnectionResetError("fake ETpay"))
            )
        return 200, _NotJson()

    def _accounts(self) -> list[conf.MerchantConfig]:
        accounts: list[conf.MerchantConfig] = []
        for alias in [None, *conf.merchant_aliases()]:
            try:
                accounts.append(conf.get_merchant(alias))
            except EtpayConfigurationError:
                continue
        return accounts

    def _authenticate(self, merchant_code: Any, api_token: Any) -> conf.MerchantConfig:
        if not isinstance(api_token, str) or not api_token:
            raise _ReplyError(400, {"message": "Missing required field(s): merchant_api_token."})
        for account in self._accounts():
            token_ok = hmac.compare_digest(account.merchant_api_token.encode(), api_token.encode())
            if token_ok and (merchant_code is None or account.merchant_code == merchant_code):
                return account
        raise _ReplyError(401, {"message": "Invalid merchant credentials."})

    def _initialize(self, body: Mapping[str, Any]) -> dict[str, Any]:
        required = ("merchant_code", "merchant_api_token", "merchant_order_id", "order_amount")
        missing = [name for name in required if body.get(name) in (None, "")]
        if missing:
            raise _ReplyError(
                400, {"message": f"Missing required field(s): {', '.join(missing)}."}
            )
        account = self._authenticate(str(body["merchant_code"]), body["merchant_api_token"])
        amount = body["order_amount"]
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise _ReplyError(400, {"message": "order_amount must be a positive integer."})
        optional = {
            key: value
            for key, value in body.items()
            if key not in required and key != "merchant_code"
        }
        fake = FakeSession(
            token=secrets.token_urlsafe(32),
            signature_token=secrets.token_hex(32),
            merchant_code=account.merchant_code,
            merchant_order_id=str(body["merchant_order_id"]),
            order_amount=amount,
            currency=account.currency,
            request=optional,
            merchant_alias=account.alias,
        )
        with self._lock:
            self.sessions.append(fake)
        return {
            "token": fake.token,
            "signature_token": fake.signature_token,
            # ETpay's Mexican API may answer without terms (null).
            "terms_url": self.terms_url if account.country == "CL" else None,
        }

    def _status(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        account = self._authenticate(None, body.get("merchant_api_token"))
        filters = {
            name: body[name]
            for name in ("session_token", "merchant_order_id", "payment_token")
            if body.get(name) not in (None, "")
        }
        if not filters:
            raise _ReplyError(
                400, {"message": "Give session_token, merchant_order_id or payment_token."}
            )
        with self._lock:
            settled = [
                fake
                for fake in self.sessions
                if fake.status in ("paid", "failed")
                and fake.merchant_code == account.merchant_code
                and all(
                    str(getattr(fake, "token" if name == "session_token" else name)) == str(value)
                    for name, value in filters.items()
                )
            ]
            return [self.status_entry(fake) for fake in settled]

    def status_entry(self, session: PaymentSession | FakeSession | str) -> dict[str, Any]:
        """What ETpay's status API reports for a settled session (the result's claims,
        without ``iat``, plus ``payment_date`` as ``DD-MM-YYYY HH:MM:SS``)."""
        fake = self.session(session)
        if fake.result is None or fake.status not in ("paid", "failed"):
            raise ValueError("Only a paid or failed session has a status entry.")
        entry = jwt.decode(fake.result, options={"verify_signature": False})
        entry.pop("iat", None)
        entry["payment_date"] = timezone.localtime(fake.completed_at or timezone.now()).strftime(
            "%d-%m-%Y %H:%M:%S"
        )
        return entry


class _NotJson:
    """Marks a reply whose body is not JSON (an HTML error page from a proxy, say)."""


class _FakeTransport(BaseAdapter):
    """A requests transport that hands each call to a :class:`FakeEtpay`."""

    def __init__(self, fake: FakeEtpay) -> None:
        super().__init__()
        self.fake = fake

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        path = urlsplit(request.url or "").path
        # The fake answers wherever API_URL points, path prefix included.
        endpoint = next((p for p in _ENDPOINTS.values() if path.endswith(p)), path)
        raw = request.body or b""
        try:
            body: Any = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        except ValueError:
            body = None
        status, payload = self.fake._answer(endpoint, body)
        if isinstance(payload, _NotJson):
            content, content_type = b"<html><body>Bad gateway</body></html>", "text/html"
        else:
            content, content_type = json.dumps(payload).encode(), "application/json"
        response = requests.Response()
        response.status_code = status
        response.headers["Content-Type"] = content_type
        response.headers["Content-Length"] = str(len(content))
        response.raw = io.BytesIO(content)
        response.url = request.url or ""
        response.request = request
        response.reason = "OK" if status < 400 else "Error"
        return response

    def close(self) -> None:
        """Nothing to close: no connection was opened."""
