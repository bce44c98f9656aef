"""The example shop's app."""

from __future__ import annotations

from django.apps import AppConfig


class ShopConfig(AppConfig):
    """Connects the payment receivers: orders are fulfilled in a signal receiver."""

    name = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_etpay import signals
        from shop import receivers

        signals.payment_completed.connect(receivers.fulfil_order, dispatch_uid="shop.fulfil_order")
        signals.payment_failed.connect(
            receivers.mark_payment_failed, dispatch_uid="shop.mark_payment_failed"
        )
