"""RFC 3161 timestamp tokens and responses, checked as notation v1.3.2 (tspclient-go) does.

* :func:`check_tsa_roots`: TSA roots must be self-signed CA certificates.
* :func:`verify_token`: check a DER ``TimeStampToken`` (CMS SignedData over a TSTInfo,
  its ESS signing certificate, signature, TSA profile and chain to a root at genTime),
  returning its :class:`TimestampInfo`.
* :func:`check_response`: check a DER ``TimeStampResp`` against the request it answers
  (status, messageImprint byte-equal, nonce) and then its token.

Sans-I/O; every malformed or failing input raises :class:`~holdca.errors.TimestampError`;
sizes are bounded by :data:`~holdca.notation.timestamp_core.MAX_TOKEN_SIZE`. Every public
name is also importable from :mod:`holdca.notation.timestamp`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from holdca.errors import ProfileError, TimestampError
from holdca.notation.timestamp_core import (
    HASH_ALGORITHMS,
    MAX_TOKEN_SIZE,
    check_policy_oid,
    checked_hash_name,
    guarded_parse,
    imprint_digest,
)
from holdca.notation.timestamp_request import TimestampRequest
from holdca.pki.tsa import check_tsa_certificate

__all__ = ["TimestampInfo", "check_response", "check_tsa_roots", "verify_token"]

_MAX_CERTS = 16
_MAX_CHAIN = 8


@dataclass(frozen=True)
class TimestampInfo:
    """What a checked TimeStampToken says.

    Attributes:
        gen_time: the TSA's time (UTC).
        accuracy: its accuracy (zero when absent).
        serial_number: the token's serial.
        policy: the TSA policy OID (dotted).
        hash_algorithm: the imprint's hash.
        digest: the imprint's hashed message.
        nonce: the nonce, or None.
        signer: the TSA certificate that signed it.
        token: the DER token.
    """

    gen_time: datetime
    accuracy: timedelta
    serial_number: int
    policy: str
    hash_algorithm: str
    digest: bytes
    nonce: int | None
    signer: x509.Certificate
    token: bytes


def check_tsa_roots(roots: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """``roots``, checked to be self-signed CA certificates (what notation requires of a
    ``tsa:`` store and of ``--timestamp-root-cert``).

    Raises:
        TimestampError: no roots, or one that is not a self-signed CA.
    """
    checked = tuple(roots)
    if not checked:
        raise TimestampError("no TSA root certificates")
    for root in checked:
        if not isinstance(root, x509.Certificate):
            raise TypeError("TSA roots must be x509.Certificate objects")
        if root.issuer != root.subject or not _ca(root):
            raise TimestampError(f"TSA root {root.subject.rfc4514_string()} is not a root CA")
        try:
            root.verify_directly_issued_by(root)
        except (InvalidSignature, ValueError, TypeError):
            raise TimestampError(
                f"TSA root {root.subject.rfc4514_string()} is not self-signed"
            ) from None
    return checked


def _ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    if not bc.ca:
        return False
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return bool(ku.key_cert_sign)


def _verify_signature(cert: x509.Certificate, signer_info: Any, data: bytes) -> None:
    """Check the SignerInfo's signature over ``data`` with ``cert``'s key (the algorithms
    tspclient-go accepts; id-ecPublicKey as a signature algorithm is refused)."""
    algorithm = signer_info["signature_algorithm"]
    name = algorithm["algorithm"].native
    signature = signer_info["signature"].native
    key = cert.public_key()
    by_ecdsa = {"sha256_ecdsa": "sha256", "sha384_ecdsa": "sha384", "sha512_ecdsa": "sha512"}
    by_rsa = {"sha256_rsa": "sha256", "sha384_rsa": "sha384", "sha512_rsa": "sha512"}
    try:
        if name in by_ecdsa and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(HASH_ALGORITHMS[by_ecdsa[name]]()))
        elif name in by_rsa and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), HASH_ALGORITHMS[by_rsa[name]]())
        elif name == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
            digest = checked_hash_name(signer_info["digest_algorithm"]["algorithm"].native, "token")
            key.verify(signature, data, padding.PKCS1v15(), HASH_ALGORITHMS[digest]())
        elif name == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
            params = algorithm["parameters"]
            digest = checked_hash_name(params["hash_algorithm"]["algorithm"].native, "token")
            pss = padding.PSS(
                mgf=padding.MGF1(HASH_ALGORITHMS[digest]()),
                salt_length=params["salt_length"].native,
            )
            key.verify(signature, data, pss, HASH_ALGORITHMS[digest]())
        else:
            raise TimestampError(f"token: unsupported signature algorithm {name}")
    except InvalidSignature:
        raise TimestampError("token: the TSA's signature does not verify") from None


def _valid_at(cert: x509.Certificate, at: datetime, accuracy: timedelta) -> bool:
    return cert.not_valid_before_utc <= at - accuracy and at + accuracy <= cert.not_valid_after_utc


def _timestamping_allowed(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return (
        ExtendedKeyUsageOID.TIME_STAMPING in eku
        or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku
    )


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child.issuer != parent.subject:
        return False
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _chain_to_roots(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: datetime,
) -> None:
    """Walk from ``leaf`` to one of ``roots`` through ``intermediates``, every certificate
    valid at ``at`` (genTime), every issuer a CA, every EKU allowing timeStamping."""
    root_ders = {r.public_bytes(Encoding.DER) for r in roots}
    current = leaf
    for _ in range(_MAX_CHAIN):
        if not _valid_at(current, at, timedelta(0)):
            raise TimestampError(
                f"token: {current.subject.rfc4514_string()} is not valid at genTime {at}"
            )
        if not _timestamping_allowed(current):
            raise TimestampError(
                f"token: {current.subject.rfc4514_string()} does not allow timeStamping"
            )
        if current.public_bytes(Encoding.DER) in root_ders:
            return
        anchor = next((r for r in roots if _issued_by(current, r)), None)
        if anchor is not None:
            if not _valid_at(anchor, at, timedelta(0)):
                raise TimestampError("token: the TSA root is not valid at genTime")
            return
        parent = next(
            (c for c in intermediates if c is not current and _ca(c) and _issued_by(current, c)),
            None,
        )
        if parent is None:
            raise TimestampError("token: the TSA certificate does not chain to a trusted TSA root")
        current = parent
    raise TimestampError("token: the TSA chain is too long")


def verify_token(
    token: bytes,
    roots: Sequence[x509.Certificate],
    *,
    data: bytes | None = None,
) -> TimestampInfo:
    """Check a DER TimeStampToken as notation v1.3.2 does, and return what it says.

    Checked, in order: at most :data:`MAX_TOKEN_SIZE` bytes; ContentInfo signedData;
    SignedData version 3 with eContentType id-ct-TSTInfo; TSTInfo version 1 with a
    sha256/sha384/sha512 imprint (equal to the hash of ``data`` when given) and a UTC
    genTime; a policy OID notation can parse (:func:`check_policy_oid`); exactly one
    SignerInfo, version 1 (issuerAndSerialNumber); signed attributes contentType =
    id-ct-TSTInfo, messageDigest = hash of the TSTInfo, signingCertificateV2
    whose first ESSCertIDv2 names (by issuerSerial, else the sid) a certificate of the
    token with a matching certHash; the signature over the DER-sorted signed attributes;
    the signing certificate's TSA profile (EKU exactly timeStamping, critical; see
    :func:`holdca.pki.check_tsa_certificate`); its chain to one of ``roots`` at genTime.

    Raises:
        TimestampError: naming the first check that fails.
    """
    roots = check_tsa_roots(roots)
    if not isinstance(token, bytes | bytearray | memoryview):
        raise TimestampError("token: not bytes")
    token = bytes(token)
    if len(token) > MAX_TOKEN_SIZE:
        raise TimestampError(f"token: larger than {MAX_TOKEN_SIZE} bytes")
    return guarded_parse("token", lambda: _verify_token(token, roots, data))


def _verify_token(
    token: bytes, roots: Sequence[x509.Certificate], data: bytes | None
) -> TimestampInfo:
    info = cms.ContentInfo.load(token, strict=True)
    if info["content_type"].native != "signed_data":
        raise TimestampError("token: not a CMS SignedData")
    signed = info["content"]
    if signed["version"].native != "v3":
        raise TimestampError("token: SignedData version is not 3")
    encap = signed["encap_content_info"]
    if encap["content_type"].native != "tst_info":
        raise TimestampError("token: the content type is not id-ct-TSTInfo")
    content = encap["content"]
    if not isinstance(content, core.ParsableOctetString):
        raise TimestampError("token: no TSTInfo")
    tst_der = bytes(content.contents)
    tst = tsp.TSTInfo.load(tst_der, strict=True)
    if tst["version"].native != "v1":
        raise TimestampError("token: TSTInfo version is not 1")
    imprint = tst["message_imprint"]
    hash_name = checked_hash_name(imprint["hash_algorithm"]["algorithm"].native, "token")
    digest = imprint["hashed_message"].native
    if data is not None and digest != imprint_digest(hash_name, data):
        raise TimestampError("token: the messageImprint is not the hash of the signature")
    policy = check_policy_oid(tst["policy"].dotted)
    gen_raw = tst["gen_time"].contents
    if not gen_raw.endswith(b"Z"):
        raise TimestampError("token: genTime is not UTC")
    gen_time = tst["gen_time"].native
    accuracy = timedelta(0)
    if tst["accuracy"].native is not None:
        acc = tst["accuracy"].native
        accuracy = timedelta(
            seconds=acc["seconds"] or 0,
            milliseconds=acc["millis"] or 0,
            microseconds=acc["micros"] or 0,
        )

    certificates: list[x509.Certificate] = []
    raw_certs = signed["certificates"]
    if raw_certs.native is not None:
        if len(raw_certs) > _MAX_CERTS:
            raise TimestampError(f"token: more than {_MAX_CERTS} certificates")
        for choice in raw_certs:
            if choice.name != "certificate":
                raise TimestampError("token: a certificate that is not X.509")
            certificates.append(x509.load_der_x509_certificate(choice.chosen.dump()))
    signer_infos = signed["signer_infos"]
    if len(signer_infos) != 1:
        raise TimestampError("token: not exactly one SignerInfo")
    signer_info = signer_infos[0]
    if signer_info["version"].native != "v1" or signer_info["sid"].name != (
        "issuer_and_serial_number"
    ):
        raise TimestampError("token: the SignerInfo is not version 1 (issuerAndSerialNumber)")
    sid = signer_info["sid"].chosen
    digest_name = checked_hash_name(signer_info["digest_algorithm"]["algorithm"].native, "token")

    attributes: dict[str, Any] = {}
    raw_attributes: list[bytes] = []
    signed_attrs = signer_info["signed_attrs"]
    if signed_attrs.native is None:
        raise TimestampError("token: no signed attributes")
    for attribute in signed_attrs:
        kind = attribute["type"].dotted
        if kind in attributes:
            raise TimestampError(f"token: signed attribute {kind} appears twice")
        attributes[kind] = attribute["values"]
        raw_attributes.append(attribute.dump())
    content_type = attributes.get("1.2.840.113549.1.9.3")
    if content_type is None or [v.native for v in content_type] != ["tst_info"]:
        raise TimestampError("token: the contentType attribute is not id-ct-TSTInfo")
    message_digest = attributes.get("1.2.840.113549.1.9.4")
    if message_digest is None or len(message_digest) != 1:
        raise TimestampError("token: no messageDigest attribute")
    if message_digest[0].native != imprint_digest(digest_name, tst_der):
        raise TimestampError("token: the messageDigest is not the hash of the TSTInfo")
    ess = attributes.get("1.2.840.113549.1.9.16.2.47")
    if ess is None or len(ess) != 1 or not len(ess[0]["certs"]):
        raise TimestampError("token: no signingCertificateV2 attribute (ESS v1 is refused)")
    ess_id = ess[0]["certs"][0]
    signer_cert = _ess_certificate(ess_id, sid, certificates)

    # Go re-marshals the attributes as a SET OF, which DER-sorts by encoding
    body = b"".join(sorted(raw_attributes))
    to_verify = b"\x31" + _length(len(body)) + body
    _verify_signature(signer_cert, signer_info, to_verify)
    try:
        check_tsa_certificate(signer_cert)
    except ProfileError as exc:
        raise TimestampError(f"token: {exc}") from None
    _chain_to_roots(signer_cert, certificates, roots, gen_time)
    nonce = tst["nonce"].native
    return TimestampInfo(
        gen_time=gen_time,
        accuracy=accuracy,
        serial_number=tst["serial_number"].native,
        policy=policy,
        hash_algorithm=hash_name,
        digest=digest,
        nonce=nonce,
        signer=signer_cert,
        token=token,
    )


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _asn1_name(name: x509.Name) -> asn1_x509.Name:
    """``name`` as asn1crypto's Name, whose ``==`` is RFC 5280 name matching."""
    return asn1_x509.Name.load(name.public_bytes())


def _ess_certificate(
    ess_id: Any, sid: Any, certificates: Sequence[x509.Certificate]
) -> x509.Certificate:
    """The certificate the first ESSCertIDv2 names, with its certHash checked."""
    issuer_serial = ess_id["issuer_serial"]
    if issuer_serial.native is not None:
        names = [g.chosen for g in issuer_serial["issuer"] if g.name == "directory_name"]
        serial = issuer_serial["serial_number"].native
    else:
        names = [sid["issuer"]]
        serial = sid["serial_number"].native
    candidates = [
        c for c in certificates if c.serial_number == serial and _asn1_name(c.issuer) in names
    ]
    if not candidates:
        raise TimestampError("token: the signing certificate is not in the token")
    cert = candidates[0]
    if (
        cert.serial_number != sid["serial_number"].native
        or _asn1_name(cert.issuer) != sid["issuer"]
    ):
        raise TimestampError("token: the SignerInfo does not name the ESS signing certificate")
    hash_name = checked_hash_name(ess_id["hash_algorithm"]["algorithm"].native, "token ESS")
    if ess_id["cert_hash"].native != imprint_digest(hash_name, cert.public_bytes(Encoding.DER)):
        raise TimestampError("token: the signing certificate's hash does not match ESS certHash")
    return cert


# --- responses -------------------------------------------------------------------------


def check_response(
    response: bytes, request: TimestampRequest, roots: Sequence[x509.Certificate]
) -> TimestampInfo:
    """Check a DER TimeStampResp against the ``request`` it answers, then its token.

    Checked: at most :data:`MAX_TOKEN_SIZE` bytes, DER-parsable with nothing trailing;
    status granted (0) or grantedWithMods (1); a token; the token's messageImprint
    byte-equal to the request's; its nonce equal to the request's; with certReq, the
    signing certificate in the token; then everything :func:`verify_token` checks.

    Returns:
        The token's :class:`TimestampInfo` (``.token`` is the DER token).

    Raises:
        TimestampError: naming the first check that fails (a rejection names its status).
    """
    roots = check_tsa_roots(roots)
    if not isinstance(response, bytes | bytearray | memoryview):
        raise TimestampError("timestamp response: not bytes")
    response = bytes(response)
    if len(response) > MAX_TOKEN_SIZE:
        raise TimestampError(f"timestamp response: larger than {MAX_TOKEN_SIZE} bytes")

    def parse() -> tuple[bytes, bytes, int | None]:
        outer = core.Sequence.load(response, strict=True)
        status = tsp.PKIStatusInfo.load(outer.contents)  # the first element
        code = status["status"].native
        if code not in ("granted", "granted_with_mods"):
            text = status["status_string"].native or []
            detail = "; ".join(str(t)[:200] for t in text[:3])
            raise TimestampError(
                f"timestamp response: status {code}" + (f" ({detail})" if detail else "")
            )
        resp = tsp.TimeStampResp.load(response, strict=True)
        token = resp["time_stamp_token"]
        if token.native is None:
            raise TimestampError("timestamp response: granted but no token")
        encap = token["content"]["encap_content_info"]
        tst = tsp.TSTInfo.load(bytes(encap["content"].contents), strict=True)
        return token.dump(), tst["message_imprint"].dump(), tst["nonce"].native

    token, imprint, nonce = guarded_parse("timestamp response", parse)
    if imprint != request.message_imprint:
        raise TimestampError("timestamp response: the messageImprint is not the request's")
    if nonce != request.nonce:
        raise TimestampError("timestamp response: the nonce is not the request's")
    info = verify_token(token, roots)
    if info.digest != request.digest or info.hash_algorithm != request.hash_algorithm:
        raise TimestampError("timestamp response: the messageImprint is not the request's")
    return info
