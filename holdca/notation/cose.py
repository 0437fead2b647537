"""Notation COSE signature envelopes (``application/cose``): build and parse.

An envelope is a tagged ``COSE_Sign1`` (RFC 9052), as notation-core-go
``signature/cose`` reads it::

    18([protected: bstr .cbor {1: alg, 2: crit, 3: "application/vnd.cncf.notary.payload.v1+json",
                               "io.cncf.notary.signingScheme": "notary.x509",
                               "io.cncf.notary.signingTime": 1(<seconds>),
                               ["io.cncf.notary.expiry": 1(<seconds>)]},
        unprotected: {33: [leaf DER, ..., root DER],
                      "io.cncf.notary.signingAgent": "holdca/0.1.0",
                      ["io.cncf.notary.timestampSignature": <DER TimeStampToken>]},
        payload: {"targetArtifact": <descriptor>} (JSON),
        signature: raw r||s (ECDSA) or RSASSA-PSS over
                   ["Signature1", protected, h'', payload]])

What notation requires of it (notation-core-go v1.3.0, go-cose v1.3.0): the tag (the bytes
start ``d2 84``); ``alg`` matching the leaf key (ES256 -7, ES384 -35, ES512 -36, PS256
-37, PS384 -38, PS512 -39); every ``crit`` label present (the signing scheme, the
authentic signing time for ``notary.x509.signingAuthority``, the expiry when set); the
content type as a text string; times as tag 1 with integer seconds; ``x5chain`` as an
array even for one certificate, in the unprotected map; an attached payload. The codec is
cbor2 (the ``cose`` extra): holdca's DAG-CBOR codec has string keys only.

:func:`sign_cose_envelope` takes the same arguments as
:func:`holdca.notation.envelope.sign_envelope`; :func:`parse_cose_envelope` is strict and
does not check the signature (:func:`verify_cose_signature` does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from holdca.errors import MalformedInputError, SignatureInvalidError
from holdca.keys import SignatureAlgorithm, Signer
from holdca.keys.encoding import der_to_raw, raw_to_der
from holdca.notation.envelope import (
    DEFAULT_SIGNING_AGENT,
    HEADER_AUTHENTIC_SIGNING_TIME,
    HEADER_EXPIRY,
    HEADER_SIGNING_SCHEME,
    HEADER_SIGNING_TIME,
    PAYLOAD_CONTENT_TYPE,
    CertificateOrDER,
    Descriptor,
    SigningScheme,
    prepare_signing,
)
from holdca.notation.timestamp import Timestamper

__all__ = [
    "COSE_ALGORITHMS",
    "HEADER_TIMESTAMP",
    "MAX_COSE_SIZE",
    "MEDIA_TYPE_COSE",
    "CoseEnvelope",
    "parse_cose_envelope",
    "sign_cose_envelope",
    "verify_cose_signature",
]

MEDIA_TYPE_COSE = "application/cose"
"""The OCI layer media type of a COSE envelope."""

HEADER_TIMESTAMP = "io.cncf.notary.timestampSignature"
"""Unprotected label of an RFC 3161 TimeStampToken over the signature bytes."""

MAX_COSE_SIZE = 4 * 1024 * 1024
"""Largest envelope :func:`parse_cose_envelope` reads."""

COSE_ALGORITHMS: dict[SignatureAlgorithm, int] = {
    SignatureAlgorithm.ES256: -7,
    SignatureAlgorithm.ES384: -35,
    SignatureAlgorithm.ES512: -36,
    SignatureAlgorithm.PS256: -37,
    SignatureAlgorithm.PS384: -38,
    SignatureAlgorithm.PS512: -39,
}
"""COSE algorithm identifiers (RFC 9053, RFC 8230) of the algorithms notation signs with."""

_BY_ID = {v: k for k, v in COSE_ALGORITHMS.items()}
_ECDSA_SIZES = {
    SignatureAlgorithm.ES256: 32,
    SignatureAlgorithm.ES384: 48,
    SignatureAlgorithm.ES512: 66,
}
_TAG_SIGN1 = 18
_ALG, _CRIT, _CTY, _X5CHAIN = 1, 2, 3, 33
_AGENT = "io.cncf.notary.signingAgent"


def _cbor() -> Any:
    try:
        import cbor2  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        raise ImportError(
            "COSE envelopes need cbor2: pip install -e '.[cose]' from a checkout"
        ) from exc
    return cbor2


@dataclass(frozen=True)
class CoseEnvelope:
    """A parsed COSE envelope.

    Attributes:
        protected: the protected header bytes as transmitted (what was signed).
        headers: the decoded protected header map.
        unprotected: the unprotected header map.
        payload: the payload bytes (JSON ``{"targetArtifact": ...}``).
        signature: the raw signature bytes (what a timestamp stamps).
        algorithm: the signature algorithm ``alg`` names.
        scheme: the signing scheme.
        signing_time: the (authentic) signing time.
        expiry: ``io.cncf.notary.expiry``, if any.
        chain: ``x5chain``, leaf first.
        descriptor: the payload's target artifact.
        timestamp: the DER TimeStampToken in the unprotected header, if any.
    """

    protected: bytes = field(repr=False)
    headers: dict[Any, Any] = field(repr=False)
    unprotected: dict[Any, Any] = field(repr=False)
    payload: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    algorithm: SignatureAlgorithm
    scheme: SigningScheme
    signing_time: datetime
    expiry: datetime | None
    chain: tuple[x509.Certificate, ...] = field(repr=False)
    descriptor: Descriptor
    timestamp: bytes | None = field(repr=False, default=None)

    @property
    def leaf(self) -> x509.Certificate:
        """The signing certificate."""
        return self.chain[0]


def _der_of(cert: CertificateOrDER) -> bytes:
    if isinstance(cert, bytes):
        return cert
    if isinstance(cert, x509.Certificate):
        return cert.public_bytes(Encoding.DER)
    raise TypeError(f"a chain element must be a Certificate or DER bytes, not {type(cert)}")


def _payload(descriptor: Descriptor) -> bytes:
    return json.dumps(
        {"targetArtifact": descriptor.to_json()}, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return bytes(_cbor().dumps(["Signature1", protected, b"", payload]))


def sign_cose_envelope(
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
    """Sign ``descriptor`` and return the COSE_Sign1 envelope bytes notation verifies.

    Arguments and checks as :func:`holdca.notation.envelope.sign_envelope` (the signing
    time is ``now`` truncated to the second; the algorithm follows from the leaf key).
    ``timestamper``: countersigns the signature bytes with an RFC 3161 token, put under
    ``io.cncf.notary.timestampSignature`` in the unprotected header; for ``notary.x509``
    only (notation never timestamps signingAuthority).

    Raises:
        ValueError: empty chain, naive time, signer not matching the leaf, expiry not
            after the signing time, reserved annotation keys.
        TypeError: a chain element is neither a certificate nor bytes.
        ProfileError: the chain is one notation refuses to sign with.
        UnsupportedAlgorithmError: the leaf key has no Notation algorithm.
        SignerError: the signer failed.
        ImportError: cbor2 is not installed.
    """
    cbor2 = _cbor()
    if not chain:
        raise ValueError("the certificate chain is empty")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    signing_time = now.astimezone(UTC).replace(microsecond=0)
    algorithm, _, leaf_der, expiry = prepare_signing(
        signer, chain, descriptor, signing_time=signing_time, expiry=expiry, check_chain=check_chain
    )
    ders = [leaf_der, *(_der_of(c) for c in chain[1:])]

    authority = scheme is SigningScheme.SIGNING_AUTHORITY
    crit: list[str] = [HEADER_SIGNING_SCHEME]
    headers: dict[Any, Any] = {
        _ALG: COSE_ALGORITHMS[algorithm],
        _CTY: PAYLOAD_CONTENT_TYPE,
        HEADER_SIGNING_SCHEME: scheme.value,
    }
    seconds = cbor2.CBORTag(1, int(signing_time.timestamp()))
    if authority:
        crit.append(HEADER_AUTHENTIC_SIGNING_TIME)
        headers[HEADER_AUTHENTIC_SIGNING_TIME] = seconds
    else:
        headers[HEADER_SIGNING_TIME] = seconds
    if expiry is not None:
        crit.append(HEADER_EXPIRY)
        headers[HEADER_EXPIRY] = cbor2.CBORTag(1, int(expiry.timestamp()))
    headers[_CRIT] = crit
    protected = bytes(cbor2.dumps(headers, canonical=True))
    payload = _payload(descriptor)
    signature = signer.sign(_sig_structure(protected, payload))
    size = _ECDSA_SIZES.get(algorithm)
    if size is not None:  # ECDSA: DER from the signer, raw r || s in COSE
        signature = der_to_raw(signature, size)
    unprotected: dict[Any, Any] = {_X5CHAIN: ders, _AGENT: signing_agent}
    if timestamper is not None and not authority:
        unprotected[HEADER_TIMESTAMP] = bytes(
            timestamper.timestamp(signature, hash_algorithm=algorithm.hash.name)
        )
    return bytes(
        cbor2.dumps(cbor2.CBORTag(_TAG_SIGN1, [protected, unprotected, payload, signature]))
    )


def _fail(message: str) -> MalformedInputError:
    return MalformedInputError(f"COSE envelope: {message}")


def _time(value: Any, what: str) -> datetime:
    tag = getattr(value, "tag", None)
    inner = getattr(value, "value", None)
    if isinstance(value, datetime):  # cbor2 decodes tag 1 itself
        return value.astimezone(UTC)
    if tag != 1 or not isinstance(inner, int) or isinstance(inner, bool):
        raise _fail(f"{what} must be tag 1 with integer seconds")
    return datetime.fromtimestamp(inner, tz=UTC)


def parse_cose_envelope(data: bytes, *, max_size: int = MAX_COSE_SIZE) -> CoseEnvelope:
    """Parse a notation COSE envelope, checking what notation checks (not the signature).

    Raises:
        MalformedInputError: too large, not CBOR, not a tagged COSE_Sign1, a missing or
            wrong header, a ``crit`` label absent, an undecodable certificate or payload.
        ImportError: cbor2 is not installed.
    """
    cbor2 = _cbor()
    if len(data) > max_size:
        raise _fail(f"larger than {max_size} bytes")
    if data[:2] != b"\xd2\x84":
        raise _fail("not a tagged COSE_Sign1 (must start with tag 18 and a 4-element array)")
    try:
        outer = cbor2.loads(bytes(data))
        protected, unprotected, payload, signature = outer.value
        headers = cbor2.loads(protected) if protected else {}
    except Exception as exc:  # cbor2 raises its own error types and ValueError/TypeError
        raise _fail(f"not valid CBOR ({type(exc).__name__})") from None
    # (cbor2 decodes the maps and arrays inside a tag as frozendicts and tuples)
    if not (
        isinstance(protected, bytes)
        and isinstance(unprotected, Mapping)
        and isinstance(payload, bytes)
        and isinstance(signature, bytes)
        and isinstance(headers, Mapping)
    ):
        raise _fail("COSE_Sign1 must be [bstr, map, bstr, bstr] with a map in the bstr")
    headers, unprotected = dict(headers), dict(unprotected)
    algorithm = _BY_ID.get(headers.get(_ALG))  # type: ignore[arg-type]
    if algorithm is None:
        raise _fail(f"unsupported alg {headers.get(_ALG)!r}")
    if headers.get(_CTY) != PAYLOAD_CONTENT_TYPE:
        raise _fail(f"content type (3) must be the text {PAYLOAD_CONTENT_TYPE!r}")
    try:
        scheme = SigningScheme(headers.get(HEADER_SIGNING_SCHEME))
    except ValueError:
        raise _fail("unknown or missing io.cncf.notary.signingScheme") from None
    crit = headers.get(_CRIT)
    if not isinstance(crit, list | tuple) or HEADER_SIGNING_SCHEME not in crit:
        raise _fail("crit (2) must list io.cncf.notary.signingScheme")
    for label in crit:
        if label not in headers:
            raise _fail(f"crit label {label!r} is not in the protected header")
    authority = scheme is SigningScheme.SIGNING_AUTHORITY
    time_label = HEADER_AUTHENTIC_SIGNING_TIME if authority else HEADER_SIGNING_TIME
    if time_label not in headers:
        raise _fail(f"{time_label} is missing")
    if authority and HEADER_AUTHENTIC_SIGNING_TIME not in crit:
        raise _fail("signingAuthority needs io.cncf.notary.authenticSigningTime in crit")
    signing_time = _time(headers[time_label], time_label)
    expiry = None
    if HEADER_EXPIRY in headers:
        if HEADER_EXPIRY not in crit:
            raise _fail("io.cncf.notary.expiry must be critical")
        expiry = _time(headers[HEADER_EXPIRY], HEADER_EXPIRY)
    chain_der = unprotected.get(_X5CHAIN)
    if not isinstance(chain_der, list | tuple) or not chain_der:
        raise _fail("x5chain (33) must be a non-empty array in the unprotected header")
    try:
        chain = tuple(x509.load_der_x509_certificate(bytes(d)) for d in chain_der)
    except (ValueError, TypeError, x509.InvalidVersion):
        raise _fail("x5chain holds a certificate that cannot be parsed") from None
    try:
        target = json.loads(payload)["targetArtifact"]
    except (ValueError, KeyError, TypeError):
        raise _fail("payload is not JSON with a targetArtifact") from None
    descriptor = Descriptor.from_json(target, "targetArtifact")
    stamp = unprotected.get(HEADER_TIMESTAMP)
    if stamp is not None and not isinstance(stamp, bytes):
        raise _fail(f"{HEADER_TIMESTAMP} must be a byte string")
    return CoseEnvelope(
        protected=protected,
        headers=headers,
        unprotected=unprotected,
        payload=payload,
        signature=signature,
        algorithm=algorithm,
        scheme=scheme,
        signing_time=signing_time,
        expiry=expiry,
        chain=chain,
        descriptor=descriptor,
        timestamp=stamp,
    )


def verify_cose_signature(envelope: CoseEnvelope) -> None:
    """Check the envelope's signature with its leaf key over the transmitted bytes.

    Raises:
        SignatureInvalidError: the signature does not verify, or the leaf key is not
            the algorithm's kind.
    """
    key = envelope.leaf.public_key()
    message = _sig_structure(envelope.protected, envelope.payload)
    algorithm = envelope.algorithm
    try:
        size = _ECDSA_SIZES.get(algorithm)
        if size is not None:
            if (
                not isinstance(key, ec.EllipticCurvePublicKey)
                or len(envelope.signature) != 2 * size
            ):
                raise SignatureInvalidError("COSE signature: not an ECDSA key or wrong size")
            key.verify(raw_to_der(envelope.signature), message, ec.ECDSA(algorithm.hash))
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                raise SignatureInvalidError("COSE signature: PS* needs an RSA leaf key")
            key.verify(
                envelope.signature,
                message,
                padding.PSS(
                    mgf=padding.MGF1(algorithm.hash), salt_length=algorithm.hash.digest_size
                ),
                algorithm.hash,
            )
    except InvalidSignature:
        raise SignatureInvalidError("COSE signature does not verify with the leaf key") from None
