"""Trust policy generation, DN parsing and matching, trust store files."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from holdca.errors import TrustPolicyError, TrustStoreError
from holdca.notation import (
    Action,
    Check,
    RevocationStatus,
    SignatureVerification,
    SigningScheme,
    hold_trust_policy,
    parse_distinguished_name,
    revocation_from_crls,
    validate_trust_policy,
    write_trust_policy,
    write_trust_store,
    x509_subject_identity,
)
from holdca.notation._codec import go_name_string
from holdca.notation.truststore import DirectoryTrustStore, trust_store_dir
from holdca.pki import RevokedEntry, build_crl
from tests.notation.helpers import CA, DID_A, DID_B


def test_hold_policy_shape_is_what_notation_reads() -> None:
    identity = x509_subject_identity(DID_A, country="US", state="CA", organization="Test Hold")
    assert identity == f"x509.subject: C=US, ST=CA, O=Test Hold, CN={DID_A}"
    policy = hold_trust_policy(
        store="hold",
        identities=[identity],
        registry_scopes=["registry.example.com/alice/app"],
        revocation="log",
    )
    doc = json.loads(policy.to_json())
    assert doc == {
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "holdca",
                "registryScopes": ["registry.example.com/alice/app"],
                "signatureVerification": {"level": "strict", "override": {"revocation": "log"}},
                "trustStores": ["ca:hold"],
                "trustedIdentities": [identity],
            }
        ],
    }
    assert "verificationLevel" not in policy.to_json().decode()
    sa = hold_trust_policy(store="hold", scheme=SigningScheme.SIGNING_AUTHORITY)
    assert sa.statements[0].trust_stores == ("signingAuthority:hold",)
    assert sa.statements[0].trusted_identities == ("*",)


def test_hold_policy_refuses_what_notation_refuses() -> None:
    with pytest.raises(TrustPolicyError, match='has no mandatory RDN attribute for "C"'):
        hold_trust_policy(store="hold", identities=["x509.subject: CN=did:plc:*"])
    with pytest.raises(TrustPolicyError, match="overlapping"):
        hold_trust_policy(
            store="hold",
            identities=[
                x509_subject_identity(None, country="US", state="CA", organization="H"),
                x509_subject_identity(DID_A, country="US", state="CA", organization="H"),
            ],
        )
    with pytest.raises(TrustPolicyError, match="not valid"):
        hold_trust_policy(store="hold", registry_scopes=["did:plc:abc/app"])
    with pytest.raises(TrustPolicyError, match="unsupported trust store name"):
        hold_trust_policy(store="bad name")
    with pytest.raises(TrustPolicyError, match="can not be skipped"):
        SignatureVerification("strict", {"expiry": "skip"}).enforcement("x")


def test_verification_level_tables() -> None:
    assert SignatureVerification("strict").enforcement() == dict.fromkeys(Check, Action.ENFORCE)
    audit = SignatureVerification("audit", {"revocation": "skip"}).enforcement()
    assert audit[Check.INTEGRITY] is Action.ENFORCE
    assert audit[Check.AUTHENTICITY] is Action.LOG
    assert audit[Check.REVOCATION] is Action.SKIP
    with pytest.raises(TrustPolicyError, match="empty or missing"):
        SignatureVerification("").enforcement()
    with pytest.raises(TrustPolicyError, match="can't be used to customize"):
        SignatureVerification("skip", {"revocation": "log"}).enforcement()
    with pytest.raises(TrustPolicyError, match="not supported"):
        SignatureVerification("strict", {"integrity2": "log"}).enforcement()


def test_verification_level_key_typo_is_reported_as_missing_level() -> None:
    doc = {
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "p",
                "registryScopes": ["*"],
                "signatureVerification": {"verificationLevel": "strict"},
                "trustStores": ["ca:x"],
                "trustedIdentities": ["*"],
            }
        ],
    }
    with pytest.raises(TrustPolicyError, match="level is empty or missing"):
        validate_trust_policy(doc)


@pytest.mark.parametrize(
    ("dn", "expected"),
    [
        ("C=US, ST=WA, O=Notary, CN=e2e", {"C": "US", "ST": "WA", "O": "Notary", "CN": "e2e"}),
        ("C=US;S=WA;O=N", {"C": "US", "ST": "WA", "O": "N"}),
        (r"C=US,ST=WA,O=A\, B\2C", {"C": "US", "ST": "WA", "O": "A, B,"}),
        ("C=US,ST=WA,O=N,CN=did:plc:abc", {"C": "US", "ST": "WA", "O": "N", "CN": "did:plc:abc"}),
        ("  C = US , ST=WA,O= N  ", {"C": "US", "ST": "WA", "O": "N"}),
    ],
)
def test_parse_distinguished_name(dn: str, expected: dict[str, str]) -> None:
    assert parse_distinguished_name(dn) == expected


@pytest.mark.parametrize(
    ("dn", "message"),
    [
        ("C=US,ST=WA,O=N,CN=#04", "=#"),
        ("C=US+ST=WA,O=N", "multi-valued"),
        ("C=US,ST=WA,O=N,O=M", "duplicate"),
        ("C=US,ST=WA", 'mandatory RDN attribute for "O"'),
        ("c=US,ST=WA,O=N", 'mandatory RDN attribute for "C"'),
        ("C=US,ST=WA,O", "failed"),
        ("C=US,ST=WA,O=N,", "failed"),
        ("", "mandatory"),
    ],
)
def test_parse_distinguished_name_rejects(dn: str, message: str) -> None:
    with pytest.raises(TrustPolicyError, match=message):
        parse_distinguished_name(dn)


@settings(max_examples=100)
@given(st.text(max_size=60))
def test_parse_distinguished_name_only_raises_trust_policy_error(text: str) -> None:
    with contextlib.suppress(TrustPolicyError):
        parse_distinguished_name(text)


@settings(max_examples=100)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20))
def test_identity_round_trips_any_value(value: str) -> None:
    """x509_subject_identity escapes values so notation's parser reads them back exactly."""
    value = value.strip()
    if not value or "=#" in value:
        return
    identity = x509_subject_identity(value, country="US", state="CA", organization="O")
    assert parse_distinguished_name(identity.split(":", 1)[1])["CN"] == value


def _name(*attrs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, v) for oid, v in attrs])


def test_go_name_string_matches_rfc4514_for_simple_names() -> None:
    name = _name(
        (NameOID.COUNTRY_NAME, "US"),
        (NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        (NameOID.ORGANIZATION_NAME, "Test, Hold"),
        (NameOID.COMMON_NAME, DID_A),
    )
    assert go_name_string(name) == name.rfc4514_string()


def test_go_name_string_follows_go_quirks() -> None:
    # Go re-orders into its fixed field order and folds duplicates into one RDN.
    name = _name(
        (NameOID.COMMON_NAME, "x"),
        (NameOID.ORGANIZATION_NAME, "O"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "a"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "b"),
        (NameOID.COUNTRY_NAME, "US"),
        (NameOID.EMAIL_ADDRESS, "a@b"),
    )
    assert go_name_string(name) == "1.2.840.113549.1.9.1=#1603614062,CN=x,OU=a+OU=b,O=O,C=US"


def test_write_trust_store_layout_and_idempotence(tmp_path: Path) -> None:
    ca = CA.create()
    paths = write_trust_store(tmp_path, "hold", [ca.cert])
    assert paths[0].parent == tmp_path / "truststore/x509/ca/hold"
    assert paths[0].suffix == ".crt"
    assert write_trust_store(tmp_path, "hold", [ca.cert]) == paths
    second = CA.create(now=datetime.now(UTC))
    write_trust_store(tmp_path, "hold", [second.cert])
    assert len(DirectoryTrustStore(tmp_path).certificates("ca", "hold")) == 2
    assert sorted(p.name for p in trust_store_dir(tmp_path, "ca", "hold").iterdir()) == sorted(
        p.name for p in [*paths, *write_trust_store(tmp_path, "hold", [second.cert])]
    )
    _key, chain = ca.leaf(DID_B)
    with pytest.raises(TrustStoreError, match="not a CA certificate or self-signed"):
        write_trust_store(tmp_path, "leaf", [chain[0]])
    with pytest.raises(ValueError, match="type"):
        write_trust_store(tmp_path, "hold", [ca.cert], type="root")
    policy_path = write_trust_policy(tmp_path, hold_trust_policy(store="hold"))
    assert policy_path.is_file()
    assert not policy_path.is_symlink()
    assert validate_trust_policy(policy_path.read_bytes()).statements[0].name == "holdca"


def test_revocation_from_crls_rules() -> None:
    now = datetime.now(UTC)
    ca, other = CA.create(), CA.create(hold_did="did:web:other.example.com")
    _, plain = ca.leaf(DID_A)
    _, with_cdp = ca.leaf(DID_A, crl_url="http://127.0.0.1:1/crl")
    _, revoked = ca.leaf(DID_B, crl_url="http://127.0.0.1:1/crl")

    def crl(
        issuer: CA, serials: list[int], next_update: datetime
    ) -> x509.CertificateRevocationList:
        entries = [RevokedEntry(serial=s, revoked_at=now - timedelta(minutes=1)) for s in serials]
        return build_crl(
            issuer.signer,
            issuer.cert,
            entries,
            crl_number=1,
            this_update=now - timedelta(hours=2),
            next_update=next_update,
        )

    good = crl(ca, [revoked[0].serial_number], now + timedelta(hours=1))
    check = revocation_from_crls([good], now=now)
    assert check(plain[0], ca.cert) is RevocationStatus.NON_REVOCABLE
    assert check(with_cdp[0], ca.cert) is RevocationStatus.GOOD
    assert check(revoked[0], ca.cert) is RevocationStatus.REVOKED
    stale = revocation_from_crls([crl(ca, [], now - timedelta(hours=1))], now=now)
    assert stale(with_cdp[0], ca.cert) is RevocationStatus.UNKNOWN
    wrong_issuer = revocation_from_crls([crl(other, [], now + timedelta(hours=1))], now=now)
    assert wrong_issuer(with_cdp[0], ca.cert) is RevocationStatus.UNKNOWN
