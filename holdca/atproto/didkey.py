"""atproto public keys: did:key / Multikey parsing and 64-byte low-S ECDSA verification.

Encodings (atproto spec cryptography "Public Key Encoding"; spec did "Representation of Public
Keys" and "Legacy Representation"):

* Multikey: ``"z" + base58btc(varint(codec) || 33-byte compressed point)`` with codec
  ``0xe7`` (secp256k1-pub, bytes ``e7 01``) or ``0x1200`` (p256-pub, bytes ``80 24``);
  did:key = ``"did:key:" + multikey``. Only base58btc, only compressed points.
* Legacy DID-document form: ``EcdsaSecp256k1VerificationKey2019`` /
  ``EcdsaSecp256r1VerificationKey2019`` with ``"z" + base58btc(65-byte uncompressed point)``
  and no codec prefix. holdca accepts the 65-byte form only, as indigo does (the TS reference
  also compresses a 33-byte point here; that divergence is documented in docs/atproto.md).

Signatures (atproto spec cryptography): exactly 64 bytes ``r || s``, ``1 <= r, s < n`` and low-S
(``s <= n/2``) on both curves, ECDSA-SHA256 over the message (hashed once). K-256 verifies with
libsecp256k1 (coincurve), which rejects high-S itself; P-256 verifies with ``cryptography`` after
the explicit low-S check (OpenSSL accepts high-S). DER signatures are rejected by length.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Final, Literal

from coincurve import PublicKey as _K256PublicKey
from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _lib
from coincurve.context import GLOBAL_CONTEXT as _CTX
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from holdca.errors import DIDDocumentError, DIDSyntaxError, SignatureInvalidError

__all__ = [
    "Curve",
    "K256_ORDER",
    "P256_ORDER",
    "PublicKey",
    "b58decode",
    "b58encode",
    "parse_did_key",
    "parse_legacy_multibase",
    "parse_multikey",
]

Curve = Literal["k256", "p256"]
"""The two atproto curves: secp256k1 (``k256``) and NIST P-256 (``p256``)."""

K256_ORDER: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""Group order n of secp256k1."""
P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""Group order n of NIST P-256."""

_PREFIX: Final[dict[Curve, bytes]] = {"k256": b"\xe7\x01", "p256": b"\x80\x24"}
_ORDER: Final[dict[Curve, int]] = {"k256": K256_ORDER, "p256": P256_ORDER}
_ORDER_BYTES: Final = {c: n.to_bytes(32, "big") for c, n in _ORDER.items()}
_HALF_ORDER_BYTES: Final = {c: (n >> 1).to_bytes(32, "big") for c, n in _ORDER.items()}
_ZERO32: Final = bytes(32)
_LEGACY_TYPES: Final[dict[str, Curve]] = {
    "EcdsaSecp256k1VerificationKey2019": "k256",
    "EcdsaSecp256r1VerificationKey2019": "p256",
}
_B58: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX: Final = {c: i for i, c in enumerate(_B58)}


def b58encode(data: bytes) -> str:
    """Base58btc (Bitcoin alphabet) of ``data``; leading zero bytes become ``1``."""
    zeros = len(data) - len(data.lstrip(b"\x00"))
    num = int.from_bytes(data, "big")
    out = []
    while num:
        num, rem = divmod(num, 58)
        out.append(_B58[rem])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str, *, max_length: int = 256) -> bytes:
    """Decode base58btc text.

    Raises:
        DIDSyntaxError: a character outside the alphabet, or text longer than ``max_length``.
    """
    if len(text) > max_length:
        raise DIDSyntaxError(f"base58btc text longer than {max_length} characters")
    num = 0
    for char in text:
        digit = _B58_INDEX.get(char)
        if digit is None:
            raise DIDSyntaxError("invalid base58btc character")
        num = num * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\x00" * zeros + body


class PublicKey:
    """A validated atproto signing key (K-256 or P-256), ready to verify 64-byte signatures.

    Immutable (parsed keys are cached and shared): setting an attribute raises AttributeError.

    Attributes:
        curve: ``"k256"`` or ``"p256"``.
        compressed: the 33-byte SEC1 compressed point.
    """

    __slots__ = ("_k256", "_multikey", "_p256", "compressed", "curve")

    curve: Curve
    compressed: bytes
    _k256: _K256PublicKey | None
    _p256: ec.EllipticCurvePublicKey | None
    _multikey: str | None

    def __init__(self, curve: Curve, point: bytes) -> None:
        """Parse a SEC1 point (33-byte compressed or 65-byte uncompressed) on ``curve``.

        Raises:
            DIDSyntaxError: unknown curve, wrong length, or a point not on the curve.
        """
        k256: _K256PublicKey | None = None
        p256: ec.EllipticCurvePublicKey | None = None
        if curve == "k256":
            try:
                k256 = _K256PublicKey(bytes(point))
            except Exception as exc:  # coincurve raises ValueError / TypeError
                raise DIDSyntaxError("not a valid secp256k1 public key point") from exc
            if len(point) not in (33, 65):
                raise DIDSyntaxError("secp256k1 public key must be 33 or 65 bytes")
            compressed = k256.format(compressed=True)
        elif curve == "p256":
            if len(point) not in (33, 65):
                raise DIDSyntaxError("P-256 public key must be 33 or 65 bytes")
            try:
                p256 = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(point))
            except ValueError as exc:
                raise DIDSyntaxError("not a valid P-256 public key point") from exc
            compressed = p256.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
        else:
            raise DIDSyntaxError(f"unsupported curve {curve!r}")
        for name, value in (
            ("_k256", k256),
            ("_p256", p256),
            ("_multikey", None),
            ("compressed", compressed),
            ("curve", curve),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"PublicKey is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"PublicKey is immutable (cannot delete {name!r})")

    @property
    def multikey(self) -> str:
        """The Multikey string (``z...``)."""
        if self._multikey is None:  # computed once, on first use
            object.__setattr__(
                self, "_multikey", "z" + b58encode(_PREFIX[self.curve] + self.compressed)
            )
        assert self._multikey is not None
        return self._multikey

    @property
    def did_key(self) -> str:
        """The ``did:key:z...`` form."""
        return "did:key:" + self.multikey

    @property
    def jwt_alg(self) -> str:
        """``ES256K`` for K-256, ``ES256`` for P-256."""
        return "ES256K" if self.curve == "k256" else "ES256"

    def verify(self, message: bytes, signature: object) -> None:
        """Verify an atproto signature: 64-byte ``r || s``, low-S, ECDSA-SHA256 over ``message``.

        Raises:
            SignatureInvalidError: wrong length (e.g. DER), r or s out of range, high-S, or the
                signature does not verify.
        """
        if type(signature) is not bytes:
            if not isinstance(signature, bytes | bytearray):
                raise SignatureInvalidError(
                    "signature must be 64 bytes r||s (got non-bytes; DER is not accepted)"
                )
            signature = bytes(signature)
        if len(signature) != 64:
            raise SignatureInvalidError(
                f"signature must be 64 bytes r||s (got {len(signature)}; DER is not accepted)"
            )
        # r and s as 32-byte big-endian strings: bytewise order is numeric order
        order = _ORDER_BYTES[self.curve]
        r = signature[:32]
        s = signature[32:]
        if not (_ZERO32 < r < order and _ZERO32 < s < order):
            raise SignatureInvalidError("signature r or s out of range")
        if s > _HALF_ORDER_BYTES[self.curve]:
            raise SignatureInvalidError("high-S signature (atproto requires low-S)")
        if self._k256 is not None:
            sig = _ffi.new("secp256k1_ecdsa_signature *")
            if not _lib.secp256k1_ecdsa_signature_parse_compact(_CTX.ctx, sig, signature):
                raise SignatureInvalidError("signature r or s out of range")
            digest = hashlib.sha256(message).digest()
            if not _lib.secp256k1_ecdsa_verify(_CTX.ctx, sig, digest, self._k256.public_key):
                raise SignatureInvalidError("K-256 signature does not verify")
            return
        assert self._p256 is not None
        der = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
        try:
            self._p256.verify(der, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise SignatureInvalidError("P-256 signature does not verify") from None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PublicKey)
            and other.curve == self.curve
            and other.compressed == self.compressed
        )

    def __hash__(self) -> int:
        return hash((self.curve, self.compressed))

    def __repr__(self) -> str:
        return f"PublicKey({self.did_key})"


def parse_multikey(multikey: object) -> PublicKey:
    """Parse a Multikey string (``z`` + base58btc of codec prefix + compressed point).

    Results are cached (keys are immutable), so a DID document's key is parsed once.

    Raises:
        DIDSyntaxError: not base58btc, unsupported codec (anything but K-256 / P-256), not a
            33-byte compressed point, or not on the curve.
    """
    if not isinstance(multikey, str) or not multikey.startswith("z"):
        raise DIDSyntaxError("Multikey must be multibase base58btc ('z' prefix)")
    return _parse_multikey_cached(multikey)


@functools.lru_cache(maxsize=4096)
def _parse_multikey_cached(multikey: str) -> PublicKey:
    raw = b58decode(multikey[1:])
    for curve, prefix in _PREFIX.items():
        if raw.startswith(prefix):
            point = raw[len(prefix) :]
            if len(point) != 33 or point[0] not in (2, 3):
                raise DIDSyntaxError(f"{curve} Multikey must hold a 33-byte compressed point")
            return PublicKey(curve, point)
    raise DIDSyntaxError("unsupported Multikey codec (atproto supports only K-256 and P-256)")


def parse_did_key(did_key: object) -> PublicKey:
    """Parse ``did:key:z...`` (see :func:`parse_multikey`).

    Raises:
        DIDSyntaxError: not a did:key or not a supported Multikey.
    """
    if not isinstance(did_key, str) or not did_key.startswith("did:key:"):
        raise DIDSyntaxError("not a did:key")
    return parse_multikey(did_key[len("did:key:") :])


def parse_legacy_multibase(method_type: object, multibase: object) -> PublicKey:
    """Parse a legacy verification method (type names the curve, 65-byte uncompressed point).

    Raises:
        DIDDocumentError: unknown legacy type.
        DIDSyntaxError: not base58btc or not a 65-byte uncompressed point on the curve.
    """
    curve = _LEGACY_TYPES.get(method_type) if isinstance(method_type, str) else None
    if curve is None:
        raise DIDDocumentError(f"unsupported verification method type {method_type!r}")
    if not isinstance(multibase, str) or not multibase.startswith("z"):
        raise DIDSyntaxError("publicKeyMultibase must be multibase base58btc ('z' prefix)")
    raw = b58decode(multibase[1:])
    if len(raw) != 65 or raw[0] != 4:
        raise DIDSyntaxError("legacy publicKeyMultibase must be a 65-byte uncompressed point")
    return PublicKey(curve, raw)
