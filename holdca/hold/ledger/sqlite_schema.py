"""The SQLite ledger's schema, its migrations, and the mapping between rows and records.

Schema versions (``PRAGMA user_version``), each migrated forward when a ledger is opened:

* 1: issuances clustered on the random serial (every insert rewrote a random page);
* 2: issuances in a rowid table, appended in issuance order, with a UNIQUE serial;
* 3: the record a certificate rests on (repository, record URI, proof source), the deny
  list, the used service-auth tokens and a revocation counter;
* 4: what the hold knows of each DID (key, PDS host, status; every PDS host seen) and
  the progress of CA-compromise recoveries;
* 5: CRLs signed ahead of time and stored (an offline root's CRL, served while its key is
  away);
* 6: per-DID rate slots, taken atomically by every process sharing the file;
* 7: the transparency-log entries (``log_entry``), each given the next index in the write
  transaction that records its issuance or revocation (``BEGIN IMMEDIATE``: one writer at
  a time, so the indexes are dense and in commit order). Issuances recorded before the
  upgrade are not sequenced.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from holdca.errors import LedgerError
from holdca.hold.ledger.records import (
    DenyEntry,
    IssuanceRecord,
    Revocation,
    from_us,
    serial_hex,
    to_us,
)

__all__ = [
    "INSERT_ISSUANCE",
    "INSERT_LOG_ENTRY",
    "ISSUANCE_COLUMNS",
    "SCHEMA_VERSION",
    "begin",
    "deny_row",
    "issuance_row",
    "issuance_values",
    "migrate",
    "next_log_index",
    "pack",
    "revocation_row",
    "text",
    "unpack",
]

SCHEMA_VERSION: Final = 7
"""The ledger schema this holdca writes (``PRAGMA user_version``); see the module docstring."""

_ISSUANCE_TABLE = """
CREATE TABLE issuance (
    id              INTEGER PRIMARY KEY,
    serial          TEXT NOT NULL UNIQUE,
    did             TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    commit_cid      TEXT,
    rev             TEXT,
    not_before_us   INTEGER NOT NULL,
    not_after_us    INTEGER NOT NULL,
    certificate     BLOB NOT NULL,
    issuer_id       TEXT NOT NULL,
    issued_at_us    INTEGER NOT NULL,
    kind            TEXT NOT NULL
)"""
_V3_TABLES = """
CREATE TABLE IF NOT EXISTS deny_list (
    did       TEXT PRIMARY KEY,
    reason    TEXT NOT NULL,
    since_us  INTEGER NOT NULL,
    source    TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS used_token (
    key        TEXT PRIMARY KEY,
    expires_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS used_token_by_expiry ON used_token (expires_us);
CREATE TABLE IF NOT EXISTS counter (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""
_V3_COLUMNS = ("repository TEXT", "record_uri TEXT", "proof_source TEXT")
_V4_TABLES = """
CREATE TABLE IF NOT EXISTS did_state (
    did          TEXT PRIMARY KEY,
    signing_key  TEXT,
    pds_host     TEXT,
    status       TEXT NOT NULL,
    first_seen_us INTEGER NOT NULL,
    updated_us   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS did_host (
    did           TEXT NOT NULL,
    host          TEXT NOT NULL,
    first_seen_us INTEGER NOT NULL,
    PRIMARY KEY (did, host)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recovery (
    id           INTEGER PRIMARY KEY,
    old_ca       TEXT NOT NULL,
    new_ca       TEXT NOT NULL,
    started_us   INTEGER NOT NULL,
    finished_us  INTEGER
);
CREATE TABLE IF NOT EXISTS recovery_item (
    recovery_id  INTEGER NOT NULL REFERENCES recovery (id),
    serial       TEXT NOT NULL,
    status       TEXT NOT NULL,
    new_serial   TEXT,
    detail       TEXT,
    PRIMARY KEY (recovery_id, serial)
) WITHOUT ROWID;
"""
_V5_TABLES = """
CREATE TABLE IF NOT EXISTS stored_crl (
    issuer_id      TEXT PRIMARY KEY,
    next_update_us INTEGER NOT NULL,
    der            BLOB NOT NULL
) WITHOUT ROWID;
"""
_V6_TABLES = """
CREATE TABLE IF NOT EXISTS rate_slot (
    did   TEXT NOT NULL,
    at_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_slot_by_did ON rate_slot (did, at_us);
"""
_V7_TABLES = """
CREATE TABLE IF NOT EXISTS log_entry (
    idx    INTEGER PRIMARY KEY,
    kind   TEXT NOT NULL,
    serial TEXT NOT NULL,
    entry  BLOB NOT NULL,
    UNIQUE (kind, serial)
);
"""

INSERT_LOG_ENTRY: Final = "INSERT INTO log_entry (idx, kind, serial, entry) VALUES (?,?,?,?)"
"""Sequence one entry: index, ``issuance`` or ``revocation``, serial (hex), the bytes."""


def next_log_index(conn: sqlite3.Connection) -> int:
    """The next log index; only meaningful inside the write transaction (its lock)."""
    row = conn.execute("SELECT max(idx) FROM log_entry").fetchone()
    return 0 if row is None or row[0] is None else int(row[0]) + 1


_SCHEMA = (
    _ISSUANCE_TABLE
    + """;
CREATE INDEX issuance_by_did ON issuance (did, issued_at_us);
CREATE TABLE revocation (
    serial             TEXT PRIMARY KEY REFERENCES issuance (serial),
    revoked_at_us      INTEGER NOT NULL,
    reason             TEXT,
    invalidity_date_us INTEGER
) WITHOUT ROWID;
CREATE TABLE crl_state (
    issuer_id      TEXT PRIMARY KEY,
    number         INTEGER NOT NULL,
    this_update_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE ca (
    ca_id        TEXT PRIMARY KEY,
    key_label    TEXT NOT NULL,
    certificate  BLOB NOT NULL,
    created_at_us INTEGER NOT NULL,
    state        TEXT NOT NULL,
    retire_at_us INTEGER,
    cross_certs  BLOB NOT NULL,
    parent_id    TEXT
) WITHOUT ROWID;
"""
)

_V2_COLUMNS = (
    "serial, did, manifest_digest, commit_cid, rev, not_before_us, not_after_us, "
    "certificate, issuer_id, issued_at_us, kind"
)
ISSUANCE_COLUMNS = _V2_COLUMNS + ", repository, record_uri, proof_source"
INSERT_ISSUANCE = f"INSERT INTO issuance ({ISSUANCE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"  # noqa: S608 (constant column list)


def pack(blobs: tuple[bytes, ...]) -> bytes:
    """Length-prefixed concatenation (the CA table's cross-certificates column)."""
    return b"".join(len(b).to_bytes(4, "big") + b for b in blobs)


def unpack(data: bytes) -> tuple[bytes, ...]:
    """The inverse of :func:`pack`."""
    out: list[bytes] = []
    i = 0
    while i < len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        out.append(bytes(data[i + 4 : i + 4 + n]))
        i += 4 + n
    return tuple(out)


def _migrate_v1_issuance(conn: sqlite3.Connection) -> None:
    """Rebuild the v1 ``issuance`` table (WITHOUT ROWID, clustered on serial) as v2.

    SQLite's documented table rebuild, inside the caller's transaction, with foreign keys
    off (the caller turns them off before and on after): create, copy in issuance order,
    drop, rename, re-index; then check that every revocation still has its issuance.
    """
    conn.execute(_ISSUANCE_TABLE.replace("CREATE TABLE issuance", "CREATE TABLE issuance_v2", 1))
    conn.execute(
        f"INSERT INTO issuance_v2 ({_V2_COLUMNS}) SELECT {_V2_COLUMNS} "  # noqa: S608 (constant column list)
        "FROM issuance ORDER BY issued_at_us, serial"
    )
    conn.execute("DROP TABLE issuance")
    conn.execute("ALTER TABLE issuance_v2 RENAME TO issuance")
    conn.execute("CREATE INDEX issuance_by_did ON issuance (did, issued_at_us)")
    if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
        raise LedgerError("ledger migration: a revocation lost its issuance")


def _migrate_v2(conn: sqlite3.Connection) -> None:
    """v2 -> v3: the record columns, the deny list and the used-token table."""
    for column in _V3_COLUMNS:
        conn.execute(f"ALTER TABLE issuance ADD COLUMN {column}")
    _statements(conn, _V3_TABLES)


def _statements(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):  # (executescript would COMMIT the migration)
        if statement.strip():
            conn.execute(statement)


def _migrate_v3(conn: sqlite3.Connection) -> None:
    """v3 -> v4: DID states and hosts, recoveries."""
    _statements(conn, _V4_TABLES)


def _migrate_v4(conn: sqlite3.Connection) -> None:
    """v4 -> v5: stored CRLs."""
    _statements(conn, _V5_TABLES)


def _migrate_v5(conn: sqlite3.Connection) -> None:
    """v5 -> v6: rate slots."""
    _statements(conn, _V6_TABLES)


def _migrate_v6(conn: sqlite3.Connection) -> None:
    """v6 -> v7: the transparency-log entries."""
    _statements(conn, _V7_TABLES)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema in an empty file, or migrate an older one to :data:`SCHEMA_VERSION`.

    One ``BEGIN IMMEDIATE`` transaction, rolled back on any failure (foreign keys must be
    off: a migration may rebuild tables).

    Raises:
        LedgerError: the file holds other SQLite tables, or a newer schema.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise LedgerError(f"{path} is a SQLite file but not a holdca ledger")
            _statements(conn, _SCHEMA)
            version = 2
        elif version == 1:
            _migrate_v1_issuance(conn)
            version = 2
        elif version > SCHEMA_VERSION:
            raise LedgerError(
                f"ledger {path} has schema version {version}, newer than this "
                f"holdca understands ({SCHEMA_VERSION}); upgrade holdca"
            )
        if version == 2:
            _migrate_v2(conn)
            version = 3
        if version == 3:
            _migrate_v3(conn)
            version = 4
        if version == 4:
            _migrate_v4(conn)
            version = 5
        if version == 5:
            _migrate_v5(conn)
            version = 6
        if version == 6:
            _migrate_v6(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def begin(conn: sqlite3.Connection) -> None:
    """Start a write transaction; a lock held past the busy timeout is a LedgerError."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise LedgerError(f"ledger is busy or unwritable: {exc}") from exc


def text(value: object) -> str | None:
    """A nullable TEXT column as ``str | None``."""
    return None if value is None else str(value)


def issuance_row(row: Sequence[object]) -> IssuanceRecord:
    """An issuance row (:data:`ISSUANCE_COLUMNS`, in order) as a record."""
    serial, did, digest, cid, rev, nb, na, der, issuer, issued, kind, repo, uri, source = row
    return IssuanceRecord(
        serial=int(str(serial), 16),
        did=str(did),
        manifest_digest=str(digest),
        commit_cid=text(cid),
        rev=text(rev),
        not_before=from_us(nb),
        not_after=from_us(na),
        certificate_der=der if isinstance(der, bytes) else bytes(der),  # type: ignore[call-overload]
        issuer_id=str(issuer),
        issued_at=from_us(issued),
        kind=str(kind),
        repository=text(repo),
        record_uri=text(uri),
        proof_source=text(source),
    )


def revocation_row(row: Sequence[object]) -> Revocation:
    """A revocation row as a record."""
    serial, at, reason, invalid = row
    return Revocation(
        serial=int(str(serial), 16),
        revoked_at=from_us(at),
        reason=text(reason),
        invalidity_date=None if invalid is None else from_us(invalid),
    )


def deny_row(row: Sequence[object]) -> DenyEntry:
    """A deny-list row as an entry."""
    did, reason, since, source = row
    return DenyEntry(str(did), str(reason), from_us(since), str(source))


def issuance_values(record: IssuanceRecord) -> tuple[object, ...]:
    """The values of :data:`INSERT_ISSUANCE` for ``record``."""
    return (
        serial_hex(record.serial),
        record.did,
        record.manifest_digest,
        record.commit_cid,
        record.rev,
        to_us(record.not_before),
        to_us(record.not_after),
        record.certificate_der,
        record.issuer_id,
        to_us(record.issued_at),
        record.kind,
        record.repository,
        record.record_uri,
        record.proof_source,
    )
