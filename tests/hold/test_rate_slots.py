"""Per-DID rate slots taken atomically in the ledger (issue 16: rate limits shared by
replicas): the contract on memory, SQLite and PostgreSQL, and processes racing for the
last slots of one DID on a shared SQLite file and a shared PostgreSQL database."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from holdca.hold.ledger import IssuanceLedger, PostgresLedger, SQLiteLedger
from tests.hold.ledgers import ledger_fixture

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
OTHER = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"

ledger = ledger_fixture()


def test_slots_are_counted_per_did_in_a_sliding_window(ledger: IssuanceLedger) -> None:
    assert ledger.take_rate_slot(DID, now=T0, window=HOUR, limit=2) is None
    assert ledger.take_rate_slot(DID, now=T0 + timedelta(minutes=10), window=HOUR, limit=2) is None
    # the third in the hour is refused: the first slot frees an hour after it was taken
    refused = ledger.take_rate_slot(DID, now=T0 + timedelta(minutes=30), window=HOUR, limit=2)
    assert refused == T0 + HOUR
    assert ledger.take_rate_slot(OTHER, now=T0, window=HOUR, limit=2) is None  # per DID
    # a refusal takes no slot; once the first slot has left the window, one is free
    assert ledger.take_rate_slot(DID, now=T0 + HOUR, window=HOUR, limit=2) is None
    again = ledger.take_rate_slot(DID, now=T0 + HOUR, window=HOUR, limit=2)
    assert again == T0 + timedelta(minutes=10) + HOUR


def test_a_lower_limit_names_the_slot_that_frees_first(ledger: IssuanceLedger) -> None:
    for minute in (0, 5, 10):
        ledger.take_rate_slot(DID, now=T0 + timedelta(minutes=minute), window=HOUR, limit=5)
    # three taken, limit now 2: two must leave the window; the second-oldest frees at 1:05
    got = ledger.take_rate_slot(DID, now=T0 + timedelta(minutes=20), window=HOUR, limit=2)
    assert got == T0 + timedelta(minutes=5) + HOUR


# --- processes racing for one DID's slots ---------------------------------------------

PROCESSES, THREADS, ATTEMPTS, LIMIT = 2, 4, 10, 7


def _racer(engine: str, where: str, out: Any) -> None:
    led: IssuanceLedger = (
        SQLiteLedger(Path(where)) if engine == "sqlite" else PostgresLedger(where, create=False)
    )
    granted: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(ATTEMPTS):
            if led.take_rate_slot(DID, now=T0, window=HOUR, limit=LIMIT) is None:
                with lock:
                    granted.append(1)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    led.close()
    out.put(len(granted))


@pytest.fixture(params=["sqlite", "postgres"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        path = tmp_path / "ledger.sqlite3"
        SQLiteLedger(path).close()
        yield "sqlite", str(path)
    else:
        url = request.getfixturevalue("postgres_server").fresh_schema()
        PostgresLedger(url).close()
        yield "postgres", url


def test_racing_replicas_never_take_more_than_the_limit(shared: tuple[str, str]) -> None:
    engine, where = shared
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(engine, where, queue)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    granted = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sum(granted) == LIMIT  # 80 attempts, exactly the limit granted across both
