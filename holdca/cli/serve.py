"""Running things: ``serve`` (the reference XRPC server) and ``demo``.

``holdca serve`` checks ``--port`` (1 to 65535: a usage error otherwise) and binds it
before it announces itself: a port already in use, or a host that does not resolve, is a
configuration error (exit 2) naming the address. Its audit trail goes to
``HOLD_AUDIT_LOG`` (stderr when unset), as documented for the server.
"""

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

# what the server uses when an option is not given (holdca.server's own defaults; kept
# here so that `holdca serve --help` does not import the server; a test compares them)
DEFAULT_MAX_BODY_KIB = 256
DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_HEADER_TIMEOUT = 10
DEFAULT_BODY_TIMEOUT = 10


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from holdca.server import ServerLimits, create_app, serve
    except ImportError:
        raise ConfigError(
            "holdca serve needs the server extra: pip install -e '.[server]' in a holdca checkout"
        ) from None
    from holdca.hold.alerts import alerts_from_config
    from holdca.hold.policy import AllowAllAuthorizer, SameDIDAuthorizer
    from holdca.hold.setup import audit_from_config, resolver_from_config
    from holdca.server.metrics import instrument
    from holdca.server.run import MAX_PORT, listen_socket

    if not 1 <= args.port <= MAX_PORT:
        raise c.UsageError(f"--port: must be 1 to {MAX_PORT}, got {args.port}")
    for name in ("max_body", "max_connections", "header_timeout", "body_timeout"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise c.UsageError(f"--{name.replace('_', '-')}: must be positive, got {value}")
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
    sock = listen_socket(args.host, args.port)  # ConfigError: in use, not resolvable
    if insecure:
        print(
            "WARNING: --insecure-no-auth: callers are NOT authenticated; anyone who can reach "
            "this port can get certificates for any DID whose record they can point at",
            file=sys.stderr,
        )
    host = args.host.removeprefix("[").removesuffix("]")
    print(
        f"serving hold CA {ca.hold_did} on http://{f'[{host}]' if ':' in host else host}:"
        f"{args.port} ({'no caller authentication' if insecure else 'ATProto service auth'}; "
        f"PLC {config.plc_url})",
        file=sys.stderr,
    )
    serve(app, host=args.host, port=args.port, limits=limits, sock=sock)
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
    p = add("serve", _cmd_serve, "run the reference XRPC server (needs the server extra)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="TCP port to listen on (1-65535)")
    p.add_argument(
        "--max-body",
        type=int,
        metavar="BYTES",
        help=f"request body limit; larger bodies get 413 (default {DEFAULT_MAX_BODY_KIB} KiB)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help=f"connections served at once; beyond it 503 (default {DEFAULT_MAX_CONNECTIONS})",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        metavar="SECONDS",
        help=f"time a client has to send a request head (default {DEFAULT_HEADER_TIMEOUT} seconds)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        metavar="SECONDS",
        help=f"time a client has to send a request body (default {DEFAULT_BODY_TIMEOUT} seconds)",
    )
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="do NOT authenticate callers (tests and closed networks only; warns on start "
        "and tags every audit event; default: ATProto service auth is required)",
    )

    p = add("demo", _cmd_demo, "run the end-to-end demo in a temporary directory")
    p.add_argument(
        "--keep", metavar="DIR", help="keep the demo files in DIR (default: a temporary directory)"
    )
    p.add_argument(
        "--no-notation",
        action="store_true",
        help="skip notation verify (default: run it when notation is installed)",
    )
