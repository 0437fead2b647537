"""Signature encodings: DER <-> raw r||s (JWS) and DER -> 64-byte low-S compact (ATProto).

Oracles: cryptography (DER encode/decode, ECDSA verify, scalar multiplication to check
the curve orders), coincurve's libsecp256k1 (which rejects high-S signatures), jwcrypto
(verifies an ES256 JWS whose signature went through der_to_raw).
"""

from __future__ import annotations

import base64
import hashlib
import json

import coincurve
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from jwcrypto import jwk, jws

from holdca.errors import MalformedInputError
from holdca.keys.encoding import (
    P256_ORDER,
    SECP256K1_ORDER,
    der_to_low_s_compact,
    der_to_raw,
    is_low_s,
    raw_to_der,
)

SIZES = {"secp256r1": 32, "secp384r1": 48, "secp521r1": 66}

P256_KEY = ec.generate_private_key(ec.SECP256R1())
K256_KEY = ec.generate_private_key(ec.SECP256K1())


@pytest.mark.parametrize(
    ("curve", "order"), [(ec.SECP256R1(), P256_ORDER), (ec.SECP256K1(), SECP256K1_ORDER)]
)
def test_order_constants_are_the_curve_orders(curve: ec.EllipticCurve, order: int) -> None:
    """(n-1)·G = -G and n is not a valid scalar: so n is the order of G (cryptography)."""
    g = ec.derive_private_key(1, curve).public_key().public_numbers()
    minus_g = ec.derive_private_key(order - 1, curve).public_key().public_numbers()
    assert minus_g.x == g.x
    assert minus_g.y != g.y
    with pytest.raises(ValueError, match="Invalid EC key"):  # n·G is the point at infinity
        ec.derive_private_key(order, curve)


@given(
    size=st.sampled_from([32, 48, 66]),
    data=st.data(),
)
def test_raw_der_round_trip(size: int, data: st.DataObject) -> None:
    """raw -> DER -> raw is the identity; DER decodes (cryptography) to the same ints."""
    r = data.draw(st.integers(min_value=1, max_value=2 ** (8 * size) - 1), label="r")
    s = data.draw(st.integers(min_value=1, max_value=2 ** (8 * size) - 1), label="s")
    raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    der = raw_to_der(raw)
    assert decode_dss_signature(der) == (r, s)
    assert der_to_raw(der, size) == raw
    assert der_to_raw(encode_dss_signature(r, s), size) == raw


@settings(max_examples=25)
@given(message=st.binary(max_size=200), curve=st.sampled_from(list(SIZES)))
def test_real_signatures_round_trip_and_verify(message: bytes, curve: str) -> None:
    """A cryptography signature survives DER -> raw -> DER and still verifies."""
    key = {"secp256r1": P256_KEY}.get(curve) or ec.generate_private_key(
        {"secp384r1": ec.SECP384R1(), "secp521r1": ec.SECP521R1()}[curve]
    )
    der = key.sign(message, ec.ECDSA(hashes.SHA256()))
    raw = der_to_raw(der, SIZES[curve])
    assert len(raw) == 2 * SIZES[curve]
    key.public_key().verify(raw_to_der(raw), message, ec.ECDSA(hashes.SHA256()))


def test_raw_is_what_jwcrypto_verifies() -> None:
    """An ES256 JWS whose signature is der_to_raw(cryptography DER) verifies in jwcrypto."""

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "ES256"}).encode())
    payload = b64(b'{"hello":"world"}')
    der = P256_KEY.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    token = f"{header}.{payload}.{b64(der_to_raw(der, 32))}"
    public = jwk.JWK.from_pyca(P256_KEY.public_key())
    verifier = jws.JWS()
    verifier.deserialize(token)
    verifier.verify(public)  # raises InvalidJWSSignature on failure
    assert verifier.payload == b'{"hello":"world"}'


@settings(max_examples=40)
@given(message=st.binary(max_size=100))
def test_low_s_compact_p256(message: bytes) -> None:
    """The compact form has s <= n/2 and is an equivalent signature (cryptography verifies)."""
    der = P256_KEY.sign(message, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    compact = der_to_low_s_compact(der, P256_ORDER)
    assert len(compact) == 64
    r2, s2 = int.from_bytes(compact[:32], "big"), int.from_bytes(compact[32:], "big")
    assert r2 == r
    assert s2 <= P256_ORDER // 2
    assert s2 == (s if s <= P256_ORDER // 2 else P256_ORDER - s)
    assert is_low_s(compact, P256_ORDER)
    P256_KEY.public_key().verify(raw_to_der(compact), message, ec.ECDSA(hashes.SHA256()))


@settings(max_examples=40)
@given(message=st.binary(max_size=100))
def test_low_s_compact_k256_accepted_by_libsecp256k1(message: bytes) -> None:
    """libsecp256k1 (coincurve) accepts the normalised form and rejects the high-S twin."""
    der = K256_KEY.sign(message, ec.ECDSA(hashes.SHA256()))
    compact = der_to_low_s_compact(der, SECP256K1_ORDER)
    public = coincurve.PublicKey(
        K256_KEY.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    assert public.verify(raw_to_der(compact), message, hasher=lambda m: hashlib.sha256(m).digest())
    r, s = int.from_bytes(compact[:32], "big"), int.from_bytes(compact[32:], "big")
    high = encode_dss_signature(r, SECP256K1_ORDER - s)
    assert not public.verify(high, message, hasher=lambda m: hashlib.sha256(m).digest())
    # ... which cryptography (OpenSSL) does accept: why the explicit normalisation matters.
    K256_KEY.public_key().verify(high, message, ec.ECDSA(hashes.SHA256()))


def test_is_low_s_boundaries() -> None:
    """s = n/2 is low, n/2 + 1 is high, 0 is not a valid s."""
    half = P256_ORDER // 2
    r = (1).to_bytes(32, "big")
    assert is_low_s(r + half.to_bytes(32, "big"), P256_ORDER)
    assert not is_low_s(r + (half + 1).to_bytes(32, "big"), P256_ORDER)
    assert not is_low_s(r + bytes(32), P256_ORDER)


@pytest.mark.parametrize("raw", [b"", b"\x01", b"\x01" * 63, b"\x00" * 65])
def test_raw_to_der_rejects_empty_and_odd(raw: bytes) -> None:
    """Empty or odd-length raw input is MalformedInputError (also a ValueError)."""
    with pytest.raises(MalformedInputError, match="odd or zero length"):
        raw_to_der(raw)


@pytest.mark.parametrize(
    "der",
    [b"", b"\x30", b"\x30\x00", b"\x30\x06\x02\x01\x01\x02\x01", b"not der at all", b"\x00" * 8],
)
def test_der_decoders_reject_garbage(der: bytes) -> None:
    """Empty, truncated and non-DER input raise MalformedInputError."""
    with pytest.raises(MalformedInputError):
        der_to_raw(der, 32)
    with pytest.raises(MalformedInputError):
        der_to_low_s_compact(der, P256_ORDER)


@pytest.mark.parametrize(
    ("r", "s"),
    [(5, P256_ORDER), (5, P256_ORDER + 1), (5, 2**256 - 1), (P256_ORDER, 5), (0, 5), (5, 0)],
)
def test_low_s_compact_rejects_out_of_range(r: int, s: int) -> None:
    """r or s outside [1, n-1] is MalformedInputError (was an OverflowError for s > n)."""
    with pytest.raises(MalformedInputError, match="outside"):
        der_to_low_s_compact(encode_dss_signature(r, s), P256_ORDER)


def test_der_to_raw_rejects_too_wide_integers() -> None:
    """A P-384 signature does not fit the 32-byte P-256 size."""
    der = encode_dss_signature(2**300, 5)
    with pytest.raises(MalformedInputError, match="wider than 32"):
        der_to_raw(der, 32)
    with pytest.raises(MalformedInputError, match="wider than 32"):
        der_to_low_s_compact(encode_dss_signature(2**300, 5), 2**400)
    with pytest.raises(MalformedInputError, match="wider than 32"):  # high s normalised
        der_to_low_s_compact(encode_dss_signature(7, 2**399 + 1), 2**400)


@given(st.binary(max_size=80))
def test_decoders_fail_only_with_malformed_input(data: bytes) -> None:
    """On arbitrary bytes the decoders either succeed or raise MalformedInputError."""
    for call in (lambda: der_to_raw(data, 66), lambda: der_to_low_s_compact(data, P256_ORDER)):
        try:
            out = call()
        except MalformedInputError:
            continue
        r, s = decode_dss_signature(data)  # succeeded: the oracle must agree it is DER
        assert int.from_bytes(out[: len(out) // 2], "big") == r
        assert s >= 0


def test_tampered_signature_fails() -> None:
    """Sanity for the verify oracle used above: a flipped bit in r does not verify."""
    der = P256_KEY.sign(b"m", ec.ECDSA(hashes.SHA256()))
    raw = bytearray(der_to_raw(der, 32))
    raw[5] ^= 1
    with pytest.raises(InvalidSignature):
        P256_KEY.public_key().verify(raw_to_der(bytes(raw)), b"m", ec.ECDSA(hashes.SHA256()))
