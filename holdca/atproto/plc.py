"""did:plc audit-log verification (sans-I/O): the DID's current state from its signed operations.

The hold fetches ``GET {plc}/{did}/log/audit`` itself and trusts nothing in it that the signatures
do not prove. :func:`verify_audit_log` applies the PLC spec (v0.3.0, "Audit Logs") as the reference
verifiers do (did-method-plc ``packages/lib/src/{operations,data}.ts``, go-didplc
``didplc/{log,opstore}.go``):

* input: a JSON array (at most :data:`MAX_LOG_SIZE` bytes and :data:`MAX_LOG_ENTRIES` entries) of
  ``{did, operation, cid, nullified, createdAt}``; no duplicate keys or NaN; each ``did`` is the
  DID; ``createdAt`` strictly increases (as go-didplc requires); other entry fields are ignored;
* operations have exactly the fields of their ``type`` (``plc_operation``, ``plc_tombstone``, the
  legacy genesis-only ``create``): unknown fields are refused, as the TS reference's strict
  schemas do (go-didplc drops them, then fails the CID check); rotation keys are K-256 / P-256
  did:keys, at most :data:`MAX_ROTATION_KEYS` (the directory's limit), empty and duplicate lists
  accepted (the spec's "1 to 5, distinct" is not what the reference verifiers enforce);
  ``verificationMethods`` are syntactically valid did:keys of any type; the signed op is at most
  :data:`MAX_OPERATION_SIZE` bytes of DAG-CBOR;
* ``cid`` is :func:`operation_cid`; entry 0 is a genesis op (``prev`` present and null) whose
  :func:`genesis_did` is the DID, and no other entry is; each ``prev`` names an earlier entry
  that is neither nullified nor a tombstone;
* ``sig`` is unpadded base64url (no whitespace, zero padding bits) of a 64-byte low-S ``r || s``
  ECDSA-SHA256 signature over the DAG-CBOR of the op without ``sig``, by a rotation key of the op
  ``prev`` names (genesis: its own; ``create``: recoveryKey, signingKey);
* nullification: an op whose ``prev`` already has a child forks history. Each child narrows the
  keys allowed to sign from its parent to those listed before its own signer, so the fork needs
  strictly higher authority (and a key cannot recover twice); its createdAt is at most
  :data:`RECOVERY_WINDOW` after the first op it nullifies (exactly 72 h is accepted, like the
  reference verifiers and the vector ``log_nullification_at_exactly_72h``). That op and its
  descendants are nullified, and the log's ``nullified`` flags must be exactly those computed.

The state returned is that of the last entry (always the non-nullified head). Errors:
:class:`~holdca.errors.PLCOperationError` for what does not parse,
:class:`~holdca.errors.PLCLogError` for a log that parses but does not verify.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

from holdca._json import strict_json
from holdca.atproto import dagcbor
from holdca.atproto.cid import CID
from holdca.atproto.didkey import PublicKey, b58decode, parse_did_key
from holdca.errors import (
    DAGCBORError,
    DIDDeactivatedError,
    DIDSyntaxError,
    PLCLogError,
    PLCOperationError,
    SignatureInvalidError,
)

__all__ = [
    "MAX_LOG_ENTRIES",
    "MAX_LOG_SIZE",
    "MAX_OPERATION_SIZE",
    "MAX_ROTATION_KEYS",
    "RECOVERY_WINDOW",
    "PLCState",
    "genesis_did",
    "operation_cid",
    "verify_audit_log",
]

RECOVERY_WINDOW: Final = timedelta(hours=72)
"""How long after an op a higher-priority rotation key may still nullify it (inclusive)."""
MAX_OPERATION_SIZE: Final = 7500
"""Largest signed operation, in DAG-CBOR bytes (PLC spec)."""
MAX_LOG_ENTRIES: Final = 10_000
"""Most audit-log entries accepted: two years of ops at the directory's rate limit (100 per DID
per week), where real DIDs have a handful. It bounds the work: 10 000 entries verify in about
3 s with one rotation key (measured), up to about 20 s with 10 keys and the last one signing."""
MAX_LOG_SIZE: Final = 16 * 1024 * 1024
"""Largest audit-log JSON accepted, in bytes (or characters for ``str`` input)."""
MAX_ROTATION_KEYS: Final = 10
"""Most rotation keys per operation (the directory's own limit for incoming ops)."""

_WINDOW_NS: Final = RECOVERY_WINDOW // timedelta(microseconds=1) * 1000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_PLC_DID: Final = re.compile(r"did:plc:[a-z2-7]{24}")
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_OP_CID: Final = re.compile(r"bafyrei[a-z2-7]{52}")  # CIDv1 dag-cbor sha2-256, base32
_DATETIME: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(?:\.([0-9]{1,9}))?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_FIELDS: Final = {
    "plc_operation": frozenset(
        ("type", "rotationKeys", "verificationMethods", "alsoKnownAs", "services", "prev", "sig")
    ),
    "plc_tombstone": frozenset(("type", "prev", "sig")),
    "create": frozenset(("type", "signingKey", "recoveryKey", "handle", "service", "prev", "sig")),
}
_K256_CONTEXT: Final = "https://w3id.org/security/suites/secp256k1-2019/v1"
_P256_CONTEXT: Final = "https://w3id.org/security/suites/ecdsa-2019/v1"


@dataclass(frozen=True, slots=True)
class PLCState:
    """The verified state of a did:plc after its last valid operation.

    Attributes:
        did: the DID.
        rotation_keys: did:key strings in priority order (empty when tombstoned).
        verification_methods: read-only map of id (no ``#``) to did:key, e.g. ``atproto``.
        also_known_as: ``alsoKnownAs`` URIs (unverified claims, e.g. ``at://<handle>``).
        services: read-only map of id (no ``#``) to ``{"type": ..., "endpoint": ...}``.
        tombstoned: the last valid operation is a ``plc_tombstone`` (the DID is deactivated).
        cid: CID (base32 ``b...``) of the last valid operation.
        created_at: its ``createdAt`` (aware UTC; sub-microsecond digits are dropped).
    """

    did: str
    rotation_keys: tuple[str, ...]
    verification_methods: Mapping[str, str]
    also_known_as: tuple[str, ...]
    services: Mapping[str, Mapping[str, str]]
    tombstoned: bool
    cid: str
    created_at: datetime

    def did_document(self) -> dict[str, Any]:
        """Render the DID document as the PLC directory does (``formatDidDoc``).

        Verification methods get full ids ``<did>#<id>`` and type ``Multikey``; services get
        relative ids ``#<id>``; the K-256 / P-256 suite contexts are added for keys of those
        curves. Map order is the order of the operation's JSON.

        Raises:
            DIDDeactivatedError: the DID is tombstoned.
        """
        if self.tombstoned:
            raise DIDDeactivatedError(f"{self.did} is tombstoned (operation {self.cid})")
        context = ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"]
        methods = []
        for name, key in self.verification_methods.items():
            try:
                suite = _K256_CONTEXT if parse_did_key(key).curve == "k256" else _P256_CONTEXT
            except DIDSyntaxError:
                suite = None  # a key type atproto does not know: no context, as formatDidDoc
            if suite is not None and suite not in context:
                context.append(suite)
            multibase = key.removeprefix("did:key:")
            vm = {"id": f"{self.did}#{name}", "type": "Multikey", "controller": self.did}
            methods.append({**vm, "publicKeyMultibase": multibase})
        services = [
            {"id": f"#{name}", "type": svc["type"], "serviceEndpoint": svc["endpoint"]}
            for name, svc in self.services.items()
        ]
        return {
            "@context": context,
            "id": self.did,
            "alsoKnownAs": list(self.also_known_as),
            "verificationMethod": methods,
            "service": services,
        }


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _encode(op: Mapping[str, Any], what: str) -> bytes:
    try:
        return dagcbor.encode(dict(op))
    except DAGCBORError as exc:
        raise PLCOperationError(f"{what} cannot be encoded as DAG-CBOR: {exc}") from None


def operation_cid(op: Mapping[str, Any]) -> str:
    """The CID of a signed operation: CIDv1, dag-cbor, sha2-256 of its DAG-CBOR, base32 ``b...``.

    Raises:
        PLCOperationError: ``op`` is not a map of atproto data-model values.
    """
    if not isinstance(op, Mapping):
        raise PLCOperationError(f"operation must be a map, not {type(op).__name__}")
    return str(CID.for_dag_cbor(_encode(op, "operation")))


def genesis_did(op: Mapping[str, Any]) -> str:
    """The DID a signed genesis op creates: ``did:plc:`` + base32(sha256(DAG-CBOR(op)))[:24].

    Raises:
        PLCOperationError: ``op`` is not a map, has no ``sig``, or has a non-null ``prev``.
    """
    if not isinstance(op, Mapping):
        raise PLCOperationError(f"operation must be a map, not {type(op).__name__}")
    if "prev" not in op or op["prev"] is not None:
        raise PLCOperationError("not a genesis operation (prev must be present and null)")
    if not op.get("sig"):
        raise PLCOperationError("a genesis DID is the hash of the signed operation (no sig)")
    return _did_for(_encode(op, "operation"))


def _did_for(signed: bytes) -> str:
    digest = hashlib.sha256(signed).digest()
    return "did:plc:" + base64.b32encode(digest).decode("ascii").lower()[:24]


@dataclass(slots=True)
class _Op:
    """One parsed, type-checked operation (normalised: legacy ``create`` as plc_operation)."""

    kind: str
    prev: str | None
    sig: bytes
    signed: bytes
    unsigned: bytes
    cid: str
    rotation_keys: tuple[str, ...]
    keys: tuple[PublicKey, ...]
    verification_methods: dict[str, str]
    also_known_as: tuple[str, ...]
    services: dict[str, dict[str, str]]


@dataclass(slots=True)
class _Node:
    """A verified entry: its claims and, once processed, its place in the history."""

    index: int
    op: _Op
    claimed_nullified: bool
    created_at: datetime
    created_ns: int
    allowed: int = 0  # rotation keys still allowed to sign a child: op.keys[:allowed]
    child: _Node | None = None  # the most recent op whose prev is this op
    nullified: bool = False

    def where(self) -> str:
        return f"entry {self.index} (cid {self.op.cid})"


def _load(log: bytes | bytearray | memoryview | str) -> Any:
    if len(log) > MAX_LOG_SIZE:
        raise PLCOperationError(f"audit log of {len(log)} bytes exceeds {MAX_LOG_SIZE} bytes")
    return strict_json(log if isinstance(log, str) else bytes(log), "audit log", PLCOperationError)


def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise PLCOperationError(f"{what} must be a string, not {type(value).__name__}")
    return value


def _strings(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise PLCOperationError(f"{what} must be an array, not {type(value).__name__}")
    return tuple(_string(item, f"{what}[{i}]") for i, item in enumerate(value))


def _map(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PLCOperationError(f"{what} must be an object, not {type(value).__name__}")
    return value


def _rotation_key(value: str, what: str) -> PublicKey:
    try:
        return parse_did_key(value)
    except DIDSyntaxError as exc:
        raise PLCOperationError(f"{what} is not a K-256/P-256 did:key ({exc})") from None


def _check_did_key_syntax(value: str, what: str) -> None:
    """``did:key:`` + base58btc multibase, any key type (PLC spec v0.2 verificationMethods)."""
    body = value.removeprefix("did:key:z")
    if body == value or not body:
        raise PLCOperationError(f"{what} is not a did:key (did:key:z...): {_shown(value)}")
    try:
        parse_did_key(value)  # cached; the usual K-256 / P-256 key
        return
    except DIDSyntaxError:
        pass
    try:
        b58decode(body)
    except DIDSyntaxError as exc:
        raise PLCOperationError(f"{what} is not a did:key ({exc}): {_shown(value)}") from None


def _decode_sig(sig: str, what: str) -> bytes:
    """Strict unpadded base64url (RFC 4648 section 5) of exactly 64 bytes."""
    if "=" in sig:
        raise PLCOperationError(f"{what} has base64 padding characters (must be unpadded)")
    if not _B64URL.fullmatch(sig):
        raise PLCOperationError(f"{what} is not unpadded base64url: {_shown(sig)}")
    if len(sig) != 86:
        raise PLCOperationError(f"{what} must be 86 characters (64 bytes r||s), got {len(sig)}")
    raw = base64.urlsafe_b64decode(sig + "==")
    if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != sig:
        raise PLCOperationError(f"{what} has non-zero trailing padding bits")
    return raw


def _parse_op(value: object, where: str) -> _Op:
    """Type-check one operation and normalise it; nothing cryptographic beyond key parsing."""
    op = dict(_map(value, f"{where} operation"))
    kind = op.get("type")
    if not isinstance(kind, str) or (fields := _FIELDS.get(kind)) is None:
        raise PLCOperationError(f"{where} has unknown operation type {_shown(kind)}")
    if op.keys() != fields:
        missing = sorted(fields - op.keys())
        extra = sorted(set(op) - fields)
        detail = f"missing {missing}" if missing else f"unknown fields {_shown(extra)}"
        raise PLCOperationError(f"{where} {kind} operation has {detail}")
    prev = op["prev"]
    if prev is not None:
        if not _OP_CID.fullmatch(_string(prev, f"{where} prev")):
            raise PLCOperationError(f"{where} prev is not a dag-cbor CID: {_shown(prev)}")
    elif kind == "plc_tombstone":
        raise PLCOperationError(f"{where} tombstone must have a prev")
    if kind == "create" and prev is not None:
        raise PLCOperationError(f"{where} legacy create operation must have a null prev")
    sig = _decode_sig(_string(op["sig"], f"{where} sig"), f"{where} sig")
    methods: dict[str, str] = {}
    services: dict[str, dict[str, str]] = {}
    aka: tuple[str, ...] = ()
    rotation: tuple[str, ...] = ()
    if kind == "plc_operation":
        rotation = _strings(op["rotationKeys"], f"{where} rotationKeys")
        if len(rotation) > MAX_ROTATION_KEYS:
            raise PLCOperationError(f"{where} has more than {MAX_ROTATION_KEYS} rotationKeys")
        for name, key in _map(op["verificationMethods"], f"{where} verificationMethods").items():
            what = f"{where} verificationMethods[{_shown(name)}]"
            _check_did_key_syntax(_string(key, what), what)
            methods[name] = key
        aka = _strings(op["alsoKnownAs"], f"{where} alsoKnownAs")
        for name, item in _map(op["services"], f"{where} services").items():
            what = f"{where} services[{_shown(name)}]"
            svc = _map(item, what)
            if svc.keys() != {"type", "endpoint"}:
                raise PLCOperationError(f"{what} must have exactly the fields type, endpoint")
            services[name] = {
                "type": _string(svc["type"], f"{what}.type"),
                "endpoint": _string(svc["endpoint"], f"{what}.endpoint"),
            }
        op.update(rotationKeys=list(rotation), alsoKnownAs=list(aka))
        op.update(verificationMethods=methods, services=services)
    elif kind == "create":
        # normalised as the directory does (normalizeOp: ensureAtprotoPrefix / ensureHttpPrefix)
        signing = _string(op["signingKey"], f"{where} signingKey")
        recovery = _string(op["recoveryKey"], f"{where} recoveryKey")
        handle = _string(op["handle"], f"{where} handle")
        service = _string(op["service"], f"{where} service")
        rotation = (recovery, signing)
        methods = {"atproto": signing}
        if not handle.startswith("at://"):
            handle = "at://" + handle.replace("http://", "", 1).replace("https://", "", 1)
        aka = (handle,)
        if not service.startswith(("http://", "https://")):
            service = "https://" + service
        services = {"atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": service}}
    keys = tuple(_rotation_key(key, f"{where} rotation key {i}") for i, key in enumerate(rotation))
    signed = _encode(op, f"{where} operation")
    if len(signed) > MAX_OPERATION_SIZE:
        raise PLCOperationError(
            f"{where} operation is {len(signed)} bytes of DAG-CBOR (limit {MAX_OPERATION_SIZE})"
        )
    del op["sig"]
    unsigned, cid = _encode(op, f"{where} operation"), str(CID.for_dag_cbor(signed))
    return _Op(kind, prev, sig, signed, unsigned, cid, rotation, keys, methods, aka, services)


def _parse_datetime(value: object, what: str) -> tuple[datetime, int]:
    """An atproto datetime (RFC 3339, ``T``, ``Z`` or an offset, up to 9 fraction digits)."""
    text = _string(value, what)
    match = _DATETIME.fullmatch(text)
    if match is None or text.endswith("-00:00"):
        raise PLCOperationError(f"{what} is not an RFC 3339 datetime: {_shown(text)}")
    fraction = match.group(1) or ""
    whole = text[: match.start(1) - 1] + text[match.end(1) :] if fraction else text
    try:  # whole seconds here, the fraction below (fromisoformat would drop nanoseconds)
        moment = datetime.fromisoformat(whole).astimezone(UTC)
    except (ValueError, OverflowError):
        raise PLCOperationError(f"{what} is not a valid datetime: {_shown(text)}") from None
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    return moment.replace(microsecond=nanos // 1000), seconds * 1_000_000_000 + nanos


def _parse_entries(log: object, did: str) -> list[_Node]:
    if isinstance(log, bytes | bytearray | memoryview | str):
        log = _load(log)
    if not isinstance(log, Sequence) or isinstance(log, str | bytes):
        raise PLCOperationError(f"audit log must be a JSON array, not {type(log).__name__}")
    if len(log) > MAX_LOG_ENTRIES:
        raise PLCOperationError(f"audit log has {len(log)} entries (limit {MAX_LOG_ENTRIES})")
    nodes = []
    for index, raw in enumerate(log):
        where = f"entry {index}"
        entry = _map(raw, where)
        # extra entry fields are ignored, as both reference verifiers do: they are not signed
        for name in ("did", "operation", "cid", "nullified", "createdAt"):
            if name not in entry:
                raise PLCOperationError(f"{where} has no {name!r}")
        entry_did = _string(entry["did"], f"{where} did")
        claimed_cid = _string(entry["cid"], f"{where} cid")
        nullified = entry["nullified"]
        if not isinstance(nullified, bool):
            raise PLCOperationError(f"{where} nullified must be a boolean")
        created_at, created_ns = _parse_datetime(entry["createdAt"], f"{where} createdAt")
        op = _parse_op(entry["operation"], where)
        node = _Node(index, op, nullified, created_at, created_ns)
        if entry_did != did:
            raise PLCLogError(f"{node.where()} is for {_shown(entry_did)}, not {did}")
        if claimed_cid != op.cid:
            raise PLCLogError(f"{node.where()} claims cid {_shown(claimed_cid)}")
        nodes.append(node)
    return nodes


def _signer(node: _Node, keys: Sequence[PublicKey], allowed: int, rival: _Node | None) -> int:
    """Index of the first of ``keys[:allowed]`` the op's signature verifies under.

    ``rival`` is the child of the op's prev that a fork would nullify; a signature by one of the
    keys after ``allowed`` (not outranking the rival's signer) is named as such.
    """
    reason = "no rotation keys are allowed"
    for index, key in enumerate(keys):
        try:
            key.verify(node.op.unsigned, node.op.sig)
        except SignatureInvalidError as exc:
            reason = str(exc)
            continue
        if index < allowed:
            return index
        assert rival is not None  # only a fork has fewer allowed keys than rotation keys
        raise PLCLogError(
            f"{node.where()}: signed by rotation key {index} of its prev, which does not "
            f"outrank the signer of entry {rival.index}, so it cannot nullify it"
        )
    raise PLCLogError(
        f"{node.where()}: signature verifies under none of the {allowed} allowed rotation keys "
        f"({reason})"
    )


def verify_audit_log(log: bytes | str | Sequence[Mapping[str, Any]], did: str) -> PLCState:
    """Verify a did:plc audit log (``/log/audit`` JSON, or its parsed array) for ``did``.

    See the module docstring for every rule checked.

    Returns:
        The state after the last valid (non-nullified) operation.

    Raises:
        PLCOperationError: ``did`` is not a did:plc, or the log does not parse: JSON, size,
            entry count, field set or types, datetime, base64url signature encoding, did:key
            syntax, operation size.
        PLCLogError: the log does not verify: empty, wrong DID, cid mismatch, genesis hash,
            broken or forked chain, bad signature, op after a tombstone, createdAt order,
            nullification by a key without higher authority or after the recovery window,
            ``nullified`` flags that differ from the computed ones.
    """
    checked: object = did
    if not isinstance(checked, str) or not _PLC_DID.fullmatch(checked):
        raise PLCOperationError(f"not a did:plc: {_shown(did)}")
    nodes = _parse_entries(log, did)
    if not nodes:
        raise PLCLogError(f"audit log of {did} is empty")
    by_cid: dict[str, _Node] = {}
    head: _Node | None = None
    for node in nodes:
        op = node.op
        where = node.where()
        if op.cid in by_cid:
            raise PLCLogError(f"{where} repeats entry {by_cid[op.cid].index}")
        if head is None:
            if op.prev is not None:
                raise PLCLogError(f"{where}: the first entry must be a genesis operation")
            genesis = _did_for(op.signed)
            if genesis != did:
                raise PLCLogError(f"{where}: genesis operation hashes to {genesis}, not {did}")
            _signer(node, op.keys, len(op.keys), None)
        else:
            if op.prev is None:
                raise PLCLogError(f"{where}: only the first entry may be a genesis operation")
            parent = by_cid.get(op.prev)
            if parent is None:
                raise PLCLogError(f"{where}: prev {op.prev} names no earlier entry")
            if parent.nullified:
                raise PLCLogError(f"{where}: prev {op.prev} is a nullified operation")
            if parent.op.kind == "plc_tombstone":
                raise PLCLogError(f"{where}: nothing may follow the tombstone {op.prev}")
            if node.created_ns <= head.created_ns:
                raise PLCLogError(f"{where}: createdAt is not after that of entry {head.index}")
            first = parent.child  # not None: a fork, nullifying the history after the parent
            parent.allowed = _signer(node, parent.op.keys, parent.allowed, first)
            if first is not None:
                if node.created_ns - first.created_ns > _WINDOW_NS:
                    raise PLCLogError(
                        f"{where}: cannot nullify entry {first.index} more than "
                        f"{RECOVERY_WINDOW // timedelta(hours=1)} h after it was created"
                    )
                nullify: _Node | None = first
                while nullify is not None:
                    nullify.nullified = True
                    nullify = nullify.child
            parent.child = node
        node.allowed = len(op.keys)
        by_cid[op.cid] = node
        head = node
    for node in nodes:
        if node.nullified != node.claimed_nullified:
            state = "nullified" if node.nullified else "not nullified"
            raise PLCLogError(f"{node.where()} is {state}, but the log says otherwise")
    assert head is not None
    op = head.op
    return PLCState(
        did=did,
        rotation_keys=op.rotation_keys,
        verification_methods=MappingProxyType(op.verification_methods),
        also_known_as=op.also_known_as,
        services=MappingProxyType({k: MappingProxyType(v) for k, v in op.services.items()}),
        tombstoned=op.kind == "plc_tombstone",
        cid=op.cid,
        created_at=head.created_at,
    )
