"""RFC 3161: the pure request/token/response functions and the built-in TSA.

Oracles: ``openssl ts -verify`` and rfc3161-client accept every token the built-in TSA makes;
tspclient-go's own vectors (GlobalSign, RSA) give the expected verdicts of notation's parser.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rfc3161_client import VerifierBuilder, decode_timestamp_response

from holdca.errors import TimestampError
from holdca.keys import MemorySigner, Signer, as_private_key
from holdca.notation.timestamp import (
    MAX_TOKEN_SIZE,
    Timestamper,
    build_request,
    check_response,
    parse_request,
    verify_token,
)
from holdca.notation.timestamp_tsa import (
    LocalTSA,
    build_response,
    build_token,
    rejection_response,
)
from holdca.pki import issue_tsa_certificate, issue_tsa_root
from holdca.pki.issue import signing_params
from tests.notation.helpers import HOLD_DID, SUBJECT, VECTORS
from tests.tools import require_tool

TSP = VECTORS / "tspclient-go"
NOW = datetime.now(UTC)


def make_tsa(now: datetime = NOW) -> tuple[LocalTSA, MemorySigner]:
    root_key, key = MemorySigner.generate(), MemorySigner.generate()
    root = issue_tsa_root(root_key, hold_did=HOLD_DID, subject=SUBJECT, now=now)
    cert = issue_tsa_certificate(root_key, root, key.public_key, subject=SUBJECT, now=now)
    return LocalTSA(key, [cert, root]), root_key


@pytest.fixture(scope="module")
def tsa() -> LocalTSA:
    return make_tsa()[0]


def openssl_verify(tmp: Path, data: bytes, der: bytes, root: x509.Certificate, *, token: bool):
    openssl = require_tool("openssl")
    (tmp / "data").write_bytes(data)
    (tmp / "in.der").write_bytes(der)
    (tmp / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    argv = [openssl, "ts", "-verify", "-data", str(tmp / "data"), "-in", str(tmp / "in.der")]
    argv += ["-token_in"] if token else []
    argv += ["-CAfile", str(tmp / "root.pem")]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def rfc3161_ok(response: bytes, data: bytes, root: x509.Certificate) -> bool:
    verifier = VerifierBuilder().add_root_certificate(root).build()
    try:
        return bool(verifier.verify_message(decode_timestamp_response(response), data))
    except Exception:  # rfc3161-client raises its own VerificationError and others
        return False


# --- the built-in TSA's tokens pass the independent verifiers ---------------------------


@pytest.mark.interop
@pytest.mark.parametrize("hash_algorithm", ["sha256", "sha384", "sha512"])
def test_local_tokens_pass_openssl_and_rfc3161_client(
    tsa: LocalTSA, tmp_path: Path, hash_algorithm: str
) -> None:
    signature = os.urandom(64)
    request = build_request(signature, hash_algorithm=hash_algorithm)
    response = tsa.respond(request.der)
    info = check_response(response, request, [tsa.root])
    assert info.digest == hashlib.new(hash_algorithm, signature).digest()
    assert info.nonce == request.nonce
    assert info.gen_time.microsecond == 0
    result = openssl_verify(tmp_path, signature, response, tsa.root, token=False)
    assert result.returncode == 0, result.stderr
    assert "Verification: OK" in result.stdout
    result = openssl_verify(tmp_path, signature, info.token, tsa.root, token=True)
    assert result.returncode == 0, result.stderr
    assert rfc3161_ok(response, signature, tsa.root)
    # and the oracles say no to other data
    assert openssl_verify(tmp_path, b"other", response, tsa.root, token=False).returncode != 0
    assert not rfc3161_ok(response, b"other", tsa.root)


def test_timestamp_protocol_returns_checked_token(tsa: LocalTSA) -> None:
    assert isinstance(tsa, Timestamper)
    signature = os.urandom(64)
    token = tsa.timestamp(signature, hash_algorithm="sha256")
    info = verify_token(token, [tsa.root], data=signature)
    assert info.signer == tsa.chain[0]
    with pytest.raises(TimestampError, match="messageImprint"):
        verify_token(token, [tsa.root], data=signature + b"x")


def test_serials_are_unique(tsa: LocalTSA) -> None:
    serials = {
        verify_token(tsa.timestamp(b"s", hash_algorithm="sha256"), [tsa.root]).serial_number
        for _ in range(20)
    }
    assert len(serials) == 20


def test_token_layout_as_notation_requires(tsa: LocalTSA) -> None:
    token = tsa.timestamp(b"sig", hash_algorithm="sha256")
    signed = cms.ContentInfo.load(token)["content"]
    assert signed["version"].native == "v3"
    info = signed["signer_infos"][0]
    assert info["version"].native == "v1"
    assert info["sid"].name == "issuer_and_serial_number"
    assert info["signature_algorithm"]["algorithm"].dotted == "1.2.840.10045.4.3.2"
    attrs = [a.dump() for a in info["signed_attrs"]]
    assert attrs == sorted(attrs)  # DER SET OF order
    types = {a["type"].dotted for a in info["signed_attrs"]}
    assert "1.2.840.113549.1.9.16.2.47" in types  # signingCertificateV2
    tst = tsp.TSTInfo.load(bytes(signed["encap_content_info"]["content"].contents))
    assert tst["gen_time"].contents.endswith(b"Z")
    assert b"." not in tst["gen_time"].contents


# --- tspclient-go's vectors -----------------------------------------------------------


def globalsign() -> x509.Certificate:
    return x509.load_pem_x509_certificate((TSP / "GlobalSignRootCA.crt").read_bytes())


def test_tspclient_valid_vector() -> None:
    info = verify_token((TSP / "TimeStampToken.p7s").read_bytes(), [globalsign()], data=b"notation")
    assert info.gen_time == datetime(2021, 9, 17, 14, 9, 10, tzinfo=UTC)
    assert info.accuracy == timedelta(seconds=1)
    assert info.policy == "1.3.6.1.4.1.4146.2.3"


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("SHA1TimeStampToken.p7s", "hash algorithm"),
        ("TimeStampTokenWithInvalidSignature.p7s", "signature does not verify"),
        ("TimeStampTokenWithInvalidTSTInfo.p7s", "malformed"),
        ("TimeStampTokenWithMismatchCertHash.p7s", "certHash"),
        ("TimeStampTokenWithSigningCertificateV1.p7s", "signingCertificateV2"),
        ("TimeStampTokenWithTSTInfoVersion2.p7s", "version is not 1"),
        ("TimeStampTokenWithoutCertificate.p7s", "not in the token"),
        ("TimeStampTokenWithoutSigningCertificate.p7s", "signingCertificateV2"),
    ],
)
def test_tspclient_bad_vectors(name: str, match: str) -> None:
    with pytest.raises(TimestampError, match=match):
        verify_token((TSP / name).read_bytes(), [globalsign()])


def test_tspclient_token_under_other_root(tsa: LocalTSA) -> None:
    with pytest.raises(TimestampError, match="does not chain"):
        verify_token((TSP / "TimeStampToken.p7s").read_bytes(), [tsa.root])


# --- attacks ---------------------------------------------------------------------------


def test_wrong_nonce_refused(tsa: LocalTSA) -> None:
    request = build_request(b"sig")
    other = build_request(b"sig", nonce=(request.nonce or 0) + 1)
    response = tsa.respond(other.der)
    with pytest.raises(TimestampError, match="nonce"):
        check_response(response, request, [tsa.root])


def test_imprint_of_other_bytes_refused(tsa: LocalTSA) -> None:
    request = build_request(b"sig")
    other = build_request(b"not the signature", nonce=request.nonce)
    with pytest.raises(TimestampError, match="messageImprint"):
        check_response(tsa.respond(other.der), request, [tsa.root])


def test_untrusted_tsa_refused(tsa: LocalTSA, tmp_path: Path) -> None:
    stranger = make_tsa()[0]
    request = build_request(b"sig")
    response = stranger.respond(request.der)
    with pytest.raises(TimestampError, match="does not chain"):
        check_response(response, request, [tsa.root])
    assert not rfc3161_ok(response, b"sig", tsa.root)  # the oracle agrees


def test_rejection_status_refused(tsa: LocalTSA) -> None:
    with pytest.raises(TimestampError, match="rejection"):
        check_response(rejection_response("no"), build_request(b"x"), [tsa.root])


def _resign(token: bytes, key: Signer, attrs: cms.CMSAttributes) -> bytes:
    info = cms.ContentInfo.load(token)
    signer_info = info["content"]["signer_infos"][0]
    signer_info["signed_attrs"] = attrs
    signer_info["signature"] = key.sign(attrs.dump())
    return info.dump(force=True)


def test_ess_v1_refused(tmp_path: Path) -> None:
    tsa, _ = make_tsa()
    token = tsa.timestamp(b"sig", hash_algorithm="sha256")
    info = cms.ContentInfo.load(token)["content"]["signer_infos"][0]
    leaf_der = tsa.chain[0].public_bytes(Encoding.DER)
    kept = [a for a in info["signed_attrs"] if a["type"].native != "signing_certificate_v2"]
    ess_v1 = cms.CMSAttribute(
        {
            "type": "signing_certificate",
            "values": [{"certs": [{"cert_hash": hashlib.sha1(leaf_der).digest()}]}],
        }
    )
    forged = _resign(token, tsa.signer, cms.CMSAttributes([*kept, ess_v1]))
    with pytest.raises(TimestampError, match="ESS v1"):
        verify_token(forged, [tsa.root])
    # openssl accepts ESS v1: the token is otherwise sound, only notation's rule refuses it
    resp = tsp.TimeStampResp(
        {"status": {"status": "granted"}, "time_stamp_token": cms.ContentInfo.load(forged)}
    ).dump()
    assert openssl_verify(tmp_path, b"sig", resp, tsa.root, token=False).returncode == 0


def test_unsorted_signed_attributes_refused() -> None:
    tsa, _ = make_tsa()
    token = tsa.timestamp(b"sig", hash_algorithm="sha256")
    info = cms.ContentInfo.load(token)
    signer_info = info["content"]["signer_infos"][0]
    attrs = list(signer_info["signed_attrs"])
    reordered = sorted(attrs, key=lambda a: a.dump(), reverse=True)
    body = b"".join(a.dump() for a in reordered)
    # signed over the unsorted bytes (what a careless TSA does): Go re-sorts and fails
    unsorted = b"\x31" + bytes([0x81, len(body)]) + body if len(body) < 256 else None
    assert unsorted is not None
    signer_info["signature"] = tsa.signer.sign(unsorted)
    with pytest.raises(TimestampError, match="does not verify"):
        verify_token(info.dump(force=True), [tsa.root])


def _leaf_with_eku(root_key: Signer, root: x509.Certificate, *, critical: bool, ekus: list):
    key = MemorySigner.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bad TSA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.subject)
        .public_key(key.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=5))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=critical)
    )
    cert = builder.sign(as_private_key(root_key), **signing_params(root_key))
    return key, cert


@pytest.mark.parametrize(
    ("critical", "ekus"),
    [
        (False, [ExtendedKeyUsageOID.TIME_STAMPING]),
        (True, [ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.CODE_SIGNING]),
    ],
)
def test_tsa_eku_must_be_critical_timestamping_only(
    tmp_path: Path, critical: bool, ekus: list
) -> None:
    good, root_key = make_tsa()
    key, cert = _leaf_with_eku(root_key, good.root, critical=critical, ekus=ekus)
    request = build_request(b"sig")
    response = build_response(request, signer=key, chain=[cert, good.root], now=NOW)
    with pytest.raises(TimestampError, match="extendedKeyUsage"):
        check_response(response, request, [good.root])
    # openssl refuses it as well
    assert openssl_verify(tmp_path, b"sig", response, good.root, token=False).returncode != 0
    with pytest.raises(TimestampError, match="TSA certificate"):
        LocalTSA(key, [cert, good.root])


def test_token_after_tsa_expiry_still_verifies_at_gentime() -> None:
    then = NOW - timedelta(days=4000)
    tsa, _ = make_tsa(now=then)
    request = build_request(b"sig")
    token = build_token(request, signer=tsa.signer, chain=tsa.chain, now=then + timedelta(days=1))
    info = verify_token(token, [tsa.root], data=b"sig")  # expired today, valid at genTime
    assert info.gen_time < NOW - timedelta(days=3000)


def test_gen_time_outside_tsa_validity_refused() -> None:
    tsa, _ = make_tsa()
    with pytest.raises(TimestampError, match="not valid now"):
        build_token(
            build_request(b"x"), signer=tsa.signer, chain=tsa.chain, now=NOW + timedelta(days=4000)
        )


# --- malformed input -------------------------------------------------------------------


def test_request_round_trip_and_limits() -> None:
    request = build_request(b"data", hash_algorithm="sha384", nonce=12345)
    parsed = parse_request(request.der)
    assert parsed == request
    assert parsed.digest == hashlib.sha384(b"data").digest()
    with pytest.raises(TimestampError, match="not sha256"):
        build_request(b"x", hash_algorithm="sha1")
    with pytest.raises(TimestampError, match="larger"):
        parse_request(b"\x30" * 20000)
    with pytest.raises(TimestampError, match="larger"):
        verify_token(b"\x30" * (MAX_TOKEN_SIZE + 1), [make_tsa()[0].root])


def test_garbage_and_truncated_der_are_typed_errors(tsa: LocalTSA) -> None:
    rng = random.Random(1234)
    request = build_request(b"sig")
    response = tsa.respond(request.der)
    token = check_response(response, request, [tsa.root]).token
    samples = [b"", b"\x00", b"\x30\x80", b"\x30\x84\xff\xff\xff\xff", b"\x06\x00" * 50]
    for blob in (request.der, response, token):
        samples += [blob[:n] for n in range(0, len(blob), max(1, len(blob) // 40))]
        for _ in range(60):
            mutated = bytearray(blob)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            samples.append(bytes(mutated))
    samples += [bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))) for _ in range(100)]
    for sample in samples:
        with contextlib.suppress(TimestampError):
            parse_request(sample)
        with contextlib.suppress(TimestampError):
            verify_token(sample, [tsa.root])
        with contextlib.suppress(TimestampError):
            check_response(sample, request, [tsa.root])
        with contextlib.suppress(TimestampError):
            tsa.respond(sample)
