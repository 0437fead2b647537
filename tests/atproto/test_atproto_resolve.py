"""The HTTP resolver against local servers on 127.0.0.1: a PLC directory serving signed
audit logs (holdca.testing.plc), did:web hosts and PDS endpoints serving TestRepo proofs.

Every address the tests reach is allowed explicitly (``127.0.0.1:<port>``), as an operator
would with HOLD_NETWORK_ALLOW; without that rule the same fetches are refused.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from holdca.atproto.resolve import HTTPResolver, did_document_url
from holdca.atproto.verify import verify_record_proof
from holdca.errors import (
    AddressRefusedError,
    DIDDeactivatedError,
    DIDDocumentError,
    DIDSyntaxError,
    MalformedInputError,
    PLCLogError,
    RecordAbsentError,
    ResolutionError,
)
from holdca.net import AddressPolicy
from holdca.testing.atproto import TestRepo
from holdca.testing.plc import TestPLC, plc_repo

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

    def resolver(self, **kwargs: Any) -> HTTPResolver:
        """A resolver allowed to reach this server (and nothing else internal)."""
        policy = AddressPolicy.parse(f"127.0.0.1:{self.port}, localhost:{self.port}")
        kwargs.setdefault("plc_url", self.url)
        return HTTPResolver(policy=policy, **kwargs)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


def serve_pds(server: Server, repo: TestRepo) -> None:
    """Serve getRecord and getLatestCommit of ``repo``."""

    def get_record(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        q = {k: v[0] for k, v in parse_qs(urlsplit(handler.path).query).items()}
        assert q["did"] == repo.did
        uri = f"at://{q['did']}/{q['collection']}/{q['rkey']}"
        return 200, {"Content-Type": "application/vnd.ipld.car"}, repo.get_record_car(uri)

    def latest(_h: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, json.dumps({"cid": str(repo.commit_cid), "rev": repo.rev}).encode()

    server.routes["/xrpc/com.atproto.sync.getRecord"] = get_record
    server.routes["/xrpc/com.atproto.sync.getLatestCommit"] = latest


def serve_plc(server: Server, plc: TestPLC) -> None:
    server.routes[f"/{plc.did}/log/audit"] = lambda _h: (200, {}, plc.audit_log())


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
    # the W3C path form (atproto accounts never use it; the issuance policy refuses it)
    assert (
        did_document_url("did:web:example.com:user:alice")
        == "https://example.com/user/alice/did.json"
    )
    with pytest.raises(DIDSyntaxError):
        did_document_url("did:web:example.com:..:x")


@pytest.mark.parametrize("curve", ["k256", "p256"])
def test_plc_end_to_end(server: Server, curve: str) -> None:
    repo, plc = plc_repo(pds_endpoint=server.url, curve=curve)  # type: ignore[arg-type]
    digest = "sha256:" + "12" * 32
    uri = repo.put_manifest(digest)
    serve_plc(server, plc)
    serve_pds(server, repo)
    resolver = server.resolver()
    identity = resolver.resolve(repo.did)
    assert identity.source == "plc"
    assert identity.signing_key.did_key == repo.signing_key
    assert identity.pds_endpoint == server.url
    assert f"/{repo.did}/log/audit" in server.hits  # the log, not the rendered document
    car = resolver.get_record(identity, "io.atcr.manifest", uri.rsplit("/", 1)[1])
    verified = verify_record_proof(car, identity.document, uri, digest)
    assert verified.record_cid == repo.record_cid(uri)
    latest = resolver.get_latest_commit(identity)
    assert (latest.cid, latest.rev) == (str(repo.commit_cid), repo.rev)
    # absent records are proven absent through the same path
    missing = resolver.get_record(identity, "io.atcr.manifest", repo.next_tid())
    with pytest.raises(RecordAbsentError):
        verify_record_proof(missing, identity.document, uri.rsplit("/", 1)[0] + "/x", digest)


def test_a_lying_directory_is_caught(server: Server) -> None:
    """A compromised directory that swaps the atproto key (or serves another DID's log)."""
    _repo, plc = plc_repo(pds_endpoint=server.url)
    attacker = TestRepo.create()
    forged = copy.deepcopy(plc.entries)
    forged[-1]["operation"]["verificationMethods"]["atproto"] = attacker.signing_key
    server.static(f"/{plc.did}/log/audit", json.dumps(forged).encode())
    with pytest.raises(PLCLogError):
        server.resolver().resolve(plc.did)
    _, other = plc_repo(pds_endpoint=server.url)
    server.static(f"/{plc.did}/log/audit", other.audit_log())
    with pytest.raises(PLCLogError):
        server.resolver().resolve(plc.did)
    # an update signed by a key that is not a rotation key of the DID
    rogue = TestPLC.register(attacker.signing_key, pds_endpoint=server.url)
    rogue.did, rogue.entries = plc.did, copy.deepcopy(plc.entries)
    rogue.update(atproto_key=attacker.signing_key)
    server.static(f"/{plc.did}/log/audit", rogue.audit_log())
    with pytest.raises(PLCLogError):
        server.resolver().resolve(plc.did)


def test_tombstoned_and_unknown_dids(server: Server) -> None:
    repo, plc = plc_repo(pds_endpoint=server.url)
    serve_plc(server, plc)
    resolver = server.resolver(cache_ttl=0)
    assert resolver.resolve(repo.did).did == repo.did
    plc.tombstone()
    with pytest.raises(DIDDeactivatedError):
        resolver.resolve(repo.did)
    with pytest.raises(ResolutionError, match="not registered"):
        resolver.resolve("did:plc:" + "a" * 24)


def test_key_rotation_is_seen_on_a_fresh_resolve(server: Server) -> None:
    repo, plc = plc_repo(pds_endpoint=server.url)
    serve_plc(server, plc)
    resolver = server.resolver(cache_ttl=3600)
    old = resolver.resolve(repo.did)
    repo.rotate_key()
    plc.update(atproto_key=repo.signing_key)
    assert resolver.resolve(repo.did) == old  # cached
    fresh = resolver.resolve(repo.did, fresh=True)
    assert fresh.signing_key.did_key == repo.signing_key != old.signing_key.did_key
    assert resolver.resolve(repo.did) == fresh  # the fresh answer replaced the cached one


def test_cache_ttl(server: Server) -> None:
    repo, plc = plc_repo(pds_endpoint=server.url)
    serve_plc(server, plc)
    now = [1000.0]
    resolver = server.resolver(cache_ttl=10, clock=lambda: now[0])
    first = resolver.resolve(repo.did)
    resolver.resolve(repo.did)
    assert server.hits.count(f"/{repo.did}/log/audit") == 1
    now[0] += 11
    assert resolver.resolve(repo.did) == first
    assert server.hits.count(f"/{repo.did}/log/audit") == 2


def test_web_localhost_end_to_end(server: Server) -> None:
    repo = TestRepo.create(
        did=f"did:web:localhost%3A{server.port}", pds_endpoint=f"http://localhost:{server.port}"
    )
    digest = "sha256:" + "34" * 32
    uri = repo.put_manifest(digest)
    server.routes["/.well-known/did.json"] = lambda _h: (200, {}, repo.did_document())
    serve_pds(server, repo)
    resolver = server.resolver(allow_localhost=True)
    identity = resolver.resolve(repo.did)
    assert identity.source == "web"
    car = resolver.get_record(identity, "io.atcr.manifest", uri.rsplit("/", 1)[1])
    verify_record_proof(car, identity.document, uri, digest, allow_localhost=True)
    with pytest.raises(DIDSyntaxError):
        server.resolver().resolve(repo.did)  # localhost did:web refused unless allowed
    server.static("/.well-known/did.json", b"", 404)
    with pytest.raises(DIDDeactivatedError, match="gone"):
        server.resolver(allow_localhost=True).resolve(repo.did)


def test_loopback_is_refused_without_an_allow_rule(server: Server) -> None:
    repo, plc = plc_repo(pds_endpoint=server.url)
    serve_plc(server, plc)
    with pytest.raises(AddressRefusedError):
        HTTPResolver(plc_url=server.url).resolve(repo.did)
    identity = server.resolver().resolve(repo.did)
    with pytest.raises(AddressRefusedError):
        HTTPResolver(plc_url=server.url).get_record(identity, "io.atcr.manifest", "x")
    assert [h for h in server.hits if "xrpc" in h] == []


def test_the_pds_endpoint_is_reduced_to_its_origin(server: Server) -> None:
    repo, plc = plc_repo(pds_endpoint=f"{server.url}/internal/admin?x=1#")
    serve_plc(server, plc)
    serve_pds(server, repo)
    resolver = server.resolver()
    identity = resolver.resolve(repo.did)
    uri = repo.put_manifest("sha256:" + "ab" * 32)
    resolver.get_record(identity, "io.atcr.manifest", uri.rsplit("/", 1)[1])
    assert next(h for h in server.hits if "xrpc" in h).startswith(
        "/xrpc/com.atproto.sync.getRecord?"
    )
    assert not any("internal" in h for h in server.hits)


def test_slow_drip_is_cut_at_the_deadline(server: Server) -> None:
    def drip(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(100):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.1)
        return 200, {}, b""

    did = "did:plc:" + "a" * 24
    server.routes[f"/{did}/log/audit"] = drip
    started = time.monotonic()
    with pytest.raises(ResolutionError):
        server.resolver(timeout=1.0).resolve(did)
    assert time.monotonic() - started < 2.0


def test_oversized_and_redirected_answers(server: Server) -> None:
    did = "did:plc:" + "b" * 24
    server.static(f"/{did}/log/audit", b" " * (2 * 1024 * 1024))
    with pytest.raises(ResolutionError, match=r"limit|larger|bytes"):
        server.resolver().resolve(did)
    server.routes[f"/{did}/log/audit"] = lambda _h: (302, {"Location": f"{server.url}/x"}, b"")
    server.static("/x", b"[]")
    with pytest.raises(ResolutionError, match=r"302|redirect"):
        server.resolver().resolve(did)
    assert "/x" not in server.hits


def test_pds_errors(server: Server) -> None:
    repo, plc = plc_repo(pds_endpoint=server.url)
    serve_plc(server, plc)
    resolver = server.resolver()
    identity = resolver.resolve(repo.did)
    path = "/xrpc/com.atproto.sync.getRecord"
    server.static(path, b'{"error":"RecordNotFound","message":"x"}', 400)
    with pytest.raises(RecordAbsentError):
        resolver.get_record(identity, "io.atcr.manifest", "x")
    server.static(path, b'{"error":"RepoTakendown","message":"x"}', 400)
    with pytest.raises(DIDDeactivatedError):
        resolver.get_record(identity, "io.atcr.manifest", "x")
    server.static(path, b"oops", 500)
    with pytest.raises(ResolutionError, match="500"):
        resolver.get_record(identity, "io.atcr.manifest", "x")
    server.static("/xrpc/com.atproto.sync.getLatestCommit", b'{"cid": 1}')
    with pytest.raises(MalformedInputError, match="cid"):
        resolver.get_latest_commit(identity)
    twice = b'{"cid": "bafyreia", "rev": "3l2", "rev": "3l3"}'  # which rev? neither
    server.static("/xrpc/com.atproto.sync.getLatestCommit", twice)
    with pytest.raises(MalformedInputError, match="duplicate"):
        resolver.get_latest_commit(identity)


def test_missing_pds_endpoint(server: Server) -> None:
    repo = TestRepo.create(did=f"did:web:localhost%3A{server.port}")
    doc = json.loads(repo.did_document())
    doc["service"] = []
    server.static("/.well-known/did.json", json.dumps(doc).encode())
    identity = server.resolver(allow_localhost=True).resolve(repo.did)
    with pytest.raises(DIDDocumentError, match="atproto_pds"):
        server.resolver().get_record(identity, "io.atcr.manifest", "x")
