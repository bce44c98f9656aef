"""Settings for running the sandbox on its own port (``python -m django_etpay.sandbox``).

Everything comes from environment variables that :mod:`django_etpay.sandbox.__main__` sets from
its command-line flags:

- ``ETPAY_SANDBOX_MERCHANT_CODE`` / ``ETPAY_SANDBOX_MERCHANT_API_TOKEN``: the credentials the
  sandbox accepts (the shop's ``ETPAY["MERCHANT_CODE"]`` / ``ETPAY["MERCHANT_API_TOKEN"]``);
- ``ETPAY_SANDBOX_BASE_URL``: where it listens, e.g. ``http://127.0.0.1:8765``;
- ``ETPAY_SANDBOX_DATABASE``: its SQLite file;
- ``ETPAY_SANDBOX_LANGUAGE``: the funnel's language, ``en`` (default) or ``es``.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

#: Local demo credentials, used when none are given. They only ever unlock this sandbox.
DEFAULT_MERCHANT_CODE = "cl_sandbox_local"
DEFAULT_MERCHANT_API_TOKEN = "sandbox-local-merchant-api-token"  # noqa: S105 - demo value

# No sessions or signed cookies are used: a fresh key per process is enough.
SECRET_KEY = secrets.token_urlsafe(50)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
USE_TZ = True
TIME_ZONE = "America/Santiago"

INSTALLED_APPS = ["django_etpay.sandbox"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "django_etpay.sandbox.standalone_urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ETPAY_SANDBOX_DATABASE")
        or str(Path(tempfile.gettempdir()) / "etpay-sandbox.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The funnel's texts live in django_etpay's catalog; that app is not installed here.
LOCALE_PATHS = [str(Path(__file__).resolve().parent.parent / "locale")]
USE_I18N = True
LANGUAGE_CODE = os.environ.get("ETPAY_SANDBOX_LANGUAGE", "en")

_base_url = os.environ.get("ETPAY_SANDBOX_BASE_URL", "http://127.0.0.1:8765")
ETPAY = {
    "ENVIRONMENT": "sandbox",
    "MERCHANT_CODE": os.environ.get("ETPAY_SANDBOX_MERCHANT_CODE") or DEFAULT_MERCHANT_CODE,
    "MERCHANT_API_TOKEN": os.environ.get("ETPAY_SANDBOX_MERCHANT_API_TOKEN")
    or DEFAULT_MERCHANT_API_TOKEN,
    "API_URL": _base_url,
    "PMT_URL": _base_url,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_etpay.sandbox": {"handlers": ["console"], "level": "INFO"}},
}
