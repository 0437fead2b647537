"""Issuance profiles, checked against openssl's own parse and verify."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings

from holdca.errors import ConfigError, DIDSyntaxError, ProfileError
from holdca.keys import MemorySigner, PublicKey, SignatureAlgorithm
from holdca.pki import (
    SubjectInfo,
    check_notation_profile,
    issue_intermediate,
    issue_leaf,
    issue_ocsp_responder,
    issue_root,
    random_serial,
)
from tests.pki.helpers import (
    CA,
    HOLD_DID,
    SUBJECT,
    USER_DID,
    account_dids,
    epoch,
    make_leaf,
    make_root,
    openssl,
    pem,
    utcnow,
    validities,
)


def x509_text(tmp_path: Path, cert: x509.Certificate) -> str:
    """openssl's text dump of ``cert``."""
    out = openssl("x509", "-in", pem(tmp_path / "c.pem", cert), "-text", "-noout", check=True)
    return out.stdout


def extension_block(text: str, name: str) -> tuple[bool, str]:
    """(critical, value lines) of the extension ``name`` in an ``x509 -text`` dump."""
    match = re.search(
        rf"^\s+{re.escape(name)}:( critical)?\s*\n((?:\s{{16,}}.*\n)+)", text, re.MULTILINE
    )
    assert match, f"{name} not in openssl output"
    return bool(match.group(1)), " ".join(match.group(2).split())


def openssl_dates(tmp_path: Path, cert: x509.Certificate) -> tuple[datetime, datetime]:
    """notBefore and notAfter as openssl reads them."""
    out = openssl(
        "x509", "-in", pem(tmp_path / "d.pem", cert), "-noout", "-startdate", "-enddate", check=True
    ).stdout
    fmt = "%b %d %H:%M:%S %Y %Z"
    start = re.search(r"notBefore=(.*)", out)
    end = re.search(r"notAfter=(.*)", out)
    assert start
    assert end
    parse = lambda s: datetime.strptime(" ".join(s.split()), fmt).replace(tzinfo=SUBJECT_TZ)  # noqa: E731
    return parse(start.group(1)), parse(end.group(1))


SUBJECT_TZ = utcnow().tzinfo


def test_root_profile(tmp_path: Path, root: CA, now: datetime) -> None:
    text = x509_text(tmp_path, root.cert)
    assert "Subject: C = US, ST = CA, O = Example Hold, CN = ATCR Hold CA - " + HOLD_DID in text
    assert re.search(r"Issuer: C = US, ST = CA, O = Example Hold, CN = ATCR Hold CA", text)
    assert extension_block(text, "X509v3 Basic Constraints") == (True, "CA:TRUE, pathlen:1")
    critical, usages = extension_block(text, "X509v3 Key Usage")
    assert critical
    assert set(usages.split(", ")) == {"Digital Signature", "Certificate Sign", "CRL Sign"}
    assert extension_block(text, "X509v3 Subject Key Identifier")[1]
    assert "Signature Algorithm: ecdsa-with-SHA256" in text
    assert "NIST CURVE: P-256" in text
    serial = openssl("x509", "-in", tmp_path / "c.pem", "-noout", "-serial", check=True).stdout
    value = int(serial.strip().split("=")[1], 16)
    assert value.bit_length() >= 64
    nb, na = openssl_dates(tmp_path, root.cert)
    assert nb == now - timedelta(minutes=5)
    assert na == now + timedelta(days=3650)
    verify = openssl(
        "verify",
        "-x509_strict",
        "-attime",
        epoch(now),
        "-CAfile",
        tmp_path / "c.pem",
        tmp_path / "c.pem",
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_leaf_profile(tmp_path: Path, root: CA, now: datetime) -> None:
    leaf = make_leaf(
        root, now, crl_url="http://hold.example.com/crl", ocsp_url="http://hold.example.com/ocsp"
    )
    text = x509_text(tmp_path, leaf)
    assert f"Subject: C = US, ST = CA, O = Example Hold, CN = {USER_DID}\n" in text
    assert extension_block(text, "X509v3 Basic Constraints") == (True, "CA:FALSE")
    assert extension_block(text, "X509v3 Key Usage") == (True, "Digital Signature")
    assert extension_block(text, "X509v3 Extended Key Usage") == (False, "Code Signing")
    assert extension_block(text, "X509v3 Subject Alternative Name")[1] == f"URI:{USER_DID}"
    aki = extension_block(text, "X509v3 Authority Key Identifier")[1]
    root_text = x509_text(tmp_path, root.cert)
    assert (
        aki.removeprefix("keyid:") == extension_block(root_text, "X509v3 Subject Key Identifier")[1]
    )
    assert (
        "URI:http://hold.example.com/crl"
        in extension_block(text, "X509v3 CRL Distribution Points")[1]
    )
    assert extension_block(text, "Authority Information Access")[1] == (
        "OCSP - URI:http://hold.example.com/ocsp"
    )
    serial = openssl("x509", "-in", tmp_path / "c.pem", "-noout", "-serial", check=True).stdout
    assert 64 <= int(serial.strip().split("=")[1], 16).bit_length() <= 128
    nb, na = openssl_dates(tmp_path, leaf)
    assert nb == now - timedelta(minutes=5)
    assert na == now + timedelta(hours=24)
    verify = openssl(
        "verify",
        "-x509_strict",
        "-attime",
        epoch(now),
        "-CAfile",
        pem(tmp_path / "r.pem", root.cert),
        tmp_path / "c.pem",
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    check_notation_profile([leaf, root.cert], now=now)


def test_leaf_without_urls_has_no_revocation_pointers(
    tmp_path: Path, root: CA, now: datetime
) -> None:
    text = x509_text(tmp_path, make_leaf(root, now))
    assert "CRL Distribution Points" not in text
    assert "Authority Information Access" not in text


def test_intermediate_chain(tmp_path: Path, root: CA, now: datetime) -> None:
    inter_signer = MemorySigner.generate()
    inter = issue_intermediate(
        root.signer, root.cert, inter_signer.public_key, hold_did=HOLD_DID, subject=SUBJECT, now=now
    )
    text = x509_text(tmp_path, inter)
    assert extension_block(text, "X509v3 Basic Constraints") == (True, "CA:TRUE, pathlen:0")
    assert extension_block(text, "X509v3 Key Usage")[0]
    assert "CN = ATCR Hold Issuing CA - " + HOLD_DID in text
    leaf = make_leaf(CA(inter_signer, inter), now)
    verify = openssl(
        "verify",
        "-x509_strict",
        "-attime",
        epoch(now),
        "-CAfile",
        pem(tmp_path / "r.pem", root.cert),
        "-untrusted",
        pem(tmp_path / "i.pem", inter),
        pem(tmp_path / "l.pem", leaf),
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    check_notation_profile([leaf, inter, root.cert], now=now)


def test_p384_root_signs_with_sha384(tmp_path: Path, now: datetime) -> None:
    signer = MemorySigner.generate(SignatureAlgorithm.ES384)
    root = CA(signer, issue_root(signer, hold_did=HOLD_DID, subject=SUBJECT, now=now))
    leaf = make_leaf(root, now)
    assert "Signature Algorithm: ecdsa-with-SHA384" in x509_text(tmp_path, leaf)
    verify = openssl(
        "verify",
        "-attime",
        epoch(now),
        "-CAfile",
        pem(tmp_path / "r.pem", root.cert),
        pem(tmp_path / "l.pem", leaf),
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    check_notation_profile([leaf, root.cert], now=now)


def test_ocsp_responder_profile(tmp_path: Path, root: CA, now: datetime) -> None:
    cert = issue_ocsp_responder(
        root.signer, root.cert, MemorySigner.generate().public_key, subject=SUBJECT, now=now
    )
    text = x509_text(tmp_path, cert)
    assert extension_block(text, "X509v3 Extended Key Usage") == (False, "OCSP Signing")
    assert "OCSP No Check" in text
    assert extension_block(text, "X509v3 Key Usage") == (True, "Digital Signature")
    assert extension_block(text, "X509v3 Basic Constraints") == (True, "CA:FALSE")
    nb, na = openssl_dates(tmp_path, cert)
    assert na - nb == timedelta(days=7, minutes=5)
    verify = openssl(
        "verify",
        "-attime",
        epoch(now),
        "-purpose",
        "ocsphelper",
        "-CAfile",
        pem(tmp_path / "r.pem", root.cert),
        tmp_path / "c.pem",
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_leaf_validity_is_clamped_to_the_issuer(tmp_path: Path, now: datetime) -> None:
    root = make_root(now, validity=timedelta(hours=2))
    leaf = make_leaf(root, now + timedelta(hours=1))
    assert leaf.not_valid_after_utc == root.cert.not_valid_after_utc
    nb, na = openssl_dates(tmp_path, leaf)
    assert na == now + timedelta(hours=2)
    assert nb == now + timedelta(minutes=55)
    early = make_leaf(root, now, backdate=timedelta(hours=1))
    assert (
        early.not_valid_before_utc == root.cert.not_valid_before_utc == now - timedelta(minutes=5)
    )


def test_expired_or_future_issuer_is_refused(now: datetime) -> None:
    root = make_root(now, validity=timedelta(hours=1))
    with pytest.raises(ProfileError, match="issuer-validity"):
        make_leaf(root, now + timedelta(hours=2))
    with pytest.raises(ProfileError, match="issuer-validity"):
        make_leaf(root, now - timedelta(hours=1))


@pytest.mark.parametrize(
    "did",
    [
        "did:plc:UPPERCASE234567abcdefghi",
        "did:plc:short",
        "did:key:z6Mkabc",
        "did:web:localhost",
        "did:web:1.2.3.4",
        "did:web:example.com:path",
        "not a did",
        "",
        "did:web:host.example",
    ],
)
def test_invalid_did_never_reaches_a_certificate(root: CA, now: datetime, did: str) -> None:
    calls: list[bytes] = []

    class Counting:
        algorithm = root.signer.algorithm
        public_key = root.signer.public_key

        def sign(self, data: bytes) -> bytes:
            calls.append(data)
            return root.signer.sign(data)

    with pytest.raises(DIDSyntaxError):
        issue_leaf(
            Counting(),
            root.cert,
            did=did,
            public_key=MemorySigner.generate().public_key,
            subject=SUBJECT,
            now=now,
        )
    assert calls == []


def test_invalid_hold_did_is_refused(now: datetime) -> None:
    with pytest.raises(DIDSyntaxError):
        issue_root(MemorySigner.generate(), hold_did="did:plc:nope", subject=SUBJECT, now=now)


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("crl_url", "https://hold.example.com/crl"),
        ("ocsp_url", "https://hold.example.com/ocsp"),
        ("crl_url", "ldap://hold.example.com/crl"),
        ("ocsp_url", "http:///nohost"),
        ("crl_url", "http://hold.example.com/a b"),
        ("ocsp_url", "http://hóld.example.com/"),
    ],
)
def test_non_http_urls_are_refused(root: CA, now: datetime, kind: str, url: str) -> None:
    with pytest.raises(ProfileError, match=kind.replace("_", "-")):
        make_leaf(root, now, **{kind: url})


def test_did_too_long_for_a_common_name(root: CA, now: datetime) -> None:
    did = "did:web:" + "a" * 50 + ".example.com"
    with pytest.raises(ProfileError, match="subject-cn"):
        make_leaf(root, now, did=did)


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP256K1()).public_key(),
        ec.generate_private_key(ec.SECP224R1()).public_key(),
        rsa.generate_private_key(65537, 1024).public_key(),
    ],
    ids=["k256", "p224", "rsa1024"],
)
def test_leaf_keys_notation_rejects_are_refused(root: CA, now: datetime, key: PublicKey) -> None:
    with pytest.raises(ProfileError, match="leaf-key"):
        issue_leaf(root.signer, root.cert, did=USER_DID, public_key=key, subject=SUBJECT, now=now)


def test_rsa_leaf_key_is_accepted(root: CA, now: datetime) -> None:
    key = rsa.generate_private_key(65537, 2048).public_key()
    leaf = issue_leaf(
        root.signer, root.cert, did=USER_DID, public_key=key, subject=SUBJECT, now=now
    )
    check_notation_profile([leaf, root.cert], now=now)


def test_signer_must_match_issuer_and_be_a_ca(root: CA, now: datetime) -> None:
    other = MemorySigner.generate()
    with pytest.raises(ProfileError, match="issuer-key"):
        issue_leaf(
            other, root.cert, did=USER_DID, public_key=other.public_key, subject=SUBJECT, now=now
        )
    leaf_signer = MemorySigner.generate()
    leaf = issue_leaf(
        root.signer,
        root.cert,
        did=USER_DID,
        public_key=leaf_signer.public_key,
        subject=SUBJECT,
        now=now,
    )
    with pytest.raises(ProfileError, match="issuer-ca"):
        issue_leaf(
            leaf_signer, leaf, did=USER_DID, public_key=other.public_key, subject=SUBJECT, now=now
        )


@pytest.mark.parametrize("serial", [0, -1, 1 << 159, True])
def test_bad_explicit_serial(root: CA, now: datetime, serial: int) -> None:
    with pytest.raises(ProfileError, match="serial-number"):
        make_leaf(root, now, serial=serial)


def test_explicit_serial_is_used(root: CA, now: datetime) -> None:
    assert make_leaf(root, now, serial=(1 << 158) + 7).serial_number == (1 << 158) + 7


def test_naive_now_is_refused(root: CA) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_leaf(root, datetime(2026, 1, 1))


@pytest.mark.parametrize("bits", [63, 160])
def test_random_serial_bounds(bits: int) -> None:
    with pytest.raises(ValueError, match="serial bits"):
        random_serial(bits)


def test_random_serials_are_positive_and_short() -> None:
    serials = {random_serial() for _ in range(2000)}
    assert len(serials) == 2000
    assert all(0 < s < 1 << 128 and (s.bit_length() + 8) // 8 <= 17 for s in serials)
    assert max(s.bit_length() for s in serials) == 128  # the top bit is random too


@pytest.mark.parametrize(
    "kwargs",
    [
        {"country": "usa"},
        {"country": "us"},
        {"state": ""},
        {"organization": "x" * 65},
        {"organization": " Hold"},
        {"state": "a=#b"},
        {"locality": "line\nbreak"},
    ],
)
def test_subject_info_validation(kwargs: dict[str, str]) -> None:
    base = {"country": "US", "state": "CA", "organization": "Hold"}
    with pytest.raises(ConfigError):
        SubjectInfo(**{**base, **kwargs})


def test_locality_is_in_the_leaf_subject(tmp_path: Path, root: CA, now: datetime) -> None:
    info = SubjectInfo("DE", "Berlin", "Hold GmbH, Inc.", locality="Berlin")
    leaf = issue_leaf(
        root.signer,
        root.cert,
        did=USER_DID,
        public_key=MemorySigner.generate().public_key,
        subject=info,
        now=now,
    )
    text = x509_text(tmp_path, leaf)
    assert (
        f'Subject: C = DE, ST = Berlin, L = Berlin, O = "Hold GmbH, Inc.", CN = {USER_DID}' in text
    )
    check_notation_profile([leaf, root.cert], now=now)


@settings(max_examples=60)
@given(did=account_dids, validity=validities)
def test_any_valid_did_yields_a_lint_clean_leaf(
    root: CA, now: datetime, did: str, validity: timedelta
) -> None:
    if len(did) > 64:  # only a DID too long for a common name is refused
        with pytest.raises(ProfileError, match="subject-cn"):
            make_leaf(root, now, did=did, validity=validity)
        return
    leaf = make_leaf(root, now, did=did, validity=validity)
    check_notation_profile([leaf, root.cert], now=now)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [did]
    assert leaf.not_valid_after_utc - now == validity - timedelta(
        microseconds=validity.microseconds
    )


@settings(max_examples=5)
@given(did=account_dids, validity=validities)
def test_openssl_accepts_generated_leaves(
    tmp_path_factory: pytest.TempPathFactory, root: CA, now: datetime, did: str, validity: timedelta
) -> None:
    if len(did) > 64:
        return
    tmp = tmp_path_factory.mktemp("leaf")
    leaf = make_leaf(root, now, did=did, validity=validity)
    verify = openssl(
        "verify",
        "-x509_strict",
        "-attime",
        epoch(now),
        "-CAfile",
        pem(tmp / "r.pem", root.cert),
        pem(tmp / "l.pem", leaf),
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"URI:{did}" in x509_text(tmp, leaf)
