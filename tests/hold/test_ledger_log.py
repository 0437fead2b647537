"""The ledger sequences log entries: every issuance and first revocation gets the next
index in its own transaction (memory, SQLite, PostgreSQL).

Oracles: the entry bytes are parsed here by hand (the TLV of docs/transparency.md), and the
indexes must be exactly 0..n-1 whatever the interleaving of writers (two ledger objects on
one SQLite file or one PostgreSQL schema, several threads each).
"""

from __future__ import annotations

import struct
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from holdca.errors import DuplicateSerialError
from holdca.hold.ledger import IssuanceLedger, IssuanceRecord, PostgresLedger, SQLiteLedger
from tests.hold.ledgers import ledger_fixture

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"

ledger = ledger_fixture()


def record(serial: int, kind: str = "cosign") -> IssuanceRecord:
    return IssuanceRecord(
        serial=serial,
        did=DID,
        manifest_digest="sha256:" + "cd" * 32,
        commit_cid=None if kind == "issue" else "bafyreib2rxk3rh6kzwq",
        rev=None if kind == "issue" else "3l3qo2vutsw2b",
        not_before=T0,
        not_after=T0 + timedelta(hours=24),
        certificate_der=b"\x30\x03\x02\x01" + serial.to_bytes(20, "big"),
        issuer_id="ca1",
        issued_at=T0,
        kind=kind,
        repository=None if kind == "issue" else "alice/app",
        record_uri=None if kind == "issue" else f"at://{DID}/io.atcr.manifest/3l3qo2vutsw2b",
    )


def fields(entry: bytes) -> tuple[int, list[bytes]]:
    """(kind, field values) of a version-1 entry, parsed independently of holdca.tlog."""
    assert entry[0] == 1
    out, pos = [], 2
    while pos < len(entry):
        tag, length = struct.unpack_from(">BH", entry, pos)
        assert tag == len(out) + 1
        out.append(entry[pos + 3 : pos + 3 + length])
        pos += 3 + length
    assert pos == len(entry)
    return entry[1], out


def test_issuances_and_revocations_are_sequenced(ledger: IssuanceLedger) -> None:
    assert ledger.log_size() == 0
    assert ledger.log_entries(0, 10) == []
    ledger.record_issuance(record(1))
    assert ledger.record_issuances([record(2), record(1), record(3, "issue")])[1] is not None
    with pytest.raises(DuplicateSerialError):
        ledger.record_issuance(record(2))
    ledger.revoke(2, revoked_at=T0 + timedelta(seconds=90), reason="keyCompromise")
    ledger.revoke(2, revoked_at=T0 + timedelta(hours=1))  # idempotent: not logged again
    assert ledger.log_size() == 4
    assert [ledger.log_index(s) for s in (1, 2, 3, 4)] == [0, 1, 2, None]
    assert ledger.log_index(2, revocation=True) == 3
    assert ledger.log_index(1, revocation=True) is None
    entries = ledger.log_entries(0, 100)
    assert len(entries) == 4
    assert ledger.log_entries(1, 3) == entries[1:3]
    kind, cosign = fields(entries[0])
    rec = record(1)
    assert kind == 1
    assert cosign == [
        rec.certificate_der,
        DID.encode(),
        (rec.record_uri or "").encode(),
        b"bafyreib2rxk3rh6kzwq",
        b"3l3qo2vutsw2b",
        rec.manifest_digest.encode(),
        b"alice/app",
    ]
    kind, operator = fields(entries[2])  # no ATProto record: those fields are empty
    assert kind == 1
    assert operator[2:5] == [b"", b"", b""]
    assert operator[6] == b""
    kind, revocation = fields(entries[3])
    assert kind == 2
    assert revocation == [b"\x02", DID.encode(), b"keyCompromise", struct.pack(">Q", 1767225690)]


def _hammer(ledgers: list[IssuanceLedger], per_thread: int) -> None:
    def work(led: IssuanceLedger, base: int) -> None:
        for i in range(per_thread):
            if i % 3 == 0:
                led.record_issuances([record(base + i), record(base + i + 500)])
            else:
                led.record_issuance(record(base + i))
            if i % 5 == 0:
                led.revoke(base + i, revoked_at=T0)

    threads = [
        threading.Thread(target=work, args=(led, 10_000 * (n + 1)))
        for n, led in enumerate(ledgers * 2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _dense(led: IssuanceLedger) -> None:
    issued = led.issuances()
    revoked = [r for r in issued if led.revocation(r.serial) is not None]
    size = led.log_size()
    assert size == len(issued) + len(revoked) == len(led.log_entries(0, size + 5))
    indexes = [led.log_index(r.serial) for r in issued]
    indexes += [led.log_index(r.serial, revocation=True) for r in revoked]
    assert sorted(i for i in indexes if i is not None) == list(range(size))


def test_sqlite_two_processes_worth_of_writers_get_dense_indexes(tmp_path: Path) -> None:
    a, b = SQLiteLedger(tmp_path / "l.sqlite3"), SQLiteLedger(tmp_path / "l.sqlite3")
    try:
        _hammer([a, b], 20)
        _dense(a)
    finally:
        a.close()
        b.close()


def test_postgres_replicas_get_dense_indexes(request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue("postgres_server")
    url = server.fresh_schema()
    a, b = PostgresLedger(url), PostgresLedger(url)
    try:
        _hammer([a, b], 15)
        _dense(a)
    finally:
        a.close()
        b.close()
