"""CA key compromise: replace a compromised CA at once, with no grace period.

* :class:`CompromiseMixin`, part of :class:`~holdca.hold.HoldCA`:
  :meth:`~CompromiseMixin.compromise` (the CA stops issuing and is no longer trusted at
  once, a new one replaces it under a new key, no cross-certificate),
  :meth:`~CompromiseMixin.interrupted_compromise` (a compromise whose recovery never
  started) and :meth:`~CompromiseMixin.revoke_compromised_intermediates`;
* :class:`CompromiseResult`, what :meth:`~CompromiseMixin.compromise` did;
* :data:`CA_COMPROMISE`, the revocation reason of everything a compromised CA issued.

Revoking and re-signing the compromised CA's certificates is
:mod:`holdca.hold.recovery`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cryptography import x509

from holdca.errors import ConfigError
from holdca.hold.audit import AuditLog
from holdca.hold.castate import CAState, LoadedCA, ca_id_of, certificate_der, crl_url_for
from holdca.hold.ledger import CARecord, IssuanceLedger, IssuanceRecord, Revocation
from holdca.keys import KeyStore, SignatureAlgorithm
from holdca.pki import SubjectInfo, issue_intermediate, issue_root

__all__ = ["CA_COMPROMISE", "CompromiseMixin", "CompromiseResult"]


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


class CompromiseMixin:
    """CA compromise for :class:`~holdca.hold.HoldCA` (which provides the attributes below)."""

    _lock: threading.Lock
    _state: CAState
    ledger: IssuanceLedger
    key_store: KeyStore | None
    audit: AuditLog
    hold_did: str
    subject: SubjectInfo
    crl_url: str | None

    if TYPE_CHECKING:  # provided by StatusMixin and RotationMixin

        def _reload_state(self) -> CAState: ...

        def state(self, now: datetime | None = None) -> CAState: ...

        def crl(
            self, now: datetime, *, ca_id: str | None = None
        ) -> x509.CertificateRevocationList: ...

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
            algo = algorithm or old.key("replacing the CA").algorithm
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
                    root_signer = state.roots[0].key("a new intermediate")
                    root_cert = state.roots[0].certificate
                new_cert = issue_intermediate(
                    root_signer,
                    root_cert,
                    new_signer.public_key,
                    hold_did=self.hold_did,
                    subject=self.subject,
                    now=now,
                    common_name=f"ATCR Hold Issuing CA G{generation} - {self.hold_did}",
                    crl_url=crl_url_for(self.crl_url, ca_id_of(root_cert)),
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
            self._reload_state()
        for ca in compromised:
            self.audit.rotated(
                old_id=ca.ca_id, new_id=new_record.ca_id, retire_at=now, now=now, step="compromised"
            )
        for ca in retired:
            self.audit.rotated(
                old_id=ca.ca_id, new_id=new_record.ca_id, retire_at=now, now=now, step="retired"
            )
        revoked = self.revoke_compromised_intermediates(now)
        for kept in self.state().roots:
            if kept.signer is not None:  # store the root's new CRL for when its key is away
                self.crl(now, ca_id=kept.ca_id)
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
