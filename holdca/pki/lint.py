"""Profile lint: reject every signing chain notation v1.3.2 would reject.

:func:`check_notation_profile` re-implements, from notation-core-go v1.3.0
``x509/codesigning_cert_validations.go`` (``ValidateCodeSigningCertChain``) and Go's
``crypto/x509``, the checks notation runs on an x5c chain ``[leaf, intermediates..., root]``
when signing and verifying.
Each failure raises :class:`~holdca.errors.ProfileError` whose message starts with the rule
id (``leaf-key-usage: ...``) and whose ``rule`` attribute is that id. The rules:

==========================  ===================================================================
rule                        what is checked
==========================  ===================================================================
``chain-empty``             the chain has at least one certificate
``chain-parse``             every certificate's extensions parse (no duplicates, valid DER)
``version``                 every certificate is X.509 v3
``serial-number``           serial positive and at most 20 DER octets (Go rejects negatives)
``signature-algorithm``     ECDSA or RSA (PKCS#1 v1.5 / PSS) with SHA-256/384/512; no SHA-1
``chain-self-signed-end``   the last certificate is self-signed: raw issuer == raw subject and
                            its signature verifies with its own key
``chain-self-signed-middle``no other certificate is self-signed
``chain-linkage``           cert[i]'s raw issuer is byte-equal to cert[i+1]'s raw subject
``chain-signature``         cert[i]'s signature verifies with cert[i+1]'s key
``validity``                (only with ``now``) notBefore <= now <= notAfter for every cert
``leaf-key``                leaf key is EC P-256/P-384/P-521 or RSA 2048/3072/4096
``leaf-key-usage``          keyUsage present, critical, digitalSignature, none of
                            keyEncipherment, dataEncipherment, keyAgreement, keyCertSign,
                            cRLSign, encipherOnly, decipherOnly
``leaf-basic-constraints``  if present, CA=false
``leaf-eku``                if present, none of serverAuth, clientAuth, emailProtection,
                            timeStamping, OCSPSigning, anyExtendedKeyUsage
``leaf-subject``            (``identity_dn=True``) C, ST and O present; no duplicate attribute
                            types, no multi-valued RDN, only types Go names (C, O, OU, CN,
                            SERIALNUMBER, L, ST, STREET, POSTALCODE), no ``=#``; notation
                            parses the leaf subject so whenever trustedIdentities is not "*"
``ca-basic-constraints``    every CA has basicConstraints with CA=true
``ca-path-length``          cert[i]'s pathLen, if present, is >= the number of CAs below it
``ca-key-usage``            keyUsage present, critical, keyCertSign set
==========================  ===================================================================

Not checked because notation does not check them: AKI/SKI, CDP/AIA, SAN, policies, name
constraints, CA key sizes. Validity nesting (a leaf outliving its CA) is not a notation rule;
holdca's issuance clamps it anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import pairwise

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from holdca.errors import ProfileError

__all__ = ["RULES", "ProfileRuleError", "check_notation_profile"]

RULES = (
    "chain-empty",
    "chain-parse",
    "version",
    "serial-number",
    "signature-algorithm",
    "chain-self-signed-end",
    "chain-self-signed-middle",
    "chain-linkage",
    "chain-signature",
    "validity",
    "leaf-key",
    "leaf-key-usage",
    "leaf-basic-constraints",
    "leaf-eku",
    "leaf-subject",
    "ca-basic-constraints",
    "ca-path-length",
    "ca-key-usage",
)
"""Every rule id :func:`check_notation_profile` can report."""


class ProfileRuleError(ProfileError):
    """A :class:`ProfileError` from the lint, naming the violated rule in :attr:`rule`."""

    def __init__(self, rule: str, index: int, detail: str) -> None:
        """Record ``rule`` and the chain ``index`` of the offending certificate."""
        super().__init__(f"{rule}: certificate {index}: {detail}")
        self.rule = rule
        self.index = index


_SIG_OIDS = frozenset(
    {
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        SignatureAlgorithmOID.ECDSA_WITH_SHA512,
        SignatureAlgorithmOID.RSA_WITH_SHA256,
        SignatureAlgorithmOID.RSA_WITH_SHA384,
        SignatureAlgorithmOID.RSA_WITH_SHA512,
    }
)
_PSS_HASHES = frozenset({"sha256", "sha384", "sha512"})
_LEAF_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_LEAF_RSA_BITS = frozenset({2048, 3072, 4096})
_FORBIDDEN_EKU = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}
_GO_NAMED = frozenset(
    {
        NameOID.COUNTRY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.COMMON_NAME,
        NameOID.SERIAL_NUMBER,
        NameOID.LOCALITY_NAME,
        NameOID.STATE_OR_PROVINCE_NAME,
        NameOID.STREET_ADDRESS,
        NameOID.POSTAL_CODE,
    }
)


class _Cert:
    """One chain element with the raw name bytes Go compares."""

    __slots__ = ("cert", "index", "public_key", "raw_issuer", "raw_subject")

    def __init__(self, cert: x509.Certificate, index: int) -> None:
        if not isinstance(cert, x509.Certificate):
            raise TypeError(f"chain[{index}] is a {type(cert).__name__}, not a Certificate")
        self.cert = cert
        self.index = index
        try:
            tbs = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))[
                "tbs_certificate"
            ]
            self.raw_subject = tbs["subject"].dump()
            self.raw_issuer = tbs["issuer"].dump()
        except (ValueError, TypeError) as exc:
            raise ProfileRuleError("chain-parse", index, "TBS does not parse") from exc
        # cryptography parses some fields lazily: touch them all now, so that a malformed
        # certificate is a chain-parse failure and never a raw exception later.
        try:
            cert.extensions  # noqa: B018 - duplicates, bad extension DER
            self.public_key = cert.public_key()
            cert.subject  # noqa: B018
            cert.issuer  # noqa: B018
            cert.signature_algorithm_oid  # noqa: B018
            cert.not_valid_before_utc  # noqa: B018
            cert.not_valid_after_utc  # noqa: B018
        except (ValueError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension) as exc:
            raise ProfileRuleError(
                "chain-parse", index, f"certificate does not parse ({exc})"
            ) from None

    def fail(self, rule: str, detail: str) -> ProfileRuleError:
        return ProfileRuleError(rule, self.index, detail)

    def extension(
        self, kind: type[x509.ExtensionType]
    ) -> x509.Extension[x509.ExtensionType] | None:
        try:
            return self.cert.extensions.get_extension_for_class(kind)
        except x509.ExtensionNotFound:
            return None

    def critical_key_usage(self, rule: str) -> x509.KeyUsage:
        """The keyUsage, which notation requires to be present and critical (``rule``)."""
        ku_ext = self.extension(x509.KeyUsage)
        if ku_ext is None:
            raise self.fail(rule, "keyUsage is missing")
        if not ku_ext.critical:
            raise self.fail(rule, "keyUsage is not critical")
        ku = ku_ext.value
        assert isinstance(ku, x509.KeyUsage)
        return ku

    def signed_by(self, issuer: _Cert) -> bool:
        try:
            self.cert.verify_directly_issued_by(issuer.cert)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            return False
        return True

    def self_signed(self) -> bool:
        return self.raw_issuer == self.raw_subject and self.signed_by(self)


def _check_basics(c: _Cert, now: datetime | None) -> None:
    cert = c.cert
    if cert.version is not x509.Version.v3:
        raise c.fail("version", f"version {cert.version.name}, not v3")
    serial = cert.serial_number
    if serial <= 0:
        raise c.fail("serial-number", "serial number is not positive")
    if (serial.bit_length() + 8) // 8 > 20:
        raise c.fail("serial-number", "serial number is longer than 20 octets")
    oid = cert.signature_algorithm_oid
    if oid == SignatureAlgorithmOID.RSASSA_PSS:
        try:
            hash_alg = cert.signature_hash_algorithm
        except UnsupportedAlgorithm:
            hash_alg = None
        if hash_alg is None or hash_alg.name not in _PSS_HASHES:
            raise c.fail("signature-algorithm", "RSA-PSS with a hash other than SHA-256/384/512")
    elif oid not in _SIG_OIDS:
        raise c.fail(
            "signature-algorithm",
            f"signature algorithm {oid.dotted_string} is not ECDSA/RSA with SHA-256/384/512",
        )
    if now is not None and not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise c.fail(
            "validity",
            f"valid {cert.not_valid_before_utc.isoformat()} .. "
            f"{cert.not_valid_after_utc.isoformat()}, not at {now.isoformat()}",
        )


def _check_leaf(c: _Cert, *, identity_dn: bool) -> None:
    key = c.public_key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _LEAF_CURVES:
            raise c.fail("leaf-key", f"curve {key.curve.name} is not P-256/P-384/P-521")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size not in _LEAF_RSA_BITS:
            raise c.fail("leaf-key", f"RSA-{key.key_size} is not RSA 2048/3072/4096")
    else:
        raise c.fail("leaf-key", f"key type {type(key).__name__} is not EC or RSA")

    ku = c.critical_key_usage("leaf-key-usage")
    if not ku.digital_signature:
        raise c.fail("leaf-key-usage", "digitalSignature is not set")
    forbidden = [
        name
        for name, on in (
            ("keyEncipherment", ku.key_encipherment),
            ("dataEncipherment", ku.data_encipherment),
            ("keyAgreement", ku.key_agreement),
            ("keyCertSign", ku.key_cert_sign),
            ("cRLSign", ku.crl_sign),
            ("encipherOnly", ku.key_agreement and ku.encipher_only),
            ("decipherOnly", ku.key_agreement and ku.decipher_only),
        )
        if on
    ]
    if forbidden:
        raise c.fail("leaf-key-usage", f"forbidden key usages {', '.join(forbidden)}")

    bc_ext = c.extension(x509.BasicConstraints)
    if bc_ext is not None:
        bc = bc_ext.value
        assert isinstance(bc, x509.BasicConstraints)
        if bc.ca:
            raise c.fail("leaf-basic-constraints", "a signing leaf must not be a CA")

    eku_ext = c.extension(x509.ExtendedKeyUsage)
    if eku_ext is not None:
        eku = eku_ext.value
        assert isinstance(eku, x509.ExtendedKeyUsage)
        bad = [_FORBIDDEN_EKU[oid] for oid in eku if oid in _FORBIDDEN_EKU]
        if bad:
            raise c.fail("leaf-eku", f"forbidden extended key usages {', '.join(bad)}")

    if identity_dn:
        _check_leaf_subject(c)


def _check_leaf_subject(c: _Cert) -> None:
    seen: set[x509.ObjectIdentifier] = set()
    for rdn in c.cert.subject.rdns:
        if len(rdn) != 1:
            raise c.fail("leaf-subject", "multi-valued RDN")
        (attr,) = tuple(rdn)
        if attr.oid not in _GO_NAMED:
            raise c.fail(
                "leaf-subject",
                f"attribute {attr.oid.dotted_string} renders as '=#...', which notation rejects",
            )
        if attr.oid in seen:
            raise c.fail("leaf-subject", f"duplicate attribute {attr.oid._name}")
        seen.add(attr.oid)
        value = attr.value if isinstance(attr.value, str) else ""
        if "=#" in value:
            raise c.fail("leaf-subject", "an attribute value contains '=#'")
    missing = [
        label
        for oid, label in (
            (NameOID.COUNTRY_NAME, "C"),
            (NameOID.STATE_OR_PROVINCE_NAME, "ST"),
            (NameOID.ORGANIZATION_NAME, "O"),
        )
        if oid not in seen
    ]
    if missing:
        raise c.fail(
            "leaf-subject", f"subject lacks {', '.join(missing)} (notation needs C, ST, O)"
        )


def _check_ca(c: _Cert, cas_below: int) -> None:
    bc_ext = c.extension(x509.BasicConstraints)
    if bc_ext is None:
        raise c.fail("ca-basic-constraints", "basicConstraints is missing")
    bc = bc_ext.value
    assert isinstance(bc, x509.BasicConstraints)
    if not bc.ca:
        raise c.fail("ca-basic-constraints", "basicConstraints CA is false")
    if bc.path_length is not None and bc.path_length < cas_below:
        raise c.fail(
            "ca-path-length", f"pathLen {bc.path_length} but {cas_below} CA certificate(s) below"
        )
    ku = c.critical_key_usage("ca-key-usage")
    if not ku.key_cert_sign:
        raise c.fail("ca-key-usage", "keyCertSign is not set")


def check_notation_profile(
    chain: Sequence[x509.Certificate], *, now: datetime | None = None, identity_dn: bool = True
) -> None:
    """Raise unless notation v1.3.2 would accept ``chain`` as a signing chain.

    Args:
        chain: ``[leaf, intermediates..., root]`` as in the JWS ``x5c`` header.
        now: when given (timezone-aware), every certificate must be valid at that moment, as
            notation requires at signing time.
        identity_dn: also apply the leaf subject rules notation applies when a trust policy
            lists ``x509.subject`` identities (default True; holdca leaves always pass).

    Raises:
        ProfileRuleError: (a :class:`ProfileError`) the first violated rule; see the table in
            the module docstring.
        ValueError: ``now`` is naive.
    """
    if now is not None and (now.tzinfo is None or now.utcoffset() is None):
        raise ValueError("now must be timezone-aware")
    certs = [_Cert(cert, i) for i, cert in enumerate(chain)]
    if not certs:
        raise ProfileRuleError("chain-empty", 0, "the chain is empty")
    for c in certs:
        _check_basics(c, now)
    last = certs[-1]
    if last.raw_issuer != last.raw_subject:
        raise last.fail("chain-self-signed-end", "the last certificate's issuer is not its subject")
    if not last.signed_by(last):
        raise last.fail("chain-self-signed-end", "the last certificate is not self-signed")
    for child, parent in pairwise(certs):
        if child.self_signed():
            raise child.fail(
                "chain-self-signed-middle", "only the last certificate may be self-signed"
            )
        if child.raw_issuer != parent.raw_subject:
            raise child.fail(
                "chain-linkage", f"issuer is not byte-equal to certificate {parent.index}'s subject"
            )
        if not child.signed_by(parent):
            raise child.fail(
                "chain-signature",
                f"signature does not verify with certificate {parent.index}'s key",
            )
    _check_leaf(certs[0], identity_dn=identity_dn)
    for c in certs[1:]:
        _check_ca(c, cas_below=c.index - 1)
