"""Revocation and status: ``revoke``, ``crl``, ``ocsp``; the deny list: ``deny``, ``allow``,
``denied``.

Serials are read with :func:`holdca.cli.common.parse_serial` and printed with
:func:`holdca.cli.common.serial_text`. ``--out -`` writes DER to stdout (then ``--json``,
which would print to the same place, is a usage error).
"""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast and the
# optional extras (server, pkcs11) are only needed by the commands that use them.
import argparse
import sys
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

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
                    "serial": c.serial_text(r.serial),
                    "revokedAt": r.revoked_at.isoformat(),
                    "reason": r.reason,
                }
                for r in revs
            ]
        },
        "\n".join(f"revoked {c.serial_text(r.serial)} ({r.reason or 'no reason'})" for r in revs)
        or "nothing to revoke (no certificates matched)",
    )
    return 0


def _no_json_to_stdout(args: argparse.Namespace) -> None:
    """UsageError when ``--out -`` (DER on stdout) goes with ``--json`` (JSON on stdout)."""
    if args.out == "-" and args.json:
        raise c.UsageError("--out - writes DER to stdout: --json cannot go with it")


def _named_ca(ca: Any, name: str | None, now: datetime) -> str | None:
    """The id of the CA ``--ca`` names: ``root`` (the root above an intermediate, or the
    active root), or 16 to 64 hex digits of its SHA-256; None without ``--ca``."""
    if name is None:
        return None
    state = ca.state(now)
    if name == "root":
        return str(state.roots[0].ca_id if state.roots else state.active.ca_id)
    named = state.by_key(name)
    if named is None:
        raise c.UsageError(
            f"--ca: no CA of this hold has the id {name!r} (16 to 64 hex digits of its "
            "SHA-256, as in its CRL URL's ca=, or 'root')"
        )
    return str(named.ca_id)


def _cmd_crl(args: argparse.Namespace) -> int:
    _no_json_to_stdout(args)
    ca = c.open_ca(args)
    now = c.now()
    crl = ca.crl(now, ca_id=_named_ca(ca, args.ca, now))
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    if args.out == "-":
        c.write_binary("-", crl.public_bytes(serialization.Encoding.DER))
    elif args.out:
        c.write_binary(args.out, crl.public_bytes(serialization.Encoding.DER))
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
    if args.request is not None:
        if not args.out:
            raise c.UsageError("--request needs --out FILE (or --out -) for the DER response")
        _no_json_to_stdout(args)
        request = c.read(args.request, "OCSP request")
        ca = c.open_ca(args)
        der = ca.ocsp(request, now=c.now())
        c.write_binary(args.out, der)
        if args.out != "-":
            data = _response_summary(der)
            data.update({"path": args.out, "bytes": len(der)})
            answers = ", ".join(f"{r['serial']} {r['status']}" for r in data["responses"])
            c.emit(
                args,
                data,
                f"OCSP response ({len(der)} bytes, {data['responseStatus']}"
                f"{': ' + answers if answers else ''}) written to {args.out}",
            )
        return 0
    serial = c.parse_serial(args.serial)
    if args.out is not None:
        raise c.UsageError("--out goes with --request (--serial prints the status)")
    ca = c.open_ca(args)
    status = ca.status_of(serial)
    data = {"serial": c.serial_text(serial), "status": status.kind}
    if status.revoked_at is not None:
        data["revokedAt"] = status.revoked_at.isoformat()
        data["reason"] = None if status.reason is None else status.reason.value
    text = f"{c.serial_text(serial)}: {status.kind}" + (
        f" since {status.revoked_at.isoformat()}" if status.revoked_at else ""
    )
    c.emit(args, data, text)
    return 0 if status.kind != "unknown" else 1


def _response_summary(der: bytes) -> dict[str, Any]:
    """What an OCSP response says: its status and, if successful, each serial's status."""
    response = ocsp.load_der_ocsp_response(der)
    data: dict[str, Any] = {
        "responseStatus": response.response_status.name.lower(),
        "responses": [],
    }
    if response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL:
        data["responses"] = [
            {
                "serial": c.serial_text(single.serial_number),
                "status": single.certificate_status.name.lower(),
            }
            for single in response.responses
        ]
    return data


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
    p.add_argument("--serial", help="hexadecimal serial (0x and colons allowed)")
    p.add_argument("--did", help="revoke every certificate of this DID")
    p.add_argument(
        "--since",
        metavar="TIME",
        help="with --did: only those issued since TIME (ISO 8601; default: all of them)",
    )
    p.add_argument(
        "--reason",
        help="RFC 5280 reason put on the CRL and in OCSP answers (default: none); "
        "keyCompromise also denies the DID new certificates",
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
    p.add_argument(
        "--invalidity-date",
        metavar="TIME",
        help="when the key is known or suspected to have been compromised (ISO 8601; "
        "default: not stated)",
    )

    p = add("crl", _cmd_crl, "sign and print the current CRL (PEM) or write it (DER)", as_json)
    p.add_argument(
        "--out",
        metavar="FILE",
        help="write DER to FILE (- for stdout) instead of PEM to stdout",
    )
    p.add_argument(
        "--ca",
        metavar="ID",
        help="the CRL of another CA of the hold: 'root' (with an intermediate: re-sign and "
        "store the root's CRL, where the root key is) or 16+ hex digits of its SHA-256 "
        "(default: the issuing CA)",
    )

    p = add("ocsp", _cmd_ocsp, "answer an OCSP request file, or show a serial's status", as_json)
    p.add_argument("--request", metavar="FILE", help="DER OCSP request")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="with --request: write the DER response to FILE (- for stdout)",
    )
    p.add_argument(
        "--serial",
        help="hexadecimal serial (0x and colons allowed): print good / revoked / unknown",
    )

    p = add("deny", _cmd_deny, "refuse new certificates for a DID until `holdca allow`", as_json)
    p.add_argument("did", help="the DID to deny")
    p.add_argument("--reason", help="why (kept in the ledger and the audit log)")
    p = add("allow", _cmd_allow, "lift a DID's deny-list entry", as_json)
    p.add_argument("did", help="the DID to allow again")
    add("denied", _cmd_denied, "list the denied DIDs", as_json)
