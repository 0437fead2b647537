"""The acceptance bar: the real notation v1.3.2 CLI verifies what holdca produces.

Each test gets its own NOTATION_CONFIG and NOTATION_CACHE (tests/notation/conftest.py)
and runs ``NOTATION_EXPERIMENTAL=1 notation verify --oci-layout --scope local/holdca
<layout>@<digest>``. Failures are asserted on notation's own error text. Every verdict is
also checked against holdca's Python verifier, which must agree.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca.errors import NotationVerificationError, RevocationUnknownError, RevokedError
from holdca.keys import MemorySigner, Signer
from holdca.notation import (
    Descriptor,
    DirectoryTrustStore,
    OCILayout,
    SigningScheme,
    TrustPolicy,
    hold_trust_policy,
    revocation_from_crls,
    sign_envelope,
    validate_trust_policy,
    verify_envelope,
    write_trust_policy,
    write_trust_store,
    x509_subject_identity,
)
from holdca.notation._codec import b64url_encode
from holdca.notation.verify import RevocationStatus
from holdca.pki import (
    CertStatus,
    RevokedEntry,
    build_crl,
    cross_sign,
    respond_ocsp,
    respond_ocsp_get,
)
from holdca.testing.oci import build_test_image
from tests.notation.helpers import CA, DID_A, DID_B, SCOPE, SUBJECT, HTTPServer, NotationCLI

pytestmark = pytest.mark.interop


def identity(did: str) -> str:
    return x509_subject_identity(
        did, country=SUBJECT.country, state=SUBJECT.state, organization=SUBJECT.organization
    )


def setup(
    notation: NotationCLI,
    roots: list[x509.Certificate],
    *,
    scheme: SigningScheme = SigningScheme.X509,
    identities: list[str] | None = None,
    revocation: str | None = None,
) -> TrustPolicy:
    """Write the trust store and the policy holdca generates into notation's config dir."""
    store_type = "ca" if scheme is SigningScheme.X509 else "signingAuthority"
    write_trust_store(notation.config, "hold", roots, type=store_type)
    policy = hold_trust_policy(
        store="hold", scheme=scheme, identities=identities, revocation=revocation
    )
    write_trust_policy(notation.config, policy)
    return policy


def signed_layout(
    tmp_path: Path,
    signer: Signer,
    chain: list[x509.Certificate],
    *,
    now: datetime | None = None,
    scheme: SigningScheme = SigningScheme.X509,
    content: bytes = b"holdca interop\n",
) -> tuple[OCILayout, Descriptor, bytes]:
    layout = OCILayout.create(tmp_path / "layout")
    image = build_test_image(layout, content=content)
    env = sign_envelope(signer, chain, image, now=now or datetime.now(UTC), scheme=scheme)
    layout.attach_signature(image, env)
    return layout, image, env


def python_verdict(
    notation: NotationCLI,
    env: bytes,
    image: Descriptor,
    revocation: Any = None,
) -> NotationVerificationError | None:
    """holdca's verifier, reading the same config directory notation read."""
    policy = validate_trust_policy((notation.config / "trustpolicy.json").read_bytes())
    try:
        verify_envelope(
            env,
            statement=policy.applicable(SCOPE),
            trust_store=DirectoryTrustStore(notation.config),
            now=datetime.now(UTC),
            descriptor=image,
            revocation=revocation,
        )
    except NotationVerificationError as exc:
        return exc
    return None


def assert_verified(notation: NotationCLI, layout: OCILayout, image: Descriptor) -> None:
    result = notation.verify(layout.path, image.digest)
    assert result.returncode == 0, result.stderr
    assert "Successfully verified signature" in result.stdout


def assert_rejected(
    notation: NotationCLI, layout: OCILayout, image: Descriptor, *texts: str
) -> str:
    result = notation.verify(layout.path, image.digest)
    assert result.returncode != 0, result.stdout
    for text in texts:
        assert text in result.stderr, result.stderr
    return result.stderr


# --- 1. holdca signs, notation verifies (strict) ------------------------------------------


@pytest.fixture(params=["memory", "pem", "softhsm"])
def ca_signer(request: pytest.FixtureRequest, tmp_path: Path) -> Signer:
    """The CA key on each backend: in memory, in a PEM file, on a SoftHSM token."""
    if request.param == "memory":
        return MemorySigner.generate()
    if request.param == "pem":
        from holdca.keys.pem import PEMKeyStore  # noqa: PLC0415

        return PEMKeyStore(tmp_path / "keys", passphrase=b"interop test").generate("hold-root")
    softhsm = request.getfixturevalue("softhsm")
    label = f"interop-{request.node.name}".replace("[", "-").replace("]", "")[:60]
    store = softhsm.keystore()
    if label in store.labels():
        store.delete(label)
    signer: Signer = store.generate(label)
    return signer


@pytest.mark.parametrize("who", ["wildcard", "exact-dn"])
def test_notation_verifies_holdca_signature(
    tmp_path: Path, notation: NotationCLI, ca_signer: Signer, who: str
) -> None:
    ca = CA.create(signer=ca_signer)
    key, chain = ca.leaf(DID_A)
    layout, image, env = signed_layout(tmp_path, key, chain)
    setup(notation, [ca.cert], identities=None if who == "wildcard" else [identity(DID_A)])
    assert_verified(notation, layout, image)
    assert python_verdict(notation, env, image) is None


# --- 2. failures for the right reason ------------------------------------------------------


def test_tampered_payload_fails_integrity(
    tmp_path: Path, notation: NotationCLI, root_ca: CA
) -> None:
    key, chain = root_ca.leaf(DID_A)
    layout = OCILayout.create(tmp_path / "layout")
    image = build_test_image(layout)
    top = json.loads(sign_envelope(key, chain, image, now=datetime.now(UTC)))
    payload = json.loads(base64.urlsafe_b64decode(top["payload"] + "=="))
    payload["targetArtifact"]["annotations"] = {"injected": "yes"}
    top["payload"] = b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
    env = json.dumps(top).encode()
    layout.attach_signature(image, env)
    setup(notation, [root_ca.cert])
    assert_rejected(notation, layout, image, "signature is invalid")
    err = python_verdict(notation, env, image)
    assert err is not None
    assert err.check == "integrity"


def test_wrong_trust_store_fails_authenticity(
    tmp_path: Path, notation: NotationCLI, root_ca: CA, other_ca: CA
) -> None:
    key, chain = root_ca.leaf(DID_A)
    layout, image, env = signed_layout(tmp_path, key, chain)
    setup(notation, [other_ca.cert])
    assert_rejected(
        notation,
        layout,
        image,
        "the signature's certificate chain does not contain any trusted certificate",
    )
    err = python_verdict(notation, env, image)
    assert err is not None
    assert err.check == "authenticity"


def test_other_dids_identity_fails(tmp_path: Path, notation: NotationCLI, root_ca: CA) -> None:
    key, chain = root_ca.leaf(DID_A)
    layout, image, env = signed_layout(tmp_path, key, chain)
    setup(notation, [root_ca.cert], identities=[identity(DID_B)])
    assert_rejected(
        notation,
        layout,
        image,
        "signing certificate from the digital signature does not match the X.509 trusted "
        "identities",
    )
    err = python_verdict(notation, env, image)
    assert err is not None
    assert "does not match the X.509 trusted identities" in str(err)


# --- 3. revocation via the hold's CRL and OCSP, served over http ---------------------------


def _serve_crl(server: HTTPServer, ca: CA, revoked: list[int]) -> str:
    return _publish_crl(server, ca, revoked)[0]


def _publish_crl(
    server: HTTPServer, ca: CA, revoked: list[int]
) -> tuple[str, x509.CertificateRevocationList]:
    now = datetime.now(UTC)
    entries = [RevokedEntry(serial=s, revoked_at=now - timedelta(minutes=1)) for s in revoked]
    crl = build_crl(
        ca.signer,
        ca.cert,
        entries,
        crl_number=1,
        this_update=now - timedelta(minutes=1),
        next_update=now + timedelta(minutes=10),
    )
    der = crl.public_bytes(serialization.Encoding.DER)
    server.routes["/crl/hold.crl"] = lambda _rest: (200, der)
    return f"{server.base_url}/crl/hold.crl", crl


def _serve_ocsp(server: HTTPServer, ca: CA, revoked: list[int]) -> str:
    def status_of(serial: int) -> CertStatus:
        if serial in revoked:
            return CertStatus.revoked(datetime.now(UTC) - timedelta(minutes=1))
        return CertStatus.good()

    def get(rest: str) -> tuple[int, bytes]:
        return 200, respond_ocsp_get(
            rest,
            status_of=status_of,
            issuer_cert=ca.cert,
            signer=ca.signer,
            now=datetime.now(UTC),
        )

    def post(body: bytes) -> tuple[int, bytes]:
        return 200, respond_ocsp(
            body,
            status_of=status_of,
            issuer_cert=ca.cert,
            signer=ca.signer,
            now=datetime.now(UTC),
        )

    server.routes["/ocsp/"] = get
    server.post_routes["/ocsp"] = post
    return f"{server.base_url}/ocsp"


def _python_revocation(revoked: list[int]) -> Any:
    def check(cert: x509.Certificate, issuer: x509.Certificate) -> RevocationStatus:
        return RevocationStatus.REVOKED if cert.serial_number in revoked else RevocationStatus.GOOD

    return check


@pytest.mark.parametrize("method", ["crl", "ocsp"])
@pytest.mark.parametrize("is_revoked", [False, True])
def test_revocation(
    tmp_path: Path,
    notation: NotationCLI,
    http_server: HTTPServer,
    root_ca: CA,
    method: str,
    is_revoked: bool,
) -> None:
    revoked: list[int] = []
    if method == "crl":
        url, crl = _publish_crl(http_server, root_ca, revoked)
        key, chain = root_ca.leaf(DID_A, crl_url=url)
    else:
        url = _serve_ocsp(http_server, root_ca, revoked)
        key, chain = root_ca.leaf(DID_A, ocsp_url=url)
    if is_revoked:
        revoked.append(chain[0].serial_number)
        if method == "crl":  # re-publish the CRL with the entry
            _, crl = _publish_crl(http_server, root_ca, revoked)
    layout, image, env = signed_layout(tmp_path, key, chain)
    setup(notation, [root_ca.cert])
    if is_revoked:
        assert_rejected(notation, layout, image, "is revoked")
    else:
        assert_verified(notation, layout, image)
    assert any(path.startswith(f"/{method}") for path in http_server.requests), (
        "notation did not contact the hold's revocation endpoint"
    )
    source = (
        revocation_from_crls([crl], now=datetime.now(UTC))
        if method == "crl"
        else _python_revocation(revoked)
    )
    err = python_verdict(notation, env, image, revocation=source)
    assert (err is None) == (not is_revoked)
    if is_revoked:
        assert isinstance(err, RevokedError)
        # Without a python revocation source the status is unknown, never "good".
        unknown = python_verdict(notation, env, image)
        assert isinstance(unknown, RevocationUnknownError)


def test_revoked_passes_when_policy_logs_revocation(
    tmp_path: Path, notation: NotationCLI, http_server: HTTPServer, root_ca: CA
) -> None:
    revoked: list[int] = []
    url = _serve_crl(http_server, root_ca, revoked)
    key, chain = root_ca.leaf(DID_A, crl_url=url)
    revoked.append(chain[0].serial_number)
    _serve_crl(http_server, root_ca, revoked)
    layout, image, _ = signed_layout(tmp_path, key, chain)
    setup(notation, [root_ca.cert], revocation="log")
    assert_verified(notation, layout, image)


# --- 4. short-lived certificates -------------------------------------------------------------


def test_expired_leaf_x509_fails_signing_authority_passes(
    tmp_path: Path, notation: NotationCLI
) -> None:
    past = datetime.now(UTC) - timedelta(days=3)
    ca = CA.create(now=past - timedelta(days=7))
    key, chain = ca.leaf(DID_A, now=past)
    assert chain[0].not_valid_after_utc < datetime.now(UTC)

    layout, image, env = signed_layout(tmp_path / "x509", key, chain, now=past)
    setup(notation, [ca.cert])
    assert_rejected(notation, layout, image, "verification time is after certificate")
    err = python_verdict(notation, env, image)
    assert err is not None
    assert err.check == "authenticTimestamp"

    # The same expired leaf under notary.x509.signingAuthority, trusted as signingAuthority.
    notation2 = NotationCLI(notation.binary, tmp_path / "cfg-sa", tmp_path / "cache-sa")
    layout2, image2, env2 = signed_layout(
        tmp_path / "sa", key, chain, now=past, scheme=SigningScheme.SIGNING_AUTHORITY
    )
    setup(notation2, [ca.cert], scheme=SigningScheme.SIGNING_AUTHORITY)
    assert_verified(notation2, layout2, image2)
    assert python_verdict(notation2, env2, image2) is None

    # A signingAuthority signature is not trusted through a ca store.
    notation3 = NotationCLI(notation.binary, tmp_path / "cfg-ca", tmp_path / "cache-ca")
    setup(notation3, [ca.cert])
    assert_rejected(notation3, layout2, image2, "no trusted certificates")


def test_resigning_old_image_with_fresh_certificate(tmp_path: Path, notation: NotationCLI) -> None:
    past = datetime.now(UTC) - timedelta(days=3)
    ca = CA.create(now=past - timedelta(days=7))
    old_key, old_chain = ca.leaf(DID_A, now=past)
    layout, image, _ = signed_layout(tmp_path, old_key, old_chain, now=past)
    setup(notation, [ca.cert])
    assert_rejected(notation, layout, image, "verification time is after certificate")
    new_key, new_chain = ca.leaf(DID_A)
    layout.attach_signature(image, sign_envelope(new_key, new_chain, image, now=datetime.now(UTC)))
    assert len(layout.signatures_of(image)) == 2
    assert_verified(notation, layout, image)


# --- 5. root rotation ------------------------------------------------------------------------


def test_rotation_grace_period_both_roots_verify(tmp_path: Path, notation: NotationCLI) -> None:
    old = CA.create(now=datetime.now(UTC) - timedelta(days=30))
    new = CA.create(common_name="ATCR Hold CA 2 - did:web:hold.example.com")
    setup(notation, [old.cert, new.cert], identities=[identity(DID_A)])
    for name, ca in (("old", old), ("new", new)):
        key, chain = ca.leaf(DID_A)
        layout, image, env = signed_layout(tmp_path / name, key, chain, content=name.encode())
        assert_verified(notation, layout, image)
        assert python_verdict(notation, env, image) is None


def test_cross_signed_chain_verifies_with_only_the_old_root(
    tmp_path: Path, notation: NotationCLI
) -> None:
    old = CA.create(now=datetime.now(UTC) - timedelta(days=30))
    new = CA.create(common_name="ATCR Hold CA 2 - did:web:hold.example.com")
    cross = cross_sign(old.signer, old.cert, new.cert, now=datetime.now(UTC))
    key, chain = new.leaf(DID_A, chain_tail=[cross, old.cert])
    layout, image, env = signed_layout(tmp_path, key, chain)
    setup(notation, [old.cert])
    assert_verified(notation, layout, image)
    assert python_verdict(notation, env, image) is None
    # The new root alone does not anchor this chain (it is not in x5c).
    notation2 = NotationCLI(notation.binary, tmp_path / "cfg2", tmp_path / "cache2")
    setup(notation2, [new.cert])
    assert_rejected(notation2, layout, image, "does not contain any trusted certificate")
