"""The audit trail: one structured JSON event per issuance, revocation, CRL, rotation, refusal.

Events go to a :class:`logging.Logger` the embedder chooses (default ``holdca.audit``),
at INFO for what the hold did and WARNING for refusals. The message is one line of JSON
with sorted keys; the same dict is attached to the record as ``record.holdca_event`` for
structured handlers. Only the fields listed per event are ever written; none of them can
hold a secret (no key material, PINs or passphrases; refusal messages come from holdca
errors, whose messages never carry secrets).

Example::

    import logging
    logging.getLogger("holdca.audit").addHandler(logging.FileHandler("/var/log/hold-audit.jsonl"))
    audit = AuditLog()          # or AuditLog(logging.getLogger("myhold.audit"))
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime

from holdca.hold.ledger import IssuanceRecord, Revocation, serial_hex

__all__ = ["AUDIT_LOGGER", "AuditLog"]

AUDIT_LOGGER = "holdca.audit"
"""Name of the default audit logger."""

_Value = str | int | bool | None | list[str]


def _time(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


class AuditLog:
    """Writes holdca's audit events as JSON lines to a logger.

    Every method takes the event time explicitly (``now``), never reading a clock.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        """Audit to ``logger`` (default: ``logging.getLogger("holdca.audit")``)."""
        self.logger = logger if logger is not None else logging.getLogger(AUDIT_LOGGER)

    def emit(self, event: str, now: datetime, fields: Mapping[str, _Value], *, level: int) -> None:
        """Write one event: ``{"event": event, "time": now, **fields}`` as JSON.

        Nothing is formatted when the logger would drop the event at ``level``.
        """
        if not self.logger.isEnabledFor(level):
            return
        body: dict[str, _Value] = {"event": event, "time": now.isoformat()}
        body.update(fields)
        self.logger.log(
            level,
            json.dumps(body, sort_keys=True, separators=(",", ":")),
            extra={"holdca_event": body},
        )

    def issued(self, record: IssuanceRecord, *, now: datetime) -> None:
        """An issued certificate (after the ledger committed it)."""
        if not self.logger.isEnabledFor(logging.INFO):  # the hot path: skip building it
            return
        self.emit(
            "issued",
            now,
            {
                "kind": record.kind,
                "serial": serial_hex(record.serial),
                "did": record.did,
                "manifest_digest": record.manifest_digest,
                "commit_cid": record.commit_cid,
                "rev": record.rev,
                "not_before": _time(record.not_before),
                "not_after": _time(record.not_after),
                "issuer_id": record.issuer_id,
            },
            level=logging.INFO,
        )

    def revoked(self, entry: Revocation, did: str, *, now: datetime) -> None:
        """A revoked certificate."""
        self.emit(
            "revoked",
            now,
            {
                "serial": serial_hex(entry.serial),
                "did": did,
                "reason": entry.reason,
                "revoked_at": _time(entry.revoked_at),
                "invalidity_date": _time(entry.invalidity_date),
            },
            level=logging.INFO,
        )

    def crl(
        self, *, issuer_id: str, number: int, entries: int, this_update: datetime, now: datetime
    ) -> None:
        """A CRL that was signed."""
        self.emit(
            "crl",
            now,
            {
                "issuer_id": issuer_id,
                "crl_number": number,
                "entries": entries,
                "this_update": _time(this_update),
            },
            level=logging.INFO,
        )

    def rotated(
        self,
        *,
        old_id: str,
        new_id: str,
        retire_at: datetime | None,
        now: datetime,
        step: str = "rotated",
    ) -> None:
        """A CA rotation step (``rotated`` or ``retired``)."""
        self.emit(
            step,
            now,
            {"old_ca": old_id, "new_ca": new_id, "retire_at": _time(retire_at)},
            level=logging.INFO,
        )

    def refused(
        self,
        *,
        operation: str,
        did: str | None,
        caller: str | None,
        error: Exception,
        now: datetime,
    ) -> None:
        """A refused request: which operation, for whom, and the error class and message."""
        self.emit(
            "refused",
            now,
            {
                "operation": operation,
                "did": did,
                "caller": caller,
                "error": type(error).__name__,
                "message": str(error)[:500],
            },
            level=logging.WARNING,
        )

    def __repr__(self) -> str:
        return f"<AuditLog {self.logger.name!r}>"
