"""The refund ledger: money given back to the payer of a paid session.

ETpay carries refunds out through its Payouts API, whose endpoints (beyond logging in) are in no
public copy of its documentation. So this module moves no money: it records what the shop
decided to give back and keeps the books right, and ``ETPAY["REFUND_BACKEND"]`` decides what
happens next. The default, :class:`ManualRefundBackend`, records the request and waits for staff
to carry it out in ETpay's back-office and confirm it (:func:`complete_refund` or
:func:`fail_refund`, or the admin). A merchant who received ETpay's Payouts documentation can
plug in a client of their own (:class:`RefundBackend`).

The rule: a refund is only for a ``paid`` session, and the refunds of a session that are
``requested`` or ``completed`` never add up to more than the amount paid (``failed`` ones do
not count). :func:`request_refund` checks it while holding the session's row lock, so on
PostgreSQL any number of concurrent requests never exceed it. Partial refunds are the normal
case: request as many as you like until the amount paid is used up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import router, transaction
from django.db.models import Q, Sum
from django.dispatch import Signal
from django.utils import timezone
from django.utils.module_loading import import_string

from django_etpay import conf, signals
from django_etpay.dispatch import send_robust, write_alias
from django_etpay.exceptions import (
    EtpayConfigurationError,
    EtpayRefundAmountError,
    EtpayRefundError,
    EtpayRefundNotAllowedError,
    EtpayRefundStateError,
)
from django_etpay.models import PaymentSession, Refund

logger = logging.getLogger("django_etpay")

State = Refund.State

#: States whose amounts count against what the payer paid.
COUNTED_STATES = (State.REQUESTED, State.COMPLETED)

#: Longest reference kept (the model field's length).
MAX_REFERENCE_LENGTH = 255


class RefundBackend:
    """What carries a requested refund out; name a subclass in ``ETPAY["REFUND_BACKEND"]``.

    :meth:`request` is called once per refund, after the transaction that recorded it committed
    and after ``refund_requested`` was sent, with the refund in state ``requested``. It either
    settles the refund at once (:func:`complete_refund` with ETpay's reference, or
    :func:`fail_refund` with the reason) or leaves it ``requested`` and settles it later (for
    example from ETpay's callback or a periodic task). If it raises, the error is logged and the
    refund stays ``requested`` for staff: a client that timed out cannot know whether the money
    moved, so it must not mark the refund failed on a guess. The class is instantiated without
    arguments for each refund.
    """

    def request(self, refund: Refund) -> None:
        """Carry ``refund`` out, or arrange for it to be carried out."""
        raise NotImplementedError


class ManualRefundBackend(RefundBackend):
    """The default: record the request and wait for staff.

    Refunds are carried out in ETpay's back-office (its Payouts API is not public); staff then
    mark the refund completed, with ETpay's reference, or failed, in the admin.
    """

    def request(self, refund: Refund) -> None:
        """Do nothing but log: the refund waits, ``requested``, for staff to confirm it."""
        logger.info(
            "ETpay refund %s of %d for session %s recorded; carry it out in ETpay's "
            "back-office and confirm it in the admin",
            refund.pk,
            refund.amount,
            refund.session_id,
        )


def get_backend() -> Callable[[Refund], None]:
    """The callable ``ETPAY["REFUND_BACKEND"]`` names: ``RefundBackend().request`` or a function.

    Raises :class:`~django_etpay.exceptions.EtpayConfigurationError` when the path cannot be
    imported or names neither (the system check ``django_etpay.E201`` reports the same).
    """
    path = conf.get_setting("REFUND_BACKEND")
    if not isinstance(path, str) or not path:
        raise EtpayConfigurationError('ETPAY["REFUND_BACKEND"] must be a dotted path.')
    try:
        target: Any = import_string(path)
    except ImportError as err:
        raise EtpayConfigurationError(
            f'ETPAY["REFUND_BACKEND"] {path!r} cannot be imported ({err}).'
        ) from err
    if isinstance(target, type):
        method = getattr(target, "request", None)
        if not callable(method):
            raise EtpayConfigurationError(
                f'ETPAY["REFUND_BACKEND"] {path!r} is a class without a request(refund) method.'
            )
        backend: Callable[[Refund], None] = target().request
        return backend
    if callable(target):
        function: Callable[[Refund], None] = target
        return function
    raise EtpayConfigurationError(
        f'ETPAY["REFUND_BACKEND"] {path!r} is neither a RefundBackend class nor a callable.'
    )


def _alias() -> str:
    # Refunds live with their sessions (a foreign key never crosses databases): every lock,
    # write and on-commit callback uses the sessions' write alias.
    return write_alias()


def _total(session_pk: int, states: tuple[str, ...], alias: str) -> int:
    total = (
        Refund.objects.using(alias)
        .filter(session_id=session_pk, state__in=states)
        .aggregate(total=Sum("amount"))["total"]
    )
    return int(total or 0)


def refunded_amount(session: PaymentSession) -> int:
    """What was given back on ``session``: the sum of its ``completed`` refunds."""
    return _total(session.pk, (State.COMPLETED,), router.db_for_read(Refund))


def pending_refund_amount(session: PaymentSession) -> int:
    """What is on its way back on ``session``: the sum of its ``requested`` refunds."""
    return _total(session.pk, (State.REQUESTED,), router.db_for_read(Refund))


def refund_totals(session: PaymentSession) -> tuple[int, int]:
    """(:func:`refunded_amount`, :func:`pending_refund_amount`) of ``session`` in one query."""
    totals = (
        Refund.objects.using(router.db_for_read(Refund))
        .filter(session_id=session.pk)
        .aggregate(
            completed=Sum("amount", filter=Q(state=State.COMPLETED)),
            requested=Sum("amount", filter=Q(state=State.REQUESTED)),
        )
    )
    return int(totals["completed"] or 0), int(totals["requested"] or 0)


def refundable_amount(session: PaymentSession) -> int:
    """What may still be refunded on ``session`` as it reads now (0 unless it is paid).

    Informative only (no lock is taken): :func:`request_refund` checks again under the lock.
    """
    if session.status != PaymentSession.Status.PAID:
        return 0
    counted = _total(session.pk, COUNTED_STATES, router.db_for_read(Refund))
    return max(int(session.order_amount) - counted, 0)


def _send(signal: Signal, refund: Refund, session: PaymentSession) -> None:
    """Send a refund signal; a failing receiver is logged (see :mod:`django_etpay.dispatch`)."""
    send_robust(signal, Refund, refund=refund, session=session)


def _after_request(refund: Refund, session: PaymentSession) -> None:
    """After commit: tell the shop, then hand the refund to the backend."""
    _send(signals.refund_requested, refund, session)
    try:
        backend = get_backend()
        backend(refund)
    except Exception as err:
        # The request is recorded; whether money moved is for staff to find out, never guessed.
        logger.error(
            "The refund backend raised %s for refund %s; it stays requested for staff",
            type(err).__name__,
            refund.pk,
            exc_info=err,
        )


def _clean_text(value: Any, what: str, *, max_length: int | None = None) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise EtpayRefundError(f"A refund needs a {what}.")
    if max_length is not None and len(text) > max_length:
        raise EtpayRefundError(f"The {what} is longer than {max_length} characters.")
    return text


def request_refund(
    session: PaymentSession, amount: int, *, reason: str, user: Any = None
) -> Refund:
    """Record a refund of ``amount`` on the paid ``session`` and hand it to the refund backend.

    ``amount`` is a positive integer in the session's currency, at most what is left to refund
    (the amount paid minus the session's requested and completed refunds). ``reason`` says why
    (required). ``user`` is who asked (kept as ``requested_by``; ``None`` or an anonymous user
    keeps nothing).

    The session's row is locked (``select_for_update``) while the total is checked and the
    refund saved, in a transaction on the sessions' database, so concurrent requests are
    counted exactly on PostgreSQL. After commit ``refund_requested`` is sent and the backend
    (``ETPAY["REFUND_BACKEND"]``) is called. Returns the ``requested`` refund.

    Raises :class:`~django_etpay.exceptions.EtpayRefundNotAllowedError` when the session is not
    paid, :class:`~django_etpay.exceptions.EtpayRefundAmountError` for an amount that is not a
    positive integer or exceeds what is left (its ``available`` says how much is), and
    :class:`~django_etpay.exceptions.EtpayRefundError` without a reason. Nothing is recorded
    then.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise EtpayRefundAmountError("The refund amount must be a positive integer.")
    text = _clean_text(reason, "reason")
    requested_by = user if user is not None and getattr(user, "is_authenticated", False) else None
    alias = _alias()
    with transaction.atomic(using=alias):
        row = (
            PaymentSession.objects.using(alias)
            .select_for_update()
            .filter(pk=session.pk)
            .order_by()
            .values_list("status", "order_amount")
            .first()
        )
        if row is None:
            raise EtpayRefundNotAllowedError(f"Session {session.pk} does not exist.")
        status, paid = row
        if status != PaymentSession.Status.PAID:
            raise EtpayRefundNotAllowedError(
                f"Session {session.pk} is {status}: only paid sessions can be refunded."
            )
        available = int(paid) - _total(session.pk, COUNTED_STATES, alias)
        if amount > available:
            raise EtpayRefundAmountError(
                f"A refund of {amount} exceeds what is left to refund on session "
                f"{session.pk} ({max(available, 0)}).",
                available=max(available, 0),
            )
        refund = Refund(session=session, amount=amount, reason=text, requested_by=requested_by)
        refund.save(using=alias)
        transaction.on_commit(lambda: _after_request(refund, session), using=alias)
    logger.info("ETpay refund %s of %d requested for session %s", refund.pk, amount, session.pk)
    return refund


def _settle(refund: Refund, target: str, signal: Signal, **changes: Any) -> Refund:
    """Move ``refund`` from ``requested`` to ``target`` with one conditional ``UPDATE``.

    Of any number of concurrent calls exactly one changes the row; the others raise
    :class:`~django_etpay.exceptions.EtpayRefundStateError`.
    """
    alias = _alias()
    now = timezone.now()
    values = {**changes, "state": target, "updated_at": now}
    with transaction.atomic(using=alias):
        changed = (
            Refund.objects.using(alias)
            .filter(pk=refund.pk, state=State.REQUESTED)
            .update(**values)
        )
        if not changed:
            found = (
                Refund.objects.using(alias)
                .filter(pk=refund.pk)
                .values_list("state", flat=True)
                .first()
            )
            raise EtpayRefundStateError(
                f"Refund {refund.pk} is {found or 'gone'}, not requested: it cannot become "
                f"{target}.",
                state=found or "",
            )
        for field, value in values.items():
            setattr(refund, field, value)
        session = refund.session
        transaction.on_commit(lambda: _send(signal, refund, session), using=alias)
    logger.info("ETpay refund %s of session %s %s", refund.pk, refund.session_id, target)
    return refund


def complete_refund(refund: Refund, *, reference: str) -> Refund:
    """Confirm ``refund`` done, with ETpay's ``reference`` of the transfer; sends
    ``refund_completed`` after commit.

    Raises :class:`~django_etpay.exceptions.EtpayRefundStateError` unless the refund is
    ``requested`` (completed and failed are final), and
    :class:`~django_etpay.exceptions.EtpayRefundError` without a reference.
    """
    text = _clean_text(reference, "reference", max_length=MAX_REFERENCE_LENGTH)
    return _settle(
        refund,
        State.COMPLETED,
        signals.refund_completed,
        reference=text,
        completed_at=timezone.now(),
    )


def fail_refund(refund: Refund, *, reason: str) -> Refund:
    """Mark ``refund`` failed, saying why; its amount no longer counts against the amount paid,
    so it may be requested again. Sends ``refund_failed`` after commit.

    Raises :class:`~django_etpay.exceptions.EtpayRefundStateError` unless the refund is
    ``requested``, and :class:`~django_etpay.exceptions.EtpayRefundError` without a reason.
    """
    text = _clean_text(reason, "reason")
    return _settle(
        refund, State.FAILED, signals.refund_failed, failure_reason=text, failed_at=timezone.now()
    )
