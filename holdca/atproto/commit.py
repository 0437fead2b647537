"""Repo commit objects (repo format v3) and their signatures.

A commit is exactly ``{did, version, data, rev, prev, sig}`` (atproto spec repository "Commit
Objects"): ``version == 3``, ``did`` a string, ``data`` a dag-cbor CID (the MST root), ``rev`` a
TID, ``prev`` a CID or null (present even when null), ``sig`` 64 bytes. The signature is
ECDSA-SHA256 over the DAG-CBOR of the commit without the ``sig`` key.

The signed bytes are spliced out of the received block rather than re-encoded: the block was
decoded strictly, so it is canonical, its keys come in the order ``did, rev, sig, data, prev,
version`` and removing the ``sig`` pair (and decrementing the map header) yields exactly the
canonical encoding of the unsigned commit. :func:`unsigned_commit_bytes` does the splice and checks
the bytes it removes; tests prove it equal to re-encoding.

Decoding is strict DAG-CBOR. For blocks up to 128 KiB the pure-Python prescan is skipped: what
only it rejects (floats, integers beyond 64 bits, deep nesting, too many items) cannot pass the
exact field checks that follow, which admit no container, no float and only ``version == 3``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from cbrrr._cbrrr import decode_dag_cbor as _decode_dag_cbor

from holdca.atproto import dagcbor
from holdca.atproto.cid import CID, CODEC_DAG_CBOR
from holdca.atproto.didkey import PublicKey
from holdca.atproto.syntax import validate_tid
from holdca.errors import ATURIError, CIDError, CommitError, DAGCBORError

__all__ = ["Commit", "commit_fields", "parse_commit", "unsigned_commit_bytes", "verify_commit"]

_COMMIT_KEYS: Final = frozenset({"did", "version", "data", "rev", "prev", "sig"})
_SMALL_BLOCK: Final = dagcbor.DEFAULT_LIMITS.max_items  # bytes; see _decode_commit
_SCALARS: Final = frozenset({int, str, bool, float, bytes, type(None)})


@dataclass(frozen=True, slots=True)
class Commit:
    """A structurally valid v3 commit (signature not yet checked).

    Attributes:
        cid: CID of the commit block.
        did: the repo's DID as written in the commit.
        data: CID of the MST root.
        rev: the revision TID.
        prev: previous commit CID (virtually always None).
        sig: the 64-byte signature.
        unsigned: the exact bytes that were signed.
    """

    cid: CID
    did: str
    data: CID
    rev: str
    prev: CID | None
    sig: bytes
    unsigned: bytes


def _text_head_len(length: int) -> int:
    if length < 24:
        return 1
    if length < 0x100:
        return 2
    if length < 0x10000:
        return 3
    if length < 0x100000000:
        return 5
    return 9


def unsigned_commit_bytes(block: bytes, did: str, rev: str, sig: bytes) -> bytes:
    """Splice the ``sig`` pair out of a canonical 6-key commit block.

    Raises:
        CommitError: the block does not have the canonical layout expected for these values.
    """
    did_len = len(did.encode())
    rev_len = len(rev.encode())
    start = 1 + 4 + _text_head_len(did_len) + did_len + 4 + _text_head_len(rev_len) + rev_len
    pair = b"\x63sig\x58\x40" + sig
    if block[:1] != b"\xa6" or block[start : start + len(pair)] != pair:
        raise CommitError("commit block does not have the canonical key layout")
    return b"\xa5" + block[1:start] + block[start + len(pair) :]


def parse_commit(block: bytes, cid: CID) -> Commit:
    """Decode and check the shape of a v3 commit block.

    Raises:
        CommitError: not strict DAG-CBOR, not a map, wrong key set, version not 3, or a field
            of the wrong type (including ``rev`` not a TID and ``sig`` not 64 bytes).
    """
    did, data, rev, prev, sig, unsigned = commit_fields(block)
    return Commit(cid=cid, did=did, data=data, rev=rev, prev=prev, sig=sig, unsigned=unsigned)


def commit_fields(block: bytes) -> tuple[str, CID, str, CID | None, bytes, bytes]:
    """:func:`parse_commit` without the wrapper: ``(did, data, rev, prev, sig, unsigned)``.

    Raises:
        CommitError: as :func:`parse_commit`.
    """
    obj = _decode_commit(block)
    if type(obj) is not dict:
        raise CommitError("CAR root block is not a commit (not a map)")
    version = obj.get("version")
    if "version" in obj and version != 3:
        # only scalars are shown: a container may nest deeply (the small-block path skips the
        # depth limit, so repr() could recurse too far)
        shown = repr(version)[:40] if type(version) in _SCALARS else type(version).__name__
        raise CommitError(f"unsupported commit version {shown} (only 3)")
    if obj.keys() != _COMMIT_KEYS:
        missing = sorted(_COMMIT_KEYS - obj.keys())
        extra = sorted(obj.keys() - _COMMIT_KEYS)
        raise CommitError(f"commit fields wrong: missing {missing}, unexpected {extra}")
    if type(version) is not int:  # not bool, not a float equal to 3
        raise CommitError("commit version must be an integer")
    did = obj["did"]
    data = obj["data"]
    rev = obj["rev"]
    prev = obj["prev"]
    sig = obj["sig"]
    if type(did) is not str:
        raise CommitError("commit did must be a string")
    if type(data) is not CID or data.codec != CODEC_DAG_CBOR:
        raise CommitError("commit data must be a dag-cbor CID link")
    if type(rev) is not str:
        raise CommitError("commit rev must be a string")
    try:
        validate_tid(rev)
    except ATURIError:
        raise CommitError(f"commit rev is not a TID: {rev[:40]!r}") from None
    if prev is not None and type(prev) is not CID:
        raise CommitError("commit prev must be a CID link or null")
    if type(sig) is not bytes or len(sig) != 64:
        raise CommitError("commit sig must be 64 bytes (r||s)")
    return did, data, rev, prev, sig, unsigned_commit_bytes(block, did, rev, sig)


def _decode_commit(block: bytes) -> Any:
    """Strictly decode a commit block.

    Small blocks skip :func:`~holdca.atproto.dagcbor.prescan`: the walk adds nothing here,
    because a commit admits no container, float or large integer in any field (the shape
    checks reject them after decoding), and a block of at most ``max_items`` bytes cannot
    exceed the item limit. Larger blocks take the full :func:`~holdca.atproto.dagcbor.decode`.
    """
    if type(block) is not bytes or len(block) > _SMALL_BLOCK:
        try:
            return dagcbor.decode(block)
        except (DAGCBORError, CIDError) as exc:
            raise CommitError(f"commit block is not valid DAG-CBOR: {exc}") from None
    try:
        obj, used = _decode_dag_cbor(block, CID, False)
    except CIDError as exc:
        raise CommitError(f"commit block is not valid DAG-CBOR: {exc}") from None
    except (ValueError, TypeError, OverflowError, MemoryError, RecursionError) as exc:
        raise CommitError(f"commit block is not valid DAG-CBOR: {str(exc)[:120]}") from None
    if used != len(block):
        raise CommitError("commit block is not valid DAG-CBOR: trailing bytes")
    return obj


def verify_commit(commit: Commit, key: PublicKey) -> None:
    """Verify the commit signature with ``key`` (64-byte r||s, low-S, ECDSA-SHA256).

    Raises:
        SignatureInvalidError: the signature does not verify with ``key``.
    """
    key.verify(commit.unsigned, commit.sig)
