"""The :class:`IssuanceLedger` Protocol and the rules every implementation shares.

A hold that issues a certificate it cannot later list cannot revoke it either, so the
ledger is written *before* a cosign returns: :meth:`IssuanceLedger.record_issuance`
commits a transaction, and a failure raises :class:`~holdca.errors.LedgerError`, in
which case the service hands nothing out.

Beside issuances the ledger keeps what every replica of a hold must agree on: the
revocations, the CRL numbers, the CA records, the deny list and the service-auth tokens
already used (their ``jti``), so that a token replayed to a second process is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from holdca.errors import DuplicateSerialError, LedgerError
from holdca.hold.ledger.records import (
    DID_STATUSES,
    ITEM_STATUSES,
    KINDS,
    REASONS,
    CARecord,
    DenyEntry,
    DIDState,
    IssuanceRecord,
    Recovery,
    RecoveryItem,
    Revocation,
    serial_hex,
)

__all__ = [
    "IssuanceLedger",
    "check_did_state",
    "check_issuance",
    "check_item",
    "check_reason",
    "duplicate_serial",
]


@runtime_checkable
class IssuanceLedger(Protocol):
    """Durable record of issuance, revocation, CRL numbers, CA certificates, deny list.

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

    def take_rate_slot(
        self, did: str, *, now: datetime, window: timedelta, limit: int
    ) -> datetime | None:
        """Take one of ``did``'s ``limit`` issuance slots per sliding ``window``, atomically.

        Counts the slots taken in ``(now - window, now]`` by every process sharing the
        ledger and records one at ``now`` only if fewer than ``limit`` were taken, in one
        transaction (two replicas cannot both take the last slot).

        Returns:
            None when the slot was taken; otherwise when the next slot frees up.
        """
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

    def revocation_version(self) -> int:
        """A counter that grows with every new revocation (O(1); shared by every process).

        Caches of CRLs and OCSP answers compare it to know that something was revoked.
        """
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

    def ca_version(self) -> int:
        """A counter that grows with every :meth:`put_cas` (O(1); shared by every process).

        A hold compares it before signing to see a rotation, retirement or recovery made
        by another process sharing the ledger.
        """
        ...

    def store_crl(self, issuer_id: str, der: bytes, *, next_update: datetime) -> None:
        """Keep a CRL signed ahead of time for ``issuer_id`` (replacing the stored one).

        For a CA whose key is kept offline (a root above an issuing intermediate): the
        hold serves the stored CRL while the key is away.
        """
        ...

    def stored_crl(self, issuer_id: str) -> tuple[bytes, datetime] | None:
        """The stored CRL of ``issuer_id`` and its nextUpdate, or None."""
        ...

    def deny(self, did: str, *, reason: str, source: str, now: datetime) -> DenyEntry:
        """Put ``did`` on the deny list; returns the entry (an earlier one is kept)."""
        ...

    def allow(self, did: str) -> DenyEntry | None:
        """Lift the deny-list entry of ``did``; returns it, or ``None`` if there was none."""
        ...

    def denial(self, did: str) -> DenyEntry | None:
        """The deny-list entry of ``did``, or ``None``."""
        ...

    def denials(self) -> list[DenyEntry]:
        """Every deny-list entry, oldest first."""
        ...

    def use_token(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        """Record the first use of a token (``key`` names issuer and ``jti``).

        Returns ``False`` when ``key`` was already used and has not yet expired (a
        replay); ``True`` when this is its first use, which is recorded until
        ``expires_at``. Expired keys are forgotten.
        """
        ...

    def live(self, now: datetime, *, issuer_id: str | None = None) -> list[IssuanceRecord]:
        """Issuances not yet expired at ``now`` and not revoked (of ``issuer_id``), oldest
        first."""
        ...

    def did_state(self, did: str) -> DIDState | None:
        """What the hold last saw of ``did``, or ``None`` before it first resolved it."""
        ...

    def put_did_state(self, state: DIDState) -> None:
        """Insert or replace the state of ``state.did``."""
        ...

    def note_pds_host(self, did: str, host: str, *, now: datetime) -> bool:
        """Record that ``did``'s PDS was ``host``; ``True`` when never seen for it before."""
        ...

    def start_recovery(
        self, old_ca: str, new_ca: str, serials: Sequence[int], *, now: datetime
    ) -> Recovery:
        """Open a recovery with one ``pending`` item per serial (one transaction)."""
        ...

    def recoveries(self, *, open_only: bool = False) -> list[Recovery]:
        """Every recovery (or the unfinished ones), oldest first."""
        ...

    def recovery_items(self, recovery_id: int) -> list[RecoveryItem]:
        """The items of a recovery, by serial."""
        ...

    def set_recovery_item(self, item: RecoveryItem) -> None:
        """Record the outcome of one item.

        Raises:
            LedgerError: no such item, or an unknown status.
        """
        ...

    def finish_recovery(self, recovery_id: int, *, now: datetime) -> None:
        """Mark a recovery finished."""
        ...

    def count(self) -> int:
        """How many certificates were issued."""
        ...

    def close(self) -> None:
        """Release resources (idempotent)."""
        ...

    def issuances(self, *, since: datetime | None = None) -> list[IssuanceRecord]:
        """Every issuance (issued at or after ``since``), oldest first (``holdca certs``)."""
        ...

    # The transparency log: record_issuance(s) and a first revoke give their entry the
    # next log index in the same transaction (dense, in commit order; see
    # holdca.hold.ledger.logentries). The hold publishes them with holdca.hold.translog.

    def log_size(self) -> int:
        """How many log entries were sequenced (the next index)."""
        ...

    def log_entries(self, start: int, end: int) -> list[bytes]:
        """The entries with indexes in ``[start, end)``, in order (fewer past the end)."""
        ...

    def log_index(self, serial: int, *, revocation: bool = False) -> int | None:
        """The log index of the issuance of ``serial`` (or of its revocation), or None."""
        ...


def duplicate_serial(serial: int) -> DuplicateSerialError:
    """The error for a serial the ledger already holds."""
    return DuplicateSerialError(f"duplicate certificate serial {serial_hex(serial)}")


def check_reason(reason: str | None) -> None:
    """Raise LedgerError unless ``reason`` is ``None`` or an RFC 5280 reason name."""
    if reason is not None and reason not in REASONS:
        raise LedgerError(f"unknown revocation reason {reason!r}; use one of {sorted(REASONS)}")


def check_issuance(record: IssuanceRecord) -> None:
    """Raise LedgerError unless ``record`` has a known kind and aware times."""
    if record.kind not in KINDS:
        raise LedgerError(f"unknown issuance kind {record.kind!r}")
    for when in (record.not_before, record.not_after, record.issued_at):
        if when.tzinfo is None:
            raise LedgerError("ledger times must be timezone-aware")


def check_did_state(state: DIDState) -> None:
    """Raise LedgerError unless ``state`` has a known status and aware times."""
    if state.status not in DID_STATUSES:
        raise LedgerError(f"unknown DID status {state.status!r}")
    if state.first_seen.tzinfo is None or state.updated_at.tzinfo is None:
        raise LedgerError("ledger times must be timezone-aware")


def check_item(item: RecoveryItem) -> None:
    """Raise LedgerError unless ``item`` has a known status."""
    if item.status not in ITEM_STATUSES:
        raise LedgerError(f"unknown recovery item status {item.status!r}")
