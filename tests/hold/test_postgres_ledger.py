"""PostgresLedger beyond the contract suite: schema rules, secrets, many processes, outages.

The oracles are the database itself (read with a separate psycopg connection), the
multiprocessing results compared with each other, and wall-clock bounds. Each test that
stops or restarts PostgreSQL runs its own server, so the session's server is untouched.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import psycopg
import pytest

from holdca.errors import ConfigError, DuplicateSerialError, LedgerError
from holdca.hold.ledger import IssuanceLedger, PostgresLedger
from holdca.hold.ledger.postgres_schema import SCHEMA_VERSION
from tests.hold.test_ledger import DID, T0, record
from tests.postgres import PostgresServer, standby_of

BOUND = 10.0  # seconds: the longest a call may take while the database is down


def _port(offset: int) -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return 55600 + 10 * (int(worker) if worker.isdigit() else 0) + offset


@pytest.fixture
def url(postgres_server: PostgresServer) -> str:
    return postgres_server.fresh_schema()


@pytest.fixture
def own_server(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A second server, for a test that stops or restarts it."""
    server = PostgresServer(port=_port(1))
    yield server
    server.stop()


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description is not None else []


def test_implements_the_protocol_and_writes_the_schema(url: str) -> None:
    led = PostgresLedger(url)
    assert isinstance(led, IssuanceLedger)
    led.record_issuance(record(0x2A))
    led.close()
    led.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        led.get(0x2A)
    # an independent reader: the tables as psql would show them
    assert _query(url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    assert _query(url, "SELECT serial::text, did FROM issuance") == [("42", DID)]
    unique = _query(
        url,
        "SELECT count(*) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
        "WHERE t.relname = 'issuance' AND c.contype = 'u' AND t.relnamespace = "
        "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())",
    )
    assert unique == [(1,)]
    again = PostgresLedger(url, create=False)  # reopening keeps the data
    assert again.get(0x2A) == record(0x2A)
    again.close()


def test_only_init_creates_the_schema(url: str) -> None:
    with pytest.raises(ConfigError, match=r"HOLD_LEDGER_URL.*only holdca init"):
        PostgresLedger(url, create=False)
    assert _query(url, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()") == [
        (0,)
    ]
    PostgresLedger(url).close()
    PostgresLedger(url, create=False).close()


def test_a_newer_schema_is_refused(url: str) -> None:
    PostgresLedger(url).close()
    _query(url, f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerError, match="newer"):
        PostgresLedger(url)


def test_replicas_starting_together_migrate_once(url: str) -> None:
    opened: list[PostgresLedger] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(PostgresLedger(url))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(opened) == 6
    assert _query(url, "SELECT count(*) FROM schema_version") == [(1,)]
    for led in opened:
        led.close()


def test_passwords_never_show(postgres_server: PostgresServer) -> None:
    secret = "hunter2-" + os.urandom(4).hex()
    good = postgres_server.url(password=secret)  # trust auth: any password is accepted
    schema = postgres_server.fresh_schema().split("options=")[1]
    led = PostgresLedger(f"{good}&options={schema}")
    assert secret not in repr(led)
    assert "***" in repr(led)
    led.close()
    for bad in (
        postgres_server.url("no_such_db", password=secret),
        postgres_server.url(password=secret).replace(str(postgres_server.port), "1"),
        f"postgresql://holdca@/postgres?host={postgres_server.dir}&password={secret}&port=1",
    ):
        with pytest.raises(LedgerError) as caught:
            PostgresLedger(bad, connect_timeout=2)
        assert secret not in str(caught.value)
        assert secret not in repr(caught.value)
        assert caught.value.__cause__ is None  # the driver's exception is not chained


def test_a_read_only_database_fails_writes_with_a_ledger_error(url: str) -> None:
    PostgresLedger(url).close()
    led = PostgresLedger(url + "%20-cdefault_transaction_read_only%3Don", create=False)
    assert led.count() == 0
    with pytest.raises(LedgerError, match="read-only"):
        led.record_issuance(record(1))
    with pytest.raises(LedgerError, match="read-only"):
        led.next_crl_number("ca1", T0)
    led.close()


def test_a_standby_serves_reads_and_refuses_writes(
    postgres_server: PostgresServer, url: str
) -> None:
    primary = PostgresLedger(url)
    primary.record_issuance(record(7))
    primary.close()
    postgres_server.sql("CREATE SCHEMA empty_for_standby")
    standby = standby_of(postgres_server, _port(2))
    try:
        replica = standby.url(options=unquote(url.split("options=")[1]))
        assert _query(replica, "SELECT pg_is_in_recovery()") == [(True,)]
        led = PostgresLedger(replica, create=False)
        assert led.get(7) == record(7)
        with pytest.raises(LedgerError, match="read-only"):
            led.record_issuance(record(8))
        led.close()
        # a schema that would need creating: a clear error, not a failed CREATE TABLE
        with pytest.raises(LedgerError, match="standby"):
            PostgresLedger(standby.url(options="-csearch_path=empty_for_standby"))
    finally:
        standby.stop()


# --- two processes x several threads on one database ---------------------------------

PROCESSES, THREADS, ROUNDS = 2, 4, 25
CONTESTED = 1 << 100  # every thread of every process tries to record these serials


def _replica(url: str, index: int, out: Any) -> None:
    """One process: THREADS threads issuing, taking CRL numbers and using tokens."""
    led = PostgresLedger(url, create=False)
    results: dict[str, list[Any]] = {"issued": [], "contested": [], "crl": [], "tokens": []}
    lock = threading.Lock()

    def work(thread: int) -> None:
        for n in range(ROUNDS):
            own = (index * 1000 + thread) * 1000 + n + 1
            outcome = led.record_issuances([record(own), record(CONTESTED + n)])
            started = time.monotonic()
            number, _ = led.next_crl_number("ca1", T0)
            ended = time.monotonic()
            fresh = led.use_token(f"jti-{n}", expires_at=T0 + timedelta(hours=1), now=T0)
            with lock:
                assert outcome[0] is None
                results["issued"].append(own)
                if outcome[1] is None:
                    results["contested"].append(CONTESTED + n)
                else:
                    assert isinstance(outcome[1], DuplicateSerialError)
                results["crl"].append((number, started, ended))
                if fresh:
                    results["tokens"].append(n)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    led.close()
    out.put(results)


@pytest.mark.slow
def test_two_processes_agree_on_serials_crl_numbers_tokens_and_counts(url: str) -> None:
    PostgresLedger(url).close()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_replica, args=(url, i, queue)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    merged: dict[str, list[Any]] = {k: [x for r in results for x in r[k]] for k in results[0]}
    calls = PROCESSES * THREADS * ROUNDS
    assert len(merged["issued"]) == calls  # every call returned
    # each contested serial was committed exactly once, by one thread of one process
    assert sorted(merged["contested"]) == [CONTESTED + n for n in range(ROUNDS)]
    led = PostgresLedger(url, create=False)
    assert led.count() == calls + ROUNDS
    assert _query(url, "SELECT count(DISTINCT serial) FROM issuance") == [(calls + ROUNDS,)]
    # the per-DID rate-limit count sees every replica's issuances, exactly
    assert led.count_since(DID, T0) == calls + ROUNDS
    # every jti was accepted exactly once across both processes
    assert sorted(merged["tokens"]) == list(range(ROUNDS))
    # CRL numbers: each handed out once, no gaps, and in commit order: a call that
    # returned before another began got the smaller number
    crl = sorted(merged["crl"])
    assert [number for number, _, _ in crl] == list(range(1, calls + 1))
    latest_start = float("-inf")
    for _number, started, ended in crl:
        assert ended >= latest_start, "a later CRL number was handed out before an earlier one"
        latest_start = max(latest_start, started)
    assert led.next_crl_number("ca1", T0)[0] == calls + 1
    led.close()


# --- PostgreSQL down, restarted ------------------------------------------------------


def _timed(call: Any) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        call()
    except BaseException as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


@pytest.mark.slow
def test_a_restart_fails_calls_in_bounded_time_and_the_pool_recovers(
    own_server: PostgresServer,
) -> None:
    led = PostgresLedger(own_server.url(), connect_timeout=2, statement_timeout=5)
    led.record_issuance(record(1))
    acknowledged: list[int] = []
    outcomes: list[tuple[float, BaseException | None]] = []
    stop = threading.Event()

    def issue() -> None:
        serial = 100
        while not stop.is_set():
            serial += 1
            took, error = _timed(lambda s=serial: led.record_issuance(record(s)))
            outcomes.append((took, error))
            if error is None:
                acknowledged.append(serial)
            time.sleep(0.005)

    worker = threading.Thread(target=issue)
    worker.start()
    try:
        time.sleep(0.3)
        own_server.restart()  # mid-way: sessions are cut off under the worker
        time.sleep(1.5)
    finally:
        stop.set()
        worker.join(30)
    assert all(took < BOUND for took, _ in outcomes)
    assert all(isinstance(e, LedgerError) for _, e in outcomes if e is not None)
    after = [e for _, e in outcomes[-5:]]
    assert after == [None] * 5  # recovered without reopening the ledger
    assert all(led.get(s) is not None for s in acknowledged)  # nothing acknowledged lost

    own_server.stop(remove=False)  # down: every kind of call fails, in bounded time
    for call in (
        lambda: led.record_issuance(record(99_999)),
        lambda: led.get(1),
        lambda: led.next_crl_number("ca1", T0),
        lambda: led.use_token("k", expires_at=T0 + timedelta(hours=1), now=T0),
    ):
        took, error = _timed(call)
        assert isinstance(error, LedgerError)
        assert took < BOUND
    own_server.start()
    deadline = time.monotonic() + BOUND
    while True:
        took, error = _timed(lambda: led.record_issuance(record(99_999)))
        assert took < BOUND
        if error is None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert error is None, f"the ledger did not recover within {BOUND} s: {error}"
    assert led.get(99_999) == record(99_999)
    led.close()
