"""The result pipeline's modules import one way: views -> pipeline -> records -> rules -> values.

Each module may import those below it, never one above: a cut that made them import each other
in a circle would fail here first. The API's schema does not import its URLconf (which imports
the views, which import the schema).
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "django_etpay"

#: From the top floor down.
LAYERS = ["views", "pipeline", "records", "rules", "values"]
#: Below the records and the pipeline, above nothing of theirs.
BELOW = {"dispatch": ["records", "pipeline", "views", "rules"]}


def imported(module: str) -> set[str]:
    """The ``django_etpay`` modules ``module`` imports, anywhere in it (lazy imports too)."""
    tree = ast.parse((PACKAGE / f"{module.replace('.', '/')}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "django_etpay":
                names.update(alias.name for alias in node.names)
            elif node.module.startswith("django_etpay."):
                package = node.module.removeprefix("django_etpay.")
                names.add(package)
                # ``from django_etpay.api import schema``: the name may be a module.
                names.update(f"{package}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(
                alias.name.removeprefix("django_etpay.")
                for alias in node.names
                if alias.name.startswith("django_etpay.")
            )
    return names


@pytest.mark.parametrize("floor", range(len(LAYERS)))
def test_no_floor_imports_one_above_it(floor: int) -> None:
    module = LAYERS[floor]
    assert not imported(module) & set(LAYERS[:floor]), module


@pytest.mark.parametrize("module", sorted(BELOW))
def test_the_dispatch_imports_nothing_of_the_pipeline(module: str) -> None:
    assert not imported(module) & set(BELOW[module])


def test_each_floor_uses_the_one_below() -> None:
    # The layering is real: every floor but the lowest imports the floor below it.
    for upper, lower in itertools.pairwise(LAYERS):
        assert lower in imported(upper), (upper, lower)


def test_the_api_schema_does_not_import_its_urls_or_views() -> None:
    assert not imported("api.schema") & {"api.urls", "api.views"}
    assert "api.schema" in imported("api.views")
