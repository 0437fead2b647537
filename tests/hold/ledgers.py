"""The ledger engines the contract tests run on: memory, SQLite and PostgreSQL.

A test module defines its ``ledger`` fixture as ``ledger_fixture()``; every test that
takes it runs once per engine. The PostgreSQL engine opens a ledger in a fresh schema of
the session's server (``postgres_server`` in tests/conftest.py; skipped without
PostgreSQL, a failure under CI=true).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from holdca.hold.ledger import IssuanceLedger, MemoryLedger, PostgresLedger, SQLiteLedger

__all__ = ["ENGINES", "ledger_fixture", "open_ledger"]

ENGINES = ("memory", "sqlite", "postgres")


def open_ledger(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> IssuanceLedger:
    """A new, empty ledger of ``engine``."""
    if engine == "memory":
        return MemoryLedger()
    if engine == "sqlite":
        return SQLiteLedger(tmp_path / "ledger.sqlite3")
    server = request.getfixturevalue("postgres_server")
    return PostgresLedger(server.fresh_schema())


def ledger_fixture() -> Callable[..., Iterator[IssuanceLedger]]:
    """A ``ledger`` fixture parametrized over :data:`ENGINES`."""

    @pytest.fixture(params=ENGINES)
    def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IssuanceLedger]:
        led = open_ledger(request.param, request, tmp_path)
        yield led
        led.close()

    return ledger
