"""The examples run (the embedding one end to end; the server one imports and parses)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from starlette.requests import Request

from holdca.errors import AuthorizationError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_embed_cosign_runs(capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(EXAMPLES / "embed_cosign.py"))
    assert module["main"]() == 0
    assert "signed sha256:" in capsys.readouterr().out


def test_reference_server_authenticator() -> None:
    module = runpy.run_path(str(EXAMPLES / "reference_server.py"))
    auth = module["token_authenticator"]({"did:web:a.example.com": "s3cret"})

    def request(header: str | None) -> Request:
        headers = [] if header is None else [(b"authorization", header.encode())]
        return Request({"type": "http", "headers": headers})

    assert auth(request("Bearer s3cret")) == "did:web:a.example.com"
    assert auth(request(None)) is None
    with pytest.raises(AuthorizationError):
        auth(request("Bearer wrong"))
