"""DID documents: the ``#atproto`` signing key and the ``#atproto_pds`` endpoint.

Rules (atproto spec did "DID Documents"):

* the document is a JSON object (at most 64 KiB) whose ``id`` equals the resolved DID exactly;
* signing key: the first ``verificationMethod`` entry whose ``id`` is ``#atproto`` or
  ``<did>#atproto`` AND whose ``controller`` equals the DID; ``type`` ``Multikey`` (33-byte
  compressed K-256 / P-256) or a legacy type (65-byte uncompressed point). Entries with another id
  or controller are skipped; if the selected entry is invalid, the document has no usable key
  (an error, never a fall-through to a later entry);
* PDS: the first ``service`` entry with id ``#atproto_pds`` / ``<did>#atproto_pds`` and type
  ``AtprotoPersonalDataServer`` whose ``serviceEndpoint`` is an ``http(s)`` URL string; an entry
  that fails these checks is skipped.

:func:`document_signing_key` is the cached shortcut to the signing key of a JSON document.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from holdca._json import strict_json
from holdca.atproto.did import validate_did
from holdca.atproto.didkey import PublicKey, parse_legacy_multibase, parse_multikey
from holdca.errors import DIDDocumentError, DIDSyntaxError

__all__ = [
    "MAX_DID_DOCUMENT_SIZE",
    "DIDDocument",
    "document_signing_key",
    "parse_did_document",
]

MAX_DID_DOCUMENT_SIZE: Final = 64 * 1024
"""Largest DID document accepted, in bytes."""
_MAX_CACHED_DOCUMENT: Final = 8 * 1024


@dataclass(frozen=True, slots=True)
class DIDDocument:
    """A parsed DID document whose ``id`` matched the DID it was resolved for.

    Attributes:
        did: the document's ``id``.
        verification_methods: the raw ``verificationMethod`` entries (JSON objects).
        services: the raw ``service`` entries (JSON objects).
        also_known_as: ``alsoKnownAs`` strings (unverified claims).
    """

    did: str
    verification_methods: tuple[Mapping[str, Any], ...]
    services: tuple[Mapping[str, Any], ...]
    also_known_as: tuple[str, ...]

    def atproto_key(self) -> PublicKey:
        """The ``#atproto`` signing key.

        Raises:
            DIDDocumentError: no ``#atproto`` method controlled by the DID, or the selected
                method has an unsupported type, an unsupported codec or an invalid key.
        """
        ids = ("#atproto", self.did + "#atproto")
        for method in self.verification_methods:
            if method.get("id") not in ids or method.get("controller") != self.did:
                continue
            kind = method.get("type")
            value = method.get("publicKeyMultibase")
            if not isinstance(value, str):
                raise DIDDocumentError("#atproto verification method has no publicKeyMultibase")
            try:
                if kind == "Multikey":
                    return parse_multikey(value)
                if isinstance(kind, str):
                    return parse_legacy_multibase(kind, value)
            except DIDSyntaxError as exc:
                raise DIDDocumentError(f"#atproto key is invalid: {exc}") from None
            raise DIDDocumentError("#atproto verification method has no type")
        raise DIDDocumentError(f"DID document of {self.did} has no #atproto signing key")

    def pds_endpoint(self) -> str | None:
        """The ``#atproto_pds`` endpoint URL, or None when there is no valid one."""
        ids = ("#atproto_pds", self.did + "#atproto_pds")
        for service in self.services:
            if service.get("id") not in ids or service.get("type") != "AtprotoPersonalDataServer":
                continue
            endpoint = service.get("serviceEndpoint")
            if isinstance(endpoint, str) and _is_http_url(endpoint):
                return endpoint
        return None


def _is_http_url(url: str) -> bool:
    if len(url) > 2048 or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _objects(doc: Mapping[str, Any], field: str) -> tuple[Mapping[str, Any], ...]:
    value = doc.get(field)
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise DIDDocumentError(f"DID document {field} must be an array")
    return tuple(item for item in value if isinstance(item, Mapping))


def parse_did_document(data: bytes | str | Mapping[str, Any], did: str) -> DIDDocument:
    """Parse a DID document (JSON bytes/text or an already-parsed object) resolved for ``did``.

    Raises:
        DIDSyntaxError: ``did`` is not a valid DID.
        DIDDocumentError: not a JSON object, too large, ``id`` differs from ``did``, or
            ``verificationMethod`` / ``service`` / ``alsoKnownAs`` are not arrays.
    """
    validate_did(did)
    if isinstance(data, bytes | bytearray | str):
        if len(data) > MAX_DID_DOCUMENT_SIZE:
            raise DIDDocumentError(f"DID document larger than {MAX_DID_DOCUMENT_SIZE} bytes")
        doc = strict_json(data, "DID document", DIDDocumentError)  # no duplicate keys
    else:
        doc = data
    if not isinstance(doc, Mapping):
        raise DIDDocumentError("DID document must be a JSON object")
    doc_id = doc.get("id")
    if doc_id != did:
        shown = repr(doc_id)[:80]
        raise DIDDocumentError(f"DID document id {shown} does not match the DID {did}")
    aka = doc.get("alsoKnownAs")
    if aka is None:
        aka = []
    if isinstance(aka, str) or not isinstance(aka, Sequence):
        raise DIDDocumentError("DID document alsoKnownAs must be an array")
    return DIDDocument(
        did=did,
        verification_methods=_objects(doc, "verificationMethod"),
        services=_objects(doc, "service"),
        also_known_as=tuple(a for a in aka if isinstance(a, str)),
    )


def document_signing_key(data: bytes | str, did: str) -> PublicKey:
    """``parse_did_document(data, did).atproto_key()``, cached per (document, DID).

    A hold sees the same user, hence the same document, many times; the result is a pure
    function of the two arguments and immutable, so the last 1024 are kept for documents of at
    most 8192 bytes or characters (larger documents, which real DIDs do not have, are parsed
    every time, so the cache stays small). Failures are not cached: they raise again every time.

    Raises:
        DIDSyntaxError: ``did`` is not a valid DID.
        DIDDocumentError: as :func:`parse_did_document` and :meth:`DIDDocument.atproto_key`.
    """
    if (
        (type(data) is not bytes and type(data) is not str)
        or type(did) is not str
        or len(data) > _MAX_CACHED_DOCUMENT
    ):
        return parse_did_document(data, did).atproto_key()
    return _document_signing_key(data, did)


@functools.lru_cache(maxsize=1024)
def _document_signing_key(data: bytes | str, did: str) -> PublicKey:
    return parse_did_document(data, did).atproto_key()
