"""Rotation and CA state: which CAs the hold has, which one issues, and rotating them.

* :class:`CAState`: an immutable snapshot of the hold's CAs (:class:`LoadedCA`), swapped
  under a lock on rotation; :func:`load_state` builds it from the ledger's CA records;
* :class:`RotationMixin`: :meth:`~RotationMixin.rotate` (a new root, cross-signed both ways
  with the old one, which stays published for a grace period),
  :meth:`~RotationMixin.retire` and :meth:`~RotationMixin.compromise` (a CA key compromise:
  the CA stops issuing and is no longer trusted at once, a new one replaces it, no
  cross-certificate), part of :class:`~holdca.hold.HoldCA`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca.errors import ConfigError, KeyStoreError
from holdca.hold.audit import AuditLog
from holdca.hold.ledger import CARecord, IssuanceLedger, IssuanceRecord, Revocation
from holdca.keys import KeyStore, SignatureAlgorithm, Signer, spki_der
from holdca.pki import SubjectInfo, cross_sign, issue_intermediate, issue_root

_log = logging.getLogger("holdca.hold")

__all__ = [
    "CA_COMPROMISE",
    "FORMER_STATES",
    "CAState",
    "CompromiseResult",
    "LoadedCA",
    "RotationMixin",
    "RotationResult",
    "ca_id_of",
    "certificate_der",
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


@dataclass(frozen=True)
class CompromiseResult:
    """The outcome of :meth:`HoldCA.compromise`.

    Attributes:
        compromised: the CAs now in state ``compromised`` (the issuing CA first; with
            ``root=True`` on an intermediate hold, then its root).
        retired: CAs of a rotation grace period retired with them (they vouched for the
            compromised root by a cross-certificate).
        new_active: the new issuing CA (a root, or an intermediate).
        new_root: the root relying parties must now trust (``new_active`` for a root-only
            hold; the kept root, or the new root, for an intermediate hold).
        revoked: revocations of compromised intermediate certificates on their root's
            CRL (reason ``cACompromise``).
        at: when the compromise was recorded.
    """

    compromised: tuple[LoadedCA, ...]
    retired: tuple[LoadedCA, ...]
    new_active: x509.Certificate
    new_root: x509.Certificate
    revoked: tuple[Revocation, ...]
    at: datetime


CA_COMPROMISE = x509.ReasonFlags.ca_compromise.value
"""The revocation reason of everything a compromised CA issued: ``cACompromise``."""


def ca_id_of(cert: x509.Certificate) -> str:
    """The id of a CA certificate in the ledger: SHA-256 of its DER, lowercase hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


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

    if TYPE_CHECKING:  # provided by StatusMixin

        def revoke(
            self,
            *,
            now: datetime,
            serial: int | None = None,
            did: str | None = None,
            since: datetime | None = None,
            reason: str | None = None,
            invalidity_date: datetime | None = None,
        ) -> list[Revocation]: ...

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

    def compromise(
        self,
        *,
        new_label: str,
        now: datetime,
        root: bool = False,
        new_root_label: str | None = None,
        algorithm: SignatureAlgorithm | None = None,
    ) -> CompromiseResult:
        """Replace a compromised CA at once: no grace period and no cross-certificate.

        The issuing CA (and, with ``root``, the root above an issuing intermediate) goes to
        state ``compromised``: it never issues again and leaves the trust bundle, but it
        keeps answering OCSP and CRL for the certificates it issued (which the caller then
        revokes, :mod:`holdca.hold.recovery`). A new CA replaces it, under a new key:

        * a root-only hold: a new self-signed root under ``new_label``; CAs still published
          by a rotation are retired too (their cross-certificate vouches for the
          compromised key);
        * an intermediate hold: a new intermediate under ``new_label``, issued by the kept
          root; the old intermediate's certificate is revoked on the root's CRL
          (``cACompromise``; it is recorded in the ledger as the root's issuance, kind
          ``issue``, so CRL and OCSP can answer for it);
        * an intermediate hold with ``root=True`` (the root key is compromised too): a new
          root under ``new_root_label`` and a new intermediate under ``new_label``.

        The compromised key never signs anything for its successor. All CA records change
        in one ledger transaction.

        Raises:
            ConfigError: no key store; ``new_root_label`` missing or not wanted.
            KeyExistsError: a label is taken.
            LedgerError, ProfileError, SignerError.
        """
        if self.key_store is None:
            raise ConfigError("replacing a compromised CA needs the key store the hold uses")
        with self._lock:
            state = self._state
            old = state.active
            intermediate = old.parent_id is not None
            if intermediate and root and new_root_label is None:
                raise ConfigError("a compromised root above the intermediate needs new_root_label")
            if (not intermediate or not root) and new_root_label is not None:
                raise ConfigError("new_root_label is only for root=True on an intermediate hold")
            algo = algorithm or old.signer.algorithm
            records = {rec.ca_id: rec for rec in self.ledger.cas()}
            generation = len(records) + 1
            compromised = [old]
            if intermediate and root:
                compromised.extend(state.roots)
            retired = list(state.published) if not intermediate else []
            new_signer = self.key_store.generate(new_label, algo)
            changes: list[CARecord] = []
            if not intermediate:
                new_cert = issue_root(
                    new_signer,
                    hold_did=self.hold_did,
                    subject=self.subject,
                    now=now,
                    common_name=f"ATCR Hold CA G{generation} - {self.hold_did}",
                )
                new_root_cert = new_cert
                parent_id = None
            else:
                if root:
                    assert new_root_label is not None
                    root_signer = self.key_store.generate(new_root_label, algo)
                    root_cert = issue_root(
                        root_signer,
                        hold_did=self.hold_did,
                        subject=self.subject,
                        now=now,
                        common_name=f"ATCR Hold CA G{generation} - {self.hold_did}",
                    )
                    changes.append(
                        CARecord(
                            ca_id_of(root_cert),
                            new_root_label,
                            certificate_der(root_cert),
                            now - timedelta(microseconds=1),
                            "root",
                        )
                    )
                else:
                    root_signer, root_cert = state.roots[0].signer, state.roots[0].certificate
                new_cert = issue_intermediate(
                    root_signer,
                    root_cert,
                    new_signer.public_key,
                    hold_did=self.hold_did,
                    subject=self.subject,
                    now=now,
                    common_name=f"ATCR Hold Issuing CA G{generation} - {self.hold_did}",
                )
                new_root_cert = root_cert
                parent_id = ca_id_of(root_cert)
            new_record = CARecord(
                ca_id_of(new_cert),
                new_label,
                certificate_der(new_cert),
                now,  # == the compromised CAs' retire_at: see interrupted_compromise
                "active",
                parent_id=parent_id,
            )
            for ca in compromised:
                changes.append(replace(records[ca.ca_id], state="compromised", retire_at=now))
            for ca in retired:
                changes.append(replace(records[ca.ca_id], state="retired", retire_at=now))
            self.ledger.put_cas([*changes, new_record])  # one transaction
            self._state = load_state(self.key_store, self.ledger.cas())
        for ca in compromised:
            self.audit.rotated(
                old_id=ca.ca_id, new_id=new_record.ca_id, retire_at=now, now=now, step="compromised"
            )
        for ca in retired:
            self.audit.rotated(
                old_id=ca.ca_id, new_id=new_record.ca_id, retire_at=now, now=now, step="retired"
            )
        revoked = self.revoke_compromised_intermediates(now)
        return CompromiseResult(
            tuple(compromised), tuple(retired), new_cert, new_root_cert, tuple(revoked), now
        )

    def interrupted_compromise(self) -> bool:
        """Whether the active CA replaced a compromised one at the same instant.

        :meth:`compromise` gives the new CA ``created_at`` equal to the compromised CAs'
        ``retire_at``; a recovery that finds this with no recovery record for the new CA
        knows that a previous run stopped between the two.
        """
        records = self.ledger.cas()
        active = [r for r in records if r.state == "active"]
        return bool(active) and any(
            r.state == "compromised" and r.retire_at == active[0].created_at for r in records
        )

    def revoke_compromised_intermediates(self, now: datetime) -> list[Revocation]:
        """Revoke every compromised intermediate's certificate on its root's CRL (idempotent).

        The certificate is recorded as an issuance of its root (kind ``issue``, the hold's
        DID as subject) the first time, then revoked with reason ``cACompromise``.
        """
        out: list[Revocation] = []
        for rec in self.ledger.cas():
            if rec.state != "compromised" or rec.parent_id is None:
                continue
            cert = x509.load_der_x509_certificate(rec.certificate_der)
            serial = cert.serial_number
            if self.ledger.get(serial) is None:
                self.ledger.record_issuance(
                    IssuanceRecord(
                        serial=serial,
                        did=self.hold_did,
                        manifest_digest="",
                        commit_cid=None,
                        rev=None,
                        not_before=cert.not_valid_before_utc,
                        not_after=cert.not_valid_after_utc,
                        certificate_der=rec.certificate_der,
                        issuer_id=rec.parent_id,
                        issued_at=rec.created_at,
                        kind="issue",
                    )
                )
            if self.ledger.revocation(serial) is None:
                out.extend(self.revoke(serial=serial, reason=CA_COMPROMISE, now=now))
        return out

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
