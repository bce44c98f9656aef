"""Signals django_etpay sends.

All of them are sent through ``transaction.on_commit``, once per state change: a receiver never
hears about a change that was rolled back, and never twice about the same one. Receivers get
verified, cross-checked rows, never a raw JWT. Receivers must still be idempotent (a receiver
that fails after doing part of its work may be run again by your own retry logic).
"""

from __future__ import annotations

from django.dispatch import Signal

#: Sent once, after commit, when ETpay returned a token for a new session.
#: Provides: ``session`` (the :class:`~django_etpay.models.PaymentSession`, now ``pending``).
session_initialized = Signal()

#: Sent once, after commit, when a verified result marks a session paid.
#: Provides: ``session``, ``notification`` (the :class:`~django_etpay.models.Notification`
#: that carried the result) and ``previous_status`` (tells a late payment after ``expired`` or
#: ``failed`` apart from a normal one).
payment_completed = Signal()

#: Sent once, after commit, when a verified failure moves a session to ``failed``.
#: Provides: ``session``, ``notification``, ``previous_status``.
payment_failed = Signal()

#: Sent once, after commit, when a pending session is expired.
#: Provides: ``session``.
session_expired = Signal()

#: Sent after commit for each result that was rejected (bad signature, unknown session,
#: amount or order mismatch, malformed...).
#: Provides: ``notification`` (stored, with its ``reason``) and ``reason``.
notification_rejected = Signal()

#: Sent once, after commit, when a paid session receives a verified success with another
#: ``payment_token`` than the one that paid it: the payer paid twice, and the shop should give
#: the extra money back (see :mod:`django_etpay.refunds`). Sent once per extra payment token,
#: however often ETpay repeats that result. Delivered through the outbox, so receivers must be
#: idempotent. Provides: ``session`` (the paid
#: :class:`~django_etpay.models.PaymentSession`), ``notification`` (the
#: :class:`~django_etpay.models.Notification` that carried the extra payment) and
#: ``payment_token`` (ETpay's id of the extra payment).
payment_duplicated = Signal()

#: Sent once, after commit, when a refund is recorded
#: (:func:`django_etpay.refunds.request_refund`). Provides: ``refund`` (the
#: :class:`~django_etpay.models.Refund`, ``requested``) and ``session``.
refund_requested = Signal()

#: Sent once, after commit, when a refund is confirmed done
#: (:func:`django_etpay.refunds.complete_refund`). Provides: ``refund`` (``completed``, with its
#: ``reference``) and ``session``.
refund_completed = Signal()

#: Sent once, after commit, when a refund is marked failed
#: (:func:`django_etpay.refunds.fail_refund`). Provides: ``refund`` (``failed``, with its
#: ``failure_reason``) and ``session``.
refund_failed = Signal()
