"""C2SP tlog-tiles: tile and entry-bundle paths, the incremental appender, stored hashes.

Sans-I/O. A log is a set of immutable files named by :func:`tile_path` and
:func:`bundle_path`; :func:`append` turns a :class:`LogState` and a batch of entries into
the new state and the files to write; :class:`TileHashes` answers any complete-subtree
hash (and so tree hashes and proofs) from tiles read through a :class:`TileReader`,
holding only a few tiles in memory at a time.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from holdca.errors import TlogError
from holdca.tlog.hashing import (
    HASH_SIZE,
    consistency_path,
    fold_root,
    inclusion_path,
    leaf_hash,
    range_hash,
    tree_root,
)

__all__ = [
    "MAX_ENTRY_SIZE",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "LogState",
    "TileHashes",
    "TileReader",
    "TileWrite",
    "append",
    "bundle_path",
    "consistency_proof",
    "encode_bundle",
    "inclusion_proof",
    "parse_bundle",
    "split_tile",
    "state_from_reader",
    "tile_path",
    "tiles_for_size",
    "tree_hash",
]

TILE_HEIGHT = 8
"""Tree levels per tile."""

TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes in a full tile, entries in a full bundle: 256."""

MAX_ENTRY_SIZE = 0xFFFF
"""Largest entry a bundle can hold (its length is a uint16)."""


def _index_path(n: int) -> str:
    """``1234067`` -> ``x001/x234/067`` (3-digit groups, ``x`` on all but the last)."""
    if n < 0:
        raise TlogError(f"negative tile index {n}")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]`` relative to the log prefix.

    Raises:
        TlogError: a negative level or index, or a width outside 1..256.
    """
    if level < 0 or not 1 <= width <= TILE_WIDTH:
        raise TlogError(f"no tile at level {level} of width {width}")
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{_index_path(index)}{suffix}"


def bundle_path(index: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/<N>[.p/<W>]`` relative to the log prefix.

    Raises:
        TlogError: a negative index or a width outside 1..256.
    """
    if not 1 <= width <= TILE_WIDTH:
        raise TlogError(f"no entry bundle of width {width}")
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/entries/{_index_path(index)}{suffix}"


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    """Entries as ``uint16-BE length || entry`` records.

    Raises:
        TlogError: an entry is longer than :data:`MAX_ENTRY_SIZE`.
    """
    items = entries if isinstance(entries, (list, tuple)) else list(entries)
    longest = max(map(len, items), default=0)
    if longest > MAX_ENTRY_SIZE:
        raise TlogError(f"entry of {longest} bytes: entries hold at most {MAX_ENTRY_SIZE}")
    return b"".join([len(e).to_bytes(2, "big") + e for e in items])


def parse_bundle(data: bytes, count: int) -> list[bytes]:
    """Split a bundle into exactly ``count`` entries.

    Raises:
        TlogError: a record is truncated, or the bundle holds more or fewer entries.
    """
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise TlogError("entry bundle is truncated (a length prefix is cut)")
        (n,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if pos + n > len(data):
            raise TlogError("entry bundle is truncated (an entry is cut)")
        entries.append(data[pos : pos + n])
        pos += n
    if len(entries) != count:
        raise TlogError(f"entry bundle holds {len(entries)} entries, expected {count}")
    return entries


def split_tile(data: bytes, width: int) -> list[bytes]:
    """A tile's bytes as ``width`` hashes.

    Raises:
        TlogError: the tile is not exactly ``width * 32`` bytes.
    """
    if len(data) != width * HASH_SIZE:
        raise TlogError(f"tile has {len(data)} bytes, expected {width * HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


@dataclass(frozen=True)
class TileWrite:
    """One immutable file to publish: ``path`` relative to the log prefix, and its bytes."""

    path: str
    data: bytes


@dataclass(frozen=True)
class LogState:
    """What the appender needs of a log: its size, right edge and open entry bundle.

    Attributes:
        size: entries in the log.
        edges: per tile level (0 = leaves), the hashes of that level's partial tile (fewer
            than 256 each); every level up to the top one, possibly empty.
        bundle: the entries of the partial entry bundle (``size % 256`` of them).
    """

    size: int = 0
    edges: tuple[tuple[bytes, ...], ...] = ()
    bundle: tuple[bytes, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.bundle) != self.size % TILE_WIDTH:
            raise TlogError(f"log state of size {self.size} has a bundle of {len(self.bundle)}")
        for level, edge in enumerate(self.edges):
            if len(edge) != (self.size >> (TILE_HEIGHT * level)) % TILE_WIDTH:
                raise TlogError(f"log state of size {self.size}: bad edge at level {level}")
            if edge and not min(map(len, edge)) == max(map(len, edge)) == HASH_SIZE:
                raise TlogError(f"log state of size {self.size}: bad hash at level {level}")
        if self.size >> (TILE_HEIGHT * len(self.edges)):
            raise TlogError(f"log state of size {self.size} lacks its upper levels")

    @cached_property
    def root(self) -> bytes:
        """The RFC 6962 root hash of the log (SHA-256("") when empty; computed once)."""
        parts: list[bytes] = []
        for edge in reversed(self.edges):
            # the partial tile's hashes split into complete subtrees, largest first
            start = 0
            while start < len(edge):
                span = 1 << ((len(edge) - start).bit_length() - 1)
                parts.append(tree_root(edge[start : start + span]))
                start += span
        return fold_root(parts)


def _partial_paths(state: LogState) -> Iterator[str]:
    """The paths of :func:`_partial_tiles` (without encoding them)."""
    for level, edge in enumerate(state.edges):
        if edge:
            yield tile_path(level, state.size >> (TILE_HEIGHT * (level + 1)), len(edge))
    if state.bundle:
        yield bundle_path(state.size >> TILE_HEIGHT, len(state.bundle))


def _partial_tiles(state: LogState) -> Iterator[TileWrite]:
    for level, edge in enumerate(state.edges):
        if edge:
            index = state.size >> (TILE_HEIGHT * (level + 1))
            yield TileWrite(tile_path(level, index, len(edge)), b"".join(edge))
    if state.bundle:
        index = state.size >> TILE_HEIGHT
        yield TileWrite(bundle_path(index, len(state.bundle)), encode_bundle(state.bundle))


def append(state: LogState, entries: Sequence[bytes]) -> tuple[LogState, list[TileWrite]]:
    """Append ``entries``: the new state and the tiles and bundles to publish for it.

    The writes are every full tile and bundle the batch completed, then the partial
    tiles and bundle of the new size (tiles already published for ``state`` are not
    repeated). Work is O(len(entries)) hashes plus one tile hash per tile completed.

    Raises:
        TlogError: an entry is longer than 65535 bytes (nothing is appended).
    """
    for e in entries:
        if len(e) > MAX_ENTRY_SIZE:
            raise TlogError(f"entry of {len(e)} bytes: entries hold at most {MAX_ENTRY_SIZE}")
    if not entries:
        return state, []
    old_partials = set(_partial_paths(state))
    edges = [list(e) for e in state.edges] or [[]]
    bundle = list(state.bundle)
    size = state.size
    writes: list[TileWrite] = []
    for entry in entries:
        bundle.append(entry)
        if len(bundle) == TILE_WIDTH:
            writes.append(TileWrite(bundle_path(size >> TILE_HEIGHT), encode_bundle(bundle)))
            bundle = []
        h = leaf_hash(entry)
        level = 0
        while True:
            edges[level].append(h)
            if len(edges[level]) < TILE_WIDTH:
                break
            index = size >> (TILE_HEIGHT * (level + 1))
            writes.append(TileWrite(tile_path(level, index), b"".join(edges[level])))
            h = tree_root(edges[level])
            edges[level] = []
            level += 1
            if level == len(edges):
                edges.append([])
        size += 1
    while len(edges) > 1 and not edges[-1]:
        edges.pop()
    new = LogState(size, tuple(tuple(e) for e in edges), tuple(bundle))
    writes.extend(w for w in _partial_tiles(new) if w.path not in old_partials)
    return new, writes


class TileReader(Protocol):
    """Reads one published file of a log by its path relative to the log prefix."""

    def read(self, path: str) -> bytes:
        """The file's bytes.

        Raises:
            TlogError: the file is missing or cannot be read.
        """
        ...


def tiles_for_size(size: int) -> Iterator[tuple[int, int, int]]:
    """Every ``(level, index, width)`` of the tiles a log of ``size`` publishes, bottom up."""
    level = 0
    while size >> (TILE_HEIGHT * level):
        count = size >> (TILE_HEIGHT * level)
        for index in range(count // TILE_WIDTH):
            yield level, index, TILE_WIDTH
        if count % TILE_WIDTH:
            yield level, count // TILE_WIDTH, count % TILE_WIDTH
        level += 1


class TileHashes:
    """Stored hashes of a log of ``size`` entries, read from its tiles on demand.

    Keeps the last ``cache`` tiles read. Tiles are *not* checked against a root here:
    compare :meth:`root` with a signed checkpoint (or use :func:`holdca.tlog.verify_log`).
    """

    def __init__(self, reader: TileReader, size: int, *, cache: int = 64) -> None:
        """Answer for a log of ``size`` (the size of a published checkpoint)."""
        if size < 0:
            raise TlogError(f"negative log size {size}")
        self.reader = reader
        self.size = size
        self._cache: OrderedDict[tuple[int, int], list[bytes]] = OrderedDict()
        self._limit = cache

    def tile(self, level: int, index: int) -> list[bytes]:
        """The hashes of tile ``(level, index)`` as published for :attr:`size`.

        Raises:
            TlogError: the tile is beyond the log, missing, or the wrong length.
        """
        key = (level, index)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        count = self.size >> (TILE_HEIGHT * level)
        if index * TILE_WIDTH >= count:
            raise TlogError(f"tile {level}/{index} is beyond a log of size {self.size}")
        width = min(TILE_WIDTH, count - index * TILE_WIDTH)
        hashes = split_tile(self.reader.read(tile_path(level, index, width)), width)
        self._cache[key] = hashes
        if len(self._cache) > self._limit:
            self._cache.popitem(last=False)
        return hashes

    def subtree(self, level: int, index: int) -> bytes:
        """The hash of the complete subtree of ``2**level`` leaves numbered ``index``.

        Raises:
            TlogError: the subtree is not complete in this log, or a tile is bad.
        """
        if (index + 1) << level > self.size:
            raise TlogError(f"subtree {level}/{index} is not complete at size {self.size}")
        tile_level, rest = divmod(level, TILE_HEIGHT)
        first = index << rest  # first hash of tile_level covered
        tile_index, offset = divmod(first, TILE_WIDTH)
        hashes = self.tile(tile_level, tile_index)[offset : offset + (1 << rest)]
        return tree_root(hashes)

    def root(self) -> bytes:
        """The root hash of the log of :attr:`size`, from its tiles."""
        return range_hash(self.subtree, 0, self.size)


def tree_hash(reader: TileReader, size: int) -> bytes:
    """The root hash of the log of ``size`` from its published tiles."""
    return TileHashes(reader, size).root()


def inclusion_proof(reader: TileReader, index: int, size: int) -> list[bytes]:
    """The inclusion proof of entry ``index`` in the log of ``size`` (a published size).

    Raises:
        TlogError: ``index`` is not below ``size``, or a tile is missing or bad.
    """
    return inclusion_path(TileHashes(reader, size).subtree, index, size)


def consistency_proof(reader: TileReader, old: int, new: int) -> list[bytes]:
    """The consistency proof from size ``old`` to size ``new`` (read from ``new``'s tiles).

    Raises:
        TlogError: ``old > new``, or a tile is missing or bad.
    """
    return consistency_path(TileHashes(reader, new).subtree, old, new)


def state_from_reader(reader: TileReader, size: int) -> LogState:
    """Rebuild the appender's :class:`LogState` of a published log from its partial tiles.

    Reads one partial tile per level and the partial entry bundle: nothing else.

    Raises:
        TlogError: a tile or the bundle is missing or malformed.
    """
    hashes = TileHashes(reader, size)
    edges: list[tuple[bytes, ...]] = []
    level = 0
    while count := size >> (TILE_HEIGHT * level):
        width = count % TILE_WIDTH
        edges.append(tuple(hashes.tile(level, count // TILE_WIDTH)) if width else ())
        level += 1
    bundle: tuple[bytes, ...] = ()
    if size % TILE_WIDTH:
        width = size % TILE_WIDTH
        data = reader.read(bundle_path(size >> TILE_HEIGHT, width))
        bundle = tuple(parse_bundle(data, width))
        if tuple(leaf_hash(e) for e in bundle) != edges[0]:
            raise TlogError("the partial entry bundle does not match its level-0 tile")
    return LogState(size, tuple(edges), bundle)
