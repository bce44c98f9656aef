"""Persistence: one ``PaymentSession`` per ETpay session, one ``Notification`` per result.

Over 500 lines because Django wants an app's models in one module (migrations and the admin
find them there); most of it is field documentation (``help_text``) and choices.
"""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings
from django.db import models
from django.db.models.functions import Upper
from django.utils.translation import gettext_lazy as _

from django_etpay import conf
from django_etpay.fields import EncryptedSecretField

#: The name of CheckConstraint's condition argument: ``check`` until Django 5.1 named it
#: ``condition`` (Django 6.0 accepts only ``condition``; 4.2 only ``check``).
CHECK_CONDITION = "condition" if django.VERSION >= (5, 1) else "check"
_REFUND_AMOUNT_POSITIVE: dict[str, Any] = {
    CHECK_CONDITION: models.Q(amount__gt=0),
    "name": "etpay_refund_amount_positive",
}


class TimestampMixin(models.Model):
    """``created_at`` / ``updated_at`` maintained by Django."""

    created_at = models.DateTimeField(
        _("created at"), auto_now_add=True, help_text=_("When the row was created.")
    )
    updated_at = models.DateTimeField(
        _("updated at"), auto_now=True, help_text=_("When the row last changed.")
    )

    class Meta:
        abstract = True


class PaymentSession(TimestampMixin):
    """The current state of one ETpay payment session.

    The row is saved as ``initializing`` before ETpay is called, so nothing is lost if the call
    dies. ``signature_token`` is the per-session secret that verifies ETpay's JWTs: it is
    encrypted at rest (:mod:`django_etpay.fields`), refused by every query lookup, and kept out
    of ``str()``, ``repr()``, the admin, logs, API responses and error messages.
    ``stored_rejections`` and ``stored_duplicates`` count the notifications stored for the
    session beyond its transitions, so that what a stranger can make the app store is bounded.
    """

    class Status(models.TextChoices):
        """Where a session stands.

        - ``initializing``: saved before the call to ETpay.
        - ``pending``: ETpay returned a token; the payer may pay.
        - ``paid``: a verified success arrived. Final.
        - ``failed``: a verified failure arrived.
        - ``expired``: nothing arrived within ``SESSION_TTL``.
        - ``error``: initialisation failed (see ``error``; ``outcome_unknown`` says whether
          ETpay may have created the session anyway).
        """

        INITIALIZING = "initializing", _("Initializing")
        PENDING = "pending", _("Pending")
        PAID = "paid", _("Paid")
        FAILED = "failed", _("Failed")
        EXPIRED = "expired", _("Expired")
        ERROR = "error", _("Error")

    merchant = models.CharField(
        _("merchant alias"),
        max_length=64,
        blank=True,
        default="",
        help_text=_('Alias in ETPAY["MERCHANTS"]; empty for the default account.'),
    )
    environment = models.CharField(
        _("environment"),
        max_length=16,
        choices=[(e, e) for e in conf.ENVIRONMENTS],
        help_text=_("ETpay environment the session was created in."),
    )
    merchant_order_id = models.CharField(
        _("merchant order id"), max_length=64, help_text=_("The shop's own order id.")
    )
    country = models.CharField(
        _("country"),
        max_length=2,
        choices=[("CL", _("Chile")), ("MX", _("Mexico"))],
        default="CL",
        help_text=_("Country of the merchant account: CL (Chile) or MX (Mexico)."),
    )
    order_amount = models.PositiveBigIntegerField(
        _("amount"),
        help_text=_("Amount in whole pesos of the currency (CLP or MXN), as sent to ETpay."),
    )
    currency = models.CharField(
        _("currency"),
        max_length=3,
        default="CLP",
        help_text=_("ISO 4217 code, from the account's country: CLP or MXN."),
    )
    customer_email = models.EmailField(
        _("customer e-mail"), blank=True, help_text=_("Payer e-mail sent to ETpay.")
    )
    metadata = models.JSONField(
        _("metadata"),
        default=list,
        blank=True,
        help_text=_("List of {name, value, show} entries shown to the payer."),
    )
    user_bank_code = models.CharField(
        _("preselected bank"), max_length=32, blank=True, help_text=_("e.g. cl_estado, mx_bbva.")
    )
    user_rut = models.CharField(
        _("payer RUT (sent)"),
        max_length=12,
        blank=True,
        help_text=_("RUT prefilled in ETpay's form, digits and check digit."),
    )
    is_rut_block = models.BooleanField(
        _("RUT locked"), null=True, blank=True, help_text=_("Whether the RUT field is locked.")
    )
    customer_phone = models.CharField(
        _("payer phone (sent)"),
        max_length=10,
        blank=True,
        help_text=_("Mexico: 10-digit phone prefilled in ETpay's CoDi/SPEI form."),
    )
    target_flow = models.CharField(
        _("payment method (sent)"),
        max_length=8,
        blank=True,
        choices=[("codi", "CoDi"), ("spei", "SPEI")],
        help_text=_("Mexico: the payment method preselected, CoDi or SPEI."),
    )
    payment_completed_url = models.URLField(
        _("success URL sent"), max_length=2000, blank=True, help_text=_("Sent to ETpay.")
    )
    payment_cancellation_url = models.URLField(
        _("cancellation URL sent"), max_length=2000, blank=True, help_text=_("Sent to ETpay.")
    )
    payment_webhook_url = models.URLField(
        _("webhook URL sent"), max_length=2000, blank=True, help_text=_("Sent to ETpay.")
    )
    token = models.CharField(
        _("session token"),
        max_length=255,
        unique=True,
        null=True,
        blank=True,
        help_text=_("ETpay's session token; empty until ETpay returns it."),
    )
    signature_token = EncryptedSecretField(
        _("signature token"),
        blank=True,
        editable=False,
        help_text=_(
            "Secret key for this session's JWTs, encrypted at rest. Never shown in the admin, "
            "logs, str or repr, and no query may filter on it."
        ),
    )
    terms_url = models.URLField(
        _("terms URL"), max_length=2000, blank=True, help_text=_("ETpay's terms page.")
    )
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=Status.choices,
        default=Status.INITIALIZING,
        help_text=_("Where the session stands."),
    )
    payment_token = models.CharField(
        _("payment token"),
        max_length=255,
        blank=True,
        db_index=True,
        help_text=_("ETpay's payment id, reported with the result."),
    )
    payer_bank = models.CharField(
        _("payer bank"), max_length=255, blank=True, help_text=_("As ETpay reported it.")
    )
    payer_account = models.CharField(
        _("payer account"), max_length=255, blank=True, help_text=_("As ETpay reported it.")
    )
    payer_rut = models.CharField(
        _("payer RUT"), max_length=32, blank=True, help_text=_("As ETpay reported it.")
    )
    error = models.TextField(
        _("error"), blank=True, help_text=_("Why initialisation failed, without secrets.")
    )
    error_code = models.CharField(
        _("error code"),
        max_length=32,
        blank=True,
        help_text=_("Kind of failure: validation, timeout, connection, http_error..."),
    )
    outcome_unknown = models.BooleanField(
        _("outcome unknown"),
        default=False,
        help_text=_("ETpay may have acted on a call whose answer was lost (timeout, 5xx)."),
    )
    needs_reconciliation = models.BooleanField(
        _("needs reconciliation"),
        default=False,
        help_text=_("ETpay's view of this session should be checked with a status query."),
    )
    needs_staff_decision = models.BooleanField(
        _("needs staff decision"),
        default=False,
        help_text=_(
            "ETpay's status query by order id could not tell which of its sessions, if any, "
            "is this one; staff decide (see its status-query results)."
        ),
    )
    stored_rejections = models.PositiveIntegerField(
        _("rejections stored"),
        default=0,
        editable=False,
        help_text=_("Rejected results stored for this session (bounded)."),
    )
    stored_duplicates = models.PositiveIntegerField(
        _("repeats stored"),
        default=0,
        editable=False,
        help_text=_("Results that changed nothing stored for this session (bounded)."),
    )
    # The user model may live on another database than the sessions (a router sending this
    # app's models to their own database): no database constraint, and nothing to do when a
    # user is deleted, since Django would look for the sessions on the user's database.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        verbose_name=_("created by"),
        help_text=_(
            "The signed-in user whose request created the session; empty for guests and "
            "sessions created without a request. The REST API shows a session's status to them."
        ),
    )
    paid_at = models.DateTimeField(
        _("paid at"), null=True, blank=True, help_text=_("When it became paid.")
    )
    completed_at = models.DateTimeField(
        _("completed at"),
        null=True,
        blank=True,
        help_text=_("When a final result (paid or failed) arrived."),
    )
    last_checked_at = models.DateTimeField(
        _("last status query"),
        null=True,
        blank=True,
        help_text=_("When etpay_reconcile last asked ETpay about this session."),
    )
    purged_at = models.DateTimeField(
        _("personal data purged at"),
        null=True,
        blank=True,
        help_text=_("When etpay_purge removed the payer's personal data from this session."),
    )

    class Meta:
        verbose_name = _("ETpay payment session")
        verbose_name_plural = _("ETpay payment sessions")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["merchant_order_id"], name="etpay_session_order_idx"),
            models.Index(fields=["status", "created_at"], name="etpay_session_status_idx"),
            # The admin's default order (newest first, pk as tie-breaker) and date filter.
            models.Index(fields=["created_at", "id"], name="etpay_session_created_idx"),
            models.Index(fields=["environment", "created_at"], name="etpay_session_env_idx"),
            models.Index(fields=["merchant", "created_at"], name="etpay_session_merch_idx"),
            # Small partial indexes: the flagged rows are few, and filters ask for exactly them.
            models.Index(
                fields=["created_at", "id"],
                name="etpay_session_recon_idx",
                condition=models.Q(needs_reconciliation=True),
            ),
            models.Index(
                fields=["created_at"],
                name="etpay_session_staff_idx",
                condition=models.Q(needs_staff_decision=True),
            ),
            models.Index(
                fields=["created_at"],
                name="etpay_session_unknown_idx",
                condition=models.Q(outcome_unknown=True),
            ),
            # The admin searches e-mails case-insensitively (iexact is UPPER() = UPPER()).
            models.Index(Upper("customer_email"), name="etpay_session_email_idx"),
            # etpay_purge walks the rows it has not purged yet; purged rows leave the index.
            models.Index(
                fields=["created_at"],
                name="etpay_session_purge_idx",
                condition=models.Q(purged_at__isnull=True),
            ),
        ]
        permissions = [
            ("view_payer_data", _("Can view payer personal data (RUT, account)")),
            ("reconcile_paymentsession", _("Can ask ETpay for the status of sessions")),
            ("expire_paymentsession", _("Can expire pending sessions")),
        ]

    def __str__(self) -> str:
        return f"ETpay session {self.pk} for order {self.merchant_order_id} ({self.status})"

    def __repr__(self) -> str:
        # Explicit so that no field holding a secret can ever be added to it by accident.
        return (
            f"<PaymentSession pk={self.pk} order={self.merchant_order_id!r} "
            f"amount={self.order_amount} status={self.status}>"
        )

    @property
    def payment_url(self) -> str:
        """``{PMT_URL}/session/{token}``: where the payer goes to pay ('' without a token)."""
        if not self.token:
            return ""
        return f"{conf.get_merchant(self.merchant or None).pmt_url}/session/{self.token}"

    @staticmethod
    def transition_allowed(current: str, target: str) -> bool:
        """The transition rule.

        ``paid`` is final. A verified success moves any other state to ``paid`` (money that
        moved is never dropped, even after ``expired`` or ``failed``). A verified failure moves
        only ``pending``/``expired`` to ``failed``. Expiry moves only ``pending`` to
        ``expired``. Nothing else changes a status from a result.
        """
        paid, failed, expired = "paid", "failed", "expired"
        if current == paid:
            return False
        if target == paid:
            return True
        if target == failed:
            return current in ("pending", expired)
        if target == expired:
            return current == "pending"
        return False

    @property
    def is_final(self) -> bool:
        """True once the session is paid."""
        return self.status == "paid"


class Notification(models.Model):
    """Append-only log of every result that reached the app, rejected ones included."""

    class Channel(models.TextChoices):
        """How the result arrived."""

        WEBHOOK = "webhook", _("Webhook (server to server)")
        REDIRECT = "redirect", _("Browser redirect")
        WIDGET = "widget", _("Widget")
        POLL = "poll", _("Status query")

    class Outcome(models.TextChoices):
        """What the app did with it."""

        ACCEPTED = "accepted", _("Accepted")
        DUPLICATE = "duplicate", _("Duplicate")
        REJECTED = "rejected", _("Rejected")

    class Reason(models.TextChoices):
        """Why a result was rejected or not applied."""

        MALFORMED = "malformed", _("Malformed")
        TOO_LARGE = "too_large", _("Body too large")
        UNKNOWN_SESSION = "unknown_session", _("Unknown session")
        BAD_SIGNATURE = "bad_signature", _("Bad signature")
        INVALID_CLAIMS = "invalid_claims", _("Invalid claims")
        ORDER_MISMATCH = "order_mismatch", _("Order mismatch")
        AMOUNT_MISMATCH = "amount_mismatch", _("Amount mismatch")
        CURRENCY_MISMATCH = "currency_mismatch", _("Currency mismatch")
        SESSION_MISMATCH = "session_mismatch", _("Session mismatch")
        BROWSER_NOT_TRUSTED = "browser_not_trusted", _("Browser results not accepted")
        SYSTEM_ERROR = "system_error", _("ETpay system error")
        NOT_APPLICABLE = "not_applicable", _("Does not change the status")
        INTERNAL_ERROR = "internal_error", _("Internal error")
        KEY_UNAVAILABLE = "key_unavailable", _("Signature key cannot be decrypted")
        UNKNOWN_TO_ETPAY = "unknown_to_etpay", _("Unknown to ETpay")
        SESSION_ADOPTED = "session_adopted", _("ETpay session found by order id")
        AMBIGUOUS_ORDER = "ambiguous_order", _("Several ETpay sessions could be this one")
        NO_MATCHING_SESSION = "no_matching_session", _("No ETpay session matches")
        STAFF_DECISION = "staff_decision", _("Decided by staff")

    class Result(models.TextChoices):
        """The payment outcome the result reported."""

        SUCCESS = "success", _("Success")
        FAILURE = "failure", _("Failure")
        UNKNOWN = "unknown", _("Unknown")

    session = models.ForeignKey(
        PaymentSession,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="notifications",
        help_text=_("The session the result names, when it is known."),
    )
    channel = models.CharField(
        _("channel"), max_length=16, choices=Channel.choices, help_text=_("How it arrived.")
    )
    outcome = models.CharField(
        _("outcome"), max_length=16, choices=Outcome.choices, help_text=_("What was done.")
    )
    reason = models.CharField(
        _("reason"),
        max_length=32,
        choices=Reason.choices,
        blank=True,
        help_text=_("Why it was rejected or not applied."),
    )
    detail = models.TextField(
        _("detail"), blank=True, help_text=_("Human-readable detail, without secrets.")
    )
    result = models.CharField(
        _("reported result"),
        max_length=16,
        choices=Result.choices,
        blank=True,
        help_text=_("The payment outcome the result reported."),
    )
    status_before = models.CharField(
        _("status before"), max_length=16, blank=True, help_text=_("Session status before.")
    )
    status_after = models.CharField(
        _("status after"), max_length=16, blank=True, help_text=_("Session status after.")
    )
    payment_token = models.CharField(
        _("payment token"), max_length=255, blank=True, help_text=_("From the result.")
    )
    raw_body = models.TextField(
        _("raw body"), blank=True, help_text=_("What arrived, capped in size.")
    )
    raw_body_truncated = models.BooleanField(
        _("raw body truncated"), default=False, help_text=_("Whether raw_body was cut.")
    )
    claims = models.JSONField(
        _("claims"),
        null=True,
        blank=True,
        help_text=_("Decoded JWT claims (unverified ones too, for rejected results)."),
    )
    remote_addr = models.GenericIPAddressField(
        _("remote address"), null=True, blank=True, help_text=_("Sender's address.")
    )
    created_at = models.DateTimeField(
        _("received at"), auto_now_add=True, help_text=_("When it arrived.")
    )
    purged_at = models.DateTimeField(
        _("raw data purged at"),
        null=True,
        blank=True,
        help_text=_("When etpay_purge removed the raw body and the payer's claims."),
    )

    class Meta:
        verbose_name = _("ETpay notification")
        verbose_name_plural = _("ETpay notifications")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["session", "created_at"], name="etpay_notif_session_idx"),
            models.Index(fields=["outcome", "created_at"], name="etpay_notif_outcome_idx"),
            # The admin's default order and each of its filters, newest first.
            models.Index(fields=["created_at", "id"], name="etpay_notif_created_idx"),
            models.Index(fields=["channel", "created_at"], name="etpay_notif_channel_idx"),
            models.Index(fields=["reason", "created_at"], name="etpay_notif_reason_idx"),
            models.Index(fields=["payment_token"], name="etpay_notif_paytoken_idx"),
            # "Needs attention": sessions with a recent rejected result (index-only).
            models.Index(
                fields=["created_at", "session"],
                name="etpay_notif_rejected_idx",
                condition=models.Q(outcome="rejected"),
            ),
            models.Index(
                fields=["created_at"],
                name="etpay_notif_purge_idx",
                condition=models.Q(purged_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        suffix = f": {self.reason}" if self.reason else ""
        return f"{self.get_channel_display()} {self.outcome}{suffix}"

    def __repr__(self) -> str:
        return (
            f"<Notification pk={self.pk} session={self.session_id} channel={self.channel} "
            f"outcome={self.outcome} reason={self.reason!r}>"
        )


class OutboxEffect(models.Model):
    """A state change's signal, recorded in the transaction that made the change (an outbox).

    ``payment_completed``, ``payment_failed``, ``session_expired`` and ``payment_duplicated``
    (see :mod:`django_etpay.duplicates`) are delivered to their receivers after commit by the
    process that made the change; the row says whether every receiver finished. When that
    process dies first, or a receiver raises, the row stays ``pending`` and
    :func:`django_etpay.outbox.deliver_due` (run by ``etpay_reconcile`` and the reconcile task)
    delivers it again once ``lease_until`` has passed. Whoever delivers holds the lease, so the
    in-process delivery and the recovery never deliver the same effect at the same time.
    Receivers must be idempotent: a delivery cut short is delivered again.
    """

    class Kind(models.TextChoices):
        """Which signal the effect sends."""

        PAYMENT_COMPLETED = "payment_completed", _("Payment completed")
        PAYMENT_FAILED = "payment_failed", _("Payment failed")
        SESSION_EXPIRED = "session_expired", _("Session expired")
        PAYMENT_DUPLICATED = "payment_duplicated", _("Paid more than once")

    class State(models.TextChoices):
        """Where the delivery stands."""

        PENDING = "pending", _("Pending")
        DONE = "done", _("Delivered")
        FAILED = "failed", _("Gave up")

    kind = models.CharField(
        _("signal"), max_length=32, choices=Kind.choices, help_text=_("The signal to send.")
    )
    session = models.ForeignKey(
        PaymentSession,
        on_delete=models.PROTECT,
        related_name="effects",
        verbose_name=_("session"),
        help_text=_("The session whose state changed."),
    )
    notification = models.ForeignKey(
        Notification,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="effects",
        verbose_name=_("notification"),
        help_text=_("The result that made the change (none for expiry)."),
    )
    previous_status = models.CharField(
        _("previous status"), max_length=16, blank=True, help_text=_("Status before the change.")
    )
    state = models.CharField(
        _("state"),
        max_length=16,
        choices=State.choices,
        default=State.PENDING,
        help_text=_("Whether every receiver finished."),
    )
    attempts = models.PositiveIntegerField(
        _("attempts"), default=0, help_text=_("Deliveries started so far.")
    )
    lease_until = models.DateTimeField(
        _("leased until"),
        help_text=_("Nobody but the current deliverer sends it before this moment."),
    )
    claim = models.CharField(
        _("claim"),
        max_length=32,
        blank=True,
        help_text=_("Identifies the delivery that holds the lease."),
    )
    last_error = models.TextField(
        _("last error"), blank=True, help_text=_("Receivers that raised on the last attempt.")
    )
    created_at = models.DateTimeField(
        _("created at"), auto_now_add=True, help_text=_("When the state changed.")
    )
    delivered_at = models.DateTimeField(
        _("delivered at"), null=True, blank=True, help_text=_("When every receiver finished.")
    )

    class Meta:
        verbose_name = _("ETpay effect")
        verbose_name_plural = _("ETpay effects")
        ordering = ["-created_at"]
        indexes = [
            # The recovery scan: only undelivered rows, which are few.
            models.Index(
                fields=["lease_until"],
                name="etpay_effect_due_idx",
                condition=models.Q(state="pending"),
            ),
            models.Index(fields=["session", "created_at"], name="etpay_effect_session_idx"),
            models.Index(fields=["state", "created_at"], name="etpay_effect_state_idx"),
            # The admin's "paid more than once" filter: the few sessions with an extra payment.
            models.Index(
                fields=["session"],
                name="etpay_effect_dup_idx",
                condition=models.Q(kind="payment_duplicated"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for session {self.session_id} ({self.state})"

    def __repr__(self) -> str:
        return (
            f"<OutboxEffect pk={self.pk} kind={self.kind} session={self.session_id} "
            f"state={self.state} attempts={self.attempts}>"
        )


class OrderLock(models.Model):
    """One row per order of a merchant account: who is creating its ETpay session right now.

    :func:`django_etpay.orders.session_for_order` claims the row with a conditional ``UPDATE``
    before it creates a session, so that two requests for the same order (a reload, a second
    tab) get one session between them: the second waits for the first's session instead of
    opening another. The claim expires by itself (``claimed_until``) if its holder dies.
    """

    merchant = models.CharField(
        _("merchant alias"),
        max_length=64,
        blank=True,
        default="",
        help_text=_('Alias in ETPAY["MERCHANTS"]; empty for the default account.'),
    )
    merchant_order_id = models.CharField(
        _("merchant order id"), max_length=64, help_text=_("The shop's own order id.")
    )
    claim = models.CharField(
        _("claim"),
        max_length=32,
        blank=True,
        help_text=_("Identifies the request creating the order's session; empty when none."),
    )
    claimed_until = models.DateTimeField(
        _("claimed until"),
        null=True,
        blank=True,
        help_text=_("When the claim ends even if its request never finished."),
    )

    class Meta:
        verbose_name = _("ETpay order lock")
        verbose_name_plural = _("ETpay order locks")
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "merchant_order_id"], name="etpay_order_lock_unique"
            )
        ]

    def __str__(self) -> str:
        return f"ETpay order lock for order {self.merchant_order_id}"

    def __repr__(self) -> str:
        return f"<OrderLock pk={self.pk} order={self.merchant_order_id!r}>"


# -- refunds ----------------------------------------------------------------------------------


class Refund(TimestampMixin):
    """Money given back to the payer of a paid session, in whole or in part.

    A refund is ``requested`` (recorded, counted against the amount paid) until staff or the
    refund backend confirm it ``completed`` (with ETpay's reference) or ``failed`` (with the
    reason; a failed refund no longer counts). Create and settle refunds through
    :mod:`django_etpay.refunds`, which keeps the total within the amount paid.
    """

    class State(models.TextChoices):
        """Where a refund stands: ``requested`` → ``completed`` or ``failed``, both final."""

        REQUESTED = "requested", _("Requested")
        COMPLETED = "completed", _("Completed")
        FAILED = "failed", _("Failed")

    session = models.ForeignKey(
        PaymentSession,
        on_delete=models.PROTECT,
        related_name="refunds",
        verbose_name=_("session"),
        help_text=_("The paid session the money is given back for."),
    )
    amount = models.PositiveBigIntegerField(
        _("amount"), help_text=_("Amount given back, in the session's currency (integer).")
    )
    reason = models.TextField(_("reason"), help_text=_("Why the money is given back."))
    # No database constraint and nothing done when the user is deleted, as for
    # PaymentSession.created_by: the user model may live on another database (a router).
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("requested by"),
        help_text=_("The user who asked for the refund; empty when code asked for it."),
    )
    state = models.CharField(
        _("state"),
        max_length=16,
        choices=State.choices,
        default=State.REQUESTED,
        help_text=_("Requested, then completed or failed."),
    )
    reference = models.CharField(
        _("ETpay reference"),
        max_length=255,
        blank=True,
        help_text=_("ETpay's reference of the transfer back, once it is done."),
    )
    failure_reason = models.TextField(
        _("failure reason"), blank=True, help_text=_("Why the refund could not be made.")
    )
    completed_at = models.DateTimeField(
        _("completed at"), null=True, blank=True, help_text=_("When it was confirmed done.")
    )
    failed_at = models.DateTimeField(
        _("failed at"), null=True, blank=True, help_text=_("When it was marked failed.")
    )

    class Meta:
        verbose_name = _("ETpay refund")
        verbose_name_plural = _("ETpay refunds")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["session", "state"], name="etpay_refund_session_idx"),
            models.Index(fields=["state", "created_at"], name="etpay_refund_state_idx"),
        ]
        constraints = [
            models.CheckConstraint(**_REFUND_AMOUNT_POSITIVE),
        ]
        permissions = [
            ("request_refund", _("Can request and settle refunds")),
        ]

    def __str__(self) -> str:
        return f"Refund {self.pk} of {self.amount} for session {self.session_id} ({self.state})"

    def __repr__(self) -> str:
        return (
            f"<Refund pk={self.pk} session={self.session_id} amount={self.amount} "
            f"state={self.state}>"
        )
