"""Orchestration: create sessions with ETpay, apply the results ETpay sends.

Views and shop code call these functions; they use :mod:`django_etpay.client` for HTTP and
:mod:`django_etpay.models` for storage, and send :mod:`django_etpay.signals` after commit.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from weakref import WeakKeyDictionary

from django.db import DatabaseError, connections, router, transaction
from django.db.models import F
from django.dispatch import Signal
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from django_etpay import conf, duplicates, outbox, signals, tokens, validators
from django_etpay.client import get_client
from django_etpay.exceptions import (
    EtpayAPIError,
    EtpayConfigurationError,
    EtpayResponseError,
    EtpayValidationError,
    EtpayVerificationError,
)
from django_etpay.models import Notification, OutboxEffect, PaymentSession

logger = logging.getLogger("django_etpay")


# -- initialisation ---------------------------------------------------------------------------


def _validate_session_input(
    *,
    merchant_order_id: Any,
    order_amount: Any,
    customer_email: Any,
    metadata: Any,
    user_bank_code: Any,
    user_rut: Any,
    is_rut_block: Any,
    concat: Any,
    urls: dict[str, Any],
) -> dict[str, Any]:
    """Check every field, collect every problem, return the cleaned values."""
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, Any] = {}

    def check(name: str, value: Any, validator: Callable[[Any], Any]) -> None:
        try:
            cleaned[name] = validator(value)
        except ValueError as err:
            errors.setdefault(name, []).append(str(err))

    check("merchant_order_id", merchant_order_id, validators.order_id)
    check("order_amount", order_amount, validators.amount)
    if customer_email is not None:
        check("customer_email", customer_email, validators.email)
    if metadata is not None:
        check("metadata", metadata, validators.metadata)
    if user_bank_code is not None:
        check("user_bank_code", user_bank_code, validators.bank_code)
    if user_rut is not None:
        check("user_rut", user_rut, validators.rut)
    if is_rut_block is not None:
        if not isinstance(is_rut_block, bool):
            errors.setdefault("is_rut_block", []).append("must be true or false.")
        elif is_rut_block and user_rut is None:
            errors.setdefault("is_rut_block", []).append("needs user_rut to lock.")
        else:
            cleaned["is_rut_block"] = is_rut_block
    if concat is not None:
        check("concat", concat, validators.concat)
    for name, value in urls.items():
        if value is not None:
            check(name, value, validators.http_url)
    if errors:
        raise EtpayValidationError(errors)
    return cleaned


def _default_url(request: HttpRequest | None, name: str) -> str | None:
    """Absolute URL of one of this app's views, built from ``request``."""
    if request is None:
        return None
    try:
        path = reverse(f"django_etpay:{name}")
    except NoReverseMatch:
        raise EtpayConfigurationError(
            'Include django_etpay.urls in your URLconf (path("etpay/", '
            'include("django_etpay.urls"))) or pass the redirect and webhook URLs explicitly.'
        ) from None
    return request.build_absolute_uri(path)


@sensitive_variables("reply")
def initialize_session(
    merchant_order_id: str,
    order_amount: int,
    *,
    customer_email: str | None = None,
    metadata: list[dict[str, Any]] | None = None,
    user_bank_code: str | None = None,
    user_rut: str | None = None,
    is_rut_block: bool | None = None,
    payment_completed_url: str | None = None,
    payment_cancellation_url: str | None = None,
    payment_webhook_url: str | None = None,
    concat: str | None = None,
    merchant: str | None = None,
    request: HttpRequest | None = None,
) -> PaymentSession:
    """Create an ETpay payment session for an order and return its ``PaymentSession``.

    Every field is validated before any network call; all problems are reported together in
    one :class:`~django_etpay.exceptions.EtpayValidationError` (``.errors`` maps field names to
    messages). ``order_amount`` is a positive ``int`` of whole pesos.

    The row is saved as ``initializing`` before ETpay is called. On success it holds ETpay's
    tokens and is ``pending``, and ``session_initialized`` is sent after commit. On failure the
    row is marked ``error`` with the reason (and ``outcome_unknown`` when ETpay may have
    created the session anyway: read timeout, 5xx, unreadable reply) and the
    :class:`~django_etpay.exceptions.EtpayAPIError` is re-raised.

    When ``request`` is given, the redirect and webhook URLs that are not passed point at this
    app's ``return`` and ``notification`` views. Without ``request`` they are not sent and
    ETpay uses the URLs configured at onboarding.

    ``concat`` is the separator ETpay puts before the data it appends to the redirect URLs.
    When it is not given and a redirect URL already carries a query string, ``"&"`` is sent,
    so that ETpay's ``?...`` does not break the URL.

    A signed-in ``request.user`` is stored as the session's ``created_by`` (the REST API shows
    a session's status to the user who created it).

    When the call to ETpay fails, the raised error's ``session_id`` is the primary key of the
    row kept with the reason.

    Call it outside ``transaction.atomic()`` (or catch the error inside your view) if the error
    row must survive an exception that rolls your transaction back.
    """
    merchant_config = conf.get_merchant(merchant)
    # The shared client of this account (kept-alive connections); obtained before the row is
    # created, so that a configuration error leaves nothing behind.
    client = get_client(merchant)
    urls = {
        "payment_completed_url": payment_completed_url,
        "payment_cancellation_url": payment_cancellation_url,
        "payment_webhook_url": payment_webhook_url,
    }
    cleaned = _validate_session_input(
        merchant_order_id=merchant_order_id,
        order_amount=order_amount,
        customer_email=customer_email,
        metadata=metadata,
        user_bank_code=user_bank_code,
        user_rut=user_rut,
        is_rut_block=is_rut_block,
        concat=concat,
        urls=urls,
    )
    defaults = {
        "payment_completed_url": "return",
        "payment_cancellation_url": "return",
        "payment_webhook_url": "notification",
    }
    for field, view_name in defaults.items():
        if urls[field] is None:
            urls[field] = _default_url(request, view_name)
    if concat is None and any(
        "?" in (urls[field] or "")
        for field in ("payment_completed_url", "payment_cancellation_url")
    ):
        concat = "&"

    session = PaymentSession.objects.create(
        merchant=merchant_config.alias,
        environment=merchant_config.environment,
        merchant_order_id=cleaned["merchant_order_id"],
        order_amount=cleaned["order_amount"],
        currency=conf.get_setting("CURRENCY"),
        customer_email=cleaned.get("customer_email", ""),
        metadata=cleaned.get("metadata", []),
        user_bank_code=cleaned.get("user_bank_code", ""),
        user_rut=cleaned.get("user_rut", ""),
        is_rut_block=cleaned.get("is_rut_block"),
        payment_completed_url=urls["payment_completed_url"] or "",
        payment_cancellation_url=urls["payment_cancellation_url"] or "",
        payment_webhook_url=urls["payment_webhook_url"] or "",
        status=PaymentSession.Status.INITIALIZING,
        created_by=_signed_in_user(request),
    )
    optional = {
        "customer_email": cleaned.get("customer_email"),
        "metadata": cleaned.get("metadata"),
        "user_bank_code": cleaned.get("user_bank_code"),
        "user_rut": cleaned.get("user_rut"),
        "is_rut_block": cleaned.get("is_rut_block"),
        **urls,
        "concat": concat,
    }
    try:
        reply = client.initialize_session(
            merchant_order_id=session.merchant_order_id,
            order_amount=session.order_amount,
            **optional,
        )
    except EtpayAPIError as err:
        _mark_error(session, str(err), err.code, outcome_unknown=err.outcome_unknown)
        err.session_id = session.pk
        raise
    except Exception as err:
        # Not an ETpay failure (a bug, a signal handler...): the request may have gone out.
        _mark_error(session, f"Internal error ({type(err).__name__}).", "internal", True)
        raise

    terms_url = reply.get("terms_url")
    session.token = reply["token"]
    session.signature_token = reply["signature_token"]
    session.terms_url = terms_url if isinstance(terms_url, str) and len(terms_url) <= 2000 else ""
    session.status = PaymentSession.Status.PENDING
    stored_fields = ["token", "signature_token", "terms_url", "status", "updated_at"]
    try:
        if transaction.get_connection(session._state.db).in_atomic_block:
            # A savepoint, so that a failed save leaves a usable transaction for the error row.
            with transaction.atomic(using=session._state.db):
                session.save(update_fields=stored_fields)
        else:
            # In autocommit a failed UPDATE leaves nothing to roll back: no BEGIN and COMMIT.
            session.save(update_fields=stored_fields)
    except DatabaseError as err:
        # ETpay created a session that cannot be stored (e.g. a token another row has). The
        # database error is not chained: its text may quote the values it refused.
        session.token = None
        session.signature_token = ""
        session.terms_url = ""
        _mark_error(
            session,
            f"ETpay's session could not be stored ({type(err).__name__}).",
            "storage",
            outcome_unknown=True,
        )
        error = EtpayResponseError(
            "ETpay's reply to session/initialize could not be stored.", outcome_unknown=True
        )
        error.code = "storage"  # as on the row
        error.session_id = session.pk
        raise error from None
    logger.info(
        "ETpay session %s created for order %s (%d %s)",
        session.pk,
        session.merchant_order_id,
        session.order_amount,
        session.currency,
    )
    transaction.on_commit(
        lambda: signals.session_initialized.send(sender=PaymentSession, session=session)
    )
    return session


def _signed_in_user(request: HttpRequest | None) -> Any:
    """The authenticated user of ``request`` (``None`` for guests and without a request)."""
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def _mark_error(session: PaymentSession, message: str, code: str, outcome_unknown: bool) -> None:
    """Keep the row of a failed initialisation, with why it failed."""
    session.status = PaymentSession.Status.ERROR
    session.error = message
    session.error_code = code
    session.outcome_unknown = outcome_unknown
    session.needs_reconciliation = outcome_unknown
    session.save(
        update_fields=[
            "status",
            "error",
            "error_code",
            "outcome_unknown",
            "needs_reconciliation",
            "updated_at",
        ]
    )
    logger.warning(
        "ETpay session %s for order %s failed (%s, outcome %s): %s",
        session.pk,
        session.merchant_order_id,
        code,
        "unknown" if outcome_unknown else "known",
        message,
    )


# -- results ----------------------------------------------------------------------------------
#
# One pipeline for every result, whatever carried it: parse, find the session by the unverified
# session_token claim, verify with that session's own key, cross-check against the row, then
# decide and apply the transition under a row lock and record the outcome, and send signals on
# commit. Rejections are recorded after the locked block has been left, so that their record
# never depends on the fate of the transaction that processed them.

Channel = Notification.Channel
Outcome = Notification.Outcome
Reason = Notification.Reason
Result = Notification.Result

#: Channels that go through the payer's browser; see ``ACCEPT_BROWSER_RESULTS``.
BROWSER_CHANNELS: frozenset[str] = frozenset({Channel.REDIRECT, Channel.WIDGET})

_TARGET_STATUS: dict[str, str] = {
    Result.SUCCESS: PaymentSession.Status.PAID,
    Result.FAILURE: PaymentSession.Status.FAILED,
}

# The completion effect (and so the signal) of each transition a result makes.
_EFFECT_KINDS: dict[str, str] = {
    PaymentSession.Status.PAID: OutboxEffect.Kind.PAYMENT_COMPLETED,
    PaymentSession.Status.FAILED: OutboxEffect.Kind.PAYMENT_FAILED,
}

# Payer details ETpay reports -> (session field, its max_length).
_PAYER_FIELDS: dict[str, tuple[str, int]] = {
    "payment_token": ("payment_token", 255),
    "user_bank": ("payer_bank", 255),
    "user_account": ("payer_account", 255),
    "user_rut": ("payer_rut", 32),
}


_UTF8 = "utf-8"

#: What no database text column can hold: NUL (PostgreSQL) and lone surrogates (UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: str) -> str:
    """``value`` with NUL and lone surrogates replaced by U+FFFD: any database stores it."""
    return _UNSTORABLE.sub("\ufffd", value)


def _storable_text(raw: str) -> tuple[str, bool]:
    """``raw`` capped at ``NOTIFICATION_STORE_BYTES`` and made storable in any database."""
    limit = int(conf.get_setting("NOTIFICATION_STORE_BYTES"))
    encoded = _storable(raw).encode(_UTF8)
    if len(encoded) <= limit:
        return encoded.decode(_UTF8), False
    return encoded[:limit].decode(_UTF8, "ignore"), True


def _storable_claims(claims: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Claims as JSON any database accepts, or ``None`` when they cannot or should not be kept.

    Strings (keys too) lose NUL and lone surrogates (:func:`_storable`); NaN and infinities,
    which JSON columns refuse, and claims whose JSON exceeds ``NOTIFICATION_STORE_BYTES`` give
    ``None``.
    """
    if not claims:
        return None
    try:
        cleaned = _storable_json(dict(claims))
        size = len(json.dumps(cleaned, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        return None
    if size > int(conf.get_setting("NOTIFICATION_STORE_BYTES")):
        return None
    stored: dict[str, Any] = cleaned
    return stored


def _storable_json(value: Any) -> Any:
    """``value`` (decoded JSON) with every string made storable."""
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, dict):
        return {_storable(key): _storable_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable_json(item) for item in value]
    return value


def _clean_ip(value: str | None) -> str | None:
    """A valid IP address for ``remote_addr``, else ``None`` (never a database error)."""
    if not value or "%" in value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def _claim_str(claims: Mapping[str, Any], key: str, max_length: int) -> str:
    """A string claim, storable and cut to ``max_length``; ``""`` for anything else."""
    value = claims.get(key)
    return _storable(value)[:max_length] if isinstance(value, str) else ""


def _send_on_commit(signal: Signal, sender: type[Any], **kwargs: Any) -> None:
    """Send ``signal`` after commit; a failing receiver is logged and stops nothing else."""

    def send() -> None:
        for receiver_func, response in signal.send_robust(sender=sender, **kwargs):
            if isinstance(response, Exception):
                logger.error(
                    "Receiver %s of a django_etpay signal raised %s",
                    getattr(receiver_func, "__qualname__", type(receiver_func).__qualname__),
                    type(response).__name__,
                    exc_info=response,
                )

    transaction.on_commit(send)


def _new_notification(
    *,
    session: PaymentSession | None,
    channel: str,
    outcome: str,
    reason: str,
    detail: str,
    result: str,
    status_before: str,
    status_after: str,
    claims: Mapping[str, Any] | None,
    raw_body: str,
    remote_addr: str | None,
) -> Notification:
    body, truncated = _storable_text(raw_body)
    stored_claims = _storable_claims(claims)
    return Notification(
        session=session,
        channel=channel,
        outcome=outcome,
        reason=reason,
        detail=_storable_text(detail)[0][:2000],
        result=result,
        status_before=status_before,
        status_after=status_after,
        payment_token=_claim_str(stored_claims or {}, "payment_token", 255),
        raw_body=body,
        raw_body_truncated=truncated,
        claims=stored_claims,
        remote_addr=_clean_ip(remote_addr),
    )


def record_rejection(
    *,
    channel: str,
    reason: str,
    detail: str,
    raw_body: str = "",
    remote_addr: str | None = None,
    session: PaymentSession | None = None,
    claims: Mapping[str, Any] | None = None,
) -> Notification:
    """Store a rejected result and send ``notification_rejected`` after commit.

    Used by the pipeline and by views for bodies that never yield a JWT (too large, not
    parseable). ``raw_body`` is capped at ``NOTIFICATION_STORE_BYTES``. What a stranger can
    make the app store is bounded: results naming a known session are stored up to
    ``MAX_REJECTED_PER_SESSION`` per session (a counter on the session row, taken with a
    conditional ``UPDATE``, so the bound holds under concurrency), results naming none up to
    ``MAX_UNLINKED_REJECTED_PER_HOUR`` across the site. Beyond a bound the returned
    notification is not saved (``pk is None``) and no signal is sent; a warning is logged.
    """
    notification = _new_notification(
        session=session,
        channel=channel,
        outcome=Outcome.REJECTED,
        reason=reason,
        detail=detail,
        result="",
        status_before=session.status if session is not None else "",
        status_after=session.status if session is not None else "",
        claims=claims,
        raw_body=raw_body,
        remote_addr=remote_addr,
    )
    if session is not None:
        stored = _save_within_budget(
            notification,
            session.pk,
            counter="stored_rejections",
            cap=int(conf.get_setting("MAX_REJECTED_PER_SESSION")),
        )
    else:
        with transaction.atomic():
            stored = _unlinked_budget_left()
            if stored:
                notification.save()
    if not stored:
        logger.warning(
            "ETpay %s result for session %s rejected (%s), not stored: budget used up",
            channel,
            session.pk if session is not None else "unknown",
            reason,
        )
        return notification
    logger.info(
        "ETpay %s result rejected (%s) for session %s",
        channel,
        reason,
        session.pk if session is not None else "unknown",
    )
    _send_on_commit(
        signals.notification_rejected,
        sender=Notification,
        notification=notification,
        reason=reason,
    )
    return notification


def _unlinked_budget_left() -> bool:
    """Whether the hourly budget of rejected results naming no session has room left.

    Counted from the table: a soft bound, as concurrent requests may overshoot it by the number
    of workers.
    """
    cap = int(conf.get_setting("MAX_UNLINKED_REJECTED_PER_HOUR"))
    # Only rejections are stored without a session; (session, created_at) is indexed.
    recent = Notification.objects.filter(
        session=None, created_at__gte=timezone.now() - timedelta(hours=1)
    )
    return recent[:cap].count() < cap


#: Fields whose values PostgreSQL reads as text in ``INSERT ... SELECT`` without a cast.
_TEXT_TYPES = ("varchar", "text", "char")


def _save_within_budget(
    notification: Notification, session_pk: int, *, counter: str, cap: int
) -> bool:
    """Take one unit of a session's storage budget and save ``notification``, atomically.

    ``counter`` is ``stored_rejections`` or ``stored_duplicates``. The budget is a conditional
    ``UPDATE ... SET counter = counter + 1 WHERE counter < cap``: PostgreSQL re-checks the
    condition after the row lock, so concurrent requests never store more than ``cap``, and
    the notification is saved only when the counter moved, in the same transaction, so no
    unit is spent on a row that was not stored. Returns False (nothing saved) when the budget
    is used up.

    On PostgreSQL both are one statement (``WITH taken AS (UPDATE ...) INSERT ... SELECT ...
    FROM taken``): atomic without a transaction of its own, one round trip. The session row
    is locked only for that statement. Other databases take the counter and save the row in
    one short transaction.
    """
    alias = router.db_for_write(Notification)
    connection = connections[alias]
    if connection.vendor == "postgresql":
        statement = _budgeted_insert_sql(notification, connection, counter)
        if statement is not None:
            sql, params = statement
            with connection.cursor() as cursor:
                cursor.execute(sql, [session_pk, cap, *params])
                row = cursor.fetchone()
            if row is None:
                return False
            notification.pk = row[0]
            notification._state.adding = False
            notification._state.db = alias
            return True
    with transaction.atomic(using=alias):
        taken = PaymentSession.objects.filter(pk=session_pk, **{f"{counter}__lt": cap}).update(
            **{counter: F(counter) + 1}
        )
        if taken != 1:
            return False
        notification.save(using=alias)
    return True


def _budgeted_insert_sql(
    notification: Notification, connection: Any, counter: str
) -> tuple[str, list[Any]] | None:
    """The one-statement budgeted INSERT of ``notification`` for PostgreSQL, with its params.

    ``None`` when Django's own INSERT has a shape this does not expect (then the caller uses a
    transaction). The values are prepared as Django's INSERT prepares them (``pre_save``, so
    ``created_at`` is set, then ``get_db_prep_save``).
    """
    template = _budgeted_insert_template(connection, counter)
    if template is None:
        return None
    sql, fields = template
    return sql, _params_of(notification, fields, connection)


def _insert_head(compiled: list[tuple[str, Any]], field_count: int) -> str | None:
    """``INSERT INTO ... (columns)`` of Django's compiled single-row INSERT, or ``None``.

    ``None`` unless Django wrote exactly one statement ending in ``VALUES (%s, ...)`` with one
    placeholder per field: a shape this module does not know is not rewritten.
    """
    if len(compiled) != 1:
        return None
    # The last " VALUES ": a quoted column name may contain the word too.
    head, _, values = compiled[0][0].rpartition(" VALUES ")
    if values != "(" + ", ".join(["%s"] * field_count) + ")":
        return None
    return head


def _budgeted_insert_template(connection: Any, counter: str) -> tuple[str, list[Any]] | None:
    """``WITH taken AS (UPDATE ... counter + 1 ...) INSERT ... SELECT ... FROM taken``.

    Around the INSERT built once per database from Django's own (see :func:`_insert_select`,
    which caches it; what is added here is a few names).
    """
    insert = _insert_select(Notification, connection, source="taken")
    if insert is None:
        return None
    insert_sql, fields = insert
    quote = connection.ops.quote_name
    table = quote(PaymentSession._meta.db_table)
    column = quote(counter)
    pk = quote(PaymentSession._meta.pk.column)
    sql = (
        f"WITH taken AS (UPDATE {table} SET {column} = {column} + 1 "  # noqa: S608
        f"WHERE {pk} = %s AND {column} < %s RETURNING 1) "
        f"{insert_sql} RETURNING {_pk_of(Notification, connection)}"
    )
    return sql, fields


#: (database alias, model, source, computed columns) -> the INSERT ... SELECT and its fields.
#: Only SQL text derived from the models lives here, never a value. A database whose INSERT
#: cannot be reused is not cached: the check is cheap, and it takes the transaction path.
_INSERT_SELECTS: dict[tuple[Any, ...], tuple[str, list[Any]]] = {}


def _insert_select(
    model: type[Any], connection: Any, *, source: str, computed: Mapping[str, str] | None = None
) -> tuple[str, list[Any]] | None:
    """``INSERT INTO table (columns) SELECT values FROM source`` for one row of ``model``.

    Built once per database from Django's own INSERT (same columns, same order); ``None``
    when that INSERT has a shape this does not expect (see :func:`_insert_head`). The values
    are parameters, one per returned field, each cast to its column's type, since values in a
    ``SELECT`` list have no column to take their type from; columns named in ``computed``
    take that SQL expression instead (a column of ``source``) and no parameter. Text goes in
    as ``text``, not as ``varchar(n)``: an explicit cast to ``varchar(n)`` would truncate an
    over-long value silently, where the column refuses it, as the ORM's INSERT does.
    """
    computed = dict(computed or {})
    key = (connection.alias, model._meta.label, source, tuple(sorted(computed.items())))
    if key in _INSERT_SELECTS:
        return _INSERT_SELECTS[key]
    from django.db.models.sql import InsertQuery

    fields = [field for field in model._meta.local_concrete_fields if not field.primary_key]
    query = InsertQuery(model)
    query.insert_values(fields, [model()])
    head = _insert_head(query.get_compiler(connection=connection).as_sql(), len(fields))
    if head is None:
        return None
    values = []
    params = []
    for field in fields:
        if field.column in computed:
            values.append(computed[field.column])
            continue
        column_type = str(field.db_type(connection))
        values.append("%s::text" if column_type.startswith(_TEXT_TYPES) else f"%s::{column_type}")
        params.append(field)
    sql = f"{head} SELECT {', '.join(values)} FROM {source}"  # noqa: S608
    _INSERT_SELECTS[key] = (sql, params)
    return sql, params


def _pk_of(model: type[Any], connection: Any) -> str:
    """``"table"."pk"``, quoted."""
    quote = connection.ops.quote_name
    return f"{quote(model._meta.db_table)}.{quote(model._meta.pk.column)}"


def _params_of(instance: Any, fields: list[Any], connection: Any) -> list[Any]:
    """The values of ``fields`` as the ORM's INSERT prepares them (pre_save, then db prep)."""
    return [
        field.get_db_prep_save(field.pre_save(instance, True), connection=connection)
        for field in fields
    ]


def _transition_sql(
    connection: Any,
    session: PaymentSession,
    status_read: str,
    changes: Mapping[str, Any],
    notification: Notification,
    effect: OutboxEffect,
) -> tuple[str, list[Any]] | None:
    """The statement of :func:`_transition_in_one_statement`, with its parameters.

    ``WITH changed AS (UPDATE session ... WHERE id = %s AND status = %s RETURNING 1),
    recorded AS (INSERT notification ... SELECT ... FROM changed RETURNING id) INSERT outbox
    effect ... SELECT ..., recorded.id FROM recorded RETURNING id, notification_id``: the two
    rows exist exactly when the session changed, all in one statement, so atomic without a
    transaction of its own. ``None`` when Django's INSERTs have a shape this cannot reuse.
    """
    quote = connection.ops.quote_name
    notification_pk = quote(Notification._meta.pk.column)
    notification_column = OutboxEffect._meta.get_field("notification").column
    recorded = _insert_select(Notification, connection, source="changed")
    effected = _insert_select(
        OutboxEffect,
        connection,
        source="recorded",
        computed={notification_column: f"recorded.{notification_pk}"},
    )
    if recorded is None or effected is None:
        return None
    meta = PaymentSession._meta
    assignments = []
    params = []
    for name, value in changes.items():
        field: Any = meta.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection=connection))
    params += [session.pk, status_read]
    params += _params_of(notification, recorded[1], connection)
    params += _params_of(effect, effected[1], connection)
    outbox_table = quote(OutboxEffect._meta.db_table)
    sql = (
        f"WITH changed AS (UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608
        f"WHERE {quote(meta.pk.column)} = %s AND {quote(meta.get_field('status').column)} = %s "
        f"RETURNING 1), "
        f"recorded AS ({recorded[0]} RETURNING {_pk_of(Notification, connection)}) "
        f"{effected[0]} RETURNING {_pk_of(OutboxEffect, connection)}, "
        f"{outbox_table}.{quote(notification_column)}"
    )
    return sql, params


@dataclass
class _Decision:
    """What a verified result does to a session in a given state (see :func:`_decide`)."""

    status_before: str
    status_after: str
    #: Session fields to write, with their new values (``updated_at`` is added on save).
    changes: dict[str, Any]
    reason: str
    detail: str
    #: Set exactly when the status changes: the signal of the transition.
    signal: Signal | None


def _decide(
    session: PaymentSession, verified: tokens.VerifiedResult, *, channel: str
) -> _Decision:
    """The transition rule applied to ``session`` as read; changes nothing, in memory or not.

    The outcome is ``accepted`` exactly when the status changes (so one transition, one
    accepted record, one signal); every other verified result is ``duplicate``, with a reason
    when it is not a plain repeat: ``not_applicable`` (the transition rule forbids it, or
    ETpay's status value is unknown), ``system_error``, ``browser_not_trusted``.
    """
    status_before = session.status
    target = _TARGET_STATUS.get(verified.result)
    trusted = channel not in BROWSER_CHANNELS or bool(conf.get_setting("ACCEPT_BROWSER_RESULTS"))
    changes: dict[str, Any] = {}
    reason = ""
    signal: Signal | None = None

    if target is None:
        reason = Reason.SYSTEM_ERROR if verified.system_error else Reason.NOT_APPLICABLE
        detail = "Payment outcome unknown; the session needs reconciling."
        if not session.is_final and not session.needs_reconciliation:
            changes["needs_reconciliation"] = True
    elif session.status == target:
        detail = f"Already {target}."
        payment_token = _claim_str(verified.claims, "payment_token", 255)
        if payment_token and session.payment_token and payment_token != session.payment_token:
            # Same outcome, another payment: keep it visible instead of calling it a repeat.
            reason = Reason.NOT_APPLICABLE
            detail = f"Already {target} by another payment_token."
            logger.warning(
                "ETpay %s result for session %s reports a second payment_token",
                channel,
                session.pk,
            )
    elif not PaymentSession.transition_allowed(session.status, target):
        reason = Reason.NOT_APPLICABLE
        detail = f"A {verified.result} result does not change a {session.status} session."
    elif not trusted:
        reason = Reason.BROWSER_NOT_TRUSTED
        detail = "Browser results do not change a status (ACCEPT_BROWSER_RESULTS is off)."
        if not session.needs_reconciliation:
            changes["needs_reconciliation"] = True
    else:
        now = timezone.now()
        changes = {"status": target, "completed_at": now}
        if target == PaymentSession.Status.PAID:
            changes["paid_at"] = now
            signal = signals.payment_completed
        else:
            signal = signals.payment_failed
        if session.needs_reconciliation:
            changes["needs_reconciliation"] = False
        for claim, (field, max_length) in _PAYER_FIELDS.items():
            value = _claim_str(verified.claims, claim, max_length)
            if value:
                changes[field] = value
        detail = f"{status_before} -> {target}."
    return _Decision(
        status_before=status_before,
        status_after=changes.get("status", status_before),
        changes=changes,
        reason=reason,
        detail=detail,
        signal=signal,
    )


def _apply_verified(
    session: PaymentSession,
    verified: tokens.VerifiedResult,
    *,
    channel: str,
    raw_body: str,
    remote_addr: str | None,
    locked: bool = True,
) -> Notification:
    """Decide (:func:`_decide`) and apply what a verified, cross-checked result does.

    Must run inside ``transaction.atomic()`` with ``session`` locked, unless ``locked`` is
    false: then ``session`` was read without a lock and :func:`_changes_nothing` holds for it,
    so there is nothing to apply and only the record is stored (its budget taken atomically,
    see :func:`_save_within_budget`). Accepted results are always stored; duplicates up to
    ``MAX_DUPLICATES_PER_SESSION`` per session (the system-error JWT is signed with the public
    session token, so anyone holding a payment URL can mint them). Their effect on the session
    (the reconciliation flag) applies beyond the cap too.
    """
    decision = _decide(session, verified, channel=channel)
    if not locked and (decision.changes or decision.signal is not None):
        # _changes_nothing() and the rules above disagree: a programming error, never stored.
        raise RuntimeError("A result read without the row lock would change the session.")
    if decision.changes:
        for field, value in decision.changes.items():
            setattr(session, field, value)
        session.save(update_fields=[*decision.changes, "updated_at"])
    notification = _notification_of(
        decision, session, verified, channel=channel, raw_body=raw_body, remote_addr=remote_addr
    )
    if decision.signal is not None:
        # A transition is always recorded; only results that change nothing are budgeted.
        notification.save()
        _log_transition(session, decision, channel)
        # Recorded in this transaction, delivered after commit, re-delivered if this process
        # dies before every receiver finished (see django_etpay.outbox).
        outbox.record(
            _EFFECT_KINDS[session.status],
            session=session,
            notification=notification,
            previous_status=decision.status_before,
        )
        return notification
    # One mechanism, locked or not: the counter's conditional UPDATE and the row together (the
    # counter is not in the changes, so updated_at keeps saying when the session last changed).
    stored = _save_within_budget(
        notification,
        session.pk,
        counter="stored_duplicates",
        cap=int(conf.get_setting("MAX_DUPLICATES_PER_SESSION")),
    )
    if not stored:
        logger.warning(
            "ETpay %s result for session %s changes nothing (%s), not stored: budget used up",
            channel,
            session.pk,
            decision.reason or "duplicate",
        )
    # -- double payments (django_etpay.duplicates): a second payment_token on a paid session --
    if duplicates.is_extra_payment(session, notification):
        duplicates.record_duplicate(session, notification, notification.payment_token)
    # -- end of double payments --
    logger.debug(
        "ETpay %s result for session %s changes nothing (%s)",
        channel,
        session.pk,
        decision.reason or "duplicate",
    )
    return notification


def _notification_of(
    decision: _Decision,
    session: PaymentSession,
    verified: tokens.VerifiedResult,
    *,
    channel: str,
    raw_body: str,
    remote_addr: str | None,
) -> Notification:
    """The (unsaved) record of ``decision``."""
    return _new_notification(
        session=session,
        channel=channel,
        outcome=Outcome.ACCEPTED if decision.signal is not None else Outcome.DUPLICATE,
        reason=decision.reason,
        detail=decision.detail,
        result=verified.result,
        status_before=decision.status_before,
        status_after=decision.status_after,
        claims=verified.claims,
        raw_body=raw_body,
        remote_addr=remote_addr,
    )


def _log_transition(session: PaymentSession, decision: _Decision, channel: str) -> None:
    logger.info(
        "ETpay session %s for order %s: %s -> %s (%s)",
        session.pk,
        session.merchant_order_id,
        decision.status_before,
        decision.status_after,
        channel,
    )


def _transition_in_one_statement(
    session: PaymentSession,
    verified: tokens.VerifiedResult,
    *,
    channel: str,
    raw_body: str,
    remote_addr: str | None,
) -> Notification | None:
    """On PostgreSQL, apply a transition decided on the row read without a lock, in one statement.

    The statement changes the session only if its status is still the one the decision was
    made on (``UPDATE ... WHERE id = %s AND status = %s``), and stores the accepted record and
    the outbox effect in the same statement, only when that ``UPDATE`` changed the row (see
    :func:`_transition_sql`). PostgreSQL re-checks the condition on the newest version of the
    row once it holds the row's lock, so of two concurrent deliveries exactly one changes it;
    and a status never comes back to an earlier one (:meth:`PaymentSession.transition_allowed`),
    so an unchanged status means the decision still holds. The reconciliation flag is cleared
    whatever it was read as, as the locked path clears it.

    Returns the accepted notification (its effect delivered after commit), or ``None`` when
    there is nothing to do here: the decision is not a transition, the database is not
    PostgreSQL, or the status changed since it was read. The caller then decides again under
    the row lock.
    """
    alias = router.db_for_write(PaymentSession)
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return None
    decision = _decide(session, verified, channel=channel)
    if decision.signal is None:
        return None
    changes = {**decision.changes, "needs_reconciliation": False, "updated_at": timezone.now()}
    notification = _notification_of(
        decision, session, verified, channel=channel, raw_body=raw_body, remote_addr=remote_addr
    )
    effect, claim = outbox.new_effect(
        _EFFECT_KINDS[decision.status_after],
        session=session,
        previous_status=decision.status_before,
    )
    statement = _transition_sql(
        connection, session, decision.status_before, changes, notification, effect
    )
    if statement is None:
        return None
    sql, params = statement
    # Inside the caller's transaction a failed statement would break it; a savepoint keeps the
    # caller able to record the failure (the locked path's atomic block does the same).
    guard = transaction.atomic(using=alias) if connection.in_atomic_block else nullcontext()
    with guard, connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        logger.debug(
            "ETpay %s result for session %s: the status changed since it was read; "
            "deciding again under the row lock",
            channel,
            session.pk,
        )
        return None
    for field, value in changes.items():
        setattr(session, field, value)
    effect.notification = notification
    for instance, pk in ((effect, row[0]), (notification, row[1])):
        instance.pk = pk
        instance._state.adding = False
        instance._state.db = alias
    _log_transition(session, decision, channel)
    outbox.deliver_on_commit(effect, claim)
    return notification


def _run_pipeline(
    *,
    session_token: str,
    verify: Callable[[PaymentSession], tokens.VerifiedResult],
    channel: str,
    raw_body: str,
    remote_addr: str | None,
    unverified: Mapping[str, Any] | None,
) -> Notification:
    """Find the session, verify, cross-check, apply; record rejections after.

    The session is read without a lock and the result verified against it (its key is
    decrypted once, on that instance, and the JWT verified once). A result that cannot change
    the session whatever happens concurrently (:func:`_changes_nothing`) is recorded at once,
    without a transaction or a row lock. On PostgreSQL a transition is then applied in one
    statement that changes the row only if its status is still the one read
    (:func:`_transition_in_one_statement`). Any other result, and a transition whose session
    changed meanwhile, takes the row lock in a transaction and is decided again on the locked
    row.
    """
    session: PaymentSession | None = None
    try:
        session = _session_by_token(session_token)
        if session is None:
            raise _unknown_session()
        verified = verify(session)
        tokens.check_against_session(verified, session)
        if _changes_nothing(session, verified):
            return _apply_verified(
                session,
                verified,
                channel=channel,
                raw_body=raw_body,
                remote_addr=remote_addr,
                locked=False,
            )
        applied = _transition_in_one_statement(
            session, verified, channel=channel, raw_body=raw_body, remote_addr=remote_addr
        )
        if applied is not None:
            return applied
        with transaction.atomic():
            locked = next(
                iter(PaymentSession.objects.select_for_update().filter(pk=session.pk).order_by()),
                None,
            )
            if locked is None:
                raise _unknown_session()
            session = locked
            # The fields compared never change once ETpay gave the session its token; checked
            # again on the locked row all the same, without decrypting or decoding anything.
            tokens.check_against_session(verified, session)
            return _apply_verified(
                session, verified, channel=channel, raw_body=raw_body, remote_addr=remote_addr
            )
    except EtpayVerificationError as err:
        rejection = err
    except Exception as err:
        # Written after the atomic block rolled back, so it survives; then the error goes on
        # (the view answers 5xx so that ETpay retries).
        _record_internal_error(
            err,
            session=session,
            channel=channel,
            raw_body=raw_body,
            remote_addr=remote_addr,
            claims=unverified,
        )
        raise
    if rejection.reason == Reason.UNKNOWN_SESSION:
        session = None
    elif rejection.reason == Reason.KEY_UNAVAILABLE and session is not None:
        # The result cannot be verified until the keys are fixed; the status API needs no
        # signature key, so a reconciliation settles the session meanwhile.
        logger.error(
            "ETpay %s result for session %s cannot be verified: its signature_token cannot be "
            "decrypted with the configured keys (see etpay_rotate_keys)",
            channel,
            session.pk,
        )
        PaymentSession.objects.filter(pk=session.pk).update(needs_reconciliation=True)
    return record_rejection(
        channel=channel,
        reason=rejection.reason,
        detail=rejection.message,
        raw_body=raw_body,
        remote_addr=remote_addr,
        session=session,
        claims=unverified,
    )


#: Per database connection (so per thread, as Django's connections are): the compiled SELECT
#: of a session by its token, the attribute names of its columns, the compiler that applies
#: the ORM's converters to its values, and those converters.
_SESSION_LOOKUPS: WeakKeyDictionary[Any, tuple[str, list[str], Any, dict[int, Any]]] = (
    WeakKeyDictionary()
)

#: Stands for the token while the lookup is compiled; never sent to the database.
_TOKEN_PLACEHOLDER = "django-etpay-token-placeholder"  # noqa: S105 (not a secret)


def _session_by_token(token: str) -> PaymentSession | None:
    """``PaymentSession.objects.filter(token=token).first()``, compiled once per connection.

    Every result starts with this lookup, and Django compiles a queryset into SQL on every
    evaluation: for this model's forty columns that cost as much as the database round trip.
    The SQL, its columns and their converters are taken from the ORM's own compiler once per
    connection; each call runs the SQL, has that compiler convert the row and builds the
    instance with ``Model.from_db``, as the ORM's iteration does.
    """
    alias = router.db_for_read(PaymentSession)
    connection = connections[alias]
    lookup = _SESSION_LOOKUPS.get(connection)
    if lookup is None:
        lookup = _compile_session_lookup(connection)
        _SESSION_LOOKUPS[connection] = lookup
    sql, attnames, compiler, converters = lookup
    with connection.cursor() as cursor:
        cursor.execute(sql, [token])
        row = cursor.fetchone()
    if row is None:
        return None
    [values] = compiler.apply_converters([row], converters)
    return PaymentSession.from_db(alias, attnames, values)


def _compile_session_lookup(connection: Any) -> tuple[str, list[str], Any, dict[int, Any]]:
    """The SQL of the lookup by token (no ``ORDER BY``: the token is unique), its columns'
    attribute names, its compiler and the converters of its values, from the ORM."""
    query = PaymentSession.objects.filter(token=_TOKEN_PLACEHOLDER).order_by().query
    compiler = query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    columns = [expression for expression, _sql, _alias in compiler.select]
    attnames = [expression.target.attname for expression in columns]
    # One parameter, the token; every column of the model, in the model's order (what
    # Model.from_db takes without field names).
    concrete = [field.attname for field in PaymentSession._meta.concrete_fields]
    if list(params) != [_TOKEN_PLACEHOLDER] or attnames != concrete:
        raise RuntimeError(f"Unexpected session lookup compiled: {sql!r} with {params!r}")
    return sql, attnames, compiler, compiler.get_converters(columns)


def _unknown_session() -> EtpayVerificationError:
    """The rejection of a result whose ``session_token`` names no session (any more)."""
    return EtpayVerificationError(
        Reason.UNKNOWN_SESSION, "No session has the result's session_token."
    )


def _changes_nothing(session: PaymentSession, verified: tokens.VerifiedResult) -> bool:
    """Whether ``verified`` cannot change ``session``, read without a lock, whatever happens.

    A status read without the lock may be stale, but only towards a later status of the
    transition rule. ``paid`` is final, and nothing a result does touches a paid session
    (the reconciliation flag is set only on sessions that are not final). ``failed`` can only
    become ``paid``, and neither takes a failure. Any other case may change the status or the
    reconciliation flag and is decided under the row lock.
    """
    if session.status == PaymentSession.Status.PAID:
        return True
    return (
        session.status == PaymentSession.Status.FAILED
        and verified.result == Result.FAILURE
        and not verified.system_error
    )


def _record_internal_error(
    err: Exception,
    *,
    session: PaymentSession | None,
    channel: str,
    raw_body: str,
    remote_addr: str | None,
    claims: Mapping[str, Any] | None,
) -> None:
    # The traceback carries code lines and the exception message, never local values.
    logger.error(
        "ETpay %s result for session %s could not be processed (%s)",
        channel,
        session.pk if session is not None else "unknown",
        type(err).__name__,
        exc_info=err,
    )
    try:
        record_rejection(
            channel=channel,
            reason=Reason.INTERNAL_ERROR,
            detail=f"Processing failed ({type(err).__name__}); the result was not applied.",
            raw_body=raw_body,
            remote_addr=remote_addr,
            session=session,
            claims=claims,
        )
    except Exception as record_err:
        logger.error(
            "ETpay %s result could not be stored either (%s)", channel, type(record_err).__name__
        )


@sensitive_variables("raw_jwt")
def process_notification(
    raw_jwt: str, *, channel: str, remote_addr: str | None = None
) -> Notification:
    """Verify one result JWT from ETpay, apply it to its session and record it.

    Finds the session by the JWT's ``session_token`` claim, verifies HS256 with that session's
    ``signature_token``, checks ``merchant_order_id``, ``merchant_amount`` and the currency
    against the row, then, inside one transaction holding a row lock on the session, applies
    the transition rule of :meth:`PaymentSession.transition_allowed` and stores a
    :class:`~django_etpay.models.Notification`. Signals go out on commit: ``payment_completed``
    or ``payment_failed`` once per transition, ``notification_rejected`` for rejections.

    Returns the notification; read ``.outcome`` (``accepted``, ``duplicate``, ``rejected``)
    and ``.reason``. Nothing is raised for bad input, which is recorded as ``rejected``. An
    internal failure (database down, a bug) is recorded as ``rejected`` / ``internal_error``
    when possible and then re-raised. Browser channels (``redirect``, ``widget``) change a
    status only when ``ACCEPT_BROWSER_RESULTS`` is on. Neither the JWT nor any key is logged.
    ``ValueError`` is raised for a ``channel`` that is not a ``Notification.Channel`` value.
    """
    if channel not in Channel.values:
        raise ValueError(f"Unknown channel {channel!r}; use a Notification.Channel value.")
    raw_text = raw_jwt if isinstance(raw_jwt, str) else ""
    unverified: dict[str, Any] | None = None
    try:
        unverified = tokens.read_unverified(raw_text)
        session_token = tokens.session_token_of(unverified)
    except EtpayVerificationError as err:
        return record_rejection(
            channel=channel,
            reason=err.reason,
            detail=err.message,
            raw_body=raw_text,
            remote_addr=remote_addr,
            claims=unverified,
        )
    checked_claims = unverified

    def verify(session: PaymentSession) -> tokens.VerifiedResult:
        return tokens.verify_payment_jwt(raw_text, session, checked_claims)

    return _run_pipeline(
        session_token=session_token,
        verify=verify,
        channel=channel,
        raw_body=raw_text,
        remote_addr=remote_addr,
        unverified=unverified,
    )


def reconcile_session(session: PaymentSession) -> list[Notification]:
    """Ask ETpay for ``session``'s payments and apply each one like a notification.

    Calls ``/merchant/check_payment_status`` by session token with the session's own merchant
    account. Each entry naming this session goes through the same cross-checks and transition
    rule as a JWT, with channel ``poll``; entries for other sessions are ignored.
    ``needs_reconciliation`` is cleared when ETpay reported a success or failure. When ETpay's
    answer names no payment of this session, that is recorded too: one ``poll`` notification,
    outcome ``duplicate`` (nothing changed), reason ``unknown_to_etpay``. ``session`` is
    refreshed from the database before returning.

    Raises :class:`~django_etpay.exceptions.EtpayAPIError` when ETpay cannot be asked; returns
    ``[]`` for a session ETpay never gave a token.
    """
    if not session.token:
        return []
    entries = get_client(session.merchant or None).check_payment_status(
        session_token=session.token
    )
    notifications: list[Notification] = []
    learned: list[bool] = []
    for entry in entries:
        if entry.get("session_token") != session.token:
            logger.debug("ETpay status entry for another session ignored (session %s)", session.pk)
            continue
        result = tokens.result_from_status_entry(entry)
        notification = _run_pipeline(
            session_token=session.token,
            verify=_constant(result),
            channel=Channel.POLL,
            raw_body=json.dumps(entry, ensure_ascii=False),
            remote_addr=None,
            unverified=entry,
        )
        notifications.append(notification)
        learned.append(
            notification.outcome != Outcome.REJECTED and result.result in _TARGET_STATUS
        )
    if not notifications:
        notifications.append(_record_unknown_to_etpay(session, len(entries)))
    if any(learned):
        PaymentSession.objects.filter(pk=session.pk, needs_reconciliation=True).update(
            needs_reconciliation=False, updated_at=timezone.now()
        )
    session.refresh_from_db()
    return notifications


def _record_unknown_to_etpay(session: PaymentSession, entries: int) -> Notification:
    """Leave a trace of a status query that found no payment of ``session``."""
    session.refresh_from_db(fields=["status"])
    notification = _new_notification(
        session=session,
        channel=Channel.POLL,
        outcome=Outcome.DUPLICATE,
        reason=Reason.UNKNOWN_TO_ETPAY,
        detail=(
            "ETpay's status query returned no payment for this session"
            + (f" ({entries} entries for other sessions)." if entries else ".")
        ),
        result=Result.UNKNOWN,
        status_before=session.status,
        status_after=session.status,
        claims=None,
        raw_body="",
        remote_addr=None,
    )
    notification.save()
    logger.info("ETpay knows no payment of session %s (status query)", session.pk)
    return notification


def _constant(
    result: tokens.VerifiedResult,
) -> Callable[[PaymentSession], tokens.VerifiedResult]:
    """A verify step for results whose origin is already established (status API)."""

    def verify(session: PaymentSession) -> tokens.VerifiedResult:
        return result

    return verify


def expire_sessions(
    older_than: timedelta | None = None,
    *,
    limit: int | None = None,
    ids: Iterable[int] | None = None,
) -> int:
    """Mark ``pending`` sessions created more than ``older_than`` ago as ``expired``.

    ``older_than`` defaults to ``ETPAY["SESSION_TTL"]``. Sessions locked by a result being
    processed at that moment are skipped (the next run sees them). ``session_expired`` is
    sent once per session after commit (through the outbox, so a crash does not lose it). A
    success that arrives later still marks an expired session paid. ``limit`` expires at most
    that many, oldest first, in one transaction (call again until it returns 0 to work in
    bounded batches); ``ids`` restricts it to those sessions. Returns how many were expired.
    """
    ttl: Any = older_than if older_than is not None else conf.get_setting("SESSION_TTL")
    if not isinstance(ttl, timedelta):
        ttl = timedelta(seconds=float(ttl))
    cutoff = timezone.now() - ttl
    candidates = PaymentSession.objects.filter(
        status=PaymentSession.Status.PENDING, created_at__lt=cutoff
    )
    if ids is not None:
        candidates = candidates.filter(pk__in=list(ids))
    with transaction.atomic():
        sessions = list(candidates.select_for_update(skip_locked=True).order_by("pk")[:limit])
        if not sessions:
            return 0
        now = timezone.now()
        PaymentSession.objects.filter(pk__in=[s.pk for s in sessions]).update(
            status=PaymentSession.Status.EXPIRED, updated_at=now
        )
        for session in sessions:
            session.status = PaymentSession.Status.EXPIRED
            session.updated_at = now
        outbox.record_many(
            OutboxEffect.Kind.SESSION_EXPIRED,
            sessions,
            previous_status=PaymentSession.Status.PENDING,
        )
    logger.info("Expired %d ETpay sessions pending since before %s", len(sessions), cutoff)
    return len(sessions)
