"""Certificates of the hold's built-in RFC 3161 time-stamping authority (TSA).

Pure functions, like :mod:`holdca.pki.issue`: explicit signers, public keys and ``now``;
signing goes through :func:`holdca.keys.as_private_key`, so HSM keys work.

The TSA has its own root and its own key, separate from the issuing CA, so that a verifier
can trust (or distrust) the hold's timestamps separately from its code-signing certificates
(a notation trust policy lists them in a ``tsa:`` store, the CA in ``ca:``).

Profiles (chosen to pass notation-core-go ``x509/timestamp_cert_validations.go``,
tspclient-go, ``openssl ts -verify`` and rfc3161-client):

* **TSA root**: self-signed; basicConstraints critical CA=true, pathLen 0; keyUsage critical
  keyCertSign and cRLSign; no EKU; SKI; 127-bit random serial; 10 years by default.
* **TSA leaf**: P-256 (or P-384/P-521) key; keyUsage critical digitalSignature only;
  extendedKeyUsage **critical, exactly {timeStamping}**; basicConstraints critical CA=false;
  SKI and AKI; **no AIA and no CRL distribution points** (notation checks the revocation of
  the TSA chain even when revocation checking is skipped, and an unreachable URL makes it
  "unknown"); 5 years by default, clamped to the root.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from holdca.atproto.did import validate_account_did
from holdca.errors import ProfileError
from holdca.keys import PublicKey, Signer
from holdca.pki.issue import sign_builder
from holdca.pki.names import SubjectInfo, ca_name
from holdca.pki.rules import (
    DEFAULT_BACKDATE,
    DEFAULT_CA_VALIDITY,
    authority_key_identifier,
    certificate_builder,
    check_issuer,
    check_public_key,
    key_usage,
    random_serial,
    signature_only_key_usage,
    subject_key_identifier,
    validity_window,
)

__all__ = [
    "DEFAULT_TSA_VALIDITY",
    "TSA_KEY_LABEL",
    "TSA_ROOT_KEY_LABEL",
    "check_tsa_certificate",
    "issue_tsa_certificate",
    "issue_tsa_root",
    "tsa_key_usage_root",
]

TSA_ROOT_KEY_LABEL = "hold-tsa-root"
"""KeyStore label of the TSA root key (never the issuing CA's key)."""

TSA_KEY_LABEL = "hold-tsa"
"""KeyStore label of the TSA signing key."""

DEFAULT_TSA_VALIDITY = timedelta(days=1825)
"""Default lifetime of the TSA leaf (tokens stay verifiable after it: chains are checked at
genTime)."""

_NOTATION_CURVES = ("secp256r1", "secp384r1", "secp521r1")


def tsa_key_usage_root() -> x509.KeyUsage:
    """The TSA root's keyUsage: keyCertSign and cRLSign only."""
    return key_usage(digital_signature=False, certificate_sign=True)


def issue_tsa_root(
    signer: Signer,
    *,
    hold_did: str,
    subject: SubjectInfo,
    now: datetime,
    validity: timedelta = DEFAULT_CA_VALIDITY,
    common_name: str = "ATCR Hold TSA Root",
    backdate: timedelta = DEFAULT_BACKDATE,
) -> x509.Certificate:
    """Issue the self-signed root of the hold's TSA.

    ``hold_did`` is not written into the certificate (a did:web can be longer than a common
    name may be); it is checked so that callers do not mix holds up.

    Raises:
        DIDSyntaxError: ``hold_did`` is not a valid did:plc / did:web.
        ProfileError: the common name is empty, over 64 characters or unsafe.
        ValueError: ``now`` is naive, ``validity`` not positive.
        SignerError: the signer failed.
    """
    validate_account_did(hold_did)
    name = ca_name(subject, common_name)
    window = validity_window(None, now, validity, backdate)
    public_key = check_public_key(signer.public_key, "TSA root key")
    builder = (
        certificate_builder(name, name, public_key, random_serial(127), window)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(tsa_key_usage_root(), critical=True)
        .add_extension(subject_key_identifier(public_key), critical=False)
    )
    return sign_builder(builder, signer)


def issue_tsa_certificate(
    issuer: Signer,
    issuer_cert: x509.Certificate,
    public_key: PublicKey,
    *,
    subject: SubjectInfo,
    now: datetime,
    validity: timedelta = DEFAULT_TSA_VALIDITY,
    common_name: str = "ATCR Hold TSA",
    backdate: timedelta = DEFAULT_BACKDATE,
) -> x509.Certificate:
    """Issue the TSA signing certificate under ``issuer_cert`` (the TSA root).

    Checked: ``issuer`` holds ``issuer_cert``'s key and ``issuer_cert`` is a CA valid at
    ``now``; ``public_key`` is an EC key on P-256/P-384/P-521. notAfter is clamped to the
    issuer's.

    Raises:
        ProfileError: the issuer is not a valid CA for ``now``, the key is not an EC key on a
            Notation curve, or the common name is invalid.
        ValueError: ``now`` is naive, ``validity`` not positive.
        SignerError: the signer failed.
    """
    check_issuer(issuer, issuer_cert)
    if (
        not isinstance(public_key, ec.EllipticCurvePublicKey)
        or public_key.curve.name not in _NOTATION_CURVES
    ):
        raise ProfileError("the TSA key must be an EC key on P-256, P-384 or P-521")
    name = ca_name(subject, common_name)
    window = validity_window(issuer_cert, now, validity, backdate)
    builder = (
        certificate_builder(name, issuer_cert.subject, public_key, random_serial(128), window)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(signature_only_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(subject_key_identifier(public_key), critical=False)
        .add_extension(authority_key_identifier(issuer_cert), critical=False)
    )
    return sign_builder(builder, issuer)


def check_tsa_certificate(cert: x509.Certificate) -> None:
    """Check ``cert`` against the TSA leaf profile notation enforces.

    Checked: extendedKeyUsage present, critical and exactly {timeStamping}; keyUsage present
    with digitalSignature and without keyCertSign/cRLSign/keyEncipherment/dataEncipherment/
    keyAgreement; basicConstraints absent or CA=false.

    Raises:
        ProfileError: naming the rule that fails.
    """
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise ProfileError("the TSA certificate has no extendedKeyUsage") from None
    except ValueError as exc:
        raise ProfileError(f"the TSA certificate's extensions do not parse: {exc}") from None
    if not eku.critical:
        raise ProfileError("the TSA certificate's extendedKeyUsage is not critical")
    if list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise ProfileError("the TSA certificate's extendedKeyUsage is not exactly timeStamping")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise ProfileError("the TSA certificate has no keyUsage") from None
    if not ku.digital_signature:
        raise ProfileError("the TSA certificate's keyUsage lacks digitalSignature")
    if ku.key_cert_sign or ku.crl_sign or ku.key_encipherment or ku.data_encipherment:
        raise ProfileError("the TSA certificate's keyUsage allows more than signing")
    if ku.key_agreement:
        raise ProfileError("the TSA certificate's keyUsage allows keyAgreement")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if bc.ca:
        raise ProfileError("the TSA certificate is a CA certificate")
