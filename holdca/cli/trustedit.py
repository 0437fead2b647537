"""``holdca trust list``, ``pin`` and ``remove``: read and edit what holdca wrote into a
notation configuration (the hold trust stores and their statements).

A *hold store* is a trust store holding a hold root (CN ``ATCR Hold CA... - <DID>``); its
*statements* are the trust policy statements whose only trust store it is
(:func:`holdca.notation.holdtrust.hold_statements`). ``remove`` deletes exactly those, and
the store; every other store and statement is kept.
"""

from __future__ import annotations

# ruff: noqa: PLC0415
import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509

from holdca.cli import common as c
from holdca.cli.trustcommon import notation_dir
from holdca.errors import DIDSyntaxError, HoldCAError, TrustPolicyError

__all__ = ["HoldStore", "hold_stores", "trust_list", "trust_pin", "trust_remove"]


class HoldStore:
    """A trust store holding a hold's roots (a root CN ``ATCR Hold CA... - <DID>``)."""

    def __init__(self, store_type: str, name: str, certs: Sequence[x509.Certificate]) -> None:
        """The store ``store_type:name`` and the certificates read from it."""
        from holdca.notation.holdtrust import hold_did_of

        self.type = store_type
        self.name = name
        self.certs = list(certs)
        self.dids = [hold_did_of(cert) for cert in self.certs]

    @property
    def ref(self) -> str:
        """``type:name``, as trust policy statements name it."""
        return f"{self.type}:{self.name}"


def hold_stores(config_dir: Path, name: str | None = None) -> list[HoldStore]:
    """The stores under ``config_dir`` (named ``name``, if given) that hold a hold root;
    unreadable files are skipped, as ``trust list`` always did."""
    from holdca.notation.truststore import read_certificate_file

    base = config_dir / "truststore" / "x509"
    found: list[HoldStore] = []
    for store_type in ("ca", "signingAuthority"):
        directory = base / store_type
        if not directory.is_dir():
            continue
        for store in sorted(p for p in directory.iterdir() if p.is_dir()):
            if name is not None and store.name != name:
                continue
            certs: list[x509.Certificate] = []
            for file in sorted(store.iterdir()):
                try:
                    certs += read_certificate_file(file.read_bytes(), str(file))
                except (HoldCAError, OSError):
                    continue
            held = HoldStore(store_type, store.name, certs)
            if any(held.dids):
                found.append(held)
    return found


def trust_list(args: argparse.Namespace) -> int:
    """``trust list``: the hold stores, their roots and statements (what each trusts)."""
    from holdca.notation.holdtrust import hold_statements, statement_trusts
    from holdca.notation.truststore import read_trust_policy, trust_policy_path

    config_dir = notation_dir(args)
    policy = read_trust_policy(config_dir)
    stores = hold_stores(config_dir)
    holds: list[dict[str, str]] = []
    described: list[dict[str, Any]] = []
    lines: list[str] = []
    for store in stores:
        certs = []
        for cert, did in zip(store.certs, store.dids, strict=True):
            if did is None:
                continue
            row = {
                "store": store.ref,
                "holdDid": did,
                "sha256": c.fingerprint(cert),
                "notAfter": cert.not_valid_after_utc.isoformat(),
            }
            holds.append(row)
            certs.append({**row, "subject": cert.subject.rfc4514_string()})
            lines.append(
                f"{store.ref}  {did}  SHA-256 {row['sha256']}  until {row['notAfter'][:10]}"
            )
        statements = []
        for statement in hold_statements(policy, store.ref):
            trusts = statement_trusts(statement)
            statements.append({**statement.to_json(), "trusts": trusts})
            who = {
                "any": "any certificate chaining to these roots",
                "hold": "every user of the hold",
            }.get(trusts["identities"], "only " + ", ".join(trusts["dids"]))
            lines.append(f"  statement {statement.name!r}: {', '.join(trusts['scopes'])}: {who}")
        if not statements:
            lines.append(
                f"  no statement: notation trusts nothing from it (holdca trust pin "
                f"REGISTRY/REPO DID --name {store.name})"
            )
        described.append(
            {
                "store": store.ref,
                "name": store.name,
                "type": store.type,
                "certificates": certs,
                "statements": statements,
            }
        )
    policy_path = trust_policy_path(config_dir) if policy is not None else None
    c.emit(
        args,
        {
            "holds": holds,
            "stores": described,
            "policy": str(policy_path) if policy_path is not None else None,
        },
        "\n".join(lines) or "no hold CAs in this notation configuration",
    )
    return 0


def _one_store(config_dir: Path, name: str | None) -> HoldStore:
    """The hold store named ``name`` (or the only one), else a UsageError listing them."""
    stores = hold_stores(config_dir, name)
    if len(stores) == 1:
        return stores[0]
    if not stores:
        what = f"named {name!r} " if name else ""
        raise c.UsageError(
            f"no hold trust store {what}in {config_dir} (run holdca trust add first)"
        )
    names = ", ".join(s.ref for s in stores)
    raise c.UsageError(f"several hold trust stores ({names}): choose one with --name")


def trust_pin(args: argparse.Namespace) -> int:
    """``trust pin REGISTRY/REPO DID``: trust only that DID's leaves of the hold there.

    Raises:
        UsageError: a bad scope or DID, "*", no such hold store (or several, no --name).
        TrustPolicyError: another statement already covers the scope.
    """
    from holdca.atproto.did import validate_account_did
    from holdca.notation.holdtrust import hold_identities, pin_name, with_pin
    from holdca.notation.trustpolicy import validate_registry_scope
    from holdca.notation.truststore import read_trust_policy, write_trust_policy

    if args.scope == "*":
        raise c.UsageError(
            "pin one repository (REGISTRY/REPO); to trust every user of the hold everywhere "
            "use trust add/install --scope '*'"
        )
    try:
        validate_registry_scope(args.scope)
        validate_account_did(args.did)
    except (TrustPolicyError, DIDSyntaxError) as exc:
        raise c.UsageError(str(exc)) from None
    config_dir = notation_dir(args)
    store = _one_store(config_dir, args.name)
    identities = hold_identities(
        [cert for cert, d in zip(store.certs, store.dids, strict=True) if d], args.did
    )
    policy = with_pin(
        read_trust_policy(config_dir), ref=store.ref, scope=args.scope, identities=identities
    )
    path = write_trust_policy(config_dir, policy)
    name = pin_name(store.name, args.scope)
    statement = next(s for s in policy.statements if s.name == name)
    c.emit(
        args,
        {"store": store.ref, "policy": str(path), "statement": statement.to_json()},
        f"trust policy statement {name!r} written to {path}\n"
        f"  {args.scope}: only signatures whose certificate chains to {store.ref} and has "
        "the subject\n"
        + "".join(f"    {i}\n" for i in statement.trusted_identities)
        + "  any other DID's signature, or another hold's, fails verification there",
    )
    return 0


def trust_remove(args: argparse.Namespace) -> int:
    """``trust remove NAME``: the hold store(s) NAME and their statements, nothing else.

    Raises:
        UsageError: no hold store of that name (other stores are never removed).
        TrustStoreError: the store holds a link or directory (nothing removed).
    """
    from holdca.notation.holdtrust import without_store
    from holdca.notation.truststore import (
        read_trust_policy,
        remove_trust_policy,
        remove_trust_store,
        write_trust_policy,
    )

    config_dir = notation_dir(args)
    stores = hold_stores(config_dir, args.name)
    if not stores:
        raise c.UsageError(f"no hold trust store named {args.name!r} in {config_dir}")
    policy = read_trust_policy(config_dir)
    removed: list[str] = []
    others: list[str] = []
    for store in stores:
        policy, gone, still = without_store(policy, store.ref)
        removed += gone
        others += still
    if removed:
        if policy is None:
            remove_trust_policy(config_dir)
        else:
            write_trust_policy(config_dir, policy)
    files = sum(remove_trust_store(config_dir, s.type, s.name) for s in stores)
    refs = [s.ref for s in stores]
    c.emit(
        args,
        {"stores": refs, "files": files, "statements": removed, "stillReferencing": others},
        f"removed trust store {', '.join(refs)} ({files} file(s)) and "
        f"{len(removed)} statement(s){': ' + ', '.join(removed) if removed else ''}"
        + "".join(
            f"\n  warning: statement {n!r} still lists the removed store (not holdca's: "
            "kept; notation fails verification under it)"
            for n in others
        ),
    )
    return 0
