"""App configuration for django_etpay."""

from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.utils.translation import gettext_lazy as _


class EtpayConfig(AppConfig):
    """Registers the system checks; connects the django-payments receivers when a
    ``PAYMENT_VARIANTS`` entry names :class:`~django_etpay.contrib.payments.EtpayProvider`."""

    name = "django_etpay"
    verbose_name = _("ETpay payments")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_etpay import checks

        checks.register()
        if _uses_payments_provider(getattr(settings, "PAYMENT_VARIANTS", None)):
            from django_etpay.contrib.payments import receivers

            receivers.connect()


def _uses_payments_provider(variants: object) -> bool:
    """Whether a django-payments variant is this app's provider (by its dotted path)."""
    if not isinstance(variants, dict):
        return False
    return any(
        isinstance(variant, list | tuple)
        and bool(variant)
        and str(variant[0]).startswith("django_etpay.contrib.payments.")
        for variant in variants.values()
    )
