"""Shared fixtures for the browser tests: Debian's Chromium driven by Playwright, and the example
shop served with its sandbox.

Every test here carries ``@pytest.mark.heavy`` (the tox env ``heavy`` runs them). Playwright's
own browser download is not used: the tests drive the system Chromium (``apt-get install
chromium``), at ``/usr/bin/chromium`` unless ``ETPAY_CHROMIUM`` names another executable.

Fixtures for any test module under ``tests/browser/``:

``browser``
    One Chromium for the whole run (headless, no sandbox, no GPU, no QUIC, no background
    networking, no component updates or sync). Playwright starts it with a fresh temporary
    ``--user-data-dir``, and every test gets its own browser context on top, so no cookie or
    storage leaks between tests.
``new_page(**context_options)``
    A page in a new browser context; options go to ``browser.new_context`` (for example
    ``java_script_enabled=False`` or ``viewport={"width": 360, "height": 740}``). Defaults:
    Chilean Spanish (``es-CL``), a 1280x860 viewport. Console errors and uncaught page
    errors (a Content-Security-Policy violation is one) fail the test when it ends; a test
    that provokes some on purpose lists what to allow in ``page.allowed_errors``.
``page``
    ``new_page()``.
``shop``
    The example shop (``example_project/``) served by ``runserver`` for the whole run, with
    :mod:`tests.browser.shop_settings`: the shop at ``shop.url`` (``http://localhost:PORT``),
    its sandbox at ``shop.sandbox_url`` (``http://127.0.0.1:PORT/sandbox``, another origin),
    a strict CSP with nonces on every shop page, demo products loaded, a fresh SQLite
    database whose rows ``shop.query(sql, params)`` reads, and the server's output in
    ``shop.log``.
``mexican_shop``
    The same shop switched to Mexico (``ETPAY_EXAMPLE_COUNTRY=MX``: MXN, CoDi/SPEI, the
    payer's phone), served on its own port and database the first time a test asks for it.
``screenshot(target, name)``
    Saves a PNG of a page or a locator as ``<name>.png`` in ``ETPAY_SCREENSHOT_DIR`` (``make
    screenshots`` sets it to ``docs/img``), else in the run's temporary folder; returns the path.

Helpers (plain functions): :func:`buy` (checkout from the product list, landing on the pay
page with the widget open), :func:`funnel_frame`, :func:`approve`, :func:`wait_for_order_page`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.subprocesses import free_port, stop

ROOT = Path(__file__).resolve().parent.parent.parent
SHOP_DIR = ROOT / "example_project"
CHROMIUM = os.environ.get("ETPAY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Milliseconds Playwright waits for any one condition before the test fails.
TIMEOUT_MS = 20_000


def expect(target: Any) -> Any:
    """Playwright's ``expect``, imported when a test runs: a module that imported Playwright at
    collection would skip itself in every environment without it, which the gate refuses."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


@dataclass
class Shop:
    """The served example shop."""

    url: str
    sandbox_url: str
    database: Path
    #: The server's output (requests, the sandbox's webhook log lines, tracebacks).
    log: Path

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the shop's database."""
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10) as db:
            return list(db.execute(sql, params))

    def order_status(self, number: str) -> str:
        rows = self.query("SELECT status FROM shop_order WHERE number = ?", (number,))
        return str(rows[0][0])


@contextlib.contextmanager
def served_shop(folder: Path, **extra_env: str) -> Iterator[Shop]:
    """Migrate a fresh database in ``folder``, load the demo products, serve the shop.

    ``extra_env`` adds environment variables, e.g. ``ETPAY_EXAMPLE_COUNTRY="MX"``.
    """
    import subprocess

    port = free_port()
    database = folder / "shop.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.browser.shop_settings",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(SHOP_DIR)]),
            "SHOP_PORT": str(port),
            "SHOP_DATABASE": str(database),
            "PYTHONUNBUFFERED": "1",
            **extra_env,
        }
    )
    manage = [sys.executable, "manage.py"]
    for command in (["migrate", "--noinput"], ["load_demo_products"]):
        result = subprocess.run(  # noqa: S603 - fixed argv
            [*manage, *command], cwd=SHOP_DIR, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
    args = [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"]
    # The server's log goes to a file: a pipe nobody reads fills up after a few hundred
    # requests and then blocks the server.
    log_path = folder / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            args, cwd=SHOP_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_serving(process, f"http://127.0.0.1:{port}/", log_path)
            yield Shop(
                url=f"http://localhost:{port}",
                sandbox_url=f"http://127.0.0.1:{port}/sandbox",
                database=database,
                log=log_path,
            )
        finally:
            stop(process)


def _wait_until_serving(process: Any, url: str, log_path: Path) -> None:
    import time

    import requests

    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"The example shop did not start:\n{log_path.read_text()}")
            time.sleep(0.1)


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """Serve the example shop (and its sandbox) until the run ends."""
    with served_shop(tmp_path_factory.mktemp("shop")) as served:
        yield served


@pytest.fixture(scope="session")
def mexican_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """The example shop switched to Mexico (``ETPAY_EXAMPLE_COUNTRY=MX``), served on demand."""
    with served_shop(tmp_path_factory.mktemp("shop-mx"), ETPAY_EXAMPLE_COUNTRY="MX") as served:
        yield served


def launch(playwright: Any) -> Any:
    """Debian's Chromium with the flags the browser tests use."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"No Chromium at {CHROMIUM}: apt-get install chromium, or set ETPAY_CHROMIUM.")
    # Playwright refuses --user-data-dir in launch(); it passes a fresh temporary one.
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the run."""
    # Imported here, not when this module is collected: the quick environments, which deselect
    # these tests, then collect them without a skip; a run that selects them without Playwright
    # skips each one, and the gate (tests/gate.py) fails on that skip.
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"No Chromium at {CHROMIUM}: apt-get install chromium, or set ETPAY_CHROMIUM.")
    with playwright_api.sync_playwright() as playwright:
        # Playwright refuses --user-data-dir in launch(); it passes a fresh temporary one.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """A factory of pages, each in a fresh context; console errors fail the test."""
    contexts: list[Any] = []
    pages: list[Any] = []

    def make(**options: Any) -> Any:
        settings = {"locale": "es-CL", "viewport": {"width": 1280, "height": 860}, **options}
        context = browser.new_context(**settings)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.allowed_errors = []

        def on_console(message: Any) -> None:
            # A browser asks every site for /favicon.ico; the shop has none, and that is fine.
            if message.type == "error" and "favicon.ico" not in str(message.location):
                page.errors.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        pages.append(page)
        return page

    yield make
    problems = [
        text
        for page in pages
        for text in page.errors
        if not any(allowed in text for allowed in page.allowed_errors)
    ]
    for context in contexts:
        context.close()
    assert not problems, f"Errors in the browser console: {problems}"


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    """A desktop page in Chilean Spanish."""
    return new_page()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("ETPAY_SCREENSHOT_DIR")
    if configured:
        folder = Path(configured)
        if not folder.is_absolute():
            folder = ROOT / folder
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def screenshot(screenshot_dir: Path) -> Callable[[Any, str], Path]:
    """Save a PNG of a page or locator as ``<name>.png``; returns its path."""

    def take(target: Any, name: str) -> Path:
        path = screenshot_dir / f"{name}.png"
        target.screenshot(path=str(path), animations="disabled")
        return path

    return take


# -- helpers ---------------------------------------------------------------------------------


def buy(page: Any, shop: Shop, slug: str = "taza-ceramica", quantity: int = 1) -> str:
    """Check out ``slug`` from the product list; returns the order number.

    Ends on the pay page; with JavaScript on, the widget has opened on its own.
    """
    page.goto(f"{shop.url}/")
    form = page.locator(f"form[action='/checkout/{slug}/']")
    form.get_by_label("Cantidad").fill(str(quantity))
    form.get_by_role("button", name="Comprar").click()
    page.wait_for_url(f"{shop.url}/orders/*/pay/")
    return str(page.url.rstrip("/").split("/")[-2])


def funnel_frame(page: Any) -> Any:
    """The funnel inside the widget's dialog."""
    return page.frame_locator("iframe.etpay-dialog__frame")


def approve(funnel: Any, *, rut: str = "11.111.111-1", bank: str | None = None) -> None:
    """Fill in the sandbox funnel (a page or a frame locator) and press "Aprobar pago"."""
    if bank is not None:
        funnel.get_by_label(bank).check()
    funnel.get_by_label("RUT").fill(rut)
    funnel.get_by_role("button", name="Aprobar pago").click()


def wait_for_order_page(page: Any, shop: Shop, number: str) -> None:
    """Wait until the browser shows the order's status page (not its pay page)."""
    page.wait_for_url(re.compile(rf"^{re.escape(shop.url)}/orders/{number}/(\?.*)?$"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run a failed browser test once more where pytest-rerunfailures is installed (tox env
    ``heavy``): Chromium has been seen to stop answering mid-test, which the per-test timeout
    turns into a failure; the flow itself must still pass on its second run."""
    if not config.pluginmanager.hasplugin("rerunfailures"):
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.flaky(reruns=1))
