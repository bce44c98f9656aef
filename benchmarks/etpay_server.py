"""A minimal stand-in for ETpay's API: HTTP/1.1 with keep-alive, over TLS, on loopback.

    python -m benchmarks.etpay_server --cert server.pem --key server.key [--port 0]

It answers every ``POST`` with a JSON object carrying a ``token`` and ``signature_token``
unique to the request (the ``token`` column is unique), keeps connections open until the
client closes them, and does nothing else, so that what a benchmark measures is the client.
It runs in its own process so that it does not compete with the client for the GIL.

On start it prints one line, ``{"port": N}``. Each line read on stdin is a command:
``stats`` prints ``{"connections": C, "requests": R, "tls": "TLSv1.3"}`` (connections
accepted and requests answered so far); ``quit`` stops the server.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import secrets
import socket
import ssl
import sys
import threading

_HEAD_END = b"\r\n\r\n"


class Counters:
    def __init__(self) -> None:
        self.connections = itertools.count(1)
        # Numbers for unique tokens (next() on a count is atomic under the GIL).
        self.requests = itertools.count(1)
        self.accepted = 0
        self.answered = 0
        self.tls_version = ""
        self.lock = threading.Lock()


def _serve(conn: ssl.SSLSocket, counters: Counters, prefix: str) -> None:
    buffer = b""
    with conn:
        while True:
            while _HEAD_END not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(_HEAD_END)
            length = 0
            keep_alive = True
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    keep_alive = False
            while len(buffer) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            buffer = buffer[length:]
            number = next(counters.requests)
            with counters.lock:
                counters.answered += 1
            body = (
                f'{{"token":"{prefix}-{number}","signature_token":"sig-{prefix}-{number}-'
                f'0123456789abcdef0123456789abcdef0123456789abcdef",'
                f'"terms_url":"https://etpay.test/terms"}}'
            ).encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + (b"\r\n\r\n" if keep_alive else b"\r\nConnection: close\r\n\r\n")
                + body
            )
            if not keep_alive:
                return


def _accept_loop(listener: socket.socket, context: ssl.SSLContext, counters: Counters) -> None:
    # A prefix per server run keeps tokens unique across runs on the same database.
    prefix = f"bench-{os.getpid()}-{secrets.token_hex(4)}"
    while True:
        try:
            raw, _ = listener.accept()
        except OSError:
            return
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        counters.accepted = next(counters.connections)

        def handle(raw: socket.socket = raw) -> None:
            try:
                conn = context.wrap_socket(raw, server_side=True)
            except OSError:
                raw.close()
                return
            counters.tls_version = conn.version() or ""
            with contextlib.suppress(OSError):  # the client went away
                _serve(conn, counters, prefix)

        threading.Thread(target=handle, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(512)
    counters = Counters()
    threading.Thread(target=_accept_loop, args=(listener, context, counters), daemon=True).start()
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            stats = {
                "connections": counters.accepted,
                "requests": counters.answered,
                "tls": counters.tls_version,
            }
            print(json.dumps(stats), flush=True)
        elif command == "quit":
            break
    listener.close()


if __name__ == "__main__":
    main()
