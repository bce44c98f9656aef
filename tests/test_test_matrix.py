"""The README's test command: what it runs, skips and reports."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

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
    assert "PASSED: every environment ran." in capsys.readouterr().out


def test_summary_says_what_was_skipped_and_fails_in_ci(capsys: pytest.CaptureFixture[str]) -> None:
    runnable = {"py310-django42": "/p/3.10"}
    results = {"py310-django42": ("passed", 30.0)}
    skipped = {"py313-django61": "no python3.13 found"}
    assert matrix.summarise(runnable, skipped, results, 30.0, require_all=False) == 0
    out = capsys.readouterr().out
    assert "py313-django61   SKIPPED" in out
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
    assert {"docs", "package", "check-manifest", "lint", "type", "heavy"} <= set(envlist)
    everything = {v: f"/p/{v}" for v in ("3.10", "3.11", "3.12", "3.13")}
    runnable, skipped = matrix.plan(envlist, everything)
    assert skipped == {}
    # Environments without a Python factor run on the preferred interpreter.
    for env in ("docs", "package", "check-manifest"):
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
