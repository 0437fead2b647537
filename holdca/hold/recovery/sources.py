"""What a recovery plugs in: where image descriptors come from, where new signatures go.

* :data:`DescriptorSource` (and :func:`descriptors_from_json`): an image's descriptor
  (mediaType, digest, size) for a re-signature, instead of reading it from the user's
  record;
* :class:`SignaturePublisher`: pushes each :class:`RecoveredSignature` to the registry;
  without one (holdca has no registry client yet, issue 14) the report says
  :data:`NO_REGISTRY_CLIENT`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from holdca.errors import MalformedInputError
from holdca.hold.ledger import IssuanceRecord
from holdca.notation import Descriptor

__all__ = [
    "NO_REGISTRY_CLIENT",
    "DescriptorSource",
    "RecoveredSignature",
    "SignaturePublisher",
    "descriptors_from_json",
]

NO_REGISTRY_CLIENT: Final = (
    "not pushed: holdca has no registry client yet (issue 14); each new signature is in "
    "signatures/<old serial>/ (envelope.jws, signature-manifest.json) for the image named "
    "in item.json: push the signature manifest and its blobs to the image's repository"
)
"""What the report says about pushing when no :class:`SignaturePublisher` was given."""


@dataclass(frozen=True)
class RecoveredSignature:
    """A new signature made by a recovery, as a :class:`SignaturePublisher` receives it.

    Attributes:
        did: the user DID.
        repository: the image repository the user's record names.
        record_uri: the ``at://`` URI of the record.
        image: the image manifest's descriptor (the signature manifest's subject).
        envelope: the Notation JWS envelope.
        signature_manifest: the OCI signature manifest (subject: ``image``).
        serial: the new certificate's serial.
        old_serials: the revoked certificates it replaces.
    """

    did: str
    repository: str | None
    record_uri: str
    image: Descriptor
    envelope: bytes = field(repr=False)
    signature_manifest: bytes = field(repr=False)
    serial: int
    old_serials: tuple[int, ...]


@runtime_checkable
class SignaturePublisher(Protocol):
    """Pushes a recovered signature to where verifiers find it (the registry, issue 14)."""

    def publish(self, signature: RecoveredSignature) -> str:
        """Push ``signature``; returns where it went (e.g. ``registry/repo@sha256:...``).

        Raises:
            HoldCAError or OSError: the push failed (the signature stays in ``out_dir``).
        """
        ...


DescriptorSource = Callable[[IssuanceRecord], Descriptor | None]
"""Where a recovery learns an image's descriptor: the old issuance in, the image
manifest's descriptor (or ``None``: not known, read the record) out."""


def descriptors_from_json(data: bytes | str) -> DescriptorSource:
    """A :data:`DescriptorSource` from JSON: a list of OCI descriptors, an object mapping
    digests to descriptors, or JSON lines of descriptors (e.g. from the registry).

    Raises:
        MalformedInputError: not JSON of that shape, or an invalid descriptor.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        loaded: Any = json.loads(text)
    except ValueError:
        try:
            loaded = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise MalformedInputError(f"descriptors: not JSON or JSON lines ({exc})") from None
    entries = list(loaded.values()) if isinstance(loaded, dict) else loaded
    if not isinstance(entries, list):
        raise MalformedInputError("descriptors: expected a list or an object of descriptors")
    table = {}
    for i, entry in enumerate(entries):
        descriptor = Descriptor.from_json(entry, f"descriptor {i}")
        table[descriptor.digest] = descriptor

    def lookup(record: IssuanceRecord) -> Descriptor | None:
        return table.get(record.manifest_digest)

    return lookup
