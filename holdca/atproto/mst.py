"""Merkle Search Tree lookups that prove inclusion or absence of one key.

Rules (atproto spec repository "MST Structure"), checked on every node
visited:

* a node is exactly ``{"e": [entry, ...], "l": CID | null}``; an entry exactly
  ``{"k": bytes, "p": int, "t": CID | null, "v": CID}``; links are dag-cbor CIDs;
* key ``i`` = ``key[i-1][:p] + k``; the first entry has ``p == 0``; ``p`` is the full common prefix
  with the previous key (compression is mandatory); keys are non-empty, at most 1024 bytes and
  strictly increasing, and lie strictly between the bounds inherited from the parent;
* every key in a node has the same height (leading zero bits of sha256(key), divided by 2 and
  floored) and that height is the node's layer; a child is exactly one layer below its parent;
  layer-0 nodes have no children; only a tree's root may be empty, and only with no child.

A key is proven present when found, and proven absent when the walk reaches the layer of the key's
height (or a null link) without finding it. A linked node missing from the proof is
:class:`~holdca.errors.IncompleteProofError`, distinct from absence.

The walk (:func:`lookup_raw`; :func:`lookup` wraps it for CID-keyed mappings) decodes each node
with the strict codec (links as raw ``bytearray``, distinct from byte strings) and checks every
entry in one pass; a key's height is checked by comparing its digest with the layer's range.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Mapping
from hashlib import sha256 as _sha256
from operator import itemgetter
from typing import Any, Final

from cbrrr._cbrrr import decode_dag_cbor as _decode_dag_cbor

from holdca.atproto.car import BlockMap
from holdca.atproto.cid import CID
from holdca.errors import CIDError, IncompleteProofError, MSTError

__all__ = [
    "MAX_NODE_ENTRIES",
    "MAX_NODE_SIZE",
    "common_prefix_length",
    "key_height",
    "lookup",
    "lookup_raw",
]

MAX_NODE_ENTRIES: Final = 1024
"""Most entries accepted in one MST node."""
MAX_NODE_SIZE: Final = 128 * 1024
"""Largest MST node block accepted, in bytes (checked before decoding)."""
_MAX_KEY: Final = 1024
_DAG_PREFIX: Final = b"\x01\x71\x12\x20"
_NODE_KEYS: Final = frozenset({"e", "l"})
_ENTRY_FIELDS: Final = itemgetter("k", "p", "t", "v")


def key_height(key: bytes) -> int:
    """The MST layer of ``key``: leading zero bits of sha256(key) // 2 (fanout 4)."""
    digest = hashlib.sha256(key).digest()
    return (256 - int.from_bytes(digest, "big").bit_length()) // 2


def common_prefix_length(left: bytes, right: bytes) -> int:
    """Length of the common byte prefix of ``left`` and ``right``."""
    n = min(len(left), len(right))
    i = 0
    while i < n and left[i] == right[i]:
        i += 1
    return i


def _bad_link(link: bytes, what: str, value: Any, nullable: bool) -> MSTError:
    if isinstance(value, bytearray):
        try:
            CID(bytes(value))
        except CIDError as exc:
            return MSTError(f"MST node {_shown(link)} {what}: {exc}")
    suffix = " or null" if nullable else ""
    return MSTError(f"MST node {_shown(link)} {what} must be a dag-cbor CID link{suffix}")


def _shown(link: bytes) -> str:
    """A binary CID as text for messages (the raw hex if it is not a supported CID)."""
    try:
        return str(CID(link))
    except CIDError:
        return link.hex()


def _entry_shape_error(link: bytes, i: int) -> MSTError:
    return MSTError(f"MST node {_shown(link)} entry {i} must be exactly {{k, p, t, v}}")


def _entry_error(link: bytes, i: int, prev: bytes, p: int, suffix: bytes) -> MSTError:
    """Name the rule an entry breaks (the walk checks them with one fused comparison)."""
    if not 0 <= p <= len(prev):
        return MSTError(f"MST node {_shown(link)} entry {i}: prefix length {p} out of range")
    key = prev[:p] + suffix
    if not key:
        return MSTError(f"MST node {_shown(link)} entry {i}: key length 0 out of range")
    if p < len(prev) and p < len(key) and prev[p] == key[p]:
        return MSTError(f"MST node {_shown(link)} entry {i}: key prefix is not fully compressed")
    return MSTError(f"MST node {_shown(link)}: entries are not in strictly increasing key order")


def _height_bounds(height: int) -> tuple[bytes, bytes]:
    """The sha256 digests ``d`` of the keys of ``height`` are exactly those with
    ``lo <= d < hi``: 2 * height or 2 * height + 1 leading zero bits (bytewise order is numeric
    order for 32-byte big-endian digests)."""
    lo = (1 << (254 - 2 * height)).to_bytes(32, "big") if height < 128 else bytes(32)
    hi = (1 << (256 - 2 * height)).to_bytes(32, "big") if height else b"\xff" * 33
    return lo, hi


_HEIGHT_BOUNDS: Final = tuple(_height_bounds(h) for h in range(129))


def lookup(blocks: Mapping[CID, bytes], root: CID, key: bytes) -> CID | None:
    """Walk the MST from ``root`` to ``key``; return its value CID, or None if proven absent.

    ``blocks`` must already be hash-verified (e.g. from :func:`~holdca.atproto.car.read_car`).

    Raises:
        IncompleteProofError: a node on the path is not in ``blocks``.
        MSTError: a visited node breaks an MST invariant (see the module docstring).
    """
    if isinstance(blocks, BlockMap):
        found = lookup_raw(blocks.raw.get, root.raw, key)
    else:
        found = lookup_raw(lambda raw: blocks.get(CID(raw)), root.raw, key)
    return None if found is None else CID(found)


def lookup_raw(get: Callable[[bytes], bytes | None], root: bytes, key: bytes) -> bytes | None:
    """:func:`lookup` over binary CIDs: ``get`` maps a 36-byte binary CID to its
    hash-verified block (or None); returns the value's binary CID, or None if proven absent.

    Raises:
        IncompleteProofError: a node on the path is missing.
        MSTError: a visited node breaks an MST invariant.
    """
    if root[:4] != _DAG_PREFIX or len(root) != 36:
        raise MSTError(f"MST node link {_shown(root)} is not a dag-cbor CID")
    target_height = key_height(key)
    sha256 = _sha256
    link = root
    lo: bytes | None = None
    hi: bytes | None = None
    layer: int | None = None
    while True:
        block = get(link)
        if block is None:
            where = "root" if layer is None else f"layer {layer}"
            raise IncompleteProofError(f"proof lacks MST node {_shown(link)} ({where})")
        if len(block) > MAX_NODE_SIZE:
            raise MSTError(f"MST node {_shown(link)} larger than {MAX_NODE_SIZE} bytes")
        try:
            # CID links decode to bytearray (distinct from byte strings, which stay bytes)
            node, used = _decode_dag_cbor(block, bytearray, False)
        except (ValueError, TypeError, OverflowError, MemoryError, RecursionError) as exc:
            raise MSTError(
                f"MST node {_shown(link)} is not canonical DAG-CBOR: {str(exc)[:120]}"
            ) from None
        if used != len(block):
            raise MSTError(f"MST node {_shown(link)} has trailing bytes")
        if type(node) is not dict or node.keys() != _NODE_KEYS:
            raise MSTError(f"MST node {_shown(link)} must be exactly {{e, l}}")
        entries, left = node.values()  # cbrrr guarantees canonical key order: "e", "l"
        if left is not None and (
            type(left) is not bytearray or len(left) != 36 or left[:4] != _DAG_PREFIX
        ):
            raise _bad_link(link, "'l'", left, True)
        if type(entries) is not list:
            raise MSTError(f"MST node {_shown(link)} 'e' must be an array")
        n = len(entries)
        if n > MAX_NODE_ENTRIES:
            raise MSTError(f"MST node {_shown(link)} has more than {MAX_NODE_ENTRIES} entries")

        if not entries:  # only a root may be empty, and then without a child
            if layer is None:
                if left is not None:
                    raise MSTError("MST root is an empty node pointing to a child")
                return None
            if left is None:
                raise MSTError(f"MST node {_shown(link)} is empty")
        elif layer is None:
            layer = _root_layer(entries[0])
        # every key's digest must lie in the layer's range (see _HEIGHT_BOUNDS)
        low, high = _HEIGHT_BOUNDS[layer]

        # every entry: shape, links, full key (prefix compression, order, length), height
        keys: list[bytes] = []
        add_key = keys.append
        has_children = left is not None
        prev = b""
        for entry in entries:
            # exactly {k, p, t, v}: the four are present (only a dict indexes by text) and
            # nothing else is
            try:
                suffix, p, right, value = _ENTRY_FIELDS(entry)
            except (KeyError, TypeError):
                raise _entry_shape_error(link, len(keys)) from None
            if len(entry) != 4:
                raise _entry_shape_error(link, len(keys))
            if type(p) is not int or type(suffix) is not bytes:
                raise MSTError(
                    f"MST node {_shown(link)} entry {len(keys)}: p must be an int and k bytes"
                )
            # p in 0..len(prev) (the first entry has prev == b"", so p must be 0), and
            # key = prev[:p] + suffix. Then "key is non-empty, p is the full common prefix
            # with prev (the next bytes differ) and key > prev" all hold iff the first byte
            # after the shared prefix grows: suffix[:1] > prev[p:p+1] (b"" at the end of prev).
            if not 0 <= p <= len(prev) or suffix[:1] <= prev[p : p + 1]:
                raise _entry_error(link, len(keys), prev, p, suffix)
            prev = prev[:p] + suffix
            if len(prev) > _MAX_KEY:
                raise MSTError(
                    f"MST node {_shown(link)} entry {len(keys)}: "
                    f"key length {len(prev)} out of range"
                )
            if type(value) is not bytearray or len(value) != 36 or value[:4] != _DAG_PREFIX:
                raise _bad_link(link, f"entry {len(keys)} 'v'", value, False)
            if right is not None:
                if type(right) is not bytearray or len(right) != 36 or right[:4] != _DAG_PREFIX:
                    raise _bad_link(link, f"entry {len(keys)} 't'", right, True)
                has_children = True
            add_key(prev)
            if not low <= sha256(prev).digest() < high:
                raise _height_error(link, keys, layer)

        # node-level rules: within the parent's bounds; layer 0 is a leaf
        if keys and ((lo is not None and keys[0] <= lo) or (hi is not None and keys[-1] >= hi)):
            raise MSTError(f"MST node {_shown(link)} has keys outside its parent's range")
        if layer == 0 and has_children:
            raise MSTError(f"MST node {_shown(link)} at layer 0 links to a lower layer")

        # descend
        idx = bisect_left(keys, key)
        if idx < n and keys[idx] == key:
            return bytes(entries[idx]["v"])
        if target_height >= layer:
            return None  # it would sit in this node: proven absent
        if idx == 0:
            nxt = left
        else:
            nxt = entries[idx - 1]["t"]
            lo = keys[idx - 1]
        if idx < n:
            hi = keys[idx]
        if nxt is None:
            return None
        link = bytes(nxt)
        layer -= 1


def _height_error(link: bytes, keys: list[bytes], layer: int) -> MSTError:
    """The node's keys so far (the last one is off its layer), as the rule they break."""
    heights = {key_height(k) for k in keys}
    if len(heights) != 1:
        return MSTError(f"MST node {_shown(link)} mixes keys of different heights")
    return MSTError(f"MST node {_shown(link)} has keys of height {heights.pop()}, expected {layer}")


def _root_layer(first: object) -> int:
    """The root's layer: the height of its first key, which is that entry's ``k`` (its ``p``
    must be 0). When the entry is malformed any layer will do: the walk rejects the entry."""
    suffix = first.get("k") if type(first) is dict else None
    return key_height(suffix) if type(suffix) is bytes else 0
