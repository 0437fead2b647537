"""Merkle Search Tree lookups that prove inclusion or absence of one key.

Rules (atproto spec repository "MST Structure"; research/atproto.md 8), checked on every node
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
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Mapping
from hashlib import sha256 as _sha256
from typing import Any, Final

import cbrrr

from holdca.atproto.cid import CID, CODEC_DAG_CBOR
from holdca.errors import CIDError, IncompleteProofError, MSTError

__all__ = ["MAX_NODE_ENTRIES", "MAX_NODE_SIZE", "common_prefix_length", "key_height", "lookup"]

MAX_NODE_ENTRIES: Final = 1024
"""Most entries accepted in one MST node."""
MAX_NODE_SIZE: Final = 128 * 1024
"""Largest MST node block accepted, in bytes (checked before decoding)."""
_MAX_KEY: Final = 1024
_DAG_PREFIX: Final = b"\x01\x71\x12\x20"
_NODE_KEYS: Final = frozenset({"e", "l"})
_ENTRY_KEYS: Final = frozenset({"k", "p", "t", "v"})


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


def _bad_link(cid: CID, what: str, value: Any, nullable: bool) -> MSTError:
    if isinstance(value, bytearray):
        try:
            CID(bytes(value))
        except CIDError as exc:
            return MSTError(f"MST node {cid} {what}: {exc}")
    suffix = " or null" if nullable else ""
    return MSTError(f"MST node {cid} {what} must be a dag-cbor CID link{suffix}")


def _parse_node(
    block: bytes, cid: CID
) -> tuple[bytearray | None, list[bytes], list[bytearray], list[bytearray | None]]:
    """Decode and shape-check one node; links stay raw (36-byte ``bytearray``) until followed."""
    if len(block) > MAX_NODE_SIZE:
        raise MSTError(f"MST node {cid} larger than {MAX_NODE_SIZE} bytes")
    try:
        # CID links decode to bytearray (distinct from byte strings, which stay bytes)
        node, used = cbrrr._cbrrr.decode_dag_cbor(block, bytearray, False)
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise MSTError(f"MST node {cid} is not canonical DAG-CBOR: {str(exc)[:120]}") from None
    if used != len(block):
        raise MSTError(f"MST node {cid} has trailing bytes")
    if type(node) is not dict or node.keys() != _NODE_KEYS:
        raise MSTError(f"MST node {cid} must be exactly {{e, l}}")
    left = node["l"]
    if left is not None and (
        type(left) is not bytearray or len(left) != 36 or left[:4] != _DAG_PREFIX
    ):
        raise _bad_link(cid, "'l'", left, True)
    entries = node["e"]
    if type(entries) is not list:
        raise MSTError(f"MST node {cid} 'e' must be an array")
    if len(entries) > MAX_NODE_ENTRIES:
        raise MSTError(f"MST node {cid} has more than {MAX_NODE_ENTRIES} entries")
    keys: list[bytes] = []
    values: list[bytearray] = []
    rights: list[bytearray | None] = []
    prev = b""
    for i, entry in enumerate(entries):
        if type(entry) is not dict or entry.keys() != _ENTRY_KEYS:
            raise MSTError(f"MST node {cid} entry {i} must be exactly {{k, p, t, v}}")
        # cbrrr guarantees canonical key order, so the values come as k, p, t, v
        suffix, p, right, value = entry.values()
        if type(p) is not int or type(suffix) is not bytes:
            raise MSTError(f"MST node {cid} entry {i}: p must be an int and k bytes")
        if p < 0 or p > len(prev):  # the first entry has prev == b"", so p must be 0
            raise MSTError(f"MST node {cid} entry {i}: prefix length {p} out of range")
        key = prev[:p] + suffix
        if not key or len(key) > _MAX_KEY:
            raise MSTError(f"MST node {cid} entry {i}: key length {len(key)} out of range")
        # key[:p] == prev[:p] by construction, so p is the full common prefix iff the next
        # bytes differ (or a key ends there)
        if p < len(prev) and p < len(key) and prev[p] == key[p]:
            raise MSTError(f"MST node {cid} entry {i}: key prefix is not fully compressed")
        if key <= prev:
            raise MSTError(f"MST node {cid}: entries are not in strictly increasing key order")
        if type(value) is not bytearray or len(value) != 36 or not value.startswith(_DAG_PREFIX):
            raise _bad_link(cid, f"entry {i} 'v'", value, False)
        if right is not None and (
            type(right) is not bytearray or len(right) != 36 or not right.startswith(_DAG_PREFIX)
        ):
            raise _bad_link(cid, f"entry {i} 't'", right, True)
        keys.append(key)
        values.append(value)
        rights.append(right)
        prev = key
    return left, keys, values, rights


def lookup(blocks: Mapping[CID, bytes], root: CID, key: bytes) -> CID | None:
    """Walk the MST from ``root`` to ``key``; return its value CID, or None if proven absent.

    ``blocks`` must already be hash-verified (e.g. from :func:`~holdca.atproto.car.read_car`).

    Raises:
        IncompleteProofError: a node on the path is not in ``blocks``.
        MSTError: a visited node breaks an MST invariant (see the module docstring).
    """
    target_height = key_height(key)
    cid: CID | None = root
    lo: bytes | None = None
    hi: bytes | None = None
    layer: int | None = None
    while cid is not None:
        if cid.codec != CODEC_DAG_CBOR:
            raise MSTError(f"MST node link {cid} is not a dag-cbor CID")
        block = blocks.get(cid)
        if block is None:
            where = "root" if layer is None else f"layer {layer}"
            raise IncompleteProofError(f"proof lacks MST node {cid} ({where})")
        left, keys, values, rights = _parse_node(block, cid)
        if keys:
            heights = {
                (256 - int.from_bytes(_sha256(k).digest(), "big").bit_length()) >> 1 for k in keys
            }
            if len(heights) != 1:
                raise MSTError(f"MST node {cid} mixes keys of different heights")
            height = heights.pop()
            if layer is not None and height != layer:
                raise MSTError(f"MST node {cid} has keys of height {height}, expected {layer}")
            layer = height
            if (lo is not None and keys[0] <= lo) or (hi is not None and keys[-1] >= hi):
                raise MSTError(f"MST node {cid} has keys outside its parent's range")
        elif layer is None:
            if left is not None:
                raise MSTError("MST root is an empty node pointing to a child")
            return None
        elif left is None:
            raise MSTError(f"MST node {cid} is empty")
        if layer == 0 and (left is not None or any(r is not None for r in rights)):
            raise MSTError(f"MST node {cid} at layer 0 links to a lower layer")
        n = len(keys)
        idx = bisect_left(keys, key)
        if idx < n and keys[idx] == key:
            return CID(bytes(values[idx]))
        if target_height >= layer:
            return None  # it would sit in this node: proven absent
        if idx == 0:
            nxt = left
        else:
            nxt = rights[idx - 1]
            lo = keys[idx - 1]
        if idx < n:
            hi = keys[idx]
        cid = CID(bytes(nxt)) if nxt is not None else None
        layer -= 1
    return None
