"""Notation signatures in OCI registries: a distribution API client, push, list, cosign.

* :class:`RegistryClient`: blobs, manifests, the Bearer token challenge and Basic
  auth, plain http only when asked (``insecure=True``), size limits and a deadline.
* :func:`push_signature` / :func:`list_signatures`: a signature manifest with
  ``subject``, and the referrers tag schema index when the registry has no referrers API.
* :func:`cosign_image`: resolve an image, have the hold co-sign it, push the signature.
* :func:`parse_image_reference`, :func:`credentials_from_env`: the CLI's inputs.

Needs the ``registry`` extra (httpx). Every failure is a
:class:`~holdca.errors.RegistryError`.
"""

from __future__ import annotations

from holdca.registry.client import RegistryClient, parse_challenge
from holdca.registry.cosign import CosignedImage, cosign_image, resolve_image
from holdca.registry.reference import (
    ImageReference,
    RegistryCredentials,
    credentials_from_env,
    parse_image_reference,
)
from holdca.registry.signatures import (
    ENVELOPE_MEDIA_TYPES,
    PushedSignature,
    ReferrersForm,
    list_signatures,
    push_signature,
)

__all__ = [
    "ENVELOPE_MEDIA_TYPES",
    "CosignedImage",
    "ImageReference",
    "PushedSignature",
    "ReferrersForm",
    "RegistryClient",
    "RegistryCredentials",
    "cosign_image",
    "credentials_from_env",
    "list_signatures",
    "parse_challenge",
    "parse_image_reference",
    "push_signature",
    "resolve_image",
]
