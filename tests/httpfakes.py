"""Small real HTTP servers on 127.0.0.1, for transport-level tests of the ETpay client.

``responses`` fakes HTTP above the socket, so it cannot show what happens when a server never
answers, drips bytes, sends too much or drops the connection. These servers do, on an ephemeral
port, one thread per connection. Each behaviour is a plain function that receives the accepted
socket and the server; the server counts connections and requests, and :meth:`RawServer.stop`
wakes every handler and joins every thread.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

Handler = Callable[[socket.socket, "RawServer"], None]


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class RawServer:
    """A TCP server on 127.0.0.1 that hands each connection to ``handler`` in its own thread."""

    def __init__(self, handler: Handler, *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.stopping = threading.Event()
        self.connections = 0
        #: Connections whose handler has returned and whose socket this server has closed.
        self.closed = 0
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self._closed_changed = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> RawServer:
        self._acceptor.start()
        return self

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self.connections += 1
                self._sockets.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.handler(conn, self)
        except OSError:
            pass  # the client went away (or refused our certificate): tests provoke both
        finally:
            conn.close()
            with self._lock:
                self.closed += 1
                self._closed_changed.notify_all()

    def wait_closed(self, count: int, timeout: float = 5) -> bool:
        """Wait until ``count`` connections have ended (either side closed); False on timeout."""
        with self._lock:
            return self._closed_changed.wait_for(lambda: self.closed >= count, timeout)

    def record(self, request: bytes) -> None:
        with self._lock:
            self.requests.append(request)

    def stop(self) -> None:
        self.stopping.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for conn in sockets:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)


def read_request(conn: socket.socket, server: RawServer) -> bytes | None:
    """Read one HTTP request (head and ``Content-Length`` body); ``None`` at end of stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    request = head + b"\r\n\r\n" + body
    server.record(request)
    return request


def http_response(
    body: bytes, *, status: str = "200 OK", extra_headers: dict[str, str] | None = None
) -> bytes:
    """A complete HTTP/1.1 response with ``Content-Length``."""
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    headers.update(extra_headers or {})
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


def json_server(payload: Any) -> Handler:
    """Answers every request on a keep-alive connection with ``payload`` as JSON."""
    body = json.dumps(payload).encode()

    def handler(conn: socket.socket, server: RawServer) -> None:
        while read_request(conn, server) is not None:
            conn.sendall(http_response(body))

    return handler


def request_json(request: bytes) -> Any:
    """The decoded JSON body of a request read by :func:`read_request`."""
    return json.loads(request.partition(b"\r\n\r\n")[2])


def echo_order(conn: socket.socket, server: RawServer) -> None:
    """Keep-alive; answers each session/initialize with tokens made of its merchant_order_id,
    so that concurrent callers can tell their own reply from another's."""
    while (request := read_request(conn, server)) is not None:
        order = request_json(request)["merchant_order_id"]
        reply = {"token": f"tok-{order}", "signature_token": f"sig-{order}"}
        conn.sendall(http_response(json.dumps(reply).encode()))


def silent(conn: socket.socket, server: RawServer) -> None:
    """Reads the request and never answers (until the server stops)."""
    read_request(conn, server)
    server.stopping.wait()


def hang_up(conn: socket.socket, server: RawServer) -> None:
    """Reads the request and closes the connection without a byte of reply."""
    read_request(conn, server)


def drip(interval: float, *, in_body: bool, declared: bool = True) -> Handler:
    """Sends a 60-byte reply one byte every ``interval`` seconds.

    With ``in_body`` the status line and headers arrive at once and the body drips, with a
    ``Content-Length`` when ``declared``, else until the connection closes; otherwise the
    status line itself drips.
    """
    body = b'{"token": "' + b"x" * 47 + b'"}'

    def handler(conn: socket.socket, server: RawServer) -> None:
        read_request(conn, server)
        if in_body:
            length = f"Content-Length: {len(body)}" if declared else "Connection: close"
            conn.sendall(
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}\r\n\r\n".encode()
            )
            payload = body
        else:
            payload = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 35
        for byte in payload:
            if server.stopping.wait(interval):
                return
            conn.sendall(bytes([byte]))

    return handler


def headers_then_stall(conn: socket.socket, server: RawServer) -> None:
    """Sends the status line and headers, then no body (until the server stops)."""
    read_request(conn, server)
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{"
    )
    server.stopping.wait()


def oversized(size: int, *, declared: bool) -> Handler:
    """Answers with a JSON-looking body of ``size`` bytes, with or without ``Content-Length``."""

    def handler(conn: socket.socket, server: RawServer) -> None:
        read_request(conn, server)
        body = b'{"token": "' + b"x" * max(size - 12, 0) + b'"}'
        if declared:
            conn.sendall(http_response(body))
            return
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
        )
        for start in range(0, len(body), 65536):
            if server.stopping.is_set():
                return
            conn.sendall(body[start : start + 65536])

    return handler


class FullBacklog:
    """A listener whose accept queue is full, so that new connections cannot open.

    Linux drops the SYN of a connection to a listener whose queue is full, so the client's
    connect times out: a loopback stand-in for an unreachable host.
    """

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._filler.close()
        self._listener.close()


class Servers:
    """Starts servers for one test and stops every one of them at its end (see the fixtures)."""

    def __init__(self) -> None:
        self._started: list[RawServer | FullBacklog] = []

    def start(self, handler: Handler, *, tls: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(handler, tls=tls).start()
        self._started.append(server)
        return server

    def full_backlog(self) -> FullBacklog:
        listener = FullBacklog()
        self._started.append(listener)
        return listener

    def stop_all(self) -> None:
        for server in self._started:
            server.stop()


class ServedProcess:
    """A server process started by :func:`serving`; ``output`` is filled when it has stopped."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.output = ""


@contextlib.contextmanager
def serving(
    args: list[str],
    *,
    port: int,
    env: dict[str, str],
    cwd: str | None = None,
    probe: str = "/assets/funnel.css",
    startup_seconds: float = 30,
) -> Iterator[ServedProcess]:
    """Run ``args`` (a server listening on 127.0.0.1:``port``) until the block ends.

    Waits until ``probe`` answers (failing the test if the process exits or the deadline
    passes), then terminates the process and keeps its combined output on the result.
    """
    import subprocess
    import time

    import pytest
    import requests

    process = subprocess.Popen(  # noqa: S603 - argv built by the tests themselves
        args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    served = ServedProcess(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            try:
                requests.get(f"{served.base}{probe}", timeout=5)
                break
            # A server still starting on a busy machine may accept and answer late.
            except (requests.ConnectionError, requests.Timeout):
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    output, _ = process.communicate(timeout=10)
                    pytest.fail(f"{' '.join(args[1:4])} did not start:\n{output}")
                time.sleep(0.1)
        yield served
    finally:
        if process.poll() is None:
            process.terminate()
        served.output, _ = process.communicate(timeout=10)


def sent_json(mock: Any, index: int = 0) -> dict[str, Any]:
    """The JSON body of the ``index``-th request a ``responses`` mock of ETpay received."""
    body = mock.calls[index].request.body
    assert body is not None
    decoded: dict[str, Any] = json.loads(body)
    return decoded


class StatusApiServer:
    """ETpay's ``/merchant/check_payment_status`` on 127.0.0.1, in a thread.

    ``answers`` maps a session token to the list of payments to report (``[]`` when absent);
    ``calls`` counts the questions. For the worker test and the reconcile benchmark.
    """

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.answers: dict[str, list[dict[str, Any]]] = {}
        self.calls = 0
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with api._lock:
                    api.calls += 1
                reply = json.dumps(api.answers.get(body.get("session_token", ""), [])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The ``API_URL`` to configure."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
