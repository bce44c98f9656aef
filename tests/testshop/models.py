"""What a shop typically stores next to its ETpay sessions."""

from __future__ import annotations

from django.db import models

from django_etpay.models import PaymentSession


class Order(models.Model):
    """A shop order paid through one ETpay session."""

    number = models.CharField(max_length=32, unique=True)
    payment_session = models.ForeignKey(
        PaymentSession, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        app_label = "testshop"

    def __str__(self) -> str:
        return self.number
