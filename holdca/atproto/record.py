"""The ``io.atcr.manifest`` record: type, digest and the required fields of the ATCR lexicon.

Lexicon (ATCR ``io.atcr.manifest``; vectors/atproto/atcr): required ``repository`` (string, at most
255 characters), ``digest`` (string, at most 128; holdca requires ``sha256:`` + 64 lowercase hex),
``mediaType`` (string, at most 128), ``schemaVersion`` (integer) and ``createdAt`` (string);
optional ``holdDid`` (string), ``config``/``subject``/``layers``/``manifests``/``manifestBlob``/
``annotations`` are exposed unchanged. ``$type`` must be ``io.atcr.manifest`` (a record in the
collection with another ``$type`` is rejected).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from holdca.errors import RecordMismatchError

__all__ = [
    "MANIFEST_NSID",
    "ManifestRecord",
    "check_manifest_record",
    "checked_manifest",
    "validate_digest",
]

MANIFEST_NSID: Final = "io.atcr.manifest"
"""Collection and ``$type`` of ATCR manifest records."""

_DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")


def validate_digest(digest: object) -> str:
    """Check ``sha256:<64 lowercase hex>`` and return ``digest`` unchanged.

    Raises:
        RecordMismatchError: not a sha256 digest string in canonical form.
    """
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise RecordMismatchError(f"not a 'sha256:<64 hex>' digest: {str(digest)[:80]!r}")
    return digest


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    """The checked fields of an ``io.atcr.manifest`` record.

    Attributes:
        repository: image repository name (scoped to the DID).
        digest: the manifest digest, ``sha256:<hex>``.
        media_type: the manifest media type.
        schema_version: the OCI schema version.
        created_at: the record's ``createdAt`` string (as written; not a trusted time).
        hold_did: the ``holdDid`` field, if present.
    """

    repository: str
    digest: str
    media_type: str
    schema_version: int
    created_at: str
    hold_did: str | None


def _string(record: dict[str, Any], field: str, max_length: int) -> str:
    value = record.get(field)
    if not isinstance(value, str):
        raise RecordMismatchError(f"io.atcr.manifest record lacks a string {field!r}")
    if len(value) > max_length:
        raise RecordMismatchError(f"io.atcr.manifest {field!r} longer than {max_length}")
    return value


def check_manifest_record(record: Any, expected_digest: str) -> ManifestRecord:
    """Check a decoded record is an ``io.atcr.manifest`` for ``expected_digest``.

    Raises:
        RecordMismatchError: not a map, ``$type`` is not ``io.atcr.manifest``, a required field
            is missing or mistyped, ``expected_digest`` or the record digest is not
            ``sha256:<64 hex>``, or the digests differ.
    """
    return checked_manifest(record, validate_digest(expected_digest))


def checked_manifest(record: Any, expected_digest: str) -> ManifestRecord:
    """:func:`check_manifest_record` for an ``expected_digest`` already validated by
    :func:`validate_digest`.

    Raises:
        RecordMismatchError: as :func:`check_manifest_record`, except for ``expected_digest``.
    """
    if not isinstance(record, dict):
        raise RecordMismatchError("record is not a map")
    kind = record.get("$type")
    if kind != MANIFEST_NSID:
        raise RecordMismatchError(f"record $type is {str(kind)[:80]!r}, not {MANIFEST_NSID!r}")
    digest = _string(record, "digest", 128)
    if digest != expected_digest:  # (equal to a valid digest means valid)
        validate_digest(digest)
        raise RecordMismatchError(
            f"record digest {digest} does not match the expected {expected_digest}"
        )
    version = record.get("schemaVersion")
    if isinstance(version, bool) or not isinstance(version, int):
        raise RecordMismatchError("io.atcr.manifest record lacks an integer 'schemaVersion'")
    hold = record.get("holdDid")
    if hold is not None and not isinstance(hold, str):
        raise RecordMismatchError("io.atcr.manifest 'holdDid' must be a string")
    return ManifestRecord(
        repository=_string(record, "repository", 255),
        digest=digest,
        media_type=_string(record, "mediaType", 128),
        schema_version=version,
        created_at=_string(record, "createdAt", 64),
        hold_did=hold,
    )
