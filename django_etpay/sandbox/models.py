"""The sandbox's state: one row per session it created.

Kept in the database rather than in memory so that every worker process of the host project
(gunicorn, runserver's threads) sees the same sessions.
"""

from __future__ import annotations

from django.db import models


class SandboxSession(models.Model):
    """A session as ETpay's side would hold it."""

    class Status(models.TextChoices):
        """Where the payer is in the funnel."""

        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        SYSTEM_ERROR = "system_error", "System error"

    token = models.CharField(max_length=64, unique=True, help_text="Session token handed out.")
    signature_token = models.CharField(
        max_length=128, help_text="Per-session HS256 key (secret; never displayed)."
    )
    merchant = models.CharField(
        max_length=64, blank=True, help_text="Merchant alias whose credentials created it."
    )
    merchant_code = models.CharField(max_length=64, help_text="merchant_code sent.")
    merchant_order_id = models.CharField(max_length=64, help_text="merchant_order_id sent.")
    order_amount = models.PositiveBigIntegerField(help_text="Amount in whole pesos.")
    country = models.CharField(max_length=2, default="CL", help_text="The account's: CL or MX.")
    currency = models.CharField(max_length=3, default="CLP", help_text="CLP or MXN.")
    customer_email = models.CharField(max_length=254, blank=True, help_text="As sent.")
    metadata = models.JSONField(default=list, blank=True, help_text="As sent.")
    user_bank_code = models.CharField(max_length=32, blank=True, help_text="As sent.")
    user_rut = models.CharField(max_length=16, blank=True, help_text="As sent, normalised.")
    is_rut_block = models.BooleanField(default=False, help_text="As sent.")
    customer_phone = models.CharField(max_length=10, blank=True, help_text="As sent (Mexico).")
    target_flow = models.CharField(
        max_length=8, blank=True, help_text="As sent, then as chosen (Mexico): codi or spei."
    )
    completed_url = models.URLField(max_length=2000, blank=True, help_text="As sent.")
    cancellation_url = models.URLField(max_length=2000, blank=True, help_text="As sent.")
    webhook_url = models.URLField(max_length=2000, blank=True, help_text="As sent.")
    concat = models.CharField(max_length=8, blank=True, help_text="As sent.")
    faults = models.CharField(
        max_length=255, blank=True, help_text="Injected faults, e.g. late=2,twice."
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, help_text="Funnel state."
    )
    payment_token = models.CharField(max_length=64, blank=True, help_text="Payment id.")
    user_bank = models.CharField(max_length=64, blank=True, help_text="Bank the payer chose.")
    payer_rut = models.CharField(max_length=16, blank=True, help_text="RUT the payer used.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When it was created.")
    completed_at = models.DateTimeField(null=True, blank=True, help_text="When it ended.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["merchant_order_id"], name="etpay_sbx_order_idx")]

    def __str__(self) -> str:
        return f"Sandbox session for order {self.merchant_order_id} ({self.status})"

    def __repr__(self) -> str:
        return (
            f"<SandboxSession pk={self.pk} order={self.merchant_order_id!r} status={self.status}>"
        )
