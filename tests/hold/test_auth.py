"""ServiceAuth: the token's key comes from the hold's resolver; a jti is used once.

The resolver is the in-process TestNetwork; the reference PDS's tokens are tested in
tests/integration/test_trust_gate.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from holdca.errors import AuthenticationError, LedgerError, ReplayError
from holdca.hold import MemoryLedger, ServiceAuth, SQLiteLedger
from holdca.hold.ledger import memory
from holdca.testing.atproto import TestRepo
from holdca.testing.network import TestNetwork

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
AUD = "did:web:hold.example.com"
LXM = "io.atcr.hold.coSignManifest"


def _auth(net: TestNetwork, ledger: MemoryLedger | SQLiteLedger | None = None) -> ServiceAuth:
    return ServiceAuth(net, ledger if ledger is not None else MemoryLedger(), audience=AUD)


def test_a_token_is_accepted_once() -> None:
    repo = TestRepo.create()
    auth = _auth(TestNetwork([repo]))
    token = repo.service_token(AUD, LXM, now=NOW)
    assert auth.authenticate(f"Bearer {token}", lxm=LXM, now=NOW) == repo.did
    with pytest.raises(ReplayError):
        auth.authenticate(f"Bearer {token}", lxm=LXM, now=NOW + timedelta(seconds=1))
    other = repo.service_token(AUD, LXM, now=NOW)  # another jti
    assert auth.authenticate(f"bearer {other}", lxm=LXM, now=NOW) == repo.did


def test_replicas_sharing_a_ledger_refuse_a_replay(tmp_path: Path) -> None:
    repo = TestRepo.create()
    net = TestNetwork([repo])
    a = _auth(net, SQLiteLedger(tmp_path / "l.db"))
    b = _auth(net, SQLiteLedger(tmp_path / "l.db"))
    token = f"Bearer {repo.service_token(AUD, LXM, now=NOW)}"
    assert a.authenticate(token, lxm=LXM, now=NOW) == repo.did
    with pytest.raises(ReplayError):
        b.authenticate(token, lxm=LXM, now=NOW)


def test_the_key_is_the_resolved_one_and_refreshed_once() -> None:
    repo = TestRepo.create()
    net = TestNetwork([repo])
    auth = _auth(net)
    auth.authenticate(f"Bearer {repo.service_token(AUD, LXM, now=NOW)}", lxm=LXM, now=NOW)
    repo.rotate_key()  # the cached identity now holds the old key
    net.calls.clear()
    fresh_token = repo.service_token(AUD, LXM, now=NOW)
    assert auth.authenticate(f"Bearer {fresh_token}", lxm=LXM, now=NOW) == repo.did
    assert net.calls == [("resolve", repo.did), ("resolve-fresh", repo.did)]
    forger = TestRepo.create(did=repo.did)
    with pytest.raises(AuthenticationError) as caught:
        auth.authenticate(f"Bearer {forger.service_token(AUD, LXM, now=NOW)}", lxm=LXM, now=NOW)
    assert caught.value.error == "BadJwtSignature"


def test_failures_consume_no_jti_and_name_the_problem() -> None:
    repo = TestRepo.create()
    ledger = MemoryLedger()
    auth = _auth(TestNetwork([repo]), ledger)
    forged = TestRepo.create(did=repo.did).service_token(AUD, LXM, now=NOW, jti="j1")
    with pytest.raises(AuthenticationError):
        auth.authenticate(f"Bearer {forged}", lxm=LXM, now=NOW)
    real = repo.service_token(AUD, LXM, now=NOW, jti="j1")  # the same jti, signed for real
    assert auth.authenticate(f"Bearer {real}", lxm=LXM, now=NOW) == repo.did
    unknown = TestRepo.create()  # not on the network
    with pytest.raises(AuthenticationError) as caught:
        auth.authenticate(f"Bearer {unknown.service_token(AUD, LXM, now=NOW)}", lxm=LXM, now=NOW)
    assert caught.value.error == "BadJwtIss"
    for header, error in ((None, "MissingJwt"), ("", "MissingJwt"), ("Basic abc", "BadJwt")):
        with pytest.raises(AuthenticationError) as caught:
            auth.authenticate(header, lxm=LXM, now=NOW)
        assert caught.value.error == error


def test_a_deactivated_issuer_is_refused() -> None:
    repo = TestRepo.create()
    net = TestNetwork([repo])
    net.deactivate(repo.did)
    with pytest.raises(AuthenticationError) as caught:
        _auth(net).authenticate(f"Bearer {repo.service_token(AUD, LXM, now=NOW)}", lxm=LXM, now=NOW)
    assert caught.value.error == "BadJwtIss"


def test_the_in_memory_replay_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "MAX_TOKENS", 3)
    ledger = MemoryLedger()
    for i in range(3):
        assert ledger.use_token(f"k{i}", expires_at=NOW + timedelta(minutes=1), now=NOW)
    with pytest.raises(LedgerError, match="full"):
        ledger.use_token("k3", expires_at=NOW + timedelta(minutes=1), now=NOW)
    # once they expire there is room again (and nothing unexpired was forgotten)
    later = NOW + timedelta(minutes=2)
    assert ledger.use_token("k3", expires_at=later + timedelta(minutes=1), now=later)
