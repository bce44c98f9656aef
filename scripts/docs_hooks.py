"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks``).

Three pages are generated at build time, so that each fact has one source:

- ``changelog.md`` from ``CHANGELOG.md``;
- ``security-policy.md`` from ``SECURITY.md`` (when the repository has one);
- ``reference/rest-api.md`` from ``docs/openapi.json``, the REST API's checked-in schema.

Links in the root files point into ``docs/`` (``docs/operations.md``) because they are read on
the repository's front page too; they are rewritten to the site's pages here. The rendering
functions need only the standard library, so the test suite checks them without MkDocs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: Root files published as pages: source -> page path in the site.
ROOT_PAGES: dict[str, str] = {
    "CHANGELOG.md": "changelog.md",
    "SECURITY.md": "security-policy.md",
}
OPENAPI_SOURCE = "openapi.json"
OPENAPI_PAGE = "reference/rest-api.md"

_LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)\s]+)\)")


def rewrite_root_links(markdown: str) -> str:
    """Point the links of a repository-root Markdown file at the site's pages.

    ``docs/x.md`` becomes ``x.md``; a link to another published root file becomes its page;
    anything else is left for MkDocs' link validation to report.
    """

    def replace(match: re.Match[str]) -> str:
        target = match.group(1)
        path, _, fragment = target.partition("#")
        if path.startswith("docs/"):
            path = path.removeprefix("docs/")
        elif path in ROOT_PAGES:
            path = ROOT_PAGES[path]
        return f"]({path}{'#' + fragment if fragment else ''})"

    return _LINK.sub(replace, markdown)


# -- the REST API reference -------------------------------------------------------------------


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type_of(schema: dict[str, Any]) -> str:
    """A short type description: ``string (email)``, ``array of string``, a schema link."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#schema-{name.lower()})"
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return " or ".join(_type_of(item) for item in schema[combinator])
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"array of {_type_of(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        return f"object of {_type_of(schema['additionalProperties'])}"
    if "format" in schema:
        kind += f" ({schema['format']})"
    return kind


def _constraints(schema: dict[str, Any]) -> str:
    notes: list[str] = []
    if "enum" in schema:
        notes.append("one of " + ", ".join(f"`{value}`" for value in schema["enum"]))
    if "maxLength" in schema:
        notes.append(f"at most {schema['maxLength']} characters")
    if schema.get("nullable"):
        notes.append("may be `null`")
    if schema.get("readOnly"):
        notes.append("read-only")
    return "; ".join(notes)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _schema_table(schema: dict[str, Any]) -> list[str]:
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        return [f"Type: {_type_of(schema)}.", ""]
    required = set(schema.get("required", []))
    lines = [
        "| field | type | required | description |",
        "|---|---|---|---|",
    ]
    for name, prop in properties.items():
        description = prop.get("description", "")
        constraints = _constraints(prop)
        if constraints:
            description = f"{description} ({constraints})" if description else constraints
        lines.append(
            f"| `{name}` | {_type_of(prop)} | {'yes' if name in required else 'no'} "
            f"| {_cell(description)} |"
        )
    lines.append("")
    return lines


def _body_type(content: dict[str, Any] | None) -> str:
    if not content:
        return "(no body)"
    parts = []
    for media_type, media in content.items():
        parts.append(f"{_type_of(media.get('schema', {}))} (`{media_type}`)")
    return ", ".join(parts)


def render_openapi(schema: dict[str, Any], *, source: str = OPENAPI_SOURCE) -> str:
    """The Markdown reference of an OpenAPI 3 schema: every operation, every status, every
    component schema."""
    info = schema.get("info", {})
    lines = [
        "# REST API reference",
        "",
        f"{info.get('title', 'API')} {info.get('version', '')}, generated from the OpenAPI "
        f"{schema.get('openapi', '3')} schema [{Path(source).name}](../{source}) when this site "
        "was built. The paths are those of the API mounted at `/etpay/`; a project serves its "
        "own at `etpay/api/schema/`. How to use the API: "
        "[REST API for single-page checkouts](../api.md).",
        "",
    ]
    if info.get("description"):
        lines += [info["description"], ""]
    lines += ["## Operations", ""]
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            anchor = operation.get("operationId", f"{method}-{path}").lower()
            lines += [f"### `{method.upper()} {path}` {{#{anchor}}}", ""]
            if operation.get("description"):
                lines += [operation["description"], ""]
            parameters = operation.get("parameters", [])
            if parameters:
                lines += [
                    "| parameter | in | type | required | description |",
                    "|---|---|---|---|---|",
                ]
                for parameter in parameters:
                    lines.append(
                        f"| `{parameter['name']}` | {parameter.get('in', '')} "
                        f"| {_type_of(parameter.get('schema', {}))} "
                        f"| {'yes' if parameter.get('required') else 'no'} "
                        f"| {_cell(parameter.get('description', ''))} |"
                    )
                lines.append("")
            body = operation.get("requestBody")
            if body:
                lines += [f"Request body: {_body_type(body.get('content'))}.", ""]
            lines += ["| status | meaning | body |", "|---|---|---|"]
            for status, response in operation.get("responses", {}).items():
                lines.append(
                    f"| {status} | {_cell(response.get('description', ''))} "
                    f"| {_body_type(response.get('content'))} |"
                )
            lines.append("")
    schemas: dict[str, Any] = schema.get("components", {}).get("schemas", {})
    if schemas:
        lines += ["## Schemas", ""]
        for name, component in schemas.items():
            lines += [f"### {name} {{#schema-{name.lower()}}}", ""]
            if component.get("description"):
                lines += [component["description"], ""]
            lines += _schema_table(component)
    return "\n".join(lines)


# -- MkDocs ---------------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages to the site."""
    from mkdocs.structure.files import File

    for source, page in ROOT_PAGES.items():
        path = ROOT / source
        if path.exists():
            content = rewrite_root_links(path.read_text(encoding="utf-8"))
            files.append(File.generated(config, page, content=content))
    openapi = Path(config["docs_dir"]) / OPENAPI_SOURCE
    reference = render_openapi(json.loads(openapi.read_text(encoding="utf-8")))
    files.append(File.generated(config, OPENAPI_PAGE, content=reference))
    return files
