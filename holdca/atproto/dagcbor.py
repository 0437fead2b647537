"""Strict DAG-CBOR (atproto DRISL) decoding and canonical encoding.

Decoding untrusted blocks is two passes, chosen by measurement (docs/atproto.md):

1. :func:`prescan` walks the CBOR item headers in pure Python without building any object and
   rejects what the fast codec would let through: any float (atproto has none), integers outside
   the signed 64-bit range, nesting deeper than ``max_depth``, more than ``max_items`` items,
   reserved additional-info values and truncation. The block size is checked before anything.
   The walk is skipped when cheap byte counts already prove the block passes it (no ``0xfb``,
   ``0x1b`` or ``0x3b`` byte, at most ``max_depth`` array/map head bytes, at most ``max_items``
   bytes), which is the case for typical records.
2. ``cbrrr`` (C) builds the objects and enforces the remaining DAG-CBOR rules: definite lengths,
   shortest-form integers and lengths, text-string map keys sorted length-first then bytewise
   with no duplicates, tag 42 only (bytes with a ``0x00`` prefix), no ``undefined`` or other simple
   values, valid UTF-8, no trailing bytes. Every array/map/string length is checked against the
   remaining input before allocating. CIDs are built by :class:`~holdca.atproto.cid.CID`, which
   accepts only CIDv1 dag-cbor/raw sha2-256.

The decoded data model: ``None``, ``bool``, ``int``, ``str``, ``bytes``, :class:`CID`, ``list``
and ``dict[str, ...]``.

Example::

    >>> decode(bytes.fromhex("a1616101"))
    {'a': 1}
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import cbrrr
from cbrrr._cbrrr import decode_dag_cbor as _decode_dag_cbor

from holdca.atproto.cid import CID
from holdca.errors import CIDError, DAGCBORError

__all__ = [
    "DEFAULT_LIMITS",
    "DecodeLimits",
    "decode",
    "encode",
    "from_atjson",
    "prescan",
    "to_atjson",
]


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Resource limits applied to one DAG-CBOR block before and while decoding.

    Attributes:
        max_size: largest block in bytes (checked first).
        max_depth: deepest nesting of arrays/maps (the top-level container is depth 1).
        max_items: most data items (every header counts, including map keys).
    """

    max_size: int = 1 << 20
    max_depth: int = 32
    max_items: int = 1 << 17


DEFAULT_LIMITS: Final = DecodeLimits()
"""1 MiB blocks, depth 32, 131072 items."""

_INT_LIMIT: Final = 1 << 63
_CONTAINER_HEADS: Final = bytes(range(0x80, 0xC0))  # array and map heads (major types 4, 5)
_MT_NAMES: Final = ("uint", "negint", "bytes", "text", "array", "map", "tag", "simple/float")


def prescan(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> int:
    """Validate the CBOR item structure of ``data`` without building objects.

    Checks the rules the fast codec does not: no floats, integers within the signed 64-bit
    range, nesting depth, item count, reserved/indefinite additional info, truncation and
    trailing bytes.

    Returns:
        The number of data items.

    Raises:
        DAGCBORError: naming the first violated rule and its byte offset.
    """
    n = len(data)
    if n > limits.max_size:
        raise DAGCBORError(f"DAG-CBOR block of {n} bytes exceeds the {limits.max_size}-byte limit")
    max_depth = limits.max_depth
    max_items = limits.max_items
    i = 0
    items = 0
    remaining = 1
    stack: list[int] = []
    while True:
        while remaining == 0:
            if not stack:
                if i != n:
                    raise DAGCBORError(f"trailing bytes after the DAG-CBOR item at offset {i}")
                return items
            remaining = stack.pop()
        remaining -= 1
        items += 1
        if i >= n:
            raise DAGCBORError("truncated DAG-CBOR: input ends inside an item")
        if items > max_items:
            raise DAGCBORError(f"DAG-CBOR block has more than {max_items} items")
        b = data[i]
        i += 1
        mt = b >> 5
        ai = b & 31
        if ai < 24:
            arg = ai
        elif ai == 24:
            if mt == 7:
                raise DAGCBORError(f"CBOR simple value at offset {i - 1} is not allowed")
            if i >= n:
                raise DAGCBORError("truncated DAG-CBOR argument")
            arg = data[i]
            i += 1
        elif ai in {25, 26}:
            if mt == 7:
                raise DAGCBORError(f"floats are not allowed in atproto data (offset {i - 1})")
            w = 2 if ai == 25 else 4
            if i + w > n:
                raise DAGCBORError("truncated DAG-CBOR argument")
            arg = int.from_bytes(data[i : i + w], "big")
            i += w
        elif ai == 27:
            if mt == 7:
                raise DAGCBORError(f"floats are not allowed in atproto data (offset {i - 1})")
            if i + 8 > n:
                raise DAGCBORError("truncated DAG-CBOR argument")
            arg = int.from_bytes(data[i : i + 8], "big")
            i += 8
            if mt < 2 and arg >= _INT_LIMIT:
                raise DAGCBORError(f"integer outside the signed 64-bit range at offset {i - 9}")
        else:
            kind = "indefinite length" if ai == 31 else "reserved additional info"
            raise DAGCBORError(f"{kind} ({_MT_NAMES[mt]}) at offset {i - 1} is not allowed")
        if mt in {2, 3}:
            if arg > n - i:
                raise DAGCBORError(f"string length {arg} at offset {i} runs past the block")
            i += arg
        elif mt in {4, 5}:
            if arg:
                count = arg if mt == 4 else 2 * arg
                if count > n - i:
                    raise DAGCBORError(f"container length {arg} at offset {i} exceeds the block")
                stack.append(remaining)
                if len(stack) > max_depth:
                    raise DAGCBORError(f"DAG-CBOR nesting deeper than {max_depth}")
                remaining = count
        elif mt == 6:
            if arg != 42:
                raise DAGCBORError(f"CBOR tag {arg} is not allowed (only 42, CID)")
            remaining += 1


def _prescan_is_redundant(data: bytes, limits: DecodeLimits) -> bool:
    """Whether ``data`` provably passes :func:`prescan`'s rules, by cheap byte counts.

    Sufficient, not necessary (a False sends the block through :func:`prescan`):

    * a float64 needs a ``0xfb`` head and an integer outside the signed 64-bit range an 8-byte
      argument (``0x1b`` / ``0x3b``); with none of those bytes anywhere there are neither (the
      fast codec rejects the other float widths itself);
    * every item takes at least one byte, so a block no longer than ``max_items`` cannot
      exceed it;
    * each nesting level needs its own array/map head, a byte in ``0x80..0xbf``: with at most
      ``max_depth`` such bytes anywhere, the nesting cannot be deeper.

    Indefinite lengths, reserved additional info, truncation and trailing bytes are rejected
    by the codec (and the ``used`` check) either way.
    """
    n = len(data)
    return (
        n <= limits.max_items
        and n <= limits.max_size
        and b"\xfb" not in data
        and b"\x1b" not in data
        and b"\x3b" not in data
        and n - len(data.translate(None, _CONTAINER_HEADS)) <= limits.max_depth
    )


def decode(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
    """Strictly decode one DAG-CBOR block (see the module docstring for the rules).

    Raises:
        DAGCBORError: the bytes are not strict atproto DAG-CBOR, or exceed ``limits``.
        CIDError: a tag-42 link is not a supported CIDv1.
    """
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DAGCBORError(f"DAG-CBOR input must be bytes, not {type(data).__name__}")
        data = bytes(data)
    if not _prescan_is_redundant(data, limits):
        prescan(data, limits)
    try:
        value, used = _decode_dag_cbor(data, CID, False)
    except CIDError:
        raise
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        # cbrrr's CbrrrDecodeError is a ValueError, UnicodeDecodeError too.
        raise DAGCBORError(f"not canonical DAG-CBOR: {_short(exc)}") from None
    if used != len(data):  # pragma: no cover - prescan already rejects trailing bytes
        raise DAGCBORError("trailing bytes after the DAG-CBOR item")
    return value


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def encode(value: Any) -> bytes:
    """Canonical DAG-CBOR of a data-model value (keys sorted length-first, shortest ints).

    Raises:
        DAGCBORError: the value holds a float, an out-of-range int, a non-string map key or a
            type outside the data model.
    """
    _check_encodable(value, 0)
    try:
        out: bytes = cbrrr._cbrrr.encode_dag_cbor(value, CID, False)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DAGCBORError(f"cannot encode as DAG-CBOR: {_short(exc)}") from None
    return out


def _check_encodable(value: Any, depth: int) -> None:
    if depth > 64:
        raise DAGCBORError("value nested deeper than 64")
    if value is None or isinstance(value, bool | str | bytes | CID):
        return
    if isinstance(value, int):
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise DAGCBORError("integer outside the signed 64-bit range")
        return
    if isinstance(value, float):
        raise DAGCBORError("floats are not allowed in atproto data")
    if isinstance(value, list | tuple):
        for item in value:
            _check_encodable(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise DAGCBORError("map keys must be strings")
            _check_encodable(item, depth + 1)
        return
    raise DAGCBORError(f"type {type(value).__name__} is not in the atproto data model")


def to_atjson(value: Any) -> Any:
    """Convert decoded data to the atproto JSON form (``{"$link": ...}``, ``{"$bytes": ...}``).

    Raises:
        DAGCBORError: the value is outside the data model.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, CID):
        return {"$link": str(value)}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii").rstrip("=")}
    if isinstance(value, list):
        return [to_atjson(v) for v in value]
    if isinstance(value, dict):
        return {k: to_atjson(v) for k, v in value.items()}
    raise DAGCBORError(f"type {type(value).__name__} is not in the atproto data model")


def _b64_strict(text: str) -> bytes:
    if len(text) % 4 == 1 or text.endswith("="):
        raise DAGCBORError("$bytes must be unpadded base64")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError as exc:
        raise DAGCBORError("$bytes is not valid base64") from exc
    if base64.b64encode(raw).decode("ascii").rstrip("=") != text:
        raise DAGCBORError("$bytes has non-zero padding bits")
    return raw


def from_atjson(value: Any, _depth: int = 0) -> Any:
    """Convert parsed atproto JSON to the data model, validating it.

    Rules (atproto data model; interop-tests data-model fixtures): ``{"$link": cid}`` is a CID
    link and ``{"$bytes": b64}`` a byte string (each the only key); an integral float such as
    ``123.0`` becomes an int, any other float is rejected; the top level must be an object;
    ``$type`` must be a non-empty string; a ``{"$type": "blob"}`` map must have a raw-codec
    ``ref`` link, a string ``mimeType`` and a non-negative integer ``size``.

    Raises:
        DAGCBORError: the JSON is not valid atproto data.
    """
    if _depth > 64:
        raise DAGCBORError("JSON nested deeper than 64")
    if _depth == 0 and not isinstance(value, Mapping):
        raise DAGCBORError("atproto data must be an object at the top level")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise DAGCBORError("integer outside the signed 64-bit range")
        return value
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
        raise DAGCBORError("floats are not allowed in atproto data")
    if isinstance(value, Sequence):
        return [from_atjson(v, _depth + 1) for v in value]
    if isinstance(value, Mapping):
        if "$link" in value:
            link = value["$link"]
            if len(value) != 1 or not isinstance(link, str):
                raise DAGCBORError("$link must be the only key and a string")
            try:
                return CID.decode(link)
            except CIDError as exc:
                raise DAGCBORError(f"$link is not a valid CID: {exc}") from None
        if "$bytes" in value:
            raw = value["$bytes"]
            if len(value) != 1 or not isinstance(raw, str):
                raise DAGCBORError("$bytes must be the only key and a string")
            return _b64_strict(raw)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise DAGCBORError("map keys must be strings")
            out[key] = from_atjson(item, _depth + 1)
        if "$type" in out:
            kind = out["$type"]
            if not isinstance(kind, str) or not kind:
                raise DAGCBORError("$type must be a non-empty string")
            if kind == "blob":
                _check_blob(out)
        return out
    raise DAGCBORError(f"type {type(value).__name__} is not valid atproto JSON")


def _check_blob(blob: dict[str, Any]) -> None:
    ref = blob.get("ref")
    if not isinstance(ref, CID) or ref.codec != 0x55:
        raise DAGCBORError("blob ref must be a raw-codec CID link")
    if not isinstance(blob.get("mimeType"), str):
        raise DAGCBORError("blob mimeType must be a string")
    size = blob.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise DAGCBORError("blob size must be a non-negative integer")
