"""The issuance ledger: every certificate the hold issued, every revocation, every CRL number.

A hold that issues a certificate it cannot later list cannot revoke it either, so the
ledger is written *before* a cosign returns: :meth:`IssuanceLedger.record_issuance`
commits a transaction, and a failure raises :class:`~holdca.errors.LedgerError`, in
which case the service hands nothing out.

Two implementations of the :class:`IssuanceLedger` Protocol:

* :class:`SQLiteLedger`: the embedded default (stdlib :mod:`sqlite3`, WAL journal,
  ``synchronous=FULL`` so a committed issuance survives a power cut, a busy timeout and
  ``BEGIN IMMEDIATE`` write transactions so several processes can share one file).
* :class:`MemoryLedger`: a dict behind a lock, for tests and throwaway demos.

Serials are stored as lowercase hexadecimal text (a 128-bit serial does not fit SQLite's
64-bit INTEGER); times as integer microseconds since the Unix epoch (UTC), so range
queries compare numbers.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509

from holdca.errors import DuplicateSerialError, LedgerError

__all__ = [
    "REASONS",
    "SCHEMA_VERSION",
    "CARecord",
    "IssuanceLedger",
    "IssuanceRecord",
    "MemoryLedger",
    "Revocation",
    "SQLiteLedger",
    "serial_hex",
]

SCHEMA_VERSION = 2
"""The ledger schema this holdca writes (``PRAGMA user_version``).

Version 2 keeps issuances in a rowid table (appended in issuance order) with a UNIQUE
index on the serial; version 1 clustered the whole ~800-byte row on the random serial,
which made every insert rewrite a random page (3x the commit cost). Version 1 ledgers are
migrated when opened.
"""

# RFC 5280 CRLReason names, as cryptography's ReasonFlags spells them; removeFromCRL only
# appears in delta CRLs, which holdca does not issue.
REASONS = frozenset(
    flag.value for flag in x509.ReasonFlags if flag is not x509.ReasonFlags.remove_from_crl
)
"""RFC 5280 CRLReason names (camelCase, as in the RFC and cryptography's ReasonFlags)."""


def serial_hex(serial: int) -> str:
    """The canonical text form of a certificate serial: lowercase hex, no leading zeros."""
    if serial < 0:
        raise ValueError("certificate serials are non-negative")
    return format(serial, "x")


def _us(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("ledger times must be timezone-aware")
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class IssuanceRecord:
    """One issued certificate, as the ledger keeps it.

    Attributes:
        serial: the certificate serial number.
        did: the subject DID.
        manifest_digest: the signed image manifest digest (``sha256:...``).
        commit_cid: the ATProto commit CID the proof verified (``None`` for operator issuance).
        rev: the ATProto commit revision (TID), or ``None``.
        not_before: the certificate's notBefore.
        not_after: the certificate's notAfter.
        certificate_der: the certificate, DER.
        issuer_id: which CA issued it (the SHA-256 fingerprint of the CA certificate, hex).
        issued_at: when the hold issued it.
        kind: ``cosign``, ``resign`` or ``issue`` (operator issuance).
    """

    serial: int
    did: str
    manifest_digest: str
    commit_cid: str | None
    rev: str | None
    not_before: datetime
    not_after: datetime
    certificate_der: bytes = field(repr=False)
    issuer_id: str
    issued_at: datetime
    kind: str = "cosign"


@dataclass(frozen=True)
class Revocation:
    """A revocation entry.

    Attributes:
        serial: the revoked certificate's serial.
        revoked_at: when the hold revoked it.
        reason: an RFC 5280 reason name (see :data:`REASONS`) or ``None``.
        invalidity_date: when the key is known or suspected to have become unusable.
    """

    serial: int
    revoked_at: datetime
    reason: str | None = None
    invalidity_date: datetime | None = None


@dataclass(frozen=True)
class CARecord:
    """A CA certificate the hold signs with or publishes (for rotation).

    Attributes:
        ca_id: SHA-256 fingerprint (hex) of ``certificate_der``.
        key_label: the KeyStore label of its private key.
        certificate_der: the CA certificate, DER.
        created_at: when it was added.
        state: ``active`` (issues new certificates), ``root`` (the trusted parent of
            an active intermediate), ``published`` (still trusted and
            revocation-served during a rotation grace period) or ``retired``.
        retire_at: end of the grace period of a ``published`` CA, else ``None``.
        cross_certificates_der: certificates cross-signing this CA with its neighbour.
        parent_id: for an intermediate (issuing) CA, the ``ca_id`` of its root; the root
            of such a hold has state ``root`` (trusted, signs nothing day to day).
    """

    ca_id: str
    key_label: str
    certificate_der: bytes = field(repr=False)
    created_at: datetime
    state: str = "active"
    retire_at: datetime | None = None
    cross_certificates_der: tuple[bytes, ...] = ()
    parent_id: str | None = None


@runtime_checkable
class IssuanceLedger(Protocol):
    """Durable record of issuance, revocation, CRL numbers and CA certificates.

    Every method is thread-safe. Every write is committed before the method returns;
    a write that cannot be committed raises :class:`~holdca.errors.LedgerError`.
    """

    def record_issuance(self, record: IssuanceRecord) -> None:
        """Commit ``record``; raises LedgerError (duplicate serial, storage failure)."""
        ...

    def record_issuances(self, records: Sequence[IssuanceRecord]) -> list[LedgerError | None]:
        """Commit several records at once (one transaction, one sync to disk).

        Returns, per record in order, ``None`` when it was committed or the
        :class:`~holdca.errors.DuplicateSerialError` that kept it out (the others are
        committed regardless).

        Raises:
            LedgerError: the transaction failed; none of ``records`` was committed.
        """
        ...

    def get(self, serial: int) -> IssuanceRecord | None:
        """The issuance with ``serial``, or ``None``."""
        ...

    def by_did(self, did: str, *, since: datetime | None = None) -> list[IssuanceRecord]:
        """Issuances to ``did`` (issued at or after ``since``), oldest first."""
        ...

    def count_since(self, did: str, since: datetime) -> int:
        """How many certificates ``did`` was issued at or after ``since``."""
        ...

    def revoke(
        self,
        serial: int,
        *,
        revoked_at: datetime,
        reason: str | None = None,
        invalidity_date: datetime | None = None,
    ) -> Revocation:
        """Revoke ``serial``; returns the (possibly earlier, unchanged) revocation.

        Raises:
            LedgerError: the serial was never issued, or the write failed.
        """
        ...

    def revocation(self, serial: int) -> Revocation | None:
        """The revocation of ``serial``, or ``None`` when it is not revoked."""
        ...

    def revoked(self, issuer_id: str) -> list[tuple[Revocation, IssuanceRecord]]:
        """Every revocation of a certificate ``issuer_id`` issued, by serial."""
        ...

    def next_crl_number(self, issuer_id: str, this_update: datetime) -> tuple[int, datetime]:
        """Reserve the next CRL number of ``issuer_id``.

        Returns:
            ``(number, this_update)`` where ``number`` is one more than the last one
            handed out and ``this_update`` is never earlier than the last one (a clock
            going backwards cannot make a CRL go backwards).
        """
        ...

    def put_ca(self, ca: CARecord) -> None:
        """Insert or replace the CA record with ``ca.ca_id``."""
        ...

    def put_cas(self, cas: Sequence[CARecord]) -> None:
        """Insert or replace several CA records in one transaction (rotation)."""
        ...

    def cas(self) -> list[CARecord]:
        """Every CA record, oldest first."""
        ...

    def count(self) -> int:
        """How many certificates were issued."""
        ...

    def close(self) -> None:
        """Release resources (idempotent)."""
        ...


def _duplicate(serial: int) -> DuplicateSerialError:
    return DuplicateSerialError(f"duplicate certificate serial {serial_hex(serial)}")


def _check_reason(reason: str | None) -> None:
    if reason is not None and reason not in REASONS:
        raise LedgerError(f"unknown revocation reason {reason!r}; use one of {sorted(REASONS)}")


# --------------------------------------------------------------------- memory ledger


class MemoryLedger:
    """An :class:`IssuanceLedger` in process memory (tests, demos). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._issued: dict[int, IssuanceRecord] = {}
        self._revoked: dict[int, Revocation] = {}
        self._crl: dict[str, tuple[int, datetime]] = {}
        self._cas: dict[str, CARecord] = {}

    def record_issuance(self, record: IssuanceRecord) -> None:
        """Record ``record``; raises LedgerError on a duplicate serial."""
        with self._lock:
            if record.serial in self._issued:
                raise _duplicate(record.serial)
            self._issued[record.serial] = record

    def record_issuances(self, records: Sequence[IssuanceRecord]) -> list[LedgerError | None]:
        """Record each of ``records``; a duplicate serial is reported in its slot."""
        out: list[LedgerError | None] = []
        with self._lock:
            for record in records:
                if record.serial in self._issued:
                    out.append(_duplicate(record.serial))
                else:
                    self._issued[record.serial] = record
                    out.append(None)
        return out

    def get(self, serial: int) -> IssuanceRecord | None:
        """The issuance with ``serial``."""
        with self._lock:
            return self._issued.get(serial)

    def by_did(self, did: str, *, since: datetime | None = None) -> list[IssuanceRecord]:
        """Issuances to ``did`` at or after ``since``, oldest first."""
        with self._lock:
            found = [
                r
                for r in self._issued.values()
                if r.did == did and (since is None or r.issued_at >= since)
            ]
        return sorted(found, key=lambda r: (r.issued_at, r.serial))

    def count_since(self, did: str, since: datetime) -> int:
        """Number of issuances to ``did`` at or after ``since``."""
        return len(self.by_did(did, since=since))

    def revoke(
        self,
        serial: int,
        *,
        revoked_at: datetime,
        reason: str | None = None,
        invalidity_date: datetime | None = None,
    ) -> Revocation:
        """Revoke ``serial`` (idempotent: an earlier revocation wins)."""
        _check_reason(reason)
        with self._lock:
            if serial not in self._issued:
                raise LedgerError(f"no certificate with serial {serial_hex(serial)} was issued")
            existing = self._revoked.get(serial)
            if existing is not None:
                return existing
            entry = Revocation(serial, revoked_at, reason, invalidity_date)
            self._revoked[serial] = entry
            return entry

    def revocation(self, serial: int) -> Revocation | None:
        """The revocation of ``serial``."""
        with self._lock:
            return self._revoked.get(serial)

    def revoked(self, issuer_id: str) -> list[tuple[Revocation, IssuanceRecord]]:
        """Revocations of certificates issued by ``issuer_id``."""
        with self._lock:
            return [
                (rev, self._issued[s])
                for s, rev in sorted(self._revoked.items())
                if self._issued[s].issuer_id == issuer_id
            ]

    def next_crl_number(self, issuer_id: str, this_update: datetime) -> tuple[int, datetime]:
        """Next CRL number and a monotonic thisUpdate."""
        with self._lock:
            last_number, last_update = self._crl.get(issuer_id, (0, this_update))
            result = (last_number + 1, max(last_update, this_update))
            self._crl[issuer_id] = result
            return result

    def put_ca(self, ca: CARecord) -> None:
        """Insert or replace a CA record."""
        self.put_cas([ca])

    def put_cas(self, cas: Sequence[CARecord]) -> None:
        """Insert or replace CA records together."""
        with self._lock:
            for ca in cas:
                self._cas[ca.ca_id] = ca

    def cas(self) -> list[CARecord]:
        """CA records, oldest first."""
        with self._lock:
            return sorted(self._cas.values(), key=lambda c: c.created_at)

    def count(self) -> int:
        """Number of issuances."""
        with self._lock:
            return len(self._issued)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"<MemoryLedger {len(self._issued)} issued, {len(self._revoked)} revoked>"


# --------------------------------------------------------------------- SQLite ledger

_SCHEMA = """
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
);
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
    create = _SCHEMA[_SCHEMA.index("CREATE TABLE issuance") : _SCHEMA.index(";")]
    conn.execute(create.replace("CREATE TABLE issuance", "CREATE TABLE issuance_v2", 1))
    conn.execute(
        f"INSERT INTO issuance_v2 ({_ISSUANCE_COLUMNS}) SELECT {_ISSUANCE_COLUMNS} "  # noqa: S608 (constant column list)
        "FROM issuance ORDER BY issued_at_us, serial"
    )
    conn.execute("DROP TABLE issuance")
    conn.execute("ALTER TABLE issuance_v2 RENAME TO issuance")
    conn.execute("CREATE INDEX issuance_by_did ON issuance (did, issued_at_us)")
    if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
        raise LedgerError("ledger migration: a revocation lost its issuance")


_ISSUANCE_COLUMNS = (
    "serial, did, manifest_digest, commit_cid, rev, not_before_us, not_after_us, "
    "certificate, issuer_id, issued_at_us, kind"
)


def _issuance_row(row: tuple[object, ...]) -> IssuanceRecord:
    serial, did, digest, cid, rev, nb, na, der, issuer, issued, kind = row
    return IssuanceRecord(
        serial=int(str(serial), 16),
        did=str(did),
        manifest_digest=str(digest),
        commit_cid=None if cid is None else str(cid),
        rev=None if rev is None else str(rev),
        not_before=_from_us(nb),
        not_after=_from_us(na),
        certificate_der=der if isinstance(der, bytes) else bytes(der),  # type: ignore[call-overload]
        issuer_id=str(issuer),
        issued_at=_from_us(issued),
        kind=str(kind),
    )


def _from_us(value: object) -> datetime:
    if not isinstance(value, int):
        raise LedgerError("ledger holds a non-integer time")
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)


def _revocation_row(row: tuple[object, ...]) -> Revocation:
    serial, at, reason, invalid = row
    return Revocation(
        serial=int(str(serial), 16),
        revoked_at=_from_us(at),
        reason=None if reason is None else str(reason),
        invalidity_date=None if invalid is None else _from_us(invalid),
    )


_INSERT_ISSUANCE = f"INSERT INTO issuance ({_ISSUANCE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"  # noqa: S608 (constant column list)


class _Pending:
    """One issuance waiting for a group commit, and its outcome once ``done``."""

    __slots__ = ("done", "error", "serial", "values")

    def __init__(self, record: IssuanceRecord) -> None:
        self.serial = record.serial
        self.values = (
            serial_hex(record.serial),
            record.did,
            record.manifest_digest,
            record.commit_cid,
            record.rev,
            _us(record.not_before),
            _us(record.not_after),
            record.certificate_der,
            record.issuer_id,
            _us(record.issued_at),
            record.kind,
        )
        self.done = False
        self.error: LedgerError | None = None


class SQLiteLedger:
    """An :class:`IssuanceLedger` in one SQLite file (WAL, ``synchronous=FULL``).

    Concurrency: one connection guarded by a lock per ledger object. Writes in SQLite
    are serialised by the database anyway, and every public method is a single short
    statement or transaction, so a per-thread connection would buy concurrent *reads*
    only while costing a connection per server thread; see docs/operating.md for the
    measurement. Several processes may open the same file: write transactions start
    with ``BEGIN IMMEDIATE`` and wait up to ``busy_timeout`` seconds for the lock.

    Durability: ``synchronous=FULL`` syncs the WAL on every commit, so an issuance that
    was reported committed survives a power cut (``NORMAL`` may lose the last commits,
    i.e. certificates that are in a user's hands but not in the ledger).

    Group commit: issuances recorded by several threads at once share one transaction and
    one sync (see :meth:`record_issuance`); :meth:`record_issuances` commits a batch.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        """Open (creating if needed) the ledger at ``path``.

        Raises:
            LedgerError: the file cannot be opened, is not a ledger, or was written by a
                newer holdca (its schema version is higher than :data:`SCHEMA_VERSION`).
        """
        self._path = Path(path)
        self._lock = threading.Lock()  # the connection, and with it the write transaction
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending] = []  # issuances waiting for the next group commit
        try:
            conn = sqlite3.connect(
                str(self._path),
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open ledger {self._path}: {exc}") from exc
        self._conn: sqlite3.Connection | None = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
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
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version == 1:
                _migrate_v1_issuance(conn)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger {self._path} has schema version {version}, newer than this "
                    f"holdca understands ({SCHEMA_VERSION}); upgrade holdca"
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise LedgerError("the ledger is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger read failed: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise LedgerError("the ledger is closed")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger is busy or unwritable: {exc}") from exc
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
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger is busy or unwritable: {exc}") from exc
            try:
                for pending in batch:
                    try:
                        conn.execute(_INSERT_ISSUANCE, pending.values)
                    except sqlite3.IntegrityError as exc:
                        pending.error = (
                            _duplicate(pending.serial)
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
        lower = -(2**62) if since is None else _us(since)
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
                (did, _us(since)),
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
        _check_reason(reason)
        key = serial_hex(serial)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM issuance WHERE serial = ?", (key,)).fetchone() is None:
                raise LedgerError(f"no certificate with serial {key} was issued")
            conn.execute(
                "INSERT OR IGNORE INTO revocation VALUES (?,?,?,?)",
                (
                    key,
                    _us(revoked_at),
                    reason,
                    None if invalidity_date is None else _us(invalidity_date),
                ),
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

    def next_crl_number(self, issuer_id: str, this_update: datetime) -> tuple[int, datetime]:
        """Next CRL number of ``issuer_id`` and a thisUpdate never earlier than the last."""
        wanted = _us(this_update)
        with self._write() as conn:
            row = conn.execute(
                "SELECT number, this_update_us FROM crl_state WHERE issuer_id = ?", (issuer_id,)
            ).fetchone()
            number = 1 if row is None else int(row[0]) + 1
            update = wanted if row is None else max(wanted, int(row[1]))
            conn.execute(
                "INSERT OR REPLACE INTO crl_state VALUES (?,?,?)", (issuer_id, number, update)
            )
        return number, _from_us(update)

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
                        _us(ca.created_at),
                        ca.state,
                        None if ca.retire_at is None else _us(ca.retire_at),
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
                created_at=_from_us(r[3]),
                state=str(r[4]),
                retire_at=None if r[5] is None else _from_us(r[5]),
                cross_certificates_der=_unpack(bytes(r[6])),
                parent_id=None if r[7] is None else str(r[7]),
            )
            for r in rows
        ]

    def count(self) -> int:
        """Number of issuances."""
        with self._read() as conn:
            return int(conn.execute("SELECT count(*) FROM issuance").fetchone()[0])

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"<SQLiteLedger {str(self._path)!r}>"
