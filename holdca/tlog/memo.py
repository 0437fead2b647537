"""Complete-subtree hashes remembered across the sizes of a growing log (cheap proofs).

A complete subtree's hash never changes once its last leaf is in the log, whatever the
log grows to. :class:`SubtreeMemo` keeps the hashes it has computed or read, so the
inclusion proofs of a batch of new entries cost a few node hashes each (the siblings they
share are computed once) instead of a ``tree_root`` of up to 128 stored hashes per tile
level and proof, and it is read by many threads at once without a lock: an entry is
written once to a dict (an atomic operation) and a race only recomputes the same value.

Sans-I/O apart from the :class:`~holdca.tlog.tiles.TileReader` it is given.
"""

from __future__ import annotations

from holdca.errors import TlogError
from holdca.tlog.hashing import Subtree, inclusion_path, node_hash
from holdca.tlog.tiles import TILE_HEIGHT, TILE_WIDTH, TileReader, split_tile, tile_path

__all__ = ["SubtreeMemo"]


class SubtreeMemo:
    """The complete-subtree hashes of *one* log, shared by every size of it.

    Only use one memo for one log (one origin): the hashes of another log's subtrees
    differ. Holds at most about ``limit`` hashes; past that it forgets them all (the next
    proofs read their tiles again).
    """

    def __init__(self, limit: int = 1 << 16) -> None:
        """Remember up to ``limit`` hashes (about 150 bytes each)."""
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._nodes)

    def clear(self) -> None:
        """Forget every hash (the log directory was replaced, or another writer's)."""
        self._nodes.clear()

    def subtrees(self, reader: TileReader, size: int) -> Subtree:
        """The ``subtree(level, index)`` callback of the log of ``size`` behind ``reader``.

        Hashes not yet remembered are read from ``reader``'s tiles as published for
        ``size`` (a whole tile at a time) or computed from the two halves.

        Raises (from the callback):
            TlogError: the subtree is not complete at ``size``, or a tile is missing or
                of the wrong length.
        """
        nodes = self._nodes

        def stored(tile_level: int, position: int) -> bytes:
            key = (tile_level * TILE_HEIGHT, position)
            found = nodes.get(key)
            if found is not None:
                return found
            tile_index = position // TILE_WIDTH
            count = size >> (TILE_HEIGHT * tile_level)
            width = min(TILE_WIDTH, count - tile_index * TILE_WIDTH)
            data = reader.read(tile_path(tile_level, tile_index, width))
            hashes = split_tile(data, width)
            if len(nodes) + width > self._limit:
                nodes.clear()
            first = tile_index * TILE_WIDTH
            for offset, h in enumerate(hashes):
                nodes[(key[0], first + offset)] = h
            return hashes[position - first]

        def subtree(level: int, index: int) -> bytes:
            if level < 0 or index < 0 or (index + 1) << level > size:
                raise TlogError(f"subtree {level}/{index} is not complete at size {size}")
            found = nodes.get((level, index))
            if found is not None:
                return found
            rest = level % TILE_HEIGHT
            if rest == 0:
                return stored(level // TILE_HEIGHT, index)
            h = node_hash(subtree(level - 1, 2 * index), subtree(level - 1, 2 * index + 1))
            nodes[(level, index)] = h
            return h

        return subtree

    def inclusion_proof(self, reader: TileReader, index: int, size: int) -> list[bytes]:
        """The RFC 6962 inclusion proof of entry ``index`` in the log of ``size``.

        Raises:
            TlogError: ``index`` is not below ``size``, or a tile is missing or bad.
        """
        return inclusion_path(self.subtrees(reader, size), index, size)
