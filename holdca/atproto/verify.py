"""Verify a ``com.atproto.sync.getRecord`` proof: the DID signed the record, and it matches.

The pipeline (research/atproto.md 0), every step raising a typed :mod:`holdca.errors` error:

1. parse ``at://<did>/<collection>/<rkey>`` (DID, NSID, record-key syntax; account DID method);
2. DID document: ``id == did``, the ``#atproto`` key;
3. CAR: limits, every block re-hashed against its CID; ``roots[0]`` is the commit;
4. commit: v3, exact field set, ``commit.did == did``, 64-byte low-S signature by the key over
   the DAG-CBOR of the commit without ``sig``;
5. MST: inclusion of ``<collection>/<rkey>`` under ``commit.data`` (or proven absence);
6. record: present in the CAR (hash-checked), strict DAG-CBOR, and for
   :func:`verify_record_proof` an ``io.atcr.manifest`` whose ``digest`` is the expected one.

Example::

    repo = TestRepo.create()                       # holdca.testing.atproto
    uri = repo.put_manifest("sha256:" + "ab" * 32)
    verified = verify_record_proof(repo.get_record_car(uri), repo.did_document(), uri,
                                   "sha256:" + "ab" * 32)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from holdca.atproto import dagcbor
from holdca.atproto.car import DEFAULT_CAR_LIMITS, CARLimits, read_car
from holdca.atproto.cid import CID, CODEC_DAG_CBOR
from holdca.atproto.commit import Commit, parse_commit, verify_commit
from holdca.atproto.did import validate_account_did
from holdca.atproto.diddoc import DIDDocument, parse_did_document
from holdca.atproto.didkey import PublicKey
from holdca.atproto.mst import lookup
from holdca.atproto.record import (
    MANIFEST_NSID,
    ManifestRecord,
    check_manifest_record,
    validate_digest,
)
from holdca.atproto.syntax import mst_key, parse_record_uri
from holdca.errors import (
    ATURIError,
    CIDError,
    DAGCBORError,
    IncompleteProofError,
    RecordAbsentError,
    RecordMismatchError,
)

__all__ = ["ProvenRecord", "VerifiedRecord", "prove_record", "verify_record_proof"]


@dataclass(frozen=True, slots=True)
class ProvenRecord:
    """A record proven to be in the repo of ``did`` at the signed commit.

    Attributes:
        did: the repo DID.
        collection: the record's collection NSID.
        rkey: the record key.
        commit: the verified commit.
        record_cid: CID of the record block.
        record: the decoded record (data model: CIDs as :class:`CID`, bytes as ``bytes``).
    """

    did: str
    collection: str
    rkey: str
    commit: Commit
    record_cid: CID
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class VerifiedRecord:
    """An ``io.atcr.manifest`` record the DID provably signed, matching the expected digest.

    Attributes:
        did: the DID that signed it.
        collection: ``io.atcr.manifest``.
        rkey: the record key.
        record_cid: CID of the record block.
        commit_cid: CID of the signed commit.
        rev: the commit revision (TID; a logical clock, see docs for freshness).
        record: the decoded record.
        manifest: the checked manifest fields.
        signing_key: the did:key that verified the commit.
    """

    did: str
    collection: str
    rkey: str
    record_cid: CID
    commit_cid: CID
    rev: str
    record: dict[str, Any]
    manifest: ManifestRecord
    signing_key: str


def prove_record(
    car_bytes: bytes,
    key: PublicKey,
    did: str,
    collection: str,
    rkey: str,
    *,
    limits: CARLimits = DEFAULT_CAR_LIMITS,
) -> ProvenRecord:
    """Verify a getRecord CAR for any record: hashes, commit signature, MST inclusion.

    Raises:
        CARError: malformed CAR, over a limit, or a block whose bytes do not match its CID.
        CommitError: the root block is not a valid v3 commit.
        RecordMismatchError: the commit is for another DID.
        SignatureInvalidError: the commit signature does not verify with ``key``.
        MSTError: a visited MST node breaks the tree invariants.
        IncompleteProofError: the commit, an MST node on the path or the record block is missing.
        RecordAbsentError: the MST proves the record is not in the repo.
        DAGCBORError: the record block is not strict DAG-CBOR or not a map.
        ATURIError: invalid collection or record key.
    """
    key_bytes = mst_key(collection, rkey)
    car = read_car(car_bytes, limits)
    root = car.roots[0]
    block = car.blocks.get(root)
    if block is None:
        raise IncompleteProofError(f"CAR lacks its root block {root} (the commit)")
    commit = parse_commit(block, root)
    if commit.did != did:
        raise RecordMismatchError(
            f"commit is for {commit.did[:100]!r}, not the requested DID {did!r}"
        )
    verify_commit(commit, key)
    record_cid = lookup(car.blocks, commit.data, key_bytes)
    if record_cid is None:
        raise RecordAbsentError(
            f"repo of {did} at rev {commit.rev} has no record {collection}/{rkey}"
        )
    if record_cid.codec != CODEC_DAG_CBOR:
        raise DAGCBORError(f"record link {record_cid} is not a dag-cbor CID")
    record_block = car.blocks.get(record_cid)
    if record_block is None:
        raise IncompleteProofError(f"CAR lacks the record block {record_cid}")
    try:
        record = dagcbor.decode(record_block)
    except CIDError as exc:
        raise DAGCBORError(f"record holds an unsupported CID link: {exc}") from None
    if not isinstance(record, dict):
        raise DAGCBORError("record is not a map")
    return ProvenRecord(
        did=did,
        collection=collection,
        rkey=rkey,
        commit=commit,
        record_cid=record_cid,
        record=record,
    )


def verify_record_proof(
    car_bytes: bytes,
    did_document: bytes | str | Mapping[str, Any] | DIDDocument,
    uri: str,
    expected_digest: str,
    *,
    did: str | None = None,
    limits: CARLimits = DEFAULT_CAR_LIMITS,
    allow_localhost: bool = False,
) -> VerifiedRecord:
    """Prove that the DID of ``uri`` signed an ``io.atcr.manifest`` record for ``expected_digest``.

    Args:
        car_bytes: the ``com.atproto.sync.getRecord`` CAR.
        did_document: the DID document (JSON bytes/text/object, or a parsed :class:`DIDDocument`).
        uri: ``at://<did>/io.atcr.manifest/<rkey>``.
        expected_digest: the manifest digest being certified, ``sha256:<64 hex>``.
        did: when given, must equal the DID of ``uri`` (the caller's claimed identity).
        limits: CAR limits.
        allow_localhost: accept ``did:web:localhost[%3A<port>]`` (development only).

    Raises:
        ATURIError: ``uri`` is not a record URI or its collection is not ``io.atcr.manifest``.
        DIDSyntaxError: the DID is invalid or not did:plc / did:web.
        DIDDocumentError: the document's id differs or it has no valid ``#atproto`` key.
        RecordMismatchError: ``did`` differs from the URI's DID, the commit is for another DID,
            or the record is not an ``io.atcr.manifest`` for ``expected_digest``.
        VerificationError: see :func:`prove_record` for the remaining failures.
        MalformedInputError: see :func:`prove_record`.
    """
    uri_did, collection, rkey = parse_record_uri(uri)
    if did is not None and did != uri_did:
        raise RecordMismatchError(f"record URI is for {uri_did}, not {did}")
    validate_account_did(uri_did, allow_localhost=allow_localhost)
    if collection != MANIFEST_NSID:
        raise ATURIError(f"collection must be {MANIFEST_NSID!r}, not {collection!r}")
    validate_digest(expected_digest)
    doc = (
        did_document
        if isinstance(did_document, DIDDocument)
        else parse_did_document(did_document, uri_did)
    )
    if doc.did != uri_did:
        raise RecordMismatchError(f"DID document is for {doc.did}, not {uri_did}")
    key = doc.atproto_key()
    proven = prove_record(car_bytes, key, uri_did, collection, rkey, limits=limits)
    manifest = check_manifest_record(proven.record, expected_digest)
    return VerifiedRecord(
        did=uri_did,
        collection=collection,
        rkey=rkey,
        record_cid=proven.record_cid,
        commit_cid=proven.commit.cid,
        rev=proven.commit.rev,
        record=proven.record,
        manifest=manifest,
        signing_key=key.did_key,
    )
