"""App configuration for the local ETpay sandbox."""

from __future__ import annotations

from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """The sandbox's own app: its session table and templates."""

    name = "django_etpay.sandbox"
    label = "etpay_sandbox"
    verbose_name = "ETpay sandbox"
    default_auto_field = "django.db.models.BigAutoField"
