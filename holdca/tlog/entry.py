"""Log entries: an issued certificate with the ATProto facts it rests on, or a revocation.

Encoding (version 1), deterministic: one canonical byte string per entry::

    entry  = version:u8 (0x01) || kind:u8 || field*
    field  = tag:u8 || length:u16-BE || value      (tags strictly increasing, each once)

kind 0x01, certificate: 1 certificate (DER), 2 DID, 3 record URI (``at://``), 4 commit
CID (base32 string), 5 commit rev (TID), 6 manifest digest (``sha256:<hex>``), 7 repository.
kind 0x02, revocation: 1 serial (unsigned big-endian, minimal), 2 DID, 3 reason (RFC 5280
reason name), 4 revocation time (u64-BE seconds since the Unix epoch).
Every field is present; text fields are UTF-8 without control characters, non-empty except
in a certificate *issued without an ATProto record* (an operator's ``holdca issue``): its
fields 3, 4, 5 and 7 are all empty (field 6 is empty or a digest), and the monitor reports
it as unexpected. An entry is at
most 65535 bytes (a bundle's length prefix). :func:`parse_entry` re-encodes what it parsed
and refuses anything that is not byte-for-byte the canonical form.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from cryptography import x509

from holdca.atproto.cid import CID
from holdca.atproto.did import validate_did
from holdca.atproto.syntax import parse_record_uri, validate_tid
from holdca.errors import HoldCAError, TlogError
from holdca.tlog.tiles import MAX_ENTRY_SIZE

__all__ = [
    "ENTRY_VERSION",
    "KIND_CERTIFICATE",
    "KIND_REVOCATION",
    "CertificateEntry",
    "Entry",
    "RevocationEntry",
    "encode_certificate",
    "parse_entry",
]

ENTRY_VERSION = 0x01
KIND_CERTIFICATE = 0x01
KIND_REVOCATION = 0x02

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128}")
_REPOSITORY = re.compile(r"[a-z0-9]([a-z0-9._:/-]{0,254}[a-z0-9])?")
_REASONS = frozenset(
    {
        "unspecified",
        "keyCompromise",
        "cACompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "certificateHold",
        "removeFromCRL",
        "privilegeWithdrawn",
        "aACompromise",
    }
)


def _text(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise TlogError(f"entry {what} must be non-empty text without control characters")
    return value.encode()


def _check(check: object, value: str, what: str) -> None:
    try:
        check(value)  # type: ignore[operator]
    except HoldCAError as exc:
        raise TlogError(f"entry {what} is invalid: {exc}") from exc


def encode_certificate(certificate: bytes, texts: Sequence[str]) -> bytes:
    """The version-1 certificate encoding, *without* checking the fields.

    ``texts`` are fields 2 to 7: DID, record URI, commit CID, commit rev, manifest digest,
    repository (``""`` for an absent one).

    For the ledger, which sequences whatever it records (a well-formed issuance gives
    exactly :meth:`CertificateEntry.encode`; anything else is an entry the monitor flags).

    Raises:
        TlogError: a field is longer than 65535 bytes or the entry longer than the limit.
    """
    if len(texts) != 6:
        raise TlogError("a certificate entry has six text fields")
    return _encode(KIND_CERTIFICATE, [certificate, *(t.encode() for t in texts)])


def _encode(kind: int, fields: list[bytes]) -> bytes:
    out = bytearray([ENTRY_VERSION, kind])
    for tag, value in enumerate(fields, start=1):
        if len(value) > 0xFFFF:
            raise TlogError(f"entry field {tag} is longer than 65535 bytes")
        out += struct.pack(">BH", tag, len(value)) + value
    if len(out) > MAX_ENTRY_SIZE:
        raise TlogError(f"entry of {len(out)} bytes is over {MAX_ENTRY_SIZE}")
    return bytes(out)


@dataclass(frozen=True)
class CertificateEntry:
    """An issued leaf certificate and the ATProto facts it was issued on.

    Construction checks every field (TlogError): the DER parses as an X.509 certificate,
    the DID and TID syntax, the record URI is in the DID's repository, the CID parses, the
    digest is an OCI ``sha256:``/``sha384:``/``sha512:`` digest, the repository name syntax.
    """

    certificate: bytes
    did: str
    record_uri: str
    commit_cid: str
    commit_rev: str
    manifest_digest: str
    repository: str

    def __post_init__(self) -> None:
        try:
            x509.load_der_x509_certificate(self.certificate)
        except (ValueError, TypeError):
            raise TlogError("entry certificate is not a DER X.509 certificate") from None
        _text(self.did, "DID")
        _check(validate_did, self.did, "DID")
        if not self.has_record:
            if self.manifest_digest and not _DIGEST.fullmatch(self.manifest_digest):
                raise TlogError("entry manifest digest is not sha256:/sha384:/sha512: hex")
            return
        for value, what in (
            (self.record_uri, "record URI"),
            (self.commit_cid, "commit CID"),
            (self.commit_rev, "commit rev"),
            (self.manifest_digest, "manifest digest"),
            (self.repository, "repository"),
        ):
            _text(value, what)
        try:
            uri_did, _, _ = parse_record_uri(self.record_uri)
        except HoldCAError as exc:
            raise TlogError(f"entry record URI is invalid: {exc}") from exc
        if uri_did != self.did:
            raise TlogError("entry record URI is not in the entry DID's repository")
        _check(CID.decode, self.commit_cid, "commit CID")
        _check(validate_tid, self.commit_rev, "commit rev")
        if not _DIGEST.fullmatch(self.manifest_digest):
            raise TlogError("entry manifest digest is not sha256:/sha384:/sha512: lowercase hex")
        if not _REPOSITORY.fullmatch(self.repository):
            raise TlogError("entry repository is not a lowercase OCI repository name")

    @property
    def has_record(self) -> bool:
        """False for a certificate issued without an ATProto record (no URI, commit, repo)."""
        return bool(self.record_uri or self.commit_cid or self.commit_rev or self.repository)

    @cached_property
    def x509(self) -> x509.Certificate:
        """The certificate, parsed."""
        return x509.load_der_x509_certificate(self.certificate)

    def encode(self) -> bytes:
        """The canonical version-1 encoding."""
        return encode_certificate(
            self.certificate,
            (
                self.did,
                self.record_uri,
                self.commit_cid,
                self.commit_rev,
                self.manifest_digest,
                self.repository,
            ),
        )


@dataclass(frozen=True)
class RevocationEntry:
    """A revocation: the certificate serial, its DID, the reason and the time (Unix seconds)."""

    serial: int
    did: str
    reason: str
    revoked_at: int

    def __post_init__(self) -> None:
        if isinstance(self.serial, bool) or not isinstance(self.serial, int):
            raise TlogError("entry serial must be an integer")
        if not 0 < self.serial < 1 << 160:
            raise TlogError("entry serial must be a positive integer of at most 20 bytes")
        _text(self.did, "DID")
        _check(validate_did, self.did, "DID")
        if self.reason not in _REASONS:
            raise TlogError(f"entry revocation reason {self.reason!r} is not an RFC 5280 reason")
        if isinstance(self.revoked_at, bool) or not isinstance(self.revoked_at, int):
            raise TlogError("entry revocation time must be an integer")
        if not 0 <= self.revoked_at < 1 << 64:
            raise TlogError("entry revocation time is out of range")

    def encode(self) -> bytes:
        """The canonical version-1 encoding."""
        serial = self.serial.to_bytes((self.serial.bit_length() + 7) // 8, "big")
        return _encode(
            KIND_REVOCATION,
            [serial, self.did.encode(), self.reason.encode(), struct.pack(">Q", self.revoked_at)],
        )


Entry = CertificateEntry | RevocationEntry
"""Any log entry."""

_FIELDS = {KIND_CERTIFICATE: 7, KIND_REVOCATION: 4}


def _utf8(raw: bytes, tag: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TlogError(f"entry field {tag} is not UTF-8") from None


def parse_entry(data: bytes) -> Entry:
    """Parse and check one entry.

    Raises:
        TlogError: an unknown version or kind, a truncated, missing, repeated, unknown or
            out-of-order field, trailing bytes, a field that fails its check, or any other
            deviation from the canonical encoding.
    """
    if len(data) < 2:
        raise TlogError("entry is too short")
    version, kind = data[0], data[1]
    if version != ENTRY_VERSION:
        raise TlogError(f"entry version {version} is not supported")
    if kind not in _FIELDS:
        raise TlogError(f"entry kind {kind} is unknown")
    values: list[bytes] = []
    pos = 2
    while pos < len(data):
        if pos + 3 > len(data):
            raise TlogError("entry is truncated in a field header")
        tag, length = struct.unpack_from(">BH", data, pos)
        pos += 3
        if tag != len(values) + 1 or tag > _FIELDS[kind]:
            raise TlogError(f"entry field {tag} is unexpected (missing, repeated or unknown)")
        if pos + length > len(data):
            raise TlogError(f"entry field {tag} is truncated")
        values.append(data[pos : pos + length])
        pos += length
    if len(values) != _FIELDS[kind]:
        raise TlogError(f"entry has {len(values)} fields, expected {_FIELDS[kind]}")
    entry: Entry
    if kind == KIND_CERTIFICATE:
        entry = CertificateEntry(values[0], *(_utf8(v, i) for i, v in enumerate(values[1:], 2)))
    else:
        serial, did, reason, when = values
        if not serial or serial[0] == 0 or len(when) != 8:
            raise TlogError("entry serial or revocation time is not in canonical form")
        entry = RevocationEntry(
            int.from_bytes(serial, "big"),
            _utf8(did, 2),
            _utf8(reason, 3),
            int.from_bytes(when, "big"),
        )
    if entry.encode() != data:
        raise TlogError("entry is not in canonical form")
    return entry
