"""Prometheus metrics of a hold (``GET /metrics``), with the official ``prometheus-client``.

:class:`HoldMetrics` owns one :class:`~prometheus_client.CollectorRegistry` (never the
global one: a process may serve several apps, and tests build many) and is fed from
three places, none of which makes the core import ``prometheus_client``:

* the **audit trail**: it is a sink of the hold's :class:`~holdca.hold.audit.AuditLog`
  (issuances, refusals, revocations, CRLs signed, deny-list changes, rotations, DID
  changes, alerts), so it counts what the hold did, not what was asked;
* **proxies** (:mod:`holdca.server.timing`) that time the resolver
  (:class:`~holdca.server.timing.TimedResolver`) and the ledger's writes
  (:class:`~holdca.server.timing.TimedLedger`), installed by :func:`instrument`;
* **the app**, for what only the HTTP layer sees: the outcome of each OCSP request
  (:meth:`HoldMetrics.answer_ocsp`) and each CRL request (:meth:`HoldMetrics.serve_crl`).

Metrics (no label ever holds a DID, a serial or anything a caller chooses freely):

=======================================  ==================================================
``holdca_issuances_total{kind}``         certificates issued and recorded (cosign, resign,
                                         issue)
``holdca_refusals_total{operation,       refused requests, by operation (cosign, resign,
reason}``                                authenticate, revoke, ...) and error class
``holdca_rate_limit_hits_total{limit}``  ``issuance`` (HOLD_RATE_LIMIT_PER_HOUR) or ``ocsp``
                                         (the per-client signing budget: tryLater)
``holdca_revocations_total{reason}``     new revocations by RFC 5280 reason
                                         (``unspecified`` when none)
``holdca_ocsp_requests_total{outcome}``  cached, signed, unauthorized, malformed,
                                         tryLater, internalError
``holdca_crl_requests_total{outcome}``   ``GET /ca.crl``: ok, error
``holdca_crls_signed_total``             CRLs signed (a new CRL number)
``holdca_did_resolution_seconds{fresh}`` histogram of DID resolutions (fresh: the
                                         resolver's cache bypassed)
``holdca_did_resolution_failures_total   failed resolutions by error class
{error}``
``holdca_pds_fetch_seconds{call}``       histogram of getRecord / getLatestCommit fetches
``holdca_pds_fetch_failures_total        failed PDS fetches
{call,error}``
``holdca_ledger_commit_seconds{op}``     histogram of ledger writes as the caller waits for
                                         them (record_issuance(s), revoke, use_token,
                                         next_crl_number)
``holdca_ledger_commit_failures_total    failed ledger writes
{op,error}``
``holdca_alerts_total{alert}``           anomaly alerts (see :mod:`holdca.hold.alerts`)
``holdca_did_changes_total{change,       DID changes seen and what was done
action}``
``holdca_deny_list_changes_total         ``denied``, ``allowed``
{event}``
``holdca_ca_rotations_total{step}``      ``rotated``, ``retired``
``holdca_audit_sink_failures_total``     audit sinks that raised (the event's operation
                                         went on)
=======================================  ==================================================

Example::

    metrics = instrument(ca)                 # before create_app: auth uses the timed resolver
    detector = alerts_from_config(config, ca.ledger, ca.audit)
    app = create_app(ca, metrics=metrics)    # /metrics, and the OCSP and CRL outcomes
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client import Histogram as _Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from holdca.errors import HoldCAError
from holdca.hold.audit import AuditLog
from holdca.hold.ledger import (
    KINDS,
)
from holdca.pki import ocsp_error_response
from holdca.server.timing import TimedLedger, TimedResolver

if TYPE_CHECKING:
    from holdca.hold.service import HoldCA

__all__ = [
    "CONTENT_TYPE",
    "METRICS_PATH",
    "OCSP_OUTCOMES",
    "HoldMetrics",
    "OCSPAnswerer",
    "instrument",
]

METRICS_PATH: Final = "/metrics"

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The classic Prometheus text format every Prometheus version scrapes (holdca's metric and
label names are all legacy-valid, so the output is the same in the 1.0.0 format)."""

OCSP_OUTCOMES: Final = (
    "cached",
    "signed",
    "unauthorized",
    "malformed",
    "tryLater",
    "internalError",
    "sigRequired",
)
"""The ``outcome`` label values of ``holdca_ocsp_requests_total``."""

_OCSP_ERRORS: Final = {
    ocsp_error_response("malformedRequest"): "malformed",
    ocsp_error_response("unauthorized"): "unauthorized",
    ocsp_error_response("tryLater"): "tryLater",
    ocsp_error_response("internalError"): "internalError",
    ocsp_error_response("sigRequired"): "sigRequired",
}
_FAST_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_NET_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_MAX_LABEL: Final = 64
_T = TypeVar("_T")


def _label(value: object, default: str = "none") -> str:
    """A label value from an audit field: a short string (the fields are bounded sets)."""
    if not isinstance(value, str) or not value:
        return default
    return value if len(value) <= _MAX_LABEL else "other"


def _same_time(a: object, b: object) -> bool:
    """Whether two ISO 8601 audit times are the same instant."""
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    try:
        return datetime.fromisoformat(a) == datetime.fromisoformat(b)
    except ValueError:
        return False


class OCSPAnswerer(Protocol):
    """What answers an OCSP request: :meth:`holdca.hold.HoldCA.ocsp`."""

    def __call__(
        self, request_der: bytes, *, now: datetime, may_sign: Callable[[], bool] | None = None
    ) -> bytes:
        """The DER response to ``request_der``."""
        ...


class HoldMetrics:
    """The Prometheus metrics of one hold, in a registry of their own.

    Thread-safe (prometheus-client's metrics are). Feed it with :meth:`watch` (the audit
    sink), :func:`instrument` (resolver and ledger proxies) and the app hooks
    :meth:`answer_ocsp` and :meth:`serve_crl`; expose it with :meth:`route`.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Create the metrics in ``registry`` (default: a new one)."""
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.issuances = Counter(
            "holdca_issuances", "Certificates issued and recorded", ["kind"], registry=reg
        )
        self.refusals = Counter(
            "holdca_refusals",
            "Refused requests, by operation and error class",
            ["operation", "reason"],
            registry=reg,
        )
        self.rate_limit_hits = Counter(
            "holdca_rate_limit_hits",
            "Requests refused by a rate limit (issuance per DID, OCSP signing per client)",
            ["limit"],
            registry=reg,
        )
        self.revocations = Counter(
            "holdca_revocations", "New revocations, by reason", ["reason"], registry=reg
        )
        self.ocsp_requests = Counter(
            "holdca_ocsp_requests", "OCSP requests, by outcome", ["outcome"], registry=reg
        )
        self.crl_requests = Counter(
            "holdca_crl_requests", "CRL downloads, by outcome", ["outcome"], registry=reg
        )
        self.crls_signed = Counter("holdca_crls_signed", "CRLs signed", registry=reg)
        self.did_resolution = _Histogram(
            "holdca_did_resolution_seconds",
            "DID resolutions (fresh: the resolver's cache bypassed)",
            ["fresh"],
            buckets=_NET_BUCKETS,
            registry=reg,
        )
        self.did_resolution_failures = Counter(
            "holdca_did_resolution_failures",
            "Failed DID resolutions, by error class",
            ["error"],
            registry=reg,
        )
        self.pds_fetch = _Histogram(
            "holdca_pds_fetch_seconds",
            "Fetches from a DID's PDS (getRecord, getLatestCommit)",
            ["call"],
            buckets=_NET_BUCKETS,
            registry=reg,
        )
        self.pds_fetch_failures = Counter(
            "holdca_pds_fetch_failures",
            "Failed PDS fetches, by call and error class",
            ["call", "error"],
            registry=reg,
        )
        self.ledger_commit = _Histogram(
            "holdca_ledger_commit_seconds",
            "Ledger writes, as long as the caller waits for the commit",
            ["op"],
            buckets=_FAST_BUCKETS,
            registry=reg,
        )
        self.ledger_commit_failures = Counter(
            "holdca_ledger_commit_failures",
            "Failed ledger writes, by operation and error class",
            ["op", "error"],
            registry=reg,
        )
        self.alerts = Counter("holdca_alerts", "Anomaly alerts, by kind", ["alert"], registry=reg)
        self.did_changes = Counter(
            "holdca_did_changes",
            "DID changes the hold saw, and what it did",
            ["change", "action"],
            registry=reg,
        )
        self.deny_list_changes = Counter(
            "holdca_deny_list_changes", "Deny-list changes", ["event"], registry=reg
        )
        self.rotations = Counter("holdca_ca_rotations", "CA rotation steps", ["step"], registry=reg)
        self._audits: list[AuditLog] = []
        reg.register(_SinkFailures(self._audits))
        # series that exist (at 0) before the first event, so rate() works from the start
        for kind in sorted(KINDS):
            self.issuances.labels(kind)
        for outcome in OCSP_OUTCOMES:
            self.ocsp_requests.labels(outcome)
        for outcome in ("ok", "error"):
            self.crl_requests.labels(outcome)
        for limit in ("issuance", "ocsp"):
            self.rate_limit_hits.labels(limit)
        for fresh in ("true", "false"):
            self.did_resolution.labels(fresh)
        for op in ("record_issuance", "record_issuances"):
            self.ledger_commit.labels(op)

    # ------------------------------------------------------------------ the audit sink

    def watch(self, audit: AuditLog) -> HoldMetrics:
        """Count ``audit``'s events (adds :meth:`observe_event` as a sink); returns self."""
        if audit not in self._audits:
            self._audits.append(audit)
            audit.add_sink(self.observe_event)
        return self

    def observe_event(self, event: Mapping[str, object]) -> None:
        """Count one audit event (the audit sink)."""
        name = event.get("event")
        if name == "issued":
            self.issuances.labels(_label(event.get("kind"), "cosign")).inc()
        elif name == "refused":
            reason = _label(event.get("error"), "unknown")
            self.refusals.labels(_label(event.get("operation"), "unknown"), reason).inc()
            if reason == "RateLimitError":
                self.rate_limit_hits.labels("issuance").inc()
        elif name == "revoked":
            # revoke() reports an earlier revocation again, unchanged: count only new ones
            if _same_time(event.get("revoked_at"), event.get("time")):
                self.revocations.labels(_label(event.get("reason"), "unspecified")).inc()
        elif name == "crl":
            self.crls_signed.inc()
        elif name == "alert":
            self.alerts.labels(_label(event.get("alert"), "unknown")).inc()
        elif name == "did_changed":
            self.did_changes.labels(_label(event.get("change")), _label(event.get("action"))).inc()
        elif name in ("denied", "allowed"):
            self.deny_list_changes.labels(name).inc()
        elif name in ("rotated", "retired"):
            self.rotations.labels(name).inc()

    # ------------------------------------------------------------------ app hooks

    def observe_ocsp(self, response_der: bytes, *, signed: bool) -> str:
        """Count one OCSP answer; ``signed``: the hold asked to sign a new one. Returns the
        outcome label."""
        outcome = _OCSP_ERRORS.get(response_der)
        if outcome is None:
            outcome = "signed" if signed else "cached"
        elif outcome == "tryLater":
            self.rate_limit_hits.labels("ocsp").inc()
        self.ocsp_requests.labels(outcome).inc()
        return outcome

    def answer_ocsp(
        self,
        answer: OCSPAnswerer,
        request_der: bytes,
        *,
        now: datetime,
        may_sign: Callable[[], bool] | None = None,
    ) -> bytes:
        """``answer(request_der, now=now, may_sign=...)`` (``ca.ocsp``), counted.

        The HoldCA asks ``may_sign`` exactly when an answer needs a new signature, so an
        answer given without asking came from the cache.
        """
        asked = False

        def budget() -> bool:
            nonlocal asked
            asked = True
            return True if may_sign is None else may_sign()

        der = answer(request_der, now=now, may_sign=budget)
        self.observe_ocsp(der, signed=asked)
        return der

    def serve_crl(self, crl_der: Callable[[datetime], bytes], now: datetime) -> bytes:
        """``crl_der(now)`` (``ca.crl_der``), counted; re-raises its error."""
        try:
            der = crl_der(now)
        except HoldCAError:
            self.crl_requests.labels("error").inc()
            raise
        self.crl_requests.labels("ok").inc()
        return der

    # ------------------------------------------------------------------ timing

    def timed(
        self,
        histogram: _Histogram,
        labels: Sequence[str],
        failures: Counter,
        failure_labels: Sequence[str],
        call: Callable[[], _T],
    ) -> _T:
        """``call()``, its duration observed in ``histogram`` (also when it fails) and a
        HoldCAError it raises counted in ``failures`` (with its class as the last label)."""
        start = time.perf_counter()
        try:
            return call()
        except HoldCAError as exc:
            failures.labels(*failure_labels, type(exc).__name__).inc()
            raise
        finally:
            histogram.labels(*labels).observe(time.perf_counter() - start)

    # ------------------------------------------------------------------ exposition

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def route(self, path: str = METRICS_PATH) -> Route:
        """``GET <path>``: :meth:`exposition` as :data:`CONTENT_TYPE`."""

        async def metrics(request: Request) -> Response:
            return Response(self.exposition(), headers={"Content-Type": CONTENT_TYPE})

        return Route(path, metrics, methods=["GET"])

    def __repr__(self) -> str:
        return f"<HoldMetrics audits={len(self._audits)}>"


class _SinkFailures:
    """``holdca_audit_sink_failures_total``, read from the watched audit logs."""

    def __init__(self, audits: Sequence[AuditLog]) -> None:
        self._audits = audits

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "holdca_audit_sink_failures",
            "Audit sinks that raised (the operation that emitted the event went on)",
        )
        family.add_metric([], float(sum(a.sink_failures for a in self._audits)))
        yield family


def instrument(ca: HoldCA, metrics: HoldMetrics | None = None) -> HoldMetrics:
    """Feed ``metrics`` (default: new ones) from ``ca``: its audit log, resolver and ledger.

    Adds the audit sink and replaces ``ca.ledger`` and ``ca.gate.resolver`` with timing
    proxies (once: instrumenting again does not wrap twice). Call it before
    :func:`~holdca.server.create_app`, whose service-auth verifier takes the resolver and
    the ledger it finds then.
    """
    metrics = metrics if metrics is not None else HoldMetrics()
    metrics.watch(ca.audit)
    if not isinstance(ca.ledger, TimedLedger):
        ca.ledger = TimedLedger(ca.ledger, metrics)
    if ca.gate is not None and not isinstance(ca.gate.resolver, TimedResolver):
        ca.gate.resolver = TimedResolver(ca.gate.resolver, metrics)
    return metrics
