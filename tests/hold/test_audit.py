"""The audit log: one JSON event per action, to the embedder's logger, never a secret."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from holdca.errors import IssuancePolicyError
from holdca.hold.audit import AuditLog
from holdca.hold.ledger import IssuanceRecord, Revocation

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"


def test_events_are_json_lines_on_the_chosen_logger(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.hold.audit")
    audit = AuditLog(logger)
    rec = IssuanceRecord(
        serial=0xABC,
        did=DID,
        manifest_digest="sha256:" + "00" * 32,
        commit_cid="bafy",
        rev="3l3",
        not_before=T0,
        not_after=T0 + timedelta(hours=24),
        certificate_der=b"\x30\x00",
        issuer_id="f" * 64,
        issued_at=T0,
    )
    with caplog.at_level(logging.INFO, logger="test.hold.audit"):
        audit.issued(rec, now=T0)
        audit.revoked(Revocation(0xABC, T0, "keyCompromise"), DID, now=T0)
        audit.crl(issuer_id="f" * 64, number=3, entries=1, this_update=T0, now=T0)
        audit.rotated(old_id="a", new_id="b", retire_at=T0 + timedelta(days=30), now=T0)
        audit.refused(
            operation="cosign", did=DID, caller=None, error=IssuancePolicyError("rate"), now=T0
        )
    records = [r for r in caplog.records if r.name == "test.hold.audit"]
    events = [json.loads(r.getMessage()) for r in records]
    assert [e["event"] for e in events] == ["issued", "revoked", "crl", "rotated", "refused"]
    assert events[0]["serial"] == "abc"
    assert events[0]["did"] == DID
    assert events[4]["error"] == "IssuancePolicyError"
    assert records[4].levelno == logging.WARNING
    assert all(e["time"] == T0.isoformat() for e in events)
    assert records[0].holdca_event == events[0]  # type: ignore[attr-defined]
    assert "certificate_der" not in events[0]


def test_default_logger_name() -> None:
    assert AuditLog().logger.name == "holdca.audit"
