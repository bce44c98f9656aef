"""Browser fixtures of the single-page checkout tests: the example shop served by a real
process, and Debian's chromium driven by Playwright.

Playwright's own browser download is not used: ``ETPAY_TEST_CHROMIUM`` names the browser
(``/usr/bin/chromium``, from ``apt-get install chromium``, by default).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests import httpfakes

REPO = Path(__file__).resolve().parents[2]
SHOP_DIR = REPO / "example_project"
WIDGET_LOADER = REPO / "django_etpay" / "static" / "django_etpay" / "widget.js"

CHROMIUM = os.environ.get("ETPAY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: How long a browser step may take on a loaded two-core machine (milliseconds).
STEP_MS = 20_000

_SETTINGS = """
from shopsite.settings import *  # noqa: F403

DATABASES = {"default": {**DATABASES["default"], "NAME": %r, "TEST": {}}}  # noqa: F405
"""


class Shop:
    """The example shop served on 127.0.0.1 with its own SQLite file."""

    def __init__(self, base: str, database: Path) -> None:
        self.base = base
        self.database = database

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the shop's database (a second connection; the server keeps writing)."""
        with sqlite3.connect(self.database, timeout=20) as connection:
            return connection.execute(sql, params).fetchall()

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        """Wait until ``condition()`` holds (the webhook arrives on another thread)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)


@contextlib.contextmanager
def serve_shop(folder: Path) -> Iterator[Shop]:
    """The example shop (``runserver``, which serves the static files) and its sandbox."""
    database = folder / "shop.sqlite3"
    (folder / "spa_shop_settings.py").write_text(_SETTINGS % str(database))
    port = httpfakes.closed_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        "DJANGO_SETTINGS_MODULE": "spa_shop_settings",
        "PYTHONPATH": os.pathsep.join([str(folder), str(SHOP_DIR), str(REPO)]),
        "SHOP_PORT": str(port),
        "DJANGO_DEBUG": "1",
    }
    for command in (["migrate", "--noinput"], ["load_demo_products"]):
        done = subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, "manage.py", *command],
            cwd=SHOP_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    args = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    with httpfakes.serving(args, port=port, env=env, cwd=str(SHOP_DIR), probe="/spa/") as served:
        yield Shop(served.base, database)


@contextlib.contextmanager
def chromium(playwright: Any, profile: Path, **options: Any) -> Iterator[Any]:
    """A browser context on a fresh chromium profile (its own user-data-dir), as a first-time
    visitor has."""
    context = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_FLAGS,
        **options,
    )
    context.set_default_timeout(STEP_MS)
    try:
        yield context
    finally:
        context.close()
