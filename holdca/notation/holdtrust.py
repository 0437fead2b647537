"""A hold's roots for relying parties (sans-I/O): the DID document entry that publishes
their fingerprints, checking a downloaded bundle against it, and the trust policy
statements ``holdca trust`` writes for a hold's trust store.

**The DID document entry.** A hold publishes, in the ``service`` array of its did:web DID
document (``https://<host>/.well-known/did.json``)::

    {"id": "#atcr_hold_ca",
     "type": "AtcrHoldCA",
     "serviceEndpoint": "https://<host>/ca-bundle.crt",
     "caFingerprints": ["sha256:<64 hex digits>", ...],
     "signingScheme": "notary.x509"}

DID core (W3C DID v1.0, section 5.4 "Services"): every service map has ``id``, ``type`` and
``serviceEndpoint``, and "each service extension MAY include additional properties":
``caFingerprints`` (the SHA-256 of the DER of every root in the bundle; required, at least
one) and ``signingScheme`` (optional, ``notary.x509`` or ``notary.x509.signingAuthority``)
are this extension's. A consumer "MUST produce an error if it detects multiple service
entries with the same id": :func:`find_hold_ca_service` does. The ``id`` may also be written
absolute (``<did>#atcr_hold_ca``), as atproto allows for ``#atproto_pds``.

**Matching.** :func:`check_bundle` accepts a bundle only if *every* certificate in it has one
of the expected fingerprints: a root appended to the bundle by whoever controls the
download is refused, not silently trusted beside the real ones.

**Statements.** ``holdca trust`` writes statements whose ``trustStores`` is exactly one
hold store (``["ca:<name>"]`` or ``["signingAuthority:<name>"]``): a hold statement named
``<name>`` (explicit scopes, the hold's ``C, ST, [L,] O`` as identity: any user of the
hold) and pins named ``<name>@<scope>`` (one scope, identities ``C, ST, [L,] O, CN=<DID>``:
only those DIDs' certificates). notation compares a trusted identity with the leaf subject
as a subset of its RDNs (notation-go ``verifier.verifyX509TrustedIdentities``,
``pkix.IsSubsetDN``), so the hold identity matches every leaf of the hold and a pin only
the leaves whose CN is that DID.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from holdca.atproto.diddoc import parse_did_document
from holdca.errors import (
    DIDDocumentError,
    MalformedInputError,
    TrustPolicyError,
    VerificationError,
)
from holdca.notation.envelope import SigningScheme
from holdca.notation.trustpolicy import (
    SignatureVerification,
    TrustPolicy,
    TrustPolicyStatement,
    parse_distinguished_name,
    x509_subject_identity,
)
from holdca.pki.names import SubjectInfo

__all__ = [
    "FINGERPRINTS_PROPERTY",
    "SCHEME_PROPERTY",
    "SERVICE_ID",
    "SERVICE_TYPE",
    "HoldCAService",
    "check_bundle",
    "find_hold_ca_service",
    "hold_ca_service",
    "hold_did_of",
    "hold_identities",
    "hold_statements",
    "normalize_fingerprint",
    "parse_bundle",
    "pin_name",
    "statement_trusts",
    "web_did",
    "with_pin",
    "with_statement",
    "without_store",
]

SERVICE_ID: Final = "#atcr_hold_ca"
"""The ``id`` of the hold CA entry in the DID document's ``service`` array."""
SERVICE_TYPE: Final = "AtcrHoldCA"
"""Its ``type``."""
FINGERPRINTS_PROPERTY: Final = "caFingerprints"
"""The entry's list of ``sha256:<hex>`` fingerprints, one per root of the bundle."""
SCHEME_PROPERTY: Final = "signingScheme"
"""The entry's optional signing scheme."""

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_MAX_FINGERPRINTS = 16
_ROOT_CN = "ATCR Hold CA"


def normalize_fingerprint(text: str) -> str:
    """A SHA-256 certificate fingerprint as colon-separated upper-case hex.

    Accepted: 64 hex digits in any case, with or without colons, optionally prefixed
    ``sha256:`` / ``SHA256:`` (the digest form) or ``SHA256 Fingerprint=`` (openssl's).

    Raises:
        MalformedInputError: anything else (the text is shown, shortened).
    """
    value = text.strip()
    for prefix in ("sha256 fingerprint=", "sha256:", "sha-256:"):
        if value.lower().startswith(prefix):
            value = value[len(prefix) :]
            break
    digits = value.replace(":", "")
    if not _HEX64.fullmatch(digits):
        raise MalformedInputError(
            f"not a SHA-256 fingerprint (64 hex digits, colons optional): {text[:100]!r}"
        )
    digits = digits.upper()
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2))


def _fingerprint(cert: x509.Certificate) -> str:
    return normalize_fingerprint(
        hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    )


def web_did(host: str, port: int, default_port: int = 443) -> str:
    """The did:web of ``host`` (lower case) with ``port`` encoded as ``%3A<port>`` unless it
    is ``default_port`` (W3C did:web: the DID whose document is at
    ``https://host[:port]/.well-known/did.json``).

    Raises:
        MalformedInputError: an IPv6 literal (did:web cannot express it).
    """
    if ":" in host:
        raise MalformedInputError(f"did:web cannot name the IPv6 address {host[:60]!r}")
    return f"did:web:{host.lower()}" + ("" if port == default_port else f"%3A{port}")


def hold_ca_service(
    bundle_url: str, roots: Sequence[x509.Certificate], *, scheme: SigningScheme | None = None
) -> dict[str, Any]:
    """The DID document ``service`` entry publishing ``roots`` (the hold's trust bundle).

    Raises:
        ValueError: no roots, more than 16, or a non-https ``bundle_url``.
    """
    if not roots or len(roots) > _MAX_FINGERPRINTS:
        raise ValueError(f"a hold CA entry lists 1-{_MAX_FINGERPRINTS} roots")
    if not bundle_url.startswith("https://"):
        raise ValueError("the bundle URL of a hold CA entry must be https")
    entry: dict[str, Any] = {
        "id": SERVICE_ID,
        "type": SERVICE_TYPE,
        "serviceEndpoint": bundle_url,
        FINGERPRINTS_PROPERTY: [
            "sha256:" + _fingerprint(cert).replace(":", "").lower() for cert in roots
        ],
    }
    if scheme is not None:
        entry[SCHEME_PROPERTY] = scheme.value
    return entry


@dataclass(frozen=True)
class HoldCAService:
    """The hold CA entry found in a DID document.

    Attributes:
        did: the document's DID.
        endpoint: ``serviceEndpoint`` (where the hold says its bundle is).
        fingerprints: normalised (colon upper-case hex) fingerprints, in document order.
        scheme: the published signing scheme, if any.
    """

    did: str
    endpoint: str
    fingerprints: tuple[str, ...]
    scheme: SigningScheme | None


def find_hold_ca_service(document: bytes | str | Mapping[str, Any], did: str) -> HoldCAService:
    """The ``#atcr_hold_ca`` entry of ``did``'s DID document.

    Checked: the document is a JSON object (strict: no duplicate keys, 64 KiB at most) whose
    ``id`` is ``did``; exactly one service entry has id ``#atcr_hold_ca`` (or
    ``<did>#atcr_hold_ca``); it has type ``AtcrHoldCA``, a string ``serviceEndpoint`` and a
    ``caFingerprints`` array of 1-16 valid fingerprints; ``signingScheme``, if present, is a
    scheme notation knows.

    Raises:
        DIDSyntaxError: ``did`` is not a DID.
        DIDDocumentError: any of the above fails (the message names the rule).
    """
    doc = parse_did_document(document, did)
    ids = (SERVICE_ID, did + SERVICE_ID)
    entries = [s for s in doc.services if s.get("id") in ids]
    if not entries:
        raise DIDDocumentError(f"the DID document of {did} has no {SERVICE_ID} service entry")
    if len(entries) > 1:
        raise DIDDocumentError(f"the DID document of {did} has {len(entries)} {SERVICE_ID} entries")
    entry = entries[0]
    if entry.get("type") != SERVICE_TYPE:
        raise DIDDocumentError(f"the {SERVICE_ID} entry's type is not {SERVICE_TYPE!r}")
    endpoint = entry.get("serviceEndpoint")
    if not isinstance(endpoint, str):
        raise DIDDocumentError(f"the {SERVICE_ID} entry has no string serviceEndpoint")
    listed = entry.get(FINGERPRINTS_PROPERTY)
    if (
        not isinstance(listed, list)
        or not 1 <= len(listed) <= _MAX_FINGERPRINTS
        or not all(isinstance(f, str) for f in listed)
    ):
        raise DIDDocumentError(
            f"the {SERVICE_ID} entry's {FINGERPRINTS_PROPERTY} must be "
            f"1-{_MAX_FINGERPRINTS} strings"
        )
    try:
        fingerprints = tuple(normalize_fingerprint(f) for f in listed)
    except MalformedInputError as exc:
        raise DIDDocumentError(f"the {SERVICE_ID} entry lists a bad fingerprint: {exc}") from None
    scheme_value = entry.get(SCHEME_PROPERTY)
    scheme = None
    if scheme_value is not None:
        try:
            scheme = SigningScheme(scheme_value)
        except ValueError:
            raise DIDDocumentError(
                f"the {SERVICE_ID} entry's {SCHEME_PROPERTY} {str(scheme_value)[:60]!r} is not "
                "a notation signing scheme"
            ) from None
    return HoldCAService(did, endpoint, fingerprints, scheme)


def parse_bundle(data: bytes, label: str = "CA bundle") -> list[x509.Certificate]:
    """The CA certificates of a PEM bundle.

    Checked: PEM (every block a ``CERTIFICATE``), at least one, at most 16, each a CA
    (basicConstraints ``cA`` true), no certificate twice.

    Raises:
        MalformedInputError: naming ``label`` and the rule broken.
    """
    blocks = re.findall(rb"-----BEGIN ([A-Z0-9 ]+)-----", data)
    if not blocks:
        raise MalformedInputError(f"{label}: not a PEM certificate bundle")
    if any(b != b"CERTIFICATE" for b in blocks):
        raise MalformedInputError(f"{label}: holds a PEM block that is not a CERTIFICATE")
    if len(blocks) > _MAX_FINGERPRINTS:
        raise MalformedInputError(f"{label}: more than {_MAX_FINGERPRINTS} certificates")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except (ValueError, x509.InvalidVersion):
        raise MalformedInputError(f"{label}: malformed PEM certificate") from None
    seen: set[str] = set()
    for cert in certs:
        subject = cert.subject.rfc4514_string()[:120]
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        if not ca:
            raise MalformedInputError(f"{label}: {subject!r} is not a CA certificate")
        fingerprint = _fingerprint(cert)
        if fingerprint in seen:
            raise MalformedInputError(f"{label}: {subject!r} is listed twice")
        seen.add(fingerprint)
    return certs


def check_bundle(certs: Sequence[x509.Certificate], expected: Iterable[str]) -> None:
    """Refuse ``certs`` unless every one's SHA-256 is among ``expected``.

    ``expected`` may be in any form :func:`normalize_fingerprint` accepts.

    Raises:
        MalformedInputError: an expected value is not a fingerprint.
        VerificationError: no certificates, nothing expected, or a certificate whose
            fingerprint is not expected (named with its subject and fingerprint).
    """
    wanted = {normalize_fingerprint(f) for f in expected}
    if not certs or not wanted:
        raise VerificationError("nothing to match: no certificates or no expected fingerprint")
    for cert in certs:
        fingerprint = _fingerprint(cert)
        if fingerprint not in wanted:
            raise VerificationError(
                f"certificate {cert.subject.rfc4514_string()[:120]!r} (SHA-256 {fingerprint}) "
                "does not match any expected fingerprint: nothing was written"
            )


def hold_did_of(cert: x509.Certificate) -> str | None:
    """The hold DID named by a hold root's CN (``ATCR Hold CA[...] - <DID>``), or None."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    if not cn.startswith(_ROOT_CN) or " - " not in cn:
        return None
    return cn.split(" - ", 1)[1]


def _subject(cert: x509.Certificate) -> SubjectInfo:
    def attr(oid: x509.ObjectIdentifier) -> str | None:
        values = cert.subject.get_attributes_for_oid(oid)
        return str(values[0].value) if values else None

    country = attr(NameOID.COUNTRY_NAME)
    state = attr(NameOID.STATE_OR_PROVINCE_NAME)
    org = attr(NameOID.ORGANIZATION_NAME)
    if not (country and state and org):
        raise MalformedInputError(
            f"{cert.subject.rfc4514_string()[:120]!r} lacks C, ST or O: not a hold root"
        )
    return SubjectInfo(
        country=country, state=state, organization=org, locality=attr(NameOID.LOCALITY_NAME)
    )


def hold_identities(roots: Iterable[x509.Certificate], did: str | None = None) -> list[str]:
    """The ``x509.subject`` identities of the leaves the hold of ``roots`` issues.

    Leaves carry the hold's ``C, ST, [L,] O`` (the roots' own) and ``CN=<DID>``
    (holdca.pki.names). With ``did`` None: the hold-wide identity (any user); with a DID:
    only that DID's leaves. One identity per distinct subject among the roots (a rotation
    may change it), dropping any that another one already covers (notation refuses
    overlapping identities in one statement).

    Raises:
        MalformedInputError: a root lacks C, ST or O.
        ConfigError: a root's subject values are ones holdca never issues.
        TrustPolicyError: the identity would not parse as notation requires.
    """
    found: list[tuple[str, dict[str, str]]] = []
    for root in roots:
        info = _subject(root)
        identity = x509_subject_identity(
            did,
            country=info.country,
            state=info.state,
            organization=info.organization,
            locality=info.locality,
        )
        if identity not in (i for i, _ in found):
            found.append((identity, parse_distinguished_name(identity.split(":", 1)[1])))

    def covered(dn: dict[str, str], by: dict[str, str]) -> bool:
        return by != dn and all(dn.get(k) == v for k, v in by.items())

    return [i for i, dn in found if not any(covered(dn, other) for _, other in found)]


# --- the statements holdca writes ---------------------------------------------------


def pin_name(store: str, scope: str) -> str:
    """The name of the pin statement for ``scope`` on store ``store``."""
    return f"{store}@{scope}"


def hold_statements(policy: TrustPolicy | None, ref: str) -> list[TrustPolicyStatement]:
    """The statements of ``policy`` whose only trust store is ``ref`` (``type:name``)."""
    if policy is None:
        return []
    return [s for s in policy.statements if s.trust_stores == (ref,)]


def with_statement(policy: TrustPolicy | None, statement: TrustPolicyStatement) -> TrustPolicy:
    """``policy`` with ``statement`` added, replacing the one of the same name (validated).

    Raises:
        TrustPolicyError: the result is one notation would reject (e.g. a scope already in
            another statement).
    """
    kept = [] if policy is None else [s for s in policy.statements if s.name != statement.name]
    result = TrustPolicy((*kept, statement))
    result.to_json()  # validates
    return result


def with_pin(
    policy: TrustPolicy | None, *, ref: str, scope: str, identities: Sequence[str]
) -> TrustPolicy:
    """``policy`` with ``identities`` trusted for ``scope`` through store ``ref`` only.

    Adds them to the store's pin statement for ``scope`` (named :func:`pin_name`), or creates
    it (level strict, ``registryScopes`` ``[scope]``, ``trustStores`` ``[ref]``).

    Raises:
        TrustPolicyError: another statement already covers ``scope`` (a hold-wide one of this
            store included: pinning must not look narrower than what is trusted), or the
            result is one notation would reject.
    """
    name = pin_name(ref.partition(":")[2], scope)
    current = None
    for statement in policy.statements if policy is not None else ():
        if scope in statement.registry_scopes or statement.name == name:
            if statement.name != name or statement.trust_stores != (ref,):
                raise TrustPolicyError(
                    f'registry scope "{scope}" is already covered by trust policy statement '
                    f'"{statement.name}" (scopes {list(statement.registry_scopes)}); remove '
                    "that scope from it first"
                )
            current = statement
    if current is None:
        statement = TrustPolicyStatement(
            name=name,
            registry_scopes=(scope,),
            signature_verification=SignatureVerification(level="strict"),
            trust_stores=(ref,),
            trusted_identities=tuple(identities),
        )
    else:
        merged = list(current.trusted_identities)
        merged += [i for i in identities if i not in merged]
        statement = TrustPolicyStatement(
            name=name,
            registry_scopes=current.registry_scopes,
            signature_verification=current.signature_verification,
            trust_stores=current.trust_stores,
            trusted_identities=tuple(merged),
        )
    return with_statement(policy, statement)


def without_store(
    policy: TrustPolicy | None, ref: str
) -> tuple[TrustPolicy | None, list[str], list[str]]:
    """``policy`` without the statements whose only trust store is ``ref``.

    Returns:
        ``(policy or None if no statement is left, names removed, names of other
        statements that still list ``ref`` among several stores: kept unchanged)``.
    """
    if policy is None:
        return None, [], []
    removed = [s.name for s in hold_statements(policy, ref)]
    kept = tuple(s for s in policy.statements if s.name not in removed)
    others = [s.name for s in kept if ref in s.trust_stores]
    return (TrustPolicy(kept, policy.version) if kept else None), removed, others


def statement_trusts(statement: TrustPolicyStatement) -> dict[str, Any]:
    """What a statement trusts: ``{"scopes", "identities": "any" | "hold" | "dids",
    "dids": [...]}`` (``hold``: any leaf with the hold's subject; ``dids``: only these)."""
    dids: list[str] = []
    hold_wide = False
    for identity in statement.trusted_identities:
        if identity == "*":
            return {"scopes": list(statement.registry_scopes), "identities": "any", "dids": []}
        prefix, _, value = identity.partition(":")
        if prefix != "x509.subject":
            continue
        try:
            cn = parse_distinguished_name(value).get("CN")
        except TrustPolicyError:
            continue
        if cn is None:
            hold_wide = True
        else:
            dids.append(cn)
    kind = "hold" if hold_wide else "dids"
    return {"scopes": list(statement.registry_scopes), "identities": kind, "dids": dids}
