"""as_private_key: cryptography's X.509 builders sign through any Signer.

Every backend (memory, PEM, PKCS#11 on SoftHSM) signs a certificate, a CRL and an OCSP
response through the adapter; cryptography verifies each, and openssl verifies a chain
whose root and leaf were signed through the adapter (once per backend, so including a
key that lives on SoftHSM). RSA-PSS (PS256, PS384) goes through the CertificateBuilder
and CRL builder with ``rsa_padding=padding.PSS(...)``.
"""

from __future__ import annotations

import copy
import datetime as dt
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from holdca.errors import UnsupportedAlgorithmError
from holdca.keys import KeyStore, MemorySigner, SignatureAlgorithm, Signer, as_private_key
from holdca.keys.adapter import SignerECKey, SignerRSAKey
from tests.keys.helpers import require_algorithm
from tests.tools import require_tool

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
Labels = Callable[[], str]


def pss_for(signer: Signer) -> padding.PSS | None:
    """The rsa_padding the builders need for an RSA-PSS signer (None for ECDSA)."""
    if signer.algorithm.is_ecdsa:
        return None
    h = signer.algorithm.hash
    return padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_root(signer: Signer, cn: str = "adapter root") -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(cn))
        .public_key(signer.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer.public_key), False)
    )
    return builder.sign(as_private_key(signer), signer.algorithm.hash, rsa_padding=pss_for(signer))


def make_leaf(issuer: Signer, issuer_cert: x509.Certificate) -> x509.Certificate:
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name("adapter leaf"))
        .issuer_name(issuer_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key), False)
    )
    return builder.sign(as_private_key(issuer), issuer.algorithm.hash, rsa_padding=pss_for(issuer))


ALGORITHMS = [SignatureAlgorithm.ES256, SignatureAlgorithm.ES384, SignatureAlgorithm.PS256]


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.value)
def test_certificate(store: KeyStore, fresh: Labels, algorithm: SignatureAlgorithm) -> None:
    """A self-signed CA and a leaf signed through the adapter verify with cryptography."""
    require_algorithm(store, algorithm)
    signer = store.generate(fresh(), algorithm)
    root = make_root(signer)
    root.verify_directly_issued_by(root)
    leaf = make_leaf(signer, root)
    leaf.verify_directly_issued_by(root)
    if algorithm.is_ecdsa:
        expected = {
            SignatureAlgorithm.ES256: x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256,
            SignatureAlgorithm.ES384: x509.SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        }[algorithm]
        assert root.signature_algorithm_oid == expected
    else:
        assert isinstance(root.signature_algorithm_parameters, padding.PSS)


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.value)
def test_crl(store: KeyStore, fresh: Labels, algorithm: SignatureAlgorithm) -> None:
    """A CRL with two revoked entries, signed through the adapter, is valid (cryptography)."""
    require_algorithm(store, algorithm)
    signer = store.generate(fresh(), algorithm)
    root = make_root(signer)
    revoked = [
        x509.RevokedCertificateBuilder().serial_number(n).revocation_date(NOW).build()
        for n in (7, 8)
    ]
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=7))
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(as_private_key(signer), algorithm.hash, rsa_padding=pss_for(signer))
    assert crl.is_signature_valid(root.public_key())
    assert {r.serial_number for r in crl} == {7, 8}
    other = MemorySigner.generate(algorithm).public_key
    assert not crl.is_signature_valid(other)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "algorithm", [SignatureAlgorithm.ES256, SignatureAlgorithm.ES384], ids=lambda a: a.value
)
def test_ocsp_response(store: KeyStore, fresh: Labels, algorithm: SignatureAlgorithm) -> None:
    """An OCSP response signed through the adapter verifies over its tbsResponseData."""
    signer = store.generate(fresh(), algorithm)
    root = make_root(signer)
    leaf = make_leaf(signer, root)
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf,
            issuer=root,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=NOW,
            next_update=NOW + dt.timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, root)
        .sign(as_private_key(signer), algorithm.hash)
    )
    parsed = ocsp.load_der_ocsp_response(response.public_bytes(serialization.Encoding.DER))
    public = root.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(parsed.signature, parsed.tbs_response_bytes, ec.ECDSA(algorithm.hash))
    assert parsed.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert parsed.serial_number == leaf.serial_number


def test_ocsp_builder_cannot_use_pss() -> None:
    """OCSPResponseBuilder has no rsa_padding: an RSA-PSS signer refuses PKCS#1 v1.5 clearly."""
    signer = MemorySigner.generate(SignatureAlgorithm.PS256)
    root = make_root(signer)
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=root,
            issuer=root,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=NOW,
            next_update=None,
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, root)
    )
    with pytest.raises(UnsupportedAlgorithmError, match="PSS"):
        builder.sign(as_private_key(signer), hashes.SHA256())


@pytest.mark.parametrize("algorithm", [SignatureAlgorithm.PS256, SignatureAlgorithm.PS384])
def test_memory_rsa_pss_certificate(algorithm: SignatureAlgorithm) -> None:
    """PS256/PS384 certificates: PSS parameters in the certificate match the hash; they verify."""
    signer = MemorySigner.generate(algorithm)
    root = make_root(signer)
    params = root.signature_algorithm_parameters
    assert isinstance(params, padding.PSS)
    assert root.signature_hash_algorithm is not None
    assert root.signature_hash_algorithm.name == algorithm.hash.name
    root.verify_directly_issued_by(root)
    public = root.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(
        root.signature,
        root.tbs_certificate_bytes,
        padding.PSS(padding.MGF1(algorithm.hash), algorithm.hash.digest_size),
        algorithm.hash,
    )


@pytest.mark.interop
@pytest.mark.parametrize(
    "algorithm", [SignatureAlgorithm.ES256, SignatureAlgorithm.PS256], ids=lambda a: a.value
)
def test_openssl_verifies_chain(
    store: KeyStore, fresh: Labels, algorithm: SignatureAlgorithm, tmp_path: Path
) -> None:
    """`openssl verify -x509_strict` accepts root + leaf signed through the adapter.

    For the pkcs11 backend the CA key lives on SoftHSM and never left it.
    """
    openssl = require_tool("openssl")
    require_algorithm(store, algorithm)
    signer = store.generate(fresh(), algorithm)
    root = make_root(signer)
    leaf = make_leaf(signer, root)
    (tmp_path / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    at = str(int(NOW.timestamp()))
    ok = subprocess.run(
        [openssl, "verify", "-x509_strict", "-attime", at, "-CAfile", "root.pem", "leaf.pem"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "leaf.pem: OK" in ok.stdout
    # The oracle can say no: a leaf from another key under the same root name fails.
    impostor = make_leaf(MemorySigner.generate(algorithm), root)
    (tmp_path / "impostor.pem").write_bytes(impostor.public_bytes(serialization.Encoding.PEM))
    bad = subprocess.run(
        [openssl, "verify", "-attime", at, "-CAfile", "root.pem", "impostor.pem"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0


# --- the adapter's own behaviour ------------------------------------------------------


def test_dispatch_and_types() -> None:
    """ECDSA signers become EllipticCurvePrivateKey, RSA-PSS ones RSAPrivateKey."""
    es = as_private_key(MemorySigner.generate(SignatureAlgorithm.ES384))
    ps = as_private_key(MemorySigner.generate(SignatureAlgorithm.PS256))
    assert isinstance(es, SignerECKey)
    assert isinstance(es, ec.EllipticCurvePrivateKey)
    assert es.curve.name == "secp384r1"
    assert es.key_size == 384
    assert isinstance(ps, SignerRSAKey)
    assert isinstance(ps, rsa.RSAPrivateKey)
    assert ps.key_size == 2048
    assert copy.copy(es) is es
    assert copy.deepcopy(ps) is ps
    assert "SignerECKey ES384 via MemorySigner" in repr(es)


def test_refuses_private_material_and_other_operations() -> None:
    """Nothing that would expose or use the private key otherwise is available."""
    es = as_private_key(MemorySigner.generate())
    ps = as_private_key(MemorySigner.generate(SignatureAlgorithm.PS256))
    assert isinstance(es, SignerECKey)
    assert isinstance(ps, SignerRSAKey)
    calls = [
        es.private_numbers,
        lambda: es.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        lambda: es.exchange(ec.ECDH(), es.public_key()),
        ps.private_numbers,
        lambda: ps.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        lambda: ps.decrypt(b"x" * 256, padding.PKCS1v15()),
    ]
    for call in calls:
        with pytest.raises(UnsupportedAlgorithmError, match="not available through a Signer"):
            call()


def test_refuses_wrong_hash_padding_and_prehashed() -> None:
    """A hash other than the signer's, PKCS#1 v1.5, or prehashed input is refused."""
    es = as_private_key(MemorySigner.generate())
    ps = as_private_key(MemorySigner.generate(SignatureAlgorithm.PS256))
    assert isinstance(es, SignerECKey)
    assert isinstance(ps, SignerRSAKey)
    with pytest.raises(UnsupportedAlgorithmError, match="ES256 signs with sha256, not sha384"):
        es.sign(b"x", ec.ECDSA(hashes.SHA384()))
    with pytest.raises(UnsupportedAlgorithmError, match="prehashed"):
        es.sign(b"x" * 32, ec.ECDSA(Prehashed(hashes.SHA256())))
    with pytest.raises(UnsupportedAlgorithmError, match="PSS"):
        ps.sign(b"x", padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(UnsupportedAlgorithmError):
        ps.sign(b"x", padding.PSS(padding.MGF1(hashes.SHA512()), 64), hashes.SHA512())
    # and the builder surfaces it: a CA cert signed with the wrong hash is not produced
    signer = MemorySigner.generate()
    with pytest.raises(UnsupportedAlgorithmError):
        (
            x509.CertificateBuilder()
            .subject_name(name("x"))
            .issuer_name(name("x"))
            .public_key(signer.public_key)
            .serial_number(1)
            .not_valid_before(NOW)
            .not_valid_after(NOW + dt.timedelta(days=1))
            .sign(as_private_key(signer), hashes.SHA384())
        )


@pytest.mark.parametrize(
    ("pss", "ok"),
    [
        (padding.PSS(padding.MGF1(hashes.SHA256()), 32), True),
        (padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH), True),
        (padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH), False),
        (padding.PSS(padding.MGF1(hashes.SHA256()), 20), False),
        (padding.PSS(padding.MGF1(hashes.SHA512()), 32), False),
    ],
    ids=["salt-32", "digest-length", "max-length", "salt-20", "mgf-sha512"],
)
def test_pss_parameters_must_match_the_signer(pss: padding.PSS, ok: bool) -> None:
    """PSS parameters the signer does not use would be declared but not used: refused.

    Without the check the certificate is produced and does not verify (cryptography).
    """
    signer = MemorySigner.generate(SignatureAlgorithm.PS256)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name("pss"))
        .issuer_name(name("pss"))
        .public_key(signer.public_key)
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
    )
    if ok:
        cert = builder.sign(as_private_key(signer), hashes.SHA256(), rsa_padding=pss)
        cert.verify_directly_issued_by(cert)
    else:
        with pytest.raises(UnsupportedAlgorithmError, match="salt_length=32"):
            builder.sign(as_private_key(signer), hashes.SHA256(), rsa_padding=pss)


def test_wrapper_rejects_mismatched_signer() -> None:
    """SignerECKey needs an ECDSA signer, SignerRSAKey an RSA-PSS one."""
    with pytest.raises(UnsupportedAlgorithmError):
        SignerECKey(MemorySigner.generate(SignatureAlgorithm.PS256))
    with pytest.raises(UnsupportedAlgorithmError):
        SignerRSAKey(MemorySigner.generate(SignatureAlgorithm.ES256))
