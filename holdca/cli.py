"""The ``holdca`` command line: run a hold CA from a shell.

Configuration comes from ``HOLD_*`` environment variables (see :mod:`holdca.hold.config`)
and, for convenience, from a hold directory (``--home DIR`` or ``$HOLDCA_HOME``): ``init``
writes ``DIR/hold.json`` with the non-secret settings and keeps the CA certificate
(``ca.crt``), the PEM keys (``keys/``) and the ledger (``ledger.sqlite3``) there.
Environment variables override the file. Secrets (PINs, passphrases) are only read from
the environment or ``*_FILE`` variables, never written.

Exit codes: 0 success; 1 the operation was refused or failed (bad proof, policy, revoked,
ledger, key store); 2 usage or configuration error. Errors are one line on stderr.

Commands: ``init``, ``issue``, ``cosign``, ``resign``, ``revoke``, ``deny``, ``allow``,
``denied``, ``crl``, ``ocsp``, ``rotate``, ``trust {export,install,list}``, ``serve``,
``demo``. Run ``holdca CMD --help``.
"""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast and the
# optional extras (server, pkcs11) are only needed by the commands that use them.
# ruff: noqa: PLC0415
import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca._fs import atomic_write
from holdca.errors import ConfigError, HoldCAError, MalformedInputError

__all__ = ["main"]


class _UsageError(Exception):
    """A command-line mistake (exit code 2)."""


# ----------------------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _home(args: argparse.Namespace) -> Path | None:
    home = args.home or os.environ.get("HOLDCA_HOME")
    return Path(home) if home else None


def _environment(args: argparse.Namespace) -> dict[str, str]:
    env: dict[str, str] = {}
    home = _home(args)
    if home is not None:
        env["HOLD_CA_CERT_PATH"] = str(home / "ca.crt")
        env["HOLD_CA_KEY_PATH"] = str(home / "keys")
        env["HOLD_LEDGER_PATH"] = str(home / "ledger.sqlite3")
        settings = home / "hold.json"
        if settings.is_file():
            try:
                stored = json.loads(settings.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{settings}: not a readable JSON file ({exc})") from None
            if not isinstance(stored, dict):
                raise ConfigError(f"{settings}: must be a JSON object")
            env.update({str(k): str(v) for k, v in stored.items()})
    env.update({k: v for k, v in os.environ.items() if k.startswith("HOLD_")})
    return env


def _config(args: argparse.Namespace) -> Any:
    from holdca.hold.config import HoldConfig

    return HoldConfig.from_env(_environment(args))


def _open(args: argparse.Namespace, **options: Any) -> Any:
    from holdca.hold.policy import AllowAllAuthorizer
    from holdca.hold.setup import open_hold

    # The operator runs the CLI: the ATProto proof is the gate, there is no remote caller.
    options.setdefault("authorizer", AllowAllAuthorizer())
    return open_hold(_config(args), now=_now(), **options)


def _fingerprint(cert: x509.Certificate) -> str:
    from holdca.hold.service import ca_id_of

    hexa = ca_id_of(cert).upper()
    return ":".join(hexa[i : i + 2] for i in range(0, len(hexa), 2))


def _pem(certs: Sequence[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _UsageError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from None


def _time(text: str, what: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _UsageError(f"{what}: not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _serial(text: str) -> int:
    try:
        return int(text.lower().removeprefix("0x").replace(":", ""), 16)
    except ValueError:
        raise _UsageError(f"--serial: not a hexadecimal serial number: {text!r}") from None


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(text)


# ----------------------------------------------------------------------------- commands


def _cmd_init(args: argparse.Namespace) -> int:
    home = _home(args)
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        settings = home / "hold.json"
        stored: dict[str, str] = {}
        if settings.is_file():
            stored = json.loads(settings.read_text(encoding="utf-8"))
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

        HoldConfig.from_env({**_environment(args), **stored})
        atomic_write(settings, (json.dumps(stored, indent=2, sort_keys=True) + "\n").encode())
    elif any(v is not None for v in (args.did, args.country, args.state, args.org)):
        raise _UsageError("--did/--country/--state/--org need --home (or set HOLD_* variables)")
    config = _config(args)
    existed = config.ca_cert_path is not None and config.ca_cert_path.exists()
    ca = _open(args, create=True)
    cert = ca.root_certificate
    _emit(
        args,
        {
            "holdDid": ca.hold_did,
            "caCertificate": str(config.ca_cert_path),
            "sha256": _fingerprint(cert).replace(":", "").lower(),
            "subject": cert.subject.rfc4514_string(),
            "notAfter": cert.not_valid_after_utc.isoformat(),
            "created": not existed,
        },
        f"{'hold CA already initialised' if existed else 'created hold CA'} for {ca.hold_did}\n"
        f"  certificate: {config.ca_cert_path}\n"
        f"  subject:     {cert.subject.rfc4514_string()}\n"
        f"  SHA-256:     {_fingerprint(cert)}\n"
        f"  valid until: {cert.not_valid_after_utc:%Y-%m-%d}",
    )
    return 0


def _cmd_issue(args: argparse.Namespace) -> int:
    data = _read(args.public_key, "public key")
    try:
        public_key = serialization.load_pem_public_key(data)
    except ValueError:
        raise _UsageError(f"{args.public_key}: not a PEM public key") from None
    ca = _open(args)
    validity = timedelta(hours=args.validity_hours) if args.validity_hours else None
    chain = ca.issue(args.did, public_key, now=_now(), validity=validity)
    pem = _pem(chain)
    if args.out:
        atomic_write(Path(args.out), pem.encode("ascii"))
    leaf = chain[0]
    summary = (
        f"issued serial {leaf.serial_number:x} to {args.did}, valid until "
        f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M}Z"
    )
    _emit(
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


def _cmd_cosign(args: argparse.Namespace) -> int:
    from holdca.atproto.identity import Resolver, VouchedResolver
    from holdca.atproto.syntax import parse_record_uri
    from holdca.hold.service import CosignRequest
    from holdca.hold.setup import resolver_from_config
    from holdca.notation.oci import OCILayout

    if (args.did_doc is None) != (args.car is None):
        raise _UsageError(
            "--did-doc and --car go together (files you vouch for); give both, or neither "
            "to let the hold resolve the DID and fetch the proof itself"
        )
    vouched = None
    if args.did_doc is not None:
        vouched = (_read(args.did_doc, "DID document"), _read(args.car, "getRecord CAR"))
    did = args.did or parse_record_uri(args.uri)[0]
    resolver: Resolver
    if vouched is not None:
        resolver = VouchedResolver(did, *vouched)
    else:
        resolver = resolver_from_config(_config(args))
    layout = OCILayout(args.layout)
    image = layout.resolve(args.image)
    ca = _open(args, resolver=resolver)
    request = CosignRequest(
        did=did,
        descriptor=image,
        record_uri=args.uri,
        caller=did,
        validity=timedelta(hours=args.validity_hours) if args.validity_hours else None,
    )
    method = ca.resign if args.command == "resign" else ca.cosign
    resp = method(request, now=_now())
    sig = layout.attach_signature(image, resp.envelope)
    _emit(
        args,
        {
            "serial": format(resp.serial, "x"),
            "did": did,
            "image": image.digest,
            "signatureManifest": sig.digest,
            "notAfter": resp.record.not_after.isoformat(),
            "commitCid": resp.record.commit_cid,
            "rev": resp.record.rev,
        },
        f"{'re-signed' if args.command == 'resign' else 'co-signed'} {image.digest} for {did}\n"
        f"  certificate serial {resp.serial:x}, valid until "
        f"{resp.record.not_after:%Y-%m-%d %H:%M}Z\n"
        f"  signature manifest {sig.digest} attached to {args.layout}",
    )
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    if (args.serial is None) == (args.did is None):
        raise _UsageError("give exactly one of --serial or --did")
    if args.since and not args.did:
        raise _UsageError("--since needs --did")
    ca = _open(args)
    revs = ca.revoke(
        now=_now(),
        serial=_serial(args.serial) if args.serial else None,
        did=args.did,
        since=_time(args.since, "--since") if args.since else None,
        reason=args.reason,
        invalidity_date=(
            _time(args.invalidity_date, "--invalidity-date") if args.invalidity_date else None
        ),
    )
    _emit(
        args,
        {
            "revoked": [
                {
                    "serial": format(r.serial, "x"),
                    "revokedAt": r.revoked_at.isoformat(),
                    "reason": r.reason,
                }
                for r in revs
            ]
        },
        "\n".join(f"revoked {r.serial:x} ({r.reason or 'no reason'})" for r in revs)
        or "nothing to revoke (no certificates matched)",
    )
    return 0


def _cmd_crl(args: argparse.Namespace) -> int:
    ca = _open(args)
    crl = ca.crl(_now())
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    if args.out:
        atomic_write(Path(args.out), crl.public_bytes(serialization.Encoding.DER))
        _emit(
            args,
            {"crlNumber": number, "entries": len(crl), "path": args.out},
            f"CRL #{number} with {len(crl)} entries written to {args.out} (DER)",
        )
    elif args.json:
        pem = crl.public_bytes(serialization.Encoding.PEM).decode()
        _emit(args, {"crlNumber": number, "entries": len(crl), "pem": pem}, pem)
    else:
        sys.stdout.write(crl.public_bytes(serialization.Encoding.PEM).decode())
    return 0


def _cmd_ocsp(args: argparse.Namespace) -> int:
    if (args.request is None) == (args.serial is None):
        raise _UsageError("give exactly one of --request FILE or --serial HEX")
    ca = _open(args)
    if args.request is not None:
        if not args.out:
            raise _UsageError("--request needs --out FILE for the DER response")
        der = ca.ocsp(_read(args.request, "OCSP request"), now=_now())
        atomic_write(Path(args.out), der)
        print(f"OCSP response ({len(der)} bytes) written to {args.out}")
        return 0
    status = ca.status_of(_serial(args.serial))
    data: dict[str, Any] = {"serial": args.serial.lower(), "status": status.kind}
    if status.revoked_at is not None:
        data["revokedAt"] = status.revoked_at.isoformat()
        data["reason"] = None if status.reason is None else status.reason.value
    text = status.kind + (f" since {status.revoked_at.isoformat()}" if status.revoked_at else "")
    _emit(args, data, text)
    return 0 if status.kind != "unknown" else 1


def _cmd_rotate(args: argparse.Namespace) -> int:
    from holdca.hold.setup import write_pem_certificate

    config = _config(args)
    ca = _open(args)
    grace = timedelta(days=args.grace_days) if args.grace_days is not None else None
    result = ca.rotate(new_label=args.new_label, now=_now(), grace=grace)
    cert_path = config.ca_cert_path
    write_pem_certificate(cert_path, [result.new_root])
    bundle = cert_path.with_name("ca-bundle.crt")
    write_pem_certificate(bundle, [result.new_root, result.old_root])
    cross = cert_path.with_name("ca-cross.crt")
    write_pem_certificate(cross, [result.new_by_old, result.old_by_new])
    _emit(
        args,
        {
            "newRoot": ca.ca_id,
            "oldRoot": ca.state().published[0].ca_id,
            "retireAt": result.retire_at.isoformat(),
            "bundle": str(bundle),
        },
        f"rotated: new root SHA-256 {_fingerprint(result.new_root)}\n"
        f"  old root stays published until {result.retire_at:%Y-%m-%d %H:%M}Z\n"
        f"  trust bundle (new + old) in {bundle}; cross-certificates in {cross}\n"
        f"  tell relying parties: holdca trust install --notation-config DIR",
    )
    return 0


def _cmd_trust(args: argparse.Namespace) -> int:
    if args.trust_command == "list":
        return _trust_list(args)
    if args.trust_command == "install" and args.ca_file:
        return _trust_install_file(args)
    ca = _open(args)
    bundle = ca.trust_bundle(_now())
    if args.trust_command == "export":
        pem = _pem(bundle)
        if args.out:
            atomic_write(Path(args.out), pem.encode("ascii"))
        _emit(
            args,
            {
                "certificates": [
                    {
                        "subject": c.subject.rfc4514_string(),
                        "sha256": _fingerprint(c),
                        "notAfter": c.not_valid_after_utc.isoformat(),
                    }
                    for c in bundle
                ],
                "path": args.out,
            },
            "\n".join(
                f"# {c.subject.rfc4514_string()}\n# SHA-256 {_fingerprint(c)}" for c in bundle
            )
            + ("" if args.out else "\n" + pem.rstrip()),
        )
        return 0
    return _trust_install(args, ca.scheme, ca.subject, bundle)


def _trust_install_file(args: argparse.Namespace) -> int:
    """``trust install --ca-file``: a relying party with the hold's published roots only."""
    from holdca.notation import SigningScheme
    from holdca.pki import SubjectInfo

    data = _read(args.ca_file, "CA certificate file")
    try:
        bundle = x509.load_pem_x509_certificates(data)
    except (ValueError, x509.InvalidVersion):
        raise _UsageError(f"{args.ca_file}: not a PEM certificate file") from None
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
        raise _UsageError(f"{args.ca_file}: the root's subject lacks C, ST or O")
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
    _emit(
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
                            "sha256": _fingerprint(cert),
                            "notAfter": cert.not_valid_after_utc.isoformat(),
                        }
                    )
    _emit(
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


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from holdca.server import ServerLimits, create_app, serve
    except ImportError:
        raise ConfigError(
            "holdca serve needs the server extra: pip install 'holdca[server]'"
        ) from None
    from holdca.hold.policy import AllowAllAuthorizer, SameDIDAuthorizer
    from holdca.hold.setup import audit_from_config, resolver_from_config

    config = _config(args)
    insecure = bool(args.insecure_no_auth)
    audit = audit_from_config(config, tags={"insecure_no_auth": True} if insecure else None)
    ca = _open(
        args,
        resolver=resolver_from_config(config),
        audit=audit,
        authorizer=AllowAllAuthorizer() if insecure else SameDIDAuthorizer(),
    )
    limits = ServerLimits(max_connections=args.max_connections, header_timeout=args.header_timeout)
    app = create_app(
        ca, insecure_no_auth=insecure, max_body=args.max_body, body_timeout=args.body_timeout
    )
    if insecure:
        print(
            "WARNING: --insecure-no-auth: callers are NOT authenticated; anyone who can reach "
            "this port can get certificates for any DID whose record they can point at",
            file=sys.stderr,
        )
    print(
        f"serving hold CA {ca.hold_did} on http://{args.host}:{args.port} "
        f"({'no caller authentication' if insecure else 'ATProto service auth'}; "
        f"PLC {config.plc_url})",
        file=sys.stderr,
    )
    serve(app, host=args.host, port=args.port, limits=limits)
    return 0


def _cmd_deny(args: argparse.Namespace) -> int:
    ca = _open(args)
    entry = ca.deny(args.did, reason=args.reason or "operator", now=_now())
    _emit(
        args,
        {"did": entry.did, "since": entry.since.isoformat(), "reason": entry.reason},
        f"{entry.did} is denied new certificates since {entry.since:%Y-%m-%d %H:%M}Z "
        f"({entry.reason})",
    )
    return 0


def _cmd_allow(args: argparse.Namespace) -> int:
    ca = _open(args)
    entry = ca.allow(args.did, now=_now())
    _emit(
        args,
        {"did": args.did, "wasDenied": entry is not None},
        f"{args.did} may get certificates again"
        if entry is not None
        else f"{args.did} was not on the deny list",
    )
    return 0


def _cmd_denied(args: argparse.Namespace) -> int:
    ca = _open(args)
    entries = ca.ledger.denials()
    _emit(
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from holdca.demo import run_demo

    workdir = Path(args.keep) if args.keep else None
    return run_demo(sys.stdout, notation=not args.no_notation, workdir=workdir)


# ----------------------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home",
        metavar="DIR",
        help="hold directory (hold.json, ca.crt, keys/, ledger.sqlite3); default $HOLDCA_HOME",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON for scripts")

    parser = argparse.ArgumentParser(
        prog="holdca",
        description="Run an ATCR hold as an X.509 CA whose signatures notation verifies.",
        epilog="Configuration: HOLD_* environment variables and/or --home DIR. "
        "Exit codes: 0 ok, 1 refused/failed, 2 usage or configuration error.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str, *parents: Any) -> Any:
        p = sub.add_parser(name, help=help, description=help, parents=[common, *parents])
        p.set_defaults(func=func)
        return p

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
        p.add_argument("--validity-hours", type=int)

    p = add("revoke", _cmd_revoke, "revoke a certificate or a DID's certificates", as_json)
    p.add_argument("--serial", help="hexadecimal serial number")
    p.add_argument("--did", help="revoke every certificate of this DID")
    p.add_argument("--since", metavar="TIME", help="with --did: only those issued since TIME")
    p.add_argument(
        "--reason",
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
    p.add_argument("--invalidity-date", metavar="TIME")

    p = add("crl", _cmd_crl, "sign and print the current CRL (PEM) or write it (DER)", as_json)
    p.add_argument("--out", metavar="FILE", help="write DER here instead of PEM to stdout")

    p = add("ocsp", _cmd_ocsp, "answer an OCSP request file, or show a serial's status", as_json)
    p.add_argument("--request", metavar="FILE", help="DER OCSP request")
    p.add_argument("--out", metavar="FILE", help="where to write the DER response")
    p.add_argument("--serial", help="hexadecimal serial: print good / revoked / unknown")

    p = add("rotate", _cmd_rotate, "rotate to a new root (old one stays published)", as_json)
    p.add_argument("--new-label", required=True, help="key store label of the new root key")
    p.add_argument("--grace-days", type=int, help="grace period (default HOLD_ROTATION_GRACE_DAYS)")

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

    p = add("serve", _cmd_serve, "run the reference XRPC server (needs holdca[server])")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-body", type=int, default=256 * 1024, help="request body limit (bytes)")
    p.add_argument("--max-connections", type=int, default=512, help="beyond it: 503")
    p.add_argument(
        "--header-timeout", type=float, default=10.0, help="seconds to send a request head"
    )
    p.add_argument("--body-timeout", type=float, default=10.0, help="seconds to send a body")
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="do NOT authenticate callers (tests and closed networks only; warns on start "
        "and tags every audit event)",
    )

    p = add("deny", _cmd_deny, "refuse new certificates for a DID until `holdca allow`", as_json)
    p.add_argument("did", help="the DID to deny")
    p.add_argument("--reason", help="why (kept in the ledger and the audit log)")
    p = add("allow", _cmd_allow, "lift a DID's deny-list entry", as_json)
    p.add_argument("did", help="the DID to allow again")
    add("denied", _cmd_denied, "list the denied DIDs", as_json)

    p = add("demo", _cmd_demo, "run the end-to-end demo in a temporary directory")
    p.add_argument("--keep", metavar="DIR", help="keep the demo files in DIR")
    p.add_argument("--no-notation", action="store_true", help="skip notation verify")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``holdca`` command; returns the process exit code (never raises)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        code: int = args.func(args)
    except _UsageError as exc:
        print(f"holdca {args.command}: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"holdca {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except MalformedInputError as exc:
        print(f"holdca {args.command}: bad input: {exc}", file=sys.stderr)
        return 1
    except HoldCAError as exc:
        print(f"holdca {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"holdca {args.command}: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("HOLDCA_DEBUG"):
            raise
        print(
            f"holdca {args.command}: internal error ({type(exc).__name__}: {exc}); "
            "set HOLDCA_DEBUG=1 for a traceback and please report it",
            file=sys.stderr,
        )
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
