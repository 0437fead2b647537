"""Revoking, and the deny list, for :class:`~holdca.hold.HoldCA`: by the operator and by users.

* :meth:`RevocationMixin.revoke`: the operator revokes one certificate or a DID's;
* :meth:`RevocationMixin.revoke_own`: an authenticated user revokes certificates of **their
  own DID** only (by serial, or all issued since a time), with one of
  :data:`USER_REASONS` (``POST /xrpc/io.atcr.hold.revokeCertificates``);
* :meth:`RevocationMixin.deny`, :meth:`~RevocationMixin.allow` and
  :meth:`~RevocationMixin.lift_own_denial`: the deny list. A ``keyCompromise`` revocation
  denies the DID new certificates; the user may lift only a denial their own revocation
  made (source ``user``), the operator any.

Every revocation is recorded in the ledger, audited, and dropped from the OCSP cache at
once; the next CRL request builds a new CRL (see :mod:`holdca.hold.status`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Final

from cryptography import x509

from holdca.atproto.did import validate_account_did
from holdca.errors import AuthorizationError, HoldCAError, LedgerError, MalformedInputError
from holdca.hold.audit import AuditLog
from holdca.hold.ledger import DenyEntry, IssuanceLedger, IssuanceRecord, Revocation, serial_hex

if TYPE_CHECKING:
    from holdca.hold.status import OCSPAnswerCache

__all__ = ["USER_REASONS", "RevocationMixin"]

USER_REASONS: Final = frozenset(
    {"keyCompromise", "superseded", "cessationOfOperation", "unspecified"}
)
"""The revocation reasons a user may give for their own certificates."""

_KEY_COMPROMISE: Final = x509.ReasonFlags.key_compromise.value


class RevocationMixin:
    """Revocation for :class:`~holdca.hold.HoldCA` (which provides the attributes below)."""

    ledger: IssuanceLedger
    audit: AuditLog
    _ocsp_answers: OCSPAnswerCache

    if TYPE_CHECKING:  # provided by IssuanceMixin

        def publish_log(self) -> None: ...

    def revoke(
        self,
        *,
        now: datetime,
        serial: int | None = None,
        did: str | None = None,
        since: datetime | None = None,
        reason: str | None = None,
        invalidity_date: datetime | None = None,
    ) -> list[Revocation]:
        """Revoke one certificate (``serial``) or every certificate of ``did`` (since ``since``).

        Already revoked certificates keep their first revocation. Each revocation is
        audited; the next CRL lists them and OCSP answers them at once. A
        ``keyCompromise`` revocation also puts the DID on the deny list (the ATProto
        account is compromised: no new certificates for it until :meth:`allow`), even
        when it had no certificate to revoke.

        Returns:
            The revocations (new or earlier), by serial.

        Raises:
            ValueError: neither or both of ``serial`` and ``did``; ``since`` without ``did``.
            LedgerError: unknown serial, unknown reason, or the ledger failed.
        """
        if (serial is None) == (did is None):
            raise ValueError("give exactly one of serial= or did=")
        if since is not None and did is None:
            raise ValueError("since= needs did=")
        try:
            if serial is not None:
                found = self.ledger.get(serial)
                if found is None:
                    raise LedgerError(
                        f"no certificate with serial {serial:x} was issued by this hold"
                    )
                records = [found]
            else:
                assert did is not None
                records = list(self.ledger.by_did(did, since=since))
            banned = {r.did for r in records} | ({did} if did else set())
            return self._revoke_records(
                records, reason, invalidity_date, now, banned=banned, source="revocation"
            )
        except HoldCAError as exc:
            self.audit.refused(operation="revoke", did=did, caller=None, error=exc, now=now)
            raise

    def revoke_own(
        self,
        caller: str,
        *,
        now: datetime,
        reason: str,
        serials: Sequence[int] | None = None,
        since: datetime | None = None,
    ) -> list[Revocation]:
        """A user revokes their own certificates: ``serials``, or all issued since ``since``
        (all of them when neither is given).

        ``caller`` is the authenticated DID (the service-auth token's ``iss``): only
        certificates issued to it are ever revoked. A serial that is not the caller's,
        whether unknown or another DID's, refuses the whole request with the same message
        (nothing about other users' certificates is revealed) and revokes nothing. A
        ``keyCompromise`` revocation also denies the DID new certificates, until the
        user (:meth:`lift_own_denial`) or the operator (:meth:`allow`) lifts it.

        Raises:
            MalformedInputError: ``reason`` is not one of :data:`USER_REASONS`; both
                ``serials`` and ``since``.
            AuthorizationError: a serial is not one of the caller's certificates.
            LedgerError: the ledger failed.
        """
        try:
            if reason not in USER_REASONS:
                raise MalformedInputError(
                    f"reason must be one of {', '.join(sorted(USER_REASONS))}"
                )
            if serials is not None and since is not None:
                raise MalformedInputError("give serials or since, not both")
            if serials is not None:
                records = []
                for serial in serials:
                    found = self.ledger.get(serial)
                    if found is None or found.did != caller:
                        raise AuthorizationError(
                            f"no certificate of yours has serial {serial_hex(serial)}"
                        )
                    records.append(found)
            else:
                records = self.ledger.by_did(caller, since=since)
            return self._revoke_records(records, reason, None, now, banned={caller}, source="user")
        except HoldCAError as exc:
            self.audit.refused(
                operation="revokeCertificates", did=caller, caller=caller, error=exc, now=now
            )
            raise

    def _revoke_records(
        self,
        records: Sequence[IssuanceRecord],
        reason: str | None,
        invalidity_date: datetime | None,
        now: datetime,
        *,
        banned: set[str],
        source: str,
    ) -> list[Revocation]:
        out: list[Revocation] = []
        for rec in records:
            entry = self.ledger.revoke(
                rec.serial, revoked_at=now, reason=reason, invalidity_date=invalidity_date
            )
            self._ocsp_answers.invalidate(rec.serial)
            self.audit.revoked(entry, rec.did, now=now)
            out.append(entry)
        if reason == _KEY_COMPROMISE:
            for did in sorted(banned):
                self.deny(did, reason="keyCompromise revocation", now=now, source=source)
        self.publish_log()  # the revocations' log entries (sequenced by ledger.revoke)
        return sorted(out, key=lambda e: e.serial)

    def deny(self, did: str, *, reason: str, now: datetime, source: str = "operator") -> DenyEntry:
        """Refuse new certificates for ``did`` until :meth:`allow` (audited).

        An earlier entry for the DID is kept (and returned).

        Raises:
            DIDSyntaxError: ``did`` is not a valid account DID.
            LedgerError: the ledger failed.
        """
        did = validate_account_did(did)
        entry = self.ledger.deny(did, reason=reason[:500], source=source, now=now)
        self.audit.denied(entry, now=now)
        return entry

    def allow(self, did: str, *, now: datetime) -> DenyEntry | None:
        """Lift the deny-list entry of ``did``; returns it (``None``: there was none).

        Raises:
            LedgerError: the ledger failed.
        """
        entry = self.ledger.allow(did)
        if entry is not None:
            self.audit.allowed(entry, now=now)
        return entry

    def lift_own_denial(self, caller: str, *, now: datetime) -> DenyEntry | None:
        """The user lifts the denial their own ``keyCompromise`` revocation made.

        Returns:
            The lifted entry, or ``None`` when the caller was not denied.

        Raises:
            AuthorizationError: the denial was made by the operator or by a revocation
                the operator made (only the operator can lift it).
            LedgerError: the ledger failed.
        """
        entry = self.ledger.denial(caller)
        if entry is None:
            return None
        if entry.source != "user":
            error = AuthorizationError(
                f"{caller} was denied by the hold's operator ({entry.source}); "
                "only the operator can lift it"
            )
            self.audit.refused(
                operation="allowIssuance", did=caller, caller=caller, error=error, now=now
            )
            raise error
        return self.allow(caller, now=now)
