"""Settings of the example shop.

By default the shop pays through the local ETpay sandbox that it mounts itself at
``/sandbox/``: no account, no network, no other setup. To use ETpay's real sandbox (or
production), set the ``ETPAY_*`` environment variables below to the values ETpay handed over
and ``SHOP_LOCAL_SANDBOX=0``.
"""

from __future__ import annotations

import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent.parent

# Local demo values only: set DJANGO_SECRET_KEY and DJANGO_DEBUG=0 anywhere else.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-shop-local-demo-key-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")

#: The port run.sh serves on; the local sandbox's URLs point at it.
SHOP_PORT = os.environ.get("SHOP_PORT", "8000")
#: Whether this project mounts the local ETpay sandbox (the default).
SHOP_LOCAL_SANDBOX = os.environ.get("SHOP_LOCAL_SANDBOX", "1") == "1"
#: The shop's country: "CL" (the default, pesos chilenos) or "MX" (a Mexican shop: MXN,
#: CoDi/SPEI, the payer's phone instead of a RUT). See docs/example-shop.md.
SHOP_COUNTRY = os.environ.get("ETPAY_EXAMPLE_COUNTRY", "CL").upper()
_MEXICAN = SHOP_COUNTRY == "MX"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_etpay",
    "shop",
]
if SHOP_LOCAL_SANDBOX:
    INSTALLED_APPS.append("django_etpay.sandbox")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Spanish by default (a Chilean shop), English for browsers that ask for it.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "shopsite.urls"
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
WSGI_APPLICATION = "shopsite.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DATABASE") or BASE_DIR / "db.sqlite3",
        # The sandbox's webhook arrives on another thread while the payer's request runs:
        # wait for the lock rather than fail, and take it up front (Django 5.1+) so that a
        # read never has to be upgraded to a write under contention.
        "OPTIONS": {
            "timeout": 20,
            **({"transaction_mode": "IMMEDIATE"} if django.VERSION >= (5, 1) else {}),
        },
        "TEST": {"NAME": BASE_DIR / "test-db.sqlite3"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "es"
LANGUAGES = [("es", "Español"), ("en", "English")]
TIME_ZONE = "America/Mexico_City" if _MEXICAN else "America/Santiago"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

_local_sandbox_url = f"http://127.0.0.1:{SHOP_PORT}/sandbox"
ETPAY = {
    "ENVIRONMENT": os.environ.get("ETPAY_ENVIRONMENT", "sandbox"),
    # The merchant account's country: its currency (CLP, MXN) and payment fields follow.
    "COUNTRY": SHOP_COUNTRY,
    # Local demo credentials: the mounted sandbox accepts exactly these.
    "MERCHANT_CODE": os.environ.get(
        "ETPAY_MERCHANT_CODE", "mx_sandbox_example_shop" if _MEXICAN else "cl_sandbox_example_shop"
    ),
    "MERCHANT_API_TOKEN": os.environ.get(
        "ETPAY_MERCHANT_API_TOKEN", "example-shop-local-sandbox-api-token"
    ),
    "API_URL": os.environ.get("ETPAY_API_URL", _local_sandbox_url),
    "PMT_URL": os.environ.get("ETPAY_PMT_URL", _local_sandbox_url),
    # Where django_etpay's return view sends the payer once it has checked the JWT.
    "SUCCESS_URL": "shop:payment-result",
    "FAILURE_URL": "shop:payment-result",
    # The single-page checkout (/spa/) on the REST API: the shop's hook says what an order
    # costs, and guests may pay (the hook accepts only orders their own browser created).
    "API_ORDER_HOOK": "shop.api.checkout_order",
    "API_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_etpay": {"handlers": ["console"], "level": "INFO"},
        "shop": {"handlers": ["console"], "level": "INFO"},
    },
}
