"""CARv1 reading/writing: atproto fixture, real indigo CARs, hash checks, limits, fuzzing.

Oracles: the atproto ``car-file-fixtures.json`` (exact bytes), MarshalX ``CAR.from_bytes`` and
``libipld.decode_car`` for block sets, hashlib for block hashes.
"""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path

import libipld
import pytest
from atproto_core import car as oracle_car
from hypothesis import given, settings
from hypothesis import strategies as st

from holdca.atproto import dagcbor
from holdca.atproto.car import CARLimits, read_car, write_car
from holdca.atproto.cid import CID
from holdca.errors import CARError, HoldCAError
from holdca.testing.atproto import TestRepo

V = Path(__file__).resolve().parents[1] / "vectors" / "atproto"


def b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def test_car_file_fixture_read_and_write() -> None:
    (case,) = json.loads((V / "atproto" / "repo" / "car-file-fixtures.json").read_text())
    car_bytes = b64(case["car"])
    car = read_car(car_bytes)
    assert [str(r) for r in car.roots] == [case["root"]]
    assert [(str(c), b) for c, b in car.blocks.items()] == [
        (blk["cid"], b64(blk["bytes"])) for blk in case["blocks"]
    ]
    rebuilt = write_car(
        [CID.decode(case["root"])],
        [(CID.decode(blk["cid"]), b64(blk["bytes"])) for blk in case["blocks"]],
    )
    assert rebuilt == car_bytes


@pytest.mark.parametrize(
    "name", ["divy.repo", "bafyreieovfuizojpw3zresz7sx3nk4trm2by23pt5rxbey3jme4uo5ogiu.car"]
)
def test_real_cars_match_oracles(name: str) -> None:
    data = (V / "indigo" / "repo-car" / name).read_bytes()
    car = read_car(data)
    _, oracle_blocks = libipld.decode_car(data)
    oracle = oracle_car.CAR.from_bytes(data)
    assert str(car.roots[0]) == oracle.root.encode()
    assert {str(c) for c in car.blocks} == {c.encode() for c in oracle.blocks}
    assert len(car.blocks) == len(oracle_blocks)
    for cid, block in car.blocks.items():
        assert cid.matches(block)
        dagcbor.decode(block)  # every real block is strict DAG-CBOR


def test_generated_full_repos_parse() -> None:
    for name in ("alice.car", "bob.car"):
        data = (V / "generated" / "repos" / name).read_bytes()
        car = read_car(data)
        assert str(car.roots[0]) == oracle_car.CAR.from_bytes(data).root.encode()


def _small_car() -> bytes:
    repo = TestRepo.create()
    uri = repo.put_manifest("sha256:" + "11" * 32)
    return repo.get_record_car(uri)


def test_block_hash_mismatch() -> None:
    data = bytearray(_small_car())
    data[-1] ^= 0x01  # last byte of the record block
    with pytest.raises(CARError, match="hash mismatch"):
        read_car(bytes(data))


def test_oracle_does_not_check_hashes_but_we_do() -> None:
    """MarshalX/libipld accept a tampered block; that is why holdca re-hashes every block."""
    data = bytearray(_small_car())
    data[-1] ^= 0x01
    libipld.decode_car(bytes(data))  # accepted by the oracle
    with pytest.raises(CARError):
        read_car(bytes(data))


def test_limits_are_distinct_errors() -> None:
    data = _small_car()
    n_blocks = len(read_car(data).blocks)
    cases = [
        (CARLimits(max_size=len(data) - 1), "exceeds the"),
        (CARLimits(max_blocks=n_blocks - 1), "more than"),
        (CARLimits(max_block_size=50), "block size limit"),
        (CARLimits(max_header_size=10), "header length"),
    ]
    for limits, message in cases:
        with pytest.raises(CARError, match=message):
            read_car(data, limits)


def test_malformed_headers() -> None:
    cid = CID.for_dag_cbor(b"\xa0")
    good_root = dagcbor.encode({"roots": [cid], "version": 1})

    def car(header: bytes) -> bytes:
        return bytes([len(header)]) + header

    read_car(car(good_root))
    for bad in [
        dagcbor.encode({"roots": [cid], "version": 2}),
        dagcbor.encode({"roots": [], "version": 1}),
        dagcbor.encode({"roots": ["x"], "version": 1}),
        dagcbor.encode({"roots": [cid], "version": 1, "x": 1}),
        dagcbor.encode([1]),
        b"\xff",
    ]:
        with pytest.raises(CARError):
            read_car(car(bad))
    with pytest.raises(CARError, match="truncated"):
        read_car(b"")
    with pytest.raises(CARError, match="minimally"):
        read_car(b"\x80\x00")
    with pytest.raises(CARError, match="truncated CAR section"):
        read_car(car(good_root) + b"\x30" + cid.raw)
    with pytest.raises(CARError, match="unsupported CID"):
        read_car(car(good_root) + b"\x26\x12\x20" + b"a" * 36)
    with pytest.raises(CARError, match="shorter than its CID"):
        read_car(car(good_root) + b"\x02\x01\x71")


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    with contextlib.suppress(HoldCAError):
        read_car(data)


@settings(max_examples=100)
@given(st.data())
def test_fuzz_mutated_car(data: st.DataObject) -> None:
    car = bytearray(_FUZZ_BASE)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(car) - 1))
        car[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(car)))
    with contextlib.suppress(HoldCAError):
        read_car(bytes(car[:cut]))


_FUZZ_BASE = _small_car()
