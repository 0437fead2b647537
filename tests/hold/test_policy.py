"""Issuance policy, rate limiting and the authorizer default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from holdca.errors import (
    AuthorizationError,
    DIDSyntaxError,
    IssuancePolicyError,
    RateLimitError,
)
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


def test_the_ledger_count_is_part_of_the_limit() -> None:
    limiter = RateLimiter(3, timedelta(hours=1))
    limiter.acquire(ALICE, T0, recorded=0)
    with pytest.raises(RateLimitError, match="had 3"):
        limiter.acquire(ALICE, T0, recorded=3)  # other processes issued 3 already
    limiter.acquire(ALICE, T0, recorded=1)
    limiter.acquire(ALICE, T0, recorded=2)
    with pytest.raises(RateLimitError):
        limiter.acquire(ALICE, T0, recorded=0)  # this process's own 3


def test_memory_is_bounded_and_expired_dids_are_forgotten() -> None:
    limiter = RateLimiter(2, timedelta(minutes=1), max_tracked=1000)
    for i in range(50_000):
        limiter.acquire(f"did:plc:{i:024d}", T0 + timedelta(microseconds=i))
    assert len(limiter) == 1000  # the least recently seen were forgotten early
    later = T0 + timedelta(minutes=2)
    limiter.acquire(ALICE, later)
    assert len(limiter) == 1  # every other window has passed
    # a refused DID with nothing in its window is not kept either
    with pytest.raises(RateLimitError):
        limiter.acquire(BOB, later, recorded=2)
    assert len(limiter) == 1


def test_two_workers_on_one_ledger_share_the_limit(tmp_path: Path) -> None:
    """Two HoldCA objects (two worker processes) on one SQLite ledger, and a restart."""
    from holdca.hold import HoldCA, SQLiteLedger  # noqa: PLC0415
    from holdca.keys.pem import PEMKeyStore  # noqa: PLC0415
    from tests.hold.conftest import HOLD_DID, NOW, SUBJECT, make_world  # noqa: PLC0415

    world = make_world(tmp_path / "w")

    def worker() -> HoldCA:
        return HoldCA.open(
            PEMKeyStore(tmp_path / "keys"),
            SQLiteLedger(tmp_path / "ledger.sqlite3"),
            hold_did=HOLD_DID,
            subject=SUBJECT,
            now=NOW,
            create=True,
            resolver=world.net,
            policy=IssuancePolicy(rate_limit=RateLimiter(3, timedelta(hours=1))),
        )

    a, b = worker(), worker()
    issued = 0
    for i in range(8):
        ca = (a, b)[i % 2]
        try:
            ca.cosign(world.request(), now=NOW + timedelta(minutes=i))
            issued += 1
        except RateLimitError:
            pass
    assert issued == 3  # not 3 per worker
    restarted = worker()
    with pytest.raises(RateLimitError):
        restarted.cosign(world.request(), now=NOW + timedelta(minutes=10))
    assert restarted.cosign(world.request(), now=NOW + timedelta(minutes=61))
    for ca in (a, b, restarted):
        ca.ledger.close()


def test_rate_limit_message_says_when_to_retry_only_when_it_knows() -> None:
    """Seen here: the exact wait; counted only by the ledger (other processes): an upper
    bound, not a made-up exact figure."""
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    local = RateLimiter(2, timedelta(hours=1))
    local.acquire("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", start)
    local.acquire("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", start + timedelta(minutes=10))
    with pytest.raises(RateLimitError, match=r"retry in 1800 s"):
        local.acquire("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", start + timedelta(minutes=30))
    shared = RateLimiter(2, timedelta(hours=1))
    with pytest.raises(RateLimitError, match=r"retry within 3600 s"):
        shared.acquire("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", start, recorded=2)
