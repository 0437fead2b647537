"""An :class:`~holdca.hold.ledger.IssuanceLedger` in PostgreSQL, shared by many replicas.

psycopg 3 with one :class:`psycopg_pool.ConnectionPool` per ledger object (the
``postgres`` extra). Everything that replicas must agree on is decided by the database,
not by a process:

* serials are unique by constraint (``INSERT ... ON CONFLICT (serial) DO NOTHING``: a
  concurrent insert of the same serial waits for the other transaction and then loses);
* CRL numbers are one row per issuer, incremented by ``INSERT ... ON CONFLICT DO UPDATE``,
  which holds that row's lock until commit, so numbers are strictly increasing in commit
  order (never a sequence: sequences are not commit-ordered);
* used service-auth tokens are one row per key, claimed by an upsert that only takes an
  expired row over, so two processes never both accept one ``jti``;
* the CA records and their ``ca_version`` counter change in one transaction.

Time is bounded: ``connect_timeout`` for new connections and for waiting on the pool,
``statement_timeout`` for every statement (a lock held elsewhere included). A dead
database makes calls fail with :class:`~holdca.errors.LedgerError` (503 in the server);
connections are checked before use, so after PostgreSQL restarts the pool reconnects
without the hold being restarted. Passwords in the URL never appear in the repr, errors
or logs.

The code is in three modules: this one (:class:`PostgresLedger`: revocations and CRL
state, the transparency log, CA records, the deny list, used tokens, DIDs and
recoveries), :mod:`holdca.hold.ledger.postgres_issuance` (issuances and their group
commit, the base class) and :mod:`holdca.hold.ledger.postgres_db` (the pool and the
mapping of database failures to LedgerError).

Example::

    ledger = PostgresLedger("postgresql://hold@db.internal/hold")
    ledger.record_issuance(record)
    number, this_update = ledger.next_crl_number(record.issuer_id, now)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from holdca.errors import LedgerError
from holdca.hold.ledger.base import check_did_state, check_item, check_reason
from holdca.hold.ledger.logentries import revocation_entry
from holdca.hold.ledger.postgres_db import PostgresDatabase, bump_counter, sequence_log_entries
from holdca.hold.ledger.postgres_issuance import JOINED_ISSUANCE_COLUMNS, PostgresIssuances
from holdca.hold.ledger.postgres_schema import (
    SCHEMA_VERSION,
    deny_row,
    issuance_row,
    revocation_row,
    serial_of,
    utc,
)
from holdca.hold.ledger.records import (
    CARecord,
    DenyEntry,
    DIDState,
    IssuanceRecord,
    Recovery,
    RecoveryItem,
    Revocation,
    serial_hex,
)

__all__ = ["PG_SCHEMA_VERSION", "PostgresLedger"]

PG_SCHEMA_VERSION = SCHEMA_VERSION
"""The PostgreSQL ledger schema this holdca writes (table ``schema_version``)."""

_TOKEN_SWEEP_SECONDS = 60.0


class PostgresLedger(PostgresIssuances):
    """An :class:`IssuanceLedger` in a PostgreSQL database (one pool per object).

    Thread-safe: every call takes a pooled connection for one statement or transaction.
    Issuances recorded by several threads at once share one transaction (group commit,
    as :class:`~holdca.hold.ledger.SQLiteLedger` does; see
    :class:`~holdca.hold.ledger.postgres_issuance.PostgresIssuances`); other processes
    write concurrently, and the constraints and row locks described in the module
    docstring keep them consistent.
    """

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        connect_timeout: float = 5.0,
        statement_timeout: float = 10.0,
        max_connections: int = 8,
    ) -> None:
        """Connect to ``url`` and create or migrate the schema (see
        :func:`~holdca.hold.ledger.postgres_schema.migrate`).

        Raises:
            ConfigError: the postgres extra is missing; ``create`` is false and the
                database has no holdca schema (``HOLD_LEDGER_URL``).
            ValueError: a timeout is not positive or ``max_connections`` is below 1.
            LedgerError: the URL does not parse, the database cannot be reached in
                ``connect_timeout``, holds a newer schema, or is a standby whose schema
                would need creating.
        """
        super().__init__(
            PostgresDatabase(
                url,
                create=create,
                connect_timeout=connect_timeout,
                statement_timeout=statement_timeout,
                max_connections=max_connections,
            )
        )
        self._swept = 0.0  # monotonic time of the last sweep of expired tokens

    # --- revocations and CRLs ----------------------------------------------------

    def revoke(
        self,
        serial: int,
        *,
        revoked_at: datetime,
        reason: str | None = None,
        invalidity_date: datetime | None = None,
    ) -> Revocation:
        """Revoke ``serial`` (idempotent: an earlier revocation wins, also across
        processes: the primary key decides)."""
        check_reason(reason)
        with self._db.write() as cur:
            cur.execute("SELECT did FROM issuance WHERE serial = %s", (serial,))
            found = cur.fetchone()
            if found is None:
                raise LedgerError(f"no certificate with serial {serial_hex(serial)} was issued")
            cur.execute(
                "INSERT INTO revocation VALUES (%s,%s,%s,%s) ON CONFLICT (serial) DO NOTHING",
                (serial, revoked_at, reason, invalidity_date),
            )
            if cur.rowcount == 1:
                bump_counter(cur, "revocations")
                did = str(found[0])
                sequence_log_entries(
                    cur, [("revocation", serial, revocation_entry(serial, did, revoked_at, reason))]
                )
            cur.execute("SELECT * FROM revocation WHERE serial = %s", (serial,))
            row = cur.fetchone()
        return revocation_row(row)

    def log_size(self) -> int:
        """How many log entries were sequenced."""
        return self._db.counter("log_size")

    def log_entries(self, start: int, end: int) -> list[bytes]:
        """The log entries with indexes in ``[start, end)``, in order."""
        rows = self._db.all(
            "SELECT entry FROM log_entry WHERE idx >= %s AND idx < %s ORDER BY idx", (start, end)
        )
        return [bytes(r[0]) for r in rows]

    def log_index(self, serial: int, *, revocation: bool = False) -> int | None:
        """The log index of the issuance (or revocation) of ``serial``."""
        kind = "revocation" if revocation else "issuance"
        row = self._db.one(
            "SELECT idx FROM log_entry WHERE kind = %s AND serial = %s", (kind, serial)
        )
        return None if row is None else int(row[0])

    def revocation(self, serial: int) -> Revocation | None:
        """The revocation of ``serial``."""
        row = self._db.one("SELECT * FROM revocation WHERE serial = %s", (serial,))
        return None if row is None else revocation_row(row)

    def revoked(self, issuer_id: str) -> list[tuple[Revocation, IssuanceRecord]]:
        """Revocations of certificates issued by ``issuer_id``, by serial."""
        rows = self._db.all(
            "SELECT r.serial, r.revoked_at, r.reason, r.invalidity_date, "  # noqa: S608 (constant column list)
            f"{JOINED_ISSUANCE_COLUMNS} FROM revocation r JOIN issuance i ON i.serial = r.serial "
            "WHERE i.issuer_id = %s ORDER BY r.serial",
            (issuer_id,),
        )
        return [(revocation_row(r[:4]), issuance_row(r[4:])) for r in rows]

    def revocation_version(self) -> int:
        """How many revocations were made, by every process (one primary-key read)."""
        return self._db.counter("revocations")

    def next_crl_number(self, issuer_id: str, this_update: datetime) -> tuple[int, datetime]:
        """Next CRL number of ``issuer_id`` and a thisUpdate never earlier than the last.

        One upsert on the issuer's ``crl_state`` row: it holds the row lock until commit,
        so concurrent callers (any process) get strictly increasing numbers in commit order.
        """
        with self._db.write() as cur:
            cur.execute(
                "INSERT INTO crl_state VALUES (%s, 1, %s) ON CONFLICT (issuer_id) DO UPDATE "
                "SET number = crl_state.number + 1, "
                "this_update = GREATEST(crl_state.this_update, EXCLUDED.this_update) "
                "RETURNING number, this_update",
                (issuer_id, this_update),
            )
            number, update = cur.fetchone()
        return int(number), utc(update)

    def store_crl(self, issuer_id: str, der: bytes, *, next_update: datetime) -> None:
        """Keep a CRL signed ahead of time (replacing the stored one); every replica
        serves these bytes."""
        with self._db.write() as cur:
            cur.execute(
                "INSERT INTO stored_crl VALUES (%s,%s,%s) ON CONFLICT (issuer_id) DO UPDATE "
                "SET next_update = EXCLUDED.next_update, der = EXCLUDED.der",
                (issuer_id, next_update, bytes(der)),
            )

    def stored_crl(self, issuer_id: str) -> tuple[bytes, datetime] | None:
        """The stored CRL of ``issuer_id`` and its nextUpdate."""
        row = self._db.one(
            "SELECT der, next_update FROM stored_crl WHERE issuer_id = %s", (issuer_id,)
        )
        return None if row is None else (bytes(row[0]), utc(row[1]))

    # --- CA records --------------------------------------------------------------

    def put_ca(self, ca: CARecord) -> None:
        """Insert or replace a CA record."""
        self.put_cas([ca])

    def put_cas(self, cas: Sequence[CARecord]) -> None:
        """Insert or replace CA records and bump ``ca_version``, in one transaction."""
        with self._db.write() as cur:
            for ca in cas:
                cur.execute(
                    "INSERT INTO ca VALUES (%s,%s,%s,%s,%s,%s,%s::bytea[],%s) "
                    "ON CONFLICT (ca_id) DO UPDATE SET key_label = EXCLUDED.key_label, "
                    "certificate = EXCLUDED.certificate, created_at = EXCLUDED.created_at, "
                    "state = EXCLUDED.state, retire_at = EXCLUDED.retire_at, "
                    "cross_certs = EXCLUDED.cross_certs, parent_id = EXCLUDED.parent_id",
                    (
                        ca.ca_id,
                        ca.key_label,
                        ca.certificate_der,
                        ca.created_at,
                        ca.state,
                        ca.retire_at,
                        list(ca.cross_certificates_der),
                        ca.parent_id,
                    ),
                )
            bump_counter(cur, "cas")

    def cas(self) -> list[CARecord]:
        """CA records, oldest first."""
        rows = self._db.all("SELECT * FROM ca ORDER BY created_at, ca_id")
        return [
            CARecord(
                ca_id=str(r[0]),
                key_label=str(r[1]),
                certificate_der=bytes(r[2]),
                created_at=utc(r[3]),
                state=str(r[4]),
                retire_at=None if r[5] is None else utc(r[5]),
                cross_certificates_der=tuple(bytes(b) for b in r[6]),
                parent_id=None if r[7] is None else str(r[7]),
            )
            for r in rows
        ]

    def ca_version(self) -> int:
        """How many times CA records were written, by every process."""
        return self._db.counter("cas")

    # --- deny list and tokens ----------------------------------------------------

    def deny(self, did: str, *, reason: str, source: str, now: datetime) -> DenyEntry:
        """Deny ``did`` (an earlier entry is kept)."""
        with self._db.write() as cur:
            cur.execute(
                "INSERT INTO deny_list VALUES (%s,%s,%s,%s) ON CONFLICT (did) DO NOTHING",
                (did, reason, now, source),
            )
            cur.execute("SELECT * FROM deny_list WHERE did = %s", (did,))
            row = cur.fetchone()
        return deny_row(row)

    def allow(self, did: str) -> DenyEntry | None:
        """Lift the entry of ``did``; returns it."""
        with self._db.write() as cur:
            cur.execute("DELETE FROM deny_list WHERE did = %s RETURNING *", (did,))
            row = cur.fetchone()
        return None if row is None else deny_row(row)

    def denial(self, did: str) -> DenyEntry | None:
        """The entry of ``did``."""
        row = self._db.one("SELECT * FROM deny_list WHERE did = %s", (did,))
        return None if row is None else deny_row(row)

    def denials(self) -> list[DenyEntry]:
        """Every entry, oldest first."""
        return [deny_row(r) for r in self._db.all("SELECT * FROM deny_list ORDER BY since, did")]

    def use_token(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        """First use of ``key`` until ``expires_at``; ``False`` on a replay.

        One statement, race-free across processes: insert the key, or take over its row
        only if that entry has expired (``ON CONFLICT ... DO UPDATE ... WHERE``, under the
        row lock). Expired keys are swept at most once a minute per ledger object.
        """
        with self._db.connection() as conn:
            if time.monotonic() - self._swept > _TOKEN_SWEEP_SECONDS:
                self._swept = time.monotonic()
                conn.execute("DELETE FROM used_token WHERE expires_at <= %s", (now,))
            row = conn.execute(
                "INSERT INTO used_token VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
                "SET expires_at = EXCLUDED.expires_at WHERE used_token.expires_at <= %s "
                "RETURNING 1",
                (key, expires_at, now),
            ).fetchone()
        return row is not None

    # --- DIDs and recoveries -----------------------------------------------------

    def did_state(self, did: str) -> DIDState | None:
        """The last state seen of ``did``."""
        row = self._db.one("SELECT * FROM did_state WHERE did = %s", (did,))
        if row is None:
            return None
        did_, key, host, status, first, updated = row
        return DIDState(
            str(did_),
            None if key is None else str(key),
            None if host is None else str(host),
            str(status),
            utc(first),
            utc(updated),
        )

    def put_did_state(self, state: DIDState) -> None:
        """Insert or replace the state of ``state.did``."""
        check_did_state(state)
        with self._db.write() as cur:
            cur.execute(
                "INSERT INTO did_state VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (did) DO UPDATE "
                "SET signing_key = EXCLUDED.signing_key, pds_host = EXCLUDED.pds_host, "
                "status = EXCLUDED.status, first_seen = EXCLUDED.first_seen, "
                "updated_at = EXCLUDED.updated_at",
                (
                    state.did,
                    state.signing_key,
                    state.pds_host,
                    state.status,
                    state.first_seen,
                    state.updated_at,
                ),
            )

    def note_pds_host(self, did: str, host: str, *, now: datetime) -> bool:
        """``True`` when ``host`` is new for ``did`` (for exactly one process)."""
        with self._db.write() as cur:
            cur.execute(
                "INSERT INTO did_host VALUES (%s,%s,%s) ON CONFLICT DO NOTHING", (did, host, now)
            )
            return bool(cur.rowcount == 1)

    def start_recovery(
        self, old_ca: str, new_ca: str, serials: Sequence[int], *, now: datetime
    ) -> Recovery:
        """Open a recovery with a pending item per serial (one transaction)."""
        with self._db.write() as cur:
            cur.execute(
                "INSERT INTO recovery (old_ca, new_ca, started_at) VALUES (%s,%s,%s) RETURNING id",
                (old_ca, new_ca, now),
            )
            number = int(cur.fetchone()[0])
            if serials:
                cur.executemany(
                    "INSERT INTO recovery_item VALUES (%s,%s,'pending',NULL,NULL)",
                    [(number, s) for s in serials],
                )
        return Recovery(number, old_ca, new_ca, now)

    def recoveries(self, *, open_only: bool = False) -> list[Recovery]:
        """Recoveries, oldest first."""
        query = "SELECT id, old_ca, new_ca, started_at, finished_at FROM recovery"
        if open_only:
            query += " WHERE finished_at IS NULL"
        return [
            Recovery(int(i), str(o), str(n), utc(s), None if f is None else utc(f))
            for i, o, n, s, f in self._db.all(query + " ORDER BY id")
        ]

    def recovery_items(self, recovery_id: int) -> list[RecoveryItem]:
        """Items of a recovery, by serial."""
        rows = self._db.all(
            "SELECT serial, status, new_serial, detail FROM recovery_item "
            "WHERE recovery_id = %s ORDER BY serial",
            (recovery_id,),
        )
        return [
            RecoveryItem(
                recovery_id,
                serial_of(serial),
                str(status),
                None if new is None else serial_of(new),
                None if detail is None else str(detail),
            )
            for serial, status, new, detail in rows
        ]

    def set_recovery_item(self, item: RecoveryItem) -> None:
        """Record an item's outcome."""
        check_item(item)
        with self._db.write() as cur:
            cur.execute(
                "UPDATE recovery_item SET status = %s, new_serial = %s, detail = %s "
                "WHERE recovery_id = %s AND serial = %s",
                (item.status, item.new_serial, item.detail, item.recovery_id, item.serial),
            )
            if cur.rowcount != 1:
                raise LedgerError(
                    f"recovery {item.recovery_id} has no item {serial_hex(item.serial)}"
                )

    def finish_recovery(self, recovery_id: int, *, now: datetime) -> None:
        """Mark a recovery finished."""
        with self._db.write() as cur:
            cur.execute("UPDATE recovery SET finished_at = %s WHERE id = %s", (now, recovery_id))
            if cur.rowcount != 1:
                raise LedgerError(f"no recovery {recovery_id}")

    def __repr__(self) -> str:
        return f"<PostgresLedger {self._db.where!r}>"
