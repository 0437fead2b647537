"""Notation trust policies (``trustpolicy.json``, version 1.0): generate and validate.

:func:`validate_trust_policy` applies notation v1.3.2's rules in notation's order and
raises :class:`~holdca.errors.TrustPolicyError` with notation's own wording, so a policy
this module accepts is one ``notation verify`` loads. :func:`hold_trust_policy` writes the
policies holdca recommends: ``"level"`` (never ``"verificationLevel"``), trusted
identities either ``"*"`` (with a store holding only the hold's roots) or exact subject
DNs with the mandatory C, ST and O (never ``CN=did:plc:*``: notation has no wildcards).

Example::

    policy = hold_trust_policy(
        store="my-hold",
        identities=[x509_subject_identity(did, country="US", state="CA", organization="Hold")],
    )
    (config_dir / "trustpolicy.json").write_bytes(policy.to_json())
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from holdca.errors import TrustPolicyError
from holdca.notation._codec import mapping_get_ci
from holdca.notation.envelope import SigningScheme

__all__ = [
    "LEVELS",
    "Action",
    "Check",
    "SignatureVerification",
    "TrustPolicy",
    "TrustPolicyStatement",
    "hold_trust_policy",
    "parse_distinguished_name",
    "validate_registry_scope",
    "validate_trust_policy",
    "x509_subject_identity",
]

WILDCARD = "*"
X509_SUBJECT = "x509.subject"
_STORE_TYPES = ("ca", "signingAuthority", "tsa")
_STORE_NAME = re.compile(r"[a-zA-Z0-9_.-]+")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+)?(?::[0-9]+)?"
)
# The OCI distribution repository grammar: path components of lowercase alphanumerics
# joined by '.', '_', '__' or runs of '-'. Written so that every repetition consumes a
# separator: the reference form's empty-able `[-]*` nests `(a+)+` and backtracks
# exponentially in Python's engine (Go's RE2 is linear); this form accepts the same set.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")


class Check(enum.Enum):
    """Notation's validation types, in the order notation runs them."""

    INTEGRITY = "integrity"
    AUTHENTICITY = "authenticity"
    AUTHENTIC_TIMESTAMP = "authenticTimestamp"
    EXPIRY = "expiry"
    REVOCATION = "revocation"


class Action(enum.Enum):
    """What a failed check does: fail verification, log a warning, or not run."""

    ENFORCE = "enforce"
    LOG = "log"
    SKIP = "skip"


_E, _L, _S = Action.ENFORCE, Action.LOG, Action.SKIP
LEVELS: Mapping[str, Mapping[Check, Action]] = MappingProxyType(
    {
        "strict": MappingProxyType(dict(zip(Check, (_E, _E, _E, _E, _E), strict=True))),
        "permissive": MappingProxyType(dict(zip(Check, (_E, _E, _L, _L, _L), strict=True))),
        "audit": MappingProxyType(dict(zip(Check, (_E, _L, _L, _L, _L), strict=True))),
        "skip": MappingProxyType(dict(zip(Check, (_S, _S, _S, _S, _S), strict=True))),
    }
)
"""The four built-in verification levels and what each does per check."""


@dataclass(frozen=True)
class SignatureVerification:
    """A statement's ``signatureVerification``.

    Attributes:
        level: ``strict``, ``permissive``, ``audit`` or ``skip``.
        override: check name -> action name (``{"revocation": "log"}``).
        verify_timestamp: ``always``, ``afterCertExpiry`` or None (= always).
    """

    level: str = "strict"
    override: Mapping[str, str] | None = field(default=None, hash=False)
    verify_timestamp: str | None = None

    def enforcement(self, statement: str = "") -> dict[Check, Action]:
        """The action per check after applying overrides (notation's GetVerificationLevel).

        Raises:
            TrustPolicyError: unknown level, check or action; integrity overridden; a check
                other than revocation skipped; overrides on level skip.
        """
        prefix = f'trust policy statement "{statement}" has invalid signatureVerification: '
        if not self.level:
            raise TrustPolicyError(
                prefix + "signature verification level is empty or missing in the trust "
                "policy statement"
            )
        if self.level not in LEVELS:
            raise TrustPolicyError(prefix + f'invalid signature verification level "{self.level}"')
        result = dict(LEVELS[self.level])
        if not self.override:
            return result
        if self.level == "skip":
            raise TrustPolicyError(
                prefix + "signature verification level 'skip' can't be used to customize "
                "signature verification"
            )
        for key, value in self.override.items():
            try:
                check = Check(key)
            except ValueError:
                raise TrustPolicyError(
                    prefix + f'verification type "{key}" in custom signature verification is '
                    f"not supported, supported values are {[c.value for c in Check]}"
                ) from None
            try:
                action = Action(value)
            except ValueError:
                raise TrustPolicyError(
                    prefix + f'verification action "{value}" in custom signature verification '
                    f"is not supported, supported values are {[a.value for a in Action]}"
                ) from None
            if check is Check.INTEGRITY:
                raise TrustPolicyError(
                    prefix + f'"{key}" verification can not be overridden in custom signature '
                    "verification"
                )
            if check is not Check.REVOCATION and action is Action.SKIP:
                raise TrustPolicyError(
                    prefix + f'"{key}" verification can not be skipped in custom signature '
                    "verification"
                )
            result[check] = action
        return result

    def to_json(self) -> dict[str, Any]:
        """The JSON object notation reads (key ``level``, never ``verificationLevel``)."""
        out: dict[str, Any] = {"level": self.level}
        if self.override:
            out["override"] = dict(self.override)
        if self.verify_timestamp:
            out["verifyTimestamp"] = self.verify_timestamp
        return out


@dataclass(frozen=True)
class TrustPolicyStatement:
    """One entry of ``trustPolicies``.

    Attributes:
        name: unique statement name.
        registry_scopes: ``["*"]`` or ``host[:port]/repository`` values.
        signature_verification: level, overrides, verifyTimestamp.
        trust_stores: ``"ca:<name>"``, ``"signingAuthority:<name>"``, ``"tsa:<name>"``.
        trusted_identities: ``["*"]`` or ``"x509.subject: C=..,ST=..,O=..[,CN=..]"``.
    """

    name: str
    registry_scopes: tuple[str, ...]
    signature_verification: SignatureVerification = SignatureVerification()
    trust_stores: tuple[str, ...] = ()
    trusted_identities: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The statement as notation's JSON object."""
        return {
            "name": self.name,
            "registryScopes": list(self.registry_scopes),
            "signatureVerification": self.signature_verification.to_json(),
            "trustStores": list(self.trust_stores),
            "trustedIdentities": list(self.trusted_identities),
        }

    def stores_of_type(self, store_type: str) -> list[str]:
        """Names of this statement's trust stores of ``store_type`` (deduplicated, in order)."""
        names: list[str] = []
        for value in self.trust_stores:
            kind, _, name = value.partition(":")
            if kind == store_type and name not in names:
                names.append(name)
        return names


@dataclass(frozen=True)
class TrustPolicy:
    """A trust policy document (``version`` ``"1.0"``)."""

    statements: tuple[TrustPolicyStatement, ...]
    version: str = "1.0"

    def to_json(self) -> bytes:
        """``trustpolicy.json`` bytes (validated first).

        Raises:
            TrustPolicyError: the policy is one notation would reject.
        """
        doc = {
            "version": self.version,
            "trustPolicies": [s.to_json() for s in self.statements],
        }
        validate_trust_policy(doc)
        return json.dumps(doc, indent=2).encode("utf-8") + b"\n"

    def applicable(self, scope: str) -> TrustPolicyStatement:
        """The statement notation applies to ``scope`` (exact scope beats ``"*"``).

        Raises:
            TrustPolicyError: the scope is invalid or no statement applies.
        """
        validate_registry_scope(scope)
        wildcard = None
        for statement in self.statements:
            if WILDCARD in statement.registry_scopes:
                wildcard = statement
            elif scope in statement.registry_scopes:
                return statement
        if wildcard is not None:
            return wildcard
        raise TrustPolicyError(f'artifact "{scope}" has no applicable trust policy statement')


# --- distinguished names --------------------------------------------------------------


_HEX = set("0123456789abcdefABCDEF")
_SPECIAL = set(',=+<>#;"\\ ')


def _parse_dn_rdns(text: str) -> list[list[tuple[str, str]]]:
    """Split an RFC 4514 DN into RDNs of (type, value), decoding escapes."""
    rdns: list[list[tuple[str, str]]] = []
    if not text.strip():
        return rdns
    current: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        eq = i
        while eq < n and text[eq] not in "=,;+":
            eq += 1
        if eq >= n or text[eq] != "=":
            raise ValueError(f"incomplete type, value pair at position {i}")
        attr_type = text[i:eq].strip()
        if not attr_type:
            raise ValueError(f"empty attribute type at position {i}")
        i = eq + 1
        value = bytearray()
        trailing_ws = 0
        started = False
        while i < n and text[i] not in ",;+":
            char = text[i]
            if char == "\\":
                if i + 1 >= n:
                    raise ValueError("got corrupted escaped character")
                nxt = text[i + 1]
                if nxt in _HEX and i + 2 < n and text[i + 2] in _HEX:
                    value.append(int(text[i + 1 : i + 3], 16))
                    i += 3
                elif nxt in _SPECIAL:
                    value.extend(nxt.encode())
                    i += 2
                else:
                    raise ValueError(f"invalid escape at position {i}")
                trailing_ws = 0
                started = True
                continue
            if char == " " and not started:
                i += 1
                continue
            started = True
            value.extend(char.encode())
            trailing_ws = trailing_ws + 1 if char == " " else 0
            i += 1
        if trailing_ws:
            del value[-trailing_ws:]
        try:
            decoded = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("attribute value is not UTF-8") from None
        current.append((attr_type, decoded))
        if i >= n:
            rdns.append(current)
            return rdns
        separator = text[i]
        i += 1
        if separator != "+":
            rdns.append(current)
            current = []
        if i >= n:
            raise ValueError("DN ends with a separator")


def parse_distinguished_name(name: str) -> dict[str, str]:
    """Parse a DN as notation does for trusted identities and leaf subjects.

    Rules (notation-go internal/pkix): no ``=#`` anywhere; no multi-valued RDNs; ``S`` is
    ``ST``; no attribute type twice; C, ST and O are mandatory. Attribute types are
    case-sensitive; values are compared as exact strings.

    Raises:
        TrustPolicyError: with notation's wording.
    """
    if "=#" in name:
        raise TrustPolicyError(
            f'unsupported distinguished name (DN) "{name}": notation does not support '
            'x509.subject identities containing "=#"'
        )
    try:
        rdns = _parse_dn_rdns(name)
    except ValueError as exc:
        raise TrustPolicyError(
            f'parsing distinguished name (DN) "{name}" failed with err: {exc}. A valid DN '
            "must contain 'C', 'ST' or 'S', and 'O' RDN attributes at a minimum, and follow "
            "RFC 4514 standard"
        ) from None
    result: dict[str, str] = {}
    for rdn in rdns:
        if len(rdn) > 1:
            raise TrustPolicyError(
                f'distinguished name (DN) "{name}" has multi-valued RDN attributes, remove '
                "multi-valued RDN attributes as they are not supported"
            )
        attr_type, value = rdn[0]
        if attr_type == "S":
            attr_type = "ST"
        if result.get(attr_type):
            raise TrustPolicyError(
                f'distinguished name (DN) "{name}" has duplicate RDN attribute for '
                f'"{attr_type}", DN can only have unique RDN attributes'
            )
        result[attr_type] = value
    for mandatory in ("C", "ST", "O"):
        if not result.get(mandatory):
            raise TrustPolicyError(
                f'distinguished name (DN) "{name}" has no mandatory RDN attribute for '
                f"\"{mandatory}\", it must contain 'C', 'ST' or 'S', and 'O' RDN attributes "
                "at a minimum"
            )
    return result


def _is_subset(small: Mapping[str, str], big: Mapping[str, str]) -> bool:
    return all(big.get(k) == v for k, v in small.items())


def _escape_dn_value(value: str) -> str:
    out = []
    for index, char in enumerate(value):
        special = char in ',+"\\<>;=' or (char == "#" and index == 0)
        special = special or (char == " " and index in (0, len(value) - 1))
        out.append("\\" + char if special else char)
    return "".join(out)


def x509_subject_identity(
    did: str | None,
    *,
    country: str,
    state: str,
    organization: str,
    locality: str | None = None,
) -> str:
    """An exact trusted identity ``x509.subject: C=..,ST=..,[L=..,]O=..[,CN=<did>]``.

    With ``did`` None the identity matches every leaf the hold issues under these RDNs
    (then no per-DID identity may sit in the same statement: they would overlap).

    Raises:
        TrustPolicyError: the result would not parse as notation requires.
    """
    parts = [f"C={_escape_dn_value(country)}", f"ST={_escape_dn_value(state)}"]
    if locality:
        parts.append(f"L={_escape_dn_value(locality)}")
    parts.append(f"O={_escape_dn_value(organization)}")
    if did is not None:
        parts.append(f"CN={_escape_dn_value(did)}")
    identity = f"{X509_SUBJECT}: " + ", ".join(parts)
    parse_distinguished_name(identity.split(":", 1)[1])
    return identity


# --- validation -------------------------------------------------------------------


def validate_registry_scope(scope: str) -> None:
    """Check a registry scope as notation does (``host[:port]/repo``, lowercase repo).

    Raises:
        TrustPolicyError: with notation's wording.
    """
    ensure = (
        "make sure it is a fully qualified repository without the scheme, protocol or tag. "
        "For example domain.com/my/repository or a local scope like local/myOCILayout"
    )
    if len(scope) > 1 and "*" in scope:
        raise TrustPolicyError(f'registry scope "{scope}" with wild card(s) is not valid, {ensure}')
    domain, sep, repository = scope.partition("/")
    if (
        not sep
        or not domain
        or not repository
        or not _DOMAIN.fullmatch(domain)
        or not _REPOSITORY.fullmatch(repository)
    ):
        raise TrustPolicyError(f'registry scope "{scope}" is not valid, {ensure}')


def _validate_statement(st: TrustPolicyStatement) -> None:
    name = st.name
    if not name:
        raise TrustPolicyError(
            "trust policy: a trust policy statement is missing a name, every statement "
            "requires a name"
        )
    try:
        levels = st.signature_verification.enforcement(name)
    except TrustPolicyError as exc:
        raise TrustPolicyError(f"trust policy: {exc}") from None
    vt = st.signature_verification.verify_timestamp
    if vt not in (None, "", "always", "afterCertExpiry"):
        raise TrustPolicyError(
            f'trust policy: trust policy statement "{name}" has invalid signatureVerification: '
            f'verifyTimestamp must be "always" or "afterCertExpiry", but got "{vt}"'
        )
    if all(a is Action.SKIP for a in levels.values()):
        if st.trust_stores or st.trusted_identities:
            raise TrustPolicyError(
                f'trust policy: trust policy statement "{name}" is set to skip signature '
                "verification but configured with trust stores and/or trusted identities, "
                "remove them if signature verification needs to be skipped"
            )
        return
    if not st.trust_stores or not st.trusted_identities:
        raise TrustPolicyError(
            f'trust policy: trust policy statement "{name}" is either missing trust stores or '
            "trusted identities, both must be specified"
        )
    for store in st.trust_stores:
        kind, sep, store_name = store.partition(":")
        if not sep:
            raise TrustPolicyError(
                f'trust policy: trust policy statement "{name}" has malformed trust store value '
                f'"{store}". The required format is <TrustStoreType>:<TrustStoreName>'
            )
        if kind not in _STORE_TYPES:
            raise TrustPolicyError(
                f'trust policy: trust policy statement "{name}" uses an unsupported trust store '
                f'type "{kind}" in trust store value "{store}"'
            )
        if not _STORE_NAME.fullmatch(store_name):
            raise TrustPolicyError(
                f'trust policy: trust policy statement "{name}" uses an unsupported trust store '
                f'name "{store_name}" in trust store value "{store}". Named store name needs '
                "to follow [a-zA-Z0-9_.-]+ format"
            )
    _validate_identities(name, st.trusted_identities)


def _validate_identities(name: str, identities: Sequence[str]) -> None:
    if len(identities) > 1 and WILDCARD in identities:
        raise TrustPolicyError(
            f'trust policy: trust policy statement "{name}" uses a wildcard trusted identity '
            "'*', a wildcard identity cannot be used in conjunction with other values"
        )
    parsed: list[tuple[str, dict[str, str]]] = []
    for identity in identities:
        if identity == "":
            raise TrustPolicyError(
                f'trust policy: trust policy statement "{name}" has an empty trusted identity'
            )
        if identity == WILDCARD:
            continue
        prefix, sep, value = identity.partition(":")
        if not sep:
            raise TrustPolicyError(
                f'trust policy: trust policy statement "{name}" has trusted identity '
                f'"{identity}" missing separator'
            )
        if prefix != X509_SUBJECT:
            continue
        if not value:
            raise TrustPolicyError(
                f'trust policy: trust policy statement "{name}" has trusted identity '
                f'"{identity}" without an identity value'
            )
        try:
            parsed.append((identity, parse_distinguished_name(value)))
        except TrustPolicyError as exc:
            raise TrustPolicyError(
                f'trust policy: trust policy statement "{name}" has trusted identity '
                f'"{identity}" with invalid identity value: {exc}'
            ) from None
    for i, (raw1, dn1) in enumerate(parsed):
        for j, (raw2, dn2) in enumerate(parsed):
            if i != j and _is_subset(dn1, dn2):
                raise TrustPolicyError(
                    f'trust policy: trust policy statement "{name}" has overlapping x509 '
                    f'trustedIdentities, "{raw1}" overlaps with "{raw2}"'
                )


def _validate_document(policy: TrustPolicy) -> None:
    if not policy.version:
        raise TrustPolicyError("trust policy document has empty version, version must be specified")
    if policy.version != "1.0":
        raise TrustPolicyError(f'trust policy document uses unsupported version "{policy.version}"')
    if not policy.statements:
        raise TrustPolicyError("trust policy document can not have zero trust policy statements")
    names: set[str] = set()
    for statement in policy.statements:
        if statement.name in names:
            raise TrustPolicyError(
                f'multiple trust policy statements use the same name "{statement.name}", '
                "statement names must be unique"
            )
        _validate_statement(statement)
        names.add(statement.name)
    counts: dict[str, int] = {}
    for statement in policy.statements:
        scopes = statement.registry_scopes
        if not scopes:
            raise TrustPolicyError(
                f'trust policy statement "{statement.name}" has zero registry scopes, it must '
                "specify registry scopes with at least one value"
            )
        if len(scopes) > 1 and WILDCARD in scopes:
            raise TrustPolicyError(
                f"trust policy statement \"{statement.name}\" uses wildcard registry scope '*', "
                "a wildcard scope cannot be used in conjunction with other scope values"
            )
        for scope in scopes:
            if scope != WILDCARD:
                validate_registry_scope(scope)
            counts[scope] = counts.get(scope, 0) + 1
    for scope, count in counts.items():
        if count > 1:
            raise TrustPolicyError(
                f'registry scope "{scope}" is present in multiple trust policy statements, one '
                "registry scope value can only be associated with one statement"
            )


_MALFORMED = "malformed trust policy"


def _get(obj: Mapping[str, Any], key: str) -> Any:
    try:
        return mapping_get_ci(obj, key)[1]
    except ValueError:
        raise TrustPolicyError(f"{_MALFORMED}: {key!r} given twice in different case") from None


def _str(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TrustPolicyError(_MALFORMED)
    return value


def _str_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TrustPolicyError(_MALFORMED)
    return tuple(value)


def _statement_from_json(obj: Any) -> TrustPolicyStatement:
    if not isinstance(obj, dict):
        raise TrustPolicyError(_MALFORMED)
    sv = _get(obj, "signatureVerification")
    if sv is None:
        sv = {}
    if not isinstance(sv, dict):
        raise TrustPolicyError(_MALFORMED)
    override = _get(sv, "override")
    if override is not None and (
        not isinstance(override, dict) or not all(isinstance(v, str) for v in override.values())
    ):
        raise TrustPolicyError(_MALFORMED)
    return TrustPolicyStatement(
        name=_str(_get(obj, "name")),
        registry_scopes=_str_list(_get(obj, "registryScopes")),
        signature_verification=SignatureVerification(
            level=_str(_get(sv, "level")),
            override=override or None,
            verify_timestamp=_str(_get(sv, "verifyTimestamp")) or None,
        ),
        trust_stores=_str_list(_get(obj, "trustStores")),
        trusted_identities=_str_list(_get(obj, "trustedIdentities")),
    )


def validate_trust_policy(document: bytes | str | Mapping[str, Any]) -> TrustPolicy:
    """Parse and validate a trust policy document exactly as notation v1.3.2 would.

    JSON keys are matched case-insensitively and unknown keys ignored, as Go's decoder
    does (so ``"verificationLevel"`` is ignored and the level is then reported missing).

    Returns:
        The parsed policy.

    Raises:
        TrustPolicyError: the message is notation's (e.g. ``... has no mandatory RDN
            attribute for "ST" ...``), naming the statement and the rule broken.
    """
    if isinstance(document, bytes | str):
        try:
            doc = json.loads(document)
        except (ValueError, RecursionError):
            raise TrustPolicyError(_MALFORMED) from None
    else:
        doc = document
    if not isinstance(doc, Mapping):
        raise TrustPolicyError(_MALFORMED)
    statements = _get(doc, "trustPolicies")
    if statements is None:
        statements = []
    if not isinstance(statements, list):
        raise TrustPolicyError(_MALFORMED)
    policy = TrustPolicy(
        statements=tuple(_statement_from_json(s) for s in statements),
        version=_str(_get(doc, "version")),
    )
    _validate_document(policy)
    return policy


# --- generation ---------------------------------------------------------------------


def hold_trust_policy(
    *,
    store: str,
    scheme: SigningScheme = SigningScheme.X509,
    identities: Iterable[str] | None = None,
    registry_scopes: Iterable[str] = (WILDCARD,),
    name: str = "holdca",
    level: str = "strict",
    revocation: str | None = None,
    extra_stores: Iterable[str] = (),
    tsa_store: str | None = None,
    verify_timestamp: str | None = None,
) -> TrustPolicy:
    """A one-statement policy trusting the hold's roots in trust store ``store``.

    Args:
        store: trust store name; its type follows ``scheme`` (``ca`` for notary.x509,
            ``signingAuthority`` for notary.x509.signingAuthority).
        scheme: the signing scheme the hold uses.
        identities: exact identities (see :func:`x509_subject_identity`); None means
            ``"*"``, safe only when the store holds nothing but the hold's roots.
        registry_scopes: ``"*"`` or ``host[:port]/repo`` scopes.
        name: statement name.
        level: ``strict`` (default), ``permissive``, ``audit`` or ``skip``.
        revocation: optional override for the revocation check (``enforce``, ``log``,
            ``skip``).
        extra_stores: further ``type:name`` entries (e.g. ``"tsa:hold-tsa"``).
        tsa_store: name of a ``tsa`` trust store (the TSA roots, e.g. holdca's
            ``tsa-root.crt``) added as ``"tsa:<name>"``: notation then checks RFC 3161
            timestamps, and a signature whose leaf has expired still verifies if its
            timestamp lies within the leaf's validity.
        verify_timestamp: ``"always"`` (notation's default: check the timestamp whenever
            there is a ``tsa:`` store) or ``"afterCertExpiry"`` (only once a certificate of
            the chain has expired).

    Raises:
        TrustPolicyError: the result would be rejected by notation (including an unknown
            ``verify_timestamp`` or an invalid ``tsa_store`` name).
    """
    kind = "ca" if scheme is SigningScheme.X509 else "signingAuthority"
    override = {"revocation": revocation} if revocation else None
    identity_list = tuple(identities) if identities is not None else (WILDCARD,)
    tsa = (f"tsa:{tsa_store}",) if tsa_store is not None else ()
    statement = TrustPolicyStatement(
        name=name,
        registry_scopes=tuple(registry_scopes),
        signature_verification=SignatureVerification(
            level=level, override=override, verify_timestamp=verify_timestamp
        ),
        trust_stores=() if level == "skip" else (f"{kind}:{store}", *extra_stores, *tsa),
        trusted_identities=() if level == "skip" else identity_list,
    )
    policy = TrustPolicy((statement,))
    _validate_document(policy)
    return policy
