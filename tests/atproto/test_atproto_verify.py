"""End-to-end getRecord proof verification.

Oracles: the generated getRecord cases (expected outcome and error class, records in atproto JSON,
CIDs, keys), MarshalX ``atproto`` (CAR decoding and ``verify_signature`` of TestRepo output), and
the builder-independent properties (every present key proven, random other keys proven absent,
any flipped byte rejected with a typed error).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import libipld
import pytest
from atproto_core import car as oracle_car
from atproto_crypto.verify import verify_signature as oracle_verify
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holdca.atproto import dagcbor
from holdca.atproto.car import read_car
from holdca.atproto.verify import prove_record, verify_record_proof
from holdca.errors import (
    ATURIError,
    CARError,
    CommitError,
    DIDDocumentError,
    DIDSyntaxError,
    HoldCAError,
    IncompleteProofError,
    MSTError,
    RecordAbsentError,
    RecordMismatchError,
    SignatureInvalidError,
)
from holdca.testing.atproto import TestRepo, make_tid
from holdca.testing.strategies import manifest_digests, repos, tids

V = Path(__file__).resolve().parents[1] / "vectors" / "atproto"
G = V / "generated"
CASES = json.loads((G / "cases.json").read_text())
FAILURE_CLASSES: dict[str, type[HoldCAError]] = {
    "signature": SignatureInvalidError,
    "did-mismatch": RecordMismatchError,
    "block-hash-mismatch": CARError,
    "missing-block": IncompleteProofError,
    "invalid-mst": MSTError,
    "record-not-found": RecordAbsentError,
    "record-content-mismatch": RecordMismatchError,
    "unsupported-commit-version": CommitError,
    "malformed": CommitError,
}
ANY_DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_generated_cases(case: dict[str, Any]) -> None:
    uri = f"at://{case['did']}/{case['collection']}/{case['rkey']}"
    car = (G / case["car"]).read_bytes()
    doc = (G / case["didDoc"]).read_bytes()
    digest = case["expectedDigest"] or ANY_DIGEST
    expect = case["expect"]
    if expect["ok"]:
        verified = verify_record_proof(car, doc, uri, digest, did=case["did"])
        assert dagcbor.to_atjson(verified.record) == expect["record"]
        assert str(verified.record_cid) == expect["recordCid"]
        assert str(verified.commit_cid) == expect["commitCid"]
        assert verified.rev == expect["commitRev"]
        assert verified.signing_key == expect["signingKey"]
        assert verified.manifest.digest == digest
        assert (verified.did, verified.collection, verified.rkey) == (
            case["did"],
            case["collection"],
            case["rkey"],
        )
    else:
        with pytest.raises(FAILURE_CLASSES[expect["failure"]]):
            verify_record_proof(car, doc, uri, digest)


def test_valid_case_with_wrong_digest_is_mismatch() -> None:
    case = next(c for c in CASES if c["name"] == "k256-plc-valid")
    uri = f"at://{case['did']}/{case['collection']}/{case['rkey']}"
    car, doc = (G / case["car"]).read_bytes(), (G / case["didDoc"]).read_bytes()
    with pytest.raises(RecordMismatchError, match="does not match the expected"):
        verify_record_proof(car, doc, uri, "sha256:" + "1" * 64)
    with pytest.raises(RecordMismatchError, match="sha256"):
        verify_record_proof(car, doc, uri, "sha256:" + "A" * 64)
    with pytest.raises(RecordMismatchError, match="not did:plc"):
        verify_record_proof(car, doc, uri, case["expectedDigest"], did="did:plc:" + "a" * 24)
    with pytest.raises(ATURIError):
        verify_record_proof(car, doc, uri.replace("io.atcr.manifest", "io.atcr.tag"), ANY_DIGEST)
    with pytest.raises(DIDSyntaxError):
        verify_record_proof(
            car, doc, "at://did:key:zQ3sh/io.atcr.manifest/3mbflm3ks6o2r", ANY_DIGEST
        )
    with pytest.raises(DIDDocumentError):
        verify_record_proof(car, (G / "did-docs" / "bob.json").read_bytes(), uri, ANY_DIGEST)


@pytest.mark.parametrize("curve", ["k256", "p256"])
@pytest.mark.parametrize("method", ["plc", "web"])
def test_testrepo_output_checked_by_oracle(method: str, curve: str) -> None:
    """MarshalX decodes TestRepo's CAR to the same blocks and verifies its commit signature."""
    repo = TestRepo.create(method, curve)  # type: ignore[arg-type]
    digests = [f"sha256:{i:064x}" for i in range(40)]
    uris = repo.put_manifests(digests, repository="team/app")
    for uri, digest in zip(uris[::7], digests[::7], strict=True):
        car_bytes = repo.get_record_car(uri)
        oracle = oracle_car.CAR.from_bytes(car_bytes)
        ours = read_car(car_bytes)
        assert oracle.root.encode() == str(ours.roots[0]) == str(repo.commit_cid)
        commit = oracle.blocks[oracle.root]
        assert commit["did"] == repo.did
        assert commit["version"] == 3
        unsigned = dagcbor.encode(dagcbor.decode(ours.blocks[ours.roots[0]]) | {"sig": None})
        del_sig = dagcbor.decode(ours.blocks[ours.roots[0]])
        del del_sig["sig"]
        assert unsigned != dagcbor.encode(del_sig)  # the sig key is removed, not nulled
        assert oracle_verify(repo.signing_key, dagcbor.encode(del_sig), commit["sig"])
        verified = verify_record_proof(car_bytes, repo.did_document(), uri, digest)
        assert verified.manifest.repository == "team/app"
        record = oracle.blocks[
            next(c for c in oracle.blocks if c.encode() == str(verified.record_cid))
        ]
        assert record["digest"] == digest


@settings(max_examples=10, suppress_health_check=[HealthCheck.too_slow])
@given(repos(min_records=1, max_records=2000), st.lists(tids(), min_size=1, max_size=20))
def test_inclusion_and_absence(
    repo_and_uris: tuple[TestRepo, list[str]], others: list[str]
) -> None:
    repo, uris = repo_and_uris
    doc = repo.did_document()
    # independent oracle on the whole repo: MarshalX decodes it, libipld re-encodes the
    # unsigned commit, MarshalX verifies the signature; every record block carries its digest
    oracle = oracle_car.CAR.from_bytes(repo.full_car())
    commit = oracle.blocks[oracle.root]
    unsigned = libipld.encode_dag_cbor({k: v for k, v in commit.items() if k != "sig"})
    assert oracle_verify(repo.signing_key, unsigned, commit["sig"])
    oracle_digests = {c.encode(): b["digest"] for c, b in oracle.blocks.items() if "digest" in b}
    for uri in uris:
        digest = repo.records[uri.split("/", 3)[3]]["digest"]
        verified = verify_record_proof(repo.get_record_car(uri), doc, uri, digest)
        assert verified.record_cid == repo.record_cid(uri)
        assert oracle_digests[str(verified.record_cid)] == digest
        assert str(verified.commit_cid) == oracle.root.encode()
    present = set(uris)
    for rkey in others:
        uri = f"at://{repo.did}/io.atcr.manifest/{rkey}"
        if uri in present:
            continue
        with pytest.raises(RecordAbsentError):
            verify_record_proof(repo.get_record_car(uri), doc, uri, ANY_DIGEST)


def test_large_repo_inclusion_and_absence() -> None:
    repo = TestRepo.create("web", "p256")
    digests = [f"sha256:{i:064x}" for i in range(2000)]
    uris = repo.put_manifests(digests)
    doc = repo.did_document()
    for uri, digest in list(zip(uris, digests, strict=True))[::37]:
        verify_record_proof(repo.get_record_car(uri), doc, uri, digest)
    for i in range(30):
        uri = f"at://{repo.did}/io.atcr.manifest/{make_tid(i * 7919)}"
        with pytest.raises(RecordAbsentError):
            verify_record_proof(repo.get_record_car(uri), doc, uri, ANY_DIGEST)


def test_other_collections_are_proven_too() -> None:
    repo = TestRepo.create()
    uri = repo.put_record("io.atcr.tag", {"$type": "io.atcr.tag", "tag": "latest"}, "latest")
    proven = prove_record(
        repo.get_record_car(uri), repo.public_key, repo.did, "io.atcr.tag", "latest"
    )
    assert proven.record["tag"] == "latest"


def test_deleted_record_absent_and_stale_proof_still_valid() -> None:
    repo = TestRepo.create()
    uri = repo.put_manifest("sha256:" + "cd" * 32)
    old = repo.get_record_car(uri)
    repo.delete_record(uri)
    with pytest.raises(RecordAbsentError):
        verify_record_proof(
            repo.get_record_car(uri), repo.did_document(), uri, "sha256:" + "cd" * 32
        )
    # replay: the old proof stays cryptographically valid (freshness is a policy, see docs)
    verify_record_proof(old, repo.did_document(), uri, "sha256:" + "cd" * 32)


def test_rotated_key_rejects_old_commit() -> None:
    repo = TestRepo.create()
    uri = repo.put_manifest("sha256:" + "ef" * 32)
    car = repo.get_record_car(uri)
    repo.rotate_key()
    with pytest.raises(SignatureInvalidError):
        verify_record_proof(car, repo.did_document(), uri, "sha256:" + "ef" * 32)
    verify_record_proof(repo.get_record_car(uri), repo.did_document(), uri, "sha256:" + "ef" * 32)


_FLIP_REPO = TestRepo.create()
_FLIP_URIS = _FLIP_REPO.put_manifests([f"sha256:{i:064x}" for i in range(60)])
_FLIP_CAR = _FLIP_REPO.get_record_car(_FLIP_URIS[17])
_FLIP_DOC = _FLIP_REPO.did_document()


def test_flip_baseline_verifies() -> None:
    verify_record_proof(_FLIP_CAR, _FLIP_DOC, _FLIP_URIS[17], f"sha256:{17:064x}")


@settings(max_examples=300)
@given(st.integers(0, len(_FLIP_CAR) - 1), st.integers(1, 255))
def test_any_flipped_byte_fails_typed(pos: int, xor: int) -> None:
    data = bytearray(_FLIP_CAR)
    data[pos] ^= xor
    with pytest.raises(HoldCAError):
        verify_record_proof(bytes(data), _FLIP_DOC, _FLIP_URIS[17], f"sha256:{17:064x}")


@pytest.mark.parametrize(("method", "curve"), [("plc", "k256"), ("web", "p256")])
def test_every_single_bit_flip_fails(method: str, curve: str) -> None:
    """Exhaustive over positions (one bit each): no flip slips through or escapes untyped."""
    repo = TestRepo.create(method, curve)  # type: ignore[arg-type]
    uris = repo.put_manifests([f"sha256:{i:064x}" for i in range(60)])
    car, doc = repo.get_record_car(uris[17]), repo.did_document()
    verify_record_proof(car, doc, uris[17], f"sha256:{17:064x}")
    for pos in range(len(car)):
        data = bytearray(car)
        data[pos] ^= 0x01 << (pos % 8)
        with pytest.raises(HoldCAError):
            verify_record_proof(bytes(data), doc, uris[17], f"sha256:{17:064x}")


@settings(max_examples=200)
@given(
    doc=st.binary(max_size=300) | st.just(_FLIP_DOC),
    uri=st.text(max_size=80) | st.just(_FLIP_URIS[17]),
    digest=st.text(max_size=80) | st.just(f"sha256:{17:064x}"),
    did=st.none() | st.text(max_size=40),
)
def test_fuzz_entry_point_arguments(doc: bytes, uri: str, digest: str, did: str | None) -> None:
    """Garbage in any argument gives a typed holdca error, never an uncaught exception."""
    try:
        verify_record_proof(_FLIP_CAR, doc, uri, digest, did=did)
    except HoldCAError:
        return
    assert (doc, uri, digest) == (_FLIP_DOC, _FLIP_URIS[17], f"sha256:{17:064x}")


@settings(max_examples=25)
@given(manifest_digests())
def test_digest_must_match(digest: str) -> None:
    if digest == f"sha256:{17:064x}":
        return
    with pytest.raises(RecordMismatchError):
        verify_record_proof(_FLIP_CAR, _FLIP_DOC, _FLIP_URIS[17], digest)
