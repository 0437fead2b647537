"""The trust gate through HoldCA: every input to the check comes from the resolver.

Each test attacks one rule: the forged DID document, the stale and the deleted record,
the rotated key, a record for another hold, another media type or size, a denied DID.
The resolver is the in-process TestNetwork; tests/integration runs the same scenario
against the reference PLC directory and PDS.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from holdca.atproto.identity import VouchedResolver
from holdca.errors import (
    DeniedDIDError,
    DIDDeactivatedError,
    RecordAbsentError,
    RecordMismatchError,
    SignatureInvalidError,
)
from holdca.hold import HoldCA, MemoryLedger
from holdca.hold.service import ANNOTATION_RECORD, ANNOTATION_REPOSITORY
from holdca.keys import MemoryKeyStore
from holdca.notation import Descriptor, parse_envelope
from holdca.testing.atproto import TestRepo
from tests.hold.conftest import HOLD_DID, NOW, SUBJECT, World


def test_the_forged_document_attack_fails(world: World) -> None:
    """An attacker signs a repo for the victim's DID with their own key and sends it."""
    attacker = TestRepo.create(did=world.repo.did, now=NOW + timedelta(hours=1))
    uri = attacker.put_manifest(world.image.digest, hold_did=HOLD_DID)
    with pytest.raises(SignatureInvalidError):
        world.ca.cosign(
            world.request(record_uri=uri, proof_hint=attacker.get_record_car(uri)), now=NOW
        )
    # without a hint the hold fetches the victim's repo, which has no such record
    with pytest.raises(RecordAbsentError):
        world.ca.cosign(world.request(record_uri=uri), now=NOW)
    assert world.ledger.count() == 0
    # the identity was resolved anew for each attempt, never taken from the caller
    assert world.net.calls.count(("resolve-fresh", world.repo.did)) == 2


def test_a_deleted_record_is_refused(world: World) -> None:
    old_proof = world.repo.get_record_car(world.uri)
    assert world.ca.cosign(world.request(), now=NOW)
    world.repo.delete_record(world.uri)
    with pytest.raises(RecordAbsentError):
        world.ca.cosign(world.request(), now=NOW)
    with pytest.raises(RecordAbsentError):  # the old proof is stale: the hold asks the PDS
        world.ca.cosign(world.request(proof_hint=old_proof), now=NOW)
    with pytest.raises(RecordAbsentError):
        world.ca.resign(world.request(proof_hint=old_proof), now=NOW)
    assert world.ledger.count() == 1


def test_a_proof_by_a_key_the_did_no_longer_has_is_refused(world: World) -> None:
    old_proof = world.repo.get_record_car(world.uri)
    world.ca.cosign(world.request(), now=NOW)
    world.repo.rotate_key()  # the DID's key rotates; its PDS re-signs the commit
    # the hold resolves the DID anew for each issuance: the old proof fails at once
    with pytest.raises(SignatureInvalidError):
        world.ca.cosign(world.request(proof_hint=old_proof), now=NOW)
    with pytest.raises(SignatureInvalidError):
        world.ca.resign(world.request(proof_hint=old_proof), now=NOW)
    assert world.ca.cosign(world.request(), now=NOW).record.proof_source == "live"
    assert world.ledger.count() == 2


def test_reused_identities_are_refreshed_once_when_a_signature_fails(tmp_path: Path) -> None:
    from tests.hold.conftest import make_world  # noqa: PLC0415

    w = make_world(tmp_path, reuse_identities=True)
    old_proof = w.repo.get_record_car(w.uri)
    w.ca.cosign(w.request(), now=NOW)  # the identity is now cached
    w.repo.rotate_key()
    # the cached (old) key still verifies the old proof, but it is not the current commit:
    # the live proof fails against the cached key, the DID is re-resolved once, and the
    # live proof (by the new key) is what the certificate rests on
    w.net.calls.clear()
    response = w.ca.cosign(w.request(proof_hint=old_proof), now=NOW)
    assert response.record.proof_source == "live"
    assert response.verified is not None
    assert response.verified.signing_key == w.repo.signing_key
    assert w.net.calls.count(("resolve-fresh", w.repo.did)) == 1
    # once the hold knows the new key, the old proof no longer verifies at all
    with pytest.raises(SignatureInvalidError):
        w.ca.resign(w.request(proof_hint=old_proof), now=NOW)
    assert w.ledger.count() == 2


def test_hints_current_stale_and_recent(tmp_path: Path) -> None:
    from tests.hold.conftest import make_world  # noqa: PLC0415

    w = make_world(tmp_path, proof_max_age=timedelta(minutes=10))
    hint = w.repo.get_record_car(w.uri)
    w.net.calls.clear()
    # within the age allowance (the rev is a TID carrying NOW): no PDS round trip at all
    assert w.ca.cosign(w.request(proof_hint=hint), now=NOW).record.proof_source == "recent"
    assert [c for c in w.net.calls if not c[0].startswith("resolve")] == []
    # older than the allowance: the hold asks for the current commit; it is this one
    later = NOW + timedelta(minutes=30)
    assert w.ca.cosign(w.request(proof_hint=hint), now=later).record.proof_source == "hint"
    assert ("get_latest_commit", w.repo.did) in w.net.calls
    # re-signing never uses the age allowance
    w.net.calls.clear()
    assert w.ca.resign(w.request(proof_hint=hint), now=NOW).record.proof_source == "hint"
    assert ("get_latest_commit", w.repo.did) in w.net.calls
    # a newer commit makes the hint stale: the hold fetches the proof itself
    w.repo.put_manifest("sha256:" + "12" * 32, hold_did=HOLD_DID)
    answer = w.ca.cosign(w.request(proof_hint=hint), now=later)
    assert answer.record.proof_source == "live"
    assert answer.record.rev == w.repo.rev
    # a rev far in the future is not "recent" either
    ahead = w.net.add(TestRepo.create(now=NOW + timedelta(hours=2)))
    uri = ahead.put_manifest(w.image.digest, hold_did=HOLD_DID)
    answer = w.ca.cosign(
        w.request(
            did=ahead.did, caller=ahead.did, record_uri=uri, proof_hint=ahead.get_record_car(uri)
        ),
        now=NOW,
    )
    assert answer.record.proof_source == "hint"


@pytest.mark.parametrize(
    ("hold_did", "media_type", "size", "match"),
    [
        ("did:web:other-hold.example.com", None, None, "not this hold"),
        (None, None, None, "names no holdDid"),
        (HOLD_DID, "application/vnd.oci.image.index.v1+json", None, "mediaType"),
        (HOLD_DID, None, 12345, "size"),
    ],
)
def test_the_record_must_bind_this_hold_and_this_image(
    world: World, hold_did: str | None, media_type: str | None, size: int | None, match: str
) -> None:
    extra = {} if size is None else {"manifestBlob": {"size": size, "mimeType": "x/y"}}
    uri = world.repo.put_manifest(
        world.image.digest,
        hold_did=hold_did,
        media_type=media_type or world.image.media_type,
        extra=extra,
    )
    with pytest.raises(RecordMismatchError, match=match):
        world.ca.cosign(world.request(record_uri=uri), now=NOW)
    assert world.ledger.count() == 0


def test_a_matching_blob_size_passes(world: World) -> None:
    uri = world.repo.put_manifest(
        world.image.digest, hold_did=HOLD_DID, extra={"manifestBlob": {"size": world.image.size}}
    )
    assert world.ca.cosign(world.request(record_uri=uri), now=NOW)


def test_the_repository_is_signed_and_recorded(world: World) -> None:
    response = world.ca.cosign(world.request(), now=NOW)
    signed = parse_envelope(response.envelope).target_artifact
    assert signed.annotations == {ANNOTATION_REPOSITORY: "alice/app", ANNOTATION_RECORD: world.uri}
    row = world.ledger.get(response.serial)
    assert row is not None
    assert (row.repository, row.record_uri) == ("alice/app", world.uri)
    # the OCI signature manifest's subject is the plain image descriptor
    assert json.loads(response.signature_manifest)["subject"] == world.image.to_json()


def test_a_key_compromise_revocation_bans_the_did(world: World) -> None:
    first = world.ca.cosign(world.request(), now=NOW)
    world.ca.revoke(serial=first.serial, reason="keyCompromise", now=NOW)
    with pytest.raises(DeniedDIDError, match="deny list"):
        world.ca.cosign(world.request(), now=NOW + timedelta(seconds=1))
    assert world.ledger.count() == 1
    assert world.ca.allow(world.repo.did, now=NOW) is not None
    assert world.ca.cosign(world.request(), now=NOW + timedelta(seconds=2))
    # other reasons do not ban; an operator's deny does
    second = world.ca.cosign(world.request(), now=NOW)
    world.ca.revoke(serial=second.serial, reason="superseded", now=NOW)
    assert world.ca.cosign(world.request(), now=NOW)
    world.ca.deny(world.repo.did, reason="abuse report", now=NOW)
    with pytest.raises(DeniedDIDError, match="abuse report"):
        world.ca.cosign(world.request(), now=NOW)


def test_a_deactivated_did_gets_nothing(world: World) -> None:
    world.net.deactivate(world.repo.did)
    with pytest.raises(DIDDeactivatedError):
        world.ca.cosign(world.request(), now=NOW)


def test_vouched_files_are_checked_like_fetched_ones(world: World) -> None:
    doc, car = world.repo.did_document(), world.repo.get_record_car(world.uri)
    ca = HoldCA.open(
        MemoryKeyStore(),
        MemoryLedger(),
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=NOW,
        create=True,
        resolver=VouchedResolver(world.repo.did, doc, car),
    )
    response = ca.cosign(world.request(), now=NOW)
    assert response.record.proof_source == "vouched"
    attacker = TestRepo.create(did=world.repo.did, now=NOW)
    attacker.put_manifest(world.image.digest, hold_did=HOLD_DID, rkey=world.uri.rsplit("/", 1)[1])
    forged = HoldCA.open(
        MemoryKeyStore(),
        MemoryLedger(),
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=NOW,
        create=True,
        resolver=VouchedResolver(world.repo.did, doc, attacker.get_record_car(world.uri)),
    )
    with pytest.raises(SignatureInvalidError):
        forged.cosign(world.request(), now=NOW)


def test_descriptor_digest_must_be_the_records(world: World) -> None:
    other = Descriptor(world.image.media_type, "sha256:" + "0" * 64, world.image.size)
    with pytest.raises(RecordMismatchError, match="digest"):
        world.ca.cosign(world.request(descriptor=other), now=NOW)
