"""The CA's own commands: ``init``, ``issue`` (a leaf without a proof), ``rotate``,
``retire``."""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast and the
# optional extras (server, pkcs11) are only needed by the commands that use them.
# ruff: noqa: PLC0415
import argparse
import contextlib
import json
import sys
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from holdca._fs import atomic_write, undo_on_failure
from holdca.cli import common as c

__all__ = ["register"]


def _cmd_init(args: argparse.Namespace) -> int:
    home = c.home(args)
    undo = contextlib.ExitStack()  # a failed init leaves nothing behind
    if home is not None:
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
            "HOLD_CA_INTERMEDIATE_LABEL": args.intermediate_label
            or ("hold-issuing" if args.intermediate else None),
            "HOLD_TSA": "local" if args.tsa else None,
            "HOLD_LOG_ORIGIN": args.log_origin,
        }
        if args.log and "HOLD_LOG_DIR" not in {**stored, **c.environment(args)}:
            given["HOLD_LOG_DIR"] = str((home / "log").absolute())
        stored.update({k: str(v) for k, v in given.items() if v is not None})
        if args.crl_url:
            stored["HOLD_CRL_ENABLED"] = "true"
        if args.ocsp_url:
            stored["HOLD_OCSP_ENABLED"] = "true"
        # validate before writing anything
        from holdca.hold.config import HoldConfig

        HoldConfig.from_env({**c.environment(args), **stored})
        undo.enter_context(undo_on_failure(restore=[settings]))
    elif args.tsa or any(v is not None for v in (args.did, args.country, args.state, args.org)):
        raise c.UsageError(
            "--did/--country/--state/--org/--tsa need --home (or set HOLD_* variables)"
        )
    elif args.log_origin is not None or (args.log and "HOLD_LOG_DIR" not in c.environment(args)):
        raise c.UsageError("--log/--log-origin need --home (or set HOLD_LOG_DIR, HOLD_LOG_ORIGIN)")
    with undo:
        if home is not None:
            home.mkdir(parents=True, exist_ok=True)
            atomic_write(settings, (json.dumps(stored, indent=2, sort_keys=True) + "\n").encode())
        config = c.config(args)
        existed = config.ca_cert_path is not None and config.ca_cert_path.exists()
        ca = c.open_ca(args, create=True)
    if config.effective_crl_url is None and config.effective_ocsp_url is None:
        print(
            "holdca: warning: no CRL or OCSP URL: leaves point verifiers at no revocation "
            "status, so notation cannot learn that a certificate was revoked; run holdca "
            "init again with --crl-url http://HOST/ca.crl and/or --ocsp-url URL",
            file=sys.stderr,
        )
    if config.tsa == "local" and config.tsa_directory is not None:
        print(
            f"holdca: built-in TSA: give verifiers {config.tsa_directory / 'tsa-root.crt'} "
            "for a notation tsa: store (it vouches for time only as far as you trust "
            "this hold; see docs/notation.md)",
            file=sys.stderr,
        )
    cert = ca.root_certificate
    data = {
        "holdDid": ca.hold_did,
        "caCertificate": str(config.ca_cert_path),
        "sha256": c.fingerprint(cert).replace(":", "").lower(),
        "subject": cert.subject.rfc4514_string(),
        "notAfter": cert.not_valid_after_utc.isoformat(),
        "created": not existed,
    }
    log_text = ""
    if ca.transparency is not None:
        vkey = ca.transparency.signer.vkey
        data.update(logDir=str(config.log_dir), logOrigin=ca.transparency.origin, logVkey=vkey)
        log_text = (
            f"  log:         {config.log_dir} (serve it at https://HOST/log/: holdca serve does)\n"
            f"  log key:     {vkey}\n"
            "  publish the log key: monitors check the log with holdca monitor --vkey KEY\n"
        )
    c.emit(
        args,
        data,
        f"{'hold CA already initialised' if existed else 'created hold CA'} for {ca.hold_did}\n"
        f"  certificate: {config.ca_cert_path}\n"
        f"  subject:     {cert.subject.rfc4514_string()}\n"
        f"  SHA-256:     {c.fingerprint(cert)}\n"
        f"  valid until: {cert.not_valid_after_utc:%Y-%m-%d}\n"
        f"{log_text}"
        "  publish the fingerprints: add `holdca trust export --did-service` to the service "
        "array of the hold's DID document (relying parties: holdca trust add https://HOST)",
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
        f"issued serial {c.serial_text(leaf.serial_number)} to {args.did}, valid until "
        f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M}Z"
    )
    c.emit(
        args,
        {
            "serial": c.serial_text(leaf.serial_number),
            "did": args.did,
            "notAfter": leaf.not_valid_after_utc.isoformat(),
            "chain": pem,
        },
        f"{summary}; chain written to {args.out}" if args.out else pem.rstrip(),
    )
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    from holdca.hold.castate import ca_id_of
    from holdca.hold.setup import write_pem_certificate

    config = c.config(args)
    ca = c.open_ca(args)
    grace = timedelta(days=args.grace_days) if args.grace_days is not None else None
    now = c.now()
    result = ca.rotate(new_label=args.new_label, now=now, grace=grace)
    cert_path = config.ca_cert_path
    if result.intermediate:  # relying parties keep trusting the same root
        c.emit(
            args,
            {
                "newIntermediate": ca.ca_id,
                "oldIntermediate": ca_id_of(result.old_root),
                "sha256": c.fingerprint(result.new_root).replace(":", "").lower(),
                "root": ca_id_of(ca.root_certificate),
            },
            f"rotated the intermediate: new issuing CA SHA-256 {c.fingerprint(result.new_root)}\n"
            "  the root is unchanged: relying parties need do nothing\n"
            "  the old intermediate is retired; it still answers OCSP and CRL requests",
        )
        return 0
    assert result.new_by_old is not None
    assert result.old_by_new is not None
    write_pem_certificate(cert_path, [result.new_root])
    bundle = cert_path.with_name("ca-bundle.crt")
    write_pem_certificate(bundle, ca.trust_bundle(now))
    cross = cert_path.with_name("ca-cross.crt")
    write_pem_certificate(cross, [result.new_by_old, result.old_by_new])
    c.emit(
        args,
        {
            "newRoot": ca.ca_id,
            "oldRoot": ca_id_of(result.old_root),
            "retireAt": result.retire_at.isoformat(),
            "bundle": str(bundle),
        },
        f"rotated: new root SHA-256 {c.fingerprint(result.new_root)}\n"
        f"  old root stays published until {result.retire_at:%Y-%m-%d %H:%M}Z "
        "(or `holdca retire`)\n"
        f"  trust bundle (new + old) in {bundle}; cross-certificates in {cross}\n"
        "  a running holdca serve uses the new root from its next request\n"
        "  tell relying parties to add the new root: holdca trust add https://HOST",
    )
    return 0


def _cmd_retire(args: argparse.Namespace) -> int:
    from holdca.hold.setup import write_pem_certificate

    config = c.config(args)
    ca = c.open_ca(args)
    now = c.now()
    retired = ca.retire(now)
    if retired:
        write_pem_certificate(config.ca_cert_path.with_name("ca-bundle.crt"), ca.trust_bundle(now))
    c.emit(
        args,
        {"retired": retired, "active": ca.ca_id},
        "\n".join(f"retired CA {ca_id[:16]}: no longer trusted" for ca_id in retired)
        + ("\n  it still answers OCSP and CRL requests for its certificates" if retired else "")
        if retired
        else "nothing to retire: no rotation is in its grace period",
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
        "--intermediate",
        action="store_true",
        help="also create an issuing intermediate CA (key label hold-issuing): the root "
        "key is then needed only for intermediates, root CRLs and rotations, and can be "
        "kept offline (recommended with an HSM)",
    )
    p.add_argument(
        "--intermediate-label",
        help="like --intermediate, with the intermediate's key under this label",
    )
    p.add_argument(
        "--scheme",
        choices=["notary.x509", "notary.x509.signingAuthority"],
        help="Notation signing scheme",
    )
    p.add_argument(
        "--tsa",
        action="store_true",
        help="also create the hold's own RFC 3161 TSA (HOLD_TSA=local: keys hold-tsa-root "
        "and hold-tsa, tsa-root.crt and tsa.crt beside ca.crt) and timestamp every "
        "notary.x509 signature with it",
    )
    p.add_argument(
        "--log",
        action="store_true",
        help="also create the hold's transparency log: the Ed25519 key hold-log, the "
        "directory log/ in --home (HOLD_LOG_DIR) with an empty signed checkpoint; every "
        "issuance is then published there first; prints the verifier key to publish",
    )
    p.add_argument(
        "--log-origin",
        metavar="ORIGIN",
        help="the log's origin line (HOLD_LOG_ORIGIN; default: the did:web host + /log)",
    )

    p = add("issue", _cmd_issue, "issue a leaf for a DID and a public key (no proof)", as_json)
    p.add_argument("--did", required=True, help="the subject DID")
    p.add_argument("--public-key", required=True, metavar="FILE", help="PEM public key")
    p.add_argument(
        "--validity-hours", type=int, help="leaf lifetime (default HOLD_CERT_VALIDITY_HOURS)"
    )
    p.add_argument("--out", metavar="FILE", help="write the PEM chain here")

    p = add(
        "rotate",
        _cmd_rotate,
        "rotate to a new root (the old one stays published for a grace period); with an "
        "intermediate, to a new intermediate under the same root",
        as_json,
    )
    p.add_argument("--new-label", required=True, help="key store label of the new CA key")
    p.add_argument("--grace-days", type=int, help="grace period (default HOLD_ROTATION_GRACE_DAYS)")

    add(
        "retire",
        _cmd_retire,
        "end a rotation's grace period now: the old root leaves the trust bundle (it keeps "
        "answering OCSP and CRL requests for its certificates)",
        as_json,
    )
