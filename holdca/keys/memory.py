"""In-memory keys: for tests, demos and the ephemeral per-request leaf keys.

Example::

    from holdca.keys.memory import MemoryKeyStore, MemorySigner

    leaf = MemorySigner.generate()            # ephemeral P-256
    store = MemoryKeyStore()
    ca = store.generate("hold-root")
"""

from __future__ import annotations

import threading
from typing import cast

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from holdca.errors import KeyExistsError, KeyNotFoundError, UnsupportedAlgorithmError
from holdca.keys._base import PublicKey, SignatureAlgorithm, check_label, spki_der
from holdca.keys.ed25519 import MemoryEd25519Signer

__all__ = ["MemoryKeyStore", "MemorySigner", "PrivateKey", "generate_private_key"]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
"""The cryptography private key types holdca's software backends hold."""

_RSA_BITS = {
    SignatureAlgorithm.PS256: 2048,
    SignatureAlgorithm.PS384: 3072,
    SignatureAlgorithm.PS512: 4096,
}


def generate_private_key(algorithm: SignatureAlgorithm) -> PrivateKey:
    """A fresh software key for ``algorithm`` (RSA sizes: PS256 2048, PS384 3072, PS512 4096)."""
    if algorithm.is_ecdsa:
        return ec.generate_private_key(algorithm.curve)
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[algorithm])


# Signature parameter objects are immutable: build them once per algorithm, not per signature.
_ECDSA = {alg: ec.ECDSA(alg.hash) for alg in SignatureAlgorithm if alg.is_ecdsa}


class MemorySigner:
    """A :class:`~holdca.keys.Signer` over a cryptography private key held in memory."""

    __slots__ = ("_algorithm", "_ecdsa", "_key", "_pss", "_public", "_public_der")

    _key: PrivateKey
    _public: PublicKey
    _algorithm: SignatureAlgorithm
    _ecdsa: ec.ECDSA | None
    _pss: padding.PSS | None
    _public_der: bytes | None

    def __init__(self, key: PrivateKey, algorithm: SignatureAlgorithm | None = None) -> None:
        """Wrap ``key``; ``algorithm`` defaults to Notation's pairing for the key.

        Raises:
            UnsupportedAlgorithmError: the key cannot sign with ``algorithm``.
        """
        public = key.public_key()
        natural = SignatureAlgorithm.for_public_key(public)
        algorithm = algorithm or natural
        if algorithm.is_ecdsa != natural.is_ecdsa or (algorithm.is_ecdsa and algorithm != natural):
            raise UnsupportedAlgorithmError(f"a {natural.value} key cannot sign {algorithm.value}")
        self._setup(key, public, algorithm)

    def _setup(self, key: PrivateKey, public: PublicKey, algorithm: SignatureAlgorithm) -> None:
        # ``algorithm`` has been checked against ``key`` (or ``key`` was made for it).
        self._key = key
        self._public = public
        self._algorithm = algorithm
        self._public_der = None
        if algorithm.is_ecdsa:
            self._ecdsa = _ECDSA[algorithm]
            self._pss = None
        else:
            self._ecdsa = None
            self._pss = padding.PSS(
                mgf=padding.MGF1(algorithm.hash), salt_length=algorithm.hash.digest_size
            )

    @classmethod
    def generate(cls, algorithm: SignatureAlgorithm = SignatureAlgorithm.ES256) -> MemorySigner:
        """A signer over a freshly generated key (RSA sizes as :func:`generate_private_key`)."""
        key = generate_private_key(algorithm)
        # The key was made for ``algorithm``: skip __init__'s re-derivation and check.
        signer = cls.__new__(cls)
        signer._setup(key, key.public_key(), algorithm)
        return signer

    @property
    def algorithm(self) -> SignatureAlgorithm:
        """The signature algorithm."""
        return self._algorithm

    @property
    def public_key(self) -> PublicKey:
        """The public key."""
        return self._public

    @property
    def public_key_der(self) -> bytes:
        """The public key as DER SubjectPublicKeyInfo (encoded on first use, then kept).

        cryptography re-encodes a key on every ``public_bytes`` call (a few microseconds);
        :func:`holdca.notation.sign_envelope` matches the signer to the leaf with this.
        """
        der = self._public_der
        if der is None:
            der = self._public_der = spki_der(self._public)
        return der

    @property
    def private_key(self) -> PrivateKey:
        """The underlying cryptography key (software backends only)."""
        return self._key

    def sign(self, data: bytes) -> bytes:
        """Sign ``data``: DER ECDSA, or raw RSA-PSS."""
        ecdsa = self._ecdsa
        if ecdsa is not None:
            return cast(ec.EllipticCurvePrivateKey, self._key).sign(data, ecdsa)
        assert self._pss is not None  # set for every RSA key by _setup
        return cast(rsa.RSAPrivateKey, self._key).sign(data, self._pss, self._algorithm.hash)

    def __repr__(self) -> str:
        return f"<MemorySigner {self._algorithm.value}>"


class MemoryKeyStore:
    """A :class:`~holdca.keys.KeyStore` that keeps keys in a dict (thread-safe).

    It also holds Ed25519 keys (:meth:`generate_ed25519`, :meth:`load_ed25519`), which
    share the label namespace; :meth:`load` refuses them with UnsupportedAlgorithmError.
    """

    def __init__(self) -> None:
        self._keys: dict[str, MemorySigner] = {}
        self._ed25519: dict[str, MemoryEd25519Signer] = {}
        self._lock = threading.Lock()

    def generate(
        self, label: str, algorithm: SignatureAlgorithm = SignatureAlgorithm.ES256
    ) -> MemorySigner:
        """Create a key under ``label``; raises KeyExistsError if the label is taken."""
        check_label(label)
        signer = MemorySigner.generate(algorithm)
        with self._lock:
            if label in self._keys or label in self._ed25519:
                raise KeyExistsError(f"key {label!r} already exists")
            self._keys[label] = signer
        return signer

    def load(self, label: str) -> MemorySigner:
        """The signer under ``label``; raises KeyNotFoundError."""
        check_label(label)
        with self._lock:
            try:
                return self._keys[label]
            except KeyError:
                if label in self._ed25519:
                    raise UnsupportedAlgorithmError(
                        f"key {label!r} is Ed25519: use load_ed25519"
                    ) from None
                raise KeyNotFoundError(f"no key {label!r}") from None

    def generate_ed25519(self, label: str) -> MemoryEd25519Signer:
        """Create an Ed25519 key under ``label``.

        Raises:
            ValueError: ``label`` is not a valid key label.
            KeyExistsError: the label is taken (by a key of any algorithm).
        """
        check_label(label)
        signer = MemoryEd25519Signer.generate()
        with self._lock:
            if label in self._keys or label in self._ed25519:
                raise KeyExistsError(f"key {label!r} already exists")
            self._ed25519[label] = signer
        return signer

    def load_ed25519(self, label: str) -> MemoryEd25519Signer:
        """The Ed25519 signer under ``label``.

        Raises:
            ValueError: ``label`` is not a valid key label.
            KeyNotFoundError: no such key.
            UnsupportedAlgorithmError: the key under ``label`` is not Ed25519.
        """
        check_label(label)
        with self._lock:
            try:
                return self._ed25519[label]
            except KeyError:
                if label in self._keys:
                    raise UnsupportedAlgorithmError(f"key {label!r} is not Ed25519") from None
                raise KeyNotFoundError(f"no key {label!r}") from None

    def labels(self) -> list[str]:
        """Sorted labels."""
        with self._lock:
            return sorted([*self._keys, *self._ed25519])

    def delete(self, label: str) -> None:
        """Remove ``label``; raises KeyNotFoundError."""
        check_label(label)
        with self._lock:
            if self._keys.pop(label, None) is None and self._ed25519.pop(label, None) is None:
                raise KeyNotFoundError(f"no key {label!r}")

    def __repr__(self) -> str:
        return f"<MemoryKeyStore {len(self._keys) + len(self._ed25519)} keys>"
