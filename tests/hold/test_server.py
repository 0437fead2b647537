"""The reference server over real HTTP on 127.0.0.1 (uvicorn in a thread), notation as client."""

from __future__ import annotations

import base64
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from starlette.requests import Request

from holdca.demo import notation_verify
from holdca.errors import (
    AuthorizationError,
    CARError,
    HoldCAError,
    IssuancePolicyError,
    LedgerError,
    RateLimitError,
    RecordMismatchError,
    SignerError,
)
from holdca.hold import HoldCA, MemoryLedger
from holdca.keys import MemoryKeyStore
from holdca.notation.oci import OCILayout
from holdca.notation.trustpolicy import hold_trust_policy
from holdca.notation.truststore import write_trust_policy, write_trust_store
from holdca.server import create_app, error_for
from holdca.testing.atproto import TestRepo
from holdca.testing.oci import build_test_image
from tests.hold.conftest import HOLD_DID, SUBJECT
from tests.tools import require_notation


def authenticate(request: Request) -> str | None:
    token = request.headers.get("authorization")
    if token is None:
        return None
    if not token.startswith("Bearer "):
        raise AuthorizationError("malformed authorization header")
    return token.removeprefix("Bearer ")  # test-only: the token *is* the caller DID


class Served:
    def __init__(self, ca: HoldCA, base: str, client: httpx.Client) -> None:
        self.ca = ca
        self.base = base
        self.http = client


@pytest.fixture
def served() -> Iterator[Served]:
    yield from _serve(ocsp_enabled=True)


@pytest.fixture
def served_crl_only() -> Iterator[Served]:
    yield from _serve(ocsp_enabled=False)


def _serve(*, ocsp_enabled: bool) -> Iterator[Served]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    ca = HoldCA.open(
        MemoryKeyStore(),
        MemoryLedger(),
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=datetime.now(UTC),
        create=True,
        crl_url=f"{base}/ca.crl",
        ocsp_url=f"{base}/ocsp" if ocsp_enabled else None,
    )
    app = create_app(ca, authenticate=authenticate, max_body=64 * 1024)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started
    with httpx.Client(base_url=base, timeout=30) as client:
        yield Served(ca, base, client)
    server.should_exit = True
    thread.join(10)
    sock.close()


def _body(repo: TestRepo, uri: str, image: object) -> dict[str, object]:
    return {
        "userDid": repo.did,
        "recordUri": uri,
        "manifest": image.to_json(),  # type: ignore[attr-defined]
        "proof": base64.b64encode(repo.get_record_car(uri)).decode(),
        "didDocument": repo.did_document().decode(),
    }


def _setup(tmp_path: Path) -> tuple[TestRepo, OCILayout, object, str]:
    repo = TestRepo.create()
    layout = OCILayout.create(tmp_path / "layout")
    image = build_test_image(layout, tag="v1")
    uri = repo.put_manifest(image.digest)
    return repo, layout, image, uri


def test_cosign_over_http_and_notation_checks_revocation_here(
    served: Served, tmp_path: Path
) -> None:
    repo, layout, image, uri = _setup(tmp_path)
    r = served.http.post(
        "/xrpc/io.atcr.hold.coSignManifest",
        json=_body(repo, uri, image),
        headers={"Authorization": f"Bearer {repo.did}"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    envelope = base64.b64decode(body["envelope"])
    leaf = x509.load_pem_x509_certificate(body["certificate"].encode())
    assert served.ca.ledger.get(leaf.serial_number) is not None
    layout.attach_signature(image, envelope)  # type: ignore[arg-type]
    # the published CA and CRL
    ca_pem = served.http.get("/ca.crt").content
    root = x509.load_pem_x509_certificate(ca_pem)
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
    # notation fetches revocation status from this server
    notation = require_notation()
    config = tmp_path / "notation"
    write_trust_store(config, "hold", [root])
    write_trust_policy(config, hold_trust_policy(store="hold"))
    ok, out = notation_verify(notation, config, layout.path, image.digest)  # type: ignore[attr-defined]
    assert ok, out
    served.ca.revoke(serial=leaf.serial_number, reason="keyCompromise", now=datetime.now(UTC))
    ok, out = notation_verify(notation, config, layout.path, image.digest)  # type: ignore[attr-defined]
    assert not ok
    assert "revoked" in out


def test_resign_over_http(served: Served, tmp_path: Path) -> None:
    repo, _, image, uri = _setup(tmp_path)
    r = served.http.post(
        "/xrpc/io.atcr.hold.reSignManifest",
        json=_body(repo, uri, image),
        headers={"Authorization": f"Bearer {repo.did}"},
    )
    assert r.status_code == 200, r.text
    serial = int(r.json()["serial"], 16)
    row = served.ca.ledger.get(serial)
    assert row is not None
    assert row.kind == "resign"


def test_xrpc_errors(served: Served, tmp_path: Path) -> None:
    repo, _, image, uri = _setup(tmp_path)
    url = "/xrpc/io.atcr.hold.coSignManifest"
    auth = {"Authorization": f"Bearer {repo.did}"}
    cases = [
        (served.http.post(url, content=b"{not json", headers=auth), 400, "InvalidRequest"),
        (served.http.post(url, json={"userDid": repo.did}, headers=auth), 400, "InvalidRequest"),
        (served.http.post(url, json=_body(repo, uri, image)), 403, "Forbidden"),
        (
            served.http.post(
                url, json=_body(repo, uri, image), headers={"Authorization": "Basic xyz"}
            ),
            401,
            "AuthenticationRequired",
        ),
        (served.http.post(url, content=b"x" * (65 * 1024), headers=auth), 413, "PayloadTooLarge"),
    ]
    bad_proof = _body(repo, uri, image)
    bad_proof["proof"] = base64.b64encode(b"garbage").decode()
    cases.append((served.http.post(url, json=bad_proof, headers=auth), 400, "InvalidRequest"))
    for response, status, error in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"] == error
        assert response.json()["message"]
    assert served.ca.ledger.count() == 0
    garbage = served.http.get("/ocsp/!!notbase64")
    assert garbage.status_code == 200
    assert (
        ocsp.load_der_ocsp_response(garbage.content).response_status
        == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )


@pytest.mark.parametrize(
    ("error", "status", "name"),
    [
        (RateLimitError("rate limit: slow down"), 429, "RateLimitExceeded"),
        (IssuancePolicyError("method not allowed"), 403, "Forbidden"),
        (AuthorizationError("not you"), 403, "Forbidden"),
        (RecordMismatchError("wrong digest"), 400, "InvalidProof"),
        (CARError("bad car"), 400, "InvalidRequest"),
        (LedgerError("disk full /secret/path"), 503, "NotEnoughResources"),
        (SignerError("token gone"), 500, "InternalServerError"),
    ],
)
def test_error_mapping(error: HoldCAError, status: int, name: str) -> None:
    mapped = error_for(error)
    assert (mapped.status, mapped.error) == (status, name)
    if status >= 500:
        assert str(error) not in mapped.message  # internal details stay in the server log


def test_notation_fetches_the_crl_when_there_is_no_ocsp(
    served_crl_only: Served, tmp_path: Path
) -> None:
    notation = require_notation()
    served = served_crl_only
    repo, layout, image, uri = _setup(tmp_path)
    r = served.http.post(
        "/xrpc/io.atcr.hold.coSignManifest",
        json=_body(repo, uri, image),
        headers={"Authorization": f"Bearer {repo.did}"},
    )
    assert r.status_code == 200, r.text
    leaf = x509.load_pem_x509_certificate(r.json()["certificate"].encode())
    try:
        aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        methods = {d.access_method for d in aia}
    except x509.ExtensionNotFound:
        methods = set()
    assert x509.AuthorityInformationAccessOID.OCSP not in methods
    layout.attach_signature(image, base64.b64decode(r.json()["envelope"]))  # type: ignore[arg-type]
    config = tmp_path / "notation"
    write_trust_store(config, "hold", [served.ca.certificate])
    write_trust_policy(config, hold_trust_policy(store="hold"))
    ok, out = notation_verify(notation, config, layout.path, image.digest)  # type: ignore[attr-defined]
    assert ok, out
    served.ca.revoke(serial=leaf.serial_number, reason="superseded", now=datetime.now(UTC))
    ok, out = notation_verify(notation, config, layout.path, image.digest)  # type: ignore[attr-defined]
    assert not ok  # the leaf has no OCSP URL: the CRL served here is the only source
    assert "revoked" in out
