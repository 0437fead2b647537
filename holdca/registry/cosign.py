"""Co-sign an image that lives in a registry and push the signature there.

:func:`resolve_image` turns a tag or digest into the manifest's descriptor (media type,
digest, size) as the registry serves it; :func:`cosign_image` has the hold co-sign that
descriptor (the ATProto record proof is checked exactly as for any cosign) and pushes
the envelope, config and signature manifest with
:func:`~holdca.registry.signatures.push_signature`. This is the entry point for an
AppView that embeds the hold::

    from holdca.registry import RegistryClient, cosign_image

    with RegistryClient("registry.example.com", credentials=creds) as client:
        result = cosign_image(hold, "registry.example.com/alice/app@sha256:...",
                              record_uri=uri, did=did, now=datetime.now(UTC), client=client)
    print(result.signature.manifest.digest, result.signature.form)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from holdca.errors import RegistryError
from holdca.hold.service import CosignRequest, CosignResponse, HoldCA
from holdca.notation.envelope import Descriptor
from holdca.notation.formats import SignatureFormat
from holdca.registry.client import MANIFEST_ACCEPT, RegistryClient
from holdca.registry.reference import ImageReference, parse_image_reference
from holdca.registry.signatures import PushedSignature, push_signature

__all__ = ["CosignedImage", "cosign_image", "resolve_image"]

_MANIFEST_TYPES = frozenset(t.strip() for t in MANIFEST_ACCEPT.split(","))


@dataclass(frozen=True)
class CosignedImage:
    """What :func:`cosign_image` did.

    Attributes:
        image: the image reference pinned to the signed digest.
        subject: the signed manifest's descriptor.
        response: the hold's answer (envelope, chain, ledger record).
        signature: where the signature went (manifest descriptor, referrer form).
    """

    image: ImageReference
    subject: Descriptor
    response: CosignResponse
    signature: PushedSignature


def resolve_image(client: RegistryClient, image: ImageReference) -> Descriptor:
    """The descriptor of ``image``'s manifest (GET by tag or digest, digest checked).

    Raises:
        RegistryError: no such manifest, or it is not an OCI/docker manifest or index.
    """
    reply = client.get_manifest(image.repository, image.reference)
    if reply is None:
        raise RegistryError(f"{image}: no such manifest in the registry", status=404)
    media_type = reply.media_type
    if media_type not in _MANIFEST_TYPES:
        document = client.get_json(reply, f"manifest {image.reference}")
        declared = document.get("mediaType")
        media_type = declared if isinstance(declared, str) else media_type
    if media_type not in _MANIFEST_TYPES:
        raise RegistryError(f"{image}: not an image manifest or index ({media_type!r})")
    found = Descriptor.for_content(media_type, reply.body)
    if image.digest is not None and found.digest != image.digest:
        raise RegistryError(f"{image}: the registry served another manifest")
    return found


def cosign_image(
    hold: HoldCA,
    image_ref: str | ImageReference,
    *,
    record_uri: str,
    did: str,
    now: datetime,
    client: RegistryClient,
    caller: str | None = None,
    validity: timedelta | None = None,
    proof_hint: bytes | None = None,
    resign: bool = False,
    signature_format: SignatureFormat | None = None,
) -> CosignedImage:
    """Co-sign the image at ``image_ref`` for ``did`` and push the signature to it.

    ``caller`` is who the embedder authenticated (default: ``did``); ``resign`` issues a
    fresh signature for an older image (:meth:`HoldCA.resign`); ``signature_format``
    picks JWS or COSE (default: the hold's).

    Raises:
        ValueError: ``client`` is for another registry than ``image_ref``.
        MalformedInputError: ``image_ref`` is not a registry image reference.
        RegistryError: the image is not there, or the registry refused the push.
        HoldCAError: whatever :meth:`HoldCA.cosign` raises (proof, policy, rate limit...).
    """
    image = parse_image_reference(image_ref) if isinstance(image_ref, str) else image_ref
    if image.registry != client.registry:
        raise ValueError(f"client is for {client.registry}, the image is on {image.registry}")
    subject = resolve_image(client, image)
    request = CosignRequest(
        did=did,
        descriptor=subject,
        record_uri=record_uri,
        proof_hint=proof_hint,
        caller=did if caller is None else caller,
        validity=validity,
        signature_format=signature_format,
    )
    response = (hold.resign if resign else hold.cosign)(request, now=now)
    pushed = push_signature(
        client,
        image.repository,
        subject,
        response.envelope,
        media_type=response.signature_format.value,
        manifest=response.signature_manifest,
    )
    return CosignedImage(image.with_digest(subject.digest), subject, response, pushed)
