"""Pure conversions between signature encodings.

* X.509, CMS and OCSP carry ECDSA signatures as DER ``ECDSA-Sig-Value``.
* JWS (RFC 7518 section 3.4) carries them as raw ``r || s``, each padded to the curve size.
* ATProto carries K-256 / P-256 signatures as 64-byte compact ``r || s`` with low S.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from holdca.errors import MalformedInputError

__all__ = [
    "P256_ORDER",
    "SECP256K1_ORDER",
    "der_to_low_s_compact",
    "der_to_raw",
    "is_low_s",
    "raw_to_der",
]

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""The order n of NIST P-256 (secp256r1)."""

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""The order n of secp256k1 (K-256)."""


def _decode(der: bytes) -> tuple[int, int]:
    try:
        return decode_dss_signature(der)
    except (ValueError, TypeError) as exc:
        raise MalformedInputError("not a DER ECDSA-Sig-Value") from exc


def der_to_raw(der: bytes, size: int) -> bytes:
    """Convert a DER ECDSA signature to raw ``r || s`` of ``2 * size`` bytes.

    Args:
        der: DER ``ECDSA-Sig-Value``.
        size: bytes per integer (32 for P-256, 48 for P-384, 66 for P-521).

    Raises:
        MalformedInputError: ``der`` is not DER, or r or s does not fit in ``size`` bytes.
    """
    r, s = _decode(der)
    if r.bit_length() > 8 * size or s.bit_length() > 8 * size:
        raise MalformedInputError(f"ECDSA integer wider than {size} bytes")
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def raw_to_der(raw: bytes) -> bytes:
    """Convert raw ``r || s`` (even length) to DER ``ECDSA-Sig-Value``.

    Raises:
        MalformedInputError: empty or odd-length input.
    """
    if not raw or len(raw) % 2:
        raise MalformedInputError(f"raw ECDSA signature has odd or zero length {len(raw)}")
    half = len(raw) // 2
    return encode_dss_signature(
        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    )


def is_low_s(raw: bytes, order: int) -> bool:
    """Whether the ``s`` half of a raw ``r || s`` signature is at most ``order // 2``."""
    s = int.from_bytes(raw[len(raw) // 2 :], "big")
    return 0 < s <= order // 2


def der_to_low_s_compact(der: bytes, order: int) -> bytes:
    """Convert a DER ECDSA signature to ATProto's 64-byte compact form, normalising S.

    ``s`` is replaced by ``order - s`` when it is in the upper half, which yields the
    equivalent low-S signature ATProto requires.

    Raises:
        MalformedInputError: ``der`` is not DER, r or s is not in ``[1, order - 1]``,
            or does not fit 32-byte integers.
    """
    r, s = _decode(der)
    if not (0 < r < order and 0 < s < order):
        raise MalformedInputError("ECDSA r or s outside [1, n - 1] for the curve order")
    if s > order // 2:
        s = order - s
    if r.bit_length() > 256 or s.bit_length() > 256:
        raise MalformedInputError("ECDSA integer wider than 32 bytes")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")
