"""ETpay for django-payments: :class:`EtpayProvider` (``pip install "django-etpay[payments]"``).

::

    PAYMENT_VARIANTS = {
        "etpay": ("django_etpay.contrib.payments.EtpayProvider", {}),
    }

The ``Payment`` status follows this app's signals. Their receivers are connected at start-up
when a variant names this provider; a project that configures a subclass of its own adds
``"django_etpay.contrib.payments"`` to ``INSTALLED_APPS`` instead.
"""

from __future__ import annotations

from django_etpay.contrib.payments.provider import EtpayProvider

__all__ = ["EtpayProvider"]
