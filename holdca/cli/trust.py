"""Trust for relying parties: ``trust export``, ``install``, ``add``, ``list``, ``pin``,
``remove``. This module parses them and runs ``export`` and ``install``; ``add`` (which
fetches) is :mod:`holdca.cli.trustadd`, ``list``/``pin``/``remove``
:mod:`holdca.cli.trustedit`, their shared writer :mod:`holdca.cli.trustcommon`.

What ``install`` and ``add`` write by default is a trust store and **no** statement:
notation trusts nothing from it until ``trust pin REGISTRY/REPO DID`` trusts one DID's
signatures for one repository, or ``--scope`` trusts every user of the hold for the
scopes given (``--scope '*'``: every repository no other statement names).
"""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast and the
# optional extras (server, pkcs11) are only needed by the commands that use them.
# ruff: noqa: PLC0415
import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cryptography import x509

from holdca._fs import atomic_write
from holdca.cli import common as c
from holdca.cli.trustcommon import notation_dir, store_type_of, write_trust, written_text
from holdca.errors import DIDSyntaxError

__all__ = ["register"]


def _cmd_trust(args: argparse.Namespace) -> int:
    if args.trust_command == "add":
        from holdca.cli.trustadd import trust_add

        return trust_add(args)
    if args.trust_command in ("list", "pin", "remove"):
        from holdca.cli import trustedit

        return int(getattr(trustedit, f"trust_{args.trust_command}")(args))
    if args.trust_command == "install" and args.ca_file:
        return _trust_install_file(args)
    ca = c.open_ca(args)
    bundle = ca.trust_bundle(c.now())
    if args.trust_command == "export":
        if args.did_service:
            return _export_service(args, ca, bundle)
        pem = c.pem(bundle)
        if args.out:
            atomic_write(Path(args.out), pem.encode("ascii"))
        c.emit(
            args,
            {
                "certificates": [
                    {
                        "subject": cert.subject.rfc4514_string(),
                        "sha256": c.fingerprint(cert),
                        "notAfter": cert.not_valid_after_utc.isoformat(),
                    }
                    for cert in bundle
                ],
                "path": args.out,
            },
            "\n".join(
                f"# {cert.subject.rfc4514_string()}\n# SHA-256 {c.fingerprint(cert)}"
                for cert in bundle
            )
            + ("" if args.out else "\n" + pem.rstrip()),
        )
        return 0
    from holdca.notation.trustpolicy import x509_subject_identity

    subject = ca.subject
    identity = x509_subject_identity(
        None,
        country=subject.country,
        state=subject.state,
        organization=subject.organization,
        locality=subject.locality,
    )
    return _install(args, store_type_of(ca.scheme), bundle, [identity])


def _export_service(args: argparse.Namespace, ca: Any, bundle: list[x509.Certificate]) -> int:
    """``trust export --did-service``: the DID document entry publishing the roots."""
    from urllib.parse import urlsplit

    from holdca.atproto.did import web_did_host
    from holdca.notation.holdtrust import hold_ca_service

    if args.url:
        parts = urlsplit(args.url if "://" in args.url else f"https://{args.url}")
        try:
            port = parts.port
        except ValueError:
            port = -1
        if (
            parts.scheme != "https"
            or not parts.hostname
            or port == -1
            or "@" in parts.netloc
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise c.UsageError("--url must be the hold's https origin, e.g. https://hold.example")
        base = f"https://{parts.netloc.lower()}"
    else:
        try:
            base = f"https://{web_did_host(ca.hold_did)}"
        except DIDSyntaxError:
            raise c.UsageError(
                f"the hold's DID {ca.hold_did} is not a did:web: give --url https://HOST"
            ) from None
    entry = hold_ca_service(f"{base}/ca-bundle.crt", bundle, scheme=ca.scheme)
    print(
        f"# add this entry to the service array of {base}/.well-known/did.json "
        "(update it after every rotation); relying parties run: "
        f"holdca trust add {base}",
        file=sys.stderr,
    )
    print(json.dumps({"service": entry} if args.json else entry, indent=2))
    return 0


def _trust_install_file(args: argparse.Namespace) -> int:
    """``trust install --ca-file``: a relying party with the hold's published roots only."""
    from holdca.notation import SigningScheme
    from holdca.notation.holdtrust import hold_identities

    data = c.read(args.ca_file, "CA certificate file")
    try:
        bundle = x509.load_pem_x509_certificates(data)
    except (ValueError, x509.InvalidVersion):
        raise c.UsageError(f"{args.ca_file}: not a PEM certificate file") from None
    return _install(
        args, store_type_of(SigningScheme(args.scheme)), bundle, hold_identities(bundle)
    )


def _install(
    args: argparse.Namespace, store_type: str, bundle: list[x509.Certificate], ids: list[str]
) -> int:
    result = write_trust(
        args,
        config_dir=notation_dir(args),
        store=args.store,
        store_type=store_type,
        bundle=bundle,
        identities=ids,
    )
    c.emit(args, result, written_text(result, len(result["files"])))
    return 0


def _config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "--notation-config",
        dest="notation_config",
        metavar="DIR",
        help="notation configuration directory (default: notation's own, $NOTATION_CONFIG "
        "or ~/.config/notation)",
    )


def _statement_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scope",
        action="append",
        help="also trust EVERY user of the hold for this registry scope (repeatable; '*' "
        "for all repositories; default: no statement, see trust pin)",
    )
    p.add_argument(
        "--any-identity",
        action="store_true",
        help='with --scope: trust "*" instead of the hold\'s C/ST/O identity',
    )


def register(
    add: c.Adder, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:
    """Add this module's commands to the parser (``add`` makes one subcommand)."""
    from holdca.cli.trustadd import add_arguments

    p = add("trust", _cmd_trust, "export the CA or configure notation to trust it")
    tsub = p.add_subparsers(dest="trust_command", required=True, metavar="ACTION")
    t = tsub.add_parser(
        "export",
        help="print the trusted roots with SHA-256 fingerprints",
        parents=[common, as_json],
    )
    t.add_argument("--out", metavar="FILE", help="write the PEM bundle here")
    t.add_argument(
        "--did-service",
        action="store_true",
        help="print the DID document service entry that publishes the roots' fingerprints",
    )
    t.add_argument(
        "--url", help="with --did-service: the hold's https origin (default: its did:web host)"
    )
    t = tsub.add_parser(
        "install",
        help="write a notation trust store (and, with --scope, a statement) from the hold",
        parents=[common, as_json],
    )
    _config_option(t)
    t.add_argument(
        "--ca-file",
        metavar="FILE",
        help="the hold's published roots (PEM, e.g. from <hold>/ca-bundle.crt) instead of --home",
    )
    t.add_argument(
        "--scheme",
        default="notary.x509",
        choices=["notary.x509", "notary.x509.signingAuthority"],
        help="with --ca-file: the hold's signing scheme (default notary.x509)",
    )
    t.add_argument("--store", default="holdca", help="trust store name (default holdca)")
    _statement_options(t)
    t = tsub.add_parser(
        "add",
        help="fetch a hold's roots over https, check their fingerprints, write a trust store",
        parents=[common, as_json],
    )
    _config_option(t)
    add_arguments(t)
    _statement_options(t)
    t = tsub.add_parser(
        "list", help="list hold CAs and statements in a notation config", parents=[common, as_json]
    )
    _config_option(t)
    t = tsub.add_parser(
        "pin",
        help="trust one DID's signatures for one repository (REGISTRY/REPO)",
        parents=[common, as_json],
    )
    t.add_argument("scope", metavar="REGISTRY/REPO", help="registry scope, e.g. atcr.io/alice/app")
    t.add_argument("did", metavar="DID", help="the signer's DID (did:plc or did:web)")
    t.add_argument("--name", help="the hold's trust store (default: the only one)")
    _config_option(t)
    t = tsub.add_parser(
        "remove",
        help="remove a hold's trust store and the statements holdca wrote for it",
        parents=[common, as_json],
    )
    t.add_argument("name", metavar="NAME", help="trust store name (see trust list)")
    _config_option(t)
