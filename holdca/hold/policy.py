"""Who may get a certificate, how often and for how long: issuance policy and authorisation.

* :class:`Authorizer`: the embedder's hook. The server authenticates the caller (a
  service token, DPoP, mTLS, ...) and passes the caller's identity to
  :meth:`~holdca.hold.HoldCA.cosign`; the authorizer decides whether that caller may act
  for the DID. :class:`SameDIDAuthorizer` (the default) allows a caller to act only for
  itself; :class:`AllowAllAuthorizer` is for operator tools where the ATProto proof is
  the only gate.
* :class:`IssuancePolicy`: allowed DID methods and DIDs, the maximum validity, and a
  per-DID :class:`RateLimiter` (a sliding window; ``now`` is explicit).

Example::

    policy = IssuancePolicy(rate_limit=RateLimiter(max_issuances=60, window=timedelta(hours=1)))
    policy.check(did, validity=timedelta(hours=24), now=now)   # raises IssuancePolicyError
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from holdca.atproto.did import validate_account_did
from holdca.errors import AuthorizationError, IssuancePolicyError, RateLimitError

__all__ = [
    "AllowAllAuthorizer",
    "Authorizer",
    "IssuancePolicy",
    "RateLimiter",
    "SameDIDAuthorizer",
]


@runtime_checkable
class Authorizer(Protocol):
    """Decides whether an authenticated caller may obtain a certificate for a DID."""

    def authorize(self, caller: str | None, did: str) -> None:
        """Return if ``caller`` may act for ``did``.

        Args:
            caller: the identity the embedder authenticated (a DID, a service name), or
                ``None`` when the request was not authenticated.
            did: the DID the certificate would be issued to.

        Raises:
            AuthorizationError: the caller may not act for ``did``.
        """
        ...


class SameDIDAuthorizer:
    """Allows a caller to act only for its own DID; refuses anonymous callers."""

    def authorize(self, caller: str | None, did: str) -> None:
        """Allow when ``caller == did``; raises AuthorizationError otherwise."""
        if caller is None:
            raise AuthorizationError(f"an authenticated caller is required to act for {did}")
        if caller != did:
            raise AuthorizationError(f"caller {caller} may not act for {did}")

    def __repr__(self) -> str:
        return "<SameDIDAuthorizer>"


class AllowAllAuthorizer:
    """Allows everyone: the ATProto record proof is the only gate (operator CLI, demos)."""

    def authorize(self, caller: str | None, did: str) -> None:
        """Always allow."""

    def __repr__(self) -> str:
        return "<AllowAllAuthorizer>"


class RateLimiter:
    """A per-DID sliding-window limit: at most ``max_issuances`` per ``window``.

    Two counts are compared with the limit, and the larger wins: this process's own
    acquisitions in the window (including requests still being signed), and
    ``recorded``, the issuances the ledger holds for the DID in the window (counted by
    :class:`~holdca.hold.HoldCA` from the ledger, so that a restart or a second worker
    sharing the ledger does not multiply the limit; workers racing on the same DID can
    overshoot by the requests they have in flight at once).

    O(1) amortised per :meth:`acquire` however many DIDs are tracked: DIDs are kept in
    the order of their last acquisition and forgotten from the oldest end once their
    window has passed; at most ``max_tracked`` DIDs are kept (beyond that the least
    recently seen are forgotten early, which only leaves the ledger's count for them).
    Thread-safe.
    """

    def __init__(
        self, max_issuances: int, window: timedelta, *, max_tracked: int = 100_000
    ) -> None:
        """Create a limiter.

        Raises:
            ValueError: ``max_issuances`` or ``max_tracked`` < 1, or ``window`` not positive.
        """
        if max_issuances < 1:
            raise ValueError("max_issuances must be at least 1")
        if window <= timedelta(0):
            raise ValueError("window must be positive")
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self.max_issuances = max_issuances
        self.window = window
        self.max_tracked = max_tracked
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, deque[datetime]] = OrderedDict()

    def acquire(self, did: str, now: datetime, *, recorded: int = 0) -> None:
        """Count one issuance for ``did`` at ``now``.

        Args:
            did: the DID.
            now: the time of the request.
            recorded: how many certificates the ledger holds for ``did`` issued since
                ``now - window`` (0 when the caller does not count them).

        Raises:
            RateLimitError: ``did`` already had ``max_issuances`` in the window ending
                at ``now``, by this process's count or the ledger's (nothing is counted).
        """
        start = now - self.window
        with self._lock:
            times = self._seen.pop(did, None)
            if times is None:
                times = deque()
            while times and times[0] <= start:
                times.popleft()
            used = max(len(times), recorded)
            if used >= self.max_issuances:
                if times:
                    self._seen[did] = times
                if len(times) >= self.max_issuances:  # this process saw them all
                    retry = times[len(times) - self.max_issuances] + self.window - now
                    when = f"retry in {max(int(retry.total_seconds()), 1)} s"
                else:  # the ledger's count (other processes too): their times are not here
                    when = f"retry within {int(self.window.total_seconds())} s"
                raise RateLimitError(
                    f"rate limit: {did} had {used} certificates in the last {self.window}; {when}"
                )
            times.append(now)
            self._seen[did] = times  # now the most recent end
            self._forget(start)

    def _forget(self, start: datetime) -> None:
        """Drop DIDs from the oldest end: expired windows, and beyond ``max_tracked``."""
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if len(self._seen) <= self.max_tracked and oldest[-1] > start:
                return
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        """How many DIDs are tracked."""
        return len(self._seen)

    def __repr__(self) -> str:
        return f"<RateLimiter {self.max_issuances} per {self.window}>"


class IssuancePolicy:
    """What the hold agrees to issue.

    Attributes:
        allowed_methods: DID methods accepted (default ``plc`` and ``web``).
        allowed_dids: if not ``None``, only these DIDs get certificates.
        max_validity: the longest certificate the hold issues.
        rate_limit: a per-DID limiter, or ``None`` for no limit.
    """

    def __init__(
        self,
        *,
        allowed_methods: Iterable[str] = ("plc", "web"),
        allowed_dids: Iterable[str] | None = None,
        max_validity: timedelta = timedelta(hours=24),
        rate_limit: RateLimiter | None = None,
    ) -> None:
        """Create a policy.

        Raises:
            ValueError: ``max_validity`` not positive, or no method allowed.
        """
        self.allowed_methods = frozenset(allowed_methods)
        if not self.allowed_methods:
            raise ValueError("allow at least one DID method")
        self.allowed_dids = None if allowed_dids is None else frozenset(allowed_dids)
        if max_validity <= timedelta(0):
            raise ValueError("max_validity must be positive")
        self.max_validity = max_validity
        self.rate_limit = rate_limit

    def check_did(self, did: str) -> str:
        """Check that ``did`` is a valid account DID the hold serves; returns it.

        Raises:
            DIDSyntaxError: ``did`` is not a valid did:plc / did:web.
            IssuancePolicyError: its method or the DID itself is not allowed.
        """
        did = validate_account_did(did)
        method = did.split(":", 2)[1]
        if method not in self.allowed_methods:
            raise IssuancePolicyError(
                f"DID method {method!r} is not allowed here (allowed: "
                f"{', '.join(sorted(self.allowed_methods))})"
            )
        if self.allowed_dids is not None and did not in self.allowed_dids:
            raise IssuancePolicyError(f"{did} is not on this hold's list of allowed DIDs")
        return did

    def check_validity(self, validity: timedelta) -> None:
        """Raise IssuancePolicyError if ``validity`` is not in (0, max_validity]."""
        if validity <= timedelta(0) or validity > self.max_validity:
            raise IssuancePolicyError(
                f"requested validity {validity} is outside (0, {self.max_validity}]"
            )

    def check(self, did: str, *, validity: timedelta, now: datetime) -> None:
        """Check the DID, the validity, then count against the rate limit.

        Raises:
            DIDSyntaxError, IssuancePolicyError: see :meth:`check_did`,
                :meth:`check_validity`, :meth:`RateLimiter.acquire`.
        """
        self.check_did(did)
        self.check_validity(validity)
        if self.rate_limit is not None:
            self.rate_limit.acquire(did, now)

    def __repr__(self) -> str:
        return (
            f"<IssuancePolicy methods={sorted(self.allowed_methods)} "
            f"max_validity={self.max_validity} rate_limit={self.rate_limit!r}>"
        )
