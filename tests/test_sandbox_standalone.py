"""``python -m django_etpay.sandbox`` serves the sandbox on its own port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.httpfakes import closed_port

pytestmark = pytest.mark.slow

TOKEN = "standalone-test-token-0123456789abcdef"


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[str]:
    port = closed_port()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["ETPAY_SANDBOX_MERCHANT_API_TOKEN"] = TOKEN
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        [
            sys.executable,
            "-m",
            "django_etpay.sandbox",
            "--port",
            str(port),
            "--merchant-code",
            "cl_sandbox_standalone",
            "--database",
            str(tmp_path / "sandbox.sqlite3"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/assets/funnel.css", timeout=1)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("The standalone sandbox did not start.")
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
        assert TOKEN not in output


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
