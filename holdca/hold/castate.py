"""CA state and rotation: which CAs the hold has, which one issues, and rotating them.

* :class:`CAState`: an immutable snapshot of the hold's CAs (:class:`LoadedCA`), swapped
  under a lock on rotation; :func:`load_state` builds it from the ledger's CA records;
* :class:`RotationMixin`: :meth:`~RotationMixin.rotate` (a new root, cross-signed both ways
  with the old one, which stays published for a grace period) and
  :meth:`~RotationMixin.retire`, part of :class:`~holdca.hold.HoldCA`.

Replacing a compromised CA (no grace period, no cross-certificate) is
:mod:`holdca.hold.compromise`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca.errors import ConfigError, KeyStoreError
from holdca.hold.audit import AuditLog
from holdca.hold.ledger import CARecord, IssuanceLedger
from holdca.keys import KeyStore, SignatureAlgorithm, Signer, spki_der
from holdca.pki import SubjectInfo, cross_sign, issue_root

_log = logging.getLogger("holdca.hold")

__all__ = [
    "FORMER_STATES",
    "CAState",
    "LoadedCA",
    "RotationMixin",
    "RotationResult",
    "ca_id_of",
    "certificate_der",
    "fingerprint",
    "check_key_match",
    "load_state",
]


@dataclass(frozen=True)
class LoadedCA:
    """A CA of the hold with its signer, as loaded from the ledger and the key store.

    Attributes:
        ca_id: SHA-256 of the certificate (the ledger's key).
        key_label: the key store label of its key.
        signer: its key.
        certificate: its certificate.
        state: ``active``, ``root``, ``published``, ``retired`` or ``compromised`` (see
            :class:`~holdca.hold.ledger.CARecord`).
        retire_at: end of a published CA's grace period; for a retired or compromised
            CA, when it stopped being trusted.
        cross: cross-certificates certifying it by a neighbour CA.
        parent_id: the root of an issuing intermediate.
    """

    ca_id: str
    key_label: str
    signer: Signer = field(repr=False)
    certificate: x509.Certificate = field(repr=False)
    state: str
    retire_at: datetime | None
    cross: tuple[x509.Certificate, ...] = field(repr=False, default=())
    parent_id: str | None = None


@dataclass(frozen=True)
class CAState:
    """A snapshot of the hold's CAs.

    Attributes:
        active: the CA that issues new certificates.
        published: rotated-out CAs still trusted until their ``retire_at``.
        chain_suffix: what follows a new leaf in ``x5c`` (the active root; or the
            intermediate and its root; or during a grace period the cross-certificate
            and the old root).
        roots: parents of an active intermediate (empty for a root-only hold).
        former: retired and compromised CAs, kept only to answer for the certificates
            they issued (OCSP, CRL): they never issue and are not in the trust bundle.
    """

    active: LoadedCA
    published: tuple[LoadedCA, ...]
    chain_suffix: tuple[x509.Certificate, ...]
    roots: tuple[LoadedCA, ...] = ()
    former: tuple[LoadedCA, ...] = ()

    def by_id(self, ca_id: str) -> LoadedCA | None:
        """The active, published, root or former CA with ``ca_id``."""
        for ca in self.all():
            if ca.ca_id == ca_id:
                return ca
        return None

    def all(self) -> tuple[LoadedCA, ...]:
        """Every CA the hold answers for: active, published, roots, former."""
        return (self.active, *self.published, *self.roots, *self.former)


@dataclass(frozen=True)
class RotationResult:
    """The outcome of :meth:`HoldCA.rotate`.

    Attributes:
        old_root: the previous root (published until ``retire_at``).
        new_root: the new active root.
        new_by_old: the new root's key certified by the old root.
        old_by_new: the old root's key certified by the new root.
        retire_at: end of the grace period.
    """

    old_root: x509.Certificate
    new_root: x509.Certificate
    new_by_old: x509.Certificate
    old_by_new: x509.Certificate
    retire_at: datetime


def ca_id_of(cert: x509.Certificate) -> str:
    """The id of a CA certificate in the ledger: SHA-256 of its DER, lowercase hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of a certificate as colon-separated upper-case hex (as openssl prints it)."""
    hexa = ca_id_of(cert).upper()
    return ":".join(hexa[i : i + 2] for i in range(0, len(hexa), 2))


def certificate_der(cert: x509.Certificate) -> bytes:
    """A certificate's DER."""
    return cert.public_bytes(serialization.Encoding.DER)


def check_key_match(signer: Signer, certificate: x509.Certificate, label: str) -> None:
    """Raise ConfigError unless ``signer`` holds the key of ``certificate``."""
    if spki_der(signer.public_key) != spki_der(certificate.public_key()):
        raise ConfigError(
            f"the CA key {label!r} does not match the CA certificate "
            f"(certificate SHA-256 {ca_id_of(certificate)[:16]}...): refusing to start"
        )


FORMER_STATES = frozenset({"retired", "compromised"})
"""CA states that no longer issue or are trusted, but still answer for their certificates."""


def load_state(key_store: KeyStore, records: Sequence[CARecord]) -> CAState:
    """The CA snapshot the ledger's CA records describe, with their keys loaded.

    Retired and compromised CAs are loaded into ``former`` when their key is still in the
    key store (a destroyed key is skipped, with a warning: their certificates can then no
    longer be answered for).

    Raises:
        ConfigError: not exactly one active CA, a missing parent, a key that does not
            match its certificate.
        KeyStoreError: the key of a CA that issues or is trusted could not be loaded.
    """
    cas: list[LoadedCA] = []
    for rec in records:
        cert = x509.load_der_x509_certificate(rec.certificate_der)
        try:
            signer = key_store.load(rec.key_label)
        except KeyStoreError:
            if rec.state not in FORMER_STATES:
                raise
            _log.warning(
                "the key of former CA %s is gone: its certificates are not answered for",
                rec.ca_id[:16],
            )
            continue
        check_key_match(signer, cert, rec.key_label)
        cross = tuple(x509.load_der_x509_certificate(c) for c in rec.cross_certificates_der)
        cas.append(
            LoadedCA(
                rec.ca_id,
                rec.key_label,
                signer,
                cert,
                rec.state,
                rec.retire_at,
                cross,
                rec.parent_id,
            )
        )
    active = [ca for ca in cas if ca.state == "active"]
    if len(active) != 1:
        raise ConfigError(f"the ledger records {len(active)} active CAs; expected exactly one")
    issuing = active[0]
    published = tuple(ca for ca in cas if ca.state == "published")
    former = tuple(ca for ca in cas if ca.state in FORMER_STATES)
    by_id = {ca.ca_id: ca for ca in cas}
    suffix: list[x509.Certificate] = [issuing.certificate]
    roots: list[LoadedCA] = []
    parent_id = issuing.parent_id
    while parent_id is not None:
        parent = by_id.get(parent_id)
        if parent is None or len(suffix) > 4:
            raise ConfigError(f"the ledger lacks the parent CA {parent_id} of the issuing CA")
        suffix.append(parent.certificate)
        roots.append(parent)
        parent_id = parent.parent_id
    if published and issuing.parent_id is None:
        old = published[-1]
        via = [c for c in issuing.cross if c.issuer == old.certificate.subject]
        if via:
            suffix = [via[0], old.certificate]
    return CAState(issuing, published, tuple(suffix), tuple(roots), former)


class RotationMixin:
    """Rotation for :class:`~holdca.hold.HoldCA` (which provides the attributes below)."""

    _lock: threading.Lock
    _state: CAState
    ledger: IssuanceLedger
    key_store: KeyStore | None
    audit: AuditLog
    hold_did: str
    subject: SubjectInfo
    grace: timedelta

    def rotate(
        self,
        *,
        new_label: str,
        now: datetime,
        grace: timedelta | None = None,
        algorithm: SignatureAlgorithm | None = None,
    ) -> RotationResult:
        """Rotate to a new root: generate it, cross-sign both ways, keep the old one published.

        During the grace period new leaves chain ``leaf -> new-root-by-old-root -> old
        root``, so relying parties that trust only the old root keep verifying; after it
        the old root is retired and leaves chain straight to the new root. Relying
        parties should add the new root (see :meth:`trust_bundle`) during the grace
        period.

        Raises:
            ConfigError: no key store, or a rotation is already in its grace period.
            KeyExistsError: ``new_label`` is taken.
            LedgerError, ProfileError, SignerError.
        """
        if self.key_store is None:
            raise ConfigError("rotation needs the key store the hold was opened with")
        grace = self.grace if grace is None else grace
        with self._lock:
            state = self._state
            if state.published:
                raise ConfigError(
                    "a rotation is still in its grace period (until "
                    f"{state.published[0].retire_at}); retire it first"
                )
            old = state.active
            if old.parent_id is not None:
                raise ConfigError(
                    "rotating a hold that issues from an intermediate CA is not supported; "
                    "issue a new intermediate under the root instead"
                )
            algo = algorithm or old.signer.algorithm
            new_signer = self.key_store.generate(new_label, algo)
            generation = len(self.ledger.cas()) + 1
            new_root = issue_root(
                new_signer,
                hold_did=self.hold_did,
                subject=self.subject,
                now=now,
                common_name=f"ATCR Hold CA G{generation} - {self.hold_did}",
            )
            new_by_old = cross_sign(old.signer, old.certificate, new_root, now=now)
            old_by_new = cross_sign(new_signer, new_root, old.certificate, now=now)
            retire_at = now + grace
            new_record = CARecord(
                ca_id_of(new_root),
                new_label,
                certificate_der(new_root),
                now,
                "active",
                None,
                (certificate_der(new_by_old),),
            )
            old_record = CARecord(
                old.ca_id,
                old.key_label,
                certificate_der(old.certificate),
                now - timedelta(microseconds=1),
                "published",
                retire_at,
                (certificate_der(old_by_new),),
            )
            self.ledger.put_cas([old_record, new_record])  # one transaction
            self._state = load_state(self.key_store, self.ledger.cas())
        self.audit.rotated(old_id=old.ca_id, new_id=new_record.ca_id, retire_at=retire_at, now=now)
        return RotationResult(old.certificate, new_root, new_by_old, old_by_new, retire_at)

    def retire(self, now: datetime) -> list[str]:
        """Retire every published CA now (ending the grace period early); returns their ids."""
        with self._lock:
            ids = [ca.ca_id for ca in self._state.published]
        self._retire(now, force=True)
        return ids

    def _retire(self, now: datetime, *, force: bool = False) -> CAState:
        with self._lock:
            state = self._state
            done = [
                ca
                for ca in state.published
                if force or (ca.retire_at is not None and ca.retire_at <= now)
            ]
            if not done:
                return state
            self.ledger.put_cas(
                [
                    CARecord(
                        ca.ca_id,
                        ca.key_label,
                        certificate_der(ca.certificate),
                        now,
                        "retired",
                        ca.retire_at,
                        tuple(certificate_der(c) for c in ca.cross),
                        ca.parent_id,
                    )
                    for ca in done
                ]
            )
            assert self.key_store is not None
            self._state = load_state(self.key_store, self.ledger.cas())
            new_state = self._state
        for ca in done:
            self.audit.rotated(
                old_id=ca.ca_id,
                new_id=new_state.active.ca_id,
                retire_at=now,
                now=now,
                step="retired",
            )
        return new_state
