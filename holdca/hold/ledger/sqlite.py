"""The embedded default :class:`~holdca.hold.ledger.IssuanceLedger`: one SQLite file.

stdlib :mod:`sqlite3`, WAL journal, ``synchronous=FULL`` so a committed issuance survives
a power cut, a busy timeout and ``BEGIN IMMEDIATE`` write transactions so several
processes can share one file. Readers (OCSP, CRL, status) use their own per-thread
connections, so they never wait behind a writer's commit or another process's lock.

Example::

    ledger = SQLiteLedger("/var/lib/hold/ledger.sqlite3")
    ledger.record_issuance(record)
    ledger.revoke(record.serial, revoked_at=now, reason="keyCompromise")
    number, this_update = ledger.next_crl_number(record.issuer_id, now)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Final

from holdca.errors import DuplicateSerialError, LedgerError
from holdca.hold.ledger.base import check_issuance, check_reason, duplicate_serial
from holdca.hold.ledger.records import (
    CARecord,
    DenyEntry,
    IssuanceRecord,
    Revocation,
    from_us,
    serial_hex,
    to_us,
)

__all__ = ["SCHEMA_VERSION", "SQLiteLedger"]

SCHEMA_VERSION: Final = 3
"""The ledger schema this holdca writes (``PRAGMA user_version``).

Version 3 adds the record a certificate rests on (repository, record URI, proof source),
the deny list, the used service-auth tokens and a revocation counter. Version 2 keeps
issuances in a rowid table (appended in issuance order) with a UNIQUE index on the serial;
version 1
clustered the whole ~800-byte row on the random serial, which made every insert rewrite
a random page (3x the commit cost). Older ledgers are migrated when opened.
"""

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
_ISSUANCE_COLUMNS = _V2_COLUMNS + ", repository, record_uri, proof_source"
_INSERT_ISSUANCE = (
    f"INSERT INTO issuance ({_ISSUANCE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"  # noqa: S608 (constant column list)
)


def _pack(blobs: tuple[bytes, ...]) -> bytes:
    return b"".join(len(b).to_bytes(4, "big") + b for b in blobs)


def _unpack(data: bytes) -> tuple[bytes, ...]:
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
    for statement in _V3_TABLES.split(";"):  # (executescript would COMMIT the migration)
        if statement.strip():
            conn.execute(statement)


def _begin(conn: sqlite3.Connection) -> None:
    """Start a write transaction; a lock held past the busy timeout is a LedgerError."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise LedgerError(f"ledger is busy or unwritable: {exc}") from exc


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _issuance_row(row: Sequence[object]) -> IssuanceRecord:
    serial, did, digest, cid, rev, nb, na, der, issuer, issued, kind, repo, uri, source = row
    return IssuanceRecord(
        serial=int(str(serial), 16),
        did=str(did),
        manifest_digest=str(digest),
        commit_cid=_text(cid),
        rev=_text(rev),
        not_before=from_us(nb),
        not_after=from_us(na),
        certificate_der=der if isinstance(der, bytes) else bytes(der),  # type: ignore[call-overload]
        issuer_id=str(issuer),
        issued_at=from_us(issued),
        kind=str(kind),
        repository=_text(repo),
        record_uri=_text(uri),
        proof_source=_text(source),
    )


def _revocation_row(row: Sequence[object]) -> Revocation:
    serial, at, reason, invalid = row
    return Revocation(
        serial=int(str(serial), 16),
        revoked_at=from_us(at),
        reason=_text(reason),
        invalidity_date=None if invalid is None else from_us(invalid),
    )


def _deny_row(row: Sequence[object]) -> DenyEntry:
    did, reason, since, source = row
    return DenyEntry(str(did), str(reason), from_us(since), str(source))


def _issuance_values(record: IssuanceRecord) -> tuple[object, ...]:
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


class _Pending:
    """One issuance waiting for a group commit, and its outcome once ``done``."""

    __slots__ = ("done", "error", "serial", "values")

    def __init__(self, record: IssuanceRecord) -> None:
        check_issuance(record)
        self.serial = record.serial
        self.values = _issuance_values(record)
        self.done = False
        self.error: LedgerError | None = None


class SQLiteLedger:
    """An :class:`IssuanceLedger` in one SQLite file (WAL, ``synchronous=FULL``).

    Concurrency: writes go through one connection guarded by a lock per ledger object
    (SQLite serialises writers anyway, and every public method is one short statement or
    transaction). Reads use one connection per reading thread, so OCSP and CRL requests
    never wait for a commit's sync, nor for another process holding the write lock (WAL
    readers see the last committed state). Several processes may open the same file:
    write transactions start with ``BEGIN IMMEDIATE`` and wait up to ``busy_timeout``
    seconds for the lock, then fail with LedgerError (the server answers 503).

    Durability: ``synchronous=FULL`` syncs the WAL on every commit, so an issuance that
    was reported committed survives a power cut (``NORMAL`` may lose the last commits,
    i.e. certificates that are in a user's hands but not in the ledger). Used service-auth
    tokens are written through a third connection with ``synchronous=NORMAL``: losing the
    last of them in a power cut only re-opens tokens that expire within minutes, and it
    saves a sync per request.

    Group commit: issuances recorded by several threads at once share one transaction and
    one sync (see :meth:`record_issuance`); :meth:`record_issuances` commits a batch.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        """Open (creating if needed) the ledger at ``path``.

        Raises:
            LedgerError: the file cannot be opened, is not a ledger, or was written by a
                newer holdca (its schema version is higher than :data:`SCHEMA_VERSION`).
        """
        self._path = Path(path)
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()  # the write connection, and with it the transaction
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending] = []  # issuances waiting for the next group commit
        self._readers_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._closed = False
        conn = self._connect()
        self._conn: sqlite3.Connection | None = conn
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise LedgerError(f"ledger {self._path}: WAL journal mode is unavailable")
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate(conn)  # foreign keys off: a schema migration rebuilds tables
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            conn.close()
            self._conn = None
            raise LedgerError(f"ledger {self._path} is not usable: {exc}") from exc
        except LedgerError:
            conn.close()
            self._conn = None
            raise
        self._token_lock = threading.Lock()
        self._token_conn = self._connect()
        self._token_conn.execute("PRAGMA synchronous = NORMAL")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                str(self._path),
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open ledger {self._path}: {exc}") from exc
        return conn

    @property
    def path(self) -> Path:
        """The ledger file."""
        return self._path

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version == 0:
                tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if tables:
                    raise LedgerError(f"{self._path} is a SQLite file but not a holdca ledger")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                version = 2
            elif version == 1:
                _migrate_v1_issuance(conn)
                version = 2
            elif version > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger {self._path} has schema version {version}, newer than this "
                    f"holdca understands ({SCHEMA_VERSION}); upgrade holdca"
                )
            if version == 2:
                _migrate_v2(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._readers_lock:
                if self._closed:
                    raise LedgerError("the ledger is closed")
                conn = self._connect()
                conn.execute("PRAGMA query_only = ON")
                self._readers.append(conn)
            self._local.conn = conn
        if self._closed:
            raise LedgerError("the ledger is closed")
        try:
            yield conn
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger read failed: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise LedgerError("the ledger is closed")
            _begin(conn)
            try:
                yield conn
                conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                conn.execute("ROLLBACK")
                raise LedgerError(f"ledger refused the write: {exc}") from exc
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise LedgerError(f"ledger write failed: {exc}") from exc
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def record_issuance(self, record: IssuanceRecord) -> None:
        """Commit ``record``; raises LedgerError on a duplicate serial or a failed write.

        Group commit: when several threads record at once, the one holding the write lock
        commits every record queued so far in one transaction (one WAL sync), and the others
        find theirs already committed. Each call still returns only after its own record is
        durable, so a single caller sees no difference except throughput.
        """
        error = self._commit_queued([_Pending(record)])[0]
        if error is not None:
            raise error

    def record_issuances(self, records: Sequence[IssuanceRecord]) -> list[LedgerError | None]:
        """Commit ``records`` in one transaction (with any other threads' queued records).

        Returns per record ``None`` (committed) or its DuplicateSerialError.

        Raises:
            LedgerError: the transaction failed; none of ``records`` was committed.
        """
        errors = self._commit_queued([_Pending(r) for r in records])
        failed = next(
            (e for e in errors if e is not None and not isinstance(e, DuplicateSerialError)), None
        )
        if failed is not None:
            raise failed
        return errors

    def _commit_queued(self, mine: list[_Pending]) -> list[LedgerError | None]:
        with self._queue_lock:
            self._queue.extend(mine)
        with self._lock:
            if not all(p.done for p in mine):  # nobody committed them while we waited
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit_batch(batch)
        return [p.error for p in mine]

    def _commit_batch(self, batch: list[_Pending]) -> None:
        """Insert ``batch`` in one transaction; every entry ends ``done`` with its outcome.

        Caller holds ``self._lock``. A duplicate serial fails only its own INSERT (SQLite
        rolls back the statement, not the transaction); any other failure fails them all.
        """
        committed = False
        try:
            conn = self._conn
            if conn is None:
                raise LedgerError("the ledger is closed")
            _begin(conn)
            try:
                for pending in batch:
                    try:
                        conn.execute(_INSERT_ISSUANCE, pending.values)
                    except sqlite3.IntegrityError as exc:
                        pending.error = (
                            duplicate_serial(pending.serial)
                            if "UNIQUE" in str(exc)
                            else LedgerError(f"ledger refused the write: {exc}")
                        )
                conn.execute("COMMIT")
                committed = True
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger write failed: {exc}") from exc
            finally:
                if not committed and conn.in_transaction:
                    conn.execute("ROLLBACK")
        except LedgerError as exc:
            for pending in batch:
                pending.error = exc
        finally:
            for pending in batch:
                if not committed and pending.error is None:  # interrupted (BaseException)
                    pending.error = LedgerError("the ledger write was interrupted")
                pending.done = True

    def get(self, serial: int) -> IssuanceRecord | None:
        """The issuance with ``serial``."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_ISSUANCE_COLUMNS} FROM issuance WHERE serial = ?",  # noqa: S608
                (serial_hex(serial),),
            ).fetchone()
        return None if row is None else _issuance_row(row)

    def by_did(self, did: str, *, since: datetime | None = None) -> list[IssuanceRecord]:
        """Issuances to ``did`` at or after ``since``, oldest first."""
        lower = -(2**62) if since is None else to_us(since)
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_ISSUANCE_COLUMNS} FROM issuance WHERE did = ? AND issued_at_us >= ? "  # noqa: S608 (constant column list)
                "ORDER BY issued_at_us, serial",
                (did, lower),
            ).fetchall()
        return [_issuance_row(r) for r in rows]

    def count_since(self, did: str, since: datetime) -> int:
        """Number of issuances to ``did`` at or after ``since`` (uses the DID index)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT count(*) FROM issuance WHERE did = ? AND issued_at_us >= ?",
                (did, to_us(since)),
            ).fetchone()
        return int(row[0])

    def revoke(
        self,
        serial: int,
        *,
        revoked_at: datetime,
        reason: str | None = None,
        invalidity_date: datetime | None = None,
    ) -> Revocation:
        """Revoke ``serial`` (idempotent: an earlier revocation wins)."""
        check_reason(reason)
        key = serial_hex(serial)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM issuance WHERE serial = ?", (key,)).fetchone() is None:
                raise LedgerError(f"no certificate with serial {key} was issued")
            added = conn.execute(
                "INSERT OR IGNORE INTO revocation VALUES (?,?,?,?)",
                (
                    key,
                    to_us(revoked_at),
                    reason,
                    None if invalidity_date is None else to_us(invalidity_date),
                ),
            ).rowcount
            if added:
                conn.execute(
                    "INSERT INTO counter VALUES ('revocations', 1) "
                    "ON CONFLICT (name) DO UPDATE SET value = value + 1"
                )
            row = conn.execute("SELECT * FROM revocation WHERE serial = ?", (key,)).fetchone()
        return _revocation_row(row)

    def revocation(self, serial: int) -> Revocation | None:
        """The revocation of ``serial``."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT * FROM revocation WHERE serial = ?", (serial_hex(serial),)
            ).fetchone()
        return None if row is None else _revocation_row(row)

    def revoked(self, issuer_id: str) -> list[tuple[Revocation, IssuanceRecord]]:
        """Revocations of certificates issued by ``issuer_id``."""
        cols = ", ".join(f"i.{c.strip()}" for c in _ISSUANCE_COLUMNS.split(","))
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT r.serial, r.revoked_at_us, r.reason, r.invalidity_date_us, {cols} "  # noqa: S608 (constant column list)
                "FROM revocation r JOIN issuance i ON i.serial = r.serial "
                "WHERE i.issuer_id = ?",
                (issuer_id,),
            ).fetchall()
        out = [(_revocation_row(r[:4]), _issuance_row(r[4:])) for r in rows]
        return sorted(out, key=lambda pair: pair[0].serial)

    def revocation_version(self) -> int:
        """How many revocations were made (one primary-key read)."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM counter WHERE name = 'revocations'").fetchone()
        return 0 if row is None else int(row[0])

    def next_crl_number(self, issuer_id: str, this_update: datetime) -> tuple[int, datetime]:
        """Next CRL number of ``issuer_id`` and a thisUpdate never earlier than the last."""
        wanted = to_us(this_update)
        with self._write() as conn:
            row = conn.execute(
                "SELECT number, this_update_us FROM crl_state WHERE issuer_id = ?", (issuer_id,)
            ).fetchone()
            number = 1 if row is None else int(row[0]) + 1
            update = wanted if row is None else max(wanted, int(row[1]))
            conn.execute(
                "INSERT OR REPLACE INTO crl_state VALUES (?,?,?)", (issuer_id, number, update)
            )
        return number, from_us(update)

    def put_ca(self, ca: CARecord) -> None:
        """Insert or replace a CA record."""
        self.put_cas([ca])

    def put_cas(self, cas: Sequence[CARecord]) -> None:
        """Insert or replace CA records in one transaction."""
        with self._write() as conn:
            for ca in cas:
                conn.execute(
                    "INSERT OR REPLACE INTO ca VALUES (?,?,?,?,?,?,?,?)",
                    (
                        ca.ca_id,
                        ca.key_label,
                        ca.certificate_der,
                        to_us(ca.created_at),
                        ca.state,
                        None if ca.retire_at is None else to_us(ca.retire_at),
                        _pack(ca.cross_certificates_der),
                        ca.parent_id,
                    ),
                )

    def cas(self) -> list[CARecord]:
        """CA records, oldest first."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM ca ORDER BY created_at_us, ca_id").fetchall()
        return [
            CARecord(
                ca_id=str(r[0]),
                key_label=str(r[1]),
                certificate_der=bytes(r[2]),
                created_at=from_us(r[3]),
                state=str(r[4]),
                retire_at=None if r[5] is None else from_us(r[5]),
                cross_certificates_der=_unpack(bytes(r[6])),
                parent_id=None if r[7] is None else str(r[7]),
            )
            for r in rows
        ]

    def deny(self, did: str, *, reason: str, source: str, now: datetime) -> DenyEntry:
        """Deny ``did`` (an earlier entry is kept)."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO deny_list VALUES (?,?,?,?)",
                (did, reason, to_us(now), source),
            )
            row = conn.execute("SELECT * FROM deny_list WHERE did = ?", (did,)).fetchone()
        return _deny_row(row)

    def allow(self, did: str) -> DenyEntry | None:
        """Lift the entry of ``did``; returns it."""
        with self._write() as conn:
            row = conn.execute("SELECT * FROM deny_list WHERE did = ?", (did,)).fetchone()
            conn.execute("DELETE FROM deny_list WHERE did = ?", (did,))
        return None if row is None else _deny_row(row)

    def denial(self, did: str) -> DenyEntry | None:
        """The entry of ``did``."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM deny_list WHERE did = ?", (did,)).fetchone()
        return None if row is None else _deny_row(row)

    def denials(self) -> list[DenyEntry]:
        """Every entry, oldest first."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM deny_list ORDER BY since_us, did").fetchall()
        return [_deny_row(r) for r in rows]

    def use_token(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        """First use of ``key`` until ``expires_at``; ``False`` on a replay.

        One short transaction: forget expired keys, then insert ``key`` unless an
        unexpired entry exists. Shared by every process that opens this file.
        """
        with self._token_lock:
            conn = self._token_conn
            if self._closed:
                raise LedgerError("the ledger is closed")
            _begin(conn)
            try:
                conn.execute("DELETE FROM used_token WHERE expires_us <= ?", (to_us(now),))
                fresh = conn.execute(
                    "INSERT OR IGNORE INTO used_token VALUES (?, ?)", (key, to_us(expires_at))
                ).rowcount
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise LedgerError(f"ledger write failed: {exc}") from exc
        return fresh == 1

    def count(self) -> int:
        """Number of issuances."""
        with self._read() as conn:
            return int(conn.execute("SELECT count(*) FROM issuance").fetchone()[0])

    def close(self) -> None:
        """Close every connection (idempotent)."""
        with self._lock, self._readers_lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._token_lock:
            self._token_conn.close()

    def __repr__(self) -> str:
        return f"<SQLiteLedger {str(self._path)!r}>"
