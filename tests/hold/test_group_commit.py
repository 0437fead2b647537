"""Batched ledger writes: record_issuances and the SQLite group commit across threads."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from holdca.errors import DuplicateSerialError, LedgerError
from holdca.hold.ledger import IssuanceLedger, SQLiteLedger
from tests.hold.ledgers import ledger_fixture
from tests.hold.test_ledger import record

ledger = ledger_fixture()  # memory, SQLite and PostgreSQL (tests/hold/ledgers.py)


def test_batch_commits_every_record(ledger: IssuanceLedger) -> None:
    records = [record(n) for n in range(1, 41)]
    assert ledger.record_issuances(records) == [None] * 40
    assert ledger.count() == 40
    assert all(ledger.get(r.serial) == r for r in records)


def test_a_duplicate_fails_only_its_own_slot(ledger: IssuanceLedger) -> None:
    ledger.record_issuance(record(5))
    outcome = ledger.record_issuances([record(4), record(5), record(6), record(6)])
    assert outcome[0] is None
    assert outcome[2] is None
    assert isinstance(outcome[1], DuplicateSerialError)
    assert isinstance(outcome[3], DuplicateSerialError)  # a duplicate inside the batch too
    assert sorted(r.serial for r in ledger.by_did(record(1).did)) == [4, 5, 6]


def test_a_closed_ledger_commits_nothing(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    ledger.close()
    with pytest.raises(LedgerError, match="closed"):
        ledger.record_issuances([record(1), record(2)])
    with pytest.raises(LedgerError, match="closed"):
        ledger.record_issuance(record(3))
    reopened = SQLiteLedger(tmp_path / "ledger.sqlite3")
    assert reopened.count() == 0
    reopened.close()


def _batches(led: SQLiteLedger, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every transaction the ledger commits."""
    sizes: list[int] = []
    original = SQLiteLedger._commit_batch

    def spy(self: SQLiteLedger, batch: list[Any]) -> None:
        sizes.append(len(batch))
        original(self, batch)

    monkeypatch.setattr(SQLiteLedger, "_commit_batch", spy)
    return sizes


def test_concurrent_writers_share_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    led = SQLiteLedger(tmp_path / "ledger.sqlite3")
    sizes = _batches(led, monkeypatch)
    errors: list[BaseException] = []

    def write(serial: int) -> None:
        try:
            led.record_issuance(record(serial))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(1, 9)]
    with led._lock:  # a commit in progress: every writer queues behind it
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(led._queue) < 8 and time.monotonic() < deadline:
            time.sleep(0.001)
    for t in threads:
        t.join(timeout=10)
    assert errors == []
    assert sizes == [8]  # one transaction for all eight
    assert led.count() == 8
    led.close()


def test_sixteen_threads_record_everything(tmp_path: Path) -> None:
    led = SQLiteLedger(tmp_path / "ledger.sqlite3")
    per_thread = 50

    def write(base: int) -> None:
        for n in range(per_thread):
            led.record_issuance(record(base * 1000 + n + 1))

    threads = [threading.Thread(target=write, args=(b,)) for b in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert led.count() == 16 * per_thread
    led.close()
    # a second connection sees every record: each was committed, not just queued
    conn = sqlite3.connect(tmp_path / "ledger.sqlite3")
    assert conn.execute("SELECT count(DISTINCT serial) FROM issuance").fetchone()[0] == 800
    conn.close()


class _Interrupting:
    """A connection stand-in that is interrupted (KeyboardInterrupt) on the second INSERT."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.inserts = 0

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith("INSERT INTO issuance"):
            self.inserts += 1
            if self.inserts == 2:
                raise KeyboardInterrupt
        return self._conn.execute(sql, *args)


def test_an_interrupted_group_commit_fails_every_waiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    led = SQLiteLedger(tmp_path / "ledger.sqlite3")
    real = led._conn
    assert real is not None
    monkeypatch.setattr(led, "_conn", _Interrupting(real))
    outcome: dict[int, BaseException | None] = {}

    def write(serial: int) -> None:
        try:
            led.record_issuance(record(serial))
            outcome[serial] = None
        except BaseException as exc:
            outcome[serial] = exc

    threads = [threading.Thread(target=write, args=(n,)) for n in (1, 2, 3)]
    with led._lock:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(led._queue) < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
    for t in threads:
        t.join(timeout=10)
    # the leader saw the interrupt itself; the two others were told their write failed
    assert sum(isinstance(e, KeyboardInterrupt) for e in outcome.values()) == 1
    assert sum(isinstance(e, LedgerError) for e in outcome.values()) == 2
    monkeypatch.setattr(led, "_conn", real)
    assert led.count() == 0  # rolled back: nothing half-committed
    led.record_issuance(record(9))  # and the ledger still works
    assert led.count() == 1
    led.close()
