"""HTTPTimestamper against local TSAs on 127.0.0.1, the JWS header, and POST /tsa."""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from starlette.testclient import TestClient

from holdca.errors import TimestampError
from holdca.net import AddressPolicy, HostPortRule
from holdca.notation import Descriptor, SigningScheme, sign_envelope
from holdca.notation.timestamp import MEDIA_TYPE_REPLY, build_request, verify_token
from holdca.notation.timestamp_http import HTTPTimestamper
from holdca.notation.timestamp_tsa import LocalTSA
from holdca.server.app import create_app
from tests.notation.helpers import CA
from tests.notation.test_timestamp import make_tsa

Handler = Callable[[bytes], tuple[int, str, bytes, float]]


@pytest.fixture
def tsa_server() -> Iterator[tuple[str, list[Handler], list[bytes]]]:
    """A TSA on 127.0.0.1: handlers[0](body) -> (status, content type, reply, delay)."""
    handlers: list[Handler] = []
    seen: list[bytes] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append(self.headers.get("Content-Type", "").encode() + b"|" + data)
            status, ctype, body, delay = handlers[0](data)
            time.sleep(delay)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/tsa", handlers, seen
    finally:
        server.shutdown()
        server.server_close()


def allow(url: str) -> AddressPolicy:
    port = int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    return AddressPolicy((HostPortRule("127.0.0.1", port),))


def answering(tsa: LocalTSA, delay: float = 0.0, ctype: str = MEDIA_TYPE_REPLY) -> Handler:
    return lambda body: (200, ctype, tsa.respond(body), delay)


def test_http_timestamper_posts_query_and_checks_reply(tsa_server) -> None:
    url, handlers, seen = tsa_server
    tsa, _ = make_tsa()
    handlers.append(answering(tsa))
    client = HTTPTimestamper(url, [tsa.root], policy=allow(url))
    token = client.timestamp(b"raw signature", hash_algorithm="sha256")
    assert verify_token(token, [tsa.root], data=b"raw signature")
    assert seen[0].startswith(b"application/timestamp-query|")


def test_http_timestamper_refuses_untrusted_tsa(tsa_server) -> None:
    url, handlers, _ = tsa_server
    tsa, _ = make_tsa()
    handlers.append(answering(make_tsa()[0]))
    client = HTTPTimestamper(url, [tsa.root], policy=allow(url))
    with pytest.raises(TimestampError, match="does not chain"):
        client.timestamp(b"sig", hash_algorithm="sha256")


def test_http_timestamper_refuses_other_content_type(tsa_server) -> None:
    url, handlers, _ = tsa_server
    tsa, _ = make_tsa()
    handlers.append(answering(tsa, ctype="application/timestamp-reply; charset=x"))
    client = HTTPTimestamper(url, [tsa.root], policy=allow(url))
    with pytest.raises(TimestampError, match="Content-Type"):
        client.timestamp(b"sig", hash_algorithm="sha256")


def test_http_timestamper_response_too_large(tsa_server) -> None:
    url, handlers, _ = tsa_server
    tsa, _ = make_tsa()
    handlers.append(lambda body: (200, MEDIA_TYPE_REPLY, b"\x30" * 5000, 0.0))
    client = HTTPTimestamper(url, [tsa.root], policy=allow(url), max_size=4096)
    with pytest.raises(TimestampError, match="larger than 4096"):
        client.timestamp(b"sig", hash_algorithm="sha256")


def test_http_timestamper_deadline(tsa_server) -> None:
    url, handlers, _ = tsa_server
    tsa, _ = make_tsa()
    handlers.append(answering(tsa, delay=3.0))
    client = HTTPTimestamper(url, [tsa.root], policy=allow(url), timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TimestampError, match="timed out"):
        client.timestamp(b"sig", hash_algorithm="sha256")
    assert time.monotonic() - started < 2.5


def test_internal_tsa_address_refused_without_connecting() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    tsa, _ = make_tsa()
    try:
        # by IP literal: refused at construction; by name: refused when resolved
        with pytest.raises(Exception, match="refused"):
            HTTPTimestamper(f"http://127.0.0.1:{port}/tsa", [tsa.root])
        client = HTTPTimestamper(f"http://localhost:{port}/tsa", [tsa.root])
        with pytest.raises(TimestampError, match="refused"):
            client.timestamp(b"sig", hash_algorithm="sha256")
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody connected
    finally:
        listener.close()


def _leaf_chain():
    ca = CA.create()
    return ca.leaf()


@pytest.mark.parametrize("scheme", [SigningScheme.X509, SigningScheme.SIGNING_AUTHORITY])
def test_sign_envelope_puts_token_over_raw_signature(scheme: SigningScheme) -> None:
    tsa, _ = make_tsa()
    key, chain = _leaf_chain()
    descriptor = Descriptor.for_content("application/vnd.oci.image.manifest.v1+json", b"{}")
    envelope = json.loads(
        sign_envelope(key, chain, descriptor, now=datetime.now(UTC), scheme=scheme, timestamper=tsa)
    )
    header = envelope["header"]
    if scheme is SigningScheme.SIGNING_AUTHORITY:
        assert "io.cncf.notary.timestampSignature" not in header
        return
    token = base64.b64decode(header["io.cncf.notary.timestampSignature"], validate=True)
    raw = base64.urlsafe_b64decode(envelope["signature"] + "==")
    assert len(raw) == 64  # r || s of ES256
    info = verify_token(token, [tsa.root], data=raw)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(raw)
    assert info.digest == digest.finalize()


def test_server_tsa_route() -> None:
    tsa, _ = make_tsa()

    class Hold:  # what create_app reads of a HoldCA for these routes
        timestamper = tsa
        transparency = None

    app = create_app(Hold(), insecure_no_auth=True)  # type: ignore[arg-type]
    with TestClient(app) as client:
        request = build_request(b"sig")
        reply = client.post("/tsa", content=request.der)
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/timestamp-reply"
        garbage = client.post("/tsa", content=b"\x30\x03\x02\x01")
        assert garbage.status_code == 400
        assert garbage.headers["content-type"] == "application/timestamp-reply"
        huge = client.post("/tsa", content=b"\x30" * 100_000)
        assert huge.status_code == 413
