"""Helpers of the key tests: independent signature checks."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from holdca.keys import Signer


def verify(signer: Signer, signature: bytes, message: bytes) -> None:
    """cryptography's verdict on ``signature`` (raises InvalidSignature)."""
    key = signer.public_key
    h = signer.algorithm.hash
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, message, ec.ECDSA(h))
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(signature, message, padding.PSS(padding.MGF1(h), h.digest_size), h)
