"""Encodings notation (Go) uses: compact sorted JSON, RFC 3339 times, base64 flavours, DNs.

Internal helpers shared by the envelope, OCI and trust-policy modules. Nothing here does
I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from holdca._json import strict_json
from holdca.errors import MalformedInputError

__all__ = [
    "b64std_decode",
    "b64std_encode",
    "b64url_decode",
    "b64url_encode",
    "format_time",
    "go_json",
    "go_json_text",
    "go_name_string",
    "mapping_get_ci",
    "parse_time",
    "strict_json",
]

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_B64STD = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})"
)

# Go's encoding/json (escapeHTML on, as in json.Marshal) escapes these beyond what Python's
# json.dumps escapes; none of them occurs in JSON syntax or in an escape sequence, so
# replacing them in the encoded text is safe.
_GO_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def _go_html_escape(text: str) -> str:
    """Apply Go's extra JSON escapes to already JSON-encoded ``text`` (``<`` -> ``\\u003c``...)."""
    for char, escaped in _GO_ESCAPES:
        if char in text:
            text = text.replace(char, escaped)
    return text


def go_json_text(value: Any) -> str:
    """:func:`go_json` as text (not yet UTF-8 encoded)."""
    return _go_html_escape(
        json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    )


def go_json(value: Any) -> bytes:
    """Encode ``value`` the way Go's ``json.Marshal`` encodes a map: sorted keys, compact.

    Go escapes ``<``, ``>``, ``&``, U+2028 and U+2029 and writes other non-ASCII text as
    UTF-8. Control characters are escaped as Python does: ``\\b``, ``\\f``, ``\\n``,
    ``\\r``, ``\\t`` and ``\\u00XX`` otherwise (what Go has written since 1.22; the
    notation binaries are built with later Go).

    Raises:
        UnicodeEncodeError: a string holds a lone surrogate (not representable in UTF-8).
    """
    return go_json_text(value).encode("utf-8")


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 section 2)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, what: str, error: Callable[[str], MalformedInputError]) -> bytes:
    """Decode unpadded base64url strictly (no padding, no whitespace, valid length).

    Raises:
        MalformedInputError: (built by ``error``) naming ``what``.
    """
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise error(f"{what} is not unpadded base64url")
    # Like Go's decoder, non-zero padding bits are tolerated: the signature covers the
    # text as transmitted, not the decoded bytes.
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64std_encode(data: bytes) -> str:
    """Standard base64 with padding (what Go's JSON uses for ``[]byte``)."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def b64std_decode(text: str, what: str, error: Callable[[str], MalformedInputError]) -> bytes:
    """Decode padded standard base64 strictly.

    Raises:
        MalformedInputError: (built by ``error``) naming ``what``.
    """
    if not _B64STD.fullmatch(text):
        raise error(f"{what} is not padded standard base64")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise error(f"{what} is not padded standard base64") from None


def format_time(when: datetime) -> str:
    """RFC 3339 in UTC at seconds precision: ``2026-01-02T03:04:05Z``.

    Raises:
        ValueError: ``when`` is naive.
    """
    if when.tzinfo is not UTC:
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError("times must be timezone-aware")
        when = when.astimezone(UTC)
    # isoformat() of a UTC time starts "YYYY-MM-DDTHH:MM:SS" (4-digit year, like Go); it is
    # several times faster than strftime.
    return when.isoformat()[:19] + "Z"


def parse_time(text: object, what: str, error: Callable[[str], MalformedInputError]) -> datetime:
    """Parse an RFC 3339 time as Go's ``time.Time`` JSON decoder accepts it.

    Fractional seconds are kept to the microsecond (Go keeps nanoseconds).

    Raises:
        MalformedInputError: (built by ``error``) naming ``what``.
    """
    if not isinstance(text, str):
        raise error(f"{what} is not an RFC 3339 string")
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise error(f"{what} {text!r} is not an RFC 3339 time")
    frac = match.group(7) or ""
    base = text[: match.start(7)] if frac else text[: match.start(8)]
    micro = (frac[1:] + "000000")[:6] if frac else "000000"
    zone = match.group(8)
    try:
        parsed = datetime.fromisoformat(f"{base}.{micro}{'+00:00' if zone == 'Z' else zone}")
    except ValueError:
        raise error(f"{what} {text!r} is not a valid date and time") from None
    return parsed.astimezone(UTC)


# Go crypto/x509/pkix attributeTypeNames.
_GO_TYPE_NAMES = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.SERIAL_NUMBER: "SERIALNUMBER",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.STREET_ADDRESS: "STREET",
    NameOID.POSTAL_CODE: "POSTALCODE",
}
# The order of Go's pkix.Name.ToRDNSequence for the multi-valued fields.
_GO_FIELD_ORDER = (
    NameOID.COUNTRY_NAME,
    NameOID.STATE_OR_PROVINCE_NAME,
    NameOID.LOCALITY_NAME,
    NameOID.STREET_ADDRESS,
    NameOID.POSTAL_CODE,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
)


def _go_escape(value: str) -> str:
    out = []
    last = len(value) - 1
    for index, char in enumerate(value):
        escape = char in ',+"\\<>;' or (
            (char == " " and index in (0, last)) or (char == "#" and index == 0)
        )
        out.append("\\" + char if escape else char)
    return "".join(out)


def go_name_string(name: x509.Name) -> str:
    """Render ``name`` exactly as Go's ``pkix.Name.String()`` does for a parsed certificate.

    Go folds the name into fields (C, ST, L, STREET, POSTALCODE, O, OU are lists, CN and
    SERIALNUMBER keep the last value), re-emits them in a fixed order with each list as
    one multi-valued RDN, appends attributes it has no field for as ``OID=#<hex DER>``
    RDNs, then prints the RDNs in reverse order. notation parses this string to match
    trusted identities, so the rendering decides what matches.
    """
    fields: dict[x509.ObjectIdentifier, list[str]] = {}
    common: str | None = None
    serial: str | None = None
    unknown: list[str] = []
    for attr in name:
        oid = attr.oid
        value = attr.value if isinstance(attr.value, str) else attr.value.hex()
        if oid in _GO_FIELD_ORDER:
            fields.setdefault(oid, []).append(value)
        elif oid == NameOID.COMMON_NAME:
            common = value
        elif oid == NameOID.SERIAL_NUMBER:
            serial = value
        else:
            der = _der_of_attribute_value(attr)
            unknown.append(f"{oid.dotted_string}=#{der.hex()}")
    rdns: list[str] = []
    for oid in _GO_FIELD_ORDER:
        values = fields.get(oid)
        if values:
            rdns.append("+".join(f"{_GO_TYPE_NAMES[oid]}={_go_escape(v)}" for v in values))
    if common:
        rdns.append(f"CN={_go_escape(common)}")
    if serial:
        rdns.append(f"SERIALNUMBER={_go_escape(serial)}")
    rdns.extend(unknown)
    return ",".join(reversed(rdns))


def _der_of_attribute_value(attr: x509.NameAttribute[Any]) -> bytes:
    """DER of an attribute value (the part Go prints after ``=#``)."""
    value = attr.value
    if isinstance(value, bytes):
        body = value
        tag = 0x03 if attr._type.value == 3 else 0x04
    else:
        body = value.encode("utf-8")
        tag = int(attr._type.value)
    length = len(body)
    if length < 0x80:
        header = bytes([tag, length])
    else:
        size = (length.bit_length() + 7) // 8
        header = bytes([tag, 0x80 | size]) + length.to_bytes(size, "big")
    return header + body


def mapping_get_ci(obj: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    """Look ``key`` up the way Go's JSON decoder matches struct fields (case-insensitive).

    An exact match wins; else a unique case-insensitive match. Two keys that differ only in
    case and neither matches exactly are ambiguous.

    Raises:
        ValueError: ambiguous keys.
    """
    if key in obj:
        return True, obj[key]
    folded = [k for k in obj if k.lower() == key.lower()]
    if len(folded) > 1:
        raise ValueError(f"keys {folded!r} differ only in case")
    if folded:
        return True, obj[folded[0]]
    return False, None
