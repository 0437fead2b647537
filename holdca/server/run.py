"""Run the reference app under uvicorn with limits a server on the open internet needs.

uvicorn's defaults keep a connection open for as long as a client keeps it half-sent:
a request whose headers arrive one byte at a time, or a body that stalls, holds a
connection forever. :class:`ServerLimits` sets, and :func:`serve` applies:

================================  ======================================================
``max_connections``               uvicorn ``limit_concurrency``: beyond it, 503 at once
``backlog``                       the listen backlog
``keep_alive``                    uvicorn ``timeout_keep_alive``: idle keep-alive close
``header_timeout``                a connection that has not sent a complete request head
                                  (request line and headers) this long after it opened,
                                  or after its previous response, is closed
``max_header_bytes``              h11 ``max_incomplete_event_size``: a larger head is 400
``graceful_shutdown``             uvicorn ``timeout_graceful_shutdown``
================================  ======================================================

The body deadline (408) is the app's (:func:`holdca.server.limits.read_body`).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ServerLimits", "serve", "uvicorn_config"]


@dataclass(frozen=True)
class ServerLimits:
    """Connection limits for :func:`serve` (see the module docstring)."""

    max_connections: int = 512
    backlog: int = 1024
    keep_alive: float = 5.0
    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024
    graceful_shutdown: float = 10.0

    def __post_init__(self) -> None:
        if min(self.max_connections, self.backlog, self.max_header_bytes) < 1:
            raise ValueError("connection and size limits must be positive")
        if min(self.keep_alive, self.header_timeout, self.graceful_shutdown) <= 0:
            raise ValueError("timeouts must be positive")


class HeadDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections that do not send a request head in time.

    uvicorn has no such timeout (its keep-alive timer is cancelled by every byte
    received). This relies on three attributes of uvicorn's ``H11Protocol``: ``loop``,
    ``transport`` and ``conn`` (the h11 connection); tests/hold/test_server_limits.py
    fails if they change.
    """

    head_timeout: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the head deadline with the connection."""
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        """Stop the deadline once a request head has arrived."""
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def on_response_complete(self) -> None:
        """Restart the deadline for the next request on a kept-alive connection."""
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()

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
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
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
        "HoldHTTPProtocol", (HeadDeadlineH11Protocol,), {"head_timeout": limits.header_timeout}
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        limit_concurrency=limits.max_connections,
        backlog=limits.backlog,
        timeout_keep_alive=int(max(1, limits.keep_alive)),
        timeout_graceful_shutdown=int(max(1, limits.graceful_shutdown)),
        h11_max_incomplete_event_size=limits.max_header_bytes,
        server_header=False,
        date_header=True,
        lifespan="off",
        **extra,
    )


def serve(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    limits: ServerLimits | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Run ``app`` until interrupted, with ``limits`` (see the module docstring)."""
    config = uvicorn_config(app, host=host, port=port, limits=limits, log_level="warning")
    server = uvicorn.Server(config)
    server.run(sockets=[sock] if sock is not None else None)
