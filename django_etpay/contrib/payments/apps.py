"""App configuration of the django-payments integration (optional in ``INSTALLED_APPS``)."""

from __future__ import annotations

from django.apps import AppConfig


class EtpayPaymentsConfig(AppConfig):
    """Connects the receivers that move ``Payment`` rows; it has no models."""

    name = "django_etpay.contrib.payments"
    label = "etpay_payments"
    verbose_name = "ETpay for django-payments"

    def ready(self) -> None:
        from django_etpay.contrib.payments import receivers

        receivers.connect()
