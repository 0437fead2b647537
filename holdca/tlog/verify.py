"""Verify a published log: every tile against the signed root, proofs, consistency.

This is the API the monitor uses. Everything reads through a
:class:`~holdca.tlog.tiles.TileReader` (a directory or HTTP) and raises on failure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from holdca.errors import TlogError
from holdca.tlog.checkpoint import Checkpoint, open_checkpoint
from holdca.tlog.hashing import leaf_hash, tree_root, verify_consistency, verify_inclusion
from holdca.tlog.note import NoteVerifier
from holdca.tlog.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    TileHashes,
    TileReader,
    bundle_path,
    consistency_proof,
    inclusion_proof,
    parse_bundle,
    tiles_for_size,
)

__all__ = [
    "LogVerifier",
    "check_consistency",
    "check_inclusion",
    "iter_entries",
    "verify_log",
]


def verify_log(reader: TileReader, checkpoint: Checkpoint, *, entries: bool = True) -> None:
    """Check every tile (and, with ``entries``, every bundle) of the log against ``checkpoint``.

    Each level-l tile hash must be the hash of the matching full tile at level l-1, each
    level-0 hash the leaf hash of the matching bundle entry, and the tree hash of the
    partial tiles the checkpoint's root. Reads each tile about twice; keeps a few in memory.

    Raises:
        TlogError: a tile or bundle is missing, malformed or does not match.
    """
    hashes = TileHashes(reader, checkpoint.size)
    if hashes.root() != checkpoint.root:
        raise TlogError(f"the tiles of size {checkpoint.size} do not lead to the signed root")
    below = TileHashes(reader, checkpoint.size, cache=2)
    for level, index, width in tiles_for_size(checkpoint.size):
        tile = hashes.tile(level, index)
        if level == 0:
            if entries:
                data = reader.read(bundle_path(index, width))
                if [leaf_hash(e) for e in parse_bundle(data, width)] != tile:
                    raise TlogError(f"entry bundle {index} does not match its level-0 tile")
            continue
        for i, h in enumerate(tile):
            child = index * TILE_WIDTH + i
            if tree_root(below.tile(level - 1, child)) != h:
                raise TlogError(f"tile {level}/{index} hash {i} does not match the tile below")


def check_inclusion(
    reader: TileReader, checkpoint: Checkpoint, index: int, entry: bytes
) -> list[bytes]:
    """Prove ``entry`` is at ``index`` under ``checkpoint``; returns the checked proof.

    Raises:
        TlogError: the index is out of range, a tile is bad, or the proof fails.
    """
    proof = inclusion_proof(reader, index, checkpoint.size)
    verify_inclusion(leaf_hash(entry), index, checkpoint.size, proof, checkpoint.root)
    return proof


def check_consistency(reader: TileReader, old: Checkpoint, new: Checkpoint) -> list[bytes]:
    """Check that ``new`` extends ``old`` (proof read from ``new``'s tiles); returns it.

    Raises:
        TlogError: different origins, the log went backwards, two roots for one size (a
            fork), or the proof fails.
    """
    if old.origin != new.origin:
        raise TlogError(f"checkpoint origins differ: {old.origin!r} and {new.origin!r}")
    if new.size < old.size:
        raise TlogError(f"the log went backwards from size {old.size} to {new.size}")
    proof = consistency_proof(reader, old.size, new.size) if new.size != old.size else []
    verify_consistency(old.size, new.size, proof, old.root, new.root)
    return proof


def iter_entries(reader: TileReader, checkpoint: Checkpoint, start: int = 0) -> Iterator[bytes]:
    """The raw entries ``start..size-1`` under ``checkpoint``, from the bundles.

    Checks each bundle's entries against the level-0 tile (so against the signed root
    once :func:`verify_log` or the tile hashes were checked).

    Raises:
        TlogError: a bundle is missing, malformed or does not match its tile.
    """
    hashes = TileHashes(reader, checkpoint.size, cache=2)
    size = checkpoint.size
    index = max(start, 0) >> TILE_HEIGHT
    while index * TILE_WIDTH < size:
        width = min(TILE_WIDTH, size - index * TILE_WIDTH)
        bundle = parse_bundle(reader.read(bundle_path(index, width)), width)
        if [leaf_hash(e) for e in bundle] != hashes.tile(0, index):
            raise TlogError(f"entry bundle {index} does not match its level-0 tile")
        for i, e in enumerate(bundle):
            if index * TILE_WIDTH + i >= start:
                yield e
        index += 1


class LogVerifier:
    """A log as a monitor sees it: a reader, the log's keys and its origin."""

    def __init__(self, reader: TileReader, verifiers: Sequence[NoteVerifier], origin: str) -> None:
        """Check checkpoints of ``origin`` signed by any of ``verifiers``."""
        self.reader = reader
        self.verifiers = list(verifiers)
        self.origin = origin

    def checkpoint(self, data: bytes | None = None) -> Checkpoint:
        """Verify ``data`` (default: the published checkpoint) and its tree hash.

        Raises:
            TlogError: malformed, wrong origin, or the tiles do not lead to its root.
            SignatureInvalidError: not signed by one of the log's keys.
        """
        raw = self.reader.read("checkpoint") if data is None else data
        checkpoint, _ = open_checkpoint(raw, self.verifiers, origin=self.origin)
        if TileHashes(self.reader, checkpoint.size).root() != checkpoint.root:
            raise TlogError(f"the tiles of size {checkpoint.size} do not lead to the signed root")
        return checkpoint

    def verify_all(self, checkpoint: Checkpoint) -> None:
        """:func:`verify_log` of the whole log."""
        verify_log(self.reader, checkpoint)

    def consistent(self, old: Checkpoint, new: Checkpoint) -> list[bytes]:
        """:func:`check_consistency`."""
        return check_consistency(self.reader, old, new)

    def entries(self, checkpoint: Checkpoint, start: int = 0) -> Iterator[bytes]:
        """:func:`iter_entries`."""
        return iter_entries(self.reader, checkpoint, start)
