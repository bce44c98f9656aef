"""A django-payments shop paid through ``EtpayProvider`` and the local sandbox, for the browser.

The test settings (on a SQLite file of its own, ``SHOP_DATABASE``) served by ``runserver`` on
``127.0.0.1:SHOP_PORT``: django-payments' host is ``localhost:SHOP_PORT``, ETpay is the sandbox
mounted at ``http://127.0.0.1:SHOP_PORT/sandbox``.
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import ETPAY, MIDDLEWARE

_PORT = os.environ["SHOP_PORT"]
_SANDBOX = f"http://127.0.0.1:{_PORT}/sandbox"

# runserver serves the sandbox's static files only with DEBUG on.
DEBUG = True
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["SHOP_DATABASE"],
        # The sandbox's webhook and the payer's return arrive at the same moment: wait for the
        # lock, and take it up front so that a read is never upgraded to a write under
        # contention (as the example shop does).
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }
}
# The payer's language (the browser asks for Chilean Spanish), as the example shop does.
MIDDLEWARE = [*MIDDLEWARE[:2], "django.middleware.locale.LocaleMiddleware", *MIDDLEWARE[2:]]
ROOT_URLCONF = "tests.browser.payments_urls"
PAYMENT_HOST = f"localhost:{_PORT}"
PAYMENT_USES_SSL = False
ETPAY = {**ETPAY, "API_URL": _SANDBOX, "PMT_URL": _SANDBOX}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_etpay": {"handlers": ["console"], "level": "INFO"}},
}
