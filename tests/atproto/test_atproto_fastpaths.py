"""The fast paths of proof verification reject exactly what the straightforward code rejects.

Oracles: reference implementations written the plain way (a full strict decode of every block
with :func:`holdca.atproto.dagcbor.decode`, CID objects everywhere, every MST rule checked one by
one) are run side by side with the optimised code on valid proofs and on randomly mutated blocks;
both must accept the same inputs with the same results and reject the same inputs with the same
error class.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from holdca.atproto import dagcbor
from holdca.atproto.car import BlockMap, CARLimits, read_car, read_car_raw, write_car
from holdca.atproto.cid import CID, CODEC_DAG_CBOR, parse_cid
from holdca.atproto.commit import commit_fields, parse_commit
from holdca.atproto.dagcbor import _prescan_is_redundant
from holdca.atproto.did import validate_did
from holdca.atproto.diddoc import (
    _document_signing_key,
    document_signing_key,
    parse_did_document,
)
from holdca.atproto.didkey import K256_ORDER, P256_ORDER, PublicKey
from holdca.atproto.mst import _HEIGHT_BOUNDS, key_height, lookup, lookup_raw
from holdca.atproto.syntax import (
    parse_record_uri,
    validate_nsid,
    validate_record_key,
    validate_tid,
)
from holdca.errors import (
    ATURIError,
    CARError,
    CIDError,
    CommitError,
    DAGCBORError,
    DIDDocumentError,
    HoldCAError,
    IncompleteProofError,
    MSTError,
    SignatureInvalidError,
)
from holdca.testing.atproto import TestRepo

# --- reference implementations (plain, unoptimised) ----------------------------------------


def ref_read_car(data: bytes) -> tuple[CID, dict[CID, bytes]]:
    """CARv1 with the header fully decoded and every block hash-checked via CID objects."""
    pos = 0
    header_len, pos = _ref_varint(data, pos)
    if not 0 < header_len <= 1024 or pos + header_len > len(data):
        raise CARError("bad header length")
    try:
        header = dagcbor.decode(data[pos : pos + header_len])
    except (DAGCBORError, CIDError) as exc:
        raise CARError(str(exc)) from None
    pos += header_len
    if not isinstance(header, dict) or set(header) != {"roots", "version"}:
        raise CARError("header shape")
    if header["version"] != 1 or isinstance(header["version"], bool):
        raise CARError("version")
    roots = header["roots"]
    if not isinstance(roots, list) or not roots or not all(isinstance(r, CID) for r in roots):
        raise CARError("roots")
    if len(roots) > 8:
        raise CARError("too many roots")
    blocks: dict[CID, bytes] = {}
    count = 0
    while pos < len(data):
        count += 1
        if count > 4096:
            raise CARError("too many blocks")
        size, pos = _ref_varint(data, pos)
        if size > (1 << 20) + 36 or pos + size > len(data) or size < 36:
            raise CARError("section size")
        try:
            cid, start = parse_cid(data, pos)
        except CIDError as exc:
            raise CARError(str(exc)) from None
        block = data[start : pos + size]
        if not cid.matches(block):
            raise CARError("hash mismatch")
        blocks[cid] = block
        pos += size
    return roots[0], blocks


def _ref_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise CARError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and shift:
                raise CARError("non-minimal varint")
            return value, pos
        shift += 7
        if shift >= 63:
            raise CARError("varint too long")


def ref_commit(block: bytes) -> tuple[str, CID, str, CID | None, bytes]:
    """A v3 commit: strict decode (prescan + codec), exact fields, every type checked."""
    try:
        obj = dagcbor.decode(block)
    except (DAGCBORError, CIDError) as exc:
        raise CommitError(str(exc)) from None
    if not isinstance(obj, dict) or set(obj) != {"did", "version", "data", "rev", "prev", "sig"}:
        raise CommitError("shape")
    version, did, data, rev = obj["version"], obj["did"], obj["data"], obj["rev"]
    prev, sig = obj["prev"], obj["sig"]
    if isinstance(version, bool) or version != 3 or not isinstance(version, int):
        raise CommitError("version")
    if not isinstance(did, str) or not isinstance(rev, str):
        raise CommitError("did/rev")
    if not isinstance(data, CID) or data.codec != CODEC_DAG_CBOR:
        raise CommitError("data")
    try:
        validate_tid(rev)
    except ATURIError:
        raise CommitError("rev") from None
    if prev is not None and not isinstance(prev, CID):
        raise CommitError("prev")
    if not isinstance(sig, bytes) or len(sig) != 64:
        raise CommitError("sig")
    return did, data, rev, prev, sig


def ref_lookup(blocks: Mapping[CID, bytes], root: CID, key: bytes) -> CID | None:
    """The MST walk with every node strictly decoded and every rule checked on its own."""
    cid: CID | None = root
    lo: bytes | None = None
    hi: bytes | None = None
    layer: int | None = None
    while cid is not None:
        if cid.codec != CODEC_DAG_CBOR:
            raise MSTError("link codec")
        block = blocks.get(cid)
        if block is None:
            raise IncompleteProofError("missing node")
        if len(block) > 128 * 1024:
            raise MSTError("node size")
        try:
            node = dagcbor.decode(block)
        except (DAGCBORError, CIDError) as exc:
            raise MSTError(str(exc)) from None
        if not isinstance(node, dict) or set(node) != {"e", "l"}:
            raise MSTError("node shape")
        left, entries = node["l"], node["e"]
        if left is not None and (not isinstance(left, CID) or left.codec != CODEC_DAG_CBOR):
            raise MSTError("l")
        if not isinstance(entries, list) or len(entries) > 1024:
            raise MSTError("e")
        keys: list[bytes] = []
        values: list[CID] = []
        rights: list[CID | None] = []
        prev = b""
        for entry in entries:
            if not isinstance(entry, dict) or set(entry) != {"k", "p", "t", "v"}:
                raise MSTError("entry shape")
            suffix, p, right, value = entry["k"], entry["p"], entry["t"], entry["v"]
            if type(p) is not int or not isinstance(suffix, bytes):
                raise MSTError("entry types")
            if not 0 <= p <= len(prev):
                raise MSTError("p range")
            full = prev[:p] + suffix
            if not full or len(full) > 1024:
                raise MSTError("key length")
            common = 0
            while common < min(len(prev), len(full)) and prev[common] == full[common]:
                common += 1
            if common != p:
                raise MSTError("prefix not fully compressed")
            if full <= prev:
                raise MSTError("order")
            if not isinstance(value, CID) or value.codec != CODEC_DAG_CBOR:
                raise MSTError("v")
            if right is not None and (not isinstance(right, CID) or right.codec != 0x71):
                raise MSTError("t")
            keys.append(full)
            values.append(value)
            rights.append(right)
            prev = full
        if keys:
            heights = {key_height(k) for k in keys}
            if len(heights) != 1 or (layer is not None and heights != {layer}):
                raise MSTError("heights")
            layer = heights.pop()
            if (lo is not None and keys[0] <= lo) or (hi is not None and keys[-1] >= hi):
                raise MSTError("bounds")
        elif layer is None:
            if left is not None:
                raise MSTError("empty root with child")
            return None
        elif left is None:
            raise MSTError("empty node")
        if layer == 0 and (left is not None or any(r is not None for r in rights)):
            raise MSTError("layer 0 child")
        idx = bisect_left(keys, key)
        if idx < len(keys) and keys[idx] == key:
            return values[idx]
        if key_height(key) >= layer:
            return None
        cid = left if idx == 0 else rights[idx - 1]
        if idx:
            lo = keys[idx - 1]
        if idx < len(keys):
            hi = keys[idx]
        layer -= 1
    return None


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", result) or ("error", the HoldCAError class); anything else propagates."""
    try:
        return "ok", fn()
    except HoldCAError as exc:
        return "error", type(exc)


# --- fixtures -------------------------------------------------------------------------------

_REPO = TestRepo.create()
_URIS = _REPO.put_manifests([f"sha256:{i:064x}" for i in range(300)])
_CARS = [_REPO.get_record_car(uri) for uri in _URIS[::37]]
_PATHS = [("io.atcr.manifest/" + uri.rsplit("/", 1)[1]).encode() for uri in _URIS[::37]]


def _mutate(data: bytes, draw: st.DataObject) -> bytes:
    out = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 3))):
        pos = draw.draw(st.integers(0, len(out) - 1))
        out[pos] = draw.draw(st.integers(0, 255))
    return bytes(out)


# --- DAG-CBOR: skipping the prescan ---------------------------------------------------------


def _decode_with_prescan(data: bytes) -> Any:
    dagcbor.prescan(data)
    return dagcbor.decode(data)


@settings(max_examples=1000)
@given(
    st.binary(max_size=80)
    | st.binary(max_size=40).map(lambda b: b"\xa1\x61a" + b)
    | st.binary(max_size=40).map(lambda b: b"\x82" + b)
)
def test_prescan_skip_is_exact(data: bytes) -> None:
    """Skipping the prescan (when the byte counts allow it) never changes the outcome."""
    assert outcome(lambda: dagcbor.decode(data)) == outcome(lambda: _decode_with_prescan(data))


def test_prescan_skip_bounds_depth_and_items() -> None:
    limits = dagcbor.DecodeLimits(max_depth=2, max_items=3)
    assert not _prescan_is_redundant(bytes.fromhex("818181"), limits)  # 3 container heads
    assert not _prescan_is_redundant(bytes.fromhex("83010203"), limits)  # 4 bytes > 3 items
    assert _prescan_is_redundant(bytes.fromhex("820102"), limits)
    for marker in ("fb", "1b", "3b"):  # float64, 8-byte uint / negint heads, even in a string
        assert not _prescan_is_redundant(bytes.fromhex("61" + marker), limits)


@settings(max_examples=300)
@given(st.data())
def test_record_decode_matches_prescan_then_codec(draw: st.DataObject) -> None:
    """decode (with the skip) == prescan followed by the codec, on mutated real records."""
    _, blocks = read_car_raw(_CARS[0])
    record = next(b for b in blocks.values() if b.startswith(b"\xa7"))
    data = _mutate(record, draw)
    assert outcome(lambda: dagcbor.decode(data)) == outcome(lambda: _decode_with_prescan(data))


# --- CAR ------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(_CARS)))
def test_car_matches_reference(index: int) -> None:
    car = read_car(_CARS[index])
    root, blocks = ref_read_car(_CARS[index])
    assert car.roots == (root,)
    assert dict(car.blocks) == blocks
    assert list(car.blocks) == list(blocks)


@settings(max_examples=300)
@given(st.data())
def test_mutated_car_matches_reference(draw: st.DataObject) -> None:
    data = _mutate(_CARS[1], draw)
    ours = outcome(lambda: (read_car(data).roots[0], dict(read_car(data).blocks)))
    assert ours == outcome(lambda: ref_read_car(data))


def test_header_fast_path_equals_general_path() -> None:
    cid = CID.for_dag_cbor(b"\xa0")
    block = (cid, b"\xa0")
    one = write_car([cid], [block])
    assert one[:2] == b"\x3a\xa2"  # the canonical one-root header the fast path matches
    two = write_car([cid, CID.for_raw(b"")], [block])
    assert read_car(one).roots == (cid,)
    assert read_car(two).roots == (cid, CID.for_raw(b""))
    # a raw-codec root also takes the fast path; an unsupported CID takes the general path
    raw_root = CID.for_raw(b"x")
    assert read_car(write_car([raw_root], [block])).roots == (raw_root,)
    bad = bytearray(one)
    bad[15] = 0x70  # dag-pb codec in the root CID
    with pytest.raises(CARError, match="not valid DAG-CBOR"):
        read_car(bytes(bad))
    # the limits still apply to a fast-path header
    with pytest.raises(CARError, match="header length"):
        read_car(one, CARLimits(max_header_size=57))
    with pytest.raises(CARError, match="more than 0 roots"):
        read_car(one, CARLimits(max_roots=0))


def test_block_map_api() -> None:
    car = read_car(_CARS[0])
    blocks = car.blocks
    assert isinstance(blocks, BlockMap)
    root = car.roots[0]
    assert blocks[root] == blocks[root.raw] == blocks.get(root) == blocks.raw[root.raw]
    assert root in blocks
    assert root.raw in blocks
    assert "x" not in blocks
    assert blocks.get(CID.for_dag_cbor(b"nope")) is None
    assert blocks.get(b"nope", b"") == b""
    with pytest.raises(KeyError):
        blocks[CID.for_dag_cbor(b"nope")]
    assert len(blocks) == len(list(blocks)) == len(blocks.raw)
    assert all(isinstance(c, CID) and c.matches(blocks[c]) for c in blocks)
    assert blocks == dict(blocks.items())
    assert "blocks" in repr(blocks)


# --- commit ---------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.data())
def test_mutated_commit_matches_reference(draw: st.DataObject) -> None:
    data = _mutate(_REPO.commit_block, draw)
    ours = outcome(lambda: commit_fields(data)[:5])
    assert ours == outcome(lambda: ref_commit(data))


def _commit_with(version_bytes: bytes) -> bytes:
    block = dagcbor.encode(
        {
            "did": "did:plc:6boi5tm4syehwjst6cei357y",
            "version": 3,
            "data": CID.for_dag_cbor(b"\xa0"),
            "rev": "3mbflmueaso22",
            "prev": None,
            "sig": b"\x01" * 64,
        }
    )
    assert block.endswith(b"\x67version\x03")
    return block[:-1] + version_bytes


@pytest.mark.parametrize(
    "version",
    [
        bytes.fromhex("fb4008000000000000"),  # 3.0 as float64
        bytes.fromhex("1b8000000000000003"),  # beyond the signed 64-bit range
        b"\x81" * 100_000 + b"\x00",  # nested far deeper than the depth limit
        b"\xa1\x61a" * 1000 + b"\x00",
    ],
    ids=["float", "huge-int", "deep-array", "deep-map"],
)
def test_commit_without_prescan_still_rejects(version: bytes) -> None:
    parse_commit(_commit_with(b"\x03"), CID.for_dag_cbor(b""))
    block = _commit_with(version)
    with pytest.raises(CommitError):
        parse_commit(block, CID.for_dag_cbor(block))


def test_large_commit_takes_the_full_decode() -> None:
    block = _commit_with(b"\x82\x00\x5a\x00\x02\x00\x00" + b"x" * 0x20000)  # [0, 128 KiB]
    assert len(block) > dagcbor.DEFAULT_LIMITS.max_items
    with pytest.raises(CommitError, match="version"):
        parse_commit(block, CID.for_dag_cbor(block))
    huge = _commit_with(b"\x5a\x00\x10\x00\x01" + b"x" * ((1 << 20) + 1))
    with pytest.raises(CommitError, match="exceeds"):
        parse_commit(huge, CID.for_dag_cbor(huge))


# --- MST ------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(_CARS)))
def test_lookup_matches_reference(index: int) -> None:
    car = read_car(_CARS[index])
    data = parse_commit(car.blocks[car.roots[0]], car.roots[0]).data
    plain = dict(car.blocks)
    assert lookup(car.blocks, data, _PATHS[index]) is not None
    for key in (_PATHS[index], _PATHS[index] + b"0", b"io.atcr.manifest/2222222222222"):
        kind, expected = outcome(lambda k=key: ref_lookup(plain, data, k))
        assert outcome(lambda k=key: lookup(car.blocks, data, k)) == (kind, expected)
        assert outcome(lambda k=key: lookup(plain, data, k)) == (kind, expected)
        raw = outcome(lambda k=key: lookup_raw(car.blocks.raw.get, data.raw, k))
        assert raw == (kind, expected.raw if isinstance(expected, CID) else expected)


@settings(max_examples=400)
@given(st.data())
def test_mutated_nodes_match_reference(draw: st.DataObject) -> None:
    """Mutate one MST node of a real proof and serve it under its original CID (lookup takes
    the blocks as already hash-verified): both walks must agree."""
    index = draw.draw(st.integers(0, len(_CARS) - 1))
    car = read_car(_CARS[index])
    root = car.roots[0]
    data = parse_commit(car.blocks[root], root).data
    plain = dict(car.blocks)
    nodes = [c for c, b in plain.items() if b.startswith(b"\xa2\x61e")]
    target = draw.draw(st.sampled_from(nodes))
    plain[target] = _mutate(plain[target], draw)
    key = draw.draw(st.sampled_from([_PATHS[index], _PATHS[index] + b"0", b"a"]))
    assert outcome(lambda: lookup(plain, data, key)) == outcome(
        lambda: ref_lookup(plain, data, key)
    )


def test_deeply_nested_node_is_an_mst_error() -> None:
    for block in (b"\x81" * 100_000 + b"\x00", b"\xa2\x61e" + b"\x81" * 100_000 + b"\x00"):
        cid = CID.for_dag_cbor(block)
        with pytest.raises(MSTError):
            lookup({cid: block}, cid, b"a/b")


def test_height_bounds_agree_with_key_height() -> None:
    for height in (0, 1, 2, 5, 127, 128):
        low, high = _HEIGHT_BOUNDS[height]
        for value in (int.from_bytes(low, "big"), int.from_bytes(high[:32], "big") - 1):
            digest = value.to_bytes(32, "big")
            assert (256 - int.from_bytes(digest, "big").bit_length()) // 2 == height
            assert low <= digest < high
    for i in range(2000):
        key = b"k%d" % i
        digest = hashlib.sha256(key).digest()
        low, high = _HEIGHT_BOUNDS[key_height(key)]
        assert low <= digest < high


# --- keys and documents ---------------------------------------------------------------------


@pytest.mark.parametrize(("curve", "order"), [("k256", K256_ORDER), ("p256", P256_ORDER)])
def test_signature_range_boundaries(curve: str, order: int) -> None:
    repo = TestRepo.create(curve=curve)  # type: ignore[arg-type]
    key: PublicKey = repo.public_key

    def sig(r: int, s: int) -> bytes:
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    with pytest.raises(SignatureInvalidError, match="does not verify"):
        key.verify(b"m", sig(1, order >> 1))  # the largest low-S value is in range
    with pytest.raises(SignatureInvalidError, match="high-S"):
        key.verify(b"m", sig(1, (order >> 1) + 1))
    for r, s in ((0, 1), (1, 0), (order, 1), (1, order), (order - 1, order)):
        with pytest.raises(SignatureInvalidError, match="out of range"):
            key.verify(b"m", sig(r, s))
    with pytest.raises(SignatureInvalidError, match="does not verify"):
        key.verify(b"m", bytearray(sig(order - 1, 1)))
    with pytest.raises(SignatureInvalidError, match="non-bytes"):
        key.verify(b"m", "x" * 64)


def test_document_signing_key_cache() -> None:
    repo = TestRepo.create()
    doc = repo.did_document()
    key = document_signing_key(doc, repo.did)
    assert key == parse_did_document(doc, repo.did).atproto_key()
    assert document_signing_key(doc, repo.did) is key  # cached
    assert document_signing_key(doc.decode(), repo.did) == key
    assert document_signing_key(bytearray(doc), repo.did) == key  # not cacheable, still parsed
    other = TestRepo.create()
    for _ in range(2):  # failures are not cached
        with pytest.raises(DIDDocumentError, match="does not match"):
            document_signing_key(doc, other.did)
    with pytest.raises(HoldCAError):
        document_signing_key(doc, [repo.did])  # type: ignore[arg-type]


# --- record URIs ----------------------------------------------------------------------------


def ref_parse_record_uri(uri: str) -> tuple[str, str, str]:
    """Split on "/" and validate each part on its own."""
    if len(uri) > 8192 or not uri.startswith("at://"):
        raise ATURIError("not a record URI")
    parts = uri[5:].split("/")
    if len(parts) != 3:
        raise ATURIError("not three parts")
    did, collection, rkey = parts
    validate_did(did)
    return did, validate_nsid(collection), validate_record_key(rkey)


_URI_PARTS = st.sampled_from(
    [
        "did:plc:6boi5tm4syehwjst6cei357y",
        "did:web:a.b",
        "io.atcr.manifest",
        "a.b.c",
        "x",
        "..",
        ".",
        "3mbflm3ks6o2r",
        "a-.b.c",
        "did:x:",
        "",
        "a" * 600,
        "did:web:" + "a" * 2050,
        "é",
    ]
)


@settings(max_examples=500)
@given(
    st.lists(_URI_PARTS | st.text("abc.:%-/_~", max_size=12), min_size=0, max_size=4).map(
        lambda parts: "at://" + "/".join(parts)
    )
    | st.text(max_size=40)
)
def test_record_uri_fast_path_matches_part_by_part(uri: str) -> None:
    assert outcome(lambda: parse_record_uri(uri)) == outcome(lambda: ref_parse_record_uri(uri))


def test_large_documents_are_not_cached_and_keys_are_immutable() -> None:
    repo = TestRepo.create()
    doc = repo.did_document()
    padded = doc[:-1] + b', "x": "' + b"y" * 9000 + b'"}'
    before = _document_signing_key.cache_info()
    first = document_signing_key(padded, repo.did)
    assert document_signing_key(padded, repo.did) == first
    after = _document_signing_key.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)  # the cache was not used
    assert first == document_signing_key(doc, repo.did)
    with pytest.raises(AttributeError):
        first.curve = "p256"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del first.compressed
    assert first.did_key == repo.signing_key  # the lazily computed Multikey still works
