"""An :class:`~holdca.hold.ledger.IssuanceLedger` in process memory, for tests and demos."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from holdca.errors import LedgerError
from holdca.hold.ledger.base import (
    check_did_state,
    check_issuance,
    check_item,
    check_reason,
    duplicate_serial,
)
from holdca.hold.ledger.logentries import issuance_entry, revocation_entry
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

__all__ = ["MAX_TOKENS", "MemoryLedger"]


MAX_TOKENS = 200_000
"""Most unexpired used tokens kept; beyond it :meth:`MemoryLedger.use_token` refuses."""


class MemoryLedger:
    """An :class:`IssuanceLedger` in process memory (tests, demos). Thread-safe.

    Bounded where callers decide the size: the used-token table keeps at most
    :data:`MAX_TOKENS` unexpired tokens (tokens live minutes; a hold that sees more
    refuses new ones with LedgerError, 503, rather than forgetting and allowing replays).
    """

    def __init__(self) -> None:
        """An empty ledger."""
        self._lock = threading.Lock()
        self._issued: dict[int, IssuanceRecord] = {}
        self._revoked: dict[int, Revocation] = {}
        self._revocation_version = 0
        self._crl: dict[str, tuple[int, datetime]] = {}
        self._cas: dict[str, CARecord] = {}
        self._ca_version = 0
        self._rate_slots: dict[str, list[datetime]] = {}
        self._stored_crls: dict[str, tuple[bytes, datetime]] = {}
        self._denied: dict[str, DenyEntry] = {}
        self._tokens: dict[str, datetime] = {}
        self._token_expiry: list[tuple[datetime, str]] = []  # heap: forget in O(log n)
        self._did_states: dict[str, DIDState] = {}
        self._hosts: set[tuple[str, str]] = set()
        self._recoveries: dict[int, Recovery] = {}
        self._items: dict[int, dict[int, RecoveryItem]] = {}
        self._log: list[bytes] = []  # the transparency-log entries, in sequence
        self._log_index: dict[tuple[str, int], int] = {}

    def record_issuance(self, record: IssuanceRecord) -> None:
        """Record ``record``; raises LedgerError on a duplicate serial."""
        check_issuance(record)
        entry = issuance_entry(record)
        with self._lock:
            if record.serial in self._issued:
                raise duplicate_serial(record.serial)
            self._issued[record.serial] = record
            self._sequence("issuance", record.serial, entry)

    def record_issuances(self, records: Sequence[IssuanceRecord]) -> list[LedgerError | None]:
        """Record each of ``records``; a duplicate serial is reported in its slot."""
        for record in records:
            check_issuance(record)
        entries = [issuance_entry(r) for r in records]
        out: list[LedgerError | None] = []
        with self._lock:
            for record, entry in zip(records, entries, strict=True):
                if record.serial in self._issued:
                    out.append(duplicate_serial(record.serial))
                else:
                    self._issued[record.serial] = record
                    self._sequence("issuance", record.serial, entry)
                    out.append(None)
        return out

    def _sequence(self, kind: str, serial: int, entry: bytes) -> None:
        """Give ``entry`` the next log index (caller holds the lock)."""
        self._log_index[(kind, serial)] = len(self._log)
        self._log.append(entry)

    def log_size(self) -> int:
        """How many log entries were sequenced."""
        with self._lock:
            return len(self._log)

    def log_entries(self, start: int, end: int) -> list[bytes]:
        """The log entries with indexes in ``[start, end)`` (fewer if the log is shorter)."""
        with self._lock:
            return self._log[max(start, 0) : max(end, 0)]

    def log_index(self, serial: int, *, revocation: bool = False) -> int | None:
        """The log index of the issuance (or revocation) of ``serial``."""
        with self._lock:
            return self._log_index.get(("revocation" if revocation else "issuance", serial))

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

    def take_rate_slot(
        self, did: str, *, now: datetime, window: timedelta, limit: int
    ) -> datetime | None:
        """Take a rate slot of ``did`` (see the Protocol)."""
        with self._lock:
            start = now - window
            taken = sorted(t for t in self._rate_slots.get(did, ()) if t > start)
            if len(taken) >= limit:
                self._rate_slots[did] = taken
                return taken[len(taken) - limit] + window
            taken.append(now)
            self._rate_slots[did] = taken
            return None

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
        check_reason(reason)
        with self._lock:
            if serial not in self._issued:
                raise LedgerError(f"no certificate with serial {serial_hex(serial)} was issued")
            existing = self._revoked.get(serial)
            if existing is not None:
                return existing
            logged = revocation_entry(serial, self._issued[serial].did, revoked_at, reason)
            entry = Revocation(serial, revoked_at, reason, invalidity_date)
            self._revoked[serial] = entry
            self._revocation_version += 1
            self._sequence("revocation", serial, logged)
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

    def revocation_version(self) -> int:
        """How many revocations were made."""
        with self._lock:
            return self._revocation_version

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
            self._ca_version += 1

    def cas(self) -> list[CARecord]:
        """CA records, oldest first."""
        with self._lock:
            return sorted(self._cas.values(), key=lambda c: c.created_at)

    def ca_version(self) -> int:
        """How many times CA records were written."""
        with self._lock:
            return self._ca_version

    def store_crl(self, issuer_id: str, der: bytes, *, next_update: datetime) -> None:
        """Keep a CRL signed ahead of time."""
        with self._lock:
            self._stored_crls[issuer_id] = (bytes(der), next_update)

    def stored_crl(self, issuer_id: str) -> tuple[bytes, datetime] | None:
        """The stored CRL of ``issuer_id`` and its nextUpdate."""
        with self._lock:
            return self._stored_crls.get(issuer_id)

    def deny(self, did: str, *, reason: str, source: str, now: datetime) -> DenyEntry:
        """Deny ``did`` (an earlier entry is kept)."""
        with self._lock:
            return self._denied.setdefault(did, DenyEntry(did, reason, now, source))

    def allow(self, did: str) -> DenyEntry | None:
        """Lift the entry of ``did``."""
        with self._lock:
            return self._denied.pop(did, None)

    def denial(self, did: str) -> DenyEntry | None:
        """The entry of ``did``."""
        with self._lock:
            return self._denied.get(did)

    def denials(self) -> list[DenyEntry]:
        """Every entry, oldest first."""
        with self._lock:
            return sorted(self._denied.values(), key=lambda e: (e.since, e.did))

    def use_token(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        """First use of ``key`` until ``expires_at``; ``False`` on a replay."""
        with self._lock:
            while self._token_expiry and self._token_expiry[0][0] <= now:
                when, old = heapq.heappop(self._token_expiry)
                if self._tokens.get(old) == when:
                    del self._tokens[old]
            seen = self._tokens.get(key)
            if seen is not None and seen > now:
                return False
            if len(self._tokens) >= MAX_TOKENS:
                raise LedgerError("the used-token table is full; try again when tokens expire")
            self._tokens[key] = expires_at
            heapq.heappush(self._token_expiry, (expires_at, key))
            return True

    def live(self, now: datetime, *, issuer_id: str | None = None) -> list[IssuanceRecord]:
        """Unexpired, unrevoked issuances (of ``issuer_id``), oldest first."""
        with self._lock:
            found = [
                r
                for r in self._issued.values()
                if r.not_after > now
                and r.serial not in self._revoked
                and (issuer_id is None or r.issuer_id == issuer_id)
            ]
        return sorted(found, key=lambda r: (r.issued_at, r.serial))

    def did_state(self, did: str) -> DIDState | None:
        """The last state seen of ``did``."""
        with self._lock:
            return self._did_states.get(did)

    def put_did_state(self, state: DIDState) -> None:
        """Insert or replace the state of ``state.did``."""
        check_did_state(state)
        with self._lock:
            self._did_states[state.did] = state

    def note_pds_host(self, did: str, host: str, *, now: datetime) -> bool:
        """``True`` when ``host`` is new for ``did``."""
        with self._lock:
            if (did, host) in self._hosts:
                return False
            self._hosts.add((did, host))
            return True

    def start_recovery(
        self, old_ca: str, new_ca: str, serials: Sequence[int], *, now: datetime
    ) -> Recovery:
        """Open a recovery with a pending item per serial."""
        with self._lock:
            number = len(self._recoveries) + 1
            recovery = Recovery(number, old_ca, new_ca, now)
            self._recoveries[number] = recovery
            self._items[number] = {s: RecoveryItem(number, s) for s in serials}
            return recovery

    def recoveries(self, *, open_only: bool = False) -> list[Recovery]:
        """Recoveries, oldest first."""
        with self._lock:
            found = list(self._recoveries.values())
        return [r for r in found if not open_only or r.finished_at is None]

    def recovery_items(self, recovery_id: int) -> list[RecoveryItem]:
        """Items of a recovery, by serial."""
        with self._lock:
            return sorted(self._items.get(recovery_id, {}).values(), key=lambda i: i.serial)

    def set_recovery_item(self, item: RecoveryItem) -> None:
        """Record an item's outcome."""
        check_item(item)
        with self._lock:
            items = self._items.get(item.recovery_id)
            if items is None or item.serial not in items:
                raise LedgerError(
                    f"recovery {item.recovery_id} has no item {serial_hex(item.serial)}"
                )
            items[item.serial] = item

    def finish_recovery(self, recovery_id: int, *, now: datetime) -> None:
        """Mark a recovery finished."""
        with self._lock:
            found = self._recoveries.get(recovery_id)
            if found is None:
                raise LedgerError(f"no recovery {recovery_id}")
            self._recoveries[recovery_id] = replace(found, finished_at=now)

    def count(self) -> int:
        """Number of issuances."""
        with self._lock:
            return len(self._issued)

    def close(self) -> None:
        """Nothing to release."""

    def issuances(self, *, since: datetime | None = None) -> list[IssuanceRecord]:
        """Every issuance at or after ``since``, oldest first."""
        with self._lock:
            found = [r for r in self._issued.values() if since is None or r.issued_at >= since]
        return sorted(found, key=lambda r: (r.issued_at, r.serial))

    def __repr__(self) -> str:
        return f"<MemoryLedger {len(self._issued)} issued, {len(self._revoked)} revoked>"
