"""The whole attack run, under gunicorn on PostgreSQL (tox env ``heavy``).

Runs ``python -m tests.attack`` (the named corpus over real HTTP, 5,000 generated inputs per
entry point, the admin crawl and the secret search) and requires every goal to be 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.heavy

GOALS = (
    "5xx",
    "wrong transitions",
    "requests without a promised row",
    "secret hits",
    "other problems",
    "admin lookup oracles",
)


def figure(report: str, name: str) -> int:
    """The number on the line ``name`` of the final summary."""
    final = report[report.rindex("attack run: all of it") :]
    match = re.search(rf"^  {re.escape(name)} +(\d+)", final, re.MULTILINE)
    assert match, f"{name!r} missing from the summary"
    return int(match.group(1))


# The run bounds itself (the subprocess timeout below); the tox env's 10-minute limit is for a
# hung browser, and a run sharing two cores with another environment can take longer.
@pytest.mark.timeout(1500)
def test_attack_run_under_gunicorn_finds_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.attack", "--examples", "5000"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    report = result.stdout
    print(report)
    assert result.returncode == 0, report[-6000:] + result.stderr[-3000:]
    assert figure(report, "corpus cases") >= 60
    for entry in ("notification", "widget", "return", "initialize"):
        assert figure(report, f"fuzz {entry} inputs") >= 5000
    for goal in GOALS:
        assert figure(report, goal) == 0, goal
    assert figure(report, "admin pages visited") > 50
