"""The issuance ledger: durability settings, uniqueness, queries, CRL numbers, concurrency."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from holdca.errors import DuplicateSerialError, LedgerError
from holdca.hold.ledger import (
    SCHEMA_VERSION,
    CARecord,
    IssuanceLedger,
    IssuanceRecord,
    MemoryLedger,
    SQLiteLedger,
)
from tests.hold.ledgers import ledger_fixture

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"


def record(
    serial: int, *, did: str = DID, at: datetime = T0, issuer: str = "ca1"
) -> IssuanceRecord:
    return IssuanceRecord(
        serial=serial,
        did=did,
        manifest_digest="sha256:" + "ab" * 32,
        commit_cid="bafyreib2rxk3rh6kzwq",
        rev="3l3qo2vutsw2b",
        not_before=at - timedelta(minutes=5),
        not_after=at + timedelta(hours=24),
        certificate_der=b"\x30\x03\x02\x01" + serial.to_bytes(20, "big"),
        issuer_id=issuer,
        issued_at=at,
    )


ledger = ledger_fixture()  # memory, SQLite and PostgreSQL (tests/hold/ledgers.py)


def test_both_implement_the_protocol(tmp_path: Path) -> None:
    assert isinstance(MemoryLedger(), IssuanceLedger)
    led = SQLiteLedger(tmp_path / "l.db")
    assert isinstance(led, IssuanceLedger)
    led.close()


def test_roundtrip_128_bit_serial(ledger: IssuanceLedger) -> None:
    serial = (1 << 127) | 12345  # does not fit SQLite's INTEGER
    rec = record(serial)
    ledger.record_issuance(rec)
    assert ledger.get(serial) == rec
    assert ledger.get(serial + 1) is None
    assert ledger.count() == 1


def test_duplicate_serial_is_refused(ledger: IssuanceLedger) -> None:
    ledger.record_issuance(record(7))
    with pytest.raises(DuplicateSerialError, match="duplicate"):
        ledger.record_issuance(record(7, did="did:web:example.com"))
    assert ledger.count() == 1
    got = ledger.get(7)
    assert got is not None
    assert got.did == DID


def test_by_did_and_since(ledger: IssuanceLedger) -> None:
    for i in range(5):
        ledger.record_issuance(record(100 + i, at=T0 + timedelta(hours=i)))
    ledger.record_issuance(record(200, did="did:web:example.com"))
    assert [r.serial for r in ledger.by_did(DID)] == [100, 101, 102, 103, 104]
    since = T0 + timedelta(hours=2)
    assert [r.serial for r in ledger.by_did(DID, since=since)] == [102, 103, 104]
    assert ledger.count_since(DID, since) == 3
    assert ledger.by_did("did:web:nobody.example") == []


def test_revoke_status_and_crl_entries(ledger: IssuanceLedger) -> None:
    ledger.record_issuance(record(1))
    ledger.record_issuance(record(2))
    ledger.record_issuance(record(3, issuer="ca2"))
    assert ledger.revocation(1) is None
    rev = ledger.revoke(1, revoked_at=T0, reason="keyCompromise", invalidity_date=T0 - timedelta(1))
    assert rev.reason == "keyCompromise"
    assert rev.invalidity_date == T0 - timedelta(days=1)
    # idempotent: the first revocation wins
    again = ledger.revoke(1, revoked_at=T0 + timedelta(hours=1), reason="superseded")
    assert again == rev
    ledger.revoke(3, revoked_at=T0)
    assert ledger.revocation(1) == rev
    assert [r.serial for r, _ in ledger.revoked("ca1")] == [1]
    assert [i.serial for _, i in ledger.revoked("ca2")] == [3]


def test_revoke_unknown_serial_or_reason(ledger: IssuanceLedger) -> None:
    with pytest.raises(LedgerError, match="no certificate"):
        ledger.revoke(99, revoked_at=T0)
    ledger.record_issuance(record(5))
    with pytest.raises(LedgerError, match="reason"):
        ledger.revoke(5, revoked_at=T0, reason="because")
    assert ledger.revocation(5) is None


def test_crl_numbers_are_monotonic_even_if_the_clock_goes_back(ledger: IssuanceLedger) -> None:
    assert ledger.next_crl_number("ca1", T0) == (1, T0)
    assert ledger.next_crl_number("ca1", T0 + timedelta(hours=1)) == (2, T0 + timedelta(hours=1))
    # clock jumps back: number still grows, thisUpdate does not go backwards
    assert ledger.next_crl_number("ca1", T0) == (3, T0 + timedelta(hours=1))
    assert ledger.next_crl_number("ca2", T0) == (1, T0)


def test_ca_records(ledger: IssuanceLedger) -> None:
    a = CARecord("aa", "root-1", b"cert-a", T0)
    b = CARecord("bb", "root-2", b"cert-b", T0 + timedelta(1), cross_certificates_der=(b"x", b"yz"))
    ledger.put_ca(b)
    ledger.put_ca(a)
    assert ledger.cas() == [a, b]
    retired = CARecord(
        "aa", "root-1", b"cert-a", T0, state="published", retire_at=T0 + timedelta(30)
    )
    ledger.put_ca(retired)
    assert ledger.cas() == [retired, b]


def test_sqlite_settings_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    led = SQLiteLedger(path)
    led.record_issuance(record(42))
    led.close()
    # an independent reader: stdlib sqlite3 on the file
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT serial, did FROM issuance").fetchall() == [("2a", DID)]
    conn.close()
    # reopening keeps the data
    led = SQLiteLedger(path)
    assert led.get(42) == record(42)
    led.close()


def test_sqlite_refuses_newer_schema_and_foreign_files(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LedgerError, match="newer"):
        SQLiteLedger(newer)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="not a holdca ledger"):
        SQLiteLedger(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError):
        SQLiteLedger(garbage)


def test_closed_ledger_raises(tmp_path: Path) -> None:
    led = SQLiteLedger(tmp_path / "l.db")
    led.close()
    led.close()
    with pytest.raises(LedgerError, match="closed"):
        led.get(1)
    with pytest.raises(LedgerError, match="closed"):
        led.record_issuance(record(1))


def test_threads_share_one_ledger(tmp_path: Path) -> None:
    led = SQLiteLedger(tmp_path / "l.db")
    errors: list[BaseException] = []

    def worker(base: int) -> None:
        try:
            for i in range(50):
                led.record_issuance(record(base * 1000 + i))
                led.get(base * 1000 + i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert led.count() == 16 * 50
    led.close()


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_threads_that_come_and_go_do_not_leave_connections_open(tmp_path: Path) -> None:
    """The server reads from a thread pool whose idle threads exit (anyio: after 10 s).

    Old code: one reader connection per thread that ever read, closed only with the
    ledger (200 short-lived threads left 200 connections and about 400 files open).
    """
    led = SQLiteLedger(tmp_path / "l.db")
    led.record_issuance(record(1))
    before = _open_files()
    for _ in range(200):
        t = threading.Thread(target=led.count)
        t.start()
        t.join()
    assert _open_files() - before <= 4  # one reader connection (its db and WAL files)
    assert led.count() == 1
    led.close()


def test_token_checks_in_one_process_queue_behind_group_commits(tmp_path: Path) -> None:
    """use_token's connection waits on the write lock, not in SQLite's busy handler.

    Old code: with a writer committing in a loop, use_token spun in the busy handler and,
    past ``busy_timeout``, failed with "database is locked" (a 503 for authentication).
    """
    led = SQLiteLedger(tmp_path / "l.db", busy_timeout=0.01)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        serial = 0
        while not stop.is_set():
            serial += 1
            try:
                led.record_issuance(record(serial))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        used = [
            led.use_token(f"jti-{i}", expires_at=T0 + timedelta(minutes=5), now=T0)
            for i in range(300)
        ]
    finally:
        stop.set()
        thread.join()
    assert used == [True] * 300
    assert errors == []
    led.close()


def _child(path: str, base: int, n: int) -> None:
    led = SQLiteLedger(path)
    for i in range(n):
        led.record_issuance(record(base + i))
        led.next_crl_number("ca1", T0)
    led.close()


def test_two_processes_share_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SQLiteLedger(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(path, base, 40)) for base in (0, 10_000)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM issuance").fetchone()[0] == 80
    # every CRL number was handed out exactly once across both processes
    assert conn.execute("SELECT number FROM crl_state").fetchone()[0] == 80
    conn.close()


@settings(max_examples=40)
@given(serial=st.integers(min_value=0, max_value=2**160 - 1))
def test_any_serial_roundtrips(serial: int) -> None:
    led = MemoryLedger()
    led.record_issuance(record(serial))
    assert led.get(serial) == record(serial)


@settings(max_examples=25)
@given(serials=st.lists(st.integers(min_value=1, max_value=2**128), min_size=1, max_size=20))
def test_sqlite_serial_uniqueness_matches_set_semantics(
    tmp_path_factory: pytest.TempPathFactory, serials: list[int]
) -> None:
    led = SQLiteLedger(tmp_path_factory.mktemp("h") / "l.db")
    accepted = 0
    for s in serials:
        try:
            led.record_issuance(record(s))
            accepted += 1
        except LedgerError:
            pass
    assert accepted == len(set(serials)) == led.count()
    led.close()


# The version 1 schema as released (issuance clustered on the serial), written out here so
# the migration is tested against the old layout itself rather than against current code.
_V1_SCHEMA = """
CREATE TABLE issuance (
    serial TEXT PRIMARY KEY, did TEXT NOT NULL, manifest_digest TEXT NOT NULL,
    commit_cid TEXT, rev TEXT, not_before_us INTEGER NOT NULL, not_after_us INTEGER NOT NULL,
    certificate BLOB NOT NULL, issuer_id TEXT NOT NULL, issued_at_us INTEGER NOT NULL,
    kind TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX issuance_by_did ON issuance (did, issued_at_us);
CREATE TABLE revocation (
    serial TEXT PRIMARY KEY REFERENCES issuance (serial), revoked_at_us INTEGER NOT NULL,
    reason TEXT, invalidity_date_us INTEGER
) WITHOUT ROWID;
CREATE TABLE crl_state (
    issuer_id TEXT PRIMARY KEY, number INTEGER NOT NULL, this_update_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE ca (
    ca_id TEXT PRIMARY KEY, key_label TEXT NOT NULL, certificate BLOB NOT NULL,
    created_at_us INTEGER NOT NULL, state TEXT NOT NULL, retire_at_us INTEGER,
    cross_certs BLOB NOT NULL, parent_id TEXT
) WITHOUT ROWID;
"""


def test_a_version_1_ledger_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(_V1_SCHEMA)
    us = int(T0.timestamp() * 1_000_000)
    for serial, offset in ((0xB0, 2), (0xA0, 1)):  # serial order differs from issuance order
        conn.execute(
            "INSERT INTO issuance VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (f"{serial:x}", DID, "sha256:" + "ab" * 32, None, None, us, us + 10, b"\x30\x00",
             "ca1", us + offset, "cosign"),
        )  # fmt: skip
    conn.execute("INSERT INTO revocation VALUES ('a0', ?, 'keyCompromise', NULL)", (us + 5,))
    conn.execute("INSERT INTO crl_state VALUES ('ca1', 7, ?)", (us,))
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    led = SQLiteLedger(path)
    got = led.get(0xA0)
    assert got is not None
    assert got.issued_at == T0 + timedelta(microseconds=1)
    assert [r.serial for r in led.by_did(DID)] == [0xA0, 0xB0]
    [(revocation, issued)] = led.revoked("ca1")
    assert revocation.reason == "keyCompromise"
    assert issued.serial == 0xA0
    assert led.next_crl_number("ca1", T0)[0] == 8
    led.record_issuance(record(0xC0))
    with pytest.raises(DuplicateSerialError):
        led.record_issuance(record(0xB0))
    with pytest.raises(LedgerError, match="was issued"):
        led.revoke(0xD0, revoked_at=T0)
    led.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
    conn.execute("PRAGMA foreign_keys = ON")
    with pytest.raises(sqlite3.IntegrityError):  # the revocation FK still names issuance
        conn.execute("INSERT INTO revocation VALUES ('ee', 1, NULL, NULL)")
    conn.close()


# The version 2 issuance table as released (rowid table, no record columns).
_V2_ISSUANCE = """
CREATE TABLE issuance (
    id INTEGER PRIMARY KEY, serial TEXT NOT NULL UNIQUE, did TEXT NOT NULL,
    manifest_digest TEXT NOT NULL, commit_cid TEXT, rev TEXT, not_before_us INTEGER NOT NULL,
    not_after_us INTEGER NOT NULL, certificate BLOB NOT NULL, issuer_id TEXT NOT NULL,
    issued_at_us INTEGER NOT NULL, kind TEXT NOT NULL
);
CREATE INDEX issuance_by_did ON issuance (did, issued_at_us);
"""


def test_a_version_2_ledger_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(_V2_ISSUANCE + _V1_SCHEMA[_V1_SCHEMA.index("CREATE TABLE revocation") :])
    us = int(T0.timestamp() * 1_000_000)
    conn.execute(
        "INSERT INTO issuance (serial, did, manifest_digest, commit_cid, rev, not_before_us, "
        "not_after_us, certificate, issuer_id, issued_at_us, kind) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        ("a0", DID, "sha256:" + "ab" * 32, None, None, us, us + 10, b"\x30\x00", "ca1", us,
         "cosign"),
    )  # fmt: skip
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()

    led = SQLiteLedger(path)
    old = led.get(0xA0)
    assert old is not None
    assert old.repository is None
    assert old.record_uri is None
    new = replace(record(0xB0), repository="alice/app", record_uri="at://x", proof_source="live")
    led.record_issuance(new)
    assert led.get(0xB0) == new
    assert led.deny(DID, reason="test", source="operator", now=T0).did == DID
    assert led.use_token("k", expires_at=T0 + timedelta(minutes=1), now=T0)
    led.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_record_fields_roundtrip(ledger: IssuanceLedger) -> None:
    rec = replace(
        record(0x1234),
        kind="resign",
        repository="alice/app",
        record_uri=f"at://{DID}/io.atcr.manifest/3l3qo2vutsw2b",
        proof_source="hint",
    )
    ledger.record_issuance(rec)
    assert ledger.get(0x1234) == rec
    assert ledger.by_did(DID) == [rec]


def test_unknown_kind_and_naive_times_are_refused(ledger: IssuanceLedger) -> None:
    with pytest.raises(LedgerError, match="kind"):
        ledger.record_issuance(replace(record(1), kind="cosine"))
    with pytest.raises(LedgerError, match="timezone"):
        ledger.record_issuances([replace(record(2), issued_at=T0.replace(tzinfo=None))])
    assert ledger.count() == 0


def test_deny_list(ledger: IssuanceLedger) -> None:
    other = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
    assert ledger.denial(DID) is None
    first = ledger.deny(DID, reason="keyCompromise revocation", source="revocation", now=T0)
    again = ledger.deny(DID, reason="later", source="operator", now=T0 + timedelta(hours=1))
    assert again == first  # the earlier entry is kept
    ledger.deny(other, reason="operator said so", source="operator", now=T0 - timedelta(hours=1))
    assert [e.did for e in ledger.denials()] == [other, DID]
    assert ledger.denial(DID) == first
    assert ledger.allow(DID) == first
    assert ledger.allow(DID) is None
    assert ledger.denial(DID) is None
    assert [e.did for e in ledger.denials()] == [other]


def test_tokens_are_used_once_until_they_expire(ledger: IssuanceLedger) -> None:
    exp = T0 + timedelta(seconds=60)
    assert ledger.use_token("did:plc:x|jti1", expires_at=exp, now=T0)
    assert not ledger.use_token("did:plc:x|jti1", expires_at=exp, now=T0 + timedelta(seconds=1))
    assert ledger.use_token("did:plc:x|jti2", expires_at=exp, now=T0 + timedelta(seconds=1))
    # once expired the key is forgotten (the token itself is refused for its exp by then)
    assert ledger.use_token("did:plc:x|jti1", expires_at=exp + timedelta(seconds=60), now=exp)


def test_two_ledger_objects_share_used_tokens(tmp_path: Path) -> None:
    a, b = SQLiteLedger(tmp_path / "l.db"), SQLiteLedger(tmp_path / "l.db")
    exp = T0 + timedelta(seconds=60)
    assert a.use_token("k", expires_at=exp, now=T0)
    assert not b.use_token("k", expires_at=exp, now=T0)
    a.close()
    b.close()


def test_readers_do_not_wait_for_another_process_holding_the_write_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "l.db"
    led = SQLiteLedger(path, busy_timeout=1.0)
    led.record_issuance(record(0xAB))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's writer, holding the lock
    try:
        started = time.monotonic()
        assert led.get(0xAB) is not None
        assert led.revocation(0xAB) is None
        assert led.count_since(DID, T0 - timedelta(days=1)) == 1
        assert time.monotonic() - started < 0.5
        # a writer meanwhile fails in bounded time (busy_timeout), with a LedgerError
        blocked = threading.Thread(target=lambda: _expect_busy(led))
        blocked.start()
        time.sleep(0.05)
        started = time.monotonic()
        assert led.get(0xAB) is not None  # not behind the waiting writer either
        assert time.monotonic() - started < 0.5
        blocked.join(5)
        assert not blocked.is_alive()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    led.close()


def _expect_busy(led: SQLiteLedger) -> None:
    started = time.monotonic()
    with pytest.raises(LedgerError, match="busy"):
        led.revoke(0xAB, revoked_at=T0)
    assert time.monotonic() - started < 3


def test_live_issuances(ledger: IssuanceLedger) -> None:
    ledger.record_issuance(record(1, at=T0))
    ledger.record_issuance(record(2, at=T0 + timedelta(hours=1), issuer="ca2"))
    ledger.record_issuance(record(3, at=T0 + timedelta(hours=2)))
    ledger.revoke(3, revoked_at=T0 + timedelta(hours=3))
    assert [r.serial for r in ledger.live(T0 + timedelta(hours=3))] == [1, 2]
    assert [r.serial for r in ledger.live(T0, issuer_id="ca2")] == [2]
    # record(1) expires 24 h after T0
    assert [r.serial for r in ledger.live(T0 + timedelta(hours=24, minutes=30))] == [2]


def test_did_states_and_hosts(ledger: IssuanceLedger) -> None:
    from holdca.hold.ledger import DIDState  # noqa: PLC0415

    assert ledger.did_state(DID) is None
    state = DIDState(DID, "did:key:zQ3sh", "https://pds.example.com", "active", T0, T0)
    ledger.put_did_state(state)
    assert ledger.did_state(DID) == state
    gone = replace(state, signing_key=None, pds_host=None, status="deactivated", updated_at=T0)
    ledger.put_did_state(gone)
    assert ledger.did_state(DID) == gone
    with pytest.raises(LedgerError, match="status"):
        ledger.put_did_state(replace(state, status="sleeping"))
    assert ledger.note_pds_host(DID, "https://a.example", now=T0)
    assert not ledger.note_pds_host(DID, "https://a.example", now=T0)
    assert ledger.note_pds_host(DID, "https://b.example", now=T0)
    assert ledger.note_pds_host("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "https://a.example", now=T0)


def test_recoveries(ledger: IssuanceLedger) -> None:
    from holdca.hold.ledger import RecoveryItem  # noqa: PLC0415

    first = ledger.start_recovery("old", "new", [0xB, 0xA], now=T0)
    assert [i.serial for i in ledger.recovery_items(first.id)] == [0xA, 0xB]
    assert all(i.status == "pending" for i in ledger.recovery_items(first.id))
    done = RecoveryItem(first.id, 0xA, "resigned", new_serial=0xC)
    ledger.set_recovery_item(done)
    ledger.set_recovery_item(RecoveryItem(first.id, 0xB, "refused", detail="record gone"))
    assert ledger.recovery_items(first.id)[0] == done
    assert ledger.recovery_items(first.id)[1].detail == "record gone"
    with pytest.raises(LedgerError):
        ledger.set_recovery_item(RecoveryItem(first.id, 0xD, "resigned"))
    with pytest.raises(LedgerError, match="status"):
        ledger.set_recovery_item(RecoveryItem(first.id, 0xA, "maybe"))
    assert [r.id for r in ledger.recoveries(open_only=True)] == [first.id]
    ledger.finish_recovery(first.id, now=T0 + timedelta(hours=1))
    assert ledger.recoveries(open_only=True) == []
    [finished] = ledger.recoveries()
    assert finished.finished_at == T0 + timedelta(hours=1)
    with pytest.raises(LedgerError):
        ledger.finish_recovery(99, now=T0)
