"""``python -m django_etpay.sandbox`` serves the sandbox on its own port."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.httpfakes import closed_port, serving

pytestmark = pytest.mark.slow

TOKEN = "standalone-test-token-0123456789abcdef"


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[str]:
    port = closed_port()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["ETPAY_SANDBOX_MERCHANT_API_TOKEN"] = TOKEN
    args = [
        sys.executable,
        "-m",
        "django_etpay.sandbox",
        "--port",
        str(port),
        "--merchant-code",
        "cl_sandbox_standalone",
        "--database",
        str(tmp_path / "sandbox.sqlite3"),
    ]
    with serving(args, port=port, env=env) as served:
        yield served.base
    assert TOKEN not in served.output


def test_standalone_sandbox_accepts_its_configured_credentials(standalone: str) -> None:
    body = {
        "merchant_code": "cl_sandbox_standalone",
        "merchant_api_token": TOKEN,
        "merchant_order_id": "OC-9",
        "order_amount": 1000,
    }
    reply = requests.post(f"{standalone}/session/initialize", data=json.dumps(body), timeout=5)
    assert reply.status_code == 200
    token = reply.json()["token"]
    funnel = requests.get(f"{standalone}/session/{token}", timeout=5)
    assert "ETpay sandbox - no real money" in funnel.text

    body["merchant_api_token"] = "another-token"
    refused = requests.post(f"{standalone}/session/initialize", data=json.dumps(body), timeout=5)
    assert refused.status_code == 401
