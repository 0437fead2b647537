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

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from holdca.errors import LedgerError
from holdca.hold.ledger.base import (
    check_did_state,
    check_item,
    check_reason,
    duplicate_serial,
)
from holdca.hold.ledger.groupcommit import GroupCommit, PendingIssuance
from holdca.hold.ledger.logentries import revocation_entry
from holdca.hold.ledger.records import (
    CARecord,
    DenyEntry,
    DIDState,
    IssuanceRecord,
    Recovery,
    RecoveryItem,
    Revocation,
    from_us,
    serial_hex,
    to_us,
)
from holdca.hold.ledger.sqlite_schema import (
    INSERT_ISSUANCE,
    INSERT_LOG_ENTRY,
    ISSUANCE_COLUMNS,
    SCHEMA_VERSION,
    begin,
    deny_row,
    issuance_row,
    issuance_values,
    migrate,
    next_log_index,
    pack,
    revocation_row,
    text,
    unpack,
)

__all__ = ["SCHEMA_VERSION", "SQLiteLedger"]


def _create_private(path: Path) -> None:
    """Create ``path`` empty, mode 0600, unless it exists. SQLite would create a new
    database 0644 (less the umask) and gives its -wal and -shm files the database's mode,
    so the ledger (every DID and certificate issued) would be readable by other users.

    Raises:
        LedgerError: the file cannot be created (missing directory, no permission).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise LedgerError(f"cannot create ledger {path}: {exc.strerror or exc}") from None
    os.close(fd)


class SQLiteLedger(GroupCommit):
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
    tokens and per-DID rate slots are written through a third connection with
    ``synchronous=NORMAL``: losing the last of them in a power cut only re-opens tokens
    that expire within minutes or frees a slot, and it saves a sync per request.

    Group commit: issuances recorded by several threads at once share one transaction and
    one sync (see :meth:`record_issuance`); :meth:`record_issuances` commits a batch.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        """Open (creating if needed, mode 0600) the ledger at ``path``.

        Raises:
            LedgerError: the file cannot be opened, is not a ledger, or was written by a
                newer holdca (its schema version is higher than :data:`SCHEMA_VERSION`).
        """
        self._path = Path(path)
        _create_private(self._path)  # before SQLite creates it world-readable
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()  # the write connection, and with it the transaction
        self._queue_lock = threading.Lock()
        self._queue: list[PendingIssuance] = []  # issuances waiting for the next group commit
        self._readers_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []  # every reader connection, for close()
        self._idle_readers: list[sqlite3.Connection] = []  # those no read is using now
        self._closed = False
        conn = self._connect()
        self._conn: sqlite3.Connection | None = conn
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise LedgerError(f"ledger {self._path}: WAL journal mode is unavailable")
            conn.execute("PRAGMA synchronous = FULL")
            migrate(conn, self._path)  # foreign keys off: a schema migration rebuilds tables
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

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection of the pool for one read (never the write connection, so
        a read does not wait behind a writer). The pool grows to the number of reads at
        once, not to the number of threads that ever read (worker threads come and go)."""
        with self._readers_lock:
            if self._closed:
                raise LedgerError("the ledger is closed")
            conn = self._idle_readers.pop() if self._idle_readers else None
            if conn is None:
                conn = self._connect()
                conn.execute("PRAGMA query_only = ON")
                self._readers.append(conn)
        try:
            yield conn
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger read failed: {exc}") from exc
        finally:
            with self._readers_lock:
                if not self._closed:
                    self._idle_readers.append(conn)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise LedgerError("the ledger is closed")
            begin(conn)
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

    @contextmanager
    def _light_write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the ``synchronous=NORMAL`` connection, for rows whose
        loss in a power cut only loosens a limit (used tokens, rate slots): no WAL sync of
        its own; the next FULL commit (an issuance) syncs it with its own frames."""
        # the write lock too: in this process the write queues behind a group commit
        # instead of spinning in SQLite's busy handler against it (other processes still do)
        with self._lock, self._token_lock:
            conn = self._token_conn
            if self._closed:
                raise LedgerError("the ledger is closed")
            begin(conn)
            try:
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise LedgerError(f"ledger write failed: {exc}") from exc
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _pending(self, record: IssuanceRecord) -> PendingIssuance:
        """``record`` with its row values, ready for a group commit."""
        return PendingIssuance(record, issuance_values)

    def _commit_batch(self, batch: list[PendingIssuance]) -> None:
        """Insert ``batch`` in one transaction; every entry ends ``done`` with its outcome.

        Caller holds ``self._lock``. A duplicate serial fails only its own INSERT (SQLite
        rolls back the statement, not the transaction); any other failure fails them all.
        """
        committed = False
        try:
            conn = self._conn
            if conn is None:
                raise LedgerError("the ledger is closed")
            begin(conn)
            try:
                index = next_log_index(conn)
                for pending in batch:
                    try:
                        conn.execute(INSERT_ISSUANCE, pending.values)
                    except sqlite3.IntegrityError as exc:
                        pending.error = (
                            duplicate_serial(pending.serial)
                            if "UNIQUE" in str(exc)
                            else LedgerError(f"ledger refused the write: {exc}")
                        )
                        continue
                    key = serial_hex(pending.serial)
                    conn.execute(INSERT_LOG_ENTRY, (index, "issuance", key, pending.entry))
                    index += 1
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
                f"SELECT {ISSUANCE_COLUMNS} FROM issuance WHERE serial = ?",  # noqa: S608
                (serial_hex(serial),),
            ).fetchone()
        return None if row is None else issuance_row(row)

    def by_did(self, did: str, *, since: datetime | None = None) -> list[IssuanceRecord]:
        """Issuances to ``did`` at or after ``since``, oldest first."""
        lower = -(2**62) if since is None else to_us(since)
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {ISSUANCE_COLUMNS} FROM issuance WHERE did = ? AND issued_at_us >= ? "  # noqa: S608 (constant column list)
                "ORDER BY issued_at_us, serial",
                (did, lower),
            ).fetchall()
        return [issuance_row(r) for r in rows]

    def take_rate_slot(
        self, did: str, *, now: datetime, window: timedelta, limit: int
    ) -> datetime | None:
        """Take a rate slot of ``did`` in one write transaction (BEGIN IMMEDIATE serialises
        every process sharing the file), on the unsynced connection: a slot lost in a power
        cut only lets one more certificate through, and the issuance it precedes syncs it."""
        start, at = to_us(now - window), to_us(now)
        with self._light_write() as conn:
            conn.execute("DELETE FROM rate_slot WHERE did = ? AND at_us <= ?", (did, start))
            taken = [
                int(r[0])
                for r in conn.execute(
                    "SELECT at_us FROM rate_slot WHERE did = ? ORDER BY at_us", (did,)
                ).fetchall()
            ]
            if len(taken) >= limit:
                return from_us(taken[len(taken) - limit]) + window
            conn.execute("INSERT INTO rate_slot VALUES (?, ?)", (did, at))
        return None

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
            found = conn.execute("SELECT did FROM issuance WHERE serial = ?", (key,)).fetchone()
            if found is None:
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
                logged = revocation_entry(serial, str(found[0]), revoked_at, reason)
                row = (next_log_index(conn), "revocation", key, logged)
                conn.execute(INSERT_LOG_ENTRY, row)
            row = conn.execute("SELECT * FROM revocation WHERE serial = ?", (key,)).fetchone()
        return revocation_row(row)

    def revocation(self, serial: int) -> Revocation | None:
        """The revocation of ``serial``."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT * FROM revocation WHERE serial = ?", (serial_hex(serial),)
            ).fetchone()
        return None if row is None else revocation_row(row)

    def revoked(self, issuer_id: str) -> list[tuple[Revocation, IssuanceRecord]]:
        """Revocations of certificates issued by ``issuer_id``."""
        cols = ", ".join(f"i.{c.strip()}" for c in ISSUANCE_COLUMNS.split(","))
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT r.serial, r.revoked_at_us, r.reason, r.invalidity_date_us, {cols} "  # noqa: S608 (constant column list)
                "FROM revocation r JOIN issuance i ON i.serial = r.serial "
                "WHERE i.issuer_id = ?",
                (issuer_id,),
            ).fetchall()
        out = [(revocation_row(r[:4]), issuance_row(r[4:])) for r in rows]
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
                        pack(ca.cross_certificates_der),
                        ca.parent_id,
                    ),
                )
            conn.execute(
                "INSERT INTO counter VALUES ('cas', 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1"
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
                cross_certificates_der=unpack(bytes(r[6])),
                parent_id=None if r[7] is None else str(r[7]),
            )
            for r in rows
        ]

    def ca_version(self) -> int:
        """How many times CA records were written (one primary-key read)."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM counter WHERE name = 'cas'").fetchone()
        return 0 if row is None else int(row[0])

    def store_crl(self, issuer_id: str, der: bytes, *, next_update: datetime) -> None:
        """Keep a CRL signed ahead of time (replacing the stored one)."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO stored_crl VALUES (?,?,?)",
                (issuer_id, to_us(next_update), bytes(der)),
            )

    def stored_crl(self, issuer_id: str) -> tuple[bytes, datetime] | None:
        """The stored CRL of ``issuer_id`` and its nextUpdate."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT der, next_update_us FROM stored_crl WHERE issuer_id = ?", (issuer_id,)
            ).fetchone()
        return None if row is None else (bytes(row[0]), from_us(row[1]))

    def deny(self, did: str, *, reason: str, source: str, now: datetime) -> DenyEntry:
        """Deny ``did`` (an earlier entry is kept)."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO deny_list VALUES (?,?,?,?)",
                (did, reason, to_us(now), source),
            )
            row = conn.execute("SELECT * FROM deny_list WHERE did = ?", (did,)).fetchone()
        return deny_row(row)

    def allow(self, did: str) -> DenyEntry | None:
        """Lift the entry of ``did``; returns it."""
        with self._write() as conn:
            row = conn.execute("SELECT * FROM deny_list WHERE did = ?", (did,)).fetchone()
            conn.execute("DELETE FROM deny_list WHERE did = ?", (did,))
        return None if row is None else deny_row(row)

    def denial(self, did: str) -> DenyEntry | None:
        """The entry of ``did``."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM deny_list WHERE did = ?", (did,)).fetchone()
        return None if row is None else deny_row(row)

    def denials(self) -> list[DenyEntry]:
        """Every entry, oldest first."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM deny_list ORDER BY since_us, did").fetchall()
        return [deny_row(r) for r in rows]

    def use_token(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        """First use of ``key`` until ``expires_at``; ``False`` on a replay.

        One short transaction: forget expired keys, then insert ``key`` unless an
        unexpired entry exists. Shared by every process that opens this file.
        """
        with self._light_write() as conn:
            conn.execute("DELETE FROM used_token WHERE expires_us <= ?", (to_us(now),))
            fresh = conn.execute(
                "INSERT OR IGNORE INTO used_token VALUES (?, ?)", (key, to_us(expires_at))
            ).rowcount
        return fresh == 1

    def live(self, now: datetime, *, issuer_id: str | None = None) -> list[IssuanceRecord]:
        """Unexpired, unrevoked issuances (of ``issuer_id``), oldest first."""
        cols = ", ".join(f"i.{c.strip()}" for c in ISSUANCE_COLUMNS.split(","))
        query = (
            f"SELECT {cols} FROM issuance i LEFT JOIN revocation r ON r.serial = i.serial "  # noqa: S608 (constant column list)
            "WHERE r.serial IS NULL AND i.not_after_us > ?"
        )
        args: list[object] = [to_us(now)]
        if issuer_id is not None:
            query += " AND i.issuer_id = ?"
            args.append(issuer_id)
        with self._read() as conn:
            rows = conn.execute(query + " ORDER BY i.issued_at_us, i.serial", args).fetchall()
        return [issuance_row(r) for r in rows]

    def did_state(self, did: str) -> DIDState | None:
        """The last state seen of ``did``."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM did_state WHERE did = ?", (did,)).fetchone()
        if row is None:
            return None
        did_, key, host, status, first, updated = row
        return DIDState(
            str(did_), text(key), text(host), str(status), from_us(first), from_us(updated)
        )

    def put_did_state(self, state: DIDState) -> None:
        """Insert or replace the state of ``state.did``."""
        check_did_state(state)
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO did_state VALUES (?,?,?,?,?,?)",
                (
                    state.did,
                    state.signing_key,
                    state.pds_host,
                    state.status,
                    to_us(state.first_seen),
                    to_us(state.updated_at),
                ),
            )

    def note_pds_host(self, did: str, host: str, *, now: datetime) -> bool:
        """``True`` when ``host`` is new for ``did``."""
        with self._write() as conn:
            added = conn.execute(
                "INSERT OR IGNORE INTO did_host VALUES (?,?,?)", (did, host, to_us(now))
            ).rowcount
        return added == 1

    def start_recovery(
        self, old_ca: str, new_ca: str, serials: Sequence[int], *, now: datetime
    ) -> Recovery:
        """Open a recovery with a pending item per serial (one transaction)."""
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO recovery (old_ca, new_ca, started_us) VALUES (?,?,?)",
                (old_ca, new_ca, to_us(now)),
            )
            number = int(cursor.lastrowid or 0)
            conn.executemany(
                "INSERT INTO recovery_item VALUES (?,?,'pending',NULL,NULL)",
                [(number, serial_hex(s)) for s in serials],
            )
        return Recovery(number, old_ca, new_ca, now)

    def recoveries(self, *, open_only: bool = False) -> list[Recovery]:
        """Recoveries, oldest first."""
        query = "SELECT id, old_ca, new_ca, started_us, finished_us FROM recovery"
        if open_only:
            query += " WHERE finished_us IS NULL"
        with self._read() as conn:
            rows = conn.execute(query + " ORDER BY id").fetchall()
        return [
            Recovery(int(i), str(o), str(n), from_us(s), None if f is None else from_us(f))
            for i, o, n, s, f in rows
        ]

    def recovery_items(self, recovery_id: int) -> list[RecoveryItem]:
        """Items of a recovery, by serial."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT serial, status, new_serial, detail FROM recovery_item "
                "WHERE recovery_id = ?",
                (recovery_id,),
            ).fetchall()
        items = [
            RecoveryItem(
                recovery_id,
                int(str(serial), 16),
                str(status),
                None if new is None else int(str(new), 16),
                text(detail),
            )
            for serial, status, new, detail in rows
        ]
        return sorted(items, key=lambda i: i.serial)

    def set_recovery_item(self, item: RecoveryItem) -> None:
        """Record an item's outcome."""
        check_item(item)
        new = None if item.new_serial is None else serial_hex(item.new_serial)
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE recovery_item SET status = ?, new_serial = ?, detail = ? "
                "WHERE recovery_id = ? AND serial = ?",
                (item.status, new, item.detail, item.recovery_id, serial_hex(item.serial)),
            ).rowcount
            if changed != 1:
                raise LedgerError(
                    f"recovery {item.recovery_id} has no item {serial_hex(item.serial)}"
                )

    def finish_recovery(self, recovery_id: int, *, now: datetime) -> None:
        """Mark a recovery finished."""
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE recovery SET finished_us = ? WHERE id = ?", (to_us(now), recovery_id)
            ).rowcount
            if changed != 1:
                raise LedgerError(f"no recovery {recovery_id}")

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
            self._idle_readers.clear()
        with self._token_lock:
            self._token_conn.close()

    def issuances(self, *, since: datetime | None = None) -> list[IssuanceRecord]:
        """Every issuance at or after ``since``, oldest first."""
        lower = -(2**62) if since is None else to_us(since)
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {ISSUANCE_COLUMNS} FROM issuance WHERE issued_at_us >= ? "  # noqa: S608 (constant column list)
                "ORDER BY issued_at_us, serial",
                (lower,),
            ).fetchall()
        return [issuance_row(r) for r in rows]

    def log_size(self) -> int:
        """How many log entries were sequenced."""
        with self._read() as conn:
            return next_log_index(conn)

    def log_entries(self, start: int, end: int) -> list[bytes]:
        """The log entries with indexes in ``[start, end)``, in order."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT entry FROM log_entry WHERE idx >= ? AND idx < ? ORDER BY idx",
                (start, end),
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def log_index(self, serial: int, *, revocation: bool = False) -> int | None:
        """The log index of the issuance (or revocation) of ``serial``."""
        kind = "revocation" if revocation else "issuance"
        with self._read() as conn:
            row = conn.execute(
                "SELECT idx FROM log_entry WHERE kind = ? AND serial = ?",
                (kind, serial_hex(serial)),
            ).fetchone()
        return None if row is None else int(row[0])

    def __repr__(self) -> str:
        return f"<SQLiteLedger {str(self._path)!r}>"
