"""The throwaway PostgreSQL server of :mod:`holdca.testing.postgres`, for pytest.

The server itself lives in ``holdca.testing.postgres`` (the benchmarks use it too, without
importing ``tests``); this layer adds what belongs to the tests: without PostgreSQL a test
skips, and fails under ``CI=true`` (:func:`tests.tools.missing`); a tool that fails is a
test failure (``pytest.fail``) with its output.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from holdca.testing import postgres as _pg
from tests.tools import missing

__all__ = ["PostgresServer", "find_pg_bin", "standby_of"]


def find_pg_bin() -> Path:
    """The directory holding initdb and pg_ctl; skips (fails under CI=true) when none."""
    found = _pg.find_pg_bin()
    if found is None:
        missing("PostgreSQL server binaries (Debian package postgresql)")
        raise AssertionError("unreachable")
    return found


class PostgresServer(_pg.PostgresServer):
    """:class:`holdca.testing.postgres.PostgresServer`, skipping or failing the test."""

    def __init__(self, port: int, *, start: bool = True) -> None:
        """Create and start the cluster (about 2 s); :meth:`stop` removes it.

        Raises:
            pytest.skip.Exception: PostgreSQL is not installed (pytest.fail under CI=true).
            pytest.fail.Exception: initdb or pg_ctl failed (their output is in the message).
        """
        find_pg_bin()
        try:
            super().__init__(port, start=start)
        except _pg.PostgresMissingError as exc:
            missing(str(exc))

    def run_tool(self, tool: str, *args: str) -> str:
        """As the base class, but a failed tool fails the test (``pytest.fail``)."""
        try:
            return super().run_tool(tool, *args)
        except _pg.PostgresToolError as exc:
            pytest.fail(str(exc))


def standby_of(primary: PostgresServer, port: int) -> PostgresServer:
    """A hot standby of ``primary`` (see :func:`holdca.testing.postgres.standby_of`)."""
    server = _pg.standby_of(primary, port)
    assert isinstance(server, PostgresServer)
    return server
