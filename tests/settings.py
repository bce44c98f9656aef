"""Settings for the test suite: only what it needs.

The database is a real PostgreSQL server started by the suite (see ``tests/postgres.py``);
``ETPAY_TEST_DB=sqlite`` runs the suite on SQLite instead, for a quick local loop (the
concurrency tests then skip themselves). A second alias, ``payments``, serves the router tests.
"""

from __future__ import annotations

import os
from importlib.util import find_spec

SECRET_KEY = "django-etpay-tests-not-secret"  # test-only value
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "America/Santiago"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_etpay",
    "django_etpay.sandbox",
    "tests.testshop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# "payments" is where tests/routers.py routes the app's models in the router tests
# (tests/test_router_*.py); no other test uses it, and pytest-django creates a test database
# only for the aliases the collected tests ask for, so the rest of the suite never pays for it.
if os.environ.get("ETPAY_TEST_DB") == "sqlite":
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        "payments": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    }
else:
    from tests.postgres import database_settings

    # A second database on the same server.
    DATABASES = {
        "default": database_settings(),
        "payments": {**database_settings(), "NAME": "etpay_payments"},
    }

# Django's Tasks framework: the immediate backend by default (django.tasks on Django 6.0+, the
# django-tasks backport before); with django-tasks-db installed (the tox env `heavy`), also a
# database backend "db" that a real `db_worker` process serves in tests/test_tasks_worker.py.
_TASKS_MODULE = "django.tasks" if find_spec("django.tasks") else "django_tasks"
if _TASKS_MODULE == "django_tasks" and find_spec("django_tasks"):
    INSTALLED_APPS.append("django_tasks")
TASKS: dict[str, dict[str, object]] = {
    "default": {"BACKEND": f"{_TASKS_MODULE}.backends.immediate.ImmediateBackend"}
}
if find_spec("django_tasks_db"):
    INSTALLED_APPS.append("django_tasks_db")
    TASKS["db"] = {"BACKEND": "django_tasks_db.DatabaseBackend"}
# With django-tasks-rq installed (the tox env `heavy`), also an RQ backend "rq" on queue
# "etpay", whose Redis server tests/test_tasks_rq.py starts (tests/redis.py) on a unix socket.
if find_spec("django_tasks_rq") and _TASKS_MODULE == "django_tasks":
    INSTALLED_APPS.append("django_rq")
    TASKS["rq"] = {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["etpay"]}
    _REDIS = {"UNIX_SOCKET_PATH": os.environ.get("ETPAY_TEST_REDIS_SOCKET", ""), "DB": 0}
    # django-tasks-rq reads results through the "default" queue's connection.
    RQ_QUEUES = {"default": _REDIS, "etpay": _REDIS}

# django-payments (the extra `payments`, Django 5.2+): a shop whose Payment is django-payments'
# own BasePayment, paid through the EtpayProvider variant (tests/test_contrib_payments.py).
if find_spec("payments"):
    INSTALLED_APPS += ["payments", "tests.paymentsshop"]
    PAYMENT_HOST = "shop.example.test"
    PAYMENT_USES_SSL = True
    PAYMENT_MODEL = "paymentsshop.Payment"
    PAYMENT_VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
        "etpay": ("django_etpay.contrib.payments.EtpayProvider", {}),
        "dummy": ("payments.dummy.DummyProvider", {}),
    }

STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

#: Distinctive fake secrets, so tests can prove they never leak.
TEST_MERCHANT_API_TOKEN = "mat-4a005f0e9c1b7d2e-SECRET-API-TOKEN-270079"

ETPAY = {
    "MERCHANT_CODE": "cl_sandbox_tests",
    "MERCHANT_API_TOKEN": TEST_MERCHANT_API_TOKEN,
    "API_URL": "https://api.etpay.test",
    "PMT_URL": "https://pmt.etpay.test",
    "ENVIRONMENT": "sandbox",
    "TIMEOUT": (2.0, 5.0),
    "TOTAL_TIMEOUT": 10.0,
    "CONNECT_RETRIES": 0,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_etpay": {"level": "DEBUG"}},
}
