"""The suite reads like the code it tests: tests/README.md names, for every module of
``django_etpay/``, the test modules that test it, and nothing that does not exist.

A module ``django_etpay/<path>/<name>.py`` is placed when ``tests/test_<path>_<name>*.py``
exists (its path joined with ``_``: ``api/views.py`` -> ``test_api_views*.py``) or when a row
of tests/README.md names it with at least one test module. Every test module the page names
must exist, every library module it names too, and every ``tests/test_*.py`` must be named on
the page, so that a new one is placed where a reader looks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.repo

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "django_etpay"
README = TESTS / "README.md"

#: Directories of the package that hold no module of its own code.
NOT_CODE = {"migrations", "locale", "templates", "static"}

#: A row of a table whose first cell is one name in backticks: ``| `x.py` | ... |``.
ROW = re.compile(r"^\|\s*`(?P<first>[^`]+)`(?P<rest>.*)$")
#: A test module named on the page.
TEST_MODULE = re.compile(r"`(test_\w+\.py)`")


def library_modules() -> list[str]:
    """Every module of the package, as a path relative to ``django_etpay/``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if path.name == "__init__.py" or NOT_CODE.intersection(relative.parts[:-1]):
            continue
        found.append(relative.as_posix())
    return found


def suite_modules() -> set[str]:
    """The file names of the test modules at the top of ``tests/``."""
    return {path.name for path in TESTS.glob("test_*.py")}


def named_after(module: str, tests: set[str]) -> list[str]:
    """The test modules named after ``module`` (``api/views.py`` -> ``test_api_views*.py``)."""
    stem = "test_" + module.removesuffix(".py").replace("/", "_")
    return sorted(t for t in tests if t == f"{stem}.py" or t.startswith(f"{stem}_"))


def readme_rows() -> dict[str, list[str]]:
    """Library module -> the test modules its row names, from the page's tables."""
    rows: dict[str, list[str]] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match and match["first"].endswith(".py") and not match["first"].startswith("test_"):
            rows[match["first"]] = TEST_MODULE.findall(match["rest"])
    return rows


def test_the_helpers_read_this_repository() -> None:
    # The checks below would pass on an empty package or page: make sure they read ours.
    modules = library_modules()
    assert "pipeline.py" in modules
    assert "api/views.py" in modules
    assert not any("migrations" in m or m.endswith("__init__.py") for m in modules)
    assert {"test_outbox.py", "test_outbox_processes.py"} <= set(
        named_after("outbox.py", suite_modules())
    )
    assert named_after("views.py", {"test_views.py", "test_viewsets.py"}) == ["test_views.py"]
    assert named_after("api/views.py", {"test_api_views.py", "test_api_viewsets.py"}) == [
        "test_api_views.py"
    ]
    assert readme_rows()["services.py"]


def test_every_library_module_has_its_test_modules() -> None:
    tests = suite_modules()
    rows = readme_rows()
    unplaced = [
        module
        for module in library_modules()
        if not named_after(module, tests) and not rows.get(module)
    ]
    assert not unplaced, (
        f"No tests/test_<name>*.py and no row in tests/README.md for: {', '.join(unplaced)}. "
        "Name the test module after the library module, or add a row naming its tests."
    )


def test_every_module_the_page_names_exists() -> None:
    modules = set(library_modules())
    rows = readme_rows()
    missing_library = sorted(set(rows) - modules)
    assert not missing_library, f"tests/README.md names no such library module: {missing_library}"
    named = set(TEST_MODULE.findall(README.read_text(encoding="utf-8")))
    missing_tests = sorted(named - suite_modules())
    assert not missing_tests, f"tests/README.md names no such test module: {missing_tests}"


def test_every_test_module_is_named_on_the_page() -> None:
    named = set(TEST_MODULE.findall(README.read_text(encoding="utf-8")))
    unnamed = sorted(suite_modules() - named)
    assert not unnamed, (
        f"tests/README.md does not name {', '.join(unnamed)}: add it to the row of the library "
        "module it tests, or to the cross-cutting table with what it checks."
    )
