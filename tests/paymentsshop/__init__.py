"""A shop built on django-payments: its ``Payment`` is django-payments' own ``BasePayment``."""
