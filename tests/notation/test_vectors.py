"""notation's own vectors: envelopes, OCI layouts, trust policies, trust stores.

Expected outcomes are those documented in tests/vectors/notation/README.md (from
notation's test suites). Where the notation CLI is available, the OCI layout scenarios
are also run through ``notation verify`` and both verdicts must agree.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from holdca.errors import (
    ArtifactMismatchError,
    AuthenticityError,
    AuthenticTimestampError,
    ExpiredSignatureError,
    IntegrityError,
    NotationVerificationError,
    TrustedIdentityError,
    TrustPolicyError,
    TrustStoreError,
    VerificationInconclusiveError,
)
from holdca.notation import (
    Check,
    Descriptor,
    DirectoryTrustStore,
    OCILayout,
    SignatureVerification,
    TrustPolicyStatement,
    TrustStore,
    parse_envelope,
    referrers_index,
    signature_manifest,
    validate_trust_policy,
    verify_envelope,
)
from holdca.notation.oci import ARTIFACT_TYPE_NOTATION, MEDIA_TYPE_OCI_MANIFEST
from holdca.notation.truststore import read_certificate_file
from tests.notation.helpers import VECTORS, NotationCLI

NOW = datetime.now(UTC)
GO = VECTORS / "notation-go-v1.3.2"
CLI = VECTORS / "notation-cli-v1.3.2-e2e"
MOCK = GO / "envelopes" / "mock"
TEST_ROOT = read_certificate_file(
    (GO / "truststore/x509/ca/valid-trust-store/NotationTestRoot.pem").read_bytes()
)
TARGET_B8479 = "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9"


def statement(
    level: str = "strict",
    stores: tuple[str, ...] = ("ca:test",),
    identities: tuple[str, ...] = ("*",),
    override: dict[str, str] | None = None,
) -> TrustPolicyStatement:
    return TrustPolicyStatement(
        "test", ("*",), SignatureVerification(level, override), stores, identities
    )


MOCK_STORES = TrustStore({("ca", "test"): TEST_ROOT, ("signingAuthority", "test"): TEST_ROOT})


def verify_mock(name: str, **kwargs: object) -> object:
    st = kwargs.pop("st", statement(stores=("ca:test", "signingAuthority:test")))
    return verify_envelope(
        (MOCK / name).read_bytes(),
        statement=st,  # type: ignore[arg-type]
        trust_store=kwargs.pop("trust_store", MOCK_STORES),  # type: ignore[arg-type]
        now=NOW,
        **kwargs,  # type: ignore[arg-type]
    )


# --- notation-go mock envelopes -------------------------------------------------------


@pytest.mark.parametrize("name", ["ca_valid_sig_env.json", "sa_valid_sig_env.json"])
def test_valid_mock_envelopes_verify(name: str) -> None:
    env = parse_envelope((MOCK / name).read_bytes())
    target = env.target_artifact
    # README: descriptor application/vnd.docker.distribution.manifest.v2+json, 60043cf4..., 528
    assert target.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert target.digest.startswith("sha256:60043cf4")
    assert target.size == 528
    outcome = verify_mock(name, descriptor=Descriptor(target.media_type, target.digest, 528))
    assert outcome.warnings == []  # type: ignore[attr-defined]
    with pytest.raises(ArtifactMismatchError, match="content descriptor mismatch"):
        verify_mock(name, descriptor=Descriptor(target.media_type, target.digest, 529))


@pytest.mark.parametrize("name", ["ca_invalid_sig_env.json", "sa_invalid_sig_env.json"])
def test_invalid_mock_envelopes_fail_integrity(name: str) -> None:
    with pytest.raises(IntegrityError):
        verify_mock(name)
    # Integrity is enforced even at level audit.
    with pytest.raises(IntegrityError):
        verify_mock(name, st=statement("audit", ("ca:test", "signingAuthority:test")))


@pytest.mark.parametrize("name", ["ca_expired_sig_env.json", "sa_expired_sig_env.json"])
def test_expired_mock_envelopes(name: str) -> None:
    with pytest.raises(ExpiredSignatureError, match="digital signature has expired on"):
        verify_mock(name)
    outcome = verify_mock(name, st=statement("permissive", ("ca:test", "signingAuthority:test")))
    (warning,) = outcome.warnings  # type: ignore[attr-defined]
    assert isinstance(warning, ExpiredSignatureError)
    outcome = verify_mock(
        name,
        st=statement("strict", ("ca:test", "signingAuthority:test"), override={"expiry": "log"}),
    )
    assert [r.check for r in outcome.results if r.error] == [Check.EXPIRY]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in MOCK.glob("*plugin*")),
)
def test_plugin_envelopes_are_inconclusive(name: str) -> None:
    with pytest.raises(VerificationInconclusiveError, match="plugin"):
        verify_mock(
            name,
            trust_store=TrustStore(
                {
                    ("ca", "test"): TEST_ROOT,
                    ("signingAuthority", "test"): TEST_ROOT,
                    ("ca", "w"): read_certificate_file(
                        (
                            GO / "truststore/x509/ca/valid-trust-store/wabbit-networks.io.crt"
                        ).read_bytes()
                    ),
                }
            ),
            st=statement(stores=("ca:test", "signingAuthority:test", "ca:w")),
        )


def test_signing_authority_envelope_needs_signing_authority_store() -> None:
    with pytest.raises(VerificationInconclusiveError, match="no trusted certificates"):
        verify_mock("sa_valid_sig_env.json", st=statement(stores=("ca:test",)))
    with pytest.raises(VerificationInconclusiveError, match="no trusted certificates"):
        verify_mock("ca_valid_sig_env.json", st=statement(stores=("signingAuthority:test",)))


def test_metadata_envelope_expired_leaf_and_user_metadata() -> None:
    data = (MOCK / "sig_env_with_metadata.json").read_bytes()
    leaf = parse_envelope(data).leaf
    store = TrustStore({("ca", "test"): [leaf]})
    with pytest.raises(AuthenticTimestampError, match="verification time is after certificate"):
        verify_envelope(data, statement=statement(), trust_store=store, now=NOW)
    relaxed = statement("permissive")
    verify_envelope(
        data,
        statement=relaxed,
        trust_store=store,
        now=NOW,
        user_metadata={"io.wabbit-networks.buildId": "123"},
    )
    with pytest.raises(ArtifactMismatchError, match="metadata"):
        verify_envelope(
            data,
            statement=relaxed,
            trust_store=store,
            now=NOW,
            user_metadata={"io.wabbit-networks.buildId": "124"},
        )


def test_oci_local_jws_signature_verifies_over_its_manifest() -> None:
    base = GO / "envelopes" / "oci-local"
    data = (base / "jws_signature.sig").read_bytes()
    manifest = (base / "manifest-sha256-19dbd2e4.json").read_bytes()
    desc = Descriptor.for_content(MEDIA_TYPE_OCI_MANIFEST, manifest)
    assert desc.digest.startswith("sha256:19dbd2e4")
    assert desc.size == 481
    leaf = parse_envelope(data).leaf
    verify_envelope(
        data,
        statement=statement(),
        trust_store=TrustStore({("ca", "test"): [leaf]}),
        now=NOW,
        descriptor=desc,
    )


def test_wrong_anchor_fails_authenticity_and_audit_only_logs() -> None:
    other = read_certificate_file(
        (GO / "truststore/x509/ca/valid-trust-store/wabbit-networks.io.crt").read_bytes()
    )
    store = TrustStore({("ca", "test"): other})
    data = (MOCK / "ca_valid_sig_env.json").read_bytes()
    with pytest.raises(AuthenticityError, match="does not contain any trusted certificate"):
        verify_envelope(data, statement=statement(), trust_store=store, now=NOW)
    outcome = verify_envelope(data, statement=statement("audit"), trust_store=store, now=NOW)
    assert [type(w) for w in outcome.warnings] == [AuthenticityError]


# --- notation CLI e2e OCI layouts ------------------------------------------------------


def _copy_layout(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(CLI / "oci_layout" / name, dest)
    return dest


def _cli_store(cert_file: str) -> TrustStore:
    return TrustStore(
        {("ca", "e2e"): read_certificate_file((CLI / "localkeys" / cert_file).read_bytes())}
    )


def test_signature_manifest_and_tag_index_are_byte_identical_to_notations() -> None:
    blobs = CLI / "oci_layout/e2e-valid-signature/blobs/sha256"
    envelope = (
        blobs / "c9af07e038b2b1a463e648986ad7273157511ffeba0b689f33e5472bae471f50"
    ).read_bytes()
    subject = Descriptor.for_content(
        MEDIA_TYPE_OCI_MANIFEST, (blobs / TARGET_B8479[7:]).read_bytes()
    )
    manifest = signature_manifest(envelope, subject)
    assert hashlib.sha256(manifest).hexdigest().startswith("90ceaff2")
    assert manifest == (blobs / hashlib.sha256(manifest).hexdigest()).read_bytes()
    entry = Descriptor.for_content(
        MEDIA_TYPE_OCI_MANIFEST,
        manifest,
        json.loads(manifest)["annotations"],
        artifact_type=ARTIFACT_TYPE_NOTATION,
    )
    index = referrers_index([entry])
    assert hashlib.sha256(index).hexdigest().startswith("13e107e0")


LAYOUT_CASES = [
    # (layout, anchor, policy file, expected python error or None, notation succeeds?)
    ("e2e-valid-signature", "e2e.crt", "trustpolicy.json", None),
    ("e2e-valid-signature", "e2e.crt", "valid_trusted_identity_trustpolicy.json", None),
    ("e2e-valid-signature", "new_e2e.crt", "trustpolicy.json", AuthenticityError),
    ("e2e-valid-signature", "new_e2e.crt", "audit_trustpolicy.json", None),
    (
        "e2e-valid-signature",
        "e2e.crt",
        "invalid_trusted_identity_trustpolicy.json",
        TrustedIdentityError,
    ),
    ("e2e-valid-signature", "e2e.crt", "invalid_trust_store_trustpolicy.json", AuthenticityError),
    ("e2e-expired-signature", "e2e.crt", "trustpolicy.json", ExpiredSignatureError),
    ("e2e-expired-signature", "e2e.crt", "permissive_trustpolicy.json", None),
    ("e2e-expired-signature", "e2e.crt", "override_strict_trustpolicy.json", None),
    ("e2e-with-expired-cert", "expired_e2e.crt", "trustpolicy.json", AuthenticTimestampError),
    ("e2e-with-expired-cert", "expired_e2e.crt", "audit_trustpolicy.json", None),
    ("e2e-with-expired-cert", "e2e.crt", "trustpolicy.json", AuthenticityError),
    ("e2e-invalid-signature", "e2e.crt", "trustpolicy.json", IntegrityError),
    ("e2e-invalid-signature", "e2e.crt", "audit_trustpolicy.json", IntegrityError),
    ("e2e-invalid-signature", "e2e.crt", "skip_trustpolicy.json", None),
]


def _python_verdict(
    layout: OCILayout, anchor: str, policy_file: str
) -> NotationVerificationError | None:
    policy = validate_trust_policy((CLI / "trustpolicies" / policy_file).read_bytes())
    st = policy.applicable("local/e2e")
    (sig,) = layout.signatures_of("v1")
    try:
        verify_envelope(
            sig.envelope,
            statement=st,
            trust_store=_cli_store(anchor),
            now=NOW,
            descriptor=layout.resolve("v1"),
        )
    except NotationVerificationError as exc:
        return exc
    return None


@pytest.mark.parametrize(("name", "anchor", "policy_file", "expected"), LAYOUT_CASES)
def test_cli_layouts_in_python(
    tmp_path: Path, name: str, anchor: str, policy_file: str, expected: type | None
) -> None:
    layout = OCILayout(_copy_layout(name, tmp_path))
    assert layout.resolve("v1").digest == TARGET_B8479
    error = _python_verdict(layout, anchor, policy_file)
    if expected is None:
        assert error is None
    else:
        assert isinstance(error, expected), error


@pytest.mark.interop
@pytest.mark.parametrize(("name", "anchor", "policy_file", "expected"), LAYOUT_CASES)
def test_cli_layouts_agree_with_notation(
    tmp_path: Path,
    notation: NotationCLI,
    name: str,
    anchor: str,
    policy_file: str,
    expected: type | None,
) -> None:
    """The Python verdict and notation's verdict are the same on notation's own layouts."""
    path = _copy_layout(name, tmp_path)
    store_dir = notation.config / "truststore/x509/ca/e2e"
    store_dir.mkdir(parents=True)
    shutil.copy(CLI / "localkeys" / anchor, store_dir / anchor)
    shutil.copy(CLI / "trustpolicies" / policy_file, notation.config / "trustpolicy.json")
    result = notation.verify(path, TARGET_B8479, scope="local/e2e")
    assert (result.returncode == 0) == (expected is None), result.stderr
    python_error = _python_verdict(OCILayout(path), anchor, policy_file)
    assert (python_error is None) == (result.returncode == 0)


def test_unsigned_layout_has_no_signatures(tmp_path: Path) -> None:
    layout = OCILayout(_copy_layout("e2e", tmp_path))
    assert layout.signatures_of("v1") == []


def test_invalid_registry_scope_has_no_applicable_statement() -> None:
    policy = validate_trust_policy(
        (CLI / "trustpolicies/invalid_registry_scope_trustpolicy.json").read_bytes()
    )
    with pytest.raises(TrustPolicyError, match="has no applicable trust policy statement"):
        policy.applicable("local/e2e")


# --- trust policies ----------------------------------------------------------------------

VALID_POLICIES = [
    "any_registry_scope_trust_policy.json",
    "audit_trustpolicy.json",
    "generate_test_trustpolicy.json",
    "invalid_registry_scope_trustpolicy.json",
    "invalid_trust_store_trustpolicy.json",
    "invalid_trusted_identity_trustpolicy.json",
    "multi_statements_with_wildcard_registry_scope_trustpolicy.json",
    "multiple_registry_scope_trustpolicy.json",
    "multiple_trust_store_trustpolicy.json",
    "multiple_trusted_identity_trustpolicy.json",
    "overlapped_trust_store_trustpolicy.json",
    "override_audit_trustpolicy.json",
    "override_permissive_trustpolicy.json",
    "override_strict_trustpolicy.json",
    "permissive_trustpolicy.json",
    "quickstart_trustpolicy.json",
    "registry_scope_trustpolicy.json",
    "skip_trustpolicy.json",
    "timestamp_after_cert_expiry_trustpolicy.json",
    "timestamp_trustpolicy.json",
    "trustpolicy.json",
    "valid_trusted_identity_trustpolicy.json",
]

# file name without "_trustpolicy.json" -> substring of notation's error message
INVALID_POLICIES = {
    "invalid_format": "malformed trust policy",
    "empty_registry_scope": 'trust policy statement "e2e" has zero registry scopes',
    "malformed_registry_scope": 'registry scope "localhost:5000\\test-repo" is not valid',
    "overlapped_registry_scope": (
        'registry scope "localhost:5000/test-repo6" is present in multiple trust policy statements'
    ),
    "wildcard_plus_other_registry_scope": (
        "uses wildcard registry scope '*', a wildcard scope cannot be used in conjunction with "
        "other scope values"
    ),
    "multi_statements_with_the_same_registry_scope": (
        'registry scope "localhost:5000/test-repo8" is present in multiple trust policy statements'
    ),
    "multi_statements_with_multi_wildcard_registry_scope": (
        'registry scope "*" is present in multiple trust policy statements'
    ),
    "multi_statements_with_the_same_name": (
        'multiple trust policy statements use the same name "e2e"'
    ),
    "unset_trust_store": (
        "is either missing trust stores or trusted identities, both must be specified"
    ),
    "unset_trusted_identity": (
        "is either missing trust stores or trusted identities, both must be specified"
    ),
    "malformed_trust_store": 'uses an unsupported trust store name "" in trust store value "ca:"',
    "wildcard_trust_store": 'has malformed trust store value "*"',
    "empty_trusted_identity": "has an empty trusted identity",
    "malformed_trusted_identity": 'has trusted identity "x509.subject CN=e2e,',
    "missing_country_trusted_identity": 'has no mandatory RDN attribute for "C"',
    "missing_organization_trusted_identity": 'has no mandatory RDN attribute for "O"',
    "missing_state_trusted_identity": 'has no mandatory RDN attribute for "ST"',
    "overlapped_trusted_identity": "has overlapping x509 trustedIdentities",
    "wildcard_plus_other_trusted_identity": (
        "uses a wildcard trusted identity '*', a wildcard identity cannot be used in "
        "conjunction with other values"
    ),
    "override_integrity_for_permissive": (
        '"integrity" verification can not be overridden in custom signature verification'
    ),
}


def test_every_policy_vector_is_classified() -> None:
    names = {p.name for p in (CLI / "trustpolicies").glob("*.json")}
    assert names == set(VALID_POLICIES) | {f"{n}_trustpolicy.json" for n in INVALID_POLICIES}


@pytest.mark.parametrize("name", VALID_POLICIES)
def test_valid_policy_vectors_validate(name: str) -> None:
    policy = validate_trust_policy((CLI / "trustpolicies" / name).read_bytes())
    # Re-serialising gives a document that validates to the same statements.
    assert validate_trust_policy(policy.to_json()) == policy


@pytest.mark.parametrize(("name", "message"), sorted(INVALID_POLICIES.items()))
def test_invalid_policy_vectors_are_rejected_with_notations_message(
    name: str, message: str
) -> None:
    with pytest.raises(TrustPolicyError) as info:
        validate_trust_policy((CLI / "trustpolicies" / f"{name}_trustpolicy.json").read_bytes())
    assert message in str(info.value)


# --- trust store vectors -----------------------------------------------------------------


def test_trust_store_loader_rules(tmp_path: Path) -> None:
    src = GO / "truststore/x509"
    config = tmp_path / "config"
    shutil.copytree(src, config / "truststore" / "x509")
    stores = DirectoryTrustStore(config)
    certs = stores.certificates("ca", "valid-trust-store")
    # GlobalSign.der (DER) and GlobalSignRootCA.crt (PEM) hold the same certificate.
    ders = [c.public_bytes(serialization.Encoding.DER) for c in certs]
    assert len(ders) == 4
    assert len(set(ders)) == 3
    with pytest.raises(TrustStoreError, match="is not a CA certificate or self-signed"):
        stores.certificates("ca", "trust-store-with-leaf-certs")
    with pytest.raises(TrustStoreError, match='the trust store "nope" of type "ca" does not exist'):
        stores.certificates("ca", "nope")
    store_dir = config / "truststore/x509/signingAuthority/valid-trust-store"
    (store_dir / "README").write_text("not a certificate")
    with pytest.raises(TrustStoreError, match="README"):
        stores.certificates("signingAuthority", "valid-trust-store")
    (store_dir / "README").unlink()
    (store_dir / "link.pem").symlink_to(store_dir / "NotationTestRoot.pem")
    with pytest.raises(TrustStoreError, match="not a regular file"):
        stores.certificates("signingAuthority", "valid-trust-store")
