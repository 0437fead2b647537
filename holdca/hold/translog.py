"""The transparency log in the issuance path: integrate the ledger's entries, publish, prove.

The sequencing rule (docs/transparency.md "The log in the issuance path"): the ledger gives
every issuance (and first revocation) its log index in the transaction that records it
(:mod:`holdca.hold.ledger.logentries`). After that commit and *before* a cosign returns,
:meth:`IssuanceLog.receipts` integrates every entry the ledger has sequenced beyond the
published size: the new tiles and entry bundles are written, then a signed checkpoint
(:meth:`holdca.tlog.DirectoryLog.publish`), and each response gets its index, that
checkpoint and its inclusion proof. If publication fails the cosign fails (LedgerError)
while the entry stays in the ledger: the next integration publishes it, so nothing issued
is ever missing from the log, and nothing is handed out before it is published.

Group publication (the leader pattern of the SQLite ledger's group commit): one
integrator at a time (a lock in the process, and ``flock`` on the log directory across
processes sharing the ledger). The integrator publishes *everything* sequenced when it
starts: one ledger read of the new entries, one set of tile writes (written concurrently,
each fsynced; see :meth:`holdca.tlog.DirectoryLog.publish`), one checkpoint signature.
Threads queued behind it find their entries published when they get the lock and leave at
once; a thread whose entries the current checkpoint covers takes no lock at all. Every
receipt's proof is computed outside the lock against an immutable snapshot of the
checkpoint (its note, state and the batch's tiles in memory), from complete-subtree
hashes the log remembers (:class:`holdca.tlog.memo.SubtreeMemo`): a few node hashes per
proof, not a re-read of tiles or ledger.
"""

from __future__ import annotations

import base64
import fcntl
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from holdca.errors import HoldCAError, LedgerError, TlogError
from holdca.hold.ledger import IssuanceLedger
from holdca.tlog.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from holdca.tlog.memo import SubtreeMemo
from holdca.tlog.note import NoteSigner, NoteVerifier
from holdca.tlog.store import CHECKPOINT_PATH, DirectoryLog
from holdca.tlog.tiles import LogState, TileWrite, append, state_from_reader

__all__ = [
    "ANNOTATION_LOG_CHECKPOINT",
    "ANNOTATION_LOG_INDEX",
    "IssuanceLog",
    "LogReceipt",
]

ANNOTATION_LOG_INDEX = "io.atcr.log.index"
"""Signature-manifest annotation: the log index of the signature's certificate."""

ANNOTATION_LOG_CHECKPOINT = "io.atcr.log.checkpoint"
"""Signature-manifest annotation: ``<origin> <size>`` of the checkpoint that includes it."""


@dataclass(frozen=True)
class LogReceipt:
    """Where an entry is in the log: its index, a signed checkpoint and the inclusion proof.

    Attributes:
        index: the entry's log index.
        checkpoint: the signed checkpoint (C2SP signed note) the proof is against.
        origin: the checkpoint's origin line.
        size: the checkpoint's tree size (greater than ``index``).
        proof: the RFC 6962 inclusion proof of ``index`` in the tree of ``size``.
    """

    index: int
    checkpoint: bytes = field(repr=False)
    origin: str
    size: int
    proof: tuple[bytes, ...] = field(repr=False)

    def annotations(self) -> dict[str, str]:
        """The signature-manifest annotations naming this receipt."""
        return {
            ANNOTATION_LOG_INDEX: str(self.index),
            ANNOTATION_LOG_CHECKPOINT: f"{self.origin} {self.size}",
        }

    def to_json(self) -> dict[str, Any]:
        """``logIndex``, ``logCheckpoint`` (the note's text), ``logInclusionProof`` (base64)."""
        return {
            "logIndex": self.index,
            "logCheckpoint": self.checkpoint.decode(),
            "logInclusionProof": [base64.b64encode(h).decode("ascii") for h in self.proof],
        }


_BUNDLES = "tile/entries/"


class _Overlay:
    """A tile reader that answers the tiles just written from memory, others from disk.

    Immutable after construction: read by many threads at once (tiles never change, so
    reading the rest from the directory needs no lock).
    """

    def __init__(self, writes: Sequence[TileWrite], log: DirectoryLog) -> None:
        # the hash tiles only: proofs never read entry bundles
        self.files = {w.path: w.data for w in writes if not w.path.startswith(_BUNDLES)}
        self.log = log

    def read(self, path: str) -> bytes:
        data = self.files.get(path)
        return data if data is not None else self.log.read(path)


@dataclass(frozen=True)
class _Published:
    """One published checkpoint: its note, the appender state, a reader of its tiles."""

    note: bytes
    state: LogState
    reader: _Overlay


@contextmanager
def _directory_lock(root: Path) -> Iterator[None]:
    """``flock`` on the log directory: one integrator across processes."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class IssuanceLog:
    """The hold's published log in the directory ``root``, signed by ``signer``.

    The signer's key name is the origin (e.g. ``hold.example/log``). Thread-safe; several
    processes may share one directory when they share the ledger.
    """

    def __init__(
        self, root: Path | str, signer: NoteSigner, verifiers: Sequence[NoteVerifier] = ()
    ) -> None:
        """Publish to ``root`` (created when missing) with ``signer``.

        ``verifiers`` are extra keys a published checkpoint may be signed by (a rotated
        log key); the signer's own key is always accepted.
        """
        self.root = Path(root)
        self.signer = signer
        own = getattr(signer, "verifier", None)
        self._verifiers = [*verifiers, *([own()] if callable(own) else [])]
        self._log = DirectoryLog(self.root)
        self._lock = threading.Lock()  # one integrator in this process
        self._changed = threading.Condition()  # an integration finished (or failed)
        self._integrating = False  # a leader is integrating (guarded by _changed)
        self._published: _Published | None = None  # replaced whole, read without a lock
        self._memo = SubtreeMemo()

    @property
    def origin(self) -> str:
        """The log's origin (the signer's key name)."""
        return self.signer.name

    def _load(self) -> _Published | None:
        """The published checkpoint as the current state (caller holds both locks)."""
        try:
            note = self._log.read_checkpoint()
        except TlogError:
            if (self.root / CHECKPOINT_PATH).exists():
                raise
            return None
        published = self._published
        if published is not None and note == published.note:
            return published
        checkpoint, _ = open_checkpoint(note, self._verifiers, origin=self.origin)
        state = state_from_reader(self._log, checkpoint.size)
        if state.root != checkpoint.root:
            raise TlogError("the published tiles do not match the published checkpoint")
        self._memo.clear()  # another writer's checkpoint (or none of ours yet): start afresh
        self._published = _Published(note, state, _Overlay((), self._log))
        return self._published

    def integrate(self, ledger: IssuanceLedger) -> Checkpoint:
        """Publish every entry ``ledger`` has sequenced beyond the published size.

        Publishes an empty checkpoint (size 0) when the log has none yet.

        Raises:
            LedgerError: the ledger could not be read, its sequence is shorter than the
                published log (another ledger's log?), or publication failed (the
                entries stay sequenced: the next integration publishes them).
        """
        with self._lock:
            published = self._integrate(ledger, None)
        return Checkpoint(self.origin, published.state.size, published.state.root)

    def _integrate(self, ledger: IssuanceLedger, through: int | None) -> _Published:
        """Integrate (caller holds ``self._lock``) every entry sequenced so far, in one
        batch: one ledger read, one set of tile writes, one checkpoint signature. With
        ``through``, nothing is appended when the published log already covers it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with _directory_lock(self.root):
                published = self._load()
                state = LogState() if published is None else published.state
                size = state.size
                if published is not None and through is not None and size > through:
                    return published
                target = ledger.log_size()
                if target < size:
                    raise LedgerError(
                        f"the published log has {size} entries but the ledger sequenced only "
                        f"{target}: HOLD_LOG_DIR belongs to another ledger"
                    )
                entries = ledger.log_entries(size, target)
                if len(entries) != target - size:
                    raise LedgerError(f"the ledger returned {len(entries)} log entries")
                state, writes = append(state, entries)
                note = sign_checkpoint(state, self.signer)
                self._log.publish(writes, note)
                self._published = _Published(note, state, _Overlay(writes, self._log))
                return self._published
        except LedgerError:
            raise
        except (HoldCAError, OSError) as exc:
            self._published = None  # reload from the directory next time
            raise LedgerError(
                f"the log could not be published ({exc}); the entries are recorded in the "
                "ledger and the next integration publishes them"
            ) from exc

    def _publish_through(self, ledger: IssuanceLedger, last: int) -> _Published:
        """A published checkpoint covering index ``last``: the current one, the one the
        integration in progress publishes, or one this thread integrates (as the leader).

        Waiters sleep on a condition that every finished integration notifies, so an entry
        published by the integration in progress is returned as soon as it is done,
        never after a later integration.
        """
        with self._changed:
            while True:
                published = self._published
                if published is not None and published.state.size > last:
                    return published
                if not self._integrating:
                    self._integrating = True
                    break
                self._changed.wait()
        try:
            with self._lock:
                return self._integrate(ledger, last)
        finally:
            with self._changed:
                self._integrating = False
                self._changed.notify_all()

    def receipts(
        self, ledger: IssuanceLedger, serials: Sequence[int], *, revocation: bool = False
    ) -> list[LogReceipt]:
        """Publish through the entries of ``serials`` (issuances, or their revocations) and
        return their receipts, in order, all against one checkpoint.

        Group publication: a caller whose entries the current checkpoint covers returns
        it; when no integration is running, the caller becomes the leader and publishes
        everything the ledger sequenced by then; otherwise it waits for the running one to
        finish, and returns its checkpoint if that covers its entries (or leads the next
        one). A failed integration fails its leader; each waiter then tries itself. The proofs
        are computed outside the lock, from the checkpoint's tiles (the batch just
        written is in memory) and the complete-subtree hashes the log remembers.

        Raises:
            LedgerError: an entry is not sequenced (the ledger predates the log), the
                ledger failed, or publication failed (see :meth:`integrate`).
        """
        indexes: list[int] = []
        for serial in serials:
            index = ledger.log_index(serial, revocation=revocation)
            if index is None:
                raise LedgerError(f"serial {serial:x} has no log entry in the ledger")
            indexes.append(index)
        if not indexes:
            return []
        published = self._publish_through(ledger, max(indexes))
        size = published.state.size
        try:
            return [
                LogReceipt(
                    i,
                    published.note,
                    self.origin,
                    size,
                    tuple(self._memo.inclusion_proof(published.reader, i, size)),
                )
                for i in indexes
            ]
        except (TlogError, OSError) as exc:
            with self._lock:
                if self._published is published:
                    self._published = None
            self._memo.clear()
            raise LedgerError(f"the log's inclusion proof could not be read: {exc}") from exc
