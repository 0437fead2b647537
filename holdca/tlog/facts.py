"""Re-verify a certificate entry's ATProto facts against the network (the monitor's check).

For each :class:`~holdca.tlog.entry.CertificateEntry` the :class:`FactChecker` establishes,
with every input fetched by the monitor itself:

1. **the certificate is the entry's**: its subject CN and SAN URI name the entry's DID,
   and the record URI is an ``io.atcr.manifest`` record in that DID's repository;
2. **who the DID is now**: did:plc: the DID's audit log (``{plc}/{did}/log/audit``),
   verified by :func:`~holdca.atproto.plc.verify_audit_log`, and the identity rendered from
   it; did:web: the resolver's fresh resolution of ``/.well-known/did.json``;
3. **which keys the DID had when the certificate was issued** (did:plc only): the
   ``#atproto`` key of every non-nullified operation in force at some moment of
   ``[notBefore, notBefore + issuance_window]`` (the window covers holdca's notBefore
   backdating, 5 minutes by default). Nullified operations (undone by a recovery) and
   tombstones count as no key. No key in the window (the DID did not exist yet, or was
   tombstoned) makes the certificate unexpected. did:web has no key history: only its
   current key is known;
4. **the record exists and says what the entry says**: ``getRecord`` from the DID's PDS;
   the CAR's commit is verified (hashes, signature, MST inclusion) and the record must be
   an ``io.atcr.manifest`` naming the entry's manifest digest and repository;
5. **the commit**: when the PDS still serves the entry's commit (same CID), it must have
   the entry's rev and be signed by a key the DID had at issuance (so a key rotated
   since is fine, and a commit signed by a key the DID only got later is not). When the
   repo has moved on, the later commit must be signed by the DID's current key and its
   rev must be after the entry's (TIDs order by time); the old commit itself is no longer
   served by PDSes, so what is proven is that the DID still publishes the same record;
6. **the commit is not from after the issuance**: the entry's rev (a TID carries its time)
   is at most ``notBefore + issuance_window + clock_skew``.

A certificate logged without an ATProto record (an operator's ``holdca issue``) is
``unexpected`` without any fetch. A failed check gives the status ``unexpected`` with
the reason; a fetch that failed
(network, HTTP error, address refused) gives ``unchecked`` (try again later).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from cryptography import x509
from cryptography.x509.oid import NameOID

from holdca.atproto.didkey import PublicKey, parse_did_key
from holdca.atproto.identity import Identity, Resolver, rev_time
from holdca.atproto.plc import verify_audit_log
from holdca.atproto.record import MANIFEST_NSID, checked_manifest
from holdca.atproto.syntax import parse_record_uri
from holdca.atproto.verify import ProvenRecord, prove_record
from holdca.errors import (
    DIDDeactivatedError,
    HoldCAError,
    MalformedInputError,
    PLCLogError,
    RecordAbsentError,
    ResolutionError,
    SignatureInvalidError,
    VerificationError,
)
from holdca.net import Fetcher
from holdca.tlog.entry import CertificateEntry

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_ISSUANCE_WINDOW",
    "FactCheck",
    "FactChecker",
    "KeyHistory",
    "Status",
    "entry_json",
    "http_audit_logs",
]

DEFAULT_ISSUANCE_WINDOW: Final = timedelta(minutes=10)
"""How long after a certificate's notBefore it may have been issued (backdating + skew)."""
DEFAULT_CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far a PDS clock (a commit rev's time) may run ahead of the hold's."""

Status = Literal["verified", "unexpected", "unchecked"]
"""``verified``; ``unexpected`` (a check failed); ``unchecked`` (a fetch failed)."""

_FRACTION = re.compile(r"(\.\d{1,6})\d*")
_MAX_AUDIT_LOG: Final = 16 * 1024 * 1024


@dataclass(frozen=True)
class KeyHistory:
    """The ``#atproto`` key a did:plc had over time, from its verified audit log.

    Attributes:
        periods: ``(start, did:key or None)`` of every non-nullified operation in order; a
            key is in force from its start until the next start (None: tombstoned, or an
            operation without an ``atproto`` key).
    """

    periods: tuple[tuple[datetime, str | None], ...]

    @classmethod
    def from_audit_log(cls, log: bytes, did: str) -> KeyHistory:
        """Verify ``log`` (:func:`~holdca.atproto.plc.verify_audit_log`) and read the keys.

        Raises:
            PLCOperationError, PLCLogError: the log does not parse or verify.
        """
        verify_audit_log(log, did)
        periods: list[tuple[datetime, str | None]] = []
        for entry in json.loads(log):  # verified above: strict JSON of checked entries
            if entry["nullified"]:
                continue
            op = entry["operation"]
            key: str | None = None
            if op["type"] == "plc_operation":
                key = op["verificationMethods"].get("atproto")
            elif op["type"] == "create":
                key = op["signingKey"]
            stamp = _FRACTION.sub(r"\1", entry["createdAt"]).replace("Z", "+00:00")
            periods.append((datetime.fromisoformat(stamp).astimezone(UTC), key))
        return cls(tuple(periods))

    def keys_during(self, start: datetime, end: datetime) -> list[str]:
        """The keys in force at some moment of ``[start, end]`` (oldest first, no repeats)."""
        keys: list[str] = []
        for i, (begin, key) in enumerate(self.periods):
            until = self.periods[i + 1][0] if i + 1 < len(self.periods) else None
            if begin <= end and (until is None or until > start) and key and key not in keys:
                keys.append(key)
        return keys


@dataclass(frozen=True)
class FactCheck:
    """The verdict on one certificate entry.

    Attributes:
        status: see :data:`Status`.
        reason: why it is unexpected or unchecked, or how it was verified.
        commit_cid: the commit the PDS serves now (when the proof was read).
        commit_rev: its rev.
        signing_key: the did:key that verified that commit.
    """

    status: Status
    reason: str
    commit_cid: str | None = None
    commit_rev: str | None = None
    signing_key: str | None = None


def http_audit_logs(fetcher: Fetcher, plc_url: str) -> Callable[[str], bytes]:
    """A source of did:plc audit logs: ``GET {plc_url}/{did}/log/audit`` through ``fetcher``.

    The function raises ResolutionError (failed fetch, 404, other status) or
    AddressRefusedError (the policy refused the URL).
    """
    base = plc_url.rstrip("/")

    def fetch(did: str) -> bytes:
        response = fetcher.get(
            f"{base}/{did}/log/audit", limit=_MAX_AUDIT_LOG, accept="application/json"
        )
        if response.status == 404:
            raise ResolutionError(f"{did} is not registered at the PLC directory")
        if response.status != 200:
            raise ResolutionError(f"the PLC directory answered HTTP {response.status} for {did}")
        return response.body

    return fetch


def _certificate_did(der: bytes) -> set[str]:
    cert = x509.load_der_x509_certificate(der)
    names = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names |= set(san.get_values_for_type(x509.UniformResourceIdentifier))
    except x509.ExtensionNotFound:
        pass
    return names


class FactChecker:
    """Checks certificate entries against the network (see the module docstring).

    Keeps each DID's identity and key history for the checker's lifetime (one monitor run).
    """

    def __init__(
        self,
        resolver: Resolver,
        audit_logs: Callable[[str], bytes],
        *,
        issuance_window: timedelta = DEFAULT_ISSUANCE_WINDOW,
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    ) -> None:
        """Fetch records through ``resolver`` and did:plc audit logs through ``audit_logs``.

        ``resolver`` resolves did:web DIDs; did:plc identities are rendered from the audit
        log (verified here), so a directory cannot hide a key change from the monitor.
        """
        self.resolver = resolver
        self.audit_logs = audit_logs
        self.issuance_window = issuance_window
        self.clock_skew = clock_skew
        self._dids: dict[str, tuple[Identity, KeyHistory | None] | FactCheck] = {}

    def _identity(self, did: str) -> tuple[Identity, KeyHistory | None] | FactCheck:
        hit = self._dids.get(did)
        if hit is not None:
            return hit
        result: tuple[Identity, KeyHistory | None] | FactCheck
        try:
            if did.startswith("did:plc:"):
                log = self.audit_logs(did)
                state = verify_audit_log(log, did)
                history = KeyHistory.from_audit_log(log, did)
                document = state.did_document()  # DIDDeactivatedError when tombstoned
                result = (Identity.from_document(document, did, source="plc"), history)
            else:
                result = (self.resolver.resolve(did, fresh=True), None)
        except DIDDeactivatedError as exc:
            result = FactCheck("unexpected", f"the DID is deactivated: {exc}")
        except ResolutionError as exc:
            result = FactCheck("unchecked", f"resolving the DID failed: {exc}")
        except (MalformedInputError, PLCLogError) as exc:
            result = FactCheck("unexpected", f"the DID does not resolve to a valid identity: {exc}")
        self._dids[did] = result
        return result

    def check(self, entry: CertificateEntry) -> FactCheck:
        """Check ``entry``; never raises for what the network answers (see :class:`FactCheck`).

        Raises:
            HoldCAError: only for an unforeseen failure of a dependency (a bug).
        """
        if entry.did not in _certificate_did(entry.certificate):
            return FactCheck("unexpected", f"the certificate does not name {entry.did}")
        if not entry.has_record:
            return FactCheck(
                "unexpected",
                "the certificate was issued without an ATProto record (an operator issuance)",
            )
        _, collection, rkey = parse_record_uri(entry.record_uri)  # checked by CertificateEntry
        if collection != MANIFEST_NSID:
            return FactCheck("unexpected", f"the record URI is not an {MANIFEST_NSID} record")
        not_before = entry.x509.not_valid_before_utc
        issued_by = not_before + self.issuance_window
        if rev_time(entry.commit_rev) > issued_by + self.clock_skew:
            return FactCheck(
                "unexpected",
                f"the entry's commit rev {entry.commit_rev} is dated after the certificate "
                f"was issued (notBefore {not_before.isoformat()})",
            )
        resolved = self._identity(entry.did)
        if isinstance(resolved, FactCheck):
            return resolved
        identity, history = resolved
        then: list[PublicKey] | None = None
        if history is not None:
            keys = history.keys_during(not_before, issued_by)
            if not keys:
                return FactCheck(
                    "unexpected", "the DID had no atproto key when the certificate was issued"
                )
            then = [parse_did_key(k) for k in keys]
        try:
            car = self.resolver.get_record(identity, collection, rkey)
        except RecordAbsentError as exc:
            return FactCheck("unexpected", f"the record is absent: {exc}")
        except DIDDeactivatedError as exc:
            return FactCheck("unexpected", f"the repository is gone: {exc}")
        except ResolutionError as exc:
            return FactCheck("unchecked", f"fetching the record failed: {exc}")
        except MalformedInputError as exc:
            return FactCheck("unexpected", f"the record cannot be fetched: {exc}")
        return self._judge(entry, car, identity, then=then, collection=collection, rkey=rkey)

    def _prove(
        self, car: bytes, keys: Sequence[PublicKey], did: str, collection: str, rkey: str
    ) -> tuple[ProvenRecord, PublicKey]:
        error: SignatureInvalidError | None = None
        for key in keys:
            try:
                return prove_record(car, key, did, collection, rkey), key
            except SignatureInvalidError as exc:
                error = exc
        assert error is not None
        raise error

    def _judge(
        self,
        entry: CertificateEntry,
        car: bytes,
        identity: Identity,
        *,
        then: list[PublicKey] | None,
        collection: str,
        rkey: str,
    ) -> FactCheck:
        now_key = identity.signing_key
        candidates = [now_key, *[k for k in then or () if k.did_key != now_key.did_key]]
        try:
            proven, key = self._prove(car, candidates, entry.did, collection, rkey)
        except RecordAbsentError as exc:
            return FactCheck("unexpected", f"the record is absent: {exc}")
        except SignatureInvalidError:
            return FactCheck(
                "unexpected",
                "the record's commit is signed neither by the DID's current key nor by a key "
                "it had when the certificate was issued",
            )
        except (VerificationError, MalformedInputError) as exc:
            return FactCheck("unexpected", f"the record proof does not verify: {exc}")
        commit = proven.commit
        found = FactCheck("verified", "", str(commit.cid), commit.rev, key.did_key)

        def bad(reason: str) -> FactCheck:
            return FactCheck("unexpected", reason, found.commit_cid, commit.rev, key.did_key)

        try:
            manifest = checked_manifest(proven.record, entry.manifest_digest)
        except HoldCAError as exc:
            return bad(f"the record does not match: {exc}")
        if manifest.repository != entry.repository:
            return bad(
                f"the record is for repository {manifest.repository[:100]!r}, "
                f"not {entry.repository!r}"
            )
        then_keys = {k.did_key for k in then} if then is not None else None
        if str(commit.cid) == entry.commit_cid:
            if commit.rev != entry.commit_rev:
                return bad(f"the entry's commit has rev {commit.rev}, not {entry.commit_rev}")
            if then_keys is not None and key.did_key not in then_keys:
                return bad("the entry's commit is signed by a key the DID got only later")
            how = "the entry's commit"
            if key.did_key != now_key.did_key:
                how += ", signed by the key the DID had at issuance (rotated since)"
            return FactCheck("verified", how, found.commit_cid, commit.rev, key.did_key)
        if key.did_key != now_key.did_key:
            return bad("a later commit is signed by a key the DID no longer has")
        if commit.rev <= entry.commit_rev:
            return bad(
                f"the repository's current rev {commit.rev} is not after the entry's "
                f"{entry.commit_rev}, yet its commit differs"
            )
        return FactCheck(
            "verified",
            "the record is unchanged at a later commit signed by the DID's current key",
            found.commit_cid,
            commit.rev,
            key.did_key,
        )


def entry_json(entry: CertificateEntry) -> dict[str, Any]:
    """The facts of ``entry`` as JSON (serial in lower-case hex)."""
    cert = entry.x509
    return {
        "serial": format(cert.serial_number, "x"),
        "did": entry.did,
        "recordUri": entry.record_uri,
        "commitCid": entry.commit_cid,
        "commitRev": entry.commit_rev,
        "manifestDigest": entry.manifest_digest,
        "repository": entry.repository,
        "notBefore": cert.not_valid_before_utc.isoformat(),
        "notAfter": cert.not_valid_after_utc.isoformat(),
    }
