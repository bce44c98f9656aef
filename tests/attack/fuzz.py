"""The property-based run: thousands of generated requests per entry point (hypothesis).

Each example gets fresh sessions in a drawn starting status, a drawn request (a JWT built from
the real claims with some replaced by hostile values, signed with a drawn key and algorithm, in
a drawn body form; or plain garbage), and is checked against properties that hold whatever the
input:

- no reply of 500 or more;
- a session changes only as a result signed with its own key, naming it, and valid for it
  (order id, amount and currency match, a known ``payment_status`` spelling, no system-error
  flag) may change it, and only along the transition rule (:func:`allowed`);
- every request that reaches a result view stores exactly one row (the return view: every
  request whose URL carries something the view reads as a JWT);
- a reply tells a session's status only for a result signed with that session's key;
- the checkout answers 200 with a stored pending session, 400 storing nothing, or 424 with the
  row kept as ``error``.

Violations are counted, not raised, so that one run reports all of them; the first few are
printed with the example that produced them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.test import RequestFactory
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from django_etpay import validators
from django_etpay.models import Notification, PaymentSession
from django_etpay.views import ReturnView
from tests.attack.corpus import CHECKOUT, NOTIFICATION, RETURN, WIDGET, Request
from tests.attack.harness import Figures, SecretSearch
from tests.factories import (
    FAILURE_SPELLINGS,
    SUCCESS_SPELLINGS,
    hmac_jws,
    make_session,
    mint_payment_claims,
    raw_jws,
)

SUCCESS = set(SUCCESS_SPELLINGS)
FAILURE = set(FAILURE_SPELLINGS)
STATUSES = ["pending", "pending", "pending", "expired", "failed", "paid", "error"]

# -- strategies -------------------------------------------------------------------------------

#: Any text, lone surrogates and NUL included.
any_text = st.text(st.characters(exclude_categories=()), max_size=24)
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
claim_value = st.one_of(
    leaf,
    st.lists(leaf, max_size=3),
    st.dictionaries(st.text(max_size=6), leaf, max_size=3),
)


def interesting(
    name: str, target: PaymentSession, other: PaymentSession
) -> st.SearchStrategy[Any]:
    """Values of one claim that sit on the edges of what the app checks."""
    amount = target.order_amount
    choices: dict[str, list[Any]] = {
        "session_token": [
            target.token,
            other.token,
            "sess-nobody",
            "x\x00",
            "x\ud800",
            "s" * 300,
            7,
            [target.token],
        ],
        "merchant_order_id": [
            target.merchant_order_id,
            other.merchant_order_id,
            target.merchant_order_id + " ",
            True,
            0,
            {},
        ],
        "merchant_amount": [
            amount,
            amount - 1,
            amount + 1,
            str(amount),
            float(amount),
            amount + 0.5,
            True,
            f"-{amount}",
            f" {amount} ",
            [amount],
            "".join(chr(0xFF10 + int(d)) for d in str(amount)),
            10**40,
        ],
        "merchant_currency": ["CLP", "clp", " CLP ", "USD", 152, ""],
        "payment_status": [
            *sorted(SUCCESS, key=str),
            *sorted(FAILURE, key=str),
            "SUCCESS",
            " Declined ",
            "pending",
            "1",
            1,
            0,
            None,
        ],
        "system_error": [True, False, "true", 1, 0, None],
        "iat": [int(time.time()), int(time.time()) + 3600, "now", 1.5],
        "exp": [int(time.time()) + 3600, int(time.time()) - 3600, "later"],
        "user_bank": ["Banco", "a\x00b", "\ud800", "B" * 400],
        "payment_token": ["pay-1", "p\x00", "\udfff", 12],
    }
    return st.sampled_from(choices[name])


CLAIMS = [
    "session_token",
    "merchant_order_id",
    "merchant_amount",
    "merchant_currency",
    "payment_status",
    "system_error",
    "iat",
    "exp",
    "user_bank",
    "payment_token",
]


@dataclass
class Drawn:
    raw: str
    claims: dict[str, Any] | None  # None: not a JWT of ours (garbage)
    key_of: str | None  # "target", "other" or None (any other key, or no valid signature)


def draw_jwt(data: st.DataObject, target: PaymentSession, other: PaymentSession) -> Drawn:
    claims = mint_payment_claims(target)
    for name in CLAIMS:
        how = data.draw(st.sampled_from(["keep"] * 5 + ["drop", "edge", "edge", "any"]))
        if how == "drop":
            claims.pop(name, None)
        elif how == "edge":
            claims[name] = data.draw(interesting(name, target, other))
        elif how == "any":
            claims[name] = data.draw(claim_value)
    claims.update(data.draw(st.dictionaries(st.text(max_size=8), claim_value, max_size=2)))
    key_choice = data.draw(st.sampled_from(["target"] * 4 + ["other", "session_token", "any"]))
    alg = data.draw(st.sampled_from(["HS256"] * 6 + ["HS384", "HS512", "none", "RS256", "hs256"]))
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if data.draw(st.booleans()):
        header["kid"] = data.draw(any_text)
    keys = {
        "target": target.signature_token,
        "other": other.signature_token,
        "session_token": target.token or "",
    }
    key = keys.get(key_choice) or data.draw(any_text)
    if alg.startswith("HS") or alg == "hs256":
        raw = hmac_jws(header, claims, key.encode("utf-8", "surrogatepass"))
    else:
        raw = raw_jws(header, claims, data.draw(st.binary(max_size=64)))
    damage = data.draw(st.sampled_from(["none"] * 8 + ["truncate", "flip", "no-signature"]))
    if damage == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    elif damage == "flip":
        index = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:index] + ("A" if raw[index] != "A" else "B") + raw[index + 1 :]
    elif damage == "no-signature":
        raw = raw.rsplit(".", 1)[0] + "."
    intact = damage == "none" and alg == "HS256"
    return Drawn(raw, claims, key_choice if intact and key_choice in ("target", "other") else None)


def draw_payload(data: st.DataObject, target: PaymentSession, other: PaymentSession) -> Drawn:
    kind = data.draw(st.sampled_from(["jwt"] * 8 + ["text", "jwt-shaped"]))
    if kind == "jwt":
        return draw_jwt(data, target, other)
    if kind == "jwt-shaped":
        parts = data.draw(st.lists(st.text("ABCdef019_-", max_size=30), min_size=3, max_size=3))
        return Drawn(".".join(parts), None, None)
    return Drawn(data.draw(any_text), None, None)


def draw_body(data: st.DataObject, raw: str) -> tuple[bytes, str]:
    form = data.draw(st.sampled_from(["json", "json", "bare", "form", "bytes", "json-other"]))
    ctype = data.draw(
        st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-8",
                "text/plain",
                "",
                "application/x-www-form-urlencoded",
                "application/x-www-form-urlencoded; charset=latin-1",
                "application/jwt",
                "application/xml",
                "text/json",
            ]
        )
    )
    text_raw = raw.encode("utf-8", "surrogatepass")
    if form == "json":
        return json.dumps({"payment": raw}).encode(), ctype
    if form == "bare":
        return text_raw, ctype
    if form == "form":
        return b"payment=" + quote(raw.encode("utf-8", "surrogatepass")).encode(), ctype
    if form == "bytes":
        return data.draw(st.binary(max_size=300)), ctype
    other = data.draw(claim_value)
    return json.dumps({"payment": other, "x": raw}, default=str).encode(), ctype


# -- the transition oracle --------------------------------------------------------------------


def _amount_matches(value: Any, amount: int) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value == amount
    if isinstance(value, float):
        return value.is_integer() and int(value) == amount
    if isinstance(value, str):
        text = value.strip()
        return text.isascii() and text.isdigit() and int(text) == amount
    return False


def _order_matches(value: Any, order: str) -> bool:
    return not isinstance(value, bool) and isinstance(value, str | int) and str(value) == order


def _spelling(value: Any) -> str:
    if isinstance(value, bool):
        return "success" if value else "failure"
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {s for s in SUCCESS if isinstance(s, str)}:
            return "success"
        if text in {s for s in FAILURE if isinstance(s, str)}:
            return "failure"
    return "unknown"


def allowed(session: PaymentSession, before: str, drawn: Drawn, key_of: str) -> set[str]:
    """The statuses ``session`` may be in after ``drawn`` (``key_of``: whose session it is)."""
    claims = drawn.claims
    if claims is None or drawn.key_of != key_of or claims.get("session_token") != session.token:
        return {before}
    if claims.get("system_error") not in (None, False):
        return {before}
    currency = claims.get("merchant_currency")
    if currency is not None and (
        not isinstance(currency, str) or currency.strip().upper() != session.currency
    ):
        return {before}
    spelled = _spelling(claims.get("payment_status"))
    order, amount = claims.get("merchant_order_id"), claims.get("merchant_amount")
    order_ok = order is None or _order_matches(order, session.merchant_order_id)
    amount_ok = amount is None or _amount_matches(amount, session.order_amount)
    statuses = {before}
    if (
        spelled == "success"
        and before != "paid"
        and order is not None
        and amount is not None
        and order_ok
        and amount_ok
    ):
        statuses.add("paid")
    if spelled == "failure" and before in ("pending", "expired") and order_ok and amount_ok:
        statuses.add("failed")
    return statuses


# -- running ----------------------------------------------------------------------------------


@dataclass
class FuzzRun:
    send: Callable[[Request], Any]
    search: SecretSearch
    figures: Figures
    examples: int
    seed: int

    def _fresh(self, data: st.DataObject) -> tuple[PaymentSession, PaymentSession, str, str]:
        before = data.draw(st.sampled_from(STATUSES))
        other_before = data.draw(st.sampled_from(STATUSES))
        target, other = make_session(status=before), make_session(status=other_before)
        self.search.plain_keys.update([target.signature_token, other.signature_token])
        return target, other, before, other_before

    def _transitions(
        self, entry: str, drawn: Drawn, sessions: list[tuple[PaymentSession, str, str]]
    ) -> dict[int, str]:
        after = dict(
            PaymentSession.objects.filter(pk__in=[s.pk for s, _, _ in sessions]).values_list(
                "pk", "status"
            )
        )
        for session, before, key_of in sessions:
            if after[session.pk] not in allowed(session, before, drawn, key_of):
                self.figures.wrong_transitions.append(
                    f"{entry}: {key_of} {before} -> {after[session.pk]} by {drawn.raw[:160]!r}"
                )
        return after

    def _one(self, entry: str, request: Request, promised: bool, before_pk: int) -> Any:
        self.figures.requests += 1
        response = self.send(request)
        self.search.search_response(f"fuzz {entry}", response)
        what = f"{request.path[:200]!r} {request.body[:160]!r}"
        if response.status >= 500:
            self.figures.server_errors.append(f"{entry}: HTTP {response.status} for {what}")
        new_rows = Notification.objects.filter(pk__gt=before_pk).count()
        if promised and new_rows == 0:
            self.figures.missing_rows.append(
                f"{entry}: no row (HTTP {response.status}) for {what}"
            )
        elif new_rows != (1 if promised else 0):
            self.figures.problems.append(
                f"{entry}: {new_rows} rows (HTTP {response.status}) for {what}"
            )
        return response

    def _settings(self, test: Callable[..., None]) -> Callable[..., None]:
        configured = settings(
            max_examples=self.examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(test)
        return seed(self.seed)(configured)  # type: ignore[no-any-return]

    def results(self, entry: str) -> None:
        """notification or widget: POST a drawn body."""
        path = NOTIFICATION if entry == "notification" else WIDGET

        @given(st.data())
        def example(data: st.DataObject) -> None:
            target, other, before, other_before = self._fresh(data)
            drawn = draw_payload(data, target, other)
            body, ctype = draw_body(data, drawn.raw)
            before_pk = _last_pk()
            request = Request("POST", path, body, {"Content-Type": ctype}, csrf=entry == "widget")
            response = self._one(entry, request, True, before_pk)
            after = self._transitions(
                entry, drawn, [(target, before, "target"), (other, other_before, "other")]
            )
            if entry == "widget" and response.status < 500:
                self._check_widget_reply(response, drawn, target, after[target.pk])

        self._settings(example)()

    def _check_widget_reply(
        self, response: Any, drawn: Drawn, target: PaymentSession, status_after: str
    ) -> None:
        try:
            reply = json.loads(response.body)
        except ValueError:
            self.figures.problems.append(f"widget: not JSON: {response.body[:100]!r}")
            return
        if set(reply) != {"status", "outcome", "redirect_url"}:
            self.figures.problems.append(f"widget: reply keys {sorted(reply)}")
            return
        if reply["status"] == "unknown":
            return
        proves = (
            drawn.key_of == "target"
            and drawn.claims is not None
            and drawn.claims.get("session_token") == target.token
            and drawn.claims.get("system_error") in (None, False)
        )
        if not proves or reply["status"] != status_after:
            self.figures.problems.append(
                f"widget: told {reply['status']!r} for {drawn.raw[:120]!r}"
            )

    def return_view(self) -> None:
        factory = RequestFactory()

        @given(st.data())
        def example(data: st.DataObject) -> None:
            target, other, before, other_before = self._fresh(data)
            drawn = draw_payload(data, target, other)
            value = quote(drawn.raw.encode("utf-8", "surrogatepass"), safe="")
            form = data.draw(st.sampled_from(["param", "param", "bare", "path", "extra"]))
            key = data.draw(
                st.sampled_from(
                    ["jwt", "token", "payment", "result", "data", "response", "x", "JWT"]
                )
            )
            if form == "param":
                path = f"{RETURN}?{key}={value}"
            elif form == "bare":
                path = f"{RETURN}?{value}"
            elif form == "path" and value.strip("."):
                # ("." and ".." would be removed from the path by the HTTP client itself.)
                path = f"{RETURN}{value}/"
            else:
                extra = quote(data.draw(any_text).encode("utf-8", "surrogatepass"), safe="")
                path = f"{RETURN}?a={extra}&{key}={value}&b=1"
            # Within gunicorn's 4 KB request line: beyond it the server answers, not the app.
            path = path[:3900]
            promised = _return_promised(factory, path)
            response = self._one("return", Request("GET", path), promised, _last_pk())
            after = self._transitions(
                "return", drawn, [(target, before, "target"), (other, other_before, "other")]
            )
            proves = (
                drawn.key_of == "target"
                and drawn.claims is not None
                and (drawn.claims.get("system_error") in (None, False))
            )
            # The view's own pages (200, 400) must say nothing for a result that proves
            # nothing; a 404 for a path that names no view is Django's, not the view's.
            page = response.status in (200, 400)
            if page and not proves and b"etpay-return--unknown" not in response.body:
                self.figures.problems.append(
                    f"return: HTTP {response.status} told a state for {path[:200]!r}"
                )
            del after

        self._settings(example)()

    def checkout(self) -> None:
        @given(st.data())
        def example(data: st.DataObject) -> None:
            fields: dict[str, Any] = {
                "merchant_order_id": data.draw(
                    st.one_of(
                        st.text("ABCXYZ0123456789-_", min_size=1, max_size=20).map("FZ-".__add__),
                        any_text,
                        st.integers(),
                        st.none(),
                        claim_value,
                    )
                ),
                "order_amount": data.draw(
                    st.one_of(
                        st.integers(min_value=-5, max_value=2**64),
                        st.floats(),
                        st.booleans(),
                        st.text(max_size=6),
                        st.none(),
                    )
                ),
            }
            optional = {
                "customer_email": st.one_of(st.just("payer@example.com"), any_text, claim_value),
                "metadata": st.one_of(
                    st.lists(
                        st.fixed_dictionaries(
                            {
                                "name": any_text,
                                "value": st.one_of(any_text, st.integers()),
                                "show": st.booleans(),
                            }
                        ),
                        max_size=3,
                    ),
                    claim_value,
                ),
                "user_bank_code": st.one_of(
                    st.sampled_from([*validators.BANK_CODES, "CL_ESTADO"]), any_text
                ),
                "user_rut": st.one_of(
                    st.sampled_from(["12.345.678-5", "11.111.111-1", "1-9", "12345678-9"]),
                    any_text,
                ),
                "is_rut_block": st.one_of(st.booleans(), claim_value),
                "payment_completed_url": st.one_of(
                    st.sampled_from(
                        ["https://shop.example/ok", "http://x.test/?a=1", "javascript:alert(1)"]
                    ),
                    any_text,
                ),
                "payment_webhook_url": st.one_of(st.just("https://shop.example/hook"), any_text),
                "concat": st.one_of(st.sampled_from(["&", "?", "&&&&&&&&&"]), any_text),
            }
            for name, strategy in optional.items():
                if data.draw(st.booleans()):
                    fields[name] = data.draw(strategy)
            body = json.dumps(fields, default=str).encode("utf-8", "surrogatepass")
            count = PaymentSession.objects.count()
            self.figures.requests += 1
            response = self.send(
                Request("POST", CHECKOUT, body, {"Content-Type": "application/json"})
            )
            self.search.search_response("fuzz initialize", response)
            stored = PaymentSession.objects.count() - count
            status = response.status
            if status >= 500:
                self.figures.server_errors.append(f"initialize: HTTP {status} for {body[:200]!r}")
            elif status == 200:
                pk = json.loads(response.body)["id"]
                row = PaymentSession.objects.filter(pk=pk).values_list("status", flat=True)
                if list(row) != ["pending"] or stored != 1:
                    self.figures.missing_rows.append(f"initialize: 200 but rows {list(row)}")
            elif status == 424:
                if stored != 1:
                    self.figures.missing_rows.append("initialize: 424 without an error row")
            elif status == 400:
                if stored != 0:
                    self.figures.problems.append("initialize: refused input stored a row")
            else:
                self.figures.problems.append(f"initialize: HTTP {status}")

        self._settings(example)()


def _last_pk() -> int:
    last = Notification.objects.order_by("-pk").values_list("pk", flat=True).first()
    return last or 0


def _return_promised(factory: RequestFactory, path: str) -> bool:
    """Whether the return view will find a JWT in ``path`` (and so must store a row)."""
    request = factory.get(path)
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return False
    try:
        return ReturnView().find_jwt(request, match.kwargs.get("jwt")) is not None
    except Exception:
        return True  # a query string the view cannot parse is stored as malformed


ENTRIES = ("notification", "widget", "return", "initialize")


def run(
    send: Callable[[Request], Any],
    search: SecretSearch,
    examples: int,
    seed_value: int,
    report: Callable[[str, Figures], None],
    entries: tuple[str, ...] = ENTRIES,
) -> Figures:
    """The entry points one after the other, ``examples`` inputs each; ``report`` is told each
    one's figures. (Sequential on purpose: each input's rows are counted by what is new in the
    table after it.)"""
    total = Figures()
    for entry in entries:
        figures = Figures(cases=0)
        fuzz = FuzzRun(send, search, figures, examples, seed_value)
        if entry in ("notification", "widget"):
            fuzz.results(entry)
        elif entry == "return":
            fuzz.return_view()
        else:
            fuzz.checkout()
        report(entry, figures)
        total.add(figures)
    return total
