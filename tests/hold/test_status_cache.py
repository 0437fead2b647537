"""OCSP and CRL answers served from memory: caching, invalidation, budgets, replicas.

The oracles are structural, never a speed: a cached OCSP answer is byte-identical to the
first one (ECDSA signatures are randomised, so a new signature always differs) and no new
``respond_ocsp`` call happens; a cached CRL is the very same DER object and the ledger's
``revoked()`` is not read again. Replicas are two :class:`HoldCA` objects on one SQLite
file and one key store. openssl checks a cached answer independently.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import subprocess
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

import holdca.hold.status as status_module
from holdca.errors import DIDSyntaxError, LedgerError
from holdca.hold import AllowAllAuthorizer, HoldCA, IssuanceLedger, MemoryLedger, SQLiteLedger
from holdca.hold.ledger import IssuanceRecord, Revocation
from holdca.hold.status import OCSP_SYNC_INTERVAL
from holdca.keys import MemoryKeyStore
from holdca.server import ClientBudget
from tests.hold.conftest import HOLD_DID, NOW, SUBJECT
from tests.hold.served import serve_hold
from tests.tools import require_tool

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
SUCCESSFUL = ocsp.OCSPResponseStatus.SUCCESSFUL
GOOD, REVOKED = ocsp.OCSPCertStatus.GOOD, ocsp.OCSPCertStatus.REVOKED


# ---------------------------------------------------------------------------- helpers


class CountingLedger(MemoryLedger):
    """A MemoryLedger that counts the calls the status paths make."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def revoked(self, issuer_id: str) -> list[tuple[Revocation, IssuanceRecord]]:
        self.calls["revoked"] += 1
        return super().revoked(issuer_id)

    def revocation_version(self) -> int:
        self.calls["revocation_version"] += 1
        return super().revocation_version()

    def next_crl_number(self, issuer_id: str, this_update: datetime) -> tuple[int, datetime]:
        self.calls["next_crl_number"] += 1
        return super().next_crl_number(issuer_id, this_update)


class PausingLedger(MemoryLedger):
    """A MemoryLedger whose next ``revocation()`` read (once armed) waits for ``release``.

    It stands for a slow OCSP answer (an HSM signature) racing a revocation: the status
    was read as good, the answer is not yet signed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.reached = threading.Event()
        self.release = threading.Event()

    def revocation(self, serial: int) -> Revocation | None:
        found = super().revocation(serial)
        if self.armed:
            self.armed = False
            self.reached.set()
            assert self.release.wait(10)
        return found


class SlowCRLNumberLedger(SQLiteLedger):
    """A SQLiteLedger that tells when a CRL rebuild asks for its number (a write)."""

    def __init__(self, path: Path, *, busy_timeout: float) -> None:
        super().__init__(path, busy_timeout=busy_timeout)
        self.entered = threading.Event()

    def next_crl_number(self, issuer_id: str, this_update: datetime) -> tuple[int, datetime]:
        self.entered.set()
        return super().next_crl_number(issuer_id, this_update)


def open_ca(ledger: IssuanceLedger, store: MemoryKeyStore | None = None, **options: Any) -> HoldCA:
    return HoldCA.open(
        store if store is not None else MemoryKeyStore(),
        ledger,
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=NOW,
        create=True,
        authorizer=AllowAllAuthorizer(),
        **options,
    )


def new_leaf(ca: HoldCA, now: datetime = NOW) -> x509.Certificate:
    """A leaf recorded in the ledger (operator issuance: no ATProto proof needed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return ca.issue(DID, key.public_key(), now=now)[0]


def ocsp_request(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    algorithm: hashes.HashAlgorithm | None = None,
    nonce: bytes | None = None,
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        cert, issuer, algorithm if algorithm is not None else hashes.SHA1()
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def request_by_hash(issuer: x509.Certificate, serial: int) -> bytes:
    """A request for ``serial`` naming ``issuer`` by its hashes (no certificate needed)."""
    name_hash = hashes.Hash(hashes.SHA1())
    name_hash.update(issuer.subject.public_bytes())
    key = issuer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key_hash = hashes.Hash(hashes.SHA1())
    key_hash.update(
        key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash.finalize(), key_hash.finalize(), serial, hashes.SHA1()
    )
    return builder.build().public_bytes(serialization.Encoding.DER)


def status(der: bytes) -> ocsp.OCSPCertStatus:
    parsed = ocsp.load_der_ocsp_response(der)
    assert parsed.response_status == SUCCESSFUL
    return parsed.certificate_status


def crl_number(der: bytes) -> int:
    crl = x509.load_der_x509_crl(der)
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


@pytest.fixture
def signatures(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many OCSP answers and CRLs the hold signed (wraps status.py's two builders)."""
    counts: Counter[str] = Counter()
    respond, build = status_module.respond_ocsp, status_module.build_crl

    def counting_respond(*args: Any, **kwargs: Any) -> bytes:
        counts["ocsp"] += 1
        return respond(*args, **kwargs)

    def counting_build(*args: Any, **kwargs: Any) -> x509.CertificateRevocationList:
        counts["crl"] += 1
        return build(*args, **kwargs)

    monkeypatch.setattr(status_module, "respond_ocsp", counting_respond)
    monkeypatch.setattr(status_module, "build_crl", counting_build)
    return counts


# ---------------------------------------------------------------------------- OCSP cache


def test_ocsp_answers_are_cached_for_good_and_revoked_until_shortly_before_next_update(
    signatures: Counter[str],
) -> None:
    """Old code: every request signed anew (bytes differ, respond_ocsp runs each time)."""
    validity = timedelta(hours=4)
    ca = open_ca(MemoryLedger(), ocsp_validity=validity)
    good, revoked = new_leaf(ca), new_leaf(ca)
    ca.revoke(serial=revoked.serial_number, reason="superseded", now=NOW)
    requests = {
        GOOD: ocsp_request(good, ca.certificate),
        REVOKED: ocsp_request(revoked, ca.certificate),
    }
    refresh = validity - min(validity / 4, timedelta(hours=1))  # 3 h: before nextUpdate
    for expected, request in requests.items():
        first = ca.ocsp(request, now=NOW)
        assert status(first) == expected
        before = signatures["ocsp"]
        for later in (timedelta(0), timedelta(seconds=1), timedelta(hours=1), refresh / 2):
            again = ca.ocsp(request, now=NOW + later)
            assert again == first  # the same signed bytes: no new signature
        last_cached = NOW + refresh - timedelta(seconds=1)
        assert ca.ocsp(request, now=last_cached) == first
        assert signatures["ocsp"] == before
        # a cached answer is never handed out near or past its nextUpdate
        next_update = ocsp.load_der_ocsp_response(first).next_update_utc
        assert next_update is not None
        assert next_update - last_cached > timedelta(minutes=59)
        renewed = ca.ocsp(request, now=NOW + refresh)
        assert renewed != first
        assert signatures["ocsp"] == before + 1
        assert status(renewed) == expected
        this_update = ocsp.load_der_ocsp_response(renewed).this_update_utc
        assert this_update == (NOW + refresh).replace(microsecond=0)
        assert ca.ocsp(request, now=NOW + refresh + timedelta(minutes=1)) == renewed


def test_the_cache_key_is_the_request_and_nonce_requests_are_never_cached(
    signatures: Counter[str],
) -> None:
    """Different CertID hashes are different requests; a nonce gets a fresh signed echo."""
    ca = open_ca(MemoryLedger())
    leaf = new_leaf(ca)
    sha1, sha256 = (
        ocsp_request(leaf, ca.certificate),
        ocsp_request(leaf, ca.certificate, hashes.SHA256()),
    )
    a, b = ca.ocsp(sha1, now=NOW), ca.ocsp(sha256, now=NOW)
    assert a != b
    assert (ca.ocsp(sha1, now=NOW), ca.ocsp(sha256, now=NOW)) == (a, b)
    assert signatures["ocsp"] == 2
    for nonce in (b"\x01" * 16, b"\x02" * 16, b"\x01" * 16):
        der = ca.ocsp(ocsp_request(leaf, ca.certificate, nonce=nonce), now=NOW)
        parsed = ocsp.load_der_ocsp_response(der)
        assert parsed.certificate_status == GOOD
        assert parsed.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert signatures["ocsp"] == 5


def test_a_revocation_drops_the_cached_good_answer_at_once(signatures: Counter[str]) -> None:
    """No time passes between the revocation and the next request (the sync cannot help)."""
    ca = open_ca(MemoryLedger())
    leaf, other = new_leaf(ca), new_leaf(ca)
    request, other_request = ocsp_request(leaf, ca.certificate), ocsp_request(other, ca.certificate)
    first, other_first = ca.ocsp(request, now=NOW), ca.ocsp(other_request, now=NOW)
    assert ca.ocsp(request, now=NOW) == first  # cached
    ca.revoke(serial=leaf.serial_number, reason="keyCompromise", now=NOW)
    after = ca.ocsp(request, now=NOW)
    assert status(after) == REVOKED
    revoked_info = ocsp.load_der_ocsp_response(after)
    assert revoked_info.revocation_reason == x509.ReasonFlags.key_compromise
    assert ca.ocsp(request, now=NOW) == after  # the revoked answer is cached in turn
    assert ca.ocsp(other_request, now=NOW) == other_first  # other serials keep theirs
    assert signatures["ocsp"] == 3


def test_a_good_answer_signed_across_a_revocation_is_not_cached(
    signatures: Counter[str],
) -> None:
    """The race: status read as good, then a revocation, then the answer is stored.

    Thread X reads the status (good) and pauses before signing (a slow HSM). Meanwhile the
    certificate is revoked and another request syncs the cache with the ledger's new
    revocation version. X's good answer must not then be cached: it would be served for
    the rest of its validity (~23 h), long after the revocation.
    """
    ledger = PausingLedger()
    ca = open_ca(ledger)
    leaf, other = new_leaf(ca), new_leaf(ca)
    request = ocsp_request(leaf, ca.certificate)
    answers: list[bytes] = []
    ledger.armed = True
    slow = threading.Thread(target=lambda: answers.append(ca.ocsp(request, now=NOW)))
    slow.start()
    assert ledger.reached.wait(10)  # X has read "good" and not signed yet
    ca.revoke(serial=leaf.serial_number, now=NOW)
    assert status(ca.ocsp(request, now=NOW)) == REVOKED
    # another client's request a little later: the cache syncs with the ledger's version
    ca.ocsp(ocsp_request(other, ca.certificate), now=NOW + 2 * OCSP_SYNC_INTERVAL)
    ledger.release.set()
    slow.join(10)
    assert [status(a) for a in answers] == [GOOD]  # X answered what it read
    for later in (timedelta(0), 3 * OCSP_SYNC_INTERVAL, timedelta(hours=1)):
        assert status(ca.ocsp(request, now=NOW + later)) == REVOKED


def test_unknown_serials_and_foreign_issuers_get_unsigned_unauthorized(
    signatures: Counter[str],
) -> None:
    """Old code: a signed ``successful`` answer with status unknown (a signature each)."""
    ca = open_ca(MemoryLedger())
    leaf = new_leaf(ca)
    other_ca = open_ca(MemoryLedger())
    foreign = new_leaf(other_ca)
    asked: list[int] = []

    def may_sign() -> bool:
        asked.append(1)
        return True

    for request in (
        request_by_hash(ca.certificate, leaf.serial_number + 1),
        request_by_hash(ca.certificate, 0x1234),
        ocsp_request(foreign, other_ca.certificate),  # another CA entirely
        ocsp_request(leaf, other_ca.certificate),  # our serial, someone else's issuer hashes
    ):
        der = ca.ocsp(request, now=NOW, may_sign=may_sign)
        assert ocsp.load_der_ocsp_response(der).response_status == (
            ocsp.OCSPResponseStatus.UNAUTHORIZED
        )
        assert len(der) < 10  # an unsigned error answer (RFC 5019 2.2.3)
    assert signatures["ocsp"] == 0
    assert asked == []  # the budget is not charged for them
    # the hand-made CertID names this CA correctly: with a serial it issued, the answer is good
    assert status(ca.ocsp(request_by_hash(ca.certificate, leaf.serial_number), now=NOW,
                          may_sign=may_sign)) == GOOD  # fmt: skip
    assert asked == [1]


def test_a_refusing_budget_gets_try_later_only_for_new_signatures() -> None:
    ca = open_ca(MemoryLedger())
    cached_leaf, new = new_leaf(ca), new_leaf(ca)
    cached = ca.ocsp(ocsp_request(cached_leaf, ca.certificate), now=NOW)

    def refuse() -> bool:
        return False

    assert ca.ocsp(ocsp_request(cached_leaf, ca.certificate), now=NOW, may_sign=refuse) == cached
    refused = ca.ocsp(ocsp_request(new, ca.certificate), now=NOW, may_sign=refuse)
    assert ocsp.load_der_ocsp_response(refused).response_status == (
        ocsp.OCSPResponseStatus.TRY_LATER
    )
    assert status(ca.ocsp(ocsp_request(new, ca.certificate), now=NOW)) == GOOD  # not cached


def test_the_per_client_budget_over_http() -> None:
    """Beyond the budget: tryLater for new signatures; cached answers (POST or GET) flow.

    Old code: no budget at all (``create_app`` had no ``ocsp_budget``), every request
    was signed.
    """
    budget = ClientBudget(rate=0.001, burst=2)
    with serve_hold(app_options={"ocsp_budget": budget}) as served:
        now = datetime.now(UTC)
        root = served.ca.certificate
        leaves = [new_leaf(served.ca, now) for _ in range(3)]
        requests = [ocsp_request(leaf, root) for leaf in leaves]

        def post(der: bytes) -> bytes:
            r = served.http.post(
                "/ocsp", content=der, headers={"Content-Type": "application/ocsp-request"}
            )
            assert r.status_code == 200
            return r.content

        first, second = post(requests[0]), post(requests[1])
        assert status(first) == status(second) == GOOD
        over = ocsp.load_der_ocsp_response(post(requests[2]))
        assert over.response_status == ocsp.OCSPResponseStatus.TRY_LATER
        for _ in range(5):  # cached answers still flow, and cost nothing
            assert post(requests[0]) == first
        encoded = urllib.parse.quote(base64.b64encode(requests[1]).decode(), safe="")
        assert served.http.get(f"/ocsp/{encoded}").content == second
        nonce = ocsp_request(leaves[0], root, nonce=b"\x07" * 16)  # needs a new signature
        assert ocsp.load_der_ocsp_response(post(nonce)).response_status == (
            ocsp.OCSPResponseStatus.TRY_LATER
        )
        unknown = request_by_hash(root, 0x4242)  # cheap: unauthorized, not tryLater
        assert ocsp.load_der_ocsp_response(post(unknown)).response_status == (
            ocsp.OCSPResponseStatus.UNAUTHORIZED
        )


def test_openssl_verifies_a_cached_answer(tmp_path: Path) -> None:
    """openssl as oracle: the answer served from the cache is a valid signed response."""
    openssl = require_tool("openssl")
    now = datetime.now(UTC)  # openssl checks thisUpdate/nextUpdate against its clock
    ca = HoldCA.open(
        MemoryKeyStore(), MemoryLedger(), hold_did=HOLD_DID, subject=SUBJECT, now=now, create=True
    )
    good, revoked = new_leaf(ca, now), new_leaf(ca, now)
    ca.revoke(serial=revoked.serial_number, reason="keyCompromise", now=now)
    (tmp_path / "ca.pem").write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    for leaf, word in ((good, "good"), (revoked, "revoked")):
        request = ocsp_request(leaf, ca.certificate)
        first = ca.ocsp(request, now=now)
        cached = ca.ocsp(request, now=now + timedelta(seconds=30))
        assert cached == first
        (tmp_path / "resp.der").write_bytes(cached)
        (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        out = subprocess.run(
            [openssl, "ocsp", "-respin", str(tmp_path / "resp.der"),
             "-VAfile", str(tmp_path / "ca.pem"), "-issuer", str(tmp_path / "ca.pem"),
             "-cert", str(tmp_path / "leaf.pem"), "-no_nonce"],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "Response verify OK" in out.stdout + out.stderr
        assert f"leaf.pem: {word}" in out.stdout


# ---------------------------------------------------------------------------- CRL


def test_the_crl_is_built_once_per_change_and_served_from_memory(
    signatures: Counter[str],
) -> None:
    """``crl_der`` reads one counter per call, not the revocations (old code: every call)."""
    ledger = CountingLedger()
    ca = open_ca(ledger)
    leaves = [new_leaf(ca) for _ in range(30)]
    for leaf in leaves[:20]:
        ca.revoke(serial=leaf.serial_number, now=NOW)
    first = ca.crl_der(NOW)
    assert len(x509.load_der_x509_crl(first)) == 20
    ledger.calls.clear()
    for i in range(50):
        assert ca.crl_der(NOW + timedelta(seconds=i)) is first  # the same bytes object
    assert ledger.calls == Counter(revocation_version=50)
    assert signatures["crl"] == 1
    ca.revoke(serial=leaves[25].serial_number, now=NOW + timedelta(minutes=1))
    second = ca.crl_der(NOW + timedelta(minutes=1))
    assert second is not first
    assert crl_number(second) == crl_number(first) + 1
    assert x509.load_der_x509_crl(second).get_revoked_certificate_by_serial_number(
        leaves[25].serial_number
    )
    assert ca.crl_der(NOW + timedelta(minutes=2)) is second
    assert ledger.calls["revoked"] == 1
    assert ca.crl(NOW + timedelta(minutes=2)).public_bytes(serialization.Encoding.DER) == second
    # an unchanged CRL is re-signed after crl_refresh (default 1 h)
    third = ca.crl_der(NOW + timedelta(minutes=1, hours=1))
    assert crl_number(third) == crl_number(second) + 1
    assert signatures["crl"] == 3


def test_get_ca_crl_costs_no_revocation_reads_over_http() -> None:
    ledger = CountingLedger()
    with serve_hold(ledger=ledger) as served:
        now = datetime.now(UTC)
        for _ in range(10):
            served.ca.revoke(serial=new_leaf(served.ca, now).serial_number, now=now)
        first = served.http.get("/ca.crl")
        assert first.status_code == 200
        assert first.headers["content-type"] == "application/pkix-crl"
        reads = ledger.calls["revoked"]
        for _ in range(20):
            assert served.http.get("/ca.crl").content == first.content
        assert ledger.calls["revoked"] == reads  # 20 GETs, no revocation list read
        served.ca.revoke(serial=new_leaf(served.ca, now).serial_number, now=now)
        changed = served.http.get("/ca.crl").content
        assert crl_number(changed) == crl_number(first.content) + 1
        assert len(x509.load_der_x509_crl(changed)) == 11


@pytest.fixture
def locked_file() -> Iterator[Callable[[Path], sqlite3.Connection]]:
    """Hold ``BEGIN IMMEDIATE`` on a ledger file, as another process's writer would."""
    holders: list[sqlite3.Connection] = []

    def lock(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        holders.append(conn)
        return conn

    yield lock
    for conn in holders:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def test_a_busy_ledger_serves_the_previous_crl_while_it_is_valid(
    tmp_path: Path, locked_file: Callable[[Path], sqlite3.Connection]
) -> None:
    """Old code: the failed CRL-number write raised LedgerError (the GET was a 503)."""
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3", busy_timeout=0.5)
    ca = open_ca(ledger)
    first = ca.crl_der(NOW)
    holder = locked_file(ledger.path)
    due = NOW + timedelta(hours=2)  # past crl_refresh (1 h), within nextUpdate (24 h)
    started = time.monotonic()
    assert ca.crl_der(due) is first
    assert time.monotonic() - started < 0.5 + 2  # bounded by the busy timeout
    with pytest.raises(LedgerError):  # past its nextUpdate, the old CRL is not served
        ca.crl_der(NOW + timedelta(hours=25))
    holder.execute("ROLLBACK")
    fresh = ca.crl_der(due)
    assert crl_number(fresh) == crl_number(first) + 1
    ledger.close()


def test_a_crl_rebuild_stuck_on_a_busy_ledger_does_not_hold_up_other_readers(
    tmp_path: Path, locked_file: Callable[[Path], sqlite3.Connection]
) -> None:
    """While one request waits (busy timeout) for the CRL number, others get the old CRL.

    Before the fix they queued behind the builder's lock and then each waited the busy
    timeout again themselves.
    """
    busy = 3.0
    ledger = SlowCRLNumberLedger(tmp_path / "ledger.sqlite3", busy_timeout=busy)
    ca = open_ca(ledger)
    first = ca.crl_der(NOW)
    locked_file(ledger.path)
    due = NOW + timedelta(hours=2)
    ledger.entered.clear()
    builder_done = threading.Event()
    builder: list[bytes] = []

    def build() -> None:
        builder.append(ca.crl_der(due))
        builder_done.set()

    thread = threading.Thread(target=build)
    thread.start()
    assert ledger.entered.wait(5)  # the builder now waits for the write lock
    for _ in range(3):
        assert ca.crl_der(due) is first
    assert not builder_done.is_set()  # answered while the builder was still waiting
    thread.join(busy + 5)
    assert builder == [first]
    ledger.close()


# ---------------------------------------------------------------------------- replicas


def test_two_replicas_on_one_ledger_file(tmp_path: Path, signatures: Counter[str]) -> None:
    """A revocation by replica A reaches replica B's OCSP cache within the sync interval
    and B's next CRL at once; CRL numbers are shared. (Old code had no cache to keep.)"""
    path = tmp_path / "ledger.sqlite3"
    store = MemoryKeyStore()
    ledger_a, ledger_b = SQLiteLedger(path), SQLiteLedger(path)
    a = open_ca(ledger_a, store)
    b = open_ca(ledger_b, store)
    assert a.ca_id == b.ca_id
    leaf = new_leaf(a)
    request = ocsp_request(leaf, b.certificate)
    good = b.ocsp(request, now=NOW)
    assert status(good) == GOOD
    half = OCSP_SYNC_INTERVAL / 2
    assert b.ocsp(request, now=NOW + half) == good  # B serves it from its cache
    crl_a = a.crl_der(NOW)
    crl_b = b.crl_der(NOW)
    assert crl_number(crl_b) == crl_number(crl_a) + 1  # one numbering for the hold
    revoked_at = NOW + half
    a.revoke(serial=leaf.serial_number, reason="keyCompromise", now=revoked_at)
    # B's CRL checks the ledger's revocation counter on every request
    crl = b.crl_der(revoked_at)
    assert crl_number(crl) == crl_number(crl_b) + 1
    assert x509.load_der_x509_crl(crl).get_revoked_certificate_by_serial_number(leaf.serial_number)
    # B's OCSP cache notices within one sync interval of the revocation
    assert status(b.ocsp(request, now=revoked_at + OCSP_SYNC_INTERVAL)) == REVOKED
    assert status(a.ocsp(request, now=revoked_at)) == REVOKED
    # and B keeps serving the new (revoked) answer from its cache
    again = b.ocsp(request, now=revoked_at + OCSP_SYNC_INTERVAL)
    assert b.ocsp(request, now=revoked_at + 3 * OCSP_SYNC_INTERVAL) == again
    ledger_a.close()
    ledger_b.close()


def test_a_replica_revocation_reaches_the_served_ocsp_within_a_second(tmp_path: Path) -> None:
    """Over HTTP with the real clock: another HoldCA on the same file and key store revokes."""
    path = tmp_path / "ledger.sqlite3"
    served_ledger = SQLiteLedger(path)
    with serve_hold(ledger=served_ledger) as served:
        other_ledger = SQLiteLedger(path)
        store = served.ca.key_store
        assert store is not None
        replica = HoldCA.open(
            store,
            other_ledger,
            hold_did=HOLD_DID,
            subject=SUBJECT,
            now=datetime.now(UTC),
        )
        leaf = new_leaf(served.ca, datetime.now(UTC))
        request = ocsp_request(leaf, served.ca.certificate)

        def ask() -> bytes:
            r = served.http.post("/ocsp", content=request)
            assert r.status_code == 200
            return r.content

        good = ask()
        assert ask() == good  # cached by the server
        replica.revoke(serial=leaf.serial_number, now=datetime.now(UTC))
        revoked_at = time.monotonic()
        while status(ask()) != REVOKED:
            assert time.monotonic() - revoked_at < OCSP_SYNC_INTERVAL.total_seconds() + 2
            time.sleep(0.05)
        other_ledger.close()
    served_ledger.close()


# ---------------------------------------------------------------------------- audit


def test_audit_events_match_what_the_hold_did(caplog: pytest.LogCaptureFixture) -> None:
    """Issuance, refusal, revocation, CRL and rotation events, counted against the ledger."""
    ledger = MemoryLedger()
    with caplog.at_level(logging.INFO, logger="holdca.audit"):
        ca = open_ca(ledger, ocsp_validity=timedelta(hours=4))
        leaves = [new_leaf(ca) for _ in range(4)]
        with pytest.raises(DIDSyntaxError):
            ca.issue("not-a-did", ec.generate_private_key(ec.SECP256R1()).public_key(), now=NOW)
        for leaf in leaves[:2]:
            ca.revoke(serial=leaf.serial_number, now=NOW)
        for i in range(10):  # ten requests, one CRL
            ca.crl_der(NOW + timedelta(seconds=i))
        for i in range(10):
            ca.ocsp(ocsp_request(leaves[3], ca.certificate), now=NOW + timedelta(seconds=i))
        ca.rotate(new_label="hold-root-2", now=NOW + timedelta(minutes=1))
        ca.crl_der(NOW + timedelta(minutes=2))
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "holdca.audit"]
    kinds = Counter(e["event"] for e in events)
    issued = sorted(int(e["serial"], 16) for e in events if e["event"] == "issued")
    assert issued == sorted(r.serial for r in ledger.by_did(DID))
    assert len(issued) == ledger.count() == len(leaves)
    assert kinds["refused"] == 1
    revoked = {int(e["serial"], 16) for e in events if e["event"] == "revoked"}
    assert revoked == {leaf.serial_number for leaf in leaves[:2]}
    crls = [e for e in events if e["event"] == "crl"]
    assert [e["crl_number"] for e in crls] == [1, 1]  # one per CA, not per request
    assert crls[0]["entries"] == 2
    assert kinds["rotated"] == 1
