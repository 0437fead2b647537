"""Group commit, shared by the SQLite and PostgreSQL ledgers.

A durable commit (a WAL sync, a PostgreSQL commit) costs more than signing a certificate,
so issuances recorded by several threads at once share one: each caller queues its
records, the thread that gets the leader lock commits everything queued so far in one
transaction, and every caller returns only once its own records are committed (a single
caller sees no difference except throughput). :class:`GroupCommit` is that logic; a ledger
supplies :meth:`~GroupCommit._pending` (its row values) and
:meth:`~GroupCommit._commit_batch` (its transaction).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from holdca.errors import DuplicateSerialError, LedgerError
from holdca.hold.ledger.base import check_issuance
from holdca.hold.ledger.logentries import issuance_entry
from holdca.hold.ledger.records import IssuanceRecord

__all__ = ["GroupCommit", "PendingIssuance"]


class PendingIssuance:
    """One issuance waiting for a group commit, and its outcome once ``done``.

    Raises (on construction):
        LedgerError: the record is not one a ledger stores (see ``check_issuance``).
    """

    __slots__ = ("done", "entry", "error", "serial", "values")

    def __init__(
        self, record: IssuanceRecord, values: Callable[[IssuanceRecord], tuple[object, ...]]
    ) -> None:
        """Check ``record``, then queue it with ``values(record)`` (the engine's row)."""
        check_issuance(record)
        self.serial = record.serial
        self.values = values(record)
        self.entry = issuance_entry(record)
        self.done = False
        self.error: LedgerError | None = None


class GroupCommit:
    """``record_issuance`` and ``record_issuances`` by group commit (a ledger base class).

    The ledger sets ``_lock`` (the leader: held while a batch commits), ``_queue_lock``
    and ``_queue`` in its constructor and implements :meth:`_pending` and
    :meth:`_commit_batch`.
    """

    _lock: threading.Lock
    _queue_lock: threading.Lock
    _queue: list[PendingIssuance]

    def _pending(self, record: IssuanceRecord) -> PendingIssuance:
        """``record`` ready to queue (its row values in the engine's encoding)."""
        raise NotImplementedError

    def _commit_batch(self, batch: list[PendingIssuance]) -> None:
        """Commit ``batch`` in one transaction (caller holds ``_lock``); every entry ends
        ``done``, with ``error`` its DuplicateSerialError, the transaction's LedgerError,
        or None."""
        raise NotImplementedError

    def record_issuance(self, record: IssuanceRecord) -> None:
        """Commit ``record``; raises LedgerError on a duplicate serial or a failed write.

        Group commit: when several threads record at once, the leader commits every
        record queued so far in one transaction; each call returns only after its own
        record is committed.
        """
        error = self._commit_queued([self._pending(record)])[0]
        if error is not None:
            raise error

    def record_issuances(self, records: Sequence[IssuanceRecord]) -> list[LedgerError | None]:
        """Commit ``records`` in one transaction (with other threads' queued records).

        Returns per record ``None`` (committed) or its DuplicateSerialError.

        Raises:
            LedgerError: the transaction failed; none of ``records`` was committed.
        """
        errors = self._commit_queued([self._pending(r) for r in records])
        failed = next(
            (e for e in errors if e is not None and not isinstance(e, DuplicateSerialError)), None
        )
        if failed is not None:
            raise failed
        return errors

    def _commit_queued(self, mine: list[PendingIssuance]) -> list[LedgerError | None]:
        with self._queue_lock:
            self._queue.extend(mine)
        with self._lock:
            if not all(p.done for p in mine):  # nobody committed them while we waited
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit_batch(batch)
        return [p.error for p in mine]
