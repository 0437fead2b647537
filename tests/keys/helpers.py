"""Helpers of the key tests: independent signature checks."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from holdca.keys import KeyStore, SignatureAlgorithm, Signer
from tests.tools import missing


def require_algorithm(store: KeyStore, algorithm: SignatureAlgorithm) -> None:
    """Skip (fail under CI=true) when a token lacks the mechanisms for ``algorithm``."""
    supports = getattr(store, "supports", None)
    if supports is not None and not supports(algorithm):
        missing(f"a PKCS#11 token with the mechanisms for {algorithm.value}")


def verify(signer: Signer, signature: bytes, message: bytes) -> None:
    """cryptography's verdict on ``signature`` (raises InvalidSignature)."""
    key = signer.public_key
    h = signer.algorithm.hash
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, message, ec.ECDSA(h))
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(signature, message, padding.PSS(padding.MGF1(h), h.digest_size), h)
