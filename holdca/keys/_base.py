"""The pluggable parts of key handling: :class:`Signer`, :class:`KeyStore` and algorithms."""

from __future__ import annotations

import enum
import functools
import re
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from holdca.errors import UnsupportedAlgorithmError

__all__ = [
    "KeyStore",
    "PublicKey",
    "SignatureAlgorithm",
    "Signer",
    "check_label",
    "spki_der",
]

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
"""The public key types a :class:`Signer` can expose."""

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class SignatureAlgorithm(enum.Enum):
    """A signature algorithm, named by its JWS ``alg`` (RFC 7518).

    ECDSA signatures from :meth:`Signer.sign` are DER ``ECDSA-Sig-Value``; RSA-PSS
    signatures are the raw modulus-length octet string (MGF1 with the same hash,
    salt length equal to the hash length, as Notation requires).
    """

    ES256 = "ES256"
    ES384 = "ES384"
    ES512 = "ES512"
    PS256 = "PS256"
    PS384 = "PS384"
    PS512 = "PS512"

    # Enum members are singletons: each derived attribute is computed once per member and
    # then read from the member's __dict__ (signing paths read them on every call).

    @functools.cached_property
    def hash(self) -> hashes.HashAlgorithm:
        """The digest algorithm this signature algorithm uses (one shared instance)."""
        bits = self.value[2:]
        return {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[bits]

    @functools.cached_property
    def is_ecdsa(self) -> bool:
        """True for the ECDSA algorithms (ES*)."""
        return self.value.startswith("ES")

    @functools.cached_property
    def curve(self) -> ec.EllipticCurve:
        """The curve of an ECDSA algorithm; raises UnsupportedAlgorithmError for RSA."""
        curves: dict[str, ec.EllipticCurve] = {
            "ES256": ec.SECP256R1(),
            "ES384": ec.SECP384R1(),
            "ES512": ec.SECP521R1(),
        }
        try:
            return curves[self.value]
        except KeyError:
            raise UnsupportedAlgorithmError(f"{self.value} is not an ECDSA algorithm") from None

    @classmethod
    def for_public_key(cls, key: object) -> SignatureAlgorithm:
        """The algorithm Notation pairs with a public key (P-256 -> ES256, RSA-3072 -> PS384, ...).

        Raises:
            UnsupportedAlgorithmError: the key type or size has no Notation algorithm.
        """
        if isinstance(key, ec.EllipticCurvePublicKey):
            by_curve = {"secp256r1": cls.ES256, "secp384r1": cls.ES384, "secp521r1": cls.ES512}
            try:
                return by_curve[key.curve.name]
            except KeyError:
                raise UnsupportedAlgorithmError(f"unsupported curve {key.curve.name}") from None
        if isinstance(key, rsa.RSAPublicKey):
            by_size = {2048: cls.PS256, 3072: cls.PS384, 4096: cls.PS512}
            try:
                return by_size[key.key_size]
            except KeyError:
                raise UnsupportedAlgorithmError(f"unsupported RSA size {key.key_size}") from None
        raise UnsupportedAlgorithmError(f"unsupported key type {type(key).__name__}")


@runtime_checkable
class Signer(Protocol):
    """Something that signs with one private key that may never leave its backend.

    Implementations: :class:`holdca.keys.memory.MemorySigner`, the PEM and PKCS#11
    backends, or the embedder's own (a cloud KMS, a remote signer).
    """

    @property
    def algorithm(self) -> SignatureAlgorithm:
        """The signature algorithm this key signs with."""
        ...

    @property
    def public_key(self) -> PublicKey:
        """The public half, as a cryptography public key."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Hash ``data`` with :attr:`algorithm`'s digest and sign it.

        Returns:
            DER ``ECDSA-Sig-Value`` for ECDSA, the raw signature for RSA-PSS.

        Raises:
            SignerError: the backend failed; nothing was signed.
        """
        ...


@runtime_checkable
class KeyStore(Protocol):
    """Named private keys: generate, load, list and delete them by label.

    Labels match ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``.
    """

    def generate(
        self, label: str, algorithm: SignatureAlgorithm = SignatureAlgorithm.ES256
    ) -> Signer:
        """Create a new key under ``label`` and return its signer.

        Raises:
            KeyExistsError: a key with that label exists (it is never overwritten).
            UnsupportedAlgorithmError: the store cannot make keys of that algorithm.
        """
        ...

    def load(self, label: str) -> Signer:
        """Return the signer of the key under ``label``.

        Raises:
            KeyNotFoundError: no such key.
        """
        ...

    def labels(self) -> list[str]:
        """The labels of every key in the store, sorted."""
        ...

    def delete(self, label: str) -> None:
        """Remove the key under ``label``.

        Raises:
            KeyNotFoundError: no such key.
        """
        ...


def spki_der(key: CertificatePublicKeyTypes) -> bytes:
    """``key`` as DER SubjectPublicKeyInfo: the bytes two keys are compared by."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_label(label: str) -> str:
    """Return ``label`` if it is a valid key label, else raise :class:`ValueError`."""
    if not _LABEL.fullmatch(label):
        raise ValueError(f"invalid key label {label!r}: use [A-Za-z0-9._-], 1-128 chars")
    return label
