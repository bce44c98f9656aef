"""Scale benchmark: the admin at 1,000 and 1,000,000 sessions, and etpay_reconcile's memory.

    python benchmarks/scale.py [--small 1000] [--large 1000000] [--notifications 5]
        [--repeats 5] [--due 10000,100000] [--skip-admin] [--skip-reconcile]

Starts a throw-away PostgreSQL server (``tests/postgres.py``; its data directory is deleted
at exit), migrates it and:

1. generates ``--small`` sessions with ``--notifications`` notifications each (SQL
   ``generate_series``: a realistic mix of statuses, channels, outcomes, a few flagged and
   rejected; the first 250 sessions hold a page of rows for every filter, so that both sizes
   render full pages and the comparison measures the data's growth, not a page's fill), then
   times every admin page staff use (sessions changelist by default, with each
   filter and each search, a session page; the notifications changelist, its filters and
   searches, a notification page) as a logged-in superuser through Django's test client:
   the best and the median of ``--repeats`` runs after a warm-up (the best is judged: other
   work on a shared machine only ever adds time), the number of queries, and whether
   PostgreSQL's plan for any of them reads a whole ``django_etpay`` table (EXPLAIN);
2. grows the same database to ``--large`` sessions and times the same pages again, so the two
   sizes are compared within one run (a shared machine slows both alike);
3. for each size in ``--due``, adds that many due sessions (pending past ``SESSION_TTL``),
   serves ETpay's status API locally (one session in ten paid, the rest unknown to ETpay),
   runs ``manage.py etpay_reconcile`` as a child process and reports its peak resident memory
   (``wait4`` rusage) and run time. A fixed memory bound means the peak does not grow with
   the number of due sessions.

Needs ~15 GB of free disk at 1,000,000 sessions and takes tens of minutes on two cores.
Exits non-zero when a page at ``--large`` takes more than twice its time at ``--small`` (with
a 5 ms floor for noise), issues a different number of queries, or reads a whole table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Allowed slowdown from --small to --large, and the noise floor under which it is not judged.
MAX_RATIO = 2.0
NOISE_FLOOR_MS = 5.0

SESSIONS_SQL = """
INSERT INTO django_etpay_paymentsession (
    created_at, updated_at, merchant, environment, merchant_order_id, order_amount, currency,
    customer_email, metadata, user_bank_code, user_rut, is_rut_block, payment_completed_url,
    payment_cancellation_url, payment_webhook_url, token, signature_token, terms_url, status,
    payment_token, payer_bank, payer_account, payer_rut, error, error_code, outcome_unknown,
    needs_reconciliation, paid_at, completed_at
)
SELECT
    created, created, CASE WHEN mod(i, 10) = 0 THEN 'outlet' ELSE '' END,
    CASE WHEN mod(i, 1000) = 0 OR i BETWEEN 121 AND 180 THEN 'sandbox' ELSE 'production' END,
    'OC-' || lpad(i::text, 8, '0'), 1000 + (mod(i, 200)) * 990, 'CLP',
    'payer' || i || '@example.com', '[]'::jsonb, '', '', NULL, '', '', '',
    'sess-' || md5(i::text), 'sig-' || md5('s' || i::text), '', status,
    CASE WHEN status = 'paid' THEN 'pay-' || md5(i::text) ELSE '' END,
    CASE WHEN status = 'paid' THEN 'Banco de prueba' ELSE '' END,
    CASE WHEN status = 'paid' THEN 'Cuenta Corriente ' || (10000000 + i) ELSE '' END,
    CASE WHEN status = 'paid' THEN '11111111' || (mod(i, 10)) ELSE '' END,
    '', '', mod(i, 2000) = 7 OR i BETWEEN 61 AND 120, mod(i, 500) = 3 OR i BETWEEN 1 AND 60,
    CASE WHEN status = 'paid' THEN created + interval '3 minutes' END,
    CASE WHEN status IN ('paid', 'failed') THEN created + interval '3 minutes' END
FROM (
    SELECT i,
        CASE WHEN mod(i, 100) < 70 THEN 'paid' WHEN mod(i, 100) < 80 THEN 'failed'
             WHEN mod(i, 100) < 95 THEN 'expired' ELSE 'pending' END AS status,
        CASE WHEN mod(i, 100) >= 95 THEN now() - (mod(i, 1800)) * interval '1 second'
             ELSE now() - interval '1 hour' - interval '30 seconds' * CASE
                 WHEN i <= %(small)s THEN %(small)s - i
                 ELSE %(small)s + %(large)s - i + 1 END
             END AS created
    FROM generate_series(%(first)s, %(last)s) AS i
) AS generated
"""

NOTIFICATIONS_SQL = """
INSERT INTO django_etpay_notification (
    session_id, channel, outcome, reason, detail, result, status_before, status_after,
    payment_token, raw_body, raw_body_truncated, claims, remote_addr, created_at
)
SELECT s.id,
    (ARRAY['webhook', 'redirect', 'widget', 'poll', 'webhook'])[n],
    CASE WHEN n = 5 AND (mod(s.id, 100) = 1 OR s.id BETWEEN 181 AND 240) THEN 'rejected'
         WHEN n = 1 AND s.status IN ('paid', 'failed') THEN 'accepted'
         ELSE 'duplicate' END,
    CASE WHEN n = 5 AND (mod(s.id, 100) = 1 OR s.id BETWEEN 181 AND 240)
         THEN 'bad_signature' ELSE '' END,
    '', 'success', 'pending', s.status, s.payment_token,
    '{"payment": "eyJhbGciOiJIUzI1NiJ9.' || repeat(md5(s.token), 8) || '"}', false,
    jsonb_build_object(
        'session_token', s.token, 'merchant_order_id', s.merchant_order_id,
        'merchant_amount', s.order_amount, 'merchant_currency', 'CLP',
        'payment_token', s.payment_token, 'payment_status', true,
        'user_rut', '111111111', 'user_account', 'Cuenta Corriente 12345678',
        'user_bank', 'Banco de prueba', 'iat', 1700000000
    ),
    ('203.0.113.' || mod(s.id, 250))::inet, s.created_at + n * interval '20 seconds'
FROM django_etpay_paymentsession s CROSS JOIN generate_series(1, %(per)s) AS n
WHERE s.id BETWEEN %(first)s AND %(last)s
"""

DUE_SQL = """
INSERT INTO django_etpay_paymentsession (
    created_at, updated_at, merchant, environment, merchant_order_id, order_amount, currency,
    customer_email, metadata, user_bank_code, user_rut, payment_completed_url,
    payment_cancellation_url, payment_webhook_url, token, signature_token, terms_url, status,
    payment_token, payer_bank, payer_account, payer_rut, error, error_code, outcome_unknown,
    needs_reconciliation
)
SELECT now() - interval '3 hours', now() - interval '3 hours', '', 'production',
    'DUE-' || %(tag)s || '-' || i, 5000, 'CLP', '', '[]'::jsonb, '', '', '', '', '',
    'due-' || %(tag)s || '-' || i, 'sig-due-' || md5(i::text), '', 'pending', '', '', '', '',
    '', '', false, false
FROM generate_series(1, %(count)s) AS i
"""


def _session_pages(session_id: int, order_id: str, token: str, payment_token: str) -> list[Any]:
    base = "/admin/django_etpay/paymentsession/"
    week_ago = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 7 * 86400))
    return [
        ("sessions: default", base, {}),
        ("sessions: status=paid", base, {"status__exact": "paid"}),
        ("sessions: status=pending", base, {"status__exact": "pending"}),
        ("sessions: needs attention", base, {"attention": "yes"}),
        ("sessions: pending past TTL", base, {"attention": "overdue"}),
        ("sessions: flagged", base, {"attention": "flagged"}),
        ("sessions: rejected in past 7 days", base, {"attention": "rejected"}),
        ("sessions: needs_reconciliation", base, {"needs_reconciliation__exact": "1"}),
        ("sessions: outcome_unknown", base, {"outcome_unknown__exact": "1"}),
        ("sessions: environment=sandbox", base, {"environment__exact": "sandbox"}),
        ("sessions: merchant=outlet", base, {"merchant": "outlet"}),
        ("sessions: past 7 days", base, {"created_at__gte": f"{week_ago} 00:00:00+00:00"}),
        ("sessions: search order id", base, {"q": order_id}),
        ("sessions: search token", base, {"q": token}),
        ("sessions: search payment token", base, {"q": payment_token}),
        ("sessions: search e-mail", base, {"q": "PAYER7@example.com"}),
        ("session page", f"{base}{session_id}/change/", {}),
    ]


def _notification_pages(
    notification_id: int, order_id: str, token: str, payment_token: str
) -> list[Any]:
    base = "/admin/django_etpay/notification/"
    return [
        ("notifications: default", base, {}),
        ("notifications: outcome=rejected", base, {"outcome__exact": "rejected"}),
        ("notifications: channel=poll", base, {"channel__exact": "poll"}),
        ("notifications: reason=bad_signature", base, {"reason__exact": "bad_signature"}),
        ("notifications: search order id", base, {"q": order_id}),
        ("notifications: search token", base, {"q": token}),
        ("notifications: search payment token", base, {"q": payment_token}),
        ("notification page", f"{base}{notification_id}/change/", {}),
    ]


def _generate(first: int, last: int, small: int, large: int, per: int) -> None:
    """Sessions ``first``..``last`` and their notifications.

    One session every 30 seconds going back in time: the ``small`` set is the most recent
    hours (so that date and recent-rejection filters find a page of rows at the small size
    too), the rest up to ``large`` is the older history behind it.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        chunk = 100_000
        for start in range(first, last + 1, chunk):
            end = min(start + chunk - 1, last)
            cursor.execute(
                SESSIONS_SQL, {"first": start, "last": end, "small": small, "large": large}
            )
            cursor.execute(
                "SELECT min(id), max(id) FROM django_etpay_paymentsession "
                "WHERE merchant_order_id BETWEEN %s AND %s",
                [f"OC-{start:08d}", f"OC-{end:08d}"],
            )
            low, high = cursor.fetchone()
            cursor.execute(NOTIFICATIONS_SQL, {"first": low, "last": high, "per": per})
            print(f"  generated sessions {start:,}-{end:,}", flush=True)
        cursor.execute("VACUUM ANALYZE django_etpay_paymentsession")
        cursor.execute("VACUUM ANALYZE django_etpay_notification")


def _whole_table_reads(statements: list[str]) -> list[str]:
    from django.db import connection

    found = []
    with connection.cursor() as cursor:
        for sql in statements:
            if not sql.lstrip().upper().startswith("SELECT") or "django_etpay" not in sql:
                continue
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            for table in ("django_etpay_paymentsession", "django_etpay_notification"):
                if f"Seq Scan on {table}" in plan:
                    found.append(table.removeprefix("django_etpay_"))
    return found


@dataclass
class Measured:
    """One admin page at one size."""

    best_ms: float
    median_ms: float
    sql_ms: float
    queries: int
    whole_table_reads: list[str]


def _measure(client: Any, pages: list[Any], repeats: int) -> dict[str, Measured]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    results = {}
    for name, url, params in pages:
        client.get(url, params)  # warm-up: caches (content types, templates) fill here
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url, params)
        if response.status_code != 200:
            raise SystemExit(f"{name}: HTTP {response.status_code}")
        statements = [q["sql"] for q in captured.captured_queries]
        timings = []
        sql_times = []
        for _ in range(repeats):
            with CaptureQueriesContext(connection) as timed:
                started = time.perf_counter()
                client.get(url, params)
                timings.append((time.perf_counter() - started) * 1000)
            sql_times.append(sum(float(q["time"]) for q in timed.captured_queries) * 1000)
        results[name] = Measured(
            best_ms=min(timings),
            median_ms=statistics.median(timings),
            sql_ms=min(sql_times),
            queries=len(statements),
            whole_table_reads=_whole_table_reads(statements),
        )
    return results


def _admin(args: argparse.Namespace) -> bool:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from django_etpay.models import Notification, PaymentSession

    User.objects.create_superuser("bench", "bench@example.com", "x")
    client = Client()
    client.force_login(User.objects.get(username="bench"))

    def pages() -> list[Any]:
        # The same rows are looked up at both sizes: session 7 and its notifications.
        session = PaymentSession.objects.get(merchant_order_id="OC-00000007")
        notification = Notification.objects.filter(session=session).order_by("pk").first()
        assert notification is not None
        found = (session.merchant_order_id, session.token or "", session.payment_token)
        return _session_pages(session.pk, *found) + _notification_pages(notification.pk, *found)

    print(f"generating {args.small:,} sessions x {args.notifications} notifications", flush=True)
    _generate(1, args.small, args.small, args.large, args.notifications)
    small = _measure(client, pages(), args.repeats)
    print(f"growing to {args.large:,} sessions", flush=True)
    started = time.monotonic()
    _generate(args.small + 1, args.large, args.small, args.large, args.notifications)
    print(f"  took {time.monotonic() - started:.0f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM django_etpay_notification")
        print(f"  {cursor.fetchone()[0]:,} notifications", flush=True)
    large = _measure(client, pages(), args.repeats)

    ok = True
    print()
    print(
        f"{'page':38} {'best ms':>16} {'median ms':>16} {'SQL ms':>14} {'ratio':>6}"
        f" {'queries':>8}  whole-table reads"
    )
    print(f"{'':38} {'small/large':>16} {'small/large':>16} {'small/large':>14}")
    for name, few in small.items():
        many = large[name]
        ratio = many.best_ms / few.best_ms
        slow = ratio > MAX_RATIO and many.best_ms > NOISE_FLOOR_MS
        bad = slow or many.queries != few.queries or bool(many.whole_table_reads)
        ok = ok and not bad
        print(
            f"{name:38} {few.best_ms:7.1f} /{many.best_ms:7.1f} "
            f"{few.median_ms:7.1f} /{many.median_ms:7.1f} {few.sql_ms:6.1f} /{many.sql_ms:6.1f} "
            f"{ratio:6.2f} {few.queries:>3} / {many.queries:<3} "
            f"{', '.join(many.whole_table_reads) or '-'}" + ("  <-- FAIL" if bad else "")
        )
    return ok


def _reconcile(args: argparse.Namespace, db: dict[str, Any]) -> bool:
    from django.db import connection

    from tests.httpfakes import StatusApiServer

    api = StatusApiServer()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "ETPAY_TEST_PGHOST": db["HOST"],
        "ETPAY_TEST_PGPORT": db["PORT"],
        "ETPAY_BENCH_API_URL": api.url,
        "PYTHONPATH": str(ROOT),
    }
    peaks = []
    try:
        for tag, count in enumerate(int(n) for n in args.due.split(",")):
            with connection.cursor() as cursor:
                cursor.execute(DUE_SQL, {"tag": str(tag), "count": count})
                cursor.execute("ANALYZE django_etpay_paymentsession")
            # One due session in ten was paid: ETpay reports it, the rest it does not know.
            api.answers = {
                f"due-{tag}-{i}": [
                    {
                        "session_token": f"due-{tag}-{i}",
                        "merchant_order_id": f"DUE-{tag}-{i}",
                        "merchant_amount": 5000,
                        "merchant_currency": "CLP",
                        "payment_token": f"pay-due-{tag}-{i}",
                        "payment_status": "success",
                    }
                ]
                for i in range(1, count + 1, 10)
            }
            calls_before = api.calls
            started = time.monotonic()
            child = subprocess.Popen(
                [sys.executable, "-m", "django", "etpay_reconcile", "--max-errors", "0"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert child.stdout is not None
            output = child.stdout.read()
            _pid, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            elapsed = time.monotonic() - started
            peak_mb = usage.ru_maxrss / 1024
            peaks.append((count, peak_mb))
            print(
                f"etpay_reconcile over {count:,} due sessions: peak RSS {peak_mb:.1f} MB, "
                f"{elapsed:.0f} s ({count / elapsed:.0f} sessions/s), "
                f"{api.calls - calls_before:,} status queries, exit {child.returncode}"
            )
            print(f"  {output.strip()}")
    finally:
        api.stop()
    if len(peaks) < 2:
        return True
    (few, few_mb), (many, many_mb) = peaks[0], peaks[-1]
    bounded = many_mb < few_mb * 1.25
    print(
        f"peak memory {few:,} -> {many:,} due sessions: {few_mb:.1f} -> {many_mb:.1f} MB "
        f"({'bounded' if bounded else 'GROWS'})"
    )
    return bounded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--notifications", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--due", default="10000,100000", help="comma-separated due counts")
    parser.add_argument("--skip-admin", action="store_true")
    parser.add_argument("--skip-reconcile", action="store_true")
    args = parser.parse_args()

    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    os.environ.pop("ETPAY_TEST_DB", None)
    from tests.postgres import database_settings

    db = database_settings()

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(
        f"PostgreSQL (embedded), {os.cpu_count()} cores; {args.repeats} runs per page after "
        "a warm-up; the ratio compares the best runs"
    )
    ok = True
    if not args.skip_admin:
        ok = _admin(args) and ok
    if not args.skip_reconcile:
        ok = _reconcile(args, db) and ok
    print("checks:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
