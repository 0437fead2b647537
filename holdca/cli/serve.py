"""Running things: ``serve`` (the reference XRPC server) and ``demo``."""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast and the
# optional extras (server, pkcs11) are only needed by the commands that use them.
# ruff: noqa: PLC0415
import argparse
import sys
from pathlib import Path

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
    limits = ServerLimits(max_connections=args.max_connections, header_timeout=args.header_timeout)
    app = create_app(
        ca,
        insecure_no_auth=insecure,
        max_body=args.max_body,
        body_timeout=args.body_timeout,
        metrics=metrics,
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
    p.add_argument("--max-body", type=int, default=256 * 1024, help="request body limit (bytes)")
    p.add_argument("--max-connections", type=int, default=512, help="beyond it: 503")
    p.add_argument(
        "--header-timeout", type=float, default=10.0, help="seconds to send a request head"
    )
    p.add_argument("--body-timeout", type=float, default=10.0, help="seconds to send a body")
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="do NOT authenticate callers (tests and closed networks only; warns on start "
        "and tags every audit event)",
    )

    p = add("demo", _cmd_demo, "run the end-to-end demo in a temporary directory")
    p.add_argument("--keep", metavar="DIR", help="keep the demo files in DIR")
    p.add_argument("--no-notation", action="store_true", help="skip notation verify")
