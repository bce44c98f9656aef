"""The transport of :class:`~django_etpay.client.EtpayClient`: requests' adapter, whose
connections keep the total deadline of the call in progress and an idle limit.

The client sets :data:`current_call` for the duration of a call. Every socket read of the
reply, status line and headers included, then waits at most the read timeout or the time left,
whichever is shorter, and a read with no time left fails as a read timeout. requests' own
timeouts bound each read, not the call: a server that drips a byte at a time would otherwise
hold a call open indefinitely. No thread is involved.

No private method is overridden. The hooks are class attributes: ``pool_classes_by_scheme``
of urllib3's pool managers, ``ConnectionCls`` of its pools, and ``response_class`` of
http.client's connections, which CPython calls an implementation detail (it has built every
response since Python 2). Should a release stop using it, replies would be read without the
deadline, and the dripping-server tests in tests/test_client.py fail.
"""

from __future__ import annotations

import contextvars
import http.client
import io
import os
import socket
import threading
import time
import weakref
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager


@dataclass(frozen=True)
class CallLimits:
    """What the connections of one call keep to."""

    deadline: float  # a time.monotonic() value
    read_timeout: float
    keepalive_idle: float

    def left(self) -> float:
        return self.deadline - time.monotonic()


#: The limits of the call in progress, set by ``EtpayClient._post``. requests sends in the
#: caller's thread, so the connection classes below find their own call's limits here.
current_call: contextvars.ContextVar[CallLimits | None] = contextvars.ContextVar(
    "django_etpay_call", default=None
)


class _ReadsWithinDeadline(io.RawIOBase):
    """The socket reads of one reply, each waiting at most ``min(read timeout, time left)``.

    A read with no time left raises ``TimeoutError`` like a timed-out socket read, so urllib3
    and requests report it as a read timeout. A check between the body chunks the client reads
    would not do: http.client reads the status line and headers before requests returns the
    response, and each 8 KiB chunk of the body waits until it is full, a byte at a time if the
    server drips.
    """

    def __init__(self, sock: socket.socket, limits: CallLimits) -> None:
        super().__init__()
        self._sock = sock
        self._limits = limits
        # The socket's own file, which keeps a close-delimited reply readable after the
        # connection has let go of the socket.
        self._file = sock.makefile("rb", buffering=0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._limits.left()
        if left <= 0:
            raise TimeoutError("the total deadline of the call has passed")
        self._sock.settimeout(min(self._limits.read_timeout, left))
        return self._file.readinto(buffer)

    def close(self) -> None:
        self._file.close()
        super().close()


@dataclass(frozen=True)
class _SocketForReply:
    """What :class:`_ReplyWithinDeadline` gives http.client in place of the socket."""

    sock: socket.socket
    limits: CallLimits

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_ReadsWithinDeadline(self.sock, self.limits))


class _ReplyWithinDeadline(http.client.HTTPResponse):
    """http.client's response, reading its socket through :class:`_ReadsWithinDeadline`."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        limits = current_call.get()
        if limits is not None:
            # HTTPResponse uses its socket for one thing: makefile("rb").
            sock = _SocketForReply(sock, limits)  # type: ignore[assignment]
        super().__init__(sock, *args, **kwargs)


#: Every connection this process opened to ETpay, so that a forked child can close its copies.
_open_connections: weakref.WeakSet[HTTPConnection] = weakref.WeakSet()
_open_connections_lock = threading.Lock()


class _ConnectionMixin:
    """Replies read within the deadline; too long idle counts as closed; tracked for fork.

    urllib3 asks :attr:`is_connected` before reusing a pooled connection and opens a new one
    when the server has closed it, so nothing is sent twice. It cannot see a server closing
    the connection just as the request is being written, which leaves the outcome unknown.
    Servers close idle connections after a few seconds (5 s is common) and ETpay does not
    publish its limit: a connection whose last request started more than ``KEEPALIVE_IDLE``
    seconds ago is reported closed instead.
    """

    response_class: type[http.client.HTTPResponse] = _ReplyWithinDeadline
    _last_request: float | None = None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        with _open_connections_lock:
            _open_connections.add(self)  # type: ignore[arg-type]

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._last_request = time.monotonic()
        super().request(*args, **kwargs)  # type: ignore[misc]

    @property
    def is_connected(self) -> bool:
        limits, last = current_call.get(), self._last_request
        if limits and last is not None and time.monotonic() - last > limits.keepalive_idle:
            return False
        return bool(super().is_connected)  # type: ignore[misc]


class _Connection(_ConnectionMixin, HTTPConnection):
    pass


class _TLSConnection(_ConnectionMixin, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


_POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {"http": _Pool, "https": _TLSPool}


class EtpayAdapter(HTTPAdapter):
    """requests' adapter with pools of our connections, through an HTTP(S) proxy too.

    A SOCKS proxy keeps its own connection classes (without them the call would bypass the
    proxy). Through one, the deadline is checked only between body chunks of 8 KiB, so a
    reply dripped through a SOCKS proxy is cut late.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, ProxyManager):
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


def _after_fork_in_child() -> None:
    """Close the child's copies of the parent's sockets.

    ``detach`` then ``os.close``: no ``shutdown()``, no TLS alert, so the parent's connections
    carry on unharmed, and the server sees them close when the parent closes them.
    """
    global _open_connections_lock
    _open_connections_lock = threading.Lock()
    for connection in list(_open_connections):
        sock, connection.sock = connection.sock, None
        if sock is not None:
            with suppress(OSError, AttributeError):  # AttributeError: TLS inside a TLS proxy
                os.close(sock.detach())
    _open_connections.clear()


if hasattr(os, "register_at_fork"):  # POSIX only; Windows has no fork()
    os.register_at_fork(after_in_child=_after_fork_in_child)
