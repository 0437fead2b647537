"""Benchmark: the hold's HTTP server end to end on 127.0.0.1, against HoldCA.cosign_many.

What runs where (2 CPUs: the server gets one, everything else the other):

* **the hold**: ``holdca.server.create_app`` under uvicorn (``uvicorn_config``, the
  configuration ``holdca serve`` uses), in its **own process** pinned to one CPU. A
  process, not a thread: the load generator is Python too, and in the same process its
  per-request CPU (httpx) would share the hold's GIL and be billed to the hold; a real
  hold's clients are elsewhere. The hold authenticates every request with a service-auth
  JWT (signature by the DID's key, ``jti`` recorded in the ledger), resolves the DID
  through its ``HTTPResolver`` with ``reuse_identities=True`` (the resolver's cache: the
  PLC log is fetched and verified once), fetches the proof (no hint: getRecord) from the
  PDS stand-in for every request, signs, commits to its ledger and answers.
* **the PDS stand-in**: a small asyncio HTTP/1.1 server (keep-alive) in a third process,
  on the other CPU, answering ``/{did}/log/audit`` (a signed PLC log, ``holdca.testing.plc``),
  ``com.atproto.sync.getRecord`` and ``getLatestCommit`` from prebuilt bytes for one
  10k-record ``TestRepo`` (so it costs the hold a loopback round trip, little else).
* **the clients**: this process, on the other CPU: asyncio loops of 1, 8 or 64 concurrent
  requests, one keep-alive connection each, on a minimal HTTP/1.1 client (httpx's
  AsyncClient costs more CPU per request than the hold's cosign: see :class:`Connection`),
  each request with a fresh token minted beforehand (a ``jti`` is single-use), cycling
  through 200 records.
* **the reference**: ``HoldCA.cosign_many`` (batches of 32, the same ledger kind, a
  ``FrozenNetwork`` from bench_cosign: no HTTP at all, cached identities, no hint) run in
  this process while it is pinned to the *hold's* CPU and the hold is idle.

Each figure alternates bursts: a reference burst (0.2 s) and an HTTP burst (0.4 s; the
requests still in flight at its end are completed, uncounted, before the next burst), so
the ratio is the median of per-pair ratios (their p10..p90 in the note). Latency is the
client's wall time per request (p50 and p99 over all pairs). "hold CPU" is the hold
process's CPU time per wall second during the HTTP bursts (1.0 = its core saturated).

Also: POST /ocsp of one cached answer (8 clients) against bare P-256 signs on the hold's
CPU, and GET /ca.crl with 0, 10k and 100k revocations (1 client; the time grows with the
bytes sent, the CRL itself is built once: see bench_crl_ocsp.py for ``crl_der``).

Usage: ``python benchmarks/bench_server.py [--seconds 1.0] [--json] [--no-sqlite]``
(about 90 s). Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import multiprocessing as mp
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _harness import (
    Paired,
    Row,
    burst,
    emit,
    environment,
    k256_verify,
    p256_sign,
    paired,
    quantile,
)
from bench_cosign import BATCH, FrozenNetwork
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from holdca.atproto.resolve import HTTPResolver
from holdca.hold import HoldCA, IssuanceLedger, MemoryLedger, SQLiteLedger
from holdca.hold.ledger import IssuanceRecord
from holdca.keys import MemoryKeyStore
from holdca.net import AddressPolicy
from holdca.notation import Descriptor
from holdca.pki import SubjectInfo
from holdca.server import COSIGN_NSID, create_app
from holdca.server.run import uvicorn_config
from holdca.testing.atproto import TestRepo
from holdca.testing.fleet import Site, StandIn, listen
from holdca.testing.plc import TestPLC, plc_repo

BENCH = "server"
HOLD_DID = "did:web:hold.bench.example.com"
SUBJECT = SubjectInfo("US", "CA", "Bench Hold")
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CLIENTS = (1, 8, 64)
REF_BURST = 0.2
HTTP_BURST = 0.4
PAIRS = 8
"""Pairs of bursts per figure at ``--seconds 1`` (scaled with it, at least 4)."""
TOKEN_LIFETIME = timedelta(minutes=4)


# --- the PDS and PLC stand-in ----------------------------------------------------------------


# (the stand-in is holdca.testing.fleet.StandIn, serving one Site)


# --- the hold process ------------------------------------------------------------------------


def _populate(ca: HoldCA, count: int) -> None:
    """Add ``count`` revoked certificates (synthetic ledger records) to ``ca``'s ledger."""
    now = datetime.now(UTC)
    issuer = ca.ca_id
    base = int.from_bytes(os.urandom(12), "big") << 32
    start = ca.ledger.count()
    records = [
        IssuanceRecord(
            serial=base + start + i + 1,
            did="did:plc:ewvi7nxzyoun6zhxrhs64oiz",
            manifest_digest="sha256:" + "00" * 32,
            commit_cid=None,
            rev=None,
            not_before=now - timedelta(hours=1),
            not_after=now + timedelta(hours=23),
            certificate_der=b"\x30\x00",
            issuer_id=issuer,
            issued_at=now - timedelta(hours=1),
            kind="issue",
        )
        for i in range(count)
    ]
    ca.ledger.record_issuances(records)
    for record in records:
        ca.ledger.revoke(record.serial, revoked_at=now, reason="superseded")


def _run_hold(
    sock: socket.socket, pds_url: str, ledger_path: str, cpu: int | None, control: Any
) -> None:
    """The hold process: uvicorn in this process's main thread, a control thread beside it."""
    import uvicorn  # noqa: PLC0415

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    logging.getLogger("holdca").setLevel(logging.WARNING)  # audit events: formatted, dropped
    port = int(pds_url.rsplit(":", 1)[1])
    resolver = HTTPResolver(
        plc_url=pds_url, policy=AddressPolicy.parse(f"127.0.0.1:{port}"), cache_ttl=3600.0
    )
    ledger: IssuanceLedger = SQLiteLedger(ledger_path) if ledger_path else MemoryLedger()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    ca = HoldCA.open(
        MemoryKeyStore(),
        ledger,
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=datetime.now(UTC),
        create=True,
        crl_url=f"{base}/ca.crl",
        ocsp_url=f"{base}/ocsp",
        resolver=resolver,
        reuse_identities=True,
    )
    server = uvicorn.Server(uvicorn_config(create_app(ca), log_level="warning"))

    def commands() -> None:
        while True:
            try:
                command, arg = control.recv()
            except EOFError:
                command, arg = "stop", 0
            if command == "populate":
                _populate(ca, arg)
                control.send(ca.ledger.count())
            elif command == "stop":
                server.should_exit = True
                return

    threading.Thread(target=commands, daemon=True).start()
    server.run(sockets=[sock])


@dataclass
class Hold:
    """A running hold process and how to reach it."""

    process: Any
    control: Any
    base: str

    def cpu_seconds(self) -> float:
        """The hold process's CPU time so far (user + system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def populate(self, count: int) -> int:
        """Add ``count`` revoked certificates; returns the ledger's issuance count."""
        self.control.send(("populate", count))
        return int(self.control.recv())

    def stop(self) -> None:
        """Ask the hold to exit, and wait."""
        with contextlib.suppress(BrokenPipeError, OSError):
            self.control.send(("stop", 0))
        self.process.join(15)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def start_hold(pds_url: str, ledger_path: str, cpu: int | None) -> Hold:
    """Fork a hold process (see the module docstring) and wait until it answers."""
    ctx = mp.get_context("fork")
    sock = listen()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=_run_hold, args=(sock, pds_url, ledger_path, cpu, theirs))
    process.start()
    sock.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/ca.crt", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not process.is_alive():
            raise RuntimeError("the hold did not start")
        time.sleep(0.05)
    return Hold(process, ours, base)


# --- the clients -----------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection (requests with Content-Length, responses too).

    The load generator is this, not httpx: httpx's AsyncClient costs about 3 ms of CPU
    per request on the benchmark machine (a GET of /ca.crt: 3.8 ms with it, 0.45 ms with
    a bare socket), more than a cosign, so with it the figures would measure httpx.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """(status, body); reconnects once if the server closed an idle connection."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        message = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n"
        ).encode() + body
        for attempt in (0, 1):
            if self.writer is None:
                await self._open()
            assert self.reader is not None
            assert self.writer is not None
            try:
                self.writer.write(message)
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                if attempt:
                    raise
                continue
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            data = await self.reader.readexactly(length)
            return status, data
        raise RuntimeError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Pool:
    """Connections to one server, one per concurrent request loop, kept between bursts."""

    def __init__(self, base: str) -> None:
        self.port = int(base.rsplit(":", 1)[1])
        self.idle: list[Connection] = []

    def get(self) -> Connection:
        """An idle connection, or a new one."""
        return self.idle.pop() if self.idle else Connection(self.port)

    def put(self, connection: Connection) -> None:
        """Give a connection back."""
        self.idle.append(connection)

    def close(self) -> None:
        """Close every idle connection."""
        for connection in self.idle:
            connection.close()
        self.idle.clear()


async def call(
    pool: Pool, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request on a pooled connection."""
    connection = pool.get()
    try:
        return await connection.request(method, path, body, headers)
    finally:
        pool.put(connection)


@dataclass
class Users:
    """The repo whose records are co-signed, and request bodies cycling over 200 of them."""

    repo: TestRepo
    bodies: Iterator[bytes]
    tokens: list[str] = field(default_factory=list)
    sent: int = 0

    def mint(self, count: int) -> None:
        """Make sure ``count`` unused tokens are ready (minted outside the timed bursts)."""
        missing = count - len(self.tokens)
        if missing > 0:
            mint = self.repo.service_token
            self.tokens += [
                mint(HOLD_DID, COSIGN_NSID, lifetime=TOKEN_LIFETIME) for _ in range(missing)
            ]


@dataclass
class Burst:
    """One HTTP burst: completions in the window, latencies, the hold's CPU share."""

    rate: float
    latencies: list[float]
    hold_cpu: float


async def http_burst(pool: Pool, users: Users, hold: Hold, clients: int, seconds: float) -> Burst:
    """``clients`` concurrent request loops for ``seconds``; in-flight requests are finished."""
    latencies: list[float] = []
    done = 0
    cpu0 = hold.cpu_seconds()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    path = f"/xrpc/{COSIGN_NSID}"

    async def loop() -> None:
        nonlocal done
        connection = pool.get()
        try:
            while True:
                start = time.perf_counter()
                if start >= deadline:
                    return
                headers = {
                    "Authorization": f"Bearer {users.tokens.pop()}",
                    "Content-Type": "application/json",
                }
                users.sent += 1
                status, body = await connection.request("POST", path, next(users.bodies), headers)
                end = time.perf_counter()
                if status != 200:
                    raise RuntimeError(f"cosign answered {status}: {body[:300]!r}")
                latencies.append(end - start)
                if end <= deadline:
                    done += 1
        finally:
            pool.put(connection)

    await asyncio.gather(*(loop() for _ in range(clients)))
    wall = time.perf_counter() - t0
    return Burst(done / seconds, latencies, (hold.cpu_seconds() - cpu0) / wall)


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


@dataclass
class Level:
    """The figures of one concurrency level."""

    clients: int
    result: Paired
    p50_ms: float
    p99_ms: float
    hold_cpu: float


async def measure_level(
    pool: Pool,
    users: Users,
    hold: Hold,
    clients: int,
    reference: Callable[[], float],
    pairs: int,
    cpus: tuple[int | None, int | None],
) -> Level:
    """Alternate reference bursts (on the hold's CPU) and HTTP bursts at ``clients``."""
    hold_cpu, mine = cpus
    ratios: list[float] = []
    values: list[float] = []
    refs: list[float] = []
    latencies: list[float] = []
    shares: list[float] = []
    expected = 1500.0  # requests/s, for the tokens to mint: raised to the fastest burst seen
    users.tokens.clear()  # none older than this level (a token lives TOKEN_LIFETIME)
    for i in range(pairs + 1):  # the first pair warms the connections up (dropped)
        users.mint(int(expected * HTTP_BURST * 2) + 4 * clients + 50)
        if i % 2 == 0:
            _pin(hold_cpu)
            ref = reference()
            _pin(mine)
            got = await http_burst(pool, users, hold, clients, HTTP_BURST)
        else:
            got = await http_burst(pool, users, hold, clients, HTTP_BURST)
            _pin(hold_cpu)
            ref = reference()
            _pin(mine)
        expected = max(expected, got.rate)
        if i == 0:
            continue
        ratios.append(got.rate / ref)
        values.append(got.rate)
        refs.append(ref)
        latencies += got.latencies
        shares.append(got.hold_cpu)
    result = Paired(
        ratio=statistics.median(ratios),
        value=statistics.median(values),
        reference=statistics.median(refs),
        p10=quantile(ratios, 0.1),
        p90=quantile(ratios, 0.9),
        pairs=pairs,
    )
    return Level(
        clients,
        result,
        1e3 * quantile(latencies, 0.5),
        1e3 * quantile(latencies, 0.99),
        statistics.median(shares),
    )


def build_users(pds_url: str, records: int, picks: int = 200) -> tuple[Users, Site, TestPLC]:
    """A did:plc repo on the stand-in with ``records`` records naming the hold."""
    repo, plc = plc_repo(pds_endpoint=pds_url)
    digests = [f"sha256:{i:064x}" for i in range(records)]
    uris = repo.put_manifests(digests, repository="bench/app", hold_did=HOLD_DID)
    step = max(1, records // picks)
    chosen = list(range(0, records, step))[:picks]
    cars = {uris[i].rsplit("/", 1)[1]: repo.get_record_car(uris[i]) for i in chosen}
    latest = json.dumps({"cid": str(repo.commit_cid), "rev": repo.rev}).encode()
    site = Site(repo.did, plc.audit_log(), cars, latest)
    bodies = [
        json.dumps(
            {
                "userDid": repo.did,
                "recordUri": uris[i],
                "manifest": {"mediaType": MANIFEST, "digest": digests[i], "size": 1234},
            }
        ).encode()
        for i in chosen
    ]
    return Users(repo, itertools.cycle(bodies)), site, plc


def reference_hold(users: Users, ledger: IssuanceLedger) -> HoldCA:
    """The in-process reference: same records, a FrozenNetwork, cached identities."""
    return HoldCA.open(
        MemoryKeyStore(),
        ledger,
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=datetime.now(UTC),
        create=True,
        resolver=FrozenNetwork([users.repo]),
        reuse_identities=True,
    )


def _requests_of(users: Users, count: int = 200) -> list[Any]:
    """The CosignRequests the bodies describe (for the reference's cosign_many)."""
    from holdca.hold import CosignRequest  # noqa: PLC0415

    out = []
    for _ in range(count):
        body = json.loads(next(users.bodies))
        out.append(
            CosignRequest(
                did=body["userDid"],
                descriptor=Descriptor(MANIFEST, body["manifest"]["digest"], 1234),
                record_uri=body["recordUri"],
                caller=body["userDid"],
            )
        )
    return out


def now_batch_fn(ca: HoldCA, requests: list[Any]) -> Callable[[], Any]:
    """bench_cosign's batch_fn with the real clock (the tokens and TIDs are current)."""
    cycle = itertools.cycle(requests)

    def many() -> Any:
        results = ca.cosign_many([next(cycle) for _ in range(BATCH)], now=datetime.now(UTC))
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise failed[0]
        return results

    return many


# --- OCSP and CRL over HTTP ------------------------------------------------------------------


async def ocsp_request_of(pool: Pool, users: Users) -> bytes:
    """An OCSP request for a certificate the hold just issued (one cosign)."""
    users.mint(1)
    headers = {"Authorization": f"Bearer {users.tokens.pop()}"}
    status, body = await call(pool, "POST", f"/xrpc/{COSIGN_NSID}", next(users.bodies), headers)
    if status != 200:
        raise RuntimeError(f"cosign answered {status}: {body[:300]!r}")
    answer = json.loads(body)
    leaf = x509.load_pem_x509_certificate(answer["certificate"].encode())
    issuer = x509.load_pem_x509_certificate(answer["caCertificates"][0].encode())
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    return request.public_bytes(Encoding.DER)


async def ocsp_burst(
    pool: Pool, der: bytes, clients: int, seconds: float
) -> tuple[float, list[float]]:
    """POST /ocsp of ``der`` from ``clients`` loops; (answers/s, latencies)."""
    latencies: list[float] = []
    done = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    headers = {"Content-Type": "application/ocsp-request"}

    async def loop() -> None:
        nonlocal done
        connection = pool.get()
        try:
            while (start := time.perf_counter()) < deadline:
                status, body = await connection.request("POST", "/ocsp", der, headers)
                end = time.perf_counter()
                if status != 200 or len(body) < 100:
                    raise RuntimeError(f"OCSP answered {status}, {len(body)} B")
                latencies.append(end - start)
                if end <= deadline:
                    done += 1
        finally:
            pool.put(connection)

    await asyncio.gather(*(loop() for _ in range(clients)))
    return done / seconds, latencies


async def crl_get(pool: Pool, repeats: int) -> tuple[float, float, int]:
    """(first GET s, median later GET s, bytes) of GET /ca.crl."""
    t0 = time.perf_counter()
    status, first = await call(pool, "GET", "/ca.crl")
    first_s = time.perf_counter() - t0
    if status != 200:
        raise RuntimeError(f"GET /ca.crl answered {status}")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, body = await call(pool, "GET", "/ca.crl")
        times.append(time.perf_counter() - t0)
        assert body == first
    return first_s, statistics.median(times), len(first)


# --- main ------------------------------------------------------------------------------------


def _level_rows(ledger: str, levels: list[Level], reference: str, fetches: float) -> list[Row]:
    rows = []
    for level in levels:
        r = level.result
        rows.append(
            Row(BENCH, f"POST coSignManifest over HTTP, {ledger}, {level.clients} client"
                f"{'s' if level.clients > 1 else ''}", r.value, "req/s", r.ratio, reference,
                f"p50 {level.p50_ms:.1f} ms, p99 {level.p99_ms:.1f} ms; hold CPU "
                f"{level.hold_cpu:.2f}; {fetches:.2f} PDS fetches per request; {r.spread()}")
        )  # fmt: skip
    return rows


@dataclass
class Setup:
    """The processes and data of a run (forked before any event loop or thread exists)."""

    users: Users
    pds: StandIn
    served: Any
    holds: list[tuple[str, str, Hold]]  # (ledger label, ledger path or "", hold)
    cpus: tuple[int | None, int | None]  # (the hold's CPU, this process's CPU)
    pds_url: str

    def stop(self) -> None:
        """Stop the holds and the stand-in."""
        for _, _, hold in self.holds:
            hold.stop()
        self.pds.stop()


def prepare(args: argparse.Namespace, tmp: Path) -> Setup:
    """Build the repo, fork the PDS stand-in and the holds, and pin this process."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    hold_cpu: int | None = cpus[-1] if len(cpus) >= 2 else None
    mine: int | None = cpus[0] if len(cpus) >= 2 else None
    pds_sock = listen()
    pds_url = f"http://127.0.0.1:{pds_sock.getsockname()[1]}"
    users, site, _ = build_users(pds_url, args.records)
    pds = StandIn(pds_sock, [site], cpu=mine)
    kinds = [("MemoryLedger", "")]
    if not args.no_sqlite:
        kinds.append(("SQLite ledger", str(tmp / "hold.sqlite3")))
    holds = [(label, path, start_hold(pds_url, path, hold_cpu)) for label, path in kinds]
    _pin(mine)
    return Setup(users, pds, pds.served, holds, (hold_cpu, mine), pds_url)


async def run(setup: Setup, args: argparse.Namespace, tmp: Path) -> list[Row]:
    """Every figure (see the module docstring)."""
    users = setup.users
    pairs = max(4, round(PAIRS * args.seconds))
    requests = _requests_of(users)
    rows: list[Row] = []
    for label, path, hold in setup.holds:
        ref_ledger: IssuanceLedger = (
            SQLiteLedger(tmp / "reference.sqlite3") if path else MemoryLedger()
        )
        ref_ca = reference_hold(users, ref_ledger)
        reference = burst(now_batch_fn(ref_ca, requests), REF_BURST, per_call=BATCH)
        ref_name = f"HoldCA.cosign_many ({label}, batches of {BATCH}, in process)"
        pool = Pool(hold.base)
        try:
            sent, served = users.sent, setup.served.value
            levels = [
                await measure_level(pool, users, hold, n, reference, pairs, setup.cpus)
                for n in CLIENTS
            ]
            fetches = (setup.served.value - served) / max(1, users.sent - sent)
            ref_rate = statistics.median(lv.result.reference for lv in levels)
            rows.append(
                Row(BENCH, ref_name, ref_rate, ratio=1.0, reference=ref_name,
                    note="FrozenNetwork (no HTTP), cached identities, no hint; on the hold's "
                    "CPU while the hold is idle; median over every pair")
            )  # fmt: skip
            rows += _level_rows(label, levels, ref_name, fetches)
            if not path:
                _pin(setup.cpus[0])
                sqlite = None if args.no_sqlite else tmp / "auth.sqlite3"
                rows += component_rows(setup, requests, pairs, sqlite)
                _pin(setup.cpus[1])
                rows += await status_rows(pool, users, hold, pairs, setup.cpus)
        finally:
            pool.close()
        ref_ledger.close()
    return rows


def component_rows(setup: Setup, requests: list[Any], pairs: int, sqlite: Path | None) -> list[Row]:
    """Where a served cosign's CPU goes, in this process on the hold's CPU (hold idle).

    Paired bursts, CPU time: the hold's fetcher (``HTTPResolver.get_record``) against a
    bare-socket GET of the same URLs; ``cosign_many`` through an ``HTTPResolver`` against
    the FrozenNetwork reference; ``ServiceAuth.authenticate`` against one bare K-256 verify
    (and, with ``sqlite``, on an SQLite ledger at that path: wall time).
    """
    users = setup.users
    port = int(setup.pds_url.rsplit(":", 1)[1])
    resolver = HTTPResolver(
        plc_url=setup.pds_url, policy=AddressPolicy.parse(f"127.0.0.1:{port}"), cache_ttl=3600.0
    )
    identity = resolver.resolve(users.repo.did)
    rkeys = itertools.cycle([r.record_uri.rsplit("/", 1)[1] for r in requests])
    cpu = time.process_time
    rows: list[Row] = []

    def fetch() -> bytes:
        return resolver.get_record(identity, "io.atcr.manifest", next(rkeys))

    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    target = f"/xrpc/com.atproto.sync.getRecord?did={identity.did}&collection=io.atcr.manifest"

    def bare() -> bytes:
        sock.sendall(f"GET {target}&rkey={next(rkeys)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += sock.recv(65536)
        return body

    got = paired(burst(fetch, REF_BURST, cpu), burst(bare, REF_BURST, cpu), pairs)
    sock.close()
    rows.append(
        Row(BENCH, "HTTPResolver.get_record from the stand-in (the hold's Fetcher: httpcore)",
            got.value, ratio=got.ratio, reference="bare-socket GET of the same URL",
            note=f"CPU time: {1e6 / got.value:.0f} µs vs {1e6 / got.reference:.0f} µs; "
            f"{got.spread()}")
    )  # fmt: skip

    frozen = reference_hold(users, MemoryLedger())
    fetching = HoldCA.open(
        MemoryKeyStore(),
        MemoryLedger(),
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=datetime.now(UTC),
        create=True,
        resolver=resolver,
        reuse_identities=True,
    )
    got = paired(
        burst(now_batch_fn(fetching, requests), REF_BURST, cpu, BATCH),
        burst(now_batch_fn(frozen, requests), REF_BURST, cpu, BATCH),
        pairs,
    )
    rows.append(
        Row(BENCH, f"HoldCA.cosign_many (MemoryLedger, batches of {BATCH}), proof fetched by "
            "HTTPResolver from the stand-in", got.value, ratio=got.ratio,
            reference="the same with the FrozenNetwork (no HTTP)",
            note=f"CPU time: {1e6 / got.value:.0f} µs vs {1e6 / got.reference:.0f} µs per "
            f"cosign; {got.spread()}")
    )  # fmt: skip
    resolver.close()

    from holdca.hold.auth import ServiceAuth  # noqa: PLC0415

    auth = ServiceAuth(frozen.gate.resolver if frozen.gate else resolver, MemoryLedger(),
                       audience=HOLD_DID)  # fmt: skip
    users.mint(300)
    t0 = time.process_time()
    for _ in range(200):
        auth.authenticate(f"Bearer {users.tokens.pop()}", lxm=COSIGN_NSID, now=datetime.now(UTC))
    need = int(200 / max(time.process_time() - t0, 1e-6) * REF_BURST * (pairs + 2) * 1.5)
    users.mint(need + 1000)

    def authenticate() -> str:
        return auth.authenticate(
            f"Bearer {users.tokens.pop()}", lxm=COSIGN_NSID, now=datetime.now(UTC)
        )

    got = paired(burst(authenticate, REF_BURST, cpu), burst(k256_verify(), REF_BURST, cpu), pairs)
    rows.append(
        Row(BENCH, "ServiceAuth.authenticate (parse, claims, K-256 signature, jti; cached "
            "identity, MemoryLedger)", got.value, ratio=got.ratio,
            reference="bare K-256 verify (coincurve)",
            note=f"CPU time: {1e6 / got.value:.0f} µs; {got.spread()}")
    )  # fmt: skip
    if sqlite is not None:  # the jti goes to the used-token table: one transaction each
        auth = ServiceAuth(auth.resolver, SQLiteLedger(sqlite), audience=HOLD_DID)
        users.mint(need + 1000)
        got = paired(burst(authenticate, REF_BURST), burst(k256_verify(), REF_BURST), pairs)
        rows.append(
            Row(BENCH, "ServiceAuth.authenticate, SQLite ledger (the jti's transaction)",
                got.value, ratio=got.ratio, reference="bare K-256 verify (coincurve)",
                note=f"wall time: {1e6 / got.value:.0f} µs; {got.spread()}")
        )  # fmt: skip
        auth.ledger.close()
    return rows


async def status_rows(
    pool: Pool,
    users: Users,
    hold: Hold,
    pairs: int,
    cpus: tuple[int | None, int | None],
) -> list[Row]:
    """POST /ocsp (cached answer) against bare signs; GET /ca.crl at 0, 10k, 100k."""
    hold_cpu, mine = cpus
    der = await ocsp_request_of(pool, users)
    sign = burst(p256_sign(), REF_BURST)
    ratios, values, latencies = [], [], []
    clients = 8
    await ocsp_burst(pool, der, clients, 0.1)  # connections and the cached answer
    for i in range(pairs):
        if i % 2 == 0:
            _pin(hold_cpu)
            ref = sign()
            _pin(mine)
            got, lat = await ocsp_burst(pool, der, clients, HTTP_BURST)
        else:
            got, lat = await ocsp_burst(pool, der, clients, HTTP_BURST)
            _pin(hold_cpu)
            ref = sign()
            _pin(mine)
        ratios.append(got / ref)
        values.append(got)
        latencies += lat
    result = Paired(
        statistics.median(ratios), statistics.median(values), 0.0,
        quantile(ratios, 0.1), quantile(ratios, 0.9), pairs,
    )  # fmt: skip
    rows = [
        Row(BENCH, f"POST /ocsp over HTTP, cached answer, {clients} clients", result.value,
            "req/s", result.ratio, "bare P-256 sign (on the hold's CPU, paired bursts)",
            f"p50 {1e3 * quantile(latencies, 0.5):.1f} ms, p99 "
            f"{1e3 * quantile(latencies, 0.99):.1f} ms; {result.spread()}")
    ]  # fmt: skip
    base_get = 0.0
    added = 0
    for total in (0, 10_000, 100_000):
        if total > added:
            hold.populate(total - added)
            added = total
        first, later, size = await crl_get(pool, 20)
        if not base_get:
            base_get = later
        rows.append(
            Row(BENCH, f"GET /ca.crl over HTTP, {total:,} revocations", 1e3 * later, "ms",
                later / base_get, "GET /ca.crl with 0 revocations",
                f"{size:,} B; first GET after the revocations (builds and signs the CRL) "
                f"{1e3 * first:.1f} ms; median of 20 later GETs, 1 client")
        )  # fmt: skip
    return rows


def main() -> int:
    """Run the benchmark and print its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="JSON lines for run_all.py")
    parser.add_argument("--no-sqlite", action="store_true", help="MemoryLedger rows only")
    args = parser.parse_args()
    logging.getLogger("holdca").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="holdca-bench-server-") as tmpdir:
        setup = prepare(args, Path(tmpdir))
        try:
            rows = asyncio.run(run(setup, args, Path(tmpdir)))
        finally:
            setup.stop()
    if not args.json:
        print(f"{environment()}\n")
    emit(rows, as_json=args.json, title="the server end to end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
