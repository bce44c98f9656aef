"""App configuration for django_etpay."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EtpayConfig(AppConfig):
    """Registers the system checks; does nothing else at import."""

    name = "django_etpay"
    verbose_name = _("ETpay payments")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_etpay import checks

        checks.register()
