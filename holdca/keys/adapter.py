"""Let any :class:`~holdca.keys.Signer` sign through cryptography's X.509 builders.

cryptography's ``CertificateBuilder``, ``CertificateRevocationListBuilder`` and
``OCSPResponseBuilder`` accept a private key object and call its ``sign(data, ...)``
with the DER to-be-signed bytes. :func:`as_private_key` wraps a Signer in a subclass of
cryptography's private-key interface whose ``sign`` delegates to the Signer, so a key
on an HSM signs certificates without ever leaving the token. Everything that would
expose the private key (``private_numbers``, ``private_bytes``, ``exchange``, RSA
``decrypt``) raises :class:`~holdca.errors.UnsupportedAlgorithmError`.

Tested with cryptography 48 to 50 (see ``pyproject.toml``); cryptography 48 added
abstract ``__copy__``/``__deepcopy__`` methods, which the wrappers implement.

Example::

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from holdca.keys.adapter import as_private_key

    cert = builder.sign(as_private_key(signer), hashes.SHA256())
"""

from __future__ import annotations

from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from holdca.errors import SignerError, UnsupportedAlgorithmError
from holdca.keys._base import Signer

Buffer = bytes | bytearray | memoryview

__all__ = ["SignerECKey", "SignerRSAKey", "as_private_key"]


def _refuse(what: str) -> NoReturn:
    raise UnsupportedAlgorithmError(f"{what} is not available through a Signer")


def _check_hash(signer: Signer, algorithm: object) -> None:
    if isinstance(algorithm, Prehashed):
        raise UnsupportedAlgorithmError("prehashed input cannot be signed through a Signer")
    if (
        not isinstance(algorithm, hashes.HashAlgorithm)
        or algorithm.name != signer.algorithm.hash.name
    ):
        name = getattr(algorithm, "name", type(algorithm).__name__)
        raise UnsupportedAlgorithmError(
            f"{signer.algorithm.value} signs with {signer.algorithm.hash.name}, not {name}"
        )


def _check_pss(signer: Signer, pss: padding.PSS) -> None:
    """The builder writes ``pss`` into the signed object: it must be what the Signer does.

    A Signer signs RSA-PSS with MGF1 over its own hash and a salt as long as the hash.
    Other parameters (``PSS.MAX_LENGTH``, another MGF1 hash) would be declared in the
    certificate but not used, and the result would not verify, so they are refused.
    cryptography exposes no public accessors for them, hence the private attributes.
    """
    h = signer.algorithm.hash
    mgf = getattr(pss, "_mgf", None)
    mgf_hash = getattr(mgf, "_algorithm", None)
    salt = getattr(pss, "_salt_length", None)
    salt_ok = salt is padding.PSS.DIGEST_LENGTH or salt == h.digest_size
    if (
        not isinstance(mgf, padding.MGF1)
        or getattr(mgf_hash, "name", None) != h.name
        or not salt_ok
    ):
        raise UnsupportedAlgorithmError(
            f"{signer.algorithm.value} signs RSA-PSS with MGF1-{h.name} and a "
            f"{h.digest_size}-byte salt: pass rsa_padding=padding.PSS("
            f"mgf=padding.MGF1(hashes.{h.name.upper()}()), salt_length={h.digest_size})"
        )


class SignerECKey(ec.EllipticCurvePrivateKey):
    """An ``EllipticCurvePrivateKey`` whose ``sign`` is a :class:`Signer`'s."""

    def __init__(self, signer: Signer) -> None:
        pub = signer.public_key
        if not isinstance(pub, ec.EllipticCurvePublicKey) or not signer.algorithm.is_ecdsa:
            raise UnsupportedAlgorithmError("signer is not an ECDSA key")
        self._signer = signer
        self._public = pub

    @property
    def signer(self) -> Signer:
        """The wrapped signer."""
        return self._signer

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise UnsupportedAlgorithmError("only ECDSA signatures are supported")
        _check_hash(self._signer, signature_algorithm.algorithm)
        signature = self._signer.sign(bytes(data))
        if not isinstance(signature, bytes):  # defensive: a foreign Signer
            raise SignerError("signer returned a non-bytes signature")
        return signature

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        _refuse("ECDH")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        _refuse("private_numbers")

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        _refuse("private_bytes")

    def __copy__(self) -> SignerECKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> SignerECKey:
        return self

    def __repr__(self) -> str:
        return f"<SignerECKey {self._signer.algorithm.value} via {type(self._signer).__name__}>"


class SignerRSAKey(rsa.RSAPrivateKey):
    """An ``RSAPrivateKey`` whose ``sign`` is a :class:`Signer`'s (RSA-PSS only)."""

    def __init__(self, signer: Signer) -> None:
        pub = signer.public_key
        if not isinstance(pub, rsa.RSAPublicKey) or signer.algorithm.is_ecdsa:
            raise UnsupportedAlgorithmError("signer is not an RSA-PSS key")
        self._signer = signer
        self._public = pub

    @property
    def signer(self) -> Signer:
        """The wrapped signer."""
        return self._signer

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def sign(
        self,
        data: Buffer,
        padding: padding.AsymmetricPadding,
        algorithm: hashes.HashAlgorithm | Prehashed | Any,
    ) -> bytes:
        if not isinstance(padding, _PSS):
            raise UnsupportedAlgorithmError("only RSA-PSS padding is supported")
        _check_hash(self._signer, algorithm)
        _check_pss(self._signer, padding)
        return self._signer.sign(bytes(data))

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        _refuse("RSA decryption")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _refuse("private_numbers")

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        _refuse("private_bytes")

    def __copy__(self) -> SignerRSAKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> SignerRSAKey:
        return self

    def __repr__(self) -> str:
        return f"<SignerRSAKey {self._signer.algorithm.value} via {type(self._signer).__name__}>"


_PSS = padding.PSS


def as_private_key(signer: Signer) -> SignerECKey | SignerRSAKey:
    """Wrap ``signer`` as a cryptography private key for the X.509 builders.

    For RSA-PSS signers, pass ``rsa_padding=padding.PSS(mgf=padding.MGF1(h),
    salt_length=h.digest_size)`` to the builder's ``sign``.

    Raises:
        UnsupportedAlgorithmError: the signer's key is neither ECDSA nor RSA-PSS.
    """
    if signer.algorithm.is_ecdsa:
        return SignerECKey(signer)
    return SignerRSAKey(signer)
