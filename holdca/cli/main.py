"""The ``holdca`` command line: run a hold CA from a shell.

Configuration comes from ``HOLD_*`` environment variables (see :mod:`holdca.hold.config`)
and, for convenience, from a hold directory (``--home DIR`` or ``$HOLDCA_HOME``): ``init``
writes ``DIR/hold.json`` with the non-secret settings and keeps the CA certificate
(``ca.crt``), the PEM keys (``keys/``) and the ledger (``ledger.sqlite3``) there.
Environment variables override the file. Secrets (PINs, passphrases) are only read from
the environment or ``*_FILE`` variables, never written.

Exit codes: 0 success; 1 the operation was refused or failed (bad proof, policy, revoked,
ledger, key store); 2 usage or configuration error (including ``holdca serve`` on a port
that is invalid or already in use); 130 interrupted (Ctrl-C); 141 the reader of stdout
went away (``holdca crl | head -1``: the command stops quietly, as a program killed by
SIGPIPE would). Errors are one line on stderr. Commands that change the hold write their
audit trail to ``HOLD_AUDIT_LOG``, else to ``audit.log`` beside the ledger, never to
stderr (see :func:`holdca.cli.common.audit_log`).

``holdca --version`` prints ``holdca <version>``. Every command that prints data takes
``--json``; serials are read as hex (``0x`` and colons allowed) and printed in one form,
lower-case hex without ``0x``.

One module per command group: :mod:`~holdca.cli.ca` (``init``, ``issue``, ``rotate``),
:mod:`~holdca.cli.sign` (``cosign``, ``resign``), :mod:`~holdca.cli.revocation`
(``revoke``, ``crl``, ``ocsp``, ``deny``, ``allow``, ``denied``), :mod:`~holdca.cli.certs`
(``certs``), :mod:`~holdca.cli.watch`
(``sweep``), :mod:`~holdca.cli.recover` (``recover``), :mod:`~holdca.cli.trust`
(``trust {export,install,list}``), :mod:`~holdca.cli.serve` (``serve``, ``demo``),
:mod:`~holdca.cli.monitor` (``monitor``), :mod:`~holdca.cli.tlog` (``log vkey``).
Run ``holdca CMD --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from holdca.cli import ca, certs, monitor, recover, revocation, serve, sign, tlog, trust, watch
from holdca.cli.common import UsageError, close_audit
from holdca.errors import ConfigError, HoldCAError, MalformedInputError

__all__ = ["EXIT_BROKEN_PIPE", "HelpFormatter", "main", "parser", "version"]

_GROUPS = (ca, sign, revocation, certs, watch, recover, trust, serve, monitor, tlog)

EXIT_BROKEN_PIPE = 141
"""Exit code when stdout's reader went away (128 + SIGPIPE, what a shell reports for a
program SIGPIPE killed)."""


def version() -> str:
    """holdca's version: the installed distribution's, else ``holdca.__version__``."""
    try:
        return metadata.version("holdca")
    except metadata.PackageNotFoundError:
        import holdca  # noqa: PLC0415

        return holdca.__version__


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, adding ``(default: X)`` to an option's help unless the help
    already states its default or there is none to state (``None``, a flag's ``False``)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if (
            text
            and "default" not in text
            and "%(default)" not in text
            and action.option_strings
            and action.default not in (None, False, argparse.SUPPRESS)
        ):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help (and its subcommands', made from its class) uses
    :class:`HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


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

    parser = _Parser(
        prog="holdca",
        description="Run an ATCR hold as an X.509 CA whose signatures notation verifies.",
        epilog="Configuration: HOLD_* environment variables and/or --home DIR. "
        "Exit codes: 0 ok, 1 refused/failed, 2 usage or configuration error, "
        "141 stdout closed early.",
    )
    parser.add_argument(
        "--version", action="version", version=f"holdca {version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        func: Callable[[argparse.Namespace], int],
        help: str,
        *parents: argparse.ArgumentParser,
    ) -> argparse.ArgumentParser:
        family: list[Any] = [common, *parents]  # plain parsers: only their arguments count
        p = sub.add_parser(name, help=help, description=help, parents=family)
        p.set_defaults(func=func)
        return p

    for group in _GROUPS:
        group.register(add, common, as_json)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``holdca`` command; returns the process exit code (never raises).

    Everything the command prints is flushed before it returns, so a reader that went
    away (a closed pipe) is noticed here: :data:`EXIT_BROKEN_PIPE`, nothing on stderr.
    """
    cli = parser()
    try:
        try:
            args = cli.parse_args(argv)
        except SystemExit as exc:  # --help, --version or a usage error
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 2
        else:
            code = _run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    finally:
        close_audit()
    return code


def _drop_stdout() -> None:
    """Point stdout at /dev/null: the interpreter's last flush must not fail again."""
    # no file descriptor to replace: a test's captured stdout
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; errors become one line on stderr and an exit code."""
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
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
        where = f": {exc.filename}" if exc.filename else ""
        print(f"holdca {args.command}: {exc.strerror or exc}{where}", file=sys.stderr)
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
