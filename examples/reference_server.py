"""Run the reference XRPC server for a hold configured by HOLD_* variables.

    pip install -e '.[server]'      # in a checkout of the holdca repository
    export HOLD_DID=did:web:hold.example.com HOLD_SUBJECT_C=US HOLD_SUBJECT_ST=CA \
           HOLD_SUBJECT_O="Example Hold" HOLD_CA_CERT_PATH=/var/lib/hold/ca.crt \
           HOLD_CA_KEY_PATH=/var/lib/hold/keys \
           HOLD_CRL_ENABLED=true HOLD_CRL_URL=http://hold.example.com/ca.crl \
           HOLD_OCSP_ENABLED=true HOLD_OCSP_URL=http://hold.example.com/ocsp \
           HOLD_AUDIT_LOG=/var/log/hold/audit.jsonl
    python examples/reference_server.py --port 8080 [--tokens internal-tokens.json]

Callers authenticate with ATProto service auth (a JWT their PDS mints), verified by
holdca's ServiceAuth against the DID the hold resolves itself. The hook below shows how
an embedder adds a scheme of its own in front of it: here, static bearer tokens for
internal services (an AppView, a CI system), each mapped to the DID it may act for.
Whatever the hook returns, HoldCA's authorizer then checks the caller may act for the
requested DID (by default: only for itself). ``holdca serve`` runs the same app with
service auth only.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from starlette.requests import Request

from holdca.errors import AuthenticationError
from holdca.hold import HoldConfig, ServiceAuth, open_hold
from holdca.hold.setup import audit_from_config, resolver_from_config
from holdca.server import ServerLimits, create_app, serve


def token_authenticator(
    tokens: dict[str, str], service_auth: ServiceAuth | None = None
) -> Callable[[Request], str]:
    """``Authorization: Bearer <token>``: a static token -> its DID; else service auth."""

    def authenticate(request: Request) -> str:
        header = request.headers.get("authorization")
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() == "bearer":
            for did, expected in tokens.items():
                if hmac.compare_digest(token.encode(), expected.encode()):
                    return did
        if service_auth is None:
            raise AuthenticationError("unknown or missing token", error="BadJwt")
        nsid = request.url.path.rsplit("/", 1)[-1]  # the XRPC method, the JWT's lxm
        return service_auth.authenticate(header, lxm=nsid, now=datetime.now(UTC))

    return authenticate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--tokens", type=Path, help="JSON file {did: token} for internal callers")
    args = parser.parse_args()
    tokens = json.loads(args.tokens.read_text()) if args.tokens else {}
    config = HoldConfig.from_env()
    resolver = resolver_from_config(config)
    ca = open_hold(
        config,
        now=datetime.now(UTC),
        create=os.environ.get("HOLD_CA_AUTO_INIT") == "true",
        audit=audit_from_config(config),
        resolver=resolver,
    )
    service_auth = ServiceAuth(resolver, ca.ledger, audience=ca.hold_did)
    app = create_app(ca, authenticate=token_authenticator(tokens, service_auth))
    serve(app, host=args.host, port=args.port, limits=ServerLimits())


if __name__ == "__main__":
    main()
