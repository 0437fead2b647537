"""LeafTemplate: the hand-written DER leaf equals what cryptography's builder makes.

The oracle is a ``CertificateBuilder`` chain written out in this file (not holdca code):
for the same DID, key, subject, window, serial and URLs, the template's TBSCertificate and
signatureAlgorithm must be byte-identical to the builder's. The leaves must also verify
under the issuer key, pass ``openssl verify`` and holdca's notation profile lint.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from holdca.errors import DIDSyntaxError, ProfileError, SignerError, UnsupportedAlgorithmError
from holdca.keys import MemorySigner, PublicKey, SignatureAlgorithm, Signer
from holdca.pki import LeafTemplate, SubjectInfo, check_notation_profile, issue_leaf, issue_root
from holdca.pki.issue import signing_params
from tests.pki.helpers import HOLD_DID, SUBJECT, USER_DID, epoch, openssl, pem, plc_dids, utcnow

# --- the issuers -------------------------------------------------------------------


@dataclass
class Issuer:
    """A CA for the template tests: signer, certificate and the private key for the oracle."""

    signer: MemorySigner
    cert: x509.Certificate

    @property
    def private_key(self) -> Any:
        """The CA's cryptography private key (the oracle signs with it directly)."""
        return self.signer.private_key


def _root(algorithm: SignatureAlgorithm, key: Any, start: datetime, days: int) -> Issuer:
    signer = MemorySigner(key, algorithm)
    cert = issue_root(
        signer,
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=start,
        validity=timedelta(days=days),
        backdate=timedelta(0),
        common_name=f"Template test CA {algorithm.value}",
    )
    return Issuer(signer, cert)


def _ca_without_ski(start: datetime) -> Issuer:
    """A P-384 CA made by the builder: no SKI (AKI falls back to the key) and a name with a
    PrintableString O and a multi-valued RDN (the issuer field must copy it unchanged)."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")]),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(
                        NameOID.ORGANIZATION_NAME, "Printable Org", _ASN1Type.PrintableString
                    ),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Unit"),
                ]
            ),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "No SKI")]),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA384())
    )
    return Issuer(MemorySigner(key), cert)


START = utcnow() - timedelta(days=1)
_RSA = rsa.generate_private_key(65537, 2048)
ISSUERS: dict[str, Issuer] = {
    # 40 years: leaves can end after 2050 (GeneralizedTime)
    "ES256": _root(SignatureAlgorithm.ES256, ec.generate_private_key(ec.SECP256R1()), START, 14600),
    # 2 days: leaves get clamped at both ends
    "ES384": _root(SignatureAlgorithm.ES384, ec.generate_private_key(ec.SECP384R1()), START, 2),
    "ES512": _root(SignatureAlgorithm.ES512, ec.generate_private_key(ec.SECP521R1()), START, 60),
    "PS256": _root(SignatureAlgorithm.PS256, _RSA, START, 14600),
    "PS384": _root(SignatureAlgorithm.PS384, _RSA, START, 30),
    "PS512": _root(SignatureAlgorithm.PS512, _RSA, START, 30),
    "no-ski": _ca_without_ski(START),
}

LEAF_KEYS: dict[str, PublicKey] = {
    "P-256": ec.generate_private_key(ec.SECP256R1()).public_key(),
    "P-384": ec.generate_private_key(ec.SECP384R1()).public_key(),
    "P-521": ec.generate_private_key(ec.SECP521R1()).public_key(),
    "RSA-2048": _RSA.public_key(),
    "RSA-3072": rsa.generate_private_key(65537, 3072).public_key(),
    "RSA-4096": rsa.generate_private_key(65537, 4096).public_key(),
}

CRL_URL = "http://hold.example.com/crl"
OCSP_URL = "http://hold.example.com/ocsp"


# --- the oracle: cryptography's builder, written out here ------------------------------


def builder_leaf(
    issuer: Issuer,
    *,
    did: str,
    public_key: PublicKey,
    subject: SubjectInfo,
    not_before: datetime,
    not_after: datetime,
    serial: int,
    crl_url: str | None,
    ocsp_url: str | None,
) -> x509.Certificate:
    """The leaf profile (docs: C/ST/(L)/O/CN=did, SAN URI, KU, EKU, SKI, AKI, CDP, AIA)."""
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, subject.country),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, subject.state),
    ]
    if subject.locality is not None:
        attrs.append(x509.NameAttribute(NameOID.LOCALITY_NAME, subject.locality))
    attrs += [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject.organization),
        x509.NameAttribute(NameOID.COMMON_NAME, did),
    ]
    try:
        issuer_ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.private_key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(issuer.cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(did)]), critical=False
        )
    )
    if crl_url is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if ocsp_url is not None:
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    algorithm = issuer.signer.algorithm
    digest = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[
        algorithm.value[2:]
    ]
    if algorithm.is_ecdsa:
        return builder.sign(issuer.private_key, digest)
    pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
    return builder.sign(issuer.private_key, digest, rsa_padding=pss)


def signature_algorithm_der(cert: x509.Certificate) -> bytes:
    """The outer signatureAlgorithm AlgorithmIdentifier, as encoded in ``cert``."""
    der = cert.public_bytes(Encoding.DER)
    tbs = cert.tbs_certificate_bytes
    at = der.index(tbs) + len(tbs)
    assert der[at] == 0x30
    assert der[at + 1] < 0x80  # AlgorithmIdentifiers here are short
    return der[at : at + 2 + der[at + 1]]


# --- strategies ----------------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True)
web_dids = st.builds(
    lambda labels, tld: "did:web:" + ".".join([*labels, tld]),
    st.lists(_label, min_size=1, max_size=3),
    st.sampled_from(["com", "org", "dev", "xyz"]),
).filter(lambda did: len(did) <= 64)
# did:web:<n a's>.com, 13 .. 64 characters: up to the common-name limit
long_web_dids = st.integers(1, 52).map(lambda n: f"did:web:{'a' * n}.com")
dids = st.one_of(plc_dids, web_dids, long_web_dids)

_text = r"[A-Za-z0-9äöüßéñ漢字Ω.,'-]"
_value = lambda most: st.from_regex(  # noqa: E731
    rf"{_text}([A-Za-z0-9äöüßéñ漢字Ω .,'-]{{0,{most - 2}}}{_text})?", fullmatch=True
)
subjects = st.builds(
    SubjectInfo,
    country=st.from_regex(r"[A-Z]{2}", fullmatch=True),
    state=_value(128),
    organization=_value(64),
    locality=st.none() | _value(128),
)
serials = st.one_of(
    st.just(1),
    st.just(127),
    st.just(128),  # high bit set: a 0x00 octet is prepended
    st.just(1 << 127),
    st.just((1 << 159) - 1),  # 20 octets
    st.integers(1, (1 << 159) - 1),
    st.none(),  # a random one
)
timezones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)
urls = st.none() | st.sampled_from(
    [
        "http://hold.example.com/crl",
        "http://hold.example.com:8080/" + "x" * 200,  # long: multi-octet lengths
    ]
)


Y2050 = datetime(2050, 1, 1, tzinfo=UTC)


def _window(
    issuer: Issuer, now: datetime, validity: timedelta, backdate: timedelta
) -> tuple[datetime, datetime]:
    """The documented window: [now - backdate, now + validity] clamped to the issuer's."""
    now = now.replace(microsecond=0)
    return (
        max(now - backdate, issuer.cert.not_valid_before_utc),
        min(now + validity, issuer.cert.not_valid_after_utc),
    )


# --- byte identity with the builder ----------------------------------------------------


@settings(max_examples=300)
@given(
    issuer_name=st.sampled_from(sorted(ISSUERS)),
    key_name=st.sampled_from(sorted(LEAF_KEYS)),
    did=dids,
    subject=subjects,
    offset=st.one_of(st.integers(0, 900), st.integers(0, 400 * 86400)),
    micro=st.integers(0, 999_999),
    tz=timezones,
    validity=st.one_of(
        st.integers(1, 3 * 86400).map(lambda s: timedelta(seconds=s)),
        st.integers(1, 40 * 365 * 86400).map(lambda s: timedelta(seconds=s)),
        st.integers(1, 10**12).map(lambda us: timedelta(microseconds=us)),
    ),
    # or: notAfter this many seconds from 2050-01-01 (the UTCTime / GeneralizedTime switch)
    around_2050=st.none() | st.integers(-2, 2) | st.integers(-400 * 86400, 400 * 86400),
    backdate=st.sampled_from([timedelta(0), timedelta(minutes=5), timedelta(hours=1)]),
    serial=serials,
    crl_url=urls,
    ocsp_url=urls,
)
def test_tbs_is_byte_identical_to_the_builder(
    issuer_name: str,
    key_name: str,
    did: str,
    subject: SubjectInfo,
    offset: int,
    micro: int,
    tz: timezone,
    validity: timedelta,
    around_2050: int | None,
    backdate: timedelta,
    serial: int | None,
    crl_url: str | None,
    ocsp_url: str | None,
) -> None:
    issuer = ISSUERS[issuer_name]
    public_key = LEAF_KEYS[key_name]
    span = issuer.cert.not_valid_after_utc - issuer.cert.not_valid_before_utc
    offset_td = min(timedelta(seconds=offset), span - timedelta(seconds=1))
    now = (issuer.cert.not_valid_before_utc + offset_td).replace(microsecond=micro).astimezone(tz)
    if around_2050 is not None:
        end = Y2050 + timedelta(seconds=around_2050)
        validity = max(end - now.replace(microsecond=0), timedelta(seconds=1))
    template = LeafTemplate(
        issuer.signer,
        issuer.cert,
        subject=subject,
        crl_url=crl_url,
        ocsp_url=ocsp_url,
        backdate=backdate,
    )
    der = template.issue_der(
        did=did, public_key=public_key, now=now, validity=validity, serial=serial
    )
    leaf = x509.load_der_x509_certificate(der)
    assert leaf.public_bytes(Encoding.DER) == der
    not_before, not_after = _window(issuer, now, validity, backdate)
    if serial is None:
        assert 64 <= leaf.serial_number.bit_length() <= 128
    expected = builder_leaf(
        issuer,
        did=did,
        public_key=public_key,
        subject=subject,
        not_before=not_before,
        not_after=not_after,
        serial=leaf.serial_number if serial is None else serial,
        crl_url=crl_url,
        ocsp_url=ocsp_url,
    )
    assert leaf.tbs_certificate_bytes == expected.tbs_certificate_bytes
    assert signature_algorithm_der(leaf) == signature_algorithm_der(expected)
    leaf.verify_directly_issued_by(issuer.cert)


@pytest.mark.parametrize("name", ["PS256", "PS384", "PS512"])
def test_pss_algorithm_identifier_matches_signing_params(name: str) -> None:
    """The RSA-PSS parameters equal the builder's with holdca's signing_params."""
    issuer = ISSUERS[name]
    leaf = LeafTemplate(issuer.signer, issuer.cert, subject=SUBJECT).issue(
        did=USER_DID, public_key=LEAF_KEYS["P-256"], now=utcnow()
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(leaf.subject)
        .issuer_name(leaf.issuer)
        .public_key(LEAF_KEYS["P-256"])
        .serial_number(1)
        .not_valid_before(leaf.not_valid_before_utc)
        .not_valid_after(leaf.not_valid_after_utc)
    )
    reference = builder.sign(issuer.private_key, **signing_params(issuer.signer))
    assert signature_algorithm_der(leaf) == signature_algorithm_der(reference)
    assert isinstance(leaf.signature_algorithm_parameters, padding.PSS)


@pytest.mark.parametrize(
    ("not_after", "encoded"),
    [
        # UTCTime (0x17, 13 octets) before 2050, GeneralizedTime (0x18, 15 octets) from 2050
        (datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), b"\x17\x0d491231235959Z"),
        (datetime(2050, 1, 1, tzinfo=UTC), b"\x18\x0f20500101000000Z"),
        (datetime(2051, 2, 3, 4, 5, 6, tzinfo=UTC), b"\x18\x0f20510203040506Z"),
    ],
)
def test_time_encoding_switches_at_2050(not_after: datetime, encoded: bytes) -> None:
    issuer = ISSUERS["ES256"]
    now = utcnow()
    der = LeafTemplate(issuer.signer, issuer.cert, subject=SUBJECT).issue_der(
        did=USER_DID, public_key=LEAF_KEYS["P-256"], now=now, validity=not_after - now
    )
    assert x509.load_der_x509_certificate(der).not_valid_after_utc == not_after
    assert encoded in der


def test_window_is_clamped_to_the_issuer() -> None:
    issuer = ISSUERS["ES384"]  # valid for two days from START
    nb, na = issuer.cert.not_valid_before_utc, issuer.cert.not_valid_after_utc
    template = LeafTemplate(issuer.signer, issuer.cert, subject=SUBJECT)
    leaf = template.issue(
        did=USER_DID, public_key=LEAF_KEYS["P-256"], now=nb + timedelta(seconds=10)
    )
    assert leaf.not_valid_before_utc == nb  # not nb - 5 min
    leaf = template.issue(
        did=USER_DID,
        public_key=LEAF_KEYS["P-256"],
        now=na - timedelta(hours=1),
        validity=timedelta(days=1),
    )
    assert leaf.not_valid_after_utc == na  # not now + 24 h


def test_issue_leaf_is_the_template() -> None:
    """issue_leaf and the template give the same TBS for the same inputs."""
    issuer = ISSUERS["ES256"]
    now = utcnow()
    kwargs: dict[str, Any] = {
        "did": USER_DID,
        "public_key": LEAF_KEYS["P-384"],
        "now": now,
        "serial": 4242,
    }
    via_function = issue_leaf(
        issuer.signer, issuer.cert, subject=SUBJECT, crl_url=CRL_URL, **kwargs
    )
    via_template = LeafTemplate(issuer.signer, issuer.cert, subject=SUBJECT, crl_url=CRL_URL)
    assert via_template.issue(**kwargs).tbs_certificate_bytes == via_function.tbs_certificate_bytes
    assert via_template.issuer_certificate is issuer.cert


# --- verifiers: openssl and the notation profile lint -----------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("name", ["ES256", "ES384", "ES512", "PS256", "PS384", "PS512"])
@pytest.mark.parametrize("key_name", ["P-256", "RSA-3072"])
def test_openssl_and_notation_lint_accept_the_leaf(
    tmp_path: Path, name: str, key_name: str
) -> None:
    issuer = ISSUERS[name]
    now = utcnow()
    template = LeafTemplate(
        issuer.signer,
        issuer.cert,
        subject=SubjectInfo(
            country="DE", state="Bayern", organization="Hold Ünïcode", locality="München"
        ),
        crl_url=CRL_URL,
        ocsp_url=OCSP_URL,
    )
    leaf = template.issue(
        did="did:web:" + "a" * 52 + ".com", public_key=LEAF_KEYS[key_name], now=now
    )
    leaf.verify_directly_issued_by(issuer.cert)
    check_notation_profile([leaf, issuer.cert], now=now)
    verify = openssl(
        "verify",
        "-x509_strict",
        "-attime",
        epoch(now),
        "-CAfile",
        pem(tmp_path / "root.pem", issuer.cert),
        pem(tmp_path / "leaf.pem", leaf),
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.interop
def test_openssl_accepts_a_leaf_under_a_ca_without_ski(tmp_path: Path) -> None:
    issuer = ISSUERS["no-ski"]
    now = utcnow()
    leaf = LeafTemplate(issuer.signer, issuer.cert, subject=SUBJECT).issue(
        did=USER_DID, public_key=LEAF_KEYS["P-256"], now=now
    )
    assert leaf.issuer.public_bytes() == issuer.cert.subject.public_bytes()
    verify = openssl(
        "verify",
        "-attime",
        epoch(now),
        "-CAfile",
        pem(tmp_path / "root.pem", issuer.cert),
        pem(tmp_path / "leaf.pem", leaf),
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.hsm
def test_softhsm_issuer(softhsm: Any, tmp_path: Path) -> None:
    signer = softhsm.keystore().generate(f"tpl-ca-{secrets.token_hex(4)}")
    now = utcnow()
    root = issue_root(signer, hold_did=HOLD_DID, subject=SUBJECT, now=now)
    template = LeafTemplate(signer, root, subject=SUBJECT, crl_url=CRL_URL, ocsp_url=OCSP_URL)
    leaf = template.issue(did=USER_DID, public_key=LEAF_KEYS["P-256"], now=now, serial=99)
    leaf.verify_directly_issued_by(root)
    check_notation_profile([leaf, root], now=now)
    verify = openssl(
        "verify",
        "-x509_strict",
        "-attime",
        epoch(now),
        "-CAfile",
        pem(tmp_path / "root.pem", root),
        pem(tmp_path / "leaf.pem", leaf),
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


# --- errors: the template raises what issue_leaf raises --------------------------------


def _issue_via(api: str, signer: Signer | None = None, **overrides: Any) -> x509.Certificate:
    issuer = ISSUERS["ES256"]
    args: dict[str, Any] = {
        "did": USER_DID,
        "public_key": LEAF_KEYS["P-256"],
        "now": utcnow(),
        **overrides,
    }
    signer = signer or issuer.signer
    if api == "issue_leaf":
        return issue_leaf(signer, issuer.cert, subject=SUBJECT, **args)
    return LeafTemplate(signer, issuer.cert, subject=SUBJECT).issue(**args)


APIS = pytest.mark.parametrize("api", ["template", "issue_leaf"])


@APIS
@pytest.mark.parametrize(
    "did",
    ["did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", "did:plc:short", "", 42],
)
def test_bad_did(api: str, did: object) -> None:
    with pytest.raises(DIDSyntaxError):
        _issue_via(api, did=did)


@APIS
def test_did_over_64_characters(api: str) -> None:
    _issue_via(api, did="did:web:" + "a" * 52 + ".com")  # 64: fine
    with pytest.raises(ProfileError, match="subject-cn"):
        _issue_via(api, did="did:web:" + "a" * 53 + ".com")


@APIS
@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP256K1()).public_key(),
        rsa.generate_private_key(65537, 1024).public_key(),
        ed25519.Ed25519PrivateKey.generate().public_key(),
        b"not a key",
    ],
    ids=["K-256", "RSA-1024", "Ed25519", "bytes"],
)
def test_bad_leaf_key(api: str, key: object) -> None:
    with pytest.raises(ProfileError, match="leaf-key"):
        _issue_via(api, public_key=key)


@APIS
@pytest.mark.parametrize("serial", [0, -1, 1 << 159, True, "1", 1.0])
def test_bad_serial(api: str, serial: object) -> None:
    with pytest.raises(ProfileError, match="serial-number"):
        _issue_via(api, serial=serial)


@APIS
def test_issuer_not_valid_at_now(api: str) -> None:
    issuer = ISSUERS["ES256"]
    with pytest.raises(ProfileError, match="issuer-validity"):
        _issue_via(api, now=issuer.cert.not_valid_before_utc - timedelta(seconds=1))
    with pytest.raises(ProfileError, match="issuer-validity"):
        _issue_via(api, now=issuer.cert.not_valid_after_utc)


@APIS
@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"now": datetime(2030, 1, 1)}, ValueError),  # naive
        ({"now": "2030-01-01T00:00:00Z"}, TypeError),
        ({"validity": timedelta(0)}, ValueError),
        ({"validity": timedelta(seconds=-1)}, ValueError),
        ({"validity": 3600}, TypeError),
    ],
)
def test_bad_times(api: str, overrides: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        _issue_via(api, **overrides)


class _FakeSigner:
    """A Signer over a real key whose ``sign`` is replaced (and algorithm overridable)."""

    def __init__(self, inner: Signer, sign: Any, algorithm: SignatureAlgorithm | None = None):
        self._inner = inner
        self._sign = sign
        self._algorithm = algorithm or inner.algorithm

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return self._algorithm

    @property
    def public_key(self) -> PublicKey:
        return self._inner.public_key

    def sign(self, data: bytes) -> Any:
        return self._sign(data)


def _unplugged(data: bytes) -> bytes:
    raise SignerError("token unplugged")


@APIS
@pytest.mark.parametrize("sign", [_unplugged, lambda data: "not bytes"], ids=["raises", "str"])
def test_signer_failure_is_signer_error(api: str, sign: Any) -> None:
    signer = _FakeSigner(ISSUERS["ES256"].signer, sign)
    with pytest.raises(SignerError):
        _issue_via(api, signer=signer)


def test_construction_errors() -> None:
    es256, ps256 = ISSUERS["ES256"], ISSUERS["PS256"]
    with pytest.raises(ProfileError, match="crl-url"):
        LeafTemplate(es256.signer, es256.cert, subject=SUBJECT, crl_url="https://x.example/c")
    with pytest.raises(ProfileError, match="ocsp-url"):
        LeafTemplate(es256.signer, es256.cert, subject=SUBJECT, ocsp_url="ldap://x.example/o")
    with pytest.raises(ProfileError, match="issuer-key"):
        LeafTemplate(ps256.signer, es256.cert, subject=SUBJECT)
    leaf = _issue_via("template")
    leaf_signer = MemorySigner.generate()
    with pytest.raises(ProfileError, match="issuer-key"):  # the leaf's key is not the signer
        LeafTemplate(leaf_signer, leaf, subject=SUBJECT)
    with pytest.raises(TypeError):
        LeafTemplate(es256.signer, es256.cert.public_bytes(Encoding.DER), subject=SUBJECT)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        LeafTemplate(es256.signer, es256.cert, subject="C=US")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backdate"):
        LeafTemplate(es256.signer, es256.cert, subject=SUBJECT, backdate=timedelta(seconds=-1))
    with pytest.raises(UnsupportedAlgorithmError):
        LeafTemplate(
            _FakeSigner(es256.signer, _unplugged, SignatureAlgorithm.PS256),
            es256.cert,
            subject=SUBJECT,
        )


def test_leaf_under_a_leaf_is_refused() -> None:
    """A non-CA issuer certificate (CA=false) is refused at construction."""
    key = MemorySigner.generate()
    issuer = ISSUERS["ES256"]
    leaf = issue_leaf(
        issuer.signer,
        issuer.cert,
        did=USER_DID,
        public_key=key.public_key,
        subject=SUBJECT,
        now=utcnow(),
    )
    with pytest.raises(ProfileError, match="issuer-ca"):
        LeafTemplate(key, leaf, subject=SUBJECT)
