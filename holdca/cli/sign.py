"""Co-signing from the command line: ``cosign`` and ``resign`` an image in an OCI layout."""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast and the
# optional extras (server, pkcs11) are only needed by the commands that use them.
# ruff: noqa: PLC0415
import argparse
from datetime import timedelta

from holdca.cli import common as c

__all__ = ["register"]


def _cmd_cosign(args: argparse.Namespace) -> int:
    from holdca.atproto.identity import Resolver, VouchedResolver
    from holdca.atproto.syntax import parse_record_uri
    from holdca.hold.service import CosignRequest
    from holdca.hold.setup import resolver_from_config
    from holdca.notation.oci import OCILayout

    if (args.did_doc is None) != (args.car is None):
        raise c.UsageError(
            "--did-doc and --car go together (files you vouch for); give both, or neither "
            "to let the hold resolve the DID and fetch the proof itself"
        )
    if args.validity_hours is not None and args.validity_hours < 1:
        raise c.UsageError(f"--validity-hours: must be at least 1, got {args.validity_hours}")
    vouched = None
    if args.did_doc is not None:
        vouched = (c.read(args.did_doc, "DID document"), c.read(args.car, "getRecord CAR"))
    did = args.did or parse_record_uri(args.uri)[0]
    resolver: Resolver
    if vouched is not None:
        resolver = VouchedResolver(did, *vouched)
    else:
        resolver = resolver_from_config(c.config(args))
    layout = OCILayout(args.layout)
    image = layout.resolve(args.image)
    ca = c.open_ca(args, resolver=resolver)
    request = CosignRequest(
        did=did,
        descriptor=image,
        record_uri=args.uri,
        caller=did,
        validity=timedelta(hours=args.validity_hours) if args.validity_hours else None,
    )
    method = ca.resign if args.command == "resign" else ca.cosign
    resp = method(request, now=c.now())
    sig = layout.attach_signature(image, resp.envelope)
    c.emit(
        args,
        {
            "serial": c.serial_text(resp.serial),
            "did": did,
            "image": image.digest,
            "signatureManifest": sig.digest,
            "notAfter": resp.record.not_after.isoformat(),
            "commitCid": resp.record.commit_cid,
            "rev": resp.record.rev,
        },
        f"{'re-signed' if args.command == 'resign' else 'co-signed'} {image.digest} for {did}\n"
        f"  certificate serial {c.serial_text(resp.serial)}, valid until "
        f"{resp.record.not_after:%Y-%m-%d %H:%M}Z\n"
        f"  signature manifest {sig.digest} attached to {args.layout}",
    )
    return 0


def register(
    add: c.Adder, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:
    """Add this module's commands to the parser (``add`` makes one subcommand)."""
    for name, text in (
        ("cosign", "verify an ATProto record proof and co-sign the image in an OCI layout"),
        ("resign", "re-verify the proof and issue a fresh signature for an older image"),
    ):
        p = add(name, _cmd_cosign, text, as_json)
        p.add_argument(
            "--did-doc",
            metavar="FILE",
            help="DID document JSON you vouch for (offline; default: the hold resolves the DID)",
        )
        p.add_argument(
            "--car",
            metavar="FILE",
            help="getRecord CAR you vouch for (with --did-doc; default: fetched from the PDS)",
        )
        p.add_argument("--uri", required=True, help="at://<did>/io.atcr.manifest/<rkey>")
        p.add_argument("--layout", required=True, metavar="DIR", help="OCI image layout")
        p.add_argument("--image", required=True, help="tag or sha256: digest in the layout")
        p.add_argument("--did", help="the user DID (default: the URI's)")
        p.add_argument(
            "--validity-hours",
            type=int,
            metavar="HOURS",
            help="certificate validity (default and maximum: HOLD_CERT_VALIDITY_HOURS, 24)",
        )
