"""Certificate profiles and issuance: root, intermediate, user leaf, OCSP responder, cross-cert.

Pure functions: every input (signer, certificates, public keys, ``now``) is explicit and every
output is a :class:`cryptography.x509.Certificate`. A CA key on an HSM never leaves the token:
the root, intermediate, OCSP responder and cross-certificates are built with cryptography's
``CertificateBuilder`` and signed through :func:`holdca.keys.as_private_key`; the user leaf
(:func:`issue_leaf`) is written from a DER template, :class:`holdca.pki.template.LeafTemplate`,
and signed with :meth:`Signer.sign <holdca.keys.Signer.sign>` directly (the TBS is
byte-identical to the builder's, at about a third of the builder path's cost). Callers that
issue many leaves under one CA keep a ``LeafTemplate`` and skip the per-issuer checks
``issue_leaf`` runs on every call.

Profiles (chosen to pass notation-core-go ``x509/codesigning_cert_validations.go``):

* **root**: self-signed; basicConstraints critical CA=true, pathLen 1 (room for one
  intermediate or cross-certificate); keyUsage critical keyCertSign, cRLSign,
  digitalSignature (the CA signs OCSP responses itself); SKI; 127-bit random serial.
* **intermediate**: the same under the root, pathLen 0, AKI.
* **leaf**: ``C,ST,(L,)O,CN=<DID>``; SAN URI = the DID; keyUsage critical digitalSignature
  only; EKU codeSigning; basicConstraints critical CA=false; AKI and SKI; 128-bit serial;
  24 h; notBefore backdated 5 minutes; optional ``http://`` CRL and OCSP URLs.
* **OCSP responder**: EKU OCSPSigning, id-pkix-ocsp-nocheck, keyUsage digitalSignature.
* **cross-certificate**: another CA's subject, key, SKI and CA extensions, signed by the
  issuer (rotation: the new root cross-signed by the old one and vice versa).

Validity nesting: a certificate never outlives its issuer. When ``now + validity`` would pass
the issuer's notAfter, notAfter is *clamped* to the issuer's notAfter (and notBefore to the
issuer's notBefore); an issuer that is not valid at ``now`` raises :class:`ProfileError`.
notation itself only requires every chain certificate to be valid at signing (and, without a
timestamp, verification) time, so a leaf outliving its CA would simply become unverifiable
early: clamping makes the certificate say so honestly.

The rules this module and :mod:`holdca.pki.template` share (validity windows, issuer, key,
URL and serial checks, key usages, key identifiers, the revocation URL extensions, the
default lifetimes) live in :mod:`holdca.pki.rules`; the ``DEFAULT_*`` constants,
:func:`check_http_url`, :func:`check_issuer_key` and :func:`random_serial` are re-exported
here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import ExtendedKeyUsageOID

from holdca.atproto.did import validate_account_did
from holdca.errors import ProfileError
from holdca.keys import PublicKey, Signer, as_private_key
from holdca.pki.names import SubjectInfo, ca_name, responder_name
from holdca.pki.rules import (
    DEFAULT_BACKDATE,
    DEFAULT_CA_VALIDITY,
    DEFAULT_INTERMEDIATE_VALIDITY,
    DEFAULT_LEAF_VALIDITY,
    DEFAULT_RESPONDER_VALIDITY,
    authority_key_identifier,
    aware,
    ca_key_usage,
    certificate_builder,
    check_http_url,
    check_issuer,
    check_issuer_key,
    check_public_key,
    random_serial,
    signature_only_key_usage,
    subject_key_identifier,
    validity_window,
    with_revocation_urls,
)
from holdca.pki.template import LeafTemplate

__all__ = [
    "DEFAULT_BACKDATE",
    "DEFAULT_CA_VALIDITY",
    "DEFAULT_INTERMEDIATE_VALIDITY",
    "DEFAULT_LEAF_VALIDITY",
    "DEFAULT_RESPONDER_VALIDITY",
    "check_http_url",
    "check_issuer_key",
    "cross_sign",
    "issue_intermediate",
    "issue_leaf",
    "issue_ocsp_responder",
    "issue_root",
    "random_serial",
    "root_common_name",
    "sign_builder",
    "signing_params",
]


def signing_params(signer: Signer) -> dict[str, Any]:
    """Keyword arguments for a cryptography builder's ``sign``: the hash and, for RSA, PSS."""
    alg = signer.algorithm
    params: dict[str, Any] = {"algorithm": alg.hash}
    if not alg.is_ecdsa:
        params["rsa_padding"] = padding.PSS(
            mgf=padding.MGF1(alg.hash), salt_length=alg.hash.digest_size
        )
    return params


def sign_builder(builder: x509.CertificateBuilder, signer: Signer) -> x509.Certificate:
    """Sign a certificate builder with ``signer`` through :func:`holdca.keys.as_private_key`.

    The digest is the signer's (SHA-256 for P-256, SHA-384 for P-384, ...); RSA signers sign
    with PSS as notation expects.

    Raises:
        SignerError: the signer failed.
        UnsupportedAlgorithmError: the signer's key cannot sign certificates.
    """
    return builder.sign(as_private_key(signer), **signing_params(signer))


def _path_length(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"path_length must be None or a non-negative int, got {value!r}")
    return value


def root_common_name(hold_did: str) -> str:
    """The default root common name, ``ATCR Hold CA - <hold DID>``."""
    return f"ATCR Hold CA - {hold_did}"


def issue_root(
    signer: Signer,
    *,
    hold_did: str,
    subject: SubjectInfo,
    now: datetime,
    validity: timedelta = DEFAULT_CA_VALIDITY,
    path_length: int | None = 1,
    common_name: str | None = None,
    backdate: timedelta = DEFAULT_BACKDATE,
) -> x509.Certificate:
    """Issue the hold's self-signed root CA certificate.

    Args:
        signer: the CA key (any Signer: P-256 by default, P-384 fine, HSM keys fine).
        hold_did: the hold's DID, named in the common name.
        subject: the hold's C/ST/(L)/O.
        now: the issuance time (timezone-aware).
        validity: lifetime from ``now`` (default 10 years).
        path_length: pathLenConstraint (default 1: room for one intermediate or
            cross-certificate below the root); None leaves it unlimited.
        common_name: overrides ``ATCR Hold CA - <hold DID>``. Give a rotated root a
            distinct name (for example with a generation suffix) so that cross-certificates
            between old and new root never have issuer == subject.
        backdate: notBefore is ``now - backdate`` (clock skew).

    Raises:
        DIDSyntaxError: ``hold_did`` is not a valid did:plc / did:web.
        ProfileError: the common name would exceed 64 characters.
        SignerError: the signer failed.
    """
    validate_account_did(hold_did)
    name = ca_name(subject, common_name or root_common_name(hold_did))
    window = validity_window(None, now, validity, backdate)
    public_key = signer.public_key
    builder = (
        certificate_builder(name, name, public_key, random_serial(127), window)
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=_path_length(path_length)), critical=True
        )
        .add_extension(ca_key_usage(), critical=True)
        .add_extension(subject_key_identifier(public_key), critical=False)
    )
    return sign_builder(builder, signer)


def issue_intermediate(
    issuer: Signer,
    issuer_cert: x509.Certificate,
    public_key: PublicKey,
    *,
    hold_did: str,
    subject: SubjectInfo,
    now: datetime,
    validity: timedelta = DEFAULT_INTERMEDIATE_VALIDITY,
    path_length: int | None = 0,
    common_name: str | None = None,
    backdate: timedelta = DEFAULT_BACKDATE,
    crl_url: str | None = None,
    ocsp_url: str | None = None,
) -> x509.Certificate:
    """Issue an online issuing CA under the (offline) root.

    Same extensions as the root plus AKI; pathLen 0 by default. Validity is clamped to the
    issuer's (see the module docstring).

    Args:
        issuer: the root's signer.
        issuer_cert: the root certificate.
        public_key: the intermediate's public key.
        hold_did: the hold's DID; the default common name is ``ATCR Hold Issuing CA - <DID>``.
        subject: the hold's C/ST/(L)/O.
        now: issuance time.
        validity: lifetime from ``now`` (default 5 years).
        path_length: pathLenConstraint (default 0).
        common_name: overrides the default common name.
        backdate: notBefore is ``now - backdate``.
        crl_url: the CRL of the root (CDP, ``http://``), where relying parties learn
            whether this intermediate was revoked; or None.
        ocsp_url: an OCSP responder answering for the root's certificates (AIA); or None.

    Raises:
        DIDSyntaxError: invalid hold DID.
        ProfileError: the issuer is not a CA, does not match ``issuer``, is not valid at
            ``now``, the name is too long, or a URL is not ``http://``.
    """
    validate_account_did(hold_did)
    check_issuer(issuer, issuer_cert)
    public_key = check_public_key(public_key, "public-key")
    name = ca_name(subject, common_name or f"ATCR Hold Issuing CA - {hold_did}")
    window = validity_window(issuer_cert, now, validity, backdate)
    builder = (
        certificate_builder(name, issuer_cert.subject, public_key, random_serial(127), window)
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=_path_length(path_length)), critical=True
        )
        .add_extension(ca_key_usage(), critical=True)
        .add_extension(subject_key_identifier(public_key), critical=False)
        .add_extension(authority_key_identifier(issuer_cert), critical=False)
    )
    return sign_builder(with_revocation_urls(builder, crl_url, ocsp_url), issuer)


def issue_leaf(
    issuer: Signer,
    issuer_cert: x509.Certificate,
    *,
    did: str,
    public_key: PublicKey,
    subject: SubjectInfo,
    now: datetime,
    validity: timedelta = DEFAULT_LEAF_VALIDITY,
    backdate: timedelta = DEFAULT_BACKDATE,
    crl_url: str | None = None,
    ocsp_url: str | None = None,
    serial: int | None = None,
) -> x509.Certificate:
    """Issue a user's code-signing leaf certificate for ``did``.

    The DID is validated before anything else is built. Validity is
    ``[now - backdate, now + validity]`` clamped to the issuer's validity.

    The same as ``LeafTemplate(issuer, issuer_cert, subject=..., crl_url=..., ocsp_url=...,
    backdate=...).issue(...)`` (:class:`holdca.pki.template.LeafTemplate`), which runs the
    per-issuer checks on every call; keep a template to issue many leaves under one CA.

    Args:
        issuer: the CA signer (root or intermediate).
        issuer_cert: the CA certificate.
        did: the user's DID (did:plc or did:web): CN and SAN URI.
        public_key: the ephemeral key (P-256 normally; P-384/P-521, RSA 2048/3072/4096 allowed).
        subject: the hold's C/ST/(L)/O.
        now: issuance time.
        validity: lifetime (default 24 h).
        backdate: notBefore offset for clock skew (default 5 min).
        crl_url: optional CRL distribution point (``http://`` only).
        ocsp_url: optional AIA OCSP URL (``http://`` only).
        serial: the serial number; default a fresh 128-bit random one.

    Raises:
        DIDSyntaxError: ``did`` is not a valid did:plc / did:web.
        ProfileError: a URL is not ``http://``, the DID is longer than 64 characters, the key
            is not one notation accepts, the serial is out of range, the signer's key is not
            the issuer certificate's, or the issuer is not a valid CA at ``now``.
        UnsupportedAlgorithmError: the signer's algorithm does not fit its key.
        SignerError: the signer failed.
    """
    validate_account_did(did)  # before anything else, as documented
    template = LeafTemplate(
        issuer,
        issuer_cert,
        subject=subject,
        crl_url=crl_url,
        ocsp_url=ocsp_url,
        backdate=backdate,
    )
    return template.issue(did=did, public_key=public_key, now=now, validity=validity, serial=serial)


def issue_ocsp_responder(
    issuer: Signer,
    issuer_cert: x509.Certificate,
    public_key: PublicKey,
    *,
    subject: SubjectInfo,
    now: datetime,
    validity: timedelta = DEFAULT_RESPONDER_VALIDITY,
    common_name: str = "ATCR Hold OCSP Responder",
    backdate: timedelta = DEFAULT_BACKDATE,
) -> x509.Certificate:
    """Issue a delegated OCSP responder certificate (RFC 6960 section 4.2.2.2).

    EKU id-kp-OCSPSigning, id-pkix-ocsp-nocheck (relying parties need not check the
    responder's own revocation, hence the short default lifetime of 7 days), keyUsage
    critical digitalSignature, basicConstraints CA=false, AKI and SKI.

    Raises:
        ProfileError: the issuer is not a CA valid at ``now`` or does not match ``issuer``,
            or the key is not one notation accepts.
        SignerError: the signer failed.
    """
    check_issuer(issuer, issuer_cert)
    public_key = check_public_key(public_key, "public-key")
    name = responder_name(subject, common_name)
    window = validity_window(issuer_cert, now, validity, backdate)
    builder = (
        certificate_builder(name, issuer_cert.subject, public_key, random_serial(), window)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(signature_only_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(subject_key_identifier(public_key), critical=False)
        .add_extension(authority_key_identifier(issuer_cert), critical=False)
    )
    return sign_builder(builder, issuer)


def cross_sign(
    issuer: Signer,
    issuer_cert: x509.Certificate,
    subject_cert: x509.Certificate,
    *,
    now: datetime,
    validity: timedelta | None = None,
    backdate: timedelta = DEFAULT_BACKDATE,
    crl_url: str | None = None,
    ocsp_url: str | None = None,
) -> x509.Certificate:
    """Cross-certify another CA: ``subject_cert``'s subject, key and SKI under ``issuer``.

    The cross-certificate copies ``subject_cert``'s keyUsage and SKI, gets an AKI for
    ``issuer_cert``, and basicConstraints CA=true with pathLen = the smaller of the subject's
    pathLen and the issuer's pathLen minus one (so every chain through it satisfies the
    issuer's constraint: with default roots, pathLen 1 each, the cross-certificate gets
    pathLen 0 and leaves directly under the new root validate through it). For root rotation,
    the old root cross-signs the new one (chain ``leaf -> cross(new by old) -> old root``
    verifies for relying parties that only trust the old root) and vice versa.

    Args:
        issuer: the cross-signing CA's signer.
        issuer_cert: its certificate.
        subject_cert: the CA certificate to cross-certify (typically a self-signed root).
        now: issuance time.
        validity: lifetime from ``now``; default: until ``subject_cert``'s notAfter. Always
            clamped to the issuer's validity.
        backdate: notBefore is ``now - backdate``.
        crl_url: the issuer's CRL (CDP, ``http://``): notation checks the revocation of
            every certificate in a chain but the root, cross-certificates included; or None.
        ocsp_url: an OCSP responder answering for the issuer's certificates; or None.

    Raises:
        ProfileError: a URL is not ``http://``, ``subject_cert`` is not a CA, has the
            same subject as the issuer (the cross-certificate would look self-issued), the
            issuer's pathLen is 0, or the issuer is not a valid CA at ``now``.
        SignerError: the signer failed.
    """
    check_issuer(issuer, issuer_cert)
    if not isinstance(subject_cert, x509.Certificate):
        raise TypeError("subject_cert must be a Certificate")
    exts = subject_cert.extensions
    try:
        bc = exts.get_extension_for_class(x509.BasicConstraints)
        ku = exts.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound:
        raise ProfileError(
            "cross-subject: the certificate to cross-sign lacks basicConstraints or keyUsage"
        ) from None
    if not bc.value.ca:
        raise ProfileError("cross-subject: only CA certificates can be cross-signed")
    if subject_cert.subject == issuer_cert.subject:
        raise ProfileError(
            "cross-name: subject and issuer have the same name; give the new root a distinct "
            "common_name so the cross-certificate is not self-issued"
        )
    issuer_bc = issuer_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    path_length = bc.value.path_length
    if issuer_bc.path_length is not None:
        if issuer_bc.path_length < 1:
            raise ProfileError(
                "cross-path-length: the issuer's pathLen 0 leaves no room for a cross-certificate"
            )
        room = issuer_bc.path_length - 1
        path_length = room if path_length is None else min(path_length, room)
    public_key = check_public_key(subject_cert.public_key(), "public-key")
    if validity is None:
        validity = subject_cert.not_valid_after_utc - aware(now, "now")
        if validity <= timedelta(0):
            raise ProfileError("cross-validity: the certificate to cross-sign has expired")
    window = validity_window(issuer_cert, now, validity, backdate)
    try:
        ski = exts.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = subject_key_identifier(public_key)
    builder = (
        certificate_builder(
            subject_cert.subject,
            issuer_cert.subject,
            public_key,
            random_serial(127),
            window,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(ku.value, critical=True)
        .add_extension(ski, critical=False)
        .add_extension(authority_key_identifier(issuer_cert), critical=False)
    )
    return sign_builder(with_revocation_urls(builder, crl_url, ocsp_url), issuer)
