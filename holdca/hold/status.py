"""Status: CRLs and OCSP answers for :class:`~holdca.hold.HoldCA` (revoking is
:mod:`holdca.hold.revocation`).

Serving status must stay cheap under load, so both answers are cached and rebuilt only on
change:

* **CRL**: leaves name the CRL of their CA and *partition* (the UTC day or ISO week of
  their notBefore, :mod:`holdca.hold.crlparts`; ``crl_partition``), which lists only the
  revocations of that period's certificates, with an issuingDistributionPoint naming its
  URL; the un-partitioned URL still gets the CA's full CRL (leaves issued before, CA
  certificates). The signed CRL (and its DER) per CA and partition is kept until a
  revocation happens (the ledger's
  :meth:`~holdca.hold.ledger.IssuanceLedger.revocation_version`, one primary-key read,
  notices revocations made by other processes too) or ``crl_refresh`` passes; a
  ``GET /ca.crl`` then costs O(1) in the number of revocations. If the ledger is busy when a
  rebuild is due, the previous CRL is served while it is still within its nextUpdate, and
  requests arriving while one rebuild is under way get it at once rather than queueing.
* **OCSP**: answers to nonce-less requests are kept per request bytes (what a client sends
  for a certificate is byte-identical each time), for every status, until shortly before
  their nextUpdate; a revocation drops the answers for that serial at once (other
  processes' revocations are noticed within :data:`OCSP_SYNC_INTERVAL`); an answer whose
  statuses were read before such a drop is not kept (it could outlive the revocation). A
  serial this hold never issued gets the unsigned ``unauthorized`` answer (RFC 5019
  2.2.3), which costs no signature; a request that needs a new signature may be refused
  with ``tryLater`` by the caller's per-client budget.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca.errors import (
    ConfigError,
    HoldCAError,
    LedgerError,
    MalformedInputError,
    OCSPRequestError,
)
from holdca.hold.audit import AuditLog
from holdca.hold.castate import CAState, LoadedCA, crl_url_for
from holdca.hold.crlparts import (
    DEFAULT_CRL_PARTITION,
    Period,
    crl_issuer_key,
    period_from_url,
    period_of,
)
from holdca.hold.ledger import REASONS, IssuanceLedger
from holdca.pki import (
    CertStatus,
    OCSPRequestInfo,
    RevokedEntry,
    build_crl,
    issuer_hashes,
    ocsp_error_response,
    parse_ocsp_request,
    respond_ocsp,
    select_for_crl,
)

__all__ = ["OCSP_SYNC_INTERVAL", "OCSPAnswerCache", "StatusMixin", "reason_flag"]

OCSP_SYNC_INTERVAL: Final = timedelta(seconds=1)
"""How often the OCSP cache asks the ledger whether another process revoked something."""

_MAX_CACHED_REQUEST: Final = 1024
_UNSIGNED: Final = frozenset(
    ocsp_error_response(name)
    for name in ("malformedRequest", "internalError", "tryLater", "sigRequired", "unauthorized")
)


def reason_flag(reason: str | None) -> x509.ReasonFlags | None:
    """The ReasonFlags member for a ledger reason name (``None`` for none or unknown)."""
    return x509.ReasonFlags(reason) if reason in REASONS else None


class OCSPAnswerCache:
    """Signed OCSP answers by request bytes, with an index to drop a serial's answers.

    Thread-safe; bounded (least recently used answers are evicted beyond ``max_entries``).
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        """Keep at most ``max_entries`` answers."""
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._lock = threading.Lock()
        self._items: OrderedDict[bytes, tuple[datetime, datetime, bytes, tuple[int, ...]]] = (
            OrderedDict()
        )
        self._by_serial: dict[int, set[bytes]] = {}
        self._generation = 0
        self.hits = 0
        self.misses = 0

    @property
    def generation(self) -> int:
        """A counter that moves whenever answers are dropped (:meth:`invalidate`, :meth:`clear`).

        Read it before reading the statuses an answer states, and pass it to :meth:`put`:
        an answer whose statuses may predate a revocation is then not kept.
        """
        return self._generation

    def get(self, request: bytes, now: datetime) -> bytes | None:
        """The answer to ``request`` if one is cached and fresh at ``now``."""
        with self._lock:
            item = self._items.get(request)
            if item is None or not item[0] <= now < item[1]:
                self.misses += 1
                return None
            self._items.move_to_end(request)
            self.hits += 1
            return item[2]

    def put(
        self,
        request: bytes,
        answer: bytes,
        serials: tuple[int, ...],
        this_update: datetime,
        refresh_at: datetime,
        *,
        generation: int | None = None,
    ) -> None:
        """Keep ``answer`` for ``request`` from ``this_update`` until ``refresh_at``.

        With ``generation`` (:attr:`generation` as read before the statuses were), the
        answer is not kept if answers were dropped since: a revocation (here or, through
        a sync, in another process) may have happened after the statuses were read, and
        the answer would then outlive it.
        """
        if refresh_at <= this_update or len(request) > _MAX_CACHED_REQUEST:
            return
        with self._lock:
            if generation is not None and generation != self._generation:
                return
            self._drop(request)
            self._items[request] = (this_update, refresh_at, answer, serials)
            for serial in serials:
                self._by_serial.setdefault(serial, set()).add(request)
            while len(self._items) > self._max:
                self._drop(next(iter(self._items)))

    def _drop(self, request: bytes) -> None:
        item = self._items.pop(request, None)
        if item is None:
            return
        for serial in item[3]:
            keys = self._by_serial.get(serial)
            if keys is not None:
                keys.discard(request)
                if not keys:
                    del self._by_serial[serial]

    def invalidate(self, serial: int) -> None:
        """Drop every answer about ``serial`` (it was just revoked)."""
        with self._lock:
            self._generation += 1
            for request in list(self._by_serial.get(serial, ())):
                self._drop(request)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._generation += 1
            self._items.clear()
            self._by_serial.clear()

    def __len__(self) -> int:
        """How many answers are cached."""
        return len(self._items)


@dataclass(frozen=True)
class _RevocationIndex:
    """A CA's revocations at one ledger revocation version, ordered by notBefore."""

    version: int
    not_befores: list[datetime]
    entries: list[RevokedEntry]


@dataclass(frozen=True)
class _SignedCRL:
    version: int
    crl: x509.CertificateRevocationList
    der: bytes
    this_update: datetime
    next_update: datetime


def _valid(signed: _SignedCRL, now: datetime) -> bool:
    """Whether ``signed`` may still be served at ``now`` (within thisUpdate..nextUpdate)."""
    return signed.this_update <= now < signed.next_update


def _ca_for(state: CAState, info: OCSPRequestInfo) -> LoadedCA | None:
    """The CA whose name and key hashes the request's first CertID carries."""
    first = info.cert_ids[0]
    wanted = (first.issuer_name_hash, first.issuer_key_hash)
    for ca in state.all():
        if issuer_hashes(ca.certificate).get(first.hash_algorithm) == wanted:
            return ca
    return None


class StatusMixin:
    """Revocation and status for :class:`~holdca.hold.HoldCA` (which provides the attributes)."""

    ledger: IssuanceLedger
    audit: AuditLog
    crl_next_update: timedelta
    root_crl_next_update: timedelta
    crl_refresh: timedelta
    crl_retention: timedelta
    crl_url: str | None
    crl_partition: str | None = DEFAULT_CRL_PARTITION
    """Partition leaves' CRLs by ``day`` or ``week`` of their notBefore; None: one per CA."""
    ocsp_validity: timedelta
    _crl_lock: threading.Lock
    _crl_cache: dict[str, _SignedCRL]
    _revocation_index: dict[str, _RevocationIndex]
    _ocsp_answers: OCSPAnswerCache
    _ocsp_synced: tuple[datetime, int] | None

    if TYPE_CHECKING:

        def state(self, now: datetime | None = None) -> CAState: ...

    def _init_status(self) -> None:
        self._crl_lock = threading.Lock()
        self._crl_cache = {}
        self._revocation_index = {}
        self._ocsp_answers = OCSPAnswerCache()
        self._ocsp_synced = None

    # ------------------------------------------------------------------ CRL

    def crl(
        self, now: datetime, *, ca_id: str | None = None, period: str | None = None
    ) -> x509.CertificateRevocationList:
        """The current CRL of the active CA (or of the published CA ``ca_id``).

        With ``period`` (a partition key such as ``2025-01-06`` or ``2025-W02``, as leaf
        CRL URLs name it), the CRL of that partition: the revocations of the CA's
        certificates whose notBefore falls in the period, with an issuingDistributionPoint
        naming the partition's URL (an empty list for a period without revocations);
        ``None`` or ``all``: every revocation of the CA.

        A new CRL (with the next persisted CRL number of the CA and partition, and a
        thisUpdate that never goes backwards) is signed when a revocation happened (in any
        process sharing the ledger), after ``crl_refresh``, or when no CRL was made by this
        object yet; otherwise the cached one is returned.

        Raises:
            ConfigError: unknown ``ca_id``; a partition asked for without a CRL URL.
            MalformedInputError: ``period`` is not a period key, or one in which the CA
                cannot have issued (before its notBefore or after now).
            LedgerError, ProfileError, SignerError: building failed (and no earlier CRL
                is still within its nextUpdate).
        """
        return self._signed_crl(now, ca_id, period).crl

    def crl_der(
        self, now: datetime, *, ca_id: str | None = None, period: str | None = None
    ) -> bytes:
        """:meth:`crl` as DER, encoded once per CRL (what ``GET /ca.crl`` serves)."""
        return self._signed_crl(now, ca_id, period).der

    def leaf_crl_url(self, ca_id: str, not_before: datetime) -> str | None:
        """The CRL URL a leaf of CA ``ca_id`` with ``not_before`` names (its partition's).

        Raises:
            ConfigError: ``crl_partition`` is not ``day``, ``week`` or None.
        """
        if self.crl_partition is None:
            return crl_url_for(self.crl_url, ca_id)
        return crl_url_for(self.crl_url, ca_id, period_of(not_before, self.crl_partition).key)

    def _signed_crl(self, now: datetime, ca_id: str | None, period_key: str | None) -> _SignedCRL:
        period = period_from_url(period_key)
        state = self.state(now)
        ca = state.active if ca_id is None else state.by_id(ca_id)
        if ca is None:
            raise ConfigError(f"no CA with id {ca_id} (active, published, root or former)")
        if ca.signer is None:
            return self._stored(ca)  # an offline root: its full CRL (it issues no leaves)
        if period is not None:
            first = ca.certificate.not_valid_before_utc
            if period.end <= first or period.start > min(now, ca.certificate.not_valid_after_utc):
                raise MalformedInputError(
                    f"CA {ca.ca_id[:16]} issued nothing in period {period.key} "
                    f"(it is valid from {first.isoformat()})"
                )
        cache_key = crl_issuer_key(ca.ca_id, period)
        version = self.ledger.revocation_version()
        cached = self._crl_cache.get(cache_key)
        if cached is not None and self._fresh(cached, version, now):
            return cached
        if cached is not None and _valid(cached, now):
            # Another thread rebuilding (perhaps waiting busy_timeout for a busy ledger's
            # CRL number) does not hold this request up: it gets the last CRL, still valid.
            if not self._crl_lock.acquire(blocking=False):
                return cached
        else:
            self._crl_lock.acquire()
        try:  # concurrent requests share one new CRL (and one CRL number)
            cached = self._crl_cache.get(cache_key)
            if cached is not None and self._fresh(cached, version, now):
                return cached
            try:
                signed = self._build_crl(ca, version, now, period)
            except LedgerError:
                if cached is not None and _valid(cached, now):
                    return cached  # the ledger is busy: the last CRL is still valid
                raise
            self._crl_cache[cache_key] = signed
            return signed
        finally:
            self._crl_lock.release()

    def _stored(self, ca: LoadedCA) -> _SignedCRL:
        """The CRL stored for an offline root (signed when its key was last present)."""
        stored = self.ledger.stored_crl(ca.ca_id)
        if stored is None:
            raise ConfigError(
                f"the key of CA {ca.ca_id[:16]} is offline and no CRL of it is stored: "
                "sign one where the key is (holdca crl --ca ...)"
            )
        der, _ = stored
        cached = self._crl_cache.get(ca.ca_id)
        if cached is not None and cached.der == der:
            return cached
        crl = x509.load_der_x509_crl(der)
        signed = _SignedCRL(
            -1, crl, der, crl.last_update_utc, crl.next_update_utc or crl.last_update_utc
        )
        self._crl_cache[ca.ca_id] = signed
        return signed

    def _fresh(self, cached: _SignedCRL, version: int, now: datetime) -> bool:
        return cached.version == version and (
            cached.this_update <= now < cached.this_update + self.crl_refresh
        )

    def _revocations(self, ca: LoadedCA, version: int) -> _RevocationIndex:
        """The CA's revocations ordered by notBefore, read once per revocation version.

        Every partition CRL of a CA built after the same revocation shares one ledger read.
        """
        index = self._revocation_index.get(ca.ca_id)
        if index is not None and index.version == version:
            return index
        pairs = sorted(
            (
                (
                    rec.not_before,
                    RevokedEntry(
                        serial=rev.serial,
                        revoked_at=rev.revoked_at,
                        reason=reason_flag(rev.reason),
                        invalidity_date=rev.invalidity_date,
                        not_after=rec.not_after,
                    ),
                )
                for rev, rec in self.ledger.revoked(ca.ca_id)
            ),
            key=lambda pair: pair[0],
        )
        index = _RevocationIndex(version, [p[0] for p in pairs], [p[1] for p in pairs])
        self._revocation_index[ca.ca_id] = index
        return index

    def _build_crl(
        self, ca: LoadedCA, version: int, now: datetime, period: Period | None = None
    ) -> _SignedCRL:
        index = self._revocations(ca, version)
        entries = index.entries
        point = None
        if period is not None:
            point = crl_url_for(self.crl_url, ca.ca_id, period.key)
            if point is None:
                raise ConfigError("partition CRLs need a CRL URL (HOLD_CRL_URL) to name")
            low = bisect.bisect_left(index.not_befores, period.start)
            high = bisect.bisect_left(index.not_befores, period.end)
            entries = entries[low:high]
        # keyCompromise entries stay while the CA answers at all: a stolen key can make
        # signatures that verify after the certificate expired (with a timestamp), and
        # OCSP keeps saying revoked too. Other entries leave after crl_retention.
        compromised = [e for e in entries if e.reason == x509.ReasonFlags.key_compromise]
        entries = sorted(
            [
                *compromised,
                *select_for_crl(
                    [e for e in entries if e.reason != x509.ReasonFlags.key_compromise],
                    now=now,
                    retention=self.crl_retention,
                ),
            ],
            key=lambda e: e.serial,
        )
        issuer_key = crl_issuer_key(ca.ca_id, period)
        number, this_update = self.ledger.next_crl_number(issuer_key, now)
        offline_capable = ca.state == "root"  # a root above an intermediate
        lifetime = self.root_crl_next_update if offline_capable else self.crl_next_update
        next_update = this_update + lifetime
        crl = build_crl(
            ca.key("signing a CRL"),
            ca.certificate,
            entries,
            crl_number=number,
            this_update=this_update,
            next_update=next_update,
            distribution_point=point,
        )
        self.audit.crl(
            issuer_id=issuer_key,
            number=number,
            entries=len(entries),
            this_update=this_update,
            now=now,
        )
        der = crl.public_bytes(serialization.Encoding.DER)
        if offline_capable and period is None:  # served from the ledger when the key is away
            self.ledger.store_crl(ca.ca_id, der, next_update=next_update)
        return _SignedCRL(version, crl, der, this_update, next_update)

    # ------------------------------------------------------------------ OCSP

    def status_of(self, serial: int, ca_id: str | None = None) -> CertStatus:
        """OCSP status of ``serial``: good, revoked (time, reason) or unknown.

        With ``ca_id``, a serial issued by another CA is unknown.
        """
        record = self.ledger.get(serial)
        if record is None or (ca_id is not None and record.issuer_id != ca_id):
            return CertStatus.unknown()
        rev = self.ledger.revocation(serial)
        if rev is None:
            return CertStatus.good()
        return CertStatus.revoked(rev.revoked_at, reason_flag(rev.reason))

    def ocsp(
        self,
        request_der: bytes,
        *,
        now: datetime,
        may_sign: Callable[[], bool] | None = None,
    ) -> bytes:
        """An OCSP response (DER) for ``request_der``, signed by the CA the request names.

        Never raises on bad input: malformed requests get ``malformedRequest``, requests
        naming another issuer or a serial this hold never issued ``unauthorized`` (unsigned,
        RFC 5019 2.2.3), and when ``may_sign`` (a per-client budget) refuses a new
        signature, ``tryLater``. Answers are cached (see the module docstring).
        """
        self._sync_ocsp(now)
        hit = self._ocsp_answers.get(request_der, now)
        if hit is not None:
            return hit
        try:
            info = parse_ocsp_request(request_der)
        except OCSPRequestError:
            return ocsp_error_response("malformedRequest")
        ca = _ca_for(self.state(now), info)
        if ca is None:
            return ocsp_error_response("unauthorized")
        generation = self._ocsp_answers.generation  # before the statuses are read
        try:
            statuses = {
                c.serial_number: self.status_of(c.serial_number, ca.ca_id) for c in info.cert_ids
            }
        except HoldCAError:
            return ocsp_error_response("internalError")
        if any(status.kind == "unknown" for status in statuses.values()) or ca.signer is None:
            return ocsp_error_response("unauthorized")  # (or: an offline root's key)
        if may_sign is not None and not may_sign():
            return ocsp_error_response("tryLater")
        der = respond_ocsp(
            request_der,
            status_of=statuses.__getitem__,
            issuer_cert=ca.certificate,
            signer=ca.signer,
            now=now,
            validity=self.ocsp_validity,
        )
        if info.nonce is None and der not in _UNSIGNED:  # a signed answer, not an error
            refresh = now + self.ocsp_validity - min(self.ocsp_validity / 4, timedelta(hours=1))
            self._ocsp_answers.put(
                request_der, der, tuple(statuses), now, refresh, generation=generation
            )
        return der

    def _sync_ocsp(self, now: datetime) -> None:
        """Drop cached answers when another process revoked something (checked each second)."""
        synced = self._ocsp_synced
        if synced is not None and synced[0] <= now < synced[0] + OCSP_SYNC_INTERVAL:
            return
        try:
            version = self.ledger.revocation_version()
        except LedgerError:
            return
        if synced is not None and synced[1] != version:
            self._ocsp_answers.clear()
        self._ocsp_synced = (now, version)
