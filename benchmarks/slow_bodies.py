"""Slow request bodies against the notification endpoint: which deployment keeps serving ETpay.

    .venv/bin/python benchmarks/slow_bodies.py [--drippers 6] [--seconds 15] [--nginx PATH]

A client that sends its headers, then one byte of body every 2 s, holds a gunicorn *sync* worker
for as long as it likes: with as many such clients as workers, no webhook gets through. This
script starts a throw-away PostgreSQL, then three deployments of the same app side by side:

- ``sync``: gunicorn, 2 sync workers, nothing in front (the finding);
- ``gthread``: gunicorn, 2 workers x 8 threads (gthread), nothing in front;
- ``nginx+sync``: nginx in front of the first gunicorn, buffering request bodies
  (``proxy_request_buffering on``, the default) so that gunicorn only ever sees whole requests;

and for each, in the same run, measures legitimate webhooks (valid JWTs, one client, 10 s
timeout each) for ``--seconds`` with no attacker, then with ``--drippers`` dripping connections,
then with 50. It prints, per deployment and attack, webhooks answered 200, timed out, and the
p50/p99 latency. All traffic stays on 127.0.0.1; nginx runs from a temporary folder.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.subprocesses import free_port, wait_for_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # Read the whole body before anything reaches gunicorn; give up on clients that stall.
    client_max_body_size 64k;
    client_body_buffer_size 64k;
    client_body_timeout 10s;
    client_header_timeout 10s;
    send_timeout 10s;
    upstream app {{ server 127.0.0.1:{upstream}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_request_buffering on;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_connect_timeout 5s;
            proxy_read_timeout 30s;
        }}
    }}
}}
"""


def _gunicorn(port: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--timeout",
            "30",
            "--log-level",
            "error",
            *extra,
            "benchmarks.wsgi:application",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@contextmanager
def dripping(port: int, count: int) -> Iterator[None]:
    """``count`` connections that send a webhook's headers, then a byte every 2 s."""
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def drip() -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            return
        sockets.append(sock)
        try:
            sock.sendall(
                b"POST /etpay/notification/ HTTP/1.1\r\nHost: shop.example\r\n"
                b"Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
            )
            while not stop.wait(2.0):
                sock.sendall(b" ")
        except OSError:
            pass  # the server gave up on us: that is the point

    threads = [threading.Thread(target=drip, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # let every dripper take its seat before the webhooks start
    try:
        yield
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
        for thread in threads:
            thread.join(timeout=5)


def webhooks(url: str, bodies: Iterator[bytes], seconds: float) -> tuple[int, int, list[float]]:
    """Post webhooks one after the other for ``seconds``: (answered 200, failed, latencies)."""
    ok = failed = 0
    latencies: list[float] = []
    end = time.monotonic() + seconds
    with requests.Session() as http:
        while time.monotonic() < end:
            started = time.perf_counter()
            try:
                reply = http.post(
                    url,
                    data=next(bodies),
                    headers={"Content-Type": "application/json"},
                    timeout=10,
                )
            except requests.RequestException:
                failed += 1
                http.close()
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            if reply.status_code == 200:
                ok += 1
            else:
                failed += 1
    return ok, failed, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drippers", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--nginx", default=os.environ.get("NGINX", "/usr/sbin/nginx"))
    args = parser.parse_args()
    if not shutil.which(args.nginx):
        raise SystemExit(f"nginx not found at {args.nginx} (apt-get install nginx-light)")

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    os.environ.pop("ETPAY_TEST_DB", None)
    from tests.postgres import database_settings

    db = database_settings()
    os.environ["ETPAY_TEST_PGHOST"] = db["HOST"]
    os.environ["ETPAY_TEST_PGPORT"] = db["PORT"]

    import django

    django.setup()
    from django.core.management import call_command

    from tests.factories import make_session, mint_jwt

    call_command("migrate", verbosity=0)
    # First deliveries, then repeats (a duplicate answers 200 too, as ETpay's retries get).
    sessions = [make_session() for _ in range(3000)]
    bodies = itertools.cycle([f'{{"payment": "{mint_jwt(s)}"}}'.encode() for s in sessions])

    sync_port, thread_port, nginx_port = free_port(), free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="etpay-nginx-"))
    tmp.chmod(0o777)
    (tmp / "nginx.conf").write_text(
        NGINX_CONF.format(tmp=tmp, upstream=sync_port, port=nginx_port)
    )
    servers = [
        _gunicorn(sync_port, "--worker-class", "sync"),
        _gunicorn(thread_port, "--worker-class", "gthread", "--threads", "8"),
    ]
    nginx = subprocess.Popen(
        [args.nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"]
    )
    deployments = {
        "sync": sync_port,
        "gthread": thread_port,
        "nginx+sync": nginx_port,
    }
    try:
        for port in deployments.values():
            wait_for_url(f"http://127.0.0.1:{port}/etpay/return/")
        print(
            f"{os.cpu_count()} cores; legitimate webhooks from one client for "
            f"{args.seconds:g} s per row; drippers send headers then 1 byte every 2 s"
        )
        print(
            f"{'deployment':<12} {'attack':<14} {'200':>6} {'failed':>7} "
            f"{'p50 ms':>8} {'p99 ms':>8}"
        )
        for attack in (0, args.drippers, 50):
            for name, port in deployments.items():
                with dripping(port, attack):
                    ok, failed, latencies = webhooks(
                        f"http://127.0.0.1:{port}/etpay/notification/", bodies, args.seconds
                    )
                ordered = sorted(latencies) or [float("nan")]
                p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
                label = f"{attack} drippers" if attack else "none"
                print(
                    f"{name:<12} {label:<14} {ok:>6} {failed:>7} "
                    f"{statistics.median(ordered):>8.1f} {p99:>8.1f}"
                )
                time.sleep(2.5)  # let the server notice the closed drippers
    finally:
        nginx.terminate()
        for server in servers:
            server.terminate()
        nginx.wait(timeout=30)
        for server in servers:
            server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
