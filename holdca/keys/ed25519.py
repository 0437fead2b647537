"""Ed25519 keys, for signatures that are not X.509 or Notation ones (transparency log notes).

Ed25519 is deliberately kept out of :class:`~holdca.keys.SignatureAlgorithm`: notation
and the certificate profile accept only ECDSA and RSA-PSS, and every existing
``generate``/``load`` keeps refusing Ed25519. Stores that can hold Ed25519 keys offer
``generate_ed25519(label)`` and ``load_ed25519(label)`` next to their :class:`KeyStore`
methods (:class:`~holdca.keys.MemoryKeyStore`, :class:`~holdca.keys.pem.PEMKeyStore`,
and :class:`~holdca.keys.pkcs11.PKCS11KeyStore`, whose key stays on the token and signs
with CKM_EDDSA: :mod:`holdca.keys.pkcs11_ed25519`).

Example::

    from holdca.keys import MemoryKeyStore

    log_key = MemoryKeyStore().generate_ed25519("log")
    signature = log_key.sign(b"message")        # 64 raw bytes (RFC 8032)
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from holdca.errors import SignerError

__all__ = ["Ed25519Signer", "MemoryEd25519Signer", "ed25519_public_bytes"]


@runtime_checkable
class Ed25519Signer(Protocol):
    """Something that signs with one Ed25519 private key that may never leave its backend."""

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        """The public half."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` (pure Ed25519, RFC 8032: no pre-hash).

        Returns:
            The 64-byte signature.

        Raises:
            SignerError: the backend failed; nothing was signed.
        """
        ...


def ed25519_public_bytes(key: ed25519.Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class MemoryEd25519Signer:
    """An :class:`Ed25519Signer` over a cryptography Ed25519 private key held in memory."""

    __slots__ = ("_key", "_public")

    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        """Wrap ``key``.

        Raises:
            TypeError: ``key`` is not an Ed25519 private key.
        """
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise TypeError(f"an Ed25519 private key is needed, not {type(key).__name__}")
        self._key = key
        self._public = key.public_key()

    @classmethod
    def generate(cls) -> MemoryEd25519Signer:
        """A signer over a fresh key."""
        return cls(ed25519.Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        """The public key."""
        return self._public

    @property
    def private_key(self) -> ed25519.Ed25519PrivateKey:
        """The underlying cryptography key (software backends only)."""
        return self._key

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``.

        Raises:
            SignerError: ``data`` is not bytes.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SignerError(f"cannot sign a {type(data).__name__}")
        return self._key.sign(bytes(data))

    def __repr__(self) -> str:
        return "<MemoryEd25519Signer>"
