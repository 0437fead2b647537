"""Size limits are enforced before allocation: a huge *declared* length costs nothing.

Each input declares an enormous length (a CBOR byte string of 2^62 bytes, an array of
2^32 items, a CAR header or section of 2^60 bytes, a DER SEQUENCE of 2 GiB, an envelope
over notation's 32 MiB) but is itself tiny (or, for the envelope, just over the limit).
The oracle: the parser refuses with its holdca error, and tracemalloc's peak during the
call stays under a small bound (far below what honouring the declared length would take).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from holdca.atproto import dagcbor
from holdca.atproto.car import read_car
from holdca.atproto.diddoc import parse_did_document
from holdca.errors import (
    CARError,
    DAGCBORError,
    DIDDocumentError,
    HoldCAError,
    JWSFormatError,
    OCSPRequestError,
    TrustPolicyError,
)
from holdca.notation import parse_envelope, validate_trust_policy
from holdca.pki import parse_ocsp_get, parse_ocsp_request
from tests.hardening.tally import count

MiB = 1 << 20


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def peak_of(fn: Callable[[], Any]) -> tuple[BaseException | None, int]:
    """(exception raised or None, peak bytes traced while running ``fn``)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    error: BaseException | None = None
    try:
        fn()
    except Exception as exc:
        error = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return error, peak


HUGE = [
    (
        "cbor bytes 2^62",
        lambda: dagcbor.decode(b"\x5b" + (1 << 62).to_bytes(8, "big")),
        DAGCBORError,
    ),
    (
        "cbor text 2^32",
        lambda: dagcbor.decode(b"\x7b" + (1 << 32).to_bytes(8, "big") + b"a"),
        DAGCBORError,
    ),
    (
        "cbor array 2^32 items",
        lambda: dagcbor.decode(b"\x9b" + (1 << 32).to_bytes(8, "big")),
        DAGCBORError,
    ),
    (
        "cbor map 2^40 pairs",
        lambda: dagcbor.decode(b"\xbb" + (1 << 40).to_bytes(8, "big")),
        DAGCBORError,
    ),
    ("cbor nesting 100k", lambda: dagcbor.decode(b"\x81" * 100_000 + b"\x00"), DAGCBORError),
    ("CAR header 2^60", lambda: read_car(varint(1 << 60) + b"\xa0"), CARError),
    ("CAR section 2^60", lambda: read_car(_car_header() + varint(1 << 60) + b"\x01"), CARError),
    ("CAR varint 20 bytes", lambda: read_car(b"\xff" * 20 + b"\x01"), CARError),
    (
        "OCSP SEQUENCE 2 GiB",
        lambda: parse_ocsp_request(b"\x30\x84\x7f\xff\xff\xff\x30\x00"),
        OCSPRequestError,
    ),
    ("OCSP GET 1 MiB path", lambda: parse_ocsp_get("A" * MiB), OCSPRequestError),
    (
        "DID document 1 MiB",
        lambda: parse_did_document(
            b'{"id":"' + b"a" * MiB + b'"}', "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
        ),
        DIDDocumentError,
    ),
]


def _car_header() -> bytes:
    from holdca.atproto.car import write_car  # noqa: PLC0415
    from holdca.atproto.cid import CID  # noqa: PLC0415

    car = write_car([CID.for_dag_cbor(b"\xa0")], [])
    return car


@pytest.mark.parametrize(("name", "fn", "error"), HUGE, ids=[h[0] for h in HUGE])
def test_declared_length_refused_without_allocation(
    name: str, fn: Callable[[], Any], error: type[HoldCAError]
) -> None:
    exc, peak = peak_of(fn)
    count("limits.declared_length")
    assert isinstance(exc, error), f"{name}: {exc!r}"
    # the input itself is at most ~1 MiB; honouring the declared length would take GiBs
    assert peak < 8 * MiB, f"{name}: peak {peak / MiB:.1f} MiB"


def test_envelope_over_limit_refused_before_parsing() -> None:
    """33 MiB of JSON-looking bytes: refused by size, never handed to the JSON parser."""
    data = b'{"payload":"' + b"A" * (33 * MiB) + b'"}'
    exc, peak = peak_of(lambda: parse_envelope(data))
    count("limits.declared_length")
    assert isinstance(exc, JWSFormatError)
    assert "limit" in str(exc)
    assert peak < 4 * MiB  # a JSON parse would allocate a 33 MiB str


def test_trust_policy_deep_nesting_refused() -> None:
    """A 100k-deep JSON array refuses with TrustPolicyError (no RecursionError)."""
    data = b"[" * 100_000 + b"]" * 100_000
    exc, _ = peak_of(lambda: validate_trust_policy(data))
    count("limits.declared_length")
    assert isinstance(exc, TrustPolicyError), repr(exc)
