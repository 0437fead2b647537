"""CARv1 reading (with per-block hash verification) and writing.

Format (atproto spec repository "CAR File Serialization"):
``varint(len(H)) || H`` with H = DAG-CBOR ``{"roots": [CID, ...], "version": 1}``, then sections
``varint(len(cid) + len(data)) || cid || data``. Varints are unsigned LEB128, minimally encoded.

:func:`read_car` checks, each with its own :class:`~holdca.errors.CARError` message: total size,
header size and shape, section count, section size, that every section's CID is a supported
CIDv1 and that sha256 of its bytes equals the CID digest. Duplicate sections must carry identical
bytes (they do when the hash matches); block order is free.

Blocks are keyed by their 36 binary CID bytes: :func:`read_car_raw` returns that plain dict (the
verification pipeline walks it without building a :class:`~holdca.atproto.cid.CID` per block or
link) and :func:`read_car` wraps it in a :class:`BlockMap`, a read-only mapping that takes a CID
or its binary form and iterates CIDs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from holdca.atproto import dagcbor
from holdca.atproto.cid import CID, parse_cid
from holdca.errors import CARError, CIDError, DAGCBORError

__all__ = [
    "DEFAULT_CAR_LIMITS",
    "BlockMap",
    "CARFile",
    "CARLimits",
    "read_car",
    "read_car_raw",
    "write_car",
]


@dataclass(frozen=True, slots=True)
class CARLimits:
    """Limits for one CAR file, all checked before the data they bound is processed.

    Attributes:
        max_size: largest CAR in bytes.
        max_blocks: most sections.
        max_block_size: largest block (section data) in bytes.
        max_header_size: largest header in bytes.
        max_roots: most header roots.
    """

    max_size: int = 4 << 20
    max_blocks: int = 4096
    max_block_size: int = 1 << 20
    max_header_size: int = 1024
    max_roots: int = 8


DEFAULT_CAR_LIMITS: Final = CARLimits()
"""4 MiB, 4096 blocks of at most 1 MiB, header at most 1 KiB with at most 8 roots."""

_CID_PREFIXES: Final = (b"\x01\x71\x12\x20", b"\x01\x55\x12\x20")  # dag-cbor, raw; sha2-256
# varint(58) || {"roots": [42(h'00' || <36-byte CID>)], "version": 1}, around the CID
_ONE_ROOT_HEAD: Final = b"\x3a\xa2\x65roots\x81\xd8\x2a\x58\x25\x00"
_ONE_ROOT_TAIL: Final = b"\x67version\x01"


class BlockMap(Mapping[CID, bytes]):
    """Read-only blocks keyed by CID, stored by their 36 binary bytes.

    Lookups accept a :class:`CID` or its binary form (``cid.raw``); iteration yields CIDs.
    :attr:`raw` is the underlying mapping, for callers that walk many links without building
    a :class:`CID` per link (the MST walk).
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: Mapping[bytes, bytes]) -> None:
        """Wrap ``raw`` (36-byte binary CID -> block); it is not copied, so do not mutate it."""
        self._raw = raw

    @property
    def raw(self) -> Mapping[bytes, bytes]:
        """The blocks keyed by binary CID."""
        return self._raw

    def __getitem__(self, cid: CID | bytes) -> bytes:
        return self._raw[cid.raw if isinstance(cid, CID) else cid]

    def get(self, cid: CID | bytes, default: Any = None) -> Any:
        """The block of ``cid`` (a CID or its binary form), or ``default``."""
        return self._raw.get(cid.raw if isinstance(cid, CID) else cid, default)

    def __contains__(self, cid: object) -> bool:
        return (cid.raw if isinstance(cid, CID) else cid) in self._raw

    def __iter__(self) -> Iterator[CID]:
        return map(CID, self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"BlockMap({len(self._raw)} blocks)"


@dataclass(frozen=True, slots=True)
class CARFile:
    """A hash-verified CAR: its roots and a map from CID to block bytes.

    Attributes:
        roots: the header roots (``roots[0]`` is the commit in atproto).
        blocks: every block, keyed by CID; each value's sha256 matched its CID (from
            :func:`read_car`, a :class:`BlockMap`).
    """

    roots: tuple[CID, ...]
    blocks: Mapping[CID, bytes]


def _read_varint(data: bytes, offset: int, what: str) -> tuple[int, int]:
    value = 0
    shift = 0
    n = len(data)
    while True:
        if offset >= n:
            raise CARError(f"truncated varint ({what})")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and shift:
                raise CARError(f"varint not minimally encoded ({what})")
            return value, offset
        shift += 7
        if shift >= 63:
            raise CARError(f"varint too long ({what})")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_car(data: bytes, limits: CARLimits = DEFAULT_CAR_LIMITS) -> CARFile:
    """Parse a CARv1 file and verify every block against its CID.

    Raises:
        CARError: over a limit, truncated, a malformed header or section, a section whose bytes
            do not hash to its CID, or two sections for one CID with different bytes.
    """
    roots, blocks = read_car_raw(data, limits)
    return CARFile(roots=tuple(map(CID, roots)), blocks=BlockMap(blocks))


def read_car_raw(
    data: bytes, limits: CARLimits = DEFAULT_CAR_LIMITS
) -> tuple[list[bytes], dict[bytes, bytes]]:
    """:func:`read_car` without the wrapper objects: the roots and the blocks keyed by the
    36-byte binary CIDs (every key a supported CID, every block hash-checked).

    Raises:
        CARError: as :func:`read_car`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CARError(f"CAR must be bytes, not {type(data).__name__}")
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    if n > limits.max_size:
        raise CARError(f"CAR of {n} bytes exceeds the {limits.max_size}-byte limit")
    # Fast path: the canonical one-root header (58 bytes, the CID at 14..50) is the only
    # encoding of {"roots": [cid], "version": 1} in strict DAG-CBOR, so matching it byte for
    # byte is the same check as decoding it.
    if (
        data[:14] == _ONE_ROOT_HEAD
        and data[50:59] == _ONE_ROOT_TAIL
        and data[14:18] in _CID_PREFIXES
        and limits.max_header_size >= 58
        and limits.max_roots >= 1
    ):
        roots = [data[14:50]]
        pos = 59
    else:
        roots, pos = _read_header(data, limits)
    blocks: dict[bytes, bytes] = {}
    sha256 = hashlib.sha256
    max_blocks = limits.max_blocks
    max_section = limits.max_block_size + 36
    count = 0
    while pos < n:
        count += 1
        if count > max_blocks:
            raise CARError(f"CAR has more than {max_blocks} blocks")
        # section lengths are 1- or 2-byte varints in practice; the rest take the general path
        size = data[pos]
        if size < 0x80:
            pos += 1
        elif pos + 1 < n and 0 < data[pos + 1] < 0x80:
            size = (size & 0x7F) | (data[pos + 1] << 7)
            pos += 2
        else:
            size, pos = _read_varint(data, pos, "section length")
        end = pos + size
        if not 36 <= size <= max_section or end > n:
            raise _section_error(size, max_section, end > n, count)
        cid = data[pos : pos + 36]
        if cid[:4] not in _CID_PREFIXES:
            try:
                parse_cid(cid)
            except CIDError as exc:
                raise CARError(f"CAR section {count} has an unsupported CID: {exc}") from None
        block = data[pos + 36 : end]
        if sha256(block).digest() != cid[4:]:
            raise CARError(f"CAR block {CID(cid)} does not match its hash (block hash mismatch)")
        previous = blocks.setdefault(cid, block)
        if previous is not block and previous != block:  # pragma: no cover - sha256 collision
            raise CARError(f"CAR has two different blocks for {CID(cid)}")
        pos = end
    return roots, blocks


def _section_error(size: int, max_section: int, truncated: bool, count: int) -> CARError:
    if size > max_section:
        return CARError(f"CAR section of {size} bytes exceeds the block size limit")
    if truncated:
        return CARError("truncated CAR section")
    return CARError(f"CAR section {count} is shorter than its CID")


def _read_header(data: bytes, limits: CARLimits) -> tuple[list[bytes], int]:
    """Decode any CAR header strictly; return the raw root CIDs and the offset after it."""
    header_len, pos = _read_varint(data, 0, "header length")
    if header_len == 0 or header_len > limits.max_header_size:
        raise CARError(f"CAR header length {header_len} outside 1..{limits.max_header_size}")
    if pos + header_len > len(data):
        raise CARError("truncated CAR header")
    try:
        header = dagcbor.decode(data[pos : pos + header_len])
    except (DAGCBORError, CIDError) as exc:
        raise CARError(f"CAR header is not valid DAG-CBOR: {exc}") from None
    pos += header_len
    if not isinstance(header, dict) or set(header) != {"roots", "version"}:
        raise CARError("CAR header must be exactly {roots, version}")
    if header["version"] != 1 or isinstance(header["version"], bool):
        raise CARError(f"unsupported CAR version {header['version']!r}")
    roots = header["roots"]
    if not isinstance(roots, list) or not roots or not all(isinstance(r, CID) for r in roots):
        raise CARError("CAR header roots must be a non-empty array of CIDs")
    if len(roots) > limits.max_roots:
        raise CARError(f"CAR header has more than {limits.max_roots} roots")
    return [r.raw for r in roots], pos


def write_car(roots: Iterable[CID], blocks: Iterable[tuple[CID, bytes]]) -> bytes:
    """Serialise a CARv1 with the given roots and (CID, bytes) sections, in order.

    Raises:
        CARError: no roots.
    """
    root_list = list(roots)
    if not root_list:
        raise CARError("a CAR needs at least one root")
    header = dagcbor.encode({"roots": root_list, "version": 1})
    out = [_varint(len(header)), header]
    for cid, block in blocks:
        raw = cid.raw
        out.append(_varint(len(raw) + len(block)))
        out.append(raw)
        out.append(block)
    return b"".join(out)
