"""OCSP: openssl ocsp checks the responses; request parsing forms; error responses; cache."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from hypothesis import given, settings
from hypothesis import strategies as st

from holdca.errors import OCSPRequestError, SignerError
from holdca.keys import MemorySigner, Signer
from holdca.pki import (
    MAX_OCSP_RESPONSE_BYTES,
    CertStatus,
    OCSPResponseCache,
    decode_ocsp_get,
    issue_ocsp_responder,
    parse_ocsp_get,
    parse_ocsp_request,
    respond_ocsp,
    respond_ocsp_get,
)
from tests.pki.helpers import CA, SUBJECT, make_leaf, make_root, openssl, pem

SHA1 = hashes.SHA1()
REVOKED_AT = datetime(2026, 1, 2, 3, 4, 5).astimezone()


class World:
    """A root, a delegated responder and three leaves: good, revoked, unknown."""

    def __init__(self, root: CA, now: datetime) -> None:
        self.root = root
        self.now = now
        self.responder_signer = MemorySigner.generate()
        self.responder = issue_ocsp_responder(
            root.signer, root.cert, self.responder_signer.public_key, subject=SUBJECT, now=now
        )
        self.good = make_leaf(root, now, ocsp_url="http://hold.example.com/ocsp")
        self.revoked = make_leaf(root, now, ocsp_url="http://hold.example.com/ocsp")
        self.unknown = make_leaf(root, now, ocsp_url="http://hold.example.com/ocsp")

    def status_of(self, serial: int) -> CertStatus:
        if serial == self.good.serial_number:
            return CertStatus.good()
        if serial == self.revoked.serial_number:
            return CertStatus.revoked(REVOKED_AT, x509.ReasonFlags.key_compromise)
        return CertStatus.unknown()

    def respond(self, der: bytes, *, delegated: bool = False, **kw: object) -> bytes:
        return respond_ocsp(
            der,
            status_of=self.status_of,
            issuer_cert=self.root.cert,
            signer=self.responder_signer if delegated else self.root.signer,
            responder_cert=self.responder if delegated else None,
            now=self.now,
            **kw,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def world(root: CA, now: datetime) -> World:
    return World(root, now)


def request(
    *certs: x509.Certificate,
    issuer: x509.Certificate,
    algorithm: hashes.HashAlgorithm = SHA1,
    nonce: bytes | None = None,
) -> bytes:
    """A DER OCSP request (cryptography's builder for one certificate, asn1crypto for more)."""
    if len(certs) == 1:
        builder = ocsp.OCSPRequestBuilder().add_certificate(certs[0], issuer, algorithm)
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        return builder.build().public_bytes(Encoding.DER)
    one = [
        ocsp.load_der_ocsp_request(request(c, issuer=issuer, algorithm=algorithm)) for c in certs
    ]
    tbs: dict[str, object] = {
        "request_list": [
            {
                "req_cert": {
                    "hash_algorithm": {"algorithm": algorithm.name},
                    "issuer_name_hash": r.issuer_name_hash,
                    "issuer_key_hash": r.issuer_key_hash,
                    "serial_number": r.serial_number,
                }
            }
            for r in one
        ]
    }
    if nonce is not None:
        tbs["request_extensions"] = [{"extn_id": "nonce", "critical": False, "extn_value": nonce}]
    return asn1_ocsp.OCSPRequest({"tbs_request": tbs}).dump()


def openssl_request(
    tmp_path: Path, world: World, *certs: str, extra: tuple[str, ...] = ()
) -> bytes:
    files = {"good": world.good, "revoked": world.revoked, "unknown": world.unknown}
    args: list[str | Path] = [
        "ocsp",
        "-issuer",
        pem(tmp_path / "root.pem", world.root.cert),
        *extra,
    ]
    for name in certs:
        args += ["-cert", pem(tmp_path / f"{name}.pem", files[name])]
    args += ["-reqout", tmp_path / "req.der"]
    openssl(*args, check=True)
    return (tmp_path / "req.der").read_bytes()


def openssl_check(
    tmp_path: Path,
    world: World,
    response: bytes,
    *certs: str,
    trust: tuple[str | Path, ...] | None = None,
) -> str:
    (tmp_path / "resp.der").write_bytes(response)
    args: list[str | Path] = [
        "ocsp",
        "-respin",
        tmp_path / "resp.der",
        "-no_nonce",
        "-issuer",
        pem(tmp_path / "root.pem", world.root.cert),
    ]
    args += list(trust) if trust is not None else ["-CAfile", tmp_path / "root.pem"]
    for name in certs:
        args += ["-cert", tmp_path / f"{name}.pem"]
    out = openssl(*args)
    return out.stdout + out.stderr


@pytest.mark.parametrize("delegated", [False, True], ids=["ca-signed", "delegated"])
@pytest.mark.parametrize("which", ["good", "revoked", "unknown"])
def test_openssl_accepts_single_responses(
    tmp_path: Path, world: World, delegated: bool, which: str
) -> None:
    der = world.respond(
        openssl_request(tmp_path, world, which, extra=("-no_nonce",)), delegated=delegated
    )
    text = openssl_check(tmp_path, world, der, which)
    assert "Response verify OK" in text, text
    assert re.search(rf"{which}\.pem: {which}\n", text), text
    assert "Next Update:" in text
    if which == "revoked":
        assert "Reason: keyCompromise" in text
        assert "Revocation Time: Jan  2 " in text


def test_openssl_trusts_the_responder_via_vafile(tmp_path: Path, world: World) -> None:
    der = world.respond(
        openssl_request(tmp_path, world, "revoked", extra=("-no_nonce",)), delegated=True
    )
    vafile = pem(tmp_path / "va.pem", world.responder)
    text = openssl_check(tmp_path, world, der, "revoked", trust=("-VAfile", vafile))
    assert "Response verify OK" in text
    assert "revoked.pem: revoked" in text


def test_openssl_rejects_a_response_signed_by_a_stranger(
    tmp_path: Path, world: World, now: datetime
) -> None:
    other = make_root(now)
    der = respond_ocsp(
        openssl_request(tmp_path, world, "good", extra=("-no_nonce",)),
        status_of=world.status_of,
        issuer_cert=world.root.cert,
        signer=other.signer,
        now=now,
    )
    text = openssl_check(tmp_path, world, der, "good")
    assert "Response verify OK" not in text  # the oracle can say no


@pytest.mark.parametrize("nonce", [True, False], ids=["nonce", "no-nonce"])
def test_openssl_multi_certificate_request(tmp_path: Path, world: World, nonce: bool) -> None:
    extra = () if nonce else ("-no_nonce",)
    for delegated in (False, True):
        req = openssl_request(tmp_path, world, "good", "revoked", "unknown", extra=extra)
        assert (parse_ocsp_request(req).nonce is not None) == nonce
        der = world.respond(req, delegated=delegated)
        text = openssl_check(tmp_path, world, der, "good", "revoked", "unknown")
        assert "Response verify OK" in text, text
        for which in ("good", "revoked", "unknown"):
            assert f"{which}.pem: {which}\n" in text, text
        if nonce:  # openssl checks the echoed nonce against the request
            out = openssl(
                "ocsp",
                "-reqin",
                tmp_path / "req.der",
                "-respin",
                tmp_path / "resp.der",
                "-CAfile",
                tmp_path / "root.pem",
                "-verify_other",
                tmp_path / "root.pem",
            )
            assert "Response verify OK" in out.stdout + out.stderr, out.stdout + out.stderr


def test_openssl_checks_the_echoed_nonce(tmp_path: Path, world: World) -> None:
    req = openssl_request(tmp_path, world, "good")  # openssl adds a nonce by default
    assert parse_ocsp_request(req).nonce
    (tmp_path / "resp.der").write_bytes(world.respond(req))
    out = openssl(
        "ocsp",
        "-reqin",
        tmp_path / "req.der",
        "-respin",
        tmp_path / "resp.der",
        "-CAfile",
        tmp_path / "root.pem",
        "-verify_other",
        tmp_path / "root.pem",
    )
    assert "Response verify OK" in out.stdout + out.stderr
    assert "Nonce Verify error" not in out.stdout + out.stderr
    other = openssl_request(tmp_path, world, "good")  # a fresh nonce
    assert parse_ocsp_request(other).nonce != parse_ocsp_request(req).nonce
    out = openssl(
        "ocsp",
        "-reqin",
        tmp_path / "req.der",
        "-respin",
        tmp_path / "resp.der",
        "-CAfile",
        tmp_path / "root.pem",
        "-verify_other",
        tmp_path / "root.pem",
    )
    assert "Nonce Verify error" in out.stdout + out.stderr


def test_openssl_sha256_cert_id(tmp_path: Path, world: World) -> None:
    req = openssl_request(tmp_path, world, "revoked", extra=("-no_nonce", "-sha256"))
    assert parse_ocsp_request(req).cert_ids[0].hash_algorithm == "sha256"
    (tmp_path / "resp.der").write_bytes(world.respond(req))
    out = openssl(
        "ocsp",
        "-respin",
        tmp_path / "resp.der",
        "-no_nonce",
        "-sha256",
        "-issuer",
        tmp_path / "root.pem",
        "-cert",
        tmp_path / "revoked.pem",
        "-CAfile",
        tmp_path / "root.pem",
    )
    assert "revoked.pem: revoked" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize(
    "algorithm", [hashes.SHA1(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512()]
)
def test_cryptography_reads_the_response(world: World, algorithm: hashes.HashAlgorithm) -> None:
    nonce = b"\x01" * 16
    der = world.respond(
        request(world.revoked, issuer=world.root.cert, algorithm=algorithm, nonce=nonce)
    )
    resp = ocsp.load_der_ocsp_response(der)
    assert resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_time_utc == REVOKED_AT
    assert resp.revocation_reason is x509.ReasonFlags.key_compromise
    assert resp.serial_number == world.revoked.serial_number
    assert resp.hash_algorithm.name == algorithm.name
    assert resp.this_update_utc == world.now
    assert resp.next_update_utc == world.now + timedelta(hours=24)
    assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    key = world.root.cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(resp.signature_hash_algorithm))


def test_validity_sets_next_update(world: World) -> None:
    der = world.respond(request(world.good, issuer=world.root.cert), validity=timedelta(minutes=30))
    assert ocsp.load_der_ocsp_response(der).next_update_utc == world.now + timedelta(minutes=30)


def test_large_multi_request_stays_under_notations_limit(
    world: World, root: CA, now: datetime
) -> None:
    leaves = [make_leaf(root, now) for _ in range(32)]
    der = world.respond(request(*leaves, issuer=root.cert, nonce=b"n" * 32), delegated=True)
    assert ocsp.load_der_ocsp_response(der).response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert len(der) < MAX_OCSP_RESPONSE_BYTES
    too_many = request(*leaves, make_leaf(root, now), issuer=root.cert)
    assert status(world.respond(too_many)) is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def status(der: bytes) -> ocsp.OCSPResponseStatus:
    return ocsp.load_der_ocsp_response(der).response_status


def test_unauthorized_for_another_issuer(world: World, now: datetime) -> None:
    other = make_root(now)
    der = world.respond(request(make_leaf(other, now), issuer=other.cert))
    assert status(der) is ocsp.OCSPResponseStatus.UNAUTHORIZED
    mixed = request(world.good, make_leaf(other, now), issuer=world.root.cert)
    assert status(world.respond(mixed)) is ocsp.OCSPResponseStatus.SUCCESSFUL  # same issuer hashes
    forged = bytearray(request(world.good, issuer=world.root.cert))
    idx = forged.find(parse_ocsp_request(bytes(forged)).cert_ids[0].issuer_key_hash)
    forged[idx] ^= 1
    assert status(world.respond(bytes(forged))) is ocsp.OCSPResponseStatus.UNAUTHORIZED


@pytest.mark.parametrize(
    "body",
    [b"", b"\x30", b"garbage", b"\x30\x03\x02\x01\x01", None],
    ids=["empty", "truncated-header", "garbage", "wrong-structure", "trailing"],
)
def test_malformed_requests(tmp_path: Path, world: World, body: bytes | None) -> None:
    if body is None:
        body = request(world.good, issuer=world.root.cert) + b"\x00"
    der = world.respond(body)
    assert status(der) is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    (tmp_path / "err.der").write_bytes(der)
    out = openssl("ocsp", "-respin", tmp_path / "err.der", "-resp_text", "-noverify")
    assert "Responder Error: malformedrequest (1)" in out.stdout


def test_truncated_request_is_malformed(world: World) -> None:
    req = request(world.good, issuer=world.root.cert)
    for cut in range(1, len(req)):
        assert status(world.respond(req[:cut])) is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_oversized_nonce_is_malformed(world: World) -> None:
    req = request(world.good, issuer=world.root.cert, nonce=b"x" * 33)
    assert status(world.respond(req)) is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    with pytest.raises(OCSPRequestError, match="nonce"):
        parse_ocsp_request(req)


def test_unsupported_hash_is_malformed(world: World) -> None:
    req = request(world.good, issuer=world.root.cert, algorithm=hashes.SHA224())
    assert status(world.respond(req)) is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def failing(exc: Exception) -> Callable[[int], CertStatus]:
    def status_of(serial: int) -> CertStatus:
        raise exc

    return status_of


class BrokenSigner:
    def __init__(self, signer: Signer) -> None:
        self.algorithm = signer.algorithm
        self.public_key = signer.public_key

    def sign(self, data: bytes) -> bytes:
        raise SignerError("token unplugged")


@pytest.mark.parametrize(
    "case", ["status-raises", "status-wrong-type", "signer-fails", "naive-now", "bad-validity"]
)
def test_internal_errors_never_escape(world: World, case: str) -> None:
    req = request(world.good, issuer=world.root.cert)
    kwargs: dict[str, object] = {
        "status_of": world.status_of,
        "issuer_cert": world.root.cert,
        "signer": world.root.signer,
        "now": world.now,
    }
    if case == "status-raises":
        kwargs["status_of"] = failing(RuntimeError("database down"))
    elif case == "status-wrong-type":
        kwargs["status_of"] = lambda serial: "good"
    elif case == "signer-fails":
        kwargs["signer"] = BrokenSigner(world.root.signer)
    elif case == "naive-now":
        kwargs["now"] = world.now.replace(tzinfo=None)
    else:
        kwargs["validity"] = timedelta(0)
    der = respond_ocsp(req, **kwargs)  # type: ignore[arg-type]
    assert status(der) is ocsp.OCSPResponseStatus.INTERNAL_ERROR


def b64_with_all_specials(world: World, root: CA, now: datetime) -> tuple[bytes, str]:
    """A request whose base64 has '+', '/' and '=' padding."""
    for _ in range(500):
        der = request(make_leaf(root, now), issuer=root.cert)
        text = base64.b64encode(der).decode()
        if "+" in text and "/" in text and text.endswith("="):
            return der, text
    raise AssertionError("no such request found")


def test_get_forms(world: World, root: CA, now: datetime) -> None:
    der, text = b64_with_all_specials(world, root, now)
    forms = [
        text,
        "/" + text,
        quote(text, safe=""),  # Go's url.QueryEscape-like: %2B %2F %3D
        quote(text, safe="").lower().replace("%2b", "%2b"),
        quote(text, safe="").replace("%2B", "%2b").replace("%2F", "%2f").replace("%3D", "%3d"),
        text.rstrip("="),
        quote(text.rstrip("="), safe=""),
        text.replace("+", " "),  # '+' decoded to a space by a form decoder
        text.replace("+", "-").replace("/", "_"),  # URL-safe alphabet
    ]
    expected = parse_ocsp_request(der)
    for form in forms[:3] + forms[4:]:
        assert decode_ocsp_get(form) == der, form
        assert parse_ocsp_get(form) == expected
    resp = respond_ocsp_get(
        quote(text, safe=""),
        status_of=world.status_of,
        issuer_cert=root.cert,
        signer=root.signer,
        now=now,
    )
    assert ocsp.load_der_ocsp_response(resp).serial_number == expected.serial_numbers[0]


@pytest.mark.parametrize(
    "path", ["!!!!", "a", "%ZZ", "%C3%28", "\u00e9abc", "QUJD\x00", "A" * 70000]
)
def test_bad_get_forms(world: World, path: str) -> None:
    with pytest.raises(OCSPRequestError):
        parse_ocsp_get(path)
    der = respond_ocsp_get(
        path,
        status_of=world.status_of,
        issuer_cert=world.root.cert,
        signer=world.root.signer,
        now=world.now,
    )
    assert status(der) is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_notation_style_get_request(world: World) -> None:
    # notation: x/crypto ocsp.CreateRequest (SHA-1, no nonce), url.QueryEscape(base64(req)).
    der = request(world.good, issuer=world.root.cert)
    path = quote(base64.b64encode(der).decode(), safe="")
    resp = ocsp.load_der_ocsp_response(
        respond_ocsp_get(
            path,
            status_of=world.status_of,
            issuer_cert=world.root.cert,
            signer=world.root.signer,
            now=world.now,
        )
    )
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert resp.next_update_utc is not None


@settings(max_examples=200)
@given(body=st.binary(max_size=300))
def test_respond_never_raises_on_random_bytes(world: World, body: bytes) -> None:
    der = world.respond(body)
    assert status(der) in (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
        ocsp.OCSPResponseStatus.UNAUTHORIZED,
    )


@settings(max_examples=100)
@given(data=st.data())
def test_respond_never_raises_on_mutated_requests(world: World, data: st.DataObject) -> None:
    req = bytearray(request(world.good, world.revoked, issuer=world.root.cert, nonce=b"abcdefgh"))
    for _ in range(data.draw(st.integers(1, 4))):
        req[data.draw(st.integers(0, len(req) - 1))] = data.draw(st.integers(0, 255))
    der = world.respond(bytes(req))
    ocsp.load_der_ocsp_response(der)  # always a parseable OCSP response


def test_cache_serves_presigned_good_responses(world: World) -> None:
    cache = OCSPResponseCache(refresh_before=timedelta(hours=1))
    req = request(world.good, issuer=world.root.cert)
    calls: list[int] = []

    def status_of(serial: int) -> CertStatus:
        calls.append(serial)
        return world.status_of(serial)

    def respond(der: bytes, now: datetime) -> bytes:
        return respond_ocsp(
            der,
            status_of=status_of,
            issuer_cert=world.root.cert,
            signer=world.root.signer,
            now=now,
            cache=cache,
        )

    first = respond(req, world.now)
    assert respond(req, world.now + timedelta(hours=22)) == first  # cached, byte-identical
    assert len(calls) == 1
    assert cache.hits == 1
    refreshed = respond(req, world.now + timedelta(hours=23))  # past the refresh point
    assert refreshed != first
    assert len(calls) == 2
    assert ocsp.load_der_ocsp_response(refreshed).this_update_utc == world.now + timedelta(hours=23)
    # A nonce bypasses the cache.
    respond(
        request(world.good, issuer=world.root.cert, nonce=b"12345678"),
        world.now + timedelta(hours=23),
    )
    assert len(calls) == 3
    # Revoked answers are never cached.
    rreq = request(world.revoked, issuer=world.root.cert)
    respond(rreq, world.now)
    respond(rreq, world.now)
    assert calls.count(world.revoked.serial_number) == 2
    # Revoking invalidates.
    assert len(cache) == 1
    cache.invalidate(world.good.serial_number)
    assert len(cache) == 0
    cache.put(
        (1, "sha1", b""), b"x", world.now, world.now + timedelta(minutes=30)
    )  # too short to keep
    assert len(cache) == 0


def test_cache_evicts_least_recently_used(world: World) -> None:
    cache = OCSPResponseCache(max_entries=2, refresh_before=timedelta(0))
    t, n = world.now, world.now + timedelta(hours=1)
    for serial in (1, 2, 3):
        cache.put((serial, "sha1", b"k"), bytes([serial]), t, n)
    assert len(cache) == 2
    assert cache.get((1, "sha1", b"k"), t) is None
    assert cache.get((3, "sha1", b"k"), t) == b"\x03"
    assert cache.get((3, "sha1", b"k"), t - timedelta(seconds=1)) is None  # before thisUpdate
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError, match="max_entries"):
        OCSPResponseCache(max_entries=0)


def test_cert_status_validation() -> None:
    with pytest.raises(ValueError, match="revoked_at"):
        CertStatus("revoked")
    with pytest.raises(ValueError, match="revoked_at"):
        CertStatus("good", REVOKED_AT)
    with pytest.raises(ValueError, match="reason"):
        CertStatus("unknown", reason=x509.ReasonFlags.superseded)
    with pytest.raises(ValueError, match="unknown certificate status"):
        CertStatus("bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        CertStatus.revoked(REVOKED_AT.replace(tzinfo=None))
    assert CertStatus.good().kind == "good"
    assert CertStatus.unknown().kind == "unknown"
