"""ATProto verification (sans-I/O): DIDs, did:key, DID documents, DAG-CBOR, CAR, MST, commits.

The entry point for a hold is :func:`verify_record_proof`: given a ``com.atproto.sync.getRecord``
CAR, the DID document, the record URI and the manifest digest, it proves that the DID signed an
``io.atcr.manifest`` record for that digest, or raises a typed :mod:`holdca.errors` error naming
what failed. :mod:`holdca.atproto.resolve` is the optional HTTP adapter (never imported here).
"""

from __future__ import annotations

from holdca.atproto.car import CARFile, CARLimits, read_car, write_car
from holdca.atproto.cid import CID
from holdca.atproto.did import validate_account_did, validate_did
from holdca.atproto.diddoc import DIDDocument, parse_did_document
from holdca.atproto.didkey import PublicKey, parse_did_key, parse_multikey
from holdca.atproto.record import MANIFEST_NSID, ManifestRecord
from holdca.atproto.verify import ProvenRecord, VerifiedRecord, prove_record, verify_record_proof

__all__ = [
    "CID",
    "MANIFEST_NSID",
    "CARFile",
    "CARLimits",
    "DIDDocument",
    "ManifestRecord",
    "ProvenRecord",
    "PublicKey",
    "VerifiedRecord",
    "parse_did_document",
    "parse_did_key",
    "parse_multikey",
    "prove_record",
    "read_car",
    "validate_account_did",
    "validate_did",
    "verify_record_proof",
    "write_car",
]
