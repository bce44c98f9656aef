"""Integrations of django_etpay with other Django payment frameworks.

Each subpackage is optional and imports its framework only when it is used:
:mod:`django_etpay.contrib.payments` for django-payments (``pip install
"django-etpay[payments]"``).
"""
