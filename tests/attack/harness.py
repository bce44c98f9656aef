"""Runs corpus cases through a transport and turns what happened into the run's figures.

Two transports send a :class:`~tests.attack.corpus.Request`: :class:`ClientTransport` (Django's
test client, in-process) and :class:`HttpTransport` (real HTTP to a server). The figures:

- ``5xx``: replies with a status of 500 or more (no case expects one);
- ``wrong transitions``: a session status other than the case says, or a payment signal that
  fired when it should not, did not fire, or fired twice;
- ``missing rows``: requests the app promised to record (every request that reaches a result
  view and is not refused for its method or CSRF) without the promised row;
- ``secret hits``: a secret (a plain signature key, the merchant API token, ``SECRET_KEY``, a
  signature-key secret or a key derived from it) found in a reply, a log record, an admin page,
  or, for the plain signature keys, anywhere in the database;
- ``problems``: anything else a case checks (an unexpected 4xx, a row with the wrong reason, a
  reply that reveals a status...).
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from django.db import connection

from django_etpay import crypto
from django_etpay.models import Notification, PaymentSession
from tests.attack.corpus import CSRF_SECRET, Case, Context, Request
from tests.factories import make_session

_orders = itertools.count(1)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class ClientTransport:
    """Django's test client, in the test process (no chunked bodies, no real concurrency)."""

    name = "django test client"
    concurrent = False

    def send(self, request: Request) -> Response:
        from django.test import Client, TestCase

        # A server error is a figure of the run, not an exception in the runner.
        client = Client(enforce_csrf_checks=True, raise_request_exception=False)
        extra: dict[str, Any] = {}
        if request.csrf:
            client.cookies["csrftoken"] = CSRF_SECRET
            extra["HTTP_X_CSRFTOKEN"] = CSRF_SECRET
        content_type = ""
        for name, value in request.headers.items():
            if name.lower() == "content-type":
                content_type = value
            else:
                extra["HTTP_" + name.upper().replace("-", "_")] = value
        # Inside a test's transaction, run the on-commit callbacks (the signals) as a commit
        # would; in autocommit they run by themselves and nothing is captured.
        with TestCase.captureOnCommitCallbacks(execute=True):
            reply = client.generic(
                request.method, request.path, request.body, content_type=content_type, **extra
            )
        return Response(reply.status_code, dict(reply.items()), reply.content)


class HttpTransport:
    """Real HTTP to ``base_url``, one connection pool per thread."""

    name = "HTTP"
    concurrent = True

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._local = threading.local()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        session: requests.Session = self._local.session
        return session

    def send(self, request: Request) -> Response:
        headers = dict(request.headers)
        cookies = {}
        if request.csrf:
            cookies["csrftoken"] = CSRF_SECRET
            headers["X-CSRFToken"] = CSRF_SECRET
        data: Any = request.body
        if request.chunked:
            data = iter([request.body[:100], request.body[100:]])
        elif request.method in ("POST", "PUT", "PATCH") and "Content-Type" not in headers:
            headers["Content-Type"] = ""
        prepared = requests.Request(
            request.method,
            self.base_url + request.path,
            headers=headers,
            data=data,
            cookies=cookies,
        ).prepare()
        reply = self._session().send(prepared, allow_redirects=False, timeout=60)
        return Response(reply.status_code, dict(reply.headers), reply.content)


# -- secrets ----------------------------------------------------------------------------------


#: What every plain signature key of the run looks like (``make_session`` and the hostile ETpay
#: both issue ``sig-`` and 64 hex digits): any run of it of 16 characters or more that begins
#: a known key is a hit, so a key cut short in a message is found too.
KEY_SHAPE = re.compile(r"sig-[0-9a-f]{12,}")


@dataclass
class SecretSearch:
    """The secrets of the run and every place one was found."""

    plain_keys: set[str] = field(default_factory=set)
    hits: list[str] = field(default_factory=list)
    haystacks: Counter[str] = field(default_factory=Counter)
    _sorted: list[str] = field(default_factory=list)
    _sorted_size: int = -1
    _configured: set[str] | None = None

    def configured(self) -> set[str]:
        """``SECRET_KEY``, the merchant API token, each signature-key secret and its key."""
        if self._configured is None:
            found = {str(settings.SECRET_KEY), settings.ETPAY["MERCHANT_API_TOKEN"]}
            for secret in crypto.key_secrets():
                found.add(secret)
                found.add(crypto.derive_key(secret).decode())
            self._configured = {s for s in found if len(s) >= 16}
        return self._configured

    def _is_key_part(self, fragment: str) -> bool:
        if self._sorted_size != len(self.plain_keys):
            self._sorted = sorted(k for k in self.plain_keys if k)
            self._sorted_size = len(self.plain_keys)
        index = bisect.bisect_left(self._sorted, fragment)
        return index < len(self._sorted) and self._sorted[index].startswith(fragment)

    def search(self, where: str, kind: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        self.haystacks[kind] += 1
        for secret in self.configured():
            if secret in text:
                self.hits.append(f"{kind} {where}: a configured secret")
        for match in KEY_SHAPE.finditer(text):
            if self._is_key_part(match.group()):
                found = len(match.group())
                self.hits.append(f"{kind} {where}: a signature key ({found} chars)")

    def search_response(self, where: str, response: Response) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        body = response.body.decode("utf-8", "replace")
        self.search(where, "reply", f"{response.status}\n{headers}\n\n{body}")

    def search_database(self) -> None:
        """Every row of the app's tables as text: no plain signature key may be in it."""
        with connection.cursor() as cursor:
            for model in (PaymentSession, Notification):
                quoted = connection.ops.quote_name(model._meta.db_table)
                if connection.vendor == "postgresql":
                    cursor.execute(f"SELECT t::text FROM {quoted} t")  # noqa: S608
                    rows = [row[0] for row in cursor.fetchall()]
                else:
                    cursor.execute(f"SELECT * FROM {quoted}")  # noqa: S608
                    rows = [repr(row) for row in cursor.fetchall()]
                for row in rows:
                    self.search(model._meta.db_table, "database row", row)


# -- running cases ----------------------------------------------------------------------------


@dataclass
class Figures:
    cases: int = 0
    requests: int = 0
    server_errors: list[str] = field(default_factory=list)
    wrong_transitions: list[str] = field(default_factory=list)
    missing_rows: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    outside_app: list[str] = field(default_factory=list)

    def add(self, other: Figures) -> None:
        self.outside_app += other.outside_app
        self.cases += other.cases
        self.requests += other.requests
        self.server_errors += other.server_errors
        self.wrong_transitions += other.wrong_transitions
        self.missing_rows += other.missing_rows
        self.problems += other.problems


SignalSource = Callable[[], list[tuple[str, int]]]


def new_context(limit: int) -> Context:
    target, other = make_session(), make_session()
    return Context(
        target=target,
        other=other,
        limit=limit,
        order_id=f"ATK-{next(_orders):05d}",
        keys=[target.signature_token, other.signature_token],
    )


def _last_notification_pk() -> int:
    last = Notification.objects.order_by("-pk").values_list("pk", flat=True).first()
    return last or 0


def run_case(
    case: Case,
    transport: Any,
    signals: SignalSource,
    search: SecretSearch,
    limit: int,
) -> Figures:
    """Run one case; return its figures (one case, its requests, what went wrong)."""
    figures = Figures(cases=1)
    ctx = new_context(limit)
    search.plain_keys.update(ctx.keys)
    if case.setup is not None:
        case.setup(ctx)
    before_pk = _last_notification_pk()
    sessions_before = PaymentSession.objects.count()
    signals()  # discard what earlier cases left
    request = case.build(ctx)
    if case.repeat > 1 and transport.concurrent:
        with ThreadPoolExecutor(max_workers=min(case.repeat, 16)) as pool:
            responses = list(pool.map(transport.send, [request] * case.repeat))
    else:
        responses = [transport.send(request) for _ in range(case.repeat)]
    figures.requests = len(responses)
    name = case.name

    for index, response in enumerate(responses):
        search.search_response(f"{name}#{index}", response)
        if response.status >= 500 and case.outside_app:
            figures.outside_app.append(f"{name}: HTTP {response.status}: {case.outside_app}")
        elif response.status >= 500:
            figures.server_errors.append(f"{name}: HTTP {response.status}")
        elif response.status not in case.statuses:
            figures.problems.append(
                f"{name}: HTTP {response.status}, expected {case.statuses}: "
                f"{response.body[:200]!r}"
            )

    if case.outside_app:
        return figures  # the app never saw the request
    if case.entry == "initialize":
        _check_initialize(case, ctx, sessions_before, figures)
    else:
        _check_result(case, ctx, before_pk, figures)
    _check_signals(case, ctx, signals(), figures)
    if case.check is not None:
        figures.problems += [f"{name}: {problem}" for problem in case.check(ctx, responses)]
    return figures


def _check_result(case: Case, ctx: Context, before_pk: int, figures: Figures) -> None:
    name = case.name
    target = PaymentSession.objects.get(pk=ctx.target.pk)
    other = PaymentSession.objects.get(pk=ctx.other.pk)
    expected = case.final or ctx.target.status
    if target.status != expected:
        figures.wrong_transitions.append(
            f"{name}: target {ctx.target.status} -> {target.status}, expected {expected}"
        )
    if other.status != ctx.other.status:
        figures.wrong_transitions.append(f"{name}: the other session became {other.status}")
    new_rows = list(Notification.objects.filter(pk__gt=before_pk).order_by("pk"))
    if case.rows_after is not None:
        linked = Notification.objects.filter(session=ctx.target).count()
        if linked < case.rows_after:
            figures.missing_rows.append(f"{name}: {linked} rows, {case.rows_after} promised")
        elif linked > case.rows_after:
            figures.problems.append(f"{name}: {linked} rows stored, bound {case.rows_after}")
        return
    if case.row is None:
        if new_rows:
            figures.problems.append(f"{name}: {len(new_rows)} rows stored, none expected")
        return
    if not new_rows:
        figures.missing_rows.append(f"{name}: no row stored")
        return
    row = new_rows[-1]
    owner = {"target": ctx.target.pk, "other": ctx.other.pk, "none": None}[case.row.linked]
    seen = (row.outcome, row.reason, row.session_id)
    wanted = (case.row.outcome, case.row.reason, owner)
    if len(new_rows) != 1 or seen != wanted:
        figures.problems.append(
            f"{name}: stored {[(n.outcome, n.reason) for n in new_rows]}, "
            f"expected {wanted[:2]} for {case.row.linked}"
        )


def _check_initialize(case: Case, ctx: Context, sessions_before: int, figures: Figures) -> None:
    name = case.name
    created = list(
        PaymentSession.objects.filter(merchant_order_id__endswith=ctx.order_id).values_list(
            "status", flat=True
        )
    )
    if case.session_row is None:
        if PaymentSession.objects.count() != sessions_before:
            figures.problems.append(f"{name}: a session row was stored for refused input")
    elif not created:
        figures.missing_rows.append(f"{name}: no session row stored")
    elif case.session_row != "any" and created != [case.session_row] * len(created):
        figures.problems.append(f"{name}: session rows {created}, expected {case.session_row}")


def _check_signals(
    case: Case, ctx: Context, fired: list[tuple[str, int]], figures: Figures
) -> None:
    counts = Counter(fired)
    for signal in ("payment_completed", "payment_failed"):
        expected = 1 if signal in case.signals else 0
        got = counts[(signal, ctx.target.pk)]
        if got != expected:
            figures.wrong_transitions.append(f"{case.name}: {signal} fired {got} times")
        if counts[(signal, ctx.other.pk)]:
            figures.wrong_transitions.append(f"{case.name}: {signal} fired for the other session")


def run_corpus(
    cases: Iterable[Case],
    transport: Any,
    signals: SignalSource,
    search: SecretSearch,
    limit: int,
) -> Figures:
    figures = Figures()
    for case in cases:
        if case.http_only and not transport.concurrent:
            continue
        figures.add(run_case(case, transport, signals, search, limit))
    return figures


# -- the admin ---------------------------------------------------------------------------------


def crawl_admin(
    get: Callable[[str], Response], search: SecretSearch, sessions: Sequence[PaymentSession]
) -> tuple[int, list[str]]:
    """Visit the admin's lists and pages, and probe the key; return (pages, lookup oracles).

    An oracle is a lookup whose answer differs between a right and a wrong guess of a key.
    """
    pages = 0
    oracles: list[str] = []

    def visit(path: str) -> Response:
        nonlocal pages
        pages += 1
        response = get(path)
        search.search(path, "admin page", response.body)
        return response

    for path in (
        "/admin/django_etpay/paymentsession/",
        "/admin/django_etpay/notification/",
        "/admin/testshop/order/",
        "/admin/django_etpay/paymentsession/?q=sig-",
    ):
        visit(path)
    for session in sessions:
        visit(f"/admin/django_etpay/paymentsession/{session.pk}/change/")
    for pk in Notification.objects.order_by("-pk").values_list("pk", flat=True)[:40]:
        visit(f"/admin/django_etpay/notification/{pk}/change/")
    probes = [
        ("/admin/django_etpay/paymentsession/", "signature_token__startswith"),
        ("/admin/django_etpay/paymentsession/", "signature_token"),
        ("/admin/django_etpay/paymentsession/", "signature_token__regex"),
        ("/admin/django_etpay/notification/", "session__signature_token__startswith"),
        ("/admin/testshop/order/", "payment_session__signature_token__startswith"),
    ]
    for session in sessions[:3]:
        key = session.signature_token
        for path, param in probes:
            answers = set()
            # Prefixes short enough not to count as a key in the logs the probe itself fills.
            for guess in (key[:6], key[:12], "sig-zzzzzzzz"):
                response = visit(f"{path}?{param}={guess}")
                answers.add(
                    (
                        response.status,
                        response.headers.get("Location", ""),
                        session.merchant_order_id.encode() in response.body,
                    )
                )
            if len(answers) != 1:
                oracles.append(f"{path}?{param}=: answers differ {sorted(answers)}")
    return pages, oracles


def summary(
    title: str,
    figures: Figures,
    search: SecretSearch,
    extra: dict[str, Any] | None = None,
) -> str:
    lines = [
        title,
        f"  cases                                   {figures.cases}",
        f"  requests                                {figures.requests}",
        f"  5xx                                     {len(figures.server_errors)}",
        f"  wrong transitions                       {len(figures.wrong_transitions)}",
        f"  requests without a promised row         {len(figures.missing_rows)}",
        f"  secret hits                             {len(search.hits)}",
        f"  other problems                          {len(figures.problems)}",
        f"  5xx from below the app (Django/server)  {len(figures.outside_app)}",
    ]
    for key, value in (extra or {}).items():
        lines.append(f"  {key:<40}{value}")
    searched = ", ".join(f"{n} {kind}s" for kind, n in sorted(search.haystacks.items()))
    lines.append(f"  searched for secrets in                 {searched}")
    details = [
        *figures.outside_app,
        *figures.server_errors,
        *figures.wrong_transitions,
        *figures.missing_rows,
        *search.hits,
        *figures.problems,
    ]
    for detail in details[:60]:
        lines.append(f"    - {detail}")
    if len(details) > 60:
        lines.append(f"    ... and {len(details) - 60} more")
    return "\n".join(lines)


def failed(figures: Figures, search: SecretSearch) -> bool:
    return bool(
        figures.server_errors
        or figures.wrong_transitions
        or figures.missing_rows
        or search.hits
        or figures.problems
    )


def dumps(data: Any) -> str:
    return json.dumps(data, default=str)
