"""Trust for relying parties: ``trust export``, ``trust install``, ``trust list``."""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast and the
# optional extras (server, pkcs11) are only needed by the commands that use them.
# ruff: noqa: PLC0415
import argparse
from pathlib import Path
from typing import Any

from cryptography import x509

from holdca._fs import atomic_write
from holdca.cli import common as c
from holdca.errors import HoldCAError

__all__ = ["register"]


def _cmd_trust(args: argparse.Namespace) -> int:
    if args.trust_command == "list":
        return _trust_list(args)
    if args.trust_command == "install" and args.ca_file:
        return _trust_install_file(args)
    ca = c.open_ca(args)
    bundle = ca.trust_bundle(c.now())
    if args.trust_command == "export":
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
    return _trust_install(args, ca.scheme, ca.subject, bundle)


def _trust_install_file(args: argparse.Namespace) -> int:
    """``trust install --ca-file``: a relying party with the hold's published roots only."""
    from holdca.notation import SigningScheme
    from holdca.pki import SubjectInfo

    data = c.read(args.ca_file, "CA certificate file")
    try:
        bundle = x509.load_pem_x509_certificates(data)
    except (ValueError, x509.InvalidVersion):
        raise c.UsageError(f"{args.ca_file}: not a PEM certificate file") from None
    first = bundle[0].subject

    def attr(oid: x509.ObjectIdentifier) -> str | None:
        values = first.get_attributes_for_oid(oid)
        return str(values[0].value) if values else None

    country, state, org = (
        attr(x509.NameOID.COUNTRY_NAME),
        attr(x509.NameOID.STATE_OR_PROVINCE_NAME),
        attr(x509.NameOID.ORGANIZATION_NAME),
    )
    if not (country and state and org):
        raise c.UsageError(f"{args.ca_file}: the root's subject lacks C, ST or O")
    subject = SubjectInfo(
        country=country,
        state=state,
        organization=org,
        locality=attr(x509.NameOID.LOCALITY_NAME),
    )
    return _trust_install(args, SigningScheme(args.scheme), subject, bundle)


def _trust_install(
    args: argparse.Namespace, scheme: Any, subject: Any, bundle: list[x509.Certificate]
) -> int:
    from holdca.notation import SigningScheme
    from holdca.notation.trustpolicy import (
        TrustPolicy,
        hold_trust_policy,
        validate_trust_policy,
        x509_subject_identity,
    )
    from holdca.notation.truststore import write_trust_policy, write_trust_store

    config_dir = Path(args.notation_config)
    store_type = "ca" if scheme is SigningScheme.X509 else "signingAuthority"
    identities = None
    if not args.any_identity:
        identities = [
            x509_subject_identity(
                None,
                country=subject.country,
                state=subject.state,
                organization=subject.organization,
                locality=subject.locality,
            )
        ]
    ours = hold_trust_policy(
        store=args.store,
        scheme=scheme,
        identities=identities,
        registry_scopes=args.scope or ["*"],
        name=args.store,
    ).statements[0]
    path = config_dir / "trustpolicy.json"
    statements = [ours]
    if path.is_file():
        existing = validate_trust_policy(path.read_bytes())
        statements = [s for s in existing.statements if s.name != ours.name] + [ours]
    policy = TrustPolicy(tuple(statements))
    paths = write_trust_store(config_dir, args.store, bundle, type=store_type)
    write_trust_policy(config_dir, policy)
    c.emit(
        args,
        {
            "store": f"{store_type}:{args.store}",
            "files": [str(p) for p in paths],
            "policy": str(path),
        },
        f"trust store {store_type}:{args.store} now holds {len(paths)} hold root(s)\n"
        + "".join(f"  {p}\n" for p in paths)
        + f"trust policy statement {ours.name!r} written to {path}",
    )
    return 0


def _trust_list(args: argparse.Namespace) -> int:
    from holdca.notation.truststore import read_certificate_file

    base = Path(args.notation_config) / "truststore" / "x509"
    found: list[dict[str, str]] = []
    for store_type in ("ca", "signingAuthority"):
        directory = base / store_type
        if not directory.is_dir():
            continue
        for store in sorted(p for p in directory.iterdir() if p.is_dir()):
            for file in sorted(store.iterdir()):
                try:
                    certs = read_certificate_file(file.read_bytes(), str(file))
                except (HoldCAError, OSError):
                    continue
                for cert in certs:
                    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
                    cn = str(cns[0].value) if cns else ""
                    if not cn.startswith("ATCR Hold CA") or " - " not in cn:
                        continue
                    found.append(
                        {
                            "store": f"{store_type}:{store.name}",
                            "holdDid": cn.split(" - ", 1)[1],
                            "sha256": c.fingerprint(cert),
                            "notAfter": cert.not_valid_after_utc.isoformat(),
                        }
                    )
    c.emit(
        args,
        {"holds": found},
        "\n".join(
            f"{h['store']}  {h['holdDid']}  SHA-256 {h['sha256'][:23]}...  "
            f"until {h['notAfter'][:10]}"
            for h in found
        )
        or "no hold CAs in this notation configuration",
    )
    return 0


def register(
    add: c.Adder, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:
    """Add this module's commands to the parser (``add`` makes one subcommand)."""
    p = add("trust", _cmd_trust, "export the CA or configure notation to trust it")
    tsub = p.add_subparsers(dest="trust_command", required=True, metavar="ACTION")
    t = tsub.add_parser(
        "export",
        help="print the trusted roots with SHA-256 fingerprints",
        parents=[common, as_json],
    )
    t.add_argument("--out", metavar="FILE", help="write the PEM bundle here")
    t = tsub.add_parser(
        "install",
        help="write a notation trust store and trust policy statement",
        parents=[common, as_json],
    )
    t.add_argument("--notation-config", required=True, metavar="DIR", help="NOTATION_CONFIG dir")
    t.add_argument(
        "--ca-file",
        metavar="FILE",
        help="the hold's published roots (PEM, e.g. from <hold>/ca-bundle.crt) instead of --home",
    )
    t.add_argument(
        "--scheme",
        default="notary.x509",
        choices=["notary.x509", "notary.x509.signingAuthority"],
        help="with --ca-file: the hold's signing scheme",
    )
    t.add_argument("--store", default="holdca", help="trust store name (default holdca)")
    t.add_argument("--scope", action="append", help="registry scope (repeatable; default *)")
    t.add_argument(
        "--any-identity",
        action="store_true",
        help='trust "*" instead of the hold\'s C/ST/O identity',
    )
    t = tsub.add_parser(
        "list", help="list hold CAs trusted by a notation config", parents=[common, as_json]
    )
    t.add_argument("--notation-config", required=True, metavar="DIR")
