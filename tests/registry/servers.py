"""Real registries on 127.0.0.1 for the registry tests, and a local token server.

* :func:`distribution` runs the reference registry (distribution v3.0.0, ``registry``
  binary from ``scripts/test.sh``) with a temporary config: filesystem storage in a temp
  directory, deletes enabled, optional htpasswd (bcrypt) or token auth.
* :func:`referrers_registry` runs go-containerregistry's registry with its referrers API
  (``scripts/referrers-registry``).
* :class:`TokenServer` issues ES256 JWTs (``x5c`` header, a self-signed certificate the
  registry trusts through ``rootcertbundle``) after checking Basic credentials: the
  docker token protocol a real registry's ``auth: token`` speaks.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import os
import secrets
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from holdca.notation.envelope import Descriptor
from holdca.notation.oci import MEDIA_TYPE_OCI_MANIFEST, OCILayout
from holdca.registry import RegistryClient
from holdca.testing.oci import build_test_image
from tests.tools import missing


def go_binary(name: str, env: str) -> str:
    """``$env`` or GOPATH/bin/``name``; skip (fail in CI) when absent."""
    candidates = [os.environ.get(env, "")]
    try:
        gopath = subprocess.run(
            ["go", "env", "GOPATH"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        candidates.append(str(Path(gopath) / "bin" / name))
    except (OSError, subprocess.SubprocessError):
        pass
    candidates.append(str(Path.home() / "go" / "bin" / name))
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    missing(f"the {name} executable (scripts/test.sh installs it)")
    raise AssertionError("unreachable")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise AssertionError(f"registry exited: {log.read_text()[-2000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"registry did not start: {log.read_text()[-2000:]}")


@dataclass
class Registry:
    """A running registry: its ``host:port`` and process."""

    host: str
    process: subprocess.Popen[bytes]

    def client(self, **options: object) -> RegistryClient:
        return RegistryClient(self.host, insecure=True, **options)  # type: ignore[arg-type]


@contextmanager
def _running(argv: list[str], port: int, tmp: Path) -> Iterator[Registry]:
    log = tmp / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(f"http://127.0.0.1:{port}/v2/", process, log)
        yield Registry(f"127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def distribution(tmp: Path, *, auth: str = "") -> Iterator[Registry]:
    """distribution v3.0.0 on 127.0.0.1 (``auth``: a YAML ``auth:`` block or nothing)."""
    binary = go_binary("registry", "HOLDCA_REGISTRY")
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth
    )
    with _running([binary, "serve", str(config)], port, tmp) as registry:
        yield registry


@contextmanager
def referrers_registry(tmp: Path) -> Iterator[Registry]:
    """go-containerregistry's registry with the referrers API, on 127.0.0.1."""
    binary = go_binary("referrers-registry", "HOLDCA_REFERRERS_REGISTRY")
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    with _running([binary, "-addr", f"127.0.0.1:{port}"], port, tmp) as registry:
        yield registry


def htpasswd_block(tmp: Path, user: str, password: str) -> str:
    """An ``auth: htpasswd`` block with a bcrypt entry for ``user``."""
    path = tmp / "htpasswd"
    tmp.mkdir(parents=True, exist_ok=True)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{user}:{hashed}\n")
    return f"auth:\n  htpasswd:\n    realm: holdca-test\n    path: {path}\n"


def push_image(client: RegistryClient, repository: str, tmp: Path, content: bytes) -> Descriptor:
    """Build a one-layer image in a layout and push its blobs and manifest (by tag v1)."""
    layout = OCILayout.create(tmp / f"layout-{secrets.token_hex(4)}")
    image = build_test_image(layout, tag="v1", content=content)
    manifest = layout.read_manifest(image)
    for blob in [manifest["config"], *manifest["layers"]]:
        client.push_blob(repository, layout.get_blob(blob["digest"]))
    raw = layout.get_blob(image.digest)
    client.put_manifest(repository, "v1", raw, MEDIA_TYPE_OCI_MANIFEST)
    return Descriptor(image.media_type, image.digest, image.size)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """A docker token endpoint on 127.0.0.1 (GET /token?service=&scope=, Basic auth)."""

    user: str
    password: str
    service: str = "holdca-test-registry"
    issuer: str = "holdca-test-token-issuer"
    requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "holdca test token issuer")])
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def token(self, scope: str) -> str:
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        header = {"alg": "ES256", "typ": "JWT", "x5c": [base64.b64encode(der).decode()]}
        access = []
        if scope:
            parts = scope.split(":")
            kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": self.user,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(
            self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    @contextmanager
    def serving(self, tmp: Path) -> Iterator[str]:
        """Serve; yields the registry ``auth: token`` YAML block pointing here."""
        server_self = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                expected = (
                    "Basic "
                    + base64.b64encode(
                        f"{server_self.user}:{server_self.password}".encode()
                    ).decode()
                )
                server_self.requests.append(query)
                if self.headers.get("Authorization") != expected:
                    body, status = b'{"details":"bad credentials"}', 401
                else:
                    token = server_self.token(query.get("scope", ""))
                    body, status = json.dumps({"token": token}).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        bundle = tmp / "token-root.pem"
        tmp.mkdir(parents=True, exist_ok=True)
        bundle.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        try:
            yield (
                "auth:\n  token:\n"
                f"    realm: http://127.0.0.1:{server.server_port}/token\n"
                f"    service: {self.service}\n    issuer: {self.issuer}\n"
                f"    rootcertbundle: {bundle}\n"
            )
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
