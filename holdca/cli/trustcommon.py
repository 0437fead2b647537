"""What the ``trust`` subcommands share: the notation directory, the store type of a
scheme, and writing a hold's store (and, with ``--scope``, its hold statement)."""

from __future__ import annotations

# ruff: noqa: PLC0415
import argparse
import re
from pathlib import Path
from typing import Any

from cryptography import x509

from holdca.cli import common as c
from holdca.errors import HoldCAError, TrustPolicyError, TrustStoreError

__all__ = ["notation_dir", "store_type_of", "write_trust", "written_text"]


def notation_dir(args: argparse.Namespace) -> Path:
    """``--config DIR``, else the directory notation itself uses (ConfigError if none)."""
    from holdca.notation.truststore import default_config_dir

    return Path(args.notation_config) if args.notation_config else default_config_dir()


def store_type_of(scheme: Any) -> str:
    """The trust store type for a signing scheme (``ca`` or ``signingAuthority``)."""
    from holdca.notation import SigningScheme

    return "ca" if scheme is SigningScheme.X509 else "signingAuthority"


def write_trust(
    args: argparse.Namespace,
    *,
    config_dir: Path,
    store: str,
    store_type: str,
    bundle: list[x509.Certificate],
    identities: list[str] | None,
    exact: bool = False,
) -> dict[str, Any]:
    """Write ``bundle`` as store ``store_type:store`` and, with ``--scope``, the hold
    statement named ``store`` for those scopes with ``identities`` (None: ``"*"``).

    The new policy is validated before anything is written. Returns what was written.

    With ``exact`` the store ends up holding exactly ``bundle`` (``trust add``), else the
    roots are added beside the ones it holds (``trust install``).

    Raises:
        UsageError: ``--any-identity`` without ``--scope``; an invalid store name or scope.
        TrustStoreError: the store already holds a certificate that is not a root of this
            hold (by the hold DID of the roots' CN): a name shared by two holds would make
            each one's statements trust the other's roots.
        TrustPolicyError: the merged policy is one notation would reject (a scope already
            in another statement), or the existing policy is invalid.
    """
    from holdca.notation.holdtrust import with_statement
    from holdca.notation.trustpolicy import hold_trust_policy, validate_registry_scope
    from holdca.notation.truststore import (
        read_trust_policy,
        write_trust_policy,
        write_trust_store,
    )

    if args.any_identity and not args.scope:
        raise c.UsageError("--any-identity needs --scope (without a scope no statement is written)")
    if not re.fullmatch(r"[a-zA-Z0-9_.-]+", store):
        raise c.UsageError(f"trust store name {store[:80]!r} must match [a-zA-Z0-9_.-]+")
    for scope in args.scope or ():
        if scope != "*":
            try:
                validate_registry_scope(scope)
            except TrustPolicyError as exc:
                raise c.UsageError(f"--scope: {exc}") from None
    policy = read_trust_policy(config_dir)
    new_policy = None
    statement = None
    if args.scope:
        statement = hold_trust_policy(
            store=store,
            scheme=_scheme(store_type),
            identities=None if args.any_identity else identities,
            registry_scopes=args.scope,
            name=store,
        ).statements[0]
        new_policy = with_statement(policy, statement)
    if _foreign(config_dir, store_type, store, bundle):
        raise TrustStoreError(
            f"trust store {store_type}:{store} already holds certificates that are not this "
            f"hold's roots; choose another name or run `holdca trust remove {store}` first"
        )
    paths = write_trust_store(config_dir, store, bundle, type=store_type, exact=exact)
    policy_path = write_trust_policy(config_dir, new_policy) if new_policy is not None else None
    return {
        "store": f"{store_type}:{store}",
        "files": [str(p) for p in paths],
        "policy": str(policy_path) if policy_path is not None else None,
        "statement": statement.to_json() if statement is not None else None,
    }


def _foreign(config_dir: Path, store_type: str, store: str, bundle: list[x509.Certificate]) -> bool:
    """Whether store ``store_type:store`` holds a file that is not a root of the hold whose
    roots are ``bundle`` (by the hold DID in the roots' CN): a name collision."""
    from holdca.notation.holdtrust import hold_did_of
    from holdca.notation.truststore import read_certificate_file

    ours = {hold_did_of(cert) for cert in bundle} - {None}
    directory = config_dir / "truststore" / "x509" / store_type / store
    if not directory.is_dir():
        return directory.exists() or directory.is_symlink()
    for file in directory.iterdir():
        try:
            certs = read_certificate_file(file.read_bytes(), str(file))
        except (HoldCAError, OSError):
            return True
        if any(hold_did_of(cert) not in ours for cert in certs):
            return True
    return False


def _scheme(store_type: str) -> Any:
    from holdca.notation import SigningScheme

    return SigningScheme.X509 if store_type == "ca" else SigningScheme.SIGNING_AUTHORITY


def written_text(result: dict[str, Any], count: int) -> str:
    """The text report of :func:`write_trust` (store, files, statement or how to pin)."""
    store = result["store"]
    name = store.partition(":")[2]
    text = f"trust store {store}: {count} hold root(s) written\n" + "".join(
        f"  {p}\n" for p in result["files"]
    )
    if result["statement"] is None:
        return text + (
            "no trust policy statement written: notation trusts nothing from this store yet.\n"
            f"  trust one DID for one repository:  holdca trust pin REGISTRY/REPO DID "
            f"--name {name}\n"
            "  or every user of the hold:          run again with --scope REGISTRY/REPO (or '*')"
        )
    st = result["statement"]
    who = "any certificate" if st["trustedIdentities"] == ["*"] else "every user of the hold"
    return text + (
        f"trust policy statement {st['name']!r} written to {result['policy']}: "
        f"{who} for {', '.join(st['registryScopes'])}"
    )
