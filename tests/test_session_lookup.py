"""The lookup every result starts with: a session by its token, compiled once per connection.

``services._session_by_token`` must load exactly what ``PaymentSession.objects.filter(token=...)``
loads (every field, converted as the ORM converts it, a saved instance of the right database),
while compiling its SQL only once per database connection.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from django_etpay import crypto, services
from django_etpay.models import PaymentSession
from tests.factories import make_session

pytestmark = pytest.mark.django_db


def values(session: PaymentSession) -> dict[str, Any]:
    return {field.attname: getattr(session, field.attname) for field in session._meta.fields}


def test_it_loads_what_the_orm_loads() -> None:
    user = get_user_model().objects.create(username="payer")
    session = make_session(
        metadata={"cart": [1, 2], "note": "ñandú"},
        customer_email="payer@example.com",
        created_by=user,
        needs_reconciliation=True,
    )
    loaded = services._session_by_token(session.token or "")
    expected = PaymentSession.objects.get(pk=session.pk)
    assert loaded is not None
    assert values(loaded) == values(expected)
    # Converted as the ORM converts: JSON decoded, the key still encrypted and readable.
    assert loaded.metadata == {"cart": [1, 2], "note": "ñandú"}
    assert crypto.reveal(loaded.signature_token) == crypto.reveal(expected.signature_token)
    assert (loaded._state.adding, loaded._state.db) == (False, "default")
    assert loaded.created_by == user


def test_an_unknown_token_finds_nothing() -> None:
    make_session()
    assert services._session_by_token("no-such-token") is None
    assert services._session_by_token("' OR '1'='1") is None


def test_it_is_compiled_once_per_connection() -> None:
    first, second = make_session(), make_session()
    services._SESSION_LOOKUPS.clear()
    with (
        mock.patch.object(
            services, "_compile_session_lookup", wraps=services._compile_session_lookup
        ) as compile_lookup,
        CaptureQueriesContext(connection) as queries,
    ):
        assert services._session_by_token(first.token or "") == first
        assert services._session_by_token(second.token or "") == second
    assert compile_lookup.call_count == 1
    default = connections["default"]
    assert list(services._SESSION_LOOKUPS) == [default]
    # The token travels as a parameter: the same SQL both times, one statement each.
    assert len(queries.captured_queries) == 2
    sql, attnames, _compiler, _converters = services._SESSION_LOOKUPS[default]
    assert attnames == [field.attname for field in PaymentSession._meta.concrete_fields]
    assert "django-etpay-token-placeholder" not in sql
    assert sql.count("%s") == 1


@pytest.mark.parametrize(
    "compile_instead",
    [
        # Another parameter than the token.
        lambda real, **kwargs: real(token="other", status="pending"),
        # Not every column of the model.
        lambda real, **kwargs: real(**kwargs).only("id", "token"),
    ],
)
def test_a_lookup_compiled_otherwise_is_refused(compile_instead: Any) -> None:
    real = PaymentSession.objects.filter
    with (
        mock.patch.object(
            PaymentSession.objects,
            "filter",
            side_effect=lambda **kwargs: compile_instead(real, **kwargs),
        ),
        pytest.raises(RuntimeError, match=r"^Unexpected session lookup compiled: 'SELECT "),
    ):
        services._compile_session_lookup(connections["default"])
    assert services._SESSION_LOOKUPS == {}
