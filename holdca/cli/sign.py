"""Co-signing from the command line: ``cosign`` and ``resign`` an image in an OCI layout
(``--layout DIR --image TAG``) or in a registry (``--image REGISTRY/REPO@sha256:...``).

Registry credentials come from the environment only (``HOLDCA_REGISTRY_USERNAME`` and
``HOLDCA_REGISTRY_PASSWORD``, or a docker ``config.json``), never from flags."""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast and the
# optional extras (server, pkcs11) are only needed by the commands that use them.
# ruff: noqa: PLC0415
import argparse
from datetime import timedelta
from typing import TYPE_CHECKING

from holdca.cli import common as c

if TYPE_CHECKING:
    from holdca.notation.formats import SignatureFormat

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
    if args.layout is None:
        return _cosign_registry(args, did, resolver)
    if args.insecure_registry:
        raise c.UsageError("--insecure-registry: only for a registry --image, not --layout")
    layout = OCILayout(args.layout)
    image = layout.resolve(args.image)
    ca = c.open_ca(args, resolver=resolver)
    request = CosignRequest(
        did=did,
        descriptor=image,
        record_uri=args.uri,
        caller=did,
        validity=timedelta(hours=args.validity_hours) if args.validity_hours else None,
        signature_format=_format(args),
    )
    method = ca.resign if args.command == "resign" else ca.cosign
    resp = method(request, now=c.now())
    sig = layout.attach_signature(image, resp.envelope, media_type=resp.signature_format.value)
    c.emit(
        args,
        {
            "serial": c.serial_text(resp.serial),
            "did": did,
            "image": image.digest,
            "signatureManifest": sig.digest,
            "signatureFormat": resp.signature_format.value,
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


def _format(args: argparse.Namespace) -> SignatureFormat | None:
    """The ``--format`` the caller asked for (None: the hold's HOLD_SIGNATURE_FORMAT)."""
    from holdca.notation.formats import SignatureFormat

    return None if args.format is None else SignatureFormat.parse(args.format, "--format")


def _cosign_registry(args: argparse.Namespace, did: str, resolver: object) -> int:
    from holdca.errors import MalformedInputError
    from holdca.registry import (
        RegistryClient,
        cosign_image,
        credentials_from_env,
        parse_image_reference,
    )

    try:
        ref = parse_image_reference(args.image)
    except MalformedInputError as exc:
        raise c.UsageError(
            f"--image: {exc} (without --layout, --image names an image in a registry)"
        ) from None
    credentials = credentials_from_env(ref.registry)
    ca = c.open_ca(args, resolver=resolver)
    with (
        RegistryClient(
            ref.registry, credentials=credentials, insecure=args.insecure_registry
        ) as client,
        client.deadline(300),
    ):
        done = cosign_image(
            ca,
            ref,
            record_uri=args.uri,
            did=did,
            now=c.now(),
            client=client,
            validity=timedelta(hours=args.validity_hours) if args.validity_hours else None,
            resign=args.command == "resign",
            signature_format=_format(args),
        )
    resp = done.response
    c.emit(
        args,
        {
            "serial": c.serial_text(resp.serial),
            "did": did,
            "image": str(done.image),
            "signatureManifest": done.signature.manifest.digest,
            "referrers": done.signature.form,
            "signatureFormat": resp.signature_format.value,
            "notAfter": resp.record.not_after.isoformat(),
            "commitCid": resp.record.commit_cid,
            "rev": resp.record.rev,
        },
        f"{'re-signed' if args.command == 'resign' else 'co-signed'} {done.image} for {did}\n"
        f"  certificate serial {c.serial_text(resp.serial)}, valid until "
        f"{resp.record.not_after:%Y-%m-%d %H:%M}Z\n"
        f"  signature manifest {done.signature.manifest.digest} pushed "
        f"({done.signature.form})",
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
        p.add_argument(
            "--layout",
            metavar="DIR",
            help="OCI image layout (default: --image is in a registry and the signature is "
            "pushed there)",
        )
        p.add_argument(
            "--image",
            required=True,
            help="tag or sha256: digest in the layout, or REGISTRY/REPO@sha256:... (or "
            ":tag) without --layout",
        )
        p.add_argument(
            "--insecure-registry",
            action="store_true",
            help="talk plain http to the registry (localhost included: nothing is implied); "
            "credentials: HOLDCA_REGISTRY_USERNAME/HOLDCA_REGISTRY_PASSWORD or docker "
            "config.json",
        )
        p.add_argument("--did", help="the user DID (default: the URI's)")
        p.add_argument(
            "--format",
            choices=["jws", "cose"],
            help="envelope format: JWS (application/jose+json) or COSE (application/cose) "
            "(default: HOLD_SIGNATURE_FORMAT, jws)",
        )
        p.add_argument(
            "--validity-hours",
            type=int,
            metavar="HOURS",
            help="certificate validity (default and maximum: HOLD_CERT_VALIDITY_HOURS, 24)",
        )
