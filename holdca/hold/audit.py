"""The audit trail: one structured JSON event per issuance, revocation, CRL, rotation, refusal.

Events go to a :class:`logging.Logger` the embedder chooses (default ``holdca.audit``),
at INFO for what the hold did and WARNING for refusals. The message is one line of JSON
with sorted keys; the same dict is attached to the record as ``record.holdca_event`` for
structured handlers. Only the fields listed per event are ever written; none of them can
hold a secret (no key material, PINs or passphrases; refusal messages come from holdca
errors, whose messages never carry secrets). Every string is cut to :data:`MAX_FIELD`
characters, so a caller cannot make an event line large. ``tags`` (for example
``{"insecure_no_auth": True}``) are added to every event.

**Sinks** see every event as the same dict, whatever level the logger keeps: metrics
(:mod:`holdca.server.metrics`) and the anomaly detector (:mod:`holdca.hold.alerts`) are
sinks. A sink runs synchronously, in the thread that emits, after the line is logged; it
must be thread-safe and must not change the dict. A sink that raises never fails the
operation that emitted the event: the error is counted (:attr:`AuditLog.sink_failures`)
and the first one of each sink is logged (logger ``holdca.hold.audit``).

Example::

    import logging
    logging.getLogger("holdca.audit").addHandler(logging.FileHandler("/var/log/hold-audit.jsonl"))
    audit = AuditLog()          # or AuditLog(logging.getLogger("myhold.audit"))
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from holdca.hold.ledger import DenyEntry, IssuanceRecord, Revocation, serial_hex

__all__ = ["AUDIT_LOGGER", "MAX_FIELD", "AuditLog", "AuditSink"]

AUDIT_LOGGER = "holdca.audit"
"""Name of the default audit logger."""

MAX_FIELD = 512
"""Longest string written in an audit event field (longer ones end in ``...``)."""

_Value = str | int | bool | None | list[str]

AuditSink = Callable[[Mapping[str, _Value]], None]
"""Something that is handed every audit event (the dict the JSON line is made of)."""

_log = logging.getLogger("holdca.hold.audit")


def _time(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _bounded(value: _Value) -> _Value:
    if isinstance(value, str):
        return value if len(value) <= MAX_FIELD else value[: MAX_FIELD - 3] + "..."
    if isinstance(value, list):
        return [str(_bounded(v)) for v in value[:16]]
    return value


class AuditLog:
    """Writes holdca's audit events as JSON lines to a logger.

    Every method takes the event time explicitly (``now``), never reading a clock.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        tags: Mapping[str, _Value] | None = None,
        sinks: Iterable[AuditSink] = (),
    ) -> None:
        """Audit to ``logger`` (default: ``logging.getLogger("holdca.audit")``).

        ``tags`` are added to every event; every event is also handed to each of
        ``sinks`` (see :meth:`add_sink`).
        """
        self.logger = logger if logger is not None else logging.getLogger(AUDIT_LOGGER)
        self.tags = dict(tags or {})
        self.sink_failures = 0
        """How many times a sink raised (each failure is swallowed)."""
        self._sinks: tuple[AuditSink, ...] = ()
        self._sink_lock = threading.Lock()
        self._failed_sinks: set[int] = set()
        for sink in sinks:
            self.add_sink(sink)

    @property
    def sinks(self) -> tuple[AuditSink, ...]:
        """The sinks, in the order they are called."""
        return self._sinks

    def add_sink(self, sink: AuditSink) -> None:
        """Hand every later event to ``sink`` too (after the logger; thread-safe).

        ``sink(event)`` gets the event's dict, also when the logger drops its level; it
        must not modify it. An exception it raises is counted and swallowed.
        """
        with self._sink_lock:
            self._sinks = (*self._sinks, sink)

    def remove_sink(self, sink: AuditSink) -> None:
        """Stop handing events to ``sink`` (no error when it is not a sink)."""
        with self._sink_lock:
            self._sinks = tuple(s for s in self._sinks if s is not sink)

    def wants(self, level: int) -> bool:
        """Whether an event at ``level`` goes anywhere (the logger keeps it, or a sink)."""
        return bool(self._sinks) or self.logger.isEnabledFor(level)

    def emit(self, event: str, now: datetime, fields: Mapping[str, _Value], *, level: int) -> None:
        """Write one event: ``{"event": event, "time": now, **fields}`` as JSON.

        Then hand the same dict to every sink. Nothing is built when the logger would
        drop the event at ``level`` and there is no sink.
        """
        logged = self.logger.isEnabledFor(level)
        sinks = self._sinks
        if not logged and not sinks:
            return
        body: dict[str, _Value] = {"event": event, "time": now.isoformat()}
        body.update((k, _bounded(v)) for k, v in fields.items())
        body.update(self.tags)
        if logged:
            self.logger.log(
                level,
                json.dumps(body, sort_keys=True, separators=(",", ":")),
                extra={"holdca_event": body},
            )
        for sink in sinks:
            try:
                sink(body)
            except Exception:  # a sink must never fail the operation that emitted
                self._sink_failed(sink, event)

    def _sink_failed(self, sink: AuditSink, event: str) -> None:
        with self._sink_lock:
            self.sink_failures += 1
            first = id(sink) not in self._failed_sinks
            if first:
                self._failed_sinks.add(id(sink))
        if first:  # once per sink: a broken sink must not flood the log
            _log.exception(
                "audit sink %r failed on a %r event (later failures only counted)", sink, event
            )

    def issued(self, record: IssuanceRecord, *, now: datetime, pds_host: str | None = None) -> None:
        """An issued certificate (after the ledger committed it); ``pds_host`` is the
        origin of the PDS the DID's identity named when the proof was checked."""
        if not self.wants(logging.INFO):  # the hot path: skip building it
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
                "repository": record.repository,
                "record_uri": record.record_uri,
                "proof_source": record.proof_source,
                "pds_host": pds_host,
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

    def denied(self, entry: DenyEntry, *, now: datetime) -> None:
        """A DID put on the deny list."""
        self.emit(
            "denied",
            now,
            {"did": entry.did, "reason": entry.reason, "source": entry.source},
            level=logging.WARNING,
        )

    def allowed(self, entry: DenyEntry, *, now: datetime) -> None:
        """A DID taken off the deny list."""
        self.emit(
            "allowed",
            now,
            {"did": entry.did, "denied_since": _time(entry.since), "reason": entry.reason},
            level=logging.INFO,
        )

    def did_changed(
        self,
        *,
        did: str,
        change: str,
        before: str | None,
        after: str | None,
        action: str,
        now: datetime,
    ) -> None:
        """The hold saw a DID change (``change``: ``key``, ``pds``, ``deactivated``,
        ``reactivated``) and what it did about it (``action``: ``revoked``, ``flagged``)."""
        self.emit(
            "did_changed",
            now,
            {"did": did, "change": change, "before": before, "after": after, "action": action},
            level=logging.WARNING,
        )

    def alert(self, kind: str, *, did: str | None, now: datetime, detail: str) -> None:
        """An anomaly an operator should look at (``kind`` names it; ``detail`` in words)."""
        self.emit(
            "alert", now, {"alert": kind, "did": did, "detail": detail}, level=logging.WARNING
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
        """A refused request: which operation, for whom, the error class, message and
        (for authentication and transport errors) the XRPC error name as ``code``."""
        self.emit(
            "refused",
            now,
            {
                "operation": operation,
                "did": did,
                "caller": caller,
                "error": type(error).__name__,
                "code": getattr(error, "error", None),
                "message": str(error)[:500],
            },
            level=logging.WARNING,
        )

    def __repr__(self) -> str:
        return f"<AuditLog {self.logger.name!r}>"
