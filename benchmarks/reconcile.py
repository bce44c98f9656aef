"""Concurrent reconcile: ``etpay_reconcile --concurrency N`` against a status API with latency.

    python -m benchmarks.reconcile [--latency 0.05] [--runs 1:300,16:4000,64:8000,64:8000:4]
        [--pool-size 64] [--synchronous-commit off] [--profile DIR] [--json FILE]

Starts a throw-away PostgreSQL server (``tests/postgres.py``; its data directory is deleted at
exit), migrates it, and serves ETpay's status API locally with ``--latency`` seconds per call
(:mod:`benchmarks.latency_server`, in its own process; one session in ten paid, the rest
unknown to ETpay). For each ``concurrency:count[:processes]`` of ``--runs`` it adds ``count``
due sessions (pending past ``SESSION_TTL``), runs ``manage.py etpay_reconcile --concurrency N``
as a child process (with ``processes`` P, P children at once, ``--shard K/P`` and N / P
threads each) and reports its run time, its rate (the start-up of an empty run left out), the time
100,000 sessions would take at that rate, the limit the latency sets
(``100,000 x latency / N``) and the child's peak resident memory (``wait4`` rusage).
``--profile DIR`` runs each child under py-spy (``pip install py-spy``; every thread),
writes the collapsed stacks to ``reconcile-N.txt`` there and prints where the worker threads
spent their time (in queries and waiting for PostgreSQL, in the call to ETpay).

The counts are small enough for a two-core machine shared with other work; the 100,000
figure is extrapolated from the rate, which holds as long as memory stays flat (it is
reported for every run) and the selection of due sessions stays an index range scan.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET = 100_000


def _add_due(tag: str, count: int) -> None:
    """``count`` sessions pending for three hours (past ``SESSION_TTL``), tokens
    ``due-<tag>-<n>``, through the ORM so that every column gets its default."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from django_etpay.models import PaymentSession

    for first in range(1, count + 1, 1000):
        PaymentSession.objects.bulk_create(
            PaymentSession(
                environment="production",
                merchant_order_id=f"DUE-{tag}-{n}".upper(),
                order_amount=5000,
                currency="CLP",
                token=f"due-{tag}-{n}",
                signature_token=f"sig-due-{tag}-{n:064d}",
                status=PaymentSession.Status.PENDING,
            )
            for n in range(first, min(first + 1000, count + 1))
        )
    PaymentSession.objects.filter(token__startswith=f"due-{tag}-").update(
        created_at=timezone.now() - timedelta(hours=3)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE django_etpay_paymentsession")


def _start_api(latency: float) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.latency_server", "--latency", str(latency)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    port = json.loads(server.stdout.readline())["port"]
    return server, f"http://127.0.0.1:{port}"


def _api_stats(server: subprocess.Popen[str]) -> dict[str, int]:
    assert server.stdin is not None
    assert server.stdout is not None
    server.stdin.write("stats\n")
    server.stdin.flush()
    stats: dict[str, int] = json.loads(server.stdout.readline())
    return stats


def _where(profile: Path) -> str:
    """Where the worker threads of a py-spy raw profile (``--threads``) spent their samples:
    in a query (and, within it, waiting for PostgreSQL's reply), in the call to ETpay (and
    waiting for its reply), elsewhere. Shares of every worker-thread sample, inclusive."""
    places = {
        "in a query": ("django/db/backends/utils.py",),
        "waiting for PostgreSQL": ("Connection.wait (psycopg",),
        "in the call to ETpay": ("EtpayClient._post",),
        "waiting for ETpay's reply": ("SocketIO.readinto",),
    }
    totals = dict.fromkeys(places, 0)
    samples = 0
    for line in profile.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not count_text.isdigit() or "etpay-reconcile" not in frames[0]:
            continue
        count = int(count_text)
        samples += count
        for name, marks in places.items():
            if any(mark in frame for frame in frames for mark in marks):
                totals[name] += count
    if not samples:
        return "no worker-thread samples"
    parts = [f"{name} {count / samples:.0%}" for name, count in totals.items()]
    return f"{samples} worker-thread samples: {', '.join(parts)}"


def _floor_child(concurrency: int, count: int) -> None:
    """The floor: ``count`` status queries from ``concurrency`` threads through the shared
    client, no database (what the machine and the latency allow the HTTP calls alone)."""
    import threading

    import django

    django.setup()
    from django_etpay.client import get_client

    client = get_client()
    numbers = iter(range(count))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                number = next(numbers, None)
            if number is None:
                return
            client.check_payment_status(session_token=f"floor-{number}")

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"seconds": time.monotonic() - started}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--runs", default="1:300,4:1200,16:4000,64:8000,64:8000:2,64:8000:4")
    parser.add_argument("--pool-size", type=int, default=64, help='ETPAY["POOL_SIZE"]')
    parser.add_argument(
        "--profile", help="write a py-spy profile of each run's processes to this directory"
    )
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time the same number of status queries alone (no database) at each N",
    )
    parser.add_argument("--floor-child", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default="off",
        help="PostgreSQL synchronous_commit for the app's connections (see README)",
    )
    args = parser.parse_args()
    if args.floor_child:
        _floor_child(*args.floor_child)
        return 0

    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    # Read by benchmarks/settings.py, here and in the etpay_reconcile children.
    os.environ["ETPAY_BENCH_SYNCHRONOUS_COMMIT"] = args.synchronous_commit
    os.environ.pop("ETPAY_TEST_DB", None)
    from tests.postgres import database_settings

    db = database_settings()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    server, url = _start_api(args.latency)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "ETPAY_TEST_PGHOST": db["HOST"],
        "ETPAY_TEST_PGPORT": str(db["PORT"]),
        "ETPAY_BENCH_API_URL": url,
        "ETPAY_BENCH_POOL_SIZE": str(args.pool_size),
        "PYTHONPATH": str(ROOT),
    }
    print(
        f"latency {args.latency * 1000:.0f} ms per status query, POOL_SIZE {args.pool_size},"
        f" synchronous_commit {args.synchronous_commit},"
        f" {os.cpu_count()} cores, load average"
        f" {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start",
        flush=True,
    )
    # What a run costs before its first call (interpreter, Django, the first query), so that
    # the rate is that of reconciling, not of starting a process.
    startup = []
    for _ in range(3):
        started = time.monotonic()
        subprocess.run(
            # Sessions older than a century: none, so the run stops before its first call.
            [
                sys.executable,
                "-m",
                "django",
                "etpay_reconcile",
                "--older-than",
                "36500d",
                "--no-effects",
            ],
            env=env,
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        startup.append(time.monotonic() - started)
    start_s = min(startup)
    print(f"start-up of an empty run: {start_s:.2f} s (best of 3), left out of the rates")
    rows: list[dict[str, Any]] = []
    # Tokens are unique: a run on a database that earlier runs used gets tokens of its own.
    run_tag = secrets.token_hex(3)
    try:
        for tag, spec in enumerate(args.runs.split(",")):
            parts = [int(part) for part in spec.split(":")]
            concurrency, count = parts[0], parts[1]
            processes = parts[2] if len(parts) > 2 else 1
            if concurrency % processes:
                raise SystemExit(f"{spec}: the concurrency must divide among the processes")
            _add_due(f"{run_tag}r{tag}", count)
            before = _api_stats(server)["requests"]
            profile = None
            children = []
            started = time.monotonic()
            for shard in range(1, processes + 1):
                command = []
                if args.profile:
                    Path(args.profile).mkdir(parents=True, exist_ok=True)
                    name = f"reconcile-{concurrency}-{shard}of{processes}.txt"
                    profile = Path(args.profile) / name
                    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                    command += [spy, "record", "--format", "raw", "--rate", "50"]
                    command += ["--threads", "--nonblocking", "-o", str(profile), "--"]
                command += [
                    sys.executable,
                    "-m",
                    "django",
                    "etpay_reconcile",
                    "--concurrency",
                    str(concurrency // processes),
                    "--max-errors",
                    "0",
                    "--no-effects",
                ]
                if processes > 1:
                    command += ["--shard", f"{shard}/{processes}"]
                children.append(
                    subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
                )
            outputs, statuses, peak_rss, cpu = [], [], 0.0, 0.0
            for child in children:
                assert child.stdout is not None
                outputs.append(child.stdout.read().strip())
                _pid, status, usage = os.wait4(child.pid, 0)
                statuses.append(os.waitstatus_to_exitcode(status))
                peak_rss = max(peak_rss, usage.ru_maxrss / 1024)
                cpu += usage.ru_utime + usage.ru_stime
            elapsed = time.monotonic() - started
            output = "\n  ".join(outputs)
            stats = _api_stats(server)
            calls = stats["requests"] - before
            rate = count / max(elapsed - start_s, 0.001)
            limit = TARGET * args.latency / concurrency
            row = {
                "concurrency": concurrency,
                "processes": processes,
                "sessions": count,
                "seconds": round(elapsed, 1),
                "per_second": round(rate, 1),
                "extrapolated_100k_s": round(TARGET / rate),
                "latency_limit_100k_s": round(limit),
                "share_of_limit": round(limit / (TARGET / rate), 3),
                # Per process: each is a shop's command of its own.
                "peak_rss_mb": round(peak_rss, 1),
                "cpu_s": round(cpu, 1),
                "calls": calls,
                "exit": max(statuses, key=abs),
            }
            if args.floor:
                floor = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.reconcile",
                        "--floor-child",
                        str(concurrency),
                        str(count),
                    ],
                    env=env,
                    cwd=ROOT,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                floor_s = json.loads(floor.stdout.strip().splitlines()[-1])["seconds"]
                row["floor_per_second"] = round(count / floor_s, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
            print(f"  {output.strip()}", flush=True)
            if profile is not None:
                print(f"  profile: {_where(profile)}", flush=True)
    finally:
        if server.stdin is not None:
            server.stdin.write("quit\n")
            server.stdin.flush()
        server.wait(timeout=10)
    print()
    print(
        "| concurrency | processes | sessions | run time | sessions/s | 100,000 at that rate |"
        " latency limit | share of limit | peak RSS per process | CPU | calls alone/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['concurrency']} | {row['processes']} | {row['sessions']:,} |"
            f" {row['seconds']:.0f} s |"
            f" {row['per_second']:.0f} | {row['extrapolated_100k_s']:,} s |"
            f" {row['latency_limit_100k_s']:,} s | {row['share_of_limit'] * 100:.0f} % |"
            f" {row['peak_rss_mb']:.0f} MB | {row['cpu_s']:.0f} s |"
            f" {row.get('floor_per_second', '-')} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if all(row["exit"] == 0 and row["calls"] == row["sessions"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
