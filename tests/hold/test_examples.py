"""The examples run (the embedding one end to end; the server one imports and parses)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from starlette.requests import Request

from holdca.errors import AuthenticationError
from holdca.hold import MemoryLedger, ServiceAuth
from holdca.testing.atproto import TestRepo
from holdca.testing.network import TestNetwork

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_embed_cosign_runs(capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(EXAMPLES / "embed_cosign.py"))
    assert module["main"]() == 0
    assert "signed sha256:" in capsys.readouterr().out


def test_reference_server_authenticator() -> None:
    module = runpy.run_path(str(EXAMPLES / "reference_server.py"))
    repo = TestRepo.create()
    network = TestNetwork([repo])
    service_auth = ServiceAuth(network, MemoryLedger(), audience="did:web:hold.example.com")
    auth = module["token_authenticator"]({"did:web:a.example.com": "s3cret"}, service_auth)

    def request(header: str | None) -> Request:
        headers = [] if header is None else [(b"authorization", header.encode())]
        path = "/xrpc/io.atcr.hold.coSignManifest"
        return Request({"type": "http", "headers": headers, "path": path, "query_string": b""})

    assert auth(request("Bearer s3cret")) == "did:web:a.example.com"
    token = repo.service_token("did:web:hold.example.com", "io.atcr.hold.coSignManifest")
    assert auth(request(f"Bearer {token}")) == repo.did  # service auth behind the hook
    with pytest.raises(AuthenticationError, match="missing"):
        auth(request(None))
    with pytest.raises(AuthenticationError):
        auth(request("Bearer wrong"))
    static_only = module["token_authenticator"]({"did:web:a.example.com": "s3cret"})
    with pytest.raises(AuthenticationError):
        static_only(request(f"Bearer {token}"))
