"""Commits: shape checks, the signed bytes (splice == re-encode == published), signatures.

Oracles: generated ``repos.json`` (exact unsigned bytes and signatures), the real v2 indigo repo
(signature checked by MarshalX ``verify_signature`` over py-dag-cbor's re-encoding), MarshalX.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import dag_cbor
import pytest
from atproto_crypto.verify import verify_signature as oracle_verify
from hypothesis import given, settings
from hypothesis import strategies as st

from holdca.atproto import dagcbor
from holdca.atproto.car import read_car
from holdca.atproto.cid import CID
from holdca.atproto.commit import parse_commit, unsigned_commit_bytes, verify_commit
from holdca.atproto.didkey import parse_did_key, parse_legacy_multibase
from holdca.errors import CommitError, SignatureInvalidError
from holdca.testing.atproto import TestRepo

V = Path(__file__).resolve().parents[1] / "vectors" / "atproto"
REPOS = json.loads((V / "generated" / "repos.json").read_text())


def b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("did", sorted(REPOS))
def test_generated_commits(did: str) -> None:
    info = REPOS[did]
    car = read_car((V / "generated" / info["car"]).read_bytes())
    root = car.roots[0]
    assert str(root) == info["commitCid"]
    commit = parse_commit(car.blocks[root], root)
    assert commit.unsigned == b64(info["unsignedCommitBase64"])
    assert commit.sig == b64(info["sigBase64"])
    assert commit.rev == info["rev"]
    # splice == canonical re-encoding without sig (ours and py-dag-cbor's)
    decoded = dagcbor.decode(car.blocks[root])
    del decoded["sig"]
    assert dagcbor.encode(decoded) == commit.unsigned
    assert dag_cbor.encode(dag_cbor.decode(commit.unsigned)) == commit.unsigned
    key = parse_did_key(info["signingKey"])
    verify_commit(commit, key)
    assert oracle_verify(info["signingKey"], commit.unsigned, commit.sig)


def test_real_v2_commit_rejected_but_signature_is_sound() -> None:
    data = (V / "indigo" / "repo-car" / "divy.repo").read_bytes()
    car = read_car(data)
    block = car.blocks[car.roots[0]]
    with pytest.raises(CommitError, match="version 2"):
        parse_commit(block, car.roots[0])
    # our verifier primitive and the oracle agree on the real signature over the v2 bytes
    obj = dag_cbor.decode(block)
    sig = obj.pop("sig")
    unsigned = dag_cbor.encode(obj)
    did_key = "did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"
    parse_did_key(did_key).verify(unsigned, sig)
    assert oracle_verify(did_key, unsigned, sig)


def _commit_block(**fields: object) -> tuple[bytes, CID]:
    base: dict[str, object] = {
        "did": "did:plc:6boi5tm4syehwjst6cei357y",
        "version": 3,
        "data": CID.for_dag_cbor(b"\xa0"),
        "rev": "3mbflmueaso22",
        "prev": None,
        "sig": b"\x01" * 64,
    }
    for name, value in fields.items():
        if value is KeyError:
            del base[name]
        else:
            base[name] = value
    block = dagcbor.encode(base)
    return block, CID.for_dag_cbor(block)


def test_valid_shape_parses() -> None:
    block, cid = _commit_block()
    commit = parse_commit(block, cid)
    assert commit.prev is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prev": KeyError}, "missing \\['prev'\\]"),
        ({"extra": 1}, "unexpected \\['extra'\\]"),
        ({"version": 2}, "unsupported commit version"),
        ({"version": "3"}, "unsupported commit version"),
        ({"did": 5}, "did must be a string"),
        ({"data": "bafy"}, "data must be"),
        ({"data": CID.for_raw(b"")}, "data must be"),
        ({"rev": "not-a-tid"}, "not a TID"),
        ({"prev": "x"}, "prev must be"),
        ({"sig": b"\x01" * 70}, "64 bytes"),
        ({"sig": "x" * 64}, "64 bytes"),
    ],
)
def test_bad_commits(fields: dict[str, object], message: str) -> None:
    block, cid = _commit_block(**fields)
    with pytest.raises(CommitError, match=message):
        parse_commit(block, cid)


def test_not_a_map_and_not_dagcbor() -> None:
    with pytest.raises(CommitError):
        parse_commit(dagcbor.encode([1, 2]), CID.for_dag_cbor(b""))
    with pytest.raises(CommitError):
        parse_commit(b"\xfb" + b"\x00" * 8, CID.for_dag_cbor(b""))


def test_splice_refuses_non_canonical_layout() -> None:
    block, _ = _commit_block()
    with pytest.raises(CommitError):
        unsigned_commit_bytes(
            block, "did:plc:6boi5tm4syehwjst6cei357y", "3mbflmueaso22", b"\x02" * 64
        )
    with pytest.raises(CommitError):
        unsigned_commit_bytes(block, "did:web:example.com", "3mbflmueaso22", b"\x01" * 64)


@pytest.mark.parametrize("curve", ["k256", "p256"])
def test_testrepo_commit_verifies_and_wrong_key_fails(curve: str) -> None:
    repo = TestRepo.create(curve=curve)  # type: ignore[arg-type]
    repo.put_manifest("sha256:" + "ab" * 32)
    commit = parse_commit(repo.commit_block, repo.commit_cid)
    verify_commit(commit, repo.public_key)
    assert oracle_verify(repo.signing_key, commit.unsigned, commit.sig)
    other = TestRepo.create(curve=curve)  # type: ignore[arg-type]
    with pytest.raises(SignatureInvalidError):
        verify_commit(commit, other.public_key)


@settings(max_examples=100)
@given(
    did=st.sampled_from(["did:plc:", "did:web:"]).flatmap(
        lambda prefix: st.text("abcdefghijklmnopqrstuvwxyz234567", min_size=1, max_size=400).map(
            lambda tail: prefix + tail
        )
    ),
    rev=st.just("3mbflmueaso22"),
    sig=st.binary(min_size=64, max_size=64),
    prev=st.none() | st.binary(max_size=8).map(CID.for_dag_cbor),
)
def test_splice_equals_reencoding(did: str, rev: str, sig: bytes, prev: CID | None) -> None:
    """For any DID length (1-, 2- and 3-byte string heads), the spliced bytes are exactly the
    canonical encoding of the commit without ``sig`` (checked with py-dag-cbor too)."""
    block, cid = _commit_block(did=did, rev=rev, sig=sig, prev=prev)
    commit = parse_commit(block, cid)
    unsigned = {k: v for k, v in dagcbor.decode(block).items() if k != "sig"}
    assert commit.unsigned == dagcbor.encode(unsigned)
    oracle = dag_cbor.decode(block)
    del oracle["sig"]
    assert commit.unsigned == dag_cbor.encode(oracle)


def test_unrelated_real_key_does_not_verify_real_commit() -> None:
    """indigo's z5vnbioquyhivxirw3bbljmu pair: the DID doc key does not sign that v2 commit
    (no indigo test pairs them; MarshalX's SDK rejects the pair too), so both verifiers
    must reject it."""
    folder = V / "indigo" / "repo-car"
    car = read_car(
        (folder / "bafyreieovfuizojpw3zresz7sx3nk4trm2by23pt5rxbey3jme4uo5ogiu.car").read_bytes()
    )
    doc = json.loads((folder / "did_plc_z5vnbioquyhivxirw3bbljmu.didDoc.json").read_text())
    method = doc["verificationMethod"][0]
    key = parse_legacy_multibase(method["type"], method["publicKeyMultibase"])
    assert key.did_key == "did:key:zQ3shUq2kXSBvRMmZhn6BjSCLHbBW56J3JThx95yvJuyKoa6j"
    obj = dag_cbor.decode(car.blocks[car.roots[0]])
    sig = obj.pop("sig")
    unsigned = dag_cbor.encode(obj)
    with pytest.raises(SignatureInvalidError):
        key.verify(unsigned, sig)
    assert not oracle_verify(key.did_key, unsigned, sig)
