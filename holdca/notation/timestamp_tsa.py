"""The hold's built-in RFC 3161 time-stamping authority: build TimeStampResp tokens.

Sans-I/O: :func:`build_token` and :func:`build_response` take the parsed request, the TSA's
:class:`~holdca.keys.Signer` (HSM keys work: only ``sign`` is called), its chain and an
explicit ``now``. :class:`LocalTSA` binds a signer and chain, answers DER requests
(``POST /tsa`` in the reference server) and is a :class:`~holdca.notation.timestamp.Timestamper`.

The token is the minimal layout notation v1.3.2, ``openssl ts -verify`` and rfc3161-client
all accept: SignedData v3, eContentType id-ct-TSTInfo, the TSA leaf (and intermediates)
in ``certificates``, one SignerInfo v1 (issuerAndSerialNumber) with DER-sorted signed
attributes contentType, messageDigest and signingCertificateV2 (ESS v2, SHA-256 certHash
with issuerSerial), a DER ECDSA signature; TSTInfo v1 with whole-second genTime, a random
128-bit serial, accuracy 1 s, the request's messageImprint echoed byte for byte and its
nonce echoed.

Trust: a TSA run by the hold, with a key the hold controls, cannot vouch for time against
the hold's operator (who could backdate). See docs/notation.md, "Timestamps".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from holdca.errors import ProfileError, TimestampError
from holdca.keys import SignatureAlgorithm, Signer, spki_der
from holdca.notation.timestamp import (
    TimestampRequest,
    build_request,
    check_policy_oid,
    check_response,
    check_tsa_roots,
    parse_request,
)
from holdca.pki.rules import random_serial
from holdca.pki.tsa import check_tsa_certificate

__all__ = [
    "HOLDCA_TSA_POLICY",
    "LocalTSA",
    "build_response",
    "build_token",
    "rejection_response",
]

HOLDCA_TSA_POLICY = "1.2.840.113556.1.8000.2554.44316.50506.50070.9558.9695.11623633.9388418"
"""The TSA policy OID holdca's built-in TSA writes: UUID ad1cc54a-c396-2556-25df-b15cd18f4182
under the arc 1.2.840.113556.1.8000.2554 that Microsoft set aside for OIDs generated from
a GUID, which splits it into 16- and 24-bit arcs. (The 2.25.<UUID> form has a 128-bit arc,
which Go's encoding/asn1, and so notation, cannot parse: every token was refused.)"""

_SIGNATURE_OIDS = {
    SignatureAlgorithm.ES256: ("sha256_ecdsa", "sha256"),
    SignatureAlgorithm.ES384: ("sha384_ecdsa", "sha384"),
    SignatureAlgorithm.ES512: ("sha512_ecdsa", "sha512"),
}


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _digest_algorithm(name: str) -> algos.DigestAlgorithm:
    return algos.DigestAlgorithm({"algorithm": name, "parameters": core.Null()})


def build_token(
    request: TimestampRequest,
    *,
    signer: Signer,
    chain: Sequence[x509.Certificate],
    now: datetime,
    serial: int | None = None,
    policy: str = HOLDCA_TSA_POLICY,
    accuracy: timedelta | None = timedelta(seconds=1),
) -> bytes:
    """The DER TimeStampToken answering ``request``, signed by ``signer`` (``chain[0]``'s key).

    ``chain`` is the TSA leaf first, then intermediates, then optionally the root; with
    ``request.cert_req`` all but a trailing self-signed root go into the token, otherwise
    none (as RFC 3161 and tspclient-go require). genTime is ``now`` truncated to the second.

    Raises:
        ValueError: ``now`` is naive, an empty chain, accuracy not whole non-negative
            seconds, or a bad serial.
        TimestampError: the signer is not ECDSA (P-256/384/521) or not the leaf's key, the
            leaf is not valid at ``now``, or ``policy`` is not an OID notation can parse
            (:func:`~holdca.notation.timestamp.check_policy_oid`).
        SignerError: the signer failed.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if not chain:
        raise ValueError("the TSA chain is empty")
    check_policy_oid(policy)
    gen_time = now.astimezone(UTC).replace(microsecond=0)
    leaf = chain[0]
    if signer.algorithm not in _SIGNATURE_OIDS:
        raise TimestampError(f"the TSA key must be ECDSA, not {signer.algorithm.value}")
    if spki_der(signer.public_key) != spki_der(leaf.public_key()):
        raise TimestampError("the TSA signer's key is not the TSA certificate's")
    if not leaf.not_valid_before_utc <= gen_time <= leaf.not_valid_after_utc:
        raise TimestampError("the TSA certificate is not valid now")
    if serial is None:
        serial = random_serial(128)
    elif isinstance(serial, bool) or serial <= 0:
        raise ValueError("serial must be a positive int")
    fields: dict[str, object] = {
        "version": "v1",
        "policy": policy,
        "message_imprint": tsp.MessageImprint.load(request.message_imprint),
        "serial_number": serial,
        "gen_time": core.GeneralizedTime(gen_time),
    }
    if accuracy is not None:
        seconds = accuracy.total_seconds()
        if seconds < 0 or seconds != int(seconds):
            raise ValueError("accuracy must be whole non-negative seconds")
        fields["accuracy"] = {"seconds": int(seconds)}
    if request.nonce is not None:
        fields["nonce"] = request.nonce
    tst = tsp.TSTInfo(fields)
    tst_der = tst.dump()

    signature_oid, digest_name = _SIGNATURE_OIDS[signer.algorithm]
    leaf_der = leaf.public_bytes(Encoding.DER)
    leaf_asn1 = asn1_x509.Certificate.load(leaf_der)
    issuer_serial = {
        "issuer": [asn1_x509.GeneralName(name="directory_name", value=leaf_asn1.issuer)],
        "serial_number": leaf.serial_number,
    }
    ess = {
        "certs": [{"cert_hash": hashlib.sha256(leaf_der).digest(), "issuer_serial": issuer_serial}]
    }
    signed_attrs = cms.CMSAttributes(
        [
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "message_digest", "values": [hashlib.new(digest_name, tst_der).digest()]},
            {"type": "signing_certificate_v2", "values": [ess]},
        ]
    )
    # CMSAttributes.dump() DER-sorts the SET OF and starts with 0x31: the bytes signed
    signature = signer.sign(signed_attrs.dump())
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={"issuer": leaf_asn1.issuer, "serial_number": leaf.serial_number},
            ),
            "digest_algorithm": _digest_algorithm(digest_name),
            "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": signature_oid},
            "signature": signature,
        }
    )
    included = list(chain)
    if len(included) > 1 and included[-1].issuer == included[-1].subject:
        included.pop()  # the root is the verifier's; leaving it out keeps tokens small
    certificates = (
        [
            cms.CertificateChoices(
                name="certificate",
                value=asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)),
            )
            for c in included
        ]
        if request.cert_req
        else []
    )
    signed: dict[str, object] = {
        "version": "v3",
        "digest_algorithms": [_digest_algorithm(digest_name)],
        "encap_content_info": {"content_type": "tst_info", "content": tst},
        "signer_infos": [signer_info],
    }
    if certificates:
        signed["certificates"] = certificates
    token: bytes = cms.ContentInfo(
        {"content_type": "signed_data", "content": cms.SignedData(signed)}
    ).dump()
    return token


def build_response(
    request: TimestampRequest,
    *,
    signer: Signer,
    chain: Sequence[x509.Certificate],
    now: datetime,
    serial: int | None = None,
    policy: str = HOLDCA_TSA_POLICY,
) -> bytes:
    """The DER TimeStampResp (status granted) carrying :func:`build_token`'s token.

    Raises:
        The errors of :func:`build_token`.
    """
    token = build_token(request, signer=signer, chain=chain, now=now, serial=serial, policy=policy)
    response: bytes = tsp.TimeStampResp(
        {"status": {"status": "granted"}, "time_stamp_token": cms.ContentInfo.load(token)}
    ).dump()
    return response


def rejection_response(reason: str, *, fail_info: str = "bad_request") -> bytes:
    """A DER TimeStampResp with status rejection, ``reason`` as its statusString and
    ``fail_info`` (``bad_alg``, ``bad_request``, ``bad_data_format``, ``system_failure``...)."""
    status = tsp.PKIStatusInfo(
        {
            "status": "rejection",
            "status_string": [reason[:200]],
            "fail_info": tsp.PKIFailureInfo({fail_info}),
        }
    ).dump()
    # TimeStampResp ::= SEQUENCE { status, timeStampToken OPTIONAL }: no token here
    response: bytes = core.Sequence.load(b"\x30" + _length(len(status)) + status).dump()
    return response


class LocalTSA:
    """The hold's own TSA: a signer and its chain, answering requests and timestamping.

    Args:
        signer: the TSA key (label ``hold-tsa`` in the hold's KeyStore; PKCS#11 works).
        chain: the TSA certificate first, then intermediates, then its root (the root is
            what verifiers trust and what :meth:`timestamp` checks its own tokens against).
        policy: the TSA policy OID written into tokens.
        clock: returns the current time (timezone-aware).

    Raises:
        TimestampError: the chain does not end in a self-signed root CA, the leaf breaks the
            TSA profile, the signer is not the leaf's ECDSA key, or ``policy`` is not an OID
            notation can parse.
    """

    def __init__(
        self,
        signer: Signer,
        chain: Sequence[x509.Certificate],
        *,
        policy: str = HOLDCA_TSA_POLICY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Check the chain and key (see the class docstring)."""
        self.chain = tuple(chain)
        if len(self.chain) < 2:
            raise TimestampError("the TSA chain must hold the TSA certificate and its root")
        self.roots = check_tsa_roots(self.chain[-1:])
        try:
            check_tsa_certificate(self.chain[0])
        except ProfileError as exc:
            raise TimestampError(f"TSA certificate: {exc}") from None
        if signer.algorithm not in _SIGNATURE_OIDS:
            raise TimestampError(f"the TSA key must be ECDSA, not {signer.algorithm.value}")
        if spki_der(signer.public_key) != spki_der(self.chain[0].public_key()):
            raise TimestampError("the TSA signer's key is not the TSA certificate's")
        self.signer = signer
        self.policy = check_policy_oid(policy)
        self._clock = clock

    @property
    def root(self) -> x509.Certificate:
        """The TSA root (what a notation ``tsa:`` store or ``--timestamp-root-cert`` holds)."""
        return self.chain[-1]

    def respond(self, request_der: bytes, *, now: datetime | None = None) -> bytes:
        """The DER TimeStampResp answering the DER TimeStampReq ``request_der``.

        Raises:
            TimestampError: the request does not parse (see
                :func:`~holdca.notation.timestamp.parse_request`), or asks for a policy
                other than this TSA's; the caller answers with :func:`rejection_response`.
            SignerError: the signer failed.
        """
        request = parse_request(request_der)
        if request.policy is not None and request.policy != self.policy:
            raise TimestampError(f"unsupported TSA policy {request.policy}")
        return build_response(
            request,
            signer=self.signer,
            chain=self.chain,
            now=now if now is not None else self._clock(),
            policy=self.policy,
        )

    def timestamp(self, signature: bytes, *, hash_algorithm: str) -> bytes:
        """A TimeStampToken over ``signature``, checked against this TSA's root before it is
        returned (:class:`~holdca.notation.timestamp.Timestamper`).

        Raises:
            TimestampError: an unsupported hash, or a token that fails its own checks.
            SignerError: the signer failed.
        """
        request = build_request(signature, hash_algorithm=hash_algorithm)
        response = self.respond(request.der)
        return check_response(response, request, self.roots).token
