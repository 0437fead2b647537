"""Timing proxies of a hold's resolver and ledger (installed by ``metrics.instrument``).

* :class:`TimedResolver`, a :class:`~holdca.atproto.identity.Resolver`, times DID
  resolutions and PDS fetches;
* :class:`TimedLedger`, an :class:`~holdca.hold.ledger.IssuanceLedger`, times the writes
  a caller waits for.

Both delegate every call unchanged (results and exceptions) and feed a
:class:`~holdca.server.metrics.HoldMetrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from holdca.atproto.identity import Identity, LatestCommit, Resolver
from holdca.errors import LedgerError
from holdca.hold.ledger import (
    CARecord,
    DenyEntry,
    DIDState,
    IssuanceLedger,
    IssuanceRecord,
    Recovery,
    RecoveryItem,
    Revocation,
)

if TYPE_CHECKING:
    from holdca.server.metrics import HoldMetrics

__all__ = ["TimedLedger", "TimedResolver"]

_T = TypeVar("_T")


class TimedResolver:
    """A :class:`~holdca.atproto.identity.Resolver` that times ``inner``'s calls.

    ``resolve`` goes to ``holdca_did_resolution_seconds`` (label ``fresh``) and
    ``holdca_did_resolution_failures_total``; ``get_record`` and ``get_latest_commit`` to
    ``holdca_pds_fetch_seconds`` and ``holdca_pds_fetch_failures_total``.
    """

    def __init__(self, inner: Resolver, metrics: HoldMetrics) -> None:
        """Time ``inner`` into ``metrics``."""
        self.inner = inner
        self.metrics = metrics

    def resolve(self, did: str, *, fresh: bool = False) -> Identity:
        """``inner.resolve``, timed."""
        m = self.metrics
        return m.timed(
            m.did_resolution,
            ("true" if fresh else "false",),
            m.did_resolution_failures,
            (),
            lambda: self.inner.resolve(did, fresh=fresh),
        )

    def get_record(self, identity: Identity, collection: str, rkey: str) -> bytes:
        """``inner.get_record``, timed."""
        m = self.metrics
        return m.timed(
            m.pds_fetch,
            ("get_record",),
            m.pds_fetch_failures,
            ("get_record",),
            lambda: self.inner.get_record(identity, collection, rkey),
        )

    def get_latest_commit(self, identity: Identity) -> LatestCommit:
        """``inner.get_latest_commit``, timed."""
        m = self.metrics
        return m.timed(
            m.pds_fetch,
            ("get_latest_commit",),
            m.pds_fetch_failures,
            ("get_latest_commit",),
            lambda: self.inner.get_latest_commit(identity),
        )

    def close(self) -> None:
        """Close ``inner`` when it can be closed."""
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

    def __repr__(self) -> str:
        return f"<TimedResolver {self.inner!r}>"


class TimedLedger:
    """An :class:`~holdca.hold.ledger.IssuanceLedger` that times ``inner``'s writes.

    Every method delegates to ``inner``; ``record_issuance``, ``record_issuances``,
    ``revoke``, ``use_token`` and ``next_crl_number`` are timed into
    ``holdca_ledger_commit_seconds{op}`` (the time the caller waits, so a group commit's
    queueing counts) and their LedgerErrors counted in
    ``holdca_ledger_commit_failures_total{op,error}``.
    """

    def __init__(self, inner: IssuanceLedger, metrics: HoldMetrics) -> None:
        """Time ``inner`` into ``metrics``."""
        self.inner = inner
        self.metrics = metrics

    def _commit(self, op: str, call: Callable[[], _T]) -> _T:
        m = self.metrics
        return m.timed(m.ledger_commit, (op,), m.ledger_commit_failures, (op,), call)

    def record_issuance(self, record: IssuanceRecord) -> None:
        """Timed."""
        self._commit("record_issuance", lambda: self.inner.record_issuance(record))

    def record_issuances(self, records: Sequence[IssuanceRecord]) -> list[LedgerError | None]:
        """Timed."""
        return self._commit("record_issuances", lambda: self.inner.record_issuances(records))

    def get(self, serial: int) -> IssuanceRecord | None:
        """Delegated."""
        return self.inner.get(serial)

    def by_did(self, did: str, *, since: datetime | None = None) -> list[IssuanceRecord]:
        """Delegated."""
        return self.inner.by_did(did, since=since)

    def take_rate_slot(
        self, did: str, *, now: datetime, window: timedelta, limit: int
    ) -> datetime | None:
        """Timed."""
        return self._commit(
            "take_rate_slot",
            lambda: self.inner.take_rate_slot(did, now=now, window=window, limit=limit),
        )

    def count_since(self, did: str, since: datetime) -> int:
        """Delegated."""
        return self.inner.count_since(did, since)

    def revoke(
        self,
        serial: int,
        *,
        revoked_at: datetime,
        reason: str | None = None,
        invalidity_date: datetime | None = None,
    ) -> Revocation:
        """Timed."""
        return self._commit(
            "revoke",
            lambda: self.inner.revoke(
                serial, revoked_at=revoked_at, reason=reason, invalidity_date=invalidity_date
            ),
        )

    def revocation(self, serial: int) -> Revocation | None:
        """Delegated."""
        return self.inner.revocation(serial)

    def revoked(self, issuer_id: str) -> list[tuple[Revocation, IssuanceRecord]]:
        """Delegated."""
        return self.inner.revoked(issuer_id)

    def revocation_version(self) -> int:
        """Delegated."""
        return self.inner.revocation_version()

    def next_crl_number(self, issuer_id: str, this_update: datetime) -> tuple[int, datetime]:
        """Timed."""
        return self._commit(
            "next_crl_number", lambda: self.inner.next_crl_number(issuer_id, this_update)
        )

    def put_ca(self, ca: CARecord) -> None:
        """Delegated."""
        self.inner.put_ca(ca)

    def put_cas(self, cas: Sequence[CARecord]) -> None:
        """Delegated."""
        self.inner.put_cas(cas)

    def cas(self) -> list[CARecord]:
        """Delegated."""
        return self.inner.cas()

    def ca_version(self) -> int:
        """Delegated."""
        return self.inner.ca_version()

    def store_crl(self, issuer_id: str, der: bytes, *, next_update: datetime) -> None:
        """Delegated."""
        self.inner.store_crl(issuer_id, der, next_update=next_update)

    def stored_crl(self, issuer_id: str) -> tuple[bytes, datetime] | None:
        """Delegated."""
        return self.inner.stored_crl(issuer_id)

    def deny(self, did: str, *, reason: str, source: str, now: datetime) -> DenyEntry:
        """Delegated."""
        return self.inner.deny(did, reason=reason, source=source, now=now)

    def allow(self, did: str) -> DenyEntry | None:
        """Delegated."""
        return self.inner.allow(did)

    def denial(self, did: str) -> DenyEntry | None:
        """Delegated."""
        return self.inner.denial(did)

    def denials(self) -> list[DenyEntry]:
        """Delegated."""
        return self.inner.denials()

    def use_token(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        """Timed."""
        return self._commit(
            "use_token", lambda: self.inner.use_token(key, expires_at=expires_at, now=now)
        )

    def live(self, now: datetime, *, issuer_id: str | None = None) -> list[IssuanceRecord]:
        """Delegated."""
        return self.inner.live(now, issuer_id=issuer_id)

    def did_state(self, did: str) -> DIDState | None:
        """Delegated."""
        return self.inner.did_state(did)

    def put_did_state(self, state: DIDState) -> None:
        """Delegated."""
        self.inner.put_did_state(state)

    def note_pds_host(self, did: str, host: str, *, now: datetime) -> bool:
        """Delegated."""
        return self.inner.note_pds_host(did, host, now=now)

    def start_recovery(
        self, old_ca: str, new_ca: str, serials: Sequence[int], *, now: datetime
    ) -> Recovery:
        """Delegated."""
        return self.inner.start_recovery(old_ca, new_ca, serials, now=now)

    def recoveries(self, *, open_only: bool = False) -> list[Recovery]:
        """Delegated."""
        return self.inner.recoveries(open_only=open_only)

    def recovery_items(self, recovery_id: int) -> list[RecoveryItem]:
        """Delegated."""
        return self.inner.recovery_items(recovery_id)

    def set_recovery_item(self, item: RecoveryItem) -> None:
        """Delegated."""
        self.inner.set_recovery_item(item)

    def finish_recovery(self, recovery_id: int, *, now: datetime) -> None:
        """Delegated."""
        self.inner.finish_recovery(recovery_id, now=now)

    def count(self) -> int:
        """Delegated."""
        return self.inner.count()

    def close(self) -> None:
        """Delegated."""
        self.inner.close()

    def issuances(self, *, since: datetime | None = None) -> list[IssuanceRecord]:
        """Delegated."""
        return self.inner.issuances(since=since)

    def log_size(self) -> int:
        """Delegated."""
        return self.inner.log_size()

    def log_entries(self, start: int, end: int) -> list[bytes]:
        """Delegated."""
        return self.inner.log_entries(start, end)

    def log_index(self, serial: int, *, revocation: bool = False) -> int | None:
        """Delegated."""
        return self.inner.log_index(serial, revocation=revocation)

    def __repr__(self) -> str:
        return f"<TimedLedger {self.inner!r}>"
