"""IssuanceLedger.issuances: every issuance (since a time), oldest first, in both ledgers.

The oracle is the list of records written; ``by_did`` of each DID must partition it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from holdca.hold.ledger import IssuanceLedger, IssuanceRecord
from tests.hold.ledgers import ledger_fixture

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DIDS = ("did:plc:ewvi7nxzyoun6zhxrhs64oiz", "did:web:example.com")


def record(serial: int, *, did: str, at: datetime) -> IssuanceRecord:
    return IssuanceRecord(
        serial=serial,
        did=did,
        manifest_digest="sha256:" + "cd" * 32,
        commit_cid=None,
        rev=None,
        not_before=at - timedelta(minutes=5),
        not_after=at + timedelta(hours=24),
        certificate_der=b"\x30\x03\x02\x01" + serial.to_bytes(20, "big"),
        issuer_id="ca1",
        issued_at=at,
        kind="issue",
    )


ledger = ledger_fixture()  # memory, SQLite and PostgreSQL (tests/hold/ledgers.py)


def test_issuances_since_a_time_oldest_first(ledger: IssuanceLedger) -> None:
    assert ledger.issuances() == []
    # written out of time order, serials not in time order, two DIDs interleaved
    written = [
        record(0x300 + i, did=DIDS[i % 2], at=T0 + timedelta(minutes=(7 * i) % 10))
        for i in range(10)
    ]
    for rec in reversed(written):
        ledger.record_issuance(rec)
    by_time = sorted(written, key=lambda r: r.issued_at)
    assert ledger.issuances() == by_time
    since = T0 + timedelta(minutes=4)
    assert ledger.issuances(since=since) == [r for r in by_time if r.issued_at >= since]
    assert ledger.issuances(since=T0 + timedelta(days=1)) == []
    # every issuance belongs to exactly one DID's list
    assert sorted(r.serial for d in DIDS for r in ledger.by_did(d)) == sorted(
        r.serial for r in ledger.issuances()
    )


def test_issuances_include_revoked_and_expired(ledger: IssuanceLedger) -> None:
    old = record(1, did=DIDS[0], at=T0 - timedelta(days=30))
    new = record(2, did=DIDS[1], at=T0)
    ledger.record_issuance(old)
    ledger.record_issuance(new)
    ledger.revoke(2, revoked_at=T0 + timedelta(minutes=1), reason="superseded")
    assert [r.serial for r in ledger.issuances()] == [1, 2]
    assert ledger.live(T0) == []  # neither is live, both are listed
