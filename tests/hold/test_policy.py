"""Issuance policy, rate limiting and the authorizer default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from holdca.errors import AuthorizationError, DIDSyntaxError, IssuancePolicyError
from holdca.hold.policy import (
    AllowAllAuthorizer,
    Authorizer,
    IssuancePolicy,
    RateLimiter,
    SameDIDAuthorizer,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ALICE = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
BOB = "did:web:bob.example.com"


def test_same_did_authorizer() -> None:
    auth = SameDIDAuthorizer()
    assert isinstance(auth, Authorizer)
    auth.authorize(ALICE, ALICE)
    with pytest.raises(AuthorizationError, match="may not act"):
        auth.authorize(BOB, ALICE)
    with pytest.raises(AuthorizationError, match="authenticated"):
        auth.authorize(None, ALICE)
    AllowAllAuthorizer().authorize(None, ALICE)


def test_did_methods_and_allow_list() -> None:
    policy = IssuancePolicy(allowed_methods=["plc"])
    policy.check_did(ALICE)
    with pytest.raises(IssuancePolicyError, match="method 'web'"):
        policy.check_did(BOB)
    with pytest.raises(DIDSyntaxError):
        policy.check_did("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme")
    with pytest.raises(DIDSyntaxError):
        policy.check_did("not a did")
    listed = IssuancePolicy(allowed_dids=[BOB])
    listed.check_did(BOB)
    with pytest.raises(IssuancePolicyError, match="allowed DIDs"):
        listed.check_did(ALICE)


def test_max_validity() -> None:
    policy = IssuancePolicy(max_validity=timedelta(hours=24))
    policy.check_validity(timedelta(hours=24))
    with pytest.raises(IssuancePolicyError, match="validity"):
        policy.check_validity(timedelta(hours=25))
    with pytest.raises(IssuancePolicyError):
        policy.check_validity(timedelta(0))


def test_rate_limit_sliding_window() -> None:
    limiter = RateLimiter(3, timedelta(minutes=10))
    policy = IssuancePolicy(rate_limit=limiter)
    for i in range(3):
        policy.check(ALICE, validity=timedelta(hours=1), now=T0 + timedelta(minutes=i))
    with pytest.raises(IssuancePolicyError, match="rate limit"):
        policy.check(ALICE, validity=timedelta(hours=1), now=T0 + timedelta(minutes=5))
    # another DID has its own window
    policy.check(BOB, validity=timedelta(hours=1), now=T0 + timedelta(minutes=5))
    # the first issuance leaves the window after 10 minutes: one slot frees up
    policy.check(ALICE, validity=timedelta(hours=1), now=T0 + timedelta(minutes=10))
    with pytest.raises(IssuancePolicyError):
        policy.check(ALICE, validity=timedelta(hours=1), now=T0 + timedelta(minutes=10, seconds=30))


def test_refused_checks_do_not_count() -> None:
    limiter = RateLimiter(1, timedelta(hours=1))
    policy = IssuancePolicy(rate_limit=limiter, max_validity=timedelta(hours=1))
    with pytest.raises(IssuancePolicyError):
        policy.check(ALICE, validity=timedelta(hours=2), now=T0)
    policy.check(ALICE, validity=timedelta(hours=1), now=T0)


@settings(max_examples=50)
@given(
    limit=st.integers(min_value=1, max_value=5),
    gaps=st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=30),
)
def test_rate_limiter_matches_a_brute_force_model(limit: int, gaps: list[int]) -> None:
    window = timedelta(seconds=300)
    limiter = RateLimiter(limit, window)
    accepted: list[datetime] = []
    now = T0
    for gap in gaps:
        now += timedelta(seconds=gap)
        in_window = [t for t in accepted if t > now - window]
        expect_ok = len(in_window) < limit
        try:
            limiter.acquire(ALICE, now)
            ok = True
        except IssuancePolicyError:
            ok = False
        assert ok == expect_ok
        if ok:
            accepted.append(now)


def test_invalid_construction() -> None:
    with pytest.raises(ValueError, match="max_issuances"):
        RateLimiter(0, timedelta(hours=1))
    with pytest.raises(ValueError, match="window"):
        RateLimiter(1, timedelta(0))
    with pytest.raises(ValueError, match="method"):
        IssuancePolicy(allowed_methods=[])
    with pytest.raises(ValueError, match="max_validity"):
        IssuancePolicy(max_validity=timedelta(0))
