"""Schema-driven fuzzing of the REST API (schemathesis + Hypothesis): no 5xx, replies as the
schema says, no secret in any reply. The heavy run generates hundreds of bodies and tokens per
operation; a fixed corpus of hostile bodies runs in every environment."""

from __future__ import annotations

import base64
import itertools
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
import requests
import responses as responses_lib
from django.conf import settings as django_settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from pytest_django import Settings
from rest_framework.test import APIClient

from django_etpay.models import PaymentSession
from django_etpay.testing import FakeEtpay
from tests.api_support import api_settings, assert_no_secrets, handed_out
from tests.factories import INIT_URL

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.api_urls")]

CREATE = "/etpay/api/sessions/"
#: Basic authentication, so that a fuzzer that only speaks HTTP can sign in.
BASIC = ["rest_framework.authentication.BasicAuthentication"]


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def any_order(request: Any, data: Any) -> dict[str, Any]:
    """The fuzz run's order hook: every reference names an order, so that generated bodies
    reach ETpay, the widget configuration and the reply instead of stopping at a 404."""
    import hashlib

    reference = str(data.get("order", ""))
    digest = hashlib.sha256(reference.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return {"merchant_order_id": f"FZ-{digest}", "order_amount": 6990}


@pytest.fixture
def fuzz_settings(settings: Settings) -> Iterator[None]:
    settings.ETPAY = api_settings(
        API_AUTHENTICATION_CLASSES=BASIC,
        API_THROTTLE_CLASSES=(),
        API_ORDER_HOOK=any_order,
    )
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def payer(django_user_model: Any) -> AbstractBaseUser:
    user: AbstractBaseUser = django_user_model.objects.create_user("payer", password="pw-payer")
    return user


def flaky_etpay(mock: responses_lib.RequestsMock) -> list[str]:
    """ETpay answering in turn a session, a 500, a timeout, garbage, for as long as the run.

    Returns the signature tokens it hands out, so that replies can be searched for them. Not
    :class:`django_etpay.testing.FakeEtpay` (the ``fake_etpay`` fixture, which the runs where
    ETpay works use): its faults are queued one per call, and a fuzz run makes hundreds of
    calls, each of which must meet the next turn of the cycle.
    """
    handed_out: list[str] = []
    turns = itertools.count()

    def reply(request: Any) -> tuple[int, dict[str, str], str]:
        turn = next(turns) % 4
        if turn == 1:
            return 500, {}, json.dumps({"message": "upstream failure"})
        if turn == 2:
            raise requests.ReadTimeout("read timed out")
        if turn == 3:
            return 200, {}, "<html>not json</html>"
        signature = f"sig-FUZZ-SECRET-{len(handed_out):05d}-0123456789abcdef0123456789abcdef"
        handed_out.append(signature)
        body = {"token": f"sess-fuzz-{len(handed_out):05d}", "signature_token": signature}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    mock.add_callback(responses_lib.POST, INIT_URL, callback=reply)
    return handed_out


def documented_statuses(path: str, method: str) -> set[int]:
    """The statuses the checked-in OpenAPI schema promises for an operation."""
    from django_etpay.api.schema import openapi_schema

    return {int(code) for code in openapi_schema()["paths"][path][method]["responses"]}


# -- the fast corpus: hostile bodies every environment sends ----------------------------------

#: (raw body, content type): what a careless or hostile client sends.
HOSTILE_BODIES: list[tuple[str | bytes, str]] = [
    ("", "application/json"),
    (" ", "application/json"),
    ("{", "application/json"),
    ("null", "application/json"),
    ("true", "application/json"),
    ("123", "application/json"),
    ("1e400", "application/json"),
    ("NaN", "application/json"),
    ('{"order": NaN}', "application/json"),
    ('{"order": Infinity}', "application/json"),
    ("[]", "application/json"),
    ('["cart-mug"]', "application/json"),
    ('{"order": {"$ne": null}}', "application/json"),
    ('{"order": 1e400}', "application/json"),
    ('{"order": -0}', "application/json"),
    ('{"order": "cart-mug", "order": "cart-big"}', "application/json"),
    ('{"customer_email": ["a@b.cl"]}', "application/json"),
    ('{"customer_email": "a@b.cl\\u0000"}', "application/json"),
    ('{"user_rut": "\\ud800"}', "application/json"),
    ('{"user_rut": 1.5}', "application/json"),
    ('{"user_bank_code": true}', "application/json"),
    ('{"user_bank_code": "CL_ESTADO\\n"}', "application/json"),
    ('{"order": "' + "\u202e" * 200 + '"}', "application/json"),
    ('{"order": "cart-mug", "order_amount": -1}', "application/json"),
    ('{"order": "cart-mug", "signature": "x"}', "application/json"),
    ('{"__proto__": {"admin": true}}', "application/json"),
    ("[" * 100_000, "application/json"),
    ('{"a":' * 50_000 + "1" + "}" * 50_000, "application/json"),
    ('{"order": "' + "x" * 1_000_000 + '"}', "application/json"),
    (b'{"order": "\xff\xfe"}', "application/json"),
    ('{"order": "cart-mug"}', "application/json; charset=latin-1"),
    ('{"order": "cart-mug"}', "application/json; charset=no-such-charset"),
    ('{"order": "cart-mug"}', "text/plain"),
    ("order=cart-mug", "application/x-www-form-urlencoded"),
    ('{"order": "cart-mug"}', "application/xml"),
    ('{"order": "cart-mug"}', ""),
]


def test_hostile_bodies_get_a_4xx_and_no_secret(
    fuzz_settings: None, payer: AbstractBaseUser, fake_etpay: FakeEtpay
) -> None:
    allowed = documented_statuses(CREATE, "post")
    client = APIClient(HTTP_AUTHORIZATION=basic("payer", "pw-payer"))
    for raw, content_type in HOSTILE_BODIES:
        response = client.generic("POST", CREATE, raw, content_type=content_type)
        label = f"{str(raw)[:40]!r} as {content_type!r}"
        assert response.status_code < 500, label
        assert response.status_code in allowed, label
        assert response["Content-Type"] == "application/json", label
        json.loads(response.content)
        assert_no_secrets(response, *handed_out(fake_etpay))


@pytest.mark.parametrize(
    "token",
    ["%00", "x" * 300, "..%2F..%2Fadmin", "%E2%80%AE", "sess-fuzz-00001", "'; DROP TABLE x; --"],
)
def test_hostile_tokens_are_not_found(
    fuzz_settings: None, payer: AbstractBaseUser, token: str
) -> None:
    client = APIClient(HTTP_AUTHORIZATION=basic("payer", "pw-payer"))
    response = client.get(f"{CREATE}{token}/")
    assert response.status_code == 404
    assert_no_secrets(response)


# -- the heavy run: schemathesis generates requests from the published schema ---------------

#: Examples per operation and generation mode; ETPAY_TEST_FUZZ_EXAMPLES scales the run.
FUZZ_EXAMPLES = int(os.environ.get("ETPAY_TEST_FUZZ_EXAMPLES", "500"))
#: Who sends the request: (Authorization header or None).
IDENTITIES = {
    "payer": basic("payer", "pw-payer"),
    "staff": basic("staff", "pw-staff"),
    "wrong password": basic("payer", "not-the-password"),
    "anonymous": None,
}
#: Mostly the payer (Hypothesis favours the first entry, and signed-in requests go deepest).
WHO = ["payer", "payer", "payer", "staff", "anonymous", "wrong password"]


class FuzzRun:
    """Sends schemathesis cases to the project's WSGI app and checks every reply."""

    def __init__(
        self,
        secrets: Callable[[], Iterable[str]],
        *,
        allowed_5xx: frozenset[int] = frozenset(),
    ) -> None:
        import schemathesis
        from django.core.wsgi import get_wsgi_application

        self.schema = schemathesis.openapi.from_wsgi("/etpay/api/schema/", get_wsgi_application())
        self.secrets = secrets
        self.allowed_5xx = allowed_5xx
        self.statuses: Counter[int] = Counter()

    def summary(self, label: str) -> str:
        """``label: N requests, {status: count}`` (shown with ``pytest -s``)."""
        return (
            f"\n{label}: {self.statuses.total()} requests, {dict(sorted(self.statuses.items()))}"
        )

    def checks(self) -> list[Any]:
        from schemathesis.specs.openapi import checks as openapi_checks

        return [
            openapi_checks.status_code_conformance,
            openapi_checks.content_type_conformance,
            openapi_checks.response_schema_conformance,
        ]

    def send(self, case: Any, who: str) -> None:
        headers = {"Authorization": IDENTITIES[who]} if IDENTITIES[who] else {}
        response = case.call(headers=headers)
        self.statuses[response.status_code] += 1
        status = response.status_code
        assert status < 500 or status in self.allowed_5xx, (status, response.content[:300])
        case.validate_response(response, checks=self.checks(), headers=headers)
        text = response.content.decode("utf-8", "replace") + json.dumps(dict(response.headers))
        for secret in (django_settings.TEST_MERCHANT_API_TOKEN, *self.secrets()):
            assert secret not in text, "a secret reached an API response"
        assert "signature_token" not in text.lower()
        assert "traceback" not in text.lower()

    def run(self, path: str, method: str, mode: str, *, tokens: list[str] | None = None) -> None:
        from hypothesis import HealthCheck, given
        from hypothesis import settings as hypothesis_settings
        from hypothesis import strategies as st
        from schemathesis.generation import GenerationMode

        operation = self.schema[path][method]
        strategy = operation.as_strategy(generation_mode=GenerationMode(mode))
        known = st.sampled_from(tokens) if tokens else st.nothing()

        @hypothesis_settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy, who=st.sampled_from(WHO), token=st.none() | known)
        def fuzz(case: Any, who: str, token: str | None) -> None:
            if token is not None:
                case.path_parameters = {**(case.path_parameters or {}), "token": token}
            self.send(case, who)

        fuzz()


@pytest.fixture
def wsgi_requests_keep_the_connection() -> Iterator[None]:
    """Let requests sent straight to the WSGI handler share the test's transaction.

    Django closes the database connection when a request finishes; its test client turns that
    off for the duration of a request, and the fuzzer's WSGI transport needs the same.
    """
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def people(
    wsgi_requests_keep_the_connection: None, django_user_model: Any, payer: AbstractBaseUser
) -> dict[str, AbstractBaseUser]:
    staff = django_user_model.objects.create_user("staff", password="pw-staff", is_staff=True)
    return {"payer": payer, "staff": staff}


@pytest.mark.heavy
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzz_create(
    fuzz_settings: None, people: dict[str, AbstractBaseUser], fake_etpay: FakeEtpay, mode: str
) -> None:
    """No 5xx at all while ETpay works: every 5xx would be the API's own fault."""
    run = FuzzRun(lambda: handed_out(fake_etpay))
    run.run(CREATE, "POST", mode)
    print(run.summary(f"POST {mode}"))
    assert run.statuses[201] > 0 or mode == "negative"
    assert run.statuses.total() >= FUZZ_EXAMPLES // 2


@pytest.mark.heavy
def test_fuzz_create_while_etpay_fails(
    fuzz_settings: None, people: dict[str, AbstractBaseUser], mocked_responses: Any
) -> None:
    """ETpay failing in every way: only 502 and 504, in the documented shape."""
    secrets = flaky_etpay(mocked_responses)
    run = FuzzRun(lambda: secrets, allowed_5xx=frozenset({502, 504}))
    run.run(CREATE, "POST", "positive")
    print(run.summary("POST while ETpay fails"))
    assert run.statuses[502] > 0


@pytest.mark.heavy
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzz_status(
    fuzz_settings: None, people: dict[str, AbstractBaseUser], fake_etpay: FakeEtpay, mode: str
) -> None:
    from tests.factories import make_session

    tokens = [
        str(make_session(created_by=people["payer"]).token),
        str(make_session(created_by=people["staff"], status=PaymentSession.Status.PAID).token),
        str(make_session().token),
    ]
    # The plain keys (values_list would give their encrypted form).
    stored = [s.signature_token for s in PaymentSession.objects.only("signature_token")]
    run = FuzzRun(lambda: [*handed_out(fake_etpay), *stored])
    run.run(f"{CREATE}{{token}}/", "GET", mode, tokens=tokens)
    print(run.summary(f"GET {mode}"))
    assert run.statuses[200] > 0
    assert run.statuses[404] > 0
