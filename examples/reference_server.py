"""Run the reference XRPC server for a hold configured by HOLD_* variables.

    pip install 'holdca[server]'
    export HOLD_DID=did:web:hold.example.com HOLD_SUBJECT_C=US HOLD_SUBJECT_ST=CA \
           HOLD_SUBJECT_O="Example Hold" HOLD_CA_CERT_PATH=/var/lib/hold/ca.crt \
           HOLD_CA_KEY_PATH=/var/lib/hold/keys \
           HOLD_CRL_ENABLED=true HOLD_CRL_URL=http://hold.example.com/ca.crl \
           HOLD_OCSP_ENABLED=true HOLD_OCSP_URL=http://hold.example.com/ocsp
    python examples/reference_server.py --port 8080

The authentication hook below accepts a shared bearer token per DID from a JSON file; a
real hold verifies an ATProto service-auth JWT (or DPoP) instead and returns the DID it
proves. Whatever it returns, HoldCA's authorizer then checks the caller may act for the
requested DID (by default: only for itself).
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from starlette.requests import Request

from holdca.errors import AuthorizationError
from holdca.hold import AuditLog, HoldConfig, open_hold
from holdca.server import create_app


def token_authenticator(tokens: dict[str, str]) -> Callable[[Request], str | None]:
    """``Authorization: Bearer <token>`` -> the DID the token belongs to."""

    def authenticate(request: Request) -> str | None:
        header = request.headers.get("authorization")
        if header is None:
            return None  # anonymous: the default authorizer refuses it
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            raise AuthorizationError("use Authorization: Bearer <token>")
        for did, expected in tokens.items():
            if hmac.compare_digest(token.encode(), expected.encode()):
                return did
        raise AuthorizationError("unknown token")

    return authenticate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--tokens", type=Path, help="JSON file {did: token}")
    args = parser.parse_args()
    tokens = json.loads(args.tokens.read_text()) if args.tokens else {}
    config = HoldConfig.from_env()
    ca = open_hold(
        config,
        now=datetime.now(UTC),
        create=os.environ.get("HOLD_CA_AUTO_INIT") == "true",
        audit=AuditLog(),
    )
    app = create_app(ca, authenticate=token_authenticator(tokens))
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
