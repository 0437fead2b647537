"""HoldCA.cosign_many / resign_many: one ledger commit for a batch, per-request outcomes."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from holdca.errors import (
    AuthorizationError,
    DuplicateSerialError,
    HoldCAError,
    IssuancePolicyError,
    LedgerError,
)
from holdca.hold import CosignResponse, MemoryLedger, SQLiteLedger
from holdca.hold.ledger import IssuanceRecord
from holdca.notation.trustpolicy import hold_trust_policy
from holdca.notation.truststore import TrustStore
from holdca.notation.verify import verify_envelope
from tests.hold.conftest import NOW, World, make_world


def _verifies(world: World, response: CosignResponse) -> None:
    """holdca's notation-semantics verifier accepts the envelope under the hold's root."""
    verify_envelope(
        response.envelope,
        statement=hold_trust_policy(store="hold", revocation="skip").applicable("local/x"),
        trust_store=TrustStore({("ca", "hold"): [world.ca.root_certificate]}),
        now=NOW + timedelta(minutes=1),
        descriptor=world.image,
    )
    response.certificate.verify_directly_issued_by(world.ca.certificate)


def test_a_batch_mixes_responses_and_refusals_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = make_world(tmp_path, ledger=SQLiteLedger(tmp_path / "ledger.sqlite3"))
    requests = [
        w.request(),
        w.request(caller="did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"),
        w.request(),
        w.request(validity=timedelta(hours=48)),
        w.request(proof_hint=b"not a car"),
        w.request(),
    ]
    with caplog.at_level(logging.INFO, logger="holdca.audit"):
        results = w.ca.cosign_many(requests, now=NOW)
    assert [type(r) for r in results[:4]] == [
        CosignResponse,
        AuthorizationError,
        CosignResponse,
        IssuancePolicyError,
    ]
    assert isinstance(results[4], HoldCAError)
    assert isinstance(results[5], CosignResponse)
    issued = [r for r in results if isinstance(r, CosignResponse)]
    assert len({r.serial for r in issued}) == 3
    for response in issued:
        assert w.ledger.get(response.serial) == response.record
        assert response.record.kind == "cosign"
        _verifies(w, response)
    assert w.ledger.count() == 3
    events = [json.loads(r.getMessage())["event"] for r in caplog.records]
    assert sorted(events) == ["issued"] * 3 + ["refused"] * 3


def test_resign_many_records_resigns(world: World) -> None:
    results = world.ca.resign_many([world.request(), world.request()], now=NOW)
    assert all(isinstance(r, CosignResponse) for r in results)
    assert [r.kind for r in world.ledger.by_did(world.repo.did)] == ["resign", "resign"]


class _FailingBatchLedger(MemoryLedger):
    def record_issuances(self, records: Sequence[IssuanceRecord]) -> list[LedgerError | None]:
        raise LedgerError("disk full")


def test_a_failed_commit_hands_nothing_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    led = _FailingBatchLedger()
    w = make_world(tmp_path, ledger=led)
    with caplog.at_level(logging.INFO, logger="holdca.audit"):
        results = w.ca.cosign_many([w.request(), w.request()], now=NOW)
    assert all(isinstance(r, LedgerError) for r in results)
    assert all("disk full" in str(r) for r in results)
    assert led.count() == 0
    events = [json.loads(r.getMessage())["event"] for r in caplog.records]
    assert events == ["refused", "refused"]


class _CollidingBatchLedger(MemoryLedger):
    """Reports the first record of the first batch as a duplicate serial."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[int] = []

    def record_issuances(self, records: Sequence[IssuanceRecord]) -> list[LedgerError | None]:
        if self.refused:
            return super().record_issuances(records)
        self.refused.append(records[0].serial)
        return [DuplicateSerialError("duplicate"), *super().record_issuances(records[1:])]


def test_a_serial_collision_in_a_batch_is_signed_again(tmp_path: Path) -> None:
    led = _CollidingBatchLedger()
    w = make_world(tmp_path, ledger=led)
    results = w.ca.cosign_many([w.request(), w.request()], now=NOW)
    first, second = results
    assert isinstance(first, CosignResponse)
    assert isinstance(second, CosignResponse)
    assert first.serial != led.refused[0]  # a fresh certificate, not the refused one
    assert led.get(led.refused[0]) is None
    assert led.count() == 2
    _verifies(w, first)
    assert first.certificate.serial_number == first.serial
    assert isinstance(first.certificate, x509.Certificate)


def test_an_empty_batch(world: World) -> None:
    assert world.ca.cosign_many([], now=NOW) == []
    assert world.ledger.count() == 0
