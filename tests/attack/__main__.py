"""``python -m tests.attack``: the attack suite against gunicorn on PostgreSQL.

    python -m tests.attack [--workers 3] [--examples 5000] [--seed 8] [--no-fuzz]

Starts a throw-away PostgreSQL server (``tests/postgres.py``), migrates it, starts a hostile ETpay
(:mod:`tests.attack.hostile_etpay`) and gunicorn (sync workers) serving
:mod:`tests.attack.settings`, then:

1. fires the named corpus (:mod:`tests.attack.corpus`), concurrent cases with 16 threads;
2. runs the property-based run (:mod:`tests.attack.fuzz`), ``--examples`` inputs per entry
   point: notification, widget-result, return and the checkout calling ``initialize_session``;
3. logs in to the admin and visits its lists and pages, probing lookups on the key;
4. searches every reply, every log record (the app's, gunicorn's error and access logs) and
   admin page for a secret, and every database row for a plain signature key.

It prints cases, requests, 5xx, wrong transitions, requests without a promised row and secret
hits (the goal for each is 0) and exits 1 when any is not 0. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from tests.subprocesses import free_port, wait_for_url

ROOT = Path(__file__).resolve().parent.parent.parent


class LogSignals:
    """Payment signals, read from the log file the workers write (new lines on each call)."""

    pattern = re.compile(r"ATTACK-SIGNAL (payment_completed|payment_failed) (\d+)")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.all: Counter[tuple[str, int]] = Counter()

    def __call__(self) -> list[tuple[str, int]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        # Only whole lines: a worker may be writing the last one.
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        found = [
            (match.group(1), int(match.group(2)))
            for match in self.pattern.finditer(chunk[:end].decode("utf-8", "replace"))
        ]
        self.all.update(found)
        return found


def forged_system_errors(transport: Any, limit: int, count: int = 300) -> dict[str, Any]:
    """What ``count`` forged system errors, as large as the app accepts, leave stored.

    Anyone holding a payment URL can mint them; before the storage bounds, 300 of them stored
    300 rows for one session.
    """
    from concurrent.futures import ThreadPoolExecutor

    from django.db.models import Sum
    from django.db.models.functions import Length

    from django_etpay.models import Notification
    from tests.attack.corpus import Context, notify, payment, sized, system_error
    from tests.factories import make_session

    target = make_session()
    ctx = Context(target=target, other=target, limit=limit, order_id="")
    raw = sized(lambda pad: system_error(ctx, pad=pad), limit - 20)
    request = notify(payment(raw))
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = Counter(r.status for r in pool.map(transport.send, [request] * count))
    rows = Notification.objects.filter(session=target)
    stored = rows.aggregate(total=Sum(Length("raw_body")))["total"] or 0
    return {
        "forged system errors sent": f"{count} x {len(request.body)} bytes, replies {dict(codes)}",
        "forged system errors stored": f"{rows.count()} rows, {stored / 1024:.0f} KiB of body",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--examples", type=int, default=5000, help="inputs per entry point")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--no-fuzz", action="store_true", help="corpus and admin only")
    parser.add_argument("--keep-logs", action="store_true", help="keep the log folder")
    parser.add_argument(
        "--entries",
        default="notification,widget,return,initialize",
        help="entry points of the property-based run, comma-separated",
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.attack.settings"
    os.environ.pop("ETPAY_TEST_DB", None)
    logs = Path(tempfile.mkdtemp(prefix="etpay-attack-"))
    os.environ["ETPAY_ATTACK_LOG_DIR"] = str(logs)

    from tests.attack.hostile_etpay import HostileEtpayServer
    from tests.postgres import database_settings

    db = database_settings()  # starts the server; gunicorn's workers reuse it via the env
    os.environ["ETPAY_TEST_PGHOST"] = db["HOST"]
    os.environ["ETPAY_TEST_PGPORT"] = db["PORT"]
    hostile = HostileEtpayServer().start()
    os.environ["ETPAY_ATTACK_API_URL"] = hostile.url

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from django_etpay.models import PaymentSession
    from tests.attack import fuzz
    from tests.attack.corpus import CASES
    from tests.attack.harness import (
        Figures,
        HttpTransport,
        Response,
        SecretSearch,
        crawl_admin,
        failed,
        run_corpus,
        summary,
    )

    call_command("migrate", verbosity=0)
    password = secrets.token_urlsafe(16)
    get_user_model().objects.create_superuser("attack-admin", "admin@example.com", password)

    port = free_port()
    gunicorn = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(args.workers),
            "--worker-class",
            "sync",
            "--timeout",
            "60",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "info",
            "--error-logfile",
            str(logs / "gunicorn-error.log"),
            "--access-logfile",
            str(logs / "gunicorn-access.log"),
            "tests.attack.wsgi:application",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    started = time.monotonic()
    limit = int(settings.ETPAY["NOTIFICATION_MAX_BYTES"])
    search = SecretSearch()
    signals = LogSignals(logs / "app.log")
    extra: dict[str, Any] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_url(f"{base}/etpay/return/")
        transport = HttpTransport(base)
        print(
            f"gunicorn {args.workers} sync workers on PostgreSQL, {os.cpu_count()} cores, "
            f"seed {args.seed}"
        )
        figures = run_corpus(CASES, transport, signals, search, limit)
        print(summary("corpus", figures, search))
        extra["corpus cases"] = figures.cases

        extra.update(forged_system_errors(transport, limit))

        if not args.no_fuzz:

            def report(entry: str, entry_figures: Figures) -> None:
                extra[f"fuzz {entry} inputs"] = entry_figures.requests
                print(summary(f"fuzz: {entry}", entry_figures, search))

            entries = tuple(e.strip() for e in args.entries.split(",") if e.strip())
            figures.add(
                fuzz.run(
                    transport.send,
                    search,
                    args.examples,
                    args.seed,
                    report,
                    entries,
                )
            )

        admin = requests.Session()
        login = f"{base}/admin/login/"
        admin.get(login, timeout=30)
        admin.post(
            login,
            data={
                "username": "attack-admin",
                "password": password,
                "csrfmiddlewaretoken": admin.cookies["csrftoken"],
                "next": "/admin/",
            },
            headers={"Referer": login},
            timeout=30,
        )

        def get(path: str) -> Response:
            reply = admin.get(base + path, allow_redirects=False, timeout=60)
            return Response(reply.status_code, dict(reply.headers), reply.content)

        sessions = list(PaymentSession.objects.exclude(token=None).order_by("-pk")[:20])
        pages, oracles = crawl_admin(get, search, sessions)
        extra["admin pages visited"] = pages
        extra["admin lookup oracles"] = len(oracles)
        figures.problems += oracles
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=60)
        hostile.stop()

    search.plain_keys.update(hostile.issued_keys)
    search.search_database()
    signals()
    twice = [key for key, count in signals.all.items() if count > 1]
    figures.wrong_transitions += [f"{name} fired twice for session {pk}" for name, pk in twice]
    for log in sorted(logs.glob("*.log")):
        text = log.read_text("utf-8", "replace")
        extra[f"log {log.name}"] = f"{text.count(chr(10))} records"
        search.search(log.name, "log file", text)
    extra["signals fired"] = sum(signals.all.values())
    extra["wall time"] = f"{time.monotonic() - started:.0f} s"
    print(summary("attack run: all of it", figures, search, extra))
    if args.keep_logs:
        print(f"logs kept in {logs}")
    else:
        shutil.rmtree(logs, ignore_errors=True)
    return 1 if failed(figures, search) else 0


if __name__ == "__main__":
    raise SystemExit(main())
