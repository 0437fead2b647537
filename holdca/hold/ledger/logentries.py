"""The transparency-log entries a ledger sequences with each issuance and revocation.

Every engine assigns the next log index to an issuance (and to a first revocation) in
the same transaction that records it, and stores the entry's bytes with it (table
``log_entry``): an issuance that was committed is sequenced, so a crash can never leave a
certificate in a user's hands that the log will not publish. The hold integrates these
entries into the published log afterwards (:mod:`holdca.hold.translog`).

The entries are the :mod:`holdca.tlog.entry` version-1 encodings, built here from the
ledger's records *without* refusing anything: a cosign record gives a well-formed
certificate entry; an operator issuance (kind ``issue``) a certificate entry without an
ATProto record; a malformed record a malformed entry, which the monitor reports.
"""

from __future__ import annotations

from datetime import datetime

from holdca.errors import LedgerError, TlogError
from holdca.hold.ledger.records import IssuanceRecord
from holdca.tlog.entry import RevocationEntry, encode_certificate

__all__ = ["issuance_entry", "revocation_entry"]


def issuance_entry(record: IssuanceRecord) -> bytes:
    """The log entry of ``record``: its certificate with the ATProto facts it rests on.

    An operator issuance (kind ``issue``) has no record: URI, commit and repository are
    empty, the manifest digest is kept when given.

    Raises:
        LedgerError: a field is too long to be logged (over 65535 bytes).
    """
    has_record = record.kind != "issue"
    try:
        return encode_certificate(
            record.certificate_der,
            (
                record.did,
                (record.record_uri or "") if has_record else "",
                (record.commit_cid or "") if has_record else "",
                (record.rev or "") if has_record else "",
                record.manifest_digest,
                (record.repository or "") if has_record else "",
            ),
        )
    except TlogError as exc:
        raise LedgerError(f"the issuance cannot be logged: {exc}") from exc


def revocation_entry(serial: int, did: str, revoked_at: datetime, reason: str | None) -> bytes:
    """The log entry of the revocation of ``serial`` (of ``did``) at ``revoked_at``.

    A missing reason is logged as ``unspecified``; the time in whole Unix seconds.

    Raises:
        LedgerError: the fields cannot be encoded (a serial of more than 20 bytes).
    """
    try:
        return RevocationEntry(
            serial, did, reason or "unspecified", max(int(revoked_at.timestamp()), 0)
        ).encode()
    except TlogError as exc:
        raise LedgerError(f"the revocation cannot be logged: {exc}") from exc
