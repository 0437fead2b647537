"""Verify Notation JWS envelopes with notation v1.3.2's semantics, in Python.

For embedders (check a signature before publishing it) and for tests. The checks run in
notation's order, each with the action the policy statement's level and overrides give it
(``enforce`` raises, ``log`` records, ``skip`` does not run):

1. integrity: parse (:func:`~holdca.notation.envelope.parse_envelope`), the JWS
   signature over ``protected.payload`` with the leaf key, ``alg`` equal to the leaf's,
   the chain shape and certificate profile
   (:func:`holdca.pki.check_notation_profile`), ``cty``. Always enforced (unless level ``skip``).
2. authenticity: some ``x5c`` certificate is byte-equal to a certificate of the
   statement's trust stores of the scheme's type (``ca`` for notary.x509,
   ``signingAuthority`` for notary.x509.signingAuthority); then trusted identities
   (``"*"`` or subset match of the leaf subject's DN).
3. expiry: ``now`` before ``io.cncf.notary.expiry``.
4. authenticTimestamp: notary.x509 without a ``tsa`` store: every certificate valid at
   ``now``; signingAuthority: every certificate valid at the authentic signing time.
   (RFC 3161 timestamp verification with a ``tsa`` store is not implemented and fails.)
5. revocation: through an optional sans-I/O ``revocation`` callback per (cert, issuer);
   certificates without OCSP/CRL URLs are non-revocable, as in notation; without a
   callback, a certificate with URLs is "unknown".
6. the signed ``targetArtifact`` equals ``descriptor`` (mediaType, digest, size).

The first enforced failure is raised as a :class:`~holdca.errors.NotationVerificationError`
subclass; logged failures are returned in :attr:`VerificationOutcome.results`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID

from holdca.errors import (
    ArtifactMismatchError,
    AuthenticityError,
    AuthenticTimestampError,
    ExpiredSignatureError,
    HoldCAError,
    IntegrityError,
    JWSFormatError,
    NotationVerificationError,
    ProfileError,
    RevocationUnknownError,
    RevokedError,
    TrustedIdentityError,
    TrustPolicyError,
    TrustStoreError,
    VerificationInconclusiveError,
)
from holdca.keys.encoding import raw_to_der
from holdca.notation._codec import go_name_string
from holdca.notation.envelope import (
    PAYLOAD_CONTENT_TYPE,
    Descriptor,
    Envelope,
    SigningScheme,
    parse_envelope,
)
from holdca.notation.trustpolicy import (
    WILDCARD,
    X509_SUBJECT,
    Action,
    Check,
    TrustPolicyStatement,
    parse_distinguished_name,
)
from holdca.notation.truststore import TrustStoreReader
from holdca.pki import check_notation_profile

__all__ = [
    "CheckResult",
    "RevocationChecker",
    "RevocationStatus",
    "VerificationOutcome",
    "revocation_from_crls",
    "verify_envelope",
    "verify_jws_signature",
]

_PLUGIN_HEADER = "io.cncf.notary.verificationPlugin"


class RevocationStatus(enum.Enum):
    """What a revocation source says about one certificate."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"
    NON_REVOCABLE = "nonRevocable"


RevocationChecker = Callable[[x509.Certificate, x509.Certificate], RevocationStatus]
"""``(certificate, issuer) -> status``: the embedder's sans-I/O revocation source (e.g.
CRLs or OCSP responses it already fetched)."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: the action it had and the failure, if any."""

    check: Check
    action: Action
    error: NotationVerificationError | None = None


@dataclass(frozen=True)
class VerificationOutcome:
    """A successful verification (enforced checks passed; logged failures listed).

    Attributes:
        level: the statement's level name.
        envelope: the parsed envelope (None when the level is ``skip``).
        results: one :class:`CheckResult` per check that ran.
    """

    level: str
    envelope: Envelope | None
    results: tuple[CheckResult, ...]

    @property
    def warnings(self) -> list[NotationVerificationError]:
        """Failures of checks whose action was ``log``."""
        return [r.error for r in self.results if r.error is not None]


# --- integrity helpers -------------------------------------------------------------------


def verify_jws_signature(envelope: Envelope) -> None:
    """Check the JWS signature with the leaf's public key and ``alg``.

    Raises:
        IntegrityError: the signature does not verify (ECDSA must be raw ``r||s`` of
            exactly twice the curve size, as golang-jwt requires).
    """
    key = envelope.leaf.public_key()
    alg = envelope.algorithm
    data = envelope.signing_input
    try:
        if alg.is_ecdsa:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise InvalidSignature
            size = (key.curve.key_size + 7) // 8
            if len(envelope.signature) != 2 * size or key.curve.name != alg.curve.name:
                raise InvalidSignature
            key.verify(raw_to_der(envelope.signature), data, ec.ECDSA(alg.hash))
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                raise InvalidSignature
            pss = padding.PSS(mgf=padding.MGF1(alg.hash), salt_length=padding.PSS.AUTO)
            key.verify(envelope.signature, data, pss, alg.hash)
    except (InvalidSignature, ValueError, HoldCAError):
        raise IntegrityError(
            f"signature is invalid. Error: {alg.value} signature does not verify with the "
            "leaf certificate's key"
        ) from None


def _integrity(data: bytes | Envelope) -> Envelope:
    try:
        envelope = data if isinstance(data, Envelope) else parse_envelope(data)
    except JWSFormatError as exc:
        raise IntegrityError(f"unable to parse the digital signature, error : {exc}") from None
    verify_jws_signature(envelope)
    try:
        check_notation_profile(envelope.certificate_chain, identity_dn=False)
    except ProfileError as exc:
        raise IntegrityError(f"certificate-chain is invalid, {exc}") from None
    try:
        leaf_alg = type(envelope.algorithm).for_public_key(envelope.leaf.public_key())
    except HoldCAError as exc:
        raise IntegrityError(str(exc)) from None
    if leaf_alg is not envelope.algorithm:
        raise IntegrityError(
            "mismatch between signature algorithm derived from signing certificate "
            f"({leaf_alg.value}) and signing algorithm specified ({envelope.algorithm.value})"
        )
    if envelope.content_type != PAYLOAD_CONTENT_TYPE:
        raise IntegrityError(f'payload content type "{envelope.content_type}" not supported')
    return envelope


# --- the other checks ----------------------------------------------------------------------


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _authenticity(
    envelope: Envelope, statement: TrustPolicyStatement, trust_store: TrustStoreReader
) -> NotationVerificationError | None:
    store_type = "ca" if envelope.scheme is SigningScheme.X509 else "signingAuthority"
    anchors: list[x509.Certificate] = []
    for name in statement.stores_of_type(store_type):
        try:
            anchors.extend(trust_store.certificates(store_type, name))
        except TrustStoreError as exc:
            return AuthenticityError(str(exc))
    if not anchors:
        return VerificationInconclusiveError(
            "no trusted certificates are found to verify authenticity"
        )
    trusted = {_der(c) for c in anchors}
    if not any(_der(c) in trusted for c in envelope.certificate_chain):
        return AuthenticityError(
            "the signature's certificate chain does not contain any trusted certificate"
        )
    return None


def _trusted_identity(envelope: Envelope, statement: TrustPolicyStatement) -> None:
    identities = statement.trusted_identities
    if WILDCARD in identities:
        return
    wanted: list[dict[str, str]] = []
    for identity in identities:
        prefix, sep, value = identity.partition(":")
        if not sep:
            raise TrustedIdentityError(
                f'trust policy statement "{statement.name}" has trusted identity "{identity}" '
                "missing separator"
            )
        if prefix == X509_SUBJECT:
            try:
                wanted.append(parse_distinguished_name(value))
            except TrustPolicyError as exc:
                raise TrustedIdentityError(str(exc)) from None
    if not wanted:
        raise TrustedIdentityError(
            f'no x509 trusted identities are configured in the trust policy "{statement.name}"'
        )
    try:
        leaf = parse_distinguished_name(go_name_string(envelope.leaf.subject))
    except TrustPolicyError as exc:
        raise TrustedIdentityError(
            "error while parsing the certificate subject from the digital signature. "
            f'error : "{exc}"'
        ) from None
    for dn in wanted:
        if all(leaf.get(k) == v for k, v in dn.items()):
            return
    raise TrustedIdentityError(
        "signing certificate from the digital signature does not match the X.509 trusted "
        f'identities {wanted} defined in the trust policy "{statement.name}"'
    )


def _rfc1123(when: datetime) -> str:
    return when.strftime("%a, %d %b %Y %H:%M:%S +0000")


def _expiry(envelope: Envelope, now: datetime) -> NotationVerificationError | None:
    if envelope.expiry is not None and not now < envelope.expiry:
        return ExpiredSignatureError(
            f'digital signature has expired on "{_rfc1123(envelope.expiry)}"'
        )
    return None


def _authentic_timestamp(
    envelope: Envelope, statement: TrustPolicyStatement, now: datetime
) -> NotationVerificationError | None:
    chain = envelope.certificate_chain
    if envelope.scheme is SigningScheme.SIGNING_AUTHORITY:
        when = envelope.signing_time
        for cert in chain:
            if when < cert.not_valid_before_utc or when > cert.not_valid_after_utc:
                return AuthenticTimestampError(
                    f'certificate "{go_name_string(cert.subject)}" was not valid when the '
                    f'digital signature was produced at "{_rfc1123(when)}"'
                )
        return None
    use_tsa = bool(statement.stores_of_type("tsa"))
    if use_tsa and statement.signature_verification.verify_timestamp == "afterCertExpiry":
        use_tsa = any(now > c.not_valid_after_utc for c in chain)
    if not use_tsa:
        for cert in chain:
            subject = go_name_string(cert.subject)
            if now < cert.not_valid_before_utc:
                return AuthenticTimestampError(
                    f'verification time is before certificate "{subject}" validity period, '
                    f'it will be valid from "{_rfc1123(cert.not_valid_before_utc)}"'
                )
            if now > cert.not_valid_after_utc:
                return AuthenticTimestampError(
                    f'verification time is after certificate "{subject}" validity period, '
                    f'it was expired at "{_rfc1123(cert.not_valid_after_utc)}"'
                )
        return None
    if envelope.timestamp_signature is None:
        return AuthenticTimestampError(
            "no timestamp countersignature was found in the signature envelope"
        )
    return AuthenticTimestampError(
        "RFC 3161 timestamp countersignatures are not verified by holdca's verifier; "
        "use notation for policies with a tsa trust store"
    )


def _has_revocation_urls(cert: x509.Certificate) -> bool:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        if any(d.access_method == AuthorityInformationAccessOID.OCSP for d in aia):
            return True
    except x509.ExtensionNotFound:
        pass
    try:
        cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    except x509.ExtensionNotFound:
        return False
    return True


def _revocation(
    envelope: Envelope, checker: RevocationChecker | None
) -> NotationVerificationError | None:
    chain = envelope.certificate_chain
    revoked: str | None = None
    unknown: str | None = None
    # notation checks every certificate but the root against the next one.
    for index in range(len(chain) - 1, -1, -1):
        cert = chain[index]
        if index == len(chain) - 1:
            continue
        if checker is None:
            status = (
                RevocationStatus.UNKNOWN
                if _has_revocation_urls(cert)
                else RevocationStatus.NON_REVOCABLE
            )
        else:
            status = checker(cert, chain[index + 1])
        if status is RevocationStatus.REVOKED:
            revoked = go_name_string(cert.subject)
        elif status is RevocationStatus.UNKNOWN and unknown is None:
            unknown = go_name_string(cert.subject)
    if revoked is not None:
        return RevokedError(f'signing certificate with subject "{revoked}" is revoked')
    if unknown is not None:
        return RevocationUnknownError(
            f'signing certificate with subject "{unknown}" revocation status is unknown'
        )
    return None


def revocation_from_crls(
    crls: Iterable[x509.CertificateRevocationList], *, now: datetime
) -> RevocationChecker:
    """A :data:`RevocationChecker` answering from CRLs the caller already fetched.

    A certificate without OCSP or CRL URLs is non-revocable (as in notation). Otherwise the
    CRL used is one whose issuer name is the issuer's subject, whose signature verifies
    with the issuer's key and whose nextUpdate is after ``now`` (notation rejects CRLs
    without nextUpdate); none => unknown. A listed serial is revoked unless its reason is
    removeFromCRL.
    """
    crl_list = list(crls)

    def check(cert: x509.Certificate, issuer: x509.Certificate) -> RevocationStatus:
        if not _has_revocation_urls(cert):
            return RevocationStatus.NON_REVOCABLE
        for crl in crl_list:
            next_update = crl.next_update_utc
            if crl.issuer != issuer.subject or next_update is None or next_update <= now:
                continue
            key = issuer.public_key()
            if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
                continue
            try:
                if not crl.is_signature_valid(key):
                    continue
            except (TypeError, ValueError):
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is None:
                return RevocationStatus.GOOD
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            except x509.ExtensionNotFound:
                reason = None
            if reason is x509.ReasonFlags.remove_from_crl:
                return RevocationStatus.GOOD
            return RevocationStatus.REVOKED
        return RevocationStatus.UNKNOWN

    return check


def verify_envelope(
    envelope: bytes | Envelope,
    *,
    statement: TrustPolicyStatement,
    trust_store: TrustStoreReader,
    now: datetime,
    descriptor: Descriptor | None = None,
    revocation: RevocationChecker | None = None,
    user_metadata: Mapping[str, str] | None = None,
) -> VerificationOutcome:
    """Verify one envelope against one trust policy statement, as notation v1.3.2 does.

    Args:
        envelope: envelope bytes (or an already parsed :class:`Envelope`).
        statement: the applicable statement (see :meth:`TrustPolicy.applicable`).
        trust_store: where the statement's named stores are looked up.
        now: timezone-aware verification time.
        descriptor: the artifact being verified; when given, it must equal the signed
            ``targetArtifact`` in mediaType, digest and size.
        revocation: optional ``(cert, issuer) -> RevocationStatus`` source.
        user_metadata: annotations that must be present in the signed descriptor.

    Returns:
        The outcome, with logged (non-enforced) failures.

    Raises:
        IntegrityError: unparsable envelope, bad signature, chain or profile, wrong cty.
        AuthenticityError: no trusted certificate in the chain (store missing, wrong
            store type for the scheme), or TrustedIdentityError for the identities.
        VerificationInconclusiveError: no anchors, or a verification plugin is required.
        ExpiredSignatureError, AuthenticTimestampError, RevokedError,
        RevocationUnknownError: the corresponding enforced check failed.
        ArtifactMismatchError: ``descriptor`` or ``user_metadata`` does not match.
        TrustPolicyError: the statement's level/overrides are invalid.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    actions = statement.signature_verification.enforcement(statement.name)
    level = statement.signature_verification.level
    if all(a is Action.SKIP for a in actions.values()):
        return VerificationOutcome(level=level, envelope=None, results=())

    results: list[CheckResult] = []

    def record(check: Check, error: NotationVerificationError | None) -> None:
        action = actions[check]
        results.append(CheckResult(check, action, error))
        if error is not None and action is Action.ENFORCE:
            raise error

    parsed = _integrity(envelope)
    results.append(CheckResult(Check.INTEGRITY, actions[Check.INTEGRITY]))

    if _PLUGIN_HEADER in parsed.extended_attributes:
        raise VerificationInconclusiveError(
            f"digital signature requires verification plugin "
            f'"{parsed.extended_attributes[_PLUGIN_HEADER]}", which holdca does not run'
        )

    auth_error = _authenticity(parsed, statement, trust_store)
    if auth_error is not None and actions[Check.AUTHENTICITY] is Action.ENFORCE:
        results.append(CheckResult(Check.AUTHENTICITY, Action.ENFORCE, auth_error))
        raise auth_error
    try:
        _trusted_identity(parsed, statement)
    except TrustedIdentityError as exc:
        auth_error = exc
    record(Check.AUTHENTICITY, auth_error)
    record(Check.EXPIRY, _expiry(parsed, now))
    record(Check.AUTHENTIC_TIMESTAMP, _authentic_timestamp(parsed, statement, now))
    if actions[Check.REVOCATION] is not Action.SKIP:
        record(Check.REVOCATION, _revocation(parsed, revocation))

    if descriptor is not None and not parsed.target_artifact.same_content(descriptor):
        raise ArtifactMismatchError("content descriptor mismatch")
    if user_metadata:
        signed: Mapping[str, Any] = parsed.target_artifact.annotations or {}
        for key, value in user_metadata.items():
            if signed.get(key) != value:
                raise ArtifactMismatchError(
                    f"unable to find specified metadata {key}={value} in the signature"
                )
    return VerificationOutcome(level=level, envelope=parsed, results=tuple(results))
