"""Environment for Django processes the heavy tests start on the test run's own database."""

from __future__ import annotations

import os
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def django_env(**extra: str) -> dict[str, str]:
    """``os.environ`` for a child process using ``tests.subprocess_settings`` on the test
    database this process is connected to (PostgreSQL only)."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.subprocess_settings",
        "ETPAY_TEST_PGHOST": str(db["HOST"]),
        "ETPAY_TEST_PGPORT": str(db["PORT"]),
        "ETPAY_TEST_PGDATABASE": str(db["NAME"]),
        "ETPAY_TEST_PGUSER": str(db["USER"]),
        "ETPAY_TEST_PGPASSWORD": str(db["PASSWORD"] or ""),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }
    env.pop("ETPAY_TEST_DB", None)
    return env
