"""The I/O adapter: publish a log to a directory, read one from a directory or over HTTP.

A published log is a plain directory tree (``checkpoint``, ``tile/...``) that any static
web server or bucket can serve. :meth:`DirectoryLog.publish` writes the new immutable
tiles and bundles first (each complete before its rename, all durable before the
checkpoint) and the checkpoint last, atomically, so a reader never sees a checkpoint
whose tiles are missing.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from holdca._fs import atomic_write, fsync_directory
from holdca.errors import TlogError
from holdca.tlog.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from holdca.tlog.note import NoteSigner, NoteVerifier
from holdca.tlog.tiles import LogState, TileWrite, append, state_from_reader

if TYPE_CHECKING:  # the core never imports holdca.net: an HTTPLog is given its Fetcher
    from holdca.net.fetch import Fetcher

__all__ = ["CHECKPOINT_PATH", "PUBLISH_THREADS", "DirectoryLog", "HTTPLog", "LogWriter"]

CHECKPOINT_PATH = "checkpoint"
"""The checkpoint's path relative to the log prefix."""

PUBLISH_THREADS = 4
"""Tiles of one batch written at once by :meth:`DirectoryLog.publish`."""

_PATH = re.compile(r"checkpoint|tile/(entries|[0-9]+)(/x[0-9]{3})*/[0-9]{3}(\.p/[0-9]{1,3})?")
_MAX_FILE = 256 * 65537  # the largest entry bundle; tiles are at most 8 KiB


def _check_path(path: str) -> str:
    if not _PATH.fullmatch(path):
        raise TlogError(f"{path!r} is not a log file path")
    return path


class DirectoryLog:
    """A log published in (or read from) the directory ``root``."""

    def __init__(self, root: Path | str) -> None:
        """Use ``root`` (created on the first :meth:`publish`)."""
        self.root = Path(root)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    def read(self, path: str) -> bytes:
        """Read ``path`` (relative to the log prefix).

        Raises:
            TlogError: not a log path, missing, or unreadable.
        """
        file = self.root / _check_path(path)
        try:
            return file.read_bytes()
        except FileNotFoundError:
            raise TlogError(f"log file {path!r} is missing") from None
        except OSError as exc:
            raise TlogError(f"log file {path!r} cannot be read: {exc.strerror}") from exc

    def read_checkpoint(self) -> bytes:
        """The signed checkpoint's bytes (TlogError when there is none)."""
        return self.read(CHECKPOINT_PATH)

    def publish(self, writes: Sequence[TileWrite], checkpoint: bytes) -> None:
        """Write ``writes`` (tiles, bundles), then ``checkpoint``; the checkpoint commits.

        The order, per batch (docs/transparency.md "Publishing a batch: the syncs"):

        1. every new tile is written to a temporary file in its directory, fsynced and
           renamed into place; meanwhile the new checkpoint is written to a temporary
           file and fsynced (not yet visible). These writes are independent, so they run
           concurrently (up to :data:`PUBLISH_THREADS`: the file system merges their
           journal commits into about one wait);
        2. every directory that got a tile (and the parent of every directory created)
           is fsynced, once per batch, concurrently: the tiles are now durable;
        3. the checkpoint is renamed into place and the log's directory fsynced.

        A tile that exists is complete (its data was synced before its rename), so a
        tile that already exists is left alone when its bytes are the same (a retry
        after a crash) and refused when they differ: tiles are immutable. Nothing names
        a new tile before step 3, so a crash before it publishes nothing.

        Raises:
            TlogError: a write would change an existing tile, or a path is not a log path.
            OSError: the file system failed (the checkpoint is then not replaced).
        """
        files = [(self.root / _check_path(w.path), w.data, w.path) for w in writes]
        target = self.root / CHECKPOINT_PATH
        self.root.mkdir(parents=True, exist_ok=True)
        directories: set[Path] = set()
        for file, _, _ in files:
            directories |= _make_directory(file.parent)
        plain = not os.path.islink(target) and (not target.exists() or target.is_file())
        pool = self._executor()
        jobs = [pool.submit(_write_tile, *f) for f in files]
        staged = pool.submit(_stage, self.root, checkpoint) if plain else None
        try:
            _wait(jobs)
            _wait([pool.submit(fsync_directory, d) for d in directories])
            if staged is None:
                atomic_write(target, checkpoint)  # a symlink or a device: follow it
                return
            os.replace(staged.result(), target)
        except BaseException:
            if staged is not None and staged.exception() is None:
                with contextlib.suppress(OSError):
                    os.unlink(staged.result())
            raise
        fsync_directory(self.root)

    def _executor(self) -> ThreadPoolExecutor:
        """The writer threads (new ones in a forked child: the parent's are not there)."""
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(PUBLISH_THREADS, "holdca-tlog-publish")
                self._pool_pid = os.getpid()
            return self._pool


def _wait(futures: Sequence[Future[Any]]) -> None:
    """Wait for every one of ``futures``; then raise the first error among them."""
    errors = [f.exception() for f in futures]
    failed = next((e for e in errors if e is not None), None)
    if failed is not None:
        raise failed


def _make_directory(directory: Path) -> set[Path]:
    """Create ``directory`` (and its parents); the directories to fsync for it: itself
    and the parent of each one created."""
    sync = {directory}
    missing: list[Path] = []
    top = directory
    while not top.exists():
        missing.append(top)
        top = top.parent
    directory.mkdir(parents=True, exist_ok=True)
    sync |= {m.parent for m in missing}
    return sync


def _stage(root: Path, data: bytes) -> str:
    """``data`` in a new temporary file in ``root``, fsynced: its path."""
    fd, tmp = tempfile.mkstemp(prefix=".holdca-", dir=root)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _write_tile(file: Path, data: bytes, path: str) -> None:
    """Write one immutable tile: temporary file, fsync, rename (its directory is synced
    by the caller), or check that the existing one has the same bytes."""
    try:
        existing = file.read_bytes()
    except FileNotFoundError:
        os.replace(_stage(file.parent, data), file)
        return
    if existing != data:
        raise TlogError(f"refusing to change the published tile {path!r}")


class HTTPLog:
    """A read-only log served over HTTP(S) under ``base_url``, through a :class:`Fetcher`."""

    def __init__(self, fetcher: Fetcher, base_url: str, *, require_https: bool = True) -> None:
        """Read files as ``base_url`` + ``/`` + path."""
        self.fetcher = fetcher
        self.base_url = base_url.rstrip("/")
        self.require_https = require_https

    def read(self, path: str) -> bytes:
        """GET ``path``.

        Raises:
            TlogError: not a log path, or the server answered other than 200.
            ResolutionError: the fetch failed (network, deadline, size).
            AddressRefusedError: the address policy refused the URL.
        """
        url = f"{self.base_url}/{_check_path(path)}"
        response = self.fetcher.get(
            url, limit=_MAX_FILE, accept="*/*", require_https=self.require_https
        )
        if response.status != 200:
            raise TlogError(f"log file {path!r}: HTTP status {response.status}")
        return response.body

    def read_checkpoint(self) -> bytes:
        """The signed checkpoint's bytes."""
        return self.read(CHECKPOINT_PATH)


class LogWriter:
    """Append batches to a log in a directory: tiles first, then a signed checkpoint.

    Not safe for concurrent writers: the log needs one sequencer.
    """

    def __init__(self, log: DirectoryLog, signer: NoteSigner, state: LogState) -> None:
        """Write to ``log`` from ``state`` (use :meth:`open` to resume a published log)."""
        self.log = log
        self.signer = signer
        self.state = state

    @classmethod
    def open(
        cls, root: Path | str, signer: NoteSigner, verifiers: Sequence[NoteVerifier] = ()
    ) -> LogWriter:
        """Resume the log in ``root``, or start an empty one when it has no checkpoint.

        The published checkpoint is verified (with ``verifiers`` plus the signer's own
        key when it is an :class:`~holdca.tlog.note.Ed25519NoteSigner`) and its root
        compared with the tiles it names.

        Raises:
            TlogError: the checkpoint or tiles are malformed or do not match.
            SignatureInvalidError: the checkpoint is not signed by a known key.
        """
        log = DirectoryLog(root)
        if not (log.root / CHECKPOINT_PATH).exists():
            return cls(log, signer, LogState())
        own = getattr(signer, "verifier", None)
        keys = [*verifiers, *([own()] if callable(own) else [])]
        checkpoint, _ = open_checkpoint(log.read_checkpoint(), keys, origin=signer.name)
        state = state_from_reader(log, checkpoint.size)
        if state.root != checkpoint.root:
            raise TlogError("the published tiles do not match the published checkpoint")
        return cls(log, signer, state)

    def append(self, entries: Sequence[bytes]) -> Checkpoint:
        """Sequence ``entries``, publish their tiles, then the new signed checkpoint.

        Raises:
            TlogError: an entry is too long, or a tile would change.
            SignerError: the key backend failed (nothing new is referenced).
            OSError: the file system failed.
        """
        state, writes = append(self.state, entries)
        note = sign_checkpoint(state, self.signer)
        self.log.publish(writes, note)
        self.state = state
        return Checkpoint(self.signer.name, state.size, state.root)
