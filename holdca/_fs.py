"""Crash-safe file writes shared by every module that publishes a file.

A reader (or a process restarted after a crash, a full disk or SIGKILL) sees either the
old file intact or the new file complete, never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "fsync_directory"]


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


def atomic_write(
    path: Path, data: bytes, *, mode: int = 0o644, tmp_dir: Path | None = None
) -> None:
    """Replace ``path`` with ``data`` atomically: temporary file, fsync, rename, fsync dir.

    Args:
        path: the file to create or replace.
        data: its complete new content.
        mode: permission bits of the new file.
        tmp_dir: where the temporary file lives (same file system as ``path``); defaults
            to ``path``'s directory. Use another directory when readers list ``path``'s
            directory and must never see the temporary file.

    Raises:
        OSError: the write failed; ``path`` is unchanged and no temporary file remains.
    """
    tmp_dir = path.parent if tmp_dir is None else tmp_dir
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".holdca-", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(path.parent)
