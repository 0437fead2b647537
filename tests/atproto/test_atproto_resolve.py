"""The HTTP adapter against a local server on 127.0.0.1 serving TestRepo documents and CARs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from holdca.atproto.resolve import HTTPResolver, did_document_url, verify_with_resolver
from holdca.errors import (
    DIDDocumentError,
    DIDSyntaxError,
    RecordAbsentError,
    ResolutionError,
    SignatureInvalidError,
)
from holdca.testing.atproto import TestRepo

V = Path(__file__).resolve().parents[1] / "vectors" / "atproto"

Route = Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


class Server:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits.append(self.path)
                route = server.routes.get(urlsplit(self.path).path)
                if route is None:
                    status, headers, body = 404, {}, b'{"error":"NotFound"}'
                else:
                    status, headers, body = route(self)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def static(self, path: str, body: bytes, status: int = 200) -> None:
        self.routes[path] = lambda _h: (status, {}, body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


def serve_repo(server: Server, repo: TestRepo) -> None:
    """Serve the repo's DID document (PLC path and did:web path) and its getRecord endpoint."""
    server.routes[f"/{repo.did}"] = lambda _h: (200, {}, repo.did_document())
    server.routes["/.well-known/did.json"] = lambda _h: (200, {}, repo.did_document())

    def get_record(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        q = {k: v[0] for k, v in parse_qs(urlsplit(handler.path).query).items()}
        assert q["did"] == repo.did
        uri = f"at://{q['did']}/{q['collection']}/{q['rkey']}"
        return 200, {"Content-Type": "application/vnd.ipld.car"}, repo.get_record_car(uri)

    server.routes["/xrpc/com.atproto.sync.getRecord"] = get_record


def test_did_document_urls() -> None:
    cases = json.loads((V / "generated" / "identity" / "did-resolution-cases.json").read_text())
    for case in cases:
        expect = case["expect"]
        if "url" in expect:
            allow = bool(expect.get("devOnly"))
            assert did_document_url(case["did"], allow_localhost=allow) == expect["url"]
        else:
            with pytest.raises(DIDSyntaxError):
                did_document_url(case["did"], allow_localhost=True)


@pytest.mark.parametrize("curve", ["k256", "p256"])
def test_plc_end_to_end(server: Server, curve: str) -> None:
    repo = TestRepo.create("plc", curve, pds_endpoint=server.url)  # type: ignore[arg-type]
    digest = "sha256:" + "12" * 32
    uri = repo.put_manifest(digest)
    serve_repo(server, repo)
    resolver = HTTPResolver(plc_url=server.url, allow_http_pds=True)
    verified = verify_with_resolver(resolver, uri, digest)
    assert verified.record_cid == repo.record_cid(uri)
    # absent records are proven absent through the same path
    missing = f"at://{repo.did}/io.atcr.manifest/{repo.next_tid()}"
    with pytest.raises(RecordAbsentError):
        verify_with_resolver(resolver, missing, digest)


def test_web_localhost_end_to_end(server: Server) -> None:
    repo = TestRepo.create(
        did=f"did:web:localhost%3A{server.port}", pds_endpoint=f"http://localhost:{server.port}"
    )
    digest = "sha256:" + "34" * 32
    uri = repo.put_manifest(digest)
    serve_repo(server, repo)
    resolver = HTTPResolver(allow_localhost=True, allow_http_pds=True)
    verified = verify_with_resolver(resolver, uri, digest, allow_localhost=True)
    assert verified.did == repo.did
    with pytest.raises(DIDSyntaxError):
        HTTPResolver().resolve_did(repo.did)  # localhost refused unless allowed


def test_key_rotation_refreshes_cached_document(server: Server) -> None:
    repo = TestRepo.create("plc", pds_endpoint=server.url)
    digest = "sha256:" + "56" * 32
    uri = repo.put_manifest(digest)
    serve_repo(server, repo)
    resolver = HTTPResolver(plc_url=server.url, allow_http_pds=True, cache_ttl=3600)
    verify_with_resolver(resolver, uri, digest)
    doc_fetches = sum(1 for h in server.hits if h == f"/{repo.did}")
    repo.rotate_key()  # new key; the PDS now serves commits signed by it
    verified = verify_with_resolver(resolver, uri, digest)
    assert verified.signing_key == repo.signing_key
    assert sum(1 for h in server.hits if h == f"/{repo.did}") == doc_fetches + 1
    # a proof signed by a key the (fresh) document does not hold is still rejected
    other = TestRepo.create("plc", did=repo.did)
    other.put_manifest(digest, rkey=uri.rsplit("/", 1)[1])
    with pytest.raises(SignatureInvalidError):
        verify_with_resolver(resolver, uri, digest, car_bytes=other.get_record_car(uri))


def test_cache_ttl(server: Server) -> None:
    repo = TestRepo.create("plc")
    serve_repo(server, repo)
    now = [1000.0]
    resolver = HTTPResolver(plc_url=server.url, cache_ttl=10, clock=lambda: now[0])
    first = resolver.resolve_did(repo.did)
    resolver.resolve_did(repo.did)
    assert server.hits.count(f"/{repo.did}") == 1
    now[0] += 11
    assert resolver.resolve_did(repo.did) == first
    assert server.hits.count(f"/{repo.did}") == 2


def test_slow_server_times_out(server: Server) -> None:
    def slow(_h: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        time.sleep(1.0)
        return 200, {}, b"{}"

    did = "did:plc:" + "a" * 24
    server.routes[f"/{did}"] = slow
    with pytest.raises(ResolutionError, match=r"failed|timeout|timed out"):
        HTTPResolver(plc_url=server.url, timeout=0.3).resolve_did(did)


def test_oversized_body_rejected(server: Server) -> None:
    did = "did:plc:" + "b" * 24
    server.static(f"/{did}", b" " * 200_000)
    with pytest.raises(ResolutionError, match="larger than"):
        HTTPResolver(plc_url=server.url).resolve_did(did)


def test_redirect_refused(server: Server) -> None:
    did = "did:plc:" + "c" * 24
    server.routes[f"/{did}"] = lambda _h: (302, {"Location": f"{server.url}/elsewhere"}, b"")
    server.static("/elsewhere", b"{}")
    with pytest.raises(ResolutionError, match="302"):
        HTTPResolver(plc_url=server.url).resolve_did(did)
    assert "/elsewhere" not in server.hits


def test_http_errors(server: Server) -> None:
    did = "did:plc:" + "d" * 24
    with pytest.raises(ResolutionError, match="404"):
        HTTPResolver(plc_url=server.url).resolve_did(did)
    server.static(
        "/xrpc/com.atproto.sync.getRecord", b'{"error":"RecordNotFound","message":"x"}', 400
    )
    with pytest.raises(ResolutionError, match="RecordNotFound"):
        HTTPResolver(allow_http_pds=True).get_record_car(server.url, did, "io.atcr.manifest", "x")
    with pytest.raises(ResolutionError, match="https"):
        HTTPResolver().get_record_car(server.url, did, "io.atcr.manifest", "x")
    with pytest.raises(ResolutionError, match="failed"):
        HTTPResolver(plc_url="http://127.0.0.1:1").resolve_did(did)


def test_missing_pds_endpoint(server: Server) -> None:
    repo = TestRepo.create("plc")
    doc = json.loads(repo.did_document())
    doc["service"] = []
    server.static(f"/{repo.did}", json.dumps(doc).encode())
    uri = repo.put_manifest("sha256:" + "78" * 32)
    with pytest.raises(DIDDocumentError, match="atproto_pds"):
        verify_with_resolver(HTTPResolver(plc_url=server.url), uri, "sha256:" + "78" * 32)
