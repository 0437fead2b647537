"""ATProto verification (sans-I/O): DIDs, did:key, DID documents, DAG-CBOR, CAR, MST, commits.

The entry point for a hold is the record-proof verification; DID syntax lives in
:mod:`holdca.atproto.did`.
"""

from __future__ import annotations

from holdca.atproto.did import validate_account_did, validate_did

__all__ = ["validate_account_did", "validate_did"]
