"""Summaries of profiles: where the time of a request or a call goes.

:func:`summarize_collapsed` reads py-spy's raw output (one collapsed stack and a sample count
per line, idle samples included) of gunicorn workers and keeps the samples taken while a
request was being handled (leaving out a worker's first imports). It reports wall-clock
shares: of whole functions (inclusive) and, by the frame the worker was in at that moment,
of what kind of work (self time by area). :func:`statements` counts the SQL of one call.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

#: Areas of self time, by the file of the innermost frame (first match wins).
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # psycopg's C core sends, waits and receives inside these frames: round trips, mostly
    # waiting on the server.
    ("PostgreSQL round trips (psycopg)", ("psycopg/", "psycopg_binary/")),
    ("JWT (PyJWT, hmac, base64)", ("jwt/", "hmac.py", "base64.py")),
    ("django_etpay", ("django_etpay/",)),
    ("Django ORM: SQL compilation", ("django/db/models/sql/",)),
    ("Django ORM: models, queries", ("django/db/models/",)),
    ("Django DB backend, transactions", ("django/db/",)),
    ("Django middleware", ("/middleware", "django/contrib/")),
    ("Django request/response", ("django/core/", "django/http/", "django/urls/")),
    ("Django other", ("django/",)),
    ("gunicorn, HTTP parsing, sockets", ("gunicorn/", "socket.py", "selectors.py")),
    ("json", ("json/",)),
    ("benchmark floor view", ("benchmarks/",)),
)

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

#: Functions worth naming in the inclusive table (by qualified-name substring).
INTERESTING = (
    "django_etpay/",
    "benchmarks/floor",
    "jwt/api_jws",
    "jwt/api_jwt",
    "django/db/backends/utils.py",
    "django/db/transaction.py",
    "django/db/models/query.py",
    "django/db/models/base.py",
    "django/core/handlers/base.py",
    "django/core/handlers/wsgi.py",
    "gunicorn/workers/sync.py",
)


def _frames(stack: str) -> list[tuple[str, str]]:
    frames = []
    for raw in stack.split(";"):
        match = _FRAME.match(raw.strip())
        if match:
            frames.append((match["function"], match["file"]))
        else:
            frames.append((raw.strip(), ""))
    return frames


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                path = path.split("/", 1)[-1]
    for marker in ("/django_etpay/", "/benchmarks/"):
        if marker in path:
            path = marker.lstrip("/") + path.split(marker, 1)[1]
    return path


def summarize_collapsed(text: str, *, focus: str = "", top: int = 28) -> str:
    """A table of where request time went in py-spy raw output."""
    samples: list[tuple[list[tuple[str, str]], int]] = []
    for line in text.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = [(function, _short(file)) for function, file in _frames(stack)]
        # Only time spent on requests, and not the imports of a worker's first request.
        if any(f.endswith("handle_request") and "gunicorn/workers/" in p for f, p in frames) and (
            not any(f == "_find_and_load" for f, _ in frames)
        ):
            samples.append((frames, int(number)))
    total = sum(count for _, count in samples)
    if not total:
        return "no samples inside request handling"
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for frames, count in samples:
        seen = set()
        for function, path in frames:
            name = f"{path}:{function}"
            if name not in seen and any(marker in path for marker in INTERESTING):
                seen.add(name)
                inclusive[name] += count
        leaf_path = frames[-1][1] if frames else ""
        for label, markers in AREAS:
            if any(marker in leaf_path for marker in markers):
                areas[label] += count
                break
        else:
            areas[f"other ({leaf_path.split('/')[0] or '?'})"] += count
    lines = [f"{total} samples while handling requests{f' ({focus})' if focus else ''}"]
    lines.append("  self time by area:")
    rest = 0
    for label, count in areas.most_common():
        if count / total < 0.01:
            rest += count
            continue
        lines.append(f"    {100 * count / total:5.1f}%  {label}")
    lines.append(f"    {100 * rest / total:5.1f}%  (areas under 1% each)")
    lines.append("  inclusive time of functions:")
    for name, count in inclusive.most_common(top):
        lines.append(f"    {100 * count / total:5.1f}%  {name}")
    return "\n".join(lines)


def statements(run: Callable[[], object]) -> str:
    """The SQL statements ``run`` executes, as a count and their first words.

    As Django records them: recent versions list a transaction's BEGIN and COMMIT too.
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        run()
    verbs = [" ".join(query["sql"].split()[:1]).upper() for query in captured.captured_queries]
    return f"{len(verbs)} statements: {', '.join(verbs)}"
