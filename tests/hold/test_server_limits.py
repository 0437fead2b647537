"""The reference server on the open internet: connections, heads, bodies, limits, 503.

Real uvicorn on 127.0.0.1 (``serve_hold``), raw sockets for clients that misbehave
(dripping a request head or body one byte at a time, stalling, hoarding connections).
Timing bounds are generous (the limit plus 2 s): they tell "dropped by the deadline"
from "never dropped", never how fast anything is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from starlette.applications import Starlette
from uvicorn.server import ServerState

from holdca.hold import AllowAllAuthorizer, SQLiteLedger
from holdca.hold.ledger import IssuanceRecord
from holdca.server import COSIGN_NSID, ServerLimits
from holdca.server.limits import MAX_JSON_DEPTH
from holdca.server.run import HeadDeadlineH11Protocol, uvicorn_config
from tests.hold.served import Served, auth, body, serve_hold, user

URL = f"/xrpc/{COSIGN_NSID}"
SLACK = 2.0  # seconds allowed beyond a deadline before "it was not enforced"
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"

NO_AUTH: dict[str, Any] = {
    "app_options": {"insecure_no_auth": True},
    "ca_options": {"authorizer": AllowAllAuthorizer()},
}


# ---------------------------------------------------------------------------- raw clients


def connect(served: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(method: str, path: str, *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *extra, "", ""]
    return "\r\n".join(lines).encode()


def read_response(sock: socket.socket, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (status, lower-case headers, body), parsed by h11."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))  # (h11 state)
    conn.send(h11.EndOfMessage())
    sock.settimeout(timeout)
    status, headers, data = 0, {}, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode().lower(): v.decode() for k, v in event.headers}
        elif isinstance(event, h11.Data):
            data += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return status, headers, data


def closed_within(sock: socket.socket, seconds: float, drip: bytes = b"") -> float | None:
    """Seconds until the server closes ``sock`` (``None``: still open after ``seconds``).

    With ``drip``, one byte of it is sent every 0.1 s meanwhile (a slowloris client);
    whatever the server sends before closing is read and ignored.
    """
    started = time.monotonic()
    pending = bytearray(drip)
    while (elapsed := time.monotonic() - started) < seconds:
        readable, _, _ = select.select([sock], [], [], 0.1)
        if readable:
            try:
                if not sock.recv(65536):
                    return elapsed
            except (ConnectionResetError, ConnectionAbortedError):
                return elapsed
            continue
        if pending:
            try:
                sock.send(bytes(pending[:1]))
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
            del pending[:1]
    return None


def is_open(sock: socket.socket) -> bool:
    """The server has not closed ``sock`` (nothing, not even EOF, is waiting to be read)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


@contextmanager
def sockets(served: Served, n: int) -> Iterator[list[socket.socket]]:
    socks = [connect(served) for _ in range(n)]
    try:
        yield socks
    finally:
        for s in socks:
            s.close()


def get_ok(served: Served, path: str = "/ca.crt") -> int:
    """A well-behaved client on a fresh connection: the status it gets."""
    with httpx.Client(base_url=served.base, timeout=30) as client:
        return client.get(path, headers={"Connection": "close"}).status_code


def ocsp_der(served: Served) -> bytes:
    leaf = served.ca.issue(
        DID, ec.generate_private_key(ec.SECP256R1()).public_key(), now=datetime.now(UTC)
    )[0]
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, served.ca.certificate, hashes.SHA1())
    return request.build().public_bytes(serialization.Encoding.DER)


# ---------------------------------------------------------------------------- configuration


def test_server_limits_reach_uvicorn_and_the_protocol_keeps_its_contract() -> None:
    """The settings ``serve`` runs with, and the three H11Protocol attributes run.py uses."""
    limits = ServerLimits(
        max_connections=7,
        backlog=33,
        keep_alive=2,
        header_timeout=3,
        max_header_bytes=4096,
        graceful_shutdown=4,
    )
    config = uvicorn_config(Starlette(), limits=limits)
    assert config.backlog == 33
    assert config.timeout_keep_alive == 2
    assert config.h11_max_incomplete_event_size == 4096
    assert config.timeout_graceful_shutdown == 4
    assert config.server_header is False
    protocol_class = config.http
    assert isinstance(protocol_class, type)
    assert issubclass(protocol_class, HeadDeadlineH11Protocol)
    assert protocol_class.head_timeout == 3
    assert protocol_class.max_head_bytes == 4096
    config.load()
    loop = asyncio.new_event_loop()
    try:
        protocol = protocol_class(
            config=config, server_state=ServerState(), app_state={}, _loop=loop
        )
        assert protocol.loop is loop
        assert isinstance(protocol.conn, h11.Connection)
        assert protocol.conn.their_state is h11.IDLE
        assert hasattr(protocol, "transport")
    finally:
        loop.close()
    for bad in ({"max_connections": 0}, {"header_timeout": 0}, {"keep_alive": -1},
                {"max_header_bytes": 0}):  # fmt: skip
        with pytest.raises(ValueError, match="positive"):
            ServerLimits(**bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- request heads


def test_a_client_dripping_its_request_head_is_dropped_after_header_timeout() -> None:
    """Old code (uvicorn's defaults): no head deadline, the connection was held forever."""
    timeout = 1.0
    with serve_hold(limits=ServerLimits(header_timeout=timeout, keep_alive=30)) as served:
        with sockets(served, 2) as (dripping, silent):
            drip = head("GET", "/ca.crt", "X-Slow: " + "a" * 500)[:-4]  # never completes
            started = time.monotonic()
            assert get_ok(served) == 200  # meanwhile a well-behaved client is served
            assert is_open(dripping)
            elapsed = closed_within(dripping, timeout + SLACK, drip=drip)
            assert elapsed is not None, "a dripping head kept its connection"
            left = timeout + SLACK - (time.monotonic() - started)
            assert closed_within(silent, max(left, 0.1)) is not None  # sent nothing at all
        assert get_ok(served) == 200


def test_the_head_deadline_restarts_after_each_response() -> None:
    """A kept-alive connection must send its next head promptly; prompt ones are served."""
    timeout = 1.5
    with serve_hold(limits=ServerLimits(header_timeout=timeout, keep_alive=30)) as served:
        with sockets(served, 1) as (prompt,):
            for _ in range(4):  # one request every 0.5 s, for longer than the deadline
                prompt.sendall(head("GET", "/ca.crt"))
                assert read_response(prompt)[0] == 200
                time.sleep(0.5)
            assert is_open(prompt)
        with sockets(served, 1) as (slow,):
            slow.sendall(head("GET", "/ca.crt"))
            assert read_response(slow)[0] == 200
            elapsed = closed_within(slow, timeout + SLACK, drip=head("GET", "/ca.crt")[:-2])
            assert elapsed is not None, "a slow second head kept the connection"


def test_a_body_nobody_reads_cannot_hold_the_connection() -> None:
    """A GET that declares a body and drips it after its answer: dropped by the deadline.

    uvicorn's keep-alive timer is cancelled by every byte received, and it reads (and
    drops) the rest of an unread body so the connection can be reused: without a
    deadline one byte every few seconds held the connection for ever.
    """
    timeout = 1.0
    with serve_hold(limits=ServerLimits(header_timeout=timeout, keep_alive=2)) as served:
        with sockets(served, 1) as (get,):
            get.sendall(head("GET", "/ca.crt", "Content-Length: 100000"))
            assert read_response(get)[0] == 200
            assert closed_within(get, timeout + SLACK, drip=b"x" * 1000) is not None
        # the same after a refusal that does not read the body (413: declared too large)
        with sockets(served, 1) as (post,):
            post.sendall(head("POST", "/ocsp", "Content-Length: 100000000"))
            status, _, data = read_response(post)
            assert (status, json.loads(data)["error"]) == (413, "PayloadTooLarge")
            assert closed_within(post, timeout + SLACK, drip=b"x" * 1000) is not None


def test_a_head_over_max_header_bytes_is_refused() -> None:
    """Also when it arrives in one piece (h11's limit alone only bounds partial heads).

    Old code: h11's default limit (16 KiB) let this 12 KiB head through.
    """
    limit = 8192
    with serve_hold(limits=ServerLimits(max_header_bytes=limit)) as served:
        big = head("GET", "/ca.crt", "X-Big: " + "a" * 12_000)
        with sockets(served, 1) as (at_once,):
            at_once.sendall(big)
            assert read_response(at_once)[0] == 400
            assert closed_within(at_once, SLACK) is not None
        with sockets(served, 1) as (in_pieces,):  # h11's own check, while incomplete
            for i in range(0, len(big), 1000):
                if not is_open(in_pieces):  # refused once past the limit
                    break
                in_pieces.sendall(big[i : i + 1000])
                time.sleep(0.02)
            assert read_response(in_pieces)[0] == 400
        with sockets(served, 1) as (many,):  # many small headers add up the same way
            many.sendall(head("GET", "/ca.crt", *(f"X-{i}: {'b' * 90}" for i in range(120))))
            assert read_response(many)[0] == 400
        with sockets(served, 1) as (small,):
            small.sendall(head("GET", "/ca.crt", "X-Small: " + "a" * 4000))
            assert read_response(small)[0] == 200


# ---------------------------------------------------------------------------- request bodies


@pytest.mark.parametrize("path", [URL, "/ocsp"])
def test_a_stalled_upload_gets_408_and_its_connection_is_closed(path: str) -> None:
    """The 408 comes within the body deadline and the connection closes with it.

    Old code: no body deadline at all (the handler waited for the body for ever).
    """
    timeout = 1.0
    limits = ServerLimits(header_timeout=30, keep_alive=30)  # only the body deadline acts
    options = {**NO_AUTH, "app_options": {**NO_AUTH["app_options"], "body_timeout": timeout}}
    with serve_hold(limits=limits, **options) as served, sockets(served, 2) as (stalled, slow):
        started = time.monotonic()
        stalled.sendall(head("POST", path, "Content-Length: 1000") + b'{"userDid": ')
        status, headers, data = read_response(stalled, timeout=timeout + SLACK)
        assert time.monotonic() - started < timeout + SLACK
        assert status == 408
        assert json.loads(data)["error"] == "RequestTimeout"
        assert headers.get("connection") == "close"
        assert closed_within(stalled, SLACK) is not None
        # a body that keeps coming, too slowly, is cut off the same way
        started = time.monotonic()
        slow.sendall(head("POST", path, "Content-Length: 1000"))
        assert closed_within(slow, timeout + SLACK, drip=b" " * 1000) is not None
        assert time.monotonic() - started < timeout + SLACK


def test_slow_clients_are_dropped_while_a_well_behaved_client_is_served() -> None:
    """Half heads and half bodies on a dozen connections. Old code: none ever dropped."""
    timeout = 1.5
    limits = ServerLimits(header_timeout=timeout, keep_alive=30)
    with serve_hold(limits=limits, app_options={"body_timeout": timeout}) as served:
        der = ocsp_der(served)
        with sockets(served, 12) as slow:
            started = time.monotonic()
            for i, sock in enumerate(slow):
                if i % 2:
                    sock.sendall(head("POST", "/ocsp", f"Content-Length: {len(der)}") + der[:5])
                else:
                    sock.sendall(b"POST /ocsp HTTP/1.1\r\nHost: 1")  # half a head
            # meanwhile: a normal client, served at once, while every slow one is still open
            with httpx.Client(base_url=served.base, timeout=30) as client:
                assert client.get("/ca.crt").status_code == 200
                answer = client.post("/ocsp", content=der)
                assert answer.status_code == 200
                assert ocsp.load_der_ocsp_response(answer.content).certificate_status == (
                    ocsp.OCSPCertStatus.GOOD
                )
            assert all(is_open(s) for s in slow)
            # and then every slow one is dropped by its deadline
            for sock in slow:
                left = timeout + SLACK - (time.monotonic() - started)
                assert closed_within(sock, max(left, 0.1)) is not None


def test_bodies_over_the_limit_are_refused_while_streaming() -> None:
    """No Content-Length (chunked): 413 once the limit is passed, not after the upload.

    The client sends 512 KiB of a body that never ends (no last chunk): the answer must
    come while the upload is still open. Old code: a 4 MiB limit, and no answer before the
    body ends.
    """
    with serve_hold(**NO_AUTH) as served:
        with sockets(served, 1) as (sock,):
            sock.sendall(head("POST", URL, "Transfer-Encoding: chunked"))
            chunk = b"x" * 65536
            for _ in range(8):  # 512 KiB offered, the limit is 256 KiB; never finished
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except (BrokenPipeError, ConnectionResetError):
                    break
            status, _, data = read_response(sock)
            assert (status, json.loads(data)["error"]) == (413, "PayloadTooLarge")
        too_big = served.http.post("/ocsp", content=b"\x30" * (65 * 1024))
        assert (too_big.status_code, too_big.json()["error"]) == (413, "PayloadTooLarge")


def test_json_depth_is_checked_before_parsing_and_strings_do_not_count() -> None:
    """At the limit the body reaches field validation; one deeper is refused unparsed.

    Old code: no depth limit (17 levels parsed; 120 000 raised RecursionError, a 500).
    """
    with serve_hold(**NO_AUTH) as served:

        def message(text: str) -> str:
            r = served.http.post(URL, content=text.encode())
            assert r.status_code == 400
            assert r.json()["error"] == "InvalidRequest"
            return str(r.json()["message"])

        at_limit = '{"x": ' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}"
        assert "deeper" not in message(at_limit)  # parsed, then refused for its fields
        deeper = '{"x": ' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "}"
        assert "deeper" in message(deeper)
        in_string = json.dumps({"userDid": "[" * 10_000 + "{" * 10_000})
        assert "deeper" not in message(in_string)


def test_an_unclosed_string_of_escaped_quotes_is_refused_at_once() -> None:
    """A body that opens a string of escaped quotes and never closes it.

    Old code: the depth check's string regex backtracked from every quote, quadratic in
    the body (32 KB took 8.8 s, holding the GIL: the whole server stalled; 250 KB would take
    minutes). Now it is linear and the JSON parser refuses the body.
    """
    with serve_hold(**NO_AUTH) as served:
        attack = b'{"userDid": "' + b'\\"' * (125 * 1024)
        start = time.monotonic()
        r = served.http.post(URL, content=attack)
        assert (r.status_code, r.json()["error"]) == (400, "InvalidRequest")
        assert time.monotonic() - start < 5  # not a speed goal: the server must not hang
        assert served.http.get("/ca.crt").status_code == 200


def test_duplicate_keys_are_refused() -> None:
    """A proxy and the hold must not read one body two ways (old code: the last key won)."""
    with serve_hold(**NO_AUTH) as served:
        for text in ('{"userDid": "did:plc:a", "userDid": "did:plc:b"}', '{"size": NaN}'):
            r = served.http.post(URL, content=text.encode())
            assert (r.status_code, r.json()["error"]) == (400, "InvalidRequest")
            assert "not valid JSON" in r.json()["message"]


def test_every_error_is_an_xrpc_json_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """500 from an unexpected exception too, without its details (old code: text/plain)."""
    with serve_hold(**NO_AUTH) as served:

        def broken(*args: object, **kwargs: object) -> bytes:
            raise RuntimeError("secret /var/lib/hold detail")

        monkeypatch.setattr(served.ca, "crl_der", broken)
        monkeypatch.setattr(served.ca, "ocsp", broken)
        cases = [
            ("GET", "/ca.crl", 500, "InternalServerError"),
            ("POST", "/ocsp", 500, "InternalServerError"),
            ("GET", "/xrpc/io.atcr.hold.nothing", 404, "NotFound"),
            ("POST", "/ca.crt", 405, "MethodNotAllowed"),
            ("DELETE", URL, 405, "MethodNotAllowed"),
        ]
        for method, path, status, error in cases:
            with httpx.Client(base_url=served.base, timeout=30) as client:
                r = client.request(method, path, content=b"\x30\x00")
            assert r.status_code == status, (method, path)
            assert r.headers["content-type"] == "application/json"
            assert r.json()["error"] == error
            assert r.json()["message"]
            assert "secret" not in r.text


def test_audit_events_of_refused_requests_stay_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Huge tokens, URIs and stalled uploads: each refusal audited, in a short line.

    Old code: authentication and transport refusals (401, 408) were not audited at all.
    """
    timeout = 1.0
    with serve_hold(app_options={"body_timeout": timeout}) as served:
        repo, _, image, uri = user(served, tmp_path)
        with caplog.at_level(logging.INFO, logger="holdca.audit"):
            token = "Bearer " + "e" * 60_000
            r = served.http.post(URL, json=body(repo, uri, image), headers={"Authorization": token})
            assert r.status_code == 401
            long_uri = body(repo, uri + "x" * 200_000, image)
            r = served.http.post(URL, json=long_uri, headers=auth(repo))
            assert r.status_code == 400
            with sockets(served, 1) as (sock,):
                sock.sendall(head("POST", URL, "Content-Length: 500", *auth_lines(repo)) + b'{"a"')
                assert read_response(sock)[0] == 408
            assert served.http.post(URL, json=body(repo, uri, image), headers=auth(repo)).is_success
        events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "holdca.audit"]
        refused = [e for e in events if e["event"] == "refused"]
        assert [e.get("code") for e in refused] == ["BadJwt", None, "RequestTimeout"]
        assert sum(e["event"] == "issued" for e in events) == served.ca.ledger.count() == 1
        assert max(len(r.getMessage()) for r in caplog.records) < 4000


def auth_lines(repo: Any) -> list[str]:
    return [f"{k}: {v}" for k, v in auth(repo).items()]


# ---------------------------------------------------------------------------- connections


def test_idle_keep_alive_connections_are_closed() -> None:
    """Old code ran uvicorn's 5 s default; here the configured 1 s is what applies."""
    keep_alive = 1.0
    limits = ServerLimits(keep_alive=keep_alive, header_timeout=30)
    with serve_hold(limits=limits) as served, sockets(served, 1) as (sock,):
        sock.sendall(head("GET", "/ca.crt"))
        status, headers, _ = read_response(sock)
        assert status == 200
        assert headers.get("connection") != "close"  # kept alive ...
        assert closed_within(sock, keep_alive + SLACK) is not None  # ... for a while


def test_connections_beyond_max_connections_get_503_until_slots_free() -> None:
    """At the limit everyone is served; beyond it 503 at once; idle hoarders are dropped.

    Old code: no limit (every connection served, none ever dropped).
    """
    limit, timeout = 3, 1.5
    limits = ServerLimits(max_connections=limit, header_timeout=timeout, keep_alive=30)
    with serve_hold(limits=limits) as served:
        with sockets(served, limit) as socks:
            for sock in socks[:-1]:  # limit - 1 kept-alive connections, surely registered
                sock.sendall(head("GET", "/ca.crt"))
                assert read_response(sock)[0] == 200
            socks[-1].sendall(head("GET", "/ca.crt"))  # the limit-th: still served
            assert read_response(socks[-1])[0] == 200
            started = time.monotonic()
            with sockets(served, 1) as (beyond,):
                beyond.sendall(head("GET", "/ca.crt"))
                status, headers, _ = read_response(beyond)
                assert status == 503
                assert headers.get("connection") == "close"
            # the idle ones are dropped by the head deadline, which frees the slots
            for sock in socks:
                left = timeout + SLACK - (time.monotonic() - started)
                assert closed_within(sock, max(left, 0.1)) is not None
        deadline = time.monotonic() + SLACK
        while get_ok(served) != 200:  # the server notices the closed sockets soon after
            assert time.monotonic() < deadline
            time.sleep(0.05)


# ---------------------------------------------------------------------------- ledger locking


class SignalingLedger(SQLiteLedger):
    """A SQLiteLedger that says when a request reaches one of its writes."""

    def __init__(self, path: Path, *, busy_timeout: float) -> None:
        super().__init__(path, busy_timeout=busy_timeout)
        self.writing = threading.Event()

    def record_issuance(self, record: IssuanceRecord) -> None:
        self.writing.set()
        super().record_issuance(record)

    def use_token(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        self.writing.set()
        return super().use_token(key, expires_at=expires_at, now=now)


@pytest.mark.parametrize("authenticated", [False, True], ids=["no-auth", "service-auth"])
def test_a_locked_ledger_fails_cosign_with_503_while_status_answers(
    tmp_path: Path, authenticated: bool
) -> None:
    """Another process holds the write lock: the cosign waits busy_timeout, then 503.

    OCSP, the CRL and the CA certificate are answered meanwhile (readers have their own
    connections). Old code: one connection and one lock for reads and writes, so the
    status requests queued behind the blocked cosign.
    """
    busy = 3.0
    ledger = SignalingLedger(tmp_path / "ledger.sqlite3", busy_timeout=busy)
    options: dict[str, Any] = {} if authenticated else NO_AUTH
    with serve_hold(ledger=ledger, **options) as served:
        repo, _, image, uri = user(served, tmp_path)
        der = ocsp_der(served)
        issued = ledger.count()
        crl = served.http.get("/ca.crl").content  # built before the lock
        holder = sqlite3.connect(ledger.path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        try:
            ledger.writing.clear()
            outcome: list[httpx.Response] = []
            done = threading.Event()
            headers = auth(repo) if authenticated else {}

            def cosign() -> None:
                with httpx.Client(base_url=served.base, timeout=60) as client:
                    outcome.append(client.post(URL, json=body(repo, uri, image), headers=headers))
                done.set()

            started = time.monotonic()
            thread = threading.Thread(target=cosign)
            thread.start()
            assert ledger.writing.wait(30)  # the cosign now waits for the lock
            assert served.http.get("/ca.crl").content == crl
            answer = served.http.post("/ocsp", content=der)
            assert ocsp.load_der_ocsp_response(answer.content).certificate_status == (
                ocsp.OCSPCertStatus.GOOD
            )
            assert served.http.get("/ca.crt").status_code == 200
            assert not done.is_set()  # all answered while the cosign was still waiting
            thread.join(busy + 30)
            assert time.monotonic() - started < busy + SLACK + 3  # (+ the proof's checks)
            [response] = outcome
            assert response.status_code == 503
            assert response.json()["error"] == "NotEnoughResources"
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        again = served.http.post(URL, json=body(repo, uri, image), headers=auth(repo))
        assert again.status_code == 200, again.text
        assert ledger.count() == issued + 1
    ledger.close()
