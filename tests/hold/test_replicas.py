"""Two ``holdca serve`` replicas on one PostgreSQL ledger: real processes (issue 16).

Every hold here is ``python -m holdca serve`` (service auth on) started from one
``holdca init --home`` directory with ``HOLD_LEDGER_URL`` set; the DIDs' PLC logs and
records come from a PDS stand-in in a forked process (:mod:`holdca.testing.fleet`).
Oracles: the X.509 parsing of what the replicas answer (cryptography), the ledger read
back through a fresh :class:`PostgresLedger`, the CA certificate file ``holdca rotate``
writes, and the wall clock.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from holdca.server import COSIGN_NSID
from holdca.testing.atproto import TestRepo
from holdca.testing.fleet import ServeProcess, StandIn, hold_env, listen, run_cli, site_of
from holdca.testing.plc import plc_repo
from tests.postgres import PostgresServer

pytest.importorskip("psycopg")

HOLD_DID = "did:web:hold.replicas.example.com"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
RECORDS = 40
LIMIT = 5


@dataclass
class User:
    repo: TestRepo
    uris: list[str]
    digests: list[str]
    lock: threading.Lock = field(default_factory=threading.Lock)
    next: int = 0

    def request(self) -> tuple[bytes, dict[str, str]]:
        """A cosign body for the next record and a fresh service-auth token."""
        with self.lock:
            i = self.next % len(self.uris)
            self.next += 1
        body = {
            "userDid": self.repo.did,
            "recordUri": self.uris[i],
            "manifest": {"mediaType": MANIFEST, "digest": self.digests[i], "size": 1234},
        }
        token = self.repo.service_token(HOLD_DID, COSIGN_NSID)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return json.dumps(body).encode(), headers


@dataclass
class World:
    stand_in: StandIn
    users: dict[str, User]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """The stand-in serving three DIDs ("main", "limited", "load"), 40 records each."""
    sock = listen()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    users, sites = {}, []
    for name in ("main", "limited", "load"):
        repo, plc = plc_repo(pds_endpoint=url)
        digests = [f"sha256:{name.encode().hex()}{i:060x}"[:71] for i in range(RECORDS)]
        uris = repo.put_manifests(digests, repository=f"replicas/{name}", hold_did=HOLD_DID)
        users[name] = User(repo, uris, digests)
        sites.append(site_of(repo, plc, uris))
    stand_in = StandIn(sock, sites)
    try:
        yield World(stand_in, users)
    finally:
        stand_in.stop()


@dataclass
class Fleet:
    home: Path
    env: dict[str, str]
    url: str
    replicas: list[ServeProcess]

    def ledger(self) -> Any:
        from holdca.hold.ledger import PostgresLedger  # noqa: PLC0415

        return PostgresLedger(self.url)


def start_fleet(world: World, url: str, home: Path, replicas: int = 2, **extra: str) -> Fleet:
    """``holdca init`` on ``url``, then ``replicas`` ``holdca serve`` processes."""
    env = hold_env(world.stand_in, ledger_url=url, HOLD_AUDIT_LOG=str(home / "audit.jsonl"),
                   **{"HOLD_RATE_LIMIT_PER_HOUR": "0", **extra})  # fmt: skip
    run_cli(home, env, "init", "--did", HOLD_DID, "--country", "US", "--state", "CA",
            "--org", "Replica Hold")  # fmt: skip
    fleet = Fleet(home, env, url, [])
    try:
        for _ in range(replicas):
            fleet.replicas.append(ServeProcess(home, env))
    except BaseException:
        stop(fleet)
        raise
    return fleet


def stop(fleet: Fleet) -> None:
    for replica in fleet.replicas:
        replica.stop()


@pytest.fixture
def fleet(world: World, postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Fleet]:
    started = start_fleet(world, postgres_server.fresh_schema(), tmp_path / "hold")
    try:
        yield started
    finally:
        stop(started)


def cosign(client: httpx.Client, base: str, user: User) -> httpx.Response:
    body, headers = user.request()
    return client.post(f"{base}/xrpc/{COSIGN_NSID}", content=body, headers=headers)


def chain_of(answer: dict[str, Any]) -> list[x509.Certificate]:
    """The x5c chain in the answer's JWS envelope (unprotected header), leaf first."""
    envelope = json.loads(base64.b64decode(answer["envelope"]))
    return [x509.load_der_x509_certificate(base64.b64decode(c)) for c in envelope["header"]["x5c"]]


def fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


def signed_by(leaf: x509.Certificate, root: x509.Certificate) -> bool:
    """Whether ``root``'s key signed ``leaf`` (during a grace period the chain's issuing CA
    is the new root's cross-certificate: same name and key, signed by the old root)."""
    try:
        leaf.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def crl_number(der: bytes) -> tuple[int, set[int]]:
    crl = x509.load_der_x509_crl(der)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return number, {entry.serial_number for entry in crl}


def test_two_replicas_unique_serials_and_monotonic_crl_numbers(fleet: Fleet, world: World) -> None:
    """Concurrent cosigns on both replicas: every serial distinct, and each one in the
    ledger; then revocations by a third process between alternating GET /ca.crl from both:
    the CRL numbers never go back and each CRL lists every revocation made before it."""
    user = world.users["main"]
    a, b = fleet.replicas

    def work(i: int) -> int:
        with httpx.Client(timeout=60) as client:
            answer = cosign(client, (a, b)[i % 2].base, user)
            assert answer.status_code == 200, answer.text
            return int(answer.json()["serial"], 16)

    with ThreadPoolExecutor(8) as pool:
        serials = list(pool.map(work, range(40)))
    assert len(set(serials)) == len(serials) == 40
    ledger = fleet.ledger()
    try:
        assert all(ledger.get(s) is not None for s in serials)
        numbers: list[int] = []
        revoked: set[int] = set()
        with httpx.Client(timeout=60) as client:
            for round_, serial in enumerate(serials[:4]):
                run_cli(fleet.home, fleet.env, "revoke", "--serial", format(serial, "x"))
                revoked.add(serial)
                for replica in (a, b) if round_ % 2 == 0 else (b, a):
                    got = client.get(f"{replica.base}/ca.crl")
                    assert got.status_code == 200
                    number, listed = crl_number(got.content)
                    assert revoked <= listed, f"{replica.base} served a stale CRL"
                    numbers.append(number)
    finally:
        ledger.close()
    assert numbers == sorted(numbers), numbers
    assert numbers[-1] > numbers[0]


def test_rate_limit_is_shared(
    world: World, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """HOLD_RATE_LIMIT_PER_HOUR=5 on both replicas; 16 concurrent requests spread over
    both: at most 5 certificates in all (the rest refused), and at most 5 in the ledger."""
    limited = start_fleet(world, postgres_server.fresh_schema(), tmp_path / "hold",
                          HOLD_RATE_LIMIT_PER_HOUR=str(LIMIT))  # fmt: skip
    user = world.users["limited"]
    try:
        bodies = [user.request() for _ in range(16)]
        barrier = threading.Barrier(16)

        def work(i: int) -> int:
            body, headers = bodies[i]
            with httpx.Client(timeout=60) as client:
                barrier.wait()
                base = limited.replicas[i % 2].base
                return client.post(
                    f"{base}/xrpc/{COSIGN_NSID}", content=body, headers=headers
                ).status_code

        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(work, range(16)))
        ledger = limited.ledger()
        try:
            issued = len(ledger.by_did(user.repo.did))
        finally:
            ledger.close()
    finally:
        stop(limited)
    assert codes.count(200) == issued
    assert 1 <= issued <= LIMIT, codes
    assert all(code in (200, 429) for code in codes), codes


def test_rotation_and_retirement_reach_both_replicas(fleet: Fleet, world: World) -> None:
    """``holdca rotate`` and ``holdca retire`` as a third process: the next signature from
    each replica is made with the new root's key (the root rotate wrote to ca.crt), and
    after retire neither replica's trust bundle nor its chain has the old root."""
    user = world.users["main"]
    old = x509.load_pem_x509_certificate((fleet.home / "ca.crt").read_bytes())
    with httpx.Client(timeout=60) as client:
        for replica in fleet.replicas:
            got = cosign(client, replica.base, user)
            assert got.status_code == 200, got.text
            assert signed_by(chain_of(got.json())[0], old)
        run_cli(fleet.home, fleet.env, "rotate", "--new-label", "hold-ca-2")
        new = x509.load_pem_x509_certificate((fleet.home / "ca.crt").read_bytes())
        assert fingerprint(new) != fingerprint(old)
        for replica in fleet.replicas:
            got = cosign(client, replica.base, user)
            assert got.status_code == 200, got.text
            assert signed_by(chain_of(got.json())[0], new), replica.base
            bundle = x509.load_pem_x509_certificates(client.get(f"{replica.base}/ca-bundle.crt")
                                                     .content)  # fmt: skip
            assert {fingerprint(c) for c in bundle} == {fingerprint(old), fingerprint(new)}
        run_cli(fleet.home, fleet.env, "retire")
        for replica in fleet.replicas:
            bundle = x509.load_pem_x509_certificates(client.get(f"{replica.base}/ca-bundle.crt")
                                                     .content)  # fmt: skip
            assert [fingerprint(c) for c in bundle] == [fingerprint(new)], replica.base
            got = cosign(client, replica.base, user)
            assert got.status_code == 200, got.text
            chain = chain_of(got.json())
            assert signed_by(chain[0], new), replica.base
            assert fingerprint(old) not in {fingerprint(c) for c in chain}, replica.base


@dataclass
class Load:
    """Client threads cosigning against some replicas until stopped."""

    targets: list[ServeProcess]
    user: User
    threads: int = 8
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    results: list[tuple[str, float, float, int, int | None]] = field(default_factory=list)
    """(base, start, end, status or 0 for a transport error, serial of a 200)"""

    def run(self) -> list[threading.Thread]:
        def loop(i: int) -> None:
            base = self.targets[i % len(self.targets)].base
            with httpx.Client(timeout=60) as client:
                while not self.stop.is_set():
                    start = time.monotonic()
                    try:
                        got = cosign(client, base, self.user)
                        status = got.status_code
                        serial = int(got.json()["serial"], 16) if status == 200 else None
                    except httpx.TransportError:
                        status, serial = 0, None
                        time.sleep(0.05)
                    with self.lock:
                        self.results.append((base, start, time.monotonic(), status, serial))

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(self.threads)]
        for thread in threads:
            thread.start()
        return threads

    def ok(self, base: str | None = None, after: float = 0.0) -> int:
        with self.lock:
            return sum(1 for r in self.results if r[3] == 200 and r[1] >= after
                       and (base is None or r[0] == base))  # fmt: skip


def wait_for(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_sigkill_mid_batch_loses_no_acknowledged_issuance(fleet: Fleet, world: World) -> None:
    """Requests in flight on both replicas; replica A gets SIGKILL: every serial a client
    received (from either) is in the ledger, and B keeps answering 200 afterwards."""
    a, b = fleet.replicas
    load = Load([a, b], world.users["load"], threads=10)
    threads = load.run()
    try:
        assert wait_for(lambda: load.ok(a.base) >= 20, 60), "replica A served nothing"
        a.kill()
        killed = time.monotonic()
        assert wait_for(lambda: load.ok(b.base, after=killed) >= 20, 60), "B stopped serving"
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(90)
    acknowledged = {r[4] for r in load.results if r[4] is not None}
    ledger = fleet.ledger()
    try:
        missing = [s for s in acknowledged if ledger.get(s) is None]
    finally:
        ledger.close()
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged serials lost"
    assert any(r[0] == a.base and r[3] == 0 for r in load.results), "A was not cut off mid-load"


def test_postgres_restart_under_load(world: World, tmp_path: Path) -> None:
    """PostgreSQL stopped for 4 s under load on both replicas, then started: requests in
    that window end with 503 (never hang: each within 20 s, the pool's 5 s wait plus the
    10 s statement timeout and the HTTP round trip), and 200s return within 30 s of the
    start, with the same holdca processes."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    server = PostgresServer(port=55632 + (int(worker) if worker.isdigit() else 0))
    try:
        fleet = start_fleet(world, server.fresh_schema(), tmp_path / "hold")
        load = Load(fleet.replicas, world.users["load"], threads=6)
        threads = load.run()
        try:
            assert wait_for(lambda: load.ok() >= 20, 60)
            server.stop(remove=False)
            down = time.monotonic()
            time.sleep(4)
            server.start()
            up = time.monotonic()
            assert wait_for(lambda: load.ok(after=up) >= 10, 30), "no recovery in 30 s"
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(90)
            pids = [r.process.poll() for r in fleet.replicas]
            stop(fleet)
    finally:
        server.stop()
    assert pids == [None, None], "a replica exited"
    during = [r for r in load.results if r[2] > down and r[1] < up]
    assert any(r[3] == 503 for r in during), {r[3] for r in during}
    assert {r[3] for r in during} <= {200, 503}
    assert max(r[2] - r[1] for r in load.results) < 20
