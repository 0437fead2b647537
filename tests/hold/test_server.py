"""The reference server over real HTTP on 127.0.0.1 (uvicorn in a thread), notation as client."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from holdca.demo import notation_verify
from holdca.errors import (
    AddressRefusedError,
    AuthenticationError,
    AuthorizationError,
    CARError,
    DeniedDIDError,
    HoldCAError,
    IssuancePolicyError,
    LedgerError,
    RateLimitError,
    RecordMismatchError,
    ResolutionError,
    SignerError,
)
from holdca.hold import AllowAllAuthorizer
from holdca.notation.trustpolicy import hold_trust_policy
from holdca.notation.truststore import write_trust_policy, write_trust_store
from holdca.server import RESIGN_NSID, error_for
from holdca.testing.atproto import TestRepo
from tests.hold.conftest import HOLD_DID
from tests.hold.served import Served, auth, body, hint, serve_hold, user
from tests.tools import require_notation

URL = "/xrpc/io.atcr.hold.coSignManifest"


@pytest.fixture
def served() -> Iterator[Served]:
    with serve_hold() as s:
        yield s


@pytest.fixture
def served_crl_only() -> Iterator[Served]:
    with serve_hold(ocsp=False) as s:
        yield s


@pytest.fixture
def served_no_auth() -> Iterator[Served]:
    with serve_hold(
        app_options={"insecure_no_auth": True},
        ca_options={"authorizer": AllowAllAuthorizer()},
    ) as s:
        yield s


def test_cosign_over_http_and_notation_checks_revocation_here(
    served: Served, tmp_path: Path
) -> None:
    repo, layout, image, uri = user(served, tmp_path)
    r = served.http.post(URL, json=body(repo, uri, image), headers=auth(repo))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["proofSource"] == "live"  # the hold fetched the proof itself
    assert answer["repository"] == "example/app"
    envelope = base64.b64decode(answer["envelope"])
    leaf = x509.load_pem_x509_certificate(answer["certificate"].encode())
    assert served.ca.ledger.get(leaf.serial_number) is not None
    layout.attach_signature(image, envelope)
    # the published CA and CRL
    root = x509.load_pem_x509_certificate(served.http.get("/ca.crt").content)
    assert root == served.ca.certificate
    crl = x509.load_der_x509_crl(served.http.get("/ca.crl").content)
    assert crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
    # OCSP by POST and by GET (percent-encoded base64, as notation sends it)
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, root, hashes.SHA1()).build()
    der = req.public_bytes(serialization.Encoding.DER)
    post = served.http.post(
        "/ocsp", content=der, headers={"Content-Type": "application/ocsp-request"}
    )
    assert ocsp.load_der_ocsp_response(post.content).certificate_status == ocsp.OCSPCertStatus.GOOD
    encoded = urllib.parse.quote(base64.b64encode(der).decode(), safe="")
    get = served.http.get(f"/ocsp/{encoded}")
    assert ocsp.load_der_ocsp_response(get.content).certificate_status == ocsp.OCSPCertStatus.GOOD
    # notation fetches revocation status from this server, and sees the signed repository
    notation = require_notation()
    config = tmp_path / "notation"
    write_trust_store(config, "hold", [root])
    write_trust_policy(config, hold_trust_policy(store="hold"))
    ok, out = notation_verify(notation, config, layout.path, image.digest)
    assert ok, out
    assert _notation_with_metadata(notation, config, layout.path, image.digest, "example/app")
    assert not _notation_with_metadata(notation, config, layout.path, image.digest, "eve/app")
    served.ca.revoke(serial=leaf.serial_number, reason="keyCompromise", now=datetime.now(UTC))
    ok, out = notation_verify(notation, config, layout.path, image.digest)
    assert not ok
    assert "revoked" in out


def _notation_with_metadata(
    notation: str, config: Path, layout: Path, digest: str, repository: str
) -> bool:
    """``notation verify -m io.atcr.repository=<repository>`` (user metadata must match)."""
    with tempfile.TemporaryDirectory() as cache:
        proc = subprocess.run(
            [
                notation,
                "verify",
                "--oci-layout",
                f"{layout}@{digest}",
                "--scope",
                "local/holdca-demo",
                "-m",
                f"io.atcr.repository={repository}",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env={
                "NOTATION_CONFIG": str(config),
                "NOTATION_CACHE": cache,
                "NOTATION_EXPERIMENTAL": "1",
                "HOME": cache,
            },
        )
    return proc.returncode == 0


def test_resign_over_http(served: Served, tmp_path: Path) -> None:
    repo, _, image, uri = user(served, tmp_path)
    r = served.http.post(
        f"/xrpc/{RESIGN_NSID}", json=body(repo, uri, image), headers=auth(repo, RESIGN_NSID)
    )
    assert r.status_code == 200, r.text
    row = served.ca.ledger.get(int(r.json()["serial"], 16))
    assert row is not None
    assert row.kind == "resign"
    assert row.record_uri == uri


def test_a_current_hint_saves_the_fetch_and_a_stale_one_is_replaced(
    served: Served, tmp_path: Path
) -> None:
    repo, _, image, uri = user(served, tmp_path)
    old_hint = hint(repo, uri)
    served.net.calls.clear()
    r = served.http.post(URL, json=body(repo, uri, image, proof=old_hint), headers=auth(repo))
    assert r.status_code == 200, r.text
    assert r.json()["proofSource"] == "hint"
    assert ("get_record", repo.did) not in served.net.calls
    repo.put_manifest("sha256:" + "77" * 32, hold_did=HOLD_DID)  # a newer commit
    r = served.http.post(URL, json=body(repo, uri, image, proof=old_hint), headers=auth(repo))
    assert r.status_code == 200, r.text
    assert r.json()["proofSource"] == "live"
    assert r.json()["rev"] == repo.rev


def test_the_forged_document_attack_fails_over_http(
    served_no_auth: Served, served: Served, tmp_path: Path
) -> None:
    """An attacker's DID document and self-signed repo for someone else's DID get nothing.

    Even on a server that authenticates nobody: the key comes from resolution, never from
    the body, so the forged proof does not verify against the victim's key.
    """
    for s in (served_no_auth, served):
        victim, _, image, _ = user(s, tmp_path / s.base[-5:])
        attacker = TestRepo.create(did=victim.did)  # the victim's DID, the attacker's key
        forged_uri = attacker.put_manifest(image.digest, hold_did=HOLD_DID)
        forged = body(
            victim,
            forged_uri,
            image,
            proof=hint(attacker, forged_uri),
            didDocument=json.loads(attacker.did_document()),
        )
        headers = {} if s is served_no_auth else auth(attacker)  # iss=victim, attacker's key
        r = s.http.post(URL, json=forged, headers=headers)
        expected = (400, "InvalidProof") if s is served_no_auth else (401, "BadJwtSignature")
        assert (r.status_code, r.json()["error"]) == expected, r.text
        # without a hint the hold fetches the victim's repo, where the record does not exist
        del forged["proof"]
        r = s.http.post(URL, json=forged, headers=headers)
        assert r.status_code in (400, 401), r.text
        assert s.ca.ledger.count() == 0


def test_xrpc_errors(served: Served, tmp_path: Path) -> None:
    repo, _, image, uri = user(served, tmp_path)

    def post(**kwargs: object) -> tuple[int, str]:
        headers = kwargs.pop("headers", None)
        response = served.http.post(
            URL,
            headers=auth(repo) if headers is None else headers,  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )
        answer = response.json()
        assert answer["message"]
        return response.status_code, answer["error"]

    assert post(content=b"{not json") == (400, "InvalidRequest")
    assert post(json={"userDid": repo.did}) == (400, "InvalidRequest")
    assert post(json=body(repo, uri, image), headers={}) == (401, "MissingJwt")
    assert post(json=body(repo, uri, image), headers={"Authorization": "Basic xyz"}) == (
        401,
        "BadJwt",
    )
    assert post(content=b"x" * (300 * 1024)) == (413, "PayloadTooLarge")
    assert post(json=body(repo, uri, image, proof="!!")) == (400, "InvalidRequest")
    garbage = base64.b64encode(b"garbage").decode()
    assert post(json=body(repo, uri, image, proof=garbage)) == (400, "InvalidRequest")
    other = body(repo, uri, image, manifestDigest="sha256:" + "00" * 32)
    assert post(json=other) == (400, "InvalidRequest")
    assert served.ca.ledger.count() == 0
    nested = b"[" * 120_000 + b"]" * 120_000
    assert post(content=nested) == (400, "InvalidRequest")
    for method, path, status, error in (
        ("GET", "/nothing", 404, "NotFound"),
        ("GET", URL, 405, "MethodNotAllowed"),
    ):
        response = served.http.request(method, path)
        assert (response.status_code, response.json()["error"]) == (status, error)
    garbage_ocsp = served.http.get("/ocsp/!!notbase64")
    assert garbage_ocsp.status_code == 200
    assert (
        ocsp.load_der_ocsp_response(garbage_ocsp.content).response_status
        == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )


def test_manifest_digest_alias(served: Served, tmp_path: Path) -> None:
    repo, _, image, uri = user(served, tmp_path)
    seed_style = {
        "userDid": repo.did,
        "recordUri": uri,
        "manifestDigest": image.digest,
        "manifest": {"mediaType": image.media_type, "size": image.size},
    }
    r = served.http.post(URL, json=seed_style, headers=auth(repo))
    assert r.status_code == 200, r.text


def test_the_deny_list_reaches_the_server(served: Served, tmp_path: Path) -> None:
    repo, _, image, uri = user(served, tmp_path)
    first = served.http.post(URL, json=body(repo, uri, image), headers=auth(repo))
    assert first.status_code == 200
    served.ca.revoke(
        serial=int(first.json()["serial"], 16), reason="keyCompromise", now=datetime.now(UTC)
    )
    again = served.http.post(URL, json=body(repo, uri, image), headers=auth(repo))
    assert (again.status_code, again.json()["error"]) == (403, "Forbidden")
    assert "deny list" in again.json()["message"]
    served.ca.allow(repo.did, now=datetime.now(UTC))
    assert served.http.post(URL, json=body(repo, uri, image), headers=auth(repo)).status_code == 200


def test_refusals_and_issuances_reach_the_audit_log(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo, _, image, uri = user(served, tmp_path)
    with caplog.at_level(logging.INFO, logger="holdca.audit"):
        assert served.http.post(URL, json=body(repo, uri, image), headers=auth(repo)).is_success
        served.http.post(URL, json=body(repo, uri, image), headers={})
        served.http.post(URL, content=b"[" * 100, headers=auth(repo))
        long_did = "did:plc:" + "a" * 3_000_000
        served.http.post(URL, json=body(repo, uri, image, userDid=long_did), headers=auth(repo))
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "holdca.audit"]
    kinds = [(e["event"], e.get("operation"), e.get("error")) for e in events]
    assert ("issued", None, None) in kinds
    assert ("refused", "authenticate", "AuthenticationError") in kinds
    assert sum(1 for k in kinds if k[0] == "refused") == 3
    assert max(len(r.getMessage()) for r in caplog.records) < 4000  # bounded fields


@pytest.mark.parametrize(
    ("error", "status", "name"),
    [
        (RateLimitError("rate limit: slow down"), 429, "RateLimitExceeded"),
        (IssuancePolicyError("method not allowed"), 403, "Forbidden"),
        (DeniedDIDError("denied"), 403, "Forbidden"),
        (AuthorizationError("not you"), 403, "Forbidden"),
        (AuthenticationError("expired", error="JwtExpired"), 401, "JwtExpired"),
        (RecordMismatchError("wrong digest"), 400, "InvalidProof"),
        (CARError("bad car"), 400, "InvalidRequest"),
        (AddressRefusedError("internal address"), 400, "InvalidRequest"),
        (ResolutionError("PDS timed out"), 502, "UpstreamFailure"),
        (LedgerError("disk full /secret/path"), 503, "NotEnoughResources"),
        (SignerError("token gone"), 500, "InternalServerError"),
    ],
)
def test_error_mapping(error: HoldCAError, status: int, name: str) -> None:
    mapped = error_for(error)
    assert (mapped.status, mapped.error) == (status, name)
    if status >= 500 and status != 502:
        assert str(error) not in mapped.message  # internal details stay in the server log


def test_notation_fetches_the_crl_when_there_is_no_ocsp(
    served_crl_only: Served, tmp_path: Path
) -> None:
    notation = require_notation()
    served = served_crl_only
    repo, layout, image, uri = user(served, tmp_path)
    r = served.http.post(URL, json=body(repo, uri, image), headers=auth(repo))
    assert r.status_code == 200, r.text
    leaf = x509.load_pem_x509_certificate(r.json()["certificate"].encode())
    try:
        aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        methods = {d.access_method for d in aia}
    except x509.ExtensionNotFound:
        methods = set()
    assert x509.AuthorityInformationAccessOID.OCSP not in methods
    layout.attach_signature(image, base64.b64decode(r.json()["envelope"]))
    config = tmp_path / "notation"
    write_trust_store(config, "hold", [served.ca.certificate])
    write_trust_policy(config, hold_trust_policy(store="hold"))
    ok, out = notation_verify(notation, config, layout.path, image.digest)
    assert ok, out
    served.ca.revoke(serial=leaf.serial_number, reason="superseded", now=datetime.now(UTC))
    ok, out = notation_verify(notation, config, layout.path, image.digest)
    assert not ok  # the leaf has no OCSP URL: the CRL served here is the only source
    assert "revoked" in out
