"""The example shop runs its own checks and test suite under its own settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SHOP_DIR = Path(__file__).resolve().parent.parent / "example_project"

pytestmark = pytest.mark.slow


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = os.pathsep.join([str(SHOP_DIR.parent), env.get("PYTHONPATH", "")])
    return subprocess.run(  # noqa: S603 - fixed argv, no user input
        [sys.executable, "manage.py", *args],
        cwd=SHOP_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_shop_passes_system_checks_and_has_its_migrations() -> None:
    check = manage("check", "--fail-level", "WARNING")
    assert check.returncode == 0, check.stderr
    migrations = manage("makemigrations", "shop", "etpay_sandbox", "--check", "--dry-run")
    assert migrations.returncode == 0, migrations.stdout + migrations.stderr


def test_shop_suite_pays_orders_through_the_sandbox() -> None:
    result = manage("test", "shop", "--noinput")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "OK" in result.stderr
    assert "Ran 21 tests" in result.stderr
