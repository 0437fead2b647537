"""Verify a ``com.atproto.sync.getRecord`` proof: the DID signed the record, and it matches.

The pipeline, every step raising a typed :mod:`holdca.errors` error (steps 3-6 follow the
atproto TypeScript reference, ``packages/repo/src/sync/consumer.ts`` ``verifyProofs``):

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
from holdca.atproto.car import DEFAULT_CAR_LIMITS, CARLimits, read_car_raw
from holdca.atproto.cid import CID, CODEC_DAG_CBOR
from holdca.atproto.commit import Commit, commit_fields
from holdca.atproto.did import validate_account_did
from holdca.atproto.diddoc import DIDDocument, document_signing_key, parse_did_document
from holdca.atproto.didkey import PublicKey
from holdca.atproto.mst import lookup_raw
from holdca.atproto.record import (
    MANIFEST_NSID,
    ManifestRecord,
    checked_manifest,
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
    path = mst_key(collection, rkey)
    root, fields, record_cid, record = _prove(car_bytes, key, did, path, limits)
    commit_did, data, rev, prev, sig, unsigned = fields
    commit = Commit(
        cid=CID(root), did=commit_did, data=data, rev=rev, prev=prev, sig=sig, unsigned=unsigned
    )
    return ProvenRecord(
        did=did,
        collection=collection,
        rkey=rkey,
        commit=commit,
        record_cid=CID(record_cid),
        record=record,
    )


def _prove(
    car_bytes: bytes, key: PublicKey, did: str, path: bytes, limits: CARLimits
) -> tuple[bytes, tuple[str, CID, str, CID | None, bytes, bytes], bytes, dict[str, Any]]:
    """The checks of :func:`prove_record` for the MST key ``path``, without wrapper objects.

    Returns the commit's binary CID, its fields (see
    :func:`~holdca.atproto.commit.commit_fields`), the record's binary CID and the record.
    """
    roots, blocks = read_car_raw(car_bytes, limits)
    root = roots[0]
    block = blocks.get(root)
    if block is None:
        raise IncompleteProofError(f"CAR lacks its root block {CID(root)} (the commit)")
    fields = commit_fields(block)
    commit_did, data, rev, _, sig, unsigned = fields
    if commit_did != did:
        raise RecordMismatchError(
            f"commit is for {commit_did[:100]!r}, not the requested DID {did!r}"
        )
    key.verify(unsigned, sig)
    record_cid = lookup_raw(blocks.get, data.raw, path)
    if record_cid is None:
        raise RecordAbsentError(f"repo of {did} at rev {rev} has no record {path.decode()}")
    if record_cid[1] != CODEC_DAG_CBOR:  # pragma: no cover - lookup returns dag-cbor links
        raise DAGCBORError(f"record link {CID(record_cid)} is not a dag-cbor CID")
    record_block = blocks.get(record_cid)
    if record_block is None:
        raise IncompleteProofError(f"CAR lacks the record block {CID(record_cid)}")
    try:
        record = dagcbor.decode(record_block)
    except CIDError as exc:
        raise DAGCBORError(f"record holds an unsupported CID link: {exc}") from None
    if type(record) is not dict:
        raise DAGCBORError("record is not a map")
    return root, fields, record_cid, record


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
            The signing key of JSON bytes/text is cached per (document, DID): see
            :func:`~holdca.atproto.diddoc.document_signing_key`.
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
    if isinstance(did_document, DIDDocument):
        if did_document.did != uri_did:
            raise RecordMismatchError(f"DID document is for {did_document.did}, not {uri_did}")
        key = did_document.atproto_key()
    elif type(did_document) is bytes or type(did_document) is str:
        key = document_signing_key(did_document, uri_did)
    else:
        key = parse_did_document(did_document, uri_did).atproto_key()
    # parse_record_uri checked the NSID and record key, so this is mst_key(collection, rkey)
    # (at most 16 + 1 + 512 bytes)
    path = f"{collection}/{rkey}".encode()
    root, (_, _, rev, _, _, _), record_cid, record = _prove(car_bytes, key, uri_did, path, limits)
    manifest = checked_manifest(record, expected_digest)
    return VerifiedRecord(
        did=uri_did,
        collection=collection,
        rkey=rkey,
        record_cid=CID(record_cid),
        commit_cid=CID(root),
        rev=rev,
        record=record,
        manifest=manifest,
        signing_key=key.did_key,
    )
