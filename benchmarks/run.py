"""Run the benchmarks: every figure as a ratio of the app to its floor, measured in one run.

    python -m benchmarks.run [--only outbound|notification] [--profile DIR] [--json FILE]

Outbound (``initialize_session`` and the client, against a loopback TLS server) and the
notification view (gunicorn on PostgreSQL, wrk) are described in :mod:`benchmarks.outbound`
and :mod:`benchmarks.notification`; ``benchmarks/README.md`` has the latest table and how to
read it. A throw-away PostgreSQL server is started for the run (``tests/postgres.py``; set
``ETPAY_TEST_PGHOST`` and friends to use your own). Floor and app alternate within each
round, so load from other processes on the machine affects both: read the ratios, not the
absolute rates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def log(text: str) -> None:
    print(text, flush=True)


def _versions() -> str:
    import django
    import requests
    import urllib3
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    wrk = shutil.which("wrk")
    wrk_version = ""
    if wrk:
        probe = subprocess.run([wrk, "--version"], capture_output=True, text=True)
        wrk_version = (probe.stdout or probe.stderr).split(" [")[0]
    return (
        f"Python {platform.python_version()}, Django {django.get_version()}, requests"
        f" {requests.__version__}, urllib3 {urllib3.__version__}, PostgreSQL {postgres},"
        f" (synchronous_commit {os.environ.get('ETPAY_BENCH_SYNCHRONOUS_COMMIT', 'on')}),"
        f" {wrk_version or 'no wrk'}; {os.cpu_count()} cores, load average"
        f" {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start"
    )


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| figure | threads | each round | median | goal |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        goal = row.get("goal")
        higher = row.get("higher_is_better", True)
        if goal is None:
            goal_text = ""
        else:
            met = row["median"] >= goal if higher else row["median"] <= goal
            goal_text = f"{'>=' if higher else '<='} {goal:g} ({'met' if met else 'NOT met'})"
        rounds = ", ".join(f"{r:.2f}" for r in row["rounds"])
        lines.append(
            f"| {row['figure']} | {row.get('threads', '')} | {rounds} |"
            f" **{row['median']:.2f}** | {goal_text} |"
        )
    return "\n".join(lines)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(f"terminated by signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["outbound", "notification"])
    parser.add_argument("--outbound-rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400, help="calls per outbound run")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--key", choices=["ec", "rsa"], default="ec", help="server key type")
    parser.add_argument("--rounds", type=int, default=3, help="notification rounds")
    parser.add_argument("--sessions", type=int, default=5000, help="sessions per round")
    parser.add_argument("--repeats", type=int, default=3, help="deliveries per session")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds of load per endpoint and round"
    )
    parser.add_argument(
        "--slices", type=int, default=5, help="turns the endpoints take within a round"
    )
    parser.add_argument("--python-load", action="store_true", help="ignore wrk")
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default="off",
        help="PostgreSQL synchronous_commit for the app's connections (see README)",
    )
    parser.add_argument("--profile", type=Path, help="also profile, writing into this directory")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    # A terminated run still stops the servers it started (the finally blocks run).
    signal.signal(signal.SIGTERM, _terminate)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    os.environ.pop("ETPAY_TEST_DB", None)
    # Read by benchmarks/settings.py, here and in gunicorn's workers.
    os.environ["ETPAY_BENCH_SYNCHRONOUS_COMMIT"] = args.synchronous_commit
    from tests.postgres import database_settings

    db = database_settings()  # starts the server; gunicorn's workers reuse it via the env
    os.environ["ETPAY_TEST_PGHOST"] = db["HOST"]
    os.environ["ETPAY_TEST_PGPORT"] = db["PORT"]

    import django

    django.setup()
    from django.core.management import call_command

    from benchmarks import notification, outbound
    from benchmarks.tls import temporary_certificates

    call_command("migrate", verbosity=0)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    log(f"django-etpay benchmarks, {started}: {_versions()}")
    raw: dict[str, Any] = {}
    tables: list[str] = []

    if args.only in (None, "outbound"):
        holder, certificates = temporary_certificates(args.key)
        try:
            log(
                f"\n== outbound: {args.calls} calls per run, sequential and {args.threads}"
                f" threads, {args.outbound_rounds} rounds, TLS server key {args.key} =="
            )
            results = outbound.run(
                certificates,
                rounds=args.outbound_rounds,
                calls=args.calls,
                threads=args.threads,
                log=log,
            )
            rows = outbound.summary_rows(results, args.threads)
            tables.append(_table(rows))
            savings = outbound.round_trip_savings(results, args.threads)
            raw["outbound"] = {
                "tls": results.tls,
                "rounds": [
                    {f"{name}/{threads}": vars(run) for (name, threads), run in r.items()}
                    for r in results.rounds
                ],
                "savings_at_50ms": savings,
            }
            if args.profile:
                outbound.profile(certificates, calls=args.calls, directory=args.profile, log=log)
        finally:
            holder.cleanup()

    if args.only in (None, "notification"):
        log(
            f"\n== notification view: gunicorn {args.workers} workers, PostgreSQL,"
            f" {args.connections} connections, {args.duration} s per run,"
            f" {args.sessions} sessions x {args.repeats} deliveries per round, {args.rounds}"
            " rounds =="
        )
        note = notification.run(
            rounds=args.rounds,
            sessions=args.sessions,
            repeats=args.repeats,
            connections=args.connections,
            workers=args.workers,
            duration=args.duration,
            slices=args.slices,
            use_wrk=not args.python_load,
            log=log,
        )
        log(f"load generator: {note.generator}")
        tables.append(_table(notification.summary_rows(note)))
        raw["notification"] = {
            "generator": note.generator,
            "rounds": [{k: vars(v) for k, v in r.items()} for r in note.rounds],
        }
        if args.profile:
            notification.profile(
                sessions=args.sessions,
                repeats=args.repeats,
                connections=args.connections,
                workers=args.workers,
                duration=args.duration,
                directory=args.profile,
                log=log,
            )

    log("\n== summary (app / floor; higher is better unless the goal says <=) ==")
    for table in tables:
        log(table + "\n")
    if "outbound" in raw:
        log("connection reuse at a 50 ms round trip:")
        for line in raw["outbound"]["savings_at_50ms"]:
            log(f"  {line}")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
