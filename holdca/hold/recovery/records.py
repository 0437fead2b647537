"""The user's side of a re-signature: the image's descriptor, the record, refusals.

* :func:`descriptor_of`: the image's descriptor, from a
  :data:`~holdca.hold.recovery.sources.DescriptorSource` or else from the user's record;
* :func:`read_record`: the user's record, fetched from their PDS and verified;
* :func:`is_refusal`: whether a failure means the image must not be re-signed (the record
  no longer verifies) rather than a transient one worth retrying; :func:`why` says it in
  one line for the ledger and the report.
"""

from __future__ import annotations

from holdca.atproto.syntax import parse_record_uri
from holdca.atproto.verify import VerifiedRecord, verify_record_proof
from holdca.errors import (
    AddressRefusedError,
    HoldCAError,
    IssuancePolicyError,
    MalformedInputError,
    RateLimitError,
    RecordMismatchError,
    ResolutionError,
    SignatureInvalidError,
    VerificationError,
)
from holdca.hold.ledger import IssuanceRecord
from holdca.hold.recovery.sources import DescriptorSource
from holdca.hold.service import HoldCA
from holdca.notation import Descriptor

__all__ = ["descriptor_of", "is_refusal", "read_record", "why"]


def descriptor_of(
    ca: HoldCA, record: IssuanceRecord, descriptors: DescriptorSource | None
) -> tuple[Descriptor, VerifiedRecord | None]:
    """The image's descriptor, and the verified record if it had to be read for it.

    Raises:
        RecordMismatchError: an operator issuance (no record), a descriptor of another
            digest, or a record that states no manifest size.
        HoldCAError: reading the record failed (see :func:`read_record`).
    """
    if record.record_uri is None:
        raise RecordMismatchError(
            "an operator issuance without an ATProto record: re-issue it by hand"
        )
    if descriptors is not None:
        found = descriptors(record)
        if found is not None:
            if found.digest != record.manifest_digest:
                raise RecordMismatchError("the descriptor source gave another digest")
            return found, None
    verified = read_record(ca, record)
    blob = verified.record.get("manifestBlob")
    size = blob.get("size") if isinstance(blob, dict) else None
    if isinstance(size, bool) or not isinstance(size, int):
        raise RecordMismatchError(
            "the record states no manifest size (manifestBlob): give the image "
            "descriptors (holdca recover --descriptors FILE)"
        )
    return Descriptor(verified.manifest.media_type, record.manifest_digest, size), verified


def read_record(ca: HoldCA, record: IssuanceRecord) -> VerifiedRecord:
    """The user's record, fetched from their PDS and verified (a fresh identity once
    when the cached one's key does not verify it).

    ``ca`` must have a trust gate (a resolver), and ``record`` a record URI.
    """
    gate = ca.gate
    assert gate is not None
    assert record.record_uri is not None
    did, collection, rkey = parse_record_uri(record.record_uri)
    if did != record.did:
        raise RecordMismatchError(f"record URI is for {did}, not {record.did}")
    for fresh in (False, True):
        identity = gate.resolver.resolve(did, fresh=fresh)
        car = gate.resolver.get_record(identity, collection, rkey)
        try:
            return verify_record_proof(
                car, identity.document, record.record_uri, record.manifest_digest, did=did
            )
        except SignatureInvalidError:
            if fresh:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def is_refusal(exc: HoldCAError) -> bool:
    """Whether ``exc`` says the image must not be re-signed (the record no longer verifies,
    the DID is denied or not allowed), as opposed to a failure worth retrying (network,
    ledger, key store, rate limit, the hold's own state)."""
    if isinstance(exc, RateLimitError):
        return False
    if isinstance(exc, ResolutionError):
        return isinstance(exc, AddressRefusedError)
    return isinstance(exc, VerificationError | MalformedInputError | IssuancePolicyError)


def why(exc: BaseException) -> str:
    """``exc`` as ``Type: message``, at most 300 characters."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."
