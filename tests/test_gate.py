"""tests/gate.py: in the gate, a skip outside tests/allowed_skips.txt fails the run.

Each case runs pytest in a subprocess on a tiny test file, with the plugin loaded the way
tests/conftest.py loads it, and checks the exit status and the JSON report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests import gate

pytestmark = pytest.mark.repo

ROOT = Path(__file__).resolve().parent.parent

SKIPS = """
import pytest

def test_runs():
    assert True

def test_skips():
    pytest.skip("the extra is not installed")
"""

#: A module that skips itself at import, as tests/browser does without Playwright.
IMPORT_SKIP = """
import pytest

sync_api = pytest.importorskip("a_module_nobody_installed.sync_api")

def test_browser():
    assert sync_api
"""


def run_pytest(
    tmp_path: Path, source: str, allowed: str = "", *, enforce: bool = True, **env: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    (tmp_path / "test_tiny.py").write_text(source)
    (tmp_path / "allowed.txt").write_text(allowed)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    report = tmp_path / "report.json"
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("ETPAY_", "PYTEST_", "DJANGO_"))
    }
    environ |= {
        "PYTHONPATH": str(ROOT),
        "ETPAY_GATE_ALLOWED_SKIPS": str(tmp_path / "allowed.txt"),
        "ETPAY_GATE_REPORT": str(report),
        **env,
    }
    if enforce:
        environ["ETPAY_GATE"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.gate", "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, json.loads(report.read_text())


def test_a_skip_not_in_the_allow_list_fails_the_gate(tmp_path: Path) -> None:
    done, report = run_pytest(tmp_path, SKIPS)
    assert done.returncode == 1, done.stdout
    assert "FAILED: skipped test_tiny.py::test_skips: the extra is not installed" in done.stdout
    assert "1 skip(s) are not in tests/allowed_skips.txt" in done.stdout
    assert report["passed"] == 1
    assert report["skipped_not_allowed"] == [
        {"test": "test_tiny.py::test_skips", "reason": "the extra is not installed"}
    ]
    assert report["exitstatus"] == 1


def test_outside_the_gate_a_skip_is_reported_but_passes(tmp_path: Path) -> None:
    done, report = run_pytest(tmp_path, SKIPS, enforce=False)
    assert done.returncode == 0, done.stdout
    assert "not allowed: skipped test_tiny.py::test_skips" in done.stdout
    assert report["enforced"] is False
    assert len(report["skipped_not_allowed"]) == 1


def test_a_module_skipped_by_importorskip_fails_the_gate(tmp_path: Path) -> None:
    # tests/browser without Playwright: the whole module skips at collection.
    done, report = run_pytest(tmp_path, IMPORT_SKIP)
    assert done.returncode == 1, done.stdout
    [skip] = report["skipped_not_allowed"]
    assert skip["test"] == "test_tiny.py"
    assert "a_module_nobody_installed" in skip["reason"]


def test_a_listed_skip_passes_only_while_its_condition_holds(tmp_path: Path) -> None:
    allowed = "test_tiny.py::test_sk* | ETPAY_TEST_DB == sqlite | the extra is SQLite's\n"
    done, report = run_pytest(tmp_path, SKIPS, allowed, ETPAY_TEST_DB="sqlite")
    assert done.returncode == 0, done.stdout
    assert report["skipped_allowed"] == [
        {
            "test": "test_tiny.py::test_skips",
            "reason": "the extra is not installed",
            "allowed_by": "test_tiny.py::test_sk*",
        }
    ]
    assert report["skipped_not_allowed"] == []
    done, report = run_pytest(tmp_path, SKIPS, allowed, ETPAY_TEST_DB="postgresql")
    assert done.returncode == 1, done.stdout
    assert len(report["skipped_not_allowed"]) == 1


def test_a_failing_run_keeps_its_own_exit_status(tmp_path: Path) -> None:
    done, report = run_pytest(tmp_path, SKIPS + "\ndef test_fails():\n    assert False\n")
    assert done.returncode == 1
    assert report["failed"] == ["test_tiny.py::test_fails"]


def test_reruns_are_counted_by_name() -> None:
    plugin = gate.Gate(SimpleNamespace(), [], enforce=True)  # type: ignore[arg-type]
    for outcome in ("rerun", "rerun", "passed"):
        report = SimpleNamespace(nodeid="t.py::test_flaky", outcome=outcome, when="call")
        report.skipped = False
        report.failed = False
        report.passed = outcome == "passed"
        plugin.pytest_runtest_logreport(report)  # type: ignore[arg-type]
    assert plugin.reruns == {"t.py::test_flaky": 2}
    assert plugin.passed == ["t.py::test_flaky"]


def test_markers_conditions_and_django_versions() -> None:
    entry = gate.AllowedSkip("mark:postgres", "ETPAY_TEST_DB == sqlite", "why")
    assert entry.matches("tests/test_x.py::test_y", frozenset({"postgres", "django_db"}))
    assert not entry.matches("tests/test_x.py::test_y", frozenset({"django_db"}))
    old = gate.AllowedSkip("t::*", "Django < 99.0", "why")
    new = gate.AllowedSkip("t::*", "Django >= 99.0", "why")
    assert old.holds()
    assert not new.holds()


@pytest.mark.parametrize(
    "line",
    [
        "tests/test_x.py::test_y | ETPAY_TEST_DB == sqlite",
        "tests/test_x.py::test_y | on Tuesdays | why",
        "tests/test_x.py::test_y | ETPAY_TEST_DB < sqlite | why",
        " | ETPAY_TEST_DB == sqlite | why",
    ],
)
def test_a_malformed_allow_list_line_is_an_error(tmp_path: Path, line: str) -> None:
    path = tmp_path / "allowed.txt"
    path.write_text(f"# comment\n\n{line}\n")
    with pytest.raises(ValueError, match=r"allowed\.txt:3|condition|compares"):
        gate.load_allowed(path)


def test_the_suite_s_allow_list_names_postgres_tests_on_sqlite_django_s_own_csp_and_payments() -> (
    None
):
    entries = gate.load_allowed(gate.ALLOWED_SKIPS)
    assert [(e.test, e.condition) for e in entries] == [
        ("mark:postgres", "ETPAY_TEST_DB == sqlite"),
        ("tests/test_templatetags.py::test_django_builtin_csp_*", "Django < 6.0"),
        ("tests/test_contrib_payments.py*", "Django < 5.2"),
    ]
    assert all(e.why for e in entries)
