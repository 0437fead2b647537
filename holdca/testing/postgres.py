"""A throwaway PostgreSQL server for tests and benchmarks (Debian's ``postgresql`` package).

:class:`PostgresServer` runs ``initdb`` in a fresh temporary directory and ``pg_ctl start``
on a unix socket in that directory (``listen_addresses`` empty: no TCP at all), with
``fsync=off`` (a test database need not survive a power cut). initdb refuses to run as
root, so as root both run as the ``postgres`` user (``runuser -u postgres --``) and the
directory is given to that user.

This module does not import pytest: a missing PostgreSQL raises
:class:`PostgresMissingError` and a failed tool :class:`PostgresToolError`; the tests'
wrapper (``tests/postgres.py``) turns them into a skip (a failure under ``CI=true``) and a
test failure.

Example::

    server = PostgresServer(port=55499)
    try:
        url = server.fresh_schema()   # HOLD_LEDGER_URL of an empty schema
    finally:
        server.stop()
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

__all__ = [
    "PostgresMissingError",
    "PostgresServer",
    "PostgresToolError",
    "find_pg_bin",
    "postmaster_pid",
    "standby_of",
]


class PostgresMissingError(RuntimeError):
    """PostgreSQL's server binaries (or ``runuser``, as root) are not installed."""


class PostgresToolError(RuntimeError):
    """initdb, pg_ctl or pg_basebackup failed; the message has its output and the log's tail."""


def find_pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl (newest /usr/lib/postgresql/*/bin, else
    PATH), or None when there is none."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None or not (Path(initdb).parent / "pg_ctl").exists():
        return None
    return Path(initdb).resolve().parent


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, on a unix socket only."""

    _counter = itertools.count(1)

    def __init__(self, port: int, *, start: bool = True) -> None:
        """Create the cluster (initdb) and, with ``start``, start it (about 2 s); :meth:`stop`
        removes it.

        Raises:
            PostgresMissingError: no PostgreSQL binaries, or (as root) no ``runuser``.
            PostgresToolError: initdb or pg_ctl failed (their output is in the message).
        """
        self._prepare(port, prefix="holdca-pg-")
        self.run_tool(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "holdca", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        if start:
            self.start()

    def _prepare(self, port: int, *, prefix: str) -> None:
        """Find the binaries and make the (empty) directory; no cluster yet."""
        found = find_pg_bin()
        if found is None:
            raise PostgresMissingError("PostgreSQL server binaries (Debian package postgresql)")
        self.bin = found
        self.port = port
        self.as_root = os.geteuid() == 0
        if self.as_root and shutil.which("runuser") is None:
            raise PostgresMissingError("runuser (util-linux), to run initdb as the postgres user")
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"

    def run_tool(self, tool: str, *args: str) -> str:
        """Run one of the server's tools (as the postgres user when root); its stdout.

        Raises:
            PostgresToolError: it exited non-zero (its stderr and the log's tail attached).
        """
        cmd = [str(self.bin / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            log = self.dir / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresToolError(
                f"{tool} failed ({done.returncode}): {done.stderr.strip()}\n{tail}"
            )
        return done.stdout

    def _options(self) -> str:
        return f"-k {self.dir} -c listen_addresses= -p {self.port} -F -c fsync=off"

    def start(self) -> None:
        """Start the server and wait until it accepts connections.

        Raises:
            PostgresToolError: pg_ctl failed.
        """
        self.run_tool("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                      "-o", self._options(), "start")  # fmt: skip

    def restart(self) -> None:
        """Restart the server (fast mode: sessions are cut off).

        Raises:
            PostgresToolError: pg_ctl failed.
        """
        self.run_tool("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                      "-m", "fast", "-o", self._options(), "restart")  # fmt: skip

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server (fast mode); with ``remove``, delete its directory.

        Raises:
            PostgresToolError: pg_ctl failed.
        """
        if (self.data / "postmaster.pid").exists():
            self.run_tool("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, dbname: str = "postgres", *, password: str | None = None, **params: str) -> str:
        """A ``postgresql://`` URL of the server's socket (``params`` become query items)."""
        user = "holdca" if password is None else f"holdca:{quote(password, safe='')}"
        query = "&".join(
            f"{k}={quote(v, safe='')}" for k, v in {"host": str(self.dir), "port": str(self.port),
                                                    **params}.items()
        )  # fmt: skip
        return f"postgresql://{user}@/{dbname}?{query}"

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        """Run one statement (autocommit) as the superuser (needs psycopg)."""
        import psycopg  # noqa: PLC0415 - optional extra

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(statement)

    def fresh_schema(self) -> str:
        """A URL whose ``search_path`` is a new, empty schema: one test's private ledger."""
        name = f"t{os.getpid()}_{next(self._counter)}"
        self.sql(f"CREATE SCHEMA {name}")
        return self.url(options=f"-csearch_path={name}")

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) used so far by the postmaster and its live backends
        (from /proc; 0.0 where /proc is absent). Backends that already exited are not counted."""
        pid = postmaster_pid(self)
        if pid is None:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat.parent.name) == pid or int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / tick
        return total


def postmaster_pid(server: PostgresServer) -> int | None:
    """The running postmaster's process id (from ``postmaster.pid``), or None."""
    try:
        return int((server.data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def standby_of(primary: PostgresServer, port: int) -> PostgresServer:
    """A hot standby of ``primary`` (``pg_basebackup -R``), started on ``port``:
    ``pg_is_in_recovery()`` is true there and every write fails. It is of ``primary``'s
    class (so a subclass's :meth:`~PostgresServer.run_tool` applies to it too).

    Raises:
        PostgresMissingError, PostgresToolError: as for :class:`PostgresServer`.
    """
    server = type(primary).__new__(type(primary))
    PostgresServer._prepare(server, port, prefix="holdca-pg-standby-")
    server.run_tool(
        "pg_basebackup", "-h", str(primary.dir), "-p", str(primary.port), "-U", "holdca",
        "-D", str(server.data), "-R", "-X", "stream", "-c", "fast", "--no-sync",
    )  # fmt: skip
    server.start()
    return server
