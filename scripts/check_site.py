"""Check every link of the built documentation site: ``python scripts/check_site.py SITE_DIR``.

``mkdocs build --strict`` already refuses Markdown links to missing pages and anchors. This
reads the HTML it produced, so it also covers links written as HTML, the navigation, the
theme's own links and the generated pages: every relative ``href`` and ``src`` must name a
file of the site, and every ``#fragment`` an ``id`` on the target page.

Links to other sites are not fetched (the build machines reach no other site). They are listed
with their count, and each must be a well-formed ``https`` URL with a host name. Links to the
reader's own machine (``http://127.0.0.1:8000/`` in the quick start) are allowed over plain
``http`` and listed apart.

Standard library only.
"""

from __future__ import annotations

import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

LOCAL_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0", "[::1]")  # noqa: S104 - names, not binds


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("id", "name") if tag == "a" else ("id",):
            if values.get(name):
                self.ids.add(str(values[name]))
        for name in ("href", "src"):
            link = values.get(name)
            if link and tag in ("a", "link", "img", "script", "source", "iframe"):
                self.links.append(link)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _target(site: Path, page: Path, path: str) -> Path:
    base = site if path.startswith("/") else page.parent
    target = (base / unquote(path.lstrip("/"))).resolve()
    if target.is_dir() or path.endswith("/"):
        target = target / "index.html"
    return target


def check(site: Path) -> tuple[list[str], Counter[str]]:
    """(problems, external link count per host) for the site in ``site``."""
    site = site.resolve()
    pages = {path.resolve(): _parse(path) for path in site.rglob("*.html")}
    problems: list[str] = []
    external: Counter[str] = Counter()
    for path, page in sorted(pages.items()):
        where = path.relative_to(site)
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme in ("mailto", "data", "javascript"):
                continue
            if parts.scheme or link.startswith("//"):
                host = parts.hostname or ""
                if host in LOCAL_HOSTS or f"[{host}]" in LOCAL_HOSTS:
                    if parts.scheme not in ("http", "https"):
                        problems.append(f"{where}: local link {link!r} is not http(s)")
                    external[f"{host} (the reader's machine)"] += 1
                    continue
                if parts.scheme != "https" or not host or "." not in host:
                    problems.append(f"{where}: external link {link!r} is not a https URL")
                external[host] += 1
                continue
            target = path if not parts.path else _target(site, path, parts.path)
            if not target.exists():
                problems.append(f"{where}: {link!r} -> {target.relative_to(site)} is missing")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    problems.append(f"{where}: {link!r}: no id {parts.fragment!r} there")
    return problems, external


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_site.py SITE_DIR", file=sys.stderr)
        return 2
    site = Path(argv[0])
    pages = sum(1 for _ in site.rglob("*.html"))
    problems, external = check(site)
    for problem in problems:
        print(problem)
    print(f"{pages} pages checked; {len(problems)} broken link(s).")
    if external:
        listed = ", ".join(f"{host} ({count})" for host, count in sorted(external.items()))
        print(f"External links, checked for form only (not fetched): {listed}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
