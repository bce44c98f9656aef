"""Child processes of the tests and benchmarks: their environment, a free port, waiting for them.

Waiting polls a condition until it holds or a deadline passes; no assertion depends on how long
a sleep lasted.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it is true; raise :class:`TimeoutError` naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def wait_for_url(url: str, timeout: float = 60.0) -> None:
    """Wait until a server answers ``url`` (any HTTP status)."""

    def answers() -> bool:
        try:
            requests.get(url, timeout=10)
        except requests.RequestException:
            return False
        return True

    wait_until(answers, f"a server at {url}", timeout)


def stop(process: subprocess.Popen[Any]) -> None:
    """Ask ``process`` to end (SIGTERM), and kill it if it has not within 10 seconds."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
