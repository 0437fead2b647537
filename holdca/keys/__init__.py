"""Keys behind pluggable backends.

:class:`Signer` and :class:`KeyStore` are the Protocols an embedder implements or picks an
implementation of: :mod:`holdca.keys.memory`, :mod:`holdca.keys.pem` (PEM files) and
:mod:`holdca.keys.pkcs11` (PKCS#11 tokens; needs ``python-pkcs11``).
:func:`as_private_key` lets any Signer sign through cryptography's X.509 builders.
Ed25519 keys (transparency log notes, never certificates) are a separate
:class:`Ed25519Signer`: see :mod:`holdca.keys.ed25519`.
"""

from __future__ import annotations

from holdca.keys._base import (
    KeyStore,
    PublicKey,
    SignatureAlgorithm,
    Signer,
    check_label,
    spki_der,
)
from holdca.keys.adapter import as_private_key
from holdca.keys.ed25519 import Ed25519Signer, MemoryEd25519Signer, ed25519_public_bytes
from holdca.keys.encoding import der_to_low_s_compact, der_to_raw, raw_to_der
from holdca.keys.memory import MemoryKeyStore, MemorySigner

__all__ = [
    "Ed25519Signer",
    "KeyStore",
    "MemoryEd25519Signer",
    "MemoryKeyStore",
    "MemorySigner",
    "PublicKey",
    "SignatureAlgorithm",
    "Signer",
    "as_private_key",
    "check_label",
    "der_to_low_s_compact",
    "der_to_raw",
    "ed25519_public_bytes",
    "raw_to_der",
    "spki_der",
]
