"""The issuance ledger: every certificate the hold issued, every revocation, every CRL number.

A hold that issues a certificate it cannot later list cannot revoke it either, so the
ledger is written *before* a cosign returns; a failure raises
:class:`~holdca.errors.LedgerError`, in which case the service hands nothing out.

* :mod:`~holdca.hold.ledger.records`: what is kept (:class:`IssuanceRecord`,
  :class:`Revocation`, :class:`CARecord`, :class:`DenyEntry`, :class:`DIDState`,
  :class:`Recovery`, :class:`RecoveryItem`);
* :mod:`~holdca.hold.ledger.base`: the :class:`IssuanceLedger` Protocol and its shared rules;
* :class:`SQLiteLedger` (:mod:`~holdca.hold.ledger.sqlite`, its schema and migrations in
  :mod:`~holdca.hold.ledger.sqlite_schema`): the embedded default;
* :class:`PostgresLedger` (:mod:`~holdca.hold.ledger.postgres`, its schema and migrations
  in :mod:`~holdca.hold.ledger.postgres_schema`): one database shared by many replicas
  (the ``postgres`` extra: psycopg 3 and psycopg-pool, imported when one is opened);
* :class:`MemoryLedger` (:mod:`~holdca.hold.ledger.memory`): for tests and demos.

Example::

    ledger = SQLiteLedger("/var/lib/hold/ledger.sqlite3")
    ledger.record_issuance(record)
    ledger.revoke(record.serial, revoked_at=now, reason="keyCompromise")
    number, this_update = ledger.next_crl_number(record.issuer_id, now)
"""

from __future__ import annotations

from holdca.hold.ledger.base import IssuanceLedger
from holdca.hold.ledger.memory import MemoryLedger
from holdca.hold.ledger.postgres import PG_SCHEMA_VERSION, PostgresLedger
from holdca.hold.ledger.records import (
    KINDS,
    REASONS,
    CARecord,
    DenyEntry,
    DIDState,
    IssuanceRecord,
    Recovery,
    RecoveryItem,
    Revocation,
    serial_hex,
)
from holdca.hold.ledger.sqlite import SCHEMA_VERSION, SQLiteLedger

__all__ = [
    "KINDS",
    "REASONS",
    "SCHEMA_VERSION",
    "CARecord",
    "DIDState",
    "DenyEntry",
    "IssuanceLedger",
    "IssuanceRecord",
    "MemoryLedger",
    "PG_SCHEMA_VERSION",
    "PostgresLedger",
    "Recovery",
    "RecoveryItem",
    "Revocation",
    "SQLiteLedger",
    "serial_hex",
]
