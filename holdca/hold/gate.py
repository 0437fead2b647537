"""The trust gate: what must be true before the hold signs anything for a DID.

A holdca certificate says "at time T this hold verified that the controller of <DID>
signed a record binding <manifest digest> in <repository> for this hold". The
:class:`TrustGate` establishes exactly that, with every input to the check obtained by
the hold itself through its :class:`~holdca.atproto.identity.Resolver`:

1. **which key the DID has**: ``resolver.resolve(did, fresh=True)`` (a verified PLC
   operation log, or the did:web host), anew for every issuance unless the operator lets
   the gate reuse the resolver's cache (``reuse_identities``: then a key rotation takes
   effect within the cache's TTL); never a document the caller sent;
2. **what the DID signed**: the ``getRecord`` proof fetched from the DID's own PDS. A
   caller may send a proof as a *hint* to save the round trip; it is verified like a
   fetched one and accepted only if it is at the repo's current commit
   (``getLatestCommit``), or, for co-signing only and when the operator allows it,
   at most ``max_age`` old (the commit ``rev`` is a TID, so it carries its time).
   A hint that is merely stale is replaced by a live fetch; a hint that does not verify
   is refused;
3. **one re-resolution** when the commit signature fails against a cached identity (the
   key may just have rotated); a proof by a key the DID no longer has is refused;
4. **that the record is for this hold and this image**: ``holdDid`` is this hold,
   ``digest`` and ``mediaType`` are the descriptor's, and the size the record states
   (its ``manifestBlob``) is the descriptor's.

With an ``observer`` (the hold's :class:`~holdca.hold.watch.DIDWatch`), every *fresh*
resolution is reported to it before the proof is checked: ``seen(identity)`` (a key
change, a PDS move or a reactivation is recorded and acted on by the hold's policy) or
``gone(did, error)`` when the DID is deactivated (then the DIDDeactivatedError is raised
as before). A LedgerError from ``seen`` is raised and refuses the issuance: nothing is
issued while the hold's knowledge of the DID could not be recorded. One from ``gone`` is
logged (the issuance is refused by the deactivation anyway).

For re-signing (:meth:`TrustGate.verify` with ``mode="resign"``) the record must be
present at the current commit: no age allowance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from holdca.atproto.identity import Identity, Resolver, rev_time
from holdca.atproto.record import MANIFEST_NSID
from holdca.atproto.syntax import parse_record_uri
from holdca.atproto.verify import VerifiedRecord, verify_record_proof
from holdca.errors import (
    ATURIError,
    RecordMismatchError,
    SignatureInvalidError,
)
from holdca.hold.watch import DIDObserver, resolve_observed
from holdca.notation import Descriptor

__all__ = ["DEFAULT_CLOCK_SKEW", "GateResult", "TrustGate", "check_binding"]

DEFAULT_CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far in the future a commit ``rev`` may be before the age allowance refuses it."""


@dataclass(frozen=True)
class GateResult:
    """A record the DID provably signed, matching the request, and how it was proven.

    Attributes:
        identity: the DID's identity the proof verified against.
        verified: the verified record.
        source: ``live`` (fetched by the hold), ``hint`` (the caller's proof, at the
            current commit), ``recent`` (the caller's proof, within the age allowance)
            or ``vouched`` (files an operator supplied, see :mod:`holdca.cli`).
    """

    identity: Identity = field(repr=False)
    verified: VerifiedRecord = field(repr=False)
    source: str


def check_binding(verified: VerifiedRecord, descriptor: Descriptor, hold_did: str) -> None:
    """Check that the record binds the descriptor, for this hold.

    The digest was already compared by :func:`~holdca.atproto.verify_record_proof`.

    Raises:
        RecordMismatchError: ``holdDid`` is absent or another hold; the record's
            ``mediaType`` is not the descriptor's; the ``manifestBlob`` size the record
            states is not the descriptor's size.
    """
    manifest = verified.manifest
    if manifest.hold_did is None:
        raise RecordMismatchError(
            f"the record names no holdDid; it must name this hold ({hold_did})"
        )
    if manifest.hold_did != hold_did:
        raise RecordMismatchError(
            f"the record is for hold {manifest.hold_did[:100]!r}, not this hold {hold_did}"
        )
    if manifest.media_type != descriptor.media_type:
        raise RecordMismatchError(
            f"the record's mediaType {manifest.media_type[:100]!r} is not the "
            f"descriptor's {descriptor.media_type!r}"
        )
    blob: Any = verified.record.get("manifestBlob")
    if isinstance(blob, dict) and "size" in blob:
        size = blob["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size != descriptor.size:
            raise RecordMismatchError(
                f"the record's manifestBlob size {str(size)[:30]} is not the "
                f"descriptor's size {descriptor.size}"
            )


class TrustGate:
    """Verifies requests against the network the hold controls (see the module docstring).

    Thread-safe if the resolver is. Time is always the caller's ``now``.
    """

    def __init__(
        self,
        resolver: Resolver,
        *,
        hold_did: str,
        max_age: timedelta = timedelta(0),
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
        reuse_identities: bool = False,
        observer: DIDObserver | None = None,
    ) -> None:
        """Gate proofs through ``resolver`` for the hold ``hold_did``.

        Args:
            resolver: where identities and proofs come from.
            hold_did: the DID records must name as ``holdDid``.
            max_age: how old a caller's proof may be and still be accepted without
                contacting the PDS (co-signing only; ``0``, the default, means never:
                the proof must be at the current commit).
            clock_skew: how far in the future a ``rev`` may be under ``max_age``.
            reuse_identities: take the DID's identity from the resolver's cache (faster;
                a rotated key is then seen only after the cache's TTL, or when a
                signature fails) instead of resolving it anew for every issuance.
            observer: told of every fresh resolution (see the module docstring).

        Raises:
            ValueError: a negative ``max_age`` or ``clock_skew``.
        """
        if max_age < timedelta(0) or clock_skew < timedelta(0):
            raise ValueError("max_age and clock_skew must not be negative")
        self.resolver = resolver
        self.hold_did = hold_did
        self.max_age = max_age
        self.clock_skew = clock_skew
        self.reuse_identities = reuse_identities
        self.observer = observer

    def verify(
        self,
        did: str,
        record_uri: str,
        descriptor: Descriptor,
        *,
        now: datetime,
        hint: bytes | None = None,
        mode: Literal["cosign", "resign"] = "cosign",
    ) -> GateResult:
        """Prove that ``did`` signed the record ``record_uri`` for ``descriptor``, now.

        Raises:
            ATURIError: ``record_uri`` is not an ``io.atcr.manifest`` record URI.
            RecordMismatchError: the URI, the commit or the record is for another DID,
                digest, media type, size or hold.
            DIDSyntaxError, ResolutionError, DIDDocumentError, DIDDeactivatedError,
            PLCLogError: resolving the DID failed (see
                :meth:`~holdca.atproto.identity.Resolver.resolve`).
            LedgerError: the observer could not record what a fresh resolution showed.
            SignatureInvalidError: the commit is not signed by the DID's current key.
            RecordAbsentError: the record is not in the repo (deleted).
            MalformedInputError, VerificationError: the proof does not verify.
        """
        uri_did, collection, rkey = parse_record_uri(record_uri)
        if uri_did != did:
            raise RecordMismatchError(f"record URI is for {uri_did}, not {did}")
        if collection != MANIFEST_NSID:
            raise ATURIError(f"collection must be {MANIFEST_NSID!r}, not {collection!r}")
        identity = self._resolve(did, fresh=not self.reuse_identities, now=now)
        if hint is not None:
            identity, verified = self._verify(hint, identity, record_uri, descriptor, now)
            if mode == "cosign" and self._recent(verified.rev, now):
                return self._done(identity, verified, descriptor, "recent")
            latest = self.resolver.get_latest_commit(identity)
            if latest.cid == str(verified.commit_cid):
                return self._done(identity, verified, descriptor, "hint")
        car = self.resolver.get_record(identity, collection, rkey)
        try:
            verified = self._check(car, identity, record_uri, descriptor)
        except SignatureInvalidError:
            if not self.reuse_identities:
                raise  # the identity is already fresh
            fresh = self._resolve(did, fresh=True, now=now)
            if fresh.same_keys(identity):
                raise
            identity = fresh  # rotated key (or moved PDS): fetch and verify once more
            car = self.resolver.get_record(identity, collection, rkey)
            verified = self._check(car, identity, record_uri, descriptor)
        source = "vouched" if identity.source == "vouched" else "live"
        return self._done(identity, verified, descriptor, source)

    def _resolve(self, did: str, *, fresh: bool, now: datetime) -> Identity:
        """Resolve ``did``; report a fresh resolution (or a deactivation) to the observer."""
        if not fresh:
            return self.resolver.resolve(did)
        return resolve_observed(self.resolver, did, self.observer, now=now)

    def _check(
        self, car: bytes, identity: Identity, record_uri: str, descriptor: Descriptor
    ) -> VerifiedRecord:
        return verify_record_proof(
            car, identity.document, record_uri, descriptor.digest, did=identity.did
        )

    def _verify(
        self,
        car: bytes,
        identity: Identity,
        record_uri: str,
        descriptor: Descriptor,
        now: datetime,
    ) -> tuple[Identity, VerifiedRecord]:
        """Verify ``car``; on a bad commit signature re-resolve once and try again."""
        try:
            return identity, self._check(car, identity, record_uri, descriptor)
        except SignatureInvalidError:
            if not self.reuse_identities:
                raise  # the identity is already fresh
            fresh = self._resolve(identity.did, fresh=True, now=now)
            if fresh.same_keys(identity):
                raise
            return fresh, self._check(car, fresh, record_uri, descriptor)

    def _recent(self, rev: str, now: datetime) -> bool:
        if self.max_age <= timedelta(0):
            return False
        age = now - rev_time(rev)
        return -self.clock_skew <= age <= self.max_age

    def _done(
        self, identity: Identity, verified: VerifiedRecord, descriptor: Descriptor, source: str
    ) -> GateResult:
        check_binding(verified, descriptor, self.hold_did)
        return GateResult(identity, verified, source)

    def __repr__(self) -> str:
        return f"<TrustGate {self.hold_did} max_age={self.max_age}>"
