"""An HTTP GET client that enforces the hold's :class:`~holdca.net.policy.AddressPolicy`.

:class:`Fetcher` speaks HTTP/1.1 through h11 (the parser httpcore uses) over a small pool of
its own, whose connections come from :class:`~holdca.net._backend.PolicyBackend`:

* the URL is checked by :meth:`AddressPolicy.check_url` first (scheme, userinfo, host syntax,
  IP literals, plain http), and that check's :class:`~holdca.net.policy.CheckedURL` is the
  only parse of the URL: the connection's scheme, host and port, the ``Host`` header and the
  request target all come from it (no second URL parser that could read the text
  differently from the policy);
* every new connection resolves the host through :meth:`AddressPolicy.addresses` and goes to
  one of the addresses it accepted (no second resolution, no rebinding window); TLS
  verifies the certificate against the URL's host name;
* one deadline (``timeout`` seconds) covers the wait for a pooled connection, DNS, connect,
  TLS, the request and the whole body;
* redirects are not followed (a 3xx raises, and its target is never contacted), the
  environment is not consulted (no proxies, netrc or ``SSL_CERT_FILE``: nothing here reads
  it), no cookies are stored or sent (there is no cookie jar), ``Accept-Encoding: identity``
  is sent and any other content coding refused;
* bodies are streamed and cut at the limit; response heads are limited to 100 KiB (h11);
* a connection serves one request at a time and is pooled (kept alive 5 s) only when both
  sides finished the exchange cleanly; the pool is keyed by scheme, host, port and whether
  the fetch was limited to allowed addresses (plain http by a name), so a connection opened
  under a looser rule never serves a stricter fetch;
* a GET whose connection was closed locally under it (see
  :class:`~holdca.net._backend.ClosedUnderUse`) is retried once, within the deadline.

Errors are typed and short: :class:`~holdca.errors.AddressRefusedError` for the policy,
:class:`~holdca.errors.ResolutionError` for everything else (network, timeout, redirect, size,
TLS). The class is thread-safe; connections are pooled and reused.
"""

from __future__ import annotations

import contextlib
import re
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final, cast
from urllib.parse import quote_plus

import certifi
import h11
import httpcore

from holdca import __version__
from holdca.errors import ResolutionError
from holdca.net._backend import ClosedUnderUse, PolicyBackend, TLSFailure, deadline, time_left
from holdca.net.policy import AddressPolicy, CheckedURL

__all__ = ["ERROR_BODY_LIMIT", "FetchResponse", "Fetcher"]

ERROR_BODY_LIMIT: Final = 4096
"""Bytes of a non-2xx body kept (enough for an XRPC error; the rest is not read)."""

_MAX_SHOWN = 100
_KEEPALIVE: Final = 5.0  # seconds an idle connection is kept for reuse
_READ_SIZE: Final = 64 * 1024
_MAX_HEAD: Final = 100 * 1024  # response head (status line and headers), as httpcore
_SWEEP_EVERY: Final = 1.0
_UNRESERVED: Final = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote_plus leaves alone
_ROUTES: Final = 256  # checked URLs remembered per Fetcher ...
_ROUTE_URL_LENGTH: Final = 2048  # ... if no longer than this

_Key = tuple[str, str, int, bool]  # scheme, host, port, allowed_only


def _shown(url: str) -> str:
    return url if len(url) <= _MAX_SHOWN else url[:_MAX_SHOWN] + "..."


@dataclass(frozen=True)
class FetchResponse:
    """A response the hold received.

    Attributes:
        status: HTTP status (2xx, or 4xx/5xx: the caller decides; 3xx is never returned).
        content_type: the ``Content-Type`` header, if any.
        body: the whole body for 2xx (at most the ``limit`` passed to :meth:`Fetcher.get`);
            for other statuses its first ``min(limit, ERROR_BODY_LIMIT)`` bytes.
        url: the URL fetched (normalised, with the query parameters).
    """

    status: int
    content_type: str | None
    body: bytes
    url: str


def _ssl_context(verify: bool) -> ssl.SSLContext:
    """certifi's CA bundle (nothing from the environment), or no verification at all."""
    if verify:
        return ssl.create_default_context(cafile=certifi.where())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _remove_dot_segments(path: str) -> str:
    """Drop ``.`` and ``..`` segments from a path (RFC 3986 5.2.4, as httpx did)."""
    segments = path.split("/")
    if "." not in segments and ".." not in segments:
        return path
    output: list[str] = []
    for segment in segments:
        if segment == "..":
            if output and output != [""]:
                output.pop()
        elif segment != ".":
            output.append(segment)
    return "/".join(output) or "/"


def _quoted(text: str) -> str:
    """``text`` form-encoded (``urllib.parse.quote_plus`` with nothing kept but the unreserved
    characters); the common plain value is returned as is."""
    return text if _UNRESERVED.fullmatch(text) else quote_plus(text, safe="")


def _target(checked: CheckedURL, params: Mapping[str, str] | None) -> str:
    """The request target: the checked path (dot segments removed) and query, then
    ``params`` form-encoded (``application/x-www-form-urlencoded``) and appended."""
    target = checked.target
    if "/." in target:  # a dot segment, or a name starting with a dot
        path, mark, query = target.partition("?")
        target = _remove_dot_segments(path) + mark + query
    if params:
        encoded = "&".join(f"{_quoted(key)}={_quoted(value)}" for key, value in params.items())
        if "?" not in target:
            target += "?" + encoded
        elif target.endswith(("?", "&")):
            target += encoded
        else:
            target += "&" + encoded
    return target


@dataclass(frozen=True, slots=True)
class _Route:
    """What a checked URL gives a request: the URL, its pool key and ``Host`` header."""

    checked: CheckedURL
    origin: str
    key: _Key
    host: bytes

    @classmethod
    def of(cls, checked: CheckedURL) -> _Route:
        origin = checked.origin
        return cls(
            checked,
            origin,
            (checked.scheme, checked.host, checked.port, checked.allowed_only),
            origin[len(checked.scheme) + 3 :].encode("ascii"),
        )


class _Connection:
    """One HTTP/1.1 connection: its stream and its h11 state machine."""

    __slots__ = ("h11", "idle_since", "key", "stream")

    def __init__(self, key: _Key, stream: httpcore.NetworkStream) -> None:
        self.key = key
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        self.idle_since = 0.0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.close()


class _Pool:
    """Connections by :data:`_Key`, at most ``limit`` open in all (idle, busy or connecting).

    A connection is taken out of the idle lists under the lock and belongs to one request
    until :meth:`release`, so no other thread can touch it meanwhile. An idle connection is
    reused only if it has been idle less than ``_KEEPALIVE`` seconds and its socket is not
    readable (a readable idle socket holds an EOF or junk from the server). At the limit,
    the oldest idle connection (any key) is closed to make room; otherwise the caller
    waits, within its deadline, for a connection to be released.
    """

    def __init__(
        self, backend: PolicyBackend, context: ssl.SSLContext, limit: int, timeout: float
    ) -> None:
        self._backend = backend
        self._context = context
        self._limit = limit
        self._timeout = timeout
        self._cond = threading.Condition(threading.Lock())
        self._idle: dict[_Key, list[_Connection]] = {}
        self._open = 0
        self._closed = False
        self._next_sweep = 0.0

    def acquire(self, key: _Key) -> _Connection:
        """An idle connection for ``key``, or a new one (the policy checks its address).

        Raises:
            httpcore.PoolTimeout: the deadline passed while waiting for room.
            RuntimeError: the pool is closed.
            Whatever connecting raises (AddressRefusedError, httpcore errors, TLSFailure).
        """
        stale: list[_Connection] = []
        try:
            with self._cond:
                while True:
                    if self._closed:
                        raise RuntimeError("the Fetcher is closed")
                    now = time.monotonic()
                    if now >= self._next_sweep:
                        self._sweep(now, stale)
                    idle = self._idle.get(key)
                    while idle:
                        connection = idle.pop()
                        if not idle:
                            del self._idle[key]
                        if now - connection.idle_since < _KEEPALIVE and not (
                            connection.stream.get_extra_info("is_readable")
                        ):
                            return connection
                        stale.append(connection)
                        self._open -= 1
                    if self._open < self._limit or self._evict(stale):
                        self._open += 1
                        break
                    self._cond.wait(time_left(self._timeout))  # raises at the deadline
        finally:
            if stale:
                with self._cond:
                    self._cond.notify(len(stale))
                for connection in stale:
                    connection.close()
        try:
            return self._connect(key)
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def _connect(self, key: _Key) -> _Connection:
        scheme, host, port, _ = key
        stream = self._backend.connect_tcp(host, port, timeout=self._timeout)
        if scheme == "https":
            # the URL's host name: the certificate is verified against it, not the address
            stream = stream.start_tls(self._context, server_hostname=host, timeout=self._timeout)
        return _Connection(key, stream)

    def release(self, connection: _Connection, *, reusable: bool) -> None:
        """Give ``connection`` back: pooled if ``reusable`` (and the pool open), else closed."""
        with self._cond:
            if reusable and not self._closed:
                connection.idle_since = time.monotonic()
                self._idle.setdefault(connection.key, []).append(connection)
                self._cond.notify()
                return
            self._open -= 1
            self._cond.notify()
        connection.close()

    def _evict(self, stale: list[_Connection]) -> bool:
        """Close the oldest idle connection, if any (the lock is held)."""
        oldest: list[_Connection] | None = None
        for idle in self._idle.values():
            if oldest is None or idle[0].idle_since < oldest[0].idle_since:
                oldest = idle
        if oldest is None:
            return False
        victim = oldest.pop(0)
        if not oldest:
            del self._idle[victim.key]
        stale.append(victim)
        self._open -= 1
        return True

    def _sweep(self, now: float, stale: list[_Connection]) -> None:
        """Drop idle connections past their keep-alive (the lock is held)."""
        self._next_sweep = now + _SWEEP_EVERY
        for key, idle in list(self._idle.items()):
            fresh = [c for c in idle if now - c.idle_since < _KEEPALIVE]
            if len(fresh) == len(idle):
                continue
            stale += [c for c in idle if c not in fresh]
            self._open -= len(idle) - len(fresh)
            if fresh:
                self._idle[key] = fresh
            else:
                del self._idle[key]

    def close(self) -> None:
        """Close the idle connections; busy ones are closed when released."""
        with self._cond:
            self._closed = True
            idle = [c for connections in self._idle.values() for c in connections]
            self._idle.clear()
            self._open -= len(idle)
            self._cond.notify_all()
        for connection in idle:
            connection.close()


class Fetcher:
    """GET over HTTP(S) through the address policy, with one deadline per fetch.

    Args:
        policy: the address policy every URL and every connection must pass.
        timeout: seconds for the whole fetch: DNS, connect, TLS, request, headers and body.
        verify: ``True`` (certifi's CA bundle), an :class:`ssl.SSLContext`, or ``False``
            (no certificate verification: tests only).
        user_agent: the ``User-Agent`` header.
        max_connections: connections pooled at most (all hosts together).
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        timeout: float = 5.0,
        verify: ssl.SSLContext | bool = True,
        user_agent: str = f"holdca/{__version__}",
        max_connections: int = 20,
    ) -> None:
        """Build the pool; nothing is connected until :meth:`get`."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.policy = policy
        self.timeout = timeout
        self._closed = False
        self._user_agent = user_agent.encode("ascii")
        if isinstance(verify, ssl.SSLContext):
            context = verify  # the caller's, unchanged (without ALPN a server speaks HTTP/1.1)
        else:
            context = _ssl_context(verify)
            context.set_alpn_protocols(["http/1.1"])
        self._pool = _Pool(PolicyBackend(policy), context, max_connections, timeout)
        # check_url is a pure function of the URL, require_https and the (frozen) policy:
        # its answers are remembered per policy object, refusals are not
        self._routes: dict[tuple[str, bool], _Route] = {}
        self._routes_policy = policy

    def _route(self, url: str, require_https: bool) -> _Route:
        """:meth:`AddressPolicy.check_url` of ``url``, remembered."""
        policy = self.policy
        if policy is self._routes_policy:
            route = self._routes.get((url, require_https))
            if route is not None:
                return route
        route = _Route.of(policy.check_url(url, require_https=require_https))
        if policy is not self._routes_policy:  # the policy attribute was replaced
            self._routes, self._routes_policy = {}, policy
        if len(url) <= _ROUTE_URL_LENGTH:
            if len(self._routes) >= _ROUTES:
                self._routes = {}
            self._routes[(url, require_https)] = route
        return route

    def get(
        self,
        url: str,
        *,
        limit: int,
        accept: str,
        params: Mapping[str, str] | None = None,
        require_https: bool = True,
    ) -> FetchResponse:
        """GET ``url`` and read its body.

        Checked, in order: :meth:`AddressPolicy.check_url` (with ``require_https``); the
        addresses of every connection (:meth:`AddressPolicy.addresses`); the status (3xx is
        refused); ``Content-Length`` and ``Content-Encoding``; the body size as it streams.
        All within ``timeout`` seconds of the call.

        Args:
            limit: largest 2xx body accepted, in bytes.
            accept: the ``Accept`` header.
            params: query parameters, form-encoded and appended to the URL's query.

        Raises:
            AddressRefusedError: the policy refused the URL or an address it resolves to.
            ResolutionError: DNS, connect, TLS or read failure; the deadline passed; a
                redirect; a 2xx body (declared or streamed) larger than ``limit``; a content
                coding other than identity.
        """
        if limit < 0:
            raise ValueError("limit must not be negative")
        if self._closed:
            raise RuntimeError("the Fetcher is closed")
        route = self._route(url, require_https)
        target = _target(route.checked, params)
        fetched = route.origin + target
        try:
            with deadline(self.timeout, allowed_only=route.checked.allowed_only):
                # h11 validates the request (header values included) before any connection
                request = h11.Request(
                    method=b"GET",
                    target=target.encode("ascii"),
                    headers=[
                        (b"Host", route.host),
                        (b"Accept", accept.encode("ascii")),
                        (b"Accept-Encoding", b"identity"),
                        (b"User-Agent", self._user_agent),
                    ],
                )
                key = route.key
                try:
                    return self._get(key, request, fetched, limit)
                except ClosedUnderUse:  # closed locally under us: not the peer's fault
                    return self._get(key, request, fetched, limit)
        except ResolutionError:
            raise  # AddressRefusedError included: its message already names the host
        except TLSFailure as exc:
            what = "certificate verification failed" if exc.verification else "TLS failed"
            raise ResolutionError(f"GET {_shown(fetched)}: {what}") from None
        except httpcore.TimeoutException:
            raise ResolutionError(
                f"GET {_shown(fetched)}: timed out after {self.timeout:g} s"
            ) from None
        except httpcore.ConnectError:
            raise ResolutionError(f"GET {_shown(fetched)}: connection failed") from None
        except (httpcore.ProtocolError, h11.ProtocolError):
            raise ResolutionError(f"GET {_shown(fetched)}: invalid HTTP response") from None
        except httpcore.NetworkError:
            raise ResolutionError(f"GET {_shown(fetched)}: network error") from None

    def _get(self, key: _Key, request: h11.Request, fetched: str, limit: int) -> FetchResponse:
        connection = self._pool.acquire(key)
        reusable = False
        try:
            response, reusable = _exchange(connection, request, fetched, limit)
            return response
        finally:
            self._pool.release(connection, reusable=reusable)

    def close(self) -> None:
        """Close pooled connections; :meth:`get` raises RuntimeError afterwards."""
        self._closed = True
        self._pool.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _next_event(
    state: h11.Connection, stream: httpcore.NetworkStream
) -> h11.Event | type[h11.PAUSED]:
    """The next event from the server, reading as needed (each read within the deadline)."""
    while True:
        event = state.next_event()
        if event is not h11.NEED_DATA:
            return cast("h11.Event | type[h11.PAUSED]", event)
        data = stream.read(_READ_SIZE)
        if not data and state.their_state is h11.SEND_RESPONSE:
            raise httpcore.RemoteProtocolError("server disconnected without a response")
        state.receive_data(data)


def _exchange(
    connection: _Connection, request: h11.Request, fetched: str, limit: int
) -> tuple[FetchResponse, bool]:
    """Send ``request``, read and check the response; (response, connection reusable)."""
    state, stream = connection.h11, connection.stream
    data = state.send(request) + state.send(h11.EndOfMessage())
    try:
        stream.write(data)
    except ClosedUnderUse:
        raise
    except httpcore.WriteError:
        pass  # as httpcore: the server may have answered and closed; read what it sent
    while True:
        event = _next_event(state, stream)
        if isinstance(event, h11.Response):
            break
        if not isinstance(event, h11.InformationalResponse):  # 1xx are skipped
            raise httpcore.RemoteProtocolError("no response")
    status = event.status_code
    if 300 <= status < 400:
        raise ResolutionError(f"GET {_shown(fetched)}: HTTP {status} redirect not followed")
    ok = 200 <= status < 300
    cap = limit if ok else min(limit, ERROR_BODY_LIMIT)
    content_type: list[bytes] = []
    encoding: list[bytes] = []
    declared: list[bytes] = []
    for name, value in event.headers.raw_items():
        lowered = name.lower()
        if lowered == b"content-type":
            content_type.append(value)
        elif lowered == b"content-encoding":
            encoding.append(value)
        elif lowered == b"content-length":
            declared.append(value)
    if ok and b", ".join(encoding).strip().lower() not in (b"", b"identity"):
        raise ResolutionError(f"GET {_shown(fetched)}: unexpected Content-Encoding")
    if ok and declared:
        length = b", ".join(declared).strip()
        if not length.isdigit() or int(length) > limit:
            raise ResolutionError(f"GET {_shown(fetched)}: response larger than {limit} bytes")
    body = bytearray()
    complete = False
    while True:
        event = _next_event(state, stream)
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > cap:
                if ok:
                    raise ResolutionError(
                        f"GET {_shown(fetched)}: response larger than {limit} bytes"
                    )
                del body[cap:]
                break
        elif isinstance(event, h11.EndOfMessage):
            complete = True
            break
        else:
            raise httpcore.RemoteProtocolError("unexpected event in a response body")
    reusable = complete and state.our_state is h11.DONE and state.their_state is h11.DONE
    if reusable:
        state.start_next_cycle()
    response = FetchResponse(
        status,
        _decode(b", ".join(content_type)) if content_type else None,
        bytes(body),
        fetched,
    )
    return response, reusable


def _decode(value: bytes) -> str:
    """A header value as text: ASCII, else UTF-8, else Latin-1 (httpx's order)."""
    for codec in ("ascii", "utf-8"):
        try:
            return value.decode(codec)
        except UnicodeDecodeError:
            pass
    return value.decode("latin-1")
