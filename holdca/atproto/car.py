"""CARv1 reading (with per-block hash verification) and writing.

Format (atproto spec repository "CAR File Serialization"; research/atproto.md 6):
``varint(len(H)) || H`` with H = DAG-CBOR ``{"roots": [CID, ...], "version": 1}``, then sections
``varint(len(cid) + len(data)) || cid || data``. Varints are unsigned LEB128, minimally encoded.

:func:`read_car` checks, each with its own :class:`~holdca.errors.CARError` message: total size,
header size and shape, section count, section size, that every section's CID is a supported
CIDv1 and that sha256 of its bytes equals the CID digest. Duplicate sections must carry identical
bytes (they do when the hash matches); block order is free.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from holdca.atproto import dagcbor
from holdca.atproto.cid import CID, parse_cid
from holdca.errors import CARError, CIDError, DAGCBORError

__all__ = ["DEFAULT_CAR_LIMITS", "CARFile", "CARLimits", "read_car", "write_car"]


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


@dataclass(frozen=True, slots=True)
class CARFile:
    """A hash-verified CAR: its roots and a map from CID to block bytes.

    Attributes:
        roots: the header roots (``roots[0]`` is the commit in atproto).
        blocks: every block, keyed by CID; each value's sha256 matched its CID.
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
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CARError(f"CAR must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > limits.max_size:
        raise CARError(f"CAR of {len(data)} bytes exceeds the {limits.max_size}-byte limit")
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
    blocks: dict[CID, bytes] = {}
    count = 0
    n = len(data)
    while pos < n:
        count += 1
        if count > limits.max_blocks:
            raise CARError(f"CAR has more than {limits.max_blocks} blocks")
        size, pos = _read_varint(data, pos, "section length")
        if size > limits.max_block_size + 36:
            raise CARError(f"CAR section of {size} bytes exceeds the block size limit")
        end = pos + size
        if end > n:
            raise CARError("truncated CAR section")
        if size < 36:
            raise CARError(f"CAR section {count} is shorter than its CID")
        try:
            cid, data_start = parse_cid(data, pos)
        except CIDError as exc:
            raise CARError(f"CAR section {count} has an unsupported CID: {exc}") from None
        block = data[data_start:end]
        if not cid.matches(block):
            raise CARError(f"CAR block {cid} does not match its hash (block hash mismatch)")
        previous = blocks.get(cid)
        if previous is not None and previous != block:  # pragma: no cover - needs sha256 collision
            raise CARError(f"CAR has two different blocks for {cid}")
        blocks[cid] = block
        pos = end
    return CARFile(roots=tuple(roots), blocks=blocks)


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
