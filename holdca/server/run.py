"""Run the reference app under uvicorn with limits a server on the open internet needs.

uvicorn's defaults keep a connection open for as long as a client keeps it half-sent:
a request whose headers arrive one byte at a time, or a body that stalls, holds a
connection forever. :class:`ServerLimits` sets, and :func:`serve` applies:

================================  ======================================================
``max_connections``               open connections served at once (uvicorn
                                  ``limit_concurrency``): beyond it, 503 at once
``backlog``                       the listen backlog
``keep_alive``                    uvicorn ``timeout_keep_alive``: idle keep-alive close
``header_timeout``                a connection that has not sent a complete request head
                                  (request line and headers) this long after it opened,
                                  or after its previous response, is closed (also while
                                  it is still sending the body of an answered request)
``max_header_bytes``              a larger request head is 400 (h11
                                  ``max_incomplete_event_size`` for a head arriving in
                                  pieces, checked here for one arriving whole)
``graceful_shutdown``             uvicorn ``timeout_graceful_shutdown``
================================  ======================================================

The body deadline (408) is the app's (:func:`holdca.server.limits.read_body`).

:func:`serve` binds its listening socket with :func:`listen_socket` before uvicorn starts,
so a port that is out of range or already in use, or a host that does not resolve, is a
:class:`~holdca.errors.ConfigError` naming the address (uvicorn would log and exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from holdca.errors import ConfigError

__all__ = ["MAX_PORT", "ServerLimits", "listen_socket", "serve", "uvicorn_config"]

MAX_PORT = 65535
"""The highest TCP port."""


@dataclass(frozen=True)
class ServerLimits:
    """Connection limits for :func:`serve` (see the module docstring)."""

    max_connections: int = 512
    backlog: int = 1024
    keep_alive: int = 5
    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024
    graceful_shutdown: int = 10

    def __post_init__(self) -> None:
        if min(self.max_connections, self.backlog, self.max_header_bytes) < 1:
            raise ValueError("connection and size limits must be positive")
        if min(self.keep_alive, self.header_timeout, self.graceful_shutdown) <= 0:
            raise ValueError("timeouts must be positive")


_Event = h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]


def _head_size(request: h11.Request) -> int:
    """The size of ``request``'s head as sent, give or take whitespace around values."""
    line = len(request.method) + len(request.target) + len(b" HTTP/1.1\r\n") + 1
    return line + sum(len(name) + len(value) + 4 for name, value in request.headers) + 2


class _HeadLimitedConnection(h11.Connection):
    """An h11 server connection that refuses request heads over ``max_head`` bytes.

    h11's ``max_incomplete_event_size`` only bounds a head that is still incomplete in
    its buffer: one that arrives whole in a single read (up to asyncio's 256 KiB) passed.
    """

    def __init__(self, max_head: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head)
        self._max_head = max_head

    def next_event(self) -> _Event:
        """h11's next event; raises RemoteProtocolError (uvicorn answers 400) for a big head."""
        event = super().next_event()
        if isinstance(event, h11.Request) and _head_size(event) > self._max_head:
            raise h11.RemoteProtocolError(
                f"request head over {self._max_head} bytes", error_status_hint=431
            )
        return event


class HeadDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections that do not send a request head in time.

    uvicorn has no such timeout (its keep-alive timer is cancelled by every byte
    received). The deadline runs whenever no request is being answered: from the
    connection's start, and from each response until the next head has arrived, which
    includes the time a client takes to send the rest of a body the app answered without
    reading (uvicorn reads and drops it to reuse the connection; a drip would hold it for
    ever). Request heads over ``max_head_bytes`` are refused (400) even when they arrive
    whole.

    This relies on three attributes of uvicorn's ``H11Protocol``: ``loop``,
    ``transport`` and ``conn`` (the h11 connection, replaced here by one that checks head
    sizes); tests/hold/test_server_limits.py fails if they change.
    """

    head_timeout: float = 10.0
    max_head_bytes: int = 64 * 1024
    _head_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """uvicorn's protocol, with an h11 connection that bounds whole request heads."""
        super().__init__(*args, **kwargs)
        self.conn = _HeadLimitedConnection(self.max_head_bytes)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the head deadline with the connection; turn Nagle off.

        asyncio disables Nagle only for sockets it knows are TCP (created with the TCP
        protocol number); a listening socket made with ``socket.socket()`` and handed to
        :func:`serve` is not, and uvicorn's separate head and body writes then wait for
        delayed ACKs (about 40 ms a response).
        """
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._arm()

    def handle_events(self) -> None:
        """Stop the deadline once a request head has arrived."""
        super().handle_events()
        if not self._between_requests():
            self._disarm()

    def on_response_complete(self) -> None:
        """Restart the deadline for the next request on a kept-alive connection."""
        super().on_response_complete()
        if not self.transport.is_closing() and self._between_requests():
            self._arm()

    def _between_requests(self) -> bool:
        """No request is being answered: a head is awaited, or the rest of an answered
        request's body (our side is DONE while theirs still sends)."""
        return self.conn.their_state is h11.IDLE or self.conn.our_state is h11.DONE

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout, self._expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expired(self) -> None:
        self._head_timer = None
        if self._between_requests() and not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    limits: ServerLimits | None = None,
    **extra: Any,
) -> uvicorn.Config:
    """The uvicorn configuration :func:`serve` runs (tests start servers from it)."""
    limits = limits or ServerLimits()
    protocol = type(
        "HoldHTTPProtocol",
        (HeadDeadlineH11Protocol,),
        {"head_timeout": limits.header_timeout, "max_head_bytes": limits.max_header_bytes},
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        # uvicorn answers 503 once the open connections, counting the one asking, reach
        # limit_concurrency: one more serves max_connections connections at once
        limit_concurrency=limits.max_connections + 1,
        backlog=limits.backlog,
        timeout_keep_alive=limits.keep_alive,
        timeout_graceful_shutdown=limits.graceful_shutdown,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        server_header=False,
        date_header=True,
        lifespan="off",
        **extra,
    )


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (not yet listening), as uvicorn binds one.

    ``port`` 0 lets the system choose. ``SO_REUSEADDR`` is set (a restart need not wait
    for old connections to time out); an IPv6 host may be given bare or in brackets.

    Raises:
        ConfigError: the port is not 0 to :data:`MAX_PORT`, the host does not resolve,
            or the address cannot be bound (already in use, not this machine's,
            a privileged port); the message names the address and the reason.
    """
    if isinstance(port, bool) or not 0 <= port <= MAX_PORT:
        raise ConfigError(f"port: must be 0 to {MAX_PORT}, got {port!r}")
    name = host.removeprefix("[").removesuffix("]")
    shown = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"cannot listen on {shown}: host does not resolve ({reason})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use (is another server running?)"
        raise ConfigError(f"cannot listen on {shown}: {reason}") from None
    return sock


def serve(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    limits: ServerLimits | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Run ``app`` until interrupted, with ``limits`` (see the module docstring).

    ``sock``: a socket already bound (:func:`listen_socket`); else ``host``:``port`` is.

    Raises:
        ConfigError: ``host``:``port`` cannot be bound (see :func:`listen_socket`).
    """
    if sock is None:
        sock = listen_socket(host, port)
    config = uvicorn_config(app, host=host, port=port, limits=limits, log_level="warning")
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
