"""Crash-safe file writes shared by every module that publishes a file.

A reader (or a process restarted after a crash, a full disk or SIGKILL) sees either the
old file intact or the new file complete, never a half-written one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["atomic_write", "fsync_directory", "undo_on_failure"]


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry change (a rename) to disk.

    Raises:
        OSError: the directory cannot be opened or synced.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _refuse(path: Path, what: str) -> OSError:
    code = errno.EISDIR if what == "a directory" else errno.EINVAL
    return OSError(code, f"refusing to replace {what} with a file", str(path))


def _write_to_stream(path: Path, data: bytes) -> None:
    """Write ``data`` into the character device or FIFO at ``path`` (no create, no trunc).

    The open is non-blocking, so a FIFO nobody reads fails at once (ENXIO) instead of
    hanging; the writes then block as usual.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, "FIFO has no reader", str(path)) from None
        raise
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes, *, mode: int = 0o644, tmp_dir: Path | None = None
) -> None:
    """Replace ``path`` with ``data`` atomically: temporary file, fsync, rename, fsync dir.

    What is at ``path`` decides how (checked with ``stat``, following symlinks):

    * nothing, or a regular file: replaced atomically as above (``path``'s missing
      parent directories are created);
    * a symlink: followed; its target is replaced atomically (the temporary file lives in
      the target's directory) and the link is kept;
    * a character device or a FIFO (``/dev/null``, ``/dev/stdout``, a named pipe):
      ``data`` is written into it, without creating or truncating anything; a FIFO that
      no process reads raises ENXIO at once instead of hanging (``mode`` and
      ``tmp_dir`` do not apply);
    * a directory, a socket, a block device or anything else: refused, nothing written.

    Args:
        path: the file to create or replace.
        data: its complete new content.
        mode: permission bits of the new file.
        tmp_dir: where the temporary file lives (same file system as ``path``); defaults
            to ``path``'s directory. Use another directory when readers list ``path``'s
            directory and must never see the temporary file.

    Raises:
        OSError: the write failed (EISDIR for a directory, EINVAL for a socket or block
            device, ENXIO for a FIFO without a reader, ELOOP for a symlink loop);
            ``path`` is unchanged and no temporary file remains.
    """
    target = path
    if os.path.islink(path):
        target = Path(os.path.realpath(path))
        if os.path.islink(target):
            raise OSError(errno.ELOOP, "symlink loop", str(path))
        tmp_dir = target.parent
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):
        if stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode):
            _write_to_stream(target, data)
            return
        if stat.S_ISDIR(info.st_mode):
            raise _refuse(path, "a directory")
        raise _refuse(path, "a socket" if stat.S_ISSOCK(info.st_mode) else "a special file")
    tmp_dir = target.parent if tmp_dir is None else tmp_dir
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".holdca-", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(target.parent)


def _topmost_missing(path: Path) -> Path | None:
    """``path``'s highest ancestor (or itself) that does not exist; ``None`` if it exists."""
    if os.path.lexists(path):
        return None
    top = path
    while top.parent != top and not os.path.lexists(top.parent):
        top = top.parent
    return top


@contextlib.contextmanager
def undo_on_failure(*paths: Path, restore: Sequence[Path] = ()) -> Iterator[None]:
    """Undo, when the ``with`` block raises, what it created or changed at these paths.

    Each of ``paths`` that does not exist when the block starts is removed when it
    raises, with the directories above it that were missing too (the topmost missing one
    is removed as a tree: everything in it is the block's). Paths that exist are left
    alone: list the files a block may create in an existing directory. Each regular file
    of ``restore`` gets its content and mode back (atomically), or is treated like
    ``paths`` when it did not exist. Errors while undoing are suppressed: the block's
    exception is what propagates.

    Raises:
        OSError: a ``restore`` file cannot be read (before the block runs).
    """
    created = [top for p in (*paths, *restore) if (top := _topmost_missing(p)) is not None]
    saved = [
        (p, p.read_bytes(), stat.S_IMODE(os.stat(p).st_mode))
        for p in restore
        if os.path.lexists(p) and p.is_file()
    ]
    try:
        yield
    except BaseException:
        for path, data, mode in saved:
            with contextlib.suppress(OSError):
                if path.read_bytes() != data or stat.S_IMODE(os.stat(path).st_mode) != mode:
                    atomic_write(path, data, mode=mode)
        for top in dict.fromkeys(created):
            with contextlib.suppress(OSError):
                if top.is_dir() and not top.is_symlink():
                    shutil.rmtree(top)
                elif os.path.lexists(top):
                    top.unlink()
        raise
