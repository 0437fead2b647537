"""RFC 6962 / RFC 9162 Merkle tree hashing, proof generation and proof verification.

Pure functions over bytes: no I/O. Proof *generation* takes a ``subtree(level, index)``
callback returning the hash of the complete subtree of ``2**level`` leaves starting at
leaf ``index * 2**level`` (:mod:`holdca.tlog.tiles` answers it from stored tiles), so no
function here needs every node of a large tree in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from holdca.errors import TlogError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Subtree",
    "consistency_path",
    "fold_root",
    "inclusion_path",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in one SHA-256 hash."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root hash of the empty tree: SHA-256 of nothing."""

Subtree = Callable[[int, int], bytes]
"""``subtree(level, index)``: the hash of leaves ``[index << level, (index + 1) << level)``."""


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def fold_root(subtrees: Sequence[bytes]) -> bytes:
    """The MTH of adjacent complete subtrees given left to right, largest first.

    ``subtrees`` is the binary decomposition of a range (as :func:`range_hash` makes it);
    the empty sequence is :data:`EMPTY_ROOT`.
    """
    if not subtrees:
        return EMPTY_ROOT
    acc = subtrees[-1]
    for h in reversed(subtrees[:-1]):
        acc = node_hash(h, acc)
    return acc


def tree_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The MTH of a list of leaf hashes held in memory (small trees: a tile, a test)."""
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    # Reduce pairwise; an odd last hash is carried up unchanged (RFC 6962 split rule).
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def range_hash(subtree: Subtree, start: int, end: int) -> bytes:
    """MTH of leaves ``[start, end)`` where ``start`` is aligned as RFC 9162 recursion makes it.

    The range is split into maximal aligned complete subtrees (read with ``subtree``)
    and folded; for the ranges :func:`inclusion_path` and :func:`consistency_path` ask
    for, this equals the RFC's MTH of that range.
    """
    parts: list[bytes] = []
    while start < end:
        level = (end - start).bit_length() - 1
        while start & ((1 << level) - 1):
            level -= 1
        parts.append(subtree(level, start >> level))
        start += 1 << level
    return fold_root(parts)


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_size(index: int, size: int, what: str) -> None:
    if not (0 <= index < size):
        raise TlogError(f"{what} {index} is outside a tree of size {size}")


def inclusion_path(subtree: Subtree, index: int, size: int) -> list[bytes]:
    """RFC 9162 ``PATH(index, D[0:size])``, leaf to root.

    Raises:
        TlogError: ``index`` is not below ``size``.
    """
    _check_size(index, size, "leaf index")
    path: list[bytes] = []
    start, n, m = 0, size, index
    while n > 1:
        k = _split(n)
        if m < k:
            path.append(range_hash(subtree, start + k, start + n))
            n = k
        else:
            path.append(range_hash(subtree, start, start + k))
            start, n, m = start + k, n - k, m - k
    path.reverse()
    return path


def consistency_path(subtree: Subtree, old: int, new: int) -> list[bytes]:
    """RFC 9162 ``PROOF(old, D[0:new])``; empty when ``old`` is 0 or equals ``new``.

    Raises:
        TlogError: ``old`` is negative or larger than ``new``.
    """
    if not (0 <= old <= new):
        raise TlogError(f"no consistency proof from size {old} to size {new}")
    if old in (0, new):
        return []
    path: list[bytes] = []
    start, n, m, complete = 0, new, old, True
    while m != n:
        k = _split(n)
        if m <= k:
            path.append(range_hash(subtree, start + k, start + n))
            n = k
        else:
            path.append(range_hash(subtree, start, start + k))
            start, n, m, complete = start + k, n - k, m - k, False
    if not complete:
        path.append(range_hash(subtree, start, start + n))
    path.reverse()
    return path


def verify_inclusion(
    entry_hash: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> None:
    """Check an RFC 9162 inclusion proof (section 2.1.3.2) of leaf hash ``entry_hash``.

    Raises:
        TlogError: the index is out of range, the path has the wrong length or a hash of
            the wrong size, or the recomputed root differs from ``root``.
    """
    _check_size(index, size, "leaf index")
    fn, sn, r = index, size - 1, entry_hash
    for p in path:
        if len(p) != HASH_SIZE or sn == 0:
            raise TlogError("inclusion proof is malformed (too long or a bad hash)")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise TlogError("inclusion proof is too short")
    if r != root:
        raise TlogError(f"inclusion proof of leaf {index} does not lead to the root of {size}")


def verify_consistency(
    old: int, new: int, path: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Check an RFC 9162 consistency proof (section 2.1.4.2) between two tree heads.

    A tree of size 0 is consistent with every later tree (the proof must be empty); equal
    sizes need an empty proof and equal roots.

    Raises:
        TlogError: the sizes are out of order, the proof is malformed, or either root
            does not match (a fork or a rewrite of the log).
    """
    if not (0 <= old <= new):
        raise TlogError(f"tree size went backwards: {old} -> {new}")
    if old in (0, new):
        if path:
            raise TlogError("consistency proof must be empty for these sizes")
        if old == new and old_root != new_root:
            raise TlogError(f"two different roots for tree size {old}: the log forked")
        return
    if not path or any(len(p) != HASH_SIZE for p in path):
        raise TlogError("consistency proof is malformed")
    hashes = list(path)
    if old & (old - 1) == 0:  # a power of two: the old root is the first node
        hashes.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            raise TlogError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise TlogError("consistency proof is too short")
    if fr != old_root:
        raise TlogError(f"the tree of size {new} does not extend the tree of size {old}")
    if sr != new_root:
        raise TlogError(f"consistency proof does not lead to the root of size {new}")
