"""The documentation says what the code does: settings, signals, tags, checks, the REST API
reference, the Spanish pages, the README's links. (``tox -e docs`` builds the site itself.)"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.dispatch import Signal
from django.template import engines

from django_etpay import conf, signals
from django_etpay.models import Notification

pytestmark = pytest.mark.repo

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^```(\w+)(?: title=\"([^\"]+)\")?\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


docs_hooks = _load("docs_hooks")
check_site = _load("check_site")


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def code_blocks(markdown: str) -> list[str]:
    return [body for _language, _title, body in _FENCE.findall(markdown)]


# -- settings ---------------------------------------------------------------------------------


def documented_settings() -> dict[str, str]:
    """Key -> default column of the settings reference's table."""
    rows: dict[str, str] = {}
    for line in page("settings.md").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
        for key in keys:
            rows[key] = cells[1]
    return rows


def test_every_setting_is_documented_with_its_default() -> None:
    documented = documented_settings()
    assert set(documented) == set(conf.DEFAULTS) | set(conf.CREDENTIAL_KEYS)
    for key in conf.CREDENTIAL_KEYS:
        assert documented[key] == "required", key
    for key, default in conf.DEFAULTS.items():
        text = documented[key]
        assert text.startswith("`"), (key, text)
        assert text.endswith("`"), (key, text)
        value = eval(text.strip("`"), {"__builtins__": {}, "timedelta": timedelta})  # noqa: S307
        assert value == default, f"ETPAY[{key!r}]: docs say {text}, conf.DEFAULTS has {default!r}"


def test_the_settings_check_would_catch_a_wrong_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(conf.DEFAULTS, "JWT_LEEWAY", 60)
    with pytest.raises(AssertionError, match="JWT_LEEWAY"):
        test_every_setting_is_documented_with_its_default()
    monkeypatch.setitem(conf.DEFAULTS, "NEW_UNDOCUMENTED_KEY", 1)
    with pytest.raises(AssertionError):
        test_every_setting_is_documented_with_its_default()


def test_every_system_check_is_documented() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "django_etpay").rglob("*.py"))
    ids = set(re.findall(r"django_etpay\.[EW]\d{3}", source))
    assert ids, "no check ids found"
    reference = page("settings.md")
    assert sorted(i for i in ids if f"`{i}`" not in reference) == []


# -- signals ----------------------------------------------------------------------------------


def test_every_signal_has_its_section_and_row() -> None:
    reference = page("signals.md")
    names = [name for name, value in vars(signals).items() if isinstance(value, Signal)]
    assert len(names) == 9
    for name in names:
        assert f"## `{name}`" in reference, name
        assert f"| [`{name}`](#{name}) |" in reference, name
    sections = re.findall(r"^## `(\w+)`", reference, re.MULTILINE)
    assert sorted(sections) == sorted(names)


def test_every_rejection_reason_is_listed_for_notification_rejected() -> None:
    section = page("signals.md").split("## `notification_rejected`")[1].split("\n## ")[0]
    not_rejections = {
        "browser_not_trusted",
        "system_error",
        "not_applicable",
        "unknown_to_etpay",
        # The records of the status query by order id (operations.md), never rejections.
        "session_adopted",
        "ambiguous_order",
        "no_matching_session",
        "staff_decision",
    }
    for reason in Notification.Reason.values:
        if reason not in not_rejections:
            assert f"`{reason}`" in section, reason


def test_the_signal_kwargs_match_the_module_comments() -> None:
    source = (ROOT / "django_etpay" / "signals.py").read_text()
    table = page("signals.md")
    for name in ("payment_completed", "payment_failed"):
        assert re.search(rf"`{name}`.*`session`, `notification`, `previous_status`", table)
        assert "previous_status" in source.split(f"{name} = Signal()")[0].rsplit("#: Sent", 1)[1]


# -- template tags ----------------------------------------------------------------------------


def test_every_template_tag_has_a_page() -> None:
    library = engines["django"].engine.template_libraries["etpay"]  # type: ignore[attr-defined]
    tags = set(library.tags)
    overview = page("template-tags.md")
    nav = (ROOT / "mkdocs.yml").read_text()
    for tag in tags:
        assert (DOCS / "tags" / f"{tag}.md").exists(), tag
        assert f"[{tag}](tags/{tag}.md)" in overview, tag
        assert f"tags/{tag}.md" in nav, tag
    assert {p.stem for p in (DOCS / "tags").glob("*.md")} == tags


def test_screenshots_on_the_tag_pages_exist() -> None:
    for path in (DOCS / "tags").glob("*.md"):
        for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", path.read_text()):
            assert (path.parent / image).resolve().is_file(), (path.name, image)


# -- pages in two languages -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["quickstart.md", "going-live.md", "refunds.md"])
def test_the_spanish_page_has_the_same_code(name: str) -> None:
    english, spanish = page(name), page(f"es/{name}")
    assert code_blocks(spanish) == code_blocks(english)
    assert f"](../{name})" in spanish
    assert f"](es/{name})" in english


def test_the_spanish_pages_are_in_spanish() -> None:
    for name in ("quickstart.md", "going-live.md", "refunds.md"):
        text = page(f"es/{name}")
        prose = _FENCE.sub("", text)
        assert len(re.findall(r"\b(el|la|los|las|que|para|con)\b", prose)) > 40, name


# -- the quick start --------------------------------------------------------------------------


def test_the_quick_start_pastes_as_valid_python() -> None:
    for language, title, body in _FENCE.findall(page("quickstart.md")):
        if language == "python":
            ast.parse(body, filename=title or "quickstart")
        if "settings.py" in title:
            # The README's finding: every name the settings snippet uses is defined in it,
            # or by Django's own settings template (INSTALLED_APPS, DATABASES).
            tree = ast.parse(body)
            assigned = {
                node.id
                for node in ast.walk(tree)
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
            } | {
                alias.asname or alias.name
                for n in ast.walk(tree)
                if isinstance(n, ast.Import)
                for alias in n.names
            }
            used = {
                node.id
                for node in ast.walk(tree)
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
            }
            assert used - assigned <= {"INSTALLED_APPS", "DATABASES"}, used - assigned


def readme_python_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return [body for language, _t, body in _FENCE.findall(readme) if language == "python"]


def test_the_readme_settings_snippet_runs_as_pasted() -> None:
    [settings_block] = [b for b in readme_python_blocks() if "ETPAY = {" in b]
    namespace: dict[str, Any] = {"INSTALLED_APPS": [], "urlpatterns": []}
    environ = {
        "ETPAY_MERCHANT_CODE": "cl_x",
        "ETPAY_MERCHANT_API_TOKEN": "t",
        "ETPAY_API_URL": "https://api.example",
        "ETPAY_PMT_URL": "https://pmt.example",
    }
    settings_part = settings_block.split("# urls.py")[0]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environ.items():
            patch.setenv(key, value)
        exec(compile(settings_part, "README settings", "exec"), namespace)  # noqa: S102
    assert namespace["ETPAY"]["MERCHANT_CODE"] == "cl_x"
    assert namespace["ETPAY"]["API_URL"] == "https://api.example"


def test_the_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[0] == "# django-etpay"
    start = lines.index("```sh")
    assert start <= 2
    assert lines[start + 1].startswith("./example_project/run.sh ")
    assert lines[start + 2].startswith("make test ")
    assert lines[start + 3] == "```"


# -- links outside the site -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["README.md", "CHANGELOG.md", "example_project/README.md"])
def test_relative_links_of_repository_files_resolve(name: str) -> None:
    path = ROOT / name
    for target in re.findall(r"\]\((?!https?:|mailto:|#)([^)\s]+)\)", path.read_text()):
        assert (path.parent / target.split("#")[0]).exists(), (name, target)


def test_no_path_of_a_build_machine_is_published() -> None:
    published = [*DOCS.rglob("*.md"), ROOT / "README.md", ROOT / "mkdocs.yml"]
    for path in published:
        text = path.read_text()
        assert not re.search(r"/(work|root|home/\w+)/", text), path


# -- the generated pages ----------------------------------------------------------------------


def test_the_rest_api_reference_covers_every_operation_and_status() -> None:
    import json

    schema = json.loads(page("openapi.json"))
    reference = docs_hooks.render_openapi(schema)
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert f"### `{method.upper()} {path}` {{#{operation['operationId'].lower()}}}" in (
                reference
            )
            section = reference.split(f"`{method.upper()} {path}`")[1].split("\n### ")[0]
            for status, response in operation["responses"].items():
                assert f"| {status} | {response['description']} |" in section, (path, status)
    for name, component in schema["components"]["schemas"].items():
        assert f"### {name} {{#schema-{name.lower()}}}" in reference
        for field in component.get("properties", {}):
            assert f"| `{field}` |" in reference, (name, field)
    # Every link to a schema has its target.
    for anchor in re.findall(r"\(#(schema-[\w-]+)\)", reference):
        assert f"{{#{anchor}}}" in reference


def test_root_files_link_to_site_pages() -> None:
    text = (
        "See [ops](docs/operations.md#the-admin), [log](CHANGELOG.md), [w](https://x.cl/docs/a)."
    )
    assert docs_hooks.rewrite_root_links(text) == (
        "See [ops](operations.md#the-admin), [log](changelog.md), [w](https://x.cl/docs/a)."
    )


def test_the_site_link_checker_finds_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="a/">ok</a><a href="a/#here">ok</a><a href="a/#gone">bad anchor</a>'
        '<a href="missing/">bad page</a><a href="http://example.com/">plain http</a>'
        '<a href="https://example.com/x">external</a><a href="http://127.0.0.1:8000/">local</a>'
        '<img src="img/x.png"><a href="#top" id="top">self</a>'
    )
    (tmp_path / "a" / "index.html").write_text('<h2 id="here">Here</h2>')
    problems, external = check_site.check(tmp_path)
    assert len(problems) == 4, problems
    assert any("'a/#gone'" in p for p in problems)
    assert any("'missing/'" in p for p in problems)
    assert any("http://example.com/" in p for p in problems)
    assert any("img/x.png" in p for p in problems)
    assert external["example.com"] == 2
    assert external["127.0.0.1 (the reader's machine)"] == 1


def test_every_docs_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    generated = {docs_hooks.OPENAPI_PAGE, *docs_hooks.ROOT_PAGES.values()}
    for path in DOCS.rglob("*.md"):
        assert str(path.relative_to(DOCS)) in nav, path
    for name in generated:
        if name != "security-policy.md" or (ROOT / "SECURITY.md").exists():
            assert name in nav, name
