"""holdca._fs.atomic_write against what is already at the path, and undo_on_failure.

The oracle is the file system itself (``os.lstat``/``os.stat``, inode numbers, reading the
other end of a FIFO), never holdca's own output.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from holdca._fs import atomic_write, undo_on_failure


def _char_device(path: Path) -> Path:
    """A /dev/null look-alike (major 1, minor 3) at ``path``; skips if mknod is refused
    (not root), fails instead under CI=true."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: mknod of a character device must be permitted (run as root)")
        pytest.skip("mknod of a character device needs root")
    return path


def test_a_character_device_is_written_to_not_replaced(tmp_path: Path) -> None:
    null = _char_device(tmp_path / "null")
    before = os.lstat(null)
    atomic_write(null, b"into the void" * 1000)
    after = os.lstat(null)
    assert stat.S_ISCHR(after.st_mode)  # old code: a regular file renamed over the device
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_a_fifo_with_a_reader_gets_the_data(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader before the writer
    try:
        atomic_write(fifo, b"through the pipe")
        received.append(os.read(reader_fd, 100))
    finally:
        os.close(reader_fd)
    assert received == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the FIFO


def test_a_fifo_without_a_reader_fails_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            atomic_write(fifo, b"nobody listens")
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=write, daemon=True)
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():  # a blocking open would hang here forever: unblock it, then fail
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        pytest.fail("atomic_write blocked on a FIFO without a reader")
    assert len(outcome) == 1
    error = outcome[0]
    assert isinstance(error, OSError)
    assert error.errno == errno.ENXIO
    assert error.filename == str(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_socket_or_a_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    directory = tmp_path / "d"
    directory.mkdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        with pytest.raises(OSError, match="socket") as caught:
            atomic_write(path, b"data")
        assert caught.value.filename == str(path)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)  # old code: renamed a file over it
    finally:
        server.close()
    with pytest.raises(IsADirectoryError):
        atomic_write(directory, b"data")
    assert directory.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "s.sock"]  # no temporary file


def test_a_symlink_is_followed_and_kept(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "target.pem"
    target.write_bytes(b"old")
    before = os.stat(target).st_ino
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    link = link_dir / "ca.crt"
    link.symlink_to(target)
    atomic_write(link, b"new", mode=0o600, tmp_dir=link_dir)
    assert link.is_symlink()  # old code: the link was replaced by a regular file
    assert os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert os.stat(target).st_ino != before  # the target was replaced atomically
    assert [p.name for p in real_dir.iterdir()] == ["target.pem"]
    assert [p.name for p in link_dir.iterdir()] == ["ca.crt"]


def test_a_symlink_to_a_device_writes_into_the_device(tmp_path: Path) -> None:
    null = _char_device(tmp_path / "null")
    link = tmp_path / "out"
    link.symlink_to(null)
    atomic_write(link, b"data")
    assert link.is_symlink()
    assert stat.S_ISCHR(os.lstat(null).st_mode)


def test_undo_on_failure_removes_what_the_block_created(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    kept.write_bytes(b"old")
    os.chmod(kept, 0o640)
    home = tmp_path / "a" / "b"

    def half_done() -> None:
        with undo_on_failure(home / "x", restore=[kept]):
            home.mkdir(parents=True)
            (home / "x").write_text("half")
            (home / "y").write_text("half")
            kept.write_bytes(b"changed")
            os.chmod(kept, 0o600)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):  # the block's own exception
        half_done()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]  # "a" is gone
    assert kept.read_bytes() == b"old"
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o640


def test_undo_on_failure_keeps_everything_on_success(tmp_path: Path) -> None:
    with undo_on_failure(tmp_path / "new", restore=[tmp_path / "also"]):
        (tmp_path / "new").write_text("done")
        (tmp_path / "also").write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["also", "new"]
