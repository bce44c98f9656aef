"""The named corpus: hostile and broken requests against the three views and the checkout that
calls ``initialize_session``, each with what the app must do about it.

A :class:`Case` builds its request(s) from a :class:`Context` (a fresh pending ``target``
session and an ``other`` one, both with known keys) and states the expected HTTP status, the
target's status afterwards (``final``; ``None``: unchanged), the row the app promises to store
(:class:`Row`; ``None``: none promised, e.g. a wrong method or a failed CSRF check), and the
payment signals the target must receive. The harness (:mod:`tests.attack.harness`) turns any
difference into one of the figures the run prints.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django_etpay.models import PaymentSession
from tests.factories import (
    DROP,
    PUBLIC_KEY_PEM,
    WRONG_KEY,
    hmac_jws,
    mint_jwt,
    mint_payment_claims,
    raw_jws,
    sign,
    tamper,
)

NOTIFICATION = "/etpay/notification/"
RETURN = "/etpay/return/"
WIDGET = "/etpay/widget-result/"
CHECKOUT = "/attack/checkout/"

#: The CSRF secret the harness sets as cookie and header for requests with ``csrf=True``.
CSRF_SECRET = "AttackCsrfSecret" + "x" * 16


@dataclass(frozen=True)
class Request:
    """One HTTP request, independent of the transport that sends it."""

    method: str
    path: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    csrf: bool = False  # send a valid CSRF cookie and X-CSRFToken header
    chunked: bool = False  # send the body with Transfer-Encoding: chunked (real HTTP only)


@dataclass
class Context:
    """What a case is built from. ``keys`` collects every plain key, for the secret search."""

    target: PaymentSession
    other: PaymentSession
    limit: int
    order_id: str
    keys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    """The notification the app promises to store: outcome, reason, and whose it is."""

    outcome: str
    reason: str = ""
    linked: str = "target"  # "target", "other" or "none"


Build = Callable[[Context], Request]
Check = Callable[[Context, Sequence[Any]], list[str]]


@dataclass(frozen=True)
class Case:
    """One named hostile (or control) request and what the app must do with it."""

    name: str
    entry: str  # notification, return, widget or initialize
    build: Build
    statuses: tuple[int, ...]
    final: str | None = None
    row: Row | None = None
    signals: tuple[str, ...] = ()
    setup: Callable[[Context], None] | None = None
    repeat: int = 1
    rows_after: int | None = None  # repeated cases: rows linked to the target afterwards
    check: Check | None = None
    http_only: bool = False
    session_row: str | None = None  # initialize: status of the session row it must leave
    #: Why a 5xx here comes from below the app (counted apart from the app's own 5xx).
    outside_app: str = ""


# -- request builders -------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def payment(raw: str) -> bytes:
    return json.dumps({"payment": raw}).encode()


def notify(body: bytes | str, ctype: str = "application/json", **headers: str) -> Request:
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return Request("POST", NOTIFICATION, data, {"Content-Type": ctype, **headers})


def widget(body: bytes | str, ctype: str = "application/json", **headers: str) -> Request:
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return Request("POST", WIDGET, data, {"Content-Type": ctype, **headers}, csrf=True)


def back(query: str) -> Request:
    return Request("GET", f"{RETURN}{query}")


def checkout(fields: dict[str, Any]) -> Request:
    return Request(
        "POST",
        CHECKOUT,
        json.dumps(fields).encode(),
        {"Content-Type": "application/json"},
    )


def valid(ctx: Context, **claims: Any) -> str:
    return mint_jwt(ctx.target, **claims)


def claims_jwt(claims: dict[str, Any], key: str) -> str:
    return sign(claims, key)


def system_error(ctx: Context, *, key: str | None = None, **extra: Any) -> str:
    claims = {"session_token": ctx.target.token, "system_error": True, **extra}
    claims.setdefault("iat", int(time.time()))
    return sign(claims, key if key is not None else (ctx.target.token or ""))


def sized(make: Callable[[str], str], length: int) -> str:
    """``make(padding)`` with the longest padding that keeps the JWT within ``length``."""
    padding = ""
    while len(make(padding + "p" * 64)) <= length:
        padding += "p" * 64
    return make(padding)


def deep_jws(ctx: Context, depth: int = 2300) -> str:
    """A JWT whose payload opens ``depth`` arrays: deeper than any JSON parser's recursion
    limit (PyJWT 2.8 let the RecursionError escape), yet within the size limits."""
    return payload_jws(ctx, f'{{"session_token": "{ctx.target.token}", "x": ' + "[" * depth)


def payload_jws(ctx: Context, payload: str) -> str:
    """A JWT with a hand-written payload (for JSON PyJWT itself would never produce)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    return f"{header}.{_b64(payload.encode())}.{_b64(b'x' * 32)}"


def multipart(field_name: str, value: str, boundary: str = "attackboundary") -> bytes:
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field_name}"\r\n\r\n'
        f"{value}\r\n--{boundary}--\r\n"
    ).encode()


def set_status(status: str) -> Callable[[Context], None]:
    def setup(ctx: Context) -> None:
        PaymentSession.objects.filter(pk=ctx.target.pk).update(status=status)
        ctx.target.status = status

    return setup


def fill_budget(counter: str, leave: int) -> Callable[[Context], None]:
    """Use up a session's storage budget but ``leave`` units."""

    def setup(ctx: Context) -> None:
        from django_etpay import conf

        setting = {
            "stored_rejections": "MAX_REJECTED_PER_SESSION",
            "stored_duplicates": "MAX_DUPLICATES_PER_SESSION",
        }[counter]
        cap = int(conf.get_setting(setting))
        PaymentSession.objects.filter(pk=ctx.target.pk).update(**{counter: cap - leave})

    return setup


# -- extra checks ------------------------------------------------------------------------------


def reveals_nothing(ctx: Context, responses: Sequence[Any]) -> list[str]:
    """A result that proves nothing must not tell the target's status or order."""
    problems = []
    for response in responses:
        text = response.body.decode("utf-8", "replace")
        if ctx.target.merchant_order_id in text:
            problems.append("the reply shows the target's order id")
        if response.headers.get("Content-Type", "").startswith("application/json"):
            if json.loads(text).get("status") != "unknown":
                problems.append(f"the reply tells a status: {text[:120]}")
        elif "etpay-return--unknown" not in text and response.status < 300:
            problems.append("the return page shows a state other than unknown")
    return problems


def widget_reply_is(expected: dict[str, Any]) -> Check:
    def check(ctx: Context, responses: Sequence[Any]) -> list[str]:
        problems = []
        for response in responses:
            data = json.loads(response.body)
            if data != expected:
                problems.append(f"widget replied {data}, expected {expected}")
        return problems

    return check


def json_keys_only(ctx: Context, responses: Sequence[Any]) -> list[str]:
    problems = []
    for response in responses:
        data = json.loads(response.body)
        if set(data) != {"status", "outcome", "redirect_url"}:
            problems.append(f"widget reply keys {sorted(data)}")
        if data["outcome"] == "rejected" and data["status"] != "unknown":
            problems.append("a rejected widget result told a status")
    return problems


def no_reflection(marker: str) -> Check:
    def check(ctx: Context, responses: Sequence[Any]) -> list[str]:
        return [
            f"the reply reflects {marker!r} unescaped"
            for response in responses
            if marker.encode() in response.body
        ]

    return check


def checkout_reply_has_no_key(ctx: Context, responses: Sequence[Any]) -> list[str]:
    problems = []
    for response in responses:
        if b"signature_token" in response.body:
            problems.append("the checkout reply names signature_token")
    return problems


# -- the corpus --------------------------------------------------------------------------------

REJ = "rejected"
DUP = "duplicate"
ACC = "accepted"
PAID = "paid"
FAILED = "failed"
COMPLETED = ("payment_completed",)


def _notification_cases() -> list[Case]:
    n = "notification"
    bad = (400,)

    def rejected(reason: str, linked: str = "target") -> Row:
        return Row(REJ, reason, linked)

    return [
        # controls: what must work keeps working
        Case(
            "valid-success",
            n,
            lambda c: notify(payment(valid(c))),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        Case(
            "valid-failure",
            n,
            lambda c: notify(payment(valid(c, payment_status=False))),
            (200,),
            FAILED,
            Row(ACC),
            ("payment_failed",),
        ),
        Case(
            "late-success-after-expiry",
            n,
            lambda c: notify(payment(valid(c))),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
            setup=set_status("expired"),
        ),
        Case(
            "duplicate-of-a-paid-result",
            n,
            lambda c: notify(payment(valid(c))),
            (200,),
            setup=set_status(PAID),
            row=Row(DUP),
        ),
        Case(
            "failure-replayed-after-success",
            n,
            lambda c: notify(payment(valid(c, payment_status=False))),
            (200,),
            setup=set_status(PAID),
            row=Row(DUP, "not_applicable"),
        ),
        Case(
            "failure-on-an-errored-session",
            n,
            lambda c: notify(payment(valid(c, payment_status="declined"))),
            (200,),
            setup=set_status("error"),
            row=Row(DUP, "not_applicable"),
        ),
        Case(
            "no-csrf-needed-server-to-server",
            n,
            lambda c: notify(payment(valid(c)), Origin="https://evil.example"),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        Case(
            "kid-and-jku-headers-are-ignored",
            n,
            lambda c: notify(
                payment(
                    sign(
                        mint_payment_claims(c.target),
                        c.target.signature_token,
                        headers={"kid": "../../etc/passwd", "jku": "https://evil.example/jwks"},
                    )
                )
            ),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        # algorithm confusion
        Case(
            "alg-none",
            n,
            lambda c: notify(
                payment(raw_jws({"alg": "none", "typ": "JWT"}, mint_payment_claims(c.target)))
            ),
            bad,
            row=rejected("bad_signature"),
        ),
        Case(
            "alg-None-capitalised",
            n,
            lambda c: notify(payment(raw_jws({"alg": "None"}, mint_payment_claims(c.target)))),
            bad,
            row=rejected("bad_signature"),
        ),
        Case(
            "alg-hs384",
            n,
            lambda c: notify(payment(mint_jwt(c.target, algorithm="HS384"))),
            bad,
            row=rejected("bad_signature"),
        ),
        Case(
            "alg-hs512",
            n,
            lambda c: notify(payment(mint_jwt(c.target, algorithm="HS512"))),
            bad,
            row=rejected("bad_signature"),
        ),
        Case(
            "alg-rs256-header",
            n,
            lambda c: notify(
                payment(raw_jws({"alg": "RS256"}, mint_payment_claims(c.target), b"\x01" * 256))
            ),
            bad,
            row=rejected("bad_signature"),
        ),
        Case(
            "alg-es256-header",
            n,
            lambda c: notify(
                payment(raw_jws({"alg": "ES256"}, mint_payment_claims(c.target), b"\x02" * 64))
            ),
            bad,
            row=rejected("bad_signature"),
        ),
        Case(
            "hs256-signed-with-a-public-key",
            n,
            lambda c: notify(
                payment(hmac_jws({"alg": "HS256"}, mint_payment_claims(c.target), PUBLIC_KEY_PEM))
            ),
            bad,
            row=rejected("bad_signature"),
        ),
        # key confusion
        Case(
            "wrong-key",
            n,
            lambda c: notify(payment(mint_jwt(c.target, key=WRONG_KEY))),
            bad,
            row=rejected("bad_signature"),
        ),
        Case(
            "another-sessions-key",
            n,
            lambda c: notify(payment(mint_jwt(c.target, key=c.other.signature_token))),
            bad,
            row=rejected("bad_signature"),
        ),
        Case(
            "another-sessions-result-retargeted",
            n,
            lambda c: notify(payment(tamper(mint_jwt(c.other), session_token=c.target.token))),
            bad,
            row=rejected("bad_signature"),
        ),
        Case(
            "result-signed-with-the-public-session-token",
            n,
            lambda c: notify(payment(mint_jwt(c.target, key=c.target.token))),
            bad,
            row=rejected("bad_signature"),
        ),
        Case(
            "target-claims-signed-for-the-other-session",
            n,
            lambda c: notify(
                payment(
                    sign(
                        mint_payment_claims(c.target, session_token=c.other.token),
                        c.target.signature_token,
                    )
                )
            ),
            bad,
            row=rejected("bad_signature", "other"),
        ),
        Case(
            "tampered-payment-status",
            n,
            lambda c: notify(payment(tamper(valid(c, payment_status=False), payment_status=True))),
            bad,
            row=rejected("bad_signature"),
        ),
        Case(
            "tampered-amount",
            n,
            lambda c: notify(payment(tamper(valid(c), merchant_amount=1))),
            bad,
            row=rejected("bad_signature"),
        ),
        # claim type games, with the right key
        Case(
            "amount-mismatch",
            n,
            lambda c: notify(payment(valid(c, merchant_amount=c.target.order_amount - 1))),
            bad,
            row=rejected("amount_mismatch"),
        ),
        Case(
            "amount-true",
            n,
            lambda c: notify(payment(valid(c, merchant_amount=True))),
            bad,
            row=rejected("invalid_claims"),
        ),
        Case(
            "amount-fraction",
            n,
            lambda c: notify(payment(valid(c, merchant_amount=c.target.order_amount + 0.5))),
            bad,
            row=rejected("invalid_claims"),
        ),
        Case(
            "amount-list",
            n,
            lambda c: notify(payment(valid(c, merchant_amount=[c.target.order_amount]))),
            bad,
            row=rejected("invalid_claims"),
        ),
        Case(
            "amount-negative-string",
            n,
            lambda c: notify(payment(valid(c, merchant_amount=f"-{c.target.order_amount}"))),
            bad,
            row=rejected("invalid_claims"),
        ),
        Case(
            "amount-fullwidth-digits",
            n,
            lambda c: notify(
                payment(
                    valid(
                        c,
                        merchant_amount="".join(
                            chr(0xFF10 + int(d)) for d in str(c.target.order_amount)
                        ),
                    )
                )
            ),
            bad,
            row=rejected("invalid_claims"),
        ),
        Case(
            "amount-nan",
            n,
            lambda c: notify(
                payment(
                    hmac_jws(
                        {"alg": "HS256"},
                        mint_payment_claims(c.target, merchant_amount=float("nan")),
                        c.target.signature_token.encode(),
                    )
                )
            ),
            bad,
            row=rejected("invalid_claims"),
        ),
        Case(
            "amount-huge",
            n,
            lambda c: notify(payment(valid(c, merchant_amount=10**40))),
            bad,
            row=rejected("amount_mismatch"),
        ),
        Case(
            "amount-missing-on-success",
            n,
            lambda c: notify(payment(valid(c, merchant_amount=DROP))),
            bad,
            row=rejected("invalid_claims"),
        ),
        Case(
            "amount-as-digit-string",
            n,
            lambda c: notify(payment(valid(c, merchant_amount=str(c.target.order_amount)))),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        Case(
            "order-mismatch",
            n,
            lambda c: notify(payment(valid(c, merchant_order_id=c.other.merchant_order_id))),
            bad,
            row=rejected("order_mismatch"),
        ),
        Case(
            "order-with-trailing-space",
            n,
            lambda c: notify(
                payment(valid(c, merchant_order_id=c.target.merchant_order_id + " "))
            ),
            bad,
            row=rejected("order_mismatch"),
        ),
        Case(
            "order-true",
            n,
            lambda c: notify(payment(valid(c, merchant_order_id=True))),
            bad,
            row=rejected("invalid_claims"),
        ),
        Case(
            "order-object",
            n,
            lambda c: notify(payment(valid(c, merchant_order_id={}))),
            bad,
            row=rejected("invalid_claims"),
        ),
        Case(
            "currency-mismatch",
            n,
            lambda c: notify(payment(valid(c, merchant_currency="USD"))),
            bad,
            row=rejected("currency_mismatch"),
        ),
        Case(
            "currency-number",
            n,
            lambda c: notify(payment(valid(c, merchant_currency=152))),
            bad,
            row=rejected("currency_mismatch"),
        ),
        Case(
            "payment-status-yes",
            n,
            lambda c: notify(payment(valid(c, payment_status="yes"))),
            (200,),
            row=Row(DUP, "not_applicable"),
        ),
        Case(
            "payment-status-one",
            n,
            lambda c: notify(payment(valid(c, payment_status=1))),
            (200,),
            row=Row(DUP, "not_applicable"),
        ),
        Case(
            "system-error-not-boolean",
            n,
            lambda c: notify(payment(valid(c, system_error="true"))),
            bad,
            row=rejected("invalid_claims"),
        ),
        # the session_token claim
        Case(
            "session-token-number",
            n,
            lambda c: notify(payment(claims_jwt({"session_token": 12345}, WRONG_KEY))),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "session-token-list",
            n,
            lambda c: notify(payment(claims_jwt({"session_token": [c.target.token]}, WRONG_KEY))),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "session-token-nul",
            n,
            lambda c: notify(claims_jwt({"session_token": "x\x00"}, WRONG_KEY), "text/plain"),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "session-token-lone-surrogate",
            n,
            lambda c: notify(claims_jwt({"session_token": "x\ud800"}, WRONG_KEY), "text/plain"),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "system-error-session-token-nul",
            n,
            lambda c: notify(
                claims_jwt({"session_token": "x\x00", "system_error": True}, WRONG_KEY),
                "text/plain",
            ),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "session-token-300-chars",
            n,
            lambda c: notify(payment(claims_jwt({"session_token": "s" * 300}, WRONG_KEY))),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "unknown-session",
            n,
            lambda c: notify(payment(valid(c, session_token="sess-nobody-0123456789abcdef"))),
            bad,
            row=rejected("unknown_session", "none"),
        ),
        # forged system errors (signed with the public session token)
        Case(
            "system-error-forged-with-payment-status-true",
            n,
            lambda c: notify(
                payment(
                    system_error(
                        c,
                        payment_status=True,
                        merchant_amount=c.target.order_amount,
                        merchant_order_id=c.target.merchant_order_id,
                    )
                )
            ),
            (200,),
            row=Row(DUP, "system_error"),
        ),
        Case(
            "system-error-forged-on-a-paid-session",
            n,
            lambda c: notify(payment(system_error(c))),
            (200,),
            setup=set_status(PAID),
            row=Row(DUP, "system_error"),
        ),
        Case(
            "system-error-forged-padded",
            n,
            lambda c: notify(payment(sized(lambda pad: system_error(c, pad=pad), c.limit - 20))),
            (200,),
            row=Row(DUP, "system_error"),
        ),
        Case(
            "system-error-string-flag-with-the-session-token",
            n,
            lambda c: notify(
                payment(
                    claims_jwt(
                        {
                            "session_token": c.target.token,
                            "system_error": "true",
                            "payment_status": True,
                        },
                        c.target.token or "",
                    )
                )
            ),
            bad,
            row=rejected("bad_signature"),
        ),
        # what PostgreSQL cannot store, in a signed result
        Case(
            "payer-fields-with-nul",
            n,
            lambda c: notify(
                payment(
                    valid(
                        c,
                        user_bank="a\x00b",
                        user_account="\x00",
                        user_rut="1\x00",
                        payment_token="p\x00",
                    )
                )
            ),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        Case(
            "payer-fields-with-lone-surrogates",
            n,
            lambda c: notify(
                payment(
                    valid(c, user_bank="a\ud800", user_account="\udfff", payment_token="p\ud800")
                )
            ),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        Case(
            "payer-fields-oversized",
            n,
            lambda c: notify(payment(sized(lambda pad: valid(c, user_bank=pad), c.limit - 20))),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        Case(
            "other-claims-with-nul",
            n,
            lambda c: notify(payment(valid(c, merchant_name="x\x00y", merchant_amount=1))),
            bad,
            row=rejected("amount_mismatch"),
        ),
        # registered claims
        Case(
            "iat-in-the-future",
            n,
            lambda c: notify(payment(valid(c, iat=int(time.time()) + 3600))),
            bad,
            row=rejected("invalid_claims"),
        ),
        Case(
            "iat-not-a-number",
            n,
            lambda c: notify(payment(valid(c, iat="yesterday"))),
            bad,
            row=rejected("invalid_claims"),
        ),
        Case(
            "exp-in-the-past",
            n,
            lambda c: notify(payment(valid(c, exp=int(time.time()) - 3600))),
            bad,
            row=rejected("invalid_claims"),
        ),
        Case(
            "nbf-in-the-future",
            n,
            lambda c: notify(payment(valid(c, nbf=int(time.time()) + 3600))),
            bad,
            row=rejected("invalid_claims"),
        ),
        # parser attacks
        Case(
            "payload-nested-2300-deep",
            n,
            lambda c: notify(deep_jws(c), "text/plain"),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "payload-integer-of-2000-digits",
            n,
            lambda c: notify(
                payload_jws(c, f'{{"session_token": "{c.target.token}", "x": {"9" * 2000}}}'),
                "text/plain",
            ),
            bad,
            row=rejected("bad_signature"),
        ),
        Case(
            "amount-integer-of-2000-digits",
            n,
            lambda c: notify(payment(valid(c, merchant_amount=int("9" * 2000)))),
            bad,
            row=rejected("amount_mismatch"),
        ),
        Case(
            "payload-not-an-object",
            n,
            lambda c: notify(payload_jws(c, "[1, 2]"), "text/plain"),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "header-not-json",
            n,
            lambda c: notify("bm90IGpzb24." + valid(c).split(".", 1)[1], "text/plain"),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "non-ascii-jwt",
            n,
            lambda c: notify(payment("é.é.é")),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "nul-in-jwt",
            n,
            lambda c: notify(payment("a\x00b.c.d")),
            bad,
            row=rejected("malformed", "none"),
        ),
        # bodies
        Case("empty-body", n, lambda c: notify(b""), bad, row=rejected("malformed", "none")),
        Case(
            "whitespace-body",
            n,
            lambda c: notify(b" \r\n\t "),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "invalid-json",
            n,
            lambda c: notify(b'{"payment": '),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "json-array",
            n,
            lambda c: notify(json.dumps([valid(c)])),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "json-payment-null",
            n,
            lambda c: notify(b'{"payment": null}'),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "json-payment-object",
            n,
            lambda c: notify(json.dumps({"payment": {"jwt": valid(c)}})),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "json-nested-3000-deep",
            n,
            lambda c: notify(b"[" * 3000),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "json-invalid-utf8",
            n,
            lambda c: notify(b'{"payment": "\xff\xfe"}'),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "oversized-body",
            n,
            lambda c: notify(payment(valid(c)) + b" " * c.limit),
            (413,),
            row=rejected("too_large", "none"),
        ),
        Case(
            "xml-content-type",
            n,
            lambda c: notify(f"<p>{valid(c)}</p>", "application/xml"),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "binary-garbage",
            n,
            lambda c: notify(bytes(range(256)), "application/octet-stream"),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "form-latin1",
            n,
            lambda c: notify(
                f"payment={valid(c)}".encode("latin-1"),
                "application/x-www-form-urlencoded; charset=iso-8859-1",
            ),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        Case(
            "form-latin1-garbage",
            n,
            lambda c: notify(
                b"payment=a.b.c", "application/x-www-form-urlencoded; charset=iso-8859-1"
            ),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "form-utf16",
            n,
            lambda c: notify(
                f"payment={valid(c)}".encode("utf-16"),
                "application/x-www-form-urlencoded; charset=utf-16",
            ),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        Case(
            "form-ascii-declared-utf16",
            n,
            lambda c: notify(
                f"payment={valid(c)}", "application/x-www-form-urlencoded; charset=utf-16"
            ),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "form-unknown-charset",
            n,
            lambda c: notify(
                f"payment={valid(c)}", "application/x-www-form-urlencoded; charset=x-no-such"
            ),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        Case(
            "form-too-many-fields",
            n,
            lambda c: notify("a&" * 1200 + "payment=x", "application/x-www-form-urlencoded"),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "multipart-valid",
            n,
            lambda c: notify(
                multipart("payment", valid(c)), "multipart/form-data; boundary=attackboundary"
            ),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        Case(
            "multipart-broken",
            n,
            lambda c: notify(b"--x\r\nnonsense", "multipart/form-data; boundary=attackboundary"),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "multipart-without-boundary",
            n,
            lambda c: notify(multipart("payment", valid(c)), "multipart/form-data"),
            bad,
            row=rejected("malformed", "none"),
        ),
        Case(
            "chunked-valid",
            n,
            lambda c: Request(
                "POST",
                NOTIFICATION,
                payment(valid(c)),
                {"Content-Type": "application/json"},
                chunked=True,
            ),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
            http_only=True,
        ),
        Case(
            "chunked-oversized",
            n,
            lambda c: Request(
                "POST",
                NOTIFICATION,
                payment(valid(c)) + b" " * c.limit,
                {"Content-Type": "application/json"},
                chunked=True,
            ),
            (413,),
            row=rejected("too_large", "none"),
            http_only=True,
        ),
        # headers Django itself refuses
        Case(
            "content-type-rfc2231-unknown-charset",
            n,
            # Garbage, so that a Django release that lets the header through gets a plain 400.
            lambda c: notify(b"garbage", "application/json; charset*=x-bad''abc"),
            (400,),
            http_only=True,
            outside_app="Django builds the request, and raises BadRequest "
            "for this Content-Type, before any middleware or view runs",
        ),
        Case(
            "content-type-over-the-header-limit",
            n,
            lambda c: notify(payment(valid(c)), "application/json; " + "a=b; " * 2100),
            (431,),
            http_only=True,
        ),
        # methods
        Case("method-get", n, lambda c: Request("GET", NOTIFICATION), (405,)),
        Case("method-put", n, lambda c: Request("PUT", NOTIFICATION, payment(valid(c))), (405,)),
        Case("method-delete", n, lambda c: Request("DELETE", NOTIFICATION), (405,)),
        Case(
            "method-patch", n, lambda c: Request("PATCH", NOTIFICATION, payment(valid(c))), (405,)
        ),
        # bounds under concurrency
        Case(
            "rejection-cap-under-concurrency",
            n,
            lambda c: notify(payment(mint_jwt(c.target, key=WRONG_KEY))),
            bad,
            setup=fill_budget("stored_rejections", 5),
            repeat=30,
            rows_after=5,
        ),
        Case(
            "duplicate-cap-under-concurrency",
            n,
            lambda c: notify(payment(system_error(c))),
            (200,),
            setup=fill_budget("stored_duplicates", 5),
            repeat=30,
            rows_after=5,
        ),
        Case(
            "same-success-delivered-at-once",
            n,
            lambda c: notify(payment(valid(c))),
            (200,),
            PAID,
            signals=COMPLETED,
            repeat=20,
            rows_after=20,
        ),
    ]


def _return_cases() -> list[Case]:
    r = "return"
    return [
        Case(
            "return-valid",
            r,
            lambda c: back(f"?jwt={valid(c)}"),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        Case(
            "return-valid-as-path",
            r,
            lambda c: back(f"{valid(c)}/"),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        Case(
            "return-valid-bare-query",
            r,
            lambda c: back(f"?{valid(c)}"),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        Case(
            "return-failure-page",
            r,
            lambda c: back(f"?jwt={valid(c, payment_status=False)}"),
            (200,),
            FAILED,
            Row(ACC),
            ("payment_failed",),
            check=lambda c, rs: (
                [] if b"etpay-return--failed" in rs[0].body else ["the failed page is not shown"]
            ),
        ),
        Case(
            "return-bad-signature",
            r,
            lambda c: back(f"?jwt={mint_jwt(c.target, key=WRONG_KEY)}"),
            (400,),
            row=Row(REJ, "bad_signature"),
            check=reveals_nothing,
        ),
        Case(
            "return-another-sessions-key",
            r,
            lambda c: back(f"?jwt={mint_jwt(c.target, key=c.other.signature_token)}"),
            (400,),
            row=Row(REJ, "bad_signature"),
            check=reveals_nothing,
        ),
        Case(
            "return-amount-mismatch-on-a-paid-session",
            r,
            lambda c: back(f"?jwt={valid(c, merchant_amount=1)}"),
            (400,),
            setup=set_status(PAID),
            row=Row(REJ, "amount_mismatch"),
            check=reveals_nothing,
        ),
        Case(
            "return-session-token-nul",
            r,
            lambda c: back(f"?jwt={claims_jwt({'session_token': 'x' + chr(0)}, WRONG_KEY)}"),
            (400,),
            row=Row(REJ, "malformed", "none"),
        ),
        Case(
            "return-system-error-session-token-surrogate",
            r,
            lambda c: back(
                "?jwt=" + claims_jwt({"session_token": "x\ud800", "system_error": True}, WRONG_KEY)
            ),
            (400,),
            row=Row(REJ, "malformed", "none"),
        ),
        Case(
            "return-nested-2300-deep",
            r,
            lambda c: back("?jwt=" + deep_jws(c)),
            (400,),
            row=Row(REJ, "malformed", "none"),
        ),
        Case(
            "return-jwt-over-the-limit",
            r,
            lambda c: back("?jwt=" + sized(lambda pad: valid(c, pad=pad), c.limit + 200)),
            (400,),
            row=Row(REJ, "too_large", "none"),
        ),
        Case(
            "return-too-many-query-fields",
            r,
            lambda c: back("?" + "a&" * 1200),
            (400,),
            row=Row(REJ, "malformed", "none"),
        ),
        Case(
            "return-forged-system-error-on-a-paid-session",
            r,
            lambda c: back(f"?jwt={system_error(c)}"),
            (200,),
            setup=set_status(PAID),
            row=Row(DUP, "system_error"),
            check=reveals_nothing,
        ),
        Case(
            "return-forged-system-error-on-a-failed-session",
            r,
            lambda c: back(f"?jwt={system_error(c)}"),
            (200,),
            setup=set_status(FAILED),
            row=Row(DUP, "system_error"),
            check=reveals_nothing,
        ),
        Case(
            "return-script-in-the-jwt",
            r,
            lambda c: back("?jwt=%3Cscript%3Ealert(1)%3C/script%3E"),
            (400,),
            row=Row(REJ, "malformed", "none"),
            check=no_reflection("<script>alert(1)"),
        ),
        Case("return-without-jwt", r, lambda c: back("?order=1"), (200,)),
        # The CSRF check answers first (403); either way nothing is recorded.
        Case(
            "return-method-post",
            r,
            lambda c: Request(
                "POST", RETURN, b"jwt=x", {"Content-Type": "application/x-www-form-urlencoded"}
            ),
            (403,),
        ),
        Case(
            "return-payer-fields-with-nul",
            r,
            lambda c: back(f"?jwt={valid(c, user_bank='a' + chr(0))}"),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
    ]


def _widget_cases() -> list[Case]:
    w = "widget"
    unknown_rejected = {"status": "unknown", "outcome": "rejected", "redirect_url": None}
    unknown_duplicate = {"status": "unknown", "outcome": "duplicate", "redirect_url": None}
    return [
        Case(
            "widget-valid",
            w,
            lambda c: widget(payment(valid(c))),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
            check=widget_reply_is({"status": "paid", "outcome": "accepted", "redirect_url": None}),
        ),
        Case(
            "widget-without-csrf",
            w,
            lambda c: Request(
                "POST", WIDGET, payment(valid(c)), {"Content-Type": "application/json"}
            ),
            (403,),
        ),
        Case(
            "widget-csrf-header-not-matching-the-cookie",
            w,
            lambda c: Request(
                "POST",
                WIDGET,
                payment(valid(c)),
                {"Content-Type": "application/json", "X-CSRFToken": "B" * 32},
            ),
            (403,),
        ),
        Case(
            "widget-cross-origin",
            w,
            lambda c: widget(payment(valid(c)), Origin="https://evil.example"),
            (403,),
        ),
        Case(
            "widget-form-latin1",
            w,
            lambda c: widget(
                f"payment={valid(c)}&csrfmiddlewaretoken={CSRF_SECRET}".encode("latin-1"),
                "application/x-www-form-urlencoded; charset=iso-8859-1",
            ),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
        ),
        Case(
            "widget-form-latin1-garbage",
            w,
            lambda c: widget(
                b"payment=a.b.c", "application/x-www-form-urlencoded; charset=iso-8859-1"
            ),
            (400,),
            row=Row(REJ, "malformed", "none"),
            check=widget_reply_is(unknown_rejected),
        ),
        Case(
            "widget-multipart-broken",
            w,
            lambda c: widget(b"--x\r\nnonsense", "multipart/form-data; boundary=attackboundary"),
            (400,),
            row=Row(REJ, "malformed", "none"),
            check=json_keys_only,
        ),
        Case(
            "widget-oversized",
            w,
            lambda c: widget(payment(valid(c)) + b" " * c.limit),
            (413,),
            row=Row(REJ, "too_large", "none"),
            check=json_keys_only,
        ),
        Case(
            "widget-forged-system-error-on-a-paid-session",
            w,
            lambda c: widget(payment(system_error(c))),
            (200,),
            setup=set_status(PAID),
            row=Row(DUP, "system_error"),
            check=widget_reply_is(unknown_duplicate),
        ),
        Case(
            "widget-forged-system-error-on-a-failed-session",
            w,
            lambda c: widget(payment(system_error(c))),
            (200,),
            setup=set_status(FAILED),
            row=Row(DUP, "system_error"),
            check=widget_reply_is(unknown_duplicate),
        ),
        Case(
            "widget-bad-signature-on-a-paid-session",
            w,
            lambda c: widget(payment(mint_jwt(c.target, key=WRONG_KEY))),
            (400,),
            setup=set_status(PAID),
            row=Row(REJ, "bad_signature"),
            check=widget_reply_is(unknown_rejected),
        ),
        Case(
            "widget-session-token-nul",
            w,
            lambda c: widget(payment(claims_jwt({"session_token": "x\x00"}, WRONG_KEY))),
            (400,),
            row=Row(REJ, "malformed", "none"),
            check=json_keys_only,
        ),
        Case(
            "widget-nested-2300-deep",
            w,
            lambda c: widget(deep_jws(c), "text/plain"),
            (400,),
            row=Row(REJ, "malformed", "none"),
        ),
        Case("widget-method-get", w, lambda c: Request("GET", WIDGET, csrf=True), (405,)),
        Case(
            "widget-chunked",
            w,
            lambda c: Request(
                "POST",
                WIDGET,
                payment(valid(c)),
                {"Content-Type": "application/json"},
                csrf=True,
                chunked=True,
            ),
            (200,),
            PAID,
            Row(ACC),
            COMPLETED,
            http_only=True,
        ),
    ]


def _fields(ctx: Context, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"merchant_order_id": ctx.order_id, "order_amount": 23990}
    for key, value in overrides.items():
        if value is DROP:
            fields.pop(key, None)
        else:
            fields[key] = value
    return fields


def _reply(behaviour: str) -> Build:
    return lambda c: checkout(_fields(c, merchant_order_id=f"REPLY-{behaviour}~{c.order_id}"))


def _initialize_cases() -> list[Case]:
    i = "initialize"
    bad = (400,)
    return [
        Case(
            "init-valid",
            i,
            lambda c: checkout(
                _fields(
                    c,
                    customer_email="payer@example.com",
                    metadata=[{"name": "Pedido", "value": "1", "show": True}],
                )
            ),
            (200,),
            session_row="pending",
            check=checkout_reply_has_no_key,
        ),
        Case(
            "init-order-id-too-long",
            i,
            lambda c: checkout(_fields(c, merchant_order_id="o" * 65)),
            bad,
        ),
        Case("init-order-id-empty", i, lambda c: checkout(_fields(c, merchant_order_id="")), bad),
        Case(
            "init-order-id-nul",
            i,
            lambda c: checkout(_fields(c, merchant_order_id="OC-\x00")),
            bad,
        ),
        Case(
            "init-order-id-lone-surrogate",
            i,
            lambda c: checkout(_fields(c, merchant_order_id="OC-\ud800")),
            bad,
        ),
        Case(
            "init-order-id-object",
            i,
            lambda c: checkout(_fields(c, merchant_order_id={"$gt": ""})),
            bad,
        ),
        Case("init-amount-zero", i, lambda c: checkout(_fields(c, order_amount=0)), bad),
        Case("init-amount-negative", i, lambda c: checkout(_fields(c, order_amount=-1)), bad),
        Case("init-amount-float", i, lambda c: checkout(_fields(c, order_amount=23990.0)), bad),
        Case("init-amount-true", i, lambda c: checkout(_fields(c, order_amount=True)), bad),
        Case("init-amount-string", i, lambda c: checkout(_fields(c, order_amount="23990")), bad),
        Case(
            "init-amount-2-to-the-63", i, lambda c: checkout(_fields(c, order_amount=2**63)), bad
        ),
        Case("init-amount-missing", i, lambda c: checkout(_fields(c, order_amount=DROP)), bad),
        Case(
            "init-email-with-header-injection",
            i,
            lambda c: checkout(
                _fields(c, customer_email="a@example.com\r\nBcc: victim@example.com")
            ),
            bad,
        ),
        Case(
            "init-email-with-nul",
            i,
            lambda c: checkout(_fields(c, customer_email="a\x00@example.com")),
            bad,
        ),
        Case("init-metadata-not-a-list", i, lambda c: checkout(_fields(c, metadata="x")), bad),
        Case(
            "init-metadata-value-with-nul",
            i,
            lambda c: checkout(
                _fields(c, metadata=[{"name": "n", "value": "v\x00", "show": True}])
            ),
            bad,
        ),
        Case(
            "init-metadata-name-with-lone-surrogate",
            i,
            lambda c: checkout(
                _fields(c, metadata=[{"name": "n\ud800", "value": "v", "show": True}])
            ),
            bad,
        ),
        Case(
            "init-metadata-nested",
            i,
            lambda c: checkout(
                _fields(c, metadata=[{"name": "n", "value": [[["v"]]], "show": True}])
            ),
            bad,
        ),
        Case(
            "init-rut-wrong-check-digit",
            i,
            lambda c: checkout(_fields(c, user_rut="12.345.678-9")),
            bad,
        ),
        Case(
            "init-bank-code-unknown",
            i,
            lambda c: checkout(_fields(c, user_bank_code="cl_estado' OR 1=1")),
            bad,
        ),
        Case(
            "init-url-javascript",
            i,
            lambda c: checkout(_fields(c, payment_completed_url="javascript:alert(1)")),
            bad,
        ),
        Case(
            "init-url-with-crlf",
            i,
            lambda c: checkout(_fields(c, payment_webhook_url="https://shop.example/\r\nX: y")),
            bad,
        ),
        Case(
            "init-url-with-lone-surrogate",
            i,
            lambda c: checkout(_fields(c, payment_completed_url="https://shop.example/\ud800")),
            bad,
        ),
        Case("init-concat-too-long", i, lambda c: checkout(_fields(c, concat="&&&&&&&&&")), bad),
        Case("init-not-json", i, lambda c: Request("POST", CHECKOUT, b"{", {}), bad),
        Case(
            "init-etpay-reply-token-with-nul", i, _reply("nul-token"), (424,), session_row="error"
        ),
        Case(
            "init-etpay-reply-key-with-lone-surrogate",
            i,
            _reply("surrogate-key"),
            (424,),
            session_row="error",
        ),
        Case("init-etpay-reply-key-with-nul", i, _reply("nul-key"), (424,), session_row="error"),
        Case("init-etpay-reply-key-too-long", i, _reply("long-key"), (424,), session_row="error"),
        Case("init-etpay-reply-not-json", i, _reply("not-json"), (424,), session_row="error"),
        Case("init-etpay-reply-503", i, _reply("5xx"), (424,), session_row="error"),
        Case("init-etpay-reply-without-key", i, _reply("no-key"), (424,), session_row="error"),
        Case(
            "init-etpay-reply-key-is-a-number",
            i,
            _reply("key-number"),
            (424,),
            session_row="error",
        ),
        Case("init-etpay-reply-is-an-array", i, _reply("array"), (424,), session_row="error"),
        Case(
            "init-etpay-reply-reuses-a-token",
            i,
            _reply("dup-token"),
            (200, 424),
            session_row="any",
            repeat=2,
        ),
    ]


CASES: list[Case] = [
    *_notification_cases(),
    *_return_cases(),
    *_widget_cases(),
    *_initialize_cases(),
]

BY_NAME: dict[str, Case] = {case.name: case for case in CASES}
assert len(BY_NAME) == len(CASES), "case names are unique"
