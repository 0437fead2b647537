"""What every RFC 3161 module of holdca shares: the :class:`Timestamper` Protocol, the media
types and size limits, the accepted hashes, and the parse and hash helpers.

* :class:`Timestamper`: the one interface envelope builders use (implemented by
  :class:`holdca.notation.timestamp_http.HTTPTimestamper` and
  :class:`holdca.notation.timestamp_tsa.LocalTSA`).
* :func:`check_policy_oid`: a TSA policy OID that notation (Go's encoding/asn1) can parse.
* :func:`guarded_parse`, :func:`imprint_digest`, :func:`checked_hash_name`: the helpers
  :mod:`holdca.notation.timestamp_request` and :mod:`holdca.notation.timestamp_token` use
  to turn every malformed input into :class:`~holdca.errors.TimestampError`.

Sans-I/O; every public name is also importable from :mod:`holdca.notation.timestamp`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from holdca.errors import TimestampError

__all__ = [
    "HASH_ALGORITHMS",
    "MAX_REQUEST_SIZE",
    "MAX_TOKEN_SIZE",
    "MEDIA_TYPE_QUERY",
    "MEDIA_TYPE_REPLY",
    "Timestamper",
    "check_policy_oid",
    "checked_hash_name",
    "guarded_parse",
    "imprint_digest",
]

MEDIA_TYPE_QUERY = "application/timestamp-query"
"""Content type of a TimeStampReq posted to a TSA (RFC 3161 section 3.4)."""

MEDIA_TYPE_REPLY = "application/timestamp-reply"
"""Content type of a TSA's TimeStampResp; notation requires exactly this, no parameters."""

MAX_REQUEST_SIZE = 16 * 1024
"""Largest TimeStampReq parsed (notation's are about 80 bytes)."""

MAX_TOKEN_SIZE = 1024 * 1024
"""Largest TimeStampResp or token accepted (notation's limit for a TSA reply)."""

HASH_ALGORITHMS: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
"""The messageImprint hashes notation accepts (SHA-1 is refused)."""

_MAX_GO_ARC = 2**31 - 1  # Go's encoding/asn1 parses OID arcs into int32
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    x509.InvalidVersion,
)
_T = TypeVar("_T")


@runtime_checkable
class Timestamper(Protocol):
    """Something that countersigns raw signature bytes with an RFC 3161 TimeStampToken."""

    def timestamp(self, signature: bytes, *, hash_algorithm: str) -> bytes:
        """The DER TimeStampToken (CMS ContentInfo) over ``signature`` (the raw signature
        bytes: r||s for ECDSA), its messageImprint hashed with ``hash_algorithm``
        ('sha256' | 'sha384' | 'sha512'); checked before it is returned. Raises TimestampError."""
        ...


def guarded_parse(what: str, fn: Callable[[], _T]) -> _T:
    """``fn()``, with asn1crypto's parse errors (lazy: any access) as TimestampError.

    A TimestampError raised by ``fn`` passes through; a RecursionError or a parse error
    (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
    ``x509.InvalidVersion``) becomes one naming ``what``.

    Raises:
        TimestampError: ``fn`` failed in one of those ways.
    """
    try:
        return fn()
    except TimestampError:
        raise
    except RecursionError:
        raise TimestampError(f"{what}: nested too deeply") from None
    except _PARSE_ERRORS as exc:
        raise TimestampError(f"{what}: malformed DER ({type(exc).__name__})") from None


def imprint_digest(name: str, data: bytes) -> bytes:
    """The ``name`` (a :mod:`hashlib` name) digest of ``data``.

    Raises:
        TimestampError: :mod:`hashlib` has no hash ``name``.
    """
    try:
        return hashlib.new(name, data).digest()
    except ValueError:
        raise TimestampError(f"unsupported hash algorithm {name!r}") from None


def checked_hash_name(name: object, what: str) -> str:
    """``name``, checked to be one of :data:`HASH_ALGORITHMS` (sha256/sha384/sha512).

    Raises:
        TimestampError: naming ``what`` and the refused hash.
    """
    if not isinstance(name, str) or name not in HASH_ALGORITHMS:
        raise TimestampError(f"{what}: hash algorithm {name!r} is not sha256/sha384/sha512")
    return name


def check_policy_oid(dotted: object) -> str:
    """``dotted``, checked to be a TSA policy OID that notation can parse.

    Checked: a dotted OID (at least two numeric arcs, the first 0, 1 or 2, the second below
    40 unless the first is 2) whose every arc, and the combined first sub-identifier
    (40 * first + second), fits Go's int32: Go's encoding/asn1 refuses a larger arc ("base
    128 integer too large"), so notation rejects the whole token (a ``2.25.<UUID>`` OID has
    a 128-bit arc and cannot be used).

    Raises:
        TimestampError: naming what is wrong.
    """
    if not isinstance(dotted, str) or not dotted:
        raise TimestampError("TSA policy: not a dotted OID")
    arcs = dotted.split(".")
    if len(arcs) < 2 or not all(a.isascii() and a.isdigit() for a in arcs):
        raise TimestampError(f"TSA policy {dotted[:80]!r}: not a dotted OID")
    if any(len(a) > 10 for a in arcs):
        raise TimestampError(f"TSA policy {dotted[:80]}: an arc is larger than Go's int32")
    values = [int(a) for a in arcs]
    if values[0] > 2 or (values[0] < 2 and values[1] >= 40):
        raise TimestampError(f"TSA policy {dotted[:80]}: not a valid OID")
    if 40 * values[0] + values[1] > _MAX_GO_ARC or max(values) > _MAX_GO_ARC:
        raise TimestampError(f"TSA policy {dotted[:80]}: an arc is larger than Go's int32")
    return dotted
