"""Settings for the load benchmark: the test settings, served by gunicorn, quiet logs."""

from __future__ import annotations

from tests.settings import *  # noqa: F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_etpay": {"level": "WARNING"}, "django.request": {"level": "CRITICAL"}},
}
# One connection per worker, kept between requests, as a production deployment would.
DATABASES["default"]["CONN_MAX_AGE"] = 60  # noqa: F405
