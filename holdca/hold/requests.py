"""What a co-sign is asked and answers: :class:`CosignRequest`, :class:`CosignResponse`,
and the signed annotations every holdca signature carries."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca.atproto.verify import VerifiedRecord
from holdca.hold.ledger import IssuanceRecord
from holdca.hold.translog import LogReceipt
from holdca.notation import (
    Descriptor,
)
from holdca.notation.formats import SignatureFormat

__all__ = [
    "ANNOTATION_RECORD",
    "ANNOTATION_REPOSITORY",
    "MANIFEST_TYPES",
    "CosignRequest",
    "CosignResponse",
]

ANNOTATION_REPOSITORY = "io.atcr.repository"
"""Signed annotation (notation user metadata): the repository the user's record names.

A relying party can require it: ``notation verify -m io.atcr.repository=alice/app``."""

ANNOTATION_RECORD = "io.atcr.record"
"""Signed annotation (notation user metadata): the ``at://`` URI of the manifest record."""

MANIFEST_TYPES: frozenset[str] = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
"""The media types of what a hold co-signs: OCI and docker image manifests and indexes."""


@dataclass(frozen=True)
class CosignRequest:
    """A coSignManifest / reSignManifest request, already decoded from the transport.

    Nothing in a request decides which key is checked: the hold resolves ``did`` and
    fetches the proof itself (see :class:`~holdca.hold.gate.TrustGate`).

    Attributes:
        did: the user DID the certificate is for.
        descriptor: the image manifest (mediaType, digest, size) to sign.
        record_uri: ``at://<did>/io.atcr.manifest/<rkey>`` of the manifest record.
        proof_hint: optionally, the caller's ``com.atproto.sync.getRecord`` CAR; it saves
            the hold a fetch only if it verifies and is current (the gate checks both).
        caller: the identity the embedder authenticated, or ``None``.
        validity: requested leaf lifetime (default: the hold's).
        signature_format: JWS or COSE envelope (default: the hold's).
    """

    did: str
    descriptor: Descriptor
    record_uri: str
    proof_hint: bytes | None = field(default=None, repr=False)
    caller: str | None = None
    validity: timedelta | None = None
    signature_format: SignatureFormat | None = None


@dataclass(frozen=True)
class CosignResponse:
    """What a cosign returns: everything a client attaches to the image.

    Attributes:
        envelope: the Notation envelope, JWS (``application/jose+json``) or COSE
            (``application/cose``) as ``signature_format`` says.
        signature_manifest: the OCI signature manifest whose subject is the image.
        chain: leaf first, then CA certificates up to the self-signed root.
        record: the ledger entry (serial, validity, ATProto commit).
        verified: the verified ATProto record.
        signature_format: the envelope's format (its media type is the manifest layer's).
        log: with a transparency log, the entry's index, the signed checkpoint and the
            inclusion proof (the manifest then carries ``io.atcr.log.*`` annotations).
    """

    envelope: bytes = field(repr=False)
    signature_manifest: bytes = field(repr=False)
    chain: tuple[x509.Certificate, ...] = field(repr=False)
    record: IssuanceRecord
    verified: VerifiedRecord | None = field(repr=False, default=None)
    signature_format: SignatureFormat = SignatureFormat.JWS
    log: LogReceipt | None = None

    @property
    def certificate(self) -> x509.Certificate:
        """The issued leaf certificate."""
        return self.chain[0]

    @property
    def serial(self) -> int:
        """The leaf's serial number."""
        return self.record.serial

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (XRPC response body): PEM certificates, base64 blobs, and with
        a transparency log ``logIndex``, ``logCheckpoint``, ``logInclusionProof``."""
        body = {
            "envelope": base64.b64encode(self.envelope).decode("ascii"),
            "signatureManifest": base64.b64encode(self.signature_manifest).decode("ascii"),
            "certificate": self.chain[0].public_bytes(serialization.Encoding.PEM).decode(),
            "caCertificates": [
                c.public_bytes(serialization.Encoding.PEM).decode() for c in self.chain[1:]
            ],
            "serial": format(self.record.serial, "x"),
            "notBefore": self.record.not_before.isoformat(),
            "notAfter": self.record.not_after.isoformat(),
            "commitCid": self.record.commit_cid,
            "rev": self.record.rev,
            "repository": self.record.repository,
            "recordUri": self.record.record_uri,
            "proofSource": self.record.proof_source,
            "signatureFormat": self.signature_format.value,
        }
        if self.log is not None:
            body.update(self.log.to_json())
        return body
