"""DID changes: the hold notices a DID's key change, PDS move or deactivation, and acts.

A holdca certificate says that at time T the controller of a DID signed a record. When
the DID later changes hands (its ``#atproto`` key is rotated, its PDS moves to another
host, it is tombstoned), the hold's live certificates for it may speak for someone who no
longer controls it. :class:`DIDWatch` compares every *fresh* resolution the hold makes
with what the ledger recorded of the DID (:class:`~holdca.hold.ledger.DIDState`):

* ``key``: the ``#atproto`` key (as did:key) is not the recorded one;
* ``pds``: the PDS endpoint's origin (:attr:`~holdca.atproto.identity.Identity.pds_host`)
  is not the recorded one;
* ``deactivated``: resolution raised :class:`~holdca.errors.DIDDeactivatedError` (a PLC
  tombstone, a did:web document gone) for a DID recorded active, or never recorded but
  holding live certificates (they were issued while it was active);
* ``reactivated``: a DID recorded deactivated resolves again.

The first sight of an active DID records a baseline and nothing else. A resolution that
*failed* (network, address policy, a PLC log that does not verify, a document without a
key) is not a change and changes nothing. Identities an operator vouched for
(``source == "vouched"``) are not knowledge from the network and are skipped.

What the hold does about a change is the operator's policy (``HOLD_ON_DID_CHANGE``):

* ``revoke``: revoke the DID's *live* certificates (not expired, not revoked, issued at or
  before the observation), reason ``superseded`` for a key change, PDS move or
  reactivation and ``cessationOfOperation`` for a deactivation, through the hold's own
  revocation (audited, the OCSP cache invalidated); then one ``did_changed`` audit event
  per change with action ``revoked``;
* ``flag`` (the default): one ``did_changed`` audit event per change, action ``flagged``;
* ``ignore``: nothing but the record.

In every case the new state is recorded in the ledger, **after** the action: a failure
(LedgerError) while revoking or recording leaves the old state in place, so the next
observation sees the change again and finishes the job (revocation is idempotent: the
ledger keeps the first revocation and only live certificates are revoked; the audit event
is then written again: at least once, never silently lost).

Races. Observations of one DID are serialised in this process (a lock per DID, striped),
and each re-reads the ledger under the lock: two threads seeing the same change revoke
once and write one event; the second finds the change recorded. Observations are ordered
by their ``now`` (taken before the resolution started): one older than the recorded
change (``now < updated_at``) is *stale* and ignored, so a sweep that resolved before the
gate saw a rotation cannot undo it. Processes sharing a ledger are not serialised with
each other: they still revoke each certificate once (see above), but may both write the
event.

Failures. :meth:`DIDWatch.seen` and :meth:`DIDWatch.gone` raise LedgerError when the
ledger cannot be read or written (or a revocation fails). The trust gate lets it through
from :meth:`~DIDWatch.seen`, so the issuance is refused: the hold never issues a
certificate while its knowledge of the DID could not be brought up to date (the next
attempt retries the check). :meth:`DIDWatch.sweep` turns it into a ``failed`` result for
that DID and goes on with the others.

Example::

    watch = DIDWatch(ledger, audit, on_change="revoke", revoke=ca.revoke)
    report = watch.sweep(resolver, now=datetime.now(UTC))
    print(report.summary())
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol, get_args

from holdca.atproto.identity import Identity, Resolver
from holdca.errors import DIDDeactivatedError, HoldCAError, LedgerError
from holdca.hold.audit import AuditLog
from holdca.hold.ledger import DIDState, IssuanceLedger, Revocation, serial_hex

__all__ = [
    "DEFAULT_CONCURRENCY",
    "OUTCOMES",
    "Change",
    "DIDObserver",
    "DIDWatch",
    "Observation",
    "OnChange",
    "Revoker",
    "SweepReport",
    "resolve_observed",
]

_log = logging.getLogger("holdca.hold")

OnChange = Literal["revoke", "flag", "ignore"]
"""What the hold does about a DID change (``HOLD_ON_DID_CHANGE``)."""

DEFAULT_CONCURRENCY: Final = 8
"""How many DIDs :meth:`DIDWatch.sweep` resolves at once by default."""

OUTCOMES: Final = ("first", "unchanged", "changed", "gone", "stale", "skipped", "failed")
"""What one observation found (see :class:`Observation`)."""

_REASON_SUPERSEDED: Final = "superseded"
_REASON_GONE: Final = "cessationOfOperation"
_STRIPES: Final = 64


class Revoker(Protocol):
    """Revokes one certificate as the hold does (:meth:`HoldCA.revoke
    <holdca.hold.status.StatusMixin.revoke>`: audited, the OCSP cache invalidated)."""

    def __call__(self, *, now: datetime, serial: int, reason: str) -> Sequence[Revocation]:
        """Revoke ``serial`` with ``reason`` at ``now``; raises LedgerError on failure."""
        ...


class DIDObserver(Protocol):
    """What the trust gate and service auth tell about their fresh resolutions."""

    def seen(self, identity: Identity, *, now: datetime) -> object:
        """A fresh resolution returned ``identity``."""
        ...

    def gone(self, did: str, error: DIDDeactivatedError, *, now: datetime) -> object:
        """A fresh resolution of ``did`` raised ``error`` (tombstoned, document gone)."""
        ...


def resolve_observed(
    resolver: Resolver, did: str, observer: DIDObserver | None, *, now: datetime
) -> Identity:
    """Resolve ``did`` afresh and tell ``observer`` (if any) what the resolution showed.

    The one place where the trust gate and service auth report their fresh resolutions.

    Raises:
        Whatever ``resolver.resolve`` raises; DIDDeactivatedError only after ``observer.gone``
        heard of it (a LedgerError from recording that is logged, not raised: the DID is
        refused anyway). LedgerError: ``observer.seen`` could not record the identity.
    """
    if observer is None:
        return resolver.resolve(did, fresh=True)
    try:
        identity = resolver.resolve(did, fresh=True)
    except DIDDeactivatedError as exc:
        try:
            observer.gone(did, exc, now=now)
        except LedgerError as failure:
            _log.warning("could not record that %s is deactivated: %s", did, failure)
        raise
    observer.seen(identity, now=now)
    return identity


@dataclass(frozen=True)
class Change:
    """One thing that changed about a DID.

    Attributes:
        what: ``key``, ``pds``, ``deactivated`` or ``reactivated``.
        before: the recorded key (did:key) or PDS host, or ``None``.
        after: the resolved key or PDS host, or ``None`` (deactivated; no PDS).
    """

    what: str
    before: str | None
    after: str | None

    def to_json(self) -> dict[str, str | None]:
        """``{"what", "before", "after"}``."""
        return {"what": self.what, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class Observation:
    """What one resolution of a DID showed, and what the hold did about it.

    Attributes:
        did: the DID.
        outcome: one of :data:`OUTCOMES`: ``first`` (a baseline was recorded),
            ``unchanged``, ``changed`` (resolved, with changes), ``gone`` (resolution
            says deactivated; ``changes`` holds ``deactivated`` when that is news),
            ``stale`` (older than the recorded state: ignored), ``skipped`` (a vouched
            identity) or ``failed`` (resolving or recording failed: ``error``).
        changes: what changed (empty unless ``changed`` or news of ``gone``).
        action: with changes, what the policy did: ``revoked``, ``flagged``, ``ignored``.
        revoked: the serials revoked because of this observation.
        error: for ``failed`` the error (typed: a network failure is a ResolutionError,
            not a deactivation); for ``gone`` the DIDDeactivatedError.
    """

    did: str
    outcome: str
    changes: tuple[Change, ...] = ()
    action: str | None = None
    revoked: tuple[int, ...] = ()
    error: HoldCAError | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (serials in hex; the error as ``{"type", "message"}``)."""
        out: dict[str, Any] = {"did": self.did, "outcome": self.outcome}
        if self.changes:
            out["changes"] = [c.to_json() for c in self.changes]
            out["action"] = self.action
            out["revoked"] = [serial_hex(s) for s in self.revoked]
        if self.error is not None:
            out["error"] = {"type": type(self.error).__name__, "message": str(self.error)[:500]}
        return out

    def line(self) -> str:
        """One line of text: the DID, the outcome and, if any, what changed or failed."""
        text = f"{self.did}  {self.outcome}"
        if self.changes:
            what = ", ".join(
                f"{c.what} {c.before or '-'} -> {c.after or '-'}"
                if c.what in ("key", "pds")
                else c.what
                for c in self.changes
            )
            text += f": {what} ({self.action}"
            if self.action == "revoked":
                text += f" {len(self.revoked)} certificate{'s' * (len(self.revoked) != 1)}"
            text += ")"
        elif self.outcome == "failed" and self.error is not None:
            text += f": {type(self.error).__name__}: {str(self.error)[:200]}"
        return text


@dataclass(frozen=True)
class SweepReport:
    """What :meth:`DIDWatch.sweep` found, one observation per DID with live certificates.

    Attributes:
        time: the sweep's ``now``.
        observations: by DID.
    """

    time: datetime
    observations: tuple[Observation, ...]

    @property
    def counts(self) -> dict[str, int]:
        """How many DIDs had each outcome (every outcome named, zeros included)."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for observation in self.observations:
            counts[observation.outcome] += 1
        return counts

    @property
    def revoked(self) -> tuple[int, ...]:
        """Every serial the sweep revoked."""
        return tuple(s for o in self.observations for s in o.revoked)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: time, DID count, counts, revoked serials, observations."""
        return {
            "time": self.time.isoformat(),
            "dids": len(self.observations),
            "counts": self.counts,
            "revoked": [serial_hex(s) for s in self.revoked],
            "observations": [o.to_json() for o in self.observations],
        }

    def summary(self) -> str:
        """A text summary: one line of counts, then a line per DID that is not unchanged."""
        counts = self.counts
        head = f"swept {len(self.observations)} DIDs with live certificates: " + ", ".join(
            f"{counts[k]} {k}" for k in OUTCOMES if counts[k] or k in ("unchanged", "failed")
        )
        if self.revoked:
            head += f"; revoked {len(self.revoked)} certificates"
        lines = [o.line() for o in self.observations if o.outcome not in ("unchanged", "first")]
        return "\n".join([head, *lines])


class DIDWatch:
    """Records what the hold sees of DIDs and acts on changes (see the module docstring).

    Thread-safe (the ledger and the revoker must be). Time is always the caller's ``now``.
    """

    def __init__(
        self,
        ledger: IssuanceLedger,
        audit: AuditLog,
        *,
        on_change: OnChange | str = "flag",
        revoke: Revoker | None = None,
    ) -> None:
        """Watch DIDs in ``ledger``, auditing to ``audit``.

        Args:
            ledger: where DID states are kept and live certificates listed.
            audit: where ``did_changed`` events go.
            on_change: ``revoke``, ``flag`` or ``ignore`` (see the module docstring).
            revoke: how a certificate is revoked (the hold's ``revoke``); needed for
                ``on_change="revoke"``.

        Raises:
            ValueError: an unknown ``on_change``, or ``revoke`` policy without ``revoke``.
        """
        if on_change not in get_args(OnChange):
            raise ValueError(f"on_change must be revoke, flag or ignore, not {on_change!r}")
        if on_change == "revoke" and revoke is None:
            raise ValueError('on_change="revoke" needs revoke= (the hold\'s revoke)')
        self.ledger = ledger
        self.audit = audit
        self.on_change = on_change
        self._revoke = revoke
        self._locks = tuple(threading.Lock() for _ in range(_STRIPES))

    def _lock(self, did: str) -> threading.Lock:
        digest = hashlib.blake2b(did.encode(), digest_size=2).digest()
        return self._locks[int.from_bytes(digest, "big") % _STRIPES]

    # ------------------------------------------------------------------ observations

    def seen(self, identity: Identity, *, now: datetime) -> Observation:
        """A fresh resolution returned ``identity`` at ``now``: compare, act, record.

        Returns:
            The observation (``first``, ``unchanged``, ``changed``, ``stale`` or
            ``skipped``).

        Raises:
            LedgerError: the state could not be read or recorded, or a revocation failed
                (nothing was recorded: the next observation sees the change again).
        """
        did = identity.did
        if identity.source == "vouched":
            return Observation(did, "skipped")
        key = identity.signing_key.did_key
        host = identity.pds_host
        with self._lock(did):
            before = self.ledger.did_state(did)
            if before is None:
                self.ledger.put_did_state(DIDState(did, key, host, "active", now, now))
                return Observation(did, "first")
            if now < before.updated_at:
                return Observation(did, "stale")
            changes: list[Change] = []
            if before.status != "active":
                changes.append(Change("reactivated", None, key))
            else:
                if before.signing_key != key:
                    changes.append(Change("key", before.signing_key, key))
                if before.pds_host != host:
                    changes.append(Change("pds", before.pds_host, host))
            if not changes:
                return Observation(did, "unchanged")
            action, revoked = self._act(did, changes, _REASON_SUPERSEDED, now)
            self.ledger.put_did_state(DIDState(did, key, host, "active", before.first_seen, now))
            return Observation(did, "changed", tuple(changes), action, revoked)

    def gone(self, did: str, error: DIDDeactivatedError, *, now: datetime) -> Observation:
        """A fresh resolution of ``did`` at ``now`` raised ``error``: compare, act, record.

        Returns:
            The observation (``gone``, with the change ``deactivated`` when it is news;
            or ``stale``).

        Raises:
            LedgerError: as :meth:`seen`.
        """
        with self._lock(did):
            before = self.ledger.did_state(did)
            if before is not None and now < before.updated_at:
                return Observation(did, "stale", error=error)
            if before is not None and before.status != "active":
                return Observation(did, "gone", error=error)
            if before is None and not self._live(did, now):
                # first sight, and nothing of it to act on: a baseline
                self.ledger.put_did_state(DIDState(did, None, None, "deactivated", now, now))
                return Observation(did, "gone", error=error)
            change = Change("deactivated", None if before is None else before.signing_key, None)
            action, revoked = self._act(did, [change], _REASON_GONE, now)
            first = now if before is None else before.first_seen
            self.ledger.put_did_state(DIDState(did, None, None, "deactivated", first, now))
            return Observation(did, "gone", (change,), action, revoked, error)

    def _live(self, did: str, now: datetime) -> list[int]:
        """Serials of ``did`` not expired and not revoked at ``now``, issued by then."""
        return [
            r.serial
            for r in self.ledger.by_did(did)
            if r.issued_at <= now < r.not_after and self.ledger.revocation(r.serial) is None
        ]

    def _act(
        self, did: str, changes: Sequence[Change], reason: str, now: datetime
    ) -> tuple[str, tuple[int, ...]]:
        """Apply the policy to ``changes``: revoke (then audit), flag (audit) or ignore."""
        if self.on_change == "ignore":
            return "ignored", ()
        revoked: list[int] = []
        if self.on_change == "revoke":
            assert self._revoke is not None
            for serial in self._live(did, now):
                self._revoke(now=now, serial=serial, reason=reason)
                revoked.append(serial)
        action = "revoked" if self.on_change == "revoke" else "flagged"
        for change in changes:
            self.audit.did_changed(
                did=did,
                change=change.what,
                before=change.before,
                after=change.after,
                action=action,
                now=now,
            )
        return action, tuple(revoked)

    # ------------------------------------------------------------------ sweep

    def sweep(
        self, resolver: Resolver, *, now: datetime, concurrency: int = DEFAULT_CONCURRENCY
    ) -> SweepReport:
        """Re-resolve (fresh) every DID with live certificates at ``now`` and observe it.

        ``concurrency`` resolutions run at once (a thread pool), all through
        ``resolver`` (so through its address policy). A DID whose resolution or
        recording fails is reported ``failed`` with the typed error; the others go on.

        Raises:
            ValueError: ``concurrency`` below 1.
            LedgerError: the live certificates could not be listed (nothing was swept).
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        dids = sorted({record.did for record in self.ledger.live(now)})

        def observe(did: str) -> Observation:
            found: Identity | DIDDeactivatedError
            try:
                found = resolver.resolve(did, fresh=True)
            except DIDDeactivatedError as exc:
                found = exc
            except HoldCAError as exc:  # not a deactivation: nothing changes
                return Observation(did, "failed", error=exc)
            try:
                if isinstance(found, DIDDeactivatedError):
                    return self.gone(did, found, now=now)
                return self.seen(found, now=now)
            except HoldCAError as exc:  # the ledger or a revocation failed
                return Observation(did, "failed", error=exc)

        if not dids:
            return SweepReport(now, ())
        with ThreadPoolExecutor(
            max_workers=min(concurrency, len(dids)), thread_name_prefix="holdca-sweep"
        ) as pool:
            observations = tuple(pool.map(observe, dids))
        return SweepReport(now, observations)

    def __repr__(self) -> str:
        return f"<DIDWatch on_change={self.on_change}>"
