"""What the ledger keeps: issuances, revocations, CA records, deny-list entries.

Plain frozen dataclasses shared by every :class:`~holdca.hold.ledger.IssuanceLedger`
implementation, plus the two conversions every backend needs: serials as lowercase
hexadecimal text (a 128-bit serial does not fit a 64-bit integer column) and times as
integer microseconds since the Unix epoch (UTC), so range queries compare numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from cryptography import x509

__all__ = [
    "DID_STATUSES",
    "ITEM_STATUSES",
    "KINDS",
    "REASONS",
    "CARecord",
    "DIDState",
    "DenyEntry",
    "IssuanceRecord",
    "Recovery",
    "RecoveryItem",
    "Revocation",
    "from_us",
    "serial_hex",
    "to_us",
]

# RFC 5280 CRLReason names, as cryptography's ReasonFlags spells them; removeFromCRL only
# appears in delta CRLs, which holdca does not issue.
REASONS: Final = frozenset(
    flag.value for flag in x509.ReasonFlags if flag is not x509.ReasonFlags.remove_from_crl
)
"""RFC 5280 CRLReason names (camelCase, as in the RFC and cryptography's ReasonFlags)."""

KINDS: Final = frozenset({"cosign", "resign", "issue"})
"""Issuance kinds: a co-signature, a re-signature, an operator issuance without a proof."""

DID_STATUSES: Final = frozenset({"active", "deactivated"})
"""What the hold last saw of a DID: resolvable with a key, or tombstoned / gone."""

ITEM_STATUSES: Final = frozenset({"pending", "resigned", "refused"})
"""Progress of one certificate in a recovery: still to do, re-signed, or not re-signed
(its record no longer verifies)."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def serial_hex(serial: int) -> str:
    """The canonical text form of a certificate serial: lowercase hex, no leading zeros."""
    if serial < 0:
        raise ValueError("certificate serials are non-negative")
    return format(serial, "x")


def to_us(when: datetime) -> int:
    """``when`` as integer microseconds since the Unix epoch.

    Raises:
        ValueError: ``when`` is naive.
    """
    if when.tzinfo is None:
        raise ValueError("ledger times must be timezone-aware")
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: object) -> datetime:
    """The UTC time ``value`` microseconds after the Unix epoch.

    Raises:
        TypeError: ``value`` is not an integer (a corrupted row).
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("a ledger time must be an integer")
    return _EPOCH + timedelta(microseconds=value)


@dataclass(frozen=True)
class IssuanceRecord:
    """One issued certificate, as the ledger keeps it.

    Attributes:
        serial: the certificate serial number.
        did: the subject DID.
        manifest_digest: the signed image manifest digest (``sha256:...``).
        commit_cid: the ATProto commit CID the proof verified (``None`` for operator issuance).
        rev: the ATProto commit revision (TID), or ``None``.
        not_before: the certificate's notBefore.
        not_after: the certificate's notAfter.
        certificate_der: the certificate, DER.
        issuer_id: which CA issued it (the SHA-256 fingerprint of the CA certificate, hex).
        issued_at: when the hold issued it.
        kind: ``cosign``, ``resign`` or ``issue`` (operator issuance).
        repository: the image repository the user's record names (``None`` for ``issue``).
        record_uri: the ``at://`` URI of the manifest record the proof verified.
        proof_source: where the verified proof came from: ``live`` (fetched by the hold
            from the DID's PDS), ``hint`` (sent by the caller, checked current),
            ``vouched`` (operator-supplied files) or ``None`` (operator issuance).
    """

    serial: int
    did: str
    manifest_digest: str
    commit_cid: str | None
    rev: str | None
    not_before: datetime
    not_after: datetime
    certificate_der: bytes = field(repr=False)
    issuer_id: str
    issued_at: datetime
    kind: str = "cosign"
    repository: str | None = None
    record_uri: str | None = None
    proof_source: str | None = None


@dataclass(frozen=True)
class Revocation:
    """A revocation entry.

    Attributes:
        serial: the revoked certificate's serial.
        revoked_at: when the hold revoked it.
        reason: an RFC 5280 reason name (see :data:`REASONS`) or ``None``.
        invalidity_date: when the key is known or suspected to have become unusable.
    """

    serial: int
    revoked_at: datetime
    reason: str | None = None
    invalidity_date: datetime | None = None


@dataclass(frozen=True)
class CARecord:
    """A CA certificate the hold signs with or publishes (for rotation).

    Attributes:
        ca_id: SHA-256 fingerprint (hex) of ``certificate_der``.
        key_label: the KeyStore label of its private key.
        certificate_der: the CA certificate, DER.
        created_at: when it was added.
        state: ``active`` (issues new certificates), ``root`` (the trusted parent of
            an active intermediate), ``published`` (still trusted and
            revocation-served during a rotation grace period) or ``retired``.
        retire_at: end of the grace period of a ``published`` CA, else ``None``.
        cross_certificates_der: certificates cross-signing this CA with its neighbour.
        parent_id: for an intermediate (issuing) CA, the ``ca_id`` of its root; the root
            of such a hold has state ``root`` (trusted, signs nothing day to day).
    """

    ca_id: str
    key_label: str
    certificate_der: bytes = field(repr=False)
    created_at: datetime
    state: str = "active"
    retire_at: datetime | None = None
    cross_certificates_der: tuple[bytes, ...] = ()
    parent_id: str | None = None


@dataclass(frozen=True)
class DenyEntry:
    """A DID the hold refuses to issue to, until an operator (or the user) lifts it.

    Attributes:
        did: the denied DID.
        reason: why, in words (``keyCompromise revocation``, an operator's note).
        since: when the entry was made.
        source: who made it: ``operator``, ``revocation`` or ``user``.
    """

    did: str
    reason: str
    since: datetime
    source: str = "operator"


@dataclass(frozen=True)
class DIDState:
    """What the hold last saw when it resolved a DID itself.

    Attributes:
        did: the DID.
        signing_key: its ``#atproto`` key (did:key), or ``None`` when deactivated.
        pds_host: the origin (``scheme://host[:port]``) of its PDS endpoint, or ``None``.
        status: ``active`` or ``deactivated`` (see :data:`DID_STATUSES`).
        first_seen: when the hold first resolved it.
        updated_at: when the hold last saw it change (or first saw it).
    """

    did: str
    signing_key: str | None
    pds_host: str | None
    status: str
    first_seen: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Recovery:
    """A CA-compromise recovery (``holdca recover``), resumable from the ledger.

    Attributes:
        id: its number.
        old_ca: the compromised CA's id.
        new_ca: the CA that re-signs.
        started_at: when it started.
        finished_at: when every item was done, or ``None`` while it is open.
    """

    id: int
    old_ca: str
    new_ca: str
    started_at: datetime
    finished_at: datetime | None = None


@dataclass(frozen=True)
class RecoveryItem:
    """One live certificate of the compromised CA, and what the recovery did with it.

    Attributes:
        recovery_id: the recovery.
        serial: the old certificate's serial.
        status: ``pending``, ``resigned`` or ``refused`` (see :data:`ITEM_STATUSES`).
        new_serial: the serial of the re-signed certificate, if any.
        detail: why it was refused (the error), if it was.
    """

    recovery_id: int
    serial: int
    status: str = "pending"
    new_serial: int | None = None
    detail: str | None = None
