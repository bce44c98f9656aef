"""The shipped catalogs are complete and compiled, and the payer's pages speak Spanish.

The catalog checks regenerate each catalog from the source into a scratch copy (as
``make messages`` does) and fail, naming the strings, when one is untranslated or fuzzy; they
also fail when a shipped ``.mo`` file no longer matches its ``.po``. Fix both with
``make messages`` (then translate what it lists). They need GNU gettext (``xgettext``,
``msgmerge``, ``msgfmt``), which CI installs.
"""

from __future__ import annotations

import ast
import gettext
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory, override_settings
from django.utils import translation

from django_etpay import widgets
from tests.factories import make_session, mint_jwt

ROOT = Path(__file__).resolve().parent.parent
#: Every folder that ships a catalog, relative to the repository root.
CATALOG_ROOTS = ("django_etpay", "example_project/shop")
LANGUAGES = ("es", "en")
GETTEXT_TOOLS = ("xgettext", "msgmerge", "msgfmt")


def _unquote(line: str) -> str:
    value = ast.literal_eval(line)
    assert isinstance(value, str)
    return value


def parse_po(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """``(msgctxt, msgid) -> {"strs": [...], "fuzzy": bool}`` for every live entry."""
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    current: dict[str, Any] = {}
    field = ""

    def flush() -> None:
        if "msgid" in current and current["msgid"] != "":
            key = (current.get("msgctxt", ""), current["msgid"])
            strs = [current[k] for k in sorted(current) if k.startswith("msgstr")]
            entries[key] = {"strs": strs, "fuzzy": current.get("fuzzy", False)}

    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#~"):
            if not line:
                flush()
                current, field = {}, ""
            continue
        if line.startswith("#,"):
            current["fuzzy"] = "fuzzy" in line
            continue
        if line.startswith("#"):
            continue
        if line.startswith('"'):
            current[field] += _unquote(line)
            continue
        keyword, _, rest = line.partition(" ")
        field = keyword
        current[field] = _unquote(rest)
    flush()
    return entries


def _require_gettext() -> None:
    missing = [tool for tool in GETTEXT_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"GNU gettext is needed to check the catalogs ({', '.join(missing)} not found): "
            "apt-get install gettext."
        )


def _regenerate(root: str, scratch: Path) -> Path:
    copy = scratch / root.replace("/", "_")
    shutil.copytree(
        ROOT / root, copy, ignore=shutil.ignore_patterns("__pycache__", "*.mo", "*.pyc")
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    args = ["-m", "django", "makemessages", "--no-obsolete", "--no-location"]
    for language in LANGUAGES:
        args += ["-l", language]
    result = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return copy


@pytest.mark.parametrize("root", CATALOG_ROOTS)
def test_the_shipped_catalogs_translate_every_string_in_the_source(
    root: str, tmp_path: Path
) -> None:
    _require_gettext()
    fresh_root = _regenerate(root, tmp_path)
    problems: list[str] = []
    for language in LANGUAGES:
        relative = Path("locale") / language / "LC_MESSAGES" / "django.po"
        shipped = parse_po(ROOT / root / relative)
        fresh = parse_po(fresh_root / relative)
        assert len(fresh) > 10, "makemessages found no strings"
        for (_context, msgid), entry in fresh.items():
            if entry["fuzzy"] or not all(entry["strs"]):
                problems.append(f"{root} [{language}] untranslated: {msgid!r}")
        for key in sorted(set(shipped) - set(fresh)):
            problems.append(f"{root} [{language}] no longer in the source: {key[1]!r}")
        for key in sorted(set(fresh) - set(shipped)):
            problems.append(f"{root} [{language}] missing from the shipped .po: {key[1]!r}")
    assert not problems, "Run `make messages` and translate:\n" + "\n".join(problems)


@pytest.mark.parametrize("root", CATALOG_ROOTS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_shipped_mo_files_are_compiled_from_the_po_files(
    root: str, language: str, tmp_path: Path
) -> None:
    _require_gettext()
    folder = ROOT / root / "locale" / language / "LC_MESSAGES"
    compiled = tmp_path / "django.mo"
    msgfmt = shutil.which("msgfmt") or "msgfmt"
    subprocess.run(  # noqa: S603 - fixed argv
        [msgfmt, "--check-format", "-o", str(compiled), str(folder / "django.po")],
        check=True,
        capture_output=True,
    )
    with (folder / "django.mo").open("rb") as shipped, compiled.open("rb") as fresh:
        shipped_catalog = gettext.GNUTranslations(shipped)._catalog  # type: ignore[attr-defined]
        fresh_catalog = gettext.GNUTranslations(fresh)._catalog  # type: ignore[attr-defined]
    assert shipped_catalog == fresh_catalog, f"{folder}/django.mo is stale: run `make messages`"


def test_the_po_parser_reads_plurals_fuzzy_and_continuations(tmp_path: Path) -> None:
    po = tmp_path / "x.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Language: es\\n"\n\n'
        '#, fuzzy\nmsgid "a"\nmsgstr "b"\n\n'
        'msgid "one"\nmsgid_plural "many"\nmsgstr[0] "uno"\nmsgstr[1] ""\n\n'
        'msgid ""\n"long "\n"text"\nmsgstr "largo"\n\n'
        '#~ msgid "old"\n#~ msgstr "viejo"\n',
        encoding="utf-8",
    )
    entries = parse_po(po)
    assert entries[("", "a")] == {"strs": ["b"], "fuzzy": True}
    assert entries[("", "one")] == {"strs": ["uno", ""], "fuzzy": False}
    assert entries[("", "long text")]["strs"] == ["largo"]
    assert ("", "old") not in entries


# -- Spanish, rendered ---------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(LANGUAGE_CODE="es")
def test_the_return_page_speaks_spanish(client: Client) -> None:
    session = make_session()
    page = client.get("/etpay/return/", {"jwt": mint_jwt(session)}).content.decode()
    assert '<html lang="es">' in page
    assert "Pago recibido" in page
    assert f"Gracias. Tu pago del pedido {session.merchant_order_id} fue confirmado." in page
    assert "Volver a la tienda" in page
    unknown = client.get("/etpay/return/").content.decode()
    assert "Aún no conocemos el resultado del pago" in unknown


@pytest.mark.django_db
@override_settings(LANGUAGE_CODE="es")
def test_the_widget_speaks_spanish_with_chilean_amounts() -> None:
    session = make_session(
        order_amount=6990, metadata=[{"name": "Producto", "value": "Taza", "show": True}]
    )
    request = RequestFactory().get("/pay/")
    with translation.override("es"):
        html = widgets.render_widget(session, request=request, csrf_token="t")
        config = widgets.widget_config(session)
        missing = widgets.render_widget(None)
    assert ">Pagar con ETpay</a>" in html
    assert config["texts"]["confirming"] == "Confirmando tu pago…"
    assert config["texts"]["close"] == "Cerrar"
    assert config["summary"]["label"] == f"Pedido {session.merchant_order_id}: $6.990 CLP"
    assert "No se ha iniciado ningún pago para este pedido." in missing


@pytest.mark.django_db
@override_settings(LANGUAGE_CODE="es")
def test_the_admin_changelist_speaks_spanish(client: Client) -> None:
    make_session(status="paid")
    user = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw")
    client.force_login(user)
    page = client.get("/admin/django_etpay/paymentsession/").content.decode()
    assert "Pagos ETpay" in page
    # Sessions are evidence: the list is for viewing, not changing.
    assert "Seleccione sesión de pago ETpay para ver" in page
    assert "Consultar a ETpay el estado actual de las sesiones seleccionadas" in page
    assert "Expirar las sesiones pendientes seleccionadas" in page
    assert "Requiere atención" in page
    assert "Pagado" in page
    assert "Estado" in page  # the status column and filter
