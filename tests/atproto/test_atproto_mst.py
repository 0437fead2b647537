"""MST: key heights, prefix compression, canonical roots, inclusion/absence, invariant checks.

Oracles: interop-tests ``mst/*`` and ``firehose/commit-proof-fixtures.json`` (published root
CIDs), real indigo firehose CARs (op paths -> CIDs), the generated repos' record lists.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from holdca.atproto import dagcbor
from holdca.atproto.car import read_car
from holdca.atproto.cid import CID
from holdca.atproto.commit import parse_commit
from holdca.atproto.mst import common_prefix_length, key_height, lookup
from holdca.errors import IncompleteProofError, MSTError
from holdca.testing.atproto import MSTBuilder

V = Path(__file__).resolve().parents[1] / "vectors" / "atproto"
IT = V / "interop-tests"
LEAF = CID.for_dag_cbor(b"\xa0")


@pytest.mark.parametrize("case", json.loads((IT / "mst" / "key_heights.json").read_text()))
def test_key_heights(case: dict[str, object]) -> None:
    assert key_height(str(case["key"]).encode()) == case["height"]


def test_example_keys_heights() -> None:
    keys = [k for k in (IT / "mst" / "example_keys.txt").read_text().splitlines() if k]
    assert len(keys) > 100
    for key in keys:
        assert key_height(key.encode()) == int(key[1]), key


@pytest.mark.parametrize("case", json.loads((IT / "mst" / "common_prefix.json").read_text()))
def test_common_prefix(case: dict[str, object]) -> None:
    left, right = str(case["left"]).encode(), str(case["right"]).encode()
    assert common_prefix_length(left, right) == case["len"]


COMMIT_PROOFS = json.loads((IT / "firehose" / "commit-proof-fixtures.json").read_text())


@pytest.mark.parametrize("case", COMMIT_PROOFS, ids=lambda c: c["comment"])
def test_builder_reproduces_published_roots(case: dict[str, object]) -> None:
    leaf = CID.decode(case["leafValue"])
    before = {k.encode(): leaf for k in case["keys"]}
    after = dict(before)
    for k in case["adds"]:
        after[k.encode()] = leaf
    for k in case["dels"]:
        del after[k.encode()]
    for items, root in ((before, case["rootBeforeCommit"]), (after, case["rootAfterCommit"])):
        tree = MSTBuilder(items)
        assert str(tree.root_cid) == root
        # and the verifier proves every key present and the deleted/added ones as appropriate
        for key in items:
            assert lookup(tree.blocks, tree.root_cid, key) == leaf
        for key in [*case["adds"], *case["dels"]]:
            if key.encode() not in items:
                assert lookup(tree.blocks, tree.root_cid, key.encode()) is None


def test_empty_tree_root() -> None:
    tree = MSTBuilder({})
    assert str(tree.root_cid) == "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
    assert lookup(tree.blocks, tree.root_cid, b"io.atcr.manifest/3mbflm3ks6o2r") is None


FIREHOSE = sorted((V / "indigo" / "firehose").glob("*.json"))


@pytest.mark.parametrize("path", FIREHOSE, ids=lambda p: p.name)
def test_real_firehose_inclusion(path: Path) -> None:
    msg = json.loads(path.read_text())
    data = base64.b64decode(msg["blocks"]["$bytes"] + "==")
    car = read_car(data)
    assert str(car.roots[0]) == msg["commit"]["$link"]
    commit = parse_commit(car.blocks[car.roots[0]], car.roots[0])
    assert commit.rev == msg["rev"]
    assert commit.did == msg["repo"]
    checked = 0
    for op in msg["ops"]:
        if op["action"] in ("create", "update"):
            cid = lookup(car.blocks, commit.data, op["path"].encode())
            assert cid is not None
            assert str(cid) == op["cid"]["$link"]
            assert cid in car.blocks
            checked += 1
    assert checked


REPOS = json.loads((V / "generated" / "repos.json").read_text())


@pytest.mark.parametrize("did", sorted(REPOS))
def test_generated_repo_records_proven(did: str) -> None:
    info = REPOS[did]
    car = read_car((V / "generated" / info["car"]).read_bytes())
    commit = parse_commit(car.blocks[car.roots[0]], car.roots[0])
    assert str(commit.data) == info["data"]
    for path, cid in info["records"].items():
        assert str(lookup(car.blocks, commit.data, path.encode())) == cid
    assert lookup(car.blocks, commit.data, b"io.atcr.manifest/2222222222222") is None
    # and the generated full repo is exactly the canonical MST of its records
    tree = MSTBuilder({p.encode(): CID.decode(c) for p, c in info["records"].items()})
    assert str(tree.root_cid) == info["data"]


# --- invariant violations -----------------------------------------------------------------

EXAMPLE = [k.encode() for k in (IT / "mst" / "example_keys.txt").read_text().splitlines() if k]
H0 = sorted(k for k in EXAMPLE if key_height(k) == 0)
H1 = sorted(k for k in EXAMPLE if key_height(k) == 1)


def node(entries: list[tuple[bytes, CID | None]], left: CID | None = None, *, p0: bool = False):
    wire = []
    prev = b""
    for key, right in entries:
        p = 0 if p0 else common_prefix_length(prev, key)
        wire.append({"k": key[p:], "p": p, "t": right, "v": LEAF})
        prev = key
    block = dagcbor.encode({"e": wire, "l": left})
    return CID.for_dag_cbor(block), block


def check(blocks: dict[CID, bytes], root: CID, key: bytes, message: str) -> None:
    with pytest.raises(MSTError, match=message):
        lookup(blocks, root, key)


def test_uncompressed_prefix_rejected() -> None:
    keys = [k for k in (b"io.atcr.manifest/k%d" % i for i in range(20)) if key_height(k) == 0][:2]
    cid, block = node([(k, None) for k in keys], p0=True)
    check({cid: block}, cid, keys[1], "not fully compressed")


def test_unsorted_and_duplicate_rejected() -> None:
    keys = H0[:2]
    cid, block = node([(keys[1], None), (keys[0], None)])
    check({cid: block}, cid, keys[0], "increasing")
    cid, block = node([(keys[0], None), (keys[0], None)])
    check({cid: block}, cid, keys[0], "increasing|compressed")


def test_mixed_heights_rejected() -> None:
    keys = sorted([H0[0], H1[0]])
    cid, block = node([(k, None) for k in keys])
    check({cid: block}, cid, keys[0], "different heights")


def test_child_on_wrong_layer_rejected() -> None:
    child_cid, child_block = node([(H1[0], None)])  # a layer-1 node under a layer-1 root
    root_keys = [k for k in H1 if k > H1[0]][:1]
    root_cid, root_block = node([(k, None) for k in root_keys], left=child_cid)
    blocks = {child_cid: child_block, root_cid: root_block}
    check(blocks, root_cid, H0[0] if H0[0] < root_keys[0] else H1[0], "expected 0")


def test_layer0_with_child_rejected() -> None:
    child_cid, child_block = node([(H0[0], None)])
    root_cid, root_block = node([(H0[1], child_cid)])
    check({child_cid: child_block, root_cid: root_block}, root_cid, H0[2], "layer 0")


def test_key_outside_parent_range_rejected() -> None:
    big = max(H0)
    child_cid, child_block = node([(big, None)])  # placed left of a smaller layer-1 key
    parent_key = min(k for k in H1 if k < big)
    root_cid, root_block = node([(parent_key, None)], left=child_cid)
    blocks = {child_cid: child_block, root_cid: root_block}
    check(blocks, root_cid, b"" + min(H0), "outside")


def test_empty_root_with_child_rejected_and_empty_inner() -> None:
    child_cid, child_block = node([(H0[0], None)])
    root_cid, root_block = node([], left=child_cid)
    check({child_cid: child_block, root_cid: root_block}, root_cid, H0[0], "empty node")


def test_bad_shapes() -> None:
    for obj in [
        {"e": [], "l": None, "x": 1},
        {"e": {}, "l": None},
        {"e": [{"k": b"a", "p": 0, "t": None}], "l": None},
        {"e": [{"k": "a", "p": 0, "t": None, "v": LEAF}], "l": None},
        {"e": [{"k": b"a", "p": 1, "t": None, "v": LEAF}], "l": None},
        {"e": [{"k": b"a", "p": 0, "t": None, "v": CID.for_raw(b"")}], "l": None},
        {"e": [], "l": "x"},
        [1],
    ]:
        block = dagcbor.encode(obj)
        cid = CID.for_dag_cbor(block)
        with pytest.raises(MSTError):
            lookup({cid: block}, cid, b"a")


def test_missing_node_is_incomplete_not_absent() -> None:
    keys = {k: LEAF for k in EXAMPLE}
    tree = MSTBuilder(keys)
    target = H0[5]
    path = tree.path(target)
    assert len(path) > 1
    blocks = dict(tree.blocks)
    del blocks[path[-1][0]]
    with pytest.raises(IncompleteProofError):
        lookup(blocks, tree.root_cid, target)
    with pytest.raises(IncompleteProofError):
        lookup({}, tree.root_cid, target)


def _all_leaves(blocks: dict[CID, bytes], root: CID) -> dict[bytes, CID]:
    """Every (key, value) of a tree by a plain recursive walk (no invariant checks)."""
    out: dict[bytes, CID] = {}

    def walk(cid: CID) -> None:
        node = dagcbor.decode(blocks[cid])
        if node["l"] is not None:
            walk(node["l"])
        prev = b""
        for entry in node["e"]:
            key = prev[: entry["p"]] + entry["k"]
            out[key] = entry["v"]
            prev = key
            if entry["t"] is not None:
                walk(entry["t"])

    walk(root)
    return out


@pytest.mark.parametrize(
    "name", ["divy.repo", "bafyreieovfuizojpw3zresz7sx3nk4trm2by23pt5rxbey3jme4uo5ogiu.car"]
)
def test_real_repo_trees_pass_every_invariant(name: str) -> None:
    """No false rejections on real repos: every leaf of a real tree is proven by lookup, the
    tree equals the canonical MST of its leaves, and in-between keys are proven absent."""
    car = read_car((V / "indigo" / "repo-car" / name).read_bytes())
    root_block = dagcbor.decode(car.blocks[car.roots[0]])
    data = root_block["data"]
    leaves = _all_leaves(dict(car.blocks), data)
    assert leaves
    for key, value in leaves.items():
        assert lookup(car.blocks, data, key) == value
        assert lookup(car.blocks, data, key + b"0") is None
    assert MSTBuilder(leaves).root_cid == data
