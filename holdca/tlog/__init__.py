"""A C2SP tlog-tiles transparency log of issued certificates (see docs/transparency.md).

Sans-I/O core: :mod:`~holdca.tlog.hashing` (RFC 6962 hashes and proofs),
:mod:`~holdca.tlog.tiles` (paths, the incremental appender, hashes from tiles),
:mod:`~holdca.tlog.note` and :mod:`~holdca.tlog.checkpoint` (signed checkpoints),
:mod:`~holdca.tlog.entry` (the entry encoding), :mod:`~holdca.tlog.verify` (the
monitor's checks). I/O: :mod:`~holdca.tlog.store` (a directory, or HTTP via
:class:`holdca.net.Fetcher`).

Example::

    from holdca.keys import MemoryKeyStore
    from holdca.tlog import Ed25519NoteSigner, LogWriter

    signer = Ed25519NoteSigner("hold.example/log", MemoryKeyStore().generate_ed25519("log"))
    writer = LogWriter.open("/srv/log", signer)
    checkpoint = writer.append([entry.encode()])
"""

from __future__ import annotations

from holdca.tlog.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from holdca.tlog.entry import CertificateEntry, Entry, RevocationEntry, parse_entry
from holdca.tlog.hashing import (
    EMPTY_ROOT,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from holdca.tlog.note import (
    Ed25519NoteSigner,
    Ed25519NoteVerifier,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    SignedNote,
    open_note,
    parse_note,
    sign_note,
)
from holdca.tlog.store import DirectoryLog, HTTPLog, LogWriter
from holdca.tlog.tiles import (
    LogState,
    TileReader,
    TileWrite,
    append,
    bundle_path,
    consistency_proof,
    inclusion_proof,
    state_from_reader,
    tile_path,
    tree_hash,
)
from holdca.tlog.verify import (
    LogVerifier,
    check_consistency,
    check_inclusion,
    iter_entries,
    verify_log,
)

__all__ = [
    "EMPTY_ROOT",
    "CertificateEntry",
    "Checkpoint",
    "DirectoryLog",
    "Ed25519NoteSigner",
    "Ed25519NoteVerifier",
    "Entry",
    "HTTPLog",
    "LogState",
    "LogVerifier",
    "LogWriter",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "RevocationEntry",
    "SignedNote",
    "TileReader",
    "TileWrite",
    "append",
    "bundle_path",
    "check_consistency",
    "check_inclusion",
    "consistency_proof",
    "inclusion_proof",
    "iter_entries",
    "leaf_hash",
    "node_hash",
    "open_checkpoint",
    "open_note",
    "parse_entry",
    "parse_note",
    "sign_checkpoint",
    "sign_note",
    "state_from_reader",
    "tile_path",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
    "verify_log",
]
