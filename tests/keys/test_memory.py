"""MemorySigner / MemoryKeyStore specifics (the shared contract is in test_contract.py).

Oracle: cryptography verifies signatures and reports key sizes and curves.
"""

from __future__ import annotations

import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from holdca.errors import KeyExistsError, UnsupportedAlgorithmError
from holdca.keys import MemoryKeyStore, MemorySigner, SignatureAlgorithm
from holdca.keys.memory import generate_private_key
from tests.keys.helpers import verify


@pytest.mark.parametrize(
    ("algorithm", "size"),
    [(SignatureAlgorithm.PS256, 2048), (SignatureAlgorithm.PS384, 3072)],
)
def test_rsa_sizes(algorithm: SignatureAlgorithm, size: int) -> None:
    """PS256 keys are RSA-2048, PS384 keys RSA-3072 (Notation's pairing)."""
    key = generate_private_key(algorithm)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == size
    assert SignatureAlgorithm.for_public_key(key.public_key()) is algorithm


def test_default_algorithm_follows_the_key() -> None:
    """MemorySigner(key) picks ES384 for P-384 and PS256 for RSA-2048."""
    assert MemorySigner(ec.generate_private_key(ec.SECP384R1())).algorithm.value == "ES384"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert MemorySigner(rsa_key).algorithm is SignatureAlgorithm.PS256


def test_rsa_key_may_sign_with_a_longer_hash() -> None:
    """An RSA-2048 key can be used with PS384: the signature uses SHA-384 and verifies."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = MemorySigner(rsa_key, SignatureAlgorithm.PS384)
    verify(signer, signer.sign(b"m"), b"m")


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [
        (ec.generate_private_key(ec.SECP256R1()), SignatureAlgorithm.ES384),
        (ec.generate_private_key(ec.SECP256R1()), SignatureAlgorithm.PS256),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), SignatureAlgorithm.ES256),
    ],
)
def test_mismatched_algorithm(
    key: ec.EllipticCurvePrivateKey, algorithm: SignatureAlgorithm
) -> None:
    """A key cannot sign with another curve's or another family's algorithm."""
    with pytest.raises(UnsupportedAlgorithmError, match="cannot sign"):
        MemorySigner(key, algorithm)


def test_unsupported_curve() -> None:
    """secp256k1 is not a Notation algorithm."""
    with pytest.raises(UnsupportedAlgorithmError, match="secp256k1"):
        MemorySigner(ec.generate_private_key(ec.SECP256K1()))


def test_generate_race_has_one_winner() -> None:
    """8 threads generating one label: exactly one succeeds, the store holds its key."""
    store = MemoryKeyStore()
    winners: list[MemorySigner] = []
    losers: list[BaseException] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            winners.append(store.generate("same"))
        except KeyExistsError as exc:
            losers.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert len(losers) == 7
    assert store.load("same") is winners[0]


def test_repr() -> None:
    """Reprs name the algorithm / count, nothing else."""
    store = MemoryKeyStore()
    signer = store.generate("a", SignatureAlgorithm.ES512)
    assert repr(signer) == "<MemorySigner ES512>"
    assert repr(store) == "<MemoryKeyStore 1 keys>"


# (PS512: RSA-4096 generation is slow and adds nothing over PS384.)
@pytest.mark.parametrize(
    "algorithm", [a for a in SignatureAlgorithm if a is not SignatureAlgorithm.PS512]
)
def test_generated_signer_is_consistent(algorithm: SignatureAlgorithm) -> None:
    """generate() skips __init__'s checks; the result is what __init__ would have built."""
    signer = MemorySigner.generate(algorithm)
    assert signer.algorithm is algorithm
    assert SignatureAlgorithm.for_public_key(signer.public_key) is algorithm
    assert signer.public_key.public_numbers() == signer.private_key.public_key().public_numbers()
    rebuilt = MemorySigner(signer.private_key, algorithm)
    for s in (signer, rebuilt):
        verify(s, s.sign(b"message"), b"message")
    verify(signer, rebuilt.sign(b"m"), b"m")


def test_public_key_der_is_the_spki_and_kept() -> None:
    signer = MemorySigner.generate()
    der = signer.public_key_der
    assert der == signer.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert signer.public_key_der is der


def test_algorithm_attributes_are_shared_per_member() -> None:
    """hash / curve / is_ecdsa are computed once per algorithm and stay correct."""
    expected = {
        SignatureAlgorithm.ES256: ("sha256", "secp256r1"),
        SignatureAlgorithm.ES384: ("sha384", "secp384r1"),
        SignatureAlgorithm.ES512: ("sha512", "secp521r1"),
        SignatureAlgorithm.PS256: ("sha256", None),
        SignatureAlgorithm.PS384: ("sha384", None),
        SignatureAlgorithm.PS512: ("sha512", None),
    }
    for algorithm, (hash_name, curve_name) in expected.items():
        assert algorithm.hash.name == hash_name
        assert algorithm.hash is algorithm.hash
        assert algorithm.is_ecdsa is (curve_name is not None)
        if curve_name is None:
            with pytest.raises(UnsupportedAlgorithmError, match="not an ECDSA"):
                _ = algorithm.curve
        else:
            assert algorithm.curve.name == curve_name
            assert algorithm.curve is algorithm.curve
