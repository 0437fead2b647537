"""CIDv1 as atproto uses it: version 1, dag-cbor (0x71) or raw (0x55) codec, sha2-256 multihash.

Binary form (36 bytes): ``0x01 || codec || 0x12 0x20 || sha256(32)``; string form: multibase
base32-lower with the ``b`` prefix (``bafyrei...`` for dag-cbor, ``bafkrei...`` for raw). CIDv0 and
every other codec or hash are rejected (the "blessed" CID format of the atproto spec data-model).

Example::

    >>> str(CID.for_dag_cbor(b"\\xa0"))
    'bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua'
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final

from holdca.errors import CIDError

__all__ = ["CID", "CODEC_DAG_CBOR", "CODEC_RAW", "parse_cid"]

CODEC_DAG_CBOR: Final = 0x71
"""Multicodec of DAG-CBOR blocks (commits, MST nodes, records)."""
CODEC_RAW: Final = 0x55
"""Multicodec of raw blocks (blobs)."""

_DAG_PREFIX: Final = b"\x01\x71\x12\x20"
_RAW_PREFIX: Final = b"\x01\x55\x12\x20"
_B32_ALPHABET: Final = frozenset("abcdefghijklmnopqrstuvwxyz234567")


class CID:
    """A validated atproto CID (treat as immutable); equality and hashing use the 36 bytes.

    Construct with :func:`parse_cid`, :meth:`decode`, :meth:`for_dag_cbor` or :meth:`for_raw`;
    the constructor itself validates too.
    """

    __slots__ = ("_raw",)

    _raw: bytes

    def __init__(self, raw: bytes) -> None:
        """Wrap 36 binary CID bytes.

        Raises:
            CIDError: not CIDv1 / dag-cbor or raw / sha2-256 with a 32-byte digest.
        """
        if type(raw) is not bytes:
            raw = bytes(raw)
        if len(raw) != 36 or (raw[:4] != _DAG_PREFIX and raw[:4] != _RAW_PREFIX):
            raise CIDError(_describe_bad_cid(raw))
        self._raw = raw

    @classmethod
    def for_dag_cbor(cls, block: bytes) -> CID:
        """The CID of ``block`` as a DAG-CBOR block (sha2-256 of the bytes)."""
        return cls(_DAG_PREFIX + hashlib.sha256(block).digest())

    @classmethod
    def for_raw(cls, block: bytes) -> CID:
        """The CID of ``block`` as a raw block (blobs)."""
        return cls(_RAW_PREFIX + hashlib.sha256(block).digest())

    @classmethod
    def decode(cls, text: object) -> CID:
        """Parse the base32 string form (``b...``).

        Raises:
            CIDError: not ``b`` + lowercase unpadded base32, or not a supported CID.
        """
        if not isinstance(text, str) or not text.startswith("b") or len(text) > 100:
            raise CIDError("CID string must be multibase base32 ('b' prefix)")
        body = text[1:]
        if not body or not set(body) <= _B32_ALPHABET:
            raise CIDError("CID string is not lowercase unpadded base32")
        try:
            raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        except ValueError as exc:
            raise CIDError("CID string is not valid base32") from exc
        cid = cls(raw)
        if str(cid) != text:
            raise CIDError("CID string has non-zero padding bits")
        return cid

    @property
    def raw(self) -> bytes:
        """The 36 binary bytes (no multibase prefix)."""
        return self._raw

    @property
    def codec(self) -> int:
        """``CODEC_DAG_CBOR`` or ``CODEC_RAW``."""
        return self._raw[1]

    @property
    def digest(self) -> bytes:
        """The 32-byte sha2-256 digest."""
        return self._raw[4:]

    def matches(self, block: bytes) -> bool:
        """Whether sha256(``block``) equals this CID's digest."""
        return hashlib.sha256(block).digest() == self._raw[4:]

    def __bytes__(self) -> bytes:
        return self._raw

    def __str__(self) -> str:
        return "b" + base64.b32encode(self._raw).decode("ascii").lower().rstrip("=")

    def __repr__(self) -> str:
        return f"CID({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CID) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __reduce__(self) -> tuple[type[CID], tuple[bytes]]:
        return (CID, (self._raw,))


def _describe_bad_cid(raw: bytes) -> str:
    if len(raw) == 34 and raw[:2] == b"\x12\x20":
        return "CIDv0 is not used in atproto"
    if not raw:
        return "empty CID"
    if raw[0] != 0x01:
        return f"unsupported CID version byte 0x{raw[0]:02x}"
    if len(raw) >= 2 and raw[1] not in (CODEC_DAG_CBOR, CODEC_RAW):
        return f"unsupported CID codec 0x{raw[1]:02x} (only dag-cbor 0x71 and raw 0x55)"
    if len(raw) >= 4 and raw[2:4] != b"\x12\x20":
        return "unsupported CID multihash (only sha2-256 with a 32-byte digest)"
    return f"CID must be 36 bytes, got {len(raw)}"


def parse_cid(data: bytes, offset: int = 0) -> tuple[CID, int]:
    """Parse a binary CID at ``data[offset:]``; return it and the offset just after it.

    Raises:
        CIDError: truncated or unsupported CID.
    """
    end = offset + 36
    if end > len(data):
        raise CIDError(_describe_bad_cid(bytes(data[offset:end])) + " (truncated)")
    return CID(bytes(data[offset:end])), end
