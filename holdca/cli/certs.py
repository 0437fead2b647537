"""``holdca certs``: list the certificates the hold issued, from its ledger.

``holdca certs [--did DID] [--since TIME] [--json]`` prints one line per issuance, oldest
first: serial, DID, manifest digest, validity, the issuing CA and whether it is revoked,
expired or live. Only the ledger is read: no key is opened and nothing is written (no
audit event, no new ledger file).
"""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast.
# ruff: noqa: PLC0415
import argparse
from datetime import datetime
from typing import Any

from holdca.cli import common as c
from holdca.errors import ConfigError

__all__ = ["register"]


def _cmd_certs(args: argparse.Namespace) -> int:
    from holdca.hold.ledger import SQLiteLedger
    from holdca.hold.setup import ledger_from_config

    since = c.parse_time(args.since, "--since") if args.since else None
    settings = c.config(args)
    path = settings.effective_ledger_path
    if settings.ledger_url is not None:  # PostgreSQL: refused without the holdca schema
        ledger = ledger_from_config(settings)
    else:
        if path is None:
            raise ConfigError("HOLD_CA_CERT_PATH: required")
        if not path.is_file():
            raise ConfigError(
                f"HOLD_LEDGER_PATH: no ledger at {str(path)!r} (holdca init makes one)"
            )
        ledger = SQLiteLedger(path)
    try:
        records = (
            ledger.by_did(args.did, since=since) if args.did else ledger.issuances(since=since)
        )
        rows = [_row(record, ledger.revocation(record.serial), c.now()) for record in records]
    finally:
        ledger.close()
    c.emit(
        args,
        {"certificates": rows},
        "\n".join(_line(row) for row in rows) or "no certificates issued" + _scope(args),
    )
    return 0


def _row(record: Any, revocation: Any, now: datetime) -> dict[str, Any]:
    """One issuance as JSON (times ISO 8601, the serial in :func:`serial_text` form)."""
    status = (
        "revoked" if revocation is not None else "expired" if record.not_after <= now else "live"
    )
    return {
        "serial": c.serial_text(record.serial),
        "did": record.did,
        "manifestDigest": record.manifest_digest or None,  # operator issuance: none
        "kind": record.kind,
        "issuedAt": record.issued_at.isoformat(),
        "notBefore": record.not_before.isoformat(),
        "notAfter": record.not_after.isoformat(),
        "issuerId": record.issuer_id,
        "revoked": revocation is not None,
        "revokedAt": None if revocation is None else revocation.revoked_at.isoformat(),
        "reason": None if revocation is None else revocation.reason,
        "status": status,
    }


def _line(row: dict[str, Any]) -> str:
    """One issuance as a line of text."""
    revoked = f" {row['revokedAt'][:16]}Z {row['reason'] or ''}".rstrip() if row["revoked"] else ""
    return (
        f"{row['serial']}  {row['did']}  {row['manifestDigest'] or '-'}  "
        f"{row['notBefore'][:16]}Z..{row['notAfter'][:16]}Z  CA {row['issuerId'][:16]}  "
        f"{row['status']}{revoked}"
    )


def _scope(args: argparse.Namespace) -> str:
    """`` to DID since TIME`` as the filters say."""
    return (f" to {args.did}" if args.did else "") + (f" since {args.since}" if args.since else "")


def register(
    add: c.Adder, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:
    """Add this module's commands to the parser (``add`` makes one subcommand)."""
    p = add(
        "certs",
        _cmd_certs,
        "list issued certificates from the ledger (serial, DID, digest, validity, CA, revoked)",
        as_json,
    )
    p.add_argument("--did", help="only the certificates of this DID (default: every DID)")
    p.add_argument(
        "--since",
        metavar="TIME",
        help="only those issued at or after TIME (ISO 8601, UTC if no zone; default: all)",
    )
