"""Strict DAG-CBOR: interop data-model vectors, a strictness battery, and differential tests
against the independent ``dag_cbor`` (py-dag-cbor) codec."""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import dag_cbor
import multiformats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from holdca.atproto import dagcbor
from holdca.atproto.cid import CID
from holdca.errors import CIDError, DAGCBORError, HoldCAError
from holdca.testing.strategies import data_model_values

V = Path(__file__).resolve().parents[1] / "vectors" / "atproto"
DM = V / "interop-tests" / "data-model"


def b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def to_oracle(value: Any) -> Any:
    """Our data model -> py-dag-cbor's (multiformats CIDs)."""
    if isinstance(value, CID):
        return multiformats.CID.decode(value.raw)
    if isinstance(value, list):
        return [to_oracle(v) for v in value]
    if isinstance(value, dict):
        return {k: to_oracle(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("case", json.loads((DM / "data-model-fixtures.json").read_text()))
def test_data_model_fixtures(case: dict[str, Any]) -> None:
    value = dagcbor.from_atjson(case["json"])
    encoded = dagcbor.encode(value)
    assert encoded == b64(case["cbor_base64"])
    assert str(CID.for_dag_cbor(encoded)) == case["cid"]
    assert dagcbor.decode(encoded) == value
    assert dagcbor.to_atjson(dagcbor.decode(encoded)) == json.loads(json.dumps(case["json"]))


@pytest.mark.parametrize("case", json.loads((DM / "data-model-valid.json").read_text()))
def test_data_model_valid(case: dict[str, Any]) -> None:
    value = dagcbor.from_atjson(case["json"])
    assert dagcbor.decode(dagcbor.encode(value)) == value


@pytest.mark.parametrize(
    "case", json.loads((DM / "data-model-invalid.json").read_text()), ids=lambda c: c["note"]
)
def test_data_model_invalid(case: dict[str, Any]) -> None:
    with pytest.raises(DAGCBORError):
        dagcbor.from_atjson(case["json"])


def test_feedpost_record_roundtrip() -> None:
    raw = (V / "indigo" / "atdata" / "feedpost_record.cbor").read_bytes()
    value = dagcbor.decode(raw)
    assert dagcbor.encode(value) == raw
    assert to_oracle(value) == dag_cbor.decode(raw)


INVALID = {
    "float64": "fb405edd2f1a9fbe77",
    "float16": "f93c00",
    "float32": "fa3f800000",
    "NaN": "fb7ff8000000000000",
    "float in map": "a16161fb3ff0000000000000",
    "non-minimal int": "1805",
    "non-minimal int16": "190005",
    "non-minimal negative": "3800",
    "non-minimal string length": "780161",
    "non-minimal map length": "b8010000",
    "unsorted keys": "a2616201616102",
    "bytewise but not length-first": "a262616101616202",
    "duplicate keys": "a2616101616102",
    "tag 1": "c100",
    "tag 42 non-minimal": "d9002a" + "5825000171122000" + "00" * 31,
    "trailing bytes": "0000",
    "indefinite array": "9fff",
    "indefinite map": "bfff",
    "indefinite bytes": "5fff",
    "indefinite text": "7fff",
    "integer key": "a10102",
    "bytes key": "a1416100",
    "undefined": "f7",
    "simple 16": "f0",
    "simple 32": "f820",
    "CID without 0x00 prefix": "d82a5824" + "01711220" + "00" * 32,
    "tag 42 on text": "d82a6161",
    "tag 42 empty": "d82a40",
    "invalid utf-8": "61ff",
    "uint 2^64-1": "1bffffffffffffffff",
    "negint -2^64": "3bffffffffffffffff",
    "huge bytes length": "5bffffffffffffffff",
    "huge array length": "9bffffffffffffffff",
    "huge map length": "bbffffffffffffffff",
    "truncated text": "6261",
    "truncated argument": "19ff",
    "empty input": "",
    "deep nesting": "81" * 40 + "00",
    "reserved additional info": "1c",
    "break outside indefinite": "ff",
}


@pytest.mark.parametrize(("name", "hexdata"), INVALID.items(), ids=list(INVALID))
def test_strictness(name: str, hexdata: str) -> None:
    with pytest.raises((DAGCBORError, CIDError)):
        dagcbor.decode(bytes.fromhex(hexdata))


def test_unsupported_cid_links() -> None:
    cidv0 = "d82a5823" + "00" + "1220" + "11" * 32
    sha512 = "d82a5845" + "00017113" + "40" + "11" * 64
    dag_pb = "d82a5825" + "00017012" + "20" + "11" * 32
    only_prefix = "d82a4100"
    for hexdata in (cidv0, sha512, dag_pb, only_prefix):
        with pytest.raises(CIDError):
            dagcbor.decode(bytes.fromhex(hexdata))


def test_limits_checked() -> None:
    limits = dagcbor.DecodeLimits(max_size=10, max_depth=2, max_items=3)
    with pytest.raises(DAGCBORError, match="exceeds"):
        dagcbor.decode(b"\x4b" + b"x" * 11, limits)
    with pytest.raises(DAGCBORError, match="deeper"):
        dagcbor.decode(bytes.fromhex("81818100"), limits)
    with pytest.raises(DAGCBORError, match="more than 3 items"):
        dagcbor.decode(bytes.fromhex("83010203"), limits)
    assert dagcbor.decode(bytes.fromhex("818100"), limits) == [[0]]


def test_encode_rejects_outside_data_model() -> None:
    for bad in [1.5, {1: 2}, 2**64, object(), {"a": [float("nan")]}]:
        with pytest.raises(DAGCBORError):
            dagcbor.encode(bad)


@settings(max_examples=150)
@given(data_model_values())
def test_encode_matches_independent_codec(value: Any) -> None:
    """Our canonical encoding equals py-dag-cbor's; decoding gives the value back."""
    encoded = dagcbor.encode(value)
    assert encoded == dag_cbor.encode(to_oracle(value))
    assert dagcbor.decode(encoded) == value


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_fuzz_random_bytes(data: bytes) -> None:
    with contextlib.suppress(HoldCAError):
        dagcbor.decode(data)


@settings(max_examples=150)
@given(data_model_values(), st.data())
def test_mutated_encodings_agree_with_oracle(value: Any, data: st.DataObject) -> None:
    """After random byte edits we accept only what py-dag-cbor accepts, with equal values."""
    encoded = bytearray(dagcbor.encode(value))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(encoded) - 1))
        encoded[pos] = data.draw(st.integers(0, 255))
    try:
        ours = dagcbor.decode(bytes(encoded))
    except HoldCAError:
        return
    assert to_oracle(ours) == dag_cbor.decode(bytes(encoded))
