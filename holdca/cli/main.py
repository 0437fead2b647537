"""The ``holdca`` command line: run a hold CA from a shell.

Configuration comes from ``HOLD_*`` environment variables (see :mod:`holdca.hold.config`)
and, for convenience, from a hold directory (``--home DIR`` or ``$HOLDCA_HOME``): ``init``
writes ``DIR/hold.json`` with the non-secret settings and keeps the CA certificate
(``ca.crt``), the PEM keys (``keys/``) and the ledger (``ledger.sqlite3``) there.
Environment variables override the file. Secrets (PINs, passphrases) are only read from
the environment or ``*_FILE`` variables, never written.

Exit codes: 0 success; 1 the operation was refused or failed (bad proof, policy, revoked,
ledger, key store); 2 usage or configuration error. Errors are one line on stderr.

One module per command group: :mod:`~holdca.cli.ca` (``init``, ``issue``, ``rotate``),
:mod:`~holdca.cli.sign` (``cosign``, ``resign``), :mod:`~holdca.cli.revocation`
(``revoke``, ``crl``, ``ocsp``, ``deny``, ``allow``, ``denied``), :mod:`~holdca.cli.watch`
(``sweep``), :mod:`~holdca.cli.recover` (``recover``), :mod:`~holdca.cli.trust`
(``trust {export,install,list}``), :mod:`~holdca.cli.serve` (``serve``, ``demo``).
Run ``holdca CMD --help``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from holdca.cli import ca, recover, revocation, serve, sign, trust, watch
from holdca.cli.common import UsageError
from holdca.errors import ConfigError, HoldCAError, MalformedInputError

__all__ = ["main", "parser"]

_GROUPS = (ca, sign, revocation, watch, recover, trust, serve)


def parser() -> argparse.ArgumentParser:
    """The ``holdca`` argument parser (every command group registers its commands)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home",
        metavar="DIR",
        help="hold directory (hold.json, ca.crt, keys/, ledger.sqlite3); default $HOLDCA_HOME",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON for scripts")

    parser = argparse.ArgumentParser(
        prog="holdca",
        description="Run an ATCR hold as an X.509 CA whose signatures notation verifies.",
        epilog="Configuration: HOLD_* environment variables and/or --home DIR. "
        "Exit codes: 0 ok, 1 refused/failed, 2 usage or configuration error.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        func: Callable[[argparse.Namespace], int],
        help: str,
        *parents: argparse.ArgumentParser,
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common, *parents])
        p.set_defaults(func=func)
        return p

    for group in _GROUPS:
        group.register(add, common, as_json)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``holdca`` command; returns the process exit code (never raises)."""
    cli = parser()
    try:
        args = cli.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        code: int = args.func(args)
    except UsageError as exc:
        print(f"holdca {args.command}: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"holdca {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except MalformedInputError as exc:
        print(f"holdca {args.command}: bad input: {exc}", file=sys.stderr)
        return 1
    except HoldCAError as exc:
        print(f"holdca {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"holdca {args.command}: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("HOLDCA_DEBUG"):
            raise
        print(
            f"holdca {args.command}: internal error ({type(exc).__name__}: {exc}); "
            "set HOLDCA_DEBUG=1 for a traceback and please report it",
            file=sys.stderr,
        )
        return 1
    return code
