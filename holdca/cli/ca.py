"""The CA's own commands: ``init``, ``issue`` (a leaf without a proof), ``rotate``."""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast and the
# optional extras (server, pkcs11) are only needed by the commands that use them.
# ruff: noqa: PLC0415
import argparse
import json
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from holdca._fs import atomic_write
from holdca.cli import common as c

__all__ = ["register"]


def _cmd_init(args: argparse.Namespace) -> int:
    home = c.home(args)
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        settings = home / "hold.json"
        stored = c.stored_settings(home)
        given = {
            "HOLD_DID": args.did,
            "HOLD_SUBJECT_C": args.country,
            "HOLD_SUBJECT_ST": args.state,
            "HOLD_SUBJECT_O": args.org,
            "HOLD_CRL_URL": args.crl_url,
            "HOLD_OCSP_URL": args.ocsp_url,
            "HOLD_CERT_VALIDITY_HOURS": args.validity_hours,
            "HOLD_SIGNING_SCHEME": args.scheme,
            "HOLD_CA_INTERMEDIATE_LABEL": args.intermediate_label,
        }
        stored.update({k: str(v) for k, v in given.items() if v is not None})
        if args.crl_url:
            stored["HOLD_CRL_ENABLED"] = "true"
        if args.ocsp_url:
            stored["HOLD_OCSP_ENABLED"] = "true"
        # validate before writing anything
        from holdca.hold.config import HoldConfig

        HoldConfig.from_env({**c.environment(args), **stored})
        atomic_write(settings, (json.dumps(stored, indent=2, sort_keys=True) + "\n").encode())
    elif any(v is not None for v in (args.did, args.country, args.state, args.org)):
        raise c.UsageError("--did/--country/--state/--org need --home (or set HOLD_* variables)")
    config = c.config(args)
    existed = config.ca_cert_path is not None and config.ca_cert_path.exists()
    ca = c.open_ca(args, create=True)
    cert = ca.root_certificate
    c.emit(
        args,
        {
            "holdDid": ca.hold_did,
            "caCertificate": str(config.ca_cert_path),
            "sha256": c.fingerprint(cert).replace(":", "").lower(),
            "subject": cert.subject.rfc4514_string(),
            "notAfter": cert.not_valid_after_utc.isoformat(),
            "created": not existed,
        },
        f"{'hold CA already initialised' if existed else 'created hold CA'} for {ca.hold_did}\n"
        f"  certificate: {config.ca_cert_path}\n"
        f"  subject:     {cert.subject.rfc4514_string()}\n"
        f"  SHA-256:     {c.fingerprint(cert)}\n"
        f"  valid until: {cert.not_valid_after_utc:%Y-%m-%d}",
    )
    return 0


def _cmd_issue(args: argparse.Namespace) -> int:
    data = c.read(args.public_key, "public key")
    try:
        public_key = serialization.load_pem_public_key(data)
    except ValueError:
        raise c.UsageError(f"{args.public_key}: not a PEM public key") from None
    ca = c.open_ca(args)
    validity = timedelta(hours=args.validity_hours) if args.validity_hours else None
    chain = ca.issue(args.did, public_key, now=c.now(), validity=validity)
    pem = c.pem(chain)
    if args.out:
        atomic_write(Path(args.out), pem.encode("ascii"))
    leaf = chain[0]
    summary = (
        f"issued serial {leaf.serial_number:x} to {args.did}, valid until "
        f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M}Z"
    )
    c.emit(
        args,
        {
            "serial": format(leaf.serial_number, "x"),
            "did": args.did,
            "notAfter": leaf.not_valid_after_utc.isoformat(),
            "chain": pem,
        },
        f"{summary}; chain written to {args.out}" if args.out else pem.rstrip(),
    )
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    from holdca.hold.setup import write_pem_certificate

    config = c.config(args)
    ca = c.open_ca(args)
    grace = timedelta(days=args.grace_days) if args.grace_days is not None else None
    result = ca.rotate(new_label=args.new_label, now=c.now(), grace=grace)
    cert_path = config.ca_cert_path
    write_pem_certificate(cert_path, [result.new_root])
    bundle = cert_path.with_name("ca-bundle.crt")
    write_pem_certificate(bundle, [result.new_root, result.old_root])
    cross = cert_path.with_name("ca-cross.crt")
    write_pem_certificate(cross, [result.new_by_old, result.old_by_new])
    c.emit(
        args,
        {
            "newRoot": ca.ca_id,
            "oldRoot": ca.state().published[0].ca_id,
            "retireAt": result.retire_at.isoformat(),
            "bundle": str(bundle),
        },
        f"rotated: new root SHA-256 {c.fingerprint(result.new_root)}\n"
        f"  old root stays published until {result.retire_at:%Y-%m-%d %H:%M}Z\n"
        f"  trust bundle (new + old) in {bundle}; cross-certificates in {cross}\n"
        f"  tell relying parties: holdca trust install --notation-config DIR",
    )
    return 0


def register(
    add: c.Adder, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:
    """Add this module's commands to the parser (``add`` makes one subcommand)."""
    p = add("init", _cmd_init, "create the hold CA (idempotent)", as_json)
    p.add_argument("--did", help="the hold's DID (HOLD_DID), e.g. did:web:hold.example.com")
    p.add_argument("--country", help="subject C, two letters (HOLD_SUBJECT_C)")
    p.add_argument("--state", help="subject ST (HOLD_SUBJECT_ST)")
    p.add_argument("--org", help="subject O (HOLD_SUBJECT_O)")
    p.add_argument("--crl-url", help="http:// URL of the CRL put into leaves")
    p.add_argument("--ocsp-url", help="URL of the OCSP responder put into leaves")
    p.add_argument("--validity-hours", type=int, help="leaf validity (default 24)")
    p.add_argument(
        "--intermediate-label",
        help="also create an issuing intermediate CA with its key under this label",
    )
    p.add_argument(
        "--scheme",
        choices=["notary.x509", "notary.x509.signingAuthority"],
        help="Notation signing scheme",
    )

    p = add("issue", _cmd_issue, "issue a leaf for a DID and a public key (no proof)", as_json)
    p.add_argument("--did", required=True, help="the subject DID")
    p.add_argument("--public-key", required=True, metavar="FILE", help="PEM public key")
    p.add_argument("--validity-hours", type=int)
    p.add_argument("--out", metavar="FILE", help="write the PEM chain here")

    p = add("rotate", _cmd_rotate, "rotate to a new root (old one stays published)", as_json)
    p.add_argument("--new-label", required=True, help="key store label of the new root key")
    p.add_argument("--grace-days", type=int, help="grace period (default HOLD_ROTATION_GRACE_DAYS)")
