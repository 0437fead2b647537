"""A resolved ATProto identity: the DID's signing key and PDS, as the hold itself found them.

This is what a :class:`~holdca.atproto.resolve.Resolver` returns and what the trust gate
checks proofs against. It is built from a DID document only after the document was
obtained by the hold (the PLC operation log it verified, the did:web host it fetched, or
files an operator vouched for): a DID document sent by a caller is never the source of
an :class:`Identity`.

Sans-I/O: nothing here fetches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import urlsplit

from holdca.atproto.car import read_car_raw
from holdca.atproto.cid import CID
from holdca.atproto.commit import commit_fields
from holdca.atproto.diddoc import DIDDocument, parse_did_document
from holdca.atproto.didkey import PublicKey
from holdca.atproto.syntax import tid_timestamp_us, validate_tid
from holdca.errors import (
    ATURIError,
    CIDError,
    IncompleteProofError,
    MalformedInputError,
    ResolutionError,
)

__all__ = ["SOURCES", "Identity", "LatestCommit", "Resolver", "VouchedResolver", "rev_time"]

SOURCES: Final = frozenset({"plc", "web", "vouched", "test"})
"""Where an identity came from: a verified PLC operation log, a did:web host, files an
operator vouched for, or a test network."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Identity:
    """The key and PDS of a DID, resolved by the hold.

    Attributes:
        did: the DID.
        signing_key: the ``#atproto`` key (K-256 or P-256).
        pds_endpoint: the ``#atproto_pds`` endpoint as the document states it, or ``None``;
            fetchers keep only its scheme, host and port.
        document: the parsed DID document.
        source: one of :data:`SOURCES`.
    """

    did: str
    signing_key: PublicKey
    pds_endpoint: str | None
    document: DIDDocument = field(repr=False)
    source: str

    @classmethod
    def from_document(
        cls, document: bytes | str | Mapping[str, Any], did: str, *, source: str
    ) -> Identity:
        """The identity a DID document states for ``did``.

        Raises:
            ValueError: ``source`` is not one of :data:`SOURCES`.
            DIDSyntaxError: ``did`` is not a DID.
            DIDDocumentError: the document's id is not ``did``, or it has no valid
                ``#atproto`` key.
        """
        if source not in SOURCES:
            raise ValueError(f"unknown identity source {source!r}")
        doc = parse_did_document(document, did)
        return cls(did, doc.atproto_key(), doc.pds_endpoint(), doc, source)

    @property
    def pds_host(self) -> str | None:
        """The PDS endpoint reduced to ``scheme://host[:port]`` (lowercase), or ``None``."""
        if self.pds_endpoint is None:
            return None
        parts = urlsplit(self.pds_endpoint)
        try:
            port = parts.port
        except ValueError:
            return None
        if not parts.hostname or parts.scheme not in ("http", "https"):
            return None
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        default = 443 if parts.scheme == "https" else 80
        suffix = "" if port in (None, default) else f":{port}"
        return f"{parts.scheme}://{host.lower()}{suffix}"

    def same_keys(self, other: Identity) -> bool:
        """Whether ``other`` names the same signing key and PDS endpoint."""
        return (
            self.signing_key.did_key == other.signing_key.did_key
            and self.pds_endpoint == other.pds_endpoint
        )


@dataclass(frozen=True, slots=True)
class LatestCommit:
    """A repo's current commit, as ``com.atproto.sync.getLatestCommit`` states it.

    Attributes:
        cid: the commit CID (base32 ``b...`` string form).
        rev: the commit revision (TID).

    Raises:
        MalformedInputError: ``cid`` is not a CID or ``rev`` not a TID.
    """

    cid: str
    rev: str

    def __post_init__(self) -> None:
        try:
            CID.decode(self.cid)
            validate_tid(self.rev)
        except (CIDError, ATURIError) as exc:
            raise MalformedInputError(f"getLatestCommit answer is malformed: {exc}") from None


def rev_time(rev: str) -> datetime:
    """The time a commit revision (a TID: microseconds since the epoch) carries.

    Raises:
        ATURIError: ``rev`` is not a TID.
    """
    return _EPOCH + timedelta(microseconds=tid_timestamp_us(rev))


@runtime_checkable
class Resolver(Protocol):
    """How the hold learns a DID's key and fetches its records: the one source of truth.

    Implementations fetch through an address policy (see :mod:`holdca.atproto.resolve`
    for the HTTP one); they never take a DID document or an endpoint from a caller.
    Every method raises a typed :class:`~holdca.errors.HoldCAError`.
    """

    def resolve(self, did: str, *, fresh: bool = False) -> Identity:
        """The identity of ``did`` (``fresh`` bypasses any cache).

        Raises:
            DIDSyntaxError: ``did`` is not a did:plc / did:web.
            ResolutionError: the document could not be fetched (AddressRefusedError when
                the address policy refused it).
            PLCLogError, PLCOperationError: a did:plc log that does not verify.
            DIDDocumentError: the document is malformed or has no ``#atproto`` key.
            DIDDeactivatedError: the DID is tombstoned or its document is gone.
        """
        ...

    def get_record(self, identity: Identity, collection: str, rkey: str) -> bytes:
        """The ``com.atproto.sync.getRecord`` CAR from the identity's own PDS.

        Raises:
            DIDDocumentError: the identity has no PDS endpoint.
            RecordAbsentError: the PDS answered ``RecordNotFound``.
            ResolutionError: the fetch failed or was refused.
        """
        ...

    def get_latest_commit(self, identity: Identity) -> LatestCommit:
        """The repo's current commit (``com.atproto.sync.getLatestCommit``).

        Raises:
            DIDDocumentError: the identity has no PDS endpoint.
            MalformedInputError: the answer is not a CID and a TID.
            ResolutionError: the fetch failed or was refused.
        """
        ...


class VouchedResolver:
    """A :class:`Resolver` over files an operator vouches for (``holdca cosign --did-doc``).

    The operator, not the network, is the source of the DID document and the proof: the
    hold checks the proof against the document exactly as it checks a fetched one, and
    records the issuance with proof source ``vouched``. The proof counts as the repo's
    current commit (there is nobody to ask). For offline operator use only; a server
    must use a resolver that fetches (:class:`holdca.atproto.resolve.HTTPResolver`).
    """

    def __init__(self, did: str, document: bytes, car: bytes) -> None:
        """Vouch for ``document`` as the DID document of ``did`` and ``car`` as its proof.

        Raises:
            DIDSyntaxError, DIDDocumentError: as :meth:`Identity.from_document`.
        """
        self._identity = Identity.from_document(document, did, source="vouched")
        self._car = car

    def resolve(self, did: str, *, fresh: bool = False) -> Identity:
        """The vouched identity (ResolutionError for any other DID)."""
        if did != self._identity.did:
            raise ResolutionError(f"no DID document was vouched for {did}")
        return self._identity

    def get_record(self, identity: Identity, collection: str, rkey: str) -> bytes:
        """The vouched CAR."""
        return self._car

    def get_latest_commit(self, identity: Identity) -> LatestCommit:
        """The vouched CAR's commit (there is no PDS to ask).

        Raises:
            CARError, CommitError, IncompleteProofError: the CAR has no readable commit.
        """
        roots, blocks = read_car_raw(self._car)
        block = blocks.get(roots[0])
        if block is None:
            raise IncompleteProofError("the vouched CAR lacks its root block (the commit)")
        return LatestCommit(str(CID(roots[0])), commit_fields(block)[2])

    def __repr__(self) -> str:
        return f"<VouchedResolver {self._identity.did}>"
