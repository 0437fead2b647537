"""The issuance half of :class:`~holdca.hold.ledger.PostgresLedger`: recording issuances
(group commit), reading them back, and the per-DID rate slots.

:class:`PostgresIssuances` is the base class of
:class:`~holdca.hold.ledger.postgres.PostgresLedger`: it holds the
:class:`~holdca.hold.ledger.postgres_db.PostgresDatabase` (``_db``) and the group-commit
queue. Issuances recorded by several threads at once share one transaction; a serial
already in the database fails only its own record (``INSERT ... ON CONFLICT (serial) DO
NOTHING``: a concurrent insert of the same serial waits for the other transaction and
then loses). Each committed issuance is sequenced into the transparency log in the same
transaction.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from holdca.errors import LedgerError
from holdca.hold.ledger.base import duplicate_serial
from holdca.hold.ledger.groupcommit import GroupCommit, PendingIssuance
from holdca.hold.ledger.postgres_db import PostgresDatabase, sequence_log_entries
from holdca.hold.ledger.postgres_schema import (
    INSERT_ISSUANCE,
    ISSUANCE_COLUMNS,
    issuance_row,
    issuance_values,
)
from holdca.hold.ledger.records import IssuanceRecord

__all__ = ["JOINED_ISSUANCE_COLUMNS", "PostgresIssuances"]

JOINED_ISSUANCE_COLUMNS = ", ".join(f"i.{c.strip()}" for c in ISSUANCE_COLUMNS.split(","))
"""The issuance columns qualified by the alias ``i`` (for joins with ``issuance i``)."""


class PostgresIssuances(GroupCommit):
    """Issuances in a PostgreSQL ledger: the base class of
    :class:`~holdca.hold.ledger.postgres.PostgresLedger` (see there).

    Thread-safe: every call takes a pooled connection for one statement or transaction.
    Issuances recorded by several threads at once share one transaction (group commit,
    as :class:`~holdca.hold.ledger.SQLiteLedger` does).
    """

    def __init__(self, db: PostgresDatabase) -> None:
        """Record issuances in ``db`` (which the subclass opened)."""
        self._db = db
        self._lock = threading.Lock()  # the group-commit leader
        self._queue_lock = threading.Lock()
        self._queue: list[PendingIssuance] = []

    def _pending(self, record: IssuanceRecord) -> PendingIssuance:
        """``record`` with its row values, ready for a group commit."""
        return PendingIssuance(record, issuance_values)

    def _commit_batch(self, batch: list[PendingIssuance]) -> None:
        """Insert ``batch`` in one transaction; every entry ends ``done`` with its outcome.

        A serial already in the database (or twice in the batch) fails only its own
        entry: the insert skips it (``ON CONFLICT DO NOTHING``) and returns no row. Any
        other failure rolls back and fails every entry.
        """
        committed = False
        outcome: list[LedgerError | None] = []
        try:
            seen: set[int] = set()
            todo: list[PendingIssuance] = []
            for pending in batch:
                if pending.serial in seen:
                    outcome.append(duplicate_serial(pending.serial))
                else:
                    seen.add(pending.serial)
                    todo.append(pending)
                    outcome.append(None)
            with self._db.write() as cur:
                if todo:
                    cur.executemany(INSERT_ISSUANCE, [p.values for p in todo], returning=True)
                    for pending in todo:
                        if cur.fetchone() is None:
                            pending.error = duplicate_serial(pending.serial)
                        cur.nextset()
                    sequence_log_entries(
                        cur, [("issuance", p.serial, p.entry) for p in todo if not p.error]
                    )
            committed = True
            for pending, early in zip(batch, outcome, strict=True):
                if early is not None:
                    pending.error = early
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
        row = self._db.one(
            f"SELECT {ISSUANCE_COLUMNS} FROM issuance WHERE serial = %s",  # noqa: S608 (constant column list)
            (serial,),
        )
        return None if row is None else issuance_row(row)

    def by_did(self, did: str, *, since: datetime | None = None) -> list[IssuanceRecord]:
        """Issuances to ``did`` at or after ``since``, oldest first."""
        query = f"SELECT {ISSUANCE_COLUMNS} FROM issuance WHERE did = %s"  # noqa: S608 (constant column list)
        args: list[object] = [did]
        if since is not None:
            query += " AND issued_at >= %s"
            args.append(since)
        return [issuance_row(r) for r in self._db.all(query + " ORDER BY issued_at, serial", args)]

    def take_rate_slot(
        self, did: str, *, now: datetime, window: timedelta, limit: int
    ) -> datetime | None:
        """Take a rate slot of ``did``: one transaction under a per-DID advisory lock, so
        replicas counting at once are serialised (a count then an insert under READ
        COMMITTED alone would let two of them take the last slot)."""
        with self._db.write() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (did,))
            cur.execute("DELETE FROM rate_slot WHERE did = %s AND at <= %s", (did, now - window))
            cur.execute("SELECT at FROM rate_slot WHERE did = %s ORDER BY at", (did,))
            taken = [row[0] for row in cur.fetchall()]
            if len(taken) >= limit:
                return taken[len(taken) - limit] + window  # type: ignore[no-any-return]
            cur.execute("INSERT INTO rate_slot VALUES (%s, %s)", (did, now))
        return None

    def count_since(self, did: str, since: datetime) -> int:
        """Number of issuances to ``did`` at or after ``since`` (every replica's)."""
        row = self._db.one(
            "SELECT count(*) FROM issuance WHERE did = %s AND issued_at >= %s", (did, since)
        )
        return int(row[0])

    def issuances(self, *, since: datetime | None = None) -> list[IssuanceRecord]:
        """Every issuance at or after ``since``, oldest first."""
        query = f"SELECT {ISSUANCE_COLUMNS} FROM issuance"  # noqa: S608 (constant column list)
        args: list[object] = []
        if since is not None:
            query += " WHERE issued_at >= %s"
            args.append(since)
        return [issuance_row(r) for r in self._db.all(query + " ORDER BY issued_at, serial", args)]

    def live(self, now: datetime, *, issuer_id: str | None = None) -> list[IssuanceRecord]:
        """Unexpired, unrevoked issuances (of ``issuer_id``), oldest first."""
        query = (
            f"SELECT {JOINED_ISSUANCE_COLUMNS} FROM issuance i "  # noqa: S608 (constant column list)
            "LEFT JOIN revocation r ON r.serial = i.serial "
            "WHERE r.serial IS NULL AND i.not_after > %s"
        )
        args: list[object] = [now]
        if issuer_id is not None:
            query += " AND i.issuer_id = %s"
            args.append(issuer_id)
        rows = self._db.all(query + " ORDER BY i.issued_at, i.serial", args)
        return [issuance_row(r) for r in rows]

    def count(self) -> int:
        """Number of issuances."""
        return int(self._db.one("SELECT count(*) FROM issuance")[0])

    def close(self) -> None:
        """Close the pool (idempotent), after a group commit under way has finished."""
        with self._lock:
            if self._db.closed:
                return
            self._db.closed = True
        self._db.close()
