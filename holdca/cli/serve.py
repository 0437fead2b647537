"""Running things: ``serve`` (the reference XRPC server) and ``demo``."""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast and the
# optional extras (server, pkcs11) are only needed by the commands that use them.
# ruff: noqa: PLC0415
import argparse
import sys
from pathlib import Path
from typing import Any

from holdca.cli import common as c
from holdca.errors import ConfigError

__all__ = ["register"]


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from holdca.server import ServerLimits, create_app, serve
    except ImportError:
        raise ConfigError(
            "holdca serve needs the server extra: pip install 'holdca[server]'"
        ) from None
    from holdca.hold.alerts import alerts_from_config
    from holdca.hold.policy import AllowAllAuthorizer, SameDIDAuthorizer
    from holdca.hold.setup import audit_from_config, resolver_from_config
    from holdca.server.metrics import instrument

    config = c.config(args)
    insecure = bool(args.insecure_no_auth)
    audit = audit_from_config(config, tags={"insecure_no_auth": True} if insecure else None)
    ca = c.open_ca(
        args,
        resolver=resolver_from_config(config),
        audit=audit,
        authorizer=AllowAllAuthorizer() if insecure else SameDIDAuthorizer(),
    )
    metrics = instrument(ca)  # before create_app: service auth uses the timed resolver
    alerts_from_config(config, ca.ledger, audit)
    # only what the operator gave: the rest are the server's own defaults
    limits = ServerLimits(**_given(args, "max_connections", "header_timeout"))
    app = create_app(
        ca, insecure_no_auth=insecure, metrics=metrics, **_given(args, "max_body", "body_timeout")
    )
    if insecure:
        print(
            "WARNING: --insecure-no-auth: callers are NOT authenticated; anyone who can reach "
            "this port can get certificates for any DID whose record they can point at",
            file=sys.stderr,
        )
    print(
        f"serving hold CA {ca.hold_did} on http://{args.host}:{args.port} "
        f"({'no caller authentication' if insecure else 'ATProto service auth'}; "
        f"PLC {config.plc_url})",
        file=sys.stderr,
    )
    serve(app, host=args.host, port=args.port, limits=limits)
    return 0


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options among ``names`` given on the command line."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _cmd_demo(args: argparse.Namespace) -> int:
    from holdca.demo import run_demo

    workdir = Path(args.keep) if args.keep else None
    return run_demo(sys.stdout, notation=not args.no_notation, workdir=workdir)


def register(
    add: c.Adder, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:
    """Add this module's commands to the parser (``add`` makes one subcommand)."""
    p = add("serve", _cmd_serve, "run the reference XRPC server (needs holdca[server])")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-body", type=int, help="request body limit (bytes; default 256 KiB)")
    p.add_argument("--max-connections", type=int, help="beyond it: 503 (default 512)")
    p.add_argument("--header-timeout", type=float, help="seconds to send a request head (10)")
    p.add_argument("--body-timeout", type=float, help="seconds to send a body (default 10)")
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="do NOT authenticate callers (tests and closed networks only; warns on start "
        "and tags every audit event)",
    )

    p = add("demo", _cmd_demo, "run the end-to-end demo in a temporary directory")
    p.add_argument("--keep", metavar="DIR", help="keep the demo files in DIR")
    p.add_argument("--no-notation", action="store_true", help="skip notation verify")
