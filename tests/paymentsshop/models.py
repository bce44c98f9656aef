"""The concrete ``Payment`` of a django-payments shop, as django-payments' docs define it."""

from __future__ import annotations

from payments.models import BasePayment


class Payment(BasePayment):  # type: ignore[misc]  # django-payments ships no types
    """django-payments' ``BasePayment`` with the two URLs every shop provides."""

    class Meta:
        app_label = "paymentsshop"

    def get_success_url(self) -> str:
        return f"/shop/payments/{self.pk}/thanks/"

    def get_failure_url(self) -> str:
        return f"/shop/payments/{self.pk}/retry/"
