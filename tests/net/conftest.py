"""Fixtures for the holdca.net tests: a network guard, local listeners, injectable resolvers.

Network rule: these tests talk to 127.0.0.1 only. The autouse :func:`net_guard` records every
``connect`` and every ``getaddrinfo`` of the process and refuses (without sending anything)
any connection to another address and any lookup of a name, so a policy bug cannot send
traffic off the machine, and a test can assert that no connection was even attempted.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"

Respond = Callable[[socket.socket, bytes], bytes | None]


@dataclass
class NetGuard:
    """What the process tried: ``connects`` (host, port) and ``lookups`` (names)."""

    connects: list[tuple[str, int]] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)

    def non_loopback(self) -> list[tuple[str, int]]:
        return [c for c in self.connects if c[0] != "127.0.0.1"]


def _is_ip(text: Any) -> bool:
    try:
        ipaddress.ip_address(str(text).partition("%")[0])
    except ValueError:
        return False
    return True


@pytest.fixture(autouse=True)
def net_guard(monkeypatch: pytest.MonkeyPatch) -> NetGuard:
    """Record every connect/lookup; refuse anything but 127.0.0.1 and IP-literal lookups."""
    guard = NetGuard()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address: Any) -> None:
        if isinstance(address, tuple):
            guard.connects.append((str(address[0]), int(address[1])))
            if address[0] != "127.0.0.1":
                raise ConnectionRefusedError("net_guard: only 127.0.0.1 may be contacted")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_ip(host):
            guard.lookups.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, "net_guard: no DNS in tests")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return guard


class Resolver:
    """An injectable ``resolve(host, port)``: a fixed map (or a function), recording calls."""

    def __init__(
        self,
        answers: dict[str, Sequence[str]] | None = None,
        *,
        answer: Callable[[str, int, int], Sequence[str]] | None = None,
    ) -> None:
        self.answers = answers or {}
        self.answer = answer
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def __call__(self, host: str, port: int) -> Sequence[str]:
        with self._lock:
            self.calls.append((host, port))
            n = len(self.calls)
        if self.answer is not None:
            return self.answer(host, port, n)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "unknown test name")
        return self.answers[host]


def read_head(conn: socket.socket) -> bytes:
    """Read one request head (up to the blank line); b"" on EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data


class Listener:
    """A TCP server on 127.0.0.1 that records accepted connections and request heads.

    ``respond(conn, head)`` returns the bytes to send (the connection stays open for the
    next request unless they contain ``Connection: close``), or sends by itself and returns
    ``None`` (the connection is then closed). ``tls`` wraps accepted connections;
    ``greeting`` is sent as soon as a connection is accepted.
    """

    def __init__(
        self,
        respond: Respond | bytes = OK,
        *,
        tls: ssl.SSLContext | None = None,
        greeting: bytes | None = None,
    ) -> None:
        self.respond: Respond = (lambda _c, _h: respond) if isinstance(respond, bytes) else respond
        self.tls = tls
        self.greeting = greeting
        self.accepted = 0
        self.heads: list[bytes] = []
        self.tls_errors = 0
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            if self.greeting is not None:
                conn.sendall(self.greeting)
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    with self._lock:
                        self.tls_errors += 1
                    return
            while True:
                head = read_head(conn)
                if not head:
                    return
                with self._lock:
                    self.heads.append(head)
                reply = self.respond(conn, head)
                if reply is None:
                    return
                conn.sendall(reply)
                if b"connection: close" in reply.lower():
                    return
        except OSError:
            return
        finally:
            conn.close()

    def header(self, index: int, name: str) -> str | None:
        """Header ``name`` of request ``index`` (case-insensitive), or None."""
        for line in self.heads[index].decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def close(self) -> None:
        self._closed = True
        self._sock.close()


@pytest.fixture
def listen() -> Iterator[Callable[..., Listener]]:
    """Factory of :class:`Listener` objects, all closed at teardown."""
    made: list[Listener] = []

    def make(respond: Respond | bytes = OK, **kwargs: Any) -> Listener:
        listener = Listener(respond, **kwargs)
        made.append(listener)
        return listener

    yield make
    for listener in made:
        listener.close()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def drip(head: bytes, body_size: int, interval: float = 0.2) -> Respond:
    """A responder that sends ``head`` then one body byte every ``interval`` seconds."""

    def respond(conn: socket.socket, _head: bytes) -> None:
        conn.sendall(head)
        for _ in range(body_size):
            time.sleep(interval)
            conn.sendall(b"x")

    return respond
