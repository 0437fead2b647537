"""The PostgreSQL ledger's schema, its migrations, and the mapping between rows and records.

Schema versions (the one row of table ``schema_version``, PostgreSQL's counterpart of
SQLite's ``PRAGMA user_version``), each migrated forward when a ledger is opened, in one
transaction under a transaction-scoped advisory lock, so that replicas starting together
migrate once:

* 1: issuances (serial ``numeric`` UNIQUE, appended in issuance order), revocations,
  CRL numbers, CA records, counters, stored CRLs, the deny list, used service-auth
  tokens, DID states and hosts, recoveries;
* 2: per-DID rate slots;
* 3: the transparency-log entries (``log_entry``) and the ``log_size`` counter, whose row
  lock each issuing or revoking transaction takes (a bare sequence is not commit-ordered),
  so indexes are dense and in commit order. Issuances before the upgrade are not sequenced.

Serials are ``numeric(49,0)`` (20 octets fit in 49 decimal digits; a 128-bit serial does
not fit ``bigint``) and times ``timestamptz`` (microseconds, UTC sessions), so operators
can read the tables with ``psql``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from holdca.errors import ConfigError, LedgerError
from holdca.hold.ledger.records import DenyEntry, IssuanceRecord, Revocation

__all__ = [
    "INSERT_ISSUANCE",
    "INSERT_LOG_ENTRY",
    "ISSUANCE_COLUMNS",
    "MIGRATION_LOCK",
    "SCHEMA_VERSION",
    "TAKE_LOG_INDEXES",
    "deny_row",
    "issuance_row",
    "issuance_values",
    "migrate",
    "redact_url",
    "revocation_row",
    "schema_version",
    "serial_of",
    "utc",
]

SCHEMA_VERSION: Final = 3
"""The PostgreSQL ledger schema this holdca writes (see the module docstring)."""

MIGRATION_LOCK: Final = 0x686F6C6463610001
"""The advisory lock key (``pg_advisory_xact_lock``) migrations run under ("holdca" + 1)."""

_V1 = (
    """CREATE TABLE schema_version (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        version   integer NOT NULL
    )""",
    """CREATE TABLE issuance (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        serial          numeric(49,0) NOT NULL UNIQUE CHECK (serial >= 0),
        did             text NOT NULL,
        manifest_digest text NOT NULL,
        commit_cid      text,
        rev             text,
        not_before      timestamptz NOT NULL,
        not_after       timestamptz NOT NULL,
        certificate     bytea NOT NULL,
        issuer_id       text NOT NULL,
        issued_at       timestamptz NOT NULL,
        kind            text NOT NULL,
        repository      text,
        record_uri      text,
        proof_source    text
    )""",
    "CREATE INDEX issuance_by_did ON issuance (did, issued_at)",
    "CREATE INDEX issuance_by_time ON issuance (issued_at, serial)",
    "CREATE INDEX issuance_by_issuer ON issuance (issuer_id, not_after)",
    """CREATE TABLE revocation (
        serial          numeric(49,0) PRIMARY KEY REFERENCES issuance (serial),
        revoked_at      timestamptz NOT NULL,
        reason          text,
        invalidity_date timestamptz
    )""",
    """CREATE TABLE crl_state (
        issuer_id   text PRIMARY KEY,
        number      bigint NOT NULL CHECK (number > 0),
        this_update timestamptz NOT NULL
    )""",
    """CREATE TABLE ca (
        ca_id        text PRIMARY KEY,
        key_label    text NOT NULL,
        certificate  bytea NOT NULL,
        created_at   timestamptz NOT NULL,
        state        text NOT NULL,
        retire_at    timestamptz,
        cross_certs  bytea[] NOT NULL,
        parent_id    text
    )""",
    """CREATE TABLE counter (
        name  text PRIMARY KEY,
        value bigint NOT NULL
    )""",
    """CREATE TABLE stored_crl (
        issuer_id   text PRIMARY KEY,
        next_update timestamptz NOT NULL,
        der         bytea NOT NULL
    )""",
    """CREATE TABLE deny_list (
        did     text PRIMARY KEY,
        reason  text NOT NULL,
        since   timestamptz NOT NULL,
        source  text NOT NULL
    )""",
    """CREATE TABLE used_token (
        key        text PRIMARY KEY,
        expires_at timestamptz NOT NULL
    )""",
    "CREATE INDEX used_token_by_expiry ON used_token (expires_at)",
    """CREATE TABLE did_state (
        did         text PRIMARY KEY,
        signing_key text,
        pds_host    text,
        status      text NOT NULL,
        first_seen  timestamptz NOT NULL,
        updated_at  timestamptz NOT NULL
    )""",
    """CREATE TABLE did_host (
        did        text NOT NULL,
        host       text NOT NULL,
        first_seen timestamptz NOT NULL,
        PRIMARY KEY (did, host)
    )""",
    """CREATE TABLE recovery (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        old_ca      text NOT NULL,
        new_ca      text NOT NULL,
        started_at  timestamptz NOT NULL,
        finished_at timestamptz
    )""",
    """CREATE TABLE recovery_item (
        recovery_id bigint NOT NULL REFERENCES recovery (id),
        serial      numeric(49,0) NOT NULL,
        status      text NOT NULL,
        new_serial  numeric(49,0),
        detail      text,
        PRIMARY KEY (recovery_id, serial)
    )""",
    "INSERT INTO schema_version (version) VALUES (1)",
)

_V2 = (
    """CREATE TABLE rate_slot (
        did text NOT NULL,
        at  timestamptz NOT NULL
    )""",
    "CREATE INDEX rate_slot_by_did ON rate_slot (did, at)",
)

_V3 = (
    """CREATE TABLE log_entry (
        idx    bigint PRIMARY KEY CHECK (idx >= 0),
        kind   text NOT NULL,
        serial numeric(49,0) NOT NULL,
        entry  bytea NOT NULL,
        UNIQUE (kind, serial)
    )""",
    "INSERT INTO counter VALUES ('log_size', 0) ON CONFLICT (name) DO NOTHING",
)

# version -> the statements that bring a database at version - 1 to version
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {1: _V1, 2: _V2, 3: _V3}

TAKE_LOG_INDEXES: Final = (
    "UPDATE counter SET value = value + %s WHERE name = 'log_size' RETURNING value"
)
"""Take ``n`` log indexes: returns the new size (the first index is size - n). The row lock
it takes is held to the commit, so indexes are dense and in commit order."""

INSERT_LOG_ENTRY: Final = "INSERT INTO log_entry VALUES (%s,%s,%s,%s)"
"""Sequence one entry: index, ``issuance`` or ``revocation``, serial, the bytes."""

ISSUANCE_COLUMNS: Final = (
    "serial, did, manifest_digest, commit_cid, rev, not_before, not_after, certificate, "
    "issuer_id, issued_at, kind, repository, record_uri, proof_source"
)
"""The issuance columns in :class:`IssuanceRecord` order (what :func:`issuance_row` reads)."""

INSERT_ISSUANCE: Final = (
    f"INSERT INTO issuance ({ISSUANCE_COLUMNS}) "  # noqa: S608 (constant column list)
    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
    "ON CONFLICT (serial) DO NOTHING RETURNING serial"
)
"""Insert one issuance; returns no row when the serial is already taken (the unique
constraint decides, also against a concurrent transaction: the insert waits for it)."""


def schema_version(cur: Any) -> int | None:
    """The schema version in the current schema (where CREATE TABLE puts tables), or
    ``None`` without a ledger schema.

    Reads ``pg_class`` with the statement's snapshot (not ``to_regclass``, whose catalog
    cache can miss a table another session created since this transaction began)."""
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = 'schema_version' AND n.nspname = current_schema())"
    )
    if not cur.fetchone()[0]:
        return None
    cur.execute("SELECT version FROM schema_version")
    row = cur.fetchone()
    return None if row is None else int(row[0])


def migrate(conn: Any, where: str, *, create: bool) -> None:
    """Bring the database up to :data:`SCHEMA_VERSION` (creating it only with ``create``).

    ``conn`` is an autocommit psycopg connection. Checked first, without writing: the
    schema version (newer than this holdca: refused) and ``pg_is_in_recovery()`` (a
    read-only standby cannot be migrated: a clear error rather than a failed CREATE
    TABLE). Then one transaction under the advisory lock :data:`MIGRATION_LOCK` re-reads
    the version (another replica may have migrated meanwhile) and runs what is missing.

    Raises:
        ConfigError: ``create`` is false and the database has no holdca schema (names
            ``HOLD_LEDGER_URL``: only ``holdca init`` creates a hold).
        LedgerError: a newer schema; a standby that would need migrating; the migration
            failed (psycopg errors are left to the caller to translate).
    """
    with conn.cursor() as cur:
        version = schema_version(cur)
        cur.execute("SELECT pg_is_in_recovery()")
        standby = bool(cur.fetchone()[0])
    _check_version(version, where, create=create)
    if version == SCHEMA_VERSION:
        return
    if standby:
        raise LedgerError(
            f"ledger database {where} is a read-only standby (pg_is_in_recovery) and its "
            f"schema needs {'creating' if version is None else 'migrating'}; "
            "open it on the primary first"
        )
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        version = schema_version(cur)
        _check_version(version, where, create=create)
        for target in range((version or 0) + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target]:
                cur.execute(statement)
            cur.execute("UPDATE schema_version SET version = %s", (target,))


def _check_version(version: int | None, where: str, *, create: bool) -> None:
    if version is None and not create:
        raise ConfigError(
            f"HOLD_LEDGER_URL: {where} has no holdca ledger schema "
            "(only holdca init creates a hold)"
        )
    if version is not None and version > SCHEMA_VERSION:
        raise LedgerError(
            f"ledger database {where} has schema version {version}, newer than this "
            f"holdca understands ({SCHEMA_VERSION}); upgrade holdca"
        )


def redact_url(url: str) -> str:
    """``url`` (a ``postgresql://`` URL) with any password replaced by ``***``.

    For the ledger's repr, errors and logs. Anything that does not parse as a URL is
    shown as ``postgresql://***`` (it may be a key=value string holding a password).
    """
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return "postgresql://***"
    if parts.scheme not in ("postgresql", "postgres"):
        return "postgresql://***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:***@{hosts}" if colon else f"{user}@{hosts}"
    query = urlencode(
        [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)], safe="/"
    )
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))


def utc(value: datetime) -> datetime:
    """A ``timestamptz`` column as an aware UTC datetime."""
    return value.astimezone(UTC)


def serial_of(value: object) -> int:
    """A ``numeric`` serial column as an int.

    Raises:
        LedgerError: the value is not an integral number (a corrupted row).
    """
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise LedgerError("a ledger serial must be an integer")


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def issuance_row(row: Sequence[Any]) -> IssuanceRecord:
    """An issuance row (:data:`ISSUANCE_COLUMNS`, in order) as a record."""
    serial, did, digest, cid, rev, nb, na, der, issuer, issued, kind, repo, uri, source = row
    return IssuanceRecord(
        serial=serial_of(serial),
        did=str(did),
        manifest_digest=str(digest),
        commit_cid=_text(cid),
        rev=_text(rev),
        not_before=utc(nb),
        not_after=utc(na),
        certificate_der=bytes(der),
        issuer_id=str(issuer),
        issued_at=utc(issued),
        kind=str(kind),
        repository=_text(repo),
        record_uri=_text(uri),
        proof_source=_text(source),
    )


def issuance_values(record: IssuanceRecord) -> tuple[object, ...]:
    """The parameters of :data:`INSERT_ISSUANCE` for ``record``."""
    return (
        record.serial,
        record.did,
        record.manifest_digest,
        record.commit_cid,
        record.rev,
        record.not_before,
        record.not_after,
        record.certificate_der,
        record.issuer_id,
        record.issued_at,
        record.kind,
        record.repository,
        record.record_uri,
        record.proof_source,
    )


def revocation_row(row: Sequence[Any]) -> Revocation:
    """A revocation row (serial, revoked_at, reason, invalidity_date) as a record."""
    serial, at, reason, invalid = row
    return Revocation(
        serial=serial_of(serial),
        revoked_at=utc(at),
        reason=_text(reason),
        invalidity_date=None if invalid is None else utc(invalid),
    )


def deny_row(row: Sequence[Any]) -> DenyEntry:
    """A deny-list row (did, reason, since, source) as an entry."""
    did, reason, since, source = row
    return DenyEntry(str(did), str(reason), utc(since), str(source))
