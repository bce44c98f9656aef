"""Release hygiene that needs no build: one version, classifiers that say what tox runs, a
manifest that ships the package and nothing else, tool versions that agree."""

from __future__ import annotations

import configparser
import itertools
import json
import re
from pathlib import Path

import pytest

import django_etpay
from django_etpay.client import USER_AGENT

pytestmark = pytest.mark.repo

ROOT = Path(__file__).resolve().parent.parent


def expand(pattern: str) -> list[str]:
    """tox's brace expansion: ``py3{10,11}-django{42,52}`` -> four names."""
    parts = re.split(r"\{([^}]*)\}", pattern)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*choices)]


def tox_envlist() -> list[str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "tox.ini")
    lines = parser["tox"]["envlist"].split()
    return [name for line in lines for name in expand(line.strip().rstrip(","))]


def tox_factors() -> tuple[set[str], set[str]]:
    """(Python versions, Django versions) of the Django/Python pairs tox runs."""
    pythons: set[str] = set()
    djangos: set[str] = set()
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "tox.ini")
    for name in tox_envlist():
        match = re.fullmatch(r"py3(\d+)-(?:django(\d)(\d)(?:-sqlite)?|lowest)", name)
        if match:
            pythons.add(f"3.{match.group(1)}")
            if match.group(2):
                djangos.add(f"{match.group(2)}.{match.group(3)}")
            else:
                pinned = re.search(r"^Django==(\d+\.\d+)", parser[f"testenv:{name}"]["deps"], re.M)
                assert pinned is not None, f"{name} pins Django"
                djangos.add(pinned.group(1))
    return pythons, djangos


def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "setup.cfg")
    return parser


def test_expand_follows_tox() -> None:
    assert expand("py3{10,11}-django{42,52}") == [
        "py310-django42",
        "py310-django52",
        "py311-django42",
        "py311-django52",
    ]
    assert expand("lint") == ["lint"]


def test_classifiers_name_exactly_the_versions_tox_runs() -> None:
    classifiers = setup_cfg()["metadata"]["classifiers"].split("\n")
    pythons, djangos = tox_factors()
    assert pythons == {"3.10", "3.11", "3.12", "3.13"}
    assert {c.strip() for c in classifiers if c.strip().startswith("Framework :: Django ::")} == {
        f"Framework :: Django :: {v}" for v in djangos
    }
    assert {
        c.strip()
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c.strip())
    } == {f"Programming Language :: Python :: {v}" for v in pythons}
    assert setup_cfg()["options"]["python_requires"] == f">={min(pythons, key=_version_key)}"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def test_the_version_has_one_source() -> None:
    version = django_etpay.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?", version)
    assert setup_cfg()["metadata"]["version"] == "attr: django_etpay.__version__"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    first_release = re.search(r"^## (\S+)", changelog, re.MULTILINE)
    assert first_release is not None
    assert first_release.group(1) == version
    schema = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert schema["info"]["version"] == version
    assert USER_AGENT.startswith(f"django-etpay/{version} ")
    # No other file spells the version out.
    for path in (ROOT / "django_etpay").rglob("*.py"):
        if path.name != "__init__.py" or path.parent.name != "django_etpay":
            assert f'"{version}"' not in path.read_text(), path


def test_the_manifest_ships_the_package_data_and_prunes_the_rest() -> None:
    manifest = (ROOT / "MANIFEST.in").read_text()
    for folder in ("tests", "example_project", "benchmarks", "docs", "scripts"):
        assert f"prune {folder}" in manifest
    for data in ("templates", "static", "locale"):
        assert f"recursive-include django_etpay/{data} " in manifest


def test_pre_commit_and_tox_lint_with_the_same_ruff() -> None:
    config = (ROOT / ".pre-commit-config.yaml").read_text()
    tox = (ROOT / "tox.ini").read_text()
    pinned = re.search(r"ruff==([\d.]+)", tox)
    assert pinned is not None, "tox's lint env pins ruff"
    assert f"ruff=={pinned.group(1)}" in config
    assert "mypy" in config
