"""``holdca monitor``: check a hold's transparency log and its certificates against ATProto.

Runs :func:`holdca.tlog.monitor.run_monitor` once (run it from cron): exit 0 when the log is
consistent and every certificate checked matches its ATProto record, 1 on an alarm (bad
signature, fork, rollback, modified tile, malformed entry), an unexpected certificate, an
entry that could not be checked, or a log that could not be fetched; 2 on a usage or
configuration error. Needs nothing of a hold: no ``--home``, no ``HOLD_*`` but
``HOLD_NETWORK_ALLOW`` and ``HOLD_PLC_URL`` as defaults of ``--allow`` and ``--plc-url``.
"""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast.
# ruff: noqa: PLC0415
import argparse
import os
from pathlib import Path
from typing import Any

from holdca.cli import common as c

__all__ = ["register"]

_DEFAULT_PLC = "https://plc.directory"


def _vkey(args: argparse.Namespace) -> Any:
    from holdca.errors import TlogError
    from holdca.tlog import Ed25519NoteVerifier

    if (args.vkey is None) == (args.vkey_file is None):
        raise c.UsageError("give the log's verifier key with exactly one of --vkey, --vkey-file")
    if args.vkey_file is not None:
        try:
            text = Path(args.vkey_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise c.UsageError(f"--vkey-file {args.vkey_file} cannot be read: {exc}") from None
        what = "--vkey-file"
    else:
        text, what = args.vkey, "--vkey"
    try:
        return Ed25519NoteVerifier.from_vkey(text)
    except TlogError as exc:
        raise c.UsageError(f"{what} is not a log verifier key: {exc}") from None


def _cmd_monitor(args: argparse.Namespace) -> int:
    from holdca.atproto.did import validate_account_did
    from holdca.atproto.resolve import HTTPResolver
    from holdca.errors import HoldCAError
    from holdca.net import AddressPolicy, Fetcher
    from holdca.tlog import DirectoryLog, HTTPLog
    from holdca.tlog.facts import FactChecker, http_audit_logs
    from holdca.tlog.monitor import MonitorState, run_monitor

    verifier = _vkey(args)
    if not args.timeout > 0:
        raise c.UsageError("--timeout must be a positive number of seconds")
    if args.did is not None:
        try:
            validate_account_did(args.did)
        except HoldCAError as exc:
            raise c.UsageError(f"--did: {exc}") from None
    allow = args.allow if args.allow is not None else os.environ.get("HOLD_NETWORK_ALLOW")
    policy = AddressPolicy.parse(allow, variable="--allow")
    plc_url = args.plc_url or os.environ.get("HOLD_PLC_URL") or _DEFAULT_PLC
    if not plc_url.startswith(("https://", "http://")):
        raise c.UsageError(f"--plc-url must be an http(s) URL, not {plc_url[:100]!r}")
    fetcher = Fetcher(policy, timeout=args.timeout)
    url: str = args.url
    reader: Any
    if url.startswith(("https://", "http://")):
        if url.startswith("http://") and not args.insecure_http:
            raise c.UsageError(f"{url[:100]} is plain http: add --insecure-http to read it")
        reader = HTTPLog(fetcher, url, require_https=not args.insecure_http)
    else:
        root = Path(url.removeprefix("file://"))
        if not root.is_dir():
            raise c.UsageError(f"{url[:100]} is neither an http(s) URL nor a log directory")
        reader = DirectoryLog(root)
    resolver = HTTPResolver(plc_url=plc_url, fetcher=fetcher, cache_ttl=0)
    checker = FactChecker(resolver, http_audit_logs(fetcher, plc_url))
    try:
        report = run_monitor(reader, verifier, MonitorState(args.state), checker, did=args.did)
    finally:
        fetcher.close()
    c.emit(args, report.to_json(), report.summary())
    return 0 if report.ok else 1


def register(
    add: c.Adder, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:
    """Add ``monitor`` to the parser (``add`` makes one subcommand)."""
    p = add(
        "monitor",
        _cmd_monitor,
        "check a hold's transparency log (signature, consistency with the last run) and "
        "re-verify each new certificate against its ATProto record",
        as_json,
    )
    p.add_argument("url", metavar="URL", help="the log's prefix: an http(s) URL or a directory")
    p.add_argument(
        "--state",
        required=True,
        metavar="DIR",
        help="state directory: the last checkpoint seen (created if missing)",
    )
    p.add_argument("--vkey", metavar="VKEY", help="the log's verifier key (name+id+key)")
    p.add_argument("--vkey-file", metavar="F", help="a file holding the verifier key")
    p.add_argument(
        "--did", metavar="DID", help="check and list only this DID's certificates and revocations"
    )
    p.add_argument(
        "--allow",
        metavar="CIDRs",
        help="addresses fetches may reach besides public ones, as HOLD_NETWORK_ALLOW "
        "(default $HOLD_NETWORK_ALLOW)",
    )
    p.add_argument(
        "--plc-url",
        metavar="URL",
        help=f"the PLC directory (default $HOLD_PLC_URL, else {_DEFAULT_PLC})",
    )
    p.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow reading the log over plain http (the checkpoint is still verified)",
    )
    p.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds for each fetch"
    )
