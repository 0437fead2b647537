"""``holdca trust add https://HOLD``: fetch a hold's roots, check them, trust them.

The roots come from ``<hold>/ca-bundle.crt`` through :class:`holdca.net.Fetcher` (the
address policy: public addresses over https only, unless ``--allow`` and
``--insecure-http`` say otherwise). Every certificate's subject and SHA-256 fingerprint is
printed, and nothing is written unless every certificate matches a fingerprint the user
gave (``--fingerprint``, out of band) or, without one, the ``#atcr_hold_ca`` entry of the
hold host's did:web document (``https://<host>/.well-known/did.json``, fetched over the
same verified TLS; see :mod:`holdca.notation.holdtrust`). Then the trust store is written
(exactly the verified roots) and, only with ``--scope``, a statement.
"""

from __future__ import annotations

# ruff: noqa: PLC0415
import argparse
import re
import ssl
from typing import Any

from holdca.cli import common as c
from holdca.cli.trustcommon import notation_dir, store_type_of, write_trust, written_text
from holdca.errors import ConfigError, MalformedInputError, ResolutionError

__all__ = ["add_arguments", "trust_add"]

_MAX_BUNDLE = 256 * 1024


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``trust add`` (``--config`` and ``--scope`` are added by the caller)."""
    p.add_argument("url", metavar="https://HOLD", help="the hold's origin (https:// optional)")
    p.add_argument(
        "--fingerprint",
        action="append",
        metavar="SHA256",
        help="expected SHA-256 of a root (repeatable; colons optional, any case); default: "
        "the fingerprints in the hold's DID document",
    )
    p.add_argument("--name", help="trust store name (default: the hold's host)")
    p.add_argument(
        "--scheme",
        choices=["notary.x509", "notary.x509.signingAuthority"],
        help="the hold's signing scheme (default: the DID document's, else notary.x509)",
    )
    p.add_argument(
        "--allow",
        action="append",
        metavar="RULES",
        help="also allow these addresses (as HOLD_NETWORK_ALLOW: CIDR, IP, host:port; "
        "comma-separated, repeatable)",
    )
    p.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow a plain http:// hold URL (needs --fingerprint)",
    )
    p.add_argument(
        "--cafile",
        metavar="FILE",
        help="trust only these PEM CA certificates for TLS (default: certifi's bundle)",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per fetch (default 10)")


def _context(args: argparse.Namespace) -> ssl.SSLContext | bool:
    if not args.cafile:
        return True
    data = c.read(args.cafile, "--cafile")
    try:
        context = ssl.create_default_context(cadata=data.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError):
        raise c.UsageError(f"--cafile {args.cafile}: not PEM CA certificates") from None
    context.set_alpn_protocols(["http/1.1"])
    return context


def _store_name(host: str, port: int, default_port: int) -> str:
    text = host if port == default_port else f"{host}_{port}"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)


def trust_add(args: argparse.Namespace) -> int:
    """Run ``trust add`` (see the module); returns the exit code.

    Raises:
        UsageError: a bad URL, option or fingerprint; plain http without
            ``--insecure-http`` or without ``--fingerprint``.
        ConfigError: a bad ``--allow`` rule; the http extra is not installed.
        AddressRefusedError, ResolutionError: the policy refused the host; the fetch
            failed, answered other than 200 or was larger than its limit.
        MalformedInputError, DIDDocumentError: the bundle is not PEM CA certificates; the
            DID document or its ``#atcr_hold_ca`` entry is malformed.
        VerificationError: a certificate matches no expected fingerprint (nothing written).
    """
    try:
        from holdca.net import AddressPolicy, Fetcher
    except ImportError:
        raise ConfigError(
            "holdca trust add needs the http extra: pip install -e '.[http]' in a holdca checkout"
        ) from None
    from holdca.atproto.diddoc import MAX_DID_DOCUMENT_SIZE
    from holdca.notation import SigningScheme
    from holdca.notation.holdtrust import (
        check_bundle,
        find_hold_ca_service,
        hold_identities,
        normalize_fingerprint,
        parse_bundle,
        web_did,
    )

    try:
        expected = [normalize_fingerprint(f) for f in args.fingerprint or ()]
    except MalformedInputError as exc:
        raise c.UsageError(f"--fingerprint: {exc}") from None
    if args.timeout <= 0:
        raise c.UsageError("--timeout must be positive")
    if args.name is not None and not re.fullmatch(r"[a-zA-Z0-9_.-]+", args.name):
        raise c.UsageError(f"--name {args.name[:80]!r} must match [a-zA-Z0-9_.-]+")
    policy = AddressPolicy.parse(",".join(args.allow or ()) or None, variable="--allow")
    url = args.url if "://" in args.url else f"https://{args.url}"
    checked = policy.check_url(url, require_https=False)
    if checked.target != "/":
        raise c.UsageError("give the hold's origin only (https://HOST[:PORT]), no path or query")
    https = checked.scheme == "https"
    if not https and not args.insecure_http:
        raise c.UsageError(f"{checked.origin} is plain http: https is required (--insecure-http)")
    if not https and not expected:
        raise c.UsageError(
            "over plain http the hold's DID document proves nothing: give --fingerprint"
        )
    config_dir = notation_dir(args)  # before any fetch: a ConfigError costs nothing
    base = checked.origin
    scheme = SigningScheme(args.scheme) if args.scheme else None
    with Fetcher(policy, timeout=args.timeout, verify=_context(args)) as fetcher:

        def get(path: str, limit: int, accept: str) -> bytes:
            response = fetcher.get(base + path, limit=limit, accept=accept, require_https=https)
            if response.status != 200:
                raise ResolutionError(f"GET {base}{path}: HTTP {response.status}")
            return response.body

        bundle = parse_bundle(
            get(
                "/ca-bundle.crt",
                _MAX_BUNDLE,
                "application/x-pem-file, application/pem-certificate-chain",
            ),
            f"{base}/ca-bundle.crt",
        )
        shown = "".join(
            f"  {cert.subject.rfc4514_string()}\n    SHA-256 {c.fingerprint(cert)}\n"
            for cert in bundle
        )
        if not args.json:
            print(f"{base}/ca-bundle.crt holds {len(bundle)} certificate(s):\n{shown}", end="")
        source = "--fingerprint"
        if not expected:
            did = web_did(checked.host, checked.port)
            document = get(
                "/.well-known/did.json",
                MAX_DID_DOCUMENT_SIZE,
                "application/did+ld+json, application/json",
            )
            service = find_hold_ca_service(document, did)
            expected = list(service.fingerprints)
            scheme = scheme or service.scheme
            source = f"the {did} DID document"
    check_bundle(bundle, expected)
    scheme = scheme or SigningScheme.X509
    default_port = 443 if https else 80
    result: dict[str, Any] = write_trust(
        args,
        config_dir=config_dir,
        store=args.name or _store_name(checked.host, checked.port, default_port),
        store_type=store_type_of(scheme),
        bundle=bundle,
        identities=hold_identities(bundle),
        exact=True,
    )
    result["matched"] = source
    result["certificates"] = [
        {"subject": cert.subject.rfc4514_string(), "sha256": c.fingerprint(cert)} for cert in bundle
    ]
    c.emit(
        args,
        result,
        f"every certificate matches {source}\n" + written_text(result, len(bundle)),
    )
    return 0
