"""``holdca recover``: recover from a compromise of the hold's CA key, as one command.

``holdca recover --compromised --out DIR`` replaces the compromised issuing CA at once
(no grace period, no cross-certificate), revokes everything it issued that is still live
(``cACompromise``), re-signs every such image whose ATProto record still verifies, and
writes the signatures, the new trust bundle, the CRLs and a notice (JSON and text) to
``DIR``; ``--resume`` continues a recovery a crash interrupted; ``--dry-run`` changes
nothing. See :mod:`holdca.hold.recovery` and docs/operating.md.

Exit codes: 0 the recovery finished (images whose record no longer verifies are refused,
as they should be, and listed); 1 refused or not finished (images pending after
transient failures: run ``--resume``); 2 usage or configuration error.
"""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast.
# ruff: noqa: PLC0415
import argparse
from pathlib import Path

from holdca.cli import common as c

__all__ = ["register"]


def _cmd_recover(args: argparse.Namespace) -> int:
    from holdca.hold.recovery import descriptors_from_json, notice_text, recover
    from holdca.hold.setup import resolver_from_config, write_pem_certificate

    if args.concurrency < 1:
        raise c.UsageError("--concurrency must be at least 1")
    if args.out is None and not args.dry_run:
        raise c.UsageError("--out DIR is required (signatures, trust bundle and notice go there)")
    if args.new_root_label is not None and not args.root:
        raise c.UsageError("--new-root-label goes with --root")
    if args.resume and (args.root or args.new_label or args.new_root_label):
        raise c.UsageError(
            "--resume continues a recovery: --new-label and --root are for its start"
        )
    descriptors = None
    if args.descriptors is not None:
        descriptors = descriptors_from_json(c.read(args.descriptors, "descriptors file"))
    config = c.config(args)
    ca = c.open_ca(args, resolver=resolver_from_config(config))
    # Re-signing for every user at once must not trip the per-DID rate limit of this
    # process's policy (the server's own limiter is untouched).
    ca.policy.rate_limit = None
    now = c.now()
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    state = ca.state()
    new_label = args.new_label
    new_root_label = args.new_root_label
    if not args.resume and new_label is None:
        new_label = f"{state.active.key_label}-{stamp}"
    if args.root and state.active.parent_id is not None and new_root_label is None:
        new_root_label = f"{state.roots[0].key_label}-{stamp}"
    report = recover(
        ca,
        now=now,
        out_dir=None if args.out is None else Path(args.out),
        new_label=None if args.resume else new_label,
        root=args.root,
        new_root_label=new_root_label if args.root and state.active.parent_id else None,
        resume=args.resume,
        concurrency=args.concurrency,
        dry_run=args.dry_run,
        descriptors=descriptors,
        give_up=args.give_up,
    )
    if not args.dry_run:
        # the hold directory's certificate files follow the new CA
        write_pem_certificate(config.ca_cert_path, [ca.root_certificate])
        write_pem_certificate(
            config.ca_cert_path.with_name("ca-bundle.crt"),
            [info.certificate for info in report.trust_bundle],
        )
    text = notice_text(report)
    if not args.dry_run:
        text += (
            f"\nwritten to {args.out}: notice.txt, notice.json, trust-bundle.pem, crl/, "
            "signatures/\nrestart every `holdca serve` of this hold now: a running server "
            "still holds the old CA state"
        )
        if not report.finished:
            text += "\nNOT FINISHED: images are pending; run `holdca recover --resume --out DIR`"
    c.emit(args, report.to_json(), text.rstrip())
    return 0 if args.dry_run or report.finished else 1


def register(
    add: c.Adder, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:
    """Add this module's commands to the parser (``add`` makes one subcommand)."""
    p = add(
        "recover",
        _cmd_recover,
        "recover from a CA key compromise: revoke, replace the CA, re-sign, write a notice",
        as_json,
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--compromised",
        action="store_true",
        help="the issuing CA's key is compromised: start a recovery",
    )
    mode.add_argument(
        "--resume", action="store_true", help="continue the open (interrupted) recovery"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where the signatures, trust bundle, CRLs and notice go (the same DIR to resume)",
    )
    p.add_argument(
        "--new-label",
        help="key label of the new CA (default: the old label plus a timestamp)",
    )
    p.add_argument(
        "--root",
        action="store_true",
        help="an intermediate hold whose root key is compromised too: replace both",
    )
    p.add_argument("--new-root-label", help="with --root: key label of the new root")
    p.add_argument(
        "--concurrency", type=int, default=4, help="images re-signed at once (default 4)"
    )
    p.add_argument("--dry-run", action="store_true", help="print what would happen; change nothing")
    p.add_argument(
        "--descriptors",
        metavar="FILE",
        help="JSON (list, digest map or lines) of image descriptors, when the records "
        "state no manifest size",
    )
    p.add_argument(
        "--give-up",
        action="store_true",
        help="mark images still pending after this run refused, and finish the recovery",
    )
