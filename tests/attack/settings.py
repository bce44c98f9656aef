"""Settings the attack run serves under gunicorn: the test settings, plus

- ``ETPAY["API_URL"]`` pointing at the runner's hostile ETpay (``ETPAY_ATTACK_API_URL``);
- explicit ``SIGNATURE_KEYS``, so that the secret search knows them;
- a return-URL limit under gunicorn's 4 KB request line, so that the app's own limit is
  reachable through the server (``NOTIFICATION_MAX_BYTES``);
- a large budget for results naming no session, so that every request is promised a row;
- every log record of the app, Django and the signal counter in one file per run.
"""

from __future__ import annotations

import os

from tests.attack import ETPAY_OVERRIDES
from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.attack"]  # noqa: F405
ROOT_URLCONF = "tests.attack.urls"

#: Signature keys of the run (searched for in every response, log line and admin page).
ATTACK_SIGNATURE_KEYS = [
    "attack-signature-key-current-7f3a9c1e5b2d4068a1c3e5f7092b4d6f",
    "attack-signature-key-previous-0e2c4a6b8d1f3e5a7c9b0d2f4a6c8e1b",
]

ETPAY = {
    **ETPAY,  # noqa: F405
    "API_URL": os.environ.get("ETPAY_ATTACK_API_URL", "http://127.0.0.1:9"),
    "SIGNATURE_KEYS": ATTACK_SIGNATURE_KEYS,
    **ETPAY_OVERRIDES,
    "TIMEOUT": (2.0, 5.0),
    "TOTAL_TIMEOUT": 10.0,
}

_log_file = os.path.join(os.environ.get("ETPAY_ATTACK_LOG_DIR", "."), "app.log")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(process)d %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "file": {"class": "logging.FileHandler", "filename": _log_file, "formatter": "plain"}
    },
    "root": {"handlers": ["file"], "level": "DEBUG"},
    "loggers": {
        # Django's SQL log would fill the file with every query: the app's own lines matter.
        "django.db.backends": {"level": "INFO"},
    },
}
# One connection per worker, kept between requests, as a production deployment would.
DATABASES = {"default": {**DATABASES["default"], "CONN_MAX_AGE": 60}}  # noqa: F405
