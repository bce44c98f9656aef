"""A hostile or broken ETpay for the attack runner: a real HTTP server on 127.0.0.1 that answers
``/session/initialize`` the way a compromised or failing ETpay would, chosen by the
``merchant_order_id`` the shop sends (``REPLY-<behaviour>-...``).

It runs in a thread of the attack runner (``python -m tests.attack``), where gunicorn's worker
processes reach it over the network, and remembers every signature token it handed out, so
that the secret search knows what to look for.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Behaviours, by the word after ``REPLY-`` in the order id.
BEHAVIOURS = (
    "nul-token",
    "surrogate-key",
    "nul-key",
    "long-key",
    "not-json",
    "5xx",
    "no-key",
    "key-number",
    "dup-token",
    "array",
)

#: The token every ``dup-token`` reply reuses, so the second one collides with the first.
DUPLICATE_TOKEN = "sess-attack-duplicate-token-0000000000000000"


class HostileEtpayServer:
    """A threaded HTTP server answering ``/session/initialize`` and the status query.

    Not :class:`django_etpay.testing.FakeEtpay`: that fake answers in memory, inside the
    process that installed it, and only the way ETpay does. The attack runner's app runs in
    other processes (gunicorn's workers), which only a socket reaches, and the replies under
    test are the ones ETpay should never send: NUL bytes and lone surrogates in tokens, keys
    that are numbers or 300 characters long, a token handed out twice, an array for an object.
    """

    def __init__(self) -> None:
        self.issued_keys: list[str] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {}
                if self.path.endswith("/merchant/check_payment_status"):
                    self._send(200, b"[]")
                    return
                status, payload = fake.reply(body if isinstance(body, dict) else {})
                self._send(status, payload)

            def _send(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> HostileEtpayServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _key(self, key: str) -> str:
        with self._lock:
            self.issued_keys.append(key)
        return key

    def reply(self, body: dict[str, Any]) -> tuple[int, bytes]:
        order = str(body.get("merchant_order_id", ""))
        behaviour = order[len("REPLY-") :].split("~", 1)[0] if order.startswith("REPLY-") else ""
        token = f"sess-{secrets.token_hex(20)}"
        key = self._key(f"sig-{secrets.token_hex(32)}")
        reply: Any = {"token": token, "signature_token": key, "terms_url": "https://etpay.test/t"}
        if behaviour == "nul-token":
            reply["token"] = token + "\x00"
        elif behaviour == "surrogate-key":
            reply["signature_token"] = self._key(key + "\ud800")
        elif behaviour == "nul-key":
            reply["signature_token"] = self._key(key + "\x00x")
        elif behaviour == "long-key":
            reply["signature_token"] = self._key("k" * 300 + key)
        elif behaviour == "not-json":
            return 200, b"<html>maintenance</html>"
        elif behaviour == "5xx":
            return 503, b'{"message": "down for maintenance"}'
        elif behaviour == "no-key":
            del reply["signature_token"]
        elif behaviour == "key-number":
            reply["signature_token"] = 12345
        elif behaviour == "dup-token":
            reply["token"] = DUPLICATE_TOKEN
        elif behaviour == "array":
            reply = [reply]
        return 200, json.dumps(reply).encode()
