"""The KeyStore / Signer contract, run unchanged against every backend.

The ``store`` fixture (tests/keys/conftest.py) is parametrized over the backends: memory,
PEM files (tmp dir), PKCS#11 (the session's SoftHSM token; skipped on a laptop without
SoftHSM, a failure under CI=true). The PKCS#11 token is shared by the
tests of one process, so every test uses fresh labels and compares label *sets* it
changed, and the fixture deletes what a test left behind.

Oracle: cryptography verifies every signature with the signer's public key.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holdca.errors import KeyExistsError, KeyNotFoundError, KeyStoreError
from holdca.keys import KeyStore, SignatureAlgorithm, Signer
from tests.keys.helpers import require_algorithm, verify

Labels = Callable[[], str]


def spki(signer: Signer) -> bytes:
    return signer.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_protocols(store: KeyStore, fresh: Labels) -> None:
    """Stores and their signers satisfy the runtime-checkable Protocols."""
    assert isinstance(store, KeyStore)
    assert isinstance(store.generate(fresh()), Signer)


def test_generate_load_list_delete(store: KeyStore, fresh: Labels) -> None:
    """The life cycle of two keys, observed through labels(), load() and signatures."""
    a, b = fresh(), fresh()
    before = set(store.labels())
    assert a not in before
    sa = store.generate(a)
    sb = store.generate(b, SignatureAlgorithm.ES384)
    listed = store.labels()
    assert listed == sorted(listed)
    assert set(listed) - before == {a, b}

    loaded = store.load(a)
    assert loaded.algorithm is SignatureAlgorithm.ES256
    assert spki(loaded) == spki(sa)
    assert spki(store.load(b)) == spki(sb)
    assert spki(sa) != spki(sb)
    verify(sa, loaded.sign(b"made by the loaded signer"), b"made by the loaded signer")

    store.delete(a)
    assert set(store.labels()) - before == {b}
    with pytest.raises(KeyNotFoundError):
        store.load(a)
    with pytest.raises(KeyNotFoundError):
        store.delete(a)
    again = store.generate(a)  # the label is free again, for a new key
    assert spki(again) != spki(sa)


def test_generate_refuses_to_overwrite(store: KeyStore, fresh: Labels) -> None:
    """A second generate under a label raises KeyExistsError and leaves the key as it was."""
    a = fresh()
    first = store.generate(a)
    for algorithm in (SignatureAlgorithm.ES256, SignatureAlgorithm.ES384):
        with pytest.raises(KeyExistsError):
            store.generate(a, algorithm)
    assert spki(store.load(a)) == spki(first)
    assert store.labels().count(a) == 1


def test_unknown_label(store: KeyStore, fresh: Labels) -> None:
    """load/delete of a label never generated: KeyNotFoundError (a KeyStoreError and KeyError)."""
    a = fresh()
    for call in (store.load, store.delete):
        with pytest.raises(KeyNotFoundError) as info:
            call(a)
        assert isinstance(info.value, KeyStoreError)
        assert isinstance(info.value, KeyError)
        assert a in str(info.value)


BAD_LABELS = ["", "-lead", ".hidden", "a/b", "../up", "sp ace", "x" * 129, "caf\u00e9", "a\x00b"]


@pytest.mark.parametrize("bad", BAD_LABELS)
def test_label_validation(store: KeyStore, bad: str) -> None:
    """Invalid labels are a ValueError for every operation, and nothing is created."""
    before = store.labels()
    for call in (store.generate, store.load, store.delete):
        with pytest.raises(ValueError, match="invalid key label"):
            call(bad)
    assert store.labels() == before


def test_longest_label(store: KeyStore) -> None:
    """A 128-character label is valid."""
    label = "L" + uuid.uuid4().hex * 4
    label = label[:128]
    store.generate(label)
    try:
        assert label in store.labels()
    finally:
        store.delete(label)


@pytest.mark.parametrize(
    ("algorithm", "curve"),
    [(SignatureAlgorithm.ES256, "secp256r1"), (SignatureAlgorithm.ES384, "secp384r1")],
)
def test_signatures_verify(
    store: KeyStore, fresh: Labels, algorithm: SignatureAlgorithm, curve: str
) -> None:
    """ES256 / ES384 signatures are DER that cryptography verifies, on the right curve."""
    signer = store.generate(fresh(), algorithm)
    assert signer.algorithm is algorithm
    assert isinstance(signer.public_key, ec.EllipticCurvePublicKey)
    assert signer.public_key.curve.name == curve
    signature = signer.sign(b"payload")
    assert signature[0] == 0x30  # DER SEQUENCE
    verify(signer, signature, b"payload")
    with pytest.raises(InvalidSignature):
        verify(signer, signature, b"payload!")


@pytest.mark.parametrize("algorithm", [SignatureAlgorithm.ES512, SignatureAlgorithm.PS256])
def test_other_algorithms(store: KeyStore, fresh: Labels, algorithm: SignatureAlgorithm) -> None:
    """ES512 and PS256 keys generate, reload with the same algorithm, and verify."""
    require_algorithm(store, algorithm)
    label = fresh()
    signer = store.generate(label, algorithm)
    loaded = store.load(label)
    assert loaded.algorithm is algorithm
    verify(signer, loaded.sign(b"m"), b"m")


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=st.binary(max_size=512), flip=st.integers(min_value=0))
def test_every_signature_verifies_and_tampering_fails(
    store: KeyStore, fresh: Labels, message: bytes, flip: int
) -> None:
    """For random messages: the signature verifies; one flipped bit of the message fails."""
    label = getattr(store, "_contract_label", None)
    if label is None:
        label = fresh()
        store.generate(label)
        store._contract_label = label  # type: ignore[attr-defined]
    signer = store.load(label)
    signature = signer.sign(message)
    verify(signer, signature, message)
    tampered = bytearray(message or b"\x00")
    bit = flip % (8 * len(tampered))
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidSignature):
        verify(signer, signature, bytes(tampered))


def test_signers_are_thread_safe(store: KeyStore, fresh: Labels) -> None:
    """4 threads x 50 signatures on one signer: all verify (the 8x500 HSM run is separate)."""
    signer = store.generate(fresh())
    results: list[tuple[bytes, bytes]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            for i in range(50):
                message = f"{n}:{i}".encode()
                signature = signer.sign(message)
                with lock:
                    results.append((message, signature))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 200
    for message, signature in results:
        verify(signer, signature, message)
