"""Fetcher: the policy at the connection layer, one deadline, limits, TLS, typed errors.

Everything here talks to listeners on 127.0.0.1 (see ``conftest.py``); forbidden targets are
reached only through the injected resolver or IP-literal URLs, and the network guard proves
that not even a connection attempt was made.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpcore
import pytest

import holdca
from holdca.errors import AddressRefusedError, ResolutionError
from holdca.net import ERROR_BODY_LIMIT, AddressPolicy, Fetcher, _backend, fetch
from holdca.testing.tls import TestPKI
from tests.net.conftest import (
    OK,
    Listener,
    NetGuard,
    Resolver,
    closed_port,
    drip,
    read_head,
)

Listen = Callable[..., Listener]
NAME = "pds.test.example"


@pytest.fixture
def fetchers() -> Iterator[Callable[..., Fetcher]]:
    made: list[Fetcher] = []

    def make(policy: AddressPolicy, **kwargs: object) -> Fetcher:
        fetcher = Fetcher(policy, **kwargs)  # type: ignore[arg-type]
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        fetcher.close()


def response(body: bytes = b"hello", *, status: str = "200 OK", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"{extra}\r\n"
    ).encode() + body


CLOSE = response(extra="Connection: close\r\n")


# --- the default policy refuses loopback ----------------------------------------------------


def test_loopback_refused_by_default(
    listen: Listen, fetchers: Callable[..., Fetcher], net_guard: NetGuard
) -> None:
    server = listen()
    resolver = Resolver({NAME: ["127.0.0.1"], "localhost": ["127.0.0.1", "::1"]})
    fetcher = fetchers(AddressPolicy(resolve=resolver))
    for url in (
        f"http://127.0.0.1:{server.port}/",
        f"https://127.0.0.1:{server.port}/",
        f"https://{NAME}:{server.port}/",
        f"https://localhost:{server.port}/",
    ):
        with pytest.raises(AddressRefusedError):
            fetcher.get(url, limit=100, accept="*/*")
    assert server.accepted == 0
    assert net_guard.connects == []
    assert net_guard.lookups == []


def test_allowed_by_a_cidr_rule(
    listen: Listen, fetchers: Callable[..., Fetcher], net_guard: NetGuard
) -> None:
    server = listen()
    resolver = Resolver({NAME: ["127.0.0.1"]})
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8", resolve=resolver))
    got = fetcher.get(f"http://127.0.0.1:{server.port}/a?b=c", limit=100, accept="text/plain")
    assert (got.status, got.content_type, got.body) == (200, "text/plain", b"hello")
    assert got.url == f"http://127.0.0.1:{server.port}/a?b=c"
    # a name resolving into the allowed block: plain http too (every address is allowed)
    got = fetcher.get(f"http://{NAME}:{server.port}/", limit=100, accept="*/*")
    assert got.body == b"hello"
    assert server.heads[0].startswith(b"GET /a?b=c HTTP/1.1\r\n")
    assert net_guard.non_loopback() == []


def test_allowed_by_a_host_port_rule(listen: Listen, fetchers: Callable[..., Fetcher]) -> None:
    server = listen()
    resolver = Resolver({"localhost": ["127.0.0.1"]})
    fetcher = fetchers(AddressPolicy.parse(f"localhost:{server.port}", resolve=resolver))
    got = fetcher.get(f"http://localhost:{server.port}/x", limit=100, accept="*/*")
    assert got.body == b"hello"
    assert server.accepted == 1
    assert server.header(0, "Host") == f"localhost:{server.port}"


def test_host_port_rule_does_not_open_other_ports(
    listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    allowed, other = listen(), listen()
    resolver = Resolver({"localhost": ["127.0.0.1"], NAME: ["127.0.0.1"]})
    policy = AddressPolicy.parse(
        f"localhost:{allowed.port}, 127.0.0.1:{allowed.port}", resolve=resolver
    )
    fetcher = fetchers(policy)
    assert fetcher.get(f"http://127.0.0.1:{allowed.port}/", limit=9, accept="*/*").status == 200
    for url in (
        f"http://localhost:{other.port}/",
        f"https://localhost:{other.port}/",
        f"http://127.0.0.1:{other.port}/",
        f"https://{NAME}:{other.port}/",
    ):
        with pytest.raises(AddressRefusedError):
            fetcher.get(url, limit=9, accept="*/*")
    assert other.accepted == 0


# --- forbidden targets: refused with no connection attempt ----------------------------------

FORBIDDEN_TARGETS = [
    "169.254.169.254",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.0.1",
    "100.64.0.1",
    "fc00::1",
    "fe80::1",
    "::1",
    "::ffff:127.0.0.1",
    "64:ff9b::a00:1",
    "0.0.0.0",
    "224.0.0.1",
    "::",
]


@pytest.mark.parametrize("address", FORBIDDEN_TARGETS)
def test_forbidden_resolution_makes_no_connection(
    address: str, fetchers: Callable[..., Fetcher], net_guard: NetGuard
) -> None:
    fetcher = fetchers(AddressPolicy(resolve=Resolver({NAME: [address]})))
    with pytest.raises(AddressRefusedError) as info:
        fetcher.get(f"https://{NAME}/xrpc/x", limit=100, accept="*/*")
    assert NAME in str(info.value)
    assert address not in str(info.value)
    assert net_guard.connects == []


@pytest.mark.parametrize("address", FORBIDDEN_TARGETS)
def test_forbidden_ip_literal_makes_no_connection(
    address: str, fetchers: Callable[..., Fetcher], net_guard: NetGuard
) -> None:
    host = f"[{address}]" if ":" in address else address
    fetcher = fetchers(AddressPolicy())
    for scheme in ("http", "https"):
        with pytest.raises(AddressRefusedError):
            fetcher.get(f"{scheme}://{host}/latest/meta-data/", limit=100, accept="*/*")
    assert net_guard.connects == []


def test_one_forbidden_address_among_public_ones_refuses(
    fetchers: Callable[..., Fetcher], net_guard: NetGuard
) -> None:
    resolver = Resolver({NAME: ["93.184.216.34", "10.0.0.1"]})
    with pytest.raises(AddressRefusedError):
        fetchers(AddressPolicy(resolve=resolver)).get(f"https://{NAME}/", limit=9, accept="*/*")
    assert net_guard.connects == []


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433:{port}/",
        "http://0x7f.1:{port}/",
        "http://127.1:{port}/",
        "http://0177.0.0.1:{port}/",
        "http://0x7f000001:{port}/",
        "http://%31%32%37.0.0.1:{port}/",
        "http://127.0.0.1%2f@x:{port}/",
        "http://[::ffff:7f00:1]:{port}/",
    ],
)
def test_ip_literal_tricks_refused(
    url: str, listen: Listen, fetchers: Callable[..., Fetcher], net_guard: NetGuard
) -> None:
    server = listen()
    with pytest.raises(AddressRefusedError):
        fetchers(AddressPolicy()).get(url.format(port=server.port), limit=9, accept="*/*")
    assert server.accepted == 0
    assert net_guard.connects == []
    assert net_guard.lookups == []


def test_plain_http_refused_without_an_allow_rule(
    fetchers: Callable[..., Fetcher], net_guard: NetGuard
) -> None:
    resolver = Resolver({NAME: ["93.184.216.34"]})
    with pytest.raises(AddressRefusedError, match="https is required"):
        fetchers(AddressPolicy(resolve=resolver)).get(f"http://{NAME}/", limit=9, accept="*/*")
    assert resolver.calls == []
    assert net_guard.connects == []


def test_plain_http_by_a_name_needs_every_address_allowed(
    listen: Listen, fetchers: Callable[..., Fetcher], net_guard: NetGuard
) -> None:
    """Under a CIDR rule, http to a name is fine only where the name stays inside the rule:
    a name resolving to a public address (or to one allowed and one public) gets no
    connection over http, though https to it would be allowed."""
    server = listen()
    for answers in (["93.184.216.34"], ["127.0.0.1", "93.184.216.34"]):
        resolver = Resolver({NAME: answers})
        fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8", resolve=resolver))
        with pytest.raises(AddressRefusedError, match="https is required"):
            fetcher.get(f"http://{NAME}:{server.port}/", limit=9, accept="*/*")
    assert server.accepted == 0
    assert net_guard.connects == []


@pytest.mark.parametrize("userinfo", ["user@", "user:password@", ":@", f"{NAME}@"])
def test_userinfo_refused(
    userinfo: str, fetchers: Callable[..., Fetcher], net_guard: NetGuard
) -> None:
    resolver = Resolver({NAME: ["127.0.0.1"]})
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8", resolve=resolver))
    with pytest.raises(AddressRefusedError, match="userinfo"):
        fetcher.get(f"https://{userinfo}{NAME}/", limit=9, accept="*/*")
    assert resolver.calls == []
    assert net_guard.connects == []


def test_redirect_is_refused_and_its_target_not_contacted(
    listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    target = listen()
    location = f"http://127.0.0.1:{target.port}/internal"
    redirector = listen(response(b"", status="302 Found", extra=f"Location: {location}\r\n"))
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"))
    with pytest.raises(ResolutionError, match="HTTP 302") as info:
        fetcher.get(f"http://127.0.0.1:{redirector.port}/", limit=100, accept="*/*")
    assert not isinstance(info.value, AddressRefusedError)
    assert redirector.accepted == 1
    assert target.accepted == 0


def test_open_and_closed_refused_ports_read_the_same(
    listen: Listen, fetchers: Callable[..., Fetcher], net_guard: NetGuard
) -> None:
    server, closed = listen(), closed_port()
    resolver = Resolver({"internal.test.example": ["127.0.0.1"]})
    fetcher = fetchers(AddressPolicy(resolve=resolver))
    for template in ("http://127.0.0.1:{}/", "https://internal.test.example:{}/admin"):
        messages = []
        for port in (server.port, closed):
            with pytest.raises(AddressRefusedError) as info:
                fetcher.get(template.format(port), limit=9, accept="*/*")
            messages.append(str(info.value))
            assert str(port) not in messages[-1]
        assert messages[0] == messages[1]
    assert server.accepted == 0
    assert net_guard.connects == []


# --- pinning: the connection goes to the address the policy checked --------------------------


def test_connection_goes_to_the_checked_address_only(
    listen: Listen, fetchers: Callable[..., Fetcher], net_guard: NetGuard
) -> None:
    """The resolver answers 127.0.0.1 once, then 10.0.0.1 forever after. If the fetcher
    checked one answer and let the HTTP layer (or a second lookup) pick the address to connect to,
    the guard would see a lookup of the name or an attempt to reach 10.0.0.1."""
    server = listen(CLOSE)
    resolver = Resolver(answer=lambda _h, _p, n: ["127.0.0.1"] if n == 1 else ["10.0.0.1"])
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8", resolve=resolver))
    got = fetcher.get(f"http://{NAME}:{server.port}/", limit=9, accept="*/*", require_https=False)
    assert got.status == 200
    assert resolver.calls == [(NAME, server.port)]  # exactly one lookup, through the policy
    assert net_guard.lookups == []  # nothing resolved the name behind the policy's back
    assert net_guard.connects == [("127.0.0.1", server.port)]
    # the next connection resolves again, through the policy, and is refused before connecting
    with pytest.raises(AddressRefusedError):
        fetcher.get(f"http://{NAME}:{server.port}/", limit=9, accept="*/*", require_https=False)
    assert len(resolver.calls) == 2
    assert net_guard.connects == [("127.0.0.1", server.port)]
    assert server.accepted == 1


def test_a_reused_connection_stays_on_its_checked_address(
    listen: Listen, fetchers: Callable[..., Fetcher], net_guard: NetGuard
) -> None:
    server = listen(OK)  # keep-alive
    resolver = Resolver(answer=lambda _h, _p, n: ["127.0.0.1"] if n == 1 else ["10.0.0.1"])
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8", resolve=resolver))
    url = f"http://{NAME}:{server.port}/"
    for _ in range(3):
        assert fetcher.get(url, limit=9, accept="*/*", require_https=False).body == b"hello"
    assert server.accepted == 1
    assert len(resolver.calls) == 1
    assert net_guard.connects == [("127.0.0.1", server.port)]


def test_every_new_connection_is_checked(listen: Listen, fetchers: Callable[..., Fetcher]) -> None:
    server = listen(CLOSE)
    resolver = Resolver({NAME: ["127.0.0.1"]})
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8", resolve=resolver))
    for _ in range(3):
        fetcher.get(f"http://{NAME}:{server.port}/", limit=9, accept="*/*", require_https=False)
    assert server.accepted == 3
    assert len(resolver.calls) == 3


def test_the_pool_passes_the_url_host_to_the_backend(
    monkeypatch: pytest.MonkeyPatch, listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    """The one pool behaviour the pinning relies on: ``connect_tcp`` gets the URL's host
    (which the backend resolves through the policy) and ``start_tls`` the same name as
    ``server_hostname``. If the pool ever passed something else, this fails loudly."""
    calls: list[tuple[str, object]] = []
    real_connect = _backend.PolicyBackend.connect_tcp
    real_tls = _backend._Stream.start_tls

    def connect_tcp(self: _backend.PolicyBackend, host: str, port: int, **kw: object) -> object:
        calls.append(("connect_tcp", host))
        return real_connect(self, host, port, **kw)  # type: ignore[arg-type]

    def start_tls(self: _backend._Stream, ssl_context: ssl.SSLContext, **kw: object) -> object:
        calls.append(("start_tls", kw.get("server_hostname")))
        return real_tls(self, ssl_context, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(_backend.PolicyBackend, "connect_tcp", connect_tcp)
    monkeypatch.setattr(_backend._Stream, "start_tls", start_tls)
    pki = TestPKI()
    server = listen(OK, tls=pki.server_context(NAME))
    fetcher = fetchers(
        AddressPolicy.parse("127.0.0.0/8", resolve=Resolver({NAME: ["127.0.0.1"]})),
        verify=pki.client_context(),
    )
    assert fetcher.get(f"https://{NAME}:{server.port}/", limit=9, accept="*/*").status == 200
    assert calls == [("connect_tcp", NAME), ("start_tls", NAME)]


# --- one deadline for the whole fetch ------------------------------------------------------


@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_dripping_server_is_cut_at_the_deadline(
    where: str, listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    if where == "body":
        server = listen(drip(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 100))
    else:

        def respond(conn: socket.socket, _head: bytes) -> None:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
                conn.sendall(bytes([byte]))
                time.sleep(0.2)

        server = listen(respond)
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"), timeout=1.0)
    start = time.monotonic()
    with pytest.raises(ResolutionError, match="timed out"):
        fetcher.get(f"http://127.0.0.1:{server.port}/", limit=1000, accept="*/*")
    elapsed = time.monotonic() - start
    assert 0.9 < elapsed < 1.5


def test_slow_dns_is_cut_at_the_deadline(fetchers: Callable[..., Fetcher]) -> None:
    release = threading.Event()

    def slow(_host: str, _port: int, _n: int) -> list[str]:
        release.wait(5)
        return ["127.0.0.1"]

    fetcher = fetchers(
        AddressPolicy.parse("127.0.0.0/8", resolve=Resolver(answer=slow)), timeout=0.5
    )
    start = time.monotonic()
    try:
        with pytest.raises(ResolutionError, match="timed out"):
            fetcher.get(f"https://{NAME}/", limit=9, accept="*/*")
    finally:
        release.set()
    assert time.monotonic() - start < 1.0


def test_a_silent_tls_server_is_cut_at_the_deadline(
    listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    def silent(conn: socket.socket, _head: bytes) -> None:
        time.sleep(3)

    server = listen(silent)  # accepts, never answers the ClientHello
    resolver = Resolver({NAME: ["127.0.0.1"]})
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8", resolve=resolver), timeout=0.5)
    start = time.monotonic()
    with pytest.raises(ResolutionError, match="timed out"):
        fetcher.get(f"https://{NAME}:{server.port}/", limit=9, accept="*/*")
    assert time.monotonic() - start < 1.0


def test_the_deadline_is_per_fetch(listen: Listen, fetchers: Callable[..., Fetcher]) -> None:
    server = listen(OK)
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"), timeout=0.3)
    for _ in range(4):  # 4 x 0.15 s > timeout: each fetch has its own deadline
        time.sleep(0.15)
        assert fetcher.get(f"http://127.0.0.1:{server.port}/", limit=9, accept="*/*").status == 200


def test_the_wait_for_a_pooled_connection_is_within_the_deadline(
    listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    def slow(_conn: socket.socket, _head: bytes) -> bytes:
        time.sleep(2)
        return OK

    server = listen(slow)
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"), timeout=0.6, max_connections=1)
    url = f"http://127.0.0.1:{server.port}/"
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            fetcher.get(url, limit=9, accept="*/*")
        except BaseException as exc:
            errors.append(exc)

    start = time.monotonic()
    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - start < 1.2
    assert len(errors) == 3
    assert all(isinstance(e, ResolutionError) and "timed out" in str(e) for e in errors)


# --- a connection closed under use (httpcore's pool race) ------------------------------------


def _sabotage_writes(monkeypatch: pytest.MonkeyPatch, times: int) -> list[object]:
    """Close the socket under the next ``times`` requests, as httpcore's racing pool did."""
    real_write = _backend._Stream.write
    sabotaged: list[object] = []

    def write(self: _backend._Stream, buffer: bytes, timeout: float | None = None) -> None:
        if len(sabotaged) < times:
            sabotaged.append(self)
            self._sock.close()
        real_write(self, buffer, timeout)

    monkeypatch.setattr(_backend._Stream, "write", write)
    return sabotaged


def test_a_connection_closed_under_use_is_retried_once(
    monkeypatch: pytest.MonkeyPatch, listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    server = listen(OK)
    resolver = Resolver({NAME: ["127.0.0.1"]})
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8", resolve=resolver))
    url = f"http://{NAME}:{server.port}/"
    assert fetcher.get(url, limit=9, accept="*/*", require_https=False).body == b"hello"
    sabotaged = _sabotage_writes(monkeypatch, 1)
    assert fetcher.get(url, limit=9, accept="*/*", require_https=False).body == b"hello"
    assert len(sabotaged) == 1
    assert server.accepted == 2  # the retry opened a new connection ...
    assert len(resolver.calls) == 2  # ... checked by the policy like any other


def test_the_retry_happens_once_only(
    monkeypatch: pytest.MonkeyPatch, listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    server = listen(OK)
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"))
    sabotaged = _sabotage_writes(monkeypatch, 10)
    with pytest.raises(ResolutionError, match="network error"):
        fetcher.get(f"http://127.0.0.1:{server.port}/", limit=9, accept="*/*")
    assert len(sabotaged) == 2


# --- the pool ----------------------------------------------------------------------------


def test_an_idle_connection_the_server_closed_is_not_reused(
    listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    def once(conn: socket.socket, _head: bytes) -> None:
        conn.sendall(OK)  # no "Connection: close", but the server hangs up after answering

    server = listen(once)
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"))
    url = f"http://127.0.0.1:{server.port}/"
    for _ in range(3):
        assert fetcher.get(url, limit=9, accept="*/*").body == b"hello"
        time.sleep(0.05)  # the FIN arrives
    assert server.accepted == 3


def test_an_expired_idle_connection_is_not_reused(
    monkeypatch: pytest.MonkeyPatch, listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    monkeypatch.setattr(fetch, "_KEEPALIVE", 0.1)
    server = listen(OK)
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"))
    url = f"http://127.0.0.1:{server.port}/"
    fetcher.get(url, limit=9, accept="*/*")
    fetcher.get(url, limit=9, accept="*/*")
    assert server.accepted == 1
    time.sleep(0.2)
    fetcher.get(url, limit=9, accept="*/*")
    assert server.accepted == 2


def test_idle_connections_to_other_hosts_make_room(
    listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    first, second = listen(OK), listen(OK)
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"), timeout=2.0, max_connections=1)
    start = time.monotonic()
    for _ in range(3):
        for server in (first, second):
            got = fetcher.get(f"http://127.0.0.1:{server.port}/", limit=9, accept="*/*")
            assert got.body == b"hello"
    assert time.monotonic() - start < 1.0  # nobody waited for a deadline
    assert (first.accepted, second.accepted) == (3, 3)


def test_a_connection_of_a_looser_fetch_does_not_serve_a_stricter_one(
    listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    """Plain http by a name under a CIDR rule connects only if every address is allowed;
    with ``require_https=False`` any public address would do. A connection opened under the
    looser rule is not handed to a fetch under the stricter one: that one connects anew,
    and the policy checks it."""
    server = listen(OK)
    resolver = Resolver({NAME: ["127.0.0.1"]})
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8", resolve=resolver))
    url = f"http://{NAME}:{server.port}/"
    assert fetcher.get(url, limit=9, accept="*/*", require_https=False).status == 200
    assert fetcher.get(url, limit=9, accept="*/*").status == 200
    assert fetcher.get(url, limit=9, accept="*/*").status == 200  # reused: same rule
    assert server.accepted == 2
    assert len(resolver.calls) == 2


def test_close_closes_the_pooled_connections(listen: Listen) -> None:
    hung_up = threading.Event()

    def answer_then_wait(conn: socket.socket, _head: bytes) -> None:
        conn.sendall(OK)
        if conn.recv(1) == b"":  # the client closed its (idle, pooled) connection
            hung_up.set()

    server = listen(answer_then_wait)
    fetcher = Fetcher(AddressPolicy.parse("127.0.0.0/8"))
    fetcher.get(f"http://127.0.0.1:{server.port}/", limit=9, accept="*/*")
    assert not hung_up.wait(0.2)  # kept alive ...
    fetcher.close()
    assert hung_up.wait(2)  # ... until the fetcher is closed


def test_the_request_target(listen: Listen, fetchers: Callable[..., Fetcher]) -> None:
    server = listen(OK)
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"))
    base = f"http://127.0.0.1:{server.port}"
    got = fetcher.get(f"{base}/a/./b/../c?x=1#frag", limit=9, accept="*/*", params={"y": "2 3"})
    assert got.url == f"{base}/a/c?x=1&y=2+3"
    fetcher.get(f"{base}/.well-known/did.json", limit=9, accept="*/*")
    fetcher.get(f"{base}", limit=9, accept="*/*", params={"q": "é/&=?"})
    assert [head.split(b" ")[1] for head in server.heads] == [
        b"/a/c?x=1&y=2+3",
        b"/.well-known/did.json",
        b"/?q=%C3%A9%2F%26%3D%3F",
    ]


# --- sizes ---------------------------------------------------------------------------------


def test_declared_oversize_is_refused_before_reading(
    listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    server = listen(b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n")  # body never sent
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"), timeout=2.0)
    start = time.monotonic()
    with pytest.raises(ResolutionError, match="larger than 1000 bytes"):
        fetcher.get(f"http://127.0.0.1:{server.port}/", limit=1000, accept="*/*")
    assert time.monotonic() - start < 1.0  # it did not wait for the body


def test_streamed_oversize_is_cut(listen: Listen, fetchers: Callable[..., Fetcher]) -> None:
    chunk = b"a" * 600
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
    server = listen(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"))
    url = f"http://127.0.0.1:{server.port}/"
    with pytest.raises(ResolutionError, match="larger than 1000 bytes"):
        fetcher.get(url, limit=1000, accept="*/*")
    assert len(fetcher.get(url, limit=3000, accept="*/*").body) == 3000


def test_exact_limit_is_accepted(listen: Listen, fetchers: Callable[..., Fetcher]) -> None:
    server = listen(response(b"x" * 1000))
    got = fetchers(AddressPolicy.parse("127.0.0.0/8")).get(
        f"http://127.0.0.1:{server.port}/", limit=1000, accept="*/*"
    )
    assert len(got.body) == 1000


def test_error_bodies_are_truncated(listen: Listen, fetchers: Callable[..., Fetcher]) -> None:
    server = listen(response(b'{"error":"RecordNotFound"}' + b" " * 10_000, status="400 Bad"))
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"))
    url = f"http://127.0.0.1:{server.port}/"
    got = fetcher.get(url, limit=1_000_000, accept="*/*")
    assert got.status == 400
    assert len(got.body) == ERROR_BODY_LIMIT
    assert got.body.startswith(b'{"error":"RecordNotFound"}')
    assert len(fetcher.get(url, limit=10, accept="*/*").body) == 10


def test_content_coding_is_refused(listen: Listen, fetchers: Callable[..., Fetcher]) -> None:
    server = listen(response(b"\x1f\x8b", extra="Content-Encoding: gzip\r\n"))
    with pytest.raises(ResolutionError, match="Content-Encoding"):
        fetchers(AddressPolicy.parse("127.0.0.0/8")).get(
            f"http://127.0.0.1:{server.port}/", limit=100, accept="*/*"
        )


# --- request hygiene -----------------------------------------------------------------------


def test_request_headers(listen: Listen, fetchers: Callable[..., Fetcher]) -> None:
    server = listen()
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"))
    fetcher.get(
        f"http://127.0.0.1:{server.port}/xrpc/m",
        limit=9,
        accept="application/vnd.ipld.car",
        params={"did": "did:plc:abc", "rkey": "a b"},
    )
    assert server.heads[0].startswith(b"GET /xrpc/m?did=did%3Aplc%3Aabc&rkey=a+b HTTP/1.1")
    assert server.header(0, "Accept") == "application/vnd.ipld.car"
    assert server.header(0, "Accept-Encoding") == "identity"
    assert server.header(0, "User-Agent") == f"holdca/{holdca.__version__}"


def test_environment_proxies_are_ignored(
    monkeypatch: pytest.MonkeyPatch, listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    proxy, server = listen(), listen()
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(variable, f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"))
    assert fetcher.get(f"http://127.0.0.1:{server.port}/", limit=9, accept="*/*").status == 200
    assert proxy.accepted == 0
    assert server.accepted == 1


def test_cookies_are_not_kept(listen: Listen, fetchers: Callable[..., Fetcher]) -> None:
    server = listen(response(extra="Set-Cookie: session=secret; Path=/\r\n"))
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8"))
    for _ in range(2):
        fetcher.get(f"http://127.0.0.1:{server.port}/", limit=9, accept="*/*")
    assert server.header(1, "Cookie") is None


# --- typed, short errors -------------------------------------------------------------------


def test_connection_refused_on_an_allowed_port(fetchers: Callable[..., Fetcher]) -> None:
    with pytest.raises(ResolutionError, match="connection failed") as info:
        fetchers(AddressPolicy.parse("127.0.0.0/8")).get(
            f"http://127.0.0.1:{closed_port()}/", limit=9, accept="*/*"
        )
    assert not isinstance(info.value, AddressRefusedError)


def test_garbage_response(listen: Listen, fetchers: Callable[..., Fetcher]) -> None:
    server = listen(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    with pytest.raises(ResolutionError, match="invalid HTTP response"):
        fetchers(AddressPolicy.parse("127.0.0.0/8")).get(
            f"http://127.0.0.1:{server.port}/", limit=9, accept="*/*"
        )


def test_messages_are_short(listen: Listen, fetchers: Callable[..., Fetcher]) -> None:
    server = listen(response(b"", status="301 Moved", extra="Location: /x\r\n"))
    url = f"http://127.0.0.1:{server.port}/" + "p" * 5000
    with pytest.raises(ResolutionError) as info:
        fetchers(AddressPolicy.parse("127.0.0.0/8")).get(url, limit=9, accept="*/*")
    assert len(str(info.value)) < 200
    with pytest.raises(AddressRefusedError) as refused:
        fetchers(AddressPolicy()).get(
            "http://" + "a" * 60 + ".example/" + "p" * 5000, limit=9, accept="*/*"
        )
    assert len(str(refused.value)) < 200


def test_concurrent_fetches(listen: Listen, fetchers: Callable[..., Fetcher]) -> None:
    def echo(_conn: socket.socket, head: bytes) -> bytes:
        return response(head.split(b" ")[1])

    server = listen(echo)
    resolver = Resolver({NAME: ["127.0.0.1"]})
    fetcher = fetchers(AddressPolicy.parse("127.0.0.0/8", resolve=resolver), max_connections=4)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                path = f"/{n}/{i}"
                got = fetcher.get(
                    f"http://{NAME}:{server.port}{path}",
                    limit=99,
                    accept="*/*",
                    require_https=False,
                )
                assert got.body == path.encode()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert server.accepted < 160 // 2  # connections were reused ...
    assert len(resolver.calls) == server.accepted  # ... and each new one was checked


def test_context_manager_closes(listen: Listen) -> None:
    server = listen()
    with Fetcher(AddressPolicy.parse("127.0.0.0/8")) as fetcher:
        fetcher.get(f"http://127.0.0.1:{server.port}/", limit=9, accept="*/*")
    with pytest.raises(RuntimeError, match="closed"):
        fetcher.get(f"http://127.0.0.1:{server.port}/", limit=9, accept="*/*")


def test_core_does_not_import_holdca_net() -> None:
    code = (
        "import sys, holdca, holdca.atproto, holdca.keys, holdca.pki, holdca.notation\n"
        "import holdca.hold\n"
        "bad = [m for m in sys.modules if m.startswith(('holdca.net', 'httpx', 'httpcore'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return TestPKI()


def _tls_fetcher(pki: TestPKI, fetchers: Callable[..., Fetcher]) -> Fetcher:
    resolver = Resolver({NAME: ["127.0.0.1"], "other.test.example": ["127.0.0.1"]})
    return fetchers(
        AddressPolicy.parse("127.0.0.0/8", resolve=resolver), verify=pki.client_context()
    )


def test_tls_to_a_name_mapped_to_loopback(
    pki: TestPKI, listen: Listen, fetchers: Callable[..., Fetcher], net_guard: NetGuard
) -> None:
    server = listen(OK, tls=pki.server_context(NAME))
    got = _tls_fetcher(pki, fetchers).get(f"https://{NAME}:{server.port}/x", limit=9, accept="*/*")
    assert got.body == b"hello"
    assert server.header(0, "Host") == f"{NAME}:{server.port}"
    assert net_guard.connects == [("127.0.0.1", server.port)]
    assert net_guard.lookups == []


def test_a_tls_connection_is_reused(
    pki: TestPKI, listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    server = listen(OK, tls=pki.server_context(NAME))
    fetcher = _tls_fetcher(pki, fetchers)
    for _ in range(3):
        assert fetcher.get(f"https://{NAME}:{server.port}/", limit=9, accept="*/*").status == 200
    assert server.accepted == 1


@pytest.mark.parametrize(
    ("names", "ips", "url_host"),
    [
        (("other.test.example",), (), NAME),  # certificate for another name
        ((), ("127.0.0.1",), NAME),  # valid for the IP connected to, not for the name
        ((NAME,), (), "other.test.example"),  # same server reached through another name
    ],
)
def test_tls_verifies_the_name_not_the_ip(
    names: tuple[str, ...],
    ips: tuple[str, ...],
    url_host: str,
    pki: TestPKI,
    listen: Listen,
    fetchers: Callable[..., Fetcher],
) -> None:
    server = listen(OK, tls=pki.server_context(*names, ips=ips))
    with pytest.raises(ResolutionError, match="certificate verification failed") as info:
        _tls_fetcher(pki, fetchers).get(f"https://{url_host}:{server.port}/", limit=9, accept="*/*")
    assert not isinstance(info.value, AddressRefusedError)
    assert server.heads == []  # no request was sent


def test_tls_with_an_untrusted_ca(
    pki: TestPKI, listen: Listen, fetchers: Callable[..., Fetcher]
) -> None:
    server = listen(OK, tls=TestPKI().server_context(NAME))
    with pytest.raises(ResolutionError, match="certificate verification failed"):
        _tls_fetcher(pki, fetchers).get(f"https://{NAME}:{server.port}/", limit=9, accept="*/*")


def test_tls_to_a_plain_http_server(
    listen: Listen, pki: TestPKI, fetchers: Callable[..., Fetcher]
) -> None:
    server = listen(OK, greeting=OK)  # answers the ClientHello with plain HTTP
    with pytest.raises(ResolutionError, match="TLS failed"):
        _tls_fetcher(pki, fetchers).get(f"https://{NAME}:{server.port}/", limit=9, accept="*/*")


def test_backend_refuses_unix_sockets() -> None:
    backend = _backend.PolicyBackend(AddressPolicy())
    with pytest.raises(httpcore.ConnectError):
        backend.connect_unix_socket("/var/run/docker.sock")


def test_read_head_helper() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert read_head(right) == b"GET / HTTP/1.1\r\n\r\n"
