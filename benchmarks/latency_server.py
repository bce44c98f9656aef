"""ETpay's status API on loopback, answering each call after a fixed latency.

    python -m benchmarks.latency_server [--latency 0.05] [--paid-every 10] [--port 0]

Plain HTTP/1.1 with keep-alive, one asyncio task per connection, in a process of its own: a
call costs it a few tens of microseconds of CPU, so at any concurrency the wait a client sees
is the injected latency, not the server (the sandbox under gunicorn would spend a Django
request per call, more CPU than the client being measured on a two-core machine). It answers
``/merchant/check_payment_status`` for a ``session_token`` ending in ``-<n>`` with one
successful payment when ``n % paid_every == 1`` and ``[]`` (unknown to ETpay) otherwise, the
mix :mod:`benchmarks.scale` uses.

On start it prints ``{"port": N}``; each line on stdin is a command: ``stats`` prints
``{"requests": R, "in_flight_peak": P}``, ``quit`` stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.in_flight = 0
        self.in_flight_peak = 0


def _reply(body: bytes, paid_every: int) -> bytes:
    try:
        token = str(json.loads(body).get("session_token", ""))
    except ValueError:
        token = ""
    number = token.rpartition("-")[2]
    payments: list[dict[str, object]] = []
    if number.isdigit() and int(number) % paid_every == 1:
        order = token.upper()
        payments.append(
            {
                "session_token": token,
                "merchant_order_id": order,
                "merchant_amount": 5000,
                "merchant_currency": "CLP",
                "payment_token": f"pay-{token}",
                "payment_status": "success",
            }
        )
    return json.dumps(payments).encode()


async def _serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    stats: Stats,
    latency: float,
    paid_every: int,
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            stats.requests += 1
            stats.in_flight += 1
            stats.in_flight_peak = max(stats.in_flight_peak, stats.in_flight)
            try:
                await asyncio.sleep(latency)
            finally:
                stats.in_flight -= 1
            reply = _reply(body, paid_every)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(reply)).encode()
                + b"\r\n\r\n"
                + reply
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def _main(args: argparse.Namespace) -> None:
    stats = Stats()
    server = await asyncio.start_server(
        lambda r, w: _serve(r, w, stats, args.latency, args.paid_every),
        "127.0.0.1",
        args.port,
        backlog=1024,
    )
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command = line.strip()
        if command == "stats":
            print(
                json.dumps({"requests": stats.requests, "in_flight_peak": stats.in_flight_peak}),
                flush=True,
            )
        elif command == "quit" or not line:
            break
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--paid-every", type=int, default=10)
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
