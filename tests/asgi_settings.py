"""Settings for the uvicorn server of ``tests/test_asgi.py``: the subprocess settings, plus a
probe view (``tests/asgi_urls.py``) and quiet logs (the server's output goes to a pipe)."""

from __future__ import annotations

from tests.subprocess_settings import *  # noqa: F403

ROOT_URLCONF = "tests.asgi_urls"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_etpay": {"level": "WARNING"}},
}
