"""check_notation_profile: every rule fails on a certificate built to break it, and only it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from holdca.errors import ProfileError
from holdca.keys import MemorySigner
from holdca.pki import (
    ProfileRuleError,
    check_notation_profile,
    cross_sign,
    issue_intermediate,
    issue_ocsp_responder,
)
from holdca.pki.lint import RULES
from tests.pki.helpers import CA, HOLD_DID, SUBJECT, make_leaf, make_root

Key = ec.EllipticCurvePrivateKey
NOW = datetime(2026, 6, 1, 12, 0, 0).astimezone()


def name(cn: str, *, dn: bool = True) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if dn:
        attrs = [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hold"),
            *attrs,
        ]
    return x509.Name(attrs)


def ku(**on: bool) -> x509.KeyUsage:
    fields = dict.fromkeys(
        [
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ],
        False,
    )
    fields.update(on)
    return x509.KeyUsage(**fields)


CA_EXTS: list[tuple[x509.ExtensionType, bool]] = [
    (x509.BasicConstraints(ca=True, path_length=None), True),
    (ku(key_cert_sign=True, crl_sign=True, digital_signature=True), True),
]
LEAF_EXTS: list[tuple[x509.ExtensionType, bool]] = [
    (x509.BasicConstraints(ca=False, path_length=None), True),
    (ku(digital_signature=True), True),
    (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False),
]


def build(
    subject: x509.Name,
    key: Key,
    issuer: x509.Name,
    issuer_key: Key,
    exts: list[tuple[x509.ExtensionType, bool]],
    *,
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=1),
    serial: int = 12345,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for ext, critical in exts:
        builder = builder.add_extension(ext, critical)
    return builder.sign(issuer_key, hashes.SHA256())


def p256() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


ROOT_KEY = p256()
ROOT = build(name("Root"), ROOT_KEY, name("Root"), ROOT_KEY, CA_EXTS)
LEAF_DER = build(
    name("did:plc:ewvi7nxzyoun6zhxrhs64oiz"), p256(), ROOT.subject, ROOT_KEY, LEAF_EXTS
).public_bytes(Encoding.DER)


def leaf(exts: list[tuple[x509.ExtensionType, bool]] = LEAF_EXTS, **kw: object) -> x509.Certificate:
    subject = kw.pop("subject", name("did:plc:ewvi7nxzyoun6zhxrhs64oiz"))
    key = kw.pop("key", p256())
    return build(subject, key, ROOT.subject, ROOT_KEY, exts, **kw)  # type: ignore[arg-type]


SHA256 = hashes.SHA256()


def resign(
    cert: x509.Certificate,
    key: Key,
    mutate: Callable[[asn1_x509.TbsCertificate], None],
    *,
    algorithm: str = "sha256_ecdsa",
    digest: hashes.HashAlgorithm = SHA256,
) -> x509.Certificate:
    """Edit the TBS with asn1crypto (for what cryptography's builder refuses) and re-sign."""
    tbs = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))["tbs_certificate"]
    mutate(tbs)
    tbs["signature"] = {"algorithm": algorithm}
    tbs_der = tbs.dump(force=True)
    out = asn1_x509.Certificate(
        {
            "tbs_certificate": asn1_x509.TbsCertificate.load(tbs_der),
            "signature_algorithm": {"algorithm": algorithm},
            "signature_value": key.sign(tbs_der, ec.ECDSA(digest)),
        }
    )
    return x509.load_der_x509_certificate(out.dump())


def expect(rule: str, chain: list[x509.Certificate], **kw: object) -> None:
    with pytest.raises(ProfileRuleError, match=f"^{rule}:") as info:
        check_notation_profile(chain, **kw)  # type: ignore[arg-type]
    assert info.value.rule == rule


def test_well_formed_chains_pass() -> None:
    check_notation_profile([leaf(), ROOT], now=NOW)
    key = p256()
    self_signed = build(name("me"), key, name("me"), key, LEAF_EXTS)
    check_notation_profile([self_signed], now=NOW)  # notation allows a lone self-signed leaf


def test_holdca_profiles_pass() -> None:
    now = datetime.now().astimezone().replace(microsecond=0)
    root = make_root(now)
    inter_signer = MemorySigner.generate()
    inter = issue_intermediate(
        root.signer, root.cert, inter_signer.public_key, hold_did=HOLD_DID, subject=SUBJECT, now=now
    )
    check_notation_profile([make_leaf(root, now), root.cert], now=now)
    check_notation_profile([make_leaf(CA(inter_signer, inter), now), inter, root.cert], now=now)
    # The OCSP responder certificate is not a signing certificate: notation rejects it.
    responder = issue_ocsp_responder(
        root.signer, root.cert, inter_signer.public_key, subject=SUBJECT, now=now
    )
    expect("leaf-eku", [responder, root.cert])
    assert cross_sign  # cross-certificate chains: see test_cross.py


def test_chain_empty() -> None:
    expect("chain-empty", [])


def test_chain_parse() -> None:
    def dup(tbs: asn1_x509.TbsCertificate) -> None:
        exts = list(tbs["extensions"])
        tbs["extensions"] = [*exts, exts[0]]

    expect("chain-parse", [resign(leaf(), ROOT_KEY, dup), ROOT])


def test_version() -> None:
    def v1(tbs: asn1_x509.TbsCertificate) -> None:
        tbs["version"] = "v1"
        tbs["extensions"] = None

    expect("version", [resign(leaf(), ROOT_KEY, v1), ROOT])


def test_serial_number() -> None:
    def long_serial(tbs: asn1_x509.TbsCertificate) -> None:
        tbs["serial_number"] = 1 << 170

    expect("serial-number", [resign(leaf(), ROOT_KEY, long_serial), ROOT])


def test_signature_algorithm() -> None:
    cert = resign(leaf(), ROOT_KEY, lambda tbs: None, algorithm="sha1_ecdsa", digest=hashes.SHA1())
    expect("signature-algorithm", [cert, ROOT])


def test_chain_self_signed_end() -> None:
    expect("chain-self-signed-end", [leaf()])
    other_key = p256()
    same_name_other_key = build(name("Root"), other_key, name("Root"), ROOT_KEY, CA_EXTS)
    expect("chain-self-signed-end", [leaf(), same_name_other_key])


def test_chain_self_signed_middle() -> None:
    expect("chain-self-signed-middle", [leaf(), ROOT, ROOT])


def test_chain_linkage() -> None:
    key = p256()
    other_root = build(name("Other"), key, name("Other"), key, CA_EXTS)
    expect("chain-linkage", [leaf(), other_root])


def test_chain_linkage_is_byte_exact() -> None:
    # Same DN text, PrintableString instead of UTF8String: Go compares raw bytes.
    printable = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(
                NameOID.STATE_OR_PROVINCE_NAME, "CA", x509.name._ASN1Type.PrintableString
            ),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hold"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Root"),
        ]
    )
    cert = build(name("did:plc:ewvi7nxzyoun6zhxrhs64oiz"), p256(), printable, ROOT_KEY, LEAF_EXTS)
    expect("chain-linkage", [cert, ROOT])


def test_chain_signature() -> None:
    key = p256()
    impostor = build(name("Root"), key, name("Root"), key, CA_EXTS)  # same name, other key
    expect("chain-signature", [leaf(), impostor])


def test_validity() -> None:
    chain = [leaf(), ROOT]
    check_notation_profile(chain, now=NOW)
    expect("validity", chain, now=NOW + timedelta(days=2))
    expect("validity", chain, now=NOW - timedelta(days=2))


@pytest.mark.parametrize("curve", [ec.SECP256K1(), ec.SECP224R1()], ids=["k256", "p224"])
def test_leaf_key(curve: ec.EllipticCurve) -> None:
    expect("leaf-key", [leaf(key=ec.generate_private_key(curve)), ROOT])


@pytest.mark.parametrize(
    "usage",
    [
        None,
        (ku(digital_signature=True), False),
        (ku(content_commitment=True), True),
        (ku(digital_signature=True, key_cert_sign=True), True),
        (ku(digital_signature=True, key_encipherment=True), True),
        (ku(digital_signature=True, key_agreement=True), True),
        (ku(digital_signature=True, crl_sign=True), True),
    ],
    ids=[
        "missing",
        "not-critical",
        "no-digitalSignature",
        "keyCertSign",
        "keyEncipherment",
        "keyAgreement",
        "cRLSign",
    ],
)
def test_leaf_key_usage(usage: tuple[x509.KeyUsage, bool] | None) -> None:
    exts = [LEAF_EXTS[0], LEAF_EXTS[2]] + ([usage] if usage else [])
    expect("leaf-key-usage", [leaf(exts), ROOT])


def test_leaf_content_commitment_is_allowed() -> None:
    exts = [LEAF_EXTS[0], (ku(digital_signature=True, content_commitment=True), True)]
    check_notation_profile([leaf(exts), ROOT])


def test_leaf_basic_constraints() -> None:
    exts = [(x509.BasicConstraints(ca=True, path_length=None), True), *LEAF_EXTS[1:]]
    expect("leaf-basic-constraints", [leaf(exts), ROOT])
    check_notation_profile([leaf(LEAF_EXTS[1:]), ROOT])  # absent is fine


@pytest.mark.parametrize(
    "oid",
    [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
        ExtendedKeyUsageOID.TIME_STAMPING,
        ExtendedKeyUsageOID.OCSP_SIGNING,
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    ],
)
def test_leaf_eku(oid: x509.ObjectIdentifier) -> None:
    exts = [*LEAF_EXTS[:2], (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING, oid]), False)]
    expect("leaf-eku", [leaf(exts), ROOT])


@pytest.mark.parametrize(
    "subject",
    [
        name("did:plc:x", dn=False),
        x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hold"),
            ]
        ),
        x509.Name(
            [
                *name("x").rdns,
                x509.RelativeDistinguishedName(
                    [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "a")]
                ),
                x509.RelativeDistinguishedName(
                    [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "b")]
                ),
            ]
        ),
        x509.Name(
            [
                *name("x").rdns,
                x509.RelativeDistinguishedName(
                    [x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.example")]
                ),
            ]
        ),
        x509.Name(
            [
                x509.RelativeDistinguishedName(
                    [
                        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
                    ]
                ),
                x509.RelativeDistinguishedName(
                    [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "O")]
                ),
            ]
        ),
        x509.Name(
            [
                *name("x").rdns[:3],
                x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "a=#b")]),
            ]
        ),
    ],
    ids=["no-C-ST-O", "no-ST", "duplicate-OU", "emailAddress", "multi-valued-RDN", "=#"],
)
def test_leaf_subject(subject: x509.Name) -> None:
    cert = leaf(subject=subject)
    expect("leaf-subject", [cert, ROOT])
    check_notation_profile([cert, ROOT], identity_dn=False)


def test_ca_basic_constraints() -> None:
    key = p256()
    no_bc = build(name("Root"), key, name("Root"), key, CA_EXTS[1:])
    chain = [build(name("did:plc:x"), p256(), no_bc.subject, key, LEAF_EXTS), no_bc]
    expect("ca-basic-constraints", chain)
    not_ca = build(
        name("Root"),
        key,
        name("Root"),
        key,
        [(x509.BasicConstraints(ca=False, path_length=None), True), CA_EXTS[1]],
    )
    expect(
        "ca-basic-constraints", [build(name("x"), p256(), not_ca.subject, key, LEAF_EXTS), not_ca]
    )


def test_ca_path_length() -> None:
    key = p256()
    root0 = build(
        name("Root0"),
        key,
        name("Root0"),
        key,
        [(x509.BasicConstraints(ca=True, path_length=0), True), CA_EXTS[1]],
    )
    inter_key = p256()
    inter = build(name("Inter"), inter_key, root0.subject, key, CA_EXTS)
    chain = [build(name("x"), p256(), inter.subject, inter_key, LEAF_EXTS), inter, root0]
    expect("ca-path-length", chain)
    check_notation_profile([build(name("x"), p256(), root0.subject, key, LEAF_EXTS), root0])


@pytest.mark.parametrize(
    "usage",
    [None, (ku(key_cert_sign=True, crl_sign=True), False), (ku(crl_sign=True), True)],
    ids=["missing", "not-critical", "no-keyCertSign"],
)
def test_ca_key_usage(usage: tuple[x509.KeyUsage, bool] | None) -> None:
    key = p256()
    exts = [CA_EXTS[0]] + ([usage] if usage else [])
    root = build(name("R"), key, name("R"), key, exts)
    expect("ca-key-usage", [build(name("x"), p256(), root.subject, key, LEAF_EXTS), root])


def test_every_rule_has_a_test() -> None:
    tested = {n.removeprefix("test_").replace("_", "-") for n in globals() if n.startswith("test_")}
    assert set(RULES) <= tested


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check_notation_profile([leaf(), ROOT], now=datetime(2026, 1, 1))


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")  # cryptography on out-of-range name lengths
@settings(max_examples=300)
@given(data=st.data())
def test_mutated_certificates_only_raise_profile_errors(data: st.DataObject) -> None:
    der = bytearray(LEAF_DER)
    for _ in range(data.draw(st.integers(1, 3))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    try:
        cert = x509.load_der_x509_certificate(bytes(der))
    except (ValueError, x509.InvalidVersion):
        return  # cryptography refuses it outright: nothing reaches the lint
    with contextlib.suppress(ProfileError):
        check_notation_profile([cert, ROOT])


def test_malformed_public_key_is_a_parse_failure() -> None:
    # Corrupt the EC point of the leaf: the certificate loads, the key does not.
    cert = leaf()
    der = bytearray(cert.public_bytes(Encoding.DER))
    point = cert.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    at = der.find(point)
    der[at + 1 : at + 33] = b"\xff" * 32
    broken = x509.load_der_x509_certificate(bytes(der))
    expect("chain-parse", [broken, ROOT])
