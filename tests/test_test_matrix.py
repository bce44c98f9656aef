"""The README's test command: what it runs, skips and reports."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.repo

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("test_matrix", ROOT / "scripts/test_matrix.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["test_matrix"] = module
    spec.loader.exec_module(module)
    return module


matrix = _load()
ENVS = ["py310-django42", "py312-django52", "py313-django61", "heavy", "lint", "type"]


def test_plan_runs_pairs_on_their_python_and_the_rest_on_the_best_one() -> None:
    runnable, skipped = matrix.plan(ENVS, {"3.10": "/p/3.10", "3.11": "/p/3.11"})
    assert runnable == {
        "py310-django42": "/p/3.10",
        "heavy": "/p/3.11",
        "lint": "/p/3.11",
        "type": "/p/3.11",
    }
    assert skipped == {
        "py312-django52": "no python3.12 found",
        "py313-django61": "no python3.13 found",
    }


def test_plan_prefers_python_312_for_unpinned_envs() -> None:
    runnable, _ = matrix.plan(["type"], {"3.13": "/p/3.13", "3.12": "/p/3.12"})
    assert runnable == {"type": "/p/3.12"}


def test_plan_without_any_python() -> None:
    runnable, skipped = matrix.plan(["py310-django42", "type"], {})
    assert runnable == {}
    assert set(skipped) == {"py310-django42", "type"}


def test_summary_passes_only_when_all_ran(capsys: pytest.CaptureFixture[str]) -> None:
    runnable = {"py310-django42": "/p/3.10", "lint": "/p/3.10"}
    results = {"py310-django42": ("passed", 30.0), "lint": ("passed", 2.0)}
    assert matrix.summarise(runnable, {}, results, 32.0, require_all=True) == 0
    assert "PASSED: every environment ran;" in capsys.readouterr().out


def test_summary_says_what_was_skipped_and_fails_in_ci(capsys: pytest.CaptureFixture[str]) -> None:
    runnable = {"py310-django42": "/p/3.10"}
    results = {"py310-django42": ("passed", 30.0)}
    skipped = {"py313-django61": "no python3.13 found"}
    assert matrix.summarise(runnable, skipped, results, 30.0, require_all=False) == 0
    out = capsys.readouterr().out
    assert re.search(r"py313-django61 +SKIPPED", out)
    assert "1 environment(s) were SKIPPED: py313-django61" in out
    assert matrix.summarise(runnable, skipped, results, 30.0, require_all=True) == 1


def test_summary_fails_on_a_failed_env_or_no_django_pair() -> None:
    assert matrix.summarise({"lint": "/p"}, {}, {"lint": ("FAILED", 1.0)}, 1.0, False) == 1
    assert (
        matrix.summarise(
            {"lint": "/p"}, {"py310-django42": "x"}, {"lint": ("passed", 1.0)}, 1.0, False
        )
        == 1
    )
    assert (
        matrix.summarise(
            {"py310-django42": "/p"}, {}, {"py310-django42": ("did not run", 0.0)}, 0.0, False
        )
        == 1
    )


def test_read_results_maps_tox_json(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text(
        '{"testenvs": {"a": {"result": {"success": true, "duration": 3.5}},'
        ' "b": {"result": {"success": false, "duration": 1}}}}'
    )
    got = matrix.read_results(report, {"a": "/p", "b": "/p", "c": "/p"})
    assert got == {"a": ("passed", 3.5), "b": ("FAILED", 1.0), "c": ("did not run", 0.0)}


def test_the_lowest_versions_env_runs_on_its_own_python() -> None:
    runnable, skipped = matrix.plan(
        ["py310-lowest", "type"], {"3.10": "/p/3.10", "3.12": "/p/3.12"}
    )
    assert runnable == {"py310-lowest": "/p/3.10", "type": "/p/3.12"}
    assert skipped == {}
    runnable, skipped = matrix.plan(["py310-lowest"], {"3.12": "/p/3.12"})
    assert (runnable, skipped) == ({}, {"py310-lowest": "no python3.10 found"})


def test_every_environment_of_the_envlist_runs_when_every_python_is_there() -> None:
    from tests.test_release import tox_envlist

    envlist = tox_envlist()
    assert {"docs", "package", "lint", "type", "heavy"} <= set(envlist)
    everything = {v: f"/p/{v}" for v in ("3.10", "3.11", "3.12", "3.13")}
    runnable, skipped = matrix.plan(envlist, everything)
    assert skipped == {}
    # Environments without a Python factor run on the preferred interpreter.
    # The SQLite environment is pinned to its Python like the other pairs.
    assert runnable["py311-django42-sqlite"] == "/p/3.11"
    for env in ("docs", "package"):
        assert runnable[env] == "/p/3.12"
    only_310 = matrix.plan(envlist, {"3.10": "/p/3.10"})[0]
    assert only_310["package"] == only_310["docs"] == "/p/3.10"


def test_the_environments_are_tox_env_list_without_the_extra_ones() -> None:
    # `tox list` also names environments outside env_list (mutation testing, about a quarter
    # of an hour): make test and CI ran it although the README says they do not.
    config = "[testenv:lint]\n\n[tox]\nenv_list =\n  py312-django52\n  heavy\n  lint\nlabels =\n"
    assert matrix.parse_env_list(config) == ["py312-django52", "heavy", "lint"]


def test_tox_environments_reads_the_env_list_from_tox_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[list[str]] = []

    class Done:
        stdout = "[tox]\nenv_list =\n  py312-django52\n  lint\n"

    def run(command: list[str], **kwargs: object) -> Done:
        calls.append(command)
        return Done()

    monkeypatch.setattr(matrix.subprocess, "run", run)
    assert matrix.tox_environments("tox") == ["py312-django52", "lint"]
    assert calls[0][:2] == ["tox", "config"]
    assert "env_list" in calls[0]


def gate_report(**overrides: object) -> dict[str, object]:
    report: dict[str, object] = {
        "passed": 10,
        "failed": [],
        "skipped_allowed": [{"test": "t::a", "reason": "sqlite", "allowed_by": "mark:postgres"}],
        "skipped_not_allowed": [],
        "reruns": {},
    }
    return {**report, **overrides}


def test_summary_counts_tests_per_environment_and_names_every_rerun(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runnable = {"py312-django52": "/p/3.12", "heavy": "/p/3.12", "lint": "/p/3.12"}
    results = dict.fromkeys(runnable, ("passed", 3.0))
    gate = {
        "py312-django52": gate_report(),
        "heavy": gate_report(passed=36, reruns={"tests/browser/test_widget.py::test_x": 1}),
    }
    assert matrix.summarise(runnable, {}, results, 9.0, True, gate) == 0
    out = capsys.readouterr().out
    assert re.search(r"py312-django52 +passed +3 +10 +0 +1 +0 +0", out)
    assert re.search(r"heavy +passed +3 +36 +0 +1 +0 +1", out)
    assert "RERUN heavy: tests/browser/test_widget.py::test_x (1x)" in out
    assert "1 test(s) rerun" in out


def test_summary_fails_on_a_skip_outside_the_allow_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Even where pytest itself passed (ETPAY_GATE unset), the summary fails the gate.
    runnable = {"heavy": "/p/3.12", "py312-django52": "/p/3.12"}
    results = dict.fromkeys(runnable, ("passed", 3.0))
    skip = {"test": "tests/browser", "reason": "could not import 'playwright.sync_api'"}
    gate = {"heavy": gate_report(skipped_not_allowed=[skip]), "py312-django52": gate_report()}
    assert matrix.summarise(runnable, {}, results, 9.0, False, gate) == 1
    out = capsys.readouterr().out
    assert "SKIP NOT ALLOWED heavy: tests/browser: could not import 'playwright.sync_api'" in out
    assert "FAILED: 1 test(s) skipped outside tests/allowed_skips.txt" in out


def test_summary_fails_a_pytest_environment_that_wrote_no_report(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runnable = {"py312-django52": "/p/3.12"}
    results = {"py312-django52": ("passed", 3.0)}
    assert matrix.summarise(runnable, {}, results, 3.0, False, {"py312-django52": None}) == 1
    out = capsys.readouterr().out
    assert "no pytest report" in out
    assert "FAILED: py312-django52" in out


def test_gate_reports_are_read_from_each_environment_directory(tmp_path: Path) -> None:
    (tmp_path / "py312-django52").mkdir()
    (tmp_path / "py312-django52" / matrix.GATE_REPORT).write_text(json.dumps(gate_report()))
    runnable = {"py312-django52": "/p", "heavy": "/p", "lint": "/p", "type": "/p", "docs": "/p"}
    got = matrix.read_gate_reports(tmp_path, runnable)
    # lint, type and docs run no pytest; heavy ran it but left no report.
    assert got == {"py312-django52": gate_report(), "heavy": None}


def test_tox_sets_each_environment_s_database_and_passes_through_only_what_it_needs() -> None:
    import configparser

    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    lines = (ROOT / "tox.ini").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    # No wildcard lets an exported ETPAY_TEST_DB=sqlite (or ETPAY_TEST_UPDATE_SCHEMA=1, which
    # rewrites docs/openapi.json instead of checking it) into an environment.
    assert "ETPAY_TEST_*" not in text
    assert "ETPAY_TEST_UPDATE_SCHEMA" not in text
    for section in tox.sections():
        assert "ETPAY_TEST" not in tox[section].get("pass_env", ""), section
    set_env = tox["testenv"]["set_env"]
    assert "ETPAY_TEST_DB = postgresql" in set_env
    assert "sqlite: ETPAY_TEST_DB = sqlite" in set_env
    assert "ETPAY_GATE = 1" in set_env
    assert "ETPAY_GATE_REPORT = {env_dir}/" + matrix.GATE_REPORT in set_env


def test_heavy_starts_first_and_the_rest_keep_their_order() -> None:
    runnable = dict.fromkeys(["py310-lowest", "py312-django52", "heavy", "lint"], "/p")
    assert matrix.run_order(runnable) == ["heavy", "py310-lowest", "py312-django52", "lint"]
