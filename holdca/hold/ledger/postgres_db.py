"""The connection layer of :class:`~holdca.hold.ledger.PostgresLedger`: the driver, the
pool, the session settings and the mapping of every database failure to
:class:`~holdca.errors.LedgerError`.

* :func:`load_driver`: psycopg and psycopg_pool, imported on first use (the ``postgres``
  extra).
* :class:`PostgresDatabase`: one :class:`psycopg_pool.ConnectionPool`, opened after the
  schema is created or migrated; :meth:`~PostgresDatabase.connection`,
  :meth:`~PostgresDatabase.write`, :meth:`~PostgresDatabase.one` and
  :meth:`~PostgresDatabase.all` are the only ways the ledger reaches the database.
* :func:`bump_counter`, :func:`sequence_log_entries`: the statements the issuance and
  the other parts of the ledger share, inside the caller's transaction.

Time is bounded (``connect_timeout``, ``statement_timeout``), connections are checked
before use, and passwords in the URL never appear in the repr, errors or logs.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from holdca.errors import ConfigError, LedgerError
from holdca.hold.ledger.postgres_schema import (
    INSERT_LOG_ENTRY,
    TAKE_LOG_INDEXES,
    migrate,
    redact_url,
)

__all__ = ["PostgresDatabase", "bump_counter", "load_driver", "sequence_log_entries"]


def load_driver() -> tuple[ModuleType, ModuleType]:
    """psycopg and psycopg_pool, imported on first use (the optional ``postgres`` extra:
    importing holdca does not load them).

    Raises:
        ConfigError: they are not installed.
    """
    try:
        return importlib.import_module("psycopg"), importlib.import_module("psycopg_pool")
    except ImportError:
        raise ConfigError(
            "HOLD_LEDGER_URL needs psycopg: pip install -e '.[postgres]' in a holdca checkout"
        ) from None


class PostgresDatabase:
    """One connection pool to a holdca ledger database, every failure a LedgerError.

    Thread-safe (the pool is). ``closed`` is set by :meth:`close`, or by the ledger
    before it closes the pool; from then on :meth:`connection` refuses.
    """

    def __init__(
        self,
        url: str,
        *,
        create: bool,
        connect_timeout: float,
        statement_timeout: float,
        max_connections: int,
    ) -> None:
        """Connect to ``url``, create or migrate the schema (see
        :func:`~holdca.hold.ledger.postgres_schema.migrate`), then open the pool (without
        waiting for it to fill).

        Raises:
            ConfigError: the postgres extra is missing; ``create`` is false and the
                database has no holdca schema (``HOLD_LEDGER_URL``).
            ValueError: a timeout is not positive or ``max_connections`` is below 1.
            LedgerError: the URL does not parse, the database cannot be reached in
                ``connect_timeout``, holds a newer schema, or is a standby whose schema
                would need creating.
        """
        psycopg, pool = load_driver()
        self._pg = psycopg
        if connect_timeout <= 0 or statement_timeout <= 0 or max_connections < 1:
            raise ValueError("timeouts must be positive and max_connections at least 1")
        self.where = redact_url(url)
        """The URL without its password (for messages and the repr)."""
        try:
            password = psycopg.conninfo.conninfo_to_dict(url).get("password")
        except psycopg.Error:
            raise LedgerError(f"ledger URL {self.where} is not a PostgreSQL URL") from None
        self._secrets = [s for s in (url, str(password or "")) if s]
        self._statement_ms = int(statement_timeout * 1000)
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(2, math.ceil(connect_timeout)),  # libpq: whole seconds, >= 2
            "application_name": "holdca",
            "keepalives": 1,  # TCP only: a vanished server is noticed, not waited for
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 2,
            "tcp_user_timeout": int(statement_timeout * 1000) + 5000,
        }
        self.closed = False
        try:
            with psycopg.connect(url, **kwargs) as conn:
                self._configure(conn)
                migrate(conn, self.where, create=create)
        except psycopg.Error as exc:
            raise LedgerError(
                f"cannot open ledger database {self.where}: {self._scrub(exc)}"
            ) from None
        self._pool = pool.ConnectionPool(
            url,
            kwargs=kwargs,
            min_size=1,
            max_size=max_connections,
            timeout=connect_timeout,
            configure=self._configure,
            check=pool.ConnectionPool.check_connection,
            reconnect_timeout=max(60.0, connect_timeout),
            name="holdca-ledger",
            open=False,
        )
        self._pool.open(wait=False)
        self._pool_closed: type[Exception] = pool.PoolClosed

    def _configure(self, conn: Any) -> None:
        """Session settings of every connection: UTC times, bounded statements."""
        conn.execute(f"SET statement_timeout = {self._statement_ms}")
        conn.execute(f"SET idle_in_transaction_session_timeout = {self._statement_ms * 2}")
        conn.execute("SET timezone = 'UTC'")

    def _scrub(self, exc: BaseException) -> str:
        """The first line of ``exc``'s message without the URL or its password."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A pooled connection for one statement or transaction; every database failure
        becomes a LedgerError (a LedgerError raised by the caller passes through).

        Raises:
            LedgerError: the ledger is closed; the database is read-only (a standby), timed
                out, refused the write (an integrity error) or failed otherwise (the
                message without the URL's password).
        """
        if self.closed:
            raise LedgerError("the ledger is closed")
        errors = self._pg.errors
        try:
            with self._pool.connection() as conn:
                yield conn
        except errors.ReadOnlySqlTransaction:
            raise LedgerError(
                f"ledger database {self.where} is read-only (a standby in recovery?): "
                "writes fail until it is promoted or the URL names the primary"
            ) from None
        except errors.QueryCanceled as exc:
            raise LedgerError(f"ledger database timed out: {self._scrub(exc)}") from None
        except errors.IntegrityError as exc:
            raise LedgerError(f"ledger refused the write: {self._scrub(exc)}") from None
        except self._pool_closed:
            raise LedgerError("the ledger is closed") from None
        except self._pg.Error as exc:
            raise LedgerError(f"ledger database {self.where} failed: {self._scrub(exc)}") from None

    @contextmanager
    def write(self) -> Iterator[Any]:
        """A cursor inside one transaction (committed on success, else rolled back).

        Raises:
            LedgerError: as :meth:`connection`.
        """
        with self.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    def one(self, query: str, args: Sequence[object] = ()) -> Any:
        """The first row of ``query`` (None when there is none).

        Raises:
            LedgerError: as :meth:`connection`.
        """
        with self.connection() as conn:
            return conn.execute(query, args).fetchone()

    def all(self, query: str, args: Sequence[object] = ()) -> list[Any]:
        """Every row of ``query``.

        Raises:
            LedgerError: as :meth:`connection`.
        """
        with self.connection() as conn:
            return list(conn.execute(query, args).fetchall())

    def counter(self, name: str) -> int:
        """The value of counter ``name`` (0 before its first bump).

        Raises:
            LedgerError: as :meth:`connection`.
        """
        row = self.one("SELECT value FROM counter WHERE name = %s", (name,))
        return 0 if row is None else int(row[0])

    def close(self) -> None:
        """Refuse further connections and close the pool (idempotent)."""
        self.closed = True
        self._pool.close()


def bump_counter(cur: Any, name: str) -> None:
    """Add one to counter ``name``, inside the caller's transaction (the row lock is held
    until it commits)."""
    cur.execute(
        "INSERT INTO counter VALUES (%s, 1) "
        "ON CONFLICT (name) DO UPDATE SET value = counter.value + 1",
        (name,),
    )


def sequence_log_entries(cur: Any, entries: list[tuple[str, int, bytes]]) -> None:
    """Give ``entries`` (kind, serial, entry) the next log indexes, inside the caller's
    transaction (the ``log_size`` counter row is locked until it commits, so indexes are
    dense and in commit order)."""
    if not entries:
        return
    cur.execute(TAKE_LOG_INDEXES, (len(entries),))
    first = int(cur.fetchone()[0]) - len(entries)
    rows = [(first + i, kind, serial, entry) for i, (kind, serial, entry) in enumerate(entries)]
    cur.executemany(INSERT_LOG_ENTRY, rows)
