"""Notation JWS signature envelopes (``application/jose+json``): build and parse.

An envelope is a flattened JWS JSON serialization::

    {"payload": b64url({"targetArtifact": <descriptor>}),
     "protected": b64url({"alg", "cty", "crit", "io.cncf.notary.signingScheme",
                          "io.cncf.notary.signingTime" | "...authenticSigningTime",
                          ["io.cncf.notary.expiry"]}),
     "header": {"x5c": [std-base64 DER, leaf first, root last],
                "io.cncf.notary.signingAgent": "holdca/0.1.0"},
     "signature": b64url(raw r||s or RSA-PSS)}

:func:`sign_envelope` produces exactly what notation v1.3.2 produces for the same inputs
(protected header and payload as compact JSON with sorted keys, times in UTC at seconds
precision, ``crit`` in notation's order). :func:`parse_envelope` is strict: it accepts
what notation accepts and rejects everything else with :class:`~holdca.errors.JWSFormatError`
naming the rule; it does not check the signature (see :mod:`holdca.notation.verify`).

Example::

    env = sign_envelope(leaf_signer, [leaf, root], Descriptor.for_content(
        "application/vnd.oci.image.manifest.v1+json", manifest_bytes), now=now)
    parsed = parse_envelope(env)
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import holdca
from holdca.errors import JWSFormatError, MalformedInputError
from holdca.keys._base import SignatureAlgorithm, Signer, spki_der
from holdca.keys.encoding import der_to_raw
from holdca.keys.memory import MemorySigner
from holdca.notation._codec import (
    b64std_decode,
    b64std_encode,
    b64url_decode,
    b64url_encode,
    format_time,
    go_json_text,
    mapping_get_ci,
    parse_time,
    strict_json,
)
from holdca.notation.timestamp import Timestamper
from holdca.pki import check_notation_profile

__all__ = [
    "DEFAULT_SIGNING_AGENT",
    "HEADER_AUTHENTIC_SIGNING_TIME",
    "HEADER_EXPIRY",
    "HEADER_SIGNING_SCHEME",
    "HEADER_SIGNING_TIME",
    "MAX_CHAIN_LENGTH",
    "MAX_ENVELOPE_SIZE",
    "MEDIA_TYPE_JWS",
    "PAYLOAD_CONTENT_TYPE",
    "CertificateOrDER",
    "Descriptor",
    "Envelope",
    "SigningScheme",
    "chain_thumbprints",
    "parse_envelope",
    "prepare_signing",
    "sign_envelope",
]

MEDIA_TYPE_JWS = "application/jose+json"
"""Media type of a JWS envelope (the signature manifest's layer)."""

PAYLOAD_CONTENT_TYPE = "application/vnd.cncf.notary.payload.v1+json"
"""The only ``cty`` notation accepts."""

HEADER_SIGNING_SCHEME = "io.cncf.notary.signingScheme"
HEADER_SIGNING_TIME = "io.cncf.notary.signingTime"
HEADER_AUTHENTIC_SIGNING_TIME = "io.cncf.notary.authenticSigningTime"
HEADER_EXPIRY = "io.cncf.notary.expiry"
_HEADER_SIGNING_AGENT = "io.cncf.notary.signingAgent"
_HEADER_TIMESTAMP = "io.cncf.notary.timestampSignature"
_KNOWN_HEADERS = frozenset(
    {
        "alg",
        "cty",
        "crit",
        HEADER_EXPIRY,
        HEADER_SIGNING_TIME,
        HEADER_SIGNING_SCHEME,
        HEADER_AUTHENTIC_SIGNING_TIME,
    }
)

MAX_ENVELOPE_SIZE = 32 * 1024 * 1024
"""Largest envelope accepted (notation's limit for a signature blob)."""

MAX_CHAIN_LENGTH = 16
"""Most certificates accepted in ``x5c`` (notation has no limit; holdca bounds the work)."""

DEFAULT_SIGNING_AGENT = f"holdca/{holdca.__version__}"
"""The ``io.cncf.notary.signingAgent`` holdca writes by default."""

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
_ALGORITHMS = {alg.value: alg for alg in SignatureAlgorithm}

CertificateOrDER: TypeAlias = x509.Certificate | bytes
"""A chain element: a certificate or its DER (DER saves re-encoding it)."""


class SigningScheme(enum.Enum):
    """Notation's signing schemes (``io.cncf.notary.signingScheme``).

    ``X509``: the signing time is the signer's claim; a verifier without a TSA requires
    the chain to be valid *now*. ``SIGNING_AUTHORITY``: the signing time is asserted by a
    trusted signing authority (the hold); verifiers check the chain at that time and use
    ``signingAuthority`` trust stores.
    """

    X509 = "notary.x509"
    SIGNING_AUTHORITY = "notary.x509.signingAuthority"


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (the parts notation signs and compares).

    Attributes:
        media_type: e.g. ``application/vnd.oci.image.manifest.v1+json``.
        digest: ``sha256:<64 hex>`` or ``sha512:<128 hex>`` (lowercase).
        size: content length in bytes.
        annotations: optional string-to-string map (notation's user metadata).
        artifact_type: optional ``artifactType`` (referrers index entries only).

    Raises:
        MalformedInputError: a field is out of its grammar.
    """

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] | None = field(default=None, hash=False)
    artifact_type: str | None = None

    def __post_init__(self) -> None:
        # Values come from untrusted JSON, so the runtime types are checked too.
        media_type: object = self.media_type
        digest: object = self.digest
        size: object = self.size
        artifact_type: object = self.artifact_type
        if not isinstance(media_type, str) or not _MEDIA_TYPE.fullmatch(media_type):
            raise MalformedInputError(f"invalid media type {media_type!r}")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise MalformedInputError(f"invalid digest {digest!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise MalformedInputError(f"invalid size {size!r}")
        if artifact_type is not None and (
            not isinstance(artifact_type, str) or not _MEDIA_TYPE.fullmatch(artifact_type)
        ):
            raise MalformedInputError(f"invalid artifactType {artifact_type!r}")
        if self.annotations is not None:
            items: list[tuple[object, object]] = list(self.annotations.items())
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in items):
                raise MalformedInputError("annotations must map strings to strings")
            object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))

    @classmethod
    def for_content(
        cls,
        media_type: str,
        content: bytes,
        annotations: Mapping[str, str] | None = None,
        *,
        artifact_type: str | None = None,
    ) -> Descriptor:
        """The descriptor of ``content`` (SHA-256 digest, exact size)."""
        return cls(
            media_type,
            "sha256:" + hashlib.sha256(content).hexdigest(),
            len(content),
            annotations,
            artifact_type,
        )

    def to_json(self) -> dict[str, Any]:
        """The descriptor as an OCI JSON object (omits empty optional fields)."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def from_json(cls, obj: object, what: str = "descriptor") -> Descriptor:
        """Parse an OCI descriptor object (unknown members such as ``urls`` are ignored).

        Raises:
            MalformedInputError: not an object, or a required member missing or invalid.
        """
        if not isinstance(obj, dict):
            raise MalformedInputError(f"{what} is not a JSON object")
        try:
            media_type = obj["mediaType"]
            digest = obj["digest"]
            size = obj["size"]
        except KeyError as exc:
            raise MalformedInputError(f"{what} lacks {exc.args[0]!r}") from None
        annotations = obj.get("annotations")
        if annotations is not None and not isinstance(annotations, dict):
            raise MalformedInputError(f"{what} annotations is not an object")
        try:
            return cls(media_type, digest, size, annotations or None, obj.get("artifactType"))
        except MalformedInputError as exc:
            raise MalformedInputError(f"{what}: {exc}") from None

    def same_content(self, other: Descriptor) -> bool:
        """Whether mediaType, digest and size are equal (notation's descriptor check)."""
        return (self.media_type, self.digest, self.size) == (
            other.media_type,
            other.digest,
            other.size,
        )


@dataclass(frozen=True)
class Envelope:
    """A parsed Notation JWS envelope (well-formed; the signature is not yet checked).

    Attributes:
        protected: the ``protected`` member exactly as transmitted (base64url).
        payload_b64: the ``payload`` member exactly as transmitted (base64url).
        signature: the decoded signature bytes (raw r||s or RSA-PSS).
        header: the decoded protected header.
        algorithm: ``alg``.
        content_type: ``cty``.
        scheme: the signing scheme.
        signing_time: ``signingTime`` (notary.x509) or ``authenticSigningTime``.
        expiry: ``io.cncf.notary.expiry`` or None.
        critical: ``crit`` as given.
        extended_attributes: protected header members notation does not know.
        payload: the decoded payload object.
        target_artifact: ``payload.targetArtifact``.
        certificate_chain: ``x5c`` parsed, leaf first.
        signing_agent: ``io.cncf.notary.signingAgent`` or None.
        timestamp_signature: DER RFC 3161 token or None.
        raw: the envelope bytes.
    """

    protected: str
    payload_b64: str
    signature: bytes
    header: Mapping[str, Any] = field(hash=False)
    algorithm: SignatureAlgorithm
    content_type: str
    scheme: SigningScheme
    signing_time: datetime
    expiry: datetime | None
    critical: tuple[str, ...]
    extended_attributes: Mapping[str, Any] = field(hash=False)
    payload: Mapping[str, Any] = field(hash=False)
    target_artifact: Descriptor
    certificate_chain: tuple[x509.Certificate, ...]
    signing_agent: str | None
    timestamp_signature: bytes | None
    raw: bytes = field(repr=False)

    @property
    def signing_input(self) -> bytes:
        """ASCII(protected || '.' || payload), the bytes the signature covers."""
        return f"{self.protected}.{self.payload_b64}".encode("ascii")

    @property
    def leaf(self) -> x509.Certificate:
        """The signing certificate (``x5c[0]``)."""
        return self.certificate_chain[0]

    @property
    def thumbprints(self) -> list[str]:
        """Lowercase hex SHA-256 of each ``x5c`` DER, leaf first."""
        return chain_thumbprints(self.certificate_chain)


def chain_thumbprints(chain: Sequence[CertificateOrDER]) -> list[str]:
    """Lowercase hex SHA-256 of each certificate's DER, in order (notation's annotation).

    Each element is an :class:`x509.Certificate` or its DER ``bytes`` (DER saves
    re-encoding; it is hashed as given, not parsed).

    Raises:
        TypeError: an element is neither.
    """
    if not chain:
        return []
    first = hashlib.sha256(_der(chain[0])).hexdigest()
    return [first, *[_issuer_thumbprint(_issuer_der(c)) for c in chain[1:]]]


# --- signing ------------------------------------------------------------------------
#
# The signing path is on every cosign, so it avoids what is costly in cryptography and
# in the json module: certificates are taken as DER where the caller has it (encoding an
# x509.Certificate costs about a third of an ECDSA signature), the leaf's key is matched
# against the signer's by comparing SubjectPublicKeyInfo bytes (parsing the leaf's key
# costs as much again), and the JSON is formatted directly. The output is byte-identical
# to building the objects and encoding them with go_json / json.dumps (see the tests).

_DER_ENCODING = serialization.Encoding.DER

# Issuer certificates recur in every chain a CA signs with: their DER, base64 and
# thumbprints are cached. The identity cache keeps each certificate alive while listed,
# so an id() in it is never reused; it is small and simply emptied when full.
_ISSUER_CACHE_SIZE = 64
_issuer_ders: dict[int, tuple[x509.Certificate, bytes]] = {}


def _der(cert: CertificateOrDER) -> bytes:
    if isinstance(cert, bytes):
        return cert
    if isinstance(cert, x509.Certificate):
        return cert.public_bytes(_DER_ENCODING)
    raise TypeError(f"chain elements must be x509.Certificate or DER bytes, not {type(cert)}")


def _issuer_der(cert: CertificateOrDER) -> bytes:
    if isinstance(cert, bytes):
        return cert
    entry = _issuer_ders.get(id(cert))
    if entry is not None and entry[0] is cert:
        return entry[1]
    der = _der(cert)
    assert isinstance(cert, x509.Certificate)  # _der raised otherwise
    if len(_issuer_ders) >= _ISSUER_CACHE_SIZE:
        _issuer_ders.clear()
    _issuer_ders[id(cert)] = (cert, der)
    return der


@functools.lru_cache(maxsize=_ISSUER_CACHE_SIZE)
def _issuer_b64(der: bytes) -> str:
    return b64std_encode(der)


@functools.lru_cache(maxsize=_ISSUER_CACHE_SIZE)
def _issuer_thumbprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


# Bytes per ECDSA integer (r, s) in a raw JWS signature.
_ECDSA_SIZES = {
    SignatureAlgorithm.ES256: 32,
    SignatureAlgorithm.ES384: 48,
    SignatureAlgorithm.ES512: 66,
}


def _ec_spki_table() -> dict[int, tuple[bytes, SignatureAlgorithm, int]]:
    """Per Notation curve, by the length of its subjectPublicKeyInfo: the DER up to the
    uncompressed point as cryptography writes it (taken from the generator, 1 * G), the
    algorithm and its raw integer size."""
    table = {}
    for algorithm, size in _ECDSA_SIZES.items():
        der = spki_der(ec.derive_private_key(1, algorithm.curve).public_key())
        table[len(der)] = (der[: -(2 * size + 1)], algorithm, size)
    return table


_EC_SPKI = _ec_spki_table()


def _der_header(der: bytes, pos: int) -> tuple[int, int]:
    """(contents start, contents end) of the DER TLV at ``pos``; end is -1 for a length
    that is not DER (indefinite, over 3 octets, or not minimal)."""
    length = der[pos + 1]
    if length < 0x80:
        return pos + 2, pos + 2 + length
    count = length - 0x80
    start = pos + 2 + count
    length = int.from_bytes(der[pos + 2 : start], "big")
    if not 0 < count < 4 or der[pos + 2] == 0 or length < 0x80:
        return start, -1
    return start, start + length


# serialNumber, signature, issuer, validity, subject: the TBS fields before the SPKI.
_TBS_SKIPPED = (0x02, 0x30, 0x30, 0x30, 0x30)


def _load_der(der: bytes) -> x509.Certificate:
    """A chain element's DER as a Certificate; every refusal is the documented ValueError.

    cryptography raises ValueError for malformed DER but x509.InvalidVersion (not a
    ValueError) for a bad version field.
    """
    try:
        return x509.load_der_x509_certificate(der)
    except x509.InvalidVersion as exc:
        raise ValueError(f"cannot parse a chain certificate: {exc}") from None


def _leaf_spki(der: bytes) -> bytes | None:
    """The subjectPublicKeyInfo TLV of a DER certificate, or None where it is not found.

    Walks only the TLV headers in front of it: Certificate ::= SEQUENCE { tbsCertificate
    SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer, validity, subject,
    subjectPublicKeyInfo SEQUENCE, ... }, ... }; the Certificate must span ``der``.
    """
    try:
        pos, end = _der_header(der, 0)
        if der[0] != 0x30 or end != len(der) or der[pos] != 0x30:
            return None
        pos = _der_header(der, pos)[0]  # into tbsCertificate
        if der[pos] == 0xA0:  # [0] version: a short-form TLV in DER
            if der[pos + 1] >= 0x80:
                return None
            pos += 2 + der[pos + 1]
        for tag in _TBS_SKIPPED:
            if der[pos] != tag:
                return None
            length = der[pos + 1]
            if length < 0x80:  # short form, inline: most fields
                pos += 2 + length
            else:
                pos = _der_header(der, pos)[1]
                if pos < 0:
                    return None
        if der[pos] != 0x30:
            return None
        end = _der_header(der, pos)[1]
    except IndexError:
        return None
    return der[pos:end] if 0 <= end <= len(der) else None


def _ecdsa_raw(der: bytes, size: int) -> bytes:
    """DER ECDSA-Sig-Value -> raw r || s of ``2 * size`` bytes (as :func:`der_to_raw`).

    Decodes in place the short-form DER of P-256 and P-384 signatures when both integers
    are minimal, positive and fit ``size``; anything else goes to :func:`der_to_raw`, which
    raises MalformedInputError for what is not DER.
    """
    n = len(der)
    if 8 <= n < 0x80 and der[0] == 0x30 and der[1] == n - 2 and der[2] == 0x02 and der[3]:
        s_at = 4 + der[3]
        if s_at + 3 <= n and der[s_at] == 0x02 and der[s_at + 1] == n - s_at - 2:
            r = der[4:s_at]
            s = der[s_at + 2 :]
            # Minimal and positive: first octet 01-7f, or a 00 sign octet before one >= 80.
            if (0 < r[0] < 0x80 or (r[0] == 0 and len(r) > 1 and r[1] >= 0x80)) and (
                0 < s[0] < 0x80 or (s[0] == 0 and len(s) > 1 and s[1] >= 0x80)
            ):
                r = r.lstrip(b"\0")  # drops the sign octet only
                s = s.lstrip(b"\0")
                if len(r) <= size and len(s) <= size:
                    return r.rjust(size, b"\0") + s.rjust(size, b"\0")
    return der_to_raw(der, size)


def _protected_header(
    algorithm: SignatureAlgorithm,
    scheme: SigningScheme,
    signing_time: datetime,
    expiry: datetime | None,
) -> str:
    """The base64url protected header: go_json of the header object, formatted directly.

    Keys in sorted order, ``crit`` in notation's order. Every value is an algorithm or
    scheme name or an RFC 3339 time, none needing JSON escapes.
    """
    authority = scheme is SigningScheme.SIGNING_AUTHORITY
    crit = [HEADER_SIGNING_SCHEME]
    if authority:
        crit.append(HEADER_AUTHENTIC_SIGNING_TIME)
    if expiry is not None:
        crit.append(HEADER_EXPIRY)
    time = format_time(signing_time)
    members = [
        f'"alg":"{algorithm.value}"',
        '"crit":[' + ",".join(f'"{name}"' for name in crit) + "]",
        f'"cty":"{PAYLOAD_CONTENT_TYPE}"',
    ]
    if authority:
        members.append(f'"{HEADER_AUTHENTIC_SIGNING_TIME}":"{time}"')
    if expiry is not None:
        members.append(f'"{HEADER_EXPIRY}":"{format_time(expiry)}"')
    members.append(f'"{HEADER_SIGNING_SCHEME}":"{scheme.value}"')
    if not authority:
        members.append(f'"{HEADER_SIGNING_TIME}":"{time}"')
    return b64url_encode(("{" + ",".join(members) + "}").encode("ascii"))


def _payload(descriptor: Descriptor) -> str:
    """The base64url payload: go_json of ``{"targetArtifact": descriptor}`` (no artifactType).

    mediaType and digest are grammar-checked by Descriptor: of their characters only
    ``&`` needs an escape (Go's ``\\u0026``). Annotations are arbitrary strings and go
    through go_json.
    """
    media_type = descriptor.media_type
    if "&" in media_type:
        media_type = media_type.replace("&", "\\u0026")
    annotations = descriptor.annotations
    head = '{"targetArtifact":{'
    if annotations:
        head += '"annotations":' + go_json_text(dict(annotations)) + ","
    text = (
        f'{head}"digest":"{descriptor.digest}","mediaType":"{media_type}",'
        f'"size":{int(descriptor.size)}}}}}'
    )
    return b64url_encode(text.encode("utf-8"))


_DEFAULT_AGENT_JSON = json.dumps(DEFAULT_SIGNING_AGENT, ensure_ascii=False)
_SECOND = timedelta(seconds=1)
_X5C_SEPARATOR = '","'
_NEVER = datetime.min.replace(tzinfo=UTC)
_LAST_SECOND = datetime.max.replace(microsecond=0, tzinfo=UTC)  # + 1 s would overflow

# The last signature's second (start, end), algorithm, scheme, expiry and protected header:
# a stream of signatures reuses them within each second instead of rounding the time and
# formatting the header again. Replaced as one tuple, so threads see a consistent entry.
_last_header: tuple[
    datetime, datetime, SignatureAlgorithm | None, SigningScheme | None, datetime | None, str
] = (_NEVER, _NEVER, None, None, None, "")


def prepare_signing(
    signer: Signer,
    chain: Sequence[CertificateOrDER],
    descriptor: Descriptor,
    *,
    signing_time: datetime,
    expiry: datetime | None,
    check_chain: bool,
) -> tuple[SignatureAlgorithm, int, bytes, datetime | None]:
    """The checks every envelope format runs before signing (JWS here, COSE in
    :mod:`holdca.notation.cose`), in this order: the leaf key has a Notation algorithm and
    is the signer's key, the signer uses that algorithm, an aware ``expiry`` after the
    signing time, no reserved annotation keys, then (with ``check_chain``) the chain
    profile at ``signing_time``.

    Returns:
        ``(algorithm, raw ECDSA integer size or 0, leaf DER, expiry in UTC seconds)``.

    Raises:
        ValueError, TypeError, ProfileError, UnsupportedAlgorithmError: as
            :func:`sign_envelope` documents.
    """
    leaf = chain[0]
    leaf_der = leaf if isinstance(leaf, bytes) else _der(leaf)
    # MemorySigner keeps its encoded key; cryptography re-encodes on every call.
    signer_der = (
        signer.public_key_der if isinstance(signer, MemorySigner) else spki_der(signer.public_key)
    )
    if _leaf_spki(leaf_der) == signer_der:
        # The leaf's subjectPublicKeyInfo is byte for byte the signer's: the same key. On a
        # Notation curve its algorithm follows from the bytes (for_public_key is slower).
        entry = _EC_SPKI.get(len(signer_der))
        if entry is not None and signer_der.startswith(entry[0]):
            _, algorithm, raw_size = entry
        else:
            algorithm = SignatureAlgorithm.for_public_key(signer.public_key)
            raw_size = _ECDSA_SIZES.get(algorithm, 0)
    else:
        # A mismatch, or the same key encoded otherwise (a compressed point): compare
        # the parsed keys.
        if not isinstance(leaf, x509.Certificate):
            leaf = _load_der(leaf_der)
        leaf_key = leaf.public_key()
        algorithm = SignatureAlgorithm.for_public_key(leaf_key)
        if leaf_key != signer.public_key:
            raise ValueError("the signer's public key is not the leaf certificate's")
        raw_size = _ECDSA_SIZES.get(algorithm, 0)
    if signer.algorithm is not algorithm:
        raise ValueError(
            f"the signer uses {signer.algorithm.value}, notation requires {algorithm.value}"
        )
    if expiry is not None:
        if expiry.tzinfo is None or expiry.utcoffset() is None:
            raise ValueError("expiry must be timezone-aware")
        expiry = expiry.astimezone(UTC).replace(microsecond=0)
        if expiry <= signing_time:
            raise ValueError("expiry must be after the signing time")
    if descriptor.annotations:
        for key in descriptor.annotations:
            if key.startswith("io.cncf.notary"):
                raise ValueError(f"annotation {key!r} uses the reserved io.cncf.notary prefix")
    if check_chain:
        certificates = [c if isinstance(c, x509.Certificate) else _load_der(_der(c)) for c in chain]
        check_notation_profile(certificates, now=signing_time, identity_dn=False)
    return algorithm, raw_size, leaf_der, expiry


def sign_envelope(
    signer: Signer,
    chain: Sequence[CertificateOrDER],
    descriptor: Descriptor,
    *,
    now: datetime,
    scheme: SigningScheme = SigningScheme.X509,
    expiry: datetime | None = None,
    signing_agent: str = DEFAULT_SIGNING_AGENT,
    check_chain: bool = True,
    timestamper: Timestamper | None = None,
) -> bytes:
    """Sign ``descriptor`` and return the JWS envelope bytes notation verifies.

    The signing time is ``now`` truncated to the second (notation does the same). The
    signature algorithm is the one notation derives from the leaf key (P-256 -> ES256,
    RSA-3072 -> PS384, ...).

    Args:
        signer: the key of ``chain[0]``.
        chain: leaf first, then intermediates, then the self-signed root. Each element is
            an :class:`x509.Certificate` or its DER ``bytes``; DER saves re-encoding (it
            goes into ``x5c`` as given). Of DER elements only the leaf's
            subjectPublicKeyInfo is read, unless ``check_chain`` parses them all.
        descriptor: the signed artifact (mediaType, digest, size, optional annotations).
        now: timezone-aware signing time.
        scheme: ``SigningScheme.X509`` or ``SigningScheme.SIGNING_AUTHORITY``.
        expiry: optional ``io.cncf.notary.expiry``; must be after the signing time.
        signing_agent: ``io.cncf.notary.signingAgent``.
        check_chain: run :func:`holdca.pki.check_notation_profile` on ``chain`` (the check
            notation runs before it signs; about a third of a cosign's CPU). Pass False only
            for a chain the caller has just issued under a profile it has already checked,
            as :class:`holdca.hold.HoldCA` does after linting its first chain per CA.
        timestamper: with ``SigningScheme.X509``, an RFC 3161 TSA whose token over the raw
            signature bytes (hashed with the signing algorithm's hash) goes into the
            unprotected header ``io.cncf.notary.timestampSignature`` (std base64). Ignored
            for ``SIGNING_AUTHORITY``: notation never timestamps or checks that scheme.

    Checks, in this order: a non-empty chain, an aware ``now``, the leaf key has a
    Notation algorithm and is the signer's key, the signer uses that algorithm, an aware
    ``expiry`` after the signing time, no reserved annotation keys, then (with
    ``check_chain``) the chain profile.

    Raises:
        ValueError: empty chain, naive time, signer not matching the leaf, expiry not
            after the signing time, annotation keys in the reserved ``io.cncf.notary``
            namespace, or a DER element that cryptography cannot parse when it has to.
        TypeError: a chain element is neither a certificate nor bytes.
        ProfileError: the chain is one notation refuses to sign with (shape, profile, or a
            certificate not valid at the signing time; see holdca.pki.check_notation_profile).
        UnsupportedAlgorithmError: the leaf key has no Notation algorithm.
        SignerError: the signer failed.
        TimestampError: the timestamper failed or returned a token that does not check out.
    """
    global _last_header  # noqa: PLW0603 (see its comment)
    if not chain:
        raise ValueError("the certificate chain is empty")
    if now.tzinfo is not UTC:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        now = now.astimezone(UTC)
    last = _last_header
    signing_time = last[0] if last[0] <= now < last[1] else now.replace(microsecond=0)

    algorithm, raw_size, leaf_der, expiry = prepare_signing(
        signer, chain, descriptor, signing_time=signing_time, expiry=expiry, check_chain=check_chain
    )

    if last[0] is signing_time and last[2] is algorithm and last[3] is scheme and last[4] == expiry:
        protected = last[5]
    else:
        protected = _protected_header(algorithm, scheme, signing_time, expiry)
        end = signing_time + _SECOND if signing_time < _LAST_SECOND else signing_time
        _last_header = (signing_time, end, algorithm, scheme, expiry, protected)
    payload = _payload(descriptor)
    raw_signature = signer.sign(f"{protected}.{payload}".encode("ascii"))
    if raw_size:  # ECDSA: DER from the signer, raw r || s in JWS
        raw_signature = _ecdsa_raw(raw_signature, raw_size)
    x5c = [b64std_encode(leaf_der)]
    for cert in chain[1:]:
        x5c.append(_issuer_b64(cert if isinstance(cert, bytes) else _issuer_der(cert)))
    stamp = ""
    if timestamper is not None and scheme is SigningScheme.X509:
        token = timestamper.timestamp(raw_signature, hash_algorithm=algorithm.hash.name)
        stamp = f'"{_HEADER_TIMESTAMP}":"{b64std_encode(token)}",'
    agent = (
        _DEFAULT_AGENT_JSON
        if signing_agent is DEFAULT_SIGNING_AGENT
        else json.dumps(signing_agent, ensure_ascii=False)
    )
    # Go marshals the envelope struct in field order: payload, protected, header, signature
    # (written as json.dumps(..., separators=(",", ":"), ensure_ascii=False) would).
    return (
        f'{{"payload":"{payload}","protected":"{protected}",'
        f'"header":{{{stamp}"x5c":["{_X5C_SEPARATOR.join(x5c)}"],'
        f'"{_HEADER_SIGNING_AGENT}":{agent}}},'
        f'"signature":"{b64url_encode(raw_signature)}"}}'
    ).encode()


# --- parsing ------------------------------------------------------------------------


def _fail(message: str) -> JWSFormatError:
    return JWSFormatError(message)


def _string(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise JWSFormatError(f"{what} {key!r} is missing or not a string")
    return value


def _parse_protected(encoded: str) -> dict[str, Any]:
    raw = b64url_decode(encoded, "protected header", _fail)
    header = strict_json(raw, "protected header", _fail)
    if not isinstance(header, dict):
        raise JWSFormatError("protected header is not a JSON object")
    for key in header:
        if key not in _KNOWN_HEADERS and key.lower() in {k.lower() for k in _KNOWN_HEADERS}:
            raise JWSFormatError(f"protected header key {key!r} differs from a known key in case")
    return header


def parse_envelope(data: bytes, *, max_size: int = MAX_ENVELOPE_SIZE) -> Envelope:
    """Parse a Notation JWS envelope strictly (the signature is NOT verified here).

    Checks everything notation checks before the cryptography: flattened JSON with the
    four members, unpadded base64url, protected header object with a supported ``alg``,
    the signing-scheme rules (signingTime for notary.x509, authenticSigningTime for
    signingAuthority, never both), the ``crit`` rules (scheme, authenticSigningTime and
    expiry marked, every other entry an extended attribute present in the header),
    expiry after signing time, a JSON-object payload with a valid ``targetArtifact``
    descriptor, a non-empty ``x5c`` of DER certificates, std-base64 unprotected values.

    Deliberately stricter than notation: duplicate JSON keys, unknown top-level members,
    protected-header keys that differ from known ones only in case, more than
    :data:`MAX_CHAIN_LENGTH` certificates and a missing ``targetArtifact`` are rejected.
    The unprotected header's keys are matched case-insensitively, as Go does (old
    notation envelopes spell ``io.cncf.notary.SigningAgent``).

    Raises:
        JWSFormatError: naming the rule broken.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("envelope must be bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise JWSFormatError(f"envelope is {len(data)} bytes, over the {max_size}-byte limit")
    top = strict_json(data, "envelope", _fail)
    if not isinstance(top, dict):
        raise JWSFormatError("envelope is not a JSON object")
    if "signatures" in top:
        raise JWSFormatError("general JWS JSON serialization is not supported (use flattened)")
    unknown = set(top) - {"payload", "protected", "header", "signature"}
    if unknown:
        raise JWSFormatError(f"envelope has unknown members {sorted(unknown)!r}")
    protected = _string(top, "protected", "envelope member")
    payload_b64 = _string(top, "payload", "envelope member")
    signature_b64 = _string(top, "signature", "envelope member")
    unprotected = top.get("header")
    if not isinstance(unprotected, dict):
        raise JWSFormatError("envelope member 'header' is missing or not an object")

    header = _parse_protected(protected)
    alg_name = header.get("alg")
    if not isinstance(alg_name, str) or alg_name not in _ALGORITHMS:
        raise JWSFormatError(f"unsupported or missing 'alg' {alg_name!r}")
    algorithm = _ALGORITHMS[alg_name]
    content_type = header.get("cty", "")
    if not isinstance(content_type, str):
        raise JWSFormatError("'cty' is not a string")
    scheme_name = header.get(HEADER_SIGNING_SCHEME)
    try:
        scheme = SigningScheme(scheme_name)
    except ValueError:
        raise JWSFormatError(f"unsupported SigningScheme: {scheme_name!r}") from None
    signing_time_raw = header.get(HEADER_SIGNING_TIME)
    authentic_raw = header.get(HEADER_AUTHENTIC_SIGNING_TIME)
    if scheme is SigningScheme.X509:
        if HEADER_AUTHENTIC_SIGNING_TIME in header:
            raise JWSFormatError(
                f"{HEADER_AUTHENTIC_SIGNING_TIME!r} header must not be present for notary.x509"
            )
        if signing_time_raw is None:
            raise JWSFormatError("signing-time not present")
        signing_time = parse_time(signing_time_raw, HEADER_SIGNING_TIME, _fail)
    else:
        if HEADER_SIGNING_TIME in header:
            raise JWSFormatError(
                f"{HEADER_SIGNING_TIME!r} header must not be present for "
                "notary.x509.signingAuthority"
            )
        if authentic_raw is None:
            raise JWSFormatError(
                f"{HEADER_AUTHENTIC_SIGNING_TIME!r} header must be present for "
                "notary.x509.signingAuthority"
            )
        signing_time = parse_time(authentic_raw, HEADER_AUTHENTIC_SIGNING_TIME, _fail)
    expiry = None
    if HEADER_EXPIRY in header:
        expiry = parse_time(header[HEADER_EXPIRY], HEADER_EXPIRY, _fail)
        if expiry <= signing_time:
            raise JWSFormatError("expiry cannot be equal or before the signing time")

    extended = {k: v for k, v in header.items() if k not in _KNOWN_HEADERS}
    critical = _check_crit(header, scheme, expiry is not None, extended)

    payload_raw = b64url_decode(payload_b64, "payload", _fail)
    if not payload_raw:
        raise JWSFormatError("payload is empty")
    payload = strict_json(payload_raw, "payload", _fail)
    if not isinstance(payload, dict):
        raise JWSFormatError("payload is not a JSON object")
    if "targetArtifact" not in payload:
        raise JWSFormatError("payload has no 'targetArtifact'")
    try:
        target = Descriptor.from_json(payload["targetArtifact"], "payload targetArtifact")
    except MalformedInputError as exc:
        raise JWSFormatError(str(exc)) from None

    signature = b64url_decode(signature_b64, "signature", _fail)
    if not signature:
        raise JWSFormatError("signature missing in jws-json envelope")

    chain = _parse_unprotected_chain(unprotected)
    agent = _optional_ci(unprotected, _HEADER_SIGNING_AGENT)
    if agent is not None and not isinstance(agent, str):
        raise JWSFormatError("io.cncf.notary.signingAgent is not a string")
    tst_raw = _optional_ci(unprotected, _HEADER_TIMESTAMP)
    timestamp = None
    if tst_raw is not None:
        if not isinstance(tst_raw, str):
            raise JWSFormatError("io.cncf.notary.timestampSignature is not a string")
        timestamp = b64std_decode(tst_raw, "io.cncf.notary.timestampSignature", _fail) or None

    return Envelope(
        protected=protected,
        payload_b64=payload_b64,
        signature=signature,
        header=MappingProxyType(header),
        algorithm=algorithm,
        content_type=content_type,
        scheme=scheme,
        signing_time=signing_time,
        expiry=expiry,
        critical=critical,
        extended_attributes=MappingProxyType(extended),
        payload=MappingProxyType(payload),
        target_artifact=target,
        certificate_chain=chain,
        signing_agent=agent,
        timestamp_signature=timestamp,
        raw=data,
    )


def _optional_ci(obj: Mapping[str, Any], key: str) -> Any:
    try:
        _, value = mapping_get_ci(obj, key)
    except ValueError as exc:
        raise JWSFormatError(f"unprotected header: {exc}") from None
    return value


def _check_crit(
    header: Mapping[str, Any],
    scheme: SigningScheme,
    has_expiry: bool,
    extended: Mapping[str, Any],
) -> tuple[str, ...]:
    crit = header.get("crit")
    if crit is None or crit == []:
        raise JWSFormatError('missing "crit" header')
    if not isinstance(crit, list) or not all(isinstance(c, str) for c in crit):
        raise JWSFormatError('"crit" is not a list of strings')
    must = {HEADER_SIGNING_SCHEME}
    if has_expiry:
        must.add(HEADER_EXPIRY)
    if scheme is SigningScheme.SIGNING_AUTHORITY:
        must.add(HEADER_AUTHENTIC_SIGNING_TIME)
    for name in crit:
        if name in must:
            must.discard(name)
        elif name not in extended:
            raise JWSFormatError(f"{name!r} header is marked critical but not present")
    if must:
        raise JWSFormatError(f"these required headers are not marked as critical: {sorted(must)}")
    return tuple(crit)


def _parse_unprotected_chain(unprotected: Mapping[str, Any]) -> tuple[x509.Certificate, ...]:
    x5c = _optional_ci(unprotected, "x5c")
    if not x5c:
        raise JWSFormatError("certificate chain is not present")
    if not isinstance(x5c, list) or not all(isinstance(c, str) for c in x5c):
        raise JWSFormatError("x5c is not a list of strings")
    if len(x5c) > MAX_CHAIN_LENGTH:
        raise JWSFormatError(f"x5c has {len(x5c)} certificates, over {MAX_CHAIN_LENGTH}")
    chain = []
    for index, text in enumerate(x5c):
        der = b64std_decode(text, f"x5c[{index}]", _fail)
        try:
            cert = x509.load_der_x509_certificate(der)
        except (ValueError, x509.InvalidVersion):
            raise JWSFormatError(f"x5c[{index}] is not a DER X.509 certificate") from None
        # cryptography parses the SubjectPublicKeyInfo lazily: load it now so that an
        # unsupported or mangled key is a format error here, not an exception later.
        try:
            cert.public_key()
        except (ValueError, UnsupportedAlgorithm):
            raise JWSFormatError(f"x5c[{index}] has an unsupported or invalid public key") from None
        chain.append(cert)
    return tuple(chain)
