"""A throw-away Redis server for the RQ tests, started by the tests themselves.

Debian's ``redis-server`` (``apt-get install redis-server``), listening only on a unix socket in
a temporary directory (no TCP port, nothing written to disk), stopped and deleted when the
block ends. Like ``tests/postgres.py``, it needs nothing running beforehand.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.subprocesses import stop, wait_until

#: The binary; the CI entry point (.ci/run) installs it.
REDIS_SERVER = "redis-server"


def _answers(path: Path) -> bool:
    """Whether a Redis server answers PING on the unix socket ``path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[Path]:
    """Run a Redis server until the block ends; yields the path of its unix socket."""
    binary = shutil.which(REDIS_SERVER)
    if binary is None:
        raise RuntimeError("The RQ tests need Redis: apt-get install redis-server")
    folder = Path(tempfile.mkdtemp(prefix="etpay-redis-"))
    path = folder / "redis.sock"
    process = subprocess.Popen(  # noqa: S603 - a fixed argv
        [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(folder),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: process.poll() is not None or _answers(path), "redis-server to start", 30
        )
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with status {process.returncode}")
        yield path
    finally:
        stop(process)
        shutil.rmtree(folder, ignore_errors=True)
