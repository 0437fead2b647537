"""Watching DIDs: ``sweep`` re-resolves every DID with live certificates and acts on changes."""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast and the
# optional extras (http) are only needed by the commands that use them.
# ruff: noqa: PLC0415
import argparse

from holdca.cli import common as c

__all__ = ["register"]

_MAX_CONCURRENCY = 64


def _cmd_sweep(args: argparse.Namespace) -> int:
    from holdca.hold.setup import resolver_from_config

    if not 1 <= args.concurrency <= _MAX_CONCURRENCY:
        raise c.UsageError(f"--concurrency must be between 1 and {_MAX_CONCURRENCY}")
    config = c.config(args)
    # the audit trail is where a flagged change is reported: HOLD_AUDIT_LOG, else audit.log
    # beside the ledger (holdca.cli.common.audit_log)
    ca = c.open_ca(args, resolver=resolver_from_config(config))
    report = ca.sweep(c.now(), concurrency=args.concurrency)
    data = report.to_json()
    data["onDidChange"] = ca.watch.on_change
    c.emit(args, data, f"{report.summary()}\n(HOLD_ON_DID_CHANGE={ca.watch.on_change})")
    return 0


def register(
    add: c.Adder, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:
    """Add this module's commands to the parser (``add`` makes one subcommand)."""
    p = add(
        "sweep",
        _cmd_sweep,
        "re-resolve every DID with live certificates; revoke or flag key changes, PDS moves "
        "and deactivations (HOLD_ON_DID_CHANGE)",
        as_json,
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=8,
        metavar="N",
        help="resolve N DIDs at once (default 8)",
    )
