"""did:key / Multikey parsing and 64-byte low-S signature verification.

Oracles: the interop-tests crypto vectors, MarshalX ``atproto_crypto`` (did:key parsing and
``verify_signature``), coincurve's and cryptography's own key derivation.
"""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path

import coincurve
import pytest
from atproto_crypto.did import parse_did_key as oracle_parse_did_key
from atproto_crypto.verify import verify_signature as oracle_verify
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from holdca.atproto.didkey import (
    K256_ORDER,
    P256_ORDER,
    PublicKey,
    b58decode,
    b58encode,
    parse_did_key,
    parse_legacy_multibase,
    parse_multikey,
)
from holdca.errors import DIDDocumentError, DIDSyntaxError, HoldCAError, SignatureInvalidError
from holdca.testing.atproto import TestRepo, sign_k256, sign_p256

V = Path(__file__).resolve().parents[1] / "vectors" / "atproto"
CRYPTO = V / "interop-tests" / "crypto"


def b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


SIGNATURE_FIXTURES = json.loads((CRYPTO / "signature-fixtures.json").read_text())


@pytest.mark.parametrize("case", SIGNATURE_FIXTURES, ids=lambda c: c["comment"])
def test_signature_fixtures(case: dict[str, object]) -> None:
    key = parse_did_key(case["publicKeyDid"])
    assert key.jwt_alg == case["algorithm"]
    # publicKeyMultibase here is z + base58btc(33-byte compressed point), no codec prefix
    assert b58decode(str(case["publicKeyMultibase"])[1:]) == key.compressed
    message = b64(str(case["messageBase64"]))
    signature = b64(str(case["signatureBase64"]))
    if case["validSignature"]:
        key.verify(message, signature)
    else:
        with pytest.raises(SignatureInvalidError):
            key.verify(message, signature)
    # the independent oracle agrees
    assert oracle_verify(case["publicKeyDid"], message, signature) == case["validSignature"]


@pytest.mark.parametrize(
    "case",
    json.loads((CRYPTO / "w3c_didkey_K256.json").read_text()),
    ids=lambda c: c["publicDidKey"],
)
def test_w3c_didkey_k256(case: dict[str, str]) -> None:
    point = coincurve.PrivateKey(bytes.fromhex(case["privateKeyBytesHex"])).public_key
    key = PublicKey("k256", point.format(compressed=True))
    assert key.did_key == case["publicDidKey"]
    assert parse_did_key(case["publicDidKey"]) == key


def test_w3c_didkey_p256() -> None:
    (case,) = json.loads((CRYPTO / "w3c_didkey_P256.json").read_text())
    scalar = int.from_bytes(b58decode(case["privateKeyBytesBase58"]), "big")
    pub = ec.derive_private_key(scalar, ec.SECP256R1()).public_key()
    key = PublicKey("p256", pub.public_bytes(Encoding.X962, PublicFormat.CompressedPoint))
    assert key.did_key == case["publicDidKey"]
    assert parse_did_key(case["publicDidKey"]).compressed == key.compressed


def test_legacy_multibase_from_spec() -> None:
    legacy = (
        "zQYEBzXeuTM9UR3rfvNag6L3RNAs5pQZyYPsomTsgQhsxLdEgCrPTLgFna8yqCnxPpNT7DBk6Ym3dgPKNu86vt9GR"
    )
    key = parse_legacy_multibase("EcdsaSecp256k1VerificationKey2019", legacy)
    assert key.did_key == "did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"
    with pytest.raises(DIDDocumentError):
        parse_legacy_multibase("Ed25519VerificationKey2020", legacy)
    # a 33-byte compressed point in the legacy field is rejected (documented strict choice)
    with pytest.raises(DIDSyntaxError):
        parse_legacy_multibase("EcdsaSecp256k1VerificationKey2019", "z" + b58encode(key.compressed))


@pytest.mark.parametrize(
    "bad",
    [
        "did:key:z6MkeTGwHmLmuCmgg4ABYhzWVh6ZX7hTwWt8gguAretUfc9c",  # ed25519
        "did:key:fe70103874c15c7fda20e539c6e5ba573c139884c351188799f5458b4b41f7924f235cd",
        "did:key:zQ3sh0kFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",  # '0' not base58
        "did:key:z",
        "did:web:example.com",
        "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBm",  # truncated
    ],
)
def test_bad_did_keys(bad: str) -> None:
    with pytest.raises(DIDSyntaxError):
        parse_did_key(bad)


def test_multikey_off_curve_and_uncompressed() -> None:
    bad_point = b"\x02" + b"\xff" * 32  # x >= p: not on secp256k1
    with pytest.raises(DIDSyntaxError):
        parse_multikey("z" + b58encode(b"\xe7\x01" + bad_point))
    key = coincurve.PrivateKey(b"\x01" * 32).public_key
    with pytest.raises(DIDSyntaxError):
        parse_multikey("z" + b58encode(b"\xe7\x01" + key.format(compressed=False)))


def test_b58_roundtrip_leading_zeros() -> None:
    for data in [b"", b"\x00", b"\x00\x00\x01", b"\xff" * 40]:
        assert b58decode(b58encode(data)) == data


def _high_s(sig: bytes, order: int) -> bytes:
    r, s = sig[:32], int.from_bytes(sig[32:], "big")
    return r + (order - s).to_bytes(32, "big")


@settings(max_examples=40)
@given(
    secret=st.integers(min_value=1, max_value=K256_ORDER - 1),
    message=st.binary(max_size=200),
    curve=st.sampled_from(["k256", "p256"]),
    flip=st.integers(min_value=0, max_value=63),
)
def test_random_signatures_agree_with_oracle(
    secret: int, message: bytes, curve: str, flip: int
) -> None:
    """Ours and MarshalX agree on valid, high-S, DER and tampered signatures for random keys."""
    if curve == "k256":
        priv = coincurve.PrivateKey(secret.to_bytes(32, "big"))
        key = PublicKey("k256", priv.public_key.format(compressed=True))
        sig = sign_k256(priv, message)
        order = K256_ORDER
    else:
        pkey = ec.derive_private_key(secret % (P256_ORDER - 1) + 1, ec.SECP256R1())
        key = PublicKey(
            "p256", pkey.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
        )
        sig = sign_p256(pkey, message)
        order = P256_ORDER
    assert oracle_parse_did_key(key.did_key).jwt_alg == key.jwt_alg
    key.verify(message, sig)
    assert oracle_verify(key.did_key, message, sig)
    variants = [
        _high_s(sig, order),
        sig[:flip] + bytes([sig[flip] ^ 1]) + sig[flip + 1 :],
        sig + b"\x00",
        sig[:63],
    ]
    for bad in variants:
        with pytest.raises(SignatureInvalidError):
            key.verify(message, bad)
        assert not oracle_verify(key.did_key, message, bad)


def test_der_signature_rejected() -> None:
    priv = coincurve.PrivateKey(b"\x07" * 32)
    key = PublicKey("k256", priv.public_key.format(compressed=True))
    der = priv.sign(b"msg")
    with pytest.raises(SignatureInvalidError, match="64 bytes"):
        key.verify(b"msg", der)


def test_zero_and_out_of_range_rs() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    k256 = coincurve.PrivateKey().public_key.format()
    for key in (
        PublicKey("p256", p256.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)),
        PublicKey("k256", k256),
    ):
        for bad in (b"\x00" * 64, b"\xff" * 64, b"\x01" * 32 + b"\x00" * 32):
            with pytest.raises(SignatureInvalidError, match="out of range"):
                key.verify(b"x", bad)


@settings(max_examples=200)
@given(st.text(max_size=120) | st.binary(max_size=80).map(lambda b: "did:key:z" + b58encode(b)))
def test_fuzz_did_key_parser(text: str) -> None:
    with contextlib.suppress(HoldCAError):
        parse_did_key(text)


@settings(max_examples=30)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=100), st.booleans())
def test_fast_k256_path_matches_coincurve_public_api(
    secret: bytes, message: bytes, high_s: bool
) -> None:
    """holdca's direct libsecp256k1 call agrees with coincurve's public verify API."""
    try:
        priv = coincurve.PrivateKey(secret)
    except ValueError:
        return
    sig = sign_k256(priv, message)
    if high_s:
        sig = _high_s(sig, K256_ORDER)
    public_ok = priv.public_key.verify(cdata_to_der(deserialize_compact(sig)), message)
    key = PublicKey("k256", priv.public_key.format())
    try:
        key.verify(message, sig)
        ours = True
    except SignatureInvalidError:
        ours = False
    assert ours == public_ok == (not high_s)


def test_testrepo_repr_hides_private_key() -> None:
    repo = TestRepo.create()
    secret_hex = repo._private.secret.hex()
    assert secret_hex not in repr(repo)
    assert "PrivateKey" not in repr(repo)
