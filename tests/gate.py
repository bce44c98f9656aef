"""The gate's pytest plugin: no test may skip quietly, and every run says what it did.

With ``ETPAY_GATE=1`` (every tox environment sets it) a skip that ``tests/allowed_skips.txt``
does not list, under a condition that holds in this run, fails the run: a skip caused by a
missing extra (Playwright, django-tasks-db), an inherited database or a broken import would
otherwise pass as green. Without it (a contributor's ``pytest``) skips are only reported.

With ``ETPAY_GATE_REPORT=<path>`` the outcome is also written there as JSON (passed, failed,
skipped allowed / not allowed, reruns by name), which ``scripts/test_matrix.py`` turns into the
summary table of ``make test``.

The allow-list has one entry a line, three fields separated by ``|``::

    <test> | <condition> | <why>

``<test>`` is an ``fnmatch`` pattern of the node id (``tests/test_x.py::test_y*``) or
``mark:<name>`` for every test carrying that marker. ``<condition>`` is
``ETPAY_TEST_DB == <value>`` or ``Django <op> <version>`` (``<``, ``>=``, ``==``):
a skip is allowed only while its condition holds.
"""

from __future__ import annotations

import fnmatch
import json
import operator
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

ALLOWED_SKIPS = Path(__file__).with_name("allowed_skips.txt")
_CONDITION = re.compile(r"^(ETPAY_TEST_DB|Django)\s*(==|<|>=)\s*([\w.]+)$")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "<": operator.lt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class AllowedSkip:
    """One line of the allow-list."""

    test: str
    condition: str
    why: str

    def matches(self, nodeid: str, markers: frozenset[str]) -> bool:
        if self.test.startswith("mark:"):
            return self.test.removeprefix("mark:") in markers
        return fnmatch.fnmatchcase(nodeid, self.test)

    def holds(self) -> bool:
        """Whether this run meets the entry's condition."""
        name, op, value = parse_condition(self.condition)
        compare = _OPERATORS[op]
        if name == "ETPAY_TEST_DB":
            return compare(os.environ.get("ETPAY_TEST_DB", ""), value)
        return compare(_version(metadata.version("Django")), _version(value))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def parse_condition(condition: str) -> tuple[str, str, str]:
    match = _CONDITION.match(condition.strip())
    if not match:
        raise ValueError(f"unknown skip condition {condition!r}")
    name, op, value = match.groups()
    if name == "ETPAY_TEST_DB" and op != "==":
        raise ValueError(f"ETPAY_TEST_DB only compares with ==: {condition!r}")
    return name, op, value


def load_allowed(path: Path) -> list[AllowedSkip]:
    """The entries of an allow-list file; a malformed line is an error, not ignored."""
    entries: list[AllowedSkip] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split("|")]
        if len(fields) != 3 or not all(fields):
            raise ValueError(f"{path.name}:{number}: expected '<test> | <condition> | <why>'")
        parse_condition(fields[1])
        entries.append(AllowedSkip(*fields))
    return entries


class Gate:
    """Collects the outcome of every test; fails the session on a skip not allowed."""

    def __init__(self, config: pytest.Config, allowed: list[AllowedSkip], enforce: bool) -> None:
        self.config = config
        self.allowed = allowed
        self.enforce = enforce
        self.report_path = os.environ.get("ETPAY_GATE_REPORT") or None
        self.markers: dict[str, frozenset[str]] = {}
        self.passed: list[str] = []
        self.failed: list[str] = []
        self.skips_allowed: list[dict[str, str]] = []
        self.skips_not_allowed: list[dict[str, str]] = []
        self.reruns: dict[str, int] = {}

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            self.markers[item.nodeid] = frozenset(mark.name for mark in item.iter_markers())

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        # A module or a conftest that skips itself (pytest.importorskip at import time).
        if report.skipped:
            self._skip(report.nodeid, report.longrepr)
        elif report.failed:
            self.failed.append(report.nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # pytest-rerunfailures reports each attempt it throws away as "rerun".
        if str(report.outcome) == "rerun":
            self.reruns[report.nodeid] = self.reruns.get(report.nodeid, 0) + 1
        elif report.skipped and not hasattr(report, "wasxfail"):
            self._skip(report.nodeid, report.longrepr)
        elif report.failed:
            if report.nodeid not in self.failed:
                self.failed.append(report.nodeid)
        elif report.passed and report.when == "call":
            self.passed.append(report.nodeid)

    def _skip(self, nodeid: str, longrepr: Any) -> None:
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        markers = self.markers.get(nodeid, frozenset())
        entry = next(
            (e for e in self.allowed if e.matches(nodeid, markers) and e.holds()),
            None,
        )
        skip = {"test": nodeid, "reason": reason}
        if entry is None:
            self.skips_not_allowed.append(skip)
        else:
            self.skips_allowed.append({**skip, "allowed_by": entry.test})

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # A run whose tests all skipped at collection ends "no tests ran" (5): make it a failure.
        quiet = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if self.enforce and self.skips_not_allowed and session.exitstatus in quiet:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.report_path:
            result = {
                "passed": len(self.passed),
                "failed": self.failed,
                "skipped_allowed": self.skips_allowed,
                "skipped_not_allowed": self.skips_not_allowed,
                "reruns": self.reruns,
                "enforced": self.enforce,
                "exitstatus": int(session.exitstatus),
            }
            Path(self.report_path).write_text(json.dumps(result, indent=2) + "\n")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        if self.reruns:
            terminalreporter.section("reruns")
            for nodeid, count in sorted(self.reruns.items()):
                write(f"RERUN x{count} {nodeid}")
        if self.skips_not_allowed:
            label = "FAILED" if self.enforce else "not allowed"
            terminalreporter.section(f"skips not in {ALLOWED_SKIPS.name}")
            for skip in self.skips_not_allowed:
                write(f"{label}: skipped {skip['test']}: {skip['reason']}")
            if self.enforce:
                write(
                    f"ETPAY_GATE=1: {len(self.skips_not_allowed)} skip(s) are not in "
                    f"tests/{ALLOWED_SKIPS.name}; the run fails. Make the test run here, or "
                    "list it there with the condition under which it may skip and why."
                )


def pytest_configure(config: pytest.Config) -> None:
    path = Path(os.environ.get("ETPAY_GATE_ALLOWED_SKIPS") or ALLOWED_SKIPS)
    enforce = os.environ.get("ETPAY_GATE") == "1"
    config.pluginmanager.register(Gate(config, load_allowed(path), enforce), "etpay-gate")
