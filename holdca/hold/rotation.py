"""Rotation: :class:`RotationMixin`, part of :class:`~holdca.hold.HoldCA`.

:meth:`~RotationMixin.rotate` gives a root-only hold a new root, cross-signed both ways with
the old one, which stays published for a grace period (:meth:`~RotationMixin.retire` ends
it), and a hold with an issuing intermediate a new intermediate under the same root.
Replacing a compromised CA (no grace period, no cross-certificate) is
:mod:`holdca.hold.compromise`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from holdca.errors import ConfigError
from holdca.hold.audit import AuditLog
from holdca.hold.castate import (
    CAState,
    ca_id_of,
    certificate_der,
    crl_url_for,
    load_state,
)
from holdca.hold.ledger import CARecord, IssuanceLedger
from holdca.keys import KeyStore, SignatureAlgorithm
from holdca.pki import SubjectInfo, cross_sign, issue_intermediate, issue_root

__all__ = ["RotationMixin", "RotationResult"]


@dataclass(frozen=True)
class RotationResult:
    """The outcome of :meth:`HoldCA.rotate`.

    Attributes:
        old_root: the previous issuing CA: the old root (published until ``retire_at``),
            or, for a hold with an intermediate, the old intermediate (retired at once).
        new_root: the new issuing CA: the new root, or the new intermediate.
        new_by_old: the new root's key certified by the old root (None for an
            intermediate rotation: both intermediates chain to the same root).
        old_by_new: the old root's key certified by the new root (None likewise).
        retire_at: end of the grace period (``now`` for an intermediate rotation, and
            never later than the old root's notAfter minus the leaf lifetime).
        intermediate: whether the intermediate was rotated (the root is unchanged).
    """

    old_root: x509.Certificate
    new_root: x509.Certificate
    new_by_old: x509.Certificate | None
    old_by_new: x509.Certificate | None
    retire_at: datetime
    intermediate: bool = False


class RotationMixin:
    """Rotation for :class:`~holdca.hold.HoldCA` (which provides the attributes below)."""

    _lock: threading.Lock
    _state: CAState
    _ca_version: int
    ledger: IssuanceLedger
    key_store: KeyStore | None
    audit: AuditLog
    hold_did: str
    subject: SubjectInfo
    grace: timedelta
    leaf_validity: timedelta
    crl_url: str | None
    ocsp_url: str | None

    def _reload_state(self) -> CAState:
        """Load the CA snapshot the ledger records now (call with ``_lock`` held).

        The version is read before the records: a change made in between by another
        process makes the next :meth:`~holdca.hold.HoldCA.state` load again.
        """
        assert self.key_store is not None
        version = self.ledger.ca_version()
        self._state = load_state(self.key_store, self.ledger.cas())
        self._ca_version = version
        return self._state

    def rotate(
        self,
        *,
        new_label: str,
        now: datetime,
        grace: timedelta | None = None,
        algorithm: SignatureAlgorithm | None = None,
    ) -> RotationResult:
        """Rotate to a new issuing CA.

        A root-only hold gets a new root, cross-signed both ways with the old one, which
        stays published for the grace period: new leaves chain ``leaf -> new-root-by-old-
        root -> old root``, so relying parties that trust only the old root keep
        verifying; after it the old root is retired and leaves chain straight to the new
        root. Relying parties should add the new root (see :meth:`trust_bundle`) during
        the grace period. The grace period ends early enough that every leaf issued in it
        expires before the old root does (at most the old root's notAfter minus the leaf
        lifetime; no grace at all when less is left). The cross-certificates name their
        issuer's CRL and the OCSP URL, as leaves do.

        A hold with an issuing intermediate gets a new intermediate under the same root
        (which needs the root key in the key store): relying parties trust the root, so
        nothing changes for them; the old intermediate is retired at once and keeps
        answering OCSP and CRL for what it issued.

        Raises:
            ConfigError: no key store, or a rotation is already in its grace period.
            KeyExistsError: ``new_label`` is taken.
            KeyNotFoundError: the root key of an intermediate hold is offline.
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
            if state.active.parent_id is not None:
                result, new_id = self._rotate_intermediate(state, new_label, algorithm, now)
            else:
                result, new_id = self._rotate_root(state, new_label, algorithm, grace, now)
            self._reload_state()
        self.audit.rotated(
            old_id=state.active.ca_id, new_id=new_id, retire_at=result.retire_at, now=now
        )
        if result.intermediate:
            self.audit.rotated(
                old_id=state.active.ca_id, new_id=new_id, retire_at=now, now=now, step="retired"
            )
        return result

    def _rotate_root(
        self,
        state: CAState,
        new_label: str,
        algorithm: SignatureAlgorithm | None,
        grace: timedelta,
        now: datetime,
    ) -> tuple[RotationResult, str]:
        assert self.key_store is not None
        old = state.active
        old_signer = old.key("rotation")
        new_signer = self.key_store.generate(new_label, algorithm or old_signer.algorithm)
        generation = len(self.ledger.cas()) + 1
        new_root = issue_root(
            new_signer,
            hold_did=self.hold_did,
            subject=self.subject,
            now=now,
            common_name=f"ATCR Hold CA G{generation} - {self.hold_did}",
        )
        new_id = ca_id_of(new_root)
        new_by_old = cross_sign(
            old_signer,
            old.certificate,
            new_root,
            now=now,
            crl_url=crl_url_for(self.crl_url, old.ca_id),
            ocsp_url=self.ocsp_url,
        )
        old_by_new = cross_sign(
            new_signer,
            new_root,
            old.certificate,
            now=now,
            crl_url=crl_url_for(self.crl_url, new_id),
            ocsp_url=self.ocsp_url,
        )
        last_leaf_start = old.certificate.not_valid_after_utc - self.leaf_validity
        retire_at = max(now, min(now + grace, last_leaf_start))
        self.ledger.put_cas(  # one transaction
            [
                CARecord(
                    old.ca_id,
                    old.key_label,
                    certificate_der(old.certificate),
                    now - timedelta(microseconds=1),
                    "published",
                    retire_at,
                    (certificate_der(old_by_new),),
                ),
                CARecord(
                    new_id,
                    new_label,
                    certificate_der(new_root),
                    now,
                    "active",
                    None,
                    (certificate_der(new_by_old),),
                ),
            ]
        )
        return RotationResult(old.certificate, new_root, new_by_old, old_by_new, retire_at), new_id

    def _rotate_intermediate(
        self,
        state: CAState,
        new_label: str,
        algorithm: SignatureAlgorithm | None,
        now: datetime,
    ) -> tuple[RotationResult, str]:
        assert self.key_store is not None
        old = state.active
        parent = state.by_id(old.parent_id or "")
        if parent is None:
            raise ConfigError(f"the ledger lacks the root {old.parent_id} of the intermediate")
        root_signer = parent.key("rotating the intermediate")
        algo = algorithm or (old.signer.algorithm if old.signer else root_signer.algorithm)
        new_signer = self.key_store.generate(new_label, algo)
        generation = len(self.ledger.cas()) + 1
        new_cert = issue_intermediate(
            root_signer,
            parent.certificate,
            new_signer.public_key,
            hold_did=self.hold_did,
            subject=self.subject,
            now=now,
            common_name=f"ATCR Hold Issuing CA G{generation} - {self.hold_did}",
            crl_url=crl_url_for(self.crl_url, parent.ca_id),
        )
        new_id = ca_id_of(new_cert)
        self.ledger.put_cas(  # one transaction
            [
                CARecord(
                    old.ca_id,
                    old.key_label,
                    certificate_der(old.certificate),
                    now - timedelta(microseconds=1),
                    "retired",
                    now,
                    tuple(certificate_der(c) for c in old.cross),
                    old.parent_id,
                ),
                CARecord(new_id, new_label, certificate_der(new_cert), now, parent_id=parent.ca_id),
            ]
        )
        result = RotationResult(old.certificate, new_cert, None, None, now, intermediate=True)
        return result, new_id

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
            new_state = self._reload_state()
        for ca in done:
            self.audit.rotated(
                old_id=ca.ca_id,
                new_id=new_state.active.ca_id,
                retire_at=now,
                now=now,
                step="retired",
            )
        return new_state
