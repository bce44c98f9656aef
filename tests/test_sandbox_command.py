"""``manage.py etpay_sandbox`` serves the sandbox with the project's own credentials."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from pytest_django import Settings

from tests.httpfakes import closed_port, serving

ROOT = Path(__file__).resolve().parent.parent


def test_refuses_outside_the_sandbox_environment(settings: Settings) -> None:
    settings.ETPAY = {**settings.ETPAY, "ENVIRONMENT": "production"}
    with pytest.raises(CommandError, match="only with"):
        call_command("etpay_sandbox", "--port", "1")


def test_names_the_missing_credential(settings: Settings) -> None:
    settings.ETPAY = {k: v for k, v in settings.ETPAY.items() if k != "MERCHANT_CODE"}
    with pytest.raises(CommandError, match=r'ETPAY\["MERCHANT_CODE"\]'):
        call_command("etpay_sandbox", "--port", "1")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    port = closed_port()
    # SQLite settings: the command replaces its process with the sandbox, so nothing it
    # started (such as the suite's PostgreSQL server) would be cleaned up.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "ETPAY_TEST_DB": "sqlite"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    args = [
        sys.executable,
        "-m",
        "django",
        "etpay_sandbox",
        "--port",
        str(port),
        "--database",
        str(tmp_path / "sandbox.sqlite3"),
    ]
    with serving(args, port=port, env=env, cwd=str(tmp_path)) as served:
        yield served.base
    # The credentials reach the sandbox through its environment, never its output.
    assert django_settings.TEST_MERCHANT_API_TOKEN not in served.output


@pytest.mark.slow
def test_serves_the_sandbox_with_the_projects_credentials(served: str) -> None:
    body = {
        "merchant_code": django_settings.ETPAY["MERCHANT_CODE"],
        "merchant_api_token": django_settings.TEST_MERCHANT_API_TOKEN,
        "merchant_order_id": "OC-cmd-1",
        "order_amount": 2500,
    }
    reply = requests.post(f"{served}/session/initialize", data=json.dumps(body), timeout=5)
    assert reply.status_code == 200
    assert set(reply.json()) >= {"token", "signature_token", "terms_url"}

    body["merchant_api_token"] = "not-the-projects-token"
    refused = requests.post(f"{served}/session/initialize", data=json.dumps(body), timeout=5)
    assert refused.status_code == 401
    assert "message" in refused.json()
