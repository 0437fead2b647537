"""Revocation and status: ``revoke``, ``crl``, ``ocsp``; the deny list: ``deny``, ``allow``,
``denied``."""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast and the
# optional extras (server, pkcs11) are only needed by the commands that use them.
import argparse
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca._fs import atomic_write
from holdca.cli import common as c

__all__ = ["register"]


def _cmd_revoke(args: argparse.Namespace) -> int:
    if (args.serial is None) == (args.did is None):
        raise c.UsageError("give exactly one of --serial or --did")
    if args.since and not args.did:
        raise c.UsageError("--since needs --did")
    ca = c.open_ca(args)
    revs = ca.revoke(
        now=c.now(),
        serial=c.parse_serial(args.serial) if args.serial else None,
        did=args.did,
        since=c.parse_time(args.since, "--since") if args.since else None,
        reason=args.reason,
        invalidity_date=(
            c.parse_time(args.invalidity_date, "--invalidity-date")
            if args.invalidity_date
            else None
        ),
    )
    c.emit(
        args,
        {
            "revoked": [
                {
                    "serial": format(r.serial, "x"),
                    "revokedAt": r.revoked_at.isoformat(),
                    "reason": r.reason,
                }
                for r in revs
            ]
        },
        "\n".join(f"revoked {r.serial:x} ({r.reason or 'no reason'})" for r in revs)
        or "nothing to revoke (no certificates matched)",
    )
    return 0


def _cmd_crl(args: argparse.Namespace) -> int:
    ca = c.open_ca(args)
    crl = ca.crl(c.now())
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    if args.out:
        atomic_write(Path(args.out), crl.public_bytes(serialization.Encoding.DER))
        c.emit(
            args,
            {"crlNumber": number, "entries": len(crl), "path": args.out},
            f"CRL #{number} with {len(crl)} entries written to {args.out} (DER)",
        )
    elif args.json:
        pem = crl.public_bytes(serialization.Encoding.PEM).decode()
        c.emit(args, {"crlNumber": number, "entries": len(crl), "pem": pem}, pem)
    else:
        sys.stdout.write(crl.public_bytes(serialization.Encoding.PEM).decode())
    return 0


def _cmd_ocsp(args: argparse.Namespace) -> int:
    if (args.request is None) == (args.serial is None):
        raise c.UsageError("give exactly one of --request FILE or --serial HEX")
    ca = c.open_ca(args)
    if args.request is not None:
        if not args.out:
            raise c.UsageError("--request needs --out FILE for the DER response")
        der = ca.ocsp(c.read(args.request, "OCSP request"), now=c.now())
        atomic_write(Path(args.out), der)
        print(f"OCSP response ({len(der)} bytes) written to {args.out}")
        return 0
    status = ca.status_of(c.parse_serial(args.serial))
    data: dict[str, Any] = {"serial": args.serial.lower(), "status": status.kind}
    if status.revoked_at is not None:
        data["revokedAt"] = status.revoked_at.isoformat()
        data["reason"] = None if status.reason is None else status.reason.value
    text = status.kind + (f" since {status.revoked_at.isoformat()}" if status.revoked_at else "")
    c.emit(args, data, text)
    return 0 if status.kind != "unknown" else 1


def _cmd_deny(args: argparse.Namespace) -> int:
    ca = c.open_ca(args)
    entry = ca.deny(args.did, reason=args.reason or "operator", now=c.now())
    c.emit(
        args,
        {"did": entry.did, "since": entry.since.isoformat(), "reason": entry.reason},
        f"{entry.did} is denied new certificates since {entry.since:%Y-%m-%d %H:%M}Z "
        f"({entry.reason})",
    )
    return 0


def _cmd_allow(args: argparse.Namespace) -> int:
    ca = c.open_ca(args)
    entry = ca.allow(args.did, now=c.now())
    c.emit(
        args,
        {"did": args.did, "wasDenied": entry is not None},
        f"{args.did} may get certificates again"
        if entry is not None
        else f"{args.did} was not on the deny list",
    )
    return 0


def _cmd_denied(args: argparse.Namespace) -> int:
    ca = c.open_ca(args)
    entries = ca.ledger.denials()
    c.emit(
        args,
        {
            "denied": [
                {"did": e.did, "since": e.since.isoformat(), "reason": e.reason, "source": e.source}
                for e in entries
            ]
        },
        "\n".join(f"{e.did}  since {e.since:%Y-%m-%d %H:%M}Z  {e.reason}" for e in entries)
        or "no DID is denied",
    )
    return 0


def register(
    add: c.Adder, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:
    """Add this module's commands to the parser (``add`` makes one subcommand)."""
    p = add("revoke", _cmd_revoke, "revoke a certificate or a DID's certificates", as_json)
    p.add_argument("--serial", help="hexadecimal serial number")
    p.add_argument("--did", help="revoke every certificate of this DID")
    p.add_argument("--since", metavar="TIME", help="with --did: only those issued since TIME")
    p.add_argument(
        "--reason",
        # certificateHold is not a revocation and aACompromise concerns attribute
        # authorities; removeFromCRL belongs to delta CRLs.
        choices=[
            flag.value
            for flag in x509.ReasonFlags
            if flag
            not in (
                x509.ReasonFlags.certificate_hold,
                x509.ReasonFlags.aa_compromise,
                x509.ReasonFlags.remove_from_crl,
            )
        ],
    )
    p.add_argument("--invalidity-date", metavar="TIME")

    p = add("crl", _cmd_crl, "sign and print the current CRL (PEM) or write it (DER)", as_json)
    p.add_argument("--out", metavar="FILE", help="write DER here instead of PEM to stdout")

    p = add("ocsp", _cmd_ocsp, "answer an OCSP request file, or show a serial's status", as_json)
    p.add_argument("--request", metavar="FILE", help="DER OCSP request")
    p.add_argument("--out", metavar="FILE", help="where to write the DER response")
    p.add_argument("--serial", help="hexadecimal serial: print good / revoked / unknown")

    p = add("deny", _cmd_deny, "refuse new certificates for a DID until `holdca allow`", as_json)
    p.add_argument("did", help="the DID to deny")
    p.add_argument("--reason", help="why (kept in the ledger and the audit log)")
    p = add("allow", _cmd_allow, "lift a DID's deny-list entry", as_json)
    p.add_argument("did", help="the DID to allow again")
    add("denied", _cmd_denied, "list the denied DIDs", as_json)
