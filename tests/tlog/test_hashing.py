"""RFC 6962 hashing and proofs, against the RFC's published vectors and a naive oracle."""

from __future__ import annotations

import hashlib

import pytest

from holdca.errors import TlogError
from holdca.tlog import LogState, append, leaf_hash, verify_consistency, verify_inclusion
from holdca.tlog.hashing import EMPTY_ROOT, consistency_path, inclusion_path, tree_root

# The RFC 6962 test leaves and the roots of their first 1..8 (certificate-transparency's
# published vectors, also in transparency-dev/merkle testonly/constants.go).
LEAVES = [
    bytes.fromhex(h)
    for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f"]
]  # fmt: skip
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _mth(d: list[bytes]) -> bytes:
    """RFC 6962 section 2.1 MTH, written from the definition (the oracle)."""
    if not d:
        return _sha(b"")
    if len(d) == 1:
        return _sha(b"\x00" + d[0])
    k = 1
    while k * 2 < len(d):
        k *= 2
    return _sha(b"\x01" + _mth(d[:k]) + _mth(d[k:]))


def _path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 6962 section 2.1.1 PATH."""
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return [*_path(m, d[:k]), _mth(d[k:])]
    return [*_path(m - k, d[k:]), _mth(d[:k])]


def _subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """RFC 6962 section 2.1.2 SUBPROOF."""
    n = len(d)
    if m == n:
        return [] if b else [_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*_subproof(m, d[:k], b), _mth(d[k:])]
    return [*_subproof(m - k, d[k:], False), _mth(d[:k])]


def _subtree_of(data: list[bytes]):  # type: ignore[no-untyped-def]
    def subtree(level: int, index: int) -> bytes:
        return _mth(data[index << level : (index + 1) << level])

    return subtree


def test_published_roots() -> None:
    """The appender's roots for 0..8 leaves are the RFC 6962 vectors, one leaf at a time."""
    state = LogState()
    assert state.root == _sha(b"") == EMPTY_ROOT
    for n, expected in enumerate(ROOTS, start=1):
        state, _ = append(state, [LEAVES[n - 1]])
        assert state.root.hex() == expected
        assert tree_root([leaf_hash(x) for x in LEAVES[:n]]).hex() == expected
        assert _mth(LEAVES[:n]).hex() == expected


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 9, 16, 17, 31, 100])
def test_proofs_match_rfc_oracle(size: int) -> None:
    """inclusion_path / consistency_path equal RFC 6962's PATH / SUBPROOF and verify."""
    data = [f"leaf {i}".encode() for i in range(size)]
    subtree = _subtree_of(data)
    root = _mth(data)
    for m in range(size):
        path = inclusion_path(subtree, m, size)
        assert path == _path(m, data)
        verify_inclusion(leaf_hash(data[m]), m, size, path, root)
    for m in range(1, size + 1):
        proof = consistency_path(subtree, m, size)
        assert proof == _subproof(m, data, True)
        verify_consistency(m, size, proof, _mth(data[:m]), root)


def test_bad_proofs_rejected() -> None:
    """A flipped hash, a wrong index, a short or long path, a wrong root: TlogError."""
    data = [f"leaf {i}".encode() for i in range(13)]
    subtree = _subtree_of(data)
    root = _mth(data)
    path = inclusion_path(subtree, 5, 13)
    bad = [path[0][:-1] + bytes([path[0][-1] ^ 1]), *path[1:]]
    for args in [
        (leaf_hash(data[5]), 5, 13, bad, root),
        (leaf_hash(data[5]), 6, 13, path, root),
        (leaf_hash(data[5]), 5, 13, path[:-1], root),
        (leaf_hash(data[5]), 5, 13, [*path, path[0]], root),
        (leaf_hash(data[5]), 5, 13, path, _sha(b"x")),
        (leaf_hash(data[5]), 13, 13, path, root),
    ]:
        with pytest.raises(TlogError):
            verify_inclusion(*args)  # type: ignore[arg-type]
    proof = consistency_path(subtree, 6, 13)
    with pytest.raises(TlogError):
        verify_consistency(6, 13, proof, _mth(data[:5]), root)  # wrong old root
    with pytest.raises(TlogError):
        verify_consistency(6, 13, proof[:-1], _mth(data[:6]), root)
    with pytest.raises(TlogError, match="fork"):
        verify_consistency(13, 13, [], root, _mth(data[:12]))
    with pytest.raises(TlogError, match="backwards"):
        verify_consistency(13, 6, [], root, root)
