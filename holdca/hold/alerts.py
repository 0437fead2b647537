"""Anomaly alerts: an audit sink that watches issuances and refusals and raises ``alert`` events.

:class:`AnomalyDetector` is handed every audit event (see
:meth:`holdca.hold.audit.AuditLog.add_sink`) and raises, through
:meth:`~holdca.hold.audit.AuditLog.alert`, three kinds of alert:

``issuance_burst``
    a DID was issued more certificates in the last hour than ``burst_factor`` times its
    hourly average over the 7 days before that hour, and at least ``burst_min``
    (``HOLD_ALERT_BURST_FACTOR``, ``HOLD_ALERT_BURST_MIN``). Both counts come from the
    ledger, so a restart or another replica sharing the ledger sees the same baseline;
    at most one alert per DID per hour (per process).
``new_pds_host``
    a DID was issued a certificate whose proof came from a PDS host never seen for it
    before (recorded in the ledger by ``note_pds_host``); not on a DID's first issuance.
``refusal_burst``
    one DID was refused ``refusals`` times within 10 minutes (``HOLD_ALERT_REFUSALS``; 0
    disables it): someone may be trying to get certificates for it. Rate-limit refusals
    do not count (they have their own metric). Counted in memory (a sliding window per
    DID, bounded like :class:`~holdca.hold.policy.RateLimiter`); one alert per burst: after
    an alert, the DID's refusals raise no other until it has been quiet for 10 minutes.

Time is the event's own ``time``: the detector never reads a clock. It never raises into
the operation that emitted the event (the audit log swallows a sink's errors, and counts
them), and the operation's result does not depend on it.

Example::

    detector = alerts_from_config(config, ca.ledger, ca.audit)   # adds itself as a sink
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

from holdca.hold.audit import AuditLog
from holdca.hold.config import HoldConfig
from holdca.hold.ledger import IssuanceLedger

__all__ = [
    "BASELINE",
    "BURST_WINDOW",
    "ISSUANCE_BURST",
    "NEW_PDS_HOST",
    "REFUSAL_BURST",
    "REFUSAL_WINDOW",
    "AnomalyDetector",
    "alerts_from_config",
]

ISSUANCE_BURST: Final = "issuance_burst"
NEW_PDS_HOST: Final = "new_pds_host"
REFUSAL_BURST: Final = "refusal_burst"

BURST_WINDOW: Final = timedelta(hours=1)
"""The window whose issuances are compared with the DID's baseline."""

BASELINE: Final = timedelta(days=7)
"""How far back the baseline reaches (the burst window itself is not part of it)."""

REFUSAL_WINDOW: Final = timedelta(minutes=10)
"""The sliding window of the refusal-burst alert."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_IGNORED_REFUSALS: Final = frozenset({"RateLimitError"})


class AnomalyDetector:
    """An audit sink raising ``issuance_burst``, ``new_pds_host`` and ``refusal_burst`` alerts.

    Thread-safe; memory is bounded by ``max_tracked`` DIDs per in-memory table and
    ``max_hosts`` remembered (DID, PDS host) pairs. Per issuance it costs one indexed
    count in the ledger (two when the hour's count reaches ``burst_min``) and, the first
    time this process sees a (DID, host) pair, one ledger write.
    """

    def __init__(
        self,
        ledger: IssuanceLedger,
        audit: AuditLog,
        *,
        burst_factor: int = 10,
        burst_min: int = 20,
        refusals: int = 20,
        max_tracked: int = 10_000,
        max_hosts: int = 100_000,
    ) -> None:
        """Watch events for ``audit`` (not yet attached: see :meth:`attach`).

        Args:
            ledger: where issuance counts and PDS hosts are read and recorded.
            audit: where alerts are written.
            burst_factor: an hour above this many times the hourly baseline alerts...
            burst_min: ... when it also has at least this many issuances.
            refusals: refusals of one DID within :data:`REFUSAL_WINDOW` that alert (0: never).
            max_tracked: DIDs remembered by the refusal window and the burst de-duplication.
            max_hosts: (DID, host) pairs remembered as already recorded in the ledger.

        Raises:
            ValueError: a threshold or bound out of range.
        """
        if burst_factor < 1 or burst_min < 1 or refusals < 0:
            raise ValueError("burst_factor and burst_min must be >= 1, refusals >= 0")
        if max_tracked < 1 or max_hosts < 1:
            raise ValueError("max_tracked and max_hosts must be at least 1")
        self.ledger = ledger
        self.audit = audit
        self.burst_factor = burst_factor
        self.burst_min = burst_min
        self.refusals = refusals
        self.max_tracked = max_tracked
        self.max_hosts = max_hosts
        self._lock = threading.Lock()
        self._burst_alerted: OrderedDict[str, datetime] = OrderedDict()
        self._refused: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._quiet_after: dict[str, datetime] = {}  # DIDs in an alerted refusal burst
        self._hosts: OrderedDict[tuple[str, str], None] = OrderedDict()
        # the baseline's length in burst windows (7 days less the last hour: 167)
        self._baseline_windows = (BASELINE - BURST_WINDOW) // BURST_WINDOW

    def attach(self) -> AnomalyDetector:
        """Add this detector as a sink of its audit log; returns it."""
        self.audit.add_sink(self)
        return self

    # ------------------------------------------------------------------ the sink

    def __call__(self, event: Mapping[str, object]) -> None:
        """Look at one audit event; may write ``alert`` events to the audit log."""
        kind = event.get("event")
        if kind not in ("issued", "refused"):
            return
        did = event.get("did")
        when = event.get("time")
        if not isinstance(did, str) or not isinstance(when, str):
            return
        now = datetime.fromisoformat(when)
        if kind == "issued":
            host = event.get("pds_host")
            self._check_burst(did, now)
            if isinstance(host, str) and host:
                self._check_host(did, host, now)
        elif self.refusals and event.get("error") not in _IGNORED_REFUSALS:
            self._check_refusals(did, now)

    # ------------------------------------------------------------------ issuance bursts

    def _check_burst(self, did: str, now: datetime) -> None:
        hour = self.ledger.count_since(did, now - BURST_WINDOW)
        if hour < self.burst_min:
            return
        before = self.ledger.count_since(did, now - BASELINE) - hour
        # hour > factor * (before / windows), in integers
        if hour * self._baseline_windows <= self.burst_factor * before:
            return
        with self._lock:
            last = self._burst_alerted.get(did)
            if last is not None and now < last + BURST_WINDOW:
                return
            self._burst_alerted.pop(did, None)
            self._burst_alerted[did] = now
            while self._burst_alerted:
                oldest = next(iter(self._burst_alerted.values()))
                if len(self._burst_alerted) <= self.max_tracked and oldest + BURST_WINDOW > now:
                    break
                self._burst_alerted.popitem(last=False)
        average = before / self._baseline_windows
        self.audit.alert(
            ISSUANCE_BURST,
            did=did,
            now=now,
            detail=(
                f"{hour} certificates in the last hour, over {self.burst_factor} times the "
                f"hourly average of the past 7 days ({average:.2f}; {before} in that time)"
            ),
        )

    # ------------------------------------------------------------------ PDS hosts

    def _check_host(self, did: str, host: str, now: datetime) -> None:
        key = (did, host)
        with self._lock:
            if key in self._hosts:
                self._hosts.move_to_end(key)
                return
        new = self.ledger.note_pds_host(did, host, now=now)
        with self._lock:
            self._hosts[key] = None
            while len(self._hosts) > self.max_hosts:
                self._hosts.popitem(last=False)
        if not new:
            return
        earlier = self.ledger.count_since(did, _EPOCH) - self.ledger.count_since(did, now)
        if earlier <= 0:  # the DID's first issuance: nothing to compare the host with
            return
        self.audit.alert(
            NEW_PDS_HOST,
            did=did,
            now=now,
            detail=(
                f"issued a certificate with a proof from PDS {host}, never seen for this DID "
                f"before ({earlier} earlier certificates)"
            ),
        )

    # ------------------------------------------------------------------ refusal bursts

    def _check_refusals(self, did: str, now: datetime) -> None:
        start = now - REFUSAL_WINDOW
        with self._lock:
            quiet = self._quiet_after.get(did)
            if quiet is not None and now < quiet:
                self._quiet_after[did] = now + REFUSAL_WINDOW  # the burst goes on
                self._refused.pop(did, None)
                self._refused[did] = deque(maxlen=self.refusals)  # recently used again
                self._forget(start)
                return
            self._quiet_after.pop(did, None)
            times = self._refused.pop(did, None)
            if times is None:
                times = deque(maxlen=self.refusals)
            while times and times[0] <= start:
                times.popleft()
            times.append(now)
            count = len(times)
            alert = count >= self.refusals
            if alert:
                times.clear()
                self._quiet_after[did] = now + REFUSAL_WINDOW
            self._refused[did] = times
            self._forget(start)
        if alert:
            self.audit.alert(
                REFUSAL_BURST,
                did=did,
                now=now,
                detail=(
                    f"{count} refused requests for this DID within "
                    f"{int(REFUSAL_WINDOW.total_seconds() // 60)} minutes (someone may be "
                    "trying to get certificates for it)"
                ),
            )

    def _forget(self, start: datetime) -> None:
        """Drop DIDs from the LRU end: beyond ``max_tracked``, or quiet since ``start``."""
        while self._refused:
            did, times = next(iter(self._refused.items()))
            quiet = self._quiet_after.get(did)
            stale = (not times or times[-1] <= start) and (quiet is None or quiet <= start)
            if len(self._refused) <= self.max_tracked and not stale:
                return
            self._refused.popitem(last=False)
            self._quiet_after.pop(did, None)

    def tracked(self) -> dict[str, int]:
        """The sizes of the in-memory tables: ``refusals`` and ``bursts`` (DIDs), ``hosts``
        ((DID, host) pairs)."""
        with self._lock:
            return {
                "refusals": len(self._refused),
                "bursts": len(self._burst_alerted),
                "hosts": len(self._hosts),
            }

    def __repr__(self) -> str:
        return (
            f"<AnomalyDetector burst={self.burst_factor}x/min {self.burst_min} "
            f"refusals={self.refusals}/10min>"
        )


def alerts_from_config(
    config: HoldConfig, ledger: IssuanceLedger, audit: AuditLog
) -> AnomalyDetector:
    """The detector ``HOLD_ALERT_*`` describe, added as a sink of ``audit``."""
    return AnomalyDetector(
        ledger,
        audit,
        burst_factor=config.alert_burst_factor,
        burst_min=config.alert_burst_min,
        refusals=config.alert_refusals,
    ).attach()
