"""The release artefacts, as a user receives them (tox env ``package``; marker ``package``).

Builds the sdist and the wheel from the files git knows (as a fresh clone has them), checks
what they contain and that PyPI will render them, installs the wheel into a fresh virtual
environment outside the repository, then follows the quick start (``docs/quickstart.md``)
line by line in it: a new Django project, ``migrate``, the pay page with the widget tag, and
a payment through the sandbox that ships in the wheel, over real HTTP, until the project's
own signal receiver marks the order paid.
"""

from __future__ import annotations

import email
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

import django_etpay
from tests.subprocesses import free_port
from tests.test_release import tox_factors

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "docs" / "quickstart.md"

pytestmark = pytest.mark.package

#: Files every artefact must carry, relative to the package.
REQUIRED = [
    "py.typed",
    "templates/django_etpay/widget.html",
    "templates/django_etpay/return.html",
    "static/django_etpay/widget.js",
    "static/django_etpay/widget.css",
    "sandbox/templates/etpay_sandbox/funnel.html",
    "sandbox/static/etpay_sandbox/funnel.js",
    "sandbox/static/etpay_sandbox/funnel.css",
    "locale/es/LC_MESSAGES/django.mo",
    "locale/en/LC_MESSAGES/django.mo",
    "migrations/0001_payment_sessions_and_notifications.py",
    "sandbox/migrations/0001_sandbox_session.py",
    "testing/__init__.py",
    "testing/pytest_plugin.py",
]
#: Path parts that must never ship.
STRAY = re.compile(
    r"(^|/)(tests|example_project|benchmarks|docs|scripts|__pycache__|\.ci)(/|$)|\.py[cod]$"
)


def run(*args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(  # noqa: S603 - fixed argv
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@dataclass
class Built:
    wheel: Path
    sdist: Path
    wheel_files: list[str]
    sdist_files: list[str]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The sdist and the wheel, built from a copy of the files git knows (a fresh clone)."""
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    # No arguments: the sdist first, then the wheel from the unpacked sdist, so a file the
    # sdist lacks is missing from the wheel too.
    run(sys.executable, "-m", "build", "--outdir", work / "dist", source)
    [wheel] = (work / "dist").glob("*.whl")
    [sdist] = (work / "dist").glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        wheel_files = archive.namelist()
    with tarfile.open(sdist) as archive:
        sdist_files = [m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile()]
    return Built(wheel, sdist, wheel_files, sdist_files)


def test_artefacts_are_named_after_the_single_version(built: Built) -> None:
    version = django_etpay.__version__
    assert built.wheel.name == f"django_etpay-{version}-py3-none-any.whl"
    assert built.sdist.name == f"django_etpay-{version}.tar.gz"


def test_the_wheel_carries_the_package_data_and_nothing_stray(built: Built) -> None:
    package = [name for name in built.wheel_files if name.startswith("django_etpay/")]
    for required in REQUIRED:
        assert f"django_etpay/{required}" in package, required
    stray = [name for name in built.wheel_files if STRAY.search(name)]
    assert stray == []
    top_level = {name.split("/")[0] for name in built.wheel_files}
    assert top_level == {"django_etpay", f"django_etpay-{django_etpay.__version__}.dist-info"}
    # Every file of the package directory that git knows ships, whatever its type: a new
    # template, image or catalog cannot be left out by MANIFEST.in unnoticed.
    tracked = run("git", "ls-files", "django_etpay").split()
    assert sorted(set(tracked) - set(package)) == []


def test_the_sdist_carries_what_the_wheel_is_built_from_and_nothing_stray(built: Built) -> None:
    for required in REQUIRED:
        assert f"django_etpay/{required}" in built.sdist_files, required
    for name in ("README.md", "CHANGELOG.md", "LICENSE", "setup.cfg", "pyproject.toml"):
        assert name in built.sdist_files
    assert [name for name in built.sdist_files if STRAY.search(name)] == []


def test_metadata_renders_on_pypi_and_matches_the_source(built: Built) -> None:
    run(sys.executable, "-m", "twine", "check", "--strict", built.wheel, built.sdist)
    with zipfile.ZipFile(built.wheel) as archive:
        raw = archive.read(f"django_etpay-{django_etpay.__version__}.dist-info/METADATA")
    metadata = email.message_from_bytes(raw)
    assert metadata["Version"] == django_etpay.__version__
    assert metadata["Requires-Python"] == ">=3.10"
    assert metadata["Description-Content-Type"] == "text/markdown"
    classifiers = set(metadata.get_all("Classifier") or [])
    pythons, djangos = tox_factors()
    assert {c for c in classifiers if c.startswith("Framework :: Django ::")} == {
        f"Framework :: Django :: {v}" for v in djangos
    }
    assert {
        c for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    } == {f"Programming Language :: Python :: {v}" for v in pythons}
    requires = metadata.get_all("Requires-Dist") or []
    assert any(r.startswith("Django>=4.2") for r in requires), requires


# -- the quick start, from the wheel ------------------------------------------------------------


@dataclass
class Step:
    """One thing the quick start asks the reader to do."""

    kind: str  # "sh", "write" or "append"
    target: str
    text: str


_FENCE = re.compile(r"^```(\w+)(?: title=\"([^\"]+)\")?\n(.*?)^```", re.MULTILINE | re.DOTALL)


def quickstart_steps(markdown: str) -> list[Step]:
    """The shell commands and the files of the quick start, in the order of the page."""
    steps: list[Step] = []
    for language, title, body in _FENCE.findall(markdown):
        if language == "sh":
            steps += [Step("sh", "", line) for line in body.splitlines() if line.strip()]
        elif title:
            path, _, note = title.partition(" ")
            steps.append(Step("append" if "add at the end" in note else "write", path, body))
    return steps


@pytest.fixture(scope="module")
def quickstart_site(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The quick start's project, built step by step in a fresh directory from the wheel."""
    site = tmp_path_factory.mktemp("quickstart")
    port = free_port()
    sandbox = f"http://127.0.0.1:{port}/sandbox"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "DJANGO", "VIRTUAL_ENV", "ETPAY"))
    }
    env.update({"ETPAY_API_URL": sandbox, "ETPAY_PMT_URL": sandbox, "PYTHONUNBUFFERED": "1"})
    server: subprocess.Popen[str] | None = None
    started = time.monotonic()
    timings: dict[str, float] = {}
    for step in quickstart_steps(QUICKSTART.read_text()):
        if step.kind in ("write", "append"):
            path = site / step.target
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a" if step.kind == "append" else "w") as handle:
                handle.write(("\n" if step.kind == "append" else "") + step.text)
            continue
        argv = shlex.split(step.text)
        if argv[:3] == ["python", "-m", "venv"]:
            run(sys.executable, "-m", "venv", site / argv[3])
        elif argv[0] == ".":  # activate: what it does to the environment, for each command
            venv = site / Path(argv[1]).parent.parent
            env["VIRTUAL_ENV"] = str(venv)
            env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        elif argv[:2] == ["pip", "install"]:
            # The documented command, as written: the checkout it names sits next to the
            # project, its dist/ holding the wheel just built.
            dist = (site / argv[2]).parent
            dist.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built.wheel, dist / built.wheel.name)
            pip = env["VIRTUAL_ENV"] + "/bin/pip"
            run(pip, *argv[1:], "--quiet", cwd=site, env=env)
            timings["install"] = time.monotonic() - started
        elif argv[-1] == "runserver":
            log = (site / "runserver.log").open("w")
            server = subprocess.Popen(  # noqa: S603 - the quick start's own command
                [*argv, "--noreload", f"127.0.0.1:{port}"],
                cwd=site,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        else:
            run(*argv, cwd=site, env=env)
    assert server is not None, "the quick start never starts the server"
    try:
        wait_for_port(port, server)
        timings["ready"] = time.monotonic() - started
        yield {"site": site, "env": env, "url": f"http://127.0.0.1:{port}", "timings": timings}
    finally:
        server.terminate()
        server.wait(timeout=20)


def wait_for_port(port: int, server: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "runserver exited"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("runserver did not start")


def shell(site: dict, code: str) -> str:
    """The last line ``code`` prints in ``manage.py shell`` (Django 5.2+ first says what it
    imported automatically)."""
    python = Path(site["env"]["VIRTUAL_ENV"]) / "bin" / "python"
    out = run(python, "manage.py", "shell", "-c", code, cwd=site["site"], env=site["env"])
    return out.strip().splitlines()[-1]


def test_the_quick_start_has_the_steps_this_test_follows() -> None:
    steps = quickstart_steps(QUICKSTART.read_text())
    commands = [s.text for s in steps if s.kind == "sh"]
    # Until the first release the package is not on PyPI: the page installs the built wheel.
    wheel = f"django_etpay-{django_etpay.__version__}-py3-none-any.whl"
    assert f"pip install ../django-etpay/dist/{wheel}" in commands
    assert "pip install django-etpay" not in commands
    assert commands[-1] == "python manage.py runserver"
    assert {s.target for s in steps if s.kind != "sh"} >= {
        "mysite/settings.py",
        "mysite/urls.py",
        "shop/views.py",
        "shop/receivers.py",
    }


def test_the_installed_package_is_the_wheel_not_the_checkout(quickstart_site: dict) -> None:
    where = shell(quickstart_site, "import django_etpay; print(django_etpay.__file__)")
    assert where.strip().startswith(quickstart_site["env"]["VIRTUAL_ENV"])
    assert not where.strip().startswith(str(ROOT) + "/django_etpay")
    version = shell(quickstart_site, "import django_etpay; print(django_etpay.__version__)")
    assert version.strip() == django_etpay.__version__


def test_the_project_checks_and_its_migrations_are_complete(quickstart_site: dict) -> None:
    python = Path(quickstart_site["env"]["VIRTUAL_ENV"]) / "bin" / "python"
    site, env = quickstart_site["site"], quickstart_site["env"]
    run(python, "manage.py", "check", "--fail-level", "WARNING", cwd=site, env=env)
    run(python, "manage.py", "makemigrations", "--check", "--dry-run", cwd=site, env=env)
    applied = run(
        python, "manage.py", "showmigrations", "django_etpay", "etpay_sandbox", cwd=site, env=env
    )
    assert "[ ]" not in applied
    assert "0001_payment_sessions_and_notifications" in applied


def test_the_compiled_catalogs_ship(quickstart_site: dict) -> None:
    spanish = shell(
        quickstart_site,
        "from django.utils import translation; translation.activate('es');"
        "from django.utils.translation import gettext; print(gettext('Pay with ETpay'))",
    )
    assert spanish.strip() == "Pagar con ETpay"


def test_a_payment_through_the_sandbox_pays_the_order(quickstart_site: dict) -> None:
    url = quickstart_site["url"]
    browser = requests.Session()
    pay_page = browser.get(f"{url}/orders/A-1/pay/", timeout=30)
    assert pay_page.status_code == 200, pay_page.text[-2000:]
    # The widget tag rendered: its link, configuration, stylesheet and script.
    assert "data-etpay-widget" in pay_page.text
    link = re.search(r'class="etpay-button etpay-widget__open" href="([^"]+)"', pay_page.text)
    assert link is not None, pay_page.text
    for asset in ("django_etpay/widget.js", "django_etpay/widget.css"):
        assert f"/static/{asset}" in pay_page.text
        assert browser.get(f"{url}/static/{asset}", timeout=30).status_code == 200, asset
    funnel = browser.get(link.group(1), timeout=30)
    assert funnel.status_code == 200
    assert "ETpay sandbox - no real money" in funnel.text
    assert "$15.990" in funnel.text
    stylesheet = re.search(r'href="([^"]+funnel\.css)"', funnel.text)
    assert stylesheet is not None
    assert browser.get(f"{url}{stylesheet.group(1)}", timeout=30).status_code == 200
    returned = browser.post(
        link.group(1),
        data={"bank": "cl_estado", "rut": "11.111.111-1", "action": "approve"},
        timeout=30,
    )
    assert returned.status_code == 200
    assert "/etpay/return/" in returned.url
    approved = time.monotonic()
    # The webhook comes from the sandbox's own thread: wait for the receiver's work.
    deadline = time.monotonic() + 30
    page = ""
    while time.monotonic() < deadline:
        page = browser.get(f"{url}/orders/A-1/pay/", timeout=30).text
        if 'id="paid"' in page:
            break
        time.sleep(0.2)
    assert 'id="paid"' in page, page
    quickstart_site["timings"]["approve_to_paid"] = time.monotonic() - approved
    outcomes = shell(
        quickstart_site,
        "from django_etpay.models import PaymentSession as S;"
        "s = S.objects.get(merchant_order_id='A-1');"
        "print(s.status, sorted((n.channel, n.outcome) for n in s.notifications.all()))",
    )
    assert outcomes.startswith("paid ")
    assert "('webhook', " in outcomes
    assert "('redirect', " in outcomes
    assert outcomes.count("'accepted'") == 1, outcomes
    print(f"\nquick start timings (s): {quickstart_site['timings']}")


# -- the example shop's install, as run.sh does it ----------------------------------------------


def test_run_sh_installs_the_checkout_without_setuptools_editable_banner(
    tmp_path: Path,
) -> None:
    """``run.sh`` installs the checkout in editable mode; setuptools' banner about editable
    installs ("Please be careful with folders...") must not reach the terminal."""
    script = (ROOT / "example_project" / "run.sh").read_text()
    [line] = [ln.strip() for ln in script.splitlines() if "pip install --quiet -e" in ln]
    assert line.startswith("PYTHONWARNINGS="), line
    warnings_filter = shlex.split(line)[0].partition("=")[2]
    assert '"$PY" -m pip install --quiet --upgrade pip' in script
    run(sys.executable, "-m", "venv", tmp_path / "venv")
    # As run.sh does: a current pip, which shows what the build backend warns.
    run(tmp_path / "venv" / "bin" / "python", "-m", "pip", "install", "--quiet", "-U", "pip")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONWARNINGS"] = warnings_filter
    pip = [tmp_path / "venv" / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps"]
    result = subprocess.run(  # noqa: S603 - fixed argv
        [*pip, "-e", str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Editable installation" not in output
    assert "Please be careful with folders" not in output
